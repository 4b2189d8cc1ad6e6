"""A qwire.Server in a process of its own, for clients that must not share the test's process
(PyKX's connect holds the GIL: a server thread in the same process would deadlock it).

    python tests/ipc_server_process.py [--password PW]

prints the port on its first line of stdout and serves until stdin closes. The handler answers a
few q queries sent as char vectors and echoes everything else (module `PeerHandler`).
"""
from __future__ import annotations

import argparse
import sys

import numpy as np

import qwire  # the test process's qwire: ServerProcess puts its directory on PYTHONPATH
from qwire.ipc import Handler

#: what the "big" query returns: 14 million longs, a 112 MB response
BIG_COUNT = 14_000_000


class PeerHandler(Handler):
    """q-like answers to char-vector queries; ("echo"; x) returns x; anything else is echoed."""

    def __init__(self, password: str | None) -> None:
        self.password = password
        self.asyncs: list[object] = []

    def check_login(self, user: str, password: str) -> bool:
        return self.password is None or password == self.password

    def on_sync(self, conn, value):
        if isinstance(value, bytes):
            query = value.decode()
            if query == "1+1":
                return 2
            if query == "boom":
                raise qwire.QError("boom")
            if query == "fail":
                raise ValueError("a Python exception")
            if query == "asyncs":
                return list(self.asyncs)
            if query == "big":
                return np.arange(BIG_COUNT, dtype=np.int64)
            if query == "table":
                return qwire.Table({"sym": np.array(["a", "b", "c"], dtype=object),
                                    "px": np.array([1.5, 2.5, 3.5]), "qty": np.arange(3, dtype=np.int64)})
            if query == "push":  # an async message before the response, as a tickerplant would
                conn.send(["upd", "trade", 1])
                return 7
        if isinstance(value, list) and len(value) == 2 and value[0] == b"echo":
            return value[1]
        if isinstance(value, list) and len(value) == 2 and value[0] == b"sum":
            return int(np.asarray(value[1]).sum())
        return value

    def on_async(self, conn, value):
        self.asyncs.append(value)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--password", default=None)
    args = parser.parse_args()
    with qwire.Server(PeerHandler(args.password)) as server:
        print(server.port, flush=True)
        sys.stdin.read()  # until the parent closes our stdin


if __name__ == "__main__":
    main()
