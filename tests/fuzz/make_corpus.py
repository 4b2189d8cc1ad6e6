"""Write the fuzz seed corpus: `python tests/fuzz/make_corpus.py [OUT]` (default WORK/seeds).

Seeds, one message per file (named by content hash, so reruns don't duplicate):
* real kdb+ messages: every vector of tests/data/conformance/qpython/*.out (tests/wire.py), with its header;
* structure-aware generated messages: hypothesis strategies over the type grammar
  (tests/strategies.py: wire trees written as kdb+ writes them, in both byte orders, and Python
  values written by qwire), a fixed seed so the corpus is reproducible;
* compressed forms of the bigger ones (compression.compress), and of a few large generated ones;
* the hostile messages of hostile.py (what test_limits.py checks), kept small (deep nesting and big
  counts at sizes up to MAX_SEED bytes).

Takes ~10-20 s. The corpus is build output: never commit it.
"""
from __future__ import annotations

import glob
import hashlib
import os
import sys
import warnings

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path[:0] = [HERE, os.path.join(ROOT, "tests")]
if glob.glob(os.path.join(ROOT, "src", "qwire", "_core*.so")):  # an in-place build; else the installed qwire
    sys.path.insert(0, os.path.join(ROOT, "src"))

import hostile  # noqa: E402
import wire  # noqa: E402

MAX_SEED = 16384


def conformance_messages():
    return [*wire.compressed_conformance_messages().values(), *wire.conformance_messages().values()]


def generated_messages(n_wire=400, n_values=300):
    """Messages from hypothesis strategies, reproducibly (derandomized, no example database)."""
    try:
        from hypothesis import HealthCheck, Phase, given, settings
        import strategies
        import qwire
    except Exception as e:  # noqa: BLE001 - the corpus still works without them
        print(f"skipping generated seeds: {e}", file=sys.stderr)
        return []
    out = []
    common = dict(database=None, derandomize=True, phases=[Phase.generate], deadline=None,
                  suppress_health_check=list(HealthCheck))

    @settings(max_examples=n_wire, **common)
    @given(strategies.q_messages(max_leaves=12))
    def wire_le(m):
        out.append(m)

    @settings(max_examples=n_wire // 4, **common)
    @given(strategies.q_messages(byteorder="big", max_leaves=12))
    def wire_be(m):
        out.append(m)

    @settings(max_examples=n_values, **common)
    @given(strategies.python_values(max_leaves=12))
    def values(v):
        try:
            out.append(bytes(qwire.dumps(v)))
        except Exception:
            pass

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for f in (wire_le, wire_be, values):
            try:
                f()
            except Exception as e:  # noqa: BLE001
                print(f"generator {f.__name__} stopped: {e}", file=sys.stderr)
    return out


def bigger_messages():
    """A few valid messages large enough to compress (and to exercise the roomy paths)."""
    import numpy as np
    import qwire

    vals = [
        np.arange(600, dtype=np.int64),
        np.zeros(3000, dtype=np.uint8),
        ["abc"] * 300,
        {"a": np.arange(200, dtype=np.int32), "b": np.linspace(0, 1, 200)},
        qwire.Table({"x": np.arange(100), "s": np.array(["a", "bb", "ccc", "d"] * 25, dtype=object)}),
        b"q" * 2500,
    ]
    out = [bytes(qwire.dumps(v)) for v in vals]
    # sets and dicts of items sharing one hash value, at the limit (cython/hashtally.pxi): big
    # ints k * (2**61 - 1), and a dict definition of them (refs=True writes definitions)
    colliding = [k * ((1 << 61) - 1) for k in range(5, 5 + qwire._core.MAX_ITEMS_SHARING_A_HASH)]
    out += [bytes(qwire.dumps(set(colliding))), bytes(qwire.dumps(dict.fromkeys(colliding, 0), refs=True)),
            bytes(qwire.dumps({k: 0 for k in colliding}))]
    return out


def hostile_messages():
    out = [m for _, m, _ in hostile.named_cases() + hostile.compression_cases()]
    out += [
        hostile.nested_lists(300),
        hostile.nested_lists(2000),
        hostile.empty_lists(2000),
        hostile.one_char_symbols(4000),
        hostile.symbol_atoms(3000),
        hostile.small_vectors(1000),
        hostile.empty_dicts(1000),
        bytes.fromhex("010200000d0000006200f56100"),
    ]
    return out


def registry_messages():
    """Messages with registered-class records (the `registry` target's registry), refs included."""
    import registry_support

    return registry_support.seed_messages()


def shared_messages():
    """Shared structures (the `shared` target's programs, as messages every target can read), issue
    11's 2^64-leaf chain and its message reaching a frozen dataclass under construction."""
    import shared_support

    out = [shared_support.shared_message(bytes([i]) * i) for i in range(64)]
    out.append(shared_support.seeds()[1])
    out.append(bytes.fromhex("010000003500000070227020000002000000f55000630b00010000007800000001000000"
                             "702270020000010000007021fa00000000"))
    return out


def compressed_forms(msgs):
    from qwire import compression

    out = []
    for m in msgs:
        if len(m) >= 64:
            try:
                z = compression.compress(m)
            except Exception:
                continue
            if compression.is_compressed(z):
                out.append(z)
    return out


def main(argv):
    out_dir = argv[1] if len(argv) > 1 else os.path.join(os.environ.get("QWIRE_FUZZ_WORK", "/tmp/qwire-fuzz"), "seeds")
    os.makedirs(out_dir, exist_ok=True)
    msgs = conformance_messages()
    print(f"{len(msgs)} conformance messages")
    gen = generated_messages()
    print(f"{len(gen)} generated messages")
    msgs += gen
    try:
        big = bigger_messages()
    except Exception as e:  # noqa: BLE001
        print(f"skipping bigger messages: {e}", file=sys.stderr)
        big = []
    msgs += big
    msgs += hostile_messages()
    try:
        msgs += registry_messages()
    except Exception as e:  # noqa: BLE001
        print(f"skipping registry messages: {e}", file=sys.stderr)
    try:
        msgs += shared_messages()
    except Exception as e:  # noqa: BLE001
        print(f"skipping shared-structure messages: {e}", file=sys.stderr)
    try:
        msgs += compressed_forms(msgs)
    except Exception as e:  # noqa: BLE001
        print(f"skipping compressed forms: {e}", file=sys.stderr)
    written = 0
    for m in msgs:
        if not m or len(m) > MAX_SEED:
            continue
        name = hashlib.sha1(m).hexdigest()
        path = os.path.join(out_dir, name)
        if not os.path.exists(path):
            with open(path, "wb") as f:
                f.write(m)
            written += 1
    print(f"{written} new seeds in {out_dir} ({len(os.listdir(out_dir))} in all)")


if __name__ == "__main__":
    main(sys.argv)
