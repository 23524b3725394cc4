/**
 * The InfluxDB mirror's v2 path (@influxdata/influxdb-client → /api/v2/write) against a real
 * VictoriaMetrics started by the test (DESIGN §4), read back with /api/v1/export; and the client's
 * own buffering and retrying, which must stay off (the Follower alone re-sends a batch).
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import { once } from 'node:events';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gunzipSync } from 'node:zlib';
import { tempDir } from '../../helpers/tmp.js';
import { openTestLedger } from '../../helpers/ledger.js';
import { readRecords, type Rec } from '../../helpers/records.js';
import { startVictoriaMetrics, exportVictoriaMetrics, mixedRecord, pollUntil, startAppendLoad, type TestServer, type ExportedSeries } from '../../helpers/influx.js';
import { startInfluxMirror, createInfluxSink } from '../../../broker/followers/influx.js';
import type { FollowedRecord } from '../../../broker/followers/follower.js';
import type { InfluxConfig } from '../../../broker/config/config.js';

const NODE = 'test-node';
let vm: TestServer;
let vmDir: string;
let measurementCounter = 0;

before(async () => {
  vmDir = mkdtempSync(join(tmpdir(), 'witness-vm-'));
  vm = await startVictoriaMetrics(vmDir);
});
after(async () => {
  await vm?.close();
  rmSync(vmDir, { recursive: true, force: true });
});

/** Each test writes its own measurement (VictoriaMetrics has no databases). */
function v2Config(url: string, over: Partial<InfluxConfig> = {}): InfluxConfig {
  return { url, api: 'v2', org: 'witness-org', bucket: 'witness', measurement: `w${process.pid}_${++measurementCounter}`, batchSize: 500, timeoutMs: 5_000, backoffMaxMs: 400, ...over };
}

/** VictoriaMetrics keeps numeric fields only: these, as `MEASUREMENT_FIELD` series. */
const NUMERIC_FIELDS = ['i', 'z', 'seq', 'gap', 'late', 'dt', 'skew', 'rc', 'count'] as const;

interface VmPoint {
  labels: Record<string, string>;
  ts: number;
  fields: Record<string, number[]>;
}

/** The exported samples regrouped into points: one per (labels, ms). */
function toPoints(series: ExportedSeries[], measurement: string): VmPoint[] {
  const points = new Map<string, VmPoint>();
  for (const s of series) {
    const { __name__: name, ...labels } = s.metric;
    assert.ok(name !== undefined && name.startsWith(`${measurement}_`), name);
    const field = name.slice(measurement.length + 1);
    const key = JSON.stringify(Object.entries(labels).sort());
    s.timestamps.forEach((ts, k) => {
      const id = `${key}@${ts}`;
      let p = points.get(id);
      if (!p) points.set(id, (p = { labels, ts, fields: {} }));
      (p.fields[field] ??= []).push(s.values[k]!);
    });
  }
  return [...points.values()];
}

/** What VictoriaMetrics must hold for a record: its tags as labels, its numeric fields, at its ms. */
function expectedVm(rec: Rec): { labels: Record<string, string>; ts: number; fields: Record<string, number[]> } {
  const r = rec as Record<string, unknown>;
  const labels: Record<string, string> = { e: rec.e, node: NODE };
  for (const k of ['env', 'acl', 'actor']) if (typeof r[k] === 'string') labels[k] = r[k] as string;
  if (r['q'] !== undefined) labels['q'] = String(r['q']);
  if (typeof r['ok'] === 'boolean') labels['ok'] = String(r['ok']);
  const fields: Record<string, number[]> = { i: [rec.i], count: [1] };
  for (const k of ['z', 'seq', 'gap', 'late', 'dt', 'rc']) if (typeof r[k] === 'number') fields[k] = [r[k] as number];
  if (typeof r['dt'] === 'number') fields['skew'] = [(r['dt'] as number) - (r['t'] as number)];
  return { labels, ts: r['t'] as number, fields };
}

async function readBack(measurement: string, expected: number): Promise<VmPoint[]> {
  const match = `{__name__=~"${measurement}_(${NUMERIC_FIELDS.join('|')})"}`;
  // Written samples become searchable within about a second: poll, bounded.
  const series = await pollUntil(
    () => exportVictoriaMetrics(vm.url, match),
    (s) => s.filter((x) => x.metric['__name__'] === `${measurement}_i`).reduce((n, x) => n + x.values.length, 0) >= expected,
    20_000,
    250,
  );
  return toPoints(series, measurement);
}

function assertMirrors(points: VmPoint[], records: Rec[]): void {
  const byIndex = new Map<number, VmPoint>();
  for (const p of points) {
    assert.equal(p.fields['i']?.length, 1, `one sample of i per point: ${JSON.stringify(p)}`);
    const i = p.fields['i']![0]!;
    assert.ok(!byIndex.has(i), `index ${i} appears twice`);
    byIndex.set(i, p);
  }
  assert.equal(points.length, records.length, 'one point per record');
  for (const rec of records) {
    const p = byIndex.get(rec.i);
    assert.ok(p, `record ${rec.i} (${rec.e}) is missing`);
    const want = expectedVm(rec);
    assert.deepEqual(p.labels, want.labels, `record ${rec.i}: labels`);
    assert.equal(p.ts, want.ts, `record ${rec.i}: time`);
    const numeric = Object.fromEntries(Object.entries(p.fields).filter(([k]) => (NUMERIC_FIELDS as readonly string[]).includes(k)));
    assert.deepEqual(numeric, want.fields, `record ${rec.i}: fields`);
  }
}

test('v2 (@influxdata/influxdb-client) to VictoriaMetrics: 2,000 mixed records read back with /api/v1/export equal the ledger', async (t) => {
  const dir = tempDir(t);
  const { ledger } = await openTestLedger(dir, { checkpointEveryRecords: 400 }, NODE);
  const cfg = v2Config(vm.url, { batchSize: 300 });
  const errors: string[] = [];
  const m = startInfluxMirror({ dataDir: dir, ledger, cfg, nodeId: NODE, onError: (e) => errors.push((e as Error).message) });
  t.after(() => m.stop());
  // VictoriaMetrics stores milliseconds: one record per ms here (and within its retention: recent).
  const t0 = Date.now() - 600_000;
  for (let k = 0; k < 2000; k += 100) await Promise.all(Array.from({ length: 100 }, (_, j) => ledger.append(mixedRecord(k + j, t0 + 3 * (k + j), NODE))));
  await ledger.close();
  assert.ok(await m.follower.drain(30_000), JSON.stringify(m.follower.status()));
  await m.stop();
  assert.deepEqual(errors, []);
  const records = await readRecords(dir);
  // Records the ledger wrote itself (checkpoints) carry their own time: they may share a ms with a
  // broker record, but never a tag set.
  assert.ok(records.some((r) => r.e === 'checkpoint'));
  assertMirrors(await readBack(cfg.measurement, records.length), records);
  assert.match(m.sink.describe(), /^influx v2 http:\/\/127\.0\.0\.1:\d+ org=witness-org bucket=witness measurement=w\d+_\d+$/);
});

test('v2 to VictoriaMetrics: the same batch written twice is still one point per record', async (t) => {
  const dir = tempDir(t);
  const { ledger } = await openTestLedger(dir, {}, NODE);
  const t0 = Date.now() - 300_000;
  await Promise.all(Array.from({ length: 300 }, (_, n) => ledger.append(mixedRecord(n, t0 + 2 * n, NODE))));
  await ledger.close();
  const records = await readRecords(dir);
  const batch: FollowedRecord[] = records.map((r) => ({ index: r.i, line: JSON.stringify(r), record: r }));
  const cfg = v2Config(vm.url);
  const sink = createInfluxSink(cfg, NODE);
  await sink.write(batch);
  await sink.write(batch);
  await sink.write(batch.slice(100, 200));
  await sink.close();
  assertMirrors(await readBack(cfg.measurement, records.length), records);
});

test('v2 to VictoriaMetrics: server down under load, restarted: caught up, no loss, no duplicate', async (t) => {
  const ownDir = mkdtempSync(join(tmpdir(), 'witness-vm-outage-'));
  const own = await startVictoriaMetrics(ownDir);
  // Stopped before its data goes (a server writes on its way out).
  t.after(async () => {
    await own.close();
    rmSync(ownDir, { recursive: true, force: true });
  });
  const dir = tempDir(t);
  const { ledger } = await openTestLedger(dir, { checkpointEveryRecords: 100_000 }, NODE);
  const cfg = v2Config(own.url, { batchSize: 200, backoffMaxMs: 300, timeoutMs: 2_000 });
  const errors: string[] = [];
  const m = startInfluxMirror({ dataDir: dir, ledger, cfg, nodeId: NODE, backoffMinMs: 50, onError: (e) => errors.push((e as Error).message) });
  t.after(() => m.stop());
  const load = startAppendLoad(ledger, Date.now() - 600_000, NODE);
  t.after(() => load.stop());

  await pollUntil(async () => m.follower.status().handled, (h) => h >= 500, 20_000, 20);
  await own.stop();
  const startedBeforeOutage = load.started;
  assert.ok((await pollUntil(async () => m.follower.status().failures, (f) => f > 0, 10_000, 20)) > 0, 'the follower saw the server down');
  await new Promise((r) => setTimeout(r, 2_000));
  await Promise.all(load.pending());
  assert.ok(load.started - startedBeforeOutage > 200, 'appends went on during the outage, none waiting on the mirror');
  assert.ok(m.follower.status().lag > 0);

  await own.restart();
  await new Promise((r) => setTimeout(r, 500));
  await load.stop();
  await ledger.close();
  assert.ok(await m.follower.drain(30_000), JSON.stringify(m.follower.status()));
  await m.stop();
  assert.ok(errors.length > 0 && errors.every((e) => e.startsWith(`influx v2 ${own.url} (org witness-org, bucket witness)`)), errors.slice(0, 3).join('\n'));
  const records = await readRecords(dir);
  const points = await pollUntil(
    () => exportVictoriaMetrics(own.url, `{__name__="${cfg.measurement}_i"}`),
    (s) => s.reduce((n, x) => n + x.values.length, 0) >= records.length,
    20_000,
    250,
  );
  const indexes = points.flatMap((s) => s.values).sort((a, b) => a - b);
  assert.deepEqual(indexes, records.map((r) => r.i), 'every index exactly once');
});

/** A fake write endpoint: answers every request with `status`, records what came. */
async function fakeServer(t: { after: (fn: () => unknown) => void }, status: number, body = '{"code":"internal error","message":"disk on fire"}') {
  const requests: Array<{ url: string; lines: string[] }> = [];
  const server = createServer((req: IncomingMessage, res: ServerResponse) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      let raw = Buffer.concat(chunks);
      if (req.headers['content-encoding'] === 'gzip') raw = gunzipSync(raw);
      requests.push({ url: req.url ?? '', lines: raw.toString('utf8').split('\n').filter(Boolean) });
      res.writeHead(status, { 'content-type': 'application/json', 'retry-after': '1' });
      res.end(status === 204 ? undefined : body);
    });
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  t.after(() => new Promise<void>((r) => server.close(() => r())));
  const a = server.address();
  return { url: `http://127.0.0.1:${typeof a === 'object' && a ? a.port : 0}`, requests };
}

test('v2: the client neither retries nor keeps a failed batch; the one request rejects with status and message', async (t) => {
  const batch: FollowedRecord[] = Array.from({ length: 1200 }, (_, n) => {
    const record = { i: n, ...mixedRecord(n, 1_795_446_802_094 + n, NODE) };
    return { index: n, line: JSON.stringify(record), record };
  });
  for (const status of [500, 503, 429, 400]) {
    const fake = await fakeServer(t, status);
    const sink = createInfluxSink(v2Config(fake.url, { org: 'o', bucket: 'b' }), NODE);
    await assert.rejects(sink.write(batch), (e: unknown) => {
      assert.match((e as Error).message, new RegExp(`^influx v2 ${fake.url} \\(org o, bucket b\\): write of 1200 points refused: HTTP ${status} .*disk on fire`));
      return true;
    });
    // The fake says retry-after: 1, which the client (with its default options) honours as 1 ms
    // plus up to 200 ms of jitter: 600 ms is long enough for a retry of its own — none may come.
    await new Promise((r) => setTimeout(r, 600));
    assert.equal(fake.requests.length, 1, `HTTP ${status}: one request, no retry by the client`);
    assert.equal(fake.requests[0]!.lines.length, 1200, 'the whole batch in that one request');
    assert.match(fake.requests[0]!.url, /^\/api\/v2\/write\?org=o&bucket=b&precision=ns$/);
    // The next write sends only its own batch: nothing of the failed one was kept.
    const next = batch.slice(0, 3);
    await assert.rejects(sink.write(next));
    assert.equal(fake.requests.length, 2);
    assert.equal(fake.requests[1]!.lines.length, 3);
  }
  // Accepted: resolves; one request with exactly the batch.
  const ok = await fakeServer(t, 204);
  const sink = createInfluxSink(v2Config(ok.url, { token: 's3cret' }), NODE);
  await sink.write(batch);
  assert.equal(ok.requests.length, 1);
  assert.equal(ok.requests[0]!.lines.length, 1200);
  assert.ok(!sink.describe().includes('s3cret'));
});

test('v2: a server that does not answer is cut at timeoutMs, and unreachable is said so', async (t) => {
  const silent = createServer(() => {
    /* never answers */
  });
  silent.listen(0, '127.0.0.1');
  await once(silent, 'listening');
  t.after(() => {
    silent.closeAllConnections();
    return new Promise<void>((r) => silent.close(() => r()));
  });
  const a = silent.address();
  const url = `http://127.0.0.1:${typeof a === 'object' && a ? a.port : 0}`;
  const batch: FollowedRecord[] = [{ index: 0, line: '{}', record: { e: 'publish', t: Date.now() } }];
  const started = Date.now();
  await assert.rejects(createInfluxSink(v2Config(url, { timeoutMs: 300 }), NODE).write(batch), /no answer within 300 ms \(timeoutMs\)/);
  assert.ok(Date.now() - started < 5_000);
  await assert.rejects(createInfluxSink(v1Config(url, 300), NODE).write(batch), /no answer within 300 ms \(timeoutMs\)/);

  const dead = `http://127.0.0.1:1`;
  await assert.rejects(createInfluxSink(v2Config(dead), NODE).write(batch), /^Error: influx v2 http:\/\/127\.0\.0\.1:1 \(org witness-org, bucket witness\): write of 1 point failed: connect ECONNREFUSED/);
});

function v1Config(url: string, timeoutMs: number): InfluxConfig {
  return { url, api: 'v1', database: 'x', measurement: 'witness', batchSize: 10, timeoutMs, backoffMaxMs: 100 };
}
