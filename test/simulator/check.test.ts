/**
 * `witness sim check`: a run file joined with a REAL ledger (the Ledger writer in a data directory
 * made as `witness init` makes it), holding broker-shaped records. A consistent pair passes; every
 * way the ledger can disagree with the ground truth must make it fail — it must be able to fail.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { chmodSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { createHash } from 'node:crypto';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { tempDir } from '../helpers/tmp.js';
import { openTestLedger } from '../helpers/ledger.js';
import { initDataDir } from '../../broker/data-dir.js';
import { RunFileWriter } from '../../simulator/run-file.js';
import { checkRun, formatCheckReport, simCheckCommand, type CheckReport, type LineProblem } from '../../simulator/check.js';
import { RUN_FORMAT, type Expectation, type IncidentType, type RunHeader, type RunLine, type RunPublish, type Scenario } from '../../simulator/types.js';
import type { CommandIo } from '../../shared/cli/cli.js';

const STARTED = Date.now() - 120_000;
const sha = (b: string | Uint8Array): string => createHash('sha256').update(b).digest('base64url');

function scenario(): Scenario {
  return {
    name: 'check-test',
    seed: 'seed',
    durationMs: 10_000,
    rampMs: 0,
    audience: 'mqtt-witness',
    clockUncertaintyMs: 50,
    envelopeMode: 'observe',
    subscriber: { filter: '', qos: 0 },
    fleets: [],
    incidents: [],
  };
}

const DEVICES = ['dev-a', 'dev-b', 'dev-c'];

function header(): RunHeader {
  return {
    format: RUN_FORMAT,
    kind: 'run',
    scenario: scenario(),
    startedAt: STARTED,
    broker: 'mqtt://127.0.0.1:1883',
    devices: DEVICES.map((id) => ({ id, fleet: 'f', pub: sha(id) })),
    tool: 'test',
  };
}

const VALID: Expectation = { present: true, env: 'valid', acl: 'allow', ok: true };

function pub(t: number, dev: string, n: number, payload: string, expect: Expectation, incident?: [IncidentType, number], sent = true): RunPublish {
  return {
    k: 'pub',
    t,
    dev,
    ref: `${dev}#${n}`,
    topic: `f/${dev}`,
    q: 1,
    r: false,
    sent,
    h: sha(payload),
    ph: sha(`app:${payload}`),
    seq: n,
    eh: sha(`env:${payload}`),
    b64: Buffer.from(payload).toString('base64'),
    ...(incident ? { incident: { type: incident[0], id: `${incident[0]}:${dev}:${incident[1]}` } } : {}),
    expect,
  };
}

/** The ground truth: 3 devices, 6 incident occurrences (one spanning two lines, one two connects). */
function runLines(): RunLine[] {
  return [
    { k: 'connect', t: 0, dev: 'dev-a', ref: 'dev-a@c0', ok: true, rc: 0, ms: 2 },
    { k: 'connect', t: 1, dev: 'dev-b', ref: 'dev-b@c0', ok: true, rc: 0, ms: 2 },
    { k: 'connect', t: 2, dev: 'dev-c', ref: 'dev-c@c0', ok: true, rc: 0, ms: 2 },
    pub(10, 'dev-a', 0, 'a0', VALID),
    pub(11, 'dev-a', 1, 'a1', VALID),
    pub(12, 'dev-b', 0, 'b0-plain', { present: true, env: 'missing', acl: 'allow', ok: true }, ['unsigned', 0]),
    pub(13, 'dev-b', 1, 'b1-altered', { present: true, env: 'invalid', acl: 'allow', ok: true }, ['bad-signature', 0]),
    // The replay sends a0's bytes again: same h as dev-a#0.
    { ...pub(14, 'dev-a', 2, 'a0', { present: true, env: 'replayed', acl: 'allow', ok: true }, ['replayed', 0]) },
    pub(15, 'dev-c', 0, 'c0', VALID),
    pub(16, 'dev-c', 1, 'c1-dropped', { present: false }, ['dropped', 0], false),
    pub(17, 'dev-c', 2, 'c2', { present: true, env: 'gap', gap: 1, acl: 'allow', ok: true }, ['dropped', 0]),
    pub(18, 'dev-c', 3, 'c3-acl', { present: true, env: 'valid', acl: 'deny', ok: false }, ['acl-violation', 0]),
    { k: 'disconnect', t: 19, dev: 'dev-c', why: 'refused' },
    { k: 'disconnect', t: 20, dev: 'dev-a', why: 'planned' },
    { k: 'connect', t: 21, dev: 'dev-a', ref: 'dev-a@c1', ok: true, rc: 0, incident: { type: 'connect-storm', id: 'connect-storm:dev-a:0' } },
    { k: 'disconnect', t: 22, dev: 'dev-a', why: 'planned' },
    { k: 'connect', t: 23, dev: 'dev-a', ref: 'dev-a@c2', ok: true, rc: 0, incident: { type: 'connect-storm', id: 'connect-storm:dev-a:0' } },
    pub(30, 'dev-b', 2, 'b2', VALID),
    { k: 'end', t: 40, sent: 10, acked: 10, received: 0, errors: 0 },
  ];
}

interface Rec {
  /** The run line it records (pub ref, connect ref), for tests to find it. */
  ref?: string;
  body: Record<string, unknown>;
}

/** What a broker that gets everything right writes for the run, plus records of other clients. */
function brokerRecords(lines: RunLine[]): Rec[] {
  const base = (t: number, e: string, c?: string): Record<string, unknown> => ({ v: 1, e, t: STARTED + t, u: 2, n: 'test-node', ...(c ? { s: `s-${c}`, c, id: `device:${c}+00000000`, a: '127.0.0.1:5000' } : { id: 'broker' }) });
  const out: Rec[] = [
    { body: { ...base(-5000, 'start'), listeners: ['mqtt://127.0.0.1:1883'] } },
    { body: { ...base(1, 'connect', 'other'), ok: true, rc: 0, auth: 'token' } },
    { ref: 'noise', body: { ...base(2, 'publish', 'other'), topic: 'noise/topic', q: 0, r: false, z: 5, h: sha('noise'), acl: 'allow', env: 'invalid' } },
  ];
  for (const l of lines) {
    if (l.k === 'connect') out.push({ ref: l.ref!, body: { ...base(l.t, 'connect', l.dev), ok: l.ok, rc: l.rc ?? 0, auth: 'token' } });
    else if (l.k === 'disconnect') out.push({ body: { ...base(l.t, 'disconnect', l.dev), why: 'clean' } });
    else if (l.k === 'pub' && l.sent) {
      const x = l.expect;
      const body: Record<string, unknown> = { ...base(l.t, 'publish', l.dev), actor: 'client', topic: l.topic, q: l.q, r: l.r, m: 1, z: 10, h: l.h, acl: x.acl ?? 'allow', env: x.env };
      if (x.gap !== undefined) body.gap = x.gap;
      if (x.env !== 'missing') Object.assign(body, { kid: `${l.dev}+00000000`, seq: l.seq, eh: l.eh });
      if (x.ok === false) body.ok = false;
      out.push({ ref: l.ref, body });
    }
  }
  return out;
}

interface Case {
  data: string;
  run: string;
  dir: string;
}

async function makeCase(t: { after: (fn: () => void) => void }, edit: (recs: Rec[]) => Rec[] = (r) => r, editRun: (lines: RunLine[]) => RunLine[] = (l) => l): Promise<Case> {
  const dir = tempDir(t, 'witness-simcheck-');
  const data = join(dir, 'data');
  const lines = editRun(runLines());
  const tl = await openTestLedger(data, { checkpointEveryRecords: 8 });
  for (const r of edit(brokerRecords(lines))) await tl.ledger.append(r.body);
  await tl.ledger.close();
  const run = join(dir, 'run.ndjson');
  const w = await RunFileWriter.open(run, header());
  for (const l of lines) w.write(l);
  await w.close();
  return { data, run, dir };
}

const without = (ref: string) => (recs: Rec[]): Rec[] => {
  const out = recs.filter((r) => r.ref !== ref);
  assert.equal(out.length, recs.length - 1, `no record ${ref}`);
  return out;
};
const change = (ref: string, fields: Record<string, unknown>) => (recs: Rec[]): Rec[] => {
  const r = recs.find((x) => x.ref === ref);
  assert.ok(r, `no record ${ref}`);
  Object.assign(r.body, fields);
  return recs;
};

function missedIds(r: CheckReport): string[] {
  return r.misses.map((m) => m.id);
}

describe('sim check: join of run and ledger', () => {
  test('a consistent pair passes: every incident caught, nothing flagged or lost', async (t) => {
    const c = await makeCase(t);
    const phases = new Set<string>();
    const r = await checkRun(c.data, c.run, { onProgress: (_d, _t, p) => phases.add(p) });
    assert.equal(r.ok, true, formatCheckReport(r));
    assert.equal(r.ledger.verified?.ok, true);
    assert.deepEqual(r.incidents, {
      total: 6,
      caught: 6,
      missed: 0,
      detectionRate: 1,
      byType: {
        unsigned: { total: 1, caught: 1 },
        'bad-signature': { total: 1, caught: 1 },
        replayed: { total: 1, caught: 1 },
        dropped: { total: 1, caught: 1 },
        'acl-violation': { total: 1, caught: 1 },
        'connect-storm': { total: 1, caught: 1 },
      },
    });
    assert.equal(r.falsePositives.count, 0);
    assert.equal(r.lost.count, 0);
    assert.equal(r.unexpected.count, 0, JSON.stringify(r.unexpected));
    assert.deepEqual({ ...r.connects, samples: undefined }, { expected: 5, recorded: 5, matched: 5, unanswered: 0, mismatches: 0, samples: undefined, disconnects: { run: 3, recorded: 3 } });
    assert.equal(r.run.complete, true);
    assert.equal(r.run.published, 9);
    assert.equal(r.run.dropped, 1);
    assert.equal(r.run.devices, 3);
    assert.equal(r.ledger.deviceRecords, 17); // 5 connects, 9 publishes, 3 disconnects
    assert.ok(phases.has('verify') && phases.has('ledger') && phases.has('run'), [...phases].join());
    const text = formatCheckReport(r);
    assert.match(text, /incidents\s+6\/6 caught — detection rate 100%/);
    assert.match(text, /bad-signature\s+1\s+1/);
    assert.match(text, /result\s+PASS/);
  });

  test('an incident record removed from the ledger: that incident is missed ("no record")', async (t) => {
    const c = await makeCase(t, without('dev-b#1'));
    const r = await checkRun(c.data, c.run);
    assert.equal(r.ok, false);
    assert.equal(r.ledger.verified?.ok, true, 'written without it: the ledger itself is intact');
    assert.deepEqual(missedIds(r), ['bad-signature:dev-b:0']);
    assert.equal(r.incidents.caught, 5);
    assert.equal(r.incidents.byType['bad-signature']?.caught, 0);
    const reason = r.misses[0]!.reasons[0]!;
    assert.equal(reason.ref, 'dev-b#1');
    assert.equal(reason.found, null);
    assert.deepEqual(reason.problems, ['no record']);
    assert.equal(r.falsePositives.count + r.lost.count, 0);
    const text = formatCheckReport(r);
    assert.match(text, /bad-signature:dev-b:0: 1\/1 line\(s\) not as expected/);
    assert.match(text, /dev-b#1 \(pub f\/dev-b\): no record/);
    assert.match(text, /result\s+FAIL: 1 incident\(s\) missed/);
  });

  test('a verdict changed (invalid → valid): missed, with expected and found', async (t) => {
    const c = await makeCase(t, change('dev-b#1', { env: 'valid' }));
    const r = await checkRun(c.data, c.run);
    assert.equal(r.ok, false);
    assert.deepEqual(missedIds(r), ['bad-signature:dev-b:0']);
    const reason = r.misses[0]!.reasons[0]!;
    assert.deepEqual(reason.problems, ['env valid, expected invalid']);
    assert.equal((reason.found as { env?: string }).env, 'valid');
  });

  test('a gap of the wrong size, an ACL verdict or a refusal that differs: missed', async (t) => {
    const gap = await checkRun((await makeCase(t, change('dev-c#2', { gap: 2 }))).data, (await makeCase(t)).run);
    // (the run files of two cases are identical: the ground truth does not depend on the ledger)
    assert.deepEqual(missedIds(gap), ['dropped:dev-c:0']);
    assert.deepEqual(gap.misses[0]!.reasons[0]!.problems, ['gap 2, expected gap 1']);
    const acl = await checkRun((await makeCase(t, change('dev-c#3', { acl: 'allow', ok: true }))).data, (await makeCase(t)).run);
    assert.deepEqual(missedIds(acl), ['acl-violation:dev-c:0']);
    assert.deepEqual(acl.misses[0]!.reasons[0]!.problems, ['acl allow, expected deny', 'accepted, expected refused (ok:false)']);
  });

  test('a clean message recorded gap: a false positive', async (t) => {
    const c = await makeCase(t, change('dev-a#1', { env: 'gap', gap: 1 }));
    const r = await checkRun(c.data, c.run);
    assert.equal(r.ok, false);
    assert.equal(r.incidents.missed, 0);
    assert.equal(r.falsePositives.count, 1);
    assert.equal(r.falsePositives.clean, 1);
    const s = r.falsePositives.samples[0] as LineProblem;
    assert.equal(s.ref, 'dev-a#1');
    assert.deepEqual(s.problems, ['env gap (gap 1), expected valid']);
    assert.match(formatCheckReport(r), /result\s+FAIL: 1 false positive/);
  });

  test('a clean message missing from the ledger: lost', async (t) => {
    const c = await makeCase(t, without('dev-c#0'));
    const r = await checkRun(c.data, c.run);
    assert.equal(r.ok, false);
    assert.equal(r.lost.count, 1);
    assert.equal(r.lost.samples[0]!.ref, 'dev-c#0');
    assert.equal(r.falsePositives.count, 0);
    assert.equal(r.incidents.missed, 0);
    assert.match(formatCheckReport(r), /FAIL: 1 lost/);
  });

  test('replayed copies are matched in order: the first copy is the original, the second the replay', async (t) => {
    // Same bytes twice; the ledger says the FIRST copy was the replay: both lines disagree.
    const swapped = await checkRun((await makeCase(t, (recs) => change('dev-a#0', { env: 'replayed' })(change('dev-a#2', { env: 'valid' })(recs)))).data, (await makeCase(t)).run);
    assert.equal(swapped.ok, false);
    assert.deepEqual(missedIds(swapped), ['replayed:dev-a:0']);
    assert.equal(swapped.falsePositives.clean, 1);
    assert.equal((swapped.falsePositives.samples[0] as LineProblem).ref, 'dev-a#0');
    // The replay's copy was never recorded: the original still matches, the replay has no record.
    const lostCopy = await checkRun((await makeCase(t, without('dev-a#2'))).data, (await makeCase(t)).run);
    assert.deepEqual(missedIds(lostCopy), ['replayed:dev-a:0']);
    assert.deepEqual(lostCopy.misses[0]!.reasons[0]!.problems, ['no record']);
    assert.equal(lostCopy.falsePositives.count + lostCopy.lost.count, 0);
  });

  test('a dropped (never sent) message that the ledger holds: missed', async (t) => {
    const c = await makeCase(t, (recs) => {
      const src = recs.find((r) => r.ref === 'dev-c#2')!;
      return [...recs, { ref: 'ghost', body: { ...src.body, h: sha('c1-dropped'), env: 'valid', gap: undefined } }];
    });
    const r = await checkRun(c.data, c.run);
    assert.equal(r.ok, false);
    assert.deepEqual(missedIds(r), ['dropped:dev-c:0']);
    assert.match(r.misses[0]!.reasons[0]!.problems[0]!, /expected no record: the message was never sent/);
    assert.equal(r.unexpected.count, 0, 'the record is the miss, not also unexpected');
  });

  test('connects: a storm connect missing is a miss and a mismatch; an extra connect record is a mismatch', async (t) => {
    const less = await checkRun((await makeCase(t, without('dev-a@c2'))).data, (await makeCase(t)).run);
    assert.equal(less.ok, false);
    assert.deepEqual(missedIds(less), ['connect-storm:dev-a:0']);
    assert.equal(less.connects.mismatches, 1);
    assert.equal(less.connects.recorded, 4);
    assert.deepEqual((less.connects.samples[0] as LineProblem).problems, ['no connect record']);

    const more = await checkRun(
      (await makeCase(t, (recs) => [...recs, { body: { v: 1, e: 'connect', t: STARTED + 35, u: 2, n: 'test-node', c: 'dev-b', ok: true, rc: 0 } }])).data,
      (await makeCase(t)).run,
    );
    assert.equal(more.ok, false);
    assert.equal(more.incidents.missed, 0);
    assert.equal(more.connects.mismatches, 1);
    assert.equal(more.connects.samples[0]!.kind, 'unexpected-connect');
    assert.match(formatCheckReport(more), /FAIL: 1 connect mismatch/);

    const refused = await checkRun((await makeCase(t, change('dev-b@c0', { ok: false, rc: 5 }))).data, (await makeCase(t)).run);
    assert.equal(refused.ok, false);
    assert.deepEqual((refused.connects.samples[0] as LineProblem).problems, ['recorded refused, the device saw it accepted']);
  });

  test('a connect that got no CONNACK and has no record is unanswered, not a mismatch', async (t) => {
    const c = await makeCase(t, without('dev-b@timeout'), (lines) => {
      lines.splice(1, 0, { k: 'connect', t: 1, dev: 'dev-b', ref: 'dev-b@timeout', ok: false, ms: 10_000, err: 'connect timeout' });
      return lines;
    });
    const r = await checkRun(c.data, c.run);
    assert.equal(r.ok, true, formatCheckReport(r));
    assert.equal(r.connects.unanswered, 1);
    assert.equal(r.connects.matched, 5);
  });

  test('records of other clients and outside the run window are ignored; unexpected records are classified', async (t) => {
    const old = { v: 1, e: 'publish', t: STARTED - 3_600_000, u: 2, n: 'test-node', c: 'dev-a', topic: 'f/dev-a', q: 1, r: false, h: sha('a0'), acl: 'allow', env: 'valid' };
    const c = await makeCase(t, (recs) => [recs[0]!, { body: old }, { body: { ...old, e: 'connect', ok: true, rc: 0 } }, ...recs]);
    const r = await checkRun(c.data, c.run);
    assert.equal(r.ok, true, formatCheckReport(r));
    assert.equal(r.ledger.outsideWindow, 2);

    const extraBody = { v: 1, e: 'publish', t: STARTED + 36, u: 2, n: 'test-node', c: 'dev-b', topic: 'f/dev-b', q: 0, r: false, h: sha('never-sent'), acl: 'allow', env: 'valid' };
    const extra = await checkRun((await makeCase(t, (recs) => [...recs, { body: extraBody }, { body: { ...extraBody, h: sha('dup'), d: true, env: 'replayed' } }])).data, (await makeCase(t)).run);
    assert.equal(extra.ok, true, 'a valid extra record and a retransmission are reported, not failures');
    assert.deepEqual([extra.unexpected.count, extra.unexpected.extra, extra.unexpected.retransmitted, extra.unexpected.flagged], [2, 1, 1, 0]);
    assert.match(formatCheckReport(extra), /unexpected\s+2 record/);

    const flagged = await checkRun((await makeCase(t, (recs) => [...recs, { body: { ...extraBody, env: 'invalid' } }])).data, (await makeCase(t)).run);
    assert.equal(flagged.ok, false);
    assert.equal(flagged.falsePositives.unexpected, 1);
    assert.equal(flagged.unexpected.flagged, 1);
  });

  test('a tampered ledger fails with verification on; with verify off the join decides', async (t) => {
    const c = await makeCase(t);
    const segs = join(c.data, 'ledger', 'segments');
    const seg = readdirSync(segs).filter((f) => f.endsWith('.jsonl')).map((f) => join(segs, f))[0]!;
    chmodSync(seg, 0o644);
    const text = readFileSync(seg, 'utf8');
    const noiseIndex = Number(/^\{"i":(\d+),[^\n]*noise\/topic/m.exec(text)?.[1]);
    assert.ok(Number.isSafeInteger(noiseIndex));
    writeFileSync(seg, text.replace('noise/topic', 'noise/topiX'));

    const r = await checkRun(c.data, c.run);
    assert.equal(r.ok, false);
    assert.equal(r.ledger.verified?.ok, false);
    assert.equal(r.ledger.verified?.firstBadIndex, noiseIndex);
    assert.ok(r.ledger.verified!.failureCount >= 1);
    assert.equal(r.incidents.missed, 0, 'the join itself agrees');
    assert.match(formatCheckReport(r), new RegExp(`verified\\s+TAMPERED: \\d+ failure\\(s\\), first at record ${noiseIndex}`));
    assert.match(formatCheckReport(r), /result\s+FAIL: ledger tampered/);

    const nv = await checkRun(c.data, c.run, { verify: false });
    assert.equal(nv.ok, true);
    assert.equal(nv.ledger.verified, undefined);
    assert.match(formatCheckReport(nv), /verified\s+no \(--no-verify\)/);
  });
});

// ── the command ──────────────────────────────────────────────────────────────────────────────

function capture(): { io: CommandIo; out: () => string; err: () => string } {
  let out = '';
  let err = '';
  const sink = (add: (s: string) => void) => new Writable({ write(chunk, _enc, cb) { add(String(chunk)); cb(); } });
  return { io: { stdout: sink((s) => (out += s)), stderr: sink((s) => (err += s)) }, out: () => out, err: () => err };
}

async function sim(...argv: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  const c = capture();
  const code = await simCheckCommand(argv, c.io);
  return { code, stdout: c.out(), stderr: c.err() };
}

describe('witness sim check (command)', () => {
  test('exit 0 on a pass, 1 on a fail; --json parses', async (t) => {
    const good = await makeCase(t);
    const ok = await sim(good.data, '--run', good.run);
    assert.equal(ok.code, 0, ok.stdout + ok.stderr);
    assert.match(ok.stdout, /result\s+PASS/);
    const okJson = await sim(good.data, '--run', good.run, '--json');
    assert.equal(okJson.code, 0);
    assert.equal((JSON.parse(okJson.stdout) as CheckReport).ok, true);

    const bad = await makeCase(t, without('dev-b#0'));
    const fail = await sim(bad.data, '--run', bad.run);
    assert.equal(fail.code, 1);
    assert.match(fail.stdout, /unsigned:dev-b:0/);
    assert.match(fail.stdout, /result\s+FAIL/);
    const failJson = await sim(bad.data, '--run', bad.run, '--json', '--no-verify');
    assert.equal(failJson.code, 1);
    const rep = JSON.parse(failJson.stdout) as CheckReport;
    assert.equal(rep.ok, false);
    assert.deepEqual(missedIds(rep), ['unsigned:dev-b:0']);
    assert.equal(rep.ledger.verified, undefined);

    // The data dir's own key, given explicitly (verifier key string) and as the ledger directory.
    const vkey = (JSON.parse(readFileSync(join(good.data, 'witness.json'), 'utf8')) as { verifierKey: string }).verifierKey;
    assert.equal((await sim(join(good.data, 'ledger'), '--run', good.run, '--key', vkey)).code, 0);
  });

  test('exit 2: usage, missing files, not a run file, wrong key', async (t) => {
    const c = await makeCase(t);
    const noRun = await sim(c.data);
    assert.equal(noRun.code, 2);
    assert.match(noRun.stderr, /--run FILE is required/);
    assert.equal((await sim('--run', c.run)).code, 2);
    const unknown = await sim(c.data, '--run', c.run, '--frobnicate');
    assert.equal(unknown.code, 2);
    assert.match(unknown.stderr, /WITNESS_ERR_USAGE/);
    const slack = await sim(c.data, '--run', c.run, '--slack', 'soon');
    assert.equal(slack.code, 2);
    assert.match(slack.stderr, /--slack expects a non-negative integer/);
    assert.equal((await sim(c.data, '--run', c.run, '--no-verify', '--key', 'x')).code, 2);
    const noDir = await sim(join(c.dir, 'nope'), '--run', c.run);
    assert.equal(noDir.code, 2);
    assert.match(noDir.stderr, /WITNESS_ERR_LEDGER_NOT_FOUND/);
    const missing = await sim(c.data, '--run', join(c.dir, 'missing.ndjson'));
    assert.equal(missing.code, 2);
    assert.match(missing.stderr, /WITNESS_ERR_IO/);

    const notRun = join(c.dir, 'not-run.txt');
    writeFileSync(notRun, 'this is not a run file\n');
    const nr = await sim(c.data, '--run', notRun, '--json');
    assert.equal(nr.code, 2);
    const err = JSON.parse(nr.stdout) as { ok: boolean; error: { code: string; message: string } };
    assert.equal(err.ok, false);
    assert.equal(err.error.code, 'WITNESS_ERR_RUN_FILE_FORMAT');
    assert.match(err.error.message, /not-run\.txt:1: not a simulator run file/);

    const other = await initDataDir(join(c.dir, 'other'), 'other-node');
    const wrong = await sim(c.data, '--run', c.run, '--key', other.manifest.verifierKey);
    assert.equal(wrong.code, 2);
    assert.match(wrong.stderr, /WITNESS_ERR_CHECKPOINT_UNSIGNED/);

    const help = await sim('--help');
    assert.equal(help.code, 0);
    assert.match(help.stdout, /witness sim check DATA_DIR --run FILE/);
  });
});
