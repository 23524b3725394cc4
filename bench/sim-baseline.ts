/**
 * The baseline of bench/sim.ts: the simulator's load with nothing but MQTT.js. N clients in one
 * process, the same connect ramp (device k of N at ⌊ramp × k / N⌋, at most --max-connecting
 * connects in progress), the same per-device send times as `witness sim run` (drawn from the
 * same stream as simulator/plan.ts: Rng.fromSeed("witness-sim/v1 times", seed, id)), the same
 * QoS weights, client ids and topics, and a payload of random bytes as long as the simulator's
 * envelopes — so the broker moves the same bytes. What it leaves out is the simulator's own
 * work: no plan, no signing, no connect tokens (anonymous connect), no run lines, no metrics
 * beyond per-second counters. The MQTT.js options are SimLink's (simulator/link.ts).
 *
 * Usage (bench/sim.ts starts it; compiled to dist/bench/sim-baseline.js):
 *   node dist/bench/sim-baseline.js --broker URL --devices N --ramp-ms R --interval-ms I
 *        --jitter J --duration-ms D --qos W0,W1 --payload-bytes B --seed S [--max-connecting M]
 * Prints one JSON object on stdout at the end (the same fields bench/sim.ts reads from the
 * simulator's summary: startedAt, durationMs, totals, connect, ack, bins).
 *
 * Bounded: every device stops after its last planned message; the process exits after
 * ramp + duration + 60 s whatever happens, printing what it has.
 */
import { randomBytes } from 'node:crypto';
import { parseArgs } from 'node:util';
import mqtt, { type MqttClient } from 'mqtt';
import { Rng } from '../simulator/rng.js';

const { values } = parseArgs({
  options: {
    broker: { type: 'string' },
    devices: { type: 'string' },
    'ramp-ms': { type: 'string' },
    'interval-ms': { type: 'string' },
    jitter: { type: 'string' },
    'duration-ms': { type: 'string' },
    qos: { type: 'string' },
    'payload-bytes': { type: 'string' },
    seed: { type: 'string' },
    'max-connecting': { type: 'string' },
    'id-prefix': { type: 'string' },
    'id-width': { type: 'string' },
  },
});

function num(name: string, dflt?: number): number {
  const v = values[name as keyof typeof values];
  const n = v === undefined ? dflt : Number(v);
  if (n === undefined || !Number.isFinite(n) || n < 0) {
    process.stderr.write(`sim-baseline: --${name}: expected a number ≥ 0, got ${JSON.stringify(v)}\n`);
    process.exit(2);
  }
  return n;
}

const BROKER = values.broker ?? '';
if (!/^mqtt:\/\//.test(BROKER)) {
  process.stderr.write('sim-baseline: --broker mqtt://HOST:PORT is required\n');
  process.exit(2);
}
const N = Math.round(num('devices'));
const RAMP_MS = num('ramp-ms');
const INTERVAL_MS = num('interval-ms');
const JITTER = num('jitter', 0);
const DURATION_MS = num('duration-ms');
const PAYLOAD_BYTES = Math.round(num('payload-bytes'));
const MAX_CONNECTING = Math.max(1, Math.round(num('max-connecting', 256)));
const SEED = values.seed ?? 'bench-sim';
const ID_PREFIX = values['id-prefix'] ?? 'dev-';
const ID_WIDTH = Math.round(num('id-width', 5));
const QOS_WEIGHTS = (values.qos ?? '1,1').split(',').map(Number);
if (N < 1 || N > 100_000 || INTERVAL_MS < 1 || DURATION_MS < 1 || QOS_WEIGHTS.length !== 2 || QOS_WEIGHTS.some((w) => !(w >= 0)) || QOS_WEIGHTS[0]! + QOS_WEIGHTS[1]! <= 0) {
  process.stderr.write('sim-baseline: bad arguments (devices 1–100000, interval ≥ 1 ms, duration ≥ 1 ms, --qos W0,W1)\n');
  process.exit(2);
}
/** SimLink's connect timeout (runner default). */
const CONNECT_TIMEOUT_MS = 10_000;
/** SimLink.end: DISCONNECT after what is in flight, at most this long. */
const END_TIMEOUT_MS = 2000;
/** Acknowledgement times kept for the percentiles (the rest are counted, not kept). */
const MAX_ACK_SAMPLES = 1_000_000;

const PAYLOAD = randomBytes(PAYLOAD_BYTES);

// ── counters: one bin per second, like simulator/metrics.ts ─────────────────────────────────

interface Bin {
  t: number;
  connects: number;
  connectFailed: number;
  sent: number;
  acked: number;
  errors: number;
}

let startedAt = Date.now();
const bins: Bin[] = [];
const totals = { sent: 0, acked: 0, connects: 0, connectFailed: 0, disconnects: 0, errors: 0 };
const connectMs: number[] = [];
const ackMs: number[] = [];
const errorTexts = new Map<string, number>();

function bin(): Bin {
  const sec = Math.max(0, Math.floor((Date.now() - startedAt) / 1000));
  for (let t = bins.length; t <= sec; t++) bins.push({ t, connects: 0, connectFailed: 0, sent: 0, acked: 0, errors: 0 });
  return bins[sec]!;
}

function onError(text: string): void {
  bin().errors++;
  totals.errors++;
  if (errorTexts.size < 100 || errorTexts.has(text)) errorTexts.set(text, (errorTexts.get(text) ?? 0) + 1);
}

function stats(xs: ArrayLike<number>, n: number): { count: number; p50: number | null; p95: number | null; p99: number | null; max: number | null; mean: number | null } {
  if (n === 0) return { count: 0, p50: null, p95: null, p99: null, max: null, mean: null };
  const s = Float64Array.from({ length: n }, (_, i) => xs[i]!).sort();
  const at = (q: number): number => s[Math.min(n, Math.max(1, Math.ceil(q * n))) - 1]!;
  let sum = 0;
  for (let i = 0; i < n; i++) sum += s[i]!;
  return { count: n, p50: at(0.5), p95: at(0.95), p99: at(0.99), max: s[n - 1]!, mean: sum / n };
}

// ── the load ─────────────────────────────────────────────────────────────────────────────────

/** At most MAX_CONNECTING connects in progress (the runner's Gate). */
let free = MAX_CONNECTING;
const queue: Array<() => void> = [];
async function gated<T>(f: () => Promise<T>): Promise<T> {
  if (free > 0) free--;
  else await new Promise<void>((r) => queue.push(r));
  try {
    return await f();
  } finally {
    const next = queue.shift();
    if (next) next();
    else free++;
  }
}

function sleepUntil(wall: number): Promise<void> {
  const ms = wall - Date.now();
  return ms <= 0 ? Promise.resolve() : new Promise((r) => setTimeout(r, ms));
}

function connect(id: string): Promise<MqttClient | null> {
  const started = performance.now();
  const client = mqtt.connect(BROKER, {
    clientId: id,
    protocolVersion: 4,
    clean: true,
    reconnectPeriod: 0,
    connectTimeout: CONNECT_TIMEOUT_MS,
    keepalive: 60,
    resubscribe: false,
    queueQoSZero: false,
  });
  return new Promise((resolve) => {
    let settled = false;
    const done = (ok: boolean, err?: string): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      const b = bin();
      if (ok) {
        b.connects++;
        totals.connects++;
        connectMs.push(performance.now() - started);
        resolve(client);
      } else {
        b.connectFailed++;
        totals.connectFailed++;
        onError(`connect failed: ${err}`);
        client.end(true);
        resolve(null);
      }
    };
    const timer = setTimeout(() => done(false, `no CONNACK within ${CONNECT_TIMEOUT_MS} ms`), CONNECT_TIMEOUT_MS + 1000);
    client.on('connect', () => done(true));
    client.on('error', (e) => done(false, e.message));
    client.on('close', () => done(false, 'connection closed before CONNACK'));
  });
}

async function runDevice(k: number, planStart: number): Promise<void> {
  const id = ID_PREFIX + String(k).padStart(ID_WIDTH, '0');
  const topic = `devices/${id}/telemetry`;
  // simulator/plan.ts planDevices + planDevice step 1, the same draws.
  const connectAtMs = Math.floor((RAMP_MS * k) / N);
  const times = Rng.fromSeed('witness-sim/v1 times', SEED, id);
  const qosRng = Rng.fromSeed('bench-sim-baseline qos', SEED, id);
  const end = connectAtMs + DURATION_MS;
  const slots: number[] = [];
  for (let t = connectAtMs + times.next() * Math.min(INTERVAL_MS, DURATION_MS); t < end; ) {
    slots.push(Math.round(t));
    t += INTERVAL_MS * (1 + JITTER * (2 * times.next() - 1));
  }

  await sleepUntil(planStart + connectAtMs);
  const client = await gated(() => connect(id));
  if (!client) return;
  let open = true;
  client.on('close', () => (open = false));
  for (const at of slots) {
    await sleepUntil(planStart + at);
    if (!open) {
      onError('publish skipped: not connected');
      continue;
    }
    const qos = qosRng.pick(QOS_WEIGHTS) as 0 | 1;
    const sentAt = performance.now();
    bin().sent++;
    totals.sent++;
    client.publish(topic, PAYLOAD, { qos, retain: false }, (err) => {
      if (err) onError(`publish failed: ${err.message}`);
      else if (qos > 0) {
        bin().acked++;
        totals.acked++;
        if (ackMs.length < MAX_ACK_SAMPLES) ackMs.push(performance.now() - sentAt);
      }
    });
  }
  await new Promise<void>((resolve) => {
    const t = setTimeout(() => {
      client.end(true);
      resolve();
    }, END_TIMEOUT_MS);
    client.end(false, {}, () => {
      clearTimeout(t);
      resolve();
    });
  });
  totals.disconnects++;
}

function result(): unknown {
  const durationMs = Date.now() - startedAt;
  return {
    kind: 'mqtt.js baseline',
    startedAt,
    durationMs,
    devices: N,
    payloadBytes: PAYLOAD_BYTES,
    totals,
    rates: { sent: totals.sent / (durationMs / 1000), acked: totals.acked / (durationMs / 1000) },
    connect: { ok: totals.connects, failed: totals.connectFailed, ...stats(connectMs, connectMs.length) },
    ack: stats(ackMs, ackMs.length),
    errors: { total: totals.errors, byMessage: Object.fromEntries(errorTexts) },
    bins,
  };
}

const deadline = setTimeout(() => {
  process.stdout.write(JSON.stringify({ ...(result() as object), timedOut: true }) + '\n');
  process.exit(3);
}, RAMP_MS + DURATION_MS + 60_000);

startedAt = Date.now();
const planStart = Date.now();
await Promise.all(Array.from({ length: N }, (_, k) => runDevice(k, planStart).catch((e: unknown) => onError(`device stopped: ${(e as Error).message}`))));
clearTimeout(deadline);
process.stdout.write(JSON.stringify(result()) + '\n');
