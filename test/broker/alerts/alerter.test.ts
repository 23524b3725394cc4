/**
 * The alerter in a real broker: a device publishes envelopes whose signature does not verify →
 * an `alert` record in the ledger, the alert on `$SYS/witness/alerts` (MQTT.js subscriber) and at
 * the webhook (a real HTTP server); after a restart the follower resumes from its cursor and the
 * alert is not fired again, while new incidents still are.
 */
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import mqtt, { type MqttClient } from 'mqtt';
import { tempDir } from '../../helpers/tmp.js';
import { readRecords, type Rec } from '../../helpers/records.js';
import { startBroker, type RunningBroker } from '../../../broker/server.js';
import { initDataDir } from '../../../broker/data-dir.js';
import { DeviceRegistry } from '../../../broker/identity/registry.js';
import { Authenticator } from '../../../broker/identity/authenticator.js';
import { TokenVerifier } from '../../../broker/identity/token-verifier.js';
import { startAlerter, alertId, DEFAULT_ALERT_TOPIC, type Alerter } from '../../../broker/alerts/alerter.js';
import type { Alert } from '../../../broker/alerts/rules.js';
import { generateSeed, publicKeyFromSeed } from '../../../shared/keys/ed25519.js';
import { deviceKid } from '../../../shared/keys/key-id.js';
import { createConnectToken, TOKEN_USERNAME } from '../../../shared/token/index.js';
import { signEnvelope, envelopeHash, GENESIS_PREV } from '../../../shared/envelope/index.js';

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

/** The device's next envelope on `topic`; `tamper` flips one bit of the payload after signing. */
function envelope(d: Device, topic: string, payload: string, tamper = false): Buffer {
  const bytes = Buffer.from(
    signEnvelope({ seed: d.seed, kid: d.kid, payload: Buffer.from(payload), claims: { time: Date.now(), uncertainty: 20, timeSource: 'ntp', seq: d.seq, prev: d.prev, topic } }),
  );
  d.seq++;
  d.prev = envelopeHash(bytes);
  if (tamper) {
    const at = bytes.indexOf(Buffer.from(payload));
    assert.ok(at > 0);
    bytes[at] = bytes[at]! ^ 0x01;
  }
  return bytes;
}

async function until<T>(what: string, f: () => T | undefined | false, timeoutMs = 10_000): Promise<T> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const v = f();
    if (v) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

describe('alerter in a running broker', () => {
  let data: string;
  let hookServer: Server;
  let hookUrl: string;
  const hookBodies: Alert[] = [];
  /** Distinct alerts posted (a post retried after a timeout may arrive twice: same Idempotency-Key). */
  const hookKeys = new Set<string>();
  const d1 = device('d1');
  let broker: RunningBroker | undefined;
  let alerter: Alerter | undefined;
  const clients: MqttClient[] = [];

  const start = async (): Promise<{ broker: RunningBroker; alerter: Alerter }> => {
    const b = await startBroker({
      dataDir: data,
      listeners: [{ type: 'mqtt', host: '127.0.0.1', port: 0 }],
      ledger: { fsync: 'never' },
      security: ({ dataDir }) => {
        const registry = DeviceRegistry.load(dataDir);
        return { keys: registry, authenticator: new Authenticator({ registry, tokenVerifier: new TokenVerifier({ audience: 'mqtt-witness' }), anonymous: true }) };
      },
    });
    const a = startAlerter({ dataDir: data, ledger: b.ledger, plugin: b.plugin, aedes: b.aedes, rules: { signatureFailures: { count: 3, windowMs: 60_000 } }, webhook: { url: hookUrl, timeoutMs: 10_000 }, tickMs: 100 });
    broker = b;
    alerter = a;
    return { broker: b, alerter: a };
  };
  const stop = async (): Promise<void> => {
    for (const c of clients.splice(0)) await c.endAsync().catch(() => {});
    await alerter?.stop();
    await broker?.stop();
    alerter = undefined;
    broker = undefined;
  };

  before(async () => {
    data = mkdtempSync(join(tmpdir(), 'witness-alerter-'));
    await initDataDir(data, 'alerts-test');
    DeviceRegistry.edit(data, (r) => r.add(d1.id, d1.pub));
    hookServer = createServer((req, res) => {
      let body = '';
      req.setEncoding('utf8');
      req.on('data', (d: string) => (body += d));
      req.on('end', () => {
        hookBodies.push(JSON.parse(body) as Alert);
        hookKeys.add(String(req.headers['idempotency-key']));
        res.writeHead(204).end();
      });
    });
    await new Promise<void>((r) => hookServer.listen(0, '127.0.0.1', r));
    hookUrl = `http://127.0.0.1:${(hookServer.address() as AddressInfo).port}/alerts`;
  });

  after(async () => {
    await stop();
    hookServer.closeAllConnections();
    await new Promise((r) => hookServer.close(r));
    rmSync(data, { recursive: true, force: true });
  });

  /** Connects the watcher (subscribed to the alert topic) and the device. */
  const connect = async (url: string): Promise<{ received: Alert[]; dev: MqttClient }> => {
    const received: Alert[] = [];
    const watcher = await mqtt.connectAsync(url, { clientId: `watcher-${Date.now()}`, reconnectPeriod: 0 });
    clients.push(watcher);
    watcher.on('message', (topic, payload) => {
      if (topic === DEFAULT_ALERT_TOPIC) received.push(JSON.parse(payload.toString()) as Alert);
    });
    await watcher.subscribeAsync(DEFAULT_ALERT_TOPIC, { qos: 0 });
    const token = Buffer.from(createConnectToken({ seed: d1.seed, deviceId: d1.id, publicKey: d1.pub }));
    const dev = await mqtt.connectAsync(url, { clientId: d1.id, username: TOKEN_USERNAME, password: token, reconnectPeriod: 0 });
    clients.push(dev);
    return { received, dev };
  };

  test('bad signatures → alert record, MQTT alert, webhook; a restart does not fire it again', { timeout: 60_000 }, async () => {
    const { broker: b1, alerter: a1 } = await start();
    const { received, dev } = await connect(b1.urls[0]!);
    const topic = `devices/${d1.id}/data`;
    await dev.publishAsync(topic, envelope(d1, topic, '{"temp":21.5}'), { qos: 1 });
    for (let k = 0; k < 2; k++) await dev.publishAsync(topic, envelope(d1, topic, `{"temp":${22 + k}}`, true), { qos: 1 });
    // Two failures: below the threshold.
    await a1.drain();
    assert.deepEqual(a1.alerts(), []);
    await dev.publishAsync(topic, envelope(d1, topic, '{"temp":30}', true), { qos: 1 });

    const mqttAlert = await until('the alert on MQTT', () => received[0]);
    const hookAlert = await until('the alert at the webhook', () => hookBodies[0]);
    assert.equal(mqttAlert.rule, 'signature-failures');
    assert.equal(mqttAlert.subject, 'device:d1');
    assert.equal(mqttAlert.severity, 'critical');
    assert.equal(mqttAlert.count, 3);
    assert.deepEqual(hookAlert, mqttAlert);
    assert.deepEqual([...hookKeys], [alertId(mqttAlert)]);
    assert.deepEqual(a1.alerts(), [mqttAlert]);

    // The ledger: the alert record points at the failing publish records.
    await a1.drain();
    const rs = await readRecords(data);
    const bad = rs.filter((r) => r.e === 'publish' && r.c === 'd1' && r.env === 'invalid');
    assert.equal(bad.length, 3);
    assert.ok(rs.some((r) => r.e === 'publish' && r.c === 'd1' && r.env === 'valid'));
    const alertRecs = rs.filter((r) => r.e === 'alert');
    assert.equal(alertRecs.length, 1);
    const ar = alertRecs[0]! as Rec & Record<string, unknown>;
    assert.equal(ar.rule, 'signature-failures');
    assert.equal(ar.subject, 'device:d1');
    assert.equal(ar.id, 'broker');
    assert.equal(ar.firstIndex, bad[0]!.i);
    assert.equal(ar.lastIndex, bad[2]!.i);
    assert.equal(ar.count, 3);
    assert.equal(typeof ar.message, 'string');
    // Published by the broker on the alert topic (its own publish record).
    assert.ok(rs.some((r) => r.e === 'publish' && r.topic === DEFAULT_ALERT_TOPIC && r.actor === 'broker'));
    const st = a1.stats();
    assert.equal(st.fired, 1);
    assert.equal(st.recordErrors, 0);
    assert.equal(st.publishErrors, 0);
    await until('the webhook post counted', () => a1.stats().webhook.sent === 1);

    // Restart: the follower resumes from its cursor; the old failures are not evaluated again.
    await stop();
    const { broker: b2, alerter: a2 } = await start();
    await a2.drain();
    await new Promise((r) => setTimeout(r, 300)); // a few ticks
    assert.deepEqual(a2.alerts(), []);
    const afterRestart = (await readRecords(data)).filter((r) => r.e === 'alert');
    assert.equal(afterRestart.length, 1, JSON.stringify(afterRestart));
    assert.equal(hookKeys.size, 1, 'no new alert at the webhook');

    // New incidents still fire (after the restart the engine starts afresh, no cooldown carried).
    const again = await connect(b2.urls[0]!);
    for (let k = 0; k < 3; k++) await again.dev.publishAsync(topic, envelope(d1, topic, `{"n":${k}}`, true), { qos: 1 });
    const second = await until('a new alert on MQTT', () => again.received[0]);
    assert.equal(second.rule, 'signature-failures');
    await until('the new alert at the webhook', () => hookKeys.size === 2);
    assert.ok(hookKeys.has(alertId(second)));
    await a2.drain();
    assert.equal((await readRecords(data)).filter((r) => r.e === 'alert').length, 2);
    assert.ok(second.firstIndex! > ar.i, 'evidence after the first alert');
  });
});

describe('alerter with a failing webhook and stand-in broker parts', () => {
  test('webhook failures are counted; the alert is still recorded and published', { timeout: 30_000 }, async (t) => {
    const data = tempDir(t, 'witness-alerter-hook-');
    await initDataDir(data, 'alerts-hook');
    const b = await startBroker({ dataDir: data, listeners: [{ type: 'mqtt', host: '127.0.0.1', port: 0 }], ledger: { fsync: 'never' } });
    const dead = createServer();
    await new Promise<void>((r) => dead.listen(0, '127.0.0.1', r));
    const port = (dead.address() as AddressInfo).port;
    await new Promise((r) => dead.close(r));
    const published: string[] = [];
    const recorded: Array<Record<string, unknown>> = [];
    const a = startAlerter({
      dataDir: data,
      ledger: b.ledger,
      plugin: { record: async (e, f) => void recorded.push({ e, ...f }) },
      aedes: { publish: (p, cb) => (published.push(p.topic), cb()) },
      rules: { denials: { count: 2 } },
      topic: 'ops/alerts',
      webhook: { url: `http://127.0.0.1:${port}/`, retries: 1, backoffMs: 10, timeoutMs: 500 },
    });
    try {
      // Two refused connects from one address, written straight to the ledger.
      for (let k = 0; k < 2; k++) await b.plugin.record('connect', { c: `x${k}`, id: 'unauthenticated', a: '192.0.2.7:4000', ok: false, rc: 5, why: 'not-authorized' });
      await until('the alert', () => recorded.length >= 1);
      assert.equal(recorded[0]!.e, 'alert');
      assert.equal(recorded[0]!.subject, 'address:192.0.2.7');
      assert.deepEqual(published, ['ops/alerts']);
      await until('the webhook failure counted', () => a.stats().webhook.failed === 1);
      assert.equal(a.stats().webhook.sent, 0);
      assert.match(a.stats().webhook.lastError!, /ECONNREFUSED|fetch failed/);
    } finally {
      await a.stop();
      await b.stop();
    }
  });
});
