"""Thread safety of the Python layer: 8 threads share one Encoder, one refs=True Encoder, one
Decoder and one Registry while more classes are registered, and every result equals the
single-threaded one (registries are copy-on-write; an encode or decode call keeps its own state)."""
from __future__ import annotations

import dataclasses
import datetime as dt
import decimal
import enum
import random
import sys
import threading
import typing

import numpy as np
import pytest

import qwire
from pyvalues import pysame

THREADS = 8
ROUNDS = 150


@dataclasses.dataclass
class Order:
    id: int
    legs: list
    note: object = None


class Leg(typing.NamedTuple):
    sym: str
    qty: int


class Side(enum.Enum):
    BUY = 1
    SELL = 2


class Price:
    def __init__(self, v):
        self.v = decimal.Decimal(v)

    def __eq__(self, other):
        return type(other) is Price and other.v == self.v


def _registry():
    reg = qwire.Registry()
    reg.register(Order)
    reg.register(Leg)
    reg.register(Side)
    reg.register(Price, encode=lambda p: str(p.v), decode=Price)
    return reg


def _values(seed, n=40):
    rng = random.Random(seed)
    out = []
    for i in range(n):
        legs = [Leg(rng.choice("ABCD"), rng.randrange(100)) for _ in range(rng.randrange(4))]
        out.append({
            "order": Order(i, legs, rng.choice([None, Side.BUY, Price("1.25"), (1, 2.5)])),
            "set": {rng.randrange(50) for _ in range(5)},
            "big": rng.getrandbits(100),
            "when": dt.datetime(2024, 1, 1, tzinfo=dt.timezone(dt.timedelta(hours=rng.randrange(-5, 6)))),
            "grid": np.arange(12, dtype="u2").reshape(3, 4) * i,
            "text": "a\0b" * rng.randrange(3),
        })
    return out


def _graphs(n=20):
    out = []
    for i in range(n):
        shared = [i]
        a = {"name": f"a{i}", "shared": shared}
        b = {"name": f"b{i}", "peer": a, "shared": shared}
        a["peer"] = b
        out.append([a, b, (shared, a)])
    return out


@pytest.fixture
def fast_switching():
    old = sys.getswitchinterval()
    sys.setswitchinterval(1e-5)
    yield
    sys.setswitchinterval(old)


def test_shared_encoders_decoders_and_registry_under_registration(fast_switching):
    reg = _registry()
    enc, enc_refs, dec = qwire.Encoder(registry=reg), qwire.Encoder(registry=reg, refs=True), qwire.Decoder(registry=reg)
    values, graphs = _values(1), _graphs()
    # the single-threaded answers
    expected = [bytes(enc.encode(v)) for v in values]
    decoded = [dec.decode(m) for m in expected]
    expected_graphs = [bytes(enc_refs.encode(g)) for g in graphs]

    failures, registered = [], []
    start = threading.Barrier(THREADS + 1)

    def worker(k):
        rng = random.Random(k)
        try:
            start.wait()
            for _ in range(ROUNDS):
                i = rng.randrange(len(values))
                m = enc.encode(values[i])
                if bytes(m) != expected[i]:
                    failures.append(("encode", k, i))
                if not pysame(dec.decode(m), decoded[i]):
                    failures.append(("decode", k, i))
                j = rng.randrange(len(graphs))
                g = dec.decode(enc_refs.encode(graphs[j]))
                if g[0]["peer"]["peer"] is not g[0] or g[2][0] is not g[0]["shared"]:
                    failures.append(("identity", k, j))
                if bytes(enc_refs.encode(g)) != expected_graphs[j]:
                    failures.append(("graph bytes", k, j))
        except Exception as e:  # noqa: BLE001 - any exception is a failure to report
            failures.append(("raised", k, repr(e)))

    def registrar():
        start.wait()
        for n in range(60):
            cls = dataclasses.make_dataclass(f"Dyn{n}", [("v", int)])
            reg.register(cls)
            registered.append(cls)
            # a class registered a moment ago works from any thread at once
            if dec.decode(enc.encode(cls(n))) != cls(n):
                failures.append(("new class", n))

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(THREADS)]
    threads.append(threading.Thread(target=registrar))
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not any(t.is_alive() for t in threads)
    assert failures == []
    assert len(reg) == 4 + 60 and reg.names()[4:] == [f"Dyn{n}" for n in range(60)]
    for cls in registered:
        assert qwire.loads(qwire.dumps(cls(7), registry=reg), registry=reg) == cls(7)


def test_racing_registrations_of_one_name_admit_exactly_one(fast_switching):
    reg = qwire.Registry()
    classes = [dataclasses.make_dataclass("Same", [("v", int)]) for _ in range(THREADS)]
    outcomes = []
    start = threading.Barrier(THREADS)

    def attempt(cls):
        start.wait()
        try:
            reg.register(cls, "Same")
            outcomes.append("ok")
        except ValueError:
            outcomes.append("refused")

    threads = [threading.Thread(target=attempt, args=(c,)) for c in classes]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(outcomes) == ["ok"] + ["refused"] * (THREADS - 1)
    winner = reg.class_of("Same")
    assert winner in classes and reg.name_of(winner) == "Same" and len(reg) == 1


def test_threads_registering_different_classes_all_land(fast_switching):
    reg = qwire.Registry()
    per_thread = 30
    start = threading.Barrier(THREADS)

    def many(k):
        start.wait()
        for n in range(per_thread):
            reg.register(dataclasses.make_dataclass(f"T{k}_{n}", [("v", int)]))

    threads = [threading.Thread(target=many, args=(k,)) for k in range(THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(reg) == THREADS * per_thread
    assert sorted(reg.names()) == sorted(f"T{k}_{n}" for k in range(THREADS) for n in range(per_thread))
    for name in reg.names():
        cls = reg.class_of(name)
        assert reg.name_of(cls) == name
