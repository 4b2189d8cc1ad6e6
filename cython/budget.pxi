# What decoded values cost in memory, for the decoder's memory bound (SECURITY.md): a message of n
# bytes may make the decoder allocate at most max_expansion x n + EXPANSION_SLACK bytes (and at
# most max_decoded_size, when set). Every object the decoder creates is charged as it is made,
# before it is made where its size is known first (lists, arrays), so a message claiming more
# than its budget fails before the allocation. Views into the input cost only their array object.
#
# The costs are what sys.getsizeof reports for the running interpreter and NumPy (measured once,
# at import, on prototype objects), which is also what tracemalloc counts. Charges only add up:
# temporaries freed during decoding stay charged, so the total bounds the peak from above.

import sys as _sys

cdef extern from *:
    """
    /* Bytes of a compact str object of `length` code points of `kind` bytes each (ASCII
       strings use the smaller header); the NUL CPython keeps after the data included. */
    static inline Py_ssize_t qw_str_size(PyObject *o, Py_ssize_t ascii_base, Py_ssize_t compact_base) {
        Py_ssize_t n = PyUnicode_GET_LENGTH(o);
        if (PyUnicode_IS_ASCII(o))
            return ascii_base + n + 1;
        return compact_base + (n + 1) * (Py_ssize_t)PyUnicode_KIND(o);
    }
    """
    Py_ssize_t qw_str_size(PyObject* o, Py_ssize_t ascii_base, Py_ssize_t compact_base) noexcept

cdef enum:
    EXPANSION_SLACK = 1 << 20      # bytes every message may take beyond max_expansion x its size
    COST_SLOT = 8                  # a pointer in a list, tuple or object array
    FREED_BUT_KEPT = 64 * 1024     # freed lists and dicts CPython keeps for reuse (decode.pxi)

DEFAULT_MAX_EXPANSION = 16

cdef Py_ssize_t COST_LIST = _sys.getsizeof([])            # plus COST_SLOT per item
cdef Py_ssize_t COST_TUPLE = _sys.getsizeof((None,)) - COST_SLOT
cdef Py_ssize_t COST_BYTES = _sys.getsizeof(b"")          # plus one per byte
cdef Py_ssize_t COST_STR_ASCII = _sys.getsizeof("") - 1   # qw_str_size adds the length and the NUL
cdef Py_ssize_t COST_STR_COMPACT = _sys.getsizeof("\xe9") - 2
# An array object (a view: no data of its own) and the block NumPy allocates for the shape and
# strides of one dimension.
cdef Py_ssize_t COST_ARRAY = _sys.getsizeof(np.frombuffer(b"x", dtype=np.uint8)) + 2 * sizeof(cnp.npy_intp)
cdef Py_ssize_t COST_MEMORYVIEW = _sys.getsizeof(memoryview(b""))
# A number or temporal atom is charged the largest of what its width can decode to: 2 bytes a
# NumPy int16; 4 bytes NumPy int32/float32 or temporals (datetime64, timedelta64, date, time);
# 8 bytes int64 or float, NumPy temporals, datetime and timedelta, qwire's DateTime and Timestamp.
cdef Py_ssize_t COST_ATOM2 = _sys.getsizeof(np.int16(1))
cdef Py_ssize_t COST_ATOM4 = max(
    _sys.getsizeof(np.int32(1)), _sys.getsizeof(np.float32(1)),
    _sys.getsizeof(np.datetime64(1, "M")), _sys.getsizeof(np.timedelta64(1, "m")),
    _sys.getsizeof(_dt.date(2000, 1, 1)), _sys.getsizeof(_dt.time(1, 1, 1, 1000)))
cdef Py_ssize_t COST_ATOM8 = max(
    _sys.getsizeof(-(1 << 63)), _sys.getsizeof(1.0),
    _sys.getsizeof(np.datetime64(1, "ns")), _sys.getsizeof(np.timedelta64(1, "ns")),
    _sys.getsizeof(_dt.datetime(2000, 1, 1, 1, 1, 1, 1)), _sys.getsizeof(_dt.timedelta(1, 1, 1)),
    _sys.getsizeof(DateTime(0.5)), _sys.getsizeof(Timestamp(1)))
cdef Py_ssize_t COST_ATOM = max(COST_ATOM2, COST_ATOM4, COST_ATOM8)
cdef Py_ssize_t COST_UUID = _sys.getsizeof(uuid.UUID(int=(1 << 128) - 1)) + _sys.getsizeof((1 << 128) - 1)


cdef inline Py_ssize_t _str_cost(str s) noexcept:
    return qw_str_size(<PyObject*>s, COST_STR_ASCII, COST_STR_COMPACT)


# Objects of fixed size (qwire's value classes, registered classes) cost the same every time: their
# getsizeof, plus their __dict__ when they have one, measured on the first instance.
cdef dict _FIXED_COSTS = {}


cdef Py_ssize_t _fixed_cost(object obj) except -1:
    cost = _FIXED_COSTS.get(type(obj))
    if cost is None:
        cost = _object_and_dict_cost(obj)
        _FIXED_COSTS[type(obj)] = cost       # a race computes it twice, equally
    return <Py_ssize_t>cost


cdef Py_ssize_t _object_and_dict_cost(object obj) except -1:
    """obj's size and its __dict__'s, when it has one."""
    cdef Py_ssize_t cost = _object_cost(obj)
    try:
        cost += _object_cost(object.__getattribute__(obj, "__dict__"))
    except AttributeError:
        pass
    return cost


cdef object _object_sizeof = object.__sizeof__


cdef Py_ssize_t _shell_cost(object obj) except -1:
    """obj's own object, not what its __sizeof__ adds for what it refers to (pandas' DataFrame
    __sizeof__ walks every cell): for values built over data already charged."""
    try:
        return <Py_ssize_t>_object_sizeof(obj) + COST_SLOT * 2
    except Exception:
        return COST_ATOM


cdef Py_ssize_t _object_cost(object obj) except -1:
    """Objects whose size depends on their contents (sets, tuples, Decimals, ints, arrays...):
    getsizeof, which counts their own storage (an array's data when it owns it). A registered
    class's __sizeof__ is its author's code: if it fails, the object is charged as an atom."""
    try:
        return max(<Py_ssize_t>_sys.getsizeof(obj), 0)
    except Exception:
        return COST_ATOM


# A dict presized for n str keys and filled with them: the size depends only on n. Records (dicts
# with str keys, the commonest Python dict) are charged from this table, filled on first use.
cdef enum:
    RECORD_COSTS_KNOWN = 256
cdef Py_ssize_t[RECORD_COSTS_KNOWN] _RECORD_COSTS


cdef Py_ssize_t _record_cost(Py_ssize_t n) except -1:
    cdef Py_ssize_t i
    if n >= RECORD_COSTS_KNOWN:
        return -2                      # not known in advance: the caller measures the dict it made
    if _RECORD_COSTS[n] == 0:
        d = _PyDict_NewPresized(n)
        for i in range(n):
            d[str(i)] = None
        _RECORD_COSTS[n] = _sys.getsizeof(d)
    return _RECORD_COSTS[n]


cdef Py_ssize_t COST_SET = _sys.getsizeof(set())     # the object, with its inline 8-slot table


cdef Py_ssize_t _set_cost(Py_ssize_t n) noexcept:
    """A set or frozenset of n distinct items added one by one, as CPython grows it (setobject.c:
    a table of 2^k 16-byte entries, resized when 3/5 full to the next power of two above 4x the
    items, 2x past 50,000), plus the table it replaced (both exist during the last resize).
    Duplicates only make it smaller."""
    cdef Py_ssize_t size = 8, previous = 0, at, minsize, grown
    while True:
        at = (3 * (size - 1) + 4) // 5          # the item count that triggers the next resize
        if n < at:
            break
        minsize = at * 2 if at > 50000 else at * 4
        grown = 8
        while grown <= minsize:
            grown <<= 1
        previous = size
        size = grown
    return COST_SET + (16 * size if size > 8 else 0) + (16 * previous if previous > 8 else 0)


cdef Py_ssize_t _buffer_bytes(object payload) except -1:
    """Bytes of the arrays and bytes in an extension record's payload (itself or its items)."""
    cdef Py_ssize_t total = 0
    t = type(payload)
    if t is bytes:
        return PyBytes_GET_SIZE(payload)
    if t is cnp.ndarray:
        return (<cnp.ndarray>payload).nbytes
    if t is list:
        for item in <list>payload:
            if type(item) is bytes or type(item) is cnp.ndarray:
                total += _buffer_bytes(item)
    return total


cdef inline Py_ssize_t _dict_keys_bytes(Py_ssize_t size, Py_ssize_t entry) noexcept:
    """A dict's keys table of `size` slots (a power of two): the index array, as narrow as the
    size allows, and the entries, two thirds of the slots (dictobject.c's USABLE_FRACTION)."""
    cdef Py_ssize_t index = 1 if size <= 0x80 else 2 if size <= 0x8000 else 4 if size <= 0x80000000 else 8
    return _DICT_KEYS_HEADER + size * index + (size * 2 // 3) * entry


cdef Py_ssize_t COST_DICT = _sys.getsizeof({})
cdef Py_ssize_t _DICT_KEYS_HEADER = _sys.getsizeof({0: None}) - COST_DICT - 8 - 5 * 24


cdef Py_ssize_t _dict_cost(Py_ssize_t n) noexcept:
    """A dict of n distinct keys inserted one by one, as CPython grows it (a full table is replaced
    by the smallest power of two >= 3x the items), plus the table it replaced (both exist during
    the last resize). Entries are charged at 24 bytes (a str-keyed dict's are 16): an upper bound.
    Duplicates and presizing only make it smaller."""
    cdef Py_ssize_t size = 8, previous = 0, grown
    while n > size * 2 // 3:
        grown = 8
        while grown < (size * 2 // 3) * 3:
            grown <<= 1
        previous = size
        size = grown
    return COST_DICT + _dict_keys_bytes(size, 24) + (_dict_keys_bytes(previous, 24) if previous else 0)


def _cost_model(str kind, Py_ssize_t n):
    """The budget's charge for a set or dict of n distinct items (tests check it against
    sys.getsizeof on the running interpreter)."""
    if kind == "set":
        return _set_cost(n)
    if kind == "dict":
        return _dict_cost(n)
    raise ValueError(kind)
