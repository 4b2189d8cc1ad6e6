"""The blocking server: `qwire.Server(handler, ...)` answers kdb+ IPC clients (q, PyKX, kola,
aiokdb, qwire's own) with hooks that mirror q's.

    class Quotes(qwire.ipc.Handler):
        def on_sync(self, conn, value):          # q's .z.pg: the return value is the response
            return prices[value]

    with qwire.Server(Quotes(), port=5001) as server:   # started in a background thread
        ...

The server evaluates nothing: every message is data for the handler. Hooks (all optional):
`check_login(user, password)` (.z.pw), `on_open(conn)` (.z.po), `on_sync(conn, value)` (.z.pg),
`on_async(conn, value)` (.z.ps), `on_close(conn)` (.z.pc). A plain callable is taken as on_sync.

Concurrency model: one listener thread accepts; every connection has a thread of its own that
does its handshake (TLS included), reads its messages straight into qwire's receive buffer and
calls the hooks for them, in the order they arrived. By default (`serialize=True`) hook calls are
also serialized across the whole server, as q's single thread runs .z.pg: handler state needs no
lock, and a slow hook delays every client (defer the reply instead, below). `serialize=False`
lets different connections' hooks run in parallel. A thread per connection, rather than one
selector thread, because a connection's thread can block in a hook (or in a large send to a slow
reader) without stopping the others, and a blocking `recv_into` is the shortest path for both a
small round trip and a gigabyte message; `max_connections` bounds the threads.

Deferred replies (q's -30!): `on_sync` returns `qwire.DEFERRED`, and later, from any thread,
`conn.reply(value)` or `conn.reply_error(text)` answers that connection's oldest deferred
request; `token = conn.defer()` inside on_sync gives the request's own DeferredReply, for workers
that finish in any order. Responses always leave in the order the requests came (the protocol has no request
ids): an answer ready while an earlier request is still deferred waits for it.
A handler may return (or push) a `qwire.Message` it encoded itself, with msg_type "response" (or
"async"): it is sent as it is, so a value served to many clients is encoded once.
Pushing: `conn.send(value)` sends an async message to the client at any time, from any thread
(a tickerplant's `neg[h] (`upd; t; x)`); `server.connections` lists the open connections.
"""
from __future__ import annotations

import itertools
import logging
import os
import selectors
import socket
import ssl as _ssl
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any

from .._core import Encoder, Message
from ..errors import ConnectionClosed, DecodeError, EncodeError, NoRequestWaiting, ProtocolError, QError
from . import _protocol as p

__all__ = ["Server", "ServerConnection", "Handler", "DEFERRED", "DeferredReply"]

_log = logging.getLogger("qwire.ipc.server")

#: Plain sockets are kept blocking, their calls with a deadline made with MSG_DONTWAIT (where the
#: platform has it; elsewhere sockets are non-blocking and every wait polls).
_BLOCKING_PLAIN = p.MSG_DONTWAIT != 0

#: The error text a sync request gets when the handler has no on_sync hook.
NO_SYNC_HOOK = "qwire server: no on_sync hook"


class _Deferred:
    """The type of DEFERRED (one instance)."""

    _instance: _Deferred | None = None

    def __new__(cls) -> _Deferred:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "qwire.DEFERRED"

    def __reduce__(self) -> str:
        return "DEFERRED"


#: Returned by on_sync: no response now; `conn.reply(...)` gives it later (q's -30!(::)).
DEFERRED = _Deferred()


class Handler:
    """The hooks a server calls, with q's defaults (subclass and override what you need; any
    object with some of these methods works too). Each runs in the connection's thread."""

    def check_login(self, user: str, password: str) -> bool:
        """.z.pw: whether to accept these credentials (password is "" when none was sent).
        False, or an exception, closes the connection before the reply (the client sees 'access)."""
        return True

    def on_open(self, conn: ServerConnection) -> None:
        """.z.po: a client logged in."""

    def on_sync(self, conn: ServerConnection, value: Any) -> Any:
        """.z.pg: the response to a sync request. An exception becomes an error reply carrying its
        text (a QError's text as is); DEFERRED answers later through conn.reply (or the
        DeferredReply of conn.defer())."""
        raise QError(NO_SYNC_HOOK)

    def on_async(self, conn: ServerConnection, value: Any) -> None:
        """.z.ps: an async message (exceptions are logged; the sender is not told, as in q)."""

    def on_close(self, conn: ServerConnection) -> None:
        """.z.pc: the connection has gone (after on_open; not called for refused logins)."""


class _Hooks:
    """The handler's hooks, looked up once."""

    __slots__ = ("check_login", "on_open", "on_sync", "on_async", "on_close")

    def __init__(self, handler: Any) -> None:
        default = Handler()
        if callable(handler) and not any(hasattr(handler, n) for n in self.__slots__):
            self.on_sync: Callable[[Any, Any], Any] = handler
            handler = default
        else:
            self.on_sync = getattr(handler, "on_sync", default.on_sync)
        # conn is a qwire.ipc.ServerConnection or a qwire.aio.ServerConnection
        self.check_login: Callable[[str, str], Any] = getattr(handler, "check_login", default.check_login)
        self.on_open: Callable[[Any], Any] = getattr(handler, "on_open", default.on_open)
        self.on_async: Callable[[Any, Any], Any] = getattr(handler, "on_async", default.on_async)
        self.on_close: Callable[[Any], Any] = getattr(handler, "on_close", default.on_close)


class _NoLock:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


def error_text(exc: BaseException) -> str:
    """The q error text of an exception raised by a hook: a QError's text, else str(exc) (or the
    exception's type name when that is empty)."""
    if isinstance(exc, QError):
        return exc.text
    return str(exc) or type(exc).__name__


def _encode(encoders: dict[str, Encoder], kind: str, value: Any) -> Message:
    """The message for a response or push. A `qwire.Message` of the right type is sent as it is:
    a value served to many clients is encoded once (dumps(value, msg_type="response",
    q_compatible=True, capability=...) is then the caller's to match to the clients)."""
    if isinstance(value, Message):
        expected = p.RESPONSE if kind == "response" else p.ASYNC
        if value.msg_type != expected:
            raise EncodeError(f"a pre-encoded {kind} must have msg_type={kind!r}, not {value.msg_type}", Message)
        return value
    return encoders[kind].encode(value)


def _defer(conn: Any) -> DeferredReply:
    """conn.defer() of either server: the slot of the request whose on_sync is running."""
    # By thread, not by a flag: another thread calling defer() while on_sync runs is outside it
    if conn._sync_thread != threading.get_ident():
        raise NoRequestWaiting(f"defer() outside on_sync: no request of connection {conn.id} is being handled")
    if conn._pending is None:
        conn._pending = conn._queue_deferred()
    return DeferredReply(conn, conn._pending)


class _Slot:
    """A sync request waiting in line (deferred, or answered behind a deferred one), in arrival
    order: its encoded answer once known."""

    __slots__ = ("segments", "deferred")

    def __init__(self) -> None:
        self.segments: Sequence[Any] | None = None
        self.deferred = False


class DeferredReply:
    """The answer to one deferred request, from `conn.defer()` inside on_sync: `reply(value)` or
    `reply_error(text)` answers exactly that request, once, from any thread (answers still leave
    in request order). Lets workers that finish in any order answer the right request."""

    __slots__ = ("_conn", "_slot")

    def __init__(self, conn: Any, slot: _Slot) -> None:
        self._conn = conn
        self._slot = slot

    @property
    def done(self) -> bool:
        """True once answered."""
        return self._slot.segments is not None

    def reply(self, value: Any) -> None:
        self._conn._fill(self._slot, self._conn._response_segments(value))

    def reply_error(self, text: str) -> None:
        self._conn._fill(self._slot, self._conn._outgoing("response", QError(text)))


class _Outgoing:
    """What both servers' connections send, encoded the same way: the messages of one kind for
    this client (its capability, kdb+'s compression rule), and a response that cannot be encoded
    turned into an error reply. Needs `_encoders`, `local`, `capability` and `server`."""

    _encoders: dict[str, Encoder]
    local: bool
    capability: int
    server: Any

    def _outgoing(self, kind: str, value: Any) -> Sequence[Any]:
        message = _encode(self._encoders, kind, value)
        return p.prepare_outgoing(message, local=self.local, capability=self.capability,
                                  mode=self.server.compression)

    def _response_segments(self, value: Any) -> Sequence[Any]:
        try:
            return self._outgoing("response", value)
        except Exception as e:  # an answer that cannot be encoded is an error reply
            return self._outgoing("response", QError(f"qwire server: cannot encode the response: {e}"))


class ServerConnection(_Outgoing):
    """One client of a `Server`, as the hooks see it (q's handle, .z.w).

    `id` is a number unique within the server; `user` the login name; `capability` what was
    negotiated; `peer` a printable address; `local` whether the client is local (kdb+'s rule for
    compression); `state` a dict for the handler's own use. Thread-safe: `send`, `reply`,
    `reply_error`, `close` (and a DeferredReply's methods) may be called from any thread;
    `defer()` only inside on_sync.
    """

    def __init__(self, server: Server, sock: socket.socket, address: Any, conn_id: int) -> None:
        self.server = server
        self.id = conn_id
        self.user = ""
        self.capability = 0
        self.peer = p.describe_peer(sock.family, address)
        self.local = p.is_local_address(sock.family, address)
        self.state: dict[Any, Any] = {}
        self._sock = sock
        self._tls = isinstance(sock, _ssl.SSLSocket)
        self._lock = threading.Lock()        # order of responses, and one writer at a time
        self._tls_lock = threading.Lock()    # OpenSSL: one call at a time on a connection
        self._slots: deque[_Slot] = deque()
        self._sync_thread: int | None = None  # the thread running on_sync of this connection's request
        self._pending: _Slot | None = None   # that request's slot, once defer() made one
        self._closed = False
        self._opened = False
        self._encoders: dict[str, Encoder] = {}

    # --- what the handler may call ------------------------------------------------------
    @property
    def closed(self) -> bool:
        return self._closed

    def send(self, value: Any) -> None:
        """Send `value` to the client as an async message (a push: q's neg[h] value). Returns once
        it is written to the socket; a client that does not read for `transfer_timeout` seconds is
        disconnected. ConnectionClosed if the connection has gone."""
        if not self._opened:
            raise ConnectionClosed("the connection is not open yet", self.peer)
        segments = self._outgoing("async", value)
        with self._lock:
            self._check_open()
            self._write(segments)

    def defer(self) -> DeferredReply:
        """Inside on_sync: defer the request being handled and return its DeferredReply (then
        return DEFERRED, or the DeferredReply; a value returned instead answers it at once)."""
        return _defer(self)

    def reply(self, value: Any) -> None:
        """Answer the oldest deferred request with `value` (q's -30!(h;0b;value)).
        NoRequestWaiting if no request of this connection is deferred."""
        self._answer_deferred(self._response_segments(value))

    def reply_error(self, text: str) -> None:
        """Answer the oldest deferred request with the q error `text` (q's -30!(h;1b;text))."""
        self._answer_deferred(self._outgoing("response", QError(text)))

    def close(self) -> None:
        """Disconnect the client (its thread then calls on_close)."""
        self._closed = True
        try:
            self._sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def __repr__(self) -> str:
        return f"<qwire.ServerConnection {self.id} {self.peer} user={self.user!r}{' closed' if self._closed else ''}>"

    # --- the connection's thread ----------------------------------------------------------
    def _run(self) -> None:
        server = self.server
        frames: p.FrameReader | None = None
        try:
            frames = self._handshake()
            if frames is None:
                return
            self._opened = True
            with server._hook_lock:
                server._hooks.on_open(self)
            decoder = server.limits.decoder(server.registry)
            while not self._closed:
                frame = self._read_frame(frames)
                self._dispatch(frame, decoder)
        except ConnectionClosed:
            pass
        except (ProtocolError, TimeoutError) as e:
            _log.info("qwire server: closing %s: %s", self.peer, e)
        except OSError as e:
            _log.debug("qwire server: connection %s failed: %s", self.peer, e)
        except Exception:
            _log.exception("qwire server: connection %s failed", self.peer)
        finally:
            self._closed = True
            try:
                self._sock.close()
            except OSError:
                pass
            if self._opened:
                try:
                    with server._hook_lock:
                        server._hooks.on_close(self)
                except Exception:
                    _log.exception("qwire server: on_close failed (%s)", self.peer)
            server._forget(self)

    def _handshake(self) -> p.FrameReader | None:
        """TLS, the client's hello, the login check, the one-byte reply; None if refused."""
        server = self.server
        limits = server.limits
        deadline = None if limits.handshake_timeout is None else time.monotonic() + limits.handshake_timeout
        sock = self._sock
        if self._tls:
            assert isinstance(sock, _ssl.SSLSocket)
            while True:
                try:
                    sock.do_handshake()
                    break
                except _ssl.SSLWantReadError:
                    p.wait_ready(sock, False, deadline)
                except _ssl.SSLWantWriteError:
                    p.wait_ready(sock, True, deadline)
        reader = p.HelloReader(limits.max_handshake_size, self.peer)
        buf = bytearray(limits.max_handshake_size)
        view = memoryview(buf)
        while True:
            want = limits.max_handshake_size - reader.received
            n = self._recv_into(view[:max(want, 1)], deadline)
            if n == 0:
                raise ConnectionClosed("the client closed the connection during the handshake", self.peer)
            hello = reader.feed(view[:n])
            if hello is not None:
                break
        try:
            with server._hook_lock:
                accepted = bool(server._hooks.check_login(hello.user, hello.password or ""))
        except Exception:
            _log.exception("qwire server: check_login failed; refusing %s", self.peer)
            accepted = False
        if not accepted:
            _log.info("qwire server: login refused for user %r from %s", hello.user, self.peer)
            return None  # closing without a reply is how kdb+ refuses ('access)
        self.user = hello.user
        self.capability = p.negotiate(hello.capability, server.capability)
        opts = {"q_compatible": server.q_compatible, "capability": p.encoder_capability(self.capability),
                "registry": server.registry}
        self._encoders = {t: Encoder(t, **opts) for t in ("response", "async")}
        with self._lock:
            self._write((p.server_reply(hello.capability, server.capability),))
        frames = p.FrameReader(limits.max_message_size, self.peer)
        if reader.rest:
            frames.feed(reader.rest)
        return frames

    def _recv_into(self, view: memoryview, deadline: float | None) -> int:
        """Receive into view. A plain socket is blocking: without a deadline a wait is one
        system call (close() wakes it with shutdown); with one, MSG_DONTWAIT and poll."""
        sock = self._sock
        while True:
            try:
                if self._tls:
                    with self._tls_lock:
                        return sock.recv_into(view)
                if deadline is None or not _BLOCKING_PLAIN:
                    return sock.recv_into(view)
                return sock.recv_into(view, 0, p.MSG_DONTWAIT)
            except (BlockingIOError, InterruptedError, _ssl.SSLWantReadError):
                p.wait_ready(sock, False, deadline)
            except _ssl.SSLWantWriteError:
                p.wait_ready(sock, True, deadline)

    def _read_frame(self, frames: p.FrameReader) -> p.Frame:
        """The next message. Waiting between messages is bounded by idle_timeout, a message that
        has begun by transfer_timeout (TimeoutError: the connection is closed)."""
        limits = self.server.limits
        frame = frames.next_frame()
        if frame is not None:
            return frame
        now = time.monotonic()
        idle = None if limits.idle_timeout is None else now + limits.idle_timeout
        transfer = None
        if frames.in_message and limits.transfer_timeout is not None:
            transfer = now + limits.transfer_timeout
        while True:
            try:
                n = self._recv_into(frames.buffer(), transfer if frames.in_message else idle)
            except TimeoutError:
                what = "a message to finish arriving" if frames.in_message else "the next message (idle)"
                raise TimeoutError(f"timed out waiting for {what}") from None
            frames.received(n)
            frame = frames.next_frame()
            if frame is not None:
                return frame
            if transfer is None and frames.in_message and limits.transfer_timeout is not None:
                transfer = time.monotonic() + limits.transfer_timeout

    def _dispatch(self, frame: p.Frame, decoder: Any) -> None:
        hooks = self.server._hooks
        kind = frame.msg_type
        if kind == p.SYNC:
            try:
                value = decoder.decode(frame.data)
            except (DecodeError, QError) as e:  # the frame is intact: answer and go on
                segments = self._outgoing("response", QError(f"badmsg: {e}"))
            else:
                self._sync_thread, self._pending = threading.get_ident(), None
                try:
                    with self.server._hook_lock:
                        result = hooks.on_sync(self, value)
                except Exception as e:
                    result = QError(error_text(e))
                finally:
                    self._sync_thread, token, self._pending = None, self._pending, None
                if token is not None:  # conn.defer() was called: its slot is already in line
                    if result is not DEFERRED and not isinstance(result, DeferredReply):
                        self._fill(token, self._response_segments(result))
                    return
                if result is DEFERRED:
                    slot = _Slot()
                    slot.deferred = True
                    with self._lock:
                        self._slots.append(slot)
                    return
                segments = self._response_segments(result)
            with self._lock:
                if self._slots:  # an earlier request is still deferred: this answer waits behind it
                    slot = _Slot()
                    slot.segments = segments
                    self._slots.append(slot)
                    self._flush()
                else:  # requests are read one at a time, so nothing else can come between
                    self._write(segments)
        elif kind == p.ASYNC:
            try:
                value = decoder.decode(frame.data)
            except QError as e:
                value = e
            except DecodeError as e:
                _log.info("qwire server: dropping an async message from %s that cannot be decoded: %s", self.peer, e)
                return
            try:
                with self.server._hook_lock:
                    hooks.on_async(self, value)
            except Exception:
                _log.exception("qwire server: on_async failed (message from %s)", self.peer)
        else:
            raise ProtocolError("a client sent a response message; the server sends no requests", self.peer)

    # --- sending: _outgoing and _response_segments come from _Outgoing ----------------------

    def _answer_deferred(self, segments: Sequence[Any]) -> None:
        with self._lock:
            self._check_open()
            slot = next((s for s in self._slots if s.deferred and s.segments is None), None)
            if slot is None:
                raise NoRequestWaiting(f"no deferred request of connection {self.id} ({self.peer}) "
                                       "is waiting for a reply")
            slot.segments = segments
            self._flush()

    def _queue_deferred(self) -> _Slot:
        slot = _Slot()
        slot.deferred = True
        with self._lock:
            self._slots.append(slot)
        return slot

    def _fill(self, slot: _Slot, segments: Sequence[Any]) -> None:
        with self._lock:
            self._check_open()
            if slot.segments is not None:
                raise NoRequestWaiting(f"this deferred request of connection {self.id} was already answered")
            slot.segments = segments
            self._flush()

    def _flush(self) -> None:
        """Send the answers at the head of the queue that are ready (the lock is held)."""
        slots = self._slots
        while slots and slots[0].segments is not None:
            segments = slots.popleft().segments
            if self._closed:
                continue
            self._write(segments)  # type: ignore[arg-type]

    def _check_open(self) -> None:
        if self._closed:
            raise ConnectionClosed("the connection is closed", self.peer)

    def _write(self, segments: Sequence[Any]) -> None:
        """Write one message (the lock is held); a failure or a timeout closes the connection."""
        try:
            if not self._tls and len(segments) == 1:  # small messages: one send, most often whole
                view = memoryview(segments[0]).cast("B")
                try:
                    sent = self._sock.send(view, p.MSG_DONTWAIT)
                except (BlockingIOError, InterruptedError):
                    sent = 0
                if sent == len(view):
                    return
                segments = (view[sent:],)
            limits = self.server.limits
            deadline = None if limits.transfer_timeout is None else time.monotonic() + limits.transfer_timeout
            if self._tls:
                p.send_segments_tls(self._sock, segments, self._tls_lock, deadline)
            else:
                p.send_segments(self._sock, segments, deadline)
        except (OSError, ValueError) as e:  # TimeoutError is an OSError; ValueError: socket closed
            self.close()
            raise ConnectionClosed(f"cannot send to the client, disconnected: {e or type(e).__name__}",
                                   self.peer) from e



class Server:
    """A q IPC server; see the module docstring for the hooks and the concurrency model.

    host, port: where to listen (port 0: a free port, then read `.port`); unix=PATH listens on a
    Unix socket instead ("@name": an abstract one, as kdb+'s "@/tmp/kx.5001"). ssl: an
    ssl.SSLContext for TLS (q's -E 2: TLS only). capability: the highest capability accepted (the
    reply is min(client's, this)). compression: kdb+'s rule ("auto"), True or False, as for
    `qwire.connect`. q_compatible: responses are what q reads (default: clients may be q or PyKX).
    limits: a `qwire.ipc.Limits`; the server applies max_message_size, max_handshake_size,
    handshake_timeout, idle_timeout, transfer_timeout and max_connections (SECURITY.md).
    serialize: hook calls run one at a time across the server (q's model), else per connection.
    """

    def __init__(self, handler: Any, host: str = "127.0.0.1", port: int = 0, *, unix: str | None = None,
                 ssl: _ssl.SSLContext | None = None, capability: int = p.CAPABILITY,
                 compression: p.Compression = "auto", q_compatible: bool = True, limits: p.Limits | None = None,
                 serialize: bool = True, registry: Any = None, backlog: int = 128) -> None:
        if not 0 <= capability <= p.CAPABILITY:
            raise ValueError(f"capability must be 0..{p.CAPABILITY}, not {capability}")
        if ssl is not None and not isinstance(ssl, _ssl.SSLContext):
            raise TypeError(f"ssl must be an ssl.SSLContext or None, not {type(ssl).__name__}")
        p.should_compress(0, local=True, capability=capability, mode=compression)  # validates the mode
        self._hooks = _Hooks(handler)
        self.handler = handler
        self.capability = capability
        self.compression = compression
        self.q_compatible = q_compatible
        self.limits = limits if limits is not None else p.Limits()
        self.registry = registry
        self.ssl = ssl
        self._hook_lock: Any = threading.RLock() if serialize else _NoLock()
        self._conns: dict[int, ServerConnection] = {}
        self._threads: dict[int, threading.Thread] = {}
        self._conns_lock = threading.Lock()
        self._ids = itertools.count(1)
        self._closing = False
        self._thread: threading.Thread | None = None
        self._serving = threading.Event()
        self._stopped = threading.Event()
        self._unix_file: str | None = None
        self._listener = self._listen(host, port, unix, backlog)
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)

    def _listen(self, host: str, port: int, unix: str | None, backlog: int) -> socket.socket:
        if unix is not None:
            path = os.fspath(unix)
            path = "\0" + path[1:] if path.startswith("@") else path
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                sock.bind(path)
            except OSError:
                sock.close()
                raise
            if not path.startswith("\0"):
                self._unix_file = path
        else:
            family = socket.AF_INET6 if ":" in host else socket.AF_INET
            sock = socket.socket(family, socket.SOCK_STREAM)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind((host, port))
            except OSError:
                sock.close()
                raise
        sock.listen(backlog)
        sock.setblocking(False)
        return sock

    # --- public API ---------------------------------------------------------------------
    @property
    def port(self) -> int | None:
        """The TCP port listened on (None for a Unix socket)."""
        if self._listener.family == socket.AF_UNIX:
            return None
        return int(self._listener.getsockname()[1])

    @property
    def address(self) -> Any:
        """The address listened on: (host, port), or the Unix socket's path."""
        return self._listener.getsockname()

    @property
    def connections(self) -> list[ServerConnection]:
        """The clients logged in now (a snapshot)."""
        with self._conns_lock:
            return [c for c in self._conns.values() if c._opened and not c._closed]

    def start(self) -> Server:
        """Serve in a background (daemon) thread; returns self."""
        if self._thread is not None:
            raise RuntimeError("the server is already started")
        self._thread = threading.Thread(target=self.serve_forever, name=f"qwire-server-{self.port}", daemon=True)
        self._thread.start()
        self._serving.wait(10)
        return self

    def serve_forever(self) -> None:
        """Accept clients in this thread until close()."""
        sel = selectors.DefaultSelector()
        sel.register(self._listener, selectors.EVENT_READ)
        sel.register(self._wake_r, selectors.EVENT_READ)
        self._serving.set()
        try:
            while not self._closing:
                for key, _ in sel.select():
                    if key.fileobj is self._listener:
                        self._accept()
        finally:
            sel.close()
            self._stopped.set()

    def close(self, timeout: float = 10.0) -> None:
        """Stop accepting, disconnect every client (on_close runs for each) and wait up to
        `timeout` seconds for their threads."""
        if self._closing:
            return
        self._closing = True
        try:
            self._wake_w.send(b"x")
        except OSError:
            pass
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout)
        self._listener.close()
        if self._unix_file is not None:
            try:
                os.unlink(self._unix_file)
            except OSError:
                pass
        with self._conns_lock:
            conns = list(self._conns.values())
            threads = list(self._threads.values())
        for c in conns:
            c.close()
        end = time.monotonic() + timeout
        me = threading.current_thread()
        for t in threads:
            if t is not me:
                t.join(max(end - time.monotonic(), 0))
        self._wake_r.close()
        self._wake_w.close()

    def __enter__(self) -> Server:
        if self._thread is None:
            self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<qwire.Server {self.address!r} {len(self._conns)} connections>"

    # --- internals ----------------------------------------------------------------------
    def _accept(self) -> None:
        for _ in range(64):  # a burst at a time, then back to the selector (close() wakes it)
            try:
                sock, address = self._listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as e:  # EMFILE and friends: keep serving the clients we have
                _log.warning("qwire server: accept failed: %s", e)
                time.sleep(0.01)
                return
            limit = self.limits.max_connections
            with self._conns_lock:
                full = limit is not None and len(self._conns) >= limit
            if full:
                _log.warning("qwire server: max_connections=%s reached; refusing %s", limit, address)
                sock.close()
                continue
            self._start_connection(sock, address)

    def _start_connection(self, sock: socket.socket, address: Any) -> None:
        # plain sockets stay blocking where MSG_DONTWAIT exists (calls with a deadline pass it);
        # TLS sockets are non-blocking (OpenSSL calls are made one at a time, under a lock)
        sock.setblocking(self.ssl is None and _BLOCKING_PLAIN)
        if sock.family != socket.AF_UNIX:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if self.ssl is not None:
            try:
                sock = self.ssl.wrap_socket(sock, server_side=True, do_handshake_on_connect=False)
            except (OSError, ValueError) as e:
                _log.info("qwire server: TLS setup failed for %s: %s", address, e)
                sock.close()
                return
        conn = ServerConnection(self, sock, address, next(self._ids))
        thread = threading.Thread(target=conn._run, name=f"qwire-conn-{conn.id}", daemon=True)
        with self._conns_lock:
            self._conns[conn.id] = conn
            self._threads[conn.id] = thread
        try:
            thread.start()
        except RuntimeError as e:  # cannot start a thread: refuse this client, keep the others
            _log.warning("qwire server: cannot start a thread for %s: %s", conn.peer, e)
            sock.close()
            self._forget(conn)

    def _forget(self, conn: ServerConnection) -> None:
        with self._conns_lock:
            self._conns.pop(conn.id, None)
            self._threads.pop(conn.id, None)

