"""How a group behaves, and what a client supports by default.

:class:`GroupConfig` is the per-group policy that travels with the group
state (it is persisted with it): how forgiving the receiving ratchets are,
how many past epochs keep their secrets for late application messages, the
default wire format of handshake messages, padding, and whether Welcomes
carry the ratchet tree.

:func:`default_capabilities` is what the engine supports; an application
with extensions of its own lists their types in it (``extensions=``) and
checks their payloads with a group's ``extensions_check``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

from ping_core.errors import MlsError, MlsReason, stored_state
from ping_core.mls.tree.secret_tree import RatchetConfig
from ping_core.mls.structs import Capabilities, CipherSuite, CredentialType, ProtocolVersion

__all__ = [
    "GroupConfig",
    "default_capabilities",
    "SUITE",
]

SUITE = CipherSuite.MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519


def default_capabilities(*, extensions: Sequence[int] = ()) -> Capabilities:
    """What this engine supports: MLS 1.0, cipher suite 1, basic credentials,
    and the application's own extension types ``extensions`` (non-default ones,
    e.g. private-use types of RFC 9420 §17.3).

    The default extension and proposal types of RFC 9420 (1-5 and 1-7) are
    supported by every client and are not listed (§7.2).
    """
    return Capabilities(
        versions=(ProtocolVersion.MLS10,),
        cipher_suites=(SUITE,),
        extensions=tuple(extensions),
        proposals=(),
        credentials=(CredentialType.BASIC,),
    )


_CONFIG_VERSION = 1


@dataclass(frozen=True, slots=True)
class GroupConfig:
    """Per-group policy; persisted with the group (see :meth:`encode`).

    ``ratchet``: out-of-order tolerance and maximum forward distance of the
    receiving ratchets (see :class:`~ping_core.mls.tree.secret_tree.RatchetConfig`).
    ``max_past_epochs``: how many epochs before the current one keep their
    message secrets so late application messages still decrypt (0: none);
    older ones are deleted. ``resumption_psk_epochs``: how many past epochs'
    resumption PSKs are kept for PreSharedKey proposals of this group.
    ``encrypt_handshake``: default wire format of proposals and commits
    (PrivateMessage when true). ``ratchet_tree_extension``: whether Welcomes
    carry the ratchet tree by default. ``padding_block``: PrivateMessage
    plaintexts are zero-padded to a multiple of this many bytes (0: none).
    """

    ratchet: RatchetConfig = field(default_factory=RatchetConfig)
    max_past_epochs: int = 2
    resumption_psk_epochs: int = 8
    encrypt_handshake: bool = True
    ratchet_tree_extension: bool = True
    padding_block: int = 0

    def __post_init__(self) -> None:
        if not 0 <= self.max_past_epochs <= 1024:
            raise MlsError("max_past_epochs must be in 0..1024", reason=MlsReason.INVALID_ARGUMENT)
        if not 0 <= self.resumption_psk_epochs <= 1024:
            raise MlsError("resumption_psk_epochs must be in 0..1024", reason=MlsReason.INVALID_ARGUMENT)
        if not 0 <= self.padding_block <= 4096:
            raise MlsError("padding_block must be in 0..4096", reason=MlsReason.INVALID_ARGUMENT)

    def padding_for(self, plaintext_len: int) -> int:
        """Zero bytes to append to a plaintext of ``plaintext_len`` bytes."""
        block = self.padding_block
        if block <= 1:
            return 0
        return -plaintext_len % block

    def encode(self) -> bytes:
        """A fixed 15-byte, versioned encoding."""
        r = self.ratchet
        return (
            bytes((_CONFIG_VERSION,))
            + r.out_of_order_tolerance.to_bytes(2, "big")
            + r.maximum_forward_distance.to_bytes(4, "big")
            + self.max_past_epochs.to_bytes(2, "big")
            + self.resumption_psk_epochs.to_bytes(2, "big")
            + bytes((int(self.encrypt_handshake) | (int(self.ratchet_tree_extension) << 1),))
            + self.padding_block.to_bytes(2, "big")
            + b"\x00"
        )

    @classmethod
    @stored_state
    def decode(cls, data: bytes) -> GroupConfig:
        """Inverse of :meth:`encode`; ``MlsError`` for anything else."""
        if len(data) != 15 or data[0] != _CONFIG_VERSION or data[14] != 0 or data[11] > 3:
            raise MlsError("malformed group configuration record", reason=MlsReason.CORRUPT_STATE)
        return cls(
            ratchet=RatchetConfig(int.from_bytes(data[1:3], "big"), int.from_bytes(data[3:7], "big")),
            max_past_epochs=int.from_bytes(data[7:9], "big"),
            resumption_psk_epochs=int.from_bytes(data[9:11], "big"),
            encrypt_handshake=bool(data[11] & 1),
            ratchet_tree_extension=bool(data[11] & 2),
            padding_block=int.from_bytes(data[12:14], "big"),
        )
