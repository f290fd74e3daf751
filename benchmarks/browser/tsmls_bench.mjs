// ts-mls (npm, an independent RFC 9420 implementation) measured in a browser
// module worker: the same MLS rows benchmarks/browser_bench.py measures for
// Ping's engine in Pyodide, in the same Chromium, on the same cipher suite
// (MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519; in a browser ts-mls does its
// Ed25519, X25519 and AES-GCM through WebCrypto).
//
// esbuild bundles this file (browser_bench.py does it, into the served copy
// of dist/); the page starts it with `new Worker(url, {type: "module"})` and
// posts {n, reps, passes}; the worker answers {ok: [{row: ms}, ...]} (one per pass) or {error}.
//
// The operations match Ping's (benchmarks/mls_e2e_ops.py): handshakes as
// PrivateMessages (Ping's default), Welcomes with the ratchet tree, a
// KeyPackage made with an existing signature key (a fresh init key and leaf
// key, two signatures), and every message encoded to bytes and decoded back
// (Ping's calls take and return bytes).
import {
  acceptAll,
  createApplicationMessage,
  createCommit,
  createGroup,
  decodeMlsMessage,
  defaultCapabilities,
  defaultLifetime,
  emptyPskIndex,
  encodeMlsMessage,
  generateKeyPackageWithKey,
  getCiphersuiteFromName,
  getCiphersuiteImpl,
  joinGroup,
  makePskIndex,
  processMessage,
} from "ts-mls";

const SUITE = "MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519";
const WIRE = { wireAsPublicMessage: false, ratchetTreeExtension: true };

function now() {
  return performance.now();
}

function median(values) {
  const s = [...values].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

// Median over `reps` samples of the mean of `batch` calls (the worker's clock
// is coarse: 100 us without cross-origin isolation), like mls_e2e_ops.py.
async function medianMs(fn, reps, batch = 10) {
  const samples = [];
  for (let r = 0; r < reps; r++) {
    const t0 = now();
    for (let i = 0; i < batch; i++) await fn();
    samples.push((now() - t0) / batch);
  }
  return median(samples);
}

function roundTrip(message) {
  const bytes = encodeMlsMessage(message);
  const decoded = decodeMlsMessage(bytes, 0);
  if (decoded === undefined || decoded[1] !== bytes.length) throw new Error("cannot decode our own message");
  return decoded[0];
}

async function member(name, impl) {
  const credential = { credentialType: "basic", identity: new TextEncoder().encode(name) };
  const keys = await impl.signature.keygen();
  const keyPackage = () => generateKeyPackageWithKey(credential, defaultCapabilities(), defaultLifetime, [], keys, impl);
  return { keyPackage };
}

async function run({ n = 100, reps = 9 }) {
  const impl = await getCiphersuiteImpl(getCiphersuiteFromName(SUITE));
  const out = {};
  const alice = await member("alice", impl);
  const bob = await member("bob", impl);
  await alice.keyPackage();
  out["KeyPackage generation"] = await medianMs(() => alice.keyPackage(), reps);

  // 100 B protect + unprotect in a group of two.
  const kpA = await alice.keyPackage();
  const kpB = await bob.keyPackage();
  let stateA = await createGroup(new TextEncoder().encode("two"), kpA.publicPackage, kpA.privatePackage, [], impl);
  const add = await createCommit(
    { state: stateA, cipherSuite: impl },
    { ...WIRE, extraProposals: [{ proposalType: "add", add: { keyPackage: kpB.publicPackage } }] },
  );
  stateA = add.newState;
  const welcome = roundTrip({ version: "mls10", wireformat: "mls_welcome", welcome: add.welcome }).welcome;
  let stateB = await joinGroup(welcome, kpB.publicPackage, kpB.privatePackage, emptyPskIndex, impl);
  const payload = new Uint8Array(100).fill(0x6d);
  const protectUnprotect = async () => {
    const sent = await createApplicationMessage(stateA, payload, impl);
    stateA = sent.newState;
    const msg = roundTrip({ version: "mls10", wireformat: "mls_private_message", privateMessage: sent.privateMessage });
    const got = await processMessage(msg, stateB, makePskIndex(stateB, {}), acceptAll, impl);
    stateB = got.newState;
    if (got.kind !== "applicationMessage" || got.message.length !== 100) throw new Error("round trip failed");
  };
  await protectUnprotect();
  out["protect+unprotect 100 B"] = await medianMs(protectUnprotect, reps);

  // A group of n built by ONE commit of the creator, and the last joiner's join.
  const members = [];
  for (let i = 0; i < n; i++) members.push(await member(`member ${i}`, impl));
  const packages = [];
  for (const m of members) packages.push(await m.keyPackage());
  let creator = await createGroup(
    new TextEncoder().encode("big"), packages[0].publicPackage, packages[0].privatePackage, [], impl,
  );
  let t0 = now();
  const big = await createCommit(
    { state: creator, cipherSuite: impl },
    {
      ...WIRE,
      extraProposals: packages.slice(1).map((p) => ({ proposalType: "add", add: { keyPackage: p.publicPackage } })),
    },
  );
  const bigWelcome = encodeMlsMessage({ version: "mls10", wireformat: "mls_welcome", welcome: big.welcome });
  out[`group of ${n}: one add commit`] = now() - t0;
  creator = big.newState;
  const last = packages[n - 1];
  t0 = now();
  const w = decodeMlsMessage(bigWelcome, 0)[0].welcome;
  let joined = await joinGroup(w, last.publicPackage, last.privatePackage, emptyPskIndex, impl);
  out[`group of ${n}: join`] = now() - t0;

  // A self-update by the creator (fresh tree: its path secrets go to ~n-1 leaves) and its processing.
  t0 = now();
  const update = await createCommit({ state: { ...creator, unappliedProposals: {} }, cipherSuite: impl }, WIRE);
  const updateBytes = encodeMlsMessage(update.commit);
  out[`group of ${n}: self-update commit`] = now() - t0;
  creator = update.newState;
  t0 = now();
  const msg = decodeMlsMessage(updateBytes, 0)[0];
  const processed = await processMessage(msg, joined, makePskIndex(joined, {}), acceptAll, impl);
  out[`group of ${n}: process it`] = now() - t0;
  joined = processed.newState;
  if (joined.groupContext.epoch !== creator.groupContext.epoch) throw new Error("the update did not apply");
  return out;
}

// `passes` runs of the whole suite in this worker, all reported (browser_bench.py
// takes each row's best, as on Ping's side).
self.onmessage = async (event) => {
  try {
    const params = event.data ?? {};
    const out = [];
    for (let i = 0; i < (params.passes ?? 1); i++) out.push(await run(params));
    self.postMessage({ ok: out });
  } catch (e) {
    self.postMessage({ error: `${e && e.name}: ${e && e.message}` });
  }
};
