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


# ---- record keys across messages -----------------------------------------------------------------
# Programs send the same few dict shapes again and again ({"id": .., "price": .., ...}): the key
# symbols of a record dict are remembered across messages, so a repeat costs one memcmp instead of
# building and hashing a str per key (the cached str objects keep their hash). Bounded: a fixed
# number of slots, each holding at most KEYCACHE_MAX_KEYS keys in KEYCACHE_MAX_BYTES wire bytes; a
# message can only replace entries, never add memory. Only key lists that went into a dict are
# kept, so a cached list's keys are known distinct. Module-level and shared by every Decoder: each
# read or update runs under the GIL without calling back into Python (freeing an evicted entry
# frees only a bytes, a list and str objects), and a hit takes its own reference before anything
# else can run.

cdef struct KeyEntry:
    PyObject* kbytes         # bytes: the nk NUL-terminated key symbols as on the wire, or NULL
    PyObject* keys           # list of the nk decoded str, distinct (never mutated)
    Py_ssize_t nk


cdef enum:
    KEYCACHE_SLOTS = 64      # a power of two; a key shape may sit in slot i or i ^ 1
    KEYCACHE_MAX_KEYS = 32
    KEYCACHE_MAX_BYTES = 256
    KEYCACHE_MIN_AVAIL = 8   # bytes from the keys' start that the slot hash may read


cdef KeyEntry _key_cache[KEYCACHE_SLOTS]


cdef inline Py_ssize_t _keycache_slot(const unsigned char* p, Py_ssize_t nk) noexcept:
    # Hashes nk and the first key's bytes up to its NUL or 8 bytes: the same for every message
    # with these keys, whatever follows them. Needs KEYCACHE_MIN_AVAIL bytes at p.
    cdef uint64_t h = 1469598103934665603ULL ^ <uint64_t>nk
    cdef int i
    cdef unsigned char c
    for i in range(8):
        c = p[i]
        h = (h ^ c) * 1099511628211ULL
        if c == 0:
            break
    return <Py_ssize_t>((h ^ (h >> 32)) & (KEYCACHE_SLOTS - 1))


cdef inline object _keycache_get(const unsigned char* p, Py_ssize_t avail, Py_ssize_t nk, Py_ssize_t* nbytes):
    """The cached key list for the nk symbols at p (avail bytes readable), or None. Sets
    *nbytes to the bytes the symbols take."""
    if nk == 0 or nk > KEYCACHE_MAX_KEYS or avail < KEYCACHE_MIN_AVAIL:
        return None
    cdef Py_ssize_t j = _keycache_slot(p, nk)
    cdef KeyEntry* e
    cdef Py_ssize_t n
    cdef int k
    for k in range(2):
        e = &_key_cache[j ^ k]
        if e.keys != NULL and e.nk == nk:
            n = PyBytes_GET_SIZE(<object>e.kbytes)
            # The entry's bytes are exactly nk NUL-terminated symbols: equal bytes are equal keys.
            if n <= avail and memcmp(PyBytes_AS_STRING(<object>e.kbytes), p, n) == 0:
                nbytes[0] = n
                return <object>e.keys
    return None


cdef int _keycache_put(const unsigned char* p, Py_ssize_t avail, Py_ssize_t nbytes, Py_ssize_t nk, list keys) except -1:
    """Remember keys (distinct, decoded from the nk symbols in p[0:nbytes]; avail bytes are
    readable at p)."""
    if nk == 0 or nk > KEYCACHE_MAX_KEYS or nbytes > KEYCACHE_MAX_BYTES or avail < KEYCACHE_MIN_AVAIL:
        return 0
    kb = PyBytes_FromStringAndSize(<const char*>p, nbytes)
    cdef Py_ssize_t j = _keycache_slot(p, nk)
    cdef KeyEntry* e = &_key_cache[j]
    cdef KeyEntry* other = &_key_cache[j ^ 1]
    cdef PyObject* old_b = NULL
    cdef PyObject* old_k = NULL
    if e.keys != NULL:
        if other.keys == NULL:
            e = other
        else:
            # Both taken: the newest goes first, the previous first moves second, the second goes.
            old_b = other.kbytes
            old_k = other.keys
            other[0] = e[0]
    Py_INCREF(kb)
    Py_INCREF(keys)
    e.kbytes = <PyObject*>kb
    e.keys = <PyObject*>keys
    e.nk = nk
    Py_XDECREF(old_b)
    Py_XDECREF(old_k)
    return 0


def _keycache_clear():
    """Empty the record key cache (tests)."""
    cdef Py_ssize_t i
    cdef PyObject* b
    cdef PyObject* k
    for i in range(KEYCACHE_SLOTS):
        b = _key_cache[i].kbytes
        k = _key_cache[i].keys
        _key_cache[i].kbytes = NULL
        _key_cache[i].keys = NULL
        _key_cache[i].nk = 0
        Py_XDECREF(b)
        Py_XDECREF(k)


def _keycache_info():
    """The cached key lists (tests): a list of (wire bytes, keys) per occupied slot."""
    return [(<object>_key_cache[i].kbytes, list(<object>_key_cache[i].keys))
            for i in range(KEYCACHE_SLOTS) if _key_cache[i].keys != NULL]
