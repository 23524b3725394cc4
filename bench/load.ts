/**
 * Pieces shared by the broker benchmarks (bench/broker.ts, bench/suite.ts): the server child
 * (bench/broker-server.ts) and its line protocol, MQTT.js client connection with bounded waits,
 * and the fdatasync probe of the data disk. Importing this module runs nothing.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { closeSync, fdatasyncSync, openSync, unlinkSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import type { Writable } from 'node:stream';
import mqtt, { type MqttClient, type IClientOptions } from 'mqtt';
import { median } from './machine.js';
import type { ServerKind, Usage } from './broker-server.js';

/** Bounds on everything that waits on a peer. */
export const CONNECT_TIMEOUT_MS = 10_000;
export const CHILD_TIMEOUT_MS = 30_000;

const SERVER_JS = fileURLToPath(new URL('./broker-server.js', import.meta.url));

export function positive(name: string, v: string | undefined, dflt: number): number {
  const n = Number(v ?? dflt);
  if (!Number.isFinite(n) || n <= 0) throw new Error(`--${name}: expected a positive number, got ${JSON.stringify(v)}`);
  return n;
}

export function withTimeout<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const t = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} within ${ms} ms`)), ms);
  });
  return Promise.race([p, t]).finally(() => clearTimeout(timer));
}

// ── the server child ─────────────────────────────────────────────────────────────────────────

export interface ServerStartOptions {
  /** Witness: a data directory (fresh, or initialised with devices beforehand). */
  dataDir?: string;
  /** Witness: the config file (default bench/broker-config.yaml). */
  config?: string;
  /** Flags for node itself (e.g. --cpu-prof). */
  nodeFlags?: string[];
}

/** One bench/broker-server.ts child; every wait on it is bounded. */
export class ServerProcess {
  readonly kind: ServerKind;
  port = 0;
  readonly #proc: ChildProcess;
  /** Answers awaited, each by the key of the JSON line that carries it. */
  #waiters: Array<{ key: string; resolve: (v: unknown) => void; reject: (e: Error) => void }> = [];

  private constructor(kind: ServerKind, proc: ChildProcess) {
    this.kind = kind;
    this.#proc = proc;
    createInterface({ input: proc.stdout! }).on('line', (line) => {
      let msg: Record<string, unknown>;
      try {
        msg = JSON.parse(line) as Record<string, unknown>;
      } catch {
        process.stderr.write(`[${kind}] ${line}\n`);
        return;
      }
      const k = this.#waiters.findIndex((w) => w.key in msg);
      if (k >= 0) {
        const w = this.#waiters.splice(k, 1)[0]!;
        w.resolve(msg[w.key]);
      }
    });
    proc.once('exit', (code, sig) => {
      for (const w of this.#waiters.splice(0)) w.reject(new Error(`${kind} server exited (${code ?? sig}) before sending ${w.key}`));
    });
  }

  get pid(): number | undefined {
    return this.#proc.pid;
  }

  static async start(kind: ServerKind, o: ServerStartOptions = {}): Promise<ServerProcess> {
    const args = [...(o.nodeFlags ?? []), SERVER_JS, '--kind', kind];
    if (o.dataDir !== undefined) args.push('--data', o.dataDir);
    if (o.config !== undefined) args.push('--config', o.config);
    const s = new ServerProcess(kind, spawn(process.execPath, args, { stdio: ['pipe', 'pipe', 'inherit'] }));
    try {
      s.port = (await s.#expect('port', 'start')) as number;
    } catch (e) {
      s.kill();
      throw e;
    }
    return s;
  }

  #expect(key: string, what: string): Promise<unknown> {
    const p = new Promise<unknown>((resolve, reject) => this.#waiters.push({ key, resolve, reject }));
    return withTimeout(p, CHILD_TIMEOUT_MS, `${this.kind} server did not ${what}`);
  }

  usage(): Promise<Usage> {
    const p = this.#expect('usage', 'answer usage');
    this.#proc.stdin!.write('usage\n');
    return p as Promise<Usage>;
  }

  /** Stops the server (witness: final checkpoint) and returns its final usage. */
  async stop(): Promise<Usage> {
    const exited = new Promise<void>((r) => (this.#proc.exitCode !== null ? r() : this.#proc.once('exit', () => r())));
    try {
      const p = this.#expect('stopped', 'stop');
      this.#proc.stdin!.write('stop\n');
      const u = (await p) as Usage;
      await withTimeout(exited, CHILD_TIMEOUT_MS, `${this.kind} server did not exit`);
      return u;
    } catch (e) {
      this.kill();
      throw e;
    }
  }

  kill(): void {
    if (this.#proc.exitCode === null && this.#proc.signalCode === null) this.#proc.kill('SIGKILL');
  }
}

// ── MQTT clients ─────────────────────────────────────────────────────────────────────────────

export interface Trouble {
  errors: number;
  closes: number;
}

/** MQTT 3.1.1, clean session, no reconnect; `extra` adds e.g. username/password (tokens). */
export async function connectClient(port: number, clientId: string, trouble: Trouble, extra: Partial<IClientOptions> = {}): Promise<MqttClient> {
  const c = mqtt.connect({ host: '127.0.0.1', port, protocol: 'mqtt', protocolVersion: 4, clientId, clean: true, reconnectPeriod: 0, connectTimeout: CONNECT_TIMEOUT_MS, keepalive: 60, ...extra });
  c.on('error', () => trouble.errors++);
  try {
    await withTimeout(
      new Promise<void>((resolve, reject) => {
        c.once('connect', () => resolve());
        c.once('close', () => reject(new Error(`${clientId}: closed before CONNACK`)));
      }),
      CONNECT_TIMEOUT_MS,
      `${clientId}: no CONNACK`,
    );
  } catch (e) {
    c.end(true);
    throw e;
  }
  c.on('close', () => trouble.closes++);
  return c;
}

export async function endAll(clients: MqttClient[]): Promise<void> {
  await Promise.all(clients.map((c) => withTimeout(c.endAsync(true), CONNECT_TIMEOUT_MS, 'client end').catch(() => c.stream.destroy())));
}

// ── the disk under the ledger ────────────────────────────────────────────────────────────────

/**
 * A 4 KiB write + fdatasync, `n` times, in `dir`: what each group commit of the ledger waits for
 * before its QoS 1 PUBACKs go out. With W messages in flight the Witness QoS 1 rate cannot
 * exceed about W / (this latency + a round trip).
 */
export function fsyncProbe(dir: string, n = 200): { p50Ms: number; p99Ms: number } {
  const path = join(dir, 'fsync-probe');
  const fd = openSync(path, 'a');
  const block = Buffer.alloc(4096, 0x61);
  const ms: number[] = [];
  try {
    for (let i = 0; i < n; i++) {
      const t = process.hrtime.bigint();
      writeSync(fd, block);
      fdatasyncSync(fd);
      ms.push(Number(process.hrtime.bigint() - t) / 1e6);
    }
  } finally {
    closeSync(fd);
    unlinkSync(path);
  }
  ms.sort((a, b) => a - b);
  return { p50Ms: +median(ms).toFixed(3), p99Ms: +ms[Math.floor(n * 0.99)]!.toFixed(3) };
}

// ── publishers (shared by broker.ts, suite.ts, scale.ts) ────────────────────────────────────────

/** Counters of one load, shared by all its publishers; `running` false stops them. */
export interface PumpState {
  running: boolean;
  sent: number;
  acked: number;
  inflight: number;
  errors: number;
  /** A publisher's `next` ran out of messages (pre-signed envelopes) before the load ended. */
  exhausted: boolean;
}

export function pumpState(): PumpState {
  return { running: true, sent: 0, acked: 0, inflight: 0, errors: 0, exhausted: false };
}

/** The next message of publisher `i`, or undefined when it has none left. */
export type Next = (i: number) => Buffer | undefined;

/** Messages a QoS 0 publisher writes per turn of the event loop before yielding. */
const BURST = 64;

/** QoS 0: as fast as the socket takes them; stops at `cap` messages, when `running` clears, or when `next` runs out. */
export function pumpQos0(c: MqttClient, i: number, topic: string, st: PumpState, next: Next, cap: number): void {
  const stream = c.stream as unknown as Writable;
  let mine = 0;
  const step = (): void => {
    for (let k = 0; k < BURST && st.running && mine < cap; k++) {
      const m = next(i);
      if (m === undefined) {
        st.exhausted = true;
        return;
      }
      c.publish(topic, m, { qos: 0 });
      mine++;
      st.sent++;
      if (stream.writableNeedDrain) {
        stream.once('drain', step);
        return;
      }
    }
    if (st.running && mine < cap) setImmediate(step);
  };
  step();
}

/** QoS 1: `window` publishes in flight; each PUBACK sends the next. */
export function pumpQos1(c: MqttClient, i: number, topic: string, st: PumpState, next: Next, window: number, cap: number): void {
  let mine = 0;
  const one = (): void => {
    if (!st.running || mine >= cap) return;
    const m = next(i);
    if (m === undefined) {
      st.exhausted = true;
      return;
    }
    mine++;
    st.sent++;
    st.inflight++;
    c.publish(topic, m, { qos: 1 }, (err) => {
      st.inflight--;
      if (err) {
        st.errors++;
        return; // never re-publish from an error callback (it may run synchronously)
      }
      st.acked++;
      one();
    });
  };
  for (let k = 0; k < window; k++) one();
}
