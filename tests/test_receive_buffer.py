"""qwire's receive buffer (`_core.Receiver`, behind Decoder.feed and qwire.io / qwire.ipc): for any
chunking, by write() or writable()/commit() and with lent views kept alive or not, the finished
message is byte-identical to what was sent and its largest vector's payload is 64-byte aligned;
memory follows the bytes that have arrived, never a header's claim."""
import tracemalloc

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import qwire
from qwire import _core

MiB = 1 << 20
INITIAL = 1 << 16          # the Receiver's first allocation (RECEIVE_INITIAL)


def _header(total):
    return b"\x01\x00\x00" + (total >> 32).to_bytes(1, "little") + (total & 0xFFFFFFFF).to_bytes(4, "little")


def _receive(data, sizes, use_views, keep_views):
    r = _core.Receiver(data[:8], len(data))
    pos, i, kept = 8, 0, []
    while pos < len(data):
        k = sizes[i % len(sizes)]
        i += 1
        if use_views[i % len(use_views)]:
            view = r.writable(k)
            view[:] = data[pos : pos + len(view)]
            r.commit(len(view))
            pos += len(view)
            if keep_views:
                kept.append(view)        # a live view: growing must not move bytes under it
        else:
            pos += r.write(data[pos : pos + k])
    return r.finish(), kept


MESSAGES = st.lists(
    st.tuples(st.sampled_from(["f8", "i4", "i2", "u1", "i8"]), st.integers(0, 60_000)), min_size=1, max_size=5
).map(lambda specs: [np.arange(n, dtype=dt) for dt, n in specs] + ["sym", {"k": 1.5}])


@settings(max_examples=60, deadline=None)
@given(value=MESSAGES, sizes=st.lists(st.integers(1, 300_000), min_size=1, max_size=6),
       use_views=st.lists(st.booleans(), min_size=1, max_size=4), keep_views=st.booleans())
def test_any_chunking_gives_identical_aligned_bytes(value, sizes, use_views, keep_views):
    """The finished message equals the sent bytes, the largest vector payload is 64-byte
    aligned, and decoding it gives the sent value, whatever the chunking."""
    data = bytes(qwire.dumps(value))
    out, kept = _receive(data, sizes, use_views, keep_views)
    assert out.readonly and bytes(out) == data
    at, length = _core.largest_vector_payload(data)
    assert length == max(a.nbytes for a in value[:-2])
    if at >= 0:
        address = np.frombuffer(out, np.uint8).ctypes.data
        assert (address + at) % 64 == 0
    got = qwire.loads(out)
    for g, e in zip(got, value):
        assert np.array_equal(g, e) if isinstance(e, np.ndarray) else g == e
    del kept


@settings(max_examples=30, deadline=None)
@given(n=st.integers(40_000, 400_000), chunk=st.integers(1_000, 1 << 20))
def test_decoder_feed_aligns_the_largest_vector(n, chunk):
    """A small vector first, the largest later (placed when the buffer reaches the whole
    message or moved by finish): the large vector's data is 64-byte aligned."""
    value = [np.arange(7, dtype=np.int16), np.arange(n, dtype=np.float64), np.arange(n // 3)]
    data = bytes(qwire.dumps(value))
    dec = qwire.Decoder()
    for i in range(0, len(data), chunk):
        dec.feed(data[i : i + chunk])
    got = next(dec)
    assert got[1].ctypes.data % 64 == 0
    assert all(np.array_equal(g, e) for g, e in zip(got, value))


def _peak_while(fn):
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        base = tracemalloc.get_traced_memory()[0]
        fn()
        return tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()


@pytest.mark.parametrize("arrived", [100, 300_000, 3 * MiB])
@pytest.mark.parametrize("how", ["write", "writable"])
def test_a_hostile_claim_gets_memory_only_for_what_arrived(arrived, how):
    """A header claiming a gigabyte, then `arrived` bytes in 64 KiB pieces: the receive
    buffer stays within a constant factor (8x) of what arrived, plus its first allocation."""
    claimed = 1 << 30
    piece = bytes(64 * 1024)

    def receive():
        r = _core.Receiver(_header(claimed), claimed)
        left = arrived
        while left:
            k = min(left, len(piece))
            if how == "write":
                r.write(piece[:k])
            else:
                view = r.writable(k)
                view[:] = piece[:k]
                r.commit(k)
                del view
            left -= k
        assert r.filled == 8 + arrived

    assert _peak_while(receive) <= 8 * arrived + INITIAL + 64 * 1024


def test_growth_reaches_the_whole_message_once_a_quarter_arrived():
    """An honest large message is not doubled up to its size: once a quarter has arrived the
    buffer holds the whole message (peak: about one message, not one and a half)."""
    total = 16 * MiB
    data = _header(total) + bytes(total - 8)

    def receive():
        r = _core.Receiver(data[:8], total)
        for i in range(8, total, MiB):
            r.write(data[i : i + MiB])
        return r.finish()

    assert _peak_while(receive) <= total + 4 * MiB


@pytest.mark.parametrize("chunk", [4096, 64 * 1024, 1 << 20])
def test_a_larger_vector_after_the_placement_is_still_aligned(chunk):
    """The buffer is placed for the largest vector seen when it grows to the whole message
    (here the first, 800 KB); a larger one arriving later (2.4 MB) is aligned by finish()."""
    value = [np.arange(100_000, dtype=np.float64), np.arange(300_000, dtype=np.float64)]
    data = bytes(qwire.dumps(value))
    dec = qwire.Decoder()
    for i in range(0, len(data), chunk):
        dec.feed(data[i : i + chunk])
    got = next(dec)
    assert got[1].ctypes.data % 64 == 0
    assert all(np.array_equal(g, e) for g, e in zip(got, value))


@settings(max_examples=200, deadline=None)
@given(names=st.lists(st.text(st.characters(min_codepoint=1, max_codepoint=0x2FF), max_size=12), min_size=1, max_size=60),
       n=st.integers(1, 50))
def test_the_largest_vector_is_found_after_any_symbol_column(names, n):
    """The walk that places receive buffers skips symbol columns of any names (counting NULs
    eight bytes at a time) and lands on the vector after them; a cut-off column is refused."""
    data = bytes(qwire.dumps([np.array(names, dtype=object), np.arange(n, dtype=np.int64)]))
    assert data[8 + 6] == 11                       # the first item is a symbol vector
    assert _core.largest_vector_payload(data) == (len(data) - 8 * n, 8 * n)
    for cut in (len(data) - 8 * n - 7, len(data) - 8 * n - 8):   # the column without its last byte or two
        at, length = _core.largest_vector_payload(data[:cut])
        assert (at, length) == (-1, 0)
