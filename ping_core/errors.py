"""The one exception hierarchy of the Ping SDK.

Every failure that crosses a public API of ``ping_core`` (and of the MLS engine
``ping_core.mls``) is a :class:`PingError`. Callers branch on the class and on
structured fields, never on message text. Messages never contain secrets.

This module imports nothing else from ``ping_core``: it is the one module the
sans-IO MLS engine shares with the SDK around it.
"""

from __future__ import annotations

__all__ = [
    "PingError",
    "TransportError",
    "DEFINITE_REJECTION_CODES",
    "StorageError",
    "StorageLocked",
    "MlsError",
    "MlsDecodeError",
    "CryptoError",
    "InvalidSignature",
    "DecryptionFailed",
    "InvalidKey",
    "IdentityError",
    "InvalidInput",
    "UnknownConversation",
    "DeviceRevoked",
]


class PingError(Exception):
    """Base class of every error the SDK raises on purpose."""


# Server error codes that prove the server did NOT apply a request. Anything
# else (a timeout, a 5xx, a refused connection) is ambiguous: the request may
# have been applied before the answer was lost.
DEFINITE_REJECTION_CODES = frozenset(
    {
        "epoch_advanced",
        "invalid_request",
        "not_found",
        "conflict",
        "forbidden",
        "device_revoked",
        "unauthorized",
        "too_large",
    }
)


class TransportError(PingError):
    """A request to the delivery service failed.

    ``status`` is the HTTP status when the server answered (``None`` when no
    answer arrived: timeout, refused connection); ``code`` is the server's
    machine-readable error code when it sent one.
    """

    def __init__(self, message: str, *, status: int | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code

    @property
    def is_definite_rejection(self) -> bool:
        """True when the server certainly did not apply the request.

        That is an HTTP 4xx answer or one of the known rejection codes. Only a
        definite rejection makes it safe to roll a staged commit back.
        """
        if self.status is not None and 400 <= self.status < 500:
            return True
        return self.code in DEFINITE_REJECTION_CODES

    def __repr__(self) -> str:
        return f"TransportError({str(self)!r}, status={self.status!r}, code={self.code!r})"


class StorageError(PingError):
    """Persistent state could not be read or written (or failed to decrypt)."""


class StorageLocked(StorageError):
    """The stored state is sealed under a passphrase this context has not been given (or was given wrongly)."""


class MlsError(PingError):
    """The MLS engine refused an operation or a message; the group is unchanged."""


class MlsDecodeError(MlsError):
    """Bytes that are not a well-formed encoding of the expected MLS structure."""


class CryptoError(MlsError):
    """A cryptographic operation failed."""


class InvalidSignature(CryptoError):
    """A signature did not verify."""


class DecryptionFailed(CryptoError):
    """An AEAD ciphertext did not authenticate (tampered, or wrong key)."""


class InvalidKey(CryptoError):
    """A key has the wrong length or is not a valid key (e.g. a low-order point)."""


class IdentityError(PingError):
    """An identity, device binding or key is invalid or does not verify."""


class DeviceRevoked(IdentityError):
    """This device was revoked by its account: its conversations are wiped and the client is
    locked (every later ``MessagingClient.init`` on its storage raises this too).

    Learnt from the account's signed revocation in a commit that removes this
    device, or from the delivery service (403 ``device_revoked``).
    """


class InvalidInput(PingError):
    """An argument or a received object is malformed or not acceptable."""


class UnknownConversation(PingError):
    """The conversation is not open on this client."""
