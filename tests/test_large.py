"""Messages beyond 2 GB (capability 6): header byte 3, unsigned lengths and counts, 8-byte vector
counts, compressed variant 2, and the capability=3 refusal. Crafted headers cover the boundaries
without allocating gigabytes; one real round trip over 4 GiB runs under the `slow` marker."""
import gc
import resource
import struct

import numpy as np
import pytest

import qwire
from qwire import compression


def _msg(payload, *, byte3=0, total=None):
    total = len(payload) + 8 if total is None else total
    return bytes([1, 0, 0, byte3]) + struct.pack("<I", total & 0xFFFFFFFF) + payload


def test_8_byte_count_form_decodes_for_any_count():
    # attribute bit 0x80: the count is 8 bytes (kdb+ writes it only from 2^32, accepts it always)
    body = b"\x07\x80" + struct.pack("<Q", 3) + struct.pack("<3q", 1, 2, 3)
    assert np.array_equal(qwire.loads(_msg(body)), [1, 2, 3])
    sorted_long = b"\x07\x81" + struct.pack("<Q", 2) + struct.pack("<2q", 1, 2)
    v = qwire.loads(_msg(sorted_long))
    assert isinstance(v, qwire.Vector) and v.attr == "s"
    general = b"\x00\x80" + struct.pack("<Q", 1) + b"\xf9" + struct.pack("<q", 5)
    assert qwire.loads(_msg(general)) == [5]


def test_counts_are_unsigned_and_checked_against_the_bytes_left():
    # 2^31 + 100 as u32 (kdb+'s form for counts >= 2^31) is a count, not a negative number
    lie = b"\x04\x00" + struct.pack("<I", 2**31 + 100) + b"\x00" * 4
    with pytest.raises(qwire.DecodeError, match="2147483748"):
        qwire.loads(_msg(lie))
    lie8 = b"\x04\x80" + struct.pack("<Q", 2**40) + b"\x00" * 4
    with pytest.raises(qwire.DecodeError, match="claims"):
        qwire.loads(_msg(lie8))


def test_header_byte_3_holds_bits_32_to_39_of_the_length():
    body = b"\xf9" + struct.pack("<q", 1)
    with pytest.raises(qwire.DecodeError, match="4294967313 bytes"):
        qwire.loads(_msg(body, byte3=1))  # claims 2^32 + 17 bytes
    # the low 32 bits are unsigned: a length >= 2^31 is read as such
    with pytest.raises(qwire.DecodeError, match="3000000026"):
        qwire.loads(bytes([1, 0, 0, 0]) + struct.pack("<I", 3_000_000_026) + body)


def test_stream_headers_are_read_with_byte_3_without_allocating():
    dec = qwire.Decoder()
    dec.feed(bytes([1, 0, 0, 1]) + struct.pack("<I", 13))
    assert dec.pending == 8  # a 4 GiB message announced, nothing allocated for it yet


@pytest.mark.slow  # ~20 s
def test_capability_limits_on_encode_without_touching_gigabytes():
    # np.zeros is calloc'd: the pages are never touched, since dumps references the payload.
    two_gb = np.zeros(2**31, dtype=np.uint8)
    with pytest.raises(qwire.EncodeError, match="capability 3"):
        qwire.Encoder(capability=3).encode(two_gb)
    m = qwire.Encoder(capability=5).encode(two_gb)  # cap 5: > 2 GB messages, 4-byte counts
    head = bytes(m.segments()[0])
    assert head[3] == 0 and struct.unpack("<I", head[4:8])[0] == 2**31 + 14 and head[9] == 0
    huge = np.zeros(2**32 + 16, dtype=np.uint8)
    with pytest.raises(qwire.EncodeError, match="capability 6"):
        qwire.Encoder(capability=5).encode(huge)
    head = bytes(qwire.dumps(huge).segments()[0])
    total = 2**32 + 16 + 18
    assert head[:4] == bytes([1, 0, 0, total >> 32]) and struct.unpack("<I", head[4:8])[0] == total & 0xFFFFFFFF
    assert head[8:10] == b"\x04\x80" and struct.unpack("<Q", head[10:18])[0] == 2**32 + 16
    with pytest.raises(ValueError):
        qwire.Encoder(capability=7)


@pytest.mark.slow  # ~30 s
def test_count_form_switches_at_exactly_2_to_the_32_on_encode():
    """Spec 2.3's boundary bytes: count 2^32-1 keeps the 4-byte form, 2^32 takes 0x80 + 8 bytes.
    np.zeros is calloc'd and dumps references the payload, so no page is touched."""
    below = qwire.dumps(np.zeros(2**32 - 1, dtype=np.uint8))
    head = bytes(below.segments()[0])
    assert head[:14] == bytes.fromhex("01 00 00 01 0d 00 00 00 04 00 ff ff ff ff")  # spec 1.1's example
    assert len(below) == 2**32 - 1 + 14
    at = qwire.dumps(np.zeros(2**32, dtype=np.uint8))
    head = bytes(at.segments()[0])
    assert head[8:18] == bytes.fromhex("04 80 00 00 00 00 01 00 00 00")
    total = 2**32 + 18
    assert len(at) == total and head[3] == total >> 32 and struct.unpack("<I", head[4:8])[0] == total & 0xFFFFFFFF
    with pytest.raises(qwire.EncodeError, match="capability 6"):
        qwire.Encoder(capability=5).encode(np.zeros(2**32, dtype=np.uint8))


@pytest.mark.slow
def test_capability_3_refusal_through_dumps():
    two_gb = np.zeros(2**31 - 14, dtype=np.uint8)   # total 2^31 bytes: one over kdb+ 3.x's limit
    with pytest.raises(qwire.EncodeError, match="capability 3"):
        qwire.dumps(two_gb, capability=3)
    assert len(qwire.dumps(two_gb[:-1], capability=3)) == 2**31 - 1  # the largest 3.x message


@pytest.mark.slow
def test_real_round_trip_over_4_gib():
    n = 2**32 + 16  # needs the 8-byte count and header byte 3
    arr = np.ones(n, dtype=np.uint8)
    arr[-1] = 7
    m = qwire.dumps(arr)
    total = n + 18
    back = qwire.loads(m)  # in place: the payload is the array itself
    assert np.shares_memory(back, arr) and back.shape == (n,)
    raw = m.copy()  # the real wire bytes: one 4 GiB copy
    del m, back, arr
    gc.collect()
    got = qwire.loads(raw)
    assert got.shape == (n,) and got[-1] == 7 and got[0] == 1
    del got
    gc.collect()
    z = compression.compress(raw)  # variant 2: the uncompressed total is >= 2^32
    del raw
    gc.collect()
    assert z[2] == 2 and len(z) < 60_000_000
    plain = compression.decompress(z, max_size=total)
    del z
    back = qwire.loads(plain)
    assert back.shape == (n,) and back[-1] == 7 and int(back[:1000].sum()) == 1000
    # the memory budget for this test: peak resident set under 14 GB (ru_maxrss is in KiB)
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 < 14 * 10**9
