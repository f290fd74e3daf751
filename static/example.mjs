// @ts-check
// An example page for Ping's SDK (not the demo): one Ping per local profile,
// every received message listed. Type-checked against ping.d.ts by
// `tsc --noEmit` (tests/browser/test_types.py).
//
// URL parameters: accounts=a,b (the profiles to open; default "default"),
// ack=manual (explicit acknowledgement), dev=1 (the worker's dev.* methods).
import { Ping, PingError } from "./ping.js";

/** @typedef {import("./ping.js").Message} Message */

const params = new URLSearchParams(location.search);
const profiles = (params.get("accounts") || "default").split(",");
const ack = params.get("ack") === "manual" ? "manual" : "auto";

/** @param {string} id */
function $(id) {
  const node = document.getElementById(id);
  if (!node) throw new Error(`no #${id}`);
  return node;
}
const status = /** @type {HTMLOutputElement} */ ($("status"));

/** @type {Record<string, Ping>} */
const pings = {};
/** Messages each profile received in events, in arrival order. @type {Record<string, Message[]>} */
const received = {};

/** @param {Message} m */
function describe(m) {
  return m.text ?? `(${m.bytes.length} bytes)`;
}

/** @param {string} profile @param {Message[]} messages */
function show(profile, messages) {
  for (const m of messages) {
    const item = document.createElement("li");
    item.textContent = `${profile} <- ${m.user.slice(0, 8)} #${m.seq}: ${describe(m)}`;
    $("log").append(item);
  }
}

try {
  for (const profile of profiles) {
    const ping = await Ping.open({
      account: profile,
      ack,
      dev: params.get("dev") === "1",
      onProgress: (stage) => (status.value = `${profile}: ${stage}`),
    });
    received[profile] = [];
    ping.on("messages", (event) => {
      received[profile].push(...event.messages);
      show(profile, event.messages);
    });
    let me = await ping.status();
    if (me.state === "none") {
      await ping.createAccount(profile);
      me = await ping.status();
    }
    const item = document.createElement("li");
    item.textContent = me.state === "ready" ? `${profile}: ${me.user_id}` : `${profile}: ${me.state}`;
    $("accounts").append(item);
    const option = document.createElement("option");
    option.value = option.textContent = profile;
    $("from").append(option);
    pings[profile] = ping;
  }
  status.value = "ready";
} catch (e) {
  status.value = "failed";
  console.error(e instanceof PingError ? `${e.name}: ${e.message}` : e);
}

$("send-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const from = pings[/** @type {HTMLSelectElement} */ ($("from")).value];
  const conv = /** @type {HTMLInputElement} */ ($("conv")).value.trim();
  const text = /** @type {HTMLInputElement} */ ($("text")).value;
  if (from && conv && text) await from.send(conv, text);
});

Object.assign(window, { pings, received, Ping });
