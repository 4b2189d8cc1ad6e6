"""The asyncio client: `await qwire.aio.connect(...)` returns a `Connection` with the semantics of
the blocking one (qwire.ipc.client), built on the same sans-IO protocol.

    async with await qwire.aio.connect("localhost", 5001) as q:
        await q("1+1")
        results = await asyncio.gather(*(q("f", i) for i in range(100)))   # many in flight
        async for message in q: ...                                        # what the peer sends

Receiving uses asyncio's BufferedProtocol: the event loop reads straight into the buffer the
FrameReader hands out (the aligned receive buffer, for large bodies). Requests in flight are a
FIFO of futures: kdb+ answers in order, so the n-th response belongs to the n-th request.
"""
from __future__ import annotations

import asyncio
import collections
import inspect
import logging
import socket
import sys
from collections.abc import AsyncIterator, Callable
from typing import Any

from .._core import Encoder
from ..errors import AuthenticationError, ConnectionClosed, DecodeError, IPCError, QError, RequestTimeout
from ..ipc import _protocol as p
from ..ipc.client import (
    FROM_LIMITS,
    NO_SYNC_HANDLER,
    _connect_error,
    _Target,
    _timeouts,
    _tls_context,
    _unix_path,
)

__all__ = ["connect", "Connection"]

_log = logging.getLogger("qwire.aio")
_WRITELINES_IS_VECTORED = sys.version_info >= (3, 12)  # selector transports use sendmsg from 3.12


class _Protocol(asyncio.BufferedProtocol):
    """The transport's side: the one-byte handshake reply, then frames for the Connection."""

    def __init__(self, max_message_size: int | None) -> None:
        self.frames = p.FrameReader(max_message_size)
        self.transport: asyncio.Transport | None = None
        self.reply: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        self.closed: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._reply_buf = bytearray(1)
        self.conn: Connection | None = None
        self._paused = False
        self._drained: asyncio.Future[None] | None = None
        self.lost: BaseException | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def get_buffer(self, sizehint: int) -> memoryview:
        if not self.reply.done():
            return memoryview(self._reply_buf)
        return self.frames.buffer()

    def buffer_updated(self, nbytes: int) -> None:
        if not self.reply.done():
            self.reply.set_result(bytes(self._reply_buf[:nbytes]))
            return
        try:
            self.frames.received(nbytes)
        except IPCError as e:
            self._lose(e)
            return
        conn = self.conn
        while conn is not None and (frame := self.frames.next_frame()) is not None:
            conn._deliver(frame)

    def eof_received(self) -> bool:
        if not self.reply.done():
            self.reply.set_result(b"")
        else:
            try:
                self.frames.eof()
            except IPCError as e:
                self._lose(e)
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.reply.done():
            self.reply.set_result(b"")
        if not self.closed.done():
            self.closed.set_result(None)
        err = self.lost or ConnectionClosed(
            f"the connection was lost: {exc}" if exc else "the peer closed the connection", self.frames.peer)
        self._lose(err)
        if self._drained is not None and not self._drained.done():
            self._drained.set_exception(err)

    def _lose(self, error: BaseException) -> None:
        if self.lost is None:
            self.lost = error
        if self.transport is not None:
            self.transport.abort()
        if self.conn is not None:
            self.conn._fail(error)

    def pause_writing(self) -> None:
        self._paused = True

    def resume_writing(self) -> None:
        self._paused = False
        if self._drained is not None and not self._drained.done():
            self._drained.set_result(None)

    async def drain(self) -> None:
        if self.lost is not None:
            raise self.lost
        if self._paused:
            self._drained = asyncio.get_running_loop().create_future()
            await self._drained


async def connect(host: str = "localhost", port: int | None = None, *, user: str | None = None,
                  password: str | None = None, timeout: float | None = FROM_LIMITS,
                  request_timeout: float | None = FROM_LIMITS, ssl: Any = None,
                  unix: str | bool | None = None, compression: p.Compression = "auto",
                  q_compatible: bool = True, on_async: Callable[[Any], object] | None = None,
                  on_sync: Callable[[Any], object] | None = None, reconnect: int | bool = False,
                  limits: p.Limits | None = None, capability: int = p.CAPABILITY,
                  registry: Any = None) -> Connection:
    """Open a connection; the arguments are those of `qwire.connect` (on_async and on_sync may
    be coroutine functions).

    reconnect: as for `qwire.connect`. When the connection is lost, the next request (or send)
    reconnects first, making up to this many attempts (True: 5) with the backoff of
    `qwire.ipc._protocol.reconnect_delay`, then raises `qwire.ReconnectFailed`. Requests in
    flight when it was lost raise ConnectionClosed (never resent: they may have run); messages
    already queued for receive() are kept. Concurrent requests share one reconnection.
    """
    limits = limits if limits is not None else p.Limits()
    timeout, request_timeout = _timeouts(limits, timeout, request_timeout)
    attempts = p.reconnect_attempts(reconnect)
    _tls_context(ssl)  # validates it before anything is opened
    target = _Target(host, port, unix, ssl, user, password, capability, timeout)
    opened = await _open(target, limits.max_message_size)
    return Connection(*opened, compression=compression, q_compatible=q_compatible, on_async=on_async,
                      on_sync=on_sync, limits=limits, request_timeout=request_timeout, registry=registry,
                      target=target, reconnect_attempts=attempts)


async def _open(target: _Target, max_message_size: int | None) -> tuple[asyncio.Transport, _Protocol, int, str, bool]:
    """Connect, wrap in TLS, do the handshake: (transport, protocol, capability, peer, local).
    Whatever fails (or is cancelled) part-way leaves no transport open."""
    loop = asyncio.get_running_loop()
    context = _tls_context(target.ssl)
    host, port, unix = target.host, target.port, target.unix
    protocol: _Protocol | None = None

    def factory() -> _Protocol:
        nonlocal protocol
        protocol = _Protocol(max_message_size)
        return protocol

    async def open_() -> tuple[asyncio.Transport, int, str, bool]:
        if unix is not None and unix is not False:
            path = _unix_path(unix, port)
            peer = p.describe_peer(socket.AF_UNIX, path)
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.setblocking(False)
            try:
                await loop.sock_connect(sock, path)
            except BaseException as e:
                sock.close()
                if isinstance(e, OSError):
                    raise ConnectionClosed(f"cannot connect: {e}", peer) from e
                raise
            transport, _ = await loop.create_unix_connection(factory, sock=sock, ssl=context,
                                                             server_hostname="" if context else None)
            local = True
        else:
            if port is None:
                raise ValueError("connect() needs a port (or unix=PATH)")
            peer = p.describe_peer(socket.AF_INET6 if ":" in host else socket.AF_INET, (host, port))
            try:
                transport, _ = await loop.create_connection(factory, host, port, ssl=context,
                                                            server_hostname=host if context else None)
            except OSError as e:
                raise _connect_error(e, peer) from e
            sock = transport.get_extra_info("socket")
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            local = p.is_local_address(sock.family, sock.getpeername())
        assert protocol is not None
        protocol.frames.peer = peer
        transport.write(p.client_hello(target.user, target.password, target.capability))
        reply = await protocol.reply
        cap = p.parse_server_reply(reply, target.capability, peer)
        return transport, cap, peer, local

    try:
        transport, cap, peer, local = await asyncio.wait_for(open_(), target.timeout)
    except BaseException as e:
        if protocol is not None and protocol.transport is not None:
            protocol.transport.abort()
        peer_name = None if protocol is None else protocol.frames.peer
        if isinstance(e, asyncio.TimeoutError):
            raise RequestTimeout("timed out connecting and doing the handshake", peer_name) from None
        if isinstance(e, (ConnectionResetError, BrokenPipeError)):
            raise AuthenticationError("the server closed the connection during the handshake: "
                                      "credentials refused (q reports 'access)", peer_name) from e
        raise
    assert protocol is not None
    return transport, protocol, cap, peer, local


class Connection:
    """An asyncio connection to a q IPC peer, from `await qwire.aio.connect(...)`.

    `await conn(query, *args)`, `await conn.sync(value)`, `await conn.send(value)`,
    `await conn.receive()`, `async for message in conn`. Any number of requests may be in flight
    (from concurrent tasks); each gets its own response, in order.
    """

    def __init__(self, transport: asyncio.Transport, protocol: _Protocol, capability: int, peer: str,
                 local: bool, *, compression: p.Compression, q_compatible: bool,
                 on_async: Callable[[Any], object] | None, on_sync: Callable[[Any], object] | None,
                 limits: p.Limits, request_timeout: float | None, registry: Any,
                 target: _Target | None = None, reconnect_attempts: int = 0) -> None:
        p.should_compress(0, local=local, capability=capability, mode=compression)  # validates the mode
        self.compression = compression
        self.q_compatible = q_compatible
        self.on_async = on_async
        self.on_sync = on_sync
        self.limits = limits
        self.request_timeout = request_timeout
        self._registry = registry
        self._decoder = limits.decoder(registry)
        self._target = target
        self._reconnect_attempts = reconnect_attempts
        self._reconnecting: asyncio.Future[None] | None = None  # the reconnection round running
        self._inbox: collections.deque[tuple[Any, int]] = collections.deque()  # (item, message bytes)
        self._inbox_ready = asyncio.Event()
        self._queued_bytes = 0
        self._closed = False
        self._generation = 0  # which transport: a reply computed for an earlier one is not sent
        self._attach(transport, protocol, capability, peer, local)

    def _attach(self, transport: asyncio.Transport, protocol: _Protocol, capability: int, peer: str,
                local: bool) -> None:
        """Use this transport (the first, or a reconnection's): the inbox is kept."""
        old: _Protocol | None = getattr(self, "_protocol", None)
        if old is not None:
            old.conn = None  # the old transport's late events concern nobody now
        self._transport = transport
        self._protocol = protocol
        self.capability = capability
        self.peer = peer
        self.local = local
        opts = {"q_compatible": self.q_compatible, "capability": p.encoder_capability(capability),
                "registry": self._registry}
        self._encoders = {t: Encoder(t, **opts) for t in ("sync", "async", "response")}
        self._waiters: collections.deque[asyncio.Future[Any]] = collections.deque()
        self._reading_paused = False
        self._failure: BaseException | None = None
        self._last_reply: asyncio.Future[None] | None = None
        self._generation += 1
        if not self._inbox:
            self._inbox_ready.clear()  # set by the failure, to wake receive()
        protocol.conn = self
        # frames that arrived with the handshake reply
        while (frame := protocol.frames.next_frame()) is not None:
            self._deliver(frame)
        if protocol.lost is not None:  # and the peer went right after them
            self._fail(protocol.lost)

    # --- public API ----------------------------------------------------------------------
    async def __call__(self, query: Any, *args: Any) -> Any:
        """q's `h(query; args...)` (a str query travels as a char vector); QError on an error reply."""
        if isinstance(query, str):
            query = query.encode("utf-8")
        return await self.sync([query, *args] if args else query)

    async def sync(self, value: Any, *, timeout: float | None = None) -> Any:
        """Send `value` as given as a sync request and await its decoded response. If the
        connection was lost and `reconnect` is on, it reconnects first."""
        if self._failure is not None:
            await self._ensure_open()
        self._check_usable()
        segments = self._outgoing("sync", value)
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._waiters.append(future)   # before writing: the order of the FIFO is the order sent
        if self._reading_paused:       # its response is behind the queued messages: read on
            self._resume_reading()
        self._write(segments)
        try:
            await self._protocol.drain()
        except BaseException:
            if future.done() and not future.cancelled():
                future.exception()  # failed with the connection: the error raised here says so
            future.cancel()  # its response, should one come, is dropped
            raise
        timeout = self.request_timeout if timeout is None else timeout
        try:
            return await asyncio.wait_for(future, timeout)
        except asyncio.TimeoutError:
            future.cancel()  # the late response is dropped when it comes
            raise RequestTimeout("timed out waiting for the response", self.peer) from None

    async def send(self, value: Any) -> None:
        """Send `value` as given as an async message; returns once the transport took it
        (waiting while its buffer is over the high-water mark). Reconnects first as sync() does."""
        if self._failure is not None:
            await self._ensure_open()
        self._check_usable()
        self._write(self._outgoing("async", value))
        await self._protocol.drain()

    async def receive(self, timeout: float | None = None) -> Any:
        """The next message the peer sent unasked (RequestTimeout after `timeout` seconds)."""
        timeout = self.request_timeout if timeout is None else timeout
        try:
            await asyncio.wait_for(self._next_in_inbox(), timeout)
        except asyncio.TimeoutError:
            raise RequestTimeout("timed out waiting for a message", self.peer) from None
        item, nbytes = self._inbox.popleft()
        self._queued_bytes -= nbytes
        if not self._inbox:
            self._inbox_ready.clear()
        if self._reading_paused and self._queued_bytes <= p.DEFAULT_MAX_QUEUED_BYTES // 2:
            self._resume_reading()
        if isinstance(item, DecodeError):
            raise item
        return item

    async def _next_in_inbox(self) -> None:
        while not self._inbox:
            self._check_usable()
            await self._inbox_ready.wait()

    def __aiter__(self) -> AsyncIterator[Any]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[Any]:
        while True:
            try:
                yield await self.receive()
            except ConnectionClosed:
                if self._inbox:
                    continue
                return

    @property
    def closed(self) -> bool:
        """True after close(), or once the connection was lost (reconnection may reopen it)."""
        return self._closed or self._failure is not None

    def close(self) -> None:
        """Close the connection; requests in flight (and a reconnection) raise ConnectionClosed."""
        self._closed = True
        if self._reconnecting is not None:
            self._reconnecting.cancel()
        self._fail(ConnectionClosed("the connection was closed", self.peer))

    async def wait_closed(self) -> None:
        """Wait until the transport has closed (after close() or the peer's)."""
        await asyncio.shield(self._protocol.closed)

    async def __aenter__(self) -> Connection:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.close()
        await self.wait_closed()

    def __repr__(self) -> str:
        state = "closed" if self.closed else f"capability {self.capability}"
        return f"<qwire.aio.Connection {self.peer} {state}>"

    # --- reconnection --------------------------------------------------------------------
    async def _ensure_open(self) -> None:
        """Reconnect if the connection was lost and reconnection is on. Every task that asks
        while a round runs awaits that one round (`_protocol.ReconnectRound`, shared with the
        blocking client), and takes its outcome."""
        if self._failure is None or self._closed or not self._reconnect_attempts or self._target is None:
            return
        round_ = self._reconnecting
        if round_ is None:
            round_ = self._reconnecting = asyncio.ensure_future(self._reconnect_round())
            round_.add_done_callback(self._round_done)
        try:
            await asyncio.shield(round_)  # a caller cancelled (or timed out) leaves it running for the others
        except asyncio.CancelledError:
            if round_.cancelled() and self._closed:  # close() stopped it
                raise self._closed_error() from None
            raise

    def _round_done(self, round_: asyncio.Future[None]) -> None:
        if self._reconnecting is round_:
            self._reconnecting = None
        if not round_.cancelled():
            round_.exception()  # retrieved: its callers may all have been cancelled

    async def _reconnect_round(self) -> None:
        assert self._target is not None
        round_ = p.ReconnectRound(self._reconnect_attempts, self.peer)
        for delay in round_:
            if delay:
                await asyncio.sleep(delay)
            try:
                opened = await _open(self._target, self.limits.max_message_size)
            except Exception as e:  # noqa: BLE001 (failed() re-raises what no retry can help)
                round_.failed(e)
                continue
            if self._closed:
                opened[0].abort()
                raise self._closed_error()
            self._attach(*opened)
            return
        raise round_.give_up()

    # --- internals -----------------------------------------------------------------------
    def _outgoing(self, kind: str, value: Any) -> Any:
        message = self._encoders[kind].encode(value)
        return p.prepare_outgoing(message, local=self.local, capability=self.capability, mode=self.compression)

    def _write(self, segments: Any) -> None:
        if _WRITELINES_IS_VECTORED:
            self._transport.writelines(segments)
        else:  # 3.11 joins in writelines; write() sends what the kernel takes and buffers the rest
            for seg in segments:
                self._transport.write(seg)

    def _resume_reading(self) -> None:
        self._reading_paused = False
        if not self._transport.is_closing():
            self._transport.resume_reading()

    def _check_usable(self) -> None:
        if self._failure is not None:
            raise self._closed_error()

    def _closed_error(self) -> ConnectionClosed:
        if self._closed:
            return ConnectionClosed("the connection is closed", self.peer)
        f = self._failure
        reason = f.reason if isinstance(f, IPCError) else str(f)
        return ConnectionClosed(f"the connection was lost: {reason}", self.peer)

    def _fail(self, error: BaseException) -> None:
        if self._failure is None:
            self._failure = error
        first = not self._closed
        while self._waiters:
            future = self._waiters.popleft()
            if not future.done():
                # the oldest request sees why (as the reading thread does in the blocking
                # client); the others that the connection is gone, and why
                future.set_exception(error if first else self._closed_error())
                first = False
        self._inbox_ready.set()  # wakes receive(), which then sees the failure
        self._transport.abort()

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
            if not self._waiters:
                from ..errors import ProtocolError

                self._protocol._lose(ProtocolError("the peer sent a response to no request", self.peer))
                return
            future = self._waiters.popleft()
            if not future.done():  # cancelled: the request timed out
                if error is not None:
                    future.set_exception(error)
                else:
                    future.set_result(value)
            return
        if frame.msg_type == p.ASYNC:
            item = error if isinstance(error, DecodeError) else value
            if self.on_async is not None and error is None:
                try:
                    result = self.on_async(item)
                    if inspect.isawaitable(result):
                        asyncio.ensure_future(result)
                except Exception:
                    _log.exception("qwire: on_async callback failed (message from %s)", self.peer)
                return
            nbytes = frame.data.nbytes
            self._inbox.append((item, nbytes))
            self._queued_bytes += nbytes
            self._inbox_ready.set()
            if (self._queued_bytes > p.DEFAULT_MAX_QUEUED_BYTES and not self._waiters
                    and not self._reading_paused):
                # nobody is taking them: let the kernel's buffers (and the peer) wait instead
                self._reading_paused = True
                self._transport.pause_reading()
            return
        previous = self._last_reply
        self._last_reply = asyncio.ensure_future(self._answer(value, error, previous, self._generation))

    async def _answer(self, value: Any, error: BaseException | None, previous: asyncio.Future[None] | None,
                      generation: int) -> None:
        """Answer a sync request from the peer (after the ones before it: q answers in order)."""
        if error is not None and not isinstance(error, QError):
            response: Any = QError(f"qwire client: cannot decode the request: {error}")
        elif self.on_sync is None:
            response = QError(NO_SYNC_HANDLER)
        else:
            try:
                response = self.on_sync(value)
                if inspect.isawaitable(response):
                    response = await response
            except Exception as e:
                response = QError(str(e) or type(e).__name__)
        if previous is not None:
            try:
                await asyncio.shield(previous)
            except Exception:  # noqa: BLE001 (that answer's failure is not this one's)
                pass
        if self._failure is not None or self._generation != generation:
            return  # asked on a connection that is gone: the new one's peer did not ask
        try:
            segments = self._outgoing("response", response)
        except Exception as e:
            segments = self._outgoing("response", QError(f"qwire client: cannot encode the response: {e}"))
        self._write(segments)
