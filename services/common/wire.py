"""Bounded JSON decoding: the one decoder for every consumed message and every request body.

Whatever arrives from outside is bytes of unknown shape. :func:`decode` turns them into JSON
values or raises :class:`DecodeError` with a short reason a publisher can act on; it never
lets anything else escape (a deep nesting that exhausts the parser's recursion, a number too
large for a float, a body of many megabytes, invalid UTF-8). Limits:

* size: at most ``max_bytes`` (checked before parsing);
* nesting: at most ``max_depth`` levels of arrays and objects (checked before parsing, in
  one pass over the bytes, so a hostile nesting never reaches the recursive parser);
* numbers: finite only (``NaN``, ``Infinity`` and literals such as ``1e400`` are refused).
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

MAX_MESSAGE_BYTES = 256 * 1024
MAX_DEPTH = 32

# a string literal (with escapes) or one bracket: brackets inside strings do not count. The
# closing quote is optional, so a string that never closes is consumed once, to the end (a
# required quote would make the scan restart at every later quote: quadratic time)
_TOKENS = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"?|[\[\]{}]', re.DOTALL)


class DecodeError(ValueError):
    """Bytes that are not an acceptable JSON document; ``reason`` says why."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise DecodeError(f"number {text[:40]} is out of range")
    return value


def _constant(name: str) -> Any:
    raise DecodeError(f"{name} is not a number JSON allows")


def depth(raw: bytes) -> int:
    """Deepest nesting of arrays and objects in ``raw`` (brackets in strings ignored)."""
    level = deepest = 0
    for match in _TOKENS.finditer(raw):
        token = match.group()
        if token in (b"[", b"{"):
            level += 1
            deepest = max(deepest, level)
        elif token in (b"]", b"}"):
            level -= 1
    return deepest


def decode(raw: bytes | bytearray | str | None, *, max_bytes: int = MAX_MESSAGE_BYTES,
           max_depth: int = MAX_DEPTH) -> Any:
    """Decode ``raw`` as one JSON document within the limits, or raise :class:`DecodeError`."""
    if raw is None:
        raise DecodeError("the body is empty")
    data = raw.encode("utf-8", "surrogatepass") if isinstance(raw, str) else bytes(raw)
    if len(data) > max_bytes:
        raise DecodeError(f"the body is {len(data):,} bytes; at most {max_bytes:,} are accepted")
    if not data.strip():
        raise DecodeError("the body is empty")
    if depth(data) > max_depth:
        raise DecodeError(f"JSON nested more than {max_depth} levels deep")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise DecodeError(f"not valid JSON: not UTF-8 text ({exc.reason} at byte "
                          f"{exc.start})") from None
    try:
        return json.loads(text, parse_float=_finite, parse_constant=_constant)
    except DecodeError:
        raise
    except json.JSONDecodeError as exc:
        raise DecodeError(f"not valid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})"
                          ) from None
    except (ValueError, RecursionError, MemoryError) as exc:
        # e.g. an integer of more digits than Python converts
        raise DecodeError(f"not acceptable JSON: {type(exc).__name__}: {str(exc)[:200]}"
                          ) from None
