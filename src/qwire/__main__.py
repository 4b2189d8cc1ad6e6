"""The `qwire` command (`python -m qwire`): `bench` compares qwire with pickle and its peers,
`inspect` shows what is inside a message."""
from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

__all__ = ["main", "build_parser"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="qwire", description="qwire: kdb+/q IPC serialization for Python.")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    bench = commands.add_parser(
        "bench",
        help="time qwire against pickle (protocol 5) and the installed peers",
        description="Time serialization and deserialization of standard workloads (or your own data) with "
        "qwire, pickle protocol 5 and whichever of pyfory, msgpack, msgspec, PyKX and Arrow are installed. "
        "Reports median times, sizes and ratios to pickle.",
    )
    bench.add_argument("--quick", action="store_true", help="smaller data and fewer rounds: under a minute")
    bench.add_argument("--workload", action="append", metavar="NAME", help="run only this workload (repeatable); see --list")
    bench.add_argument(
        "--data",
        action="append",
        metavar="FILE",
        help="benchmark your own data: a pickle file (only ones you trust: unpickling runs code) or a qwire "
        "message file (repeatable; runs instead of the standard workloads unless --workload is given too)",
    )
    bench.add_argument(
        "--peers",
        metavar="LIST",
        help="comma-separated peers to compare (pyfory,msgpack,msgspec,pykx,arrow), or 'none'; default: all installed",
    )
    bench.add_argument("--json", metavar="FILE", help="also write the results, versions and machine as JSON")
    bench.add_argument("--plot", metavar="FILE", help="also write a PNG bar chart (needs matplotlib)")
    bench.add_argument("--markdown", metavar="FILE", help="also write the results as a markdown table")
    bench.add_argument("--list", action="store_true", help="list the workloads and exit")
    bench.add_argument("--files", action="store_true",
                       help="time file stores instead: a MessageLog, a pickle file, SQLite blobs and h5py "
                       "(append, read entry N, replay; sync never/always) in the temp directory")
    bench.add_argument("--no-progress", action="store_true", help="print nothing on stderr while running")

    inspect = commands.add_parser(
        "inspect",
        help="print a kdb+ IPC message in q notation or as an annotated hex layout",
        description="Read one message, or several back to back, and print each in q-like notation.",
    )
    inspect.add_argument("file", metavar="FILE", help="message file, or - for standard input")
    inspect.add_argument("--layout", action="store_true", help="print an annotated hex layout instead")
    inspect.add_argument("--max-items", type=int, default=100, metavar="N",
                         help="show at most N items of each vector or list (default 100; 0 = all)")
    inspect.add_argument("--max-depth", type=int, default=64, metavar="N", help="nesting limit (default 64)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "bench":
        from ._bench.command import bench_command

        return bench_command(args)
    from .inspector import inspect_command

    return inspect_command(args)


if __name__ == "__main__":
    sys.exit(main())
