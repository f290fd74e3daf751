"""Everything Ping keeps in the browser's IndexedDB is sealed at rest (static/pingidb.mjs).

Real Chromium, real IndexedDB, a real ping_server. The checks read the RAW
databases from the page (``indexedDB`` directly, as anything reading the
profile would) and compare them with secrets obtained inside the worker
(``dev.exec``): account and device seeds, MLS epoch secrets, message texts,
linking secrets, and every decrypted record.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterator
from typing import Any

import pytest

from chatui import UI_TIMEOUT_MS, ChatUser
from pingpage import PAGE_HELPERS, wait_ready

# Every database of this origin as the disk holds it: per record its store,
# key and raw value (hex when bytes, else a JSON-ish description).
RAW_DUMP = """async () => {
  const BIG = 1 << 20;
  const hex = (u8) => Array.from(u8, (b) => b.toString(16).padStart(2, '0')).join('');
  const out = [];
  for (const { name, version } of await indexedDB.databases()) {
    if (!name.startsWith('ping')) continue;
    const db = await new Promise((ok, no) => { const r = indexedDB.open(name); r.onsuccess = () => ok(r.result); r.onerror = () => no(r.error); });
    const stores = Array.from(db.objectStoreNames);
    for (const store of stores) {
      const tx = db.transaction(store, 'readonly');
      const os = tx.objectStore(store);
      const [keys, values] = await Promise.all([
        new Promise((ok) => { os.getAllKeys().onsuccess = (e) => ok(e.target.result); }),
        new Promise((ok) => { os.getAll().onsuccess = (e) => ok(e.target.result); }),
      ]);
      keys.forEach((key, i) => {
        const v = values[i];
        let value;
        if ((v instanceof Uint8Array || v instanceof ArrayBuffer) && v.byteLength > BIG) value = { big: v.byteLength };
        else if (v instanceof Uint8Array || v instanceof ArrayBuffer) value = { hex: hex(new Uint8Array(v)) };
        else if (v && typeof v === 'object') value = { object: Object.fromEntries(Object.entries(v).map(([k, x]) =>
          [k, x instanceof Uint8Array ? hex(x) : x instanceof CryptoKey ? `CryptoKey(extractable=${x.extractable})` : x])) };
        else value = { scalar: v };
        out.push({ db: name, version: db.version, stores, store, key: String(key), value });
      });
    }
    db.close();
  }
  return out;
}"""

# Python in the worker: the secrets an attacker would want, and every record decrypted.
SECRETS = """
from pyodide.ffi import run_sync
from pyodide_app.idb import IndexedDbBlobStore
from pyodide_app.sdk import sdk

DBS = __DBS__

async def collect():
    out = {"needles": {}, "plain": []}
    b = sdk()
    s = b.session or (await b.current())
    if s is not None:
        async with s.use() as c:
            ident = s.identity
            if hasattr(ident, "_seed"):
                out["needles"]["account seed"] = ident._seed.hex()
            out["needles"]["device secret"] = s.transport._signer._secret.hex()
            for conv in c._state.convs.values():
                group = conv.group
                if group is None:
                    continue
                sec = group.state.current.secrets
                for name in ("exporter_secret", "init_secret", "resumption_psk", "sender_data_secret", "membership_key"):
                    out["needles"][f"{conv.id.as_hex()[:8]} {name}"] = getattr(sec, name).hex()
    pending = await b.pending_link()
    if pending is not None:
        out["needles"]["link secret"] = pending.keys._secret.hex()
        out["needles"]["link device secret"] = pending.device_secret.hex()
    for name, stores in DBS.items():
        for store in stores:
            if store == "vault":
                continue
            st = await IndexedDbBlobStore.open(name, store)
            for key, value in await st.items():
                out["plain"].append([name, store, key, value.hex()])
    return out

result = run_sync(collect())
"""


# Big values (the boot snapshot's memory image): searched for the needles in the page.
BIG_SEARCH = """async (needles) => {
  const latin = (u8) => new TextDecoder('latin1').decode(u8);
  const found = [];
  for (const { name } of await indexedDB.databases()) {
    const db = await new Promise((ok, no) => { const r = indexedDB.open(name); r.onsuccess = () => ok(r.result); r.onerror = () => no(r.error); });
    for (const store of Array.from(db.objectStoreNames)) {
      const values = await new Promise((ok) => { db.transaction(store).objectStore(store).getAll().onsuccess = (e) => ok(e.target.result); });
      for (const v of values) {
        if (!(v instanceof Uint8Array || v instanceof ArrayBuffer) || v.byteLength <= (1 << 20)) continue;
        const text = latin(new Uint8Array(v));
        for (const [what, h] of Object.entries(needles)) {
          if (text.includes(latin(new Uint8Array(h.match(/../g).map((x) => parseInt(x, 16)))))) found.push(`${what} in ${name}/${store}`);
        }
      }
    }
    db.close();
  }
  return found;
}"""


def _dump(page: Any) -> list[dict[str, Any]]:
    dump: list[dict[str, Any]] = page.evaluate(RAW_DUMP)
    return dump


def _exec(user: ChatUser, code: str) -> Any:
    return user.call("dev.exec", {"code": code})


def _secrets(user: ChatUser, dump: list[dict[str, Any]]) -> dict[str, Any]:
    dbs: dict[str, list[str]] = {}
    for rec in dump:
        if rec["db"] != "ping-boot-snapshot":  # not a pingidb database
            dbs.setdefault(rec["db"], rec["stores"])
    return dict(_exec(user, SECRETS.replace("__DBS__", json.dumps(dbs))))


def _assert_nothing_in_clear(dump: list[dict[str, Any]], needles: dict[str, str], texts: list[str],
                             plain: list[list[str]]) -> None:
    """No needle (hex), no text (UTF-8 or UTF-16), no decrypted record of 16+ bytes, in any raw value or key."""
    blobs = [rec["value"].get("hex") or json.dumps(rec["value"]) for rec in dump]
    keys = [rec["key"] for rec in dump]
    wanted = dict(needles)
    for text in texts:
        wanted[f"text {text!r}"] = text.encode().hex()
        wanted[f"text {text!r} utf-16"] = text.encode("utf-16-le").hex()
    for name, store, key, value in plain:
        if len(value) >= 32:  # 16 bytes or more: a coincidence is out of the question
            wanted[f"record {name}/{store}/{key}"] = value
    assert len(wanted) >= 3
    for what, needle in wanted.items():
        for blob, rec in zip(blobs, dump):
            if "big" in rec["value"]:
                continue
            assert needle not in blob, f"{what} in clear in {rec['db']}/{rec['store']}/{rec['key']}"
        for key in keys:
            assert needle not in key.encode().hex() and needle not in key, f"{what} in a record key"
    for text in texts:
        assert all(text not in key for key in keys)


def _assert_all_sealed(dump: list[dict[str, Any]]) -> None:
    for rec in dump:
        if rec["db"] == "ping-boot-snapshot":
            continue  # a memory image from before any account opens (pyboot.mjs); searched, not sealed
        assert rec["version"] == 2, rec["db"]
        if rec["store"] == "vault":
            continue
        raw = bytes.fromhex(rec["value"]["hex"])
        assert raw[0] == 1 and len(raw) >= 1 + 8 + 12 + 16, (rec["db"], rec["store"], rec["key"])


@pytest.fixture(scope="module")
def used(browser: Any, server_url: str) -> Iterator[dict[str, Any]]:
    """Alice and Bob chatting (two contexts), and a third context with a linking request pending."""
    contexts = [browser.new_context() for _ in range(3)]
    try:
        alice = ChatUser.open(contexts[0], server_url)
        bob = ChatUser.open(contexts[1], server_url)
        alice.create_account("alice")
        bob.create_account("bob")
        conv = alice.create_conversation("at rest")
        alice.invite(bob.user_id)
        bob.wait_conversation(conv)
        bob.select(conv)
        texts = [f"canary from alice {secrets.token_hex(8)}", f"canary from bob {secrets.token_hex(8)}"]
        alice.send(texts[0])
        bob.wait_message(texts[0])
        bob.send(texts[1])
        alice.wait_message(texts[1])
        link_page, _request = ChatUser.request_link(contexts[2], server_url, "new laptop")
        yield {"alice": alice, "bob": bob, "link": ChatUser(link_page), "texts": texts, "conv": conv,
               "contexts": contexts}
    finally:
        for context in contexts:
            context.close()


def test_raw_indexeddb_holds_no_secret_and_no_text(used: dict[str, Any]) -> None:
    for who in ("alice", "bob", "link"):
        user: ChatUser = used[who]
        dump = _dump(user.page)
        assert {rec["db"] for rec in dump} >= {"ping-accounts"}
        _assert_all_sealed(dump)
        found = _secrets(user, dump)
        needles = found["needles"]
        if who == "link":
            assert {"link secret", "link device secret"} <= set(needles)
        else:
            assert {"account seed", "device secret"} <= set(needles)
            assert any("exporter_secret" in n for n in needles)
            assert any(rec["db"].startswith("ping-account-") and rec["store"] == "state" for rec in dump)
            assert {p[2] for p in found["plain"]} & {"generation"}
        _assert_nothing_in_clear(dump, needles, used["texts"] if who != "link" else [], found["plain"])
        assert user.page.evaluate(BIG_SEARCH, {**needles, **{t: t.encode().hex() for t in used["texts"]}}) == []
        # The key is a non-extractable CryptoKey in each database's vault.
        keys = [rec for rec in dump if rec["store"] == "vault" and rec["key"] == "key"]
        assert keys and all(rec["value"]["object"]["key"] == "CryptoKey(extractable=false)" for rec in keys)
        assert all(rec["value"]["object"]["kind"] == "device" for rec in keys)


# -- tampering -------------------------------------------------------------------------

RAW_EDIT = """async ([name, store, op, key, arg]) => {
  const db = await new Promise((ok, no) => { const r = indexedDB.open(name); r.onsuccess = () => ok(r.result); r.onerror = () => no(r.error); });
  const tx = db.transaction(store, 'readwrite');
  const os = tx.objectStore(store);
  const get = (k) => new Promise((ok) => { os.get(k).onsuccess = (e) => ok(e.target.result); });
  let out = null;
  if (op === 'flip') { const v = new Uint8Array(await get(key)); v[arg] ^= 1; os.put(v, key); }
  else if (op === 'copy') { os.put(await get(arg), key); }
  else if (op === 'read') { out = Array.from(new Uint8Array(await get(key))); }
  else if (op === 'put') { os.put(new Uint8Array(arg), key); }
  await new Promise((ok) => { tx.oncomplete = ok; });
  db.close();
  return out;
}"""


def _raw(page: Any, name: str, store: str, op: str, key: str, arg: Any = None) -> Any:
    return page.evaluate(RAW_EDIT, [name, store, op, key, arg])


BLOB_CALL = """async ([m, p]) => {
  if (Array.isArray(p.value)) p.value = new Uint8Array(p.value);
  const plain = (v) => v instanceof Uint8Array ? Array.from(v) : Array.isArray(v) ? v.map(plain) : v;
  const got = await tryCall(m, p);
  return 'ok' in got ? { ok: plain(got.ok) } : got;
}"""


def _try(page: Any, method: str, params: dict[str, Any]) -> dict[str, Any]:
    """A dev.blob.* call, bytes as lists of ints both ways."""
    if isinstance(params.get("value"), bytes):
        params = {**params, "value": list(params["value"])}
    result: dict[str, Any] = page.evaluate(BLOB_CALL, [method, params])
    return result


def test_tampered_moved_or_copied_records_are_refused(ping_page: Any) -> None:
    page = ping_page
    for db in ("ping-dev-a", "ping-dev-b"):
        for key, value in (("x", "records x"), ("y", "records y")):
            assert "ok" in _try(page, "dev.blob.put", {"db": db, "key": key, "value": value.encode()})
    get = lambda db, key: _try(page, "dev.blob.get", {"db": db, "key": key})  # noqa: E731

    def refused(db: str, key: str) -> None:
        got = get(db, key)
        assert got.get("error", {}).get("name") == "StorageError", got
        assert "records" not in got["error"]["message"]  # no value in the message

    # A flipped byte anywhere: in the header, the IV, the ciphertext, the tag.
    length = len(_raw(page, "ping-dev-a", "blobs", "read", "x"))
    original = _raw(page, "ping-dev-a", "blobs", "read", "x")
    for at in (0, 3, 12, 25, length - 1):
        _raw(page, "ping-dev-a", "blobs", "flip", "x", at)
        refused("ping-dev-a", "x")
        _raw(page, "ping-dev-a", "blobs", "put", "x", original)
        assert bytes(get("ping-dev-a", "x")["ok"]) == b"records x"
    # A record moved under another key of the same database.
    _raw(page, "ping-dev-a", "blobs", "copy", "x", "y")
    refused("ping-dev-a", "x")
    assert bytes(get("ping-dev-a", "y")["ok"]) == b"records y"
    # A record copied from another database under the same key.
    _raw(page, "ping-dev-a", "blobs", "put", "x", _raw(page, "ping-dev-b", "blobs", "read", "x"))
    refused("ping-dev-a", "x")
    # A clear value slipped in (what the old format wrote).
    _raw(page, "ping-dev-a", "blobs", "put", "x", list(b"records x, in clear"))
    refused("ping-dev-a", "x")
    assert _try(page, "dev.blob.items", {"db": "ping-dev-a"}).get("error", {}).get("name") == "StorageError"
    # Writing a good value again works; the other records were never touched.
    assert "ok" in _try(page, "dev.blob.put", {"db": "ping-dev-a", "key": "x", "value": b"fresh"})
    assert [[k, bytes(v)] for k, v in _try(page, "dev.blob.items", {"db": "ping-dev-a"})["ok"]] == [
        ["x", b"fresh"], ["y", b"records y"]]
    assert bytes(get("ping-dev-b", "x")["ok"]) == b"records x"


# -- migration ---------------------------------------------------------------------------

# The format before sealing: version 1, the given stores, values stored as they are.
OLD_WRITER = """async ([name, version, stores, records]) => {
  const db = await new Promise((ok, no) => {
    const r = indexedDB.open(name, version);
    r.onupgradeneeded = () => { for (const s of stores) r.result.createObjectStore(s); };
    r.onsuccess = () => ok(r.result); r.onerror = () => no(r.error);
  });
  const tx = db.transaction(Object.keys(records), 'readwrite');
  for (const [store, items] of Object.entries(records)) {
    for (const [k, v] of Object.entries(items)) tx.objectStore(store).put(new TextEncoder().encode(v), k);
  }
  await new Promise((ok) => { tx.oncomplete = ok; });
  db.close();
}"""


def test_clear_databases_are_sealed_on_first_open(ping_page: Any) -> None:
    page = ping_page
    old = {"blobs": {"state/a": "clear record a", "state/b": "clear record b", "other": "clear other"}}
    page.evaluate(OLD_WRITER, ["ping-dev-old", 1, ["blobs"], old])
    # A crash after the schema upgrade but before the sealed copy committed: vault store, no key, no marker.
    page.evaluate(OLD_WRITER, ["ping-dev-crashed", 2, ["blobs", "vault"], old])
    for db in ("ping-dev-old", "ping-dev-crashed"):
        got = _try(page, "dev.blob.items", {"db": db})["ok"]
        assert [[k, bytes(v).decode()] for k, v in got] == sorted([k, v] for k, v in old["blobs"].items())
        dump = [rec for rec in _dump(page) if rec["db"] == db]
        _assert_all_sealed(dump)
        assert {rec["key"] for rec in dump if rec["store"] == "vault"} == {"key", "sealed"}
        _assert_nothing_in_clear(dump, {}, list(old["blobs"].values()), [])
        assert "ok" in _try(page, "dev.blob.put", {"db": db, "key": "state/c", "value": b"new"})
    page.reload()
    wait_ready(page)
    page.evaluate(PAGE_HELPERS)
    got = _try(page, "dev.blob.items", {"db": "ping-dev-old", "prefix": "state/"})["ok"]
    assert [[k, bytes(v)] for k, v in got] == [["state/a", b"clear record a"], ["state/b", b"clear record b"],
                                               ["state/c", b"new"]]


# -- passphrase ------------------------------------------------------------------------


def test_passphrase_set_lock_unlock_wrong_and_remove(browser: Any, server_url: str) -> None:
    context = browser.new_context()
    try:
        user = ChatUser.open(context, server_url)
        user.create_account("carol")
        conv = user.create_conversation("notes")
        user.send("note to self")
        user.wait_message("note to self")
        acct = {"account": user.user_id}
        page = user.page
        page.evaluate(PAGE_HELPERS)

        def call(method: str, **params: Any) -> dict[str, Any]:
            result: dict[str, Any] = page.evaluate("([m, p]) => tryCall(m, p)", [method, {**acct, **params}])
            return result

        assert call("vault.status") == {"ok": {"sealed": True, "passphrase": False, "locked": False}}
        assert call("vault.unlock", passphrase="")["error"]["name"] == "InvalidInput"
        assert call("vault.status", account="00" * 32)["error"]["name"] == "InvalidInput"
        assert call("vault.set_passphrase", passphrase="correct horse") == {
            "ok": {"sealed": True, "passphrase": True, "locked": False}}
        user.send("after the passphrase")  # the open session goes on
        user.wait_message("after the passphrase")
        dump = [rec for rec in _dump(page) if rec["db"] == "ping-account-" + user.user_id]
        vault_key = next(rec for rec in dump if rec["store"] == "vault" and rec["key"] == "key")["value"]["object"]
        assert vault_key["kind"] == "passphrase" and "key" not in vault_key and vault_key["iterations"] == 600_000
        _assert_all_sealed(dump)
        assert "correct horse".encode().hex() not in json.dumps(dump)

        # A new context (reload) is locked: the account does not open until unlocked.
        page.reload()
        wait_ready(page)
        page.evaluate(PAGE_HELPERS)
        assert call("vault.status") == {"ok": {"sealed": True, "passphrase": True, "locked": True}}
        assert call("account.whoami")["error"]["name"] == "StorageLocked"
        wrong = call("vault.unlock", passphrase="wrong horse")
        assert wrong["error"]["name"] == "StorageLocked" and "horse" not in wrong["error"]["message"]
        assert call("vault.status")["ok"]["locked"] is True
        assert call("vault.unlock", passphrase="correct horse")["ok"] == {
            "sealed": True, "passphrase": True, "locked": False}
        assert call("account.whoami")["ok"]["user_id"] == user.user_id
        texts = [m["text"] for m in call("conversation.messages", conv=conv)["ok"]]
        assert texts[-2:] == ["note to self", "after the passphrase"]

        # vault.lock forgets the key here: reads fail until unlocked again.
        assert call("vault.lock")["ok"]["locked"] is True
        assert call("conversation.messages", conv=conv)["error"]["name"] == "StorageLocked"
        assert call("vault.set_passphrase", passphrase=None)["error"]["name"] == "StorageLocked"
        call("vault.unlock", passphrase="correct horse")

        # Removing it: a device key again, and a reload opens without a passphrase.
        assert call("vault.set_passphrase", passphrase=None)["ok"] == {
            "sealed": True, "passphrase": False, "locked": False}
        page.reload()
        wait_ready(page)
        page.evaluate(PAGE_HELPERS)
        assert call("vault.status")["ok"] == {"sealed": True, "passphrase": False, "locked": False}
        assert call("account.whoami")["ok"]["user_id"] == user.user_id
        assert [m["text"] for m in call("conversation.messages", conv=conv)["ok"]][-1] == "after the passphrase"
    finally:
        context.close()
