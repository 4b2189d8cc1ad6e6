"""The asyncio server: `await qwire.aio.start_server(handler, ...)`, with the hooks and semantics of
`qwire.Server` (qwire.ipc.server): check_login, on_open, on_sync (its result is the response;
an exception an error reply; DEFERRED and `conn.reply` later), on_async, on_close. Hooks may be
plain functions or coroutine functions.

    server = await qwire.aio.start_server(handler, port=5001)
    async with server:
        await server.serve_forever()

Concurrency: everything runs on the event loop. Each connection has a task that takes its
messages in arrival order and awaits its hooks one at a time, so a connection's requests are
answered in order; coroutine hooks of different connections interleave at their awaits (plain
hooks never overlap). Receiving uses a BufferedProtocol: the loop reads straight into the
FrameReader's buffer (qwire's aligned receive buffer for large bodies). A connection whose
handler falls behind stops being read (its queue holds at most a few messages).
"""
from __future__ import annotations

import asyncio
import contextlib
import inspect
import itertools
import logging
import os
import socket
import ssl as _ssl
import sys
import threading
from collections import deque
from collections.abc import Sequence
from typing import Any

from .._core import Encoder
from ..errors import ConnectionClosed, DecodeError, IPCError, NoRequestWaiting, ProtocolError, QError
from ..ipc import _protocol as p
from ..ipc.server import DEFERRED, DeferredReply, _defer, _Hooks, _Outgoing, _Slot, error_text

__all__ = ["start_server", "Server", "ServerConnection"]

_log = logging.getLogger("qwire.aio.server")
_WRITELINES_IS_VECTORED = sys.version_info >= (3, 12)
_QUEUE_HIGH = 8   # messages waiting for the handler before the connection stops being read
_QUEUE_LOW = 2


async def _maybe_await(value: Any) -> Any:
    if inspect.isawaitable(value):
        return await value
    return value


class ServerConnection(_Outgoing, asyncio.BufferedProtocol):
    """One client of an asyncio `Server`, as the hooks see it: `id`, `user`, `capability`,
    `peer`, `local`, `state` (a dict for the handler), `await send(value)` (a push),
    `reply(value)` / `reply_error(text)` (deferred answers, oldest first), `defer()` (inside
    on_sync: the request's own DeferredReply), `close()`."""

    def __init__(self, server: Server, conn_id: int) -> None:
        self.server = server
        self.id = conn_id
        self.user = ""
        self.capability = 0
        self.peer = "?"
        self.local = True
        self.state: dict[Any, Any] = {}
        limits = server.limits
        self._transport: asyncio.Transport | None = None
        self._hello = p.HelloReader(limits.max_handshake_size)
        self._hello_buf = bytearray(limits.max_handshake_size)
        self._hello_done: asyncio.Future[p.ClientHello] = asyncio.get_running_loop().create_future()
        self._frames: p.FrameReader | None = None
        self._queue: deque[p.Frame | None] = deque()
        self._ready = asyncio.Event()
        self._paused_reading = False
        self._paused_writing = False
        self._drained: asyncio.Future[None] | None = None
        self._transfer_timer: asyncio.TimerHandle | None = None
        self._slots: deque[_Slot] = deque()
        self._sync_thread: int | None = None  # the thread running on_sync of this connection's request
        self._pending: _Slot | None = None
        self._encoders: dict[str, Encoder] = {}
        self._closed = False
        self._opened = False
        self._task: asyncio.Task[None] | None = None

    # --- what the handler may call ------------------------------------------------------
    @property
    def closed(self) -> bool:
        return self._closed

    async def send(self, value: Any) -> None:
        """Push `value` to the client as an async message; waits while the transport's buffer is
        full (a client that does not read for transfer_timeout seconds is disconnected)."""
        self._check_open()
        self._write(self._outgoing("async", value))
        await self._drain()

    def defer(self) -> DeferredReply:
        """Inside on_sync: defer the request being handled; its own DeferredReply (as qwire.Server's)."""
        return _defer(self)

    def reply(self, value: Any) -> None:
        """Answer the oldest deferred request with `value` (q's -30!(h;0b;value))."""
        self._answer_deferred(self._response_segments(value))

    def reply_error(self, text: str) -> None:
        """Answer the oldest deferred request with the q error `text`."""
        self._answer_deferred(self._outgoing("response", QError(text)))

    def close(self) -> None:
        self._closed = True
        if self._transport is not None:
            self._transport.abort()

    def __repr__(self) -> str:
        return f"<qwire.aio.ServerConnection {self.id} {self.peer} user={self.user!r}>"

    # --- protocol callbacks ---------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]
        sock = transport.get_extra_info("socket")
        if sock is not None:
            address = transport.get_extra_info("peername")
            self.peer = p.describe_peer(sock.family, address)
            self.local = p.is_local_address(sock.family, address)
            if sock.family != socket.AF_UNIX:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._hello.peer = self.peer
        self._task = asyncio.get_running_loop().create_task(self._run())
        self.server._conns[self.id] = self

    def get_buffer(self, sizehint: int) -> memoryview:
        if self._frames is None:
            return memoryview(self._hello_buf)[: max(self._hello.max_size - self._hello.received, 1)]
        return self._frames.buffer()

    def buffer_updated(self, nbytes: int) -> None:
        try:
            if self._frames is None:
                hello = self._hello.feed(memoryview(self._hello_buf)[:nbytes])
                if hello is not None:
                    self._frames = p.FrameReader(self.server.limits.max_message_size, self.peer)
                    self._frames.feed(self._hello.rest)
                    self._hello_done.set_result(hello)
                    self._take_frames()
                return
            self._frames.received(nbytes)
            self._take_frames()
        except IPCError as e:
            _log.info("qwire aio server: closing %s: %s", self.peer, e)
            self._lose()

    def _take_frames(self) -> None:
        frames = self._frames
        assert frames is not None
        while (frame := frames.next_frame()) is not None:
            self._queue.append(frame)
            self._ready.set()
        self._arm_transfer_timer(frames.in_message)
        if len(self._queue) >= _QUEUE_HIGH and not self._paused_reading and self._transport is not None:
            self._paused_reading = True
            self._transport.pause_reading()

    def _arm_transfer_timer(self, in_message: bool) -> None:
        timeout = self.server.limits.transfer_timeout
        if not in_message:
            if self._transfer_timer is not None:
                self._transfer_timer.cancel()
                self._transfer_timer = None
        elif self._transfer_timer is None and timeout is not None:
            self._transfer_timer = asyncio.get_running_loop().call_later(timeout, self._transfer_timed_out)

    def _transfer_timed_out(self) -> None:
        _log.info("qwire aio server: closing %s: a message took over transfer_timeout to arrive", self.peer)
        self._lose()

    def eof_received(self) -> bool:
        self._lose()
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self._closed = True
        if not self._hello_done.done():
            self._hello_done.set_exception(ConnectionClosed("closed during the handshake", self.peer))
            self._hello_done.exception()  # retrieved: no "never retrieved" warning
        self._queue.append(None)
        self._ready.set()
        if self._transfer_timer is not None:
            self._transfer_timer.cancel()
        if self._drained is not None and not self._drained.done():
            self._drained.set_exception(ConnectionClosed("the connection was lost", self.peer))

    def pause_writing(self) -> None:
        self._paused_writing = True

    def resume_writing(self) -> None:
        self._paused_writing = False
        if self._drained is not None and not self._drained.done():
            self._drained.set_result(None)

    def _lose(self) -> None:
        self._closed = True
        if self._transport is not None:
            self._transport.abort()

    # --- the connection's task ------------------------------------------------------------
    async def _run(self) -> None:
        server = self.server
        limits = server.limits
        try:
            try:
                hello = await asyncio.wait_for(asyncio.shield(self._hello_done), limits.handshake_timeout)
            except (asyncio.TimeoutError, ConnectionClosed):
                return
            try:
                accepted = bool(await _maybe_await(server._hooks.check_login(hello.user, hello.password or "")))
            except Exception:
                _log.exception("qwire aio server: check_login failed; refusing %s", self.peer)
                accepted = False
            if not accepted or self._closed:
                return
            self.user = hello.user
            self.capability = p.negotiate(hello.capability, server.capability)
            opts = {"q_compatible": server.q_compatible, "capability": p.encoder_capability(self.capability),
                    "registry": server.registry}
            self._encoders = {t: Encoder(t, **opts) for t in ("response", "async")}
            assert self._transport is not None
            self._transport.write(p.server_reply(hello.capability, server.capability))
            self._opened = True
            await _maybe_await(server._hooks.on_open(self))
            decoder = limits.decoder(server.registry)
            while True:
                frame = await self._next_frame()
                if frame is None:
                    return
                await self._dispatch(frame, decoder)
        except (ConnectionClosed, ProtocolError):
            pass
        except Exception:
            _log.exception("qwire aio server: connection %s failed", self.peer)
        finally:
            self._lose()
            if self._opened:
                try:
                    await _maybe_await(server._hooks.on_close(self))
                except Exception:
                    _log.exception("qwire aio server: on_close failed (%s)", self.peer)
            server._conns.pop(self.id, None)

    async def _next_frame(self) -> p.Frame | None:
        idle = self.server.limits.idle_timeout
        while not self._queue:
            self._ready.clear()
            try:
                await asyncio.wait_for(self._ready.wait(), idle)
            except asyncio.TimeoutError:
                if self._frames is not None and self._frames.in_message:
                    continue  # arriving: the transfer timer governs
                _log.info("qwire aio server: closing idle connection %s", self.peer)
                return None
        frame = self._queue.popleft()
        if self._paused_reading and len(self._queue) <= _QUEUE_LOW and self._transport is not None:
            self._paused_reading = False
            self._transport.resume_reading()
        return frame

    async def _dispatch(self, frame: p.Frame, decoder: Any) -> None:
        hooks = self.server._hooks
        if frame.msg_type == p.SYNC:
            try:
                value = decoder.decode(frame.data)
            except (DecodeError, QError) as e:
                segments = self._outgoing("response", QError(f"badmsg: {e}"))
            else:
                self._sync_thread, self._pending = threading.get_ident(), None
                try:
                    result = await _maybe_await(hooks.on_sync(self, value))
                except Exception as e:
                    result = QError(error_text(e))
                finally:
                    self._sync_thread, token, self._pending = None, self._pending, None
                if token is not None:  # conn.defer() was called: its slot is already in line
                    if result is not DEFERRED and not isinstance(result, DeferredReply):
                        self._fill(token, self._response_segments(result))
                    return
                if result is DEFERRED:
                    self._queue_deferred()
                    return
                segments = self._response_segments(result)
            slot = _Slot()
            slot.segments = segments
            self._slots.append(slot)
            self._flush()
            await self._drain()
        elif frame.msg_type == p.ASYNC:
            try:
                value = decoder.decode(frame.data)
            except QError as e:
                value = e
            except DecodeError as e:
                _log.info("qwire aio server: dropping an undecodable async message from %s: %s", self.peer, e)
                return
            try:
                await _maybe_await(hooks.on_async(self, value))
            except Exception:
                _log.exception("qwire aio server: on_async failed (message from %s)", self.peer)
        else:
            raise ProtocolError("a client sent a response message; the server sends no requests", self.peer)

    # --- sending: _outgoing and _response_segments come from _Outgoing ----------------------

    def _answer_deferred(self, segments: Sequence[Any]) -> None:
        self._check_open()
        slot = next((s for s in self._slots if s.deferred and s.segments is None), None)
        if slot is None:
            raise NoRequestWaiting(f"no deferred request of connection {self.id} ({self.peer}) is waiting for a reply")
        slot.segments = segments
        self._flush()

    def _queue_deferred(self) -> _Slot:
        slot = _Slot()
        slot.deferred = True
        self._slots.append(slot)
        return slot

    def _fill(self, slot: _Slot, segments: Sequence[Any]) -> None:
        self._check_open()
        if slot.segments is not None:
            raise NoRequestWaiting(f"this deferred request of connection {self.id} was already answered")
        slot.segments = segments
        self._flush()

    def _flush(self) -> None:
        while self._slots and self._slots[0].segments is not None:
            self._write(self._slots.popleft().segments)  # type: ignore[arg-type]

    def _write(self, segments: Sequence[Any]) -> None:
        transport = self._transport
        if transport is None or self._closed:
            return
        if _WRITELINES_IS_VECTORED:
            transport.writelines(segments)
        else:
            for seg in segments:
                transport.write(seg)

    async def _drain(self) -> None:
        if not self._paused_writing:
            return
        if self._drained is None or self._drained.done():
            self._drained = asyncio.get_running_loop().create_future()
        try:
            await asyncio.wait_for(asyncio.shield(self._drained), self.server.limits.transfer_timeout)
        except asyncio.TimeoutError:
            self._lose()
            raise ConnectionClosed("the client stopped reading; disconnected after transfer_timeout", self.peer) from None

    def _check_open(self) -> None:
        if self._closed or not self._opened:
            raise ConnectionClosed("the connection is closed" if self._closed else "not open yet", self.peer)


class Server:
    """An asyncio q IPC server, from `await start_server(...)`: `port`, `connections`,
    `close()`, `await wait_closed()`, `await serve_forever()`, `async with`."""

    def __init__(self, handler: Any, *, capability: int, compression: p.Compression, q_compatible: bool,
                 limits: p.Limits, registry: Any) -> None:
        self._hooks = _Hooks(handler)
        self.handler = handler
        self.capability = capability
        self.compression = compression
        self.q_compatible = q_compatible
        self.limits = limits
        self.registry = registry
        self._conns: dict[int, ServerConnection] = {}
        self._ids = itertools.count(1)
        self._server: asyncio.base_events.Server | None = None
        self._unix_file: str | None = None

    def _protocol(self) -> asyncio.BaseProtocol:
        limit = self.limits.max_connections
        if limit is not None and len(self._conns) >= limit:
            _log.warning("qwire aio server: max_connections=%s reached; refusing a client", limit)
            return _Refuse()
        return ServerConnection(self, next(self._ids))

    @property
    def port(self) -> int | None:
        assert self._server is not None
        sock = self._server.sockets[0]
        return None if sock.family == socket.AF_UNIX else int(sock.getsockname()[1])

    @property
    def connections(self) -> list[ServerConnection]:
        return [c for c in self._conns.values() if c._opened and not c._closed]

    def close(self) -> None:
        """Stop listening and disconnect every client (on_close runs for each)."""
        if self._server is not None:
            self._server.close()
        for c in list(self._conns.values()):
            c.close()
        if self._unix_file is not None:
            with contextlib.suppress(OSError):
                os.unlink(self._unix_file)
            self._unix_file = None

    async def wait_closed(self) -> None:
        tasks = [c._task for c in list(self._conns.values()) if c._task is not None]
        if tasks:
            await asyncio.wait(tasks, timeout=10)
        if self._server is not None:
            await self._server.wait_closed()

    async def serve_forever(self) -> None:
        assert self._server is not None
        await self._server.serve_forever()

    async def __aenter__(self) -> Server:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.close()
        await self.wait_closed()


class _Refuse(asyncio.Protocol):
    """A client over max_connections: closed at once, before its hello."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        transport.close()


async def start_server(handler: Any, host: str = "127.0.0.1", port: int = 0, *, unix: str | None = None,
                       ssl: _ssl.SSLContext | None = None, capability: int = p.CAPABILITY,
                       compression: p.Compression = "auto", q_compatible: bool = True,
                       limits: p.Limits | None = None, registry: Any = None, backlog: int = 128) -> Server:
    """Start listening; the arguments are those of `qwire.Server` (without serialize: the event
    loop's single thread already runs one hook at a time)."""
    if not 0 <= capability <= p.CAPABILITY:
        raise ValueError(f"capability must be 0..{p.CAPABILITY}, not {capability}")
    if ssl is not None and not isinstance(ssl, _ssl.SSLContext):
        raise TypeError(f"ssl must be an ssl.SSLContext or None, not {type(ssl).__name__}")
    p.should_compress(0, local=True, capability=capability, mode=compression)  # validates the mode
    server = Server(handler, capability=capability, compression=compression, q_compatible=q_compatible,
                    limits=limits if limits is not None else p.Limits(), registry=registry)
    loop = asyncio.get_running_loop()
    if unix is not None:
        path = os.fspath(unix)
        path = "\0" + path[1:] if path.startswith("@") else path
        server._server = await loop.create_unix_server(server._protocol, path, ssl=ssl, backlog=backlog)
        if not path.startswith("\0"):
            server._unix_file = path
    else:
        server._server = await loop.create_server(server._protocol, host, port, ssl=ssl, backlog=backlog,
                                                  reuse_address=True)
    return server
