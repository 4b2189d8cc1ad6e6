"""Decoding a message with out-of-band buffers under a memory budget that counts the buffers.

The decoder's budget is max_expansion x the message's size + 1 MiB. With buffers out of band the
message is small, yet the decoder may copy out-of-band bytes (a char vector becomes `bytes`): the
input is the message *and* its buffers, so the budget here is max_expansion x both (capped by
max_decoded_size). Used by qwire.pipe, qwire.dask and qwire.ray.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ._core import DEFAULT_MAX_EXPANSION, loads

__all__ = ["loads_with_buffers"]

EXPANSION_SLACK = 1 << 20  # the decoder's fixed allowance on top of max_expansion x size


def loads_with_buffers(message: Any, buffers: Sequence[Any], *, max_expansion: float | None = DEFAULT_MAX_EXPANSION,
                       max_decoded_size: int | None = None, **options: Any) -> Any:
    """qwire.loads(message, buffers=buffers, ...) with the budget described above."""
    if max_expansion is None:
        return loads(message, buffers=buffers, max_expansion=None, max_decoded_size=max_decoded_size, **options)
    size = memoryview(message).nbytes + sum(memoryview(b).nbytes for b in buffers)
    limit = int(max_expansion * size) + EXPANSION_SLACK
    if max_decoded_size is not None:
        limit = min(limit, max_decoded_size)
    return loads(message, buffers=buffers, max_expansion=None, max_decoded_size=limit, **options)
