"""The Encoder's key cache: a message's last record keys (by identity) and their symbol-vector bytes,
reused by the next message whose dict has the same key objects. Whatever it holds, every message
must be byte for byte what a fresh Encoder writes."""
import gc
import sys
import threading

import numpy as np
import pytest

import qwire


def fresh(obj, **kw):
    return bytes(qwire.Encoder(**kw).encode(obj))


def test_same_key_objects_with_other_values():
    enc = qwire.Encoder()
    for i in range(50):
        d = {"id": i, "px": i * 0.5, "sym": f"s{i % 7}", "ok": bool(i % 2)}
        assert bytes(enc.encode(d)) == fresh(d)


def test_equal_keys_that_are_other_objects_and_keys_that_differ():
    enc = qwire.Encoder()
    base = {"alpha": 1, "beta": 2}
    assert bytes(enc.encode(base)) == fresh(base)
    rebuilt = {"".join(["al", "pha"]): 3, "".join(["be", "ta"]): 4}     # equal text, new str objects
    assert bytes(enc.encode(rebuilt)) == fresh(rebuilt)
    for other in ({"alpha": 1}, {"alpha": 1, "gamma": 2}, {"beta": 2, "alpha": 1}, {"alpha": 1, "beta": 2, "c": 3}):
        assert bytes(enc.encode(other)) == fresh(other)
        assert bytes(enc.encode(base)) == fresh(base)


@pytest.mark.parametrize("capability", [3, 6])
def test_nested_records_keys_with_nul_and_big_key_sets(capability):
    enc = qwire.Encoder(capability=capability)
    big = {f"key_number_{i:03d}_" + "x" * 10: i for i in range(30)}           # > 256 bytes of keys: not kept
    values = [
        {"a": {"a": 1, "b": 2}, "b": [{"a": 3, "b": 4}]},
        {"a": 1, "b": 2},
        {"a\0": 1, "b": 2},                      # a NUL in a key: keys become a general list
        big, big, {"a": 1, "b": 2},
        {},
        [{"a": 1, "b": 2}, {"a": 5, "b": 6}],
    ]
    for v in values + values[::-1]:
        assert bytes(enc.encode(v)) == fresh(v, capability=capability)
        assert qwire.loads(enc.encode(v)) == v


def test_a_failed_encode_leaves_the_next_one_right():
    enc = qwire.Encoder(q_compatible=True)
    ok = {"k1": 1, "k2": 2}
    assert bytes(enc.encode(ok)) == fresh(ok, q_compatible=True)
    with pytest.raises(qwire.EncodeError):
        enc.encode({"k1": 1, "k2": (1, 2)})       # a tuple: refused in the q profile, after the keys
    assert bytes(enc.encode(ok)) == fresh(ok, q_compatible=True)
    assert bytes(enc.encode({"k1": "x", "k2": None})) == fresh({"k1": "x", "k2": None}, q_compatible=True)


def test_cached_keys_are_released_not_leaked():
    enc = qwire.Encoder()
    key = "".join(["only", "_here"])
    before = sys.getrefcount(key)
    enc.encode({key: 1})
    assert sys.getrefcount(key) == before + 1        # the cache's own reference
    enc.encode({"other": 1})
    assert sys.getrefcount(key) == before            # replaced: released
    for _ in range(1000):
        enc.encode({"".join(["k", "ey"]): 1})        # a new key object every time
    del enc
    gc.collect()
    assert sys.getrefcount(key) == before


def test_threads_sharing_an_encoder_get_exact_bytes():
    enc = qwire.Encoder()
    shapes = [{"a": 1, "b": 2.5}, {"a": "x", "b": None}, {"x": 1}, {"x": np.arange(3), "y": [1]},
              {"a": 1, "b": 2.5, "c": "z"}, [{"a": 1, "b": 2.5}] * 3]
    expected = [fresh(s) for s in shapes]
    errors = []

    def worker(seed):
        order = np.random.default_rng(seed).integers(0, len(shapes), 20000)
        for i in order:
            if bytes(enc.encode(shapes[i])) != expected[i]:
                errors.append(i)
                return

    threads = [threading.Thread(target=worker, args=(s,)) for s in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
