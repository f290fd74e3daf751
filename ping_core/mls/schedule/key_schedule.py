"""The MLS key schedule (RFC 9420 §8).

One epoch's secrets come from the previous epoch's ``init_secret``, the
commit's ``commit_secret``, the PSKs' ``psk_secret`` and the new epoch's
encoded ``GroupContext``::

    joiner_secret = ExpandWithLabel(Extract(init_secret, commit_secret), "joiner", GroupContext, Nh)
    member_secret = Extract(joiner_secret, psk_secret)
    welcome_secret = DeriveSecret(member_secret, "welcome")
    epoch_secret  = ExpandWithLabel(member_secret, "epoch", GroupContext, Nh)
    <secret>      = DeriveSecret(epoch_secret, <label>)

The GroupContext is passed *encoded* (bytes): the group layer encodes it once
per epoch and reuses the bytes for the key schedule, signatures and framing.
Intermediate secrets (``member_secret``, ``epoch_secret``) are never
returned or kept: only what the RFC says an epoch keeps.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from ping_core.errors import MlsError, MlsReason, stored_state
from ping_core.mls.crypto import CryptoProvider

from ping_core.mls import hpke
from ping_core.mls.primitives import NH, NK, NN, derive_secret, expand_with_label, zero_secret

__all__ = [
    "EpochSecrets",
    "WelcomeSecrets",
    "joiner_secret",
    "welcome_secrets",
    "epoch_secrets",
    "epoch_secrets_from_joiner",
    "mls_exporter",
    "external_key_pair",
    "new_init_secret",
]


def new_init_secret(crypto: CryptoProvider) -> bytes:
    """A fresh random ``init_secret`` for epoch 0 of a new group (§8)."""
    return crypto.random(NH)


def joiner_secret(crypto: CryptoProvider, init_secret: bytes, commit_secret: bytes | None, group_context: bytes) -> bytes:
    """``joiner_secret`` of the new epoch. ``commit_secret=None`` means the all-zero secret (no path)."""
    prk = crypto.hkdf_extract(init_secret, zero_secret() if commit_secret is None else commit_secret)
    return expand_with_label(crypto, prk, b"joiner", group_context, NH)


@dataclass(frozen=True, slots=True, repr=False)
class WelcomeSecrets:
    """The welcome secret and the AEAD key and nonce that seal a Welcome's GroupInfo (§12.4.3.1)."""

    welcome_secret: bytes
    key: bytes
    nonce: bytes

    def __repr__(self) -> str:
        return "WelcomeSecrets(<secret>)"


def _member_secret(crypto: CryptoProvider, joiner: bytes, psk_secret: bytes | None) -> bytes:
    return crypto.hkdf_extract(joiner, zero_secret() if psk_secret is None else psk_secret)


def _welcome(crypto: CryptoProvider, member_secret: bytes) -> WelcomeSecrets:
    ws = derive_secret(crypto, member_secret, b"welcome")
    return WelcomeSecrets(
        ws,
        expand_with_label(crypto, ws, b"key", b"", NK),
        expand_with_label(crypto, ws, b"nonce", b"", NN),
    )


def welcome_secrets(crypto: CryptoProvider, joiner: bytes, psk_secret: bytes | None) -> WelcomeSecrets:
    """``welcome_secret`` and ``welcome_key``/``welcome_nonce`` from the joiner and PSK secrets."""
    return _welcome(crypto, _member_secret(crypto, joiner, psk_secret))


# Field order of the compact encoding (each field is Nh = 32 bytes).
_PERSISTED = (
    "sender_data_secret",
    "encryption_secret",
    "exporter_secret",
    "external_secret",
    "confirmation_key",
    "membership_key",
    "resumption_psk",
    "epoch_authenticator",
    "init_secret",
)


@dataclass(frozen=True, slots=True, repr=False)
class EpochSecrets:
    """Every secret an epoch derives from its ``epoch_secret`` (§8, table 4).

    ``init_secret`` is the *next* epoch's init secret. ``joiner_secret`` and
    ``welcome`` are what a committer needs to build a Welcome for this epoch;
    they are ``None`` when the secrets were restored from storage (they are
    not persisted: a Welcome is built right after the commit).

    ``encryption_secret`` seeds the secret tree; a caller that built the
    tree may drop it (:meth:`without_encryption_secret`) as §9.2 asks.
    """

    sender_data_secret: bytes
    encryption_secret: bytes
    exporter_secret: bytes
    external_secret: bytes
    confirmation_key: bytes
    membership_key: bytes
    resumption_psk: bytes
    epoch_authenticator: bytes
    init_secret: bytes
    joiner_secret: bytes | None = None
    welcome: WelcomeSecrets | None = None

    def __repr__(self) -> str:
        return "EpochSecrets(<secret>)"

    def without_encryption_secret(self) -> EpochSecrets:
        """A copy whose ``encryption_secret`` is erased (all zero) once the secret tree holds it."""
        return replace(self, encryption_secret=zero_secret())

    def without_welcome(self) -> EpochSecrets:
        """A copy without the joiner and welcome secrets (once any Welcome was built)."""
        return replace(self, joiner_secret=None, welcome=None)

    def encode(self) -> bytes:
        """The persisted secrets, fixed order, ``9 * 32`` bytes (joiner/welcome are not persisted)."""
        return b"".join(getattr(self, name) for name in _PERSISTED)

    @classmethod
    @stored_state
    def decode(cls, data: bytes) -> EpochSecrets:
        """Inverse of :meth:`encode`; ``MlsError`` for a wrong length."""
        if not isinstance(data, bytes) or len(data) != NH * len(_PERSISTED):
            raise MlsError("persisted epoch secrets have the wrong length", reason=MlsReason.CORRUPT_STATE)
        v = [data[i * NH : (i + 1) * NH] for i in range(len(_PERSISTED))]
        return cls(v[0], v[1], v[2], v[3], v[4], v[5], v[6], v[7], v[8])


def epoch_secrets_from_joiner(
    crypto: CryptoProvider, joiner: bytes, psk_secret: bytes | None, group_context: bytes
) -> EpochSecrets:
    """The epoch's secrets from ``joiner_secret`` (what a new member gets from a Welcome)."""
    member = _member_secret(crypto, joiner, psk_secret)
    epoch = expand_with_label(crypto, member, b"epoch", group_context, NH)

    def d(label: bytes) -> bytes:
        return derive_secret(crypto, epoch, label)

    return EpochSecrets(
        sender_data_secret=d(b"sender data"),
        encryption_secret=d(b"encryption"),
        exporter_secret=d(b"exporter"),
        external_secret=d(b"external"),
        confirmation_key=d(b"confirm"),
        membership_key=d(b"membership"),
        resumption_psk=d(b"resumption"),
        epoch_authenticator=d(b"authentication"),
        init_secret=d(b"init"),
        joiner_secret=joiner,
        welcome=_welcome(crypto, member),
    )


def epoch_secrets(
    crypto: CryptoProvider,
    init_secret: bytes,
    commit_secret: bytes | None,
    psk_secret: bytes | None,
    group_context: bytes,
) -> EpochSecrets:
    """The new epoch's secrets. ``None`` for ``commit_secret`` / ``psk_secret`` means the zero secret."""
    joiner = joiner_secret(crypto, init_secret, commit_secret, group_context)
    return epoch_secrets_from_joiner(crypto, joiner, psk_secret, group_context)


def mls_exporter(crypto: CryptoProvider, exporter_secret: bytes, label: bytes, context: bytes, length: int) -> bytes:
    """``MLS-Exporter(Label, Context, Length)`` (§8.5)."""
    if not 0 <= length <= 0xFFFF:
        raise MlsError("exporter length out of range", reason=MlsReason.INVALID_ARGUMENT)
    secret = derive_secret(crypto, exporter_secret, label)
    return expand_with_label(crypto, secret, b"exported", crypto.hash(context), length)


def external_key_pair(crypto: CryptoProvider, external_secret: bytes) -> tuple[bytes, bytes]:
    """``KEM.DeriveKeyPair(external_secret)``: ``(private, public)`` for external joins (§8.3)."""
    return hpke.derive_key_pair(crypto, external_secret)

