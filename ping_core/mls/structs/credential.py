"""Credential (RFC 9420 §5.3): basic identities and X.509 chains."""

from __future__ import annotations

from dataclasses import dataclass

from ping_core.errors import MlsDecodeError, MlsReason
from ping_core.mls.tls import Reader, Writer

from .enums import CredentialType
from .limits import MAX_CERT_CHAIN, MAX_CERTIFICATE, MAX_IDENTITY

__all__ = ["Credential"]


@dataclass(frozen=True, slots=True)
class Credential:
    """``struct { CredentialType credential_type; select {...} } Credential``.

    A ``basic`` credential carries ``identity``; an ``x509`` one carries
    ``certificates`` (DER, leaf first) and is decoded and re-encoded as is —
    the chain is not validated here. Any other credential type cannot be
    skipped (its body has no length prefix) and fails to decode.
    """

    credential_type: CredentialType
    identity: bytes = b""
    certificates: tuple[bytes, ...] = ()

    @classmethod
    def basic(cls, identity: bytes) -> Credential:
        return cls(CredentialType.BASIC, identity=identity)

    @classmethod
    def x509(cls, certificates: tuple[bytes, ...]) -> Credential:
        return cls(CredentialType.X509, certificates=tuple(certificates))

    def write(self, w: Writer) -> None:
        ct = self.credential_type
        w.u16(ct)
        if ct == CredentialType.BASIC:
            if self.certificates:
                raise ValueError("a basic credential has no certificates")
            w.opaque(self.identity)
        elif ct == CredentialType.X509:
            if self.identity:
                raise ValueError("an x509 credential has no identity field")
            w.opaques(self.certificates)
        else:
            raise ValueError(f"cannot encode credential type {ct}")

    @classmethod
    def read(cls, r: Reader) -> Credential:
        ct = r.u16()
        if ct == 1:
            return cls(CredentialType.BASIC, r.opaque(MAX_IDENTITY))
        if ct == 2:
            return cls(CredentialType.X509, b"", r.opaques(MAX_CERTIFICATE, MAX_CERT_CHAIN))
        raise MlsDecodeError(f"unknown credential type {ct}", reason=MlsReason.MALFORMED)
