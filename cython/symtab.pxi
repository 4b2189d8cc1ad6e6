# A per-call intern table for symbols: q symbols repeat (a 1M-row table with 100 distinct symbols),
# so each distinct byte string becomes one str object. This also bounds the memory a message of
# many short symbols can make the decoder allocate.

cdef struct SymEntry:
    uint64_t hash
    uint64_t w8              # the first min(len, 8) bytes (qw_sym_hash)
    const char* ptr
    Py_ssize_t len
    PyObject* obj            # a strong reference, released by symtab_free


cdef struct SymTab:
    SymEntry* entries
    Py_ssize_t cap           # a power of two, or 0 before first use
    Py_ssize_t used
    Py_ssize_t hits
    bint off                 # interning stopped: the symbols here do not repeat
    Py_ssize_t spent         # bytes of the table and of the strs made through it (budget.pxi)


cdef enum:
    SYMTAB_PROBATION = 4096  # distinct symbols seen before judging whether interning pays
    SYMTAB_INITIAL = 64
    SYMTAB_MAX = 1 << 17     # entries; past this, symbols are created without interning
    SYMTAB_MAX_LEN = 64      # longer symbols are rarely repeated; don't hash them


# Symbols are found (their NUL) and hashed in one step. A symbol under 8 bytes is read as one
# little-endian word `w8` (the bytes after its NUL masked off): its hash is a multiply of that word,
# and two such symbols are equal when their lengths and words are. Longer symbols hash with FNV-1a
# and compare with memcmp. The hash depends on the symbol's bytes only, whichever path found it.
cdef extern from *:
    """
    #include <string.h>
    #include <stdint.h>
    static inline uint64_t qw_sym_mix(uint64_t w, Py_ssize_t n) {
        uint64_t h = (w ^ ((uint64_t)n << 56)) * 0x9E3779B97F4A7C15ULL;
        return h ^ (h >> 29);
    }
    /* The hash of the symbol p[0:n]; *w8 = its first min(n, 8) bytes as a little-endian word. */
    static inline uint64_t qw_sym_hash(const unsigned char *p, Py_ssize_t n, uint64_t *w8) {
        uint64_t w = 0;
        Py_ssize_t i;
        for (i = 0; i < n && i < 8; i++)
            w |= (uint64_t)p[i] << (8 * i);
        *w8 = w;
        if (n < 8)
            return qw_sym_mix(w, n);
        uint64_t h = 1469598103934665603ULL ^ (uint64_t)n;
        for (i = 0; i < n; i++)
            h = (h ^ p[i]) * 1099511628211ULL;
        return qw_sym_mix(h, n);
    }
    /* The length of the NUL-terminated symbol at p (avail bytes readable), or -1 when no NUL
       follows within them; sets *h and *w8 as qw_sym_hash does. */
    static inline Py_ssize_t qw_sym_scan(const unsigned char *p, Py_ssize_t avail, uint64_t *h, uint64_t *w8) {
    #if defined(__GNUC__) && defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
        if (avail >= 8) {
            uint64_t w, z;
            memcpy(&w, p, 8);
            z = (w - 0x0101010101010101ULL) & ~w & 0x8080808080808080ULL;
            if (z) {
                /* the lowest flagged byte is the first NUL (flags above it may be false) */
                Py_ssize_t n = __builtin_ctzll(z) >> 3;
                /* keep the bytes before the NUL: the bits below the flag (the NUL's own low
                   bits are zero anyway) */
                w &= (z & (0 - z)) - 1;
                *w8 = w;
                *h = qw_sym_mix(w, n);
                return n;
            }
        }
    #endif
        const unsigned char *e = (const unsigned char *)memchr(p, 0, (size_t)avail);
        if (!e)
            return -1;
        *h = qw_sym_hash(p, e - p, w8);
        return e - p;
    }
    """
    uint64_t qw_sym_hash(const unsigned char* p, Py_ssize_t n, uint64_t* w8) noexcept nogil
    Py_ssize_t qw_sym_scan(const unsigned char* p, Py_ssize_t avail, uint64_t* h, uint64_t* w8) noexcept nogil


cdef int _symtab_grow(SymTab* t) except -1:
    cdef Py_ssize_t newcap = SYMTAB_INITIAL if t.cap == 0 else t.cap * 2
    cdef SymEntry* fresh = <SymEntry*>PyMem_Calloc(newcap, sizeof(SymEntry))
    if fresh == NULL:
        raise MemoryError()
    t.spent += newcap * <Py_ssize_t>sizeof(SymEntry)
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


cdef inline str sym_counted(SymTab* t, const char* p, Py_ssize_t n):
    """A new str for the symbol bytes p[0:n], its size counted in t.spent."""
    s = _sym_new(p, n)
    t.spent += _str_cost(s)
    return s


cdef str symtab_get(SymTab* t, const char* p, Py_ssize_t n):
    """The str for the symbol bytes p[0:n], shared with earlier equal symbols of this call."""
    cdef uint64_t w8
    cdef uint64_t h = qw_sym_hash(<const unsigned char*>p, n, &w8)
    return symtab_get_hashed(t, p, n, h, w8)


cdef inline PyObject* symtab_find(SymTab* t, const char* p, Py_ssize_t n, uint64_t h, uint64_t w8) noexcept:
    """The str already made for the symbol p[0:n] in this call (borrowed), or NULL: the hot path
    of a symbol vector, with no reference counting. h and w8 from qw_sym_hash or qw_sym_scan."""
    if t.cap == 0 or t.off:
        return NULL
    cdef Py_ssize_t mask = t.cap - 1
    cdef Py_ssize_t j = <Py_ssize_t>(h & <uint64_t>mask)
    cdef SymEntry* e
    while True:
        e = &t.entries[j]
        if e.obj == NULL:
            return NULL
        if e.hash == h and e.len == n and e.w8 == w8 and (n <= 8 or memcmp(e.ptr, p, n) == 0):
            t.hits += 1
            return e.obj
        j = (j + 1) & mask


cdef str symtab_add(SymTab* t, const char* p, Py_ssize_t n, uint64_t h, uint64_t w8):
    """The str for a symbol symtab_find did not find: new, and kept for later equal symbols
    while interning pays."""
    if n > SYMTAB_MAX_LEN or t.off:
        return sym_counted(t, p, n)
    if t.used >= SYMTAB_PROBATION and t.hits < t.used:
        # Fewer repeats than distinct symbols: hashing costs more than it saves.
        t.off = True
        return sym_counted(t, p, n)
    if t.used * 2 >= t.cap:
        if t.cap >= SYMTAB_MAX:
            return sym_counted(t, p, n)
        _symtab_grow(t)
    cdef Py_ssize_t mask = t.cap - 1
    cdef Py_ssize_t j = <Py_ssize_t>(h & <uint64_t>mask)
    while t.entries[j].obj != NULL:
        j = (j + 1) & mask
    cdef SymEntry* e = &t.entries[j]
    s = sym_counted(t, p, n)
    Py_INCREF(s)
    e.obj = <PyObject*>s
    e.hash = h
    e.w8 = w8
    e.ptr = p
    e.len = n
    t.used += 1
    return s


cdef inline str symtab_get_hashed(SymTab* t, const char* p, Py_ssize_t n, uint64_t h, uint64_t w8):
    """symtab_get, with h and w8 from qw_sym_hash or qw_sym_scan."""
    cdef PyObject* o = symtab_find(t, p, n, h, w8)
    if o != NULL:
        return <str>o
    return symtab_add(t, p, n, h, w8)


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
    t.spent = 0


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


cdef int _keycache_put(const unsigned char* p, Py_ssize_t avail, Py_ssize_t nbytes, Py_ssize_t nk, list keys,
                       bint stable) except -1:
    """Remember keys (distinct, decoded from the nk symbols in p[0:nbytes]; avail bytes are
    readable at p). stable: the input cannot have changed since the keys were decoded from it.
    Otherwise (a bytearray or other writable buffer, which code run while decoding, such as a
    registered class's, may change) the entry's bytes are made from the keys themselves: an entry
    is always a key list and the bytes it was decoded from, whatever happened to the input."""
    if nk == 0 or nk > KEYCACHE_MAX_KEYS or nbytes > KEYCACHE_MAX_BYTES or avail < KEYCACHE_MIN_AVAIL:
        return 0
    if stable:
        kb = PyBytes_FromStringAndSize(<const char*>p, nbytes)
    else:
        kb = b"".join([(<str>k).encode("utf-8", "surrogateescape") + b"\0" for k in keys])
        if PyBytes_GET_SIZE(kb) != nbytes or memcmp(PyBytes_AS_STRING(kb), p, nbytes) != 0:
            return 0          # the input changed under the decoder: nothing from it is kept
        p = <const unsigned char*>PyBytes_AS_STRING(kb)   # the slot is chosen from the entry's own bytes
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
