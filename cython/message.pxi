# Message: the result of dumps. It owns the bytes the encoder wrote and, for large array payloads
# written without copying, references to the caller's buffers (scatter-gather segments).


cdef str _NOT_CONSTRUCTED = ("Message objects are made by qwire.dumps / Encoder.encode (or unpickled), "
                             "not constructed directly")


cdef class Message:
    """A serialized q IPC message.

    Supports the buffer protocol (read-only): `memoryview(m)`, `bytes(m)`, `len(m)`, and can be
    passed straight to `loads`, `socket.sendall`, `file.write`. Large array payloads are not copied
    by `dumps`: such a message is a list of segments (`m.segments()`), written without joining by
    `m.write_to(f)`. While a payload is referenced, mutating the source array changes the message's
    content: `bytes(m)`, `m.copy()`, `m == other`, slicing and each new `memoryview(m)` join the
    segments as they are at that moment (never a join kept from earlier), and a memoryview keeps
    its join, unchanged, while it lives (docs/ZERO_COPY.md).

    Like `bytes`, a Message compares equal to the same bytes (bytes, bytearray, memoryview, another
    Message), `m[i]` is an int, `m[a:b]` is bytes, and `m + b"..."` / `b"..." + m` are bytes.
    """

    cdef char* _buf            # bytes written by the encoder (header first)
    cdef Py_ssize_t _len
    cdef Py_ssize_t _total     # total message length, header included
    cdef list _layout          # None, or [(start, end) | memoryview] in message order

    def __cinit__(self):
        self._buf = NULL
        self._len = 0
        self._total = 0
        self._layout = None

    def __init__(self, *args, **kwargs):
        raise TypeError(_NOT_CONSTRUCTED)

    cdef int _check(self) except -1:
        # Message.__new__(Message) skips __init__: such a Message has no bytes at all.
        if self._buf == NULL:
            raise TypeError(_NOT_CONSTRUCTED)
        return 0

    def __dealloc__(self):
        if self._buf != NULL:
            PyMem_Free(self._buf)
            self._buf = NULL

    def __len__(self):
        return self._total

    @property
    def nbytes(self):
        return self._total

    @property
    def msg_type(self):
        """0 async, 1 sync, 2 response (header byte 1)."""
        self._check()
        return <unsigned char>self._buf[1]

    @property
    def compressed(self):
        self._check()
        return self._buf[2] != 0

    cdef bytes _join(self):
        cdef bytes out = PyBytes_FromStringAndSize(NULL, self._total)
        cdef char* dst = PyBytes_AS_STRING(out)
        cdef Py_ssize_t pos = 0
        cdef Py_buffer view
        for part in self._layout:
            if type(part) is tuple:
                a, b = part
                memcpy(dst + pos, self._buf + <Py_ssize_t>a, <Py_ssize_t>b - <Py_ssize_t>a)
                pos += <Py_ssize_t>b - <Py_ssize_t>a
            else:
                PyObject_GetBuffer(part, &view, PyBUF_SIMPLE)
                try:
                    with nogil:
                        memcpy(dst + pos, view.buf, view.len)
                    pos += view.len
                finally:
                    PyBuffer_Release(&view)
        return out

    def __getbuffer__(self, Py_buffer* view, int flags):
        if flags & PyBUF_WRITABLE:
            raise BufferError("qwire.Message is read-only")
        self._check()
        cdef const char* data = self._buf
        cdef bytes joined
        view.internal = NULL
        if self._layout is not None:
            # Each export its own join, held by the view: never stale, and no state shared between
            # threads exporting the same Message (a join runs without the GIL).
            joined = self._join()
            Py_INCREF(joined)
            view.internal = <void*>joined
            data = PyBytes_AS_STRING(joined)
        view.buf = <void*>data
        view.obj = self
        view.len = self._total
        view.readonly = 1
        view.itemsize = 1
        view.format = NULL
        if flags & PyBUF_FORMAT:
            view.format = "B"
        view.ndim = 1
        view.shape = NULL
        if flags & PyBUF_ND:
            view.shape = &self._total
        view.strides = NULL
        if flags & PyBUF_STRIDES:
            view.strides = &view.itemsize
        view.suboffsets = NULL

    def __releasebuffer__(self, Py_buffer* view):
        if view.internal != NULL:
            Py_XDECREF(<PyObject*>view.internal)
            view.internal = NULL

    def __bytes__(self):
        self._check()
        if self._layout is None:
            return PyBytes_FromStringAndSize(self._buf, self._total)
        return self._join()

    def copy(self):
        """The message as one `bytes` object (one copy)."""
        return self.__bytes__()

    def segments(self):
        """The message as a list of read-only memoryviews, in order, without copying: the parts
        qwire wrote and the caller's array buffers it references."""
        self._check()
        own = memoryview(_OwnBytes.wrap(self))
        if self._layout is None:
            return [own]
        out = []
        for part in self._layout:
            out.append(own[part[0]:part[1]] if type(part) is tuple else part)
        return out

    def write_to(self, target):
        """Write the whole message to `target` without joining its segments: a socket (uses
        `sendmsg`), a file descriptor (int; uses `os.writev`), or a binary file object (its
        `write`). Returns the number of bytes written, always the whole message: short writes
        are resumed. A target that cannot take more now (a non-blocking socket, pipe or file)
        raises BlockingIOError whose `characters_written` says how many bytes it took; any other
        OSError after part of the message was written says how much in its message."""
        return _write_segments(self.segments(), target)

    def __eq__(self, other):
        if isinstance(other, (Message, bytes, bytearray, memoryview)):
            return bytes(self) == bytes(other)
        return NotImplemented

    def __getitem__(self, index):
        """Like bytes: an int for an index, bytes for a slice."""
        self._check()
        if type(index) is int and self._layout is None:
            if index < 0:
                index += self._total
            if not 0 <= index < self._total:
                raise IndexError("qwire.Message index out of range")
            return <unsigned char>self._buf[<Py_ssize_t>index]
        return bytes(self)[index]

    def __add__(self, other):
        if isinstance(other, Message):
            return bytes(self) + bytes(other)
        try:
            return bytes(self) + other
        except TypeError:
            return NotImplemented

    def __radd__(self, other):
        if isinstance(other, (bytes, bytearray)):
            return bytes(other) + bytes(self)
        try:
            return bytes(memoryview(other)) + bytes(self)
        except TypeError:
            return NotImplemented

    def __hash__(self):
        return hash(bytes(self))

    def __repr__(self):
        nseg = 1 if self._layout is None else len(self._layout)
        return f"<qwire.Message {self._total} bytes, type {self.msg_type}, {nseg} segment(s)>"

    def __reduce_ex__(self, protocol):
        # Protocol 5 hands the bytes to pickle as a PickleBuffer: out of band when the pickler
        # has a buffer_callback, with no intermediate bytes object otherwise.
        if protocol >= 5:
            return (_message_from_bytes, (PickleBuffer(self),))
        return (_message_from_bytes, (bytes(self),))


cdef class _OwnBytes:
    """Exports the part of a Message that qwire wrote, for segments()."""
    cdef Message msg

    @staticmethod
    cdef _OwnBytes wrap(Message msg):
        cdef _OwnBytes o = _OwnBytes.__new__(_OwnBytes)
        o.msg = msg
        return o

    def __getbuffer__(self, Py_buffer* view, int flags):
        if flags & PyBUF_WRITABLE:
            raise BufferError("qwire.Message is read-only")
        PyBuffer_FillInfo(view, self, self.msg._buf, self.msg._len, 1, flags)


cdef Message _message_take(char* buf, Py_ssize_t length, Py_ssize_t total, list layout):
    """Wrap an encoder buffer (ownership moves to the Message)."""
    cdef Message m = Message.__new__(Message)
    m._buf = buf
    m._len = length
    m._total = total
    m._layout = layout
    return m


def _message_from_bytes(data):
    """A Message holding a copy of `data` (used by unpickling and by compression)."""
    cdef Py_buffer view
    PyObject_GetBuffer(data, &view, PyBUF_SIMPLE)
    try:
        if view.len < HEADER_SIZE:
            raise ValueError("a message is at least 8 bytes")
        buf = <char*>PyMem_Malloc(view.len)
        if buf == NULL:
            raise MemoryError()
        memcpy(buf, view.buf, view.len)
        return _message_take(buf, view.len, view.len, None)
    finally:
        PyBuffer_Release(&view)


def _write_segments(list segs, target):
    import os
    import socket

    total = sum(s.nbytes for s in segs)
    if isinstance(target, socket.socket):
        send = target.sendmsg
    elif type(target) is int or (isinstance(target, int) and not isinstance(target, bool)):
        send = lambda bufs: os.writev(target, bufs)
    elif isinstance(target, bool) or not callable(getattr(target, "write", None)):
        raise TypeError(f"write_to takes a socket, a file descriptor (int) or a binary file object, "
                        f"not {type(target).__name__}")
    else:
        write = target.write
        send = lambda bufs: write(bufs[0])       # one segment per call: file.write takes one buffer
    _write_all(send, segs, total)
    return total


cdef int _write_all(send, list segs, Py_ssize_t total) except -1:
    """Every byte of segs through send (a call taking a list of buffers and returning how many
    bytes it took): short writes resume mid-segment; a target that takes nothing raises."""
    pending = [s for s in segs if s.nbytes]
    cdef Py_ssize_t written = 0, n, first
    while pending:
        try:
            r = send(pending[:512])            # at most IOV_MAX-ish buffers per call
        except BlockingIOError as e:
            partial = getattr(e, "characters_written", 0) or 0
            err = BlockingIOError(e.errno, f"the target would block after {written + partial} of the message's "
                                  f"{total} bytes were written (the rest was not)", written + partial)
            raise err from e
        except OSError as e:
            # every OSError says how much was written, as BlockingIOError's characters_written does
            if written == 0:
                e.characters_written = 0
                raise
            err = type(e)(e.errno, f"{e.strerror} (after {written} of the message's {total} bytes were written)")
            err.characters_written = written
            raise err from e
        if r is None:                           # a non-blocking raw file: nothing taken
            raise BlockingIOError(11, f"the target would block after {written} of the message's {total} bytes "
                                  "were written (the rest was not)", written)
        if type(r) is not int or r < 0 or r > total - written:
            raise TypeError(f"the target's write returned {_extensions._short(r)}, not a byte count")
        n = r
        if n == 0:
            raise OSError(f"the target took 0 bytes after {written} of the message's {total} bytes were written")
        written += n
        while n:
            first = pending[0].nbytes
            if n >= first:
                n -= first
                pending.pop(0)
            else:
                pending[0] = pending[0][n:]
                n = 0
    return 0
