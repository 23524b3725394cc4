/**
 * broker/verify-pool.ts: the worker-thread verification pool and AsyncEnvelopeChecker.
 *
 * - Verdict equality: a randomized stream over 50 devices (valid, tampered, non-canonical, unknown
 *   key, revoked and revoked mid-stream, replays, gaps, late deliveries, chain breaks, clock skew,
 *   wrong topic, plain and malformed payloads, forgers re-sending devices' envelopes from other
 *   clients), all submitted at once: every verdict and the final state equal EnvelopeChecker's.
 * - Ordering: with a verifier that answers in random order, each client's results resolve in
 *   arrival order and the verdicts still match.
 * - Shutdown and worker crashes: jobs re-run or reject, nothing hangs.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { EnvelopeChecker, type EnvelopeResult, type KeyLookup } from '../../broker/envelope-check.js';
import { AsyncEnvelopeChecker, VerifyPool, type SignatureVerifier, type VerifyJob, type VerifyOutcome } from '../../broker/verify-pool.js';
import { verifyCode, VERIFY_CODES } from '../../broker/verify-worker.js';
import { decodeEnvelope, envelopeHash, GENESIS_PREV, signEnvelope, type EnvelopeClaims } from '../../shared/envelope/index.js';
import { sigStructure } from '../../shared/envelope/cose-sign1.js';
import { deviceKid, keyHash } from '../../shared/keys/key-id.js';
import { L, publicKeyFromSeed, sign } from '../../shared/keys/ed25519.js';
import { Rng } from '../../simulator/rng.js';

/** Deterministic random numbers in [0, 1) (the simulator's generator). */
function rng(seed: number): () => number {
  const r = Rng.fromSeed('test', String(seed));
  return () => r.next();
}

const NOW0 = 1_700_000_000_000;
const DEVICES = 50;

interface Msg {
  client: string;
  topic: string;
  payload: Uint8Array;
  now: number;
  nowU: number;
  /** Applied to the key registry before the message arrives. */
  revoke?: string;
}

class Registry implements KeyLookup {
  readonly keys = new Map<string, { pk: Uint8Array; hash: string; revoked: boolean }>();
  lookup(deviceId: string, kh: Uint8Array): ReturnType<KeyLookup['lookup']> {
    const k = this.keys.get(deviceId);
    if (!k || k.hash !== Buffer.from(kh).toString('hex')) return { status: 'unknown' };
    return { status: k.revoked ? 'revoked' : 'active', publicKey: k.pk };
  }
}

function addToS(sig: Uint8Array): Uint8Array {
  // S + L: same signature equation, non-canonical encoding (rejected by the strict rules).
  const out = new Uint8Array(sig);
  let carry = 0n;
  let l = L;
  for (let i = 32; i < 64; i++) {
    const v = BigInt(out[i]!) + (l & 0xffn) + carry;
    out[i] = Number(v & 0xffn);
    carry = v >> 8n;
    l >>= 8n;
  }
  return out;
}

function makeStream(seed: number, length: number): { registry: () => Registry; msgs: Msg[] } {
  const r = rng(seed);
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(r() * xs.length)]!;
  const devices = Array.from({ length: DEVICES }, (_, d) => {
    const s = new Uint8Array(32).map((_, i) => (i * 31 + d * 7 + seed) & 0xff);
    const id = `dev-${d}`;
    const pk = publicKeyFromSeed(s);
    return { id, seed: s, pk, kid: deviceKid(id, pk), topic: `site/${d % 7}/dev-${d}`, client: `client-${d % 20}`, next: 0, prev: GENESIS_PREV, sent: [] as Uint8Array[], held: [] as Uint8Array[] };
  });
  const registry = (): Registry => {
    const reg = new Registry();
    // dev-45..47 revoked from the start, dev-48/49 never registered.
    for (const d of devices.slice(0, 48)) reg.keys.set(d.id, { pk: d.pk, hash: Buffer.from(keyHash(d.id, d.pk)).toString('hex'), revoked: Number(d.id.slice(4)) >= 45 });
    return reg;
  };
  const msgs: Msg[] = [];
  let now = NOW0;
  for (let k = 0; k < length; k++) {
    now += Math.floor(r() * 20);
    const d = pick(devices);
    const roll = r();
    const msg = (payload: Uint8Array, extra: Partial<Msg> = {}): void => {
      msgs.push({ client: r() < 0.05 ? `forger-${Math.floor(r() * 3)}` : d.client, topic: d.topic, payload, now, nowU: 5, ...extra });
    };
    const fresh = (o: { prev?: Uint8Array; time?: number; skip?: number } = {}): Uint8Array => {
      d.next += o.skip ?? 0;
      const claims: EnvelopeClaims = { time: o.time ?? now - Math.floor(r() * 50), uncertainty: 10, timeSource: 'ntp', seq: d.next, prev: o.prev ?? d.prev, topic: d.topic };
      const env = signEnvelope({ seed: d.seed, kid: d.kid, claims, payload: new TextEncoder().encode(`{"n":${k}}`) });
      d.next++;
      d.prev = envelopeHash(env);
      d.sent.push(env);
      return env;
    };
    if (roll < 0.5) msg(fresh());
    else if (roll < 0.56) {
      // A gap now, the skipped ones delivered later (out-of-order), or never.
      const skipped = fresh();
      d.held.push(skipped);
      msg(fresh());
    } else if (roll < 0.62 && d.held.length) msg(d.held.shift()!);
    else if (roll < 0.67 && d.sent.length) msg(pick(d.sent)); // replay
    else if (roll < 0.7) msg(fresh({ prev: new Uint8Array(32).fill(7) })); // chain break
    else if (roll < 0.72) msg(fresh({ time: now + 60_000 })); // clock skew (ahead)
    else if (roll < 0.74) msg(fresh({ time: now - 3_600_000 })); // late
    else if (roll < 0.76) msg(fresh({ skip: 3 }));
    else if (roll < 0.8) {
      // Tampered payload byte: invalid signature.
      const env = new Uint8Array(fresh());
      const p = decodeEnvelope(env).payload;
      env[p.byteOffset + 1] = env[p.byteOffset + 1]! ^ 0x20;
      msg(env);
    } else if (roll < 0.82) {
      const env = new Uint8Array(fresh());
      env.set(addToS(env.subarray(env.length - 64)), env.length - 64);
      msg(env);
    } else if (roll < 0.84) {
      // Signature of other bytes.
      const env = new Uint8Array(fresh());
      env.set(sign(d.seed, Uint8Array.of(1, 2, 3)), env.length - 64);
      msg(env);
    } else if (roll < 0.87 && d.sent.length) msg(pick(d.sent), { topic: 'elsewhere/x' }); // wrong topic
    else if (roll < 0.89) msg(new TextEncoder().encode(`plain ${k}`));
    else if (roll < 0.91) msg(Uint8Array.of(0xd2, 0x84, 0x41, 0x00, 0xff));
    else if (roll < 0.92 && k > length / 2) msg(fresh(), { revoke: d.id });
    else msg(fresh());
  }
  return { registry, msgs };
}

function runSync(reg: Registry, msgs: Msg[]): { results: EnvelopeResult[]; snapshot: unknown } {
  const c = new EnvelopeChecker({ keys: reg });
  const results = msgs.map((m) => {
    if (m.revoke) reg.keys.get(m.revoke)?.revoked === false && (reg.keys.get(m.revoke)!.revoked = true);
    return c.check(m.topic, m.payload, m.now, m.nowU);
  });
  return { results, snapshot: c.snapshot() };
}

/** Submits every message at once (in arrival order); returns results and per-client resolution order. */
async function runAsync(reg: Registry, msgs: Msg[], pool: SignatureVerifier): Promise<{ results: EnvelopeResult[]; snapshot: unknown; order: Map<string, number[]> }> {
  const c = new AsyncEnvelopeChecker({ keys: reg, pool });
  const order = new Map<string, number[]>();
  const ps = msgs.map((m, i) => {
    if (m.revoke) reg.keys.get(m.revoke)?.revoked === false && (reg.keys.get(m.revoke)!.revoked = true);
    return c.check(m.client, m.topic, m.payload, m.now, m.nowU).then((res) => {
      let o = order.get(m.client);
      if (!o) order.set(m.client, (o = []));
      o.push(i);
      return res;
    });
  });
  const results = await Promise.all(ps);
  assert.equal(c.pending, 0);
  return { results, snapshot: c.snapshot(), order };
}

/** Verifies on the main thread but answers after a random delay: completion order is random. */
function shuffledVerifier(seed: number): SignatureVerifier {
  const r = rng(seed);
  return {
    verifyOne(job: VerifyJob): Promise<VerifyOutcome> {
      const msg = 'envelope' in job ? sigStructure(job.envelope.protectedBytes, job.envelope.payload) : job.message;
      const sig = 'envelope' in job ? job.envelope.signature : job.signature;
      const code = verifyCode(job.publicKey, msg, sig);
      return new Promise((resolve) => setTimeout(() => resolve(code === 0 ? null : VERIFY_CODES[code - 1]!), Math.floor(r() * 8)));
    },
  };
}

function verdictCounts(rs: EnvelopeResult[]): Record<string, number> {
  const out: Record<string, number> = {};
  for (const x of rs) out[x.verdict] = (out[x.verdict] ?? 0) + 1;
  return out;
}

test('AsyncEnvelopeChecker on the pool: the same verdict per message and the same final state as EnvelopeChecker', async () => {
  const pool = new VerifyPool({ threads: 2, batchMax: 8 });
  try {
    for (const seed of [1, 2]) {
      const { registry, msgs } = makeStream(seed, 1500);
      const want = runSync(registry(), msgs);
      const got = await runAsync(registry(), msgs, pool);
      const counts = verdictCounts(want.results);
      for (const v of ['valid', 'invalid', 'unknown-key', 'revoked', 'replayed', 'gap', 'out-of-order', 'chain-break', 'clock-skew', 'wrong-topic', 'missing', 'malformed']) {
        assert.ok((counts[v] ?? 0) > 0, `the stream exercises ${v}: ${JSON.stringify(counts)}`);
      }
      assert.ok(want.results.some((x) => x.late !== undefined), 'late deliveries present');
      assert.ok(new Set(want.results.map((x) => x.reason).filter((x) => x?.startsWith('WITNESS_ERR_SIGNATURE'))).size === 2, 'both invalid-signature codes');
      for (let i = 0; i < msgs.length; i++) assert.deepEqual(got.results[i], want.results[i], `message ${i}`);
      assert.deepEqual(got.snapshot, want.snapshot);
    }
    const st = pool.stats();
    assert.ok(st.batches > 0 && st.batches < st.jobs, `jobs were batched: ${JSON.stringify(st)}`);
  } finally {
    await pool.close();
  }
});

test('per-client order: results resolve in arrival order whatever order signatures finish in', async () => {
  for (const seed of [3, 4, 5]) {
    const { registry, msgs } = makeStream(seed, 600);
    const want = runSync(registry(), msgs);
    const got = await runAsync(registry(), msgs, shuffledVerifier(seed));
    for (let i = 0; i < msgs.length; i++) assert.deepEqual(got.results[i], want.results[i], `seed ${seed} message ${i}`);
    assert.deepEqual(got.snapshot, want.snapshot);
    for (const [client, idx] of got.order) {
      assert.deepEqual(idx, [...idx].sort((a, b) => a - b), `client ${client} resolved out of arrival order`);
    }
  }
});

test('per-device order across clients: a forger interleaving from another client cannot reorder the chain', async () => {
  // One device, two clients; the later message's signature finishes first.
  const seed = new Uint8Array(32).fill(9);
  const pk = publicKeyFromSeed(seed);
  const reg = new Registry();
  reg.keys.set('d', { pk, hash: Buffer.from(keyHash('d', pk)).toString('hex'), revoked: false });
  const kid = deviceKid('d', pk);
  const e0 = signEnvelope({ seed, kid, claims: { time: NOW0, uncertainty: 1, timeSource: 'ntp', seq: 0, prev: GENESIS_PREV, topic: 't' }, payload: new Uint8Array(1) });
  const e1 = signEnvelope({ seed, kid, claims: { time: NOW0, uncertainty: 1, timeSource: 'ntp', seq: 1, prev: envelopeHash(e0), topic: 't' }, payload: new Uint8Array(1) });
  let n = 0;
  const slowFirst: SignatureVerifier = {
    verifyOne: () => new Promise((resolve) => setTimeout(() => resolve(null), n++ === 0 ? 30 : 0)),
  };
  const c = new AsyncEnvelopeChecker({ keys: reg, pool: slowFirst });
  const [a, b] = await Promise.all([c.check('owner', 't', e0, NOW0, 1), c.check('forger', 't', e1, NOW0, 1)]);
  assert.equal(a.verdict, 'valid');
  assert.equal(b.verdict, 'valid');
  assert.equal(c.lastSeq('d'), 1);
});

function jobs(count: number): { jobs: VerifyJob[]; expect: VerifyOutcome[] } {
  const seed = new Uint8Array(32).fill(3);
  const pk = publicKeyFromSeed(seed);
  const out: VerifyJob[] = [];
  const expect: VerifyOutcome[] = [];
  for (let i = 0; i < count; i++) {
    const message = new TextEncoder().encode(`message ${i}`);
    const signature = sign(seed, message);
    if (i % 5 === 4) signature[0] = signature[0]! ^ 1;
    out.push({ publicKey: pk, signature, message });
    expect.push(i % 5 === 4 ? 'WITNESS_ERR_SIGNATURE_INVALID' : null);
  }
  return { jobs: out, expect };
}

test('VerifyPool: raw jobs, odd inputs, main-thread share', async () => {
  const { jobs: js, expect } = jobs(300);
  const pool = new VerifyPool({ threads: 1, batchMax: 16, mainThread: 'when-busy' });
  try {
    assert.deepEqual(await pool.verify(js), expect);
    // A short key is rejected before any arithmetic, on the main thread, with verifyOrThrow's code.
    assert.deepEqual(await pool.verify([{ publicKey: new Uint8Array(31), signature: new Uint8Array(64), message: new Uint8Array(1) }]), ['WITNESS_ERR_KEY_INVALID']);
    assert.deepEqual(await pool.verify([{ publicKey: new Uint8Array(32), signature: new Uint8Array(64), message: new Uint8Array(1) }]), ['WITNESS_ERR_KEY_WEAK']);
    const st = pool.stats();
    assert.ok(st.mainJobs > 0, 'the main thread verified while the worker was busy');
  } finally {
    await pool.close();
  }
});

test('VerifyPool lazy: no worker until the first job, then the same outcomes', async () => {
  const { jobs: js, expect } = jobs(40);
  const pool = new VerifyPool({ threads: 1, lazy: true });
  try {
    assert.equal(pool.started, false, 'a broker whose publishes carry no envelopes starts no thread');
    assert.deepEqual(await pool.verify(js), expect);
    assert.equal(pool.started, true);
    assert.equal(pool.stats().mainJobs, 0, 'verified on the worker');
  } finally {
    await pool.close();
  }
  const closed = new VerifyPool({ threads: 1, lazy: true });
  await closed.close(); // closing a pool that never started does not hang
  assert.equal(closed.started, false);
});

test('VerifyPool: close() rejects what is pending and later calls, and does not hang', async () => {
  const { jobs: js } = jobs(200);
  const pool = new VerifyPool({ threads: 1, batchMax: 4, inflightPerWorker: 1 });
  const ps = js.map((j) => pool.verifyOne(j).then(() => 'ok', (e: Error) => e.message));
  await new Promise((r) => setTimeout(r, 5));
  await pool.close();
  const outcomes = await Promise.all(ps);
  assert.ok(outcomes.includes('verify pool: closed'), 'pending jobs rejected');
  assert.ok(outcomes.every((o) => o === 'ok' || o === 'verify pool: closed'));
  await assert.rejects(pool.verifyOne(js[0]!), /closed/);
  await pool.close(); // idempotent
});

test('VerifyPool: a worker terminated or crashing mid-batch: jobs are re-run on a replacement', async () => {
  const { jobs: js, expect } = jobs(400);
  // Two failures may hit one job (terminated, then re-run on the worker that is made to crash).
  const pool = new VerifyPool({ threads: 2, batchMax: 16, maxAttempts: 3 });
  try {
    const p = pool.verify(js);
    await new Promise((r) => setTimeout(r, 2));
    await pool.terminateWorker(0);
    pool.crashWorker(0);
    assert.deepEqual(await p, expect);
    const st = pool.stats();
    assert.ok(st.crashes >= 1, JSON.stringify(st));
    assert.equal(st.failed, 0);
    assert.deepEqual(await pool.verify(js.slice(0, 20)), expect.slice(0, 20), 'the pool still works');
  } finally {
    await pool.close();
  }
});

test('VerifyPool: with maxAttempts 1 a crash fails the jobs it held cleanly; the rest complete', async () => {
  const { jobs: js, expect } = jobs(400);
  const pool = new VerifyPool({ threads: 1, batchMax: 32, maxAttempts: 1 });
  try {
    const ps = js.map((j) => pool.verifyOne(j).then((v) => v, () => 'failed'));
    await new Promise((r) => setTimeout(r, 2));
    await pool.terminateWorker(0);
    const got = await Promise.all(ps);
    let failed = 0;
    for (let i = 0; i < got.length; i++) {
      if (got[i] === 'failed') failed++;
      else assert.equal(got[i], expect[i]);
    }
    assert.equal(failed, pool.stats().failed);
    assert.ok(got.some((g) => g !== 'failed'));
  } finally {
    await pool.close();
  }
});

test('AsyncEnvelopeChecker: a failed verification rejects its check only; the client continues', async () => {
  const { registry, msgs } = makeStream(7, 200);
  let calls = 0;
  const flaky: SignatureVerifier = {
    verifyOne: (job) => (calls++ === 3 ? Promise.reject(new Error('boom')) : shuffledVerifier(1).verifyOne(job)),
  };
  const c = new AsyncEnvelopeChecker({ keys: registry(), pool: flaky });
  const all = Promise.allSettled(msgs.map((m) => c.check(m.client, m.topic, m.payload, m.now, m.nowU)));
  assert.ok(c.pending > 0);
  await c.drain();
  assert.equal(c.pending, 0);
  const settled = await all;
  assert.equal(settled.filter((s) => s.status === 'rejected').length, 1);
  assert.equal(c.pending, 0);
});
