"""Processes for tests/test_ipc_compression.py, run inside network namespaces with
`ip netns exec`: `server HOST PORT N` serves N connections, recording whether each request arrived
compressed, and answers with the request's value sent back by kdb+'s compression rule; `client
HOST PORT` connects with qwire and prints what it saw as JSON."""
from __future__ import annotations

import json
import socket
import sys

import numpy as np

import qwire
from qwire.ipc import _protocol as p


def _exact(conn: socket.socket, n: int) -> bytes:
    out = b""
    while len(out) < n:
        chunk = conn.recv(n - len(out))
        if not chunk:
            raise ConnectionError("client went away")
        out += chunk
    return out


def serve(host: str, port: int, connections: int) -> None:
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind((host, port))
    listener.listen(4)
    listener.settimeout(30)
    print("ready", flush=True)
    for _ in range(connections):
        conn, address = listener.accept()
        conn.settimeout(30)
        with conn:
            reader = p.HelloReader()
            hello = None
            while hello is None:
                hello = reader.feed(conn.recv(1))
            conn.sendall(p.server_reply(hello.capability))
            local = p.is_local_address(conn.family, address)
            try:
                while True:
                    header = _exact(conn, 8)
                    total = p.read_header_length(header)
                    message = header + _exact(conn, total - 8)
                    value = qwire.loads(message)
                    report = {"compressed": message[2] != 0, "wire_bytes": total}
                    reply = qwire.dumps([json.dumps(report).encode(), value], msg_type="response",
                                        q_compatible=True)
                    p.send_segments(conn, p.prepare_outgoing(reply, local=local, capability=hello.capability))
            except ConnectionError:
                pass


def client(host: str, port: int) -> None:
    zeros = np.zeros(100_000)
    out = {}
    with qwire.connect(host, port) as q:
        out["local"] = q.local
        for name, value in (("large", zeros), ("small", np.zeros(200))):
            report, back = q.sync(value)
            out[name] = json.loads(report)
            out[name]["intact"] = bool(np.array_equal(back, value))
    with qwire.connect(host, port, compression=False) as q:
        report, back = q.sync(zeros)
        out["off"] = json.loads(report)
    print(json.dumps(out), flush=True)


if __name__ == "__main__":
    if sys.argv[1] == "server":
        serve(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))
    else:
        client(sys.argv[2], int(sys.argv[3]))
