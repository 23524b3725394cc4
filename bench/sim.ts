/**
 * Simulator scale (issue 5 §Scale): N simulated devices (default 10,000) driven from ONE process
 * by `witness sim run` against `witness broker` on this machine, and, in the same run, the same
 * load from a bare MQTT.js generator (bench/sim-baseline.ts) against a fresh broker, so that the
 * simulator's own cost shows as a ratio.
 *
 *   A. simulator: `witness sim run SCENARIO --broker URL --json --quiet` in a child process. The
 *      scenario (written to a temp file) is one fleet of N devices `dev-00000…`, connects spread
 *      over --ramp, each device publishing one ~--payload-byte JSON message every --interval
 *      (jitter 0.2) for --duration after it connects, QoS 0 and 1 half and half, no incidents.
 *      The fleet's keys are registered (`witness sim register --data`) before the broker starts.
 *   B. baseline: bench/sim-baseline.ts in a child process: the same N client ids and topics, the
 *      same connect ramp and gate (--max-connecting), the same per-device send times (the plan's
 *      own random stream), the same QoS weights, and random payloads as long as the simulator's
 *      envelopes (computed by signing device 0's planned messages), so the broker moves the same
 *      bytes. No plan, no signing, no connect tokens (anonymous), no run lines.
 *
 * Each phase gets a fresh data directory (`witness init`) and a fresh `witness broker --port 0`
 * child with the same config (auth: token + anonymous; ACL off; envelope observe, or off with
 * --envelope off; audit metadata; ledger fsync batch); before A, one probe connect of device 0
 * checks that the broker accepts the fleet. Every second this process samples the CPU time
 * (utime + stime, /proc/PID/stat, all threads) and RSS (/proc/PID/status VmRSS) of the load
 * child and of the broker, and the whole machine's CPU (/proc/stat). Figures:
 *   - connect rate: successful connects / the seconds from the first to the last one (the
 *     ramp paces it at N / ramp; --ramp 0 measures the ceiling), connect time p50/p99;
 *   - steady state: from ramp + interval + 1 s (every device connected and sending) to
 *     duration − 1 s (the first device stops at `duration`): sent/s, acked/s (QoS 1 PUBACKs),
 *     CPU % of one core and CPU µs per sent message of the load child and of the broker;
 *   - run length (the load child's t = 0 to its summary: ramp + duration when on schedule);
 *   - max RSS of both; the broker's ledger afterwards: publish records, mean size, verdicts;
 *   - the other processes' CPU (machine − load child − broker): this machine is shared;
 *   - ratios A/B: send rate, CPU per message, connect rate, RSS.
 * Results and what they mean: docs/BENCHMARKS.md §Simulator scale.
 *
 * Usage: node dist/bench/sim.js [--devices N] [--ramp S] [--interval S] [--duration S]
 *          [--payload B] [--qos W0,W1] [--max-connecting M] [--phases sim,baseline]
 *          [--envelope observe|off] [--cpu-prof DIR] [--wait-idle S] [--out FILE] [--keep] [--json]
 *   --out FILE      also write the --json document to FILE
 *   --envelope off  the brokers do not check envelopes (default observe: the simulator's signed
 *                   messages cost the broker an Ed25519 verify each, the baseline's random bytes
 *                   a failed decode, so broker CPU differs between the phases)
 *   --cpu-prof DIR  profile the load child and the broker of each phase (DIR/PHASE, DIR/PHASE-broker;
 *                   the rates then carry the profiler's cost) and print where the time went
 *   --wait-idle S   before each phase, wait up to S s (default 90) for the machine to be quiet
 *                   (< 20 % of a core busy for 3 s); the other processes' CPU during each phase
 *                   is printed either way (this machine is shared)
 *
 * Limits: each load child needs N sockets and the broker N more, in separate processes; Node
 * raises its soft RLIMIT_NOFILE to the hard limit at start, so the hard limit must be ≥ N + 1024
 * (checked), and the ephemeral port range must hold N ports (checked). Every wait is bounded
 * (children are killed after ramp + duration + 180 s), every loop counted; children are killed
 * when this process exits, and the temp directory is removed unless --keep.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { formatMachine, machineInfo, procStatus } from './machine.js';
import { parseScenario } from '../simulator/scenario.js';
import { planDevices, planDevice } from '../simulator/plan.js';
import { DeviceSigner } from '../agent/signer.js';
import { SimLink, type ConnectOutcome } from '../simulator/link.js';
import type { PlannedDevice, Scenario } from '../simulator/types.js';
import { LedgerReader } from '../shared/ledger/reader.js';

// ── options ──────────────────────────────────────────────────────────────────────────────────

const { values } = parseArgs({
  options: {
    devices: { type: 'string' },
    ramp: { type: 'string' },
    interval: { type: 'string' },
    duration: { type: 'string' },
    payload: { type: 'string' },
    qos: { type: 'string' },
    'max-connecting': { type: 'string' },
    phases: { type: 'string' },
    'cpu-prof': { type: 'string' },
    'wait-idle': { type: 'string' },
    envelope: { type: 'string' },
    out: { type: 'string' },
    keep: { type: 'boolean' },
    json: { type: 'boolean' },
  },
});

function fail(msg: string): never {
  process.stderr.write(`bench/sim: ${msg}\n`);
  process.exit(2);
}

function number(name: string, v: string | undefined, dflt: number, lo: number, hi: number, integer = false): number {
  const n = v === undefined ? dflt : Number(v);
  if (!Number.isFinite(n) || n < lo || n > hi || (integer && !Number.isInteger(n))) fail(`--${name}: expected a ${integer ? 'whole ' : ''}number from ${lo} to ${hi}, got ${JSON.stringify(v)}`);
  return n;
}

const DEVICES = number('devices', values.devices, 10_000, 1, 50_000, true);
const RAMP_S = number('ramp', values.ramp, 20, 0, 600);
const INTERVAL_S = number('interval', values.interval, 5, 0.01, 3600);
const DURATION_S = number('duration', values.duration, 60, 1, 1800);
const PAYLOAD = number('payload', values.payload, 100, 0, 65_536, true);
const MAX_CONNECTING = number('max-connecting', values['max-connecting'], 256, 1, 100_000, true);
const QOS = (values.qos ?? '1,1').split(',').map(Number);
if (QOS.length !== 2 || QOS.some((w) => !Number.isFinite(w) || w < 0) || QOS[0]! + QOS[1]! <= 0) fail(`--qos: expected W0,W1 (weights of QoS 0 and QoS 1), got ${JSON.stringify(values.qos)}`);
const PHASES = (values.phases ?? 'sim,baseline').split(',') as Array<'sim' | 'baseline'>;
if (PHASES.length === 0 || PHASES.some((p) => p !== 'sim' && p !== 'baseline') || new Set(PHASES).size !== PHASES.length) fail('--phases: expected sim, baseline or both, in the order to run them');
/** The brokers' envelope policy: observe (the default: every signature verified) or off (not checked). */
const ENVELOPE = values.envelope ?? 'observe';
if (ENVELOPE !== 'observe' && ENVELOPE !== 'off') fail(`--envelope: expected observe or off, got ${JSON.stringify(values.envelope)}`);
/** Before each phase, wait up to this long (s) for the machine to be quiet (other jobs share it). */
const WAIT_IDLE_S = number('wait-idle', values['wait-idle'], 90, 0, 3600);
const PROFILE_DIR = values['cpu-prof'] === undefined ? undefined : resolve(values['cpu-prof']);
const JSON_OUT = values.json === true;
const JITTER = 0.2;
const SEED = 'bench-sim-1';
/** The steady window: every device connected and sending, none finished yet. */
const STEADY_FROM_S = Math.ceil(RAMP_S + INTERVAL_S) + 1;
const STEADY_TO_S = Math.floor(DURATION_S) - 1;
if (STEADY_TO_S - STEADY_FROM_S < 5) fail(`--duration must be at least ramp + interval + 7 s (${Math.ceil(RAMP_S + INTERVAL_S) + 7} s here) so that there is a steady state to measure`);

const WITNESS_BIN = fileURLToPath(new URL('../broker/cli/witness.js', import.meta.url));
const BASELINE_JS = fileURLToPath(new URL('./sim-baseline.js', import.meta.url));
const SAMPLE_MS = 1000;
const CHILD_START_MS = 30_000;
const CHILD_EXIT_MS = 30_000;
/** The load child's whole life: its setup, ramp, duration, its last acks and disconnects. */
const LOAD_TIMEOUT_MS = (RAMP_S + DURATION_S + 180) * 1000;

/** Progress on stderr (with --json too: stdout carries the JSON alone). */
const log = (s: string): void => {
  process.stderr.write(`${s}\n`);
};

// ── limits ───────────────────────────────────────────────────────────────────────────────────

function nofileLimits(): { soft: number; hard: number } {
  const line = readFileSync('/proc/self/limits', 'utf8')
    .split('\n')
    .find((l) => l.startsWith('Max open files'));
  const f = line?.split(/\s+/) ?? [];
  const v = (s: string | undefined): number => (s === 'unlimited' ? Infinity : Number(s));
  return { soft: v(f[3]), hard: v(f[4]) };
}

function checkLimits(): { nofile: { soft: number; hard: number }; ephemeralPorts: number } {
  const nofile = nofileLimits();
  const need = DEVICES + 1024;
  if (!(nofile.hard >= need)) {
    fail(
      `${DEVICES} devices need ${DEVICES} sockets in the load process and as many in the broker, ` +
        `plus files: a hard limit on open files of at least ${need}, and it is ${nofile.hard} here. ` +
        `Raise it (as root: prlimit --pid ${process.pid} --nofile=${need}:${need}, or ulimit -Hn ${need} in the shell that starts this) or use --devices ${Math.max(1, nofile.hard - 1024)}.`,
    );
  }
  let ephemeralPorts = Infinity;
  try {
    const [lo, hi] = readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').trim().split(/\s+/).map(Number);
    if (lo !== undefined && hi !== undefined) ephemeralPorts = hi - lo + 1;
  } catch {
    // not Linux: let connect() say so
  }
  if (ephemeralPorts < DEVICES + 100) fail(`${DEVICES} connections from 127.0.0.1 to one port need ${DEVICES} ephemeral ports; /proc/sys/net/ipv4/ip_local_port_range holds ${ephemeralPorts}`);
  return { nofile, ephemeralPorts };
}

// ── child processes: all tracked, all killed on the way out ─────────────────────────────────

const children = new Set<ChildProcess>();
const root = mkdtempSync(join(tmpdir(), 'witness-bench-sim-'));

function track(proc: ChildProcess): ChildProcess {
  children.add(proc);
  proc.once('exit', () => children.delete(proc));
  return proc;
}

function killAll(): void {
  for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
}

function cleanup(): void {
  killAll();
  if (!values.keep) rmSync(root, { recursive: true, force: true });
}

process.on('exit', killAll);
for (const sig of ['SIGINT', 'SIGTERM'] as const) {
  process.once(sig, () => {
    cleanup();
    process.exit(130);
  });
}

async function withTimeout<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const t = new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(`${what}: not within ${ms} ms`)), ms)));
  try {
    return await Promise.race([p, t]);
  } finally {
    clearTimeout(timer);
  }
}

function exited(proc: ChildProcess): Promise<void> {
  return proc.exitCode !== null || proc.signalCode !== null ? Promise.resolve() : once(proc, 'exit').then(() => undefined);
}

/** SIGTERM (the broker writes its final checkpoint, the simulator its summary), then SIGKILL. */
async function stopChild(proc: ChildProcess): Promise<void> {
  if (proc.exitCode !== null || proc.signalCode !== null) return;
  const done = exited(proc);
  proc.kill('SIGTERM');
  try {
    await withTimeout(done, CHILD_EXIT_MS, `pid ${proc.pid} exit`);
  } catch {
    proc.kill('SIGKILL');
    await withTimeout(done, 5000, `pid ${proc.pid} exit after SIGKILL`).catch(() => {});
  }
}

function witness(...args: string[]): string {
  const r = spawnSync(process.execPath, [WITNESS_BIN, ...args], { encoding: 'utf8', timeout: 120_000, maxBuffer: 64 * 2 ** 20 });
  if (r.status !== 0) throw new Error(`witness ${args.join(' ')} exited ${r.status ?? r.signal}: ${r.stderr}`);
  return r.stdout;
}

/** The broker config of both phases (keys: broker/config/example.yaml). */
const BROKER_CONFIG = [
  '# bench/sim.ts: the broker of both phases.',
  'listeners:',
  '  - type: mqtt',
  '    host: 127.0.0.1',
  '    port: 0',
  'ledger:',
  '  fsync: batch',
  'auth:',
  '  anonymous: true             # the baseline connects without credentials',
  '  token:',
  '    audience: mqtt-witness',
  'acl:',
  '  enabled: false',
  'defaultPolicy:',
  '  audit: metadata',
  `  envelope: ${ENVELOPE}`,
  '  unwrap: false',
  '',
].join('\n');

interface Broker {
  proc: ChildProcess;
  url: string;
  data: string;
  /** The last 4,000 characters the broker wrote on stderr. */
  stderr: () => string;
}

async function startBroker(dir: string, data: string, profDir: string | undefined): Promise<Broker> {
  const config = join(dir, 'broker.yaml');
  writeFileSync(config, BROKER_CONFIG);
  const node = profDir ? ['--cpu-prof', '--cpu-prof-dir', profDir] : [];
  const proc = track(spawn(process.execPath, [...node, WITNESS_BIN, 'broker', '--data', data, '--config', config, '--port', '0'], { stdio: ['ignore', 'pipe', 'pipe'] }));
  let out = '';
  let err = '';
  proc.stderr!.on('data', (d: Buffer) => (err = (err + d.toString()).slice(-4000)));
  const url = await withTimeout(
    new Promise<string>((resolve, reject) => {
      const onData = (d: Buffer): void => {
        out += d.toString();
        const m = /^listening (mqtt:\/\/\S+)$/m.exec(out);
        if (m) {
          proc.stdout!.off('data', onData);
          proc.stdout!.resume();
          resolve(m[1]!);
        }
      };
      proc.stdout!.on('data', onData);
      proc.once('exit', (code) => reject(new Error(`broker exited with ${code} before listening:\n${out}\n${err}`)));
    }),
    CHILD_START_MS,
    'broker "listening" line',
  );
  return { proc, url, data, stderr: () => err };
}

// ── sampling /proc ───────────────────────────────────────────────────────────────────────────

const CLK_TCK = (() => {
  const r = spawnSync('getconf', ['CLK_TCK'], { encoding: 'utf8', timeout: 5000 });
  const n = Number(r.stdout?.trim());
  return Number.isFinite(n) && n > 0 ? n : 100;
})();

interface Sample {
  /** Date.now() at the reading. */
  at: number;
  cpuMs: number;
  rssKiB: number;
}

function readProc(pid: number): Sample | null {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    const cpuMs = ((Number(f[11]) + Number(f[12])) * 1000) / CLK_TCK; // utime, stime (fields 14, 15)
    return { at: Date.now(), cpuMs, rssKiB: procStatus(pid)?.VmRSS ?? 0 };
  } catch {
    return null; // exited
  }
}

/** CPU time of the whole machine (all cores, every process) that was not idle, as a Sample. */
function readMachine(): Sample | null {
  try {
    const f = readFileSync('/proc/stat', 'utf8').split('\n', 1)[0]!.trim().split(/\s+/).slice(1).map(Number);
    const total = f.slice(0, 8).reduce((a, b) => a + b, 0); // user … steal (guest is inside user)
    const idle = f[3]! + f[4]!; // idle + iowait
    return { at: Date.now(), cpuMs: ((total - idle) * 1000) / CLK_TCK, rssKiB: 0 };
  } catch {
    return null;
  }
}

/**
 * Waits (at most WAIT_IDLE_S) until the machine has been quiet for 3 s in a row: all processes
 * together below 20 % of one core per second. Returns the machine's busy % of one core over the
 * last 3 s before going on, and whether it was quiet.
 */
async function waitQuiet(): Promise<{ quiet: boolean; busyPct: number | null; waitedS: number }> {
  const start = Date.now();
  const xs: Sample[] = [];
  for (let i = 0; i < WAIT_IDLE_S + 3 && i < 100_000; i++) {
    const m = readMachine();
    if (!m) return { quiet: false, busyPct: null, waitedS: 0 };
    xs.push(m);
    if (xs.length >= 4) {
      const a = xs[xs.length - 4]!;
      const busyPct = (100 * (m.cpuMs - a.cpuMs)) / (m.at - a.at);
      const waitedS = Math.round((Date.now() - start) / 1000);
      if (busyPct < 20 || waitedS >= WAIT_IDLE_S) return { quiet: busyPct < 20, busyPct: Math.round(busyPct), waitedS };
    }
    await sleep(1000);
  }
  return { quiet: false, busyPct: null, waitedS: Math.round((Date.now() - start) / 1000) };
}

/** Samples processes every SAMPLE_MS until stopped (bounded by the caller's timeouts). */
class Sampler {
  readonly series = new Map<string, Sample[]>();
  readonly #pids: Map<string, number>;
  #timer: NodeJS.Timeout;

  constructor(pids: Record<string, number>) {
    this.#pids = new Map(Object.entries(pids));
    for (const k of this.#pids.keys()) this.series.set(k, []);
    this.#tick();
    this.#timer = setInterval(() => this.#tick(), SAMPLE_MS);
  }

  #tick(): void {
    for (const [k, pid] of this.#pids) {
      const s = k === 'machine' ? readMachine() : readProc(pid);
      if (s) this.series.get(k)!.push(s);
    }
  }

  stop(): void {
    this.#tick();
    clearInterval(this.#timer);
  }
}

/** CPU time at `at` (ms since the epoch), interpolated between samples; null outside them. */
function cpuAt(xs: readonly Sample[], at: number): number | null {
  if (xs.length === 0 || at < xs[0]!.at || at > xs[xs.length - 1]!.at) return null;
  for (let i = 1; i < xs.length; i++) {
    const a = xs[i - 1]!;
    const b = xs[i]!;
    if (at <= b.at) return b.at === a.at ? b.cpuMs : a.cpuMs + ((b.cpuMs - a.cpuMs) * (at - a.at)) / (b.at - a.at);
  }
  return xs[xs.length - 1]!.cpuMs;
}

/** CPU ms used in [from, to] (epoch ms), or null when the samples do not cover it. */
function cpuBetween(xs: readonly Sample[], from: number, to: number): number | null {
  const a = cpuAt(xs, from);
  const b = cpuAt(xs, to);
  return a === null || b === null ? null : b - a;
}

// ── the scenario ─────────────────────────────────────────────────────────────────────────────

const SCENARIO_YAML = [
  '# bench/sim.ts: one fleet, no incidents.',
  'name: bench-sim',
  `seed: "${SEED}"`,
  `duration: ${Math.round(DURATION_S * 1000)}`,
  `ramp: ${Math.round(RAMP_S * 1000)}`,
  'fleets:',
  '  - name: dev',
  `    count: ${DEVICES}`,
  '    idPattern: "dev-{n:5}"',
  '    topic: "devices/{id}/telemetry"',
  `    interval: ${Math.round(INTERVAL_S * 1000)}`,
  `    jitter: ${JITTER}`,
  `    qos: { 0: ${QOS[0]}, 1: ${QOS[1]} }`,
  '    payload:',
  '      model: json',
  '      sensors:',
  '        - { name: temp, start: 20, step: 0.5, min: -40, max: 85, decimals: 1 }',
  '        - { name: battery, start: 100, step: 0.1, min: 0, max: 100, decimals: 1 }',
  `      padTo: ${PAYLOAD}`,
  '',
].join('\n');

/**
 * Mean application payload and envelope sizes of what the simulator sends: device 0's planned
 * messages, signed the way the runner signs them (same claims, the system clock).
 */
/** The scenario with its first device only (its id, keys and messages are those of the full fleet's device 0). */
function firstDevice(file: string): { s: Scenario; d: PlannedDevice } {
  const s = parseScenario(SCENARIO_YAML, file);
  const one = { ...s, fleets: s.fleets.map((f) => ({ ...f, count: 1 })) };
  return { s: one, d: planDevices(one)[0]! };
}

/**
 * One connect of device 0 with a fresh token before the simulator starts: the registry the
 * broker loaded must know the fleet, or every connect of the run would be refused (and the
 * simulator would retry before each of its messages). The broker records this connect too.
 */
async function probeDevice(url: string, file: string): Promise<ConnectOutcome> {
  const { s, d } = firstDevice(file);
  const link = new SimLink(url, 10_000);
  const out = await link.connect({ clientId: d.id, device: { seed: d.seed, publicKey: d.publicKey, audience: s.audience } });
  await link.end();
  return out;
}

function messageSizes(file: string): { payload: number; envelope: number; messages: number } {
  const { s, d } = firstDevice(file);
  const signer = new DeviceSigner({ deviceId: d.id, seed: d.seed, clock: () => ({ time: Date.now(), uncertainty: s.clockUncertaintyMs, source: 'system' }) });
  let payload = 0;
  let envelope = 0;
  let n = 0;
  for (const it of planDevice(s, d)) {
    if (it.kind !== 'publish' || !it.envelope) continue;
    payload += it.payload.length;
    envelope += signer.sign(it.envelope.signedTopic, it.payload).envelope.length;
    n++;
  }
  return { payload: payload / n, envelope: envelope / n, messages: n };
}

// ── one phase ────────────────────────────────────────────────────────────────────────────────

interface Bin {
  t: number;
  connects: number;
  sent: number;
  acked: number;
  errors: number;
}

/** What both load children print (the simulator's RunSummary has these fields and more). */
interface LoadSummary {
  startedAt: number;
  durationMs: number;
  totals: { sent: number; acked: number; connects: number; connectFailed: number; errors: number };
  connect: { p50: number | null; p95: number | null; p99: number | null; max: number | null };
  ack: { p50: number | null; p95: number | null; p99: number | null; max: number | null };
  errors: { total: number; byMessage: Record<string, number> };
  bins: Bin[];
}

interface ProcFigures {
  /** % of one core. */
  cpuRampPct: number | null;
  cpuSteadyPct: number | null;
  /** CPU µs per message sent in the steady window. */
  cpuUsPerMsg: number | null;
  cpuTotalS: number;
  rssMaxMiB: number;
  rssSteadyEndMiB: number | null;
}

interface PhaseResult {
  phase: 'sim' | 'baseline';
  label: string;
  exit: number | string | null;
  /** From spawning the load child to its t = 0 (the simulator plans and derives keys here). */
  setupMs: number;
  /** The load child's run, its t = 0 to its summary, s (planned: ramp + duration, plus the last acks). */
  runS: number;
  loadavg: { before: number[]; after: number[] };
  connect: { ok: number; failed: number; firstS: number | null; lastS: number | null; spanS: number; rate: number; peak: number; p50: number | null; p99: number | null; max: number | null };
  steady: { fromS: number; toS: number; sentPerS: number; ackedPerS: number; offeredPerS: number };
  totals: LoadSummary['totals'];
  ack: LoadSummary['ack'];
  errors: { total: number; top: Record<string, number> };
  /** The machine before the load started (see waitQuiet). */
  quietStart: { quiet: boolean; busyPct: number | null; waitedS: number };
  load: ProcFigures;
  broker: ProcFigures;
  /** Every process on the machine (CPU only; % of ONE core, so up to cores × 100). */
  machine: ProcFigures;
  /** The devices' publish records in the broker's ledger; brokerOwn: the broker's own ($SYS). */
  ledger: { publishes: number; meanBytes: number | null; verdicts: Record<string, number>; brokerOwn: number };
  profile?: ProfileSummary;
  brokerProfile?: ProfileSummary;
  /** The end of the broker's stderr, when the load saw errors. */
  brokerStderr?: string;
  /** Per second of the run: [t, connects, sent, acked, errors, load CPU %, broker CPU %, machine CPU %, load RSS MiB]. */
  timeline: Array<[number, number, number, number, number, number | null, number | null, number | null, number | null]>;
}

function figures(xs: readonly Sample[], startedAt: number, steadySent: number): ProcFigures {
  const ramp = cpuBetween(xs, startedAt, startedAt + Math.max(RAMP_S, 1) * 1000);
  const from = startedAt + STEADY_FROM_S * 1000;
  const to = startedAt + STEADY_TO_S * 1000;
  const steady = cpuBetween(xs, from, to);
  const atEnd = xs.filter((s) => s.at <= to).at(-1);
  const r1 = (x: number): number => Math.round(x * 10) / 10;
  return {
    cpuRampPct: ramp === null ? null : r1((100 * ramp) / (Math.max(RAMP_S, 1) * 1000)),
    cpuSteadyPct: steady === null ? null : r1((100 * steady) / (to - from)),
    cpuUsPerMsg: steady === null || steadySent === 0 ? null : r1((steady * 1000) / steadySent),
    cpuTotalS: r1((xs.at(-1)?.cpuMs ?? 0) / 1000),
    rssMaxMiB: r1(Math.max(0, ...xs.map((s) => s.rssKiB)) / 1024),
    rssSteadyEndMiB: atEnd ? r1(atEnd.rssKiB / 1024) : null,
  };
}

async function ledgerCounts(data: string): Promise<PhaseResult['ledger']> {
  const reader = LedgerReader.open(join(data, 'ledger'));
  let publishes = 0;
  let own = 0;
  let bytes = 0;
  const verdicts: Record<string, number> = {};
  try {
    for await (const r of reader.records()) {
      if (!r.line.includes('"e":"publish"')) continue;
      const rec = JSON.parse(r.line) as { z?: number; env?: string; topic?: string };
      // Only the devices' publishes: aedes also publishes $SYS notices of every connect and disconnect.
      if (!rec.topic?.startsWith('devices/')) {
        own++;
        continue;
      }
      publishes++;
      bytes += rec.z ?? 0;
      verdicts[rec.env ?? 'none'] = (verdicts[rec.env ?? 'none'] ?? 0) + 1;
    }
  } finally {
    reader.close();
  }
  return { publishes, meanBytes: publishes ? Math.round((bytes / publishes) * 10) / 10 : null, verdicts, brokerOwn: own };
}

async function runPhase(phase: 'sim' | 'baseline', scenarioFile: string, envelopeBytes: number): Promise<PhaseResult> {
  const label = phase === 'sim' ? 'A simulator' : 'B mqtt.js only';
  const dir = join(root, phase);
  const data = join(dir, 'data');
  mkdirSync(dir, { recursive: true });
  witness('init', '--data', data, '--node-id', `bench-sim-${phase}`, '--json');
  if (phase === 'sim') witness('sim', 'register', scenarioFile, '--data', data, '--json');
  const profDir = PROFILE_DIR ? join(PROFILE_DIR, phase) : undefined;
  const brokerProfDir = PROFILE_DIR ? join(PROFILE_DIR, `${phase}-broker`) : undefined;
  for (const d of [profDir, brokerProfDir]) if (d) mkdirSync(d, { recursive: true });
  const broker = await startBroker(dir, data, brokerProfDir);
  log(`${label}: broker ${broker.url} (pid ${broker.proc.pid})`);
  if (phase === 'sim') {
    const probe = await probeDevice(broker.url, scenarioFile);
    if (!probe.ok) {
      await stopChild(broker.proc);
      throw new Error(`${label}: the broker refused device 0 of the registered fleet (${probe.err ?? `rc ${probe.rc}`}); broker stderr:\n${broker.stderr()}`);
    }
  }

  const node = profDir ? ['--cpu-prof', '--cpu-prof-dir', profDir] : [];
  const args =
    phase === 'sim'
      ? [...node, WITNESS_BIN, 'sim', 'run', scenarioFile, '--broker', broker.url, '--json', '--quiet', '--max-connecting', String(MAX_CONNECTING)]
      : [
          ...node,
          BASELINE_JS,
          '--broker', broker.url,
          '--devices', String(DEVICES),
          '--ramp-ms', String(Math.round(RAMP_S * 1000)),
          '--interval-ms', String(Math.round(INTERVAL_S * 1000)),
          '--jitter', String(JITTER),
          '--duration-ms', String(Math.round(DURATION_S * 1000)),
          '--qos', QOS.join(','),
          '--payload-bytes', String(Math.round(envelopeBytes)),
          '--seed', SEED,
          '--max-connecting', String(MAX_CONNECTING),
        ];
  const quiet = WAIT_IDLE_S > 0 ? await waitQuiet() : { quiet: false, busyPct: null, waitedS: 0 };
  if (WAIT_IDLE_S > 0) log(`${label}: machine ${quiet.quiet ? 'quiet' : 'NOT quiet'} (${quiet.busyPct ?? '?'} % of a core busy over 3 s, after ${quiet.waitedS} s); starting the load`);
  const before = loadavg().map((x) => +x.toFixed(2));
  const spawnedAt = Date.now();
  const proc = track(spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'pipe'] }));
  const sampler = new Sampler({ load: proc.pid!, broker: broker.proc.pid!, machine: 0 });
  let out = '';
  let err = '';
  proc.stdout!.on('data', (d: Buffer) => {
    if (out.length < 64 * 2 ** 20) out += d.toString();
  });
  proc.stderr!.on('data', (d: Buffer) => (err = (err + d.toString()).slice(-8000)));
  let exit: number | string | null = null;
  try {
    await withTimeout(exited(proc), LOAD_TIMEOUT_MS, `${label} run`);
  } catch (e) {
    log(`${label}: ${(e as Error).message}; stopping it`);
    await stopChild(proc);
  }
  exit = proc.exitCode ?? proc.signalCode;
  sampler.stop();
  // Let the broker finish what it received, then stop it (final checkpoint) and read its ledger.
  await sleep(500);
  await stopChild(broker.proc);
  const after = loadavg().map((x) => +x.toFixed(2));

  let summary: LoadSummary;
  try {
    // `witness sim run --json` prints { …, summary }; the baseline prints the summary itself.
    const j = JSON.parse(out) as LoadSummary & { summary?: LoadSummary };
    summary = j.summary ?? j;
  } catch {
    throw new Error(`${label}: the load child (exit ${exit}) printed no summary:\n${out.slice(0, 2000)}\n${err}`);
  }
  const bins = summary.bins;
  const withConnects = bins.filter((b) => b.connects > 0);
  const firstS = withConnects[0]?.t ?? null;
  const lastS = withConnects.at(-1)?.t ?? null;
  const spanS = firstS === null || lastS === null ? 0 : lastS - firstS + 1;
  const steadyBins = bins.filter((b) => b.t >= STEADY_FROM_S && b.t < STEADY_TO_S);
  const steadySent = steadyBins.reduce((a, b) => a + b.sent, 0);
  const steadyAcked = steadyBins.reduce((a, b) => a + b.acked, 0);
  const windowS = STEADY_TO_S - STEADY_FROM_S;
  const top = Object.fromEntries(Object.entries(summary.errors.byMessage).sort((a, b) => b[1] - a[1]).slice(0, 5));
  const r1 = (x: number): number => Math.round(x * 10) / 10;
  const result: PhaseResult = {
    phase,
    label,
    exit,
    setupMs: summary.startedAt - spawnedAt,
    runS: Math.round(summary.durationMs / 100) / 10,
    loadavg: { before, after },
    connect: {
      ok: summary.totals.connects,
      failed: summary.totals.connectFailed,
      firstS,
      lastS,
      spanS,
      rate: spanS > 0 ? r1(summary.totals.connects / spanS) : 0,
      peak: Math.max(0, ...bins.map((b) => b.connects)),
      p50: summary.connect.p50,
      p99: summary.connect.p99,
      max: summary.connect.max,
    },
    steady: { fromS: STEADY_FROM_S, toS: STEADY_TO_S, sentPerS: r1(steadySent / windowS), ackedPerS: r1(steadyAcked / windowS), offeredPerS: r1(DEVICES / INTERVAL_S) },
    totals: summary.totals,
    ack: summary.ack,
    errors: { total: summary.errors.total, top },
    quietStart: quiet,
    load: figures(sampler.series.get('load')!, summary.startedAt, steadySent),
    broker: figures(sampler.series.get('broker')!, summary.startedAt, steadySent),
    machine: figures(sampler.series.get('machine')!, summary.startedAt, steadySent),
    ...(summary.errors.total > 0 ? { brokerStderr: broker.stderr() } : {}),
    ledger: await ledgerCounts(data),
    timeline: bins.map((b) => {
      const t0 = summary.startedAt + b.t * 1000;
      const pct = (k: string): number | null => {
        const c = cpuBetween(sampler.series.get(k)!, t0, t0 + 1000);
        return c === null ? null : Math.round(c / 10);
      };
      const rss = sampler.series.get('load')!.find((x) => x.at >= t0);
      return [b.t, b.connects, b.sent, b.acked, b.errors, pct('load'), pct('broker'), pct('machine'), rss ? Math.round(rss.rssKiB / 1024) : null];
    }),
  };
  if (profDir) result.profile = summariseProfiles(profDir, 25);
  if (brokerProfDir) result.brokerProfile = summariseProfiles(brokerProfDir, 25);
  if (!values.keep) rmSync(data, { recursive: true, force: true });
  return result;
}

// ── CPU profiles ─────────────────────────────────────────────────────────────────────────────

interface CpuProfile {
  nodes: Array<{ id: number; callFrame: { functionName: string; url: string; lineNumber: number }; children?: number[] }>;
  samples: number[];
  timeDeltas: number[];
}

interface ProfileSummary {
  busyMs: number;
  idleMs: number;
  /** Self time, % of busy. */
  self: Array<{ name: string; pct: number }>;
  /** Time including callees, % of busy (each frame counted once per sample). */
  inclusive: Array<{ name: string; pct: number }>;
}

function frameName(cf: CpuProfile['nodes'][number]['callFrame']): string {
  const fn = cf.functionName || '(anonymous)';
  if (!cf.url) return fn;
  const i = cf.url.lastIndexOf('/node_modules/');
  const short = i >= 0 ? cf.url.slice(i + 14) : cf.url.replace(/^file:\/\/.*\/dist\//, '').replace(/^node:/, 'node:');
  return `${fn} ${short}:${cf.lineNumber + 1}`;
}

function summariseProfiles(dir: string, top: number): ProfileSummary {
  const self = new Map<string, number>();
  const incl = new Map<string, number>();
  let busy = 0;
  let idle = 0;
  for (const f of readdirSync(dir).filter((x) => x.endsWith('.cpuprofile'))) {
    const p = JSON.parse(readFileSync(join(dir, f), 'utf8')) as CpuProfile;
    const byId = new Map(p.nodes.map((n) => [n.id, n]));
    const parent = new Map<number, number>();
    for (const n of p.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
    for (let i = 0; i < p.samples.length; i++) {
      const us = p.timeDeltas[i] ?? 0;
      const n = byId.get(p.samples[i]!);
      if (!n) continue;
      if (n.callFrame.functionName === '(idle)') {
        idle += us;
        continue;
      }
      busy += us;
      const k = frameName(n.callFrame);
      self.set(k, (self.get(k) ?? 0) + us);
      const seen = new Set<string>();
      for (let id: number | undefined = n.id, depth = 0; id !== undefined && depth < 10_000; id = parent.get(id), depth++) {
        const name = frameName(byId.get(id)!.callFrame);
        if (seen.has(name)) continue;
        seen.add(name);
        incl.set(name, (incl.get(name) ?? 0) + us);
      }
    }
  }
  const rank = (m: Map<string, number>): Array<{ name: string; pct: number }> =>
    [...m.entries()]
      .filter(([name]) => name !== '(root)')
      .sort((a, b) => b[1] - a[1])
      .slice(0, top)
      .map(([name, us]) => ({ name, pct: +((100 * us) / Math.max(busy, 1)).toFixed(1) }));
  return { busyMs: Math.round(busy / 1000), idleMs: Math.round(idle / 1000), self: rank(self), inclusive: rank(incl) };
}

// ── the run ──────────────────────────────────────────────────────────────────────────────────

const ratio = (a: number | null, b: number | null): number | null => (a === null || b === null || b === 0 ? null : Math.round((a / b) * 100) / 100);

/** CPU % of everything on the machine but the load child and the broker. */
function others(r: PhaseResult, k: 'cpuRampPct' | 'cpuSteadyPct'): number | null {
  const m = r.machine[k];
  const l = r.load[k];
  const b = r.broker[k];
  return m === null || l === null || b === null ? null : Math.max(0, m - l - b);
}

function table(results: PhaseResult[]): string {
  const a = results.find((r) => r.phase === 'sim');
  const b = results.find((r) => r.phase === 'baseline');
  const cols = [a, b].filter((r): r is PhaseResult => r !== undefined);
  const f = (x: number | null | undefined, digits = 0): string => (x === null || x === undefined ? '—' : x.toLocaleString('en-US', { maximumFractionDigits: digits, minimumFractionDigits: digits }));
  const rows: Array<[string, (r: PhaseResult) => string, string]> = [
    ['load child setup before t=0 (s)', (r) => f(r.setupMs / 1000, 1), ''],
    [`run length, t = 0 to the end (s; planned ${RAMP_S + DURATION_S})`, (r) => f(r.runS, 1), ''],
    ['connected / failed', (r) => `${f(r.connect.ok)} / ${f(r.connect.failed)}`, ''],
    ['connect rate (/s, first→last connect)', (r) => `${f(r.connect.rate)} (${r.connect.firstS}→${r.connect.lastS} s)`, a && b ? f(ratio(a.connect.rate, b.connect.rate), 2) : ''],
    ['connects in the busiest second', (r) => f(r.connect.peak), ''],
    ['connect time p50 / p99 (ms)', (r) => `${f(r.connect.p50, 1)} / ${f(r.connect.p99, 1)}`, ''],
    [`sent/s, steady (${STEADY_FROM_S}–${STEADY_TO_S} s; offered ${f(DEVICES / INTERVAL_S)})`, (r) => f(r.steady.sentPerS), a && b ? f(ratio(a.steady.sentPerS, b.steady.sentPerS), 3) : ''],
    ['acked/s, steady (QoS 1 PUBACKs)', (r) => f(r.steady.ackedPerS), a && b ? f(ratio(a.steady.ackedPerS, b.steady.ackedPerS), 3) : ''],
    ['most frequent error', (r) => { const e = Object.entries(r.errors.top)[0]; return e ? `${e[1]}× ${e[0].slice(0, 60)}` : '—'; }, ''],
    ['ack time p50 / p99 (ms)', (r) => `${f(r.ack.p50, 1)} / ${f(r.ack.p99, 1)}`, ''],
    ['sent / acked / errors, whole run', (r) => `${f(r.totals.sent)} / ${f(r.totals.acked)} / ${f(r.errors.total)}`, ''],
    ['load CPU, ramp (% of a core)', (r) => f(r.load.cpuRampPct, 1), a && b ? f(ratio(a.load.cpuRampPct, b.load.cpuRampPct), 2) : ''],
    ['load CPU, steady (% of a core)', (r) => f(r.load.cpuSteadyPct, 1), a && b ? f(ratio(a.load.cpuSteadyPct, b.load.cpuSteadyPct), 2) : ''],
    ['load CPU per message, steady (µs)', (r) => f(r.load.cpuUsPerMsg, 0), a && b ? f(ratio(a.load.cpuUsPerMsg, b.load.cpuUsPerMsg), 2) : ''],
    ['load CPU, whole life (s)', (r) => f(r.load.cpuTotalS, 1), a && b ? f(ratio(a.load.cpuTotalS, b.load.cpuTotalS), 2) : ''],
    ['load RSS max (MiB)', (r) => f(r.load.rssMaxMiB, 0), a && b ? f(ratio(a.load.rssMaxMiB, b.load.rssMaxMiB), 2) : ''],
    ['broker CPU, ramp (% of a core)', (r) => f(r.broker.cpuRampPct, 1), ''],
    ['broker CPU, steady (% of a core)', (r) => f(r.broker.cpuSteadyPct, 1), a && b ? f(ratio(a.broker.cpuSteadyPct, b.broker.cpuSteadyPct), 2) : ''],
    ['broker CPU per message, steady (µs)', (r) => f(r.broker.cpuUsPerMsg, 0), ''],
    ['broker RSS max (MiB)', (r) => f(r.broker.rssMaxMiB, 0), ''],
    ['other processes\' CPU, ramp / steady (% of a core)', (r) => `${f(others(r, 'cpuRampPct'), 0)} / ${f(others(r, 'cpuSteadyPct'), 0)}`, ''],
    ['ledger publish records (mean bytes)', (r) => `${f(r.ledger.publishes)} (${f(r.ledger.meanBytes, 1)} B)`, ''],
    ['ledger verdicts', (r) => Object.entries(r.ledger.verdicts).map(([k, v]) => `${k} ${v}`).join(', '), ''],
    ['load average before → after', (r) => `${r.loadavg.before[0]} → ${r.loadavg.after[0]}`, ''],
  ];
  const head = ['', ...cols.map((r) => r.label), cols.length === 2 ? 'A/B' : ''];
  const lines = rows.map(([name, fn, rat]) => [name, ...cols.map(fn), cols.length === 2 ? rat : '']);
  const widths = head.map((_, i) => Math.max(head[i]!.length, ...lines.map((l) => l[i]!.length)));
  const fmt = (l: string[]): string => l.map((c, i) => (i === 0 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join('  ');
  return [fmt(head), ...lines.map(fmt)].join('\n');
}

const machine = machineInfo();
const limits = checkLimits();
const scenarioFile = join(root, 'scenario.yaml');
writeFileSync(scenarioFile, SCENARIO_YAML);
const sizes = messageSizes(scenarioFile);
log(`Simulator scale: ${DEVICES} devices, ramp ${RAMP_S} s, 1 message / ${INTERVAL_S} s each (offered ${DEVICES / INTERVAL_S} msg/s), QoS 0:1 = ${QOS.join(':')}, for ${DURATION_S} s; broker envelope ${ENVELOPE}`);
log(`payload ${sizes.payload.toFixed(1)} B JSON → envelope ${sizes.envelope.toFixed(1)} B; max connecting ${MAX_CONNECTING}`);
log(`machine: ${formatMachine(machine)}; open files soft/hard ${limits.nofile.soft}/${limits.nofile.hard}; ephemeral ports ${limits.ephemeralPorts}`);

const results: PhaseResult[] = [];
try {
  for (const p of PHASES) {
    const r = await runPhase(p, scenarioFile, sizes.envelope);
    results.push(r);
    log(`${r.label}: exit ${r.exit}, ${r.connect.ok} connected, steady ${r.steady.sentPerS} sent/s, CPU ${r.load.cpuSteadyPct}% (${r.load.cpuUsPerMsg} µs/msg)`);
  }
} finally {
  cleanup();
}

const a = results.find((r) => r.phase === 'sim');
const b = results.find((r) => r.phase === 'baseline');
const ratios =
  a && b
    ? {
        sendRate: ratio(a.steady.sentPerS, b.steady.sentPerS),
        ackRate: ratio(a.steady.ackedPerS, b.steady.ackedPerS),
        connectRate: ratio(a.connect.rate, b.connect.rate),
        cpuPerMessage: ratio(a.load.cpuUsPerMsg, b.load.cpuUsPerMsg),
        cpuSteady: ratio(a.load.cpuSteadyPct, b.load.cpuSteadyPct),
        cpuTotal: ratio(a.load.cpuTotalS, b.load.cpuTotalS),
        rssMax: ratio(a.load.rssMaxMiB, b.load.rssMaxMiB),
        brokerCpuPerMessage: ratio(a.broker.cpuUsPerMsg, b.broker.cpuUsPerMsg),
      }
    : null;

const report = {
  machine,
  limits,
  options: { devices: DEVICES, envelope: ENVELOPE, rampS: RAMP_S, intervalS: INTERVAL_S, durationS: DURATION_S, jitter: JITTER, qos: QOS, payloadPadTo: PAYLOAD, maxConnecting: MAX_CONNECTING, phases: PHASES, steadyFromS: STEADY_FROM_S, steadyToS: STEADY_TO_S },
  sizes,
  results,
  ratios,
};
if (values.out) writeFileSync(values.out, JSON.stringify(report, null, 2) + '\n');
if (JSON_OUT) process.stdout.write(JSON.stringify(report, null, 2) + '\n');
else {
  process.stdout.write(`\n${table(results)}\n`);
  if (ratios) {
    process.stdout.write(
      `\nA/B: send rate ${ratios.sendRate}×, CPU per message ${ratios.cpuPerMessage}×, CPU whole life ${ratios.cpuTotal}×, RSS ${ratios.rssMax}×, connect rate ${ratios.connectRate}×\n`,
    );
  }
  for (const r of results) {
    for (const [what, p] of [['load child', r.profile], ['broker', r.brokerProfile]] as const) {
      if (!p) continue;
      process.stdout.write(`\n${r.label}, ${what}: CPU profile, ${p.busyMs} ms busy (${p.idleMs} ms idle); self time, % of busy:\n`);
      for (const x of p.self.slice(0, 15)) process.stdout.write(`  ${x.pct.toFixed(1).padStart(5)}%  ${x.name}\n`);
      process.stdout.write('  including callees:\n');
      for (const x of p.inclusive.slice(0, 25)) process.stdout.write(`  ${x.pct.toFixed(1).padStart(5)}%  ${x.name}\n`);
    }
  }
}
