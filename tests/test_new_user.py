"""What a new user met in the first hour. `qwire.dumps(pd.Timestamp(..., tz="UTC"))` overflowed the
C stack: the pandas conversion handed the Timestamp back unchanged and the encoder converted it
again, forever. A conversion is now a nesting level of its own (bounded by max_depth and the
thread's stack) and one that returns its input falls through to the refusal, so every datetime,
date, time and timedelta subclass with any tzinfo is written or refused with an EncodeError.
`values_equal` on cyclic values (as refs=True decodes them) returns."""
from __future__ import annotations

import datetime as dt
import subprocess
import sys

import pytest
from hypothesis import given
from hypothesis import strategies as st

import qwire
from qwire.values import Dict, Vector, values_equal


def test_a_tz_aware_pandas_timestamp_does_not_crash():
    """Run in a child, so that a regression is a failed test rather than a dead test run."""
    code = ("import qwire, pandas as pd\n"
            "for tz in ('UTC', 'Europe/London', 'Asia/Tokyo', None):\n"
            "    try:\n"
            "        qwire.loads(qwire.dumps(pd.Timestamp('2024-01-01', tz=tz)))\n"
            "    except qwire.EncodeError:\n"
            "        pass\n"
            "print('ok')\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "ok"


class Fixed(dt.tzinfo):
    def __init__(self, minutes):
        self.minutes = minutes

    def utcoffset(self, d):
        return dt.timedelta(minutes=self.minutes)

    def dst(self, d):
        return dt.timedelta(0)

    def tzname(self, d):
        return f"F{self.minutes}"


class NoOffset(dt.tzinfo):
    def utcoffset(self, d):
        return None

    def dst(self, d):
        return None


class WrongType(dt.tzinfo):
    def utcoffset(self, d):
        return "an hour"


class TooBig(dt.tzinfo):
    def utcoffset(self, d):
        return dt.timedelta(days=2)


class MyDateTime(dt.datetime):
    pass


class MyDate(dt.date):
    pass


class MyTime(dt.time):
    pass


class MyTimedelta(dt.timedelta):
    pass


class Converted(dt.datetime):
    """Like pd.Timestamp: a subclass whose tz-aware instances a conversion might hand back."""


tzinfos = st.one_of(st.none(), st.just(dt.timezone.utc), st.integers(-1439, 1439).map(lambda m: Fixed(m)),
                    st.integers(-1439, 1439).map(lambda m: dt.timezone(dt.timedelta(minutes=m))),
                    st.builds(NoOffset), st.builds(WrongType), st.builds(TooBig))


@given(st.datetimes(), tzinfos, st.sampled_from([dt.datetime, MyDateTime, Converted]), st.booleans())
def test_datetimes_of_any_class_and_tzinfo(value, tz, cls, q_compatible):
    obj = cls(value.year, value.month, value.day, value.hour, value.minute, value.second, value.microsecond, tz)
    try:
        out = qwire.loads(qwire.dumps([obj], q_compatible=q_compatible))
    except qwire.EncodeError:
        return
    assert cls is dt.datetime
    if tz is None or q_compatible:
        assert out[0].replace(tzinfo=None) == obj.replace(tzinfo=None) or hasattr(out[0], "dtype")
    else:
        assert out[0] == obj and out[0].utcoffset() == obj.utcoffset()


@given(st.times(), tzinfos, st.sampled_from([dt.time, MyTime]))
def test_times_of_any_class_and_tzinfo(value, tz, cls):
    obj = cls(value.hour, value.minute, value.second, value.microsecond, tz)
    try:
        out = qwire.loads(qwire.dumps(obj))
    except qwire.EncodeError:
        return
    assert cls is dt.time
    assert out.replace(tzinfo=None) == obj.replace(tzinfo=None)


@given(st.dates(), st.timedeltas(), st.booleans())
def test_date_and_timedelta_subclasses(d, td, q_compatible):
    for obj in (MyDate(d.year, d.month, d.day), MyTimedelta(td.days, td.seconds, td.microseconds)):
        with pytest.raises(qwire.EncodeError, match="subclass of datetime"):
            qwire.dumps(obj, q_compatible=q_compatible)


def test_a_conversion_that_returns_its_input_is_refused_not_repeated(monkeypatch):
    """The mechanism behind the crash: a foreign-object conversion handing back the same object."""
    pd = pytest.importorskip("pandas")
    from qwire import _integrations

    monkeypatch.setattr(_integrations, "convert_foreign", lambda obj, q_compatible: obj)
    with pytest.raises(qwire.EncodeError):
        qwire.dumps(pd.Timestamp("2024-01-01"))
    # a conversion that keeps producing new convertible objects is bounded by max_depth
    monkeypatch.setattr(_integrations, "convert_foreign", lambda obj, q_compatible: pd.Timestamp(obj.value + 1))
    with pytest.raises(qwire.EncodeError, match="nesting"):
        qwire.dumps(pd.Timestamp("2024-01-01"))


# ---- values_equal on cyclic values ---------------------------------------------------------------

@st.composite
def cyclic_graphs(draw):
    """(a, b, equal): two graphs of lists/dicts/Dicts with back edges; b is a structural copy of a
    (equal) or a copy with one leaf changed (not equal)."""
    n = draw(st.integers(1, 6))
    kinds = draw(st.lists(st.sampled_from(["list", "dict", "Dict", "Vector"]), min_size=n, max_size=n))
    leaves = draw(st.lists(st.integers(0, 5), min_size=n, max_size=n))
    edges = draw(st.lists(st.lists(st.integers(0, n - 1), max_size=3), min_size=n, max_size=n))
    change = draw(st.one_of(st.none(), st.integers(0, n - 1)))

    def build(leaf_of):
        nodes = []
        for k in kinds:
            nodes.append([] if k in ("list", "Vector") else {} if k == "dict" else Dict([], []))
        for i, (k, node) in enumerate(zip(kinds, nodes)):
            targets = [nodes[j] for j in edges[i]]
            if k == "list":
                node.extend([leaf_of(i)] + targets)
            elif k == "dict":
                node.update({"leaf": leaf_of(i), **{f"e{j}": t for j, t in enumerate(targets)}})
            elif k == "Dict":
                node.keys.extend(["leaf"] + [f"e{j}" for j in range(len(targets))])
                node.values.extend([leaf_of(i)] + targets)
            else:
                node.extend([leaf_of(i)] + targets)
        wrapped = [Vector(x, "list") if k == "Vector" else x for k, x in zip(kinds, nodes)]
        return wrapped[0]

    a = build(lambda i: leaves[i])
    b = build(lambda i: leaves[i] + (1 if i == change else 0))
    reachable, todo = {0}, [0]
    while todo:
        for j in edges[todo.pop()]:
            if j not in reachable:
                reachable.add(j)
                todo.append(j)
    return a, b, change is None or change not in reachable


@given(cyclic_graphs())
def test_values_equal_terminates_on_cycles(case):
    a, b, equal = case
    assert values_equal(a, a)
    assert values_equal(a, b) is equal
    assert values_equal(b, a) is equal


def test_values_equal_on_the_decoded_cycles_of_refs():
    a = [1, {"x": None}]
    a[1]["x"] = a
    b = qwire.loads(qwire.dumps(a, refs=True))
    c = qwire.loads(qwire.dumps(a, refs=True))
    assert values_equal(b, c)
    c[0] = 2
    assert not values_equal(b, c)
    d = [1, {"x": [1, {"x": None}]}]
    d[1]["x"][1]["x"] = d          # the same infinite tree, unrolled once
    assert values_equal(b, d)
