// IndexedDB for Python: a few promise-returning helpers that the worker
// registers as the JS module "pingidb"; pyodide_app/idb.py, accountdb.py and
// vault.py are the only callers.
//
// Object stores of byte values under string keys. Every value is SEALED at
// rest (docs/formats.md, "Browser IndexedDB"): AES-256-GCM under the
// database's own key, kept in the database's "vault" store, with a fresh
// 96-bit IV per write and the record's identity (database, store, key) as
// associated data, so a record altered, moved to another key or copied from
// another database fails to open. Record keys stay in clear (IndexedDB needs
// them for ranges).
//
// Every write goes through writeMany(): values are sealed FIRST, then ONE
// readwrite transaction carries all puts and deletes (an await on WebCrypto
// inside a transaction would let IndexedDB auto-commit it half done). It
// resolves only once the transaction commits, so several records change
// atomically or not at all.
//
// The key: without a passphrase, a non-extractable CryptoKey stored in the
// vault store (structured clone keeps it non-extractable). With one, the
// key's bytes wrapped by AES-GCM under a key derived from the passphrase
// (PBKDF2-SHA256); the unwrapped, non-extractable key then lives only in this
// JS context's memory (unlocked), until lock() or the context ends.

const DB_VERSION = 2; // 1: clear records (before sealing); 2: + the "vault" store
const FORMAT = 1; // the version byte of a sealed record, and the value of the "sealed" marker
const VAULT = "vault";
const KEY_RECORD = "key";
const SEALED_MARKER = "sealed";
const ID_LEN = 8; // key id: which key sealed a record
const IV_LEN = 12;
const TAG_LEN = 16;
const HEADER_LEN = 1 + ID_LEN;
export const PBKDF2_ITERATIONS = 600_000;
const PASSPHRASE_MAX = 1024;

const encoder = new TextEncoder();

/** Errors Python maps by name (pyodide_app/idb.py): StorageLocked, or StorageError for the rest. */
class VaultError extends Error {
  constructor(name, message) {
    super(message);
    this.name = name;
  }
}
const locked = (name) =>
  new VaultError("StorageLocked", `IndexedDB ${name} is locked by a passphrase: unlock it first`);
const tampered = (name, store, key, why) =>
  new VaultError("StorageTampered", `IndexedDB ${name}: record ${store}/${JSON.stringify(key)} ${why}`);

// This context's usable keys: database name -> {current: id hex | null, keys: Map(id hex -> CryptoKey)}.
// Several ids are kept so a record sealed a moment before a re-key still opens.
const unlocked = new Map();

function promised(request) {
  return new Promise((resolve, reject) => {
    request.onsuccess = () => resolve(request.result);
    request.onerror = () => reject(request.error);
  });
}

function done(tx) {
  return new Promise((resolve, reject) => {
    tx.oncomplete = () => resolve();
    tx.onabort = () => reject(tx.failure || tx.error || new Error("IndexedDB transaction aborted"));
    tx.onerror = () => {}; // onabort follows and reports the cause
  });
}

const bytesOf = (v) => (v instanceof Uint8Array ? v : ArrayBuffer.isView(v) ? new Uint8Array(v.buffer, v.byteOffset, v.byteLength) : new Uint8Array(v));
const hexOf = (u8) => Array.from(u8, (b) => b.toString(16).padStart(2, "0")).join("");
const random = (n) => crypto.getRandomValues(new Uint8Array(n));

function equalBytes(a, b) {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

function concat(...parts) {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

// Length-prefixed fields, so no two (database, store, key) triples share an encoding.
function framed(...strings) {
  return concat(
    ...strings.flatMap((s) => {
      const b = encoder.encode(s);
      const len = new Uint8Array(4);
      new DataView(len.buffer).setUint32(0, b.length);
      return [len, b];
    }),
  );
}

// -- opening -----------------------------------------------------------------------

/** Opens (creating if needed) database `name` with one object store `store`. */
export function open(name, store) {
  return openStores(name, [store]);
}

/**
 * Opens (creating if needed) database `name` with the object stores `stores`
 * (an array of names), so one transaction can span several of them (see
 * writeMany). A database written before sealing (version 1, clear records)
 * is sealed here first (see migrate). Rejects with StorageLocked when the
 * database has a passphrase and this context has not unlocked it.
 */
export async function openStores(name, stores) {
  const db = await openRaw(name, stores);
  try {
    let vault = await readVault(db);
    if (vault.key === undefined) vault = { ...vault, key: await createKey(db) };
    adopt(name, vault.key);
    if (vault.sealed === undefined) await migrate(db);
    else if (vault.sealed !== FORMAT) throw new VaultError("StorageError", `IndexedDB ${name} has an unknown format ${vault.sealed}`);
  } catch (e) {
    db.close();
    throw e;
  }
  return db;
}

/** The database at the current schema (stores created, the vault store added), nothing decrypted. */
function openRaw(name, stores) {
  const wanted = [...Array.from(stores), VAULT];
  const request = indexedDB.open(name, DB_VERSION);
  request.onupgradeneeded = (event) => {
    const db = request.result;
    for (const store of wanted) {
      if (!db.objectStoreNames.contains(store)) db.createObjectStore(store);
    }
    // A new database has nothing in clear: sealed from its first record on.
    if (event.oldVersion === 0) request.transaction.objectStore(VAULT).put(FORMAT, SEALED_MARKER);
  };
  return new Promise((resolve, reject) => {
    request.onsuccess = () => {
      const db = request.result;
      // Another tab upgrading the schema: let it, this handle is stale then.
      db.onversionchange = () => db.close();
      resolve(db);
    };
    request.onerror = () => reject(request.error);
    request.onblocked = () => reject(new Error(`IndexedDB ${name} is blocked by another connection`));
  });
}

async function readVault(db) {
  const tx = db.transaction(VAULT, "readonly");
  const os = tx.objectStore(VAULT);
  const [key, sealed] = await Promise.all([promised(os.get(KEY_RECORD)), promised(os.get(SEALED_MARKER))]);
  return { key, sealed };
}

/** The database's key record, creating a non-extractable device key when it has none (two contexts agree on one). */
async function createKey(db) {
  const key = await crypto.subtle.generateKey({ name: "AES-GCM", length: 256 }, false, ["encrypt", "decrypt"]);
  const fresh = { v: 1, kind: "device", id: random(ID_LEN), key };
  const tx = db.transaction(VAULT, "readwrite", { durability: "strict" });
  const os = tx.objectStore(VAULT);
  let chosen = fresh;
  os.get(KEY_RECORD).onsuccess = (event) => {
    if (event.target.result !== undefined) chosen = event.target.result;
    else os.put(fresh, KEY_RECORD);
  };
  await done(tx);
  return chosen;
}

/** Makes the key of `record` usable here (a device key always; a passphrase key only once unlocked). */
function adopt(name, record) {
  const id = hexOf(record.id);
  let entry = unlocked.get(name);
  if (record.kind === "device") {
    if (!entry) unlocked.set(name, (entry = { current: null, keys: new Map() }));
    entry.keys.set(id, record.key);
  } else if (!entry || !entry.keys.has(id)) {
    throw locked(name);
  }
  entry.current = id;
}

/** {id, key} of the key new records are sealed with; re-reads the vault when `refresh`. */
async function currentKey(db, refresh = false) {
  const entry = unlocked.get(db.name);
  if (!refresh && entry && entry.current) return { id: entry.current, key: entry.keys.get(entry.current) };
  const { key: record } = await readVault(db);
  if (record === undefined) throw new VaultError("StorageError", `IndexedDB ${db.name} has lost its key`);
  adopt(db.name, record);
  return currentKey(db);
}

/** The key that sealed a record with key id `id` (hex), or a StorageLocked / StorageTampered error. */
async function keyFor(db, store, key, id) {
  const entry = unlocked.get(db.name);
  const known = entry && entry.keys.get(id);
  if (known) return known;
  const current = await currentKey(db, true); // re-keyed by another context since, or locked
  if (current.id === id) return current.key;
  throw tampered(db.name, store, key, "was sealed under a key this database does not hold");
}

// -- sealing -----------------------------------------------------------------------

function aad(header, dbName, store, key) {
  if (typeof key !== "string") throw new VaultError("StorageError", "sealed records have string keys");
  return concat(header, framed("ping-idb", dbName, store, key));
}

/** version byte || key id || IV || AES-GCM(value, aad = header || database || store || key). Copies `value` at once. */
async function seal(current, dbName, store, key, value) {
  const header = new Uint8Array(HEADER_LEN);
  header[0] = FORMAT;
  header.set(idBytes(current.id), 1);
  const iv = random(IV_LEN);
  const data = bytesOf(value);
  const ct = await crypto.subtle.encrypt({ name: "AES-GCM", iv, additionalData: aad(header, dbName, store, key) }, current.key, data);
  return concat(header, iv, new Uint8Array(ct));
}

async function unseal(db, store, key, value) {
  if (!(value instanceof ArrayBuffer || ArrayBuffer.isView(value))) throw tampered(db.name, store, key, "is not a sealed record");
  const bytes = bytesOf(value);
  if (bytes.length < HEADER_LEN + IV_LEN + TAG_LEN || bytes[0] !== FORMAT) throw tampered(db.name, store, key, "is not a sealed record");
  const header = bytes.subarray(0, HEADER_LEN);
  const aesKey = await keyFor(db, store, key, hexOf(bytes.subarray(1, HEADER_LEN)));
  try {
    const iv = bytes.subarray(HEADER_LEN, HEADER_LEN + IV_LEN);
    const plain = await crypto.subtle.decrypt(
      { name: "AES-GCM", iv, additionalData: aad(header, db.name, store, key) },
      aesKey,
      bytes.subarray(HEADER_LEN + IV_LEN),
    );
    return new Uint8Array(plain);
  } catch {
    throw tampered(db.name, store, key, "failed to authenticate (altered, moved or copied from elsewhere)");
  }
}

// -- reads -------------------------------------------------------------------------

/** The bytes stored under `key` (verified and decrypted), or undefined. */
export async function get(db, store, key) {
  const tx = db.transaction(store, "readonly");
  const value = await promised(tx.objectStore(store).get(key));
  if (value === undefined) return undefined;
  return unseal(db, store, key, value);
}

/** The keys that start with `prefix`, sorted (keys are not sealed). */
export async function keys(db, store, prefix) {
  const tx = db.transaction(store, "readonly");
  const range = prefix ? IDBKeyRange.bound(prefix, prefix + "\uffff") : undefined;
  return await promised(tx.objectStore(store).getAllKeys(range));
}

/** [keys, values] of the records whose key starts with `prefix`, from one transaction, decrypted in parallel. */
export async function entries(db, store, prefix) {
  const tx = db.transaction(store, "readonly");
  const os = tx.objectStore(store);
  const range = prefix ? IDBKeyRange.bound(prefix, prefix + "\uffff") : undefined;
  const [keys, values] = await Promise.all([promised(os.getAllKeys(range)), promised(os.getAll(range))]);
  return [keys, await Promise.all(values.map((v, i) => unseal(db, store, keys[i], v)))];
}

/**
 * [keys, values] of the LAST `count` records whose key starts with `prefix`
 * (in ascending key order), from one transaction: a chat's newest messages.
 */
export async function tail(db, store, prefix, count) {
  const [keys, values] = await new Promise((resolve, reject) => {
    const tx = db.transaction(store, "readonly");
    const range = IDBKeyRange.bound(prefix, prefix + "\uffff");
    const request = tx.objectStore(store).openCursor(range, "prev");
    const keys = [];
    const values = [];
    request.onsuccess = () => {
      const cursor = request.result;
      if (cursor && keys.length < count) {
        keys.push(cursor.key);
        values.push(cursor.value);
        cursor.continue();
      } else {
        resolve([keys.reverse(), values.reverse()]);
      }
    };
    request.onerror = () => reject(request.error);
  });
  return [keys, await Promise.all(values.map((v, i) => unseal(db, store, keys[i], v)))];
}

// -- writes ------------------------------------------------------------------------

/**
 * One atomic transaction: `puts` is an array of [key, Uint8Array], `deletes`
 * an array of keys (applied before the puts). Resolves once it committed.
 */
export function write(db, store, puts, deletes) {
  return writeMany(db, [[store, puts, deletes]]);
}

/**
 * One atomic transaction over several object stores: `ops` is an array of
 * [store, puts, deletes] as in write(). All of it commits, or none of it.
 * The transaction first checks that the key it sealed with is still the
 * database's key (another context may have re-keyed it: then it seals again).
 */
export async function writeMany(db, ops) {
  // Copy now: the arrays may be views into Python's memory, reused once this returns a promise.
  const plain = Array.from(ops, ([store, puts, deletes]) => [
    store,
    Array.from(puts, ([k, v]) => [k, bytesOf(v).slice()]),
    Array.from(deletes),
  ]);
  for (let attempt = 0; ; attempt++) {
    const current = await currentKey(db, attempt > 0);
    const sealed = await Promise.all(
      plain.map(async ([store, puts, deletes]) => [
        store,
        await Promise.all(puts.map(async ([k, v]) => [k, await seal(current, db.name, store, k, v)])),
        deletes,
      ]),
    );
    try {
      await commitSealed(db, sealed, current.id);
      return;
    } catch (e) {
      if (e.name !== "StaleKey" || attempt >= 3) throw e;
    }
  }
}

function commitSealed(db, ops, keyId) {
  let tx;
  try {
    tx = db.transaction([...new Set([...ops.map((op) => op[0]), VAULT])], "readwrite", { durability: "strict" });
  } catch (e) {
    return Promise.reject(e);
  }
  const finished = done(tx);
  tx.objectStore(VAULT).get(KEY_RECORD).onsuccess = (event) => {
    const record = event.target.result;
    if (!record || hexOf(record.id) !== keyId) {
      tx.failure = new VaultError("StaleKey", "the database was re-keyed meanwhile");
      tx.abort();
      return;
    }
    try {
      for (const [store, puts, deletes] of ops) {
        const os = tx.objectStore(store);
        for (const key of deletes) os.delete(key);
        for (const [key, value] of puts) os.put(value, key);
      }
    } catch (e) {
      tx.failure = e;
      tx.abort();
    }
  };
  return finished;
}

// -- re-sealing: migration and re-keying ----------------------------------------------

/** Calls `then(results)` from the success callback of the last of `requests` (the transaction still active). */
function whenAll(requests, then) {
  let left = requests.length;
  for (const request of requests) {
    request.onsuccess = () => {
      if (--left === 0) then(requests.map((r) => r.result));
    };
  }
}

const dataStores = (db) => Array.from(db.objectStoreNames).filter((s) => s !== VAULT);

async function snapshot(db, stores) {
  const tx = db.transaction(stores, "readonly");
  return Promise.all(
    stores.map(async (store) => {
      const os = tx.objectStore(store);
      const [keys, values] = await Promise.all([promised(os.getAllKeys()), promised(os.getAll())]);
      return { store, keys, values };
    }),
  );
}

function sameRaw(a, b) {
  if (a instanceof ArrayBuffer || ArrayBuffer.isView(a)) {
    return (b instanceof ArrayBuffer || ArrayBuffer.isView(b)) && equalBytes(bytesOf(a), bytesOf(b));
  }
  return a === b;
}

/**
 * Rewrites every record of every store, opened by `open(store, key, raw)`
 * and sealed under `to`, together with `vaultPuts`, in ONE transaction that
 * first checks (`expect`, on the vault) that nothing changed since the
 * records were read; any record written meanwhile makes it read again.
 * Returns false when `expect` says the work was already done elsewhere.
 */
async function reseal(db, openRecord, to, vaultPuts, expect) {
  const stores = dataStores(db);
  for (let attempt = 0; attempt < 5; attempt++) {
    const before = await snapshot(db, stores);
    const sealed = await Promise.all(
      before.map(async ({ store, keys, values }) =>
        Promise.all(keys.map(async (k, i) => [k, await seal(to, db.name, store, k, await openRecord(store, k, values[i]))])),
      ),
    );
    const tx = db.transaction([...stores, VAULT], "readwrite", { durability: "strict" });
    const finished = done(tx);
    let outcome = "written";
    const vault = tx.objectStore(VAULT);
    const checks = [vault.get(KEY_RECORD), vault.get(SEALED_MARKER)];
    for (const { store } of before) {
      const os = tx.objectStore(store);
      checks.push(os.getAllKeys(), os.getAll());
    }
    // Inside the transaction: only IndexedDB requests and their callbacks, no other awaits.
    whenAll(checks, (got) => {
      const verdict = expect({ key: got[0], sealed: got[1] });
      if (verdict !== "go") {
        outcome = verdict;
        if (verdict === "stale") tx.failure = new VaultError("StorageError", `IndexedDB ${db.name} was re-keyed by another context meanwhile; retry`);
        tx.abort();
        return;
      }
      const unchanged = before.every(({ keys, values }, s) => {
        const [nowKeys, nowValues] = [got[2 + 2 * s], got[3 + 2 * s]];
        return nowKeys.length === keys.length && keys.every((k, i) => indexedDB.cmp(k, nowKeys[i]) === 0 && sameRaw(values[i], nowValues[i]));
      });
      if (!unchanged) {
        outcome = "retry";
        tx.abort();
        return;
      }
      before.forEach(({ store }, s) => {
        const os = tx.objectStore(store);
        for (const [k, v] of sealed[s]) os.put(v, k);
      });
      for (const [k, v] of vaultPuts) vault.put(v, k);
    });
    try {
      await finished;
      return true;
    } catch (e) {
      if (outcome === "done") return false;
      if (outcome !== "retry") throw e;
    }
  }
  throw new VaultError("StorageError", `IndexedDB ${db.name} kept changing while being re-sealed; retry`);
}

/**
 * Seals a database written in clear (version 1): every record of every
 * store and the "sealed" marker in ONE transaction, so until it commits the
 * clear records stay as they were (and the next open redoes it), and after
 * it nothing is clear. The marker decides, never a guess per record.
 */
async function migrate(db) {
  const current = await currentKey(db);
  await reseal(
    db,
    async (store, key, raw) => {
      if (!(raw instanceof ArrayBuffer || ArrayBuffer.isView(raw))) throw tampered(db.name, store, key, "is not a byte record");
      return bytesOf(raw);
    },
    current,
    [[SEALED_MARKER, FORMAT]],
    ({ sealed }) => (sealed === FORMAT ? "done" : "go"),
  );
}

// -- passphrase --------------------------------------------------------------------

function checkPassphrase(passphrase) {
  if (typeof passphrase !== "string" || passphrase.length === 0 || passphrase.length > PASSPHRASE_MAX) {
    throw new VaultError("InvalidInput", `a passphrase is a non-empty string of at most ${PASSPHRASE_MAX} characters`);
  }
}

async function passphraseKey(passphrase, salt, iterations) {
  const material = await crypto.subtle.importKey("raw", encoder.encode(passphrase), "PBKDF2", false, ["deriveKey"]);
  return crypto.subtle.deriveKey(
    { name: "PBKDF2", hash: "SHA-256", salt, iterations },
    material,
    { name: "AES-GCM", length: 256 },
    false,
    ["wrapKey", "unwrapKey"],
  );
}

// The wrapped key is bound to its database and id: it cannot be moved to another one.
const wrapParams = (name, record) => ({ name: "AES-GCM", iv: record.iv, additionalData: concat(record.id, framed("ping-vault", name)) });

async function unwrap(name, record, passphrase) {
  const kek = await passphraseKey(passphrase, record.salt, record.iterations);
  try {
    return await crypto.subtle.unwrapKey("raw", record.wrapped, kek, wrapParams(name, record), { name: "AES-GCM" }, false, ["encrypt", "decrypt"]);
  } catch {
    throw new VaultError("StorageLocked", `wrong passphrase for IndexedDB ${name}: it stays locked`);
  }
}

/** Whether database `name` exists (without creating it). */
export async function exists(name) {
  return (await indexedDB.databases()).some((d) => d.name === name);
}

/** {sealed, passphrase, locked} of database `name` for this context. */
export async function status(name, stores) {
  const db = await openRaw(name, stores);
  try {
    const { key, sealed } = await readVault(db);
    const passphrase = key !== undefined && key.kind === "passphrase";
    const entry = unlocked.get(name);
    return { sealed: sealed === FORMAT, passphrase, locked: passphrase && !(entry && entry.keys.has(hexOf(key.id))) };
  } finally {
    db.close();
  }
}

/**
 * Unlocks database `name` in this context with `passphrase` (a no-op when it
 * has none). A wrong passphrase rejects with StorageLocked and changes nothing.
 */
export async function unlock(name, stores, passphrase) {
  checkPassphrase(passphrase);
  const db = await openRaw(name, stores);
  try {
    const { key: record } = await readVault(db);
    if (record === undefined || record.kind !== "passphrase") return;
    const key = await unwrap(name, record, passphrase);
    let entry = unlocked.get(name);
    if (!entry) unlocked.set(name, (entry = { current: null, keys: new Map() }));
    entry.keys.set(hexOf(record.id), key);
    entry.current = hexOf(record.id);
  } finally {
    db.close();
  }
}

/** Forgets this context's keys of database `name`: with a passphrase it is locked again here. */
export function lock(name) {
  unlocked.delete(name);
}

/**
 * Sets (a string) or removes (null) the passphrase of database `name`, which
 * must be open-able here (unlocked). Setting one RE-KEYS the database: a new
 * key, wrapped under PBKDF2-SHA256(passphrase, fresh salt), and every record
 * re-sealed with it in ONE transaction, so a copy of the old device key
 * opens nothing written afterwards. Removing it stores the current key as a
 * non-extractable device key again (no re-sealing).
 */
export async function setPassphrase(name, stores, passphrase) {
  passphrase = passphrase ?? null; // Python's None arrives as undefined
  if (passphrase !== null) checkPassphrase(passphrase);
  const db = await openStores(name, stores);
  try {
    const from = await currentKey(db);
    const sameKey = ({ key }) => (key && hexOf(key.id) === from.id ? "go" : "stale");
    if (passphrase === null) {
      const record = { v: 1, kind: "device", id: idBytes(from.id), key: from.key };
      await replaceKeyRecord(db, from.id, record);
      return;
    }
    const raw = await crypto.subtle.generateKey({ name: "AES-GCM", length: 256 }, true, ["encrypt", "decrypt"]);
    const record = { v: 1, kind: "passphrase", id: random(ID_LEN), kdf: "PBKDF2-SHA256", iterations: PBKDF2_ITERATIONS, salt: random(16), iv: random(IV_LEN) };
    const kek = await passphraseKey(passphrase, record.salt, record.iterations);
    record.wrapped = new Uint8Array(await crypto.subtle.wrapKey("raw", raw, kek, wrapParams(name, record)));
    // Use the non-extractable unwrapped copy from now on; the extractable one is dropped here.
    const to = { id: hexOf(record.id), key: await unwrap(name, record, passphrase) };
    unlocked.get(name).keys.set(to.id, to.key); // before the commit: a record sealed under it may be read at once
    await reseal(db, (store, key, raw) => unseal(db, store, key, raw), to, [[KEY_RECORD, record]], sameKey);
    unlocked.get(name).current = to.id;
  } finally {
    db.close();
  }
}

const idBytes = (hex) => new Uint8Array(hex.match(/../g).map((x) => parseInt(x, 16)));

/** Puts `record` as the key record if the database's key is still `expectedId` (else a StorageError). */
async function replaceKeyRecord(db, expectedId, record) {
  const tx = db.transaction(VAULT, "readwrite", { durability: "strict" });
  const finished = done(tx);
  const os = tx.objectStore(VAULT);
  os.get(KEY_RECORD).onsuccess = (event) => {
    const now = event.target.result;
    if (!now || hexOf(now.id) !== expectedId) {
      tx.failure = new VaultError("StorageError", `IndexedDB ${db.name} was re-keyed by another context meanwhile; retry`);
      tx.abort();
    } else {
      os.put(record, KEY_RECORD);
    }
  };
  await finished;
}

/** Closes the handle (tests; a page unload closes it anyway). */
export function close(db) {
  db.close();
}
