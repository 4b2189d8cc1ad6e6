# The decoder: q IPC bytes -> Python values.
#
# A cursor over the message (pointer, position, end, byte order) is checked before every read;
# counts are checked against the bytes left before anything is allocated; depth is a counter.

cdef struct SegRef:
    Py_ssize_t at                # offset in the Message's own bytes where this payload belongs
    const unsigned char* ptr
    Py_ssize_t len
    PyObject* base               # the memoryview that holds the payload's buffer


cdef struct DState:
    const unsigned char* buf     # the (uncompressed) message, header included
    Py_ssize_t pos
    Py_ssize_t end
    bint swap                    # big-endian message
    int max_depth
    const char* stack_floor          # nesting that reaches this address is refused
    const char* stack_top            # the stack at depth 0 (prescan.pxi measures use per level)
    PyObject* base               # what decoded views keep alive
    int last_code                # q type of the item decoded last (for dict/table shape checks)
    int last_attr
    SymTab syms
    bint intern
    const unsigned char* rec_keys    # the symbol bytes of the last record dict's keys ...
    Py_ssize_t rec_keys_len
    PyObject* rec_key_list           # ... and their decoded list (a strong reference)
    int rec_keys_unique              # 1 distinct, 0 repeated, -1 not known yet
    PyObject* ext                    # extension handler (decode(code, payload)), or NULL
    PyObject* xs                     # references and registry of this call (refs.pxi), or NULL
    PyObject* buffers                # iterator over out-of-band buffers, or NULL
    Py_ssize_t oob_count
    SegRef* segs                     # payloads of a multi-segment Message, read in place
    Py_ssize_t nsegs
    Py_ssize_t seg_i
    Py_ssize_t spent                 # bytes charged for the values made so far (budget.pxi) ...
    Py_ssize_t limit                 # ... and the most they may take
    Py_ssize_t shown_limit           # the limit as the options state it (for the error)
    Py_ssize_t size                  # the message's length, for the error that says so
    bint stable                      # the input cannot change while it is decoded (bytes, Message)
    Py_ssize_t hash_work             # values hashing set items and dict keys visits (hashtally.pxi) ...
    Py_ssize_t hash_limit            # ... and the most it may (-1: not computed yet)
    double hash_per_byte             # the decoder's factor for it, -1 for no bound
    double expansion                 # the decoder's max_expansion, -1 for None ...
    Py_ssize_t decoded_cap           # ... and its max_decoded_size (PY_SSIZE_T_MAX for None)


cdef int _fail(str what, Py_ssize_t offset, int type_code=0) except -1:
    raise DecodeError(what, offset, type_code if type_code else None)


cdef int _fail_with(str template, Py_ssize_t a, Py_ssize_t b, Py_ssize_t offset, int type_code) except -1:
    """_fail(template.format(a, b), ...), formatted here: in the functions each nesting level
    passes through (_decode_item, _decode_vector, _decode_list), an f-string's formatting is
    inlined into the caller and grows the stack frame that a 256 KiB thread has max_depth of."""
    _fail(template.format(a, b), offset, type_code)


cdef str _exception_text(BaseException e):
    """An exception for an error message: its type and text, bounded (its text may be long, or
    fail to format: CPython refuses to write an int of more than 4300 digits)."""
    try:
        text = f"{type(e).__name__}: {e}"
    except Exception:
        text = type(e).__name__
    return text if len(text) <= 300 else text[:300] + "..."




cdef inline int _charge(DState* s, Py_ssize_t nbytes, Py_ssize_t at) except -1:
    """Count nbytes of memory towards this message's budget (budget.pxi); at: where the item
    that needs them starts. The symbol table counts its own (SymTab.spent)."""
    s.spent += nbytes
    if s.spent + s.syms.spent > s.limit:
        _over_budget(s, at)
    return 0


cdef inline void _grant_received(DState* s, Py_ssize_t nbytes) noexcept:
    """Out-of-band buffers are bytes received as much as the message's own: the memory budget
    grows by max_expansion x their size, as it is for the message (up to max_decoded_size)."""
    if s.expansion < 0 or nbytes <= 0 or s.shown_limit >= s.decoded_cap:
        return
    cdef double grown = <double>s.shown_limit + s.expansion * <double>nbytes
    cdef Py_ssize_t shown = s.decoded_cap if grown >= <double>s.decoded_cap else <Py_ssize_t>grown
    s.limit += shown - s.shown_limit
    s.shown_limit = shown


cdef int _over_budget(DState* s, Py_ssize_t at) except -1:
    raise DecodeError(f"decoding this {s.size}-byte message needs more than its memory limit of {s.shown_limit} bytes "
                      f"(max_expansion x its size + 1 MiB, or max_decoded_size); a trusted sender's message may "
                      f"pass a larger max_expansion= or max_decoded_size= (SECURITY.md)", at, None)


cdef int _truncated(DState* s, Py_ssize_t need, str what) except -1:
    raise DecodeError(f"truncated message: {what} needs {need} bytes, {s.end - s.pos} left", s.pos)


cdef inline int _need(DState* s, Py_ssize_t n, str what) except -1:
    if s.end - s.pos < n:
        return _truncated(s, n, what)
    return 0


cdef inline uint32_t _rd_u32(DState* s) noexcept:
    cdef uint32_t v
    memcpy(&v, s.buf + s.pos, 4)
    s.pos += 4
    return qw_bswap32(v) if s.swap else v


cdef inline uint64_t _rd_u64(DState* s) noexcept:
    cdef uint64_t v
    memcpy(&v, s.buf + s.pos, 8)
    s.pos += 8
    return qw_bswap64(v) if s.swap else v


cdef inline Py_ssize_t _rd_count(DState* s, int code, bint long_count) except -1:
    cdef uint64_t n
    if long_count:
        _need(s, 8, "a vector count")
        n = _rd_u64(s)
    else:
        _need(s, 4, "a vector count")
        n = _rd_u32(s)
    if n > <uint64_t>(s.end - s.pos) and not _at_segment(s):
        # Every item takes at least a byte: a count beyond the bytes left is a lie.
        _count_lie(s, code, n, long_count)
    return <Py_ssize_t>n


cdef int _count_lie(DState* s, int code, uint64_t n, bint long_count) except -1:
    # Out of line, so that _rd_count stays small enough to inline.
    return _fail(f"vector of type {code} claims {n} items but only {s.end - s.pos} bytes follow", s.pos - (8 if long_count else 4), code)


cdef inline bint _at_segment(DState* s) noexcept:
    return s.seg_i < s.nsegs and s.segs[s.seg_i].at == s.pos


cdef inline Py_ssize_t _sym_end(DState* s, str what) except -1:
    cdef const void* z = memchr(s.buf + s.pos, 0, s.end - s.pos)
    if z == NULL:
        _fail(f"{what} is not NUL-terminated before the end of the message", s.pos)
    return <const unsigned char*>z - s.buf


# NumPy dtypes by q type, for views and scalars.
cdef cnp.dtype DT_BOOL = np.dtype(np.bool_)
cdef cnp.dtype DT_U8 = np.dtype(np.uint8)
cdef cnp.dtype DT_I16 = np.dtype(np.int16)
cdef cnp.dtype DT_I32 = np.dtype(np.int32)
cdef cnp.dtype DT_I64 = np.dtype(np.int64)
cdef cnp.dtype DT_F32 = np.dtype(np.float32)
cdef cnp.dtype DT_F64 = np.dtype(np.float64)
cdef cnp.dtype DT_S1 = np.dtype("S1")
cdef cnp.dtype DT_OBJ = np.dtype(object)
cdef cnp.dtype DT_TS = np.dtype("M8[ns]")
cdef cnp.dtype DT_MONTH = np.dtype("M8[M]")
cdef cnp.dtype DT_DATE = np.dtype("M8[D]")
cdef cnp.dtype DT_SPAN = np.dtype("m8[ns]")
cdef cnp.dtype DT_MINUTE = np.dtype("m8[m]")
cdef cnp.dtype DT_SECOND = np.dtype("m8[s]")
cdef cnp.dtype DT_TIME = np.dtype("m8[ms]")

cdef list _VIEW_DTYPES = [None, DT_BOOL, None, None, DT_U8, DT_I16, DT_I32, DT_I64, DT_F32, DT_F64,
                          None, None, None, None, None, DT_F64, DT_SPAN, None, None, None]
cdef list _INT32_TEMPORAL = [None] * 13 + [DT_MONTH, DT_DATE, None, None, DT_MINUTE, DT_SECOND, DT_TIME]
cdef int64_t[20] _INT32_SHIFT
_INT32_SHIFT[:] = [0] * 13 + [360, 10957, 0, 0, 0, 0, 0]

# Read-only empty vectors, shared: an empty vector carries no data to view.
cdef dict _EMPTY_VECTORS = {}


cdef object _new_array(cnp.dtype descr, Py_ssize_t n, void* data, object base):
    """An array of n items of descr: a read-only view of data kept alive by base, or (data NULL)
    a fresh writable array."""
    cdef cnp.npy_intp dims[1]
    dims[0] = n
    Py_INCREF(descr)
    arr = PyArray_NewFromDescr(<PyTypeObject*>cnp.ndarray, <PyObject*>descr, 1, dims, NULL, data, 0, NULL)
    if data != NULL:
        Py_INCREF(base)
        cnp.PyArray_SetBaseObject(<cnp.ndarray>arr, base)
    return arr


cdef object _scalar(cnp.dtype descr, const void* data):
    return PyArray_Scalar(<void*>data, <PyObject*>descr, NULL)


cdef class Decoder:
    """Reads q IPC messages; holds the options so hot loops pay for them once.

    Decoder(*, max_depth=256, max_decompressed_size=1 GiB, registry=None, strict_fields=False,
            max_message_size=None, max_expansion=16, max_decoded_size=None)
    registry: the qwire.Registry of classes it may build (default: qwire.default_registry); a
      registered-object record naming any other class raises UnregisteredTypeError.
    strict_fields: a registered dataclass or NamedTuple whose fields differ from the reader's is a
      DecodeError (by default missing fields take their defaults and unknown ones are ignored).
    max_expansion, max_decoded_size: the memory decoding one message may allocate is at most
      max_expansion x its size + 1 MiB (None: no such bound), and at most max_decoded_size bytes
      (None: no absolute ceiling). Views into the message count only their array object. A
      message that needs more is a DecodeError, raised before the allocation that would pass it.
    `decode(data)`: from bytes, bytearray, memoryview, Message, mmap or any C-contiguous buffer.
    Safe to share between threads: a decode call keeps its state on the stack; the one thing
    shared, the bounded cache of record dict keys (symtab.pxi), is read and updated under the GIL.
    """

    cdef readonly int max_depth
    cdef readonly object max_decompressed_size
    cdef readonly object max_message_size
    cdef readonly object max_expansion
    cdef readonly object max_decoded_size
    cdef double _expansion           # max_expansion as a number, -1 for None
    cdef Py_ssize_t _decoded_cap     # max_decoded_size, PY_SSIZE_T_MAX for None
    cdef double _hash_per_byte       # values hashing may visit per byte (hashtally.pxi), -1 for None
    cdef readonly object _ext      # extension handler (src/qwire/extensions.py; refs.pxi reads the registry)
    cdef _Stream _stream

    @property
    def registry(self):
        """The qwire.Registry whose classes this decoder may build."""
        return self._ext.registry

    @property
    def strict_fields(self):
        return self._ext.strict_fields

    def __init__(self, *, max_depth=DEFAULT_MAX_DEPTH, max_decompressed_size=None,
                 max_message_size=None, registry=None, strict_fields=False,
                 max_expansion=DEFAULT_MAX_EXPANSION, max_decoded_size=None):
        if not 1 <= max_depth <= MAX_DEPTH_LIMIT:
            # Each level is a C stack frame or two: beyond this, a deep enough value could
            # exhaust a thread's stack before the depth check refused it.
            raise ValueError(f"max_depth must be between 1 and {MAX_DEPTH_LIMIT}")
        self.max_depth = max_depth
        self.max_decompressed_size = _check_size_limit("max_decompressed_size", max_decompressed_size)
        self.max_message_size = _check_size_limit("max_message_size", max_message_size)
        if max_expansion is None:
            self._expansion = -1
        else:
            if not isinstance(max_expansion, (int, float)) or isinstance(max_expansion, bool) or not max_expansion >= 1:
                raise ValueError(f"max_expansion must be a number >= 1 or None, not {max_expansion!r}")
            self._expansion = max_expansion
        if max_decoded_size is None:
            self._decoded_cap = PY_SSIZE_T_MAX
        else:
            if not isinstance(max_decoded_size, int) or isinstance(max_decoded_size, bool) or max_decoded_size < 0:
                raise ValueError(f"max_decoded_size must be a non-negative int or None, not {max_decoded_size!r}")
            self._decoded_cap = min(max_decoded_size, PY_SSIZE_T_MAX)
        self.max_expansion = max_expansion
        self.max_decoded_size = max_decoded_size
        # hashing work scales with max_expansion, as memory does
        self._hash_per_byte = -1 if self._expansion < 0 else _HASH_WORK_PER_BYTE * self._expansion / DEFAULT_MAX_EXPANSION
        self._ext = _default_extensions(registry, strict_fields=strict_fields)
        self._stream = None

    # ---- streams: feed bytes as they arrive, iterate complete messages -----------------------

    def feed(self, data):
        """Take the next bytes of a stream of messages (any chunking, down to one byte at a
        time). Complete messages are decoded by iterating over the decoder. A malformed header
        raises DecodeError here; the stream cannot continue after one. Threads may share the
        stream: feeding and taking messages are serialised (SECURITY.md)."""
        cdef _Stream st = self._stream
        if st is None:
            st = _Stream()
            if self._stream is None:     # checked again: making one may have let another thread in
                self._stream = st
            st = self._stream
        cdef const unsigned char[::1] src = memoryview(data).cast("B")
        cdef Py_ssize_t pos = 0, n = src.shape[0], k
        st.acquire()
        try:
            while pos < n:
                if st.current is None:
                    k = min(HEADER_SIZE - st.hdr_len, n - pos)
                    memcpy(st.hdr + st.hdr_len, &src[pos], k)
                    st.hdr_len += k
                    pos += k
                    if st.hdr_len < HEADER_SIZE:
                        break
                    try:
                        total = _parse_header(st.hdr, self.max_message_size)
                    except DecodeError as e:
                        raise DecodeError(f"stream: {e.reason}", st.consumed + e.offset) from None
                    st.current = Receiver(PyBytes_FromStringAndSize(<const char*>st.hdr, HEADER_SIZE), total)
                    st.hdr_len = 0
                k = st.current.write(src[pos:])
                pos += k
                if st.current.filled == st.current.total:
                    st.consumed += st.current.total
                    st.ready.append(st.current.finish())
                    st.current = None
        finally:
            st.release()
        return None

    @property
    def pending(self):
        """Bytes received towards the next, incomplete message."""
        cdef _Stream st = self._stream
        if st is None:
            return 0
        st.acquire()
        try:
            return st.hdr_len + (0 if st.current is None else st.current.filled)
        finally:
            st.release()

    def __iter__(self):
        return self

    def __next__(self):
        """Decode the next complete message fed so far (StopIteration when there is none yet)."""
        cdef _Stream st = self._stream
        if st is None or not st.ready:
            raise StopIteration
        st.acquire()
        try:
            if not st.ready:
                raise StopIteration
            message = st.ready.popleft()
        finally:
            st.release()
        return self._decode(message, None)

    def __reduce__(self):
        return (_make_decoder, (self.max_depth, self.max_decompressed_size, self._ext.registry, self.max_message_size,
                                self._ext.strict_fields, self.max_expansion, self.max_decoded_size))

    def decode(self, data, buffers=None):
        """Deserialize one message. Raises DecodeError on malformed input and QError when the
        message is a q error. `buffers`: the out-of-band buffers of a message written with a
        buffer_callback, in order (pickle protocol 5's semantics)."""
        return self._decode(data, buffers)

    cdef object _decode(self, object data, object buffers=None):
        return self._decode_input(data, buffers, -1, False)

    cdef object _decode_input(self, object data, object buffers, Py_ssize_t budget_len, bint stable):
        if type(data) is Message:
            if (<Message>data)._layout is not None:
                return self._decode_segmented(<Message>data, buffers)
            # One contiguous block that never changes, exported read-only: views keep the
            # Message itself alive, and no memoryview is made for it.
            return self._decode_message(<const unsigned char*>(<Message>data)._buf, (<Message>data)._len, data, buffers,
                                        NULL, 0, -1, -1, True)
        cdef Py_buffer* view
        cdef object base
        cdef const unsigned char* p
        cdef Py_ssize_t n
        if type(data) is bytes:
            base = data
            p = <const unsigned char*>PyBytes_AS_STRING(data)
            n = PyBytes_GET_SIZE(data)
            stable = True
        else:
            try:
                base = PyMemoryView_FromObject(data)
            except TypeError:
                raise TypeError(f"loads needs a bytes-like object, not {type(data).__name__}") from None
            view = PyMemoryView_GET_BUFFER(base)
            if not view.readonly:
                # Views must stay read-only: NumPy would let a caller flip `writeable` back on
                # over a writable base.
                base = base.toreadonly()
                view = PyMemoryView_GET_BUFFER(base)
            if not PyBuffer_IsContiguous(view, b'C'):
                raise TypeError("loads needs a C-contiguous buffer")
            p = <const unsigned char*>view.buf
            n = view.len
        return self._decode_message(p, n, base, buffers, NULL, 0, -1, budget_len, stable)

    cdef object _decode_segmented(self, Message m, object buffers):
        """A Message whose large payloads are references: decode its own bytes and take each
        payload from its segment in place, without joining (loads(dumps(x)) copies nothing)."""
        cdef list layout = m._layout
        cdef Py_ssize_t nsegs = 0
        for part in layout:
            if type(part) is not tuple:
                nsegs += 1
        cdef SegRef* segs = <SegRef*>PyMem_Malloc(max(nsegs, 1) * sizeof(SegRef))
        if segs == NULL:
            raise MemoryError()
        cdef Py_ssize_t own = 0, k = 0
        cdef Py_buffer* view
        try:
            for part in layout:
                if type(part) is tuple:
                    own += <Py_ssize_t>part[1] - <Py_ssize_t>part[0]
                else:
                    view = PyMemoryView_GET_BUFFER(part)
                    segs[k].at = own
                    segs[k].ptr = <const unsigned char*>view.buf
                    segs[k].len = view.len
                    segs[k].base = <PyObject*>part
                    k += 1
            return self._decode_message(<const unsigned char*>m._buf, m._len, m, buffers, segs, nsegs, m._total, -1, True)
        finally:
            PyMem_Free(segs)

    cdef object _decode_message(self, const unsigned char* p, Py_ssize_t n, object base, object buffers,
                                SegRef* segs, Py_ssize_t nsegs, Py_ssize_t total_len,
                                Py_ssize_t budget_len, bint stable):
        """budget_len: the bytes the limits are computed from (a compressed message's own size, not
        what it decompressed to: what the sender sent is what it may make the decoder spend)."""
        if n < HEADER_SIZE:
            _fail(f"message of {n} bytes is shorter than the 8-byte header", n)
        if p[0] > 1:
            _fail(f"header byte 0 must be 1 (little-endian) or 0 (big-endian), not {p[0]}", 0)
        if p[1] > 2:
            _fail(f"header byte 1 (message type) must be 0, 1 or 2, not {p[1]}", 1)
        cdef uint32_t low
        memcpy(&low, p + 4, 4)
        if p[0] == 0:
            low = qw_bswap32(low)
        cdef uint64_t total = (<uint64_t>p[3] << 32) | low
        if total_len < 0:
            total_len = n
        if total != <uint64_t>total_len:
            _fail(f"header says the message is {total} bytes, but {total_len} were given", 4)
        if p[2] != 0:
            if p[2] > 2:
                _fail(f"header byte 2 (compression) must be 0, 1 or 2, not {p[2]}", 2)
            return self._decode_compressed(base, buffers, total_len)
        cdef DState s
        cdef double lim
        s.buf = p
        s.pos = HEADER_SIZE
        s.end = n
        s.swap = p[0] == 0
        s.max_depth = self.max_depth
        s.stack_floor = qw_stack_floor()
        s.stack_top = <const char*>&s
        s.base = <PyObject*>base
        s.syms.entries = NULL
        s.syms.cap = 0
        s.syms.used = 0
        s.syms.hits = 0
        s.syms.off = False
        s.syms.spent = 0
        s.intern = n >= 512
        s.rec_keys = NULL
        s.rec_keys_len = 0
        s.rec_key_list = NULL
        s.ext = <PyObject*>self._ext if self._ext is not None else NULL
        s.xs = NULL
        s.oob_count = 0
        s.segs = segs
        s.nsegs = nsegs
        s.seg_i = 0
        if budget_len < 0:
            budget_len = total_len
        s.size = budget_len
        s.stable = stable
        s.spent = 0
        s.hash_work = 0
        s.hash_limit = -1                # computed when something is first hashed (hashtally.pxi)
        s.hash_per_byte = self._hash_per_byte
        s.expansion = self._expansion
        s.decoded_cap = self._decoded_cap
        if self._expansion < 0:
            s.limit = s.shown_limit = self._decoded_cap
        else:
            # in double: a huge ratio or message saturates at the cap instead of overflowing
            lim = self._expansion * <double>budget_len + EXPANSION_SLACK
            if lim >= <double>self._decoded_cap:
                s.limit = s.shown_limit = self._decoded_cap
            else:
                s.shown_limit = <Py_ssize_t>lim
                # Freed objects CPython keeps for reuse (up to 80 lists, 80 dicts and their key
                # tables) still count as allocated, so what is credited back when decoding frees
                # a temporary can be that much short of what the allocator sees: kept out of the
                # 1 MiB of slack.
                s.limit = s.shown_limit - FREED_BUT_KEPT
        iterator = None
        s.buffers = NULL
        if buffers is not None:
            try:
                iterator = iter(buffers)
            except TypeError:
                raise TypeError(f"buffers must be an iterable of buffers, not {type(buffers).__name__}") from None
            s.buffers = <PyObject*>iterator
        # Building many containers triggers the cyclic GC again and again, for nothing: the
        # decoder makes no cycles. Paused for messages big enough to matter.
        cdef bint gc_was_enabled = PyGC_Disable() if n >= GC_PAUSE_MIN_BYTES else False
        try:
            _need(&s, 1, "the type byte")
            if <int8_t>p[HEADER_SIZE] == QT_ERROR:
                _raise_q_error(&s)
            result = _decode_item(&s, 0)
            if s.pos != s.end:
                _fail(f"{s.end - s.pos} bytes left over after the message's value", s.pos)
            if iterator is not None and next(iterator, _NO_BUFFER) is not _NO_BUFFER:
                _fail(f"more out-of-band buffers were given than the message's {s.oob_count}", s.end)
            _dec_state_done(&s)     # refs.pxi: kept for the next message (the finally drops it after a failure)
            return result
        finally:
            if gc_was_enabled:
                PyGC_Enable()
            symtab_free(&s.syms)
            Py_XDECREF(s.rec_key_list)
            Py_XDECREF(s.xs)

    cdef object _decode_compressed(self, object data, object buffers, Py_ssize_t wire_len):
        from qwire import compression
        kw = {} if self.max_decompressed_size is None else {"max_size": self.max_decompressed_size}
        plain = compression.decompress(data, **kw)
        # The decompressed bytes are bounded by max_decompressed_size (and by the format, ~128x the
        # input at most); what is decoded from them by the compressed size that arrived. The
        # bytearray is the decoder's own: nothing else can change it.
        return self._decode_input(plain, buffers, wire_len, True)


cdef int _raise_q_error(DState* s) except -1:
    s.pos += 1
    cdef Py_ssize_t z = _sym_end(s, "the error text")
    if z + 1 != s.end:
        _fail(f"{s.end - z - 1} bytes left over after the q error text", z + 1)
    raise QError(PyUnicode_DecodeUTF8(<const char*>s.buf + s.pos, z - s.pos, "surrogateescape"))


cdef object _decode_item(DState* s, int depth):
    _need(s, 1, "a type byte")
    cdef Py_ssize_t start = s.pos
    cdef int t = <int8_t>s.buf[s.pos]
    s.pos += 1
    s.last_attr = 0
    s.last_code = t
    if t < 0:
        if t >= -19 and t != -3:
            return _decode_atom(s, -t, start)
        if t == QT_ERROR:
            _fail("a q error (type -128) can only be a whole message, not part of one", start, t)
        _bad_type(t, start)
    if t <= 19:
        if t == 3:
            _bad_type(t, start)
        if depth >= s.max_depth:
            _fail_with("nesting deeper than max_depth={}", s.max_depth, 0, start, t)
        if depth > 16 and <const char*>&start < s.stack_floor:
            _fail_with("nesting too deep for this thread's stack ({} levels)", depth, 0, start, t)
        if depth == PRESCAN_DEPTH and t == QT_LIST:
            _prescan(s, start, depth)      # prescan.pxi: refuses too-deep nesting from here
        return _decode_vector(s, t, start, depth)
    if depth >= s.max_depth:
        _fail_with("nesting deeper than max_depth={}", s.max_depth, 0, start, t)
    if depth > 16 and <const char*>&start < s.stack_floor:
        _fail_with("nesting too deep for this thread's stack ({} levels)", depth, 0, start, t)
    if depth == PRESCAN_DEPTH:
        _prescan(s, start, depth)
    if t == QT_DICT or t == QT_SORTED_DICT:
        return _decode_dict(s, t, start, depth)
    if t == QT_TABLE:
        return _decode_table(s, start, depth)
    if QT_LAMBDA <= t <= QT_EACH_LEFT:
        return _decode_function(s, t, start, depth)
    if t == QT_EXTENSION:
        if s.end - s.pos >= 1 and s.buf[s.pos] == EXT_OUT_OF_BAND:
            return _decode_out_of_band(s, start)
        if s.ext != NULL:
            return _decode_extension_guarded(s, start, depth)
    _bad_type(t, start)


cdef object _NO_BUFFER = object()


cdef object _decode_out_of_band(DState* s, Py_ssize_t start):
    """70 30, then a vector header whose elements are the next out-of-band buffer."""
    s.pos += 1
    _need(s, 6, "an out-of-band vector header")
    cdef int code = <int8_t>s.buf[s.pos]
    cdef int attr_byte = s.buf[s.pos + 1]
    cdef int attr = attr_byte & 0x7F
    s.pos += 2
    if not (code == QT_BOOLEAN or code == QT_BYTE or code == QT_SHORT or code == QT_INT or code == QT_LONG
            or code == QT_REAL or code == QT_FLOAT or code == QT_CHAR or code == QT_TIMESPAN):
        _fail(f"an out-of-band vector cannot be of type {code}", start + 2, QT_EXTENSION)
    if attr > MAX_ATTRIBUTE:
        _fail(f"attribute byte {attr_byte:#04x} is not 0..4", start + 3, code)
    cdef uint64_t n
    if attr_byte & ATTR_LONG_COUNT:
        _need(s, 8, "a vector count")
        n = _rd_u64(s)
    else:
        _need(s, 4, "a vector count")
        n = _rd_u32(s)
    cdef Py_ssize_t index = s.oob_count
    s.oob_count += 1
    if s.buffers == NULL:
        _fail("the message has out-of-band buffers; pass them with buffers=", start, QT_EXTENSION)
    try:
        buf = next(<object>s.buffers, _NO_BUFFER)
    except Exception as e:
        raise DecodeError(f"the buffers iterator failed at out-of-band buffer #{index}: {_exception_text(e)}",
                          start, QT_EXTENSION) from e
    if buf is _NO_BUFFER:
        _fail(f"out-of-band buffer #{index} is missing (only {index} were given)", start, QT_EXTENSION)
    try:
        mv = PyMemoryView_FromObject(buf)
    except TypeError:
        _fail(f"out-of-band buffer #{index} is a {type(buf).__name__}, not a buffer", start, QT_EXTENSION)
    cdef Py_buffer* view = PyMemoryView_GET_BUFFER(mv)
    if not PyBuffer_IsContiguous(view, b'C'):
        _fail(f"out-of-band buffer #{index} is not C-contiguous", start, QT_EXTENSION)
    cdef uint64_t width = ELEMENT_WIDTH[code]
    if n > <uint64_t>PY_SSIZE_T_MAX // width or <uint64_t>view.len != n * width:
        _fail(f"out-of-band buffer #{index} has {view.len} bytes; the vector needs {n} x {width}", start, QT_EXTENSION)
    _grant_received(s, view.len)
    cdef const unsigned char* p = <const unsigned char*>view.buf
    cdef Py_ssize_t i
    if code == QT_BOOLEAN:
        for i in range(<Py_ssize_t>n):
            if p[i] > 1:
                _fail(f"out-of-band boolean buffer #{index} has byte {p[i]} at {i}", start, code)
    if code == QT_CHAR:
        _charge(s, COST_MEMORYVIEW + COST_BYTES + <Py_ssize_t>n, start)
        value = PyBytes_FromStringAndSize(<const char*>p, <Py_ssize_t>n)
    elif n == 0:
        value = _empty_vector(code)
    else:
        _charge(s, COST_MEMORYVIEW + COST_ARRAY, start)
        value = _new_array(<cnp.dtype>_VIEW_DTYPES[code], <Py_ssize_t>n, <void*>p, mv)
    s.last_code = code
    s.last_attr = attr
    return _charged(s, Vector(value, code, ATTRIBUTES[attr]), start) if attr else value


cdef object _decode_extension_guarded(DState* s, Py_ssize_t start, int depth):
    """_decode_extension, letting only qwire's errors out. Extension records are where code other
    than the decoder's runs (registered classes' functions, __hash__ and __eq__, NumPy's checks):
    anything else it raises (or CPython raises for it: RecursionError, the int-to-str limit)
    becomes a DecodeError at the record, the original its __cause__. (Plain q data runs only the
    decoder's own code: no handler is needed on its path.)"""
    try:
        return _decode_extension(s, start, depth)
    except (DecodeError, QError, MemoryError):
        raise
    except Exception as e:
        raise DecodeError(f"cannot decode the qwire extension record here: {_exception_text(e)}", start,
                          QT_EXTENSION) from e


cdef object _decode_extension(DState* s, Py_ssize_t start, int depth):
    """A qwire extension record: 70, a code byte, one item (docs/FORMAT.md)."""
    _need(s, 1, "an extension record's code")
    cdef int code = s.buf[s.pos]
    s.pos += 1
    if _CODE_CLASS[code] == CODE_CORE:                  # refs.pxi: registered objects, references
        return _decode_core_record(s, code, start, depth)
    if _CODE_CLASS[code] == CODE_UNKNOWN:
        _fail(f"unknown qwire extension record code {code:#04x}", start, QT_EXTENSION)
    payload = _decode_item(s, depth + 1)
    # What the record will make is charged before it is made (refs.pxi), then its real size.
    cdef Py_ssize_t before = _extension_cost(code, payload)
    _charge(s, before, start)
    try:
        if (code == EXT_SET or code == EXT_FROZENSET) and type(payload) is list:
            if PyList_GET_SIZE(payload) > SHARED_HASH_LIMIT:
                value = _set_of_items(s, payload, code == EXT_FROZENSET, start)   # hashtally.pxi
            else:
                for item in <list>payload:
                    _charge_hash(s, item, start)
                value = (<object>s.ext).decode(code, payload)
        else:
            value = (<object>s.ext).decode(code, payload)
    except DecodeError as e:
        if e.offset is None:
            raise DecodeError(e.reason, start, QT_EXTENSION) from (e.__cause__ if e.__cause__ is not None else e)
        raise
    except MemoryError:
        raise
    except Exception as e:
        raise DecodeError(f"cannot decode extension record {code:#04x}: {_exception_text(e)}", start, QT_EXTENSION) from e
    s.spent -= before
    # A table integration's value is built over its payload, whose columns were charged as they
    # were decoded: getsizeof would size it again (a DataFrame's walks every object cell).
    _charge(s, _shell_cost(value) if _PAYLOAD_BACKED[code] else _object_cost(value), start)
    if type(payload) is list and value is not payload:
        # the payload list, charged when it was decoded, is freed on return (the value holds its
        # items, not it)
        s.spent -= COST_LIST + COST_SLOT * PyList_GET_SIZE(payload)
    s.last_code = QT_EXTENSION
    return value


cdef int _bad_type(int t, Py_ssize_t at) except -1:
    if 20 <= abs(t) <= 76:
        what = f"an enumeration (type {t}); kdb+ sends enumerations as their symbol values"
    elif 77 <= t <= 97:
        what = f"a mapped/on-disk value (type {t}), which never travels over IPC"
    elif t == QT_EXTENSION:
        what = "a qwire extension record (type 112) in a message read with extensions off"
    elif t == 112 or t == 113 or t == 126:
        what = f"a foreign object (type {t})"
    else:
        what = f"unknown type {t}"
    return _fail(f"cannot decode {what}", at, t)


def _make_decoder(max_depth, max_decompressed_size, registry=None, max_message_size=None, strict_fields=False,
                  max_expansion=DEFAULT_MAX_EXPANSION, max_decoded_size=None):
    return Decoder(max_depth=max_depth, max_decompressed_size=max_decompressed_size, registry=registry,
                   max_message_size=max_message_size, strict_fields=strict_fields,
                   max_expansion=max_expansion, max_decoded_size=max_decoded_size)
