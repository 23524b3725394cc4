/**
 * The one-file agent (`npm run bundle` → scripts/bundle-agent.mjs): built into a temp directory
 * with no node_modules anywhere above it, it runs with plain `node` — help, init, and a real
 * `run --once` whose envelopes the broker records as valid (MQTT.js, the trusted clock with
 * ntp-time-sync against chronyd when installed, the outbox: all inside the one file). Its banner
 * states the GPL-3.0 terms that ntp-time-sync brings.
 */
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { startBrokerProcess } from '../helpers/broker-process.js';
import { waitForRecords } from '../helpers/records.js';
import { CHRONY_SKIP, startChrony, type ChronyServer } from '../helpers/chrony.js';
import { assertSoundChain, brokerData, freePort, publishesOf } from './helpers.js';

const SCRIPT = new URL('../../../scripts/bundle-agent.mjs', import.meta.url).pathname;

let dir: string;
let bundle: string;
let built: { code: number | null; stdout: string; stderr: string };
let chrony: ChronyServer | undefined;

function node(args: string[], input?: string): { code: number | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, args, { cwd: dir, encoding: 'utf8', timeout: 60_000, ...(input !== undefined ? { input } : {}) });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

/** True when some directory above `d` holds node_modules (then "no node_modules" is not tested). */
function nodeModulesAbove(d: string): boolean {
  for (let p = d; ; p = dirname(p)) {
    if (existsSync(join(p, 'node_modules'))) return true;
    if (dirname(p) === p) return false;
  }
}

before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'witness-agent-bundle-'));
  bundle = join(dir, 'witness-agent.mjs');
  built = node([SCRIPT, '--outfile', bundle]);
  if (!CHRONY_SKIP) chrony = await startChrony();
});

after(async () => {
  await chrony?.close();
  rmSync(dir, { recursive: true, force: true });
});

describe('the one-file bundle', () => {
  test('builds one file, reports its size, and states its licence', () => {
    assert.equal(built.code, 0, built.stderr);
    const size = statSync(bundle).size;
    assert.match(built.stdout, new RegExp(`witness-agent\\.mjs: ${size.toLocaleString('en')} bytes`));
    assert.ok(size < 4 * 1024 * 1024, `${size} bytes`);
    const head = readFileSync(bundle, 'utf8').slice(0, 4000);
    assert.ok(head.startsWith('#!/usr/bin/env node\n'));
    assert.match(head, /includes ntp-time-sync@[\d.]+ \(GPL-3\.0\)/);
    assert.match(head, /bundle as a whole is\s+\*? ?therefore distributed under the terms of the GNU General Public License, version 3/);
    assert.match(head, /mqtt@[\d.]+ \(MIT\)/);
  });

  test('runs with plain node and no node_modules: --help and init', () => {
    assert.equal(nodeModulesAbove(dir), false, `${dir} has a node_modules above it`);
    const help = node([bundle, '--help']);
    assert.equal(help.code, 0, help.stderr);
    for (const c of ['init', 'run', 'bridge', 'status']) assert.match(help.stdout, new RegExp(`witness-agent ${c} `));
    const init = node([bundle, 'init', '--id', 'bundled', '--dir', 'agent']);
    assert.equal(init.code, 0, init.stderr);
    assert.match(init.stdout, /witness device add --id bundled --public-key=[A-Za-z0-9_-]{43}\n/);
    assert.ok(existsSync(join(dir, 'agent', 'device.key')) && existsSync(join(dir, 'agent', 'witness-agent.yaml')));
  });

  test('the bundled agent publishes envelopes the broker records as valid', async () => {
    const agentDir = join(dir, 'agent');
    assert.ok(existsSync(join(agentDir, 'device.pub')), 'init ran');
    const port = await freePort();
    const b = brokerData(join(dir, 'broker'), [{ id: 'bundled', publicKey: readFileSync(join(agentDir, 'device.pub'), 'utf8').trim() }]);
    const cfg = join(agentDir, 'witness-agent.yaml');
    writeFileSync(cfg, readFileSync(cfg, 'utf8').replace(/^ {2}servers: \[[^\]]*\]/m, `  servers: [${chrony ? chrony.address : ''}]`));
    const broker = await startBrokerProcess(b.data, ['--config', b.config, '--port', String(port)]);
    try {
      const r = node([bundle, 'run', '--dir', 'agent', '--broker', `mqtt://127.0.0.1:${port}`, '--once'], 'devices/bundled/a from the bundle\ndevices/bundled/b again\n');
      assert.equal(r.code, 0, r.stderr);
      const rs = await waitForRecords(b.data, (rs) => publishesOf(rs, 'bundled').length >= 2);
      const pubs = publishesOf(rs, 'bundled');
      assert.deepEqual(assertSoundChain(pubs), [0, 1]);
      assert.equal(pubs[0]!.ts, chrony ? 'ntp' : 'system');
      const st = node([bundle, 'status', '--dir', 'agent', '--json']);
      assert.equal(st.code, 0, st.stderr);
      assert.equal((JSON.parse(st.stdout) as { outbox: { depth: number } }).outbox.depth, 0);
    } finally {
      await broker.kill();
    }
  });
});
