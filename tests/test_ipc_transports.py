"""The client over TLS (a certificate the test makes) and Unix sockets, including the abstract
socket a local `q -p P` listens on (@/tmp/kx.P), blocking and asyncio, against aiokdb's server."""
from __future__ import annotations

import asyncio
import os
import ssl

import numpy as np
import pytest

import qwire
import qwire.aio

from ipc_peers import AiokdbServer, make_certificate

aiokdb = pytest.importorskip("aiokdb")  # installed in CI (the test extra); never skipped there
pytest.importorskip("cryptography")     # likewise
from aiokdb import TypeEnum, kj  # noqa: E402


async def _answer(cmd, writer):
    if cmd.t == TypeEnum.KC and cmd.aS() == "1+1":
        return kj(2)
    return cmd


@pytest.fixture(scope="module")
def tls(tmp_path_factory):
    """(server context, client context) around the test's own certificate."""
    cert, key = make_certificate(tmp_path_factory.mktemp("tls"))
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server.load_cert_chain(cert, key)
    client = ssl.create_default_context(cafile=cert)
    return server, client


def test_tls_round_trip(tls):
    """ssl=context wraps the connection in TLS before the handshake (q's tcps://); a 1 MB array
    crosses it intact."""
    server_ctx, client_ctx = tls
    with AiokdbServer(_answer, ssl=server_ctx) as server:
        with qwire.connect("localhost", server.port, ssl=client_ctx) as q:
            assert q("1+1") == 2
            big = np.arange(1 << 17, dtype=np.float64)
            np.testing.assert_array_equal(q.sync(big), big)


def test_tls_refuses_an_unknown_certificate(tls):
    """The default context does not trust the test's certificate: the connect fails clearly."""
    server_ctx, _ = tls
    with AiokdbServer(_answer, ssl=server_ctx) as server:
        with pytest.raises(ssl.SSLCertVerificationError):
            qwire.connect("localhost", server.port, ssl=True)


def test_tls_asyncio(tls):
    """The asyncio client over TLS."""
    server_ctx, client_ctx = tls

    async def main(port):
        q = await qwire.aio.connect("localhost", port, ssl=client_ctx)
        async with q:
            return await q("1+1"), await q.sync(np.arange(100_000))

    with AiokdbServer(_answer, ssl=server_ctx) as server:
        two, arr = asyncio.run(main(server.port))
    assert two == 2
    np.testing.assert_array_equal(arr, np.arange(100_000))


def _kx_port():
    """A port number P for the abstract socket @/tmp/kx.P, per process, so parallel runs differ."""
    return 47000 + os.getpid() % 2000


@pytest.mark.skipif(os.uname().sysname != "Linux", reason="the abstract namespace is Linux's")
def test_unix_true_finds_the_abstract_kx_socket(monkeypatch):
    """connect(port=P, unix=True) reaches the abstract socket @/tmp/kx.P, where a local q -p P
    listens; blocking and asyncio."""
    monkeypatch.delenv("QUDSPATH", raising=False)
    port = _kx_port()
    path = "\0/tmp/kx.%d" % port
    with AiokdbServer(_answer, unix=path):
        with qwire.connect(port=port, unix=True) as q:
            assert q("1+1") == 2
            assert q.local and q.peer == f"unix:@/tmp/kx.{port}"
        with qwire.connect(unix=f"@/tmp/kx.{port}") as q:
            assert q("1+1") == 2

        async def main():
            q = await qwire.aio.connect(port=port, unix=True)
            async with q:
                return await q("1+1")

        assert asyncio.run(main()) == 2


def test_unix_socket_file_asyncio(tmp_path):
    """The asyncio client over a Unix socket file."""
    path = str(tmp_path / "q.sock")

    async def main():
        q = await qwire.aio.connect(unix=path)
        async with q:
            return await q("1+1")

    with AiokdbServer(_answer, unix=path):
        assert asyncio.run(main()) == 2
