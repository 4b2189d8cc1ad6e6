"""qwire's blocking client (qwire.connect) against aiokdb's server, a real q IPC peer nobody here
wrote, and against scripted fake servers for the handshake."""
from __future__ import annotations

import socket
import threading
import time

import numpy as np
import pytest

import qwire
from qwire.ipc import _protocol as p

from ipc_peers import AiokdbServer, fake_server, read_hello, read_message

aiokdb = pytest.importorskip("aiokdb")  # installed in CI (the test extra); never skipped there
from aiokdb import TypeEnum, cv, kj, ks  # noqa: E402


async def _answer(cmd, writer):
    """q-like answers: a few char-vector queries; anything else is echoed back (aiokdb decodes
    it into its own objects and encodes them again)."""
    if cmd.t == TypeEnum.KC:
        text = cmd.aS()
        if text == "1+1":
            return kj(2)
        if text == "boom":
            raise Exception("boom")
        if text == "push":  # an async message before the response, as a tickerplant would
            writer.write(ks("update"), aiokdb.MessageType.ASYNC)
            return kj(7)
        if text.startswith("sleep "):
            import asyncio

            await asyncio.sleep(float(text[6:]))
            return kj(1)
    return cmd


@pytest.fixture(scope="module")
def aiokdb_server():
    with AiokdbServer(_answer) as server:
        yield server


def test_query_is_a_char_vector_and_response_is_decoded(aiokdb_server):
    """conn("1+1") sends the char vector "1+1" (what q evaluates) and returns the decoded answer."""
    with qwire.connect("127.0.0.1", aiokdb_server.port) as q:
        assert q("1+1") == 2
        assert q.capability == 3  # aiokdb's server replies 3: min(6, 3)
        assert q.local is True
        assert q._sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)  # small requests leave at once


def test_error_reply_raises_qerror_with_q_text(aiokdb_server):
    """An error response raises QError carrying the server's text; the connection stays usable."""
    with qwire.connect("127.0.0.1", aiokdb_server.port) as q:
        with pytest.raises(qwire.QError) as e:
            q("boom")
        assert e.value.text == "boom"
        assert q("1+1") == 2


def test_sync_sends_values_exactly_and_args_as_a_list(aiokdb_server):
    """sync(value) sends value as given; conn(query, *args) sends (query; args...)."""
    with qwire.connect("127.0.0.1", aiokdb_server.port) as q:
        np.testing.assert_array_equal(q.sync(np.arange(5)), np.arange(5))
        d = q.sync({"a": np.arange(3), "b": np.array([1.5, 2.5])})
        np.testing.assert_array_equal(d["a"], np.arange(3))
        np.testing.assert_array_equal(d["b"], [1.5, 2.5])
        echoed = q("f", 1, "sym")
        assert echoed[0] == b"f" and echoed[1] == 1 and echoed[2] == "sym"


def test_async_message_reaches_the_server(aiokdb_server):
    """send(value) is an async message: the server's .z.ps gets it, nothing comes back."""
    aiokdb_server.context.asyncs.clear()
    with qwire.connect("127.0.0.1", aiokdb_server.port) as q:
        q.send(["upd", "trade", np.arange(3)])
        assert q("1+1") == 2  # answered after the async message was read
    deadline = time.monotonic() + 5
    while not aiokdb_server.context.asyncs and time.monotonic() < deadline:
        time.sleep(0.01)
    msg = aiokdb_server.context.asyncs[0]
    assert msg.t == 0 and len(msg) == 3


def test_async_message_during_request_is_kept_for_receive(aiokdb_server):
    """An async message that arrives while a request waits is queued for receive(), not lost."""
    with qwire.connect("127.0.0.1", aiokdb_server.port) as q:
        assert q("push") == 7
        assert q.receive(timeout=5) == "update"
        with pytest.raises(qwire.RequestTimeout):
            q.receive(timeout=0.05)


def test_async_message_during_request_goes_to_callback(aiokdb_server):
    """With on_async, unasked messages go to the callback instead of the queue."""
    got = []
    with qwire.connect("127.0.0.1", aiokdb_server.port, on_async=got.append) as q:
        assert q("push") == 7
    assert got == ["update"]


def test_request_timeout_drops_late_response_and_connection_stays_usable(aiokdb_server):
    """A request that times out raises RequestTimeout (a TimeoutError); its late response is
    dropped and the next request gets its own answer."""
    with qwire.connect("127.0.0.1", aiokdb_server.port) as q:
        with pytest.raises(qwire.RequestTimeout) as e:
            q.sync(b"sleep 0.3", timeout=0.05)
        assert isinstance(e.value, TimeoutError)
        assert q("1+1") == 2


def test_many_threads_share_one_connection(aiokdb_server):
    """Requests from several threads at once each get their own response."""
    errors = []
    with qwire.connect("127.0.0.1", aiokdb_server.port) as q:
        def work(i):
            try:
                for j in range(20):
                    assert q.sync([i, j]) == [i, j]
            except BaseException as e:  # noqa: BLE001
                errors.append(e)

        threads = [threading.Thread(target=work, args=(i,)) for i in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        assert not any(t.is_alive() for t in threads)
    assert errors == []


def test_refused_credentials_raise_authentication_error():
    """aiokdb's server with a password closes on a wrong one: AuthenticationError."""
    with AiokdbServer(_answer, password="secret") as server:
        with pytest.raises(qwire.AuthenticationError) as e:
            qwire.connect("127.0.0.1", server.port, user="u", password="wrong")
        assert isinstance(e.value, ConnectionError)
        with qwire.connect("127.0.0.1", server.port, user="u", password="secret") as q:
            assert q("1+1") == 2


def test_unix_socket_to_aiokdb(tmp_path):
    """connect(unix=PATH) speaks the same protocol over a Unix socket, which counts as local."""
    path = str(tmp_path / "kx.5001")
    with AiokdbServer(_answer, unix=path):
        with qwire.connect(unix=path) as q:
            assert q("1+1") == 2 and q.local


# --- the handshake, against scripted servers ---------------------------------------------------
def _serve_reply(reply: bytes, seen: list):
    def script(conn):
        seen.append(read_hello(conn))
        conn.sendall(reply)
        msg = read_message(conn)
        seen.append(msg)
        conn.sendall(qwire.dumps(qwire.loads(msg), msg_type="response").copy())
    return script


def test_hello_bytes_and_capability_cap():
    """The client sends user:password, capability 6, NUL; the server's byte caps the capability."""
    seen = []
    with fake_server(_serve_reply(b"\x03", seen)) as (host, port):
        with qwire.connect(host, port, user="u", password="p") as q:
            assert q.capability == 3
            assert q.sync(1) == 1
    assert seen[0] == b"u:p\x06\x00"
    assert seen[1] == qwire.dumps(1, msg_type="sync").copy()


def test_server_closing_in_handshake_is_authentication_error():
    """kdb+ refuses by closing without a reply: AuthenticationError saying so."""
    with fake_server(lambda conn: read_hello(conn)) as (host, port):
        with pytest.raises(qwire.AuthenticationError, match="access"):
            qwire.connect(host, port)


def test_server_silent_in_handshake_times_out():
    """A server that never replies to the hello: RequestTimeout within the connect timeout."""
    release = threading.Event()

    def script(conn):
        read_hello(conn)
        release.wait(10)

    with fake_server(script) as (host, port):
        t0 = time.monotonic()
        with pytest.raises(qwire.RequestTimeout):
            qwire.connect(host, port, timeout=0.3)
        assert time.monotonic() - t0 < 3
        release.set()


def test_connection_refused_is_connection_closed():
    """Nothing listening: a qwire ConnectionError naming the peer."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    with pytest.raises(qwire.IPCError) as e:
        qwire.connect("127.0.0.1", port)
    assert f"127.0.0.1:{port}" in str(e.value)


def test_sync_request_from_server_gets_error_reply_or_handler_answer():
    """A sync request from the server while a request waits: an error reply without on_sync, the
    handler's value with it; the client's own request is answered after."""
    replies = []

    def script(conn):
        read_hello(conn)
        conn.sendall(b"\x06")
        for _ in range(2):
            read_message(conn)                                         # the client's request
            conn.sendall(qwire.dumps(b"who", msg_type="sync").copy())  # the server asks back
            replies.append(read_message(conn))
            conn.sendall(qwire.dumps(42, msg_type="response").copy())

    with fake_server(script) as (host, port):
        with qwire.connect(host, port) as q:
            assert q.sync(0) == 42
            q.on_sync = lambda value: value + b"!"
            assert q.sync(0) == 42
    assert replies[0][1] == p.RESPONSE
    with pytest.raises(qwire.QError, match="no on_sync handler"):
        qwire.loads(replies[0])
    assert replies[1][1] == p.RESPONSE and qwire.loads(replies[1]) == b"who!"


def test_response_to_no_request_is_protocol_error():
    """A response nobody asked for breaks the protocol: the connection closes with a clear error."""
    def script(conn):
        read_hello(conn)
        conn.sendall(b"\x06" + qwire.dumps(1, msg_type="response").copy())
        time.sleep(0.5)

    with fake_server(script) as (host, port):
        with qwire.connect(host, port) as q:
            with pytest.raises(qwire.ProtocolError, match="response to no request"):
                q.receive(timeout=5)
            assert q.closed


def test_timeouts_default_to_the_limits():
    """connect's timeouts come from limits= unless given: a silent server trips
    Limits(connect_timeout=...)."""
    import threading as _t

    release = _t.Event()

    def script(conn):
        read_hello(conn)
        release.wait(10)

    with fake_server(script) as (host, port):
        t0 = time.monotonic()
        with pytest.raises(qwire.RequestTimeout):
            qwire.connect(host, port, limits=qwire.ipc.Limits(connect_timeout=0.2))
        assert time.monotonic() - t0 < 2
        release.set()


def _echo_script(requests: int):
    """Accept (capability 6), answer `requests` sync requests with their own value, close."""
    def script(conn):
        read_hello(conn)
        conn.sendall(b"\x06")
        for _ in range(requests):
            msg = read_message(conn)
            conn.sendall(b"\x01\x02" + msg[2:])
    return script


def _answer_then_drop(answered: int):
    """Like _echo_script(answered), then read one more request and close without answering it."""
    def script(conn):
        _echo_script(answered)(conn)
        read_message(conn)
    return script


def test_reconnect_after_the_server_dropped_the_connection():
    """With reconnect=, the request in flight when the connection went raises ConnectionClosed
    (it is not resent: it may have run); the next request reconnects and is answered."""
    scripts = iter([_answer_then_drop(1), _echo_script(5)])
    with fake_server(lambda conn: next(scripts)(conn), connections=2) as (host, port):
        with qwire.connect(host, port, reconnect=3) as q:
            assert q.sync(1, timeout=5) == 1
            with pytest.raises(qwire.ConnectionClosed):
                q.sync(2, timeout=5)
            assert q.closed
            assert q.sync(3, timeout=5) == 3
            assert not q.closed


def test_reconnect_before_writing_to_a_connection_the_peer_closed():
    """With reconnect=, a request made after the server closed the connection (between
    requests, as a restarted server does) is not written to the dead socket: the client
    notices the close, reconnects and the request is answered; each side sees its messages once."""
    seen = []
    closed = threading.Event()

    def first(conn):
        _echo_script(1)(conn)
        closed.set()

    def second(conn):
        read_hello(conn)
        conn.sendall(b"\x06")
        for _ in range(2):
            msg = read_message(conn)
            seen.append(msg)
            conn.sendall(b"\x01\x02" + msg[2:])

    scripts = iter([first, second])
    with fake_server(lambda conn: next(scripts)(conn), connections=2) as (host, port):
        with qwire.connect(host, port, reconnect=3) as q:
            assert q.sync(1, timeout=5) == 1
            assert closed.wait(5)
            time.sleep(0.2)  # the close reaches the client's socket
            assert q.sync(2, timeout=5) == 2
            assert q.sync(3, timeout=5) == 3
    assert [qwire.loads(m) for m in seen] == [2, 3]


def test_without_reconnect_a_lost_connection_stays_closed():
    """Without reconnect, every request after the loss raises ConnectionClosed at once."""
    with fake_server(_echo_script(1)) as (host, port):
        with qwire.connect(host, port) as q:
            assert q.sync(1, timeout=5) == 1
            with pytest.raises(qwire.ConnectionClosed):
                q.sync(2, timeout=5)
            with pytest.raises(qwire.ConnectionClosed, match="lost"):
                q.sync(3, timeout=5)


def test_q_compatible_refuses_python_only_values_before_sending():
    """By default what is sent is what q reads: a tuple is an EncodeError and nothing is sent;
    with q_compatible=False a qwire peer receives it as a tuple."""
    seen = []

    def script(conn):
        read_hello(conn)
        conn.sendall(b"\x06")
        msg = read_message(conn)
        seen.append(qwire.loads(msg))
        conn.sendall(qwire.dumps(qwire.loads(msg), msg_type="response").copy())

    with fake_server(script, connections=2) as (host, port):
        with qwire.connect(host, port) as q:
            with pytest.raises(qwire.EncodeError):
                q.sync((1, 2))
        with qwire.connect(host, port, q_compatible=False) as q:
            assert q.sync((1, {2}), timeout=5) == (1, {2})
    assert seen == [(1, {2})]


def test_nested_request_from_a_callback_is_answered_in_order():
    """on_async may itself make a request on the same connection (q's nested sync): both
    requests get their own answers."""
    def script(conn):
        read_hello(conn)
        conn.sendall(b"\x06")
        read_message(conn)                                    # the outer request
        conn.sendall(qwire.dumps("tick").copy())              # an update, which triggers a request
        conn.sendall(qwire.dumps("outer", msg_type="response").copy())
        read_message(conn)                                    # the callback's request
        conn.sendall(qwire.dumps("inner", msg_type="response").copy())
        time.sleep(0.5)

    inner = []
    with fake_server(script) as (host, port):
        with qwire.connect(host, port) as q:
            q.on_async = lambda value: inner.append(q.sync(value, timeout=5))
            assert q.sync(0, timeout=5) == "outer"
            deadline = time.monotonic() + 5
            while not inner and time.monotonic() < deadline:
                with pytest.raises(qwire.RequestTimeout):
                    q.receive(timeout=0.1)
    assert inner == ["inner"]
