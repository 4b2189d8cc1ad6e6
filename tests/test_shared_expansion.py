"""What the encoder writes is bounded by its input. Without refs a container reached twice is
written twice, so a few hundred bytes of objects that each hold the previous one twice would make
an exponentially long message (a 515-byte shared structure produced 176 MB). Copies of large
shared containers may take at most `max_shared_expansion` (default 64) times the bytes of distinct
content plus a 16 MiB allowance; past that, EncodeError says so and points to refs=True."""
from __future__ import annotations

import dataclasses
import time

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import qwire
from qwire import Dict

registry = qwire.Registry()


@dataclasses.dataclass
class Node:
    left: object
    right: object


registry.register(Node, "test.shared.Node")

# One level of a blow-up: a container holding the previous level `fanout` times.
WRAPPERS = {
    "list": lambda prev, k: [prev] * k,
    "tuple": lambda prev, k: tuple([prev] * k),
    "dict": lambda prev, k: {f"k{i}": prev for i in range(k)},
    "qdict": lambda prev, k: Dict(list(range(k)), [prev] * k),
    "dataclass": lambda prev, k: Node(prev, prev if k < 3 else [prev] * (k - 1)),
}


@st.composite
def blowups(draw):
    """A value of a few KB at most whose tree (what refs=False writes) is over 2^40 bytes."""
    leaf = draw(st.sampled_from([1.5, "sym", [1, 2, 3], np.arange(4)]))
    fanout = draw(st.integers(2, 4))
    kinds = draw(st.lists(st.sampled_from(sorted(WRAPPERS)), min_size=1, max_size=3))
    value = leaf
    for level in range(int(40 / np.log2(fanout)) + 1):
        value = WRAPPERS[kinds[level % len(kinds)]](value, fanout)
    return value


@pytest.mark.slow
@settings(max_examples=25)
@given(blowups())
def test_exponential_shared_structure_is_refused_early(value):
    """Refused with a clear EncodeError after writing a bounded amount, in well under a second of
    work; refs=True writes the same value in a small message."""
    start = time.perf_counter()
    with pytest.raises(qwire.EncodeError, match="shared structure") as info:
        qwire.dumps(value, registry=registry)
    assert time.perf_counter() - start < 5
    assert "refs=True" in str(info.value)
    small = qwire.dumps(value, refs=True, registry=registry)
    assert len(small) < 10_000


def test_the_reported_shape_515_bytes():
    """The report's shape: each level a list holding the previous twice, 64 levels of a small leaf."""
    x = [1.5] * 10
    for _ in range(64):
        x = [x, x]
    assert len(qwire.dumps(x, refs=True)) < 2000
    with pytest.raises(qwire.EncodeError, match="max_shared_expansion=64"):
        qwire.dumps(x)


@given(st.integers(2, 200), st.integers(1, 2000))
def test_repeating_a_small_value_is_never_limited(copies, size):
    """Containers under 64 KiB are not followed: [config] * n is written as it always was."""
    config = {"name": "x", "values": list(range(size % 300))}
    value = [config] * copies
    out = qwire.loads(qwire.dumps(value))
    assert out == value


def test_a_few_copies_of_a_large_value_are_allowed():
    """Copies up to the allowance: 10 copies of a ~1 MB list (9 MB of copies, under 16 MiB)."""
    big = list(range(100_000))
    value = [big] * 10
    assert qwire.loads(qwire.dumps(value)) == value


def test_the_limit_scales_with_distinct_content():
    """Past the allowance, copies may be max_shared_expansion times the distinct bytes."""
    big = list(range(100_000))          # ~900 KB written per copy
    value = [big] * 40                  # ~35 MB of copies of 0.9 MB distinct
    with pytest.raises(qwire.EncodeError, match="shared structure"):
        qwire.Encoder(max_shared_expansion=2).encode(value)
    assert len(qwire.dumps(value)) > 30_000_000            # the default (64x) allows it
    assert len(qwire.Encoder(max_shared_expansion=None).encode(value)) > 30_000_000


def test_the_option_is_checked_and_kept():
    enc = qwire.Encoder(max_shared_expansion=8)
    assert enc.max_shared_expansion == 8
    assert qwire.Encoder().max_shared_expansion == 64
    assert qwire.Encoder(max_shared_expansion=None).max_shared_expansion is None
    import pickle

    assert pickle.loads(pickle.dumps(enc)).max_shared_expansion == 8
    for bad in (0, -1, 1.5, "64", True):
        with pytest.raises((ValueError, TypeError)):
            qwire.Encoder(max_shared_expansion=bad)


def test_no_limit_writes_the_copies():
    """max_shared_expansion=None writes copies the default refuses (256 copies of 180 KB)."""
    x = list(range(20_000))
    for _ in range(8):
        x = [x, x]
    with pytest.raises(qwire.EncodeError, match="shared structure"):
        qwire.dumps(x)
    out = qwire.Encoder(max_shared_expansion=None).encode(x)
    assert len(out) > 256 * 180_000
