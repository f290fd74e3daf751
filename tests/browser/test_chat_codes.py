"""The pure-Python parts of the browser SDK, on CPython: stored messages.

(The browser tests drive the same code inside Pyodide against the ``ping``
command line; these pin the formats and the strictness of the decoders. The
linking codes the browser shares with the command line are ping_core.link's:
tests/sdk/test_link_codes.py.)
"""

from __future__ import annotations

import pytest

from ping_core.clock import Hlc
from ping_core.errors import InvalidInput
from ping_core.ids import ConversationId, DeviceId, UserId
from ping_core.message import IncomingMessage
from pyodide_app import inbox


def test_stored_messages_sort_by_log_position_and_round_trip() -> None:
    conv = ConversationId.new(1)
    user, device = UserId(bytes(32)), DeviceId(b"\x01" * 32)
    records = []
    for seq in (2, 10, 255, 4096):
        msg = IncomingMessage(
            conv, user, device, f"m{seq} \u00e9\xff".encode("utf-8", "surrogatepass"), Hlc(1000 + seq, 0), seq, 1
        )
        records.append(inbox.incoming_record(msg))
    keys = [k for k, _ in records]
    assert keys == sorted(keys)  # IndexedDB key order is log order
    decoded = inbox.message_view(*records[1])
    assert decoded == {"conv": conv.as_hex(), "seq": 10, "user": user.as_hex(), "device": device.as_hex(),
                       "bytes": "m10 \u00e9\xff".encode(), "text": "m10 \u00e9\xff", "time": 1010, "epoch": 1}  # fmt: skip
    # Bytes that are not UTF-8 are kept exactly (0 bytes too); their text is None, never an error.
    key, value = inbox.record_of(conv, 1, user, device, b"\xff\xfe\x00 ok", 5, 0)
    assert inbox.message_view(key, value)["bytes"] == b"\xff\xfe\x00 ok"
    assert inbox.message_view(key, value)["text"] is None
    # A record from before binary payloads (no "hex") reads as its text's UTF-8 bytes.
    old = inbox.encode_message({"seq": 2, "user": user.as_hex(), "device": device.as_hex(), "text": "old", "time": 1, "epoch": 0})
    assert inbox.message_view(inbox.message_key(conv.as_hex(), 2), old)["bytes"] == b"old"


def test_stored_message_decoder_is_strict() -> None:
    conv = ConversationId.new(1).as_hex()
    with pytest.raises(InvalidInput):
        inbox.message_key(conv, 0)  # a stored message always has its server seq
    for key, raw in (
        ("x/1/2", b"{}"),
        (f"m/{conv}/01", b"not json"),
        (f"m/{conv}/01", b"[]"),
        (f"m/{conv}/01", b'{"seq": 1}'),
        (f"m/{conv}/01", b"\xff"),
    ):
        with pytest.raises(InvalidInput):
            inbox.decode_message(key, raw)


def test_history_event_round_trip_and_size_bound() -> None:
    conv = ConversationId.new(1)
    user, device = UserId(bytes(32)), DeviceId(b"\x01" * 32)
    stored = [inbox.record_of(conv, seq, user, device, b"x" * 1000, seq, 0) for seq in range(1, 301)]
    event = inbox.history_event(stored, max_size=50_000)
    assert event is not None and len(event) <= 50_000
    records = inbox.records_from_history_event(conv.as_hex(), event)
    assert 10 < len(records) < 300
    newest = dict(stored)
    assert all(newest[k] == v for k, v in records.items())  # the newest ones, unchanged
    assert max(records) == stored[-1][0]
    assert inbox.history_event([]) is None
    for bad in (
        b"",
        b"[]",
        b'{"v": 2, "messages": []}',
        b'{"v": 1, "messages": [{"seq": 0}]}',
        b'{"v": 1, "messages": [{"seq": 1}]}',
    ):
        with pytest.raises(InvalidInput):
            inbox.records_from_history_event(conv.as_hex(), bad)
