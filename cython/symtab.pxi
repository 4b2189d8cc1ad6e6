# A per-call intern table for symbols: q symbols repeat (a 1M-row table with 100 distinct symbols),
# so each distinct byte string becomes one str object. This also bounds the memory a message of
# many short symbols can make the decoder allocate.

cdef struct SymEntry:
    uint64_t hash
    const char* ptr
    Py_ssize_t len
    PyObject* obj            # a strong reference, released by symtab_free


cdef struct SymTab:
    SymEntry* entries
    Py_ssize_t cap           # a power of two, or 0 before first use
    Py_ssize_t used
    Py_ssize_t hits
    bint off                 # interning stopped: the symbols here do not repeat


cdef enum:
    SYMTAB_PROBATION = 4096  # distinct symbols seen before judging whether interning pays
    SYMTAB_INITIAL = 64
    SYMTAB_MAX = 1 << 17     # entries; past this, symbols are created without interning
    SYMTAB_MAX_LEN = 64      # longer symbols are rarely repeated; don't hash them


cdef inline uint64_t _sym_hash(const char* p, Py_ssize_t n) noexcept nogil:
    cdef uint64_t h = 1469598103934665603ULL ^ <uint64_t>n
    cdef Py_ssize_t i
    for i in range(n):
        h = (h ^ <uint8_t>p[i]) * 1099511628211ULL
    return h


cdef int _symtab_grow(SymTab* t) except -1:
    cdef Py_ssize_t newcap = SYMTAB_INITIAL if t.cap == 0 else t.cap * 2
    cdef SymEntry* fresh = <SymEntry*>PyMem_Calloc(newcap, sizeof(SymEntry))
    if fresh == NULL:
        raise MemoryError()
    cdef Py_ssize_t i, j
    for i in range(t.cap):
        if t.entries[i].obj != NULL:
            j = <Py_ssize_t>(t.entries[i].hash & <uint64_t>(newcap - 1))
            while fresh[j].obj != NULL:
                j = (j + 1) & (newcap - 1)
            fresh[j] = t.entries[i]
    PyMem_Free(t.entries)
    t.entries = fresh
    t.cap = newcap
    return 0


cdef inline str _sym_new(const char* p, Py_ssize_t n):
    cdef Py_ssize_t i
    if 1 < n <= 16:
        # Short ASCII (most symbols): build the str directly, skipping the codec machinery.
        for i in range(n):
            if <unsigned char>p[i] >= 0x80:
                return PyUnicode_DecodeUTF8(p, n, "surrogateescape")
        out = PyUnicode_New(n, 127)
        memcpy(PyUnicode_DATA(out), p, n)
        return <str>out
    return PyUnicode_DecodeUTF8(p, n, "surrogateescape")


cdef str symtab_get(SymTab* t, const char* p, Py_ssize_t n):
    """The str for the symbol bytes p[0:n], shared with earlier equal symbols of this call."""
    if n > SYMTAB_MAX_LEN or t.off:
        return _sym_new(p, n)
    if t.used >= SYMTAB_PROBATION and t.hits < t.used:
        # Fewer repeats than distinct symbols: hashing costs more than it saves.
        t.off = True
        return _sym_new(p, n)
    if t.used * 2 >= t.cap:
        if t.cap >= SYMTAB_MAX:
            return _sym_new(p, n)
        _symtab_grow(t)
    cdef uint64_t h = _sym_hash(p, n)
    cdef Py_ssize_t mask = t.cap - 1
    cdef Py_ssize_t j = <Py_ssize_t>(h & <uint64_t>mask)
    cdef SymEntry* e
    while True:
        e = &t.entries[j]
        if e.obj == NULL:
            break
        if e.hash == h and e.len == n and memcmp(e.ptr, p, n) == 0:
            t.hits += 1
            return <str>e.obj
        j = (j + 1) & mask
    s = _sym_new(p, n)
    Py_INCREF(s)
    e.obj = <PyObject*>s
    e.hash = h
    e.ptr = p
    e.len = n
    t.used += 1
    return s


cdef void symtab_free(SymTab* t) noexcept:
    cdef Py_ssize_t i
    if t.entries != NULL:
        for i in range(t.cap):
            Py_XDECREF(t.entries[i].obj)
        PyMem_Free(t.entries)
    t.entries = NULL
    t.cap = 0
    t.used = 0
    t.hits = 0
    t.off = False
