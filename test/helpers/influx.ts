/**
 * Real InfluxDB 1.6.7 and VictoriaMetrics servers for the InfluxDB mirror tests (DESIGN §4), on
 * 127.0.0.1 and free high ports, with their data in a directory the caller owns. The binaries are
 * installed by .ci/run (Debian `influxdb`, `victoria-metrics`): a missing one fails the test — a
 * skip would let the mirror go untested in CI.
 *
 * Each server: stop() (SIGTERM, SIGKILL after a bound; the port stays unanswered), restart() (same
 * port, same data — the outage test), close() (stop; the caller's temp dir removes the data).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { accessSync, constants, mkdirSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { join } from 'node:path';

export const INFLUXD = '/usr/bin/influxd';
export const VICTORIA_METRICS = '/usr/bin/victoria-metrics';

export interface TestServer {
  /** `http://127.0.0.1:PORT` */
  url: string;
  port: number;
  stop(): Promise<void>;
  /** Starts it again on the same port and data, and waits until it answers. */
  restart(): Promise<void>;
  close(): Promise<void>;
  /** Its output so far, for failure messages. */
  log(): string;
}

/** A TCP port that was free a moment ago (bound to 127.0.0.1:0, then released). */
export async function freePort(): Promise<number> {
  const s = createServer();
  s.listen(0, '127.0.0.1');
  await once(s, 'listening');
  const a = s.address();
  const port = typeof a === 'object' && a ? a.port : 0;
  await new Promise<void>((r) => s.close(() => r()));
  if (!port) throw new Error('no free port');
  return port;
}

function requireBinary(path: string, pkg: string): void {
  try {
    accessSync(path, constants.X_OK);
  } catch {
    throw new Error(`${path} not found: install the Debian package ${pkg} (.ci/run does); the InfluxDB mirror tests need the real server`);
  }
}

interface ServerSpec {
  name: string;
  bin: string;
  args: string[];
  port: number;
  /** GET this path; ready when it answers `readyStatus`. */
  readyPath: string;
  readyStatus: number;
  readyTimeoutMs: number;
}

async function startServer(spec: ServerSpec): Promise<TestServer> {
  const url = `http://127.0.0.1:${spec.port}`;
  let proc: ChildProcess | undefined;
  let output = '';
  const keep = (d: Buffer): void => {
    output += d.toString();
    if (output.length > 200_000) output = output.slice(-100_000);
  };

  async function start(): Promise<void> {
    if (proc !== undefined) throw new Error(`${spec.name} is already running`);
    const p = spawn(spec.bin, spec.args, { stdio: ['ignore', 'pipe', 'pipe'] });
    proc = p;
    p.stdout!.on('data', keep);
    p.stderr!.on('data', keep);
    p.once('exit', () => {
      if (proc === p) proc = undefined;
    });
    const deadline = Date.now() + spec.readyTimeoutMs;
    for (let attempt = 0; ; attempt++) {
      if (p.exitCode !== null || p.signalCode !== null) throw new Error(`${spec.name} exited (${p.exitCode ?? p.signalCode}) before answering on ${url}:\n${output.slice(-4000)}`);
      try {
        const res = await fetch(url + spec.readyPath, { signal: AbortSignal.timeout(500) });
        await res.body?.cancel();
        if (res.status === spec.readyStatus) return;
      } catch {
        // not listening yet
      }
      if (Date.now() > deadline) {
        await stop();
        throw new Error(`${spec.name} did not answer ${spec.readyPath} → ${spec.readyStatus} on ${url} within ${spec.readyTimeoutMs} ms (${attempt} tries):\n${output.slice(-4000)}`);
      }
      await new Promise((r) => setTimeout(r, 20));
    }
  }

  async function stop(): Promise<void> {
    const p = proc;
    if (p === undefined) return;
    proc = undefined;
    if (p.exitCode !== null || p.signalCode !== null) return;
    const exited = once(p, 'exit');
    p.kill('SIGTERM');
    const timer = setTimeout(() => p.kill('SIGKILL'), 5_000);
    await exited;
    clearTimeout(timer);
  }

  await start();
  return { url, port: spec.port, stop, restart: start, close: stop, log: () => output };
}

/**
 * InfluxDB 1.6.7: `influxd run -config FILE` (always a config: the packaged one binds :8086 on
 * every interface), data under `dir`. Ready when GET /ping answers 204.
 */
export async function startInfluxd(dir: string): Promise<TestServer> {
  requireBinary(INFLUXD, 'influxdb');
  const port = await freePort();
  const rpcPort = await freePort();
  mkdirSync(dir, { recursive: true });
  const conf = join(dir, 'influxdb.conf');
  writeFileSync(
    conf,
    [
      'reporting-enabled = false',
      `bind-address = "127.0.0.1:${rpcPort}"`,
      '[meta]',
      `  dir = "${join(dir, 'meta')}"`,
      '[data]',
      `  dir = "${join(dir, 'data')}"`,
      `  wal-dir = "${join(dir, 'wal')}"`,
      '  query-log-enabled = false',
      '[http]',
      `  bind-address = "127.0.0.1:${port}"`,
      '  log-enabled = false',
      '[monitor]',
      '  store-enabled = false',
      '',
    ].join('\n'),
  );
  return startServer({ name: 'influxd', bin: INFLUXD, args: ['run', '-config', conf], port, readyPath: '/ping', readyStatus: 204, readyTimeoutMs: 15_000 });
}

/**
 * VictoriaMetrics, data under `dir`. `-dedup.minScrapeInterval=1ms` keeps one sample per series and
 * millisecond, so a re-sent batch is idempotent there too (VictoriaMetrics stores ms; without it,
 * it keeps every copy). Ready when GET /health answers 200.
 */
export async function startVictoriaMetrics(dir: string): Promise<TestServer> {
  requireBinary(VICTORIA_METRICS, 'victoria-metrics');
  const port = await freePort();
  mkdirSync(dir, { recursive: true });
  return startServer({
    name: 'victoria-metrics',
    bin: VICTORIA_METRICS,
    args: [`-httpListenAddr=127.0.0.1:${port}`, `-storageDataPath=${dir}`, '-dedup.minScrapeInterval=1ms', '-loggerLevel=ERROR'],
    port,
    readyPath: '/health',
    readyStatus: 200,
    readyTimeoutMs: 15_000,
  });
}

// ── reading back ──────────────────────────────────────────────────────────────────────────────

export interface InfluxRow {
  /** ns since the epoch, exactly (as a string: it does not fit a double). */
  time: string;
  [column: string]: unknown;
}

/**
 * Every point of `measurement` in InfluxDB 1.x (`GET /query?epoch=ns`), paginated by LIMIT/OFFSET.
 * Times are kept as strings: JSON.parse would round a 19-digit ns timestamp.
 */
export async function queryInfluxV1(url: string, db: string, measurement: string, maxRows = 1_000_000): Promise<InfluxRow[]> {
  const out: InfluxRow[] = [];
  const page = 5000;
  for (let offset = 0; offset < maxRows; offset += page) {
    const q = `SELECT * FROM "${measurement}" LIMIT ${page} OFFSET ${offset}`;
    const res = await fetch(`${url}/query?${new URLSearchParams({ db, epoch: 'ns', q })}`, { signal: AbortSignal.timeout(30_000) });
    const text = await res.text();
    if (res.status !== 200) throw new Error(`query ${q}: HTTP ${res.status}: ${text}`);
    // Rows are arrays starting with the time: quote it before parsing.
    const j = JSON.parse(text.replace(/\[(-?\d{16,})(?=[,\]])/g, '["$1"')) as {
      results: Array<{ error?: string; series?: Array<{ columns: string[]; values: unknown[][] }> }>;
    };
    const r = j.results[0];
    if (r?.error) throw new Error(`query ${q}: ${r.error}`);
    const series = r?.series ?? [];
    let n = 0;
    for (const s of series) {
      for (const v of s.values) {
        const row: InfluxRow = { time: String(v[0]) };
        s.columns.forEach((c, k) => {
          if (k > 0 && v[k] !== null) row[c] = v[k];
        });
        out.push(row);
        n++;
      }
    }
    if (n < page) return out;
  }
  throw new Error(`more than ${maxRows} rows in ${measurement}`);
}

export interface ExportedSeries {
  metric: Record<string, string>;
  values: number[];
  timestamps: number[];
}

/** VictoriaMetrics `/api/v1/export` of the series matching `match` (JSON lines), after a flush. */
export async function exportVictoriaMetrics(url: string, match: string): Promise<ExportedSeries[]> {
  // Makes recently written samples searchable now rather than within ~1 s.
  await fetch(`${url}/internal/force_flush`, { signal: AbortSignal.timeout(10_000) })
    .then((r) => r.body?.cancel())
    .catch(() => {});
  const res = await fetch(`${url}/api/v1/export`, { method: 'POST', body: new URLSearchParams({ 'match[]': match, start: '0' }), signal: AbortSignal.timeout(30_000) });
  const text = await res.text();
  if (res.status !== 200) throw new Error(`export ${match}: HTTP ${res.status}: ${text}`);
  return text
    .split('\n')
    .filter((l) => l.trim() !== '')
    .map((l) => JSON.parse(l) as ExportedSeries);
}

/** Polls `read` until `done` holds, bounded; returns the last value read (the caller asserts). */
export async function pollUntil<T>(read: () => Promise<T>, done: (v: T) => boolean, timeoutMs = 20_000, everyMs = 200): Promise<T> {
  const end = Date.now() + timeoutMs;
  let last = await read();
  while (!done(last) && Date.now() < end) {
    await new Promise((r) => setTimeout(r, everyMs));
    last = await read();
  }
  return last;
}

// ── records and what the mirror must make of them ─────────────────────────────────────────────

const WEIRD = 'weird "id", with=space\\ and\nnewline\r ✓';

/**
 * A record body shaped like the broker's (docs/FORMATS.md §6), of a mix of events and verdicts; every
 * 50th carries a client id and topic with every character line protocol escapes.
 */
export function mixedRecord(n: number, t: number, nodeId = 'test-node'): Record<string, unknown> {
  const dev = `dev-${n % 37}`;
  const odd = n % 50 === 0;
  const c = odd ? `${WEIRD} ${n}` : dev;
  const common = { v: 1, t, u: 3, n: nodeId, s: `s${n % 11}`, c, id: `device:${dev}+k${n % 5}`, a: `127.0.0.1:${40_000 + (n % 1000)}` };
  const topic = odd ? `devices/${WEIRD}/x` : `devices/${dev}/telemetry`;
  switch (n % 10) {
    case 0:
      return { ...common, e: 'connect', ok: true, rc: 0, auth: 'token', clean: true, k: 60, p: 4, sp: false };
    case 1:
      return { ...common, e: 'connect', id: 'unauthenticated', ok: false, rc: 5, why: 'token:bad-signature', detail: 'signature does not verify' };
    case 2:
      return { ...common, e: 'subscribe', f: `cmd/${dev}/#`, q: n % 3, g: n % 3, acl: 'allow', rule: 'own' };
    case 3:
      return { ...common, e: 'publish', topic, q: 1, r: false, m: n % 65_535, z: 100 + (n % 900), h: `h${n}`, acl: 'allow', env: 'valid', kid: 'k', seq: n, dt: t - 20, du: 5, actor: 'client' };
    case 4:
      return { ...common, e: 'publish', topic, q: 0, z: 64, h: `h${n}`, acl: 'allow', env: 'gap', gap: 1 + (n % 4), why: `missing ${1 + (n % 4)}`, seq: n, dt: t - 3, actor: 'client' };
    case 5:
      return { ...common, e: 'publish', topic, q: 2, z: 10, h: `h${n}`, acl: 'allow', env: 'valid', seq: n, dt: t - 90_000.5, late: 89_990.25, actor: 'client' };
    case 6:
      return { ...common, e: 'publish', topic, q: 1, z: 3, h: `h${n}`, acl: 'deny', env: 'clock-skew', seq: n, dt: t + 5_000, ok: false, actor: 'client' };
    case 7:
      return { ...common, e: 'publish', topic: `$SYS/will/${dev}`, q: 0, z: 0, h: 'h', acl: 'allow', env: 'missing', actor: 'will' };
    case 8:
      return { ...common, e: 'disconnect', why: n % 3 === 0 ? 'error' : 'clean', msg: 'socket hang up' };
    default:
      return { ...common, e: 'error', scope: 'connection', msg: 'malformed packet' };
  }
}

/** A string field as InfluxDB reads it back: LF and CR come back as `\n` and `\r` (line-protocol.ts). */
export function asStored(s: string): string {
  return s.replace(/\n/g, '\\n').replace(/\r/g, '\\r');
}

/**
 * What InfluxDB 1.x's `SELECT *` must return for a ledger record (tags and fields as columns),
 * spelled out from docs/FOLLOWERS.md independently of the mirror's code.
 */
export function expectedInfluxRow(rec: Record<string, unknown> & { i: number }, nodeId: string): InfluxRow {
  const r = rec as Record<string, unknown>;
  const row: InfluxRow = { time: (BigInt(r['t'] as number) * 1_000_000n + BigInt(rec.i % 1_000_000)).toString() };
  const s = (v: unknown): string => asStored(typeof v === 'string' ? v : JSON.stringify(v));
  row['e'] = r['e'];
  row['node'] = nodeId;
  for (const k of ['env', 'acl', 'actor']) if (r[k] !== undefined) row[k] = r[k];
  if (r['q'] !== undefined) row['q'] = String(r['q']);
  if (typeof r['ok'] === 'boolean') row['ok'] = String(r['ok']);
  row['i'] = rec.i;
  for (const k of ['c', 'id', 'topic', 'h', 'a']) if (r[k] !== undefined) row[k] = s(r[k]);
  if (r['why'] !== undefined) row['why'] = s(typeof r['why'] === 'string' ? r['why'] : String(r['why']));
  for (const k of ['z', 'seq', 'gap', 'rc', 'late', 'dt']) if (typeof r[k] === 'number') row[k] = r[k];
  if (typeof r['dt'] === 'number') row['skew'] = (r['dt'] as number) - (r['t'] as number);
  row['count'] = 1;
  return row;
}

export interface AppendLoad {
  /** Records appended so far (started). */
  readonly started: number;
  /** The appends not resolved yet. */
  pending(): Promise<unknown>[];
  /** Stops appending and waits for every append made. */
  stop(): Promise<void>;
}

/**
 * Appends `perTick` mixed records every `tickMs` (record n at broker time t0 + n: one per ms) until
 * stop(), for at most `maxMs`.
 */
export function startAppendLoad(ledger: { append(r: Record<string, unknown>): Promise<unknown> }, t0: number, nodeId: string, perTick = 20, tickMs = 5, maxMs = 60_000): AppendLoad {
  let n = 0;
  let running = true;
  const inFlight = new Set<Promise<unknown>>();
  const loop = (async () => {
    const guard = Date.now() + maxMs;
    while (running && Date.now() < guard) {
      for (let j = 0; j < perTick; j++) {
        const p = ledger.append(mixedRecord(n, t0 + n, nodeId));
        n++;
        inFlight.add(p);
        void p.finally(() => inFlight.delete(p)).catch(() => {});
      }
      await new Promise((r) => setTimeout(r, tickMs));
    }
  })();
  return {
    get started() {
      return n;
    },
    pending: () => [...inFlight],
    async stop() {
      running = false;
      await loop;
      await Promise.all([...inFlight]);
    },
  };
}
