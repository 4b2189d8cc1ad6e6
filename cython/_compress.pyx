"""kdb+ IPC compression: the C-level loops behind `qwire.compression`.

Spec: /work/shared/spec/QIPC.md section 5 (5.2 layout, 5.3 compressor, 5.4 decompressor). The
compressor reproduces kdb+ byte for byte, abort rule included; the decompressor accepts anything
kdb+ produces and treats every input as hostile: all header fields are checked, and the output size
bounded, before anything is allocated, and every stream read and back-reference is bounds-checked.

Layout of this file: buffer access and byte-order helpers; the compressor core; the decompressor
core; the header checks and the Python-facing functions. The two cores run without the GIL and
touch no Python object; they report failure through a small error code that `_raise_stream_error`
maps to a `DecodeError` in one place.
"""
from cpython.buffer cimport PyBUF_C_CONTIGUOUS, PyBUF_FORMAT, PyBuffer_Release, PyObject_GetBuffer
from cpython.bytearray cimport PyByteArray_AS_STRING, PyByteArray_FromStringAndSize
from cpython.ref cimport PyObject, Py_DECREF
from libc.stdint cimport uint8_t, uint64_t
from libc.string cimport memcpy, memset

from qwire.errors import DecodeError

cdef extern from "Python.h":
    # Declared here with raw pointers so that the compressed output can be allocated at its worst
    # size and shrunk in place (_PyBytes_Resize needs the only reference, so no `object` here).
    PyObject *_bytes_new "PyBytes_FromStringAndSize"(const char *s, Py_ssize_t n)
    char *_bytes_data "PyBytes_AS_STRING"(PyObject *o)
    int _PyBytes_Resize(PyObject **o, Py_ssize_t n)

cdef extern from *:
    """
    /* Index of the first differing byte of two 8-byte words loaded with memcpy, given x = a ^ b != 0. */
    #if defined(__GNUC__) || defined(__clang__)
    #  if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
    #    define QW_FIRST_DIFF(x) ((Py_ssize_t)(__builtin_clzll(x) >> 3))
    #  else
    #    define QW_FIRST_DIFF(x) ((Py_ssize_t)(__builtin_ctzll(x) >> 3))
    #  endif
    #  define QW_HAVE_FIRST_DIFF 1
    #else
    #  define QW_FIRST_DIFF(x) ((Py_ssize_t)0)
    #  define QW_HAVE_FIRST_DIFF 0
    #endif
    """
    Py_ssize_t QW_FIRST_DIFF(uint64_t x) noexcept nogil
    bint QW_HAVE_FIRST_DIFF

__all__ = ["compress", "decompress", "is_compressed", "variant_for", "max_stream_output",
           "MAX_MESSAGE_LENGTH", "VARIANT_B_FROM"]

cdef enum:
    HEADER = 8                  # plain message header; positions in the algorithm start here
    MAX_REF = 257               # a back-reference copies 2 + extra bytes, extra <= 255
    GROUP = 17                  # worst case of one group: a flag byte + 8 two-byte references

# Largest total a message header can state: 40 bits (byte 3 + bytes 4..7), spec 1.1.
MAX_MESSAGE_LENGTH = (1 << 40) - 1
# Uncompressed totals from here on use variant B (8-byte length field), spec 5.2.
VARIANT_B_FROM = 1 << 32
cdef uint64_t _MAX_MESSAGE = (<uint64_t>1 << 40) - 1
cdef uint64_t _VARIANT_B_FROM = <uint64_t>1 << 32


# ---------------------------------------------------------------------------------------------
# Buffers and byte order

cdef inline bint _is_byte_format(const char *fmt) noexcept:
    if fmt == NULL:
        return True
    if fmt[0] in b"@=<>!":
        fmt += 1
    return fmt[0] in b"Bbc" and fmt[1] == 0


cdef int _acquire(object obj, Py_buffer *view) except -1:
    """Get a C-contiguous buffer of single bytes, or raise TypeError."""
    try:
        PyObject_GetBuffer(obj, view, PyBUF_C_CONTIGUOUS | PyBUF_FORMAT)
    except (TypeError, ValueError, BufferError) as exc:
        raise TypeError(
            f"expected a C-contiguous bytes-like object, got {type(obj).__name__}") from exc
    if view.itemsize != 1 or not _is_byte_format(view.format):
        fmt = (<bytes>view.format).decode("ascii", "replace") if view.format != NULL else "B"
        PyBuffer_Release(view)
        raise TypeError(
            f"expected a buffer of bytes, got {type(obj).__name__} with item format {fmt!r}")
    return 0


cdef inline uint64_t _get_u32(const uint8_t *p, bint le) noexcept nogil:
    if le:
        return p[0] | (<uint64_t>p[1] << 8) | (<uint64_t>p[2] << 16) | (<uint64_t>p[3] << 24)
    return p[3] | (<uint64_t>p[2] << 8) | (<uint64_t>p[1] << 16) | (<uint64_t>p[0] << 24)


cdef inline uint64_t _get_u64(const uint8_t *p, bint le) noexcept nogil:
    if le:
        return _get_u32(p, True) | (_get_u32(p + 4, True) << 32)
    return _get_u32(p + 4, False) | (_get_u32(p, False) << 32)


cdef inline void _put_u32(uint8_t *p, uint64_t v, bint le) noexcept nogil:
    cdef int i
    for i in range(4):
        p[i if le else 3 - i] = <uint8_t>(v >> (8 * i))


cdef inline void _put_u64(uint8_t *p, uint64_t v, bint le) noexcept nogil:
    cdef int i
    for i in range(8):
        p[i if le else 7 - i] = <uint8_t>(v >> (8 * i))


cdef inline uint64_t _header_length(const uint8_t *p, bint le) noexcept nogil:
    """Total length stated by a message header: u32 at 4..7 plus byte 3 as bits 32..39."""
    return _get_u32(p + 4, le) | (<uint64_t>p[3] << 32)


cdef inline void _put_header_length(uint8_t *p, uint64_t total, bint le) noexcept nogil:
    p[3] = <uint8_t>(total >> 32)
    _put_u32(p + 4, total & 0xFFFFFFFFu, le)


cdef inline uint64_t _max_output(uint64_t stream_len) noexcept nogil:
    """Most bytes a stream of `stream_len` bytes can produce after the 8-byte header.

    A group is one flag byte and up to 8 items; a literal (1 byte) yields 1 byte and a reference
    (2 bytes) at most 257, so the best ratio is a full group of references: 17 bytes -> 2056.
    Whole groups of those, then in the remainder r: one flag byte, (r-1)//2 references and one
    literal if a byte is left. tests/test_compression.py checks this against an exhaustive search.
    """
    cdef uint64_t groups = stream_len // GROUP, rest = stream_len % GROUP
    cdef uint64_t out = groups * (8 * MAX_REF)
    if rest > 1:
        out += ((rest - 1) // 2) * MAX_REF + ((rest - 1) & 1)
    return out


# ---------------------------------------------------------------------------------------------
# Compressor (spec 5.3)

cdef inline Py_ssize_t _match_len(const uint8_t *a, const uint8_t *b, Py_ssize_t limit) noexcept nogil:
    """Length of the common prefix of a[0:limit] and b[0:limit], 8 bytes at a time."""
    cdef Py_ssize_t i = 0
    cdef uint64_t x, y
    if QW_HAVE_FIRST_DIFF:
        while i + 8 <= limit:
            memcpy(&x, a + i, 8)
            memcpy(&y, b + i, 8)
            x ^= y
            if x != 0:
                return i + QW_FIRST_DIFF(x)
            i += 8
    while i < limit and a[i] == b[i]:
        i += 1
    return i


cdef Py_ssize_t _lz_compress(const uint8_t *src, Py_ssize_t total, uint8_t *out,
                             Py_ssize_t start) noexcept nogil:
    """Compress src[8:total] into out[start:], spec 5.3 step for step.

    `out` has room for total // 2 bytes. Returns the end of the stream (the compressed total), or
    -1 where kdb+ aborts: at a group start when the cursor is past total // 2 - 17.

    The spec's deferred insert ("pend") is kept branch-free: slot 256 of the table is a dummy
    that receives the insert when nothing is pending.
    """
    cdef Py_ssize_t table[257]
    cdef Py_ssize_t last_start = (total >> 1) - GROUP
    cdef Py_ssize_t s = HEADER, d = start, flagpos, cand, pend = 0, b, stop, extra
    cdef unsigned int h, pend_h = 256, flags, bit
    cdef uint8_t c
    memset(table, 0, sizeof(table))
    while s < total:
        if d > last_start:
            return -1
        flagpos = d
        d += 1
        flags = 0
        bit = 1
        while bit < 256 and s < total:
            c = src[s]
            if s + 2 < total:
                h = c ^ src[s + 1]
                cand = table[h]                 # look up first ...
                table[pend_h] = pend            # ... then insert the previous literal
                if cand != 0 and src[cand] == c:
                    table[h] = s                # a match start goes in at once
                    pend_h = 256
                    flags |= bit
                    b = s + 2
                    stop = b + 255 if total - b > 255 else total
                    extra = _match_len(src + cand + 2, src + b, stop - b)
                    out[d] = <uint8_t>h
                    out[d + 1] = <uint8_t>extra
                    d += 2
                    s = b + extra               # positions inside a match are never inserted
                else:
                    pend = s
                    pend_h = h
                    out[d] = c
                    d += 1
                    s += 1
            else:
                # Under 3 bytes left: literals without lookups (later inserts cannot matter).
                out[d] = c
                d += 1
                s += 1
            bit <<= 1
        out[flagpos] = <uint8_t>flags
    return d


# ---------------------------------------------------------------------------------------------
# Decompressor (spec 5.4)

cdef enum StreamError:
    OK = 0
    NO_FLAG             # stream ends where a flag byte is needed
    NO_LITERAL          # stream ends inside a literal
    NO_REFERENCE        # stream ends inside a back-reference pair
    EMPTY_SLOT          # back-reference to a slot nothing was remembered in
    OVERRUN             # back-reference would write past the declared length
    LEFTOVER            # bytes after the last item


cdef inline void _copy_ref(uint8_t *dst, Py_ssize_t r, Py_ssize_t s, Py_ssize_t length) noexcept nogil:
    """dst[s + i] = dst[r + i] for i in 0..length-1 in increasing i (r < s; may overlap), exactly.

    When source and destination overlap, the result is periodic with period s - r, so it is
    built by copying ever longer non-overlapping prefixes from r: after `done` bytes (a multiple
    of the period) the bytes r .. s+done-1 are all written and may be copied as one block.
    """
    cdef Py_ssize_t dist = s - r, done = 0, chunk
    while done < length:
        chunk = dist + done
        if chunk > length - done:
            chunk = length - done
        memcpy(dst + s + done, dst + r, chunk)
        done += chunk


cdef inline void _copy_ref_roomy(uint8_t *dst, Py_ssize_t r, Py_ssize_t s,
                                 Py_ssize_t length) noexcept nogil:
    """_copy_ref for when dst has 16 spare bytes past s + length: fixed-size block copies.

    The bytes written past s + length are scratch: the items that follow overwrite them before
    anything reads them. A block read at x - step (step >= block size) only reads bytes already
    final, so overlapping references come out as the spec's byte-by-byte forward copy.
    """
    cdef Py_ssize_t dist = s - r, i, step, head
    if dist >= 16:
        i = 0
        while True:
            memcpy(dst + s + i, dst + r + i, 16)
            i += 16
            if i >= length:
                return
    if dist >= 8:
        i = 0
        while True:
            memcpy(dst + s + i, dst + r + i, 8)
            i += 8
            if i >= length:
                return
    # Period 2..7: copy forward from a multiple of the period that is >= 8, once the first
    # (step - dist) bytes are in place so that every block starts at or after r.
    step = dist
    while step < 8:
        step += dist
    head = step - dist
    if head > length:
        head = length
    for i in range(head):
        dst[s + i] = dst[r + i]
    i = head
    while i < length:
        memcpy(dst + s + i, dst + s + i - step, 8)
        i += 8


cdef inline StreamError _fail(Py_ssize_t *at, Py_ssize_t d, Py_ssize_t s,
                              StreamError code) noexcept nogil:
    at[0] = d
    at[1] = s
    return code


cdef StreamError _lz_decompress(const uint8_t *src, Py_ssize_t srclen, Py_ssize_t d,
                                uint8_t *dst, Py_ssize_t n, Py_ssize_t *at) noexcept nogil:
    """Decode src[d:srclen] into dst[8:n]; on failure at[0] = the offending offset in src and
    at[1] = how many bytes of dst were complete.

    Hashing follows the spec: after each item every position p with p + 1 < s is in the table,
    except positions inside a copied run. `p` is the first position not yet hashed; it is s
    after a reference and s - 1 after a literal (that literal's pair is incomplete), so each
    item hashes at most two positions. Every table entry is therefore <= s - 2 when it is read,
    so a reference's source is always bytes already written, also when it overlaps its output.

    Most groups are "roomy": their 16 stream bytes are all there and 8 maximal references plus
    16 bytes of scratch fit before n. Those skip every bounds check but the empty-slot one;
    the other groups (near either end) go through the checked loop.
    """
    cdef Py_ssize_t table[256]
    cdef Py_ssize_t s = HEADER, p = HEADER, r, length
    cdef unsigned int flags, k
    memset(table, 0, sizeof(table))
    while s < n:
        if d >= srclen:
            return _fail(at, d, s, NO_FLAG)
        flags = src[d]
        d += 1
        if n - s >= 8 * MAX_REF + 16 and srclen - d >= 16:
            if flags == 0:                      # eight literals
                memcpy(dst + s, src + d, 8)
                if p < s:
                    table[dst[p] ^ dst[s]] = p
                for k in range(7):
                    table[dst[s + k] ^ dst[s + k + 1]] = s + k
                p = s + 7
                s += 8
                d += 8
                continue
            for k in range(8):
                if flags & 1:
                    r = table[src[d]]
                    if r == 0:
                        return _fail(at, d, s, EMPTY_SLOT)
                    length = 2 + src[d + 1]
                    d += 2
                    _copy_ref_roomy(dst, r, s, length)
                    if p < s:
                        table[dst[p] ^ dst[s]] = p
                    table[dst[s] ^ dst[s + 1]] = s
                    s += length
                    p = s
                else:
                    dst[s] = src[d]
                    d += 1
                    if p < s:
                        table[dst[p] ^ dst[s]] = p
                    p = s
                    s += 1
                flags >>= 1
            continue
        k = 0
        while k < 8 and s < n:
            if flags & 1:
                if srclen - d < 2:
                    return _fail(at, d, s, NO_REFERENCE)
                r = table[src[d]]
                if r == 0:
                    return _fail(at, d, s, EMPTY_SLOT)
                length = 2 + src[d + 1]
                if length > n - s:
                    return _fail(at, d, s, OVERRUN)
                d += 2
                _copy_ref(dst, r, s, length)
                if p < s:
                    table[dst[p] ^ dst[s]] = p
                table[dst[s] ^ dst[s + 1]] = s
                s += length
                p = s
            else:
                if d >= srclen:
                    return _fail(at, d, s, NO_LITERAL)
                dst[s] = src[d]
                d += 1
                if p < s:
                    table[dst[p] ^ dst[s]] = p
                p = s
                s += 1
            flags >>= 1
            k += 1
    if d != srclen:
        return _fail(at, d, s, LEFTOVER)
    return OK


cdef int _raise_stream_error(StreamError code, Py_ssize_t offset, Py_ssize_t written,
                             Py_ssize_t n) except -1:
    if code == NO_FLAG:
        msg = f"compressed stream ends before a flag byte ({written} of {n} bytes decoded)"
    elif code == NO_LITERAL:
        msg = f"compressed stream ends inside a literal ({written} of {n} bytes decoded)"
    elif code == NO_REFERENCE:
        msg = f"compressed stream ends inside a back-reference ({written} of {n} bytes decoded)"
    elif code == EMPTY_SLOT:
        msg = "back-reference to an empty slot of the position table"
    elif code == OVERRUN:
        msg = f"back-reference runs past the declared uncompressed length {n}"
    else:
        msg = f"compressed stream has bytes left over after the declared {n} bytes"
    raise DecodeError(msg, offset=offset)


# ---------------------------------------------------------------------------------------------
# Python-facing functions

def variant_for(total):
    """Header byte 2 kdb+ writes when compressing a message of `total` bytes: 1 (4-byte length
    field, stream at 12) below 2**32, else 2 (8-byte length field, stream at 16)."""
    if total < 0:
        raise ValueError("message length must be >= 0")
    return 2 if total >= VARIANT_B_FROM else 1


def max_stream_output(stream_len):
    """Most bytes (after the 8-byte header) a compressed stream of `stream_len` bytes decodes to."""
    if stream_len < 0:
        raise ValueError("stream length must be >= 0")
    return _max_output(<uint64_t>stream_len)


def is_compressed(data):
    """True when `data` (a bytes-like object) has a header whose byte 2 marks compression (1 or 2)."""
    cdef Py_buffer view
    cdef bint result
    _acquire(data, &view)
    result = view.len >= HEADER and (<const uint8_t *>view.buf)[2] in (1, 2)
    PyBuffer_Release(&view)
    return result


def compress(data, Py_ssize_t min_total=0, int variant=0):
    """Compress a whole plain message as kdb+ does (spec 5.3); None when it is not compressed.

    None means: kdb+'s abort rule fired (the output would exceed half the input), or the total is
    below `min_total`, or the message is already compressed (header byte 2 is 1 or 2).
    `variant` 0 picks the layout by size (spec 5.2); 1 or 2 forces one (for tests).
    Raises TypeError for a non-bytes buffer, ValueError for a buffer that is not one whole message.
    """
    cdef Py_buffer view
    cdef const uint8_t *src
    cdef Py_ssize_t total, start, end = -1
    cdef PyObject *out = NULL
    cdef uint8_t *o
    cdef bint le
    if variant not in (0, 1, 2):
        raise ValueError("variant must be 0 (by size), 1 or 2")
    _acquire(data, &view)
    try:
        src = <const uint8_t *>view.buf
        total = view.len
        if total < HEADER:
            raise ValueError(f"a message has an 8-byte header; got {total} bytes")
        if src[0] > 1:
            raise ValueError(f"header byte 0 (byte order) must be 0 or 1, got {src[0]}")
        if src[2] > 2:
            raise ValueError(f"header byte 2 (compression) must be 0, 1 or 2, got {src[2]}")
        le = src[0] == 1
        if _header_length(src, le) != <uint64_t>total:
            raise ValueError(f"header states {_header_length(src, le)} bytes but the buffer "
                             f"holds {total}: not one whole message")
        if src[2] != 0 or total < min_total:
            return None
        if variant == 0:
            variant = 2 if <uint64_t>total >= _VARIANT_B_FROM else 1
        elif variant == 1 and <uint64_t>total >= _VARIANT_B_FROM:
            raise ValueError("variant 1 cannot state an uncompressed length of 2**32 or more")
        start = 12 if variant == 1 else 16
        if start > (total >> 1) - GROUP:
            return None                         # aborts at the first group: skip the allocation
        out = _bytes_new(NULL, total >> 1)
        if out == NULL:
            raise MemoryError()
        o = <uint8_t *>_bytes_data(out)
        with nogil:
            end = _lz_compress(src, total, o, start)
            if end >= 0:
                o[0] = src[0]
                o[1] = src[1]
                o[2] = <uint8_t>variant
                _put_header_length(o, <uint64_t>end, le)
                if variant == 1:
                    _put_u32(o + 8, <uint64_t>total, le)
                else:
                    _put_u64(o + 8, <uint64_t>total, le)
        if end < 0:
            Py_DECREF(<object>out)              # drop our only reference
            out = NULL
            return None
        if _PyBytes_Resize(&out, end) < 0:      # frees `out` and sets the error on failure
            out = NULL
            raise MemoryError()
        result = <object>out                    # takes a new reference ...
        Py_DECREF(result)                       # ... so give back the one _bytes_new made
        out = NULL
        return result
    finally:
        PyBuffer_Release(&view)


def decompress(data, max_size=None):
    """Decompress a whole compressed message (header byte 2 = 1 or 2) into a new bytearray.

    The result is the plain message: bytes 0..1 copied, byte 2 = 0, bytes 3..7 its length.
    `max_size` caps the uncompressed total (None: only the format's own limits).
    Raises DecodeError(reason, offset=...) for anything malformed, before allocating when the
    header is at fault; TypeError for a non-bytes buffer.
    """
    cdef Py_buffer view
    cdef const uint8_t *src
    cdef Py_ssize_t srclen, start
    cdef Py_ssize_t at[2]
    cdef uint64_t declared, n, limit = _MAX_MESSAGE, bound
    cdef uint8_t *dst
    cdef bint le
    cdef StreamError err = OK
    if max_size is not None:
        if max_size < 0:
            raise ValueError("max_size must be >= 0 or None")
        if max_size < limit:
            limit = max_size
    _acquire(data, &view)
    try:
        src = <const uint8_t *>view.buf
        srclen = view.len
        if srclen < HEADER:
            raise DecodeError(f"message shorter than its 8-byte header ({srclen} bytes)",
                              offset=srclen)
        if src[0] > 1:
            raise DecodeError(f"header byte 0 (byte order) must be 0 or 1, got {src[0]}", offset=0)
        if src[2] != 1 and src[2] != 2:
            raise DecodeError(f"header byte 2 is {src[2]}: not a compressed message", offset=2)
        le = src[0] == 1
        declared = _header_length(src, le)
        if declared != <uint64_t>srclen:
            raise DecodeError(f"header states a compressed length of {declared} bytes but "
                              f"{srclen} were given", offset=4)
        start = 12 if src[2] == 1 else 16
        if srclen < start:
            raise DecodeError(f"compressed message shorter than its {start}-byte header "
                              f"({srclen} bytes)", offset=srclen)
        n = _get_u32(src + 8, le) if src[2] == 1 else _get_u64(src + 8, le)
        if n <= HEADER:
            raise DecodeError(f"declared uncompressed length {n} leaves no room for an item",
                              offset=8)
        if n > _MAX_MESSAGE:
            raise DecodeError(f"declared uncompressed length {n} exceeds the largest message "
                              f"(2**40 - 1 bytes)", offset=8)
        if n > limit:
            raise DecodeError(f"declared uncompressed length {n} exceeds max_size={max_size}",
                              offset=8)
        bound = _max_output(<uint64_t>(srclen - start))
        if n - HEADER > bound:
            raise DecodeError(f"declared uncompressed length {n} is more than a "
                              f"{srclen - start}-byte stream can produce ({bound + HEADER})",
                              offset=8)
        result = PyByteArray_FromStringAndSize(NULL, <Py_ssize_t>n)
        dst = <uint8_t *>PyByteArray_AS_STRING(result)
        with nogil:
            dst[0] = src[0]
            dst[1] = src[1]
            dst[2] = 0
            _put_header_length(dst, n, le)
            err = _lz_decompress(src, srclen, start, dst, <Py_ssize_t>n, at)
        if err != OK:
            _raise_stream_error(err, at[0], at[1], <Py_ssize_t>n)
        return result
    finally:
        PyBuffer_Release(&view)
