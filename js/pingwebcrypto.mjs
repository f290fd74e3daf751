// WebCrypto helpers for pyodide_app/webcrypto.py (Ed25519, X25519, AES-128-GCM).
//
// Re-exported by js/pingcrypto.mjs as its `webcrypto` namespace, so the
// esbuild bundle the worker (and the Node test harness) registers as the JS
// module "pingcrypto" carries it: Python reaches it as `pingcrypto.webcrypto`.
// It imports only @noble/hashes (HKDF-Expand for the sender-data key of
// `edSealPrivate*`, which runs inside the same promise as the signature).
//
// Every function returns a Promise. Python waits for it with
// `pyodide.ffi.run_sync` (JSPI), which only works when Python was entered
// asynchronously; the provider checks that first and uses noble otherwise.
//
// Keys are CryptoKey objects. importKey is async and costs 3-45 us, so the
// functions that import a key resolve to `[key, result]` and Python caches
// `key` per key bytes; the hot calls take the cached key. Each call takes ONE
// buffer that Python concatenated (fixed-size fields first): every Python ->
// JS crossing copies and costs microseconds.
//
// Failures reject (OperationError, DataError...). Python does not trust a
// rejection to say why; it re-runs the operation through noble, which returns
// the result or raises the right ping_core.errors class. Only `edVerify*`
// resolve to a verdict (`false` for a signature that does not verify).
//
// Python calls them through `start` (the end of this file), which hands the
// outcome to a Python callback instead of returning the promise: Pyodide turns
// a returned promise into an asyncio Future whose completion waits for event
// loop turns (macrotasks), which is most of what a crossing cost.

import { expand as hkdfExpand } from "@noble/hashes/hkdf.js";
import { sha256 } from "@noble/hashes/sha2.js";

const subtle = globalThis.crypto?.subtle;

// PKCS #8 PrivateKeyInfo for a raw 32-byte key (RFC 8410): SEQUENCE {
// version 0, AlgorithmIdentifier {OID 1.3.101.112 Ed25519 | 1.3.101.110
// X25519}, OCTET STRING { OCTET STRING (32 bytes) } }: a fixed 16-byte prefix.
const PKCS8_ED25519 = Uint8Array.from([
  0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20,
]);
const PKCS8_X25519 = Uint8Array.from([
  0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x6e, 0x04, 0x22, 0x04, 0x20,
]);
const KEY_LEN = 32;
const SIG_LEN = 64;
const GCM_KEY = 16;
const GCM_NONCE = 12;
const ED25519 = { name: "Ed25519" };
const X25519 = { name: "X25519" };
const AES_GCM = { name: "AES-GCM" };
// X25519 of the base point u = 9 is the public key of a scalar.
const BASE_POINT = new Uint8Array(KEY_LEN);
BASE_POINT[0] = 9;
let basePointKey = null;

/** True when this runtime has crypto.subtle (secure contexts only). */
export function available() {
  return subtle !== undefined && typeof subtle.importKey === "function";
}

function pkcs8(prefix, raw) {
  const der = new Uint8Array(prefix.length + KEY_LEN);
  der.set(prefix, 0);
  der.set(raw, prefix.length);
  return der;
}

function randomKey() {
  return globalThis.crypto.getRandomValues(new Uint8Array(KEY_LEN));
}

function concat(a, b) {
  const out = new Uint8Array(a.length + b.byteLength);
  out.set(a, 0);
  out.set(new Uint8Array(b), a.length);
  return out;
}

function base64urlDecode(text) {
  const bin = atob(text.replace(/-/g, "+").replace(/_/g, "/"));
  const out = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
  return out;
}

// -- Ed25519 ---------------------------------------------------------------

// Extractable only so that the public key can be read from its JWK ("x"):
// WebCrypto has no "public key of this private key" call. Python holds the
// seed anyway.
function edImportKey(seed) {
  return subtle.importKey("pkcs8", pkcs8(PKCS8_ED25519, seed), ED25519, true, ["sign"]);
}

async function edPublicOf(key) {
  return base64urlDecode((await subtle.exportKey("jwk", key)).x);
}

async function edImport(seed) {
  const key = await edImportKey(seed);
  return [key, await edPublicOf(key)];
}

/** seed(32) -> [private key, public(32)]. */
export function edPrivate(seed) {
  return edImport(seed);
}

/** private key -> public(32). */
export function edPublic(key) {
  return edPublicOf(key);
}

/** -> [private key, seed(32) || public(32)] for a fresh random seed. */
export async function edKeygen() {
  const seed = randomKey();
  const [key, pub] = await edImport(seed);
  const out = concat(seed, pub);
  seed.fill(0);
  return [key, out];
}

/** (private key, message) -> the 64-byte RFC 8032 signature (an ArrayBuffer). */
export function edSign(key, message) {
  return subtle.sign(ED25519, key, message);
}

/** seed(32) || message -> [private key, signature(64)]: a first signature with a new key. */
export async function edSignImport(buf) {
  const key = await edImportKey(buf.subarray(0, KEY_LEN));
  return [key, await subtle.sign(ED25519, key, buf.subarray(KEY_LEN))];
}

/** (public key, signature(64) || message) -> true when it verifies. */
export function edVerify(key, buf) {
  return subtle.verify(ED25519, key, buf.subarray(0, SIG_LEN), buf.subarray(SIG_LEN));
}

/** public(32) || signature(64) || message -> [public key, verdict]. */
export async function edVerifyImport(buf) {
  const key = await subtle.importKey("raw", buf.subarray(0, KEY_LEN), ED25519, false, ["verify"]);
  return [key, await edVerify(key, buf.subarray(KEY_LEN))];
}

// -- X25519 ----------------------------------------------------------------

function xPrivateKey(scalar) {
  return subtle.importKey("pkcs8", pkcs8(PKCS8_X25519, scalar), X25519, false, ["deriveBits"]);
}

function xPublicKey(u) {
  return subtle.importKey("raw", u, X25519, false, []);
}

// Rejects (OperationError) when the result is all zero (a low-order point).
function derive(privateKey, publicKey) {
  return subtle.deriveBits({ name: "X25519", public: publicKey }, privateKey, KEY_LEN * 8);
}

async function xPublicOf(key) {
  if (basePointKey === null) basePointKey = await xPublicKey(BASE_POINT);
  return derive(key, basePointKey);
}

/** scalar(32) -> [private key, public(32)]. */
export async function xPrivate(scalar) {
  const key = await xPrivateKey(scalar);
  return [key, await xPublicOf(key)];
}

/** private key -> its public key (an ArrayBuffer). */
export function xPublic(key) {
  return xPublicOf(key);
}

/**
 * -> [private key, scalar(32) || public(32)] for a fresh key pair made by WebCrypto.
 *
 * generateKey and two exports, not importKey of our own random scalar and a
 * DH with the base point: measured in a Chromium 156 worker, 60-65 us against
 * 100-130 us for one pair, and 130-195 us against 0.5-1.8 ms for two pairs at
 * once (a KeyPackage). The scalar is read from the PKCS #8 export (RFC 8410:
 * the fixed 16-byte prefix, then the 32 bytes); any other layout rejects, and
 * Python then asks noble.
 */
export async function xKeygen() {
  const pair = await subtle.generateKey(X25519, true, ["deriveBits"]);
  const [pub, der] = await Promise.all([
    subtle.exportKey("raw", pair.publicKey),
    subtle.exportKey("pkcs8", pair.privateKey),
  ]);
  const pkcs8 = new Uint8Array(der);
  const n = PKCS8_X25519.length;
  const layout = pkcs8.length === n + KEY_LEN && PKCS8_X25519.every((byte, i) => pkcs8[i] === byte);
  if (!layout || pub.byteLength !== KEY_LEN) {
    pkcs8.fill(0);
    throw new DOMException("unexpected X25519 export", "DataError");
  }
  const out = new Uint8Array(2 * KEY_LEN);
  out.set(pkcs8.subarray(n), 0);
  out.set(new Uint8Array(pub), KEY_LEN);
  pkcs8.fill(0);
  return [pair.privateKey, out];
}

/** (private key, public(32)) -> the shared secret (an ArrayBuffer). */
export async function xDh(key, pub) {
  return derive(key, await xPublicKey(pub));
}

/** scalar(32) || public(32) -> [private key, shared secret]. */
export async function xDhImport(buf) {
  const [key, peer] = await Promise.all([xPrivateKey(buf.subarray(0, KEY_LEN)), xPublicKey(buf.subarray(KEY_LEN))]);
  return [key, await derive(key, peer)];
}

// -- AES-128-GCM -----------------------------------------------------------

function gcm(buf, aadLen, usage) {
  const key = buf.subarray(0, GCM_KEY);
  const iv = buf.subarray(GCM_KEY, GCM_KEY + GCM_NONCE);
  const additionalData = buf.subarray(GCM_KEY + GCM_NONCE, GCM_KEY + GCM_NONCE + aadLen);
  const data = buf.subarray(GCM_KEY + GCM_NONCE + aadLen);
  // MLS derives a fresh key per message: importing a raw AES key costs ~2 us,
  // no cache.
  return subtle
    .importKey("raw", key, AES_GCM, false, [usage])
    .then((k) => subtle[usage]({ name: "AES-GCM", iv, additionalData, tagLength: 128 }, k, data));
}

/** key(16) || nonce(12) || aad || plaintext -> ciphertext || tag(16). */
export function gcmSeal(buf, aadLen) {
  return gcm(buf, aadLen, "encrypt");
}

/** key(16) || nonce(12) || aad || ciphertext||tag -> plaintext; rejects if it does not authenticate. */
export function gcmOpen(buf, aadLen) {
  return gcm(buf, aadLen, "decrypt");
}

// -- batches -----------------------------------------------------------------
//
// The MLS engine has many independent operations at once (a commit's path
// secrets to ~N leaves, a Welcome to N joiners, a tree of N signed leaves).
// Each call from Python costs one JSPI stack switch (far more than the
// operation itself), so these take a whole batch in ONE buffer and answer it
// behind ONE promise. Per item they report a status instead of rejecting:
// Python re-runs a failed item through noble, as for the single calls.

function u32At(buf, offset) {
  return new DataView(buf.buffer, buf.byteOffset + offset, 4).getUint32(0, true);
}

/**
 * `n` items of public(32) || signature(64) || u32le message length || message
 * -> Uint8Array(n): 1 verifies, 0 does not, 2 WebCrypto rejected (Python decides).
 */
export async function edVerifyMany(buf, n) {
  const jobs = [];
  let off = 0;
  for (let i = 0; i < n; i++) {
    const pub = buf.subarray(off, off + KEY_LEN);
    const sig = buf.subarray(off + KEY_LEN, off + KEY_LEN + SIG_LEN);
    const len = u32At(buf, off + KEY_LEN + SIG_LEN);
    const start = off + KEY_LEN + SIG_LEN + 4;
    const msg = buf.subarray(start, start + len);
    off = start + len;
    jobs.push(
      subtle
        .importKey("raw", pub, ED25519, false, ["verify"])
        .then((key) => subtle.verify(ED25519, key, sig, msg))
        .then(
          (ok) => (ok ? 1 : 0),
          () => 2,
        ),
    );
  }
  return Uint8Array.from(await Promise.all(jobs));
}

/**
 * `n` X25519 public keys (32 bytes each) -> n x (status(1) || ephemeral public(32) || shared(32)):
 * for each, a fresh ephemeral key pair (its private key never leaves WebCrypto) and
 * its DH with that key (RFC 9180 Encap needs nothing else). Status 1: done; 0: rejected
 * (an all-zero shared secret or anything else: Python asks noble, which says why).
 */
export async function xEncapMany(buf) {
  const n = buf.length / KEY_LEN;
  const jobs = [];
  for (let i = 0; i < n; i++) {
    const peer = buf.subarray(i * KEY_LEN, (i + 1) * KEY_LEN);
    jobs.push(
      Promise.all([subtle.generateKey(X25519, false, ["deriveBits"]), xPublicKey(peer)])
        .then(([pair, peerKey]) => Promise.all([subtle.exportKey("raw", pair.publicKey), derive(pair.privateKey, peerKey)]))
        .catch(() => null),
    );
  }
  const results = await Promise.all(jobs);
  const out = new Uint8Array(n * (1 + 2 * KEY_LEN));
  results.forEach((r, i) => {
    if (r === null) return;
    const at = i * (1 + 2 * KEY_LEN);
    out[at] = 1;
    out.set(new Uint8Array(r[0]), at + 1);
    out.set(new Uint8Array(r[1]), at + 1 + KEY_LEN);
  });
  return out;
}

/**
 * `n` items of key(16) || nonce(12) || u32le aad length || u32le plaintext length || aad || plaintext
 * -> the ciphertexts (each plaintext length + 16) concatenated in order; rejects if any fails.
 */
export async function gcmSealMany(buf, n) {
  const jobs = [];
  let off = 0;
  for (let i = 0; i < n; i++) {
    const key = buf.subarray(off, off + GCM_KEY);
    const iv = buf.subarray(off + GCM_KEY, off + GCM_KEY + GCM_NONCE);
    const aadLen = u32At(buf, off + GCM_KEY + GCM_NONCE);
    const ptLen = u32At(buf, off + GCM_KEY + GCM_NONCE + 4);
    const start = off + GCM_KEY + GCM_NONCE + 8;
    const additionalData = buf.subarray(start, start + aadLen);
    const data = buf.subarray(start + aadLen, start + aadLen + ptLen);
    off = start + aadLen + ptLen;
    jobs.push(
      subtle
        .importKey("raw", key, AES_GCM, false, ["encrypt"])
        .then((k) => subtle.encrypt({ name: "AES-GCM", iv, additionalData, tagLength: 128 }, k, data)),
    );
  }
  const parts = await Promise.all(jobs);
  const out = new Uint8Array(parts.reduce((sum, p) => sum + p.byteLength, 0));
  let at = 0;
  for (const p of parts) {
    out.set(new Uint8Array(p), at);
    at += p.byteLength;
  }
  return out;
}

/** -> n x (scalar(32) || public(32)) for fresh random scalars (two per KeyPackage). */
export async function xKeygenMany(n) {
  const pairs = await Promise.all(Array.from({ length: n }, () => xKeygen()));
  const out = new Uint8Array(n * 2 * KEY_LEN);
  pairs.forEach(([, both], i) => {
    out.set(both, i * 2 * KEY_LEN);
    both.fill(0);
  });
  return out;
}

/**
 * One KeyPackage's whole public-key work behind ONE promise: `nKeys` fresh X25519
 * pairs, then each template signed in order after the splices wrote into it the
 * public key of a pair (src >= 0) or the signature of an earlier template
 * (src < 0: template -src-1). Layout of `buf`: u32le nKeys, nTemplates, nSplices;
 * nTemplates x u32le length; nSplices x (u32le template, u32le offset, i32le src);
 * the templates. -> nKeys x (scalar(32) || public(32)) || nTemplates x signature(64).
 */
async function signTemplates(key, buf) {
  const view = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  const nKeys = view.getUint32(0, true);
  const nTemplates = view.getUint32(4, true);
  const nSplices = view.getUint32(8, true);
  let at = 12;
  const lens = [];
  for (let i = 0; i < nTemplates; i++, at += 4) lens.push(view.getUint32(at, true));
  const splices = [];
  for (let i = 0; i < nSplices; i++, at += 12) {
    splices.push([view.getUint32(at, true), view.getUint32(at + 4, true), view.getInt32(at + 8, true)]);
  }
  const templates = lens.map((len) => {
    const t = buf.slice(at, at + len);
    at += len;
    return t;
  });
  const pairs = await Promise.all(Array.from({ length: nKeys }, () => xKeygen()));
  const sigs = [];
  for (let i = 0; i < nTemplates; i++) {
    for (const [t, offset, src] of splices) {
      if (t !== i) continue;
      templates[i].set(src >= 0 ? pairs[src][1].subarray(KEY_LEN) : sigs[-src - 1], offset);
    }
    sigs.push(new Uint8Array(await subtle.sign(ED25519, key, templates[i])));
  }
  const out = new Uint8Array(nKeys * 2 * KEY_LEN + nTemplates * SIG_LEN);
  pairs.forEach(([, both], i) => {
    out.set(both, i * 2 * KEY_LEN);
    both.fill(0);
  });
  sigs.forEach((sig, i) => out.set(sig, nKeys * 2 * KEY_LEN + i * SIG_LEN));
  return out;
}

/** (private key, layout above) -> keys || signatures. */
export function edSignTemplates(key, buf) {
  return signTemplates(key, buf);
}

/** seed(32) || layout above -> [private key, keys || signatures]: with a new key. */
export async function edSignTemplatesImport(buf) {
  const key = await edImportKey(buf.subarray(0, KEY_LEN));
  return [key, await signTemplates(key, buf.subarray(KEY_LEN))];
}

// -- a PrivateMessage's protection -------------------------------------------------
//
// RFC 9420 §6.3 in ONE call: the signature, the content's AES-GCM encryption with
// the signature written into its plaintext, the sender-data key and nonce
// (HKDF-Expand, RFC 5869, of @noble/hashes, over a context made of the first Nh
// bytes of that ciphertext) and the sender data's encryption. Python's reference
// is ping_core/mls/crypto/provider.py (compose_sign_and_encrypt).

const SAMPLE_LEN = 32; // KDF.Nh of SHA-256: the ciphertext_sample (RFC 9420 §6.3.2)
const SEAL_FIELDS = 9;

/** `n` u32le lengths at 0, then key(16) || nonce(12) || the n fields: their views, in order. */
function sealFields(buf) {
  const view = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  let at = SEAL_FIELDS * 4;
  const take = (len) => buf.subarray(at, (at += len));
  const key = take(GCM_KEY);
  const nonce = take(GCM_NONCE);
  const out = [key, nonce];
  for (let i = 0; i < SEAL_FIELDS; i++) out.push(take(view.getUint32(i * 4, true)));
  if (at !== buf.length) throw new DOMException("malformed seal request", "DataError");
  return out;
}

async function gcmEncrypt(key, iv, additionalData, data) {
  const k = await subtle.importKey("raw", key, AES_GCM, false, ["encrypt"]);
  return new Uint8Array(await subtle.encrypt({ name: "AES-GCM", iv, additionalData, tagLength: 128 }, k, data));
}

/**
 * (Ed25519 private key, u32le x 9 lengths || key(16) || nonce(12) || secret || message || aad || head || tail
 * || key label || nonce label || sender-data aad || sender data) -> signature(64) || ciphertext || encrypted sender data.
 */
async function sealPrivate(signKey, buf) {
  const [key, nonce, secret, message, aad, head, tail, keyLabel, nonceLabel, sdAad, sd] = sealFields(buf);
  const signature = new Uint8Array(await subtle.sign(ED25519, signKey, message));
  const plaintext = new Uint8Array(head.length + SIG_LEN + tail.length);
  plaintext.set(head, 0);
  plaintext.set(signature, head.length);
  plaintext.set(tail, head.length + SIG_LEN);
  const ciphertext = await gcmEncrypt(key, nonce, aad, plaintext);
  plaintext.fill(0);
  const sample = ciphertext.subarray(0, SAMPLE_LEN);
  const info = (label) => {
    const out = new Uint8Array(label.length + 1 + sample.length);
    out.set(label, 0);
    out[label.length] = sample.length; // opaque<V> of at most 32 bytes: a one-byte length
    out.set(sample, label.length + 1);
    return out;
  };
  const sdKey = hkdfExpand(sha256, secret, info(keyLabel), GCM_KEY);
  const sdNonce = hkdfExpand(sha256, secret, info(nonceLabel), GCM_NONCE);
  const sealed = await gcmEncrypt(sdKey, sdNonce, sdAad, sd);
  sdKey.fill(0);
  buf.fill(0); // it held the keys and the secret
  const out = new Uint8Array(SIG_LEN + ciphertext.length + sealed.length);
  out.set(signature, 0);
  out.set(ciphertext, SIG_LEN);
  out.set(sealed, SIG_LEN + ciphertext.length);
  return out;
}

/** (private key, layout above) -> signature || ciphertext || encrypted sender data. */
export function edSealPrivate(key, buf) {
  return sealPrivate(key, buf);
}

/** seed(32) || layout above -> [private key, signature || ciphertext || encrypted sender data]. */
export async function edSealPrivateImport(buf) {
  const key = await edImportKey(buf.subarray(0, KEY_LEN));
  const out = await sealPrivate(key, buf.subarray(KEY_LEN));
  buf.fill(0);
  return [key, out];
}

// -- the crossing --------------------------------------------------------------
//
// `run_sync(promise)` in Pyodide 314 waits for an asyncio Future of the WebLoop:
// the promise settles, the Future schedules its done callbacks with call_soon
// (a macrotask), and only then does the suspended stack resume: at least one
// event-loop turn per crossing, 140 us to several ms on a loaded machine.
// `start` instead runs a helper and passes its outcome to `settle` (a Python
// callable), which completes a Future whose callbacks run at once
// (pyodide_app/webcrypto.py): the stack resumes in the same microtask
// checkpoint, with no event-loop turn.

/** The crossing protocol this module speaks (pyodide_app/webcrypto.py checks it). */
export const crossing = "settle-1";

const OPS = {
  edPrivate,
  edPublic,
  edKeygen,
  edSign,
  edSignImport,
  edVerify,
  edVerifyImport,
  xPrivate,
  xPublic,
  xKeygen,
  xDh,
  xDhImport,
  gcmSeal,
  gcmOpen,
  edVerifyMany,
  xEncapMany,
  gcmSealMany,
  xKeygenMany,
  edSignTemplates,
  edSignTemplatesImport,
  edSealPrivate,
  edSealPrivateImport,
};

/**
 * Run helper `name` on (a, b) and call settle(slot, true, value) when it resolves or
 * settle(slot, false, undefined) when it rejects or throws (an unknown name too).
 * Never throws; always settles exactly once (a promise's reactions run once).
 */
export function start(slot, name, settle, a, b) {
  new Promise((resolve) => resolve(OPS[name](a, b))).then(
    (value) => settle(slot, true, value),
    () => settle(slot, false, undefined),
  );
}
