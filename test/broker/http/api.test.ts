/**
 * The HTTP API against a real broker (startBroker on a temporary data directory, MQTT on a free
 * port) and real clients (node's fetch, MQTT.js, a raw TCP socket): roles, record queries, the
 * live stream and its resumption, checkpoints and proofs checked by `witness verify-proof`,
 * device registry changes, Prometheus metrics against the ledger's own counts, the `api` record
 * of every access, malformed input, and the verify endpoint.
 */
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { connect as netConnect } from 'node:net';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import mqtt from 'mqtt';
import { readRecords, waitForRecords, type Rec } from '../../helpers/records.js';
import { startBroker, type RunningBroker } from '../../../broker/server.js';
import { buildSecurity } from '../../../broker/cli/broker-config.js';
import { defaultConfig } from '../../../broker/config/config.js';
import { startHttpApi, type HttpApi } from '../../../broker/http/server.js';
import { generateToken, hashToken, type HttpToken } from '../../../broker/http/auth.js';
import { verifyProofCommand } from '../../../broker/cli/ledger-commands.js';
import { readManifest } from '../../../broker/data-dir.js';
import { EVENTS } from '../../../broker/records.js';
import { generateSeed, publicKeyFromSeed } from '../../../shared/keys/ed25519.js';
import { formatPublicKey } from '../../../shared/keys/key-file.js';
import { parseVerifierKey } from '../../../shared/keys/key-id.js';
import { openCheckpoint } from '../../../shared/checkpoint/checkpoint.js';
import { ed25519NoteVerifier } from '../../../shared/checkpoint/note.js';
import { leafHash } from '../../../shared/merkle/hash.js';
import { verifyInclusion } from '../../../shared/merkle/verify.js';

type Role = 'auditor' | 'operator' | 'admin';

const SECRETS: Record<Role, string> = { auditor: generateToken(), operator: generateToken(), admin: generateToken() };
const TOKENS: HttpToken[] = (Object.keys(SECRETS) as Role[]).map((role) => ({ name: `${role}-1`, role, sha256: hashToken(SECRETS[role]) }));

let dataDir: string;
let broker: RunningBroker;
let api: HttpApi;
let mqttUrl: string;

const auth = (role: Role): Record<string, string> => ({ Authorization: `Bearer ${SECRETS[role]}` });

async function get(path: string, role?: Role, headers: Record<string, string> = {}): Promise<Response> {
  return fetch(api.url + path, { headers: { ...(role ? auth(role) : {}), ...headers } });
}

async function post(path: string, role: Role | undefined, body?: unknown, raw?: string): Promise<Response> {
  return fetch(api.url + path, {
    method: 'POST',
    headers: { ...(role ? auth(role) : {}), 'Content-Type': 'application/json' },
    ...(raw !== undefined ? { body: raw } : body !== undefined ? { body: JSON.stringify(body) } : {}),
  });
}

async function getJson<T = Record<string, unknown>>(path: string, role: Role): Promise<T> {
  const r = await get(path, role);
  const text = await r.text();
  assert.equal(r.status, 200, `${path}: ${text}`);
  return JSON.parse(text) as T;
}

async function expectError(r: Response, status: number, code?: string | RegExp): Promise<Record<string, unknown>> {
  const text = await r.text();
  assert.equal(r.status, status, text);
  assert.match(r.headers.get('content-type') ?? '', /^application\/json/);
  const body = JSON.parse(text) as Record<string, unknown>;
  assert.equal(typeof body.error, 'string');
  assert.equal(typeof body.code, 'string');
  assert.equal(typeof body.hint, 'string');
  if (typeof code === 'string') assert.equal(body.code, code);
  else if (code) assert.match(String(body.code), code);
  return body;
}

async function waitFor<T>(fn: () => Promise<T | undefined> | T | undefined, what: string, ms = 10_000): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = await fn();
    if (v !== undefined && v !== false) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

async function publish(clientId: string, topic: string, payload: string, qos: 0 | 1 = 1): Promise<void> {
  const c = await mqtt.connectAsync(mqttUrl, { clientId, reconnectPeriod: 0 });
  await c.publishAsync(topic, payload, { qos });
  await c.endAsync();
}

/** A Server-Sent Events client on fetch: collects events and comments. */
class Sse {
  readonly events: Array<{ id?: string; event?: string; data: string }> = [];
  readonly comments: string[] = [];
  status = 0;
  ended = false;
  #buf = '';
  readonly #ac = new AbortController();

  static async open(path: string, headers: Record<string, string>): Promise<Sse> {
    const s = new Sse();
    const res = await fetch(api.url + path, { headers, signal: s.#ac.signal });
    s.status = res.status;
    assert.equal(res.status, 200, await (res.status === 200 ? Promise.resolve('') : res.text()));
    assert.match(res.headers.get('content-type') ?? '', /^text\/event-stream/);
    void s.#pump(res.body!.getReader());
    return s;
  }

  async #pump(reader: ReadableStreamDefaultReader<Uint8Array>): Promise<void> {
    const dec = new TextDecoder();
    try {
      for (;;) {
        const { done, value } = await reader.read();
        if (done) break;
        this.#buf += dec.decode(value, { stream: true });
        let k: number;
        while ((k = this.#buf.indexOf('\n\n')) >= 0) {
          const block = this.#buf.slice(0, k);
          this.#buf = this.#buf.slice(k + 2);
          const ev: { id?: string; event?: string; data: string } = { data: '' };
          let isEvent = false;
          for (const line of block.split('\n')) {
            if (line.startsWith(':')) this.comments.push(line.slice(1).trim());
            else if (line.startsWith('id: ')) ((ev.id = line.slice(4)), (isEvent = true));
            else if (line.startsWith('event: ')) ((ev.event = line.slice(7)), (isEvent = true));
            else if (line.startsWith('data: ')) ((ev.data += line.slice(6)), (isEvent = true));
          }
          if (isEvent) this.events.push(ev);
        }
      }
    } catch {
      // aborted
    }
    this.ended = true;
  }

  records(): Rec[] {
    return this.events.filter((e) => e.event === 'record').map((e) => JSON.parse(e.data) as Rec);
  }

  async waitFor(pred: (rs: Rec[]) => boolean, what: string, ms = 10_000): Promise<Rec[]> {
    return waitFor(() => (pred(this.records()) ? this.records() : undefined), what, ms);
  }

  close(): void {
    this.#ac.abort();
  }
}

/** A tiny Prometheus text-format (0.0.4) parser: fails on any line it does not understand. */
function parseMetrics(text: string): { types: Map<string, string>; samples: Array<{ name: string; labels: Record<string, string>; value: number }> } {
  const types = new Map<string, string>();
  const helps = new Set<string>();
  const samples: Array<{ name: string; labels: Record<string, string>; value: number }> = [];
  assert.ok(text.endsWith('\n'), 'ends with a newline');
  for (const line of text.slice(0, -1).split('\n')) {
    let m: RegExpExecArray | null;
    if ((m = /^# HELP ([a-zA-Z_:][a-zA-Z0-9_:]*) (.*)$/.exec(line))) {
      helps.add(m[1]!);
      continue;
    }
    if ((m = /^# TYPE ([a-zA-Z_:][a-zA-Z0-9_:]*) (counter|gauge|histogram|summary|untyped)$/.exec(line))) {
      assert.ok(!types.has(m[1]!), `one TYPE line per family: ${m[1]}`);
      types.set(m[1]!, m[2]!);
      continue;
    }
    m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    assert.ok(m, `not a sample line: ${JSON.stringify(line)}`);
    const name = m[1]!;
    assert.ok(types.has(name), `sample ${name} before (or without) its TYPE line`);
    assert.ok(helps.has(name), `sample ${name} without HELP`);
    const labels: Record<string, string> = {};
    if (m[2] !== undefined) {
      const re = /([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\\n]|\\[\\"n])*)"(,|$)/y;
      let consumed = 0;
      for (let lm = re.exec(m[2]); lm; lm = re.exec(m[2])) {
        labels[lm[1]!] = lm[2]!.replace(/\\(["\\n])/g, (_x, c: string) => (c === 'n' ? '\n' : c));
        consumed = re.lastIndex;
      }
      assert.equal(consumed, m[2].length, `label set not understood: ${m[2]}`);
    }
    const value = m[3] === '+Inf' ? Infinity : m[3] === '-Inf' ? -Infinity : Number(m[3]);
    assert.ok(m[3] === 'NaN' || !Number.isNaN(value), `value of ${line}`);
    samples.push({ name, labels, value });
  }
  for (const [name, type] of types) if (type === 'counter') assert.match(name, /_total$/, `counter ${name} ends in _total`);
  return { types, samples };
}

before(async () => {
  dataDir = mkdtempSync(join(tmpdir(), 'witness-http-'));
  const cfg = defaultConfig();
  broker = await startBroker({
    dataDir,
    listeners: [{ type: 'mqtt', host: '127.0.0.1', port: 0 }],
    ledger: { checkpointEveryMs: 300, checkpointEveryRecords: 10_000 },
    security: (ctx) => buildSecurity(cfg, ctx.dataDir),
  });
  mqttUrl = broker.urls[0]!;
  api = await startHttpApi({
    host: '127.0.0.1',
    port: 0,
    dataDir,
    broker,
    tokens: TOKENS,
    metricsWithoutToken: false,
    version: '0.0.0-test',
    alerts: () => [
      { rule: 'gaps', subject: 'd1', severity: 'warning', message: 'older', at: 1000 },
      { rule: 'silence', subject: 'd2', severity: 'critical', message: 'newer', at: 2000 },
    ],
    followers: () => [],
    dashboardHtml: () => '<!doctype html><title>dash</title>',
    stream: { heartbeatMs: 200, maxBufferedBytes: 64 * 1024 },
  });
});

after(async () => {
  await api?.close();
  await broker?.stop();
  rmSync(dataDir, { recursive: true, force: true });
});

// ── roles ────────────────────────────────────────────────────────────────────────────────────

interface Endpoint {
  method: 'GET' | 'POST';
  path: string;
  role: Role;
  body?: unknown;
  /** Status for the right role (the request is valid). */
  ok: number;
}

describe('roles', () => {
  const key = formatPublicKey(publicKeyFromSeed(generateSeed()));
  const ENDPOINTS: Endpoint[] = [
    { method: 'GET', path: '/api/v1/records?limit=5', role: 'auditor', ok: 200 },
    { method: 'GET', path: '/api/v1/stream', role: 'auditor', ok: 200 },
    { method: 'GET', path: '/api/v1/checkpoint', role: 'auditor', ok: 200 },
    { method: 'GET', path: '/api/v1/proof/inclusion?index=0', role: 'auditor', ok: 200 },
    { method: 'GET', path: '/api/v1/proof/consistency?old=0&new=0', role: 'auditor', ok: 200 }, // the empty tree has a checkpoint (epoch 0)
    { method: 'GET', path: '/api/v1/ledger', role: 'auditor', ok: 200 },
    { method: 'GET', path: '/api/v1/stats', role: 'auditor', ok: 200 },
    { method: 'GET', path: '/metrics', role: 'auditor', ok: 200 },
    { method: 'POST', path: '/api/v1/verify', role: 'operator', ok: 202 },
    { method: 'GET', path: '/api/v1/devices', role: 'operator', ok: 200 },
    { method: 'GET', path: '/api/v1/alerts', role: 'operator', ok: 200 },
    { method: 'POST', path: '/api/v1/devices', role: 'admin', body: { id: 'role-dev', publicKey: key }, ok: 200 },
    { method: 'POST', path: '/api/v1/devices/role-dev/revoke', role: 'admin', body: {}, ok: 200 },
  ];
  const below: Record<Role, Role | undefined> = { auditor: undefined, operator: 'auditor', admin: 'operator' };

  test('every endpoint refuses a missing token (401), a wrong token (401) and too low a role (403), and works with its role', async () => {
    await waitFor(() => ((broker.ledger.lastCheckpoint?.size ?? 0) > 0 ? true : undefined), 'a checkpoint of a non-empty tree');
    for (const ep of ENDPOINTS) {
      const send = (headers: Record<string, string>): Promise<Response> =>
        fetch(api.url + ep.path, { method: ep.method, headers: { ...headers, 'Content-Type': 'application/json' }, ...(ep.body !== undefined ? { body: JSON.stringify(ep.body) } : {}) });
      const none = await send({});
      const b = await expectError(none, 401, 'WITNESS_HTTP_UNAUTHORIZED');
      assert.match(none.headers.get('www-authenticate') ?? '', /^Bearer/, ep.path);
      assert.match(String(b.error), /token/);
      await expectError(await send({ Authorization: `Bearer ${generateToken()}` }), 401, 'WITNESS_HTTP_UNAUTHORIZED');
      await expectError(await send({ Authorization: 'Basic Zm9vOmJhcg==' }), 401, 'WITNESS_HTTP_UNAUTHORIZED');
      const low = below[ep.role];
      if (low) {
        const body = await expectError(await send(auth(low)), 403, 'WITNESS_HTTP_FORBIDDEN');
        assert.match(String(body.error), new RegExp(`needs role ${ep.role}`));
      }
      // The right role, and every role above it.
      const roles: Role[] = ep.role === 'auditor' ? ['auditor', 'operator', 'admin'] : ep.role === 'operator' ? ['operator', 'admin'] : ['admin'];
      for (const role of roles) {
        if (ep.path.endsWith('/stream')) {
          const s = await Sse.open(ep.path, auth(role));
          s.close();
          continue;
        }
        if (ep.path.startsWith('/api/v1/devices') && ep.method === 'POST' && role !== roles[0]) continue;
        if (ep.path === '/api/v1/verify') {
          // one verification at a time: wait until the previous one finished
          await waitFor(async () => ((await getJson<{ verification: { running: boolean } }>('/api/v1/ledger', 'auditor')).verification.running ? undefined : true), 'verification done');
        }
        const r = await send(auth(role));
        const text = await r.text();
        assert.equal(r.status, ep.ok, `${ep.method} ${ep.path} as ${role}: ${text}`);
      }
    }
    await waitFor(async () => ((await getJson<{ verification: { running: boolean } }>('/api/v1/ledger', 'auditor')).verification.running ? undefined : true), 'verification done');
  });

  test('GET / (the dashboard page) and /healthz need no token; /healthz is not recorded', async () => {
    const page = await get('/');
    assert.equal(page.status, 200);
    assert.match(page.headers.get('content-type') ?? '', /^text\/html/);
    assert.match(await page.text(), /<title>dash<\/title>/);
    const h = await get('/healthz');
    assert.equal(h.status, 200);
    assert.equal(await h.text(), 'ok\n');
    await waitForRecords(dataDir, (rs) => rs.some((r) => r.e === 'api' && r.route === '/'));
    const rs = await readRecords(dataDir);
    assert.ok(!rs.some((r) => r.e === 'api' && r.route === '/healthz'), 'healthz is not recorded');
  });

  test('metricsWithoutToken serves /metrics to anyone, and only /metrics', async () => {
    const open = await startHttpApi({ host: '127.0.0.1', port: 0, dataDir, broker, tokens: TOKENS, metricsWithoutToken: true, version: 't', stats: api.stats });
    try {
      const m = await fetch(`${open.url}/metrics`);
      assert.equal(m.status, 200);
      parseMetrics(await m.text());
      await expectError(await fetch(`${open.url}/api/v1/stats`), 401);
    } finally {
      await open.close();
    }
  });
});

// ── records ──────────────────────────────────────────────────────────────────────────────────

describe('records', () => {
  before(async () => {
    await publish('rec-a', 'plant/1/temp', 'a1');
    await publish('rec-a', 'plant/2/temp', 'a2');
    await publish('rec-b', 'plant/1/hum', 'b1');
    await waitFor(() => broker.ledger.durableSize > 0 && readRecords(dataDir).then((rs) => (rs.filter((r) => r.e === 'disconnect' && (r.c === 'rec-a' || r.c === 'rec-b')).length >= 3 ? true : undefined)), 'the publishes');
  });

  test('filters as `witness query` does: client, type, topic (wildcards), verdict, since/until', async () => {
    const all = await readRecords(dataDir);
    const a = await getJson<{ records: Rec[]; next: number | null }>('/api/v1/records?client=rec-a&type=publish', 'auditor');
    assert.deepEqual(a.records.map((r) => r.topic), ['plant/1/temp', 'plant/2/temp']);
    assert.equal(a.next, null);
    for (const r of a.records) assert.equal(typeof r.i, 'number');
    const t = await getJson<{ records: Rec[] }>(`/api/v1/records?topic=${encodeURIComponent('plant/+/temp')}&type=publish`, 'auditor');
    assert.deepEqual(t.records.map((r) => r.c), ['rec-a', 'rec-a']);
    const h = await getJson<{ records: Rec[] }>(`/api/v1/records?topic=${encodeURIComponent('plant/#')}&verdict=missing&limit=10000`, 'auditor');
    assert.equal(h.records.length, 3);
    const first = all.find((r) => r.e === 'publish' && r.topic === 'plant/1/temp')!;
    const since = await getJson<{ records: Rec[] }>(`/api/v1/records?type=publish&since=${first.t as number}&until=${new Date((first.t as number) + 3_600_000).toISOString()}&limit=10000`, 'auditor');
    assert.ok(since.records.every((r) => (r.t as number) >= (first.t as number)));
    assert.ok(since.records.some((r) => r.topic === 'plant/1/hum'));
  });

  test('pages with limit and next; from is the first index', async () => {
    const p1 = await getJson<{ records: Rec[]; next: number | null }>('/api/v1/records?limit=3', 'auditor');
    assert.deepEqual(p1.records.map((r) => r.i), [0, 1, 2]);
    assert.equal(p1.next, 3);
    const p2 = await getJson<{ records: Rec[]; next: number | null }>(`/api/v1/records?limit=2&from=${p1.next}`, 'auditor');
    assert.deepEqual(p2.records.map((r) => r.i), [3, 4]);
    const end = await getJson<{ records: Rec[]; next: number | null }>(`/api/v1/records?from=${broker.ledger.durableSize + 100}`, 'auditor');
    assert.deepEqual(end, { records: [], next: null });
  });

  test('bad parameters: 400 naming the parameter and what to do', async () => {
    for (const [q, re] of [
      ['limit=0', /limit=0: must be between 1 and 10000/],
      ['limit=10001', /limit=10001/],
      ['limit=ten', /limit="ten": expected a non-negative integer/],
      ['from=-1', /from="-1"/],
      ['since=yesterday', /since "yesterday": expected an ISO 8601 time/],
      ['topic=a/%23/b', /topic "a\/#\/b": not a valid MQTT topic filter/],
      ['colour=red', /unknown query parameter "colour".*allowed: client, topic/],
      ['limit=1&limit=2', /limit given twice/],
    ] as const) {
      const body = await expectError(await get(`/api/v1/records?${q}`, 'auditor'), 400, 'WITNESS_HTTP_BAD_REQUEST');
      assert.match(String(body.error), re, q);
      assert.match(String(body.hint), /parameter/);
    }
  });
});

// ── stream ───────────────────────────────────────────────────────────────────────────────────

describe('stream', () => {
  test('a record of an MQTT publish made during the test arrives as an SSE event; Last-Event-ID resumes', async () => {
    const s = await Sse.open(`/api/v1/stream?type=publish&topic=${encodeURIComponent('sse/#')}`, auth('auditor'));
    await publish('sse-pub', 'sse/live', 'live-1');
    const got = await s.waitFor((rs) => rs.some((r) => r.topic === 'sse/live'), 'the live record');
    assert.ok(got.every((r) => r.e === 'publish'), 'the filter applies');
    const ev = s.events.find((e) => e.event === 'record' && JSON.parse(e.data).topic === 'sse/live')!;
    assert.equal(Number(ev.id), (JSON.parse(ev.data) as Rec).i, 'id is the ledger index');
    // The data line is the ledger line exactly.
    const all = await readRecords(dataDir);
    assert.ok(all.some((r) => r.i === Number(ev.id) && r.topic === 'sse/live'));
    await waitFor(() => (s.comments.includes('keepalive') ? true : undefined), 'a heartbeat comment');
    const lastId = s.events.filter((e) => e.event === 'record').at(-1)!.id!;
    s.close();

    // Published while no one listens: read back from the ledger on resume, then live again.
    await publish('sse-pub', 'sse/missed', 'm1');
    await publish('sse-pub', 'sse/missed', 'm2');
    await waitForRecords(dataDir, (rs) => rs.filter((r) => r.topic === 'sse/missed').length === 2);
    const r2 = await Sse.open(`/api/v1/stream?type=publish&topic=${encodeURIComponent('sse/#')}`, { ...auth('auditor'), 'Last-Event-ID': lastId });
    await r2.waitFor((rs) => rs.filter((r) => r.topic === 'sse/missed').length === 2, 'the missed records');
    await publish('sse-pub', 'sse/after', 'a1');
    const rs = await r2.waitFor((rs) => rs.some((r) => r.topic === 'sse/after'), 'the next live record');
    r2.close();
    const ids = rs.map((r) => r.i);
    assert.ok(ids[0]! > Number(lastId), 'resumes after Last-Event-ID');
    assert.deepEqual(ids, [...ids].sort((x, y) => x - y), 'in order');
    assert.equal(new Set(ids).size, ids.length, 'no duplicates');
    assert.deepEqual(rs.map((r) => r.topic), ['sse/missed', 'sse/missed', 'sse/after']);
  });

  test('from=N replays from index N; many clients share one follower; access_token works and is not recorded', async () => {
    const firstStart = (await readRecords(dataDir)).find((r) => r.e === 'start')!;
    const clients = await Promise.all([0, 1, 2].map(() => Sse.open(`/api/v1/stream?from=0&type=start&access_token=${SECRETS.auditor}`, {})));
    for (const c of clients) await c.waitFor((rs) => rs.length >= 1 && rs[0]!.i === firstStart.i, 'the start record, read from index 0');
    const streams = (await get('/metrics', 'auditor').then((r) => r.text())).match(/^witness_stream_clients (\d+)$/m);
    assert.ok(Number(streams?.[1]) >= 3);
    const followers = (await getJson<{ followers: Array<{ name: string }> }>('/api/v1/ledger', 'auditor')).followers.filter((f) => f.name === 'http-stream');
    assert.equal(followers.length, 1, 'one shared live follower');
    for (const c of clients) c.close();
    const rs = await waitForRecords(dataDir, (rs) => rs.filter((r) => r.e === 'api' && r.route === '/api/v1/stream' && String(r.path).includes('from=0')).length >= 3);
    const rec = rs.find((r) => r.e === 'api' && String(r.path).includes('from=0'))!;
    assert.ok(!String(rec.path).includes(SECRETS.auditor), 'the token is not in the record');
    assert.match(String(rec.path), /access_token=REDACTED/);
    assert.equal(rec.token, 'auditor-1');
  });

  test('a client that does not read is dropped with a final event, not buffered without bound', async () => {
    const streams = async (): Promise<number> => Number((await get('/metrics', 'auditor').then((r) => r.text())).match(/^witness_stream_clients (\d+)$/m)?.[1]);
    await waitFor(async () => ((await streams()) === 0 ? true : undefined), 'the earlier streams closed');
    const sock = netConnect({ host: '127.0.0.1', port: api.port });
    await new Promise((r) => sock.once('connect', r));
    sock.write(`GET /api/v1/stream?type=error HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${SECRETS.auditor}\r\n\r\n`);
    sock.pause();
    await waitFor(async () => ((await streams()) === 1 ? true : undefined), 'the stream open');
    const before = 1;
    // ~16 MiB of records the client never reads.
    const big = 'x'.repeat(8000);
    for (let k = 0; k < 20; k++) await Promise.all(Array.from({ length: 100 }, () => broker.plugin.record(EVENTS.error, { scope: 'test', msg: big })));
    await waitFor(async () => {
      const m = (await get('/metrics', 'auditor').then((r) => r.text())).match(/^witness_stream_clients (\d+)$/m);
      return Number(m?.[1]) < before ? true : undefined;
    }, 'the slow client dropped', 20_000);
    // Reading now, the client finds the final event at the end of the stream.
    let text = '';
    sock.setEncoding('utf8');
    sock.on('data', (d: string) => {
      text += d.slice(-1000);
      if (text.length > 4000) text = text.slice(-2000);
    });
    sock.resume();
    await new Promise((r) => sock.once('close', r));
    assert.match(text, /event: dropped\ndata: \{"reason":"slow consumer[^\n]*"resume":\d+\}\n\n/);
  });
});

// ── checkpoint and proofs ───────────────────────────────────────────────────────────────────

describe('checkpoint and proofs', () => {
  const io = (): { io: { stdout: Writable; stderr: Writable }; out: () => string } => {
    let out = '';
    const w = new Writable({ write: (c, _e, cb) => ((out += String(c)), cb()) });
    return { io: { stdout: w, stderr: w }, out: () => out };
  };
  const verifierKey = (): string => readManifest(dataDir).verifierKey;

  test('the latest checkpoint, and an inclusion proof that `witness verify-proof` accepts', async () => {
    await publish('proof-pub', 'proof/topic', 'p');
    const rec = (await waitForRecords(dataDir, (rs) => rs.some((r) => r.topic === 'proof/topic'))).find((r) => r.topic === 'proof/topic')!;
    const cp = await waitFor(async () => {
      const c = await getJson<{ size: number; rootHash: string; time: number; epoch: number; note: string }>('/api/v1/checkpoint', 'auditor');
      return c.size > rec.i ? c : undefined;
    }, 'a checkpoint covering the record');
    const k = parseVerifierKey(verifierKey());
    const opened = openCheckpoint(cp.note, [ed25519NoteVerifier(k.name, k.publicKey)]).checkpoint;
    assert.equal(opened.size, cp.size);
    assert.equal(Buffer.from(opened.rootHash).toString('base64'), cp.rootHash);

    const r = await get(`/api/v1/proof/inclusion?index=${rec.i}&size=${cp.size}`, 'auditor');
    const text = await r.text();
    assert.equal(r.status, 200, text);
    const proof = JSON.parse(text) as { format: string; type: string; index: number; treeSize: number; record: string; proof: string[]; checkpoint: string };
    assert.equal(proof.format, 'witness-proof/v1');
    assert.equal(proof.type, 'inclusion');
    assert.equal(proof.index, rec.i);
    assert.equal(JSON.parse(proof.record).topic, 'proof/topic');
    verifyInclusion(proof.index, proof.treeSize, leafHash(Buffer.from(proof.record)), proof.proof.map((h) => Buffer.from(h, 'base64')), opened.rootHash);
    const file = join(dataDir, 'inclusion.json');
    writeFileSync(file, text);
    const o = io();
    assert.equal(await verifyProofCommand([file, '--key', verifierKey()], o.io), 0, o.out());
    assert.match(o.out(), /^OK: record \d+ is included/);
    // Without size: against the latest checkpoint.
    const latest = JSON.parse(await (await get(`/api/v1/proof/inclusion?index=${rec.i}`, 'auditor')).text()) as { treeSize: number };
    assert.ok(latest.treeSize >= cp.size);
  });

  test('a consistency proof between two checkpoints verifies', async () => {
    const c1 = await broker.ledger.checkpoint();
    await publish('proof-pub', 'proof/more', 'q');
    await waitForRecords(dataDir, (rs) => rs.some((r) => r.topic === 'proof/more'));
    const c2 = await broker.ledger.checkpoint();
    assert.ok(c2.size > c1.size);
    const r = await get(`/api/v1/proof/consistency?old=${c1.size}&new=${c2.size}`, 'auditor');
    const text = await r.text();
    assert.equal(r.status, 200, text);
    const p = JSON.parse(text) as { type: string; size1: number; size2: number };
    assert.deepEqual([p.type, p.size1, p.size2], ['consistency', c1.size, c2.size]);
    const file = join(dataDir, 'consistency.json');
    writeFileSync(file, text);
    const o = io();
    assert.equal(await verifyProofCommand([file, '--key', verifierKey()], o.io), 0, o.out());
    assert.match(o.out(), /^OK: the tree of \d+ records extends/);
  });

  test('bad proof inputs are 400s that say what to do', async () => {
    const size = broker.ledger.lastCheckpoint!.size;
    for (const [q, status, re] of [
      ['/api/v1/proof/inclusion', 400, /missing query parameter index/],
      ['/api/v1/proof/inclusion?index=abc', 400, /index="abc": expected a non-negative integer/],
      ['/api/v1/proof/inclusion?index=-5', 400, /index="-5"/],
      ['/api/v1/proof/inclusion?index=99999999999999999999', 400, /expected a non-negative integer/],
      [`/api/v1/proof/inclusion?index=${size + 1000}`, 400, /not covered by the checkpoint/],
      [`/api/v1/proof/inclusion?index=0&size=${size + 1}`, 400, /no checkpoint of tree size|not covered|records/],
      ['/api/v1/proof/consistency?old=5&new=2', 400, /old \(5\) must not exceed new \(2\)/],
      [`/api/v1/proof/consistency?old=1&new=${size}`, 400, /no checkpoint of tree size 1/],
    ] as const) {
      const body = await expectError(await get(q, 'auditor'), status);
      assert.match(String(body.error), re, q);
    }
  });
});

// ── devices ──────────────────────────────────────────────────────────────────────────────────

describe('devices', () => {
  test('add and revoke through the API: in the registry file, in the ledger (device records), in GET /devices', async () => {
    const pub = formatPublicKey(publicKeyFromSeed(generateSeed()));
    const r = await post('/api/v1/devices', 'admin', { id: 'api-dev-1', publicKey: pub });
    const added = JSON.parse(await r.text()) as { changed: boolean; changes: Array<{ kind: string; deviceId: string; keyHash: string }>; revision: number };
    assert.equal(r.status, 200);
    assert.equal(added.changed, true);
    assert.equal(added.changes[0]!.kind, 'device-added');
    const hash = added.changes[0]!.keyHash;
    const file = JSON.parse(readFileSync(join(dataDir, 'devices.json'), 'utf8')) as { devices: Record<string, { keys: Array<{ keyHash: string; revokedAt?: string }> }> };
    assert.equal(file.devices['api-dev-1']!.keys[0]!.keyHash, hash);
    await waitForRecords(dataDir, (rs) => rs.some((x) => x.e === 'device' && (x.change as { deviceId?: string; kind?: string }).deviceId === 'api-dev-1' && (x.change as { kind: string }).kind === 'device-added'));

    // Adding it again changes nothing; the list shows it.
    const again = JSON.parse(await (await post('/api/v1/devices', 'admin', { id: 'api-dev-1', publicKey: pub })).text()) as { changed: boolean };
    assert.equal(again.changed, false);
    const list = await getJson<{ devices: Array<{ id: string; registered: boolean; keys: Array<{ hash: string; status: string; addedAt: string }>; connected: boolean; lastSeen: unknown }> }>('/api/v1/devices', 'operator');
    const d = list.devices.find((x) => x.id === 'api-dev-1')!;
    assert.equal(d.registered, true);
    assert.deepEqual(d.keys.map((k) => [k.hash, k.status]), [[hash, 'active']]);
    assert.equal(d.connected, false);
    assert.equal(d.lastSeen, null);

    const rv = await post('/api/v1/devices/api-dev-1/revoke', 'admin', { keyHash: hash });
    const revoked = JSON.parse(await rv.text()) as { changes: Array<{ kind: string }> };
    assert.equal(rv.status, 200);
    assert.equal(revoked.changes[0]!.kind, 'key-revoked');
    const file2 = JSON.parse(readFileSync(join(dataDir, 'devices.json'), 'utf8')) as typeof file;
    assert.equal(typeof file2.devices['api-dev-1']!.keys[0]!.revokedAt, 'string');
    const rs = await waitForRecords(dataDir, (rs) => rs.some((x) => x.e === 'device' && (x.change as { kind?: string }).kind === 'key-revoked' && (x.change as { deviceId?: string }).deviceId === 'api-dev-1'));
    // The API accesses that made the changes name their token and the device.
    const apiRecs = rs.filter((x) => x.e === 'api' && x.method === 'POST' && x.deviceId === 'api-dev-1');
    assert.ok(apiRecs.some((x) => x.route === '/api/v1/devices' && x.token === 'admin-1' && x.status === 200));
    assert.ok(apiRecs.some((x) => x.route === '/api/v1/devices/{id}/revoke' && (x.changes as Array<{ kind: string }>)[0]?.kind === 'key-revoked'));
  });

  test('registry errors are 400s with the WitnessError message and code', async () => {
    let b = await expectError(await post('/api/v1/devices', 'admin', { id: 'bad id!', publicKey: 'x' }), 400, 'WITNESS_ERR_DEVICE_ID_INVALID');
    assert.match(String(b.error), /bad id!/);
    b = await expectError(await post('/api/v1/devices', 'admin', { id: 'dev-k', publicKey: 'not-a-key' }), 400, /^WITNESS_ERR_KEY/);
    b = await expectError(await post('/api/v1/devices/nobody/revoke', 'admin', {}), 400, 'WITNESS_ERR_DEVICE_UNKNOWN');
    b = await expectError(await post('/api/v1/devices', 'admin', { id: 'dev-k' }), 400, 'WITNESS_HTTP_BAD_JSON');
    assert.match(String(b.error), /missing field publicKey/);
    b = await expectError(await post('/api/v1/devices', 'admin', { id: 'dev-k', publicKey: 'x', extra: 1 }), 400, 'WITNESS_HTTP_BAD_JSON');
    assert.match(String(b.error), /unknown field "extra"/);
    await expectError(await post('/api/v1/devices', 'admin', undefined, '{"id": '), 400, 'WITNESS_HTTP_BAD_JSON');
    await expectError(await post('/api/v1/devices', 'admin', undefined, '[1,2]'), 400, 'WITNESS_HTTP_BAD_JSON');
    await expectError(await post('/api/v1/devices', 'admin', { id: 5, publicKey: 'x' }), 400, 'WITNESS_HTTP_BAD_JSON');
    await expectError(await post('/api/v1/devices/%E0%A4%A/revoke', 'admin', {}), 404);
  });

  test('a device that publishes signed envelopes shows last seen, sequence, skew and verdict counts', async () => {
    const { signEnvelope, GENESIS_PREV, envelopeHash } = await import('../../../shared/envelope/index.js');
    const { deviceKid } = await import('../../../shared/keys/key-id.js');
    const seed = generateSeed();
    const pubRaw = publicKeyFromSeed(seed);
    assert.equal((await post('/api/v1/devices', 'admin', { id: 'env-dev', publicKey: formatPublicKey(pubRaw) })).status, 200);
    await waitForRecords(dataDir, (rs) => rs.some((x) => x.e === 'device' && (x.change as { deviceId?: string }).deviceId === 'env-dev'));
    const kid = deviceKid('env-dev', pubRaw);
    let prev = GENESIS_PREV;
    const c = await mqtt.connectAsync(mqttUrl, { clientId: 'env-dev', reconnectPeriod: 0 });
    for (let seq = 0; seq < 3; seq++) {
      const bytes = signEnvelope({ seed, kid, payload: Buffer.from(`m${seq}`), claims: { time: Date.now() + 50, uncertainty: 20, timeSource: 'ntp', seq, prev, topic: 'env/dev' } });
      prev = envelopeHash(bytes);
      await c.publishAsync('env/dev', Buffer.from(bytes), { qos: 1 });
    }
    const dev = await waitFor(async () => {
      const l = await getJson<{ devices: Array<Record<string, unknown>> }>('/api/v1/devices', 'operator');
      const d = l.devices.find((x) => x.id === 'env-dev');
      return d && d.publishes === 3 ? d : undefined;
    }, 'the device view');
    await c.endAsync();
    assert.equal(dev.lastSeq, 2);
    assert.equal(dev.lastVerdict, 'valid');
    assert.deepEqual(dev.verdicts, { valid: 3 });
    assert.equal(typeof dev.skewMs, 'number');
    assert.ok(Math.abs(dev.skewMs as number) < 5_000);
    assert.equal(typeof dev.lastSeen, 'number');
    assert.equal(dev.registered, true);
  });
});

// ── stats, metrics, api records ────────────────────────────────────────────────────────────

describe('stats and metrics', () => {
  test('/metrics parses as Prometheus text and its counts match the ledger', async () => {
    await publish('metrics-pub', 'm/t', 'x');
    // Let the stats follower catch up with everything durable, then scrape.
    await waitFor(() => (api.stats.snapshot().records >= broker.ledger.durableSize ? true : undefined), 'stats caught up');
    const r = await get('/metrics', 'auditor');
    assert.equal(r.status, 200);
    assert.equal(r.headers.get('content-type'), 'text/plain; version=0.0.4; charset=utf-8');
    const { types, samples } = parseMetrics(await r.text());
    for (const name of [
      'witness_records_total',
      'witness_publish_total',
      'witness_acl_total',
      'witness_ledger_records',
      'witness_ledger_durable_records',
      'witness_checkpoint_size',
      'witness_checkpoint_age_seconds',
      'witness_clients_connected',
      'witness_devices_registered',
      'witness_follower_lag_records',
      'witness_follower_failures',
      'witness_alerts_total',
      'witness_http_requests_total',
      'process_resident_memory_bytes',
      'process_cpu_seconds_total',
    ]) {
      assert.ok(types.has(name), `family ${name}`);
    }
    const byEvent = new Map(samples.filter((s) => s.name === 'witness_records_total').map((s) => [s.labels.event!, s.value]));
    const total = [...byEvent.values()].reduce((a, b) => a + b, 0);
    const ledgerRecs = (await readRecords(dataDir)).slice(0, total);
    assert.equal(ledgerRecs.length, total, 'the ledger holds at least what was counted');
    const expected = new Map<string, number>();
    for (const rec of ledgerRecs) expected.set(rec.e, (expected.get(rec.e) ?? 0) + 1);
    assert.deepEqual(new Map([...byEvent].sort()), new Map([...expected].sort()), 'records per event');
    const verdicts = new Map<string, number>();
    let allow = 0;
    let deny = 0;
    for (const rec of ledgerRecs) {
      if (rec.e === 'publish' && typeof rec.env === 'string') verdicts.set(rec.env, (verdicts.get(rec.env) ?? 0) + 1);
      if (rec.acl === 'allow') allow++;
      if (rec.acl === 'deny') deny++;
    }
    assert.deepEqual(new Map(samples.filter((s) => s.name === 'witness_publish_total').map((s): [string, number] => [s.labels.verdict!, s.value]).sort()), new Map([...verdicts].sort()));
    assert.equal(samples.find((s) => s.name === 'witness_acl_total' && s.labels.decision === 'allow')?.value, allow);
    assert.equal(samples.find((s) => s.name === 'witness_acl_total' && s.labels.decision === 'deny')?.value, deny);
    assert.equal(samples.find((s) => s.name === 'witness_checkpoint_size')?.value, broker.ledger.lastCheckpoint?.size);
    assert.ok(samples.some((s) => s.name === 'witness_follower_lag_records' && s.labels.follower === 'stats'));
    assert.ok(samples.some((s) => s.name === 'witness_http_requests_total' && s.labels.route === '/api/v1/records' && s.labels.status === '200'));
    assert.ok((samples.find((s) => s.name === 'process_resident_memory_bytes')?.value ?? 0) > 1e6);
    assert.ok(samples.find((s) => s.name === 'witness_devices_registered')!.value >= 2);
  });

  test('label values are escaped per the format', async () => {
    const { Exposition, escapeLabelValue } = await import('../../../broker/http/metrics.js');
    assert.equal(escapeLabelValue('a"b\\c\nd'), 'a\\"b\\\\c\\nd');
    const text = new Exposition().family('x_total', 'counter', 'help with \\ and\nnewline', [[{ route: 'we"ird\\\n' }, 3]]).text();
    const { samples } = parseMetrics(text);
    assert.deepEqual(samples, [{ name: 'x_total', labels: { route: 'we"ird\\\n' }, value: 3 }]);
    assert.throws(() => new Exposition().family('bad', 'counter', 'h', []), /_total/);
  });

  test('/stats: counters from the ledger; /alerts: newest first', async () => {
    await waitFor(() => (api.stats.snapshot().records >= broker.ledger.durableSize ? true : undefined), 'stats caught up');
    const s = await getJson<{ records: number; events: Record<string, number>; verdicts: Record<string, number>; acl: { allow: number; deny: number }; connected: number; devices: number; alerts: number }>('/api/v1/stats', 'auditor');
    assert.ok(s.records > 0);
    assert.ok(s.events.publish! > 0);
    assert.ok(s.verdicts.missing! > 0);
    assert.equal(typeof s.acl.allow, 'number');
    assert.equal(typeof s.connected, 'number');
    assert.ok(s.devices >= 2);
    assert.equal(s.alerts, 0);
    const a = await getJson<{ alerts: Array<{ message: string }> }>('/api/v1/alerts', 'operator');
    assert.deepEqual(a.alerts.map((x) => x.message), ['newer', 'older']);
    const one = await getJson<{ alerts: unknown[] }>('/api/v1/alerts?limit=1', 'operator');
    assert.equal(one.alerts.length, 1);
  });

  test('every API access is an `api` record naming the token, route, status and address', async () => {
    await get('/api/v1/stats', 'operator');
    await get('/api/v1/devices', 'auditor'); // 403
    await get('/api/v1/nothing-here'); // 404
    const rs = await waitForRecords(dataDir, (rs) => rs.some((r) => r.e === 'api' && r.route === '(unmatched)' && r.path === '/api/v1/nothing-here'));
    const api403 = rs.filter((r) => r.e === 'api' && r.route === '/api/v1/devices' && r.status === 403);
    assert.ok(api403.some((r) => r.token === 'auditor-1' && r.role === 'auditor' && r.id === 'token:auditor-1'));
    const ok = rs.find((r) => r.e === 'api' && r.route === '/api/v1/stats' && r.token === 'operator-1')!;
    assert.equal(ok.status, 200);
    assert.equal(ok.method, 'GET');
    assert.match(String(ok.a), /^127\.0\.0\.1:\d+$/);
    assert.equal(typeof ok.ms, 'number');
    assert.equal(ok.n, broker.nodeId);
    const unauth = rs.find((r) => r.e === 'api' && r.status === 401)!;
    assert.equal(unauth.token, null);
    assert.equal(unauth.id, 'anonymous');
    const nf = rs.find((r) => r.e === 'api' && r.route === '(unmatched)')!;
    assert.equal(nf.status, 404);
  });
});

// ── malformed input, verification ───────────────────────────────────────────────────────────

describe('malformed input', () => {
  test('unknown route 404, wrong method 405, huge body 413, bad JSON 400 — and the server stays up', async () => {
    await expectError(await get('/api/v2/records', 'admin'), 404, 'WITNESS_HTTP_NOT_FOUND');
    await expectError(await get('/%%%', 'admin'), 404);
    const m = await fetch(`${api.url}/api/v1/records`, { method: 'DELETE', headers: auth('admin') });
    await expectError(m, 405, 'WITNESS_HTTP_METHOD_NOT_ALLOWED');
    assert.equal(m.headers.get('allow'), 'GET');
    const big = await fetch(`${api.url}/api/v1/devices`, { method: 'POST', headers: { ...auth('admin'), 'Content-Type': 'application/json' }, body: JSON.stringify({ id: 'x', publicKey: 'k'.repeat(1024 * 1024) }) }).catch((e: Error) => e);
    if (big instanceof Response) await expectError(big, 413, 'WITNESS_HTTP_BODY_TOO_LARGE');
    // Without Content-Length (chunked): cut at 64 KiB all the same.
    const chunked = await fetch(`${api.url}/api/v1/devices`, {
      method: 'POST',
      headers: { ...auth('admin'), 'Content-Type': 'application/json' },
      body: new ReadableStream({
        start(c) {
          for (let k = 0; k < 20; k++) c.enqueue(new TextEncoder().encode('x'.repeat(8192)));
          c.close();
        },
      }),
      duplex: 'half',
    } as RequestInit).catch((e: Error) => e);
    if (chunked instanceof Response) await expectError(chunked, 413, 'WITNESS_HTTP_BODY_TOO_LARGE');
    await expectError(await post('/api/v1/devices', 'admin', undefined, '{not json'), 400, 'WITNESS_HTTP_BAD_JSON');
    await expectError(await get('/api/v1/stream?from=x', 'auditor'), 400);
    await expectError(await get('/api/v1/stream', 'auditor', { 'Last-Event-ID': 'nope' }), 400);
    await expectError(await get('/api/v1/checkpoint?x=1', 'auditor'), 400);

    // Garbage on the socket: a 400 (or a closed socket), never a crash.
    const raw = await new Promise<string>((resolve) => {
      const s = netConnect({ host: '127.0.0.1', port: api.port }, () => s.write('\x00\x01GARBAGE \r\n\r\n'));
      let text = '';
      s.on('data', (d) => (text += String(d)));
      s.on('close', () => resolve(text));
      s.on('error', () => resolve(text));
    });
    assert.ok(raw === '' || /^HTTP\/1\.1 400/.test(raw), raw);
    const h = await get('/healthz');
    assert.equal(h.status, 200, 'still up');
  });
});

describe('verify', () => {
  test('POST /verify?wait=true runs the verifier; /ledger shows the result; a second one while running is 409', async () => {
    await waitFor(async () => ((await getJson<{ verification: { running: boolean } }>('/api/v1/ledger', 'auditor')).verification.running ? undefined : true), 'no verification running');
    const r = await post('/api/v1/verify?wait=true', 'operator');
    const v = JSON.parse(await r.text()) as { ok: boolean; records: number; failureCount: number; at: string };
    assert.equal(r.status, 200);
    assert.equal(v.ok, true, JSON.stringify(v));
    assert.ok(v.records > 0);
    const l = await getJson<{ lastVerification: { ok: boolean; at: string }; size: number; durableSize: number; lastCheckpoint: { size: number } }>('/api/v1/ledger', 'auditor');
    assert.equal(l.lastVerification.ok, true);
    assert.equal(l.lastVerification.at, v.at);
    assert.ok(l.durableSize <= l.size);
    assert.ok(l.lastCheckpoint.size > 0);
    // One at a time: two requests pipelined on one connection reach the server before the first verification can end.
    const req = `POST /api/v1/verify HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${SECRETS.operator}\r\nContent-Length: 0\r\n\r\n`;
    const raw = await new Promise<string>((resolve, reject) => {
      const s = netConnect({ host: '127.0.0.1', port: api.port }, () => s.write(req + req));
      let text = '';
      s.setEncoding('utf8');
      s.on('data', (d: string) => {
        text += d;
        if ((text.match(/HTTP\/1\.1 /g) ?? []).length === 2 && /WITNESS_HTTP_BUSY[^\n]*\n$/.test(text)) s.end();
      });
      s.on('end', () => resolve(text));
      s.on('error', reject);
      setTimeout(() => (s.destroy(), resolve(text)), 5000).unref();
    });
    assert.deepEqual([...raw.matchAll(/^HTTP\/1\.1 (\d+)/gm)].map((m) => m[1]), ['202', '409'], raw);
    assert.match(raw, /"code":"WITNESS_HTTP_BUSY"/);
    await waitFor(async () => ((await getJson<{ verification: { running: boolean } }>('/api/v1/ledger', 'auditor')).verification.running ? undefined : true), 'verification done');
    // Kept across restarts of the API.
    assert.equal((JSON.parse(readFileSync(join(dataDir, 'state', 'last-verification.json'), 'utf8')) as { ok: boolean }).ok, true);
    await expectError(await post('/api/v1/verify?wait=maybe', 'operator'), 400);
  });
});
