"""Threads: 8 threads share encoders and decoders (and the module-level dumps/loads) over a mix of
valid and invalid inputs for a bounded time. Every outcome must equal the single-threaded one
(value, or exception type and offset): 0 crashes, 0 mismatches. A decoder keeps no state from a
failed message: the next valid message decodes identically.

The compression core and the vectorised temporal conversions release the GIL, so threads do run
inside the codec at the same time; the rest interleaves at the GIL's switch interval, which the
test shortens to make interleavings frequent.
"""
import datetime as dt
import random
import sys
import threading
import time
import uuid

import numpy as np
import pytest

import qwire
from fuzz import hostile
from qwire import compression
from qwire.errors import DecodeError, QError
from strategies import same
from wire import message

THREADS = 8
SECONDS = 4.0


def values():
    rows = 500
    return [
        1, -2.5, "sym", b"chars", None, True, uuid.UUID(int=99), dt.date(2020, 2, 29),
        dt.datetime(2021, 5, 6, 7, 8, 9, 10000), np.int16(-3), np.float32(1.5),
        [1, [2, [3, ["deep"]]], {"k": b"v"}],
        {"a": np.arange(1000), "b": np.array(["x", "y"] * 50, dtype=object)},
        np.arange(3000, dtype="int64").astype("datetime64[ns]"),  # GIL-free conversion on decode
        qwire.Table({"i": np.arange(rows), "f": np.linspace(0, 1, rows),
                     "s": np.array(["a", "b"] * (rows // 2), dtype=object)}),
        qwire.Lambda("{x*y}", ".ctx"),
        np.zeros(20000, dtype=np.uint8),  # compresses well
    ]


def corpus():
    """(kind, input): valid plain, valid compressed (GIL-free), invalid, q errors, out-of-band."""
    items = []
    for v in values():
        m = bytes(qwire.dumps(v))
        items.append(("plain", m))
        z = compression.compress(m)
        if compression.is_compressed(z):
            items.append(("compressed", z))
    for _, m, _ in hostile.named_cases() + hostile.compression_cases():
        if len(m) < 100_000:
            items.append(("invalid", m))
    items.append(("qerror", hostile.message(b"\x80boom\x00", msg_type=2)))
    bufs = []
    oob = bytes(qwire.dumps(np.arange(100_000, dtype=np.float64), buffer_callback=bufs.append))
    items.append(("oob", (oob, [bytes(b) for b in bufs])))
    return items


def outcome(fn):
    try:
        return ("ok", fn())
    except DecodeError as e:
        return ("DecodeError", e.offset, e.reason)
    except QError as e:
        return ("QError", e.text)
    except Exception as e:  # noqa: BLE001 - anything else is recorded and fails the comparison
        return ("other", type(e).__name__, str(e))


def agree(a, b):
    if a[0] != b[0]:
        return False
    if a[0] == "ok":
        return same(a[1], b[1])
    return a == b


def decode_with(dec, item):
    kind, data = item
    if kind == "oob":
        msg, bufs = data
        return outcome(lambda: dec.decode(msg, buffers=bufs))
    return outcome(lambda: dec.decode(data))


def run_threads(worker, timeout):
    """worker(t) in THREADS threads at once; none may still be running after `timeout` seconds."""
    threads = [threading.Thread(target=worker, args=(t,)) for t in range(THREADS)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(timeout)
    assert not any(th.is_alive() for th in threads), "a thread hung"


@pytest.fixture
def fast_switching():
    old = sys.getswitchinterval()
    sys.setswitchinterval(1e-5)
    yield
    sys.setswitchinterval(old)


def test_shared_decoders_and_encoders_agree_with_single_threaded(fast_switching):
    items = corpus()
    vals = values()
    shared_dec = qwire.Decoder()
    shared_small = qwire.Decoder(max_depth=8, max_decompressed_size=1 << 16)
    shared_enc = qwire.Encoder("sync")
    expected = [decode_with(shared_dec, it) for it in items]
    expected_small = [decode_with(shared_small, it) for it in items]
    expected_bytes = [bytes(shared_enc.encode(v)) for v in vals]
    assert all(e[0] != "other" for e in expected), [e for e in expected if e[0] == "other"]

    mismatches, counts, errors = [], [0] * THREADS, []
    stop = time.monotonic() + SECONDS

    def worker(t):
        rng = random.Random(t)
        try:
            while time.monotonic() < stop:
                r = rng.random()
                if r < 0.45:
                    i = rng.randrange(len(items))
                    got = decode_with(shared_dec, items[i])
                    if not agree(got, expected[i]):
                        mismatches.append(("decoder", i, got[:2], expected[i][:2]))
                elif r < 0.6:
                    i = rng.randrange(len(items))
                    got = decode_with(shared_small, items[i])
                    if not agree(got, expected_small[i]):
                        mismatches.append(("small decoder", i, got[:2], expected_small[i][:2]))
                elif r < 0.75:
                    i = rng.randrange(len(items))
                    kind, data = items[i]
                    if kind != "oob":
                        got = outcome(lambda: qwire.loads(data))
                        if not agree(got, expected[i]):
                            mismatches.append(("loads", i, got[:2], expected[i][:2]))
                else:
                    j = rng.randrange(len(vals))
                    enc = shared_enc if r < 0.9 else None
                    b = bytes(enc.encode(vals[j])) if enc else bytes(qwire.dumps(vals[j], msg_type="sync"))
                    if b != expected_bytes[j]:
                        mismatches.append(("encoder", j))
                counts[t] += 1
        except BaseException as e:  # noqa: BLE001
            errors.append(e)

    run_threads(worker, SECONDS + 60)
    assert not errors, errors[:3]
    assert not mismatches, f"{len(mismatches)} mismatches, e.g. {mismatches[:3]}"
    assert min(counts) > 10 and sum(counts) > 1000, counts


def test_stream_decoders_one_per_thread(fast_switching):
    """Each thread streams its own messages through its own Decoder in random chunk sizes, the bad
    interleaved with the good: every good one decodes as single-threaded, every bad body raises."""
    good = [bytes(qwire.dumps(v)) for v in values()]
    bad = hostile.message(hostile.vec(1, 2, b"\x01\x07"))
    expected = [qwire.loads(m) for m in good]
    errors, mismatches = [], []
    stop = time.monotonic() + SECONDS / 2

    def worker(t):
        rng = random.Random(100 + t)
        dec = qwire.Decoder()
        try:
            while time.monotonic() < stop:
                order = [rng.randrange(len(good)) for _ in range(5)]
                stream = b"".join(good[i] + bad for i in order)
                pos = 0
                while pos < len(stream):
                    k = rng.choice((1, 7, 100, 4096, 65536))
                    dec.feed(stream[pos : pos + k])
                    pos += k
                for i in order:
                    if not same(next(dec), expected[i]):
                        mismatches.append(i)
                    with pytest.raises(DecodeError):
                        next(dec)
                assert dec.pending == 0 and next(dec, None) is None
        except BaseException as e:  # noqa: BLE001
            errors.append(e)

    run_threads(worker, SECONDS + 60)
    assert not errors, errors[:3]
    assert not mismatches


def test_decoder_state_after_failure():
    """The same decoder, after each kind of failure (including a q error and a refused out-of-band
    read), decodes the next valid message identically."""
    dec = qwire.Decoder()
    items = corpus()
    goods = [it for it in items if it[0] in ("plain", "compressed")]
    firsts = [decode_with(qwire.Decoder(), g) for g in goods]
    for kind, data in items:
        if kind in ("invalid", "qerror"):
            r = decode_with(dec, (kind, data))
            assert r[0] in ("DecodeError", "QError"), r
        if kind == "oob":
            assert decode_with(dec, (kind, (data[0], data[1][:0])))[0] == "DecodeError"
        for g, first in zip(goods[:5], firsts[:5]):
            assert agree(decode_with(dec, g), first)


class _Slow:
    """Registered with encode/decode functions that run Python code (so threads switch in the
    middle of a message) and hold references of their own."""

    def __init__(self, items):
        self.items = items


def _slow_encode(s):
    sum(range(50))
    return s.items


def _slow_decode(items):
    sum(range(50))
    return _Slow(items)


def test_refs_states_shared_between_threads(fast_switching):
    """refs=True from many threads at once, through dumps/loads and through one shared Encoder and
    Decoder, good messages mixed with failing ones: each state taken by one call is used by that
    call only (the others make their own), so every message comes out as single-threaded."""
    reg = qwire.Registry()
    reg.register(_Slow, encode=_slow_encode, decode=_slow_decode)
    a, b = [1, "x"], {"k": [2.5]}
    vals = [[a, a, b, b], {"p": a, "q": [_Slow([a, b]), a, b]}, [_Slow([a]), _Slow([b, b])] * 3,
            [[i] for i in range(30)] * 2, (a, [a, (b,)])]
    expected = [bytes(qwire.dumps(v, refs=True, registry=reg)) for v in vals]
    bad_values = [[a, object()], [a, _Slow([a, object()])]]
    bad_msgs = [message(e[8:k]) for e in expected for k in (9, len(e) // 2, len(e) - 1)]
    shared_enc = qwire.Encoder(refs=True, registry=reg)
    shared_dec = qwire.Decoder(registry=reg)
    mismatches, errors = [], []

    def worker(t):
        rng = random.Random(t)
        try:
            for _ in range(1000):
                r = rng.random()
                j = rng.randrange(len(vals))
                if r < 0.3:
                    enc = shared_enc.encode if r < 0.15 else (lambda v: qwire.dumps(v, refs=True, registry=reg))
                    if bytes(enc(vals[j])) != expected[j]:
                        mismatches.append(("encode", j))
                elif r < 0.6:
                    dec = shared_dec.decode if r < 0.45 else (lambda m: qwire.loads(m, registry=reg))
                    got = dec(expected[j])
                    if bytes(qwire.dumps(got, refs=True, registry=reg)) != expected[j]:
                        mismatches.append(("decode", j))
                elif r < 0.8:
                    try:
                        shared_enc.encode(rng.choice(bad_values))
                        mismatches.append(("no EncodeError",))
                    except qwire.EncodeError:
                        pass
                else:
                    try:
                        shared_dec.decode(rng.choice(bad_msgs))
                        mismatches.append(("no DecodeError",))
                    except DecodeError:
                        pass
        except BaseException as e:  # noqa: BLE001
            errors.append(e)

    run_threads(worker, 120)
    assert not errors, errors[:3]
    assert not mismatches, f"{len(mismatches)} mismatches, e.g. {mismatches[:3]}"
