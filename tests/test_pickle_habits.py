"""A pickle user's habits work: qwire's errors are caught as pickle's, `dumps(obj, protocol)` and
`dump(obj, f, protocol)` take (and ignore) a positional protocol, and memoryview values encode as
the NumPy array over the same memory (docs/FROM_PICKLE.md)."""
from __future__ import annotations

import io
import pickle

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import qwire


def test_errors_are_caught_as_pickles():
    with pytest.raises(pickle.UnpicklingError):
        qwire.loads(b"\x01\x00\x00\x00\x10\x00\x00\x00\xff\x00\x00\x00\x00\x00\x00\x00")
    with pytest.raises(pickle.PicklingError):
        qwire.dumps(lambda: 1)
    with pytest.raises(pickle.PickleError):
        qwire.dumps(object())
    # and still as the builtins and as qwire's
    assert issubclass(qwire.DecodeError, ValueError) and issubclass(qwire.DecodeError, pickle.UnpicklingError)
    assert issubclass(qwire.EncodeError, TypeError) and issubclass(qwire.EncodeError, pickle.PicklingError)
    for cls in (qwire.ForeignObjectError, qwire.OnDiskObjectError):
        assert issubclass(cls, pickle.PicklingError) and issubclass(cls, qwire.QWireError)
    assert issubclass(qwire.UnregisteredTypeError, pickle.UnpicklingError)
    assert not issubclass(qwire.QError, pickle.PickleError)   # a q error is data, not a failure to (un)pickle


def test_errors_still_pickle():
    e = pickle.loads(pickle.dumps(qwire.DecodeError("bad", offset=3)))
    assert type(e) is qwire.DecodeError and e.offset == 3


@given(st.one_of(st.none(), st.integers(-1, 5)))
def test_a_positional_protocol_is_accepted_and_ignored(protocol):
    value = {"a": [1, 2.5, "x"]}
    assert qwire.dumps(value, protocol) == qwire.dumps(value)
    assert qwire.dumps(value, protocol=protocol) == qwire.dumps(value)
    f = io.BytesIO()
    assert qwire.dump(value, f, protocol) == len(qwire.dumps(value))
    assert f.getvalue() == qwire.dumps(value)
    assert qwire.loads(qwire.dumps(value, protocol, refs=True)) == value


def test_a_protocol_that_is_not_an_int_is_refused():
    with pytest.raises(TypeError, match="protocol"):
        qwire.dumps(1, "5")


@given(hnp.arrays(st.sampled_from([np.uint8, np.int16, np.int32, np.int64, np.float32, np.float64, np.int8,
                                   np.uint16, np.complex128, np.bool_]),
                  hnp.array_shapes(min_dims=1, max_dims=3, max_side=5)))
def test_a_memoryview_encodes_as_its_array(arr):
    """memoryview(arr) comes back as the array np.asarray(memoryview) is: same dtype, shape, values."""
    mv = memoryview(arr)
    out = qwire.loads(qwire.dumps(mv))
    expected = np.asarray(mv)
    assert isinstance(out, np.ndarray)
    assert out.dtype == expected.dtype and out.shape == expected.shape
    assert np.array_equal(out, expected, equal_nan=expected.dtype.kind in "fc")


@given(st.binary(max_size=100))
def test_a_memoryview_of_bytes(raw):
    """Format 'B' (bytes, bytearray): a q byte vector, decoded as a uint8 array; cast to 'c': a char
    vector, decoded as bytes."""
    out = qwire.loads(qwire.dumps(memoryview(raw)))
    assert out.dtype == np.uint8 and out.tobytes() == raw
    assert qwire.loads(qwire.dumps(memoryview(bytearray(raw)).cast("c"))) == raw


def test_memoryview_slices_and_strides():
    raw = bytes(range(100))
    mv = memoryview(raw)[10:90:3]
    assert qwire.loads(qwire.dumps(mv)).tobytes() == raw[10:90:3]
    arr = np.arange(24, dtype=np.int64).reshape(4, 6)
    mv2 = memoryview(arr)[1:3]
    assert np.array_equal(qwire.loads(qwire.dumps(mv2)), arr[1:3])


def test_a_large_memoryview_is_not_copied():
    arr = np.zeros(1_000_000, dtype=np.float64)
    m = qwire.dumps(memoryview(arr))
    arr[5] = 7.0                          # the message references the memory, as for arrays
    assert qwire.loads(bytes(m))[5] == 7.0


@pytest.mark.filterwarnings("ignore:A builtin ctypes object gave a PEP3118 format string")
def test_a_released_or_odd_memoryview_is_an_encode_error():
    mv = memoryview(b"abc")
    mv.release()
    with pytest.raises(qwire.EncodeError):
        qwire.dumps(mv)
    import ctypes

    class S(ctypes.Structure):
        _fields_ = [("a", ctypes.c_int), ("b", ctypes.c_double)]

    with pytest.raises(qwire.EncodeError):
        qwire.dumps(memoryview((S * 2)()))


def test_a_memoryview_of_a_memory_map_is_refused_unless_allowed(tmp_path):
    import mmap

    p = tmp_path / "f.bin"
    p.write_bytes(bytes(range(64)))
    with open(p, "r+b") as f, mmap.mmap(f.fileno(), 0) as mm:
        mv = memoryview(mm)
        with pytest.raises(qwire.OnDiskObjectError):
            qwire.dumps(mv)
        assert qwire.loads(qwire.dumps(mv, allow_on_disk=True)).tobytes() == bytes(range(64))
        mv.release()
