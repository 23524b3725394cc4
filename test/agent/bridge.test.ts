/**
 * Bridge mode with stock clients: `witness-agent bridge` as a process between the real
 * `witness broker` and Debian's mosquitto_pub / mosquitto_sub, which know nothing of Witness.
 * What mosquitto_pub sends ends up in the ledger as a valid signed publish under the agent's
 * device id, topic unchanged; what arrives for mosquitto_sub is the original payload.
 */
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect } from 'node:net';
import mqtt from 'mqtt';
import mqttPacket from 'mqtt-packet';
import { startBrokerProcess, type BrokerProcess } from '../helpers/broker-process.js';
import { waitForRecords } from '../helpers/records.js';
import { createHash } from 'node:crypto';
import { agentCli, assertSoundChain, brokerData, freePort, publishesOf, startAgentProcess, type AgentProcess } from './helpers.js';

const ID = 'bridge-dev';
const sha256b64url = (s: string): string => createHash('sha256').update(s).digest('base64url');
const MOSQUITTO = spawnSync('sh', ['-c', 'command -v mosquitto_pub && command -v mosquitto_sub'], { encoding: 'utf8' }).status === 0;

let dir: string;
let data: string;
let broker: BrokerProcess;
let bridge: AgentProcess;
let bridgePort: number;
let agentDir: string;
let startBroker: () => Promise<BrokerProcess>;
let startBridgeProcess: () => Promise<AgentProcess>;

before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'witness-agent-bridge-'));
  const port = await freePort();
  agentDir = join(dir, 'agent');
  const init = agentCli(['init', '--id', ID, '--dir', agentDir]);
  assert.equal(init.code, 0, init.stderr);
  const cfgPath = join(agentDir, 'witness-agent.yaml');
  writeFileSync(cfgPath, readFileSync(cfgPath, 'utf8').replace(/^ {2}servers: \[[^\]]*\]/m, '  servers: []'));
  const b = brokerData(dir, [{ id: ID, publicKey: readFileSync(join(agentDir, 'device.pub'), 'utf8').trim() }], [
    // Record the payloads: the broker keeps the bytes inside each envelope it verified.
    'policies:',
    `  - { topic: "devices/${ID}/#", audit: payload }`,
  ]);
  data = b.data;
  startBroker = () => startBrokerProcess(data, ['--config', b.config, '--port', String(port)]);
  broker = await startBroker();
  bridgePort = await freePort();
  startBridgeProcess = async () => {
    const p = startAgentProcess(['bridge', '--dir', agentDir, '--broker', `mqtt://127.0.0.1:${port}`, '--listen', `127.0.0.1:${bridgePort}`]);
    await p.waitFor(/^bridge listening mqtt:\/\/127\.0\.0\.1:\d+ \(signing as bridge-dev → /);
    await p.waitFor(/^connected /);
    return p;
  };
  bridge = await startBridgeProcess();
});

after(async () => {
  if (bridge && bridge.proc.exitCode === null) bridge.proc.kill('SIGKILL');
  await broker?.kill();
  rmSync(dir, { recursive: true, force: true });
});

describe('bridge', { skip: MOSQUITTO ? false : 'mosquitto-clients not installed' }, () => {
  test('stock mosquitto_pub through the bridge: a valid signed publish under the agent device id; mosquitto_sub gets the original payload', async () => {
    const sub = spawn('mosquitto_sub', ['-h', '127.0.0.1', '-p', String(bridgePort), '-V', 'mqttv311', '-t', `devices/${ID}/#`, '-v', '-C', '2', '-W', '20'], { stdio: ['ignore', 'pipe', 'pipe'] });
    let got = '';
    sub.stdout!.on('data', (d: Buffer) => (got += d.toString()));
    await bridge.waitFor(new RegExp(`subscribed devices/${ID}/# \\(QoS 0\\)`));

    for (const [qos, msg] of [['1', 'hello from legacy'], ['0', 'second, qos 0']] as const) {
      const r = spawnSync('mosquitto_pub', ['-h', '127.0.0.1', '-p', String(bridgePort), '-V', 'mqttv311', '-q', qos, '-t', `devices/${ID}/legacy`, '-m', msg], { encoding: 'utf8', timeout: 20_000 });
      assert.equal(r.status, 0, r.stderr);
    }
    const [code] = (await once(sub, 'exit')) as [number | null];
    assert.equal(code, 0, 'mosquitto_sub got its two messages');
    assert.equal(got, `devices/${ID}/legacy hello from legacy\ndevices/${ID}/legacy second, qos 0\n`);

    const rs = await waitForRecords(data, (rs) => publishesOf(rs, ID).length >= 2);
    const pubs = publishesOf(rs, ID);
    assert.deepEqual(pubs.map((p) => [p.topic, p.env, p.seq, p.q]), [
      [`devices/${ID}/legacy`, 'valid', 0, 1],
      [`devices/${ID}/legacy`, 'valid', 1, 0],
    ]);
    for (const p of pubs) {
      assert.match(String(p.id), new RegExp(`^device:${ID}\\+[0-9a-f]{8}$`));
      assert.equal(p.ts, 'system');
    }
    // The broker recorded the application bytes inside the envelope it verified.
    assert.equal(Buffer.from(pubs[0]!.b64 as string, 'base64').toString(), 'hello from legacy');
    assert.equal(Buffer.from(pubs[1]!.b64 as string, 'base64').toString(), 'second, qos 0');
    // What travelled upstream is the envelope (its hash is the payload hash), not the bare bytes.
    assert.equal(pubs[0]!.h, pubs[0]!.eh);
    assert.notEqual(pubs[0]!.h, sha256b64url('hello from legacy'));

    await bridge.waitFor(new RegExp(`^message valid devices/${ID}/legacy from ${ID} seq 1: second, qos 0$`));
    assert.ok(bridge.lines().some((l) => new RegExp(`^signed devices/${ID}/legacy from \\S+ as seq 0$`).test(l)), bridge.lines().join('\n'));
  });

  test('a QoS 1 PUBACK from the bridge means durably queued: killed with the broker down, the message still arrives', async () => {
    const c = await mqtt.connectAsync(`mqtt://127.0.0.1:${bridgePort}`, { clientId: 'legacy-app', protocolVersion: 4, reconnectPeriod: 0 });
    await assert.rejects(c.subscribeAsync('$witness-bridge/#', { qos: 0 }), 'the bridge internals are not for local clients');
    assert.equal(await broker.stop(), 0);
    await bridge.waitFor(/^offline: /);
    await c.publishAsync(`devices/${ID}/acked`, 'durable', { qos: 1 }); // resolves at the PUBACK
    bridge.proc.kill('SIGKILL');
    assert.equal(await bridge.exited(), 'SIGKILL');
    c.end(true);
    const st = agentCli(['status', '--dir', agentDir, '--json']);
    assert.equal(st.code, 0, st.stderr);
    assert.deepEqual(((JSON.parse(st.stdout) as { running: boolean; outbox: { depth: number } })).outbox.depth, 1, 'on disk');

    broker = await startBroker();
    bridge = await startBridgeProcess();
    const rs = await waitForRecords(data, (rs) => publishesOf(rs, ID).some((r) => r.topic === `devices/${ID}/acked`), 15_000);
    // Signed before the broker went down, seen after: valid (with `late`); never a gap.
    assertSoundChain(publishesOf(rs, ID), { late: true });
  });

  test('a QoS 2 retransmission (DUP) is signed once', async () => {
    // Raw packets (mqtt-packet, MQTT.js's own codec): a client library would not retransmit here.
    const sock = connect(bridgePort, '127.0.0.1');
    const parser = mqttPacket.parser({ protocolVersion: 4 });
    const packets: mqttPacket.Packet[] = [];
    parser.on('packet', (p) => packets.push(p));
    sock.on('data', (d) => parser.parse(d));
    const next = async (cmd: string): Promise<mqttPacket.Packet> => {
      const end = Date.now() + 10_000;
      for (;;) {
        const i = packets.findIndex((p) => p.cmd === cmd);
        if (i >= 0) return packets.splice(i, 1)[0]!;
        if (Date.now() > end) throw new Error(`no ${cmd} from the bridge`);
        await new Promise((r) => setTimeout(r, 10));
      }
    };
    const send = (p: mqttPacket.Packet): void => void sock.write(mqttPacket.generate(p));
    send({ cmd: 'connect', protocolId: 'MQTT', protocolVersion: 4, clean: true, clientId: 'raw-qos2', keepalive: 30 });
    await next('connack');
    const publish = { cmd: 'publish', topic: `devices/${ID}/q2`, payload: Buffer.from('exactly once'), qos: 2, messageId: 7, retain: false } as const;
    send({ ...publish, dup: false });
    await next('pubrec');
    send({ ...publish, dup: true }); // as if the PUBREC had been lost
    await next('pubrec');
    send({ cmd: 'pubrel', messageId: 7 });
    await next('pubcomp');
    send({ cmd: 'publish', topic: `devices/${ID}/q2-done`, payload: Buffer.from('marker'), qos: 1, messageId: 8, retain: false, dup: false });
    await next('puback');
    send({ cmd: 'disconnect' });
    sock.end();
    const rs = await waitForRecords(data, (rs) => publishesOf(rs, ID).some((r) => r.topic === `devices/${ID}/q2-done`), 15_000);
    assert.equal(publishesOf(rs, ID).filter((r) => r.topic === `devices/${ID}/q2`).length, 1);
  });

  test('the bridge refuses a non-loopback address and stops cleanly on SIGTERM', async () => {
    const r = agentCli(['bridge', '--dir', agentDir, '--broker', 'mqtt://127.0.0.1:1', '--listen', '0.0.0.0:1884']);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /not a loopback address/);
    bridge.proc.kill('SIGTERM');
    assert.equal(await bridge.exited(), 0, bridge.stderr());
    assert.match(bridge.lines().at(-1)!, /^stopped \(0 still queued\)$/);
  });
});
