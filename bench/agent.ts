/**
 * The edge agent's benchmarks (issue 4 §Benchmarks), each with a baseline measured in the same run:
 *
 * 1. Signing: envelopes signed per second, `signEnvelope` on node:crypto (what the agent uses)
 *    against the same call on the @noble/ed25519 backend (the portable pure-JS path), and the raw
 *    Ed25519 signature of the same ToBeSigned bytes (Sig_structure) on both backends, so the
 *    envelope's own cost (CBOR, checks) shows. Ratio node/noble.
 * 2. End to end, one agent: the real `witness broker` as a child process (auth on, envelopes
 *    observed, audit metadata, fsync batch: the agent e2e tests' config), N QoS 1 publishes of a
 *    P-byte payload through one WitnessAgent (file outbox, ntpServers [] = system clock), timed
 *    from the first publish() to flush() resolving. Baselines on the same broker in the same round:
 *      plain  — one MQTT.js client sending the same number of envelopes of the same size, signed
 *               beforehand (not timed), with the agent's in-flight window (maxInflight 64): the
 *               broker does the same work (verify, record `valid`), the client only MQTT;
 *      inline — the same MQTT.js client signing each envelope (signEnvelope + envelopeHash for the
 *               chain) just before sending it: the agent minus the outbox.
 *    Ratios agent/plain and agent/inline; the client's and the broker's CPU per message. Each round
 *    starts a fresh broker; the order of the three rotates from round to round. The ledger is
 *    read after each round: every publish of every client must be recorded `valid`.
 * 3. Memory of the bundled agent: `scripts/bundle-agent.mjs` (what `npm run bundle` runs) builds
 *    dist/witness-agent.mjs; `node dist/witness-agent.mjs run --dir D --broker URL --json` is fed
 *    exactly R lines per second on stdin (`TOPIC PAYLOAD`, each one signed publish, QoS 1) for
 *    S seconds while VmRSS (and RssAnon / RssFile) is read from /proc/PID/status every second,
 *    VmHWM at the end. Baseline: an idle `node -e "setInterval(()=>{},1000)"`, sampled the same
 *    way over the same seconds (the floor of any Node process here). A second, "breakdown" run
 *    does the same with `node --import PROBE`, a few lines that log process.memoryUsage() every
 *    second, to split RSS into V8 heap, external memory and the rest (also for the idle process).
 *    Bundle size in bytes and gzipped (node:zlib).
 *
 * Usage: node dist/bench/agent.js [--json] [--rounds R] [--messages N] [--payload P]
 *          [--sign-seconds S] [--seconds S] [--rate R] [--app-window W] [--only sign,e2e,memory]
 *          [--no-bundle] [--no-breakdown] [--agent-node-flags='--flag …']
 *   --rounds 3, --messages 20000, --payload 64 (bytes), --sign-seconds 1 (per signing measurement),
 *   --seconds 30 and --rate 100 (the memory load), --app-window 1000 (publish() calls the
 *   benchmark's "application" leaves unresolved at most), --no-bundle: use the existing
 *   dist/witness-agent.mjs instead of rebuilding it.
 *
 * Every wait on a child or a peer is bounded in time, every loop in count; child processes are
 * killed on exit, and the temporary directory is removed.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { open } from 'node:fs/promises';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import { gzipSync } from 'node:zlib';
import mqtt, { type MqttClient } from 'mqtt';
import { formatMachine, machineInfo, median, procStatus } from './machine.js';
import { WitnessAgent } from '../agent/agent.js';
import { AGENT_DEFAULTS } from '../agent/options.js';
import { envelopeHash, GENESIS_PREV, signEnvelope, sigStructure, encodeProtectedHeader, type EnvelopeClaims } from '../shared/envelope/index.js';
import { protectedHeader } from '../shared/envelope/claims.js';
import { nodeBackend, publicKeyFromSeed, sign, type Ed25519Backend } from '../shared/keys/ed25519.js';
import { nobleBackend } from '../shared/keys/ed25519-noble.js';
import { formatPublicKey, writeKeyPair } from '../shared/keys/key-file.js';
import { deviceKid } from '../shared/keys/key-id.js';
import { createConnectToken, DEFAULT_AUDIENCE, TOKEN_USERNAME } from '../shared/token/connect-token.js';
import { LedgerReader } from '../shared/ledger/reader.js';

// ── options ──────────────────────────────────────────────────────────────────────────────────

const { values } = parseArgs({
  options: {
    json: { type: 'boolean' },
    rounds: { type: 'string' },
    messages: { type: 'string' },
    payload: { type: 'string' },
    'sign-seconds': { type: 'string' },
    seconds: { type: 'string' },
    rate: { type: 'string' },
    'app-window': { type: 'string' },
    only: { type: 'string' },
    'no-bundle': { type: 'boolean' },
    'no-breakdown': { type: 'boolean' },
    'agent-node-flags': { type: 'string' },
  },
});

function positive(name: string, v: string | undefined, dflt: number, integer = true): number {
  const n = Number(v ?? dflt);
  if (!Number.isFinite(n) || n <= 0 || (integer && !Number.isSafeInteger(n))) {
    console.error(`--${name}: expected a positive ${integer ? 'integer' : 'number'}, got ${JSON.stringify(v)}`);
    process.exit(2);
  }
  return n;
}

const JSON_OUT = values.json === true;
const ROUNDS = positive('rounds', values.rounds, 3);
const MESSAGES = positive('messages', values.messages, 20_000);
const PAYLOAD_BYTES = positive('payload', values.payload, 64);
const SIGN_SECONDS = positive('sign-seconds', values['sign-seconds'], 1, false);
const MEM_SECONDS = positive('seconds', values.seconds, 30);
const MEM_RATE = positive('rate', values.rate, 100);
const APP_WINDOW = positive('app-window', values['app-window'], 1000);
/** Extra node flags for the bundled agent only (experiments, e.g. --max-semi-space-size=1). Default none: plain `node`. */
const AGENT_NODE_FLAGS = (values['agent-node-flags'] ?? '').split(' ').filter((f) => f !== '');
const PHASES = new Set((values.only ?? 'sign,e2e,memory').split(','));
for (const p of PHASES) {
  if (!['sign', 'e2e', 'memory'].includes(p)) {
    console.error(`--only: unknown part ${JSON.stringify(p)}; expected some of sign, e2e, memory`);
    process.exit(2);
  }
}
if (MESSAGES > 1_000_000 || MEM_SECONDS > 600 || MEM_RATE > 10_000 || ROUNDS > 20) {
  console.error('bounds: --messages ≤ 1,000,000, --seconds ≤ 600, --rate ≤ 10,000, --rounds ≤ 20');
  process.exit(2);
}

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const WITNESS_BIN = fileURLToPath(new URL('../broker/cli/witness.js', import.meta.url));
const BUNDLE_SCRIPT = join(ROOT, 'scripts', 'bundle-agent.mjs');
const BUNDLE = join(ROOT, 'dist', 'witness-agent.mjs');

const TOPIC = 'bench/agent/telemetry';
/** The agent's default in-flight window, used by the MQTT.js baselines too. */
const WINDOW = AGENT_DEFAULTS.maxInflight;
/** The agent's system-clock uncertainty (TrustedClock's systemUncertaintyMs): same-size envelopes. */
const SYSTEM_UNCERTAINTY_MS = 1000;
/** Device ids of equal length, so that every client's envelopes have the same size. */
const ID_AGENT = 'bench-agent';
const ID_PLAIN = 'bench-plain';
const ID_INLINE = 'bench-isign';

const CHILD_START_MS = 20_000;
const CHILD_EXIT_MS = 15_000;
const CONNECT_MS = 10_000;
/** A client's whole run of N messages; at 1,000 msg/s N = 20,000 takes 20 s. */
const RUN_MS = Math.max(120_000, MESSAGES * 5);

const payload = new TextEncoder().encode('{"t":21.5,"unit":"C","sensor":"pt100","ok":true}'.padEnd(PAYLOAD_BYTES, ' ').slice(0, PAYLOAD_BYTES));

// ── child processes: all tracked, all killed on the way out ─────────────────────────────────

const children = new Set<ChildProcess>();
const root = mkdtempSync(join(tmpdir(), 'witness-bench-agent-'));

function track(proc: ChildProcess): ChildProcess {
  children.add(proc);
  proc.once('exit', () => children.delete(proc));
  return proc;
}

function killAll(): void {
  for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
}

process.on('exit', killAll);
for (const sig of ['SIGINT', 'SIGTERM'] as const) {
  process.once(sig, () => {
    killAll();
    rmSync(root, { recursive: true, force: true });
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

/** SIGTERM, then SIGKILL if it has not exited within CHILD_EXIT_MS. */
async function stopChild(proc: ChildProcess, signal: NodeJS.Signals = 'SIGTERM'): Promise<void> {
  if (proc.exitCode !== null || proc.signalCode !== null) return;
  const exited = once(proc, 'exit');
  proc.kill(signal);
  try {
    await withTimeout(exited, CHILD_EXIT_MS, `pid ${proc.pid} exit`);
  } catch {
    proc.kill('SIGKILL');
    await withTimeout(exited, 5000, `pid ${proc.pid} exit after SIGKILL`).catch(() => {});
  }
}

function witness(...args: string[]): string {
  const r = spawnSync(process.execPath, [WITNESS_BIN, ...args], { encoding: 'utf8', timeout: 30_000 });
  if (r.status !== 0) throw new Error(`witness ${args.join(' ')} exited ${r.status ?? r.signal}: ${r.stderr}`);
  return r.stdout;
}

const CLK_TCK = (() => {
  const r = spawnSync('getconf', ['CLK_TCK'], { encoding: 'utf8', timeout: 5000 });
  const n = Number(r.stdout?.trim());
  return Number.isFinite(n) && n > 0 ? n : 100;
})();

/** CPU time of a process (all its threads), ms, from /proc/PID/stat. */
function procCpuMs(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  // Fields after the command name (which may hold spaces), in parentheses.
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return ((Number(f[11]) + Number(f[12])) * 1000) / CLK_TCK; // utime, stime: fields 14 and 15
}

/** CPU time of each thread of this process, ms, by thread id, with the thread's name. */
function threadCpu(): Map<string, { name: string; ms: number }> {
  const out = new Map<string, { name: string; ms: number }>();
  let tids: string[] = [];
  try {
    tids = readdirSync('/proc/self/task');
  } catch {
    return out;
  }
  for (const tid of tids) {
    try {
      const stat = readFileSync(`/proc/self/task/${tid}/stat`, 'utf8');
      const name = stat.slice(stat.indexOf('(') + 1, stat.lastIndexOf(')'));
      const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      out.set(tid, { name, ms: ((Number(f[11]) + Number(f[12])) * 1000) / CLK_TCK });
    } catch {
      // the thread ended meanwhile
    }
  }
  return out;
}

/**
 * CPU per message, µs, between two threadCpu() readings: the main thread (JavaScript, the event
 * loop) and the others (libuv's thread pool, which runs the outbox's writes and fdatasyncs, and
 * V8's GC and compiler helpers; Node 20 names them all "node", so they are not told apart).
 */
function threadSplit(before: Map<string, { name: string; ms: number }>, after: Map<string, { name: string; ms: number }>, messages: number): Record<string, number> {
  const out: Record<string, number> = { main: 0, others: 0 };
  const self = String(process.pid);
  for (const [tid, a] of after) {
    const d = a.ms - (before.get(tid)?.ms ?? 0);
    const kind = tid === self ? 'main' : 'others';
    out[kind] = out[kind]! + (d * 1000) / messages;
  }
  return out;
}

/**
 * fdatasync calls made by this process (the agent's outbox: FileHandle.datasync), counted by
 * wrapping the method once; the count per message shows how the outbox groups its commits.
 */
let datasyncs = 0;
{
  const probeFile = join(root, 'datasync-probe');
  const fh = await open(probeFile, 'w');
  const proto = Object.getPrototypeOf(fh) as { datasync: (this: unknown) => Promise<void> };
  await fh.close();
  const datasync = proto.datasync;
  proto.datasync = function (this: unknown): Promise<void> {
    datasyncs++;
    return datasync.call(this);
  };
}

// ── the broker ───────────────────────────────────────────────────────────────────────────────

interface Broker {
  proc: ChildProcess;
  url: string;
  data: string;
}

/**
 * A broker data directory (`witness init`, `witness device add` for each device: the way users do
 * it), the agent e2e tests' config (authentication on, envelopes observed, audit metadata; fsync
 * batch by default), and `witness broker --port 0` started on it.
 */
async function startBroker(dir: string, devices: Array<{ id: string; publicKey: Uint8Array }>): Promise<Broker> {
  const data = join(dir, 'data');
  witness('init', '--data', data, '--node-id', 'bench-agent');
  for (const d of devices) witness('device', 'add', '--data', data, '--id', d.id, `--public-key=${formatPublicKey(d.publicKey)}`);
  const config = join(dir, 'witness.yaml');
  writeFileSync(config, ['auth:', '  anonymous: false', 'defaultPolicy:', '  envelope: observe', '  audit: metadata', ''].join('\n'));
  const proc = track(spawn(process.execPath, [WITNESS_BIN, 'broker', '--data', data, '--config', config, '--port', '0'], { stdio: ['ignore', 'pipe', 'pipe'] }));
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
          proc.stdout!.resume(); // keep draining whatever it prints later
          resolve(m[1]!);
        }
      };
      proc.stdout!.on('data', onData);
      proc.once('exit', (code) => reject(new Error(`broker exited with ${code} before listening:\n${out}\n${err}`)));
    }),
    CHILD_START_MS,
    'broker "listening" line',
  );
  return { proc, url, data };
}

/** Envelope verdicts of each client's publishes, from the broker's ledger. */
async function verdicts(data: string): Promise<Record<string, Record<string, number>>> {
  const reader = LedgerReader.open(join(data, 'ledger'));
  const out: Record<string, Record<string, number>> = {};
  try {
    for await (const r of reader.records()) {
      const rec = JSON.parse(r.line) as { e?: string; c?: string; env?: string };
      if (rec.e !== 'publish' || rec.c === undefined) continue;
      const byClient = (out[rec.c] ??= {});
      byClient[rec.env ?? 'none'] = (byClient[rec.env ?? 'none'] ?? 0) + 1;
    }
  } finally {
    reader.close();
  }
  return out;
}

// ── 1. signing ───────────────────────────────────────────────────────────────────────────────

/** Operations per second of `fn` over SIGN_SECONDS, after a short warm-up. */
function rate(fn: () => void): number {
  const warmUntil = performance.now() + Math.min(300, SIGN_SECONDS * 200);
  while (performance.now() < warmUntil) fn();
  const start = performance.now();
  const end = start + SIGN_SECONDS * 1000;
  let n = 0;
  let now = start;
  while (now < end && n < 100_000_000) {
    for (let i = 0; i < 16; i++) fn();
    n += 16;
    now = performance.now();
  }
  return (n * 1000) / (now - start);
}

interface SignRound {
  envelopeNode: number;
  envelopeNoble: number;
  rawNode: number;
  rawNoble: number;
}

function signRounds(): { envelopeBytes: number; tbsBytes: number; rounds: SignRound[] } {
  const seed = new Uint8Array(32).map((_, i) => (i * 7 + 1) & 0xff);
  const kid = deviceKid(ID_AGENT, publicKeyFromSeed(seed));
  // The claims the agent signs: system time, its uncertainty, source, a sequence number, prev, topic.
  const claims: EnvelopeClaims = { time: Date.now(), uncertainty: SYSTEM_UNCERTAINTY_MS, timeSource: 'system', seq: 12_345, prev: GENESIS_PREV, topic: TOPIC };
  const tbs = sigStructure(encodeProtectedHeader(protectedHeader(kid, claims)), payload);
  const envelope = signEnvelope({ seed, kid, claims, payload });
  // Both backends must produce the same envelope (Ed25519 is deterministic).
  if (!Buffer.from(signEnvelope({ seed, kid, claims, payload }, nobleBackend)).equals(envelope)) throw new Error('node and noble envelopes differ');
  const env = (b: Ed25519Backend) => () => void signEnvelope({ seed, kid, claims, payload }, b);
  const raw = (b: Ed25519Backend) => () => void sign(seed, tbs, b);
  const rounds: SignRound[] = [];
  for (let r = 0; r < ROUNDS; r++) {
    // node, noble, noble, node … so that drift in the machine's load falls on both.
    if (r % 2 === 0) {
      const envelopeNode = rate(env(nodeBackend));
      const envelopeNoble = rate(env(nobleBackend));
      const rawNode = rate(raw(nodeBackend));
      const rawNoble = rate(raw(nobleBackend));
      rounds.push({ envelopeNode, envelopeNoble, rawNode, rawNoble });
    } else {
      const envelopeNoble = rate(env(nobleBackend));
      const envelopeNode = rate(env(nodeBackend));
      const rawNoble = rate(raw(nobleBackend));
      const rawNode = rate(raw(nodeBackend));
      rounds.push({ envelopeNode, envelopeNoble, rawNode, rawNoble });
    }
  }
  return { envelopeBytes: envelope.length, tbsBytes: tbs.length, rounds };
}

// ── 2. end to end ────────────────────────────────────────────────────────────────────────────

type ClientKind = 'agent' | 'plain' | 'inline';

interface ClientRun {
  kind: ClientKind;
  messages: number;
  ms: number;
  perSec: number;
  /** This process's CPU per message, µs (the client: agent or MQTT.js, all threads), and the system (kernel) part of it. */
  clientCpuUsPerMsg: number;
  clientSysUsPerMsg: number;
  /** fdatasync calls of this process per message (the agent's outbox; 0 for MQTT.js). */
  datasyncsPerMsg: number;
  /** This process's CPU per message, µs, by thread (/proc/self/task; 10 ms ticks): main, others. */
  threadsUsPerMsg: Record<string, number>;
  brokerCpuUsPerMsg: number;
  envelopeBytes: number;
}

interface E2eRound {
  order: ClientKind[];
  runs: Record<ClientKind, ClientRun>;
  verdicts: Record<string, Record<string, number>>;
  loadavg: number[];
}

function timed(kind: ClientKind, brokerPid: number, envelopeBytes: () => number, run: () => Promise<void>): Promise<ClientRun> {
  return (async () => {
    const c0 = process.cpuUsage();
    const b0 = procCpuMs(brokerPid);
    const d0 = datasyncs;
    const th0 = threadCpu();
    const t0 = performance.now();
    await withTimeout(run(), RUN_MS, `${kind}: ${MESSAGES} messages`);
    const ms = performance.now() - t0;
    const c = process.cpuUsage(c0);
    const th1 = threadCpu();
    const b1 = procCpuMs(brokerPid);
    return {
      kind,
      messages: MESSAGES,
      ms,
      perSec: (MESSAGES * 1000) / ms,
      clientCpuUsPerMsg: (c.user + c.system) / MESSAGES,
      clientSysUsPerMsg: c.system / MESSAGES,
      datasyncsPerMsg: (datasyncs - d0) / MESSAGES,
      threadsUsPerMsg: threadSplit(th0, th1, MESSAGES),
      brokerCpuUsPerMsg: ((b1 - b0) * 1000) / MESSAGES,
      envelopeBytes: envelopeBytes(),
    };
  })();
}

async function agentClient(broker: Broker, agentDir: string): Promise<ClientRun> {
  const agent = new WitnessAgent({ deviceId: ID_AGENT, dir: agentDir, broker: broker.url, ntpServers: [] });
  const errors: Error[] = [];
  agent.on('error', (e) => errors.push(e));
  await agent.start();
  try {
    if (!agent.connected) await withTimeout(once(agent, 'connect'), CONNECT_MS, 'agent connect');
    let bytes = 0;
    const run = await timed('agent', broker.proc.pid!, () => bytes, async () => {
      // The application: publish() as fast as the agent takes them, at most APP_WINDOW unresolved.
      await new Promise<void>((resolve, reject) => {
        let issued = 0;
        let resolved = 0;
        const pump = (): void => {
          while (issued < MESSAGES && issued - resolved < APP_WINDOW) {
            issued++;
            agent.publish(TOPIC, payload, { qos: 1 }).then((q) => {
              bytes = q.bytes;
              if (++resolved === MESSAGES) resolve();
              else pump();
            }, reject);
          }
        };
        pump();
      });
      if (!(await agent.flush(RUN_MS))) throw new Error(`agent: not everything acknowledged: ${JSON.stringify(agent.status().outbox)}`);
    });
    const st = agent.status();
    if (st.acked !== MESSAGES) throw new Error(`agent: ${st.acked} acknowledged, expected ${MESSAGES}; last error ${st.lastError ?? 'none'}`);
    if (errors.length > 0) throw new Error(`agent errors: ${errors.map((e) => e.message).join('; ')}`);
    return run;
  } finally {
    await agent.stop({ drainMs: 0 });
  }
}

async function mqttConnect(url: string, id: string, seed: Uint8Array, publicKey: Uint8Array): Promise<MqttClient> {
  const password = Buffer.from(createConnectToken({ seed, deviceId: id, publicKey, audience: DEFAULT_AUDIENCE }));
  const client = mqtt.connect(url, { clientId: id, username: TOKEN_USERNAME, password, protocolVersion: 4, clean: true, reconnectPeriod: 0, connectTimeout: CONNECT_MS });
  try {
    await withTimeout(
      new Promise<void>((resolve, reject) => {
        client.once('connect', () => resolve());
        client.once('error', reject);
        client.once('close', () => reject(new Error(`${id}: connection closed before CONNACK`)));
      }),
      CONNECT_MS + 1000,
      `${id} connect`,
    );
  } catch (e) {
    client.end(true);
    throw e;
  }
  return client;
}

/** Sends MESSAGES envelopes from `next(i)` at QoS 1 with WINDOW in flight; resolves at the last PUBACK. */
function windowed(client: MqttClient, next: (i: number) => Uint8Array): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    let sent = 0;
    let acked = 0;
    let failed = false;
    client.once('close', () => {
      if (acked < MESSAGES) reject(new Error(`connection closed after ${acked} PUBACKs`));
    });
    const send = (): void => {
      while (!failed && sent < MESSAGES && sent - acked < WINDOW) {
        const env = next(sent++);
        client.publish(TOPIC, Buffer.from(env.buffer, env.byteOffset, env.byteLength), { qos: 1 }, (err) => {
          if (err) {
            failed = true;
            reject(err);
            return;
          }
          if (++acked === MESSAGES) resolve();
          else send();
        });
      }
    };
    send();
  });
}

interface Device {
  id: string;
  seed: Uint8Array;
  publicKey: Uint8Array;
  kid: Uint8Array;
}

function device(id: string, seed?: Uint8Array): Device {
  const s = seed ?? new Uint8Array(globalThis.crypto.getRandomValues(new Uint8Array(32)));
  const publicKey = publicKeyFromSeed(s);
  return { id, seed: s, publicKey, kid: deviceKid(id, publicKey) };
}

/** A chain of envelopes as the agent would sign them: seq, prev = hash of the previous, system time. */
function chainSigner(d: Device): (seq: number) => Uint8Array {
  let prev = GENESIS_PREV;
  let expect = 0;
  return (seq) => {
    if (seq !== expect) throw new Error(`chain: seq ${seq}, expected ${expect}`);
    const env = signEnvelope({ seed: d.seed, kid: d.kid, payload, claims: { time: Date.now(), uncertainty: SYSTEM_UNCERTAINTY_MS, timeSource: 'system', seq, prev, topic: TOPIC } });
    prev = envelopeHash(env);
    expect++;
    return env;
  };
}

async function plainClient(broker: Broker, d: Device): Promise<ClientRun> {
  // Signed beforehand, not timed: this client does only MQTT. Their times are in the past when
  // they arrive, which the broker records as lateness (`late`), still `valid`.
  const signer = chainSigner(d);
  const envelopes: Uint8Array[] = [];
  for (let i = 0; i < MESSAGES; i++) envelopes.push(signer(i));
  const client = await mqttConnect(broker.url, d.id, d.seed, d.publicKey);
  try {
    return await timed('plain', broker.proc.pid!, () => envelopes[MESSAGES - 1]!.length, () => windowed(client, (i) => envelopes[i]!));
  } finally {
    client.end(true);
  }
}

async function inlineClient(broker: Broker, d: Device): Promise<ClientRun> {
  const signer = chainSigner(d);
  let bytes = 0;
  const client = await mqttConnect(broker.url, d.id, d.seed, d.publicKey);
  try {
    return await timed('inline', broker.proc.pid!, () => bytes, () =>
      windowed(client, (i) => {
        const env = signer(i);
        bytes = env.length;
        return env;
      }),
    );
  } finally {
    client.end(true);
  }
}

async function e2eRound(r: number): Promise<E2eRound> {
  const dir = join(root, `e2e-${r}`);
  mkdirSync(dir, { recursive: true });
  const agentDir = join(dir, 'agent');
  const agentPub = writeKeyPair(agentDir, 'device').publicKey;
  const plain = device(ID_PLAIN);
  const inline = device(ID_INLINE);
  const broker = await startBroker(dir, [
    { id: ID_AGENT, publicKey: agentPub },
    { id: ID_PLAIN, publicKey: plain.publicKey },
    { id: ID_INLINE, publicKey: inline.publicKey },
  ]);
  const all: ClientKind[] = ['agent', 'plain', 'inline'];
  const order = all.map((_, i) => all[(i + r) % all.length]!);
  const runs: Partial<Record<ClientKind, ClientRun>> = {};
  try {
    for (const kind of order) {
      await sleep(500); // let the previous client's tail (fsyncs, GC) settle
      if (kind === 'agent') runs.agent = await agentClient(broker, agentDir);
      else if (kind === 'plain') runs.plain = await plainClient(broker, plain);
      else runs.inline = await inlineClient(broker, inline);
    }
    const v = await verdicts(broker.data);
    for (const id of [ID_AGENT, ID_PLAIN, ID_INLINE]) {
      const got = v[id] ?? {};
      if (got.valid !== MESSAGES || Object.keys(got).length !== 1) throw new Error(`round ${r + 1}: ${id}'s publishes in the ledger: ${JSON.stringify(got)}, expected ${MESSAGES} valid`);
    }
    return { order, runs: runs as Record<ClientKind, ClientRun>, verdicts: v, loadavg: loadavg().map((x) => Math.round(x * 100) / 100) };
  } finally {
    await stopChild(broker.proc);
  }
}

// ── 3. memory of the bundled agent ──────────────────────────────────────────────────────────

interface ProcMem {
  rssKiB: number;
  hwmKiB: number;
  anonKiB: number;
  fileKiB: number;
}

function procMem(pid: number): ProcMem | undefined {
  const st = procStatus(pid);
  if (!st) return undefined;
  const kib = (key: string): number => st[key] ?? NaN;
  return { rssKiB: kib('VmRSS'), hwmKiB: kib('VmHWM'), anonKiB: kib('RssAnon'), fileKiB: kib('RssFile') };
}

interface HeapSample {
  rss: number;
  heapTotal: number;
  heapUsed: number;
  external: number;
  arrayBuffers: number;
  /** V8 heap spaces, resident bytes (physical_space_size) by name. */
  spaces: Record<string, number>;
}

interface MemSeries {
  /** Samples over the load window, one a second. */
  samples: ProcMem[];
  /** VmHWM read at the end of the window. */
  hwmKiB: number;
  /** VmRSS once connected, before the load. */
  startKiB: number;
  /** process.memoryUsage() samples over the window (breakdown runs only). */
  heap?: HeapSample[];
}

interface MemRun {
  agent: MemSeries;
  idle: MemSeries;
  written: number;
  queued: number;
  /** Outbox at exit (the `stopped` line): all acknowledged when depth is 0 and lastAck is written - 1. */
  stopped: { depth: number; lastAckSeq: number | null } | undefined;
}

const PROBE = `import { appendFileSync } from 'node:fs';
import { getHeapSpaceStatistics } from 'node:v8';
const out = process.env.WITNESS_BENCH_MEMFILE;
if (out) {
  const t = setInterval(() => {
    const m = process.memoryUsage();
    const spaces = {};
    for (const s of getHeapSpaceStatistics()) spaces[s.space_name] = s.physical_space_size;
    appendFileSync(out, JSON.stringify({ t: Date.now(), rss: m.rss, heapTotal: m.heapTotal, heapUsed: m.heapUsed, external: m.external, arrayBuffers: m.arrayBuffers, spaces }) + '\\n');
  }, 1000);
  t.unref();
}
`;

function readHeap(file: string, from: number, to: number): HeapSample[] {
  if (!existsSync(file)) return [];
  return readFileSync(file, 'utf8')
    .split('\n')
    .filter((l) => l !== '')
    .map((l) => JSON.parse(l) as HeapSample & { t: number })
    .filter((s) => s.t >= from && s.t <= to);
}

async function memRun(broker: Broker, agentDir: string, probe: string | undefined, tag: string): Promise<MemRun> {
  // Plain `node`, no NODE_OPTIONS from this process's environment.
  const env = { ...process.env };
  delete env.NODE_OPTIONS;
  const agentHeapFile = join(root, `heap-agent-${tag}.jsonl`);
  const idleHeapFile = join(root, `heap-idle-${tag}.jsonl`);
  const pre = probe !== undefined ? ['--import', pathToFileURL(probe).href] : [];
  const agent = track(
    spawn(process.execPath, [...AGENT_NODE_FLAGS, ...pre, BUNDLE, 'run', '--dir', agentDir, '--broker', broker.url, '--json'], {
      stdio: ['pipe', 'pipe', 'pipe'],
      env: { ...env, WITNESS_BENCH_MEMFILE: agentHeapFile },
    }),
  );
  const idle = track(spawn(process.execPath, [...pre, '-e', 'setInterval(()=>{},1000)'], { stdio: 'ignore', env: { ...env, WITNESS_BENCH_MEMFILE: idleHeapFile } }));
  agent.stdin!.on('error', () => {});
  let err = '';
  agent.stderr!.on('data', (d: Buffer) => (err = (err + d.toString()).slice(-4000)));
  let queued = 0;
  let connected = false;
  let stopped: MemRun['stopped'];
  const waiters: Array<() => void> = [];
  createInterface({ input: agent.stdout! }).on('line', (line) => {
    let ev: { event?: string; outbox?: { depth: number; lastAck?: { seq: number } } };
    try {
      ev = JSON.parse(line) as typeof ev;
    } catch {
      return;
    }
    if (ev.event === 'queued') queued++;
    else if (ev.event === 'connected') connected = true;
    else if (ev.event === 'stopped') stopped = { depth: ev.outbox?.depth ?? -1, lastAckSeq: ev.outbox?.lastAck?.seq ?? null };
    for (const w of waiters.splice(0)) w();
  });
  const until = async (cond: () => boolean, ms: number, what: string): Promise<void> => {
    const end = Date.now() + ms;
    while (!cond()) {
      if (agent.exitCode !== null || agent.signalCode !== null) throw new Error(`bundled agent exited (${agent.exitCode ?? agent.signalCode}) while waiting for ${what}: ${err}`);
      if (Date.now() > end) throw new Error(`bundled agent: ${what} not within ${ms} ms: ${err}`);
      await new Promise<void>((r) => {
        const t = setTimeout(r, 100);
        waiters.push(() => (clearTimeout(t), r()));
      });
    }
  };
  try {
    await until(() => connected, CHILD_START_MS, 'connected');
    await sleep(1000);
    const startKiB = procMem(agent.pid!)?.rssKiB ?? NaN;
    const idleStartKiB = procMem(idle.pid!)?.rssKiB ?? NaN;
    const total = MEM_SECONDS * MEM_RATE;
    const text = new TextDecoder().decode(payload);
    const agentSamples: ProcMem[] = [];
    const idleSamples: ProcMem[] = [];
    let written = 0;
    const t0 = Date.now();
    // Exactly MEM_RATE lines a second: every 10 ms, write what is due by now.
    const writer = setInterval(() => {
      const due = Math.min(total, Math.floor(((Date.now() - t0) * MEM_RATE) / 1000));
      if (due > written) {
        let chunk = '';
        for (; written < due; written++) chunk += `${TOPIC} ${text}\n`;
        agent.stdin!.write(chunk);
      }
    }, 10);
    const sampler = setInterval(() => {
      const a = procMem(agent.pid!);
      const i = procMem(idle.pid!);
      if (a) agentSamples.push(a);
      if (i) idleSamples.push(i);
    }, 1000);
    try {
      await until(() => written >= total && Date.now() - t0 >= MEM_SECONDS * 1000, MEM_SECONDS * 1000 + 10_000, 'the load window');
    } finally {
      clearInterval(writer);
      clearInterval(sampler);
    }
    const t1 = Date.now();
    const hwmKiB = procMem(agent.pid!)?.hwmKiB ?? NaN;
    const idleHwmKiB = procMem(idle.pid!)?.hwmKiB ?? NaN;
    await until(() => queued >= written, 15_000, `all ${written} lines queued`);
    agent.stdin!.end();
    await stopChild(agent); // SIGTERM: the agent drains (drainOnStopMs), prints `stopped`, exits
    await stopChild(idle);
    const heap = probe !== undefined ? { agent: readHeap(agentHeapFile, t0, t1), idle: readHeap(idleHeapFile, t0, t1) } : undefined;
    return {
      agent: { samples: agentSamples, hwmKiB, startKiB, ...(heap ? { heap: heap.agent } : {}) },
      idle: { samples: idleSamples, hwmKiB: idleHwmKiB, startKiB: idleStartKiB, ...(heap ? { heap: heap.idle } : {}) },
      written,
      queued,
      stopped,
    };
  } finally {
    await stopChild(agent, 'SIGKILL');
    await stopChild(idle, 'SIGKILL');
  }
}

interface BundleInfo {
  path: string;
  bytes: number;
  gzipBytes: number;
  rebuilt: boolean;
}

function bundleInfo(): BundleInfo {
  const rebuild = values['no-bundle'] !== true;
  if (rebuild) {
    const r = spawnSync(process.execPath, [BUNDLE_SCRIPT, '--quiet'], { cwd: ROOT, encoding: 'utf8', timeout: 120_000 });
    if (r.status !== 0) throw new Error(`${BUNDLE_SCRIPT} exited ${r.status ?? r.signal}: ${r.stderr}`);
  }
  if (!existsSync(BUNDLE)) throw new Error(`${BUNDLE} is missing: run \`npm run bundle\` (or drop --no-bundle)`);
  const text = readFileSync(BUNDLE);
  return { path: BUNDLE, bytes: statSync(BUNDLE).size, gzipBytes: gzipSync(text).length, rebuilt: rebuild };
}

async function memoryPhase(): Promise<{ bundle: BundleInfo; plain: MemRun; breakdown?: MemRun }> {
  const bundle = bundleInfo();
  const dir = join(root, 'memory');
  mkdirSync(dir, { recursive: true });
  // Two agent directories made by the bundle itself (`init`), the NTP servers emptied (system clock).
  const agentDirs = ['agent', 'agent-probe'].map((name, i) => {
    const d = join(dir, name);
    const id = `bench-mem-${i}`;
    const r = spawnSync(process.execPath, [BUNDLE, 'init', '--id', id, '--dir', d], { encoding: 'utf8', timeout: 30_000 });
    if (r.status !== 0) throw new Error(`bundle init exited ${r.status ?? r.signal}: ${r.stderr}`);
    const cfg = join(d, 'witness-agent.yaml');
    writeFileSync(cfg, readFileSync(cfg, 'utf8').replace(/^ {2}servers: \[[^\]]*\]/m, '  servers: []'));
    return { dir: d, id, publicKey: readFileSync(join(d, 'device.pub'), 'utf8').trim() };
  });
  const broker = await startBroker(dir, agentDirs.map((a) => ({ id: a.id, publicKey: Buffer.from(a.publicKey, 'base64url') })));
  try {
    const plain = await memRun(broker, agentDirs[0]!.dir, undefined, 'plain');
    let breakdown: MemRun | undefined;
    if (values['no-breakdown'] !== true) {
      const probe = join(root, 'mem-probe.mjs');
      writeFileSync(probe, PROBE);
      breakdown = await memRun(broker, agentDirs[1]!.dir, probe, 'probe');
    }
    return { bundle, plain, ...(breakdown ? { breakdown } : {}) };
  } finally {
    await stopChild(broker.proc);
  }
}

// ── run and report ───────────────────────────────────────────────────────────────────────────

const MB = 1e6;
const mb = (kib: number): number => (kib * 1024) / MB;

interface HeapSummary {
  rss: number;
  heapTotal: number;
  heapUsed: number;
  external: number;
  arrayBuffers: number;
  spaces: Record<string, number>;
}

function summarizeSeries(s: MemSeries): { maxMB: number; medianMB: number; hwmMB: number; startMB: number; anonMedianMB: number; fileMedianMB: number; heap?: HeapSummary } {
  const rss = s.samples.map((x) => x.rssKiB);
  const heap = s.heap && s.heap.length > 0
    ? {
        rss: median(s.heap.map((h) => h.rss)) / MB,
        heapTotal: median(s.heap.map((h) => h.heapTotal)) / MB,
        heapUsed: median(s.heap.map((h) => h.heapUsed)) / MB,
        external: median(s.heap.map((h) => h.external)) / MB,
        arrayBuffers: median(s.heap.map((h) => h.arrayBuffers)) / MB,
        spaces: Object.fromEntries(Object.keys(s.heap[0]!.spaces).map((k) => [k, median(s.heap!.map((h) => h.spaces[k] ?? 0)) / MB])),
      }
    : undefined;
  return {
    maxMB: mb(Math.max(...rss)),
    medianMB: mb(median(rss)),
    hwmMB: mb(s.hwmKiB),
    startMB: mb(s.startKiB),
    anonMedianMB: mb(median(s.samples.map((x) => x.anonKiB))),
    fileMedianMB: mb(median(s.samples.map((x) => x.fileKiB))),
    ...(heap ? { heap } : {}),
  };
}

const machine = machineInfo();
const startedAt = new Date().toISOString();
const loadStart = loadavg().map((x) => Math.round(x * 100) / 100);

try {
  const result: Record<string, unknown> = {
    bench: 'agent',
    machine: { ...machine, openssl: process.versions.openssl },
    startedAt,
    loadavgStart: loadStart,
    params: { rounds: ROUNDS, messages: MESSAGES, payloadBytes: PAYLOAD_BYTES, signSeconds: SIGN_SECONDS, memSeconds: MEM_SECONDS, memRate: MEM_RATE, appWindow: APP_WINDOW, inflight: WINDOW, agentNodeFlags: AGENT_NODE_FLAGS },
  };
  const log = (s: string): void => {
    if (!JSON_OUT) console.log(s);
  };
  const n0 = (x: number): string => Math.round(x).toLocaleString('en-US');
  const f1 = (x: number): string => x.toFixed(1);
  const f2 = (x: number): string => x.toFixed(2);

  log(`agent bench — ${formatMachine(machine)} · OpenSSL ${process.versions.openssl}`);
  log(`started ${startedAt}, load average ${loadStart.join(' ')}`);

  if (PHASES.has('sign')) {
    const s = signRounds();
    const med = (k: keyof SignRound): number => median(s.rounds.map((r) => r[k]));
    const ratios = s.rounds.map((r) => r.envelopeNode / r.envelopeNoble);
    const summary = {
      envelopeNode: med('envelopeNode'),
      envelopeNoble: med('envelopeNoble'),
      envelopeRatio: median(ratios),
      rawNode: med('rawNode'),
      rawNoble: med('rawNoble'),
      rawRatio: median(s.rounds.map((r) => r.rawNode / r.rawNoble)),
    };
    result.sign = { envelopeBytes: s.envelopeBytes, toBeSignedBytes: s.tbsBytes, rounds: s.rounds, median: summary };
    log('');
    log(`1. Signing (${PAYLOAD_BYTES} B payload → ${s.envelopeBytes} B envelope; Sig_structure ${s.tbsBytes} B), ${ROUNDS} rounds × ${SIGN_SECONDS} s per figure, medians:`);
    log(`   signEnvelope  node:crypto ${n0(summary.envelopeNode)} /s   noble ${n0(summary.envelopeNoble)} /s   node/noble ${f1(summary.envelopeRatio)}× (rounds ${ratios.map(f1).join(', ')})`);
    log(`   raw sign      node:crypto ${n0(summary.rawNode)} /s   noble ${n0(summary.rawNoble)} /s   node/noble ${f1(summary.rawRatio)}×`);
    log(`   envelope / raw sign: node ${f2(summary.envelopeNode / summary.rawNode)}, noble ${f2(summary.envelopeNoble / summary.rawNoble)}`);
  }

  if (PHASES.has('e2e')) {
    log('');
    log(`2. End to end: ${n0(MESSAGES)} QoS 1 publishes of ${PAYLOAD_BYTES} B, ${WINDOW} in flight, one client at a time, fresh broker per round`);
    const rounds: E2eRound[] = [];
    for (let r = 0; r < ROUNDS; r++) {
      const round = await e2eRound(r);
      rounds.push(round);
      const x = round.runs;
      log(
        `   round ${r + 1} (${round.order.join(', ')}; load ${round.loadavg[0]}): agent ${n0(x.agent.perSec)} /s · plain ${n0(x.plain.perSec)} /s · inline ${n0(x.inline.perSec)} /s → agent/plain ${f2(x.agent.perSec / x.plain.perSec)}, agent/inline ${f2(x.agent.perSec / x.inline.perSec)}`,
      );
    }
    const med = (k: ClientKind, f: keyof ClientRun): number => median(rounds.map((r) => r.runs[k][f] as number));
    const kinds: ClientKind[] = ['agent', 'plain', 'inline'];
    const summary = Object.fromEntries(
      kinds.map((k) => [
        k,
        {
          perSec: med(k, 'perSec'),
          clientCpuUsPerMsg: med(k, 'clientCpuUsPerMsg'),
          clientSysUsPerMsg: med(k, 'clientSysUsPerMsg'),
          datasyncsPerMsg: med(k, 'datasyncsPerMsg'),
          brokerCpuUsPerMsg: med(k, 'brokerCpuUsPerMsg'),
          envelopeBytes: rounds[0]!.runs[k].envelopeBytes,
          threadsUsPerMsg: Object.fromEntries(Object.keys(rounds[0]!.runs[k].threadsUsPerMsg).map((t) => [t, median(rounds.map((r) => r.runs[k].threadsUsPerMsg[t] ?? 0))])),
        },
      ]),
    ) as Record<
      ClientKind,
      { perSec: number; clientCpuUsPerMsg: number; clientSysUsPerMsg: number; datasyncsPerMsg: number; brokerCpuUsPerMsg: number; envelopeBytes: number; threadsUsPerMsg: Record<string, number> }
    >;
    const agentPlain = rounds.map((r) => r.runs.agent.perSec / r.runs.plain.perSec);
    const agentInline = rounds.map((r) => r.runs.agent.perSec / r.runs.inline.perSec);
    result.e2e = { rounds, median: summary, agentPerPlain: median(agentPlain), agentPerPlainRounds: agentPlain, agentPerInline: median(agentInline), agentPerInlineRounds: agentInline };
    log(`   medians of ${ROUNDS} rounds (envelopes ${summary.agent.envelopeBytes} B / ${summary.plain.envelopeBytes} B / ${summary.inline.envelopeBytes} B; every publish recorded valid):`);
    log(`   ${'client'.padEnd(44)} ${'msg/s'.padStart(8)}  ${'client CPU/msg (sys)'.padStart(22)}  ${'fdatasync/msg'.padStart(13)}  ${'broker CPU/msg'.padStart(14)}`);
    const label: Record<ClientKind, string> = {
      agent: 'WitnessAgent (sign + file outbox + MQTT)',
      plain: 'MQTT.js, envelopes signed beforehand',
      inline: 'MQTT.js + signEnvelope per message',
    };
    for (const k of kinds) {
      const s = summary[k];
      log(
        `   ${label[k].padEnd(44)} ${n0(s.perSec).padStart(8)}  ${`${f1(s.clientCpuUsPerMsg)} µs (${f1(s.clientSysUsPerMsg)})`.padStart(22)}  ${f2(s.datasyncsPerMsg).padStart(13)}  ${`${f1(s.brokerCpuUsPerMsg)} µs`.padStart(14)}`,
      );
    }
    log(`   client CPU by thread, µs/msg (main thread / other threads: libuv pool, V8 helpers): ${kinds.map((k) => `${k} ${f1(summary[k].threadsUsPerMsg.main ?? 0)} / ${f1(summary[k].threadsUsPerMsg.others ?? 0)}`).join('; ')}`);
    log(`   agent/plain ${f2(median(agentPlain))} (rounds ${agentPlain.map(f2).join(', ')}); agent/inline ${f2(median(agentInline))} (rounds ${agentInline.map(f2).join(', ')})`);
  }

  if (PHASES.has('memory')) {
    log('');
    log(`3. Bundled agent memory: ${MEM_RATE} msg/s for ${MEM_SECONDS} s through \`node ${AGENT_NODE_FLAGS.length > 0 ? `${AGENT_NODE_FLAGS.join(' ')} ` : ''}dist/witness-agent.mjs run\` (stdin lines, QoS 1, ${PAYLOAD_BYTES} B)`);
    const m = await memoryPhase();
    const check = (run: MemRun, what: string): void => {
      const ok = run.stopped !== undefined && run.stopped.depth === 0 && run.stopped.lastAckSeq === run.written - 1 && run.queued === run.written;
      if (!ok) throw new Error(`${what}: not everything was acknowledged: written ${run.written}, queued ${run.queued}, at exit ${JSON.stringify(run.stopped)}`);
    };
    check(m.plain, 'memory run');
    if (m.breakdown) check(m.breakdown, 'breakdown run');
    const agent = summarizeSeries(m.plain.agent);
    const idle = summarizeSeries(m.plain.idle);
    const target = 60;
    const memory: Record<string, unknown> = {
      bundle: m.bundle,
      targetMB: target,
      agent,
      idle,
      written: m.plain.written,
      samples: { agent: m.plain.agent.samples.length, idle: m.plain.idle.samples.length },
      overTargetMB: agent.maxMB - target,
      agentMinusIdleMB: agent.medianMB - idle.medianMB,
    };
    log(`   bundle ${m.bundle.path.replace(ROOT, '')}: ${n0(m.bundle.bytes)} bytes (gzip ${n0(m.bundle.gzipBytes)} bytes)${m.bundle.rebuilt ? ', rebuilt by this run' : ''}`);
    log(`   ${''.padEnd(30)} ${'max'.padStart(8)} ${'median'.padStart(8)} ${'VmHWM'.padStart(8)} ${'at start'.padStart(9)} ${'anon'.padStart(7)} ${'file'.padStart(7)}   (MB = 10^6 B; anon/file: medians of RssAnon/RssFile)`);
    const row = (name: string, s: ReturnType<typeof summarizeSeries>): string =>
      `   ${name.padEnd(30)} ${f1(s.maxMB).padStart(8)} ${f1(s.medianMB).padStart(8)} ${f1(s.hwmMB).padStart(8)} ${f1(s.startMB).padStart(9)} ${f1(s.anonMedianMB).padStart(7)} ${f1(s.fileMedianMB).padStart(7)}`;
    log(row('bundled agent, RSS', agent));
    log(row('idle node (baseline), RSS', idle));
    log(`   agent − idle: ${f1(agent.medianMB - idle.medianMB)} MB (median), agent/idle ${f2(agent.medianMB / idle.medianMB)}; target ≤ ${target} MB: ${agent.maxMB <= target ? 'met' : `NOT met, max ${f1(agent.maxMB - target)} MB over`}`);
    if (m.breakdown) {
      const a = summarizeSeries(m.breakdown.agent);
      const i = summarizeSeries(m.breakdown.idle);
      memory.breakdown = { agent: a, idle: i };
      const h = (s: ReturnType<typeof summarizeSeries>): string =>
        s.heap
          ? `rss ${f1(s.heap.rss)} = V8 heap ${f1(s.heap.heapTotal)} (used ${f1(s.heap.heapUsed)}) + external ${f1(s.heap.external)} (ArrayBuffers ${f1(s.heap.arrayBuffers)}) + rest ${f1(s.heap.rss - s.heap.heapTotal - s.heap.external)}` +
            `\n            heap spaces resident: ${Object.entries(s.heap.spaces).filter(([, v]) => v >= 0.05).map(([k, v]) => `${k.replace(/_space$/, '')} ${f1(v)}`).join(', ')}`
          : 'no samples';
      log(`   breakdown run (same load, node --import PROBE; process.memoryUsage() medians, MB):`);
      log(`     agent: ${h(a)}; /proc max ${f1(a.maxMB)}`);
      log(`     idle:  ${h(i)}; /proc max ${f1(i.maxMB)}`);
    }
    result.memory = memory;
  }

  result.loadavgEnd = loadavg().map((x) => Math.round(x * 100) / 100);
  log('');
  log(`finished ${new Date().toISOString()}, load average ${(result.loadavgEnd as number[]).join(' ')}`);
  if (JSON_OUT) console.log(JSON.stringify(result, null, 2));
} finally {
  killAll();
  rmSync(root, { recursive: true, force: true });
}
