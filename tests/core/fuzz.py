"""Shared hypothesis helpers: every public decoder must raise only ping_core.errors exceptions."""

from __future__ import annotations

from typing import Any, Callable

import cbor2
from hypothesis import strategies as st

from ping_core.errors import PingError

# CBOR values of Ping's subset (and a few outside it) for structural mutation.
cbor_leaves = st.one_of(
    st.integers(min_value=-(2**64), max_value=2**64 - 1),
    st.binary(max_size=80),
    st.text(max_size=20),
    st.booleans(),
    st.none(),
)
cbor_values = st.recursive(
    cbor_leaves,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)),
    max_leaves=12,
)


def check_decoder(decode: Callable[[bytes], Any], data: bytes) -> Any:
    """Run ``decode``; any exception other than a PingError fails the test."""
    try:
        return decode(data)
    except PingError:
        return None


@st.composite
def mutated(draw: st.DrawFn, valid: bytes) -> bytes:
    """A byte-level mutation of ``valid``: flip, truncate, insert, delete or append."""
    data = bytearray(valid)
    op = draw(st.sampled_from(["flip", "truncate", "insert", "delete", "append", "replace"]))
    if op == "flip" and data:
        i = draw(st.integers(0, len(data) - 1))
        data[i] ^= draw(st.integers(1, 255))
    elif op == "truncate":
        data = data[: draw(st.integers(0, max(0, len(data) - 1)))]
    elif op == "insert":
        i = draw(st.integers(0, len(data)))
        data[i:i] = draw(st.binary(min_size=1, max_size=8))
    elif op == "delete" and data:
        i = draw(st.integers(0, len(data) - 1))
        del data[i : i + draw(st.integers(1, 8))]
    elif op == "append":
        data += draw(st.binary(min_size=1, max_size=8))
    elif op == "replace" and data:
        i = draw(st.integers(0, len(data) - 1))
        data[i] = draw(st.integers(0, 255))
    return bytes(data)


@st.composite
def field_mutated(draw: st.DrawFn, valid: bytes) -> bytes:
    """Decode ``valid`` (a CBOR map), then replace, drop or add one field, and re-encode canonically."""
    value = cbor2.loads(valid)
    assert isinstance(value, dict)
    op = draw(st.sampled_from(["replace", "drop", "add"]))
    keys = sorted(value)
    if op == "replace":
        value[draw(st.sampled_from(keys))] = draw(cbor_values)
    elif op == "drop":
        del value[draw(st.sampled_from(keys))]
    else:
        value[draw(st.text(max_size=8))] = draw(cbor_values)
    return cbor2.dumps(value, canonical=True)
