"""pyodide_app.transport.FetchTransport inside Pyodide (under Node, JS fetch, the noble crypto backend)
against a real ping_server process: the browser's transport speaks the same signed API."""

from __future__ import annotations

import json
import shutil
import socket
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from serverproc import ServerProcess

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def pyodide_host() -> Iterator[Any]:
    if shutil.which("node") is None or not (ROOT / "node_modules" / "pyodide").is_dir():
        pytest.skip("Node and node_modules/pyodide are needed (./run-tests sets them up)")
    sys.path.insert(0, str(ROOT / "tests" / "node"))
    try:
        from pyodide_node import PyodideNode, build_for_tests  # type: ignore[import-not-found]
    finally:
        sys.path.pop(0)
    host = PyodideNode(wheels=build_for_tests())
    try:
        yield host
    finally:
        host.close()


SCRIPT = """
import time
from ping_core.clock import Hlc
from ping_core.device import LocalDevice
from ping_core.errors import TransportError
from ping_core.identity import Identity
from ping_core.ids import ConversationId
from ping_core.message import MessageEnvelope, MessageKind
from ping_core.mls.crypto import default_provider
from ping_core.sync import SyncCursor
from ping_core.transport import Transport
from pyodide_app.transport import FetchTransport

URL = %(url)s
out = {"crypto": default_provider().name}
alice, bob, eve = Identity.generate(), Identity.generate(), Identity.generate()
a = LocalDevice.generate(alice.user_id, "a", 1)
b = LocalDevice.generate(bob.user_id, "b", 1)
e = LocalDevice.generate(eve.user_id, "e", 1)
# b's clock is 20 minutes fast: the first request is refused as stale and the transport corrects itself.
ta = FetchTransport(URL, a.signing_secret)
tb = FetchTransport(URL, b.signing_secret, clock_ms=lambda: time.time_ns() // 1_000_000 + 20 * 60 * 1000)
te = FetchTransport(URL, e.signing_secret)
out["is_transport"] = isinstance(ta, Transport)
for t, ident, dev in ((ta, alice, a), (tb, bob, b), (te, eve, e)):
    await t.register_device(dev.info(1), ident.device_binding(dev.device_id))
await tb.publish_key_packages([b"kp-1"], last_resort=b"kp-last")
out["claimed"] = [kp.decode() for _, kp in await ta.claim_key_packages(bob.user_id)] + [kp.decode() for _, kp in await ta.claim_key_packages(bob.user_id)]
conv = ConversationId.new()
out["seq"] = await ta.send(MessageEnvelope(conv, 0, MessageKind.COMMIT, a.device_id, 0, Hlc(1, 0), b"commit"))
await ta.set_next_welcome_recipients(conv, [b.device_id])
await ta.send(MessageEnvelope(conv, 1, MessageKind.WELCOME, a.device_id, 0, Hlc(1, 0), b"welcome"))
out["welcomes"] = [w.payload.decode() for w in await tb.fetch_welcomes()]
out["log"] = [(env.seq, env.payload.decode()) for env in await tb.fetch_since(conv, SyncCursor(), 10)]
try:
    await ta.send(MessageEnvelope(conv, 0, MessageKind.COMMIT, a.device_id, 0, Hlc(1, 0), b"stale"))
except TransportError as exc:
    out["stale_commit"] = [exc.status, exc.code, exc.is_definite_rejection]
try:
    await te.fetch_since(conv, SyncCursor(), 10)
except TransportError as exc:
    out["non_member"] = [exc.status, exc.code]
# Revocation by the account's statement, its listing, and a revoked device's refusals.
a2 = LocalDevice.generate(alice.user_id, "a2", 1)
ta2 = FetchTransport(URL, a2.signing_secret)
await ta2.register_device(a2.info(1), alice.device_binding(a2.device_id))
await ta2.publish_key_packages([b"a2-old"])
await ta2.publish_key_packages([b"a2-new"], replace=True)
out["replaced"] = [kp.decode() for kp in await te.claim_device_key_packages(a2.device_id, 2)]
try:
    await ta.revoke_device_remote(a2.device_id, eve.revoke(a2.device_id))
except TransportError as exc:
    out["foreign_revocation"] = [exc.status, exc.code]
await ta.revoke_device_remote(a2.device_id, alice.revoke(a2.device_id))
out["revocations"] = [r.device_id == a2.device_id and r == alice.revoke(a2.device_id) for r in await te.list_revocations(alice.user_id)]
try:
    await ta2.fetch_welcomes()
except TransportError as exc:
    out["revoked"] = [exc.status, exc.code]
nowhere = FetchTransport("http://127.0.0.1:9", a.signing_secret, timeout=5)
try:
    await nowhere.fetch_welcomes()
except TransportError as exc:
    out["no_server"] = [exc.status, exc.code, exc.is_definite_rejection]
try:
    # A server that accepts nothing in time: the deadline aborts the request.
    slow = FetchTransport(%(slow_url)s, a.signing_secret, timeout=0.3)
    await slow.fetch_welcomes()
except TransportError as exc:
    out["deadline"] = [exc.status, exc.code, exc.is_definite_rejection]
import json
json.dumps(out)
"""


def test_fetch_transport_against_the_server(pyodide_host: Any, sqlite_server: ServerProcess) -> None:
    with socket.socket() as silent:  # listens, never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        slow_url = f"http://127.0.0.1:{silent.getsockname()[1]}"
        result = json.loads(pyodide_host.python(SCRIPT % {"url": repr(sqlite_server.url), "slow_url": repr(slow_url)}))
    assert result["crypto"] == "noble" and result["is_transport"] is True
    assert result["claimed"] == ["kp-1", "kp-last"]
    assert result["seq"] == 1
    assert result["welcomes"] == ["welcome"]
    assert result["log"] == [[1, "commit"]]
    assert result["stale_commit"] == [409, "epoch_advanced", True]
    assert result["non_member"] == [403, "forbidden"]
    assert result["replaced"] == ["a2-new"]
    assert result["foreign_revocation"] == [403, "forbidden"]
    assert result["revocations"] == [True]
    assert result["revoked"] == [403, "device_revoked"]
    assert result["no_server"] == [None, "network", False]
    assert result["deadline"] == [None, "timeout", False]
