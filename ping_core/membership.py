"""Authenticated membership: every MLS leaf is bound to its account, and revoked devices stay out.

A Ping leaf's basic credential carries the account's binding of the device
(``ping_core.identity.credential_identity``: user id, account public key, the
account key's signature over the device id = SHA-256 of the leaf's signature
key). :class:`AccountVerifier` is the SDK's side of RFC 9420 §5.3.1 ("the
application MUST validate credentials"): the engine calls
:meth:`AccountVerifier.check_leaf` for every leaf that enters or changes in a
tree (Adds, Updates, commit paths, external joins) and the SDK only ever
attributes a member or a message to the account whose binding verifies.

Rules (each refusal is ``IdentityError``, raised before the group changes):

* a new leaf must carry a binding that verifies, for a device not known to be
  revoked;
* a leaf that replaces another (an Update, a commit's path) must keep its
  device key and stay with the same account (a device cannot move to another
  account); its credential may change from the legacy form to the binding;
* on join, leaves made before bindings existed (a bare 32-byte user id) are
  tolerated but never attributed: :meth:`user_of` answers ``None`` for them,
  so they show as unverified members and their messages are refused. They
  become verified when their device commits its own path with a binding
  (every Ping client does so once, :meth:`needs_migration`).

Revocations (``ping_core.identity.DeviceRevocation``) seen in commits are
remembered in the MLS state store under ``revoked/<device id hex>`` and
checked for every leaf from then on, whatever the delivery service says.
"""

from __future__ import annotations

from typing import Callable, Protocol

from ping_core.errors import IdentityError, InvalidInput
from ping_core.identity import (
    DeviceRevocation,
    claimed_user_of_credential,
    verify_credential_identity,
)
from ping_core.ids import DeviceId, UserId
from ping_core.mls.structs import Credential, CredentialType, LeafNode
from ping_core.storage import MlsStateStore

__all__ = ["AccountVerifier", "REVOKED_PREFIX"]

REVOKED_PREFIX = "revoked/"


class HasCredential(Protocol):
    """A leaf or a roster entry: what attributes a member to an account."""

    @property
    def credential(self) -> Credential: ...

    @property
    def signature_key(self) -> bytes: ...


class AccountVerifier:
    """Verifies leaves against their account bindings and knows the revoked devices."""

    __slots__ = ("_revoked",)

    def __init__(self, store: MlsStateStore | None = None) -> None:
        """With a client's ``store``: the revocations it remembered. Without: a verifier of
        bindings alone (what a delivery service checks in the leaves of the groups it follows)."""
        self._revoked: dict[DeviceId, DeviceRevocation] = {}
        records = store.items(REVOKED_PREFIX) if store is not None else []
        for _, raw in records:
            try:
                rev = DeviceRevocation.decode(raw)
                rev.verify()
            except (InvalidInput, IdentityError):
                continue  # a corrupt record proves nothing; the commit carrying it is gone
            self._revoked[rev.device_id] = rev

    # -- facts -----------------------------------------------------------------

    def is_revoked(self, device_id: DeviceId) -> bool:
        return device_id in self._revoked

    def revocation(self, device_id: DeviceId) -> DeviceRevocation | None:
        return self._revoked.get(device_id)

    def user_of(self, leaf: HasCredential) -> UserId | None:
        """The verified account of ``leaf``; ``None`` when its credential proves none (legacy or
        foreign credential, bad binding) or its device is revoked."""
        try:
            return self._verified(leaf)
        except IdentityError:
            return None

    def _verified(self, leaf: HasCredential) -> UserId:
        cred = leaf.credential
        if cred.credential_type != CredentialType.BASIC:
            raise IdentityError("not a Ping credential (only basic credentials carry account bindings)")
        user = verify_credential_identity(cred.identity, leaf.signature_key)
        if DeviceId.from_public_key(leaf.signature_key) in self._revoked:
            raise IdentityError("the leaf's device was revoked by its account")
        return user

    # -- the engine's leaf check ---------------------------------------------------

    def check_leaf(self, new: LeafNode, previous: LeafNode | None) -> None:
        """The strict check for every leaf that enters or changes (see the module docstring)."""
        user = self._verified(new)
        if previous is not None:
            if new.signature_key != previous.signature_key:
                raise IdentityError("a leaf cannot change its device key (the device id is its hash)")
            before = claimed_user_of_credential(previous.credential.identity)
            if before != user:
                raise IdentityError("a leaf cannot move to another account")

    def check_joined_leaf(self, new: LeafNode, previous: LeafNode | None) -> None:
        """The check for the leaves of a tree received on join: strict, except that a legacy leaf
        (bare user id, made before account bindings) is tolerated as an unverified member."""
        cred = new.credential
        if (
            previous is None
            and cred.credential_type == CredentialType.BASIC
            and claimed_user_of_credential(cred.identity) is not None
            and len(cred.identity) == 32
        ):
            if DeviceId.from_public_key(new.signature_key) in self._revoked:
                raise IdentityError("the leaf's device was revoked by its account")
            return
        self.check_leaf(new, previous)

    @staticmethod
    def needs_migration(leaf: LeafNode, credential_identity: bytes) -> bool:
        """Whether our own ``leaf`` still carries another credential than ours (a legacy one)."""
        return leaf.credential.identity != credential_identity

    # -- learning revocations ------------------------------------------------------

    def parse(self, authenticated_data: bytes) -> DeviceRevocation | None:
        """The verified revocation a commit's authenticated data carries, or ``None`` (none, or
        bytes that are not a valid one: ignored, they prove nothing)."""
        if not authenticated_data or authenticated_data[0] & 0xE0 != 0xA0:  # a CBOR map
            return None
        try:
            rev = DeviceRevocation.decode(authenticated_data)
            rev.verify()
        except (InvalidInput, IdentityError):
            return None
        return rev

    def remember(self, rev: DeviceRevocation, put: Callable[[str, bytes], None]) -> bool:
        """Record a verified revocation (written with ``put(key, value)``); True when it is new."""
        if rev.device_id in self._revoked:
            return False
        self._revoked[rev.device_id] = rev
        put(REVOKED_PREFIX + rev.device_id.as_hex(), rev.encode())
        return True

    def forget(self, device_id: DeviceId) -> None:
        """Undo :meth:`remember` in memory (its write was reverted)."""
        self._revoked.pop(device_id, None)

