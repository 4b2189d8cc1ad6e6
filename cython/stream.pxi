# Receiving messages: an aligned receive buffer that grows with the bytes actually received,
# the stream decoder behind Decoder.feed, and a structure walk that finds the largest vector.

from cpython.pythread cimport (
    NOWAIT_LOCK, WAIT_LOCK, PyThread_acquire_lock, PyThread_allocate_lock, PyThread_free_lock,
    PyThread_get_thread_ident, PyThread_release_lock, PyThread_type_lock,
)
from cpython.mem cimport PyMem_RawFree, PyMem_RawMalloc, PyMem_RawRealloc

cdef enum:
    ALIGNMENT = 64
    RECEIVE_INITIAL = 1 << 16      # bytes allocated before the sender has proved more (then doubling)
    RECEIVE_JUMP_SHARE = 4         # growth jumps to the whole message once it would reach this share of it


cdef Py_ssize_t _skip_strings(const unsigned char* b, Py_ssize_t pos, Py_ssize_t end, uint64_t n) noexcept:
    """The offset after n NUL-terminated strings from pos, or -1 if end comes first. Counts the
    NULs eight bytes at a time: a symbol column is mostly short names, and one memchr per name
    made walking a 1M-row column 5 ms (receive buffers walk each large message)."""
    cdef uint64_t x, zeros
    cdef uint64_t low7 = 0x7F7F7F7F7F7F7F7FULL
    while n > 0 and end - pos >= 8:
        memcpy(&x, b + pos, 8)
        # 0x80 exactly in each byte of x that is 0 (no carry crosses a byte), then their count
        zeros = (((~(((x & low7) + low7) | x | low7)) >> 7) * 0x0101010101010101ULL) >> 56
        if zeros >= n:
            break
        n -= zeros
        pos += 8
    while n > 0 and pos < end:
        if b[pos] == 0:
            n -= 1
        pos += 1
    return pos if n == 0 else -1


cdef Py_ssize_t _skip_item(const unsigned char* b, Py_ssize_t pos, Py_ssize_t end, bint swap, int depth,
                           Py_ssize_t* best_at, Py_ssize_t* best_len) noexcept:
    """The offset after the item at pos, or -1 if malformed; records the largest fixed-width
    vector payload seen. Mirrors the decoder's grammar without building anything."""
    cdef int t, i
    cdef uint32_t u32
    cdef uint64_t n
    cdef Py_ssize_t w
    cdef const void* z
    if depth > 256 or pos >= end:
        return -1
    t = <int8_t>b[pos]
    pos += 1
    if t < 0:
        if t == -QT_SYMBOL or t == QT_ERROR:
            z = memchr(b + pos, 0, end - pos)
            return -1 if z == NULL else (<const unsigned char*>z - b) + 1
        if t < -19 or t == -3:
            return -1
        return pos + ELEMENT_WIDTH[-t]
    if t <= 19:
        if t == 3 or end - pos < 6:
            return -1
        if b[pos] & ATTR_LONG_COUNT:
            if end - pos < 10:
                return -1
            memcpy(&n, b + pos + 1, 8)
            if swap:
                n = qw_bswap64(n)
            pos += 9
        else:
            memcpy(&u32, b + pos + 1, 4)
            n = qw_bswap32(u32) if swap else u32
            pos += 5
        if t != QT_LIST and t != QT_SYMBOL and n > <uint64_t>((end - pos) // ELEMENT_WIDTH[t]):
            # cut off by end: recorded at its announced size for a caller walking the prefix
            # that has arrived (Receiver); a whole-message walk fails here anyway
            if n <= <uint64_t>(PY_SSIZE_T_MAX // 16) and <Py_ssize_t>n * ELEMENT_WIDTH[t] > best_len[0]:
                best_len[0] = <Py_ssize_t>n * ELEMENT_WIDTH[t]
                best_at[0] = pos
            return -1
        if n > <uint64_t>(end - pos):
            return -1
        if t == QT_LIST:
            for i in range(<Py_ssize_t>n):
                pos = _skip_item(b, pos, end, swap, depth + 1, best_at, best_len)
                if pos < 0:
                    return -1
            return pos
        if t == QT_SYMBOL:
            return _skip_strings(b, pos, end, n)
        w = ELEMENT_WIDTH[t]
        if n > <uint64_t>((end - pos) // w):
            return -1
        if <Py_ssize_t>n * w > best_len[0]:
            best_len[0] = <Py_ssize_t>n * w
            best_at[0] = pos
        return pos + <Py_ssize_t>n * w
    if t == QT_TABLE:
        return _skip_item(b, pos + 1, end, swap, depth + 1, best_at, best_len)
    if t == QT_DICT or t == QT_SORTED_DICT:
        pos = _skip_item(b, pos, end, swap, depth + 1, best_at, best_len)
        return -1 if pos < 0 else _skip_item(b, pos, end, swap, depth + 1, best_at, best_len)
    if t == QT_LAMBDA:
        z = memchr(b + pos, 0, end - pos)
        return -1 if z == NULL else _skip_item(b, (<const unsigned char*>z - b) + 1, end, swap, depth + 1, best_at, best_len)
    if QT_UNARY_PRIMITIVE <= t <= QT_ITERATOR:
        return pos + 1
    if t == QT_PROJECTION or t == QT_COMPOSITION:
        if end - pos < 4:
            return -1
        memcpy(&u32, b + pos, 4)
        n = qw_bswap32(u32) if swap else u32
        pos += 4
        for i in range(<Py_ssize_t>min(n, <uint64_t>(end - pos))):
            pos = _skip_item(b, pos, end, swap, depth + 1, best_at, best_len)
            if pos < 0:
                return -1
        return pos
    if QT_EACH <= t <= QT_EACH_LEFT:
        return _skip_item(b, pos, end, swap, depth + 1, best_at, best_len)
    if t == QT_EXTENSION:
        if pos >= end:
            return -1
        if b[pos] == EXT_OUT_OF_BAND:
            return pos + 1 + (10 if end - pos > 2 and b[pos + 2] & ATTR_LONG_COUNT else 6)
        return _skip_item(b, pos + 1, end, swap, depth + 1, best_at, best_len)
    return -1


def largest_vector_payload(data):
    """(offset, nbytes) of the largest fixed-width vector payload in a whole message, or
    (-1, 0) when there is none or the message is malformed. Used to place receive buffers."""
    cdef const unsigned char[::1] mv = memoryview(data).cast("B")
    cdef Py_ssize_t at = -1, length = 0
    if mv.shape[0] < HEADER_SIZE + 1 or mv[2] != 0:
        return (-1, 0)
    if _skip_item(&mv[0], HEADER_SIZE, mv.shape[0], mv[0] == 0, 0, &at, &length) < 0:
        return (-1, 0)
    return (at, length)


cdef class _ReceiveBlock:
    """One allocation holding a Receiver's bytes, exported through the buffer protocol. While no
    view of it exists it may be resized in place (realloc: large blocks move by remapping pages,
    not by copying); once viewed it only ever grows into a fresh block, so no view dangles."""
    cdef char* data
    cdef Py_ssize_t size
    cdef Py_ssize_t exports

    def __dealloc__(self):
        PyMem_RawFree(self.data)

    def __getbuffer__(self, Py_buffer* view, int flags):
        PyBuffer_FillInfo(view, self, self.data, self.size, 0, flags)
        self.exports += 1

    def __releasebuffer__(self, Py_buffer* view):
        self.exports -= 1


cdef _ReceiveBlock _new_receive_block(Py_ssize_t size):
    cdef _ReceiveBlock block = _ReceiveBlock.__new__(_ReceiveBlock)
    block.data = <char*>PyMem_RawMalloc(size)
    if block.data == NULL:
        raise MemoryError(f"cannot allocate a receive buffer of {size} bytes")
    block.size = size
    return block


cdef Py_ssize_t _aligned_start(const char* base, Py_ssize_t payload_at) noexcept:
    """Where in [0, ALIGNMENT) a message starts in a block at base so that the byte at
    payload_at (an offset in the message) lies on an ALIGNMENT boundary."""
    return <Py_ssize_t>((ALIGNMENT - ((<size_t>base + <size_t>payload_at) % ALIGNMENT)) % ALIGNMENT)


cdef class Receiver:
    """The bytes of one message as they arrive, in a buffer that grows with what was received
    (a header's claimed length allocates nothing by itself) and in which the payload of the
    message's largest vector ends up 64-byte aligned.

    Growth: doubling from RECEIVE_INITIAL, but straight to the whole message once the next size
    would reach 1/RECEIVE_JUMP_SHARE of it, so memory stays within a constant factor of the bytes
    that have arrived (a hostile header claiming a gigabyte gets nothing for it) while an honest
    message is reallocated only a few times, in place where the allocator can. The allocation for
    the whole message places the largest vector seen so far (its header has arrived, usually its
    payload has not) on the boundary, so finish() moves the message only when a larger vector came
    after that.

    One reader's: a Receiver used from two threads at once raises RuntimeError in the second.
    Every method checks its arguments; after finish() the Receiver takes nothing more."""

    cdef _ReceiveBlock _block      # the message lives at _block.data[_start:_start+total], _start < ALIGNMENT
    cdef Py_ssize_t _start
    cdef readonly Py_ssize_t total
    cdef readonly Py_ssize_t filled
    cdef Py_ssize_t _lent          # bytes the last writable() view offered (what commit may count)
    cdef bint _busy

    def __init__(self, header, Py_ssize_t total):
        if total < HEADER_SIZE + 1:
            raise ValueError(f"a message is at least {HEADER_SIZE + 1} bytes, not {total}")
        self.total = total
        self._start = 0
        self._block = _new_receive_block(min(total, <Py_ssize_t>RECEIVE_INITIAL) + ALIGNMENT)
        self.filled = 0
        self._lent = 0
        self._busy = False
        self.write(header)

    cdef int _enter(self) except -1:
        if self._busy:
            raise RuntimeError("a Receiver is used by two threads at once (it belongs to one reader)")
        if self._block is None:
            raise ValueError("this Receiver is finished (or was never initialised)")
        self._busy = True
        return 0

    cdef Py_ssize_t _largest_payload_at(self, Py_ssize_t end) noexcept:
        """The offset of the largest fixed-width vector payload whose header lies in the first
        end bytes (a vector cut off by end counts at its announced size), or -1."""
        cdef const unsigned char* b = <const unsigned char*>self._block.data + self._start
        cdef Py_ssize_t at = -1, length = 0
        if end < HEADER_SIZE + 1 or b[2] != 0:
            return -1
        _skip_item(b, HEADER_SIZE, end, b[0] == 0, 0, &at, &length)
        return at

    cdef int _ensure(self, Py_ssize_t need) except -1:
        cdef Py_ssize_t cap = self._block.size - ALIGNMENT
        if need <= cap:
            return 0
        cdef Py_ssize_t newcap = max(cap * 2, need)
        if newcap >= self.total // RECEIVE_JUMP_SHARE:
            newcap = self.total
        newcap = min(newcap, self.total)
        cdef Py_ssize_t aim = self._largest_payload_at(self.filled) if newcap == self.total else -1
        cdef _ReceiveBlock old = self._block
        cdef _ReceiveBlock dst
        cdef char* grown
        cdef const char* src
        if old.exports == 0:
            grown = <char*>PyMem_RawRealloc(old.data, newcap + ALIGNMENT)
            if grown == NULL:
                raise MemoryError(f"cannot grow a receive buffer to {newcap} bytes")
            old.data = grown
            old.size = newcap + ALIGNMENT
            dst = old
            src = grown + self._start
        else:                     # a view of the old block exists: it keeps the old bytes
            dst = _new_receive_block(newcap + ALIGNMENT)
            src = old.data + self._start
        cdef Py_ssize_t start = self._start if aim < 0 else _aligned_start(dst.data, aim)
        if dst is not old or start != self._start:
            memmove(dst.data + start, src, self.filled)
        self._block = dst
        self._start = start
        return 0

    def write(self, data):
        """Append up to the rest of the message from data; returns how many bytes were taken."""
        cdef const unsigned char[::1] src = memoryview(data).cast("B")
        self._enter()
        cdef Py_ssize_t k
        try:
            self._lent = 0                # a view lent before may point at storage replaced here
            k = min(src.shape[0], self.total - self.filled)
            if k <= 0:
                return 0
            self._ensure(self.filled + k)
            memcpy(self._block.data + self._start + self.filled, &src[0], k)
            self.filled += k
            return k
        finally:
            self._busy = False

    def writable(self, Py_ssize_t limit=1 << 24):
        """A writable view of the next bytes to fill (for readinto); call commit(k) after, with k at
        most the view's length."""
        if limit < 0:
            raise ValueError(f"limit must be >= 0, not {limit}")
        self._enter()
        cdef Py_ssize_t k
        try:
            k = min(self.total - self.filled, limit)
            self._ensure(self.filled + k)
            self._lent = k
            return memoryview(self._block)[self._start + self.filled:self._start + self.filled + k]
        finally:
            self._busy = False

    def commit(self, Py_ssize_t k):
        """Count k bytes written into the view writable() returned last (0 <= k <= its length)."""
        self._enter()
        try:
            if not 0 <= k <= self._lent:
                raise ValueError(f"commit({k}): the last writable() view has {self._lent} bytes to commit")
            self.filled += k
            self._lent = 0
        finally:
            self._busy = False

    def finish(self):
        """The complete message as a read-only memoryview, aligned for its largest vector."""
        self._enter()
        try:
            return self._finish()
        finally:
            self._busy = False

    cdef object _finish(self):
        if self.filled != self.total:
            raise DecodeError(f"message incomplete: {self.filled} of {self.total} bytes", self.filled)
        cdef char* base = self._block.data
        cdef Py_ssize_t at = self._largest_payload_at(self.total)
        cdef Py_ssize_t want
        if at >= 0:
            want = _aligned_start(base, at)
            if want != self._start:       # a larger vector arrived after the block was placed
                memmove(base + want, base + self._start, self.total)
                self._start = want
        out = memoryview(self._block)[self._start:self._start + self.total].toreadonly()
        self._block = None
        self._lent = 0
        return out


cdef object _parse_header(const unsigned char* h, object limit):
    """The total length a message header announces; DecodeError if it cannot be a message."""
    if h[0] > 1:
        raise DecodeError(f"header byte 0 must be 1 (little-endian) or 0 (big-endian), not {h[0]}", 0)
    if h[1] > 2:
        raise DecodeError(f"header byte 1 (message type) must be 0, 1 or 2, not {h[1]}", 1)
    if h[2] > 2:
        raise DecodeError(f"header byte 2 (compression) must be 0, 1 or 2, not {h[2]}", 2)
    cdef uint32_t low
    memcpy(&low, h + 4, 4)
    if h[0] == 0:
        low = qw_bswap32(low)
    cdef uint64_t total = (<uint64_t>h[3] << 32) | low
    if total < HEADER_SIZE + 1:
        raise DecodeError(f"header says the message is {total} bytes; a message is at least 9", 4)
    if limit is not None and total > <uint64_t>limit:
        raise DecodeError(f"message of {total} bytes exceeds max_message_size={limit}", 4)
    return <Py_ssize_t>total


cdef object _check_size_limit(str name, object limit):
    """An option that caps a size: None or an int >= 0."""
    if limit is not None and (not isinstance(limit, int) or isinstance(limit, bool) or limit < 0):
        raise ValueError(f"{name} must be a non-negative int or None, not {limit!r}")
    return limit


def read_header_length(header, limit=None):
    """The total length a message's 8-byte header announces (DecodeError if it cannot be a
    message, or announces more than limit)."""
    _check_size_limit("limit", limit)
    cdef const unsigned char[::1] h = memoryview(header).cast("B")
    if h.shape[0] < HEADER_SIZE:
        raise DecodeError(f"a header is 8 bytes, got {h.shape[0]}", h.shape[0])
    return _parse_header(&h[0], limit)


cdef class _Stream:
    """Decoder.feed's state: the header being collected, the message being received, and the
    complete messages not yet decoded. Guarded by a lock: feed and taking the next message are
    safe from any number of threads (one thread may feed while another iterates); a thread that
    re-enters (feeding from code the feeding runs) gets RuntimeError."""
    cdef unsigned char hdr[8]
    cdef int hdr_len
    cdef Receiver current
    cdef object ready            # collections.deque of complete message buffers
    cdef Py_ssize_t consumed     # bytes taken so far (for error offsets)
    cdef PyThread_type_lock lock
    cdef unsigned long owner     # the thread holding the lock

    def __cinit__(self):
        self.hdr_len = 0
        self.current = None
        self.consumed = 0
        import collections
        self.ready = collections.deque()
        self.lock = PyThread_allocate_lock()
        if self.lock == NULL:
            raise MemoryError()

    def __dealloc__(self):
        if self.lock != NULL:
            PyThread_free_lock(self.lock)

    cdef int acquire(self) except -1:
        cdef unsigned long me = PyThread_get_thread_ident()
        if not PyThread_acquire_lock(self.lock, NOWAIT_LOCK):
            if self.owner == me:
                raise RuntimeError("Decoder.feed was re-entered from code it ran (the stream is in use)")
            with nogil:
                PyThread_acquire_lock(self.lock, WAIT_LOCK)
        self.owner = me
        return 0

    cdef void release(self) noexcept:
        self.owner = 0
        PyThread_release_lock(self.lock)
