"""qwire.pipe and qwire.shm: values between two ends of a pipe (in one process and across
processes), large buffers through shared memory, the lifetime of that memory, refusal of malformed
or hostile frames, and nothing leaked when a peer is killed with SIGKILL mid-transfer."""
import fcntl
import gc
import mmap
import multiprocessing
import os
import signal
import socket
import struct
import threading
import time

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import qwire
from qwire import pipe as qpipe, shm
from qwire.errors import FrameError, PipeClosedError

from pyvalues import REGISTRY, pysame, python_values

pytestmark = pytest.mark.skipif(not shm.available(), reason="needs memfd_create (Linux); the fallback is tested separately")

BIG = 1 << 20  # comfortably above DEFAULT_SHM_THRESHOLD


def open_fds():
    return len(os.listdir("/proc/self/fd"))


def dev_shm():
    return sorted(os.listdir("/dev/shm"))


@pytest.fixture
def pair():
    a, b = qpipe.Pipe()
    yield a, b
    a.close()
    b.close()


def transfer(a, b, value):
    """a.send(value) from a thread while b receives (a frame larger than the socket's buffer
    would block a send that nobody reads); returns what b received."""
    errors = []

    def send():
        try:
            a.send(value)
        except BaseException as e:  # re-raised below
            errors.append(e)

    t = threading.Thread(target=send)
    t.start()
    try:
        got = b.recv(timeout=30)
    finally:
        t.join(30)
    assert not t.is_alive()
    if errors:
        raise errors[0]
    return got


def frames_sent_with_fds(monkeypatch, conn):
    """Record the number of descriptors each frame carries."""
    counts = []
    real = conn._sendmsg

    def spy(parts, fds):
        counts.append(len(fds))
        return real(parts, fds)

    monkeypatch.setattr(conn, "_sendmsg", spy)
    return counts


# --- values ----------------------------------------------------------------------------------------

def test_large_array_arrives_equal_and_read_only(pair, monkeypatch):
    """An array above the threshold arrives equal, as a read-only view of shared memory."""
    a, b = pair
    counts = frames_sent_with_fds(monkeypatch, a)
    x = np.random.default_rng(1).random(BIG // 8 * 3)
    a.send(x)
    y = b.recv()
    assert np.array_equal(x, y) and y.dtype == x.dtype
    assert not y.flags.writeable
    with pytest.raises(ValueError):
        y.flags.writeable = True
    assert counts == [1]


def test_small_values_travel_in_the_message(pair, monkeypatch):
    """Values without large buffers carry no descriptors and round-trip as loads(dumps(x))."""
    a, b = pair
    counts = frames_sent_with_fds(monkeypatch, a)
    value = {"sym": "AAPL", "px": [187.5, 188.0], "t": (1, "x"), "s": {3}, "a": np.arange(10)}
    a.send(value)
    got = b.recv()
    assert pysame(got, qwire.loads(qwire.dumps(value)))
    assert counts == [0]


def test_mixed_value_with_many_buffers(pair, monkeypatch):
    """Several large buffers share one segment; small ones stay in the message; order is kept."""
    a, b = pair
    counts = frames_sent_with_fds(monkeypatch, a)
    rng = np.random.default_rng(2)
    value = {
        "f": rng.random(BIG // 8),
        "i": np.arange(BIG // 4, dtype=np.int32),
        "raw": bytes(range(256)) * (BIG // 256),
        "nd": rng.random((300, 500)),
        "small": np.arange(5.0),
        "strided": rng.random(BIG // 4)[::2],
        "nested": [rng.integers(0, 9, BIG // 8), "tail"],
    }
    a.send(value)
    got = b.recv()
    assert set(got) == set(value)
    for k in ("f", "i", "nd", "small", "strided"):
        assert np.array_equal(got[k], value[k]) and got[k].dtype == value[k].dtype and got[k].shape == value[k].shape
    assert got["raw"] == value["raw"]
    assert np.array_equal(got["nested"][0], value["nested"][0]) and got["nested"][1] == "tail"
    assert counts == [1]


def test_dataframe_round_trips_exactly(pair, monkeypatch):
    """A DataFrame or Series comes back as itself (dtypes, index, missing strings, categoricals,
    a MultiIndex: the codec's own frames), its large columns through shared memory (only a small
    message crosses the socket); dumps={"q_compatible": True} sends a plain
    q table, which arrives as a qwire.Table."""
    pd = pytest.importorskip("pandas")
    a, b = pair
    n = 200_000
    df = pd.DataFrame({"x": np.arange(n), "y": np.random.default_rng(3).random(n), "s": ["a", None] * (n // 2),
                       "c": pd.Categorical(["u", "v"] * (n // 2)),
                       "t": pd.date_range("2020", periods=n, freq="min").as_unit("ns").to_numpy()},
                      index=pd.Index(np.arange(n) * 2, name="ix"))
    pd.testing.assert_frame_equal(transfer(a, b, df), df)
    pd.testing.assert_series_equal(transfer(a, b, df["s"]), df["s"])
    multi = pd.DataFrame({"v": [1, 2]}, index=pd.MultiIndex.from_tuples([(1, "a"), (2, "b")]))
    pd.testing.assert_frame_equal(transfer(a, b, multi), multi)

    counts = frames_sent_with_fds(monkeypatch, a)
    numeric = df[["x", "y", "t"]]
    socket_bytes = a.send(numeric)
    got = b.recv()
    pd.testing.assert_frame_equal(got, numeric)
    assert counts == [1] and socket_bytes < 4096  # 4.8 MB of columns, none of it through the socket

    c, d = qpipe.Pipe(dumps={"q_compatible": True})
    try:
        plain = transfer(c, d, df.reset_index(drop=True)[["x", "y", "t"]])
        assert isinstance(plain, qwire.Table)
        pd.testing.assert_frame_equal(plain.to_pandas(), qwire.loads(qwire.dumps(numeric.reset_index(drop=True),
                                                                                 q_compatible=True)).to_pandas())
    finally:
        c.close()
        d.close()


@settings(max_examples=40)
@given(python_values(max_leaves=8), st.integers(0, 3))
def test_any_python_value_round_trips(value, n_arrays):
    """Whatever loads(dumps(x)) gives, the pipe gives too, with large arrays alongside."""
    a, b = qpipe.Pipe(shm_threshold=4096, dumps={"registry": REGISTRY}, registry=REGISTRY)
    try:
        arrays = [np.full(1024 * (i + 1), i, dtype=np.int64) for i in range(n_arrays)]
        a.send([value, arrays])
        got = b.recv()
        assert pysame(got[0], qwire.loads(qwire.dumps(value, registry=REGISTRY), registry=REGISTRY))
        assert all(np.array_equal(g, x) for g, x in zip(got[1], arrays))
    finally:
        a.close()
        b.close()


def test_unencodable_value_sends_nothing(pair):
    """An EncodeError leaves the stream untouched: the next value arrives normally."""
    a, b = pair
    with pytest.raises(qwire.EncodeError):
        a.send({"f": lambda: 1, "big": np.zeros(BIG)})
    a.send("after")
    assert b.recv() == "after"
    assert not b.poll(0)


# --- shared arrays and lifetime --------------------------------------------------------------------

def test_shared_array_is_sent_without_copy(pair):
    """An array made by shm.empty (and a view of it) reaches the peer as the same pages: a later
    write by the sender is visible to the receiver, so nothing was copied."""
    a, b = pair
    x = shm.empty((1000, 200))
    x[:] = 1.0
    assert shm.is_shared(x) and shm.is_shared(x[10:20]) and not shm.is_shared(np.ones(5))
    a.send({"whole": x, "rows": x[10:500]})
    got = b.recv()
    x[10, 0] = 42.0
    assert got["whole"][10, 0] == 42.0 and got["rows"][0, 0] == 42.0
    assert not got["whole"].flags.writeable


def test_zeros_and_array():
    """shm.zeros reads as zeros; shm.array copies its input; object dtypes are refused."""
    z = shm.zeros(1000, dtype=np.int32)
    assert z.dtype == np.int32 and not z.any() and shm.is_shared(z)
    src = np.arange(12).reshape(3, 4)
    c = shm.array(src)
    assert np.array_equal(c, src) and shm.is_shared(c)
    with pytest.raises(TypeError):
        shm.array(np.array(["a"], dtype=object))
    with pytest.raises(ValueError):
        shm.empty((-1, 2))


def test_shared_region_is_freed_with_its_last_view():
    """The region (its descriptor and mapping) goes when the last array over it goes."""
    gc.collect()
    before = open_fds()
    x = shm.empty(BIG)
    view = x[5:]
    del x
    gc.collect()
    assert open_fds() > before and shm.is_shared(view)
    del view
    gc.collect()
    assert open_fds() == before
    assert len(shm._regions) == 0


def test_received_arrays_outlive_both_connections():
    """The receiver's mapping lives as long as its arrays, after both ends are closed."""
    a, b = qpipe.Pipe()
    x = np.random.default_rng(4).random(BIG)
    a.send(x)
    y = b.recv()
    a.close()
    b.close()
    gc.collect()
    assert np.array_equal(x, y)


def test_segment_reused_only_after_reader_lets_go(pair):
    """A segment a reader still maps is never overwritten; once the reader drops its arrays the
    next send reuses it."""
    a, b = pair
    first = np.full(BIG, 1.0)
    a.send(first)
    held = b.recv()
    a.send(np.full(BIG, 2.0))
    second = b.recv()
    assert (held == 1.0).all() and (second == 2.0).all()
    assert len(a._segments._segments) == 2  # two segments: the first was busy
    del held, second
    gc.collect()
    a.send(np.full(BIG, 3.0))
    third = b.recv()
    assert (third == 3.0).all()
    assert len(a._segments._segments) == 2  # reused, not a third


def test_descriptors_are_read_only_for_the_receiver(pair):
    """The receiver's descriptor of a shared array is read-only: it cannot map it writable."""
    a, b = pair
    x = shm.empty(BIG // 8)
    region, _ = shm.find_region(x)
    fd = region.readonly_fd()
    try:
        assert fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_ACCMODE == os.O_RDONLY
        with pytest.raises(PermissionError):
            mmap.mmap(fd, BIG // 8, flags=mmap.MAP_SHARED, prot=mmap.PROT_READ | mmap.PROT_WRITE)
    finally:
        os.close(fd)


def test_fallback_without_shared_memory(monkeypatch):
    """shm=False (and a platform without memfd) sends everything through the socket."""
    for setup in ("option", "platform"):
        if setup == "platform":
            monkeypatch.setattr(shm, "_available", False)
        a, b = qpipe.Pipe(shm=setup != "option")
        counts = frames_sent_with_fds(monkeypatch, a)
        try:
            assert not a.shm
            x = np.random.default_rng(5).random(BIG)
            got = transfer(a, b, {"x": x})
            assert np.array_equal(got["x"], x) and counts == [0]
        finally:
            a.close()
            b.close()


def test_poll_timeout_and_eof(pair):
    """poll and recv(timeout) wait boundedly; a clean close gives EOFError; a closed end refuses."""
    a, b = pair
    assert not b.poll(0.01)
    with pytest.raises(TimeoutError):
        b.recv(timeout=0.01)
    a.close()
    with pytest.raises(EOFError):
        b.recv()
    with pytest.raises(PipeClosedError):
        a.send(1)


# --- hostile and malformed frames ------------------------------------------------------------------

def raw_pair():
    s, r = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    return s, qpipe.Connection(r)


def frame(n_fds, table, message=None, magic=b"QWfr", version=1):
    message = bytes(qwire.dumps(None)) if message is None else message
    n_buffers = len(table)
    head = struct.pack("<4sBBHIIQQ", magic, version, 0, n_fds, n_buffers, 0, len(message), 0)
    return head + b"".join(struct.pack("<IIQQ", *entry) for entry in table) + message


def oob_message(n):
    bufs = []
    m = qwire.dumps(np.zeros(n, dtype=np.uint8), buffer_callback=bufs.append, oob_threshold=0)
    return bytes(m)


def unsealed_memfd(size):
    fd = os.memfd_create("test", os.MFD_CLOEXEC)
    os.ftruncate(fd, size)
    return fd


@pytest.mark.parametrize("case", ["magic", "version", "fd count", "fd index", "outside", "unsealed",
                                  "not memfd", "unused fd", "length mismatch", "bad message"])
def test_malformed_frames_are_refused_and_descriptors_closed(case):
    """Each malformed frame raises FrameError (a DecodeError) and leaves no descriptor open."""
    gc.collect()
    before = open_fds()
    s, conn = raw_pair()
    sealed = shm._memfd(4096)
    fds = [sealed]
    table = [(0, 0, 0, 100)]
    message = oob_message(100)
    kw = {}
    if case == "magic":
        kw["magic"] = b"XXXX"
    elif case == "version":
        kw["version"] = 9
    elif case == "fd count":
        data = frame(2, table, message)
    elif case == "fd index":
        table = [(3, 0, 0, 100)]
    elif case == "outside":
        table = [(0, 0, 4000, 100)]
    elif case == "unsealed":
        fds = [unsealed_memfd(4096)]
        os.close(sealed)
    elif case == "not memfd":
        r, w = os.pipe()
        fds = [r]
        os.close(w)
        os.close(sealed)
    elif case == "unused fd":
        fds = [sealed, shm._memfd(4096)]
    elif case == "length mismatch":
        pass
    elif case == "bad message":
        message = b"\x01\x00\x00\x00\x0c\x00\x00\x00\x77\x00\x00\x00"
    if case != "fd count":
        data = frame(len(fds) if case != "unused fd" else 2, table, message, **kw)
    if case == "length mismatch":  # the frame claims one byte more than the message's header
        data = data[:16] + struct.pack("<Q", len(message) + 1) + data[24:]
    s.sendmsg([data], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, struct.pack(f"{len(fds)}i", *fds))])
    for fd in fds:
        os.close(fd)
    with pytest.raises((FrameError, qwire.DecodeError)) as info:
        conn.recv(timeout=5)
    assert isinstance(info.value, ValueError)
    del info  # its traceback holds the frame's mappings
    s.close()
    conn.close()
    gc.collect()
    assert open_fds() == before


@pytest.mark.slow
def test_peer_closing_mid_frame_gives_pipe_closed_and_closes_descriptors():
    """A frame cut short (header, table or message) raises PipeClosedError, fds closed."""
    for cut in (10, 40, 70):
        gc.collect()
        before = open_fds()
        s, conn = raw_pair()
        fd = shm._memfd(4096)
        data = frame(1, [(0, 0, 0, 100)], oob_message(100))
        s.sendmsg([data[:cut]], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, struct.pack("i", fd))])
        os.close(fd)
        s.close()
        with pytest.raises(PipeClosedError):
            conn.recv(timeout=5)
        conn.close()
        gc.collect()
        assert open_fds() == before


def test_claimed_huge_message_allocates_nothing_up_front():
    """A header claiming a terabyte message, then silence, is refused by max_message_size."""
    s, r = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    conn = qpipe.Connection(r, max_message_size=1 << 20)
    s.sendall(struct.pack("<4sBBHIIQQ", b"QWfr", 1, 0, 0, 0, 0, 1 << 40, 0))
    with pytest.raises(FrameError):
        conn.recv(timeout=5)
    s.close()
    conn.close()


# --- across processes ------------------------------------------------------------------------------

def _echo_shape(conn):
    while True:
        v = conn.recv()
        if v is None:  # (a forked child also holds the parent's end, so EOF would never come)
            return
        conn.send({"sum": float(np.asarray(v["x"]).sum()), "writeable": bool(v["x"].flags.writeable)})


@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_connection_passes_to_a_child_process(method):
    """A Connection given to a multiprocessing child (fork and spawn) carries shared arrays."""
    ctx = multiprocessing.get_context(method)
    a, b = qpipe.Pipe()
    p = ctx.Process(target=_echo_shape, args=(b,), daemon=True)
    p.start()
    b.close()
    try:
        x = np.arange(BIG // 8, dtype=np.float64)
        a.send({"x": x})
        assert a.recv(timeout=60) == {"sum": float(x.sum()), "writeable": False}
        s = shm.array(x)
        a.send({"x": s})
        assert a.recv(timeout=60)["sum"] == float(x.sum())
        a.send(None)
    finally:
        a.close()
        p.join(30)
    assert p.exitcode == 0


def _send_forever(conn, n):
    x = np.random.default_rng(6).random(n)
    while True:
        conn.send({"x": x})


def _recv_forever(conn):
    while True:
        conn.recv()


def _die_mid_frame(conn):
    fd = shm._memfd(1 << 20)
    data = frame(1, [(0, 0, 0, 1 << 20)], oob_message(1 << 20))
    conn._sock.sendmsg([data[: len(data) // 2]], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, struct.pack("i", fd))])
    os.kill(os.getpid(), signal.SIGKILL)


def test_sender_killed_mid_transfer_leaks_nothing():
    """The receiver of a sender killed by SIGKILL (while streaming 80 MB arrays, and exactly in the
    middle of a frame) gets EOFError/PipeClosedError and holds no extra descriptor or segment."""
    ctx = multiprocessing.get_context("fork")
    gc.collect()
    fds_before, shm_before = open_fds(), dev_shm()
    for target, args in ((_send_forever, (10_000_000,)), (_die_mid_frame, ())):
        a, b = qpipe.Pipe()
        p = ctx.Process(target=target, args=(b,) + args, daemon=True)
        p.start()
        b.close()
        received = 0
        if target is _send_forever:
            for _ in range(3):
                v = a.recv(timeout=60)
                received += 1
            del v
            time.sleep(0.01)
            os.kill(p.pid, signal.SIGKILL)
        with pytest.raises((EOFError, PipeClosedError)):
            while True:
                a.recv(timeout=60)
        p.join(30)
        assert p.exitcode == -signal.SIGKILL
        p.close()  # multiprocessing's own sentinel descriptor
        a.close()
    gc.collect()
    assert open_fds() == fds_before
    assert dev_shm() == shm_before


def test_receiver_killed_mid_transfer_leaks_nothing():
    """A sender whose receiver is killed by SIGKILL gets PipeClosedError; after closing, its
    descriptors and /dev/shm are as before (the segments in flight died with the socket)."""
    ctx = multiprocessing.get_context("fork")
    gc.collect()
    fds_before, shm_before = open_fds(), dev_shm()
    a, b = qpipe.Pipe()
    p = ctx.Process(target=_recv_forever, args=(b,), daemon=True)
    p.start()
    b.close()
    x = np.random.default_rng(7).random(10_000_000)
    for _ in range(3):
        a.send({"x": x})
    os.kill(p.pid, signal.SIGKILL)
    p.join(30)
    p.close()  # multiprocessing's own sentinel descriptor
    with pytest.raises(PipeClosedError):
        for _ in range(100):
            a.send({"x": x})
    # the dead receiver's descriptors (held, in flight) are gone, so every segment is free again
    assert a._segments is None or all(seg.try_acquire() for seg in a._segments._segments)
    a.close()
    gc.collect()
    assert open_fds() == fds_before
    assert dev_shm() == shm_before


# --- a Unix socket path between unrelated processes ------------------------------------------------

def _connect_and_echo(path):
    with qpipe.connect(path, timeout=30) as conn:
        v = conn.recv(timeout=30)
        conn.send({"sum": float(v.sum()), "writeable": bool(v.flags.writeable)})


def test_listener_and_connect_over_a_socket_path(tmp_path):
    """A process that connects to a Listener's path gets the same shared-memory transfers; the
    socket file is removed on close."""
    path = str(tmp_path / "qwire.sock")
    with qpipe.Listener(path) as listener:
        p = FORK_CTX.Process(target=_connect_and_echo, args=(path,), daemon=True)
        p.start()
        with listener.accept(timeout=30) as conn:
            x = np.arange(BIG // 8 * 4, dtype=np.float64)
            conn.send(x)
            assert conn.recv(timeout=30) == {"sum": float(x.sum()), "writeable": False}
        p.join(30)
        assert p.exitcode == 0
        p.close()
        with pytest.raises(TimeoutError):
            listener.accept(timeout=0.01)
    assert not os.path.exists(path)


def test_listener_refuses_other_users(tmp_path):
    """A peer whose uid is not allowed (SO_PEERCRED) is closed without a connection."""
    path = str(tmp_path / "strict.sock")
    with qpipe.Listener(path, allowed_uids={os.getuid() + 12345}) as listener:
        client = qpipe.connect(path, timeout=5)
        with pytest.raises(TimeoutError):
            listener.accept(timeout=0.2)
        with pytest.raises((EOFError, PipeClosedError)):
            client.recv(timeout=5)
        client.close()


FORK_CTX = multiprocessing.get_context("fork")


def test_large_bytes_through_shared_memory(pair):
    """A 4 MB bytes value through shared memory decodes within the default memory budget."""
    a, b = pair
    a.send({"blob": b"\x02" * (4 << 20)})
    assert b.recv(timeout=30) == {"blob": b"\x02" * (4 << 20)}


def test_without_proc_segments_are_never_reused(pair, monkeypatch):
    """Where /proc cannot reopen a descriptor, a segment is sent as a duplicate and dropped after
    the send instead of cached (its reuse could not be proven safe)."""
    a, b = pair
    real_open = os.open

    def no_proc(path, *args, **kwargs):
        if str(path).startswith("/proc/self/fd/"):
            raise FileNotFoundError(path)
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(os, "open", no_proc)
    x = np.full(BIG, 5.0)
    a.send(x)
    held = b.recv(timeout=30)
    a.send(np.full(BIG, 6.0))
    assert (b.recv(timeout=30) == 6.0).all() and (held == 5.0).all()
    assert a._segments._segments == []


def test_concurrent_senders_keep_frames_whole(pair):
    """Several threads sending on one connection never interleave their frames."""
    a, b = pair
    n_threads, per_thread = 4, 5

    def sender(k):
        for i in range(per_thread):
            a.send({"k": k, "i": i, "x": np.full(BIG // 8, float(k * 100 + i))})

    threads = [threading.Thread(target=sender, args=(k,)) for k in range(n_threads)]
    for t in threads:
        t.start()
    got = [b.recv(timeout=30) for _ in range(n_threads * per_thread)]
    for t in threads:
        t.join(30)
    assert sorted((v["k"], v["i"]) for v in got) == [(k, i) for k in range(n_threads) for i in range(per_thread)]
    assert all((v["x"] == v["k"] * 100 + v["i"]).all() for v in got)
