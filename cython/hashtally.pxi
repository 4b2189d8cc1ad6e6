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
from cpython.tuple cimport PyTuple_GET_ITEM, PyTuple_GET_SIZE

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
    _charge_hash(s, item, at)
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
    _charge_hash(s, key, at)
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


# ---- the work of hashing one item --------------------------------------------------------------
# CPython does not cache a tuple's hash: hashing one hashes everything inside it, every time. With
# reference records a message can make tuple i hold tuple i-1 twice: 64 levels in 2.3 KB, and a
# set of the last makes CPython hash 2^64 leaves (a dataclass's hash, the hash of a tuple of its
# fields, and an uncached function value's are the same). Before the decoder hashes a set item or
# dict key that can hold other values, it measures what hashing it will visit: every value hash()
# reaches, a value reached twice counted twice (the size of the tree, not of the graph). Sizes of
# values shared through references are kept for the rest of the message, so measuring is linear in
# what the message defines, while the counts add up to what CPython would do. The total over a
# message may not pass MAX_HASH_WORK_PER_BYTE x its size + HASH_WORK_SLACK (the factor scales with
# the decoder's max_expansion, as memory does: max_expansion=32 allows twice as much, None no
# bound): past it the message is a DecodeError, before anything is hashed. Comparisons are bounded with it: a set or dict compares
# an item only with items of its exact hash, at most MAX_ITEMS_SHARING_A_HASH of them (the tally
# above; a smaller set has fewer items), and a comparison visits at most what hashing did.
#
# The measure also refuses what hashing cannot do safely: a registered object still being decoded
# (reached through a reference from inside its own fields: it has no attributes yet), and values
# nested deeper than max_depth or than this thread's stack can hash (a value containing itself
# through immutable ones nests without end).

from qwire.functions import Function as _Function

MAX_HASH_WORK_PER_BYTE = 4
HASH_WORK_SLACK = 1 << 16
cdef Py_ssize_t _HASH_WORK_PER_BYTE = MAX_HASH_WORK_PER_BYTE
cdef Py_ssize_t _HASH_WORK_SLACK = HASH_WORK_SLACK

cdef enum:
    HASH_MEMO_COST = 160             # a kept size: its dict entry, key, tuple and int (budget.pxi)
    HASH_STACK_PER_LEVEL = 512       # C stack one level of tuple hashing may take (an upper bound)
    HASH_STACK_PER_PY_LEVEL = 4096   # ... and one level through a Python __hash__ (a dataclass's)

class HashWorkError(DecodeError):
    """Hashing a set item or dict key would take more work than the message may cost, or cannot be
    done safely (hashtally.pxi). A DecodeError; a q dictionary whose keys raise it stays a
    qwire.Dict, which hashes nothing."""


cdef int _fail_hash(str what, Py_ssize_t at, int type_code=0) except -1:
    raise HashWorkError(what, at, type_code if type_code else None)


cdef object _object_hash = object.__hash__
cdef object _tuple_hash = tuple.__hash__
cdef object _POST = object()         # marks, in the walk's stack, a container whose parts are done


cdef inline bint _hashes_in_o1(object item) noexcept:
    """Items whose hash costs a few operations and reaches nothing else: str and bytes (cached),
    bool, float, None and int within int64."""
    cdef type t = type(item)
    cdef int overflow = 0
    if t is str or t is bytes or t is float or t is bool or item is None:
        return True
    if t is int:
        PyLong_AsLongLongAndOverflow(item, &overflow)
        return overflow == 0
    return False


cdef int _charge_hash(DState* s, object item, Py_ssize_t at) except -1:
    """Count what hashing `item` (a set item or dict key about to be hashed) will visit; refuse the
    message if that takes the total past its hash work limit."""
    if _hashes_in_o1(item):
        return 0
    cdef double lim
    if s.hash_limit < 0:
        # hashing work scales with max_expansion, as memory does; None: unbounded
        lim = s.hash_per_byte * <double>s.size + <double>_HASH_WORK_SLACK
        s.hash_limit = (PY_SSIZE_T_MAX // 4 if s.hash_per_byte < 0 or lim >= <double>(PY_SSIZE_T_MAX // 4)
                        else <Py_ssize_t>lim)
    cdef Py_ssize_t size = _hash_size(s, item, at)
    s.hash_work += size
    if s.hash_work > s.hash_limit:
        _fail_hash(f"hashing a set item or dictionary key here makes hashing this message's items visit more than "
                   f"{s.hash_limit} values, what this {s.size}-byte message may make the decoder hash "
                   f"(MAX_HASH_WORK_PER_BYTE={MAX_HASH_WORK_PER_BYTE} x its size + {HASH_WORK_SLACK}, scaled by "
                   f"max_expansion/{DEFAULT_MAX_EXPANSION}; a value reached twice through references counts twice; "
                   f"a trusted sender's message may pass a larger max_expansion=)", at)
    return 0


cdef inline Py_ssize_t _leaf_hash_cost(object x) except -1:
    if type(x) is int and not _hashes_in_o1(x):
        return 1 + (<Py_ssize_t>x.bit_length() >> 6)     # a big int's hash reads all its digits
    return 1


cdef object _hash_parts(DState* s, object x, Py_ssize_t at, int* py_level):
    """The values hashing x hashes (a tuple, or None when x's hash reaches nothing else)."""
    cdef type t = type(x)
    if t is tuple:
        return x
    if t is frozenset or t is str or t is bytes:
        return None                   # cached, or (a frozenset) made from its items' kept hashes
    h = getattr(t, "__hash__", None)
    if h is None or h is _object_hash:
        return None                   # unhashable (hash() will say so) or hashed by identity
    if isinstance(x, tuple):
        return tuple(x) if h is _tuple_hash else None
    if isinstance(x, _Function):
        try:
            object.__getattribute__(x, "_hash")
            return None               # kept from before
        except AttributeError:
            py_level[0] = 1
            return tuple(x._key())
    fields = getattr(t, "__dataclass_fields__", None)
    if fields is not None and type(fields) is dict:
        if s.xs != NULL and id(x) in (<_DecState>s.xs).building:
            _fail_hash(f"a reference reaches a registered {t.__name__} object that is still being decoded "
                  f"(from inside its own fields), and hashing it needs its fields", at, QT_EXTENSION)
        py_level[0] = 1
        return tuple([getattr(x, name, None) for name in <dict>fields])
    return None                       # the class's own __hash__: its author's code


cdef Py_ssize_t _hash_size(DState* s, object root, Py_ssize_t at) except -1:
    """The number of values hash(root) visits (saturating past the message's limit), measured
    without recursion; see above."""
    cdef Py_ssize_t cap = s.hash_limit - s.hash_work + 1       # more than this is refused anyway
    cdef int py_level = 0
    parts = _hash_parts(s, root, at, &py_level)
    if parts is None:
        return _leaf_hash_cost(root)
    cdef dict sizes = None
    cdef bint shared = s.xs != NULL and PyList_GET_SIZE((<_DecState>s.xs).refs) > 0
    if shared:
        # values shared through references: each measured once per message
        sizes = (<_DecState>s.xs).hash_sizes
        got = sizes.get(id(root))
        if got is not None:
            return (<tuple>got)[1]
    # A depth-first walk: [x, its parts, _POST] for a container, parts expanded before x is summed.
    cdef list stack = [root, parts, py_level, _POST]
    cdef list totals = [0]           # per open container: the sizes of its parts so far
    cdef Py_ssize_t depth = 1, py_depth = py_level, total, n, i
    cdef Py_ssize_t room = <const char*>&cap - s.stack_floor
    if depth > s.max_depth or depth * HASH_STACK_PER_LEVEL + py_depth * HASH_STACK_PER_PY_LEVEL > room:
        _fail_hash_depth(s, at)
    # Each container's parts are pushed in reverse after its _POST record, so they are done first;
    # parts that hash in O(1) (most) are counted at once instead.
    _push_parts(stack, totals, parts)
    while True:
        x = stack.pop()
        if x is _POST:
            # a container's parts are all done: its size is 1 + its parts'
            total = 1 + <Py_ssize_t>(totals.pop())
            py_level = stack.pop()
            parts = stack.pop()
            x = stack.pop()
            depth -= 1
            py_depth -= py_level
            if total > cap:
                total = cap
            if shared:
                _charge(s, HASH_MEMO_COST, at)     # the entry below, kept for the message
                sizes[id(x)] = (x, total)
            if depth == 0:
                return total
            n = <Py_ssize_t>(totals[PyList_GET_SIZE(totals) - 1]) + total
            totals[PyList_GET_SIZE(totals) - 1] = n if n < cap else cap
            continue
        total = -1
        if shared:
            got = sizes.get(id(x))
            if got is not None:
                total = (<tuple>got)[1]
        if total < 0:
            py_level = 0
            parts = _hash_parts(s, x, at, &py_level)
            if parts is None:
                total = _leaf_hash_cost(x)
            else:
                depth += 1
                py_depth += py_level
                if depth > s.max_depth or depth * HASH_STACK_PER_LEVEL + py_depth * HASH_STACK_PER_PY_LEVEL > room:
                    _fail_hash_depth(s, at)
                stack.append(x)
                stack.append(parts)
                stack.append(py_level)
                stack.append(_POST)
                totals.append(0)
                _push_parts(stack, totals, parts)
                continue
        n = <Py_ssize_t>(totals[PyList_GET_SIZE(totals) - 1]) + total
        totals[PyList_GET_SIZE(totals) - 1] = n if n < cap else cap
        if n >= cap:
            return cap                 # refused by the caller; no need to measure the rest


cdef int _push_parts(list stack, list totals, tuple parts) except -1:
    cdef Py_ssize_t i, simple = 0
    cdef PyObject* p
    for i in range(PyTuple_GET_SIZE(parts) - 1, -1, -1):
        p = PyTuple_GET_ITEM(parts, i)
        if _hashes_in_o1(<object>p):
            simple += 1
        else:
            stack.append(<object>p)
    if simple:
        totals[PyList_GET_SIZE(totals) - 1] = <Py_ssize_t>(totals[PyList_GET_SIZE(totals) - 1]) + simple
    return 0


cdef int _fail_hash_depth(DState* s, Py_ssize_t at) except -1:
    return _fail_hash(f"a set item or dictionary key nests deeper than hashing it can go (max_depth={s.max_depth}, "
                 f"or this thread's stack); a value that contains itself through immutable ones nests without end", at)
