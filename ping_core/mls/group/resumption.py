"""Groups that resume another one: reinitialisation (RFC 9420 §11.2) and
subgroup branching (§11.3).

Both start a new group, with us as its creator, whose first commit adds the
members' fresh KeyPackages and injects the old group's resumption PSK of its
current epoch, with usage ``reinit`` or ``branch``. Its Welcome thus proves to
each joiner that the group was made by someone who held the old group's
secrets at that epoch; the joiner checks, with its own state of the old group
at hand, that the new group is what the usage promises:

* reinit: the new GroupContext matches the ReInit the old group committed;
* branch: same protocol version and cipher suite as the old group, a new
  group id, and every member of the new group is a member of the old one.

"Member of the old group" is decided per client, not per account: a leaf
matches when both its credential and its signature key equal those of a
member of the old group (Ping's credentials name the account, the signature
key the device). The PSK must name the old group's current epoch, so a joiner
processes the Welcome before any later commit of the old group.
"""

from __future__ import annotations

from typing import Callable, Sequence

from ping_core.errors import MlsError, MlsReason
from ping_core.mls.structs import (
    Add,
    Credential,
    Extension,
    GroupContext,
    KeyPackage,
    LeafNode,
    PreSharedKey,
    PreSharedKeyID,
    Proposal,
    PSKType,
    ResumptionPSKUsage,
)
from ping_core.mls.tree import RatchetTree

from .commit import create_commit
from .config import GroupConfig
from .create import create_group
from .keypackage import KeyPackageBundle, adds_of
from .staged import StagedCommit
from .state import GroupState

__all__ = [
    "branch_group",
    "reinit_group",
    "resumption_psk_lookup",
    "check_resumption_welcome",
    "check_branch_members",
]

KeyPackageLike = KeyPackage | KeyPackageBundle | bytes
_REINIT = ResumptionPSKUsage.REINIT
_BRANCH = ResumptionPSKUsage.BRANCH
_ARG = {_REINIT: "reinit_from", _BRANCH: "branch_from"}
_WHAT = {_REINIT: "reinitialises a group", _BRANCH: "starts a branched subgroup"}


def _special(psk: PreSharedKeyID) -> bool:
    """A resumption PSK that only the first commit of a resumed group may carry."""
    return psk.psktype == PSKType.RESUMPTION and psk.usage in (_REINIT, _BRANCH)


def _start(
    old: GroupState,
    usage: ResumptionPSKUsage,
    adds: list[Proposal],
    raw_kps: dict[int, bytes],
    *,
    group_id: bytes,
    extensions: Sequence[Extension],
    config: GroupConfig | None,
    encrypt: bool | None,
    ratchet_tree_extension: bool | None,
) -> tuple[GroupState, StagedCommit]:
    """The new group and its staged first commit: ``adds`` plus the old group's
    resumption PSK (``usage``) of its current epoch. The old group is unchanged."""
    new = create_group(
        old.crypto,
        old.signer,
        group_id=group_id,
        config=config or old.config,
        extensions=extensions,
        capabilities=old.current.own_leaf_node().capabilities,
        clock=old.clock,
        **old.policy(),
    )
    psk = PreSharedKeyID.resumption(usage, old.group_id, old.epoch, old.crypto.random(32))
    staged = create_commit(
        new,
        by_value=[*adds, PreSharedKey(psk)],
        include_pending=False,
        encrypt=encrypt,
        ratchet_tree_extension=ratchet_tree_extension,
        psks=old.psk_source(),
        key_package_bytes=raw_kps,
        psk_usage=usage,
    )
    new.pending_commit = staged
    new.touch("staged")
    return new, staged


def reinit_group(
    old: GroupState,
    key_packages: Sequence[KeyPackageLike],
    *,
    config: GroupConfig | None = None,
    encrypt: bool | None = None,
    ratchet_tree_extension: bool | None = None,
) -> tuple[GroupState, StagedCommit]:
    """See :meth:`.Group.reinit_group`."""
    reinit = old.reinit
    if reinit is None:
        raise MlsError("no ReInit was committed in this group", reason=MlsReason.WRONG_STATE)
    if not old.active:
        raise MlsError("we are no longer a member of this group", reason=MlsReason.WRONG_STATE)
    gc = old.current.context
    if reinit.version != gc.version or reinit.cipher_suite != gc.cipher_suite:
        raise MlsError(
            "the ReInit asks for a protocol version or cipher suite this engine does not implement",
            reason=MlsReason.UNSUPPORTED,
        )
    adds, raw_kps = adds_of(key_packages)
    return _start(
        old,
        _REINIT,
        adds,
        raw_kps,
        group_id=reinit.group_id,
        extensions=reinit.extensions,
        config=config,
        encrypt=encrypt,
        ratchet_tree_extension=ratchet_tree_extension,
    )


def branch_group(
    old: GroupState,
    key_packages: Sequence[KeyPackageLike],
    *,
    group_id: bytes | None = None,
    extensions: Sequence[Extension] | None = None,
    config: GroupConfig | None = None,
    encrypt: bool | None = None,
    ratchet_tree_extension: bool | None = None,
) -> tuple[GroupState, StagedCommit]:
    """See :meth:`.Group.branch`."""
    old.require_active()
    gid = old.crypto.random(32) if group_id is None else group_id
    if gid == old.group_id:
        raise MlsError("a branched subgroup needs a group id of its own", reason=MlsReason.INVALID_ARGUMENT)
    adds, raw_kps = adds_of(key_packages)
    if not adds:
        raise MlsError("a branched subgroup needs at least one other member", reason=MlsReason.INVALID_ARGUMENT)
    roster = _clients(old.current.tree)
    for leaf in (p.key_package.leaf_node for p in adds if isinstance(p, Add)):
        if not _is_member(leaf, roster):
            raise MlsError(
                f"the KeyPackage of {leaf.credential.identity!r} is not of a member of the group "
                "(same credential and signature key)",
                reason=MlsReason.INVALID_ARGUMENT,
            )
    return _start(
        old,
        _BRANCH,
        adds,
        raw_kps,
        group_id=gid,
        extensions=old.current.context.extensions if extensions is None else extensions,
        config=config,
        encrypt=encrypt,
        ratchet_tree_extension=ratchet_tree_extension,
    )


# -- joining -------------------------------------------------------------------


def _old_group_for(usage: ResumptionPSKUsage, reinit_from: GroupState | None, branch_from: GroupState | None) -> GroupState:
    old = reinit_from if usage == _REINIT else branch_from
    if old is None:
        raise MlsError(
            f"the Welcome {_WHAT[usage]}: pass the old group as {_ARG[usage]}",
            reason=MlsReason.INVALID_ARGUMENT,
        )
    return old


def resumption_psk_lookup(
    reinit_from: GroupState | None, branch_from: GroupState | None, fallback: Callable[[PreSharedKeyID], bytes]
) -> Callable[[PreSharedKeyID], bytes]:
    """The Welcome's PSK lookup: a reinit/branch PSK only from the old group given
    for that usage (``MlsError`` if it is missing or is another group); any other
    PSK from the old groups given, else from ``fallback``."""
    if reinit_from is not None and branch_from is not None:
        raise MlsError("pass reinit_from or branch_from, not both", reason=MlsReason.INVALID_ARGUMENT)
    sources = [g.psk_source() for g in (reinit_from, branch_from) if g is not None]

    def lookup(psk: PreSharedKeyID) -> bytes:
        if _special(psk):
            assert psk.usage is not None
            old = _old_group_for(psk.usage, reinit_from, branch_from)
            if psk.psk_group_id != old.group_id:
                raise MlsError(
                    f"the {psk.usage.name.lower()} PSK names another group than {_ARG[psk.usage]}",
                    reason=MlsReason.INVALID_ARGUMENT,
                )
        for source in sources:
            value = source(psk)
            if value is not None:
                return value
        return fallback(psk)

    return lookup


def check_resumption_welcome(
    psk_ids: Sequence[PreSharedKeyID], gc: GroupContext, reinit_from: GroupState | None, branch_from: GroupState | None
) -> GroupState | None:
    """§11.2 / §11.3 / §12.4.3.1: the Welcome's reinit or branch PSK (at most one,
    checked before) against the old group given for its usage. Returns the old
    group of a branch, whose roster the new tree must then match
    (:func:`check_branch_members`); ``None`` otherwise."""
    special = [p for p in psk_ids if _special(p)]
    if not special:
        given = "reinit_from" if reinit_from is not None else "branch_from" if branch_from is not None else None
        if given is not None:
            usage = "reinit" if given == "reinit_from" else "branch"
            raise MlsError(
                f"{given} was given but the Welcome carries no {usage} PSK",
                reason=MlsReason.INVALID_ARGUMENT,
            )
        return None
    psk = special[0]
    assert psk.usage is not None
    old = _old_group_for(psk.usage, reinit_from, branch_from)
    other = branch_from if psk.usage == _REINIT else reinit_from
    if other is not None:
        raise MlsError(
            f"the Welcome {_WHAT[psk.usage]}: pass the old group as {_ARG[psk.usage]}",
            reason=MlsReason.INVALID_ARGUMENT,
        )
    if psk.psk_group_id != old.group_id or psk.psk_epoch != old.epoch:
        raise MlsError(
            f"the {psk.usage.name.lower()} PSK names epoch {psk.psk_epoch} of group {psk.psk_group_id.hex()}, "
            f"not the current epoch {old.epoch} of the old group",
            reason=MlsReason.WRONG_EPOCH,
        )
    if psk.usage == _REINIT:
        reinit = old.reinit
        if reinit is None:
            raise MlsError("the reinit PSK names a group that committed no ReInit", reason=MlsReason.BAD_WELCOME)
        if (reinit.group_id, reinit.version, reinit.cipher_suite, reinit.extensions) != (
            gc.group_id,
            gc.version,
            gc.cipher_suite,
            gc.extensions,
        ):
            raise MlsError("the new group does not match the old group's ReInit", reason=MlsReason.BAD_WELCOME)
        return None
    old_gc = old.current.context
    if (gc.version, gc.cipher_suite) != (old_gc.version, old_gc.cipher_suite):
        raise MlsError(
            "a branched subgroup must keep the old group's protocol version and cipher suite",
            reason=MlsReason.BAD_WELCOME,
        )
    if gc.group_id == old_gc.group_id:
        raise MlsError("a branched subgroup must have a group id of its own", reason=MlsReason.BAD_WELCOME)
    return old


def _clients(tree: RatchetTree) -> set[tuple[Credential, bytes]]:
    return {(leaf.credential, leaf.signature_key) for _, leaf in tree.members()}


def _is_member(leaf: LeafNode, roster: set[tuple[Credential, bytes]]) -> bool:
    return (leaf.credential, leaf.signature_key) in roster


def check_branch_members(tree: RatchetTree, old_tree: RatchetTree) -> None:
    """§11.3: every leaf of the branched subgroup's (validated) tree is a client
    of the old group (whose tree is ``old_tree``): same credential and same signature key."""
    roster = _clients(old_tree)
    for index, leaf in tree.members():
        if not _is_member(leaf, roster):
            raise MlsError(
                f"leaf {index} of the branched subgroup ({leaf.credential.identity!r}) has no counterpart "
                "in the old group (same credential and signature key)",
                reason=MlsReason.BAD_WELCOME,
            )
