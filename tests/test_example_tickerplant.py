"""examples/tickerplant.py: subscribers get every update of the tables they subscribed to, pushed
as async (`upd; table; data) messages, in order; other tables are not sent to them; a subscriber
that goes away is dropped; anything else is refused. Publisher and subscribers are qwire clients
(KX's clients against the same server: tests/test_ipc_server_peers.py)."""
from __future__ import annotations

import importlib.util
import os
import time

import numpy as np
import pytest

import qwire

EXAMPLE = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "examples", "tickerplant.py")


def load_example():
    spec = importlib.util.spec_from_file_location("tickerplant_example", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_publish_subscribe():
    tp = load_example().Tickerplant()
    with qwire.Server(tp) as server:
        trade_sub = qwire.connect("127.0.0.1", server.port)
        quote_sub = qwire.connect("127.0.0.1", server.port)
        publisher = qwire.connect("127.0.0.1", server.port)
        assert trade_sub(".u.sub", "trade", []) == ["trade", []]  # q sends symbols; str as a char vector here
        assert quote_sub.sync([".u.sub", "quote", []]) == ["quote", []]
        for i in range(5):
            publisher.send([".u.upd", "trade", qwire.Table({"px": np.array([100.0 + i]), "size": np.array([i])})])
        publisher.send([".u.upd", "quote", {"bid": 1.0}])
        got = [trade_sub.receive(timeout=5) for _ in range(5)]
        assert [m[0] for m in got] == ["upd"] * 5 and {m[1] for m in got} == {"trade"}
        assert [float(m[2]["px"][0]) for m in got] == [100.0, 101.0, 102.0, 103.0, 104.0]
        assert quote_sub.receive(timeout=5) == ["upd", "quote", {"bid": 1.0}]
        with pytest.raises(qwire.RequestTimeout):
            quote_sub.receive(timeout=0.2)  # no trade updates for a quote subscriber
        quote_sub.close()
        deadline = time.monotonic() + 5
        while any(tp.subscribers["quote"]) and time.monotonic() < deadline:
            time.sleep(0.01)
        assert not tp.subscribers["quote"]  # dropped on close
        with pytest.raises(qwire.QError, match="only .u.sub"):
            publisher("1+1")  # the tickerplant evaluates nothing
        trade_sub.close()
        publisher.close()
