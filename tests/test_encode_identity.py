"""refs=True keys its memo on object identity, and an identity is only an address while the object
lives: every object the memo holds stays alive until the message is written, so a temporary the
encoder makes and frees mid-message (the list a Vector of a generator becomes, a registered encode
function's value, a property's fresh list) never leaves its address to a later object, which would
then be written as a reference to the first."""
from __future__ import annotations

import dataclasses
import gc

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

import qwire
from qwire import Vector


def fresh_lists(rows):
    """A generator yielding a new list per row (nothing else holds them)."""
    return (list(row) for row in rows)


rows_of_ints = st.lists(st.lists(st.integers(-(2**63), 2**63 - 1), max_size=4), min_size=1, max_size=6)


def test_the_reported_instance_two_vectors_of_generators():
    """[Vector(gen_a, "list"), Vector(gen_b, "list")] of generators of lists: the second comes back
    with its own items, not the first's."""
    a = [[0, 1], [1, 2], [2, 3]]
    b = [[10], [20], [30]]
    out = qwire.loads(qwire.dumps([Vector(fresh_lists(a), "list"), Vector(fresh_lists(b), "list")], refs=True))
    assert out == [a, b]


@given(st.lists(rows_of_ints, min_size=2, max_size=5))
def test_vectors_of_generators_keep_their_own_items(groups):
    """Any number of generator-backed Vectors, each of fresh lists: every item comes back as written,
    and no two decoded items are one object (none was shared in the input)."""
    value = [Vector(fresh_lists(rows), "list") for rows in groups]
    out = qwire.loads(qwire.dumps(value, refs=True))
    assert out == groups
    items = [item for group in out for item in group]
    assert len({id(x) for x in items}) == len(items)


@given(rows_of_ints, st.integers(1, 4))
def test_a_shared_object_among_temporaries_stays_one_object(rows, repeats):
    """A list the caller shares, reached between temporaries, is still written once and referenced:
    holding the temporaries changes nothing about the objects that really are shared."""
    shared = [1, 2, 3]
    value = []
    for _ in range(repeats):
        value.append(Vector(fresh_lists(rows), "list"))
        value.append(shared)
    out = qwire.loads(qwire.dumps(value, refs=True))
    shared_out = out[1::2]
    assert all(x is shared_out[0] for x in shared_out) and shared_out[0] == shared
    assert [x for x in out[0::2]] == [rows] * repeats


@given(st.lists(st.lists(st.integers(0, 100), max_size=3), min_size=2, max_size=6))
def test_registered_encode_functions_returning_fresh_containers(states):
    """A class registered with encode= whose encode function builds a new list each call: every
    object comes back with its own state."""
    registry = qwire.Registry()

    class Box:
        def __init__(self, items):
            self.items = items

    registry.register(Box, "test.Box", encode=lambda b: [list(x) for x in b.items], decode=lambda s: Box(s))
    value = [Box([s, s[::-1]]) for s in states]
    out = qwire.loads(qwire.dumps(value, refs=True, registry=registry), registry=registry)
    assert [b.items for b in out] == [[s, s[::-1]] for s in states]


@given(st.lists(st.integers(0, 1000), min_size=2, max_size=8))
def test_properties_returning_fresh_lists(values):
    """A registered slots dataclass whose field is read through a property that makes a new list each
    time: each object's field comes back as its own."""
    registry = qwire.Registry()

    @dataclasses.dataclass
    class Point:
        x: int

    registry.register(Point, "test.Point")
    objs = [Point(v) for v in values]
    out = qwire.loads(qwire.dumps([[o, [o.x, o.x + 1]] for o in objs], refs=True, registry=registry),
                      registry=registry)
    assert [[p.x, pair] for p, pair in out] == [[v, [v, v + 1]] for v in values]


def test_temporaries_are_released_after_the_message():
    """Holding the memo's objects lasts for one encode call: a temporary the encoder memoized (a
    registered dataclass an encode function made) is freed once dumps returns."""
    import weakref

    registry = qwire.Registry()

    @dataclasses.dataclass
    class Token:
        n: int

    class Wrapper:
        def __init__(self, n):
            self.n = n

    made = []

    def encode(w):
        t = Token(w.n)
        made.append(weakref.ref(t))
        return t

    registry.register(Token, "test.Token")
    registry.register(Wrapper, "test.Wrapper", encode=encode, decode=lambda t: Wrapper(t.n))
    m = qwire.dumps([Wrapper(i) for i in range(5)], refs=True, registry=registry)
    gc.collect()
    assert len(made) == 5 and all(r() is None for r in made)
    assert [w.n for w in qwire.loads(m, registry=registry)] == list(range(5))


def test_arrays_made_during_encoding_keep_their_own_data():
    """Arrays converted on the way (a memoryview becomes an array per item) are memoized arrays too:
    two different ones never merge."""
    value = [memoryview(np.arange(n, dtype=np.float64)) for n in (3, 3, 4, 4)]
    out = qwire.loads(qwire.dumps(value, refs=True))
    assert [a.tolist() for a in out] == [[0.0, 1.0, 2.0]] * 2 + [[0.0, 1.0, 2.0, 3.0]] * 2
    assert len({id(a) for a in out}) == 4


def test_a_temporary_whose_finalizer_encodes_again():
    """Releasing the memo's temporaries may run their __del__, which may encode with refs=True
    itself: both messages come out whole, and the next encode is unaffected."""
    registry = qwire.Registry()
    inner = []

    @dataclasses.dataclass
    class Temp:
        n: int

        def __del__(self):
            inner.append(qwire.dumps([[self.n], [self.n]], refs=True))

    class Source:
        def __init__(self, n):
            self.n = n

    registry.register(Temp, "test.Temp")
    registry.register(Source, "test.Source", encode=lambda s: Temp(s.n), decode=lambda t: Source(t.n))
    m = qwire.dumps([Source(i) for i in range(4)], refs=True, registry=registry)
    gc.collect()
    made_while_encoding = list(inner)      # (decoding below makes Temps too, whose __del__ runs later)
    assert sorted(qwire.loads(x)[0][0] for x in made_while_encoding) == [0, 1, 2, 3]
    assert all(len(qwire.loads(x)) == 2 for x in made_while_encoding)
    assert [s.n for s in qwire.loads(m, registry=registry)] == [0, 1, 2, 3]
    assert qwire.loads(qwire.dumps([[5], [6]], refs=True)) == [[5], [6]]
