/**
 * The agent's options and configuration file (agent/options.ts, agent/config.ts): defaults in one
 * place, the file `init` writes parses back to them, mistakes are reported like the broker's
 * (FILE:LINE:COL, path, hint, all at once), and options are checked at the boundary.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { AGENT_DEFAULTS, resolveAgentOptions, checkBridgeListen } from '../../agent/options.js';
import { defaultConfigText, loadAgentConfig, optionsFromConfig, parseAgentConfig } from '../../agent/config.js';
import { generateSeed, publicKeyFromSeed } from '../../shared/keys/ed25519.js';
import { formatPublicKey, writeKeyPair } from '../../shared/keys/key-file.js';
import { verifierKey } from '../../shared/keys/key-id.js';
import type { ConfigProblem } from '../../broker/config/yaml-schema.js';

function problems(text: string): ConfigProblem[] {
  try {
    parseAgentConfig(text, '/cfg/witness-agent.yaml');
  } catch (e) {
    assert.equal((e as { code?: string }).code, 'WITNESS_ERR_CONFIG_INVALID');
    return (e as { details: { problems: ConfigProblem[] } }).details.problems;
  }
  assert.fail('expected WITNESS_ERR_CONFIG_INVALID');
}

describe('config file', () => {
  test('the file init writes parses back to the defaults', () => {
    const cfg = parseAgentConfig(defaultConfigText('sensor-1'), '/cfg/witness-agent.yaml');
    const o = resolveAgentOptions({ ...optionsFromConfig(cfg), seed: generateSeed(), outboxDir: '/tmp/x' });
    assert.equal(o.deviceId, 'sensor-1');
    for (const k of ['broker', 'audience', 'outboxMaxBytes', 'outboxMaxAgeMs', 'outboxOverflow', 'reconnectMinMs', 'reconnectMaxMs'] as const) {
      assert.deepEqual(o[k], AGENT_DEFAULTS[k], k);
    }
    assert.deepEqual(o.ntpServers, AGENT_DEFAULTS.ntpServers);
    assert.equal(cfg.bridge?.listen, '127.0.0.1:1884');
  });

  test('known keys in both forms become one map', () => {
    const p1 = publicKeyFromSeed(generateSeed());
    const p2 = publicKeyFromSeed(generateSeed());
    const cfg = parseAgentConfig(['deviceId: me', 'knownKeys:', `  - ${verifierKey('d1', p1)}`, `  - { id: d1, publicKey: "${formatPublicKey(p2)}" }`, ''].join('\n'), 'f.yaml');
    assert.deepEqual(optionsFromConfig(cfg).knownKeys, { d1: [verifierKey('d1', p1), formatPublicKey(p2)] });
  });

  test('every problem, with line, column, path and hint', () => {
    const ps = problems(['deviceId: "bad id"', 'audience: 7', 'keepaliveS: -1', 'reconnect:', '  minMs: 10', '  maxMs: 5', 'status: { intervalMss: 3 }', 'deviceId: twice', ''].join('\n'));
    const got = ps.map((p) => `${p.line}:${p.col} ${p.path}: ${p.message}`);
    assert.deepEqual(got, [
      '1:11 deviceId: device id "bad id" is not 1–64 of A-Z a-z 0-9 . _ : -',
      '2:11 audience: expected a string, got the number 7',
      '3:13 keepaliveS: -1 is out of range',
      '6:10 reconnect.maxMs: maxMs (5) is below minMs (10)',
      '7:11 status.intervalMss: unknown key "intervalMss"',
      '8:1 : YAML: Map keys must be unique',
    ]);
    assert.equal(ps.find((p) => p.path === 'status.intervalMss')!.hint, 'did you mean intervalMs?');
    assert.deepEqual(problems('broker: mqtt://x\n').map((p) => p.message), ['missing required key deviceId']);
    assert.deepEqual(problems('').map((p) => p.message), ['expected a mapping, got nothing (null)']);
  });

  test('a missing file is an I/O error that says how to make one', () => {
    assert.throws(() => loadAgentConfig('/nonexistent/witness-agent.yaml'), (e: Error & { code?: string }) => e.code === 'WITNESS_ERR_IO' && /witness-agent init/.test(e.message));
  });
});

describe('options', () => {
  test('the key comes from DIR (and must match device.pub); the outbox and status file live there', (t) => {
    const dir = mkdtempSync(join(tmpdir(), 'witness-agent-options-'));
    t.after(() => rmSync(dir, { recursive: true, force: true }));
    const { publicKey } = writeKeyPair(dir, 'device');
    const o = resolveAgentOptions({ deviceId: 'd1', dir });
    assert.deepEqual(o.publicKey, publicKey);
    assert.equal(o.outboxDir, join(dir, 'outbox'));
    assert.equal(o.statusFile, join(dir, 'status.json'));
    writeFileSync(join(dir, 'device.pub'), `${formatPublicKey(publicKeyFromSeed(generateSeed()))}\n`);
    assert.throws(() => resolveAgentOptions({ deviceId: 'd1', dir }), /does not hold the public key of device.key/);
  });

  test('bad options are refused at the boundary with what was wrong', () => {
    const seed = generateSeed();
    const base = { deviceId: 'd1', seed, outboxDir: '/tmp/x' };
    const cases: Array<[Record<string, unknown>, RegExp]> = [
      [{ deviceId: 'a b' }, /device id/],
      [{ seed: undefined, outboxDir: undefined }, /give `seed` or `dir`/],
      [{ outboxDir: undefined }, /give `outboxDir` or `dir`/],
      [{ publicKey: publicKeyFromSeed(generateSeed()) }, /not the public key of seed/],
      [{ broker: 'http://x' }, /scheme must be one of mqtt, mqtts, ws, wss/],
      [{ broker: 'not a url' }, /not a URL/],
      [{ ntpServers: ['pool.ntp.org'] }, /not host:port/],
      [{ maxInflight: 0 }, /maxInflight must be an integer 1–65535/],
      [{ reconnectJitter: 2 }, /reconnectJitter/],
      [{ outboxOverflow: 'drop-newest' }, /outboxOverflow/],
    ];
    for (const [over, re] of cases) assert.throws(() => resolveAgentOptions({ ...base, ...over } as never), re, JSON.stringify(over));
    assert.equal(resolveAgentOptions(base).statusFile, null, 'no status file without dir');
  });

  test('the bridge listens on loopback only', () => {
    assert.deepEqual(checkBridgeListen('127.0.0.1:0'), { host: '127.0.0.1', port: 0 });
    assert.deepEqual(checkBridgeListen('[::1]:1884'), { host: '::1', port: 1884 });
    assert.deepEqual(checkBridgeListen('localhost:1884'), { host: 'localhost', port: 1884 });
    for (const bad of ['0.0.0.0:1884', '192.168.1.2:1884', 'example.com:1884', '127.0.0.1', '127.0.0.1:70000']) assert.throws(() => checkBridgeListen(bad), /bridge listen/, bad);
  });
});
