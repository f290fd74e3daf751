// Web Push for a page of the app: subscribe this browser with the Ping server's VAPID key and
// register the subscription with the server, so a stopped service worker is woken (sw.mjs
// handles `push`: it syncs and shows the decrypted message, or a generic notification).
//
//   import { enablePush, disablePush } from "./pingpush.mjs";
//   await enablePush(ping);          // after Notification permission is granted (or asked here)
//   await disablePush(ping);
//
// `ping` is a Ping (ping.js): only its `call(method, params)` is used, for the RPC methods of
// pyodide_app/push.py (push.vapid_key, push.subscribe, push.unsubscribe, push.status).
//
// The subscription itself comes from the browser vendor's push service
// (registration.pushManager.subscribe, RFC 8030): it needs that service to be reachable.

/** base64url (RFC 4648 §5, padding optional) to bytes. */
function fromB64url(text) {
  const b64 = text.replace(/-/g, "+").replace(/_/g, "/");
  const raw = atob(b64 + "===".slice((b64.length + 3) % 4));
  return Uint8Array.from(raw, (c) => c.charCodeAt(0));
}

function sameBytes(a, b) {
  if (!a || !b) return false;
  const x = new Uint8Array(a);
  const y = new Uint8Array(b);
  return x.length === y.length && x.every((v, i) => v === y[i]);
}

async function registrationOf(opts) {
  if (opts.registration) return opts.registration;
  if (!("serviceWorker" in navigator)) throw new Error("this browser has no service workers");
  return navigator.serviceWorker.ready;
}

/**
 * Subscribe this browser to push and register the subscription with the server.
 * opts.registration: the ServiceWorkerRegistration to use (default: navigator.serviceWorker.ready).
 * opts.askPermission (default true): ask for notification permission first when not decided.
 * Resolves to {endpoint, status} (status: push.status's answer); rejects when permission is
 * refused, the push service cannot be reached, or the server refuses the subscription.
 */
export async function enablePush(ping, opts = {}) {
  const registration = await registrationOf(opts);
  if (opts.askPermission !== false && typeof Notification !== "undefined" && Notification.permission === "default") {
    await Notification.requestPermission();
  }
  const key = fromB64url(await ping.call("push.vapid_key"));
  let sub = await registration.pushManager.getSubscription();
  if (sub && !sameBytes(sub.options && sub.options.applicationServerKey, key)) {
    await sub.unsubscribe(); // made for another server key: the push service would refuse our pushes
    sub = null;
  }
  // userVisibleOnly: Chromium wakes a worker for push only if every push shows a notification.
  if (!sub) sub = await registration.pushManager.subscribe({ userVisibleOnly: true, applicationServerKey: key });
  const json = sub.toJSON();
  await ping.call("push.subscribe", { endpoint: json.endpoint, keys: { p256dh: json.keys.p256dh, auth: json.keys.auth } });
  return { endpoint: json.endpoint, status: await ping.call("push.status") };
}

/** Drop this browser's subscription, at the server and at the push service. */
export async function disablePush(ping, opts = {}) {
  const registration = await registrationOf(opts);
  const sub = await registration.pushManager.getSubscription();
  if (sub) {
    await ping.call("push.unsubscribe", { endpoint: sub.endpoint });
    await sub.unsubscribe();
  } else {
    await ping.call("push.unsubscribe", {});
  }
  return ping.call("push.status");
}
