"""Refusal: what qwire will not write says so ("Unable to serialize <type> objects: <what to do>"),
as ForeignObjectError for code and process state and unregistered classes, OnDiskObjectError for
data that lives in a file (unless allow_on_disk=True, which copies it in)."""
from __future__ import annotations

import asyncio
import collections
import functools
import io
import mmap
import os
import socket
import sys
import tempfile
import threading

import numpy as np
import pytest

import qwire


def _gen():
    yield 1


async def _coro():
    return 1


async def _agen():
    yield 1


class Plain:
    def method(self):
        return 1


class MyDict(dict):
    pass


class MyStr(str):
    pass


class MyTuple(tuple):
    pass


class MyInt(int):
    pass


def _closed_file(tmp_path_factory=None):
    f = open(os.devnull, "rb")
    f.close()
    return f


FOREIGN = [
    ("function", lambda: _gen, "function"),
    ("lambda", lambda: (lambda: 1), "function"),
    ("builtin function", lambda: len, "builtin_function_or_method"),
    ("bound method", lambda: Plain().method, "method"),
    ("partial", lambda: functools.partial(len, "x"), "functools.partial"),
    ("class", lambda: Plain, "type"),
    ("module", lambda: sys, "module"),
    ("generator", lambda: _gen(), "generator"),
    ("coroutine", lambda: _coro(), "coroutine"),
    ("async generator", lambda: _agen(), "async_generator"),
    ("iterator", lambda: iter([1]), "list_iterator"),
    ("map", lambda: map(str, [1]), "map"),
    ("lock", threading.Lock, "_thread.lock"),
    ("rlock", threading.RLock, "_thread.RLock"),
    ("thread", lambda: threading.Thread(target=print), "threading.Thread"),
    ("event", threading.Event, "threading.Event"),
    ("socket", lambda: socket.socket(), "socket.socket"),
    ("in-memory file", lambda: io.BytesIO(b"abc"), "_io.BytesIO"),
    ("closed file", _closed_file, "_io.BufferedReader"),
    ("unregistered class", Plain, f"{__name__}.Plain"),
    ("dict subclass", lambda: MyDict(a=1), f"{__name__}.MyDict"),
    ("OrderedDict", lambda: collections.OrderedDict(a=1), "collections.OrderedDict"),
    ("str subclass", lambda: MyStr("x"), f"{__name__}.MyStr"),
    ("tuple subclass", lambda: MyTuple((1,)), f"{__name__}.MyTuple"),
    ("int subclass", lambda: MyInt(3), f"{__name__}.MyInt"),
    ("range", lambda: range(3), "range"),
    ("object", object, "object"),
    ("exception", lambda: ValueError("x"), "ValueError"),
    ("masked array", lambda: np.ma.masked_array([1, 2], mask=[0, 1]), "numpy.ma.MaskedArray"),
]


@pytest.mark.parametrize("what, make, qualname", FOREIGN, ids=[f[0] for f in FOREIGN])
@pytest.mark.parametrize("q_compatible", [False, True])
def test_foreign_objects_are_refused_by_name_with_a_hint(what, make, qualname, q_compatible):
    obj = make()
    try:
        for x in (obj, [1, {"deep": obj}]):
            with pytest.raises(qwire.ForeignObjectError) as e:
                qwire.dumps(x, q_compatible=q_compatible)
            err = e.value
            assert isinstance(err, qwire.EncodeError) and isinstance(err, TypeError)
            assert str(err).startswith(f"Unable to serialize {qualname} objects: "), str(err)
            assert "register" in str(err) or "convert" in str(err)
            assert err.obj_type is type(obj)
    finally:
        if hasattr(obj, "close") and what in ("coroutine", "socket"):
            obj.close()
        if what == "async generator":
            asyncio.run(obj.aclose())


def test_unregistered_classes_are_told_how_to_register():
    with pytest.raises(qwire.ForeignObjectError) as e:
        qwire.dumps(Plain())
    assert str(e.value) == (
        f"Unable to serialize {__name__}.Plain objects: Plain is not registered: register it "
        "(qwire.register(Plain) for a dataclass, NamedTuple or Enum; with encode= and decode= for any other "
        "class) or convert it to built-in values first")


def test_refs_true_refuses_the_same():
    with pytest.raises(qwire.ForeignObjectError):
        qwire.dumps([len, len], refs=True)


# ---- on-disk objects -------------------------------------------------------------------------------------

@pytest.fixture
def data_file(tmp_path):
    path = tmp_path / "data.bin"
    path.write_bytes(bytes(range(256)) * 4)
    return path


def _assert_on_disk(x, expected_type):
    with pytest.raises(qwire.OnDiskObjectError) as e:
        qwire.dumps(x)
    err = e.value
    assert isinstance(err, qwire.EncodeError) and not isinstance(err, qwire.ForeignObjectError)
    assert str(err).startswith(f"Unable to serialize {expected_type} objects that live on disk")
    assert "into memory" in str(err) and "allow_on_disk=True" in str(err)
    with pytest.raises(qwire.OnDiskObjectError):
        qwire.dumps({"nested": [x]})


def test_numpy_memmap(data_file):
    mm = np.memmap(data_file, dtype=np.uint16, mode="r", shape=(16, 32))
    _assert_on_disk(mm, "numpy.memmap")
    _assert_on_disk(mm[3], "numpy.memmap")
    _assert_on_disk(np.asarray(mm)[::2], "numpy.ndarray")
    back = qwire.loads(qwire.dumps(mm, allow_on_disk=True))
    assert type(back) is np.ndarray and back.dtype == np.uint16 and np.array_equal(back, mm)
    flat = qwire.loads(qwire.dumps(np.asarray(mm).reshape(-1), allow_on_disk=True))
    assert np.array_equal(flat, np.asarray(mm).reshape(-1))
    del mm, back, flat


def test_mmap_objects(data_file):
    with open(data_file, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as m:
        _assert_on_disk(m, "mmap.mmap")
        view = memoryview(m)
        _assert_on_disk(view, "memoryview")
        view.release()
        assert qwire.loads(qwire.dumps(m, allow_on_disk=True)) == data_file.read_bytes()


@pytest.mark.parametrize("mode", ["rb", "r", "r+b"])
def test_open_files(data_file, mode):
    if mode == "r":
        data_file.write_text("text \u00e9 file")
    with open(data_file, mode) as f:
        f.read(3)
        _assert_on_disk(f, type(f).__module__ + "." + type(f).__qualname__)
        back = qwire.loads(qwire.dumps(f, allow_on_disk=True))
        assert back == (data_file.read_text() if mode == "r" else data_file.read_bytes())
        assert f.tell() == 3                       # the file is where it was
    with tempfile.NamedTemporaryFile() as t:
        t.write(b"tmp")
        _assert_on_disk(t, "tempfile._TemporaryFileWrapper")
        assert qwire.loads(qwire.dumps(t, allow_on_disk=True)) == b"tmp"


def test_qwire_values_decoded_from_a_memory_map(tmp_path):
    """load(mmap=True) returns arrays that view the file: writing them again needs the opt-in."""
    path = tmp_path / "m.qipc"
    table = qwire.Table({"a": np.arange(100_000), "b": np.linspace(0, 1, 100_000)})
    payload = {"v": np.arange(50_000, dtype=np.float64), "t": table}
    with open(path, "wb") as f:
        qwire.dump(payload, f)
    mapped = qwire.load(path, mmap=True)
    _assert_on_disk(mapped["v"], "numpy.ndarray")
    _assert_on_disk(mapped["v"][10:20], "numpy.ndarray")
    with pytest.raises(qwire.OnDiskObjectError):
        qwire.dumps(mapped["t"])                                    # a column of a table
    with pytest.raises(qwire.OnDiskObjectError):
        qwire.dumps(qwire.Vector(mapped["v"], "float", "s"))
    back = qwire.loads(qwire.dumps(mapped, allow_on_disk=True))
    assert np.array_equal(back["v"], payload["v"]) and back["t"] == table
    in_memory = qwire.loads(bytes(qwire.dumps(payload)))
    qwire.dumps(in_memory)                                          # views of bytes: in memory
    del mapped, back


def test_allow_on_disk_encoders_are_distinct():
    enc = qwire.Encoder(allow_on_disk=True)
    assert enc.allow_on_disk and not qwire.Encoder().allow_on_disk
