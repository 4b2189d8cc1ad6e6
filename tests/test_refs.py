"""refs=True: shared and circular references (docs/FORMAT.md, "References"); and the default,
where a cycle is an EncodeError that says where it is, never a RecursionError or a crash."""
from __future__ import annotations

import dataclasses
import gc
import pickle
import time
import typing
import weakref

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import qwire
from pyvalues import REGISTRY, Pair, Point, assert_pysame, python_values
from wire import message

REG = qwire.Registry()


@dataclasses.dataclass(eq=False)
class Node:
    name: str
    other: object = None


@dataclasses.dataclass(eq=False, frozen=True)
class FrozenNode:
    items: list


class Box(typing.NamedTuple):
    content: object


class Wrapper:
    """Registered with encode/decode: rebuilt from its value, like a tuple."""

    def __init__(self, value):
        self.value = value


class Selfish:
    """Its encode returns a fresh tuple holding the object itself: a cycle no decoder can rebuild."""


REG.register(Node)
REG.register(FrozenNode)
REG.register(Box)
REG.register(Wrapper, encode=lambda w: w.value, decode=Wrapper)
REG.register(Selfish, encode=lambda s: (s,), decode=lambda v: Selfish())


def rt(x, **kw):
    return qwire.loads(qwire.dumps(x, refs=True, registry=REG, **kw), registry=REG)


# ---- identity ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("make", [list, dict, set, lambda: (1, [2]), lambda: frozenset({3}), bytearray,
                                  lambda: np.zeros((2, 2)), lambda: np.arange(3), lambda: Node("n"),
                                  lambda: Box([1]), lambda: Wrapper([5])],
                         ids=["list", "dict", "set", "tuple", "frozenset", "bytearray", "ndarray2d", "ndarray1d",
                              "dataclass", "namedtuple", "custom"])
def test_an_object_reached_twice_comes_back_as_one_object(make):
    a = make()
    x = [a, {"again": a}, (a,)]
    y = rt(x)
    assert y[0] is y[1]["again"] is y[2][0]
    plain = qwire.loads(qwire.dumps(x, registry=REG), registry=REG)
    assert plain[0] is not plain[1]["again"]       # without refs: copies


def test_strings_and_numbers_are_not_tracked():
    s = "a symbol" * 3
    big = 2**100
    m = bytes(qwire.dumps([s, s, big, big], refs=True))
    assert m.count(b"\x70\x21") == 0


def test_shared_references_are_written_once():
    a = list(range(1000))
    one = len(qwire.dumps([a], refs=True))
    many = len(qwire.dumps([a] * 100, refs=True))
    assert many - one == 99 * 7                     # each repeat is a 7-byte reference


# ---- cycles ------------------------------------------------------------------------------------------------

def test_a_list_containing_itself():
    a = [1]
    a.append(a)
    b = rt(a)
    assert b[1] is b and b[0] == 1


def test_a_dict_containing_itself_and_a_list_containing_that():
    d = {"k": 1}
    d["self"] = d
    d["list"] = [d, 2]
    e = rt(d)
    assert e["self"] is e and e["list"][0] is e and list(e) == ["k", "self", "list"]


def test_a_set_in_a_cycle_through_a_registered_object():
    s = set()
    n = Node("n", s)
    s.add(n)
    t = rt(s)
    (m,) = t
    assert m.other is t


def test_mutually_referencing_registered_objects():
    a = Node("a")
    b = Node("b", a)
    a.other = b
    x, y = rt([a, b])
    assert x.other is y and y.other is x and x.name == "a"


def test_a_frozen_dataclass_in_a_cycle():
    f = FrozenNode([])
    f.items.append(f)
    g = rt(f)
    assert g.items[0] is g


def test_a_tuple_in_a_cycle_through_a_list():
    """As pickle does: the tuple is written again inside itself, and the outer copy dropped."""
    t = ([],)
    t[0].append(t)
    u = rt(t)
    assert type(u) is tuple and u[0][0] is u


def test_nested_tuples_and_a_namedtuple_in_cycles():
    inner = ([], "x")
    outer = (inner, Box(inner[0]))
    inner[0].append(outer)
    y = rt(outer)
    assert y[0][0][0] is y and y[1].content is y[0][0]


def test_a_cycle_through_a_custom_registered_object_and_a_list():
    w = Wrapper([])
    w.value.append(w)
    v = rt(w)
    assert type(v) is Wrapper and v.value[0] is v


def test_an_object_array_in_a_cycle_through_a_list():
    a = np.empty(2, dtype=object)
    a[0] = [a]
    a[1] = 3
    b = rt(a)
    assert b[0][0] is b and b[1] == 3


def test_deep_shared_structures():
    leaf = {"x": 1}
    chain = [leaf]
    for _ in range(100):
        chain = [chain, leaf]
    y = rt(chain, max_depth=1000)
    node, seen = y, set()
    while len(node) == 2:
        seen.add(id(node[1]))
        node = node[0]
    assert len(seen) == 1 and node[0] is y[1]


# ---- cycles that cannot be rebuilt -----------------------------------------------------------------------

def test_a_cycle_only_through_objects_built_from_their_contents_is_refused():
    with pytest.raises(qwire.EncodeError, match="circular reference.*cannot be rebuilt"):
        qwire.dumps(Selfish(), refs=True, registry=REG)


def test_an_object_array_containing_itself_is_refused():
    a = np.empty(1, dtype=object)
    a[0] = a
    with pytest.raises(qwire.EncodeError, match="circular reference at obj: .*cannot be rebuilt"):
        qwire.dumps(a, refs=True)


# ---- without refs --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("build, where, again", [
    (lambda: _cyclic_list(), "obj", "obj[1]"),
    (lambda: {"a": [0, _cyclic_list()]}, "obj['a'][1]", "obj['a'][1][1]"),
    (lambda: _cyclic_dict(), "obj[0]", "obj[0]['me']"),
    (lambda: _long_cycle(30), "obj", "obj" + "[0]" * 30),
    (lambda: _long_cycle(200), "obj", "obj" + "[0]" * 10 + "...(180 more)..." + "[0]" * 10),
])
def test_a_cycle_without_refs_says_where_it_is(build, where, again):
    with pytest.raises(qwire.EncodeError) as e:
        qwire.dumps(build())
    text = str(e.value)
    assert text.startswith(f"circular reference at {where}: ")
    assert f"at {again} " in text and "refs=True" in text
    assert not isinstance(e.value, RecursionError)


def _cyclic_list():
    a = [1]
    a.append(a)
    return a


def _cyclic_dict():
    d = {}
    d["me"] = d
    return [d]


def _long_cycle(n):
    head = [None]
    node = head
    for _ in range(n - 1):
        node[0] = [None]
        node = node[0]
    node[0] = head
    return head


def test_a_cycle_through_registered_objects_without_refs():
    a = Node("a")
    a.other = [a]
    with pytest.raises(qwire.EncodeError, match=r"circular reference at obj: .* at obj\.other\[0\]"):
        qwire.dumps(a, registry=REG)


@pytest.mark.slow
def test_looking_for_a_cycle_after_a_depth_error_is_bounded():
    """After a depth error the encoder looks for a cycle to name; in 60 000 levels it stops soon
    (at most 100 000 objects are visited, and paths are not copied as the walk goes)."""
    deep = 0
    for _ in range(60_000):
        deep = [deep]
    t = time.perf_counter()
    with pytest.raises(qwire.EncodeError, match="max_depth=1000"):
        qwire.Encoder(max_depth=1000).encode(deep)
    assert time.perf_counter() - t < 10


def test_deep_nesting_without_a_cycle_keeps_the_depth_error():
    deep = []
    for _ in range(300):
        deep = [deep]
    with pytest.raises(qwire.EncodeError, match="max_depth"):
        qwire.dumps(deep)


# ---- random graphs ------------------------------------------------------------------------------------------

def _same_shape(a, b, pairs=None):
    """a and b have the same values and the same sharing: object identity maps one to one."""
    if pairs is None:
        pairs = {}
    if isinstance(a, (list, dict, set, tuple, Node)):
        if id(a) in pairs:
            return pairs[id(a)] is b
        if any(v is b for v in pairs.values()):
            return False
        pairs[id(a)] = b
    if type(a) is not type(b):
        return False
    if type(a) in (list, tuple):
        return len(a) == len(b) and all(_same_shape(x, y, pairs) for x, y in zip(a, b))
    if type(a) is dict:
        return list(a) == list(b) and all(_same_shape(a[k], b[k], pairs) for k in a)
    if type(a) is Node:
        return a.name == b.name and _same_shape(a.other, b.other, pairs)
    return a == b


@st.composite
def graphs(draw):
    """Up to 8 containers (lists, dicts, registered nodes) with random edges between them:
    shared references and cycles of every length; optionally wrapped in tuples."""
    kinds = draw(st.lists(st.sampled_from(["list", "dict", "node"]), min_size=1, max_size=8))
    nodes = [[] if k == "list" else {} if k == "dict" else Node(f"n{i}") for i, k in enumerate(kinds)]
    for i, node in enumerate(nodes):
        targets = draw(st.lists(st.integers(0, len(nodes) - 1), max_size=3))
        for j, t in enumerate(targets):
            child = nodes[t]
            if draw(st.booleans()):
                child = (child, j)
            if isinstance(node, list):
                node.append(child)
            elif isinstance(node, dict):
                node[f"k{j}"] = child
            else:
                node.other = child
    return nodes[0]


@settings(max_examples=100)
@given(graphs())
def test_random_graphs_keep_their_shape(g):
    y = rt(g)
    assert _same_shape(g, y)
    assert _same_shape(pickle.loads(pickle.dumps(g)), y)


@settings(max_examples=100)
@given(python_values(max_leaves=8))
def test_refs_true_decodes_trees_to_the_same_values(x):
    assert_pysame(qwire.loads(qwire.dumps(x, refs=True, registry=REGISTRY), registry=REGISTRY), x)


# ---- the records, pinned, and malformed ------------------------------------------------------------------

def test_reference_records_are_pinned():
    a = []
    assert bytes(qwire.dumps([a, a], refs=True))[8:].hex() == (
        "7022" "000002000000" "7022" "000000000000" "7021" "fa01000000")
    t = ([],)
    t[0].append(t)
    assert bytes(qwire.dumps(t, refs=True))[8:].hex() == (
        "7023" "000002000000"                                   # the tuple, defined once complete ...
        "7001" "000001000000" "7022" "000001000000"             # ... holding the list (#0) ...
        "7023" "000002000000" "7001" "000001000000" "7021" "fa00000000" "fa00000080"   # ... it again (#1)
        "fa01000000")                                           # ... so the outer copy is #1


MALFORMED = [
    ("reference before any definition", "7021 fa00000000"),
    ("reference to an object still being decoded", "7022 7001 000001000000 7021 fa00000000"),
    ("reference, not an int", "7021 f90000000000000000"),
    ("negative reference", "000002000000 7022000000000000 7021 faffffffff"),
    ("definition repeating a later object", "7023 000002000000 6500 fa05000000"),
    ("definition of 3", "7023 000003000000 6500 fa00000080 6500"),
    ("definition without index", "7023 000002000000 6500 f90000000000000000"),
    ("dict definition with duplicate keys", "7022 63 0b0002000000 6100 6100 000002000000 6500 6500"),
    ("dict definition, keys and values differ", "7022 63 0b0001000000 6100 000002000000 6500 6500"),
    ("dict definition, typed keys", "7022 63 070001000000 0100000000000000 000001000000 6500"),
    ("set definition with unhashable item", "7022 7002 000001000000 000000000000"),
    ("truncated definition", "7022"),
]


@pytest.mark.parametrize("what, hexstr", MALFORMED, ids=[m[0] for m in MALFORMED])
def test_malformed_reference_records(what, hexstr):
    with pytest.raises(qwire.DecodeError) as e:
        qwire.loads(message(bytes.fromhex(hexstr.replace(" ", ""))))
    assert e.value.offset is not None


def test_refs_true_reuses_a_cached_encoder():
    a = [1]
    assert qwire.loads(qwire.dumps([a, a], refs=True)) == [[1], [1]]
    assert qwire.loads(qwire.dumps([a, a], refs=1)) == [[1], [1]]
    enc = qwire.Encoder(refs=True)
    assert enc.refs and not enc.q_compatible
    y = qwire.loads(enc.encode([a, a]))
    assert y[0] is y[1]
    e2 = pickle.loads(pickle.dumps(enc))
    assert e2.refs and e2.registry is qwire.default_registry


def test_points_and_pairs_share_through_refs():
    p = Point(1, [])
    pair = Pair(p, p)
    q = qwire.loads(qwire.dumps([pair, pair], refs=True, registry=REGISTRY), registry=REGISTRY)
    assert q[0] is q[1] and q[0].left is q[0].right



# ---- the state kept between calls (refs.pxi: _enc_spare; refs_read.pxi: _dec_spare) ------------------------------------
# One emptied state is reused from call to call; these check that nothing of one message reaches
# the next: not its indices, not its tracked addresses, not its objects, and not after a failure.

class Tracked:
    """Registered with encode/decode; remembers (weakly) every instance the decoder builds."""
    built: list = []

    def __init__(self, value=None):
        self.value = value


def _build_tracked(value):
    t = Tracked(value)
    Tracked.built.append(weakref.ref(t))
    return t


REG.register(Tracked, encode=lambda t: t.value, decode=_build_tracked)


def test_indices_start_again_at_zero_after_a_message():
    a, b = [1], [1]
    first = bytes(qwire.dumps([a, a], refs=True))
    assert bytes(qwire.dumps([b, b], refs=True)) == first
    assert first.endswith(bytes.fromhex("7021fa01000000"))     # the outer list is #0, a is #1
    # a reference to #0 with nothing defined before it, right after a message that defined #0
    qwire.loads(first)
    with pytest.raises(qwire.DecodeError, match="not defined before this point"):
        qwire.loads(message(bytes.fromhex("7021fa00000000")))


def test_addresses_of_the_last_message_are_forgotten():
    # The memo holds addresses; freed objects' addresses are soon reused by new ones. Distinct new
    # objects must each be defined, never written as references to the last message's objects.
    for n in (3, 40):          # within the memo's first table, and grown past it
        for _ in range(20):
            shared = [[i] for i in range(n)]
            x = qwire.loads(qwire.dumps(shared + shared, refs=True))
            assert all(x[i] is x[i + n] for i in range(n))
            del shared, x
            fresh = [[i] for i in range(2 * n)]
            y = qwire.loads(qwire.dumps(fresh, refs=True))
            assert y == fresh and len({id(v) for v in y}) == 2 * n


def _tuple_cycle():
    t = ([],)
    t[0].append(t)
    return [t, (t,), Selfish()]


ENC_FAILURES = [
    lambda: [[1], Selfish()],                                   # a cycle no decoder can rebuild, after a definition
    _tuple_cycle,                                               # fails with tuples being written (the active table)
    lambda: [[1]] * 3 + [Wrapper([object()])],                  # refused inside a custom record's payload
    lambda: [list(range(i)) for i in range(30)] + [object()],   # a grown memo, then a refusal
]


@pytest.mark.parametrize("bad", ENC_FAILURES, ids=["cycle", "active", "payload", "grown"])
def test_an_encoder_after_a_failed_message_writes_the_next_one_identically(bad):
    a = [1]
    goods = [[a, a], {"k": a, "j": [a, (a,)]}, Wrapper([a, a]), [Node("n", a), a], list(range(5)),
             [[i] for i in range(20)] * 2]
    expected = [bytes(qwire.Encoder(refs=True, registry=REG).encode(g)) for g in goods]
    enc = qwire.Encoder(refs=True, registry=REG)
    for _ in range(3):
        with pytest.raises(qwire.EncodeError):
            qwire.dumps(bad(), refs=True, registry=REG)
        assert [bytes(qwire.dumps(g, refs=True, registry=REG)) for g in goods] == expected
        with pytest.raises(qwire.EncodeError):
            enc.encode(bad())
        assert [bytes(enc.encode(g)) for g in goods] == expected


def _truncations(msg):
    body = msg[8:]
    return [message(body[:k]) for k in range(1, len(body))]


def test_a_decoder_after_a_failed_message_decodes_the_next_one_identically():
    a = [1]
    goods = [[a, a], {"k": a, "j": [a, (a,)]}, [Node("n", a), a], Wrapper([a, a]), [[a, a]] * 2,
             [Tracked([a]), a] * 2]
    msgs = [bytes(qwire.dumps(g, refs=True, registry=REG)) for g in goods]
    dec = qwire.Decoder(registry=REG)
    first = [dec.decode(m) for m in msgs]
    bads = [message(bytes.fromhex(m[1].replace(" ", ""))) for m in MALFORMED]
    for m in msgs:
        bads += _truncations(m)                # failing after definitions, references, built objects
    for bad in bads:
        for decode in (dec.decode, lambda m: qwire.loads(m, registry=REG)):
            with pytest.raises(qwire.DecodeError):
                decode(bad)
        for m, f in zip(msgs, first):
            for got in (dec.decode(m), qwire.loads(m, registry=REG)):
                assert type(got) is type(f)
                assert bytes(qwire.dumps(got, refs=True, registry=REG)) == m    # the same values and sharing


def test_no_decoded_object_outlives_its_message():
    Tracked.built.clear()
    ok = bytes(qwire.dumps([Tracked([1]), Tracked([2])] * 2, refs=True, registry=REG))
    x = qwire.loads(ok, registry=REG)
    assert x[0] is x[2] and x[1] is x[3]
    del x
    with pytest.raises(qwire.DecodeError):     # fails after building both objects
        qwire.loads(message(ok[8:-1]), registry=REG)
    gc.collect()
    assert len(Tracked.built) == 4 and all(r() is None for r in Tracked.built)


def test_values_made_while_writing_are_released_after_the_message():
    made = []

    class Made:
        pass

    def encode(v):
        n = Node("made")          # a registered object the encode function makes: kept while writing
        made.append(weakref.ref(n))
        return n

    reg = qwire.Registry()
    reg.register(Node)
    reg.register(Made, encode=encode, decode=lambda v: Made())
    qwire.dumps([Made(), Made()], refs=True, registry=reg)
    with pytest.raises(qwire.EncodeError):
        qwire.dumps([Made(), object()], refs=True, registry=reg)
    gc.collect()
    assert len(made) == 3 and all(r() is None for r in made)


def test_nested_calls_from_encode_and_decode_functions():
    # A custom encode/decode function that itself calls dumps/loads with refs=True runs while the
    # outer call holds its state: the inner call must get its own, and the outer one go on unharmed.
    inner_a = [7]
    inner = bytes(qwire.dumps([inner_a, inner_a], refs=True))

    class Outer:
        pass

    def decode(v):
        y = qwire.loads(inner)
        assert y[0] is y[1]
        return v

    reg = qwire.Registry()
    reg.register(Outer, encode=lambda o: qwire.loads(qwire.dumps([inner_a, inner_a], refs=True)), decode=decode)
    a = [1]
    x = qwire.loads(qwire.dumps([a, Outer(), a, Outer(), a], refs=True, registry=reg), registry=reg)
    assert x[0] is x[2] is x[4] and x[1] == x[3] == [[7], [7]]
