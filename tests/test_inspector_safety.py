"""`qwire inspect` prints what a message holds without letting the message drive the terminal:
every character a terminal could act on (C0/C1 controls, DEL, bidi and other format characters,
invalid UTF-8), wherever the message puts it (q error text, lambda source and context, symbols,
char vectors, dictionary keys, table column names), is printed as an escape; deep values never
raise RecursionError (nesting is capped at MAX_DEPTH_LIMIT, which both printers stay far from)."""
from __future__ import annotations

import struct
import sys
import unicodedata

import pytest
from hypothesis import given
from hypothesis import strategies as st

import qwire
from qwire import Lambda, QError, Table, Vector
from qwire.inspector import MAX_DEPTH_LIMIT, format_layout, read_messages, render_q

DANGEROUS = [chr(c) for c in list(range(0, 32)) + [127] + list(range(0x80, 0xA0))] + [
    "\u202e", "\u2066", "\u200b", "\ufeff", "\u061c", "\u2028"]


def is_safe(text: str) -> bool:
    """Nothing a terminal acts on: only printable characters, spaces and line breaks."""
    return all(ch in "\n\t" or (ch.isprintable() and unicodedata.category(ch) not in ("Cc", "Cf")) for ch in text)


hostile_text = st.lists(st.one_of(st.sampled_from(DANGEROUS), st.sampled_from(["\x1b[2J", "\x1b]0;pwned\x07", "\x9b31m"]),
                                  st.text(max_size=5)), min_size=1, max_size=6).map("".join).filter(
    lambda s: "\0" not in s)


def both_printers(raw: bytes, max_depth: int = 64) -> list[str]:
    out = []
    for msg in read_messages(raw, max_depth=max_depth):
        out.append(render_q(msg.item))
        out.append(format_layout(msg, 1))
    return out


@given(hostile_text)
def test_q_error_text_is_escaped(text):
    raw = bytes(qwire.dumps(QError(text)))
    for printed in both_printers(raw):
        assert is_safe(printed.replace("\n", "")), printed


@given(hostile_text, st.sampled_from(["", "ctx", ".z"]))
def test_lambda_source_and_context_are_escaped(text, context):
    raw = bytes(qwire.dumps(Lambda("{x+1}" + text, context) if context else Lambda("{x+1}" + text)))
    for printed in both_printers(raw):
        # a lambda's line breaks are its source's own; everything else must be printable
        assert is_safe(printed), printed


@given(hostile_text)
def test_symbols_chars_keys_and_column_names_are_escaped(text):
    values = [text, text.encode("utf-8", "surrogatepass"), {text: 1}, Table({"a" + text.replace("\0", ""): [1]}),
              Vector([text], "symbol"), text.encode("utf-8", "surrogatepass") + b"\xff\xfe"]
    for value in values:
        raw = bytes(qwire.dumps(value, q_compatible=True))
        for printed in both_printers(raw):
            assert is_safe(printed.replace("\n", "")), printed


def test_the_cli_prints_escapes_not_escape_sequences(tmp_path):
    from test_cli import run_cli

    path = tmp_path / "m.bin"
    path.write_bytes(bytes(qwire.dumps(QError("\x1b]0;owned\x07\x1b[2J"))) + bytes(qwire.dumps(Lambda("{x}\x1b[31m"))))
    result = run_cli("inspect", path)
    assert result.returncode == 0
    assert b"\x1b" not in result.stdout and b"\x07" not in result.stdout
    assert b"\\033]0;owned\\007\\033[2J" in result.stdout


def nested(depth: int) -> bytes:
    """A general list nested `depth` levels, one item each, around a long atom."""
    body = b"\x00\x00\x01\x00\x00\x00" * depth + b"\xf9" + struct.pack("<q", 7)
    return b"\x01\x00\x00\x00" + struct.pack("<I", len(body) + 8) + body


@given(st.integers(1, MAX_DEPTH_LIMIT))
def test_deep_values_render_within_the_recursion_limit(depth):
    """At the deepest nesting allowed, both printers work from a stack already 150 frames deep."""
    raw = nested(depth)

    def at_depth(k):
        if k:
            return at_depth(k - 1)
        return both_printers(raw, MAX_DEPTH_LIMIT)

    old = sys.getrecursionlimit()
    sys.setrecursionlimit(1000)
    try:
        q, layout = at_depth(150)
    finally:
        sys.setrecursionlimit(old)
    assert q == "enlist " * depth + "7" and layout.count("long atom (type -7)") == 1


@given(st.integers(MAX_DEPTH_LIMIT + 1, 100_000))
def test_deeper_values_are_an_inspect_error_not_a_recursion_error(depth):
    from qwire.inspector import InspectError

    with pytest.raises(InspectError, match="nesting deeper"):
        read_messages(nested(depth), max_depth=MAX_DEPTH_LIMIT)
    with pytest.raises(ValueError):
        read_messages(nested(depth), max_depth=depth)


def test_the_cli_caps_max_depth(tmp_path):
    from test_cli import run_cli

    path = tmp_path / "deep.bin"
    path.write_bytes(nested(5000))
    result = run_cli("inspect", "--max-depth", "100000", path)
    assert result.returncode == 2 and b"Traceback" not in result.stderr
    result = run_cli("inspect", path)
    assert result.returncode == 1 and b"nesting deeper than 64" in result.stderr
