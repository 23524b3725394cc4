/**
 * Envelope verification spread over worker threads (issue 7: envelope `enforce` at ≥ 1.0× one
 * core of node:crypto, without reordering one client's messages).
 *
 * Two layers:
 *
 * - `VerifyPool`: the expensive, stateless step only — strict Ed25519 verification
 *   (shared/keys/ed25519.ts `verifyOrThrow`) of a Sig_structure under a public key — on worker
 *   threads (broker/verify-worker.ts). Jobs submitted in the same tick, by any client, are
 *   coalesced; each batch is packed into one ArrayBuffer and sent with one postMessage
 *   (transferred, not cloned). A worker holds at most `inflightPerWorker` batches; while every
 *   worker is full, jobs queue and the next free worker takes up to `batchMax` of them, so batches
 *   grow with the load and stay at one job when the pool is idle (no added latency). Optionally
 *   (`mainThread: 'when-busy'`) the main thread verifies small chunks itself while every worker is
 *   full. A crashed worker's batches are re-run on a replacement (`maxAttempts` tries per job, then
 *   the job's promise rejects); if workers keep dying without ever answering, the pool degrades to
 *   verifying on the main thread — never a hang.
 *
 * - `AsyncEnvelopeChecker`: the verdicts of broker/envelope-check.ts `EnvelopeChecker`, exactly,
 *   with the signature step on the pool. `check()` does the cheap pre-verify part at once (decode,
 *   kid, key lookup — so a revocation applies from the message's arrival, as in the synchronous
 *   checker), sends the signature to the pool, and applies the post-verify part (topic,
 *   sequence/chain state, time) in arrival order per client and per device: a per-client and a
 *   per-device promise chain, so a later message whose signature finishes first waits.
 *
 * The pre- and post-verify parts are EnvelopeChecker's own (envelope-check.ts preVerify and
 * EnvelopeChecker.postVerify): one set of rules; the tests still compare the two checkers verdict
 * by verdict and state by state on randomized streams.
 *
 * Measurements behind the defaults (bench/verify-pool.ts, 2-core AMD EPYC shared with other jobs,
 * load 5–13; details in docs/BENCHMARKS.md "Envelope verification pool"):
 * - postMessage round trip with a worker wake-up ≈ 25–55 µs per batch, ≈ 0.6–0.7 µs per job in a
 *   batch of 64: unbatched, the pool does 0.60–0.83× the synchronous checker's checks per
 *   CPU-second, batched 0.8–1.0×. Hence coalescing and `batchMax` 16.
 * - Main-thread CPU per enveloped publish: 194–235 µs synchronous, 18–19 µs here without the
 *   verify (decode, SHA-256, lookup, promise chains, chain state).
 * - Sharing the verifying with the main thread (`mainThread`) paid only when a core was idle, and
 *   costs the event loop 150–200 µs per check: off by default.
 */
import { Worker } from 'node:worker_threads';
import { availableParallelism } from 'node:os';
import type { Envelope } from '../shared/envelope/index.js';
import { headLength, writeHead, MT_BYTES } from '../shared/cbor/encode.js';
import { sigStructure } from '../shared/envelope/cose-sign1.js';
import type { EnvelopeVerdictName } from './records.js';
import { EnvelopeChecker, preVerify, type DeviceChainState, type EnvelopeCheckOptions, type EnvelopeResult, type KeyLookup } from './envelope-check.js';
import {
  JOB_OVERHEAD,
  PUBLIC_KEY_BYTES,
  SIGNATURE_BYTES,
  VERIFY_CODES,
  VERIFY_OK,
  verifyCode,
  type BatchReply,
  type BatchRequest,
} from './verify-worker.js';

// ── the pool ────────────────────────────────────────────────────────────────────────────────────

/** A signature to check: the signed bytes themselves, or a decoded envelope (its Sig_structure). */
export type VerifyJob =
  | { publicKey: Uint8Array; signature: Uint8Array; message: Uint8Array }
  | { publicKey: Uint8Array; envelope: Envelope };

/** null: the signature verifies; otherwise the WitnessError code verifyOrThrow throws. */
export type VerifyOutcome = string | null;

export interface VerifyPoolOptions {
  /** Worker threads. Default os.availableParallelism() - 1, at least 1. */
  threads?: number;
  /**
   * Most jobs per batch (one postMessage). Default 16: a batch of 16 costs ≈ 2.5 µs of transport
   * per job (≈ 40 µs round trip, measured) and ≈ 1.3 ms of worker time at 12 k verifies/s, which
   * bounds the latency a backlog adds; 64 measured no more efficient (bench/verify-pool.ts).
   */
  batchMax?: number;
  /**
   * Wait up to this long for more jobs before sending a batch smaller than batchMax to a worker
   * that already has one in flight. Default 0: a free worker gets whatever is queued at once.
   */
  batchDelayMs?: number;
  /**
   * Batches in flight per worker (pipelining hides the postMessage round trip). Default 2, or 1
   * with mainThread 'when-busy' (so that jobs queue, for the main thread to share, as soon as every
   * worker has one batch).
   */
  inflightPerWorker?: number;
  /**
   * 'when-busy': while every worker is full, the main thread verifies queued jobs itself, a chunk
   * per event-loop turn (a work-sharing fallback that uses the core the workers leave; it takes
   * time from whatever else the main thread runs). Default 'off'.
   */
  mainThread?: 'off' | 'when-busy';
  /** Jobs the main thread verifies per turn of the event loop in 'when-busy'. Default 4 (≈ 0.4 ms). */
  mainChunk?: number;
  /** Tries per job when workers crash, before its promise rejects. Default 2. */
  maxAttempts?: number;
  /** Start the workers at the first job rather than at construction. Default false. */
  lazy?: boolean;
}

export interface VerifyPoolStats {
  jobs: number;
  batches: number;
  /** Jobs verified on the main thread (mainThread 'when-busy', odd-sized inputs, degraded mode). */
  mainJobs: number;
  crashes: number;
  retried: number;
  failed: number;
  degraded: boolean;
}

interface Job {
  pk: Uint8Array;
  sig: Uint8Array;
  /** The Sig_structure, or (envelope jobs) its parts, written straight into the batch. */
  message?: Uint8Array;
  prot?: Uint8Array;
  payload?: Uint8Array;
  len: number;
  attempts: number;
  resolve: (v: VerifyOutcome) => void;
  reject: (e: Error) => void;
}

interface Slot {
  worker: Worker;
  inflight: Map<number, Job[]>;
  answered: boolean;
}

const WORKER_URL = new URL('./verify-worker.js', import.meta.url);
// "Signature1" as CBOR text, after the array(4) head: the fixed start of every Sig_structure.
const SIG1_PREFIX = Uint8Array.of(0x84, 0x6a, 0x53, 0x69, 0x67, 0x6e, 0x61, 0x74, 0x75, 0x72, 0x65, 0x31);
const MAX_CONSECUTIVE_CRASHES = 3;

function outcome(code: number): VerifyOutcome {
  if (code === VERIFY_OK) return null;
  return VERIFY_CODES[code - 1] ?? 'verify: unexpected error';
}

export class VerifyPool {
  readonly threads: number;
  readonly #batchMax: number;
  readonly #batchDelayMs: number;
  readonly #cap: number;
  readonly #main: boolean;
  readonly #mainChunk: number;
  readonly #maxAttempts: number;
  readonly #slots: Slot[] = [];
  #queue: Job[] = [];
  #head = 0;
  #nextId = 1;
  #pumpScheduled = false;
  #mainScheduled = false;
  #delayTimer: NodeJS.Timeout | undefined;
  #closed = false;
  #crashStreak = 0;
  readonly #stats: VerifyPoolStats = { jobs: 0, batches: 0, mainJobs: 0, crashes: 0, retried: 0, failed: 0, degraded: false };

  constructor(o: VerifyPoolOptions = {}) {
    this.threads = Math.max(1, Math.floor(o.threads ?? availableParallelism() - 1));
    this.#batchMax = Math.max(1, Math.floor(o.batchMax ?? 16));
    this.#batchDelayMs = Math.max(0, o.batchDelayMs ?? 0);
    this.#main = o.mainThread === 'when-busy';
    this.#cap = Math.max(1, Math.floor(o.inflightPerWorker ?? (this.#main ? 1 : 2)));
    this.#mainChunk = Math.max(1, Math.floor(o.mainChunk ?? 4));
    this.#maxAttempts = Math.max(1, Math.floor(o.maxAttempts ?? 2));
    if (!o.lazy) this.#start();
  }

  #started = false;
  #start(): void {
    this.#started = true;
    for (let i = 0; i < this.threads; i++) this.#spawn();
  }

  /** Whether the worker threads have been started (a lazy pool starts them at its first job). */
  get started(): boolean {
    return this.#started;
  }

  /** Verifies every job; outcomes in the order of `jobs`. */
  verify(jobs: readonly VerifyJob[]): Promise<VerifyOutcome[]> {
    return Promise.all(jobs.map((j) => this.verifyOne(j)));
  }

  /** Verifies one job (coalesced with the others submitted in the same tick). */
  verifyOne(job: VerifyJob): Promise<VerifyOutcome> {
    if (this.#closed) return Promise.reject(new Error('verify pool: closed'));
    if (!this.#started) this.#start();
    this.#stats.jobs++;
    const pk = job.publicKey;
    const sig = 'envelope' in job ? job.envelope.signature : job.signature;
    if (!(pk instanceof Uint8Array) || pk.length !== PUBLIC_KEY_BYTES || !(sig instanceof Uint8Array) || sig.length !== SIGNATURE_BYTES || this.#stats.degraded) {
      // Not packable (verifyOrThrow rejects it before any curve arithmetic), or no workers left.
      this.#stats.mainJobs++;
      const message = 'envelope' in job ? sigStructure(job.envelope.protectedBytes, job.envelope.payload) : job.message;
      return Promise.resolve(outcome(verifyCode(pk, message, sig)));
    }
    return new Promise<VerifyOutcome>((resolve, reject) => {
      let j: Job;
      if ('envelope' in job) {
        const prot = job.envelope.protectedBytes;
        const payload = job.envelope.payload;
        const len = SIG1_PREFIX.length + headLength(prot.length) + prot.length + 1 + headLength(payload.length) + payload.length;
        j = { pk, sig, prot, payload, len, attempts: 0, resolve, reject };
      } else {
        j = { pk, sig, message: job.message, len: job.message.length, attempts: 0, resolve, reject };
      }
      this.#queue.push(j);
      this.#schedulePump();
    });
  }

  /** Jobs waiting for a worker (not yet sent). */
  get queued(): number {
    return this.#queue.length - this.#head;
  }

  stats(): VerifyPoolStats {
    return { ...this.#stats };
  }

  /** Terminates the workers; jobs not yet answered reject. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    if (this.#delayTimer) clearTimeout(this.#delayTimer);
    const err = new Error('verify pool: closed');
    for (let i = this.#head; i < this.#queue.length; i++) this.#queue[i]!.reject(err);
    this.#queue = [];
    this.#head = 0;
    const slots = this.#slots.splice(0);
    for (const s of slots) for (const jobs of s.inflight.values()) for (const j of jobs) j.reject(err);
    await Promise.all(slots.map((s) => s.worker.terminate()));
  }

  /** Test hook: makes worker `i` throw (an uncaught error: the worker exits). */
  crashWorker(i = 0): void {
    this.#slots[i]?.worker.postMessage({ crash: true });
  }

  /** Test hook: terminates worker `i` from outside, as the OS might kill it. */
  terminateWorker(i = 0): Promise<number> {
    return this.#slots[i]?.worker.terminate() ?? Promise.resolve(0);
  }

  /** Bench hook: one round trip of a `n`-job batch of `bytes` message bytes each, not verified. */
  async transportRoundTrip(n: number, bytes: number): Promise<void> {
    const slot = this.#slots[0];
    if (!slot) throw new Error('verify pool: no worker');
    const buf = new ArrayBuffer(n * (JOB_OVERHEAD + bytes));
    const id = this.#nextId++;
    await new Promise<void>((resolve) => {
      const onMessage = (m: BatchReply): void => {
        if (m.id !== id) return;
        slot.worker.off('message', onMessage);
        resolve();
      };
      slot.worker.on('message', onMessage);
      const req: BatchRequest = { id, buf, n, dry: true };
      slot.worker.postMessage(req, [buf]);
    });
  }

  #spawn(): void {
    const worker = new Worker(WORKER_URL, { workerData: { witnessVerifyWorker: true } });
    const slot: Slot = { worker, inflight: new Map(), answered: false };
    worker.unref();
    worker.on('message', (m: BatchReply) => this.#onReply(slot, m));
    worker.on('error', () => {
      /* reported by 'exit' */
    });
    worker.on('exit', () => this.#onExit(slot));
    this.#slots.push(slot);
  }

  #onReply(slot: Slot, m: BatchReply): void {
    const jobs = slot.inflight.get(m.id);
    if (!jobs) return; // a bench round trip
    slot.inflight.delete(m.id);
    if (!slot.answered) {
      slot.answered = true;
      this.#crashStreak = 0;
    }
    if (slot.inflight.size === 0) slot.worker.unref();
    for (let i = 0; i < jobs.length; i++) jobs[i]!.resolve(outcome(m.codes[i]!));
    this.#pump();
  }

  #onExit(slot: Slot): void {
    const at = this.#slots.indexOf(slot);
    if (at < 0) return; // closed
    this.#slots.splice(at, 1);
    this.#stats.crashes++;
    if (!slot.answered) this.#crashStreak++;
    // Re-run what it held (verification is stateless), ahead of newer jobs.
    const again: Job[] = [];
    for (const jobs of slot.inflight.values()) {
      for (const j of jobs) {
        if (++j.attempts >= this.#maxAttempts) {
          this.#stats.failed++;
          j.reject(new Error(`verify pool: a worker exited ${j.attempts} time(s) while verifying this job`));
        } else {
          this.#stats.retried++;
          again.push(j);
        }
      }
    }
    this.#queue = [...again, ...this.#queue.slice(this.#head)];
    this.#head = 0;
    if (this.#closed) return;
    if (this.#crashStreak >= MAX_CONSECUTIVE_CRASHES && this.#slots.length === 0) {
      // Workers die before answering anything: verify here rather than loop on respawns.
      this.#stats.degraded = true;
    } else {
      this.#spawn();
    }
    this.#schedulePump();
  }

  #schedulePump(): void {
    if (this.#pumpScheduled) return;
    this.#pumpScheduled = true;
    queueMicrotask(() => {
      this.#pumpScheduled = false;
      this.#pump();
    });
  }

  #pump(): void {
    if (this.#closed) return;
    if (this.#stats.degraded) {
      this.#drainOnMain(Infinity);
      return;
    }
    while (this.queued > 0) {
      let best: Slot | undefined;
      let idle = 0;
      for (const s of this.#slots) {
        if (s.inflight.size === 0) idle++;
        if (s.inflight.size < this.#cap && (!best || s.inflight.size < best.inflight.size)) best = s;
      }
      if (!best) break;
      const queued = this.queued;
      if (this.#batchDelayMs > 0 && best.inflight.size > 0 && queued < this.#batchMax) {
        // Wait a little for a fuller batch; a worker with nothing to do never waits.
        this.#delayTimer ??= setTimeout(() => {
          this.#delayTimer = undefined;
          this.#flushAnyway();
        }, this.#batchDelayMs);
        break;
      }
      // Spread what is queued over the idle workers rather than giving it all to the first.
      const n = Math.min(this.#batchMax, idle > 1 ? Math.ceil(queued / idle) : queued);
      this.#send(best, n);
    }
    if (this.queued > 0 && this.#main) this.#scheduleMain();
    this.#compact();
  }

  #flushAnyway(): void {
    while (this.queued > 0) {
      let best: Slot | undefined;
      for (const s of this.#slots) if (s.inflight.size < this.#cap && (!best || s.inflight.size < best.inflight.size)) best = s;
      if (!best) break;
      this.#send(best, Math.min(this.#batchMax, this.queued));
    }
    this.#pump();
  }

  #send(slot: Slot, n: number): void {
    const jobs = this.#queue.slice(this.#head, this.#head + n);
    this.#head += n;
    let total = 0;
    for (const j of jobs) total += JOB_OVERHEAD + j.len;
    const buf = new ArrayBuffer(total);
    const bytes = new Uint8Array(buf);
    const view = new DataView(buf);
    let o = 0;
    for (const j of jobs) {
      bytes.set(j.pk, o);
      bytes.set(j.sig, o + PUBLIC_KEY_BYTES);
      view.setUint32(o + PUBLIC_KEY_BYTES + SIGNATURE_BYTES, j.len, true);
      o += JOB_OVERHEAD;
      if (j.message) {
        bytes.set(j.message, o);
        o += j.len;
      } else {
        // Sig_structure = ["Signature1", protected, h'', payload] (RFC 9052 §4.4), written in place.
        bytes.set(SIG1_PREFIX, o);
        o = writeHead(bytes, o + SIG1_PREFIX.length, MT_BYTES, j.prot!.length);
        bytes.set(j.prot!, o);
        o += j.prot!.length;
        bytes[o++] = 0x40;
        o = writeHead(bytes, o, MT_BYTES, j.payload!.length);
        bytes.set(j.payload!, o);
        o += j.payload!.length;
      }
    }
    const id = this.#nextId++;
    slot.inflight.set(id, jobs);
    if (slot.inflight.size === 1) slot.worker.ref();
    this.#stats.batches++;
    const req: BatchRequest = { id, buf, n };
    slot.worker.postMessage(req, [buf]);
  }

  #scheduleMain(): void {
    if (this.#mainScheduled) return;
    this.#mainScheduled = true;
    setImmediate(() => {
      this.#mainScheduled = false;
      if (this.#closed) return;
      // Only while every worker is full: otherwise a worker is about to take the queue.
      if (this.#slots.some((s) => s.inflight.size < this.#cap)) {
        this.#pump();
        return;
      }
      this.#drainOnMain(this.#mainChunk);
      if (this.queued > 0) this.#scheduleMain();
    });
  }

  #drainOnMain(max: number): void {
    let k = 0;
    while (this.queued > 0 && k < max) {
      const j = this.#queue[this.#head++]!;
      const message = j.message ?? sigStructure(j.prot!, j.payload!);
      this.#stats.mainJobs++;
      j.resolve(outcome(verifyCode(j.pk, message, j.sig)));
      k++;
    }
    this.#compact();
  }

  #compact(): void {
    if (this.#head > 0 && (this.#head === this.#queue.length || this.#head > 1024)) {
      this.#queue = this.#queue.slice(this.#head);
      this.#head = 0;
    }
  }
}

// ── pre-verify / post-verify split of EnvelopeChecker ───────────────────────────────────────────

// ── the asynchronous checker ────────────────────────────────────────────────────────────────────

/** What AsyncEnvelopeChecker needs of a pool (tests substitute one that answers out of order). */
export interface SignatureVerifier {
  verifyOne(job: VerifyJob): Promise<VerifyOutcome>;
}

export interface AsyncEnvelopeCheckOptions extends EnvelopeCheckOptions {
  pool: SignatureVerifier;
}

const noop = (): void => {};

/**
 * EnvelopeChecker's verdicts with the signature verified on a VerifyPool. Results for one client,
 * and state updates for one device, are applied in the order `check` was called, whatever order
 * the signatures finish in. A job the pool cannot verify (workers crashed twice) rejects its
 * `check` promise without touching state; the client's later messages proceed.
 */
export class AsyncEnvelopeChecker {
  readonly #keys: KeyLookup;
  readonly #pool: SignatureVerifier;
  readonly #chain: EnvelopeChecker;
  readonly #clientTail = new Map<string, Promise<void>>();
  readonly #deviceTail = new Map<string, Promise<void>>();
  #pending = 0;
  #drained: (() => void)[] = [];

  constructor(o: AsyncEnvelopeCheckOptions) {
    this.#keys = o.keys;
    this.#pool = o.pool;
    // Everything but the signature is the synchronous checker's own code: one set of rules.
    this.#chain = new EnvelopeChecker(o);
  }

  /** Checks one payload published by `clientKey` on `topic` at broker time `now` ± `nowU`. */
  check(clientKey: string, topic: string, payload: Uint8Array, now: number, nowU: number): Promise<EnvelopeResult> {
    const pre = preVerify(this.#keys, payload);
    const clientPrev = this.#clientTail.get(clientKey);
    let p: Promise<EnvelopeResult>;
    if (pre.done) {
      if (clientPrev === undefined) return Promise.resolve(pre.done);
      const done = pre.done;
      p = clientPrev.then(() => done);
    } else {
      const sig = this.#pool.verifyOne({ publicKey: pre.publicKey, envelope: pre.env });
      const devicePrev = this.#deviceTail.get(pre.deviceId);
      const waits: Promise<unknown>[] = [sig];
      if (clientPrev) waits.push(clientPrev);
      if (devicePrev) waits.push(devicePrev);
      p = (waits.length === 1 ? sig : Promise.all(waits).then(() => sig)).then((code) => this.#chain.postVerify(pre, code, topic, now, nowU));
      this.#chainTail(this.#deviceTail, pre.deviceId, p);
    }
    this.#chainTail(this.#clientTail, clientKey, p);
    return p;
  }

  /** check(), under the name the broker plugin looks for (broker/plugin.ts AsyncEnvelopes). */
  checkAsync(clientKey: string, topic: string, payload: Uint8Array, now: number, nowU: number): Promise<EnvelopeResult> {
    return this.check(clientKey, topic, payload, now, nowU);
  }

  #chainTail(map: Map<string, Promise<void>>, key: string, p: Promise<unknown>): void {
    const tail = p.then(noop, noop);
    map.set(key, tail);
    this.#pending++;
    void tail.then(() => {
      this.#pending--;
      if (map.get(key) === tail) map.delete(key);
      if (this.#pending === 0 && this.#drained.length) for (const r of this.#drained.splice(0)) r();
    });
  }

  /** Resolves once every check made so far has settled (for shutdown: before closing the pool). */
  drain(): Promise<void> {
    if (this.#pending === 0) return Promise.resolve();
    return new Promise((resolve) => this.#drained.push(resolve));
  }

  /** Checks queued or in verification (client and device chains counted separately). */
  get pending(): number {
    return this.#pending;
  }

  observe(deviceId: string, seq: number, hash: string, verdict: EnvelopeVerdictName): void {
    this.#chain.observe(deviceId, seq, hash, verdict);
  }

  snapshot(): Record<string, DeviceChainState> {
    return this.#chain.snapshot();
  }

  restore(snapshot: Record<string, DeviceChainState>): void {
    this.#chain.restore(snapshot);
  }

  lastSeq(deviceId: string): number | undefined {
    return this.#chain.lastSeq(deviceId);
  }
}
