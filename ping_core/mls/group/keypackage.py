"""Signing identities, KeyPackage generation and KeyPackage validation (RFC 9420 §10).

:class:`Signer` is who a client is in its groups: a credential and the
Ed25519 key pair that signs for it. :func:`generate_key_package` makes a
fresh KeyPackage and returns it as a :class:`KeyPackageBundle` with the
private HPKE keys (init key and leaf encryption key) a Welcome will need.
The bundle encodes itself (:meth:`KeyPackageBundle.to_bytes`) so the SDK can
make it durable *before* it publishes the public KeyPackage.

:func:`validate_key_package` checks what can be checked without a group
(version, suite, both signatures, leaf source, lifetime, extension support,
distinct init and encryption keys) and, when the application gives one, the
maximum total lifetime RFC 9420 §7.2 asks applications to define (the engine
sets none by default); a group checks the rest (capabilities
against the group, uniqueness of keys in the tree) when it adds the member.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from ping_core.errors import MlsDecodeError, MlsError, MlsReason, stored_state
from ping_core.mls.tls import Reader, Writer, decode_exact, decode_with, encode, opaque
from ping_core.mls.crypto import CryptoProvider
from ping_core.mls.crypto.provider import keygen_and_sign
from ping_core.mls.primitives import make_key_package_ref, sign_content, verify_with_label
from ping_core.mls.tree import check_extensions_listed, check_lifetime_span
from ping_core.mls.structs import (
    Add,
    Capabilities,
    Credential,
    Extension,
    KeyPackage,
    LeafNode,
    LeafNodeSource,
    Lifetime,
    MLSMessage,
    Proposal,
    ProtocolVersion,
    has_unique_types,
)

from .config import SUITE, default_capabilities
from .results import LeafCheck

__all__ = [
    "adds_of",
    "key_package_of",
    "key_package_and_bytes",
    "Signer",
    "KeyPackageBundle",
    "generate_key_package",
    "validate_key_package",
    "check_lifetime",
    "DEFAULT_LIFETIME_S",
    "CLOCK_SKEW_S",
]

#: Default KeyPackage lifetime: 90 days.
DEFAULT_LIFETIME_S = 90 * 24 * 3600
#: A KeyPackage's not_before lies this far in the past, for peers whose clocks run behind.
CLOCK_SKEW_S = 3600

_SIGNER_VERSION = 1
_BUNDLE_VERSION = 1
# An Ed25519 signature (RFC 8032) and an X25519 public key (RFC 7748).
_SIG_LEN = 64
_KEY_LEN = 32
# Where a LeafNode's encryption_key (its first field, opaque<V>) starts in its encoding.
_LEAF_KEY_AT = len(opaque(bytes(_KEY_LEN))) - _KEY_LEN


@dataclass(frozen=True, slots=True, repr=False)
class Signer:
    """A credential and the Ed25519 key pair that signs for it.

    ``private_key`` is the 32-byte seed; it never appears in ``repr``.
    """

    credential: Credential
    private_key: bytes
    public_key: bytes

    def __repr__(self) -> str:
        return f"Signer(credential={self.credential!r}, public_key={self.public_key.hex()})"

    @classmethod
    def generate(cls, crypto: CryptoProvider, identity: bytes) -> Signer:
        """A fresh key pair for a basic credential with ``identity``."""
        private, public = crypto.sign_keygen()
        return cls(Credential.basic(identity), private, public)

    @classmethod
    def from_private_key(cls, crypto: CryptoProvider, credential: Credential, private_key: bytes) -> Signer:
        """The signer of an existing key (its public key is derived)."""
        return cls(credential, private_key, crypto.sign_public(private_key))

    @property
    def identity(self) -> bytes:
        """The basic credential's identity (empty for other credential types)."""
        return self.credential.identity

    def encode(self) -> bytes:
        """Versioned encoding (holds the private key: store it as a secret)."""
        w = Writer()
        w.u8(_SIGNER_VERSION)
        self.credential.write(w)
        w.opaque(self.private_key)
        w.opaque(self.public_key)
        return w.getvalue()

    @classmethod
    @stored_state
    def decode(cls, data: bytes) -> Signer:
        """Inverse of :meth:`encode`; ``MlsDecodeError`` for anything else."""

        def read(r: Reader) -> Signer:
            if r.u8() != _SIGNER_VERSION:
                raise MlsDecodeError("unknown signer encoding version", reason=MlsReason.CORRUPT_STATE)
            cred = Credential.read(r)
            private = r.opaque(64)
            public = r.opaque(64)
            if len(private) != 32 or len(public) != 32:
                raise MlsDecodeError("signer keys must be 32 bytes", reason=MlsReason.CORRUPT_STATE)
            return cls(cred, private, public)

        return decode_with(read, data)


class KeyPackageBundle:
    """A KeyPackage with its private keys (RFC 9420 §10).

    ``key_package`` (the struct), ``key_package_bytes`` (its encoding, what
    the KeyPackageRef hashes), ``ref`` (the KeyPackageRef a Welcome names),
    ``init_private`` and ``encryption_private`` (HPKE private keys: secret,
    never in ``repr``). :meth:`message` is the TLS-serialized MLSMessage to
    publish. Treat it as immutable.
    """

    __slots__ = ("key_package", "key_package_bytes", "ref", "init_private", "encryption_private")

    def __init__(
        self,
        crypto: CryptoProvider,
        key_package: KeyPackage,
        init_private: bytes,
        encryption_private: bytes,
        *,
        key_package_bytes: bytes | None = None,
    ) -> None:
        self.key_package = key_package
        self.key_package_bytes = encode(key_package) if key_package_bytes is None else key_package_bytes
        self.ref = make_key_package_ref(crypto, self.key_package_bytes)
        self.init_private = init_private
        self.encryption_private = encryption_private

    def __repr__(self) -> str:
        return f"KeyPackageBundle(ref={self.ref.hex()})"

    def message(self) -> bytes:
        """The KeyPackage as a TLS-serialized MLSMessage (wire format 5)."""
        return b"\x00\x01\x00\x05" + self.key_package_bytes

    def to_bytes(self) -> bytes:
        """Versioned, deterministic encoding with the private keys (store as a secret)."""
        return bytes((_BUNDLE_VERSION,)) + opaque(self.key_package_bytes) + opaque(self.init_private) + opaque(self.encryption_private)

    @classmethod
    @stored_state
    def from_bytes(cls, crypto: CryptoProvider, data: bytes) -> KeyPackageBundle:
        """Inverse of :meth:`to_bytes`. Checks that the private keys match the
        public ones; ``MlsError`` (``MlsDecodeError``) otherwise."""
        r = Reader(data)
        try:
            if r.u8() != _BUNDLE_VERSION:
                raise MlsDecodeError("unknown KeyPackage bundle version", reason=MlsReason.CORRUPT_STATE)
            kp_bytes = r.opaque()
            init_private = r.opaque(64)
            enc_private = r.opaque(64)
            r.expect_end()
        except MlsDecodeError:
            raise
        kp = decode_exact(KeyPackage, kp_bytes)
        if crypto.dh_public(init_private) != kp.init_key:
            raise MlsError(
                "the bundle's init private key does not match its KeyPackage",
                reason=MlsReason.CORRUPT_STATE,
            )
        if crypto.dh_public(enc_private) != kp.leaf_node.encryption_key:
            raise MlsError(
                "the bundle's encryption private key does not match its KeyPackage",
                reason=MlsReason.CORRUPT_STATE,
            )
        return cls(crypto, kp, init_private, enc_private, key_package_bytes=kp_bytes)


def generate_key_package(
    crypto: CryptoProvider,
    signer: Signer,
    *,
    capabilities: Capabilities | None = None,
    now: int,
    lifetime_s: int = DEFAULT_LIFETIME_S,
    extensions: tuple[Extension, ...] = (),
    leaf_extensions: tuple[Extension, ...] = (),
) -> KeyPackageBundle:
    """A fresh KeyPackage for ``signer`` with new init and encryption key pairs.

    Valid from ``now - CLOCK_SKEW_S`` to ``now + lifetime_s`` (``now``: the
    application's time, in seconds since the Unix epoch; the engine reads no clock). ``capabilities``
    default to :func:`~.config.default_capabilities`; every type in
    ``leaf_extensions`` must be listed in them.
    """
    caps = default_capabilities() if capabilities is None else capabilities
    check_extensions_listed(leaf_extensions, caps, "the KeyPackage's leaf")
    if not has_unique_types(extensions) or not has_unique_types(leaf_extensions):
        raise MlsError("duplicate extension types", reason=MlsReason.INVALID_ARGUMENT)
    t = now
    lifetime = Lifetime(max(0, t - CLOCK_SKEW_S), t + lifetime_s)
    # The two key pairs and the two signatures in ONE provider call (one crossing in
    # the browser): the signed contents are built with zeros where the new public
    # keys and the leaf's signature go, and the provider writes them in (fixed sizes).
    leaf_tbs = LeafNode(
        bytes(_KEY_LEN), signer.public_key, signer.credential, caps, LeafNodeSource.KEY_PACKAGE, lifetime, None, leaf_extensions
    ).tbs()
    # KeyPackageTBS = version, suite, init_key, LeafNode (tbs || signature), extensions.
    w = Writer()
    w.u16(ProtocolVersion.MLS10)
    w.u16(SUITE)
    w.opaque(bytes(_KEY_LEN))
    init_at = len(w.getvalue()) - _KEY_LEN
    leaf_at = len(w.getvalue())
    w.raw(leaf_tbs)
    w.opaque(bytes(_SIG_LEN))
    sig_at = len(w.getvalue()) - _SIG_LEN
    w.structs(extensions)
    template = w.getvalue()
    leaf_content = sign_content(b"LeafNodeTBS", leaf_tbs)
    kp_content = sign_content(b"KeyPackageTBS", template)
    leaf_base, kp_base = len(leaf_content) - len(leaf_tbs), len(kp_content) - len(template)
    init, enc, leaf_sig_src = 0, 1, -1  # key pair 0 is the init key, 1 the leaf's; template 0's signature
    splices = [
        (0, leaf_base + _LEAF_KEY_AT, enc),
        (1, kp_base + init_at, init),
        (1, kp_base + leaf_at + _LEAF_KEY_AT, enc),
        (1, kp_base + sig_at, leaf_sig_src),
    ]
    pairs, (leaf_sig, kp_sig) = keygen_and_sign(crypto, signer.private_key, 2, [leaf_content, kp_content], splices)
    (init_private, init_public), (enc_private, enc_public) = pairs
    filled = bytearray(template)
    filled[init_at : init_at + _KEY_LEN] = init_public
    filled[leaf_at + _LEAF_KEY_AT : leaf_at + _LEAF_KEY_AT + _KEY_LEN] = enc_public
    filled[sig_at : sig_at + _SIG_LEN] = leaf_sig
    kp_tbs = bytes(filled)
    leaf = LeafNode(
        enc_public,
        signer.public_key,
        signer.credential,
        caps,
        LeafNodeSource.KEY_PACKAGE,
        lifetime,
        None,
        leaf_extensions,
        leaf_sig,
    )
    kp = KeyPackage(
        version=ProtocolVersion.MLS10,
        cipher_suite=SUITE,
        init_key=init_public,
        leaf_node=leaf,
        extensions=extensions,
        signature=kp_sig,
    )
    return KeyPackageBundle(crypto, kp, init_private, enc_private, key_package_bytes=kp_tbs + opaque(kp_sig))


def check_lifetime(lifetime: Lifetime | None, now: int) -> None:
    """``MlsError`` unless ``now`` lies within ``lifetime``."""
    if lifetime is None:
        raise MlsError("a key_package leaf node needs a lifetime", reason=MlsReason.BAD_LIFETIME)
    if not lifetime.not_before <= now <= lifetime.not_after:
        raise MlsError("the KeyPackage is outside its lifetime", reason=MlsReason.BAD_LIFETIME)


def validate_key_package_header(crypto: CryptoProvider, kp: KeyPackage, encoding: bytes | None = None) -> None:
    """§10.1 checks outside the leaf node: version, suite, the KeyPackage signature,
    distinct init and encryption keys, unique extension types. ``encoding`` (the
    KeyPackage's bytes, if at hand) saves re-encoding it for the signature check."""
    if kp.version != ProtocolVersion.MLS10:
        raise MlsError(f"KeyPackage of protocol version {kp.version}", reason=MlsReason.UNSUPPORTED)
    if kp.cipher_suite != SUITE:
        raise MlsError(f"KeyPackage of cipher suite {kp.cipher_suite}, not {int(SUITE)}", reason=MlsReason.UNSUPPORTED)
    leaf = kp.leaf_node
    if leaf.leaf_node_source != LeafNodeSource.KEY_PACKAGE:
        raise MlsError("a KeyPackage's leaf node must have source key_package", reason=MlsReason.BAD_KEY_PACKAGE)
    if kp.init_key == leaf.encryption_key:
        raise MlsError("the KeyPackage's init key equals its encryption key", reason=MlsReason.BAD_KEY_PACKAGE)
    if not has_unique_types(kp.extensions):
        raise MlsError("the KeyPackage has duplicate extension types", reason=MlsReason.BAD_KEY_PACKAGE)
    verify_with_label(crypto, leaf.signature_key, b"KeyPackageTBS", _key_package_tbs(kp, encoding), kp.signature)


def _key_package_tbs(kp: KeyPackage, encoding: bytes | None) -> bytes:
    sig_field = opaque(kp.signature)
    if encoding is not None and encoding.endswith(sig_field):
        return encoding[: len(encoding) - len(sig_field)]
    return kp.tbs()


def key_package_signatures(kp: KeyPackage, encoding: bytes | None = None) -> list[tuple[bytes, bytes, bytes]]:
    """The two ``(public key, signed content, signature)`` an Add's validation
    verifies: the KeyPackage's and its leaf node's (for
    :func:`~ping_core.mls.crypto.provider.prefetch_verify`)."""
    leaf = kp.leaf_node
    return [
        (leaf.signature_key, sign_content(b"KeyPackageTBS", _key_package_tbs(kp, encoding)), kp.signature),
        (leaf.signature_key, sign_content(b"LeafNodeTBS", leaf.tbs(None, None)), leaf.signature),
    ]


def validate_key_package(
    crypto: CryptoProvider,
    key_package: KeyPackage | bytes,
    *,
    now: int | None,
    max_lifetime_s: int | None = None,
    leaf_check: LeafCheck | None = None,
) -> KeyPackage:
    """Validate a KeyPackage on its own (no group): §10.1 and the group-independent
    parts of §7.3. Accepts the struct, its encoding or an MLSMessage.

    ``now``: the application's time in seconds since the Unix epoch; the
    lifetime must cover it (§10.1). ``None`` checks no time (the caller
    decided not to; the engine reads no clock).

    ``max_lifetime_s``: the application's maximum total lifetime (§7.2): a
    KeyPackage whose ``not_after - not_before`` is longer is refused, whether
    or not ``now`` is given. ``None`` (the
    default) sets no maximum.

    ``leaf_check``: the application's leaf policy (see
    :data:`.results.LeafCheck`), called as ``leaf_check(leaf, None)`` once
    every other check passed; what it raises propagates unchanged.

    Returns the KeyPackage; raises ``MlsError`` (``InvalidSignature``,
    ``MlsDecodeError``) otherwise.
    """
    kp = key_package_of(key_package)
    validate_key_package_header(crypto, kp)
    leaf = kp.leaf_node
    verify_with_label(crypto, leaf.signature_key, b"LeafNodeTBS", leaf.tbs(), leaf.signature)
    check_extensions_listed(leaf.extensions, leaf.capabilities, "the KeyPackage's leaf")
    if not has_unique_types(leaf.extensions):
        raise MlsError("the leaf node has duplicate extension types", reason=MlsReason.BAD_KEY_PACKAGE)
    check_lifetime_span(leaf.lifetime, max_lifetime_s, "the KeyPackage's leaf")
    if now is not None:
        check_lifetime(leaf.lifetime, now)
    if leaf_check is not None:
        leaf_check(leaf, None)
    return kp


def adds_of(values: Sequence[KeyPackage | KeyPackageBundle | bytes]) -> tuple[list[Proposal], dict[int, bytes]]:
    """Add proposals for ``values`` (KeyPackages as structs, bundles, encodings or
    MLSMessages), and each KeyPackage's encoding by ``id`` (kept as received)."""
    raw_kps: dict[int, bytes] = {}
    adds: list[Proposal] = []
    for value in values:
        kp, raw = key_package_and_bytes(value)
        raw_kps[id(kp)] = raw
        adds.append(Add(kp))
    return adds, raw_kps


def key_package_and_bytes(value: KeyPackage | KeyPackageBundle | bytes) -> tuple[KeyPackage, bytes]:
    """A KeyPackage and its encoding (kept as received when given as bytes)."""
    if isinstance(value, KeyPackageBundle):
        return value.key_package, value.key_package_bytes
    if isinstance(value, bytes):
        kp = key_package_of(value)
        return kp, value[4:] if value[:4] == b"\x00\x01\x00\x05" else value
    kp = key_package_of(value)
    return kp, encode(kp)


def key_package_of(value: KeyPackage | KeyPackageBundle | bytes) -> KeyPackage:
    """A KeyPackage from a struct, a bundle, its encoding or its MLSMessage."""
    if isinstance(value, KeyPackage):
        return value
    if isinstance(value, KeyPackageBundle):
        return value.key_package
    if not isinstance(value, bytes):
        raise MlsError("a KeyPackage must be a KeyPackage, a bundle or bytes", reason=MlsReason.INVALID_ARGUMENT)
    if value[:4] == b"\x00\x01\x00\x05":
        body = decode_exact(MLSMessage, value).body
        if isinstance(body, KeyPackage):
            return body
    return decode_exact(KeyPackage, value)
