# The decoder, continued (decode.pxi): dictionaries, tables and q functions.

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
            return _charged(s, _new_keyed_table(keys, values, sorted_), start)
        return _charged(s, _new_dict(keys, values, sorted_), start)
    if not sorted_ and value_code == QT_LIST and value_attr == 0 and key_attr == 0 and type(values) is list:
        d = _as_python_dict(s, keys, key_code, values, nk, start)
        if d is not None:
            return d
    return _charged(s, _new_dict(keys, values, sorted_), start)


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
    cdef Py_ssize_t cost
    cdef bint exact
    if unique != 0 and s.end - s.pos >= 6 and s.buf[s.pos] == QT_LIST and s.buf[s.pos + 1] == 0:
        s.pos += 2
        if _rd_count(s, QT_LIST, False) == nk and nk <= (s.end - s.pos) // 2:
            cost = _record_cost(nk)
            exact = cost >= 0
            if not exact:
                cost = _dict_cost(nk)    # not in the table of known sizes: as grown, an upper bound
            _charge(s, cost, start)
            d = _PyDict_NewPresized(nk)
            for i in range(nk):
                value = _decode_item(s, depth + 1)
                # One lookup inserts and tells whether the key was already there.
                if <PyObject*>value != PyDict_SetDefault(d, <object>PyList_GET_ITEM(keys, i), value):
                    # A repeated key: no Python dict can hold this. Keep what was decoded (all
                    # distinct before this one) and decode the rest into a list: nothing twice.
                    if s.rec_key_list == <PyObject*>keys:
                        s.rec_keys_unique = 0
                    _charge(s, COST_LIST + COST_SLOT * nk, start)
                    values = [d[<object>PyList_GET_ITEM(keys, j)] for j in range(i)]
                    values.append(value)
                    for j in range(i + 1, nk):
                        values.append(_decode_item(s, depth + 1))
                    s.last_code = QT_DICT
                    _charge(s, COST_ARRAY + COST_SLOT * nk, start)
                    return _charged(s, _new_dict(_object_array(keys), values, False), start)
            if s.rec_key_list == <PyObject*>keys:
                s.rec_keys_unique = 1
            if fresh:
                _keycache_put(kstart, s.end - (kstart - s.buf), klen, nk, keys, s.stable)
            if not exact:
                s.spent -= cost                     # the upper bound, replaced by the real size
                _charge(s, _object_cost(d), start)
            s.last_code = QT_DICT
            return d
        s.pos = values_at   # not a plain list of as many values: the general path reports it
    _charge(s, COST_ARRAY + COST_SLOT * nk, start)
    return _finish_dict(s, QT_DICT, start, depth, _object_array(keys), QT_SYMBOL, 0)


cdef dict _tallied_dict(DState* s, list keys, list values, Py_ssize_t at):
    """dict(zip(keys, values)), or None where more than MAX_ITEMS_SHARING_A_HASH distinct keys
    share a hash value."""
    cdef HashTally t
    cdef dict d = {}
    cdef Py_ssize_t i
    _tally_init(&t)
    try:
        for i in range(PyList_GET_SIZE(keys)):
            if _tallied_dict_setdefault(s, &t, d, <object>PyList_GET_ITEM(keys, i), values[i], at):
                return None
    finally:
        _tally_free(s, &t)
    return d


cdef bint _hash_charged(DState* s, list keys, Py_ssize_t at) except -1:
    """Charge hashing these keys (hashtally.pxi) and say True; or, when the message cannot afford
    it (or a key cannot be hashed yet), charge nothing and say False."""
    cdef Py_ssize_t before = s.hash_work
    try:
        for k in keys:
            _charge_hash(s, k, at)
    except HashWorkError:
        s.hash_work = before
        return False
    return True


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


cdef object _as_python_dict(DState* s, object keys, int key_code, list values, Py_ssize_t n, Py_ssize_t start):
    """A Python dict when it re-encodes to the same bytes (docs/TYPES.md), else None."""
    cdef dict d
    cdef Py_ssize_t before = _dict_cost(n)      # charged before the dict grows, then its real size
    cdef Py_ssize_t saved_work
    if key_code == QT_SYMBOL and type(keys) is cnp.ndarray:
        _charge(s, COST_LIST + COST_SLOT * n + before, start)      # the keys as a list, and the dict
        d = dict(zip((<cnp.ndarray>keys).tolist(), values))
    elif key_code == QT_LIST and type(keys) is list and n > 0:
        if all(type(k) is str and "\0" not in k for k in <list>keys):
            return None      # a Python dict with such keys writes a symbol vector
        saved_work = s.hash_work
        if n <= SHARED_HASH_LIMIT and not _hash_charged(s, <list>keys, start):
            return None      # keys too costly to hash: the q dictionary hashes nothing
        _charge(s, before, start)
        try:
            if n <= SHARED_HASH_LIMIT:
                d = dict(zip(<list>keys, values))
            else:
                d = _tallied_dict(s, <list>keys, values, start)
        except TypeError:
            s.spent -= before
            return None      # unhashable keys
        except HashWorkError:
            s.spent -= before
            s.hash_work = saved_work
            return None      # keys too costly to hash
        if d is None:
            s.spent -= before
            return None      # keys sharing hash values (hashtally.pxi): the q dictionary hashes nothing
    else:
        return None
    s.spent -= before
    _charge(s, _object_cost(d), start)
    if len(d) != n:
        return None
    # The dict is the value: the keys' list (or array) and the values' list, charged as they were
    # decoded, and the list made from a key array, are freed once the caller returns it.
    if key_code == QT_SYMBOL:       # the key array, the list made from it, the values' list
        s.spent -= COST_ARRAY + 2 * COST_LIST + 3 * COST_SLOT * n
    else:                           # the keys' list and the values' list
        s.spent -= 2 * COST_LIST + 2 * COST_SLOT * n
    return d


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
    _charge(s, COST_LIST + COST_SLOT * len(names), start)
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
    _charge(s, _object_cost(out), start)
    table = _charged(s, _new_table(out, ATTRIBUTES[attr]), start)
    # The names (array and list) and the list of columns are freed on return: their charge too.
    s.spent -= 2 * COST_LIST + COST_ARRAY + COST_SLOT * (2 * len(name_list) + len(cols))
    return table


# ---- functions ---------------------------------------------------------------------------------

cdef object _decode_function(DState* s, int t, Py_ssize_t start, int depth):
    cdef Py_ssize_t z
    cdef uint32_t n
    if t == QT_LAMBDA:
        z = _sym_end(s, "a lambda's context")
        context = sym_counted(&s.syms, <const char*>s.buf + s.pos, z - s.pos)
        s.pos = z + 1
        _need(s, 2, "a lambda's source")
        if s.buf[s.pos] != QT_CHAR or s.buf[s.pos + 1] != 0:
            _fail("a lambda's source must be a char vector without attribute", s.pos, t)
        src = _decode_item(s, depth + 1)
        text = PyUnicode_DecodeUTF8(PyBytes_AS_STRING(src), PyBytes_GET_SIZE(src), "surrogateescape")
        _charge(s, _str_cost(text), start)
        return _charged(s, Lambda(text, context), start)
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
        _charge(s, COST_TUPLE + COST_SLOT * <Py_ssize_t>n, start)
        items = PyTuple_New(n)
        for i in range(n):
            item = _decode_item(s, depth + 1)
            Py_INCREF(item)
            PyTuple_SET_ITEM(items, i, item)
        f = Projection.__new__(Projection) if t == QT_PROJECTION else Composition.__new__(Composition)
        _object_setattr(f, "items", items)
        return _charged(s, f, start)
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
    return _charged(s, Derived(_ITERATOR_KINDS[t - QT_EACH], func), start)


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
