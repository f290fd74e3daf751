"""The interop driver (``python -m ping_core.mls.interop``) in process: every op of
docs/interop.md plus ``external_join``, Ping talking to Ping. The live
tests against ts-mls are in tests/interop."""

from __future__ import annotations

import time

import io
import json
from typing import Any

import pytest

from ping_core.mls.interop import Driver, main


class Client:
    def __init__(self) -> None:
        self.driver = Driver(time.time)
        self.n = 0

    def __call__(self, op: str, **fields: Any) -> dict[str, Any]:
        self.n += 1
        resp = self.driver.handle(json.dumps({"op": op, "id": self.n, **fields}))
        assert resp["id"] == self.n
        if not resp["ok"]:
            raise AssertionError(resp["error"])
        # Every answer says how long the handler took (docs/interop.md: elapsed_us, cpu_us); the rest is compared.
        for key in ("elapsed_us", "cpu_us"):
            spent = resp.pop(key)
            assert isinstance(spent, int) and spent >= 0
        return resp

    def fails(self, op: str, **fields: Any) -> str:
        resp = self.driver.handle(json.dumps({"op": op, **fields}))
        assert resp["ok"] is False
        return str(resp["error"])


def test_every_op() -> None:
    d = Client()
    assert d("hello")["ciphersuites"] == [1]
    assert "unsupported" in d.fails("no_such_op")
    assert "bad JSON" in d.driver.handle("{")["error"]
    d("create_group", name="alice", group_id="0a0b")
    kb = d("key_package", name="bob")["key_package"]
    kc = d("key_package", name="carol", identity="6361726f6c")["key_package"]
    assert kb.startswith("00010005") and kb == kb.lower()
    add = d("add", name="alice", key_packages=[kb], ratchet_tree_extension=False)
    assert "no ratchet tree" in d.fails("join", name="bob", welcome=add["welcome"])
    assert d("join", name="bob", welcome=add["welcome"], ratchet_tree=add["ratchet_tree"])["epoch"] == 1
    add2 = d("add", name="bob", key_packages=[kc], encrypt_handshake=True)
    assert add2["commit"].startswith("00010002")
    assert d("process", name="alice", message=add2["commit"]) == {"id": d.n, "ok": True, "commit_applied": True, "epoch": 2}
    d("join", name="carol", welcome=add2["welcome"])
    msg = d("protect", name="carol", data="00ff", aad="aa")["message"]
    assert d("process", name="alice", message=msg)["application_data"] == "00ff"
    assert "hex" in d.fails("process", name="alice", message="zz")
    up = d("update", name="alice")
    for n in ("bob", "carol"):
        d("process", name=n, message=up["commit"])
    kd = d("key_package", name="dave")["key_package"]
    p = d("propose_add", name="carol", key_package=kd)["proposal"]
    for n in ("alice", "bob"):
        assert d("process", name=n, message=p)["proposal_stored"] is True
    c = d("commit", name="bob")
    assert "welcome" in c
    for n in ("alice", "carol"):
        d("process", name=n, message=c["commit"])
    d("join", name="dave", welcome=c["welcome"])
    pr = d("propose_remove", name="alice", member="dave", encrypt_handshake=True)["proposal"]
    for n in ("bob", "carol", "dave"):
        d("process", name=n, message=pr)
    c2 = d("commit", name="carol")
    assert d("process", name="dave", message=c2["commit"]) == {"id": d.n, "ok": True, "removed": True, "commit_applied": True}
    for n in ("alice", "bob"):
        d("process", name=n, message=c2["commit"])
    assert d("state", name="dave")["active"] is False
    gi = d("group_info", name="bob")["group_info"]
    ej = d("external_join", name="erin", group_info=gi)
    assert ej["epoch"] == 6 and ej["leaf_index"] == 3
    for n in ("alice", "bob", "carol"):
        d("process", name=n, message=ej["commit"])
    rm = d("remove", name="erin", identities=["626f62"], leaf_indices=[2])
    for n in ("alice",):
        d("process", name=n, message=rm["commit"])
    views = [d("state", name=n) for n in ("alice", "erin")]
    assert views[0]["members"] == views[1]["members"] and len(views[0]["members"]) == 2
    assert views[0]["tree_hash"] == views[1]["tree_hash"]
    e1 = d("export", name="alice", label="x", context="", length=16)["secret"]
    assert e1 == d("export", name="erin", label_hex="78", context="", length=16)["secret"]
    assert d("epoch_authenticator", name="alice")["epoch_authenticator"] == views[1]["epoch_authenticator"]
    assert d("ratchet_tree", name="alice")["ratchet_tree"] == d("ratchet_tree", name="erin")["ratchet_tree"]
    assert "has no group" in d.fails("state", name="nobody")
    assert "cipher suite" in d.fails("key_package", name="x", cipher_suite=2)


def test_main_loop_answers_each_line_in_order() -> None:
    lines = [json.dumps({"op": "hello", "id": 1}), "", json.dumps({"op": "nope", "id": 2}), "not json"]
    out = io.StringIO()
    assert main(io.StringIO("\n".join(lines) + "\n"), out) == 0
    answers = [json.loads(x) for x in out.getvalue().splitlines()]
    assert [a.get("id") for a in answers] == [1, 2, None] and [a["ok"] for a in answers] == [True, False, False]


@pytest.mark.parametrize("field", ["members", "identities"])
def test_remove_by_unknown_member_fails_cleanly(field: str) -> None:
    d = Client()
    d("create_group", name="alice", group_id="01")
    value = ["zed"] if field == "members" else ["7a6564"]
    assert "0 members" in d.fails("remove", name="alice", **{field: value})
    assert "needs members" in d.fails("remove", name="alice")


def test_bare_external_pub_switch(monkeypatch: pytest.MonkeyPatch) -> None:
    from ping_core.mls.tls import decode_exact
    from ping_core.mls.structs import GroupInfo, MLSMessage

    d = Client()
    d("create_group", name="alice", group_id="01")
    rfc = bytes.fromhex(d("group_info", name="alice")["group_info"])
    monkeypatch.setenv("PING_INTEROP_BARE_EXTERNAL_PUB", "1")
    bare = bytes.fromhex(d("group_info", name="alice")["group_info"])
    for raw, size in ((rfc, 33), (bare, 32)):
        info = decode_exact(MLSMessage, raw).body
        assert isinstance(info, GroupInfo)
        assert [len(e.extension_data) for e in info.extensions if e.extension_type == 4] == [size]
    # Ping joins from either form (the signature was redone for the bare one).
    j = d("external_join", name="bob", group_info=bare.hex())
    assert d("process", name="alice", message=j["commit"])["epoch"] == 1
