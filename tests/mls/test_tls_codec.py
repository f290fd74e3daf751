"""The TLS presentation-language codec: strict varints, vectors, bounds."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ping_core.errors import MlsDecodeError, MlsReason
from ping_core.mls.tls import MAX_VARINT, Reader, Writer, decode_with, opaque, varint
from reasons import raises_reason


@pytest.mark.parametrize(
    ("n", "hexed"),
    [(0, "00"), (63, "3f"), (64, "4040"), (16383, "7fff"), (16384, "80004000"), (MAX_VARINT, "bfffffff")],
)
def test_varint_widths(n: int, hexed: str) -> None:
    assert varint(n) == bytes.fromhex(hexed)
    r = Reader(bytes.fromhex(hexed))
    assert r.varint() == n and r.done()


def test_varint_too_large_to_encode() -> None:
    with pytest.raises(ValueError):
        varint(MAX_VARINT + 1)


@pytest.mark.parametrize("hexed", ["4000", "403f", "80000000", "80003fff"])
def test_non_minimal_varint_refused(hexed: str) -> None:
    with raises_reason(MlsReason.MALFORMED, MlsDecodeError):
        Reader(bytes.fromhex(hexed)).varint()


@pytest.mark.parametrize("hexed", ["c0", "c0000000", "ffffffffffffffff"])
def test_reserved_prefix_refused(hexed: str) -> None:
    with raises_reason(MlsReason.MALFORMED, MlsDecodeError):
        Reader(bytes.fromhex(hexed)).varint()


@pytest.mark.parametrize("hexed", ["", "40", "80", "8000", "800000"])
def test_truncated_varint_refused(hexed: str) -> None:
    with raises_reason(MlsReason.MALFORMED, MlsDecodeError):
        Reader(bytes.fromhex(hexed)).varint()


@given(st.integers(0, MAX_VARINT))
def test_varint_roundtrip(n: int) -> None:
    r = Reader(varint(n))
    assert r.varint() == n
    r.expect_end()


@given(st.binary(max_size=6))
def test_varint_random_bytes(raw: bytes) -> None:
    r = Reader(raw)
    try:
        n = r.varint()
    except MlsDecodeError:
        return
    assert varint(n) == raw[: r.pos]  # accepted only in its minimal form


def test_opaque_bounds_and_truncation() -> None:
    assert decode_with(Reader.opaque, opaque(b"abc")) == b"abc"
    assert decode_with(Reader.opaque, opaque(b"x" * 100)) == b"x" * 100
    with raises_reason(MlsReason.MALFORMED, MlsDecodeError):
        decode_with(Reader.opaque, b"\x05abc")
    with raises_reason(MlsReason.MALFORMED, MlsDecodeError):
        decode_with(Reader.opaque, b"\x01ab")
    with raises_reason(MlsReason.LIMIT_EXCEEDED, MlsDecodeError):
        decode_with(lambda r: r.opaque(2), b"\x03abc")
    with raises_reason(MlsReason.LIMIT_EXCEEDED, MlsDecodeError):
        decode_with(Reader.opaque, b"\x05abcde", max_vector=4)


def test_vector_items_must_fill_the_length_exactly() -> None:
    # a vector of 3 bytes holding uint16 items: the second item would cross the end
    with raises_reason(MlsReason.MALFORMED, MlsDecodeError):
        decode_with(lambda r: r.vector(Reader.u16), b"\x03\x00\x01\x00")
    assert decode_with(lambda r: r.vector(Reader.u16), b"\x04\x00\x01\x00\x02") == [1, 2]
    with raises_reason(MlsReason.LIMIT_EXCEEDED, MlsDecodeError):
        decode_with(lambda r: r.vector(Reader.u16, max_len=2), b"\x04\x00\x01\x00\x02")
    # the reader's end is restored after the vector
    r = Reader(b"\x02\x00\x01\x07")
    assert r.vector(Reader.u16) == [1]
    assert r.u8() == 7 and r.done()


def test_zero_length_vector_items_refused() -> None:
    with raises_reason(MlsReason.MALFORMED, MlsDecodeError):
        decode_with(lambda r: r.vector(lambda _r: None), b"\x01\x00")


def test_integer_lists() -> None:
    w = Writer()
    w.uint16s((1, 0xFFFF))
    w.uint32s((7,))
    w.uint16s(())
    data = w.getvalue()
    assert data == bytes.fromhex("04 0001 ffff 04 00000007 00".replace(" ", ""))
    r = Reader(data)
    assert r.uint16s() == (1, 0xFFFF)
    assert r.uint32s() == (7,)
    assert r.uint16s() == ()
    with raises_reason(MlsReason.MALFORMED, MlsDecodeError):
        Reader(b"\x03\x00\x01\x02").uint16s()
    with raises_reason(MlsReason.MALFORMED, MlsDecodeError):
        Reader(b"\x02\x00\x01").uint32s()


def test_u32_map_is_sorted_and_strict() -> None:
    w = Writer()
    w.u32_map({7: b"b", 1: b"a"})
    w.u32_map({})
    data = w.getvalue()
    assert data == bytes.fromhex("0c 00000001 0161 00000007 0162 00".replace(" ", ""))
    r = Reader(data)
    assert r.u32_map() == {1: b"a", 7: b"b"} and r.u32_map() == {}
    for body in ("00000007 0162 00000001 0161", "00000001 0161 00000001 0162"):  # descending; repeated
        with raises_reason(MlsReason.MALFORMED, MlsDecodeError):
            Reader(bytes.fromhex(("0c" + body).replace(" ", ""))).u32_map()
    with raises_reason(MlsReason.LIMIT_EXCEEDED, MlsDecodeError):  # a value over the bound
        Reader(bytes.fromhex("07 00000001 02 6161")).u32_map(1)


def test_nested_vectors_written_in_place() -> None:
    w = Writer()
    w.opaques([b"a" * 70, b"", b"bc"])
    data = w.getvalue()
    assert data == bytes.fromhex("404c") + b"\x40\x46" + b"a" * 70 + b"\x00\x02bc"
    assert Reader(data).opaques() == (b"a" * 70, b"", b"bc")


def test_fixed_width_integers_and_truncation() -> None:
    w = Writer()
    w.u8(1)
    w.u16(2)
    w.u32(3)
    w.u64(4)
    r = Reader(w.getvalue())
    assert (r.u8(), r.u16(), r.u32(), r.u64()) == (1, 2, 3, 4)
    for read in (Reader.u8, Reader.u16, Reader.u32, Reader.u64):
        with raises_reason(MlsReason.MALFORMED, MlsDecodeError):
            read(Reader(b""))


def test_optional_and_boolean_strict() -> None:
    assert decode_with(Reader.optional_opaque, b"\x00") is None
    assert decode_with(Reader.optional_opaque, b"\x01\x01z") == b"z"
    with raises_reason(MlsReason.MALFORMED, MlsDecodeError):
        decode_with(Reader.optional_opaque, b"\x02")
    with raises_reason(MlsReason.MALFORMED, MlsDecodeError):
        decode_with(Reader.boolean, b"\x02")


def test_only_decode_errors_escape() -> None:
    def bad(r: Reader) -> int:
        raise ValueError("struct check")

    with raises_reason(MlsReason.MALFORMED, MlsDecodeError):
        decode_with(bad, b"")
    with raises_reason(MlsReason.INVALID_ARGUMENT, MlsDecodeError):
        Reader("not bytes")  # type: ignore[arg-type]
    assert Reader(bytearray(b"\x01")).u8() == 1
