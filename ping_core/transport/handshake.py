"""What a delivery service verifies of a conversation's MLS handshake traffic. Pure (no I/O).

The service cannot read a conversation, but it can follow its group's public
state (:class:`ping_core.mls.group.PublicGroup`: GroupContext, ratchet tree,
transcript hashes) when the members send their handshake messages as MLS
PublicMessages and upload, with each Commit, the GroupInfo of the epoch it
starts. Then a Commit is accepted only when a current member (its own device:
the caller) signed it for the current epoch and it is valid as a member would
check it, and the uploaded GroupInfo matches the resulting state; membership
follows the tree (removed leaves end their devices' memberships; Welcomes go
only to devices the latest Commit added).

A conversation is *verified* once it has a public state: it gets one from the
first Commit that brings a GroupInfo (the GroupInfo of the epoch that Commit
starts, signed by the caller's leaf: the bootstrap, when nothing before it can
be checked). A conversation without one keeps the routing rules of
``ping_core.transport.base`` (the epoch counter only): conversations made
before this keep working, and go verified with their first Commit that brings
a GroupInfo.

Both services use these functions (``MemoryDeliveryService`` and
``ping_server.delivery``), so their rules are one. Every refusal is a
``TransportError``: 400 ``invalid_commit`` / ``invalid_proposal``.
"""

from __future__ import annotations

from dataclasses import dataclass

from ping_core.errors import IdentityError, MlsError, TransportError
from ping_core.ids import ConversationId, DeviceId
from ping_core.mls.crypto import default_provider
from ping_core.mls.group import PublicGroup
from ping_core.mls.group.join import group_info_of
from ping_core.membership import AccountVerifier
from ping_core.mls.structs import LeafNode
from ping_core.wallclock import wall_clock_s
from ping_core.conversation_name import check_extensions

from .base import INVALID_COMMIT, INVALID_PROPOSAL

__all__ = [
    "INVALID_COMMIT",
    "INVALID_PROPOSAL",
    "MAX_GROUP_INFO_LEN",
    "CheckedCommit",
    "check_commit",
    "check_proposal",
    "encode_devices",
    "decode_devices",
]

# Every leaf a verified conversation takes in must carry its account's binding, as members check
# it (``ping_core.membership``): a leaf made before bindings is tolerated only in the tree a
# conversation is verified from; a replacing leaf keeps its device key and account.
_BINDINGS = AccountVerifier()

#: The largest GroupInfo (MLSMessage, with its ratchet tree) a Commit may bring.
MAX_GROUP_INFO_LEN = 1024 * 1024


@dataclass(frozen=True, slots=True)
class CheckedCommit:
    """A Commit the service may accept, and what accepting it changes.

    ``state``: the conversation's public state after it (``PublicGroup.to_bytes``); ``epoch``: the
    epoch it starts; ``group_info``: the uploaded GroupInfo of that epoch (what members fetch to
    rejoin); ``added``: the devices it added (the only ones its Welcome may go to); ``removed``: the
    devices it removed that have no leaf left (their memberships end at the Commit)."""

    state: bytes
    epoch: int
    group_info: bytes
    added: frozenset[DeviceId]
    removed: frozenset[DeviceId]


def _invalid_commit(message: str) -> TransportError:
    return TransportError(message, status=400, code=INVALID_COMMIT)


def _device(leaf: LeafNode) -> DeviceId:
    """A Ping leaf's device: the id of its signature key (the device's signing key)."""
    return DeviceId.from_public_key(leaf.signature_key)


def check_commit(
    state: bytes | None, conversation_id: ConversationId, caller: DeviceId, epoch: int, payload: bytes, group_info: bytes | None
) -> CheckedCommit | None:
    """Verify the Commit ``payload`` (MLSMessage) the caller posts for ``epoch`` (its envelope's,
    already checked against the conversation's epoch) with the GroupInfo it brings, against the
    conversation's public ``state`` (None: not verified yet).

    * Verified conversation: the Commit must be a PublicMessage commit of the group for the
      current epoch, signed by a current member (or an external joiner) and valid as a member
      checks it (``PublicGroup.process_commit``), its committer's leaf must be the caller's
      device, and ``group_info`` must be the new epoch's (``PublicGroup.check_group_info``).
    Every leaf that enters or changes must carry its account's binding (``ping_core.membership``).

    * Not verified, with a GroupInfo: the bootstrap. The GroupInfo must verify on its own
      (``PublicGroup.from_group_info``: signature, tree; leaf lifetimes are not checked: a
      member keeps its KeyPackage's), be for this conversation's group (group id = the
      conversation id) and for ``epoch + 1``, and be signed by the caller's leaf. The Commit
      itself cannot be checked (nothing before it is known).
    * Not verified, without a GroupInfo: None (the routing rules alone apply).

    ``TransportError`` 400 ``invalid_commit`` otherwise. Pure: nothing is changed."""
    crypto = default_provider()
    if group_info is not None and (type(group_info) is not bytes or not 0 < len(group_info) <= MAX_GROUP_INFO_LEN):
        raise _invalid_commit(f"a GroupInfo is 1..{MAX_GROUP_INFO_LEN} bytes")
    if state is None:
        if group_info is None:
            return None
        try:
            group = PublicGroup.from_group_info(
                crypto, group_info, clock=wall_clock_s, check_lifetimes=False, leaf_check=_BINDINGS.check_joined_leaf,
                extensions_check=check_extensions,
            )
        except (MlsError, IdentityError) as exc:
            raise _invalid_commit(f"the GroupInfo does not verify: {exc}") from None
        if group.group_id != conversation_id.value:
            raise _invalid_commit("the GroupInfo is for another group than this conversation's")
        if group.epoch != epoch + 1:
            raise _invalid_commit(f"the GroupInfo is for epoch {group.epoch}, the Commit starts epoch {epoch + 1}")
        signer = group.member(group_info_of(group_info).signer)
        if signer is None or _device(signer) != caller:
            raise _invalid_commit("the GroupInfo is not signed by the caller's leaf")
        members = frozenset(_device(leaf) for leaf in group.members().values())
        return CheckedCommit(group.to_bytes(), group.epoch, group_info, members - {caller}, frozenset())
    if group_info is None:
        raise _invalid_commit("a Commit of a verified conversation brings the GroupInfo of the epoch it starts")
    try:
        group = PublicGroup.from_bytes(
            crypto, state, clock=wall_clock_s, leaf_check=_BINDINGS.check_leaf, extensions_check=check_extensions
        )
        commit = group.process_commit(payload)
    except (MlsError, IdentityError) as exc:
        raise _invalid_commit(f"the Commit does not verify: {exc}") from None
    committer = commit.tree.leaf(commit.committer)
    if committer is None or _device(committer) != caller:
        raise _invalid_commit("the Commit's committer is not the caller's device")
    group.merge(commit)
    try:
        group.check_group_info(group_info)
    except MlsError as exc:
        raise _invalid_commit(f"the GroupInfo is not the new epoch's: {exc}") from None
    remaining = {_device(leaf) for leaf in group.members().values()}
    removed = frozenset(_device(r.leaf_node) for r in commit.removed) - remaining
    added = frozenset(_device(a.leaf_node) for a in commit.added)
    return CheckedCommit(group.to_bytes(), group.epoch, group_info, added, removed)


def check_proposal(state: bytes, payload: bytes) -> bytes:
    """The public state after the Proposal ``payload`` of a verified conversation: it must be a
    PublicMessage proposal of the current epoch that a member accepts
    (``PublicGroup.process_proposal``; kept so a Commit may name it by reference). 400
    ``invalid_proposal`` otherwise. Pure."""
    crypto = default_provider()
    try:
        group = PublicGroup.from_bytes(
            crypto, state, clock=wall_clock_s, leaf_check=_BINDINGS.check_leaf, extensions_check=check_extensions
        )
        group.process_proposal(payload)
    except (MlsError, IdentityError) as exc:
        raise TransportError(f"the Proposal does not verify: {exc}", status=400, code=INVALID_PROPOSAL) from None
    return group.to_bytes()


def encode_devices(devices: frozenset[DeviceId]) -> bytes:
    """Device ids as stored: their 32-byte values concatenated, in sorted order."""
    return b"".join(sorted(d.value for d in devices))


def decode_devices(data: bytes) -> frozenset[DeviceId]:
    """Inverse of :func:`encode_devices`."""
    return frozenset(DeviceId(bytes(data[i : i + DeviceId.LENGTH])) for i in range(0, len(data), DeviceId.LENGTH))
