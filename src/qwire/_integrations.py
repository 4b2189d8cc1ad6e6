"""The optional integrations' entry points: what the core writes for a pandas, pyarrow or polars
object, and what the extension records of those libraries decode to.

The core asks `convert_foreign(obj, q_compatible)` for an object of a type whose module belongs to
one of the libraries (cython/encode.pxi, `_convert_foreign`); the answer is a value the core
writes in its place, or None (the core then refuses the object). In the default profile that value
is a `Record`, which the extension handler (qwire/extensions.py) writes as the record it names; with
`q_compatible=True` it is the plain q value kdb+ reads (docs/TABLES.md).

Each library is imported only here, and only once an object of it was met (or a record of it read).
"""
from __future__ import annotations

from typing import Any

from .errors import DecodeError

__all__ = ["Record", "convert_foreign", "decode", "LIBRARIES"]

LIBRARIES = frozenset({"pandas", "pyarrow", "polars"})


class Record:
    """An extension record to write: the code and the payload (an ordinary value)."""

    __slots__ = ("code", "payload", "kept")

    def __init__(self, code: int, payload: Any, kept: bool = False) -> None:
        self.code = code
        self.payload = payload
        self.kept = kept

    def handler_answer(self) -> tuple[Any, Any]:
        """What the extension handler's encode returns for this record. The payload is made while
        the message is written, so it must live until the message is done (with refs=True the
        encoder remembers objects by address, and a freed payload's address can be reused by the
        next one): the first answer is (None, a kept copy), which the core keeps for the message
        and asks about again; the kept copy answers (code, payload)."""
        if self.kept:
            return self.code, self.payload
        return None, Record(self.code, self.payload, True)


def _codes():
    from .extensions import Code

    return Code


def convert_foreign(obj: Any, q_compatible: bool) -> Any:
    top = type(obj).__module__.partition(".")[0]
    if top == "pandas":
        return _pandas(obj, q_compatible)
    if top == "pyarrow":
        from . import _arrow

        return _arrow.convert(obj, q_compatible)
    if top == "polars":
        from . import _polars

        return _polars.convert(obj, q_compatible)
    return None


def _pandas(obj, q_compatible):
    import pandas as pd

    from . import _frames, _pandas

    if q_compatible:
        return _pandas.q_value(obj)
    Code = _codes()
    if isinstance(obj, pd.DataFrame):
        return Record(Code.PANDAS_FRAME, _frames.encode_frame(obj))
    if isinstance(obj, pd.Series):
        return Record(Code.PANDAS_SERIES, _frames.encode_series(obj))
    if isinstance(obj, pd.Index):
        return Record(Code.PANDAS_INDEX, _frames.index_desc(obj))
    scalar = _frames.encode_scalar(obj)
    return None if scalar is None else Record(Code.PANDAS_SCALAR, scalar)


def decode(code: int, payload: Any) -> Any:
    """The value of one of the integrations' records (payload already decoded)."""
    Code = _codes()
    try:
        if code in (Code.PANDAS_FRAME, Code.PANDAS_SERIES, Code.PANDAS_INDEX, Code.PANDAS_SCALAR):
            from . import _frames

            if code == Code.PANDAS_FRAME:
                return _frames.decode_frame(payload)
            if code == Code.PANDAS_SERIES:
                return _frames.decode_series(payload)
            if code == Code.PANDAS_INDEX:
                return _frames.index_from(payload)
            return _frames.decode_scalar(payload)
        if code == Code.ARROW:
            from . import _arrow

            return _arrow.decode(payload)
        if code == Code.POLARS:
            from . import _polars

            return _polars.decode(payload)
    except DecodeError:
        raise
    except ImportError as e:
        raise DecodeError(f"a {Code(code).name.lower()} record needs a library this process lacks: {e}") from None
    except Exception as e:  # noqa: BLE001 - pandas', Arrow's and polars' own checks of a malformed payload
        # (ValueError, KeyError, ArrowInvalid, OutOfBoundsDatetime, RecursionError from a deep nest, ...):
        # only qwire's errors leave the decoder
        raise DecodeError(f"malformed {Code(code).name.lower()} record: {type(e).__name__}: {str(e)[:200]}") from None
    raise DecodeError(f"unknown integration record code {code:#04x}")
