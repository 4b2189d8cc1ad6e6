# Extension records, continued (refs.pxi): reading registered objects and references.

# ---- reading -------------------------------------------------------------------------------------

cdef object _PENDING = object()     # an index whose object is still being decoded


@cython.freelist(4)
cdef class _DecState:
    """One decode call's state for registered objects and references."""
    cdef list refs               # index -> object (_PENDING while it is being decoded)
    cdef dict by_name            # name -> _CEntry, from when it was first needed
    cdef _CEntry last            # the class of the last registered object (the next is often the same)
    cdef set building            # ids of registered objects whose fields are being decoded
    cdef dict hash_sizes         # id -> (value, what hashing it visits): shared values (hashtally.pxi)


cdef extern from "Python.h":
    ctypedef struct PyListObject:
        PyObject** ob_item
    void Py_SET_SIZE(object o, Py_ssize_t size)

# One emptied state kept between calls, as _enc_spare is for the encoder (taken and given back
# under the GIL the same way). It holds nothing of a message once that has been decoded: the
# decoder gives it back emptied after a success (_dec_state_done), and drops it after a failure.
cdef _DecState _dec_spare = None


cdef _DecState _dec_state(DState* s):
    global _dec_spare
    cdef _DecState st
    if s.xs != NULL:
        return <_DecState>s.xs
    st = _dec_spare
    if st is not None:
        _dec_spare = None
    else:
        st = _DecState.__new__(_DecState)
        st.refs = []
        st.building = set()
        st.hash_sizes = {}
    Py_INCREF(st)
    s.xs = <PyObject*>st
    return st


cdef void _dec_state_done(DState* s) noexcept:
    """A message decoded in full (Decoder._decode, before it returns): s.xs emptied and kept for the
    next message. (After a failure, Decoder._decode's finally drops s.xs instead.)"""
    global _dec_spare
    if s.xs == NULL:
        return
    cdef _DecState st = <_DecState>s.xs
    Py_DECREF(st)                  # s.xs's reference (st holds its own)
    s.xs = NULL
    if _dec_spare is not None:
        return
    st.by_name = None              # the registry may change before the next message
    st.last = None
    st.building.clear()
    if st.hash_sizes:
        st.hash_sizes = {}
    cdef list refs = st.refs
    cdef Py_ssize_t n = PyList_GET_SIZE(refs), i
    cdef PyObject** items
    if n > 64:
        st.refs = []               # a long list is not kept
    elif n:
        # Emptied in place, keeping its allocation (the next message's appends reuse it). The
        # size goes to 0 first: releasing an item may run a __del__, and nothing may then see
        # the list holding items already released.
        items = (<PyListObject*><PyObject*>refs).ob_item
        Py_SET_SIZE(refs, 0)
        for i in range(n):
            Py_XDECREF(items[i])
    if _dec_spare is None:
        _dec_spare = st


cdef inline dict _by_name(DState* s, _DecState st):
    if st.by_name is None:
        st.by_name = _compiled((<object>s.ext).registry)[2]
    return st.by_name


cdef Py_ssize_t _rd_list_head(DState* s, str what, Py_ssize_t start) except -1:
    """A general list's header (type 0, no attribute): its count."""
    _need(s, 2, what)
    if s.buf[s.pos] != QT_LIST or (s.buf[s.pos + 1] & 0x7F) != 0:
        _fail(f"{what} must be a general list", s.pos, QT_EXTENSION)
    cdef bint long_count = s.buf[s.pos + 1] & ATTR_LONG_COUNT
    s.pos += 2
    cdef Py_ssize_t n = _rd_count(s, QT_LIST, long_count)
    if n > (s.end - s.pos) // 2:
        _fail(f"{what} claims {n} items but only {s.end - s.pos} bytes follow", s.pos, QT_EXTENSION)
    return n


cdef int32_t _rd_index(DState* s, str what) except? -1:
    _need(s, 5, what)
    if <int8_t>s.buf[s.pos] != -QT_INT:
        _fail(f"{what} must be an int atom", s.pos, QT_EXTENSION)
    s.pos += 1
    return <int32_t>_rd_u32(s)


cdef object _decode_core_record(DState* s, int code, Py_ssize_t start, int depth):
    """Codes 0x20..0x2F; s.pos is just after the code byte."""
    cdef _DecState st = _dec_state(s)
    cdef int32_t k
    if code == EXT_REF:
        k = _rd_index(s, "a reference")
        if k < 0 or k >= len(st.refs) or st.refs[k] is _PENDING:
            _fail(f"reference to object #{k}, which is not defined before this point", start, QT_EXTENSION)
        value = st.refs[k]
    elif code == EXT_REGISTERED:
        value = _decode_registered(s, st, start, depth, -1)
    elif code == EXT_DEFINE:
        value = _decode_define(s, st, start, depth)
    elif code == EXT_DEFINE_IMMUTABLE:
        if _rd_list_head(s, "a definition", start) != 2:
            _fail("a definition (70 23) is a general list of 2: (value; index)", start, QT_EXTENSION)
        value = _decode_item(s, depth + 2)
        k = _rd_index(s, "a definition's index")
        _charge(s, COST_SLOT, start)               # its place in st.refs
        if k == NULL_INT:
            if len(st.refs) >= 0x7FFFFFFE:
                _fail("too many definitions", start, QT_EXTENSION)
            st.refs.append(value)
        elif 0 <= k < len(st.refs) and st.refs[k] is not _PENDING:
            value = st.refs[k]
        else:
            _fail(f"definition repeats object #{k}, which is not defined before this point", start, QT_EXTENSION)
    else:
        _fail(f"unknown qwire extension record code {code:#04x}", start, QT_EXTENSION)
    s.last_code = QT_EXTENSION
    s.last_attr = 0
    return value


cdef object _decode_registered(DState* s, _DecState st, Py_ssize_t start, int depth, Py_ssize_t index):
    """70 20 (name; state). The name is looked up before anything else is read: an unknown one
    stops decoding without constructing anything. index >= 0: the object fills that reference."""
    cdef _CEntry c = st.last
    cdef const char* hdr
    cdef Py_ssize_t k
    if c is not None:
        hdr = PyBytes_AS_STRING(c.header)
        k = c.name_end - 2
    if c is not None and s.end - s.pos >= k and memcmp(s.buf + s.pos, hdr + 2, k) == 0:
        s.pos += k                                  # the same class as the last one
    else:
        if _rd_list_head(s, "a registered object", start) != 2:
            _fail("a registered object (70 20) is a general list of 2: (name; state)", start, QT_EXTENSION)
        _need(s, 1, "a registered name")
        if <int8_t>s.buf[s.pos] != -QT_SYMBOL:
            _fail("a registered object's name must be a symbol", s.pos, QT_EXTENSION)
        s.pos += 1
        k = _sym_end(s, "a registered name")
        name = _sym_new(<const char*>s.buf + s.pos, k - s.pos)
        s.pos = k + 1
        c = _by_name(s, st).get(name)
        if c is None:
            raise UnregisteredTypeError(
                f"cannot decode a {name!r} object: no class is registered under that name here "
                f"(register it on the receiving side: qwire.register(cls, {name!r}))", start, QT_EXTENSION, name)
        st.last = c
    try:
        obj = _build_registered(s, c, st, depth, index)
    except DecodeError as e:
        if e.offset is None:
            raise DecodeError(e.reason, start, QT_EXTENSION) from (e.__cause__ if e.__cause__ is not None else e)
        raise
    except MemoryError:
        raise
    except Exception as e:
        # A registered class's own code (its __new__, __setattr__, a decode function) failed, or
        # recursed too deep: a DecodeError that says which class, with the original as its cause.
        raise DecodeError(f"cannot decode a registered {c.entry.name!r} object: {_exception_text(e)}",
                          start, QT_EXTENSION) from e
    # Dataclass and NamedTuple instances have one size per class; what a decode function returns
    # (an Enum member, a custom object) is charged what getsizeof says.
    # (What else a decode function allocates is its author's code, which the budget cannot see.)
    _charge(s, _fixed_cost(obj) if c.kind == KIND_FIELDS or c.kind == KIND_NAMEDTUPLE else _object_and_dict_cost(obj), start)
    if index >= 0:
        st.refs[index] = obj
    return obj


cdef object _build_registered(DState* s, _CEntry c, _DecState st, int depth, Py_ssize_t index):
    cdef int kind = c.kind
    cdef tuple fields = c.fields
    cdef Py_ssize_t nf = len(fields), i
    cdef const char* hdr = PyBytes_AS_STRING(c.header)
    cdef Py_ssize_t k = PyBytes_GET_SIZE(c.header) - c.name_end
    cdef bint same_fields = False
    if kind == KIND_FIELDS or kind == KIND_NAMEDTUPLE:
        # The writer's field names, byte for byte the reader's: values straight into place.
        same_fields = s.end - s.pos >= k and memcmp(s.buf + s.pos, hdr + c.name_end, k) == 0
        if same_fields and depth + 3 >= s.max_depth:
            _fail(f"nesting deeper than max_depth={s.max_depth}", s.pos, QT_DICT)
    if kind == KIND_FIELDS:
        obj = _object_new(c.cls) if c.plain_new else c.cls.__new__(c.cls)
        if index < 0:
            return _fill_fields(s, c, obj, same_fields, k, depth)
        # Before its fields, which may refer back to it: while they are decoded, it is reachable
        # but has no attributes, and hashtally.pxi refuses to hash it.
        st.refs[index] = obj
        st.building.add(id(obj))
        try:
            return _fill_fields(s, c, obj, same_fields, k, depth)
        finally:
            st.building.discard(id(obj))
    if kind == KIND_NAMEDTUPLE and same_fields:
        s.pos += k
        return _tuple_new(c.cls, [_decode_item(s, depth + 3) for i in range(nf)])
    return c.entry.build(_decode_item(s, depth + 2), (<object>s.ext).strict_fields)


cdef object _fill_fields(DState* s, _CEntry c, object obj, bint same_fields, Py_ssize_t k, int depth):
    """Set a dataclass instance's fields: from the state dict (or, when the writer's field names are
    the reader's, straight from the values that follow them)."""
    if not same_fields:
        return c.entry.fill(obj, _decode_item(s, depth + 2), (<object>s.ext).strict_fields)
    cdef tuple fields = c.fields
    cdef Py_ssize_t nf = len(fields), i
    s.pos += k
    if c.has_dict and not _SET_DICT_WORKS:
        d = PyObject_GenericGetDict(obj, NULL)
        for i in range(nf):
            d[fields[i]] = _decode_item(s, depth + 3)
        return obj
    d = _PyDict_NewPresized(nf)
    for i in range(nf):
        d[fields[i]] = _decode_item(s, depth + 3)
    if c.has_dict:
        PyObject_GenericSetDict(obj, d, NULL)
    else:
        for i in range(nf):
            _object_setattr(obj, fields[i], d[fields[i]])
    return obj


class _SetDictProbe:
    pass


cdef bint _probe_set_dict():
    """Whether an instance given a new __dict__ (PyObject_GenericSetDict) then has its items as
    attributes. On CPython 3.13.0 an instance whose attributes live inline keeps reading those
    (none yet): the decoder fills such an instance's own dict instead."""
    o = _object_new(_SetDictProbe)
    PyObject_GenericSetDict(o, {"x": 1}, NULL)
    return getattr(o, "x", None) == 1


cdef bint _SET_DICT_WORKS = _probe_set_dict()


cdef object _decode_define(DState* s, _DecState st, Py_ssize_t start, int depth):
    """70 22 <value>: the index is taken now; lists, dicts, sets and registered dataclasses are
    created empty and registered before their contents are read (so those may refer back)."""
    cdef Py_ssize_t index = len(st.refs)
    cdef Py_ssize_t n, i
    cdef HashTally tally
    if index >= 0x7FFFFFFE:
        _fail("too many definitions", start, QT_EXTENSION)
    _charge(s, COST_SLOT, start)                   # its place in st.refs
    _need(s, 2, "a definition")
    cdef int t = <int8_t>s.buf[s.pos]
    if depth + 1 >= s.max_depth:
        _fail(f"nesting deeper than max_depth={s.max_depth}", s.pos, t)
    if t == QT_LIST:
        n = _rd_list_head(s, "a list definition", start)
        _charge(s, COST_LIST + COST_SLOT * n, start)
        out = []
        st.refs.append(out)
        for i in range(n):
            out.append(_decode_item(s, depth + 2))
        return out
    if t == QT_DICT:
        s.pos += 1
        return _decode_define_dict(s, st, start, depth + 1)
    if t == QT_EXTENSION and s.buf[s.pos + 1] == EXT_SET:
        s.pos += 2
        n = _rd_list_head(s, "a set definition", start)
        _charge(s, _set_cost(n), start)           # its table, before it grows
        items = set()
        st.refs.append(items)
        _tally_init(&tally)
        try:
            for i in range(n):
                item = _decode_item(s, depth + 3)
                try:
                    if n <= SHARED_HASH_LIMIT:
                        _charge_hash(s, item, start)
                        items.add(item)
                    elif _tallied_set_add(s, &tally, items, item, start):
                        _fail_flooded("a set definition", start, QT_EXTENSION)
                except TypeError as e:
                    _fail(f"a set item is unhashable ({e})", start, QT_EXTENSION)
        finally:
            _tally_free(s, &tally)
        return items
    st.refs.append(_PENDING)
    if t == QT_EXTENSION and s.buf[s.pos + 1] == EXT_REGISTERED:
        s.pos += 2
        value = _decode_registered(s, st, s.pos - 2, depth + 1, index)
    else:
        value = _decode_item(s, depth + 1)
    st.refs[index] = value
    return value


cdef object _decode_define_dict(DState* s, _DecState st, Py_ssize_t start, int depth):
    """A Python dict's q form (symbol or general-list keys, general-list values), registered as
    the next reference before its keys and values are read."""
    _need(s, 6, "a dictionary definition")
    cdef Py_ssize_t nk, i
    cdef list keys
    cdef dict d
    cdef const unsigned char* kstart = NULL
    cdef Py_ssize_t klen = 0
    cdef bint fresh = True          # keys decoded here (not from the cross-message key cache)
    cdef bint tallied = False       # general-list keys: hashes a message may choose (hashtally.pxi)
    cdef bint general = False       # general-list keys (symbols hash in O(1))
    cdef HashTally tally
    if s.buf[s.pos] == QT_SYMBOL and s.buf[s.pos + 1] == 0:
        s.pos += 2
        nk = _rd_count(s, QT_SYMBOL, False)
        _charge(s, _dict_cost(nk), start)       # presized: never bigger than grown
        d = _PyDict_NewPresized(nk)
        st.refs.append(d)
        kstart = s.buf + s.pos
        # consecutive dictionaries with the same keys share one key list (as _decode_record does)
        if (s.rec_key_list != NULL and PyList_GET_SIZE(<object>s.rec_key_list) == nk
                and s.end - s.pos >= s.rec_keys_len and memcmp(kstart, s.rec_keys, s.rec_keys_len) == 0):
            keys = <list>s.rec_key_list
            s.pos += s.rec_keys_len
            kstart = NULL                  # nothing new to remember
        else:
            cached = _keycache_get(kstart, s.end - s.pos, nk, &klen)   # keys of earlier messages
            if cached is not None:
                keys = <list>cached
                s.pos += klen
                fresh = False
            else:
                keys = _decode_symbol_list(s, nk)
                klen = (s.buf + s.pos) - kstart
    elif s.buf[s.pos] == QT_LIST:
        nk = _rd_list_head(s, "a dictionary's keys", start)
        _charge(s, COST_LIST + COST_SLOT * nk + _dict_cost(nk), start)
        d = _PyDict_NewPresized(nk)
        st.refs.append(d)     # before the keys: a registered key object may refer to d
        tallied = nk > SHARED_HASH_LIMIT
        general = True
        keys = [_decode_item(s, depth + 2) for i in range(nk)]
    else:
        _fail("a dictionary definition's keys must be a symbol vector or a general list", s.pos, QT_DICT)
    if _rd_list_head(s, "a dictionary's values", start) != nk:
        _fail(f"dictionary definition has {nk} keys but a different number of values", start, QT_DICT)
    _tally_init(&tally)
    try:
        for i in range(nk):
            # PyDict_SetDefault: one lookup that inserts (a repeated key keeps its first value,
            # and the count check below refuses the dictionary either way), cheaper than d[k] = v.
            value = _decode_item(s, depth + 2)
            if not tallied:
                if general:
                    _charge_hash(s, <object>PyList_GET_ITEM(keys, i), start)
                PyDict_SetDefault(d, <object>PyList_GET_ITEM(keys, i), value)
            elif _tallied_dict_setdefault(s, &tally, d, <object>PyList_GET_ITEM(keys, i), value, start):
                _fail_flooded("a dictionary definition", start, QT_DICT)
    except TypeError as e:
        _fail(f"a dictionary key is unhashable ({e})", start, QT_DICT)
    finally:
        _tally_free(s, &tally)
    if len(d) != nk:
        _fail("a dictionary definition has duplicate keys", start, QT_DICT)
    if kstart != NULL and fresh:
        _keycache_put(kstart, s.end - (kstart - s.buf), klen, nk, keys, s.stable)   # distinct: d has them all
    if kstart != NULL:
        # remember these keys for the next dictionary (they are distinct: d has them all)
        Py_XDECREF(s.rec_key_list)
        Py_INCREF(keys)
        s.rec_key_list = <PyObject*>keys
        s.rec_keys = kstart
        s.rec_keys_len = klen
        s.rec_keys_unique = 1
    return d
