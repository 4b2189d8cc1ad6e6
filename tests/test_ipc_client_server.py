"""qwire's clients (blocking and asyncio) against qwire's own server (qwire.Server,
qwire.aio.start_server): what the client side promises, checked end to end between qwire peers."""
from __future__ import annotations

import asyncio
import threading
import time

import numpy as np
import pytest

import qwire
import qwire.aio
from qwire.ipc import Handler


class Echo(Handler):
    """Answers a char-vector query "push N" by pushing N async messages first; "1+1" with 2;
    anything else with itself."""

    def on_sync(self, conn, value):
        if isinstance(value, bytes):
            if value == b"1+1":
                return 2
            if value.startswith(b"push "):
                for i in range(int(value[5:])):
                    conn.send(["upd", i])
                return "pushed"
            if value == b"fail":
                raise qwire.QError("nope")
        return value


@pytest.fixture(scope="module")
def server():
    with qwire.Server(Echo(), port=0) as s:
        yield s


@pytest.fixture(scope="module")
def python_server():
    with qwire.Server(Echo(), port=0, q_compatible=False) as s:
        yield s


def test_query_values_and_errors(server):
    """The basics against a qwire server: query, values both ways, error reply."""
    with qwire.connect("127.0.0.1", server.port) as q:
        assert q("1+1") == 2 and q.capability == 6
        with pytest.raises(qwire.QError, match="nope"):
            q("fail")
        t = qwire.Table({"a": np.arange(5), "s": np.array(list("abcde"), dtype=object)})
        back = q.sync(t)
        np.testing.assert_array_equal(back["a"], np.arange(5))


def test_pushed_messages_during_a_request_are_kept_in_order(server):
    """The server pushes 100 updates before answering: all kept for receive(), in order."""
    with qwire.connect("127.0.0.1", server.port) as q:
        assert q("push 100") == "pushed"
        assert [q.receive(timeout=5) for _ in range(100)] == [["upd", i] for i in range(100)]


def test_large_arrays_arrive_as_aligned_views_of_the_receive_buffer(server):
    """A 24 MB dict of arrays round-trips intact; each array is a read-only view (no copy after
    the kernel's) aligned to 64 bytes for the largest."""
    rng = np.random.default_rng(3)
    big = {f"c{i}": rng.standard_normal(375_000) for i in range(8)}
    with qwire.connect("127.0.0.1", server.port) as q:
        back = q.sync(big, timeout=60)
    for k in big:
        np.testing.assert_array_equal(back[k], big[k])
        assert not back[k].flags.owndata and not back[k].flags.writeable
    assert any(a.ctypes.data % 64 == 0 for a in back.values())


def test_threads_share_a_connection_to_a_qwire_server(server):
    """8 threads x 50 requests on one connection, each answered with its own value."""
    errors = []
    with qwire.connect("127.0.0.1", server.port) as q:
        def work(i):
            try:
                for j in range(50):
                    assert q.sync([i, j], timeout=20) == [i, j]
            except BaseException as e:  # noqa: BLE001
                errors.append(e)
        threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
    assert errors == [] and not any(t.is_alive() for t in threads)


def test_python_only_records_between_qwire_peers(python_server):
    """With q_compatible=False on both sides, tuples, sets and N-d arrays keep their types."""
    value = (1, {2, 3}, np.arange(6).reshape(2, 3))
    with qwire.connect("127.0.0.1", python_server.port, q_compatible=False) as q:
        back = q.sync(value)
    assert type(back) is tuple and back[1] == {2, 3}
    np.testing.assert_array_equal(back[2], value[2])


def test_asyncio_client_many_in_flight_against_qwire_server(server):
    """500 concurrent requests and pushed updates through async for."""
    async def main():
        async with await qwire.aio.connect("127.0.0.1", server.port) as q:
            results = await asyncio.gather(*(q.sync(i) for i in range(500)))
            assert results == list(range(500))
            assert await q("push 3") == "pushed"
            got = []
            async for msg in q:
                got.append(msg)
                if len(got) == 3:
                    break
            return got

    assert asyncio.run(asyncio.wait_for(main(), 60)) == [["upd", i] for i in range(3)]


def test_asyncio_client_against_asyncio_server():
    """qwire.aio.connect against qwire.aio.start_server in the same event loop."""
    async def main():
        server = await qwire.aio.start_server(Echo(), port=0)
        try:
            async with await qwire.aio.connect("127.0.0.1", server.port) as q:
                assert await q("1+1") == 2
                arr = await q.sync(np.arange(1_000_000))
                np.testing.assert_array_equal(arr, np.arange(1_000_000))
        finally:
            server.close()
            await server.wait_closed()

    asyncio.run(asyncio.wait_for(main(), 60))


def test_forced_compression_between_qwire_peers_on_loopback():
    """compression=True on both sides: an 8 MB array of zeros comes back over loopback as a
    compressed message (header byte 2 of the frame the client read) and decodes intact."""
    seen = []

    class Count(Handler):
        def on_sync(self, conn, value):
            seen.append(value.nbytes)
            return value

    zeros = np.zeros(1_000_000)
    with qwire.Server(Count(), port=0, compression=True) as s:
        with qwire.connect("127.0.0.1", s.port, compression=True) as q:
            frames = q._frames
            next_frame = frames.next_frame
            compressed = []

            def spy():
                f = next_frame()
                if f is not None:
                    compressed.append((f.data[2], f.data.nbytes))
                return f

            frames.next_frame = spy
            np.testing.assert_array_equal(q.sync(zeros, timeout=60), zeros)
    assert seen == [zeros.nbytes]
    assert compressed[0][0] == 1 and compressed[0][1] < zeros.nbytes // 2
