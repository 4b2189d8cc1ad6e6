"""The record key cache (cython/symtab.pxi): a dict's key symbols are remembered across messages.

A cache hit must give exactly what a fresh decode gives (values, errors and their offsets), keys
that differ anywhere must never share an entry, duplicate keys are never cached, the cache stays
within its bound whatever the input, and threads sharing it see no mixups.
"""
import struct
import sys
import threading

import pytest

import qwire
from fuzz import hostile
from qwire import _core
from qwire.errors import DecodeError
from qwire.values import Dict

SLOTS = 64
MAX_KEYS = 32
MAX_BYTES = 256


@pytest.fixture(autouse=True)
def empty_cache():
    _core._keycache_clear()
    yield
    _core._keycache_clear()


def record(keys, values_items, order=hostile.LE):
    """A dict message: symbol vector of `keys` (bytes), general list of encoded items."""
    syms = hostile.vec(11, len(keys), b"".join(k + b"\x00" for k in keys), order=order)
    return hostile.message(hostile.dictionary(syms, hostile.general_list(values_items, order=order)), order=order)


def longs(*vs, order=hostile.LE):
    return [b"\xf9" + struct.pack(order + "q", v) for v in vs]


def cold(data, **kw):
    """The outcome of decoding `data` with an empty cache (the cache is left as it was)."""
    saved = [(k, v) for k, v in _core._keycache_info()]
    _core._keycache_clear()
    try:
        return outcome(data, **kw)
    finally:
        _core._keycache_clear()
        for _, keys in saved:
            # re-warm: decoding a record with these keys puts them back
            qwire.loads(record([k.encode("utf-8", "surrogateescape") for k in keys], longs(*range(len(keys)))))


def outcome(data, **kw):
    try:
        v = qwire.loads(data, **kw)
    except DecodeError as e:
        return ("DecodeError", e.reason, e.offset)
    return ("ok", type(v), repr(v))


def test_repeat_hits_and_shares_key_objects():
    d1 = qwire.loads(qwire.dumps({"id": 1, "price": 2.5, "size": 3}))
    assert len(_core._keycache_info()) == 1
    d2 = qwire.loads(qwire.dumps({"id": 4, "price": 5.5, "size": 6}))
    assert d1 == {"id": 1, "price": 2.5, "size": 3}
    assert d2 == {"id": 4, "price": 5.5, "size": 6}
    assert all(a is b for a, b in zip(d1, d2))      # the second decode took the cached str objects
    assert len(_core._keycache_info()) == 1


@pytest.mark.parametrize(
    "first, second",
    [
        ([b"price", b"size"], [b"price", b"sizf"]),          # last byte of the last key
        ([b"price", b"size"], [b"price", b"siz"]),           # a shorter last key
        ([b"price", b"size"], [b"price", b"sizes"]),         # a longer last key
        ([b"price", b"size"], [b"pric", b"esize"]),          # same bytes, NUL elsewhere
        ([b"price", b"size"], [b"price"]),                   # fewer keys (same first key)
        ([b"price", b"size"], [b"price", b"size", b"x"]),    # more keys
        ([b"abcdefgh1", b"k"], [b"abcdefgh2", b"k"]),       # differ after the 8 hashed bytes
        ([b"a", b"b"], [b"a", b"c"]),                        # keys shorter than 8 bytes
        ([b"", b"b"], [b"", b"c"]),                          # an empty key
        ([b"\xc3\xa9t\xc3\xa9", b"b"], [b"\xc3\xa9t\xc3\xa9", b"\xff"]),  # non-ASCII, invalid UTF-8
    ],
)
def test_keys_differing_slightly(first, second):
    for keys in (first, second, first, second):
        data = record(keys, longs(*range(len(keys))))
        got = qwire.loads(data)
        assert list(got) == [k.decode("utf-8", "surrogateescape") for k in keys]
        assert list(got.values()) == list(range(len(keys)))
    assert outcome(data) == cold(data)


def test_big_endian_and_little_endian_share_entries_correctly():
    keys = [b"alpha", b"beta"]
    le = record(keys, longs(1, 2))
    be = record(keys, longs(1, 2, order=hostile.BE), order=hostile.BE)
    assert qwire.loads(le) == qwire.loads(be) == {"alpha": 1, "beta": 2}
    assert qwire.loads(be) == {"alpha": 1, "beta": 2}


def test_duplicate_keys_are_never_cached():
    data = record([b"a", b"b", b"a"], longs(1, 2, 3))
    for _ in range(3):
        v = qwire.loads(data)
        assert type(v) is Dict
        assert list(v.keys) == ["a", "b", "a"] and v.values == [1, 2, 3]
    assert _core._keycache_info() == []
    # the distinct prefix cached by another message does not make the duplicate one a dict
    qwire.loads(record([b"a", b"b"], longs(1, 2)))
    v = qwire.loads(data)
    assert type(v) is Dict and v.values == [1, 2, 3]


def test_not_cached_beyond_the_bounds():
    many = [b"k%d" % i for i in range(MAX_KEYS + 1)]
    qwire.loads(record(many, longs(*range(len(many)))))
    long_ = [b"x" * (MAX_BYTES // 2), b"y" * (MAX_BYTES // 2)]
    qwire.loads(record(long_, longs(1, 2)))
    assert _core._keycache_info() == []
    ok = [b"k%d" % i for i in range(MAX_KEYS)]
    qwire.loads(record(ok, longs(*range(len(ok)))))
    assert len(_core._keycache_info()) == 1


def test_bounded_under_many_shapes():
    for i in range(5000):
        keys = [b"key%d" % i, b"other%d" % (i * 7)]
        assert qwire.loads(record(keys, longs(i, -i))) == {keys[0].decode(): i, keys[1].decode(): -i}
    info = _core._keycache_info()
    assert 0 < len(info) <= SLOTS
    assert all(len(b) <= MAX_BYTES and len(k) <= MAX_KEYS for b, k in info)


def test_colliding_shapes_stay_correct():
    # Same key count and first key: the same slot pair; many of them evict each other.
    shapes = [[b"timestamp", b"v%d" % i] for i in range(10)]
    for _ in range(3):
        for i, keys in enumerate(shapes):
            assert qwire.loads(record(keys, longs(i, i + 1))) == {"timestamp": i, "v%d" % i: i + 1}


@pytest.mark.parametrize("cut", range(1, 40))
def test_malformed_message_with_cached_keys(cut):
    keys = [b"id", b"price", b"size"]
    good = record(keys, longs(1, 2, 3))
    qwire.loads(good)                     # cached
    bad = good[:-cut]
    bad = hostile.header(len(bad)) + bad[8:]
    assert outcome(bad)[0] == "DecodeError"
    assert outcome(bad) == cold(bad)


@pytest.mark.parametrize(
    "values_item",
    [
        hostile.general_list(longs(1, 2)),                           # too few values
        hostile.general_list(longs(1, 2, 3, 4)),                     # too many
        hostile.int_vector([1, 2, 3]),                               # not a general list
        hostile.vec(0, 3, b"\xf9" + b"\x00" * 8 + b"\xf9\x00"),     # truncated inside a value
        hostile.vec(0, 3, b"\xf9" + b"\x00" * 8 + b"\x60\x00" * 2),  # bad type in a value
        hostile.vec(0, 3, b"\xf9" + b"\x00" * 8 * 3, attr=9),        # bad attribute
    ],
)
def test_malformed_values_after_cached_keys(values_item):
    keys = [b"id", b"price", b"size"]
    qwire.loads(record(keys, longs(1, 2, 3)))
    bad = hostile.message(hostile.dictionary(hostile.symbols(keys), values_item))
    assert outcome(bad) == cold(bad)
    # and the cache still answers right afterwards
    assert qwire.loads(record(keys, longs(7, 8, 9))) == {"id": 7, "price": 8, "size": 9}


def test_nested_records_and_lists_of_records():
    value = {"a": {"b": 1, "c": {"a": 2}}, "b": [{"a": 1, "b": 2}, {"a": 3, "b": 4}, {"b": 5, "a": 6}]}
    data = qwire.dumps(value)
    for _ in range(3):
        assert qwire.loads(data) == value
    other = {"a": {"b": 1, "d": {"a": 2}}, "b": [{"a": 1, "b": 2}, {"a": 3, "c": 4}]}
    assert qwire.loads(qwire.dumps(other)) == other
    assert qwire.loads(data) == value


def test_threads_share_the_cache():
    # Shapes that collide in the same slots, decoded concurrently: every result must be right.
    shapes = [[b"field", b"n%d" % i, b"z"] for i in range(12)]
    messages = [(record(k, longs(i, 2 * i, 3 * i)), {k[0].decode(): i, k[1].decode(): 2 * i, "z": 3 * i})
                for i, k in enumerate(shapes)]
    errors = []
    old = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)

    def work(offset):
        try:
            for n in range(3000):
                data, want = messages[(n * 5 + offset) % len(messages)]
                got = qwire.loads(data)
                if got != want or list(got) != list(want):
                    errors.append((got, want))
                    return
        except Exception as e:      # pragma: no cover - reported below
            errors.append(e)

    try:
        threads = [threading.Thread(target=work, args=(i,)) for i in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        sys.setswitchinterval(old)
    assert errors == []
