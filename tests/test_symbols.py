"""Symbol decoding (cython/symtab.pxi, decode.pxi): a symbol is found and hashed in one step, by a
word read when 8 bytes are left and byte by byte otherwise; the interning table compares short
symbols by that word. Every path must give the same str, errors must keep their offsets, and equal
symbols found by different paths must still be one object in an interned (>= 512-byte) message.
"""
import itertools
import random

import numpy as np
import pytest

import qwire
from fuzz import hostile
from qwire.errors import DecodeError


def sym_vector_message(names, pad_to=0):
    """A symbol vector message; pad_to > 0 makes it at least that big (interning is on from 512)."""
    names = list(names)
    if pad_to:
        filler = b"f" * 40
        while len(hostile.message(hostile.symbols(names))) < pad_to:
            names.insert(0, filler)
    return names, hostile.message(hostile.symbols(names))


def expected(names):
    return [n.decode("utf-8", "surrogateescape") for n in names]


TRICKY = [
    b"", b"a", b"ab", b"abc", b"abcdefg", b"abcdefgh", b"abcdefghi", b"x" * 15, b"x" * 16, b"x" * 17,
    b"y" * 64, b"y" * 65, b"\x01", b"\x01\x01\x01\x01\x01\x01\x01", b"\x80", b"\x81\x01", b"\xff" * 7,
    b"\x7f\x80\x01", b"\xc3\xa9", b"\xe2\x82\xac" * 3, b"S000", b"S001", b"S100",
]


@pytest.mark.parametrize("pad_to", [0, 600])
def test_every_length_and_byte_pattern(pad_to):
    names, data = sym_vector_message(TRICKY, pad_to)
    got = qwire.loads(data)
    assert got.tolist() == expected(names)


@pytest.mark.parametrize("pad_to", [0, 600])
def test_symbols_near_the_end_take_the_byte_path(pad_to):
    # The last symbols have fewer than 8 bytes after them: the byte-by-byte path; the same
    # symbols earlier in the vector take the word path. Both must agree, and when interning is
    # on they must be the very same objects.
    tail = [b"ab", b"c", b"S01"]
    names, data = sym_vector_message(tail + [b"zz"] * 3 + tail, pad_to)
    got = qwire.loads(data).tolist()
    assert got == expected(names)
    if pad_to:
        k = len(names) - len(tail)
        for a, b in zip(got[k - 3 - len(tail):k - 3], got[k:]):
            assert a is b


def test_interned_symbols_are_shared_in_big_messages():
    rng = random.Random(5)
    pool = [b"S%03d" % i for i in range(100)] + [b"long_symbol_name_%d" % i for i in range(20)]
    names = [rng.choice(pool) for _ in range(5000)]
    got = qwire.loads(hostile.message(hostile.symbols(names))).tolist()
    assert got == expected(names)
    first = {}
    for s in got:
        assert first.setdefault(s, s) is s


def test_many_distinct_symbols():
    # Past the intern table's probation: interning switches off; values stay right.
    names = [b"%x" % i for i in range(20000)]
    got = qwire.loads(hostile.message(hostile.symbols(names))).tolist()
    assert got == expected(names)


@pytest.mark.parametrize("n", range(0, 12))
def test_missing_nul_reports_the_symbol_offset(n):
    body = b"ok\x00" + b"q" * n          # the second symbol never ends
    data = hostile.message(hostile.vec(11, 2, body))
    with pytest.raises(DecodeError) as e:
        qwire.loads(data)
    assert e.value.offset == 8 + 6 + 3
    assert "not NUL-terminated" in e.value.reason


@pytest.mark.parametrize("n", range(0, 12))
def test_missing_nul_in_dict_keys(n):
    body = b"ok\x00" + b"q" * n
    data = hostile.message(b"\x63" + hostile.vec(11, 2, body))
    with pytest.raises(DecodeError) as e:
        qwire.loads(data)
    assert e.value.offset == 8 + 1 + 6 + 3


def test_symbol_atoms_lists_and_dict_keys_agree():
    for a, b in itertools.product(TRICKY[:12], repeat=2):
        if a == b:
            continue
        v = {a.decode("latin-1"): [a.decode("latin-1"), b.decode("latin-1")]}
        assert qwire.loads(qwire.dumps(v)) == v


def test_roundtrip_object_arrays_of_symbols():
    arr = np.array([s.decode("utf-8", "surrogateescape") for s in TRICKY] * 50, dtype=object)
    got = qwire.loads(qwire.dumps(arr))
    assert got.dtype == object and got.tolist() == arr.tolist()


@pytest.mark.parametrize("name", TRICKY)
@pytest.mark.parametrize("big", [False, True])
def test_symbol_atoms(name, big):
    # As the last item (byte path near the end) and first in a list (word path); interned when big.
    atom = b"\xf5" + name + b"\x00"
    items = [atom, atom] + ([b"\xf5" + b"p" * 40 + b"\x00"] * 15 if big else []) + [atom]
    got = qwire.loads(hostile.message(hostile.general_list(items)))
    want = name.decode("utf-8", "surrogateescape")
    assert got[0] == got[1] == got[-1] == want
    if big and len(name) <= 64:      # longer symbols are not interned
        assert got[0] is got[1] is got[-1]


@pytest.mark.parametrize("n", range(0, 12))
def test_symbol_atom_missing_nul(n):
    data = hostile.message(hostile.general_list([b"\xf5ok\x00", b"\xf5" + b"q" * n]))
    with pytest.raises(DecodeError) as e:
        qwire.loads(data)
    assert e.value.offset == 8 + 6 + 4 + 1
    assert "not NUL-terminated" in e.value.reason
