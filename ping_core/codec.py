"""Strict CBOR for Ping's own records (identities, devices, envelopes, tickets, snapshots).

The layouts are pinned in ``docs/formats.md``. Every record is a CBOR map with
text keys and a ``"v"`` version field; values are only unsigned/negative
integers (64-bit range), byte strings, text strings, arrays, maps with text
keys, booleans and null.

Encoding is deterministic: RFC 8949 §4.2.3 "length-first" canonical form as
cbor2 writes it with ``canonical=True`` (map keys sorted by encoded length,
then bytewise; shortest-form heads; definite lengths).

Decoding is strict. :func:`loads` accepts exactly the bytes :func:`dumps`
would produce for the decoded value, so it refuses trailing bytes, duplicate
map keys, unsorted keys, non-minimal integer or length heads, indefinite
lengths, tags (dates, bignums, ...), floats, ``undefined`` and simple values.
Sizes are bounded before any parsing. The only exception that escapes is
:class:`ping_core.errors.InvalidInput`; cbor2's own exceptions, ``KeyError``
and ``TypeError`` never reach a caller.

On CPython cbor2 uses its C extension; in Pyodide its pure-Python code. Both
behave the same here (the tests run both).
"""

from __future__ import annotations

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
]

CborValue = Union[int, bytes, str, bool, None, list["CborValue"], dict[str, "CborValue"]]

MAX_UINT = (1 << 64) - 1
_MIN_INT = -(1 << 64)
# Ping's records nest at most a few levels (a snapshot of conversations of
# metas); anything deeper is malformed.
MAX_DEPTH = 8
# A bound for records that do not give their own.
DEFAULT_MAX_SIZE = 1 << 20

# Indirection so the tests can run the pure-Python cbor2 code that Pyodide uses.
_loads: Callable[[bytes], Any] = cbor2.loads
_dumps: Callable[..., bytes] = cbor2.dumps


def dumps(value: CborValue) -> bytes:
    """The canonical CBOR encoding of ``value`` (only the types listed in the module docstring)."""
    try:
        return _dumps(value, canonical=True)
    except Exception as exc:  # cbor2 raises CBOREncodeError/TypeError/ValueError for bad values
        raise InvalidInput(f"value cannot be encoded as CBOR: {type(exc).__name__}") from None


def _check_types(value: Any, depth: int) -> None:
    """Refuse every decoded type outside Ping's subset (see module docstring)."""
    t = type(value)
    if t is bytes or t is str or t is bool or value is None:
        return
    if t is int:
        if not _MIN_INT <= value <= MAX_UINT:
            raise InvalidInput("CBOR integer out of the 64-bit range")
        return
    if depth >= MAX_DEPTH:
        raise InvalidInput("CBOR nesting too deep")
    if t is list:
        for item in value:
            _check_types(item, depth + 1)
        return
    if t is dict:
        for key, item in value.items():
            if type(key) is not str:
                raise InvalidInput("CBOR map keys must be text")
            _check_types(item, depth + 1)
        return
    raise InvalidInput(f"CBOR value of a type Ping does not use ({t.__name__})")


def loads(data: bytes | bytearray | memoryview, *, max_size: int = DEFAULT_MAX_SIZE, what: str = "record") -> CborValue:
    """Decode one canonical CBOR item that fills ``data`` exactly.

    ``max_size`` bounds the input before it is parsed. Raises ``InvalidInput``
    (naming ``what``) for anything that is not the canonical encoding of a
    value of Ping's subset.
    """
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise InvalidInput(f"{what}: expected bytes, got {type(data).__name__}")
    raw = bytes(data)
    if len(raw) > max_size:
        raise InvalidInput(f"{what}: {len(raw)} bytes exceeds the limit of {max_size}")
    if not raw:
        raise InvalidInput(f"{what}: empty input")
    try:
        value = _loads(raw)
    except Exception:  # any cbor2 failure (truncation, bad UTF-8, depth, ...) is malformed input
        raise InvalidInput(f"{what}: malformed CBOR") from None
    try:
        _check_types(value, 0)
    except RecursionError:
        raise InvalidInput(f"{what}: CBOR nesting too deep") from None
    except InvalidInput as exc:
        raise InvalidInput(f"{what}: {exc}") from None
    # Canonical form check: one encoding per value. This rejects duplicate or
    # unsorted keys, non-minimal heads, indefinite lengths and trailing bytes,
    # so two parsers (client, server, another language) can never disagree on
    # what a record says.
    if _dumps(value, canonical=True) != raw:
        raise InvalidInput(f"{what}: not in canonical CBOR form (or trailing bytes)")
    return value  # type: ignore[no-any-return]


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
