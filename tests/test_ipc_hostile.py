"""Hostile servers against qwire's client (blocking and asyncio): each gets a clear qwire error
within the timeouts, and no allocation that the bytes received do not justify."""
from __future__ import annotations

import asyncio
import threading
import time
import tracemalloc

import numpy as np
import pytest

import qwire
import qwire.aio
from qwire.ipc import Limits

from ipc_peers import fake_server, read_hello, read_message


def _accept_then(send: bytes, *, hold: float = 0.5, then=None):
    """A server that accepts the hello (capability 6), waits for one request, sends `send`."""
    def script(conn):
        read_hello(conn)
        conn.sendall(b"\x06")
        read_message(conn)
        conn.sendall(send)
        if then is not None:
            then(conn)
        else:
            time.sleep(hold)
    return script


def _both(fn_sync, fn_async):
    return [pytest.param(fn_sync, id="blocking"), pytest.param(fn_async, id="asyncio")]


def _sync_request(host, port, **kw):
    timeout = kw.pop("timeout", 5)
    with qwire.connect(host, port, **kw) as q:
        return q.sync(1, timeout=timeout)


def _async_request(host, port, **kw):
    timeout = kw.pop("timeout", 5)

    async def main():
        q = await qwire.aio.connect(host, port, **kw)
        async with q:
            return await q.sync(1, timeout=timeout)

    return asyncio.run(main())


REQUEST = _both(_sync_request, _async_request)


@pytest.mark.parametrize("request_fn", REQUEST)
def test_header_claiming_a_terabyte_is_refused_at_once(request_fn):
    """A response header claiming ~1 TB: MessageTooLarge as soon as its 8 bytes arrive."""
    header = b"\x01\x02\x00\xff\xff\xff\xff\xff"
    with fake_server(_accept_then(header)) as (host, port):
        t0 = time.monotonic()
        with pytest.raises(qwire.MessageTooLarge) as e:
            request_fn(host, port)
        assert time.monotonic() - t0 < 2
    assert e.value.size == (1 << 40) - 1 and e.value.limit == qwire.ipc.Limits().max_message_size


@pytest.mark.parametrize("request_fn", REQUEST)
def test_header_over_the_configured_limit(request_fn):
    """max_message_size is the connection's own: a 2 MB response over a 1 MB limit is refused."""
    response = qwire.dumps(np.zeros(1 << 18), msg_type="response").copy()
    with fake_server(_accept_then(response)) as (host, port):
        with pytest.raises(qwire.MessageTooLarge):
            request_fn(host, port, limits=Limits(max_message_size=1 << 20))


def _trickle(conn):
    """A header promising 512 MB, then one byte every 0.1 s."""
    for _ in range(40):
        conn.sendall(b"\x00")
        time.sleep(0.1)


@pytest.mark.parametrize("request_fn", REQUEST)
def test_byte_a_tick_server_times_out_without_allocating_its_claim(request_fn):
    """A server that promises 512 MB and trickles bytes: RequestTimeout at the request timeout,
    and the memory allocated meanwhile stays tiny (the receive buffer grows with the bytes)."""
    header = b"\x01\x02\x00\x00\x00\x00\x00\x20"  # 512 MiB, under the default 1 GiB limit
    with fake_server(_accept_then(header, then=_trickle)) as (host, port):
        tracemalloc.start()
        try:
            t0 = time.monotonic()
            with pytest.raises(qwire.RequestTimeout):
                request_fn(host, port, timeout=0.5)
            elapsed = time.monotonic() - t0
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    assert elapsed < 3
    assert peak < 8 << 20, peak


@pytest.mark.parametrize("request_fn", REQUEST)
def test_server_closing_mid_message(request_fn):
    """The server sends half a response and closes: ConnectionClosed saying how far it got."""
    response = qwire.dumps(np.arange(1000), msg_type="response").copy()
    with fake_server(_accept_then(response[:3000], hold=0)) as (host, port):
        with pytest.raises(qwire.ConnectionClosed) as e:
            request_fn(host, port)
    assert "inside a message" in str(e.value)
    assert e.value.expected == len(response) and e.value.received == 3000


@pytest.mark.parametrize("request_fn", REQUEST)
def test_malformed_header_is_protocol_error(request_fn):
    """A header with message type 7: ProtocolError naming the header bytes."""
    with fake_server(_accept_then(b"\x01\x07\x00\x00\x10\x00\x00\x00")) as (host, port):
        with pytest.raises(qwire.ProtocolError, match="malformed message header"):
            request_fn(host, port)


@pytest.mark.parametrize("request_fn", REQUEST)
def test_compression_bomb_is_refused_by_the_decompressed_limit(request_fn):
    """A small compressed response that would expand past max_message_size: DecodeError."""
    bomb = qwire.dumps(np.zeros(1 << 20, dtype=np.uint8), compress=True, msg_type="response").copy()
    assert len(bomb) < 100_000
    with fake_server(_accept_then(bomb)) as (host, port):
        with pytest.raises(qwire.DecodeError, match="exceeds"):
            request_fn(host, port, limits=Limits(max_message_size=1 << 19))


def test_garbage_body_is_decode_error_and_the_connection_stays_usable():
    """A well-framed response whose body is not a q object: DecodeError for that request; the
    stream is still in step, so the next request gets its answer."""
    garbage = b"\x01\x02\x00\x00\x0c\x00\x00\x00\x77\x00\x00\x00"

    def script(conn):
        read_hello(conn)
        conn.sendall(b"\x06")
        read_message(conn)
        conn.sendall(garbage)
        read_message(conn)
        conn.sendall(qwire.dumps(5, msg_type="response").copy())
        time.sleep(1)

    with fake_server(script) as (host, port):
        with qwire.connect(host, port) as q:
            with pytest.raises(qwire.DecodeError):
                q.sync(1, timeout=5)
            assert q.sync(2, timeout=5) == 5


@pytest.mark.slow
def test_endless_stream_of_unasked_messages_does_not_starve_the_request():
    """A server that floods async messages before answering: the request is answered, the
    messages are all kept, in order."""
    def script(conn):
        read_hello(conn)
        conn.sendall(b"\x06")
        read_message(conn)
        conn.sendall(b"".join(qwire.dumps(i).copy() for i in range(2000)))
        conn.sendall(qwire.dumps("done", msg_type="response").copy())
        time.sleep(1)

    with fake_server(script) as (host, port):
        with qwire.connect(host, port) as q:
            assert q.sync(0, timeout=10) == "done"
            assert [q.receive(timeout=1) for _ in range(2000)] == list(range(2000))


def test_close_from_another_thread_wakes_a_waiting_request():
    """close() while a request waits on a silent server: the request raises ConnectionClosed."""
    release = threading.Event()
    with fake_server(_accept_then(b"", then=lambda c: release.wait(10))) as (host, port):
        q = qwire.connect(host, port)
        errors = []

        def request():
            try:
                q.sync(1)
            except BaseException as e:  # noqa: BLE001
                errors.append(e)

        t = threading.Thread(target=request)
        t.start()
        time.sleep(0.2)
        q.close()
        t.join(5)
        release.set()
    assert not t.is_alive()
    assert isinstance(errors[0], qwire.ConnectionClosed)


@pytest.mark.slow
def test_asyncio_client_stops_reading_a_flood_nobody_receives(monkeypatch):
    """A server that floods async messages at a subscriber that does not call receive(): the
    asyncio client stops reading past the queue limit (the kernel's buffers hold the rest), then
    delivers every message, in order, as they are received."""
    from qwire.ipc import _protocol as p

    monkeypatch.setattr(p, "DEFAULT_MAX_QUEUED_BYTES", 1 << 20)
    chunk = np.zeros(100_000, dtype=np.uint8)
    n = 300  # 30 MB: more than loopback's buffers hold

    def script(conn):
        read_hello(conn)
        conn.sendall(b"\x06")
        for i in range(n):
            chunk[:8] = np.frombuffer(np.int64(i).tobytes(), np.uint8)
            conn.sendall(qwire.dumps(chunk).copy())
        time.sleep(0.5)

    async def main(host, port):
        q = await qwire.aio.connect(host, port)
        async with q:
            await asyncio.sleep(1.0)
            queued = q._queued_bytes
            got = []
            for _ in range(n):
                got.append(int((await q.receive(timeout=10))[:8].view(np.int64)[0]))
            return queued, got

    with fake_server(script) as (host, port):
        queued, got = asyncio.run(asyncio.wait_for(main(host, port), 60))
    assert queued <= (1 << 20) + 2 * 100_100, queued
    assert got == list(range(n))
