"""Ping's RFC 9420 (MLS) engine for cipher suite 1.

Sans-IO and synchronous: no asyncio, no files, no sockets. Everything random
comes from the ``CryptoProvider`` it is given. The only module of ``ping_core``
it imports is ``ping_core.errors``.

The public API is the group state machine (:mod:`ping_core.mls.group`, see
its docstring for the tour) re-exported here, and ``default_provider()``. Every
refusal is a ``ping_core.errors.MlsError`` whose ``reason`` is an :class:`MlsReason`
(re-exported here with :class:`MlsOrigin`): the caller's misuse or a peer's bad message.
"""

from __future__ import annotations

from ping_core.errors import MlsOrigin, MlsReason

from .crypto import CryptoProvider, default_provider
from .tree import KeyIndex, RatchetTree
from .group import (
    CLOCK_SKEW_S,
    DEFAULT_LIFETIME_S,
    AddedMember,
    HistoryView,
    RemovedMember,
    SenderCheck,
    SenderInfo,
    UpdatedMember,
    ApplicationMessage,
    Clock,
    CommitApplied,
    ExtensionsCheck,
    Group,
    GroupConfig,
    KeyPackageBundle,
    LeafCheck,
    Member,
    PendingProposal,
    ProcessResult,
    ProposalMessage,
    ProposalStored,
    PskSource,
    PublicCommit,
    PublicGroup,
    RatchetConfig,
    RecordChanges,
    Signer,
    StagedCommit,
    default_capabilities,
    external_proposal,
    generate_key_package,
    validate_key_package,
    welcome_key_package_refs,
)

__all__ = [
    "MlsReason",
    "MlsOrigin",
    "CryptoProvider",
    "default_provider",
    "RatchetTree",
    "KeyIndex",
    "Group",
    "HistoryView",
    "PublicGroup",
    "PublicCommit",
    "AddedMember",
    "RemovedMember",
    "UpdatedMember",
    "SenderInfo",
    "SenderCheck",
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
    "LeafCheck",
    "ExtensionsCheck",
    "Clock",
    "ProposalMessage",
    "ApplicationMessage",
    "ProposalStored",
    "CommitApplied",
    "ProcessResult",
    "RecordChanges",
]
