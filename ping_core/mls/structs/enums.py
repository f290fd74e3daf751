"""The enumerations of RFC 9420 as ``IntEnum`` classes.

Field widths (on the wire): ``ProtocolVersion``, ``CipherSuite``,
``WireFormat``, ``ExtensionType``, ``ProposalType`` and ``CredentialType`` are
uint16; ``ContentType``, ``SenderType``, ``LeafNodeSource``, ``PSKType``,
``ResumptionPSKUsage``, ``ProposalOrRefType`` and ``NodeType`` are uint8.

Which values a decoder accepts is decided per field, not here: a type whose
value selects a body that is not length-prefixed (proposal, credential, wire
format, content, sender, leaf node source, PSK type, node type) must be known,
while values merely listed (capabilities, extension types, cipher suites in a
KeyPackage) are carried as plain ``int`` when unknown. The ``*_BY_VALUE``
dictionaries give the fast ``int -> member`` lookup decoders use.
"""

from __future__ import annotations

from enum import IntEnum

__all__ = [
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
]


class ProtocolVersion(IntEnum):
    """uint16; only ``mls10`` exists."""

    MLS10 = 1


class CipherSuite(IntEnum):
    """uint16 (RFC 9420 §17.1). Ping implements suite 1 only."""

    MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519 = 0x0001
    MLS_128_DHKEMP256_AES128GCM_SHA256_P256 = 0x0002
    MLS_128_DHKEMX25519_CHACHA20POLY1305_SHA256_Ed25519 = 0x0003
    MLS_256_DHKEMX448_AES256GCM_SHA512_Ed448 = 0x0004
    MLS_256_DHKEMP521_AES256GCM_SHA512_P521 = 0x0005
    MLS_256_DHKEMX448_CHACHA20POLY1305_SHA512_Ed448 = 0x0006
    MLS_256_DHKEMP384_AES256GCM_SHA384_P384 = 0x0007


class WireFormat(IntEnum):
    """uint16 (§6)."""

    PUBLIC_MESSAGE = 1
    PRIVATE_MESSAGE = 2
    WELCOME = 3
    GROUP_INFO = 4
    KEY_PACKAGE = 5


class ContentType(IntEnum):
    """uint8 (§6)."""

    APPLICATION = 1
    PROPOSAL = 2
    COMMIT = 3


class SenderType(IntEnum):
    """uint8 (§6)."""

    MEMBER = 1
    EXTERNAL = 2
    NEW_MEMBER_PROPOSAL = 3
    NEW_MEMBER_COMMIT = 4


class ProposalType(IntEnum):
    """uint16 (§17.4)."""

    ADD = 1
    UPDATE = 2
    REMOVE = 3
    PSK = 4
    REINIT = 5
    EXTERNAL_INIT = 6
    GROUP_CONTEXT_EXTENSIONS = 7


class ExtensionType(IntEnum):
    """uint16 (§17.3). Unknown types are legal on the wire and carried."""

    APPLICATION_ID = 1
    RATCHET_TREE = 2
    REQUIRED_CAPABILITIES = 3
    EXTERNAL_PUB = 4
    EXTERNAL_SENDERS = 5


class CredentialType(IntEnum):
    """uint16 (§17.5)."""

    BASIC = 1
    X509 = 2


class LeafNodeSource(IntEnum):
    """uint8 (§7.2)."""

    KEY_PACKAGE = 1
    UPDATE = 2
    COMMIT = 3


class PSKType(IntEnum):
    """uint8 (§8.4)."""

    EXTERNAL = 1
    RESUMPTION = 2


class ResumptionPSKUsage(IntEnum):
    """uint8 (§8.4)."""

    APPLICATION = 1
    REINIT = 2
    BRANCH = 3


class ProposalOrRefType(IntEnum):
    """uint8 (§12.4)."""

    PROPOSAL = 1
    REFERENCE = 2


class NodeType(IntEnum):
    """uint8 (§7.8)."""

    LEAF = 1
    PARENT = 2


# Fast, exception-free lookups for decoders (``dict.get`` then a None check).
WIRE_FORMAT_BY_VALUE: dict[int, WireFormat] = {int(m): m for m in WireFormat}
CONTENT_TYPE_BY_VALUE: dict[int, ContentType] = {int(m): m for m in ContentType}
SENDER_TYPE_BY_VALUE: dict[int, SenderType] = {int(m): m for m in SenderType}
PROPOSAL_TYPE_BY_VALUE: dict[int, ProposalType] = {int(m): m for m in ProposalType}
CREDENTIAL_TYPE_BY_VALUE: dict[int, CredentialType] = {int(m): m for m in CredentialType}
LEAF_NODE_SOURCE_BY_VALUE: dict[int, LeafNodeSource] = {int(m): m for m in LeafNodeSource}
PSK_TYPE_BY_VALUE: dict[int, PSKType] = {int(m): m for m in PSKType}
RESUMPTION_USAGE_BY_VALUE: dict[int, ResumptionPSKUsage] = {int(m): m for m in ResumptionPSKUsage}
