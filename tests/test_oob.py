"""Out-of-band buffers with pickle protocol 5's semantics (buffer_callback= / buffers=)."""
import pickle

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import qwire

OOB_DTYPES = ["bool", "uint8", "int16", "int32", "int64", "float32", "float64", "m8[ns]"]


def _oob_roundtrip(obj, threshold=0):
    buffers = []
    m = qwire.dumps(obj, buffer_callback=lambda b: buffers.append(b) or False, oob_threshold=threshold)
    return m, buffers, qwire.loads(m, buffers=buffers)


@pytest.mark.parametrize("dtype", OOB_DTYPES)
def test_every_layout_dtype_goes_out_of_band_and_comes_back_as_a_view(dtype):
    arr = (np.arange(1000) % 2).astype(dtype) if dtype == "bool" else np.arange(1000).astype(dtype)
    m, buffers, back = _oob_roundtrip(arr)
    assert len(buffers) == 1 and len(m) < 40
    assert back.dtype == arr.dtype and np.array_equal(back, arr)
    assert np.shares_memory(back, arr)  # the buffer handed over is the array itself
    assert not back.flags.writeable


@settings(max_examples=60, deadline=None)
@given(hnp.arrays(st.sampled_from(OOB_DTYPES[1:7]), hnp.array_shapes(max_dims=1, max_side=300)))
def test_oob_roundtrip_property(arr):
    _, buffers, back = _oob_roundtrip(arr)
    assert len(buffers) == (1 if arr.nbytes else 1)
    assert back.dtype == arr.dtype and np.array_equal(back, arr, equal_nan=arr.dtype.kind == "f")


def test_bytes_table_columns_and_nested_values_go_out_of_band():
    t = qwire.Table({"a": np.arange(5000), "b": np.random.rand(5000), "s": np.array(["x"] * 5000, dtype=object)})
    value = {"t": t, "blob": b"y" * 10000, "v": qwire.Vector(np.arange(5000), "long", "s")}
    m, buffers, back = _oob_roundtrip(value, threshold=1000)
    assert len(buffers) == 4  # two numeric columns, the bytes, the sorted vector (symbols stay in band)
    assert back == value


def test_callback_returning_true_keeps_the_buffer_in_band():
    arr = np.arange(100000)
    seen = []
    m = qwire.dumps(arr, buffer_callback=lambda b: seen.append(b) or True)
    assert len(seen) == 1 and len(m) == 14 + arr.nbytes
    assert np.array_equal(qwire.loads(m), arr)


def test_threshold_is_configurable_and_small_vectors_stay_in_band():
    seen = []
    qwire.dumps([np.arange(10), np.arange(100000)], buffer_callback=seen.append)
    assert [b.raw().nbytes for b in seen] == [800000]
    seen.clear()
    qwire.dumps([np.arange(10)], buffer_callback=seen.append, oob_threshold=8)
    assert len(seen) == 1


def test_without_callback_output_is_pure_kdb_ipc():
    arr = np.arange(100000)
    assert bytes(qwire.dumps(arr))[8] == 7  # a long vector, no extension record


@pytest.fixture
def oob_message():
    buffers = []
    m = qwire.dumps([np.arange(1000, dtype=np.int32), np.arange(500, dtype=np.float64)],
                    buffer_callback=lambda b: buffers.append(b) or False, oob_threshold=0)
    return m, buffers


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda b: None, "pass them with buffers="),
        (lambda b: [], "missing"),
        (lambda b: b[:1], "missing"),
        (lambda b: b + [b"extra"], "more out-of-band buffers"),
        (lambda b: [b[0], b[1].raw()[:-8]], "needs"),  # short
        (lambda b: [bytes(b[0].raw()) + b"1234", b[1]], "needs"),  # long
        (lambda b: [np.arange(2000, dtype=np.int32)[::2], b[1]], "C-contiguous"),
        (lambda b: [object(), b[1]], "not a buffer"),
    ],
)
def test_every_mismatch_raises_decode_error(oob_message, mutate, message):
    m, buffers = oob_message
    with pytest.raises(qwire.DecodeError, match=message):
        qwire.loads(m, buffers=mutate(list(buffers)))


def test_buffers_may_be_any_iterable_and_are_never_exhausted_silently():
    m, buffers = qwire.dumps(np.arange(100)), []
    m = qwire.dumps(np.arange(100), buffer_callback=lambda b: buffers.append(b) or False, oob_threshold=0)
    assert np.array_equal(qwire.loads(m, buffers=iter(buffers)), np.arange(100))
    with pytest.raises(qwire.DecodeError):
        qwire.loads(m, buffers=(x for x in []))


def test_works_through_pickle_of_value_types():
    t = qwire.loads(qwire.dumps(qwire.Table({"a": np.arange(10000), "b": np.random.rand(10000)})))
    buffers = []
    data = pickle.dumps(t, protocol=5, buffer_callback=buffers.append)
    assert len(buffers) == 2
    assert pickle.loads(data, buffers=buffers) == t


# Every fixed-size dtype, any shape (N-d in C or Fortran order, 0-d, empty): the q layouts travel as
# out-of-band vectors, the rest as the N-d array record (docs/FORMAT.md 0x10) whose data goes out of band.
ANY_DTYPES = st.sampled_from(["bool", "int8", "uint8", "int16", "uint16", "int32", "uint32", "int64", "uint64",
                              "float16", "float32", "float64", "complex64", "complex128", ">i4", ">f8", "S3", "U2",
                              "M8[ns]", "M8[D]", "M8[ms]", "M8[us]", "m8[ns]", "m8[s]", "m8[us]"])


@settings(max_examples=150, deadline=None)
@given(hnp.arrays(ANY_DTYPES, hnp.array_shapes(min_dims=0, max_dims=4, min_side=0, max_side=6)), st.booleans())
def test_oob_roundtrip_any_dtype_and_shape(arr, fortran):
    if fortran:
        arr = np.asfortranarray(arr)
    m, buffers, back = _oob_roundtrip(arr)
    assert type(back) is np.ndarray and back.shape == arr.shape
    # the byte order of a q type is the one thing not kept (a q vector reads back native)
    assert back.dtype == (arr.dtype.newbyteorder("=") if arr.ndim == 1 and arr.dtype.byteorder == ">" else arr.dtype)
    # the items, compared as bytes in logical (C) order: NaN and NaT compare equal that way
    assert np.ascontiguousarray(back).tobytes() == np.ascontiguousarray(arr.astype(back.dtype)).tobytes()
    converted = arr.ndim == 1 and arr.dtype.str[1:] in ("M8[ns]", "M8[D]", "m8[s]")  # q's epoch or width
    if arr.nbytes and arr.ndim and not converted and arr.dtype.byteorder != ">":
        assert buffers and np.shares_memory(back, arr)   # handed over and re-attached without a copy
    # and the same buffers given again, as memoryviews of copies, decode the same
    again = qwire.loads(m, buffers=[memoryview(bytes(b)) for b in buffers])
    assert again.dtype == back.dtype and np.ascontiguousarray(again).tobytes() == np.ascontiguousarray(back).tobytes()


def test_out_of_band_buffers_grow_the_memory_budget_as_received_bytes():
    """The memory budget is max_expansion x the bytes received, out-of-band buffers included: a
    4 MB bytes value sent out of band decodes by default (the copy it makes is within 16x what
    arrived), and max_decoded_size still caps it."""
    value = {"blob": b"x" * (4 << 20)}
    buffers = []
    m = qwire.dumps(value, buffer_callback=buffers.append)
    assert len(m) < 1024 and sum(memoryview(b).nbytes for b in buffers) == 4 << 20
    assert qwire.loads(m, buffers=buffers) == value
    with pytest.raises(qwire.DecodeError, match="memory limit"):
        qwire.loads(m, buffers=buffers, max_decoded_size=1 << 20)
