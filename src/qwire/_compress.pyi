# Type stubs for the compiled compressor (cython/_compress.pyx), wrapped by qwire.compression.
# Checked against the built module by tests/test_typing.py (mypy.stubtest).
from typing import Final, Literal

from typing_extensions import Buffer

__all__ = ["compress", "decompress", "is_compressed", "variant_for", "max_stream_output",
           "MAX_MESSAGE_LENGTH", "VARIANT_B_FROM"]

MAX_MESSAGE_LENGTH: Final[int]
VARIANT_B_FROM: Final[int]

def variant_for(total: int) -> Literal[1, 2]: ...
def max_stream_output(stream_len: int) -> int: ...
def is_compressed(data: Buffer) -> bool: ...
def compress(data: Buffer, min_total: int = 0, variant: Literal[0, 1, 2] = 0) -> bytes | None: ...
def decompress(data: Buffer, max_size: int | None = None) -> bytearray: ...
