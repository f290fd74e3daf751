"""RFC 9420 wire structs: frozen, slotted data classes with ``write``/``read``.

Every struct ``S`` here encodes with ``ping_core.mls.tls.encode(s)`` and
decodes strictly with ``decode_exact(S, data)``; decode then encode returns
the same bytes. Opaque fields are ``bytes``; vectors are tuples. Only
``MlsDecodeError`` leaves a decoder. Per-field bounds: :mod:`.limits`.
"""

from __future__ import annotations

from .credential import Credential
from .enums import (
    CipherSuite,
    ContentType,
    CredentialType,
    ExtensionType,
    LeafNodeSource,
    NodeType,
    ProposalOrRefType,
    ProposalType,
    ProtocolVersion,
    PSKType,
    ResumptionPSKUsage,
    SenderType,
    WireFormat,
)
from .extensions import (
    ApplicationId,
    Extension,
    ExtensionPayload,
    ExternalPub,
    ExternalSender,
    ExternalSenders,
    RequiredCapabilities,
    find_extension,
    get_extension,
    has_unique_types,
)
from .group_info import GroupContext, GroupInfo
from .hpke import HPKECiphertext, UpdatePath, UpdatePathNode
from .key_package import KeyPackage
from .leaf import Capabilities, LeafNode, Lifetime
from .tree_nodes import Node, ParentNode, RatchetTree, read_node, write_node
from ping_core.mls.structs.psk_id import PreSharedKeyID, PSKLabel
from .proposals import (
    Add,
    ExternalInit,
    GroupContextExtensions,
    PreSharedKey,
    Proposal,
    ProposalOrRef,
    ReInit,
    Remove,
    Update,
    read_proposal_or_ref,
    write_proposal_or_ref,
)
from .commit import Commit
from ping_core.mls.structs.content import (
    AuthenticatedContent,
    Content,
    FramedContent,
    FramedContentAuthData,
    PrivateContentAAD,
    PrivateMessage,
    PrivateMessageContent,
    PublicMessage,
    Sender,
    SenderData,
    SenderDataAAD,
    confirmed_transcript_hash_input,
    content_type_of,
    framed_content_tbs,
    interim_transcript_hash_input,
)
from .welcome import EncryptedGroupSecrets, GroupSecrets, PathSecret, Welcome
from .message import MessageBody, MLSMessage

__all__ = [
    # enums
    "ProtocolVersion",
    "CipherSuite",
    "WireFormat",
    "ContentType",
    "SenderType",
    "ProposalType",
    "ExtensionType",
    "CredentialType",
    "LeafNodeSource",
    "PSKType",
    "ResumptionPSKUsage",
    "ProposalOrRefType",
    "NodeType",
    # credentials and extensions
    "Credential",
    "Extension",
    "ExtensionPayload",
    "ApplicationId",
    "RequiredCapabilities",
    "ExternalPub",
    "ExternalSender",
    "ExternalSenders",
    "find_extension",
    "get_extension",
    "has_unique_types",
    # leaves, tree, key packages
    "Capabilities",
    "Lifetime",
    "LeafNode",
    "ParentNode",
    "Node",
    "read_node",
    "write_node",
    "RatchetTree",
    "KeyPackage",
    # HPKE, update paths
    "HPKECiphertext",
    "UpdatePathNode",
    "UpdatePath",
    # group context and info
    "GroupContext",
    "GroupInfo",
    # PSKs
    "PreSharedKeyID",
    "PSKLabel",
    # proposals and commit
    "Proposal",
    "Add",
    "Update",
    "Remove",
    "PreSharedKey",
    "ReInit",
    "ExternalInit",
    "GroupContextExtensions",
    "ProposalOrRef",
    "read_proposal_or_ref",
    "write_proposal_or_ref",
    "Commit",
    # framing
    "Content",
    "content_type_of",
    "Sender",
    "FramedContent",
    "FramedContentAuthData",
    "AuthenticatedContent",
    "PublicMessage",
    "PrivateMessage",
    "SenderData",
    "SenderDataAAD",
    "PrivateContentAAD",
    "PrivateMessageContent",
    "framed_content_tbs",
    "confirmed_transcript_hash_input",
    "interim_transcript_hash_input",
    # welcome
    "PathSecret",
    "GroupSecrets",
    "EncryptedGroupSecrets",
    "Welcome",
    # envelope
    "MLSMessage",
    "MessageBody",
]
