/**
 * `witness broker` as a process, driven by real MQTT peers (mosquitto_pub/mosquitto_sub from
 * Debian's mosquitto-clients, and MQTT.js): each MQTT behaviour produces the expected records,
 * and the ledger verifies after a clean stop.
 */
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { connect as netConnect } from 'node:net';
import { createHash, randomBytes } from 'node:crypto';
import mqtt from 'mqtt';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { tempDir } from '../helpers/tmp.js';
import { startBrokerProcess, type BrokerProcess } from '../helpers/broker-process.js';
import { readRecords, waitForRecords, type Rec } from '../helpers/records.js';
import { verifyLedger } from '../../shared/ledger/verifier.js';
import { parseVerifierKey } from '../../shared/keys/key-id.js';
import { readManifest } from '../../broker/data-dir.js';

const HAVE_MOSQUITTO = spawnSync('mosquitto_pub', ['--help']).status !== null;

function hashOf(s: string | Buffer): string {
  return createHash('sha256').update(s).digest('base64url');
}

async function verifyData(dataDir: string): Promise<void> {
  const k = parseVerifierKey(readManifest(dataDir).verifierKey);
  const r = await verifyLedger(`${dataDir}/ledger`, { key: { name: k.name, publicKey: k.publicKey } });
  assert.equal(r.ok, true, JSON.stringify(r.failures.slice(0, 3)));
}

describe('witness broker with no config', () => {
  let data: string;
  let broker: BrokerProcess;
  before(async () => {
    data = mkdtempSync(join(tmpdir(), 'witness-broker-'));
    broker = await startBrokerProcess(data);
  });
  after(async () => {
    await broker?.kill();
    rmSync(data, { recursive: true, force: true });
  });

  test('prints `listening mqtt://127.0.0.1:PORT` and records its start', async () => {
    assert.match(broker.url, /^mqtt:\/\/127\.0\.0\.1:\d+$/);
    const rs = await waitForRecords(data, (rs) => rs.some((r) => r.e === 'start'));
    assert.deepEqual((rs.find((r) => r.e === 'start') as Rec).listeners, [broker.url]);
  });

  test('stock mosquitto_pub works out of the box, QoS 0, 1 and 2, recorded as anonymous', { skip: !HAVE_MOSQUITTO && 'mosquitto-clients not installed' }, async () => {
    for (const q of [0, 1, 2]) {
      const r = spawnSync('mosquitto_pub', ['-h', '127.0.0.1', '-p', String(broker.port), '-i', `pub-q${q}`, '-t', `plain/q${q}`, '-m', `hello ${q}`, '-q', String(q)], { timeout: 10_000 });
      assert.equal(r.status, 0, r.stderr.toString());
    }
    const rs = await waitForRecords(data, (rs) => [0, 1, 2].every((q) => rs.some((r) => r.e === 'publish' && r.topic === `plain/q${q}`) && rs.some((r) => r.e === 'disconnect' && r.c === `pub-q${q}`)));
    for (const q of [0, 1, 2]) {
      const p = rs.find((r) => r.e === 'publish' && r.topic === `plain/q${q}`)!;
      assert.equal(p.q, q);
      assert.equal(p.c, `pub-q${q}`);
      assert.equal(p.id, 'anonymous');
      assert.equal(p.env, 'missing');
      assert.equal(p.acl, 'allow');
      assert.equal(p.h, hashOf(`hello ${q}`));
      assert.equal(p.z, `hello ${q}`.length);
      if (q > 0) assert.equal(typeof p.m, 'number');
      const c = rs.find((r) => r.e === 'connect' && r.c === `pub-q${q}`)!;
      assert.equal(c.ok, true);
      assert.equal(c.rc, 0);
      assert.equal(c.auth, 'anonymous');
      const d = rs.find((r) => r.e === 'disconnect' && r.c === `pub-q${q}`);
      assert.ok(d, JSON.stringify(rs.filter((r) => r.c === `pub-q${q}`)));
      assert.equal(d.why, 'clean');
      assert.equal(d.s, c.s, 'one session id for the socket');
    }
  });

  test('mosquitto_sub receives what MQTT.js publishes; subscribe and retained are recorded', { skip: !HAVE_MOSQUITTO && 'mosquitto-clients not installed' }, async () => {
    const pub = await mqtt.connectAsync(broker.url, { clientId: 'js-pub', reconnectPeriod: 0 });
    await pub.publishAsync('retained/topic', 'kept', { qos: 1, retain: true });
    const sub = spawn('mosquitto_sub', ['-h', '127.0.0.1', '-p', String(broker.port), '-i', 'mosq-sub', '-t', 'retained/#', '-C', '2', '-W', '10']);
    let got = '';
    sub.stdout.on('data', (d: Buffer) => (got += d.toString()));
    await waitForRecords(data, (rs) => rs.some((r) => r.e === 'subscribe' && r.c === 'mosq-sub'));
    await pub.publishAsync('retained/topic', 'live', { qos: 0 });
    const code = await new Promise<number | null>((resolve) => sub.on('exit', resolve));
    await pub.endAsync();
    assert.equal(code, 0);
    assert.deepEqual(got.trim().split('\n'), ['kept', 'live']);
    const rs = await readRecords(data);
    const s = rs.find((r) => r.e === 'subscribe' && r.c === 'mosq-sub')!;
    assert.equal(s.f, 'retained/#');
    assert.equal(s.g, 0);
    const kept = rs.find((r) => r.e === 'publish' && r.c === 'js-pub' && r.h === hashOf('kept'))!;
    assert.equal(kept.r, true);
    assert.equal(kept.q, 1);
  });

  test('a will is published when its client dies, and recorded as actor will', async () => {
    const c = await mqtt.connectAsync(broker.url, { clientId: 'dying', reconnectPeriod: 0, will: { topic: 'wills/dying', payload: Buffer.from('gone'), qos: 1, retain: false } });
    c.stream.destroy();
    const rs = await waitForRecords(data, (rs) => rs.some((r) => r.e === 'publish' && r.topic === 'wills/dying'));
    const w = rs.find((r) => r.e === 'publish' && r.topic === 'wills/dying')!;
    assert.equal(w.actor, 'will');
    assert.equal(w.c, 'dying');
    c.end(true);
  });

  test('a persistent session is resumed (session present) and a takeover is recorded', async () => {
    const a = await mqtt.connectAsync(broker.url, { clientId: 'persist', clean: false, reconnectPeriod: 0 });
    await a.subscribeAsync('persist/#', { qos: 1 });
    await a.endAsync();
    const b = await mqtt.connectAsync(broker.url, { clientId: 'persist', clean: false, reconnectPeriod: 0 });
    const c = await mqtt.connectAsync(broker.url, { clientId: 'persist', clean: false, reconnectPeriod: 0 });
    const rs = await waitForRecords(data, (rs) => rs.filter((r) => r.e === 'connect' && r.c === 'persist').length >= 3 && rs.some((r) => r.e === 'disconnect' && r.c === 'persist' && r.why === 'takeover'));
    const connects = rs.filter((r) => r.e === 'connect' && r.c === 'persist');
    assert.equal(connects[0]!.sp, false);
    assert.equal(connects[1]!.sp, true);
    assert.equal(connects[1]!.clean, false);
    const take = rs.find((r) => r.e === 'disconnect' && r.c === 'persist' && r.why === 'takeover')!;
    assert.equal(take.s, connects[1]!.s, 'the session taken over is the second one');
    b.end(true);
    await c.endAsync();
  });

  test('keepalive timeout is recorded, then the disconnect', async () => {
    // A raw CONNECT with keepalive 1 s, then silence (aedes allows 1.5 × keepalive).
    const sock = netConnect(broker.port, '127.0.0.1');
    await new Promise((r) => sock.once('connect', r));
    const id = Buffer.from('sleepy');
    const vh = Buffer.from([0x00, 0x04, 0x4d, 0x51, 0x54, 0x54, 0x04, 0x02, 0x00, 0x01]);
    const payload = Buffer.concat([Buffer.from([0x00, id.length]), id]);
    sock.write(Buffer.concat([Buffer.from([0x10, vh.length + payload.length]), vh, payload]));
    sock.on('error', () => {});
    const rs = await waitForRecords(data, (rs) => rs.some((r) => r.e === 'disconnect' && r.c === 'sleepy'), 10_000);
    assert.ok(rs.some((r) => r.e === 'keepalive' && r.c === 'sleepy'));
    assert.equal(rs.find((r) => r.e === 'disconnect' && r.c === 'sleepy')!.why, 'keepalive');
    sock.destroy();
  });

  test('a zero-length client id with clean session 0 is refused with CONNACK 2 [MQTT-3.1.3-8]', async () => {
    const sock = netConnect(broker.port, '127.0.0.1');
    await new Promise((r) => sock.once('connect', r));
    const vh = Buffer.from([0x00, 0x04, 0x4d, 0x51, 0x54, 0x54, 0x04, 0x00, 0x00, 0x3c]); // clean session 0
    sock.write(Buffer.concat([Buffer.from([0x10, vh.length + 2]), vh, Buffer.from([0x00, 0x00])]));
    const connack = await new Promise<Buffer>((resolve) => sock.once('data', resolve));
    assert.deepEqual([...connack], [0x20, 0x02, 0x00, 0x02]);
    sock.destroy();
    const rs = await waitForRecords(data, (rs) => rs.some((r) => r.e === 'connect' && r.rc === 2));
    const c = rs.find((r) => r.e === 'connect' && r.rc === 2)!;
    assert.equal(c.ok, false);
    assert.equal(c.why, 'client-id:empty-persistent');
    assert.equal(c.id, 'unauthenticated');
  });

  test('random bytes and truncated or oversized packets never crash it; each is recorded as a connection error', async () => {
    const inputs = [
      randomBytes(64),
      Buffer.from([0x10, 0xff, 0xff, 0xff, 0xff, 0x7f]), // remaining length > 4 bytes: malformed
      Buffer.from([0x30, 0x05, 0x00]), // PUBLISH before CONNECT, truncated
      Buffer.from([0x10, 0x0c, 0x00, 0x04, 0x4d, 0x51, 0x54, 0x54, 0x09]), // bad protocol level, truncated
      Buffer.concat([Buffer.from([0xe0, 0x00]), randomBytes(32)]), // DISCONNECT first
    ];
    const before = (await readRecords(data)).filter((r) => r.e === 'error').length;
    for (const bytes of inputs) {
      const sock = netConnect(broker.port, '127.0.0.1');
      sock.on('error', () => {});
      await new Promise((r) => sock.once('connect', r));
      sock.write(bytes);
      await new Promise((r) => setTimeout(r, 100));
      sock.destroy();
    }
    const rs = await waitForRecords(data, (rs) => rs.filter((r) => r.e === 'error').length > before);
    assert.ok(rs.filter((r) => r.e === 'error' && r.scope === 'connection').length >= 1);
    // Still serving:
    const c = await mqtt.connectAsync(broker.url, { clientId: 'after-garbage', reconnectPeriod: 0 });
    await c.publishAsync('still/alive', 'yes', { qos: 1 });
    await c.endAsync();
    assert.equal(broker.proc.exitCode, null);
  });

  test('SIGTERM stops it cleanly (exit 0, final checkpoint) and the ledger verifies', async () => {
    const code = await broker.stop();
    assert.equal(code, 0, broker.stderr());
    const rs = await readRecords(data);
    assert.equal(rs.at(-1)!.e, 'stop');
    await verifyData(data);
  });
});

describe('audit before ack', () => {
  test('kill -9 under QoS 1 load from several clients: every PUBACKed message is in the ledger', { timeout: 120_000 }, async (t) => {
    const data = tempDir(t, 'witness-kill-');
    const broker = await startBrokerProcess(data);
    const acked: Array<{ client: string; payload: string }> = [];
    const clients = await Promise.all(Array.from({ length: 5 }, (_, k) => mqtt.connectAsync(broker.url, { clientId: `load-${k}`, reconnectPeriod: 0 })));
    let stop = false;
    const loops = clients.map(async (c, k) => {
      let n = 0;
      while (!stop && n < 100_000) {
        const payload = `load-${k}-${n++}`;
        try {
          await c.publishAsync('load/t', payload, { qos: 1 });
          acked.push({ client: `load-${k}`, payload });
        } catch {
          return;
        }
      }
    });
    await new Promise((r) => setTimeout(r, 1500));
    await broker.kill();
    stop = true;
    for (const c of clients) c.end(true);
    await Promise.allSettled(loops);
    assert.ok(acked.length > 100, `only ${acked.length} PUBACKs before the kill`);
    // Restart: recovery cuts any torn tail; then every acknowledged publish must be there.
    const again = await startBrokerProcess(data);
    assert.equal(await again.stop(), 0);
    const rs = await readRecords(data);
    const have = new Set(rs.filter((r) => r.e === 'publish' && r.topic === 'load/t').map((r) => `${String(r.c)} ${String(r.h)}`));
    const missing = acked.filter((a) => !have.has(`${a.client} ${hashOf(a.payload)}`));
    assert.deepEqual(missing, [], `${missing.length} of ${acked.length} acknowledged publishes missing`);
    await verifyData(data);
  });
});
