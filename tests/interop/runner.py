"""Scenario runner for MLS interop: drives several docs/interop.md driver processes through one group.

A *driver* is any process that speaks docs/interop.md (newline-delimited JSON on
stdin/stdout). ``Driver`` starts one from a command line and makes request/response calls with a
timeout; the driver's stderr is kept so that a failure can say what the driver said.

The scenarios play a group conversation across drivers and, after every step, check that all
current members agree on the epoch, the epoch authenticator, an MLS-Exporter output, the group id,
the ratchet tree (bytes of the ``ratchet_tree`` op) and, where a driver reports them, the tree hash
and the roster. Any disagreement or failed request raises ``ScenarioError`` naming the step.

Command line (the pytest file uses the same functions)::

    python tests/interop/runner.py four tsmls ping tsmls ping [--tree out_of_band]
    python tests/interop/runner.py external tsmls ping tsmls
    python tests/interop/runner.py peer ping mlsrs ping     # mls-rs: the ops its binding offers

Implementations are named in ``IMPLEMENTATIONS``; ``PING_INTEROP_CMD_<NAME>`` (for example
``PING_INTEROP_CMD_PING="python -m ping_core.mls.interop"``) replaces a command line, and
``PING_INTEROP_TIMEOUT`` (seconds, default 60) bounds each request.
"""

from __future__ import annotations

import argparse
import json
import os
import queue
import shlex
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent

#: implementation name -> command line of its driver.
IMPLEMENTATIONS: dict[str, list[str]] = {
    "tsmls": ["node", str(HERE / "tsmls_driver.mjs")],
    "ping": [sys.executable, "-m", "ping_core.mls.interop"],
    # AWS mls-rs through its Python binding (`pip install '.[interop]'`); a subset of the ops.
    "mlsrs": [sys.executable, str(HERE / "mlsrs_driver.py")],
}

#: Implementations whose drivers speak every op of docs/interop.md (the group-of-four scenario).
FULL_IMPLEMENTATIONS = ("tsmls", "ping")

#: Wire format prefixes of a TLS-serialized MLSMessage (version 0x0001, then wire_format).
PUBLIC_MESSAGE = "00010001"
PRIVATE_MESSAGE = "00010002"
WELCOME = "00010003"
GROUP_INFO = "00010004"
KEY_PACKAGE = "00010005"

APP_SIZES = (100, 10 * 1024)
EXPORT_LABEL = "ping interop check"
EXPORT_CONTEXT = "0001020304050607"

Json = dict[str, Any]


def default_timeout() -> float:
    """Per-request timeout in seconds (``PING_INTEROP_TIMEOUT``, default 60)."""
    return float(os.environ.get("PING_INTEROP_TIMEOUT", "60"))


def command_for(impl: str) -> list[str]:
    """The driver command line of ``impl``, with the ``PING_INTEROP_CMD_<IMPL>`` override applied."""
    override = os.environ.get(f"PING_INTEROP_CMD_{impl.upper()}")
    if override:
        return shlex.split(override)
    if impl not in IMPLEMENTATIONS:
        raise KeyError(f"unknown implementation {impl!r} (known: {', '.join(IMPLEMENTATIONS)})")
    return list(IMPLEMENTATIONS[impl])


# ------------------------------------------------------------------------------------------ drivers


class DriverError(Exception):
    """A driver died, timed out, broke the protocol, or answered ``ok: false``."""


class RequestFailed(DriverError):
    """The driver answered ``ok: false``; ``response`` is its answer."""

    def __init__(self, message: str, response: Json) -> None:
        super().__init__(message)
        self.response = response

    @property
    def unsupported(self) -> bool:
        """True when the driver says it lacks the feature (docs/interop.md: the word ``unsupported``)."""
        return "unsupported" in str(self.response.get("error", ""))


class Driver:
    """One driver process: a command line, a request/response channel with a timeout, and stderr.

    ``request`` sends one JSON object with a fresh ``id`` and returns the matching response when it
    says ``ok: true``; otherwise it raises ``RequestFailed`` (``ok: false``) or ``DriverError``
    (timeout, exit, malformed or out-of-order answer). Every error message carries the tail of the
    driver's stderr.
    """

    def __init__(self, label: str, argv: Sequence[str], *, cwd: Path = REPO,
                 timeout: float | None = None, env: dict[str, str] | None = None) -> None:
        self.label = label
        self.argv = list(argv)
        self.timeout = default_timeout() if timeout is None else timeout
        self._next_id = 0
        self._broken = False
        self.hello: Json = {}  # the driver's answer to hello, once start_driver asked
        self._stderr: deque[str] = deque(maxlen=200)
        self._lines: queue.Queue[str | None] = queue.Queue()
        full_env = dict(os.environ)
        # Drivers written in Python (Ping's) import from the checkout, wherever pytest runs.
        full_env["PYTHONPATH"] = os.pathsep.join(
            p for p in (str(REPO), full_env.get("PYTHONPATH", "")) if p
        )
        full_env.update(env or {})
        try:
            self._proc = subprocess.Popen(
                self.argv, cwd=cwd, env=full_env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                stderr=subprocess.PIPE, text=True, encoding="utf-8", bufsize=1,
            )
        except OSError as e:
            raise DriverError(f"{label}: cannot start `{shlex.join(self.argv)}`: {e}") from e
        threading.Thread(target=self._pump_stdout, daemon=True).start()
        threading.Thread(target=self._pump_stderr, daemon=True).start()

    def _pump_stdout(self) -> None:
        assert self._proc.stdout is not None
        for line in self._proc.stdout:
            self._lines.put(line)
        self._lines.put(None)

    def _pump_stderr(self) -> None:
        assert self._proc.stderr is not None
        for line in self._proc.stderr:
            self._stderr.append(line.rstrip("\n"))

    def stderr_tail(self, lines: int = 30) -> str:
        """The last ``lines`` lines the driver wrote to stderr."""
        return "\n".join(list(self._stderr)[-lines:])

    def _fail(self, what: str) -> DriverError:
        self._broken = True  # a driver that broke the protocol is killed, not waited for, on close
        time.sleep(0.05)  # let the stderr pump catch the driver's last words
        tail = self.stderr_tail()
        code = self._proc.poll()
        status = f" (exited with code {code})" if code is not None else ""
        return DriverError(
            f"{self.label} driver `{shlex.join(self.argv)}`{status}: {what}"
            + (f"\n--- {self.label} stderr ---\n{tail}" if tail else "")
        )

    def request(self, op: str, **fields: Any) -> Json:
        """Send ``{"op": op, **fields}``; return the ``ok: true`` response or raise."""
        self._next_id += 1
        req_id = self._next_id
        req = {"op": op, "id": req_id, **fields}
        assert self._proc.stdin is not None
        try:
            self._proc.stdin.write(json.dumps(req) + "\n")
            self._proc.stdin.flush()
        except (BrokenPipeError, OSError) as e:
            raise self._fail(f"cannot send {op}: {e}") from e
        try:
            line = self._lines.get(timeout=self.timeout)
        except queue.Empty:
            raise self._fail(f"no answer to {op} within {self.timeout:g} s") from None
        if line is None:
            self._lines.put(None)
            raise self._fail(f"closed stdout instead of answering {op}")
        try:
            resp = json.loads(line)
        except json.JSONDecodeError:
            raise self._fail(f"answered {op} with a line that is not JSON: {line[:200]!r}") from None
        if not isinstance(resp, dict) or not isinstance(resp.get("ok"), bool):
            raise self._fail(f"answered {op} without a boolean ok: {line[:200]!r}")
        if resp.get("id") != req_id:
            raise self._fail(f"answered {op} (id {req_id}) with id {resp.get('id')!r}")
        if not resp["ok"]:
            tail = self.stderr_tail(10)
            raise RequestFailed(
                f"{self.label}: {op} {_brief(fields)} failed: {resp.get('error')}"
                + (f"\n--- {self.label} stderr ---\n{tail}" if tail else ""),
                resp,
            )
        return resp

    def close(self) -> None:
        """Close stdin and wait for the driver to exit (kill it after 5 s, or at once if it broke)."""
        try:
            if self._proc.stdin is not None:
                self._proc.stdin.close()
        except OSError:
            pass
        try:
            self._proc.wait(timeout=0 if self._broken else 5)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()

    def __enter__(self) -> Driver:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _brief(fields: dict[str, Any]) -> str:
    """Request fields for an error message, with long hex shortened."""
    def short(v: Any) -> Any:
        if isinstance(v, str) and len(v) > 40:
            return v[:32] + f"...({len(v) // 2} bytes)"
        if isinstance(v, list):
            return [short(x) for x in v]
        return v
    return json.dumps({k: short(v) for k, v in fields.items()})


def start_driver(impl: str, label: str | None = None) -> Driver:
    """Start the driver of ``impl`` and check its ``hello`` (it must offer cipher suite 1)."""
    drv = Driver(label or impl, command_for(impl))
    try:
        hello = drv.request("hello")
    except DriverError as e:
        drv.close()
        raise DriverError(f"{e}{_missing_hint(impl, str(e))}") from None  # e's text is all in there
    suites = hello.get("ciphersuites")
    if not isinstance(suites, list) or 1 not in suites:
        drv.close()
        raise DriverError(f"{drv.label}: hello does not offer cipher suite 1: {hello}")
    drv.hello = hello
    return drv


def _missing_hint(impl: str, message: str) -> str:
    if "No module named" in message and "ping_core" in message:
        return ("\n=> Ping's interop driver does not exist yet: `python -m ping_core.mls.interop` must "
                "speak docs/interop.md (issue 4, item 7).")
    if impl == "tsmls" and ("ERR_MODULE_NOT_FOUND" in message or "Cannot find package" in message):
        return "\n=> ts-mls is not installed: run `npm ci --prefix tests/interop`."
    if impl == "mlsrs" and "No module named" in message and "mls_rs_uniffi" in message:
        return "\n=> mls-rs's Python binding is not installed: run `pip install -e '.[interop]'`."
    return ""


# ------------------------------------------------------------------------------------------ group


class ScenarioError(AssertionError):
    """A scenario step failed or the members disagree."""


class Unsupported(Exception):
    """A driver answered ``unsupported`` for an op the scenario needs (extension ops only)."""


@dataclass
class Member:
    """A client in a driver: its name (also its identity) and its implementation."""

    name: str
    impl: str
    driver: Driver

    @property
    def identity_hex(self) -> str:
        return self.name.encode().hex()

    def __call__(self, op: str, **fields: Any) -> Json:
        return self.driver.request(op, name=self.name, **fields)

    def __str__(self) -> str:
        return f"{self.name}[{self.impl}]"


@dataclass
class Group:
    """The runner's view of one group: who is in it, the expected epoch, and the steps played."""

    group_id: str
    members: list[Member] = field(default_factory=list)
    epoch: int = 0
    steps: list[str] = field(default_factory=list)
    checks: int = 0
    trace: Callable[[str], None] | None = None

    # -- bookkeeping ---------------------------------------------------------------------------

    @contextmanager
    def step(self, description: str) -> Iterator[None]:
        """Run one scenario step, then ``check`` agreement; a failure names the step."""
        self.steps.append(description)
        started = time.perf_counter()
        try:
            yield
            self.check()
        except (DriverError, ScenarioError) as e:
            raise ScenarioError(
                f"step {len(self.steps)} ({description}) failed at epoch {self.epoch}:\n{e}"
            ) from e
        except (KeyError, TypeError, ValueError, AttributeError) as e:
            # A driver answered ok but without a field the protocol promises, or with a wrong type.
            raise ScenarioError(
                f"step {len(self.steps)} ({description}) failed at epoch {self.epoch}: malformed driver "
                f"answer ({type(e).__name__}: {e})"
            ) from e
        if self.trace:
            self.trace(f"{len(self.steps):3d}. {description} ({time.perf_counter() - started:.2f} s)")

    def others(self, *excluded: Member) -> list[Member]:
        return [m for m in self.members if m not in excluded]

    # -- checks --------------------------------------------------------------------------------

    def check(self) -> None:
        """All members agree on epoch, group id, epoch authenticator, exporter, tree and roster."""
        self.checks += 1
        views: dict[str, dict[str, Any]] = {}
        expected_roster = sorted(m.identity_hex for m in self.members)
        for m in self.members:
            st = m("state")
            v: dict[str, Any] = {
                "epoch": st.get("epoch"),
                "group_id": st.get("group_id"),
                "exporter": m("export", label=EXPORT_LABEL, context=EXPORT_CONTEXT, length=32).get("secret"),
                "ratchet_tree": m("ratchet_tree").get("ratchet_tree"),
            }
            try:
                v["epoch_authenticator"] = m("epoch_authenticator").get("epoch_authenticator")
            except RequestFailed as e:
                if not e.unsupported:
                    raise
                # A driver without it (mls-rs's binding) is still held to the exporter, which
                # comes from the same epoch secret (RFC 9420 §8).
            if "tree_hash" in st:
                v["tree_hash"] = st["tree_hash"]
            if "epoch_authenticator" in st and st["epoch_authenticator"] != v.get("epoch_authenticator"):
                raise ScenarioError(f"{m}: state.epoch_authenticator differs from the epoch_authenticator op")
            if "active" in st and st["active"] is not True:
                raise ScenarioError(f"{m}: state says active={st['active']!r} but it is a member")
            if "members" in st:
                roster = st["members"]
                v["roster"] = sorted((e["leaf_index"], e["identity"], e["signature_key"]) for e in roster)
                if sorted(e["identity"] for e in roster) != expected_roster:
                    raise ScenarioError(
                        f"{m}: roster {sorted(_identity_text(e['identity']) for e in roster)}"
                        f" != expected {sorted(x.name for x in self.members)}"
                    )
            if "leaf_index" in st and "members" in st:
                own = [e for e in st["members"] if e["leaf_index"] == st["leaf_index"]]
                if not own or own[0]["identity"] != m.identity_hex:
                    raise ScenarioError(f"{m}: its leaf_index {st['leaf_index']} is not its own leaf in the roster")
            if v["epoch"] != self.epoch:
                raise ScenarioError(f"{m}: epoch {v['epoch']} != expected {self.epoch}")
            if v["group_id"] != self.group_id:
                raise ScenarioError(f"{m}: group_id {v['group_id']} != {self.group_id}")
            views[str(m)] = v
        keys = set().union(*(v.keys() for v in views.values()))
        for key in sorted(keys):
            values = {who: v[key] for who, v in views.items() if key in v}
            if len({json.dumps(x) for x in values.values()}) > 1:
                shown = "\n".join(f"  {who}: {_short(x)}" for who, x in values.items())
                raise ScenarioError(f"members disagree on {key} at epoch {self.epoch}:\n{shown}")

    # -- operations ----------------------------------------------------------------------------

    def deliver_commit(self, commit: str, committer: Member | None, *, removed: Sequence[Member] = (),
                       encrypted: bool = False) -> None:
        """Every member but the committer processes ``commit``; ``removed`` must see their removal."""
        _expect_wire(commit, PRIVATE_MESSAGE if encrypted else PUBLIC_MESSAGE, "commit")
        self.epoch += 1
        for m in self.members:
            if m is committer:
                continue
            r = m("process", message=commit)
            if m in removed:
                if r.get("removed") is not True:
                    raise ScenarioError(f"{m} processed the commit that removes it but got {_short(r)}")
            elif r.get("commit_applied") is not True or r.get("epoch") != self.epoch:
                raise ScenarioError(f"{m}: expected commit_applied at epoch {self.epoch}, got {_short(r)}")
        for m in removed:
            self.members.remove(m)
            try:
                st = m("state")
            except RequestFailed:
                continue  # a driver may drop a group its client was removed from
            if "active" in st and st["active"] is not False:
                raise ScenarioError(f"{m} was removed but its state says active={st['active']!r}")

    def deliver_proposal(self, proposal: str, proposer: Member, *, encrypted: bool) -> None:
        """Every member but the proposer processes ``proposal`` and stores it."""
        _expect_wire(proposal, PRIVATE_MESSAGE if encrypted else PUBLIC_MESSAGE, "proposal")
        for m in self.others(proposer):
            r = m("process", message=proposal)
            if r.get("proposal_stored") is not True:
                raise ScenarioError(f"{m}: expected proposal_stored, got {_short(r)}")

    def join(self, joiner: Member, resp: Json, *, tree_mode: str) -> None:
        """``joiner`` joins with the Welcome of ``resp`` (tree in it, or out of band)."""
        _expect_wire(resp["welcome"], WELCOME, "welcome")
        fields: dict[str, Any] = {"welcome": resp["welcome"]}
        if tree_mode == "out_of_band":
            fields["ratchet_tree"] = resp["ratchet_tree"]
        r = joiner("join", **fields)
        if r.get("epoch") != self.epoch or r.get("group_id") != self.group_id:
            raise ScenarioError(f"{joiner} joined at epoch {r.get('epoch')} group {r.get('group_id')}, "
                                f"expected epoch {self.epoch} group {self.group_id}")
        self.members.append(joiner)

    def add(self, committer: Member, joiner: Member, *, tree_mode: str, encrypted: bool = False) -> None:
        """``committer`` adds ``joiner`` by value; the others process the commit; ``joiner`` joins."""
        kp = key_package(joiner)
        r = committer("add", key_packages=[kp], encrypt_handshake=encrypted,
                      ratchet_tree_extension=tree_mode == "welcome")
        self.deliver_commit(r["commit"], committer, encrypted=encrypted)
        self.join(joiner, r, tree_mode=tree_mode)

    def self_update(self, m: Member, *, encrypted: bool) -> None:
        """``m`` commits an empty commit (UpdatePath) and everyone else processes it."""
        r = m("update", encrypt_handshake=encrypted)
        self.deliver_commit(r["commit"], m, encrypted=encrypted)

    def remove(self, committer: Member, victims: Sequence[Member], *, encrypted: bool = False,
               **selector: Any) -> None:
        """``committer`` removes ``victims`` (named by ``selector``: members, leaf_indices or identities)."""
        r = committer("remove", encrypt_handshake=encrypted, **selector)
        self.deliver_commit(r["commit"], committer, removed=victims, encrypted=encrypted)

    def application_round(self, senders: Sequence[Member] | None = None, *, with_aad: bool = True) -> int:
        """Each sender protects messages of every size in APP_SIZES; all others must read them.

        With ``with_aad`` the smallest message carries authenticated data."""
        sent = 0
        for sender in senders or list(self.members):
            for size in APP_SIZES:
                data = os.urandom(size).hex()
                aad = os.urandom(8).hex() if with_aad and size == APP_SIZES[0] else None
                msg = sender("protect", data=data, **({"aad": aad} if aad else {}))["message"]
                _expect_wire(msg, PRIVATE_MESSAGE, "application message")
                for m in self.others(sender):
                    got = m("process", message=msg)
                    if got.get("application_data") != data:
                        raise ScenarioError(
                            f"{m} read a {size}-byte message from {sender} as {_short(got)}")
                sent += 1
        return sent


def _identity_text(identity_hex: str) -> str:
    try:
        return bytes.fromhex(identity_hex).decode()
    except (ValueError, TypeError):
        return repr(identity_hex)


def _short(x: Any) -> str:
    s = json.dumps(x) if not isinstance(x, str) else x
    return s if len(s) <= 160 else s[:150] + f"...({len(s)} chars)"


def _expect_wire(msg: Any, prefix: str, what: str) -> None:
    if not isinstance(msg, str) or not msg.startswith(prefix):
        names = {PUBLIC_MESSAGE: "PublicMessage", PRIVATE_MESSAGE: "PrivateMessage", WELCOME: "Welcome",
                 GROUP_INFO: "GroupInfo", KEY_PACKAGE: "KeyPackage"}
        raise ScenarioError(f"{what} should be an MLSMessage {names[prefix]} ({prefix}...), "
                            f"got {str(msg)[:16]!r}")


def key_package(m: Member) -> str:
    kp = m("key_package", cipher_suite=1)["key_package"]
    _expect_wire(kp, KEY_PACKAGE, f"key_package of {m}")
    return str(kp)


@contextmanager
def members(cast: Sequence[tuple[str, str]], *, isolated: bool = False) -> Iterator[list[Member]]:
    """Members for ``(name, implementation)`` pairs, their drivers started and closed on exit.

    By default one driver process per implementation hosts all its clients (docs/interop.md: a driver
    hosts any number of clients); ``isolated`` gives every member a process of its own.
    """
    with ExitStack() as stack:
        shared: dict[str, Driver] = {}
        out = []
        for name, impl in cast:
            if isolated:
                drv = stack.enter_context(start_driver(impl, f"{impl}:{name}"))
            else:
                if impl not in shared:
                    shared[impl] = stack.enter_context(start_driver(impl))
                drv = shared[impl]
            out.append(Member(name, impl, drv))
        yield out


def leaf_of(target: Member, viewer: Member) -> int:
    """``target``'s leaf index, from ``viewer``'s roster, else from ``target``'s own state."""
    st = viewer("state")
    for e in st.get("members", []):
        if e["identity"] == target.identity_hex:
            return int(e["leaf_index"])
    own = target("state")
    if "leaf_index" not in own:
        raise ScenarioError(f"neither {viewer}'s roster nor {target}'s state gives {target}'s leaf index")
    return int(own["leaf_index"])


# ------------------------------------------------------------------------------------------ scenarios

FOUR_NAMES = ("alice", "bob", "carol", "dave")


def scenario_group_of_four(roles: Sequence[str], tree_mode: str = "welcome", *, isolated: bool = False,
                           trace: Callable[[str], None] | None = None) -> Group:
    """The issue-4 scenario: a group of four; ``roles[i]`` is the implementation of member i.

    alice creates and adds bob; bob (a joiner) adds carol; alice proposes dave by reference and
    carol commits it; application messages of 100 B and 10 KiB from everyone to everyone;
    self-updates by everyone as PublicMessage, then as PrivateMessage; dave removes bob (by name);
    alice adds erin (bob's implementation) in a PrivateMessage commit; carol proposes dave's removal
    by reference (PrivateMessage) and erin commits it; alice removes carol (by identity); alice and
    erin exchange messages; erin removes alice (by leaf index). ``tree_mode`` is ``welcome``
    (ratchet_tree extension in the Welcome) or ``out_of_band`` (left out; given to ``join``).
    Agreement is checked after every step. ``isolated`` runs every member in its own process.
    """
    if len(roles) != 4:
        raise ValueError("four roles needed")
    if tree_mode not in ("welcome", "out_of_band"):
        raise ValueError(f"tree_mode {tree_mode!r}")
    rte = tree_mode == "welcome"
    with members([*zip(FOUR_NAMES, roles), ("erin", roles[1])], isolated=isolated) as cast:
        alice, bob, carol, dave, erin = cast
        g = Group(group_id=os.urandom(16).hex(), trace=trace)

        with g.step(f"{alice} creates the group"):
            r = alice("create_group", group_id=g.group_id)
            if r.get("epoch") != 0:
                raise ScenarioError(f"create_group answered epoch {r.get('epoch')}")
            g.members.append(alice)

        with g.step(f"{alice} adds {bob} (PublicMessage commit), {bob} joins, tree {tree_mode}"):
            g.add(alice, bob, tree_mode=tree_mode)

        with g.step(f"{bob} (a joiner) adds {carol} (PrivateMessage commit), {carol} joins"):
            g.add(bob, carol, tree_mode=tree_mode, encrypted=True)

        with g.step(f"{alice} proposes adding {dave} by reference, {carol} commits it, {dave} joins"):
            kp = key_package(dave)
            p = alice("propose_add", key_package=kp)["proposal"]
            g.deliver_proposal(p, alice, encrypted=False)
            r = carol("commit", ratchet_tree_extension=rte)
            if "welcome" not in r:
                raise ScenarioError(f"{carol} committed an Add but gave no welcome: {_short(r)}")
            g.deliver_commit(r["commit"], carol)
            g.join(dave, r, tree_mode=tree_mode)

        with g.step("application messages of 100 B and 10 KiB from every member to every other"):
            g.application_round()

        for encrypted in (False, True):
            kind = "PrivateMessage" if encrypted else "PublicMessage"
            for m in list(g.members):
                with g.step(f"{m} self-updates ({kind} commit with an UpdatePath)"):
                    g.self_update(m, encrypted=encrypted)

        with g.step(f"{dave} removes {bob} by name (PublicMessage commit)"):
            g.remove(dave, [bob], members=[bob.name])

        with g.step(f"{alice} adds {erin} (PrivateMessage commit), {erin} joins, tree {tree_mode}"):
            g.add(alice, erin, tree_mode=tree_mode, encrypted=True)

        with g.step("application messages after the re-add"):
            g.application_round()

        with g.step(f"{carol} proposes removing {dave} by reference (PrivateMessage), {erin} commits it"):
            p = carol("propose_remove", leaf_index=leaf_of(dave, carol), encrypt_handshake=True)["proposal"]
            g.deliver_proposal(p, carol, encrypted=True)
            r = erin("commit", encrypt_handshake=True)
            g.deliver_commit(r["commit"], erin, removed=[dave], encrypted=True)

        with g.step(f"{alice} removes {carol} by identity (PrivateMessage commit)"):
            g.remove(alice, [carol], identities=[carol.identity_hex], encrypted=True)

        with g.step(f"{alice} and {erin} exchange 100 B and 10 KiB messages both ways"):
            g.application_round()

        with g.step("exporter with a binary label and 64 bytes agrees"):
            outs = {str(m): m("export", label_hex="ff00fe", context="", length=64)["secret"] for m in g.members}
            if len(set(outs.values())) != 1 or any(len(s) != 128 for s in outs.values()):
                raise ScenarioError(f"label_hex exports disagree: {outs}")

        with g.step(f"{erin} removes {alice} by leaf index (PublicMessage commit)"):
            g.remove(erin, [alice], leaf_indices=[leaf_of(alice, erin)])
        return g


def scenario_external_join(roles: Sequence[str], joiner_impl: str,
                           trace: Callable[[str], None] | None = None) -> Group:
    """A joiner enters by external commit using a member's ``group_info`` (external_pub + tree).

    alice (roles[0]) creates and adds bob (roles[1]); bob exports a GroupInfo; frank
    (``joiner_impl``) joins with the extension op ``external_join``; everyone processes the
    external commit; messages both ways; frank self-updates; alice removes frank.
    Raises ``Unsupported`` when the joiner's driver lacks ``external_join``.
    """
    with members([*zip(FOUR_NAMES, roles), ("frank", joiner_impl)]) as cast:
        alice, bob, frank = cast
        g = Group(group_id=os.urandom(16).hex(), trace=trace)
        with g.step(f"{alice} creates the group and adds {bob}"):
            alice("create_group", group_id=g.group_id)
            g.members.append(alice)
            g.add(alice, bob, tree_mode="welcome")
        with g.step(f"{bob} publishes a GroupInfo; {frank} joins by external commit"):
            gi = bob("group_info")["group_info"]
            _expect_wire(gi, GROUP_INFO, "group_info")
            try:
                r = frank("external_join", group_info=gi)
            except RequestFailed as e:
                if e.unsupported:
                    raise Unsupported(f"{frank.driver.label} driver: external_join is unsupported "
                                      f"({e.response.get('error')})") from e
                raise
            _expect_wire(r["commit"], PUBLIC_MESSAGE, "external commit")
            g.deliver_commit(r["commit"], frank)
            if r.get("epoch") != g.epoch:
                raise ScenarioError(f"{frank} reports epoch {r.get('epoch')} after its external commit")
            g.members.append(frank)
        with g.step("application messages of 100 B and 10 KiB both ways"):
            g.application_round()
        with g.step(f"{frank} self-updates (PrivateMessage commit)"):
            g.self_update(frank, encrypted=True)
        with g.step(f"{alice} removes {frank} (PublicMessage commit)"):
            g.remove(alice, [frank], members=[frank.name])
        return g


def scenario_with_peer(roles: Sequence[str], trace: Callable[[str], None] | None = None) -> Group:
    """A scenario within what every driver offers, mls-rs's included (see tests/interop/mlsrs_driver.py).

    alice, bob, carol are ``roles[0:3]``, dave is alice's implementation. alice creates and adds bob;
    bob (a joiner) adds carol; messages (no aad) from everyone to everyone; everyone self-updates;
    alice proposes dave by reference and carol commits it, dave joins; messages; one member removes
    another by name (a pair where the remover can name the victim, across implementations when
    there is one); messages; the last member self-updates. Handshakes are PublicMessages and the
    Welcome carries the tree (the mls-rs binding offers nothing else). Agreement after every step.
    """
    if len(roles) != 3:
        raise ValueError("three roles needed")
    with members([*zip(FOUR_NAMES, [*roles, roles[0]])]) as cast:
        alice, bob, carol, dave = cast
        g = Group(group_id=os.urandom(16).hex(), trace=trace)
        with g.step(f"{alice} creates the group"):
            alice("create_group", group_id=g.group_id)
            g.members.append(alice)
        with g.step(f"{alice} adds {bob}, {bob} joins"):
            g.add(alice, bob, tree_mode="welcome")
        with g.step(f"{bob} (a joiner) adds {carol}, {carol} joins"):
            g.add(bob, carol, tree_mode="welcome")
        with g.step("application messages of 100 B and 10 KiB from every member to every other"):
            g.application_round(with_aad=False)
        for m in list(g.members):
            with g.step(f"{m} self-updates (commit with an UpdatePath)"):
                g.self_update(m, encrypted=False)
        with g.step(f"{alice} proposes adding {dave} by reference, {carol} commits it, {dave} joins"):
            p = alice("propose_add", key_package=key_package(dave))["proposal"]
            g.deliver_proposal(p, alice, encrypted=False)
            r = carol("commit")
            if "welcome" not in r:
                raise ScenarioError(f"{carol} committed an Add but gave no welcome: {_short(r)}")
            g.deliver_commit(r["commit"], carol)
            g.join(dave, r, tree_mode="welcome")
        with g.step("application messages after the by-reference add"):
            g.application_round(with_aad=False)
        pairs = [(r, v) for r in g.members for v in g.members
                 if r is not v and (r.impl != "mlsrs" or v.driver is r.driver)]
        remover, victim = sorted(pairs, key=lambda p: p[0].impl == p[1].impl)[0]
        with g.step(f"{remover} removes {victim} by name"):
            g.remove(remover, [victim], members=[victim.name])
        with g.step("application messages after the removal"):
            g.application_round(with_aad=False)
        last = g.members[-1]
        with g.step(f"{last} self-updates"):
            g.self_update(last, encrypted=False)
        return g


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="scenario", required=True)
    four = sub.add_parser("four", help="the group-of-four scenario")
    four.add_argument("roles", nargs=4, help="implementation of alice, bob, carol, dave")
    four.add_argument("--tree", choices=("welcome", "out_of_band"), default="welcome")
    four.add_argument("--isolated", action="store_true", help="one driver process per member")
    ext = sub.add_parser("external", help="external join via group_info")
    ext.add_argument("roles", nargs=3, help="implementation of alice, bob and the external joiner")
    peer = sub.add_parser("peer", help="the scenario within every driver's ops (mls-rs's too)")
    peer.add_argument("roles", nargs=3, help="implementation of alice, bob, carol")
    args = ap.parse_args(argv)
    started = time.perf_counter()
    try:
        if args.scenario == "four":
            g = scenario_group_of_four(args.roles, args.tree, isolated=args.isolated, trace=print)
        elif args.scenario == "peer":
            g = scenario_with_peer(args.roles, trace=print)
        else:
            g = scenario_external_join(args.roles[:2], args.roles[2], trace=print)
    except (ScenarioError, DriverError, Unsupported) as e:
        print(f"FAILED: {e}", file=sys.stderr)
        return 1
    print(f"OK: {len(g.steps)} steps, {g.checks} agreement checks, final epoch {g.epoch}, "
          f"{time.perf_counter() - started:.2f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
