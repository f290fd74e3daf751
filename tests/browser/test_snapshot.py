"""Cold start from the Pyodide memory snapshot (static/pyboot.mjs, static/pysnapshot.mjs), in Chromium.

A page of the origin that is not the demo starts module workers itself
(``worker.mjs?dev=1``) and reads their ready message, which says whether the
runtime was restored from the stored snapshot, taken a new one, and why. The
first boot of a build takes the snapshot; later boots restore it and work
(WebCrypto through JSPI, IndexedDB, the host's events); a changed build id, a
record altered on disk and a record that passes its digest but does not
restore each lead to a normal boot that stores a fresh snapshot. The service
worker restores the snapshot a page worker took, and syncs the account.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from chatui import UI_TIMEOUT_MS, ChatUser
from pingpage import BOOT_TIMEOUT_MS

HARNESS = "/snapshot-harness.html"

# Workers started by the test, their RPC calls, and the stored snapshot record.
HELPERS = """
window.snap = {
  n: 0, workers: {},
  boot(query = 'dev=1') {
    const id = ++this.n;
    const w = new Worker('/worker.mjs?' + query, { type: 'module' });
    const entry = { w, events: [], pending: {}, next: 1 };
    this.workers[id] = entry;
    return new Promise((resolve, reject) => {
      w.onerror = (e) => reject(new Error(e.message));
      w.onmessage = (e) => {
        const m = e.data;
        if (m.type === 'boot' && m.stage === 'ready') resolve({ id, ready: m });
        else if (m.type === 'boot' && m.stage === 'failed') reject(new Error(m.error.name + ': ' + m.error.message));
        else if (m.type === 'event') entry.events.push(m.event);
        else if ('id' in m && entry.pending[m.id]) entry.pending[m.id](m);
      };
    });
  },
  call(id, method, params = {}) {
    const entry = this.workers[id];
    const rid = entry.next++;
    return new Promise((resolve) => {
      entry.pending[rid] = resolve;
      entry.w.postMessage({ id: rid, method, params });
    });
  },
  events(id) { return this.workers[id].events; },
  stop(id) { this.workers[id].w.terminate(); delete this.workers[id]; },
  async record() {
    const db = await new Promise((res, rej) => {
      const r = indexedDB.open('ping-boot-snapshot', 1);
      r.onupgradeneeded = () => r.result.createObjectStore('snapshots');
      r.onsuccess = () => res(r.result); r.onerror = () => rej(r.error);
    });
    try {
      const tx = db.transaction('snapshots', 'readonly');
      return await new Promise((res, rej) => {
        const g = tx.objectStore('snapshots').get('python');
        g.onsuccess = () => res(g.result); g.onerror = () => rej(g.error);
      });
    } finally { db.close(); }
  },
  async put(record) {
    const db = await new Promise((res, rej) => {
      const r = indexedDB.open('ping-boot-snapshot', 1);
      r.onsuccess = () => res(r.result); r.onerror = () => rej(r.error);
    });
    try {
      const tx = db.transaction('snapshots', 'readwrite');
      tx.objectStore('snapshots').put(record, 'python');
      await new Promise((res, rej) => { tx.oncomplete = res; tx.onabort = () => rej(tx.error); });
    } finally { db.close(); }
  },
  /** Until a record whose key has `part` and whose digest is not `old` is stored: its summary. */
  async waitRecord(part, old) {
    for (;;) {
      const s = await this.summary();
      if (s && s.key.includes(part) && s.digest !== old) return s;
      await new Promise((res) => setTimeout(res, 100));
    }
  },
  /** What the test checks of the record (the memory image stays in the page). */
  async summary() {
    const r = await this.record();
    return r ? { key: r.key, digest: r.digest, size: r.memory.length, wheels: r.wheels.map((w) => w.name) } : null;
  },
};
"""

# Python run by dev.exec in a restored worker: MLS crypto (WebCrypto under JSPI
# when the boot chose it), an IndexedDB round trip, and an event to this page
# through the host module registered before the restore.
WORK = """
import pinghost
from pyodide.ffi import run_sync, to_js
from js import Object
from ping_core.mls.crypto import default_provider
from pyodide_app.idb import IndexedDbBlobStore

provider = default_provider()
secret, public = provider.sign_keygen()
signature = provider.sign(secret, b"snapshot")
provider.verify(public, b"snapshot", signature)

async def roundtrip():
    store = await IndexedDbBlobStore.open("snapshot-test")
    await store.put("k", b"restored")
    return await store.get("k")

stored = run_sync(roundtrip())
pinghost.emit(to_js({"type": "snapshot-test", "ok": True}, dict_converter=Object.fromEntries))
result = {"provider": provider.name, "stored": stored.decode(), "signature": len(signature)}
"""

# The modules a boot imports on demand only (pyodide_app.worker.import_on_demand); which of them
# the worker has imported so far.
ON_DEMAND = ("pyodide_app.vault", "pyodide_app.push", "pyodide.http")
IMPORTED = f"import sys\nresult = [m for m in {ON_DEMAND!r} if m in sys.modules]"


@pytest.fixture
def harness(browser: Any, server_url: str) -> Iterator[Any]:
    """A page of the server's origin (not the demo: no worker or service worker of its own)."""
    context = browser.new_context()
    context.route(
        server_url + HARNESS,
        lambda route: route.fulfill(status=200, content_type="text/html", body="<!doctype html><title>snapshot</title>"),
    )
    page = context.new_page()
    page.set_default_timeout(BOOT_TIMEOUT_MS)
    page.goto(server_url + HARNESS)
    page.evaluate(HELPERS)
    try:
        yield page
    finally:
        context.close()


def _boot(page: Any, query: str = "dev=1") -> tuple[int, dict[str, Any]]:
    booted = page.evaluate("(q) => snap.boot(q)", query)
    return booted["id"], booted["ready"]


def _wait_record(page: Any, key_part: str, not_digest: str | None = None) -> dict[str, Any]:
    """Until a snapshot record whose key contains ``key_part`` (and another digest) is stored."""
    summary: dict[str, Any] = page.evaluate("([part, old]) => snap.waitRecord(part, old)", [key_part, not_digest])
    return summary


def _cold(page: Any, reason: str, build: str) -> dict[str, Any]:
    """A boot that must not restore (for ``reason``), then the fresh record it stores."""
    old = page.evaluate("snap.summary().then((s) => s && s.digest)")
    wid, ready = _boot(page)
    assert ready["snapshot"] == "made", ready
    assert reason in ready["snapshot_reason"], ready
    # The worker stores the snapshot after ready: it must live until the write commits.
    record = _wait_record(page, f"build={build};", not_digest=old)
    page.evaluate("(id) => snap.stop(id)", wid)
    return record


def _restored(page: Any) -> dict[str, Any]:
    """A boot that must restore the stored snapshot, and work."""
    wid, ready = _boot(page)
    assert ready["snapshot"] == "restored", ready
    assert ready["snapshot_reason"] is None
    # What is imported on demand was imported before the snapshot was taken: in the image.
    imported = page.evaluate("([id, code]) => snap.call(id, 'dev.exec', { code })", [wid, IMPORTED])
    assert imported["result"] == list(ON_DEMAND), imported
    reply = page.evaluate("([id, code]) => snap.call(id, 'dev.exec', { code })", [wid, WORK])
    assert "error" not in reply, reply
    assert reply["result"] == {"provider": ready["crypto"], "stored": "restored", "signature": 64}, reply
    events = page.evaluate("(id) => snap.events(id)", wid)
    assert {"type": "snapshot-test", "ok": True, "origin": events[-1]["origin"]} in events, events
    page.evaluate("(id) => snap.stop(id)", wid)
    return ready


def test_snapshot_is_taken_restored_and_replaced(harness: Any, server_url: str) -> None:
    page = harness
    build = page.evaluate("fetch('/manifest.json').then((r) => r.json()).then((m) => m.build)")

    # First boot of the build in this profile: nothing stored, a snapshot is taken.
    first = _cold(page, "none stored", build)
    assert first["wheels"] and all(w.endswith(".whl") for w in first["wheels"])
    print(f"\nsnapshot: {first['size'] / 2**20:.1f} MiB")

    # Second boot: restored, and ping_core, WebCrypto, IndexedDB and the host all work.
    ready = _restored(page)
    assert ready["crypto"] == "webcrypto", ready
    print(f"restored boot: {ready['ms']} ms {ready['boot_stages']}")

    # A new build (another build id in manifest.json): the stored one is stale.
    new_build = "0123456789abcdef"
    page.context.route(
        server_url + "/manifest.json",
        lambda route: route.fulfill(
            response=(resp := route.fetch()),
            json={**resp.json(), "build": new_build},
        ),
    )
    replaced = _cold(page, "stale", new_build)
    assert replaced["digest"] != first["digest"]
    _restored(page)

    # The stored memory altered on disk: its digest no longer matches.
    page.evaluate("snap.record().then((r) => { r.memory[r.memory.length >> 1] ^= 1; return snap.put(r); })")
    _cold(page, "digest mismatch", new_build)

    # A record that passes its checks but is no Pyodide memory image: the restore fails.
    page.evaluate(
        """import('/pysnapshot.mjs').then(async (stored) => {
            const r = await snap.record();
            await stored.write(r.key, new Uint8Array(1 << 20), r.wheels, 0);
        })"""
    )
    _cold(page, "restore failed", new_build)
    _restored(page)


def test_snapshot_off_boots_normally(harness: Any) -> None:
    wid, ready = _boot(harness, "dev=1&snapshot=0")
    assert ready["snapshot"] == "off" and ready["snapshot_reason"] == "disabled", ready
    reply = harness.evaluate("(id) => snap.call(id, 'ping', {})", wid)
    assert reply["result"]["pong"] is True
    # The table is complete at boot, the on-demand features are not imported yet...
    methods = harness.evaluate("(id) => snap.call(id, 'info', {})", wid)["result"]["methods"]
    assert {"vault.status", "push.status", "dev.exec"} <= set(methods), methods
    imported = harness.evaluate("([id, code]) => snap.call(id, 'dev.exec', { code })", [wid, IMPORTED])
    assert imported["result"] == [], imported
    # ...until their first call (here refused: no such account), which imports and runs the handler.
    bad = harness.evaluate("(id) => snap.call(id, 'vault.status', { account: 'x' })", wid)
    assert bad["error"]["name"] == "InvalidInput", bad
    imported = harness.evaluate("([id, code]) => snap.call(id, 'dev.exec', { code })", [wid, IMPORTED])
    assert imported["result"] == ["pyodide_app.vault"], imported
    assert harness.evaluate("snap.summary()") is None  # nothing was stored


def test_service_worker_restores_the_snapshot(browser: Any, server_url: str) -> None:
    context = browser.new_context()
    try:
        user = ChatUser.open(context, server_url)
        user.create_account("snapshot-sam")
        # The page's worker (the first boot of this profile) took the snapshot.
        user.page.wait_for_function(
            "() => new Promise((res) => { const r = indexedDB.open('ping-boot-snapshot', 1);"
            " r.onupgradeneeded = () => r.result.createObjectStore('snapshots');"
            " r.onsuccess = () => r.result.transaction('snapshots').objectStore('snapshots').count().onsuccess ="
            " (e) => { r.result.close(); res(e.target.result === 1); }; })",
            polling=200,
            timeout=BOOT_TIMEOUT_MS,
        )
        user.page.wait_for_function(
            "navigator.serviceWorker.getRegistration().then((r) => !!(r && r.active))",
            polling=200,
            timeout=UI_TIMEOUT_MS,
        )
        workers = context.service_workers
        assert len(workers) == 1, workers
        sw = workers[0]
        result = sw.evaluate("self.pingColdSync('test')")
        assert result["account"] == user.user_id and not result["warm"], result
        boot = sw.evaluate("self.pingBoot")
        assert boot["snapshot"] == "restored", boot
        print(f"\nservice worker from the snapshot: boot {result['boot_ms']} ms, total {result['total_ms']} ms")
    finally:
        context.close()


# Runs in a worker booted without the snapshot: where its ping_core and pyodide_app
# modules came from, the header of their shipped bytecode, and a wheel whose .pyc
# another Python wrote (a wrong magic number).
BYTECODE = """
import importlib.util, sys, zipfile
ours = {n: m for n, m in sys.modules.items() if n.split(".")[0] in ("ping_core", "pyodide_app") and getattr(m, "__file__", None)}
framing = sys.modules["ping_core.mls.framing.private_message"]
with zipfile.ZipFile(framing.__loader__.archive) as z:
    header = z.read("ping_core/mls/framing/private_message.pyc")[:8]
with zipfile.ZipFile("/tmp/foreign.zip", "w") as z:
    z.writestr("foreign_mod.py", "ANSWER = 42\\n")
    z.writestr("foreign_mod.pyc", b"\\x00\\x00\\r\\n" + bytes(12) + b"not bytecode")
sys.path.insert(0, "/tmp/foreign.zip")
import foreign_mod
result = {
    "from_bytecode": sorted(n for n, m in ours.items() if m.__file__.endswith(".pyc")),
    "from_source": sorted(n for n, m in ours.items() if not m.__file__.endswith(".pyc")),
    "magic_matches": header[:4] == importlib.util.MAGIC_NUMBER,
    "flags": int.from_bytes(header[4:8], "little"),
    "foreign": [foreign_mod.ANSWER, foreign_mod.__file__.endswith(".py")],
}
"""


def test_a_boot_imports_the_bytecode_the_wheels_ship(harness: Any) -> None:
    wid, ready = _boot(harness, "dev=1&snapshot=0")
    reply = harness.evaluate("([id, code]) => snap.call(id, 'dev.exec', { code })", [wid, BYTECODE])
    assert "error" not in reply, reply
    got = reply["result"]
    # Every module of ours the boot imported came from its .pyc (none was compiled)...
    assert got["from_source"] == [], got["from_source"]
    assert "ping_core.mls.framing.private_message" in got["from_bytecode"] and len(got["from_bytecode"]) > 50
    # ...written by this Pyodide's Python, unchecked-hash (PEP 552: flags 0b01).
    assert got["magic_matches"] is True and got["flags"] == 1
    # Bytecode of another Python is skipped: the source is compiled instead.
    assert got["foreign"] == [42, True]
