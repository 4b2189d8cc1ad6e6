"""The time hashing set items and dict keys takes is bounded by the message (issue 11, item 1).

CPython caches no tuple's hash: with reference records, tuple i holding tuple i-1 twice makes a
2.3 KB message whose last tuple spans 2^64 leaves. The decoder measures what hashing an item will
visit (a value reached twice counts twice) before it hashes it, and refuses a message whose items
would take more than MAX_HASH_WORK_PER_BYTE x its size + HASH_WORK_SLACK (cython/hashtally.pxi).
Each shape is checked in every container that hashes: set and frozenset records, set and dict
definitions, registered frozen dataclasses and function values inside them; a q dictionary with
such keys stays a qwire.Dict. The limit is exact: generated chains decode when they fit and are
refused when they do not, and refusing is fast (time ratios to benign data, as in
test_memory_bounds.py).
"""
import dataclasses
import struct
import typing

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import qwire
from fuzz import hostile as h
from qwire import _core
from qwire.errors import DecodeError
from qwire.values import Dict
from timing import in_fresh_process, interleaved_rates, measured_again

PER_BYTE = _core.MAX_HASH_WORK_PER_BYTE
SLACK = _core.HASH_WORK_SLACK


@dataclasses.dataclass(frozen=True)
class Pair:
    a: object
    b: object


class Couple(typing.NamedTuple):
    a: object
    b: object


REG = qwire.Registry()
REG.register(Pair, "Pair")
REG.register(Couple, "Couple")


def loads(msg, **kw):
    return qwire.loads(msg, registry=REG, **kw)


def limit(msg):
    return PER_BYTE * len(msg) + SLACK


def chain_size(depth, fanout=2, leaves=2):
    """What hashing the last of `doubling_tuples` visits: 1 + its parts', recursively."""
    size = 1 + leaves
    for _ in range(depth):
        size = 1 + fanout * size
    return size


def tuples(depth, fanout=2):
    defs = [h.define_immutable(h.tuple_record([h.long_atom(1), h.long_atom(2)]))]
    defs += [h.define_immutable(h.tuple_record([h.ref(i - 1)] * fanout)) for i in range(1, depth + 1)]
    return defs


def pairs(depth):
    """Like tuples, with registered frozen dataclasses: Pair(a=#i-1, b=#i-1)."""
    defs = [h.define_immutable(h.tuple_record([h.long_atom(1), h.long_atom(2)]))]
    defs += [h.define_immutable(h.registered("Pair", {"a": h.ref(i - 1), "b": h.ref(i - 1)}))
             for i in range(1, depth + 1)]
    return defs


def couples(depth):
    defs = [h.define_immutable(h.tuple_record([h.long_atom(1), h.long_atom(2)]))]
    defs += [h.define_immutable(h.registered("Couple", {"a": h.ref(i - 1), "b": h.ref(i - 1)}))
             for i in range(1, depth + 1)]
    return defs


def projections(depth):
    """q projections (type 104) of `+` whose two arguments are the level below."""
    defs = [h.define_immutable(h.tuple_record([h.long_atom(1), h.long_atom(2)]))]
    defs += [h.define_immutable(b"\x68" + struct.pack("<I", 3) + b"\x66\x01" + h.ref(i - 1) + h.ref(i - 1))
             for i in range(1, depth + 1)]
    return defs


CHAINS = {"tuples": tuples, "frozen dataclasses": pairs, "namedtuples": couples, "projections": projections}

# Every way a decoded value gets hashed: what wraps a reference to the chain's last object
CONTAINERS = {
    "set record": lambda r: h.set_record([r]),
    "frozenset record": lambda r: h.set_record([r], frozen=True),
    "set record of 40": lambda r: h.set_record([r] + [h.long_atom(i) for i in range(40)]),
    "set definition": lambda r: h.define(h.set_record([r])),
    "dict definition's key": lambda r: h.define(h.dictionary(h.general_list([r]), h.general_list([h.long_atom(0)]))),
    "tuple in a set": lambda r: h.set_record([h.tuple_record([r, h.long_atom(3)])]),
}


@pytest.mark.parametrize("container", CONTAINERS)
@pytest.mark.parametrize("chain", CHAINS)
def test_a_2_to_the_64_leaf_item_is_refused_at_once(chain, container):
    """Issue 11's reproducer and its relatives: 64 levels sharing the level below twice."""
    msg = h.shared_then(CHAINS[chain](64), CONTAINERS[container](h.ref(64)))
    assert len(msg) < 6000
    with pytest.raises(DecodeError, match="hashing a set item or dictionary key"):
        loads(msg)


@pytest.mark.parametrize("chain", CHAINS)
def test_a_q_dictionary_with_such_a_key_stays_a_qwire_dict(chain):
    """A q dictionary hashes nothing when it cannot be a Python dict: no refusal either."""
    keys = h.general_list([h.ref(64), h.long_atom(1)])
    msg = h.shared_then(CHAINS[chain](64), h.dictionary(keys, h.general_list([h.long_atom(5), h.long_atom(6)])))
    value = loads(msg)[1]
    assert type(value) is Dict and list(value.values) == [5, 6]


@settings(max_examples=60, deadline=None)
@given(depth=st.integers(0, 40), fanout=st.integers(1, 3), container=st.sampled_from(sorted(CONTAINERS)))
def test_the_limit_is_what_hashing_visits(depth, fanout, container):
    """A generated chain decodes, equal to the value it stands for, exactly when what hashing it
    visits fits the message's limit; otherwise the message is refused."""
    msg = h.shared_then(tuples(depth, fanout), CONTAINERS[container](h.ref(depth)))
    size = chain_size(depth, fanout)
    if container == "tuple in a set":
        size += 2
    if size > limit(msg):
        with pytest.raises(DecodeError, match="hashing"):
            loads(msg)
        return
    value = loads(msg)[1]
    expected = (1, 2)
    for _ in range(depth):
        expected = (expected,) * fanout
    if container == "tuple in a set":
        assert value == {(expected, 3)}
    elif container.startswith("dict"):
        assert value == {expected: 0}
    elif container == "set record of 40":
        assert value == {expected} | set(range(40))
    else:
        assert value == {expected}


def test_max_expansion_scales_the_limit():
    """The bound follows max_expansion (as memory does): four times the ratio, four times the
    work; None, none."""
    depth = 18
    padding = h.vec(4, 100_000, bytes(100_000))
    msg = h.message(h.general_list([h.general_list(tuples(depth)), padding, h.set_record([h.ref(depth)])]))
    assert 2 * PER_BYTE * len(msg) + SLACK < chain_size(depth) <= 4 * PER_BYTE * len(msg) + SLACK
    for ratio in (16, 32):
        with pytest.raises(DecodeError, match="hashing"):
            loads(msg, max_expansion=ratio)
    assert len(loads(msg, max_expansion=64)[2]) == 1
    assert len(loads(msg, max_expansion=None)[2]) == 1


def test_items_that_share_a_hash_across_types_compare_cheaply_or_are_counted():
    """Tuple #d and Pair(#d-1, #d-1) hash alike (a frozen dataclass hashes the tuple of its
    fields); two chains built apart are equal, and comparing them walks both: each is counted
    when hashed, so their comparison is bounded too."""
    d = 10
    defs = tuples(d) + [h.define_immutable(h.registered("Pair", {"a": h.ref(d - 1), "b": h.ref(d - 1)}))]
    value = loads(h.shared_then(defs, h.set_record([h.ref(d), h.ref(d + 1)])))[1]
    assert len(value) == 2 and len({hash(v) for v in value}) == 1
    # two equal chains, defined apart
    other = [h.define_immutable(h.tuple_record([h.long_atom(1), h.long_atom(2)]))]
    other += [h.define_immutable(h.tuple_record([h.ref(d + i), h.ref(d + i)])) for i in range(1, d + 1)]
    value = loads(h.shared_then(tuples(d) + other, h.set_record([h.ref(d), h.ref(2 * d + 1)])))[1]
    assert len(value) == 1
    deep = 40
    other = [h.define_immutable(h.tuple_record([h.long_atom(1), h.long_atom(2)]))]
    other += [h.define_immutable(h.tuple_record([h.ref(deep + i), h.ref(deep + i)])) for i in range(1, deep + 1)]
    with pytest.raises(DecodeError, match="hashing"):
        loads(h.shared_then(tuples(deep) + other, h.set_record([h.ref(deep), h.ref(2 * deep + 1)])))


def test_a_big_int_reached_many_times_counts_its_digits():
    """A big int's hash reads all its digits: a set of many references to tuples holding one
    100,000-bit int costs that each time."""
    big = 1 << 100_000
    digits = big.to_bytes(12_501, "little", signed=True)
    bigint = h.ext(0x07, h.vec(4, len(digits), digits))
    defs = [h.define_immutable(bigint)]
    defs += [h.define_immutable(h.tuple_record([h.ref(0), h.long_atom(i)])) for i in range(1, 3001)]
    msg = h.shared_then(defs, h.set_record([h.ref(i) for i in range(1, 3001)]))
    assert 3000 * (100_000 // 64) > limit(msg)
    with pytest.raises(DecodeError, match="hashing"):
        loads(msg)


@pytest.mark.parametrize("n", [1, 100, 2000])
def test_benign_shared_values_decode(n):
    """Sharing that hashing can afford decodes as before: many set items sharing one tuple,
    dict keys sharing registered frozen dataclasses."""
    shared = tuple(range(20))
    p = Pair(shared, "x")
    value = [{(shared, i) for i in range(n)}, {Pair(p, i): i for i in range(n)}, frozenset((p, i) for i in range(n))]
    back = qwire.loads(qwire.dumps(value, refs=True, registry=REG), registry=REG)
    assert back == value


def test_known_gap_heavily_shared_hashable_values_need_max_expansion():
    """SECURITY.md's known gap: benign sharing past the bound is refused; max_expansion opens it."""
    shared = tuple(range(500))
    value = {(shared, i) for i in range(1000)}
    msg = bytes(qwire.dumps(value, refs=True))
    with pytest.raises(DecodeError, match="hashing"):
        qwire.loads(msg)
    assert qwire.loads(msg, max_expansion=None) == value


# ---- time: refusing and decoding at the limit stay within a few times benign data's per byte --

def _many_chains(copies, depth, record=h.set_record):
    """`copies` chains of `depth` levels, each last tuple in a record of its own (a set: hashing
    visits about as many values per byte as the limit allows)."""
    defs, last = [], []
    for c in range(copies):
        base = c * (depth + 1)
        defs.append(h.define_immutable(h.tuple_record([h.long_atom(c), h.long_atom(2)])))
        defs += [h.define_immutable(h.tuple_record([h.ref(base + i - 1)] * 2)) for i in range(1, depth + 1)]
        last.append(record([h.ref(base + depth)]))
    return h.message(h.general_list([h.general_list(defs), h.general_list(last)]))


def _the_refused_and_the_listed():
    """The 2^64-leaf message, and the same definitions with a tuple of the last in place of the set."""
    refused = h.shared_then(tuples(64), h.set_record([h.ref(64)]))
    listed = h.shared_then(tuples(64), h.tuple_record([h.ref(64)]))
    return refused, listed


def _decode_200_times(msg):
    for _ in range(200):
        try:
            qwire.loads(msg)
        except DecodeError:
            pass


def measure_refusing():
    """(rate of refusing the 2^64-leaf message, rate of decoding it with a tuple in place of the set)."""
    refused, listed = _the_refused_and_the_listed()
    return interleaved_rates([(_decode_200_times, refused * 200), (_decode_200_times, listed * 200)], rounds=3)


def _the_hashed_and_the_plain(depth):
    return _many_chains(6000, depth), _many_chains(6000, depth, record=h.tuple_record)


def measure_hashing_at_the_limit(depth):
    """(rate of decoding 6000 chains of the depth into sets, rate with tuple records instead)."""
    hashed, plain = _the_hashed_and_the_plain(depth)
    return interleaved_rates([(qwire.loads, hashed), (qwire.loads, plain)], rounds=3)


@pytest.mark.slow
def test_refusing_is_within_3x_of_decoding_the_same_message_unhashed():
    """Refusing the 2^64-leaf message takes about as long as decoding the same definitions with a
    tuple of the last one in place of the set (reference records decode slower per byte than plain
    q data, on every Python: they are the baseline that shows what the hashing bound costs)."""
    refused, listed = _the_refused_and_the_listed()
    assert len(refused) == len(listed)
    with pytest.raises(DecodeError, match="hashing"):
        qwire.loads(refused)

    @measured_again()
    def check():
        (rate, base), faults = in_fresh_process(__file__, "measure_refusing")
        assert rate <= 3 * base, (f"refusing: {rate * 1e9:.1f} ns/byte vs {base * 1e9:.1f} ns/byte unhashed "
                                  f"({faults} page faults while timing)")

    check()


@pytest.mark.slow
@pytest.mark.parametrize("depth", [1, 4])
def test_hashing_at_the_limit_is_within_3x_of_the_same_message_unhashed(depth):
    """The most hashing a message may cause costs a small factor over decoding the same shared
    values without hashing them (tuple records in place of the set records; reference records
    themselves decode slower per byte than plain q data, test_memory_bounds' benign payloads)."""
    hashed, plain = _the_hashed_and_the_plain(depth)
    assert len(hashed) == len(plain) and chain_size(depth) * 6000 < limit(hashed)
    assert len(qwire.loads(hashed)[1]) == 6000

    @measured_again()
    def check():
        (rate, base), faults = in_fresh_process(__file__, "measure_hashing_at_the_limit", depth)
        assert rate <= 3 * base, (f"{rate * 1e9:.1f} ns/byte hashed vs {base * 1e9:.1f} ns/byte unhashed "
                                  f"({faults} page faults while timing)")

    check()
