"""What the group engine hands back: members, sent messages and processing results.

Every class here is a plain, immutable value. Application data never
appears in a ``repr``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Protocol, Union

from ping_core.mls.structs import ContentType, Credential, Extension, LeafNode, Proposal, ReInit, Sender, SenderType

__all__ = [
    "Member",
    "ProposalMessage",
    "ApplicationMessage",
    "ProposalStored",
    "CommitApplied",
    "ProcessResult",
    "SenderInfo",
    "SenderCheck",
    "LeafCheck",
    "Policy",
]


@dataclass(frozen=True, slots=True)
class Member:
    """One member of the roster: leaf index, credential and keys of its leaf."""

    leaf_index: int
    credential: Credential
    signature_key: bytes
    encryption_key: bytes

    @property
    def identity(self) -> bytes:
        """The basic credential's identity (empty for other credential types)."""
        return self.credential.identity


@dataclass(frozen=True, slots=True)
class ProposalMessage:
    """A proposal we sent: ``message`` (TLS-serialized MLSMessage) and its ProposalRef."""

    message: bytes
    ref: bytes


@dataclass(frozen=True, slots=True)
class ApplicationMessage:
    """A decrypted application message from member ``sender`` (leaf index) in
    ``epoch``, signed with ``sender_signature_key`` (the sender's key in that
    epoch: a late message may come from a member who has left since)."""

    sender: int
    data: bytes = field(repr=False)
    authenticated_data: bytes
    epoch: int
    generation: int
    sender_signature_key: bytes = b""

    def __repr__(self) -> str:
        return (
            f"ApplicationMessage(sender={self.sender}, data=<{len(self.data)} bytes>, "
            f"authenticated_data={self.authenticated_data!r}, epoch={self.epoch}, generation={self.generation})"
        )


@dataclass(frozen=True, slots=True)
class ProposalStored:
    """A proposal was verified and stored for this epoch under ``ref``.

    ``own`` is true when it was our own proposal echoed back (nothing changed).
    """

    ref: bytes
    proposal: Proposal
    sender: Sender
    own: bool = False


@dataclass(frozen=True, slots=True)
class CommitApplied:
    """A commit took the group to ``epoch``.

    ``committer`` is the committer's leaf index in the new epoch (for an
    external commit: the joiner's new leaf). ``added``/``removed``/``updated``
    are leaf indices. ``removed_self``: the commit removed us; the group is
    inactive now. ``own``: it was our own commit; ``already_applied``: our own
    commit echoed back after we merged it (nothing changed). ``reinit``: the
    ReInit the commit carried (the group can no longer send).
    """

    epoch: int
    committer: int
    added: tuple[int, ...] = ()
    removed: tuple[int, ...] = ()
    updated: tuple[int, ...] = ()
    removed_self: bool = False
    own: bool = False
    already_applied: bool = False
    external: bool = False
    extensions_changed: bool = False
    psks: int = 0
    reinit: ReInit | None = None


ProcessResult = Union[ApplicationMessage, ProposalStored, CommitApplied]


@dataclass(frozen=True, slots=True)
class SenderInfo:
    """Who sent a message that :meth:`Group.process_message` is processing, as
    authenticated: what a ``check_sender`` hook gets to accept or refuse it.

    ``sender`` is the framing's Sender (type and index); ``signature_key`` the
    key the message's signature verified with (a member's leaf key in
    ``epoch``, an external sender's key, or for a new member the key of its
    KeyPackage or commit path leaf); ``authenticated_data`` the message's
    authenticated data; ``proposal`` the proposal of a proposal message;
    ``own`` is true for our own message echoed back.
    """

    sender: Sender
    signature_key: bytes
    epoch: int
    content_type: ContentType
    authenticated_data: bytes = b""
    proposal: Proposal | None = None
    own: bool = False

    @property
    def leaf_index(self) -> int | None:
        """The sender's leaf index when it is a member, else ``None``."""
        return self.sender.index if self.sender.sender_type == SenderType.MEMBER else None


SenderCheck = Callable[[SenderInfo], None]
"""A ``check_sender`` hook: raise (anything) to refuse the message; the group is then unchanged."""


LeafCheck = Callable[[LeafNode, LeafNode | None], None]
"""A ``leaf_check`` policy hook: ``leaf_check(new_leaf, previous_leaf)``.

The application's own rules for the leaves that enter a group (RFC 9420
§5.3.1 and §7.3 leave credential validation and successor rules to the
application). It is called with a leaf that already passed the engine's own
checks: for every Add (``previous_leaf`` ``None``: by value in a commit, as a
proposal, by reference when committed, and the KeyPackages our own commits
add), every Update proposal (the sender's current leaf), a received commit's
UpdatePath leaf (the committer's current leaf; ``None`` for an external
commit's joiner), every leaf of the tree of a group joined by Welcome or by
external commit (``None``), and by ``validate_key_package(..., leaf_check=)``.

Return ``None`` to accept; raise to refuse. Whatever it raises propagates
unchanged (a ``PingError`` is never wrapped) and the operation then changes
nothing: no proposal stored, no commit staged, no group built.
"""


ExtensionsCheck = Callable[[tuple[Extension, ...]], None]
"""An ``extensions_check`` policy hook: the application's check of GroupContext
extensions about to take effect (RFC 9420 §13: extensions of its own, such as a
private-use type of §17.3, are the application's to define and to parse).

Called with the whole list, after the engine's own checks, wherever the
engine validates GroupContext extensions: those of a group created, and of a
GroupContextExtensions proposal (ours, received by reference, or inside a
received commit). Return ``None`` to accept; raise to refuse: whatever it
raises propagates unchanged and the operation changes nothing.
"""


Clock = Callable[[], float]
"""The application's clock: seconds since the Unix epoch. The engine never reads a
clock of its own; every group and public group is given one, and it dates
KeyPackage lifetimes (RFC 9420 §7.2, §10.1: ``not_before <= now <= not_after``)."""


class Policy(Protocol):
    """The application's policy a group applies to what it receives: the clock
    (KeyPackage lifetimes), the maximum KeyPackage lifetime (§7.2), the
    ``leaf_check`` and the ``extensions_check`` hooks. :class:`.Group` and :class:`.PublicGroup` are ones."""

    @property
    def max_lifetime_s(self) -> int | None: ...

    @property
    def leaf_check(self) -> LeafCheck | None: ...

    @property
    def extensions_check(self) -> ExtensionsCheck | None: ...

    def now(self) -> int:
        """The current time, in whole seconds since the epoch."""
        ...
