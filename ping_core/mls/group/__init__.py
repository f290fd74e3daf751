"""The MLS group state machine (RFC 9420 §8-§13) for cipher suite 1.

Sans-IO and synchronous. Every call takes or holds a ``CryptoProvider``;
nothing reads files or sockets. Failures raise ``ping_core.errors.MlsError``
(or a subclass) with a clear message and leave the group exactly as it was.

Who we are
----------
``Signer`` — a credential and its Ed25519 key pair (``Signer.generate(crypto,
identity)``). ``generate_key_package(crypto, signer)`` returns a
``KeyPackageBundle``: ``.message()`` is the MLSMessage to publish, ``.ref``
its KeyPackageRef, ``.to_bytes()``/``KeyPackageBundle.from_bytes`` persist it
with its private keys (persist it before publishing). KeyPackages advertise
``default_capabilities()`` unless given ``capabilities=`` (an application
lists its own extension types there: ``default_capabilities(extensions=...)``)
and are valid 90 days by default.

Extensions of the application's own
-----------------------------------
The engine parses the GroupContext extensions it knows (RFC 9420 §13) and
carries any other as opaque bytes. ``extensions_check=`` (an
``ExtensionsCheck``: ``hook(extensions)``, raise to refuse), given to every
way of getting a group like ``leaf_check``, is called wherever GroupContext
extensions change (a group created, a GroupContextExtensions proposal ours
or received, a received commit's): the place to parse and refuse the
application's own payloads. Ping's conversation name (0xF0A1) is one, and
lives in the SDK (``ping_core.conversation_name``).

The time is the application's
---------------------------------
The engine reads no clock. ``generate_key_package(..., now=)`` and
``validate_key_package(..., now=)`` take the time (seconds since the Unix
epoch; ``now=None`` skips the check of the current time), and every way of
getting a group (below) and ``PublicGroup`` take ``clock=`` (a ``Clock``:
``() -> seconds``), which dates KeyPackage lifetimes (RFC 9420 §7.2, §10.1).

Getting a group
---------------
* ``Group.create(crypto, signer, clock=..., group_id=..., extensions=...)``
* ``Group.join(crypto, welcome, bundles, signer, ratchet_tree=None)`` —
  ``welcome_key_package_refs(welcome)`` tells which bundle it needs.
* ``Group.join_external(crypto, group_info, signer, resync=False)`` ->
  ``(group, commit)``: send ``commit``; if refused, drop the group.
* ``Group.from_bytes(crypto, data)`` / ``Group.from_records(crypto, records)``.

Each also takes ``leaf_check=`` (a ``LeafCheck``: ``hook(new_leaf,
previous_leaf)``, raise to refuse): the application's policy for every leaf
that enters the group (Adds, Update proposals, received commits' path
leaves, the tree of a group joined); ``group.leaf_check`` (settable), not
stored, inherited by branched and reinitialised groups. See
``results.LeafCheck`` for exactly when it is called.

Each takes ``max_lifetime_s=``: the application's maximum total lifetime of
a KeyPackage's leaf (RFC 9420 §7.2 makes defining one the application's
duty). The group refuses any Add whose KeyPackage spans longer (ours,
received proposals, received commits) and the joins refuse a tree with such
a leaf. It is ``group.max_lifetime_s`` (settable), not part of the stored
state: give it again on every load. The engine default is ``None`` (no
maximum); ``validate_key_package(..., max_lifetime_s=)`` applies it to a
KeyPackage on its own.

Changing it (send-then-merge)
-----------------------------
``staged = group.commit(add=[kp, ...], remove=[leaf, ...],
extensions=..., ...)`` computes the next epoch without applying it
(it includes the pending proposals; an empty commit is a self-update).
Send ``staged.message``; when the server took it ``group.merge_staged_commit
(staged)``, deliver ``staged.welcome`` to ``staged.welcome_recipients``
(KeyPackageRefs); when it refused, ``group.discard_staged_commit()``. The
group persists its pending commit, so after a crash the echo of the commit
from the server merges it (``process_message`` recognises it).
``group.propose_add/remove/update/external_psk/resumption_psk/reinit/
group_context_extensions(...)`` send proposals by reference
(``ProposalMessage(message, ref)``). Creating a commit or proposal changes
nothing in the group except: the pending commit is kept (record
``staged``), our own proposals are stored as pending, and an encrypted one
consumes a handshake-ratchet generation (a key is never used twice).
After a commit with a ReInit the group can no longer send;
``group.reinit_group(key_packages)`` makes the new group and its first
commit, and joiners pass the old group to ``Group.join(..., reinit_from=)``.
``group.branch(key_packages, group_id=None)`` -> ``(subgroup, staged)``
branches a subgroup off the group (RFC 9420 §11.3): fresh KeyPackages of
some members (same credential and signature key as their leaves), a first
commit with the group's resumption PSK (usage branch) of the current epoch;
the group itself is unchanged. Joiners pass their state of the old group, at
that epoch, to ``Group.join(..., branch_from=)``, which checks that every
leaf of the subgroup is a client of the old group (see ``resumption.py``).

Receiving
---------
``group.process_message(data)`` returns ``ApplicationMessage`` (sender leaf,
its signature key in that epoch, data, authenticated data, epoch),
``ProposalStored`` or ``CommitApplied``
(epoch, committer, added/removed/updated leaves, ``removed_self``, ``own``,
``already_applied``); with ``merge=False`` a received commit comes back as a
``StagedCommit`` to merge or drop (``staged.added_members()``: whom it adds).
``process_message(data, check_sender=hook)``: ``hook(SenderInfo)`` (sender,
its signature key, epoch, content type, authenticated data, the proposal of a
proposal message, ``own``) runs once the sender is authenticated and before
anything changes; whatever it raises aborts with the group unchanged (no
ratchet generation consumed, no proposal stored) — the place for an
application's own sender policy. A member's credential never changes: an
Update or a commit path leaf with another credential is refused (RFC 9420
§5.3.1 leaves the successor rule to the application). Application messages of the last
``GroupConfig.max_past_epochs`` epochs still decrypt; out-of-order tolerance
and maximum forward distance are ``GroupConfig.ratchet``.

From outside the group
----------------------
``external_proposal(crypto, key, group_id, epoch, proposal, sender_index=i)``
builds a proposal of an external sender (the group's external_senders
extension) or, with ``sender_index=None``, a new member's proposal to add
itself.

For a delivery service (not a member)
-------------------------------------
``PublicGroup.from_group_info(crypto, group_info, ratchet_tree=None)`` keeps
the public state of a group (context, tree, transcript hashes) and verifies
its handshake PublicMessages without any secret:
``public.process_proposal(data)``; ``commit = public.process_commit(data)``
(a ``PublicCommit``: new epoch, added/removed/updated members, committer,
external; nothing changes) then ``public.merge(commit)`` once it is
accepted; ``public.check_group_info(data)`` for a member's GroupInfo of the
current epoch; ``to_bytes()``/``from_bytes()``. See ``public.py`` for what a
non-member cannot check (membership and confirmation tags, PrivateMessages).

Sending
-------
``group.protect(data, authenticated_data)`` -> PrivateMessage (MLSMessage).

Reading
-------
``epoch``, ``group_id``, ``own_leaf_index``, ``epoch_authenticator``,
``export_secret(label, context, length)``, ``members()`` (``Member``: leaf
index, credential, identity, signature key), ``member(leaf)``,
``signature_key(leaf, epoch=None)`` (also in a retained past epoch),
``retained_epochs``, ``extensions``,
``group_info()``, ``ratchet_tree()``, ``active``,
``removed``, ``pending_proposals``, ``pending_commit``, ``pending_reinit``,
``resumption_psk(epoch)`` and ``psk_source()`` (for PSKs across groups).
External PSKs are given to the calls that need them as ``psks=`` (a mapping
``psk_id -> secret`` or a callable).

History for another device
--------------------------
``group.export_history_view()`` -> ``HistoryView``: an independent copy of
the current and retained past epochs' message secrets (no signing key, no
path keys, nothing that derives another epoch). ``view.decrypt(data,
check_sender=...)`` reads those epochs' application messages;
``epochs``, ``signature_key(leaf, epoch)``, ``forget_before(epoch)``;
persisted as ``records()`` / ``changed_records()`` / ``mark_saved()`` /
``HistoryView.from_records``.

Persisting
----------
``to_bytes()``/``from_bytes()`` (versioned, deterministic), or records:
``records()`` (all), ``changed_records()`` (``RecordChanges``: puts and
deletes since ``mark_saved()``), ``Group.from_records``. An application
message changes one small record (``st:<epoch>:leaf:<ours>``), whatever the
group's size; a commit rewrites the per-epoch records.

Layout
------
The state is plain data, ``state.GroupState`` (``group.state``); every
operation is a function over it, one module a job: ``create``, ``join``,
``outgoing`` (our proposals and commits), ``commit`` (building and staging
commits), ``merge``, ``process``, ``application``, ``resumption``,
``history``; ``view.GroupView`` is the read-only side and ``Group`` the
façade on top. Nothing below the façade imports it; the layers are an
import-linter contract (``mls-group-layers`` in pyproject.toml).
"""

from __future__ import annotations

from ping_core.mls.tree.secret_tree import RatchetConfig, RecordChanges

from .staged import StagedCommit
from .external import external_proposal
from .config import GroupConfig, default_capabilities
from .group import Group
from .history import HistoryView
from .join import welcome_key_package_refs
from .keypackage import CLOCK_SKEW_S, DEFAULT_LIFETIME_S, KeyPackageBundle, Signer, generate_key_package, validate_key_package
from .proposals import PendingProposal
from .public import AddedMember, PublicCommit, PublicGroup, RemovedMember, UpdatedMember
from ping_core.mls.group.psk_sources import PskSource
from .results import (
    ApplicationMessage,
    Clock,
    CommitApplied,
    ExtensionsCheck,
    LeafCheck,
    Member,
    ProcessResult,
    ProposalMessage,
    ProposalStored,
    SenderCheck,
    SenderInfo,
)

__all__ = [
    "Group",
    "HistoryView",
    "PublicGroup",
    "PublicCommit",
    "AddedMember",
    "RemovedMember",
    "UpdatedMember",
    "SenderInfo",
    "SenderCheck",
    "LeafCheck",
    "ExtensionsCheck",
    "Clock",
    "GroupConfig",
    "RatchetConfig",
    "Signer",
    "KeyPackageBundle",
    "generate_key_package",
    "validate_key_package",
    "DEFAULT_LIFETIME_S",
    "CLOCK_SKEW_S",
    "welcome_key_package_refs",
    "external_proposal",
    "default_capabilities",
    "StagedCommit",
    "PendingProposal",
    "PskSource",
    "Member",
    "ProposalMessage",
    "ApplicationMessage",
    "ProposalStored",
    "CommitApplied",
    "ProcessResult",
    "RecordChanges",
]
