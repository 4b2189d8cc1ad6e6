# cython: language_level=3
"""qwire's core: the q IPC encoder, decoder and Message.

The module is one compiled unit; this file is its table of contents:
  constants.pxi  q type codes, widths, sentinels, epochs, default limits
  cutil.pxi      byte swapping, overflow checks, civil-date arithmetic
  message.pxi    Message: the result of dumps (buffer protocol, segments, vectored writes)
  write.pxi      the encoder's output buffer and its byte writers
  encode.pxi     Encoder: Python values -> q bytes
  budget.pxi     what decoded values cost in memory: the decoder's memory bound
  symtab.pxi     per-call symbol intern table used by the decoder
  stream.pxi     receive buffers (aligned, growing), the stream state behind Decoder.feed
  decode.pxi     Decoder: q bytes -> Python values (the cursor, the dispatch, extension records)
  decode_values.pxi      ... atoms and vectors
  decode_containers.pxi  ... dictionaries, tables and q functions
  hashtally.pxi  refusing sets and dicts whose items share hash values (hash flooding)
  prescan.pxi    refusing nesting past max_depth without unwinding max_depth levels
  refs.pxi       extension records: registered objects, references, the Python handler; writing
  refs_read.pxi  ... reading them
  api.pxi        dumps and loads
"""
import sys
import uuid
from pickle import PickleBuffer

import numpy as np

cimport numpy as cnp
from cpython.buffer cimport PyBUF_FORMAT, PyBUF_ND, PyBUF_SIMPLE, PyBUF_STRIDES, PyBUF_WRITABLE, PyBuffer_FillInfo, PyBuffer_IsContiguous, PyBuffer_Release, PyObject_GetBuffer
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from cpython.datetime cimport (
    date_day, date_month, date_new, date_year, datetime_day, datetime_hour, datetime_microsecond,
    datetime_minute, datetime_month, datetime_new, datetime_second, datetime_year, import_datetime,
    time_hour, time_microsecond, time_minute, time_new, time_second, timedelta_days,
    timedelta_microseconds, timedelta_new, timedelta_seconds,
)
from cpython.dict cimport PyDict_Next
from cpython.float cimport PyFloat_AS_DOUBLE, PyFloat_FromDouble
from cpython.list cimport PyList_GET_ITEM, PyList_GET_SIZE, PyList_New, PyList_SET_ITEM
from cpython.long cimport PyLong_AsLongLongAndOverflow, PyLong_FromLongLong
from cpython.mem cimport PyMem_Calloc, PyMem_Free, PyMem_Malloc, PyMem_Realloc
from cpython.memoryview cimport PyMemoryView_FromObject, PyMemoryView_GET_BUFFER
from cpython.object cimport PyObject, PyTypeObject
from cpython.ref cimport Py_INCREF, Py_XDECREF
from cpython.tuple cimport PyTuple_New, PyTuple_SET_ITEM
from cpython.unicode cimport PyUnicode_AsUTF8AndSize, PyUnicode_DecodeUTF8
from cpython.pyport cimport PY_SSIZE_T_MAX
from libc.stdint cimport int8_t, int16_t, int32_t, int64_t, uint8_t, uint16_t, uint32_t, uint64_t
from libc.string cimport memchr, memcmp, memcpy, memmove

from qwire.errors import DecodeError, EncodeError, QError, QWireError
from qwire.qtypes import ATTRIBUTE_CODES, ATTRIBUTES
from qwire.functions import (
    ELIDED, BinaryPrimitive, Composition, Derived, Function, Iterator, Lambda, Projection, UnaryPrimitive,
)
from qwire.values import DateTime, Dict, KeyedTable, Table, Timestamp, Vector, _SymbolSource

cdef extern from "Python.h":
    dict _PyDict_NewPresized(Py_ssize_t minused)
    PyObject* PyDict_SetDefault(object d, object key, object value) except NULL
    object PyUnicode_New(Py_ssize_t size, unsigned int maxchar)
    void* PyUnicode_DATA(object s)
    int PyGC_Enable()
    int PyGC_Disable()

cdef extern from "numpy/arrayobject.h":
    object PyArray_NewFromDescr(PyTypeObject* subtype, PyObject* descr, int nd, cnp.npy_intp* dims,
                                cnp.npy_intp* strides, void* data, int flags, PyObject* obj)
    object PyArray_Scalar(void* data, PyObject* descr, PyObject* base)

cnp.import_array()
import_datetime()

import datetime as _dt

cdef type datetime_type = _dt.datetime
cdef type date_type = _dt.date
cdef type time_type = _dt.time
cdef type timedelta_type = _dt.timedelta
cdef type UUID = uuid.UUID
cdef object _uuid_new = uuid.UUID.__new__
cdef object _object_setattr = object.__setattr__
cdef object _SAFE_UUID_UNKNOWN = uuid.SafeUUID.unknown


cdef object _new_table(dict columns, object attr):
    # Skips Table.__init__'s checks: the decoder has made them.
    t = Table.__new__(Table)
    t._columns = columns
    t.attr = attr
    return t


# Decoded containers of qwire's classes are made in the core: a bare instance from the type's
# allocator, its __slots__ filled through their member offsets. Dict.__init__ is Python code and
# attribute assignment a type lookup per slot, which made messages of many small q dicts decode
# several times slower per byte than benign data.
cdef extern from "Python.h":
    ctypedef struct PyMemberDef:
        Py_ssize_t offset
    ctypedef struct PyMemberDescrObject:
        PyMemberDef* d_member
    object PyType_GenericAlloc(PyTypeObject* cls, Py_ssize_t nitems)


cdef Py_ssize_t _slot_offset(type cls, str name) except -1:
    d = cls.__dict__[name]
    if type(d).__name__ != "member_descriptor" or (<PyMemberDescrObject*>d).d_member.offset <= 0:
        raise TypeError(f"{cls.__name__}.{name} is not a __slots__ member")
    return (<PyMemberDescrObject*>d).d_member.offset


cdef inline void _fill_slot(object obj, Py_ssize_t offset, object value) noexcept:
    """Set a slot of an instance fresh from PyType_GenericAlloc (so empty: nothing to release)."""
    Py_INCREF(value)
    (<PyObject**>((<char*><PyObject*>obj) + offset))[0] = <PyObject*>value


cdef Py_ssize_t _DICT_KEYS = _slot_offset(Dict, "keys")
cdef Py_ssize_t _DICT_VALUES = _slot_offset(Dict, "values")
cdef Py_ssize_t _DICT_SORTED = _slot_offset(Dict, "sorted")


cdef object _new_dict(object keys, object values, bint sorted_):
    d = PyType_GenericAlloc(<PyTypeObject*>Dict, 0)
    _fill_slot(d, _DICT_KEYS, keys)
    _fill_slot(d, _DICT_VALUES, values)
    _fill_slot(d, _DICT_SORTED, True if sorted_ else False)
    return d


cdef object _new_keyed_table(object keys, object values, bint sorted_):
    if len(keys) != len(values):
        raise DecodeError(f"keyed table has {len(keys)} key rows but {len(values)} value rows")
    return KeyedTable(keys, values, sorted_)


include "constants.pxi"
include "cutil.pxi"
include "message.pxi"
include "write.pxi"
include "encode.pxi"
include "budget.pxi"
include "symtab.pxi"
include "stream.pxi"
include "decode.pxi"
include "decode_values.pxi"
include "decode_containers.pxi"
include "hashtally.pxi"
include "prescan.pxi"
include "refs.pxi"
include "refs_read.pxi"
include "api.pxi"
