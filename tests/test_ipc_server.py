"""qwire.Server's behaviour with well-behaved clients: q's hooks in order, login, error replies,
deferred replies kept in request order, pushes, capability negotiation, many clients at once,
Unix sockets and TLS. Clients are qwire's own and raw sockets speaking the bytes of spec 4."""
from __future__ import annotations

import socket
import ssl
import subprocess
import threading
import time

import numpy as np
import pytest

import qwire
from qwire.ipc import Handler, Limits, ServerConnection

from wire import message as wire_message


class Recorder(Handler):
    """Records every hook call; on_sync answers [value] or raises for "boom"."""

    def __init__(self) -> None:
        self.events: list[tuple] = []
        self.lock = threading.Lock()

    def _add(self, *event: object) -> None:
        with self.lock:
            self.events.append(event)

    def check_login(self, user, password):
        self._add("login", user, password)
        return password != "wrong"

    def on_open(self, conn):
        self._add("open", conn.user)

    def on_sync(self, conn, value):
        self._add("sync", value)
        if value == b"boom":
            raise ValueError("boom")
        if value == b"qerr":
            raise qwire.QError("type")
        return [value]

    def on_async(self, conn, value):
        self._add("async", value)

    def on_close(self, conn):
        self._add("close", conn.user)


def wait_until(cond, timeout=5.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if cond():
            return True
        time.sleep(0.005)
    return cond()


def test_hooks_run_in_q_order_and_sync_returns_the_response():
    """check_login, on_open, on_sync (its result is the response), on_async, on_close, in order."""
    h = Recorder()
    with qwire.Server(h) as server:
        with qwire.connect("127.0.0.1", server.port, user="ann", password="pw") as q:
            assert q.sync(42) == [42]
            q.send("note")
            assert q.sync(1) == [1]  # answered after the async message was handled
        assert wait_until(lambda: ("close", "ann") in h.events)
    assert h.events == [("login", "ann", "pw"), ("open", "ann"), ("sync", 42), ("async", "note"),
                        ("sync", 1), ("close", "ann")]


def test_a_plain_callable_is_the_on_sync_hook():
    with qwire.Server(lambda conn, value: value * 2) as server, qwire.connect("127.0.0.1", server.port) as q:
        assert q.sync(21) == 42
        assert np.array_equal(q.sync(np.arange(5)), np.arange(5) * 2)


def test_refused_login_closes_without_reply_and_skips_open_and_close():
    """check_login False: the client gets AuthenticationError ('access); no on_open/on_close."""
    h = Recorder()
    with qwire.Server(h) as server:
        with pytest.raises(qwire.AuthenticationError):
            qwire.connect("127.0.0.1", server.port, user="bob", password="wrong")
        time.sleep(0.05)
    assert h.events == [("login", "bob", "wrong")]


def test_check_login_exception_refuses():
    class H(Handler):
        def check_login(self, user, password):
            raise RuntimeError("database down")

    with qwire.Server(H()) as server, pytest.raises(qwire.AuthenticationError):
        qwire.connect("127.0.0.1", server.port)


def test_exception_in_on_sync_is_an_error_reply_and_the_connection_stays():
    with qwire.Server(Recorder()) as server, qwire.connect("127.0.0.1", server.port) as q:
        with pytest.raises(qwire.QError) as e:
            q("boom")
        assert e.value.text == "boom"
        with pytest.raises(qwire.QError) as e:
            q("qerr")
        assert e.value.text == "type"  # a QError's text as is, as q's 'type
        assert q.sync(5) == [5]


def test_no_on_sync_hook_answers_an_error():
    class OnlyAsync:
        def on_async(self, conn, value):
            pass

    with qwire.Server(OnlyAsync()) as server, qwire.connect("127.0.0.1", server.port) as q:
        with pytest.raises(qwire.QError, match="no on_sync hook"):
            q("1+1")


def test_unencodable_response_is_an_error_reply():
    with qwire.Server(lambda c, v: object()) as server, qwire.connect("127.0.0.1", server.port) as q:
        with pytest.raises(qwire.QError, match="cannot encode the response"):
            q.sync(1)
        with pytest.raises(qwire.QError):
            q.sync(2)  # still answering


def test_the_server_evaluates_nothing():
    """A q expression is data: the handler sees the char vector, nothing runs."""
    seen = []
    with qwire.Server(lambda c, v: seen.append(v) or "ok") as server, qwire.connect("127.0.0.1", server.port) as q:
        assert q('system "touch /tmp/qwire_should_not_exist"') == "ok"
    assert seen == [b'system "touch /tmp/qwire_should_not_exist"']


class Deferring(Handler):
    """Defers every request whose value is negative; answers the rest at once."""

    def __init__(self) -> None:
        self.deferred: list[tuple[ServerConnection, int]] = []

    def on_sync(self, conn, value):
        if value < 0:
            self.deferred.append((conn, value))
            return qwire.DEFERRED
        return value


def test_deferred_reply_is_sent_later_from_another_thread():
    h = Deferring()
    with qwire.Server(h) as server, qwire.connect("127.0.0.1", server.port) as q:
        def answer():
            assert wait_until(lambda: h.deferred)
            conn, value = h.deferred.pop()
            conn.reply(-value * 10)

        t = threading.Thread(target=answer)
        t.start()
        assert q.sync(-4) == 40
        t.join(5)


def test_deferred_error_reply():
    h = Deferring()
    with qwire.Server(h) as server, qwire.connect("127.0.0.1", server.port) as q:
        threading.Timer(0.05, lambda: h.deferred.pop()[0].reply_error("nope")).start()
        with pytest.raises(qwire.QError) as e:
            q.sync(-1)
        assert e.value.text == "nope"


def test_responses_keep_request_order_when_an_earlier_one_is_deferred():
    """Request 1 deferred, request 2 answered at once: 2's answer waits, so each client request
    gets its own response (the protocol has no request ids)."""
    h = Deferring()
    with qwire.Server(h) as server, qwire.connect("127.0.0.1", server.port) as q:
        results: dict[str, object] = {}
        first = threading.Thread(target=lambda: results.__setitem__("first", q.sync(-7)))
        first.start()
        assert wait_until(lambda: h.deferred)
        second = threading.Thread(target=lambda: results.__setitem__("second", q.sync(3)))
        second.start()
        time.sleep(0.1)
        assert results == {}  # the second answer is held back behind the deferred first
        h.deferred.pop()[0].reply(70)
        first.join(5)
        second.join(5)
        assert results == {"first": 70, "second": 3}


def test_reply_with_no_request_waiting_is_an_error():
    conns = []

    class H(Handler):
        def on_open(self, conn):
            conns.append(conn)

        def on_sync(self, conn, value):
            return value

    with qwire.Server(H()) as server, qwire.connect("127.0.0.1", server.port) as q:
        assert q.sync(1) == 1
        with pytest.raises(qwire.NoRequestWaiting):
            conns[0].reply(5)
        with pytest.raises(qwire.NoRequestWaiting):
            conns[0].reply_error("x")
        assert q.sync(2) == 2  # nothing stray was sent


def test_push_async_messages_to_a_client():
    """conn.send pushes; the client receives them in order, unasked."""
    opened = []

    class H(Handler):
        def on_open(self, conn):
            opened.append(conn)

    with qwire.Server(H()) as server, qwire.connect("127.0.0.1", server.port) as q:
        assert wait_until(lambda: opened)
        for i in range(3):
            opened[0].send(["upd", "trade", i])
        assert [q.receive(timeout=5) for _ in range(3)] == [["upd", "trade", i] for i in range(3)]
        assert server.connections == opened


@pytest.mark.parametrize("offered,server_cap,expected", [(6, 6, 6), (3, 6, 3), (6, 3, 3), (1, 6, 1)])
def test_capability_reply_is_the_minimum(offered, server_cap, expected):
    with qwire.Server(lambda c, v: v, capability=server_cap) as server:
        with socket.create_connection(("127.0.0.1", server.port), timeout=5) as s:
            s.sendall(b"u:p" + bytes([offered, 0]))
            assert s.recv(2) == bytes([expected])


def test_hello_without_capability_byte_gets_zero():
    """Very old clients send credentials and NUL only (spec 4): the reply is 0."""
    with qwire.Server(lambda c, v: v) as server:
        with socket.create_connection(("127.0.0.1", server.port), timeout=5) as s:
            s.sendall(b"user\x00")
            assert s.recv(2) == b"\x00"


def test_first_message_in_the_same_packet_as_the_hello():
    """Bytes after the hello's NUL are the first message, not lost."""
    with qwire.Server(lambda c, v: v + 1) as server:
        with socket.create_connection(("127.0.0.1", server.port), timeout=5) as s:
            s.sendall(b"u:p\x03\x00" + wire_message(bytes.fromhex("f9") + (41).to_bytes(8, "little"), msg_type=1))
            assert s.recv(1) == b"\x03"
            data = b""
            while len(data) < 17:
                data += s.recv(64)
            assert qwire.loads(data) == 42
            assert data[1] == 2  # a response


def test_many_clients_at_once():
    """32 clients in threads, 50 requests each, all answered correctly."""
    with qwire.Server(lambda c, v: v * 2) as server:
        errors = []

        def client(k):
            try:
                with qwire.connect("127.0.0.1", server.port) as q:
                    for i in range(50):
                        assert q.sync(k * 1000 + i) == 2 * (k * 1000 + i)
            except BaseException as e:  # noqa: BLE001
                errors.append(e)

        threads = [threading.Thread(target=client, args=(k,)) for k in range(32)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        assert not errors
        assert not any(t.is_alive() for t in threads)


def test_serialize_runs_one_hook_at_a_time():
    """serialize=True (the default): hooks of different connections never overlap."""
    active = []
    overlap = []

    def slow(conn, value):
        active.append(1)
        if len(active) > 1:
            overlap.append(1)
        time.sleep(0.02)
        active.pop()
        return value

    with qwire.Server(slow) as server:
        def client():
            with qwire.connect("127.0.0.1", server.port) as q:
                for i in range(5):
                    q.sync(i)

        threads = [threading.Thread(target=client) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
    assert not overlap


def test_serialize_false_runs_connections_in_parallel():
    barrier = threading.Barrier(2, timeout=5)

    def meet(conn, value):
        barrier.wait()  # only returns if both connections' hooks run at once
        return value

    with qwire.Server(meet, serialize=False) as server:
        out = []
        def client(v):
            with qwire.connect("127.0.0.1", server.port) as q:
                out.append(q.sync(v))

        threads = [threading.Thread(target=client, args=(v,)) for v in (1, 2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(10)
    assert sorted(out) == [1, 2]


def test_close_disconnects_clients_and_calls_on_close():
    h = Recorder()
    server = qwire.Server(h).start()
    q = qwire.connect("127.0.0.1", server.port, user="x", password="y")
    assert q.sync(1) == [1]
    server.close()
    assert ("close", "x") in h.events
    with pytest.raises(qwire.ConnectionClosed):
        q.sync(2)
    q.close()


def test_server_closes_one_connection():
    opened = []

    class H(Handler):
        def on_open(self, conn):
            opened.append(conn)

        def on_sync(self, conn, value):
            return value

    with qwire.Server(H()) as server:
        with qwire.connect("127.0.0.1", server.port) as a, qwire.connect("127.0.0.1", server.port) as b:
            assert wait_until(lambda: len(opened) == 2)
            opened[0].close()
            with pytest.raises(qwire.ConnectionClosed):
                a.sync(1)
            assert b.sync(2) == 2
            with pytest.raises(qwire.ConnectionClosed):
                opened[0].send(1)


def test_unix_socket(tmp_path):
    path = str(tmp_path / "kx.5999")
    with qwire.Server(lambda c, v: v, unix=path) as server:
        assert server.port is None
        with qwire.connect(unix=path) as q:
            assert q.sync("over unix") == "over unix"
            assert q.local


def test_abstract_unix_socket():
    name = f"@/tmp/qwire-test-{time.monotonic_ns()}"
    with qwire.Server(lambda c, v: v, unix=name) as server, qwire.connect(unix=name) as q:
        assert q.sync(7) == 7


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory):
    """A self-signed certificate for 127.0.0.1, made for the test with openssl."""
    d = tmp_path_factory.mktemp("tls")
    cert, key = d / "cert.pem", d / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-keyout", str(key), "-out", str(cert), "-subj", "/CN=127.0.0.1",
                    "-addext", "subjectAltName=IP:127.0.0.1"], check=True, capture_output=True)
    return cert, key


def test_tls(tls_files):
    cert, key = tls_files
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(cert, key)
    client_ctx = ssl.create_default_context(cafile=str(cert))
    big = np.arange(2_000_000, dtype=np.int64)
    with qwire.Server(lambda c, v: v, ssl=server_ctx) as server:
        with qwire.connect("127.0.0.1", server.port, ssl=client_ctx) as q:
            assert q.sync(5) == 5
            assert np.array_equal(q.sync(big), big)
        # a plain client on a TLS server gets no q reply
        with socket.create_connection(("127.0.0.1", server.port), timeout=5) as s:
            s.sendall(b"u:p\x03\x00")
            s.settimeout(5)
            try:
                reply = s.recv(1)
            except ConnectionResetError:
                reply = b""
            assert reply != b"\x03"


def test_large_message_round_trip():
    """A 64 MB array goes and comes back intact (received in place, sent in segments)."""
    a = np.random.default_rng(1).standard_normal(8_000_000)
    with qwire.Server(lambda c, v: v) as server, qwire.connect("127.0.0.1", server.port) as q:
        assert np.array_equal(q.sync(a), a)


def test_limits_are_the_servers():
    limits = Limits(max_message_size=1 << 20, idle_timeout=3.0)
    server = qwire.Server(lambda c, v: v, limits=limits)
    try:
        assert server.limits is limits
    finally:
        server.close()
    with pytest.raises(ValueError):
        qwire.Server(lambda c, v: v, capability=7)
    with pytest.raises(ValueError):
        qwire.Server(lambda c, v: v, compression="sometimes")


def test_a_pre_encoded_message_is_sent_as_it_is():
    """on_sync may return a Message it encoded once (msg_type "response"): sent unchanged; one
    of another type is an error reply."""
    cached = qwire.dumps({"a": np.arange(10)}, msg_type="response", q_compatible=True)
    wrong = qwire.dumps(1, msg_type="async")
    with qwire.Server(lambda c, v: cached if v == 1 else wrong) as server, qwire.connect("127.0.0.1", server.port) as q:
        got = q.sync(1)
        assert list(got) == ["a"] and np.array_equal(got["a"], np.arange(10))
        with pytest.raises(qwire.QError, match="msg_type"):
            q.sync(2)


def test_defer_tokens_answer_their_own_request_whatever_the_order_workers_finish():
    """Three requests deferred with conn.defer(); their workers answer in reverse order: each
    client request still gets its own answer, and the responses leave in request order."""
    tokens = []

    def on_sync(conn, value):
        tokens.append((value, conn.defer()))
        return qwire.DEFERRED

    with qwire.Server(on_sync) as server, qwire.connect("127.0.0.1", server.port) as q:
        results = {}
        threads = []
        for v in (1, 2, 3):
            t = threading.Thread(target=lambda v=v: results.__setitem__(v, q.sync(v)))
            t.start()
            threads.append(t)
            assert wait_until(lambda: len(tokens) == v)
        for value, token in reversed(tokens):  # the last request's worker finishes first
            assert not token.done
            token.reply(value * 100)
            assert token.done
        for t in threads:
            t.join(5)
        assert results == {1: 100, 2: 200, 3: 300}
        with pytest.raises(qwire.NoRequestWaiting, match="already answered"):
            tokens[0][1].reply(0)


def test_defer_outside_on_sync_and_defer_then_return_a_value():
    opened = []

    class H(Handler):
        def on_open(self, conn):
            opened.append(conn)

        def on_sync(self, conn, value):
            token = conn.defer()
            if value == "err":
                token.reply_error("later, but an error")
                return qwire.DEFERRED
            return value  # deferred, then answered at once by the return value

    with qwire.Server(H()) as server, qwire.connect("127.0.0.1", server.port) as q:
        assert q.sync(5) == 5
        with pytest.raises(qwire.QError, match="later, but an error"):
            q.sync("err")
        with pytest.raises(qwire.NoRequestWaiting, match="outside on_sync"):
            opened[0].defer()


def test_defer_from_another_thread_while_on_sync_runs_is_refused():
    """defer() belongs to the thread running on_sync: another thread calling it for the same
    connection at that moment gets NoRequestWaiting, and the request is answered as on_sync says."""
    inside, release, outcome = threading.Event(), threading.Event(), []

    class H(Handler):
        def on_sync(self, conn, value):
            inside.set()
            release.wait(10)
            return value

    with qwire.Server(H()) as server, qwire.connect("127.0.0.1", server.port) as q:
        answer = []
        t = threading.Thread(target=lambda: answer.append(q.sync(7)))
        t.start()
        assert inside.wait(10)
        try:
            server.connections[0].defer()
        except qwire.NoRequestWaiting as e:
            outcome.append(e)
        finally:
            release.set()
        t.join(10)
        assert answer == [7] and len(outcome) == 1 and "outside on_sync" in str(outcome[0])


@pytest.mark.slow
def test_300_connections_open_at_once_are_all_served():
    """300 logged-in clients held open together (a thread each on the server), each answered."""
    with qwire.Server(lambda c, v: v + 1) as server:
        socks = []
        try:
            for _ in range(300):
                s = socket.create_connection(("127.0.0.1", server.port), timeout=10)
                s.sendall(b"u:p\x06\x00")
                socks.append(s)
            for s in socks:
                assert s.recv(1) == b"\x06"
            assert wait_until(lambda: len(server.connections) == 300)
            for i, s in enumerate(socks):
                s.sendall(wire_message(bytes([0xF9]) + i.to_bytes(8, "little"), msg_type=1))
            for i, s in enumerate(socks):
                data = b""
                while len(data) < 17:
                    data += s.recv(64)
                assert qwire.loads(data) == i + 1
        finally:
            for s in socks:
                s.close()
