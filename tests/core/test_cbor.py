"""ping_core.cbor: canonical encoding and strict decoding of Ping's CBOR subset."""

from __future__ import annotations

from typing import Iterator

import cbor2
import cbor2._decoder
import cbor2._encoder
import pytest
from hypothesis import given
from hypothesis import strategies as st

from ping_core import cbor as codec
from ping_core.cbor import Record, as_map, decode_record, dumps, encode_record, loads
from ping_core.errors import InvalidInput, PingError

from .fuzz import cbor_values


@pytest.fixture(params=["c", "pure"])
def cbor_impl(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """Encode with cbor2's C extension and with its pure-Python code (what Pyodide runs).

    Decoding is ping_core.cbor's own pure-Python decoder on both.
    """
    if request.param == "pure":
        monkeypatch.setattr(codec, "_dumps", cbor2._encoder.dumps)
    yield request.param


ping_values = st.recursive(
    st.one_of(
        st.integers(min_value=-(2**64), max_value=2**64 - 1),
        st.binary(max_size=40),
        st.text(max_size=10),
        st.booleans(),
        st.none(),
    ),
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=6), inner, max_size=4)),
    max_leaves=10,
)


@given(value=ping_values)
def test_round_trip(value: codec.CborValue) -> None:
    data = dumps(value)
    assert loads(data) == value
    assert dumps(loads(data)) == data


def test_round_trip_both_impls(cbor_impl: str) -> None:
    value: codec.CborValue = {"v": 1, "b": b"\x00\x01", "list": [1, -2, "x", None, True, {"k": [b""]}], "big": 2**64 - 1, "neg": -(2**64)}
    data = dumps(value)
    assert loads(data) == value


def test_encoding_is_canonical_length_first() -> None:
    # RFC 8949 §4.2.3 length-first: "v" (1-byte key) sorts before "aa".
    assert dumps({"aa": 1, "v": 2}) == bytes.fromhex("a2617602626161" "01")


@pytest.mark.parametrize(
    "hex_input,reason",
    [
        ("", "empty"),
        ("0102", "trailing bytes"),
        ("a201010102", "duplicate key"),
        ("a2616101616101", "duplicate text key"),
        ("a2626161016176" "02", "unsorted keys"),
        ("1801", "non-minimal integer"),
        ("5801" "00", "non-minimal length"),
        ("9f01ff", "indefinite array"),
        ("5f4100ff", "indefinite bytes"),
        ("c101", "tag (datetime)"),
        ("c249010000000000000000", "bignum tag"),
        ("d9d9f701", "self-describe tag"),
        ("f93c00", "float"),
        ("fb3ff0000000000000", "double"),
        ("f7", "undefined"),
        ("e0", "simple value"),
        ("a10101", "integer map key"),
        ("a1400101", "bytes map key"),
        ("62fffe", "invalid UTF-8"),
        ("9b0000000100000000", "huge array length"),
        ("5b0000001000000000", "huge byte string length"),
        ("bb0000001000000000", "huge map length"),
        ("81" * 20 + "01", "too deep"),
        ("81" * 1000 + "01", "far too deep"),
        ("1bffffffffffffffff", "ok"),
    ],
)
def test_strict_rejections(hex_input: str, reason: str) -> None:
    data = bytes.fromhex(hex_input)
    if reason == "ok":
        assert loads(data) == 2**64 - 1
        return
    with pytest.raises(InvalidInput):
        loads(data)


def test_size_bound_checked_before_parsing() -> None:
    data = dumps(b"x" * 100)
    assert loads(data, max_size=len(data)) == b"x" * 100
    with pytest.raises(InvalidInput, match="exceeds"):
        loads(data, max_size=len(data) - 1)


def test_non_bytes_input() -> None:
    with pytest.raises(InvalidInput):
        loads("a string")  # type: ignore[arg-type]
    assert loads(bytearray(b"\x01")) == 1
    assert loads(memoryview(b"\x01")) == 1


def test_dumps_refuses_foreign_values() -> None:
    with pytest.raises(InvalidInput):
        dumps(object())  # type: ignore[arg-type]


@given(data=st.binary(max_size=200))
def test_random_bytes_raise_only_invalid_input(data: bytes) -> None:
    try:
        loads(data)
    except InvalidInput:
        pass


@given(data=st.binary(max_size=120))
def test_random_bytes_agree_with_pure_cbor2(data: bytes) -> None:
    # Whatever the strict decoder accepts, cbor2's pure-Python decoder (what
    # Pyodide has) reads as the same value, and its pure encoder writes back.
    try:
        value = loads(data)
    except InvalidInput:
        return
    assert cbor2._decoder.loads(data) == value
    assert cbor2._encoder.dumps(value, canonical=True) == data


def test_record_versioning() -> None:
    data = encode_record(1, {"a": b"xy", "n": 5})
    rec = decode_record(data, what="T", version=1, keys=("a", "n"))
    assert rec.get_bytes("a", length=2) == b"xy"
    assert rec.get_uint("n", max_value=5) == 5
    with pytest.raises(InvalidInput, match="version 1 is not supported"):
        decode_record(data, what="T", version=2, keys=("a", "n"))
    with pytest.raises(InvalidInput, match="wrong fields"):
        decode_record(data, what="T", version=1, keys=("a",))
    with pytest.raises(InvalidInput, match="wrong fields"):
        decode_record(data, what="T", version=1, keys=("a", "n", "m"))
    with pytest.raises(InvalidInput, match="version"):
        decode_record(dumps({"a": 1}), what="T", version=1, keys=("a",))
    with pytest.raises(InvalidInput, match="expected a map"):
        decode_record(dumps([1]), what="T", version=1, keys=())
    with pytest.raises(InvalidInput, match="version"):
        decode_record(dumps({"v": "1"}), what="T", version=1, keys=())


def test_record_field_checks() -> None:
    rec = as_map({"b": b"abc", "u": 7, "t": "hé", "n": None, "f": True, "l": [1, 2], "m": {"x": 1}, "neg": -1}, "R",
                 frozenset({"b", "u", "t", "n", "f", "l", "m", "neg"}))
    assert isinstance(rec, Record) and len(rec) == 8 and set(rec) == {"b", "u", "t", "n", "f", "l", "m", "neg"}
    with pytest.raises(InvalidInput, match=r"R\.b: expected 2 bytes"):
        rec.get_bytes("b", length=2)
    with pytest.raises(InvalidInput, match="limit"):
        rec.get_bytes("b", max_len=2)
    with pytest.raises(InvalidInput):
        rec.get_uint("u", max_value=6)
    with pytest.raises(InvalidInput):
        rec.get_uint("neg")
    with pytest.raises(InvalidInput):
        rec.get_uint("f")  # a bool is not an integer here
    with pytest.raises(InvalidInput):
        rec.get_text("t", max_len=2)  # 3 UTF-8 bytes
    assert rec.get_text("t", max_len=3) == "hé"
    assert rec.get_opt_text("n", max_len=1) is None
    assert rec.get_opt_bytes("n") is None
    assert rec.get_bool("f") is True
    with pytest.raises(InvalidInput):
        rec.get_bool("u")
    with pytest.raises(InvalidInput):
        rec.get_list("l", max_items=1)
    assert rec.get_map("m", frozenset({"x"}))["x"] == 1
    with pytest.raises(InvalidInput):
        rec.get_map("m", frozenset({"y"}))
    with pytest.raises(InvalidInput):
        rec.get_bytes("t")


def test_check_text() -> None:
    assert codec.check_text("ok", "x", 2) == "ok"
    with pytest.raises(InvalidInput):
        codec.check_text("\ud800", "x", 10)
    with pytest.raises(InvalidInput):
        codec.check_text(b"x", "x", 10)
    with pytest.raises(InvalidInput):
        codec.check_text("abc", "x", 2)


@given(value=cbor_values)
def test_every_decoded_value_reencodes(value: object) -> None:
    data = cbor2.dumps(value, canonical=True)
    try:
        out = loads(data)
    except PingError:
        return
    assert dumps(out) == data
