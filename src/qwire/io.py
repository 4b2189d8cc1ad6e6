"""Messages in files and streams: load one, iterate many, memory-map, and an append-only log.

Reading into memory places the buffer so that the largest vector's payload is 64-byte aligned
(`qwire._core.Receiver`); a memory-mapped read touches only the pages the caller uses: vectors
decode as views into the map, which stays open while any of them lives.
"""
from __future__ import annotations

import mmap as _mmap
import os
from collections.abc import Iterator
from typing import IO, TYPE_CHECKING, Any, Union

from ._core import Receiver, loads, read_header_length
from .errors import DecodeError

__all__ = ["load", "iter_load", "MessageLog"]

_READ_CHUNK = 1 << 24

if TYPE_CHECKING:
    from typing_extensions import TypeAlias, TypeIs

    _Path: TypeAlias = Union[str, bytes, "os.PathLike[str]", "os.PathLike[bytes]"]


def _is_path(target: object) -> TypeIs[_Path]:
    return isinstance(target, (str, bytes, os.PathLike))


def load(file: _Path | IO[bytes], *, mmap: bool = False, **options: Any) -> Any:
    """Read one message from a binary file object or a path.

    mmap=True maps the file instead of reading it: vectors come back as read-only views into the
    map and only the pages you touch are read (a path, or a file object with a fileno()).
    options: passed to loads (max_depth, buffers, ...).
    """
    if _is_path(file):
        with open(file, "rb") as f:
            return load(f, mmap=mmap, **options)
    if mmap:
        mapped = _map(file)
        start = file.tell()
        if mapped is None or start >= len(mapped):
            raise DecodeError("no message: the file is at its end", start)
        view = memoryview(mapped)[start:]
        total = _message_length(view[:8], start)
        if total > len(view):
            raise DecodeError(f"file ends inside a message: {len(view)} of {total} bytes", start + len(view))
        file.seek(start + total)
        return loads(view[:total], **options)
    data = _read_message(file)
    if data is None:
        raise DecodeError("no message: the file is at its end", 0)
    return loads(data, **options)


def iter_load(file: _Path | IO[bytes], *, mmap: bool = False, **options: Any) -> Iterator[Any]:
    """Yield every message of a file (a path or a binary file object) in order, one at a time;
    a file that ends inside a message raises DecodeError. With mmap=True the file is mapped, so
    files larger than memory can be replayed."""
    if _is_path(file):
        with open(file, "rb") as f:
            yield from iter_load(f, mmap=mmap, **options)
        return
    if mmap:
        mapped = _map(file)
        if mapped is None:
            return
        view = memoryview(mapped)
        pos = file.tell()
        while pos < len(view):
            total = _message_length(view[pos : pos + 8], pos)
            if pos + total > len(view):
                raise DecodeError(f"file ends inside a message: {len(view) - pos} of {total} bytes", len(view))
            yield loads(view[pos : pos + total], **options)
            pos += total
        file.seek(pos)
        return
    while True:
        data = _read_message(file)
        if data is None:
            return
        yield loads(data, **options)


def _map(file: IO[bytes]) -> _mmap.mmap | None:
    size = os.fstat(file.fileno()).st_size
    if size == 0:
        if file.tell() == 0:
            raise DecodeError("no message: the file is empty", 0)
        return None
    return _mmap.mmap(file.fileno(), 0, access=_mmap.ACCESS_READ)


def _message_length(header: bytes | memoryview, offset: int) -> int:
    if len(header) < 8:
        raise DecodeError(f"file ends inside a message header ({len(header)} of 8 bytes)", offset + len(header))
    try:
        return read_header_length(header)
    except DecodeError as e:
        raise DecodeError(e.reason, offset + (e.offset or 0)) from None


def _read_message(file: IO[bytes]) -> memoryview | None:
    """The next message's bytes (aligned), or None at a clean end of file."""
    header = _read_exact(file, 8)
    if not header:
        return None
    total = _message_length(header, 0)
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


class MessageLog:
    """An append-only file of messages: `append(obj)` writes one message (vectored, no joining),
    `replay()` (or iterating) reads them all back in order through a memory map, so a log larger
    than memory replays with only the pages in use resident.

        log = MessageLog("ticks.qlog")
        log.append({"sym": "AAPL", "px": 187.5})
        for msg in log: ...
    """

    def __init__(self, path: str | os.PathLike[str], **dumps_options: Any) -> None:
        self.path = os.fspath(path)
        self._dumps_options = dumps_options
        self._file: IO[bytes] | None = None

    def append(self, obj: object) -> int:
        """Write obj as one message at the end of the log; returns its size in bytes."""
        from ._core import dumps

        if self._file is None:
            self._file = open(self.path, "ab")
        n = dumps(obj, **self._dumps_options).write_to(self._file)
        self._file.flush()
        return n

    def replay(self, **options: Any) -> Iterator[Any]:
        """Every message in the log, decoded, in order."""
        if self._file is not None:
            self._file.flush()
        if not os.path.exists(self.path) or os.path.getsize(self.path) == 0:
            return iter(())
        return iter_load(self.path, mmap=True, **options)

    __iter__ = replay

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def __enter__(self) -> MessageLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
