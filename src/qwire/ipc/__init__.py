"""Connections speaking kdb+'s IPC protocol: a blocking client (and server) over TCP, TLS and
Unix sockets (docs/IPC.md). `qwire.aio` has the asyncio versions; both build on the sans-IO
protocol in `qwire.ipc._protocol` (handshake, framing, limits, compression rule)."""
from __future__ import annotations

from ..errors import ReconnectFailed
from ._protocol import CAPABILITY, Limits, kx_unix_path
from .client import Connection, connect
from .server import DEFERRED, DeferredReply, Handler, Server, ServerConnection

__all__ = ["CAPABILITY", "Limits", "ReconnectFailed", "kx_unix_path", "connect", "Connection",
           "Server", "ServerConnection", "Handler", "DEFERRED", "DeferredReply"]
