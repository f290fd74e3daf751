// IndexedDB for Python: a few promise-returning helpers that the worker
// registers as the JS module "pingidb"; pyodide_app/idb.py is the only caller.
//
// One object store of byte values (Uint8Array) under string keys. Every
// write goes through write(): ONE readwrite transaction carrying any number
// of puts and deletes, which resolves only when the transaction commits and
// rejects when it aborts, so several records change atomically or not at all.

function promised(request) {
  return new Promise((resolve, reject) => {
    request.onsuccess = () => resolve(request.result);
    request.onerror = () => reject(request.error);
  });
}

/** Opens (creating if needed) database `name` with one object store `store`. */
export function open(name, store) {
  return openStores(name, [store]);
}

/**
 * Opens (creating if needed) database `name` with the object stores `stores`
 * (an array of names, all created at version 1), so one transaction can span
 * several of them (see writeMany).
 */
export function openStores(name, stores) {
  const wanted = Array.from(stores);
  const request = indexedDB.open(name, 1);
  request.onupgradeneeded = () => {
    const db = request.result;
    for (const store of wanted) {
      if (!db.objectStoreNames.contains(store)) db.createObjectStore(store);
    }
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

/** The bytes stored under `key`, or undefined. */
export async function get(db, store, key) {
  const tx = db.transaction(store, "readonly");
  const value = await promised(tx.objectStore(store).get(key));
  if (value === undefined) return undefined;
  return value instanceof Uint8Array ? value : new Uint8Array(value);
}

/** The keys that start with `prefix`, sorted. */
export async function keys(db, store, prefix) {
  const tx = db.transaction(store, "readonly");
  const range = prefix ? IDBKeyRange.bound(prefix, prefix + "\uffff") : undefined;
  return await promised(tx.objectStore(store).getAllKeys(range));
}

/** [keys, values] of the records whose key starts with `prefix`, from one transaction. */
export async function entries(db, store, prefix) {
  const tx = db.transaction(store, "readonly");
  const os = tx.objectStore(store);
  const range = prefix ? IDBKeyRange.bound(prefix, prefix + "\uffff") : undefined;
  const [keys, values] = await Promise.all([promised(os.getAllKeys(range)), promised(os.getAll(range))]);
  return [keys, values.map((v) => (v instanceof Uint8Array ? v : new Uint8Array(v)))];
}

/**
 * [keys, values] of the LAST `count` records whose key starts with `prefix`
 * (in ascending key order), from one transaction: a chat's newest messages.
 */
export function tail(db, store, prefix, count) {
  return new Promise((resolve, reject) => {
    const tx = db.transaction(store, "readonly");
    const range = IDBKeyRange.bound(prefix, prefix + "\uffff");
    const request = tx.objectStore(store).openCursor(range, "prev");
    const keys = [];
    const values = [];
    request.onsuccess = () => {
      const cursor = request.result;
      if (cursor && keys.length < count) {
        keys.push(cursor.key);
        const v = cursor.value;
        values.push(v instanceof Uint8Array ? v : new Uint8Array(v));
        cursor.continue();
      } else {
        resolve([keys.reverse(), values.reverse()]);
      }
    };
    request.onerror = () => reject(request.error);
  });
}

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
 */
export function writeMany(db, ops) {
  return new Promise((resolve, reject) => {
    let tx;
    let failure = null;
    try {
      tx = db.transaction([...new Set(ops.map((op) => op[0]))], "readwrite", { durability: "strict" });
    } catch (e) {
      reject(e);
      return;
    }
    tx.oncomplete = () => resolve();
    tx.onabort = () => reject(failure || tx.error || new Error("IndexedDB transaction aborted"));
    tx.onerror = () => {}; // onabort follows and reports the cause
    try {
      for (const [store, puts, deletes] of ops) {
        const os = tx.objectStore(store);
        for (const key of deletes) os.delete(key);
        // Store a copy that owns its buffer, not a view into Python's memory.
        for (const [key, value] of puts) os.put(value.slice(), key);
      }
    } catch (e) {
      failure = e;
      tx.abort();
    }
  });
}

/** Closes the handle (tests; a page unload closes it anyway). */
export function close(db) {
  db.close();
}
