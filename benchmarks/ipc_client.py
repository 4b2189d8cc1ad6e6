"""qwire's client against a raw socket moving the same bytes, over loopback (issue 13, item 7).

    python benchmarks/ipc_client.py [--rounds N]

A server process (this file, `--serve`) does the q handshake, then echoes every message back as
a response: header byte 1 set to 2, the bytes unchanged, no decoding, so the server costs both
contestants the same. Measured in one run, medians of interleaved rounds:

* small: one sync round trip of a small request (`conn.sync([b"f", 1, 2.5])`: encode, send,
  receive, decode) against a raw socket ping-pong of exactly those bytes (sendall, then recv_into
  a preallocated buffer until the response is complete);
* large: the round trip of a 24 MB dict of arrays (sent, echoed, decoded into views), in MB/s
  of message bytes moved both ways, against a raw socket moving the same bytes;
* response: a 24 MB dict of three arrays fetched from a `qwire.Server` (in a process of its own,
  answering with a pre-encoded message), against a raw socket that sends the same request to the
  same server and receives the response into a preallocated buffer.
"""
from __future__ import annotations

import argparse
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np


def serve(port_file: str) -> None:
    import threading

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(4)
    Path(port_file).write_text(str(listener.getsockname()[1]))
    while True:
        conn, _ = listener.accept()
        threading.Thread(target=_echo, args=(conn,), daemon=True).start()


def _echo(conn: socket.socket) -> None:
    """One connection of the echo server (a thread each; the benchmark drives one at a time)."""
    from qwire.ipc import _protocol as p

    conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    hello = p.HelloReader()
    result = None
    while result is None:
        chunk = conn.recv(4096)
        if not chunk:
            conn.close()
            return
        result = hello.feed(chunk)
    conn.sendall(p.server_reply(result.capability))
    frames = p.FrameReader(max_message_size=None)
    if hello.rest:
        frames.feed(hello.rest)
    try:
        while True:
            frame = frames.next_frame()
            if frame is None:
                frames.received(conn.recv_into(frames.buffer()))
                continue
            header = bytearray(frame.data[:8])
            header[1] = 2  # the same bytes, as a response
            p.send_segments(conn, [header, frame.data[8:]])
    except ConnectionError:
        conn.close()


def _qwire_server(pipe: object) -> None:
    """A qwire.Server answering every request with one pre-encoded 24 MB response."""
    import qwire

    rng = np.random.default_rng(1)
    n = 1_000_000
    cached = qwire.dumps({"bid": rng.standard_normal(n), "ask": rng.standard_normal(n),
                          "size": rng.integers(0, 1000, n)}, msg_type="response", q_compatible=True)
    with qwire.Server(lambda conn, value: cached) as server:
        pipe.send((server.port, cached.nbytes))  # type: ignore[attr-defined]
        pipe.recv()  # type: ignore[attr-defined]


def _response_rows(rounds: int) -> dict[str, list[float]]:
    import multiprocessing

    import qwire

    ctx = multiprocessing.get_context("spawn")
    ours, theirs = ctx.Pipe()
    proc = ctx.Process(target=_qwire_server, args=(theirs,))
    proc.start()
    try:
        port, size = ours.recv()
        conn = qwire.connect("127.0.0.1", port)
        raw = _raw_connect(port)
        request = qwire.dumps(b"dict", msg_type="sync").copy()
        into = memoryview(bytearray(size))
        rows: dict[str, list[float]] = {"qwire response": [], "raw response": []}
        for _ in range(rounds):
            t = time.perf_counter()
            conn("dict")
            rows["qwire response"].append(time.perf_counter() - t)
            t = time.perf_counter()
            _raw_round_trip(raw, request, into)
            rows["raw response"].append(time.perf_counter() - t)
        conn.close()
        raw.close()
        rows["size"] = [float(size)]
        return rows
    finally:
        ours.send(None)
        proc.join(10)


def _raw_connect(port: int) -> socket.socket:
    s = socket.create_connection(("127.0.0.1", port))
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    s.sendall(b"bench:\x06\x00")
    assert s.recv(1) == b"\x06"
    return s


def _raw_round_trip(s: socket.socket, out: bytes | memoryview, into: memoryview) -> None:
    s.sendall(out)
    got, n = 0, len(into)
    while got < n:
        k = s.recv_into(into[got:])
        if not k:
            raise ConnectionError("server closed")
        got += k


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--serve")
    ap.add_argument("--rounds", type=int, default=15)
    args = ap.parse_args()
    if args.serve:
        serve(args.serve)
        return

    import tempfile

    import qwire

    port_file = Path(tempfile.mkdtemp()) / "port"
    server = subprocess.Popen([sys.executable, __file__, "--serve", str(port_file)])
    try:
        deadline = time.monotonic() + 20
        while not port_file.exists() or not port_file.read_text():
            if time.monotonic() > deadline:
                raise RuntimeError("server did not start")
            time.sleep(0.05)
        port = int(port_file.read_text())
        conn = qwire.connect("127.0.0.1", port, user="bench", password=None)
        raw = _raw_connect(port)

        small = [b"f", 1, 2.5]
        small_bytes = qwire.dumps(small, msg_type="sync", q_compatible=True).copy()
        small_into = memoryview(bytearray(len(small_bytes)))
        n_small = 2000
        rng = np.random.default_rng(0)
        big = {f"c{i}": rng.standard_normal(375_000) for i in range(8)}  # 8 x 3 MB
        big_msg = qwire.dumps(big, msg_type="sync", q_compatible=True)
        big_bytes = big_msg.copy()
        big_into = memoryview(bytearray(len(big_bytes)))
        n_big = 5

        for _ in range(200):  # warm up both paths
            conn.sync(small)
            _raw_round_trip(raw, small_bytes, small_into)
        assert conn.sync(small) == small

        rows: dict[str, list[float]] = {"qwire small": [], "raw small": [], "qwire large": [], "raw large": []}
        for _ in range(args.rounds):
            t = time.perf_counter()
            for _ in range(n_small):
                conn.sync(small)
            rows["qwire small"].append((time.perf_counter() - t) / n_small)
            t = time.perf_counter()
            for _ in range(n_small):
                _raw_round_trip(raw, small_bytes, small_into)
            rows["raw small"].append((time.perf_counter() - t) / n_small)
            t = time.perf_counter()
            for _ in range(n_big):
                back = conn.sync(big)
            rows["qwire large"].append((time.perf_counter() - t) / n_big)
            t = time.perf_counter()
            for _ in range(n_big):
                _raw_round_trip(raw, big_bytes, big_into)
            rows["raw large"].append((time.perf_counter() - t) / n_big)
        assert all(np.array_equal(back[k], big[k]) for k in big)

        med = {k: statistics.median(v) for k, v in rows.items()}
        mb = 2 * len(big_bytes) / 1e6
        print(f"small sync round trip ({len(small_bytes)} B request): qwire {med['qwire small'] * 1e6:.1f} us, "
              f"raw socket {med['raw small'] * 1e6:.1f} us, ratio {med['qwire small'] / med['raw small']:.2f}x")
        print(f"24 MB dict of 8 arrays, round trip ({len(big_bytes) / 1e6:.1f} MB each way): "
              f"qwire {mb / med['qwire large']:.0f} MB/s, raw socket {mb / med['raw large']:.0f} MB/s, "
              f"{med['raw large'] / med['qwire large'] * 100:.0f}% of raw")
        conn.close()
        raw.close()
    finally:
        server.kill()
        server.wait()
    rows = _response_rows(args.rounds)
    med = {k: statistics.median(v) for k, v in rows.items()}
    mb = med["size"] / 1e6
    print(f"24 MB response from qwire.Server ({mb:.1f} MB): qwire {mb / med['qwire response']:.0f} MB/s, "
          f"raw socket {mb / med['raw response']:.0f} MB/s, "
          f"{med['raw response'] / med['qwire response'] * 100:.0f}% of raw")


if __name__ == "__main__":
    main()
