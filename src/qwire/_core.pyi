# Type stubs for the compiled core (cython/_core.pyx and its .pxi includes).
# Checked against the built module by tests/test_typing.py (mypy.stubtest).
import socket
from collections.abc import Callable, Iterable
from pickle import PickleBuffer
from typing import Any, Final, Literal, Protocol, SupportsIndex, overload, TypeAlias, type_check_only

from typing_extensions import Buffer, Self, disjoint_base

from .qtypes import ATTRIBUTE_CODES as ATTRIBUTE_CODES, ATTRIBUTES as ATTRIBUTES
from .errors import DecodeError as _DecodeError
from .registry import Registry

# Anything with the buffer protocol: bytes, bytearray, memoryview, Message, mmap, NumPy arrays.
# The decoder further requires the buffer to be C-contiguous (TypeError otherwise).
_BufferLike: TypeAlias = Buffer

# msg_type=: a name or the header byte itself (MSG_TYPES); anything else is a ValueError.
_MsgType: TypeAlias = Literal["async", "sync", "response", 0, 1, 2]

# compress=: False (plain), True (kdb+'s rule) or "auto" (kdb+'s rule and size threshold).
_CompressMode: TypeAlias = bool | Literal["auto"]

# buffer_callback=: pickle protocol 5's; a false return sends the buffer out of band.
_BufferCallback: TypeAlias = Callable[[PickleBuffer], object]

@type_check_only
class _Writable(Protocol):
    def write(self, data: memoryview, /) -> object: ...

DEFAULT_MAX_DEPTH: Final[int]
DEFAULT_MAX_EXPANSION: Final[int]
MAX_ITEMS_SHARING_A_HASH: Final[int]
MAX_HASH_WORK_PER_BYTE: Final[int]
HASH_WORK_SLACK: Final[int]
MAX_DEPTH_LIMIT: Final[int]
DEFAULT_ZERO_COPY_THRESHOLD: Final[int]
DEFAULT_OOB_THRESHOLD: Final[int]
DEFAULT_MAX_SHARED_EXPANSION: Final[int]
MSG_TYPES: Final[dict[str | int, int]]
TYPE_CODES: Final[dict[str, int]]
CORE_RECORD_CODES: Final[dict[str, int]]
REGISTRY_KINDS: Final[dict[str, int]]

class HashWorkError(_DecodeError):
    """Hashing a set item or dict key would visit more than the message may make the decoder hash,
    or cannot be done safely (an object still being decoded; a value nesting without end)."""

@disjoint_base
class Message:
    """A serialized q IPC message (read-only buffer protocol)."""

    def __len__(self) -> int: ...
    def __buffer__(self, flags: int, /) -> memoryview: ...
    def __release_buffer__(self, buffer: memoryview, /) -> None: ...
    def __bytes__(self) -> bytes: ...
    @property
    def nbytes(self) -> int: ...
    @property
    def msg_type(self) -> int: ...
    @property
    def compressed(self) -> bool: ...
    def copy(self) -> bytes: ...
    def segments(self) -> list[memoryview]: ...
    def write_to(self, target: socket.socket | int | _Writable) -> int: ...
    def __eq__(self, other: object, /) -> bool: ...
    def __ne__(self, other: object, /) -> bool: ...
    def __hash__(self) -> int: ...
    @overload
    def __getitem__(self, index: SupportsIndex, /) -> int: ...
    @overload
    def __getitem__(self, index: slice, /) -> bytes: ...
    def __add__(self, other: Buffer, /) -> bytes: ...
    def __radd__(self, other: Buffer, /) -> bytes: ...
    def __reduce_ex__(self, protocol: SupportsIndex, /) -> tuple[Callable[[Buffer], Message], tuple[Buffer]]: ...

@disjoint_base
class Encoder:
    """Writes Python values as q IPC messages; holds the options so hot loops pay for them once."""

    def __init__(
        self,
        msg_type: _MsgType = "async",
        *,
        max_depth: int = 256,
        zero_copy_threshold: int = 65536,
        capability: Literal[3, 4, 5, 6] = 6,
        buffer_callback: _BufferCallback | None = None,
        oob_threshold: int = 65536,
        q_compatible: bool = False,
        refs: bool = False,
        registry: Registry | None = None,
        allow_on_disk: bool = False,
        max_shared_expansion: int | None = 64,
    ) -> None: ...
    @property
    def msg_type(self) -> int: ...
    @property
    def max_depth(self) -> int: ...
    @property
    def zero_copy_threshold(self) -> int: ...
    @property
    def capability(self) -> int: ...
    @property
    def q_compatible(self) -> bool: ...
    @property
    def refs(self) -> bool: ...
    @property
    def allow_on_disk(self) -> bool: ...
    @property
    def oob_threshold(self) -> int: ...
    @property
    def max_shared_expansion(self) -> int | None: ...
    @property
    def registry(self) -> Registry: ...
    def encode(self, obj: object) -> Message: ...
    def __reduce__(self) -> tuple[Callable[..., Encoder], tuple[Any, ...]]: ...

@disjoint_base
class Decoder:
    """Reads q IPC messages, one at a time (decode) or from a stream (feed, then iterate)."""

    def __init__(
        self,
        *,
        max_depth: int = 256,
        max_decompressed_size: int | None = None,
        max_message_size: int | None = None,
        registry: Registry | None = None,
        strict_fields: bool = False,
        max_expansion: float | None = 16,
        max_decoded_size: int | None = None,
    ) -> None: ...
    @property
    def max_depth(self) -> int: ...
    @property
    def max_decompressed_size(self) -> int | None: ...
    @property
    def max_message_size(self) -> int | None: ...
    @property
    def max_expansion(self) -> float | None: ...
    @property
    def max_decoded_size(self) -> int | None: ...
    @property
    def registry(self) -> Registry: ...
    @property
    def strict_fields(self) -> bool: ...
    @property
    def pending(self) -> int: ...
    def feed(self, data: _BufferLike) -> None: ...
    def decode(self, data: _BufferLike, buffers: Iterable[_BufferLike] | None = None) -> Any: ...
    def __iter__(self) -> Self: ...
    def __next__(self) -> Any: ...
    def __reduce__(self) -> tuple[Callable[..., Decoder], tuple[Any, ...]]: ...

@disjoint_base
class Receiver:
    """The bytes of one message as they arrive (qwire.io's reader)."""

    def __init__(self, header: _BufferLike, total: int) -> None: ...
    @property
    def total(self) -> int: ...
    @property
    def filled(self) -> int: ...
    def write(self, data: _BufferLike) -> int: ...
    def writable(self, limit: int = 16777216) -> memoryview: ...
    def commit(self, k: int) -> None: ...
    def finish(self) -> memoryview: ...

def dumps(
    obj: object,
    protocol: int | None = None,
    *,
    msg_type: _MsgType = "async",
    compress: _CompressMode = False,
    buffer_callback: _BufferCallback | None = None,
    q_compatible: bool = False,
    refs: bool = False,
    registry: Registry | None = None,
    allow_on_disk: bool = False,
    max_depth: int | None = None,
    zero_copy_threshold: int | None = None,
    capability: Literal[3, 4, 5, 6] | None = None,
    oob_threshold: int | None = None,
) -> Message: ...

# loads forwards its options to a Decoder (None: the Decoder's default).
def loads(
    data: _BufferLike,
    *,
    buffers: Iterable[_BufferLike] | None = None,
    registry: Registry | None = None,
    strict_fields: bool = False,
    max_depth: int | None = None,
    max_decompressed_size: int | None = None,
    max_message_size: int | None = None,
    max_expansion: float | None = 16,
    max_decoded_size: int | None = None,
) -> Any: ...
def read_header_length(header: _BufferLike, limit: int | None = None) -> int: ...
def largest_vector_payload(data: _BufferLike) -> tuple[int, int]: ...

# Private, used by the Python layer (qwire.compression, qwire.io, pickling).
def _message_from_bytes(data: _BufferLike) -> Message: ...
def _cost_model(kind: str, n: int) -> int: ...
