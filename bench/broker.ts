/**
 * Broker publish throughput: `witness broker` (audit level metadata, envelope off, fsync batch)
 * vs plain aedes 1.2 (same listener, no plugin), both measured in the same run, QoS 0 and QoS 1,
 * printed as the ratio witness/plain (issue 3 §Benchmarks; issue-7 targets shown for context).
 *
 * - Each server runs in a child of its own (bench/broker-server.ts), fresh each round; a round
 *   runs sink, plain, witness in turn (A B A B …) so that machine noise falls on all of them.
 * - Load, all in this process (MQTT.js 5, MQTT 3.1.1, clean sessions, 127.0.0.1 only): P
 *   publishers on one topic with 256-byte payloads and one subscriber (QoS 0) on that topic.
 *     QoS 0: each publisher writes as fast as TCP flow control lets it (bursts of 64 per turn
 *            of the event loop: bench/load.ts pumpQos0, then it waits for `drain` if the socket buffer is full). Rate =
 *            messages the SUBSCRIBER received per second: a QoS 0 publisher-side rate counts
 *            bytes parked in socket buffers, not messages the broker handled.
 *     QoS 1: each publisher keeps W publishes in flight. Rate = PUBACKs per second.
 *   The subscriber takes QoS 0 for every load so the broker's delivery side stays as light as it
 *   can be: the audit's share of the work shows fully (a QoS 1 subscription would add the same
 *   work to both brokers and flatter the ratio). Socket options are the defaults on both sides
 *   (Nagle on), as broker/server.ts and MQTT.js leave them.
 * - Per measurement: a warm-up, then a window of --seconds or --max-messages, whichever ends
 *   first; the publishers then stop, in-flight messages drain and the clients disconnect.
 * - The sink (a relay that answers at once, bench/broker-server.ts) is the load generator's own
 *   ceiling, measured the same way in the same run; this process's CPU during each window is
 *   printed as well (this machine may have few cores: the generator and the broker share them).
 *
 * Usage: node dist/bench/broker.js [--seconds S] [--rounds R] [--warmup S] [--max-messages N] [--json]
 *                                  [--loads qos0,qos1,qos1-1k]   a subset of the loads (default all)
 *                                  [--cpu-prof DIR]   profile the Witness children (rates then
 *                                                     carry the profiler's cost) and print self time
 */
import { mkdtempSync, mkdirSync, readdirSync, readFileSync, rmSync, statfsSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { randomBytes } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { parseArgs } from 'node:util';
import type { MqttClient } from 'mqtt';
import { machineInfo, formatMachine, median } from './machine.js';
import type { ServerKind } from './broker-server.js';
import { CONNECT_TIMEOUT_MS, ServerProcess, connectClient, endAll, fsyncProbe, positive, pumpQos0, pumpQos1, pumpState, withTimeout, type Trouble } from './load.js';

const { values } = parseArgs({
  options: {
    seconds: { type: 'string' },
    rounds: { type: 'string' },
    warmup: { type: 'string' },
    'max-messages': { type: 'string' },
    json: { type: 'boolean' },
    'cpu-prof': { type: 'string' },
    loads: { type: 'string' },
  },
});

/** Length of one measurement window, s. Default 5. */
const SECONDS = positive('seconds', values.seconds, 5);
/** Rounds (each: sink, plain, witness). Default 5. */
const ROUNDS = Math.round(positive('rounds', values.rounds, 5));
/** Warm-up before each window, s (excluded). Default 1. */
const WARMUP = positive('warmup', values.warmup, 1);
/** A window also ends once it counted this many messages. Default 5,000,000. */
const MAX_MESSAGES = Math.round(positive('max-messages', values['max-messages'], 5_000_000));
const PROFILE_DIR = values['cpu-prof'] === undefined ? undefined : resolve(values['cpu-prof']);

const TOPIC = 'bench/throughput';
const PAYLOAD = randomBytes(256);
/** Bound on the drain after each window. */
const DRAIN_TIMEOUT_MS = 15_000;

interface Load {
  name: string;
  label: string;
  qos: 0 | 1;
  publishers: number;
  /** QoS 1 publishes in flight per publisher. */
  window: number;
  /** Issue-7 target for witness/plain, where it names one for this load. */
  target?: number;
}

const ALL_LOADS: readonly Load[] = [
  { name: 'qos0', label: 'QoS 0, 10 publishers', qos: 0, publishers: 10, window: 0, target: 0.9 },
  { name: 'qos1', label: 'QoS 1, 10 × 10 in flight', qos: 1, publishers: 10, window: 10 },
  { name: 'qos1-1k', label: 'QoS 1, 100 × 10 in flight', qos: 1, publishers: 100, window: 10, target: 0.85 },
];
/** --loads qos0,qos1,qos1-1k (default all): e.g. to profile one load alone. */
const LOADS = values.loads === undefined ? ALL_LOADS : values.loads.split(',').map((name) => {
  const l = ALL_LOADS.find((x) => x.name === name);
  if (!l) throw new Error(`--loads: unknown load ${JSON.stringify(name)}; expected some of ${ALL_LOADS.map((x) => x.name).join(', ')}`);
  return l;
});
const KINDS: readonly ServerKind[] = ['sink', 'plain', 'witness'];

interface Subscriber {
  client: MqttClient;
  received: number;
}

async function subscribe(port: number, trouble: Trouble): Promise<Subscriber> {
  const client = await connectClient(port, 'bench-subscriber', trouble);
  const sub: Subscriber = { client, received: 0 };
  client.on('message', () => sub.received++);
  await withTimeout(client.subscribeAsync(TOPIC, { qos: 0 }), CONNECT_TIMEOUT_MS, 'no SUBACK');
  return sub;
}

// ── publishers ───────────────────────────────────────────────────────────────────────────────

// ── one measurement ──────────────────────────────────────────────────────────────────────────

interface Measurement {
  /** Messages per second in the window: received by the subscriber (QoS 0), PUBACKs (QoS 1). */
  rate: number;
  seconds: number;
  counted: number;
  /** What the publishers handed to MQTT.js in the window, per second (QoS 0: not a throughput). */
  publisherRate: number;
  /** Server CPU (user + system, all threads) per 100,000 counted messages, s. */
  serverCpuPer100k: number;
  /** Its system (kernel) part: socket and file writes, fdatasync. */
  serverSysPer100k: number;
  /** This process's CPU in the window, % of one core. */
  generatorCpuPct: number;
  /** Over the whole load: sent, received by the subscriber, acked (QoS 1), errors. */
  sent: number;
  received: number;
  acked: number;
  errors: number;
}

async function measure(server: ServerProcess, sub: Subscriber, load: Load, round: number, trouble: Trouble): Promise<Measurement> {
  const pubs = await Promise.all(Array.from({ length: load.publishers }, (_, i) => connectClient(server.port, `bench-${round}-${load.name}-${i}`, trouble)));
  const st = pumpState();
  const next = (): Buffer => PAYLOAD;
  const counter = load.qos === 0 ? (): number => sub.received : (): number => st.acked;
  const receivedAtStart = sub.received;
  // Hard cap per publisher (warm-up included), so that no loop is unbounded in count.
  const cap = Math.ceil((2 * MAX_MESSAGES) / load.publishers);
  for (const c of pubs) {
    if (load.qos === 0) pumpQos0(c, 0, TOPIC, st, next, cap);
    else pumpQos1(c, 0, TOPIC, st, next, load.window, cap);
  }
  await sleep(WARMUP * 1000);

  const u0 = await server.usage();
  const t0 = process.hrtime.bigint();
  const g0 = process.cpuUsage();
  const n0 = counter();
  const s0 = st.sent;
  const windowNs = BigInt(Math.round(SECONDS * 1e9));
  for (;;) {
    const left = windowNs - (process.hrtime.bigint() - t0);
    if (left <= 0n || counter() - n0 >= MAX_MESSAGES) break;
    await sleep(Math.min(50, Number(left / 1_000_000n) + 1));
  }
  const u1 = await server.usage();
  const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
  const g = process.cpuUsage(g0);
  const counted = counter() - n0;
  const sentInWindow = st.sent - s0;

  // Stop, let what is in flight arrive (bounded), disconnect.
  st.running = false;
  const drainEnd = Date.now() + DRAIN_TIMEOUT_MS;
  while (st.inflight > 0 && Date.now() < drainEnd) await sleep(20);
  for (let last = -1; sub.received !== last && Date.now() < drainEnd; ) {
    last = sub.received;
    await sleep(200);
  }
  await endAll(pubs);

  const cpuUs = u1.userUs + u1.systemUs - (u0.userUs + u0.systemUs);
  return {
    rate: counted / seconds,
    seconds,
    counted,
    publisherRate: sentInWindow / seconds,
    serverCpuPer100k: counted > 0 ? (cpuUs / 1e6 / counted) * 1e5 : NaN,
    serverSysPer100k: counted > 0 ? ((u1.systemUs - u0.systemUs) / 1e6 / counted) * 1e5 : NaN,
    generatorCpuPct: ((g.user + g.system) / 1e6 / seconds) * 100,
    sent: st.sent,
    received: sub.received - receivedAtStart,
    acked: st.acked,
    errors: st.errors,
  };
}

// ── the CPU profile: self time by function and by module ─────────────────────────────────────

interface CpuProfile {
  nodes: Array<{ id: number; callFrame: { functionName: string; url: string; lineNumber: number } }>;
  samples: number[];
  timeDeltas: number[];
}

interface ProfileSummary {
  files: number;
  /** Sampled time without (idle), ms. */
  busyMs: number;
  byFunction: Array<{ name: string; ms: number; pct: number }>;
  byModule: Array<{ name: string; ms: number; pct: number }>;
}

function shortUrl(url: string): string {
  const u = url.replace(/^file:\/\//, '');
  const nm = u.lastIndexOf('/node_modules/');
  if (nm >= 0) return u.slice(nm + '/node_modules/'.length);
  const d = u.lastIndexOf('/dist/');
  return d >= 0 ? u.slice(d + '/dist/'.length) : u;
}

function moduleOf(url: string, fn: string): string {
  if (fn.startsWith('(')) return fn; // (garbage collector), (program), (idle), (root)
  if (url === '') return '(native: syscalls, crypto, buffers)';
  if (url.startsWith('node:')) return url.split('/').slice(0, 2).join('/');
  const s = shortUrl(url);
  if (url.includes('/node_modules/')) {
    const parts = s.split('/');
    return parts[0]!.startsWith('@') ? parts.slice(0, 2).join('/') : parts[0]!;
  }
  return `witness: ${s}`;
}

function summariseProfiles(dir: string, top: number): ProfileSummary {
  const files = readdirSync(dir).filter((f) => f.endsWith('.cpuprofile'));
  const byFn = new Map<string, number>();
  const byMod = new Map<string, number>();
  let busy = 0;
  for (const f of files) {
    const p = JSON.parse(readFileSync(join(dir, f), 'utf8')) as CpuProfile;
    const nodes = new Map(p.nodes.map((n) => [n.id, n.callFrame]));
    for (let i = 0; i < p.samples.length; i++) {
      const cf = nodes.get(p.samples[i]!);
      const us = p.timeDeltas[i] ?? 0;
      if (!cf || cf.functionName === '(idle)') continue;
      busy += us;
      const fn = cf.functionName || '(anonymous)';
      const key = cf.url ? `${fn} ${shortUrl(cf.url)}:${cf.lineNumber + 1}` : fn;
      byFn.set(key, (byFn.get(key) ?? 0) + us);
      const m = moduleOf(cf.url, fn);
      byMod.set(m, (byMod.get(m) ?? 0) + us);
    }
  }
  const rank = (m: Map<string, number>): ProfileSummary['byFunction'] =>
    [...m.entries()]
      .sort((a, b) => b[1] - a[1])
      .slice(0, top)
      .map(([name, us]) => ({ name, ms: Math.round(us / 1000), pct: +((100 * us) / busy).toFixed(1) }));
  return { files: files.length, busyMs: Math.round(busy / 1000), byFunction: rank(byFn), byModule: rank(byMod) };
}

// ── the run ──────────────────────────────────────────────────────────────────────────────────

const TMPFS_MAGIC = 0x01021994;
const loadAtStart = loadavg()[0]!;
const root = mkdtempSync(join(tmpdir(), 'witness-bench-broker-'));
const onTmpfs = statfsSync(root).type === TMPFS_MAGIC;
if (PROFILE_DIR) mkdirSync(PROFILE_DIR, { recursive: true });
const fsyncAtStart = fsyncProbe(root);

type PerLoad = Record<string, Measurement[]>;
const results: Record<ServerKind, PerLoad> = { sink: {}, plain: {}, witness: {} };
const peakRssKiB: Record<ServerKind, number[]> = { sink: [], plain: [], witness: [] };
const witnessRecords: number[] = [];
const trouble: Trouble = { errors: 0, closes: 0 };
let expectedCloses = 0;
let current: ServerProcess | undefined;

try {
  for (let round = 1; round <= ROUNDS; round++) {
    for (const kind of KINDS) {
      const server = (current = await ServerProcess.start(kind, {
        ...(kind === 'witness' ? { dataDir: join(root, `witness-${round}`) } : {}),
        ...(PROFILE_DIR && kind === 'witness' ? { nodeFlags: ['--cpu-prof', '--cpu-prof-dir', PROFILE_DIR] } : {}),
      }));
      const sub = await subscribe(server.port, trouble);
      for (const load of LOADS) {
        const m = await measure(server, sub, load, round, trouble);
        expectedCloses += load.publishers;
        (results[kind][load.name] ??= []).push(m);
        if (!values.json) {
          process.stderr.write(`round ${round}/${ROUNDS} ${kind.padEnd(7)} ${load.name.padEnd(8)} ${Math.round(m.rate).toLocaleString('en-US').padStart(9)} /s` + `  server CPU ${m.serverCpuPer100k.toFixed(2)} s/100k  generator CPU ${Math.round(m.generatorCpuPct)}%\n`);
        }
      }
      await endAll([sub.client]);
      expectedCloses += 1;
      const final = await server.stop();
      current = undefined;
      peakRssKiB[kind].push(final.maxRssKiB);
      if (kind === 'witness' && final.records !== undefined) witnessRecords.push(final.records);
      rmSync(join(root, `witness-${round}`), { recursive: true, force: true });
    }
  }

  const med = (kind: ServerKind, load: string, f: (m: Measurement) => number): number => median((results[kind][load] ?? []).map(f));
  const table = LOADS.map((load) => {
    const rate = (k: ServerKind): number => med(k, load.name, (m) => m.rate);
    const perRound = (results.witness[load.name] ?? []).map((w, i) => w.rate / results.plain[load.name]![i]!.rate);
    return {
      load: load.name,
      label: load.label,
      qos: load.qos,
      inFlight: load.qos === 1 ? load.publishers * load.window : null,
      sinkPerSec: Math.round(rate('sink')),
      plainPerSec: Math.round(rate('plain')),
      witnessPerSec: Math.round(rate('witness')),
      ratio: +(rate('witness') / rate('plain')).toFixed(3),
      ratioRange: [+Math.min(...perRound).toFixed(3), +Math.max(...perRound).toFixed(3)],
      target: load.target ?? null,
      plainVsSink: +(rate('plain') / rate('sink')).toFixed(3),
      serverCpuPer100k: {
        plain: +med('plain', load.name, (m) => m.serverCpuPer100k).toFixed(3),
        witness: +med('witness', load.name, (m) => m.serverCpuPer100k).toFixed(3),
        sink: +med('sink', load.name, (m) => m.serverCpuPer100k).toFixed(3),
      },
      serverSysPer100k: {
        plain: +med('plain', load.name, (m) => m.serverSysPer100k).toFixed(3),
        witness: +med('witness', load.name, (m) => m.serverSysPer100k).toFixed(3),
      },
      generatorCpuPct: {
        sink: Math.round(med('sink', load.name, (m) => m.generatorCpuPct)),
        plain: Math.round(med('plain', load.name, (m) => m.generatorCpuPct)),
        witness: Math.round(med('witness', load.name, (m) => m.generatorCpuPct)),
      },
      qos0PublisherSidePerSec:
        load.qos === 0 ? { plain: Math.round(med('plain', load.name, (m) => m.publisherRate)), witness: Math.round(med('witness', load.name, (m) => m.publisherRate)) } : null,
    };
  });
  const lost = KINDS.flatMap((k) => LOADS.map((l) => ({ k, l, ms: results[k][l.name] ?? [] }))).flatMap(({ k, l, ms }) =>
    ms.filter((m) => m.received !== m.sent || m.errors > 0).map((m) => `${k} ${l.name}: sent ${m.sent}, received ${m.received}, acked ${m.acked}, errors ${m.errors}`),
  );
  const peakMiB = (k: ServerKind): number => +(Math.max(...peakRssKiB[k]) / 1024).toFixed(1);
  const result = {
    machine: machineInfo(),
    /** 1-minute load average at start and end: other work on the machine shows here. */
    loadAverage: [+loadAtStart.toFixed(2), +loadavg()[0]!.toFixed(2)],
    dataDirFs: onTmpfs ? 'tmpfs' : 'disk',
    /** 4 KiB write + fdatasync in the data directory's file system, before and after the rounds. */
    fsync: { start: fsyncAtStart, end: fsyncProbe(root) },
    seconds: SECONDS,
    warmupSeconds: WARMUP,
    rounds: ROUNDS,
    payloadBytes: PAYLOAD.length,
    profiled: PROFILE_DIR !== undefined,
    table,
    peakRssMiB: { sink: peakMiB('sink'), plain: peakMiB('plain'), witness: peakMiB('witness') },
    witnessRecordsPerRound: median(witnessRecords),
    clientTrouble: { errors: trouble.errors, unexpectedCloses: trouble.closes - expectedCloses },
    deliveryMismatches: lost,
    raw: results,
    profile: PROFILE_DIR ? summariseProfiles(PROFILE_DIR, 25) : undefined,
  };

  if (values.json) console.log(JSON.stringify(result, null, 2));
  else {
    const n = (x: number): string => Math.round(x).toLocaleString('en-US');
    console.log(`machine: ${formatMachine(result.machine)} · load average ${result.loadAverage[0]} at start, ${result.loadAverage[1]} at end`);
    console.log(
      `publish throughput, ${PAYLOAD.length}-byte payloads, one QoS 0 subscriber; median of ${ROUNDS} rounds × ${SECONDS} s (after ${WARMUP} s warm-up); ` +
        `rate = messages received by the subscriber (QoS 0) / PUBACKs (QoS 1) per second`,
    );
    if (result.profiled) console.log('PROFILED RUN: the Witness children ran with --cpu-prof; their rates carry the profiler cost');
    console.log(`4 KiB write + fdatasync on the data disk: p50 ${result.fsync.start.p50Ms} ms, p99 ${result.fsync.start.p99Ms} ms before; p50 ${result.fsync.end.p50Ms} ms, p99 ${result.fsync.end.p99Ms} ms after`);
    const busiest = Math.max(...result.loadAverage);
    if (busiest > result.machine.cores) {
      console.log(
        `WARNING: load average up to ${busiest} on ${result.machine.cores} cores: other work competed for the CPU, so every process here ran on a share of a core; ` +
          'throughput ratios swing from run to run, the server CPU per message is the steadier figure',
      );
    }
    if (onTmpfs) console.log(`WARNING: ${root} is on tmpfs: fdatasync costs nothing there, QoS 1 figures flatter Witness`);
    console.log('');
    console.log(`${'load'.padEnd(27)}${'sink (ceiling)'.padStart(15)}${'plain aedes'.padStart(13)}${'witness'.padStart(11)}${'witness/plain'.padStart(15)}  ${'(rounds)'.padEnd(13)} issue-7 target`);
    for (const r of table) {
      console.log(
        `${r.label.padEnd(27)}${`${n(r.sinkPerSec)} /s`.padStart(15)}${`${n(r.plainPerSec)} /s`.padStart(13)}${`${n(r.witnessPerSec)} /s`.padStart(11)}` +
          `${`${r.ratio.toFixed(2)}×`.padStart(15)}  ${`${r.ratioRange[0]!.toFixed(2)}–${r.ratioRange[1]!.toFixed(2)}`.padEnd(13)} ${r.target ? `≥ ${r.target.toFixed(2)}×` : '—'}`,
      );
    }
    console.log('');
    console.log(`${'server CPU per 100k messages'.padEnd(27)}${'sink'.padStart(15)}${'plain aedes'.padStart(13)}${'witness'.padStart(11)}${'witness/plain'.padStart(15)}  of which system: plain / witness`);
    for (const r of table) {
      const c = r.serverCpuPer100k;
      const sys = r.serverSysPer100k;
      console.log(
        `${r.label.padEnd(27)}${`${c.sink.toFixed(2)} s`.padStart(15)}${`${c.plain.toFixed(2)} s`.padStart(13)}${`${c.witness.toFixed(2)} s`.padStart(11)}${`${(c.witness / c.plain).toFixed(2)}×`.padStart(15)}` +
          `  ${sys.plain.toFixed(2)} s / ${sys.witness.toFixed(2)} s`,
      );
    }
    console.log(`${'peak RSS'.padEnd(27)}${`${result.peakRssMiB.sink} MiB`.padStart(15)}${`${result.peakRssMiB.plain} MiB`.padStart(13)}${`${result.peakRssMiB.witness} MiB`.padStart(11)}`);
    console.log('');
    console.log(`load generator (this process) CPU in the window, % of one core — against sink / plain / witness:`);
    for (const r of table) {
      const g = r.generatorCpuPct;
      console.log(`  ${r.label.padEnd(27)}${`${g.sink}%`.padStart(6)}${`${g.plain}%`.padStart(6)}${`${g.witness}%`.padStart(6)}   plain aedes reaches ${(r.plainVsSink * 100).toFixed(0)}% of the generator's ceiling`);
    }
    const q0 = table.find((r) => r.qos0PublisherSidePerSec)?.qos0PublisherSidePerSec;
    if (q0) console.log(`  (QoS 0 publisher-side rate, not a throughput: plain ${n(q0.plain)} /s, witness ${n(q0.witness)} /s)`);
    console.log(`witness ledger: ${n(result.witnessRecordsPerRound)} records per round (median)`);
    if (lost.length > 0) console.log(`delivery mismatches:\n  ${lost.join('\n  ')}`);
    if (result.clientTrouble.errors > 0 || result.clientTrouble.unexpectedCloses > 0) console.log(`client trouble: ${JSON.stringify(result.clientTrouble)}`);
    if (result.profile) {
      const p = result.profile;
      console.log('');
      console.log(`Witness broker CPU profile: ${p.files} file(s), ${n(p.busyMs)} ms busy (idle excluded); self time by module:`);
      for (const m of p.byModule) console.log(`  ${`${m.pct.toFixed(1)}%`.padStart(6)}  ${m.name}`);
      console.log('self time by function:');
      for (const f of p.byFunction) console.log(`  ${`${f.pct.toFixed(1)}%`.padStart(6)}  ${f.name}`);
    }
  }
} finally {
  current?.kill();
  rmSync(root, { recursive: true, force: true });
}
