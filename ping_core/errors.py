"""The one exception hierarchy of the Ping SDK.

Every failure that crosses a public API of ``ping_core`` (and of the MLS engine
``ping_core.mls``) is a :class:`PingError`. Callers branch on the class and on
structured fields, never on message text. Messages never contain secrets.

Every :class:`MlsError` (and every subclass: ``MlsDecodeError``,
``CryptoError``, ``InvalidSignature``, ``DecryptionFailed``, ``InvalidKey``)
carries a :class:`MlsReason` in ``.reason``, given at each raise site (the
constructor has no default, and tests/test_error_reasons.py walks the source
to prove every raise names one). A reason says what was wrong in terms a
caller can act on, and ``.origin`` / ``.is_peer_fault`` say whose fault it is:

* :attr:`MlsOrigin.LOCAL`: this side. The caller misused the API (a bad
  argument, a call the group's state does not allow, an option this engine
  does not implement), or this device's own stored state or crypto backend is
  broken. Retrying the same call fails again (a backend failure aside): fix
  the call or the state.
* :attr:`MlsOrigin.PEER`: what a peer or the server sent is bad (malformed,
  for another group or epoch, from an unknown sender, a bad signature, tag,
  tree, parent hash or path, a replayed or too old generation, a limit
  exceeded, a version or type this engine does not support). The group is
  unchanged; drop the message (and report the sender if that applies).

A decoder of this device's own stored state is marked :func:`stored_state`:
what fails there is :attr:`MlsReason.CORRUPT_STATE`, never a peer's fault.
Callers branch on ``reason`` (or ``origin``) and on the class, not on the
message, which is for people and may change.

This module imports nothing else from ``ping_core``: it is the one module the
sans-IO MLS engine shares with the SDK around it.
"""

from __future__ import annotations

import enum
import functools
from typing import Callable, ParamSpec, TypeVar

__all__ = [
    "PingError",
    "TransportError",
    "DEFINITE_REJECTION_CODES",
    "StorageError",
    "StorageLocked",
    "MlsError",
    "MlsReason",
    "MlsOrigin",
    "stored_state",
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


class MlsOrigin(enum.Enum):
    """Whose fault an :class:`MlsError` is (see the module docstring)."""

    LOCAL = "local"
    PEER = "peer"


class MlsReason(enum.Enum):
    """Why the MLS engine refused an operation or a message.

    Each reason belongs to one :class:`MlsOrigin` (:attr:`origin`). RFC 9420
    section numbers name where the rule a peer broke is stated.
    """

    # --- LOCAL: the caller, or this device's own state -----------------------
    #: An argument has the wrong type, length or range, or names something
    #: that does not exist (a blank leaf, a node outside the tree).
    INVALID_ARGUMENT = "invalid_argument"
    #: The call is not allowed in the group's current state (proposals pending,
    #: no longer a member, reinitialised, a secret already deleted).
    WRONG_STATE = "wrong_state"
    #: The caller asked for an option this engine or its backend does not
    #: implement (another cipher suite, no crypto backend installed).
    UNSUPPORTED_OPTION = "unsupported_option"
    #: Stored state (group records, bundles, ratchet records) is malformed or
    #: inconsistent: it was not written by this engine, or was corrupted.
    CORRUPT_STATE = "corrupt_state"
    #: The crypto backend failed for a reason of its own (not a bad input).
    BACKEND_FAILURE = "backend_failure"

    # --- PEER: what a peer or the server sent --------------------------------
    #: Bytes that are not a well-formed encoding of the expected structure
    #: (RFC 9420 §2.1), or a structure of the wrong kind where one was expected.
    MALFORMED = "malformed"
    #: A protocol version, cipher suite, extension, proposal or credential
    #: type this engine (or a member) does not support (RFC 9420 §7.2, §12.1).
    UNSUPPORTED = "unsupported"
    #: A size or count over a bound (of the codec, the tree or the config).
    LIMIT_EXCEEDED = "limit_exceeded"
    #: The message is for another group.
    WRONG_GROUP = "wrong_group"
    #: The message is for another epoch than the one it must be for (§6).
    WRONG_EPOCH = "wrong_epoch"
    #: The sender is not a member (a blank leaf, outside the tree, an unknown
    #: external sender), or its sender type may not send this (§6, §12.1).
    UNKNOWN_SENDER = "unknown_sender"
    #: The sender is known but its sender type may not send this content.
    SENDER_NOT_ALLOWED = "sender_not_allowed"
    #: A signature does not verify (§5.1.2, §6.1).
    BAD_SIGNATURE = "bad_signature"
    #: A membership tag or confirmation tag does not verify (§6.2, §8.1).
    BAD_TAG = "bad_tag"
    #: A ciphertext does not decrypt (AEAD or HPKE, §6.3, §12.4.3.1).
    DECRYPTION_FAILED = "decryption_failed"
    #: A public key is not a valid key (length, small order, all-zero DH).
    INVALID_KEY = "invalid_key"
    #: A ratchet tree breaks an invariant: its shape, tree hash, unmerged
    #: leaves or key uniqueness (§7.8, §7.9, §12.4.3.1).
    BAD_TREE = "bad_tree"
    #: A parent hash does not verify (§7.9.2).
    BAD_PARENT_HASH = "bad_parent_hash"
    #: An UpdatePath does not fit the tree or its derived keys differ (§7.6, §12.4.2).
    BAD_PATH = "bad_path"
    #: A LeafNode is not valid: source, lifetime, capabilities, extensions,
    #: credential (§7.3).
    BAD_LEAF = "bad_leaf"
    #: A LeafNode's or KeyPackage's lifetime is missing or does not cover the current time
    #: (expired, or not valid yet) (§7.2, §10.1).
    BAD_LIFETIME = "bad_lifetime"
    #: A lifetime that spans more than the application accepts (``max_lifetime_s``, §7.2).
    LIFETIME_TOO_LONG = "lifetime_too_long"
    #: A KeyPackage is not valid (§10.1).
    BAD_KEY_PACKAGE = "bad_key_package"
    #: A proposal, or the proposal list of a commit, breaks a rule (§12.1, §12.2).
    BAD_PROPOSAL = "bad_proposal"
    #: A commit breaks a rule: missing path, external commit rules (§12.4).
    BAD_COMMIT = "bad_commit"
    #: A Welcome or GroupInfo does not fit (not for our KeyPackages, another
    #: suite, a GroupInfo that differs from the group's) (§12.4.3).
    BAD_WELCOME = "bad_welcome"
    #: The message needs a pre-shared key this member does not hold (§8.4).
    UNKNOWN_PSK = "unknown_psk"
    #: A message key's generation was already used: a replay (§9.2).
    REPLAY = "replay"
    #: The message is too old: its generation is beyond the out-of-order
    #: tolerance, or its epoch's secrets were deleted (§9.2, §14).
    TOO_OLD = "too_old"
    #: The message is too far ahead: a generation beyond the forward distance,
    #: or a future epoch (§9.2).
    TOO_FAR_AHEAD = "too_far_ahead"

    @property
    def origin(self) -> MlsOrigin:
        """Whose fault an error of this reason is."""
        return MlsOrigin.LOCAL if self in _LOCAL_REASONS else MlsOrigin.PEER


_LOCAL_REASONS = frozenset(
    {
        MlsReason.INVALID_ARGUMENT,
        MlsReason.WRONG_STATE,
        MlsReason.UNSUPPORTED_OPTION,
        MlsReason.CORRUPT_STATE,
        MlsReason.BACKEND_FAILURE,
    }
)


class MlsError(PingError):
    """The MLS engine refused an operation or a message; the group is unchanged.

    ``reason`` (required, keyword-only) says why; ``origin`` and
    ``is_peer_fault`` are derived from it.
    """

    def __init__(self, message: str, *, reason: MlsReason) -> None:
        if not isinstance(reason, MlsReason):
            raise TypeError(f"reason must be an MlsReason, not {type(reason).__name__}")
        super().__init__(message)
        self.reason = reason

    @property
    def origin(self) -> MlsOrigin:
        """:attr:`MlsOrigin.LOCAL` for the caller's or this device's fault, else :attr:`MlsOrigin.PEER`."""
        return self.reason.origin

    @property
    def is_peer_fault(self) -> bool:
        """True when what a peer or the server sent is bad (not the caller's call)."""
        return self.reason.origin is MlsOrigin.PEER

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self)!r}, reason={self.reason})"


_P = ParamSpec("_P")
# Reasons ``stored_state`` does not relabel: already said, or the environment's.
_KEPT_IN_STORED_STATE = frozenset({MlsReason.CORRUPT_STATE, MlsReason.BACKEND_FAILURE, MlsReason.UNSUPPORTED_OPTION})
_T = TypeVar("_T")


def stored_state(decode: Callable[_P, _T]) -> Callable[_P, _T]:
    """Mark ``decode`` as reading this device's own stored state (bytes this engine wrote).

    Whatever refuses those bytes inside (a malformed encoding, a bad tree, a stored value out
    of an argument's range) is re-raised as the same class with reason
    :attr:`MlsReason.CORRUPT_STATE`: neither a peer nor the call is at fault. A failure of the
    environment (:attr:`MlsReason.BACKEND_FAILURE`, :attr:`MlsReason.UNSUPPORTED_OPTION`) is
    left as it is. ``decode`` takes nothing but the stored data and the crypto provider: a
    caller's other arguments are checked before it runs.
    """

    @functools.wraps(decode)
    def wrapper(*args: _P.args, **kwargs: _P.kwargs) -> _T:
        try:
            return decode(*args, **kwargs)
        except MlsError as exc:
            if exc.reason in _KEPT_IN_STORED_STATE or type(exc).__init__ is not MlsError.__init__:
                raise
            raise type(exc)(f"stored state: {exc}", reason=MlsReason.CORRUPT_STATE) from exc

    return wrapper


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
