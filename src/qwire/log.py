"""MessageLog: an append-only file of messages that keeps what it acknowledged.

The file is plain concatenated messages (what `qwire.iter_load` and `qwire.MessageFile` read).
What makes it a log (docs/FILES.md states the guarantees precisely):

* every append holds an exclusive `flock` on the file while it checks the end and writes, so
  writers in any number of processes are serialized (or, with exclusive=True, a second writer
  is refused with `LogLockedError`);
* an append writes the whole message at the end with positioned writes, resuming short writes;
  if any write or sync fails (full disk, quota, file size limit, I/O error) the file is cut back
  to where it was and the error is raised: the log is as it was;
* bytes at the end that are not a complete message (a writer died mid-append) are never
  returned as a message; they are reported (`tail`, a `TornTailWarning`) when the log is opened,
  and the next append saves them to a side file and cuts them off before writing;
* `sync=` says when appended bytes are forced to the device: "always" (before append returns),
  "batch" (after every `sync_every`-th append, after the first append `sync_interval` seconds
  past the last sync, and on sync()/close(); no timer runs) or
  "never" (left to the OS). Every policy survives the death of the writing process (the bytes
  are in the kernel once write returns); only "always" survives power loss or a kernel crash for
  every acknowledged append.
"""
from __future__ import annotations

import errno
import os
import time
import warnings
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, Literal

from ._core import Encoder
from .errors import QWireError
from .io import DEFAULT_MAX_MESSAGE_SIZE, INDEX_MAGIC, MessageFile, Tail, _pwrite_all, index_path

if TYPE_CHECKING:
    from .io import _Path

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

__all__ = ["MessageLog", "LogLockedError", "TornTailWarning", "SYNC_POLICIES"]

SYNC_POLICIES = ("always", "batch", "never")
DEFAULT_SYNC_EVERY = 64          # appends between syncs with sync="batch"
DEFAULT_SYNC_INTERVAL = 1.0      # seconds between syncs with sync="batch"
INDEX_BATCH = 64                 # offsets written to the index side file at a time (and on sync/close)
DEFAULT_LOCK_TIMEOUT = 10.0      # seconds an append or refresh waits for another writer's lock

_fdatasync = getattr(os, "fdatasync", os.fsync)


class LogLockedError(QWireError, BlockingIOError):
    """Another MessageLog holds the log's lock (exclusive=True refuses to share a log)."""


class TornTailWarning(UserWarning):
    """A log ends with bytes that are not a complete message (a writer died mid-append)."""


class MessageLog(MessageFile):
    """An append-only, crash-safe file of messages, readable by index.

        log = qwire.MessageLog("ticks.qlog")          # sync="always" by default
        log.append({"sym": "AAPL", "px": 187.5})       # durable when it returns
        len(log); log[-1]; log[10:20]
        for msg in log: ...

    sync: "always" | "batch" | "never" (module docstring; docs/FILES.md has the measured costs).
    exclusive: hold the lock from open to close; a second writer gets LogLockedError at once.
    Without it, each append takes the lock, and appends from several processes interleave whole;
    lock_timeout: how long an append (or opening) waits for the lock before LogLockedError.
    dumps_options: as for dumps (msg_type, compress, q_compatible, registry, ...).
    """

    def __init__(self, path: _Path, *, sync: Literal["always", "batch", "never"] = "always",
                 sync_every: int = DEFAULT_SYNC_EVERY, sync_interval: float = DEFAULT_SYNC_INTERVAL,
                 exclusive: bool = False, index: bool = True, lock_timeout: float = DEFAULT_LOCK_TIMEOUT,
                 max_message_size: int | None = DEFAULT_MAX_MESSAGE_SIZE,
                 **dumps_options: Any) -> None:
        if fcntl is None:  # pragma: no cover
            raise OSError("MessageLog needs fcntl.flock (POSIX)")
        if sync not in SYNC_POLICIES:
            raise ValueError(f"sync must be one of {SYNC_POLICIES}, not {sync!r}")
        if sync_every < 1 or sync_interval <= 0:
            raise ValueError("sync_every must be >= 1 and sync_interval > 0")
        self.sync_policy = sync
        self._sync_every = sync_every
        self._sync_interval = sync_interval
        self._exclusive = exclusive
        self._lock_timeout = lock_timeout
        if "compress" in dumps_options:   # compression is dumps's, not the Encoder's
            from ._core import dumps

            self._encode: Any = lambda obj: dumps(obj, **dumps_options)
        else:
            self._encode = Encoder(**dumps_options).encode
        self._unsynced = 0
        self._last_sync = time.monotonic()
        self.cut_tails: list[tuple[Tail, str]] = []   # (what was cut, the side file holding its bytes)
        self._fd = -1
        created = not os.path.exists(path)
        super().__init__(path, max_message_size=max_message_size, index=index)
        self._index_fd = -1
        if index:
            self._index_fd = os.open(index_path(self.path), os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o644)
        if created and sync != "never":
            _sync_directory(self.path)
        if self.tail is not None:
            warnings.warn(f"{self.path}: {self.tail.nbytes} bytes at offset {self.tail.offset} are not a "
                          f"complete message ({self.tail.reason}); they are ignored and will be cut "
                          "before the next append", TornTailWarning, stacklevel=2)

    def _open_fd(self) -> int:
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o644)
        try:
            if self._exclusive:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    raise LogLockedError(errno.EWOULDBLOCK, f"{self.path} is open for writing by another "
                                         "MessageLog (exclusive=True refuses to share it)") from None
        except BaseException:
            os.close(fd)
            raise
        return fd

    def refresh(self) -> int:
        """Index what other writers appended since the last look (under a shared lock, so an
        append in progress is never mistaken for a torn tail)."""
        fd = self._require_fd()
        if self._exclusive:
            return super().refresh()
        self._lock(fd, fcntl.LOCK_SH)
        try:
            return super().refresh()
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)

    def append(self, obj: object) -> int:
        """Write obj as one message at the end of the log; returns its size in bytes. When it
        returns, the message is in the file (and on the device, with sync="always"). On an
        error the log is left as it was and the error is raised."""
        msg = self._encode(obj)
        views = [memoryview(s).cast("B") for s in msg.segments()]
        nbytes = sum(v.nbytes for v in views)
        fd = self._require_fd()
        if not self._exclusive:
            self._lock(fd, fcntl.LOCK_EX)
        try:
            self._catch_up(fd)
            start = self._end
            try:
                _pwrite_all(fd, views, start)
                if self.sync_policy == "always":
                    _fdatasync(fd)
            except BaseException as e:
                self._restore(fd, start, e)
                raise
            self._offsets.append(start)
            self._end = start + nbytes
            if self._index_fd >= 0 and len(self._offsets) - self._indexed >= INDEX_BATCH:
                self._write_index()
        finally:
            if not self._exclusive:
                fcntl.flock(fd, fcntl.LOCK_UN)
        if self.sync_policy == "batch":
            self._unsynced += 1
            if self._unsynced >= self._sync_every or time.monotonic() - self._last_sync >= self._sync_interval:
                self.sync()
        return nbytes

    def _lock(self, fd: int, kind: int) -> None:
        """flock(kind), waiting at most lock_timeout seconds (another append takes microseconds
        to milliseconds; a log held with exclusive=True is refused with LogLockedError)."""
        try:
            fcntl.flock(fd, kind | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            pass
        deadline = time.monotonic() + self._lock_timeout
        pause = 20e-6
        while True:
            time.sleep(pause)
            try:
                fcntl.flock(fd, kind | fcntl.LOCK_NB)
                return
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise LogLockedError(errno.EWOULDBLOCK, f"{self.path} stayed locked by another writer for "
                                         f"{self._lock_timeout} s (a MessageLog opened with exclusive=True?)") from None
                pause = min(pause * 2, 0.005)

    def _write_index(self) -> None:
        """Under the lock: write the offsets the index side file lacks (every INDEX_BATCH appends,
        and on sync and close). The index is a cache (never synced): readers check it against the
        headers and scan what it does not prove."""
        k = self._indexed
        try:
            if k == 0:
                os.pwrite(self._index_fd, INDEX_MAGIC, 0)
            os.pwrite(self._index_fd, self._offsets[k:].tobytes(), len(INDEX_MAGIC) + 8 * k)
            if k == 0 or k < len(self._offsets) - 1:   # (re)built: drop whatever stale entries followed
                os.ftruncate(self._index_fd, len(INDEX_MAGIC) + 8 * len(self._offsets))
            self._indexed = len(self._offsets)
        except OSError:
            pass  # a full disk may refuse the index after accepting the data: the next open scans

    def _catch_up(self, fd: int) -> None:
        """Under the exclusive lock: index other writers' appends, and cut a torn tail."""
        size = os.fstat(fd).st_size
        if size != self._end or self.tail is not None:
            MessageFile.refresh(self)
        if self.tail is not None:
            self._cut_tail(fd, self.tail)

    def _cut_tail(self, fd: int, tail: Tail) -> None:
        side = f"{self.path}.tail-{tail.offset}"
        data = os.pread(fd, tail.nbytes, tail.offset)
        with open(side, "wb") as f:     # keep the evidence; it was never acknowledged
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.ftruncate(fd, tail.offset)
        _fdatasync(fd)
        if self._index_fd >= 0:
            self._indexed = min(self._indexed, len(self._offsets))
            os.ftruncate(self._index_fd, len(INDEX_MAGIC) + 8 * self._indexed)
        self._drop_map()
        self.cut_tails.append((tail, side))
        self.tail = None

    def _restore(self, fd: int, start: int, exc: BaseException) -> None:
        try:
            os.ftruncate(fd, start)
            if self.sync_policy != "never":
                _fdatasync(fd)
        except OSError as e2:  # the tail is now torn; the next open or append finds and cuts it
            note = f"qwire: cutting the failed append at offset {start} also failed: {e2}"
            if hasattr(exc, "add_note"):
                exc.add_note(note)
        self._drop_map()

    def _flush_index(self) -> None:
        if self._index_fd < 0 or self._fd < 0 or self._indexed == len(self._offsets):
            return
        if not self._exclusive:
            try:
                self._lock(self._fd, fcntl.LOCK_EX)
            except LogLockedError:
                return  # the index is a cache: what it lacks, the next open scans
        try:
            if os.fstat(self._fd).st_size >= self._end:
                self._write_index()
        finally:
            if not self._exclusive:
                fcntl.flock(self._fd, fcntl.LOCK_UN)

    def sync(self) -> None:
        """Force every append so far to the device (fdatasync); bring the index up to date."""
        self._flush_index()
        if self._fd >= 0:
            _fdatasync(self._fd)
        self._unsynced = 0
        self._last_sync = time.monotonic()

    def replay(self, **options: Any) -> Iterator[Any]:
        """Every message in the log, decoded, in order (including other writers' appends up to
        now). options: passed to loads instead of the log's own."""
        n = self.refresh()
        if not options:
            return self._iter_range(0, n)
        from ._core import loads

        return (loads(self.message_bytes(k), **options) for k in range(n))

    def __iter__(self) -> Iterator[Any]:
        return self.replay()

    def close(self) -> None:
        if self._fd >= 0 and self.sync_policy == "batch" and self._unsynced:
            self.sync()
        if getattr(self, "_index_fd", -1) >= 0:
            self._flush_index()
            os.close(self._index_fd)
            self._index_fd = -1
        super().close()

    def __enter__(self) -> MessageLog:
        return self

    def __del__(self) -> None:
        # Garbage collection closes the descriptors and nothing more: waiting for the lock to
        # write the index, or syncing, is close()'s job (the index is a cache; appends are
        # already in the kernel).
        try:
            if getattr(self, "_index_fd", -1) >= 0:
                os.close(self._index_fd)
                self._index_fd = -1
            MessageFile.close(self)
        except Exception:
            pass


def _sync_directory(path: str) -> None:
    """Make a new file's directory entry durable (POSIX needs the directory fsynced)."""
    try:
        dfd = os.open(os.path.dirname(os.path.abspath(path)), os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(dfd)
    except OSError:
        pass
    finally:
        os.close(dfd)
