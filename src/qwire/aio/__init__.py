"""asyncio connections speaking kdb+'s IPC protocol (docs/IPC.md): `await qwire.aio.connect(...)`
with the semantics of `qwire.connect`, built on the same sans-IO protocol (qwire.ipc._protocol)."""
from __future__ import annotations

from ._client import Connection, connect
from ._server import Server, ServerConnection, start_server

__all__ = ["connect", "Connection", "start_server", "Server", "ServerConnection"]
