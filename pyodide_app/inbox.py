"""The messages the page shows, as records of the account database's ``app`` store.

Whoever decrypts a message (a tab's worker or the service worker on a cold
start) stores it here, in the same transaction as the MLS state that consumed
it (:meth:`pyodide_app.accountdb.StateBlobStore.flush`); a sent message is
stored once the server accepted it. The page reads them back through the
worker (RPC ``messages``), also after a reload or a browser restart: the
MLS layer cannot decrypt a message twice, so this is the only history.

Key ``m/<conversation id hex>/<seq as 16 hex digits>``: the server's log
position, so keys sort in the conversation's order and a message stored twice
(two contexts, a retried write) is the same record. Value: UTF-8 JSON
``{"seq", "user", "device", "hex", "text", "time", "epoch"}`` (user and device
ids in hex, ``hex`` the exact payload bytes in hex, ``text`` the payload when it
is valid UTF-8 else null, ``time`` the sender's clock in ms). Records written
before payloads were binary have no ``hex`` and a lossily decoded ``text``:
they are read as the UTF-8 bytes of that text (the original bytes were never
stored), so no rewrite is needed. Pure Python: tested on CPython.

Key ``u/<conversation id hex>/<seq>`` (empty value): a message not yet
acknowledged by the page, in the explicit acknowledgement mode
(``message.ack``); written in the same transaction as the message.
"""

from __future__ import annotations

import json
from typing import Any

from ping_core.cbor import loads_json
from ping_core.errors import InvalidInput
from ping_core.ids import ConversationId, DeviceId, UserId
from ping_core.message import MAX_PAYLOAD_LEN, IncomingMessage

__all__ = [
    "MESSAGE_PREFIX",
    "UNACKED_PREFIX",
    "unacked_key",
    "message_of_unacked",
    "message_view",
    "message_key",
    "conversation_prefix",
    "text_of",
    "record_of",
    "incoming_record",
    "encode_message",
    "decode_message",
    "history_event",
    "records_from_history_event",
    "MAX_HISTORY_EVENT",
]

MESSAGE_PREFIX = "m/"
UNACKED_PREFIX = "u/"
_MAX_SEQ = (1 << 64) - 1
#: The largest "what you missed" bundle put into a linking ticket per conversation.
MAX_HISTORY_EVENT = 256 * 1024
_HISTORY_VERSION = 1
# A stored message is its payload in hex plus, when it is UTF-8, as JSON text
# (an escape takes at most six characters per byte), plus a few short fields.
MAX_STORED_MESSAGE = 8 * MAX_PAYLOAD_LEN + 4096


def conversation_prefix(conv_hex: str) -> str:
    """The key prefix of one conversation's messages."""
    ConversationId.from_hex(conv_hex)  # validates
    return f"{MESSAGE_PREFIX}{conv_hex}/"


def message_key(conv_hex: str, seq: int) -> str:
    if type(seq) is not int or not 0 < seq <= _MAX_SEQ:
        raise InvalidInput("a stored message needs its server seq (1..2^64-1)")
    return f"{conversation_prefix(conv_hex)}{seq:016x}"


def unacked_key(conv_hex: str, seq: int) -> str:
    """The marker of a message the page has not acknowledged yet."""
    return UNACKED_PREFIX + message_key(conv_hex, seq)[len(MESSAGE_PREFIX) :]


def message_of_unacked(key: str) -> str:
    """The message key an :func:`unacked_key` marks."""
    if not key.startswith(UNACKED_PREFIX):
        raise InvalidInput(f"not an acknowledgement marker: {key!r}")
    return MESSAGE_PREFIX + key[len(UNACKED_PREFIX) :]


def text_of(plaintext: bytes) -> str | None:
    """The payload as text when it is valid UTF-8, else None (binary)."""
    try:
        return plaintext.decode("utf-8")
    except UnicodeDecodeError:
        return None


def record_of(
    conversation_id: ConversationId,
    seq: int,
    user: UserId,
    device: DeviceId,
    plaintext: bytes,
    time_ms: int,
    epoch: int,
) -> tuple[str, bytes]:
    """(key, value) of one message."""
    conv_hex = conversation_id.as_hex()
    value = {
        "seq": seq,
        "user": user.as_hex(),
        "device": device.as_hex(),
        "hex": plaintext.hex(),
        "text": text_of(plaintext),
        "time": time_ms,
        "epoch": epoch,
    }
    return message_key(conv_hex, seq), encode_message(value)


def incoming_record(msg: IncomingMessage) -> tuple[str, bytes]:
    """(key, value) of a decrypted message."""
    return record_of(
        msg.conversation_id, msg.seq, msg.sender_user_id, msg.sender_device, msg.plaintext, msg.hlc.wall_ms, msg.epoch
    )


def encode_message(value: dict[str, Any]) -> bytes:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), sort_keys=True).encode("utf-8")


def message_view(key: str, raw: bytes) -> dict[str, Any]:
    """The page's view of a stored message: ``{conv, seq, user, device, bytes, text, time, epoch}``
    (``bytes`` the exact payload, ``text`` it as text when it is UTF-8, else None); InvalidInput if malformed."""
    value = decode_message(key, raw)
    payload = _payload(key, value)
    value.pop("hex", None)
    value["bytes"] = payload
    value["text"] = text_of(payload)
    return value


def _payload(key: str, value: dict[str, Any]) -> bytes:
    if "hex" not in value:  # a record from before binary payloads: its text is all there is
        return str(value["text"]).encode("utf-8")
    try:
        return bytes.fromhex(value["hex"])
    except (TypeError, ValueError):
        raise InvalidInput(f"stored message {key!r} has a malformed payload") from None


def decode_message(key: str, raw: bytes) -> dict[str, Any]:
    """A stored message's JSON fields plus ``conv`` (no ``bytes``: see :func:`message_view`);
    InvalidInput if malformed."""
    parts = key.split("/")
    if len(parts) != 3 or parts[0] + "/" != MESSAGE_PREFIX:
        raise InvalidInput(f"not a message key: {key!r}")
    value = loads_json(raw, max_size=MAX_STORED_MESSAGE, what=f"stored message {key!r}")
    if not isinstance(value, dict):
        raise InvalidInput(f"stored message {key!r} is not an object")
    for name, kind in (("seq", int), ("user", str), ("device", str), ("time", int), ("epoch", int)):
        if not isinstance(value.get(name), kind):
            raise InvalidInput(f"stored message {key!r} lacks {name}")
    if not isinstance(value.get("hex"), str) and not isinstance(value.get("text"), str):
        raise InvalidInput(f"stored message {key!r} lacks its payload")
    if value.get("text") is not None and not isinstance(value["text"], str):
        raise InvalidInput(f"stored message {key!r} has a malformed text")
    value["conv"] = parts[1]
    return value


# -- history for a newly linked device ---------------------------------------------------
#
# A new device cannot decrypt what was sent before it was linked (MLS forward
# secrecy; the catch-up snapshot only reads from the linking device's cursor
# on). The linking device therefore puts its latest stored messages into the
# ticket's catch-up snapshot as one app event per conversation (the spec's
# ``last_app_events``): UTF-8 JSON ``{"v": 1, "messages": [message, ...]}``
# where each message is a stored value (see above). The ticket is sealed to the
# new device, so the history travels end-to-end encrypted like everything else.


def history_event(stored: list[tuple[str, bytes]], max_size: int = MAX_HISTORY_EVENT) -> bytes | None:
    """One conversation's newest stored messages (``(key, value)`` in key order) as an app event.

    Oldest messages are left out until it fits ``max_size``; None when nothing fits.
    """
    items: list[dict[str, Any]] = []
    for key, raw in stored:
        try:
            value = decode_message(key, raw)
        except InvalidInput:
            continue
        del value["conv"]
        items.append(value)
    while items:
        data = json.dumps(
            {"v": _HISTORY_VERSION, "messages": items}, ensure_ascii=False, separators=(",", ":"), sort_keys=True
        ).encode()
        if len(data) <= max_size:
            return data
        items = items[max(1, len(items) // 8) :]
    return None


def records_from_history_event(conv_hex: str, raw: bytes) -> dict[str, bytes]:
    """The stored-message records in a :func:`history_event`; InvalidInput when it is not one."""
    if len(raw) > MAX_HISTORY_EVENT:
        raise InvalidInput("history event too large")
    value = loads_json(raw, max_size=MAX_HISTORY_EVENT, what="history event")
    if not isinstance(value, dict) or value.get("v") != _HISTORY_VERSION or not isinstance(value.get("messages"), list):
        raise InvalidInput("not a history event")
    out: dict[str, bytes] = {}
    for item in value["messages"]:
        if not isinstance(item, dict) or type(item.get("seq")) is not int:
            raise InvalidInput("malformed message in a history event")
        key = message_key(conv_hex, item["seq"])
        fields = {k: item.get(k) for k in ("seq", "user", "device", "hex", "text", "time", "epoch") if k in item}
        encoded = encode_message(fields)
        decode_message(key, encoded)  # the same checks as any stored message
        out[key] = encoded
    return out
