import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { loadScenario, parseScenario, parseDuration, DEFAULTS, type ScenarioProblem } from '../../simulator/scenario.js';
import { INCIDENT_TYPES, type Scenario } from '../../simulator/types.js';
import { loadConfig } from '../../broker/config/index.js';
import { Acl } from '../../broker/acl/index.js';
import { Policies } from '../../broker/policy/index.js';
import { WitnessError, type WitnessErrorCode } from '../../shared/errors.js';

const SCENARIOS = new URL('../../../simulator/scenarios/', import.meta.url).pathname;
const FILE = '/sc/test.yaml';

function throwsCode(fn: () => unknown, code: WitnessErrorCode): WitnessError {
  try {
    fn();
  } catch (e) {
    assert.ok(e instanceof WitnessError, `expected a WitnessError, got ${String(e)}`);
    assert.equal(e.code, code, e.message);
    return e;
  }
  assert.fail(`expected ${code}, nothing was thrown`);
}

function problems(lines: string[]): ScenarioProblem[] {
  const e = throwsCode(() => parseScenario(lines.join('\n') + '\n', FILE), 'WITNESS_ERR_SCENARIO_INVALID');
  const list = e.details.problems as ScenarioProblem[];
  assert.ok(Array.isArray(list) && list.length > 0);
  return list;
}

const show = (ps: ScenarioProblem[]): string => ps.map((p) => `${p.line}:${p.col} ${p.path}: ${p.message} (${p.hint})`).join('\n');

/** Exactly one problem, at line:col on `path`, whose message matches `what` (and hint `hint`). */
function one(lines: string[], line: number, col: number, path: string, what: RegExp, hint?: RegExp): ScenarioProblem {
  const ps = problems(lines);
  assert.equal(ps.length, 1, `expected one problem, got:\n${show(ps)}`);
  const p = ps[0]!;
  assert.deepEqual([p.line, p.col, p.path], [line, col, path], show(ps));
  assert.match(p.message, what);
  if (hint) assert.match(p.hint, hint);
  return p;
}

/** A valid scenario; tests replace single lines. Line numbers are 1-based indexes + 1. */
const BASE = [
  'name: t', //              1
  'seed: "s-1"', //          2
  'duration: 10s', //        3
  'fleets:', //              4
  '  - name: a', //          5
  '    count: 3', //         6
  '    interval: 1s', //     7
];
const withLines = (extra: string[]): string[] => [...BASE, ...extra];
const replaceLine = (n: number, text: string, lines = BASE): string[] => lines.map((l, i) => (i === n - 1 ? text : l));

describe('parseScenario: defaults', () => {
  test('a minimal scenario resolves every default', () => {
    const s = parseScenario(['seed: x', 'duration: 8000', 'fleets:', '  - { name: f, count: 2 }'].join('\n'), '/dir/minimal.yaml');
    const want: Scenario = {
      name: 'minimal',
      seed: 'x',
      durationMs: 8000,
      rampMs: 0,
      audience: 'mqtt-witness',
      clockUncertaintyMs: 5,
      envelopeMode: 'observe',
      subscriber: { filter: '', qos: 0 },
      fleets: [
        {
          name: 'f',
          count: 2,
          idPattern: '{fleet}-{n}',
          keySeed: 'f',
          topic: 'devices/{id}/telemetry',
          intervalMs: 1000,
          jitter: 0,
          qos: [0, 1, 0],
          retain: 0,
          payload: { model: 'json', sensors: [{ ...DEFAULTS.sensor }], padTo: 0 },
        },
      ],
      incidents: [],
    };
    assert.deepEqual(s, want);
  });

  test('incident defaults: all fleets, 10 % of devices, at 25 % of the duration, once', () => {
    const s = parseScenario(withLines(['incidents:', '  - type: clock-skew', '  - type: burst', '  - type: connect-storm']).join('\n'), FILE);
    assert.deepEqual(s.incidents[0], { type: 'clock-skew', fleets: [], devices: 0.1, atMs: 2500, count: 1, everyMs: 1000, skewMs: 60_000, connects: 5, messages: 50 });
    assert.equal(s.incidents[1]!.messages, 50);
    assert.equal(s.incidents[2]!.connects, 5);
  });

  test('rate, QoS shorthand, payload shorthands, durations with units', () => {
    const s = parseScenario(
      [
        'seed: x',
        'duration: 1m30s',
        'ramp: 1.5s',
        'clockUncertainty: 20ms',
        'envelopeMode: enforce',
        'subscriber: { filter: "devices/#", qos: 1 }',
        'fleets:',
        '  - { name: a, count: 10, rate: 20, qos: 2, retain: 0.5, jitter: 0.25, payload: { model: constant, size: 64, byte: 0x41 } }',
        '  - { name: b, count: 1, interval: 2h, qos: { 0: 1, 1: 3 }, payload: { model: random, size: 100 } }',
        '  - { name: c, count: 1, payload: { model: random, size: [8, 16] } }',
      ].join('\n'),
      FILE,
    );
    assert.equal(s.durationMs, 90_000);
    assert.equal(s.rampMs, 1500);
    assert.equal(s.clockUncertaintyMs, 20);
    assert.equal(s.envelopeMode, 'enforce');
    assert.deepEqual(s.subscriber, { filter: 'devices/#', qos: 1 });
    const [a, b, c] = s.fleets;
    assert.equal(a!.intervalMs, 500); // 10 devices × 1000 / 20 per second
    assert.deepEqual(a!.qos, [0, 0, 1]);
    assert.deepEqual(a!.payload, { model: 'constant', size: 64, byte: 0x41 });
    assert.equal(b!.intervalMs, 7_200_000);
    assert.deepEqual(b!.qos, [1, 3, 0]);
    assert.deepEqual(b!.payload, { model: 'random', minSize: 100, maxSize: 100 });
    assert.deepEqual(c!.payload, { model: 'random', minSize: 8, maxSize: 16 });
  });

  test('parseDuration', () => {
    assert.equal(parseDuration(250), 250);
    assert.equal(parseDuration('250ms'), 250);
    assert.equal(parseDuration('10s'), 10_000);
    assert.equal(parseDuration('1.1s'), 1100);
    assert.equal(parseDuration('2m'), 120_000);
    assert.equal(parseDuration('1h30m'), 5_400_000);
    for (const bad of ['10', '10sec', '-1s', '1.5ms', 'x', 1.5, -3]) assert.equal(typeof parseDuration(bad), 'object', String(bad));
  });
});

describe('parseScenario: problems with FILE:LINE:COL, path and hint', () => {
  test('an unknown key, with did-you-mean', () => {
    one(replaceLine(7, '    intervall: 1s'), 7, 5, 'fleets[0].intervall', /unknown key "intervall"/, /did you mean interval\?/);
    one(withLines(['durration: 5s']), 8, 1, 'durration', /unknown key/, /did you mean duration\?/);
  });

  test('a bad duration', () => {
    one(replaceLine(3, 'duration: 10sec'), 3, 11, 'duration', /"10sec" is not a duration/, /units ms, s, m, h/);
    one(replaceLine(3, 'duration: "250"'), 3, 11, 'duration', /has no unit/, /250ms/);
    one(replaceLine(7, '    interval: 0'), 7, 15, 'fleets[0].interval', /out of range/);
  });

  test('a bad id pattern', () => {
    one(withLines(['    idPattern: "dev-{m}"']), 8, 16, 'fleets[0].idPattern', /unknown placeholder \{m\}/, /did you mean \{n\}\?/);
    one(withLines(['    idPattern: "dev {n}"']), 8, 16, 'fleets[0].idPattern', /"dev 0" \(device 0\) is not a valid device id/, /A-Z a-z 0-9/);
    one(withLines(['    idPattern: "dev"']), 8, 16, 'fleets[0].idPattern', /has no \{n\}: all 3 devices would be named "dev"/, /add \{n\}/);
    one(withLines(['    idPattern: "dev-{n"']), 8, 16, 'fleets[0].idPattern', /unclosed/);
    // 63 characters + "99": device 99 is too long (65), device 0 is not (64).
    const long = 'x'.repeat(63);
    one(replaceLine(6, '    count: 100', withLines([`    idPattern: "${long}{n}"`])), 8, 16, 'fleets[0].idPattern', /\(device 99\) is not a valid device id/);
  });

  test('duplicate device ids across fleets', () => {
    const ps = problems(withLines(['    idPattern: "d-{n}"', '  - name: b', '    count: 5', '    idPattern: "d-{n}"']));
    assert.equal(ps.length, 1, show(ps));
    assert.deepEqual([ps[0]!.line, ps[0]!.col, ps[0]!.path], [11, 16, 'fleets[1].idPattern']);
    assert.match(ps[0]!.message, /device id "d-0" of fleet b is also a device of fleet a \(fleets\[0\]\)/);
    assert.match(ps[0]!.hint, /unique across fleets/);
  });

  test('duplicate fleet names', () => {
    one(withLines(['  - name: a', '    count: 1', '    idPattern: "other-{n}"']), 8, 11, 'fleets[1].name', /fleet "a" is defined twice/);
  });

  test('an unknown incident type, with did-you-mean; an unknown fleet', () => {
    one(withLines(['incidents:', '  - type: replay']), 9, 11, 'incidents[0].type', /expected one of unsigned, bad-signature/, /did you mean replayed\?/);
    one(withLines(['incidents:', '  - type: burst', '    fleets: [a, bb]']), 10, 17, 'incidents[0].fleets[1]', /no fleet is named "bb"/);
  });

  test('incident keys that belong to another type, and occurrences past the end', () => {
    one(withLines(['incidents:', '  - type: burst', '    skew: 60s']), 10, 11, 'incidents[0].skew', /skew applies only to clock-skew incidents/, /remove skew/);
    one(withLines(['incidents:', '  - type: burst', '    at: 10s']), 10, 9, 'incidents[0].at', /not within the duration/);
    one(withLines(['incidents:', '  - type: burst', '    at: 5s', '    count: 3', '    every: 3s']), 11, 12, 'incidents[0].count', /last occurrence .* 11s\) is not within the duration \(10s\)/);
    one(withLines(['incidents:', '  - type: clock-skew', '    skew: 2s']), 10, 11, 'incidents[0].skew', /may pass as normal clock disagreement/);
  });

  test('topics: no wildcards, valid, not under forbidden/', () => {
    one(withLines(['    topic: "devices/+/x"']), 8, 12, 'fleets[0].topic', /contains a wildcard/);
    one(withLines(['    topic: "devices/{ide}"']), 8, 12, 'fleets[0].topic', /unknown placeholder \{ide\}/, /did you mean \{id\}\?/);
    one(withLines(['    topic: "forbidden/{id}"']), 8, 12, 'fleets[0].topic', /under forbidden\//);
  });

  test('ranges and exclusive choices', () => {
    one(replaceLine(6, '    count: 100001'), 6, 12, 'fleets[0].count', /out of range/, /1–100000 devices/);
    one(withLines(['    jitter: 1']), 8, 13, 'fleets[0].jitter', /1 is out of range/, /\[0, 1\)/);
    one(withLines(['    rate: 5']), 8, 11, 'fleets[0].rate', /interval or rate, not both/);
    one(withLines(['    payload: { model: json, size: 5 }']), 8, 35, 'fleets[0].payload.size', /size does not apply to payload model json/);
    one(withLines(['    payload: { model: constant }']), 8, 14, 'fleets[0].payload', /needs size/);
    one(withLines(['    qos: { 3: 1 }']), 8, 12, 'fleets[0].qos.3', /unknown QoS "3"/);
    one(withLines(['incidents:', '  - type: burst', '    messages: 100001']), 10, 15, 'incidents[0].messages', /out of range/);
  });

  test('required keys and YAML errors; all problems at once, in line order; the message lists them as FILE:LINE:COL', () => {
    const ps = problems(['name: t', 'fleets:', '  - name: a', '    count: 0', '    intervall: 1s']);
    assert.deepEqual(
      ps.map((p) => [p.line, p.path]),
      [
        [1, ''],
        [1, ''],
        [4, 'fleets[0].count'],
        [5, 'fleets[0].intervall'],
      ],
      show(ps),
    );
    assert.match(ps[0]!.message + ps[1]!.message, /missing required key seed.*missing required key duration|missing required key duration.*missing required key seed/);
    const e = throwsCode(() => parseScenario('seed: x\nduration: 1s\nfleets:\n  - name: a\n    count: 0\n', FILE), 'WITNESS_ERR_SCENARIO_INVALID');
    assert.match(e.message, /^scenario \/sc\/test\.yaml: 1 problem\n\/sc\/test\.yaml:5:12: fleets\[0\]\.count: 0 is out of range \(use 1–100000 devices\)$/);
    const y = problems(['seed: x', 'seed: y', 'duration: 1s', 'fleets: [ {name: a, count: 1}']);
    assert.ok(y.some((p) => /YAML/.test(p.message)), show(y));
    const empty = problems(['# nothing']);
    assert.match(empty[0]!.message, /empty/);
  });

  test('loadScenario: a missing file is WITNESS_ERR_IO', () => {
    throwsCode(() => loadScenario(join(SCENARIOS, 'no-such.yaml')), 'WITNESS_ERR_IO');
  });
});

describe('example scenarios', () => {
  const files = ['smoke.yaml', 'incidents.yaml', 'incidents-enforce.yaml', 'fleet-10k.yaml'];
  for (const f of files) {
    test(`${f} parses`, () => {
      const s = loadScenario(join(SCENARIOS, f));
      assert.equal(s.name, f.replace(/\.yaml$/, ''));
    });
  }

  test('smoke: 5 devices, 5 s, clean', () => {
    const s = loadScenario(join(SCENARIOS, 'smoke.yaml'));
    assert.equal(s.fleets.reduce((n, f) => n + f.count, 0), 5);
    assert.equal(s.durationMs, 5000);
    assert.equal(s.incidents.length, 0);
  });

  test('incidents: every incident type, 10–20 devices, at most 15 s, a subscriber', () => {
    const s = loadScenario(join(SCENARIOS, 'incidents.yaml'));
    assert.deepEqual([...new Set(s.incidents.map((x) => x.type))].sort(), [...INCIDENT_TYPES].sort());
    const n = s.fleets.reduce((a, f) => a + f.count, 0);
    assert.ok(n >= 10 && n <= 20, String(n));
    assert.ok(s.durationMs + s.rampMs <= 15_000);
    assert.equal(s.subscriber.filter, 'devices/#');
    assert.equal(s.envelopeMode, 'observe');
  });

  test('incidents-enforce.yaml is incidents.yaml with envelopeMode enforce', () => {
    const a = loadScenario(join(SCENARIOS, 'incidents.yaml'));
    const b = loadScenario(join(SCENARIOS, 'incidents-enforce.yaml'));
    assert.equal(b.envelopeMode, 'enforce');
    assert.deepEqual({ ...b, name: a.name, envelopeMode: a.envelopeMode }, a);
  });

  test('fleet-10k: 10,000 devices with a ramp', () => {
    const s = loadScenario(join(SCENARIOS, 'fleet-10k.yaml'));
    assert.equal(s.fleets.reduce((n, f) => n + f.count, 0), 10_000);
    assert.ok(s.rampMs > 0);
  });

  for (const [file, mode] of [
    ['incidents.broker.yaml', 'observe'],
    ['incidents-enforce.broker.yaml', 'enforce'],
  ] as const) {
    test(`${file}: parses with loadConfig; token auth + anonymous subscriber, devices confined to devices/{id}/#, envelope ${mode}`, () => {
      const cfg = loadConfig(join(SCENARIOS, file));
      assert.equal(cfg.auth.anonymous, true);
      assert.equal(cfg.auth.token.audience, 'mqtt-witness');
      assert.equal(cfg.acl.enabled, true);
      assert.equal(cfg.defaultPolicy.envelope, mode);
      assert.equal(cfg.defaultPolicy.audit, 'payload');
      const acl = new Acl(cfg.acl);
      const dev = { identity: 'device:sensor-001+0a0b0c0d', clientId: 'sensor-001' };
      assert.equal(acl.checkPublish(dev, 'devices/sensor-001/telemetry').allowed, true);
      assert.equal(acl.checkPublish(dev, 'devices/sensor-001/telemetry/elsewhere').allowed, true);
      assert.equal(acl.checkPublish(dev, 'forbidden/sensor-001/telemetry').allowed, false);
      assert.equal(acl.checkPublish(dev, 'devices/sensor-002/telemetry').allowed, false);
      assert.equal(acl.checkSubscribe({ identity: 'anonymous', clientId: 'sub' }, 'devices/#').allowed, true);
      assert.equal(acl.checkPublish({ identity: 'anonymous', clientId: 'sub' }, 'devices/x/telemetry').allowed, false);
      const pol = new Policies({ policies: cfg.policies, defaultPolicy: cfg.defaultPolicy });
      for (const t of ['devices/meter-1/energy', 'forbidden/meter-1/telemetry']) assert.equal(pol.forTopic(t).envelope, mode);
      // The two broker configs differ only in the envelope mode.
      const other = readFileSync(join(SCENARIOS, mode === 'observe' ? 'incidents-enforce.broker.yaml' : 'incidents.broker.yaml'), 'utf8');
      const otherCfg = loadConfig(join(SCENARIOS, mode === 'observe' ? 'incidents-enforce.broker.yaml' : 'incidents.broker.yaml'));
      assert.ok(other.length > 0);
      assert.deepEqual({ ...otherCfg, file: cfg.file, sha256: cfg.sha256, defaultPolicy: cfg.defaultPolicy }, cfg);
    });
  }
});
