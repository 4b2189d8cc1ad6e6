"""The public API: input kinds, options, error types, and the constants' single source."""
import datetime as dt
import io
import mmap
import uuid

import numpy as np
import pytest

import qwire
from qwire import _core
from qwire.qtypes import QType


def test_type_codes_agree_between_python_and_the_core():
    assert {k: int(v) for k, v in _core.TYPE_CODES.items()} == {
        k: int(QType[k]) if k in QType.__members__ else None for k in _core.TYPE_CODES
    }
    named = {m.name for m in QType}
    assert {"LIST", "SYMBOL", "TABLE", "DICT", "ERROR", "EXTENSION"} <= named


@pytest.mark.parametrize("msg_type, byte", [("async", 0), ("sync", 1), ("response", 2), (1, 1)])
def test_msg_type_sets_header_byte_1(msg_type, byte):
    m = qwire.dumps("x", msg_type=msg_type)
    assert bytes(m)[:4] == bytes([1, byte, 0, 0])


def test_bad_msg_type_is_a_value_error():
    with pytest.raises(ValueError):
        qwire.dumps(1, msg_type="later")


def test_loads_accepts_every_buffer_kind(tmp_path):
    value = {"a": np.arange(5), "b": "c"}
    raw = bytes(qwire.dumps(value))
    path = tmp_path / "m"
    path.write_bytes(raw)
    with open(path, "rb") as f:
        mm = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
    inputs = [raw, bytearray(raw), memoryview(raw), qwire.dumps(value), mm, np.frombuffer(raw, np.uint8)]
    for data in inputs:
        got = qwire.loads(data)
        assert got.keys() == value.keys() and np.array_equal(got["a"], value["a"])


def test_loads_refuses_non_buffers_and_non_contiguous_buffers():
    with pytest.raises(TypeError):
        qwire.loads("not bytes")
    raw = np.frombuffer(bytes(qwire.dumps(1)) * 2, np.uint8)[::2]
    with pytest.raises(TypeError, match="contiguous"):
        qwire.loads(raw)


def test_decoded_vectors_are_read_only_views_that_keep_the_input_alive():
    data = bytearray(qwire.dumps(np.arange(1000, dtype=np.float64)))
    arr = qwire.loads(data)
    assert not arr.flags.writeable
    assert np.shares_memory(arr, np.frombuffer(data, np.uint8))
    del data
    assert arr.sum() == 499500.0  # still valid: the view holds the buffer


def test_in_band_dumps_then_loads_shares_memory_with_the_source():
    arr = np.random.default_rng(0).random(1 << 17)
    back = qwire.loads(qwire.dumps(arr))
    assert np.shares_memory(back, arr)


def test_encoder_and_decoder_objects_hold_options():
    enc = qwire.Encoder("sync", max_depth=3)
    dec = qwire.Decoder(max_depth=3)
    assert bytes(enc.encode([[1]]))[1] == 1
    with pytest.raises(qwire.EncodeError, match="max_depth"):
        enc.encode([[[[1]]]])
    deep = bytes(qwire.dumps([[[[1]]]]))
    with pytest.raises(qwire.DecodeError, match="max_depth"):
        dec.decode(deep)
    assert qwire.Decoder().decode(deep) == [[[[1]]]]


def test_errors_subclass_the_builtins():
    assert issubclass(qwire.DecodeError, ValueError) and issubclass(qwire.DecodeError, qwire.QWireError)
    assert issubclass(qwire.EncodeError, TypeError) and issubclass(qwire.EncodeError, qwire.QWireError)


def test_q_errors_both_ways():
    m = qwire.dumps(qwire.QError("type"), msg_type="response")
    assert bytes(m) == bytes.fromhex("010200000e000000807479706500")
    with pytest.raises(qwire.QError) as e:
        qwire.loads(m)
    assert e.value.text == "type"
    with pytest.raises(qwire.EncodeError, match="whole message"):
        qwire.dumps([qwire.QError("nested")])


@pytest.mark.parametrize("obj", [object(), {1, 2}, (1, 2), 2**64, dt.datetime(2020, 1, 1, tzinfo=dt.timezone.utc),
                                 np.zeros((2, 2)), np.int8(1), lambda: 1])
def test_unsupported_objects_name_their_type(obj):
    with pytest.raises(qwire.EncodeError) as e:
        qwire.dumps(obj, q_compatible=True) if "q_compatible" in _dumps_params() else qwire.dumps(obj)
    assert e.value.obj_type is not None or type(obj).__name__ in str(e.value)


def _dumps_params():
    import inspect

    try:
        return inspect.signature(qwire.dumps).parameters
    except (TypeError, ValueError):
        return {}


def test_dump_and_load_files():
    buf = io.BytesIO()
    n = qwire.dump({"u": uuid.UUID(int=5)}, buf)
    assert n == len(buf.getvalue())
    buf.seek(0)
    assert qwire.load(buf) == {"u": uuid.UUID(int=5)}


def test_encoders_are_reusable_and_messages_independent():
    enc = qwire.Encoder()
    a, b = enc.encode([1, 2]), enc.encode("x")
    assert qwire.loads(a) == [1, 2] and qwire.loads(b) == "x"


def test_compression_is_transparent():
    til = np.arange(1000)
    m = qwire.dumps(til, compress=True)
    assert m.compressed and len(m) == 3276  # kdb+'s documented `count -18!til 1000`
    assert np.array_equal(qwire.loads(m), til)
    assert not qwire.dumps(til[:10], compress="auto").compressed  # under kdb+'s 2009-byte threshold
    assert not qwire.dumps(np.random.default_rng(0).random(1000), compress=True).compressed  # incompressible


@pytest.mark.parametrize("bad", [[], True, False, 1.0, 3, -1, "Sync", None], ids=repr)
def test_msg_type_accepts_only_its_names_and_codes(bad):
    with pytest.raises(ValueError, match="msg_type"):
        qwire.dumps(1, msg_type=bad)
    with pytest.raises(ValueError, match="msg_type"):
        qwire.Encoder(bad)


def test_message_objects_are_not_constructed_directly():
    # an empty Message would have no header: its properties used to read through a NULL buffer
    with pytest.raises(TypeError, match="made by qwire.dumps"):
        qwire.Message()
    empty = qwire.Message.__new__(qwire.Message)      # skips __init__: every use is refused
    for use in (lambda: empty.msg_type, lambda: empty.compressed, lambda: bytes(empty), lambda: memoryview(empty),
                lambda: empty.segments(), lambda: repr(empty), lambda: empty.copy()):
        with pytest.raises(TypeError, match="made by qwire.dumps"):
            use()
    with pytest.raises(qwire.DecodeError):
        qwire.loads(empty)


def test_loads_decoder_options_are_named_keywords():
    # loads names Decoder's options (no **kwargs dict per call): they still reach the Decoder.
    deep = qwire.dumps([[[[1]]]])
    assert qwire.loads(deep, max_depth=8) == [[[[1]]]]
    with pytest.raises(qwire.DecodeError):
        qwire.loads(deep, max_depth=2)
    with pytest.raises(ValueError):
        qwire.loads(deep, max_depth=0)
    assert qwire.loads(deep, max_depth=None, max_decompressed_size=None, max_message_size=None) == [[[[1]]]]
    assert qwire.loads(deep, max_message_size=1 << 20) == [[[[1]]]]
    with pytest.raises(TypeError):
        qwire.loads(deep, no_such_option=1)


def test_loads_of_a_message_views_it_read_only_and_keeps_it_alive():
    # A one-block Message is decoded in place (no memoryview): its views have the Message as
    # base, cannot be made writeable, and outlive the caller's reference to it.
    import gc
    import weakref

    m = qwire.dumps({"a": np.arange(1000, dtype=np.int64), "k": "v"})
    value = qwire.loads(m)
    arr = value["a"]
    assert not arr.flags.writeable
    with pytest.raises(ValueError):
        arr.flags.writeable = True
    ref = weakref.ref(m) if hasattr(type(m), "__weakref__") else None
    del m, value
    gc.collect()
    assert arr.tolist() == list(range(1000))
    if ref is not None:
        assert ref() is not None
    # and a Message decodes exactly as its bytes do
    for v in [{"x": 1, "y": [1.5, "s"]}, np.arange(5.0), "sym", b"chars", [None, True]]:
        msg = qwire.dumps(v)
        assert repr(qwire.loads(msg)) == repr(qwire.loads(bytes(msg)))


def test_decoded_function_values_are_shared_immutable_values():
    """Primitives and derived functions of one decode to one instance per code (issue 6: memory per
    input byte), which is only sound because they are immutable and equal by value."""
    from qwire.values import BinaryPrimitive, Derived, Dict, Iterator, Projection, UnaryPrimitive
    plus_over = qwire.dumps([Derived("/", BinaryPrimitive(1))] * 2)
    a, b = qwire.loads(plus_over)
    assert a is b and a == Derived("/", BinaryPrimitive(1)) and a.func is qwire.loads(plus_over)[0].func
    prims = qwire.loads(qwire.dumps([UnaryPrimitive(15), BinaryPrimitive(1), Iterator(2), UnaryPrimitive(15)]))
    assert prims == [UnaryPrimitive(15), BinaryPrimitive(1), Iterator(2), UnaryPrimitive(15)]
    assert prims[0] is prims[3] and hash(prims[0]) == hash(UnaryPrimitive(15))
    for p in prims + [a]:
        with pytest.raises(AttributeError):
            p.code = 3
    proj = qwire.loads(qwire.dumps(Projection(BinaryPrimitive(1), qwire.ELIDED, 2)))
    assert proj == Projection(BinaryPrimitive(1), qwire.ELIDED, 2) and proj.items[1] is qwire.ELIDED
    # Dicts are built in the core without Dict.__init__: the same value and normalised fields
    d = qwire.loads(qwire.dumps(Dict(np.array([1, 2], dtype=np.int32), [3, 4], sorted=True)))
    assert type(d) is Dict and d.sorted is True and d == Dict(np.array([1, 2], dtype=np.int32), [3, 4], sorted=True)


@pytest.mark.parametrize("unit", ["ns", "D", "M", "m", "s", "ms"])
def test_temporal_arrays_encode_from_unaligned_memory_to_unaligned_positions(unit):
    """The temporal writers convert element by element; neither the source array (a view at an odd
    offset) nor the output position (after a 6-byte vector header, after a 1-byte atom) is aligned.
    Under the sanitizer build (tests/fuzz/README.md) a misaligned access is a UBSan report."""
    kind = "datetime64" if unit in ("ns", "D", "M") else "timedelta64"
    values = np.arange(1000, dtype=np.int64) * 7 + 30
    raw = bytearray(1) + bytearray(values.tobytes())
    arr = np.frombuffer(raw, dtype=np.int64, offset=1, count=1000).view(f"{kind}[{unit}]")
    assert not arr.flags.aligned
    out = qwire.loads(qwire.dumps([True, arr]))
    assert out[0] is True
    assert np.array_equal(np.asarray(out[1]).astype(arr.dtype), arr)


def test_function_values_live_in_qwire_functions():
    """qwire.functions holds the q function value types; the top-level names and qwire.values' are
    the same classes, so decoding gives instances of all three, and pickles name qwire.functions."""
    import pickle

    import qwire.functions as qf
    import qwire.values as qv

    names = ["Function", "Lambda", "UnaryPrimitive", "BinaryPrimitive", "Iterator", "Projection", "Composition",
             "Derived", "ELIDED"]
    assert sorted(qf.__all__) == sorted(names)
    for name in names:
        assert getattr(qwire, name) is getattr(qf, name) is getattr(qv, name)
    decoded = qwire.loads(qwire.dumps(qf.Derived("/", qf.BinaryPrimitive(1))))
    assert type(decoded) is qf.Derived and decoded.func == qf.BinaryPrimitive(1)
    assert b"qwire.functions" in pickle.dumps(qf.Lambda("{x+y}"))
