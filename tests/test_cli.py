"""End-to-end tests of the `qwire` command (`python -m qwire bench|inspect`), run as a subprocess."""
from __future__ import annotations

import importlib.util
import json
import os
import pickle
import re
import struct
import subprocess
import sys
from pathlib import Path

import pytest
from wire import compressed_conformance_messages, conformance_messages, message

_HERE = Path(__file__).resolve().parent
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
ERROR_LINE = re.compile(r"qwire inspect: .+ at byte (\d+)\n\Z")


def _environment(extra_path=None):
    """The test's environment, with the directory that holds the qwire package on PYTHONPATH (so
    the subprocess finds the same qwire whether it is installed or imported from src/)."""
    package_dir = Path(importlib.util.find_spec("qwire").submodule_search_locations[0])
    paths = [str(p) for p in (extra_path, package_dir.parent) if p] + [os.environ.get("PYTHONPATH", "")]
    return {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in paths if p)}


def run_cli(*args, stdin=None, extra_path=None, timeout=300):
    return subprocess.run(
        [sys.executable, "-m", "qwire", *map(str, args)],
        input=stdin,
        capture_output=True,
        timeout=timeout,
        env=_environment(extra_path),
    )




# ---- bench ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    """One quick run of the smallest workload, with JSON output, shared by several tests."""
    out = tmp_path_factory.mktemp("bench") / "results.json"
    result = run_cli("bench", "--quick", "--workload", "small-list", "--peers", "none", "--json", out)
    return result, out


def test_bench_quick_prints_a_table(quick_run):
    result, _ = quick_run
    assert result.returncode == 0, result.stderr.decode()
    text = result.stdout.decode()
    header = text.splitlines()[0].split()
    assert header == ["library", "ser", "de", "size", "ser/pickle", "de/pickle", "size/pickle"]
    assert "small-list: [1, 'b', UUID]" in text
    rows = {line.split()[0]: line.split() for line in text.splitlines() if line.startswith("  ")}
    assert rows["pickle-5"][-3:] == ["1.00x", "1.00x", "1.00x"]  # the baseline against itself
    assert re.fullmatch(r"[\d.]+ (ns|µs|ms|s)", " ".join(rows["qwire"][1:3]))
    assert "round 1/" in result.stderr.decode()  # progress went to stderr


@pytest.mark.slow
def test_bench_table_workloads_run_against_arrow(tmp_path):
    """The table workloads (run by name) measure qwire, pickle and Arrow IPC, each decoding to the
    workload's own table type (pandas, pyarrow, polars)."""
    out = tmp_path / "tables.json"
    result = run_cli("bench", "--quick", "--workload", "col-categorical", "--workload", "arrow-1m",
                     "--workload", "polars-1m", "--peers", "arrow", "--no-progress", "--json", out)
    assert result.returncode == 0, result.stderr.decode()
    doc = json.loads(out.read_text())
    libraries = {(r["workload"], r["library"]) for r in doc["results"]}
    for workload in ("col-categorical", "arrow-1m", "polars-1m"):
        assert {(workload, "qwire"), (workload, "pickle-5"), (workload, "arrow")} <= libraries, workload


def test_bench_json_has_the_documented_keys(quick_run):
    _, out = quick_run
    doc = json.loads(out.read_text())
    assert {"date", "machine", "versions", "settings", "results", "skipped", "workloads"} <= doc.keys()
    assert {"python", "numpy", "qwire"} <= doc["versions"].keys()
    assert doc["machine"]["cpu_count"] >= 1
    assert doc["settings"]["mode"] == "quick"
    by_library = {r["library"]: r for r in doc["results"]}
    assert {"qwire", "pickle-5"} <= by_library.keys()
    for r in doc["results"]:
        assert r["workload"] == "small-list"
        assert r["ser_ns"] > 0 and r["de_ns"] > 0 and r["size"] > 8
    assert by_library["pickle-5"]["ser_ratio"] == 1.0
    qwire_row = by_library["qwire"]
    assert qwire_row["ser_ratio"] == pytest.approx(qwire_row["ser_ns"] / by_library["pickle-5"]["ser_ns"], rel=1e-3)


@pytest.mark.slow
def test_bench_plot_writes_a_png(tmp_path):
    pytest.importorskip("matplotlib")
    out = tmp_path / "chart.png"
    result = run_cli("bench", "--quick", "--workload", "small-dict", "--peers", "none", "--plot", out, "--no-progress")
    assert result.returncode == 0, result.stderr.decode()
    assert out.read_bytes()[:8] == PNG_SIGNATURE


def test_bench_plot_without_matplotlib_fails_with_one_line(tmp_path):
    (tmp_path / "matplotlib.py").write_text("raise ImportError('No module named matplotlib')\n")
    result = run_cli("bench", "--quick", "--workload", "small-dict", "--plot", tmp_path / "x.png", extra_path=tmp_path)
    assert result.returncode == 1
    err = result.stderr.decode()
    assert err.count("\n") == 1 and "needs matplotlib" in err and "Traceback" not in err
    assert not (tmp_path / "x.png").exists()


def test_bench_skips_a_peer_that_changes_types():
    pytest.importorskip("msgspec")
    result = run_cli("bench", "--quick", "--workload", "small-list", "--peers", "msgspec", "--no-progress")
    assert result.returncode == 0, result.stderr.decode()
    assert "small-list / msgspec: not native: UUID comes back as str" in result.stdout.decode()


def test_bench_runs_user_data_from_pickle_and_qwire_files(tmp_path):
    import numpy as np
    import qwire

    pickled = tmp_path / "mine.pkl"
    pickled.write_bytes(pickle.dumps({"a": 1, "b": [2.5, "x"]}))
    framed = tmp_path / "mine.qipc"
    framed.write_bytes(bytes(qwire.dumps(np.arange(100))))
    result = run_cli("bench", "--quick", "--data", pickled, "--data", framed, "--peers", "none", "--no-progress")
    assert result.returncode == 0, result.stderr.decode()
    text = result.stdout.decode()
    assert f"data:{pickled}: dict of 2 items (from pickle file)" in text
    assert f"data:{framed}: int64 array, 100 items (800 B) (from qwire message file)" in text
    assert "small-list" not in text  # --data alone replaces the standard workloads


def test_bench_shows_out_of_band_and_compressed_rows(tmp_path):
    """The out-of-band and compression contenders take part where they apply: `qwire oob` and
    `pickle-5 oob` for a large array (here from --data, beside a standard workload), `qwire
    compressed` for the records, which kdb+'s compression halves."""
    import numpy as np

    pickled = tmp_path / "array.pkl"
    pickled.write_bytes(pickle.dumps(np.arange(200_000.0)))
    out = tmp_path / "results.json"
    result = run_cli("bench", "--quick", "--workload", "records", "--data", pickled, "--peers", "none",
                     "--no-progress", "--json", out)
    assert result.returncode == 0, result.stderr.decode()
    rows: dict = {}
    for r in json.loads(out.read_text())["results"]:
        rows.setdefault(r["workload"], {})[r["library"]] = r
    assert {"qwire oob", "pickle-5 oob"} <= rows[f"data:{pickled}"].keys()
    compressed = rows["records"]["qwire compressed"]
    assert compressed["size"] * 2 <= rows["records"]["qwire"]["size"]
    assert "qwire compressed" in result.stdout.decode() and "qwire oob" in result.stdout.decode()


def test_the_console_script_runs_main():
    """pyproject.toml's `qwire` command is `qwire.__main__:main`, the function `python -m qwire` runs."""
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    pyproject = _HERE.parent / "pyproject.toml"
    if not pyproject.exists():
        pytest.skip("not run from a checkout")
    scripts = tomllib.loads(pyproject.read_text())["project"]["scripts"]
    assert scripts == {"qwire": "qwire.__main__:main"}
    from qwire.__main__ import main

    assert main(["bench", "--list"]) == 0


def test_bench_lists_the_workloads():
    result = run_cli("bench", "--list")
    assert result.returncode == 0
    names = [line.split()[0] for line in result.stdout.decode().splitlines()]
    assert names == ["big-array", "small-array", "small-dict", "small-list", "table", "strings", "ints", "records",
                     "frame-100k", "frame-1m", "arrow-1m", "polars-1m", "col-numeric", "col-object-str", "col-str",
                     "col-categorical", "col-high-card-str", "col-datetime", "ipc"]


def test_bench_rejects_unknown_names():
    result = run_cli("bench", "--workload", "no-such-thing")
    assert result.returncode == 2
    assert result.stderr.decode() == (
        "qwire bench: unknown workload no-such-thing; choose from "
        "big-array, small-array, small-dict, small-list, table, strings, ints, records, frame-100k, frame-1m, "
        "arrow-1m, polars-1m, col-numeric, col-object-str, col-str, col-categorical, col-high-card-str, col-datetime\n"
    )
    assert run_cli("bench", "--peers", "cobol").returncode == 2


# ---- inspect: q notation -------------------------------------------------------------------------

# q expression (as in QExpressions3.out) -> what `qwire inspect` prints for q's bytes.
EXPECTED_Q = {
    "1+`": "'type",
    "1": "1",
    "1i": "1i",
    "-234h": "-234h",
    "1b": "1b",
    "0x2a": "0x2a",
    "3.234": "3.234",
    "5.5e": "5.5e",
    '"0"': '"0"',
    '""': '""',
    "`abc": "`abc",
    "`": "`",
    "2000.01.04D05:36:57.600": "2000.01.04D05:36:57.600000000",
    "2001.01m": "2001.01m",
    "2001.01.01": "2001.01.01",
    "2000.01.04T05:36:57.600": "2000.01.04T05:36:57.600",
    "0D05:36:57.600": "0D05:36:57.600000000",
    "12:01": "12:01",
    "12:05:00": "12:05:00",
    "12:04:59.123": "12:04:59.123",
    "0N": "0Nj",
    "0Nh": "0Nh",
    "0Ne": "0Ne",
    "0n": "0n",
    "0Np": "0Np",
    "0Nd": "0Nd",
    "0Nz": "0Nz",
    "0Nt": "0Nt",
    "()": "()",
    "(0b;1b;0b)": "010b",
    "(0x01;0x02;0xff)": "0x0102ff",
    "(1h;0Nh;3h)": "1 0N 3h",
    "1 2 3": "1 2 3j",
    "(1i;0Ni;3i)": "1 0N 3i",
    "(5.5e; 0Ne)": "5.5 0Ne",
    "3.23 0n": "3.23 0n",
    '(1;`bcd;"0bc";5.5e)': '(1;`bcd;"0bc";5.5e)',
    "(42;::;`foo)": "(42;::;`foo)",
    "(`one;2 3;\"456\";(7;8 9))": '(`one;2 3j;"456";(7;8 9j))',
    "(enlist 1h; 2; enlist 3j)": "(,1h;2;,3j)",
    "``quick``fox": "``quick``fox",
    '("one"; "two"; enlist "3")': '("one";"two";,"3")',
    "(2001.01m; 0Nm)": "2001.01 0Nm",
    "2001.01.01 2000.05.01 0Nd": "2001.01.01 2000.05.01 0Nd",
    "12:04:59.123 0Nt": "12:04:59.123 0Nt",
    "::": "::",
    "{x+y}": "{x+y}",
    "{x+y}[3]": "{x+y}[3]",
    "insert [1]": "insert[1]",
    "not": "~:",
    "sums": "+\\",
    "raze": ",/",
    "prev": ":':",
    "any": "'[max;$[\"b\"]]",
    "(enlist `a)!(enlist 1)": "(,`a)!,1j",
    "1 2!`abc`cdefgh": "1 2j!`abc`cdefgh",
    "(`x`y!(`a;2))": "`x`y!(`a;2)",
    "(0 1; 2 3)!`first`second": "(0 1j;2 3j)!`first`second",
    "`A`B`C!((1;3.234;3);(`x`y!(`a;2));5.5e)": "`A`B`C!((1;3.234;3);`x`y!(`a;2);5.5e)",
    "flip `abc`def!(1 2 3; 4 5 6)": "([] abc:1 2 3j; def:4 5 6j)",
    "([] name:`symbol$(); iq:`int$())": "([] name:`symbol$(); iq:`int$())",
    "([eid:1001 1002 1003] pos:`d1`d2`d3;dates:(2001.01.01;2000.05.01;0Nd))":
        "([eid:1001 1002 1003j] pos:`d1`d2`d3; dates:2001.01.01 2000.05.01 0Nd)",
    '1#([] sym:`x`x`x;str:"  a")': '([] sym:,`x; str:," ")',
    '"G"$"8c680a01-5a49-5aab-5a65-d4bfddb6a661"': "8c680a01-5a49-5aab-5a65-d4bfddb6a661",
    '("G"$"8c680a01-5a49-5aab-5a65-d4bfddb6a661"; 0Ng)':
        "8c680a01-5a49-5aab-5a65-d4bfddb6a661 00000000-0000-0000-0000-000000000000",
}


def test_inspect_prints_conformance_messages_in_q_notation(tmp_path):
    messages = conformance_messages()
    assert EXPECTED_Q.keys() <= messages.keys()
    # all of them back to back in one file: one line each, in order
    path = tmp_path / "all.qipc"
    path.write_bytes(b"".join(messages[expr] for expr in EXPECTED_Q))
    result = run_cli("inspect", path)
    assert result.returncode == 0, result.stderr.decode()
    assert result.stdout.decode().splitlines() == list(EXPECTED_Q.values())


def test_inspect_reads_standard_input_and_every_conformance_message():
    messages = conformance_messages()
    result = run_cli("inspect", "-", stdin=b"".join(messages.values()))
    assert result.returncode == 0, result.stderr.decode()
    assert len(result.stdout.decode().splitlines()) == len(messages)


def test_inspect_reads_big_endian():
    # spec 1.2: 1 2 3i written big-endian
    be = bytes.fromhex("0000000000 00001a 0600 00000003 00000001 00000002 00000003".replace(" ", ""))
    result = run_cli("inspect", "-", stdin=be + message(bytes.fromhex("f90100000000000000")))
    assert result.returncode == 0, result.stderr.decode()
    assert result.stdout.decode() == "1 2 3i\n1\n"


def test_inspect_abbreviates_long_vectors():
    result = run_cli("inspect", "--max-items", "3", "-", stdin=message(bytes([7, 0]) + struct.pack("<I", 10) + bytes(80)))
    assert result.stdout.decode() == "0 0 0j ..\n"


def test_inspect_decompresses():
    compressed = compressed_conformance_messages()["([] q:1000#`q)"]
    result = run_cli("inspect", "--max-items", "3", "-", stdin=compressed)
    assert result.returncode == 0, result.stderr.decode()
    assert result.stdout.decode() == "([] q:`q`q`q ..)\n"
    layout = run_cli("inspect", "--layout", "-", stdin=compressed).stdout.decode()
    assert "compression: compressed, 4-byte uncompressed length" in layout
    assert re.search(r"\n +8  ef 07 00 00 +uncompressed length: 2,031 bytes\n", layout)
    assert "decompressed (2,031 bytes; offsets below are in the decompressed message)" in layout


def test_inspect_walks_extension_records():
    # a qwire extension record (type 112): 70, a code byte, then one item, the payload
    record = bytes([112, 3]) + bytes.fromhex("070001000000" "0500000000000000")
    msg = message(bytes.fromhex("000002000000") + record + bytes.fromhex("f5616200"))
    result = run_cli("inspect", "-", stdin=msg)
    assert result.returncode == 0, result.stderr.decode()
    assert result.stdout.decode() == "(<extension record at byte 14: code 3, ,5j>;`ab)\n"
    layout = run_cli("inspect", "--layout", "-", stdin=msg).stdout.decode().splitlines()
    assert "  14  70                         [0] qwire extension record (type 112)" in layout
    assert "  15  03                           extension code: 3" in layout
    assert "  16  07                           payload: long vector (type 7)" in layout


def test_inspect_shows_out_of_band_vectors():
    import numpy as np
    import qwire

    buffers = []
    try:
        msg = qwire.dumps({"a": np.arange(100_000.0), "b": 1}, buffer_callback=buffers.append)
    except TypeError:
        pytest.skip("this qwire has no out-of-band buffers")
    assert len(buffers) == 1
    result = run_cli("inspect", "-", stdin=bytes(msg))
    assert result.returncode == 0, result.stderr.decode()
    assert result.stdout.decode() == "`a`b!(<out-of-band float vector, 100,000 items: buffer 0>;1)\n"
    layout = run_cli("inspect", "--layout", "-", stdin=bytes(msg)).stdout.decode()
    assert "extension code: 48 (out-of-band vector)" in layout
    assert "elements: out of band, buffer 0 (800,000 bytes)" in layout


# ---- inspect: layout -----------------------------------------------------------------------------


def test_inspect_layout_annotates_header_and_items():
    msg = conformance_messages()["`the`quick`brown`fox"]
    result = run_cli("inspect", "--layout", "-", stdin=msg)
    assert result.returncode == 0, result.stderr.decode()
    lines = result.stdout.decode().splitlines()
    assert lines[0] == "message 1: bytes 0..33 (34 bytes)"
    assert lines[1:6] == [
        "   0  01                       byte order: little-endian",
        "   1  00                       message type: async",
        "   2  00                       compression: none",
        "   3  00                       length, bits 32..39: 0",
        "   4  22 00 00 00              length: 34 bytes",
    ]
    assert lines[6] == "   8  0b                       symbol vector (type 11)"
    assert lines[7] == "   9  00                         attribute: 0 (none)"
    assert lines[8] == "  10  04 00 00 00                count: 4"
    assert lines[9] == "  14  74 68 65 00 71 75 69 63    elements (20 bytes): `the`quick`brown`fox"


def test_inspect_layout_of_nested_items_and_attributes():
    # `s#`a`b!2 3i as a sorted dictionary (spec 3.2), sent as a response
    payload = bytes.fromhex("7f" "0b01" "02000000" "6100" "6200" "0600" "02000000" "02000000" "03000000")
    result = run_cli("inspect", "--layout", "-", stdin=message(payload, msg_type=2))
    text = result.stdout.decode()
    assert result.returncode == 0, result.stderr.decode()
    assert "message type: response" in text
    assert "   8  7f                       sorted dictionary (type 127)" in text
    assert "   9  0b                         keys: symbol vector (type 11)" in text
    assert "  10  01                           attribute: 1 (`s#)" in text
    assert "  19  06                         values: int vector (type 6)" in text
    assert run_cli("inspect", "-", stdin=message(payload)).stdout.decode() == "`s#`a`b!2 3i\n"


def test_inspect_layout_abbreviates_long_element_bytes():
    result = run_cli("inspect", "--layout", "-", stdin=message(bytes([4, 0]) + struct.pack("<I", 1000) + bytes(1000)))
    text = result.stdout.decode()
    assert "elements (1,000 bytes)" in text
    assert "(968 more bytes)" in text  # four rows of eight bytes are shown
    assert len(text.splitlines()) < 20


# ---- inspect: malformed input --------------------------------------------------------------------


def _assert_one_line_error(result, offset, what):
    err = result.stderr.decode()
    assert result.returncode == 1
    match = ERROR_LINE.fullmatch(err)
    assert match, err
    assert int(match.group(1)) == offset
    assert what in err
    assert result.stdout == b""


def test_inspect_truncated_message_names_the_offset():
    msg = conformance_messages()["1 2 3"]
    _assert_one_line_error(run_cli("inspect", "-", stdin=msg[:-5]), 4, "truncated message")
    # a header that agrees with the cut: the vector itself is short of bytes at its elements
    cut = msg[:-5]
    cut = cut[:4] + struct.pack("<I", len(cut)) + cut[8:]
    _assert_one_line_error(run_cli("inspect", "-", stdin=cut), 14, "truncated long vector")


@pytest.mark.parametrize(
    "data, offset, what",
    [
        (b"", 0, "empty input"),
        (b"\x01\x00\x00", 0, "truncated message header"),
        (b"\x07\x00\x00\x00\x09\x00\x00\x00\x65", 0, "bad byte-order byte 0x07"),
        (message(bytes.fromhex("f9010000000000000000")), 17, "1 trailing byte after the item"),
        (message(bytes.fromhex("1400010000000000000000")), 8, "enumeration (type 20)"),
        (message(bytes.fromhex("7100")), 8, "unknown type byte 113"),
        (bytes.fromhex("010200000d0000006200f56100"), 10, "table body is a symbol atom, not a dictionary"),
        (message(bytes.fromhex("ff02")), 9, "boolean value 2"),
        (message(bytes.fromhex("000001000000807400")), 14, "error item (type -128) inside another item"),
        (message(bytes.fromhex("0b0002000000610062")), 16, "unterminated symbol 1 of 2"),
        (message(bytes.fromhex("0000ffffffff")), 8, "general list of 4294967295 items cannot fit"),
    ],
)
def test_inspect_malformed_input_gives_one_line_with_offset(data, offset, what):
    _assert_one_line_error(run_cli("inspect", "-", stdin=data), offset, what)


def test_inspect_deep_nesting_is_refused_not_crashed():
    depth = 1_000_000  # single-item general lists, one inside the next
    payload = bytes.fromhex("000001000000") * depth + bytes.fromhex("6500")
    _assert_one_line_error(run_cli("inspect", "-", stdin=message(payload)), 8 + 6 * 65, "nesting deeper than 64 levels")


def test_inspect_walker_raises_only_inspect_errors_on_damaged_messages():
    """Every prefix (header length adjusted) and many byte flips of every conformance message:
    the walker either reads the result or raises InspectError, never anything else."""
    import random

    from qwire.inspector import InspectError, read_messages

    rng = random.Random(7)
    for msg in conformance_messages().values():
        for cut in range(9, len(msg)):
            damaged = msg[:4] + struct.pack("<I", cut) + msg[8:cut]
            with pytest.raises(InspectError):
                read_messages(damaged)
        for _ in range(40):
            flipped = bytearray(msg)
            flipped[rng.randrange(8, len(msg))] ^= 1 << rng.randrange(8)
            try:
                read_messages(bytes(flipped))
            except InspectError as err:
                assert 0 <= err.offset <= len(msg)


def test_inspect_missing_file():
    result = run_cli("inspect", "/no/such/file.qipc")
    assert result.returncode == 1
    assert result.stderr.decode().startswith("qwire inspect: cannot read /no/such/file.qipc")


@pytest.mark.slow
def test_bench_ipc_workload_measures_every_contender_it_is_given():
    """The ipc workload (qwire bench --workload ipc) starts its servers, times each client and
    reports medians with ratios to the raw socket; a client that cannot run is reported, not fatal."""
    from qwire._bench import ipc

    results = ipc.run(clients=("qwire", "raw-socket", "mp-pickle", "no-such-client"), workloads=("small", "dict"),
                      scale=0.01, budget_s=0.2, max_calls=50)
    by = {(r.workload, r.client): r for r in results}
    for w in ("small", "dict"):
        for c in ("qwire", "raw-socket", "mp-pickle"):
            assert by[w, c].median_s > 0 and by[w, c].calls >= 5
        assert by[w, "no-such-client"].median_s is None and "unknown IPC client" in by[w, "no-such-client"].note
    assert by["dict", "qwire"].nbytes == by["dict", "raw-socket"].nbytes > 240_000
    table = ipc.format_results(results)
    assert "ipc small" in table and "x raw" in table and "unknown IPC client" in table
