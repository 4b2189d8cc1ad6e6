"""Process pools whose arguments and results travel with qwire, never with pickle.

    with qwire.pool.ProcessPoolExecutor(max_workers=2) as ex:
        fut = ex.submit(np.linalg.norm, big_array)       # big_array: one copy, into shared memory
        print(fut.result())
        print(list(ex.map(work, chunks)))

`ProcessPoolExecutor` is a `concurrent.futures.Executor`; `Pool` offers multiprocessing.Pool's
methods (map, starmap, imap, imap_unordered, apply, apply_async) on top of it. Each worker is a
process with a qwire.pipe connection to this one: a task is the function's *name* (module and
qualified name, resolved by import in the worker, as pickle does for functions) plus its arguments
encoded with qwire, large arrays through shared memory; the result comes back the same way.
Functions must therefore be importable by name (module-level functions, methods of module-level
classes, builtins, functools.partial of those): lambdas and nested functions raise TypeError.
pandas DataFrames, Series and Index objects, passed or returned at any depth, come back exactly
(dtypes and index kept: the codec's own frames, docs/TABLES.md), their large columns through shared
memory like any array.
An exception in the worker is raised here with its type when it is a builtin or qwire exception,
otherwise as `RemoteError`; its traceback text is attached as a note. A worker that dies breaks the pool
(`concurrent.futures.process.BrokenProcessPool`), as the standard library's does.

For an existing `multiprocessing.Pool` or `concurrent.futures.ProcessPoolExecutor`, `packed(fn)`
wraps a function so that its arguments and result cross as qwire message bytes (pickle carries only
a bytes object and the function's name): `pool.map(packed(fn), map(pack, items))`, then `unpack`
each result. Buffers then travel inside the bytes, through the standard library's pipe.
"""
from __future__ import annotations

import builtins
import concurrent.futures
import functools
import importlib
import multiprocessing
import os
import queue
import threading
import traceback
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures.process import BrokenProcessPool
from typing import Any

from . import errors as _errors
from ._core import dumps, loads
from .errors import EncodeError, PipeClosedError
from .pipe import Connection, Pipe

__all__ = ["ProcessPoolExecutor", "Pool", "RemoteError", "packed", "pack", "unpack"]


class RemoteError(Exception):
    """An exception raised by a task in a worker whose type is not a builtin exception (qwire
    does not rebuild arbitrary classes). `type_name` is its qualified type name, `remote_traceback`
    the worker's traceback text."""

    def __init__(self, type_name: str, message: str, remote_traceback: str = "") -> None:
        self.type_name = type_name
        self.message = message
        self.remote_traceback = remote_traceback
        super().__init__(f"{type_name}: {message}")


# --- functions by name -------------------------------------------------------------------------

def _function_name(fn: Callable[..., Any]) -> str:
    module = getattr(fn, "__module__", None) or ("numpy" if type(fn).__name__ == "ufunc" else None)
    qualname = getattr(fn, "__qualname__", None) or getattr(fn, "__name__", None)
    if not module or not qualname or "<" in qualname:
        raise TypeError(f"qwire pools call functions by name: {fn!r} is not importable by name "
                        "(use a module-level function, not a lambda or a nested function)")
    name = f"{module}:{qualname}"
    if _resolve(name) is not fn:
        raise TypeError(f"qwire pools call functions by name: {name} does not name {fn!r}")
    return name


@functools.lru_cache(maxsize=1024)
def _resolve(name: str) -> Any:
    module, _, qualname = name.partition(":")
    obj: Any = importlib.import_module(module)
    for part in qualname.split("."):
        obj = getattr(obj, part)
    return obj


def _task(fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> list[Any]:
    if isinstance(fn, functools.partial):
        args = fn.args + tuple(args)
        kwargs = {**fn.keywords, **kwargs}
        fn = fn.func
    return [_function_name(fn), list(args), kwargs]


def _error_payload(e: BaseException) -> list[str]:
    kind = type(e)
    return [kind.__module__, kind.__qualname__, str(e), "".join(traceback.format_exception(e))]


_REBUILT_ERROR_MODULES = {"builtins": builtins, "qwire.errors": _errors}


def _rebuild_error(payload: list[str]) -> BaseException:
    """The worker's exception: builtin and qwire exception types are rebuilt from their message,
    any other type is a RemoteError (decoding never constructs arbitrary classes)."""
    module, qualname, message, tb = payload
    home = _REBUILT_ERROR_MODULES.get(module)
    kind = getattr(home, qualname, None) if home is not None and "." not in qualname else None
    if isinstance(kind, type) and issubclass(kind, Exception):
        try:
            err: BaseException = kind(message)
        except Exception:
            err = RemoteError(f"{module}.{qualname}", message, tb)
    else:
        err = RemoteError(f"{module}.{qualname}", message, tb)
    if tb:
        note = "Traceback in the worker process:\n" + tb.rstrip()
        if hasattr(err, "add_note"):
            err.add_note(note)
        else:  # Python 3.10: the same attribute 3.11's add_note fills (not printed there)
            err.__notes__ = [*getattr(err, "__notes__", ()), note]
    return err


# --- the worker --------------------------------------------------------------------------------

def _worker_main(conn: Connection, initializer: str | None, initargs: tuple[Any, ...]) -> None:
    if initializer is not None:
        _resolve(initializer)(*initargs)
    while True:
        try:
            task = conn.recv()
        except (EOFError, PipeClosedError):
            return
        if task is None:
            return
        try:
            name, args, kwargs = task
            result = _resolve(name)(*args, **kwargs)
        except BaseException as e:  # every task failure goes back to the caller
            conn.send(["error", _error_payload(e)])
            continue
        try:
            conn.send(["ok", result])
        except EncodeError as e:  # nothing was written: the stream is still in step
            conn.send(["error", _error_payload(e)])


class _Worker:
    def __init__(self, ctx: Any, initializer: str | None, initargs: tuple[Any, ...], options: dict[str, Any]) -> None:
        self.conn, child = Pipe(**options)
        self.process = ctx.Process(target=_worker_main, args=(child, initializer, initargs), daemon=True)
        self.process.start()
        child.close()


class ProcessPoolExecutor(concurrent.futures.Executor):
    """concurrent.futures.ProcessPoolExecutor with qwire in place of pickle for tasks and results.

    max_workers: default os.cpu_count(). mp_context: a multiprocessing context (default: the
    platform's). initializer: a function (by name, like tasks) run in each worker with initargs.
    Other keyword options go to each worker's qwire.pipe.Connection (shm_threshold, dumps=...,
    registry=..., max_depth=...). `map`'s chunksize is accepted and ignored (each call is one task).
    """

    def __init__(self, max_workers: int | None = None, mp_context: Any = None,
                 initializer: Callable[..., Any] | None = None, initargs: tuple[Any, ...] = (),
                 **pipe_options: Any) -> None:
        n = max_workers if max_workers is not None else (os.cpu_count() or 1)
        if n <= 0:
            raise ValueError("max_workers must be greater than 0")
        ctx = mp_context if mp_context is not None else multiprocessing.get_context()
        init = _function_name(initializer) if initializer is not None else None
        self._tasks: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._shutdown = False
        self._broken: str | None = None
        self._workers = [_Worker(ctx, init, tuple(initargs), pipe_options) for _ in range(n)]
        self._threads = [threading.Thread(target=self._serve, args=(w,), daemon=True, name=f"qwire-pool-{i}")
                         for i, w in enumerate(self._workers)]
        for t in self._threads:
            t.start()

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> concurrent.futures.Future[Any]:
        task = _task(fn, args, kwargs)
        fut: concurrent.futures.Future[Any] = concurrent.futures.Future()
        with self._lock:
            if self._broken is not None:
                raise BrokenProcessPool(self._broken)
            if self._shutdown:
                raise RuntimeError("cannot schedule new futures after shutdown")
            self._tasks.put((fut, task))
        return fut

    def map(self, fn: Callable[..., Any], *iterables: Iterable[Any], timeout: float | None = None,
            chunksize: int = 1) -> Iterator[Any]:
        return super().map(fn, *iterables, timeout=timeout)

    def _serve(self, worker: _Worker) -> None:
        conn = worker.conn
        while True:
            item = self._tasks.get()
            if item is None:
                break
            fut, task = item
            if not fut.set_running_or_notify_cancel():
                continue
            try:
                conn.send(task)
            except EncodeError as e:  # an argument qwire cannot write: nothing was sent
                fut.set_exception(e)
                continue
            except (PipeClosedError, OSError) as e:
                self._break(fut, worker, e)
                return
            try:
                status, payload = conn.recv()
            except (EOFError, PipeClosedError, OSError) as e:
                self._break(fut, worker, e)
                return
            except Exception as e:  # a result the decoder refused
                fut.set_exception(e)
                continue
            if status == "ok":
                fut.set_result(payload)
            else:
                fut.set_exception(_rebuild_error(payload))
        try:
            conn.send(None)
        except (PipeClosedError, OSError):
            pass

    def _break(self, fut: concurrent.futures.Future[Any], worker: _Worker, cause: BaseException) -> None:
        worker.process.join(1)
        reason = (f"a worker process (pid {worker.process.pid}) terminated abruptly "
                  f"(exit code {worker.process.exitcode}) while running a task")
        with self._lock:
            self._broken = self._broken or reason
            pending = []
            while True:
                try:
                    item = self._tasks.get_nowait()
                except queue.Empty:
                    break
                if item is not None:
                    pending.append(item[0])
            for _ in self._threads:
                self._tasks.put(None)  # the other threads stop too
        err = BrokenProcessPool(reason)
        err.__cause__ = cause
        fut.set_exception(err)
        for f in pending:
            if f.set_running_or_notify_cancel():
                f.set_exception(BrokenProcessPool(reason))
        for w in self._workers:
            if w.process.is_alive():
                w.process.terminate()

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        with self._lock:
            first = not self._shutdown
            self._shutdown = True
            if cancel_futures:
                while True:
                    try:
                        item = self._tasks.get_nowait()
                    except queue.Empty:
                        break
                    if item is not None:
                        item[0].cancel()
            if first:
                for _ in self._threads:
                    self._tasks.put(None)
        if wait:
            for t in self._threads:
                t.join()
            for w in self._workers:
                w.process.join()
                w.conn.close()
                w.process.close()


class AsyncResult:
    """multiprocessing.pool.AsyncResult over a Future."""

    def __init__(self, future: concurrent.futures.Future[Any]) -> None:
        self._future = future

    def get(self, timeout: float | None = None) -> Any:
        try:
            return self._future.result(timeout)
        except concurrent.futures.TimeoutError:
            raise multiprocessing.TimeoutError from None

    def wait(self, timeout: float | None = None) -> None:
        concurrent.futures.wait([self._future], timeout)

    def ready(self) -> bool:
        return self._future.done()

    def successful(self) -> bool:
        if not self._future.done():
            raise ValueError("the result is not ready")
        return self._future.exception() is None


class Pool:
    """multiprocessing.Pool's interface on qwire workers (see ProcessPoolExecutor)."""

    def __init__(self, processes: int | None = None, initializer: Callable[..., Any] | None = None,
                 initargs: tuple[Any, ...] = (), context: Any = None, **pipe_options: Any) -> None:
        self._executor = ProcessPoolExecutor(processes, context, initializer, initargs, **pipe_options)

    def apply(self, func: Callable[..., Any], args: tuple[Any, ...] = (), kwds: dict[str, Any] | None = None) -> Any:
        return self._executor.submit(func, *args, **(kwds or {})).result()

    def apply_async(self, func: Callable[..., Any], args: tuple[Any, ...] = (),
                    kwds: dict[str, Any] | None = None) -> AsyncResult:
        return AsyncResult(self._executor.submit(func, *args, **(kwds or {})))

    def map(self, func: Callable[..., Any], iterable: Iterable[Any], chunksize: int | None = None) -> list[Any]:
        return list(self.imap(func, iterable))

    def starmap(self, func: Callable[..., Any], iterable: Iterable[Iterable[Any]], chunksize: int | None = None) -> list[Any]:
        futures = [self._executor.submit(func, *args) for args in iterable]
        return [f.result() for f in futures]

    def imap(self, func: Callable[..., Any], iterable: Iterable[Any], chunksize: int = 1) -> Iterator[Any]:
        futures = [self._executor.submit(func, x) for x in iterable]
        return (f.result() for f in futures)

    def imap_unordered(self, func: Callable[..., Any], iterable: Iterable[Any], chunksize: int = 1) -> Iterator[Any]:
        futures = [self._executor.submit(func, x) for x in iterable]
        return (f.result() for f in concurrent.futures.as_completed(futures))

    def close(self) -> None:
        self._executor.shutdown(wait=False)

    def terminate(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
        for w in self._executor._workers:
            if w.process.is_alive():
                w.process.terminate()

    def join(self) -> None:
        self._executor.shutdown(wait=True)

    def __enter__(self) -> Pool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.terminate()
        self.join()


# --- wrapping the standard library's pools -----------------------------------------------------

def pack(*args: Any, **kwargs: Any) -> bytes:
    """The arguments of one call as qwire message bytes (for a `packed` function)."""
    return bytes(dumps([list(args), kwargs]))


def unpack(data: bytes) -> Any:
    """The result a `packed` function returned."""
    return loads(data)


class packed:
    """fn wrapped for the standard library's pools: called with `pack(...)` bytes, it decodes the
    arguments with qwire, calls fn and returns its result as qwire bytes (`unpack` it). Pickle
    then carries only bytes and fn's name. fn must be importable by name, as for pickle."""

    __slots__ = ("name",)

    def __init__(self, fn: Callable[..., Any]) -> None:
        self.name = _function_name(fn)

    def __call__(self, payload: bytes) -> bytes:
        args, kwargs = loads(payload)
        return bytes(dumps(_resolve(self.name)(*args, **kwargs)))

    def __reduce__(self) -> tuple[Any, ...]:
        return (_packed_by_name, (self.name,))

    def __repr__(self) -> str:
        return f"qwire.pool.packed({self.name})"


def _packed_by_name(name: str) -> packed:
    p = packed.__new__(packed)
    p.name = name
    return p

