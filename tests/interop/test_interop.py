"""Live interop between Ping's MLS engine, ts-mls and mls-rs, through docs/interop.md drivers.

Every combination that involves Ping carries the ``ping_interop`` marker and fails (never skips)
while `python -m ping_core.mls.interop` is missing or broken. The ts-mls x ts-mls combinations
check the rig itself, and the fault-injection tests show that the rig notices disagreement.

    pytest tests/interop                          # everything
    pytest tests/interop -m "not ping_interop"    # only the rig (ts-mls x ts-mls)

ts-mls must be installed first: ``npm ci --prefix tests/interop``. The mls-rs combinations
(its binding offers a subset of the ops: ``scenario_with_peer``) need ``pip install -e '.[interop]'``
and are skipped, saying so, without it.
"""

from __future__ import annotations

import importlib.util
import itertools
import shlex
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from runner import (  # noqa: E402
    FULL_IMPLEMENTATIONS,
    IMPLEMENTATIONS,
    KEY_PACKAGE,
    PRIVATE_MESSAGE,
    Driver,
    DriverError,
    RequestFailed,
    ScenarioError,
    command_for,
    scenario_external_join,
    scenario_group_of_four,
    scenario_with_peer,
    start_driver,
)

HERE = Path(__file__).resolve().parent
IMPLS = FULL_IMPLEMENTATIONS  # ("tsmls", "ping"): every op of docs/interop.md
HAVE_MLSRS = importlib.util.find_spec("mls_rs_uniffi") is not None
NEEDS_MLSRS = pytest.mark.skipif(
    not HAVE_MLSRS, reason="mls-rs's binding is not installed: pip install -e '.[interop]'")


def _param(roles: tuple[str, ...], *extra: Any) -> Any:
    marks = [pytest.mark.ping_interop] if "ping" in roles else []
    if "mlsrs" in roles:
        marks.append(NEEDS_MLSRS)
    return pytest.param(roles, *extra, id="-".join(roles), marks=marks)


@contextmanager
def reported() -> Iterator[None]:
    """Turn rig failures into a plain pytest failure whose message is the whole story."""
    try:
        yield
    except (DriverError, ScenarioError) as e:
        message = str(e)
    else:
        return
    try:
        pytest.fail(message, pytrace=False)
    except pytest.fail.Exception as failure:
        raise failure from None  # the message already tells the whole story: no chained traceback


# ------------------------------------------------------------------------------ the scenarios


@pytest.mark.parametrize("tree_mode", ["welcome", "out_of_band"])
@pytest.mark.parametrize("roles", [_param(r) for r in itertools.product(IMPLS, repeat=4)])
def test_group_of_four(roles: tuple[str, ...], tree_mode: str) -> None:
    """Issue 4's scenario with every assignment of implementations to alice, bob, carol, dave."""
    with reported():
        g = scenario_group_of_four(roles, tree_mode)
    assert g.epoch == 16 and len(g.steps) == 21 and g.checks == 21


@pytest.mark.parametrize("impl", [_param((i,)) for i in IMPLS])
def test_group_of_four_one_process_per_member(impl: tuple[str]) -> None:
    """The same scenario with every client in a driver process of its own."""
    with reported():
        g = scenario_group_of_four(impl * 4, "welcome", isolated=True)
    assert g.epoch == 16


@pytest.mark.parametrize("roles", [_param(r) for r in itertools.product(IMPLS, repeat=3)])
def test_external_join(roles: tuple[str, ...], monkeypatch: pytest.MonkeyPatch) -> None:
    """alice and bob (roles[0:2]) take in roles[2] by external commit from bob's group_info.

    ``external_join`` is an extension op of this rig (not in docs/interop.md) that both drivers speak.

    ts-mls 1.6.4 reads GroupInfo's external_pub extension as the bare 32-byte key instead of
    RFC 9420's length-prefixed ``ExternalPub`` (fixed upstream in ts-mls PR #449, not released).
    A GroupInfo is signed, so the ts-mls side cannot convert it; when a Ping member publishes the
    GroupInfo for a ts-mls joiner, the Ping driver is told to write the ts-mls form. Ping's engine
    writes the RFC form by default (tests/mls/test_group_interop.py) and reads both.
    """
    if roles[1] == "ping" and roles[2] == "tsmls":
        monkeypatch.setenv("PING_INTEROP_BARE_EXTERNAL_PUB", "1")
    with reported():
        g = scenario_external_join(roles[:2], roles[2])
    assert g.epoch == 4


#: Ping x mls-rs in every role mix of three, and two mixes with ts-mls as well.
PEER_ROLES = [r for r in itertools.product(("ping", "mlsrs"), repeat=3) if "mlsrs" in r and "ping" in r]
PEER_ROLES += [("mlsrs", "mlsrs", "mlsrs"), ("mlsrs", "tsmls", "ping"), ("tsmls", "ping", "mlsrs")]


@pytest.mark.parametrize("roles", [_param(r) for r in PEER_ROLES])
def test_group_with_mlsrs(roles: tuple[str, ...]) -> None:
    """Adds by joiners, by-reference adds, self-updates, a removal and messages between Ping,
    mls-rs and ts-mls, with agreement (epoch, exporter, ratchet tree) after every step."""
    with reported():
        g = scenario_with_peer(roles)
    assert g.epoch == 8 and len(g.steps) == 12 and g.checks == 12


@pytest.mark.parametrize("impl", [_param((i,)) for i in IMPLEMENTATIONS])
def test_drivers_report_elapsed_us(impl: tuple[str]) -> None:
    """Every successful answer says how long the driver worked on it, wall clock and CPU
    (docs/interop.md, optional fields), which benchmarks/vs_peers.py reads."""
    with reported(), start_driver(impl[0]) as d:
        answers = [d.request("key_package", name="bob"), d.request("create_group", name="a", group_id="01")]
        answers.append(d.request("state", name="a"))
        for a in answers:
            for key in ("elapsed_us", "cpu_us"):
                assert isinstance(a.get(key), int) and a[key] >= 0, a


@NEEDS_MLSRS
def test_mlsrs_driver_basics() -> None:
    """The mls-rs driver: `unsupported` for what its binding lacks, a tampered or malformed message
    refused with the epoch secrets unchanged, and the next message read.

    (mls-rs drops the ratchet key of a message whose AEAD check failed, so unlike Ping and ts-mls
    it cannot read the untampered original afterwards: its behaviour, not the driver's.)"""
    with reported(), start_driver("mlsrs") as d:
        for op, fields in [("no_such_op", {}), ("epoch_authenticator", {"name": "a"}),
                           ("group_info", {"name": "a"})]:
            with pytest.raises(RequestFailed) as err:
                d.request(op, **fields)
            assert err.value.unsupported, err.value.response
        kp = d.request("key_package", name="b")["key_package"]
        kp2 = d.request("key_package", name="b")["key_package"]
        assert kp.startswith(KEY_PACKAGE) and kp != kp2
        d.request("create_group", name="a", group_id="0a0b0c")
        with pytest.raises(RequestFailed) as err:
            d.request("add", name="a", key_packages=[kp], encrypt_handshake=True)
        assert err.value.unsupported
        add = d.request("add", name="a", key_packages=[kp2])
        assert add["epoch"] == 1
        joined = d.request("join", name="b", welcome=add["welcome"])
        assert (joined["epoch"], joined["group_id"]) == (1, "0a0b0c")
        exported = d.request("export", name="b", label="x", context="", length=32)["secret"]
        msg = d.request("protect", name="a", data="00ff")["message"]
        assert msg.startswith(PRIVATE_MESSAGE)
        with pytest.raises(RequestFailed):
            d.request("process", name="b", message=msg[:-2] + f"{int(msg[-2:], 16) ^ 1:02x}")
        with pytest.raises(RequestFailed):
            d.request("process", name="b", message="zz")
        assert d.request("export", name="b", label="x", context="", length=32)["secret"] == exported
        msg = d.request("protect", name="a", data="01ff")["message"]
        assert d.request("process", name="b", message=msg)["application_data"] == "01ff"
        assert d.request("state", name="b")["epoch"] == 1


# ------------------------------------------------------------------------------ protocol basics


@pytest.mark.parametrize("impl", [_param((i,)) for i in IMPLS])
def test_driver_protocol_basics(impl: tuple[str]) -> None:
    """hello, id echo, lowercase hex, `unsupported` for unknown ops, and a rejected message that
    leaves the group unchanged (docs/interop.md)."""
    with reported(), start_driver(impl[0]) as d:
        hello = d.hello
        assert isinstance(hello.get("impl"), str) and isinstance(hello.get("version"), str)

        with pytest.raises(RequestFailed) as err:
            d.request("no_such_op")
        assert err.value.unsupported, err.value.response

        kp = d.request("key_package", name="bob")["key_package"]
        assert kp.startswith(KEY_PACKAGE) and kp == kp.lower()
        kp2 = d.request("key_package", name="bob")["key_package"]
        assert kp2 != kp  # several KeyPackages may be outstanding

        r = d.request("create_group", name="alice", group_id="0a0b0c")
        assert r["epoch"] == 0 and r["leaf_index"] == 0
        add = d.request("add", name="alice", key_packages=[kp2])
        assert add["epoch"] == 1
        join = d.request("join", name="bob", welcome=add["welcome"])
        assert join["epoch"] == 1 and join["group_id"] == "0a0b0c"

        auth = d.request("epoch_authenticator", name="bob")["epoch_authenticator"]
        msg = d.request("protect", name="alice", data="00ff")["message"]
        assert msg.startswith(PRIVATE_MESSAGE)
        tampered = msg[:-2] + f"{int(msg[-2:], 16) ^ 1:02x}"
        with pytest.raises(RequestFailed):
            d.request("process", name="bob", message=tampered)
        with pytest.raises(RequestFailed):
            d.request("process", name="bob", message=msg + "00")  # trailing byte
        with pytest.raises(RequestFailed):
            d.request("process", name="bob", message="zz")  # not hex
        assert d.request("epoch_authenticator", name="bob")["epoch_authenticator"] == auth
        assert d.request("process", name="bob", message=msg)["application_data"] == "00ff"
        st = d.request("state", name="bob")
        assert st["epoch"] == 1 and st["group_id"] == "0a0b0c"


@pytest.mark.parametrize("impl", [_param((i,)) for i in IMPLS])
def test_driver_op_variants(impl: tuple[str]) -> None:
    """The request variants the group scenario does not use: `commit` with nothing pending,
    `propose_remove` by identity and by member committed together, a Welcome without the tree
    joined without it (must fail) and with it, `group_info`, `remove` by identities."""
    with reported(), start_driver(impl[0]) as d:
        def req(op: str, **f: Any) -> dict[str, Any]:
            return d.request(op, **f)

        req("create_group", name="a", group_id="01")
        kps = [req("key_package", name=n)["key_package"] for n in ("b", "c", "d")]
        add = req("add", name="a", key_packages=kps, ratchet_tree_extension=False)
        with pytest.raises(RequestFailed):
            req("join", name="b", welcome=add["welcome"])  # no tree anywhere
        for n in ("b", "c", "d"):
            assert req("join", name=n, welcome=add["welcome"], ratchet_tree=add["ratchet_tree"])["epoch"] == 1
        assert req("ratchet_tree", name="b")["ratchet_tree"] == add["ratchet_tree"]

        empty = req("commit", name="b")  # nothing pending: like update
        assert empty["epoch"] == 2 and "welcome" not in empty
        for n in ("a", "c", "d"):
            assert req("process", name=n, message=empty["commit"])["epoch"] == 2

        by_identity = req("propose_remove", name="c", identity="64")["proposal"]  # "d"
        by_member = req("propose_remove", name="c", member="b", encrypt_handshake=True)["proposal"]
        assert by_member.startswith(PRIVATE_MESSAGE)
        for n in ("a", "b", "d"):
            assert req("process", name=n, message=by_identity)["proposal_stored"] is True
            assert req("process", name=n, message=by_member)["proposal_stored"] is True
        commit = req("commit", name="a")
        assert commit["epoch"] == 3
        applied = req("process", name="c", message=commit["commit"])
        assert applied.get("commit_applied") is True and applied.get("epoch") == 3 and "removed" not in applied
        for n in ("b", "d"):
            assert req("process", name=n, message=commit["commit"])["removed"] is True
        roster = req("state", name="a").get("members")
        if roster is not None:
            assert sorted(bytes.fromhex(e["identity"]) for e in roster) == [b"a", b"c"]

        gi = req("group_info", name="c")["group_info"]
        assert gi.startswith("00010004")
        two = req("remove", name="a", identities=["63"])
        assert req("process", name="c", message=two["commit"])["removed"] is True


# ------------------------------------------------------------------------------ the rig itself


def _faulty_tsmls(monkeypatch: pytest.MonkeyPatch, *proxy_args: str) -> None:
    """Make every ts-mls driver of this test run behind fault_proxy.py with ``proxy_args``."""
    cmd = [sys.executable, str(HERE / "fault_proxy.py"), *proxy_args, "--", *IMPLEMENTATIONS["tsmls"]]
    monkeypatch.setenv("PING_INTEROP_CMD_TSMLS", shlex.join(cmd))
    assert command_for("tsmls") == cmd


@pytest.mark.parametrize(
    ("proxy_args", "expected"),
    [
        (("--op", "export", "--field", "secret", "--name", "carol"), "members disagree on exporter"),
        (("--op", "epoch_authenticator", "--field", "epoch_authenticator", "--name", "dave"),
         "epoch_authenticator"),
        (("--op", "ratchet_tree", "--field", "ratchet_tree", "--name", "bob"), "members disagree on ratchet_tree"),
        (("--op", "process", "--field", "message", "--name", "bob", "--request"), "process"),
        (("--op", "add", "--field", "welcome", "--name", "alice", "--request"), None),
    ],
    ids=["exporter", "epoch_authenticator", "ratchet_tree", "tampered_message", "proxy_passthrough_control"],
)
def test_rig_detects_faults(monkeypatch: pytest.MonkeyPatch, proxy_args: tuple[str, ...],
                            expected: str | None) -> None:
    """A corrupted answer or input makes the scenario fail at the step where it happens; the last
    case corrupts a field that `add` requests do not carry, so the scenario must still pass."""
    _faulty_tsmls(monkeypatch, *proxy_args)
    if expected is None:
        assert scenario_group_of_four(("tsmls",) * 4).epoch == 16
        return
    with pytest.raises(ScenarioError) as err:
        scenario_group_of_four(("tsmls",) * 4)
    assert expected in str(err.value)
    assert str(err.value).startswith("step ")


def _python_driver(code: str, timeout: float = 2.0) -> Driver:
    return Driver("fake", [sys.executable, "-c", code], timeout=timeout)


@pytest.mark.parametrize(
    ("code", "expected", "stderr"),
    [
        ("import sys, time; print('about to hang', file=sys.stderr, flush=True); time.sleep(30)",
         "no answer to hello within 1 s", "about to hang"),
        ("import sys; print('dying', file=sys.stderr); sys.exit(3)", "exited with code 3", "dying"),
        ("print('not json', flush=True); import time; time.sleep(30)", "not JSON", None),
        ("import sys; sys.stdin.readline(); print('{\"ok\": true, \"id\": 99}', flush=True);"
         "import time; time.sleep(30)", "with id 99", None),
    ],
    ids=["timeout", "exit", "garbage", "wrong_id"],
)
def test_driver_failures_are_reported(code: str, expected: str, stderr: str | None) -> None:
    """Timeouts, exits and protocol breaches raise DriverError naming the cause, with stderr."""
    with _python_driver(code, timeout=1.0) as d, pytest.raises(DriverError) as err:
        d.request("hello")
    assert expected in str(err.value)
    if stderr is not None:
        assert stderr in str(err.value)


def test_missing_ping_driver_is_explained(monkeypatch: pytest.MonkeyPatch) -> None:
    """A Python driver module that does not exist fails with a pointer to what is missing."""
    monkeypatch.setenv("PING_INTEROP_CMD_PING", f"{sys.executable} -m ping_core.mls.no_such_driver_module")
    with pytest.raises(DriverError) as err:
        start_driver("ping")
    assert "No module named ping_core.mls.no_such_driver_module" in str(err.value)
    assert "issue 4" in str(err.value)

