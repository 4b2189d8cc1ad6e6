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


cdef int _fail(str what, Py_ssize_t offset, int type_code=0) except -1:
    raise DecodeError(what, offset, type_code if type_code else None)




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

    Decoder(*, max_depth=256, max_decompressed_size=1 GiB, registry=None, strict_fields=False)
    registry: the qwire.Registry of classes it may build (default: qwire.default_registry); a
      registered-object record naming any other class raises UnregisteredTypeError.
    strict_fields: a registered dataclass or NamedTuple whose fields differ from the reader's is a
      DecodeError (by default missing fields take their defaults and unknown ones are ignored).
    `decode(data)`: from bytes, bytearray, memoryview, Message, mmap or any C-contiguous buffer.
    Safe to share between threads: a decode call keeps its state on the stack; the one thing
    shared, the bounded cache of record dict keys (symtab.pxi), is read and updated under the GIL.
    """

    cdef readonly int max_depth
    cdef readonly object max_decompressed_size
    cdef readonly object max_message_size
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
                 max_message_size=None, registry=None, strict_fields=False):
        if not 1 <= max_depth <= MAX_DEPTH_LIMIT:
            # Each level is a C stack frame or two: beyond this, a deep enough value could
            # exhaust a thread's stack before the depth check refused it.
            raise ValueError(f"max_depth must be between 1 and {MAX_DEPTH_LIMIT}")
        self.max_depth = max_depth
        self.max_decompressed_size = max_decompressed_size
        self.max_message_size = max_message_size
        self._ext = _default_extensions(registry, strict_fields=strict_fields)
        self._stream = None

    # ---- streams: feed bytes as they arrive, iterate complete messages -----------------------

    def feed(self, data):
        """Take the next bytes of a stream of messages (any chunking, down to one byte at a
        time). Complete messages are decoded by iterating over the decoder. A malformed header
        raises DecodeError here; the stream cannot continue after one."""
        if self._stream is None:
            self._stream = _Stream()
        cdef _Stream st = self._stream
        cdef const unsigned char[::1] src = memoryview(data).cast("B")
        cdef Py_ssize_t pos = 0, n = src.shape[0], k
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
        return None

    @property
    def pending(self):
        """Bytes received towards the next, incomplete message."""
        if self._stream is None:
            return 0
        return self._stream.hdr_len + (0 if self._stream.current is None else self._stream.current.filled)

    def __iter__(self):
        return self

    def __next__(self):
        """Decode the next complete message fed so far (StopIteration when there is none yet)."""
        if self._stream is None or not self._stream.ready:
            raise StopIteration
        return self._decode(self._stream.ready.popleft(), None)

    def __reduce__(self):
        return (_make_decoder, (self.max_depth, self.max_decompressed_size, self._ext.registry, self.max_message_size,
                                self._ext.strict_fields))

    def decode(self, data, buffers=None):
        """Deserialize one message. Raises DecodeError on malformed input and QError when the
        message is a q error. `buffers`: the out-of-band buffers of a message written with a
        buffer_callback, in order (pickle protocol 5's semantics)."""
        return self._decode(data, buffers)

    cdef object _decode(self, object data, object buffers=None):
        if type(data) is Message:
            if (<Message>data)._layout is not None:
                return self._decode_segmented(<Message>data, buffers)
            # One contiguous block that never changes, exported read-only: views keep the
            # Message itself alive, and no memoryview is made for it.
            return self._decode_message(<const unsigned char*>(<Message>data)._buf, (<Message>data)._len, data, buffers)
        cdef Py_buffer* view
        cdef object base
        cdef const unsigned char* p
        cdef Py_ssize_t n
        if type(data) is bytes:
            base = data
            p = <const unsigned char*>PyBytes_AS_STRING(data)
            n = PyBytes_GET_SIZE(data)
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
        return self._decode_message(p, n, base, buffers)

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
            return self._decode_message(<const unsigned char*>m._buf, m._len, m, buffers, segs, nsegs, m._total)
        finally:
            PyMem_Free(segs)

    cdef object _decode_message(self, const unsigned char* p, Py_ssize_t n, object base, object buffers,
                                SegRef* segs=NULL, Py_ssize_t nsegs=0, Py_ssize_t total_len=-1):
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
            return self._decode_compressed(base, buffers)
        cdef DState s
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

    cdef object _decode_compressed(self, object data, object buffers):
        from qwire import compression
        kw = {} if self.max_decompressed_size is None else {"max_size": self.max_decompressed_size}
        plain = compression.decompress(data, **kw)
        return self._decode(plain, buffers)


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
            _fail(f"nesting deeper than max_depth={s.max_depth}", start, t)
        if depth > 16 and <const char*>&start < s.stack_floor:
            _fail(f"nesting too deep for this thread's stack ({depth} levels)", start, t)
        if depth == PRESCAN_DEPTH and t == QT_LIST:
            _prescan(s, start, depth)      # prescan.pxi: refuses too-deep nesting from here
        return _decode_vector(s, t, start, depth)
    if depth >= s.max_depth:
        _fail(f"nesting deeper than max_depth={s.max_depth}", start, t)
    if depth > 16 and <const char*>&start < s.stack_floor:
        _fail(f"nesting too deep for this thread's stack ({depth} levels)", start, t)
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
            return _decode_extension(s, start, depth)
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
    buf = next(<object>s.buffers, _NO_BUFFER)
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
    cdef const unsigned char* p = <const unsigned char*>view.buf
    cdef Py_ssize_t i
    if code == QT_BOOLEAN:
        for i in range(<Py_ssize_t>n):
            if p[i] > 1:
                _fail(f"out-of-band boolean buffer #{index} has byte {p[i]} at {i}", start, code)
    if code == QT_CHAR:
        value = PyBytes_FromStringAndSize(<const char*>p, <Py_ssize_t>n)
    elif n == 0:
        value = _empty_vector(code)
    else:
        value = _new_array(<cnp.dtype>_VIEW_DTYPES[code], <Py_ssize_t>n, <void*>p, mv)
    s.last_code = code
    s.last_attr = attr
    return Vector(value, code, ATTRIBUTES[attr]) if attr else value


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
    try:
        value = (<object>s.ext).decode(code, payload)
    except DecodeError as e:
        if e.offset is None:
            raise DecodeError(e.reason, start, QT_EXTENSION) from e
        raise
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


# ---- atoms -------------------------------------------------------------------------------------

cdef list _BYTE_ATOMS = [None] * 256
cdef list _CHAR_ATOMS = [None] * 256


cdef object _decode_atom(DState* s, int code, Py_ssize_t start):
    cdef Py_ssize_t width = ELEMENT_WIDTH[code]
    cdef const unsigned char* p
    cdef uint16_t u16
    cdef uint32_t u32
    cdef uint64_t u64
    cdef double d
    cdef Py_ssize_t z
    cdef uint64_t h, w8
    if code == QT_SYMBOL:
        p = s.buf + s.pos
        if s.intern and not s.syms.off:
            z = qw_sym_scan(p, s.end - s.pos, &h, &w8)
            if z < 0:
                _fail("a symbol is not NUL-terminated before the end of the message", s.pos)
            s.pos += z + 1
            return symtab_get_hashed(&s.syms, <const char*>p, z, h, w8)
        # Not interning (or interning stopped paying in this message): no hash to compute.
        z = _sym_end(s, "a symbol") - s.pos
        s.pos += z + 1
        return _sym_new(<const char*>p, z)
    _need(s, width, "an atom")
    p = s.buf + s.pos
    s.pos += width
    if width == 1:
        if code == QT_BOOLEAN:
            if p[0] > 1:
                _fail(f"boolean byte must be 0 or 1, not {p[0]}", start + 1, -1)
            return p[0] == 1
        return _small_atom(code, p[0])
    if width == 2:
        memcpy(&u16, p, 2)
        if s.swap:
            u16 = qw_bswap16(u16)
        return _scalar(DT_I16, &u16)
    if width == 4:
        memcpy(&u32, p, 4)
        if s.swap:
            u32 = qw_bswap32(u32)
        if code == QT_INT:
            return _scalar(DT_I32, &u32)
        if code == QT_REAL:
            return _scalar(DT_F32, &u32)
        return _int32_temporal_atom(code, <int32_t>u32)
    if width == 8:
        memcpy(&u64, p, 8)
        if s.swap:
            u64 = qw_bswap64(u64)
        if code == QT_LONG:
            return PyLong_FromLongLong(<int64_t>u64)
        if code == QT_FLOAT:
            memcpy(&d, &u64, 8)
            return PyFloat_FromDouble(d)
        if code == QT_TIMESTAMP:
            return _timestamp_atom(<int64_t>u64, start)
        if code == QT_TIMESPAN:
            return _timespan_atom(<int64_t>u64)
        memcpy(&d, &u64, 8)
        return _new_datetime_value(d)
    # guid: 16 bytes in printed order, never swapped
    return _make_uuid(p)


cdef object _small_atom(int code, unsigned char b):
    # Byte and char atoms are cached: immutable, and a message of many of them must not
    # allocate an object per two input bytes.
    cdef list cache = _BYTE_ATOMS if code == QT_BYTE else _CHAR_ATOMS
    v = cache[b]
    if v is None:
        # A char atom is built from its one byte (a NumPy S1 scalar would drop a NUL byte).
        v = _scalar(DT_U8, &b) if code == QT_BYTE else np.bytes_(PyBytes_FromStringAndSize(<const char*>&b, 1))
        cache[b] = v
    return v


cdef object _timestamp_atom(int64_t v, Py_ssize_t start):
    cdef int64_t days, rem, shifted
    cdef int y, m, d
    if not _special64(v) and v % 1000 == 0:
        days = floordiv64(v, NS_PER_DAY)
        rem = (v - days * NS_PER_DAY) // 1000
        civil_from_days(days + EPOCH_DAYS, &y, &m, &d)
        return datetime_new(y, m, d, <int>(rem // 3600000000), <int>(rem // 60000000 % 60),
                            <int>(rem // 1000000 % 60), <int>(rem % 1000000), None)
    if _special64(v):
        return _scalar(DT_TS, &v)
    if qw_add_overflow_i64(v, EPOCH_NS, &shifted) or _special64(shifted):
        return Timestamp(v)   # nanoseconds beyond datetime64[ns]'s range: q's raw value
    return _scalar(DT_TS, &shifted)


cdef object _timespan_atom(int64_t v):
    cdef int64_t us, days
    if _special64(v) or v % 1000 != 0:
        return _scalar(DT_SPAN, &v)
    us = v // 1000
    days = floordiv64(us, 86400000000)
    us -= days * 86400000000
    return timedelta_new(<int>days, <int>(us // 1000000), <int>(us % 1000000))


cdef inline int64_t _widen32(int32_t v, int64_t shift) noexcept nogil:
    if v == NULL_INT:
        return NULL_LONG
    if v == INF_INT:
        return INF_LONG
    if v == -INF_INT:
        return -INF_LONG
    return <int64_t>v + shift


cdef object _int32_temporal_atom(int code, int32_t v):
    cdef int y, m, d
    cdef int64_t w
    if code == QT_DATE and v != NULL_INT and v != INF_INT and v != -INF_INT:
        civil_from_days(<int64_t>v + EPOCH_DAYS, &y, &m, &d)
        if 1 <= y <= 9999:
            return date_new(y, m, d)
    if code == QT_TIME and 0 <= v < MS_PER_DAY:
        return time_new(v // 3600000, v // 60000 % 60, v // 1000 % 60, v % 1000 * 1000, None)
    w = _widen32(v, _INT32_SHIFT[code])
    return _scalar(<cnp.dtype>_INT32_TEMPORAL[code], &w)


cdef object _new_datetime_value(double d):
    return DateTime(d)


cdef object _make_uuid(const unsigned char* p):
    u = _uuid_new(UUID)
    _object_setattr(u, "int", int.from_bytes(PyBytes_FromStringAndSize(<const char*>p, 16), "big"))
    _object_setattr(u, "is_safe", _SAFE_UUID_UNKNOWN)
    return u


# ---- vectors -----------------------------------------------------------------------------------

cdef object _decode_vector(DState* s, int code, Py_ssize_t start, int depth):
    _need(s, 1, "the attribute byte")
    cdef int attr_byte = s.buf[s.pos]
    s.pos += 1
    cdef int attr = attr_byte & 0x7F
    if attr > MAX_ATTRIBUTE:
        _fail(f"attribute byte {attr_byte:#04x} is not one of 0 (none), 1 (s), 2 (u), 3 (p), 4 (g)", start + 1, code)
    cdef Py_ssize_t n = _rd_count(s, code, attr_byte & ATTR_LONG_COUNT)
    cdef object value
    if code == QT_LIST:
        value = _decode_list(s, n, depth)
    elif code == QT_SYMBOL:
        value = _decode_symbols(s, n)
    elif code == QT_CHAR:
        if _at_segment(s):
            value = PyBytes_FromStringAndSize(<const char*>_take_segment(s, n), n)
        else:
            value = PyBytes_FromStringAndSize(<const char*>s.buf + s.pos, n)
            s.pos += n
    else:
        value = _decode_fixed(s, code, n)
    s.last_code = code
    s.last_attr = attr
    if type(value) is Vector:          # raw timestamps beyond datetime64[ns]: already wrapped
        (<object>value).attr = ATTRIBUTES[attr]
        return value
    if attr:
        return Vector(value, code, ATTRIBUTES[attr])
    if code == QT_DATETIME or (code == QT_GUID and n == 0):
        return Vector(value, code)
    return value


cdef list _decode_list(DState* s, Py_ssize_t n, int depth):
    if n > (s.end - s.pos) // 2:
        # Every item is at least two bytes (a type byte and one more).
        _fail(f"general list claims {n} items but only {s.end - s.pos} bytes follow", s.pos - 4, 0)
    cdef list out = PyList_New(n)
    cdef Py_ssize_t i
    cdef int t
    cdef uint64_t u64
    cdef double d
    for i in range(n):
        # Fast paths for long and float atoms (lists of Python ints and floats); everything
        # else, and any short read, goes through _decode_item and its checks.
        if s.end - s.pos >= 9:
            t = <int8_t>s.buf[s.pos]
            if t == -QT_LONG or t == -QT_FLOAT:
                memcpy(&u64, s.buf + s.pos + 1, 8)
                s.pos += 9
                if s.swap:
                    u64 = qw_bswap64(u64)
                if t == -QT_LONG:
                    item = PyLong_FromLongLong(<int64_t>u64)
                else:
                    memcpy(&d, &u64, 8)
                    item = PyFloat_FromDouble(d)
                Py_INCREF(item)
                PyList_SET_ITEM(out, i, item)
                continue
        item = _decode_item(s, depth + 1)
        Py_INCREF(item)
        PyList_SET_ITEM(out, i, item)
    s.last_code = QT_LIST
    return out


cdef inline str _next_symbol(DState* s):
    """The symbol at s.pos (interned when s.intern); moves past its NUL."""
    cdef uint64_t h, w8
    cdef const char* p = <const char*>s.buf + s.pos
    cdef Py_ssize_t n = qw_sym_scan(s.buf + s.pos, s.end - s.pos, &h, &w8)
    if n < 0:
        _fail("a symbol in a symbol vector is not NUL-terminated before the end of the message", s.pos)
    s.pos += n + 1
    if s.intern:
        return symtab_get_hashed(&s.syms, p, n, h, w8)
    return _sym_new(p, n)


cdef list _decode_symbol_list(DState* s, Py_ssize_t n):
    cdef list out = PyList_New(n)
    cdef Py_ssize_t i
    cdef str sym
    for i in range(n):
        sym = _next_symbol(s)
        Py_INCREF(sym)
        PyList_SET_ITEM(out, i, sym)
    return out


cdef object _decode_symbols(DState* s, Py_ssize_t n):
    # NumPy fills a new object array with NULLs (which it reads as None): each slot is written
    # once, with no None to release.
    arr = _new_array(DT_OBJ, n, NULL, None)
    cdef PyObject** slots = <PyObject**>cnp.PyArray_DATA(<cnp.ndarray>arr)
    cdef Py_ssize_t i, k
    cdef uint64_t h, w8
    cdef const char* p
    cdef PyObject* o
    cdef str sym
    for i in range(n):
        p = <const char*>s.buf + s.pos
        if s.intern and not s.syms.off:
            k = qw_sym_scan(s.buf + s.pos, s.end - s.pos, &h, &w8)
            if k < 0:
                _fail("a symbol in a symbol vector is not NUL-terminated before the end of the message", s.pos)
            s.pos += k + 1
            o = symtab_find(&s.syms, p, k, h, w8)
            if o != NULL:
                Py_INCREF(<object>o)
                slots[i] = o
                continue
            sym = symtab_add(&s.syms, p, k, h, w8)
        else:
            # not interning (or it stopped paying in this message): no hash to compute
            k = _sym_end(s, "a symbol in a symbol vector") - s.pos
            s.pos += k + 1
            sym = _sym_new(p, k)
        Py_INCREF(sym)
        slots[i] = <PyObject*>sym
    return arr


cdef const unsigned char* _take_segment(DState* s, Py_ssize_t nbytes) except NULL:
    cdef SegRef* seg = &s.segs[s.seg_i]
    if seg.len != nbytes:
        _fail(f"message segment has {seg.len} bytes where the vector needs {nbytes}", s.pos)
    s.seg_i += 1
    return seg.ptr


cdef object _decode_fixed(DState* s, int code, Py_ssize_t n):
    cdef Py_ssize_t width = ELEMENT_WIDTH[code]
    cdef const unsigned char* p
    cdef object base = <object>s.base
    cdef Py_ssize_t i
    if _at_segment(s):
        base = <object>s.segs[s.seg_i].base
        p = _take_segment(s, n * width)
    else:
        if n > (s.end - s.pos) // width:
            _fail(f"vector of type {code} claims {n} items ({width} bytes each) but only {s.end - s.pos} bytes follow", s.pos - 4, code)
        p = s.buf + s.pos
        s.pos += n * width
    if code == QT_BOOLEAN:
        for i in range(n):
            if p[i] > 1:
                _fail(f"boolean byte must be 0 or 1, not {p[i]}", (p - s.buf) + i, code)
    if code == QT_GUID:
        return _decode_guids(p, n)
    if n == 0:
        return _empty_vector(code)
    descr = _VIEW_DTYPES[code]
    if descr is not None:
        if s.swap:
            return _swapped_copy(<cnp.dtype>descr, p, n)
        return _new_array(<cnp.dtype>descr, n, <void*>p, base)
    if code == QT_TIMESTAMP:
        return _decode_timestamps(s, p, n, base)
    return _decode_int32_temporals(s, code, p, n)


cdef object _empty_vector(int code):
    v = _EMPTY_VECTORS.get(code)
    if v is None:
        descr = _VIEW_DTYPES[code] or _INT32_TEMPORAL[code] or (DT_TS if code == QT_TIMESTAMP else None)
        v = np.empty(0, dtype=descr)
        v.flags.writeable = False
        _EMPTY_VECTORS[code] = v
    return v


cdef object _swapped_copy(cnp.dtype descr, const unsigned char* p, Py_ssize_t n):
    be = np.frombuffer(PyBytes_FromStringAndSize(<const char*>p, n * descr.itemsize), dtype=descr.newbyteorder(">"))
    return be.astype(descr)


cdef object _decode_guids(const unsigned char* p, Py_ssize_t n):
    cdef cnp.ndarray arr = np.empty(n, dtype=object)
    cdef PyObject** slots = <PyObject**>cnp.PyArray_DATA(arr)
    cdef Py_ssize_t i
    for i in range(n):
        u = _make_uuid(p + 16 * i)
        Py_INCREF(u)
        Py_XDECREF(slots[i])
        slots[i] = <PyObject*>u
    return arr


cdef object _decode_timestamps(DState* s, const unsigned char* p, Py_ssize_t n, object base):
    """q timestamps (ns since 2000) -> datetime64[ns] (since 1970) in one pass; nulls and
    infinities unshifted. A value NumPy cannot hold makes the vector come back in q's raw units
    (Vector(int64s, 'timestamp'))."""
    arr = _new_array(DT_TS, n, NULL, None)
    cdef int64_t* dst = <int64_t*>cnp.PyArray_DATA(<cnp.ndarray>arr)
    cdef Py_ssize_t i
    cdef int64_t v
    cdef bint swap = s.swap
    cdef bint overflow = False
    with nogil:
        for i in range(n):
            memcpy(&v, p + 8 * i, 8)
            if swap:
                v = <int64_t>qw_bswap64(<uint64_t>v)
            if _special64(v):
                dst[i] = v
            elif qw_add_overflow_i64(v, EPOCH_NS, &dst[i]) or _special64(dst[i]):
                overflow = True
                break
    if overflow:
        raw = (_swapped_copy(DT_I64, p, n) if swap else
               _new_array(DT_I64, n, <void*>p, base))
        return Vector(raw, QT_TIMESTAMP)
    return arr


cdef object _decode_int32_temporals(DState* s, int code, const unsigned char* p, Py_ssize_t n):
    """q's int32 temporals -> int64-based NumPy temporals: widen, shift, map null/±inf."""
    arr = _new_array(<cnp.dtype>_INT32_TEMPORAL[code], n, NULL, None)
    cdef int64_t* dst = <int64_t*>cnp.PyArray_DATA(<cnp.ndarray>arr)
    cdef int64_t shift = _INT32_SHIFT[code]
    cdef Py_ssize_t i
    cdef uint32_t v
    cdef bint swap = s.swap
    with nogil:
        for i in range(n):
            memcpy(&v, p + 4 * i, 4)
            if swap:
                v = qw_bswap32(v)
            dst[i] = _widen32(<int32_t>v, shift)
    return arr


# ---- dictionaries and tables ---------------------------------------------------------------------

cdef Py_ssize_t _length(object v):
    """Item count of a decoded list-like value, -1 for atoms."""
    t = type(v)
    if t is cnp.ndarray or t is list or t is bytes or t is Vector or t is Table or t is Dict or t is KeyedTable or t is dict:
        return len(v)
    return -1


cdef object _decode_dict(DState* s, int t, Py_ssize_t start, int depth):
    if t == QT_DICT and s.end - s.pos >= 6 and s.buf[s.pos] == QT_SYMBOL and s.buf[s.pos + 1] == 0:
        return _decode_record(s, start, depth)
    keys = _decode_item(s, depth + 1)
    return _finish_dict(s, t, start, depth, keys, s.last_code, s.last_attr)


cdef object _finish_dict(DState* s, int t, Py_ssize_t start, int depth, object keys, int key_code, int key_attr):
    values = _decode_item(s, depth + 1)
    cdef int value_code = s.last_code
    cdef int value_attr = s.last_attr
    cdef Py_ssize_t nk = _length(keys)
    cdef Py_ssize_t nv = _length(values)
    if nk < 0 or nv < 0:
        _fail("a dictionary's keys and values must both be lists", start, t)
    if nk != nv:
        _fail(f"dictionary has {nk} keys but {nv} values", start, t)
    cdef bint sorted_ = t == QT_SORTED_DICT
    s.last_code = t
    if type(keys) is Table:
        if type(values) is Table:
            return _new_keyed_table(keys, values, sorted_)
        return _new_dict(keys, values, sorted_)
    if not sorted_ and value_code == QT_LIST and value_attr == 0 and key_attr == 0 and type(values) is list:
        d = _as_python_dict(keys, key_code, values, nk)
        if d is not None:
            return d
    return _new_dict(keys, values, sorted_)


cdef object _decode_record(DState* s, Py_ssize_t start, int depth):
    """A dict with a plain symbol vector of keys: the shape every Python dict with str keys
    takes. Consecutive records with the same key bytes share one decoded key list, and values in
    a plain general list go straight into the dict."""
    s.pos += 2
    cdef Py_ssize_t nk = _rd_count(s, QT_SYMBOL, False)
    cdef const unsigned char* kstart = s.buf + s.pos
    cdef list keys
    cdef Py_ssize_t klen = 0
    cdef bint fresh = False         # decoded here, not yet in the cross-message cache
    if (s.rec_key_list != NULL and PyList_GET_SIZE(<object>s.rec_key_list) == nk
            and s.end - s.pos >= s.rec_keys_len
            and memcmp(kstart, s.rec_keys, s.rec_keys_len) == 0):
        keys = <list>s.rec_key_list
        s.pos += s.rec_keys_len
    else:
        cached = _keycache_get(kstart, s.end - s.pos, nk, &klen)
        if cached is not None:
            keys = <list>cached
            s.pos += klen
        else:
            keys = _decode_symbol_list(s, nk)
            klen = (s.buf + s.pos) - kstart
            fresh = True
        Py_XDECREF(s.rec_key_list)
        Py_INCREF(keys)
        s.rec_key_list = <PyObject*>keys
        s.rec_keys = kstart
        s.rec_keys_len = klen
        s.rec_keys_unique = -1 if fresh else 1    # cached keys are distinct; others known once the values go in
    cdef Py_ssize_t values_at = s.pos
    cdef dict d
    cdef list values
    cdef Py_ssize_t i, j
    # Captured now: decoding the values may decode nested records, which replace the cache.
    cdef int unique = s.rec_keys_unique
    if unique != 0 and s.end - s.pos >= 6 and s.buf[s.pos] == QT_LIST and s.buf[s.pos + 1] == 0:
        s.pos += 2
        if _rd_count(s, QT_LIST, False) == nk and nk <= (s.end - s.pos) // 2:
            d = _PyDict_NewPresized(nk)
            for i in range(nk):
                value = _decode_item(s, depth + 1)
                # One lookup inserts and tells whether the key was already there.
                if <PyObject*>value != PyDict_SetDefault(d, <object>PyList_GET_ITEM(keys, i), value):
                    # A repeated key: no Python dict can hold this. Keep what was decoded (all
                    # distinct before this one) and decode the rest into a list: nothing twice.
                    if s.rec_key_list == <PyObject*>keys:
                        s.rec_keys_unique = 0
                    values = [d[<object>PyList_GET_ITEM(keys, j)] for j in range(i)]
                    values.append(value)
                    for j in range(i + 1, nk):
                        values.append(_decode_item(s, depth + 1))
                    s.last_code = QT_DICT
                    return _new_dict(_object_array(keys), values, False)
            if s.rec_key_list == <PyObject*>keys:
                s.rec_keys_unique = 1
            if fresh:
                _keycache_put(kstart, s.end - (kstart - s.buf), klen, nk, keys)
            s.last_code = QT_DICT
            return d
        s.pos = values_at   # not a plain list of as many values: the general path reports it
    return _finish_dict(s, QT_DICT, start, depth, _object_array(keys), QT_SYMBOL, 0)


cdef dict _PyDict_FromLists(list keys, list values):
    cdef dict d = {}
    cdef Py_ssize_t i
    for i in range(len(keys)):
        d[keys[i]] = values[i]
    return d


cdef object _object_array(list items):
    cdef cnp.ndarray arr = np.empty(len(items), dtype=object)
    arr[:] = items
    return arr


cdef object _as_python_dict(object keys, int key_code, list values, Py_ssize_t n):
    """A Python dict when it re-encodes to the same bytes (docs/TYPES.md), else None."""
    cdef dict d
    if key_code == QT_SYMBOL and type(keys) is cnp.ndarray:
        d = dict(zip((<cnp.ndarray>keys).tolist(), values))
    elif key_code == QT_LIST and type(keys) is list and n > 0:
        if all(type(k) is str and "\0" not in k for k in <list>keys):
            return None      # a Python dict with such keys writes a symbol vector
        try:
            d = dict(zip(<list>keys, values))
        except TypeError:
            return None      # unhashable keys
    else:
        return None
    return d if len(d) == n else None


cdef object _decode_table(DState* s, Py_ssize_t start, int depth):
    _need(s, 2, "a table")
    cdef int attr = s.buf[s.pos]
    if attr > MAX_ATTRIBUTE:
        _fail(f"table attribute byte {attr:#04x} is not 0..4", s.pos, QT_TABLE)
    s.pos += 1
    if s.buf[s.pos] != QT_DICT:
        _fail(f"a table's body must be a dictionary (type 99), not type {<int8_t>s.buf[s.pos]}", s.pos, QT_TABLE)
    s.pos += 1
    names = _decode_item(s, depth + 1)
    if s.last_code != QT_SYMBOL or type(names) is not cnp.ndarray:
        _fail("a table's column names must be a symbol vector without attribute", start, QT_TABLE)
    columns = _decode_item(s, depth + 1)
    if s.last_code != QT_LIST or type(columns) is not list:
        _fail("a table's columns must be a general list", start, QT_TABLE)
    cdef list name_list = (<cnp.ndarray>names).tolist()
    cdef list cols = <list>columns
    if len(name_list) != len(cols):
        _fail(f"table has {len(name_list)} column names but {len(cols)} columns", start, QT_TABLE)
    cdef dict out = {}
    cdef Py_ssize_t rows = -1
    cdef Py_ssize_t n
    for name, col in zip(name_list, cols):
        ct = type(col)
        if not (ct is cnp.ndarray or ct is list or ct is bytes or ct is Vector):
            _fail(f"table column {name!r} is not a vector", start, QT_TABLE)
        n = len(col)
        if rows >= 0 and n != rows:
            _fail(f"table columns differ in length ({rows} and {n} rows, column {name!r})", start, QT_TABLE)
        rows = n
        if name in out:
            _fail(f"table has two columns named {name!r}", start, QT_TABLE)
        out[name] = col
    s.last_code = QT_TABLE
    return _new_table(out, ATTRIBUTES[attr])


# ---- functions ---------------------------------------------------------------------------------

cdef object _decode_function(DState* s, int t, Py_ssize_t start, int depth):
    cdef Py_ssize_t z
    cdef uint32_t n
    if t == QT_LAMBDA:
        z = _sym_end(s, "a lambda's context")
        context = _sym_new(<const char*>s.buf + s.pos, z - s.pos)
        s.pos = z + 1
        _need(s, 2, "a lambda's source")
        if s.buf[s.pos] != QT_CHAR or s.buf[s.pos + 1] != 0:
            _fail("a lambda's source must be a char vector without attribute", s.pos, t)
        src = _decode_item(s, depth + 1)
        return Lambda(PyUnicode_DecodeUTF8(PyBytes_AS_STRING(src), PyBytes_GET_SIZE(src), "surrogateescape"), context)
    if t <= QT_ITERATOR:
        _need(s, 1, "a primitive's code")
        code = s.buf[s.pos]
        s.pos += 1
        if t == QT_UNARY_PRIMITIVE and code == 0:
            return None
        return _primitive(t, code)
    cdef Py_ssize_t i
    if t == QT_PROJECTION or t == QT_COMPOSITION:
        _need(s, 4, "a projection's count")
        n = _rd_u32(s)
        if n == 0 or n > <uint64_t>((s.end - s.pos) // 2):
            _fail(f"{'projection' if t == QT_PROJECTION else 'composition'} of {n} items does not fit the {s.end - s.pos} bytes left", s.pos - 4, t)
        # The items tuple is built directly and set on a bare instance (the decoder has checked
        # what __init__ would): no argument tuple or list beside it.
        items = PyTuple_New(n)
        for i in range(n):
            item = _decode_item(s, depth + 1)
            Py_INCREF(item)
            PyTuple_SET_ITEM(items, i, item)
        f = Projection.__new__(Projection) if t == QT_PROJECTION else Composition.__new__(Composition)
        _object_setattr(f, "items", items)
        return f
    cdef Py_ssize_t fpos = s.pos
    func = _decode_item(s, depth + 1)
    cdef Py_ssize_t k
    if s.pos == fpos + 2 and QT_UNARY_PRIMITIVE <= s.buf[fpos] <= QT_ITERATOR:
        # A derived function of a primitive (`+/`, `,'`...): one shared instance per pair.
        k = ((t - QT_EACH) * 3 + s.buf[fpos] - QT_UNARY_PRIMITIVE) * 256 + s.buf[fpos + 1]
        d = _DERIVED_CACHE[k]
        if d is None:
            d = Derived(_ITERATOR_KINDS[t - QT_EACH], func)
            _DERIVED_CACHE[k] = d
        return d
    return Derived(_ITERATOR_KINDS[t - QT_EACH], func)


cdef tuple _ITERATOR_KINDS = ("'", "/", "\\", "':", "/:", "\\:")

# Primitives (and derived functions of one) are immutable values equal by code: the decoder hands
# out one instance per code instead of a new object per 2-byte item (hostile input made of them
# would otherwise cost 24x its size). Filled on first use; a race fills a slot twice with equal
# objects, which is harmless.
cdef list _PRIMITIVE_CACHE = [None] * (3 * 256)
_PRIMITIVE_CACHE[0xFF] = ELIDED          # UnaryPrimitive(255) decodes as qwire.ELIDED itself
cdef tuple _PRIMITIVE_TYPES = (UnaryPrimitive, BinaryPrimitive, Iterator)
cdef list _DERIVED_CACHE = [None] * (6 * 3 * 256)


cdef inline object _primitive(int t, int code):
    cdef Py_ssize_t k = (t - QT_UNARY_PRIMITIVE) * 256 + code
    p = _PRIMITIVE_CACHE[k]
    if p is None:
        p = _PRIMITIVE_TYPES[t - QT_UNARY_PRIMITIVE](code)
        _PRIMITIVE_CACHE[k] = p
    return p


def _make_decoder(max_depth, max_decompressed_size, registry=None, max_message_size=None, strict_fields=False):
    return Decoder(max_depth=max_depth, max_decompressed_size=max_decompressed_size, registry=registry,
                   max_message_size=max_message_size, strict_fields=strict_fields)
