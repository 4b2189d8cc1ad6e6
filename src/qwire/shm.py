"""Shared memory for same-host transfers: arrays allocated in memory other processes can map,
the sender's cache of copy segments, and the receiver's read-only mappings.

Every shared buffer here is an anonymous memory file (`os.memfd_create`): it has no name, so there
is nothing to unlink and nothing left behind when a process dies; the kernel frees it once the last
file descriptor and the last mapping of it are gone. A descriptor travels to another process with
`SCM_RIGHTS` over a Unix socket (qwire.pipe); the receiver maps it read-only and its arrays are
views of that mapping, which lives exactly as long as they do.

    a = qwire.shm.empty((1000, 1000))     # an ndarray in shared memory: sent without any copy
    a[:] = 1.0
    conn.send(a)                          # qwire.pipe: the peer maps the same pages, read-only

Every memory file qwire creates is sealed against shrinking and growing (`F_SEAL_SHRINK`,
`F_SEAL_GROW`), and a receiver refuses a descriptor that is not: a peer that could truncate the
file under a live mapping would make the receiver's next read a SIGBUS. See docs/PROCESSES.md.
"""
from __future__ import annotations

import bisect
import ctypes
import errno
import fcntl
import mmap
import os
import stat
import sys
import threading
import weakref
from collections.abc import Iterable, Sequence
from typing import Any, Literal

import numpy as np

from .errors import FrameError

__all__ = ["available", "empty", "zeros", "array", "is_shared", "SharedRegion"]

# Seals every qwire memory file carries: its size is fixed, so no mapping of it can fault.
_F_SEAL_SHRINK = getattr(fcntl, "F_SEAL_SHRINK", 0x0002)
_SIZE_SEALS = _F_SEAL_SHRINK | getattr(fcntl, "F_SEAL_GROW", 0x0004)
_F_ADD_SEALS = getattr(fcntl, "F_ADD_SEALS", 1033)
_F_GET_SEALS = getattr(fcntl, "F_GET_SEALS", 1034)
_MFD_FLAGS = getattr(os, "MFD_CLOEXEC", 1) | getattr(os, "MFD_ALLOW_SEALING", 2)

# Payloads start at this alignment inside a segment (NumPy's and AVX-512's preference).
ALIGNMENT = 64
_PAGE = mmap.PAGESIZE

_available: bool | None = None


def available() -> bool:
    """True where anonymous memory files can be created and sealed (Linux 3.17+), so transfers
    can go through shared memory; elsewhere qwire.pipe sends buffers through the socket."""
    global _available
    if _available is None:
        try:
            fd = _memfd(_PAGE)
        except OSError:
            _available = False
        else:
            os.close(fd)
            _available = True
    return _available


def _memfd(size: int, name: str = "qwire") -> int:
    """A new memory file of `size` bytes, sealed against changing size; the caller owns the fd."""
    create = getattr(os, "memfd_create", None)
    if create is None:
        raise OSError(errno.ENOSYS, "os.memfd_create is not available on this platform")
    fd: int = create(name, _MFD_FLAGS)
    try:
        os.ftruncate(fd, size)
        fcntl.fcntl(fd, _F_ADD_SEALS, _SIZE_SEALS)
    except BaseException:
        os.close(fd)
        raise
    return fd


def _address(buf: Any) -> tuple[int, int]:
    """(address, nbytes) of any C-contiguous buffer, read-only ones included."""
    view = np.frombuffer(buf, dtype=np.uint8)
    return view.ctypes.data, view.nbytes


# --- regions: the user's shared arrays ---------------------------------------------------------

class _RegionIndex:
    """The live regions by address, so that any buffer (a view, a slice, a PickleBuffer of an
    array) can be traced to the region it lives in. An entry is removed when its mapping dies, and
    a buffer keeps its mapping alive, so an address found here cannot belong to freed memory."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._starts: list[int] = []
        self._regions: list[SharedRegion] = []

    def add(self, region: SharedRegion) -> None:
        with self._lock:
            i = bisect.bisect(self._starts, region.address)
            self._starts.insert(i, region.address)
            self._regions.insert(i, region)

    def remove(self, address: int, fd: int) -> None:
        # By address and descriptor: a new mapping may already reuse the address.
        with self._lock:
            i = bisect.bisect_left(self._starts, address)
            while i < len(self._starts) and self._starts[i] == address:
                if self._regions[i].fd == fd:
                    del self._starts[i]
                    del self._regions[i]
                    return
                i += 1

    def find(self, address: int, nbytes: int) -> SharedRegion | None:
        with self._lock:
            i = bisect.bisect(self._starts, address) - 1
            if i < 0:
                return None
            region = self._regions[i]
        if address + nbytes > region.address + region.size:
            return None
        return region

    def __len__(self) -> int:
        return len(self._starts)


_regions = _RegionIndex()


class SharedRegion:
    """One memory file mapped read-write in this process: the storage of `empty`/`zeros`/`array`.

    Arrays made from it view its mapping, which keeps the mapping alive; when the last of them
    goes, the mapping is unmapped, the descriptor closed and the region forgotten, and the kernel
    frees the memory once no other process maps it either. Sending an array that lives here passes
    a read-only descriptor: nothing is copied, and the receiver sees later writes to the array (as
    with any shared memory).
    """

    __slots__ = ("fd", "size", "address", "_map_ref")

    def __init__(self, fd: int, size: int, mapping: mmap.mmap) -> None:
        self.fd = fd
        self.size = size
        self.address = _address(mapping)[0]
        self._map_ref = weakref.ref(mapping)

    @property
    def mapping(self) -> mmap.mmap | None:
        """The read-write mapping, or None once every view of it is gone."""
        return self._map_ref()

    def readonly_fd(self) -> int:
        """A new read-only descriptor of this memory (the caller owns it): a peer given it can map
        the memory but never write to it. Falls back to a duplicate where /proc is missing."""
        try:
            return os.open(f"/proc/self/fd/{self.fd}", os.O_RDONLY | os.O_CLOEXEC)
        except OSError:
            return os.dup(self.fd)


def allocate(nbytes: int) -> Any:
    """A new writable buffer of nbytes of shared memory; qwire finds it again from any buffer
    inside it, for as long as the mapping lives (the arrays over it keep it alive).

    The buffer is a ctypes array over the mapping, not the mmap itself: the encoder refuses
    arrays whose data is an mmap (it cannot tell them from files on disk), and this memory is not
    a file."""
    size = max(int(nbytes), 1)
    fd = _memfd(size, "qwire-array")
    try:
        mapping = mmap.mmap(fd, size, flags=mmap.MAP_SHARED, prot=mmap.PROT_READ | mmap.PROT_WRITE)
    except BaseException:
        os.close(fd)
        raise
    region = SharedRegion(fd, size, mapping)
    _regions.add(region)
    # The index holds the region; the mapping's death (its last view gone) ends both.
    weakref.finalize(mapping, _release_region, region.address, fd)
    return (ctypes.c_char * size).from_buffer(mapping)


def _release_region(address: int, fd: int) -> None:
    _regions.remove(address, fd)
    os.close(fd)


def find_region(buf: Any) -> tuple[SharedRegion, int] | None:
    """(region, offset) when the buffer lies inside a live SharedRegion, else None."""
    if not len(_regions):
        return None
    try:
        address, nbytes = _address(buf)
    except (TypeError, ValueError):
        return None
    region = _regions.find(address, nbytes)
    if region is None:
        return None
    return region, address - region.address


def empty(shape: int | Sequence[int], dtype: Any = float, order: Literal["C", "F"] = "C") -> np.ndarray:
    """A new uninitialised ndarray in shared memory: qwire.pipe sends it (and any view of it)
    without copying. Raises OSError where shared memory is unavailable (see `available()`)."""
    dt = np.dtype(dtype)
    shape_t = (int(shape),) if isinstance(shape, (int, np.integer)) else tuple(int(s) for s in shape)
    count = 1
    for s in shape_t:
        if s < 0:
            raise ValueError(f"negative dimension {s} in shape {shape_t}")
        count *= s
    return np.ndarray(shape_t, dtype=dt, buffer=allocate(count * dt.itemsize), order=order)


def zeros(shape: int | Sequence[int], dtype: Any = float, order: Literal["C", "F"] = "C") -> np.ndarray:
    """Like `empty`, filled with zeros (a new memory file reads as zeros: nothing is written)."""
    return empty(shape, dtype, order)


def array(obj: Any, dtype: Any = None) -> np.ndarray:
    """A copy of `obj` (anything np.asarray takes) in shared memory; the dtype must have no Python
    objects in it (object arrays cannot be shared between processes)."""
    src = np.asarray(obj, dtype=dtype)
    if src.dtype.hasobject:
        raise TypeError(f"qwire.shm.array: dtype {src.dtype} holds Python objects, which cannot live in shared memory")
    out = empty(src.shape, src.dtype)
    out[...] = src
    return out


def is_shared(arr: Any) -> bool:
    """True when the array's data lies in qwire shared memory (made by `empty`/`zeros`/`array`)."""
    return find_region(arr) is not None


# --- segments: the sender's copies -------------------------------------------------------------

class Segment:
    """A memory file a sender copies buffers into. It is reused only when no receiver can still
    see it, which the kernel tells us: each send passes a fresh read-only open file description
    that holds a shared `flock`; the lock lives as long as any descriptor of that description
    (in flight, in the receiver, in the receiver's mapping, in a forked child), so the segment
    is free exactly when an exclusive `flock` on the sender's own description succeeds. A
    receiver killed by SIGKILL loses its descriptors, which frees the segment too."""

    __slots__ = ("fd", "size", "map", "view", "reusable")

    def __init__(self, size: int) -> None:
        self.size = size
        self.reusable = True
        self.fd = _memfd(size, "qwire-segment")
        try:
            self.map = mmap.mmap(self.fd, size, flags=mmap.MAP_SHARED, prot=mmap.PROT_READ | mmap.PROT_WRITE)
        except BaseException:
            os.close(self.fd)
            raise
        self.view = memoryview(self.map)

    def try_acquire(self) -> bool:
        """True (and the segment is ours to fill) when no reader holds it."""
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        fcntl.flock(self.fd, fcntl.LOCK_UN)
        return True

    def reader_fd(self) -> int:
        """A new read-only descriptor holding a shared lock: the one to send. Without /proc there
        is no second open file description to lock, so the segment is sent as a duplicate and
        never reused (a lock on the sender's own description would not tell readers apart)."""
        try:
            fd = os.open(f"/proc/self/fd/{self.fd}", os.O_RDONLY | os.O_CLOEXEC)
        except OSError:
            self.reusable = False
            return os.dup(self.fd)
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BaseException:
            os.close(fd)
            raise
        return fd

    def close(self) -> None:
        self.view.release()
        self.map.close()
        os.close(self.fd)


def _round_up(n: int, to: int) -> int:
    return (n + to - 1) // to * to


def _segment_size(n: int) -> int:
    """Segments come in powers of two from 1 MiB, so one segment serves messages of similar size;
    a memory file only allocates the pages that are written, so the rounding costs no memory."""
    size = 1 << 20
    while size < n:
        size <<= 1
    return size


class SegmentCache:
    """One sender's segments, reused while no receiver holds them, so that steady-state sends copy
    into pages that are already allocated (a fresh page costs ~5x the copy of its bytes). At most
    `max_cached_bytes` of free segments are kept; busy ones belong to their readers."""

    def __init__(self, max_cached_bytes: int = 512 << 20) -> None:
        self.max_cached_bytes = max_cached_bytes
        self._segments: list[Segment] = []
        self._lock = threading.Lock()
        self._closed = False

    def acquire(self, nbytes: int) -> Segment:
        """A segment of at least nbytes that no reader holds (a cached one if possible)."""
        want = _segment_size(nbytes)
        with self._lock:
            if self._closed:
                raise ValueError("the segment cache is closed")
            for i, seg in enumerate(self._segments):
                if seg.size == want and seg.try_acquire():
                    del self._segments[i]
                    return seg
        return Segment(want)

    def release(self, seg: Segment) -> None:
        """Give a sent segment back: it is reused once its readers are done."""
        with self._lock:
            if self._closed or not seg.reusable:
                seg.close()
                return
            self._segments.append(seg)
            self._trim()

    def _trim(self) -> None:
        total = sum(s.size for s in self._segments)
        i = 0
        while total > self.max_cached_bytes and i < len(self._segments):
            seg = self._segments[i]
            if seg.try_acquire():
                del self._segments[i]
                total -= seg.size
                seg.close()  # readers, if any appear later, hold their own mapping
            else:
                i += 1

    def close(self) -> None:
        """Drop every cached segment (memory still mapped by a reader stays until it lets go)."""
        with self._lock:
            self._closed = True
            segments, self._segments = self._segments, []
        for seg in segments:
            seg.close()


# --- the receiver ------------------------------------------------------------------------------

def map_readonly(fd: int, spans: Iterable[tuple[int, int]], *, where: str = "") -> tuple[mmap.mmap, int]:
    """Map the part of a received memory file that the given (offset, length) spans cover,
    read-only and shared; returns (mapping, file offset of the mapping's first byte).

    The descriptor must be a sealed memory file (F_SEAL_SHRINK: nobody can truncate it under
    the mapping) at least as large as every span; anything else raises FrameError. The caller
    keeps ownership of fd (the mapping holds a duplicate for its own lifetime).
    """
    try:
        info = os.fstat(fd)
        seals = fcntl.fcntl(fd, _F_GET_SEALS)
    except OSError as e:
        raise FrameError(f"{where}received a descriptor that is not a memory file ({e.strerror})") from None
    if not stat.S_ISREG(info.st_mode):
        raise FrameError(f"{where}received a descriptor that is not a memory file")
    if not seals & _F_SEAL_SHRINK:
        raise FrameError(f"{where}received a memory file that is not sealed against shrinking: refused "
                         "(the peer could truncate it under the mapping)")
    lo, hi = None, 0
    for offset, length in spans:
        if offset < 0 or length < 0 or offset + length > info.st_size:
            raise FrameError(f"{where}buffer [{offset}, {offset + length}) lies outside the "
                             f"{info.st_size}-byte memory file")
        lo = offset if lo is None or offset < lo else lo
        hi = max(hi, offset + length)
    if lo is None or hi == lo:
        raise FrameError(f"{where}received a memory file no buffer uses")
    start = lo - lo % mmap.ALLOCATIONGRANULARITY
    try:
        mapping = mmap.mmap(fd, hi - start, flags=mmap.MAP_SHARED, prot=mmap.PROT_READ, offset=start)
    except (OSError, ValueError) as e:
        raise FrameError(f"{where}cannot map the received memory file: {e}") from None
    return mapping, start


if sys.platform != "linux":  # pragma: no cover - memfd_create is Linux's; elsewhere: the socket
    _available = False
