"""The TLS presentation language as RFC 9420 uses it (§2.1).

Fixed-width big-endian integers, and vectors whose byte length is a
variable-length integer (§2.1.2: 1, 2 or 4 bytes, top two bits give the
width, ``0b11`` is reserved). Decoding is strict:

* truncated input, trailing bytes, a reserved or non-minimal length prefix,
  and a vector longer than the reader's bound raise ``MlsDecodeError``;
* a vector's items must consume exactly its length (each item at least one
  byte);
* a struct may bound a field more tightly than the reader's ``max_vector``
  (see ``ping_core.mls.structs.limits``);
* nothing but ``MlsDecodeError`` escapes :func:`decode_exact`.

Structs implement ``write(w: Writer)`` and a ``read(r: Reader)`` classmethod;
:func:`encode` and :func:`decode_exact` wrap them.
"""

from __future__ import annotations

from struct import Struct
from typing import Callable, Iterable, Mapping, Protocol, Sequence, TypeVar

from ping_core.errors import MlsDecodeError, MlsReason

__all__ = [
    "Reader",
    "Writer",
    "Codec",
    "Writable",
    "encode",
    "decode_exact",
    "decode_with",
    "check_enum",
    "varint",
    "opaque",
    "DEFAULT_MAX_VECTOR",
    "MAX_VARINT",
]

T = TypeVar("T")
C = TypeVar("C", bound="Codec")

MAX_VARINT = (1 << 30) - 1
_U16 = Struct(">H")
_U32 = Struct(">I")
_U64 = Struct(">Q")
_U64_PAIR = Struct(">QQ")
# Struct objects for the uint16 lists that fit a one-byte length (< 32 items).
_U16_SHORT = [Struct(">%dH" % i) for i in range(32)]
# Bound on any single vector a Reader accepts unless told otherwise. Large
# enough for a Welcome of a several-thousand-member group with its tree.
DEFAULT_MAX_VECTOR = 64 * 1024 * 1024


class Writable(Protocol):
    """Anything that writes its own encoding."""

    def write(self, w: "Writer") -> None: ...


class Codec(Protocol):
    """A wire struct: writes itself and reads itself."""

    def write(self, w: "Writer") -> None: ...

    @classmethod
    def read(cls: type[C], r: "Reader") -> C: ...


def varint(n: int) -> bytes:
    """The RFC 9420 variable-length encoding of ``n`` (minimal width)."""
    if n < 0x40:
        return bytes((n,))
    if n < 0x4000:
        return (n | 0x4000).to_bytes(2, "big")
    if n <= MAX_VARINT:
        return (n | 0x80000000).to_bytes(4, "big")
    raise ValueError(f"length {n} does not fit a variable-length integer")


def opaque(data: bytes) -> bytes:
    """``opaque data<V>``: the varint length followed by the bytes."""
    n = len(data)
    if n < 0x40:
        return bytes((n,)) + data
    return varint(n) + data


class Writer:
    """Appends encodings to a growing buffer."""

    __slots__ = ("buf",)

    def __init__(self) -> None:
        self.buf = bytearray()

    def getvalue(self) -> bytes:
        return bytes(self.buf)

    def u8(self, v: int) -> None:
        self.buf.append(v)

    def u16(self, v: int) -> None:
        self.buf += v.to_bytes(2, "big")

    def u32(self, v: int) -> None:
        self.buf += v.to_bytes(4, "big")

    def u64(self, v: int) -> None:
        self.buf += v.to_bytes(8, "big")

    def raw(self, data: bytes) -> None:
        """Bytes with no length prefix (a fixed-size field or a nested struct)."""
        self.buf += data

    def opaque(self, data: bytes) -> None:
        """``opaque data<V>``."""
        n = len(data)
        buf = self.buf
        if n < 0x40:
            buf.append(n)
        else:
            buf += varint(n)
        buf += data

    def struct(self, item: Writable) -> None:
        item.write(self)

    def begin_vector(self) -> int:
        """Start a ``<V>`` vector written in place; pass the result to :meth:`end_vector`."""
        return len(self.buf)

    def end_vector(self, start: int) -> None:
        """Prefix the bytes written since ``start`` with their varint length.

        Writing in place and inserting the prefix afterwards avoids building
        each nested vector in a separate buffer (one memmove instead).
        """
        buf = self.buf
        n = len(buf) - start
        if n < 0x40:
            buf.insert(start, n)
        else:
            buf[start:start] = varint(n)

    def vector(self, items: Iterable[T], write_item: Callable[["Writer", T], None]) -> None:
        """``T items<V>``: the varint byte length, then each item."""
        start = len(self.buf)
        for item in items:
            write_item(self, item)
        self.end_vector(start)

    def structs(self, items: Iterable[Writable]) -> None:
        """A vector of structs."""
        start = len(self.buf)
        for item in items:
            item.write(self)
        self.end_vector(start)

    def opaques(self, items: Iterable[bytes]) -> None:
        """``opaque items<V><V>``: a vector of opaque vectors."""
        start = len(self.buf)
        for item in items:
            self.opaque(item)
        self.end_vector(start)

    def uint16s(self, values: Sequence[int]) -> None:
        """``uint16 values<V>``."""
        self.opaque(_pack_many(">%dH", values))

    def uint32s(self, values: Sequence[int]) -> None:
        """``uint32 values<V>``."""
        self.opaque(_pack_many(">%dI", values))

    def u32_map(self, mapping: Mapping[int, bytes]) -> None:
        """``struct { uint32 key; opaque value<V>; } entries<V>``, keys ascending
        (one encoding per map: persisted state is deterministic)."""
        start = self.begin_vector()
        for key in sorted(mapping):
            self.u32(key)
            self.opaque(mapping[key])
        self.end_vector(start)

    def optional(self, item: Writable | None) -> None:
        """``optional<T>``: a presence byte then the struct."""
        if item is None:
            self.buf.append(0)
        else:
            self.buf.append(1)
            item.write(self)

    def optional_opaque(self, data: bytes | None) -> None:
        if data is None:
            self.buf.append(0)
        else:
            self.buf.append(1)
            self.opaque(data)

    def boolean(self, v: bool) -> None:
        self.buf.append(1 if v else 0)


class Reader:
    """Reads encodings from ``data[pos:end]``; every read is bounds-checked."""

    __slots__ = ("data", "pos", "end", "max_vector")

    def __init__(self, data: bytes | bytearray | memoryview, max_vector: int = DEFAULT_MAX_VECTOR) -> None:
        if not isinstance(data, bytes):
            if isinstance(data, (bytearray, memoryview)):
                data = bytes(data)
            else:
                raise MlsDecodeError("expected bytes to decode", reason=MlsReason.INVALID_ARGUMENT)
        self.data = data
        self.pos = 0
        self.end = len(data)
        self.max_vector = max_vector

    def remaining(self) -> int:
        return self.end - self.pos

    def done(self) -> bool:
        return self.pos == self.end

    def expect_end(self) -> None:
        if self.pos != self.end:
            raise MlsDecodeError(f"{self.end - self.pos} trailing bytes", reason=MlsReason.MALFORMED)

    def _take(self, n: int) -> bytes:
        pos = self.pos
        end = pos + n
        if end > self.end:
            raise MlsDecodeError("truncated input", reason=MlsReason.MALFORMED)
        self.pos = end
        return self.data[pos:end]

    def fixed(self, n: int) -> bytes:
        """``n`` bytes with no length prefix."""
        return self._take(n)

    def u8(self) -> int:
        pos = self.pos
        if pos >= self.end:
            raise MlsDecodeError("truncated input", reason=MlsReason.MALFORMED)
        self.pos = pos + 1
        return self.data[pos]

    def u16(self) -> int:
        pos = self.pos
        if pos + 2 > self.end:
            raise MlsDecodeError("truncated input", reason=MlsReason.MALFORMED)
        self.pos = pos + 2
        value: int = _U16.unpack_from(self.data, pos)[0]
        return value

    def u32(self) -> int:
        pos = self.pos
        if pos + 4 > self.end:
            raise MlsDecodeError("truncated input", reason=MlsReason.MALFORMED)
        self.pos = pos + 4
        value: int = _U32.unpack_from(self.data, pos)[0]
        return value

    def u64(self) -> int:
        pos = self.pos
        if pos + 8 > self.end:
            raise MlsDecodeError("truncated input", reason=MlsReason.MALFORMED)
        self.pos = pos + 8
        value: int = _U64.unpack_from(self.data, pos)[0]
        return value

    def u64_pair(self) -> tuple[int, int]:
        """Two uint64 values (e.g. a Lifetime) in one bounds check."""
        pos = self.pos
        if pos + 16 > self.end:
            raise MlsDecodeError("truncated input", reason=MlsReason.MALFORMED)
        self.pos = pos + 16
        return _U64_PAIR.unpack_from(self.data, pos)

    def boolean(self) -> bool:
        v = self.u8()
        if v > 1:
            raise MlsDecodeError(f"invalid boolean {v}", reason=MlsReason.MALFORMED)
        return v == 1

    def varint(self) -> int:
        """A length prefix: minimal width, reserved prefix refused."""
        first = self.u8()
        prefix = first >> 6
        if prefix == 0:
            return first
        if prefix == 1:
            v = ((first & 0x3F) << 8) | self.u8()
            if v < 0x40:
                raise MlsDecodeError("non-minimal variable-length integer", reason=MlsReason.MALFORMED)
            return v
        if prefix == 2:
            v = ((first & 0x3F) << 24) | int.from_bytes(self._take(3), "big")
            if v < 0x4000:
                raise MlsDecodeError("non-minimal variable-length integer", reason=MlsReason.MALFORMED)
            return v
        raise MlsDecodeError("reserved variable-length integer prefix 0b11", reason=MlsReason.MALFORMED)

    def _length(self) -> int:
        """A vector's varint length, checked against the bound and the input.

        Inlined varint decoding: this runs for every opaque field, so it is
        the decoder's innermost loop.
        """
        data = self.data
        pos = self.pos
        end = self.end
        if pos >= end:
            raise MlsDecodeError("truncated input", reason=MlsReason.MALFORMED)
        first = data[pos]
        if first < 0x40:
            n = first
            pos += 1
        elif first < 0x80:
            if pos + 2 > end:
                raise MlsDecodeError("truncated input", reason=MlsReason.MALFORMED)
            n = ((first & 0x3F) << 8) | data[pos + 1]
            if n < 0x40:
                raise MlsDecodeError("non-minimal variable-length integer", reason=MlsReason.MALFORMED)
            pos += 2
        elif first < 0xC0:
            if pos + 4 > end:
                raise MlsDecodeError("truncated input", reason=MlsReason.MALFORMED)
            n = _U32.unpack_from(data, pos)[0] & 0x3FFFFFFF
            if n < 0x4000:
                raise MlsDecodeError("non-minimal variable-length integer", reason=MlsReason.MALFORMED)
            pos += 4
        else:
            raise MlsDecodeError("reserved variable-length integer prefix 0b11", reason=MlsReason.MALFORMED)
        if n > self.max_vector:
            raise MlsDecodeError(
                f"vector of {n} bytes exceeds the bound of {self.max_vector}",
                reason=MlsReason.LIMIT_EXCEEDED,
            )
        if pos + n > end:
            raise MlsDecodeError("truncated input", reason=MlsReason.MALFORMED)
        self.pos = pos
        return n

    def opaque(self, max_len: int | None = None) -> bytes:
        """``opaque data<V>``, optionally with a tighter bound."""
        n = self._length()
        if max_len is not None and n > max_len:
            raise MlsDecodeError(f"field of {n} bytes exceeds its bound of {max_len}", reason=MlsReason.LIMIT_EXCEEDED)
        pos = self.pos
        stop = pos + n
        self.pos = stop
        return self.data[pos:stop]

    def struct(self, cls: type[C]) -> C:
        return cls.read(self)

    def vector(self, read_item: Callable[["Reader"], T], max_len: int | None = None) -> list[T]:
        """``T items<V>``: items must consume the vector's length exactly.

        While the items are read, the reader's end is the vector's end, so an
        item can never read past it (that is a truncation error instead).
        """
        n = self._length()
        if max_len is not None and n > max_len:
            raise MlsDecodeError(f"vector of {n} bytes exceeds its bound of {max_len}", reason=MlsReason.LIMIT_EXCEEDED)
        stop = self.pos + n
        saved_end = self.end
        self.end = stop
        items: list[T] = []
        append = items.append
        try:
            while self.pos < stop:
                before = self.pos
                append(read_item(self))
                if self.pos == before:
                    # An item that reads nothing would loop forever.
                    raise MlsDecodeError("vector item of zero length", reason=MlsReason.MALFORMED)
        finally:
            self.end = saved_end
        return items

    def structs(self, cls: type[C], max_len: int | None = None) -> tuple[C, ...]:
        """A vector of structs, as a tuple (structs are immutable)."""
        return tuple(self.vector(cls.read, max_len))

    def opaques(self, max_item: int | None = None, max_len: int | None = None) -> tuple[bytes, ...]:
        """``opaque items<V><V>``: each item bounded by ``max_item``."""
        return tuple(self.vector(lambda r: r.opaque(max_item), max_len))

    def uint16s(self, max_len: int | None = None) -> tuple[int, ...]:
        """``uint16 values<V>``; the byte length must be a multiple of 2."""
        data = self.data
        pos = self.pos
        # Fast path for the common short list (one-byte length prefix).
        if pos < self.end and data[pos] < 0x40:
            n = data[pos]
            stop = pos + 1 + n
            if stop > self.end:
                raise MlsDecodeError("truncated input", reason=MlsReason.MALFORMED)
            if max_len is not None and n > max_len:
                raise MlsDecodeError(
                    f"field of {n} bytes exceeds its bound of {max_len}",
                    reason=MlsReason.LIMIT_EXCEEDED,
                )
            if n & 1:
                raise MlsDecodeError("uint16 vector of odd length", reason=MlsReason.MALFORMED)
            self.pos = stop
            if n == 0:
                return ()
            return _U16_SHORT[n >> 1].unpack_from(data, pos + 1)
        raw = self.opaque(max_len)
        n = len(raw)
        if n & 1:
            raise MlsDecodeError("uint16 vector of odd length", reason=MlsReason.MALFORMED)
        return _unpack_many(">%dH", n >> 1, raw)

    def uint32s(self, max_len: int | None = None) -> tuple[int, ...]:
        """``uint32 values<V>``; the byte length must be a multiple of 4."""
        data = self.opaque(max_len)
        if len(data) & 3:
            raise MlsDecodeError("uint32 vector of a length not a multiple of 4", reason=MlsReason.MALFORMED)
        return _unpack_many(">%dI", len(data) >> 2, data)

    def u32_map(self, max_value: int | None = None) -> dict[int, bytes]:
        """Inverse of :meth:`Writer.u32_map`: keys must be strictly ascending."""
        out: dict[int, bytes] = {}
        last = -1
        for key, value in self.vector(lambda r: (r.u32(), r.opaque(max_value))):
            if key <= last:
                raise MlsDecodeError("map keys are not strictly ascending", reason=MlsReason.MALFORMED)
            last = key
            out[key] = value
        return out

    def optional(self, read_item: Callable[["Reader"], T]) -> T | None:
        flag = self.u8()
        if flag == 0:
            return None
        if flag == 1:
            return read_item(self)
        raise MlsDecodeError(f"invalid optional presence byte {flag}", reason=MlsReason.MALFORMED)

    def optional_opaque(self) -> bytes | None:
        return self.optional(Reader.opaque)


_STRUCTS: dict[str, Struct] = {}


def _fmt(pattern: str, count: int) -> Struct:
    key = pattern % count
    st = _STRUCTS.get(key)
    if st is None:
        st = Struct(key)
        if len(_STRUCTS) < 256:  # only small, repeated shapes are worth keeping
            _STRUCTS[key] = st
    return st


def _pack_many(pattern: str, values: Sequence[int]) -> bytes:
    return _fmt(pattern, len(values)).pack(*values)


def _unpack_many(pattern: str, count: int, data: bytes) -> tuple[int, ...]:
    if count == 0:
        return ()
    return _fmt(pattern, count).unpack(data)


def encode(item: Writable) -> bytes:
    """The encoding of one struct."""
    w = Writer()
    item.write(w)
    return bytes(w.buf)


def decode_exact(cls: type[C], data: bytes, max_vector: int = DEFAULT_MAX_VECTOR) -> C:
    """Decode exactly one ``cls`` from ``data``: no trailing bytes.

    Raises ``MlsDecodeError`` and nothing else for malformed input.
    """
    return decode_with(cls.read, data, max_vector)


def decode_with(read: Callable[[Reader], T], data: bytes, max_vector: int = DEFAULT_MAX_VECTOR) -> T:
    """Decode exactly one value with ``read``; see :func:`decode_exact`."""
    r = Reader(data, max_vector)
    try:
        value = read(r)
    except MlsDecodeError:
        raise
    except (ValueError, IndexError, KeyError, OverflowError, UnicodeDecodeError, TypeError, RecursionError) as exc:
        # A struct's own checks (an enum value, UTF-8) surface as ValueError;
        # the decoder contract is that only MlsDecodeError leaves.
        raise MlsDecodeError(
            f"malformed {getattr(read, '__qualname__', 'value')}: {type(exc).__name__}",
            reason=MlsReason.MALFORMED,
        ) from None
    r.expect_end()
    return value


def check_enum(value: int, allowed: Sequence[int] | frozenset[int], what: str) -> int:
    """``value`` if it is one of ``allowed``, else ``MlsDecodeError``."""
    if value not in allowed:
        raise MlsDecodeError(f"unknown {what} {value}", reason=MlsReason.MALFORMED)
    return value
