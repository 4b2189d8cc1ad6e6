"""The sans-IO connection protocol (qwire.ipc._protocol): handshake bytes, capability rules,
framing of a byte stream into messages, kdb+'s compression rule, limits."""
from __future__ import annotations

import socket

import numpy as np
import pytest

import qwire
from qwire.errors import AuthenticationError, ConnectionClosed, MessageTooLarge, ProtocolError
from qwire.ipc import _protocol as p


def test_client_hello_is_credentials_capability_nul():
    """As KX's C client: u:p, the capability byte, NUL (spec 4)."""
    assert p.client_hello("u", "p", 3) == b"u:p\x03\x00"
    assert p.client_hello("u", None) == b"u\x06\x00"
    assert p.client_hello("", "") == b":\x06\x00"
    with pytest.raises(ValueError):
        p.client_hello("a\x00b", None)
    with pytest.raises(ValueError):
        p.client_hello("u", "p", 7)


def test_server_reply_caps_capability_and_empty_reply_is_refusal():
    """The reply byte caps what is used; EOF during the handshake is kdb+'s 'access."""
    assert p.parse_server_reply(b"\x03", 6) == 3
    assert p.parse_server_reply(b"\x06", 3) == 3
    with pytest.raises(AuthenticationError) as e:
        p.parse_server_reply(b"", 6, peer="h:1")
    assert isinstance(e.value, ConnectionError) and isinstance(e.value, qwire.QWireError)
    assert "access" in str(e.value) and e.value.peer == "h:1"


def test_hello_reader_parses_incrementally_and_keeps_the_rest():
    """The server reads up to the NUL in any chunking; bytes after it are kept."""
    r = p.HelloReader()
    data = b"user:pa:ss\x06\x00\x01\x01"
    for i in range(len(data) - 3):
        assert r.feed(data[i:i + 1]) is None
    hello = r.feed(data[-3:])
    assert hello == p.ClientHello("user", "pa:ss", 6)
    assert r.rest == b"\x01\x01"
    assert p.HelloReader().feed(b"bob\x00") == p.ClientHello("bob", None, 0)
    assert p.server_reply(6) == b"\x06" and p.server_reply(3) == b"\x03" and p.server_reply(9, 6) == b"\x06"


def test_hello_reader_refuses_endless_hello():
    """A hello without a NUL is refused at max_handshake_size, however it is chunked."""
    r = p.HelloReader(max_size=64)
    with pytest.raises(ProtocolError, match="max_handshake_size=64"):
        for _ in range(100):
            r.feed(b"x" * 7)
    assert r.received < 64 + 7
    with pytest.raises(ProtocolError):
        p.HelloReader(max_size=8).feed(b"abcdefghij\x03\x00")


def test_hello_passwords_stay_distinct_bytes():
    """Non-UTF-8 credentials decode losslessly, so two different passwords never compare equal."""
    a = p.HelloReader().feed(b"u:\xff\x03\x00")
    b = p.HelloReader().feed(b"u:\xfe\x03\x00")
    assert a.password != b.password


def test_capability_rules():
    """GUIDs from 3, >2 GB from 5; compression as KX's C client (not at 0 and 2)."""
    assert [p.allows_guid(c) for c in range(7)] == [False] * 3 + [True] * 4
    assert [p.allows_large_messages(c) for c in range(7)] == [False] * 5 + [True] * 2
    assert [p.allows_compression(c) for c in range(7)] == [False, True, False, True, True, True, True]
    assert [p.encoder_capability(c) for c in range(7)] == [3, 3, 3, 3, 4, 5, 6]
    assert p.negotiate(6, 3) == 3


def _stream(*values, msg_type="async"):
    return b"".join(qwire.dumps(v, msg_type=msg_type).copy() for v in values)


@pytest.mark.parametrize("chunk", [1, 3, 8, 9, 1000, 1 << 20])
def test_frame_reader_splits_stream_any_chunking(chunk):
    """Messages come out whole and in order however the bytes are split, large ones included."""
    big = np.arange(10_000, dtype=np.int64)  # 80 KB: past the in-place threshold
    values = [1, "abc", big, {"a": big[:10]}, 2.5]
    data = _stream(*values, msg_type="sync")
    r = p.FrameReader()
    out = []
    pos = 0
    while pos < len(data):
        view = r.buffer()
        k = min(len(view), chunk, len(data) - pos)
        view[:k] = data[pos:pos + k]
        pos += k
        r.received(k)
        while (f := r.next_frame()) is not None:
            assert f.msg_type == 1
            out.append(qwire.loads(f.data))
    assert not r.in_message
    assert out[0] == 1 and out[1] == "abc" and out[4] == 2.5
    np.testing.assert_array_equal(out[2], big)
    np.testing.assert_array_equal(out[3]["a"], big[:10])


def test_frame_reader_large_body_lands_aligned_in_place():
    """A large array is received into its aligned buffer and decoded as a view of it."""
    big = np.arange(1 << 18, dtype=np.float64)
    data = qwire.dumps(big).copy()
    r = p.FrameReader()
    r.feed(data[:100])
    view = r.buffer()
    assert len(view) >= p._DIRECT_MIN  # the body is read in place, not through the scratch
    r.feed(data[100:])
    arr = qwire.loads(r.next_frame().data)
    np.testing.assert_array_equal(arr, big)
    assert arr.ctypes.data % 64 == 0 and not arr.flags.owndata


def test_frame_reader_refuses_terabyte_header_without_allocating():
    """A header claiming ~1 TB is refused with MessageTooLarge as soon as its 8 bytes arrive."""
    r = p.FrameReader(max_message_size=1 << 20)
    with pytest.raises(MessageTooLarge) as e:
        r.feed(b"\x01\x00\x00\xff\xff\xff\xff\xff")
    assert e.value.size == (0xFF << 32) | 0xFFFFFFFF and e.value.limit == 1 << 20
    assert isinstance(e.value, ProtocolError) and isinstance(e.value, ConnectionError)


def test_frame_reader_claimed_size_does_not_allocate_up_front():
    """Under the limit, a 1 GB claim allocates only as bytes arrive (the in-place reads grow with
    what has been received)."""
    r = p.FrameReader()
    r.feed(b"\x01\x00\x00\x00\x00\x00\x00\x40" + b"\x00" * 100)
    assert len(r.buffer()) <= p._DIRECT_FIRST_CHUNK


@pytest.mark.parametrize("header", [b"\x02\x00\x00\x00\x10\x00\x00\x00", b"\x01\x03\x00\x00\x10\x00\x00\x00",
                                    b"\x01\x00\x05\x00\x10\x00\x00\x00", b"\x01\x00\x00\x00\x05\x00\x00\x00"])
def test_frame_reader_malformed_header_is_protocol_error(header):
    """A header with a bad byte order, type, compression byte or length is a ProtocolError."""
    with pytest.raises(ProtocolError, match="malformed message header"):
        p.FrameReader().feed(header)


def test_frame_reader_eof_inside_message_says_how_far():
    """EOF mid-message and mid-header are ConnectionClosed with the progress; between messages too."""
    data = qwire.dumps(np.arange(100)).copy()
    r = p.FrameReader()
    r.feed(data[:50])
    with pytest.raises(ConnectionClosed) as e:
        r.received(0)
    assert (e.value.received, e.value.expected) == (50, len(data))
    r = p.FrameReader()
    r.feed(data[:5])
    with pytest.raises(ConnectionClosed, match="header"):
        r.eof()
    with pytest.raises(ConnectionClosed) as e:
        p.FrameReader().eof()
    assert e.value.received is None


def test_compression_rule_as_kdb():
    """Over 2000 bytes (total >= 2009), not local, capability allows, result at most half."""
    assert not p.should_compress(2008, local=False, capability=6)
    assert p.should_compress(2009, local=False, capability=6)
    assert not p.should_compress(10**6, local=True, capability=6)
    assert p.should_compress(10**6, local=True, capability=6, mode=True)
    assert not p.should_compress(10**6, local=False, capability=6, mode=False)
    assert not p.should_compress(10**6, local=False, capability=2)
    zeros = qwire.dumps(np.zeros(10_000), q_compatible=True)
    out = p.prepare_outgoing(zeros, local=False, capability=6)
    assert len(out) == 1 and qwire.compression.is_compressed(out[0])
    np.testing.assert_array_equal(qwire.loads(out[0]), np.zeros(10_000))
    assert b"".join(bytes(s) for s in p.prepare_outgoing(zeros, local=True, capability=6)) == zeros.copy()
    noise = qwire.dumps(np.random.default_rng(1).integers(0, 2**63, 2000))
    assert b"".join(bytes(s) for s in p.prepare_outgoing(noise, local=False, capability=6)) == noise.copy()


def test_local_addresses():
    """Unix sockets, localhost and loopback count as local; other addresses do not."""
    assert p.is_local_address(socket.AF_UNIX, "/tmp/x")
    for host in ("127.0.0.1", "127.1.2.3", "::1", "::ffff:127.0.0.1", "localhost"):
        assert p.is_local_address(socket.AF_INET6, (host, 5000)), host
    for host in ("10.200.0.1", "192.168.1.1", "::ffff:10.0.0.1", "example"):
        assert not p.is_local_address(socket.AF_INET, (host, 5000)), host


def test_kx_unix_path(monkeypatch):
    """q -p P listens on the abstract @/tmp/kx.P on Linux, or $QUDSPATH/kx.P."""
    monkeypatch.delenv("QUDSPATH", raising=False)
    assert p.kx_unix_path(5001) in ("\0/tmp/kx.5001", "/tmp/kx.5001")
    monkeypatch.setenv("QUDSPATH", "/run/q")
    assert p.kx_unix_path(5001) == "/run/q/kx.5001"


def test_send_segments_sends_every_byte_with_partial_sends():
    """sendmsg's partial sends are resumed: the peer gets the exact bytes, many segments included."""
    a, b = socket.socketpair()
    a.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    segments = [bytes([i % 256]) * (i * 37 % 5000) for i in range(1500)]
    expected = b"".join(segments)
    got = bytearray()
    import threading

    def drain():
        while len(got) < len(expected):
            chunk = b.recv(1 << 16)
            if not chunk:
                break
            got.extend(chunk)

    t = threading.Thread(target=drain)
    t.start()
    assert p.send_segments(a, segments) == len(expected)
    t.join(10)
    a.close()
    b.close()
    assert bytes(got) == expected


def test_limits_validate_and_build_a_decoder():
    """Limits refuse nonsense; its decoder applies max_message_size also after decompression."""
    with pytest.raises(ValueError):
        p.Limits(max_message_size=3)
    with pytest.raises(ValueError):
        p.Limits(request_timeout=0)
    d = p.Limits(max_message_size=1000).decoder()
    assert d.max_message_size == 1000 and d.max_decompressed_size == 1000


def test_trickled_body_keeps_one_bounded_buffer():
    """A 512 MB claim fed a byte at a time: the receive buffer is granted once (4 MiB) and not
    regrown for each byte, so the memory traced stays near 4 MiB."""
    import tracemalloc

    r = p.FrameReader()
    r.feed(b"\x01\x00\x00\x00\x00\x00\x00\x20")
    tracemalloc.start()
    try:
        for _ in range(5000):
            view = r.buffer()
            view[:1] = b"\x00"
            r.received(1)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < p._DIRECT_FIRST_CHUNK + (1 << 20), peak


from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402


@settings(max_examples=60, deadline=None)
@given(
    sizes=st.lists(st.sampled_from([1, 7, 300, 5000, 40_000, 70_000]), min_size=1, max_size=6),
    cuts=st.lists(st.integers(min_value=1, max_value=50_000), min_size=1, max_size=40),
    kinds=st.lists(st.sampled_from(["async", "sync", "response"]), min_size=6, max_size=6),
)
def test_frame_reader_any_split_gives_the_same_messages(sizes, cuts, kinds):
    """However a stream of messages of any sizes (small, at the in-place threshold, large) is cut
    into reads, the frames are the messages, byte for byte, with their types, in order."""
    messages = [qwire.dumps(np.arange(n, dtype=np.uint8), msg_type=kinds[i]).copy() for i, n in enumerate(sizes)]
    data = b"".join(messages)
    r = p.FrameReader()
    out = []
    pos = 0
    i = 0
    while pos < len(data):
        view = r.buffer()
        k = min(len(view), cuts[i % len(cuts)], len(data) - pos)
        i += 1
        view[:k] = data[pos:pos + k]
        pos += k
        r.received(k)
        while (f := r.next_frame()) is not None:
            out.append(f)
    assert [bytes(f.data) for f in out] == messages
    assert [f.msg_type for f in out] == [m[1] for m in messages]
    assert not r.in_message


def test_import_qwire_does_not_import_the_connections():
    """`import qwire` stays light: qwire.ipc (sockets, ssl) is imported on first use of connect."""
    import subprocess
    import sys

    code = ("import sys, qwire; assert 'qwire.ipc' not in sys.modules; "
            "qwire.connect; assert 'qwire.ipc' in sys.modules; print('ok')")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.stdout.strip() == "ok", r.stderr
