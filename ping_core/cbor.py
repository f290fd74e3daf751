"""Strict CBOR for Ping's own records (identities, devices, envelopes, tickets, snapshots).

The layouts are pinned in ``docs/formats.md``. Every record is a CBOR map with
text keys and a ``"v"`` version field; values are only unsigned/negative
integers (64-bit range), byte strings, text strings, arrays, maps with text
keys, booleans and null.

Encoding is deterministic: RFC 8949 §4.2.3 "length-first" canonical form as
cbor2 writes it with ``canonical=True`` (map keys sorted by encoded length,
then bytewise; shortest-form heads; definite lengths).

Decoding is Ping's own single-pass decoder, not cbor2's: a general CBOR
decoder resolves tags while it reads (RFC 8949 §3.4), and some tags expand
their input. Shared values (tags 28/29) turn a 1.3 KB body into a DAG whose
tree is exponentially large, so any later walk or re-encoding runs out of
time and memory. :func:`loads` accepts exactly the bytes :func:`dumps` would
produce for the decoded value, and refuses, at the head that starts it and
before anything is built from it:

* every tag (major type 6, RFC 8949 §3.4: shared values 28/29, embedded CBOR
  24, bignums 2/3, dates 0/1, ...);
* indefinite lengths (§3.2.2) and the reserved additional information 28-30
  (§3);
* floats and every simple value but false/true/null (major type 7, §3.3);
* non-minimal heads for integers and lengths (§4.2.1: preferred serialization);
* map keys that are not text, duplicated (§5.6), or not in strictly
  ascending length-first order (§4.2.3);
* text that is not valid UTF-8 (§3.1, major type 3);
* nesting of more than ``MAX_DEPTH`` arrays/maps (refused while reading;
  the decoder keeps its own stack, so no input can reach Python's recursion
  limit);
* a declared count or length larger than the bytes that remain (every item
  takes at least one byte, every map entry two), so a header announcing 2^60
  items is refused before anything is allocated;
* truncation, and trailing bytes after the one top-level item.

Every step consumes at least one input byte, so work is linear in the input
and at most a few Python objects are built per input byte. Sizes are bounded
before any parsing. The only exception that escapes is
:class:`ping_core.errors.InvalidInput`.

The decoder is pure Python and runs the same on CPython and in Pyodide.
Encoding uses cbor2 (its C extension on CPython, its pure-Python code in
Pyodide; the tests run both through ``_dumps``).
"""

from __future__ import annotations

import json
import re
from typing import Any, Callable, Iterator, Mapping, Sequence, Union

import cbor2

from ping_core.errors import InvalidInput

__all__ = [
    "CborValue",
    "dumps",
    "loads",
    "encode_record",
    "decode_record",
    "Record",
    "as_bytes",
    "as_uint",
    "as_text",
    "as_bool",
    "check_text",
    "as_list",
    "as_map",
    "MAX_UINT",
    "MAX_DEPTH",
    "DEFAULT_MAX_SIZE",
    "loads_json",
    "MAX_JSON_DEPTH",
]

CborValue = Union[int, bytes, str, bool, None, list["CborValue"], dict[str, "CborValue"]]

MAX_UINT = (1 << 64) - 1
# Ping's records nest at most a few levels (a snapshot of conversations of
# metas); anything deeper is malformed.
MAX_DEPTH = 8
# A bound for records that do not give their own.
DEFAULT_MAX_SIZE = 1 << 20

# Indirection so the tests can run the pure-Python cbor2 encoder that Pyodide uses.
_dumps: Callable[..., bytes] = cbor2.dumps


def dumps(value: CborValue) -> bytes:
    """The canonical CBOR encoding of ``value`` (only the types listed in the module docstring)."""
    try:
        return _dumps(value, canonical=True)
    except Exception as exc:  # cbor2 raises CBOREncodeError/TypeError/ValueError for bad values
        raise InvalidInput(f"value cannot be encoded as CBOR: {type(exc).__name__}") from None


# RFC 8949 §3: additional information 24..27 means the argument follows in
# 1, 2, 4 or 8 bytes. §4.2.1: the shortest form is required, so an argument
# in the n-byte form must not fit a shorter one.
_ARG_MIN = (24, 1 << 8, 1 << 16, 1 << 32)
# Major type 7 (§3.3): only false, true and null belong to Ping's subset.
_SIMPLE: dict[int, CborValue] = {0xF4: False, 0xF5: True, 0xF6: None}

_Container = Union[list[CborValue], dict[str, CborValue]]

# The decoder's rules, one helper each; _decode calls them only where a rule
# needs more than a comparison (a long head, a tag or simple value, a refusal),
# so the common item (a short head, a string, an integer) costs no call.


def _long_argument(data: bytes, pos: int, info: int, at: int) -> tuple[int, int]:
    """``(argument, position after it)`` of the head at ``at`` whose additional information is ``info`` >= 24.

    24..27: the argument follows in 1, 2, 4 or 8 bytes and must not fit a
    shorter form (§4.2.1); 31 (indefinite length, §3.2.2) and 28..30
    (reserved, §3) are refused.
    """
    if info < 28:
        stop = pos + (1 << (info - 24))
        if stop > len(data):
            raise InvalidInput("truncated CBOR")
        arg = int.from_bytes(data[pos:stop], "big")
        if arg < _ARG_MIN[info - 24]:
            raise _non_minimal(at)
        return arg, stop
    if info == 31:
        raise InvalidInput(f"indefinite-length CBOR item at byte {at}")
    raise InvalidInput(f"reserved CBOR additional information {info} at byte {at}")


def _non_minimal(at: int) -> InvalidInput:
    return InvalidInput(f"non-minimal CBOR head at byte {at}")


def _tag_or_simple(ib: int, at: int) -> CborValue:
    """Major types 6 and 7 (initial byte ``ib`` >= 0xC0): false, true or null; every tag (§3.4),
    float and other simple value (§3.3) is refused at its head."""
    if ib in _SIMPLE:
        return _SIMPLE[ib]
    if ib < 0xE0:
        raise InvalidInput(f"CBOR tag at byte {at} (Ping's records use no tags)")
    raise InvalidInput(f"CBOR float or simple value 0x{ib:02x} at byte {at} (only false/true/null)")


def _string_past_end(arg: int, at: int) -> InvalidInput:
    return InvalidInput(f"CBOR string of {arg} bytes at byte {at} is longer than the input")


def _not_utf8(at: int) -> InvalidInput:
    return InvalidInput(f"CBOR text at byte {at} is not valid UTF-8")


def _key_out_of_order(chunk: bytes, last_key: bytes, text: str) -> InvalidInput:
    problem = "duplicated" if chunk == last_key else "out of canonical order"
    return InvalidInput(f"CBOR map key {text[:40]!r} is {problem}")


def _check_count(major: int, count: int, remaining: int, depth: int, at: int) -> None:
    """An array (major 4) or map (5) of ``count`` items may open at nesting ``depth``.

    At most ``MAX_DEPTH`` levels. Each item takes at least one byte (a map
    entry two), so a count beyond what remains is malformed; refusing it here
    also keeps the count from ever sizing anything.
    """
    if depth >= MAX_DEPTH:
        raise InvalidInput(f"CBOR nesting deeper than {MAX_DEPTH}")
    if count > (remaining if major == 4 else remaining >> 1):
        raise InvalidInput(f"CBOR count of {count} at byte {at} exceeds the remaining input")


def _decode(data: bytes) -> CborValue:
    """Decode the one canonical item that fills ``data``; ``InvalidInput`` (without ``what``) otherwise.

    One loop reads one head per turn and always consumes at least one byte; open arrays/maps live
    on a stack of at most ``MAX_DEPTH`` frames; containers grow as their items are read.
    """
    end, pos = len(data), 0
    # The innermost open container and its state; ``holder`` stands for the top level (one item).
    holder: list[CborValue] = []
    top: _Container = holder
    left = 1  # items (array) or entries (map) the innermost container still lacks
    want_key = False  # the innermost container is a map and its next item is a key
    key = ""
    last_key: bytes | None = None  # the previous key's UTF-8 bytes in the innermost map
    stack: list[tuple[_Container, int, str, bytes | None]] = []
    value: CborValue
    while True:
        if pos >= end:
            raise InvalidInput("truncated CBOR")
        at = pos  # where this item's head starts, for error messages
        ib = data[pos]
        pos += 1
        major = ib >> 5
        if want_key and major != 3:
            raise InvalidInput(f"CBOR map key at byte {at} is not a text string")
        if major >= 6:
            value = _tag_or_simple(ib, at)
        else:
            arg = ib & 0x1F
            if arg == 24 and pos < end:  # a one-byte argument, the common long head (§4.2.1: >= 24)
                arg = data[pos]
                pos += 1
                if arg < 24:
                    raise _non_minimal(at)
            elif arg >= 24:
                arg, pos = _long_argument(data, pos, arg, at)
            if major == 3 or major == 2:  # a string of ``arg`` bytes
                stop = pos + arg
                if stop > end:
                    raise _string_past_end(arg, at)
                chunk, pos = data[pos:stop], stop
                if major == 2:
                    value = chunk
                else:
                    try:
                        value = chunk.decode("utf-8")
                    except UnicodeDecodeError:
                        raise _not_utf8(at) from None
                    if want_key:  # RFC 8949 §4.2.3, §5.6: keys strictly ascending by (length, bytes)
                        if last_key is not None and (arg < len(last_key) or (arg == len(last_key) and chunk <= last_key)):
                            raise _key_out_of_order(chunk, last_key, value)
                        key, last_key, want_key = value, chunk, False
                        continue
            elif major < 2:
                value = arg if major == 0 else -1 - arg
            else:  # 4: array, 5: map
                _check_count(major, arg, end - pos, len(stack), at)
                if arg:
                    stack.append((top, left, key, last_key))
                    left = arg
                    top, want_key, last_key = ([], False, None) if major == 4 else ({}, True, None)
                    continue
                value = [] if major == 4 else {}
        # Attach ``value`` to the innermost container; close every container it completes.
        while True:
            if isinstance(top, dict):
                top[key] = value
                want_key = True
            else:
                top.append(value)
                want_key = False
            left -= 1
            if left:
                break
            if not stack:
                if pos != end:
                    raise InvalidInput(f"{end - pos} trailing bytes after the CBOR item")
                return holder[0]
            value = top
            top, left, key, last_key = stack.pop()


def loads(data: bytes | bytearray | memoryview, *, max_size: int = DEFAULT_MAX_SIZE, what: str = "record") -> CborValue:
    """Decode one canonical CBOR item that fills ``data`` exactly.

    ``max_size`` bounds the input before it is parsed. Raises ``InvalidInput``
    (naming ``what``) for anything that is not the canonical encoding of a
    value of Ping's subset, and for nothing else.
    """
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise InvalidInput(f"{what}: expected bytes, got {type(data).__name__}")
    size = data.nbytes if isinstance(data, memoryview) else len(data)
    if size > max_size:
        raise InvalidInput(f"{what}: {size} bytes exceeds the limit of {max_size}")
    raw = bytes(data)
    if not raw:
        raise InvalidInput(f"{what}: empty input")
    try:
        return _decode(raw)
    except InvalidInput as exc:
        raise InvalidInput(f"{what}: {exc}") from None
    except MemoryError:
        # The decoder builds a few objects per input byte; only a caller's
        # very large ``max_size`` on a small heap (Pyodide) can reach this.
        # The record cannot be decoded here, which is a refusal of its bytes.
        raise InvalidInput(f"{what}: {len(raw)} bytes of CBOR are too large to decode in the available memory") from None


#: Deepest nesting :func:`loads_json` accepts (Ping's JSON is a few levels deep).
MAX_JSON_DEPTH = 32
# A JSON string (with its escapes) or a bracket: strings are skipped, brackets counted.
_JSON_TOKENS = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"|[\[\]{}]', re.DOTALL)


def loads_json(data: bytes | str, *, max_size: int, what: str) -> Any:
    """Parse JSON that came from elsewhere (a server's error body, another tab's event).

    ``InvalidInput`` (naming ``what``) for input over ``max_size`` bytes,
    invalid UTF-8 or JSON, and for nesting deep enough to exhaust the
    parser's recursion (``[[[[...``) or memory: nothing else escapes.
    """
    if len(data) > max_size:
        raise InvalidInput(f"{what}: {len(data)} bytes exceeds the limit of {max_size}")
    raw = data.encode("utf-8", "surrogatepass") if isinstance(data, str) else bytes(data)
    # Nesting is bounded before the parser sees it: json's C scanner recurses per level, and in
    # Pyodide the WebAssembly stack overflows (a fatal error, not a RecursionError) well
    # before Python's recursion limit. One regex pass skips strings and counts brackets.
    depth = 0
    for m in _JSON_TOKENS.finditer(raw):
        token = m.group()
        if token in (b"[", b"{"):
            depth += 1
            if depth > MAX_JSON_DEPTH:
                raise InvalidInput(f"{what}: JSON nested deeper than {MAX_JSON_DEPTH}")
        elif token in (b"]", b"}"):
            depth -= 1
    try:
        return json.loads(raw)
    except (ValueError, RecursionError, MemoryError) as exc:  # UnicodeDecodeError is a ValueError
        raise InvalidInput(f"{what}: not JSON ({type(exc).__name__})") from None


# --------------------------------------------------------------------------
# Typed access to decoded values. ``what`` names the field in error messages.


def as_bytes(value: object, what: str, *, length: int | None = None, max_len: int | None = None) -> bytes:
    """``value`` as a byte string of exactly ``length`` / at most ``max_len`` bytes."""
    if type(value) is not bytes:
        raise InvalidInput(f"{what}: expected a byte string")
    if length is not None and len(value) != length:
        raise InvalidInput(f"{what}: expected {length} bytes, got {len(value)}")
    if max_len is not None and len(value) > max_len:
        raise InvalidInput(f"{what}: {len(value)} bytes exceeds the limit of {max_len}")
    return value


def as_uint(value: object, what: str, *, max_value: int = MAX_UINT) -> int:
    """``value`` as an integer in ``0..max_value``."""
    if type(value) is not int:
        raise InvalidInput(f"{what}: expected an unsigned integer")
    if not 0 <= value <= max_value:
        raise InvalidInput(f"{what}: {value} is out of range 0..{max_value}")
    return value


def as_text(value: object, what: str, *, max_len: int) -> str:
    """``value`` as a text string of at most ``max_len`` UTF-8 bytes."""
    if type(value) is not str:
        raise InvalidInput(f"{what}: expected a text string")
    if len(value) > max_len or len(value.encode("utf-8")) > max_len:
        raise InvalidInput(f"{what}: text longer than {max_len} bytes")
    return value


def check_text(value: object, what: str, max_len: int) -> str:
    """``value`` as valid Unicode text (no lone surrogates) of at most ``max_len`` UTF-8 bytes.

    For values an application hands in (names, labels) before they are encoded.
    """
    if type(value) is not str:
        raise InvalidInput(f"{what}: expected text")
    try:
        size = len(value.encode("utf-8"))
    except UnicodeEncodeError:
        raise InvalidInput(f"{what}: not valid Unicode text") from None
    if size > max_len:
        raise InvalidInput(f"{what}: text longer than {max_len} bytes")
    return value


def as_bool(value: object, what: str) -> bool:
    if type(value) is not bool:
        raise InvalidInput(f"{what}: expected a boolean")
    return value


def as_list(value: object, what: str, *, max_items: int) -> list[CborValue]:
    """``value`` as an array of at most ``max_items`` items."""
    if type(value) is not list:
        raise InvalidInput(f"{what}: expected an array")
    if len(value) > max_items:
        raise InvalidInput(f"{what}: {len(value)} items exceeds the limit of {max_items}")
    return value


def as_map(value: object, what: str, keys: frozenset[str]) -> "Record":
    """``value`` as a map with exactly the text keys ``keys``."""
    if type(value) is not dict:
        raise InvalidInput(f"{what}: expected a map")
    if value.keys() != keys:
        missing = sorted(keys - value.keys())
        extra = sorted(value.keys() - keys)
        raise InvalidInput(f"{what}: wrong fields (missing {missing}, unexpected {extra})")
    return Record(value, what)


class Record(Mapping[str, CborValue]):
    """A decoded map whose key set has been checked, with typed field access.

    Each accessor raises ``InvalidInput`` naming ``<record>.<field>``.
    """

    __slots__ = ("_m", "what")

    def __init__(self, m: dict[str, CborValue], what: str) -> None:
        self._m = m
        self.what = what

    def __getitem__(self, key: str) -> CborValue:
        return self._m[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._m)

    def __len__(self) -> int:
        return len(self._m)

    def _name(self, key: str) -> str:
        return f"{self.what}.{key}"

    def get_bytes(self, key: str, *, length: int | None = None, max_len: int | None = None) -> bytes:
        return as_bytes(self._m[key], self._name(key), length=length, max_len=max_len)

    def get_uint(self, key: str, *, max_value: int = MAX_UINT) -> int:
        return as_uint(self._m[key], self._name(key), max_value=max_value)

    def get_text(self, key: str, *, max_len: int) -> str:
        return as_text(self._m[key], self._name(key), max_len=max_len)

    def get_opt_text(self, key: str, *, max_len: int) -> str | None:
        value = self._m[key]
        return None if value is None else as_text(value, self._name(key), max_len=max_len)

    def get_opt_bytes(self, key: str, *, length: int | None = None, max_len: int | None = None) -> bytes | None:
        value = self._m[key]
        return None if value is None else as_bytes(value, self._name(key), length=length, max_len=max_len)

    def get_bool(self, key: str) -> bool:
        return as_bool(self._m[key], self._name(key))

    def get_list(self, key: str, *, max_items: int) -> list[CborValue]:
        return as_list(self._m[key], self._name(key), max_items=max_items)

    def get_map(self, key: str, keys: frozenset[str]) -> "Record":
        return as_map(self._m[key], self._name(key), keys)


def encode_record(version: int, fields: Mapping[str, CborValue]) -> bytes:
    """A versioned record: ``fields`` plus ``"v": version``, canonically encoded."""
    body: dict[str, CborValue] = {"v": version}
    body.update(fields)
    return dumps(body)


def decode_record(
    data: bytes | bytearray | memoryview,
    *,
    what: str,
    version: int,
    keys: frozenset[str] | Sequence[str],
    max_size: int = DEFAULT_MAX_SIZE,
) -> Record:
    """Decode a record written by :func:`encode_record`.

    Checks, in order: size, canonical CBOR, a map, a ``"v"`` field equal to
    ``version`` (another version is refused by name, never guessed at), and
    exactly the field names ``keys`` besides ``"v"``.
    """
    value = loads(data, max_size=max_size, what=what)
    if type(value) is not dict:
        raise InvalidInput(f"{what}: expected a map")
    v = value.get("v")
    if type(v) is not int:
        raise InvalidInput(f"{what}: missing or malformed version field")
    if v != version:
        raise InvalidInput(f"{what}: version {v} is not supported (this SDK reads version {version})")
    return as_map(value, what, frozenset(keys) | {"v"})
