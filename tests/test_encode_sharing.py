"""Objects a user shares between threads on the encode side work, or refuse at once: one Encoder
(with refs, a registry, a buffer callback), one Message (bytes, memoryviews, write_to, loads),
one Registry registering while others encode. Public methods check their arguments: an Encoder is
configured once (calling __init__ again raises rather than changing options under a running
encode), an Encoder made by __new__ refuses to encode, write_to refuses what it cannot write to."""
from __future__ import annotations

import dataclasses
import sys
import threading

import numpy as np
import pytest

import qwire


@pytest.fixture(autouse=True)
def _switch_often():
    old = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    yield
    sys.setswitchinterval(old)


def run_threads(target, n=4):
    errors = []

    def wrap(i):
        try:
            target(i)
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=wrap, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not any(t.is_alive() for t in threads)
    if errors:
        raise errors[0]


@dataclasses.dataclass
class Rec:
    name: str
    values: list


def values_for(i):
    shared = [i, "x", 2.5]
    return [{"id": i, "name": f"n{i}", "s": shared, "t": (shared, shared)}, Rec(f"r{i}", shared),
            np.arange(i, i + 50_000, dtype=np.int64), {f"k{j}": j * i for j in range(40)}]


@pytest.mark.parametrize("refs", [False, True])
def test_one_encoder_many_threads(refs):
    registry = qwire.Registry()
    registry.register(Rec, "test.sharing.Rec")
    enc = qwire.Encoder(refs=refs, registry=registry)
    expected = {i: bytes(qwire.Encoder(refs=refs, registry=registry).encode(values_for(i))) for i in range(4)}

    def work(i):
        v = values_for(i)
        for _ in range(100):
            assert bytes(enc.encode(v)) == expected[i]

    run_threads(work)


def test_one_encoder_whose_buffer_callback_runs_python():
    """The callback switches threads mid-message; each message still gets its own buffers."""
    enc = qwire.Encoder(buffer_callback=lambda pb: sys.getswitchinterval() < 0)   # False: out of band

    def work(i):
        for _ in range(50):
            arr = np.full(20_000, i, dtype=np.float64)
            bufs = []
            local = qwire.Encoder(buffer_callback=bufs.append)
            m = local.encode([arr, arr])
            assert len(bufs) == 2
            assert (qwire.loads(m, buffers=bufs)[0] == i).all()
            assert len(enc.encode(arr)) < 100

    run_threads(work)


def test_one_message_many_threads():
    arr = np.arange(300_000, dtype=np.float64)
    m = qwire.dumps({"a": arr, "b": [arr]})
    raw = bytes(m)

    def work(i):
        for _ in range(30):
            assert bytes(m) == raw
            with memoryview(m) as view:
                assert view.nbytes == len(raw)
                assert view[:16] == raw[:16]
            out = qwire.loads(m)
            assert (out["a"] == arr).all()
            assert m[8:100] == raw[8:100] and m == raw

    run_threads(work)


def test_registering_while_others_encode():
    registry = qwire.Registry()
    registry.register(Rec, "test.sharing.Rec2")
    stop = threading.Event()

    def register_many():
        for k in range(200):
            cls = dataclasses.make_dataclass(f"C{k}", [("v", int)])
            registry.register(cls, f"test.sharing.C{k}")
        stop.set()

    def encode_many(i):
        while not stop.is_set():
            assert qwire.loads(qwire.dumps(Rec("a", [i]), registry=registry), registry=registry) == Rec("a", [i])

    t = threading.Thread(target=register_many)
    t.start()
    run_threads(encode_many, 3)
    t.join(60)


def test_an_encoder_is_configured_once():
    enc = qwire.Encoder("sync", max_depth=10)
    with pytest.raises(TypeError, match="configured once"):
        enc.__init__("async", max_depth=5)
    assert enc.msg_type == 1 and enc.max_depth == 10


def test_an_encoder_made_by_new_refuses_to_encode():
    enc = qwire.Encoder.__new__(qwire.Encoder)
    with pytest.raises(TypeError, match="without options"):
        enc.encode([1, 2])


@pytest.mark.parametrize("kwargs", [{"max_depth": 0}, {"max_depth": "5"}, {"max_depth": 1.5}, {"capability": 7},
                                    {"msg_type": "later"}, {"buffer_callback": 5},
                                    {"max_shared_expansion": 0}, {"refs": True, "q_compatible": True}])
def test_encoder_options_are_checked(kwargs):
    with pytest.raises((TypeError, ValueError)):
        qwire.Encoder(**kwargs)


def test_a_message_made_by_new_refuses_everything():
    m = qwire.Message.__new__(qwire.Message)
    for op in (bytes, memoryview, lambda m: m.segments(), lambda m: m[0], lambda m: m + b"",
               lambda m: m.write_to(1)):
        with pytest.raises(TypeError):
            op(m)
