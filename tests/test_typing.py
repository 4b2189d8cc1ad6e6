"""qwire's type stubs: the compiled modules match their .pyi (mypy.stubtest), and typical code using
the public API type-checks under `mypy --strict` while wrong calls are reported.

mypy is a test dependency (the `test` extra): these tests fail, never skip, without it.
"""
from __future__ import annotations

import ast
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import qwire
from qwire import _compress, _core

TESTS = Path(__file__).resolve().parent
PKG = Path(_core.__file__).resolve().parent  # the qwire package that is imported (in place or installed)
TIMEOUT = 120  # seconds per mypy run: each takes ~10 s here; a hang fails rather than stalls the suite


def _mypy_env(tmp_path: Path) -> tuple[dict[str, str], Path]:
    """Environment and an empty config file for a mypy run that checks the imported qwire."""
    env = dict(os.environ)
    # An installed qwire is found through site-packages (py.typed); an in-place one (PYTHONPATH=src)
    # through MYPYPATH. Putting site-packages itself on MYPYPATH is an error for mypy.
    if PKG.parent.name not in ("site-packages", "dist-packages"):
        env["MYPYPATH"] = str(PKG.parent)
        # the runs start in tmp_path: a relative PYTHONPATH=src would no longer find the package
        env["PYTHONPATH"] = os.pathsep.join([str(PKG.parent), *filter(None, env.get("PYTHONPATH", "").split(os.pathsep))])
    else:
        env.pop("MYPYPATH", None)
    config = tmp_path / "mypy.ini"
    # qwire's optional pandas/pyarrow integration: their stubs are not a test dependency
    config.write_text("[mypy]\n\n[mypy-pandas.*,pyarrow.*]\nignore_missing_imports = True\n")
    return env, config


def _run(args: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", *args], env=env, cwd=cwd, capture_output=True, text=True,
                          timeout=TIMEOUT)


def test_stubs_exist_and_are_shipped():
    for name in ("_core.pyi", "_compress.pyi", "py.typed"):
        assert (PKG / name).is_file(), f"{name} is missing next to the compiled core ({PKG})"


def test_stubtest(tmp_path):
    env, config = _mypy_env(tmp_path)
    allowlists = [TESTS / "stubtest_allowlist.txt"]
    if sys.version_info < (3, 12):
        allowlists.append(TESTS / "stubtest_allowlist_py310_311.txt")
    args = ["mypy.stubtest", "qwire._core", "qwire._compress", "--mypy-config-file", str(config)]
    for a in allowlists:
        args += ["--allowlist", str(a)]
    r = _run(args, env, tmp_path)
    assert r.returncode == 0, f"stubtest found differences:\n{r.stdout}\n{r.stderr}"


# ---- the stubs' keyword defaults are accepted at runtime ----------------------------------------
# stubtest cannot read the parameters of a cdef class's __init__ (a slot wrapper) nor the options that
# loads forwards through **options; calling with exactly the stub's keywords and defaults checks them.


def _stub_keywords(stub: Path, qualname: str) -> dict[str, object]:
    tree = ast.parse(stub.read_text())
    scope: list[ast.stmt] = tree.body
    *outer, name = qualname.split(".")
    for part in outer:
        scope = next(n for n in scope if isinstance(n, ast.ClassDef) and n.name == part).body
    fn = next(n for n in scope if isinstance(n, ast.FunctionDef) and n.name == name)
    a = fn.args
    out = {}
    positional = a.posonlyargs + a.args
    for arg, default in zip(positional[len(positional) - len(a.defaults):], a.defaults):
        out[arg.arg] = ast.literal_eval(default)
    for arg, default in zip(a.kwonlyargs, a.kw_defaults):
        assert default is not None, f"{qualname}: keyword {arg.arg} has no default"
        out[arg.arg] = ast.literal_eval(default)
    return out


def test_stub_defaults_are_accepted_at_runtime():
    stub = PKG / "_core.pyi"
    enc_kw = _stub_keywords(stub, "Encoder.__init__")
    dec_kw = _stub_keywords(stub, "Decoder.__init__")
    assert set(enc_kw) >= {"msg_type", "max_depth", "buffer_callback", "registry", "refs"}
    assert set(dec_kw) >= {"max_depth", "max_decompressed_size", "max_message_size", "registry"}
    enc = _core.Encoder(**enc_kw)
    dec = _core.Decoder(**dec_kw)
    # the stub's defaults are the runtime's: an Encoder/Decoder built without arguments agrees
    for obj, kw, plain in ((enc, enc_kw, _core.Encoder()), (dec, dec_kw, _core.Decoder())):
        for k in kw:
            if hasattr(plain, k):
                assert getattr(obj, k) == getattr(plain, k), k
    assert enc.msg_type == _core.MSG_TYPES[enc_kw["msg_type"]]
    m = _core.dumps([1, 2.5, "x"], **_stub_keywords(stub, "dumps"))
    assert _core.loads(m, **_stub_keywords(stub, "loads")) == [1, 2.5, "x"]
    assert _core.loads(m, **_stub_keywords(stub, "Decoder.__init__")) == [1, 2.5, "x"]


# ---- mypy --strict on code that uses the public API ---------------------------------------------

GOOD = '''\
from __future__ import annotations

import dataclasses
import io
import pickle
from typing import Any

import numpy as np
from typing_extensions import assert_type

import qwire
from qwire import compression


@dataclasses.dataclass
class Trade:
    sym: str
    price: float


registry = qwire.Registry()
assert_type(registry.register(Trade), type[Trade])
qwire.register(Trade, "TypingTrade")


def roundtrip(obj: object) -> Any:
    msg = qwire.dumps(obj, msg_type="sync", compress="auto", refs=True, registry=registry)
    assert_type(msg, qwire.Message)
    n: int = len(msg)
    raw: bytes = bytes(msg)
    view = memoryview(msg)
    assert n == len(raw) == view.nbytes == msg.nbytes
    assert_type(msg.copy(), bytes)
    assert_type(msg.segments(), list[memoryview])
    assert_type(msg.msg_type, int)
    assert_type(msg.compressed, bool)
    buf = io.BytesIO()
    assert_type(msg.write_to(buf), int)
    assert_type(qwire.dump(obj, buf), int)
    qwire.loads(raw, registry=registry)
    qwire.loads(view, registry=registry)
    qwire.loads(bytearray(raw), registry=registry, max_depth=64, strict_fields=True)
    return qwire.loads(msg, registry=registry, max_decompressed_size=1 << 20)


def codecs() -> None:
    enc = qwire.Encoder("async", max_depth=32, capability=3, q_compatible=True)
    dec = qwire.Decoder(max_message_size=1 << 20, registry=qwire.default_registry)
    m: qwire.Message = enc.encode({"a": np.arange(3)})
    assert enc.msg_type == 0 and enc.registry is qwire.default_registry
    value: object = dec.decode(m)
    dec.feed(m)
    dec.feed(bytes(m)[:3])
    pending: int = dec.pending
    for item in dec:
        print(item, value, pending)
    oob: list[pickle.PickleBuffer] = []
    m2 = qwire.dumps(np.arange(100_000), buffer_callback=oob.append)
    qwire.loads(m2, buffers=oob)
    qwire.Encoder(2, oob_threshold=0, buffer_callback=lambda b: False)


def values() -> qwire.Table:
    v = qwire.Vector(np.arange(3), "long", attr="s")
    assert_type(v.qtype, str)
    assert_type(len(v), int)
    t = qwire.Table({"a": np.arange(3), "b": [b"x", b"y", b"z"], "c": v})
    cols: list[str] = t.columns
    kt = qwire.KeyedTable(t, t, sorted=True)
    assert_type(kt.keys, qwire.Table)
    d = qwire.Dict(["a", "b"], [1, 2])
    pairs: dict[Any, Any] = d.to_dict()
    print(cols, pairs, qwire.DateTime(1.5).to_numpy(), qwire.Timestamp(10).ns, qwire.Lambda("{x}").source)
    try:
        qwire.loads(qwire.dumps(qwire.QError("type")))
    except qwire.QError as e:
        assert_type(e.text, str)
    except qwire.DecodeError as e:
        assert_type(e.offset, int | None)
    z = compression.compress(bytes(qwire.dumps(t)), threshold=compression.KDB_COMPRESSION_THRESHOLD)
    assert_type(z, bytes)
    return t


def files(path: str) -> list[Any]:
    with qwire.MessageLog(path, msg_type="async") as log:
        log.append({"x": 1})
    first = qwire.load(path, mmap=True)
    return [first, *qwire.iter_load(path)]
'''

# Each line ending in `# E` must be reported by mypy, and nothing else may be.
BAD = '''\
import qwire

qwire.dumps(1, msg_type=3.5)  # E
qwire.dumps(1, msg_type="request")  # E
qwire.dumps(1, compress="always")  # E
qwire.dumps(1, capability=7)  # E
qwire.dumps(1, registry={})  # E
qwire.loads(123)  # E
qwire.loads("text")  # E
qwire.loads(b"", max_depth="deep")  # E
qwire.loads(b"", unknown_option=1)  # E
qwire.Encoder(msg_type=5)  # E
qwire.Decoder(256)  # E
s: str = qwire.dumps(1)  # E
qwire.dumps(1).write_to("out.bin")  # E
qwire.Vector([1], "long", attr="x")  # E
qwire.Table({1: [1]})  # E
qwire.register(qwire.dumps)  # E
'''


@pytest.mark.slow
def test_mypy_strict_on_typical_code(tmp_path):
    env, config = _mypy_env(tmp_path)
    (tmp_path / "good.py").write_text(GOOD)
    (tmp_path / "bad.py").write_text(BAD)
    # one run for both files (one cold cache); imports are followed silently: the library's own
    # internals are not what is checked here, its public signatures are
    r = _run(["mypy", "--strict", "--follow-imports=silent", "--config-file", str(config), "--cache-dir",
              str(tmp_path / "cache"), "--python-executable", sys.executable, "--no-pretty", "--show-error-codes",
              "good.py", "bad.py"], env, tmp_path)
    out = r.stdout + r.stderr
    errors = [line for line in out.splitlines() if ": error:" in line]
    assert not [e for e in errors if e.startswith("good.py")], f"typical code does not type-check:\n{out}"
    expected = {i for i, line in enumerate(BAD.splitlines(), 1) if line.endswith("# E")}
    reported = {int(e.split(":")[1]) for e in errors if e.startswith("bad.py")}
    assert reported == expected, (
        f"wrong calls not reported on lines {sorted(expected - reported)}; "
        f"unexpected errors on lines {sorted(reported - expected)}:\n{out}")
    assert r.returncode == 1, out
    assert all(e.startswith(("good.py", "bad.py")) for e in errors), out


def test_typical_code_also_runs(tmp_path):
    # The code the stubs accept is valid at runtime too (a separate process: it registers a class
    # in qwire.default_registry).
    env, _ = _mypy_env(tmp_path)
    (tmp_path / "good.py").write_text(GOOD)
    script = ("import good\n"
              "assert good.roundtrip(good.Trade('a', 1.5)) == good.Trade('a', 1.5)\n"
              "good.codecs()\n"
              "assert len(good.values()) == 3\n"
              "assert good.files('log.qlog') == [{'x': 1}, {'x': 1}]\n")
    r = subprocess.run([sys.executable, "-c", script], env=env, cwd=tmp_path, capture_output=True, text=True,
                       timeout=TIMEOUT)
    assert r.returncode == 0, r.stdout + r.stderr
