"""A minimal tickerplant on qwire.Server: publish/subscribe as kdb+'s .u.sub / .u.upd.

Subscribers (q, PyKX, qwire) call `.u.sub[table; syms]` as a sync request; publishers send
`(".u.upd"; table; data)` as async messages; every update is pushed to the table's subscribers as
the async message `(`upd; table; data)`, which is what a q subscriber's `upd` function receives.

    python examples/tickerplant.py 5010        # then, in q:  h:hopen 5010; h(".u.sub";`trade;`)

The server evaluates nothing: the handler recognises the two message shapes and refuses the rest.
"""
from __future__ import annotations

import sys
import threading

import qwire
from qwire.ipc import Handler


class Tickerplant(Handler):
    """Subscriptions per table; a subscriber's symbol list filters nothing here (kept simple)."""

    def __init__(self) -> None:
        self.subscribers: dict[str, set[qwire.ipc.ServerConnection]] = {}
        self.lock = threading.Lock()

    def on_sync(self, conn, value):
        if isinstance(value, list) and value and value[0] in (b".u.sub", ".u.sub"):
            table = _name(value[1])
            with self.lock:
                self.subscribers.setdefault(table, set()).add(conn)
            return [table, []]  # as .u.sub: the table name and its (empty) schema
        raise qwire.QError("tickerplant: only .u.sub is answered")

    def on_async(self, conn, value):
        if isinstance(value, list) and len(value) == 3 and value[0] in (b".u.upd", ".u.upd"):
            self.publish(_name(value[1]), value[2])

    def publish(self, table: str, data) -> None:
        with self.lock:
            subscribers = list(self.subscribers.get(table, ()))
        for sub in subscribers:
            try:
                sub.send(["upd", table, data])
            except qwire.ConnectionClosed:
                self.on_close(sub)

    def on_close(self, conn):
        with self.lock:
            for subs in self.subscribers.values():
                subs.discard(conn)


def _name(x) -> str:
    return x.decode() if isinstance(x, bytes) else str(x)


def main() -> None:
    port = int(sys.argv[1]) if len(sys.argv) > 1 else 5010
    with qwire.Server(Tickerplant(), port=port) as server:
        print(f"tickerplant on port {server.port}; Ctrl-C to stop")
        try:
            threading.Event().wait()
        except KeyboardInterrupt:
            pass


if __name__ == "__main__":
    main()
