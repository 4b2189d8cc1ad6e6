"""qwire.Server against hostile peers (issue 13 item 5): an endless handshake, a header claiming a
terabyte, a byte a second, closing mid-message, malformed messages, idle and silent peers, a
client that stops reading, more clients than max_connections, thousands of connections opened and
dropped. In every case the server neither crashes, hangs nor allocates without bound, and keeps
serving a well-behaved client. All loops are bounded; everything talks to 127.0.0.1 only."""
from __future__ import annotations

import socket
import threading
import time

import numpy as np
import psutil
import pytest

import qwire
from qwire.ipc import Handler, Limits

from wire import header, message


def hello(cap=6):
    return b"user:pw" + bytes([cap, 0])


def raw_client(server, timeout=5.0):
    s = socket.create_connection(("127.0.0.1", server.port), timeout=timeout)
    return s


def logged_in(server):
    s = raw_client(server)
    s.sendall(hello())
    assert s.recv(1) == b"\x06"
    return s


def closed_by_peer(s, timeout=5.0):
    """True when the server closes `s` within `timeout` seconds (EOF or reset)."""
    s.settimeout(timeout)
    try:
        while True:
            data = s.recv(65536)
            if not data:
                return True
    except (ConnectionResetError, BrokenPipeError):
        return True
    except socket.timeout:
        return False


def still_serving(server):
    with qwire.connect("127.0.0.1", server.port, timeout=5, request_timeout=5) as q:
        return q.sync(123) == 123


def sync_long(value):
    """A sync message carrying a long atom."""
    return message(bytes([0xF9]) + int(value).to_bytes(8, "little", signed=True), msg_type=1)


class Echo(Handler):
    def __init__(self):
        self.closed = []
        self.opened = []

    def on_open(self, conn):
        self.opened.append(conn)

    def on_sync(self, conn, value):
        return value

    def on_close(self, conn):
        self.closed.append(conn.id)


@pytest.fixture
def echo():
    return Echo()


def test_endless_handshake_is_cut_at_max_handshake_size(echo):
    limits = Limits(max_handshake_size=256)
    with qwire.Server(echo, limits=limits) as server:
        s = raw_client(server)
        sent = 0
        try:
            for _ in range(64):  # 64 KiB without a NUL, far past the bound
                s.sendall(b"a" * 1024)
                sent += 1024
        except (BrokenPipeError, ConnectionResetError):
            pass
        assert closed_by_peer(s)
        s.close()
        assert still_serving(server)
        assert len(echo.opened) == 1  # still_serving's client; the endless hello never logged in


def test_slow_handshake_is_cut_at_handshake_timeout(echo):
    """A byte every 0.1 s during the hello: closed after handshake_timeout (0.5 s), not kept."""
    with qwire.Server(echo, limits=Limits(handshake_timeout=0.5)) as server:
        s = raw_client(server)
        start = time.monotonic()
        closed = False
        for _ in range(50):  # at most 5 s
            try:
                s.sendall(b"u")
            except (BrokenPipeError, ConnectionResetError):
                closed = True
                break
            s.settimeout(0.1)
            try:
                if s.recv(1) == b"":
                    closed = True
                    break
            except socket.timeout:
                pass
            except ConnectionResetError:
                closed = True
                break
        assert closed
        assert time.monotonic() - start < 3
        s.close()
        assert still_serving(server)


def test_header_claiming_a_terabyte_allocates_nothing_and_closes():
    """The 40-bit maximum length is over max_message_size: the connection is closed before any
    allocation; the server's memory does not grow."""
    with qwire.Server(Echo()) as server:
        process = psutil.Process()
        before = process.memory_info().rss
        for _ in range(20):
            s = logged_in(server)
            s.sendall(bytes([1, 1, 0, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF]) + b"\x00" * 1000)
            assert closed_by_peer(s)
            s.close()
        assert process.memory_info().rss - before < 64 << 20
        assert still_serving(server)


@pytest.mark.slow
def test_header_within_the_limit_but_never_completed_allocates_only_what_arrived():
    """A header announcing 1 GiB - 1 (allowed), then a few bytes and silence: the receive buffer
    follows what arrived, so memory stays small while the server waits (and serves others)."""
    with qwire.Server(Echo(), limits=Limits(transfer_timeout=1.0)) as server:
        process = psutil.Process()
        before = process.memory_info().rss
        socks = []
        for _ in range(8):
            s = logged_in(server)
            s.sendall(header((1 << 30) - 1, msg_type=1) + b"\x00" * 100)
            socks.append(s)
        time.sleep(0.2)
        assert process.memory_info().rss - before < 64 << 20
        assert still_serving(server)
        for s in socks:
            assert closed_by_peer(s, timeout=5)  # transfer_timeout closes each
            s.close()


def test_a_byte_a_second_inside_a_message_is_cut_at_transfer_timeout(echo):
    with qwire.Server(echo, limits=Limits(transfer_timeout=0.5)) as server:
        s = logged_in(server)
        msg = sync_long(5)
        start = time.monotonic()
        closed = False
        for b in msg[:-1]:  # never the last byte; a byte every 0.1 s
            try:
                s.sendall(bytes([b]))
            except (BrokenPipeError, ConnectionResetError):
                closed = True
                break
            s.settimeout(0.1)
            try:
                if s.recv(1) == b"":
                    closed = True
                    break
            except socket.timeout:
                pass
            except ConnectionResetError:
                closed = True
                break
        assert closed or closed_by_peer(s, timeout=2)
        assert time.monotonic() - start < 3
        s.close()
        assert still_serving(server)


def test_idle_timeout_closes_silent_clients_only():
    with qwire.Server(Echo(), limits=Limits(idle_timeout=0.3)) as server:
        silent = logged_in(server)
        with qwire.connect("127.0.0.1", server.port) as q:
            for i in range(5):  # active for longer than the idle timeout, never idle that long
                assert q.sync(i) == i
                time.sleep(0.1)
            assert closed_by_peer(silent, timeout=3)
            assert q.sync(9) == 9
        silent.close()


def test_closing_mid_message_calls_on_close_and_keeps_serving(echo):
    with qwire.Server(echo) as server:
        for cut in (3, 8, 12):  # inside the header, just after it, inside the body
            s = logged_in(server)
            s.sendall(sync_long(1)[:cut])
            s.close()
        assert still_serving(server)
        deadline = time.monotonic() + 5
        while len(echo.closed) < 4 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert len(echo.closed) == 4


def test_malformed_body_of_a_sync_request_gets_an_error_reply_and_the_connection_goes_on():
    """The frame is intact but its payload is not a q object: an error reply ('badmsg), then the
    next request is answered."""
    with qwire.Server(Echo()) as server:
        s = logged_in(server)
        bad = [
            message(bytes([0x77]) + b"\x00" * 8, msg_type=1),           # unknown type byte
            message(bytes([0x07, 0]) + (1000).to_bytes(4, "little"), msg_type=1),  # count beyond the bytes
            message(bytes([0xF9, 1, 2]), msg_type=1),                      # truncated atom
            message(bytes([0xF9]) + b"\x00" * 8 + b"junk", msg_type=1),   # trailing bytes
        ]
        for m in bad:
            s.sendall(m)
            reply = read_message(s)
            assert reply[1] == 2
            with pytest.raises(qwire.QError, match="badmsg"):
                qwire.loads(reply)
        s.sendall(sync_long(77))
        assert qwire.loads(read_message(s)) == 77
        s.close()


def test_malformed_async_message_is_dropped_and_the_connection_goes_on():
    with qwire.Server(Echo()) as server:
        s = logged_in(server)
        s.sendall(message(bytes([0x77]), msg_type=0))
        s.sendall(sync_long(8))
        assert qwire.loads(read_message(s)) == 8
        s.close()


@pytest.mark.parametrize("bad_header", [
    bytes([5, 1, 0, 0, 9, 0, 0, 0]),   # byte order 5
    bytes([1, 3, 0, 0, 9, 0, 0, 0]),   # message type 3
    bytes([1, 1, 9, 0, 9, 0, 0, 0]),   # compression 9
    bytes([1, 1, 0, 0, 3, 0, 0, 0]),   # shorter than a header
])
def test_malformed_header_closes_the_connection(bad_header):
    with qwire.Server(Echo()) as server:
        s = logged_in(server)
        s.sendall(bad_header + b"\x00" * 8)
        assert closed_by_peer(s)
        s.close()
        assert still_serving(server)


def test_a_response_from_a_client_closes_the_connection():
    with qwire.Server(Echo()) as server:
        s = logged_in(server)
        s.sendall(message(bytes([0xF9]) + b"\x00" * 8, msg_type=2))
        assert closed_by_peer(s)
        s.close()
        assert still_serving(server)


def test_random_garbage_after_the_handshake():
    """Seeded random byte strings: each connection ends (closed or answered), none hangs the server."""
    rng = np.random.default_rng(13)
    with qwire.Server(Echo(), limits=Limits(transfer_timeout=1.0, max_message_size=1 << 20)) as server:
        for _ in range(40):
            s = logged_in(server)
            junk = rng.integers(0, 256, int(rng.integers(1, 200)), dtype=np.uint8).tobytes()
            if rng.random() < 0.5:  # a plausible header in front of the junk
                junk = header(8 + len(junk), msg_type=int(rng.integers(0, 2))) + junk
            try:
                s.sendall(junk)
            except (BrokenPipeError, ConnectionResetError):
                pass
            s.close()
        assert still_serving(server)


def test_max_connections_refuses_the_extra_client_and_recovers():
    with qwire.Server(Echo(), limits=Limits(max_connections=3)) as server:
        held = [logged_in(server) for _ in range(3)]
        extra = raw_client(server)
        extra.sendall(hello())
        assert closed_by_peer(extra)  # accepted and closed at once: no reply byte
        extra.close()
        held.pop().close()
        deadline = time.monotonic() + 5
        while len(server._conns) > 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert still_serving(server)
        for s in held:
            s.close()


def test_a_client_that_stops_reading_is_disconnected_not_waited_for():
    """Pushing to a subscriber that never reads fills the socket buffers; after transfer_timeout
    the push raises ConnectionClosed and the server keeps serving."""
    opened = []

    class H(Echo):
        def on_open(self, conn):
            opened.append(conn)

    with qwire.Server(H(), limits=Limits(transfer_timeout=0.5)) as server:
        s = logged_in(server)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        deadline = time.monotonic() + 5
        while not opened and time.monotonic() < deadline:
            time.sleep(0.01)
        chunk = np.zeros(1 << 20, dtype=np.uint8)
        start = time.monotonic()
        with pytest.raises(qwire.ConnectionClosed):
            for _ in range(1000):  # at most 1 GB, far beyond any socket buffer
                opened[0].send(chunk)
        assert time.monotonic() - start < 5
        assert still_serving(server)
        s.close()


@pytest.mark.slow
def test_thousands_of_connections_opened_and_dropped():
    """2000 connections dropped at every stage (before the hello, inside it, after login, inside a
    message): no thread or connection is left behind and the server still answers."""
    echo = Echo()
    with qwire.Server(echo) as server:
        threads_before = threading.active_count()
        stages = [b"", b"us", hello(), hello() + sync_long(1)[:5]]
        for i in range(2000):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.settimeout(5)
            s.connect(("127.0.0.1", server.port))
            data = stages[i % len(stages)]
            if data:
                s.sendall(data)
            if i % 8 == 0:  # some are reset rather than closed
                s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
            s.close()
        deadline = time.monotonic() + 20
        while (server._conns or threading.active_count() > threads_before) and time.monotonic() < deadline:
            time.sleep(0.02)
        assert not server._conns
        assert threading.active_count() <= threads_before
        assert 500 < len(echo.opened) <= 1000  # the stages that logged in (a reset may beat the hello)
        assert sorted(echo.closed) == sorted(c.id for c in echo.opened)  # each got its on_close
        assert still_serving(server)


def read_message(s):
    def exact(n):
        out = b""
        while len(out) < n:
            chunk = s.recv(n - len(out))
            if not chunk:
                raise ConnectionError("closed")
            out += chunk
        return out

    h = exact(8)
    total = int.from_bytes(h[4:8], "little") + (h[3] << 32)
    return h + exact(total - 8)
