"""Sets and dicts whose items share hash values (cython/hashtally.pxi, SECURITY.md), and function
values hashed and compared without deep Python recursion (src/qwire/values.py).

CPython hashes ints, tuples, Decimals... the same in every process, so a message can carry
thousands of distinct set items or dict keys with one hash value, and building the set would take
time quadratic in their number. The decoder refuses more than MAX_ITEMS_SHARING_A_HASH distinct
items per hash value in a set or dict it builds; a q dictionary with such keys stays a qwire.Dict.
"""
import dataclasses
import decimal
import inspect
import os
import sys

import numpy as np
import pytest

import qwire
from qwire import _core
from qwire.values import BinaryPrimitive, Derived, Dict, Projection, values_equal

LIMIT = _core.MAX_ITEMS_SHARING_A_HASH
MERSENNE_61 = (1 << 61) - 1  # CPython's int hash is the value mod this prime


def colliding_ints(n):
    """n distinct ints with one hash value (all but the first few outside int64: big ints)."""
    return [k * MERSENNE_61 for k in range(5, 5 + n)]


def assert_all_share_one_hash(items):
    assert len({hash(x) for x in items}) == 1 and len(set(items)) == len(items)


def flooded(exc_info, what):
    e = exc_info.value
    assert isinstance(e, qwire.DecodeError)
    assert e.reason.startswith(f"{what} has more than {LIMIT} distinct items with one hash value"), e.reason
    assert e.offset is not None
    return e


@pytest.mark.parametrize(
    "make, refs, what",
    [
        (set, False, "a set record"),
        (frozenset, False, "a frozenset record"),
        (set, True, "a set definition"),
        (lambda xs: dict.fromkeys(xs, 1), True, "a dictionary definition"),
    ],
    ids=["set", "frozenset", "set-refs", "dict-refs"],
)
def test_more_distinct_items_with_one_hash_than_the_limit_are_refused(make, refs, what):
    items = colliding_ints(LIMIT + 1)
    assert_all_share_one_hash(items)
    data = qwire.dumps(make(items), refs=refs)
    with pytest.raises(qwire.DecodeError) as exc_info:
        qwire.loads(data)
    e = flooded(exc_info, what)
    assert e.offset == 8  # the record's own offset: the whole set, not one item, is the problem
    # one fewer is a valid value, decoded as it was written
    value = make(colliding_ints(LIMIT))
    assert qwire.loads(qwire.dumps(value, refs=refs)) == value


def set_record(items):
    """The bytes of a set record of `items`, in their order and with any repeats: a tuple record's,
    with the set's code byte (docs/FORMAT.md). Building a Python set of a flood to encode it would
    itself take the quadratic time the decoder refuses to spend."""
    data = bytearray(qwire.dumps(tuple(items)))
    set_code = bytes(qwire.dumps({1}))[9]
    assert data[8] == 0x70 and data[9] != set_code
    data[9] = set_code
    return bytes(data)


def test_a_flood_of_twenty_thousand_items_is_refused_after_the_limit():
    """The case measured before the tally: 20,000 big ints with one hash, 359 KB, took 2.8 s to
    decode (time quadratic in the items). The refusal comes after LIMIT + 1 of them."""
    with pytest.raises(qwire.DecodeError) as exc_info:
        qwire.loads(set_record(colliding_ints(20_000)))
    flooded(exc_info, "a set record")


def test_a_q_dictionary_with_colliding_keys_stays_a_q_dictionary():
    """A q dictionary whose general-list keys would flood a Python dict is returned as the
    qwire.Dict it is (which hashes nothing), not refused: it is a valid q value."""
    keys = colliding_ints(LIMIT + 1)
    value = {k: i for i, k in enumerate(keys)}
    got = qwire.loads(qwire.dumps(value))
    assert isinstance(got, Dict)
    assert list(got.keys) == keys and list(got.values) == list(range(LIMIT + 1))
    small = dict(list(value.items())[:LIMIT])
    assert qwire.loads(qwire.dumps(small)) == small


def test_items_of_types_that_few_values_share_a_hash_with_are_not_limited():
    """int within int64 (at most 9 per hash value), float, str, bytes: no tally, no refusal, even
    where more than LIMIT share a hash with another item in the set (here -1 and -2 do)."""
    ints = set(range(-3, 40_000)) | {MERSENNE_61 * k for k in range(-4, 4)}
    assert qwire.loads(qwire.dumps(ints)) == ints
    floats = {float(2.0 ** (61 * k)) for k in range(-16, 17)} | {0.5 * i for i in range(1000)}
    assert len({hash(2.0 ** (61 * k)) for k in range(-16, 17)}) == 1   # 33 floats, one hash
    assert qwire.loads(qwire.dumps(floats)) == floats
    strs = {f"s{i}" for i in range(1000)}
    assert qwire.loads(qwire.dumps(strs)) == strs
    assert qwire.loads(qwire.dumps(strs, refs=True)) == strs


@pytest.mark.parametrize("refs", [False, True])
def test_benign_sets_and_dicts_of_tallied_types_decode(refs):
    bigints = set(range(1 << 70, (1 << 70) + 40_000))
    assert qwire.loads(qwire.dumps(bigints, refs=refs)) == bigints
    pairs = {(i, -i) for i in range(5000)}
    assert qwire.loads(qwire.dumps(pairs, refs=refs)) == pairs
    decimals = {decimal.Decimal(i) / 7 for i in range(2000)}
    assert qwire.loads(qwire.dumps(frozenset(decimals), refs=refs)) == decimals
    keyed = {(i, "k"): i for i in range(3000)}
    assert qwire.loads(qwire.dumps(keyed, refs=refs)) == keyed


def test_duplicates_do_not_count_as_distinct_items_sharing_a_hash():
    """A set record may repeat an item (qwire never writes one, another writer may): repeats of
    one value are not a flood."""
    one = colliding_ints(1)[0]
    items = [one] * (5 * LIMIT) + colliding_ints(LIMIT)[1:]
    assert qwire.loads(set_record(items)) == set(items)


@dataclasses.dataclass(frozen=True)
class ConstantHash:
    n: int

    def __hash__(self):
        return 7


def test_a_registered_class_with_a_constant_hash_is_limited_too():
    """What a class's __hash__ makes of its fields is the class's business, but a message still
    cannot make decoding quadratic with it."""
    reg = qwire.Registry()
    reg.register(ConstantHash)
    ok = {ConstantHash(i) for i in range(LIMIT)}
    assert qwire.loads(qwire.dumps(ok, registry=reg), registry=reg) == ok
    with pytest.raises(qwire.DecodeError) as exc_info:
        qwire.loads(qwire.dumps(ok | {ConstantHash(-1)}, registry=reg), registry=reg)
    flooded(exc_info, "a set record")


# ---- function values: hashed and compared with stacks of their own -------------------------------


def nested_derived(depth):
    f = BinaryPrimitive(1)
    for _ in range(depth):
        f = Derived("\\:", f)
    return f


def at_stack_depth(frames_left, fn):
    """Call fn with only about `frames_left` Python frames left before the recursion limit."""
    limit = sys.getrecursionlimit()

    def dig(k):
        return dig(k - 1) if k > 0 else fn()

    here = len(inspect.stack(0))
    return dig(max(0, limit - here - frames_left))


def test_a_set_of_deeply_nested_functions_decodes_with_little_python_stack_left():
    """The buffers fuzz target's finding (core cbb1097): a set record of function values nested
    ~250 levels deep, decoded from a caller already deep in Python's stack, raised RecursionError:
    adding them to the set compared them with __eq__, three Python frames per level. Hashes are
    now kept per function value, computed innermost first, and comparison walks a stack of its
    own."""
    a, b = nested_derived(250), nested_derived(250)
    data = bytes(qwire.dumps({a, b}))   # equal: one item
    value = at_stack_depth(60, lambda: qwire.loads(data))
    assert value == {a} and len(value) == 1
    two = bytes(qwire.dumps([nested_derived(250), nested_derived(250)]))
    x, y = qwire.loads(two)
    assert at_stack_depth(60, lambda: (hash(x) == hash(y), x == y, len({x, y}))) == (True, True, 1)


def test_the_fuzz_finding_is_a_decode_error_at_any_stack_depth():
    from fuzz import targets

    with open(os.path.join(os.path.dirname(__file__), "fuzz", "findings", "buffers-set-of-deep-functions.bin"), "rb") as f:
        data = f.read()
    msg = targets.framed(data[:-1])   # the target's last byte says how many buffers: here none
    outcomes = set()
    for frames_left in (900, 300, 60):
        with pytest.raises(qwire.DecodeError) as exc_info:
            at_stack_depth(frames_left, lambda: qwire.loads(msg, buffers=[]))
        outcomes.add((exc_info.value.reason, exc_info.value.offset))
    # the same error wherever the caller stands: a function value holding a list is unhashable
    assert len(outcomes) == 1 and "a set item is unhashable" in outcomes.pop()[0]


def test_function_values_with_unhashable_contents_are_unhashable():
    """Before: their hash fell back to their type's, so a set of 4,000 projections of list
    arguments (100 KB) took 60 s to decode, every pair compared. Now they are unhashable, as a
    tuple holding a list is, and such a set record is a DecodeError at once."""
    p = Projection(BinaryPrimitive(1), [1, 2])
    with pytest.raises(TypeError, match="unhashable Projection"):
        hash(p)
    assert p == Projection(BinaryPrimitive(1), [1, 2])
    items = [Projection(BinaryPrimitive(1), i, "x") for i in range(200)]
    assert qwire.loads(set_record(items)) == set(items)
    with pytest.raises(qwire.DecodeError, match="unhashable"):
        qwire.loads(set_record(Projection(BinaryPrimitive(1), [i]) for i in range(4000)))


def test_function_values_hash_nan_arguments_alike():
    """values_equal holds NaN equal to NaN, so equal projections must hash alike although each
    decoding makes its own NaN object (whose hash is its identity's)."""
    a = Projection(BinaryPrimitive(1), float("nan"), np.float32("nan"))
    b = qwire.loads(qwire.dumps(a))
    assert a == b and hash(a) == hash(b) and len({a, b}) == 1
    assert Projection(BinaryPrimitive(1), 1.0) != Projection(BinaryPrimitive(1), 2.0)


def test_values_equal_walks_deep_values_without_recursing():
    deep_a, deep_b = [], []
    for _ in range(5000):
        deep_a, deep_b = [deep_a, 1.5], [deep_b, 1.5]
    assert values_equal(deep_a, deep_b)
    deep_c = []
    for i in range(5000):
        deep_c = [deep_c, 1.5 if i else float("nan")]
    assert not values_equal(deep_a, deep_c)
    assert values_equal([float("nan"), np.array([np.nan])], [float("nan"), np.array([np.nan])])

