// Web Locks for Python (registered as the JS module "pinglocks" in the worker
// and the service worker; pyodide_app/locks.py is the only caller).
//
// One exclusive lock per name, shared by every tab, worker and service worker
// of the origin (navigator.locks). acquire() resolves with a release function
// once the lock is granted; the lock is held until that function is called, or
// until the context holding it ends (a closed tab or a stopped service worker
// releases its locks: nothing stays locked forever).

/** Waits for the lock `name`; resolves with `release()` once it is held. */
export function acquire(name) {
  return new Promise((granted, failed) => {
    navigator.locks
      .request(name, { mode: "exclusive" }, () => new Promise((release) => granted(() => release())))
      .catch(failed);
  });
}

/** Takes the lock `name` only if nobody holds it: resolves with `release()`, or null. */
export function tryAcquire(name) {
  return new Promise((granted, failed) => {
    navigator.locks
      .request(name, { mode: "exclusive", ifAvailable: true }, (lock) => {
        if (lock === null) {
          granted(null);
          return undefined;
        }
        return new Promise((release) => granted(() => release()));
      })
      .catch(failed);
  });
}

/** The names of the locks held and waited for right now (diagnostics, tests). */
export async function snapshot() {
  const state = await navigator.locks.query();
  return {
    held: (state.held || []).map((l) => l.name),
    pending: (state.pending || []).map((l) => l.name),
  };
}
