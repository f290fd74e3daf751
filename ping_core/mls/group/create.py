"""Creating a group (RFC 9420 §11): one member, epoch 0."""

from __future__ import annotations

from typing import Sequence

from ping_core.errors import MlsError, MlsReason
from ping_core.mls.tls import encode
from ping_core.mls.crypto import CryptoProvider
from ping_core.mls.schedule.key_schedule import epoch_secrets, new_init_secret
from ping_core.mls.structs import Capabilities, Extension, GroupContext, ProtocolVersion
from ping_core.mls.schedule.transcript import confirmation_tag, interim_transcript_hash
from ping_core.mls.tree import RatchetTree
from ping_core.mls.tree.treekem import PathKeys

from .config import SUITE, GroupConfig
from .results import Clock, ExtensionsCheck, LeafCheck
from .keypackage import Signer, generate_key_package
from .epoch import EpochState
from .state import GroupState
from .validate import check_group_context_extensions, check_leaf_supports_group

__all__ = ["create_group"]


def create_group(
    crypto: CryptoProvider,
    signer: Signer,
    *,
    group_id: bytes | None = None,
    config: GroupConfig | None = None,
    extensions: Sequence[Extension] = (),
    capabilities: Capabilities | None = None,
    clock: Clock,
    max_lifetime_s: int | None = None,
    leaf_check: LeafCheck | None = None,
    extensions_check: ExtensionsCheck | None = None,
) -> GroupState:
    """The state of a new group whose only member is ``signer`` (leaf 0), at epoch 0.

    ``group_id`` defaults to 32 random bytes. ``extensions`` become the
    GroupContext extensions (checked by ``extensions_check``, the
    application's hook, if any). Our leaf must support every extension
    (``capabilities``, default :func:`.config.default_capabilities`). The first epoch's secrets come from a fresh random
    init secret; the interim transcript hash from the confirmation tag over
    the empty confirmed transcript hash (§11). ``max_lifetime_s``: see
    :attr:`.Group.max_lifetime_s`; ``clock``: the application's (our leaf's
    lifetime starts at its time); ``leaf_check``: :attr:`.Group.leaf_check`
    (our own leaf is not passed to it).
    """
    cfg = config or GroupConfig()
    gid = crypto.random(32) if group_id is None else group_id
    if not isinstance(gid, bytes) or not 1 <= len(gid) <= 1024:
        raise MlsError("a group id is 1 to 1024 bytes", reason=MlsReason.INVALID_ARGUMENT)
    ext_tuple = tuple(extensions)
    check_group_context_extensions(ext_tuple, extensions_check)
    now = int(clock())
    # Our leaf: a key_package-source leaf, exactly as a KeyPackage would carry it.
    bundle = generate_key_package(crypto, signer, capabilities=capabilities, now=now)
    leaf = bundle.key_package.leaf_node
    check_leaf_supports_group(leaf, ext_tuple)
    tree = RatchetTree.from_nodes([leaf])
    context = GroupContext(
        version=ProtocolVersion.MLS10,
        cipher_suite=SUITE,
        group_id=gid,
        epoch=0,
        tree_hash=tree.tree_hash(crypto),
        confirmed_transcript_hash=b"",
        extensions=ext_tuple,
    )
    cb = encode(context)
    secrets = epoch_secrets(crypto, new_init_secret(crypto), None, None, cb)
    tag = confirmation_tag(crypto, secrets.confirmation_key, b"")
    interim = interim_transcript_hash(crypto, b"", tag)
    keys = PathKeys(bundle.encryption_private, {})
    state = EpochState.new(crypto, context, tree, 0, keys, secrets, interim, tag, cfg.ratchet, context_bytes=cb)
    return GroupState(
        crypto, signer, state, cfg, clock, max_lifetime_s=max_lifetime_s, leaf_check=leaf_check, extensions_check=extensions_check
    )
