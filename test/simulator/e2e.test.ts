/**
 * The simulator end to end against the real `witness broker` (child process, 127.0.0.1, free
 * port): the every-incident scenario in observe and in enforce mode passes `witness sim check`;
 * the same check FAILS on an intact ledger rebuilt without one incident record, and on one with a
 * verdict changed; a replay of the recording into a fresh broker reproduces every device's
 * sequence numbers and payload hashes.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { makeWritable } from '../helpers/tmp.js';
import { startBrokerProcess, type BrokerProcess, runWitness as witness } from '../helpers/broker-process.js';
import { readRecords, type Rec } from '../helpers/records.js';
import { openTestLedger } from '../helpers/ledger.js';
import { INCIDENT_TYPES, type RunLine } from '../../simulator/types.js';

const SCENARIOS = new URL('../../../simulator/scenarios/', import.meta.url).pathname;

function runLines(file: string): RunLine[] {
  return readFileSync(file, 'utf8')
    .split('\n')
    .slice(1)
    .filter((l) => l !== '')
    .map((l) => JSON.parse(l) as RunLine);
}

/** Writes `records` (minus the ledger's own checkpoint records) into a new, intact ledger. */
async function rebuildLedger(dir: string, records: Rec[]): Promise<void> {
  const { ledger } = await openTestLedger(dir, {}, 'sim-e2e');
  for (const r of records) {
    if (r.e === 'checkpoint') continue;
    const { i: _i, ...body } = r;
    await ledger.append(body);
  }
  await ledger.close();
}

let tmp: string;
before(() => {
  tmp = mkdtempSync(join(tmpdir(), 'witness-sim-e2e-'));
});
after(() => {
  makeWritable(tmp);
  rmSync(tmp, { recursive: true, force: true });
});

async function scenarioRun(mode: 'observe' | 'enforce', tag: string = mode): Promise<{ data: string; run: string; broker: BrokerProcess; report: string }> {
  const data = join(tmp, `data-${tag}`);
  const run = join(tmp, `run-${tag}.ndjson`);
  const report = join(tmp, `report-${tag}`);
  assert.equal((await witness(['init', '--data', data, '--json'])).code, 0);
  const reg = await witness(['sim', 'register', join(SCENARIOS, 'incidents.yaml'), '--data', data, '--json']);
  assert.equal(reg.code, 0, reg.stderr);
  const config = join(SCENARIOS, mode === 'observe' ? 'incidents.broker.yaml' : 'incidents-enforce.broker.yaml');
  const broker = await startBrokerProcess(data, ['--config', config]);
  const r = await witness(['sim', 'run', join(SCENARIOS, 'incidents.yaml'), '--broker', broker.url, '--mode', mode, '--record', run, '--report', report, '--json']);
  assert.equal(r.code, 0, `sim run failed:\n${r.stdout}\n${r.stderr}`);
  return { data, run, broker, report };
}

for (const mode of ['observe', 'enforce'] as const) {
  test(`every incident type is caught by the ledger (${mode})`, { timeout: 180_000 }, async () => {
    const { data, run, broker, report } = await scenarioRun(mode);
    await broker.stop();
    const lines = runLines(run);
    const types = new Set(lines.flatMap((l) => ('incident' in l && l.incident ? [l.incident.type] : [])));
    assert.deepEqual([...types].sort(), [...INCIDENT_TYPES].sort(), 'the scenario injects every incident type');
    assert.ok(existsSync(join(report, 'report.html')) && existsSync(join(report, 'summary.json')));

    const ok = await witness(['sim', 'check', data, '--run', run, '--json']);
    assert.equal(ok.code, 0, `sim check should pass:\n${ok.stdout}\n${ok.stderr}`);
    const rep = JSON.parse(ok.stdout) as { ok: boolean; incidents: { total: number; caught: number; detectionRate: number } };
    assert.equal(rep.ok, true);
    assert.ok(rep.incidents.total >= INCIDENT_TYPES.length);
    assert.equal(rep.incidents.caught, rep.incidents.total);

    const records = await readRecords(data);
    if (mode === 'enforce') {
      // Under enforce the broker refused the forged ones: the ledger says so.
      assert.ok(records.some((r) => r.e === 'publish' && r.env === 'invalid' && r.ok === false));
    } else {
      assert.ok(records.some((r) => r.e === 'publish' && r.env === 'invalid' && r.ok === undefined));
    }

    // One incident record removed (the rest rewritten into an intact, verifiable ledger): caught as a miss.
    const victim = records.find((r) => r.e === 'publish' && r.env === 'wrong-topic')!;
    assert.ok(victim, 'a wrong-topic record to remove');
    const removed = join(tmp, `removed-${mode}`);
    await rebuildLedger(removed, records.filter((r) => r !== victim));
    const miss = await witness(['sim', 'check', removed, '--run', run, '--json']);
    assert.equal(miss.code, 1, `sim check must fail without the record:\n${miss.stdout}\n${miss.stderr}`);
    const missRep = JSON.parse(miss.stdout) as { ok: boolean; incidents: { missed: number }; misses: Array<Record<string, unknown>> };
    assert.equal(missRep.incidents.missed, 1);
    assert.match(JSON.stringify(missRep.misses[0]), /wrong-topic/);

    // A verdict changed: invalid → valid.
    const forged = records.map((r) => (r.e === 'publish' && r.env === 'invalid' ? { ...r, env: 'valid' } : r));
    const changed = join(tmp, `changed-${mode}`);
    await rebuildLedger(changed, forged);
    const bad = await witness(['sim', 'check', changed, '--run', run, '--json']);
    assert.equal(bad.code, 1, `sim check must fail with a changed verdict:\n${bad.stdout}`);
    assert.match(bad.stdout, /bad-signature/);
  });
}

test('replay of a recording reproduces every device sequence and payload hash in a new ledger', { timeout: 180_000 }, async () => {
  const { data, run, broker } = await scenarioRun('observe', 'replay-source');
  await broker.stop();
  const fresh = join(tmp, 'data-replay');
  assert.equal((await witness(['init', '--data', fresh, '--json'])).code, 0);
  const b2 = await startBrokerProcess(fresh, ['--config', join(SCENARIOS, 'incidents.broker.yaml')]);
  try {
    const rec2 = join(tmp, 'replay.ndjson');
    const r = await witness(['sim', 'replay', run, '--broker', b2.url, '--speed', '4', '--register', fresh, '--record', rec2, '--json']);
    assert.equal(r.code, 0, `${r.stdout}\n${r.stderr}`);
  } finally {
    await b2.stop();
  }
  const devices = new Set(runLines(run).flatMap((l) => (l.k === 'pub' ? [l.dev] : [])));
  const perDevice = (rs: Rec[]): Map<string, string[]> => {
    const m = new Map<string, string[]>();
    for (const r of rs) {
      if (r.e !== 'publish' || !devices.has(String(r.c))) continue;
      const list = m.get(String(r.c)) ?? [];
      list.push(`${String(r.seq)}:${String(r.h)}`);
      m.set(String(r.c), list);
    }
    return m;
  };
  const a = perDevice(await readRecords(data));
  const b = perDevice(await readRecords(fresh));
  assert.ok(a.size >= 5);
  assert.deepEqual(b, a);
});
