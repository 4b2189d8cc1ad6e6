"""asyncio connections speaking kdb+'s IPC protocol (docs/IPC.md): `await qwire.aio.connect(...)`
with the semantics of `qwire.connect`, built on the same sans-IO protocol (qwire.ipc._protocol)."""
from __future__ import annotations

from ._client import Connection, connect

__all__ = ["connect", "Connection"]

# The server (qwire.aio._server, written separately): start_server.
