"""Real clients nobody here wrote against qwire's server: PyKX's (KX's own C library, run
unlicensed), kola (a Rust implementation) and aiokdb (pure Python). The server runs in another
process (tests/ipc_server_process.py): PyKX's connect holds the GIL, so a server thread in this
process would deadlock it. These packages are in the test extra: never skipped in CI."""
from __future__ import annotations

import asyncio
import os
import subprocess
import sys

import numpy as np
import pytest

from ipc_server_process import BIG_COUNT

import qwire

HERE = os.path.dirname(os.path.abspath(__file__))
QWIRE_PARENT = os.path.dirname(os.path.dirname(os.path.abspath(qwire.__file__)))


class ServerProcess:
    def __init__(self, *args: str) -> None:
        # the qwire this test imported (an installed one in CI, src/ with an in-place build here)
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([QWIRE_PARENT, HERE])}
        self.proc = subprocess.Popen([sys.executable, os.path.join(HERE, "ipc_server_process.py"), *args],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env)
        line = self.proc.stdout.readline()
        if not line.strip():
            self.stop()
            raise RuntimeError("the qwire server process did not start")
        self.port = int(line)

    def stop(self) -> None:
        self.proc.stdin.close()
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)


@pytest.fixture(scope="module")
def server():
    s = ServerProcess()
    yield s
    s.stop()
    assert s.proc.returncode == 0


@pytest.fixture(scope="module")
def password_server():
    s = ServerProcess("--password", "secret")
    yield s
    s.stop()


# --- PyKX ------------------------------------------------------------------------------------
def test_pykx_sync_query(kx, server):
    with kx.SyncQConnection("127.0.0.1", server.port, no_ctx=True) as q:
        assert q("1+1").py() == 2
        t = q("table").pd()
        assert list(t.columns) == ["sym", "px", "qty"]
        assert t["px"].tolist() == [1.5, 2.5, 3.5]
        assert t["sym"].tolist() == ["a", "b", "c"]
        assert q("sum", np.arange(100, dtype=np.int64)).py() == 4950


def test_pykx_error_reply_raises_its_qerror(kx, server):
    with kx.SyncQConnection("127.0.0.1", server.port, no_ctx=True) as q:
        with pytest.raises(kx.QError, match="boom"):
            q("boom")
        with pytest.raises(kx.QError, match="a Python exception"):
            q("fail")
        assert q("1+1").py() == 2  # the connection is still good


def test_pykx_async_messages_reach_on_async(kx, server):
    with kx.SyncQConnection("127.0.0.1", server.port, no_ctx=True) as q:
        before = len(q("asyncs").py())
        q("note1", wait=False)
        q("note2", wait=False)
        got = q("asyncs").py()  # a sync request after them: handled after them
        assert [bytes(x) if not isinstance(x, bytes) else x for x in got[before:]] == [b"note1", b"note2"]


def test_pykx_asyncqconnection(kx, server):
    async def run():
        async with await kx.AsyncQConnection("127.0.0.1", server.port, no_ctx=True) as q:
            a = await q("1+1")
            b = await q("sum", np.arange(10, dtype=np.int64))
            with pytest.raises(kx.QError, match="boom"):
                await q("boom")
            return a.py(), b.py()

    assert asyncio.run(run()) == (2, 45)


@pytest.mark.slow
def test_pykx_message_over_100mb_both_ways(kx, server):
    """A 120 MB request echoed back, and a 112 MB response, through KX's client."""
    a = np.random.default_rng(5).standard_normal(15_000_000)
    with kx.SyncQConnection("127.0.0.1", server.port, no_ctx=True) as q:
        back = q("echo", a).np()
        assert back.nbytes > 100 << 20
        assert np.array_equal(back, a)
        big = q("big").np()
        assert big.shape == (BIG_COUNT,) and big[-1] == BIG_COUNT - 1 and big[12345] == 12345


def test_pykx_credentials(kx, password_server):
    with kx.SyncQConnection("127.0.0.1", password_server.port, username="u", password="secret", no_ctx=True) as q:
        assert q("1+1").py() == 2
    with pytest.raises(Exception) as e:  # noqa: PT011 (PyKX's own error type for 'access varies)
        kx.SyncQConnection("127.0.0.1", password_server.port, username="u", password="bad", no_ctx=True)
    assert "access" in str(e.value).lower() or "closed" in str(e.value).lower() or "auth" in str(e.value).lower()


# --- kola (Rust) -----------------------------------------------------------------------------
def test_kola_sync_async_and_errors(server):
    """kola takes and returns polars objects. (kola reads whatever message comes next as the
    response, so a push during a request would answer it: not tested, kola's limitation.)"""
    import kola
    import polars as pl

    q = kola.Q("127.0.0.1", server.port, "user", "")
    q.connect()
    try:
        assert q.sync("1+1") == 2
        assert q.sync("sum", pl.Series("a", np.arange(10, dtype=np.int64))) == 45
        back = q.sync("echo", pl.Series("a", np.arange(5, dtype=np.float64)))
        assert back.to_list() == [0.0, 1.0, 2.0, 3.0, 4.0]
        df = q.sync("table")  # kola returns tables as polars DataFrames
        assert df.columns == ["sym", "px", "qty"]
        assert df["px"].to_list() == [1.5, 2.5, 3.5]
        with pytest.raises(kola.KolaError, match="boom"):
            q.sync("boom")
        before = len(q.sync("asyncs"))
        q.asyn("kola-note")
        notes = q.sync("asyncs")
        assert len(notes) == before + 1 and notes[-1] == "kola-note"
    finally:
        q.disconnect()


@pytest.mark.slow
def test_kola_large_message(server):
    import kola
    import polars as pl

    a = np.arange(13_000_000, dtype=np.int64)  # 104 MB
    q = kola.Q("127.0.0.1", server.port, "user", "")
    q.connect()
    try:
        assert np.array_equal(q.sync("echo", pl.Series("a", a)).to_numpy(), a)
    finally:
        q.disconnect()


# --- aiokdb ----------------------------------------------------------------------------------
def test_aiokdb_client(server):
    from aiokdb import KException, TypeEnum, cv, kj, ktn
    from aiokdb.client import open_qipc_connection

    async def run():
        reader, writer = await open_qipc_connection(host="127.0.0.1", port=server.port)
        try:
            two = await writer.sync_req(cv("1+1"))
            assert two.t == -TypeEnum.KJ and two.aJ() == 2  # an atom: negative type
            echoed = await writer.sync_req(kj(-5))
            assert echoed.aJ() == -5
            vec = ktn(TypeEnum.KJ)
            vec.kJ().extend([1, 2, 3])
            back = await writer.sync_req(vec)
            assert list(back.kJ()) == [1, 2, 3]
            with pytest.raises(KException, match="boom"):
                await writer.sync_req(cv("boom"))
            await writer.async_msg(cv("aiokdb-note"))
            notes = await writer.sync_req(cv("asyncs"))
            assert notes.t == TypeEnum.K and notes.kK()[-1].aS() == "aiokdb-note"
        finally:
            writer.writer.close()

    asyncio.run(run())
