"""Only qwire's errors escape decoding (issue 11, item 5, the decode side).

Whatever else goes wrong while a message is decoded (a registered class's decode function raising
anything, recursing too deep; NumPy refusing an N-d shape; CPython refusing to format a 5,000-digit
int in an error message) is a DecodeError that says where, with the original exception as its
__cause__. MemoryError stays a MemoryError, and a q error message is still a QError.
"""
import enum
import struct

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import qwire
from fuzz import hostile as h
from qwire.errors import DecodeError

RAISED: dict = {}


class Hooked:
    """Registered with a decode function that raises what the test asks for."""


def _decode_hooked(state):
    raise RAISED["exc"]


def _recurse(state):
    return _recurse(state)


class Deep:
    pass


class Perm(enum.IntFlag):
    R = 4
    W = 2
    X = 1


class Colour(enum.Enum):
    RED = 1


REG = qwire.Registry()
REG.register(Hooked, "Hooked", encode=lambda o: 0, decode=_decode_hooked)
REG.register(Deep, "Deep", encode=lambda o: 0, decode=_recurse)
REG.register(Perm, "Perm")
REG.register(Colour, "Colour")

EXCEPTIONS = [TypeError("no"), AttributeError("missing"), KeyError("k"), ValueError("bad"), RuntimeError("x"),
              ZeroDivisionError(), IndexError(), StopIteration(), UnicodeDecodeError("utf-8", b"\xff", 0, 1, "bad"),
              LookupError(), OverflowError(), AssertionError()]


def _hooked_message():
    return bytes(qwire.dumps([1, Hooked()], registry=REG))


@pytest.mark.parametrize("exc", EXCEPTIONS, ids=lambda e: type(e).__name__)
def test_a_decode_function_raising_anything_is_a_decode_error_with_its_cause(exc):
    RAISED["exc"] = exc
    with pytest.raises(DecodeError, match="Hooked") as info:
        qwire.loads(_hooked_message(), registry=REG)
    assert info.value.__cause__ is exc and info.value.offset is not None


def test_an_exception_whose_text_cannot_be_formatted():
    """Its str() raises (CPython refuses to format an int of more than 4300 digits)."""
    class Unprintable(Exception):
        def __str__(self):
            return str(10 ** 5000)

    RAISED["exc"] = Unprintable()
    with pytest.raises(DecodeError, match="Unprintable") as info:
        qwire.loads(_hooked_message(), registry=REG)
    assert isinstance(info.value.__cause__, Unprintable)


def test_a_decode_function_recursing_without_end():
    with pytest.raises(DecodeError, match="RecursionError") as info:
        qwire.loads(bytes(qwire.dumps(Deep(), registry=REG)), registry=REG)
    assert isinstance(info.value.__cause__, RecursionError)


def _bigint_record(n):
    raw = n.to_bytes((n.bit_length() + 8) // 8, "little", signed=True)
    return h.ext(0x07, h.vec(4, len(raw), raw))


@pytest.mark.parametrize("name", ["Perm", "Colour"])
def test_an_enum_given_a_5000_digit_int(name):
    msg = h.message(h.registered_custom(name, _bigint_record(10 ** 5000)))
    with pytest.raises(DecodeError, match=name) as info:
        qwire.loads(msg, registry=REG)
    assert "digits" not in str(info.value) or "bits" in str(info.value)


def test_numpy_refusing_an_nd_shape_is_a_decode_error():
    """An N-d array record whose shape has a zero (so no data) but whose other dimensions
    multiply past what NumPy can index: NumPy says 'array is too big'."""
    shape = h.vec(7, 3, struct.pack("<3q", 0, 2 ** 62, 2 ** 62))
    payload = h.general_list([b"\xf5<i8\x00", shape, b"\xf5C\x00", h.vec(4, 0)])
    with pytest.raises(DecodeError) as info:
        qwire.loads(h.message(h.ext(0x10, payload)))
    assert info.value.offset is not None
    assert isinstance(info.value.__cause__, ValueError) or "shape" in info.value.reason


@settings(max_examples=60, deadline=None)
@given(exc=st.sampled_from([TypeError, AttributeError, KeyError, ValueError, RuntimeError, OSError, NameError,
                            ArithmeticError, BufferError, EOFError, ImportError, NotImplementedError]),
       text=st.text(max_size=20), where=st.integers(0, 30))
def test_generated_hook_failures_anywhere_in_a_message(exc, text, where):
    RAISED["exc"] = exc(text)
    value = [list(range(where)), {"k": [Hooked()]}, "after"]
    with pytest.raises(DecodeError) as info:
        qwire.loads(bytes(qwire.dumps(value, registry=REG)), registry=REG)
    assert type(info.value.__cause__) is exc and info.value.offset > 8


def test_memory_errors_and_q_errors_keep_their_types():
    RAISED["exc"] = MemoryError()
    with pytest.raises(MemoryError):
        qwire.loads(_hooked_message(), registry=REG)
    with pytest.raises(qwire.QError):
        qwire.loads(b"\x01\x02\x00\x00\x0e\x00\x00\x00\x80type\x00")


def test_views_of_decoded_arrays_are_unaffected():
    arr = np.arange(12).reshape(3, 4)
    assert (qwire.loads(qwire.dumps(arr)) == arr).all()
