"""MessageLog keeps what it acknowledged: writers killed mid-append, concurrent writers, full disks.

The crash tests fork a writer that reports each acknowledged append on a pipe, kill it with
SIGKILL at a random moment, and check the log against what was acknowledged.
"""
from __future__ import annotations

import contextlib
import errno
import os
import random
import resource
import select
import signal
import struct
import subprocess
import tempfile
import time
import warnings

import numpy as np
import pytest

import qwire
from qwire.log import LogLockedError, MessageLog, TornTailWarning

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="the crash tests fork writers (POSIX)")


def _entry(i: int) -> dict:
    """The i-th message of a writer: sizes vary from 1 KB to ~2 MB so that kills land mid-write."""
    n = (1 << (i % 12)) * 64
    return {"i": i, "data": np.full(n, i, dtype=np.int64)}


def _same(got: dict, i: int) -> bool:
    want = _entry(i)
    return got["i"] == i and np.array_equal(got["data"], want["data"])


def _fork_writer(path: str, ack_fd: int, *, sync: str, count: int = 10**9, first: int = 0,
                 setup=None) -> int:
    pid = os.fork()
    if pid == 0:  # the child: append, acknowledge each append on the pipe, never return
        code = 0
        try:
            if setup is not None:
                setup()
            log = MessageLog(path, sync=sync)
            for i in range(first, first + count):
                log.append(_entry(i))
                os.write(ack_fd, struct.pack("<i", i))
        except OSError as e:
            os.write(ack_fd, struct.pack("<i", -e.errno))
        except BaseException:
            code = 1
        finally:
            os._exit(code)
    return pid


def _wait(pid: int, timeout: float = 60.0) -> int:
    """waitpid with a deadline: a writer that hangs is killed and the test fails, never stalls."""
    deadline = time.monotonic() + timeout
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return status
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            raise AssertionError(f"writer {pid} did not finish in {timeout} s")
        time.sleep(0.005)


def _read_acks(fd: int) -> list[int]:
    data = b""
    while True:
        chunk = os.read(fd, 65536)
        if not chunk:
            break
        data += chunk
    whole = len(data) // 4 * 4
    return list(struct.unpack(f"<{whole // 4}i", data[:whole]))


def _kill_trials(tmp_path, trials: int, seed: int) -> dict:
    rng = random.Random(seed)
    stats = {"torn": 0, "acked": 0, "unacked_but_complete": 0}
    for trial in range(trials):
        path = str(tmp_path / f"kill{trial}.qlog")
        sync = rng.choice(["never", "batch", "always"])
        r, w = os.pipe()
        pid = _fork_writer(path, w, sync=sync)
        os.close(w)
        if not select.select([r], [], [], 30)[0]:
            os.kill(pid, signal.SIGKILL)
            raise AssertionError("the writer acknowledged nothing in 30 s")
        first = os.read(r, 4)  # the first append was acknowledged: the writer is running
        time.sleep(rng.uniform(0, 0.03))
        os.kill(pid, signal.SIGKILL)
        _wait(pid)
        acks = [struct.unpack("<i", first)[0]] + _read_acks(r)
        os.close(r)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            log = MessageLog(path, sync="never")
        torn = log.tail is not None
        stats["torn"] += torn
        assert torn == any(issubclass(c.category, TornTailWarning) for c in caught)
        # every acknowledged append is there, in order, intact; at most one more (written
        # completely, killed before it could acknowledge) and never a torn one
        assert len(log) in (len(acks), len(acks) + 1), (trial, len(log), len(acks))
        for i in range(len(log)):
            assert _same(log[i], i), (trial, i)
        stats["acked"] += len(acks)
        stats["unacked_but_complete"] += len(log) - len(acks)
        # the next append cuts the torn tail (keeping its bytes aside) and lands after the last message
        n = len(log)
        log.append(_entry(n))
        assert log.tail is None and len(log.cut_tails) == torn
        if torn:
            tail, side = log.cut_tails[0]
            assert os.path.getsize(side) == tail.nbytes and tail.offset == log.offsets[n]
        log.close()
        reopened = list(qwire.iter_load(path))
        assert len(reopened) == n + 1 and all(_same(m, i) for i, m in enumerate(reopened))
    return stats


@pytest.mark.slow
def test_sigkill_at_random_points_loses_no_acknowledged_append(tmp_path):
    """A writer killed at a random point: every acknowledged append survives intact, a torn
    message is reported and never returned, and the next append cuts it off."""
    # Where a kill lands is up to the scheduler: batches of trials go on until at least three kills
    # have landed mid-write (the case under test), within a bound.
    totals = {"torn": 0, "acked": 0, "unacked_but_complete": 0}
    for batch in range(6):
        (tmp_path / str(batch)).mkdir()
        stats = _kill_trials(tmp_path / str(batch), trials=30, seed=17 + batch)
        totals = {k: totals[k] + stats[k] for k in totals}
        if totals["torn"] >= 3:
            break
    assert totals["acked"] > 30
    assert totals["torn"] >= 3, f"the kills should land mid-write some of the time: {totals}"


@pytest.mark.slow
def test_sigkill_campaign(tmp_path):
    """The same, 400 kills."""
    stats = _kill_trials(tmp_path, trials=400, seed=2026)
    assert stats["torn"] >= 40, stats


def _small(w: int, i: int) -> dict:
    return {"w": w, "i": i, "pad": "x" * (i % 300)}


def test_two_writer_processes_interleave_whole_messages(tmp_path):
    """Two processes appending at once: every append of both is in the log, whole, in each
    writer's order (the flock serializes them)."""
    path = str(tmp_path / "two.qlog")
    per_writer = 3000
    go_r, go_w = os.pipe()
    # Halfway, each writer waits until the other is halfway too, so that the two overlap however
    # the machine schedules them (under load one could otherwise finish before the other starts).
    halfway = {1: os.pipe(), 2: os.pipe()}
    pids = []
    for w in (1, 2):
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                log = MessageLog(path, sync="never")
                os.read(go_r, 1)            # start together
                for i in range(per_writer):
                    if i == per_writer // 2:
                        os.write(halfway[w][1], b"h")
                        os.read(halfway[3 - w][0], 1)
                    log.append(_small(w, i))
                log.close()
                code = 0
            finally:
                os._exit(code)
        pids.append(pid)
    os.write(go_w, b"gg")
    assert all(_wait(p) == 0 for p in pids)
    for fd in (go_r, go_w, *halfway[1], *halfway[2]):
        os.close(fd)
    got = list(qwire.iter_load(path))
    assert len(got) == 2 * per_writer
    for w in (1, 2):
        mine = [m for m in got if m["w"] == w]
        assert mine == [_small(w, i) for i in range(per_writer)]
    switches = sum(a["w"] != b["w"] for a, b in zip(got, got[1:]))
    assert switches >= 2, "the writers ran one after the other: nothing concurrent was tested"


def test_a_reader_sees_other_writers_appends_after_refresh(tmp_path):
    """MessageFile/MessageLog index appends made by another writer when refreshed."""
    path = str(tmp_path / "r.qlog")
    writer = MessageLog(path, sync="never")
    writer.append(1)
    reader = qwire.MessageFile(path)
    other = MessageLog(path, sync="never")
    assert len(reader) == 1 and len(other) == 1
    writer.append(2)
    other.append(3)                     # catches up with writer's append before writing
    assert reader.refresh() == 3 and reader[:] == [1, 2, 3]
    assert list(writer) == [1, 2, 3]


def test_exclusive_log_refuses_a_second_writer(tmp_path):
    """exclusive=True holds the lock: another MessageLog is refused with LogLockedError at once."""
    path = str(tmp_path / "x.qlog")
    first = MessageLog(path, exclusive=True)
    with pytest.raises(LogLockedError, match="another"):
        MessageLog(path, exclusive=True)
    first.append("a")
    first.close()
    second = MessageLog(path, exclusive=True)
    assert list(second) == ["a"]
    second.close()


def _set_fsize_limit(limit: int):
    def setup():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)   # EFBIG instead of death
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    return setup


def test_file_size_limit_failure_leaves_the_log_as_it_was(tmp_path):
    """RLIMIT_FSIZE makes an append fail partway (EFBIG): the file is cut back to the last
    acknowledged message, the error is raised, and the log reads and appends normally after."""
    path = str(tmp_path / "fsize.qlog")
    r, w = os.pipe()
    pid = _fork_writer(path, w, sync="always", setup=_set_fsize_limit(600_000))
    os.close(w)
    _wait(pid)
    acks = _read_acks(r)
    os.close(r)
    assert acks[-1] == -errno.EFBIG, acks[-3:]
    acked = acks[:-1]
    assert acked == list(range(len(acked))) and len(acked) > 3
    with warnings.catch_warnings():
        warnings.simplefilter("error")           # no torn tail: the failed append was cut back
        log = MessageLog(path)
    assert len(log) == len(acked) and log.tail is None
    assert os.path.getsize(path) == log.nbytes
    assert all(_same(log[i], i) for i in range(len(log)))
    log.append(_entry(len(log)))
    assert _same(log[-1], len(acked))


@contextlib.contextmanager
def _small_filesystem(nbytes: int):
    where = tempfile.mkdtemp(prefix="qwire-fullfs-")
    try:
        subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={nbytes}", "tmpfs", where], check=True,
                       capture_output=True)
    except (OSError, subprocess.CalledProcessError) as e:
        os.rmdir(where)
        pytest.skip(f"cannot mount a small tmpfs here ({e}); the RLIMIT_FSIZE test covers failed appends")
    try:
        yield where
    finally:
        if subprocess.run(["umount", where], check=False, capture_output=True).returncode:
            subprocess.run(["umount", "-l", where], check=False, capture_output=True)  # files left open
        os.rmdir(where)


def test_full_disk_failure_leaves_the_log_as_it_was():
    """On a filesystem that fills up (ENOSPC) the failed append leaves nothing behind; once space
    is freed, appends continue after the last acknowledged one."""
    with _small_filesystem(1 << 20) as fs:
        path = os.path.join(fs, "full.qlog")
        log = MessageLog(path)
        acked = 0
        with pytest.raises(OSError) as failure:
            for i in range(10_000):
                log.append(_entry(i % 10))      # up to 32 KB each
                acked += 1
        assert failure.value.errno == errno.ENOSPC
        assert acked > 5 and len(log) == acked and os.path.getsize(path) == log.nbytes
        with pytest.raises(OSError):
            log.append(_entry(11))             # still full: still refused, still clean
        assert os.path.getsize(path) == log.nbytes
        log.close()
        reread = MessageLog(path, sync="never")
        assert len(reread) == acked and reread.tail is None
        assert all(_same(reread[i], i % 10) for i in range(acked))
        os.truncate(path, reread.offsets[acked // 2])   # free space: drop the second half
        reread.refresh()
        assert len(reread) == acked // 2
        reread.append(_entry(3))
        assert _same(reread[-1], 3) and len(reread) == acked // 2 + 1
        reread.close()


def test_sync_policy_is_checked_and_batch_syncs_on_close(tmp_path):
    """sync= accepts always/batch/never only; batch counts appends and syncs on close."""
    with pytest.raises(ValueError, match="sync"):
        MessageLog(tmp_path / "bad.qlog", sync="sometimes")
    log = MessageLog(tmp_path / "b.qlog", sync="batch", sync_every=3)
    for i in range(5):
        log.append(i)
    assert log._unsynced == 2
    log.close()
    assert list(MessageLog(tmp_path / "b.qlog")) == [0, 1, 2, 3, 4]


def test_an_io_error_in_the_sync_cuts_the_append_back(tmp_path, monkeypatch):
    """fdatasync failing with EIO: the append raises that OSError and leaves no byte of the
    message in the file (nor in the index); the next append succeeds after the last good one."""
    import qwire.log as qlog

    path = str(tmp_path / "eio.qlog")
    log = MessageLog(path)
    log.append("kept")
    size, index_size = os.path.getsize(path), os.path.getsize(qwire.io.index_path(path))
    real = qlog._fdatasync
    calls = []

    def failing(fd):
        calls.append(fd)
        if len(calls) == 1:
            raise OSError(errno.EIO, "Input/output error")
        real(fd)

    monkeypatch.setattr(qlog, "_fdatasync", failing)
    with pytest.raises(OSError) as info:
        log.append(np.arange(10_000))
    assert info.value.errno == errno.EIO
    assert os.path.getsize(path) == size and len(log) == 1
    assert os.path.getsize(qwire.io.index_path(path)) == index_size
    log.append("after")
    assert list(MessageLog(path)) == ["kept", "after"]


def test_appends_do_not_rescan_the_log(tmp_path, monkeypatch):
    """Appending is O(1): once the log is open, a single writer's appends read no headers."""
    log = MessageLog(tmp_path / "o1.qlog", sync="never")
    for i in range(500):
        log.append(i)

    def no_scan(*args, **kwargs):
        raise AssertionError("append scanned the file")

    monkeypatch.setattr(qwire.io, "scan_headers", no_scan)
    for i in range(500, 1000):
        log.append(i)
    assert len(log) == 1000 and log[999] == 999


def test_a_compressed_log_round_trips(tmp_path):
    """dumps options pass through: compress=True writes kdb+-compressed messages, read back."""
    log = MessageLog(tmp_path / "z.qlog", compress=True)
    data = np.zeros(100_000)
    n = log.append(data)
    assert n < data.nbytes // 10 and np.array_equal(log[0], data)


def test_a_writer_facing_an_exclusive_log_is_refused_after_its_lock_timeout(tmp_path):
    """A shared-mode MessageLog waits lock_timeout for a log held with exclusive=True, then
    raises LogLockedError instead of hanging."""
    path = str(tmp_path / "held.qlog")
    holder = MessageLog(path, exclusive=True)
    start = time.monotonic()
    with pytest.raises(LogLockedError, match="stayed locked"):
        MessageLog(path, lock_timeout=0.2)
    assert 0.2 <= time.monotonic() - start < 5
    holder.close()
    assert len(MessageLog(path, lock_timeout=0.2)) == 0
