"""`qwire bench --workload ipc`: connections over loopback (issue 13 item 7).

One qwire server, in a process of its own, answers three sync queries: "small" (a six-field
dict), "dict" (a 24 MB dict of three float/int arrays) and "table" (a 1M-row trade table, 29 MB).
Its large responses are encoded once (the server sends a pre-encoded Message), so every client
receives the same bytes and the clients are what is compared: qwire's, PyKX's, kola's and aiokdb's.
Two references move the same bytes between two processes: `multiprocessing.connection` with
pickle (protocol 5) and a raw socket that sends the qwire message's bytes and receives them into a
preallocated buffer (the limit for any client). "raw->qwire" is that raw client against the qwire
server: the server's own cost, against the raw server's.

Each call is timed alone, round-robin across contenders, for a time budget per workload;
reported: the median, MB/s and messages/s from it, and the ratio to the raw socket. A client's
call ends when it has the decoded value in its own objects (PyKX: a pykx object, kola: polars,
aiokdb: its KObj), which is what each hands its user.
"""
from __future__ import annotations

import asyncio
import multiprocessing
import os
import pickle
import socket
import statistics
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = ["IPC_WORKLOADS", "CLIENTS", "Servers", "run", "format_results", "ipc_values"]

IPC_WORKLOADS = ("small", "dict", "table")
CLIENTS = ("qwire", "pykx", "kola", "aiokdb", "mp-pickle", "raw-socket", "raw->qwire")


def ipc_values(scale: float = 1.0) -> dict[str, Any]:
    """What each query returns: "small", "dict" (3 arrays of 1M items: 24 MB at scale 1) and
    "table" (the codec benchmark's 1M-row trade table, as a qwire.Table)."""
    from .. import Table
    from .workloads import small_dict, trade_table

    n = max(1, int(1_000_000 * scale))
    rng = np.random.default_rng(2026)
    df = trade_table(scale)
    table = Table({"id": df["id"].to_numpy(), "price": df["price"].to_numpy(),
                   "sym": np.array(df["sym"].tolist(), dtype=object), "time": df["time"].to_numpy()})
    return {
        "small": small_dict(scale),
        "dict": {"bid": rng.standard_normal(n), "ask": rng.standard_normal(n), "size": rng.integers(0, 1000, n)},
        "table": table,
    }


# --- the servers (each in its own process) ------------------------------------------------------
def _qwire_server(ready: Any, scale: float) -> None:
    import qwire

    cached = {name: qwire.dumps(v, msg_type="response", q_compatible=True) for name, v in ipc_values(scale).items()}

    def on_sync(conn: Any, value: Any) -> Any:
        name = value.decode() if isinstance(value, bytes) else value
        return cached.get(name, value)

    with qwire.Server(on_sync) as server:
        ready.send(server.port)
        ready.recv()  # until the parent says stop


def _raw_server(ready: Any, scale: float) -> None:
    """Answers each request (a qwire sync message) with the bytes of the qwire response."""
    import qwire

    payloads = {qwire.dumps(name.encode(), msg_type="sync").copy(): qwire.dumps(
        v, msg_type="response", q_compatible=True).copy() for name, v in ipc_values(scale).items()}
    listener = socket.create_server(("127.0.0.1", 0))
    ready.send(listener.getsockname()[1])
    listener.settimeout(60)
    try:
        conn, _ = listener.accept()
    except OSError:
        return
    conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    buf = bytearray(1 << 16)  # requests are a few bytes: one recv each, as lean as a server gets
    view = memoryview(buf)
    with conn:
        have = 0
        while True:
            n = conn.recv_into(view[have:])
            if not n:
                return
            have += n
            if have < 8:
                continue
            total = struct.unpack_from("<I", buf, 4)[0]
            if have < total:
                continue
            conn.sendall(payloads[bytes(view[:total])])
            have = 0  # the client waits for each response: nothing follows the request


def _mp_server(ready: Any, scale: float) -> None:
    from multiprocessing.connection import Listener

    values = ipc_values(scale)
    values["table"] = dict(values["table"].items()) if hasattr(values["table"], "items") else values["table"]
    with Listener(("127.0.0.1", 0)) as listener:
        ready.send(listener.address[1])
        with listener.accept() as conn:
            while True:
                try:
                    name = conn.recv()
                except EOFError:
                    return
                conn.send_bytes(pickle.dumps(values[name], protocol=5))


@dataclass
class Servers:
    """The three server processes (spawned: nothing inherited from this process)."""

    scale: float = 1.0
    ports: dict[str, int] = field(default_factory=dict)
    _procs: list[Any] = field(default_factory=list)
    _pipes: list[Any] = field(default_factory=list)

    def __enter__(self) -> Servers:
        ctx = multiprocessing.get_context("spawn")
        for name, target in (("qwire", _qwire_server), ("raw", _raw_server), ("mp", _mp_server)):
            parent, child = ctx.Pipe()
            proc = ctx.Process(target=target, args=(child, self.scale), daemon=True)
            proc.start()
            if not parent.poll(120):
                raise RuntimeError(f"the {name} benchmark server did not start")
            self.ports[name] = parent.recv()
            self._procs.append(proc)
            self._pipes.append(parent)
        return self

    def __exit__(self, *exc: object) -> None:
        for pipe in self._pipes:
            try:
                pipe.send("stop")
            except OSError:
                pass
        for proc in self._procs:
            proc.join(10)
            if proc.is_alive():
                proc.terminate()
                proc.join(5)


# --- the clients --------------------------------------------------------------------------------
class Client:
    """One contender: call(name) fetches a workload's value; close() ends the connection."""

    def __init__(self, call: Callable[[str], Any], close: Callable[[], object]) -> None:
        self.call = call
        self.close = close


def open_client(kind: str, servers: Servers) -> Client:
    host = "127.0.0.1"
    if kind == "qwire":
        import qwire

        q = qwire.connect(host, servers.ports["qwire"])
        return Client(lambda name: q(name), q.close)
    if kind == "pykx":
        os.environ.setdefault("PYKX_UNLICENSED", "true")
        os.environ.setdefault("PYKX_IGNORE_QHOME", "true")
        import pykx as kx

        k = kx.SyncQConnection(host, servers.ports["qwire"], no_ctx=True)
        return Client(lambda name: k(name), k.close)
    if kind == "kola":
        import kola

        kq = kola.Q(host, servers.ports["qwire"], "bench", "")
        kq.connect()
        return Client(lambda name: kq.sync(name), kq.disconnect)
    if kind == "aiokdb":
        from aiokdb import cv
        from aiokdb.client import open_qipc_connection

        loop = asyncio.new_event_loop()
        _, writer = loop.run_until_complete(open_qipc_connection(host=host, port=servers.ports["qwire"]))

        def close() -> None:
            writer.writer.close()
            loop.close()

        return Client(lambda name: loop.run_until_complete(writer.sync_req(cv(name))), close)
    if kind == "mp-pickle":
        from multiprocessing.connection import Client as MPClient

        c = MPClient((host, servers.ports["mp"]))

        def mp_call(name: str) -> Any:
            c.send(name)
            return pickle.loads(c.recv_bytes())

        return Client(mp_call, c.close)
    if kind in ("raw-socket", "raw->qwire"):
        import qwire

        values = ipc_values(servers.scale)
        requests = {n: qwire.dumps(n.encode(), msg_type="sync").copy() for n in values}
        sizes = {n: qwire.dumps(v, msg_type="response", q_compatible=True).nbytes for n, v in values.items()}
        buffers = {n: bytearray(s) for n, s in sizes.items()}
        sock = socket.create_connection((host, servers.ports["raw" if kind == "raw-socket" else "qwire"]))
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if kind == "raw->qwire":
            sock.sendall(b"bench:\x06\x00")
            if sock.recv(1) != b"\x06":
                raise ConnectionError("the qwire server refused the raw client's hello")

        def raw_call(name: str) -> Any:
            sock.sendall(requests[name])
            view = memoryview(buffers[name])
            got, total = 0, sizes[name]
            while got < total:
                got += sock.recv_into(view[got:])
            return view

        return Client(raw_call, sock.close)
    raise ValueError(f"unknown IPC client {kind!r}")


# --- timing ---------------------------------------------------------------------------------------
@dataclass
class Result:
    workload: str
    client: str
    median_s: float | None
    calls: int
    nbytes: int
    note: str = ""

    @property
    def mb_per_s(self) -> float | None:
        return None if not self.median_s else self.nbytes / self.median_s / 1e6

    @property
    def messages_per_s(self) -> float | None:
        return None if not self.median_s else 1.0 / self.median_s


def run(clients: tuple[str, ...] = CLIENTS, workloads: tuple[str, ...] = IPC_WORKLOADS, scale: float = 1.0,
        budget_s: float = 6.0, max_calls: int = 2000, progress: Callable[[str], None] | None = None) -> list[Result]:
    """Time every client on every workload against the same servers; medians per call."""
    import qwire

    sizes = {n: qwire.dumps(v, msg_type="response", q_compatible=True).nbytes for n, v in ipc_values(scale).items()}
    results: list[Result] = []
    with Servers(scale) as servers:
        opened: dict[str, Client] = {}
        notes: dict[str, str] = {}
        for kind in clients:
            try:
                opened[kind] = open_client(kind, servers)
            except Exception as e:  # not installed, or cannot connect: reported, not fatal
                notes[kind] = f"{type(e).__name__}: {e}"
        try:
            for workload in workloads:
                if progress:
                    progress(f"ipc {workload}")
                times: dict[str, list[float]] = {k: [] for k in opened}
                for k, c in opened.items():  # warm-up, and a check that it works
                    try:
                        c.call(workload)
                    except Exception as e:
                        notes[k + workload] = f"{type(e).__name__}: {str(e)[:80]}"
                live = [k for k in opened if k + workload not in notes]
                end = time.perf_counter() + budget_s
                rounds = 0
                while live and rounds < max_calls and (time.perf_counter() < end or rounds < 5):
                    for k in live:  # round-robin: a machine that slows down slows everyone alike
                        t0 = time.perf_counter()
                        opened[k].call(workload)
                        times[k].append(time.perf_counter() - t0)
                    rounds += 1
                for k in clients:
                    if k in times and times[k]:
                        results.append(Result(workload, k, statistics.median(times[k]), len(times[k]), sizes[workload]))
                    else:
                        results.append(Result(workload, k, None, 0, sizes[workload],
                                              notes.get(k + workload) or notes.get(k, "not run")))
        finally:
            for c in opened.values():
                try:
                    c.close()
                except Exception:
                    pass
    return results


def _fmt_time(s: float) -> str:
    if s < 1e-3:
        return f"{s * 1e6:.1f} us"
    if s < 1:
        return f"{s * 1e3:.2f} ms"
    return f"{s:.2f} s"


def format_results(results: list[Result]) -> str:
    """A table per workload: median, MB/s, messages/s, and ratios (time / raw socket's, time /
    qwire's)."""
    lines = []
    for workload in dict.fromkeys(r.workload for r in results):
        rows = [r for r in results if r.workload == workload]
        by = {r.client: r for r in rows}
        raw = by.get("raw-socket")
        ours = by.get("qwire")
        size = rows[0].nbytes
        lines.append(f"\nipc {workload} ({size:,} bytes per response)")
        lines.append(f"  {'client':<12}{'median':>12}{'MB/s':>10}{'msg/s':>10}{'x raw':>9}{'x qwire':>9}  calls")
        for r in rows:
            if r.median_s is None:
                lines.append(f"  {r.client:<12}{'-':>12}  ({r.note})")
                continue
            x_raw = f"{r.median_s / raw.median_s:.2f}" if raw and raw.median_s else "-"
            x_q = f"{r.median_s / ours.median_s:.2f}" if ours and ours.median_s else "-"
            lines.append(f"  {r.client:<12}{_fmt_time(r.median_s):>12}{r.mb_per_s:>10.0f}{r.messages_per_s:>10.0f}"
                         f"{x_raw:>9}{x_q:>9}  {r.calls}")
    return "\n".join(lines).lstrip("\n")
