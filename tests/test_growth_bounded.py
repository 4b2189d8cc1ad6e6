"""Memory decoding uses is bounded by the bytes received, whatever the path (issue 11, item 6).

* A registered Flag enum keeps every combination of its members that is asked for, for the life of
  the process: 2x10^5 distinct values grew the receiver by 84 MB. Decoding creates at most
  MAX_FLAG_COMBINATIONS new ones per class, and refuses values with bits no member has.
* A compressed message was budgeted from its decompressed size (16x up to the 1 GiB cap): 496 KB
  peaked at 612 MiB. Its budget is now from the bytes that arrived; the decompressed bytes
  themselves are bounded by max_decompressed_size (peaks measured with tracemalloc).
"""
import enum
import functools
import gc
import operator
import struct
import tracemalloc

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import qwire
from fuzz import hostile as h
from qwire import compression, registry
from qwire.errors import DecodeError

MiB = 1 << 20
LIMIT = registry.MAX_FLAG_COMBINATIONS


def _flag_class(kind, bits=20):
    return kind(f"Wide{kind.__name__}", {f"B{i}": 1 << i for i in range(bits)})


def _flag_message(name, value):
    return h.message(h.registered_custom(name, h.long_atom(value)))


@pytest.mark.parametrize("kind", [enum.IntFlag, enum.Flag])
def test_new_flag_combinations_are_bounded(kind):
    cls = _flag_class(kind)
    reg = qwire.Registry()
    reg.register(cls, "W")
    members = len(cls.__members__)
    decoded = refused = 0
    for value in range(1, 3 * LIMIT):
        try:
            v = qwire.loads(_flag_message("W", value), registry=reg)
        except DecodeError as e:
            assert "MAX_FLAG_COMBINATIONS" in e.reason
            refused += 1
            continue
        assert v.value == value
        decoded += 1
    assert len(cls._value2member_map_) <= members + LIMIT + 1
    assert refused > 0 and decoded >= LIMIT
    # what was decoded once keeps decoding, to the same member (a Flag compares by identity)
    assert qwire.loads(_flag_message("W", 3), registry=reg) is cls(3)
    assert qwire.loads(_flag_message("W", 1 << 19), registry=reg) is cls.B19


@settings(max_examples=50, deadline=None)
@given(value=st.integers(-(2 ** 63), 2 ** 63 - 1))
def test_undefined_bits_are_refused(value):
    cls = _flag_class(enum.IntFlag, bits=8)
    reg = qwire.Registry()
    reg.register(cls, "W8")
    msg = _flag_message("W8", value)
    if 0 <= value < 256:
        assert qwire.loads(msg, registry=reg) == value
    else:
        with pytest.raises(DecodeError, match="no member"):
            qwire.loads(msg, registry=reg)


def test_a_flag_state_must_be_an_int():
    cls = _flag_class(enum.Flag, bits=4)
    reg = qwire.Registry()
    reg.register(cls, "W4")
    for state in (b"\xf7" + struct.pack("<d", 1.0), b"\xf5B0\x00", h.general_list([h.long_atom(1)])):
        with pytest.raises(DecodeError):
            qwire.loads(h.message(h.registered_custom("W4", state)), registry=reg)
    combo = functools.reduce(operator.or_, list(cls)[:3])
    assert qwire.loads(qwire.dumps(combo, registry=reg), registry=reg) is combo


def _peak(fn):
    gc.collect()
    tracemalloc.start()
    try:
        try:
            fn()
        except DecodeError:
            pass
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


SHAPES = {
    "empty lists": lambda n: h.empty_lists(n),
    "empty dicts": lambda n: h.empty_dicts(n),
    "1-long vectors": lambda n: h.small_vectors(n),
    "1-char symbol atoms": lambda n: h.symbol_atoms(n),
    "empty sets": lambda n: h.message(h.general_list([h.set_record([])] * n)),
}


@pytest.mark.parametrize("shape", SHAPES)
def test_a_compressed_message_is_budgeted_by_its_compressed_size(shape):
    """Highly compressible hostile shapes: the peak is at most the decompressed bytes plus 16x
    the compressed size + 1 MiB (plus a little for the interpreter's own bookkeeping)."""
    plain = SHAPES[shape](400_000)
    z = bytes(compression.compress(plain))
    assert len(z) * 10 < len(plain)
    peak = _peak(lambda: qwire.loads(z))
    assert peak <= len(plain) + 16 * len(z) + MiB + 256 * 1024, (shape, len(plain), len(z), peak)
    # the same bytes uncompressed have the budget of their own size
    value = qwire.loads(plain, max_expansion=None)
    if shape != "1-char symbol atoms":
        assert len(value) == 400_000


def test_max_expansion_none_still_decodes_compressed_messages():
    plain = h.empty_lists(100_000)
    z = bytes(compression.compress(plain))
    with pytest.raises(DecodeError, match=f"this {len(z)}-byte message"):
        qwire.loads(z)
    assert qwire.loads(z, max_expansion=None) == [[]] * 100_000


def test_the_stream_decoder_budgets_compressed_messages_the_same_way():
    plain = h.empty_lists(100_000)
    z = bytes(compression.compress(plain))
    dec = qwire.Decoder()
    dec.feed(z)
    with pytest.raises(DecodeError, match=f"this {len(z)}-byte message"):
        next(dec)
