# Message: the result of dumps. It owns the bytes the encoder wrote and, for large array payloads
# written without copying, references to the caller's buffers (scatter-gather segments).


cdef str _NOT_CONSTRUCTED = ("Message objects are made by qwire.dumps / Encoder.encode (or unpickled), "
                             "not constructed directly")


cdef class Message:
    """A serialized q IPC message.

    Supports the buffer protocol (read-only): `memoryview(m)`, `bytes(m)`, `len(m)`, and can be
    passed straight to `loads`, `socket.sendall`, `file.write`. Large array payloads are not copied
    by `dumps`: such a message is a list of segments (`m.segments()`), written without joining by
    `m.write_to(f)`; `bytes(m)`, `m.copy()` and a contiguous `memoryview(m)` join them once.
    While a payload is referenced, mutating the source array changes the message's content.
    """

    cdef char* _buf            # bytes written by the encoder (header first)
    cdef Py_ssize_t _len
    cdef Py_ssize_t _total     # total message length, header included
    cdef list _layout          # None, or [(start, end) | memoryview] in message order
    cdef object _joined        # cached contiguous bytes of a multi-segment message
    cdef Py_ssize_t _exports

    def __cinit__(self):
        self._buf = NULL
        self._len = 0
        self._total = 0
        self._layout = None
        self._joined = None
        self._exports = 0

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

    cdef const char* _contiguous(self) except NULL:
        self._check()
        if self._layout is None:
            return self._buf
        if self._joined is None:
            self._joined = self._join()
        return PyBytes_AS_STRING(self._joined)

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
        cdef const char* data = self._contiguous()
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
        view.internal = NULL
        self._exports += 1

    def __releasebuffer__(self, Py_buffer* view):
        self._exports -= 1

    def __bytes__(self):
        self._check()
        if self._layout is None:
            return PyBytes_FromStringAndSize(self._buf, self._total)
        if self._joined is not None:
            return self._joined
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
        `write`). Returns the number of bytes written."""
        return _write_segments(self.segments(), target)

    def __eq__(self, other):
        if isinstance(other, (Message, bytes, bytearray, memoryview)):
            return bytes(self) == bytes(other)
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
        _write_vectored(target.sendmsg, segs)
    elif isinstance(target, int):
        _write_vectored(lambda bufs: os.writev(target, bufs), segs)
    else:
        write = target.write
        for s in segs:
            write(s)
    return total


cdef _write_vectored(send, list segs):
    # At most IOV_MAX-ish buffers per call; a short write resumes mid-segment.
    pending = [s for s in segs if s.nbytes]
    while pending:
        n = send(pending[:512])
        while n:
            if n >= pending[0].nbytes:
                n -= pending[0].nbytes
                pending.pop(0)
            else:
                pending[0] = pending[0][n:]
                n = 0
