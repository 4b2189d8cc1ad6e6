"""qwire.aio.start_server: the hooks and semantics of qwire.Server on asyncio (plain and
coroutine hooks, error replies, deferred replies in request order, pushes, limits, hostile
peers), with qwire's asyncio and blocking clients, raw sockets and aiokdb's client."""
from __future__ import annotations

import asyncio
import socket
import time

import numpy as np
import pytest

import qwire
import qwire.aio
from qwire.ipc import Handler, Limits

from wire import header, message


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 30))


class Recorder(Handler):
    def __init__(self):
        self.events = []
        self.conns = []
        self.deferred = []

    def check_login(self, user, password):
        self.events.append(("login", user))
        return password != "wrong"

    def on_open(self, conn):
        self.conns.append(conn)
        self.events.append(("open", conn.user))

    async def on_sync(self, conn, value):  # a coroutine hook
        self.events.append(("sync", value))
        if isinstance(value, bytes) and value == b"boom":
            raise ValueError("boom")
        if isinstance(value, int) and value < 0:
            self.deferred.append(conn)
            return qwire.DEFERRED
        await asyncio.sleep(0)
        return value

    def on_async(self, conn, value):
        self.events.append(("async", value))

    def on_close(self, conn):
        self.events.append(("close", conn.user))


def test_hooks_order_sync_async_errors():
    h = Recorder()

    async def main():
        async with await qwire.aio.start_server(h) as server:
            q = await qwire.aio.connect("127.0.0.1", server.port, user="ann", password="pw")
            assert await q.sync(5) == 5
            await q.send("note")
            with pytest.raises(qwire.QError, match="boom"):
                await q("boom")
            assert np.array_equal(await q.sync(np.arange(4)), np.arange(4))
            q.close()
            for _ in range(100):
                if ("close", "ann") in h.events:
                    break
                await asyncio.sleep(0.01)

    run(main())
    assert h.events[:4] == [("login", "ann"), ("open", "ann"), ("sync", 5), ("async", "note")]
    assert h.events[-1] == ("close", "ann")


def test_refused_login():
    async def main():
        async with await qwire.aio.start_server(Recorder()) as server:
            with pytest.raises(qwire.AuthenticationError):
                await qwire.aio.connect("127.0.0.1", server.port, user="x", password="wrong")

    run(main())


def test_many_requests_in_flight_and_deferred_order():
    """Request -1 is deferred; later requests are answered only after it, each with its own value."""
    h = Recorder()

    async def main():
        async with await qwire.aio.start_server(h) as server:
            q = await qwire.aio.connect("127.0.0.1", server.port)
            first = asyncio.ensure_future(q.sync(-1))
            rest = [asyncio.ensure_future(q.sync(i)) for i in range(20)]
            while not h.deferred:
                await asyncio.sleep(0.005)
            await asyncio.sleep(0.05)
            assert not any(f.done() for f in rest)  # held behind the deferred one
            h.deferred[0].reply("late")
            assert await first == "late"
            assert await asyncio.gather(*rest) == list(range(20))
            with pytest.raises(qwire.NoRequestWaiting):
                h.deferred[0].reply(1)
            q.close()

    run(main())


def test_push_and_blocking_client_in_a_thread():
    h = Recorder()

    async def main():
        async with await qwire.aio.start_server(h) as server:
            port = server.port

            def client():
                with qwire.connect("127.0.0.1", port) as q:
                    assert q.sync(3) == 3
                    return [q.receive(timeout=10) for _ in range(3)]

            fut = asyncio.get_running_loop().run_in_executor(None, client)
            while not h.conns:
                await asyncio.sleep(0.005)
            for i in range(3):
                await h.conns[0].send(["upd", i])
            assert await fut == [["upd", 0], ["upd", 1], ["upd", 2]]

    run(main())


def test_capability_min_and_bad_messages():
    async def main():
        async with await qwire.aio.start_server(lambda c, v: v, capability=5) as server:
            reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
            writer.write(b"u:p\x06\x00")
            assert await reader.readexactly(1) == b"\x05"
            writer.write(message(bytes([0x77]), msg_type=1))  # undecodable: an error reply
            h = await reader.readexactly(8)
            body = await reader.readexactly(int.from_bytes(h[4:8], "little") - 8)
            with pytest.raises(qwire.QError, match="badmsg"):
                qwire.loads(h + body)
            writer.write(bytes([1, 3, 0, 0, 9, 0, 0, 0]))  # message type 3: closed
            assert await asyncio.wait_for(reader.read(), 5) == b""
            writer.close()

    run(main())


@pytest.mark.slow
def test_hostile_handshake_terabyte_and_slow_message():
    limits = Limits(max_handshake_size=64, handshake_timeout=0.5, transfer_timeout=0.5)

    async def closed(reader):
        try:
            return await asyncio.wait_for(reader.read(), 5) == b""
        except ConnectionResetError:
            return True

    async def main():
        async with await qwire.aio.start_server(lambda c, v: v, limits=limits) as server:
            r, w = await asyncio.open_connection("127.0.0.1", server.port)
            w.write(b"x" * 1000)  # endless hello
            assert await closed(r)
            r, w = await asyncio.open_connection("127.0.0.1", server.port)
            w.write(b"u")  # silent in the hello: handshake_timeout
            t = time.monotonic()
            assert await closed(r)
            assert time.monotonic() - t < 3
            r, w = await asyncio.open_connection("127.0.0.1", server.port)
            w.write(b"u:p\x06\x00")
            assert await r.readexactly(1) == b"\x06"
            w.write(bytes([1, 1, 0, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF]))  # a terabyte
            assert await closed(r)
            r, w = await asyncio.open_connection("127.0.0.1", server.port)
            w.write(b"u:p\x06\x00")
            assert await r.readexactly(1) == b"\x06"
            w.write(header(1000, msg_type=1) + b"\x00")  # never finished
            t = time.monotonic()
            assert await closed(r)
            assert time.monotonic() - t < 3
            q = await qwire.aio.connect("127.0.0.1", server.port)
            assert await q.sync(1) == 1  # still serving
            q.close()

    run(main())


def test_max_connections_and_many_dropped():
    async def main():
        async with await qwire.aio.start_server(lambda c, v: v, limits=Limits(max_connections=4)) as server:
            for i in range(300):  # opened and dropped
                r, w = await asyncio.open_connection("127.0.0.1", server.port)
                if i % 2:
                    w.write(b"u:p\x06\x00")
                w.close()
            for _ in range(200):
                if not server._conns:
                    break
                await asyncio.sleep(0.01)
            assert not server._conns
            held = [await qwire.aio.connect("127.0.0.1", server.port) for _ in range(4)]
            with pytest.raises(qwire.IPCError):
                await qwire.aio.connect("127.0.0.1", server.port, timeout=5)
            for q in held:
                q.close()
            for _ in range(200):
                if not server._conns:
                    break
                await asyncio.sleep(0.01)
            q = await qwire.aio.connect("127.0.0.1", server.port)
            assert await q.sync(2) == 2
            q.close()

    run(main())


def test_unix_socket_and_large_message(tmp_path):
    path = str(tmp_path / "s")
    a = np.arange(4_000_000, dtype=np.float64)

    async def main():
        async with await qwire.aio.start_server(lambda c, v: v, unix=path) as server:
            assert server.port is None
            q = await qwire.aio.connect(unix=path)
            assert np.array_equal(await q.sync(a), a)
            q.close()

    run(main())


def test_aiokdb_client_against_the_asyncio_server():
    from aiokdb import TypeEnum, cv
    from aiokdb.client import open_qipc_connection

    async def main():
        async with await qwire.aio.start_server(lambda c, v: len(v) if isinstance(v, bytes) else v) as server:
            reader, writer = await open_qipc_connection(host="127.0.0.1", port=server.port)
            n = await writer.sync_req(cv("hello"))
            assert n.t == -TypeEnum.KJ and n.aJ() == 5
            writer.writer.close()

    run(main())


def test_tls(tmp_path):
    """TLS with a certificate the test makes (openssl): qwire's asyncio client, a 16 MB round trip."""
    import ssl
    import subprocess

    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-keyout", str(key),
                    "-out", str(cert), "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"],
                   check=True, capture_output=True)
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(cert, key)
    client_ctx = ssl.create_default_context(cafile=str(cert))
    a = np.arange(2_000_000, dtype=np.int64)

    async def main():
        async with await qwire.aio.start_server(lambda c, v: v, ssl=server_ctx) as server:
            q = await qwire.aio.connect("127.0.0.1", server.port, ssl=client_ctx)
            assert await q.sync(3) == 3
            assert np.array_equal(await q.sync(a), a)
            q.close()

    run(main())


def test_defer_tokens_with_coroutine_workers():
    """conn.defer() in an asyncio server: tasks that finish in reverse order answer their own
    requests."""
    async def on_sync(conn, value):
        token = conn.defer()

        async def work():
            await asyncio.sleep(0.05 * (4 - value))  # request 3 finishes first
            token.reply(value * 10)

        asyncio.ensure_future(work())
        return qwire.DEFERRED

    async def main():
        async with await qwire.aio.start_server(on_sync) as server:
            q = await qwire.aio.connect("127.0.0.1", server.port)
            assert await asyncio.gather(*(q.sync(v) for v in (1, 2, 3))) == [10, 20, 30]
            q.close()

    run(main())
