# The decoder, continued (decode.pxi): atoms and vectors.

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
            sym = symtab_get_hashed(&s.syms, <const char*>p, z, h, w8)
        else:
            # Not interning (or interning stopped paying in this message): no hash to compute.
            z = _sym_end(s, "a symbol") - s.pos
            s.pos += z + 1
            sym = sym_counted(&s.syms, <const char*>p, z)
        _charge(s, 0, start)        # the symbol table has counted the str if it is new
        return sym
    _need(s, width, "an atom")
    p = s.buf + s.pos
    s.pos += width
    if width == 1:
        if code == QT_BOOLEAN:
            if p[0] > 1:
                _fail(f"boolean byte must be 0 or 1, not {p[0]}", start + 1, -1)
            return p[0] == 1
        return _small_atom(code, p[0])
    _charge(s, COST_ATOM8 if width == 8 else COST_ATOM4 if width == 4 else COST_ATOM2 if width == 2 else COST_UUID, start)
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
        _fail_with("attribute byte {:#04x} is not one of 0 (none), 1 (s), 2 (u), 3 (p), 4 (g)", attr_byte, 0, start + 1, code)
    cdef Py_ssize_t n = _rd_count(s, code, attr_byte & ATTR_LONG_COUNT)
    cdef object value
    if code == QT_LIST:
        value = _decode_list(s, n, depth, start)
    elif code == QT_SYMBOL:
        value = _decode_symbols(s, n, start)
    elif code == QT_CHAR:
        _charge(s, COST_BYTES + n, start)
        if _at_segment(s):
            value = PyBytes_FromStringAndSize(<const char*>_take_segment(s, n), n)
        else:
            value = PyBytes_FromStringAndSize(<const char*>s.buf + s.pos, n)
            s.pos += n
    else:
        value = _decode_fixed(s, code, n, start)
    s.last_code = code
    s.last_attr = attr
    if type(value) is Vector:          # raw timestamps beyond datetime64[ns]: already wrapped (and charged)
        (<object>value).attr = ATTRIBUTES[attr]
        return value
    if attr:
        return _charged(s, Vector(value, code, ATTRIBUTES[attr]), start)
    if code == QT_DATETIME or (code == QT_GUID and n == 0):
        return _charged(s, Vector(value, code), start)
    return value


cdef inline object _charged(DState* s, object obj, Py_ssize_t at):
    """obj, a fixed-size object just made (qwire's value classes), charged to the budget."""
    _charge(s, _fixed_cost(obj), at)
    return obj


cdef list _decode_list(DState* s, Py_ssize_t n, int depth, Py_ssize_t start):
    if n > (s.end - s.pos) // 2:
        # Every item is at least two bytes (a type byte and one more).
        _fail_with("general list claims {} items but only {} bytes follow", n, s.end - s.pos, s.pos - 4, 0)
    _charge(s, COST_LIST + COST_SLOT * n, start)
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
                _charge(s, COST_ATOM8, s.pos)
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
    return sym_counted(&s.syms, p, n)


cdef list _decode_symbol_list(DState* s, Py_ssize_t n):
    cdef Py_ssize_t start = s.pos
    _charge(s, COST_LIST + COST_SLOT * n, start)
    cdef list out = PyList_New(n)
    cdef Py_ssize_t i
    cdef str sym
    for i in range(n):
        sym = _next_symbol(s)
        _charge(s, 0, start)        # the symbol table has counted it if it is new
        Py_INCREF(sym)
        PyList_SET_ITEM(out, i, sym)
    return out


cdef object _decode_symbols(DState* s, Py_ssize_t n, Py_ssize_t start):
    _charge(s, COST_ARRAY + COST_SLOT * n, start)
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
            _charge(s, 0, start)    # a new str, counted by the symbol table
        else:
            # not interning (or it stopped paying in this message): no hash to compute
            k = _sym_end(s, "a symbol in a symbol vector") - s.pos
            s.pos += k + 1
            sym = sym_counted(&s.syms, p, k)
            _charge(s, 0, start)
        Py_INCREF(sym)
        slots[i] = <PyObject*>sym
    return arr


cdef const unsigned char* _take_segment(DState* s, Py_ssize_t nbytes) except NULL:
    cdef SegRef* seg = &s.segs[s.seg_i]
    if seg.len != nbytes:
        _fail(f"message segment has {seg.len} bytes where the vector needs {nbytes}", s.pos)
    s.seg_i += 1
    return seg.ptr


cdef object _decode_fixed(DState* s, int code, Py_ssize_t n, Py_ssize_t start):
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
        _charge(s, COST_ARRAY + n * (COST_SLOT + COST_UUID), start)
        return _decode_guids(p, n)
    if n == 0:
        return _empty_vector(code)
    descr = _VIEW_DTYPES[code]
    if descr is not None:
        if s.swap:
            _charge(s, _SWAPPED_COPY_COST + 2 * n * width, start)
            return _swapped_copy(<cnp.dtype>descr, p, n)
        _charge(s, COST_ARRAY, start)
        return _new_array(<cnp.dtype>descr, n, <void*>p, base)
    _charge(s, COST_ARRAY + 8 * n, start)        # widened or shifted into int64 temporals
    if code == QT_TIMESTAMP:
        return _decode_timestamps(s, p, n, base, start)
    return _decode_int32_temporals(s, code, p, n)


cdef object _empty_vector(int code):
    v = _EMPTY_VECTORS.get(code)
    if v is None:
        descr = _VIEW_DTYPES[code] or _INT32_TEMPORAL[code] or (DT_TS if code == QT_TIMESTAMP else None)
        v = np.empty(0, dtype=descr)
        v.flags.writeable = False
        _EMPTY_VECTORS[code] = v
    return v


# A big-endian vector: a bytes copy, the big-endian array over it and the native copy (plus
# twice its data, which the caller adds).
cdef Py_ssize_t _SWAPPED_COPY_COST = COST_BYTES + 2 * COST_ARRAY


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


cdef object _decode_timestamps(DState* s, const unsigned char* p, Py_ssize_t n, object base, Py_ssize_t start):
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
        _charge(s, _SWAPPED_COPY_COST + 16 * n if swap else COST_ARRAY, start)
        raw = (_swapped_copy(DT_I64, p, n) if swap else
               _new_array(DT_I64, n, <void*>p, base))
        return _charged(s, Vector(raw, QT_TIMESTAMP), start)
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
