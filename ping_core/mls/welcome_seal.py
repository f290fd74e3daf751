"""Welcome decryption for a new member (RFC 9420 §12.4.3.1).

:func:`decrypt_welcome` does every step that needs no ratchet tree:

1. find the EncryptedGroupSecrets addressed to our KeyPackageRef;
2. open the GroupSecrets: ``DecryptWithLabel(init_priv, "Welcome",
   encrypted_group_info, kem_output, ciphertext)``;
3. compute ``psk_secret`` from the listed PSKs (the caller resolves them);
4. derive the welcome key and nonce from ``joiner_secret`` and ``psk_secret``
   and decrypt the GroupInfo;
5. verify the GroupInfo's signature with the key ``signer_key`` returns for
   it (the group layer looks the signer's leaf up in the ratchet tree);
6. derive the epoch's secrets from ``joiner_secret``, ``psk_secret`` and the
   GroupContext, and verify the confirmation tag against the confirmed
   transcript hash; compute the interim transcript hash.

Any failure raises an ``MlsError`` subclass (``DecryptionFailed``,
``InvalidSignature``, ``MlsDecodeError``) and there is no state to change:
the result is only returned when all of the above passed. The ratchet tree
checks (tree hash, parent hashes, our leaf) and applying ``path_secret``
belong to the group layer.
"""

from __future__ import annotations

from typing import Callable, Sequence

from ping_core.errors import MlsError, MlsReason
from ping_core.mls.tls import decode_exact, decode_with, encode
from ping_core.mls.crypto import CryptoProvider
from ping_core.mls.structs.enums import CipherSuite, ProtocolVersion
from ping_core.mls.structs.group_info import GroupInfo
from ping_core.mls.structs.key_package import KeyPackage
from ping_core.mls.structs.psk_id import PreSharedKeyID
from ping_core.mls.structs.hpke import HPKECiphertext
from ping_core.mls.structs.welcome import EncryptedGroupSecrets, GroupSecrets, Welcome

from ping_core.mls.primitives import (
    LabeledEncryption,
    decrypt_with_label,
    make_key_package_ref,
    sign_with_label,
    verify_with_label,
)
from ping_core.mls.schedule.psk_secret import psk_secret as compute_psk_secret
from ping_core.mls.schedule.key_schedule import EpochSecrets, epoch_secrets_from_joiner, welcome_secrets
from ping_core.mls.schedule.transcript import interim_transcript_hash, verify_confirmation_tag

__all__ = [
    "JoinedWelcome",
    "PskLookup",
    "GroupInfoSigner",
    "WelcomeRecipient",
    "decrypt_welcome",
    "verify_group_info",
    "sign_group_info",
    "seal_welcome",
    "key_package_ref",
]

SUITE = CipherSuite.MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519

PskLookup = Callable[[PreSharedKeyID], bytes]
"""Returns the value of a PSK the Welcome lists, or raises ``MlsError`` when it is unknown."""

GroupInfoSigner = Callable[[GroupInfo], bytes]
"""Returns the signature public key of ``group_info.signer``, or raises ``MlsError``."""


class JoinedWelcome:
    """What a verified Welcome yields for the new member.

    ``group_info`` (decrypted, signature and confirmation tag verified),
    ``group_context_bytes`` (its GroupContext, encoded), ``path_secret``
    (``None`` unless the committer's path covers our leaf), ``psk_ids``,
    ``epoch_secrets`` of the joined epoch, and the transcript hashes.
    Secrets never appear in ``repr``.
    """

    __slots__ = (
        "group_info",
        "group_context_bytes",
        "path_secret",
        "psk_ids",
        "epoch_secrets",
        "confirmed_transcript_hash",
        "interim_transcript_hash",
    )

    def __init__(
        self,
        group_info: GroupInfo,
        group_context_bytes: bytes,
        path_secret: bytes | None,
        psk_ids: tuple[PreSharedKeyID, ...],
        epoch_secrets: EpochSecrets,
        confirmed_transcript_hash: bytes,
        interim_transcript_hash: bytes,
    ) -> None:
        self.group_info = group_info
        self.group_context_bytes = group_context_bytes
        self.path_secret = path_secret
        self.psk_ids = psk_ids
        self.epoch_secrets = epoch_secrets
        self.confirmed_transcript_hash = confirmed_transcript_hash
        self.interim_transcript_hash = interim_transcript_hash

    def __repr__(self) -> str:
        gc = self.group_info.group_context
        return f"JoinedWelcome(group_id={gc.group_id!r}, epoch={gc.epoch}, signer={self.group_info.signer})"


def key_package_ref(crypto: CryptoProvider, key_package: KeyPackage | bytes) -> bytes:
    """The KeyPackageRef of a KeyPackage (struct or its encoding)."""
    raw = key_package if isinstance(key_package, bytes) else encode(key_package)
    return make_key_package_ref(crypto, raw)


def verify_group_info(crypto: CryptoProvider, group_info: GroupInfo, signer_public_key: bytes) -> None:
    """``VerifyWithLabel(signer, "GroupInfoTBS", GroupInfoTBS, signature)``; ``InvalidSignature`` otherwise."""
    verify_with_label(crypto, signer_public_key, b"GroupInfoTBS", group_info.tbs(), group_info.signature)


def sign_group_info(crypto: CryptoProvider, group_info: GroupInfo, signature_key: bytes) -> GroupInfo:
    """``group_info`` with its signature: ``SignWithLabel(., "GroupInfoTBS", GroupInfoTBS)``."""
    signature = sign_with_label(crypto, signature_key, b"GroupInfoTBS", group_info.tbs())
    return GroupInfo(
        group_info.group_context, group_info.extensions, group_info.confirmation_tag, group_info.signer, signature
    )


class WelcomeRecipient:
    """One new member of a Welcome: its KeyPackageRef, HPKE init key and (optional) path secret."""

    __slots__ = ("key_package_ref", "init_key", "path_secret")

    def __init__(self, key_package_ref: bytes, init_key: bytes, path_secret: bytes | None = None) -> None:
        self.key_package_ref = key_package_ref
        self.init_key = init_key
        self.path_secret = path_secret

    def __repr__(self) -> str:
        return f"WelcomeRecipient(key_package_ref={self.key_package_ref.hex()})"


def seal_welcome(
    crypto: CryptoProvider,
    group_info: GroupInfo,
    joiner_secret: bytes,
    psks: Sequence[tuple[PreSharedKeyID, bytes]],
    recipients: Sequence[WelcomeRecipient],
) -> Welcome:
    """The committer's side of :func:`decrypt_welcome`: encrypt a signed GroupInfo and each
    recipient's GroupSecrets (``joiner_secret``, its path secret, the PSK ids).

    Each GroupSecrets is sealed with ``EncryptWithLabel(init_key, "Welcome",
    encrypted_group_info, .)``: the HPKE info holds the whole encrypted
    GroupInfo (the ratchet tree included, hundreds of KiB in a large group)
    and is the same for every recipient, so it is hashed once
    (:class:`~ping_core.mls.primitives.LabeledEncryption`), not once per new
    member (O(N^2) for a commit adding N members).
    """
    ws = welcome_secrets(crypto, joiner_secret, compute_psk_secret(crypto, psks))
    encrypted_group_info = crypto.aead_seal(ws.key, ws.nonce, b"", encode(group_info))
    sealer = LabeledEncryption(crypto, b"Welcome", encrypted_group_info)
    psk_ids = tuple(psk_id for psk_id, _ in psks)
    # One batch of encryptions for all recipients (one crossing per kind in the browser).
    sealed = sealer.encrypt_many(
        [(rcpt.init_key, encode(GroupSecrets(joiner_secret, rcpt.path_secret, psk_ids))) for rcpt in recipients]
    )
    entries = tuple(
        EncryptedGroupSecrets(rcpt.key_package_ref, HPKECiphertext(kem_output, ciphertext))
        for rcpt, (kem_output, ciphertext) in zip(recipients, sealed)
    )
    return Welcome(int(SUITE), entries, encrypted_group_info)


def decrypt_welcome(
    crypto: CryptoProvider,
    welcome: Welcome,
    key_package_ref: bytes,
    init_private_key: bytes,
    signer_key: GroupInfoSigner,
    *,
    init_public_key: bytes | None = None,
    psk_lookup: PskLookup | None = None,
) -> JoinedWelcome:
    """Open and verify ``welcome`` for the KeyPackage ``key_package_ref`` (see the module docstring).

    ``init_private_key`` is that KeyPackage's HPKE init private key
    (``init_public_key`` saves a scalar multiplication). ``psk_lookup``
    resolves the PSKs the Welcome lists; without it, a Welcome with PSKs is
    refused.
    """
    if welcome.cipher_suite != SUITE:
        raise MlsError(
            f"the Welcome is for cipher suite {welcome.cipher_suite}, not {int(SUITE)}",
            reason=MlsReason.UNSUPPORTED,
        )
    entry = welcome.find_secrets(key_package_ref)
    if entry is None:
        raise MlsError("the Welcome has no secrets for this KeyPackage", reason=MlsReason.BAD_WELCOME)
    egs = entry.encrypted_group_secrets
    raw_secrets = decrypt_with_label(
        crypto,
        init_private_key,
        b"Welcome",
        welcome.encrypted_group_info,
        egs.kem_output,
        egs.ciphertext,
        public=init_public_key,
    )
    group_secrets = decode_exact(GroupSecrets, raw_secrets)

    psks: list[tuple[PreSharedKeyID, bytes]] = []
    if group_secrets.psks:
        if psk_lookup is None:
            raise MlsError("the Welcome needs pre-shared keys and none can be looked up", reason=MlsReason.UNKNOWN_PSK)
        psks = [(psk_id, psk_lookup(psk_id)) for psk_id in group_secrets.psks]
    psk_secret = compute_psk_secret(crypto, psks)

    joiner = group_secrets.joiner_secret
    if len(joiner) != 32:
        raise MlsError("joiner_secret has the wrong length", reason=MlsReason.MALFORMED)
    ws = welcome_secrets(crypto, joiner, psk_secret)
    raw_info = crypto.aead_open(ws.key, ws.nonce, b"", welcome.encrypted_group_info)
    group_info = decode_with(GroupInfo.read, raw_info)
    gc = group_info.group_context
    if gc.version != ProtocolVersion.MLS10 or gc.cipher_suite != SUITE:
        raise MlsError("the GroupInfo is for another protocol version or cipher suite", reason=MlsReason.UNSUPPORTED)

    verify_group_info(crypto, group_info, signer_key(group_info))

    gc_bytes = encode(gc)
    secrets = epoch_secrets_from_joiner(crypto, joiner, psk_secret, gc_bytes)
    confirmed = gc.confirmed_transcript_hash
    verify_confirmation_tag(crypto, secrets.confirmation_key, confirmed, group_info.confirmation_tag)
    interim = interim_transcript_hash(crypto, confirmed, group_info.confirmation_tag)
    return JoinedWelcome(
        group_info, gc_bytes, group_secrets.path_secret, group_secrets.psks, secrets, confirmed, interim
    )
