/**
 * Envelope `enforce` throughput (issue 7): the synchronous EnvelopeChecker on one core (the
 * baseline: decode → key lookup → Ed25519 verify with node:crypto → topic → chain state, all on the
 * main thread) against AsyncEnvelopeChecker on a VerifyPool with 1, 2, 3 worker threads and several
 * batch sizes, measured in the same run, same envelopes, median of several rounds, with the ratio
 * to the baseline (target ≥ 1.0×).
 *
 *   node dist/bench/verify-pool.js [--seconds S] [--rounds R] [--clients N] [--json]
 *
 * Load: N clients (default 100), one device each, each with ONE check in flight at a time (aedes
 * hands the broker one packet of a client at a time), closed loop. The envelopes (265 B, 64 B
 * payload) are signed up front, 100 per device, and cycled: after the first pass the verdict is
 * `replayed`, which is still a full decode + verify + chain lookup, so every row does the same
 * work per message. Also printed: the postMessage round trip of a batch (no verifying) for 1 and
 * 64 jobs, the pool's mean batch size and the share verified on the main thread, process CPU
 * (all threads) per wall second and checks per CPU-second (the per-core efficiency, which the
 * scheduler's share of a loaded machine does not distort), and the load average (this machine's
 * 2 cores are shared with other jobs: under load, more threads also win a bigger share of them).
 */
import { loadavg } from 'node:os';
import { formatMachine, machineInfo, median } from './machine.js';
import { EnvelopeChecker, type KeyLookup } from '../broker/envelope-check.js';
import { AsyncEnvelopeChecker, VerifyPool, type VerifyPoolOptions } from '../broker/verify-pool.js';
import { deviceKid, keyHash } from '../shared/keys/key-id.js';
import { publicKeyFromSeed, verifyOrThrow } from '../shared/keys/ed25519.js';
import { envelopeHash, GENESIS_PREV, signEnvelope, decodeEnvelope } from '../shared/envelope/index.js';
import { sigStructure } from '../shared/envelope/cose-sign1.js';

const args = process.argv.slice(2);
const opt = (name: string, dflt: number): number => {
  const i = args.indexOf(name);
  const v = i >= 0 ? Number(args[i + 1]) : dflt;
  if (!Number.isFinite(v) || v <= 0) {
    console.error('usage: node dist/bench/verify-pool.js [--seconds S] [--rounds R] [--clients N] [--json]');
    process.exit(2);
  }
  return v;
};
const seconds = opt('--seconds', 1.5);
const rounds = opt('--rounds', 3);
const clients = opt('--clients', 100);
const json = args.includes('--json');
const PER_DEVICE = 100;
const NOW = 1_700_000_000_000;

// ── fixtures ──────────────────────────────────────────────────────────────────────────────────
const keys = new Map<string, { pk: Uint8Array; hash: string }>();
const lookup: KeyLookup = {
  lookup(deviceId, kh) {
    const k = keys.get(deviceId);
    if (!k || k.hash !== Buffer.from(kh).toString('hex')) return { status: 'unknown' };
    return { status: 'active', publicKey: k.pk };
  },
};
const streams: { client: string; topic: string; envs: Uint8Array[] }[] = [];
const payload = new TextEncoder().encode(JSON.stringify({ t: 21.5, unit: 'C', sensor: 'pt100', ok: true, n: 123456 }).padEnd(64, ' '));
for (let d = 0; d < clients; d++) {
  const seed = new Uint8Array(32).map((_, i) => (i * 13 + d * 101 + 1) & 0xff);
  const id = `bench-${d}`;
  const pk = publicKeyFromSeed(seed);
  keys.set(id, { pk, hash: Buffer.from(keyHash(id, pk)).toString('hex') });
  const kid = deviceKid(id, pk);
  const topic = `plant/${d % 10}/line/${d}/temperature`;
  let prev = GENESIS_PREV;
  const envs: Uint8Array[] = [];
  for (let s = 0; s < PER_DEVICE; s++) {
    const env = signEnvelope({ seed, kid, claims: { time: NOW - 10, uncertainty: 20, timeSource: 'ntp', seq: s, prev, topic }, payload });
    prev = envelopeHash(env);
    envs.push(env);
  }
  streams.push({ client: `c${d}`, topic, envs });
}
const envelopeBytes = streams[0]!.envs[0]!.length;

// ── measurements ──────────────────────────────────────────────────────────────────────────────
interface Sample {
  rate: number;
  cpu: number;
  /** Main-thread busy time per check, µs (the event loop's cost: what the broker loses per publish). */
  mainUs: number;
}

/** Checks per second of the synchronous checker, round-robin over the clients, main thread only. */
function baseline(): Sample {
  const c = new EnvelopeChecker({ keys: lookup });
  const run = (ms: number): number => {
    const end = performance.now() + ms;
    let n = 0;
    let i = 0;
    while (performance.now() < end) {
      for (let k = 0; k < 16; k++, i++) {
        const s = streams[i % clients]!;
        c.check(s.topic, s.envs[Math.floor(i / clients) % PER_DEVICE]!, NOW, 5);
      }
      n += 16;
    }
    return n;
  };
  run(200);
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  const n = run(seconds * 1000);
  const wall = performance.now() - t0;
  const cpu = process.cpuUsage(cpu0);
  return { rate: (n * 1000) / wall, cpu: (cpu.user + cpu.system) / 1000 / wall, mainUs: (wall * 1000) / n };
}

/** Raw strict verify of one Sig_structure, main thread (the floor under the baseline). */
function rawVerify(): number {
  const s = streams[0]!;
  const env = decodeEnvelope(s.envs[0]!);
  const msg = sigStructure(env.protectedBytes, env.payload);
  const pk = keys.get('bench-0')!.pk;
  const end = performance.now() + seconds * 1000;
  const t0 = performance.now();
  let n = 0;
  while (performance.now() < end) {
    for (let k = 0; k < 16; k++) verifyOrThrow(pk, msg, env.signature);
    n += 16;
  }
  return (n * 1000) / (performance.now() - t0);
}

/** Closed loop through AsyncEnvelopeChecker: each client one check in flight. */
async function pooled(o: VerifyPoolOptions): Promise<Sample & { batch: number; mainShare: number }> {
  const pool = new VerifyPool(o);
  const c = new AsyncEnvelopeChecker({ keys: lookup, pool });
  const drive = async (ms: number): Promise<number> => {
    let stop = false;
    let n = 0;
    const timer = setTimeout(() => (stop = true), ms);
    await Promise.all(
      streams.map(async (s, d) => {
        let i = d;
        while (!stop) {
          await c.check(s.client, s.topic, s.envs[i++ % PER_DEVICE]!, NOW, 5);
          n++;
        }
      }),
    );
    clearTimeout(timer);
    return n;
  };
  try {
    await drive(300);
    const st0 = pool.stats();
    const cpu0 = process.cpuUsage();
    const elu0 = performance.eventLoopUtilization();
    const t0 = performance.now();
    const n = await drive(seconds * 1000);
    const wall = performance.now() - t0;
    const elu = performance.eventLoopUtilization(elu0);
    const cpu = process.cpuUsage(cpu0);
    const st = pool.stats();
    const jobs = st.jobs - st0.jobs;
    const mainJobs = st.mainJobs - st0.mainJobs;
    return {
      rate: (n * 1000) / wall,
      cpu: (cpu.user + cpu.system) / 1000 / wall,
      mainUs: (elu.active * 1000) / n,
      batch: (jobs - mainJobs) / Math.max(1, st.batches - st0.batches),
      mainShare: mainJobs / Math.max(1, jobs),
    };
  } finally {
    await pool.close();
  }
}

/**
 * CPU µs per check on the main thread: the synchronous checker (everything), and
 * AsyncEnvelopeChecker with a verifier that answers at once (decode, hash, lookup, promise
 * chains, chain state: what stays on the event loop when the pool verifies). CPU time, not wall,
 * so other jobs on the machine do not inflate it.
 */
async function mainCost(): Promise<{ sync: number; asyncNoVerify: number }> {
  const c = new EnvelopeChecker({ keys: lookup });
  let cpu0 = process.cpuUsage();
  let n = 0;
  for (let r = 0; r < 3; r++) {
    for (let i = 0; i < 2000; i++, n++) {
      const s = streams[i % clients]!;
      c.check(s.topic, s.envs[Math.floor(i / clients) % PER_DEVICE]!, NOW, 5);
    }
  }
  let cpu = process.cpuUsage(cpu0);
  const sync = (cpu.user + cpu.system) / n;
  const a = new AsyncEnvelopeChecker({ keys: lookup, pool: { verifyOne: () => Promise.resolve(null) } });
  const run = async (count: number): Promise<void> => {
    await Promise.all(
      streams.map(async (s, d) => {
        for (let i = 0; i < count; i++) await a.check(s.client, s.topic, s.envs[(d + i) % PER_DEVICE]!, NOW, 5);
      }),
    );
  };
  await run(100);
  cpu0 = process.cpuUsage();
  await run(500);
  cpu = process.cpuUsage(cpu0);
  return { sync, asyncNoVerify: (cpu.user + cpu.system) / (500 * clients) };
}

/** µs per round trip of an n-job batch (postMessage both ways, transfer, no verify). */
async function transport(n: number): Promise<number> {
  const pool = new VerifyPool({ threads: 1 });
  try {
    for (let i = 0; i < 200; i++) await pool.transportRoundTrip(n, envelopeBytes);
    const t0 = performance.now();
    let k = 0;
    while (performance.now() - t0 < 500) {
      await pool.transportRoundTrip(n, envelopeBytes);
      k++;
    }
    return ((performance.now() - t0) * 1000) / k;
  } finally {
    await pool.close();
  }
}

interface Config {
  name: string;
  o: VerifyPoolOptions;
}
const configs: Config[] = [];
for (const threads of [1, 2, 3]) {
  for (const batchMax of [1, 16, 64]) configs.push({ name: `${threads} worker(s), batch ≤ ${batchMax}`, o: { threads, batchMax } });
}
for (const threads of [1, 2]) configs.push({ name: `${threads} worker(s), batch ≤ 32, + main when busy`, o: { threads, batchMax: 32, mainThread: 'when-busy' } });

const load0 = loadavg();
const rt1 = await transport(1);
const rt64 = await transport(64);
const cost = await mainCost();
const raw: number[] = [];
const base: Sample[] = [];
// Each configuration is measured right after its own baseline and the ratio taken pairwise: the
// load from other jobs drifts over a run, and a pair sees (nearly) the same load.
const results = new Map<string, (Sample & { batch: number; mainShare: number; ratio: number; baseRate: number })[]>();
for (let r = 0; r < rounds; r++) {
  raw.push(rawVerify());
  for (const cfg of configs) {
    const b = baseline();
    base.push(b);
    const s = await pooled(cfg.o);
    (results.get(cfg.name) ?? results.set(cfg.name, []).get(cfg.name)!).push({ ...s, ratio: s.rate / b.rate, baseRate: b.rate });
  }
}
const load1 = loadavg();

const baseRate = median(base.map((b) => b.rate));
const baseCpu = median(base.map((b) => b.cpu));
const rows = configs.map((cfg) => {
  const ss = results.get(cfg.name)!;
  return {
    config: cfg.name,
    rate: median(ss.map((s) => s.rate)),
    /** Median of the pairwise ratios to the baseline measured just before. */
    ratio: median(ss.map((s) => s.ratio)),
    cpu: median(ss.map((s) => s.cpu)),
    mainUs: median(ss.map((s) => s.mainUs)),
    /** Checks per CPU-second relative to the baseline's, pairwise. */
    efficiency: median(ss.map((s) => s.rate / s.cpu)) / (baseRate / baseCpu),
    batch: median(ss.map((s) => s.batch)),
    mainShare: median(ss.map((s) => s.mainShare)),
    rounds: ss.map((s) => `${Math.round(s.rate)}/${Math.round(s.baseRate)}`),
  };
});
const machine = { ...machineInfo(), openssl: process.versions.openssl };
const out = {
  bench: 'verify-pool',
  machine,
  loadavg: { start: load0, end: load1 },
  seconds,
  rounds,
  clients,
  envelopeBytes,
  rawVerifyPerSec: median(raw),
  baseline: { rate: baseRate, cpu: baseCpu, mainUs: median(base.map((b) => b.mainUs)), samples: base.map((b) => Math.round(b.rate)) },
  mainCpuUsPerCheck: cost,
  transportUs: { batch1: rt1, batch64: rt64, perJobAt64: rt64 / 64 },
  rows,
};

if (json) {
  console.log(JSON.stringify(out, null, 2));
} else {
  const fmt = (n: number): string => Math.round(n).toLocaleString('en-US');
  console.log(`machine: ${formatMachine(machine)} · OpenSSL ${machine.openssl}`);
  console.log(`load average: start ${load0.map((x) => x.toFixed(2)).join(' ')} · end ${load1.map((x) => x.toFixed(2)).join(' ')}`);
  console.log(`${clients} clients, one check in flight each; ${envelopeBytes} B envelopes; ${rounds} rounds × ${seconds} s, medians`);
  console.log('ratio: checks/s over the baseline measured just before (pairwise, median); CPU: cores the process got (all threads);');
  console.log('per CPU-s: checks per CPU-second over the baseline\'s (the cost of the pool machinery, independent of the CPU share);');
  console.log('loop µs/check: main-thread (event loop) busy time per check, wall-clock (includes time preempted by other jobs)');
  console.log(`raw strict verify (main thread): ${fmt(out.rawVerifyPerSec)}/s`);
  console.log(`main-thread CPU per check: EnvelopeChecker (all of it) ${cost.sync.toFixed(1)} µs · AsyncEnvelopeChecker without the verify ${cost.asyncNoVerify.toFixed(1)} µs`);
  console.log(`postMessage round trip (no verify): batch of 1 ${rt1.toFixed(1)} µs · batch of 64 ${rt64.toFixed(1)} µs (${(rt64 / 64).toFixed(2)} µs/job)`);
  const head = ['configuration', 'checks/s', 'ratio', 'CPU', 'per CPU-s', 'loop µs/check', 'batch', 'main %', 'rounds (pool/baseline)'];
  const lines = [
    ['baseline: EnvelopeChecker, main thread', fmt(baseRate), '1.00x', baseCpu.toFixed(2), '1.00x', out.baseline.mainUs.toFixed(1), '—', '100', `median of ${base.length}`],
    ...rows.map((r) => [r.config, fmt(r.rate), `${r.ratio.toFixed(2)}x`, r.cpu.toFixed(2), `${r.efficiency.toFixed(2)}x`, r.mainUs.toFixed(1), r.batch.toFixed(1), (r.mainShare * 100).toFixed(0), r.rounds.join(' ')]),
  ];
  const w = head.map((h, i) => Math.max(h.length, ...lines.map((l) => l[i]!.length)));
  const row = (l: string[]): string => l.map((c, i) => (i === 0 ? c.padEnd(w[i]!) : c.padStart(w[i]!))).join('  ');
  console.log(row(head));
  for (const l of lines) console.log(row(l));
}
