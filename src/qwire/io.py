"""Messages in files and streams: load one, iterate many, random access, and writing all of a message.

Reading into memory places the buffer so that the largest vector's payload is 64-byte aligned
(`qwire._core.Receiver`); a memory-mapped read touches only the pages the caller uses: vectors
decode as views into the map, which stays open while any of them lives.

A file of messages is the messages' bytes one after the other, each starting with its 8-byte
header; `MessageFile` finds them by reading the headers only (docs/FILES.md). The append-only,
crash-safe writer is `qwire.MessageLog` (qwire/log.py); kdb+'s own files are in qwire/kdbfiles.py.
"""
from __future__ import annotations

import errno
import mmap as _mmap
import os
import stat
from array import array
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import IO, TYPE_CHECKING, Any, Union, overload

from ._core import Receiver, dumps, loads, read_header_length
from .errors import DecodeError, EndOfFile

__all__ = ["dump", "load", "iter_load", "MessageFile", "Tail", "MessageLog"]

HEADER_SIZE = 8
DEFAULT_MAX_MESSAGE_SIZE = None  # load/iter_load/MessageFile: only the format's limit (and a file's size)
_READ_CHUNK = 1 << 24
_IOV_BATCH = 512  # buffers per writev/sendmsg call (IOV_MAX is 1024 on Linux)

if TYPE_CHECKING:
    import socket

    from typing_extensions import TypeAlias, TypeIs

    from ._core import Message

    _Path: TypeAlias = Union[str, bytes, "os.PathLike[str]", "os.PathLike[bytes]"]


def _is_path(target: object) -> TypeIs[_Path]:
    return isinstance(target, (str, bytes, os.PathLike))


# ---------------------------------------------------------------------------------------------
# Writing: every byte, or an error that says how many were written


def _pwrite_all(fd: int, views: list[memoryview], offset: int) -> None:
    """Write views at offset of fd (a regular file), resuming short writes; OSError otherwise."""
    pending = [v for v in views if v.nbytes]
    while pending:
        try:
            n = os.pwritev(fd, pending[:_IOV_BATCH], offset)
        except InterruptedError:
            continue
        if n <= 0:
            raise OSError(errno.EIO, "pwritev wrote nothing")
        offset += n
        while n:
            if n >= pending[0].nbytes:
                n -= pending[0].nbytes
                pending.pop(0)
            else:
                pending[0] = pending[0][n:]
                n = 0


# ---------------------------------------------------------------------------------------------
# Writing one message, reading one message / every message


def dump(obj: object, file: _Path | IO[bytes] | socket.socket | int, protocol: int | None = None,
         **options: Any) -> int:
    """Write `obj` as one message to a binary file object, socket or file descriptor, or to a new
    file at a path (created or truncated, as open(path, "wb")); returns the bytes written (the
    whole message: short writes are resumed; a target that takes no more raises BlockingIOError or
    OSError with `characters_written`, see Message.write_to). `protocol` is accepted, as
    pickle.dump(obj, file, protocol) takes it, and ignored. options: passed to dumps."""
    msg = dumps(obj, protocol, **options)
    if _is_path(file):
        with open(file, "wb") as f:
            return msg.write_to(f)
    return msg.write_to(file)


def load(file: _Path | IO[bytes], *, mmap: bool = False, max_message_size: int | None = DEFAULT_MAX_MESSAGE_SIZE,
         **options: Any) -> Any:
    """Read one message from a binary file object or a path.

    mmap=True maps the file instead of reading it: vectors come back as read-only views into the
    map and only the pages you touch are read (a path, or a file object with a fileno()).
    max_message_size: a header announcing more is a DecodeError before anything is read or
    allocated for the message (None: only the format's limit; a regular file's size also bounds it).
    At the end of the file (no byte left) raises `qwire.EndOfFile`, a DecodeError and an EOFError.
    options: passed to loads (max_depth, buffers, ...).
    """
    if _is_path(file):
        with open(file, "rb") as f:
            return load(f, mmap=mmap, max_message_size=max_message_size, **options)
    if mmap:
        mapped = _map(file)
        start = file.tell()
        if mapped is None or start >= len(mapped):
            raise EndOfFile("no message: the file is at its end", start)
        view = memoryview(mapped)[start:]
        total = _message_length(view[:HEADER_SIZE], start, max_message_size)
        if total > len(view):
            raise DecodeError(f"file ends inside a message: {len(view)} of {total} bytes", start + len(view))
        file.seek(start + total)
        return loads(view[:total], max_message_size=max_message_size, **options)
    data = _read_message(file, max_message_size)
    if data is None:
        raise EndOfFile("no message: the file is at its end", _tell(file))
    return loads(data, max_message_size=max_message_size, **options)


def iter_load(file: _Path | IO[bytes], *, mmap: bool = False, start: int = 0, stop: int | None = None,
              max_message_size: int | None = DEFAULT_MAX_MESSAGE_SIZE, **options: Any) -> Iterator[Any]:
    """Yield the messages of a file (a path or a binary file object) in order, one at a time;
    a file that ends inside a message raises DecodeError. With mmap=True the file is mapped, so
    files larger than memory can be replayed. start/stop: yield only messages start..stop-1
    (counted from the file object's position); the ones before start are skipped by their
    headers, never decoded (mmap=True) or read into memory."""
    if _is_path(file):
        with open(file, "rb") as f:
            yield from iter_load(f, mmap=mmap, start=start, stop=stop, max_message_size=max_message_size,
                                 **options)
        return
    if start < 0 or (stop is not None and stop < 0):
        raise ValueError("iter_load: start and stop count messages from the current position, >= 0")
    index = 0
    if mmap:
        if os.fstat(file.fileno()).st_size == 0:
            return  # an empty file holds no messages (load raises EndOfFile there)
        mapped = _map(file)
        if mapped is None:
            return
        view = memoryview(mapped)
        pos = file.tell()
        fd = file.fileno()
        while pos < len(view) and (stop is None or index < stop):
            size = os.fstat(fd).st_size   # before touching the map: pages past the end are SIGBUS
            if size < min(pos + HEADER_SIZE, len(view)):
                raise DecodeError(f"the file shrank to {size} bytes while it was read", size)
            total = _message_length(view[pos : pos + HEADER_SIZE], pos, max_message_size)
            if pos + total > len(view):
                raise DecodeError(f"file ends inside a message: {len(view) - pos} of {total} bytes", len(view))
            if pos + total > size:
                raise DecodeError(f"the file shrank to {size} bytes while it was read", size)
            if index >= start:
                yield loads(view[pos : pos + total], max_message_size=max_message_size, **options)
            pos += total
            index += 1
        file.seek(pos)
        return
    while stop is None or index < stop:
        if index < start:
            if not _skip_message(file, max_message_size):
                return
        else:
            data = _read_message(file, max_message_size)
            if data is None:
                return
            yield loads(data, max_message_size=max_message_size, **options)
        index += 1


def _tell(file: IO[bytes]) -> int | None:
    try:
        return file.tell()
    except (OSError, AttributeError, ValueError):
        return None


def _map(file: IO[bytes]) -> _mmap.mmap | None:
    size = os.fstat(file.fileno()).st_size
    if size == 0:
        if file.tell() == 0:
            raise EndOfFile("no message: the file is empty", 0)
        return None
    return _mmap.mmap(file.fileno(), 0, access=_mmap.ACCESS_READ)


def _message_length(header: bytes | memoryview, offset: int, limit: int | None = None) -> int:
    if len(header) < HEADER_SIZE:
        raise DecodeError(f"file ends inside a message header ({len(header)} of 8 bytes)", offset + len(header))
    try:
        return read_header_length(header, limit)
    except DecodeError as e:
        raise DecodeError(e.reason, offset + (e.offset or 0)) from None


def _bytes_left(file: IO[bytes]) -> int | None:
    """Bytes from the position to the end of a regular file; None for pipes, sockets, BytesIO."""
    try:
        st = os.fstat(file.fileno())
        if not stat.S_ISREG(st.st_mode):
            return None
        return st.st_size - file.tell()
    except (OSError, AttributeError, ValueError, TypeError):
        return None


def _read_message(file: IO[bytes], limit: int | None = None) -> memoryview | None:
    """The next message's bytes (aligned), or None at a clean end of file. The header's claim is
    checked against `limit` and, for a regular file, against the bytes the file still holds
    before anything is allocated for it."""
    start = _tell(file)
    header = _read_exact(file, HEADER_SIZE)
    if not header:
        return None
    total = _message_length(header, 0, limit)
    left = _bytes_left(file)
    if left is not None and total - HEADER_SIZE > left:
        raise DecodeError(f"file ends inside a message: the header announces {total} bytes, "
                          f"the file holds {left + HEADER_SIZE}", (start or 0) + HEADER_SIZE + left)
    receiver = Receiver(header, total)
    readinto = getattr(file, "readinto", None)
    while receiver.filled < total:
        if readinto is not None:
            region = receiver.writable(_READ_CHUNK)
            k = readinto(region)
        else:
            chunk = file.read(min(total - receiver.filled, _READ_CHUNK))
            k = receiver.write(chunk)
        if not k:
            raise DecodeError(f"file ends inside a message: {receiver.filled} of {total} bytes", receiver.filled)
        if readinto is not None:
            receiver.commit(k)
    return receiver.finish()


def _skip_message(file: IO[bytes], limit: int | None) -> bool:
    header = _read_exact(file, HEADER_SIZE)
    if not header:
        return False
    total = _message_length(header, 0, limit)
    try:
        file.seek(total - HEADER_SIZE, os.SEEK_CUR)
        return True
    except (OSError, AttributeError, ValueError):
        pass
    left = total - HEADER_SIZE
    while left:
        chunk = file.read(min(left, _READ_CHUNK))
        if not chunk:
            raise DecodeError(f"file ends inside a message: {total - left} of {total} bytes", total - left)
        left -= len(chunk)
    return True


def _read_exact(file: IO[bytes], n: int) -> bytes:
    out = b""
    while len(out) < n:
        chunk = file.read(n - len(out))
        if not chunk:
            if out:
                raise DecodeError(f"file ends inside a message header ({len(out)} of {n} bytes)", len(out))
            break
        out += chunk
    return out


# ---------------------------------------------------------------------------------------------
# Random access: offsets from a scan of headers only


INDEX_SUFFIX = ".qidx"
INDEX_MAGIC = b"qwireix1"   # then one little-endian int64 offset per message


def index_path(path: str) -> str:
    return path + INDEX_SUFFIX


def read_index(path: str, buf: Any, size: int) -> tuple[array[int], int]:
    """The offsets of an index side file that are proven right by the file itself: the first is
    0, and each message's header (checked at once with NumPy) is valid and ends where the next
    begins, within the file. That is exactly what a scan of the headers finds, so the longest
    prefix that passes is used and the rest is scanned. Returns (offsets, end of the last)."""
    import numpy as np

    empty = (array("q"), 0)
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError:
        return empty
    if not data.startswith(INDEX_MAGIC) or len(data) < len(INDEX_MAGIC) + 8:
        return empty
    n = (len(data) - len(INDEX_MAGIC)) // 8
    off = np.frombuffer(data, "<i8", count=n, offset=len(INDEX_MAGIC))
    if off[0] != 0:
        return empty
    inside = (off >= 0) & (off <= size - HEADER_SIZE)
    if not inside.all():
        n = int(np.argmin(inside))
        off = off[:n]
    if n == 0:
        return empty
    raw = np.frombuffer(buf, np.uint8, count=size)
    h = raw[off[:, None] + np.arange(HEADER_SIZE)].astype(np.int64)
    little = h[:, 4] | (h[:, 5] << 8) | (h[:, 6] << 16) | (h[:, 7] << 24)
    big = h[:, 7] | (h[:, 6] << 8) | (h[:, 5] << 16) | (h[:, 4] << 24)
    length = (h[:, 3] << 32) | np.where(h[:, 0] == 1, little, big)
    ends = off + length
    nxt = np.append(off[1:], -1)
    good = ((h[:, 0] <= 1) & (h[:, 1] <= 2) & (h[:, 2] <= 2) & (length >= HEADER_SIZE + 1)
            & (ends <= size) & ((ends == nxt) | (np.arange(n) == n - 1)))
    if not good.all():
        n = int(np.argmin(good))
        if n == 0:
            return empty
    return array("q", off[:n].tobytes()), int(ends[n - 1])


@dataclass(frozen=True)
class Tail:
    """Bytes at the end of a file of messages that are not a complete message: `offset` where
    they start, `nbytes` how many, `reason` why they are not a message."""

    offset: int
    nbytes: int
    reason: str


def scan_headers(buf: Any, start: int, end: int, offsets: array[int], limit: int | None = None) -> tuple[int, str | None]:
    """Append to `offsets` the start of every complete message in buf[start:end], reading only
    their headers; returns (end of the last complete message, None) or, when bytes remain that are
    not a complete message, (where they start, why)."""
    pos = start
    append = offsets.append
    while pos < end:
        if end - pos < HEADER_SIZE:
            return pos, f"{end - pos} bytes, less than a header"
        try:
            total = read_header_length(buf[pos : pos + HEADER_SIZE], limit)
        except DecodeError as e:
            return pos, f"not a message header: {e.reason}"
        if pos + total > end:
            return pos, f"a message of {total} bytes of which {end - pos} were written"
        append(pos)
        pos += total
    return pos, None


class MessageFile(Sequence[Any]):
    """A file of concatenated messages, read by index: `len(f)`, `f[i]`, `f[i:j]`, iteration.

        with qwire.MessageFile("ticks.qlog") as f:
            n = len(f)            # offsets come from reading the headers only
            last = f[-1]          # decodes one message, through a memory map
            window = f[1000:1010]

    Opening reads every header once (8 bytes a message), or, when the file has an index (the
    side file `<path>.qidx` that MessageLog keeps), checks the indexed offsets against the headers
    at once (NumPy) and reads only the headers after them; a missing, stale or wrong index costs a
    scan, never a wrong answer (index=False: always scan). `refresh()` reads the headers of what
    was appended since. Trailing bytes that are not a complete message (a writer that died, or
    one still writing) are never returned: `tail` reports them. Decoded vectors are views into
    the map (read-only). Before each decode the file's size is checked against the message's
    end, so a file that shrank raises DecodeError instead of SIGBUS (see SECURITY.md for the race
    that no check can close). options: passed to loads for every message.
    """

    def __init__(self, path: _Path, *, max_message_size: int | None = DEFAULT_MAX_MESSAGE_SIZE, index: bool = True,
                 **loads_options: Any) -> None:
        self.path = os.fsdecode(path)
        self._use_index = index
        self._indexed = 0      # how many leading offsets the index side file is known to hold
        self._max_message_size = max_message_size
        self._loads_options = dict(loads_options, max_message_size=max_message_size)
        self._fd = self._open_fd()
        self._offsets = array("q")
        self._end = 0          # end of the last complete message
        self._map: _mmap.mmap | None = None
        self._view: memoryview | None = None    # of the whole map, sliced per message
        self._map_size = 0
        self.tail: Tail | None = None
        try:
            self.refresh()
        except BaseException:
            self.close()
            raise

    def _open_fd(self) -> int:
        return os.open(self.path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))

    # -- offsets ----------------------------------------------------------------------------

    def refresh(self) -> int:
        """Index what was appended since the last look; returns the number of messages now."""
        size = os.fstat(self._require_fd()).st_size
        if size < self._end:
            self._forget_beyond(size)
        if size > self._end or self.tail is not None:
            self._scan(size)
        return len(self._offsets)

    def _forget_beyond(self, size: int) -> None:
        """The file shrank: keep the messages that are still whole."""
        offsets = self._offsets
        end = self._end
        while offsets and end > size:
            end = offsets.pop()     # the start of a message is the end of the one before
        self._end = end if offsets else 0
        self._indexed = min(self._indexed, len(offsets))
        self.tail = None
        self._drop_map()

    def _length_at(self, i: int) -> int:
        nxt = self._offsets[i + 1] if i + 1 < len(self._offsets) else self._end
        return nxt - self._offsets[i]

    def _scan(self, size: int) -> None:
        if size == 0:
            self.tail = None
            return
        buf = self._mapped(size)
        if not self._offsets and self._use_index:
            self._offsets, self._end = read_index(index_path(self.path), buf, size)
            self._indexed = len(self._offsets)
        end, reason = scan_headers(buf, self._end, size, self._offsets, self._max_message_size)
        self._end = end
        self.tail = None if reason is None else Tail(end, size - end, reason)

    @property
    def offsets(self) -> Sequence[int]:
        """Byte offset of every message (a read-only view)."""
        return memoryview(self._offsets).toreadonly()

    @property
    def nbytes(self) -> int:
        """Bytes of complete messages (where the next message goes)."""
        return self._end

    # -- the map ----------------------------------------------------------------------------

    def _require_fd(self) -> int:
        if self._fd < 0:
            raise ValueError(f"{type(self).__name__} is closed")
        return self._fd

    def _mapped(self, need: int) -> _mmap.mmap:
        if self._map is None or self._map_size < need:
            size = os.fstat(self._require_fd()).st_size
            if size < need:
                raise DecodeError(f"{self.path} is {size} bytes, shorter than the {need} bytes indexed: "
                                  "it was truncated or replaced while open", size)
            self._drop_map()
            self._map = _mmap.mmap(self._fd, size, access=_mmap.ACCESS_READ)
            self._view = memoryview(self._map)
            self._map_size = size
        return self._map

    def _drop_map(self) -> None:
        if self._view is not None:
            self._view.release()   # slices already handed out keep the map alive on their own
            self._view = None
        if self._map is not None:
            try:
                self._map.close()
            except BufferError:
                pass  # decoded views still use it; it closes when the last one goes
            self._map = None
            self._map_size = 0

    def message_bytes(self, i: int) -> memoryview:
        """The bytes of message i, as a read-only view into the map (no decoding)."""
        n = len(self._offsets)
        if i < 0:
            i += n
        if not 0 <= i < n:
            raise IndexError(f"message index out of range: {n} messages")
        return self._range_view(i, i + 1)[0]

    def _range_view(self, first: int, stop: int) -> tuple[memoryview, int]:
        """(a view of messages first..stop-1, the file offset where it starts). The file's size is checked against the range's end before the view is made:
        touching mapped pages past the end of a file raises SIGBUS."""
        start = self._offsets[first]
        end = self._offsets[stop] if stop < len(self._offsets) else self._end
        self._mapped(end)
        size = os.fstat(self._fd).st_size
        if size < end:
            raise DecodeError(f"{self.path} shrank to {size} bytes under the map; message {stop - 1} "
                              f"ends at {end}", size)
        assert self._view is not None
        return self._view[start:end], start

    def _iter_range(self, first: int, stop: int) -> Iterator[Any]:
        if first >= stop:
            return
        view, base = self._range_view(first, stop)
        offsets = self._offsets
        options = self._loads_options
        for k in range(first, stop):
            a = offsets[k] - base
            b = (offsets[k + 1] if k + 1 < stop else base + view.nbytes) - base
            yield loads(view[a:b], **options)

    # -- Sequence ---------------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self._offsets)

    @overload
    def __getitem__(self, i: int) -> Any: ...
    @overload
    def __getitem__(self, i: slice) -> list[Any]: ...
    def __getitem__(self, i: int | slice) -> Any:
        if isinstance(i, slice):
            first, stop, step = i.indices(len(self._offsets))
            if step == 1:
                return list(self._iter_range(first, stop))
            return [self[k] for k in range(first, stop, step)]
        return loads(self.message_bytes(i.__index__()), **self._loads_options)

    def __iter__(self) -> Iterator[Any]:
        """Every message indexed now, in order (one size check, then one decode each)."""
        return self._iter_range(0, len(self._offsets))

    def close(self) -> None:
        self._drop_map()
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def __enter__(self) -> MessageFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:
            pass

    def __repr__(self) -> str:
        tail = f", tail of {self.tail.nbytes} bytes" if self.tail else ""
        return f"<{type(self).__name__} {self.path!r}: {len(self._offsets)} messages, {self._end} bytes{tail}>"


def __getattr__(name: str) -> Any:
    # MessageLog moved to qwire.log (it needs the writer's locking and syncing); kept importable here.
    if name == "MessageLog":
        from .log import MessageLog

        return MessageLog
    raise AttributeError(name)
