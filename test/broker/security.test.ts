/**
 * `witness broker --config` with authentication, access control and envelope policies, attacked
 * by real MQTT clients: every refusal is refused and recorded with its reason, and every envelope
 * verdict is recorded as such (`observe` delivers, `enforce` refuses).
 */
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import mqtt, { type MqttClient } from 'mqtt';
import { startBrokerProcess, type BrokerProcess, witnessOk as witness } from '../helpers/broker-process.js';
import { waitForRecords, readRecords, type Rec } from '../helpers/records.js';
import { generateSeed, publicKeyFromSeed } from '../../shared/keys/ed25519.js';
import { deviceKid } from '../../shared/keys/key-id.js';
import { formatPublicKey } from '../../shared/keys/key-file.js';
import { createConnectToken, TOKEN_USERNAME } from '../../shared/token/index.js';
import { signEnvelope, envelopeHash, GENESIS_PREV } from '../../shared/envelope/index.js';
import { hashPassword } from '../../broker/config/password.js';

interface Device {
  id: string;
  seed: Uint8Array;
  pub: Uint8Array;
  kid: Uint8Array;
  seq: number;
  prev: Uint8Array;
}

function device(id: string): Device {
  const seed = generateSeed();
  const pub = publicKeyFromSeed(seed);
  return { id, seed, pub, kid: deviceKid(id, pub), seq: 0, prev: GENESIS_PREV };
}

/** Signs the device's next envelope (advancing its sequence and chain unless `advance` is false). */
function envelope(d: Device, topic: string, payload: string, over: Partial<{ seq: number; time: number; topic: string }> = {}, advance = true): Buffer {
  const bytes = signEnvelope({
    seed: d.seed,
    kid: d.kid,
    payload: Buffer.from(payload),
    claims: { time: over.time ?? Date.now(), uncertainty: 20, timeSource: 'ntp', seq: over.seq ?? d.seq, prev: d.prev, topic: over.topic ?? topic },
  });
  if (advance) {
    d.seq = (over.seq ?? d.seq) + 1;
    d.prev = envelopeHash(bytes);
  }
  return Buffer.from(bytes);
}

/** Flips one bit of the payload inside an envelope: the signature no longer matches. */
function flipPayload(env: Buffer, payload: string): void {
  const at = env.indexOf(Buffer.from(payload));
  assert.ok(at > 0);
  env[at] = env[at]! ^ 0x01;
}

let dir: string;
let data: string;
let broker: BrokerProcess;
const d1 = device('d1');
const d2 = device('d2');
const revoked = device('d3');
const stranger = device('d4'); // never registered

function token(d: Device, over: { clientId?: string; now?: number } = {}): Buffer {
  return Buffer.from(createConnectToken({ seed: d.seed, deviceId: d.id, publicKey: d.pub, ...(over.now !== undefined ? { now: over.now } : {}) }));
}

async function connectDevice(d: Device, clientId = d.id, tok = token(d)): Promise<MqttClient> {
  return mqtt.connectAsync(broker.url, { clientId, username: TOKEN_USERNAME, password: tok, reconnectPeriod: 0 });
}

/** Connects expecting a refusal; returns the CONNACK return code. */
async function refusedCode(opts: mqtt.IClientOptions): Promise<number> {
  try {
    const c = await mqtt.connectAsync(broker.url, { ...opts, reconnectPeriod: 0, connectTimeout: 5000 });
    c.end(true);
    return 0;
  } catch (e) {
    return (e as { code?: number }).code ?? -1;
  }
}

before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'witness-security-'));
  data = join(dir, 'data');
  witness('init', '--data', data, '--node-id', 'sec');
  for (const d of [d1, d2, revoked]) witness('device', 'add', '--data', data, '--id', d.id, `--public-key=${formatPublicKey(d.pub)}`);
  witness('device', 'revoke', '--data', data, '--id', revoked.id);
  writeFileSync(
    join(dir, 'witness.yaml'),
    [
      'auth:',
      '  anonymous: false',
      '  users:',
      `    - { username: alice, passwordHash: "${hashPassword('correct horse')}" }`,
      'acl:',
      '  enabled: true',
      '  rules:',
      '    - { identity: "device:*", allow: [publish, subscribe], topics: ["devices/{clientId}/#"] }',
      '    - { identity: "user:alice", allow: [subscribe], topics: ["devices/+/data"] }',
      'policies:',
      '  - { topic: "devices/+/strict/#", envelope: enforce, audit: payload }',
      '  - { topic: "devices/+/plain/#", envelope: observe, unwrap: true }',
      '',
    ].join('\n'),
  );
  broker = await startBrokerProcess(data, ['--config', join(dir, 'witness.yaml')]);
});

after(async () => {
  await broker?.kill();
  rmSync(dir, { recursive: true, force: true });
});

function connects(rs: Rec[], why: string): Rec[] {
  return rs.filter((r) => r.e === 'connect' && r.why === why);
}

describe('authentication', () => {
  test('a device connects with its connect token, identified by its key', async () => {
    const c = await connectDevice(d1);
    await c.endAsync();
    const rs = await waitForRecords(data, (rs) => rs.some((r) => r.e === 'connect' && r.c === 'd1' && r.ok === true));
    const rec = rs.find((r) => r.e === 'connect' && r.c === 'd1' && r.ok === true)!;
    assert.equal(rec.auth, 'token');
    assert.match(String(rec.id), /^device:d1\+[0-9a-f]{8}$/);
  });

  test('a password user connects as user:alice; a bad password and anonymous clients are refused', async () => {
    const ok = await mqtt.connectAsync(broker.url, { clientId: 'alice-1', username: 'alice', password: 'correct horse', reconnectPeriod: 0 });
    await ok.endAsync();
    assert.equal(await refusedCode({ clientId: 'alice-2', username: 'alice', password: 'wrong' }), 4);
    assert.equal(await refusedCode({ clientId: 'anon' }), 5);
    const rs = await waitForRecords(data, (rs) => connects(rs, 'password:bad').length > 0 && connects(rs, 'anonymous-refused').length > 0);
    assert.equal(rs.find((r) => r.e === 'connect' && r.c === 'alice-1')!.id, 'user:alice');
    assert.equal(connects(rs, 'password:bad')[0]!.rc, 4);
    assert.equal(connects(rs, 'anonymous-refused')[0]!.rc, 5);
  });

  test('token attacks are refused and recorded with the reason', async () => {
    const replay = token(d1);
    (await connectDevice(d1, 'd1', replay)).end(true);
    const cases: Array<[string, number, () => Promise<number>]> = [
      ['token:replayed', 4, () => refusedCode({ clientId: 'd1', username: TOKEN_USERNAME, password: replay })],
      ['token:expired', 4, () => refusedCode({ clientId: 'd1', username: TOKEN_USERNAME, password: token(d1, { now: Date.now() - 60_000 }) })],
      ['token:wrong-client', 4, () => refusedCode({ clientId: 'd2', username: TOKEN_USERNAME, password: token(d1) })],
      ['token:revoked', 5, () => refusedCode({ clientId: 'd3', username: TOKEN_USERNAME, password: token(revoked) })],
      ['token:unknown-key', 5, () => refusedCode({ clientId: 'd4', username: TOKEN_USERNAME, password: token(stranger) })],
    ];
    for (const [reason, rc, attempt] of cases) assert.equal(await attempt(), rc, reason);
    const rs = await waitForRecords(data, (rs) => cases.every(([reason]) => connects(rs, reason).length > 0));
    for (const [reason, rc] of cases) {
      const r = connects(rs, reason)[0]!;
      assert.equal(r.rc, rc, reason);
      assert.equal(r.ok, false);
      assert.equal(r.id, 'unauthenticated');
    }
  });
});

describe('access control', () => {
  test('subscription escapes get SUBACK 0x80 and are recorded with the deciding rule', async () => {
    const c = await connectDevice(d1);
    for (const f of ['#', '+/#', '$SYS/#', 'devices/d2/#', 'devices/+/data']) {
      // MQTT.js reports a SUBACK of 0x80 as an error.
      await assert.rejects(c.subscribeAsync(f, { qos: 0 }), /Unspecified error/, f);
    }
    const own = await c.subscribeAsync('devices/d1/#', { qos: 1 });
    assert.equal(own[0]!.qos, 1);
    await c.endAsync();
    const rs = await waitForRecords(data, (rs) => rs.filter((r) => r.e === 'subscribe' && r.c === 'd1').length >= 6);
    for (const f of ['#', '+/#', '$SYS/#', 'devices/d2/#', 'devices/+/data']) {
      const r = rs.find((x) => x.e === 'subscribe' && x.c === 'd1' && x.f === f)!;
      assert.equal(r.acl, 'deny', f);
      assert.equal(r.g, 128, f);
      assert.equal(typeof r.rule, 'string', f);
    }
  });

  test("publishing into another device's subtree is refused (connection closed) and recorded", async () => {
    const c = await connectDevice(d1);
    const closed = new Promise<void>((r) => c.once('close', () => r()));
    c.publish('devices/d2/data', 'intrusion', { qos: 1 });
    await closed;
    c.end(true);
    const rs = await waitForRecords(data, (rs) => rs.some((r) => r.e === 'publish' && r.topic === 'devices/d2/data'));
    const r = rs.find((x) => x.e === 'publish' && x.topic === 'devices/d2/data')!;
    assert.equal(r.acl, 'deny');
    assert.equal(r.ok, false);
    assert.equal(r.c, 'd1');
  });
});

describe('envelope verdicts', () => {
  test('observe records each verdict and still delivers', async () => {
    const sub = await connectDevice(d1, 'd1');
    const got: string[] = [];
    sub.on('message', (_t, p) => got.push(p.toString('hex')));
    await sub.subscribeAsync('devices/d1/plain/#', { qos: 1 });
    // The device publishes on the connection it subscribed on (its token binds its one client id).
    const topic = 'devices/d1/plain/t';
    const valid = envelope(d1, topic, 'v1');
    const badSig = envelope(d1, topic, 'v2');
    flipPayload(badSig, 'v2'); // the payload changed after signing
    const wrongTopic = envelope(d1, topic, 'v3', { topic: 'devices/d1/plain/other' });
    // The broker last saw sequence 0 (the invalid and wrong-topic ones do not count): 4 leaves 3 missing.
    const skipped = envelope(d1, topic, 'gap', { seq: 4 });
    const skewed = envelope(d1, topic, 'skew', { time: Date.now() + 3_600_000 }); // an hour in the future
    const sends: Array<[string, Buffer]> = [
      ['valid', valid],
      ['missing', Buffer.from('plain text')],
      ['invalid', badSig],
      ['wrong-topic', wrongTopic],
      ['replayed', valid],
      ['gap', skipped],
      ['clock-skew', skewed],
    ];
    for (const [, bytes] of sends) await sub.publishAsync(topic, bytes, { qos: 1 });
    const rs = await waitForRecords(data, (rs) => rs.filter((r) => r.e === 'publish' && r.topic === topic).length >= sends.length);
    const recs = rs.filter((r) => r.e === 'publish' && r.topic === topic);
    assert.deepEqual(recs.map((r) => r.env), sends.map(([v]) => v));
    assert.equal(recs[5]!.gap, 3);
    assert.ok(recs.every((r) => r.ok === undefined), 'observe refuses nothing');
    await new Promise((r) => setTimeout(r, 300));
    // Delivered, unwrapped where the envelope was authentic (valid, gap).
    assert.equal(got.length, sends.length);
    assert.equal(Buffer.from(got[0]!, 'hex').toString(), 'v1');
    await sub.endAsync();
  });

  test('enforce refuses what does not verify and delivers what does', async () => {
    const c = await connectDevice(d2);
    const topic = 'devices/d2/strict/x';
    await c.publishAsync(topic, envelope(d2, topic, 'good'), { qos: 1 });
    const closed = new Promise<void>((r) => c.once('close', () => r()));
    const bad = envelope(d2, topic, 'forged');
    flipPayload(bad, 'forged');
    c.publish(topic, bad, { qos: 1 });
    await closed;
    c.end(true);
    const rs = await waitForRecords(data, (rs) => rs.filter((r) => r.e === 'publish' && r.topic === topic).length >= 2);
    const [good, forged] = rs.filter((r) => r.e === 'publish' && r.topic === topic);
    assert.equal(good!.env, 'valid');
    assert.equal(good!.ok, undefined);
    assert.equal(typeof good!.b64, 'string', 'audit level payload records the body');
    assert.equal(forged!.env, 'invalid');
    assert.equal(forged!.ok, false);
  });

  test('registry changes reach the running broker and are recorded', async () => {
    const late = device('d5');
    assert.notEqual(await refusedCode({ clientId: 'd5', username: TOKEN_USERNAME, password: token(late) }), 0);
    witness('device', 'add', '--data', data, '--id', 'd5', `--public-key=${formatPublicKey(late.pub)}`);
    await waitForRecords(data, (rs) => rs.some((r) => r.e === 'device'));
    const c = await connectDevice(late);
    await c.endAsync();
    const rs = await readRecords(data);
    const change = rs.find((r) => r.e === 'device')!;
    assert.equal((change.change as { deviceId: string }).deviceId, 'd5');
  });
});
