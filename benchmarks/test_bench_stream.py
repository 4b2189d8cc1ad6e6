"""Receiving a large message in chunks (the stream decoder and qwire's aligned receive buffer),
beside the least any receiver can do in the same run: one copy of the message's bytes, then
`loads`. Target: Decoder.feed in 1 MiB chunks within 1.2x of that, for the IPC benchmark's 24 MB
dict of arrays and its 29 MB trade table (whose 1M-symbol column the receive buffer walks).

    python -m pytest benchmarks/test_bench_stream.py --benchmark-group-by=group
"""
import numpy as np
import pytest

import qwire
from qwire import _core
from qwire._bench.workloads import trade_table

CHUNK = 1 << 20


@pytest.fixture(scope="module")
def message():
    """The IPC benchmark's 'dict' response: three arrays of 1M floats / ints, 24 MB."""
    rng = np.random.default_rng(2026)
    n = 1_000_000
    value = {"bid": rng.standard_normal(n), "ask": rng.standard_normal(n), "size": rng.integers(0, 1000, n)}
    return bytes(qwire.dumps(value))


@pytest.fixture(scope="module")
def table_message():
    """The IPC benchmark's 'table' response: 1M rows of id, price, sym (symbols) and time, 29 MB."""
    df = trade_table(1.0)
    table = qwire.Table({"id": df["id"].to_numpy(), "price": df["price"].to_numpy(),
                         "sym": np.array(df["sym"].tolist(), dtype=object), "time": df["time"].to_numpy()})
    return bytes(qwire.dumps(table))


def _feed_in_chunks(chunks):
    decoder = qwire.Decoder()
    for chunk in chunks:
        decoder.feed(chunk)
    return next(decoder)


def _receive_into(data):
    """What a socket reader does: recv_into the Receiver's writable view, then commit."""
    receiver = _core.Receiver(data[:8], len(data))
    pos = 8
    while pos < len(data):
        view = receiver.writable(CHUNK)
        view[:] = data[pos : pos + len(view)]
        receiver.commit(len(view))
        pos += len(view)
        del view
    return qwire.loads(receiver.finish())


@pytest.mark.parametrize("how", ["one copy + loads", "Decoder.feed 1 MiB chunks", "Receiver writable/commit"])
def test_receiving_a_24mb_message(benchmark, how, message):
    benchmark.group = "receive a 24 MB message"
    data = memoryview(message)
    if how == "one copy + loads":
        source = np.frombuffer(message, np.uint8)
        out = benchmark(lambda: qwire.loads(bytes(source)))
    elif how == "Decoder.feed 1 MiB chunks":
        chunks = [data[i : i + CHUNK] for i in range(0, len(data), CHUNK)]
        out = benchmark(_feed_in_chunks, chunks)
    else:
        out = benchmark(_receive_into, data)
    assert out["size"].shape == (1_000_000,)


@pytest.mark.parametrize("how", ["one copy + loads", "Decoder.feed 1 MiB chunks"])
def test_receiving_a_29mb_table(benchmark, how, table_message):
    benchmark.group = "receive a 29 MB table"
    data = memoryview(table_message)
    if how == "one copy + loads":
        source = np.frombuffer(table_message, np.uint8)
        out = benchmark(lambda: qwire.loads(bytes(source)))
    else:
        chunks = [data[i : i + CHUNK] for i in range(0, len(data), CHUNK)]
        out = benchmark(_feed_in_chunks, chunks)
    assert len(out["sym"]) == 1_000_000
