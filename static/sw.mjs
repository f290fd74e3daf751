// Ping's module service worker (register with {type: "module"}; ping.js does).
//
// 1. Offline app shell: on install it caches every file of dist/ (the list is
//    manifest.json's "files"); pages and workers load network-first and fall
//    back to the cache, so a reload without network still boots to "ready".
//    The API (/v1, /api) is never cached or intercepted.
// 2. Cold-start sync: woken by a page's {type: "sync"} message (answered on
//    the message's port with {ok, result | error}), by Background Sync
//    ("ping-sync") or Periodic Background Sync ("ping-periodic") where the
//    browser offers them, it boots Python here (the static import below: a
//    service worker may not use dynamic import()), opens the account's
//    IndexedDB state, takes the account's Web Lock for the sync only (never
//    while idle: pyodide_app/session.py), stores the decrypted messages with
//    the state that consumed them, and tells the open pages (BroadcastChannel
//    "ping-events"). A stopped service worker loses its memory: everything
//    comes from IndexedDB on the next wake.
import createPyodideModule from "./pyodide/pyodide.asm.mjs";
import { bootPython, errorOf } from "./pyboot.mjs";

const CACHE = "ping-shell-v1";
const BASE = new URL("./", self.location.href);
const API_PREFIXES = ["v1/", "api/"].map((p) => new URL(p, BASE).pathname);

// -- 1. the app shell ----------------------------------------------------------------

self.addEventListener("install", (event) => {
  event.waitUntil(
    (async () => {
      const res = await fetch(new URL("manifest.json", BASE), { cache: "no-cache" });
      if (!res.ok) throw new Error(`manifest.json: HTTP ${res.status}`);
      const manifest = await res.json();
      const cache = await caches.open(CACHE);
      await cache.addAll(["./", "manifest.json", ...(manifest.files || [])].map((f) => new URL(f, BASE).href));
      await self.skipWaiting();
    })(),
  );
});

self.addEventListener("activate", (event) => {
  event.waitUntil(
    (async () => {
      for (const name of await caches.keys()) if (name !== CACHE) await caches.delete(name);
      await self.clients.claim();
    })(),
  );
});

function isShell(url) {
  return url.origin === self.location.origin && url.pathname.startsWith(BASE.pathname) && !API_PREFIXES.some((p) => url.pathname.startsWith(p));
}

/** The cache key of a request: its URL without the query (worker.mjs?dev=1 is worker.mjs). */
function keyOf(request) {
  const url = new URL(request.url);
  return url.origin + url.pathname;
}

async function networkFirst(request, event) {
  const cache = await caches.open(CACHE);
  try {
    const response = await fetch(request);
    if (response.ok && response.status === 200 && response.type === "basic") {
      // Refresh the copy only when it changed (the server sends ETags): no
      // rewrite of the 9 MB runtime on every start.
      event.waitUntil(
        (async () => {
          const cached = await cache.match(keyOf(request));
          const tag = response.headers.get("etag");
          if (!cached || !tag || cached.headers.get("etag") !== tag) await cache.put(keyOf(request), response.clone());
        })().catch(() => {}),
      );
    }
    return response;
  } catch (error) {
    const cached = await cache.match(keyOf(request));
    if (cached) return cached;
    throw error;
  }
}

self.addEventListener("fetch", (event) => {
  const request = event.request;
  if (request.method !== "GET") return;
  const url = new URL(request.url);
  if (!isShell(url)) return; // the API and other origins: the network, untouched
  event.respondWith(networkFirst(request, event));
});

// -- 2. cold-start sync ---------------------------------------------------------------

const channel = new BroadcastChannel("ping-events");
const host = {
  /** Called by Python (pyodide_app.sdk) with a plain event object. */
  emit(event) {
    event.origin = "sw";
    channel.postMessage(event);
  },
};

let python = null;
function runtime() {
  if (!python) {
    python = bootPython({ base: BASE, options: { context: "sw" }, host, createPyodideModule });
    python.catch(() => (python = null)); // a failed boot is retried on the next wake
  }
  return python;
}

let running = null;
/** One sync at a time: {account, messages, conversations, ms, boot_ms, total_ms, reason}. */
async function coldSync(reason) {
  if (running) return running;
  running = (async () => {
    const t0 = performance.now();
    const warm = python !== null;
    const { handle } = await runtime();
    const bootMs = Math.round(performance.now() - t0);
    const reply = await handle({ id: 0, method: "sw.cold_sync", params: {} });
    if (reply.error) throw Object.assign(new Error(reply.error.message), { name: reply.error.name });
    return { ...reply.result, boot_ms: bootMs, warm, total_ms: Math.round(performance.now() - t0), reason };
  })();
  try {
    return await running;
  } finally {
    running = null;
  }
}
// Diagnostics and tests (e.g. a debugger's console): run a cold-start sync now.
self.pingColdSync = coldSync;

self.addEventListener("message", (event) => {
  const data = event.data;
  if (!data || data.type !== "sync") return;
  const port = event.ports && event.ports[0];
  const answer = (reply) => (port ? port.postMessage(reply) : event.source && event.source.postMessage({ type: "sw-sync", ...reply }));
  event.waitUntil(
    coldSync("message").then(
      (result) => answer({ ok: true, result }),
      (e) => answer({ ok: false, error: errorOf(e) }),
    ),
  );
});

self.addEventListener("sync", (event) => {
  if (event.tag === "ping-sync") event.waitUntil(coldSync("sync"));
});

self.addEventListener("periodicsync", (event) => {
  if (event.tag === "ping-periodic") event.waitUntil(coldSync("periodicsync"));
});
