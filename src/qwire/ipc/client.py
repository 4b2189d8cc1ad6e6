"""The blocking client: `qwire.connect(...)` returns a `Connection` to kdb+ or any q IPC server.

    with qwire.connect("localhost", 5001, user="u", password="p") as q:
        q("1+1")                      # 2: a str query travels as a char vector, as q's h"1+1"
        q("{x*y}", 6, 7)              # 42: h("{x*y}"; 6; 7)
        q.send(["upd", "trade", t])   # async: neg[h] (`upd; `trade; t)
        msg = q.receive(timeout=1)    # what the peer sent unasked

Threads: a Connection may be shared. Each request appends itself, under the send lock, to the
queue of requests awaiting a response, so responses match requests in the order they were sent
(kdb+ answers in order). Whichever waiting thread holds the reader role reads the socket and
delivers every message that arrives: responses to their requests, async messages to the inbox of
`receive()` (or the `on_async` callback), sync requests from the peer to `on_sync` (or an error
reply). Callbacks run in that reading thread; a callback may itself make requests (q's nested
sync, answered in order as q would). See docs/IPC.md.
"""
from __future__ import annotations

import collections
import logging
import os
import socket
import ssl as _ssl
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

from .._core import Encoder
from ..compression import KDB_COMPRESSION_THRESHOLD
from ..errors import (
    AuthenticationError,
    ConnectionClosed,
    DecodeError,
    IPCError,
    ProtocolError,
    QError,
    ReconnectFailed,
    RequestTimeout,
)
from . import _protocol as p

__all__ = ["connect", "Connection"]

_log = logging.getLogger("qwire.ipc")

#: The error text a client sends back for a sync request from the peer it has no handler for.
NO_SYNC_HANDLER = "qwire client: no on_sync handler for requests from the server"


class _Waiter:
    """A sync request waiting for its response."""

    __slots__ = ("done", "value", "error", "abandoned")

    def __init__(self) -> None:
        self.done = False
        self.value: Any = None
        self.error: BaseException | None = None
        self.abandoned = False

    def is_done(self) -> bool:
        return self.done


class _Target:
    """Where and how to (re)connect."""

    __slots__ = ("host", "port", "unix", "ssl", "user", "password", "capability", "timeout")

    def __init__(self, host: str, port: int | None, unix: str | bool | None, ssl: Any, user: str | None,
                 password: str | None, capability: int, timeout: float | None) -> None:
        self.host, self.port, self.unix, self.ssl = host, port, unix, ssl
        self.user, self.password, self.capability, self.timeout = user, password, capability, timeout


def _deadline(timeout: float | None) -> float | None:
    if timeout is None:
        return None
    if not timeout > 0:
        raise ValueError(f"timeout must be > 0 seconds or None, not {timeout!r}")
    return time.monotonic() + timeout


def _remaining(deadline: float | None) -> float | None:
    if deadline is None:
        return None
    return max(deadline - time.monotonic(), 0.0)


def _unix_path(unix: str | bool, port: int | None) -> str:
    if unix is True:
        if port is None:
            raise ValueError("connect(unix=True) needs the port of the local q (its socket is kx.<port>)")
        return p.kx_unix_path(port)
    path = os.fspath(unix)  # type: ignore[arg-type]
    return "\0" + path[1:] if path.startswith("@") else path


def _tls_context(ssl: Any) -> _ssl.SSLContext | None:
    if ssl is None or ssl is False:
        return None
    if ssl is True:
        return _ssl.create_default_context()
    if isinstance(ssl, _ssl.SSLContext):
        return ssl
    raise TypeError(f"ssl must be an ssl.SSLContext, True or None, not {type(ssl).__name__}")


def open_socket(target: _Target) -> tuple[socket.socket, int, str, bool]:
    """Connect, wrap in TLS, do the handshake: (socket, capability, peer name, peer is local).

    Every later wait with a deadline goes through `_protocol.wait_ready`.
    """
    deadline = _deadline(target.timeout)
    if target.unix is not None and target.unix is not False:
        path = _unix_path(target.unix, target.port)
        peer = p.describe_peer(socket.AF_UNIX, path)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.settimeout(_remaining(deadline))
            sock.connect(path)
        except BaseException as e:
            sock.close()
            raise _connect_error(e, peer) from e
    else:
        if target.port is None:
            raise ValueError("connect() needs a port (or unix=PATH)")
        peer = p.describe_peer(socket.AF_INET6 if ":" in target.host else socket.AF_INET, (target.host, target.port))
        try:
            sock = socket.create_connection((target.host, target.port), timeout=_remaining(deadline))
        except BaseException as e:
            raise _connect_error(e, peer) from e
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    try:
        family = sock.family
        address = sock.getpeername()
        local = p.is_local_address(family, address)
        context = _tls_context(target.ssl)
        if context is not None:
            sock.settimeout(_remaining(deadline))
            sock = context.wrap_socket(sock, server_hostname=None if target.unix else target.host)
        sock.settimeout(_remaining(deadline))
        sock.sendall(p.client_hello(target.user, target.password, target.capability))
        reply = sock.recv(1)
        capability = p.parse_server_reply(reply, target.capability, peer)
        # Plain sockets stay blocking: a wait without a deadline is then one recv, and calls with
        # a deadline pass MSG_DONTWAIT. TLS sockets take no flags, so they are non-blocking.
        sock.setblocking(not _needs_nonblocking(sock))
        return sock, capability, peer, local
    except BaseException as e:
        sock.close()
        if isinstance(e, IPCError):
            raise
        if isinstance(e, (ConnectionResetError, BrokenPipeError)):
            raise AuthenticationError("the server closed the connection during the handshake: "
                                      "credentials refused (q reports 'access)", peer) from e
        raise _connect_error(e, peer) from e


def _needs_nonblocking(sock: socket.socket) -> bool:
    return isinstance(sock, _ssl.SSLSocket) or not p.MSG_DONTWAIT


def _connect_error(e: BaseException, peer: str) -> BaseException:
    """What connect raises for a failure below the protocol. TLS failures (a certificate that does
    not verify) stay ssl.SSLError, which callers know how to read."""
    if isinstance(e, _ssl.SSLError):
        return e
    if isinstance(e, (socket.timeout, TimeoutError)):
        return RequestTimeout("timed out connecting and doing the handshake", peer)
    if isinstance(e, OSError):
        return ConnectionClosed(f"cannot connect: {e}", peer)
    return e


class _Unset:
    def __repr__(self) -> str:
        return "<from limits>"


#: The default of connect's timeout arguments: take the value from `limits` (whose own defaults
#: are _protocol.DEFAULT_CONNECT_TIMEOUT and DEFAULT_REQUEST_TIMEOUT).
FROM_LIMITS: Any = _Unset()


def _timeouts(limits: p.Limits, timeout: Any, request_timeout: Any) -> tuple[float | None, float | None]:
    return (limits.connect_timeout if timeout is FROM_LIMITS else timeout,
            limits.request_timeout if request_timeout is FROM_LIMITS else request_timeout)


def connect(host: str = "localhost", port: int | None = None, *, user: str | None = None,
            password: str | None = None, timeout: float | None = FROM_LIMITS,
            request_timeout: float | None = FROM_LIMITS, ssl: Any = None,
            unix: str | bool | None = None, compression: p.Compression = "auto", q_compatible: bool = True,
            on_async: Callable[[Any], object] | None = None, on_sync: Callable[[Any], object] | None = None,
            reconnect: int | bool = False, limits: p.Limits | None = None, capability: int = p.CAPABILITY,
            registry: Any = None) -> Connection:
    """Open a connection to a q IPC server (kdb+, or any server that speaks the protocol).

    host, port: the TCP address (TCP_NODELAY is set). unix=PATH connects to a Unix socket instead
    ("@name" or "\\0name" is an abstract one); unix=True to the one a local `q -p port` listens on
    (`qwire.ipc.kx_unix_path(port)`: the abstract "@/tmp/kx.<port>" on Linux).
    user, password: the credentials (user=None sends the OS login name, as q's hopen does).
    A refusal raises AuthenticationError.
    timeout: seconds for connecting, TLS and the handshake (default: limits.connect_timeout, 10).
    request_timeout: default seconds each request or receive waits (default:
    limits.request_timeout, None: forever); a request that times out raises RequestTimeout and
    its late response is dropped, the connection stays usable.
    ssl: an ssl.SSLContext (or True for the default context) to use TLS, as q's `:tcps://`.
    compression: "auto" is kdb+'s rule (messages over 2000 bytes, only to a peer that is not
    local, kept when at most half); True compresses to local peers too; False never.
    q_compatible: what is sent is what q reads (the default: the peer may be kdb+). False allows
    qwire's Python-only records, for a peer that is known to be qwire.
    on_async(value): called for each async message from the peer (default: queued for receive()).
    on_sync(value): answers sync requests from the peer (its return value is the response, an
    exception an error reply); without it they get an error reply.
    reconnect: when the connection is lost, the next request (or send) reconnects first, making
    up to this many attempts (True: 5) with exponential backoff (50 ms doubling to at most 5 s,
    jittered), then raises `qwire.ReconnectFailed` (a ConnectionClosed). A request in flight
    when the connection is lost is not resent (it may have run): it raises ConnectionClosed.
    Messages already queued for receive() survive the reconnection.
    limits: a `qwire.ipc.Limits` (max_message_size, connect_timeout, request_timeout); the
    timeout arguments, when given, take precedence. Every message received is decoded under
    these limits and the codec's own (depth, memory expansion).
    """
    limits = limits if limits is not None else p.Limits()
    timeout, request_timeout = _timeouts(limits, timeout, request_timeout)
    attempts = p.reconnect_attempts(reconnect)
    target = _Target(host, port, unix, ssl, user, password, capability, timeout)
    sock, cap, peer, local = open_socket(target)
    return Connection(sock, capability=cap, peer=peer, local=local, compression=compression,
                      q_compatible=q_compatible, on_async=on_async, on_sync=on_sync, limits=limits,
                      request_timeout=request_timeout, registry=registry, target=target,
                      reconnect_attempts=attempts)


class Connection:
    """A connection to a q IPC peer; from `qwire.connect`. Thread-safe (module docstring).

    `conn(query, *args)` is q's `h(query; args...)`; `sync(value)` sends one value as a sync
    request and `send(value)` as an async message, exactly as given; `receive()` returns what the
    peer sends unasked. Iterating yields received messages until the peer closes.
    """

    def __init__(self, sock: socket.socket, *, capability: int, peer: str, local: bool,
                 compression: p.Compression = "auto", q_compatible: bool = True,
                 on_async: Callable[[Any], object] | None = None, on_sync: Callable[[Any], object] | None = None,
                 limits: p.Limits | None = None, request_timeout: float | None = None, registry: Any = None,
                 target: _Target | None = None, reconnect_attempts: int = 0) -> None:
        p.should_compress(0, local=local, capability=capability, mode=compression)  # validates the mode
        self.limits = limits if limits is not None else p.Limits()
        self.compression = compression
        self.q_compatible = q_compatible
        self.request_timeout = request_timeout
        self.on_async = on_async
        self.on_sync = on_sync
        self._registry = registry
        self._target = target
        self._reconnect_attempts = reconnect_attempts
        self._send_lock = threading.Lock()
        self._state = threading.Lock()               # guards the fields below; C-level enter/exit
        self._cond = threading.Condition(self._state)  # waits for the reader role or a result
        self._sleepers = 0                            # threads waiting on _cond
        self._closed = False
        self._rounds = 0                              # reconnection rounds finished
        self._round_error: ReconnectFailed | None = None  # how the last one ended, if it gave up
        self._attach(sock, capability, peer, local)

    def _attach(self, sock: socket.socket, capability: int, peer: str, local: bool) -> None:
        self._sock = sock
        self._tls = isinstance(sock, _ssl.SSLSocket)
        self._nonblocking = _needs_nonblocking(sock)
        self._tls_lock = threading.Lock()  # OpenSSL: one call at a time on a connection
        self.capability = capability
        self.peer = peer
        self.local = local
        enc_cap = p.encoder_capability(capability)
        opts = {"q_compatible": self.q_compatible, "capability": enc_cap, "registry": self._registry}
        self._encoders = {t: Encoder(t, **opts) for t in ("sync", "async", "response")}
        self._decoder = self.limits.decoder(self._registry)
        self._frames = p.FrameReader(self.limits.max_message_size, peer)
        self._waiters: collections.deque[_Waiter] = collections.deque()
        self._inbox: collections.deque[Any] = collections.deque()
        self._reader: int | None = None      # thread id holding the reader role
        self._failure: BaseException | None = None

    # --- public API ----------------------------------------------------------------------
    def __call__(self, query: Any, *args: Any) -> Any:
        """q's `h(query; args...)`: a str query is sent as a char vector (what q evaluates), the
        args by qwire's mapping; returns the decoded response. An error reply raises QError."""
        if isinstance(query, str):
            query = query.encode("utf-8")
        return self.sync([query, *args] if args else query)

    def sync(self, value: Any, *, timeout: float | None = None) -> Any:
        """Send `value` exactly as given as a sync request; the decoded response (QError raised).
        timeout: seconds (default: the connection's request_timeout)."""
        self._notice_peer_closed()
        if self._failure is not None:
            self._ensure_open()  # before the deadline: reconnecting is bounded by its own schedule
        if timeout is None:
            timeout = self.request_timeout
        deadline = None if timeout is None else _deadline(timeout)
        segments = self._outgoing("sync", value)
        waiter = _Waiter()
        with self._send_lock:
            with self._state:
                if self._failure is not None:
                    raise self._closed_error()
                self._waiters.append(waiter)
            self._send(segments, deadline)
        try:
            self._wait_for(waiter.is_done, deadline, "the response")
        except RequestTimeout:
            with self._state:
                waiter.abandoned = True
                if not waiter.done:
                    raise
        if waiter.error is not None:
            raise waiter.error
        return waiter.value

    def send(self, value: Any) -> None:
        """Send `value` exactly as given as an async message (q's neg[h] value). Returns once
        the bytes are written to the socket."""
        self._notice_peer_closed()
        if self._failure is not None:
            self._ensure_open()
        segments = self._outgoing("async", value)
        with self._send_lock:
            with self._state:
                self._check_usable()
            self._send(segments, _deadline(self.request_timeout))

    def receive(self, timeout: float | None = None) -> Any:
        """The next message the peer sent unasked (an async message), decoded; waits up to
        `timeout` seconds (default: the connection's request_timeout) and then raises
        RequestTimeout. A q error sent as a message is returned as a QError value; a message that
        cannot be decoded raises its DecodeError here, in its place."""
        deadline = _deadline(self.request_timeout if timeout is None else timeout)
        self._wait_for(lambda: bool(self._inbox), deadline, "a message")
        with self._state:
            item = self._inbox.popleft()
        if isinstance(item, DecodeError):
            raise item
        return item

    def __iter__(self) -> Iterator[Any]:
        """Received messages, until the peer closes the connection."""
        while True:
            try:
                yield self.receive()
            except ConnectionClosed:
                if self._inbox:
                    continue
                return

    @property
    def closed(self) -> bool:
        """True after close(), or once the connection was lost (reconnection may reopen it)."""
        return self._closed or self._failure is not None

    def close(self) -> None:
        """Close the connection; requests waiting in other threads raise ConnectionClosed."""
        self._closed = True
        self._fail(ConnectionClosed("the connection was closed", self.peer))

    def __enter__(self) -> Connection:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self.closed else f"capability {self.capability}"
        return f"<qwire.Connection {self.peer} {state}>"

    # --- sending -------------------------------------------------------------------------
    def _outgoing(self, kind: str, value: Any) -> Any:
        message = self._encoders[kind].encode(value)  # EncodeError before anything is sent
        if message.nbytes < KDB_COMPRESSION_THRESHOLD:  # small: nothing for prepare_outgoing to decide
            return message.segments()
        return p.prepare_outgoing(message, local=self.local, capability=self.capability, mode=self.compression)

    def _send(self, segments: Any, deadline: float | None) -> None:
        """Write one message (the send lock is held). A failure part-way breaks the stream."""
        try:
            if self._tls:
                p.send_segments_tls(self._sock, segments, self._tls_lock, deadline)
            else:
                p.send_segments(self._sock, segments, deadline)
        except TimeoutError as e:
            err = RequestTimeout("timed out sending a message; the connection is closed", self.peer)
            self._fail(err)
            raise err from e
        except OSError as e:
            lost = ConnectionClosed(f"the connection failed while sending: {e}", self.peer)
            self._fail(lost)
            raise lost from e

    # --- receiving -----------------------------------------------------------------------
    def _wait_for(self, done: Callable[[], bool], deadline: float | None, what: str) -> None:
        """Until done(): take the reader role when free and read, else wait for the reader."""
        me = threading.get_ident()
        while True:
            with self._state:
                while True:
                    if done():
                        return
                    self._check_usable()
                    if self._reader is None or self._reader == me:
                        break
                    left = _remaining(deadline)
                    if left == 0:
                        raise RequestTimeout(f"timed out waiting for {what}", self.peer)
                    self._sleepers += 1
                    try:
                        self._cond.wait(left)
                    finally:
                        self._sleepers -= 1
                outer = self._reader
                self._reader = me
            try:
                self._read_one(deadline, what)
            finally:
                with self._state:
                    self._reader = outer
                    if self._sleepers:
                        self._cond.notify_all()

    def _read_one(self, deadline: float | None, what: str) -> None:
        """Read until one message is complete and deliver it (this thread is the reader)."""
        frames = self._frames
        frame = frames.next_frame()
        try:
            while frame is None:
                buf = frames.buffer()
                try:
                    if self._tls:
                        with self._tls_lock:
                            n = self._sock.recv_into(buf)
                    elif deadline is None and not self._nonblocking:
                        n = self._sock.recv_into(buf)  # blocks: one system call per wait
                    else:
                        n = self._sock.recv_into(buf, 0, p.MSG_DONTWAIT)
                except (BlockingIOError, InterruptedError, _ssl.SSLWantReadError):
                    p.wait_ready(self._sock, False, deadline)
                    continue
                except _ssl.SSLWantWriteError:
                    p.wait_ready(self._sock, True, deadline)
                    continue
                frames.received(n)
                frame = frames.next_frame()
        except TimeoutError:
            if self._failure is not None:
                raise self._closed_error() from None
            raise RequestTimeout(f"timed out waiting for {what}", self.peer) from None
        except (ConnectionClosed, ProtocolError) as e:
            self._fail(e)
            raise  # this thread sees why; the others see ConnectionClosed saying why
        except (OSError, ValueError) as e:  # a socket closed by another thread: EBADF, ValueError
            err = ConnectionClosed(f"the connection failed while receiving: {e}", self.peer)
            self._fail(err)
            raise self._closed_error() from e
        self._deliver(frame)

    def _decode(self, frame: p.Frame) -> tuple[Any, BaseException | None]:
        try:
            return self._decoder.decode(frame.data), None
        except QError as e:
            return e, e
        except DecodeError as e:
            return None, e

    def _deliver(self, frame: p.Frame) -> None:
        value, error = self._decode(frame)
        if frame.msg_type == p.RESPONSE:
            with self._state:
                waiter = self._waiters.popleft() if self._waiters else None
                if waiter is not None:
                    waiter.value, waiter.error, waiter.done = value, error, True
            if waiter is None:
                err = ProtocolError("the peer sent a response to no request", self.peer)
                self._fail(err)
                raise err
            return
        if frame.msg_type == p.ASYNC:
            item = error if isinstance(error, DecodeError) else value
            if self.on_async is not None and error is None:
                try:
                    self.on_async(item)
                except Exception:
                    _log.exception("qwire: on_async callback failed (message from %s)", self.peer)
                return
            with self._state:
                self._inbox.append(item)
            return
        # a sync request from the peer: answer it, as q's .z.pg would
        if error is not None and not isinstance(error, QError):
            response: Any = QError(f"qwire client: cannot decode the request: {error}")
        elif self.on_sync is None:
            response = QError(NO_SYNC_HANDLER)
        else:
            try:
                response = self.on_sync(value)
            except Exception as e:
                response = QError(str(e) or type(e).__name__)
        try:
            segments = self._outgoing("response", response)
        except Exception as e:  # an answer that cannot be encoded is an error reply
            segments = self._outgoing("response", QError(f"qwire client: cannot encode the response: {e}"))
        with self._send_lock:
            self._send(segments, _deadline(self.request_timeout))

    # --- state ---------------------------------------------------------------------------
    def _check_usable(self) -> None:
        if self._failure is not None:
            raise self._closed_error()

    def _closed_error(self) -> ConnectionClosed:
        f = self._failure
        if self._closed:
            return ConnectionClosed("the connection is closed", self.peer)
        reason = f.reason if isinstance(f, IPCError) else str(f)
        return ConnectionClosed(f"the connection was lost: {reason}", self.peer)

    def _fail(self, error: BaseException) -> None:
        """Mark the connection unusable, close the socket, fail every waiting request."""
        with self._state:
            if self._failure is None:
                self._failure = error
            waiters, self._waiters = self._waiters, collections.deque()
            for w in waiters:
                w.error = self._closed_error()
                w.done = True
            self._cond.notify_all()
        try:
            self._sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self._sock.close()

    def _notice_peer_closed(self) -> None:
        """With reconnection on, learn before writing a request that the peer has closed the
        connection (a server killed and restarted): the blocking client reads the socket only
        during a request, so without this look the request would be written to the dead
        connection and fail, and only the one after it would reconnect. One non-blocking peek
        (a system call per request, only when reconnection is on); when no reader holds the
        socket and it has nothing but end-of-file, the connection counts as lost and
        _ensure_open reconnects. Unread data (an async message before the close) is left for
        the reader as before; TLS sockets are not peeked (their close arrives as data)."""
        if not self._reconnect_attempts or self._tls or self._failure is not None:
            return
        with self._state:
            if self._reader is not None or self._failure is not None:
                return  # a reader is on the socket: it sees the end itself
            try:
                data = self._sock.recv(1, socket.MSG_PEEK | p.MSG_DONTWAIT)
            except (BlockingIOError, InterruptedError):
                return  # open, nothing to read: the usual case
            except OSError as e:
                lost = ConnectionClosed(f"the connection was lost: {e}", self.peer)
            else:
                if data:
                    return
                lost = ConnectionClosed("the peer closed the connection", self.peer)
        self._fail(lost)

    def _ensure_open(self) -> None:
        """Reconnect if the connection was lost and reconnection is on: one round of up to
        `reconnect` attempts with backoff (`_protocol.ReconnectRound`, shared with qwire.aio).
        Threads that waited while a round ran take its outcome rather than starting another."""
        if self._failure is None or self._closed or not self._reconnect_attempts or self._target is None:
            return
        rounds_seen = self._rounds
        with self._send_lock:
            with self._state:
                if self._failure is None:
                    return
                if self._reader is not None:
                    return  # another thread still reads the old connection; fail as it does
            e = self._round_error
            if self._rounds != rounds_seen and e is not None:  # a round ran while this thread waited
                raise ReconnectFailed(e.reason, e.peer, e.attempts, e.last_error) from e.last_error
            try:
                self._reconnect_round()
                self._round_error = None
            except ReconnectFailed as e:
                self._round_error = e
                raise
            finally:
                self._rounds += 1

    def _reconnect_round(self) -> None:
        assert self._target is not None
        round_ = p.ReconnectRound(self._reconnect_attempts, self.peer)
        for delay in round_:
            if delay:
                time.sleep(delay)
            if self._closed:
                raise self._closed_error()
            try:
                sock, cap, peer, local = open_socket(self._target)
            except Exception as e:  # noqa: BLE001 (failed() re-raises what no retry can help)
                round_.failed(e)
                continue
            with self._state:
                if self._closed:  # close() was called meanwhile
                    sock.close()
                    raise self._closed_error()
                inbox = self._inbox
                self._attach(sock, cap, peer, local)
                self._inbox = inbox  # messages received before the loss stay deliverable
            return
        raise round_.give_up()
