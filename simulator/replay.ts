/**
 * `witness sim replay FILE --broker URL [--speed X]`: sends recorded traffic again, with its
 * original timing divided by `speed`.
 *
 * FILE is either
 *  - a run file (witness-sim-run/v1): every message that was sent goes out again byte for byte
 *    (the same envelopes: same devices, sequence numbers, chains and payload hashes), from the same
 *    device ids, connecting with fresh tokens of the same keys (re-derived from the scenario in the
 *    header — a run file is a test artifact: whoever holds it can re-derive the fleet's keys);
 *    the new run file (--record) keeps each line's ref and expectation, so `witness sim check`
 *    works on the new ledger too — except that time verdicts are decided at replay time (an
 *    envelope that was 60 s ahead is, replayed later, merely late);
 *  - a ledger export (`witness export DIR --format jsonl`): every accepted publish whose body was
 *    recorded (audit level payload or full: the `b64` field) is published again on its topic with
 *    its QoS and retain flag, from a client with the recorded client id, authenticating with
 *    --username/--password or anonymously. Publishes recorded without a body (level metadata, or a
 *    masked JSON body) cannot be re-sent and are counted as skipped. The broker stores the inner
 *    payload of an envelope, so this re-drives traffic, not signatures.
 */
import { createReadStream } from 'node:fs';
import { createInterface } from 'node:readline';
import { WitnessError } from '../shared/errors.js';
import type { CommandIo } from '../shared/cli/cli.js';
import { SimLink } from './link.js';
import { planDevices } from './plan.js';
import { MetricsCollector, type RunSummary } from './metrics.js';
import { LiveStatus } from './progress.js';
import { RunFileWriter, readRunHeader, readRunLines } from './run-file.js';
import { registerFleet, waitUntilRegistered } from './register.js';
import { runHeader, Sleeper } from './runner.js';
import type { PlannedDevice, RunConnect, RunHeader, RunLine, RunPublish, QoS } from './types.js';
import { RUN_FORMAT } from './types.js';

export interface ReplayOptions {
  file: string;
  broker: string;
  /** Timing divisor: 2 = twice as fast; Infinity = as fast as possible. Default 1. */
  speed: number;
  record?: string | undefined;
  /** Register the run's devices in this data directory first (run files only). */
  register?: string | undefined;
  /** For ledger exports: credentials of the replaying clients. */
  username?: string | undefined;
  password?: string | undefined;
  io: CommandIo;
  live: boolean;
  connectTimeoutMs?: number;
  refusalWaitMs?: number;
  signal?: AbortSignal | undefined;
}

export interface ReplayResult {
  source: 'run' | 'export';
  summary: RunSummary;
  clients: number;
  published: number;
  /** Export lines not re-sent (no body, refused originally, broker's own), by reason. */
  skipped: Record<string, number>;
  unexpectedErrors: number;
}


async function firstLine(file: string): Promise<string> {
  const rl = createInterface({ input: createReadStream(file, { encoding: 'utf8' }), crlfDelay: Infinity });
  try {
    for await (const line of rl) return line;
    return '';
  } finally {
    rl.close();
  }
}

/** What kind of file this is: a run file or a ledger export; anything else is refused with the reason. */
export async function detectReplaySource(file: string): Promise<'run' | 'export'> {
  let line: string;
  try {
    line = await firstLine(file);
  } catch (e) {
    throw new WitnessError('WITNESS_ERR_IO', `${file}: ${(e as Error).message}`, { cause: e });
  }
  let v: unknown;
  try {
    v = JSON.parse(line);
  } catch {
    throw new WitnessError('WITNESS_ERR_USAGE', `${file}:1: not a run file or a ledger export (the first line is not JSON); give a file written by \`witness sim run --record\` or \`witness export DIR --format jsonl\``);
  }
  const o = v as Record<string, unknown>;
  if (o && typeof o === 'object' && o.format === RUN_FORMAT) return 'run';
  if (o && typeof o === 'object' && typeof o.i === 'number' && typeof o.e === 'string') return 'export';
  throw new WitnessError('WITNESS_ERR_USAGE', `${file}:1: not a run file (format ${JSON.stringify(RUN_FORMAT)}) or a ledger export (records with "i" and "e"); give a file written by \`witness sim run --record\` or \`witness export DIR --format jsonl\``);
}


interface Step {
  t: number;
  line: RunConnect | RunPublish | { k: 'disconnect'; t: number };
}

export async function replay(o: ReplayOptions): Promise<ReplayResult> {
  const source = await detectReplaySource(o.file);
  return source === 'run' ? replayRun(o) : replayExport(o);
}

async function replayRun(o: ReplayOptions): Promise<ReplayResult> {
  const header: RunHeader = await readRunHeader(o.file);
  const planned = planDevices(header.scenario);
  const byId = new Map<string, PlannedDevice>(planned.map((d) => [d.id, d]));
  for (const d of header.devices) {
    const p = byId.get(d.id);
    if (!p || Buffer.from(p.publicKey).toString('base64url') !== d.pub) {
      throw new WitnessError('WITNESS_ERR_USAGE', `${o.file}: device ${d.id}'s key does not follow from the scenario in the header (edited run file?); cannot sign its connect tokens`);
    }
  }
  const steps = new Map<string, Step[]>();
  for await (const l of readRunLines(o.file) as AsyncIterable<RunLine>) {
    if (l.k === 'end') continue;
    if (l.k === 'connect' && !l.ok) continue;
    if (l.k === 'pub' && !l.sent) continue;
    if (l.k === 'disconnect' && l.why !== 'planned') continue;
    let list = steps.get(l.dev);
    if (!list) steps.set(l.dev, (list = []));
    list.push({ t: l.t, line: l.k === 'disconnect' ? { k: 'disconnect', t: l.t } : l });
  }
  const devices = header.devices.map((d) => byId.get(d.id)!).filter((d) => steps.has(d.id));
  // t = 0 is taken before the registry probe: its connects are part of the run.
  const startedAt = Date.now();
  let probe: Awaited<ReturnType<typeof waitUntilRegistered>> | undefined;
  if (o.register) {
    registerFleet(o.register, devices);
    if (devices.length > 0) {
      probe = await waitUntilRegistered(o.broker, devices[0]!, header.scenario.audience, () => Date.now() - startedAt);
      if (!probe.accepted) throw new WitnessError('WITNESS_ERR_IO', `${o.broker}: the broker did not accept device ${devices[0]!.id} within 20 s of registering it in ${o.register} — is that the data directory of this broker?`);
    }
  }

  const newHeader = { ...runHeader(header.scenario, planned, o.broker, startedAt, 'replay', `witness sim replay ${o.file}`) };
  const writer = o.record ? await RunFileWriter.open(o.record, newHeader) : null;
  for (const l of probe?.lines ?? []) writer?.write(l);
  const metrics = new MetricsCollector(startedAt);
  const live = new LiveStatus(o.io, o.live);
  const sleeper = new Sleeper(o.signal);
  live.start(() => ({ ...metrics.snapshot(), phase: 'replaying', planned: devices.length }));
  const rel = (): number => Date.now() - startedAt;
  const speed = o.speed;
  const at = (t: number): number => (Number.isFinite(speed) ? startedAt + t / speed : 0);
  let published = 0;
  let unexpectedErrors = 0;

  const runDevice = async (d: PlannedDevice): Promise<void> => {
    const link = new SimLink(o.broker, o.connectTimeoutMs ?? 10_000);
    const cred = { clientId: d.id, device: { seed: d.seed, publicKey: d.publicKey, audience: header.scenario.audience } };
    const out: RunLine[] = [];
    const connect = async (ref?: string): Promise<void> => {
      const t = rel();
      const c = await link.connect(cred);
      metrics.onConnect(c.ok, c.ms);
      if (!c.ok) {
        unexpectedErrors++;
        metrics.onError(`connect failed: ${c.err ?? `rc ${c.rc}`}`, d.id);
      }
      out.push({ k: 'connect', t, dev: d.id, ...(ref ? { ref } : {}), ok: c.ok, ...(c.rc !== undefined ? { rc: c.rc } : {}), ms: Math.round(c.ms * 100) / 100 });
    };
    for (const step of steps.get(d.id)!) {
      await sleeper.until(at(step.t));
      if (o.signal?.aborted) break;
      const l = step.line;
      if (l.k === 'connect') {
        if (link.open) {
          await link.end();
          out.push({ k: 'disconnect', t: rel(), dev: d.id, why: 'planned' });
        }
        await connect(l.ref);
        continue;
      }
      if (l.k === 'disconnect') {
        if (link.open) {
          await link.end();
          out.push({ k: 'disconnect', t: rel(), dev: d.id, why: 'planned' });
        }
        continue;
      }
      if (!link.open) await connect();
      const bytes = Buffer.from(l.b64, 'base64');
      const t = rel();
      metrics.onSent();
      published++;
      const r = link.publish(l.topic, bytes, l.q, l.r);
      const copy: RunPublish = { ...l, t, sent: link.open };
      delete copy.ack;
      if (l.expect.ok === false) {
        await link.waitClosed(o.refusalWaitMs ?? 3000);
        await r;
        out.push(copy);
        if (!link.open) out.push({ k: 'disconnect', t: rel(), dev: d.id, why: 'refused' });
        continue;
      }
      const res = await r;
      if (res.ok && l.q > 0) {
        copy.ack = Math.round(res.ms * 100) / 100;
        metrics.onAcked(res.ms);
      } else if (!res.ok) {
        unexpectedErrors++;
        metrics.onError(`publish failed: ${res.err ?? 'no acknowledgement'}`, d.id);
      }
      out.push(copy);
    }
    if (link.open) {
      await link.end();
      out.push({ k: 'disconnect', t: rel(), dev: d.id, why: 'planned' });
    }
    for (const l of out) writer?.write(l);
  };

  try {
    await Promise.all(devices.map((d) => runDevice(d).catch((e: unknown) => {
      unexpectedErrors++;
      metrics.onError(`device stopped: ${(e as Error).message}`, d.id);
    })));
  } finally {
    live.stop();
    sleeper.dispose();
  }
  const summary = metrics.finish();
  writer?.write({ k: 'end', t: rel(), sent: published, acked: summary.totals.acked, received: 0, errors: summary.errors.total });
  await writer?.close();
  return { source: 'run', summary, clients: devices.length, published, skipped: {}, unexpectedErrors };
}

interface ExportPublish {
  t: number;
  c: string;
  topic: string;
  q: QoS;
  r: boolean;
  body: Buffer;
}

async function replayExport(o: ReplayOptions): Promise<ReplayResult> {
  const byClient = new Map<string, ExportPublish[]>();
  const skipped: Record<string, number> = {};
  const skip = (why: string): void => {
    skipped[why] = (skipped[why] ?? 0) + 1;
  };
  let t0: number | undefined;
  const rl = createInterface({ input: createReadStream(o.file, { encoding: 'utf8' }), crlfDelay: Infinity });
  let n = 0;
  for await (const text of rl) {
    n++;
    if (text === '') continue;
    let r: Record<string, unknown>;
    try {
      r = JSON.parse(text) as Record<string, unknown>;
    } catch {
      throw new WitnessError('WITNESS_ERR_USAGE', `${o.file}:${n}: not a JSON record; a ledger export has one record per line (\`witness export DIR --format jsonl\`)`);
    }
    if (r.e !== 'publish') continue;
    if (r.ok === false) {
      skip('refused originally');
      continue;
    }
    if (r.actor === 'broker' || r.actor === 'will' || typeof r.c !== 'string' || r.c === '') {
      skip("broker's own publish or last will");
      continue;
    }
    if (typeof r.b64 !== 'string') {
      skip('no body recorded (audit level metadata or masked)');
      continue;
    }
    const t = typeof r.t === 'number' ? r.t : 0;
    t0 ??= t;
    let list = byClient.get(r.c);
    if (!list) byClient.set(r.c, (list = []));
    list.push({ t: t - t0, c: r.c, topic: String(r.topic), q: (r.q === 1 || r.q === 2 ? r.q : 0) as QoS, r: r.r === true, body: Buffer.from(r.b64, 'base64') });
  }
  const startedAt = Date.now();
  const metrics = new MetricsCollector(startedAt);
  const live = new LiveStatus(o.io, o.live);
  const sleeper = new Sleeper(o.signal);
  live.start(() => ({ ...metrics.snapshot(), phase: 'replaying', planned: byClient.size }));
  const at = (t: number): number => (Number.isFinite(o.speed) ? startedAt + t / o.speed : 0);
  let published = 0;
  let unexpectedErrors = 0;
  const runClient = async (clientId: string, list: ExportPublish[]): Promise<void> => {
    const link = new SimLink(o.broker, o.connectTimeoutMs ?? 10_000);
    const cred = { clientId, ...(o.username !== undefined ? { username: o.username } : {}), ...(o.password !== undefined ? { password: o.password } : {}) };
    for (const p of list) {
      await sleeper.until(at(p.t));
      if (o.signal?.aborted) break;
      if (!link.open) {
        const c = await link.connect(cred);
        metrics.onConnect(c.ok, c.ms);
        if (!c.ok) {
          unexpectedErrors++;
          metrics.onError(`connect as ${clientId} failed: ${c.err ?? `rc ${c.rc}`}`, clientId);
          return;
        }
      }
      metrics.onSent();
      published++;
      const r = await link.publish(p.topic, p.body, p.q, p.r);
      if (r.ok && p.q > 0) metrics.onAcked(r.ms);
      if (!r.ok) {
        unexpectedErrors++;
        metrics.onError(`publish failed: ${r.err ?? 'no acknowledgement'}`, clientId);
      }
    }
    await link.end();
  };
  try {
    await Promise.all([...byClient].map(([c, list]) => runClient(c, list)));
  } finally {
    live.stop();
    sleeper.dispose();
  }
  return { source: 'export', summary: metrics.finish(), clients: byClient.size, published, skipped, unexpectedErrors };
}
