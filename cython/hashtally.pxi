# Hash flooding. CPython hashes ints, floats, tuples, Decimals and most other values the same way
# in every process (only str and bytes hashes are salted), so a message can carry thousands of
# distinct set items or dict keys with one hash value. Building the set or dict then walks all the
# earlier ones for each new one: time quadratic in their number (20,000 big ints sharing a hash, a
# 359 KB message, took 2.8 s to decode; benign big ints, 19 ms). CPython's probing spreads keys
# whose hashes differ anywhere, so only equal hashes cost more than a few probes each.
# Items of the common types (str, bytes, float, int within int64) cannot share hash values more
# than a few at a time, and are not counted (_few_share_a_hash).
#
# While the decoder builds a set or dict of more than MAX_ITEMS_SHARING_A_HASH items, it counts
# the distinct items per hash value in a table of its own (a secret per-process salt picks the
# slots, so a message cannot aim its hashes at one slot), and stops at the limit: a set definition,
# a dict definition or a set or frozenset record is then a DecodeError; a q dictionary stays a
# qwire.Dict, which hashes nothing. With at most MAX items per hash the work stays linear: at most
# MAX comparisons per item. Benign data has no two distinct items with one 64-bit hash but by
# chance (or a class whose __hash__ is constant); SECURITY.md lists the limit.

import os as _os

from cpython.object cimport PyObject_Hash
from cpython.set cimport PySet_Add, PySet_GET_SIZE

MAX_ITEMS_SHARING_A_HASH = 32
cdef Py_ssize_t SHARED_HASH_LIMIT = MAX_ITEMS_SHARING_A_HASH   # the C copy the loops compare with

cdef enum:
    TALLY_SLOT_BYTES = 5            # a fingerprint of a hash value, and a count

cdef uint64_t _TALLY_SALT = int.from_bytes(_os.urandom(8), "little")


cdef struct HashTally:
    uint32_t* prints         # the mixed, salted hash's high 32 bits: its fingerprint
    uint8_t* counts          # 1 + distinct items seen with the hash; 0: an empty slot
    Py_ssize_t mask          # slots - 1; -1 until the first hash
    Py_ssize_t used
    Py_ssize_t charged       # bytes charged to the message's budget, credited back by _tally_free


cdef inline void _tally_init(HashTally* t) noexcept:
    t.prints = NULL
    t.counts = NULL
    t.mask = -1
    t.used = 0
    t.charged = 0


cdef void _tally_free(DState* s, HashTally* t) noexcept:
    PyMem_Free(t.prints)
    PyMem_Free(t.counts)
    s.spent -= t.charged
    _tally_init(t)


cdef inline uint64_t _tally_mix(Py_hash_t h) noexcept:
    """murmur3's 64-bit finaliser over the salted hash: a message cannot choose where its hash
    values land, nor which distinct ones get one fingerprint (and share a count)."""
    cdef uint64_t x = (<uint64_t>h) ^ _TALLY_SALT
    x ^= x >> 33
    x *= 0xff51afd7ed558ccdULL
    x ^= x >> 33
    x *= 0xc4ceb9fe1a85ec53ULL
    x ^= x >> 33
    return x


cdef int _tally_grow(DState* s, HashTally* t, Py_ssize_t at) except -1:
    cdef Py_ssize_t size = 64 if t.mask < 0 else 2 * (t.mask + 1)
    cdef Py_ssize_t old_size = t.mask + 1, i, j
    _charge(s, size * TALLY_SLOT_BYTES, at)
    t.charged += size * TALLY_SLOT_BYTES
    cdef uint32_t* prints = <uint32_t*>PyMem_Malloc(size * sizeof(uint32_t))
    cdef uint8_t* counts = <uint8_t*>PyMem_Calloc(size, 1)
    if prints == NULL or counts == NULL:
        PyMem_Free(prints)
        PyMem_Free(counts)
        raise MemoryError()
    cdef uint32_t* old_prints = t.prints
    cdef uint8_t* old_counts = t.counts
    t.prints = prints
    t.counts = counts
    t.mask = size - 1
    for i in range(old_size):
        if old_counts[i]:
            j = _tally_start(t, old_prints[i])
            while counts[j]:
                j = (j + 1) & t.mask
            prints[j] = old_prints[i]
            counts[j] = old_counts[i]
    PyMem_Free(old_prints)
    PyMem_Free(old_counts)
    s.spent -= old_size * TALLY_SLOT_BYTES
    t.charged -= old_size * TALLY_SLOT_BYTES
    return 0


cdef inline Py_ssize_t _tally_start(HashTally* t, uint32_t fingerprint) noexcept:
    # the fingerprint's own bits pick the first slot (they are mixed already), so a growing table
    # needs no other record of the hash
    return <Py_ssize_t>fingerprint & t.mask


cdef Py_ssize_t _tally_slot(DState* s, HashTally* t, Py_hash_t h, Py_ssize_t at) except -1:
    """The slot counting hash value `h`, made if new. Three quarters full at most, so probes
    stay short."""
    if 4 * (t.used + 1) > 3 * (t.mask + 1):
        _tally_grow(s, t, at)
    cdef uint32_t fingerprint = <uint32_t>(_tally_mix(h) >> 32)
    cdef Py_ssize_t i = _tally_start(t, fingerprint)
    while t.counts[i] and t.prints[i] != fingerprint:
        i = (i + 1) & t.mask
    if not t.counts[i]:
        t.prints[i] = fingerprint
        t.counts[i] = 1
        t.used += 1
    return i


cdef inline bint _few_share_a_hash(object item) except -1:
    """Items of types whose hash values at most a few distinct values share: str and bytes
    (salted), bool, float (a hash is x mod 2**61-1 over the float's exact value, which about 34
    doubles at most can share) and int within int64 (at most 9 of them per hash value). The
    common keys and items need no tally, and no table."""
    cdef type t = type(item)
    cdef int overflow = 0
    if t is str or t is bytes or t is float or t is bool:
        return True
    if t is int:
        PyLong_AsLongLongAndOverflow(item, &overflow)
        return overflow == 0
    return False


cdef bint _tallied_set_add(DState* s, HashTally* t, set target, object item, Py_ssize_t at) except -1:
    """Add `item` to `target` unless MAX_ITEMS_SHARING_A_HASH distinct items with its hash are in
    already: then return True (flooded) and add nothing. TypeError if it is unhashable."""
    if _few_share_a_hash(item):
        PySet_Add(target, item)
        return False
    cdef Py_ssize_t slot = _tally_slot(s, t, PyObject_Hash(item), at)
    if t.counts[slot] > SHARED_HASH_LIMIT:
        return True
    cdef Py_ssize_t before = PySet_GET_SIZE(target)
    PySet_Add(target, item)
    if PySet_GET_SIZE(target) != before:
        t.counts[slot] += 1
    return False


cdef bint _tallied_dict_setdefault(DState* s, HashTally* t, dict target, object key, object value,
                                   Py_ssize_t at) except -1:
    """The dict's counterpart of _tallied_set_add: a repeated key keeps its first value."""
    if _few_share_a_hash(key):
        PyDict_SetDefault(target, key, value)
        return False
    cdef Py_ssize_t slot = _tally_slot(s, t, PyObject_Hash(key), at)
    if t.counts[slot] > SHARED_HASH_LIMIT:
        return True
    cdef Py_ssize_t before = len(target)
    PyDict_SetDefault(target, key, value)
    if len(target) != before:
        t.counts[slot] += 1
    return False


cdef int _fail_flooded(str what, Py_ssize_t at, int type_code) except -1:
    _fail(f"{what} has more than {MAX_ITEMS_SHARING_A_HASH} distinct items with one hash value "
          f"(hash flooding: building it would take time quadratic in their number)", at, type_code)


cdef object _set_of_items(DState* s, list items, bint frozen, Py_ssize_t at):
    """A set or frozenset record's value, built with the tally (items already decoded)."""
    cdef HashTally t
    cdef set out = set()
    cdef Py_ssize_t i, set_cost
    _tally_init(&t)
    try:
        for i in range(PyList_GET_SIZE(items)):
            if _tallied_set_add(s, &t, out, <object>PyList_GET_ITEM(items, i), at):
                _fail_flooded("a frozenset record" if frozen else "a set record", at, QT_EXTENSION)
    except TypeError as e:
        _fail(f"malformed {'frozenset' if frozen else 'set'} extension record: an item is unhashable ({e})", at, QT_EXTENSION)
    finally:
        _tally_free(s, &t)
    if not frozen:
        return out
    set_cost = _object_cost(out)
    _charge(s, set_cost, at)               # the set and the frozenset made from it, for a moment
    value = frozenset(out)
    s.spent -= set_cost
    return value
