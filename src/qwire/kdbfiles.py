"""kdb+'s own files: single objects written by `set` (read by `get`) and tickerplant logs (`-11!`).

Layouts (docs/FILES.md says which were checked against bytes written by real kdb+, and where):

* an object file (`` `:f set x ``) is `ff 01` followed by the object's serialized body (what
  `-8!x` gives without its 8-byte header);
* a simple vector file is `fe 20 <type> <attr> 00 00 00 00 <count: int64>` then the items;
* a tickerplant log is the file of `` `:log set () `` (`ff 01 00 00 00 00 00 00`) followed by each
  record's serialized body, appended by `h enlist (`upd;`trade;data)`; the list's count in the
  header is not updated, so records are read to the end of the file.

Every file is little-endian. Records and objects are decoded by `qwire.loads` (so its limits and
refusals apply), one at a time; a record's extent is found by walking its type bytes and counts
(`object_end`), which reads no more than the record's own bytes.
"""
from __future__ import annotations

import mmap as _mmap
import os
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NamedTuple

from ._core import dumps, loads
from .errors import DecodeError, QWireError

if TYPE_CHECKING:
    from .io import _Path

__all__ = ["get", "set", "object_end", "TickerplantLog", "TickRecord", "LogCount", "BadTailError",
           "OBJECT_FILE_MAGIC", "VECTOR_FILE_MAGIC"]

OBJECT_FILE_MAGIC = b"\xff\x01"
VECTOR_FILE_MAGIC = b"\xfe\x20"
VECTOR_HEADER_SIZE = 16
EMPTY_LIST_BODY = b"\x00\x00\x00\x00\x00\x00"       # -8!() without its header: type 0, attr 0, count 0
LOG_HEADER = OBJECT_FILE_MAGIC + EMPTY_LIST_BODY     # what `:log set () writes
MAX_NESTING = 256

# bytes per item of the fixed-width types (atom -t, vector t)
_WIDTHS = {1: 1, 2: 16, 4: 1, 5: 2, 6: 4, 7: 8, 8: 4, 9: 8, 10: 1, 12: 8, 13: 4, 14: 4, 15: 8,
           16: 8, 17: 4, 18: 4, 19: 4}
_SYMBOL, _ERROR, _TABLE, _DICT, _SORTED_DICT, _LAMBDA = 11, -128, 98, 99, 127, 100
_ONE_BYTE_APPLICABLES = (101, 102, 103)
_LISTS_OF_APPLICABLES = (104, 105)
_DERIVED = range(106, 112)


class BadTailError(QWireError, ValueError):
    """kdb+'s 'badtail: the log ends with bytes that are not a complete record. `count` and
    `valid_length` say how many records and bytes are good (as `-11!(-2;x)` does)."""

    def __init__(self, message: str, count: int, valid_length: int) -> None:
        self.count = count
        self.valid_length = valid_length
        super().__init__(message)


class _Short(Exception):
    """The object runs past the end of the bytes."""


def _find_nul(buf: Any, pos: int, end: int) -> int:
    at = buf.find(b"\x00", pos, end)
    if at < 0:
        raise _Short
    return int(at) + 1


def object_end(buf: Any, pos: int, end: int, depth: int = 0) -> int:
    """Where the serialized q object starting at buf[pos] ends (buf: bytes or mmap). DecodeError
    for a type byte that is not a kdb+ type on disk; _Short if the bytes end first."""
    if depth > MAX_NESTING:
        raise DecodeError(f"objects nested deeper than {MAX_NESTING}", pos)
    if pos >= end:
        raise _Short
    t = buf[pos] - 256 if buf[pos] > 127 else buf[pos]
    p = pos + 1
    if t < 0:
        if -t in _WIDTHS:
            q = p + _WIDTHS[-t]
        elif t in (-_SYMBOL, _ERROR):
            q = _find_nul(buf, p, end)
        else:
            raise DecodeError(f"type {t} is not a kdb+ atom type", pos, t)
    elif t in _WIDTHS or t in (0, _SYMBOL):
        if p + 5 > end:
            raise _Short
        (count,) = struct.unpack_from("<i", buf, p + 1)
        if count < 0:
            raise DecodeError(f"negative count {count}", p + 1, t)
        q = p + 5
        if t in _WIDTHS:
            q += count * _WIDTHS[t]
        elif t == _SYMBOL:
            for _ in range(count):
                q = _find_nul(buf, q, end)
        else:
            for _ in range(count):
                q = object_end(buf, q, end, depth + 1)
    elif t == _TABLE:
        q = object_end(buf, p + 1, end, depth + 1)
    elif t in (_DICT, _SORTED_DICT):
        q = object_end(buf, object_end(buf, p, end, depth + 1), end, depth + 1)
    elif t == _LAMBDA:
        q = object_end(buf, _find_nul(buf, p, end), end, depth + 1)
    elif t in _ONE_BYTE_APPLICABLES:
        q = p + 1
    elif t in _LISTS_OF_APPLICABLES:
        if p + 4 > end:
            raise _Short
        (count,) = struct.unpack_from("<i", buf, p)
        if count < 0:
            raise DecodeError(f"negative count {count}", p, t)
        q = p + 4
        for _ in range(count):
            q = object_end(buf, q, end, depth + 1)
    elif t in _DERIVED:
        q = object_end(buf, p, end, depth + 1)
    else:
        raise DecodeError(f"type {t} is not a kdb+ type found in files qwire reads "
                          "(enumerations, mapped and foreign objects are not supported)", pos, t)
    if q > end:
        raise _Short
    return q


def _as_message(body: Any) -> bytes:
    """An IPC message (little-endian, async) around a serialized body."""
    total = 8 + len(body)
    if total >= 1 << 40:
        raise DecodeError(f"an object of {len(body)} bytes is beyond the IPC format's limit")
    return bytes((1, 0, 0, total >> 32)) + struct.pack("<I", total & 0xFFFFFFFF) + bytes(body)


def _read_all(path: _Path) -> tuple[_mmap.mmap | bytes, int]:
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        if size == 0:
            return b"", 0
        return _mmap.mmap(f.fileno(), 0, access=_mmap.ACCESS_READ), size


def get(path: _Path, **loads_options: Any) -> Any:
    """Read a file written by kdb+'s `set` (or by `qwire.kdbfiles.set`): an object file (`ff 01`),
    a simple vector file (`fe 20`), or a log of appended items (a list file), as `get` would.
    loads_options: passed to loads (max_depth, ...)."""
    buf, size = _read_all(path)
    if size < 2:
        raise DecodeError(f"{os.fsdecode(path)} is {size} bytes: not a kdb+ file", 0)
    magic = bytes(buf[:2])
    if magic == VECTOR_FILE_MAGIC:
        return _get_vector(buf, size, **loads_options)
    if magic != OBJECT_FILE_MAGIC:
        raise DecodeError(f"not a kdb+ object file: it starts with {magic.hex()}, not ff01 (set) or "
                          "fe20 (a vector written by set)", 0)
    try:
        first_end = object_end(buf, 2, size)
    except _Short:
        raise DecodeError("the file ends inside its object", size) from None
    value = loads(_as_message(buf[2:first_end]), **loads_options)
    if first_end == size:
        return value
    if buf[2] != 0:
        raise DecodeError(f"{size - first_end} bytes after the object", first_end)
    items = list(value)  # a list file with items appended after it (a log): get reads them all
    for body in _records(buf, first_end, size):
        items.append(loads(_as_message(body), **loads_options))
    return items


def _records(buf: Any, pos: int, size: int) -> Iterator[Any]:
    while pos < size:
        try:
            end = object_end(buf, pos, size)
        except _Short:
            raise DecodeError(f"the file ends inside an item: {size - pos} bytes at {pos}", pos) from None
        yield buf[pos:end]
        pos = end


def _get_vector(buf: Any, size: int, **loads_options: Any) -> Any:
    if size < VECTOR_HEADER_SIZE:
        raise DecodeError(f"a vector file's header is {VECTOR_HEADER_SIZE} bytes; the file is {size}", size)
    qtype, attr = buf[2], buf[3]
    (count,) = struct.unpack_from("<q", buf, 8)
    width = _WIDTHS.get(qtype)
    if width is None:
        raise DecodeError(f"a vector file of type {qtype}: only fixed-width types are read", 2, qtype)
    if count < 0 or VECTOR_HEADER_SIZE + count * width != size:
        raise DecodeError(f"a vector file of {count} items of {width} bytes must be "
                          f"{VECTOR_HEADER_SIZE + count * width} bytes, not {size}", 8, qtype)
    if count >= 1 << 31:
        raise DecodeError(f"{count} items: more than an IPC vector carries", 8, qtype)
    body = bytes((qtype, attr)) + struct.pack("<i", count) + bytes(buf[VECTOR_HEADER_SIZE:size])
    return loads(_as_message(body), **loads_options)


def _body(obj: object) -> bytes:
    msg = bytes(dumps(obj, q_compatible=True))
    if msg[2]:
        raise QWireError("a compressed message cannot be written as a kdb+ file")
    return msg[8:]


def set(path: _Path, obj: object, *, vector_layout: bool = True) -> int:  # noqa: A001 - q's name
    """Write obj as kdb+'s `` `:path set obj `` does: a simple vector of a fixed-width type as a
    vector file (`fe 20`, unless vector_layout=False), anything else as `ff 01` and the
    serialized body. Written to a temporary file, synced and renamed into place: the path holds
    the old file or the new one, never a part. Returns the file's size."""
    body = _body(obj)
    if vector_layout and body[0] in _WIDTHS:
        (count,) = struct.unpack_from("<i", body, 2)
        data = VECTOR_FILE_MAGIC + bytes((body[0], body[1])) + b"\0\0\0\0" + struct.pack("<q", count) + body[6:]
    else:
        data = OBJECT_FILE_MAGIC + body
    target = os.fsdecode(path)
    tmp = f"{target}.qwire-tmp-{os.getpid()}"
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return len(data)


class TickRecord(NamedTuple):
    """One record of a tickerplant log: `function` (the first item, usually 'upd') applied to
    `args` (the rest). For (`upd;`trade;data), `table` is 'trade' and `data` the rows."""

    function: Any
    args: tuple[Any, ...]

    @property
    def table(self) -> Any:
        return self.args[0] if self.args else None

    @property
    def data(self) -> Any:
        return self.args[1] if len(self.args) > 1 else None


@dataclass(frozen=True)
class LogCount:
    """What `-11!(-2;x)` reports: `records` complete records, `valid_length` bytes up to the end
    of the last one, of `file_length`; `bad_tail` when they differ."""

    records: int
    valid_length: int
    file_length: int

    @property
    def bad_tail(self) -> bool:
        return self.valid_length != self.file_length


class TickerplantLog:
    """A kdb+ tickerplant log, read (and written) as kdb+ does.

        log = qwire.kdbfiles.TickerplantLog("sym2024.01.02")
        log.count()                  # -11!(-2;x): LogCount(records, valid_length, file_length)
        for rec in log.replay():     # -11!x: every record; BadTailError at a bad tail
            rec.function, rec.table, rec.data
        log.replay(n)                # -11!(n;x): the first n records

    Records are decoded one at a time through a memory map. `create` and `append` write a log
    that kdb+ replays (`` `:f set () `` then `h enlist record`).
    """

    def __init__(self, path: _Path, **loads_options: Any) -> None:
        self.path = os.fsdecode(path)
        self._loads_options = loads_options

    @classmethod
    def create(cls, path: _Path, **loads_options: Any) -> TickerplantLog:
        """A new, empty log (replacing any file at path), as `` `:path set () `` makes it."""
        with open(path, "wb") as f:
            f.write(LOG_HEADER)
            f.flush()
            os.fsync(f.fileno())
        return cls(path, **loads_options)

    def append(self, function: str, *args: object, sync: bool = True) -> int:
        """Append the record (function; args...) as `h enlist (`upd;`t;data)` does; returns its
        size. The record is written whole (resuming short writes) and synced unless sync=False;
        on an error the file is cut back to its previous size."""
        from .io import _pwrite_all

        body = _body([function, *args])
        fd = os.open(self.path, os.O_RDWR)
        try:
            import fcntl

            fcntl.flock(fd, fcntl.LOCK_EX)
            start = os.fstat(fd).st_size
            if start < len(LOG_HEADER) or os.pread(fd, 2, 0) != OBJECT_FILE_MAGIC:
                raise DecodeError(f"{self.path} is not a log (create it first)", 0)
            try:
                _pwrite_all(fd, [memoryview(body)], start)
                if sync:
                    os.fsync(fd)
            except BaseException:
                os.ftruncate(fd, start)
                raise
        finally:
            os.close(fd)
        return len(body)

    def _open(self) -> tuple[Any, int]:
        buf, size = _read_all(self.path)
        if size < len(LOG_HEADER) or bytes(buf[:2]) != OBJECT_FILE_MAGIC or buf[2] != 0:
            raise DecodeError(f"{self.path} is not a tickerplant log: it does not start with the "
                              f"header of an empty list file ({LOG_HEADER.hex()})", 0)
        return buf, size

    def _scan(self, buf: Any, size: int, limit: int) -> Iterator[tuple[int, int]]:
        """(start, end) of each complete record, up to limit records (-1: all); stops at a bad tail."""
        pos, n = len(LOG_HEADER), 0
        while pos < size and (limit < 0 or n < limit):
            if os.stat(self.path).st_size < size:   # before touching the map: a shorter file is SIGBUS
                raise DecodeError(f"{self.path} shrank while it was read (it was {size} bytes)", pos)
            try:
                end = object_end(buf, pos, size)
            except (_Short, DecodeError):
                return
            yield pos, end
            pos, n = end, n + 1

    def count(self) -> LogCount:
        """The number of complete records and the length of the valid part (-11!(-2;x))."""
        buf, size = self._open()
        end, n = len(LOG_HEADER), 0
        for _, end in self._scan(buf, size, -1):
            n += 1
        return LogCount(n, end, size)

    def replay(self, n: int = -1) -> Iterator[TickRecord]:
        """Yield the records in order: all of them (n=-1, -11!x) or the first n (-11!(n;x)).
        Raises BadTailError when the log ends in a bad tail before n records were yielded."""
        if n < -1:
            raise ValueError("n is -1 (every record) or a count of records")
        buf, size = self._open()
        done, end = 0, len(LOG_HEADER)
        for start, end in self._scan(buf, size, n):
            value = loads(_as_message(buf[start:end]), **self._loads_options)   # copies the record
            yield _record(value)
            done += 1
        if (n < 0 or done < n) and end != size:
            raise BadTailError(f"badtail: {size - end} bytes at offset {end} of {self.path} are not a "
                               f"complete record ({done} records are)", done, end)

    __iter__ = replay

    def __len__(self) -> int:
        return self.count().records


def _record(value: Any) -> TickRecord:
    if isinstance(value, (list, tuple)) and value:
        return TickRecord(value[0], tuple(value[1:]))
    return TickRecord(value, ())
