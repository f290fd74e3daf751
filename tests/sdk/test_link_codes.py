"""ping_core.link's one-line codes: request, grant and pending-link records, shared by the CLI and the browser.

The pinned strings were made by the code this replaced (pyodide_app/linkcodes.py,
the same layout as ping_core/cli.py had), so a code of an older browser or
command line still decodes and opens.
"""

from __future__ import annotations

import base64
from pathlib import Path

import cbor2
import pytest
from hypothesis import given
from hypothesis import strategies as st

from ping_core import cli
from ping_core.cbor import encode_record
from ping_core.errors import IdentityError, InvalidInput, PingError
from ping_core.identity import Identity
from ping_core.ids import DeviceId
from ping_core.link import (
    GRANT_INFO,
    MAX_CODE_LEN,
    LinkKeyPair,
    LinkRequestCode,
    PendingLink,
    decode_code,
    encode_code,
    AccountGrant,
    open_grant,
    seal_grant,
)
from ping_core.mls import hpke
from ping_core.mls.crypto import default_provider

IDENT = Identity.from_seed(b"\x05" * 32)
PENDING = PendingLink(LinkKeyPair(b"\x07" * 32), b"\x06" * 32, "laptop")
PINNED_PENDING = bytes.fromhex(
    "a4617601656c6162656c666c6170746f706b6c696e6b5f7365637265745820" + "07" * 32 + "6d6465766963655f7365637265745820" + "06" * 32
)
PINNED_REQUEST = (
    "o2F2AWlkZXZpY2VfaWRYIHJFZyBBIDemszn4hM5tkbtMwWOn3D5MWMZY5sIJe5Kib2xpbmtfcHVibGljX2tleVggE75P6uryBMf9M1j8nAByGIHRdCeB"
    "KCJ-xnTzf3_pe20"
)
PINNED_GRANT = (
    "o2F2AWNlbmNYIDRBkytWZLJ5NPQe7t56e0UFypvaokTc9lKnvNLeyVkRamNpcGhlcnRleHRYQw951BqDs1xVKLQs898GgtCuw2brnCNIpM0Mw3rA6e0k"
    "LjD_7v81qGIDTCNX8D7nflkMpwOh0cwhCOjLNyxKPOKPNiY"
)


def test_pinned_codes_still_decode_and_encode_the_same() -> None:
    assert PENDING.encode() == PINNED_PENDING
    assert PendingLink.decode(PINNED_PENDING).request() == PENDING.request()
    assert PENDING.request().encode() == PINNED_REQUEST
    request = LinkRequestCode.decode(PINNED_REQUEST)
    assert request == LinkRequestCode(PENDING.device_id, PENDING.keys.public_key)
    assert request.device_id == DeviceId.from_public_key(default_provider().sign_public(b"\x06" * 32))
    # A v1 grant (an older Ping: the bare identity export) is read as a grant of the key.
    old = open_grant(PINNED_GRANT, PENDING.keys, PENDING.device_id)
    assert old.identity == IDENT and old.account == IDENT and old.binding == IDENT.device_binding(PENDING.device_id)
    # The layouts are the documented ones.
    raw = base64.urlsafe_b64decode(PINNED_REQUEST + "==")
    assert cbor2.loads(raw) == {"v": 1, "device_id": request.device_id.value, "link_public_key": request.link_public_key}
    grant = cbor2.loads(base64.urlsafe_b64decode(PINNED_GRANT + "=" * (-len(PINNED_GRANT) % 4)))
    assert set(grant) == {"v", "enc", "ciphertext"} and grant["v"] == 1
    plain = hpke.open(default_provider(), grant["enc"], PENDING.keys.secret, GRANT_INFO, b"", grant["ciphertext"])
    assert plain == IDENT.export()


def _grant(identity: Identity, device: DeviceId, *, key: bool = False) -> AccountGrant:
    return AccountGrant(identity.device_binding(device), identity if key else None)


def test_grant_round_trip_opens_only_for_its_request() -> None:
    pending = PendingLink.new("phone")
    dev = pending.device_id
    code = pending.request().encode()
    assert "=" not in code and code.isascii()
    grant = seal_grant(_grant(IDENT, dev), LinkRequestCode.decode(code))
    assert grant != seal_grant(_grant(IDENT, dev), pending.request())  # fresh HPKE ephemeral key each time
    opened = open_grant(grant, pending.keys, dev)
    # By default the new device gets its binding only, never the account key.
    assert opened.identity is None and opened.account == IDENT.device_binding(dev)
    assert open_grant(f"  {grant[:40]}\n{grant[40:]}\n", pending.keys, dev) == opened  # a wrapped paste
    with_key = open_grant(seal_grant(_grant(IDENT, dev, key=True), pending.request()), pending.keys, dev)
    assert with_key.account == IDENT and "seed" not in repr(with_key) and IDENT.export().hex() not in repr(with_key)
    assert IDENT.export() not in base64.urlsafe_b64decode(grant + "=" * (-len(grant) % 4))

    with pytest.raises(InvalidInput, match="not for this device"):
        open_grant(grant, PendingLink.new("other").keys, dev)
    with pytest.raises(IdentityError):  # the binding names another device than the one asking
        open_grant(grant, pending.keys, PendingLink.new("other").device_id)
    for i in (len(grant) // 2, len(grant) - 2):
        flipped = grant[:i] + ("A" if grant[i] != "A" else "B") + grant[i + 1 :]
        with pytest.raises(InvalidInput):
            open_grant(flipped, pending.keys, dev)
    with pytest.raises(InvalidInput):
        open_grant(grant, pending, dev)  # type: ignore[arg-type]  # the key pair, not the pending link


def test_seal_grant_refusals() -> None:
    request = PENDING.request()
    grant = _grant(IDENT, PENDING.device_id)
    with pytest.raises(InvalidInput):
        seal_grant(b"not an identity", request)  # type: ignore[arg-type]
    with pytest.raises(InvalidInput):
        seal_grant(IDENT, request)  # type: ignore[arg-type]
    with pytest.raises(InvalidInput):
        seal_grant(grant, PINNED_REQUEST)  # type: ignore[arg-type]
    with pytest.raises(InvalidInput, match="another device"):
        seal_grant(_grant(IDENT, PendingLink.new("x").device_id), request)
    with pytest.raises(InvalidInput):
        AccountGrant(grant.binding, Identity.generate())  # the key of another account than the binding's
    low_order = LinkRequestCode(request.device_id, b"\x00" * 32)
    with pytest.raises(InvalidInput, match="not usable"):
        seal_grant(grant, low_order)


def test_bad_codes_are_invalid_input() -> None:
    for bad in ("", "   ", "!!!", "a" * (MAX_CODE_LEN + 1), "QUJD=", "QUJDR", "QUJDRF", 42, None, b"QUJD"):
        with pytest.raises(InvalidInput, match="not a link request code"):
            LinkRequestCode.decode(bad)
    with pytest.raises(InvalidInput, match="not a grant code"):
        open_grant("a+b/", PENDING.keys, PENDING.device_id)  # standard base64's alphabet is not ours
    # Right alphabet, wrong record: a grant is not a request and vice versa, nor another version.
    with pytest.raises(InvalidInput):
        LinkRequestCode.decode(PINNED_GRANT)
    with pytest.raises(InvalidInput):
        open_grant(PINNED_REQUEST, PENDING.keys, PENDING.device_id)
    v2 = encode_code(encode_record(2, {"device_id": bytes(32), "link_public_key": PENDING.keys.public_key}))
    with pytest.raises(InvalidInput):
        LinkRequestCode.decode(v2)
    with pytest.raises(InvalidInput):
        LinkRequestCode(PENDING.device_id, b"\x01" * 31)


def test_decode_code_ignores_whitespace_and_refuses_non_canonical_base64() -> None:
    assert decode_code(" QUJD\nREVG ", "test") == b"ABCDEF"
    assert decode_code(encode_code(b"\xff\xfe"), "test") == b"\xff\xfe"
    assert encode_code(b"\xff\xfe") == "__4"
    with pytest.raises(InvalidInput):
        decode_code("__5", "test")  # same bytes as "__4" with stray low bits


def test_pending_link_is_secret_and_strict() -> None:
    pending = PendingLink.new("laptop")
    assert "secret" not in repr(pending) and pending.device_secret.hex() not in repr(pending)
    assert pending.keys.secret.hex() not in repr(pending)
    decoded = PendingLink.decode(pending.encode())
    assert (decoded.device_secret, decoded.label, decoded.keys.secret) == (
        pending.device_secret,
        pending.label,
        pending.keys.secret,
    )
    import pickle

    with pytest.raises(TypeError):
        pickle.dumps(pending)
    for args in ((pending.keys, b"short", "x"), (pending.keys, bytes(32), ""), (pending.keys, bytes(32), "x" * 257)):
        with pytest.raises(InvalidInput):
            PendingLink(*args)
    with pytest.raises(InvalidInput):
        PendingLink(b"\x07" * 32, bytes(32), "x")  # type: ignore[arg-type]
    for raw in (b"", PINNED_PENDING[:-1], PINNED_PENDING + b"\x00", encode_record(1, {"link_secret": bytes(32)})):
        with pytest.raises(InvalidInput):
            PendingLink.decode(raw)


@given(st.binary(max_size=200))
def test_decoders_only_raise_ping_errors(raw: bytes) -> None:
    for text in (
        encode_code(raw),
        encode_code(encode_record(1, {"device_id": raw, "link_public_key": raw})),
        encode_code(encode_record(1, {"enc": raw, "ciphertext": raw})),
    ):
        for decode in (LinkRequestCode.decode, lambda t: open_grant(t, PENDING.keys, PENDING.device_id)):
            try:
                decode(text)
            except PingError:
                pass
    try:
        PendingLink.decode(raw)
    except PingError:
        pass


def test_cli_request_code_and_pending_file_are_this_format(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["--server", "http://127.0.0.1:9", "--state", str(tmp_path), "link-new", "--label", "cli"]) == 0
    request = LinkRequestCode.decode(capsys.readouterr().out.strip())
    pending = PendingLink.decode((tmp_path / "link-pending").read_bytes())
    assert pending.request() == request and pending.label == "cli"
    identity = Identity.generate()
    grant = open_grant(seal_grant(_grant(identity, request.device_id), request), pending.keys, pending.device_id)
    assert grant.account == identity.device_binding(pending.device_id)
