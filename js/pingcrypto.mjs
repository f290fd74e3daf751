// The noble crypto module that Python calls synchronously inside Pyodide.
//
// esbuild bundles this file into dist/pingcrypto.mjs (workers ignore import
// maps and noble imports bare specifiers). The worker (and the Node test
// harness) registers it with `pyodide.registerJsModule("pingcrypto", mod)`;
// pyodide_app/crypto.py is its only caller.
//
// Every crossing of the Python/JS boundary costs a few microseconds, and the
// Python -> JS direction copies, so each operation takes ONE buffer that Python
// concatenated (fixed-size fields first) and returns one Uint8Array.
// Failures that callers must tell apart (a bad signature, a ciphertext that
// does not authenticate, a low-order X25519 point) come back as `false` /
// `undefined`, never as exceptions: Python maps them to its own errors.
import { ed25519, x25519 } from "@noble/curves/ed25519.js";
import { bytesToNumberLE } from "@noble/curves/utils.js";
import { gcm } from "@noble/ciphers/aes.js";
import { sha512 } from "@noble/hashes/sha2.js";
// The WebCrypto helpers of pyodide_app/webcrypto.py ride in the same bundle
// (pingcrypto.webcrypto in Python): one module to build and register.
export * as webcrypto from "./pingwebcrypto.mjs";

const ED_SECRET = 32;
const ED_PUBLIC = 32;
const ED_SIG = 64;
const X_LEN = 32;
const GCM_KEY = 16;
const GCM_NONCE = 12;
// RFC 8032 / FIPS 186-5 decoding rules, like OpenSSL: no ZIP-215 leniency.
const STRICT = { zip215: false };
// Signing keys expanded once (SHA-512 of the seed and a base-point
// multiplication, half the cost of a signature): MLS signs with the same key
// over and over. Bounded; cleared when full, like the pyca backend's caches.
const ED_CACHE_LIMIT = 64;
const edCache = new Map();
const Fn = ed25519.Point.Fn;
const BASE = ed25519.Point.BASE;
// crypto.getRandomValues refuses more than 65536 bytes per call.
const RANDOM_CHUNK = 65536;

export const version = "1";

/** `n` bytes from crypto.getRandomValues (a CSPRNG in browsers and Node). */
export function randomBytes(n) {
  const out = new Uint8Array(n);
  for (let off = 0; off < n; off += RANDOM_CHUNK) {
    globalThis.crypto.getRandomValues(out.subarray(off, Math.min(n, off + RANDOM_CHUNK)));
  }
  return out;
}

function keyPair(secret, pub) {
  const out = new Uint8Array(secret.length + pub.length);
  out.set(secret, 0);
  out.set(pub, secret.length);
  secret.fill(0);
  return out;
}

// -- Ed25519 ---------------------------------------------------------------

/** A fresh key pair as seed(32) || public(32). */
export function ed25519Keygen() {
  const seed = randomBytes(ED_SECRET);
  return keyPair(seed, ed25519.getPublicKey(seed));
}

function expanded(seed) {
  const id = String.fromCharCode.apply(null, seed);
  let ext = edCache.get(id);
  if (ext === undefined) {
    const { prefix, scalar, pointBytes } = ed25519.utils.getExtendedPublicKey(seed.slice());
    ext = { prefix, scalar, pointBytes };
    if (edCache.size >= ED_CACHE_LIMIT) edCache.clear();
    edCache.set(id, ext);
  }
  return ext;
}

function concat(...parts) {
  let n = 0;
  for (const p of parts) n += p.length;
  const out = new Uint8Array(n);
  let off = 0;
  for (const p of parts) {
    out.set(p, off);
    off += p.length;
  }
  return out;
}

const modL = (bytes) => Fn.create(bytesToNumberLE(bytes));

/** The public key of a 32-byte seed. */
export function ed25519Public(seed) {
  return expanded(seed).pointBytes.slice();
}

/**
 * buf = seed(32) || message: the 64-byte signature (RFC 8032 section 5.1.6,
 * as noble's ed25519.sign, with the expanded key cached).
 */
export function ed25519Sign(buf) {
  const { prefix, scalar, pointBytes } = expanded(buf.subarray(0, ED_SECRET));
  const msg = buf.subarray(ED_SECRET);
  const r = modL(sha512(concat(prefix, msg)));
  const R = BASE.multiply(r).toBytes();
  const k = modL(sha512(concat(R, pointBytes, msg)));
  const s = Fn.create(r + k * scalar);
  return concat(R, Fn.toBytes(s));
}

/**
 * buf = public(32) || signature(64) || message: true when it verifies.
 *
 * The cofactorLESS equation of RFC 8032 §5.1.7 as OpenSSL (pyca) and WebCrypto
 * check it: encode([S]B - [k]A) must equal R byte for byte. noble's own verify
 * uses the cofactored equation, which also accepts signatures whose R carries a
 * small-order component; a member could then craft a message that browsers on
 * noble accept and every other client refuses, and split the group.
 */
export function ed25519Verify(buf) {
  try {
    const pub = buf.subarray(0, ED_PUBLIC);
    const r = buf.subarray(ED_PUBLIC, ED_PUBLIC + 32);
    const s = bytesToNumberLE(buf.subarray(ED_PUBLIC + 32, ED_PUBLIC + ED_SIG));
    const msg = buf.subarray(ED_PUBLIC + ED_SIG);
    if (s >= Fn.ORDER) return false;
    const A = ed25519.Point.fromBytes(pub, STRICT.zip215);
    if (A.isSmallOrder()) return false;
    const k = Fn.create(bytesToNumberLE(sha512(concat(r, pub, msg))));
    const R = BASE.multiplyUnsafe(s).subtract(A.multiplyUnsafe(k));
    return equalBytes(R.toBytes(), r);
  } catch (e) {
    return false;
  }
}

function equalBytes(a, b) {
  if (a.length !== b.length) return false;
  let diff = 0;
  for (let i = 0; i < a.length; i++) diff |= a[i] ^ b[i];
  return diff === 0;
}

// -- X25519 ----------------------------------------------------------------

/** A fresh key pair as scalar(32) || public(32). */
export function x25519Keygen() {
  const secret = randomBytes(X_LEN);
  return keyPair(secret, x25519.getPublicKey(secret));
}

/** The public key of a 32-byte scalar. */
export function x25519Public(secret) {
  return x25519.getPublicKey(secret);
}

/** buf = scalar(32) || public(32): the shared secret, or undefined for a low-order point. */
export function x25519Shared(buf) {
  try {
    return x25519.getSharedSecret(buf.subarray(0, X_LEN), buf.subarray(X_LEN));
  } catch (e) {
    // noble refuses the low-order points whose shared secret is all zero.
    return undefined;
  }
}

// -- AES-128-GCM -----------------------------------------------------------

function gcmOf(buf, aadLen) {
  const key = buf.subarray(0, GCM_KEY);
  const nonce = buf.subarray(GCM_KEY, GCM_KEY + GCM_NONCE);
  const aad = buf.subarray(GCM_KEY + GCM_NONCE, GCM_KEY + GCM_NONCE + aadLen);
  return [gcm(key, nonce, aad), buf.subarray(GCM_KEY + GCM_NONCE + aadLen)];
}

/** buf = key(16) || nonce(12) || aad || plaintext: ciphertext || tag(16). */
export function gcmSeal(buf, aadLen) {
  const [cipher, plaintext] = gcmOf(buf, aadLen);
  return cipher.encrypt(plaintext);
}

/** buf = key(16) || nonce(12) || aad || ciphertext||tag: the plaintext, or undefined. */
export function gcmOpen(buf, aadLen) {
  try {
    const [cipher, ciphertext] = gcmOf(buf, aadLen);
    return cipher.decrypt(ciphertext);
  } catch (e) {
    return undefined;
  }
}
