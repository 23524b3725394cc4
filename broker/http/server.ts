/**
 * The broker's HTTP API (docs/HTTP-API.md): records, the live stream, checkpoints and proofs,
 * ledger health and verification, counters, devices, alerts, Prometheus metrics, and the
 * dashboard page. node:http, no framework.
 *
 * - Bearer tokens (broker/http/auth.ts), roles auditor ⊂ operator ⊂ admin. No token → 401 with
 *   `WWW-Authenticate: Bearer`; a token of too low a role → 403.
 * - Every request except `GET /healthz` becomes an `api` record in the ledger (method, route,
 *   path with secrets removed, status, token name, role, remote address, duration), written when
 *   the response ends — for the stream, when it starts.
 * - Errors are JSON `{error, code, hint}`; bad input is a 4xx naming the parameter and what to
 *   do; request bodies are limited to 64 KiB; nothing a client sends can stop the server.
 */
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import type { Aedes } from 'aedes';
import { WitnessError, isWitnessError } from '../../shared/errors.js';
import { writeFileAtomic } from '../../shared/atomic-file.js';
import { LedgerTail } from '../../shared/ledger/tail.js';
import { LedgerReader } from '../../shared/ledger/reader.js';
import type { Ledger } from '../../shared/ledger/writer.js';
import { verifyLedger } from '../../shared/ledger/verifier.js';
import { parseVerifierKey } from '../../shared/keys/key-id.js';
import { dataDirPaths, readManifest } from '../data-dir.js';
import { EVENTS } from '../records.js';
import type { WitnessPlugin } from '../plugin.js';
import { DeviceRegistry, type EditResult } from '../identity/registry.js';
import { filterFrom, matches, type RecordFilter } from '../query.js';
import { makeConsistencyProof, makeInclusionProof, type ProofNames } from '../cli/ledger-commands.js';
import type { FollowerStatus } from '../followers/follower.js';
import { startStats, type Stats } from '../followers/stats.js';
import { authenticateToken, roleAllows, type HttpRole, type HttpToken } from './auth.js';
import { Exposition, METRICS_CONTENT_TYPE } from './metrics.js';
import { StreamHub } from './stream.js';

export interface HttpApiOptions {
  /** Interface to bind (127.0.0.1 unless configured otherwise). */
  host: string;
  /** TCP port; 0 picks a free one. */
  port: number;
  /** The broker's data directory (ledger, registry, state). */
  dataDir: string;
  /** The running broker (startBroker's result), or its parts. */
  broker: { ledger: Ledger; plugin: WitnessPlugin; aedes?: Aedes; nodeId: string };
  tokens: readonly HttpToken[];
  /** Serve /metrics without a token. */
  metricsWithoutToken: boolean;
  /** The alerts raised so far, newest first (the alert engine's). */
  alerts?: () => unknown[];
  /** Status of the broker's other followers (InfluxDB mirror, alerts). */
  followers?: () => FollowerStatus[];
  /** The `stats` follower; default: started here, and stopped by close(). */
  stats?: Stats;
  /** The Witness version (package.json), shown in /api/v1/ledger and /metrics. */
  version: string;
  /** The dashboard page (served at `/`, no token: it holds no data and asks for one). */
  dashboardHtml?: () => string;
  /** Stream tuning (tests). */
  stream?: { heartbeatMs?: number; maxBufferedBytes?: number; maxClients?: number; idleStopMs?: number };
  /** Worker threads of /api/v1/verify (see VerifyOptions.workers). */
  verifyWorkers?: number;
}

export interface HttpApi {
  /** `http://HOST:PORT` as bound. */
  url: string;
  port: number;
  stats: Stats;
  close(): Promise<void>;
}

export const HTTP_LIMITS = {
  /** Largest request body, bytes. */
  maxBodyBytes: 64 * 1024,
  /** Records returned by one /api/v1/records request, default and at most. */
  recordsDefault: 100,
  recordsMax: 10_000,
  /** Records one /api/v1/records request reads at most before answering with `next`. */
  recordsScan: 200_000,
  /** Longest path kept in an `api` record. */
  pathChars: 512,
} as const;

export interface LastVerification {
  /** When it finished, ISO 8601. */
  at: string;
  startedAt: string;
  ok: boolean;
  /** Records checked. */
  records: number;
  valid: number;
  checkpoints: number;
  failureCount: number;
  firstBadIndex?: number;
  firstFailure?: { code: string; message: string };
  ms: number;
}

const VERIFICATION_FILE = 'last-verification.json';

/** Error codes of the HTTP layer (responses only: not WitnessError codes). */
const HTTP_ERRORS = {
  WITNESS_HTTP_UNAUTHORIZED: 'send `Authorization: Bearer TOKEN` (make a token with `witness token create --name N --role R` and put its sha256 under http.tokens)',
  WITNESS_HTTP_FORBIDDEN: 'use a token whose role allows this route (auditor ⊂ operator ⊂ admin; see docs/HTTP-API.md)',
  WITNESS_HTTP_BAD_REQUEST: 'fix the parameter named in the message (docs/HTTP-API.md lists each route\'s parameters)',
  WITNESS_HTTP_BAD_JSON: 'send a JSON object body with Content-Type: application/json',
  WITNESS_HTTP_BODY_TOO_LARGE: 'request bodies are limited to 64 KiB',
  WITNESS_HTTP_NOT_FOUND: 'see docs/HTTP-API.md for the routes (all under /api/v1/, plus /metrics, /healthz and /)',
  WITNESS_HTTP_METHOD_NOT_ALLOWED: 'use the method named in the Allow header',
  WITNESS_HTTP_NO_CHECKPOINT: 'wait for the first checkpoint (the ledger makes one every checkpointEveryMs / checkpointEveryRecords)',
  WITNESS_HTTP_BUSY: 'a verification is already running: wait for it (GET /api/v1/ledger shows lastVerification), then retry',
  WITNESS_HTTP_TOO_MANY_STREAMS: 'too many live streams are open; close one, or retry later',
  WITNESS_HTTP_INTERNAL: 'this is a bug: the broker keeps running; please report it with the broker\'s log',
} as const;
type HttpErrorCode = keyof typeof HTTP_ERRORS;

class HttpError extends Error {
  constructor(
    readonly status: number,
    readonly code: HttpErrorCode | string,
    message: string,
    readonly hint: string = HTTP_ERRORS[code as HttpErrorCode] ?? '',
    readonly details?: Record<string, unknown>,
    readonly headers: Record<string, string> = {},
  ) {
    super(message);
  }
}

const bad = (message: string, details?: Record<string, unknown>): HttpError => new HttpError(400, 'WITNESS_HTTP_BAD_REQUEST', message, undefined, details);

interface Ctx {
  req: IncomingMessage;
  res: ServerResponse;
  url: URL;
  params: Record<string, string>;
  token: { name: string; role: HttpRole } | undefined;
  /** Fields added to the request's `api` record (what a change changed). */
  extra: Record<string, unknown>;
  /** Set when the request's record was already written (the stream records at connect). */
  recorded: boolean;
}

interface Route {
  method: 'GET' | 'POST';
  /** Pattern: `/api/v1/devices/{id}/revoke`. Also the `route` of the api record and of the metrics. */
  path: string;
  /** Role needed; null: none. */
  role: HttpRole | null;
  /** Written to the ledger as an `api` record. Default true. */
  record?: boolean;
  handler: (ctx: Ctx) => Promise<void> | void;
}

export async function startHttpApi(o: HttpApiOptions): Promise<HttpApi> {
  const paths = dataDirPaths(o.dataDir);
  const { ledger, plugin } = o.broker;
  const ownStats = o.stats === undefined;
  const stats = o.stats ?? startStats({ dataDir: paths.root, ledger });
  const hub = new StreamHub({ dataDir: paths.root, ledger, ...o.stream });
  const requestCounts = new Map<string, number>();
  const verificationPath = join(paths.root, 'state', VERIFICATION_FILE);
  let lastVerification = loadVerification(verificationPath);
  let verifying: { startedAt: string; done: Promise<LastVerification> } | undefined;

  const followerStatuses = (): FollowerStatus[] => {
    const out = [stats.status(), ...(o.followers?.() ?? [])];
    const s = hub.status();
    if (s) out.push(s);
    return out;
  };
  const registeredDevices = (): ReturnType<DeviceRegistry['list']> => {
    try {
      return DeviceRegistry.load(paths.root).list();
    } catch {
      return [];
    }
  };
  const connectedClients = (): number => (o.broker.aedes as unknown as { connectedClients?: number } | undefined)?.connectedClients ?? stats.snapshot().connected;

  // ── handlers ───────────────────────────────────────────────────────────────────────────────

  const dashboard = (ctx: Ctx): void => {
    const html = o.dashboardHtml?.() ?? '<!doctype html><meta charset="utf-8"><title>Witness</title><p>The Witness HTTP API is running; see docs/HTTP-API.md.</p>\n';
    send(ctx.res, 200, html, 'text/html; charset=utf-8', { 'X-Frame-Options': 'DENY', 'Referrer-Policy': 'no-referrer' });
  };

  const records = async (ctx: Ctx): Promise<void> => {
    const q = query(ctx.url, ['client', 'topic', 'type', 'verdict', 'since', 'until', 'from', 'limit']);
    const filter = parseFilter(q);
    const limit = q.limit === undefined ? HTTP_LIMITS.recordsDefault : intParam('limit', q.limit, 1, HTTP_LIMITS.recordsMax);
    const from = q.from === undefined ? 0 : intParam('from', q.from, 0);
    const end = ledger.durableSize;
    const out: unknown[] = [];
    let next: number | null = null;
    if (from < end) {
      let tail: LedgerTail;
      try {
        tail = await LedgerTail.open(paths.ledger, from);
      } catch (e) {
        if (isWitnessError(e, 'WITNESS_ERR_LEDGER_NOT_FOUND')) throw bad(`from=${from}: that record is no longer in the ledger (pruned)`, { from });
        throw e;
      }
      try {
        let scanned = 0;
        let pos = from;
        while (pos < end) {
          if (scanned >= HTTP_LIMITS.recordsScan) {
            next = pos;
            break;
          }
          const lines = await tail.read(Math.min(1000, HTTP_LIMITS.recordsScan - scanned), end);
          if (lines.length === 0) break;
          for (const l of lines) {
            pos = l.index + 1;
            scanned++;
            const rec = JSON.parse(l.line) as Record<string, unknown>;
            if (!matches(rec, filter)) continue;
            out.push(rec);
            if (out.length >= limit) break;
          }
          if (out.length >= limit) {
            next = pos < end ? pos : null;
            break;
          }
        }
      } finally {
        await tail.close().catch(() => {});
      }
    }
    json(ctx.res, 200, { records: out, next });
  };

  const stream = (ctx: Ctx): void => {
    const q = query(ctx.url, ['client', 'topic', 'type', 'verdict', 'since', 'until', 'from']);
    const filter = parseFilter(q);
    let from: number | undefined;
    const lastId = ctx.req.headers['last-event-id'];
    if (typeof lastId === 'string' && lastId.trim() !== '') {
      if (!/^(0|[1-9]\d*)$/.test(lastId.trim()) || !Number.isSafeInteger(Number(lastId.trim()))) {
        throw bad(`header Last-Event-ID ${JSON.stringify(lastId.slice(0, 40))}: expected the index of the last record received (a non-negative integer)`);
      }
      from = Number(lastId.trim()) + 1;
    } else if (q.from !== undefined) {
      from = intParam('from', q.from, 0);
    }
    if (hub.full) throw new HttpError(503, 'WITNESS_HTTP_TOO_MANY_STREAMS', `${hub.clients} streams are open, the most this broker serves`, undefined, undefined, { 'Retry-After': '10' });
    hub.open(ctx.req, ctx.res, filter, from);
    record(ctx, 200);
  };

  const checkpoint = (ctx: Ctx): void => {
    query(ctx.url, []);
    const cp = ledger.lastCheckpoint;
    if (!cp) throw new HttpError(404, 'WITNESS_HTTP_NO_CHECKPOINT', 'the ledger has no checkpoint yet');
    json(ctx.res, 200, { size: cp.size, rootHash: Buffer.from(cp.rootHash).toString('base64'), time: cp.time, epoch: cp.epoch, note: cp.note });
  };

  const PROOF_NAMES: ProofNames = { who: 'proof', index: 'index', size: 'size', old: 'old', new: 'new' };
  const withReader = async <T>(fn: (r: LedgerReader) => Promise<T>): Promise<T> => {
    const reader = LedgerReader.open(paths.ledger);
    try {
      return await fn(reader);
    } finally {
      reader.close();
    }
  };

  const inclusion = async (ctx: Ctx): Promise<void> => {
    const q = query(ctx.url, ['index', 'size'], ['index']);
    const index = intParam('index', q.index!, 0);
    const size = q.size === undefined ? undefined : intParam('size', q.size, 1);
    json(ctx.res, 200, await withReader((r) => makeInclusionProof(r, index, size, PROOF_NAMES)));
  };

  const consistency = async (ctx: Ctx): Promise<void> => {
    const q = query(ctx.url, ['old', 'new'], ['old', 'new']);
    const size1 = intParam('old', q.old!, 0);
    const size2 = intParam('new', q.new!, 0);
    json(ctx.res, 200, await withReader((r) => makeConsistencyProof(r, size1, size2, PROOF_NAMES)));
  };

  const ledgerInfo = (ctx: Ctx): void => {
    query(ctx.url, []);
    const cp = ledger.lastCheckpoint;
    json(ctx.res, 200, {
      nodeId: o.broker.nodeId,
      version: o.version,
      size: ledger.size,
      durableSize: ledger.durableSize,
      nextIndex: ledger.nextIndex,
      lastCheckpoint: cp ? { size: cp.size, rootHash: Buffer.from(cp.rootHash).toString('base64'), time: cp.time, epoch: cp.epoch } : null,
      followers: followerStatuses(),
      lastVerification,
      verification: verifying ? { running: true, startedAt: verifying.startedAt } : { running: false },
    });
  };

  const runVerification = (): { startedAt: string; done: Promise<LastVerification> } => {
    const startedAt = new Date().toISOString();
    const t0 = performance.now();
    const done = (async (): Promise<LastVerification> => {
      const k = parseVerifierKey(readManifest(paths.root).verifierKey);
      const report = await verifyLedger(paths.ledger, { key: { name: k.name, publicKey: k.publicKey }, upTo: o.broker.ledger.durableSize, ...(o.verifyWorkers !== undefined ? { workers: o.verifyWorkers } : {}) });
      const firstBad = report.failures.find((f) => f.index !== undefined);
      const first = report.failures[0];
      const v: LastVerification = {
        at: new Date().toISOString(),
        startedAt,
        ok: report.ok,
        records: report.records.total,
        valid: report.records.valid,
        checkpoints: report.checkpoints.total,
        failureCount: report.failureCount,
        ...(firstBad?.index !== undefined ? { firstBadIndex: firstBad.index } : {}),
        ...(first ? { firstFailure: { code: first.code, message: first.message } } : {}),
        ms: Math.round(performance.now() - t0),
      };
      lastVerification = v;
      try {
        mkdirSync(join(verificationPath, '..'), { recursive: true });
        writeFileAtomic(verificationPath, JSON.stringify(v) + '\n');
      } catch {
        // shown from memory until the next start
      }
      return v;
    })();
    const job = { startedAt, done };
    done.then(
      () => {
        if (verifying === job) verifying = undefined;
      },
      () => {
        if (verifying === job) verifying = undefined;
      },
    );
    return job;
  };

  const verify = async (ctx: Ctx): Promise<void> => {
    const q = query(ctx.url, ['wait']);
    const wait = q.wait === undefined ? false : boolParam('wait', q.wait);
    if (verifying) throw new HttpError(409, 'WITNESS_HTTP_BUSY', `a verification started at ${verifying.startedAt} is still running`);
    verifying = runVerification();
    if (!wait) {
      verifying.done.catch(() => {});
      json(ctx.res, 202, { running: true, startedAt: verifying.startedAt });
      return;
    }
    json(ctx.res, 200, await verifying.done);
  };

  const statsRoute = (ctx: Ctx): void => {
    query(ctx.url, []);
    const s = stats.snapshot();
    json(ctx.res, 200, {
      records: s.records,
      events: s.events,
      verdicts: s.verdicts,
      acl: s.acl,
      connected: connectedClients(),
      devices: registeredDevices().length,
      alerts: s.alerts,
      lastRecordTime: s.lastRecordTime,
    });
  };

  const devicesList = (ctx: Ctx): void => {
    query(ctx.url, []);
    const seen = new Set<string>();
    const out: unknown[] = [];
    const view = (id: string, keys: Array<{ hash: string; status: string; addedAt: string; revokedAt?: string }>, registered: boolean): unknown => {
      const d = stats.device(id);
      return {
        id,
        registered,
        keys,
        lastSeen: d?.lastSeen ?? null,
        lastSeq: d?.lastSeq ?? null,
        lastVerdict: d?.lastVerdict ?? null,
        skewMs: d?.skewMs ?? null,
        late: d?.late ?? null,
        verdicts: d?.verdicts ?? {},
        publishes: d?.publishes ?? 0,
        connected: d?.connected ?? false,
      };
    };
    for (const dev of registeredDevices()) {
      seen.add(dev.id);
      out.push(view(dev.id, dev.keys.map((k) => ({ hash: k.keyHash, status: k.status, addedAt: k.addedAt, ...(k.revokedAt !== undefined ? { revokedAt: k.revokedAt } : {}) })), true));
    }
    // Devices the ledger saw that the registry does not hold (unknown keys, removed devices).
    for (const d of stats.devices()) if (!seen.has(d.id)) out.push(view(d.id, [], false));
    json(ctx.res, 200, { devices: out });
  };

  const edit = (ctx: Ctx, fn: (r: DeviceRegistry) => EditResult): void => {
    const result = DeviceRegistry.edit(paths.root, fn);
    ctx.extra = {
      ...ctx.extra,
      changes: result.changes.map((c) => ({ kind: c.kind, deviceId: c.deviceId, ...('keyHash' in c ? { keyHash: c.keyHash } : {}) })),
      revision: result.revision,
    };
    json(ctx.res, 200, { changed: result.changes.length > 0, message: result.message, changes: result.changes, revision: result.revision });
  };

  const devicesAdd = async (ctx: Ctx): Promise<void> => {
    query(ctx.url, []);
    const body = await readJson(ctx.req, ['id', 'publicKey'], ['id', 'publicKey']);
    const id = stringField(body, 'id');
    const publicKey = stringField(body, 'publicKey');
    ctx.extra = { deviceId: id };
    edit(ctx, (r) => r.add(id, publicKey));
  };

  const devicesRevoke = async (ctx: Ctx): Promise<void> => {
    query(ctx.url, []);
    const body = await readJson(ctx.req, ['keyHash'], [], true);
    const keyHash = body.keyHash === undefined ? undefined : stringField(body, 'keyHash');
    const id = ctx.params.id!;
    ctx.extra = { deviceId: id };
    edit(ctx, (r) => r.revoke(id, keyHash));
  };

  const alertsRoute = (ctx: Ctx): void => {
    const q = query(ctx.url, ['limit']);
    const limit = q.limit === undefined ? 100 : intParam('limit', q.limit, 1, 10_000);
    let list = [...(o.alerts?.() ?? [])];
    if (list.every((a) => typeof (a as { at?: unknown })?.at === 'number')) list.sort((a, b) => (b as { at: number }).at - (a as { at: number }).at);
    list = list.slice(0, limit);
    json(ctx.res, 200, { alerts: list });
  };

  const metrics = (ctx: Ctx): void => {
    query(ctx.url, []);
    const s = stats.snapshot();
    const cp = ledger.lastCheckpoint;
    const fs = followerStatuses();
    const cpu = process.cpuUsage();
    const x = new Exposition();
    x.family('witness_build_info', 'gauge', 'Witness version of this broker (value 1).', [[{ version: o.version, node: o.broker.nodeId }, 1]]);
    x.family('witness_records_total', 'counter', 'Ledger records by event type, as counted by the stats follower.', sorted(s.events).map(([event, n]) => [{ event }, n]));
    x.family('witness_publish_total', 'counter', 'Publish records by envelope verdict.', sorted(s.verdicts).map(([verdict, n]) => [{ verdict }, n]));
    x.family('witness_acl_total', 'counter', 'Publish and subscribe records by access-control decision.', [
      [{ decision: 'allow' }, s.acl.allow],
      [{ decision: 'deny' }, s.acl.deny],
    ]);
    x.family('witness_ledger_records', 'gauge', 'Records in the ledger (written).', [[undefined, ledger.size]]);
    x.family('witness_ledger_durable_records', 'gauge', 'Records in the ledger that are durable (fsync policy).', [[undefined, ledger.durableSize]]);
    x.family('witness_checkpoint_size', 'gauge', 'Tree size of the latest signed checkpoint (0: none yet).', [[undefined, cp?.size ?? 0]]);
    x.family('witness_checkpoint_age_seconds', 'gauge', 'Seconds since the latest signed checkpoint (absent: none yet).', cp ? [[undefined, Math.max(0, (Date.now() - cp.time) / 1000)]] : []);
    x.family('witness_clients_connected', 'gauge', 'MQTT clients connected now.', [[undefined, connectedClients()]]);
    x.family('witness_devices_registered', 'gauge', 'Devices in the device registry.', [[undefined, registeredDevices().length]]);
    x.family('witness_follower_lag_records', 'gauge', 'Durable records a ledger follower has not handled yet.', fs.map((f) => [{ follower: f.name }, f.lag]));
    x.family('witness_follower_failures', 'gauge', 'Failed attempts of the batch a ledger follower is retrying (0: healthy).', fs.map((f) => [{ follower: f.name }, f.failures]));
    x.family('witness_alerts_total', 'counter', 'Alert records in the ledger.', [[undefined, s.alerts]]);
    x.family('witness_http_requests_total', 'counter', 'HTTP API requests since the broker started, by route and status.', [...requestCounts].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)).map(([k, n]) => {
      const [route, status] = k.split('\0') as [string, string];
      return [{ route, status }, n];
    }));
    x.family('witness_stream_clients', 'gauge', 'Live record streams (SSE) open now.', [[undefined, hub.clients]]);
    x.family('process_resident_memory_bytes', 'gauge', 'Resident memory size in bytes.', [[undefined, process.memoryUsage.rss()]]);
    x.family('process_cpu_seconds_total', 'counter', 'Total user and system CPU time spent in seconds.', [[undefined, (cpu.user + cpu.system) / 1e6]]);
    send(ctx.res, 200, x.text(), METRICS_CONTENT_TYPE);
  };

  const ROUTES: Route[] = [
    { method: 'GET', path: '/', role: null, handler: dashboard },
    { method: 'GET', path: '/healthz', role: null, record: false, handler: (ctx) => send(ctx.res, 200, 'ok\n', 'text/plain; charset=utf-8') },
    { method: 'GET', path: '/api/v1/records', role: 'auditor', handler: records },
    { method: 'GET', path: '/api/v1/stream', role: 'auditor', handler: stream },
    { method: 'GET', path: '/api/v1/checkpoint', role: 'auditor', handler: checkpoint },
    { method: 'GET', path: '/api/v1/proof/inclusion', role: 'auditor', handler: inclusion },
    { method: 'GET', path: '/api/v1/proof/consistency', role: 'auditor', handler: consistency },
    { method: 'GET', path: '/api/v1/ledger', role: 'auditor', handler: ledgerInfo },
    { method: 'POST', path: '/api/v1/verify', role: 'operator', handler: verify },
    { method: 'GET', path: '/api/v1/stats', role: 'auditor', handler: statsRoute },
    { method: 'GET', path: '/api/v1/devices', role: 'operator', handler: devicesList },
    { method: 'POST', path: '/api/v1/devices', role: 'admin', handler: devicesAdd },
    { method: 'POST', path: '/api/v1/devices/{id}/revoke', role: 'admin', handler: devicesRevoke },
    { method: 'GET', path: '/api/v1/alerts', role: 'operator', handler: alertsRoute },
    { method: 'GET', path: '/metrics', role: o.metricsWithoutToken ? null : 'auditor', handler: metrics },
  ];

  // ── the request pipeline ─────────────────────────────────────────────────────────────────

  const record = (ctx: Ctx, status: number, ms?: number): void => {
    if (ctx.recorded) return;
    ctx.recorded = true;
    const fields: Record<string, unknown> = {
      id: ctx.token ? `token:${ctx.token.name}` : 'anonymous',
      a: remoteAddress(ctx.req),
      method: ctx.req.method ?? '?',
      route: (ctx as Ctx & { route?: string }).route ?? '(unmatched)',
      path: safePath(ctx.url),
      status,
      token: ctx.token?.name ?? null,
      role: ctx.token?.role ?? null,
      ms: Math.round((ms ?? performance.now() - (ctx as Ctx & { t0: number }).t0) * 10) / 10,
      ...ctx.extra,
    };
    plugin.record(EVENTS.api, fields).catch(() => {
      // the ledger is closing or failing: the broker reports that itself
    });
  };

  const handle = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    const t0 = performance.now();
    let url: URL;
    try {
      url = new URL(req.url ?? '/', 'http://localhost');
    } catch {
      url = new URL('http://localhost/');
    }
    const ctx: Ctx & { t0: number; route?: string } = { req, res, url, params: {}, token: undefined, extra: {}, recorded: false, t0 };
    let shouldRecord = true;
    res.once('close', () => {
      const route = ctx.route ?? '(unmatched)';
      const key = `${route}\0${res.statusCode}`;
      if (requestCounts.has(key) || requestCounts.size < 1000) requestCounts.set(key, (requestCounts.get(key) ?? 0) + 1);
      if (shouldRecord) record(ctx, res.writableFinished ? res.statusCode : res.headersSent ? res.statusCode : 499);
    });
    try {
      const found = match(ROUTES, req.method ?? '', url.pathname);
      if (found.kind === 'none') throw new HttpError(404, 'WITNESS_HTTP_NOT_FOUND', `no route ${url.pathname.slice(0, 200)}`);
      if (found.kind === 'method') {
        throw new HttpError(405, 'WITNESS_HTTP_METHOD_NOT_ALLOWED', `${req.method} is not allowed on ${found.route.path}; use ${found.allow.join(', ')}`, undefined, undefined, { Allow: found.allow.join(', ') });
      }
      const route = found.route;
      ctx.route = route.path;
      ctx.params = found.params;
      if (route.record === false) shouldRecord = false;
      const auth = authenticateToken(req.headers.authorization, url.searchParams.get('access_token') ?? undefined, o.tokens);
      if (auth.ok) ctx.token = { name: auth.name, role: auth.role };
      if (route.role !== null) {
        if (!auth.ok) {
          const why = auth.reason === 'missing' ? 'this route needs a bearer token' : auth.reason === 'malformed' ? 'the Authorization header is not `Bearer TOKEN`' : 'the token is not one of the configured tokens';
          throw new HttpError(401, 'WITNESS_HTTP_UNAUTHORIZED', why, undefined, { needs: route.role }, {
            'WWW-Authenticate': auth.reason === 'missing' ? 'Bearer realm="witness"' : 'Bearer realm="witness", error="invalid_token"',
          });
        }
        if (!roleAllows(auth.role, route.role)) {
          throw new HttpError(403, 'WITNESS_HTTP_FORBIDDEN', `${route.method} ${route.path} needs role ${route.role}; token ${auth.name} has role ${auth.role}`, undefined, { needs: route.role, has: auth.role });
        }
      }
      await route.handler(ctx);
    } catch (e) {
      sendError(res, e);
    }
  };

  const server = createServer({ maxHeaderSize: 16 * 1024 }, (req, res) => {
    handle(req, res).catch((e: unknown) => sendError(res, e));
  });
  server.headersTimeout = 10_000;
  server.requestTimeout = 30_000;
  server.on('clientError', (_e, socket) => {
    // Unparseable requests: answer 400 when possible, never throw.
    try {
      if (socket.writable) socket.end('HTTP/1.1 400 Bad Request\r\nConnection: close\r\nContent-Length: 0\r\n\r\n');
      else socket.destroy();
    } catch {
      socket.destroy();
    }
  });

  try {
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(o.port, o.host, () => {
        server.removeListener('error', reject);
        resolve();
      });
    });
  } catch (e) {
    await hub.close();
    if (ownStats) await stats.stop();
    const err = e as NodeJS.ErrnoException;
    throw new WitnessError('WITNESS_ERR_IO', `HTTP API: cannot listen on ${o.host}:${o.port}: ${err.message}${err.code === 'EADDRINUSE' ? ' (another process uses that port: pick another with --http-port)' : ''}`, { cause: e });
  }
  const a = server.address() as AddressInfo;
  const host = a.family === 'IPv6' ? `[${a.address}]` : a.address;
  let closing: Promise<void> | undefined;
  return {
    url: `http://${host}:${a.port}`,
    port: a.port,
    stats,
    close() {
      closing ??= (async () => {
        const closed = new Promise<void>((r) => server.close(() => r()));
        await hub.close();
        server.closeAllConnections();
        await closed;
        if (ownStats) await stats.stop();
      })();
      return closing;
    },
  };
}

// ── helpers ──────────────────────────────────────────────────────────────────────────────────

type Match = { kind: 'ok'; route: Route; params: Record<string, string> } | { kind: 'method'; route: Route; allow: string[] } | { kind: 'none' };

function match(routes: readonly Route[], method: string, pathname: string): Match {
  const parts = pathname.split('/');
  const samePath: Route[] = [];
  for (const r of routes) {
    const want = r.path.split('/');
    if (want.length !== parts.length) continue;
    const params: Record<string, string> = {};
    let ok = true;
    for (let k = 0; k < want.length && ok; k++) {
      const w = want[k]!;
      if (w.startsWith('{')) {
        let v: string;
        try {
          v = decodeURIComponent(parts[k]!);
        } catch {
          ok = false;
          break;
        }
        if (v === '') ok = false;
        else params[w.slice(1, -1)] = v;
      } else if (w !== parts[k]) {
        ok = false;
      }
    }
    if (!ok) continue;
    if (r.method === method) return { kind: 'ok', route: r, params };
    samePath.push(r);
  }
  if (samePath.length === 0) return { kind: 'none' };
  return { kind: 'method', route: samePath[0]!, allow: [...new Set(samePath.map((r) => r.method))] };
}

/**
 * The query parameters, checked: only `allowed` (and `access_token`) may appear, each at most
 * once; `required` must be there.
 */
function query(url: URL, allowed: readonly string[], required: readonly string[] = []): Record<string, string | undefined> {
  const out: Record<string, string | undefined> = {};
  for (const [k, v] of url.searchParams) {
    if (k === 'access_token') continue;
    if (!allowed.includes(k)) {
      throw bad(`unknown query parameter ${JSON.stringify(k.slice(0, 60))} on ${url.pathname}; ${allowed.length ? `allowed: ${allowed.join(', ')}` : 'this route takes none'}`, { parameter: k.slice(0, 60), allowed });
    }
    if (out[k] !== undefined) throw bad(`query parameter ${k} given twice; give it once`, { parameter: k });
    out[k] = v;
  }
  for (const k of required) if (out[k] === undefined) throw bad(`missing query parameter ${k} on ${url.pathname}`, { parameter: k });
  return out;
}

function intParam(name: string, value: string, min: number, max = Number.MAX_SAFE_INTEGER): number {
  if (!/^(0|[1-9]\d*)$/.test(value) || !Number.isSafeInteger(Number(value))) {
    throw bad(`query parameter ${name}=${JSON.stringify(value.slice(0, 40))}: expected a non-negative integer`, { parameter: name });
  }
  const n = Number(value);
  if (n < min || n > max) throw bad(`query parameter ${name}=${n}: must be between ${min} and ${max}`, { parameter: name, min, max });
  return n;
}

function boolParam(name: string, value: string): boolean {
  if (value === 'true' || value === '1' || value === '') return true;
  if (value === 'false' || value === '0') return false;
  throw bad(`query parameter ${name}=${JSON.stringify(value.slice(0, 40))}: expected true or false`, { parameter: name });
}

/** The record filter of `witness query`, from query parameters (broker/query.ts). */
function parseFilter(q: Record<string, string | undefined>): RecordFilter {
  try {
    return filterFrom(q, (n) => `query parameter ${n}`);
  } catch (e) {
    if (isWitnessError(e, 'WITNESS_ERR_USAGE')) throw bad(e.message);
    throw e;
  }
}

/** Reads a JSON object body of at most 64 KiB with only `allowed` fields and the `required` ones. */
async function readJson(req: IncomingMessage, allowed: readonly string[], required: readonly string[], emptyOk = false): Promise<Record<string, unknown>> {
  const declared = Number(req.headers['content-length']);
  if (Number.isFinite(declared) && declared > HTTP_LIMITS.maxBodyBytes) {
    throw new HttpError(413, 'WITNESS_HTTP_BODY_TOO_LARGE', `request body of ${declared} bytes; at most ${HTTP_LIMITS.maxBodyBytes}`, undefined, { limit: HTTP_LIMITS.maxBodyBytes }, { Connection: 'close' });
  }
  const chunks: Buffer[] = [];
  let size = 0;
  await new Promise<void>((resolve, reject) => {
    const onData = (c: Buffer): void => {
      size += c.length;
      if (size > HTTP_LIMITS.maxBodyBytes) {
        req.off('data', onData);
        req.pause();
        reject(new HttpError(413, 'WITNESS_HTTP_BODY_TOO_LARGE', `request body over ${HTTP_LIMITS.maxBodyBytes} bytes`, undefined, { limit: HTTP_LIMITS.maxBodyBytes }, { Connection: 'close' }));
        return;
      }
      chunks.push(c);
    };
    req.on('data', onData);
    req.once('end', resolve);
    req.once('error', reject);
    req.once('aborted', () => reject(new HttpError(400, 'WITNESS_HTTP_BAD_REQUEST', 'request aborted')));
  });
  const text = Buffer.concat(chunks).toString('utf8');
  if (text.trim() === '') {
    if (emptyOk) return {};
    throw new HttpError(400, 'WITNESS_HTTP_BAD_JSON', `expected a JSON object body with ${required.join(', ')}`);
  }
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch (e) {
    throw new HttpError(400, 'WITNESS_HTTP_BAD_JSON', `request body is not JSON: ${(e as Error).message}`);
  }
  if (typeof v !== 'object' || v === null || Array.isArray(v)) throw new HttpError(400, 'WITNESS_HTTP_BAD_JSON', 'request body must be a JSON object');
  const body = v as Record<string, unknown>;
  for (const k of Object.keys(body)) {
    if (!allowed.includes(k)) throw new HttpError(400, 'WITNESS_HTTP_BAD_JSON', `unknown field ${JSON.stringify(k.slice(0, 60))} in the body; allowed: ${allowed.join(', ') || 'none'}`);
  }
  for (const k of required) if (body[k] === undefined) throw new HttpError(400, 'WITNESS_HTTP_BAD_JSON', `missing field ${k} in the body`);
  return body;
}

function stringField(body: Record<string, unknown>, name: string): string {
  const v = body[name];
  if (typeof v !== 'string' || v.length === 0 || v.length > 1024) throw new HttpError(400, 'WITNESS_HTTP_BAD_JSON', `field ${name} must be a non-empty string (at most 1024 characters)`);
  return v;
}

const COMMON_HEADERS = { 'Cache-Control': 'no-store', 'X-Content-Type-Options': 'nosniff' } as const;

function send(res: ServerResponse, status: number, body: string, type: string, headers: Record<string, string> = {}): void {
  if (res.headersSent) {
    res.end();
    return;
  }
  res.writeHead(status, { ...COMMON_HEADERS, 'Content-Type': type, 'Content-Length': Buffer.byteLength(body), ...headers });
  res.end(body);
}

function json(res: ServerResponse, status: number, value: unknown, headers: Record<string, string> = {}): void {
  send(res, status, JSON.stringify(value) + '\n', 'application/json; charset=utf-8', headers);
}

/** The status of a WitnessError raised by a handler (the message says what and where). */
function statusOf(e: WitnessError): number {
  switch (e.code) {
    case 'WITNESS_ERR_IO':
    case 'WITNESS_ERR_LEDGER_NOT_FOUND':
    case 'WITNESS_ERR_LEDGER_CLOSED':
      return 500;
    case 'WITNESS_ERR_REGISTRY_LOCKED':
    case 'WITNESS_ERR_REGISTRY_CONFLICT':
      return 409;
    default:
      return 400;
  }
}

function sendError(res: ServerResponse, e: unknown): void {
  let status: number;
  let body: Record<string, unknown>;
  let headers: Record<string, string> = {};
  if (e instanceof HttpError) {
    status = e.status;
    body = { error: e.message, code: e.code, hint: e.hint, ...(e.details ? { details: e.details } : {}) };
    headers = e.headers;
  } else if (isWitnessError(e, 'WITNESS_ERR_USAGE')) {
    // Bad input named in the message (the command line's hint would not fit).
    status = 400;
    body = { error: e.message, code: 'WITNESS_HTTP_BAD_REQUEST', hint: HTTP_ERRORS.WITNESS_HTTP_BAD_REQUEST, ...(Object.keys(e.details).length ? { details: e.details } : {}) };
  } else if (isWitnessError(e)) {
    status = statusOf(e);
    body = { error: e.message, code: e.code, hint: e.hint, ...(Object.keys(e.details).length ? { details: e.details } : {}) };
  } else {
    status = 500;
    body = { error: `internal error: ${(e as Error)?.message ?? String(e)}`, code: 'WITNESS_HTTP_INTERNAL', hint: HTTP_ERRORS.WITNESS_HTTP_INTERNAL };
  }
  if (res.headersSent) {
    // A stream already under way: end it.
    res.end();
    return;
  }
  try {
    json(res, status, body, headers);
  } catch {
    res.destroy();
  }
}

function remoteAddress(req: IncomingMessage): string {
  const s = req.socket;
  const ip = s.remoteAddress ?? '?';
  return ip.includes(':') ? `[${ip}]:${s.remotePort}` : `${ip}:${s.remotePort}`;
}

/** The request's path and query as recorded: the `access_token` parameter blanked, bounded in length. */
function safePath(url: URL): string {
  const sp = new URLSearchParams(url.search);
  if (sp.has('access_token')) sp.set('access_token', 'REDACTED');
  const q = sp.toString();
  const p = url.pathname + (q ? `?${q}` : '');
  return p.length > HTTP_LIMITS.pathChars ? p.slice(0, HTTP_LIMITS.pathChars) + '…' : p;
}

function sorted(m: Record<string, number>): Array<[string, number]> {
  return Object.entries(m).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
}

function loadVerification(path: string): LastVerification | null {
  try {
    const v = JSON.parse(readFileSync(path, 'utf8')) as LastVerification;
    return typeof v.ok === 'boolean' && typeof v.at === 'string' ? v : null;
  } catch {
    return null;
  }
}
