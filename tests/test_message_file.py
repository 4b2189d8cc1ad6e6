"""Files of messages: random access by a header scan, load's limits, EndOfFile, and dump's writes."""
from __future__ import annotations

import errno
import io
import os
import pickle
import socket

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import qwire
from qwire.io import MessageFile

_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | st.floats(allow_nan=False)
    | st.text(max_size=20) | st.binary(max_size=40),
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=5), inner, max_size=5),
    max_leaves=10,
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(values=st.lists(_values, max_size=30), data=st.data())
def test_index_and_replay_round_trip(tmp_path_factory, values, data):
    """Any list of values dumped one after another comes back by index, by slice, by iteration
    and by iter_load(start, stop), with offsets that are the cumulative message sizes."""
    path = tmp_path_factory.mktemp("mf") / "values.q"
    sizes = []
    with open(path, "wb") as f:
        for v in values:
            sizes.append(qwire.dump(v, f))
    with MessageFile(path) as mf:
        assert len(mf) == len(values)
        assert list(mf.offsets) == [sum(sizes[:k]) for k in range(len(values))]
        assert mf.nbytes == sum(sizes) and mf.tail is None
        assert list(mf) == values
        if values:
            i = data.draw(st.integers(-len(values), len(values) - 1))
            assert mf[i] == values[i]
        a = data.draw(st.integers(0, len(values)))
        b = data.draw(st.integers(0, len(values)))
        assert mf[a:b] == values[a:b]
        assert list(qwire.iter_load(path, start=a, stop=b)) == values[a:b]
        assert list(qwire.iter_load(path, start=a, stop=b, mmap=True)) == values[a:b]
        with pytest.raises(IndexError):
            mf[len(values)]


def test_random_access_decodes_only_the_message_asked_for(tmp_path):
    """mf[i] decodes message i alone: a corrupt message elsewhere in the file does not matter."""
    path = tmp_path / "c.q"
    with open(path, "wb") as f:
        for i in range(5):
            qwire.dump([i, "x" * 10], f)
    raw = bytearray(path.read_bytes())
    second = MessageFile(path).offsets[2]
    raw[second + 8] = 0x77                     # message 2's first type byte: not a q type
    path.write_bytes(bytes(raw))
    mf = MessageFile(path)
    assert len(mf) == 5 and mf[4] == [4, "x" * 10] and mf[1] == [1, "x" * 10]
    with pytest.raises(qwire.DecodeError):
        mf[2]


def test_trailing_partial_message_is_a_tail_not_a_message(tmp_path):
    """A file that ends inside a message: the complete ones are indexed, the rest is `tail`;
    once the writer finishes, refresh() indexes it."""
    msg = bytes(qwire.dumps(np.arange(1000)))
    path = tmp_path / "t.q"
    path.write_bytes(msg + msg[:100])
    mf = MessageFile(path)
    assert len(mf) == 1 and mf.tail == qwire.io.Tail(len(msg), 100, mf.tail.reason)
    assert "of which 100 were written" in mf.tail.reason
    with open(path, "ab") as f:
        f.write(msg[100:])
    assert mf.refresh() == 2 and mf.tail is None
    assert np.array_equal(mf[1], np.arange(1000))


def test_a_file_truncated_under_the_map_is_an_error_not_sigbus(tmp_path):
    """The size is checked before each access: reading a message that a truncation removed
    raises DecodeError (the process would otherwise die of SIGBUS touching the mapped pages)."""
    path = tmp_path / "s.q"
    with open(path, "wb") as f:
        for i in range(3):
            qwire.dump(np.full(5000, i), f)
    mf = MessageFile(path)
    assert int(mf[2][0]) == 2
    os.truncate(path, mf.offsets[2] + 100)
    with pytest.raises(qwire.DecodeError, match="shrank|truncated"):
        mf[2]
    assert int(mf[1][0]) == 1
    assert mf.refresh() == 2 and mf.tail is not None


def test_load_enforces_max_message_size_before_reading():
    """load(stream, max_message_size=N) refuses a header claiming more than N before reading
    or allocating anything for it (the 3 GiB claim of issue 11)."""
    claim = 3 << 30
    header = bytes([1, 0, 0, claim >> 32]) + (claim & 0xFFFFFFFF).to_bytes(4, "little")

    class Endless(io.RawIOBase):
        """A stream that would feed bytes forever: reading any of it is the bug."""
        served = 0

        def readable(self):
            return True

        def readinto(self, b):
            if self.served == 0:
                b[:8] = header
                self.served = 8
                return 8
            self.served += len(b)
            if self.served > 64 << 20:
                raise AssertionError("load kept reading the body of a refused message")
            b[:] = b"\0" * len(b)
            return len(b)

    stream = io.BufferedReader(Endless())
    with pytest.raises(qwire.DecodeError, match="max_message_size=1000000"):
        qwire.load(stream, max_message_size=1_000_000)
    assert stream.raw.served < 1 << 20
    stream = io.BufferedReader(Endless())
    with pytest.raises(qwire.DecodeError, match="max_message_size=1000000"):
        next(qwire.iter_load(stream, max_message_size=1_000_000))
    assert stream.raw.served < 1 << 20


def test_load_checks_a_regular_files_size_against_the_header(tmp_path):
    """A regular file cannot hold more than its size: a longer claim is refused before reading."""
    path = tmp_path / "claim.q"
    claim = 3 << 30
    path.write_bytes(bytes([1, 0, 0, claim >> 32]) + (claim & 0xFFFFFFFF).to_bytes(4, "little") + b"\0" * 100)
    for mmap in (False, True):
        with pytest.raises(qwire.DecodeError, match="file ends inside a message|file holds"):
            qwire.load(path, mmap=mmap)


@pytest.mark.parametrize("mmap", [False, True])
def test_load_at_the_end_raises_eof_error(tmp_path, mmap):
    """Like pickle.load, load at the end of a file raises EOFError (qwire.EndOfFile, which is
    also a DecodeError); a pickle-style read loop ends cleanly."""
    path = tmp_path / "eof.q"
    with open(path, "wb") as f:
        for i in range(3):
            qwire.dump(i, f)
    got = []
    with open(path, "rb") as f:
        while True:
            try:
                got.append(qwire.load(f, mmap=mmap))
            except EOFError as e:
                assert isinstance(e, qwire.EndOfFile) and isinstance(e, qwire.DecodeError)
                break
    assert got == [0, 1, 2]
    with pytest.raises(EOFError):
        qwire.load(io.BytesIO(b""))
    assert issubclass(qwire.EndOfFile, EOFError) and not issubclass(pickle.UnpicklingError, qwire.EndOfFile)


def test_dump_to_a_full_nonblocking_pipe_reports_what_was_written():
    """dump to a non-blocking pipe that fills up raises BlockingIOError whose characters_written
    is the exact number of bytes the pipe took (it reported 1,000,014 for 62,030 written)."""
    r, w = os.pipe()
    try:
        os.set_blocking(w, False)
        payload = np.arange(125_000, dtype=np.int64)       # 1 MB: more than a pipe holds
        with pytest.raises(BlockingIOError) as info:
            qwire.dump(payload, w)
        written = info.value.characters_written
        taken = b""
        os.set_blocking(r, False)
        while True:
            try:
                chunk = os.read(r, 1 << 20)
            except BlockingIOError:
                break
            if not chunk:
                break
            taken += chunk
        assert 0 < written == len(taken) < len(qwire.dumps(payload))
        assert taken == bytes(qwire.dumps(payload))[:written]
    finally:
        os.close(r)
        os.close(w)


def test_dump_resumes_short_writes_of_file_objects():
    """A file object whose write takes a few bytes at a time still receives the whole message."""
    class Dribble(io.RawIOBase):
        def __init__(self):
            self.data = bytearray()

        def writable(self):
            return True

        def write(self, b):
            k = min(len(b), 7)
            self.data += bytes(b[:k])
            return k

    sink = Dribble()
    value = {"a": np.arange(1000), "b": "text"}
    n = qwire.dump(value, sink)
    assert n == len(sink.data) and qwire.loads(bytes(sink.data))["b"] == "text"

    class Stuck(Dribble):
        def write(self, b):
            if len(self.data) >= 20:
                return None                 # a raw non-blocking file that would block
            return super().write(b)

    with pytest.raises(BlockingIOError) as info:
        qwire.dump(value, Stuck())
    assert info.value.characters_written == 21


def test_write_to_a_socket_sends_everything():
    """Message.write_to over a socketpair sends the whole message, resuming partial sends."""
    a, b = socket.socketpair()
    try:
        msg = qwire.dumps(np.arange(300_000))
        import threading

        got = bytearray()

        def drain():
            while len(got) < len(msg):
                got.extend(b.recv(1 << 16))

        t = threading.Thread(target=drain)
        t.start()
        assert msg.write_to(a) == len(msg)
        t.join(10)
        assert bytes(got) == bytes(msg)
    finally:
        a.close()
        b.close()


def test_full_device_reports_the_errno(tmp_path):
    """Writing to /dev/full: the OSError keeps ENOSPC and says how much was written."""
    if not os.path.exists("/dev/full"):
        pytest.skip("no /dev/full on this system")
    fd = os.open("/dev/full", os.O_WRONLY)
    try:
        with pytest.raises(OSError) as info:
            qwire.dump([1, 2, 3], fd)
        assert info.value.errno == errno.ENOSPC and info.value.characters_written == 0
    finally:
        os.close(fd)


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(values=st.lists(_values, min_size=1, max_size=25), damage=st.sampled_from(
    ["none", "missing", "garbage", "truncated", "rewritten", "appended-elsewhere", "shifted"]), data=st.data())
def test_an_index_never_gives_other_offsets_than_a_scan(tmp_path_factory, values, damage, data):
    """Whatever happened to the index side file (missing, overwritten with garbage, cut short,
    left over from an older file, behind the file), MessageFile finds exactly the offsets that a
    scan of the headers finds."""
    d = tmp_path_factory.mktemp("ix")
    path = str(d / "log.qlog")
    log = qwire.MessageLog(path, sync="never")
    for v in values:
        log.append(v)
    log.close()
    ix = qwire.io.index_path(path)
    raw = bytearray(open(ix, "rb").read())
    if damage == "missing":
        os.unlink(ix)
    elif damage == "garbage":
        at = data.draw(st.integers(0, len(raw) - 1))
        raw[at] ^= data.draw(st.integers(1, 255))
        open(ix, "wb").write(raw)
    elif damage == "truncated":
        open(ix, "wb").write(raw[: data.draw(st.integers(0, len(raw)))])
    elif damage == "rewritten":            # the log replaced by other messages; the old index stays
        with open(path, "wb") as f:
            for v in reversed(values):
                qwire.dump([v, 1], f)
    elif damage == "appended-elsewhere":   # messages appended by a writer that kept no index
        with open(path, "ab") as f:
            for v in values[:3]:
                qwire.dump(v, f)
    elif damage == "shifted":              # a byte inserted at the front
        body = open(path, "rb").read()
        open(path, "wb").write(b"\x01" + body)
    scanned = MessageFile(path, index=False)
    indexed = MessageFile(path)
    assert list(indexed.offsets) == list(scanned.offsets)
    assert indexed.nbytes == scanned.nbytes and indexed.tail == scanned.tail
    assert list(indexed) == list(scanned)


def test_a_log_keeps_its_index_current(tmp_path):
    """MessageLog writes an offset to the index per append; reopening uses it (no header scan
    needed) and a torn tail cut off is dropped from it too."""
    path = str(tmp_path / "k.qlog")
    log = qwire.MessageLog(path, sync="never")
    for i in range(100):
        log.append({"i": i})
    ix = qwire.io.index_path(path)
    assert os.path.getsize(ix) == 8 + 8 * 64           # written 64 offsets at a time ...
    log.close()                                        # ... and the rest on close
    assert os.path.getsize(ix) == 8 + 8 * 100
    offsets, end = qwire.io.read_index(ix, open(path, "rb").read(), os.path.getsize(path))
    assert list(offsets) == list(MessageFile(path, index=False).offsets) and end == os.path.getsize(path)
    with open(path, "ab") as f:
        f.write(bytes(qwire.dumps("torn"))[:5])
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        again = qwire.MessageLog(path, sync="never")
    again.append("next")
    again.close()
    assert os.path.getsize(ix) == 8 + 8 * 101 and len(again.cut_tails) == 1
    assert MessageFile(path)[-1] == "next"


def test_iter_load_mmap_stops_with_an_error_when_the_file_shrinks_mid_replay(tmp_path):
    """iter_load(mmap=True) checks the file's size before each message it decodes: a
    truncation between two messages is a DecodeError, not SIGBUS."""
    path = tmp_path / "shrink.q"
    with open(path, "wb") as f:
        for i in range(4):
            qwire.dump(np.full(20_000, i), f)
    it = qwire.iter_load(path, mmap=True)
    first = next(it)
    assert int(first[0]) == 0
    os.truncate(path, 100)
    with pytest.raises(qwire.DecodeError, match="shrank"):
        next(it)
    # `first` is a view into the map: touching its pages now would be SIGBUS (SECURITY.md), the
    # hazard no check can remove for values already returned.
