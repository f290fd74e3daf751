// Ping's web chat: the page. Everything goes through the Promise API of
// ping.js (the SDK runs in the Pyodide worker); this module only renders.
//
// URL parameters: dev=1 (the worker's dev.* methods), sw=0 (do not register
// the service worker), live=0 (no live sync; tests drive sync by hand),
// account=NAME (the local profile, default "default").
import { Ping } from "./ping.js";

const $ = (id) => document.getElementById(id);
const params = new URLSearchParams(location.search);
const DEV = params.get("dev") === "1";
const LIVE = params.get("live") !== "0";
const SW = params.get("sw") !== "0";
const PROFILE = params.get("account") || "default";

const state = {
  me: null, // {user_id, device_id, label}
  conversations: [], // as ping.conversations()
  selected: null, // conversation id
  messages: new Map(), // seq -> message, of the selected conversation
  labels: new Map(), // device id -> label
  asked: new Set(), // user ids whose labels were asked for
};

// -- boot ----------------------------------------------------------------------------

let ping;
try {
  ping = await Ping.open({
    dev: DEV,
    account: PROFILE,
    onProgress(stage, msg) {
      // "ready" is shown once window.ping answers (below): tests wait for it.
      if (stage !== "ready") $("boot-status").textContent = stage;
      if (stage === "ready") $("boot-detail").textContent = `(${msg.ms} ms, Python ${msg.python}, crypto: ${msg.crypto})`;
    },
  });
} catch (e) {
  $("boot-status").textContent = "failed";
  $("boot-detail").textContent = `${e.name}: ${e.message}`;
  throw e;
}
window.ping = ping;
$("boot-status").textContent = "ready";

/** A message's text, or what it is when its payload is not UTF-8. */
const shown = (m) => (m.text ?? `(${m.bytes.length} bytes of binary data)`);

// -- helpers -------------------------------------------------------------------------

function showError(e) {
  const name = (e && e.name) || "Error";
  const message = (e && e.message) || String(e);
  $("error-text").textContent = `${name}: ${message}`;
  $("error").hidden = false;
}
$("error-close").onclick = () => ($("error").hidden = true);

/** Runs `fn` with `button` disabled; errors are shown, never thrown. */
async function busy(button, fn) {
  if (button) button.disabled = true;
  try {
    return await fn();
  } catch (e) {
    showError(e);
    return undefined;
  } finally {
    if (button) button.disabled = false;
  }
}

function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (key === "dataset") Object.assign(node.dataset, value);
    else if (key === "class") node.className = value;
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node[key] = value;
  }
  for (const child of children) if (child !== null && child !== undefined) node.append(child);
  return node;
}

const short = (hex) => `${hex.slice(0, 8)}…`;
const convName = (c) => (c && c.name) || "(unnamed)";

function formatTime(ms) {
  const d = new Date(ms);
  const today = new Date().toDateString() === d.toDateString();
  return today ? d.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" }) : d.toLocaleString([], { dateStyle: "short", timeStyle: "short" });
}

function senderName(m) {
  if (state.me && m.device === state.me.device_id) return "You";
  // A label is a device's free text: shown beside the verified account, never instead of it.
  const label = state.labels.get(m.device);
  const who = label ? `${label} · ${short(m.user)}` : short(m.user);
  return state.me && m.user === state.me.user_id ? `${who} (you, other device)` : who;
}

async function learnLabels(userIds) {
  const wanted = [...new Set(userIds)].filter((u) => !state.asked.has(u));
  if (!wanted.length) return;
  wanted.forEach((u) => state.asked.add(u));
  try {
    const found = await ping.labels(wanted);
    for (const [device, info] of Object.entries(found)) state.labels.set(device, info.label);
    renderMessages();
  } catch (e) {
    wanted.forEach((u) => state.asked.delete(u)); // try again later (e.g. offline)
  }
}

// -- account -------------------------------------------------------------------------

async function showAccount() {
  const status = await ping.status();
  if (status.state !== "ready") {
    state.me = null;
    $("app").hidden = true;
    $("me").hidden = true;
    $("onboarding").hidden = false;
    $("link-pending").hidden = status.state !== "linking";
    if (status.state === "linking") $("link-request-code").value = status.request;
    return;
  }
  state.me = status;
  state.labels.set(status.device_id, status.label);
  $("onboarding").hidden = true;
  $("app").hidden = false;
  $("me").hidden = false;
  $("me-label").textContent = status.label;
  $("me-user-id").textContent = status.user_id;
  if (LIVE) ping.startLive().catch(showError);
  await loadConversations();
  const remembered = sessionStorage.getItem("ping.selected");
  if (remembered && state.conversations.some((c) => c.id === remembered)) await select(remembered);
  loadDevices();
  loadInvitations().catch(showError);
  ping.settings().then((s) => ($("auto-join").checked = s.auto_join)).catch(showError);
}

// -- invitations: joining is the user's decision ------------------------------------------

function renderInvitations(pending) {
  $("invitations-box").hidden = pending.length === 0;
  $("invitations").replaceChildren(
    ...pending.map((inv) =>
      el(
        "li",
        { class: "invitation", dataset: { conv: inv.conv } },
        el("span", { class: "who" },
          // The name is the inviter's free text; the inviter is shown by its verified account.
          el("span", { class: "label", textContent: `${inv.name || "Unnamed conversation"} · ${inv.members} members` }),
          el("code", { textContent: inv.inviter ? `from ${short(inv.inviter)}` : "from an unverified member", title: inv.inviter || "" }),
        ),
        el("button", {
          class: "accept-invitation",
          type: "button",
          textContent: "Join",
          onclick: (event) => busy(event.target, async () => {
            await ping.acceptInvitation(inv.conv);
            await loadInvitations();
            await loadConversations();
          }),
        }),
        el("button", {
          class: "danger decline-invitation",
          type: "button",
          textContent: "Decline",
          onclick: (event) => busy(event.target, async () => {
            await ping.declineInvitation(inv.conv);
            await loadInvitations();
          }),
        }),
      ),
    ),
  );
}

async function loadInvitations() {
  renderInvitations(await ping.invitations());
}

$("auto-join").onchange = () =>
  busy(null, async () => {
    await ping.settings({ autoJoin: $("auto-join").checked });
    if ($("auto-join").checked) await ping.sync();
  });

$("copy-user-id").onclick = async () => {
  try {
    await navigator.clipboard.writeText(state.me.user_id);
    $("copy-user-id").textContent = "Copied";
  } catch {
    // No clipboard permission (e.g. an insecure origin): select the text instead.
    getSelection().selectAllChildren($("me-user-id"));
    $("copy-user-id").textContent = "Selected";
  }
  setTimeout(() => ($("copy-user-id").textContent = "Copy id"), 1500);
};

$("create-form").onsubmit = (event) => {
  event.preventDefault();
  busy($("create-account"), async () => {
    const result = await ping.createAccount($("label-input").value);
    if (result.error) showError({ name: "Offline", message: `account created here, not yet registered: ${result.error}` });
    await showAccount();
  });
};

$("link-request-form").onsubmit = (event) => {
  event.preventDefault();
  busy($("link-request"), async () => {
    const { code } = await ping.linkRequest($("link-label").value);
    $("link-request-code").value = code;
    $("link-pending").hidden = false;
  });
};

$("link-finish-form").onsubmit = (event) => {
  event.preventDefault();
  busy($("link-finish"), async () => {
    $("link-finish-status").textContent = "Waiting for the other device to send this device's ticket…";
    try {
      await ping.linkFinish($("link-grant").value.trim());
      $("link-finish-status").textContent = "";
      await showAccount();
    } catch (e) {
      $("link-finish-status").textContent = "";
      throw e;
    }
  });
};

$("link-cancel").onclick = () =>
  busy($("link-cancel"), async () => {
    await ping.linkCancel();
    $("link-pending").hidden = true;
    $("link-grant").value = "";
  });

// -- conversations -------------------------------------------------------------------

async function loadConversations() {
  state.conversations = await ping.conversations();
  renderConversations();
  if (state.selected) {
    const c = state.conversations.find((x) => x.id === state.selected);
    if (c) renderChatHead(c);
    else deselect(); // removed from it
  }
}

function renderConversations() {
  const list = $("conv-list");
  list.replaceChildren(
    ...state.conversations.map((c) =>
      el(
        "li",
        { class: c.id === state.selected ? "conv selected" : "conv", dataset: { id: c.id }, onclick: () => select(c.id) },
        el("span", { class: "name", textContent: convName(c) }),
        el("span", { class: "preview", textContent: c.removed ? "you were removed" : c.last ? `${senderName(c.last)}: ${shown(c.last)}` : `${c.member_count} member${c.member_count === 1 ? "" : "s"}` }),
      ),
    ),
  );
  $("conv-empty").hidden = state.conversations.length > 0;
}

function renderChatHead(c) {
  $("conv-title").textContent = convName(c);
  $("conv-meta").textContent = `${c.member_count} member${c.member_count === 1 ? "" : "s"} · epoch ${c.epoch}`;
  if (document.activeElement !== $("rename-input")) $("rename-input").value = c.name || "";
}

async function select(id) {
  state.selected = id;
  sessionStorage.setItem("ping.selected", id);
  state.messages = new Map();
  renderConversations();
  const c = state.conversations.find((x) => x.id === id);
  $("chat-empty").hidden = true;
  $("chat-view").hidden = false;
  $("members-panel").hidden = false;
  renderChatHead(c);
  renderMessages();
  // Until this conversation's roster is read, show none: not the last conversation's members,
  // and no invite form that moves (and can take a click meant for it) once the list renders.
  $("members").replaceChildren();
  $("invite-form").hidden = true;
  ping.focus(id).catch(() => {});
  await Promise.all([loadMessages(id), loadMembers(id)]);
  $("composer-text").focus();
}

function deselect() {
  state.selected = null;
  sessionStorage.removeItem("ping.selected");
  $("chat-view").hidden = true;
  $("members-panel").hidden = true;
  $("chat-empty").hidden = false;
  ping.focus(null).catch(() => {});
}

$("new-conv-form").onsubmit = (event) => {
  event.preventDefault();
  busy($("new-conv"), async () => {
    const c = await ping.createConversation($("new-conv-name").value);
    $("new-conv-name").value = "";
    await loadConversations();
    await select(c.id);
  });
};

$("rename-form").onsubmit = (event) => {
  event.preventDefault();
  const id = state.selected;
  busy($("rename-btn"), async () => {
    await ping.rename(id, $("rename-input").value);
    $("rename-input").blur();
    await loadConversations();
  });
};

// -- messages ------------------------------------------------------------------------

async function loadMessages(id) {
  const list = await ping.messages(id);
  if (state.selected !== id) return;
  for (const m of list) state.messages.set(m.seq, m);
  renderMessages();
}

function renderMessages() {
  const box = $("messages");
  const nearBottom = box.scrollHeight - box.scrollTop - box.clientHeight < 80;
  const sorted = [...state.messages.values()].sort((a, b) => a.seq - b.seq);
  box.replaceChildren(
    ...sorted.map((m) => {
      const own = state.me && m.device === state.me.device_id;
      return el(
        "li",
        { class: own ? "msg own" : "msg", dataset: { seq: String(m.seq), user: m.user, own: own ? "1" : "0" } },
        el(
          "div",
          { class: "head" },
          el("span", { class: "sender", textContent: senderName(m) }),
          el("time", { class: "time", textContent: formatTime(m.time), title: new Date(m.time).toString(), dateTime: new Date(m.time).toISOString() }),
        ),
        el("div", { class: "text", textContent: shown(m) }),
      );
    }),
  );
  if (nearBottom || sorted.length < 2) box.scrollTop = box.scrollHeight;
  learnLabels(sorted.map((m) => m.user));
}

async function sendCurrent() {
  const text = $("composer-text").value;
  if (!text.trim() || !state.selected) return;
  const id = state.selected;
  await busy($("send-btn"), async () => {
    const m = await ping.send(id, text);
    $("composer-text").value = "";
    if (state.selected === id) {
      state.messages.set(m.seq, m);
      renderMessages();
    }
  });
  $("composer-text").focus();
}

$("composer").onsubmit = (event) => {
  event.preventDefault();
  sendCurrent();
};
$("composer-text").addEventListener("keydown", (event) => {
  if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
    event.preventDefault();
    sendCurrent();
  }
});

// -- members -------------------------------------------------------------------------

// Calls overlap (an invite's own refresh, a sync's event): an answer is shown
// unless a later call's answer already was, so an answer read before a commit
// merged never overwrites the one read after it, and a later call still
// waiting (its directory lookup on a slow network) holds back no answer.
let membersIssued = 0;
let membersShown = 0;
async function loadMembers(id) {
  const call = ++membersIssued;
  const members = await ping.members(id);
  if (state.selected !== id || call < membersShown) return;
  membersShown = call;
  for (const m of members) if (m.label) state.labels.set(m.device_id, m.label);
  // Removed from it (the server refuses us, or the roster lacks us): read-only.
  const conv = state.conversations.find((x) => x.id === id);
  const member = members.some((m) => m.me) && !(conv && conv.removed);
  $("composer-text").disabled = !member;
  $("send-btn").disabled = !member;
  $("invite-form").hidden = !member;
  $("not-member").hidden = member;
  // One row per user, with the number of their devices.
  const users = new Map();
  for (const m of members) {
    // user_id null: the leaf proves no account (made before account bindings).
    const entry = users.get(m.user_id) || { user_id: m.user_id, labels: [], devices: 0, me: false };
    entry.devices += 1;
    if (m.label && !entry.labels.includes(m.label)) entry.labels.push(m.label);
    entry.me = entry.me || m.user_id === state.me.user_id;
    users.set(m.user_id, entry);
  }
  $("members").replaceChildren(
    ...[...users.values()].map((u) =>
      el(
        "li",
        { class: "member", dataset: { user: u.user_id } },
        el(
          "span",
          { class: "who" },
          el("span", { class: "label", textContent: `${u.user_id === null ? "unverified member" : u.labels.length ? `${u.labels.join(", ")} · ${short(u.user_id)}` : short(u.user_id)}${u.me ? " (you)" : ""}${u.devices > 1 ? ` · ${u.devices} devices` : ""}` }),
          el("code", { textContent: u.user_id || "no account binding", title: u.user_id || "" }),
        ),
        u.me || u.user_id === null
          ? null
          : !member
          ? null
          : el("button", {
              class: "danger remove-member",
              type: "button",
              textContent: "Remove",
              onclick: (event) =>
                busy(event.currentTarget, async () => {
                  await ping.removeUser(id, u.user_id);
                  await Promise.all([loadMembers(id), loadConversations()]);
                }),
            }),
      ),
    ),
  );
  renderMessages();
}

$("invite-form").onsubmit = (event) => {
  event.preventDefault();
  const id = state.selected;
  busy($("invite-btn"), async () => {
    await ping.invite(id, $("invite-user").value.trim());
    $("invite-user").value = "";
    await Promise.all([loadMembers(id), loadConversations()]);
  });
};

// -- devices -------------------------------------------------------------------------

async function loadDevices() {
  let devices;
  try {
    devices = await ping.devices();
  } catch (e) {
    $("devices").replaceChildren(el("li", { class: "hint", textContent: `Device list unavailable (${e.name})` }));
    return;
  }
  for (const d of devices) state.labels.set(d.device_id, d.label);
  $("devices").replaceChildren(
    ...devices.map((d) =>
      el(
        "li",
        { class: "device", dataset: { device: d.device_id } },
        el("span", { class: "who" }, el("span", { textContent: `${d.label}${d.this ? " (this browser)" : ""}` }), el("code", { textContent: d.device_id, title: d.device_id })),
        d.this
          ? null
          : el("button", {
              class: "danger revoke-device",
              type: "button",
              textContent: "Revoke",
              onclick: (event) =>
                busy(event.currentTarget, async () => {
                  await ping.revoke(d.device_id);
                  await loadDevices();
                }),
            }),
      ),
    ),
  );
}

$("link-accept-form").onsubmit = (event) => {
  event.preventDefault();
  const request = $("link-accept-request").value.trim();
  $("link-accept-out").hidden = true; // never show an earlier link's grant for this request
  $("link-grant-code").value = "";
  $("link-accept-status").textContent = "";
  busy($("link-accept"), async () => {
    const { grant } = await ping.linkGrant(request, $("link-with-key").checked);
    $("link-grant-code").value = grant;
    $("link-accept-out").hidden = false;
    $("link-accept-status").textContent = "Waiting for the new device to register…";
    try {
      const result = await ping.linkAdmit(request);
      const failed = result.failed.length ? `, ${result.failed.length} failed` : "";
      $("link-accept-status").textContent = `Linked: added to ${result.admitted} conversation${result.admitted === 1 ? "" : "s"}${failed}.`;
      $("link-accept-request").value = "";
      await loadDevices();
    } catch (e) {
      $("link-accept-status").textContent = "";
      throw e;
    }
  });
};

// -- events --------------------------------------------------------------------------

ping.on("messages", (event) => {
  if (event.conv === state.selected) {
    for (const m of event.messages) state.messages.set(m.seq, m);
    renderMessages();
  }
  const c = state.conversations.find((x) => x.id === event.conv);
  const last = event.messages[event.messages.length - 1];
  if (c && (!c.last || c.last.seq < last.seq)) {
    c.last = last;
    renderConversations();
  } else if (!c && state.me) {
    loadConversations().catch(showError);
  }
});

ping.on("conversations", (event) => {
  if (!state.me) return;
  if (state.selected && event.changed.includes(state.selected)) return handleSelectedChange(state.selected);
  loadConversations().catch(showError);
});

function handleSelectedChange(id) {
  loadConversations()
    .then(() => (state.selected === id ? loadMembers(id) : null))
    .catch(showError);
}

ping.on("status", (event) => {
  const net = $("net-status");
  net.hidden = false;
  net.textContent = event.online ? "online" : "offline";
  net.classList.toggle("offline", !event.online);
  net.title = event.error || "";
});

ping.on("account", () => showAccount().catch(showError));

ping.on("invitations", (event) => {
  if (state.me) renderInvitations(event.pending);
});

document.addEventListener("visibilitychange", () => {
  // Coming back: catch up now, rounds every 2 s. Hidden: rounds every 15 s, and
  // the service worker may catch up later (Background Sync, where offered).
  if (!state.me) return;
  const visible = document.visibilityState === "visible";
  if (LIVE) ping.startLive({ intervalMs: visible ? 2000 : 15000 }).catch(() => {});
  if (visible) ping.sync().catch(() => {});
  else registerBackgroundSync();
});

// -- start ---------------------------------------------------------------------------

let swRegistration = null;

async function registerBackgroundSync() {
  try {
    if (swRegistration && "sync" in swRegistration) await swRegistration.sync.register("ping-sync");
  } catch {
    // Not offered here (or no permission): the page syncs when it is open.
  }
}

ping.ready
  .then(async () => {
    await showAccount();
    if (SW) {
      try {
        swRegistration = await Ping.registerServiceWorker();
        if (swRegistration && "periodicSync" in swRegistration) {
          swRegistration.periodicSync.register("ping-periodic", { minInterval: 15 * 60 * 1000 }).catch(() => {});
        }
      } catch (e) {
        console.warn("ping: service worker not registered:", e);
      }
    }
  })
  .catch(showError);
