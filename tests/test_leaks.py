"""No leaks: 10^6 valid round trips and 10^6 rejected messages leave the process's resident memory
where it was after a warm-up (growth under 1 byte per operation). Marked slow: CI runs it; each
test takes well under a minute on a 2-core machine.

RSS is read from /proc/self/statm (Linux); elsewhere the tests skip. Python's allocators keep freed
memory in their pools, so what is measured is growth after the warm-up has filled them, which is
what a leak of even one small object per operation would show (10^6 x >= 16 bytes).
"""
import datetime as dt
import gc
import os
import uuid

import numpy as np
import pytest

import qwire
from fuzz import hostile
from qwire import compression
from qwire.errors import DecodeError, QError

pytestmark = pytest.mark.slow

OPS = 1_000_000
WARMUP = 100_000


def rss():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


if not os.path.exists("/proc/self/statm"):
    pytest.skip("RSS is read from /proc/self/statm (Linux)", allow_module_level=True)


def valid_values():
    return [
        1, 2.5, True, None, "sym", b"chars", uuid.UUID(int=12345), dt.date(2024, 1, 2),
        dt.datetime(2024, 1, 2, 3, 4, 5, 6000), dt.timedelta(seconds=5), np.int32(7),
        [1, "a", 2.5, [b"x", None]],
        {"a": 1, "b": [1, 2], "c": {"d": "e"}},
        np.arange(16, dtype=np.int64), np.linspace(0, 1, 8), np.array(["a", "bb"], dtype=object),
        np.array(["2024-01-01"], dtype="datetime64[ns]"),
        qwire.Table({"x": np.arange(3), "s": np.array(["a", "b", "c"], dtype=object)}),
        qwire.Dict(np.arange(2), np.array([1.5, 2.5])),
        qwire.Lambda("{x+y}"),
        qwire.Projection(qwire.Lambda("{x+y}"), 1),
    ]


def measure(op, n, warmup=WARMUP):
    """RSS growth per call of op(i) over n calls, after `warmup` calls."""
    for i in range(warmup):
        op(i)
    gc.collect()
    before = rss()
    for i in range(n):
        op(i)
    gc.collect()
    return (rss() - before) / n


def test_valid_round_trips_do_not_leak():
    values = valid_values()
    messages = [bytes(qwire.dumps(v)) for v in values]
    big = compression.compress(bytes(qwire.dumps(np.zeros(3000, dtype=np.int64))))
    assert compression.is_compressed(big)
    messages.append(big)
    k = len(values)
    dec = qwire.Decoder()

    def op(i):
        j = i % (k + 1)
        if j == k:
            dec.decode(big)  # a compressed message
        elif i & 1:
            qwire.loads(qwire.dumps(values[j]))
        else:
            dec.decode(memoryview(messages[j]))

    growth = measure(op, OPS)
    assert growth < 1.0, f"RSS grew {growth:.3f} bytes per round trip"


def rejected_messages():
    out = [m for _, m, _ in hostile.named_cases() + hostile.compression_cases() if not _deep(m)]
    out.append(hostile.message(hostile.general_list([hostile.symbols([b"a", b"b"]), hostile.long_atom(1), b"\xff\x05"])))
    out.append(hostile.message(hostile.table(hostile.symbols([b"a", b"b"]), hostile.general_list(
        [hostile.int_vector([1, 2]), hostile.int_vector([3])]))))
    return out


def test_rejected_messages_do_not_leak():
    bad = rejected_messages()
    err = hostile.message(b"\x80oops\x00", msg_type=2)
    oob = hostile.message(b"\x70\x30\x07\x00\x02\x00\x00\x00")
    k = len(bad)
    dec = qwire.Decoder()

    def op(i):
        j = i % (k + 2)
        try:
            if j == k:
                dec.decode(err)  # a q error: QError, the one non-DecodeError outcome
            elif j == k + 1:
                qwire.loads(oob, buffers=[bytes(15)])  # a wrong-size out-of-band buffer
            else:
                dec.decode(bad[j])
        except (DecodeError, QError):
            return
        raise AssertionError(f"message {j} decoded")

    growth = measure(op, OPS)
    assert growth < 1.0, f"RSS grew {growth:.3f} bytes per rejected message"


def _deep(m):
    return m.startswith(hostile.nested_lists(2)[:14]) and len(m) > 1000


def test_rejections_deep_in_nesting_do_not_leak():
    """Failing 256 levels down unwinds 256 partial lists (and tables, dicts): all must be freed.
    Each such rejection costs ~0.5 ms (traceback entries), so fewer operations; a leak of even
    one object per level would be >10 KB per operation."""
    leaf_bad = b"\xff\x02"  # a bad boolean at the bottom
    msgs = [
        hostile.nested_lists(300),
        hostile.message(b"\x00\x00\x01\x00\x00\x00" * 200 + leaf_bad),
        hostile.message(b"\x00\x00\x02\x00\x00\x00\xf5abc\x00" * 200 + leaf_bad),
        hostile.message(b"\x63\x0b\x00\x01\x00\x00\x00a\x00" * 200 + leaf_bad),
    ]

    def op(i):
        try:
            qwire.loads(msgs[i % len(msgs)])
        except DecodeError:
            return
        raise AssertionError("decoded")

    growth = measure(op, 8_000, warmup=1_000)
    assert growth < 1.0, f"RSS grew {growth:.3f} bytes per deep rejection"


def test_stream_rejections_do_not_leak():
    """Decoder.feed: malformed headers (feed raises) and malformed bodies (iteration raises)."""
    bad_header = hostile.header(3)
    bad_body = hostile.message(b"\xff\x02")
    good = hostile.message(b"\xff\x01")

    def op(i):
        dec = qwire.Decoder()
        if i & 1:
            try:
                dec.feed(bad_header)
            except DecodeError:
                return
            raise AssertionError("bad header accepted")
        dec.feed(bad_body + good)
        try:
            next(dec)
        except DecodeError:
            pass
        assert next(dec) is True

    growth = measure(op, OPS // 4)
    assert growth < 1.0, f"RSS grew {growth:.3f} bytes per stream operation"
