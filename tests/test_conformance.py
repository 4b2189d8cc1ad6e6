"""Conformance with bytes written by a real q (qPython's QExpressions3.out, 118 expressions).

For every expression, in both directions: `loads(q's bytes)` is the value written down in
tests/qexpressions.py (per docs/TYPES.md), `dumps(value)` is q's bytes, and `dumps(loads(bytes))`
is q's bytes (I2). The expected values are themselves checked against kdb+'s own C library
(PyKX): built with PyKX's constructors they serialize to q's bytes. Truncated and corrupted
messages raise DecodeError and nothing else.
"""
import random

import pytest

import qwire
from qexpressions import EXPECTED, ONE_WAY, QWIRE_WRITES, cases
from wire import EXPRESSIONS_FILE, message, read_pairs
from qwire.values import BinaryPrimitive, Composition, DateTime, Derived, Lambda, Projection, UnaryPrimitive, Vector
from strategies import assert_same

CASES = cases()
IDS = [c.id for c in CASES]


def test_every_expression_has_an_expected_value():
    pairs = read_pairs(EXPRESSIONS_FILE)
    assert len(pairs) == 118
    assert [e for e, _ in pairs] == list(EXPECTED), "qexpressions.EXPECTED must follow the file, one entry each"
    assert set(QWIRE_WRITES) | set(ONE_WAY) <= set(EXPECTED)


def test_no_case_is_one_way():
    # a case that cannot hold in one direction must be listed with its documented reason
    assert ONE_WAY == {}


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_decode(case):
    if case.is_error:
        with pytest.raises(qwire.QError) as info:
            qwire.loads(case.message)
        assert info.value == case.expected
        assert info.value.text == case.expected.text
    else:
        assert_same(qwire.loads(case.message), case.expected)


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_encode(case):
    assert bytes(qwire.dumps(case.expected)).hex() == case.qwire_message.hex()


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_decode_encode_is_identity(case):
    """I2: q's bytes survive loads then dumps (NaN atoms in current q's pattern)."""
    if case.is_error:
        with pytest.raises(qwire.QError) as info:
            qwire.loads(case.message)
        value = info.value
    else:
        value = qwire.loads(case.message)
    assert bytes(qwire.dumps(value)).hex() == case.qwire_message.hex()


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_decode_any_buffer(case):
    """bytes, bytearray, memoryview and a Message decode alike."""
    for data in (bytearray(case.message), memoryview(case.message), qwire.dumps(case.expected)):
        if case.is_error:
            with pytest.raises(qwire.QError, match="^type$"):
                qwire.loads(data)
        else:
            assert_same(qwire.loads(data), case.expected)


# ---- the expected values, checked against kdb+'s own serializer (independent of qwire) ---------

# what PyKX deserializes the q functions and q datetimes as; its C library turns a lambda into its
# source string (spec 3.5)
_KX_FUNCTION_TYPES = {
    Projection: "Projection", UnaryPrimitive: "UnaryPrimitive", BinaryPrimitive: "Operator",
    Composition: "Composition",
}
_KX_DERIVED = {"'": "Each", "/": "Over", "\\": "Scan", "':": "EachPrior", "/:": "EachRight", "\\:": "EachLeft"}


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_expected_value_is_what_kdb_serializes(case, kx, to_kx, kx_bytes):
    x = case.expected
    if case.is_error:
        with pytest.raises(kx.QError, match="type"):
            kx.deserialize(case.message)
        return
    try:
        k = to_kx(x)
    except NotImplementedError:
        # q functions: unlicensed PyKX has no constructors; check how kdb+ reads the bytes instead
        k = kx.deserialize(case.message)
        if isinstance(x, Lambda):
            assert type(k).__name__ == "CharVector" and bytes(k.np()).decode() == x.source
        elif isinstance(x, Derived):
            assert type(k).__name__ == _KX_DERIVED[x.kind]
        else:
            assert type(k).__name__ == _KX_FUNCTION_TYPES[type(x)]
        return
    assert kx_bytes(k).hex() == case.qwire_message.hex()


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # PyKX on q datetimes
def test_datetime_cases_are_q_datetimes(kx):
    for expr in ("2000.01.04T05:36:57.600", "0Nz", "2000.01.04T05:36:57.600 0Nz"):
        case = next(c for c in CASES if c.expression == expr)
        assert type(kx.deserialize(case.message)).__name__ in ("DatetimeAtom", "DatetimeVector")
        assert isinstance(case.expected, (DateTime, Vector))


# ---- malformed input: DecodeError and nothing else ---------------------------------------------


def _loads_or_decode_error(data, *, error_message_ok=False):
    try:
        value = qwire.loads(data)
    except qwire.DecodeError:
        return
    except qwire.QError:
        assert error_message_ok, f"QError from a message that is not a q error: {bytes(data).hex()}"
        return
    # whatever decodes must re-encode and decode to the same value (I1 on the decoded value)
    again = qwire.loads(qwire.dumps(value))
    assert_same(again, value)


def _with_length(data):
    """The message with its header's length field made to match its size (so that truncation is
    found inside the payload, not only by the header check)."""
    b = bytearray(data)
    if len(b) >= 8:
        b[4:8] = len(b).to_bytes(4, "little")
    return bytes(b)


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_truncation_raises_decode_error(case):
    for n in range(len(case.message)):
        with pytest.raises(qwire.DecodeError):
            qwire.loads(case.message[:n])
        if n >= 8:
            with pytest.raises(qwire.DecodeError):
                qwire.loads(_with_length(case.message[:n]))


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_trailing_bytes_raise_decode_error(case):
    with pytest.raises(qwire.DecodeError):
        qwire.loads(_with_length(case.message + b"\x00"))


FLIPS_PER_MESSAGE = 300


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_byte_flips_raise_only_decode_error(case):
    rng = random.Random(f"flip-{case.index}")
    for _ in range(FLIPS_PER_MESSAGE):
        b = bytearray(case.message)
        for _ in range(rng.choice((1, 1, 1, 2, 3))):
            i = rng.randrange(len(b))
            b[i] = rng.choice((b[i] ^ (1 << rng.randrange(8)), rng.randrange(256), 0x00, 0xFF, 0x80))
        if rng.random() < 0.5:
            b = bytearray(_with_length(b))  # keep the header consistent half the time
        # a flip can make a valid q error message (type byte -128 at the top level)
        _loads_or_decode_error(bytes(b), error_message_ok=b[8] == 0x80)


def test_error_message():
    with pytest.raises(qwire.QError) as info:
        qwire.loads(message(bytes.fromhex("80 74797065 00")))
    assert info.value.text == "type"
    assert isinstance(info.value, qwire.QWireError)
