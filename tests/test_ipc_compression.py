"""Compression on connections, by kdb+'s rule (spec 5.1): between two network namespaces the
test creates (a veth pair, addresses 10.200.x.y that exist only inside them), messages over 2000
bytes are compressed both ways when that halves them; to a local peer they are not unless forced."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import qwire
from qwire.ipc import _protocol as p

from ipc_peers import fake_server, read_hello, read_message

HERE = Path(__file__).parent
#: The qwire this test imported (src/ in a build tree, site-packages in CI), for the child processes.
QWIRE_PARENT = Path(qwire.__file__).resolve().parent.parent
PEER = HERE / "ipc_netns_peer.py"


def _run(*cmd, check=True, **kw):
    return subprocess.run(cmd, check=check, capture_output=True, text=True, timeout=60, **kw)


def _netns_available() -> str | None:
    """Why namespaces cannot be made here, or None if they can."""
    if shutil.which("ip") is None:
        return "no `ip` command"
    if os.geteuid() != 0:
        return "not root"
    name = f"qwprobe{os.getpid()}"
    r = _run("ip", "netns", "add", name, check=False)
    if r.returncode != 0:
        return f"ip netns add failed: {r.stderr.strip()}"
    _run("ip", "netns", "del", name, check=False)
    return None


@pytest.fixture
def namespaces():
    """Two namespaces joined by a veth pair: (client ns, server ns, server address)."""
    why = _netns_available()
    if why is not None:
        pytest.skip(f"network namespaces unavailable ({why}); "
                    "test_forced_compression_over_loopback covers the rule with compression=True")
    tag = os.getpid() % 200
    a, b = f"qwcli{os.getpid()}", f"qwsrv{os.getpid()}"
    va, vb = f"qwa{os.getpid()}"[:15], f"qwb{os.getpid()}"[:15]
    ip_a, ip_b = f"10.200.{tag}.1", f"10.200.{tag}.2"
    try:
        _run("ip", "netns", "add", a)
        _run("ip", "netns", "add", b)
        _run("ip", "link", "add", va, "netns", a, "type", "veth", "peer", "name", vb, "netns", b)
        _run("ip", "-n", a, "addr", "add", f"{ip_a}/24", "dev", va)
        _run("ip", "-n", b, "addr", "add", f"{ip_b}/24", "dev", vb)
        for ns, dev in ((a, va), (b, vb)):
            _run("ip", "-n", ns, "link", "set", dev, "up")
            _run("ip", "-n", ns, "link", "set", "lo", "up")
        yield a, b, ip_b
    finally:
        _run("ip", "netns", "del", a, check=False)
        _run("ip", "netns", "del", b, check=False)


def _in_ns(ns, *args):
    env = {**os.environ, "PYTHONPATH": f"{QWIRE_PARENT}{os.pathsep}{HERE}"}
    return ["ip", "netns", "exec", ns, sys.executable, str(PEER), *args], env


def test_compression_between_namespaces(namespaces):
    """Client and server in different namespaces: a 800 KB array of zeros is sent compressed
    (both ways) and arrives intact; 1.6 KB is not compressed; compression=False turns it off; a
    client in the server's namespace on 127.0.0.1 is local and sends it plain."""
    client_ns, server_ns, server_ip = namespaces
    port = "5001"
    cmd, env = _in_ns(server_ns, "server", "0.0.0.0", port, "4")
    server = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert server.stdout.readline().strip() == "ready"
        cmd, env = _in_ns(client_ns, "client", server_ip, port)
        remote = json.loads(_run(*cmd, env=env).stdout)
        cmd, env = _in_ns(server_ns, "client", "127.0.0.1", port)
        local = json.loads(_run(*cmd, env=env).stdout)
        server.wait(30)
    finally:
        server.kill()
        server.wait()
    assert remote["local"] is False
    assert remote["large"]["compressed"] and remote["large"]["wire_bytes"] < 800_000 // 2
    assert remote["large"]["intact"]  # the response came back compressed and decoded intact
    assert not remote["small"]["compressed"] and remote["small"]["intact"]
    assert not remote["off"]["compressed"]
    assert local["local"] is True
    assert not local["large"]["compressed"] and local["large"]["wire_bytes"] > 800_000


def test_forced_compression_over_loopback():
    """compression=True compresses to a local peer (messages over the threshold, when halved);
    the default does not. The received compressed response decodes."""
    seen = []

    def script(conn):
        read_hello(conn)
        conn.sendall(b"\x06")
        for _ in range(2):
            msg = read_message(conn)
            seen.append(msg[2])
            reply = qwire.dumps(qwire.loads(msg), msg_type="response", compress=True)
            assert reply.compressed
            conn.sendall(reply.copy())

    zeros = np.zeros(50_000)
    with fake_server(script, connections=2) as (host, port):
        for mode in ("auto", True):
            with qwire.connect(host, port, compression=mode) as q:
                np.testing.assert_array_equal(q.sync(zeros, timeout=10), zeros)
    assert seen == [0, 1]
    assert p.should_compress(10_000, local=True, capability=6, mode=True)
