"""ping_core.cbor's own decoder: what it refuses, before any expansion, in linear work.

No wall-clock assertions (timings are in benchmarks/cbor_bomb.py): work is
counted as the Python line events the decoder runs (``_Work``), which is
deterministic, and memory as ``tracemalloc``'s peak.
"""

from __future__ import annotations

import sys
import tracemalloc
from functools import partial
from types import FrameType
from typing import Any, Callable

import cbor2
import pytest
from hypothesis import given
from hypothesis import strategies as st

from ping_core import cbor as codec
from ping_core.cbor import MAX_DEPTH, dumps, loads
from ping_core.errors import InvalidInput, MlsDecodeError, MlsReason
from ping_core.mls.tls import Reader, decode_with

from .test_cbor import ping_values
from reasons import raises_reason

# --------------------------------------------------------------------------
# Helpers


def head(major: int, arg: int) -> bytes:
    """A minimal RFC 8949 §3 head."""
    if arg < 24:
        return bytes((major << 5 | arg,))
    for info, width in ((24, 1), (25, 2), (26, 4), (27, 8)):
        if arg < 1 << (8 * width):
            return bytes((major << 5 | info,)) + arg.to_bytes(width, "big")
    raise ValueError(arg)


def text(s: str) -> bytes:
    raw = s.encode()
    return head(3, len(raw)) + raw


def shared_value_bomb(width: int = 16, levels: int = 6, leaf: int = 1000) -> bytes:
    """A RegisterDevice-shaped body whose "info" expands to ``width ** levels`` copies of a ``leaf``-byte string.

    RFC 8746 shared values: tag 28 marks a value shareable, tag 29 (index)
    refers back to it. Level i is an array of ``width`` references to level
    i - 1; nesting stays within MAX_DEPTH so that a decode-then-walk checker
    walks the whole tree.
    """
    items = [head(6, 28) + head(2, leaf) + b"\x00" * leaf]
    for i in range(levels):
        items.append(head(6, 28) + head(4, width) + (head(6, 29) + head(0, i)) * width)
    info = head(4, len(items)) + b"".join(items)
    return head(5, 3) + text("v") + head(0, 1) + text("info") + info + text("binding") + head(5, 0)


class _OverBudget(BaseException):
    """Raised inside a traced call that ran more lines than its budget (not an Exception: nothing catches it)."""


class _Work:
    """Counts the Python line events of a call (a deterministic work counter); aborts beyond ``budget``."""

    def __init__(self, budget: int = 10**8) -> None:
        self.budget = budget
        self.lines = 0

    def _trace(self, frame: FrameType, event: str, arg: object) -> Any:
        if event == "line":
            self.lines += 1
            if self.lines > self.budget:
                raise _OverBudget(f"more than {self.budget} line events")
        return self._trace

    def run(self, fn: Callable[[], object]) -> object:
        saved = sys.gettrace()
        sys.settrace(self._trace)
        try:
            return fn()
        finally:
            sys.settrace(saved)


def work_of(data: bytes, budget: int = 10**8) -> int:
    counter = _Work(budget)
    try:
        counter.run(lambda: loads(data, max_size=len(data)))
    except InvalidInput:
        pass
    return counter.lines


def peak_memory(fn: Callable[[], object]) -> int:
    tracemalloc.start()
    try:
        try:
            fn()
        except InvalidInput:
            pass
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def same(a: object, b: object) -> bool:
    """Equality that also compares types (``True == 1`` in Python, not in CBOR)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, list):
        assert isinstance(b, list)
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    if isinstance(a, dict):
        assert isinstance(b, dict)
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    return a == b


def reference_loads(data: bytes, budget: int | None = 200_000) -> object:
    """The decoder Ping had before (cbor2, a type walk, re-encoding compared), with a work budget.

    Returns the value, or ``_REFUSED``. A bomb that exceeds the budget counts
    as refused (the old decoder never returned from it). ``budget=None``
    runs it untraced (benchmarks/cbor_bomb.py times it).
    """
    try:
        value = cbor2.loads(data)
    except Exception:
        return _REFUSED

    def walk(v: object, depth: int) -> None:
        t = type(v)
        if t in (bytes, str, bool) or v is None:
            return
        if t is int:
            if not -(1 << 64) <= v <= codec.MAX_UINT:  # type: ignore[operator]
                raise ValueError
            return
        if depth >= MAX_DEPTH:
            raise ValueError
        if t is list:
            for item in v:  # type: ignore[attr-defined]
                walk(item, depth + 1)
            return
        if t is dict:
            for k, item in v.items():  # type: ignore[attr-defined]
                if type(k) is not str:
                    raise ValueError
                walk(item, depth + 1)
            return
        raise ValueError

    try:
        if budget is None:
            walk(value, 0)
        else:
            _Work(budget).run(lambda: walk(value, 0))
    except (ValueError, RecursionError, _OverBudget):
        return _REFUSED
    return value if cbor2.dumps(value, canonical=True) == data else _REFUSED


_REFUSED = object()


# --------------------------------------------------------------------------
# The bomb


def test_bomb_really_expands_exponentially() -> None:
    # The test input is a bomb: cbor2 builds a small DAG from it (linear),
    # whose tree has width ** levels leaves and many GB of encoding.
    bomb = shared_value_bomb()
    assert 1000 <= len(bomb) <= 2048
    dag = cbor2.loads(bomb)["info"]
    sizes: dict[int, int] = {}

    def expanded(v: object) -> int:
        if id(v) not in sizes:
            sizes[id(v)] = sum(expanded(x) for x in v) if isinstance(v, list) else len(v)  # type: ignore[arg-type]
        return sizes[id(v)]

    assert expanded(dag) >= 16**6 * 1000  # > 16 GB expanded from 1.3 KB


def test_shared_value_bomb_refused_before_expansion() -> None:
    bomb = shared_value_bomb()
    work = _Work(budget=10_000)  # the old walk needed > 16 million calls
    with pytest.raises(InvalidInput, match=r"RegisterDevice: CBOR tag at byte \d+"):
        work.run(lambda: loads(bomb, max_size=4096, what="RegisterDevice"))
    assert work.lines < 50 * len(bomb)
    assert peak_memory(lambda: loads(bomb, max_size=4096)) < 1 << 20


@pytest.mark.parametrize("width,levels", [(2, 6), (16, 6), (64, 4), (4, 7)])
def test_bombs_of_every_shape_refused(width: int, levels: int) -> None:
    bomb = shared_value_bomb(width, levels, leaf=64)
    with pytest.raises(InvalidInput, match="tag"):
        loads(bomb)
    # A bare bomb (no record around it), and one whose first tag is deep inside.
    bare = head(4, 1) + bomb[bomb.index(text("info")) + 5 :]
    with pytest.raises(InvalidInput):
        loads(bare)
    assert peak_memory(lambda: loads(bomb)) < 1 << 20


def test_bomb_through_record_decoders() -> None:
    from ping_core.transport import wire

    with pytest.raises(InvalidInput, match="tag"):
        wire.decode_register(shared_value_bomb())


# --------------------------------------------------------------------------
# Each refused construct


TWO60 = "1000000000000000"


@pytest.mark.parametrize(
    "hex_input,match",
    [
        # Tags, RFC 8949 §3.4 (and RFC 8746 for 28/29): every one of them.
        ("c074323031332d30332d32315432303a30343a30305a", "tag"),  # date/time string
        ("c11a514b67b0", "tag"),  # epoch date
        ("c249010000000000000000", "tag"),  # bignum
        ("c349010000000000000000", "tag"),  # negative bignum
        ("d8184101", "tag"),  # embedded CBOR (24)
        ("d8184a" "9b" + TWO60 + "00", "tag"),  # embedded CBOR around a huge header
        ("d81c8101", "tag"),  # shareable (28)
        ("d81d00", "tag"),  # shared reference (29)
        ("d9d9f701", "tag"),  # self-describe
        ("a16176c101", "tag"),  # a tag as a map value
        ("8201d81d00", "tag"),  # a tag as an array item
        ("db" + TWO60 + "01", "tag"),  # a 64-bit tag number
        # Indefinite lengths (§3.2.2) and the break code.
        ("9f01ff", "indefinite"),
        ("bf616101ff", "indefinite"),
        ("5f4100ff", "indefinite"),
        ("7f6161ff", "indefinite"),
        ("ff", "float or simple"),
        # Reserved additional information (§3).
        ("1c", "reserved"),
        ("3d", "reserved"),
        ("5e", "reserved"),
        ("9c", "reserved"),
        # Floats, undefined and simple values (§3.3).
        ("f93c00", "float or simple"),
        ("fa3f800000", "float or simple"),
        ("fb3ff0000000000000", "float or simple"),
        ("f7", "float or simple"),
        ("e0", "float or simple"),
        ("f820", "float or simple"),
        ("f0", "float or simple"),
        # Non-minimal heads (§4.2.1), integers and lengths.
        ("1817", "non-minimal"),
        ("1900ff", "non-minimal"),
        ("1a0000ffff", "non-minimal"),
        ("1b00000000ffffffff", "non-minimal"),
        ("3800", "non-minimal"),
        ("580100", "non-minimal"),
        ("780161", "non-minimal"),
        ("980101", "non-minimal"),
        ("b801616101", "non-minimal"),
        # Map keys: text only, length-first order (§4.2.3), no duplicates (§5.6).
        ("a2626161016176" "02", "out of canonical order"),  # "aa" before "v"
        ("a2616201616102", "out of canonical order"),  # same length, "b" before "a"
        ("a2616101616101", "duplicated"),
        ("a3616101616202616103", "duplicated|out of canonical order"),
        ("a10101", "not a text string"),
        ("a1410101", "not a text string"),
        ("a1800101", "not a text string"),
        ("a1f601", "not a text string"),
        ("a1c16161", "not a text string"),
        # Text must be valid UTF-8 (§3.1), in values and keys.
        ("62fffe", "UTF-8"),
        ("63eda080", "UTF-8"),  # an encoded surrogate
        ("62c080", "UTF-8"),  # overlong
        ("a162fffe01", "UTF-8"),
        # Trailing bytes and truncation.
        ("0102", "trailing"),
        ("a000", "trailing"),
        ("1901", "truncated"),
        ("1b00", "truncated"),
        ("6261", "longer than the input"),
        ("82011901", "truncated"),
        ("a16176", "truncated"),
        ("", "empty"),
        # Declared counts and lengths beyond the input.
        ("9b" + TWO60 + "0101", "exceeds the remaining input"),
        ("bb" + TWO60 + "0101", "exceeds the remaining input"),
        ("5b" + TWO60 + "0101", "longer than the input"),
        ("7b" + TWO60 + "0101", "longer than the input"),
        ("a2616101", "exceeds the remaining input"),  # 2 entries need >= 4 more bytes
        ("83010203", "ok"),
        # Nesting beyond MAX_DEPTH (8), arrays and maps, empty or not.
        ("81" * 9 + "01", "deeper than 8"),
        ("81" * 8 + "80", "deeper than 8"),
        ("a16161" * 8 + "a0", "deeper than 8"),
        ("81" * 8 + "01", "ok"),
    ],
)
def test_each_refused_construct(hex_input: str, match: str) -> None:
    data = bytes.fromhex(hex_input)
    if match == "ok":
        assert same(loads(data), cbor2.loads(data))
        return
    with pytest.raises(InvalidInput, match=f"^Thing: .*({match})"):
        loads(data, what="Thing")


def test_huge_count_allocates_nothing() -> None:
    # 2^60 items announced by 9 bytes: refused at the header, with no list of
    # that size (nor any sized by the count) ever allocated.
    for major in (2, 3, 4, 5):
        data = head(major, 1 << 60) + b"\x00" * 64
        work = _Work(budget=1000)
        with pytest.raises(InvalidInput):
            work.run(partial(loads, data))
        assert peak_memory(partial(loads, data)) < 64 * 1024


@pytest.mark.parametrize(
    "data",
    [
        b"\x81" * 100_000,
        b"\x81" * 100_000 + b"\x01",
        bytes.fromhex("a16161") * 100_000 + b"\x01",
        b"\x9f" * 100_000,
        b"\xd8\x1c" * 100_000 + b"\x01",
    ],
    ids=["arrays", "arrays+leaf", "maps", "indefinite", "tags"],
)
def test_deep_nesting_is_invalid_input_without_recursion(data: bytes) -> None:
    limit = sys.getrecursionlimit()
    depth, frame = 0, sys._getframe()
    while frame.f_back is not None:
        depth, frame = depth + 1, frame.f_back
    # A recursive decoder would hit this limit; the strict one keeps its own stack.
    sys.setrecursionlimit(depth + 100)
    try:
        with pytest.raises(InvalidInput):
            loads(data)
    finally:
        sys.setrecursionlimit(limit)
    assert work_of(data) < 1000  # refused at depth 9, not after reading 100k heads


def test_memory_error_becomes_invalid_input(monkeypatch: pytest.MonkeyPatch) -> None:
    # Only a very large max_size on a small heap can get here; the caller still only sees InvalidInput.
    def exhausted(data: bytes) -> object:
        raise MemoryError

    monkeypatch.setattr(codec, "_decode", exhausted)
    with pytest.raises(InvalidInput, match="Snapshot: .*available memory"):
        loads(b"\x80", what="Snapshot")


# --------------------------------------------------------------------------
# Valid records


VALID: list[codec.CborValue] = [
    0,
    23,
    24,
    255,
    256,
    65535,
    65536,
    2**32 - 1,
    2**32,
    2**64 - 1,
    -1,
    -24,
    -25,
    -(2**64),
    b"",
    b"\x00" * 23,
    b"\x00" * 24,
    b"\xff" * 300,
    "",
    "hé ✓ 𝄞",
    "x" * 70000,
    [],
    {},
    True,
    False,
    None,
    [1, [2, [3, [4, [5, [6, [7, []]]]]]]],
    {"v": 1, "aa": 2, "b": 3, "ab": 4, "é": 5, "zzz": {"": None}},
    {"v": 1, "info": {"v": 1, "label": "phone", "key": b"\x01" * 32}, "binding": {"v": 1, "sig": b"\x02" * 64}},
    {chr(i): i for i in range(40, 200)},
]


@pytest.mark.parametrize("value", VALID, ids=[str(i) for i in range(len(VALID))])
def test_valid_records_round_trip(value: codec.CborValue) -> None:
    data = dumps(value)
    out = loads(data)
    assert same(out, value) and same(out, cbor2.loads(data))
    assert dumps(out) == data
    if isinstance(out, dict):
        assert list(out) == list(cbor2.loads(data))  # keys in encoded order, as before


def test_real_records_decode_as_before() -> None:
    from ping_core.device import LocalDevice
    from ping_core.identity import Identity

    ident = Identity.from_seed(b"\x01" * 32)
    dev = LocalDevice.from_signing_secret(ident.user_id, "phone", 1, b"\x02" * 32)
    for data in (ident.export(), dev.info(5).encode(), ident.device_binding(dev.device_id).encode(), dev.encode()):
        assert same(loads(data), cbor2.loads(data))


# --------------------------------------------------------------------------
# Hypothesis

@given(value=ping_values)
def test_subset_round_trips_and_matches_cbor2(value: codec.CborValue) -> None:
    data = dumps(value)
    try:
        out = loads(data)
    except InvalidInput as exc:
        # Hypothesis may nest beyond MAX_DEPTH, which the old decoder refused too.
        assert "deeper than" in str(exc) and reference_loads(data) is _REFUSED
        return
    assert same(out, value)
    assert same(out, cbor2.loads(data))
    assert same(out, reference_loads(data))


def _arg_bytes(draw: st.DrawFn, info: int) -> bytes:
    if 24 <= info <= 27:
        return draw(st.binary(min_size=1 << (info - 24), max_size=1 << (info - 24)))
    return b""


@st.composite
def cbor_ish(draw: st.DrawFn, depth: int = 0) -> bytes:
    """Bytes built from CBOR heads, near-valid: tags (incl. 6, 24, 28, 29), indefinite lengths, nesting, wrong counts."""
    kind = draw(st.sampled_from(["head", "int", "string", "array", "map", "tag", "shared", "indefinite", "simple", "deep"]))
    if kind == "head" or depth > 12:
        major, info = draw(st.integers(0, 7)), draw(st.integers(0, 31))
        return bytes((major << 5 | info,)) + _arg_bytes(draw, info)
    if kind == "int":
        return head(draw(st.integers(0, 1)), draw(st.integers(0, 2**64 - 1)))
    if kind == "string":
        body = draw(st.binary(max_size=20)) if draw(st.booleans()) else draw(st.text(max_size=8)).encode()
        n = len(body) + draw(st.sampled_from([0, 0, 0, -1, 1, 2**40]))
        return head(draw(st.sampled_from([2, 3])), max(n, 0)) + body
    if kind in ("array", "map"):
        count = draw(st.integers(0, 4))
        parts = [draw(cbor_ish(depth + 1)) for _ in range(count * (2 if kind == "map" else 1))]
        if kind == "map" and draw(st.booleans()):  # well-formed text keys, maybe out of order
            parts[::2] = [text(draw(st.text(max_size=3))) for _ in range(count)]
        declared = count + draw(st.sampled_from([0, 0, 0, -1, 1, 2**60]))
        return head(4 if kind == "array" else 5, max(declared, 0)) + b"".join(parts)
    if kind == "tag":
        return head(6, draw(st.sampled_from([0, 1, 2, 3, 6, 24, 28, 29, 55799, 2**40]))) + draw(cbor_ish(depth + 1))
    if kind == "shared":
        return head(6, 29) + head(0, draw(st.integers(0, 30)))
    if kind == "indefinite":
        items = b"".join(draw(st.lists(cbor_ish(depth + 1), max_size=3)))
        return bytes((draw(st.sampled_from([0x5F, 0x7F, 0x9F, 0xBF])),)) + items + b"\xff"
    if kind == "simple":
        return draw(st.sampled_from([b"\xf4", b"\xf5", b"\xf6", b"\xf7", b"\xf8\x20", b"\xf9\x3c\x00", b"\xe0", b"\xff"]))
    n = draw(st.integers(1, 40))
    return draw(st.sampled_from([b"\x81", b"\x9f", b"\xd8\x1c", b"\xa1\x61\x61"])) * n + draw(cbor_ish(depth + 1))


def _check_only_invalid_input_and_agrees(data: bytes) -> None:
    try:
        out = loads(data)
    except InvalidInput:
        assert reference_loads(data) is _REFUSED  # nothing the old decoder accepted is refused now
        return
    # Accepted: exactly what cbor2 decodes, and exactly its canonical encoding.
    assert same(out, reference_loads(data))
    assert dumps(out) == data


@given(data=st.binary(max_size=300))
def test_arbitrary_bytes_only_invalid_input(data: bytes) -> None:
    _check_only_invalid_input_and_agrees(data)


@given(data=cbor_ish())
def test_cbor_heads_only_invalid_input(data: bytes) -> None:
    _check_only_invalid_input_and_agrees(data)


@given(prefix=ping_values, junk=cbor_ish())
def test_valid_prefix_then_heads_only_invalid_input(prefix: codec.CborValue, junk: bytes) -> None:
    # A record with hostile bytes spliced into its middle or after its end.
    data = dumps(prefix)
    cut = len(data) // 2
    _check_only_invalid_input_and_agrees(data[:cut] + junk + data[cut:])
    _check_only_invalid_input_and_agrees(data + junk)


# --------------------------------------------------------------------------
# Linear work and memory: inputs of size n and 8n


def _flat_ints(k: int) -> bytes:
    return dumps(list(range(1000, 1000 + k)))


def _long_map(k: int) -> bytes:
    return dumps({f"k{i:08d}": i for i in range(k)})


def _deep_items(k: int) -> bytes:
    item: codec.CborValue = 1
    for _ in range(MAX_DEPTH - 1):
        item = [item]
    return dumps([item] * k)


def _big_bytes(k: int) -> bytes:
    return dumps({"v": 1, "p": b"\x00" * (1000 * k)})


def _many_strings(k: int) -> bytes:
    return dumps([["é" * (i % 30), b"\x01" * (i % 30)] for i in range(k)])


def _empty_containers(k: int) -> bytes:
    return dumps([[], {}] * k)


SHAPES = [_flat_ints, _long_map, _deep_items, _big_bytes, _many_strings, _empty_containers]


@pytest.mark.parametrize("shape", SHAPES, ids=[f.__name__ for f in SHAPES])
def test_work_is_linear(shape: Callable[[int], bytes]) -> None:
    small, large = shape(500), shape(4000)
    assert 7 * len(small) <= len(large) <= 9 * len(small)
    w_small, w_large = work_of(small), work_of(large)
    # Linear: 8x the input costs at most ~8x the work (a quadratic step would be ~64x) ...
    assert w_large <= 8.5 * w_small * len(large) / (8 * len(small))
    # ... and the work is bounded by the input length itself.
    assert w_large <= 30 * len(large)


@pytest.mark.parametrize("shape", SHAPES, ids=[f.__name__ for f in SHAPES])
def test_memory_is_linear(shape: Callable[[int], bytes]) -> None:
    for data in (shape(500), shape(4000)):
        # At most a few small Python objects per input byte (an empty list or
        # dict is the worst: ~64 bytes for one input byte).
        assert peak_memory(partial(loads, data)) <= 100 * len(data) + 64 * 1024


def test_items_created_bounded_by_input_length() -> None:
    # Every item takes at least one byte, so no input yields more items than it has bytes.
    def count(v: object) -> int:
        if isinstance(v, list):
            return 1 + sum(count(x) for x in v)
        if isinstance(v, dict):
            return 1 + sum(1 + count(x) for x in v.values())
        return 1

    for shape in SHAPES:
        data = shape(1000)
        assert count(loads(data)) <= len(data)


# --------------------------------------------------------------------------
# The MLS TLS Reader (RFC 9420 §2.1.2): vector lengths are bounded by the bytes left.


@pytest.mark.parametrize(
    "read",
    [
        lambda r: r.opaque(),
        lambda r: r.vector(lambda r2: r2.opaque()),
        lambda r: r.opaques(),
        lambda r: r.uint16s(),
        lambda r: r.uint32s(),
        lambda r: r.u32_map(),
    ],
)
def test_mls_reader_refuses_lengths_beyond_input(read: Callable[[Reader], object]) -> None:
    hostile = bytes.fromhex("bfffffff") + b"\x00" * 16  # a 1 GiB - 1 vector in 20 bytes
    with raises_reason(MlsReason.MALFORMED, MlsDecodeError):
        decode_with(read, hostile, max_vector=1 << 40)
    assert peak_memory(lambda: _mls_quiet(read, hostile)) < 64 * 1024


def _mls_quiet(read: Callable[[Reader], object], data: bytes) -> None:
    try:
        decode_with(read, data, max_vector=1 << 40)
    except MlsDecodeError:
        pass


@pytest.mark.parametrize("data", [b"[" * 100_000, b'{"a":' * 50_000, b"\xff\xfe", b"[1,", b"x" * 10])
def test_json_from_elsewhere_only_invalid_input(data: bytes) -> None:
    with pytest.raises(InvalidInput):
        codec.loads_json(data, max_size=1 << 20, what="body")


def test_json_size_bound_checked_first() -> None:
    with pytest.raises(InvalidInput, match="exceeds the limit"):
        codec.loads_json(b"[" + b"1," * 1000 + b"1]", max_size=100, what="body")
    assert codec.loads_json(b'{"code": "x"}', max_size=100, what="body") == {"code": "x"}
