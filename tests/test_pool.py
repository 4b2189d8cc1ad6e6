"""qwire.pool: executors and pools whose tasks and results travel with qwire (functions by name,
data through qwire.pipe and shared memory), and `packed` for the standard library's pools."""
import concurrent.futures
import functools
import multiprocessing
import os
import signal
import time
from concurrent.futures.process import BrokenProcessPool

import numpy as np
import pytest

import qwire
from qwire import pool as qpool, shm

FORK = multiprocessing.get_context("fork")


def double(a):
    return a * 2


def add(a, b=0):
    return a + b


def describe(a):
    return {"shape": list(a.shape), "writeable": bool(a.flags.writeable), "sum": float(a.sum()),
            "shared": shm.is_shared(a)}


def shared_result(n):
    out = shm.empty(n)
    out[:] = 7.0
    return out


def fail_builtin(x):
    raise KeyError(f"missing {x}")


class CustomError(Exception):
    pass


def fail_custom(x):
    raise CustomError(f"custom {x}")


def die(x):
    os.kill(os.getpid(), signal.SIGKILL)


def identity(x):
    return x


def pid(_):
    return os.getpid()


def slow_pid(seconds):
    time.sleep(seconds)  # long enough that the other worker takes the next task, however loaded the machine
    return os.getpid()


_init_value = []


def remember(v):
    _init_value.append(v)


def initialised(_):
    return list(_init_value)


class Opaque:  # not registered with qwire: refused, where pickle would take it
    pass


@pytest.fixture(scope="module")
def executor():
    with qpool.ProcessPoolExecutor(2, mp_context=FORK) as ex:
        yield ex


def test_submit_and_map(executor):
    """Results equal what the functions return; map keeps order; keyword arguments travel."""
    assert executor.submit(add, 2, b=3).result(timeout=60) == 5
    assert list(executor.map(add, range(6), range(6))) == [0, 2, 4, 6, 8, 10]
    assert executor.submit(functools.partial(add, b=10), 1).result(timeout=60) == 11
    assert executor.submit(identity, {"k": (1, "x"), "s": {2}}).result(timeout=60) == {"k": (1, "x"), "s": {2}}


def test_large_arrays_go_through_shared_memory(executor):
    """A large argument arrives in the worker as a read-only view; a large result comes back
    equal; an array the worker allocates with shm.empty comes back as shared memory."""
    x = np.random.default_rng(0).random(1_000_000)
    info = executor.submit(describe, x).result(timeout=60)
    assert info == {"shape": [1_000_000], "writeable": False, "sum": float(x.sum()), "shared": False}
    assert np.array_equal(executor.submit(double, x).result(timeout=60), x * 2)
    back = executor.submit(shared_result, 500_000).result(timeout=60)
    assert (back == 7.0).all() and not back.flags.writeable


def test_exceptions_come_back(executor):
    """A builtin exception is re-raised with its type and the worker's traceback as a note;
    another type arrives as RemoteError naming it. The pool stays usable."""
    with pytest.raises(KeyError) as info:
        executor.submit(fail_builtin, 3).result(timeout=60)
    assert "missing 3" in str(info.value)
    assert any("fail_builtin" in note for note in info.value.__notes__)
    with pytest.raises(qpool.RemoteError) as info:
        executor.submit(fail_custom, 4).result(timeout=60)
    assert info.value.type_name.endswith("CustomError") and "custom 4" in info.value.message
    assert executor.submit(add, 1, 1).result(timeout=60) == 2


def test_arguments_and_functions_are_not_pickled(executor):
    """Arguments qwire cannot write fail with EncodeError (pickle would have taken them);
    lambdas and nested functions are refused at submit."""
    with pytest.raises(qwire.EncodeError):
        executor.submit(identity, Opaque()).result(timeout=60)
    with pytest.raises(TypeError):
        executor.submit(lambda x: x, 1)

    def nested(x):
        return x

    with pytest.raises(TypeError):
        executor.submit(nested, 1)
    with pytest.raises(qwire.EncodeError):
        executor.submit(Opaque).result(timeout=60)  # the worker's result is refused, sent back as an error
    assert executor.submit(add, 2, 2).result(timeout=60) == 4


def test_work_spreads_over_workers(executor):
    """Both workers take tasks: while one is busy, the next task goes to the other."""
    pids = set(executor.map(slow_pid, [0.2] * 6))
    assert len(pids) == 2 and os.getpid() not in pids


def test_worker_killed_breaks_the_pool():
    """A worker killed mid-task fails that future and the pending ones with BrokenProcessPool;
    later submits raise it too, as the standard library's pool does."""
    ex = qpool.ProcessPoolExecutor(1, mp_context=FORK)
    try:
        first = ex.submit(die, 0)
        later = ex.submit(add, 1, 1)
        with pytest.raises(BrokenProcessPool):
            first.result(timeout=60)
        with pytest.raises(BrokenProcessPool):
            later.result(timeout=60)
        with pytest.raises(BrokenProcessPool):
            ex.submit(add, 1, 1)
    finally:
        ex.shutdown()


def test_initializer_and_spawn():
    """The initializer runs in each worker; a spawn context works (functions found by name)."""
    with qpool.ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn"),
                                   initializer=remember, initargs=("hello",)) as ex:
        assert ex.submit(initialised, 0).result(timeout=120) == ["hello"]
        assert np.array_equal(ex.submit(double, np.arange(200_000)).result(timeout=60), np.arange(200_000) * 2)


def test_shutdown_refuses_new_work_and_cancels():
    ex = qpool.ProcessPoolExecutor(1, mp_context=FORK)
    ex.submit(add, 1).result(timeout=60)
    ex.shutdown(cancel_futures=True)
    with pytest.raises(RuntimeError):
        ex.submit(add, 1)
    assert [w.process._closed for w in ex._workers] == [True]  # joined and closed


def test_pool_interface():
    """qwire.pool.Pool answers as multiprocessing.Pool does."""
    with qpool.Pool(2, context=FORK) as p:
        assert p.map(double, [1, 2, 3]) == [2, 4, 6]
        assert p.starmap(add, [(1, 2), (3, 4)]) == [3, 7]
        assert p.apply(add, (5,), {"b": 1}) == 6
        r = p.apply_async(add, (1, 1))
        assert r.get(timeout=60) == 2 and r.ready() and r.successful()
        assert list(p.imap(double, range(4))) == [0, 2, 4, 6]
        assert sorted(p.imap_unordered(double, range(4))) == [0, 2, 4, 6]
        bad = p.apply_async(fail_builtin, (1,))
        bad.wait(60)
        assert not bad.successful()


def test_packed_with_standard_library_pools():
    """packed(fn) runs on the standard library's pools with qwire bytes for data."""
    task = qpool.packed(double)
    x = np.arange(100_000.0)
    with concurrent.futures.ProcessPoolExecutor(1, mp_context=FORK) as ex:
        out = qpool.unpack(ex.submit(task, qpool.pack(x)).result(timeout=60))
        assert np.array_equal(out, x * 2)
    with FORK.Pool(1) as p:
        outs = [qpool.unpack(r) for r in p.map(qpool.packed(add), [qpool.pack(1, b=2), qpool.pack(3)])]
    assert outs == [3, 3]
    with pytest.raises(TypeError):
        qpool.packed(lambda v: v)


def frame_stats(df):
    return df.describe()


def test_dataframes_in_and_out_keep_their_type(executor):
    """A DataFrame argument and a DataFrame result cross as DataFrames (dtypes, index kept)."""
    pd = pytest.importorskip("pandas")
    df = pd.DataFrame({"x": np.arange(1000), "y": np.arange(1000) * 0.5}, index=pd.Index(np.arange(1000) * 3, name="i"))
    got = executor.submit(frame_stats, df).result(timeout=60)
    pd.testing.assert_frame_equal(got, df.describe())
    assert executor.submit(identity, df["x"]).result(timeout=60).equals(df["x"])
