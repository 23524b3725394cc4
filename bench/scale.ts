/**
 * Issue 7 §4, the scaling curve: how Witness behaves as the ledger grows (10⁵ → 10⁷ records) and
 * as the number of connected clients grows (100 → 10,000). Every figure is printed beside a
 * baseline measured in the same run (the machine is a noisy shared box: compare ratios, never an
 * absolute time alone).
 *
 * Part "ledger" (one process, one ledger grown in a temp dir under os.tmpdir()):
 *   - the ledger is grown incrementally to each size in --sizes with Ledger.open(fsync 'never',
 *     checkpoint every 10,000 records, the writer's defaults otherwise) and appendJson of ~250-byte
 *     publish records (varying time, client, topic, message id, size, payload hash); the append
 *     rate of each step is printed as a ratio to the SHA-256-of-64-bytes rate (baseline below);
 *     progress (records/s, ETA) to stderr every 2 s; --max-seconds bounds the whole build: when it
 *     runs out, growing stops and the size reached is measured and reported;
 *   - at each size: ledger.checkpoint() (a signed checkpoint covering every record), then a FRESH
 *     LedgerReader (a new open: no node cached by an earlier size) and
 *       inclusion: K random indices (seeded PRNG): proof generation (reader.inclusionProof) µs,
 *         p50 and p99, proof length; verification (verifyInclusion against the checkpoint root,
 *         leaf hash from the segment index) µs; every proof must verify;
 *       consistency: random earlier checkpoint (0 < m < n) → n: generation + verification µs,
 *         both roots from the signed checkpoint log (the newest checkpoint's signature is opened
 *         with the broker key first);
 *       record fetch: reader.record(i) (the record's line) + its leaf hash against the index, 20
 *         random i, each fetched right after as i+1 too ("again": after any one-time per-segment
 *         work of the reader): what a proof tool needs besides the proof;
 *     baseline: µs of ONE node:crypto SHA-256 of a 64-byte input (one-shot hash, Buffer digest),
 *     measured right before and right after the proofs of that size (5 × 100 ms each) and in 20 ms
 *     slices every 100 proofs; the median of all slices is the baseline of that size. Each proof figure is also
 *     given in "hashes' worth" (µs / baseline µs) and as a ratio to the smallest size, next to
 *     log2(n)/log2(smallest): O(log n) means these two columns grow together (and not like n);
 *   - memory after each size: RSS and V8 heap used after a full GC (the writer stays open: it is
 *     part of the footprint), peak RSS, and the max/min ratio over the sizes; ledger bytes on disk;
 *   - full verifyLedger (witness verify: default worker policy) up to --verify-max records (default
 *     10⁶), as records/s and as a ratio to raw SHA-256 of the same record lines, one one-shot hash
 *     per line with a Buffer digest (bench/ledger.ts's baseline A).
 *
 * Part "clients" (for each N in --counts; servers are bench/broker-server.ts children, bench/load.ts):
 *   sink (the load generator's own ceiling), plain aedes 1.2, and `witness broker` with
 *   bench/broker-config.yaml (level metadata, envelope off, fsync batch: suite.ts's w-meta),
 *   alternated (sink, plain, witness, sink, …) for --rounds rounds, each server fresh; for each:
 *     - N MQTT.js clients connected in parallel batches of 200 (each connect bounded by
 *       CONNECT_TIMEOUT_MS, the whole by 120 s): connects/s, failures and the first error;
 *     - server RSS (/proc/PID/status VmRSS) before any client and idle with N connected: KiB per
 *       client;
 *     - every client publishes QoS 1, 64 B, closed loop with 1 in flight, for --seconds after
 *       --warmup: messages/s from PUBACKs, server CPU µs per message (the child's cpuUsage), the
 *       generator's CPU % (near 100 % of one core = this process is the bottleneck: compare with
 *       the sink row); medians over rounds, witness/plain ratio per round and of the medians.
 *   A 4 KiB write + fdatasync probe of the data disk is printed: under fsync batch every PUBACK
 *   waits for one, so with N in flight the witness rate cannot exceed ≈ N / fsync latency.
 *
 * Every loop is bounded in count and time; children are killed and the temp dirs removed on exit
 * (also SIGINT/SIGTERM). Exit code 0 when every proof verifies (and verifyLedger says ok), 1
 * otherwise, 2 on a usage error.
 *
 * Usage: node dist/bench/scale.js [--part clients|ledger|all] [--json]
 *          ledger:  [--sizes 1e5,1e6,1e7] [--k 2000] [--consistency-k 200] [--verify-max 1e6]
 *                   [--max-seconds 600] [--seed 1]
 *          clients: [--counts 100,1000,10000] [--rounds 2] [--seconds 5] [--warmup 1]
 */
import { readFileSync, readdirSync, statSync, mkdtempSync, rmSync } from 'node:fs';
import { hash, randomBytes } from 'node:crypto';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { parseArgs } from 'node:util';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import type { MqttClient } from 'mqtt';
import { machineInfo, formatMachine, median, procStatus } from './machine.js';
import { CONNECT_TIMEOUT_MS, ServerProcess, connectClient, endAll, fsyncProbe, positive, pumpQos1, pumpState, type Trouble } from './load.js';
import type { ServerKind, Usage } from './broker-server.js';
import { initDataDir, openSigning } from '../broker/data-dir.js';
import { Ledger } from '../shared/ledger/writer.js';
import { LedgerReader } from '../shared/ledger/reader.js';
import { verifyLedger } from '../shared/ledger/verifier.js';
import { listSegments } from '../shared/ledger/segment.js';
import { parseVerifierKey } from '../shared/keys/key-id.js';
import { openCheckpoint } from '../shared/checkpoint/checkpoint.js';
import { ed25519NoteVerifier } from '../shared/checkpoint/note.js';
import { leafHash, verifyInclusion, verifyConsistency, inclusionProof as merkleInclusionProof } from '../shared/merkle/index.js';
import { Rng } from '../simulator/rng.js';

// ── arguments ────────────────────────────────────────────────────────────────────────────────

class UsageError extends Error {}

const OPTIONS = {
  part: { type: 'string' },
  sizes: { type: 'string' },
  counts: { type: 'string' },
  rounds: { type: 'string' },
  seconds: { type: 'string' },
  warmup: { type: 'string' },
  k: { type: 'string' },
  'consistency-k': { type: 'string' },
  'verify-max': { type: 'string' },
  'max-seconds': { type: 'string' },
  seed: { type: 'string' },
  json: { type: 'boolean' },
} as const;

function parse() {
  try {
    return parseArgs({ options: OPTIONS, strict: true }).values;
  } catch (e) {
    throw new UsageError((e as Error).message);
  }
}

function list(name: string, v: string | undefined, dflt: string, max: number): number[] {
  const xs = (v ?? dflt).split(',').map((x) => Number(x.trim()));
  for (const x of xs) if (!Number.isSafeInteger(x) || x < 1 || x > max) throw new UsageError(`--${name}: expected comma-separated integers 1..${max} (1e5 notation is fine), got ${JSON.stringify(v)}`);
  for (let i = 1; i < xs.length; i++) if (xs[i]! <= xs[i - 1]!) throw new UsageError(`--${name}: expected increasing values, got ${JSON.stringify(v)}`);
  return xs;
}
function num(name: string, v: string | undefined, dflt: number, max: number, integer = true): number {
  let n: number;
  try {
    n = positive(name, v, dflt);
  } catch (e) {
    throw new UsageError((e as Error).message);
  }
  if (n > max || (integer && !Number.isSafeInteger(n))) throw new UsageError(`--${name}: expected ${integer ? 'an integer' : 'a number'} ≤ ${max}, got ${JSON.stringify(v)}`);
  return n;
}

let A: ReturnType<typeof args>;
function args() {
  const v = parse();
  const part = v.part ?? 'all';
  if (!['clients', 'ledger', 'all'].includes(part)) throw new UsageError(`--part: expected clients, ledger or all, got ${JSON.stringify(part)}`);
  return {
    part: part as 'clients' | 'ledger' | 'all',
    sizes: list('sizes', v.sizes, '1e5,1e6,1e7', 1e8),
    counts: list('counts', v.counts, '100,1000,10000', 18_000),
    rounds: num('rounds', v.rounds, 2, 10),
    seconds: num('seconds', v.seconds, 5, 60, false),
    warmup: num('warmup', v.warmup, 1, 30, false),
    k: num('k', v.k, 2000, 1_000_000),
    consistencyK: num('consistency-k', v['consistency-k'], 200, 100_000),
    verifyMax: num('verify-max', v['verify-max'], 1e6, 1e8),
    maxSeconds: num('max-seconds', v['max-seconds'], 600, 86_400, false),
    seed: num('seed', v.seed, 1, 2 ** 31),
    json: v.json === true,
  };
}

// ── shared helpers ───────────────────────────────────────────────────────────────────────────

const progress = (s: string): void => void process.stderr.write(`${new Date().toISOString().slice(11, 19)} ${s}\n`);
const out = (s: string): void => void process.stdout.write(s + '\n');
const fmt = (x: number, d = 0): string => (Number.isFinite(x) ? x.toLocaleString('en-US', { minimumFractionDigits: d, maximumFractionDigits: d }) : '—');
const r3 = (x: number): number => +x.toFixed(3);
const MiB = 2 ** 20;

/** A full GC on demand (the flag set at run time; only used before memory readings). */
setFlagsFromString('--expose-gc');
const gc = runInNewContext('gc') as () => void;

/** Deterministic random numbers (the simulator's xoshiro128**): the same indices every run with the same --seed. */
function prng(seed: number): () => number {
  const r = Rng.fromSeed('bench-scale', String(seed));
  return () => r.next();
}

function percentile(xs: number[], q: number): number {
  if (xs.length === 0) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor(q * s.length))]!;
}

/** µs of ONE node:crypto SHA-256 of a 64-byte input (one-shot hash, Buffer digest): median of `runs` × ≤`sliceMs`. */
const SHA_INPUT = randomBytes(64);
function sha64Runs(runs_ = 5, sliceMs = 100): number[] {
  const buf = SHA_INPUT;
  for (let i = 0; i < 2000; i++) hash('sha256', buf, 'buffer');
  const runs: number[] = [];
  for (let r = 0; r < runs_; r++) {
    const t0 = performance.now();
    let n = 0;
    while (performance.now() - t0 < sliceMs && n < 5_000_000) {
      for (let k = 0; k < 256; k++) hash('sha256', buf, 'buffer');
      n += 256;
    }
    runs.push(((performance.now() - t0) * 1000) / n);
  }
  return runs;
}
function sha64Micros(): number {
  return median(sha64Runs());
}

// ── cleanup ──────────────────────────────────────────────────────────────────────────────────

const tempDirs = new Set<string>();
const servers = new Set<ServerProcess>();
function cleanup(): void {
  for (const s of servers) s.kill();
  servers.clear();
  for (const d of tempDirs) rmSync(d, { recursive: true, force: true });
  tempDirs.clear();
}
function tempDir(tag: string): string {
  const d = mkdtempSync(join(tmpdir(), `witness-bench-scale-${tag}-`));
  tempDirs.add(d);
  return d;
}
for (const sig of ['SIGINT', 'SIGTERM'] as const) {
  process.once(sig, () => {
    progress(`${sig}: killing children, removing temp dirs`);
    cleanup();
    process.exit(130);
  });
}
process.once('exit', cleanup);

// ── part "ledger" ────────────────────────────────────────────────────────────────────────────

const METRICS = ['temperature', 'humidity', 'pressure', 'vibration', 'voltage', 'status'];
/** 1,000 payload hashes (base64url of 32 bytes), picked by record: the `h` field varies. */
const HASHES = Array.from({ length: 1000 }, () => randomBytes(32).toString('base64url'));

/** A publish record like shared/ledger/publish-json.ts writes (metadata level): ~250-byte lines. */
function recordJson(n: number, t: number): string {
  const c = (n * 7919) % 10_000;
  return (
    `{"v":1,"t":${t},"n":"node-1","e":"publish","s":"s-${c}-${(n >>> 12) % 97}","c":"device-${c}",` +
    `"a":"10.0.${c >> 8}.${c & 255}:${40000 + (n % 20000)}","topic":"plant/${c}/${METRICS[n % METRICS.length]}",` +
    `"q":${n % 3 === 0 ? 0 : 1},"r":false,"m":${(n % 65535) + 1},"z":${32 + (n % 480)},"h":"${HASHES[n % 1000]}","acl":"allow","env":"off"}`
  );
}

/**
 * The cost model of tree-store.ts: a perfect-subtree node at level L is hashed up from 2^(L mod 8)
 * nodes of the stored level below it (TILE_HEIGHT 8), i.e. 2^(L mod 8) − 1 node hashes. Counted by
 * running the same proof generation (shared/merkle/proof.ts) against a source that only counts:
 * median over `samples` random indices of the node hashes the tiles imply for one inclusion proof
 * (the right-border range MTH(D[k:n]) included; the few hashes that join its parts left out).
 */
async function modelHashes(size: number, rand: () => number, samples = 200): Promise<number> {
  const dummy = new Uint8Array(32);
  let count = 0;
  const source = async (level: number): Promise<Uint8Array> => {
    count += 2 ** (level % 8) - 1;
    return dummy;
  };
  const counts: number[] = [];
  for (let k = 0; k < samples; k++) {
    count = 0;
    await merkleInclusionProof(Math.floor(rand() * size), size, source);
    counts.push(count);
  }
  return median(counts);
}

/** RssAnon, RssFile (KiB) and Threads of this process from /proc/self/status (NaN elsewhere). */
function procStatusKiB(): { RssAnon: number; RssFile: number; Threads: number } {
  const st = procStatus('self') ?? {};
  return { RssAnon: st.RssAnon ?? NaN, RssFile: st.RssFile ?? NaN, Threads: st.Threads ?? NaN };
}

function dirBytes(dir: string): number {
  let total = 0;
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    total += e.isDirectory() ? dirBytes(p) : statSync(p).size;
  }
  return total;
}

/** Raw SHA-256 (one-shot, Buffer digest) of every record line of the first `n`, as lines/s — hashing time only. */
function rawLineShaRate(ledgerDir: string, n: number): { perSec: number; bytes: number } {
  let ns = 0n;
  let lines = 0;
  let bytes = 0;
  for (const seg of listSegments(ledgerDir)) {
    if (lines >= n) break;
    const buf = readFileSync(seg.dataPath);
    const t0 = process.hrtime.bigint();
    let s = 0;
    for (let nl = buf.indexOf(0x0a); nl >= 0 && lines < n; nl = buf.indexOf(0x0a, s)) {
      hash('sha256', buf.subarray(s, nl), 'buffer');
      bytes += nl - s + 1;
      lines++;
      s = nl + 1;
    }
    ns += process.hrtime.bigint() - t0;
  }
  return { perSec: lines / (Number(ns) / 1e9), bytes };
}

interface ProofStats {
  samples: number;
  failures: number;
  lengthMedian: number;
  lengthMax: number;
  genP50Us: number;
  genP99Us: number;
  verP50Us: number;
  verP99Us: number;
}

interface LedgerRow {
  size: number;
  /** The size asked for, when --max-seconds stopped the growth short of it. */
  target?: number;
  log2n: number;
  /** Node hashes the tile layout implies per inclusion proof (median over random indices; modelHashes). */
  modelHashes: number;
  sha64Us: { before: number; after: number; used: number };
  inclusion: ProofStats & { leafReadP50Us: number };
  consistency: ProofStats;
  /** reader.record(i) + leaf hash check: first fetch in its segment, and of the next index right after. */
  recordFetch: { samples: number; p50Us: number; maxUs: number; againP50Us: number; mismatches: number };
  checkpointSignatureOk: boolean;
  growSeconds: number;
  appendPerSec: number;
  appendVsSha64: number;
  /** RSS after a GC right after the checkpoint, before the reader is opened. */
  rssBeforeProofsMiB: number;
  /** Its anonymous (heaps, malloc, buffers) and file-backed parts (/proc/self/status RssAnon, RssFile). */
  rssAnonBeforeProofsMiB: number;
  rssFileBeforeProofsMiB: number;
  threads: number;
  /** RSS after a GC once the proofs of this size are done. */
  rssMiB: number;
  heapUsedMiB: number;
  externalMiB: number;
  peakRssMiB: number;
  diskMiB: number;
  bytesPerRecord: number;
  verify?: { ok: boolean; perSec: number; rawSha256LinesPerSec: number; ratio: number; seconds: number; failures: number };
}

async function ledgerPart(): Promise<{ rows: LedgerRow[]; failures: number; stoppedByTime: boolean; buildSeconds: number; recordBytes: number }> {
  const root = tempDir('ledger');
  const data = join(root, 'data');
  const init = await initDataDir(data, 'bench-scale');
  const signing = openSigning(data);
  const ledgerDir = join(data, 'ledger');
  const key = parseVerifierKey(init.manifest.verifierKey);
  const noteVerifier = ed25519NoteVerifier(key.name, key.publicKey);
  const ledger = await Ledger.open(ledgerDir, { origin: signing.manifest.origin, signer: signing.signer, seal: signing.seal, fsync: 'never' });
  const rand = prng(A.seed);
  const rows: LedgerRow[] = [];
  let failures = 0;
  let stoppedByTime = false;
  const buildStart = performance.now();
  const buildDeadline = buildStart + A.maxSeconds * 1000;
  let buildMs = 0;
  const t0Record = 1_732_363_200_000;
  let appendError: unknown;
  const onError = (e: unknown): void => {
    appendError ??= e;
  };

  try {
    for (const target of A.sizes) {
      // ── grow to `target` ──
      const from = ledger.nextIndex;
      const g0 = performance.now();
      let lastReport = g0;
      let lastCount = from;
      const WINDOW = 16_384;
      let previous: Promise<unknown> | undefined;
      let n = from;
      while (n < target) {
        if (performance.now() > buildDeadline) {
          stoppedByTime = true;
          break;
        }
        const end = Math.min(target, n + WINDOW);
        for (; n < end - 1; n++) ledger.appendJsonLoose(recordJson(n, t0Record + n * 3), onError);
        const last = ledger.appendJson(recordJson(n, t0Record + n * 3));
        n++;
        // Two windows in flight: this one is encoded while the I/O thread writes the previous one.
        if (previous) await previous;
        previous = last;
        if (appendError !== undefined) throw appendError;
        const now = performance.now();
        if (now - lastReport >= 2000) {
          const rate = ((n - lastCount) * 1000) / (now - lastReport);
          progress(
            `ledger: ${fmt(n)} / ${fmt(target)} records, ${fmt(rate)} /s, ETA ${fmt((target - n) / rate)} s` +
              ` (build budget left ${fmt((buildDeadline - now) / 1000)} s of --max-seconds ${A.maxSeconds})`,
          );
          lastReport = now;
          lastCount = n;
        }
      }
      if (previous) await previous;
      const cp = await ledger.checkpoint();
      const growMs = performance.now() - g0;
      buildMs += growMs;
      const size = cp.size;
      if (size === 0) break;
      const appendPerSec = ((size - from) * 1000) / growMs;
      progress(`ledger: ${fmt(size)} records (${fmt(appendPerSec)} appends/s this step), checkpoint epoch ${cp.epoch}; measuring proofs`);

      gc();
      gc();
      const rssBeforeProofs = process.memoryUsage().rss;
      const statusBefore = procStatusKiB();

      // ── measure at `size` with a fresh reader ──
      const before = sha64Runs();
      const reader = LedgerReader.open(ledgerDir);
      const { interleavedSha64Us, ...row } = await measureProofs(reader, size, rand, noteVerifier, key.name);
      reader.close();
      const after = sha64Runs();
      const sha64Before = median(before);
      const sha64After = median(after);
      failures += row.inclusion.failures + row.consistency.failures + row.recordFetch.mismatches + (row.checkpointSignatureOk ? 0 : 1);

      gc();
      gc();
      const mem = process.memoryUsage();
      const disk = dirBytes(ledgerDir);
      const segBytes = listSegments(ledgerDir).reduce((s, seg) => s + statSync(seg.dataPath).size, 0);
      // The baseline used: median of every slice — 5 × 100 ms before, 5 after, 20 ms every 100 proofs.
      const sha64 = median([...before, ...after, ...interleavedSha64Us]);
      const full: LedgerRow = {
        size,
        ...(size < target ? { target } : {}),
        log2n: r3(Math.log2(size)),
        modelHashes: await modelHashes(size, rand),
        sha64Us: { before: r3(sha64Before), after: r3(sha64After), used: r3(sha64) },
        ...row,
        growSeconds: r3(growMs / 1000),
        appendPerSec: Math.round(appendPerSec),
        appendVsSha64: r3(appendPerSec / (1e6 / sha64)),
        rssBeforeProofsMiB: +(rssBeforeProofs / MiB).toFixed(1),
        rssAnonBeforeProofsMiB: +(statusBefore.RssAnon / 1024).toFixed(1),
        rssFileBeforeProofsMiB: +(statusBefore.RssFile / 1024).toFixed(1),
        threads: statusBefore.Threads,
        rssMiB: +(mem.rss / MiB).toFixed(1),
        heapUsedMiB: +(mem.heapUsed / MiB).toFixed(1),
        externalMiB: +(mem.external / MiB).toFixed(1),
        peakRssMiB: +(process.resourceUsage().maxRSS / 1024).toFixed(1),
        diskMiB: +(disk / MiB).toFixed(1),
        bytesPerRecord: +(segBytes / size).toFixed(1),
      };

      // By the size asked: the ledger's own checkpoint records add ~1 per 10,000 to it.
      if (Math.min(size, target) <= A.verifyMax) {
        progress(`ledger: verifyLedger over ${fmt(size)} records`);
        const v0 = performance.now();
        const report = await verifyLedger(ledgerDir, { key: { name: key.name, publicKey: key.publicKey }, upTo: size });
        const vs = (performance.now() - v0) / 1000;
        const raw = rawLineShaRate(ledgerDir, size);
        if (!report.ok) failures++;
        full.verify = {
          ok: report.ok,
          perSec: Math.round(report.records.total / vs),
          rawSha256LinesPerSec: Math.round(raw.perSec),
          ratio: r3(report.records.total / vs / raw.perSec),
          seconds: r3(vs),
          failures: report.failureCount,
        };
        if (!report.ok) progress(`ledger: verifyLedger FAILED: ${JSON.stringify(report.failures[0])}`);
      }
      rows.push(full);
      progress(
        `ledger: ${fmt(size)}: inclusion gen p50 ${full.inclusion.genP50Us.toFixed(1)} µs (${(full.inclusion.genP50Us / sha64).toFixed(0)} hashes), ` +
          `verify ${full.inclusion.verP50Us.toFixed(1)} µs, RSS ${full.rssMiB} MiB, ${failures} failures so far`,
      );
      if (stoppedByTime) break;
      // Would the next size fit in what is left of the budget? Say so (growth stops at the deadline anyway).
      const nextTarget = A.sizes[A.sizes.indexOf(target) + 1];
      if (nextTarget !== undefined) {
        const eta = (nextTarget - size) / appendPerSec;
        const left = (buildDeadline - performance.now()) / 1000;
        progress(`ledger: next ${fmt(nextTarget)}: estimated ${fmt(eta)} s of growth at this step's rate; ${fmt(left)} s of --max-seconds left${eta > left ? ' — will stop at the deadline' : ''}`);
      }
    }
  } finally {
    await ledger.close().catch(() => {});
    signing.seal.close();
  }
  return { rows, failures, stoppedByTime, buildSeconds: r3(buildMs / 1000), recordBytes: rows.length ? rows.at(-1)!.bytesPerRecord : recordJson(123_456, t0Record).length };
}

async function measureProofs(
  reader: LedgerReader,
  size: number,
  rand: () => number,
  noteVerifier: ReturnType<typeof ed25519NoteVerifier>,
  origin: string,
): Promise<Pick<LedgerRow, 'inclusion' | 'consistency' | 'recordFetch' | 'checkpointSignatureOk'> & { interleavedSha64Us: number[] }> {
  const cps = reader.checkpoints();
  const latest = cps.filter((c) => c.checkpoint.size === size).at(-1);
  if (!latest) throw new Error(`no checkpoint of size ${size} in the log`);
  let checkpointSignatureOk = false;
  try {
    const opened = openCheckpoint(latest.note, [noteVerifier]);
    checkpointSignatureOk = opened.checkpoint.origin === origin && opened.checkpoint.size === size && Buffer.from(opened.checkpoint.rootHash).equals(Buffer.from(latest.checkpoint.rootHash));
  } catch (e) {
    progress(`checkpoint ${size}: signature does not open: ${(e as Error).message}`);
  }
  const root = latest.checkpoint.rootHash;

  // Inclusion (with a 20 ms slice of the SHA-256 baseline every 100 proofs).
  const interleaved: number[] = [];
  const gen: number[] = [];
  const ver: number[] = [];
  const leafRead: number[] = [];
  const lens: number[] = [];
  let inclFail = 0;
  const deadline = performance.now() + 20_000;
  // A few unmeasured proofs first (JIT, file descriptors), then the measured ones.
  for (let k = 0; k < 20; k++) await reader.inclusionProof(Math.floor(rand() * size), size);
  for (let k = 0; k < A.k && performance.now() < deadline; k++) {
    if (k % 100 === 0) interleaved.push(...sha64Runs(1, 20));
    const i = Math.floor(rand() * size);
    const t0 = performance.now();
    const proof = await reader.inclusionProof(i, size);
    const t1 = performance.now();
    const leaf = reader.leafHash(i);
    const t2 = performance.now();
    try {
      verifyInclusion(i, size, leaf, proof, root);
    } catch (e) {
      if (inclFail++ === 0) progress(`inclusion ${i}/${size}: ${(e as Error).message}`);
    }
    const t3 = performance.now();
    gen.push((t1 - t0) * 1000);
    leafRead.push((t2 - t1) * 1000);
    ver.push((t3 - t2) * 1000);
    lens.push(proof.length);
  }

  // Consistency: from a random earlier checkpoint (0 < m < n), roots from the checkpoint log.
  const earlier = cps.filter((c) => c.checkpoint.size > 0 && c.checkpoint.size < size);
  const cgen: number[] = [];
  const cver: number[] = [];
  const clens: number[] = [];
  let consFail = 0;
  const cdeadline = performance.now() + 10_000;
  for (let k = 0; k < A.consistencyK && earlier.length > 0 && performance.now() < cdeadline; k++) {
    if (k % 100 === 0) interleaved.push(...sha64Runs(1, 20));
    const old = earlier[Math.floor(rand() * earlier.length)]!.checkpoint;
    const t0 = performance.now();
    const proof = await reader.consistencyProof(old.size, size);
    const t1 = performance.now();
    try {
      verifyConsistency(old.size, size, proof, old.rootHash, root);
    } catch (e) {
      if (consFail++ === 0) progress(`consistency ${old.size}→${size}: ${(e as Error).message}`);
    }
    const t2 = performance.now();
    cgen.push((t1 - t0) * 1000);
    cver.push((t2 - t1) * 1000);
    clens.push(proof.length);
  }

  // Record fetch: the line of record i (reader.record) and its leaf hash against the index.
  // Each index twice: the first fetch may pay a one-time scan of its segment (per process), the
  // second one (index + 1: same segment nearly always) shows the steady cost.
  const fetch: number[] = [];
  const again: number[] = [];
  let mismatches = 0;
  const fdeadline = performance.now() + 10_000;
  for (let k = 0; k < 20 && performance.now() < fdeadline; k++) {
    const i = Math.floor(rand() * (size - 1));
    for (const [j, into] of [[i, fetch], [i + 1, again]] as const) {
      const t0 = performance.now();
      const rec = await reader.record(j);
      const lh = leafHash(Buffer.from(rec.line, 'utf8'));
      into.push((performance.now() - t0) * 1000);
      if (rec.index !== j || !Buffer.from(lh).equals(Buffer.from(reader.leafHash(j)))) mismatches++;
    }
  }

  const stats = (g: number[], v: number[], l: number[], f: number): ProofStats => ({
    samples: g.length,
    failures: f,
    lengthMedian: median(l.length ? l : [NaN]),
    lengthMax: l.length ? Math.max(...l) : NaN,
    genP50Us: r3(median(g.length ? g : [NaN])),
    genP99Us: r3(percentile(g, 0.99)),
    verP50Us: r3(median(v.length ? v : [NaN])),
    verP99Us: r3(percentile(v, 0.99)),
  });
  return {
    inclusion: { ...stats(gen, ver, lens, inclFail), leafReadP50Us: r3(median(leafRead.length ? leafRead : [NaN])) },
    consistency: stats(cgen, cver, clens, consFail),
    recordFetch: { samples: fetch.length, p50Us: r3(median(fetch.length ? fetch : [NaN])), maxUs: r3(fetch.length ? Math.max(...fetch) : NaN), againP50Us: r3(median(again.length ? again : [NaN])), mismatches },
    checkpointSignatureOk,
    interleavedSha64Us: interleaved,
  };
}

function printLedger(r: Awaited<ReturnType<typeof ledgerPart>>): void {
  const rows = r.rows;
  if (rows.length === 0) {
    out('ledger: no size reached');
    return;
  }
  const first = rows[0]!;
  const hw = (us: number, row: LedgerRow): number => us / row.sha64Us.used;
  out('');
  out(`LEDGER — one ledger grown through ${rows.map((x) => fmt(x.size)).join(' → ')} records (~${r.recordBytes} B records, fsync never, checkpoint every 10,000)`);
  out(`proof figures: median µs (p99) over random indices, fresh LedgerReader per size; H = "hashes' worth" = µs / µs of one SHA-256 of 64 B measured at the same size;`);
  out(`×first = H at this size / H at ${fmt(first.size)}, to compare with log2(n)/log2(${fmt(first.size)}) (O(log n): they grow together; O(n) would be ×${fmt(rows.at(-1)!.size / first.size)})`);
  out(`model H = node hashes per inclusion proof implied by the tiles (tree-store.ts: a node at level L is hashed up from 2^(L mod 8) stored nodes), counted over 200 random indices: ≤ 127 per level, so O(log n) with a sawtooth in log2(n) mod 8`);
  out('');
  out('inclusion proofs');
  out(
    `${'records'.padStart(12)}${'log2 n'.padStart(8)}${'×log'.padStart(7)}${'SHA64 µs'.padStart(10)}${'n'.padStart(6)}${'len'.padStart(5)}` +
      `${'gen µs (p99)'.padStart(20)}${'gen H'.padStart(8)}${'×first'.padStart(8)}${'model H'.padStart(9)}${'×first'.padStart(8)}${'verify µs (p99)'.padStart(18)}${'ver H'.padStart(7)}${'×first'.padStart(8)}${'leaf rd µs'.padStart(11)}${'fail'.padStart(6)}`,
  );
  for (const x of rows) {
    const i = x.inclusion;
    out(
      `${fmt(x.size).padStart(12)}${x.log2n.toFixed(2).padStart(8)}${(x.log2n / first.log2n).toFixed(2).padStart(7)}${x.sha64Us.used.toFixed(3).padStart(10)}${fmt(i.samples).padStart(6)}${String(i.lengthMedian).padStart(5)}` +
        `${`${i.genP50Us.toFixed(1)} (${i.genP99Us.toFixed(0)})`.padStart(20)}${fmt(hw(i.genP50Us, x)).padStart(8)}${(hw(i.genP50Us, x) / hw(first.inclusion.genP50Us, first)).toFixed(2).padStart(8)}` +
        `${fmt(x.modelHashes).padStart(9)}${(x.modelHashes / first.modelHashes).toFixed(2).padStart(8)}` +
        `${`${i.verP50Us.toFixed(1)} (${i.verP99Us.toFixed(0)})`.padStart(18)}${fmt(hw(i.verP50Us, x)).padStart(7)}${(hw(i.verP50Us, x) / hw(first.inclusion.verP50Us, first)).toFixed(2).padStart(8)}` +
        `${i.leafReadP50Us.toFixed(1).padStart(11)}${String(i.failures).padStart(6)}`,
    );
  }
  out('');
  out('consistency proofs (random earlier checkpoint → n; both roots from the signed checkpoint log; ×log and ×first against the first size that has an earlier checkpoint)');
  out(`${'records'.padStart(12)}${'×log'.padStart(7)}${'n'.padStart(6)}${'len'.padStart(5)}${'gen µs (p99)'.padStart(20)}${'gen H'.padStart(8)}${'×first'.padStart(8)}${'verify µs (p99)'.padStart(18)}${'ver H'.padStart(7)}${'×first'.padStart(8)}${'fail'.padStart(6)}`);
  for (const x of rows) {
    const c = x.consistency;
    const fr = rows.find((y) => y.consistency.samples > 0) ?? first;
    const fc = fr.consistency;
    out(
      `${fmt(x.size).padStart(12)}${(x.log2n / fr.log2n).toFixed(2).padStart(7)}${fmt(c.samples).padStart(6)}${String(c.lengthMedian).padStart(5)}` +
        `${`${c.genP50Us.toFixed(1)} (${c.genP99Us.toFixed(0)})`.padStart(20)}${fmt(hw(c.genP50Us, x)).padStart(8)}${(hw(c.genP50Us, x) / hw(fc.genP50Us, fr)).toFixed(2).padStart(8)}` +
        `${`${c.verP50Us.toFixed(1)} (${c.verP99Us.toFixed(0)})`.padStart(18)}${fmt(hw(c.verP50Us, x)).padStart(7)}${(hw(c.verP50Us, x) / hw(fc.verP50Us, fr)).toFixed(2).padStart(8)}${String(c.failures).padStart(6)}`,
    );
  }
  out('');
  out('growth, memory (MiB after a full GC; RSS pre = after the checkpoint, post = after the proofs and record fetches), disk, full verification (append ×SHA64 = appends/s ÷ SHA-256-of-64-B/s; verify × = verifyLedger records/s ÷ raw SHA-256 of the same lines /s)');
  out(
    `${'records'.padStart(12)}${'append /s'.padStart(11)}${'×SHA64'.padStart(8)}${'grow s'.padStart(8)}${'RSS pre/post'.padStart(14)}${'heap MiB'.padStart(10)}${'ext MiB'.padStart(9)}${'peak RSS'.padStart(10)}` +
      `${'disk MiB'.padStart(10)}${'B/rec'.padStart(7)}${'rec fetch µs 1st/again'.padStart(24)}${'verify /s'.padStart(11)}${'× raw'.padStart(7)}`,
  );
  for (const x of rows) {
    out(
      `${fmt(x.size).padStart(12)}${fmt(x.appendPerSec).padStart(11)}${x.appendVsSha64.toFixed(3).padStart(8)}${x.growSeconds.toFixed(1).padStart(8)}${`${x.rssBeforeProofsMiB.toFixed(0)}/${x.rssMiB.toFixed(0)}`.padStart(14)}${x.heapUsedMiB.toFixed(1).padStart(10)}` +
        `${x.externalMiB.toFixed(1).padStart(9)}${x.peakRssMiB.toFixed(1).padStart(10)}${fmt(x.diskMiB).padStart(10)}${x.bytesPerRecord.toFixed(0).padStart(7)}` +
        `${`${fmt(x.recordFetch.p50Us)}/${fmt(x.recordFetch.againP50Us)}`.padStart(24)}${(x.verify ? fmt(x.verify.perSec) : '—').padStart(11)}${(x.verify ? `${x.verify.ratio.toFixed(2)}×` : '—').padStart(7)}`,
    );
  }
  const rss = rows.map((x) => x.rssMiB);
  const pre = rows.map((x) => x.rssBeforeProofsMiB);
  const heap = rows.map((x) => x.heapUsedMiB);
  out('');
  out(`memory after GC, max/min over the sizes: RSS pre ${(Math.max(...pre) / Math.min(...pre)).toFixed(2)}× (${Math.min(...pre)}–${Math.max(...pre)} MiB), RSS post ${(Math.max(...rss) / Math.min(...rss)).toFixed(2)}× (${Math.min(...rss)}–${Math.max(...rss)} MiB), heap used ${(Math.max(...heap) / Math.min(...heap)).toFixed(2)}× (${Math.min(...heap)}–${Math.max(...heap)} MiB), while records grew ×${fmt(rows.at(-1)!.size / first.size)}`);
  const v = rows.filter((x) => x.verify);
  out(`RSS pre, anonymous / file-backed (/proc/self/status): ${rows.map((x) => `${fmt(x.size)}: ${x.rssAnonBeforeProofsMiB} / ${x.rssFileBeforeProofsMiB} MiB, ${x.threads} threads`).join('; ')}`);
  if (v.length) out(`verifyLedger: ${v.map((x) => `${fmt(x.size)}: ${fmt(x.verify!.perSec)} /s = ${x.verify!.ratio.toFixed(2)}× raw SHA-256 of the lines (${fmt(x.verify!.rawSha256LinesPerSec)} /s), ${x.verify!.ok ? 'ok' : 'FAILED'}`).join('; ')}`);
  out(`checkpoint signatures (newest at each size, opened with the broker key): ${rows.every((x) => x.checkpointSignatureOk) ? 'all ok' : 'SOME FAILED'}`);
  out(`build: ${r.buildSeconds} s in all${r.stoppedByTime ? ` — STOPPED by --max-seconds ${A.maxSeconds} at ${fmt(rows.at(-1)!.size)} records (asked ${fmt(rows.at(-1)!.target ?? A.sizes.at(-1)!)})` : ''}`);
  out(`proof / record failures: ${r.failures}`);
}

// ── part "clients" ───────────────────────────────────────────────────────────────────────────

const CLIENT_KINDS: readonly ServerKind[] = ['sink', 'plain', 'witness'];
const CONNECT_BATCH = 200;
const CONNECT_BUDGET_MS = 120_000;
const DRAIN_TIMEOUT_MS = 10_000;

function vmRssKiB(pid: number | undefined): number {
  return (pid === undefined ? undefined : procStatus(pid)?.VmRSS) ?? NaN;
}

interface ClientRun {
  kind: ServerKind;
  n: number;
  round: number;
  connected: number;
  connectFailures: number;
  firstConnectError?: string;
  connectsPerSec: number;
  rssEmptyMiB: number;
  rssIdleMiB: number;
  kibPerClient: number;
  rate: number;
  serverCpuUsPerMsg: number;
  generatorCpuPct: number;
  generatorRssMiB: number;
  errors: number;
  closes: number;
  peakRssMiB: number;
}

async function clientRun(kind: ServerKind, n: number, round: number, root: string): Promise<ClientRun> {
  const server = await ServerProcess.start(kind, kind === 'witness' ? { dataDir: join(root, `w-${n}-${round}`) } : {});
  servers.add(server);
  const trouble: Trouble = { errors: 0, closes: 0 };
  const clients: MqttClient[] = [];
  try {
    await sleep(300);
    const rssEmpty = vmRssKiB(server.pid);
    let failures = 0;
    let firstError: string | undefined;
    const c0 = performance.now();
    for (let b = 0; b < n && performance.now() - c0 < CONNECT_BUDGET_MS; b += CONNECT_BATCH) {
      const settled = await Promise.allSettled(Array.from({ length: Math.min(CONNECT_BATCH, n - b) }, (_, j) => connectClient(server.port, `scale-${kind}-${n}-${round}-${b + j}`, trouble)));
      for (const s of settled) {
        if (s.status === 'fulfilled') clients.push(s.value);
        else {
          failures++;
          firstError ??= (s.reason as Error).message;
        }
      }
    }
    const connectSeconds = (performance.now() - c0) / 1000;
    failures += n - clients.length - failures; // not attempted: the connect budget ran out
    await sleep(500);
    const rssIdle = vmRssKiB(server.pid);

    // Closed loop, QoS 1, 1 in flight per client.
    const payload = Buffer.alloc(64, 0x61);
    const st = pumpState();
    clients.forEach((c, i) => pumpQos1(c, i, `devices/c${i}/telemetry`, st, () => payload, 1, Infinity));
    await sleep(A.warmup * 1000);
    const u0: Usage = await server.usage();
    const g0 = process.cpuUsage();
    const a0 = st.acked;
    const t0 = performance.now();
    const windowMs = A.seconds * 1000;
    for (let left = windowMs; left > 0; left = windowMs - (performance.now() - t0)) await sleep(Math.min(100, left + 1));
    const u1: Usage = await server.usage();
    const seconds = (performance.now() - t0) / 1000;
    const counted = st.acked - a0;
    const g = process.cpuUsage(g0);
    const genRss = process.memoryUsage().rss;
    st.running = false;
    const drainEnd = Date.now() + DRAIN_TIMEOUT_MS;
    while (st.inflight > 0 && Date.now() < drainEnd) await sleep(20);
    // Closes by the server, before our own ends below add theirs.
    const closes = trouble.closes;
    await endAll(clients.splice(0));
    const final = await server.stop();
    servers.delete(server);
    return {
      kind,
      n,
      round,
      connected: n - failures,
      connectFailures: failures,
      ...(firstError ? { firstConnectError: firstError } : {}),
      connectsPerSec: Math.round((n - failures) / connectSeconds),
      rssEmptyMiB: +(rssEmpty / 1024).toFixed(1),
      rssIdleMiB: +(rssIdle / 1024).toFixed(1),
      kibPerClient: r3((rssIdle - rssEmpty) / Math.max(1, n - failures)),
      rate: Math.round(counted / seconds),
      serverCpuUsPerMsg: r3(counted > 0 ? (u1.userUs + u1.systemUs - u0.userUs - u0.systemUs) / counted : NaN),
      generatorCpuPct: Math.round(((g.user + g.system) / 1e6 / seconds) * 100),
      generatorRssMiB: +(genRss / MiB).toFixed(1),
      errors: trouble.errors + st.errors,
      closes,
      peakRssMiB: +(final.maxRssKiB / 1024).toFixed(1),
    };
  } catch (e) {
    await endAll(clients.splice(0)).catch(() => {});
    server.kill();
    servers.delete(server);
    throw e;
  }
}

interface ClientsResult {
  fsync: { start: { p50Ms: number; p99Ms: number }; end?: { p50Ms: number; p99Ms: number } };
  runs: ClientRun[];
  rows: Array<{
    n: number;
    byKind: Record<string, { rate: number; connectsPerSec: number; rssIdleMiB: number; rssEmptyMiB: number; kibPerClient: number; serverCpuUsPerMsg: number; generatorCpuPct: number; connected: number; peakRssMiB: number }>;
    witnessVsPlain: number;
    witnessVsPlainRounds: number[];
    plainVsSink: number;
    fsyncCeiling: number;
  }>;
}

async function clientsPart(): Promise<ClientsResult> {
  const root = tempDir('clients');
  const fsyncStart = fsyncProbe(root);
  progress(`clients: 4 KiB write + fdatasync p50 ${fsyncStart.p50Ms} ms, p99 ${fsyncStart.p99Ms} ms`);
  const runs: ClientRun[] = [];
  for (const n of A.counts) {
    for (let round = 1; round <= A.rounds; round++) {
      for (const kind of CLIENT_KINDS) {
        progress(`clients: N=${fmt(n)} round ${round}/${A.rounds} ${kind}: connecting`);
        const r = await clientRun(kind, n, round, root);
        runs.push(r);
        rmSync(join(root, `w-${n}-${round}`), { recursive: true, force: true });
        progress(
          `clients: N=${fmt(n)} round ${round} ${kind.padEnd(7)} connected ${fmt(r.connected)}/${fmt(n)} at ${fmt(r.connectsPerSec)} /s, RSS ${r.rssEmptyMiB}→${r.rssIdleMiB} MiB, ` +
            `${fmt(r.rate)} msg/s, server CPU ${r.serverCpuUsPerMsg.toFixed(1)} µs/msg, gen CPU ${r.generatorCpuPct}%${r.firstConnectError ? `, first connect error: ${r.firstConnectError}` : ''}`,
        );
      }
    }
  }
  const fsyncEnd = fsyncProbe(root);
  const rows = A.counts.map((n) => {
    const byKind: ClientsResult['rows'][number]['byKind'] = {};
    for (const kind of CLIENT_KINDS) {
      const rs = runs.filter((r) => r.n === n && r.kind === kind);
      const med = (f: (r: ClientRun) => number): number => median(rs.map(f));
      byKind[kind] = {
        rate: Math.round(med((r) => r.rate)),
        connectsPerSec: Math.round(med((r) => r.connectsPerSec)),
        rssIdleMiB: +med((r) => r.rssIdleMiB).toFixed(1),
        rssEmptyMiB: +med((r) => r.rssEmptyMiB).toFixed(1),
        kibPerClient: +med((r) => r.kibPerClient).toFixed(1),
        serverCpuUsPerMsg: +med((r) => r.serverCpuUsPerMsg).toFixed(2),
        generatorCpuPct: Math.round(med((r) => r.generatorCpuPct)),
        connected: Math.min(...rs.map((r) => r.connected)),
        peakRssMiB: Math.max(...rs.map((r) => r.peakRssMiB)),
      };
    }
    const rounds = Array.from({ length: A.rounds }, (_, i) => {
      const p = runs.find((r) => r.n === n && r.kind === 'plain' && r.round === i + 1);
      const w = runs.find((r) => r.n === n && r.kind === 'witness' && r.round === i + 1);
      return p && w ? r3(w.rate / p.rate) : NaN;
    });
    return {
      n,
      byKind,
      witnessVsPlain: r3(byKind.witness!.rate / byKind.plain!.rate),
      witnessVsPlainRounds: rounds,
      plainVsSink: r3(byKind.plain!.rate / byKind.sink!.rate),
      fsyncCeiling: Math.round((n * 1000) / fsyncStart.p50Ms),
    };
  });
  return { fsync: { start: fsyncStart, end: fsyncEnd }, runs, rows };
}

function printClients(r: ClientsResult): void {
  out('');
  out(`CLIENTS — N MQTT.js clients (MQTT 3.1.1, 127.0.0.1) on a fresh server each; QoS 1, 64 B, closed loop with 1 in flight per client;`);
  out(`median of ${A.rounds} round(s) × ${A.seconds} s after ${A.warmup} s warm-up; order per round: sink, plain, witness (metadata/off/fsync batch)`);
  out(`disk: 4 KiB write + fdatasync p50/p99 ${r.fsync.start.p50Ms}/${r.fsync.start.p99Ms} ms before, ${r.fsync.end?.p50Ms}/${r.fsync.end?.p99Ms} ms after (witness PUBACKs wait for one: ceiling ≈ N / p50)`);
  out('');
  out(
    `${'N'.padStart(7)}${'connected s/p/w'.padStart(22)}${'connects/s s/p/w'.padStart(24)}${'msg/s sink'.padStart(12)}${'plain'.padStart(9)}${'witness'.padStart(9)}${'w/plain'.padStart(9)}${'(rounds)'.padStart(13)}${'plain/sink'.padStart(11)}` +
      `${'fsync ceil'.padStart(12)}${'gen CPU s/p/w'.padStart(16)}`,
  );
  for (const x of r.rows) {
    const s = x.byKind.sink!;
    const p = x.byKind.plain!;
    const w = x.byKind.witness!;
    const range = x.witnessVsPlainRounds.filter(Number.isFinite);
    out(
      `${fmt(x.n).padStart(7)}${`${fmt(s.connected)}/${fmt(p.connected)}/${fmt(w.connected)}`.padStart(22)}${`${fmt(s.connectsPerSec)}/${fmt(p.connectsPerSec)}/${fmt(w.connectsPerSec)}`.padStart(24)}` +
        `${fmt(s.rate).padStart(12)}${fmt(p.rate).padStart(9)}${fmt(w.rate).padStart(9)}${`${x.witnessVsPlain.toFixed(2)}×`.padStart(9)}` +
        `${(range.length ? `${Math.min(...range).toFixed(2)}–${Math.max(...range).toFixed(2)}` : '—').padStart(13)}${`${x.plainVsSink.toFixed(2)}×`.padStart(11)}${fmt(x.fsyncCeiling).padStart(12)}` +
        `${`${s.generatorCpuPct}/${p.generatorCpuPct}/${w.generatorCpuPct}%`.padStart(16)}`,
    );
  }
  out('');
  out('server memory and CPU (RSS from /proc: before any client → idle with N connected; KiB/client = the difference / N; CPU µs per message, all threads)');
  out(`${'N'.padStart(7)}${'RSS MiB plain'.padStart(18)}${'witness'.padStart(16)}${'sink'.padStart(16)}${'KiB/client p/w/s'.padStart(22)}${'peak RSS p/w'.padStart(16)}${'CPU µs/msg p/w/s'.padStart(22)}${'w/p CPU'.padStart(9)}`);
  for (const x of r.rows) {
    const s = x.byKind.sink!;
    const p = x.byKind.plain!;
    const w = x.byKind.witness!;
    out(
      `${fmt(x.n).padStart(7)}${`${p.rssEmptyMiB}→${p.rssIdleMiB}`.padStart(18)}${`${w.rssEmptyMiB}→${w.rssIdleMiB}`.padStart(16)}${`${s.rssEmptyMiB}→${s.rssIdleMiB}`.padStart(16)}` +
        `${`${p.kibPerClient.toFixed(1)}/${w.kibPerClient.toFixed(1)}/${s.kibPerClient.toFixed(1)}`.padStart(22)}${`${p.peakRssMiB}/${w.peakRssMiB}`.padStart(16)}` +
        `${`${p.serverCpuUsPerMsg.toFixed(1)}/${w.serverCpuUsPerMsg.toFixed(1)}/${s.serverCpuUsPerMsg.toFixed(1)}`.padStart(22)}${`${(w.serverCpuUsPerMsg / p.serverCpuUsPerMsg).toFixed(2)}×`.padStart(9)}`,
    );
  }
  const failed = r.runs.filter((x) => x.connectFailures > 0);
  if (failed.length) out(`connect failures: ${failed.map((x) => `${x.kind} N=${x.n} round ${x.round}: ${x.connectFailures} (${x.firstConnectError ?? 'connect budget ran out'})`).join('; ')}`);
  const trouble = r.runs.filter((x) => x.errors > 0 || x.closes > 0);
  if (trouble.length) out(`client errors/closes: ${trouble.map((x) => `${x.kind} N=${x.n} r${x.round}: ${x.errors} errors, ${x.closes} closes`).join('; ')}`);
  out(`load generator RSS at the end of each window: ${r.rows.map((x) => `N=${fmt(x.n)} ${Math.max(...r.runs.filter((y) => y.n === x.n).map((y) => y.generatorRssMiB))} MiB`).join(', ')}`);
}

// ── main ─────────────────────────────────────────────────────────────────────────────────────

async function main(): Promise<number> {
  try {
    A = args();
  } catch (e) {
    if (e instanceof UsageError) {
      process.stderr.write(`scale: ${e.message}\nusage: node dist/bench/scale.js [--part clients|ledger|all] [--sizes 1e5,1e6,1e7] [--k N] [--consistency-k N] [--verify-max N] [--max-seconds S] [--seed N] [--counts 100,1000,10000] [--rounds R] [--seconds S] [--warmup S] [--json]\n`);
      return 2;
    }
    throw e;
  }
  const startedAt = new Date().toISOString();
  const loadStart = loadavg().map((x) => +x.toFixed(2));
  const machine = machineInfo();
  let ledger: Awaited<ReturnType<typeof ledgerPart>> | undefined;
  let clients: ClientsResult | undefined;
  if (!A.json) {
    out(`machine: ${formatMachine(machine)}`);
    out(`started ${startedAt}; load average (1/5/15 min) at start: ${loadStart.join(' ')} on ${machine.cores} cores; temp dirs under ${tmpdir()}`);
  }
  if (A.part !== 'clients') {
    ledger = await ledgerPart();
    if (!A.json) printLedger(ledger);
  }
  if (A.part !== 'ledger') {
    clients = await clientsPart();
    if (!A.json) printClients(clients);
  }
  const loadEnd = loadavg().map((x) => +x.toFixed(2));
  const ok = (ledger?.failures ?? 0) === 0;
  if (A.json) {
    out(JSON.stringify({ bench: 'scale', startedAt, endedAt: new Date().toISOString(), machine, loadAverage: { start: loadStart, end: loadEnd }, options: A, ledger, clients, ok }, null, 2));
  } else {
    out('');
    out(`load average at end: ${loadEnd.join(' ')}; ${ok ? 'every proof verified' : 'SOME PROOFS OR CHECKS FAILED'}`);
  }
  return ok ? 0 : 1;
}

main().then(
  (code) => {
    cleanup();
    process.exit(code);
  },
  (e: unknown) => {
    process.stderr.write(`scale: ${(e as Error).stack ?? String(e)}\n`);
    cleanup();
    process.exit(1);
  },
);
