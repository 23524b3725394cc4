/**
 * The InfluxDB mirror: a ledger follower (follower.ts) that writes one point per record to
 * InfluxDB — or anything that speaks its write API (VictoriaMetrics, InfluxDB Cloud). The ledger
 * is the source (DESIGN §1); the mirror is a copy that may lag, never one that diverges:
 *  - each batch is written by ONE request; success moves the follower's cursor, failure makes the
 *    follower send the SAME batch again after a backoff — nothing else buffers or retries;
 *  - every point is keyed by (measurement, tag set, time) and its time carries the ledger index
 *    (`pointTimestamp`), so writing a batch twice rewrites identical points: no duplicates;
 *  - the broker only appends to the ledger: a slow or dead server never slows it.
 *
 * Two write paths (docs/FOLLOWERS.md §InfluxDB mirror has the point schema and the reasoning):
 *  - `v2`: @influxdata/influxdb-client's WriteApi → `/api/v2/write` (InfluxDB 1.8+, 2.x, 3.x,
 *    Cloud, VictoriaMetrics);
 *  - `v1`: `POST /write?db=…&precision=ns` with the same line protocol (InfluxDB before 1.8, e.g.
 *    Debian's 1.6.7, which answers 404 on /api/v2), after `CREATE DATABASE` once.
 */
import { InfluxDB, type WriteApi } from '@influxdata/influxdb-client';
import type { InfluxConfig } from '../config/config.js';
import { EVENTS, ENVELOPE_VERDICTS } from '../records.js';
import { WitnessError } from '../../shared/errors.js';
import type { Ledger } from '../../shared/ledger/writer.js';
import { Follower, type FollowedRecord, type FollowerOptions } from './follower.js';
import { encodeLine, float, int, str, type FieldValue, type LinePoint } from './line-protocol.js';

/** The follower's name (its cursor: DATA/state/followers/influx.json). */
export const INFLUX_FOLLOWER_NAME = 'influx';

/** String fields longer than this (characters) are cut, ending in `…`: an analytics copy, not the record. */
export const MAX_STRING_FIELD = 4096;

// ── point schema ──────────────────────────────────────────────────────────────────────────────

/** Tag values come from these closed sets only (anything else is written `other`): bounded cardinality. */
const TAG_SETS = {
  e: new Set<string>(Object.values(EVENTS)),
  env: new Set<string>(ENVELOPE_VERDICTS),
  acl: new Set(['allow', 'deny']),
  actor: new Set(['client', 'broker', 'will']),
} as const;

function closed(set: ReadonlySet<string>, v: unknown): string | undefined {
  if (v === undefined || v === null) return undefined;
  return typeof v === 'string' && set.has(v) ? v : 'other';
}

function text(v: unknown): FieldValue | undefined {
  if (v === undefined || v === null) return undefined;
  let s = typeof v === 'string' ? v : typeof v === 'object' ? JSON.stringify(v) : String(v);
  if (s.length > MAX_STRING_FIELD) s = `${s.slice(0, MAX_STRING_FIELD - 1)}…`;
  return str(s);
}

function integer(v: unknown): FieldValue | undefined {
  if (typeof v !== 'number' || !Number.isFinite(v)) return undefined;
  const n = Math.trunc(v);
  return Number.isSafeInteger(n) ? int(n) : undefined;
}

function real(v: unknown): FieldValue | undefined {
  return typeof v === 'number' && Number.isFinite(v) ? float(v) : undefined;
}

/**
 * The point's time in ns: the record's broker time `t` (ms) × 10^6 plus the ledger index mod
 * 10^6 — so the low 6 digits name the record, two records of the same millisecond never overwrite
 * each other, and re-writing a record rewrites the identical point. A record without a usable `t`
 * (none is written so) is placed at ms 0.
 */
export function pointTimestamp(t: unknown, index: number): bigint {
  const ms = typeof t === 'number' && Number.isFinite(t) && t >= 0 ? Math.floor(t) : 0;
  return BigInt(ms) * 1_000_000n + BigInt(index % 1_000_000);
}

export interface PointSchemaOptions {
  /** Default `witness`. */
  measurement?: string;
  /** The broker's node id (the `node` tag). */
  nodeId: string;
}

/** The point of one ledger record (docs/FOLLOWERS.md §InfluxDB mirror). */
export function recordPoint(rec: Pick<FollowedRecord, 'index' | 'record'>, o: PointSchemaOptions): LinePoint {
  const r = rec.record;
  const q = r['q'];
  const ok = r['ok'];
  const t = r['t'];
  const dt = r['dt'];
  return {
    measurement: o.measurement ?? 'witness',
    tags: {
      e: closed(TAG_SETS.e, r['e']) ?? 'other',
      node: o.nodeId,
      env: closed(TAG_SETS.env, r['env']),
      acl: closed(TAG_SETS.acl, r['acl']),
      q: q === undefined ? undefined : q === 0 || q === 1 || q === 2 ? String(q) : 'other',
      ok: typeof ok === 'boolean' ? String(ok) : undefined,
      actor: closed(TAG_SETS.actor, r['actor']),
    },
    fields: {
      i: int(rec.index),
      c: text(r['c']),
      id: text(r['id']),
      topic: text(r['topic']),
      z: integer(r['z']),
      seq: integer(r['seq']),
      gap: integer(r['gap']),
      late: real(r['late']),
      dt: real(dt),
      skew: typeof dt === 'number' && typeof t === 'number' && Number.isFinite(dt - t) ? float(dt - t) : undefined,
      h: text(r['h']),
      a: text(r['a']),
      why: text(r['why']),
      rc: integer(r['rc']),
      count: int(1),
    },
    timestamp: pointTimestamp(t, rec.index),
  };
}

/** The line protocol of one ledger record. */
export function recordLine(rec: Pick<FollowedRecord, 'index' | 'record'>, o: PointSchemaOptions): string {
  return encodeLine(recordPoint(rec, o));
}

// ── sink ──────────────────────────────────────────────────────────────────────────────────────

export interface InfluxSink {
  /** Writes the batch's points in one request; resolves once the server accepted all of them. */
  write(batch: FollowedRecord[]): Promise<void>;
  /** Later writes reject. */
  close(): Promise<void>;
  /** Target, without secrets: `influx v1 http://127.0.0.1:8086 database=witness measurement=witness`. */
  describe(): string;
}

/** What is wrong with a mirror config, or undefined (load.ts checks the same for config files). */
export function checkInfluxConfig(cfg: InfluxConfig): string | undefined {
  let u: URL;
  try {
    u = new URL(cfg.url);
  } catch {
    return `url ${JSON.stringify(cfg.url)} is not a URL (e.g. http://127.0.0.1:8086)`;
  }
  if (u.protocol !== 'http:' && u.protocol !== 'https:') return `url ${JSON.stringify(cfg.url)} is not http(s)`;
  if (cfg.api !== 'v1' && cfg.api !== 'v2') return `api ${JSON.stringify(cfg.api)} is neither v1 nor v2`;
  if (cfg.api === 'v1' && !cfg.database) return 'api v1 needs a database';
  if (cfg.api === 'v2' && (!cfg.org || !cfg.bucket)) return 'api v2 needs org and bucket';
  if (!/^[A-Za-z0-9_.-]{1,128}$/.test(cfg.measurement ?? '')) return `measurement ${JSON.stringify(cfg.measurement)} is not 1–128 of A-Z a-z 0-9 _ . -`;
  if (!(Number.isSafeInteger(cfg.timeoutMs) && cfg.timeoutMs > 0)) return `timeoutMs ${cfg.timeoutMs} is not a positive integer`;
  return undefined;
}

/** The base URL without credentials or a trailing slash, and the credentials it carried. */
function splitUrl(url: string): { base: string; user?: string; pass?: string } {
  const u = new URL(url);
  const user = u.username ? decodeURIComponent(u.username) : undefined;
  const pass = u.password ? decodeURIComponent(u.password) : undefined;
  u.username = '';
  u.password = '';
  u.search = '';
  u.hash = '';
  return { base: u.toString().replace(/\/+$/, ''), ...(user !== undefined ? { user } : {}), ...(pass !== undefined ? { pass } : {}) };
}

/** What a failed request says: the server's own message if it gave one (InfluxDB: {"error": …}). */
function serverMessage(body: string): string {
  let msg = body.trim();
  try {
    const j = JSON.parse(msg) as { error?: unknown; message?: unknown };
    if (typeof j.error === 'string') msg = j.error;
    else if (typeof j.message === 'string') msg = j.message;
  } catch {
    // not JSON: the text itself
  }
  return msg.length > 500 ? `${msg.slice(0, 500)}…` : msg || '(no message)';
}

/** A network-level failure in words: timeout, refused connection, DNS, TLS. */
function networkMessage(e: unknown, timeoutMs: number): string {
  const err = e as { name?: string; message?: string; code?: string; cause?: { code?: string; message?: string } };
  if (err?.name === 'TimeoutError' || err?.name === 'AbortError' || err?.name === 'RequestTimedOutError') return `no answer within ${timeoutMs} ms (timeoutMs)`;
  const c = err?.cause;
  // fetch (undici) refuses the Fetch standard's blocked ports (e.g. 1, 6000, 6665–6669, 10080).
  if (c?.message === 'bad port') return 'the port is one fetch refuses to connect to (a blocked port of the Fetch standard): use another';
  const words = (x: { code?: string; message?: string }): string => (x.code && x.message?.includes(x.code) ? x.message : [x.code, x.message].filter(Boolean).join(': '));
  return (c && words(c)) || (err && words(err)) || String(e);
}

function points(n: number): string {
  return `${n} point${n === 1 ? '' : 's'}`;
}

/** An InfluxQL identifier in double quotes. */
function quoteIdent(s: string): string {
  return `"${s.replace(/[\\"]/g, (c) => `\\${c}`)}"`;
}

/**
 * The writer of the mirror: `write(batch)` sends the batch's points in one request and resolves
 * once the server accepted them all, or rejects with an Error naming the target, the HTTP status
 * and the server's message (or the network failure). It keeps nothing between calls. A config
 * that cannot work (checkInfluxConfig) does not throw here: every write rejects with the reason.
 */
export function createInfluxSink(cfg: InfluxConfig, nodeId: string): InfluxSink {
  const problem = checkInfluxConfig(cfg);
  const schema: PointSchemaOptions = { measurement: cfg.measurement, nodeId };
  let closed = false;
  if (problem !== undefined) {
    // A broken config must not stop the broker: every write fails with the reason (onError,
    // status().lastError), and the cursor stays where it is until the config is fixed.
    const err = new WitnessError('WITNESS_ERR_INVALID_ARGUMENT', `influx mirror config: ${problem}`, { details: { problem } });
    return {
      write: async (batch) => {
        if (batch.length > 0) throw err;
      },
      close: async () => {},
      describe: () => `influx (misconfigured: ${problem})`,
    };
  }
  const { base, user, pass } = splitUrl(cfg.url);
  const lines = (batch: FollowedRecord[]): string[] => batch.map((r) => recordLine(r, schema));
  const guard = (batch: FollowedRecord[]): boolean => {
    if (closed) throw new Error(`influx mirror (${base}) is closed`);
    return batch.length > 0;
  };

  if (cfg.api === 'v1') {
    const db = cfg.database!;
    const username = cfg.username ?? user;
    const password = cfg.password ?? pass ?? '';
    const headers: Record<string, string> = username !== undefined ? { authorization: `Basic ${Buffer.from(`${username}:${password}`).toString('base64')}` } : {};
    const writeUrl = `${base}/write?${new URLSearchParams({ db, precision: 'ns', ...(cfg.retentionPolicy ? { rp: cfg.retentionPolicy } : {}) })}`;
    const where = `influx v1 ${base} (database ${db})`;
    let dbReady = false;
    let createRefused: string | undefined;

    // CREATE DATABASE is idempotent in InfluxDB. Once the server has answered — yes, or no (a
    // user without admin rights, a server without /query) — writes go ahead; a write that then
    // finds no database triggers it again.
    const ensureDatabase = async (): Promise<void> => {
      if (dbReady) return;
      let res: Response;
      try {
        res = await fetch(`${base}/query?${new URLSearchParams({ q: `CREATE DATABASE ${quoteIdent(db)}` })}`, { method: 'POST', headers, signal: AbortSignal.timeout(cfg.timeoutMs) });
      } catch (e) {
        throw new Error(`${where}: CREATE DATABASE failed: ${networkMessage(e, cfg.timeoutMs)}`, { cause: e });
      }
      const body = await res.text().catch(() => '');
      let stmtError: string | undefined;
      try {
        const j = JSON.parse(body) as { results?: Array<{ error?: string }>; error?: string };
        stmtError = j.error ?? j.results?.find((r) => r.error)?.error;
      } catch {
        // not JSON
      }
      dbReady = true;
      createRefused = res.ok && stmtError === undefined ? undefined : `HTTP ${res.status}: ${stmtError ?? serverMessage(body)}`;
    };

    return {
      async write(batch) {
        if (!guard(batch)) return;
        const body = lines(batch).join('\n') + '\n';
        await ensureDatabase();
        let res: Response;
        try {
          res = await fetch(writeUrl, { method: 'POST', body, headers: { ...headers, 'content-type': 'text/plain; charset=utf-8' }, signal: AbortSignal.timeout(cfg.timeoutMs) });
        } catch (e) {
          throw new Error(`${where}: write of ${points(batch.length)} failed: ${networkMessage(e, cfg.timeoutMs)}`, { cause: e });
        }
        if (res.status === 204) {
          await res.body?.cancel().catch(() => {});
          return;
        }
        const msg = serverMessage(await res.text().catch(() => ''));
        if (/database not found/i.test(msg)) dbReady = false;
        const hint = res.status === 404 && createRefused !== undefined ? ` (CREATE DATABASE was refused: ${createRefused})` : '';
        throw new Error(`${where}: write of ${points(batch.length)} refused: HTTP ${res.status} ${res.statusText}: ${msg}${hint}`);
      },
      async close() {
        closed = true;
      },
      describe: () => `influx v1 ${base} database=${db}${cfg.retentionPolicy ? ` rp=${cfg.retentionPolicy}` : ''} measurement=${cfg.measurement}`,
    };
  }

  const org = cfg.org!;
  const bucket = cfg.bucket!;
  const where = `influx v2 ${base} (org ${org}, bucket ${bucket})`;
  return {
    async write(batch) {
      if (!guard(batch)) return;
      const ls = lines(batch);
      // A WriteApi per batch, with everything of its own off — the Follower is the only one that
      // buffers and retries (checked in @influxdata/influxdb-client 1.35, WriteApiImpl.ts):
      //  - batchSize above the batch and maxBatchBytes unbounded: otherwise writeRecords() itself
      //    starts a send whose failure is only logged, and flush() would resolve over lost points;
      //  - maxRetries 0 and a writeFailed that returns the rejection: a failed send never goes to
      //    the client's RetryBuffer (which would send it again behind the Follower's back), and
      //    nothing is logged to the console. flush() empties the write buffer before sending, so a
      //    failed batch is not kept either: flush() rejects, the Follower sends it again.
      //  - flushInterval 0: no timer.
      //  - the abort signal bounds the whole request (the client's own `timeout` is a socket idle
      //    timeout that leaves the request open).
      const signal = AbortSignal.timeout(cfg.timeoutMs);
      const client = new InfluxDB({ url: base, ...(cfg.token ? { token: cfg.token } : {}), timeout: cfg.timeoutMs, transportOptions: { signal } });
      const api: WriteApi = client.getWriteApi(org, bucket, 'ns', {
        batchSize: ls.length + 1,
        maxBatchBytes: Number.POSITIVE_INFINITY,
        flushInterval: 0,
        maxRetries: 0,
        maxBufferLines: ls.length + 1,
        writeFailed: (e: Error) => Promise.reject(e),
      });
      try {
        api.writeRecords(ls);
        await api.flush();
      } catch (e) {
        const err = e as { statusCode?: number; statusMessage?: string; body?: string; json?: { message?: string } };
        if (typeof err?.statusCode === 'number') {
          const msg = serverMessage(err.body ?? err.json?.message ?? '');
          const hint = err.statusCode === 404 ? ' (no /api/v2/write here: InfluxDB before 1.8? use api: v1 with a database)' : '';
          throw new Error(`${where}: write of ${points(batch.length)} refused: HTTP ${err.statusCode} ${err.statusMessage ?? ''}: ${msg}${hint}`.replace(/  +/g, ' '), { cause: e });
        }
        throw new Error(`${where}: write of ${points(batch.length)} failed: ${signal.aborted ? `no answer within ${cfg.timeoutMs} ms (timeoutMs)` : networkMessage(e, cfg.timeoutMs)}`, { cause: e });
      } finally {
        api.dispose();
      }
    },
    async close() {
      closed = true;
    },
    describe: () => `influx v2 ${base} org=${org} bucket=${bucket} measurement=${cfg.measurement}`,
  };
}

// ── mirror ────────────────────────────────────────────────────────────────────────────────────

export interface InfluxMirrorOptions {
  /** The broker's data directory (the cursor is DATA/state/followers/influx.json). */
  dataDir: string;
  ledger: Ledger;
  cfg: InfluxConfig;
  /** The broker's node id (the `node` tag). */
  nodeId: string;
  /** Told about each failed attempt of a batch (attempt counts from 1); the error's message says target, status and the server's words. */
  onError?: (e: unknown, attempt: number) => void;
  /** First retry delay, ms. Default the Follower's (500). */
  backoffMinMs?: number;
}

export interface InfluxMirror {
  follower: Follower;
  sink: InfluxSink;
  /** Stops after the batch in hand (its cursor saved if it completed). */
  stop(): Promise<void>;
}

/** Starts mirroring from the saved cursor (record 0 the first time). Throws only if the cursor file is damaged. */
export function startInfluxMirror(o: InfluxMirrorOptions): InfluxMirror {
  const sink = createInfluxSink(o.cfg, o.nodeId);
  const fo: FollowerOptions = {
    name: INFLUX_FOLLOWER_NAME,
    dataDir: o.dataDir,
    ledger: o.ledger,
    handle: (batch) => sink.write(batch),
    batchMax: o.cfg.batchSize,
    backoffMaxMs: o.cfg.backoffMaxMs,
    ...(o.backoffMinMs !== undefined ? { backoffMinMs: o.backoffMinMs } : {}),
    ...(o.onError ? { onError: o.onError } : {}),
  };
  const follower = new Follower(fo);
  follower.start();
  let stopping: Promise<void> | undefined;
  return {
    follower,
    sink,
    stop: () =>
      (stopping ??= (async () => {
        await follower.stop();
        await sink.close();
      })()),
  };
}
