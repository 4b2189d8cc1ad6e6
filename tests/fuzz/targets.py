"""Fuzz targets: one per decode entry point, each a function of one input `bytes`.

A target returns normally when qwire behaved: it decoded the input, or refused it with a
`DecodeError`, or raised `QError` for a message that really is a q error. Anything else is a
finding and propagates: another exception type, a result that differs between two entry points
that must agree, a crash (the process dies), a hang (libFuzzer's -timeout) or memory beyond the
cap (libFuzzer's -rss_limit_mb, and `check_rss` here for short peaks).

Adding an entry point is a few lines:

    @target("name", needs=lambda: hasattr(qwire.Decoder, "feed"))
    def fuzz_name(data):
        expect_decode(lambda: the_entry_point(data), plain_of(data))

`needs` says whether the entry point exists in the qwire being fuzzed; targets whose entry point
is missing are listed as unavailable and skipped by the CI pass.
"""
from __future__ import annotations

import inspect
import random
import resource
import struct
import sys
import time
import zlib

import qwire
from qwire import compression
from qwire.errors import DecodeError, QError

import os as _os

# 512 MiB; under AddressSanitizer (shadow memory, quarantine) the process starts near that, so 4x.
RSS_CAP_MB = 512 * (4 if "asan" in _os.environ.get("LD_PRELOAD", "") else 1)
MAX_CPU_S = 1.0
TARGETS: dict[str, "Target"] = {}


class Finding(AssertionError):
    """qwire did something forbidden on this input."""


class Target:
    def __init__(self, name, fn, needs, doc):
        self.name, self.fn, self.needs, self.doc = name, fn, needs, doc

    def available(self):
        try:
            return bool(self.needs())
        except Exception:
            return False

    def __call__(self, data):
        """Run the target on one input; also a finding: more than MAX_CPU_S of CPU time (CPU,
        not wall time, so that a loaded machine does not make findings; libFuzzer's own wall
        -timeout catches real hangs)."""
        t0 = time.process_time()
        self.fn(data)
        spent = time.process_time() - t0
        if spent > MAX_CPU_S:
            raise Finding(f"input took {spent:.2f} s of CPU (limit {MAX_CPU_S} s)")


def target(name, needs=lambda: True):
    def register(fn):
        TARGETS[name] = Target(name, fn, needs, (fn.__doc__ or "").strip().splitlines()[0])
        return fn

    return register


# ---------------------------------------------------------------------------------------------
# outcome checks


def is_q_error_message(plain):
    """True when `plain` (a plain message) is exactly a q error: header, -128, text, NUL, end."""
    if plain is None or len(plain) < 10 or plain[0] > 1 or plain[1] > 2 or plain[2] != 0:
        return False
    order = "<" if plain[0] == 1 else ">"
    total = struct.unpack_from(order + "I", plain, 4)[0] + (plain[3] << 32)
    return total == len(plain) and plain[8] == 0x80 and bytes(plain).find(b"\x00", 9) == len(plain) - 1


def outcome(call, plain=None, size=None):
    """Run `call`; return ("ok", value) or ("error", type name, offset). Raises Finding on a
    forbidden outcome. `plain` is the plain (decompressed) message, for judging a QError."""
    try:
        return ("ok", call())
    except DecodeError as e:
        if not isinstance(e, ValueError) or not isinstance(e.reason, str):
            raise Finding(f"DecodeError without its contract: {e!r}") from e
        limit = size if size is not None else (len(plain) if plain is not None else 1 << 62)
        if e.offset is not None and not (0 <= e.offset <= limit):
            raise Finding(f"DecodeError offset {e.offset} outside the message: {e}") from e
        return ("error", "DecodeError", e.offset)
    except QError as e:
        if plain is not None and not is_q_error_message(plain):
            raise Finding(f"QError for a message that is not a q error: {e!r}") from e
        return ("error", "QError", e.text)
    except Finding:
        raise
    except StopIteration:
        return ("error", "StopIteration", None)
    except BaseException as e:  # noqa: BLE001 - every other exception is the finding
        if isinstance(e, (KeyboardInterrupt, SystemExit)):
            raise
        raise Finding(f"{type(e).__name__} escaped: {e}") from e


def expect_decode(call, plain=None):
    return outcome(call, plain)


def same_outcome(a, b, what):
    """Two entry points given the same message must agree: same value, or same error + offset."""
    if a[0] != b[0] or (a[0] == "error" and a[1:] != b[1:]):
        raise Finding(f"{what}: {a[:3] if a[0] == 'error' else 'decoded'} vs {b[:3] if b[0] == 'error' else 'decoded'}")
    if a[0] == "ok" and not _same(a[1], b[1]):
        raise Finding(f"{what}: decoded values differ: {a[1]!r:.200} vs {b[1]!r:.200}")


_SAME = None


def _same(x, y):
    """strategies.same (strict: types all the way down), imported once; repr equality when
    tests/strategies.py cannot be imported with this qwire."""
    global _SAME
    if _SAME is None:
        try:
            from strategies import same as _SAME
        except ImportError:
            _SAME = lambda a, b: repr(a) == repr(b)  # noqa: E731
    # `same` takes about four Python frames per nesting level, and values nest up to max_depth
    # (256) levels: 250 nested derived functions (6c 6c ...) overran the default limit of 1000
    # here, in the comparison, not in qwire.
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(max(limit, 8 * 256 + 1000))
    try:
        return _SAME(x, y)
    finally:
        sys.setrecursionlimit(limit)


_rss_peak_checked = 0


def check_rss():
    """Finding when the process's peak RSS passed the cap (catches peaks libFuzzer's 1 s
    sampling misses: ru_maxrss is the high-water mark)."""
    global _rss_peak_checked
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024
    if peak_mb > RSS_CAP_MB and peak_mb > _rss_peak_checked:
        _rss_peak_checked = peak_mb
        raise Finding(f"peak RSS {peak_mb} MiB above the {RSS_CAP_MB} MiB cap")


# ---------------------------------------------------------------------------------------------
# input shaping


def framed(data):
    """`data` with its header's length fields made right (if it has a header), so that
    mutations reach the body instead of dying at the length check."""
    if len(data) < 8 or data[0] > 1:
        return data
    order = "<" if data[0] == 1 else ">"
    n = len(data)
    return data[:3] + bytes([(n >> 32) & 0xFF]) + struct.pack(order + "I", n & 0xFFFFFFFF) + data[8:]


def chunk_sizes(data, total):
    """Deterministic pseudo-random chunk sizes (1..64, sometimes bigger) covering `total` bytes,
    seeded by the input so that a finding replays exactly."""
    rng = random.Random(zlib.crc32(data))
    sizes, left = [], total
    while left > 0:
        k = rng.choice((1, 1, 2, 3, 7, 8, 9, 13, 64, 4096))
        k = min(k, left)
        sizes.append(k)
        left -= k
    return sizes


# ---------------------------------------------------------------------------------------------
# the targets

_SMALL_DECOMPRESS = 64 << 20
_decoder = qwire.Decoder(max_decompressed_size=_SMALL_DECOMPRESS)
_unbudgeted = qwire.Decoder(max_decompressed_size=_SMALL_DECOMPRESS, max_expansion=None)


def _refusal_reason(decoder, msg):
    try:
        decoder.decode(msg)
    except DecodeError as e:
        return e.reason
    return ""


@target("loads")
def fuzz_loads(data):
    """qwire.loads on bytes: as given, and with the header length made right."""
    check_plain(data)
    fixed = framed(data)
    if fixed != data:
        check_plain(fixed)
    check_rss()


def check_plain(data):
    plain = data if len(data) < 8 or data[2] == 0 else _plain_of(data)
    # offsets are in the compressed message (its faults) or in the plain one (the body's)
    return outcome(lambda: _decoder.decode(data), plain, size=max(len(data), len(plain)))


def _plain_of(msg):
    """The plain form of a compressed message, for judging a QError (None if it does not
    decompress: then no QError is allowed at all)."""
    try:
        return bytes(compression.decompress(msg, max_size=_SMALL_DECOMPRESS))
    except (DecodeError, TypeError, ValueError):
        return b""


@target("loads_view")
def fuzz_loads_view(data):
    """qwire.loads on a memoryview at a non-zero offset of a bytearray; must agree with bytes."""
    fixed = framed(data)
    pad = 1 + (len(data) % 7)
    buf = bytearray(b"\xa5" * pad + fixed)
    view = memoryview(buf)[pad:]
    plain = fixed if len(fixed) < 8 or fixed[2] == 0 else None
    got = outcome(lambda: _decoder.decode(view), plain)
    ref = outcome(lambda: _decoder.decode(fixed), plain)
    same_outcome(got, ref, "memoryview vs bytes")
    if buf[:pad] != b"\xa5" * pad:
        raise Finding("decoding wrote into its input")
    del got, ref
    view.release()  # fails (BufferError) if a decoded value kept an export it shouldn't have
    check_rss()


def as_compressed(data):
    """`data` shaped as a compressed message: byte 0 kept if 0/1, byte 2 = 1 or 2, lengths right."""
    if len(data) < 8:
        return data
    b0 = data[0] if data[0] <= 1 else 1
    b2 = data[2] if data[2] in (1, 2) else 1
    return framed(bytes([b0, data[1], b2]) + data[3:])


@target("decompress")
def fuzz_decompress(data):
    """qwire.compression.decompress, then decoding the result; must agree with loads(compressed)."""
    msg = as_compressed(data)
    res = outcome(lambda: compression.decompress(msg, max_size=_SMALL_DECOMPRESS))
    if res[0] == "ok":
        plain = res[1]
        if compression.is_compressed(msg):
            if not isinstance(plain, bytearray) or plain[2] != 0 or len(plain) > _SMALL_DECOMPRESS:
                raise Finding("decompress returned something that is not a plain message")
            order = "<" if plain[0] == 1 else ">"
            if struct.unpack_from(order + "I", plain, 4)[0] + (plain[3] << 32) != len(plain):
                raise Finding("decompressed header length differs from the output length")
        direct = outcome(lambda: _decoder.decode(msg), bytes(plain))
        two_step = outcome(lambda: _decoder.decode(plain), bytes(plain))
        same_outcome(direct, two_step, "loads(compressed) vs loads(decompress(compressed))")
    check_rss()


@target("decoder_depth")
def fuzz_decoder_depth(data):
    """Decoder(max_depth=k) for a small k chosen by the input: depth refusals stay DecodeErrors,
    and whatever decodes with a small limit decodes the same with the default."""
    k = 1 + (data[-1] % 8) if data else 1
    fixed = framed(data)
    small = outcome(lambda: qwire.Decoder(max_depth=k, max_decompressed_size=_SMALL_DECOMPRESS).decode(fixed), None)
    if small[0] == "ok":
        same_outcome(small, outcome(lambda: _decoder.decode(fixed), None), f"max_depth={k} vs default")
    check_rss()


def _has_param(fn, name):
    try:
        return name in inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return False


@target("stream", needs=lambda: hasattr(qwire.Decoder, "feed"))
def fuzz_stream(data):
    """Decoder.feed in pseudo-random chunk sizes, the message twice then a valid one: each message
    that comes out is what loads gives for it (value, or DecodeError and offset), and a failed
    message leaves the decoder able to decode the next one."""
    fixed = framed(data)
    if len(fixed) < 9 or fixed[0] > 1 or fixed[1] > 2 or fixed[2] > 2:
        fixed = b"\x01\x00\x00\x00" + (len(data) + 8).to_bytes(4, "little") + data
    ref = outcome(lambda: _decoder.decode(fixed), None)
    good = b"\x01\x00\x00\x00\x0a\x00\x00\x00\xff\x01"
    stream = fixed + fixed + good
    dec = qwire.Decoder(max_decompressed_size=_SMALL_DECOMPRESS)
    got = []

    def drain():
        while True:
            r = outcome(lambda: next(dec), None)
            if r[0] == "error" and r[1] == "StopIteration":
                return
            got.append(r)

    pos = 0
    header_error = None
    for k in chunk_sizes(fixed, len(stream)):
        try:
            dec.feed(stream[pos : pos + k])
        except DecodeError as e:
            header_error = e
            break
        except Exception as e:  # noqa: BLE001
            raise Finding(f"feed raised {type(e).__name__}: {e}") from e
        pos += k
        drain()
    if header_error is not None:
        if ref[0] == "ok":
            raise Finding(f"feed refused the header of a message loads accepts: {header_error}")
        return
    if len(got) != 3:
        raise Finding(f"stream gave {len(got)} messages for 3 (pending {dec.pending})")
    same_outcome(got[0], ref, "stream vs loads (first)")
    same_outcome(got[1], ref, "stream vs loads (second)")
    same_outcome(got[2], ("ok", True), "stream: the message after")
    check_rss()


@target("buffers", needs=lambda: _has_param(qwire.loads, "buffers") or _accepts_kw("buffers"))
def fuzz_buffers(data):
    """loads(data, buffers=...) with out-of-band buffers carved from the input's tail."""
    if len(data) < 2:
        return
    nbuf = data[-1] % 4
    rng = random.Random(zlib.crc32(data))
    body, bufs = data[:-1], []
    for _ in range(nbuf):
        k = rng.randrange(0, 64)
        bufs.append(memoryview(bytearray(body[-k:] if k else b"")))
        body = body[:-k] if k else body
    msg = framed(body)
    outcome(lambda: qwire.loads(msg, buffers=bufs), None)
    check_rss()


def _accepts_kw(name):
    try:
        qwire.loads(b"\x01\x00\x00\x00\x0a\x00\x00\x00\xff\x01", **{name: []})
        return True
    except TypeError:
        return False
    except Exception:
        return True


def _grammar_runner():
    """hypothesis drives the type grammar (tests/strategies.py) from the fuzzer's bytes: q trees
    written as kdb+ writes them, wrapped deep, repeated wide, in either byte order, then damaged."""
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    import strategies

    wide = st.integers(1, 2000)
    deep = st.integers(0, 200)  # + the tree's own nesting (< 40) + 1 stays under max_depth=256
    damage = st.one_of(st.none(), st.tuples(st.just("cut"), st.integers(0, 1 << 20)),
                       st.tuples(st.just("flip"), st.integers(0, 1 << 20), st.integers(0, 255)))

    @settings(database=None, deadline=None, suppress_health_check=list(HealthCheck), max_examples=1)
    @given(strategies.q_trees(max_leaves=30), st.sampled_from(["little", "big"]), wide, deep, damage)
    def run(tree, order, copies, depth, hurt):
        body = strategies.wire_message(tree, order)[8:]
        o = "<" if order == "little" else ">"
        if copies > 1:
            body = b"\x00\x00" + struct.pack(o + "I", copies) + body * copies
        body = (b"\x00\x00" + struct.pack(o + "I", 1)) * depth + body
        msg = bytes([1 if order == "little" else 0, 0, 0, 0]) + struct.pack(o + "I", 8 + len(body)) + body
        got = outcome(lambda: _decoder.decode(msg), msg)
        if got[0] != "ok":
            # The one refusal a valid message may get: the memory budget (16x its size + 1 MiB,
            # SECURITY.md), for shapes of tiny objects repeated wide. Without it, it decodes.
            reason = _refusal_reason(_decoder, msg)
            if "memory limit" not in reason:
                raise Finding(f"a message the grammar allows was refused: {got}: {reason}")
            again = outcome(lambda: _unbudgeted.decode(msg), msg)
            if again[0] != "ok":
                raise Finding(f"a message the grammar allows was refused without the memory budget: {again}")
        if hurt is not None:
            i = 8 + hurt[1] % (len(msg) - 8)
            if hurt[0] == "cut":
                bad = msg[:4] + struct.pack(o + "I", i) + msg[8:i]
            else:
                bad = msg[:i] + bytes([hurt[2]]) + msg[i + 1:]
            outcome(lambda: _decoder.decode(bad), bad)

    return run.hypothesis.fuzz_one_input


_GRAMMAR = None


def _grammar_available():
    try:
        import hypothesis  # noqa: F401
        import strategies  # noqa: F401
    except ImportError:
        return False
    return True


@target("grammar", needs=_grammar_available)
def fuzz_grammar(data):
    """Structure-aware: hypothesis turns the input into a kdb+ message from the type grammar (deep,
    wide, either byte order), which must decode, and a damaged copy, which must decode or refuse."""
    global _GRAMMAR
    if _GRAMMAR is None:
        _GRAMMAR = _grammar_runner()
    _GRAMMAR(data)
    check_rss()


@target("registry", needs=lambda: hasattr(qwire, "Registry"))
def fuzz_registry(data):
    """Decoder(registry=...): registered-class records; only registered classes are ever built,
    an unregistered name is refused (UnregisteredTypeError, a DecodeError) without touching it."""
    import registry_support  # tests/fuzz/: the registry, a sentinel class, the result check

    global _REG_DECODER
    if _REG_DECODER is None:
        _REG_DECODER = registry_support.make_registry_decoder()
    res = outcome(lambda: _REG_DECODER.decode(framed(data)), None)
    if res[0] == "ok":
        try:
            registry_support.check_only_registered(res[1])
        except AssertionError as e:
            raise Finding(str(e)) from None
    elif registry_support.TOUCHED:
        registry_support.TOUCHED.clear()
        raise Finding("a refused message touched an unregistered class")
    check_rss()


_REG_DECODER = None


@target("shared", needs=lambda: hasattr(qwire, "Registry"))
def fuzz_shared(data):
    """Shared structures: the input seeds a program of reference records (tuples and frozen
    dataclasses sharing earlier objects, references to objects still being defined, sets, dict
    keys, Flag values; shared_support.py). Decoding must succeed or refuse within the CPU limit
    per input (a 2^64-leaf hash is a finding), and build only registered classes."""
    import registry_support
    import shared_support

    global _REG_DECODER
    if _REG_DECODER is None:
        _REG_DECODER = registry_support.make_registry_decoder()
    msg = shared_support.shared_message(data)
    res = outcome(lambda: _REG_DECODER.decode(msg), msg)
    if res[0] == "ok":
        try:
            registry_support.check_only_registered(res[1])
        except AssertionError as e:
            raise Finding(str(e)) from None
    check_rss()


def available():
    return [n for n, t in TARGETS.items() if t.available()]
