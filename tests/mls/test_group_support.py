"""Support for the group tests: signers, KeyPackages, small groups, delivery, and
ways to forge messages that a correct sender would never produce. No tests
here; the test files import it (pytest puts this folder on ``sys.path``).
"""

from __future__ import annotations

import time

import contextlib
from typing import Any, Iterator, Sequence

from ping_core.conversation_name import PING_CAPABILITIES
from ping_core.mls.tls import decode_exact, encode
from ping_core.mls.crypto import default_provider
from ping_core.mls.group import (
    ApplicationMessage,
    CommitApplied,
    Group,
    GroupConfig,
    KeyPackageBundle,
    Member,
    Signer,
    StagedCommit,
    generate_key_package,
)
from ping_core.mls.group import commit as commit_mod
from ping_core.mls.structs import MLSMessage, PublicMessage
from ping_core.mls.schedule.transcript import membership_tag

crypto = default_provider()
#: The leaves these tests make support Ping's conversation-name extension (an application's
#: own GroupContext extension: ping_core.conversation_name), so their groups may carry one.
APP_CAPABILITIES = PING_CAPABILITIES
PUBLIC = GroupConfig(encrypt_handshake=False)


def signer(name: str) -> Signer:
    return Signer.generate(crypto, name.encode())


def key_package(s: Signer, **kw: Any) -> KeyPackageBundle:
    kw.setdefault("now", int(time.time()))
    kw.setdefault("capabilities", APP_CAPABILITIES)
    return generate_key_package(crypto, s, **kw)


def make_group(n: int, *, config: GroupConfig = PUBLIC, names: Sequence[str] | None = None, **create: Any) -> list[Group]:
    """``n`` members: the first creates the group and adds the others in one commit."""
    names = list(names or ["alice", "bob", "carol", "dave", "erin", "frank", "gina", "hugo"][:n])
    while len(names) < n:
        names.append(f"m{len(names)}")
    signers = [signer(nm) for nm in names]
    create.setdefault("clock", time.time)
    create.setdefault("capabilities", APP_CAPABILITIES)
    first = Group.create(crypto, signers[0], config=config, group_id=b"test group " + names[0].encode(), **create)
    groups = [first]
    if n > 1:
        bundles = [key_package(s) for s in signers[1:]]
        staged = first.commit(add=[b.message() for b in bundles])
        first.merge_staged_commit(staged)
        assert staged.welcome is not None
        for s, b in zip(signers[1:], bundles):
            groups.append(Group.join(crypto, staged.welcome, b, s, config=config, clock=time.time))
    return groups


def member(g: Group, leaf_index: int) -> Member:
    """The member at ``leaf_index`` (fails when the leaf is blank)."""
    m = g.member(leaf_index)
    assert m is not None, f"leaf {leaf_index} is blank"
    return m


def app_data(result: object) -> bytes:
    """The data of a processed application message (fails for any other result)."""
    assert isinstance(result, ApplicationMessage), result
    return result.data


def deliver(message: bytes, sender: Group | None, groups: Sequence[Group]) -> list[Any]:
    """Every group but ``sender`` processes ``message``; their results."""
    return [g.process_message(message) for g in groups if g is not sender]


def commit_all(g: Group, groups: Sequence[Group], **kw: Any) -> StagedCommit:
    """``g`` commits, merges, and every other member processes the commit."""
    staged = g.commit(**kw)
    g.merge_staged_commit(staged)
    assert staged.message is not None
    for r in deliver(staged.message, g, [x for x in groups if x.active]):
        assert isinstance(r, CommitApplied)
    return staged


def agree(groups: Sequence[Group]) -> None:
    """All active members agree on epoch, authenticator, exporter and tree."""
    live = [g for g in groups if g.active]
    assert len({g.epoch for g in live}) == 1
    assert len({g.epoch_authenticator for g in live}) == 1
    assert len({g.export_secret(b"agree", b"", 32) for g in live}) == 1
    assert len({g.ratchet_tree() for g in live}) == 1
    assert len({g.tree_hash for g in live}) == 1


@contextlib.contextmanager
def lenient_sender(**overrides: Any) -> Iterator[None]:
    """Switch off the committer-side checks named in ``overrides`` (module-level
    functions of ``ping_core.mls.group.commit``) so a forged commit can be built.
    Restored on exit, so the receiver checks with the real functions."""
    saved = {name: getattr(commit_mod, name) for name in overrides}
    try:
        for name, value in overrides.items():
            setattr(commit_mod, name, value)
        yield
    finally:
        for name, value in saved.items():
            setattr(commit_mod, name, value)


def public_body(message: bytes) -> PublicMessage:
    body = decode_exact(MLSMessage, message).body
    assert isinstance(body, PublicMessage)
    return body


def reframe(sender: Group, body: PublicMessage) -> bytes:
    """A member's PublicMessage with a fresh, valid membership tag (after tampering
    with fields the tag covers) under ``sender``'s current membership key."""
    tbm = body.tbm(sender.state.current.context_bytes)
    tag = membership_tag(crypto, sender.state.current.secrets.membership_key, tbm)
    return b"\x00\x01\x00\x01" + encode(PublicMessage(body.content, body.auth, tag))


def forge_commit(
    g: Group,
    proposals: Sequence[Any],
    path: Any = None,
    *,
    tag: bytes = bytes(32),
    epoch: int | None = None,
    group_id: bytes | None = None,
) -> bytes:
    """A member commit from ``g`` with any content: validly signed and
    membership-tagged in ``g``'s current epoch, with an arbitrary confirmation
    tag (the receiver's checks of the content run before the tag's)."""
    from ping_core.mls.framing.epoch_framing import sign_framed
    from ping_core.mls.framing.public_message import frame_public
    from ping_core.mls.structs import AuthenticatedContent, Commit, FramedContent, FramedContentAuthData, Sender, WireFormat

    st = g.state.current
    content = FramedContent(
        st.context.group_id if group_id is None else group_id,
        st.epoch if epoch is None else epoch,
        Sender.member(st.own_leaf),
        b"",
        Commit(tuple(proposals), path),
    )
    sig = sign_framed(crypto, st.framing, WireFormat.PUBLIC_MESSAGE, content, g.signer.private_key)
    auth = AuthenticatedContent(WireFormat.PUBLIC_MESSAGE, content, FramedContentAuthData(sig, tag))
    if epoch is not None or group_id is not None:
        # The receiver refuses these before any signature or tag: a zero tag will do.
        return b"\x00\x01\x00\x01" + encode(PublicMessage(content, auth.auth, bytes(32)))
    return b"\x00\x01\x00\x01" + encode(frame_public(crypto, st.framing, auth))


def forge_proposal(g: Group, proposal: Any, *, encrypt: bool = False) -> bytes:
    """A member proposal from ``g``, signed and framed, without the sender's checks."""
    from ping_core.mls.group.messages import frame_signed, sign_content

    st = g.state.current
    auth = sign_content(crypto, st.framing, st.own_leaf, proposal, g.signer.private_key, encrypt=encrypt)
    return frame_signed(crypto, st.framing, auth)


def forge_external_commit(g: Group, proposals: Sequence[Any], signer_: Signer, *, leaf: Any = None) -> bytes:
    """A new_member_commit with any proposals and a placeholder path leaf of ``signer_``."""
    from ping_core.mls.primitives import sign_with_label
    from ping_core.mls.structs import (
        Commit,
        FramedContent,
        FramedContentAuthData,
        LeafNode,
        LeafNodeSource,
        Sender,
        UpdatePath,
        WireFormat,
        framed_content_tbs,
    )
    from ping_core.mls.group import default_capabilities

    st = g.state.current
    if leaf is None:
        leaf = LeafNode(bytes(32), signer_.public_key, signer_.credential, default_capabilities(), LeafNodeSource.COMMIT, None, b"", (), b"")
    content = FramedContent(st.context.group_id, st.epoch, Sender.new_member_commit(), b"", Commit(tuple(proposals), UpdatePath(leaf, ())))
    tbs = framed_content_tbs(WireFormat.PUBLIC_MESSAGE, content, st.context_bytes)
    sig = sign_with_label(crypto, signer_.private_key, b"FramedContentTBS", tbs)
    return b"\x00\x01\x00\x01" + encode(PublicMessage(content, FramedContentAuthData(sig, bytes(32)), None))
