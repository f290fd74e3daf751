"""Group state persistence: to_bytes/from_bytes, records and their changes, and
a property test over random operation sequences in which members are restored
from their persisted state at random points and must behave identically."""

from __future__ import annotations

import time

from typing import Any
from weakref import WeakKeyDictionary

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ping_core.errors import MlsReason
from ping_core.mls.group import ApplicationMessage, CommitApplied, Group, GroupConfig, ProposalStored

from test_group_support import agree, app_data, commit_all, crypto, key_package, make_group, signer
from reasons import raises_reason


def test_to_bytes_is_deterministic_and_round_trips() -> None:
    a, b = make_group(2)
    blob = a.to_bytes()
    assert blob == a.to_bytes()
    again = Group.from_bytes(crypto, blob, clock=time.time)
    assert again.to_bytes() == blob
    assert again.epoch_authenticator == a.epoch_authenticator and again.members() == a.members()
    msg = again.protect(b"from the restored copy")
    assert app_data(b.process_message(msg)) == b"from the restored copy"


def test_from_bytes_refuses_garbage() -> None:
    a, _ = make_group(2)
    blob = a.to_bytes()
    for bad in (b"", b"PMLSG\x02" + blob[6:], blob[:-1], blob + b"\x00", blob[:40]):
        with raises_reason(MlsReason.CORRUPT_STATE):
            Group.from_bytes(crypto, bad, clock=time.time)
    records = a.records()
    records["unexpected"] = b"x"
    with raises_reason(MlsReason.CORRUPT_STATE):
        Group.from_records(crypto, records, clock=time.time)
    records = a.records()
    del records["tree"]
    with raises_reason(MlsReason.CORRUPT_STATE):
        Group.from_records(crypto, records, clock=time.time)


def test_a_send_changes_one_small_record_whatever_the_group_size() -> None:
    sizes = {}
    for n in (2, 12):
        groups = make_group(n)
        g = groups[-1]
        g.mark_saved()
        g.protect(b"first")
        g.mark_saved()
        g.protect(b"second")
        ch = g.changed_records()
        assert list(ch.written) == [f"st:{g.epoch}:leaf:{g.own_leaf_index}"] and not ch.deleted
        sizes[n] = len(next(iter(ch.written.values())))
    assert sizes[2] == sizes[12] < 200


def _apply(store: dict[str, bytes], g: Group) -> None:
    ch = g.changed_records()
    store.update(ch.written)
    for name in ch.deleted:
        store.pop(name, None)
    g.mark_saved()


def test_incremental_records_rebuild_the_same_state() -> None:
    cfg = GroupConfig(encrypt_handshake=True, max_past_epochs=2)
    a, b, c = make_group(3, config=cfg)
    stores: dict[int, dict[str, bytes]] = {0: {}, 1: {}, 2: {}}
    groups = [a, b, c]
    for i, g in enumerate(groups):
        _apply(stores[i], g)
    for step in range(8):
        sender = groups[step % 3]
        msg = sender.protect(b"m%d" % step)
        for g in groups:
            if g is not sender:
                g.process_message(msg)
        if step % 2:
            commit_all(groups[(step + 1) % 3], groups, encrypt=bool(step % 4))
        for i, g in enumerate(groups):
            _apply(stores[i], g)
            assert stores[i] == g.records()
            assert Group.from_records(crypto, stores[i], clock=time.time).to_bytes() == g.to_bytes()
    # Past epochs beyond max_past_epochs left no records behind.
    epochs = {name.split(":")[1] for name in stores[0] if name.startswith(("st:", "past:"))}
    assert len(epochs) <= cfg.max_past_epochs + 1


def test_pending_commit_survives_a_restart() -> None:
    a, b = make_group(2)
    staged = a.commit(encrypt=True)
    restored = Group.from_bytes(crypto, a.to_bytes(), clock=time.time)
    assert restored.pending_commit is not None and restored.pending_commit.message == staged.message
    r = restored.process_message(staged.message or b"")  # the server's echo: merge it
    assert isinstance(r, CommitApplied) and r.own
    b.process_message(staged.message or b"")
    agree([restored, b])


# -- the property ---------------------------------------------------------------

OPS = ("app", "app", "update", "update_private", "add", "remove", "propose_update", "propose_remove", "restore", "restore_records")


class World:
    """A group of members with persisted copies; every member that processes a
    message has a twin restored from its state that processes it too."""

    def __init__(self) -> None:
        self.cfg = GroupConfig(encrypt_handshake=False, max_past_epochs=1)
        self.members = make_group(3, config=self.cfg)
        self.serial = 3
        # Each member's persisted records (what a storage backend would hold).
        self.stores: WeakKeyDictionary[Group, dict[str, bytes]] = WeakKeyDictionary()
        for g in self.members:
            self._save(g)

    def store(self, g: Group) -> dict[str, bytes]:
        """The member's persisted records (what a storage backend would hold)."""
        return self.stores.setdefault(g, {})

    def _save(self, g: Group) -> None:
        _apply(self.store(g), g)

    def deliver(self, message: bytes, sender: Group) -> None:
        for g in list(self.members):
            if g is sender:
                continue
            twin = Group.from_bytes(crypto, g.to_bytes(), clock=time.time)
            r1 = g.process_message(message)
            r2 = twin.process_message(message)
            assert type(r1) is type(r2)
            if isinstance(r1, ApplicationMessage):
                assert isinstance(r2, ApplicationMessage) and (r1.sender, r1.data) == (r2.sender, r2.data)
            elif isinstance(r1, CommitApplied):
                assert r1 == r2
                if r1.removed_self:
                    self.members.remove(g)
            elif isinstance(r1, ProposalStored):
                assert isinstance(r2, ProposalStored) and r1.ref == r2.ref
            assert twin.to_bytes() == g.to_bytes()

    def commit(self, g: Group, **kw: Any) -> None:
        staged = g.commit(**kw)
        g.merge_staged_commit(staged)
        self.deliver(staged.message or b"", g)
        if staged.welcome:
            for _, bundle, s in self.pending_joiners:
                self.members.append(Group.join(crypto, staged.welcome, bundle, s, config=self.cfg, clock=time.time))
                self._save(self.members[-1])
            self.pending_joiners = []

    pending_joiners: list[Any] = []

    def step(self, op: str, who: int, target: int) -> None:
        members = self.members
        g = members[who % len(members)]
        if op == "app":
            if g.pending_proposals:
                op = "update"
            else:
                self.deliver(g.protect(b"message %d" % target), g)
                return
        if op in ("update", "update_private"):
            self.commit(g, encrypt=op == "update_private")
        elif op == "add" and len(members) < 6:
            s = signer(f"joiner {self.serial}")
            self.serial += 1
            bundle = key_package(s)
            self.pending_joiners = [(None, bundle, s)]
            self.commit(g, add=[bundle.message()])
        elif op == "remove" and len(members) > 2:
            victims = [m for m in members if m is not g]
            v = victims[target % len(victims)]
            self.commit(g, remove=[v.own_leaf_index])
        elif op == "propose_update":
            p = g.propose_update()
            self.deliver(p.message, g)
            other = members[(who + 1) % len(members)]
            self.commit(other)
        elif op == "propose_remove" and len(members) > 2:
            victims = [m for m in members if m is not g]
            v = victims[target % len(victims)]
            p = g.propose_remove(v.own_leaf_index)
            self.deliver(p.message, g)
            self.commit(g)
        elif op == "restore":
            i = who % len(members)
            old = members[i]
            self._save(old)
            new = Group.from_bytes(crypto, old.to_bytes(), clock=time.time)
            self.stores[new] = dict(self.store(old))
            members[i] = new
        elif op == "restore_records":
            i = who % len(members)
            old = members[i]
            self._save(old)
            new = Group.from_records(crypto, self.store(old), clock=time.time)
            assert new.to_bytes() == old.to_bytes()
            self.stores[new] = dict(self.store(old))
            members[i] = new


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.sampled_from(OPS), st.integers(0, 7), st.integers(0, 7)), min_size=1, max_size=12))
def test_restored_groups_behave_identically(ops: list[tuple[str, int, int]]) -> None:
    w = World()
    for op, who, target in ops:
        w.step(op, who, target)
        agree(w.members)
        for g in w.members:
            w._save(g)
