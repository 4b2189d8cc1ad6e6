"""Streams: feeding bytes in any chunking, multi-message files, memory maps, the message log,
and 64-byte alignment of receive buffers qwire allocates."""
import io
import os
import random
import socket
import threading

import numpy as np
import pytest

import qwire
from qwire.values import values_equal

VALUES = [
    np.arange(1000, dtype=np.int64),
    {"a": 1, "b": [2.5, "x"]},
    "sym",
    qwire.Table({"a": np.arange(3000), "f": np.random.default_rng(0).random(3000)}),
    np.random.default_rng(1).random(50000),
    None,
]


def _stream_bytes(values=VALUES):
    return b"".join(bytes(qwire.dumps(v)) for v in values)


def _assert_same(got, expected=VALUES):
    assert len(got) == len(expected)
    for g, e in zip(got, expected):
        assert values_equal(g, e) if isinstance(e, np.ndarray) else g == e


def test_feed_one_byte_at_a_time():
    data = _stream_bytes(VALUES[:3])
    dec = qwire.Decoder()
    out = []
    for i in range(len(data)):
        dec.feed(data[i : i + 1])
        out.extend(dec)
    _assert_same(out, VALUES[:3])
    assert dec.pending == 0


def test_feed_random_chunks_matches_whole_decoding():
    data = _stream_bytes()
    rng = random.Random(7)
    for _ in range(20):
        dec, out, pos = qwire.Decoder(), [], 0
        while pos < len(data):
            k = rng.choice([1, 2, 7, 8, 9, 100, 4096, 65536])
            dec.feed(memoryview(data)[pos : pos + k])
            pos += k
            out.extend(dec)
        _assert_same(out)


def test_socket_stream_decodes_the_same_values():
    a, b = socket.socketpair()
    writer = threading.Thread(target=lambda: ([qwire.dumps(v).write_to(a) for v in VALUES], a.close()))
    writer.start()
    dec, out = qwire.Decoder(), []
    b.settimeout(10)
    while True:
        chunk = b.recv(1500)  # an MTU-sized read, as a socket reader would
        if not chunk:
            break
        dec.feed(chunk)
        out.extend(dec)
    writer.join(10)
    b.close()
    _assert_same(out)


def test_feed_rejects_a_bad_header_with_its_stream_offset():
    dec = qwire.Decoder()
    dec.feed(bytes(qwire.dumps(1)))
    with pytest.raises(qwire.DecodeError, match="byte 1") as e:
        dec.feed(b"\x01\x07\x00\x00\x10\x00\x00\x00")
    assert e.value.offset == 17 + 1


def test_feed_does_not_allocate_what_a_header_claims():
    import tracemalloc

    dec = qwire.Decoder()
    tracemalloc.start()
    dec.feed(b"\x01\x00\x00\xff\xff\xff\xff\xff" + b"\x07\x00")  # claims ~1 TiB
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 4 << 20
    assert dec.pending == 10


def test_max_message_size_limits_streams():
    dec = qwire.Decoder(max_message_size=1000)
    with pytest.raises(qwire.DecodeError, match="max_message_size"):
        dec.feed(bytes(qwire.dumps(np.arange(1000))))


def test_receive_buffers_align_the_largest_vector_to_64_bytes():
    values = [[1, "x", np.arange(k)] for k in range(1, 40)]
    dec = qwire.Decoder()
    dec.feed(_stream_bytes(values))
    for got in dec:
        assert got[2].ctypes.data % 64 == 0
    buf = io.BytesIO(_stream_bytes(values))
    for got in qwire.iter_load(buf):
        assert got[2].ctypes.data % 64 == 0


def test_iter_load_and_load_read_messages_one_by_one(tmp_path):
    path = tmp_path / "multi.q"
    with open(path, "wb") as f:
        for v in VALUES:
            qwire.dump(v, f)
    _assert_same(list(qwire.iter_load(path)))
    _assert_same(list(qwire.iter_load(path, mmap=True)))
    with open(path, "rb") as f:
        _assert_same([qwire.load(f) for _ in VALUES])
        with pytest.raises(qwire.DecodeError, match="end"):
            qwire.load(f)
    with open(path, "rb") as f:
        _assert_same([qwire.load(f, mmap=True) for _ in VALUES])


def test_truncated_files_raise_decode_error(tmp_path):
    data = _stream_bytes(VALUES[:2])
    for cut in (3, 8, 20, len(data) - 1):
        path = tmp_path / f"cut{cut}.q"
        path.write_bytes(data[:cut])
        with pytest.raises(qwire.DecodeError):
            list(qwire.iter_load(path))
        with pytest.raises(qwire.DecodeError):
            list(qwire.iter_load(path, mmap=True))


def test_mmap_decoded_vectors_are_views_of_the_map(tmp_path):
    path = tmp_path / "one.q"
    arr = np.arange(100000, dtype=np.float64)
    with open(path, "wb") as f:
        qwire.dump(arr, f)
    got = qwire.load(path, mmap=True)
    assert np.array_equal(got, arr) and not got.flags.writeable and not got.flags.owndata
    base = got
    while getattr(base, "base", None) is not None and not isinstance(base, memoryview):
        base = base.base
    assert isinstance(base, memoryview) and base.obj is not None  # an export of the mmap


def test_message_log_appends_and_replays(tmp_path):
    log = qwire.MessageLog(tmp_path / "ticks.qlog")
    assert list(log) == []
    for i in range(100):
        log.append({"i": i, "px": i * 0.5})
    log.close()
    replayed = list(qwire.MessageLog(tmp_path / "ticks.qlog"))
    assert replayed == [{"i": i, "px": i * 0.5} for i in range(100)]


def _rss_bytes():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS")


@pytest.mark.slow
def test_mmap_of_a_1gb_table_reads_only_the_column_touched(tmp_path):
    rows = 1 << 25  # 4 columns x 8 bytes x 32M rows = 1 GiB
    path = tmp_path / "big.q"
    col = np.arange(rows, dtype=np.int64)
    table = qwire.Table({"a": col, "b": col, "c": col, "d": col.view(np.float64)})
    with open(path, "wb") as f:
        qwire.dump(table, f)
    del table, col
    assert os.path.getsize(path) > 1 << 30
    before = _rss_bytes()
    t = qwire.load(path, mmap=True)
    opened = _rss_bytes() - before
    total = int(t["c"].sum())  # touches one column: 256 MiB
    touched = _rss_bytes() - before
    assert total == (rows - 1) * rows // 2
    assert opened < 16 << 20, f"opening mapped {opened} bytes"
    assert touched < (256 << 20) + (64 << 20), f"reading one column made {touched} bytes resident"


@pytest.mark.parametrize("mmap", [False, True])
def test_load_past_the_last_message_is_a_decode_error(tmp_path, mmap):
    path = tmp_path / "one.q"
    qwire.dump([1, 2], str(path))
    with open(path, "rb") as f:
        assert qwire.load(f, mmap=mmap) == [1, 2]
        with pytest.raises(qwire.DecodeError, match="at its end"):
            qwire.load(f, mmap=mmap)
    empty = tmp_path / "empty.q"
    empty.write_bytes(b"")
    with open(empty, "rb") as f:
        f.seek(5)                       # past the end of an empty file: nothing to map
        with pytest.raises(qwire.DecodeError):
            qwire.load(f, mmap=mmap)
