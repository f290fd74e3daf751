"""The group state machine end to end: create, add, join, proposals, commits,
application messages, external joins, PSKs, extensions, own echoes, past epochs."""

from __future__ import annotations

import time

import pytest

from ping_core.conversation_name import PING_CAPABILITIES, PING_CONVERSATION_NAME, ConversationName, name_of, with_name
from ping_core.errors import MlsReason
from ping_core.mls.tls import encode
from ping_core.mls.group import (
    ApplicationMessage,
    CommitApplied,
    Group,
    GroupConfig,
    KeyPackageBundle,
    ProposalStored,
    RatchetConfig,
    StagedCommit,
    default_capabilities,
    external_proposal,
    validate_key_package,
    welcome_key_package_refs,
)
from ping_core.mls.structs import (
    Capabilities,
    Credential,
    Extension,
    ExternalSender,
    ExternalSenders,
    FramedContent,
    FramedContentAuthData,
    Proposal,
    PublicMessage,
    Remove,
    Sender,
    WireFormat,
    framed_content_tbs,
)
from ping_core.mls.primitives import sign_with_label

from test_group_support import PUBLIC, agree, app_data, commit_all, crypto, key_package, make_group, member, signer
from reasons import raises_reason


def test_create_is_a_one_member_group() -> None:
    a = Group.create(crypto, signer("alice"), group_id=b"g", clock=time.time)
    assert a.epoch == 0 and a.group_id == b"g" and a.own_leaf_index == 0
    assert [m.identity for m in a.members()] == [b"alice"]
    assert a.active and name_of(a.extensions) is None
    assert len(a.epoch_authenticator) == 32


def test_add_join_and_messages_both_ways() -> None:
    a, b, c = make_group(3)
    agree([a, b, c])
    assert [m.identity for m in c.members()] == [b"alice", b"bob", b"carol"]
    msg = b.protect(b"hi there", b"aad")
    for g in (a, c):
        r = g.process_message(msg)
        assert isinstance(r, ApplicationMessage)
        assert (r.sender, r.data, r.authenticated_data, r.epoch) == (1, b"hi there", b"aad", 1)
        assert r.sender_signature_key == b.signer.public_key
    assert "hi there" not in repr(r)


@pytest.mark.parametrize("in_welcome", [True, False])
def test_welcome_with_or_without_the_tree(in_welcome: bool) -> None:
    a = Group.create(crypto, signer("alice"), config=PUBLIC, clock=time.time)
    bs = signer("bob")
    kb = key_package(bs)
    staged = a.commit(add=[kb.message()], ratchet_tree_extension=in_welcome)
    a.merge_staged_commit(staged)
    assert staged.welcome is not None and staged.welcome_recipients == (kb.ref,)
    assert welcome_key_package_refs(staged.welcome) == [kb.ref]
    if not in_welcome:
        with raises_reason(MlsReason.BAD_WELCOME):
            Group.join(crypto, staged.welcome, kb, bs, clock=time.time)
        b = Group.join(crypto, staged.welcome, kb, bs, ratchet_tree=staged.ratchet_tree, clock=time.time)
    else:
        b = Group.join(crypto, staged.welcome, kb, bs, clock=time.time)
    agree([a, b])


def test_join_needs_the_right_key_package() -> None:
    a = Group.create(crypto, signer("alice"), clock=time.time)
    bs = signer("bob")
    kb, other = key_package(bs), key_package(bs)
    staged = a.commit(add=[kb.message()])
    assert staged.welcome is not None
    with raises_reason(MlsReason.BAD_WELCOME):
        Group.join(crypto, staged.welcome, other, bs, clock=time.time)
    with raises_reason(MlsReason.INVALID_ARGUMENT):
        Group.join(crypto, staged.welcome, kb, signer("mallory"), clock=time.time)
    g = Group.join(crypto, staged.welcome, [other, kb], bs, clock=time.time)
    assert g.epoch == 1


def test_welcome_with_a_tampered_tree_is_refused() -> None:
    a, b = make_group(2)
    cs = signer("carol")
    kc = key_package(cs)
    staged = a.commit(add=[kc.message()], ratchet_tree_extension=False)
    other_tree = b.ratchet_tree()  # the previous epoch's tree: wrong hash
    with raises_reason(MlsReason.BAD_TREE):
        Group.join(crypto, staged.welcome or b"", kc, cs, ratchet_tree=other_tree, clock=time.time)


def test_joiner_commits_and_path_secrets_reach_everyone() -> None:
    a, b, c, d = make_group(4)
    for g in (d, b, a, c):
        commit_all(g, [a, b, c, d], encrypt=True)
        agree([a, b, c, d])
    assert a.epoch == 5


def test_adds_by_a_joiner_with_path_give_the_lca_path_secret() -> None:
    a, b = make_group(2)
    commit_all(b, [a, b])  # b's path fills the tree's parents
    signers = [signer(n) for n in ("c", "d", "e")]
    kps = [key_package(s) for s in signers]
    staged = b.commit(add=[k.message() for k in kps], force_path=True)
    b.merge_staged_commit(staged)
    a.process_message(staged.message or b"")
    joined = [Group.join(crypto, staged.welcome or b"", k, s, clock=time.time) for s, k in zip(signers, kps)]
    everyone = [a, b, *joined]
    agree(everyone)
    for g in joined:  # a joiner's keys work: it can commit and everyone follows
        commit_all(g, everyone)
        agree(everyone)


def test_self_update_public_and_private_and_remove() -> None:
    a, b, c = make_group(3)
    commit_all(b, [a, b, c], encrypt=False)
    commit_all(c, [a, b, c], encrypt=True)
    staged = a.commit(remove=[1])
    a.merge_staged_commit(staged)
    rc = c.process_message(staged.message or b"")
    rb = b.process_message(staged.message or b"")
    assert isinstance(rc, CommitApplied) and rc.removed == (1,) and not rc.removed_self
    assert isinstance(rb, CommitApplied) and rb.removed_self
    assert not b.active and b.removed
    with raises_reason(MlsReason.WRONG_STATE):
        b.protect(b"x")
    with raises_reason(MlsReason.WRONG_STATE):
        b.commit()
    agree([a, c])
    assert [m.identity for m in a.members()] == [b"alice", b"carol"]


def test_proposals_by_reference_committed_by_another_member() -> None:
    a, b, c = make_group(3)
    ds = signer("dave")
    kd = key_package(ds)
    p = a.propose_add(kd.message(), encrypt=True)
    for g in (b, c):
        r = g.process_message(p.message)
        assert isinstance(r, ProposalStored) and r.ref == p.ref
    # a's own echo: recognised, nothing changes
    echo = a.process_message(p.message)
    assert isinstance(echo, ProposalStored) and echo.own
    pr = b.propose_remove(2)
    for g in (a, c):
        g.process_message(pr.message)
    # c cannot commit its own removal: it commits the Add and leaves the Remove out.
    staged = c.commit()
    assert staged.result.added == (3,) and staged.result.removed == ()
    c.merge_staged_commit(staged)
    for g in (a, b):
        r = g.process_message(staged.message or b"")
        assert isinstance(r, CommitApplied) and r.committer == 2 and r.added == (3,)
    d = Group.join(crypto, staged.welcome or b"", kd, ds, clock=time.time)
    agree([a, b, c, d])
    assert all(not g.pending_proposals for g in (a, b, c, d))


def test_proposals_by_reference() -> None:
    a, b, c = make_group(3)
    ds = signer("dave")
    kd = key_package(ds)
    p_add = a.propose_add(kd.message(), encrypt=True)
    p_rm = b.propose_remove(2, encrypt=False)
    for msg, sender in ((p_add.message, a), (p_rm.message, b)):
        for g in (a, b, c):
            if g is not sender:
                assert isinstance(g.process_message(msg), ProposalStored)
    assert [len(g.pending_proposals) for g in (a, b, c)] == [2, 2, 2]
    with raises_reason(MlsReason.WRONG_STATE):
        a.protect(b"must commit first")
    staged = a.commit()
    a.merge_staged_commit(staged)
    assert staged.result.added == (2,) or staged.result.added == (3,)
    rb = b.process_message(staged.message or b"")
    rc = c.process_message(staged.message or b"")
    assert isinstance(rc, CommitApplied) and rc.removed_self
    d = Group.join(crypto, staged.welcome or b"", kd, ds, clock=time.time)
    agree([a, b, d])
    assert isinstance(rb, CommitApplied) and rb.removed == (2,)


def test_update_proposal_committed_by_another_member() -> None:
    a, b, c = make_group(3)
    old_key = member(b, 1).encryption_key
    p = b.propose_update()
    for g in (a, c):
        g.process_message(p.message)
    staged = commit_all(a, [a, b, c])
    assert staged.result.updated == (1,)
    assert member(b, 1).encryption_key != old_key
    agree([a, b, c])
    commit_all(c, [a, b, c])  # b can still decrypt path secrets with its new leaf key
    agree([a, b, c])


def test_own_commit_echo() -> None:
    a, b = make_group(2)
    staged = a.commit()
    before = a.to_bytes()
    a.merge_staged_commit(staged)
    r = a.process_message(staged.message or b"")
    assert isinstance(r, CommitApplied) and r.own and r.already_applied
    b.process_message(staged.message or b"")
    agree([a, b])
    # A pending commit whose echo arrives is merged (the server took it).
    staged2 = a.commit(encrypt=True)
    r2 = a.process_message(staged2.message or b"")
    assert isinstance(r2, CommitApplied) and r2.own and not r2.already_applied
    assert a.epoch == 3 and a.pending_commit is None
    b.process_message(staged2.message or b"")
    agree([a, b])
    assert before != a.to_bytes()


def test_staged_commit_changes_nothing_until_merged() -> None:
    a, b = make_group(2)
    before = a.to_bytes()
    staged = a.commit(remove=[1])
    assert a.pending_commit is staged and a.epoch == 1
    a.discard_staged_commit()
    assert a.to_bytes() == before
    # A received commit staged without merging changes nothing either.
    staged_b = b.commit()
    before_a = a.to_bytes()
    got = a.process_message(staged_b.message or b"", merge=False)
    assert isinstance(got, StagedCommit) and got.epoch == 2
    assert a.to_bytes() == before_a
    r = a.merge_staged_commit(got)
    assert r.epoch == 2
    b.merge_staged_commit(staged_b)
    agree([a, b])
    with raises_reason(MlsReason.WRONG_STATE):
        a.merge_staged_commit(got)


def test_competing_commit_discards_our_pending_one() -> None:
    a, b = make_group(2)
    mine = a.commit()
    theirs = b.commit()
    b.merge_staged_commit(theirs)
    a.process_message(theirs.message or b"")
    assert a.pending_commit is None and a.epoch == 2
    with raises_reason(MlsReason.WRONG_STATE):
        a.merge_staged_commit(mine)
    agree([a, b])


def test_past_epoch_messages_and_their_deletion() -> None:
    cfg = GroupConfig(encrypt_handshake=False, max_past_epochs=1)
    a, b = make_group(2, config=cfg)
    late = a.protect(b"late")
    old_membership_key = b.state.current.secrets.membership_key
    commit_all(a, [a, b])
    # A past epoch keeps no membership key (it accepts no PublicMessage), in
    # memory or in its records; its late application messages still open.
    assert b.state.past_epochs[1].framing.membership_key == bytes(32)
    assert old_membership_key not in b.to_bytes()
    assert old_membership_key not in Group.from_bytes(crypto, b.to_bytes(), clock=time.time).to_bytes()
    r = b.process_message(late)
    assert isinstance(r, ApplicationMessage) and r.data == b"late" and r.epoch == 1
    late2 = a.protect(b"two epochs back")
    commit_all(a, [a, b])
    commit_all(b, [a, b])
    with raises_reason(MlsReason.TOO_OLD):
        b.process_message(late2)
    future = a.protect(b"x")
    # A message for a future epoch is refused.
    c_late = a.protect(b"y")
    b.process_message(c_late)
    with raises_reason(MlsReason.REPLAY):
        b.process_message(c_late)  # replay: generation already used
    b.process_message(future)


def test_out_of_order_tolerance_and_forward_distance() -> None:
    cfg = GroupConfig(encrypt_handshake=False, ratchet=RatchetConfig(out_of_order_tolerance=2, maximum_forward_distance=5))
    a, b = make_group(2, config=cfg)
    msgs = [a.protect(bytes([i])) for i in range(12)]
    assert app_data(b.process_message(msgs[3])) == b"\x03"
    assert app_data(b.process_message(msgs[1])) == b"\x01"
    with raises_reason(MlsReason.TOO_OLD):
        b.process_message(msgs[0])
    with raises_reason(MlsReason.TOO_FAR_AHEAD):
        b.process_message(msgs[11])  # next expected is 4: 7 ahead
    assert app_data(b.process_message(msgs[9])) == b"\x09"


def test_conversation_name_extension() -> None:
    a, b = make_group(2, extensions=with_name((), "team"))
    assert name_of(a.extensions) == name_of(b.extensions) == "team"
    commit_all(b, [a, b], extensions=with_name(b.extensions, "renamed"))
    assert name_of(a.extensions) == "renamed" and a.group_context.extensions[0].extension_type == PING_CONVERSATION_NAME
    # A member whose KeyPackage does not support the extension cannot be added.
    plain = Capabilities(extensions=())
    cs = signer("carol")
    kc = key_package(cs, capabilities=plain)
    with raises_reason(MlsReason.UNSUPPORTED):
        a.commit(add=[kc.message()])


def test_external_join_and_resync() -> None:
    a, b = make_group(2)
    es = signer("eve")
    e, commit = Group.join_external(crypto, b.group_info(), es, clock=time.time)
    for g in (a, b):
        r = g.process_message(commit)
        assert isinstance(r, CommitApplied) and r.external and r.committer == 2
    agree([a, b, e])
    msg = e.protect(b"hello from eve")
    assert app_data(a.process_message(msg)) == b"hello from eve"
    # eve lost her state: she rejoins and removes her old leaf.
    e2, commit2 = Group.join_external(crypto, a.group_info(ratchet_tree=False), es, ratchet_tree=a.ratchet_tree(), resync=True, clock=time.time)
    for g in (a, b):
        r = g.process_message(commit2)
        assert isinstance(r, CommitApplied) and r.removed == (2,)
    r = e.process_message(commit2)
    assert isinstance(r, CommitApplied) and r.removed_self
    agree([a, b, e2])
    # Our own external commit echoed back: already applied.
    echo = e2.process_message(commit2)
    assert isinstance(echo, CommitApplied) and echo.already_applied


def test_external_psk_and_resumption_psk() -> None:
    a, b = make_group(2)
    psk_id, secret = b"shared psk", b"\x07" * 32
    p = a.propose_external_psk(psk_id)
    b.process_message(p.message)
    staged = a.commit(psks={psk_id: secret})
    with raises_reason(MlsReason.UNKNOWN_PSK):
        b.process_message(staged.message or b"", merge=False)
    a.merge_staged_commit(staged)
    r = b.process_message(staged.message or b"", psks={psk_id: secret})
    assert isinstance(r, CommitApplied) and r.psks == 1
    agree([a, b])
    p2 = b.propose_resumption_psk(a.epoch - 1)
    a.process_message(p2.message)
    commit_all(a, [a, b])
    agree([a, b])
    # A new member receives the PSK ids in the Welcome.
    cs = signer("carol")
    kc = key_package(cs)
    staged = a.commit(add=[kc.message()], external_psks=[psk_id], psks={psk_id: secret})
    a.merge_staged_commit(staged)
    b.process_message(staged.message or b"", psks={psk_id: secret})
    with raises_reason(MlsReason.UNKNOWN_PSK):
        Group.join(crypto, staged.welcome or b"", kc, cs, clock=time.time)
    c = Group.join(crypto, staged.welcome or b"", kc, cs, psks={psk_id: secret}, clock=time.time)
    agree([a, b, c])


def test_reinit_stops_the_group() -> None:
    a, b = make_group(2)
    p = b.propose_reinit(group_id=b"new group")
    a.process_message(p.message)
    staged = commit_all(a, [a, b])
    assert staged.result.reinit is not None and staged.result.reinit.group_id == b"new group"
    for g in (a, b):
        assert g.pending_reinit is not None and not g.active
        with raises_reason(MlsReason.WRONG_STATE):
            g.protect(b"x")


def _external_proposal(group_id: bytes, epoch: int, sender: Sender, proposal: Proposal, key: bytes) -> bytes:
    """Like ``external_proposal`` but without its sender-side checks (to forge)."""
    content = FramedContent(group_id, epoch, sender, b"", proposal)
    tbs = framed_content_tbs(WireFormat.PUBLIC_MESSAGE, content, None)
    sig = sign_with_label(crypto, key, b"FramedContentTBS", tbs)
    return b"\x00\x01\x00\x01" + encode(PublicMessage(content, FramedContentAuthData(sig), None))


def test_external_sender_proposals() -> None:
    server = signer("delivery service")
    ext = Extension.of(ExternalSenders((ExternalSender(server.public_key, server.credential),)))
    a, b, c = make_group(3, extensions=[ext])
    msg = external_proposal(crypto, server.private_key, a.group_id, a.epoch, Remove(2), sender_index=0)
    for g in (a, b, c):
        r = g.process_message(msg)
        assert isinstance(r, ProposalStored) and r.sender == Sender.external(0)
    staged = commit_all(a, [a, b])
    assert staged.result.removed == (2,)
    # An unknown external sender index, or a wrong key, is refused.
    bad = _external_proposal(a.group_id, a.epoch, Sender.external(1), Remove(1), server.private_key)
    with raises_reason(MlsReason.UNKNOWN_SENDER):
        b.process_message(bad)
    forged = _external_proposal(a.group_id, a.epoch, Sender.external(0), Remove(1), signer("x").private_key)
    with raises_reason(MlsReason.BAD_SIGNATURE):
        b.process_message(forged)


def test_new_member_proposal() -> None:
    from ping_core.mls.structs import Add

    a, b = make_group(2)
    cs = signer("carol")
    kc = key_package(cs)
    msg = external_proposal(crypto, cs.private_key, a.group_id, a.epoch, Add(kc.key_package))
    for g in (a, b):
        assert isinstance(g.process_message(msg), ProposalStored)
    staged = commit_all(b, [a, b])
    c = Group.join(crypto, staged.welcome or b"", kc, cs, clock=time.time)
    agree([a, b, c])
    # A new_member_proposal must be signed by the KeyPackage's own key.
    ds = signer("dave")
    kd = key_package(ds)
    forged = _external_proposal(a.group_id, a.epoch, Sender.new_member_proposal(), Add(kd.key_package), cs.private_key)
    with raises_reason(MlsReason.BAD_SIGNATURE):
        a.process_message(forged)
    with raises_reason(MlsReason.INVALID_ARGUMENT):
        external_proposal(crypto, cs.private_key, a.group_id, a.epoch, Add(kd.key_package))
    with raises_reason(MlsReason.SENDER_NOT_ALLOWED):
        external_proposal(crypto, cs.private_key, a.group_id, a.epoch, Remove(0))


def test_key_package_bundle_round_trip_and_validation() -> None:
    s = signer("bob")
    kb = key_package(s, now=1_000_000)
    again = KeyPackageBundle.from_bytes(crypto, kb.to_bytes())
    assert again.ref == kb.ref and again.to_bytes() == kb.to_bytes()
    assert "init" not in repr(kb) or kb.init_private.hex() not in repr(kb)
    validate_key_package(crypto, kb.message(), now=1_000_000)
    with raises_reason(MlsReason.BAD_LIFETIME):
        validate_key_package(crypto, kb.key_package, now=10**12)
    assert kb.key_package.leaf_node.capabilities == PING_CAPABILITIES == default_capabilities(extensions=(0xF0A1,))
    # The engine's own default lists no extension type: an application's are its own.
    assert default_capabilities().extensions == ()
    wrong = KeyPackageBundle(crypto, kb.key_package, kb.encryption_private, kb.init_private)
    with raises_reason(MlsReason.CORRUPT_STATE):
        KeyPackageBundle.from_bytes(crypto, wrong.to_bytes())


def test_expired_key_package_cannot_be_added() -> None:
    a = Group.create(crypto, signer("alice"), clock=time.time)
    kb = key_package(signer("bob"), now=1_000, lifetime_s=10)
    with raises_reason(MlsReason.BAD_LIFETIME):
        a.commit(add=[kb.message()])


def test_group_info_and_members() -> None:
    a, b = make_group(2)
    gi = a.group_info()
    assert gi[:4] == b"\x00\x01\x00\x04"
    assert [(m.leaf_index, m.identity) for m in b.members()] == [(0, b"alice"), (1, b"bob")]
    assert b.member(5) is None and b.leaf_of(identity=b"bob") == [1]
    assert member(a, 1).signature_key == b.signer.public_key
    assert Credential.basic(b"alice") == a.members()[0].credential


def test_remove_and_re_add_the_same_client_in_one_commit() -> None:
    a, b, c = make_group(3)
    fresh = key_package(b.signer)
    staged = commit_all(a, [a, c], remove=[1], add=[fresh.message()])
    assert staged.result.removed == (1,) and staged.result.added == (1,)
    b2 = Group.join(crypto, staged.welcome or b"", fresh, b.signer, clock=time.time)
    agree([a, b2, c])


def test_reinit_creates_the_new_group_with_the_resumption_psk() -> None:
    a, b, c = make_group(3)
    p = b.propose_reinit(group_id=b"second generation", extensions=[Extension.of(ConversationName("v2"))])
    for g in (a, c):
        g.process_message(p.message)
    commit_all(a, [a, b, c])
    with raises_reason(MlsReason.WRONG_STATE):
        make_group(2)[0].reinit_group([])
    kb, kc = key_package(b.signer), key_package(c.signer)
    new_a, staged = a.reinit_group([kb.message(), kc.message()])
    new_a.merge_staged_commit(staged)
    assert new_a.group_id == b"second generation" and new_a.epoch == 1 and name_of(new_a.extensions) == "v2"
    with raises_reason(MlsReason.INVALID_ARGUMENT):
        Group.join(crypto, staged.welcome or b"", kb, b.signer, clock=time.time)
    new_b = Group.join(crypto, staged.welcome or b"", kb, b.signer, reinit_from=b, clock=time.time)
    new_c = Group.join(crypto, staged.welcome or b"", kc, c.signer, reinit_from=c, clock=time.time)
    agree([new_a, new_b, new_c])
    # A Welcome that does not reinitialise refuses reinit_from.
    d = make_group(2)
    ds = signer("dave")
    kd = key_package(ds)
    st2 = d[0].commit(add=[kd.message()])
    with raises_reason(MlsReason.INVALID_ARGUMENT):
        Group.join(crypto, st2.welcome or b"", kd, ds, reinit_from=b, clock=time.time)


def test_padding_makes_plaintexts_a_multiple_of_the_block() -> None:
    from ping_core.mls.tls import decode_exact
    from ping_core.mls.structs import MLSMessage, PrivateMessage

    cfg = GroupConfig(encrypt_handshake=True, padding_block=64)
    a, b = make_group(2, config=cfg)
    sizes = set()
    for n in (0, 1, 10, 63, 64, 100):
        msg = a.protect(bytes(n))
        body = decode_exact(MLSMessage, msg).body
        assert isinstance(body, PrivateMessage)
        assert (len(body.ciphertext) - 16) % 64 == 0  # AEAD tag excluded
        sizes.add(len(body.ciphertext))
        assert app_data(b.process_message(msg)) == bytes(n)
    assert len(sizes) <= 3
    staged = a.commit()
    body = decode_exact(MLSMessage, staged.message or b"").body
    assert isinstance(body, PrivateMessage) and (len(body.ciphertext) - 16) % 64 == 0
    a.merge_staged_commit(staged)
    b.process_message(staged.message or b"")
    agree([a, b])


def test_late_message_from_a_member_removed_since() -> None:
    a, b, c = make_group(3)
    late = b.protect(b"sent before my removal")
    commit_all(a, [a, b, c], remove=[1])
    r = c.process_message(late)
    assert isinstance(r, ApplicationMessage) and r.epoch == 1 and r.sender == 1
    assert r.sender_signature_key == b.signer.public_key and c.member(1) is None
