"""SECURITY.md's limits table agrees with the code.

The table is parsed from the markdown. For every row: the file in "Set in" exists and contains the
named symbol; a numeric or None default equals the value written at that symbol in the source; and
limits that are options also have that default at run time. Conversely, every default and limit
constant in the code's limit-bearing places appears in the table, so a new limit cannot go
undocumented.
"""
import ast
import os
import re

import pytest

import qwire
import qwire.ipc
from qwire import compression

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SECURITY = os.path.join(ROOT, "SECURITY.md")


def limits_table():
    """The rows of the table under '## Limits' as dicts keyed by its header cells."""
    text = open(SECURITY, encoding="utf-8").read()
    section = text.split("\n## Limits", 1)[1].split("\n## ", 1)[0]
    lines = [ln.strip() for ln in section.splitlines() if ln.strip().startswith("|")]
    assert len(lines) >= 3, "no table under '## Limits'"
    header = [c.strip() for c in lines[0].strip("|").split("|")]
    assert re.fullmatch(r"\|?\s*-+\s*(\|\s*-+\s*)+\|?", lines[1].replace(":", "")), "second line is not a separator"
    rows = []
    for ln in lines[2:]:
        cells = [c.strip() for c in ln.strip("|").split("|")]
        assert len(cells) == len(header), f"row with {len(cells)} cells: {ln}"
        rows.append(dict(zip(header, cells)))
    return rows


ROWS = limits_table()


def where(row):
    """(path, symbol) from a 'Set in' cell like: `cython/symtab.pxi`: `SYMTAB_MAX`."""
    parts = re.findall(r"`([^`]+)`", row["Set in"])
    assert len(parts) == 2, f"'Set in' must name `file`: `symbol`: {row['Set in']!r}"
    return parts[0], parts[1]


def default_value(row):
    """The Default cell as int or None; the string itself when it is prose."""
    cell = row["Default"]
    if cell == "None":
        return None
    if re.fullmatch(r"\d+", cell):
        return int(cell)
    return cell


def _eval_int(expr):
    node = ast.parse(expr.strip(), mode="eval")
    allowed = (ast.Expression, ast.BinOp, ast.Constant, ast.Mult, ast.LShift, ast.Add, ast.Sub, ast.Pow,
               ast.UnaryOp, ast.USub)
    assert all(isinstance(n, allowed) for n in ast.walk(node)), f"not a constant expression: {expr}"
    return eval(compile(node, "<limit>", "eval"))  # noqa: S307 - constants only, checked above


def source_value(path, symbol):
    """The value written at `symbol` in the file: `SYMBOL = expr` (Python, Cython enum),
    `#define SYMBOL (expr)`, `name=None` (a keyword default), or else the first integer expression
    after the symbol on its first line (e.g. an error message naming a bound)."""
    text = open(os.path.join(ROOT, path), encoding="utf-8").read()
    assert symbol in text, f"{symbol!r} not found in {path}"
    if symbol.endswith("=None"):
        return None
    for pattern in (r"^\s*" + re.escape(symbol) + r"\s*=\s*([^#\n]+)", r"#define\s+" + re.escape(symbol) + r"\s+(.+)$"):
        m = re.search(pattern, text, re.M)
        if m:
            return _eval_int(m.group(1))
    line = next(ln for ln in text.splitlines() if symbol in ln)
    nums = re.findall(r"\d[\d_]*(?:\s*(?:\*|<<)\s*\d+)*", line.split(symbol, 1)[1])
    assert nums, f"no value on the line of {symbol} in {path}: {line.strip()}"
    return _eval_int(nums[0])


@pytest.mark.parametrize("row", ROWS, ids=[r["Limit"][:40] for r in ROWS])
def test_row_matches_the_source(row):
    path, symbol = where(row)
    assert os.path.exists(os.path.join(ROOT, path)), path
    text = open(os.path.join(ROOT, path), encoding="utf-8").read()
    assert symbol in text, f"{symbol} not in {path}"
    expected = default_value(row)
    if isinstance(expected, int) or expected is None:
        assert source_value(path, symbol) == expected, row["Limit"]


# Run-time defaults of the limits that are options: (row name prefix, accessor).
RUNTIME = [
    ("Memory decoding one message may allocate, per byte", lambda: qwire.Decoder().max_expansion),
    ("Memory decoding one message may allocate, in all", lambda: qwire.Decoder().max_decoded_size),
    ("Nesting depth when decoding", lambda: qwire.Decoder().max_depth),
    ("Nesting depth when encoding", lambda: qwire.Encoder().max_depth),
    ("Decompressed size of a compressed message", lambda: _default_kw(compression.decompress, "max_size")),
    ("Decompressed size when decoding", lambda: _effective_decompressed_limit()),
    ("Total message length", lambda: compression.MAX_MESSAGE_LENGTH),
    ("Length of a message received by `Decoder.feed`", lambda: qwire.Decoder().max_message_size),
    ("Vector size from which `dumps` references", lambda: qwire.Encoder().zero_copy_threshold),
    ("Vector size from which `dumps` sends out-of-band", lambda: qwire.Encoder().oob_threshold),
    ("Distinct items with one hash value", lambda: qwire._core.MAX_ITEMS_SHARING_A_HASH),
    ("Message size on a connection", lambda: qwire.ipc.Limits().max_message_size),
    ("Client hello a server reads", lambda: qwire.ipc.Limits().max_handshake_size),
    ("Seconds a request or `receive()` waits", lambda: qwire.ipc.Limits().request_timeout),
    ("Connections a server holds at once", lambda: qwire.ipc.Limits().max_connections),
    ("Seconds a message may take to arrive once begun", lambda: qwire.ipc.Limits().transfer_timeout),
    ("qwire.pipe: bytes of the in-socket message", lambda: _pipe_connection().max_message_size),
]


def _pipe_connection():
    """A default qwire.pipe.Connection's settings (the socketpair closed at once)."""
    import qwire.pipe

    a, b = qwire.pipe.Pipe()
    a.close()
    b.close()
    return a


def _default_kw(fn, name):
    import inspect

    return inspect.signature(fn).parameters[name].default


def _effective_decompressed_limit():
    """What a default Decoder enforces: its own option if set, else decompress's default."""
    own = qwire.Decoder().max_decompressed_size
    return own if own is not None else _default_kw(compression.decompress, "max_size")


def _row(prefix):
    matches = [r for r in ROWS if r["Limit"].startswith(prefix)]
    assert len(matches) == 1, f"{len(matches)} rows start with {prefix!r}"
    return matches[0]


@pytest.mark.parametrize("prefix,get", RUNTIME, ids=[p for p, _ in RUNTIME])
def test_runtime_default(prefix, get):
    assert get() == default_value(_row(prefix))


def test_max_depth_bounds_are_enforced():
    top = default_value(_row("Largest `max_depth` accepted"))
    qwire.Decoder(max_depth=top)
    qwire.Encoder(max_depth=top)
    for bad in (0, top + 1):
        with pytest.raises(ValueError):
            qwire.Decoder(max_depth=bad)
        with pytest.raises(ValueError):
            qwire.Encoder(max_depth=bad)


def test_stream_ratio_row():
    assert "2056 bytes per 17 stream bytes" in _row("Decompressed size against")["Default"]
    assert compression.max_stream_output(17) == 2056
    assert compression.max_stream_output(17 * 1000) == 2056 * 1000


def test_every_limit_in_the_code_is_in_the_table():
    """Constants that bound what decoding may do must have a row."""
    documented = {where(r)[1] for r in ROWS}
    found = set()
    for path, pattern in [
        ("cython/constants.pxi", r"^(DEFAULT_\w+|MAX_DEPTH_LIMIT)\s*="),
        ("src/qwire/compression.py", r"^(DEFAULT_\w+)\s*="),
        ("cython/symtab.pxi", r"^\s+(SYMTAB_MAX\w*)\s*="),
        ("cython/budget.pxi", r"^(DEFAULT_\w+)\s*="),
        ("cython/hashtally.pxi", r"^(MAX_\w+)\s*="),
        ("cython/budget.pxi", r"^\s+(EXPANSION_SLACK)\s*="),
        ("cython/stream.pxi", r"^\s+(RECEIVE_\w+)\s*="),
        ("cython/decode.pxi", r"#define\s+(QW_\w+)\s"),
        ("cython/cutil.pxi", r"#define\s+(QW_\w+)\s"),
        ("src/qwire/extensions.py", r"^(MAX_\w+)\s*="),
        ("src/qwire/registry.py", r"^(_MAX_\w+)\s*="),
        ("src/qwire/ipc/_protocol.py", r"^(DEFAULT_\w+)\s*="),
    ]:
        text = open(os.path.join(ROOT, path), encoding="utf-8").read()
        found |= set(re.findall(pattern, text, re.M))
    missing = found - documented
    assert not missing, f"limits in the code but not in SECURITY.md's table: {sorted(missing)}"


def test_the_table_is_the_only_limits_table():
    text = open(SECURITY, encoding="utf-8").read()
    assert text.count("| Limit |") == 1
