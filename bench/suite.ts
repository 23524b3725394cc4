/**
 * Issue 7 §1: one run, one machine — the load generator's ceiling (sink), plain aedes 1.2,
 * mosquitto (Debian package, the outside reference) and `witness broker` in several modes, all
 * driven by the same load; throughput, end-to-end latency p50/p99, broker CPU per message and
 * peak RSS, each Witness mode as a ratio to plain aedes, with the issue-7 targets marked.
 *
 * - Servers: bench/broker-server.ts children (sink, plain, witness; bench/load.ts) and mosquitto
 *   (bench/suite-mosquitto.ts), each started fresh per round; a round runs every server in turn
 *   (A B C … A B C …), medians over rounds. Witness modes are generated config files:
 *     w-meta      level metadata, envelope off,     fsync batch   (the issue-7 reference mode)
 *     w-payload   level payload,  envelope off,     fsync batch
 *     w-full      level full,     envelope off,     fsync batch
 *     w-observe   level metadata, envelope observe, fsync batch
 *     w-enforce   level metadata, envelope enforce, fsync batch
 *     w-interval  level metadata, envelope off,     fsync interval (100 ms)
 * - Load (MQTT.js 5 in this process, MQTT 3.1.1, 127.0.0.1; bench/broker.ts's method):
 *     QoS 0: 10 publishers as fast as TCP flow control lets them; rate = messages received by the
 *            subscriber(s) per second (per subscriber).
 *     QoS 1: 100 publishers × 10 in flight (1,000); rate = PUBACKs per second.
 *   One subscriber at QoS 0 on the topic (--subscribers N for more). Payload sizes 64 B and
 *   1 KiB (--payloads 64,1024,4096). Under envelope observe/enforce every publisher is a device
 *   registered in the data directory before the broker starts, connecting with a connect token,
 *   and sends COSE envelopes pre-signed as a chain (seq 0,1,2…, prev = hash of the previous) whose
 *   inner payload has the load's size; every other server gets plain payloads of that size.
 * - Latency: the publisher writes performance.now() into the first 8 bytes of each plain payload;
 *   for envelopes (signed beforehand) the send time is kept in a map by the envelope's last 6
 *   bytes (signature). The subscriber computes receive − send for every message in the window;
 *   p50/p99 from the sorted sample. Under saturation this is mostly queueing; the figure that the
 *   target names is the fixed-rate one:
 *     lat    10 publishers, QoS 0, 64 B, paced to 50% of plain aedes' QoS 0 peak (measured by a
 *            calibration before the rounds); added p99 = witness p99 − plain p99 (target ≤ 2 ms).
 * - The enforce target's baseline (what one core of node:crypto verifies per second, same envelope
 *   size) is measured in this process before the rounds, single thread.
 * - Every loop is bounded in count and time; every child is killed on exit.
 *
 * Usage: node dist/bench/suite.js [--rounds R] [--seconds S] [--warmup S] [--payloads 64,1024]
 *          [--servers sink,plain,mosquitto,w-meta,…] [--loads qos0,qos1,lat] [--subscribers N]
 *          [--envelopes N] [--json] [--json-out FILE] [--plot FILE | --no-plot] [--cpu-prof DIR]
 *          [--lat-rate N]
 *        node dist/bench/suite.js --replot RESULT.json [--plot FILE]   (redraw from a saved result)
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, mkdirSync, readFileSync, rmSync, statfsSync, writeFileSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import type { MqttClient } from 'mqtt';
import { machineInfo, formatMachine, median } from './machine.js';
import type { Usage } from './broker-server.js';
import { CONNECT_TIMEOUT_MS, ServerProcess, connectClient, endAll, fsyncProbe, positive, pumpQos0, pumpQos1, pumpState, withTimeout, type Next, type PumpState, type Trouble } from './load.js';
import { MosquittoServer, MOSQUITTO_BIN } from './suite-mosquitto.js';
import { writeSuitePlot } from './suite-plot.js';
import { decodeEnvelope, envelopeHash, GENESIS_PREV, signEnvelope, sigStructure } from '../shared/envelope/index.js';
import { publicKeyFromSeed, verify } from '../shared/keys/ed25519.js';
import { deviceKid } from '../shared/keys/key-id.js';
import { createConnectToken, DEFAULT_AUDIENCE, TOKEN_USERNAME } from '../shared/token/connect-token.js';
import { initDataDir } from '../broker/data-dir.js';
import { DeviceRegistry } from '../broker/identity/registry.js';

const { values } = parseArgs({
  options: {
    rounds: { type: 'string' },
    seconds: { type: 'string' },
    warmup: { type: 'string' },
    'latency-seconds': { type: 'string' },
    payloads: { type: 'string' },
    servers: { type: 'string' },
    loads: { type: 'string' },
    subscribers: { type: 'string' },
    envelopes: { type: 'string' },
    'max-messages': { type: 'string' },
    json: { type: 'boolean' },
    'json-out': { type: 'string' },
    plot: { type: 'string' },
    'no-plot': { type: 'boolean' },
    replot: { type: 'string' },
    'cpu-prof': { type: 'string' },
    'lat-rate': { type: 'string' },
  },
});

const ROUNDS = Math.round(positive('rounds', values.rounds, 3));
const SECONDS = positive('seconds', values.seconds, 2);
const WARMUP = positive('warmup', values.warmup, 0.5);
const LAT_SECONDS = positive('latency-seconds', values['latency-seconds'], 2);
const SUBSCRIBERS = Math.round(positive('subscribers', values.subscribers, 1));
/** Pre-signed envelopes per envelope load (all its publishers together), per payload size. */
/**
 * --lat-rate N: pace the latency load at N msg/s instead of half of plain aedes' calibrated peak.
 * The calibration's few seconds can catch plain aedes faster than it is through the rounds on a
 * shared machine (17:30 run: peak 63–70k in calibration, 41–67k in the rounds, so "half" was
 * 82% of a round's peak and plain itself queued); a sweep of fixed rates shows the added latency.
 */
const LAT_RATE = values['lat-rate'] === undefined ? undefined : Math.round(positive('lat-rate', values['lat-rate'], 1));
/** --cpu-prof DIR: the Witness and plain aedes children write V8 CPU profiles to DIR/SERVER (their rates then carry the profiler's cost). */
const PROFILE_DIR = values['cpu-prof'] === undefined ? undefined : resolve(values['cpu-prof']);
const ENVELOPES = Math.round(positive('envelopes', values.envelopes, 30_000));
const MAX_MESSAGES = Math.round(positive('max-messages', values['max-messages'], 2_000_000));
const PAYLOADS = (values.payloads ?? '64,1024').split(',').map((x) => {
  const n = Number(x);
  if (!Number.isSafeInteger(n) || n < 16 || n > 65536) throw new Error(`--payloads: sizes 16..65536 B, got ${JSON.stringify(x)}`);
  return n;
});
if (ROUNDS > 20 || SECONDS > 60 || LAT_SECONDS > 60 || SUBSCRIBERS > 10 || ENVELOPES > 1_000_000) {
  throw new Error('bounds: --rounds ≤ 20, --seconds ≤ 60, --latency-seconds ≤ 60, --subscribers ≤ 10, --envelopes ≤ 1,000,000');
}
const PLOT = values['no-plot'] ? undefined : resolve(values.plot ?? fileURLToPath(new URL('../../docs/bench/suite.svg', import.meta.url)));

// --replot RESULT.json: redraw the plot from a saved --json-out result, run nothing.
if (values.replot !== undefined) {
  const saved = JSON.parse(readFileSync(resolve(values.replot), 'utf8')) as Parameters<typeof writeSuitePlot>[0];
  if (!PLOT) throw new Error('--replot needs a plot file (not --no-plot)');
  mkdirSync(dirname(PLOT), { recursive: true });
  writeFileSync(PLOT, writeSuitePlot(saved));
  console.log(`plot: ${PLOT}`);
  process.exit(0);
}

const TOPIC = 'bench/suite';
const DRAIN_TIMEOUT_MS = 8_000;
const QUIESCE_TIMEOUT_MS = 30_000;
const QUIESCE_PROBE_MS = 300;
/** The agent's system-clock uncertainty: envelopes signed beforehand arrive `late`, still valid. */
const SYSTEM_UNCERTAINTY_MS = 1000;
/** Latency samples kept per measurement (a bound on memory). */
const MAX_SAMPLES = 4_000_000;

// ── servers ──────────────────────────────────────────────────────────────────────────────────

interface Mode {
  audit: 'none' | 'metadata' | 'payload' | 'full';
  envelope: 'off' | 'observe' | 'enforce';
  fsync: 'batch' | 'interval';
  /** Envelope verify threads (config verifyThreads); undefined = the broker's default. */
  verifyThreads?: number;
  /** ledger.lingerMs; undefined = the broker's default (5). */
  lingerMs?: number;
}
interface ServerDef {
  name: string;
  label: string;
  kind: 'sink' | 'plain' | 'mosquitto' | 'witness';
  mode?: Mode;
}
const ALL_SERVERS: readonly ServerDef[] = [
  { name: 'sink', label: 'sink (generator ceiling)', kind: 'sink' },
  { name: 'plain', label: 'plain aedes 1.2', kind: 'plain' },
  { name: 'mosquitto', label: 'mosquitto', kind: 'mosquitto' },
  { name: 'w-meta', label: 'witness metadata/off/batch', kind: 'witness', mode: { audit: 'metadata', envelope: 'off', fsync: 'batch' } },
  { name: 'w-payload', label: 'witness payload/off/batch', kind: 'witness', mode: { audit: 'payload', envelope: 'off', fsync: 'batch' } },
  { name: 'w-full', label: 'witness full/off/batch', kind: 'witness', mode: { audit: 'full', envelope: 'off', fsync: 'batch' } },
  { name: 'w-observe', label: 'witness metadata/observe/batch', kind: 'witness', mode: { audit: 'metadata', envelope: 'observe', fsync: 'batch' } },
  { name: 'w-enforce', label: 'witness metadata/enforce/batch', kind: 'witness', mode: { audit: 'metadata', envelope: 'enforce', fsync: 'batch' } },
  { name: 'w-interval', label: 'witness metadata/off/interval', kind: 'witness', mode: { audit: 'metadata', envelope: 'off', fsync: 'interval' } },
  // Not in the default set: enforce with signatures verified on the event loop (verifyThreads 0), to compare with the pool.
  { name: 'w-enforce-el', label: 'witness enforce, verify on event loop', kind: 'witness', mode: { audit: 'metadata', envelope: 'enforce', fsync: 'batch', verifyThreads: 0 } },
  // Not in the default set: audit level none (no publish records; connects etc. still recorded) —
  // the floor of the plugin's hooks alone, i.e. the best any off-thread record pipeline could do.
  { name: 'w-none', label: 'witness audit none (hooks only)', kind: 'witness', mode: { audit: 'none', envelope: 'off', fsync: 'batch' } },
  // Not in the default set: w-meta without lingering (ledger.lingerMs 0: every batch as soon as the I/O thread is free).
  { name: 'w-meta-l0', label: 'witness metadata, lingerMs 0', kind: 'witness', mode: { audit: 'metadata', envelope: 'off', fsync: 'batch', lingerMs: 0 } },
];
const EXTRA_SERVERS = new Set(['w-enforce-el', 'w-none', 'w-meta-l0']);
const DEFAULT_SERVERS = ALL_SERVERS.filter((s) => !EXTRA_SERVERS.has(s.name));
const SERVERS = values.servers === undefined ? [...DEFAULT_SERVERS] : pick(ALL_SERVERS, values.servers, 'servers');
if (!SERVERS.some((s) => s.name === 'plain')) throw new Error('--servers must include plain (every ratio is to plain aedes)');
const signed = (s: ServerDef): boolean => s.mode !== undefined && s.mode.envelope !== 'off';

function pick<T extends { name: string }>(all: readonly T[], list: string | undefined, flag: string): T[] {
  if (list === undefined) return [...all];
  return list.split(',').map((name) => {
    const x = all.find((a) => a.name === name);
    if (!x) throw new Error(`--${flag}: unknown ${JSON.stringify(name)}; expected some of ${all.map((a) => a.name).join(', ')}`);
    return x;
  });
}

function witnessConfig(m: Mode): string {
  return [
    'listeners:',
    '  - type: mqtt',
    '    host: 127.0.0.1',
    '    port: 0',
    ...(m.verifyThreads !== undefined ? [`verifyThreads: ${m.verifyThreads}`] : []),
    'ledger:',
    `  fsync: ${m.fsync}`,
    ...(m.fsync === 'interval' ? ['  fsyncIntervalMs: 100'] : []),
    ...(m.lingerMs !== undefined ? [`  lingerMs: ${m.lingerMs}`] : []),
    // Envelope modes: tokens for the devices, anonymous for the subscriber; access control off.
    ...(m.envelope !== 'off' ? ['auth:', '  anonymous: true'] : []),
    'defaultPolicy:',
    `  audit: ${m.audit}`,
    `  envelope: ${m.envelope}`,
    '  unwrap: false',
    '  mask: []',
    '',
  ].join('\n');
}

interface Server {
  port: number;
  usage(): Promise<Usage>;
  stop(): Promise<Usage>;
  kill(): void;
}

// ── loads ────────────────────────────────────────────────────────────────────────────────────

interface Load {
  name: string;
  label: string;
  qos: 0 | 1;
  publishers: number;
  window: number;
  bytes: number;
  /** Fixed offered rate (the latency load), messages/s; undefined = as fast as possible. */
  paced?: boolean;
}
const LOAD_KINDS = new Set((values.loads ?? 'qos0,qos1,lat').split(','));
for (const k of LOAD_KINDS) if (!['qos0', 'qos1', 'lat'].includes(k)) throw new Error(`--loads: unknown ${JSON.stringify(k)}; expected some of qos0, qos1, lat`);
const LAT: Load = { name: 'lat', label: 'QoS 0, 10 pub, 64 B, paced', qos: 0, publishers: 10, window: 0, bytes: 64, paced: true };
// The paced load first in each server's session, before any saturating load can leave a backlog.
const LOADS: Load[] = LOAD_KINDS.has('lat') ? [LAT] : [];
for (const b of PAYLOADS) {
  if (LOAD_KINDS.has('qos0')) LOADS.push({ name: `qos0-${b}`, label: `QoS 0, 10 pub, ${b} B`, qos: 0, publishers: 10, window: 0, bytes: b });
  if (LOAD_KINDS.has('qos1')) LOADS.push({ name: `qos1-${b}`, label: `QoS 1, 100×10, ${b} B`, qos: 1, publishers: 100, window: 10, bytes: b });
}
const CALIBRATION: Load = { name: 'calibration', label: 'QoS 0, 10 pub, 64 B', qos: 0, publishers: 10, window: 0, bytes: 64 };

// ── devices and pre-signed envelope chains ───────────────────────────────────────────────────

interface Device {
  id: string;
  seed: Uint8Array;
  publicKey: Uint8Array;
  kid: Uint8Array;
  /** The chain for this device's load: envelope i has seq i. */
  chain: Buffer[];
}

/** Devices per load: own ids, chains from seq 0 (each Witness data directory is fresh). */
const devices = new Map<string, Device[]>();

function makeDevices(load: Load, total: number): Device[] {
  const out: Device[] = [];
  const per = Math.ceil(total / load.publishers);
  const inner = Buffer.alloc(load.bytes, 0x5a);
  for (let i = 0; i < load.publishers; i++) {
    const id = `bench-${load.name}-${String(i).padStart(3, '0')}`;
    const seed = new Uint8Array(globalThis.crypto.getRandomValues(new Uint8Array(32)));
    const publicKey = publicKeyFromSeed(seed);
    const kid = deviceKid(id, publicKey);
    const chain: Buffer[] = [];
    let prev = GENESIS_PREV;
    for (let seq = 0; seq < per; seq++) {
      inner.writeUInt32BE(seq, 0); // distinct payloads
      const env = signEnvelope({ seed, kid, payload: inner, claims: { time: Date.now(), uncertainty: SYSTEM_UNCERTAINTY_MS, timeSource: 'system', seq, prev, topic: TOPIC } });
      prev = envelopeHash(env);
      chain.push(Buffer.from(env.buffer, env.byteOffset, env.byteLength));
    }
    out.push({ id, seed, publicKey, kid, chain });
  }
  return out;
}

/** The key under which an envelope's send time is kept: its last 6 bytes (in the signature). */
const tailKey = (b: Buffer): number => b.readUIntLE(b.length - 6, 6);

// ── the single-core verify baseline ──────────────────────────────────────────────────────────

function verifyBaseline(env: Buffer, publicKey: Uint8Array): { envelopeBytes: number; perSec: number; decodeVerifyPerSec: number } {
  const e = decodeEnvelope(env);
  const tbs = sigStructure(e.protectedBytes, e.payload);
  const rate = (fn: () => void): number => {
    for (let i = 0; i < 200; i++) fn();
    const runs: number[] = [];
    for (let r = 0; r < 3; r++) {
      const t0 = performance.now();
      let n = 0;
      while (performance.now() - t0 < 500 && n < 10_000_000) {
        for (let k = 0; k < 16; k++) fn();
        n += 16;
      }
      runs.push((n * 1000) / (performance.now() - t0));
    }
    return median(runs);
  };
  const perSec = rate(() => {
    if (!verify(publicKey, tbs, e.signature)) throw new Error('baseline: signature did not verify');
  });
  const decodeVerifyPerSec = rate(() => {
    const d = decodeEnvelope(env);
    if (!verify(publicKey, sigStructure(d.protectedBytes, d.payload), d.signature)) throw new Error('baseline: signature did not verify');
  });
  return { envelopeBytes: env.length, perSec, decodeVerifyPerSec };
}

// ── one measurement ──────────────────────────────────────────────────────────────────────────

interface Measurement {
  rate: number;
  seconds: number;
  counted: number;
  /** Offered rate of a paced load, /s. */
  offered?: number;
  p50Ms: number;
  p99Ms: number;
  samples: number;
  serverCpuPer100k: number;
  serverSysPer100k: number;
  /** CPU s of the server's main thread (its event loop) per 100k messages; NaN where /proc is missing. */
  mainCpuPer100k: number;
  /** Ledger records per batch written in the window (Witness servers), NaN otherwise. */
  recordsPerBatch: number;
  generatorCpuPct: number;
  sent: number;
  received: number;
  acked: number;
  errors: number;
  /** Publishers ran out of pre-signed envelopes before the window ended. */
  exhausted: boolean;
  /** How long the server kept working after the load (quiesce), ms; NaN if it never went idle within the bound. */
  settleMs: number;
}

interface Subs {
  clients: MqttClient[];
  received: number;
  recording: boolean;
  /** The measurement under way: plain payloads carry it in byte 8; envelopes are its if in sendTimes. */
  epoch: number;
  /** Messages of the current measurement received (all subscribers together). */
  current: number;
  samples: Float64Array;
  n: number;
  sendTimes: Map<number, number> | undefined;
}

async function subscribe(port: number, trouble: Trouble, tag: string): Promise<Subs> {
  const subs: Subs = { clients: [], received: 0, recording: false, epoch: 0, current: 0, samples: new Float64Array(MAX_SAMPLES), n: 0, sendTimes: undefined };
  for (let i = 0; i < SUBSCRIBERS; i++) {
    const c = await connectClient(port, `bench-sub-${tag}-${i}`, trouble);
    c.on('message', (_t: string, payload: Buffer) => {
      subs.received++;
      let sent: number | undefined;
      if (subs.sendTimes) sent = subs.sendTimes.get(tailKey(payload));
      else if (payload.length >= 9 && payload[8] === subs.epoch) sent = payload.readDoubleLE(0);
      if (sent === undefined) return; // left over from an earlier measurement (a backlog)
      subs.current++;
      if (subs.recording && subs.n < MAX_SAMPLES) subs.samples[subs.n++] = performance.now() - sent;
    });
    await withTimeout(c.subscribeAsync(TOPIC, { qos: 0 }), CONNECT_TIMEOUT_MS, 'no SUBACK');
    subs.clients.push(c);
  }
  return subs;
}



function plainNext(bytes: number, epoch: number): Next {
  const template = Buffer.alloc(bytes, 0x61);
  template[8] = epoch;
  return () => {
    const b = Buffer.allocUnsafe(bytes);
    template.copy(b);
    b.writeDoubleLE(performance.now(), 0);
    return b;
  };
}

function envelopeNext(devs: Device[], sendTimes: Map<number, number>): Next {
  const pos = new Array<number>(devs.length).fill(0);
  return (i) => {
    const d = devs[i]!;
    const env = d.chain[pos[i]!];
    if (env === undefined) return undefined;
    pos[i]!++;
    sendTimes.set(tailKey(env), performance.now());
    return env;
  };
}

/** Paced QoS 0: every ~1 ms, what is due at `rate`/s, round-robin over the publishers. */
function pumpPaced(clients: MqttClient[], st: PumpState, next: Next, rate: number, endAt: number): NodeJS.Timeout {
  const t0 = performance.now();
  let rr = 0;
  const maxBurst = Math.max(1, Math.ceil(rate / 50)); // never catch up more than 20 ms at once
  const timer = setInterval(() => {
    if (!st.running || performance.now() > endAt) return;
    let due = Math.floor(((performance.now() - t0) * rate) / 1000) - st.sent;
    if (due > maxBurst) due = maxBurst;
    for (; due > 0; due--) {
      const i = rr++ % clients.length;
      const m = next(i);
      if (m === undefined) {
        st.exhausted = true;
        return;
      }
      clients[i]!.publish(TOPIC, m, { qos: 0 });
      st.sent++;
    }
  }, 1);
  return timer;
}

function percentile(sorted: Float64Array, q: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]!;
}

async function measure(server: Server, subs: Subs, load: Load, def: ServerDef, tag: string, trouble: Trouble, pacedRate?: number): Promise<Measurement> {
  const devs = signed(def) ? devices.get(load.name) : undefined;
  if (signed(def) && !devs) throw new Error(`no devices for ${load.name}`);
  const pubs = await Promise.all(
    Array.from({ length: load.publishers }, (_, i) => {
      if (!devs) return connectClient(server.port, `bench-${tag}-${load.name}-${i}`, trouble);
      const d = devs[i]!;
      const password = Buffer.from(createConnectToken({ seed: d.seed, deviceId: d.id, publicKey: d.publicKey, audience: DEFAULT_AUDIENCE }));
      return connectClient(server.port, d.id, trouble, { username: TOKEN_USERNAME, password });
    }),
  );
  const sendTimes = devs ? new Map<number, number>() : undefined;
  subs.epoch = (subs.epoch + 1) & 0xff;
  subs.current = 0;
  subs.sendTimes = sendTimes;
  const next = devs ? envelopeNext(devs, sendTimes!) : plainNext(load.bytes, subs.epoch);
  const st = pumpState();
  // QoS 0: messages of this measurement received, per subscriber (a backlog of an earlier one is not counted).
  const counter = load.qos === 0 ? (): number => subs.current / SUBSCRIBERS : (): number => st.acked;
  const cap = Math.ceil((2 * MAX_MESSAGES) / load.publishers);
  let timer: NodeJS.Timeout | undefined;
  const total = WARMUP + (load.paced ? LAT_SECONDS : SECONDS);
  if (load.paced) timer = pumpPaced(pubs, st, next, pacedRate!, performance.now() + (total + 1) * 1000);
  else pubs.forEach((c, i) => (load.qos === 0 ? pumpQos0(c, i, TOPIC, st, next, cap) : pumpQos1(c, i, TOPIC, st, next, load.window, cap)));
  await sleep(WARMUP * 1000);

  subs.n = 0;
  subs.recording = true;
  const u0 = await server.usage();
  const t0 = performance.now();
  const g0 = process.cpuUsage();
  const n0 = counter();
  const s0 = st.sent;
  const windowMs = (load.paced ? LAT_SECONDS : SECONDS) * 1000;
  for (;;) {
    const left = windowMs - (performance.now() - t0);
    if (left <= 0 || counter() - n0 >= MAX_MESSAGES) break;
    await sleep(Math.min(50, left + 1));
  }
  const u1 = await server.usage();
  const seconds = (performance.now() - t0) / 1000;
  const g = process.cpuUsage(g0);
  const counted = counter() - n0;
  const sentInWindow = st.sent - s0;
  subs.recording = false;
  const exhaustedInWindow = st.exhausted;

  st.running = false;
  if (timer) clearInterval(timer);
  const drainEnd = Date.now() + DRAIN_TIMEOUT_MS;
  while (st.inflight > 0 && Date.now() < drainEnd) await sleep(20);
  // Until every message reached every subscriber, or nothing arrived for 1 s (bounded).
  for (let last = -1; subs.current < st.sent * SUBSCRIBERS && subs.current !== last && Date.now() < drainEnd; ) {
    last = subs.current;
    await sleep(1000);
  }
  await endAll(pubs);
  const settleMs = await quiesce(server);
  const sorted = subs.samples.slice(0, subs.n).sort();
  subs.sendTimes = undefined;
  const cpuUs = u1.userUs + u1.systemUs - (u0.userUs + u0.systemUs);
  return {
    rate: counted / seconds,
    seconds,
    counted,
    ...(load.paced ? { offered: sentInWindow / seconds } : {}),
    p50Ms: percentile(sorted, 0.5),
    p99Ms: percentile(sorted, 0.99),
    samples: sorted.length,
    serverCpuPer100k: counted > 0 ? (cpuUs / 1e6 / counted) * 1e5 : NaN,
    serverSysPer100k: counted > 0 ? ((u1.systemUs - u0.systemUs) / 1e6 / counted) * 1e5 : NaN,
    mainCpuPer100k: counted > 0 && u1.mainThreadUs !== undefined && u0.mainThreadUs !== undefined ? ((u1.mainThreadUs - u0.mainThreadUs) / 1e6 / counted) * 1e5 : NaN,
    recordsPerBatch: u1.batches !== undefined && u0.batches !== undefined && u1.records !== undefined && u0.records !== undefined && u1.batches > u0.batches ? (u1.records - u0.records) / (u1.batches - u0.batches) : NaN,
    generatorCpuPct: ((g.user + g.system) / 1e6 / seconds) * 100,
    sent: st.sent,
    received: subs.current / SUBSCRIBERS,
    acked: st.acked,
    errors: st.errors,
    exhausted: exhaustedInWindow,
    settleMs,
  };
}

/**
 * Waits until the server is idle: less than 10% of a core over a 300 ms probe, at most
 * QUIESCE_TIMEOUT_MS. Found necessary for the envelope modes: a QoS 0 flood of envelopes leaves
 * a verification backlog of tens of thousands of messages that the broker works off long after
 * the generator stopped — without this the NEXT load's window paid for it (its CPU per message
 * was 3–8× inflated in the 17:30 run). Returns the time it took, NaN if the bound was hit.
 */
async function quiesce(server: Server): Promise<number> {
  const t0 = Date.now();
  let prev = await server.usage();
  while (Date.now() - t0 < QUIESCE_TIMEOUT_MS) {
    await sleep(QUIESCE_PROBE_MS);
    const u = await server.usage();
    const cpuMs = (u.userUs + u.systemUs - (prev.userUs + prev.systemUs)) / 1000;
    prev = u;
    if (cpuMs < QUIESCE_PROBE_MS * 0.1) return Date.now() - t0;
  }
  return NaN;
}

// ── the run ──────────────────────────────────────────────────────────────────────────────────

const TMPFS_MAGIC = 0x01021994;
const log = (s: string): void => void (values.json ? process.stderr.write(s + '\n') : console.log(s));
const progress = (s: string): void => void process.stderr.write(s + '\n');
const startedAt = new Date();
const loadAtStart = loadavg().map((x) => +x.toFixed(2));
const root = mkdtempSync(join(tmpdir(), 'witness-bench-suite-'));
const onTmpfs = statfsSync(root).type === TMPFS_MAGIC;
const trouble: Trouble = { errors: 0, closes: 0 };
let current: Server | undefined;

function cleanup(): void {
  current?.kill();
  rmSync(root, { recursive: true, force: true });
}
for (const sig of ['SIGINT', 'SIGTERM'] as const) {
  process.once(sig, () => {
    cleanup();
    process.exit(130);
  });
}

async function startServer(def: ServerDef, round: number): Promise<Server> {
  if (def.kind === 'mosquitto') {
    const dir = join(root, `mosquitto-${round}`);
    mkdirSync(dir, { recursive: true });
    return MosquittoServer.start(dir);
  }
  const profile = PROFILE_DIR ? { nodeFlags: ['--cpu-prof', '--cpu-prof-dir', join(PROFILE_DIR, def.name)] } : {};
  if (def.kind !== 'witness') return ServerProcess.start(def.kind, def.kind === 'plain' ? profile : {});
  const dir = join(root, `${def.name}-${round}`);
  const config = join(root, `${def.name}.yaml`);
  writeFileSync(config, witnessConfig(def.mode!));
  if (signed(def)) {
    await initDataDir(dir, 'bench-suite');
    DeviceRegistry.edit(dir, (r) => {
      for (const devs of devices.values()) for (const d of devs) r.add(d.id, d.publicKey);
    });
  }
  return ServerProcess.start('witness', { dataDir: dir, config, ...profile });
}

type Results = Record<string, Record<string, Measurement[]>>;
const results: Results = {};
const peakRssKiB: Record<string, number[]> = {};
let calibration: { runs: number[]; rate: number } | undefined;
let baseline: ReturnType<typeof verifyBaseline> | undefined;
let fsyncAtStart: ReturnType<typeof fsyncProbe> | undefined;
const mosquittoVersion = SERVERS.some((s) => s.kind === 'mosquitto') ? (/mosquitto version (\S+)/.exec(spawnSync(MOSQUITTO_BIN, ['-h'], { encoding: 'utf8', timeout: 5000 }).stdout ?? '')?.[1] ?? 'unknown') : '';

try {
  fsyncAtStart = fsyncProbe(root);
  // Envelopes for the signed modes: one device set and chain per load.
  if (SERVERS.some(signed)) {
    const t = performance.now();
    for (const load of LOADS) devices.set(load.name, makeDevices(load, load.paced ? 0 : ENVELOPES));
    progress(`pre-signed ${[...devices.values()].flat().reduce((a, d) => a + d.chain.length, 0).toLocaleString('en-US')} envelopes in ${((performance.now() - t) / 1000).toFixed(1)} s`);
  }
  // Single-core node:crypto verify of an envelope with a 64 B payload (the enforce loads' size).
  {
    const seed = new Uint8Array(32).fill(7);
    const pk = publicKeyFromSeed(seed);
    const env = signEnvelope({ seed, kid: deviceKid('bench-qos0-64-000', pk), payload: Buffer.alloc(64, 0x5a), claims: { time: Date.now(), uncertainty: SYSTEM_UNCERTAINTY_MS, timeSource: 'system', seq: 0, prev: GENESIS_PREV, topic: TOPIC } });
    baseline = verifyBaseline(Buffer.from(env), pk);
    progress(`node:crypto Ed25519 verify, one thread: ${Math.round(baseline.perSec).toLocaleString('en-US')} /s (${baseline.envelopeBytes} B envelope)`);
  }
  // Calibration: plain aedes' QoS 0 peak (64 B), three windows, for the paced latency load.
  let pacedRate = LAT_RATE ?? 0;
  if (LAT_RATE !== undefined) {
    progress(`paced load at ${LAT_RATE} /s (--lat-rate; no calibration)`);
    if (SERVERS.some(signed)) devices.set('lat', makeDevices(LAT, Math.ceil(LAT_RATE * (WARMUP + LAT_SECONDS + 1.5))));
  } else if (LOAD_KINDS.has('lat')) {
    const def = ALL_SERVERS.find((s) => s.name === 'plain')!;
    const server = (current = await startServer(def, 0));
    const subs = await subscribe(server.port, trouble, 'cal');
    const runs: number[] = [];
    for (let k = 0; k < 3; k++) runs.push((await measure(server, subs, CALIBRATION, def, `cal${k}`, trouble)).rate);
    await endAll(subs.clients);
    await server.stop();
    current = undefined;
    calibration = { runs: runs.map(Math.round), rate: median(runs) };
    pacedRate = Math.round(calibration.rate / 2);
    progress(`calibration: plain aedes QoS 0 64 B peak ${runs.map((r) => Math.round(r)).join(', ')} /s → paced load at ${pacedRate} /s`);
    if (SERVERS.some(signed)) devices.set('lat', makeDevices(LAT, Math.ceil(pacedRate * (WARMUP + LAT_SECONDS + 1.5))));
  }

  for (let round = 1; round <= ROUNDS; round++) {
    for (const def of SERVERS) {
      const server = (current = await startServer(def, round));
      const subs = await subscribe(server.port, trouble, `${def.name}-${round}`);
      for (const load of LOADS) {
        const m = await measure(server, subs, load, def, `${round}`, trouble, load.paced ? pacedRate : undefined);
        ((results[def.name] ??= {})[load.name] ??= []).push(m);
        progress(
          `round ${round}/${ROUNDS} ${def.name.padEnd(10)} ${load.name.padEnd(10)} ${Math.round(m.rate).toLocaleString('en-US').padStart(9)} /s` +
            `  p50 ${m.p50Ms.toFixed(2)} ms p99 ${m.p99Ms.toFixed(2)} ms  CPU ${m.serverCpuPer100k.toFixed(2)} s/100k  gen ${Math.round(m.generatorCpuPct)}%  settle ${Number.isNaN(m.settleMs) ? '>30 s' : `${(m.settleMs / 1000).toFixed(1)} s`}${m.exhausted ? '  ENVELOPES EXHAUSTED' : ''}`,
        );
      }
      await endAll(subs.clients);
      const final = await server.stop();
      current = undefined;
      (peakRssKiB[def.name] ??= []).push(final.maxRssKiB);
      rmSync(join(root, `${def.name}-${round}`), { recursive: true, force: true });
    }
  }

  // ── summary ──
  const med = (s: string, l: string, f: (m: Measurement) => number): number => median((results[s]?.[l] ?? []).map(f));
  const rows = SERVERS.map((def) => ({
    server: def.name,
    label: def.label,
    mode: def.mode ?? null,
    peakRssMiB: +(Math.max(...(peakRssKiB[def.name] ?? [NaN])) / 1024).toFixed(1),
    loads: Object.fromEntries(
      LOADS.map((l) => {
        const rate = med(def.name, l.name, (m) => m.rate);
        const plainRate = med('plain', l.name, (m) => m.rate);
        const perRound = (results[def.name]?.[l.name] ?? []).map((m, i) => m.rate / (results.plain?.[l.name]?.[i]?.rate ?? NaN));
        return [
          l.name,
          {
            rate: Math.round(rate),
            ratioToPlain: +(rate / plainRate).toFixed(3),
            ratioRange: [+Math.min(...perRound).toFixed(3), +Math.max(...perRound).toFixed(3)],
            p50Ms: +med(def.name, l.name, (m) => m.p50Ms).toFixed(3),
            p99Ms: +med(def.name, l.name, (m) => m.p99Ms).toFixed(3),
            serverCpuPer100k: +med(def.name, l.name, (m) => m.serverCpuPer100k).toFixed(3),
            serverSysPer100k: +med(def.name, l.name, (m) => m.serverSysPer100k).toFixed(3),
            mainCpuPer100k: +med(def.name, l.name, (m) => m.mainCpuPer100k).toFixed(3),
            recordsPerBatch: +med(def.name, l.name, (m) => m.recordsPerBatch).toFixed(1),
            generatorCpuPct: Math.round(med(def.name, l.name, (m) => m.generatorCpuPct)),
            exhausted: (results[def.name]?.[l.name] ?? []).some((m) => m.exhausted),
            ...(l.paced ? { offered: Math.round(med(def.name, l.name, (m) => m.offered ?? NaN)) } : {}),
          },
        ];
      }),
    ),
  }));
  const row = (s: string): (typeof rows)[number] | undefined => rows.find((r) => r.server === s);
  const targets: Array<{ target: string; measured: string; met: boolean | null }> = [];
  const meta = row('w-meta');
  if (meta) {
    for (const b of PAYLOADS) {
      const q0 = meta.loads[`qos0-${b}`];
      if (q0) targets.push({ target: `metadata/off QoS 0 (${b} B) ≥ 0.90× plain`, measured: `${q0.ratioToPlain.toFixed(2)}×`, met: q0.ratioToPlain >= 0.9 });
      const q1 = meta.loads[`qos1-${b}`];
      if (q1) targets.push({ target: `metadata/off/batch QoS 1, 1,000 in flight (${b} B) ≥ 0.85× plain`, measured: `${q1.ratioToPlain.toFixed(2)}×`, met: q1.ratioToPlain >= 0.85 });
    }
  }
  const enf = row('w-enforce');
  if (enf && baseline) {
    for (const l of ['qos0-64', 'qos1-64']) {
      const x = enf.loads[l];
      if (x) targets.push({ target: `enforce ${l} ≥ 1.0× one core of node:crypto verify (${Math.round(baseline.perSec)} /s)`, measured: `${(x.rate / baseline.perSec).toFixed(2)}× (${x.rate} /s)`, met: x.rate >= baseline.perSec });
    }
  }
  const pl = row('plain')?.loads.lat;
  for (const s of rows.filter((r) => r.mode && r.loads.lat)) {
    if (!pl) break;
    const added = s.loads.lat!.p99Ms - pl.p99Ms;
    targets.push({ target: `${s.server}: added p99 at 50% of plain's QoS 0 peak ≤ 2 ms`, measured: `${added >= 0 ? '+' : ''}${added.toFixed(2)} ms (p99 ${s.loads.lat!.p99Ms.toFixed(2)} vs ${pl.p99Ms.toFixed(2)} ms)`, met: added <= 2 });
  }
  const lost = Object.entries(results).flatMap(([s, byLoad]) =>
    Object.entries(byLoad).flatMap(([l, ms]) => ms.filter((m) => Math.round(m.received) !== m.sent || m.errors > 0).map((m) => `${s} ${l}: sent ${m.sent}, received ${Math.round(m.received)}, acked ${m.acked}, errors ${m.errors}`)),
  );
  const result = {
    bench: 'suite',
    startedAt: startedAt.toISOString(),
    endedAt: new Date().toISOString(),
    machine: machineInfo(),
    loadAverage: { start: loadAtStart, end: loadavg().map((x) => +x.toFixed(2)) },
    dataDirFs: onTmpfs ? 'tmpfs' : 'disk',
    fsync: { start: fsyncAtStart, end: fsyncProbe(root) },
    mosquitto: mosquittoVersion || undefined,
    rounds: ROUNDS,
    seconds: SECONDS,
    latencySeconds: LAT_SECONDS,
    warmupSeconds: WARMUP,
    subscribers: SUBSCRIBERS,
    payloads: PAYLOADS,
    verifyBaseline: baseline,
    calibration,
    rows,
    targets,
    clientTrouble: trouble,
    deliveryMismatches: lost,
    raw: results,
  };

  if (PLOT) {
    mkdirSync(dirname(PLOT), { recursive: true });
    writeFileSync(PLOT, writeSuitePlot(result));
  }
  if (values['json-out']) writeFileSync(resolve(values['json-out']), JSON.stringify(result, null, 2) + '\n');
  if (values.json) console.log(JSON.stringify(result, null, 2));
  else printReport(result);
} finally {
  cleanup();
}

function printReport(r: {
  machine: ReturnType<typeof machineInfo>;
  loadAverage: { start: number[]; end: number[] };
  fsync: { start?: { p50Ms: number; p99Ms: number }; end: { p50Ms: number; p99Ms: number } };
  dataDirFs: string;
  rows: Array<{ server: string; label: string; peakRssMiB: number; loads: Record<string, { rate: number; ratioToPlain: number; ratioRange: number[]; p50Ms: number; p99Ms: number; serverCpuPer100k: number; mainCpuPer100k: number; recordsPerBatch: number; generatorCpuPct: number; exhausted: boolean; offered?: number }> }>;
  targets: Array<{ target: string; measured: string; met: boolean | null }>;
  verifyBaseline?: { envelopeBytes: number; perSec: number; decodeVerifyPerSec: number };
  calibration?: { runs: number[]; rate: number };
  deliveryMismatches: string[];
  clientTrouble: Trouble;
}): void {
  const n = (x: number): string => (Number.isFinite(x) ? Math.round(x).toLocaleString('en-US') : '—');
  log(`machine: ${formatMachine(r.machine)}`);
  log(`load average (1/5/15 min): ${r.loadAverage.start.join(' ')} at start, ${r.loadAverage.end.join(' ')} at end, on ${r.machine.cores} cores`);
  log(`data dir on ${r.dataDirFs}; 4 KiB write + fdatasync p50/p99: ${r.fsync.start?.p50Ms}/${r.fsync.start?.p99Ms} ms before, ${r.fsync.end.p50Ms}/${r.fsync.end.p99Ms} ms after`);
  if (r.verifyBaseline) log(`node:crypto Ed25519 verify, one thread, ${r.verifyBaseline.envelopeBytes} B envelope: ${n(r.verifyBaseline.perSec)} /s (decode + verify ${n(r.verifyBaseline.decodeVerifyPerSec)} /s)`);
  if (r.calibration) log(`plain aedes QoS 0 64 B peak (calibration): ${r.calibration.runs.map(n).join(', ')} /s → paced load at ${n(r.calibration.rate / 2)} /s`);
  log(`median of ${ROUNDS} rounds × ${SECONDS} s (paced: ${LAT_SECONDS} s) after ${WARMUP} s warm-up; ${SUBSCRIBERS} QoS 0 subscriber(s); rate = received per subscriber /s (QoS 0), PUBACKs /s (QoS 1)`);
  for (const l of LOADS) {
    log('');
    log(`${l.label}${l.paced ? ` at ${n(r.rows[0]?.loads[l.name]?.offered ?? NaN)} /s offered` : ''}`);
    log(`  ${'server'.padEnd(32)}${'rate /s'.padStart(10)}${'× plain'.padStart(9)}${'(rounds)'.padStart(13)}${'p50 ms'.padStart(9)}${'p99 ms'.padStart(9)}${'CPU s/100k'.padStart(12)}${'main'.padStart(7)}${'gen CPU'.padStart(9)}${'rec/batch'.padStart(11)}`);
    for (const s of r.rows) {
      const x = s.loads[l.name];
      if (!x) continue;
      log(
        `  ${s.label.padEnd(32)}${n(x.rate).padStart(10)}${`${x.ratioToPlain.toFixed(2)}×`.padStart(9)}${`${x.ratioRange[0]!.toFixed(2)}–${x.ratioRange[1]!.toFixed(2)}`.padStart(13)}` +
          `${x.p50Ms.toFixed(2).padStart(9)}${x.p99Ms.toFixed(2).padStart(9)}${x.serverCpuPer100k.toFixed(2).padStart(12)}${(Number.isFinite(x.mainCpuPer100k) ? x.mainCpuPer100k.toFixed(2) : '—').padStart(7)}${`${x.generatorCpuPct}%`.padStart(9)}${(Number.isFinite(x.recordsPerBatch) ? x.recordsPerBatch.toFixed(0) : '—').padStart(11)}${x.exhausted ? '  (envelopes exhausted)' : ''}`,
      );
    }
  }
  log('');
  log(`peak RSS: ${r.rows.map((s) => `${s.server} ${s.peakRssMiB} MiB`).join(', ')}`);
  log('');
  log('issue-7 targets:');
  for (const t of r.targets) log(`  ${t.met === null ? '?' : t.met ? 'MET    ' : 'NOT MET'}  ${t.target}: ${t.measured}`);
  if (r.deliveryMismatches.length > 0) log(`delivery mismatches (sent ≠ received, or errors):\n  ${r.deliveryMismatches.join('\n  ')}`);
  if (r.clientTrouble.errors > 0) log(`client errors: ${r.clientTrouble.errors}`);
  if (PLOT) log(`plot: ${PLOT}`);
}
