"""Peers for the connection tests: aiokdb's server (a real implementation nobody here wrote) in a
background thread, and a scripted fake server for handshake and hostile cases. Everything binds
to 127.0.0.1 or a Unix socket only."""
from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
from collections.abc import Callable, Iterator
from typing import Any


class AiokdbServer:
    """aiokdb's q server on 127.0.0.1 (port 0), with a handler that answers sync requests:
    a char vector "echo"-less request is answered by `answer(cmd, writer)`."""

    def __init__(self, answer: Callable[[Any, Any], Any], password: str | None = None,
                 unix: str | None = None, ssl: Any = None) -> None:
        from aiokdb import server as aserver

        class Context(aserver.ServerContext):
            async def on_sync_request(self, cmd, dotzw):  # .z.pg
                return await answer(cmd, dotzw)

            async def on_async_message(self, cmd, dotzw):  # .z.ps
                self.asyncs.append(cmd)

        self.context = Context(password)
        self.context.asyncs = []
        self._unix = unix
        self._ssl = ssl
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self.port = 0

    def _run(self) -> None:
        from functools import partial

        from aiokdb import server as aserver

        asyncio.set_event_loop(self._loop)

        async def start() -> None:
            handler = partial(aserver.handle_connection, self.context)
            if self._unix is not None:
                self._server = await asyncio.start_unix_server(handler, self._unix, ssl=self._ssl)
            else:
                self._server = await asyncio.start_server(handler, "127.0.0.1", 0, ssl=self._ssl)
                self.port = self._server.sockets[0].getsockname()[1]
            self._ready.set()

        self._loop.run_until_complete(start())
        self._loop.run_forever()

    def __enter__(self) -> AiokdbServer:
        self._thread.start()
        assert self._ready.wait(10)
        return self

    def __exit__(self, *exc: object) -> None:
        async def stop() -> None:
            self._server.close()
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        asyncio.run_coroutine_threadsafe(stop(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)


@contextlib.contextmanager
def fake_server(script: Callable[[socket.socket], None], family: int = socket.AF_INET,
                address: Any = ("127.0.0.1", 0), connections: int = 1) -> Iterator[Any]:
    """A server that runs `script(conn)` on each of up to `connections` accepted sockets, in a
    thread; yields the address to connect to. The script's exceptions are re-raised at exit."""
    listener = socket.socket(family, socket.SOCK_STREAM)
    if family != socket.AF_UNIX:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(address)
    listener.listen(8)
    listener.settimeout(20)
    errors: list[BaseException] = []

    def serve() -> None:
        for _ in range(connections):
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            conn.settimeout(20)
            try:
                script(conn)
            except (ConnectionError, BrokenPipeError, socket.timeout):
                pass
            except BaseException as e:  # noqa: BLE001 (reported to the test)
                errors.append(e)
            finally:
                conn.close()

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    try:
        yield listener.getsockname()
    finally:
        listener.close()
        t.join(20)
    if errors:
        raise errors[0]


def read_hello(conn: socket.socket) -> bytes:
    """The client's hello, up to and including its NUL."""
    data = b""
    while not data.endswith(b"\x00"):
        chunk = conn.recv(1)
        if not chunk:
            raise ConnectionError("client went away in the hello")
        data += chunk
    return data


def read_message(conn: socket.socket) -> bytes:
    """One whole message from the client."""
    def exact(n: int) -> bytes:
        out = b""
        while len(out) < n:
            chunk = conn.recv(n - len(out))
            if not chunk:
                raise ConnectionError("client went away")
            out += chunk
        return out

    header = exact(8)
    total = int.from_bytes(header[4:8], "little") + (header[3] << 32)
    return header + exact(total - 8)


def make_certificate(directory: Any) -> tuple[str, str]:
    """A self-signed certificate for localhost / 127.0.0.1 / ::1, made for the test
    (cryptography): the paths of the certificate and its key, PEM."""
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([
            x509.DNSName("localhost"),
            x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
            x509.IPAddress(ipaddress.ip_address("::1")),
        ]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path = str(directory / "cert.pem")
    key_path = str(directory / "key.pem")
    with open(cert_path, "wb") as f:
        f.write(cert.public_bytes(serialization.Encoding.PEM))
    with open(key_path, "wb") as f:
        f.write(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                  serialization.NoEncryption()))
    return cert_path, key_path
