/**
 * The InfluxDB mirror's v1 path against a real InfluxDB 1.6.7 (DESIGN §4) started by the test:
 * the ledger's records read back with /query must equal the ledger — every index once, tags and
 * fields as docs/FOLLOWERS.md says — through load, a re-sent batch, a server outage and a
 * follower restart; a broken target is reported through onError, never thrown at the broker.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import mqtt from 'mqtt';
import { tempDir } from '../../helpers/tmp.js';
import { openTestLedger } from '../../helpers/ledger.js';
import { readRecords, type Rec } from '../../helpers/records.js';
import { startInfluxd, queryInfluxV1, mixedRecord, expectedInfluxRow, pollUntil, startAppendLoad, freePort, type TestServer, type InfluxRow } from '../../helpers/influx.js';
import { startInfluxMirror, createInfluxSink, type InfluxMirror } from '../../../broker/followers/influx.js';
import { readCursor, type FollowedRecord } from '../../../broker/followers/follower.js';
import { startBroker } from '../../../broker/server.js';
import type { InfluxConfig } from '../../../broker/config/config.js';
import type { Ledger } from '../../../shared/ledger/writer.js';

const NODE = 'test-node';
let influx: TestServer;
let serverDir: string;
let dbCounter = 0;

before(async () => {
  serverDir = mkdtempSync(join(tmpdir(), 'witness-influxd-'));
  influx = await startInfluxd(serverDir);
});
after(async () => {
  await influx?.close();
  rmSync(serverDir, { recursive: true, force: true });
});

function v1Config(url: string, over: Partial<InfluxConfig> = {}): InfluxConfig {
  return { url, api: 'v1', database: `witness_${process.pid}_${++dbCounter}`, measurement: 'witness', batchSize: 500, timeoutMs: 5_000, backoffMaxMs: 400, ...over };
}

async function appendMixed(ledger: Ledger, from: number, count: number, t0: number, perMs = 1): Promise<void> {
  for (let k = 0; k < count; k += 100) {
    const n = Math.min(100, count - k);
    await Promise.all(Array.from({ length: n }, (_, j) => ledger.append(mixedRecord(from + k + j, t0 + Math.floor((from + k + j) / perMs), NODE))));
  }
}

/** The rows equal the records: same count, every index once, each row exactly the expected one. */
function assertMirrors(rows: InfluxRow[], records: Rec[], nodeId = NODE): void {
  const byIndex = new Map<number, InfluxRow>();
  for (const row of rows) {
    const i = row['i'] as number;
    assert.ok(!byIndex.has(i), `index ${i} appears twice`);
    byIndex.set(i, row);
  }
  assert.equal(rows.length, records.length, 'one point per record');
  for (const rec of records) {
    const row = byIndex.get(rec.i);
    assert.ok(row, `record ${rec.i} (${rec.e}) is missing`);
    assert.deepEqual(row, expectedInfluxRow(rec, nodeId), `record ${rec.i}`);
  }
}

async function waitCaughtUp(m: InfluxMirror, ledger: Ledger, ms = 30_000): Promise<void> {
  assert.ok(await m.follower.drain(ms), `mirror did not catch up: ${JSON.stringify(m.follower.status())}`);
  assert.equal(m.follower.cursor, ledger.durableSize);
}

test('v1: 3,000 mixed records (3 per ms, escapes, checkpoints) read back from InfluxDB 1.6.7 equal the ledger', async (t) => {
  const dir = tempDir(t);
  const { ledger } = await openTestLedger(dir, { checkpointEveryRecords: 500 }, NODE);
  const cfg = v1Config(influx.url);
  const errors: string[] = [];
  const m = startInfluxMirror({ dataDir: dir, ledger, cfg, nodeId: NODE, onError: (e) => errors.push((e as Error).message) });
  t.after(() => m.stop());
  // Three records per millisecond: the index in the low digits of the ns time keeps them apart.
  await appendMixed(ledger, 0, 3000, Date.now() - 3_600_000, 3);
  // Closed first: its final checkpoint record is mirrored too.
  await ledger.close();
  await waitCaughtUp(m, ledger);
  await m.stop();
  const records = await readRecords(dir);
  assert.ok(records.length > 3000 && records.some((r) => r.e === 'checkpoint'), 'the ledger added checkpoint records');
  const rows = await queryInfluxV1(influx.url, cfg.database!, 'witness');
  assertMirrors(rows, records);
  assert.deepEqual(errors, []);
  assert.equal(readCursor(dir, 'influx'), records.length);
  assert.match(m.sink.describe(), /^influx v1 http:\/\/127\.0\.0\.1:\d+ database=witness_\d+_\d+ measurement=witness$/);
});

test('v1: writing the same batch twice leaves exactly one point per record', async (t) => {
  const dir = tempDir(t);
  const { ledger } = await openTestLedger(dir, {}, NODE);
  const t0 = Date.now() - 60_000;
  await appendMixed(ledger, 0, 200, t0, 4);
  await ledger.close();
  const batch: FollowedRecord[] = (await readRecords(dir)).map((r) => ({ index: r.i, line: JSON.stringify(r), record: r }));
  const cfg = v1Config(influx.url);
  const sink = createInfluxSink(cfg, NODE);
  await sink.write(batch);
  await sink.write(batch);
  await sink.write(batch.slice(50, 120));
  await sink.close();
  await assert.rejects(sink.write(batch), /closed/);
  assertMirrors(await queryInfluxV1(influx.url, cfg.database!, 'witness'), await readRecords(dir));
});

test('v1: a real broker (mqtt.js clients) mirrored record for record', async (t) => {
  const dir = tempDir(t);
  const broker = await startBroker({ dataDir: join(dir, 'data'), nodeId: 'node-mqtt', listeners: [{ type: 'mqtt', host: '127.0.0.1', port: 0 }] });
  let brokerStopped = false;
  t.after(async () => {
    if (!brokerStopped) await broker.stop();
  });
  const cfg = v1Config(influx.url, { batchSize: 7 });
  const m = startInfluxMirror({ dataDir: join(dir, 'data'), ledger: broker.ledger, cfg, nodeId: broker.nodeId });
  t.after(() => m.stop());
  const sub = await mqtt.connectAsync(broker.urls[0]!, { clientId: 'watcher', reconnectPeriod: 0 });
  await sub.subscribeAsync('plant/#', { qos: 1 });
  const pub = await mqtt.connectAsync(broker.urls[0]!, { clientId: 'pump 7, "north"=wing', reconnectPeriod: 0 });
  for (let k = 0; k < 20; k++) await pub.publishAsync(`plant/line 1/pump,7/t=${k}`, `{"v":${k}}`, { qos: (k % 3) as 0 | 1 | 2 });
  await pub.endAsync();
  await sub.endAsync();
  await broker.stop();
  brokerStopped = true;
  await waitCaughtUp(m, broker.ledger, 15_000);
  await m.stop();
  const records = await readRecords(join(dir, 'data'));
  assert.ok(records.filter((r) => r.e === 'publish').length >= 20, 'the publishes are in the ledger');
  assert.ok(records.some((r) => r.e === 'connect') && records.some((r) => r.e === 'disconnect') && records.some((r) => r.e === 'subscribe'));
  const rows = await queryInfluxV1(influx.url, cfg.database!, 'witness');
  assertMirrors(rows, records, 'node-mqtt');
  const pubRow = rows.find((r) => r['e'] === 'publish' && r['c'] === 'pump 7, "north"=wing');
  assert.ok(pubRow, 'client ids with spaces, commas, quotes and equals survive as fields');
  assert.match(pubRow['topic'] as string, /^plant\/line 1\/pump,7\/t=\d+$/);
});

test('v1: server down under load: appends never wait, the mirror backs off, catches up, no loss, no duplicate', async (t) => {
  const ownDir = mkdtempSync(join(tmpdir(), 'witness-influxd-outage-'));
  const own = await startInfluxd(ownDir);
  // Stopped before its data goes (a server writes on its way out).
  t.after(async () => {
    await own.close();
    rmSync(ownDir, { recursive: true, force: true });
  });
  const dir = tempDir(t);
  const { ledger } = await openTestLedger(dir, { checkpointEveryRecords: 1000 }, NODE);
  const cfg = v1Config(own.url, { batchSize: 200, backoffMaxMs: 300, timeoutMs: 2_000 });
  const errors: string[] = [];
  const m = startInfluxMirror({ dataDir: dir, ledger, cfg, nodeId: NODE, backoffMinMs: 50, onError: (e) => errors.push((e as Error).message) });
  t.after(() => m.stop());

  // Load: 20 appends every 5 ms until stopped.
  const load = startAppendLoad(ledger, Date.now() - 600_000, NODE);
  t.after(() => load.stop());

  await pollUntil(async () => m.follower.status().handled, (h) => h >= 500, 20_000, 20);
  assert.ok(m.follower.status().handled >= 500, 'mirroring before the outage');

  await own.stop();
  const downAt = Date.now();
  const appendedBeforeOutage = load.started;
  const sawFailures = await pollUntil(async () => m.follower.status().failures, (f) => f > 0, 10_000, 20);
  assert.ok(sawFailures > 0, 'the follower saw the server down');
  // Keep appending while the server is down; every append made now must resolve now.
  await new Promise((r) => setTimeout(r, Math.max(0, 2_500 - (Date.now() - downAt))));
  await Promise.all(load.pending());
  const duringOutage = load.started - appendedBeforeOutage;
  assert.ok(duringOutage > 200, `appends went on during the outage (${duringOutage})`);
  const lagDuringOutage = m.follower.status().lag;
  assert.ok(lagDuringOutage > 0, 'the mirror fell behind');

  await own.restart();
  await new Promise((r) => setTimeout(r, 500));
  await load.stop();
  await ledger.close();
  await waitCaughtUp(m, ledger, 30_000);
  assert.equal(m.follower.status().failures, 0);
  await m.stop();

  assert.ok(errors.length > 0 && errors.every((e) => e.startsWith(`influx v1 ${own.url} (database ${cfg.database})`)), errors.slice(0, 3).join('\n'));
  assert.ok(errors.some((e) => /ECONNREFUSED|closed|reset/i.test(e)), errors.slice(0, 3).join('\n'));
  const records = await readRecords(dir);
  assertMirrors(await queryInfluxV1(own.url, cfg.database!, 'witness'), records);
});

test('v1: a follower stopped mid-stream resumes at its cursor: no gap, nothing sent twice', async (t) => {
  const dir = tempDir(t);
  const { ledger } = await openTestLedger(dir, {}, NODE);
  const cfg = v1Config(influx.url, { batchSize: 50 });
  const t0 = Date.now() - 120_000;
  await appendMixed(ledger, 0, 1500, t0);
  const first = startInfluxMirror({ dataDir: dir, ledger, cfg, nodeId: NODE });
  // Stop while it is still working through the backlog.
  await pollUntil(async () => first.follower.status().handled, (h) => h >= 100, 10_000, 5);
  await first.stop();
  const stoppedAt = first.follower.cursor;
  assert.equal(readCursor(dir, 'influx'), stoppedAt);
  assert.ok(stoppedAt > 0 && stoppedAt < ledger.durableSize, `stopped mid-stream (cursor ${stoppedAt} of ${ledger.durableSize})`);

  await appendMixed(ledger, 1500, 500, t0);
  const second = startInfluxMirror({ dataDir: dir, ledger, cfg, nodeId: NODE });
  t.after(() => second.stop());
  await ledger.close();
  await waitCaughtUp(second, ledger);
  await second.stop();
  assert.equal(second.follower.status().handled, ledger.durableSize - stoppedAt, 'the second run sent exactly what the first had not');
  assertMirrors(await queryInfluxV1(influx.url, cfg.database!, 'witness'), await readRecords(dir));
});

test('a broken target is reported through onError with what and why, and the broker goes on', async (t) => {
  const dir = tempDir(t);
  const { ledger } = await openTestLedger(dir, {}, NODE);
  await appendMixed(ledger, 0, 30, Date.now() - 60_000);
  const deadPort = await freePort();

  const cases: Array<{ name: string; cfg: InfluxConfig; want: RegExp }> = [
    { name: 'unreachable', cfg: v1Config(`http://127.0.0.1:${deadPort}`), want: new RegExp(`^influx v1 http://127\\.0\\.0\\.1:${deadPort} \\(database witness_\\d+_\\d+\\): CREATE DATABASE failed: connect ECONNREFUSED`) },
    {
      name: 'v2 against InfluxDB 1.6.7',
      cfg: { url: influx.url, api: 'v2', org: 'o', bucket: 'b', measurement: 'witness', batchSize: 100, timeoutMs: 5_000, backoffMaxMs: 200 },
      want: /^influx v2 http:\/\/127\.0\.0\.1:\d+ \(org o, bucket b\): write of \d+ points refused: HTTP 404 .*InfluxDB before 1\.8\? use api: v1/,
    },
    { name: 'v1 without a database', cfg: { ...v1Config(influx.url), database: undefined }, want: /^influx mirror config: api v1 needs a database$/ },
    { name: 'not a URL', cfg: v1Config('not a url'), want: /^influx mirror config: url "not a url" is not a URL/ },
    {
      name: 'retention policy that does not exist',
      cfg: v1Config(influx.url, { retentionPolicy: 'nope' }),
      want: /^influx v1 http:\/\/127\.0\.0\.1:\d+ \(database witness_\d+_\d+\): write of \d+ points refused: HTTP \d+ .*retention policy not found: nope/,
    },
  ];
  for (const c of cases) {
    const errors: Array<{ message: string; attempt: number }> = [];
    const m = startInfluxMirror({ dataDir: dir, ledger, cfg: c.cfg, nodeId: NODE, backoffMinMs: 20, onError: (e, attempt) => errors.push({ message: (e as Error).message, attempt }) });
    await pollUntil(async () => errors.length, (k) => k >= 2, 10_000, 10);
    const status = m.follower.status();
    await m.stop();
    assert.ok(errors.length >= 2, `${c.name}: retried (${errors.length})`);
    assert.match(errors[0]!.message, c.want, c.name);
    assert.deepEqual(errors.slice(0, 2).map((e) => e.attempt), [1, 2]);
    assert.equal(status.cursor, 0, `${c.name}: nothing skipped`);
    assert.ok(status.failures >= 1 && status.lastError !== undefined);
  }
  // The ledger took appends all along.
  await ledger.append(mixedRecord(99, Date.now(), NODE));
  await ledger.close();
});
