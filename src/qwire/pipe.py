"""A multiprocessing-style pipe between two processes on one host, whose large buffers travel
through shared memory.

    parent, child = qwire.pipe.Pipe()
    p = multiprocessing.Process(target=work, args=(child,)); p.start()
    parent.send({"prices": np.random.rand(10_000_000)})   # 80 MB: one copy, into shared memory
    reply = parent.recv()

Each `send` is one *frame* over a Unix stream socket (a socketpair): a 32-byte header, one
descriptor per out-of-band buffer, then a qwire message. The message is `qwire.dumps` of the value
with `buffer_callback`: arrays and bytes of at least `shm_threshold` bytes leave the message and are
copied once into a memory file (qwire.shm.SegmentCache) whose descriptor goes with the frame
(`SCM_RIGHTS`); an array that already lives in shared memory (`qwire.shm.empty`) is not copied at
all. The receiver maps the files read-only and decodes with `loads(message, buffers=...)`, so its
arrays are read-only views of the shared pages. Smaller buffers stay in the message, which is
written with `sendmsg` from its segments (never joined). Where memory files are unavailable, or with
`shm=False`, everything travels in the message through the socket.

pandas objects need nothing special: the codec writes a DataFrame, Series or Index exactly by
default (docs/TABLES.md), its column arrays as out-of-band buffers like any other array, so a large
column goes through shared memory and comes back as a read-only view of it.

Frame layout (little-endian):

    header       magic "QWfr", version u8, flags u8 (0), descriptors u16, buffers u32,
                 reserved u32 (0), message length u64, reserved u64 (0)           32 bytes
    buffers      per out-of-band buffer: descriptor index u32, reserved u32 (0),
                 offset u64, length u64 (in that memory file)                     24 bytes each
    message      a qwire (kdb+ IPC) message of `message length` bytes

A malformed frame raises qwire.FrameError (a DecodeError) and closes the connection (the stream is
no longer in step); a message that fails to decode after a well-formed frame raises the decoder's
error and leaves the connection usable. Received descriptors are closed on every path.
"""
from __future__ import annotations

import os
import select
import socket
import struct
import threading
import time
from typing import Any

from . import shm as _shm
from ._core import Decoder, Receiver, dumps, read_header_length
from .errors import DecodeError, FrameError, PipeClosedError

__all__ = ["Pipe", "Connection", "Listener", "connect", "DEFAULT_SHM_THRESHOLD", "DEFAULT_MAX_MESSAGE_SIZE",
           "MAX_DESCRIPTORS", "MAX_BUFFERS"]

MAGIC = b"QWfr"
VERSION = 1
_HEADER = struct.Struct("<4sBBHIIQQ")
_BUFFER = struct.Struct("<IIQQ")
assert _HEADER.size == 32 and _BUFFER.size == 24

# Out-of-band buffers at least this large go through shared memory (below it, two socket copies
# are cheaper than passing and mapping a descriptor: benchmarks/test_bench_processes.py).
DEFAULT_SHM_THRESHOLD = 256 << 10
# Descriptors per frame: the kernel's own limit for one SCM_RIGHTS message (SCM_MAX_FD).
MAX_DESCRIPTORS = 253
# Out-of-band buffers per frame (a frame's buffer table is at most 24 MiB).
MAX_BUFFERS = 1 << 20
# Bytes of the in-socket message a Connection accepts: no limit by default, because the receive
# buffer grows only with what arrives (never by a claimed length).
DEFAULT_MAX_MESSAGE_SIZE = None
_IOV_MAX = min(os.sysconf("SC_IOV_MAX") if hasattr(os, "sysconf") else 1024, 1024)
_RECV_CHUNK = 1 << 24


def Pipe(duplex: bool = True, **options: Any) -> tuple[Connection, Connection]:
    """Two connected qwire Connections over a Unix socketpair (always duplex: `duplex` is accepted
    for multiprocessing.Pipe's signature). options: as Connection's."""
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    return Connection(a, **options), Connection(b, **options)


class Connection:
    """One end of a qwire pipe: `send(obj)`, `recv()`, `poll()`, `close()`, like
    multiprocessing.connection.Connection but with qwire's codec (nothing is unpickled) and shared
    memory for large buffers.

    Options: shm (True: use shared memory where available), shm_threshold (bytes; smaller buffers
    stay in the message), max_message_size (bytes of the in-socket message, default no limit:
    the receive buffer grows only with what arrives), max_buffers, max_cached_bytes (the
    sender's reusable segments), dumps (a dict of qwire.dumps options, e.g. q_compatible=True to
    send DataFrames as plain q tables),
    and the decoder's options (max_depth, registry, max_expansion, max_decoded_size, ...).

    A connection can be passed to a multiprocessing.Process (fork or spawn) like
    multiprocessing's own. `send` and `recv` are each safe to call from several threads.
    """

    def __init__(
        self,
        sock: socket.socket,
        *,
        shm: bool = True,
        shm_threshold: int = DEFAULT_SHM_THRESHOLD,
        max_message_size: int | None = DEFAULT_MAX_MESSAGE_SIZE,
        max_buffers: int = MAX_BUFFERS,
        max_cached_bytes: int = 512 << 20,
        dumps: dict[str, Any] | None = None,
        **decoder_options: Any,
    ) -> None:
        if sock.family != socket.AF_UNIX:
            raise ValueError("qwire.pipe.Connection needs a Unix socket (descriptors travel over it)")
        self._sock = sock
        self.shm = bool(shm) and _shm.available()
        self.shm_threshold = int(shm_threshold)
        self.max_message_size = max_message_size
        self.max_buffers = min(int(max_buffers), MAX_BUFFERS)
        self.max_cached_bytes = max_cached_bytes
        self._dumps_options = dict(dumps or {})
        for forbidden in ("buffer_callback", "msg_type"):
            if forbidden in self._dumps_options:
                raise ValueError(f"dumps option {forbidden!r} is set by the pipe itself")
        self._decoder_options = decoder_options
        self._decoder = Decoder(max_message_size=max_message_size, **decoder_options)
        self._segments = _shm.SegmentCache(max_cached_bytes) if self.shm else None
        self._send_lock = threading.Lock()
        self._recv_lock = threading.Lock()
        self._closed = False

    # --- multiprocessing-compatible surface ---------------------------------------------------

    @property
    def closed(self) -> bool:
        return self._closed

    def fileno(self) -> int:
        return self._sock.fileno()

    def close(self) -> None:
        """Close the socket and drop the cached segments (memory a peer still maps stays with it)."""
        if self._closed:
            return
        self._closed = True
        self._sock.close()
        if self._segments is not None:
            self._segments.close()

    def __enter__(self) -> Connection:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._closed else f"fd={self._sock.fileno()}"
        return f"<qwire.pipe.Connection {state} shm={self.shm}>"

    def poll(self, timeout: float | None = 0.0) -> bool:
        """True when a frame (or the end of the stream) is waiting; waits up to timeout seconds
        (None: forever)."""
        self._check_open()
        ready, _, _ = select.select([self._sock], [], [], timeout)
        return bool(ready)

    # --- sending --------------------------------------------------------------------------------

    def send(self, obj: object) -> int:
        """Send obj as one frame; returns the bytes written to the socket (shared memory not
        counted). Raises qwire.EncodeError for what qwire cannot write (nothing is sent then),
        PipeClosedError when the peer has gone."""
        self._check_open()
        with self._send_lock:
            return self._send(obj)

    def _send(self, obj: object) -> int:
        if not self.shm:
            msg = dumps(obj, **self._dumps_options)
            return self._sendmsg([_HEADER.pack(MAGIC, VERSION, 0, 0, 0, 0, msg.nbytes, 0), *msg.segments()], [])
        threshold = self.shm_threshold
        regions: dict[int, tuple[_shm.SharedRegion, int]] = {}  # id(region) -> (region, fd index)
        plan: list[tuple[int, int, int]] = []                   # (fd index or -1 for the copy, offset, length)
        copies: list[memoryview] = []

        def place(buf: Any) -> bool:
            view = memoryview(buf)
            found = _shm.find_region(view)
            if found is not None:
                region, offset = found
                entry = regions.setdefault(id(region), (region, len(regions)))
                plan.append((entry[1], offset, view.nbytes))
                return False
            if view.nbytes < threshold:
                return True  # stays in the message
            plan.append((-1, len(copies), view.nbytes))
            copies.append(view)
            return False

        msg = dumps(obj, buffer_callback=place, **self._dumps_options)
        fds: list[int] = []
        segment = None
        try:
            for region, _ in regions.values():
                fds.append(region.readonly_fd())
            table = []
            if copies:
                assert self._segments is not None
                offsets = []
                end = 0
                for view in copies:
                    offsets.append(end)
                    end = _shm._round_up(end + view.nbytes, _shm.ALIGNMENT)
                segment = self._segments.acquire(end)
                dest = segment.view
                for view, offset in zip(copies, offsets):
                    dest[offset : offset + view.nbytes] = view.cast("B")  # the one copy
                copy_index = len(fds)
                fds.append(segment.reader_fd())
            for index, offset, length in plan:
                if index < 0:
                    index, offset = copy_index, offsets[offset]
                table.append(_BUFFER.pack(index, 0, offset, length))
            if len(fds) > MAX_DESCRIPTORS:
                raise ValueError(f"a frame can carry at most {MAX_DESCRIPTORS} memory files; this value "
                                 f"spans {len(regions)} shared regions")
            head = _HEADER.pack(MAGIC, VERSION, 0, len(fds), len(plan), 0, msg.nbytes, 0)
            return self._sendmsg([head + b"".join(table), *msg.segments()], fds)
        finally:
            for fd in fds:
                os.close(fd)  # the frame in flight holds its own references
            if segment is not None and self._segments is not None:
                self._segments.release(segment)  # reused once the reader lets go

    def _sendmsg(self, parts: list[Any], fds: list[int]) -> int:
        ancillary = [(socket.SOL_SOCKET, socket.SCM_RIGHTS, struct.pack(f"{len(fds)}i", *fds))] if fds else []
        views = [memoryview(p).cast("B") for p in parts]
        total = sum(v.nbytes for v in views)
        sent = 0
        try:
            while views:
                n = self._sock.sendmsg(views[:_IOV_MAX], ancillary)
                ancillary = []
                sent += n
                while views and n >= views[0].nbytes:
                    n -= views[0].nbytes
                    views.pop(0)
                if n:
                    views[0] = views[0][n:]
        except (BrokenPipeError, ConnectionResetError) as e:
            self.close()
            raise PipeClosedError(f"the peer closed the pipe ({sent} of {total} bytes of the frame sent)") from e
        return total

    # --- receiving ------------------------------------------------------------------------------

    def recv(self, timeout: float | None = None) -> Any:
        """The next value the peer sent. Waits up to timeout seconds for a frame to start
        (None: forever; TimeoutError after that); a frame once started is read to its end.
        EOFError when the peer closed between frames."""
        self._check_open()
        with self._recv_lock:
            if timeout is not None and not self.poll(timeout):
                raise TimeoutError(f"no frame arrived within {timeout} s")
            message, buffers = self._recv_frame()
            # the decoder's memory budget counts the buffers as bytes received, as the message's
            return self._decoder.decode(message, buffers or None)

    def _recv_frame(self) -> tuple[memoryview, list[memoryview]]:
        fds: list[int] = []
        try:
            head = self._recv_header(fds)
            magic, version, flags, n_fds, n_buffers, reserved, msg_len, reserved2 = _HEADER.unpack(head)
            if magic != MAGIC:
                raise FrameError(f"not a qwire pipe frame (magic {magic!r})", 0)
            if version != VERSION or flags or reserved or reserved2:
                raise FrameError(f"unsupported frame version {version} (flags {flags})", 4)
            if n_fds != len(fds):
                raise FrameError(f"the frame names {n_fds} memory files but {len(fds)} came with it", 6)
            if n_buffers > self.max_buffers:
                raise FrameError(f"the frame has {n_buffers} buffers, over the limit of {self.max_buffers}", 8)
            if n_fds > n_buffers:
                raise FrameError(f"{n_fds} memory files for {n_buffers} buffers", 6)
            if msg_len < 8 or (self.max_message_size is not None and msg_len > self.max_message_size):
                raise FrameError(f"message length {msg_len} is outside [8, {self.max_message_size}]", 16)
            table = self._recv_exact(n_buffers * _BUFFER.size) if n_buffers else b""
            message = self._recv_message(msg_len)
        except BaseException as e:
            for fd in fds:
                os.close(fd)
            self.close()  # the stream is out of step: nothing after this can be trusted
            if isinstance(e, (FrameError, PipeClosedError, EOFError)):
                raise
            if isinstance(e, DecodeError):
                raise FrameError(f"malformed message in frame: {e.reason}", e.offset) from None
            if isinstance(e, OSError):
                raise PipeClosedError(f"the pipe failed while receiving: {e}") from e
            raise
        try:
            return message, self._map_buffers(table, n_buffers, fds)
        finally:
            for fd in fds:
                os.close(fd)

    def _recv_header(self, fds: list[int]) -> bytes:
        got = bytearray()
        space = socket.CMSG_SPACE(MAX_DESCRIPTORS * 4)
        truncated = False
        while len(got) < _HEADER.size:
            data, ancdata, flags, _ = self._sock.recvmsg(_HEADER.size - len(got), space, socket.MSG_CMSG_CLOEXEC)
            for level, kind, payload in ancdata:
                if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                    usable = len(payload) - len(payload) % 4
                    fds.extend(struct.unpack(f"{usable // 4}i", payload[:usable]))
            truncated = truncated or bool(flags & socket.MSG_CTRUNC)
            if not data:
                if not got:
                    raise EOFError("the peer closed the pipe")
                raise PipeClosedError(f"the peer closed the pipe inside a frame header ({len(got)} of 32 bytes)")
            got += data
        if truncated:
            raise FrameError(f"the peer sent more than {MAX_DESCRIPTORS} descriptors with one frame", 0)
        return bytes(got)

    def _recv_exact(self, n: int) -> bytearray:
        out = bytearray(min(n, _RECV_CHUNK))
        filled = 0
        while filled < n:
            if filled == len(out):
                out.extend(bytes(min(n - filled, len(out))))  # grows with what arrived, never by claim
            k = self._sock.recv_into(memoryview(out)[filled:])
            if not k:
                raise PipeClosedError(f"the peer closed the pipe inside a frame ({filled} of {n} bytes of its buffer table)")
            filled += k
        return out

    def _recv_message(self, msg_len: int) -> memoryview:
        header = bytearray(8)
        filled = 0
        while filled < 8:
            k = self._sock.recv_into(memoryview(header)[filled:])
            if not k:
                raise PipeClosedError(f"the peer closed the pipe inside a message header ({filled} of 8 bytes)")
            filled += k
        total = read_header_length(header, self.max_message_size)
        if total != msg_len:
            raise FrameError(f"the message header says {total} bytes, the frame {msg_len}", 16)
        receiver = Receiver(header, total)
        while receiver.filled < total:
            k = self._sock.recv_into(receiver.writable(_RECV_CHUNK))
            if not k:
                raise PipeClosedError(f"the peer closed the pipe inside a message ({receiver.filled} of {total} bytes)")
            receiver.commit(k)
        return receiver.finish()

    def _map_buffers(self, table: bytes | bytearray, n_buffers: int, fds: list[int]) -> list[memoryview]:
        if not n_buffers:
            return []
        entries = [_BUFFER.unpack_from(table, i * _BUFFER.size) for i in range(n_buffers)]
        spans: list[list[tuple[int, int]]] = [[] for _ in fds]
        for i, (index, reserved, offset, length) in enumerate(entries):
            if index >= len(fds) or reserved:
                raise FrameError(f"buffer {i} names memory file {index} of {len(fds)}", 32 + i * _BUFFER.size)
            spans[index].append((offset, length))
        mappings = []
        for index, fd in enumerate(fds):
            if not spans[index]:
                raise FrameError(f"memory file {index} came with the frame but no buffer uses it", 32)
            mappings.append(_shm.map_readonly(fd, spans[index], where=f"memory file {index}: "))
        buffers = []
        for index, reserved, offset, length in entries:
            mapping, start = mappings[index]
            buffers.append(memoryview(mapping)[offset - start : offset - start + length])
        return buffers

    def _check_open(self) -> None:
        if self._closed:
            raise PipeClosedError("the connection is closed")

    # --- passing a connection to another process ------------------------------------------------

    def __reduce__(self) -> tuple[Any, ...]:
        from multiprocessing import reduction

        options = dict(shm=self.shm, shm_threshold=self.shm_threshold, max_message_size=self.max_message_size,
                       max_buffers=self.max_buffers, max_cached_bytes=self.max_cached_bytes,
                       dumps=self._dumps_options, **self._decoder_options)
        return _rebuild_connection, (reduction.DupFd(self.fileno()), options)


def _rebuild_connection(dup: Any, options: dict[str, Any]) -> Connection:
    return Connection(socket.socket(socket.AF_UNIX, socket.SOCK_STREAM, fileno=dup.detach()), **options)


# --- between unrelated processes: a Unix socket path ------------------------------------------

class Listener:
    """Accepts qwire pipe connections on a Unix socket path (a leading NUL byte: Linux's abstract
    namespace), like multiprocessing.connection.Listener. Only peers running as one of
    `allowed_uids` (default: this process's user; checked with SO_PEERCRED, which the kernel
    vouches for) are accepted; others are closed at once. The socket file is removed on close.

        with qwire.pipe.Listener("/run/app/qwire.sock") as listener:
            conn = listener.accept()
    """

    def __init__(self, path: str, backlog: int = 16, *, allowed_uids: set[int] | None = None, **options: Any) -> None:
        self.address = path
        self.allowed_uids = {os.getuid()} if allowed_uids is None else set(allowed_uids)
        self._options = options
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            self._sock.bind(path)
            self._sock.listen(backlog)
        except BaseException:
            self._sock.close()
            raise
        self._bound_file = not path.startswith("\0")

    def accept(self, timeout: float | None = None) -> Connection:
        """The next connection from an allowed peer; TimeoutError after timeout seconds."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
            ready, _, _ = select.select([self._sock], [], [], remaining)
            if not ready:
                raise TimeoutError(f"no connection within {timeout} s on {self.address!r}")
            sock, _ = self._sock.accept()
            pid, uid, gid = struct.unpack("3i", sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, 12))
            if uid in self.allowed_uids:
                return Connection(sock, **self._options)
            sock.close()

    def close(self) -> None:
        if self._sock.fileno() < 0:
            return
        self._sock.close()
        if self._bound_file:
            try:
                os.unlink(self.address)
            except FileNotFoundError:
                pass

    def __enter__(self) -> Listener:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def connect(path: str, *, timeout: float | None = None, **options: Any) -> Connection:
    """A qwire pipe connection to a Listener's Unix socket path."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.settimeout(timeout)
        sock.connect(path)
        sock.settimeout(None)
    except BaseException:
        sock.close()
        raise
    return Connection(sock, **options)

