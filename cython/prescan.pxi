# Rejecting nesting past max_depth cheaply.
#
# The decoder recurses, and an error raised N levels down gets a traceback entry (a frame object)
# per Cython function it leaves: about three per nesting level, so refusing 300 nested lists cost
# ~180 us, 15-20x the per-byte time of benign data. When the decoder enters an item at depth
# PRESCAN_DEPTH, _prescan walks that item iteratively; if the decoder would fail with "nesting
# deeper than max_depth" there (and with no other error before it), the same DecodeError (same
# offset and type) is raised at once, PRESCAN_DEPTH levels down instead of max_depth.
#
# The walk only vouches for what it mirrors exactly: atoms, vectors, general lists, primitives,
# projections and compositions, derived functions, records with distinct keys (none of which the
# decoder checks after its items), and dicts, tables and the Python handler's extension records on
# the way to the too-deep item (their checks after their items never run when an item inside
# fails; one that completes before it ends the walk). Anything else (lambdas, the core's own
# extension records: references and registered objects, a message in segments) or anything the
# decoder would refuse for another reason ends the walk with no verdict, and the decoder
# proceeds as before and reports what it finds. Each byte below PRESCAN_DEPTH is walked at
# most once (the decoder enters PRESCAN_DEPTH once per subtree), so benign data that deep pays a
# scan without allocations on top of its decoding.

cdef enum:
    PRESCAN_DEPTH = 16
    LOCAL_LEVELS = 64
    STACK_MARGIN = 4       # the walk's verdict is used only with 4x the stack the rest would take


cdef int _prescan(DState* s, Py_ssize_t start, int depth) except -1:
    cdef Py_ssize_t levels = s.max_depth - depth
    if levels <= 0 or s.nsegs != 0:
        return 0
    # The decoder checks the thread's stack floor as it goes deeper; if it could reach the floor
    # before max_depth, its error would be that one: no verdict then. The use per level so far is
    # the measure (the walked shapes' frames are no bigger than the ones above them).
    cdef const char* here = <const char*>&levels
    cdef Py_ssize_t used = s.stack_top - here
    if used <= 0 or (here - s.stack_floor) < STACK_MARGIN * (used // depth + 1) * levels:
        return 0
    cdef Py_ssize_t at = _too_deep_at(s, start, depth)
    if at >= 0:
        _fail(f"nesting deeper than max_depth={s.max_depth}", at, <int8_t>s.buf[at])
    return 0


cdef Py_ssize_t _too_deep_at(DState* s, Py_ssize_t pos, int depth) noexcept:
    """The offset of the item where the decoder, starting at `pos` at `depth`, would refuse nesting
    past max_depth, or -1: no such item, or one of the shapes this walk does not vouch for first."""
    cdef Py_ssize_t cap = s.max_depth - depth + 2
    # items left to walk in each open container (the item at pos is the one item of level 0), and
    # whether the container checks its items once they are all decoded (then its completion ends
    # the walk: this walk does not repeat those checks)
    # the entries of the first LOCAL_LEVELS levels, on the C stack: most walks end above them and
    # a heap block per walk (dozens per message at this depth) cost more than the walk itself
    cdef Py_ssize_t local_left[LOCAL_LEVELS]
    cdef Py_ssize_t local_checks[LOCAL_LEVELS]
    cdef Py_ssize_t* left = local_left
    cdef Py_ssize_t* checks_after = local_checks
    cdef Py_ssize_t* heap = NULL
    cdef const unsigned char* b = s.buf
    cdef Py_ssize_t end = s.end
    cdef Py_ssize_t level = 0
    cdef Py_ssize_t result = -1
    cdef Py_ssize_t n, width, i
    cdef uint32_t u32
    cdef uint64_t u64
    cdef int t, attr_byte
    cdef const void* z
    left[0] = 1
    checks_after[0] = 0
    while True:
        if level >= LOCAL_LEVELS - 1 and heap == NULL:
            # the next container would not fit: all levels on the heap from here
            heap = <Py_ssize_t*>PyMem_Malloc(2 * cap * sizeof(Py_ssize_t))
            if heap == NULL:
                break
            memcpy(heap, local_left, LOCAL_LEVELS * sizeof(Py_ssize_t))
            memcpy(heap + cap, local_checks, LOCAL_LEVELS * sizeof(Py_ssize_t))
            left = heap
            checks_after = heap + cap
        # one item at pos, at depth + level
        if pos >= end:
            break
        t = <int8_t>b[pos]
        if t < 0:
            if t < -19 or t == -3:
                break
            pos += 1
            if t == -QT_SYMBOL:
                z = memchr(b + pos, 0, end - pos)
                if z == NULL:
                    break
                pos = (<const unsigned char*>z - b) + 1
            else:
                width = ELEMENT_WIDTH[-t]
                if end - pos < width or (t == -QT_BOOLEAN and b[pos] > 1):
                    break
                pos += width
        elif t == 3:
            break
        elif depth + level >= s.max_depth:
            result = pos            # the decoder checks depth before anything else of the item
            break
        elif t <= 19:
            if end - pos < 2:
                break
            attr_byte = b[pos + 1]
            if (attr_byte & 0x7F) > MAX_ATTRIBUTE:
                break
            pos += 2
            if attr_byte & ATTR_LONG_COUNT:
                if end - pos < 8:
                    break
                memcpy(&u64, b + pos, 8)
                pos += 8
                if s.swap:
                    u64 = qw_bswap64(u64)
            else:
                if end - pos < 4:
                    break
                memcpy(&u32, b + pos, 4)
                pos += 4
                u64 = qw_bswap32(u32) if s.swap else u32
            if u64 > <uint64_t>(end - pos):
                break
            n = <Py_ssize_t>u64
            if t == QT_LIST:
                if n > (end - pos) // 2:
                    break
                if n > 0:
                    level += 1
                    left[level] = n
                    checks_after[level] = 0
                    continue        # the list's first item, one level down
            elif t == QT_SYMBOL:
                i = 0
                while i < n:
                    z = memchr(b + pos, 0, end - pos)
                    if z == NULL:
                        break
                    pos = (<const unsigned char*>z - b) + 1
                    i += 1
                if i < n:
                    break
            else:
                width = 1 if t == QT_CHAR else ELEMENT_WIDTH[t]
                if n > (end - pos) // width:
                    break
                if t == QT_BOOLEAN:
                    i = 0
                    while i < n and b[pos + i] <= 1:
                        i += 1
                    if i < n:
                        break
                pos += n * width
        elif QT_UNARY_PRIMITIVE <= t <= QT_ITERATOR:
            if end - pos < 2:
                break
            pos += 2
        elif t == QT_PROJECTION or t == QT_COMPOSITION:
            if end - pos < 5:
                break
            memcpy(&u32, b + pos + 1, 4)
            pos += 5
            n = qw_bswap32(u32) if s.swap else u32
            if n == 0 or n > (end - pos) // 2:
                break
            level += 1
            left[level] = n
            checks_after[level] = 0
            continue
        elif QT_EACH <= t <= QT_EACH_LEFT:
            pos += 1
            level += 1
            left[level] = 1
            checks_after[level] = 0
            continue
        elif t == QT_DICT and end - pos >= 7 and b[pos + 1] == QT_SYMBOL and b[pos + 2] == 0:
            # a dict with plain symbol keys: the decoder's record path (_decode_record)
            pos = _record_values_at(b, pos, end, s.swap, &n)
            if pos < 0:
                break               # a shape or fault this walk leaves to the decoder
            level += 1
            if n >= 0:
                if n == 0:
                    level -= 1      # no values: the record is complete
                else:
                    left[level] = n             # the values, one by one, one level down
                    checks_after[level] = 0
                    continue
            else:
                left[level] = 1                 # the values as one item, checked after
                checks_after[level] = 1
                continue
        elif t == QT_EXTENSION:
            # an extension record for the Python handler: its payload, one level down, then the
            # handler's checks; the core's own records (references, registered objects, out-of-band
            # buffers) and unknown codes are left to the decoder
            if s.ext == NULL or end - pos < 2 or not (_CODE_CLASS[b[pos + 1]] == CODE_LEAF
                                                       or _CODE_CLASS[b[pos + 1]] == CODE_CONTAINER):
                break
            pos += 2
            level += 1
            left[level] = 1
            checks_after[level] = 1
            continue
        elif t == QT_DICT or t == QT_SORTED_DICT:
            # keys then values, one level down
            pos += 1
            level += 1
            left[level] = 2
            checks_after[level] = 1
            continue
        elif t == QT_TABLE:
            # 98, attribute, 99, then column names, checked as soon as they are decoded (a symbol
            # vector without attribute passes), and columns. Other names are walked (the too-deep
            # item may be inside them) but end the walk once complete, their check failing first.
            if end - pos < 5 or b[pos + 1] > MAX_ATTRIBUTE or b[pos + 2] != QT_DICT:
                break
            level += 1
            left[level] = 2 if b[pos + 3] == QT_SYMBOL and b[pos + 4] == 0 else 1
            checks_after[level] = 1
            pos += 3
            continue
        else:
            break
        # the item is complete: close every container it completes
        left[level] -= 1
        while level > 0 and left[level] == 0:
            if checks_after[level]:
                level = -1          # a dict or table completes: its checks are the decoder's
                break
            level -= 1
            left[level] -= 1
        if level <= 0:
            break                   # the walked item is complete (nothing too deep), or no verdict
    PyMem_Free(heap)
    return result


cdef enum:
    RECORD_WALK_KEYS = 32   # records with more keys are left to the decoder (the check below is pairwise)


cdef Py_ssize_t _record_values_at(const unsigned char* b, Py_ssize_t pos, Py_ssize_t end, bint swap,
                                  Py_ssize_t* n_values) noexcept:
    """The record at pos (99, then a symbol vector without attribute), walked as _decode_record
    reads it: the keys without depth checks; then, when they are distinct and a plain general list
    of as many values follows, the values one by one at the next depth (*n_values = their count,
    and the result is where the first starts), or else the values as one item at the next depth,
    checked after (*n_values = -1, the result is where that item starts). -1: a fault, repeated
    keys or more than RECORD_WALK_KEYS of them, which the walk does not vouch for."""
    cdef uint32_t u32
    cdef Py_ssize_t n, i, j, u
    cdef const void* z
    cdef Py_ssize_t key_at[RECORD_WALK_KEYS]
    cdef Py_ssize_t key_len[RECORD_WALK_KEYS]
    memcpy(&u32, b + pos + 3, 4)
    n = qw_bswap32(u32) if swap else u32
    pos += 7
    if n > RECORD_WALK_KEYS or n > end - pos:
        return -1
    for i in range(n):
        z = memchr(b + pos, 0, end - pos)
        if z == NULL:
            return -1
        key_at[i] = pos
        key_len[i] = (<const unsigned char*>z - b) - pos
        pos += key_len[i] + 1
        for j in range(i):
            if key_len[j] == key_len[i] and memcmp(b + key_at[j], b + key_at[i], key_len[i]) == 0:
                return -1   # repeated keys: the decoder's paths depend on what it saw before
    if end - pos >= 6 and b[pos] == QT_LIST and b[pos + 1] == 0:
        memcpy(&u32, b + pos + 2, 4)
        u = qw_bswap32(u32) if swap else u32
        if u > end - pos - 6:
            return -1       # a count lie: the decoder's error, not a depth one
        if u == n and n <= (end - pos - 6) // 2:
            n_values[0] = n
            return pos + 6
    n_values[0] = -1
    return pos
