"""Welcome: a sealed Welcome opens for its recipients, and every failure is refused."""

from __future__ import annotations

from dataclasses import replace


from ping_core.errors import DecryptionFailed, InvalidSignature, MlsReason
from ping_core.mls import welcome_seal as w
from ping_core.mls.tls import encode
from ping_core.mls.crypto import default_provider
from ping_core.mls.schedule.key_schedule import EpochSecrets, epoch_secrets, joiner_secret
from ping_core.mls.structs.group_info import GroupContext, GroupInfo
from ping_core.mls.structs.psk_id import PreSharedKeyID
from ping_core.mls.structs.welcome import Welcome
from ping_core.mls.schedule.transcript import confirmation_tag
from reasons import raises_reason

crypto = default_provider()
SIGNER_SK, SIGNER_PK = crypto.sign_keygen()
INIT_SK, INIT_PK = crypto.dh_keygen()
OTHER_SK, OTHER_PK = crypto.dh_keygen()
REF, OTHER_REF = b"r" * 32, b"o" * 32
PSK_ID = PreSharedKeyID.external(b"psk-id", b"n" * 32)
PSK = b"p" * 32


def build(psks: list[tuple[PreSharedKeyID, bytes]] | None = None, tag_ok: bool = True) -> tuple[Welcome, EpochSecrets]:
    psks = psks or []
    from ping_core.mls.schedule.psk_secret import psk_secret

    gc = GroupContext(cipher_suite=1, group_id=b"g", epoch=3, tree_hash=b"t" * 32, confirmed_transcript_hash=b"c" * 32)
    gc_bytes = encode(gc)
    joiner = joiner_secret(crypto, b"i" * 32, b"s" * 32, gc_bytes)
    secrets = epoch_secrets(crypto, b"i" * 32, b"s" * 32, psk_secret(crypto, psks), gc_bytes)
    tag = confirmation_tag(crypto, secrets.confirmation_key, gc.confirmed_transcript_hash)
    if not tag_ok:
        tag = bytes(32)
    info = w.sign_group_info(crypto, GroupInfo(gc, (), tag, 1), SIGNER_SK)
    recipients = [w.WelcomeRecipient(OTHER_REF, OTHER_PK), w.WelcomeRecipient(REF, INIT_PK, b"x" * 32)]
    return w.seal_welcome(crypto, info, joiner, psks, recipients), secrets


def signer(info: GroupInfo) -> bytes:
    assert info.signer == 1
    return SIGNER_PK


def test_opens_for_each_recipient() -> None:
    welcome, secrets = build()
    joined = w.decrypt_welcome(crypto, welcome, REF, INIT_SK, signer, init_public_key=INIT_PK)
    assert joined.epoch_secrets.encode() == secrets.encode()
    assert joined.path_secret == b"x" * 32 and joined.psk_ids == ()
    assert joined.group_info.group_context.epoch == 3
    other = w.decrypt_welcome(crypto, welcome, OTHER_REF, OTHER_SK, signer)
    assert other.path_secret is None and other.epoch_secrets.encode() == secrets.encode()
    assert secrets.membership_key.hex() not in repr(joined)


def test_with_psks() -> None:
    welcome, secrets = build([(PSK_ID, PSK)])
    joined = w.decrypt_welcome(crypto, welcome, REF, INIT_SK, signer, psk_lookup=lambda i: PSK)
    assert joined.psk_ids == (PSK_ID,) and joined.epoch_secrets.encode() == secrets.encode()
    with raises_reason(MlsReason.UNKNOWN_PSK):
        w.decrypt_welcome(crypto, welcome, REF, INIT_SK, signer)
    with raises_reason(MlsReason.DECRYPTION_FAILED, DecryptionFailed):  # a wrong PSK gives the wrong welcome key
        w.decrypt_welcome(crypto, welcome, REF, INIT_SK, signer, psk_lookup=lambda i: b"q" * 32)


def test_failures() -> None:
    welcome, _ = build()
    with raises_reason(MlsReason.BAD_WELCOME):
        w.decrypt_welcome(crypto, welcome, b"z" * 32, INIT_SK, signer)
    with raises_reason(MlsReason.DECRYPTION_FAILED, DecryptionFailed):
        w.decrypt_welcome(crypto, welcome, REF, OTHER_SK, signer)
    tampered = replace(welcome, encrypted_group_info=welcome.encrypted_group_info[:-1] + b"\x00")
    with raises_reason(MlsReason.DECRYPTION_FAILED, DecryptionFailed):
        w.decrypt_welcome(crypto, tampered, REF, INIT_SK, signer)
    with raises_reason(MlsReason.BAD_SIGNATURE, InvalidSignature):
        w.decrypt_welcome(crypto, welcome, REF, INIT_SK, lambda info: crypto.sign_keygen()[1])
    with raises_reason(MlsReason.UNSUPPORTED):
        w.decrypt_welcome(crypto, replace(welcome, cipher_suite=2), REF, INIT_SK, signer)
    bad_tag, _ = build(tag_ok=False)
    with raises_reason(MlsReason.BAD_TAG):
        w.decrypt_welcome(crypto, bad_tag, REF, INIT_SK, signer)


def test_group_info_signature() -> None:
    welcome, _ = build()
    info = w.decrypt_welcome(crypto, welcome, REF, INIT_SK, signer).group_info
    w.verify_group_info(crypto, info, SIGNER_PK)
    with raises_reason(MlsReason.BAD_SIGNATURE, InvalidSignature):
        w.verify_group_info(crypto, replace(info, signer=2), SIGNER_PK)
