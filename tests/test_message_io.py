"""Message I/O says what happened, and a Message behaves like the bytes it holds.

* `write_to` (and so `dump`) writes the whole message whatever the target takes per call: short
  writes are resumed; a target that cannot take more now raises BlockingIOError whose
  `characters_written` is exactly what it took.
* `bytes(m)`, `m.copy()`, equality, slices and every new memoryview see the referenced arrays as
  they are at that moment: never a join kept from an earlier call (docs/ZERO_COPY.md).
* Like bytes: `m == b"..."`, `m[i]`, `m[a:b]`, `m + b"..."`, `b"..." + m`.
"""
from __future__ import annotations

import fcntl
import io
import os
import socket

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import qwire


def segmented(n=200_000):
    """A message whose payload references an array (several segments)."""
    arr = np.arange(n, dtype=np.float64)
    m = qwire.dumps({"a": arr, "b": [arr, "x"]})
    assert len(m.segments()) > 1
    return arr, m


class ShortWriter(io.RawIOBase):
    """A binary file whose write takes at most a drawn number of bytes per call."""

    def __init__(self, sizes):
        self.sizes = list(sizes) or [1]
        self.data = bytearray()
        self.calls = 0

    def writable(self):
        return True

    def write(self, b):
        n = min(len(b), self.sizes[self.calls % len(self.sizes)])
        self.calls += 1
        self.data += bytes(b[:n])
        return n


@given(st.lists(st.integers(1, 70_000), min_size=1, max_size=8), st.integers(1, 300_000))
def test_short_writes_to_a_file_object_are_resumed(sizes, n):
    arr = np.arange(n % 50_000, dtype=np.int64)
    m = qwire.dumps([arr, "tail", arr[: n % 7]])
    f = ShortWriter(sizes)
    assert m.write_to(f) == len(m)
    assert bytes(f.data) == bytes(m)
    f2 = ShortWriter(sizes)
    assert qwire.dump([arr, "tail", arr[: n % 7]], f2) == len(m)
    assert bytes(f2.data) == bytes(m)


def test_a_file_that_takes_nothing_says_how_much_was_written():
    """A non-blocking raw file returns None when it would block: BlockingIOError with the count."""

    class Full(ShortWriter):
        def write(self, b):
            if len(self.data) >= 1000:
                return None
            return super().write(b)

    _, m = segmented()
    f = Full([300])
    with pytest.raises(BlockingIOError) as info:
        m.write_to(f)
    assert info.value.characters_written == len(f.data) >= 1000
    assert bytes(f.data) == bytes(m)[: len(f.data)]


def _nonblocking_pipe():
    r, w = os.pipe()
    fcntl.fcntl(w, fcntl.F_SETFL, fcntl.fcntl(w, fcntl.F_GETFL) | os.O_NONBLOCK)
    return r, w


def _drain(fd):
    fcntl.fcntl(fd, fcntl.F_SETFL, fcntl.fcntl(fd, fcntl.F_GETFL) | os.O_NONBLOCK)
    out = bytearray()
    while True:
        try:
            chunk = os.read(fd, 1 << 20)
        except BlockingIOError:
            return bytes(out)
        if not chunk:
            return bytes(out)
        out += chunk


def test_a_nonblocking_pipe_reports_exactly_what_it_took():
    """The report: 1,000,014 bytes to a non-blocking pipe that takes ~64 KiB. write_to no longer
    claims the whole message: BlockingIOError, characters_written = the bytes in the pipe."""
    arr = np.zeros(125_000, dtype=np.float64)
    m = qwire.dumps(arr)
    assert len(m) == 1_000_014
    r, w = _nonblocking_pipe()
    try:
        with pytest.raises(BlockingIOError) as info:
            m.write_to(w)
        got = _drain(r)
        assert info.value.characters_written == len(got) < len(m)
        assert got == bytes(m)[: len(got)]
        assert f"{len(got)} of the message's {len(m)} bytes" in str(info.value)
    finally:
        os.close(r)
        os.close(w)


def test_a_nonblocking_file_object_and_dump():
    r, w = _nonblocking_pipe()
    f = os.fdopen(w, "wb", buffering=0)
    try:
        with pytest.raises(BlockingIOError) as info:
            qwire.dump(np.zeros(125_000), f)
        got = _drain(r)
        assert info.value.characters_written == len(got)
    finally:
        f.close()
        os.close(r)


def test_a_nonblocking_socket():
    a, b = socket.socketpair()
    try:
        a.setblocking(False)
        _, m = segmented(500_000)
        with pytest.raises(BlockingIOError) as info:
            m.write_to(a)
        b.setblocking(False)
        got = bytearray()
        while True:
            try:
                chunk = b.recv(1 << 20)
            except BlockingIOError:
                break
            if not chunk:
                break
            got += chunk
        assert info.value.characters_written == len(got)
        assert bytes(got) == bytes(m)[: len(got)]
    finally:
        a.close()
        b.close()


def test_a_blocking_pipe_gets_everything():
    import threading

    _, m = segmented(300_000)
    r, w = os.pipe()
    got = []
    t = threading.Thread(target=lambda: got.append(_read_all(r)))
    t.start()
    try:
        assert m.write_to(w) == len(m)
    finally:
        os.close(w)
    t.join(30)
    os.close(r)
    assert got == [bytes(m)]


def _read_all(fd):
    out = bytearray()
    while chunk := os.read(fd, 1 << 20):
        out += chunk
    return bytes(out)


def test_write_to_refuses_what_it_cannot_write_to():
    m = qwire.dumps(1)
    for bad in (None, "path.bin", 1.5, object(), True):
        with pytest.raises(TypeError):
            m.write_to(bad)

    class Liar(ShortWriter):
        def write(self, b):
            return len(b) + 5

    with pytest.raises(TypeError, match="byte count"):
        m.write_to(Liar([1]))


@pytest.mark.slow
@given(st.integers(1, 5), st.floats(allow_nan=False))
def test_bytes_is_never_a_stale_join(changes, value):
    """bytes(m) after the array changed holds the new data, as write_to sends."""
    arr, m = segmented()
    for i in range(changes):
        before = bytes(m)
        arr[i] = value + i
        after = bytes(m)
        f = ShortWriter([1 << 20])
        m.write_to(f)
        assert after == bytes(f.data) == m.copy()
        assert qwire.loads(after)["a"][i] == value + i
        assert m == after and (after == before) == (value + i == float(i))


def test_a_memoryview_is_a_snapshot_while_it_lives():
    """A memoryview of a segmented message is its own join: unchanged while it lives, and the next
    memoryview sees the new data."""
    arr, m = segmented()
    view = memoryview(m)
    old = bytes(view)
    arr[0] = 42.0
    assert bytes(view) == old
    assert bytes(memoryview(m)) == bytes(m) != old
    view.release()


@given(st.binary(max_size=40), st.integers(-30, 30), st.integers(-30, 30), st.integers(-3, 3).filter(bool))
def test_a_message_behaves_like_its_bytes(payload, a, b, step):
    m = qwire.dumps(payload)
    raw = bytes(m)
    assert m == raw and raw == m and m == bytearray(raw) and m == memoryview(raw)
    assert m != raw + b"x"
    assert m[a:b] == raw[a:b] and m[a:b:step] == raw[a:b:step] and type(m[a:b]) is bytes
    for i in range(-len(raw), len(raw)):
        assert m[i] == raw[i]
    with pytest.raises(IndexError):
        m[len(raw)]
    assert m + payload == raw + payload and payload + m == payload + raw
    assert bytearray(payload) + m == bytearray(payload) + raw
    assert m + m == raw + raw
    assert hash(m) == hash(raw)


def test_a_segmented_message_slices_and_concatenates_too():
    _, m = segmented()
    raw = bytes(m)
    assert m[8:20] == raw[8:20] and m[-5:] == raw[-5:] and m[100] == raw[100]
    assert (m + b"!")[-1:] == b"!" and (b"!" + m)[1:] == raw
