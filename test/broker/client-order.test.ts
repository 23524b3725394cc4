/**
 * One client's order survives the broker: with envelope signatures verified on worker threads
 * (the default) and with them verified on the event loop (--verify-threads 0).
 *
 * A raw TCP client sends, in ONE write (so aedes handles the packets concurrently): a signed
 * QoS 1 publish, two signed QoS 0 publishes, a SUBSCRIBE, an unsigned QoS 0 publish on a topic
 * whose policy skips the envelope check, and a DISCONNECT. Expected:
 * - the ledger has that socket's records in exactly that order (a publish record waits for its
 *   signature; the subscribe, the unchecked publish and the disconnect must wait behind it:
 *   broker/plugin.ts `enqueue`);
 * - a subscriber gets the four messages in the order sent, although the QoS 1 one waits for an
 *   fdatasync and for aedes' slower QoS 1 route (broker/plugin.ts `inOrder`, `handOn`).
 */
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { connect as netConnect, type Socket } from 'node:net';
import { once } from 'node:events';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import mqtt from 'mqtt';
import mqttPacket from 'mqtt-packet';
import { startBrokerProcess, type BrokerProcess, witnessOk as witness } from '../helpers/broker-process.js';
import { waitForRecords, type Rec } from '../helpers/records.js';
import { generateSeed, publicKeyFromSeed } from '../../shared/keys/ed25519.js';
import { deviceKid } from '../../shared/keys/key-id.js';
import { formatPublicKey } from '../../shared/keys/key-file.js';
import { createConnectToken, TOKEN_USERNAME } from '../../shared/token/index.js';
import { signEnvelope, envelopeHash, GENESIS_PREV } from '../../shared/envelope/index.js';

const ID = 'order-dev';
const seed = generateSeed();
const pub = publicKeyFromSeed(seed);
const kid = deviceKid(ID, pub);

/** Signed envelopes seq 0.. of this device on `topic`, chained. */
function envelopes(topic: string, payloads: string[]): Buffer[] {
  let prev = GENESIS_PREV;
  return payloads.map((p, seq) => {
    const bytes = signEnvelope({ seed, kid, payload: Buffer.from(p), claims: { time: Date.now(), uncertainty: 20, timeSource: 'ntp', seq, prev, topic } });
    prev = envelopeHash(bytes);
    return Buffer.from(bytes);
  });
}

/** Connects a raw socket with a connect token; resolves after a CONNACK 0. */
async function rawConnect(url: string): Promise<Socket> {
  const u = new URL(url);
  const sock = netConnect(Number(u.port), u.hostname);
  await once(sock, 'connect');
  const parser = mqttPacket.parser({ protocolVersion: 4 });
  const connack = new Promise<number>((resolve) => parser.on('packet', (p) => p.cmd === 'connack' && resolve(p.returnCode ?? -1)));
  sock.on('data', (d: Buffer) => parser.parse(d));
  const password = Buffer.from(createConnectToken({ seed, deviceId: ID, publicKey: pub }));
  sock.write(mqttPacket.generate({ cmd: 'connect', protocolId: 'MQTT', protocolVersion: 4, clean: true, clientId: ID, keepalive: 30, username: TOKEN_USERNAME, password }));
  assert.equal(await connack, 0);
  return sock;
}

for (const mode of [{ name: 'verify pool (default)', args: [] as string[] }, { name: 'event-loop verify (--verify-threads 0)', args: ['--verify-threads', '0'] }]) {
  describe(`one client's order, ${mode.name}`, () => {
    let dir: string;
    let data: string;
    let broker: BrokerProcess;
    before(async () => {
      dir = mkdtempSync(join(tmpdir(), 'witness-order-'));
      data = join(dir, 'data');
      witness('init', '--data', data, '--node-id', 'order');
      witness('device', 'add', '--data', data, '--id', ID, `--public-key=${formatPublicKey(pub)}`);
      writeFileSync(join(dir, 'witness.yaml'), ['policies:', `  - { topic: "devices/${ID}/raw/#", envelope: "off" }`, ''].join('\n'));
      broker = await startBrokerProcess(data, ['--config', join(dir, 'witness.yaml'), ...mode.args]);
    });
    after(async () => {
      await broker?.kill();
      rmSync(dir, { recursive: true, force: true });
    });

    test('ledger order and delivery order are the order sent, with every packet in one TCP write', async () => {
      const sub = await mqtt.connectAsync(broker.url, { clientId: 'order-sub', reconnectPeriod: 0 });
      const got: string[] = [];
      sub.on('message', (topic, payload) => got.push(`${topic} ${payload.length}`));
      await sub.subscribeAsync(`devices/${ID}/#`, { qos: 1 });

      const topic = `devices/${ID}/t`;
      const [e0, e1, e2] = envelopes(topic, ['first, qos 1', 'second, qos 0', 'third, qos 0']) as [Buffer, Buffer, Buffer];
      const sock = await rawConnect(broker.url);
      const raw = Buffer.from('fourth, unsigned');
      sock.write(
        Buffer.concat([
          mqttPacket.generate({ cmd: 'publish', topic, payload: e0, qos: 1, messageId: 1, retain: false, dup: false }),
          mqttPacket.generate({ cmd: 'publish', topic, payload: e1, qos: 0, retain: false, dup: false }),
          mqttPacket.generate({ cmd: 'publish', topic, payload: e2, qos: 0, retain: false, dup: false }),
          mqttPacket.generate({ cmd: 'subscribe', messageId: 2, subscriptions: [{ topic: `devices/${ID}/cmd`, qos: 0 }] }),
          mqttPacket.generate({ cmd: 'publish', topic: `devices/${ID}/raw/x`, payload: raw, qos: 0, retain: false, dup: false }),
          mqttPacket.generate({ cmd: 'disconnect' }),
        ]),
      );
      const deadline = Date.now() + 10_000;
      while (got.length < 4 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
      assert.deepEqual(got, [`${topic} ${e0.length}`, `${topic} ${e1.length}`, `${topic} ${e2.length}`, `devices/${ID}/raw/x ${raw.length}`], 'delivered in the order sent');
      await sub.endAsync();
      sock.destroy();

      const rs = await waitForRecords(data, (rs) => rs.some((r) => r.e === 'disconnect' && r.c === ID));
      // (aedes adds an `error` "connection closed" and an automatic `unsubscribe` after the close.)
      const mine = rs.filter((r: Rec) => r.c === ID && ['publish', 'subscribe', 'disconnect'].includes(r.e));
      assert.deepEqual(
        mine.map((r) => [r.e, r.topic ?? r.f ?? r.why, r.env ?? null, r.seq ?? null]),
        [
          ['publish', topic, 'valid', 0],
          ['publish', topic, 'valid', 1],
          ['publish', topic, 'valid', 2],
          ['subscribe', `devices/${ID}/cmd`, null, null],
          ['publish', `devices/${ID}/raw/x`, 'unchecked', null],
          ['disconnect', 'clean', null, null],
        ],
        JSON.stringify(mine),
      );
      for (let k = 1; k < mine.length; k++) assert.ok((mine[k]!.t as number) >= (mine[k - 1]!.t as number), 'record times never run backwards within a client');
    });
  });
}
