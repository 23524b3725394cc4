import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { DEFAULT_CONFIG, loadConfig, parseConfig, type ConfigProblem, type ResolvedConfig } from '../../../broker/config/index.js';
import { DEFAULT_ACL_RULES } from '../../../broker/acl/index.js';
import { Acl } from '../../../broker/acl/index.js';
import { Policies } from '../../../broker/policy/index.js';
import { WitnessError, type WitnessErrorCode } from '../../../shared/errors.js';
import { tempDir } from '../../helpers/tmp.js';

const EXAMPLE = new URL('../../../../broker/config/example.yaml', import.meta.url).pathname;
const HASH = 'scrypt$16384$8$1$x0Q4ZWbnSUE1vvIBV390rA==$CVrQVezLR07dYHq1A87+wufZRVdvNsiywQJap2JEYos=';

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

/** The problems parseConfig reports for `lines` (joined with \n), as a file named test.yaml. */
function problems(lines: string[], file = '/cfg/test.yaml'): ConfigProblem[] {
  const e = throwsCode(() => parseConfig(lines.join('\n') + '\n', file), 'WITNESS_ERR_CONFIG_INVALID');
  const list = e.details.problems as ConfigProblem[];
  assert.ok(Array.isArray(list) && list.length > 0);
  return list;
}

/** Exactly one problem, at line:col, on `path`, whose message matches `what`. */
function one(lines: string[], line: number, col: number, path: string, what: RegExp): ConfigProblem {
  const ps = problems(lines);
  assert.equal(ps.length, 1, `expected one problem, got:\n${ps.map((p) => `${p.line}:${p.col} ${p.path}: ${p.message}`).join('\n')}`);
  const p = ps[0]!;
  assert.deepEqual([p.line, p.col, p.path], [line, col, path], p.message);
  assert.match(p.message, what);
  assert.ok(p.hint.length > 0, 'every problem has a hint');
  return p;
}

const ok = (lines: string[], file = '/cfg/test.yaml'): ResolvedConfig => parseConfig(lines.join('\n') + '\n', file);

describe('defaults: no config file', () => {
  test('MQTT on 127.0.0.1:1883, anonymous accepted, ACL off, observe + metadata everywhere', () => {
    const c = loadConfig();
    assert.deepEqual(c.listeners, [{ type: 'mqtt', host: '127.0.0.1', port: 1883 }]);
    assert.equal(c.auth.anonymous, true);
    assert.deepEqual(c.auth.users, []);
    assert.deepEqual(c.auth.certificates, []);
    assert.equal(c.acl.enabled, false);
    assert.deepEqual(c.policies, []);
    assert.deepEqual(c.defaultPolicy, { audit: 'metadata', envelope: 'observe', unwrap: false, mask: [] });
    assert.equal(c.http.port, 0);
    assert.equal(c.ledger.fsync, 'batch');
    assert.equal(c.file, undefined);
    assert.equal(c.nodeId, undefined);
    assert.equal(c.dataDir, DEFAULT_CONFIG.dataDir);
  });

  test('the defaults allow and observe everything', () => {
    const c = loadConfig();
    const acl = new Acl(c.acl);
    const who = { identity: 'anonymous', clientId: 'mosquitto_pub' };
    assert.deepEqual(acl.checkPublish(who, '$SYS/broker/x'), { allowed: true, rule: 'default', reason: 'access control off' });
    assert.equal(acl.checkSubscribe(who, '#').allowed, true);
    const p = new Policies(c).forTopic('any/topic');
    assert.deepEqual([p.audit, p.envelope, p.unwrap, p.rule], ['metadata', 'observe', false, 'defaultPolicy']);
  });

  test('each call returns a fresh copy; DEFAULT_CONFIG is frozen', () => {
    const a = loadConfig();
    a.listeners[0]!.port = 1;
    a.auth.users.push({ username: 'x', passwordHash: HASH });
    const b = loadConfig();
    assert.equal(b.listeners[0]!.port, 1883);
    assert.deepEqual(b.auth.users, []);
    assert.ok(Object.isFrozen(DEFAULT_CONFIG) && Object.isFrozen(DEFAULT_CONFIG.listeners[0]));
  });

  test('an empty file (or only comments) is all defaults, recorded with its hash', () => {
    const c = ok(['# nothing here']);
    assert.equal(c.auth.anonymous, true);
    assert.equal(c.acl.enabled, false);
    assert.equal(c.file, '/cfg/test.yaml');
    assert.match(c.sha256 ?? '', /^[0-9a-f]{64}$/);
  });

  test('writing an auth section turns anonymous off unless it says otherwise', () => {
    assert.equal(ok(['auth: {}']).auth.anonymous, false);
    assert.equal(ok(['auth:', '  anonymous: true']).auth.anonymous, true);
    assert.equal(ok(['acl:', '  enabled: true']).auth.anonymous, true, 'no auth section: anonymous stays on');
  });

  test('acl enabled without rules gets the default rule set; rules: [] denies everything', () => {
    assert.deepEqual(ok(['acl:', '  enabled: true']).acl.rules, DEFAULT_ACL_RULES);
    const none = ok(['acl:', '  enabled: true', '  rules: []']);
    assert.deepEqual(none.acl.rules, []);
    assert.equal(new Acl(none.acl).checkPublish({ identity: 'device:d1', clientId: 'd1' }, 'devices/d1/x').allowed, false);
  });

  test('relative paths are resolved against the config file directory', () => {
    assert.equal(ok(['dataDir: data'], '/etc/witness/broker.yaml').dataDir, '/etc/witness/data');
    assert.equal(ok(['dataDir: /var/lib/w'], '/etc/witness/broker.yaml').dataDir, '/var/lib/w');
  });

  test('listener defaults depend on the type', () => {
    const c = ok(['listeners:', '  - type: ws', '  - {}']);
    assert.deepEqual(c.listeners, [
      { type: 'ws', host: '127.0.0.1', port: 8083, path: '/mqtt' },
      { type: 'mqtt', host: '127.0.0.1', port: 1883 },
    ]);
  });

  test('policies inherit left-out fields from defaultPolicy', () => {
    const c = ok(['defaultPolicy:', '  envelope: enforce', 'policies:', '  - topic: "a/#"', '    audit: payload']);
    assert.deepEqual(c.policies, [{ topic: 'a/#', audit: 'payload', envelope: 'enforce', unwrap: false, mask: [] }]);
  });

  test('certificate fingerprints are normalised: colons dropped, lower case', () => {
    const fp = Array.from({ length: 32 }, (_, i) => i.toString(16).padStart(2, '0').toUpperCase()).join(':');
    const c = ok(['auth:', '  certificates:', `    - { fingerprint: "${fp}", identity: gw-1 }`]);
    assert.equal(c.auth.certificates[0]!.fingerprint, fp.replaceAll(':', '').toLowerCase());
  });

  test('a missing config file is an I/O error naming it', (t) => {
    const dir = tempDir(t);
    const e = throwsCode(() => loadConfig(join(dir, 'nope.yaml')), 'WITNESS_ERR_IO');
    assert.match(e.message, /nope\.yaml/);
  });
});

describe('example.yaml', () => {
  test('the shipped example loads', () => {
    const c = loadConfig(EXAMPLE);
    assert.equal(c.nodeId, 'edge-1');
    assert.equal(c.acl.enabled, true);
    assert.equal(c.auth.anonymous, false);
    assert.equal(c.auth.users[0]!.username, 'alice');
    assert.equal(c.listeners.length, 2);
    assert.equal(c.policies.length, 3);
    // It builds a working Acl and Policies.
    const acl = new Acl(c.acl);
    assert.equal(acl.checkPublish({ identity: 'device:d1', clientId: 'd1' }, 'devices/d1/telemetry/temp').allowed, true);
    assert.equal(acl.checkSubscribe({ identity: 'user:alice', clientId: 'c', username: 'alice' }, 'devices/+/telemetry/#').rule, 'rules[2]');
    assert.equal(acl.checkSubscribe({ identity: 'user:bob', clientId: 'c', username: 'bob' }, 'devices/+/telemetry/#').rule, 'rules[1]');
    const p = new Policies(c);
    assert.equal(p.forTopic('devices/d1/telemetry/location').rule, 'policies[0]');
    assert.equal(p.forTopic('devices/d1/telemetry/temp').envelope, 'enforce');
  });

  test('with its TLS listener uncommented (and the files present) it loads too', (t) => {
    const dir = tempDir(t);
    const lines = readFileSync(EXAMPLE, 'utf8').split('\n');
    const a = lines.findIndex((l) => l.includes('# BEGIN tls-listener'));
    const b = lines.findIndex((l) => l.includes('# END tls-listener'));
    assert.ok(a > 0 && b > a + 1);
    for (let i = a + 1; i < b; i++) lines[i] = lines[i]!.replace(/^(\s*)# /, '$1');
    mkdirSync(join(dir, 'tls'));
    for (const f of ['server.crt', 'server.key', 'clients-ca.crt']) writeFileSync(join(dir, 'tls', f), 'PEM');
    writeFileSync(join(dir, 'broker.yaml'), lines.join('\n'));
    const c = loadConfig(join(dir, 'broker.yaml'));
    assert.deepEqual(c.listeners[2], {
      type: 'mqtts',
      host: '0.0.0.0',
      port: 8883,
      tls: { cert: join(dir, 'tls/server.crt'), key: join(dir, 'tls/server.key'), ca: join(dir, 'tls/clients-ca.crt'), clientCertificates: 'optional' },
    });
  });
});

describe('unknown keys', () => {
  test('listners: reported at its key with "did you mean listeners?"', () => {
    const p = one(['nodeId: a', 'listners:', '  - port: 1884'], 2, 1, 'listners', /unknown key "listners"/);
    assert.equal(p.hint, 'did you mean listeners?');
  });

  test('nested: a typo inside a listener', () => {
    const p = one(['listeners:', '  - type: mqtt', '    prot: 1884'], 3, 5, 'listeners[0].prot', /unknown key "prot"/);
    assert.equal(p.hint, 'did you mean port?');
  });

  test('a key far from any known one lists the known keys', () => {
    const p = one(['ledger:', '  compression: zstd'], 2, 3, 'ledger.compression', /unknown key/);
    assert.match(p.hint, /known keys here: fsync, fsyncIntervalMs/);
  });

  test('top-level keys of later releases (alerts, followers) are unknown today', () => {
    const ps = problems(['alerts: []', 'followers: []']);
    assert.deepEqual(ps.map((p) => p.path), ['alerts', 'followers']);
  });
});

describe('wrong types', () => {
  test('a quoted port', () => {
    const p = one(['listeners:', '  - port: "1883"'], 2, 11, 'listeners[0].port', /expected an integer \(TCP port\), got the string "1883"/);
    assert.equal(p.hint, 'write the number without quotes');
  });
  test('verifyThreads: a count 0–256; unset means the default', () => {
    assert.equal(parseConfig('verifyThreads: 3\n', '/cfg/t.yaml').verifyThreads, 3);
    assert.equal(parseConfig('verifyThreads: 0\n', '/cfg/t.yaml').verifyThreads, 0);
    assert.equal(parseConfig('nodeId: a\n', '/cfg/t.yaml').verifyThreads, undefined);
    one(['verifyThreads: 300'], 1, 16, 'verifyThreads', /300/);
    one(['verifyThreads: -1'], 1, 16, 'verifyThreads', /-1/);
  });
  test('yes is not a boolean in YAML 1.2', () => {
    one(['acl:', '  enabled: yes'], 2, 12, 'acl.enabled', /expected true or false, got the string "yes"/);
  });
  test('a mapping where a list belongs', () => {
    one(['listeners:', '  type: mqtt'], 2, 3, 'listeners', /expected a list, got a mapping/);
  });
  test('an empty value points at its key', () => {
    one(['http:', '  host:'], 2, 3, 'http.host', /expected a string, got nothing/);
  });
  test('the document must be a mapping', () => {
    one(['- a', '- b'], 1, 1, '', /expected a mapping, got a list/);
  });
  test('a fractional number', () => {
    one(['ledger:', '  fsyncIntervalMs: 2.5'], 2, 20, 'ledger.fsyncIntervalMs', /expected an integer/);
  });
});

describe('numbers out of range', () => {
  test('port 70000', () => {
    const p = one(['listeners:', '  - port: 70000'], 2, 11, 'listeners[0].port', /70000 is out of range/);
    assert.match(p.hint, /0–65535/);
  });
  test('segmentMaxBytes below 64 KiB', () => {
    one(['ledger:', '  segmentMaxBytes: 100'], 2, 20, 'ledger.segmentMaxBytes', /out of range/);
  });
  test('lingerMs above 1000, and 0 allowed', () => {
    const p = one(['ledger:', '  lingerMs: 5000'], 2, 13, 'ledger.lingerMs', /5000 is out of range/);
    assert.match(p.hint, /0–1000/);
    assert.equal(parseConfig('ledger:\n  lingerMs: 0\n', '/cfg/t.yaml').ledger.lingerMs, 0);
    assert.equal(parseConfig('nodeId: a\n', '/cfg/t.yaml').ledger.lingerMs, 5, 'the default');
  });
  test('nonceTtlMs shorter than the freshness window 2 × maxSkewMs', () => {
    one(['auth:', '  token:', '    maxSkewMs: 60000', '    nonceTtlMs: 100000'], 4, 17, 'auth.token.nonceTtlMs', /shorter than 2 × maxSkewMs/);
  });
});

describe('bad enum values', () => {
  test('fsync: bach suggests batch', () => {
    const p = one(['ledger:', '  fsync: bach'], 2, 10, 'ledger.fsync', /expected one of batch, interval, never/);
    assert.equal(p.hint, 'did you mean batch?');
  });
  test('audit level', () => {
    one(['policies:', '  - topic: a', '    audit: everything'], 3, 12, 'policies[0].audit', /expected one of none, metadata, payload, full/);
  });
  test('acl action', () => {
    const p = one(['acl:', '  rules:', '    - identity: "*"', '      allow: [publish, subscrbe]', '      topics: [a]'], 4, 24, 'acl.rules[0].allow[1]', /publish, subscribe/);
    assert.equal(p.hint, 'did you mean subscribe?');
  });
});

describe('bad topic filters and identities', () => {
  test('# not last in a policy topic', () => {
    one(['policies:', '  - topic: "a/#/b"'], 2, 12, 'policies[0].topic', /not a valid MQTT topic filter/);
  });
  test('+ sharing a level in an acl rule', () => {
    one(['acl:', '  rules:', '    - identity: "*"', '      deny: [publish]', '      topics: ["a/b+"]'], 5, 16, 'acl.rules[0].topics[0]', /not a valid MQTT topic filter/);
  });
  test('an unknown template', () => {
    const p = one(['acl:', '  rules:', '    - identity: "device:*"', '      allow: [publish]', '      topics: ["d/{clientID}/#"]'], 5, 16, 'acl.rules[0].topics[0]', /unknown template \{clientID\}/);
    assert.equal(p.hint, 'did you mean {clientId}?');
  });
  test('an unknown identity kind', () => {
    const p = one(['acl:', '  rules:', '    - identity: "devices:*"', '      allow: [publish]', '      topics: [a]'], 3, 17, 'acl.rules[0].identity', /unknown kind "devices"/);
    assert.equal(p.hint, 'did you mean device:*?');
  });
  test('a rule with both allow and deny, and one with neither', () => {
    const ps = problems(['acl:', '  rules:', '    - identity: "*"', '      allow: [publish]', '      deny: [publish]', '      topics: [a]', '    - identity: "*"', '      topics: [a]']);
    assert.deepEqual(ps.map((p) => [p.line, p.col, p.path]), [[5, 13, 'acl.rules[0].deny'], [7, 7, 'acl.rules[1]']]);
  });
  test('a missing required key is reported at its mapping', () => {
    one(['policies:', '  - audit: none'], 2, 5, 'policies[0]', /missing required key topic/);
  });
});

describe('TLS', () => {
  test('a missing TLS file, resolved against the config directory', (t) => {
    const dir = tempDir(t);
    writeFileSync(join(dir, 'server.crt'), 'PEM');
    const file = join(dir, 'broker.yaml');
    const e = throwsCode(() => parseConfig(['listeners:', '  - type: mqtts', '    tls:', '      cert: server.crt', '      key: server.key', ''].join('\n'), file), 'WITNESS_ERR_CONFIG_INVALID');
    const ps = e.details.problems as ConfigProblem[];
    assert.equal(ps.length, 1);
    assert.deepEqual([ps[0]!.line, ps[0]!.col, ps[0]!.path], [5, 12, 'listeners[0].tls.key']);
    assert.match(ps[0]!.message, new RegExp(`file not found: ${join(dir, 'server.key').replaceAll('/', '\\/')}`));
  });
  test('mqtts without tls', () => {
    one(['listeners:', '  - type: mqtts', '    port: 8883'], 2, 5, 'listeners[0]', /listener type mqtts needs tls/);
  });
  test('tls on a plain listener, path on a TCP listener', (t) => {
    const dir = tempDir(t);
    for (const f of ['c', 'k']) writeFileSync(join(dir, f), 'PEM');
    const e = throwsCode(
      () => parseConfig(['listeners:', '  - type: mqtt', '    path: /mqtt', '    tls: { cert: c, key: k }', ''].join('\n'), join(dir, 'b.yaml')),
      'WITNESS_ERR_CONFIG_INVALID',
    );
    const ps = e.details.problems as ConfigProblem[];
    assert.deepEqual(ps.map((p) => [p.line, p.col, p.path]), [[3, 11, 'listeners[0].path'], [4, 10, 'listeners[0].tls']]);
  });
});

describe('passwords and masks', () => {
  test('an invalid passwordHash', () => {
    one(['auth:', '  users:', '    - username: bob', '      passwordHash: "md5$abc"'], 4, 21, 'auth.users[0].passwordHash', /invalid password hash/);
  });
  test('a valid passwordHash is accepted', () => {
    assert.equal(ok(['auth:', '  users:', `    - { username: bob, passwordHash: "${HASH}" }`]).auth.users[0]!.passwordHash, HASH);
  });
  test('a duplicate username', () => {
    one(['auth:', '  users:', `    - { username: bob, passwordHash: "${HASH}" }`, `    - { username: bob, passwordHash: "${HASH}" }`], 4, 19, 'auth.users[1].username', /"bob" is listed twice \(first at auth\.users\[0\]\)/);
  });
  test('a bad mask path', () => {
    one(['policies:', '  - topic: a', '    mask: ["$.ok", "$..deep"]'], 3, 20, 'policies[0].mask[1]', /recursive descent/);
  });
});

describe('cross-field mistakes', () => {
  test('a policy shadowed by an earlier one', () => {
    one(['policies:', '  - topic: "devices/#"', '  - topic: "devices/+/telemetry"'], 3, 12, 'policies[1].topic', /never apply: policies\[0\] \(devices\/#\)/);
  });
  test('unwrap with envelope off', () => {
    one(['policies:', '  - topic: a', '    envelope: "off"', '    unwrap: true'], 4, 13, 'policies[0].unwrap', /unwrap needs envelope observe or enforce/);
  });
  test('two listeners on one address', () => {
    one(['listeners:', '  - port: 1884', '  - port: 1884'], 3, 11, 'listeners[1].port', /listeners\[0\] already uses 127\.0\.0\.1:1884/);
  });
});

describe('YAML itself', () => {
  test('a syntax error has a position', () => {
    // The flow sequence opened on line 1 is still open when line 2 starts at column 1.
    one(['listeners: [ { port: 1 }', 'http: {}'], 2, 1, '', /^YAML: Flow sequence .* must be sufficiently indented and end with a \]/);
    const ps = problems(['nodeId: edge-1', 'ledger:', '  fsync: batch', ' checkpointEveryMs: 5']);
    assert.deepEqual([ps[0]!.line, ps[0]!.col], [4, 1]);
    assert.match(ps[0]!.message, /^YAML: All mapping items must start at the same column/);
  });
  test('a duplicate key is an error at the repetition', () => {
    const ps = problems(['ledger:', '  fsync: batch', 'acl: {}', 'ledger:', '  fsync: never']);
    assert.deepEqual(ps.map((p) => [p.line, p.col]), [[4, 1]]);
    assert.match(ps[0]!.message, /unique/);
  });
  test('aliases are refused', () => {
    one(['http: &h { port: 0 }', 'defaultPolicy: *h'], 2, 16, 'defaultPolicy', /aliases/);
  });
  test('an unresolved tag', () => {
    const ps = problems(['nodeId: !secret x']);
    assert.equal(ps[0]!.line, 1);
    assert.match(ps[0]!.message, /tag/i);
  });
});

describe('every problem is collected', () => {
  const text = [
    'listners: []', //                    1: unknown key
    'listeners:',
    '  - type: mqtts', //                 3: needs tls
    '    port: 99999', //                 4: out of range
    'ledger:',
    '  fsync: bach', //                   6: bad enum
    'acl:',
    '  rules:',
    '    - identity: "user:*"',
    '      allow: [publish]',
    '      topics: ["#/x"]', //          11: bad filter
  ];

  test('all five, in source order, each with a hint', () => {
    const ps = problems(text);
    assert.deepEqual(
      ps.map((p) => [p.line, p.col, p.path]),
      [
        [1, 1, 'listners'],
        [3, 5, 'listeners[0]'],
        [4, 11, 'listeners[0].port'],
        [6, 10, 'ledger.fsync'],
        [11, 16, 'acl.rules[0].topics[0]'],
      ],
    );
    for (const p of ps) assert.ok(p.hint.length > 0);
  });

  test('the message lists them one per line as file:line:col: what (hint)', () => {
    const e = throwsCode(() => parseConfig(text.join('\n'), 'conf/broker.yaml'), 'WITNESS_ERR_CONFIG_INVALID');
    const lines = e.message.split('\n');
    assert.equal(lines[0], 'broker configuration conf/broker.yaml: 5 problems');
    assert.equal(lines.length, 6);
    assert.equal(lines[1], 'conf/broker.yaml:1:1: listners: unknown key "listners" (did you mean listeners?)');
    for (const l of lines.slice(1)) assert.match(l, /^conf\/broker\.yaml:\d+:\d+: .+ \(.+\)$/);
    assert.equal(e.details.file, 'conf/broker.yaml');
  });
});

describe('http, followers and alerts sections', () => {
  test('the example resolves them', () => {
    const c = loadConfig(EXAMPLE);
    assert.equal(c.http.tokens[0]!.role, 'auditor');
    assert.equal(c.http.metricsWithoutToken, false);
    assert.equal(c.followers.influx!.api, 'v1');
    assert.equal(c.followers.influx!.database, 'witness');
    assert.equal(c.followers.influx!.batchSize, 1000);
    assert.equal(c.alerts.topic, '$SYS/witness/alerts');
    assert.deepEqual((c.alerts.rules as { gaps: unknown }).gaps, { enabled: true, missing: 1, windowMs: 60000 });
  });
  test('defaults: no tokens, no mirror, alerts on', () => {
    const c = ok(['nodeId: a']);
    assert.deepEqual(c.http.tokens, []);
    assert.equal(c.followers.influx, undefined);
    assert.equal(c.alerts.enabled, true);
    assert.deepEqual(c.alerts.rules, {});
  });
  test('a token hash that is not 64 hex digits, a role that does not exist, a name twice', () => {
    one(['http:', '  tokens:', '    - { name: a, role: auditor, sha256: abc }'], 3, 41, 'http.tokens[0].sha256', /64 hex digits/);
    one(['http:', '  tokens:', `    - { name: a, role: root, sha256: "${'a'.repeat(64)}" }`], 3, 24, 'http.tokens[0].role', /auditor, operator, admin/);
    const ps = problems(['http:', '  tokens:', `    - { name: a, role: admin, sha256: "${'a'.repeat(64)}" }`, `    - { name: a, role: admin, sha256: "${'b'.repeat(64)}" }`]);
    assert.match(ps[0]!.message, /listed twice/);
  });
  test('influx v1 needs a database, v2 needs org and bucket; the URL must be http(s)', () => {
    one(['followers:', '  influx:', '    url: http://127.0.0.1:8086', '    api: v1'], 3, 5, 'followers.influx', /needs a database/);
    const ps = problems(['followers:', '  influx:', '    url: http://127.0.0.1:8086']);
    assert.deepEqual(ps.map((p) => p.message).sort(), ['api v2 needs bucket', 'api v2 needs org']);
    one(['followers:', '  influx:', '    url: ftp://x', '    database: d', '    api: v1'], 3, 10, 'followers.influx.url', /not an http\(s\) URL/);
  });
  test('alert rule thresholds are checked', () => {
    one(['alerts:', '  rules:', '    rateAnomaly: { factor: 0.5 }'], 3, 28, 'alerts.rules.rateAnomaly.factor', /out of range/);
    one(['alerts:', '  topic: "a/#"'], 2, 10, 'alerts.topic', /not a valid MQTT topic name/);
  });
});
