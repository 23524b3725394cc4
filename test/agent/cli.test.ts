/**
 * `witness-agent` as users run it, as processes: init (keys, config, the registration line),
 * configuration errors, `run` fed from stdin, killed with SIGKILL mid-stream and restarted (the
 * chain continues, no sequence number reused, no gap the broker did not really see), `status`.
 */
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startBrokerProcess, type BrokerProcess } from '../helpers/broker-process.js';
import { waitForRecords } from '../helpers/records.js';
import { CHRONY_SKIP, startChrony, type ChronyServer } from '../helpers/chrony.js';
import { parseAgentConfig } from '../../agent/config.js';
import { agentCli, assertSoundChain, brokerData, freePort, publishesOf, startAgentProcess, witness } from './helpers.js';

let dir: string;
let chrony: ChronyServer | undefined;

before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'witness-agent-cli-'));
  if (!CHRONY_SKIP) chrony = await startChrony();
});

after(async () => {
  await chrony?.close();
  rmSync(dir, { recursive: true, force: true });
});

/** `witness-agent init`, then the config pointed at this test's NTP server and quick reconnects. */
function initAgent(id: string, broker?: string): { agentDir: string; publicKey: string } {
  const agentDir = join(dir, id);
  const r = agentCli(['init', '--id', id, '--dir', agentDir, ...(broker ? ['--broker', broker] : [])]);
  assert.equal(r.code, 0, r.stderr);
  const cfgPath = join(agentDir, 'witness-agent.yaml');
  const cfg = readFileSync(cfgPath, 'utf8')
    .replace(/^ {2}servers: \[[^\]]*\]/m, `  servers: [${chrony ? chrony.address : ''}]`)
    .replace(/^ {2}minMs: \d+/m, '  minMs: 100')
    .replace(/^ {2}maxMs: \d+/m, '  maxMs: 500');
  writeFileSync(cfgPath, cfg + 'status:\n  intervalMs: 200\n');
  return { agentDir, publicKey: readFileSync(join(agentDir, 'device.pub'), 'utf8').trim() };
}

describe('witness-agent init', () => {
  test('writes the key pair and the config; prints the key and the exact registration line', () => {
    const agentDir = join(dir, 'init-1');
    const r = agentCli(['init', '--id', 'sensor-1', '--dir', agentDir]);
    assert.equal(r.code, 0, r.stderr);
    const pub = readFileSync(join(agentDir, 'device.pub'), 'utf8').trim();
    assert.equal(statSync(join(agentDir, 'device.key')).mode & 0o777, 0o600);
    assert.match(r.stdout, new RegExp(`public key  ${pub.replace(/[-]/g, '\\-')}\\n`));
    const line = r.stdout.split('\n').map((l) => l.trim()).find((l) => l.startsWith('witness device add '));
    // The `=` form: a base64url key may start with '-'.
    assert.equal(line, `witness device add --id sensor-1 --public-key=${pub}`);
    const cfg = parseAgentConfig(readFileSync(join(agentDir, 'witness-agent.yaml'), 'utf8'), 'witness-agent.yaml');
    assert.equal(cfg.deviceId, 'sensor-1');
    assert.equal(cfg.broker, 'mqtt://127.0.0.1:1883');

    // The printed line works as printed.
    const data = join(dir, 'init-data');
    witness('init', '--data', data);
    assert.match(witness(...line!.split(' ').slice(1), '--data', data), /added device sensor-1 with key [0-9a-f]{8}/);

    const again = agentCli(['init', '--id', 'sensor-1', '--dir', agentDir]);
    assert.equal(again.code, 2);
    assert.match(again.stderr, /already holds a device key/);
  });

  test('--json and --broker; bad ids and URLs are usage errors', () => {
    const agentDir = join(dir, 'init-2');
    const r = agentCli(['init', '--id', 'plant.A:line_2', '--dir', agentDir, '--broker', 'mqtts://broker.example:8883', '--json']);
    assert.equal(r.code, 0, r.stderr);
    const j = JSON.parse(r.stdout) as { ok: boolean; publicKey: string; verifierKey: string; register: string; config: string };
    assert.equal(j.ok, true);
    assert.equal(j.register, `witness device add --id plant.A:line_2 --public-key=${j.publicKey}`);
    assert.match(j.verifierKey, /^plant\.A:line_2\+[0-9a-f]{8}\+/);
    assert.equal(parseAgentConfig(readFileSync(j.config, 'utf8'), j.config).broker, 'mqtts://broker.example:8883');
    for (const args of [['--id', 'a b', '--dir', join(dir, 'x1')], ['--id', 'ok', '--dir', join(dir, 'x2'), '--broker', 'http://x'], ['--dir', join(dir, 'x3')]]) {
      const bad = agentCli(['init', ...args]);
      assert.equal(bad.code, 2, args.join(' '));
      assert.match(bad.stderr, /WITNESS_ERR_USAGE/);
    }
  });
});

describe('configuration errors', () => {
  test('every problem at once, as FILE:LINE:COL with a hint; exit 2', () => {
    const { agentDir } = initAgent('cfg-1');
    const file = join(agentDir, 'witness-agent.yaml');
    writeFileSync(
      file,
      [
        'deviceId: cfg-1',
        'brokr: mqtt://127.0.0.1:1',
        'outbox:',
        '  maxBytes: lots',
        '  overflow: drop-newest',
        'ntp:',
        '  servers: [pool.ntp.org]',
        'bridge:',
        '  listen: 0.0.0.0:1884',
        'knownKeys:',
        '  - not-a-key',
        '',
      ].join('\n'),
    );
    for (const cmd of ['run', 'bridge']) {
      const r = agentCli([cmd, '--dir', agentDir], '');
      assert.equal(r.code, 2, r.stderr);
      assert.match(r.stderr, /WITNESS_ERR_CONFIG_INVALID/);
      assert.ok(r.stderr.includes(`${file}:2:1: brokr: unknown key "brokr" (did you mean broker?)`), r.stderr);
      assert.ok(r.stderr.includes(`${file}:4:13: outbox.maxBytes: expected an integer (bytes), got the string "lots"`), r.stderr);
      assert.ok(r.stderr.includes(`${file}:5:13: outbox.overflow: expected one of reject-new, drop-oldest, got the string "drop-newest" (did you mean drop-oldest?)`), r.stderr);
      assert.ok(r.stderr.includes(`${file}:7:13: ntp.servers[0]: "pool.ntp.org" is not host:port`), r.stderr);
      assert.ok(r.stderr.includes(`${file}:9:11: bridge.listen: "0.0.0.0:1884" is not a loopback address`), r.stderr);
      assert.ok(r.stderr.includes(`${file}:11:5: knownKeys[0]: verifier key`), r.stderr);
    }
    const missing = agentCli(['run', '--dir', join(dir, 'nowhere')], '');
    assert.equal(missing.code, 2);
    assert.match(missing.stderr, /cannot read the agent configuration .*ENOENT.*witness-agent init/);
  });

  test('command-line mistakes are usage errors', () => {
    const { agentDir } = initAgent('cfg-2');
    for (const args of [['run'], ['run', '--dir', agentDir, '--qos', '5'], ['run', '--dir', agentDir, '--broker', 'ftp://x'], ['status'], ['fly']]) {
      const r = agentCli(args, '');
      assert.equal(r.code, 2, `${args.join(' ')}: ${r.stderr}`);
    }
    const help = agentCli(['--help']);
    assert.equal(help.code, 0);
    for (const c of ['init', 'run', 'bridge', 'status']) assert.match(help.stdout, new RegExp(`witness-agent ${c} `));
  });
});

describe('run with the broker unreachable', () => {
  test('messages queue durably; SIGTERM ends `run --once` with exit 1 and they stay for the next start', async () => {
    const { agentDir } = initAgent('cli-offline', 'mqtt://127.0.0.1:1');
    const p = startAgentProcess(['run', '--dir', agentDir, '--once']);
    await p.waitFor(/^offline: /);
    p.write('devices/cli-offline/x kept\n');
    p.proc.stdin!.end();
    await p.waitFor(/^queued 0 devices\/cli-offline\/x$/);
    p.proc.kill('SIGTERM');
    assert.equal(await p.exited(), 1, p.stderr());
    assert.match(p.lines().at(-1)!, /^stopped \(1 still queued, last ack none\)$/);
    const st = agentCli(['status', '--dir', agentDir, '--json']);
    assert.equal(st.code, 0, st.stderr);
    const j = JSON.parse(st.stdout) as { running: boolean; connected: boolean; outbox: { depth: number; nextSeq: number } };
    assert.deepEqual([j.running, j.connected, j.outbox.depth, j.outbox.nextSeq], [false, false, 1, 1]);
  });
});

describe('run, kill -9, run again', () => {
  let broker: BrokerProcess;
  let data: string;
  const ID = 'cli-dev';
  let agentDir: string;

  before(async () => {
    const port = await freePort();
    const a = initAgent(ID, `mqtt://127.0.0.1:${port}`);
    agentDir = a.agentDir;
    const b = brokerData(join(dir, 'run'), [{ id: ID, publicKey: a.publicKey }]);
    data = b.data;
    broker = await startBrokerProcess(data, ['--config', b.config, '--port', String(port)]);
  });

  after(async () => {
    await broker?.kill();
  });

  test('run --once publishes stdin lines, signed, and exits once the broker has them all', async () => {
    const r = agentCli(['run', '--dir', agentDir, '--once'], `devices/${ID}/a one\ndevices/${ID}/b two words\n\n# a comment\ndevices/${ID}/c\n`);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /^started cli-dev → mqtt:\/\/127\.0\.0\.1:\d+ \(clock (ntp|system) ±\d+ ms; outbox 0 queued, next seq 0\)$/m);
    assert.deepEqual(r.stdout.split('\n').filter((l) => l.startsWith('queued ')), [`queued 0 devices/${ID}/a`, `queued 1 devices/${ID}/b`, `queued 2 devices/${ID}/c`]);
    assert.match(r.stdout, /stopped \(0 still queued, last ack seq 2\)/);
    const rs = await waitForRecords(data, (rs) => publishesOf(rs, ID).length >= 3);
    const pubs = publishesOf(rs, ID);
    assert.deepEqual(assertSoundChain(pubs), [0, 1, 2]);
    assert.deepEqual(pubs.map((p) => p.topic), [`devices/${ID}/a`, `devices/${ID}/b`, `devices/${ID}/c`]);
    assert.equal(pubs[0]!.ts, chrony ? 'ntp' : 'system');
  });

  test('SIGKILL mid-stream, then restart: the chain continues, no sequence number reused, no gap', async () => {
    let n = 0;
    const feed = (p: ReturnType<typeof startAgentProcess>): NodeJS.Timeout =>
      setInterval(() => {
        for (let i = 0; i < 3; i++) p.write(`devices/${ID}/k msg-${n++}\n`);
      }, 5);
    const queuedSeqs = (p: ReturnType<typeof startAgentProcess>): number[] => p.lines().flatMap((l) => (/^queued (\d+) /.exec(l) ? [Number(/^queued (\d+) /.exec(l)![1])] : []));

    const first = startAgentProcess(['run', '--dir', agentDir]);
    await first.waitFor(/^connected /);
    const t1 = feed(first);
    await first.waitFor(/^queued 60 /); // well into the stream: 3 earlier + 57 of these
    first.proc.kill('SIGKILL'); // while lines keep coming and envelopes are in flight
    clearInterval(t1);
    assert.equal(await first.exited(), 'SIGKILL');
    const before = queuedSeqs(first);
    assert.ok(before.length >= 58, `${before.length} confirmed before the kill`);

    const second = startAgentProcess(['run', '--dir', agentDir]);
    const started = await second.waitFor(/^started /);
    const nextSeq = Number(/next seq (\d+)/.exec(started)![1]);
    assert.ok(nextSeq > Math.max(...before), `restart resumes after every confirmed number: next ${nextSeq}, confirmed up to ${Math.max(...before)}`);
    await second.waitFor(/^connected /);
    const t2 = feed(second);
    await second.waitFor(new RegExp(`^queued ${nextSeq + 40} `));
    clearInterval(t2);

    // status while it runs: from the status file.
    await new Promise((r) => setTimeout(r, 300));
    const live = agentCli(['status', '--dir', agentDir, '--json']);
    assert.equal(live.code, 0, live.stderr);
    const ls = JSON.parse(live.stdout) as { running: boolean; connected: boolean; pid: number; clock: { source: string; uncertainty: number }; outbox: { depth: number; nextSeq: number } };
    assert.equal(ls.running, true);
    assert.equal(ls.pid, second.proc.pid);
    assert.equal(ls.connected, true);
    assert.equal(ls.clock.source, chrony ? 'ntp' : 'system');
    assert.equal(typeof ls.outbox.depth, 'number');

    second.proc.kill('SIGTERM');
    assert.equal(await second.exited(), 0, second.stderr());
    assert.match(second.lines().at(-1)!, /^stopped \(0 still queued, last ack seq \d+\)$/);
    const after = queuedSeqs(second);
    const confirmed = [...before, ...after];
    assert.equal(new Set(confirmed).size, confirmed.length, 'a sequence number was confirmed twice');
    const last = Math.max(...confirmed);

    const rs = await waitForRecords(data, (rs) => publishesOf(rs, ID).some((r) => r.seq === last), 15_000);
    const pubs = publishesOf(rs, ID);
    // Every number first seen valid, once, in order (envelopes re-sent after a lost ack show up as
    // exact `replayed` duplicates, and only those); nothing delayed by the restart is a gap.
    const seqs = assertSoundChain(pubs, { late: true });
    for (const s of confirmed) assert.ok(seqs.includes(s), `confirmed seq ${s} is not in the ledger`);
    assert.equal(rs.filter((r) => r.e === 'publish' && r.c === ID && ['gap', 'chain-break', 'out-of-order'].includes(r.env as string)).length, 0);

    // status when nothing runs: the outbox on disk (empty: everything was acknowledged).
    const idle = agentCli(['status', '--dir', agentDir]);
    assert.equal(idle.code, 0, idle.stderr);
    assert.match(idle.stdout, /agent not running/);
    assert.match(idle.stdout, new RegExp(`outbox   0 queued \\(0 bytes\\), next seq ${last + 1}, last ack seq ${last} `));
    assert.match(idle.stdout, new RegExp(`clock    ${chrony ? 'ntp' : 'system'} `));
  });

  test('status with nothing to report is an error that says what to do', () => {
    const r = agentCli(['status', '--dir', join(dir, 'empty')]);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /no agent status in .*witness-agent run --dir/);
  });
});
