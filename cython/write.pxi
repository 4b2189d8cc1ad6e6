# The encoder's output buffer (WState) and the functions that write bytes into it (encode.pxi
# decides what to write; these write it).

cdef struct WState:
    char* buf
    Py_ssize_t len
    Py_ssize_t cap
    Py_ssize_t ext_total      # bytes held in referenced (not copied) segments
    Py_ssize_t run_start      # where the current run of our own bytes started
    PyObject* layout          # NULL, or a list: [(start, end) | memoryview]
    void* ring[64]            # the last 64 containers on the path, to name a cycle
    PyObject* xs              # extension records and references of this call (refs.pxi), or NULL
    bint refs                 # refs=True (refs.pxi)
    PyObject* rec_keys[32]    # the str keys of the last record dict written (strong references)
    Py_ssize_t rec_n          # how many (0: none)
    Py_ssize_t rec_at         # where that record's symbol-vector bytes are in buf
    Py_ssize_t rec_len
    void* shared              # NULL, or a PtrMap (refs.pxi) of large containers written: object -> bytes
    Py_ssize_t shared_ratio   # the Encoder's max_shared_expansion (0: no limit)
    Py_ssize_t repeated       # bytes of containers written again (copies of shared structure)
    Py_ssize_t repeat_until   # the output position where the copy being written ends


cdef int _grow(WState* w, Py_ssize_t n) except -1:
    cdef Py_ssize_t need = w.len + n
    cdef Py_ssize_t cap = w.cap * 2
    if cap < need:
        cap = need + 256
    cdef char* p = <char*>PyMem_Realloc(w.buf, cap)
    if p == NULL:
        raise MemoryError(f"cannot grow the message buffer to {cap} bytes")
    w.buf = p
    w.cap = cap
    return 0


cdef inline int _reserve(WState* w, Py_ssize_t n) except -1:
    if w.len + n > w.cap:
        return _grow(w, n)
    return 0


cdef inline void _put1(WState* w, uint8_t v) noexcept:
    w.buf[w.len] = <char>v
    w.len += 1


cdef inline void _put4(WState* w, uint32_t v) noexcept:
    memcpy(w.buf + w.len, &v, 4)
    w.len += 4


cdef inline void _put8(WState* w, uint64_t v) noexcept:
    memcpy(w.buf + w.len, &v, 8)
    w.len += 8


cdef inline int _w_vector_head(WState* w, int code, int attr, Py_ssize_t n, int capability) except -1:
    """type, attribute, count (4 bytes, or 8 with attribute bit 0x80 when n >= 2^32)."""
    _reserve(w, 10)
    _put1(w, <uint8_t>code)
    if <uint64_t>n >= <uint64_t>0x100000000:
        if capability < 6:
            raise EncodeError(f"a vector of {n} items needs capability 6 (8-byte counts); this encoder has capability {capability}")
        _put1(w, <uint8_t>(attr | ATTR_LONG_COUNT))
        _put8(w, <uint64_t>n)
    else:
        _put1(w, <uint8_t>attr)
        _put4(w, <uint32_t>n)
    return 0


cdef int _w_sym_text(WState* w, str s) except -1:
    """A symbol's bytes and its NUL terminator (no type byte). Returns 1, writing nothing, when
    the text contains NUL (no q symbol can); 0 when written."""
    cdef Py_ssize_t n
    cdef const char* p = NULL
    cdef bytes enc
    try:
        p = PyUnicode_AsUTF8AndSize(s, &n)
    except UnicodeEncodeError:
        # Symbols decoded from invalid UTF-8 carry surrogate escapes; other lone surrogates make
        # a str that no symbol can carry (an extension record can: refs.pxi).
        try:
            enc = s.encode("utf-8", "surrogateescape")
        except UnicodeEncodeError:
            return 1
        p = PyBytes_AS_STRING(enc)
        n = PyBytes_GET_SIZE(enc)
    if memchr(p, 0, n) != NULL:
        return 1
    _reserve(w, n + 1)
    memcpy(w.buf + w.len, p, n)
    w.buf[w.len + n] = 0
    w.len += n + 1
    return 0


cdef int _w_char_vector(WState* w, const char* p, Py_ssize_t n, int attr, int capability) except -1:
    _w_vector_head(w, QT_CHAR, attr, n, capability)
    _reserve(w, n)
    memcpy(w.buf + w.len, p, n)
    w.len += n
    return 0


cdef inline int64_t _ns_since_2000(object dt) except? -1:
    cdef int64_t days = days_from_civil(datetime_year(dt), datetime_month(dt), datetime_day(dt)) - EPOCH_DAYS
    cdef int64_t us = ((<int64_t>datetime_hour(dt) * 60 + datetime_minute(dt)) * 60 + datetime_second(dt)) * 1000000 + datetime_microsecond(dt)
    cdef int64_t r
    # Microseconds first (cannot overflow for any datetime), then the one scaling that can.
    us += days * 86400000000
    if qw_mul_overflow_i64(us, 1000, &r) or _special64(r):
        raise EncodeError(f"{_short(dt)} is outside q's timestamp range (1707..2292)", type(dt))
    return r


def _dtype_info(dt):
    """(q type code, conversion) for a NumPy dtype, or None. Conversion: 0 raw copy, 1 timestamp
    shift, 2 int32 with epoch shift (the shift is in the third element), 3 timedelta to int32."""
    return _DTYPE_INFO.get(dt)


cdef dict _DTYPE_INFO = {
    np.dtype(np.bool_): (QT_BOOLEAN, 0, 0),
    np.dtype(np.uint8): (QT_BYTE, 0, 0),
    np.dtype(np.int16): (QT_SHORT, 0, 0),
    np.dtype(np.int32): (QT_INT, 0, 0),
    np.dtype(np.int64): (QT_LONG, 0, 0),
    np.dtype(np.longlong): (QT_LONG, 0, 0),
    np.dtype(np.float32): (QT_REAL, 0, 0),
    np.dtype(np.float64): (QT_FLOAT, 0, 0),
    np.dtype("S1"): (QT_CHAR, 0, 0),
    np.dtype("M8[ns]"): (QT_TIMESTAMP, 1, 0),
    np.dtype("M8[M]"): (QT_MONTH, 2, 360),
    np.dtype("M8[D]"): (QT_DATE, 2, 10957),
    np.dtype("m8[ns]"): (QT_TIMESPAN, 0, 0),
    np.dtype("m8[m]"): (QT_MINUTE, 2, 0),
    np.dtype("m8[s]"): (QT_SECOND, 2, 0),
    np.dtype("m8[ms]"): (QT_TIME, 2, 0),
}

# dtypes converted on the way out (encode-only; docs/TYPES.md).
cdef dict _DTYPE_CONVERT = {
    "M8[us]": "M8[ns]", "M8[ms]": "M8[ns]", "M8[s]": "M8[ns]", "M8[m]": "M8[ns]", "M8[h]": "M8[ns]",
    "m8[us]": "m8[ns]",
}

# Python types of the q storage for raw-unit Vector values (Vector(int64s, 'timestamp')).
cdef dict _STORAGE_DTYPE = {
    QT_BOOLEAN: np.dtype(np.bool_), QT_BYTE: np.dtype(np.uint8), QT_SHORT: np.dtype(np.int16),
    QT_INT: np.dtype(np.int32), QT_LONG: np.dtype(np.int64), QT_REAL: np.dtype(np.float32),
    QT_FLOAT: np.dtype(np.float64), QT_TIMESTAMP: np.dtype(np.int64), QT_MONTH: np.dtype(np.int32),
    QT_DATE: np.dtype(np.int32), QT_DATETIME: np.dtype(np.float64), QT_TIMESPAN: np.dtype(np.int64),
    QT_MINUTE: np.dtype(np.int32), QT_SECOND: np.dtype(np.int32), QT_TIME: np.dtype(np.int32),
}


cdef inline int _w_float_atom(WState* w, int type_byte, double d) except -1:
    """A float64 atom; every NaN is written as q's null pattern."""
    cdef uint64_t bits
    if d != d:
        bits = Q_NULL_FLOAT_BITS
    else:
        memcpy(&bits, &d, 8)
    _reserve(w, 9)
    _put1(w, <uint8_t>type_byte)
    _put8(w, bits)
    return 0


cdef int _w_atom32(WState* w, int type_byte, int64_t v, object t) except -1:
    if v <= NULL_INT or v >= INF_INT or v <= -INF_INT:
        raise EncodeError(f"value outside the range of q's 32-bit type {-type_byte}", t)
    _reserve(w, 5)
    _put1(w, <uint8_t>type_byte)
    _put4(w, <uint32_t><int32_t>v)
    return 0


cdef int _w_timedelta(WState* w, object td) except -1:
    cdef int64_t us = (<int64_t>timedelta_days(td) * 86400 + timedelta_seconds(td)) * 1000000 + timedelta_microseconds(td)
    cdef int64_t ns
    if qw_mul_overflow_i64(us, 1000, &ns) or ns == NULL_LONG or ns == INF_LONG or ns == -INF_LONG:
        raise EncodeError(f"{_short(td)} is outside q's timespan range (about ±292 years)", timedelta_type)
    _reserve(w, 9)
    _put1(w, <uint8_t>(-QT_TIMESPAN))
    _put8(w, <uint64_t>ns)
    return 0


cdef int _w_time(WState* w, object t) except -1:
    if t.tzinfo is not None:
        raise EncodeError("a timezone-aware time has no q type", time_type)
    cdef int us = time_microsecond(t)
    if us % 1000:
        raise EncodeError(f"{_short(t)} has microseconds; q's time type holds milliseconds "
                          "(round it, or use the extension record)", time_type)
    cdef int64_t ms = ((<int64_t>time_hour(t) * 60 + time_minute(t)) * 60 + time_second(t)) * 1000 + us // 1000
    return _w_atom32(w, -QT_TIME, ms, time_type)


cdef int _w_timestamps(WState* w, const int64_t* src, Py_ssize_t n) except -1:
    """datetime64[ns] (since 1970) -> q timestamps (since 2000); NaT and the int64 extremes
    (q's null and ±inf) pass through unshifted."""
    _reserve(w, 8 * n)
    # The output position is only byte-aligned (it follows a 6-byte vector header at any offset)
    # and a NumPy array's data need not be aligned either: every load and store goes through
    # memcpy, which compilers turn into one unaligned move (no slower than the pointer form on x86
    # and ARM64, and defined behaviour everywhere).
    cdef char* dst = w.buf + w.len
    cdef const char* s = <const char*>src
    cdef Py_ssize_t i
    cdef int64_t v
    cdef Py_ssize_t bad = -1
    with nogil:
        for i in range(n):
            memcpy(&v, s + 8 * i, 8)
            if v == NULL_LONG or v == INF_LONG or v == -INF_LONG:
                pass
            elif v < NULL_LONG + 2 + EPOCH_NS:
                bad = i
                break
            else:
                v = v - EPOCH_NS
            memcpy(dst + 8 * i, &v, 8)
    if bad >= 0:
        memcpy(&v, s + 8 * bad, 8)
        raise EncodeError(f"datetime64 value {np.datetime64(v, 'ns')} is before q's earliest timestamp (1707)", np.datetime64)
    w.len += 8 * n
    return 0


cdef int _w_int32_temporals(WState* w, const int64_t* src, Py_ssize_t n, int64_t shift, int code) except -1:
    """int64-based NumPy temporals -> q's int32 temporals (month, date, minute, second, time):
    NaT -> null, the int64 extremes -> ±inf, everything else shifted and range-checked."""
    _reserve(w, 4 * n)
    # memcpy loads and stores for the same reason as in _w_timestamps: neither end is aligned.
    cdef char* dst = w.buf + w.len
    cdef const char* s = <const char*>src
    cdef Py_ssize_t i
    cdef int64_t v
    cdef int32_t out
    cdef Py_ssize_t bad = -1
    with nogil:
        for i in range(n):
            memcpy(&v, s + 8 * i, 8)
            if v == NULL_LONG:
                out = NULL_INT
            elif v == INF_LONG:
                out = INF_INT
            elif v == -INF_LONG:
                out = -INF_INT
            else:
                v = v - shift
                if v <= NULL_INT or v >= INF_INT or v <= -INF_INT:
                    bad = i
                    break
                out = <int32_t>v
            memcpy(dst + 4 * i, &out, 4)
    if bad >= 0:
        memcpy(&v, s + 8 * bad, 8)
        raise EncodeError(f"value {v} is outside the range of q's 32-bit type {code}")
    w.len += 4 * n
    return 0
