"""Only qwire's errors escape encoding. Whatever the caller's code (registered encode functions,
properties, tzinfo methods, buffer callbacks, the iterables behind a Vector) or CPython and NumPy
raise while a value is written becomes an EncodeError that names the object and where it sits in
the value (`path`, and "(at obj[...])" in the text), with the original exception as __cause__."""
from __future__ import annotations

import dataclasses
import datetime as dt

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import qwire
from qwire import Vector

EXCEPTIONS = [ValueError("bad value"), TypeError("bad type"), KeyError("k"), ZeroDivisionError("zero"),
              RecursionError("too deep"), AttributeError("attr"), OverflowError("big"), RuntimeError("boom"),
              StopIteration(), LookupError("lookup")]


class Custom(Exception):
    pass


EXCEPTIONS.append(Custom("custom"))
exceptions = st.sampled_from(EXCEPTIONS)

# Where the failing object is put: a path of list indices and dict keys from the root.
steps = st.lists(st.one_of(st.integers(0, 3), st.sampled_from(["a", "key", "x"])), max_size=4)


def place(obj, path):
    """(value, expected path text) with obj reached through `path`."""
    value, text = obj, ""
    for step in reversed(path):
        if isinstance(step, int):
            value = [None] * step + [value]
        else:
            value = {"other": 1, step: value}
    for step in path:
        text += f"[{step!r}]"
    return value, "obj" + text


def check(exc_info, original, path_text):
    err = exc_info.value
    assert isinstance(err, qwire.EncodeError)
    assert err.__cause__ is original or (type(err.__cause__) is type(original) and err.__cause__.args == original.args)
    if path_text != "obj":
        assert err.path == path_text
        assert f"(at {path_text})" in str(err)


def raiser(exc):
    def f(*args, **kwargs):
        raise exc
    return f


@given(exceptions, steps)
def test_a_registered_encode_function_that_raises(exc, path):
    registry = qwire.Registry()

    class Thing:
        pass

    registry.register(Thing, "test.Thing", encode=raiser(exc), decode=lambda s: Thing())
    obj = Thing()
    value, text = place(obj, path)
    for refs in (False, True):
        with pytest.raises(qwire.EncodeError, match="encode function registered for 'test.Thing'") as info:
            qwire.dumps(value, registry=registry, refs=refs)
        check(info, exc, text)
        assert info.value.obj_type is Thing


@given(exceptions, steps)
def test_a_field_read_through_code_that_raises(exc, path):
    """A registered dataclass whose field is not in its __dict__, so reading it runs the class's
    __getattr__, which raises."""
    registry = qwire.Registry()

    @dataclasses.dataclass
    class Lazy:
        x: int

        def __getattr__(self, name):
            raise exc

    registry.register(Lazy, "test.Lazy")
    obj = Lazy(1)
    del obj.__dict__["x"]
    value, text = place(obj, path)
    with pytest.raises(qwire.EncodeError, match="reading its field 'x'") as info:
        qwire.dumps(value, registry=registry)
    check(info, exc, text)


@given(exceptions, steps)
def test_a_tzinfo_whose_utcoffset_raises(exc, path):
    class BadZone(dt.tzinfo):
        def utcoffset(self, d):
            raise exc

        def dst(self, d):
            return None

        def tzname(self, d):
            return "bad"

    obj = dt.datetime(2024, 1, 1, tzinfo=BadZone())
    value, text = place(obj, path)
    with pytest.raises(qwire.EncodeError) as info:
        qwire.dumps(value)
    check(info, exc, text)


@given(exceptions, steps)
def test_a_buffer_callback_that_raises(exc, path):
    obj = np.zeros(10_000, dtype=np.float64)
    value, text = place(obj, path)
    with pytest.raises(qwire.EncodeError, match="buffer_callback") as info:
        qwire.dumps(value, buffer_callback=raiser(exc))
    check(info, exc, text)


@given(exceptions, steps, st.integers(0, 3))
def test_a_vector_of_an_iterable_that_raises(exc, path, good_items):
    def gen():
        yield from range(good_items)
        raise exc

    obj = Vector(gen(), "list")
    value, text = place(obj, path)
    with pytest.raises(qwire.EncodeError, match="Vector's values") as info:
        qwire.dumps(value)
    err = info.value
    # a generator raising StopIteration is turned into RuntimeError by Python itself (PEP 479)
    assert isinstance(err.__cause__, RuntimeError if isinstance(exc, StopIteration) else type(exc))
    if text != "obj":
        assert err.path == text


@given(st.integers(4301, 6000), steps, st.sampled_from(["long", "int", "float", "timestamp"]))
def test_huge_ints_in_typed_vectors(digits, path, qtype):
    """A 5,000-digit int where a vector needs a machine number: NumPy's OverflowError (and CPython's
    int-to-str limit, were the int printed) stay inside the EncodeError."""
    obj = Vector([1, 10**digits], qtype)
    value, text = place(obj, path)
    with pytest.raises(qwire.EncodeError) as info:
        qwire.dumps(value)
    assert len(str(info.value)) < 2000     # prints, and without the int in full
    if info.value.__cause__ is not None:   # NumPy's OverflowError: where it happened
        assert isinstance(info.value.__cause__, (OverflowError, ValueError, TypeError))
        if text != "obj":
            assert info.value.path == text


@given(st.integers(4301, 6000))
def test_huge_ints_in_error_messages(digits):
    """Error messages never print a huge int in full (CPython refuses past 4,300 digits)."""
    big = 10**digits
    for value, kwargs in [(big, {"q_compatible": True}), ([big], {"q_compatible": True}),
                          (Vector([big], "symbol"), {}), ({"a": Vector([big], "guid")}, {})]:
        with pytest.raises(qwire.EncodeError) as info:
            qwire.dumps(value, **kwargs)
        assert len(str(info.value)) < 2000


def test_a_broken_repr_does_not_hide_the_error():
    class Zone(dt.tzinfo):
        def utcoffset(self, d):
            return None

        def __repr__(self):
            raise ValueError("no repr")

    t = dt.time(1, 2, 3, tzinfo=Zone())
    with pytest.raises(qwire.EncodeError, match="tzinfo gives no fixed UTC offset"):
        qwire.dumps(t)


def test_recursion_inside_a_hook_is_an_encode_error():
    """A hook that recurses without end raises RecursionError inside the hook: an EncodeError."""
    registry = qwire.Registry()

    class Loop:
        pass

    def encode(obj):
        return encode(obj)

    registry.register(Loop, "test.Loop", encode=encode, decode=lambda s: Loop())
    with pytest.raises(qwire.EncodeError) as info:
        qwire.dumps([Loop()], registry=registry)
    assert isinstance(info.value.__cause__, RecursionError)
    assert info.value.path == "obj[0]"


def test_unregistered_objects_deep_inside_are_located():
    """The refusal of an object nothing can write says where it is too."""
    class Opaque:
        pass

    with pytest.raises(qwire.ForeignObjectError) as info:
        qwire.dumps({"a": [1, 2, {"b": Opaque()}]})
    assert info.value.path == "obj['a'][2]['b']"


def test_memory_errors_and_interrupts_are_not_wrapped():
    """MemoryError and BaseExceptions (KeyboardInterrupt) pass through as they are."""
    registry = qwire.Registry()

    class A:
        pass

    class B:
        pass

    registry.register(A, "test.A", encode=raiser(MemoryError()), decode=lambda s: A())
    registry.register(B, "test.B", encode=raiser(KeyboardInterrupt()), decode=lambda s: B())
    with pytest.raises(MemoryError):
        qwire.dumps(A(), registry=registry)
    with pytest.raises(KeyboardInterrupt):
        qwire.dumps(B(), registry=registry)
