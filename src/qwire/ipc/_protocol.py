"""The q IPC connection protocol without any I/O (spec QIPC.md sections 1, 4, 4.1, 5.1).

Both sides and both APIs (blocking `qwire.ipc`, asyncio `qwire.aio`) build on these pieces, so the
handshake, the framing, the limits and kdb+'s compression rule exist once:

* `client_hello` / `parse_server_reply`: the client's half of the handshake;
  `HelloReader` / `server_reply`: the server's half (bounded read up to the NUL, capability min rule).
* Capability constants and what each allows (`allows_guid`, `allows_large_messages`, ...).
* `FrameReader`: splits a byte stream into messages. Its `buffer()` is where the next
  `recv_into` (or asyncio's `BufferedProtocol.get_buffer`) writes; bodies of large messages land
  straight in qwire's aligned receive buffer (`qwire._core.Receiver`), so decoded arrays are views
  into the one copy the kernel made.
* `send_segments`: writes a `Message`'s segments with `socket.sendmsg`, never joined.
* `should_compress` / `prepare_outgoing`: kdb+'s rule for compressing what is sent.
* `Limits`: every connection limit and its default, in one place.
* `ReconnectRound`: what the clients' `reconnect=` means (attempts, backoff, which failures are
  worth another attempt, the error when it gives up), for the blocking and the asyncio client.
"""
from __future__ import annotations

import collections
import ipaddress
import os
import random
import socket
import ssl as _ssl
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, NamedTuple, Union

from .._core import Decoder, Message, Receiver, read_header_length
from ..compression import KDB_COMPRESSION_THRESHOLD, try_compress
from ..errors import (
    AuthenticationError, ConnectionClosed, DecodeError, IPCError, MessageTooLarge, ProtocolError, ReconnectFailed,
)

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator, Sequence

    from typing_extensions import Buffer

    from ..registry import Registry

__all__ = [
    "HEADER_SIZE",
    "ASYNC",
    "SYNC",
    "RESPONSE",
    "CAPABILITY",
    "CAPABILITY_GUID",
    "CAPABILITY_LARGE_MESSAGES",
    "CAPABILITY_LONG_VECTORS",
    "MAX_MESSAGE_BELOW_CAPABILITY_5",
    "DEFAULT_MAX_MESSAGE_SIZE",
    "DEFAULT_MAX_HANDSHAKE_SIZE",
    "DEFAULT_CONNECT_TIMEOUT",
    "DEFAULT_HANDSHAKE_TIMEOUT",
    "DEFAULT_REQUEST_TIMEOUT",
    "DEFAULT_IDLE_TIMEOUT",
    "DEFAULT_TRANSFER_TIMEOUT",
    "DEFAULT_MAX_CONNECTIONS",
    "DEFAULT_MAX_QUEUED_BYTES",
    "Limits",
    "Compression",
    "negotiate",
    "allows_guid",
    "allows_compression",
    "allows_large_messages",
    "encoder_capability",
    "credentials",
    "client_hello",
    "parse_server_reply",
    "ClientHello",
    "HelloReader",
    "server_reply",
    "Frame",
    "FrameReader",
    "send_segments",
    "wait_ready",
    "MSG_DONTWAIT",
    "is_local_address",
    "should_compress",
    "prepare_outgoing",
    "kx_unix_path",
    "describe_peer",
    "DEFAULT_RECONNECT_ATTEMPTS",
    "RECONNECT_FIRST_DELAY",
    "RECONNECT_MAX_DELAY",
    "reconnect_attempts",
    "reconnect_delay",
    "worth_another_attempt",
    "ReconnectRound",
]

# --- message types (header byte 1, spec 1.1) -------------------------------------------------
HEADER_SIZE = 8
ASYNC = 0
SYNC = 1
RESPONSE = 2

# --- capabilities (the handshake byte, spec 4) -----------------------------------------------
#: What qwire offers and, as a server, accepts at most: 6 = messages over 2 GB and vectors over
#: 2 billion items (qwire's codec implements header byte 3, unsigned lengths, long counts and
#: compression variant 2).
CAPABILITY = 6
#: From 3 on, GUIDs may be sent (below, q answers 'type).
CAPABILITY_GUID = 3
#: From 5 on, messages may exceed 2 GB (2**31 - 1 bytes).
CAPABILITY_LARGE_MESSAGES = 5
#: From 6 on, a vector may hold more than 2**31 - 2 items.
CAPABILITY_LONG_VECTORS = 6
#: The largest total message length a peer below capability 5 accepts.
MAX_MESSAGE_BELOW_CAPABILITY_5 = (1 << 31) - 1

# --- limits and their defaults (SECURITY.md lists them) --------------------------------------
#: Largest message (header included, and after decompression) a connection accepts: 1 GiB, the
#: same as `compression.DEFAULT_MAX_DECOMPRESSED_SIZE`. A header claiming more closes the
#: connection with MessageTooLarge before anything is allocated. None: only the format's 2**40-1.
DEFAULT_MAX_MESSAGE_SIZE = 1 << 30
#: Longest client hello ("user:password", capability byte, NUL) a server reads: 4 KiB.
DEFAULT_MAX_HANDSHAKE_SIZE = 4096
#: Seconds to connect (TCP, TLS) and complete the handshake, client side.
DEFAULT_CONNECT_TIMEOUT = 10.0
#: Seconds a server gives a new client to complete its hello.
DEFAULT_HANDSHAKE_TIMEOUT = 10.0
#: Seconds a request waits for its response: None (a q query may legitimately run for minutes).
DEFAULT_REQUEST_TIMEOUT = None
#: Seconds a server keeps a connection that sends nothing: None (tickerplant subscribers are
#: silent for hours). Set it for servers open to untrusted clients.
DEFAULT_IDLE_TIMEOUT = None
#: Seconds a server allows one message to take to arrive once its first byte has, and one
#: message it sends to be written (a peer sending a byte a second, or not reading what it is
#: sent, is closed after it). 1 GiB over a 100 Mbit/s link takes ~90 s.
DEFAULT_TRANSFER_TIMEOUT = 300.0
#: Bytes of unasked messages an asyncio client holds for receive() before it stops reading the
#: socket (until receive() has taken half of them, or a request needs its response): 64 MiB. A
#: peer that floods async messages then fills the kernel's buffers, not this process's memory.
DEFAULT_MAX_QUEUED_BYTES = 1 << 26
#: Connections a server holds at once; more are accepted and closed at once.
DEFAULT_MAX_CONNECTIONS = 1024


@dataclass(frozen=True)
class Limits:
    """The limits of one connection (or of every connection of a server).

    `max_message_size` bounds every message received (header included, and again after
    decompression); `max_handshake_size` the client hello a server reads; the timeouts are in
    seconds (None: wait forever). `request_timeout` applies to each request of a client;
    `idle_timeout`, `transfer_timeout` and `max_connections` to servers.
    """

    max_message_size: int | None = DEFAULT_MAX_MESSAGE_SIZE
    max_handshake_size: int = DEFAULT_MAX_HANDSHAKE_SIZE
    connect_timeout: float | None = DEFAULT_CONNECT_TIMEOUT
    handshake_timeout: float | None = DEFAULT_HANDSHAKE_TIMEOUT
    request_timeout: float | None = DEFAULT_REQUEST_TIMEOUT
    idle_timeout: float | None = DEFAULT_IDLE_TIMEOUT
    transfer_timeout: float | None = DEFAULT_TRANSFER_TIMEOUT
    max_connections: int | None = DEFAULT_MAX_CONNECTIONS

    def __post_init__(self) -> None:
        if self.max_message_size is not None and self.max_message_size < HEADER_SIZE + 1:
            raise ValueError(f"max_message_size must be at least {HEADER_SIZE + 1} or None")
        if self.max_handshake_size < 2:
            raise ValueError("max_handshake_size must be at least 2 (capability byte and NUL)")
        for name in ("connect_timeout", "handshake_timeout", "request_timeout", "idle_timeout",
                     "transfer_timeout"):
            value = getattr(self, name)
            if value is not None and not value > 0:
                raise ValueError(f"{name} must be > 0 seconds or None, not {value!r}")
        if self.max_connections is not None and self.max_connections < 1:
            raise ValueError("max_connections must be >= 1 or None")

    def decoder(self, registry: Registry | None = None, **options: object) -> Decoder:
        """A Decoder that applies these limits (and the codec's own: depth, expansion, ...)."""
        return Decoder(
            max_message_size=self.max_message_size,
            max_decompressed_size=self.max_message_size,
            registry=registry,
            **options,  # type: ignore[arg-type]
        )


# --- capability rules ------------------------------------------------------------------------
def negotiate(client_capability: int, server_capability: int = CAPABILITY) -> int:
    """The capability a connection uses: the lower of the two (what kdb+'s server replies)."""
    return min(client_capability, server_capability)


def allows_guid(capability: int) -> bool:
    """GUIDs may be sent from capability 3 (spec 4)."""
    return capability >= CAPABILITY_GUID


def allows_large_messages(capability: int) -> bool:
    """Messages over 2 GB may be sent from capability 5 (spec 1.4)."""
    return capability >= CAPABILITY_LARGE_MESSAGES


def allows_compression(capability: int) -> bool:
    """Whether kdb+ compresses at this capability. The docs say from 1 on; KX's C client, observed,
    compresses at 1 and 3..6 but not at 2 (spec 4), and what it does is what peers expect."""
    return capability >= 1 and capability != 2


def encoder_capability(capability: int) -> Literal[3, 4, 5, 6]:
    """The `Encoder(capability=...)` for a negotiated capability. The codec writes 3..6; a peer
    below 3 (kdb+ before 3.0) gets capability-3 bytes, which differ only in allowing GUIDs."""
    if capability >= 6:
        return 6
    if capability == 5:
        return 5
    if capability == 4:
        return 4
    return 3


# --- handshake, client side ------------------------------------------------------------------
def credentials(user: str | None, password: str | None) -> bytes:
    """The credentials text of a client hello: "user:password", or "user" without a password.

    user=None is the OS login name, as q's hopen sends it (the server sees it as .z.u).
    """
    if user is None:
        user = _login_name()
    text = user if password is None else f"{user}:{password}"
    data = text.encode("utf-8")
    if b"\x00" in data:
        raise ValueError("user and password cannot contain a NUL character (it ends the hello)")
    return data


def _login_name() -> str:
    try:
        import getpass

        return getpass.getuser()
    except Exception:  # no login name in this environment (containers): send none, as q would
        return ""


def client_hello(user: str | None, password: str | None, capability: int = CAPABILITY) -> bytes:
    """The first bytes a client sends: credentials, one capability byte, NUL (spec 4)."""
    if not 0 <= capability <= CAPABILITY:
        raise ValueError(f"capability must be 0..{CAPABILITY}, not {capability}")
    return credentials(user, password) + bytes((capability, 0))


def parse_server_reply(reply: bytes, offered: int, peer: str | None = None) -> int:
    """The capability to use, from the server's one-byte reply to a hello offering `offered`.

    An empty reply (the server closed the connection) is how kdb+ refuses credentials:
    AuthenticationError. The server's byte caps what is used (min with what was offered).
    """
    from ..errors import AuthenticationError

    if not reply:
        raise AuthenticationError(
            "the server closed the connection during the handshake: credentials refused "
            "(q reports 'access)", peer)
    if len(reply) != 1:
        raise ProtocolError(f"the server replied {len(reply)} bytes to the hello; kdb+ replies one", peer)
    return min(reply[0], offered)


# --- handshake, server side ------------------------------------------------------------------
class ClientHello(NamedTuple):
    """What a client's hello says. `password` is None when the credentials have no colon."""

    user: str
    password: str | None
    capability: int


class HelloReader:
    """Reads a client hello from bytes as they arrive, up to its NUL and no further than
    `max_size` bytes (ProtocolError beyond). After `feed` returns the hello, `rest` holds any bytes
    that followed the NUL (the start of the first message, if the client did not wait)."""

    def __init__(self, max_size: int = DEFAULT_MAX_HANDSHAKE_SIZE, peer: str | None = None) -> None:
        self.max_size = max_size
        self.peer = peer
        self._data = bytearray()
        self.rest = b""

    def feed(self, data: Buffer) -> ClientHello | None:
        """Take more bytes; the hello once its NUL has arrived, else None."""
        start = len(self._data)
        self._data += data
        nul = self._data.find(b"\x00", start)
        if nul < 0:
            if len(self._data) >= self.max_size:
                raise ProtocolError(
                    f"client hello longer than max_handshake_size={self.max_size} bytes without its NUL",
                    self.peer)
            return None
        if nul + 1 > self.max_size:
            raise ProtocolError(f"client hello of {nul + 1} bytes exceeds max_handshake_size={self.max_size}",
                                self.peer)
        self.rest = bytes(self._data[nul + 1:])
        return parse_client_hello(bytes(self._data[:nul]))

    @property
    def received(self) -> int:
        return len(self._data)


def parse_client_hello(body: bytes) -> ClientHello:
    """Credentials and capability from a hello without its NUL. The capability is the last byte
    when it is a control character (clients send 1..6); very old clients send none (0)."""
    if body and body[-1] < 32:
        capability, text = body[-1], body[:-1]
    else:
        capability, text = 0, body
    # surrogateescape keeps every byte: two different passwords never decode alike.
    decoded = text.decode("utf-8", "surrogateescape")
    user, colon, password = decoded.partition(":")
    return ClientHello(user, password if colon else None, capability)


def server_reply(client_capability: int, server_capability: int = CAPABILITY) -> bytes:
    """The one byte a server sends to accept a hello: the common capability."""
    return bytes((negotiate(client_capability, server_capability),))


# --- framing ---------------------------------------------------------------------------------
class Frame(NamedTuple):
    """One complete message as received: header byte 1 and the whole message (header included),
    a read-only view of its own aligned buffer (decoded arrays may be views into it)."""

    msg_type: int
    data: memoryview


_SCRATCH_SIZE = 1 << 16          # small messages (and headers) are read here, many per recv
_DIRECT_MIN = 1 << 15            # a body with this much left is received in place
_DIRECT_FIRST_CHUNK = 1 << 22    # the first in-place read (4 MiB); then up to 8x what has arrived
_SMALL_MESSAGE = 1 << 12         # a message this small that arrived whole skips the receive buffer


class FrameReader:
    """Splits a byte stream into messages, checking each header against `max_message_size`.

    Protocol, for a socket:

        view = reader.buffer()          # where to receive next
        n = sock.recv_into(view)
        reader.received(n)              # n == 0 (EOF) raises ConnectionClosed
        while (frame := reader.next_frame()) is not None: ...

    (asyncio: `get_buffer` returns `buffer()`, `buffer_updated(n)` calls `received(n)`; code that is
    handed bytes uses `feed`.) Headers and small messages are read into a scratch buffer, many at a
    time, and copied once into a fresh receive buffer each; the body of a large message is read
    straight into its receive buffer, whose growth follows what has arrived: at most 4 MiB before
    the bytes come, then at most 8x what has arrived (a header claiming a gigabyte gets 4 MiB; an
    honest 24 MB message is received with two reallocations, ~4 MB copied).
    """

    def __init__(self, max_message_size: int | None = DEFAULT_MAX_MESSAGE_SIZE, peer: str | None = None) -> None:
        self.max_message_size = max_message_size
        self.peer = peer
        self._scratch = bytearray(_SCRATCH_SIZE)
        self._view = memoryview(self._scratch)
        self._start = 0               # unprocessed scratch bytes are _scratch[_start:_end]
        self._end = 0
        self._receiver: Receiver | None = None
        self._msg_type = 0
        self._direct = False          # the last buffer() was the receiver's, not the scratch
        self._granted = 0             # the receive buffer's size asked for (message bytes)
        self._frames: collections.deque[Frame] = collections.deque()
        self.messages_received = 0

    # the receiving side of the protocol
    def buffer(self) -> memoryview:
        """A writable view for the next receive (never empty)."""
        r = self._receiver
        if r is not None and self._start == self._end:
            remaining = r.total - r.filled
            if remaining >= _DIRECT_MIN:
                self._direct = True
                # grant room up to 4 MiB, or 8x what has arrived, once; while the bytes trickle
                # in, the grant stays (asking for more each time would reallocate each time)
                target = min(r.total, max(_DIRECT_FIRST_CHUNK, 8 * r.filled))
                if target > self._granted:
                    self._granted = target
                return r.writable(self._granted - r.filled)
        self._direct = False
        if self._start == self._end:
            self._start = self._end = 0
        elif self._end == len(self._scratch):
            pending = self._end - self._start
            self._scratch[:pending] = self._scratch[self._start:self._end]
            self._start, self._end = 0, pending
        return self._view[self._end:]

    def received(self, n: int) -> None:
        """`n` bytes were written into the last `buffer()`; 0 means the peer closed."""
        if n == 0:
            self._eof()
        if self._direct:
            self._direct = False
            r = self._receiver
            assert r is not None
            r.commit(n)
            if r.filled == r.total:
                self._complete()
            return
        self._end += n
        self._process()

    def feed(self, data: Buffer) -> None:
        """Take bytes from a source that hands them over (no recv_into)."""
        view = memoryview(data).cast("B")
        while len(view):
            target = self.buffer()
            k = min(len(target), len(view))
            target[:k] = view[:k]
            view = view[k:]
            self.received(k)

    def next_frame(self) -> Frame | None:
        """The oldest complete message not yet taken, or None."""
        return self._frames.popleft() if self._frames else None

    @property
    def in_message(self) -> bool:
        """True while part of a message (or of a header) has arrived but not all of it."""
        return self._receiver is not None or self._start != self._end

    def eof(self) -> None:
        """The peer closed: ConnectionClosed, saying whether it was inside a message."""
        self._eof()

    # internals
    def _eof(self) -> None:
        r = self._receiver
        if r is not None:
            raise ConnectionClosed(f"the peer closed the connection inside a message: "
                                   f"{r.filled} of {r.total} bytes received", self.peer, r.filled, r.total)
        pending = self._end - self._start
        if pending:
            raise ConnectionClosed(f"the peer closed the connection inside a message header: "
                                   f"{pending} of {HEADER_SIZE} bytes received", self.peer, pending, HEADER_SIZE)
        raise ConnectionClosed("the peer closed the connection", self.peer)

    def _process(self) -> None:
        view, scratch, end = self._view, self._scratch, self._end
        start = self._start
        try:
            while start < end:
                r = self._receiver
                if r is None:
                    if end - start < HEADER_SIZE:
                        return
                    header = view[start:start + HEADER_SIZE]
                    total = self._check_header(header)
                    if total <= _SMALL_MESSAGE and end - start >= total:
                        # whole and small: one copy into bytes of its own, no receive buffer
                        # (whose alignment is for large vectors)
                        self.messages_received += 1
                        self._frames.append(Frame(scratch[start + 1], memoryview(bytes(view[start:start + total]))))
                        start += total
                        continue
                    self._msg_type = header[1]
                    self._receiver = r = Receiver(header, total)
                    self._granted = 0
                    start += HEADER_SIZE
                    if r.filled == r.total:
                        self._complete()
                    continue
                start += r.write(view[start:end])
                if r.filled == r.total:
                    self._complete()
        finally:
            self._start = start

    def _check_header(self, header: memoryview) -> int:
        try:
            total = read_header_length(header)
        except DecodeError as e:
            raise ProtocolError(f"malformed message header {bytes(header).hex(' ')}: {e.reason}", self.peer) from None
        limit = self.max_message_size
        if limit is not None and total > limit:
            raise MessageTooLarge(f"a message header announces {total} bytes, over max_message_size={limit}",
                                  self.peer, total, limit)
        return total

    def _complete(self) -> None:
        r = self._receiver
        assert r is not None
        self._receiver = None
        self.messages_received += 1
        self._frames.append(Frame(self._msg_type, r.finish()))


# --- sending ---------------------------------------------------------------------------------
_IOV_BATCH = 512  # below every platform's IOV_MAX (1024 on Linux, macOS)
#: A non-blocking call on a blocking socket (Linux, macOS, BSDs): a socket stays in blocking mode,
#: which makes a wait without a deadline one system call, and calls with a deadline pass this.
MSG_DONTWAIT = getattr(socket, "MSG_DONTWAIT", 0)


def send_segments(sock: socket.socket, segments: Sequence[Buffer], deadline: float | None = None) -> int:
    """Write every segment with sendmsg (scatter-gather: never joined), looping on partial sends.

    Works on blocking and non-blocking sockets. With a `deadline` (a time.monotonic() value) a
    blocking socket is written with MSG_DONTWAIT and, when the kernel's buffer is full, waits for
    room until the deadline, then raises the builtin TimeoutError (some bytes may have been sent:
    the stream is then broken and must be closed); without one a blocking socket simply blocks.
    TLS sockets, which have no sendmsg, get each segment through send. Returns the bytes sent.
    """
    tls = isinstance(sock, _ssl.SSLSocket)
    flags = MSG_DONTWAIT if deadline is not None and not tls else 0
    if len(segments) == 1 and not tls:  # a small message: usually one call sends it all
        try:
            sent = sock.sendmsg(segments, (), flags)
        except (BlockingIOError, InterruptedError):
            sent = 0
        size = memoryview(segments[0]).nbytes
        if sent == size:
            return sent
        return sent + send_segments(sock, [memoryview(segments[0]).cast("B")[sent:]], deadline)
    views = [memoryview(seg).cast("B") for seg in segments]
    total = 0
    i = 0
    while i < len(views):
        if not len(views[i]):
            i += 1
            continue
        try:
            sent = sock.send(views[i]) if tls else sock.sendmsg(views[i:i + _IOV_BATCH], (), flags)
        except (BlockingIOError, InterruptedError, _ssl.SSLWantWriteError):
            wait_ready(sock, True, deadline)
            continue
        except _ssl.SSLWantReadError:
            wait_ready(sock, False, deadline)
            continue
        total += sent
        # drop the segments sent whole; keep the unsent tail of a partial one
        while sent:
            size = len(views[i])
            if sent >= size:
                sent -= size
                i += 1
            else:
                views[i] = views[i][sent:]
                sent = 0
    return total


def send_segments_tls(sock: socket.socket, segments: Sequence[Buffer], lock: Any, deadline: float | None) -> None:
    """send_segments for a TLS socket: OpenSSL writes one buffer at a time (no sendmsg), and
    allows one call at a time on a connection, so each send holds `lock` (a reader waiting for
    bytes does not hold it: it waits outside); a renegotiation's want-read or a full buffer waits
    for the socket until `deadline`."""
    for seg in segments:
        view = memoryview(seg).cast("B")
        while len(view):
            try:
                with lock:
                    n = sock.send(view)
            except (_ssl.SSLWantWriteError, BlockingIOError):
                wait_ready(sock, True, deadline)
                continue
            except _ssl.SSLWantReadError:
                wait_ready(sock, False, deadline)
                continue
            view = view[n:]


def wait_ready(sock: socket.socket, write: bool, deadline: float | None) -> None:
    """Block until `sock` is readable (write=False) or writable, or raise TimeoutError at
    `deadline` (time.monotonic(); None: wait forever)."""
    import select
    import time

    while True:
        if deadline is None:
            timeout = None
        else:
            timeout = deadline - time.monotonic()
            if timeout <= 0:
                raise TimeoutError("timed out")
        if hasattr(select, "poll"):
            poller = select.poll()
            poller.register(sock, select.POLLOUT if write else select.POLLIN)
            if poller.poll(None if timeout is None else max(1, int(timeout * 1000 + 0.999))):
                return
        else:  # pragma: no cover (Windows)
            r, w, _ = select.select([] if write else [sock], [sock] if write else [], [], timeout)
            if r or w:
                return


# --- compression (spec 5.1) ------------------------------------------------------------------
#: compression= of a connection: "auto" is kdb+'s rule; True compresses messages over the
#: threshold whatever the peer's address; False never compresses. Received messages are always
#: accepted compressed or not.
Compression = Union[bool, Literal["auto"]]


def is_local_address(family: int, address: object) -> bool:
    """Whether kdb+ counts the peer as local (never compresses to it): a Unix socket, localhost,
    a loopback address (127.0.0.0/8, ::1, IPv4-mapped loopback)."""
    if family == getattr(socket, "AF_UNIX", -1):
        return True
    host = address[0] if isinstance(address, tuple) else address
    if not isinstance(host, str):
        return False
    if host.lower() == "localhost":
        return True
    try:
        ip = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_loopback


def should_compress(total: int, *, local: bool, capability: int, mode: Compression = "auto") -> bool:
    """Whether a message of `total` bytes is worth trying to compress (the result must still be
    under half the size, which `prepare_outgoing` checks)."""
    if mode is False:
        return False
    if mode is not True and mode != "auto":
        raise ValueError(f"compression must be 'auto', True or False, not {mode!r}")
    if total < KDB_COMPRESSION_THRESHOLD or not allows_compression(capability):
        return False
    return mode is True or not local


def prepare_outgoing(message: Message, *, local: bool, capability: int,
                     mode: Compression = "auto") -> Sequence[Buffer]:
    """The buffers to send for `message`: its segments, or the compressed message (one buffer)
    when kdb+'s rule says so and compression gets it to at most half."""
    nbytes = message.nbytes
    if nbytes < KDB_COMPRESSION_THRESHOLD:  # the common small message: nothing to decide
        return message.segments()
    if not allows_large_messages(capability) and nbytes > MAX_MESSAGE_BELOW_CAPABILITY_5:
        from ..errors import EncodeError

        raise EncodeError(f"a message of {nbytes} bytes is over 2 GB, which the peer "
                          f"(capability {capability}) cannot receive")
    if should_compress(nbytes, local=local, capability=capability, mode=mode):
        packed = try_compress(message)
        if packed is not None:
            return (packed,)
    return message.segments()


# --- addresses -------------------------------------------------------------------------------
def kx_unix_path(port: int) -> str:
    """The Unix socket a local `q -p port` listens on (spec 4.1): `$QUDSPATH/kx.<port>` when
    QUDSPATH is set, otherwise on Linux the abstract socket "\\0/tmp/kx.<port>" and elsewhere the
    file /tmp/kx.<port>."""
    base = os.environ.get("QUDSPATH")
    if base:
        return os.path.join(base, f"kx.{port}")
    path = f"/tmp/kx.{port}"
    return "\0" + path if os.uname().sysname == "Linux" else path


def describe_peer(family: int, address: object) -> str:
    """A short name of a peer for error messages: "host:port", "[::1]:port" or "unix:PATH"."""
    if family == getattr(socket, "AF_UNIX", -1):
        path = address.decode("utf-8", "replace") if isinstance(address, bytes) else str(address)
        return "unix:" + path.replace("\0", "@", 1) if path.startswith("\0") else "unix:" + path
    if isinstance(address, tuple) and len(address) >= 2:
        host, port = address[0], address[1]
        return f"[{host}]:{port}" if ":" in str(host) else f"{host}:{port}"
    return str(address)


# --- reconnection (both clients' reconnect= option) ------------------------------------------
#: What `reconnect=True` means: this many attempts.
DEFAULT_RECONNECT_ATTEMPTS = 5
#: The pause before the second attempt (the first is made at once); it doubles for each further
#: attempt, up to RECONNECT_MAX_DELAY.
RECONNECT_FIRST_DELAY = 0.05
#: The longest pause between two attempts: the backoff never waits longer than this.
RECONNECT_MAX_DELAY = 5.0


def reconnect_attempts(reconnect: int | bool | None) -> int:
    """The number of attempts `reconnect=` asks for: False, None or 0 none (a lost connection
    stays closed), True DEFAULT_RECONNECT_ATTEMPTS, an int N >= 1 that many."""
    if reconnect is None or reconnect is False:
        return 0
    if reconnect is True:
        return DEFAULT_RECONNECT_ATTEMPTS
    if not isinstance(reconnect, int):
        raise TypeError(f"reconnect must be a bool or a number of attempts, not {type(reconnect).__name__}")
    if reconnect < 0:
        raise ValueError(f"reconnect must be >= 0 attempts, not {reconnect}")
    return reconnect


def reconnect_delay(attempt: int, rand: Callable[[], float] = random.random) -> float:
    """Seconds to pause before attempt number `attempt` (1 is the first) of a reconnection.

    0 before the first; before the n-th, RECONNECT_FIRST_DELAY * 2**(n-2) capped at
    RECONNECT_MAX_DELAY (50 ms, 100 ms, 200 ms, ... 5 s, 5 s), jittered to a uniform value
    between half of it and all of it, so that clients that lost the same server do not all come
    back in step. Never more than RECONNECT_MAX_DELAY.
    """
    if attempt <= 1:
        return 0.0
    nominal = min(RECONNECT_FIRST_DELAY * 2.0 ** min(attempt - 2, 64), RECONNECT_MAX_DELAY)
    return nominal * (0.5 + 0.5 * rand())


def worth_another_attempt(error: BaseException) -> bool:
    """Whether a failed connection attempt is worth another: a refused or reset connection, a
    timeout, a peer that broke the protocol, yes (qwire's IPCError); refused credentials
    (AuthenticationError), a TLS failure (ssl.SSLError: a certificate that did not verify will
    not on the next try either) and anything else (a bad argument) no: they are raised at once."""
    return isinstance(error, IPCError) and not isinstance(error, AuthenticationError)


class ReconnectRound:
    """One reconnection: the same loop in the blocking and the asyncio client.

        round = ReconnectRound(attempts, peer)
        for delay in round:            # the pause before each attempt (0 before the first)
            sleep(delay)               # time.sleep or await asyncio.sleep
            try:
                connected = open_connection()
            except Exception as e:
                round.failed(e)        # raises e itself when it is not worth another attempt
                continue
            return connected
        raise round.give_up()          # ReconnectFailed, after `attempts` failures
    """

    __slots__ = ("attempts", "peer", "last", "_rand")

    def __init__(self, attempts: int, peer: str | None, rand: Callable[[], float] = random.random) -> None:
        if attempts < 1:
            raise ValueError("a reconnection makes at least one attempt")
        self.attempts = attempts
        self.peer = peer
        self.last: BaseException | None = None
        self._rand = rand

    def __iter__(self) -> Iterator[float]:
        for attempt in range(1, self.attempts + 1):
            yield reconnect_delay(attempt, self._rand)

    def failed(self, error: BaseException) -> None:
        """An attempt failed with `error`: re-raise it if no further attempt can help."""
        if not worth_another_attempt(error):
            raise error
        self.last = error

    def give_up(self) -> ReconnectFailed:
        """The error for the caller once every attempt failed (the last one's as its cause)."""
        last = self.last
        reason = last.reason if isinstance(last, IPCError) else str(last)
        err = ReconnectFailed(f"the connection was lost and {self.attempts} attempt"
                              f"{'s' if self.attempts != 1 else ''} to reconnect failed; the last: {reason}",
                              self.peer, self.attempts, last)
        err.__cause__ = last
        return err
