"""The delivery service's HTTP API on the wire: request signing, routes, CBOR bodies. Pure.

Both ends use this module: ``ping_server`` verifies with it, the transports
(:class:`ping_core.transport.http.HttpTransport` on httpx, the browser's
``pyodide_app.transport`` on ``fetch``) sign and decode with it. It does no
I/O, so it runs unchanged in Pyodide. The full API is in ``docs/server.md``.

Request authentication
======================

Every request carries four headers::

    Ping-Device:    lowercase hex DeviceId (64 chars)
    Ping-Timestamp: the client's Unix time in milliseconds (decimal)
    Ping-Nonce:     16 random bytes, lowercase hex (32 chars)
    Ping-Signature: Ed25519 signature by the device key, lowercase hex (128 chars)

The signature covers (:func:`signing_message`)::

    b"ping request v1" \\n METHOD \\n TARGET \\n DEVICE_HEX \\n TIMESTAMP \\n NONCE_HEX \\n SHA256_HEX(body)

where ``TARGET`` is the request target exactly as sent (path and query, e.g.
``/v1/conversations/<hex>/messages?after=3&limit=256``). Every field is
restricted to characters that exclude ``\\n`` (checked on both ends), so the
message is unambiguous. The server refuses (401 ``unauthorized``) a missing
or malformed header, a bad signature, a timestamp more than
:data:`MAX_CLOCK_SKEW_MS` away from its clock (answering with its own time in
``Ping-Server-Time`` so a client with a wrong clock can correct itself) and a
(device, nonce) pair it has seen before.

Bodies are canonical CBOR (``application/cbor``, see ``docs/formats.md``);
every record is a map with ``"v": 1``. Errors are JSON ``{"code", "message"}``.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from ping_core.cbor import CborValue, as_bool, as_bytes, as_list, as_map, as_uint, dumps, loads, loads_json
from ping_core.device import DeviceInfo
from ping_core.errors import CryptoError, InvalidInput, InvalidSignature, TransportError, MlsReason
from ping_core.identity import DeviceBinding, DeviceRevocation
from ping_core.ids import ConversationId, DeviceId, UserId
from ping_core.message import ENVELOPE_VERSION, MAX_ENVELOPE_SIZE, MessageEnvelope
from ping_core.mls.crypto import CryptoProvider, default_provider
from ping_core.sync import SyncCursor

from .handshake import MAX_GROUP_INFO_LEN
from .base import (
    MAX_CLAIM_COUNT,
    MAX_DEVICE_LIST,
    MAX_KEY_PACKAGE_LEN,
    MAX_KEY_PACKAGES_PER_PUBLISH,
    MAX_REVOCATION_LIST,
    MAX_WATCH_CONVERSATIONS,
    KeyPackageCount,
    WatchResult,
)

__all__ = [
    "API_PREFIX",
    "CBOR_MEDIA_TYPE",
    "SIGNATURE_LABEL",
    "HEADER_DEVICE",
    "HEADER_TIMESTAMP",
    "HEADER_NONCE",
    "HEADER_SIGNATURE",
    "HEADER_SERVER_TIME",
    "MAX_CLOCK_SKEW_MS",
    "NONCE_LEN",
    "MAX_PAGE_BYTES",
    "MAX_RESPONSE_BYTES",
    "MAX_WELCOME_PAGE",
    "MAX_PUBLISH_BODY",
    "MAX_POST_BODY",
    "MAX_MESSAGE_POST_BODY",
    "MAX_GROUP_INFO_LEN",
    "WireRequest",
    "RequestSigner",
    "AuthHeaders",
    "signing_message",
    "parse_auth_headers",
    "verify_request",
    "error_from_response",
    "Page",
    "encode_page",
    "decode_page",
    # request builders and response parsers, one pair per Transport method
    "register_request",
    "decode_register",
    "list_devices_request",
    "encode_device_list",
    "decode_device_list",
    "revoke_request",
    "decode_revoke",
    "MAX_REVOKE_BODY",
    "list_revocations_request",
    "encode_revocation_list",
    "decode_revocation_list",
    "publish_request",
    "decode_publish",
    "claim_request",
    "encode_claim",
    "decode_claim",
    "key_package_count_request",
    "encode_key_package_count",
    "decode_key_package_count",
    "claim_device_request",
    "encode_claim_device",
    "decode_claim_device",
    "post_message_request",
    "decode_post_message",
    "group_info_request",
    "encode_group_info",
    "decode_group_info",
    "PostedMessage",
    "encode_seq",
    "decode_seq",
    "post_welcome_request",
    "decode_post_welcome",
    "fetch_request",
    "fetch_welcomes_request",
    "ack_welcomes_request",
    "decode_ack",
    "leave_request",
    "restamp_seq",
    "MAX_WATCH_BODY",
    "watch_request",
    "decode_watch",
    "encode_watch_result",
    "decode_watch_result",
]

API_PREFIX = "/v1"
CBOR_MEDIA_TYPE = "application/cbor"
SIGNATURE_LABEL = b"ping request v1"
HEADER_DEVICE = "ping-device"
HEADER_TIMESTAMP = "ping-timestamp"
HEADER_NONCE = "ping-nonce"
HEADER_SIGNATURE = "ping-signature"
HEADER_SERVER_TIME = "ping-server-time"
# How far a request's timestamp may be from the server's clock (either way).
MAX_CLOCK_SKEW_MS = 5 * 60 * 1000
NONCE_LEN = 16
# The server cuts an envelope page at this many bytes (but always returns at
# least one envelope) and says so with "more": true.
MAX_PAGE_BYTES = 8 * 1024 * 1024
# Largest response body a client accepts: a full page plus one maximal envelope.
MAX_RESPONSE_BYTES = MAX_PAGE_BYTES + MAX_ENVELOPE_SIZE + 64 * 1024
# Welcomes per inbox page.
MAX_WELCOME_PAGE = 100
_MAX_SEQ = (1 << 63) - 1
_VERSION = 1

_METHOD_RE = re.compile(r"[A-Z]{1,16}")
# Request targets the API uses: an absolute path and an optional query of visible ASCII.
_TARGET_RE = re.compile(r"/[\x21-\x7e]{0,2047}")
_HEX64_RE = re.compile(r"[0-9a-f]{64}")
_HEX_NONCE_RE = re.compile(r"[0-9a-f]{32}")
_HEX_SIG_RE = re.compile(r"[0-9a-f]{128}")
_TIMESTAMP_RE = re.compile(r"0|[1-9][0-9]{0,15}")


# --------------------------------------------------------------------------
# Signing


def signing_message(method: str, target: str, device_id: DeviceId, timestamp_ms: int, nonce: bytes, body_sha256: bytes) -> bytes:
    """The exact bytes a request's ``Ping-Signature`` signs (see the module docstring).

    Raises ``InvalidInput`` for a field outside its character set (so no field
    can smuggle a separator).
    """
    if not isinstance(method, str) or not _METHOD_RE.fullmatch(method):
        raise InvalidInput("request method must be an upper-case token")
    if not isinstance(target, str) or not _TARGET_RE.fullmatch(target):
        raise InvalidInput("request target must be an absolute path of visible ASCII")
    if not isinstance(device_id, DeviceId):
        raise InvalidInput("signing needs a DeviceId")
    if type(timestamp_ms) is not int or not 0 <= timestamp_ms < 10**16:
        raise InvalidInput("timestamp out of range")
    if not isinstance(nonce, bytes) or len(nonce) != NONCE_LEN:
        raise InvalidInput(f"nonce must be {NONCE_LEN} bytes")
    if not isinstance(body_sha256, bytes) or len(body_sha256) != 32:
        raise InvalidInput("body hash must be 32 bytes")
    return b"\n".join(
        (
            SIGNATURE_LABEL,
            method.encode("ascii"),
            target.encode("ascii"),
            device_id.as_hex().encode("ascii"),
            str(timestamp_ms).encode("ascii"),
            nonce.hex().encode("ascii"),
            body_sha256.hex().encode("ascii"),
        )
    )


class RequestSigner:
    """Signs requests as one device. Holds the device's signing secret: ``repr`` never shows it."""

    __slots__ = ("device_id", "public_key", "_secret", "_crypto")

    device_id: DeviceId
    public_key: bytes

    def __init__(self, signing_secret: bytes, crypto: CryptoProvider | None = None) -> None:
        """``signing_secret`` is the device's 32-byte Ed25519 seed (``LocalDevice.signing_secret``)."""
        if not isinstance(signing_secret, (bytes, bytearray)) or len(signing_secret) != 32:
            raise InvalidInput("a device signing secret is 32 bytes")
        self._crypto = crypto if crypto is not None else default_provider()
        self._secret = bytes(signing_secret)
        try:
            self.public_key = self._crypto.sign_public(self._secret)
        except CryptoError as exc:
            raise InvalidInput(f"device signing key rejected: {type(exc).__name__}") from None
        self.device_id = DeviceId.from_public_key(self.public_key)

    def headers(self, method: str, target: str, body: bytes, timestamp_ms: int) -> dict[str, str]:
        """The four authentication headers for one request (a fresh random nonce each call)."""
        nonce = self._crypto.random(NONCE_LEN)
        message = signing_message(method, target, self.device_id, timestamp_ms, nonce, hashlib.sha256(body).digest())
        return {
            HEADER_DEVICE: self.device_id.as_hex(),
            HEADER_TIMESTAMP: str(timestamp_ms),
            HEADER_NONCE: nonce.hex(),
            HEADER_SIGNATURE: self._crypto.sign(self._secret, message).hex(),
        }

    def __repr__(self) -> str:
        return f"RequestSigner(device_id={self.device_id.as_hex()[:16]}...)"

    def __reduce__(self) -> str | tuple[object, ...]:
        raise TypeError("RequestSigner holds a secret and cannot be pickled")


@dataclass(frozen=True, slots=True)
class AuthHeaders:
    """The parsed authentication headers of a request (not yet verified)."""

    device_id: DeviceId
    timestamp_ms: int
    nonce: bytes
    signature: bytes


def parse_auth_headers(get: Callable[[str], str | None]) -> AuthHeaders:
    """Parse the four headers (``get`` looks one up by lower-case name). ``InvalidInput`` when one
    is missing or not in its exact canonical form."""
    values = {}
    for name, pattern in (
        (HEADER_DEVICE, _HEX64_RE),
        (HEADER_TIMESTAMP, _TIMESTAMP_RE),
        (HEADER_NONCE, _HEX_NONCE_RE),
        (HEADER_SIGNATURE, _HEX_SIG_RE),
    ):
        value = get(name)
        if value is None:
            raise InvalidInput(f"missing {name} header")
        if not pattern.fullmatch(value):
            raise InvalidInput(f"malformed {name} header")
        values[name] = value
    return AuthHeaders(
        DeviceId(bytes.fromhex(values[HEADER_DEVICE])),
        int(values[HEADER_TIMESTAMP]),
        bytes.fromhex(values[HEADER_NONCE]),
        bytes.fromhex(values[HEADER_SIGNATURE]),
    )


def verify_request(
    auth: AuthHeaders, method: str, target: str, body: bytes, public_key: bytes, crypto: CryptoProvider, *, key_checked: bool = False
) -> None:
    """Return if ``auth.signature`` signs this request with ``public_key``; raise ``InvalidSignature``
    otherwise (also when ``public_key`` is not the key of ``auth.device_id``, unless the caller
    already knows it is: ``key_checked``, e.g. a key looked up by that id among registered ones)."""
    if not key_checked and DeviceId.from_public_key(public_key) != auth.device_id:
        raise InvalidSignature("the key is not the device's key", reason=MlsReason.BAD_SIGNATURE)
    try:
        message = signing_message(method, target, auth.device_id, auth.timestamp_ms, auth.nonce, hashlib.sha256(body).digest())
    except InvalidInput:
        raise InvalidSignature(
            "request cannot be signed (malformed method or target)",
            reason=MlsReason.MALFORMED,
        ) from None
    crypto.verify(public_key, message, auth.signature)


# --------------------------------------------------------------------------
# Errors


_MAX_ERROR_BODY = 64 * 1024


def error_from_response(status: int, body: bytes, content_type: str = "") -> TransportError:
    """The ``TransportError`` for a non-2xx answer: ``status``, and ``code`` from the server's JSON
    body ``{"code", "message"}`` when it has one (any other body: no code)."""
    code: str | None = None
    message = f"HTTP {status}"
    if body and len(body) <= _MAX_ERROR_BODY and ("json" in content_type or body[:1] == b"{"):
        try:
            doc = loads_json(body, max_size=_MAX_ERROR_BODY, what="error body")
        except InvalidInput:  # not JSON, or nested past the parser (a hostile server's b"[" * 65536)
            doc = None
        if isinstance(doc, dict):
            if isinstance(doc.get("code"), str):
                code = doc["code"]
            if isinstance(doc.get("message"), str) and doc["message"]:
                message = f"HTTP {status}: {doc['message'][:500]}"
    return TransportError(message, status=status, code=code)


# --------------------------------------------------------------------------
# Records


@dataclass(frozen=True, slots=True)
class WireRequest:
    """One API request before signing: method, target (path and query) and body (b"" for none)."""

    method: str
    target: str
    body: bytes = b""


def _record(fields: Mapping[str, CborValue]) -> bytes:
    body: dict[str, CborValue] = {"v": _VERSION}
    body.update(fields)
    return dumps(body)


def _open(data: bytes, what: str, keys: tuple[str, ...], max_size: int, optional: tuple[str, ...] = ()) -> dict[str, CborValue]:
    """Decode a record with exactly ``keys`` (plus "v" = 1), and any of the ``optional`` keys
    (added to a record later: older writers leave them out); ``InvalidInput`` otherwise. The
    result has the optional keys that were present only."""
    value = loads(data, max_size=max_size, what=what)
    present = tuple(k for k in optional if type(value) is dict and k in value)
    rec = as_map(value, what, frozenset(keys) | frozenset(present) | {"v"})
    if rec["v"] != _VERSION:
        raise InvalidInput(f"{what}: version {rec['v']!r} is not supported")
    return {k: rec[k] for k in (*keys, *present)}


def _device_ids(value: object, what: str) -> list[DeviceId]:
    # The count rule (413 beyond MAX_DEVICE_LIST) is the server's, not the parser's.
    items = as_list(value, what, max_items=MAX_POST_BODY // DeviceId.LENGTH)
    return [DeviceId(as_bytes(item, f"{what}[]", length=DeviceId.LENGTH)) for item in items]


def _embedded(value: object, what: str) -> bytes:
    """Canonical bytes of an embedded record map (the outer record was canonical, so they are its exact encoding)."""
    if type(value) is not dict:
        raise InvalidInput(f"{what}: expected a map")
    return dumps(value)


# Devices ---------------------------------------------------------------


def register_request(info: DeviceInfo, binding: DeviceBinding) -> WireRequest:
    """``POST /v1/devices``: ``{"v": 1, "info": DeviceInfo, "binding": DeviceBinding}``."""
    body = _record({"info": loads(info.encode()), "binding": loads(binding.encode())})
    return WireRequest("POST", f"{API_PREFIX}/devices", body)


def decode_register(data: bytes) -> tuple[DeviceInfo, DeviceBinding]:
    rec = _open(data, "RegisterDevice", ("info", "binding"), 4096)
    info = DeviceInfo.decode(_embedded(rec["info"], "RegisterDevice.info"))
    binding = DeviceBinding.decode(_embedded(rec["binding"], "RegisterDevice.binding"))
    return info, binding


def list_devices_request(user_id: UserId) -> WireRequest:
    """``GET /v1/accounts/{user_id}/devices`` -> ``{"v": 1, "devices": [DeviceInfo, ...]}``."""
    return WireRequest("GET", f"{API_PREFIX}/accounts/{user_id.as_hex()}/devices")


def encode_device_list(infos: list[bytes]) -> bytes:
    """The device list from stored ``DeviceInfo`` encodings."""
    return _record({"devices": [loads(b) for b in infos]})


def decode_device_list(data: bytes) -> list[DeviceInfo]:
    rec = _open(data, "DeviceList", ("devices",), 1 << 20)
    items = as_list(rec["devices"], "DeviceList.devices", max_items=1000)
    return [DeviceInfo.decode(_embedded(item, "DeviceList.devices[]")) for item in items]


# A revocation body: a DeviceRevocation map (about 180 bytes) in the record.
MAX_REVOKE_BODY = 512


def revoke_request(device_id: DeviceId, revocation: DeviceRevocation) -> WireRequest:
    """``POST /v1/devices/{device_id}/revoke``: ``{"v": 1, "revocation": DeviceRevocation}`` -> 204."""
    body = _record({"revocation": loads(revocation.encode())})
    return WireRequest("POST", f"{API_PREFIX}/devices/{device_id.as_hex()}/revoke", body)


def decode_revoke(data: bytes) -> DeviceRevocation:
    """Structure only (the server verifies the statement)."""
    rec = _open(data, "RevokeDevice", ("revocation",), MAX_REVOKE_BODY)
    return DeviceRevocation.decode(_embedded(rec["revocation"], "RevokeDevice.revocation"))


def list_revocations_request(user_id: UserId) -> WireRequest:
    """``GET /v1/accounts/{user_id}/revocations`` -> ``{"v": 1, "revocations": [DeviceRevocation, ...]}``
    (newest first, at most ``MAX_REVOCATION_LIST``)."""
    return WireRequest("GET", f"{API_PREFIX}/accounts/{user_id.as_hex()}/revocations")


def encode_revocation_list(stored: list[bytes]) -> bytes:
    """The revocation list from stored ``DeviceRevocation`` encodings."""
    return _record({"revocations": [loads(b) for b in stored]})


def decode_revocation_list(data: bytes, user_id: UserId) -> list[DeviceRevocation]:
    """Parse the answer to :func:`list_revocations_request` for ``user_id``; ``InvalidInput`` for
    anything else, a revocation of another account or one listed twice included (signatures are
    not checked here: ``DeviceRevocation.verify``)."""
    rec = _open(data, "RevocationList", ("revocations",), 256 * (MAX_REVOCATION_LIST + 1))
    out: list[DeviceRevocation] = []
    seen: set[DeviceId] = set()
    for item in as_list(rec["revocations"], "RevocationList.revocations", max_items=MAX_REVOCATION_LIST):
        revocation = DeviceRevocation.decode(_embedded(item, "RevocationList.revocations[]"))
        if revocation.user_id != user_id or revocation.device_id in seen:
            raise InvalidInput("RevocationList: a revocation of another account, or one listed twice")
        seen.add(revocation.device_id)
        out.append(revocation)
    return out


# KeyPackages -------------------------------------------------------------

# Largest publish body: a full batch of maximal KeyPackages plus a last-resort one.
MAX_PUBLISH_BODY = (MAX_KEY_PACKAGES_PER_PUBLISH + 1) * (MAX_KEY_PACKAGE_LEN + 8) + 64


def publish_request(key_packages: list[bytes], last_resort: bytes | None, replace: bool = False) -> WireRequest:
    """``POST /v1/key-packages``: ``{"v": 1, "key_packages": [bstr, ...], "last_resort": bstr / null
    [, "replace": bool]}`` -> 204. ``"replace"`` is sent only when true (so a request that does not
    replace is exactly what servers before it accept, and one that does is refused by them, 400,
    rather than applied without the replacement)."""
    fields: dict[str, CborValue] = {"key_packages": list(key_packages), "last_resort": last_resort}
    if replace:
        fields["replace"] = True
    return WireRequest("POST", f"{API_PREFIX}/key-packages", _record(fields))


def decode_publish(data: bytes) -> tuple[list[bytes], bytes | None, bool]:
    """Structure only; the server checks counts and sizes with the Transport's rules (400/413).
    A record without ``"replace"`` (older clients) does not replace."""
    rec = _open(data, "PublishKeyPackages", ("key_packages", "last_resort"), MAX_PUBLISH_BODY, optional=("replace",))
    kps = [as_bytes(kp, "PublishKeyPackages.key_packages[]") for kp in as_list(rec["key_packages"], "PublishKeyPackages.key_packages", max_items=10_000)]
    last = rec["last_resort"]
    replace = as_bool(rec["replace"], "PublishKeyPackages.replace") if "replace" in rec else False
    return kps, (None if last is None else as_bytes(last, "PublishKeyPackages.last_resort")), replace


def claim_request(user_id: UserId) -> WireRequest:
    """``POST /v1/accounts/{user_id}/key-packages/claim`` -> ``{"v": 1, "key_packages": [{"device_id", "key_package"}, ...]}``."""
    return WireRequest("POST", f"{API_PREFIX}/accounts/{user_id.as_hex()}/key-packages/claim")


def encode_claim(claimed: list[tuple[DeviceId, bytes]]) -> bytes:
    return _record({"key_packages": [{"device_id": d.value, "key_package": kp} for d, kp in claimed]})


def decode_claim(data: bytes) -> list[tuple[DeviceId, bytes]]:
    rec = _open(data, "ClaimedKeyPackages", ("key_packages",), MAX_RESPONSE_BYTES)
    out = []
    for item in as_list(rec["key_packages"], "ClaimedKeyPackages.key_packages", max_items=1000):
        entry = as_map(item, "ClaimedKeyPackages.key_packages[]", frozenset({"device_id", "key_package"}))
        out.append(
            (
                DeviceId(entry.get_bytes("device_id", length=DeviceId.LENGTH)),
                entry.get_bytes("key_package", max_len=MAX_KEY_PACKAGE_LEN),
            )
        )
    return out


def key_package_count_request() -> WireRequest:
    """``GET /v1/key-packages`` -> ``{"v": 1, "unclaimed": uint, "last_resort": bool}``: the caller's stock."""
    return WireRequest("GET", f"{API_PREFIX}/key-packages")


def encode_key_package_count(count: KeyPackageCount) -> bytes:
    return _record({"unclaimed": count.unclaimed, "last_resort": count.last_resort})


def decode_key_package_count(data: bytes) -> KeyPackageCount:
    rec = _open(data, "KeyPackageCount", ("unclaimed", "last_resort"), 64)
    return KeyPackageCount(
        as_uint(rec["unclaimed"], "KeyPackageCount.unclaimed", max_value=_MAX_SEQ),
        as_bool(rec["last_resort"], "KeyPackageCount.last_resort"),
    )


def claim_device_request(device_id: DeviceId, count: int) -> WireRequest:
    """``POST /v1/devices/{device_id}/key-packages/claim?count=N`` -> ``{"v": 1, "key_packages": [bstr, ...]}``."""
    if type(count) is not int:
        raise InvalidInput("count must be an integer")
    return WireRequest("POST", f"{API_PREFIX}/devices/{device_id.as_hex()}/key-packages/claim?count={count}")


def encode_claim_device(kps: list[bytes]) -> bytes:
    return _record({"key_packages": list[CborValue](kps)})


def decode_claim_device(data: bytes) -> list[bytes]:
    rec = _open(data, "ClaimedDeviceKeyPackages", ("key_packages",), MAX_RESPONSE_BYTES)
    items = as_list(rec["key_packages"], "ClaimedDeviceKeyPackages.key_packages", max_items=MAX_CLAIM_COUNT)
    return [as_bytes(kp, "ClaimedDeviceKeyPackages.key_packages[]", max_len=MAX_KEY_PACKAGE_LEN) for kp in items]


# Conversation logs ------------------------------------------------------

MAX_POST_BODY = MAX_ENVELOPE_SIZE + (MAX_DEVICE_LIST + 1) * (DeviceId.LENGTH + 2) + 64
# A message post may also carry a Commit's GroupInfo.
MAX_MESSAGE_POST_BODY = MAX_POST_BODY + MAX_GROUP_INFO_LEN + 16


def post_message_request(envelope: MessageEnvelope, removes: list[DeviceId], group_info: bytes | None = None) -> WireRequest:
    """``POST /v1/conversations/{id}/messages``: ``{"v": 1, "envelope": MessageEnvelope, "removes": [bstr32, ...]
    [, "group_info": bstr]}`` -> ``{"v": 1, "seq": uint}``. ``group_info`` (a Commit's: the GroupInfo
    of the epoch it starts, MLSMessage bytes) is sent only when given, so a post without one is
    exactly what servers before it accept."""
    fields: dict[str, CborValue] = {"envelope": envelope.to_value(), "removes": [d.value for d in removes]}
    if group_info is not None:
        fields["group_info"] = group_info
    return WireRequest("POST", f"{API_PREFIX}/conversations/{envelope.conversation_id.as_hex()}/messages", _record(fields))


@dataclass(frozen=True, slots=True)
class PostedMessage:
    """A decoded ``POST .../messages`` body: the envelope, the declared removals, the Commit's
    GroupInfo (None: none sent), and the envelope's canonical encoding exactly as sent (``raw``,
    a slice of the body)."""

    envelope: MessageEnvelope
    removes: list[DeviceId]
    raw: bytes
    group_info: bytes | None = None

    def stored(self, seq: int) -> bytes:
        """The envelope's encoding with ``seq``: ``envelope.with_seq(seq).encode()``, made by putting
        the new seq into ``raw`` instead of encoding the envelope again.

        In canonical order an envelope map starts ``"v": 1, "hlc": [wall_ms, counter], "seq": ...``
        (keys sort by encoded length, then bytes), so the seq's place follows from the HLC's
        two integer heads."""
        env = self.envelope
        at = len(_ENVELOPE_HEAD) + 1 + len(_head(0, env.hlc.wall_ms)) + len(_head(0, env.hlc.counter)) + len(_SEQ_KEY)
        raw = self.raw
        if raw[: len(_ENVELOPE_HEAD)] != _ENVELOPE_HEAD or raw[at - len(_SEQ_KEY) : at] != _SEQ_KEY:
            return env.with_seq(seq).encode()  # not the layout above: never expected, but stay exact
        return b"".join((raw[:at], _head(0, seq), raw[at + len(_head(0, env.seq)) :]))


# {"v": 1, "hlc": ...: the first bytes of every envelope's canonical encoding (8 keys).
_ENVELOPE_HEAD = b"\xa8" + dumps("v") + dumps(ENVELOPE_VERSION) + dumps("hlc")
_SEQ_KEY = dumps("seq")
# {"v": 1, "removes": [...], "envelope": {...}[, "group_info": bstr]}: "envelope" sorts after
# "removes", "group_info" after "envelope" (canonical order: by encoded length), so the envelope's
# bytes run from its key to the end, or to the "group_info" key.
_POST_KEYS = dumps("v") + dumps(1) + dumps("removes")
_ENVELOPE_KEY = dumps("envelope")
_GROUP_INFO_KEY = dumps("group_info")


def decode_post_message(data: bytes) -> PostedMessage:
    """Structure only: the server applies the Transport's rules to the values."""
    rec = _open(data, "PostMessage", ("envelope", "removes"), MAX_MESSAGE_POST_BODY, optional=("group_info",))
    envelope = MessageEnvelope.from_value(rec["envelope"], "PostMessage.envelope")
    removes = _device_ids(rec["removes"], "PostMessage.removes")
    group_info = None
    end = len(data)
    if "group_info" in rec:
        group_info = as_bytes(rec["group_info"], "PostMessage.group_info", max_len=MAX_GROUP_INFO_LEN)
        end -= len(_GROUP_INFO_KEY) + len(_head(2, len(group_info))) + len(group_info)
    # The body is canonical (checked by _open): the envelope's bytes are what follows its key.
    start = 1 + len(_POST_KEYS) + len(_head(4, len(removes))) + len(removes) * (2 + DeviceId.LENGTH) + len(_ENVELOPE_KEY)
    if data[start - len(_ENVELOPE_KEY) : start] != _ENVELOPE_KEY or (group_info is not None and data[end : end + len(_GROUP_INFO_KEY)] != _GROUP_INFO_KEY):
        raise InvalidInput("PostMessage: unexpected layout")  # cannot happen for a canonical body
    return PostedMessage(envelope, removes, data[start:end], group_info)


def group_info_request(conversation_id: ConversationId) -> WireRequest:
    """``GET /v1/conversations/{id}/group-info`` -> ``{"v": 1, "group_info": bstr}``: the GroupInfo
    of the conversation's current epoch (members only; 404 when the conversation is not verified)."""
    return WireRequest("GET", f"{API_PREFIX}/conversations/{conversation_id.as_hex()}/group-info")


def encode_group_info(group_info: bytes) -> bytes:
    return _record({"group_info": group_info})


def decode_group_info(data: bytes) -> bytes:
    rec = _open(data, "GroupInfo", ("group_info",), MAX_GROUP_INFO_LEN + 64)
    return as_bytes(rec["group_info"], "GroupInfo.group_info", max_len=MAX_GROUP_INFO_LEN)


def encode_seq(seq: int) -> bytes:
    return _record({"seq": seq})


def decode_seq(data: bytes) -> int:
    return as_uint(_open(data, "Posted", ("seq",), 64)["seq"], "Posted.seq", max_value=_MAX_SEQ)


def post_welcome_request(envelope: MessageEnvelope, recipients: list[DeviceId]) -> WireRequest:
    """``POST /v1/conversations/{id}/welcomes``: ``{"v": 1, "envelope": MessageEnvelope, "recipients": [bstr32, ...]}`` -> 204."""
    body = _record({"envelope": envelope.to_value(), "recipients": [d.value for d in recipients]})
    return WireRequest("POST", f"{API_PREFIX}/conversations/{envelope.conversation_id.as_hex()}/welcomes", body)


def decode_post_welcome(data: bytes) -> tuple[MessageEnvelope, list[DeviceId]]:
    rec = _open(data, "PostWelcome", ("envelope", "recipients"), MAX_POST_BODY)
    return MessageEnvelope.from_value(rec["envelope"], "PostWelcome.envelope"), _device_ids(rec["recipients"], "PostWelcome.recipients")


def fetch_request(conversation_id: ConversationId, cursor: SyncCursor, limit: int, wait_ms: int = 0) -> WireRequest:
    """``GET /v1/conversations/{id}/messages?after=SEQ&limit=N[&wait_ms=MS]`` -> an envelope :class:`Page`.

    Out-of-range numbers are sent as they are: the server answers 400, as the
    in-memory service does."""
    for name, value in (("limit", limit), ("wait_ms", wait_ms)):
        if type(value) is not int:
            raise InvalidInput(f"{name} must be an integer")
    query = f"after={cursor.seq}&limit={limit}" + (f"&wait_ms={wait_ms}" if wait_ms else "")
    return WireRequest("GET", f"{API_PREFIX}/conversations/{conversation_id.as_hex()}/messages?{query}")


def fetch_welcomes_request(after: int) -> WireRequest:
    """``GET /v1/welcomes?after=SEQ`` -> an envelope :class:`Page` (at most ``MAX_WELCOME_PAGE``)."""
    return WireRequest("GET", f"{API_PREFIX}/welcomes?after={after}")


def ack_welcomes_request(up_to_seq: int) -> WireRequest:
    """``POST /v1/welcomes/ack``: ``{"v": 1, "up_to_seq": uint}`` -> 204."""
    if type(up_to_seq) is not int or not 0 <= up_to_seq <= _MAX_SEQ:
        raise InvalidInput("up_to_seq out of range")
    return WireRequest("POST", f"{API_PREFIX}/welcomes/ack", _record({"up_to_seq": up_to_seq}))


def decode_ack(data: bytes) -> int:
    return as_uint(_open(data, "AckWelcomes", ("up_to_seq",), 64)["up_to_seq"], "AckWelcomes.up_to_seq", max_value=_MAX_SEQ)


def leave_request(conversation_id: ConversationId) -> WireRequest:
    """``POST /v1/conversations/{id}/leave`` (no body) -> 204: end the caller's membership and drop
    its pending Welcomes for the conversation."""
    return WireRequest("POST", f"{API_PREFIX}/conversations/{conversation_id.as_hex()}/leave")


def _uint_head_len(data: bytes, at: int) -> int:
    """The length of the canonical CBOR unsigned-integer head at ``data[at]``; ``InvalidInput`` otherwise."""
    if at >= len(data) or data[at] >> 5 != 0:
        raise InvalidInput("expected an unsigned integer")
    extra = data[at] & 0x1F
    if extra < 24:
        return 1
    if extra > 27:
        raise InvalidInput("malformed unsigned integer")
    return 1 + (1 << (extra - 24))


def restamp_seq(stored: bytes, seq: int) -> bytes:
    """A canonical envelope encoding ``stored`` with its ``seq`` set to ``seq``, without decoding it
    (the server keeps one copy of a Welcome and gives each recipient its inbox seq).

    In canonical order an envelope map starts ``"v": 1, "hlc": [wall_ms, counter], "seq": ...``
    (see :meth:`PostedMessage.stored`). Anything else is decoded and encoded again."""
    try:
        if stored[: len(_ENVELOPE_HEAD)] != _ENVELOPE_HEAD or stored[len(_ENVELOPE_HEAD)] != 0x82:
            raise InvalidInput("not the canonical envelope layout")
        at = len(_ENVELOPE_HEAD) + 1
        at += _uint_head_len(stored, at)
        at += _uint_head_len(stored, at)
        if stored[at : at + len(_SEQ_KEY)] != _SEQ_KEY:
            raise InvalidInput("not the canonical envelope layout")
        at += len(_SEQ_KEY)
        end = at + _uint_head_len(stored, at)
    except (InvalidInput, IndexError):
        return MessageEnvelope.decode(stored).with_seq(seq).encode()
    return b"".join((stored[:at], _head(0, seq), stored[end:]))


# Watching many conversations -----------------------------------------------

# Largest watch body: each position is [bstr16, uint64] (at most 28 bytes); room for one too many,
# so that the server can tell "too many" (413) from a malformed body (400).
MAX_WATCH_BODY = (MAX_WATCH_CONVERSATIONS + 1) * 28 + 64
_WATCH_ITEMS = MAX_WATCH_BODY // 19  # the fewest bytes a position takes: [bstr16, small uint]


def watch_request(positions: Mapping[ConversationId, int], wait_ms: int) -> WireRequest:
    """``POST /v1/watch``: ``{"v": 1, "positions": [[conversation_id, seq], ...], "wait_ms": uint}``
    -> ``{"v": 1, "heads": [[conversation_id, seq], ...], "forbidden": [conversation_id, ...],
    "welcomes": bool}``.

    Out-of-range integers are sent as they are (the server answers 400, as the in-memory service
    does); a key that is not a ``ConversationId`` or a value that is not an integer is
    ``InvalidInput`` here."""
    items: list[CborValue] = []
    for cid, seq in positions.items():
        if not isinstance(cid, ConversationId) or type(seq) is not int:
            raise InvalidInput("watch positions map ConversationId -> int")
        items.append([cid.value, seq])
    if type(wait_ms) is not int:
        raise InvalidInput("wait_ms must be an integer")
    return WireRequest("POST", f"{API_PREFIX}/watch", _record({"positions": items, "wait_ms": wait_ms}))


def _position(value: object, what: str) -> tuple[ConversationId, int]:
    pair = as_list(value, what, max_items=2)
    if len(pair) != 2:
        raise InvalidInput(f"{what}: expected [conversation_id, seq]")
    cid = ConversationId(as_bytes(pair[0], f"{what}[0]", length=ConversationId.LENGTH))
    return cid, as_uint(pair[1], f"{what}[1]", max_value=_MAX_SEQ)


def decode_watch(data: bytes) -> tuple[list[tuple[ConversationId, int]], int]:
    """Structure only (the positions in order, repeats kept; ``wait_ms``): the server checks the
    count (413), repeats and ``wait_ms``'s range (400)."""
    rec = _open(data, "Watch", ("positions", "wait_ms"), MAX_WATCH_BODY)
    items = as_list(rec["positions"], "Watch.positions", max_items=_WATCH_ITEMS)
    positions = [_position(item, "Watch.positions[]") for item in items]
    return positions, as_uint(rec["wait_ms"], "Watch.wait_ms")


def encode_watch_result(result: WatchResult) -> bytes:
    heads: list[CborValue] = [[cid.value, seq] for cid, seq in result.heads.items()]
    forbidden: list[CborValue] = [cid.value for cid in result.forbidden]
    return _record({"heads": heads, "forbidden": forbidden, "welcomes": result.welcomes})


def decode_watch_result(data: bytes, positions: Mapping[ConversationId, int]) -> WatchResult:
    """Parse a watch answer to a request for ``positions``; ``InvalidInput`` for anything else,
    including a conversation that was not asked about or a head not beyond its position."""
    rec = _open(data, "Watched", ("heads", "forbidden", "welcomes"), MAX_WATCH_BODY + 32 * MAX_WATCH_CONVERSATIONS)
    heads: dict[ConversationId, int] = {}
    for item in as_list(rec["heads"], "Watched.heads", max_items=MAX_WATCH_CONVERSATIONS):
        cid, seq = _position(item, "Watched.heads[]")
        after = positions.get(cid)
        if after is None or seq <= after or cid in heads:
            raise InvalidInput("Watched.heads: a conversation not asked about, repeated, or not beyond its position")
        heads[cid] = seq
    forbidden: set[ConversationId] = set()
    for item in as_list(rec["forbidden"], "Watched.forbidden", max_items=MAX_WATCH_CONVERSATIONS):
        cid = ConversationId(as_bytes(item, "Watched.forbidden[]", length=ConversationId.LENGTH))
        if cid not in positions or cid in heads or cid in forbidden:
            raise InvalidInput("Watched.forbidden: a conversation not asked about, or repeated")
        forbidden.add(cid)
    return WatchResult(heads, frozenset(forbidden), as_bool(rec["welcomes"], "Watched.welcomes"))


# Envelope pages ----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Page:
    """Envelopes in order; ``more`` is True when the server cut the page short at
    ``MAX_PAGE_BYTES`` although more envelopes are within the request's limit."""

    envelopes: list[MessageEnvelope]
    more: bool


def _head(major: int, n: int) -> bytes:
    """A canonical CBOR head (major type and argument)."""
    if n < 24:
        return bytes([major << 5 | n])
    for extra, size in ((24, 1), (25, 2), (26, 4), (27, 8)):
        if n < 1 << (8 * size):
            return bytes([major << 5 | extra]) + n.to_bytes(size, "big")
    raise InvalidInput("CBOR argument too large")


# {"v": 1, "more": <bool>, "envelopes": [...]}: canonical key order is by encoded length.
_PAGE_PREFIX = b"\xa3" + dumps("v") + dumps(1) + dumps("more")
_ENVELOPES_KEY = dumps("envelopes")


def encode_page(stored: list[bytes], more: bool) -> bytes:
    """A page from stored envelope encodings, without decoding them: the canonical encoding of
    ``{"v": 1, "more": more, "envelopes": [...]}`` is the concatenation (each stored envelope is
    already canonical)."""
    return b"".join((_PAGE_PREFIX, b"\xf5" if more else b"\xf4", _ENVELOPES_KEY, _head(4, len(stored)), *stored))


def decode_page(data: bytes, max_items: int) -> Page:
    """Parse a page of at most ``max_items`` envelopes; ``InvalidInput`` on anything else."""
    rec = _open(data, "EnvelopePage", ("more", "envelopes"), MAX_RESPONSE_BYTES)
    items = as_list(rec["envelopes"], "EnvelopePage.envelopes", max_items=max_items)
    return Page([MessageEnvelope.from_value(item, "EnvelopePage.envelopes[]") for item in items], as_bool(rec["more"], "EnvelopePage.more"))
