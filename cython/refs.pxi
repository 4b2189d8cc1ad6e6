# The Python layer's records (docs/FORMAT.md): the glue to the extension handler
# (src/qwire/extensions.py), registered objects by stable name (src/qwire/registry.py), and
# reference tracking (refs=True).
#
# Writing: Encoder._fallback hands every value q cannot carry to _write_extension; with
# refs=True, Encoder._enc hands lists, dicts and arrays to _refs_enc. Reading:
# _decode_extension hands codes 0x20..0x2F to _decode_core_record.
#
# References. An object reached again is written as `70 21 <int atom: index>`. Indices count
# definitions in the order both sides complete a step of the same depth-first walk:
#   `70 22 <value>`            a list, dict, set, bytearray or registered dataclass: its index is
#                              taken when the record starts, before its contents, so that the
#                              contents can refer back to it (cycles);
#   `70 23 (<value>; <int>)`   a tuple, frozenset, array, NamedTuple or custom-registered object,
#                              built from its contents: its index is taken when it is complete
#                              (the int is 0Ni). A cycle through one (a tuple holding a list that
#                              holds the tuple) writes it again inside itself, as pickle does; the
#                              outer copy then ends with the inner one's index and is dropped.
# A cycle through no object of the first kind cannot be rebuilt without running code: EncodeError.

import mmap as _mmap_module

from qwire import extensions as _extensions
from qwire import registry as _registry
from qwire.errors import UnregisteredTypeError

from cpython.dict cimport PyDict_GetItemWithError
from cpython.ref cimport Py_DECREF, Py_REFCNT
from libc.string cimport memset
cimport cython

cdef enum:
    EXT_REGISTERED = 0x20
    EXT_REF = 0x21
    EXT_DEFINE = 0x22
    EXT_DEFINE_IMMUTABLE = 0x23

    KIND_FIELDS = 1           # registry.py's entry kinds
    KIND_NAMEDTUPLE = 2
    KIND_ENUM = 3
    KIND_CUSTOM = 4

    CODE_UNKNOWN = 0          # what a code byte means to the decoder and encoder
    CODE_LEAF = 1             # handler record whose payload holds built-in data only
    CODE_CONTAINER = 2        # handler record whose payload list holds the user's objects
    CODE_CORE = 3             # read here (0x20..0x2F)

cdef unsigned char[256] _CODE_CLASS
_CODE_CLASS[:] = [CODE_UNKNOWN] * 256
for _c in _extensions.HANDLED_CODES:
    _CODE_CLASS[_c] = CODE_CONTAINER if _c in _extensions.CONTAINER_CODES else CODE_LEAF
for _c in (EXT_REGISTERED, EXT_REF, EXT_DEFINE, EXT_DEFINE_IMMUTABLE):
    _CODE_CLASS[_c] = CODE_CORE
# Handler records whose value is built over its payload's already charged data (budget.pxi)
cdef bint[256] _PAYLOAD_BACKED
_PAYLOAD_BACKED[:] = [False] * 256
for _c in _extensions.PAYLOAD_BACKED_CODES:
    _PAYLOAD_BACKED[_c] = True

# Checked by tests/test_registry.py and tests/test_extensions.py against the Python side.
CORE_RECORD_CODES = {"REGISTERED": EXT_REGISTERED, "REF": EXT_REF, "DEFINE": EXT_DEFINE,
                     "DEFINE_IMMUTABLE": EXT_DEFINE_IMMUTABLE}
REGISTRY_KINDS = {"FIELDS": KIND_FIELDS, "NAMEDTUPLE": KIND_NAMEDTUPLE, "ENUM": KIND_ENUM, "CUSTOM": KIND_CUSTOM}

cdef int EXT_SET = _extensions.Code.SET
cdef int EXT_FROZENSET = _extensions.Code.FROZENSET
cdef int EXT_TUPLE = _extensions.Code.TUPLE
cdef int EXT_STR = _extensions.Code.STR
cdef int EXT_NDARRAY = _extensions.Code.NDARRAY
cdef int EXT_OBJECT_NDARRAY = _extensions.Code.OBJECT_NDARRAY
cdef int EXT_NUMPY_SCALAR = _extensions.Code.NUMPY_SCALAR


cdef Py_ssize_t _extension_cost(int code, object payload) except -1:
    """An upper bound of what src/qwire/extensions.py makes from this payload (budget.pxi),
    charged before it runs: a set's table from its item count, a tuple's or object array's slots,
    views for N-d arrays and NumPy scalars (never their data: it stays in the message or its
    out-of-band buffer), up to 4 bytes per UTF-8 byte for a str, and twice the payload's bytes for
    the rest (bytearray, int, Decimal, complex, datetime and time)."""
    cdef Py_ssize_t n = PyList_GET_SIZE(payload) if type(payload) is list else 0
    if code == EXT_SET or code == EXT_FROZENSET:
        return _set_cost(n)
    if code == EXT_TUPLE:
        return COST_TUPLE + COST_SLOT * n
    if code == EXT_STR:
        return COST_STR_COMPACT + 4 * _buffer_bytes(payload)
    if code == EXT_NDARRAY or code == EXT_NUMPY_SCALAR:
        return 3 * COST_ARRAY
    if code == EXT_OBJECT_NDARRAY:
        return 2 * COST_ARRAY + COST_SLOT * n
    return 4 * COST_ATOM + 2 * _buffer_bytes(payload)
cdef object _Extensions = _extensions.Extensions
cdef type _mmap_type = _mmap_module.mmap
cdef type _memmap_type = np.memmap
cdef type _ndarray_type = np.ndarray


def _default_extensions(registry=None, q_compatible=False, allow_on_disk=False, strict_fields=False):
    return _Extensions(registry, q_compatible=q_compatible, allow_on_disk=allow_on_disk, strict_fields=strict_fields)


# ---- a pointer -> index hash map (open addressing), for the encoder's memo -----------------------

cdef struct PtrSlot:
    void* key
    Py_ssize_t value


cdef struct PtrMap:
    PtrSlot* slots
    Py_ssize_t mask
    Py_ssize_t used
    bint heap                  # slots were allocated (not the owner's inline table)


cdef inline PtrSlot* _pm_slot(PtrMap* m, void* k) noexcept nogil:
    # Fibonacci hashing of the address (objects are 16-byte aligned), linear probing.
    cdef uint64_t h = (<uint64_t><size_t>k >> 4) * <uint64_t>0x9E3779B97F4A7C15
    cdef Py_ssize_t i = <Py_ssize_t>(h >> 40) & m.mask
    while m.slots[i].key != NULL and m.slots[i].key != k:
        i = (i + 1) & m.mask
    return &m.slots[i]


cdef inline Py_ssize_t _pm_get(PtrMap* m, void* k) noexcept nogil:
    if m.slots == NULL or m.used == 0:      # (the first object of a message: nothing to hash)
        return -1
    cdef PtrSlot* slot = _pm_slot(m, k)
    return slot.value if slot.key != NULL else -1


# One large cleared table kept between calls: large tables come from mmap, and faulting in fresh
# pages costs more than writing the message (the GIL guards these two globals).
cdef PtrSlot* _spare_slots = NULL
cdef Py_ssize_t _spare_cap = 0
cdef enum:
    SPARE_MIN = 1 << 13        # tables from 8192 slots (128 KiB) up are kept ...
    SPARE_MAX = 1 << 18        # ... up to 262144 slots (4 MiB)


cdef int _pm_grow(PtrMap* m) except -1:
    global _spare_slots, _spare_cap
    cdef Py_ssize_t old_cap = m.mask + 1 if m.slots != NULL else 0
    cdef Py_ssize_t cap = old_cap * 4 if old_cap else 64
    cdef PtrSlot* old = m.slots
    cdef PtrSlot* slots
    if _spare_slots != NULL and cap <= _spare_cap <= 4 * cap:
        slots = _spare_slots            # cleared when it was returned
        cap = _spare_cap
        _spare_slots = NULL
        _spare_cap = 0
    else:
        slots = <PtrSlot*>PyMem_Calloc(cap, sizeof(PtrSlot))
        if slots == NULL:
            raise MemoryError()
    m.slots = slots
    m.mask = cap - 1
    cdef Py_ssize_t i
    cdef PtrSlot* slot
    for i in range(old_cap):
        if old[i].key != NULL:
            slot = _pm_slot(m, old[i].key)
            slot[0] = old[i]
    if m.heap:
        _pm_release(old, old_cap)
    m.heap = True
    return 0


cdef void _pm_release(PtrSlot* slots, Py_ssize_t cap) noexcept:
    global _spare_slots, _spare_cap
    if SPARE_MIN <= cap <= SPARE_MAX and cap > _spare_cap:
        memset(slots, 0, cap * sizeof(PtrSlot))
        PyMem_Free(_spare_slots)
        _spare_slots = slots
        _spare_cap = cap
    else:
        PyMem_Free(slots)


cdef inline int _pm_set(PtrMap* m, void* k, Py_ssize_t v) except -1:
    if m.slots == NULL or (m.used + 1) * 2 > m.mask + 1:
        _pm_grow(m)
    cdef PtrSlot* slot = _pm_slot(m, k)
    if slot.key == NULL:
        slot.key = k
        m.used += 1
    slot.value = v
    return 0


cdef void _pm_release_keys(PtrMap* m) noexcept:
    """Drop the references a map of owned keys holds (the memo's): the slots keep their keys."""
    cdef Py_ssize_t i
    if m.slots == NULL or m.used == 0:
        return
    for i in range(m.mask + 1):
        if m.slots[i].key != NULL:
            Py_XDECREF(<PyObject*>m.slots[i].key)


cdef void _pm_free(PtrMap* m) noexcept:
    if m.heap:
        _pm_release(m.slots, m.mask + 1)
    m.slots = NULL
    m.heap = False


# ---- registered classes: the core's compiled snapshot of a registry ------------------------------

cdef extern from "Python.h":
    object PyObject_GenericGetDict(object o, void* context)
    int PyObject_GenericSetDict(object o, object value, void* context) except -1

cdef object _object_new = object.__new__
cdef object _tuple_new = tuple.__new__


cdef class _CEntry:
    """A registry.Entry as the core uses it: its record's bytes precomputed."""
    cdef readonly object entry
    cdef object cls
    cdef int kind
    cdef bytes header          # 70 20 (list head) name [63 keys (values list head)]: up to the first value
    cdef Py_ssize_t name_end   # header[2:name_end] is what the decoder compares to find the same class again
    cdef tuple fields
    cdef bint has_dict
    cdef bint plain_new        # the class keeps object.__new__


cdef _CEntry _compile_entry(object e):
    cdef _CEntry c = _CEntry.__new__(_CEntry)
    c.entry = e
    c.cls = e.cls
    c.kind = e.kind
    c.fields = e.fields
    c.has_dict = e.has_dict
    c.plain_new = e.cls.__new__ is object.__new__
    head = b"\x70\x20\x00\x00\x02\x00\x00\x00" + e.sym
    c.name_end = len(head)
    if c.kind == KIND_FIELDS or c.kind == KIND_NAMEDTUPLE:
        head += b"\x63" + e.keys + b"\x00\x00" + len(c.fields).to_bytes(4, "little")
    c.header = head
    return c


cdef tuple _compiled(object registry):
    """(source table, type -> _CEntry, name -> _CEntry) for the registry's current tables,
    rebuilt when a registration has replaced them (registries are copy-on-write)."""
    src = registry._by_type
    cache = registry._core_cache
    if cache is not None and (<tuple>cache)[0] is src:
        return <tuple>cache
    by_type = {}
    by_name = {}
    for t, e in src.items():
        c = _compile_entry(e)
        by_type[t] = c
        by_name[e.name] = c
    cache = (src, by_type, by_name)
    registry._core_cache = cache
    return cache


# ---- writing -------------------------------------------------------------------------------------

@cython.freelist(4)
cdef class _EncState:
    """One encode call's state for extension records (created when the first one is written, or
    up front with refs=True)."""
    cdef PtrMap memo             # tracked object -> index (its keys are held in `held`)
    cdef PyObject** held         # index -> tracked object, a reference each: no address in the memo
                                 # can be reused by another object during the call
    cdef Py_ssize_t held_cap
    cdef PyObject* held_small[16]
    cdef PtrMap active           # objects of the second kind being written -> memo.used when entered
    cdef PtrSlot[16] small       # the memo's first table (most messages track few objects)
    cdef int ext_depth           # depth of the innermost extension payload being written
    cdef int suspend             # > 0 inside a payload of built-in data only: nothing to track
    cdef void* untracked         # a handler's payload list: written as part of its record
    cdef void* wrapping          # an array _refs_enc already records (its fallback must not again)
    cdef dict by_type            # the registry's table, from when it was first needed
    cdef object ext
    cdef list keep               # values made while writing (encode functions, copies): kept alive
                                 # until the message is written

    def __dealloc__(self):
        _held_release(self, self.memo.used)
        self.memo.used = 0
        _pm_free(&self.memo)
        _pm_free(&self.active)


# One emptied state kept between calls: making and freeing one (a GC-tracked object) was most of
# what refs=True added to a small message. Taking it sets the global to None, so a nested or
# concurrent encode (another thread while this one runs Python code) makes its own; the GIL
# guards the global, and nothing between a check and an assignment runs Python code.
cdef _EncState _enc_spare = None


cdef _EncState _enc_state(WState* w, Encoder enc):
    global _enc_spare
    cdef _EncState xs
    if w.xs != NULL:
        return <_EncState>w.xs
    xs = _enc_spare
    if xs is not None:
        _enc_spare = None
    else:
        xs = _EncState.__new__(_EncState)      # zeroed memory, small table included
        xs.memo.slots = xs.small
        xs.memo.mask = 15
        xs.held = xs.held_small
        xs.held_cap = 16
    xs.ext = enc._ext
    Py_INCREF(xs)
    w.xs = <PyObject*>xs
    return xs


cdef void _enc_state_done(WState* w, bint ok) noexcept:
    """The end of an encode call (Encoder._encode's finally): w.xs released; after a message
    written in full, emptied and kept for the next call. After a failure it is dropped, whatever
    the failure left in it (a half-written cycle in `active`, a raised suspend count)."""
    global _enc_spare
    if w.xs == NULL:
        return
    cdef _EncState xs = <_EncState>w.xs
    Py_DECREF(xs)                  # w.xs's reference (xs holds its own)
    w.xs = NULL
    if not ok or _enc_spare is not None:
        return
    cdef int i
    if xs.memo.used:
        # May free values (temporaries the memo kept alive) and run their __del__: xs is not
        # reachable from anywhere yet, so a nested encode makes its own state.
        _held_release(xs, xs.memo.used)
        _pm_free(&xs.memo)         # a table grown past the small one goes back to the heap
        for i in range(16):        # keys only: a slot's value is read only where its key is set
            xs.small[i].key = NULL
        xs.memo.slots = xs.small
        xs.memo.mask = 15
        xs.memo.used = 0
    if xs.active.slots != NULL:
        _pm_free(&xs.active)
        xs.active.mask = 0
        xs.active.used = 0
    xs.ext_depth = 0
    xs.suspend = 0
    xs.untracked = NULL
    xs.wrapping = NULL
    if xs.by_type is not None:
        xs.by_type = None          # the registry may change before the next call
    xs.ext = None
    if xs.keep is not None:
        xs.keep = None             # may free values, run their __del__: before xs is shared again
    if _enc_spare is None:
        _enc_spare = xs


cdef inline dict _by_type(_EncState xs):
    if xs.by_type is None:
        xs.by_type = _compiled(xs.ext.registry)[1]
    return xs.by_type


cdef inline object _registered_entry(WState* w, type t):
    """t's compiled entry when t is registered, as far as this message has looked at the registry
    (Encoder._enc asks before its own checks of the other types, once the first registered object
    was seen); else None."""
    cdef _EncState xs = <_EncState>w.xs
    if xs.by_type is None:
        return None
    cdef PyObject* entry = PyDict_GetItemWithError(xs.by_type, t)   # (Cython raises on an error)
    return None if entry == NULL else <object>entry


cdef inline int _w_ref(WState* w, Py_ssize_t index) except -1:
    _reserve(w, 7)
    _put1(w, QT_EXTENSION)
    _put1(w, EXT_REF)
    _put1(w, <uint8_t>(-QT_INT))
    _put4(w, <uint32_t><int32_t>index)
    return 0


cdef inline int _memo_add(_EncState xs, object obj) except -1:
    """Track obj under the next index, holding a reference to it: a temporary the encoder makes
    and frees mid-message (the list a Vector of a generator becomes, an encode function's value)
    must not leave its address to a later object, which would be written as a reference to it."""
    if xs.memo.used >= 0x7FFFFFFE:
        raise EncodeError("refs=True: more than 2**31 - 2 objects to track in one message")
    cdef Py_ssize_t index = xs.memo.used
    if index >= xs.held_cap:
        _held_grow(xs)
    _pm_set(&xs.memo, <void*>obj, index)
    Py_INCREF(obj)
    xs.held[index] = <PyObject*>obj
    return 0


cdef int _held_grow(_EncState xs) except -1:
    cdef Py_ssize_t cap = xs.held_cap * 4
    cdef PyObject** p
    if xs.held == xs.held_small:
        p = <PyObject**>PyMem_Malloc(cap * sizeof(PyObject*))
        if p != NULL:
            memcpy(p, xs.held, xs.held_cap * sizeof(PyObject*))
    else:
        p = <PyObject**>PyMem_Realloc(xs.held, cap * sizeof(PyObject*))
    if p == NULL:
        raise MemoryError()
    xs.held = p
    xs.held_cap = cap
    return 0


cdef void _held_release(_EncState xs, Py_ssize_t n) noexcept:
    """Drop the memo's references (may free temporaries and run their __del__: xs is reachable
    from nowhere by then, so a nested encode makes its own state)."""
    cdef Py_ssize_t i
    cdef PyObject** held = xs.held
    if held == NULL:
        return
    xs.held = xs.held_small
    xs.held_cap = 16
    for i in range(n):
        Py_XDECREF(held[i])
    if held != xs.held_small:
        PyMem_Free(held)


cdef inline object _kept(_EncState xs, object value):
    """value, kept alive until the message is written (a value made while writing)."""
    if xs.keep is None:
        xs.keep = []
    xs.keep.append(value)
    return value


cdef int _track_kind(_EncState xs, object obj, type t):
    """0 not tracked; 1 defined before its contents (`70 22`); 2 after them (`70 23`)."""
    if t is tuple or t is frozenset:
        return 2
    if t is set or t is bytearray:
        return 1
    if t is _ndarray_type:
        return 2
    entry = _by_type(xs).get(t)
    if entry is None:
        return 0
    cdef int kind = (<_CEntry>entry).kind
    if kind == KIND_FIELDS:
        return 1
    return 0 if kind == KIND_ENUM else 2


cdef int _write_extension(Encoder enc, WState* w, object obj, int depth, str reason) except -1:
    """An object q cannot carry (Encoder._fallback): a reference, a registered object, or the
    handler's record; the handler's refusal when there is none."""
    cdef _EncState xs = _enc_state(w, enc)
    cdef type t = type(obj)
    cdef Py_ssize_t index
    cdef int kind
    if depth < xs.ext_depth:
        depth = xs.ext_depth      # array paths call the fallback without their depth
    if xs.wrapping == <void*>obj:
        xs.wrapping = NULL
        return _ext_body(enc, w, xs, obj, t, depth, reason)
    if w.refs and xs.suspend == 0:
        kind = _track_kind(xs, obj, t)
        if kind:
            index = _pm_get(&xs.memo, <void*>obj)
            if index >= 0:
                return _w_ref(w, index)
            if kind == 1:
                _memo_add(xs, obj)
                _reserve(w, 2)
                _put1(w, QT_EXTENSION)
                _put1(w, EXT_DEFINE)
                return _ext_body(enc, w, xs, obj, t, depth, reason)
            return _w_define_later(enc, w, xs, obj, t, depth, reason, False)
    return _ext_body(enc, w, xs, obj, t, depth, reason)


cdef int _ext_body(Encoder enc, WState* w, _EncState xs, object obj, type t, int depth, str reason) except -1:
    if not enc.q_compatible:
        entry = _by_type(xs).get(t)
        if entry is not None:
            return _w_registered(enc, w, xs, <_CEntry>entry, obj, depth)
        try:
            record = xs.ext.encode(obj)
        except (QWireError, MemoryError):
            raise
        except Exception as e:              # a tzinfo's utcoffset, a Decimal's str, ... run code
            raise _hook_error(obj, "converting it to an extension record", e) from e
        if record is not None:
            code, payload = record
            if code is None:                      # on-disk data, copied in (allow_on_disk=True)
                return enc._enc(w, _kept(xs, payload), depth)
            return _w_record(enc, w, xs, obj, <int>code, payload, depth)
    try:
        xs.ext.refuse(obj, reason)
        raise EncodeError(reason or f"Unable to serialize {_qualname(t)} objects", t)
    except EncodeError as e:
        if getattr(e, "_culprit", None) is None:
            e._culprit = obj              # Encoder._encode names where it is
        raise


cdef int _w_record(Encoder enc, WState* w, _EncState xs, object obj, int code, object payload, int depth) except -1:
    if not 0 < code < 0x20 or _CODE_CLASS[code] == CODE_UNKNOWN:
        raise EncodeError(f"the extension handler returned code {code}, which is not one of its codes", type(obj))
    enc._enter(w, obj, depth)
    cdef Py_ssize_t start = w.len + w.ext_total
    _reserve(w, 2)
    _put1(w, QT_EXTENSION)
    _put1(w, <uint8_t>code)
    cdef int saved = xs.ext_depth
    xs.ext_depth = depth + 1
    if _CODE_CLASS[code] == CODE_LEAF:
        xs.suspend += 1
        enc._enc(w, payload, depth + 1)
        xs.suspend -= 1
    else:
        xs.untracked = <void*>payload
        enc._enc(w, payload, depth + 1)
        xs.untracked = NULL
    xs.ext_depth = saved
    return _shared_leave(w, obj, start)


cdef int _w_registered(Encoder enc, WState* w, _EncState xs, _CEntry c, object obj, int depth) except -1:
    """70 20 (name; state): a dataclass's or NamedTuple's fields as a symbol-keyed dictionary
    (written straight from the object), an enum member's name, a custom encode's value."""
    enc._enter(w, obj, depth)
    cdef Py_ssize_t start = w.len + w.ext_total
    _w_registered_body(enc, w, xs, c, obj, depth)
    return _shared_leave(w, obj, start)


cdef int _w_registered_body(Encoder enc, WState* w, _EncState xs, _CEntry c, object obj, int depth) except -1:
    cdef Py_ssize_t n = PyBytes_GET_SIZE(c.header)
    _reserve(w, n)
    memcpy(w.buf + w.len, PyBytes_AS_STRING(c.header), n)
    w.len += n
    cdef int kind = c.kind
    if kind != KIND_FIELDS and kind != KIND_NAMEDTUPLE:
        try:
            state = c.entry.state(obj)
        except (QWireError, MemoryError):
            raise
        except Exception as e:
            raise _hook_error(obj, f"the encode function registered for {c.entry.name!r}", e) from e
        return enc._enc(w, _kept(xs, state), depth + 1)
    cdef tuple fields = c.fields
    cdef Py_ssize_t nf = len(fields)
    cdef Py_ssize_t i
    cdef PyObject* v
    if kind == KIND_NAMEDTUPLE:
        if len(<tuple>obj) != nf:
            raise EncodeError(f"a {c.entry.name!r} has {len(<tuple>obj)} items but {nf} fields", type(obj))
        for i in range(nf):
            enc._enc(w, (<tuple>obj)[i], depth + 3)
        return 0
    cdef Py_ssize_t pos = 0
    cdef PyObject* k
    if c.has_dict:
        d = PyObject_GenericGetDict(obj, NULL)
        # The usual instance dict holds the fields in field order (the dataclass __init__ set them
        # so, under the same interned names): walk it while that holds, then look the rest up.
        i = 0
        while i < nf and PyDict_Next(d, &pos, &k, &v):
            if k != <PyObject*>fields[i]:
                break
            enc._enc(w, <object>v, depth + 3)
            i += 1
        for i in range(i, nf):
            v = PyDict_GetItemWithError(d, fields[i])      # no error save/restore per field
            if v != NULL:
                enc._enc(w, <object>v, depth + 3)
            else:
                _enc_attr(enc, w, xs, obj, fields[i], depth + 3)
        return 0
    for i in range(nf):
        _enc_attr(enc, w, xs, obj, fields[i], depth + 3)
    return 0


cdef int _enc_attr(Encoder enc, WState* w, _EncState xs, object obj, str name, int depth) except -1:
    try:
        value = getattr(obj, name)
    except (QWireError, MemoryError):
        raise
    except Exception as e:                # a property, __getattr__: the class's code
        raise _hook_error(obj, f"reading its field {name!r}", e) from e
    if Py_REFCNT(value) == 1:       # made by a property just now, not stored in obj
        _kept(xs, value)
    return enc._enc(w, value, depth)


cdef int _w_define_later(Encoder enc, WState* w, _EncState xs, object obj, type t, int depth, str reason,
                         bint array) except -1:
    """70 23 (value; index): an object built from its contents, so defined once they are written."""
    cdef Py_ssize_t entered = _pm_get(&xs.active, <void*>obj)
    if entered >= 0 and entered == xs.memo.used:
        # Reached inside itself again with nothing defined in between: the cycle holds only
        # objects that are built from their contents, which no decoder can rebuild.
        err = EncodeError(f"a cycle through {type(obj).__name__} and other objects built from their contents only "
                          "(tuples, frozensets, arrays, NamedTuples, classes registered with encode/decode) cannot be "
                          "rebuilt: put a list, dict, set or registered dataclass on the cycle", t)
        err._cycle = obj
        err._cycle_refs = True
        raise err
    _pm_set(&xs.active, <void*>obj, xs.memo.used)
    _reserve(w, 8)
    _put1(w, QT_EXTENSION)
    _put1(w, EXT_DEFINE_IMMUTABLE)
    _put1(w, QT_LIST)
    _put1(w, 0)
    _put4(w, 2)
    if array:
        xs.wrapping = <void*>obj
        enc._enc_array(w, <cnp.ndarray>obj, 0)
        xs.wrapping = NULL
    else:
        _ext_body(enc, w, xs, obj, t, depth + 1, reason)
    _pm_set(&xs.active, <void*>obj, entered)
    cdef Py_ssize_t index = _pm_get(&xs.memo, <void*>obj)
    _reserve(w, 5)
    _put1(w, <uint8_t>(-QT_INT))
    if index >= 0:
        _put4(w, <uint32_t><int32_t>index)     # a copy of the definition written inside it
    else:
        _memo_add(xs, obj)
        _put4(w, <uint32_t>NULL_INT)
    return 0


cdef int _refs_enc(Encoder enc, WState* w, object obj, type t, int depth) except -1:
    """refs=True for a list, dict or array: a reference when seen before, else a definition."""
    cdef _EncState xs = <_EncState>w.xs
    cdef Py_ssize_t index
    if xs.suspend or xs.untracked == <void*>obj:
        xs.untracked = NULL
    else:
        index = _pm_get(&xs.memo, <void*>obj)
        if index >= 0:
            return _w_ref(w, index)
        if t is _ndarray_type:
            return _w_define_later(enc, w, xs, obj, t, depth, None, True)
        _memo_add(xs, obj)
        _reserve(w, 2)
        _put1(w, QT_EXTENSION)
        _put1(w, EXT_DEFINE)
    if t is dict:
        return enc._enc_dict(w, <dict>obj, depth)
    if t is list:
        return enc._enc_list(w, <list>obj, 0, depth)
    return enc._enc_array(w, <cnp.ndarray>obj, 0)


cdef int _check_in_memory(object arr) except -1:
    """OnDiskObjectError for an array whose data is a memory map (its bases reach an mmap)."""
    cdef object o = arr
    cdef PyObject* b
    cdef type t
    for _ in range(64):
        if o is None:
            return 0
        t = type(o)
        if t is _ndarray_type or isinstance(o, _ndarray_type):
            if t is _memmap_type or isinstance(o, _memmap_type):
                raise _extensions.on_disk_error(arr)
            b = cnp.PyArray_BASE(<cnp.ndarray>o)
            if b == NULL:
                return 0
            o = <object>b
        elif t is memoryview:
            o = PyMemoryView_GET_BUFFER(o).obj
        elif t is _mmap_type or isinstance(o, _mmap_type):
            raise _extensions.on_disk_error(arr)
        else:
            return 0
    return 0


cdef bint _is_cycle_error(object err):
    """An EncodeError that a cycle may have caused: the core's depth and cycle errors, and the
    refs=True cycle that cannot be rebuilt."""
    if getattr(err, "_cycle", None) is not None:
        return True
    text = err.args[0] if err.args and type(err.args[0]) is str else ""
    return text.startswith("circular reference at depth") or text.startswith("nesting ")


cdef object _locate_cycle(object root, object err):
    """The EncodeError for a cycle, saying where it is (searched for from the root once the
    error has happened: nothing is spent on it while writing)."""
    target = getattr(err, "_cycle", None)
    try:
        if target is not None:
            first, again = _extensions.cycle_path(root, target)
        else:
            first, again, target = _extensions.find_cycle(root)
    except Exception:  # noqa: a broken container must not hide the error
        first = again = None
    if getattr(err, "_cycle_refs", False):
        where = f" at {first}" if first else ""
        new = EncodeError(f"circular reference{where}: {err.args[0]}", err.obj_type)
    elif again is None:
        text = getattr(err, "_not_a_cycle", None)
        if text is not None:             # the path held a reused address, not this container
            return EncodeError(text, err.obj_type)
        return err                       # deep, but not circular: the depth error stands
    else:
        new = EncodeError(f"circular reference at {first}: this {type(target).__name__} is reached again inside itself, "
                          f"at {again} (q values are trees; pass refs=True to keep shared and circular references)",
                          type(target))
    new._cycle = target
    return new


# ---- errors raised while writing: qwire's, naming where ------------------------------------------

cdef str _exc_text(object exc):
    try:
        text = str(exc)
    except Exception:  # noqa: an exception whose str raises
        text = f"<unprintable {type(exc).__name__}>"
    return text if len(text) <= 200 else text[:197] + "..."


cdef object _hook_error(object obj, str what, object exc):
    """The EncodeError for code that raised while obj was being written (the caller's hooks and
    properties, CPython's and NumPy's conversions); Encoder._encode adds where obj is."""
    err = EncodeError(f"{what} raised {type(exc).__name__} ({_exc_text(exc)}) while writing {_short(obj)} "
                      f"({_qualname(type(obj))})", type(obj))
    err._culprit = obj
    return err


cdef object _unexpected_error(object root, object exc, Py_ssize_t written):
    return EncodeError(f"writing a {_qualname(type(root))} raised {type(exc).__name__} ({_exc_text(exc)}) "
                       f"after {written} bytes of the message", type(root))


cdef int _name_position(object root, object err) except -1:
    """Add where the offending object sits in root to an EncodeError that knows it: "(at obj[2].x)".
    Searched for once the error has happened (bounded), so nothing is spent while writing."""
    culprit = getattr(err, "_culprit", None)
    if culprit is None or getattr(err, "path", None) is not None:
        return 0
    try:
        path = _extensions.locate(root, culprit)
    except Exception:  # noqa: a broken container must not hide the error
        path = None
    if path is None or path == "obj":
        return 0
    err.path = path
    if err.args and type(err.args[0]) is str:
        err.args = (f"{err.args[0]} (at {path})",) + tuple(err.args[1:])
    return 0


# ---- copies of shared structure (refs=False) ------------------------------------------------------
# Without refs a container reached twice is written twice, so a few hundred bytes of objects that
# each hold the previous one twice make an exponentially long message. Containers whose bytes
# reach SHARED_SPAN_MIN are remembered (held, so their addresses stay theirs); entering one again
# counts its bytes as copies, which may be at most max_shared_expansion times the bytes of
# distinct content plus SHARED_COPY_ALLOWANCE. A copy's inner containers are not counted again.

cdef int _shared_note(WState* w, object obj, Py_ssize_t span) except -1:
    cdef PtrMap* m = <PtrMap*>w.shared
    if m == NULL:
        m = <PtrMap*>PyMem_Calloc(1, sizeof(PtrMap))
        if m == NULL:
            raise MemoryError()
        w.shared = <void*>m
        w.repeated = 0
        w.repeat_until = 0
    if _pm_get(m, <void*>obj) >= 0:
        return 0
    _pm_set(m, <void*>obj, span)
    Py_INCREF(obj)
    return 0


cdef int _shared_seen(WState* w, object obj) except -1:
    cdef Py_ssize_t at = w.len + w.ext_total
    if at < w.repeat_until:
        return 0                         # inside a copy already counted
    cdef Py_ssize_t span = _pm_get(<PtrMap*>w.shared, <void*>obj)
    if span < 0:
        return 0
    cdef Py_ssize_t distinct = at - w.repeated
    w.repeated += span
    w.repeat_until = at + span
    if w.repeated > SHARED_COPY_ALLOWANCE + w.shared_ratio * distinct:
        err = EncodeError(
            f"shared structure: this {_qualname(type(obj))} of {span} bytes is written again; copies of containers "
            f"reached more than once would take {w.repeated} bytes, more than max_shared_expansion={w.shared_ratio} "
            f"times the {distinct} bytes of distinct content plus {SHARED_COPY_ALLOWANCE} (refs=True sends each "
            "shared object once; Encoder(max_shared_expansion=None) lifts the limit)", type(obj))
        err._culprit = obj
        raise err
    return 0


cdef inline int _shared_leave(WState* w, object obj, Py_ssize_t start) except -1:
    """A container written from start to here: remembered when large (see above)."""
    if w.len + w.ext_total - start >= SHARED_SPAN_MIN and w.shared_ratio != 0:
        return _shared_note(w, obj, w.len + w.ext_total - start)
    return 0


cdef void _shared_done(WState* w) noexcept:
    cdef PtrMap* m = <PtrMap*>w.shared
    if m == NULL:
        return
    w.shared = NULL
    _pm_release_keys(m)
    _pm_free(m)
    PyMem_Free(m)
