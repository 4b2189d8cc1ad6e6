"""Reconnection (`reconnect=`) of qwire's clients against real servers that the test kills
(SIGKILL) and restarts on the same port: a qwire Server and aiokdb's server, each in a process of
its own. The asyncio client is the subject; the backoff schedule, the meaning of the option and
the error when it gives up are shared with the blocking client (`qwire.ipc._protocol`
`ReconnectRound`), so the blocking client is checked against the same schedule here too.

Every wait is bounded: a client that hangs fails the test at its timeout.

Run as a script, this file is the server: `python test_aio_reconnect.py qwire|aiokdb PORT [PW]`
prints the port once listening and serves until stdin closes (or it is killed).
"""
from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))


# --- the servers (run in their own process) ---------------------------------------------------
def _serve_qwire(port: int, password: str | None) -> None:
    import qwire
    from qwire.ipc import Handler

    slows = []

    class Peer(Handler):
        def check_login(self, user, pw):
            return password is None or pw == password

        def on_sync(self, conn, value):
            if value == b"1+1":
                return 2
            if value == b"pid":
                return os.getpid()
            if value == b"slow":   # never answered: the test kills the server meanwhile
                slows.append(1)
                time.sleep(120)
            if value == b"slows":  # how many "slow" requests this process received
                return len(slows)
            if value == b"push":   # three async messages, then the answer
                for i in range(3):
                    conn.send(["upd", i])
                return 3
            return value

    with qwire.Server(Peer(), "127.0.0.1", port, serialize=False) as server:
        print(server.port, flush=True)
        sys.stdin.read()


def _serve_aiokdb(port: int, password: str | None) -> None:
    from functools import partial

    from aiokdb import MessageType, TypeEnum, kj
    from aiokdb import server as aserver

    slows = []

    class Context(aserver.ServerContext):
        async def on_sync_request(self, cmd, dotzw):
            if cmd.t == TypeEnum.KC:
                text = cmd.aS()
                if text == "1+1":
                    return kj(2)
                if text == "pid":
                    return kj(os.getpid())
                if text == "slow":
                    slows.append(1)
                    await asyncio.sleep(120)
                if text == "slows":
                    return kj(len(slows))
                if text == "push":
                    for i in range(3):
                        dotzw.write(kj(i), MessageType.ASYNC)
                    return kj(3)
            return cmd

    async def main() -> None:
        server = await asyncio.start_server(partial(aserver.handle_connection, Context(password)),
                                            "127.0.0.1", port, reuse_address=True)
        print(server.sockets[0].getsockname()[1], flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)

    asyncio.run(main())


if __name__ == "__main__":
    _kind, _port = sys.argv[1], int(sys.argv[2])
    _pw = sys.argv[3] if len(sys.argv) > 3 else None
    (_serve_qwire if _kind == "qwire" else _serve_aiokdb)(_port, _pw)
    sys.exit(0)


# --- the tests --------------------------------------------------------------------------------
import numpy as np  # noqa: E402
import pytest  # noqa: E402

import qwire  # noqa: E402
import qwire.aio  # noqa: E402
from qwire.ipc import ReconnectFailed  # noqa: E402
from qwire.ipc import _protocol as p  # noqa: E402

QWIRE_PARENT = os.path.dirname(os.path.dirname(os.path.abspath(qwire.__file__)))

KINDS = ["qwire", "aiokdb"]


class ServerProcess:
    """A server process on a fixed port, killed with SIGKILL (as a crash or `kill -9` would)."""

    def __init__(self, kind: str, port: int = 0, password: str | None = None) -> None:
        if kind == "aiokdb":
            pytest.importorskip("aiokdb")  # installed in CI (the test extra); never skipped there
        self.kind = kind
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([QWIRE_PARENT, HERE])}
        args = [sys.executable, os.path.abspath(__file__), kind, str(port)] + ([password] if password else [])
        self.proc = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env)
        line = self.proc.stdout.readline()  # the process prints its port, or exits
        if not line.strip():
            self.kill()
            raise RuntimeError(f"the {kind} server process did not start")
        self.port = int(line)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(20)
        for f in (self.proc.stdin, self.proc.stdout):
            with contextlib.suppress(OSError):
                f.close()


@contextlib.contextmanager
def server_process(kind: str, port: int = 0, password: str | None = None):
    s = ServerProcess(kind, port, password)
    try:
        yield s
    finally:
        s.kill()


def restart(server: ServerProcess, password: str | None = None) -> ServerProcess:
    """Kill the server and start a new one of its kind on the same port."""
    server.kill()
    for _ in range(100):  # the port is free once the process is gone; bounded, in case it is not yet
        try:
            return ServerProcess(server.kind, server.port, password)
        except RuntimeError:
            time.sleep(0.05)
    raise RuntimeError("could not restart the server on its port")


def free_port() -> int:
    """A TCP port on 127.0.0.1 nobody listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run(coro, timeout: float = 60):
    return asyncio.run(asyncio.wait_for(coro, timeout))


async def until_closed(q, timeout: float = 10) -> None:
    """The event loop has seen the connection go (bounded)."""
    deadline = time.monotonic() + timeout
    while not q.closed:
        assert time.monotonic() < deadline, "the client never saw the connection go"
        await asyncio.sleep(0.01)


def max_pauses(attempts: int) -> float:
    """The most a round of `attempts` attempts can sleep: the schedule's nominal pauses."""
    return sum(min(p.RECONNECT_FIRST_DELAY * 2 ** (n - 2), p.RECONNECT_MAX_DELAY) for n in range(2, attempts + 1))


def record_aio_attempts(monkeypatch) -> list:
    """From now on, the time of every connection attempt the asyncio client makes."""
    attempts = []
    real_open = qwire.aio._client._open

    async def counting_open(*args, **kwargs):
        attempts.append(time.monotonic())
        return await real_open(*args, **kwargs)

    monkeypatch.setattr(qwire.aio._client, "_open", counting_open)
    return attempts


def record_blocking_attempts(monkeypatch) -> list:
    """From now on, the time of every connection attempt the blocking client makes."""
    import qwire.ipc.client as client

    attempts = []
    real = client.open_socket
    monkeypatch.setattr(client, "open_socket", lambda t: (attempts.append(time.monotonic()), real(t))[1])
    return attempts


# --- the shared schedule and option -----------------------------------------------------------
def test_backoff_is_bounded_and_grows():
    """0 before the first attempt; then 50 ms doubling, capped at RECONNECT_MAX_DELAY, jittered to
    between half and all of the nominal pause; never more than the cap, however many attempts."""
    assert p.reconnect_delay(1) == 0
    for attempt in range(2, 2000):
        nominal = min(0.05 * 2 ** min(attempt - 2, 64), 5.0)
        low, high = p.reconnect_delay(attempt, lambda: 0.0), p.reconnect_delay(attempt, lambda: 1.0)
        assert low == pytest.approx(nominal / 2) and high == pytest.approx(nominal)
        assert 0 < p.reconnect_delay(attempt) <= p.RECONNECT_MAX_DELAY
    assert [p.reconnect_delay(n, lambda: 1.0) for n in range(1, 5)] == [0, 0.05, 0.1, 0.2]
    assert p.reconnect_delay(10**6, lambda: 1.0) == p.RECONNECT_MAX_DELAY == 5.0
    assert list(p.ReconnectRound(4, None, lambda: 1.0)) == [0, 0.05, 0.1, 0.2]


def test_reconnect_option_means_the_same_for_both_clients():
    """reconnect=: False/0 off, True 5 attempts, N attempts; anything else is refused, by both
    clients (one parser, `_protocol.reconnect_attempts`)."""
    assert p.reconnect_attempts(False) == p.reconnect_attempts(0) == p.reconnect_attempts(None) == 0
    assert p.reconnect_attempts(True) == p.DEFAULT_RECONNECT_ATTEMPTS == 5
    assert p.reconnect_attempts(3) == 3
    with pytest.raises(ValueError):
        p.reconnect_attempts(-1)
    with pytest.raises(TypeError):
        p.reconnect_attempts("3")
    port = free_port()
    with pytest.raises(ValueError):
        qwire.connect("127.0.0.1", port, reconnect=-1)

    async def aio():
        with pytest.raises(ValueError):
            await qwire.aio.connect("127.0.0.1", port, reconnect=-1)
    run(aio())


def test_reconnect_failed_is_a_connection_error():
    e = p.ReconnectRound(3, "h:1")
    e.failed(qwire.ConnectionClosed("cannot connect: refused", "h:1"))
    err = e.give_up()
    assert isinstance(err, ReconnectFailed) and isinstance(err, qwire.ConnectionClosed)
    assert ReconnectFailed is qwire.ReconnectFailed is qwire.errors.ReconnectFailed
    assert isinstance(err, ConnectionError) and isinstance(err, qwire.IPCError)
    assert err.attempts == 3 and isinstance(err.__cause__, qwire.ConnectionClosed)
    assert "3 attempts to reconnect failed" in str(err) and "refused" in str(err)
    with pytest.raises(qwire.AuthenticationError):  # refused credentials: no second attempt
        e.failed(qwire.AuthenticationError("access"))
    import pickle
    back = pickle.loads(pickle.dumps(err))
    assert type(back) is ReconnectFailed and back.attempts == 3 and back.peer == "h:1"


# --- the asyncio client against servers killed and restarted ----------------------------------
@pytest.mark.slow
@pytest.mark.parametrize("kind", KINDS)
def test_reconnects_after_the_server_is_killed_and_restarted(kind):
    """Three times over: kill the server, restart it on the same port; the next request
    reconnects and is answered by the new process."""
    server = ServerProcess(kind)
    try:
        async def main():
            nonlocal server
            async with await qwire.aio.connect("127.0.0.1", server.port, reconnect=20, timeout=5) as q:
                pid = await q("pid")
                for _ in range(3):
                    server = restart(server)
                    await until_closed(q)
                    new_pid = await asyncio.wait_for(q("pid"), 30)
                    assert new_pid != pid and new_pid == server.proc.pid
                    assert not q.closed and await q("1+1") == 2
                    pid = new_pid
        run(main(), 120)
    finally:
        server.kill()


@pytest.mark.parametrize("kind", KINDS)
def test_requests_in_flight_fail_and_are_not_resent(kind):
    """Requests in flight when the server dies raise ConnectionClosed at once (never hang); the
    restarted server never receives them (q requests are not idempotent: not resent), and the
    next request is answered."""
    server = ServerProcess(kind)
    try:
        async def main():
            nonlocal server
            async with await qwire.aio.connect("127.0.0.1", server.port, reconnect=20, timeout=5) as q:
                assert await q("1+1") == 2
                in_flight = [asyncio.ensure_future(q("slow")) for _ in range(5)]
                deadline = time.monotonic() + 10
                while True:  # the server has the first one
                    async with await qwire.aio.connect("127.0.0.1", server.port) as probe:
                        if await probe("slows") >= 1:
                            break
                    assert time.monotonic() < deadline
                    await asyncio.sleep(0.02)
                server.kill()
                t0 = time.monotonic()
                results = await asyncio.wait_for(asyncio.gather(*in_flight, return_exceptions=True), 10)
                assert time.monotonic() - t0 < 5
                assert all(isinstance(r, qwire.ConnectionClosed) for r in results), results
                assert not any(isinstance(r, ReconnectFailed) for r in results)
                server = restart(server)
                assert await asyncio.wait_for(q("1+1"), 30) == 2
                assert await q("slows") == 0  # nothing was resent to the new server
        run(main(), 120)
    finally:
        server.kill()


@pytest.mark.parametrize("kind", KINDS)
def test_queued_messages_survive_the_reconnection(kind):
    """Async messages that arrived before the loss and were not yet received are still there,
    in order, before and after the reconnection."""
    server = ServerProcess(kind)
    try:
        async def main():
            nonlocal server
            async with await qwire.aio.connect("127.0.0.1", server.port, reconnect=20, timeout=5) as q:
                assert await q("push") == 3
                server = restart(server)
                await until_closed(q)
                first = await q.receive(timeout=5)  # still deliverable while the connection is down
                assert await asyncio.wait_for(q("push"), 30) == 3
                rest = [await q.receive(timeout=5) for _ in range(5)]
                if kind == "qwire":
                    assert [first, *rest] == [["upd", i] for i in range(3)] * 2
                else:
                    assert [first, *rest] == [0, 1, 2, 0, 1, 2]
                with pytest.raises(qwire.RequestTimeout):
                    await q.receive(timeout=0.05)
        run(main(), 120)
    finally:
        server.kill()


def test_concurrent_requests_share_one_reconnection(monkeypatch):
    """Many tasks asking at once after the loss wait for one round of attempts (one new
    connection), and are all answered."""
    server = ServerProcess("qwire")
    try:
        async def main():
            nonlocal server
            async with await qwire.aio.connect("127.0.0.1", server.port, reconnect=20, timeout=5) as q:
                server.kill()
                await until_closed(q)
                opened = record_aio_attempts(monkeypatch)
                pending = asyncio.gather(*(q.sync([b"echo", i]) for i in range(50)))
                await asyncio.sleep(0.3)  # a few failed attempts while nothing listens
                server = restart(server)
                results = await asyncio.wait_for(pending, 30)
                assert [r[1] for r in results] == list(range(50))
                assert opened and len(opened) <= 20  # one round's attempts, not one round per task
        run(main(), 120)
    finally:
        server.kill()


def test_gives_up_after_n_attempts_with_reconnect_failed(monkeypatch):
    """Nothing listening after the kill: the request raises ReconnectFailed once its N attempts
    failed, after pauses within the schedule's bounds; each later request tries a new round,
    which succeeds once the server is back."""
    server = ServerProcess("qwire")
    try:
        async def main():
            nonlocal server
            async with await qwire.aio.connect("127.0.0.1", server.port, reconnect=4, timeout=2) as q:
                server.kill()
                await until_closed(q)
                attempts = record_aio_attempts(monkeypatch)
                t0 = time.monotonic()
                with pytest.raises(ReconnectFailed) as e:
                    await asyncio.wait_for(q("1+1"), 30)
                elapsed = time.monotonic() - t0
                monkeypatch.undo()   # the new round below is not counted
                assert len(attempts) == 4 and e.value.attempts == 4
                assert isinstance(e.value, ConnectionError)
                assert isinstance(e.value.__cause__, qwire.ConnectionClosed)  # "cannot connect: refused"
                assert "4 attempts to reconnect failed" in str(e.value)
                pauses = [b - a for a, b in zip(attempts, attempts[1:])]
                for n, pause in enumerate(pauses, start=2):  # each within [half, all] of its nominal, + slack
                    nominal = min(p.RECONNECT_FIRST_DELAY * 2 ** (n - 2), p.RECONNECT_MAX_DELAY)
                    assert nominal / 2 - 0.01 <= pause <= nominal + 1.0, (n, pause)
                assert elapsed <= max_pauses(4) + 2.0
                assert q.closed
                server = ServerProcess("qwire", server.port)
                assert await asyncio.wait_for(q("1+1"), 30) == 2  # a new round, and it succeeds
        run(main(), 120)
    finally:
        server.kill()


def test_without_reconnect_a_lost_connection_stays_closed():
    """reconnect off (the default): after the loss every request raises ConnectionClosed at once,
    even with the server back."""
    server = ServerProcess("qwire")
    try:
        async def main():
            nonlocal server
            async with await qwire.aio.connect("127.0.0.1", server.port) as q:
                server = restart(server)
                await until_closed(q)
                with pytest.raises(qwire.ConnectionClosed, match="lost") as e:
                    await asyncio.wait_for(q("1+1"), 5)
                assert not isinstance(e.value, ReconnectFailed)
                with pytest.raises(qwire.ConnectionClosed):
                    await asyncio.wait_for(q.send(b"x"), 5)
        run(main(), 60)
    finally:
        server.kill()


def test_send_reconnects_and_receive_does_not():
    """send() reconnects as a request does; receive() with nothing queued raises ConnectionClosed
    at once rather than reconnecting (a subscription does not survive the server's restart: the
    application subscribes again with a request, which reconnects)."""
    server = ServerProcess("qwire")
    try:
        async def main():
            nonlocal server
            async with await qwire.aio.connect("127.0.0.1", server.port, reconnect=20, timeout=5) as q:
                server = restart(server)
                await until_closed(q)
                with pytest.raises(qwire.ConnectionClosed):
                    await asyncio.wait_for(q.receive(timeout=5), 5)
                await asyncio.wait_for(q.send([b"hello", np.arange(3)]), 30)
                assert not q.closed
                assert await q("1+1") == 2
        run(main(), 60)
    finally:
        server.kill()


def test_close_during_a_reconnection_stops_it():
    """close() while a round of many attempts is pausing: the waiting request raises
    ConnectionClosed promptly, and no connection is left open."""
    server = ServerProcess("qwire")
    try:
        async def main():
            async with await qwire.aio.connect("127.0.0.1", server.port, reconnect=50, timeout=2) as q:
                server.kill()
                await until_closed(q)
                request = asyncio.ensure_future(q("1+1"))
                await asyncio.sleep(0.3)
                assert not request.done()
                q.close()
                t0 = time.monotonic()
                with pytest.raises(qwire.ConnectionClosed):
                    await asyncio.wait_for(request, 5)
                assert time.monotonic() - t0 < 1
                assert q._reconnecting is None
        run(main(), 60)
    finally:
        server.kill()


def test_refused_credentials_on_reconnection_are_not_retried():
    """The restarted server refuses the credentials: AuthenticationError at once (another attempt
    cannot help), not a round of attempts."""
    server = ServerProcess("qwire")
    try:
        async def main():
            nonlocal server
            async with await qwire.aio.connect("127.0.0.1", server.port, reconnect=20, timeout=5) as q:
                server = restart(server, password="secret")
                await until_closed(q)
                t0 = time.monotonic()
                with pytest.raises(qwire.AuthenticationError):
                    await asyncio.wait_for(q("1+1"), 30)
                assert time.monotonic() - t0 < 2
        run(main(), 60)
    finally:
        server.kill()


# --- the blocking client: the same option, the same schedule ----------------------------------
def test_blocking_client_gives_up_after_n_attempts_on_the_same_schedule(monkeypatch):
    """qwire.connect(reconnect=4): four attempts, the shared pauses, then ReconnectFailed."""
    with server_process("qwire") as server:
        with qwire.connect("127.0.0.1", server.port, reconnect=4, timeout=2) as q:
            assert q("1+1") == 2
            server.kill()
            with pytest.raises(qwire.ConnectionClosed):  # the loss is seen by this request
                q.sync(b"1+1", timeout=5)
            attempts = record_blocking_attempts(monkeypatch)
            t0 = time.monotonic()
            with pytest.raises(ReconnectFailed) as e:
                q.sync(b"1+1", timeout=5)
            elapsed = time.monotonic() - t0
            assert len(attempts) == 4 and e.value.attempts == 4
            assert elapsed <= max_pauses(4) + 2.0
            assert elapsed >= max_pauses(4) / 2 - 0.05


@pytest.mark.parametrize("kind", KINDS)
def test_blocking_client_reconnects_after_a_restart(kind):
    """The blocking client looks at the socket before writing a request: after the server was
    killed and restarted, the very next request reconnects and is answered (none is lost to the
    dead connection). Queued messages survive."""
    server = ServerProcess(kind)
    try:
        with qwire.connect("127.0.0.1", server.port, reconnect=20, timeout=5, request_timeout=10) as q:
            assert q("push") == 3
            for _ in range(2):
                pid = q("pid")
                server = restart(server)
                new_pid = q("pid")
                assert new_pid != pid and new_pid == server.proc.pid
            assert len([q.receive(timeout=5) for _ in range(3)]) == 3
    finally:
        server.kill()


@pytest.mark.slow
def test_blocking_threads_waiting_for_a_round_share_its_outcome(monkeypatch):
    """Threads that ask while a round runs take its outcome: one round of attempts, not one per
    thread; each gets its own ReconnectFailed."""
    import threading

    with server_process("qwire") as server:
        with qwire.connect("127.0.0.1", server.port, reconnect=6, timeout=2) as q:
            assert q("1+1") == 2
            server.kill()
            with pytest.raises(qwire.ConnectionClosed):
                q.sync(b"1+1", timeout=5)
            attempts = record_blocking_attempts(monkeypatch)
            barrier = threading.Barrier(4)
            errors = []

            def ask():
                barrier.wait(10)
                try:
                    q.sync(b"1+1", timeout=5)
                except BaseException as e:  # noqa: BLE001 (checked below)
                    errors.append(e)

            threads = [threading.Thread(target=ask) for _ in range(4)]
            for t in threads:
                t.start()
            for t in threads:
                t.join(60)
            assert len(errors) == 4 and all(isinstance(e, ReconnectFailed) for e in errors), errors
            assert len({id(e) for e in errors}) == 4
            assert len(attempts) == 6  # the round's pauses (>= 0.77 s) outlast the threads' start
