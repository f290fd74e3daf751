"""Properties of every struct decoder (hypothesis).

For each decoder in ``strategies.DECODERS``:

* decode(encode(x)) == x and re-encodes to the same bytes, for generated x;
* random bytes either fail with ``MlsDecodeError`` (nothing else) or decode
  to a value that re-encodes to exactly those bytes (the encoding is
  canonical: strict decoders accept one encoding per value);
* the same for mutated valid encodings (a byte changed, inserted, deleted,
  the input truncated or extended), which reach far deeper into the decoders
  than random bytes do.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ping_core.errors import MlsDecodeError
from strategies import DECODERS

NAMES = sorted(DECODERS)


def check_decode_or_refuse(name: str, data: bytes) -> None:
    _, enc, dec = DECODERS[name]
    try:
        value = dec(data)
    except MlsDecodeError:
        return
    # Anything else escaping fails the test with its own traceback.
    assert enc(value) == data, f"{name}: accepted a non-canonical encoding"


@pytest.mark.parametrize("name", NAMES)
@given(data=st.data())
def test_roundtrip(name: str, data: st.DataObject) -> None:
    values, enc, dec = DECODERS[name]
    value = data.draw(values)
    encoded = enc(value)
    back = dec(encoded)
    assert back == value
    assert enc(back) == encoded


@pytest.mark.parametrize("name", NAMES)
@given(raw=st.binary(max_size=300))
def test_random_bytes_only_decode_error(name: str, raw: bytes) -> None:
    check_decode_or_refuse(name, raw)


@st.composite
def mutations(draw: st.DrawFn, encoded: bytes) -> bytes:
    buf = bytearray(encoded)
    for _ in range(draw(st.integers(1, 3))):
        kind = draw(st.sampled_from(["flip", "set", "insert", "delete", "truncate", "extend"]))
        pos = draw(st.integers(0, max(len(buf) - 1, 0)))
        if kind == "flip" and buf:
            buf[pos] ^= 1 << draw(st.integers(0, 7))
        elif kind == "set" and buf:
            buf[pos] = draw(st.sampled_from([0x00, 0x01, 0x02, 0x3F, 0x40, 0x7F, 0x80, 0xBF, 0xC0, 0xFF]))
        elif kind == "insert":
            buf.insert(pos, draw(st.integers(0, 255)))
        elif kind == "delete" and buf:
            del buf[pos]
        elif kind == "truncate":
            del buf[pos:]
        elif kind == "extend":
            buf += draw(st.binary(min_size=1, max_size=8))
    return bytes(buf)


@pytest.mark.parametrize("name", NAMES)
@given(data=st.data())
def test_mutated_encodings_only_decode_error(name: str, data: st.DataObject) -> None:
    values, enc, _ = DECODERS[name]
    value: Any = data.draw(values)
    mutated = data.draw(mutations(enc(value)))
    check_decode_or_refuse(name, mutated)
