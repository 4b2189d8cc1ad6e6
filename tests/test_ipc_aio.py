"""qwire's asyncio client (qwire.aio.connect) against aiokdb's server: the semantics of the
blocking client, with many requests in flight."""
from __future__ import annotations

import asyncio

import numpy as np
import pytest

import qwire
import qwire.aio

from ipc_peers import AiokdbServer, fake_server, read_hello, read_message

aiokdb = pytest.importorskip("aiokdb")  # installed in CI (the test extra); never skipped there
from aiokdb import MessageType, TypeEnum, kj, ks  # noqa: E402


async def _answer(cmd, writer):
    if cmd.t == TypeEnum.KC:
        text = cmd.aS()
        if text == "1+1":
            return kj(2)
        if text == "boom":
            raise Exception("boom")
        if text == "publish":  # three updates, then the answer
            for i in range(3):
                writer.write(kj(i), MessageType.ASYNC)
            return kj(3)
        if text.startswith("sleep "):
            await asyncio.sleep(float(text[6:]))
            return kj(1)
    return cmd


@pytest.fixture(scope="module")
def server():
    with AiokdbServer(_answer) as s:
        yield s


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 30))


def test_query_error_and_values(server):
    """await conn(query), QError for an error reply, values echoed intact."""
    async def main():
        async with await qwire.aio.connect("127.0.0.1", server.port) as q:
            assert await q("1+1") == 2
            with pytest.raises(qwire.QError, match="boom"):
                await q("boom")
            arr = await q.sync(np.arange(10.0))
            np.testing.assert_array_equal(arr, np.arange(10.0))
            assert q.capability == 3 and q.local
    run(main())


def test_many_requests_in_flight_match_in_order(server):
    """200 concurrent requests from one connection each get their own response."""
    async def main():
        async with await qwire.aio.connect("127.0.0.1", server.port) as q:
            results = await asyncio.gather(*(q.sync([i, "x"]) for i in range(200)))
            assert results == [[i, "x"] for i in range(200)]
    run(main())


def test_async_for_yields_unasked_messages(server):
    """Updates pushed before a response are kept, in order, for receive() and async for."""
    async def main():
        async with await qwire.aio.connect("127.0.0.1", server.port) as q:
            assert await q("publish") == 3
            assert await q.receive(timeout=5) == 0
            got = []
            async for message in q:
                got.append(message)
                if len(got) == 2:
                    break
            assert got == [1, 2]
            with pytest.raises(qwire.RequestTimeout):
                await q.receive(timeout=0.05)
    run(main())


def test_timeout_then_next_request_gets_its_own_answer(server):
    """A timed-out request's late response is dropped; the connection stays usable."""
    async def main():
        async with await qwire.aio.connect("127.0.0.1", server.port) as q:
            with pytest.raises(qwire.RequestTimeout):
                await q.sync(b"sleep 0.3", timeout=0.05)
            assert await q("1+1") == 2
    run(main())


def test_send_reaches_the_server(server):
    """await send(value) writes an async message; the server's .z.ps sees it."""
    server.context.asyncs.clear()

    async def main():
        async with await qwire.aio.connect("127.0.0.1", server.port) as q:
            await q.send(["upd", "t", np.arange(3)])
            assert await q("1+1") == 2
    run(main())
    assert len(server.context.asyncs) == 1


def test_refused_credentials():
    """A wrong password: AuthenticationError."""
    async def main(port):
        with pytest.raises(qwire.AuthenticationError):
            await qwire.aio.connect("127.0.0.1", port, user="u", password="no")
    with AiokdbServer(_answer, password="yes") as s:
        run(main(s.port))


def test_peer_sync_request_gets_handler_answer():
    """A sync request from the server goes to on_sync (a coroutine function here)."""
    replies = []

    def script(conn):
        read_hello(conn)
        conn.sendall(b"\x06")
        read_message(conn)
        conn.sendall(qwire.dumps(b"ping", msg_type="sync").copy())
        replies.append(read_message(conn))
        conn.sendall(qwire.dumps(1, msg_type="response").copy())

    async def on_sync(value):
        await asyncio.sleep(0)
        return value + b"/pong"

    async def main(host, port):
        async with await qwire.aio.connect(host, port, on_sync=on_sync) as q:
            assert await q.sync(0, timeout=5) == 1

    with fake_server(script) as (host, port):
        run(main(host, port))
    assert qwire.loads(replies[0]) == b"ping/pong"


def test_closing_fails_requests_in_flight(server):
    """close() with requests in flight: each raises ConnectionClosed."""
    async def main():
        q = await qwire.aio.connect("127.0.0.1", server.port)
        pending = [asyncio.ensure_future(q.sync(b"sleep 0.5")) for _ in range(3)]
        await asyncio.sleep(0.05)
        q.close()
        results = await asyncio.gather(*pending, return_exceptions=True)
        assert all(isinstance(r, qwire.ConnectionClosed) for r in results), results
        assert q.closed
    run(main())


def test_silent_server_times_out_the_connect():
    """A server that never answers the hello: RequestTimeout at the connect timeout."""
    import threading
    import time

    release = threading.Event()

    def script(conn):
        read_hello(conn)
        release.wait(10)

    async def main(host, port):
        t0 = time.monotonic()
        with pytest.raises(qwire.RequestTimeout):
            await qwire.aio.connect(host, port, timeout=0.3)
        return time.monotonic() - t0

    with fake_server(script) as (host, port):
        assert run(main(host, port)) < 3
        release.set()


def test_nothing_listening_is_a_connection_error():
    """A refused connection: a qwire IPCError (a ConnectionError) naming the peer."""
    import socket

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()

    async def main():
        with pytest.raises(qwire.IPCError, match=f"127.0.0.1:{port}"):
            await qwire.aio.connect("127.0.0.1", port)
    run(main())
