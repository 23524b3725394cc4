/**
 * WitnessAgent end to end against the real `witness broker` (a process, authentication on,
 * envelopes observed) and, when installed, a real chronyd as the agent's NTP server: signed
 * publishes recorded `valid` with the device's sequence number and time; a fresh connect token at
 * every reconnect; the broker stopped and restarted on the same port while the agent queues;
 * incoming envelopes verified with the broker's verdict names, hostile ones included.
 */
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import mqtt from 'mqtt';
import { startBrokerProcess, type BrokerProcess } from '../helpers/broker-process.js';
import { readRecords, waitForRecords, type Rec } from '../helpers/records.js';
import { CHRONY_SKIP, startChrony, type ChronyServer } from '../helpers/chrony.js';
import { WitnessAgent, type IncomingMessage } from '../../agent/index.js';
import { generateSeed, publicKeyFromSeed } from '../../shared/keys/ed25519.js';
import { formatPublicKey, readSeed, writeKeyPair } from '../../shared/keys/key-file.js';
import { deviceKid, keyHash } from '../../shared/keys/key-id.js';
import { createConnectToken, TOKEN_USERNAME } from '../../shared/token/index.js';
import { envelopeHash, signEnvelope, GENESIS_PREV } from '../../shared/envelope/index.js';
import { assertSoundChain, brokerData, freePort, publishesOf } from './helpers.js';

const ID = 'agent-e2e-1';
const PEER = 'agent-e2e-peer';

let dir: string;
let agentDir: string;
let data: string;
let config: string;
let port: number;
let broker: BrokerProcess | undefined;
let chrony: ChronyServer | undefined;
let agent: WitnessAgent;
let pub: Uint8Array;
const peerSeed = generateSeed();
const peerPub = publicKeyFromSeed(peerSeed);
const received: IncomingMessage[] = [];

async function startBroker(): Promise<BrokerProcess> {
  // The same explicit port every time: a restarted broker is where the agent left it.
  return startBrokerProcess(data, ['--config', config, '--port', String(port)]);
}

function connected(a: WitnessAgent, timeoutMs = 10_000): Promise<void> {
  if (a.connected) return Promise.resolve();
  return within(once(a, 'connect').then(() => {}), timeoutMs, 'agent connect');
}

async function within<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const t = new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(`${what}: not within ${ms} ms`)), ms)));
  try {
    return await Promise.race([p, t]);
  } finally {
    clearTimeout(timer);
  }
}

before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'witness-agent-e2e-'));
  agentDir = join(dir, 'agent');
  pub = writeKeyPair(agentDir, 'device').publicKey;
  ({ data, config } = brokerData(dir, [
    { id: ID, publicKey: formatPublicKey(pub) },
    { id: PEER, publicKey: formatPublicKey(peerPub) },
  ]));
  port = await freePort();
  broker = await startBroker();
  if (!CHRONY_SKIP) chrony = await startChrony();
  agent = await WitnessAgent.start({
    deviceId: ID,
    dir: agentDir,
    broker: `mqtt://127.0.0.1:${port}`,
    ntpServers: chrony ? [chrony.address] : [],
    knownKeys: { [PEER]: [formatPublicKey(peerPub)] },
    // Generous: on a loaded machine a message can take over a second from the test's signature to
    // the agent's check; the clock-skew case below is an hour off.
    skewToleranceMs: 10_000,
    reconnectMinMs: 100,
    reconnectMaxMs: 400,
    statusIntervalMs: 200,
  });
  agent.on('message', (m) => received.push(m));
  agent.on('error', () => {}); // kept in status().lastError; asserted where it matters
});

after(async () => {
  await agent?.stop({ drainMs: 0 });
  await broker?.kill();
  await chrony?.close();
  rmSync(dir, { recursive: true, force: true });
});

describe('publishing', () => {
  test('signed publishes are recorded valid, with the device sequence number, time and key', async () => {
    await connected(agent);
    const before = Date.now();
    const q: Array<{ seq: number }> = [];
    for (let i = 0; i < 5; i++) q.push(await agent.publish(`devices/${ID}/t`, `m${i}`, { qos: (i % 3) as 0 | 1 | 2 }));
    assert.deepEqual(q.map((x) => x.seq), [0, 1, 2, 3, 4]);
    assert.equal(await agent.flush(20_000), true, `everything acknowledged: ${JSON.stringify(agent.status())}`);
    const after = Date.now();
    const rs = await waitForRecords(data, (rs) => publishesOf(rs, ID).length >= 5);
    const pubs = publishesOf(rs, ID);
    assert.deepEqual(assertSoundChain(pubs), [0, 1, 2, 3, 4]);
    const kid = `${ID}+${Buffer.from(keyHash(ID, pub)).toString('hex')}`;
    for (const [i, r] of pubs.entries()) {
      assert.equal(r.env, 'valid');
      assert.equal(r.kid, kid);
      assert.equal(r.id, `device:${kid}`);
      assert.equal(r.topic, `devices/${ID}/t`);
      assert.equal(r.q, i % 3);
      const dt = r.dt as number;
      const du = r.du as number;
      assert.ok(dt + du >= before && dt - du <= after, `device time ${dt}±${du} outside [${before}, ${after}]`);
      assert.equal(r.ts, chrony ? 'ntp' : 'system');
    }
    const connect = rs.find((r) => r.e === 'connect' && r.c === ID)!;
    assert.equal(connect.ok, true);
    assert.equal(connect.auth, 'token');
  });

  test('publish refuses what could never be sent, before it reaches the outbox', async () => {
    const depth = agent.status().outbox.nextSeq;
    for (const bad of ['', 'a/+/b', 'a/#', 'nul\u0000']) {
      await assert.rejects(agent.publish(bad, 'x'), (e: Error & { code?: string }) => e.code === 'WITNESS_ERR_INVALID_ARGUMENT', JSON.stringify(bad));
    }
    await assert.rejects(agent.publish('a/b', 'x', { qos: 3 as 0 }), /qos/);
    assert.equal(agent.status().outbox.nextSeq, depth, 'no sequence number was used');
  });
});

describe('connecting', () => {
  test('every reconnect presents a fresh connect token, which the broker accepts', async () => {
    await connected(agent);
    // Take the session over with the device's own key: the broker drops the agent, which
    // reconnects. Reusing its first token would be refused as token:replayed.
    const intruder = await mqtt.connectAsync(broker!.url, {
      clientId: ID,
      username: TOKEN_USERNAME,
      password: Buffer.from(createConnectToken({ seed: readSeedOf(agentDir), deviceId: ID, publicKey: pub })),
      reconnectPeriod: 0,
    });
    const reconnected = within(once(agent, 'connect'), 10_000, 'reconnect after takeover');
    await reconnected;
    intruder.end(true);
    const q = await agent.publish(`devices/${ID}/t`, 'after takeover');
    assert.equal(await agent.flush(20_000), true);
    const rs = await waitForRecords(data, (rs) => publishesOf(rs, ID).some((r) => r.seq === q.seq));
    const mine = rs.filter((r) => r.e === 'connect' && r.c === ID);
    assert.ok(mine.filter((r) => r.ok === true).length >= 3, 'agent, intruder, agent again');
    assert.deepEqual(mine.filter((r) => r.ok !== true).map((r) => r.why), [], 'no refused connect');
    assertSoundChain(publishesOf(rs, ID));
  });

  test('broker stopped and restarted on the same port: queued messages arrive in order, no gap', async () => {
    await connected(agent);
    const offline = within(once(agent, 'offline'), 10_000, 'offline');
    assert.equal(await broker!.stop(), 0);
    await offline;
    assert.equal(agent.connected, false);
    const queued: Array<{ seq: number }> = [];
    for (let i = 0; i < 20; i++) queued.push(await agent.publish(`devices/${ID}/q`, `queued ${i}`, { qos: 1 }));
    const st = agent.status();
    assert.equal(st.connected, false);
    assert.ok(st.outbox.depth >= 20, `outbox depth ${st.outbox.depth}`);
    // "For a while": several reconnect attempts fail against the closed port.
    await new Promise((r) => setTimeout(r, 1200));
    assert.ok(agent.status().connects >= 3, 'kept trying');
    broker = await startBroker();
    await connected(agent, 15_000);
    const more = await agent.publish(`devices/${ID}/q`, 'after restart');
    assert.equal(await agent.flush(15_000), true, 'everything acknowledged after the restart');
    assert.equal(agent.status().outbox.depth, 0);
    const rs = await waitForRecords(data, (rs) => publishesOf(rs, ID).some((r) => r.seq === more.seq));
    const pubs = publishesOf(rs, ID);
    // Signed more than a second before the broker saw them: `valid` with a `late` field (the
    // verdict clock-skew is kept for device times in the future), sequence and chain checked first.
    assertSoundChain(pubs, { late: true });
    // The queued ones, first seen in sequence order, before the one published after the restart.
    const order = pubs.filter((r) => r.env !== 'replayed' && (r.seq as number) >= queued[0]!.seq).map((r) => r.seq);
    assert.deepEqual(order, [...queued.map((q) => q.seq), more.seq]);
    assert.equal(rs.filter((r) => r.e === 'publish' && r.env === 'gap').length, 0, 'no gap verdict anywhere');
  });
});

describe('receiving', () => {
  const topic = `devices/${ID}/in/x`;
  let pubSeq = 0;
  let prev = GENESIS_PREV;

  function peerEnvelope(payload: string, over: { seq?: number; time?: number; topic?: string; prev?: Uint8Array; seed?: Uint8Array; id?: string } = {}, advance = true): Buffer {
    const s = over.seed ?? peerSeed;
    const id = over.id ?? PEER;
    const env = signEnvelope({
      seed: s,
      kid: deviceKid(id, publicKeyFromSeed(s)),
      payload: Buffer.from(payload),
      claims: { time: over.time ?? Date.now(), uncertainty: 20, timeSource: 'ntp', seq: over.seq ?? pubSeq, prev: over.prev ?? prev, topic: over.topic ?? topic },
    });
    if (advance) {
      pubSeq = (over.seq ?? pubSeq) + 1;
      prev = envelopeHash(env);
    }
    return Buffer.from(env);
  }

  test('malformed, tampered and out-of-sequence envelopes are reported with their verdicts; the agent keeps running', async () => {
    await connected(agent);
    const sub = await agent.subscribe(`devices/${ID}/in/#`, { qos: 1 });
    assert.equal(sub.qos, 1);
    received.length = 0;
    const peer = await mqtt.connectAsync(broker!.url, {
      clientId: PEER,
      username: TOKEN_USERNAME,
      password: Buffer.from(createConnectToken({ seed: peerSeed, deviceId: PEER, publicKey: peerPub })),
      reconnectPeriod: 0,
    });
    const first = peerEnvelope('first');
    const tampered = peerEnvelope('tampered', {}, false);
    tampered[tampered.indexOf(Buffer.from('tampered'))]! ^= 0x01;
    const stranger = generateSeed();
    const cases: Array<[string, Buffer]> = [
      ['malformed', Buffer.from([0xd2, 0x84, 0x40, 0xa0, 0xff, 0x01])], // starts like an envelope
      ['valid', first],
      ['invalid', tampered],
      ['wrong-topic', peerEnvelope('elsewhere', { topic: `devices/${ID}/in/y` }, false)],
      ['replayed', first],
      ['gap', peerEnvelope('skipped three', { seq: pubSeq + 3 })],
      ['unknown-key', peerEnvelope('who?', { seed: stranger, id: 'stranger', seq: 0, prev: GENESIS_PREV }, false)],
      ['missing', Buffer.from('plain text')],
      ['malformed', first.subarray(0, first.length - 10)], // truncated
      ['clock-skew', peerEnvelope('from the future', { time: Date.now() + 3_600_000 })],
      ['chain-break', peerEnvelope('bad chain', { prev: new Uint8Array(32).fill(7) })],
      ['valid', peerEnvelope('good again')],
    ];
    for (const [, payload] of cases) await peer.publishAsync(topic, payload, { qos: 1 });
    await within(
      (async () => {
        while (received.length < cases.length) await new Promise((r) => setTimeout(r, 20));
      })(),
      10_000,
      `${cases.length} messages (got ${received.length})`,
    );
    assert.deepEqual(
      received.map((m) => m.verdict),
      cases.map(([v]) => v),
    );
    const good = received[1]!;
    assert.equal(Buffer.from(good.payload).toString(), 'first', 'the payload inside the envelope');
    assert.equal(good.deviceId, PEER);
    assert.equal(good.seq, 0);
    assert.equal(received[5]!.gap, 3);
    assert.equal(Buffer.from(received[7]!.payload).toString(), 'plain text');
    assert.match(received[0]!.reason ?? '', /WITNESS_ERR_/);

    // Anything at all: 300 mutations of a valid envelope (bit flips, cuts, splices) never
    // crash the agent and each gets a verdict.
    received.length = 0;
    const base = peerEnvelope('fuzz base', {}, false);
    let rnd = 12345;
    const next = (n: number): number => ((rnd = (rnd * 1103515245 + 12345) % 2 ** 31), rnd % n);
    for (let i = 0; i < 300; i++) {
      const m = Buffer.from(base);
      const kind = i % 3;
      if (kind === 0) m[next(m.length)]! ^= 1 << next(8);
      const cut = kind === 1 ? m.subarray(0, next(m.length)) : m;
      const out = kind === 2 ? Buffer.concat([m.subarray(0, next(m.length)), Buffer.from([next(256), next(256)]), m.subarray(next(m.length))]) : cut;
      peer.publish(topic, out, { qos: 0 });
    }
    await peer.publishAsync(topic, peerEnvelope('still listening'), { qos: 1 });
    await within(
      (async () => {
        while (!received.some((m) => Buffer.from(m.payload).toString() === 'still listening')) await new Promise((r) => setTimeout(r, 20));
      })(),
      10_000,
      'the message after the fuzz',
    );
    await peer.endAsync();
    assert.ok(received.length >= 290, `verdicts for the fuzz: ${received.length}`);
    assert.equal(received.at(-1)!.verdict, 'valid');
    assert.ok(agent.connected, 'still connected');
    const counts = agent.status().received;
    assert.ok((counts.malformed ?? 0) > 0 && (counts.invalid ?? 0) > 0, JSON.stringify(counts));

    // And it still publishes.
    const q = await agent.publish(`devices/${ID}/t`, 'after the garbage');
    assert.equal(await agent.flush(20_000), true);
    const rs = await waitForRecords(data, (rs) => publishesOf(rs, ID).some((r) => r.seq === q.seq));
    assert.equal(publishesOf(rs, ID).find((r) => r.seq === q.seq)!.env, 'valid');
  });
});

describe('status and stop', () => {
  test('status() and the status file: clock, queue, last ack, connection', async () => {
    await connected(agent);
    const st = agent.status();
    assert.equal(st.deviceId, ID);
    assert.equal(st.connected, true);
    assert.equal(st.clock.source, chrony ? 'ntp' : 'system');
    assert.ok(st.clock.uncertainty >= 0 && st.clock.uncertainty < (chrony ? 100 : 2000), `uncertainty ${st.clock.uncertainty}`);
    if (chrony) assert.equal(st.clock.server, chrony.address);
    assert.equal(st.outbox.depth, 0);
    assert.equal(st.outbox.lastAck?.seq, st.outbox.nextSeq - 1);
    assert.ok(st.acked >= 27, `acked ${st.acked}`);
    await new Promise((r) => setTimeout(r, 400)); // > statusIntervalMs
    const file = JSON.parse(readFileSync(join(agentDir, 'status.json'), 'utf8')) as Record<string, unknown> & { outbox: { nextSeq: number }; pid: number };
    assert.equal(file.format, 'witness-agent-status/v1');
    assert.equal(file.pid, process.pid);
    assert.equal(file.connected, true);
    assert.equal(file.outbox.nextSeq, st.outbox.nextSeq);
  });

  test('stop() disconnects cleanly and keeps what is queued on disk for the next start', async () => {
    const disconnects = (rs: Rec[]): Rec[] => rs.filter((r) => r.e === 'disconnect' && r.c === ID);
    const before = disconnects(await readRecords(data)).length;
    await agent.stop();
    const rs = await waitForRecords(data, (rs) => disconnects(rs).length > before);
    assert.equal(disconnects(rs).at(-1)!.why, 'clean');
    await assert.rejects(agent.publish('a/b', 'x'), /stopped/);
    assert.ok(existsSync(join(agentDir, 'outbox')));
    const file = JSON.parse(readFileSync(join(agentDir, 'status.json'), 'utf8')) as { stopped: boolean; connected: boolean };
    assert.equal(file.stopped, true);
    assert.equal(file.connected, false);
  });
});

/** The test plays an intruder holding the device key (a stolen key, or a second instance). */
function readSeedOf(agentDirectory: string): Uint8Array {
  return readSeed(join(agentDirectory, 'device.key'));
}
