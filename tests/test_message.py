"""Message: the buffer protocol, segments that reference source arrays, vectored writes."""
import io
import os
import pickle
import socket

import numpy as np
import pytest

import qwire

BIG = 1 << 20  # above the default zero-copy threshold


def test_small_message_is_one_segment_and_exports_bytes():
    m = qwire.dumps(1)
    assert bytes(m) == bytes.fromhex("0100000011000000f90100000000000000")
    assert len(m) == 17 and m.copy() == bytes(m)
    mv = memoryview(m)
    assert mv.readonly and mv.nbytes == 17 and mv.format == "B"
    assert len(m.segments()) == 1


def test_message_buffer_is_read_only():
    m = qwire.dumps([1, 2])
    with pytest.raises(ValueError, match="read-only"):
        np.frombuffer(m, dtype=np.uint8)[0:1] = 7
    with pytest.raises(TypeError):
        memoryview(m)[0] = 7
    import ctypes

    with pytest.raises(TypeError):
        ctypes.c_char.from_buffer(m)  # asks for a writable buffer


def test_large_array_payload_is_referenced_not_copied():
    arr = np.random.default_rng(1).random(BIG // 8 * 4)
    m = qwire.dumps(arr)
    segs = m.segments()
    assert [s.nbytes for s in segs] == [14, arr.nbytes]
    payload = np.frombuffer(segs[1], dtype=np.float64)
    assert np.shares_memory(payload, arr)
    assert sum(s.nbytes for s in segs) == len(m)
    assert bytes(m)[14:] == arr.tobytes()


def test_table_columns_bytes_and_picklebuffers_are_referenced():
    a, b = np.arange(BIG, dtype=np.int64), np.ones(BIG, dtype=np.float32)
    blob = b"x" * BIG
    m = qwire.dumps([qwire.Table({"a": a, "b": b}), blob, pickle.PickleBuffer(bytearray(BIG))])
    big_segments = [s for s in m.segments() if s.nbytes >= BIG]
    assert len(big_segments) == 4
    assert np.shares_memory(np.frombuffer(big_segments[0], np.int64), a)
    assert np.shares_memory(np.frombuffer(big_segments[1], np.float32), b)
    back = qwire.loads(bytes(m))
    assert np.array_equal(back[0]["a"], a) and back[1] == blob and back[2].dtype == np.uint8


def test_mutating_the_source_before_sending_changes_the_message():
    # Documented: the message references the array; mutate after sending, not before.
    arr = np.zeros(BIG // 8, dtype=np.float64)
    m = qwire.dumps(arr)
    arr[0] = 42.0
    assert qwire.loads(bytes(m))[0] == 42.0


def test_joining_happens_once_and_equals_the_concatenation():
    arr = np.arange(BIG // 8, dtype=np.int64)
    m = qwire.dumps({"x": arr, "y": "z"})
    joined = b"".join(bytes(s) for s in m.segments())
    assert bytes(m) == joined == m.copy()
    assert bytes(memoryview(m)) == joined


@pytest.mark.parametrize("target", ["file", "fd", "socket", "pipe"])
def test_write_to_every_kind_of_target(target, tmp_path):
    arr = np.arange(BIG // 8 * 3, dtype=np.int64)
    m = qwire.dumps([arr, "tail"])
    expected = bytes(m)
    if target == "file":
        buf = io.BytesIO()
        assert m.write_to(buf) == len(expected)
        got = buf.getvalue()
    elif target == "fd":
        path = tmp_path / "m.bin"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT)
        try:
            assert m.write_to(fd) == len(expected)
        finally:
            os.close(fd)
        got = path.read_bytes()
    elif target == "pipe":
        r, w = os.pipe()
        import threading

        chunks = []
        reader = threading.Thread(target=lambda: chunks.extend(iter(lambda: os.read(r, 1 << 16), b"")))
        reader.start()
        m.write_to(w)
        os.close(w)
        reader.join(10)
        os.close(r)
        got = b"".join(chunks)
    else:
        a, b = socket.socketpair()
        import threading

        chunks = []

        def read():
            while True:
                c = b.recv(1 << 16)
                if not c:
                    return
                chunks.append(c)

        reader = threading.Thread(target=read)
        reader.start()
        m.write_to(a)
        a.close()
        reader.join(10)
        b.close()
        got = b"".join(chunks)
    assert got == expected
    assert np.array_equal(qwire.loads(got)[0], arr)


def test_message_pickles_with_protocol_5_out_of_band():
    m = qwire.dumps(np.arange(10000))
    buffers = []
    data = pickle.dumps(m, protocol=5, buffer_callback=buffers.append)
    assert len(buffers) == 1 and len(data) < 200
    assert pickle.loads(data, buffers=buffers) == m
    assert pickle.loads(pickle.dumps(m, protocol=4)) == m


def test_message_properties_and_repr():
    m = qwire.dumps("x", msg_type="sync")
    assert m.msg_type == 1 and not m.compressed and m.nbytes == len(m)
    assert "qwire.Message" in repr(m)
