#!/usr/bin/env node
// Interop driver for ts-mls (npm, an independent RFC 9420 implementation in TypeScript).
//
// Speaks docs/interop.md: one JSON request per stdin line, exactly one JSON response per
// request on stdout, in order; logs go to stderr. Binary values are lowercase hex; MLS objects are
// TLS-serialized MLSMessage. One process hosts any number of clients, each with at most one group.
//
// Beyond docs/interop.md this driver offers one extension op (used by the runner's external-join scenario):
//   {"op":"external_join","name":"eve","group_info":hex[,"ratchet_tree":hex]}
//     -> {"commit":hex,"epoch":N,"group_id":hex,"leaf_index":i}
// The commit is a PublicMessage (external commits always are) that every member must process.
// Every successful response carries elapsed_us and cpu_us: the wall-clock and CPU microseconds the
// handler took (request parsed to response built, so without the JSON lines; CPU time of the whole
// process, its worker threads included), which benchmarks/vs_peers.py reads.
//
// Cipher suite 1 only (MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519). Secrets that ts-mls reports as
// "consumed" are not zeroed (ts-mls leaves that to the caller): forward secrecy does not matter in a
// test harness. TSMLS_DRIVER_GREASE sets how much GREASE the KeyPackages advertise (see capabilities()).

import { createInterface } from "node:readline";
import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";

import {
  createApplicationMessage,
  createCommit,
  createGroup,
  createGroupInfoWithExternalPubAndRatchetTree,
  createProposal,
  decodeMlsMessage,
  defaultLifetime,
  emptyPskIndex,
  encodeMlsMessage,
  generateKeyPackage,
  getCiphersuiteFromName,
  getCiphersuiteImpl,
  joinGroup,
  joinGroupExternal,
  makePskIndex,
  mlsExporter,
  processMessage,
  acceptAll,
} from "ts-mls";
import { encodeRatchetTree, decodeRatchetTree } from "ts-mls/ratchetTree.js";
import { makeKeyPackageRef } from "ts-mls/keyPackage.js";
import { varLenDataEncoder } from "ts-mls/codec/variableLength.js";
import { uint16Encoder } from "ts-mls/codec/number.js";
import { composeBufferEncoders, encode } from "ts-mls/codec/tlsEncoder.js";
import { greaseCapabilities } from "ts-mls/grease.js";
import { ciphersuites } from "ts-mls";

const SUITE_ID = 1;
const SUITE_NAME = "MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519";

// ts-mls's "exports" hide its package.json; it sits two folders above the entry point (dist/src/index.js).
const TSMLS_VERSION = JSON.parse(
  readFileSync(fileURLToPath(new URL("../../package.json", import.meta.resolve("ts-mls"))), "utf8"),
).version;

const impl = await getCiphersuiteImpl(getCiphersuiteFromName(SUITE_NAME));

// ts-mls's defaultCapabilities() adds each of its 15 GREASE values (RFC 9420 §13.5) to the cipher
// suite, credential, extension and proposal lists with probability 0.1, so what a peer sees changes
// from run to run. The driver makes it deterministic: TSMLS_DRIVER_GREASE is that probability, 1 (all
// values, the default, so peers are always shown GREASE) or 0 (none).
const GREASE_PROBABILITY = Number(process.env.TSMLS_DRIVER_GREASE ?? "1");

function capabilities() {
  return greaseCapabilities(
    { probabilityPerGreaseValue: GREASE_PROBABILITY },
    { versions: ["mls10"], ciphersuites: Object.keys(ciphersuites), extensions: [], proposals: [], credentials: ["basic", "x509"] },
  );
}

class DriverError extends Error {}

/** name -> { identity: Uint8Array, keyPackages: [{pub, priv, ref}], state: ClientState | undefined } */
const clients = new Map();

// ---------------------------------------------------------------- helpers

function fromHex(value, field) {
  if (typeof value !== "string" || value.length % 2 !== 0 || !/^[0-9a-f]*$/.test(value)) {
    throw new DriverError(`field ${field} must be lowercase hex of even length`);
  }
  return Uint8Array.from(Buffer.from(value, "hex"));
}

function toHex(bytes) {
  return Buffer.from(bytes).toString("hex");
}

function bytesEqual(a, b) {
  return a.length === b.length && a.every((x, i) => x === b[i]);
}

function need(req, field) {
  if (req[field] === undefined) throw new DriverError(`missing field ${field}`);
  return req[field];
}

function client(req) {
  const name = need(req, "name");
  if (typeof name !== "string") throw new DriverError("name must be a string");
  let c = clients.get(name);
  if (c === undefined) {
    const identity = req.identity !== undefined ? fromHex(req.identity, "identity") : new TextEncoder().encode(name);
    c = { name, identity, keyPackages: [], state: undefined };
    clients.set(name, c);
  }
  return c;
}

function groupOf(req) {
  const c = client(req);
  if (c.state === undefined) throw new DriverError(`client ${c.name} has no group`);
  return c;
}

function activeGroupOf(req) {
  const c = groupOf(req);
  if (c.state.groupActiveState.kind !== "active") {
    throw new DriverError(`client ${c.name} is not an active member (${c.state.groupActiveState.kind})`);
  }
  return c;
}

function noGroupYet(c) {
  if (c.state !== undefined && c.state.groupActiveState.kind === "active") {
    throw new DriverError(`client ${c.name} already has a group`);
  }
}

/** Decodes a whole MLSMessage; trailing bytes are an error. */
function decodeMessage(hex, field, allowed) {
  const bytes = fromHex(hex, field);
  const res = decodeMlsMessage(bytes, 0);
  if (res === undefined) throw new DriverError(`${field}: cannot decode MLSMessage`);
  const [msg, used] = res;
  if (used !== bytes.length) throw new DriverError(`${field}: ${bytes.length - used} trailing bytes after MLSMessage`);
  if (msg.version !== "mls10") throw new DriverError(`${field}: unexpected protocol version ${msg.version}`);
  if (allowed !== undefined && !allowed.includes(msg.wireformat)) {
    throw new DriverError(`${field}: expected ${allowed.join(" or ")}, got ${msg.wireformat}`);
  }
  return msg;
}

function decodeTree(hex) {
  const bytes = fromHex(hex, "ratchet_tree");
  let res;
  try {
    res = decodeRatchetTree(bytes, 0);
  } catch (e) {
    throw new DriverError(`ratchet_tree: ${e.message}`);
  }
  if (res === undefined) throw new DriverError("ratchet_tree: cannot decode");
  if (res[1] !== bytes.length) throw new DriverError("ratchet_tree: trailing bytes");
  return res[0];
}

function encodeWelcome(welcome) {
  return toHex(encodeMlsMessage({ version: "mls10", wireformat: "mls_welcome", welcome }));
}

function wireOptions(req) {
  const encrypt = req.encrypt_handshake === true;
  return { wireAsPublicMessage: !encrypt, ratchetTreeExtension: req.ratchet_tree_extension !== false };
}

/** Leaf indices of the non-blank leaves whose Basic credential identity equals `identity`. */
function leavesWithIdentity(state, identity) {
  const found = [];
  state.ratchetTree.forEach((node, nodeIndex) => {
    if (nodeIndex % 2 === 0 && node !== undefined && node.nodeType === "leaf") {
      const cred = node.leaf.credential;
      if (cred.credentialType === "basic" && bytesEqual(cred.identity, identity)) found.push(nodeIndex / 2);
    }
  });
  return found;
}

function leafForIdentity(state, identity, what) {
  const found = leavesWithIdentity(state, identity);
  if (found.length !== 1) throw new DriverError(`${what}: ${found.length} members have that identity`);
  return found[0];
}

function members(state) {
  const out = [];
  state.ratchetTree.forEach((node, nodeIndex) => {
    if (nodeIndex % 2 === 0 && node !== undefined && node.nodeType === "leaf") {
      const cred = node.leaf.credential;
      out.push({
        leaf_index: nodeIndex / 2,
        identity: cred.credentialType === "basic" ? toHex(cred.identity) : null,
        signature_key: toHex(node.leaf.signaturePublicKey),
      });
    }
  });
  return out;
}

async function newKeyPackage(c) {
  const credential = { credentialType: "basic", identity: c.identity };
  const kp = await generateKeyPackage(credential, capabilities(), defaultLifetime, [], impl);
  const ref = await makeKeyPackageRef(kp.publicPackage, impl.hash);
  return { pub: kp.publicPackage, priv: kp.privatePackage, ref };
}

function commitResponse(c, result) {
  c.state = result.newState;
  const out = { commit: toHex(encodeMlsMessage(result.commit)), epoch: Number(c.state.groupContext.epoch) };
  if (result.welcome !== undefined) {
    out.welcome = encodeWelcome(result.welcome);
    out.ratchet_tree = toHex(encodeRatchetTree(c.state.ratchetTree));
  }
  return out;
}

// RFC 9420 §8.5 MLS-Exporter with a label given as raw bytes (ts-mls's mlsExporter takes a JS string).
async function exporterRawLabel(exporterSecret, label, context, length) {
  const prefix = new TextEncoder().encode("MLS 1.0 ");
  const expand = async (secret, fullLabel, ctx, len) => {
    const info = encode(composeBufferEncoders([uint16Encoder, varLenDataEncoder, varLenDataEncoder]))([len, fullLabel, ctx]);
    return impl.kdf.expand(secret, info, len);
  };
  const derived = await expand(exporterSecret, new Uint8Array([...prefix, ...label]), new Uint8Array(), impl.kdf.size);
  const hash = await impl.hash.digest(context);
  return expand(derived, new TextEncoder().encode("MLS 1.0 exported"), hash, length);
}

function removeTargets(req, state) {
  const targets = [];
  if (req.members !== undefined) {
    for (const m of req.members) targets.push(leafForIdentity(state, new TextEncoder().encode(m), `member ${m}`));
  }
  if (req.identities !== undefined) {
    for (const h of req.identities) targets.push(leafForIdentity(state, fromHex(h, "identities"), `identity ${h}`));
  }
  if (req.leaf_indices !== undefined) {
    for (const i of req.leaf_indices) {
      if (!Number.isInteger(i) || i < 0) throw new DriverError("leaf_indices must be non-negative integers");
      targets.push(i);
    }
  }
  if (targets.length === 0) throw new DriverError("remove needs members, leaf_indices or identities");
  return targets;
}

// ---------------------------------------------------------------- ops

const ops = {
  async hello() {
    return { impl: "ts-mls", version: TSMLS_VERSION, ciphersuites: [SUITE_ID] };
  },

  async key_package(req) {
    const suite = req.cipher_suite ?? SUITE_ID;
    if (suite !== SUITE_ID) throw new DriverError(`unsupported cipher suite ${suite} (driver offers ${SUITE_ID})`);
    const c = client(req);
    const kp = await newKeyPackage(c);
    c.keyPackages.push(kp);
    return { key_package: toHex(encodeMlsMessage({ version: "mls10", wireformat: "mls_key_package", keyPackage: kp.pub })) };
  },

  async create_group(req) {
    const c = client(req);
    noGroupYet(c);
    const groupId = fromHex(need(req, "group_id"), "group_id");
    const kp = await newKeyPackage(c);
    c.state = await createGroup(groupId, kp.pub, kp.priv, [], impl);
    return { epoch: Number(c.state.groupContext.epoch), leaf_index: c.state.privatePath.leafIndex };
  },

  async add(req) {
    const c = activeGroupOf(req);
    const kps = need(req, "key_packages");
    if (!Array.isArray(kps) || kps.length === 0) throw new DriverError("key_packages must be a non-empty list");
    const adds = kps.map((h) => ({
      proposalType: "add",
      add: { keyPackage: decodeMessage(h, "key_packages", ["mls_key_package"]).keyPackage },
    }));
    const result = await createCommit({ state: c.state, cipherSuite: impl }, { ...wireOptions(req), extraProposals: adds });
    return commitResponse(c, result);
  },

  async update(req) {
    const c = activeGroupOf(req);
    // An empty commit: pending by-reference proposals are left out, so it is a pure self-update.
    const state = { ...c.state, unappliedProposals: {} };
    const result = await createCommit({ state, cipherSuite: impl }, wireOptions(req));
    return commitResponse(c, result);
  },

  async commit(req) {
    const c = activeGroupOf(req);
    const result = await createCommit({ state: c.state, cipherSuite: impl }, wireOptions(req));
    return commitResponse(c, result);
  },

  async remove(req) {
    const c = activeGroupOf(req);
    const removes = removeTargets(req, c.state).map((i) => ({ proposalType: "remove", remove: { removed: i } }));
    const result = await createCommit({ state: c.state, cipherSuite: impl }, { ...wireOptions(req), extraProposals: removes });
    return commitResponse(c, result);
  },

  async propose_add(req) {
    const c = activeGroupOf(req);
    const kp = decodeMessage(need(req, "key_package"), "key_package", ["mls_key_package"]).keyPackage;
    const res = await createProposal(c.state, wireOptions(req).wireAsPublicMessage, { proposalType: "add", add: { keyPackage: kp } }, impl);
    c.state = res.newState;
    return { proposal: toHex(encodeMlsMessage(res.message)) };
  },

  async propose_remove(req) {
    const c = activeGroupOf(req);
    let target;
    if (req.leaf_index !== undefined) target = req.leaf_index;
    else if (req.identity !== undefined) target = leafForIdentity(c.state, fromHex(req.identity, "identity"), "identity");
    else if (req.member !== undefined) target = leafForIdentity(c.state, new TextEncoder().encode(req.member), `member ${req.member}`);
    else throw new DriverError("propose_remove needs leaf_index, identity or member");
    const res = await createProposal(c.state, wireOptions(req).wireAsPublicMessage, { proposalType: "remove", remove: { removed: target } }, impl);
    c.state = res.newState;
    return { proposal: toHex(encodeMlsMessage(res.message)) };
  },

  async join(req) {
    const c = client(req);
    noGroupYet(c);
    const welcome = decodeMessage(need(req, "welcome"), "welcome", ["mls_welcome"]).welcome;
    const tree = req.ratchet_tree !== undefined ? decodeTree(req.ratchet_tree) : undefined;
    const idx = c.keyPackages.findIndex((kp) => welcome.secrets.some((s) => bytesEqual(s.newMember, kp.ref)));
    if (idx < 0) throw new DriverError(`the Welcome names none of ${c.name}'s ${c.keyPackages.length} KeyPackages`);
    const kp = c.keyPackages[idx];
    c.state = await joinGroup(welcome, kp.pub, kp.priv, emptyPskIndex, impl, tree);
    c.keyPackages.splice(idx, 1); // a KeyPackage is used once
    return {
      epoch: Number(c.state.groupContext.epoch),
      group_id: toHex(c.state.groupContext.groupId),
      leaf_index: c.state.privatePath.leafIndex,
    };
  },

  async external_join(req) {
    const c = client(req);
    noGroupYet(c);
    const gi = decodeMessage(need(req, "group_info"), "group_info", ["mls_group_info"]).groupInfo;
    const tree = req.ratchet_tree !== undefined ? decodeTree(req.ratchet_tree) : undefined;
    const kp = await newKeyPackage(c);
    const res = await joinGroupExternal(gi, kp.pub, kp.priv, false, impl, tree);
    c.state = res.newState;
    return {
      commit: toHex(encodeMlsMessage({ version: "mls10", wireformat: "mls_public_message", publicMessage: res.publicMessage })),
      epoch: Number(c.state.groupContext.epoch),
      group_id: toHex(c.state.groupContext.groupId),
      leaf_index: c.state.privatePath.leafIndex,
    };
  },

  async protect(req) {
    const c = activeGroupOf(req);
    const data = fromHex(need(req, "data"), "data");
    const aad = req.aad !== undefined ? fromHex(req.aad, "aad") : undefined;
    const res = await createApplicationMessage(c.state, data, impl, aad);
    c.state = res.newState;
    return { message: toHex(encodeMlsMessage({ version: "mls10", wireformat: "mls_private_message", privateMessage: res.privateMessage })) };
  },

  async process(req) {
    const c = groupOf(req);
    const msg = decodeMessage(need(req, "message"), "message", ["mls_public_message", "mls_private_message"]);
    const contentType = msg.wireformat === "mls_public_message" ? msg.publicMessage.content.contentType : msg.privateMessage.contentType;
    const before = c.state.groupContext.epoch;
    const res = await processMessage(msg, c.state, makePskIndex(c.state, {}), acceptAll, impl);
    c.state = res.newState;
    if (res.kind === "applicationMessage") return { application_data: toHex(res.message) };
    if (contentType === "proposal") return { proposal_stored: true };
    if (c.state.groupActiveState.kind === "removedFromGroup") return { removed: true, commit_applied: true };
    if (c.state.groupContext.epoch !== before + 1n) throw new DriverError("commit did not advance the epoch");
    return { commit_applied: true, epoch: Number(c.state.groupContext.epoch) };
  },

  async export(req) {
    const c = groupOf(req);
    const context = fromHex(need(req, "context"), "context");
    const length = need(req, "length");
    if (!Number.isInteger(length) || length < 0 || length > 65535) throw new DriverError("length must be 0..65535");
    let secret;
    if (req.label !== undefined) {
      secret = await mlsExporter(c.state.keySchedule.exporterSecret, req.label, context, length, impl);
    } else {
      const label = fromHex(need(req, "label_hex"), "label_hex");
      secret = await exporterRawLabel(c.state.keySchedule.exporterSecret, label, context, length);
    }
    return { secret: toHex(secret) };
  },

  async epoch_authenticator(req) {
    const c = groupOf(req);
    return { epoch_authenticator: toHex(c.state.keySchedule.epochAuthenticator) };
  },

  async state(req) {
    const c = groupOf(req);
    const s = c.state;
    return {
      epoch: Number(s.groupContext.epoch),
      group_id: toHex(s.groupContext.groupId),
      leaf_index: s.privatePath.leafIndex,
      tree_hash: toHex(s.groupContext.treeHash),
      epoch_authenticator: toHex(s.keySchedule.epochAuthenticator),
      members: members(s),
      active: s.groupActiveState.kind === "active",
    };
  },

  async group_info(req) {
    const c = activeGroupOf(req);
    const gi = await createGroupInfoWithExternalPubAndRatchetTree(c.state, [], impl);
    return { group_info: toHex(encodeMlsMessage({ version: "mls10", wireformat: "mls_group_info", groupInfo: gi })) };
  },

  async ratchet_tree(req) {
    const c = groupOf(req);
    return { ratchet_tree: toHex(encodeRatchetTree(c.state.ratchetTree)) };
  },
};

// ---------------------------------------------------------------- loop

async function handle(line) {
  let req;
  try {
    req = JSON.parse(line);
  } catch (e) {
    return { ok: false, error: `bad JSON: ${e.message}` };
  }
  if (req === null || typeof req !== "object" || Array.isArray(req)) return { ok: false, error: "request must be a JSON object" };
  const echo = req.id !== undefined ? { id: req.id } : {};
  const op = ops[req.op];
  if (typeof req.op !== "string" || op === undefined || !Object.hasOwn(ops, req.op)) {
    return { ...echo, ok: false, error: `unsupported op ${JSON.stringify(req.op)}` };
  }
  const started = process.hrtime.bigint();
  const startedCpu = process.cpuUsage();
  try {
    const out = { ...echo, ok: true, ...(await op(req)) };
    // The handler's own time (docs/interop.md: optional elapsed_us, cpu_us), without the JSON lines.
    out.elapsed_us = Math.round(Number(process.hrtime.bigint() - started) / 1000);
    const cpu = process.cpuUsage(startedCpu);
    out.cpu_us = cpu.user + cpu.system;
    return out;
  } catch (e) {
    const kind = e instanceof DriverError ? "" : `${e?.constructor?.name ?? "Error"}: `;
    if (!(e instanceof DriverError)) process.stderr.write(`tsmls_driver: ${req.op} failed: ${e?.stack ?? e}\n`);
    return { ...echo, ok: false, error: `${kind}${e?.message ?? String(e)}` };
  }
}

const rl = createInterface({ input: process.stdin, crlfDelay: Infinity });
let chain = Promise.resolve();
rl.on("line", (line) => {
  if (line.trim() === "") return;
  // Requests are handled strictly one after another so that responses come out in order.
  chain = chain.then(async () => {
    const res = await handle(line);
    process.stdout.write(JSON.stringify(res) + "\n");
  });
});
rl.on("close", () => {
  chain.then(() => process.exit(0));
});
