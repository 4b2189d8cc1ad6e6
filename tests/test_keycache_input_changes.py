"""The cross-message record-key cache holds only what was in the message it came from, even when
the input changes while it is decoded (issue 11, item 4, the decode side).

Record dicts' key lists are remembered across messages (cython/symtab.pxi) as the wire bytes and
the keys decoded from them. The bytes used to be copied from the input after the dict's values were
decoded, and a registered decode function run for one of those values can change a bytearray the
caller passed: the cache then paired keys with bytes they were not decoded from, and every later
message with those bytes decoded to the wrong keys. From a writable input the entry's bytes are now
made from the keys, and kept only if the input still holds them.
"""
import dataclasses

from hypothesis import given, settings
from hypothesis import strategies as st

import qwire
from qwire import _core

TARGET: dict = {}


class Mutator:
    """Its decode function overwrites bytes of the message being decoded."""


def _mutate(state):
    buf, at, new = TARGET["buf"], TARGET["at"], TARGET["new"]
    buf[at:at + len(new)] = new
    return Mutator()


REG = qwire.Registry()
REG.register(Mutator, "Mutator", encode=lambda m: 0, decode=_mutate)


def _entries_are_consistent():
    for wire, keys in _core._keycache_info():
        assert wire == b"".join(k.encode("utf-8", "surrogateescape") + b"\x00" for k in keys), (wire, keys)


def _decode_changing(keys, first_key_change):
    """Decode [{keys[0]: Mutator(), keys[1]: 1, ...}] from a bytearray whose first key's bytes the
    Mutator's decode function replaces with first_key_change (same length)."""
    value = [{k: (Mutator() if i == 0 else i) for i, k in enumerate(keys)}]
    buf = bytearray(qwire.dumps(value, registry=REG))
    at = buf.index(keys[0].encode() + b"\x00")
    TARGET.update(buf=buf, at=at, new=first_key_change)
    out = qwire.loads(buf, registry=REG)
    return out, buf


def test_a_decode_function_that_rewrites_the_keys_does_not_poison_the_cache():
    _core._keycache_clear()
    out, buf = _decode_changing(["alpha", "beta"], b"omega")
    assert list(out[0]) == ["alpha", "beta"]        # decoded before the change
    _entries_are_consistent()
    # a later message whose keys are the bytes the input now holds
    later = qwire.loads(bytes(qwire.dumps({"omega": 1, "beta": 2})))
    assert list(later) == ["omega", "beta"]
    assert qwire.loads(bytes(qwire.dumps({"alpha": 1, "beta": 2}))) == {"alpha": 1, "beta": 2}


def test_an_unchanged_writable_input_is_still_cached():
    _core._keycache_clear()
    msg = bytearray(qwire.dumps({"gamma": 1, "delta": 2}))
    assert qwire.loads(msg) == {"gamma": 1, "delta": 2}
    assert (b"gamma\x00delta\x00", ["gamma", "delta"]) in _core._keycache_info()


@settings(max_examples=100, deadline=None)
@given(keys=st.lists(st.text(st.characters(min_codepoint=33, max_codepoint=0x2FF), min_size=1, max_size=8),
                     min_size=2, max_size=6, unique=True),
       change=st.binary(min_size=1, max_size=8))
def test_generated_changes(keys, change):
    """Any keys, any same-length rewrite of the first (NULs and invalid UTF-8 included): every
    cache entry is its keys' bytes, and later messages decode to the keys they hold."""
    first = keys[0].encode()
    change = (change * len(first))[:len(first)]
    _core._keycache_clear()
    _decode_changing(keys, change)
    _entries_are_consistent()
    for names in (keys, [k.encode().decode() for k in keys]):
        msg = bytes(qwire.dumps(dict.fromkeys(names, 0)))
        assert list(qwire.loads(msg)) == names
    _entries_are_consistent()


@dataclasses.dataclass
class Row:
    a: object
    b: object


def test_dict_definitions_from_a_writable_input_too():
    """The same for dicts written with refs=True (70 22 definitions)."""
    _core._keycache_clear()
    shared = [1]
    value = [{"kappa": Mutator(), "lam": shared}, shared]
    buf = bytearray(qwire.dumps(value, refs=True, registry=REG))
    TARGET.update(buf=buf, at=buf.index(b"kappa\x00"), new=b"sigma")
    out = qwire.loads(buf, registry=REG)
    assert list(out[0]) == ["kappa", "lam"]
    _entries_are_consistent()
    assert list(qwire.loads(bytes(qwire.dumps({"sigma": 1, "lam": 2})))) == ["sigma", "lam"]
