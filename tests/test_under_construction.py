"""Objects under construction are never used (issue 11, item 2).

A registered dataclass is created empty and registered as a reference before its fields are read,
so that its fields may refer back to it (cycles through registered objects). Until they are set
it has no attributes: a reference to it from inside its own fields may be stored (it is complete
when decoding returns), but never hashed, compared or handed to a registered class's code that
needs its state. Each such use is a DecodeError, never an attribute-less object, AttributeError,
RecursionError or a crash, also on a 256 KiB thread stack. A value that contains itself through
immutable ones (a frozen dataclass whose field is a tuple holding it) cannot be hashed: a set of
it is refused, not a RecursionError.
"""
import dataclasses
import threading

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import qwire
from fuzz import hostile as h
from qwire.errors import DecodeError


@dataclasses.dataclass(frozen=True)
class P:
    x: object


@dataclasses.dataclass(frozen=True, eq=False)
class ByIdentity:
    x: object


@dataclasses.dataclass(unsafe_hash=True)
class Mutable:
    x: object


class Holder:
    """Rebuilt by its decode function, which reads its argument's state."""

    def __init__(self, inner):
        self.inner = inner
        self.seen = inner.x


REG = qwire.Registry()
REG.register(P, "P")
REG.register(ByIdentity, "ByIdentity")
REG.register(Mutable, "Mutable")
REG.register(Holder, "Holder", encode=lambda o: o.inner, decode=Holder)

# Issue 11's message: 70 22 (define) a P whose field x is a set definition holding a reference to
# object #0, the P itself.
ISSUE = bytes.fromhex("010000003500000070227020000002000000f55000630b00010000007800000001000000"
                      "702270020000010000007021fa00000000")


def loads(msg):
    return qwire.loads(msg, registry=REG)


def test_issue_message_is_a_decode_error():
    with pytest.raises(DecodeError, match="still being decoded"):
        loads(ISSUE)


def _self_reference(name, wrap):
    """70 22 `name`(x=wrap(ref 0)): a registered object whose field reaches it back."""
    return h.message(h.define(h.registered(name, {"x": wrap(h.ref(0))})))


USES = {
    "set record": lambda r: h.set_record([r]),
    "frozenset record": lambda r: h.set_record([r], frozen=True),
    "set record of 40": lambda r: h.set_record([r] + [h.long_atom(i) for i in range(40)]),
    "set definition": lambda r: h.define(h.set_record([r])),
    "dict definition's key": lambda r: h.define(h.dictionary(h.general_list([r]), h.general_list([h.long_atom(1)]))),
    "tuple in a set": lambda r: h.set_record([h.tuple_record([r])]),
    "tuple in a frozenset in a tuple in a set": lambda r: h.set_record([h.tuple_record([h.set_record([r], frozen=True)])]),
    "custom decode function": lambda r: h.registered_custom("Holder", r),
}


@pytest.mark.parametrize("use", USES)
@pytest.mark.parametrize("name", ["P", "Mutable"])
def test_using_an_object_under_construction_is_a_decode_error(name, use):
    with pytest.raises(DecodeError) as info:
        loads(_self_reference(name, USES[use]))
    assert info.value.offset is not None


@pytest.mark.parametrize("use", ["set record", "set definition", "list"])
def test_storing_a_reference_to_it_or_hashing_by_identity_works(use):
    """What does not need the object's state is no use of it: a list holding it, or a set of an
    eq=False dataclass (hashed by identity). The object comes back complete, in its own field."""
    wrap = (lambda r: h.general_list([r])) if use == "list" else USES[use]
    value = loads(_self_reference("ByIdentity", wrap))
    (inner,) = value.x
    assert inner is value
    value = loads(_self_reference("P", lambda r: h.general_list([r])))
    assert value.x[0] is value


def test_a_value_containing_itself_through_immutable_ones_is_not_hashed():
    """P(x=(P,)) decodes (as pickle would make it); a set of it cannot be built: refused."""
    cyclic = h.define(h.registered("P", {"x": h.tuple_record([h.ref(0)])}))
    value = loads(h.message(cyclic))
    assert value.x[0] is value
    for use in ("set record", "set definition", "dict definition's key", "tuple in a set"):
        with pytest.raises(DecodeError, match="nests deeper"):
            loads(h.message(h.general_list([cyclic, USES[use](h.ref(0))])))


def _in_small_thread(fn):
    out = {}

    def run():
        try:
            out["value"] = fn()
        except BaseException as e:  # noqa: BLE001 - reported to the test
            out["error"] = e

    threading.stack_size(256 * 1024)
    try:
        t = threading.Thread(target=run)
        t.start()
        t.join()
    finally:
        threading.stack_size(0)
    return out


@pytest.mark.parametrize("use", sorted(USES))
def test_on_a_256_kib_thread_stack_too(use):
    out = _in_small_thread(lambda: loads(_self_reference("P", USES[use])))
    assert isinstance(out.get("error"), DecodeError), out
    cyclic = h.define(h.registered("P", {"x": h.tuple_record([h.ref(0)])}))
    out = _in_small_thread(lambda: loads(h.message(h.general_list([cyclic, USES[use](h.ref(0))]))))
    assert "value" in out and use == "custom decode function" or isinstance(out.get("error"), DecodeError), out


@settings(max_examples=80, deadline=None)
@given(wraps=st.lists(st.sampled_from(["tuple", "list", "frozenset", "P"]), max_size=6),
       use=st.sampled_from(sorted(USES)), name=st.sampled_from(["P", "Mutable", "ByIdentity"]))
def test_generated_self_references(wraps, use, name):
    """A reference to the object being built, wrapped in generated layers and then used: a
    DecodeError, or (when nothing needed its state) a complete object whose fields reach it."""
    layers = {"tuple": lambda r: h.tuple_record([r]), "list": lambda r: h.general_list([r]),
              "frozenset": lambda r: h.set_record([r], frozen=True), "P": lambda r: h.registered("P", {"x": r})}

    def wrap(r):
        for w in wraps:
            r = layers[w](r)
        return USES[use](r)

    try:
        value = loads(_self_reference(name, wrap))
    except DecodeError:
        return
    assert type(value).__name__ == name and "x" in vars(value)
    # every registered object reachable in the result is complete
    stack, seen = [value], set()
    while stack:
        v = stack.pop()
        if id(v) in seen:
            continue
        seen.add(id(v))
        if dataclasses.is_dataclass(v):
            assert "x" in vars(v)
            stack.append(v.x)
        elif isinstance(v, (list, tuple, set, frozenset)):
            stack.extend(v)
        elif isinstance(v, dict):
            stack.extend(v)
            stack.extend(v.values())
        elif isinstance(v, Holder):
            stack.append(v.inner)


def test_decoded_dataclasses_have_their_attributes():
    """Item 9: on CPython 3.13.0 a decoded dataclass had a __dict__ but no attributes; fields
    must be attributes on every Python (the decoder probes how to set them)."""
    value = qwire.loads(qwire.dumps([Mutable(1), P([2])], registry=REG), registry=REG)
    assert value[0].x == 1 and value[1].x == [2] and vars(value[0]) == {"x": 1}
