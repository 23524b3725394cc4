/**
 * `witness sim run`: executes a scenario's plan against a broker. The plan (plan.ts) already says
 * what every device sends, when, and what the ledger should make of it; the runner adds only the
 * wall clock: it signs at send time (DeviceSigner of the agent library), writes to the socket,
 * and records what actually happened in the run file, line by line, per device in send order.
 *
 * One process drives the whole fleet: one timer and one MQTT.js connection per device, connects
 * limited to `maxConnecting` at a time so a ramp of 0 does not turn into 10,000 simultaneous TLS/
 * token handshakes. What the runner does for an incident beyond sending it:
 *  - a publish the broker is expected to refuse (expect.ok false: ACL deny, or enforce) closes the
 *    connection in aedes; the device waits for that close (bounded) and connects again with a fresh
 *    token before its next item — that reconnect is an ordinary, recorded connect;
 *  - reordered messages are signed in chain order and sent in plan order (the later one first);
 *  - a replayed item re-sends the exact bytes of the earlier one.
 */
import { createHash } from 'node:crypto';
import { decodeEnvelope, envelopeHash } from '../shared/envelope/index.js';
import { DeviceSigner, type SignTime, type SignedMessage } from '../agent/signer.js';
import type { CommandIo } from '../shared/cli/cli.js';
import { SimLink, type ConnectOutcome } from './link.js';
import { planDevice, planDevices } from './plan.js';
import { MetricsCollector, type RunSummary } from './metrics.js';
import { LiveStatus } from './progress.js';
import { RunFileWriter } from './run-file.js';
import { registerFleet, waitUntilRegistered } from './register.js';
import { WitnessError } from '../shared/errors.js';
import type { PlannedDevice, PlannedItem, PlannedPublish, RunHeader, RunLine, RunPublish, Scenario, IncidentType } from './types.js';
import { RUN_FORMAT } from './types.js';

export interface RunOptions {
  scenario: Scenario;
  /** mqtt://HOST:PORT (or ws://…). */
  broker: string;
  /** Write the run file here. */
  record?: string | undefined;
  /** Register the fleet's keys in this broker data directory first (and wait until the broker has them). */
  register?: string | undefined;
  io: CommandIo;
  /** Live counters on stderr (a TTY only). */
  live: boolean;
  /** Connects in progress at once. Default 256. */
  maxConnecting?: number;
  /** Time allowed for a CONNACK, ms. Default 10,000. */
  connectTimeoutMs?: number;
  /** How long a device waits for the broker to close the connection after a publish it expects refused, ms. Default 3,000. */
  refusalWaitMs?: number;
  /** Stop early. */
  signal?: AbortSignal | undefined;
  /** Written into the run file header. */
  tool?: string;
}

export interface RunResult {
  summary: RunSummary;
  header: RunHeader;
  /** Counts over the run's lines. */
  counts: {
    devices: number;
    connects: number;
    connectFailures: number;
    published: number;
    notSent: number;
    refusedAsPlanned: number;
    incidents: Partial<Record<IncidentType, number>>;
    /** Unplanned trouble: connects that failed, publishes that failed to send. */
    unexpectedErrors: number;
  };
}

const b64url = (b: Uint8Array): string => Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString('base64url');
const sha = (b: Uint8Array): string => createHash('sha256').update(b).digest('base64url');

/**
 * Timed waits that an abort ends at once, with ONE 'abort' listener for the whole run.
 *
 * Measured (bench/sim.ts, 10,000 devices, 2,000 msg/s, `--cpu-prof` of the simulator, this
 * 2-core machine): with one listener per sleeping device, Node's EventTarget — a linked list
 * that addEventListener walks to the end to rule out a duplicate, and removeEventListener walks
 * again — made every sleep O(devices asleep): 121 µs per sleep with 10,000 asleep (0.12 µs with
 * a Set), and addEventListener + its removal 24.7 % of the simulator's busy time; the simulator
 * fell behind its plan (905–1,665 of 2,000 msg/s sent). Waits end exactly as before: at their time,
 * or at once on abort.
 */
export class Sleeper {
  readonly #waiting = new Set<() => void>();
  readonly #signal: AbortSignal | undefined;
  readonly #onAbort = (): void => {
    for (const wake of [...this.#waiting]) wake();
  };

  constructor(signal?: AbortSignal) {
    this.#signal = signal;
    signal?.addEventListener('abort', this.#onAbort, { once: true });
  }

  until(wall: number): Promise<void> {
    const ms = wall - Date.now();
    if (ms <= 0 || this.#signal?.aborted) return Promise.resolve();
    return new Promise((resolve) => {
      const done = (): void => {
        clearTimeout(t);
        this.#waiting.delete(done);
        resolve();
      };
      const t = setTimeout(done, ms);
      this.#waiting.add(done);
    });
  }

  dispose(): void {
    this.#signal?.removeEventListener('abort', this.#onAbort);
  }
}

/** A counting semaphore for connects in progress. */
class Gate {
  #free: number;
  #queue: Array<() => void> = [];
  constructor(n: number) {
    this.#free = n;
  }
  async run<T>(f: () => Promise<T>): Promise<T> {
    if (this.#free > 0) this.#free--;
    else await new Promise<void>((r) => this.#queue.push(r));
    try {
      return await f();
    } finally {
      const next = this.#queue.shift();
      if (next) next();
      else this.#free++;
    }
  }
}

/** Bytes of an envelope with one payload byte flipped (the signature no longer covers it). */
export function alterEnvelope(envelope: Uint8Array): Uint8Array {
  const env = decodeEnvelope(envelope);
  const out = Uint8Array.from(envelope);
  const at = env.payload.length > 0 ? env.payload.byteOffset - envelope.byteOffset : env.signature.byteOffset - envelope.byteOffset;
  out[at] = out[at]! ^ 0x01;
  return out;
}

/**
 * The runner's clock for device time claims: system time with the scenario's declared
 * uncertainty (source `system`). The simulator's devices share this machine's clock; skew is
 * injected per message by the plan.
 */
function systemClock(uncertaintyMs: number): () => SignTime {
  return () => ({ time: Date.now(), uncertainty: uncertaintyMs, source: 'system' });
}

export function runHeader(s: Scenario, devices: readonly PlannedDevice[], broker: string, startedAt: number, kind: 'run' | 'replay', tool: string): RunHeader {
  return {
    format: RUN_FORMAT,
    kind,
    scenario: s,
    startedAt,
    broker,
    devices: devices.map((d) => ({
      id: d.id,
      fleet: d.fleet,
      pub: b64url(d.publicKey),
      ...(d.revoked ? { revokedPub: b64url(d.revoked.publicKey) } : {}),
      ...(d.unknown ? { unknownPub: b64url(d.unknown.publicKey) } : {}),
    })),
    tool,
  };
}

/** Per device: lines are released in send order, each once its acknowledgement (if any) is settled. */
class DeviceLines {
  readonly #queue: Array<{ line: RunLine; ready: boolean }> = [];
  readonly #emit: (l: RunLine) => void;
  constructor(emit: (l: RunLine) => void) {
    this.#emit = emit;
  }
  push(line: RunLine, ready = true): { settle: () => void } {
    const slot = { line, ready };
    this.#queue.push(slot);
    this.#drain();
    return {
      settle: () => {
        slot.ready = true;
        this.#drain();
      },
    };
  }
  #drain(): void {
    while (this.#queue.length > 0 && this.#queue[0]!.ready) this.#emit(this.#queue.shift()!.line);
  }
}

export async function runScenario(o: RunOptions): Promise<RunResult> {
  const s = o.scenario;
  const devices = planDevices(s);
  const tool = o.tool ?? 'witness sim run';
  const connectTimeoutMs = o.connectTimeoutMs ?? 10_000;
  const refusalWaitMs = o.refusalWaitMs ?? 3000;
  const gate = new Gate(o.maxConnecting ?? 256);
  const sleeper = new Sleeper(o.signal);
  const clock = systemClock(s.clockUncertaintyMs);

  // t = 0 is taken before the registry probe: its connects are part of the run.
  const startedAt = Date.now();
  let probe: Awaited<ReturnType<typeof waitUntilRegistered>> | undefined;
  if (o.register) {
    registerFleet(o.register, devices);
    if (devices.length > 0) {
      probe = await waitUntilRegistered(o.broker, devices[0]!, s.audience, () => Date.now() - startedAt);
      if (!probe.accepted) throw new WitnessError('WITNESS_ERR_IO', `${o.broker}: the broker did not accept device ${devices[0]!.id} within 20 s of registering it in ${o.register} — is that the data directory of this broker?`);
    }
  }

  // The plan's times count from here (after any registry probe).
  const planStart = Date.now();
  const header = runHeader(s, devices, o.broker, startedAt, 'run', tool);
  const writer = o.record ? await RunFileWriter.open(o.record, header) : null;
  for (const l of probe?.lines ?? []) writer?.write(l);
  const metrics = new MetricsCollector(startedAt);
  const counts: RunResult['counts'] = { devices: devices.length, connects: 0, connectFailures: 0, published: 0, notSent: 0, refusedAsPlanned: 0, incidents: {}, unexpectedErrors: 0 };
  const seenIncidents = new Set<string>();
  const emit = (l: RunLine): void => {
    if (l.k === 'connect' || l.k === 'pub') {
      const inc = l.incident;
      if (inc && !seenIncidents.has(inc.id)) {
        seenIncidents.add(inc.id);
        counts.incidents[inc.type] = (counts.incidents[inc.type] ?? 0) + 1;
      }
    }
    writer?.write(l);
  };
  const rel = (): number => Date.now() - startedAt;

  // End-to-end latency: the subscriber looks up what it receives by hash (the envelope, or the
  // inner payload when the broker unwraps) in what was sent, bounded by age.
  const inflight = new Map<string, number>();
  const live = new LiveStatus(o.io, o.live);
  live.start(() => ({ ...metrics.snapshot(), phase: 'running', planned: devices.length }));

  let subscriber: SimLink | null = null;
  if (s.subscriber.filter !== '') {
    subscriber = new SimLink(o.broker, connectTimeoutMs);
    subscriber.onMessage = (_topic, payload) => {
      const key = sha(payload);
      const sentAt = inflight.get(key);
      if (sentAt !== undefined) {
        inflight.delete(key);
        metrics.onReceived(performance.now() - sentAt);
      } else metrics.onReceived(Number.NaN);
    };
    const c = await subscriber.connect({ clientId: `witness-sim-sub-${process.pid}` });
    if (!c.ok) metrics.onError(`subscriber connect failed: ${c.err ?? `rc ${c.rc}`}`);
    else if ((await subscriber.subscribe(s.subscriber.filter, s.subscriber.qos)) === null) metrics.onError(`subscriber: subscription to ${s.subscriber.filter} refused`);
  }
  const hashLines = writer !== null || subscriber !== null;
  const pruneTimer = setInterval(() => {
    const old = performance.now() - 60_000;
    for (const [k, t] of inflight) if (t < old) inflight.delete(k);
  }, 10_000);
  pruneTimer.unref();

  const runDevice = async (d: PlannedDevice): Promise<void> => {
    // A device is planned and its signer made when its first item — the connect at connectAtMs
    // (plan.ts) — is due, not all N at t = 0. Measured (bench/sim.ts, 10,000 devices, this
    // 2-core machine): planDevice ≈ 80 µs and new DeviceSigner ≈ 720 µs a device (its
    // publicKeyFromSeed imports the seed as PKCS#8), so doing it up front blocked the event loop
    // for ≈ 8 s before the first connect, and the first connects came 10–15 s after t = 0 on a
    // 20 s ramp. The first loop turn below finds the connect due at once: what is sent, and
    // when, is unchanged.
    await sleeper.until(planStart + d.connectAtMs);
    if (o.signal?.aborted) return;
    const items: PlannedItem[] = planDevice(s, d, devices);
    const lines = new DeviceLines(emit);
    const signer = new DeviceSigner({ deviceId: d.id, seed: d.seed, clock });
    const presigned = new Map<string, SignedMessage>();
    const sentBytes = new Map<string, Uint8Array>();
    const replays = items.some((x) => x.kind === 'publish' && x.replayOf !== undefined);
    const pending = new Set<Promise<void>>();
    const link = new SimLink(o.broker, connectTimeoutMs);
    const credentials = { clientId: d.id, device: { seed: d.seed, publicKey: d.publicKey, audience: s.audience } };

    const connect = async (ref?: string, incident?: { type: IncidentType; id: string }): Promise<ConnectOutcome> => {
      const t = rel();
      const out = await gate.run(() => link.connect(credentials));
      counts.connects++;
      if (!out.ok) counts.connectFailures++;
      metrics.onConnect(out.ok, out.ms);
      if (!out.ok) metrics.onError(`connect failed: ${out.err ?? `rc ${out.rc}`}`, d.id);
      lines.push({ k: 'connect', t, dev: d.id, ...(ref ? { ref } : {}), ok: out.ok, ...(out.rc !== undefined ? { rc: out.rc } : {}), ms: Math.round(out.ms * 100) / 100, ...(out.err ? { err: out.err } : {}), ...(incident ? { incident } : {}) });
      return out;
    };
    const disconnect = async (why: string): Promise<void> => {
      if (!link.open) return;
      await link.end();
      metrics.onDisconnect();
      lines.push({ k: 'disconnect', t: rel(), dev: d.id, why });
    };

    const sign = (it: PlannedPublish, k: number): Uint8Array => {
      const e = it.envelope!;
      if (!e.chain) {
        const seed = e.key === 'revoked' ? d.revoked?.seed : e.key === 'unknown' ? d.unknown?.seed : undefined;
        return signer.signDetached(e.signedTopic, it.payload, { skewMs: e.skewMs, ...(seed ? { seed } : {}) }).envelope;
      }
      // A chain message planned to go out ahead of its predecessor (reordered): sign the
      // predecessors first, in chain order, and keep them for their turn.
      for (let j = k + 1; e.seq > signer.nextSeq && j < items.length; j++) {
        const later = items[j]!;
        if (later.kind === 'publish' && later.envelope?.chain && later.envelope.seq === signer.nextSeq && !later.replayOf) {
          presigned.set(later.ref, signer.sign(later.envelope.signedTopic, later.payload, { skewMs: later.envelope.skewMs }));
          j = k; // restart the scan: the next predecessor may come earlier in the list
        }
      }
      const pre = presigned.get(it.ref);
      if (pre) {
        presigned.delete(it.ref);
        return pre.envelope;
      }
      return signer.sign(e.signedTopic, it.payload, { skewMs: e.skewMs }).envelope;
    };

    for (let k = 0; k < items.length; k++) {
      const it = items[k]!;
      await sleeper.until(planStart + it.atMs);
      if (o.signal?.aborted) break;
      if (it.kind === 'connect') {
        await disconnect('planned');
        await connect(it.ref, it.incident);
        continue;
      }
      let bytes: Uint8Array;
      if (it.replayOf) {
        const earlier = sentBytes.get(it.replayOf);
        if (!earlier) throw new Error(`plan error: ${it.ref} replays ${it.replayOf}, which ${d.id} has not sent`);
        bytes = earlier;
      } else if (it.envelope === null) bytes = it.payload;
      else {
        bytes = sign(it, k);
        if (it.envelope.alter) bytes = alterEnvelope(bytes);
      }
      // Only the most recent few are kept: a replay names a recent message. Only a device whose
      // plan replays keeps any. Measured: keeping them for every device held 32 MiB of
      // ArrayBuffers with 10,000 devices sending 12 messages of 324 bytes each.
      if (replays) {
        sentBytes.set(it.ref, bytes);
        if (sentBytes.size > 32) sentBytes.delete(sentBytes.keys().next().value!);
      }

      // The hashes are read by the run file and the latency subscriber, seq/eh/b64 by the run
      // file alone: without them they are left empty (nothing else reads a line's content but
      // its incident). Measured (10,000 devices, no --record): the three SHA-256s and the base64
      // copy of a 324-byte envelope took ≈ 16 µs a message, ≈ 5 % of the simulator's CPU per
      // message (≈ 300 µs here).
      const h = hashLines ? sha(bytes) : '';
      const line: RunPublish = {
        k: 'pub',
        t: rel(),
        dev: d.id,
        ref: it.ref,
        topic: it.topic,
        q: it.qos,
        r: it.retain,
        sent: false,
        h,
        ph: hashLines ? sha(it.payload) : '',
        ...(writer && (it.envelope || it.replayOf) ? { seq: it.envelope?.seq ?? decodeEnvelope(bytes).claims.seq, eh: b64url(envelopeHash(bytes)) } : {}),
        b64: writer ? Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('base64') : '',
        ...(it.incident ? { incident: it.incident } : {}),
        expect: it.expect,
      };
      if (!it.send) {
        counts.notSent++;
        lines.push(line);
        continue;
      }
      if (!link.open) await connect();
      line.sent = link.open;
      if (!line.sent) {
        counts.unexpectedErrors++;
        metrics.onError('publish skipped: not connected', d.id);
        lines.push(line);
        continue;
      }
      counts.published++;
      metrics.onSent();
      const sentAt = performance.now();
      if (subscriber) {
        inflight.set(h, sentAt);
        if (it.envelope && !it.envelope.alter) inflight.set(line.ph, sentAt);
      }
      const expectRefusal = it.expect.ok === false;
      // aedes closes the connection on a refusal: let this device's earlier messages be
      // acknowledged first, or their PUBACKs die with the connection.
      if (expectRefusal && pending.size > 0) await Promise.all(pending);
      const slot = lines.push(line, false);
      const acked = link.publish(it.topic, bytes, it.qos, it.retain).then((r) => {
        if (r.ok && it.qos > 0) {
          line.ack = Math.round(r.ms * 100) / 100;
          metrics.onAcked(r.ms);
        } else if (!r.ok && !expectRefusal) {
          counts.unexpectedErrors++;
          metrics.onError(`publish failed: ${r.err ?? 'no acknowledgement'}`, d.id);
        }
        slot.settle();
      });
      pending.add(acked);
      void acked.then(() => pending.delete(acked));
      if (expectRefusal) {
        // aedes closes the connection after a refused publish: wait for it, then go on (the next
        // item connects again). If the broker accepts instead, `sim check` will say so.
        const closed = await link.waitClosed(refusalWaitMs);
        await acked;
        if (closed) {
          counts.refusedAsPlanned++;
          metrics.onRefused();
          metrics.onDisconnect();
          lines.push({ k: 'disconnect', t: rel(), dev: d.id, why: 'refused' });
        }
      }
    }
    // Let acknowledgements arrive, then leave cleanly.
    await disconnect('planned');
  };

  try {
    await Promise.all(
      devices.map((d) =>
        runDevice(d).catch((e: unknown) => {
          counts.unexpectedErrors++;
          metrics.onError(`device stopped: ${(e as Error).message}`, d.id);
        }),
      ),
    );
    // Give the subscriber a moment for the last deliveries (bounded).
    if (subscriber) {
      const until = Date.now() + 1000;
      while (inflight.size > 0 && Date.now() < until) await new Promise((r) => setTimeout(r, 50));
      await subscriber.end();
    }
  } finally {
    clearInterval(pruneTimer);
    live.stop();
    sleeper.dispose();
  }
  const summary = metrics.finish();
  writer?.write({ k: 'end', t: rel(), sent: summary.totals.sent, acked: summary.totals.acked, received: summary.totals.received, errors: summary.errors.total });
  await writer?.close();
  return { summary, header, counts };
}
