// The stored Pyodide memory snapshot of this origin (used by pyboot.mjs).
//
// One record in its own IndexedDB database, shared by the page workers and the
// service worker of the origin:
//   {format, key, digest, memory: Uint8Array, wheels: [{name, bytes}], made_ms}
// `key` names what the memory depends on (the build id of manifest.json, the
// Pyodide version, JSPI; see snapshotKey): a record with another key is stale
// and never restored. `digest` is SHA-256 over the memory and the wheels, checked
// before every restore: a torn or altered record is refused (a corrupt memory
// image would not fail cleanly, it would run). The wheels are the exact bytes
// whose zip directories the memory image has cached, so a restore never pairs
// the memory with other wheel files than the ones it was taken with.
//
// Every function here resolves, never rejects, except read() for a record that
// fails its checks (SnapshotRefused): IndexedDB trouble only means "no snapshot".

export const DB_NAME = "ping-boot-snapshot";
const STORE = "snapshots";
const RECORD = "python";
// The record layout; bumped when it changes (older records are then stale).
export const FORMAT = 1;

/** A stored snapshot that must not be restored; `reason` says why. */
export class SnapshotRefused extends Error {
  constructor(reason) {
    super(`stored snapshot refused: ${reason}`);
    this.name = "SnapshotRefused";
    this.reason = reason;
  }
}

/** What a snapshot taken in this context depends on, as one string. */
export function snapshotKey(manifest, jspi) {
  return `format=${FORMAT};build=${manifest.build};pyodide=${manifest.pyodide};jspi=${jspi ? 1 : 0}`;
}

function promised(request) {
  return new Promise((resolve, reject) => {
    request.onsuccess = () => resolve(request.result);
    request.onerror = () => reject(request.error);
  });
}

// Its own database and version, independent of pingidb.mjs's schema changes.
function openDb() {
  const request = indexedDB.open(DB_NAME, 1);
  request.onupgradeneeded = () => request.result.createObjectStore(STORE);
  return new Promise((resolve, reject) => {
    request.onsuccess = () => {
      const db = request.result;
      db.onversionchange = () => db.close();
      resolve(db);
    };
    request.onerror = () => reject(request.error);
    request.onblocked = () => reject(new Error(`IndexedDB ${DB_NAME} is blocked`));
  });
}

async function withStore(mode, fn) {
  const db = await openDb();
  try {
    const tx = db.transaction(STORE, mode);
    const done = new Promise((resolve, reject) => {
      tx.oncomplete = resolve;
      tx.onabort = tx.onerror = () => reject(tx.error || new Error("transaction aborted"));
    });
    const result = await fn(tx.objectStore(STORE));
    await done;
    return result;
  } finally {
    db.close();
  }
}

/** SHA-256 (hex) over the memory image and the wheels, names included. */
export async function digestOf(memory, wheels) {
  const parts = [await crypto.subtle.digest("SHA-256", memory)];
  for (const { name, bytes } of wheels) {
    parts.push(new TextEncoder().encode(`${name}:${bytes.length};`));
    parts.push(await crypto.subtle.digest("SHA-256", bytes));
  }
  const all = new Uint8Array(parts.reduce((n, p) => n + p.byteLength, 0));
  let at = 0;
  for (const p of parts) {
    all.set(new Uint8Array(p), at);
    at += p.byteLength;
  }
  const sum = new Uint8Array(await crypto.subtle.digest("SHA-256", all));
  return Array.from(sum, (b) => b.toString(16).padStart(2, "0")).join("");
}

/**
 * The stored snapshot for `key`: {memory, wheels, made_ms}, or null when none
 * is stored (or IndexedDB cannot be read). Throws SnapshotRefused when the
 * record is stale (another key) or fails its digest.
 */
export async function read(key) {
  let record;
  try {
    record = await withStore("readonly", (store) => promised(store.get(RECORD)));
  } catch (e) {
    return null;
  }
  if (record === undefined) return null;
  if (!record || typeof record !== "object" || record.format !== FORMAT) throw new SnapshotRefused("unknown format");
  if (record.key !== key) throw new SnapshotRefused("stale (another build or runtime)");
  const { memory, wheels } = record;
  const ok =
    memory instanceof Uint8Array &&
    Array.isArray(wheels) &&
    wheels.every((w) => w && typeof w.name === "string" && w.bytes instanceof Uint8Array);
  if (!ok) throw new SnapshotRefused("malformed record");
  if ((await digestOf(memory, wheels)) !== record.digest) throw new SnapshotRefused("digest mismatch (corrupt)");
  return { memory, wheels, made_ms: record.made_ms };
}

/** Stores the snapshot for `key` in place of any other; resolves to true once committed. */
export async function write(key, memory, wheels, madeMs) {
  try {
    const digest = await digestOf(memory, wheels);
    const record = { format: FORMAT, key, digest, memory, wheels, made_ms: madeMs };
    await withStore("readwrite", (store) => promised(store.put(record, RECORD)));
    return true;
  } catch (e) {
    console.warn("Ping: could not store the Python snapshot:", e);
    return false;
  }
}

/** Deletes the stored snapshot (a refused or failing one); resolves either way. */
export async function remove() {
  try {
    await withStore("readwrite", (store) => promised(store.delete(RECORD)));
  } catch (e) {
    // Nothing stored, or IndexedDB unavailable: nothing to remove.
  }
}
