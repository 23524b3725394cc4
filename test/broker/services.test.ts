/**
 * `witness broker` with its services on (alerts by default, the HTTP API with --http-port 0),
 * driven by the simulator: the alert rules fire on the incidents that trigger them — with the
 * incident devices as subjects — and stay silent on clean traffic; the alerts are ledger records
 * and are served by the API (admin token from DATA/keys/http-admin.token, made at first start).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { tempDir } from '../helpers/tmp.js';
import { startBrokerProcess, runWitness as witness } from '../helpers/broker-process.js';
import { readRecords } from '../helpers/records.js';
import type { RunLine } from '../../simulator/types.js';

const SCENARIOS = new URL('../../../simulator/scenarios/', import.meta.url).pathname;

interface AlertView {
  rule: string;
  subject: string;
}

async function alertsOf(httpUrl: string, data: string): Promise<AlertView[]> {
  const token = readFileSync(join(data, 'keys', 'http-admin.token'), 'utf8').trim();
  const r = await fetch(`${httpUrl}/api/v1/alerts`, { headers: { authorization: `Bearer ${token}` } });
  assert.equal(r.status, 200);
  const body = (await r.json()) as { alerts: AlertView[] };
  return body.alerts;
}

async function runScenario(t: { after: (fn: () => void) => void }, scenario: string, config?: string): Promise<{ data: string; run: string; alerts: AlertView[] }> {
  const dir = tempDir(t);
  const data = join(dir, 'data');
  const run = join(dir, 'run.ndjson');
  assert.equal((await witness(['init', '--data', data, '--json'])).code, 0);
  assert.equal((await witness(['sim', 'register', join(SCENARIOS, scenario), '--data', data])).code, 0);
  const broker = await startBrokerProcess(data, ['--http-port', '0', ...(config ? ['--config', join(SCENARIOS, config)] : [])]);
  try {
    // The services' lines follow the `listening` line.
    for (let i = 0; i < 100 && !/^http http/m.test(broker.stdout()); i++) await new Promise((res) => setTimeout(res, 50));
    const httpUrl = /^http (http:\/\/\S+)$/m.exec(broker.stdout())?.[1];
    assert.ok(httpUrl, `the broker prints its HTTP address:\n${broker.stdout()}`);
    const r = await witness(['sim', 'run', join(SCENARIOS, scenario), '--broker', broker.url, '--record', run, '--json']);
    assert.equal(r.code, 0, r.stderr);
    // Let the alert follower read the last records (bounded).
    let alerts: AlertView[] = [];
    for (let i = 0; i < 20; i++) {
      alerts = await alertsOf(httpUrl, data);
      await new Promise((res) => setTimeout(res, 250));
    }
    return { data, run, alerts };
  } finally {
    await broker.stop();
  }
}

test('alerts fire on the injected incidents, with the incident devices as subjects', { timeout: 180_000 }, async (t) => {
  const { data, run, alerts } = await runScenario(t, 'incidents.yaml', 'incidents.broker.yaml');
  const lines = readFileSync(run, 'utf8').split('\n').slice(1).filter(Boolean).map((l) => JSON.parse(l) as RunLine);
  const devicesWith = (type: string): Set<string> => new Set(lines.flatMap((l) => (l.k === 'pub' && l.incident?.type === type ? [`device:${l.dev}`] : [])));
  const subjects = (rule: string): Set<string> => new Set(alerts.filter((a) => a.rule === rule).map((a) => a.subject));

  // A gap (dropped, reordered) is one missing message: over the default threshold of 1.
  for (const d of [...devicesWith('dropped'), ...devicesWith('reordered')]) assert.ok(subjects('gaps').has(d), `a gaps alert for ${d}: ${JSON.stringify(alerts)}`);
  for (const d of devicesWith('clock-skew')) assert.ok(subjects('clock-skew').has(d), `a clock-skew alert for ${d}`);
  // Every alert names a device that an incident touched: none for a clean device.
  const touched = new Set(lines.flatMap((l) => ((l.k === 'pub' || l.k === 'connect') && l.incident ? [`device:${l.dev}`] : [])));
  for (const a of alerts.filter((x) => x.subject.startsWith('device:'))) assert.ok(touched.has(a.subject), `alert on a clean device: ${JSON.stringify(a)}`);

  const records = await readRecords(data);
  const recorded = records.filter((r) => r.e === 'alert');
  assert.equal(recorded.length, alerts.length, 'every alert is a ledger record');
});

test('clean traffic raises no alert', { timeout: 120_000 }, async (t) => {
  const { data, alerts } = await runScenario(t, 'smoke.yaml');
  assert.deepEqual(alerts, []);
  assert.equal((await readRecords(data)).filter((r) => r.e === 'alert').length, 0);
});
