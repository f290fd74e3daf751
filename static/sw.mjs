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
// 3. Push (RFC 8030; the server's pushes carry only an encrypted {v, device}
//    hint, ping_server/push.py): a `push` runs the same cold-start sync, then
//    shows a notification of what it decrypted (title: sender and
//    conversation, body: the text), or a generic "New message" when a page
//    of the app is open and visible or the user chose "generic"; "off" shows
//    nothing, except on a push, where Chromium requires a notification for a
//    userVisibleOnly subscription (then the generic one, without a count).
//    The mode is each message's own profile's (`account.settings` of the
//    profile that decrypted it, read from its IndexedDB registry on every
//    wake), never another profile's: a profile set to "off" or "generic"
//    never has its text shown because another profile chose "text".
//    `sync` and `periodicsync` notify the same way. `notificationclick`
//    focuses an open page of the app or opens one.
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

// -- 3. push and notifications ---------------------------------------------------------

const GENERIC = "New message";
// What this worker showed since it started (diagnostics and tests: a debugger's console).
self.pingShown = [];

function titleOf(m) {
  const who = m.label || m.user_label || (m.user ? `user ${String(m.user).slice(0, 8)}` : "");
  const where = m.conv_name || m.name || "";
  return [who, where].filter(Boolean).join(" \u00b7 ") || "Ping";
}

async function pageVisible() {
  const pages = await self.clients.matchAll({ type: "window", includeUncontrolled: true });
  return pages.some((c) => c.visibilityState === "visible");
}

async function show(title, options, reason) {
  await self.registration.showNotification(title, options);
  const shown = { title, body: options.body || "", tag: options.tag, reason, at: Date.now() };
  self.pingShown.push(shown);
  channel.postMessage({ type: "notification", origin: "sw", ...shown });
}

/** What a message's profile chose to show ("text" | "generic" | "off"); unknown: "generic". */
function modesOf(result) {
  const modes = new Map();
  for (const a of (result && result.accounts) || []) modes.set(a.profile, a.notify);
  return (m) => {
    const mode = modes.get(m.profile);
    return mode === "text" || mode === "off" ? mode : "generic";
  };
}

/**
 * The notification(s) for a wake-up; resolves with how many were shown.
 * `result`: coldSync's (null when it failed); `mustShow`: a push to a
 * userVisibleOnly subscription (something must be shown).
 *
 * Each fresh message counts under its own profile's mode: "text" ones are
 * shown with their text per conversation (generic while a page of the app is
 * visible), "generic" ones only as one "New message" with their count, "off"
 * ones not at all; when a push found only "off" messages, the generic
 * notification without a count is the one Chromium requires.
 */
async function notify(result, reason, mustShow) {
  const fresh = (result && result.new) || [];
  if (!fresh.length) {
    return 0; // nothing new (the page synced first): Chromium tolerates an occasional silent push
  }
  const modeOf = modesOf(result);
  const visible = await pageVisible();
  const texts = fresh.filter((m) => modeOf(m) === "text" && !visible);
  const generic = fresh.filter((m) => modeOf(m) === "generic" || (modeOf(m) === "text" && visible));
  let shown = 0;
  if (generic.length || (mustShow && !texts.length)) {
    const n = generic.length;
    await show(GENERIC, { body: n > 1 ? `${n} new messages` : "", tag: "ping-generic", data: { account: result.account }, renotify: true }, reason);
    shown += 1;
  }
  const byConv = new Map();
  for (const m of texts) byConv.set(m.conv, [...(byConv.get(m.conv) || []), m]);
  for (const [conv, list] of byConv) {
    const last = list[list.length - 1];
    const body = list.slice(-3).map((m) => m.text).join("\n");
    await show(titleOf(last), { body, tag: `ping-${conv}`, data: { account: last.account, conv }, renotify: true, timestamp: last.time }, reason);
    shown += 1;
  }
  return shown;
}

// Every finished wake-up since this worker started, in order (diagnostics and tests):
// {reason, ok, messages (fresh ones decrypted), shown (notifications), at}.
self.pingWakes = [];

/** One wake-up: the cold sync, then the notification; a failed sync still shows the generic one on a push. */
async function wake(reason, mustShow) {
  let result = null;
  let error = null;
  let shown = 0;
  let ok = false;
  try {
    try {
      result = await coldSync(reason);
    } catch (e) {
      error = e;
    }
    if (error && mustShow) {
      await show(GENERIC, { tag: "ping-generic", data: {} }, reason);
      shown = 1;
      return;
    }
    shown = await notify(result, reason, mustShow);
    if (error) throw error;
    ok = true;
    return result;
  } finally {
    // Recorded once the wake-up's notifications are shown (or it failed), so a test can
    // tell "finished and showed nothing" from "not finished yet".
    self.pingWakes.push({ reason, ok, messages: (result && result.messages) || 0, shown, at: Date.now() });
  }
}

self.addEventListener("push", (event) => {
  event.waitUntil(wake("push", true));
});

self.addEventListener("sync", (event) => {
  if (event.tag === "ping-sync") event.waitUntil(wake("sync", false));
});

self.addEventListener("periodicsync", (event) => {
  if (event.tag === "ping-periodic") event.waitUntil(wake("periodicsync", false));
});

self.addEventListener("notificationclick", (event) => {
  event.notification.close();
  const conv = event.notification.data && event.notification.data.conv;
  event.waitUntil(
    (async () => {
      const pages = await self.clients.matchAll({ type: "window", includeUncontrolled: true });
      const page = pages.find((c) => new URL(c.url).pathname.startsWith(BASE.pathname));
      if (page) {
        if (conv) page.postMessage({ type: "open-conversation", conv });
        return page.focus();
      }
      return self.clients.openWindow(new URL(conv ? `./#${conv}` : "./", BASE).href);
    })(),
  );
});
