"""The decoder's memory budget (cython/budget.pxi, SECURITY.md): decoding a message of n bytes
allocates at most max_expansion x n + 1 MiB (default 16x) and at most max_decoded_size; a message
that needs more is refused with a DecodeError before the allocation that would pass the limit.
tests/test_memory_bounds.py measures the peaks on hostile shapes; here: the options, the error,
the cost model against the interpreter, and benign messages that must never be refused."""
import dataclasses
import gc
import pickle
import sys
import tracemalloc

import numpy as np
import pytest

import qwire
from qwire import _core, compression
from qwire.errors import DecodeError

MiB = 1 << 20
EMPTY_SETS = bytes(qwire.dumps([set() for _ in range(100_000)]))     # 216-byte sets from 8-byte records


def test_default_is_16x_plus_1mib():
    assert qwire.Decoder().max_expansion == 16 == _core.DEFAULT_MAX_EXPANSION
    assert qwire.Decoder().max_decoded_size is None


def test_a_message_over_the_budget_is_refused_with_its_offset_and_limit():
    with pytest.raises(DecodeError) as info:
        qwire.loads(EMPTY_SETS)
    e = info.value
    limit = 16 * len(EMPTY_SETS) + MiB
    assert f"memory limit of {limit} bytes" in e.reason and f"{len(EMPTY_SETS)}-byte message" in e.reason
    assert "max_expansion" in e.reason
    # refused at a set record partway through: 8-byte records from byte 14
    assert 14 < e.offset < len(EMPTY_SETS) and (e.offset - 14) % 8 == 0


@pytest.mark.parametrize("options", [{"max_expansion": None}, {"max_expansion": 40}, {"max_expansion": 40.5}])
def test_a_larger_budget_decodes_it(options):
    assert qwire.loads(EMPTY_SETS, **options) == [set()] * 100_000
    assert qwire.Decoder(**options).decode(EMPTY_SETS) == [set()] * 100_000


def test_max_decoded_size_is_an_absolute_ceiling():
    data = bytes(qwire.dumps(list(range(10_000))))        # 10,000 ints: about 440 KB of objects
    assert qwire.loads(data, max_decoded_size=MiB) == list(range(10_000))
    with pytest.raises(DecodeError, match="memory limit of 100000 bytes"):
        qwire.loads(data, max_decoded_size=100_000)
    # the smaller of the two limits applies
    with pytest.raises(DecodeError, match="memory limit of 100000 bytes"):
        qwire.Decoder(max_expansion=None, max_decoded_size=100_000).decode(data)


def test_views_cost_only_their_array_object():
    big = np.arange(10 * MiB // 8, dtype=np.int64)        # 10 MiB, decoded as a view
    assert np.array_equal(qwire.loads(bytes(qwire.dumps(big)), max_decoded_size=4096), big)
    chunks = []
    m = qwire.dumps(big, buffer_callback=chunks.append)
    assert np.array_equal(qwire.loads(m, buffers=chunks, max_decoded_size=4096), big)


@pytest.mark.parametrize("bad", [0.5, 0, -1, "16", True, float("nan")])
def test_max_expansion_is_validated(bad):
    with pytest.raises(ValueError, match="max_expansion"):
        qwire.Decoder(max_expansion=bad)


@pytest.mark.parametrize("bad", [-1, 1.5, "1", True])
def test_max_decoded_size_is_validated(bad):
    with pytest.raises(ValueError, match="max_decoded_size"):
        qwire.Decoder(max_decoded_size=bad)


def test_pickled_decoder_keeps_its_budget():
    dec = pickle.loads(pickle.dumps(qwire.Decoder(max_expansion=40, max_decoded_size=1 << 30)))
    assert (dec.max_expansion, dec.max_decoded_size) == (40, 1 << 30)
    assert dec.decode(EMPTY_SETS) == [set()] * 100_000


def test_a_refusal_leaves_the_decoder_as_it_was():
    dec = qwire.Decoder()
    good = bytes(qwire.dumps([{"a": 1, "b": "x"}, {1, 2}, (3, 4)]))
    first = dec.decode(good)
    with pytest.raises(DecodeError):
        dec.decode(EMPTY_SETS)
    assert dec.decode(good) == first


def test_streams_and_compressed_messages_have_the_same_budget():
    dec = qwire.Decoder()
    dec.feed(EMPTY_SETS)
    with pytest.raises(DecodeError, match="memory limit"):
        next(dec)
    # a compressed message's budget is from the bytes that arrived, not from what they decompress
    # to (max_decompressed_size bounds that): 16x the compressed size + 1 MiB
    z = compression.compress(EMPTY_SETS)
    assert len(z) < len(EMPTY_SETS) // 10
    with pytest.raises(DecodeError, match=f"this {len(z)}-byte message"):
        qwire.loads(z)
    assert qwire.loads(z, max_expansion=None) == [set()] * 100_000


@pytest.mark.parametrize("n", list(range(0, 200)) + [1000, 5461, 5462, 50_000, 50_001, 100_000, 300_000])
def test_set_and_dict_costs_bound_the_interpreters_sizes(n):
    """The budget charges a set or dict before it is built, from its item count: at least what
    sys.getsizeof says for one built item by item, and not more than about twice."""
    s = set()
    for i in range(n):
        s.add(i)
    d = {}
    for i in range(n):
        d[i] = None
    for kind, real in (("set", sys.getsizeof(s)), ("dict", sys.getsizeof(d))):
        charged = _core._cost_model(kind, n)
        assert real <= charged <= max(2.2 * real, real + 256), (kind, n, real, charged)
    assert sys.getsizeof(frozenset(range(n))) <= _core._cost_model("set", n)
    assert sys.getsizeof(dict.fromkeys(map(str, range(n)))) <= _core._cost_model("dict", n)


@dataclasses.dataclass
class Trade:
    id: int
    sym: str
    price: float


BENIGN = {
    "200k ints": lambda: list(range(200_000)),
    "200k floats": lambda: [i * 0.5 for i in range(200_000)],
    "100k distinct short strs": lambda: [f"s{i}" for i in range(100_000)],
    "50k distinct wide strs": lambda: [chr(0x4E00 + i % 20000) + str(i) for i in range(50_000)],
    "set of 200k ints": lambda: set(range(200_000)),
    "set of 50k short strs": lambda: {f"k{i}" for i in range(50_000)},
    "dict of 200k ints to floats": lambda: {i: i * 0.5 for i in range(200_000)},
    "record with 10k keys": lambda: {f"key{i}": i for i in range(10_000)},
    "20k records": lambda: [{"id": i, "sym": "AAPL", "px": 1.5, "qty": 7, "side": "buy"} for i in range(20_000)],
    "20k tuples": lambda: [(i, "x", 1.5) for i in range(20_000)],
    "10k sets of 3": lambda: [{i, i + 1, i + 2} for i in range(10_000)],
    "nested lists": lambda: [[i, [i, [i]]] for i in range(20_000)],
    "table": lambda: qwire.Table({"a": np.arange(100_000), "s": np.array(["x", "y"] * 50_000, dtype=object)}),
    "10k registered dataclasses": lambda: [Trade(i, "IBM", 1.0) for i in range(10_000)],
    "datetimes": lambda: [np.datetime64("2024-01-01T00:00:00.123456789") + np.timedelta64(i, "ns") for i in range(10_000)],
}
REGISTRY = qwire.Registry()
REGISTRY.register(Trade)


@pytest.mark.parametrize("name", BENIGN)
def test_benign_messages_decode_within_the_default_budget(name):
    value = BENIGN[name]()
    data = bytes(qwire.dumps(value, registry=REGISTRY))
    tracemalloc.start()
    try:
        out = qwire.loads(data, registry=REGISTRY)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    if isinstance(value, set):
        assert out == value                  # (a rebuilt set may iterate in another order)
    else:
        assert bytes(qwire.dumps(out, registry=REGISTRY)) == data
    assert peak <= 16 * len(data) + MiB


def test_refs_messages_are_charged_too():
    shared = set()
    graph = [[set() for _ in range(50_000)], shared, shared]
    data = bytes(qwire.dumps(graph, refs=True))
    with pytest.raises(DecodeError, match="memory limit"):
        qwire.loads(data)
    out = qwire.loads(data, max_expansion=None)
    assert out[1] is out[2] and len(out[0]) == 50_000


# ---- the charges cover what is really allocated ------------------------------------------------

from hypothesis import HealthCheck, assume, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

import pyvalues  # noqa: E402
import strategies  # noqa: E402
from fuzz import hostile  # noqa: E402

COPIES = 2000


def _charged_at_least(body, fraction=0.8, **options):
    """A general list of COPIES copies of an item's bytes, decoded with no budget to measure its
    real peak (tracemalloc), then with an absolute budget under that peak: the charges must
    refuse it, or they undercount what decoding allocates."""
    data = hostile.message(hostile.general_list([body] * COPIES))
    unbounded = qwire.Decoder(max_expansion=None, **options)
    try:
        unbounded.decode(data)         # first-use caches (of the registry, of value classes) warm
    except DecodeError:
        return
    gc.collect()
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        value = unbounded.decode(data)
        peak = tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()
    del value
    # less what is not the values: the call and its state, and now and then an interpreter-level
    # allocation of some tens of KB that tracemalloc sees during the call (seen with 200 Nones)
    below = int(peak * fraction) - 65536
    if below <= 0:
        return
    with pytest.raises(DecodeError, match="memory limit"):
        qwire.Decoder(max_expansion=None, max_decoded_size=below, **options).decode(data)


@pytest.mark.slow  # ~20 s
@settings(max_examples=80, deadline=None, suppress_health_check=list(HealthCheck))
@given(pyvalues.python_values(max_leaves=12), st.booleans())
def test_charges_cover_the_peak_of_python_values(value, refs):
    # Money's decode function makes a Decimal beside the object it returns: a registered
    # function's own allocations are its author's, outside the budget (SECURITY.md)
    assume("Money(" not in repr(value))
    body = bytes(qwire.dumps(value, refs=refs, registry=pyvalues.REGISTRY))[8:]
    _charged_at_least(body, registry=pyvalues.REGISTRY)


@pytest.mark.slow  # ~20 s
@settings(max_examples=80, deadline=None, suppress_health_check=list(HealthCheck))
@given(strategies.q_messages(max_leaves=12))
def test_charges_cover_the_peak_of_q_messages(msg):
    try:
        qwire.loads(msg)
    except qwire.QError:
        return
    _charged_at_least(msg[8:])


class _BrokenSize:
    """A registered class whose __sizeof__ fails: its author's code, which must not break decoding."""

    def __init__(self, v):
        self.v = v

    def __sizeof__(self):
        raise RuntimeError("no size")


def test_a_failing_sizeof_does_not_break_decoding():
    reg = qwire.Registry()
    reg.register(_BrokenSize, encode=lambda o: o.v, decode=_BrokenSize)
    out = qwire.loads(qwire.dumps([_BrokenSize(1), _BrokenSize(2)], registry=reg), registry=reg)
    assert [o.v for o in out] == [1, 2]


def test_charges_released_temporaries_so_valid_messages_under_16x_decode():
    """Found by the grammar fuzz target: 1960 copies of a list of two empty keyed tables take 11.8x
    their size at peak, but charging the names, column lists and key lists that decoding frees
    along the way put them over 16x. What is freed is now credited back."""
    tree = ("list", 1, [("dict", False, ("table", 0, [b"_"], [("vector", 1, 0, [])]),
                         ("table", 0, [b"_"], [("vector", 1, 0, [])]))] * 2)
    body = strategies.wire_message(tree)[8:]
    msg = hostile.message(hostile.general_list([body] * 1960))
    assert len(qwire.loads(msg)) == 1960
    # the same for Python dicts made from q dicts (keys and values lists freed)
    d = hostile.dictionary(hostile.general_list([b"\xf9" + i.to_bytes(8, "little") for i in range(3)]),
                           hostile.general_list([b"\xff\x01"] * 3))
    assert qwire.loads(hostile.message(hostile.general_list([d] * 20_000)))[0] == {0: True, 1: True, 2: True}
