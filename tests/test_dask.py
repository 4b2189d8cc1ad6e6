"""qwire's Dask serialization family: exact round trips of arrays, pandas objects and Python
values through Dask's (header, frames), and a LocalCluster of two worker processes whose data
moves with qwire only (no pickle family in the lists)."""
import fractions

import numpy as np
import pandas as pd

# pandas 3's default str is Arrow-backed; on pandas 2 the same storage is asked for by name
ARROW_STR = "str" if int(pd.__version__.split(".")[0]) >= 3 else "string[pyarrow]"
import pytest

distributed = pytest.importorskip("distributed")  # in the test extra: present in CI

import qwire  # noqa: E402
import qwire.dask as qdask  # noqa: E402
from distributed.protocol import deserialize, serialize  # noqa: E402

ONLY_QWIRE = ["qwire"]


def frame_of(n=1000):
    rng = np.random.default_rng(0)
    return pd.DataFrame({
        "i": np.arange(n), "f": rng.random(n), "b": np.arange(n) % 2 == 0,
        "s": pd.array(["a", None] * (n // 2), dtype="str"), "c": pd.Categorical(["u", "v"] * (n // 2)),
        "t": pd.date_range("2020-01-01", periods=n, freq="s").as_unit("ns").to_numpy(),
        "o": np.array(["p", "q"] * (n // 2), dtype=object),
    }, index=pd.Index(np.arange(n) * 3, name="ix"))


@pytest.mark.parametrize("value", [
    np.arange(300_000, dtype=np.float64), np.arange(24, dtype=np.int16).reshape(2, 3, 4),
    np.float32(1.5), np.int64(7), {"a": [1, (2, "b")], "s": {3}}, "text", b"\x00" * 200_000,
], ids=["big-1d", "nd", "float32", "int64", "nested", "str", "bytes"])
def test_family_round_trips_exactly(value):
    """serialize/deserialize through Dask's own entry points return an equal value of the same
    type; large arrays travel as separate frames (the message is not joined with them)."""
    header, frames = serialize(value, serializers=ONLY_QWIRE)
    assert header["serializer"] == "qwire"
    got = deserialize(header, frames, deserializers=ONLY_QWIRE)
    assert type(got) is type(value)
    if isinstance(value, (np.ndarray, np.generic)):
        assert got.dtype == value.dtype and np.array_equal(got, value)
    else:
        assert got == value
    if isinstance(value, np.ndarray) and value.nbytes >= 1 << 16:
        assert len(frames) == 2 and memoryview(frames[1]).nbytes == value.nbytes
        assert np.shares_memory(np.frombuffer(frames[1], dtype=np.uint8), value)  # no copy on the way out


def test_pandas_round_trips_exactly():
    """DataFrame, Series and Index keep dtypes, missing strings, categoricals and the index."""
    df = frame_of()
    for value, check in ((df, pd.testing.assert_frame_equal), (df["s"], pd.testing.assert_series_equal),
                         (df["c"], pd.testing.assert_series_equal), (df.index, pd.testing.assert_index_equal),
                         (df.reset_index(drop=True), pd.testing.assert_frame_equal)):
        header, frames = serialize(value, serializers=ONLY_QWIRE)
        check(deserialize(header, frames, deserializers=ONLY_QWIRE), value)


def test_unsupported_values_fall_through_to_the_next_family():
    """What qwire cannot write (an unregistered class) is refused, so Dask uses the next family
    in the list; a MultiIndex frame is qwire's own now."""
    header, frames = serialize(fractions.Fraction(1, 3), serializers=["qwire", "pickle"])
    assert header["serializer"] == "pickle"
    multi = pd.DataFrame({"x": [1, 2]}, index=pd.MultiIndex.from_tuples([(1, "a"), (2, "b")]))
    header, frames = serialize(multi, serializers=["qwire", "pickle"])
    assert header["serializer"] == "qwire"
    pd.testing.assert_frame_equal(deserialize(header, frames, deserializers=ONLY_QWIRE), multi)
    with pytest.raises(TypeError):
        serialize(object(), serializers=ONLY_QWIRE, on_error="raise")


# --- a real cluster --------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def client():
    from distributed import Client, LocalCluster

    with LocalCluster(n_workers=2, processes=True, threads_per_worker=1, dashboard_address=None,
                      **qdask.worker_options(ONLY_QWIRE)) as cluster, \
            Client(cluster, **qdask.client_options(ONLY_QWIRE)) as c:
        yield c


def array_facts(x):
    return {"sum": float(np.asarray(x).sum()), "writeable": bool(x.flags.writeable), "dtype": str(x.dtype)}


def frame_facts(df):
    return {"rows": len(df), "f": float(df["f"].sum()), "missing": int(df["s"].isna().sum()),
            "index": int(df.index[-1]), "dtypes": [str(t) for t in df.dtypes]}


def make_array(n):
    return np.arange(n, dtype=np.float64)


def make_frame(n):
    return frame_of(n)


def nested(x):
    return {"k": [x, (x, "v")], "s": {x}, "arr": np.arange(100_000) * x}


def workers(client):
    return sorted(client.scheduler_info()["workers"])


def test_arrays_move_between_workers_with_qwire(client):
    """An array made on one worker is read on the other as a read-only view (qwire's decoding:
    Dask's own families give writeable arrays), and gathered equal."""
    a, b = workers(client)
    x = client.submit(make_array, 2_000_000, workers=[a], pure=False)
    facts = client.submit(array_facts, x, workers=[b]).result(timeout=60)
    assert facts == {"sum": float(np.arange(2_000_000.0).sum()), "writeable": False, "dtype": "float64"}
    got = x.result(timeout=60)
    assert np.array_equal(got, np.arange(2_000_000.0)) and not got.flags.writeable


@pytest.mark.slow
def test_dataframes_and_nested_values_move_with_qwire(client):
    """A DataFrame and a nested Python value cross between workers and back to the client."""
    a, b = workers(client)
    df = client.submit(make_frame, 100_000, workers=[a], pure=False)
    expected = frame_of(100_000)
    assert client.submit(frame_facts, df, workers=[b]).result(timeout=60) == frame_facts(expected)
    pd.testing.assert_frame_equal(df.result(timeout=60), expected)
    v = client.submit(nested, 3, workers=[b]).result(timeout=60)
    assert v["k"] == [3, (3, "v")] and v["s"] == {3} and np.array_equal(v["arr"], np.arange(100_000) * 3)


def test_scatter_and_gather(client):
    """Scattered data reaches a worker and gathers back through the family."""
    x = np.random.default_rng(1).random(500_000)
    [fut] = client.scatter([x], broadcast=False)
    assert client.submit(array_facts, fut).result(timeout=60)["sum"] == float(x.sum())
    assert np.array_equal(client.gather(fut), x)


def test_values_qwire_cannot_carry_fail_loudly_without_pickle(client):
    """With only qwire in the lists, a result qwire refuses is an error, never pickled."""
    fut = client.submit(fractions.Fraction, 1, 3, pure=False)
    with pytest.raises(Exception):
        fut.result(timeout=60)


def test_corrupt_arrow_offsets_are_refused():
    """A string column whose Arrow offsets point outside its data (a hostile or corrupt frame)
    raises a ValueError on arrival instead of reading out of bounds."""
    s = pd.Series(["ab", "c", None, "def"] * 50_000, dtype=ARROW_STR)
    header, frames = serialize(s, serializers=ONLY_QWIRE)
    n_offsets = (len(s) + 1) * 8
    index = next(i for i, f in enumerate(frames) if memoryview(f).nbytes == n_offsets)
    bad = np.frombuffer(frames[index], dtype=np.int64).copy()
    bad[-1] = 1 << 40
    frames = list(frames)
    frames[index] = memoryview(bad).cast("B")
    with pytest.raises(ValueError):
        qdask.deserialize({k: v for k, v in header.items() if k != "serializer"}, frames)


def test_large_out_of_band_bytes_fit_the_memory_budget():
    """A 4 MB bytes value (copied out of its frame on decoding) is within the budget, which counts
    the out-of-band frames as well as the small message."""
    value = {"blob": b"\x01" * (4 << 20)}
    header, frames = serialize(value, serializers=ONLY_QWIRE)
    assert deserialize(header, frames, deserializers=ONLY_QWIRE) == value
