# The encoder: Python values -> q IPC bytes.
#
# Dispatch is on the exact type, most frequent first (bool is its own type, so order among the
# builtins only matters for speed). Subclasses of builtins are not treated as their base.

cdef class Encoder:
    """Writes Python values as q IPC messages; holds the options so hot loops pay for them once.

    Encoder(msg_type="async", *, max_depth=256, zero_copy_threshold=65536, capability=6,
            buffer_callback=None, oob_threshold=65536)
    q_compatible: never write a qwire extension record (pure kdb+ IPC); values that need one raise
      EncodeError naming them.
    refs: keep shared and circular references (docs/FORMAT.md); the message is for qwire only.
    registry: the qwire.Registry of classes to write (default: qwire.default_registry).
    allow_on_disk: copy memory-mapped arrays, mmaps and open files in instead of refusing them.
    buffer_callback: pickle protocol 5's: called with a pickle.PickleBuffer for each vector of
      at least oob_threshold bytes whose layout is NumPy's; a false return sends it out of band
      (the message records only its header), a true one keeps it in band.
    max_shared_expansion: without refs a container reached twice is written twice; the copies of
      containers of 64 KiB or more may take at most this many times the bytes of distinct content,
      plus 16 MiB (SECURITY.md), else EncodeError (default 64; None: no limit).
    `encode(obj) -> Message`. Safe to share between threads: an encode call keeps its state on
    the stack and in its own buffer, and the options are fixed when the Encoder is made.
    Anything that raises while a value is written (the caller's hooks, CPython's and NumPy's
    conversions) is an EncodeError naming where, with the original as its __cause__.
    """

    cdef readonly int msg_type
    cdef readonly int max_depth
    cdef readonly Py_ssize_t zero_copy_threshold
    cdef readonly int capability
    cdef readonly object _ext      # extension handler (src/qwire/extensions.py, called from refs.pxi)
    cdef readonly bint q_compatible
    cdef readonly bint refs
    cdef readonly bint allow_on_disk
    cdef readonly object _buffer_callback
    cdef readonly Py_ssize_t oob_threshold
    cdef Py_ssize_t _shared_ratio  # max_shared_expansion (0: no limit)
    # The last message's last record keys and their symbol-vector bytes, reused by the next
    # message when its dict has the same key objects (dumps of one small dict per call). Strong
    # references, so the pointers cannot be reused by other strings; read and written only in C
    # stretches that never release the GIL, so threads sharing the Encoder see whole entries.
    cdef PyObject* _kc_keys[RECORD_MAX_KEYS]
    cdef Py_ssize_t _kc_n
    cdef Py_ssize_t _kc_len
    cdef char _kc_bytes[KEY_CACHE_BYTES]

    def __dealloc__(self):
        cdef Py_ssize_t j
        for j in range(self._kc_n):
            Py_XDECREF(self._kc_keys[j])
        self._kc_n = 0

    cdef void _kc_store(self, WState* w) noexcept:
        """Keep the message's last record keys for the next message (a copy, own references)."""
        cdef Py_ssize_t j
        if w.rec_n == 0 or w.rec_len > KEY_CACHE_BYTES:
            return
        if w.rec_n == self._kc_n and memcmp(w.rec_keys, self._kc_keys, w.rec_n * sizeof(PyObject*)) == 0:
            return
        for j in range(self._kc_n):
            Py_XDECREF(self._kc_keys[j])
        for j in range(w.rec_n):
            Py_INCREF(<object>w.rec_keys[j])
            self._kc_keys[j] = w.rec_keys[j]
        self._kc_n = w.rec_n
        memcpy(self._kc_bytes, w.buf + w.rec_at, w.rec_len)
        self._kc_len = w.rec_len

    def __init__(self, msg_type="async", *, max_depth=DEFAULT_MAX_DEPTH,
                 zero_copy_threshold=DEFAULT_ZERO_COPY_THRESHOLD, capability=6,
                 buffer_callback=None, oob_threshold=DEFAULT_OOB_THRESHOLD,
                 q_compatible=False, refs=False, registry=None, allow_on_disk=False,
                 max_shared_expansion=DEFAULT_MAX_SHARED_EXPANSION):
        if self.max_depth != 0:
            # Options are read without locks by encode calls running in other threads.
            raise TypeError("an Encoder is configured once, when it is made: make a new one for other options")
        if max_shared_expansion is None:
            self._shared_ratio = 0
        elif type(max_shared_expansion) is not int or max_shared_expansion < 1:
            raise ValueError(f"max_shared_expansion must be an int >= 1 or None, not {max_shared_expansion!r:.40}")
        else:
            self._shared_ratio = min(max_shared_expansion, 1 << 40)
        try:
            if type(msg_type) is not str and type(msg_type) is not int:   # True == 1.0 == 1: not types
                raise KeyError(msg_type)
            self.msg_type = MSG_TYPES[msg_type]
        except (KeyError, TypeError):
            raise ValueError(f"msg_type must be 'async', 'sync' or 'response' (or 0, 1, 2), not {msg_type!r}") from None
        if type(max_depth) is not int or not 1 <= max_depth <= MAX_DEPTH_LIMIT:
            # Each level is a C stack frame or two: beyond this, a deep enough value could
            # exhaust a thread's stack before the depth check refused it.
            raise ValueError(f"max_depth must be between 1 and {MAX_DEPTH_LIMIT}")
        if capability not in (3, 4, 5, 6):
            raise ValueError("capability must be 3, 4, 5 or 6 (spec 1.4)")
        self.max_depth = max_depth
        self.zero_copy_threshold = max(<Py_ssize_t>zero_copy_threshold, 1)
        self.capability = capability
        if refs and q_compatible:
            raise ValueError("refs=True writes qwire extension records, which q_compatible=True rules out")
        self.q_compatible = q_compatible
        self.refs = refs
        self.allow_on_disk = allow_on_disk
        self._ext = _default_extensions(registry, q_compatible, allow_on_disk)
        if buffer_callback is not None and not callable(buffer_callback):
            raise TypeError("buffer_callback must be callable")
        self._buffer_callback = buffer_callback
        self.oob_threshold = max(<Py_ssize_t>oob_threshold, 0)

    @property
    def max_shared_expansion(self):
        """How many times the bytes of distinct content the copies of shared containers may take
        (refs=False writes a container reached twice twice), past a 16 MiB allowance; None: no limit."""
        return self._shared_ratio or None

    @property
    def registry(self):
        """The qwire.Registry whose classes this encoder writes."""
        return self._ext.registry

    def __reduce__(self):
        return (_make_encoder, (self.msg_type, self.max_depth, self.zero_copy_threshold, self.capability,
                                self.q_compatible, self.refs, self._ext.registry, self.allow_on_disk,
                                self.max_shared_expansion))

    def encode(self, obj):
        """Serialize `obj` into a Message (docs/TYPES.md lists what can be written)."""
        if self.max_depth == 0:
            raise TypeError("Encoder.__new__ made an Encoder without options: use Encoder(...)")
        return self._encode(obj, self.msg_type)

    cdef Message _encode(self, object obj, int msg_type):
        cdef WState w
        w.cap = 256
        w.buf = <char*>PyMem_Malloc(w.cap)
        if w.buf == NULL:
            raise MemoryError()
        w.len = HEADER_SIZE
        w.ext_total = 0
        w.run_start = 0
        w.layout = NULL
        w.xs = NULL                     # refs.pxi
        w.refs = self.refs
        w.rec_n = 0
        w.shared = NULL                 # (its counters are set when it is made: refs.pxi)
        w.shared_ratio = self._shared_ratio
        cdef object layout = None
        cdef bint ok = False
        try:
            if self.refs:
                _enc_state(&w, self)
            if type(obj) is QError:
                self._enc_error(&w, obj)
            else:
                self._enc(&w, obj, 0)
            if w.layout != NULL:
                layout = <object>w.layout
                if w.len > w.run_start:
                    layout.append((w.run_start, w.len))
            self._finish_header(&w, msg_type)
            self._kc_store(&w)
            ok = True
        except BaseException as exc:
            PyMem_Free(w.buf)
            if isinstance(exc, EncodeError):
                if _is_cycle_error(exc):
                    raise _locate_cycle(obj, exc) from None      # refs.pxi: say where the cycle is
                _name_position(obj, exc)                          # refs.pxi: "(at obj[2].x)"
                raise
            if isinstance(exc, Exception) and not isinstance(exc, (QWireError, MemoryError)):
                # Only qwire's errors escape: what CPython, NumPy or the caller's code raised while
                # this value was written becomes its cause.
                raise _unexpected_error(obj, exc, w.len) from exc
            raise
        finally:
            if w.shared != NULL:
                _shared_done(&w)            # refs.pxi
            Py_XDECREF(w.layout)
            _enc_state_done(&w, ok)         # refs.pxi: kept for the next call only after a success
            _forget_record(&w)
        return _message_take(w.buf, w.len, w.len + w.ext_total, layout)

    cdef int _finish_header(self, WState* w, int msg_type) except -1:
        cdef uint64_t total = <uint64_t>(w.len + w.ext_total)
        if total > 0x7FFFFFFF and self.capability < 5:
            raise EncodeError(f"the message is {total} bytes; capability {self.capability} (kdb+ 3.x) allows at most 2147483647")
        if total >= (<uint64_t>1 << 40):
            raise EncodeError(f"the message is {total} bytes; q IPC allows less than 1 TiB")
        w.buf[0] = 1                     # little-endian
        w.buf[1] = <char>msg_type
        w.buf[2] = 0                     # not compressed
        w.buf[3] = <char>(total >> 32)   # bits 32..39 of the length (capability 6)
        cdef uint32_t low = <uint32_t>total   # bits 0..31 (a C cast: "total & 0xFFFFFFFF" went through Python ints)
        memcpy(w.buf + 4, &low, 4)
        return 0

    cdef int _fallback(self, WState* w, object obj, int depth, str reason) except -1:
        """An object q cannot carry: an extension record when this encoder has an extension
        handler (docs/FORMAT.md), else EncodeError(reason)."""
        if self._ext is not None:
            return _write_extension(self, w, obj, depth, reason)     # refs.pxi
        if not reason:
            reason = f"Unable to serialize {_qualname(type(obj))} objects"
        raise EncodeError(f"{reason} (q_compatible: no extension records)", type(obj))

    cdef int _enc_error(self, WState* w, object err) except -1:
        cdef bytes text = err.text.encode("utf-8", "surrogateescape")
        if b"\0" in text:
            raise EncodeError("a q error text cannot contain NUL")
        _reserve(w, 1)
        _put1(w, 0x80)
        _reserve(w, len(text) + 1)
        memcpy(w.buf + w.len, PyBytes_AS_STRING(text), len(text))
        w.len += len(text)
        _put1(w, 0)
        return 0

    # ---- dispatch --------------------------------------------------------------------------

    cdef int _enc(self, WState* w, object obj, int depth) except -1:
        cdef type t = type(obj)
        cdef long long v
        cdef int overflow
        cdef double d
        if t is str:
            _reserve(w, 1)
            _put1(w, <uint8_t>(-QT_SYMBOL))
            if _w_sym_text(w, <str>obj):
                w.len -= 1
                return self._fallback(w, obj, depth, f"a str containing NUL cannot be a q symbol: {obj[:40]!r}")
            return 0
        if t is int:
            v = PyLong_AsLongLongAndOverflow(obj, &overflow)
            if overflow:
                return self._fallback(w, obj, depth, "an int outside q's long range (int64)")   # no str(obj): O(n**2)
            _reserve(w, 9)
            _put1(w, <uint8_t>(-QT_LONG))
            _put8(w, <uint64_t>v)
            return 0
        if t is float:
            return self._enc_float(w, PyFloat_AS_DOUBLE(obj))
        if t is bool:
            _reserve(w, 2)
            _put1(w, <uint8_t>(-QT_BOOLEAN))
            _put1(w, 1 if obj is True else 0)
            return 0
        if t is dict:
            if w.refs:
                return _refs_enc(self, w, obj, t, depth)      # refs.pxi
            return self._enc_dict(w, <dict>obj, depth)
        if t is list:
            if w.refs:
                return _refs_enc(self, w, obj, t, depth)
            return self._enc_list(w, <list>obj, 0, depth)
        if obj is None:
            _reserve(w, 2)
            _put1(w, QT_UNARY_PRIMITIVE)
            _put1(w, 0)
            return 0
        if t is np.ndarray:
            if w.refs:
                return _refs_enc(self, w, obj, t, depth)
            return self._enc_array(w, <cnp.ndarray>obj, 0)
        if t is bytes:
            return self._w_raw_vector(w, QT_CHAR, 0, obj, PyBytes_AS_STRING(obj), PyBytes_GET_SIZE(obj))
        if w.xs != NULL:                # refs.pxi: once a message has met the registry
            entry = _registered_entry(w, t)
            if entry is not None:
                if w.refs:
                    return _write_extension(self, w, obj, depth, None)
                # No references to track: straight to the record (one registry lookup per object).
                return _w_registered(self, w, <_EncState>w.xs, <_CEntry>entry, obj, depth)
        return self._enc_other(w, obj, t, depth)

    cdef int _enc_float(self, WState* w, double d) except -1:
        return _w_float_atom(w, -QT_FLOAT, d)

    cdef inline int _enter(self, WState* w, object container, int depth) except -1:
        """Depth check for a container (the refusal, which names a cycle when one caused it, is
        out of line so that this stays small enough to inline)."""
        cdef char here
        if depth >= self.max_depth or (depth > 16 and <const char*>&here < qw_stack_floor()):
            return self._too_deep(w, container, depth)
        w.ring[depth & 63] = <void*>container
        if w.shared != NULL:
            _shared_seen(w, container)          # refs.pxi: a large container written again?
        return 0

    cdef int _too_deep(self, WState* w, object container, int depth) except -1:
        cdef int k
        if depth < self.max_depth:
            deep = f"nesting too deep for this thread's stack ({depth} levels)"
        else:
            deep = f"nesting deeper than max_depth={self.max_depth}"
        # Only the entries of the path to here (the containers being written, so alive): the
        # others may name freed objects whose addresses were reused.
        for k in range(1, min(depth, 64) + 1):
            if w.ring[(depth - k) & 63] == <void*>container:
                err = EncodeError(
                    f"circular reference at depth {depth}: a {type(container).__name__} contains itself "
                    "(q values are trees; pass refs=True to keep shared and circular references)",
                    type(container))
                err._not_a_cycle = deep       # what to say if no cycle is found from the root
                raise err
        raise EncodeError(deep, type(container))

    cdef int _enc_list(self, WState* w, list items, int attr, int depth) except -1:
        self._enter(w, items, depth)
        cdef Py_ssize_t start = w.len + w.ext_total
        cdef Py_ssize_t n = len(items)
        _w_vector_head(w, QT_LIST, attr, n, self.capability)
        cdef Py_ssize_t i
        for i in range(n):
            if i >= len(items):
                raise EncodeError("list changed size during encoding")
            self._enc(w, items[i], depth + 1)
        if n != len(items):
            raise EncodeError("list changed size during encoding")
        return _shared_leave(w, items, start)

    cdef int _enc_dict(self, WState* w, dict d, int depth) except -1:
        """A dict: str keys as a symbol vector (else a general list), values as a general list.
        Consecutive records with the same key objects reuse the key bytes already written."""
        self._enter(w, d, depth)
        cdef Py_ssize_t start = w.len + w.ext_total
        cdef Py_ssize_t n = len(d)
        if n > RECORD_MAX_KEYS:
            self._enc_big_dict(w, d, depth)
            return _shared_leave(w, d, start)
        cdef PyObject* ks[RECORD_MAX_KEYS]
        cdef PyObject* vs[RECORD_MAX_KEYS]
        cdef Py_ssize_t pos = 0, i = 0, j
        cdef PyObject* k
        cdef PyObject* v
        cdef bint all_str = True
        cdef Py_ssize_t keys_at
        while i < n and PyDict_Next(d, &pos, &k, &v):
            Py_INCREF(<object>k)   # held: encoding a value may run code that changes d
            Py_INCREF(<object>v)
            ks[i] = k
            vs[i] = v
            i += 1
            if type(<object>k) is not str:
                all_str = False
        n = i
        try:
            _reserve(w, 1)
            _put1(w, QT_DICT)
            keys_at = w.len
            if all_str:
                if n > 0 and w.rec_n == n and memcmp(ks, w.rec_keys, n * sizeof(PyObject*)) == 0:
                    _reserve(w, w.rec_len)
                    memcpy(w.buf + w.len, w.buf + w.rec_at, w.rec_len)
                    w.len += w.rec_len
                elif n > 0 and self._kc_n == n and memcmp(ks, self._kc_keys, n * sizeof(PyObject*)) == 0:
                    # the keys of the previous message's last record: its bytes, and this
                    # message's record from here on
                    _reserve(w, self._kc_len)
                    memcpy(w.buf + w.len, self._kc_bytes, self._kc_len)
                    w.len += self._kc_len
                    _remember_record(w, ks, n, keys_at)
                else:
                    _w_vector_head(w, QT_SYMBOL, 0, n, self.capability)
                    for j in range(n):
                        if _w_sym_text(w, <str>ks[j]):
                            all_str = False   # a key with NUL: the keys become a general list
                            w.len = keys_at
                            break
                    if all_str:
                        _remember_record(w, ks, n, keys_at)
            if not all_str:
                _w_vector_head(w, QT_LIST, 0, n, self.capability)
                for j in range(n):
                    self._enc(w, <object>ks[j], depth + 1)
            _w_vector_head(w, QT_LIST, 0, n, self.capability)
            for j in range(n):
                self._enc(w, <object>vs[j], depth + 1)
        finally:
            for j in range(n):
                Py_XDECREF(ks[j])
                Py_XDECREF(vs[j])
        if len(d) != n:
            raise EncodeError("dict changed size during encoding")
        return _shared_leave(w, d, start)

    cdef int _enc_big_dict(self, WState* w, dict d, int depth) except -1:
        items = list(d.items())   # a snapshot: encoding a value may run code that changes d
        cdef Py_ssize_t n = len(items)
        _reserve(w, 1)
        _put1(w, QT_DICT)
        cdef Py_ssize_t keys_at = w.len
        cdef bint all_str = all(type(kv[0]) is str for kv in items)
        if all_str:
            _w_vector_head(w, QT_SYMBOL, 0, n, self.capability)
            for kv in items:
                if _w_sym_text(w, <str>kv[0]):
                    all_str = False
                    w.len = keys_at
                    break
        if not all_str:
            _w_vector_head(w, QT_LIST, 0, n, self.capability)
            for kv in items:
                self._enc(w, kv[0], depth + 1)
        _w_vector_head(w, QT_LIST, 0, n, self.capability)
        for kv in items:
            self._enc(w, kv[1], depth + 1)
        return 0

    # ---- arrays ------------------------------------------------------------------------------

    cdef int _enc_array(self, WState* w, cnp.ndarray arr, int attr) except -1:
        if cnp.PyArray_BASE(arr) != NULL and not self.allow_on_disk:
            _check_in_memory(arr)                  # refs.pxi: memory-mapped data is refused
        if cnp.PyArray_NDIM(arr) != 1:
            if attr == 0:
                return self._fallback(w, arr, 0, f"only 1-D arrays are q vectors; got a {cnp.PyArray_NDIM(arr)}-D array")
            raise EncodeError(f"only 1-D arrays are q vectors; got a {cnp.PyArray_NDIM(arr)}-D array", np.ndarray)
        dt = arr.dtype
        info = _DTYPE_INFO.get(dt)
        if info is None:
            return self._enc_array_other(w, arr, attr)
        cdef int code = info[0]
        cdef int conv = info[1]
        cdef int64_t shift = info[2]
        if not cnp.PyArray_IS_C_CONTIGUOUS(arr):
            arr = np.ascontiguousarray(arr)
        cdef Py_ssize_t n = cnp.PyArray_DIMS(arr)[0]
        if conv == 0:
            return self._w_raw_vector(w, code, attr, arr, <const char*>cnp.PyArray_DATA(arr), n)
        cdef Py_ssize_t start = w.len
        _w_vector_head(w, code, attr, n, self.capability)
        try:
            if conv == 1:
                return _w_timestamps(w, <const int64_t*>cnp.PyArray_DATA(arr), n)
            return _w_int32_temporals(w, <const int64_t*>cnp.PyArray_DATA(arr), n, shift, code)
        except EncodeError:
            # A value q's type cannot hold (before 1707, or on one of q's null/infinity codes):
            # the default profile keeps the array as it is, in a record; q_compatible refuses.
            if attr != 0 or self._ext is None or self.q_compatible:
                raise
        w.len = start
        return self._fallback(w, arr, 0, "")

    cdef int _w_raw_vector(self, WState* w, int code, int attr, object source, const char* data, Py_ssize_t n) except -1:
        """A vector whose elements are `source`'s bytes as they are (NumPy arrays of the q
        layouts, bytes, PickleBuffer): out of band when the buffer callback says so, referenced
        when large, else copied."""
        cdef Py_ssize_t nbytes = n * ELEMENT_WIDTH[code]
        if self._buffer_callback is not None and nbytes >= self.oob_threshold:
            try:
                keep_in_band = self._buffer_callback(PickleBuffer(_exportable(source)))
            except (QWireError, MemoryError):
                raise
            except Exception as e:
                raise _hook_error(source, "the buffer_callback", e) from e
            if not keep_in_band:
                # Out of band (docs/FORMAT.md): 70 30, then the vector's header, no elements.
                _reserve(w, 2)
                _put1(w, QT_EXTENSION)
                _put1(w, EXT_OUT_OF_BAND)
                return _w_vector_head(w, code, attr, n, self.capability)
        _w_vector_head(w, code, attr, n, self.capability)
        if nbytes >= self.zero_copy_threshold:
            return self._add_segment(w, source, nbytes)
        _reserve(w, nbytes)
        memcpy(w.buf + w.len, data, nbytes)
        w.len += nbytes
        return 0

    cdef int _add_segment(self, WState* w, object source, Py_ssize_t nbytes) except -1:
        mv = PyMemoryView_FromObject(_exportable(source))
        if mv.ndim != 1 or mv.itemsize != 1:
            mv = mv.cast("B")
        if w.layout == NULL:
            layout = []
            Py_INCREF(layout)
            w.layout = <PyObject*>layout
        (<list>w.layout).append((w.run_start, w.len))
        (<list>w.layout).append(mv)
        w.run_start = w.len
        w.ext_total += nbytes
        return 0

    cdef int _enc_array_other(self, WState* w, cnp.ndarray arr, int attr) except -1:
        cdef str kind = arr.dtype.kind
        dt = arr.dtype
        if kind == "O":
            return self._enc_object_array(w, arr, attr)
        # str_ -> symbols and datetime64 units -> ns keep the values but not the dtype: the default
        # profile sends such arrays as records instead, so they come back with their dtype, as
        # pickle's users expect; q_compatible=True converts. A big-endian array of a q type is a q
        # vector either way: only the byte order differs, and q readers get a plain vector.
        cdef bint keep_dtype = attr == 0 and self._ext is not None and not self.q_compatible
        if kind == "U":
            if keep_dtype:
                return self._fallback(w, arr, 0, "")
            return self._enc_symbols(w, arr.tolist(), attr)
        if dt.byteorder == ">" and dt.newbyteorder("=") in _DTYPE_INFO:
            return self._enc_array(w, arr.astype(dt.newbyteorder("=")), attr)
        target = _DTYPE_CONVERT.get(dt.str[1:])
        if target is not None:
            if keep_dtype:
                return self._fallback(w, arr, 0, "")
            return self._enc_array(w, arr.astype(target), attr)
        if attr == 0:
            return self._fallback(w, arr, 0, f"NumPy dtype {dt} has no q vector type (docs/TYPES.md lists the q-compatible dtypes)")
        raise EncodeError(f"NumPy dtype {dt} has no q vector type", np.ndarray)

    cdef int _enc_object_array(self, WState* w, cnp.ndarray arr, int attr) except -1:
        if self._try_symbol_array(w, arr, attr):
            return 0
        items = arr.tolist()
        if all(type(x) is str for x in items):
            if attr == 0 and not self.q_compatible and any("\0" in x for x in items):
                return self._fallback(w, arr, 0, "")   # no q symbol holds NUL: the object-array record
            return self._enc_symbols(w, items, attr)
        if all(type(x) is UUID for x in items):
            return self._enc_guids(w, items, attr)
        if attr == 0 and self._ext is not None:
            return self._fallback(w, arr, 0, "")
        bad = next(x for x in items if type(x) is not str)
        raise EncodeError(f"an object array is a q vector only when it holds only str (symbols) or only uuid.UUID "
                          f"(guids); found {type(bad).__name__} (use a list for a general list)", type(bad))

    cdef bint _try_symbol_array(self, WState* w, cnp.ndarray arr, int attr) except -1:
        """An object array whose items are all str, written straight from its item pointers;
        False (nothing written) when an item is not a str or contains NUL."""
        if not cnp.PyArray_IS_C_CONTIGUOUS(arr):
            return False
        cdef Py_ssize_t n = cnp.PyArray_DIMS(arr)[0], i
        cdef PyObject** items = <PyObject**>cnp.PyArray_DATA(arr)
        cdef Py_ssize_t start = w.len
        _w_vector_head(w, QT_SYMBOL, attr, n, self.capability)
        for i in range(n):
            if items[i] == NULL or type(<object>items[i]) is not str or _w_sym_text(w, <str>items[i]):
                w.len = start
                return False
        return True

    cdef int _enc_symbol_source(self, WState* w, object src) except -1:
        """Symbols from a foreign layout (values._SymbolSource): one C pass, no str objects."""
        cdef Py_ssize_t n = len(src), i, k, a, b
        cdef const int64_t* codes
        cdef const int64_t* offs
        cdef const uint8_t* body
        cdef const uint8_t* valid
        cdef list cats
        _w_vector_head(w, QT_SYMBOL, 0, n, self.capability)
        if src.kind == "categorical":
            code_arr, cats = src.parts
            for c in cats:
                if memchr(PyBytes_AS_STRING(c), 0, PyBytes_GET_SIZE(c)) != NULL:
                    raise EncodeError("a categorical's category contains NUL; no q symbol can", str)
            codes = <const int64_t*>cnp.PyArray_DATA(code_arr)
            for i in range(n):
                k = codes[i]
                if k < 0:
                    _reserve(w, 1)
                    _put1(w, 0)        # missing: the null symbol
                    continue
                c = <bytes>PyList_GET_ITEM(cats, k)
                b = PyBytes_GET_SIZE(c)
                _reserve(w, b + 1)
                memcpy(w.buf + w.len, PyBytes_AS_STRING(c), b)
                w.buf[w.len + b] = 0
                w.len += b + 1
            return 0
        for off_arr, body_arr, valid_arr in src.parts:
            k = cnp.PyArray_DIMS(off_arr)[0] - 1
            offs = <const int64_t*>cnp.PyArray_DATA(off_arr)
            body = <const uint8_t*>cnp.PyArray_DATA(body_arr)
            valid = NULL if valid_arr is None else <const uint8_t*>cnp.PyArray_DATA(valid_arr)
            if k > 0 and memchr(body + offs[0], 0, offs[k] - offs[0]) != NULL:
                raise EncodeError("a string column contains NUL; no q symbol can", str)
            _reserve(w, (offs[k] - offs[0]) + k)
            for i in range(k):
                if valid != NULL and not valid[i]:
                    w.buf[w.len] = 0
                    w.len += 1
                    continue
                a = offs[i]
                b = offs[i + 1] - a
                memcpy(w.buf + w.len, body + a, b)
                w.buf[w.len + b] = 0
                w.len += b + 1
        return 0

    cdef int _enc_symbols(self, WState* w, list items, int attr) except -1:
        cdef Py_ssize_t n = len(items)
        _w_vector_head(w, QT_SYMBOL, attr, n, self.capability)
        for s in items:
            if type(s) is not str:
                raise EncodeError(f"a symbol vector holds str, not {type(s).__name__}", type(s))
            if _w_sym_text(w, <str>s):
                raise EncodeError(f"a str containing NUL cannot be a q symbol: {s[:40]!r}", str)
        return 0

    cdef int _enc_guids(self, WState* w, list items, int attr) except -1:
        cdef Py_ssize_t n = len(items)
        _w_vector_head(w, QT_GUID, attr, n, self.capability)
        _reserve(w, 16 * n)
        for u in items:
            if type(u) is not UUID:
                raise EncodeError(f"a guid vector holds uuid.UUID, not {type(u).__name__}", type(u))
            memcpy(w.buf + w.len, PyBytes_AS_STRING(u.bytes), 16)
            w.len += 16
        return 0

    # ---- everything that is not a builtin container or scalar ---------------------------------

    cdef int _enc_other(self, WState* w, object obj, type t, int depth) except -1:
        if isinstance(obj, np.generic):
            return self._enc_numpy_scalar(w, obj, t)
        if t is UUID:
            _reserve(w, 17)
            _put1(w, <uint8_t>(-QT_GUID))
            memcpy(w.buf + w.len, PyBytes_AS_STRING(obj.bytes), 16)
            w.len += 16
            return 0
        if t is datetime_type:
            if obj.tzinfo is not None:
                return self._fallback(w, obj, depth, "a timezone-aware datetime has no q type (q timestamps are naive: "
                                      "convert to UTC and drop tzinfo)")
            _reserve(w, 9)
            _put1(w, <uint8_t>(-QT_TIMESTAMP))
            _put8(w, <uint64_t>_ns_since_2000(obj))
            return 0
        if t is date_type:
            return _w_atom32(w, -QT_DATE, days_from_civil(date_year(obj), date_month(obj), date_day(obj)) - EPOCH_DAYS, t)
        if t is timedelta_type:
            return _w_timedelta(w, obj)
        if t is time_type:
            if obj.tzinfo is not None or time_microsecond(obj) % 1000:
                return self._fallback(w, obj, depth, f"{_short(obj)} has no q type: q's time is naive, in whole milliseconds")
            return _w_time(w, obj)
        if t is Vector:
            try:
                return self._enc_vector(w, obj, depth)
            except (QWireError, MemoryError):
                raise
            except Exception as e:          # its values come from the caller: any iterable, any array-like
                raise _hook_error(obj, "reading the Vector's values", e) from e
        if t is PickleBuffer:
            return self._enc_pickle_buffer(w, obj)
        if t is memoryview:
            return self._enc_memoryview(w, obj, depth)
        if t is Table:
            return self._enc_table(w, obj, depth)
        if t is Dict:
            self._enter(w, obj, depth)
            start = w.len + w.ext_total
            _reserve(w, 1)
            _put1(w, QT_SORTED_DICT if obj.sorted else QT_DICT)
            self._enc(w, obj.keys, depth + 1)
            self._enc(w, obj.values, depth + 1)
            return _shared_leave(w, obj, start)
        if t is KeyedTable:
            _reserve(w, 1)
            _put1(w, QT_SORTED_DICT if obj.sorted else QT_DICT)
            self._enc_table(w, obj.keys, depth + 1)
            return self._enc_table(w, obj.values, depth + 1)
        if t is DateTime:
            return _w_float_atom(w, -QT_DATETIME, obj.days)
        if t is Timestamp:
            _reserve(w, 9)
            _put1(w, <uint8_t>(-QT_TIMESTAMP))
            _put8(w, <uint64_t><int64_t>obj.ns)
            return 0
        if isinstance(obj, Function):
            return self._enc_function(w, obj, t, depth)
        if t is QError:
            raise EncodeError("a q error can only be a whole message (dumps(QError(...))), not part of one", t)
        try:
            converted = _convert_foreign(obj, self.q_compatible)
        except (QWireError, MemoryError):
            raise
        except Exception as e:
            raise _hook_error(obj, "converting it (qwire._integrations)", e) from e
        if converted is not None and converted is not obj:
            # A level of its own: a conversion that yields another convertible value cannot recurse
            # past max_depth (pandas' tz-aware Timestamp converted to itself overflowed the C stack).
            self._enter(w, obj, depth)
            return self._enc(w, converted, depth + 1)
        return self._fallback(w, obj, depth, None)      # the extension handler words any refusal

    cdef int _enc_numpy_scalar(self, WState* w, object obj, type t) except -1:
        if t is np.bytes_:
            if PyBytes_GET_SIZE(obj) != 1:
                raise EncodeError(f"a numpy.bytes_ is a q char only with length 1, not {PyBytes_GET_SIZE(obj)} "
                                  "(use bytes for a char vector)", t)
            _reserve(w, 2)
            _put1(w, <uint8_t>(-QT_CHAR))
            _put1(w, <uint8_t>PyBytes_AS_STRING(obj)[0])
            return 0
        dt = obj.dtype
        info = _DTYPE_INFO.get(dt)
        if info is None:
            target = _DTYPE_CONVERT.get(dt.str[1:])
            if target is not None:
                if self._ext is not None and not self.q_compatible:    # the unit is kept, as for arrays
                    return self._fallback(w, obj, 0, "")
                return self._enc_numpy_scalar(w, obj.astype(target), t)
            if dt.kind == "U":
                _reserve(w, 1)
                _put1(w, <uint8_t>(-QT_SYMBOL))
                if _w_sym_text(w, str(obj)):          # NUL or a lone surrogate: not a symbol
                    w.len -= 1
                    return self._fallback(w, obj, 0, f"a str containing NUL cannot be a q symbol")
                return 0
            return self._fallback(w, obj, 0, f"NumPy {dt} scalars have no q type (docs/TYPES.md)")
        cdef int code = info[0]
        cdef int conv = info[1]
        cdef int64_t raw
        cdef float f
        cdef uint32_t bits32
        if code == QT_FLOAT:
            return self._enc_float(w, <double>obj)
        if code == QT_REAL:
            f = <float>obj
            if f != f:
                bits32 = Q_NULL_REAL_BITS
            else:
                memcpy(&bits32, &f, 4)
            _reserve(w, 5)
            _put1(w, <uint8_t>(-QT_REAL))
            _put4(w, bits32)
            return 0
        cdef Py_ssize_t width = ELEMENT_WIDTH[code]
        cdef char tmp[8]
        _reserve(w, 1 + 8)
        _put1(w, <uint8_t>(-code))
        if conv == 0:
            cnp.PyArray_ScalarAsCtype(obj, tmp)
            memcpy(w.buf + w.len, tmp, width)
            w.len += width
            return 0
        raw = <int64_t>obj.view("i8")
        if conv == 1:
            return _w_timestamps(w, &raw, 1)
        return _w_int32_temporals(w, &raw, 1, info[2], code)

    cdef int _enc_pickle_buffer(self, WState* w, object pb) except -1:
        """A pickle.PickleBuffer is raw bytes: a q byte vector (it decodes as uint8 array)."""
        try:
            raw = pb.raw()
        except BufferError as e:
            raise EncodeError(f"a PickleBuffer must be contiguous to be written: {e}", PickleBuffer) from None
        cdef Py_buffer* view = PyMemoryView_GET_BUFFER(raw)
        return self._w_raw_vector(w, QT_BYTE, 0, raw, <const char*>view.buf, view.len)

    cdef int _enc_memoryview(self, WState* w, object mv, int depth) except -1:
        """A memoryview is written as the NumPy array over the same memory (np.asarray(mv)): its
        format and shape decide the q type, as for that array (B: a byte vector, c: a char vector,
        d: a float vector, N-d or formats q lacks: an array record), without copying large ones."""
        cdef bint on_disk = False
        try:
            on_disk = _extensions.mapped_base(mv) is not None
            if on_disk and not self.allow_on_disk:
                raise _extensions.on_disk_error(mv)
            arr = np.array(mv) if on_disk else np.asarray(mv)   # allow_on_disk copies the data in
        except (ValueError, TypeError, BufferError, NotImplementedError) as e:
            if isinstance(e, QWireError):
                raise
            raise _hook_error(mv, "reading the memoryview (as a NumPy array)", e) from e
        if arr.dtype.kind == "V" or arr.dtype.fields is not None:
            raise EncodeError(f"a memoryview of format {mv.format!r} has no NumPy dtype qwire writes "
                              "(use a standard struct format such as 'B', 'i' or 'd')", memoryview)
        return self._enc(w, arr, depth)

    cdef int _enc_vector(self, WState* w, object vec, int depth) except -1:
        cdef int code = vec.type_code
        cdef int attr = ATTRIBUTE_CODES[vec.attr]
        values = vec.values
        if code == QT_LIST:
            if type(values) is not list:
                values = list(values)
            return self._enc_list(w, values, attr, depth)
        if code == QT_CHAR:
            if isinstance(values, np.ndarray):
                values = values.tobytes()
            b = bytes(values)
            return _w_char_vector(w, PyBytes_AS_STRING(b), len(b), attr, self.capability)
        if code == QT_SYMBOL:
            return self._enc_symbols(w, values.tolist() if isinstance(values, np.ndarray) else list(values), attr)
        if code == QT_GUID:
            return self._enc_guids(w, values.tolist() if isinstance(values, np.ndarray) else list(values), attr)
        arr = np.asarray(values) if isinstance(values, np.ndarray) else np.asarray(values, dtype=_STORAGE_DTYPE[code] if code != QT_TIMESTAMP else None)
        if arr.ndim != 1:
            raise EncodeError(f"Vector values must be 1-D, got {arr.ndim}-D")
        info = _DTYPE_INFO.get(arr.dtype)
        if info is not None and info[0] == code:
            return self._enc_array(w, arr, attr)
        storage = _STORAGE_DTYPE[code]
        if arr.dtype.kind in "mM":
            natural = _DTYPE_INFO.get(np.dtype(_DTYPE_CONVERT.get(arr.dtype.str[1:], arr.dtype.str[1:])))
            if natural is None or natural[0] != code:
                raise EncodeError(f"cannot write a {arr.dtype} array as a q {vec.qtype} vector")
            return self._enc_array(w, arr, attr)
        # Raw q units: the values are the q storage type (Vector(int64s, 'timestamp') is q's own count).
        if arr.dtype != storage:
            if arr.dtype.kind not in "biuf" or (storage.kind in "iu" and arr.dtype.kind == "f"):
                raise EncodeError(f"cannot write {arr.dtype} values as a q {vec.qtype} vector")
            arr = arr.astype(storage)
        arr = np.ascontiguousarray(arr)
        return self._w_raw_vector(w, code, attr, arr, <const char*>cnp.PyArray_DATA(<cnp.ndarray>arr), arr.shape[0])

    cdef int _enc_table(self, WState* w, object table, int depth) except -1:
        if type(table) is not Table:
            raise EncodeError(f"a keyed table's keys and values must be qwire.Table, not {type(table).__name__}")
        self._enter(w, table, depth)
        cdef Py_ssize_t start = w.len + w.ext_total
        cols = table._columns
        cdef Py_ssize_t ncols = len(cols)
        _reserve(w, 3)
        _put1(w, QT_TABLE)
        _put1(w, <uint8_t>ATTRIBUTE_CODES[table.attr])
        _put1(w, QT_DICT)
        _w_vector_head(w, QT_SYMBOL, 0, ncols, self.capability)
        for name in cols:
            if _w_sym_text(w, name):
                raise EncodeError(f"a str containing NUL cannot be a q symbol (table column name or lambda context)", str)
        _w_vector_head(w, QT_LIST, 0, ncols, self.capability)
        cdef Py_ssize_t rows = -1
        for name, col in cols.items():
            t = type(col)
            if t is np.ndarray:
                self._enc_array(w, col, 0)
            elif t is bytes:
                _w_char_vector(w, PyBytes_AS_STRING(col), PyBytes_GET_SIZE(col), 0, self.capability)
            elif t is list:
                self._enc_list(w, col, 0, depth + 1)
            elif t is Vector:
                self._enc_vector(w, col, depth + 1)
            elif t is _SymbolSource:
                self._enc_symbol_source(w, col)
            else:
                raise EncodeError(f"table column {name!r} must be a vector (NumPy array, bytes, list or qwire.Vector), "
                                  f"not {type(col).__name__}", type(col))
            if rows >= 0 and len(col) != rows:
                raise EncodeError(f"table column {name!r} has {len(col)} rows, the first column {rows}")
            rows = len(col)
        return _shared_leave(w, table, start)

    cdef int _enc_function(self, WState* w, object f, type t, int depth) except -1:
        if t is Lambda:
            _reserve(w, 1)
            _put1(w, QT_LAMBDA)
            if _w_sym_text(w, f.context):
                raise EncodeError(f"a str containing NUL cannot be a q symbol (table column name or lambda context)", str)
            src = f.source.encode("utf-8", "surrogateescape")
            return _w_char_vector(w, PyBytes_AS_STRING(src), len(src), 0, self.capability)
        if t is UnaryPrimitive or t is BinaryPrimitive or t is Iterator:
            _reserve(w, 2)
            _put1(w, QT_UNARY_PRIMITIVE if t is UnaryPrimitive else (QT_BINARY_PRIMITIVE if t is BinaryPrimitive else QT_ITERATOR))
            _put1(w, <uint8_t>f.code)
            return 0
        if t is Projection or t is Composition:
            self._enter(w, f, depth)
            items = f.items
            _reserve(w, 5)
            _put1(w, QT_PROJECTION if t is Projection else QT_COMPOSITION)
            _put4(w, <uint32_t>len(items))
            for item in items:
                self._enc(w, item, depth + 1)
            return 0
        if t is Derived:
            self._enter(w, f, depth)
            _reserve(w, 1)
            _put1(w, <uint8_t>f.type_code)
            return self._enc(w, f.func, depth + 1)
        raise EncodeError(f"Unable to serialize {_qualname(t)} objects", t)


cdef void _remember_record(WState* w, PyObject** ks, Py_ssize_t n, Py_ssize_t keys_at) noexcept:
    """The record whose key bytes were just written at keys_at..w.len: later dicts of this
    message with the same key objects copy them (own references, so the addresses stay theirs)."""
    _forget_record(w)
    cdef Py_ssize_t j
    for j in range(n):
        Py_INCREF(<object>ks[j])
        w.rec_keys[j] = ks[j]
    w.rec_n = n
    w.rec_at = keys_at
    w.rec_len = w.len - keys_at


cdef void _forget_record(WState* w) noexcept:
    cdef Py_ssize_t j
    for j in range(w.rec_n):
        Py_XDECREF(w.rec_keys[j])
    w.rec_n = 0


cdef object _exportable(object source):
    """source, or a uint8 view of it when NumPy exports no buffer for its dtype (datetime64,
    timedelta64)."""
    if type(source) is np.ndarray and (<cnp.ndarray>source).dtype.kind in "mM":
        return (<cnp.ndarray>source).view(np.uint8)
    return source


cdef str _short(object obj):
    """A repr for an error message: bounded, and never raising (a 5,000-digit int, a broken __repr__)."""
    return _extensions._short(obj)


cdef str _qualname(type t):
    mod = getattr(t, "__module__", None)
    name = getattr(t, "__qualname__", t.__name__)
    return name if mod in (None, "builtins") else f"{mod}.{name}"


cdef object _convert_foreign(object obj, bint q_compatible):
    """Optional integrations (pandas, pyarrow, polars; qwire/_integrations.py): the value qwire
    writes instead of obj, or None. Chosen by the top-level module of obj's type, so that no other
    object pays for more than one string comparison, and no library is imported here."""
    mod = getattr(type(obj), "__module__", None)
    if type(mod) is not str:
        return None
    top = mod.partition(".")[0]
    if top != "pandas" and top != "pyarrow" and top != "polars":
        return None
    from qwire._integrations import convert_foreign
    return convert_foreign(obj, q_compatible)


def _make_encoder(msg_type, max_depth, zero_copy_threshold, capability, q_compatible=False, refs=False,
                  registry=None, allow_on_disk=False, max_shared_expansion=DEFAULT_MAX_SHARED_EXPANSION):
    return Encoder(msg_type, max_depth=max_depth, zero_copy_threshold=zero_copy_threshold, capability=capability,
                   q_compatible=q_compatible, refs=refs, registry=registry, allow_on_disk=allow_on_disk,
                   max_shared_expansion=max_shared_expansion)
