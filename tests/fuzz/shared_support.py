"""Shared-structure messages for the `shared` fuzz target: a program of definitions drawn from the
input, written with qwire's extension records (references, immutable and mutable definitions,
registered classes), then put in the containers that hash.

The input seeds a deterministic generator (the same bytes, the same message), so libFuzzer's
mutations explore programs: tuples and frozen dataclasses sharing earlier objects (sizes that double
per level), references to objects still being defined (forward, or to themselves), sets, frozensets
and dict keys over them, Flag values, projections, and a damaged byte now and then. Built with
hostile.py's byte layouts, never with qwire's encoder.
"""
from __future__ import annotations

import random
import struct

import hostile as h

KINDS = ("tuple", "frozen", "frozen-defined", "point", "set", "frozenset", "dict", "list", "flag", "projection",
         "leaf")


def _part(rng, i):
    """An item for definition #i: mostly a reference to an earlier object; sometimes to itself or
    a later one (refused, or a reference to an object under construction), or a plain atom."""
    roll = rng.random()
    if i and roll < 0.75:
        return h.ref(rng.randrange(i))
    if roll < 0.85:
        return h.ref(i + rng.randrange(2))
    return h.long_atom(rng.randrange(-3, 100))


def _definition(rng, i):
    kind = rng.choice(KINDS)
    parts = [_part(rng, i) for _ in range(rng.choice((1, 2, 2, 2, 3)))]
    if kind == "tuple":
        return h.define_immutable(h.tuple_record(parts))
    if kind == "frozen":
        return h.define_immutable(h.registered("Frozen", {"a": parts[0], "b": parts[-1]}))
    if kind == "frozen-defined":    # registered before its fields: they may reach it
        return h.define(h.registered("Frozen", {"a": parts[0], "b": parts[-1]}))
    if kind == "point":
        return h.define(h.registered("Point", {"x": b"\xf7" + struct.pack("<d", 1.5), "next": parts[0]}))
    if kind == "set":
        return h.define(h.set_record(parts))
    if kind == "frozenset":
        return h.define_immutable(h.set_record(parts, frozen=True))
    if kind == "dict":
        return h.define(h.dictionary(h.general_list(parts), h.general_list([h.long_atom(k) for k in range(len(parts))])))
    if kind == "list":
        return h.define(h.general_list(parts))
    if kind == "flag":
        return h.define_immutable(h.registered_custom("Perms", h.long_atom(rng.choice((0, 3, 7, 8, 1 << 40, -1)))))
    if kind == "projection":
        return h.define_immutable(b"\x68" + struct.pack("<I", 1 + len(parts)) + b"\x66\x01" + b"".join(parts))
    return h.define_immutable(h.long_atom(rng.randrange(1000)))


def shared_message(data: bytes) -> bytes:
    rng = random.Random(data)
    n = rng.randint(1, 70)
    defs = [_definition(rng, i) for i in range(n)]
    picks = [h.ref(rng.randrange(n)) for _ in range(rng.randint(1, 4))]
    last = rng.choice((
        lambda: h.set_record(picks),
        lambda: h.set_record(picks, frozen=True),
        lambda: h.set_record(picks + [h.long_atom(k) for k in range(40)]),
        lambda: h.define(h.set_record(picks)),
        lambda: h.define(h.dictionary(h.general_list(picks), h.general_list([h.long_atom(0)] * len(picks)))),
        lambda: h.dictionary(h.general_list(picks), h.general_list([h.long_atom(0)] * len(picks))),
        lambda: h.general_list(picks),
    ))()
    msg = h.shared_then(defs, last)
    if rng.random() < 0.2:
        at = rng.randrange(8, len(msg))
        msg = msg[:at] + bytes([rng.randrange(256)]) + msg[at + 1:]
    return msg


def seeds(count=16):
    """Inputs for the seed corpus: the generator's first programs, and issue 11's 64-level chain."""
    out = [bytes([i]) * (1 + i) for i in range(count)]
    chain = h.shared_then(h.doubling_tuples(64), h.set_record([h.ref(64)]))
    return out, chain
