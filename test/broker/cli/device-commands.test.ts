/**
 * `witness device add | revoke | list` run as a user runs them: the built bins in child
 * processes, including the exact line `witness-agent init` tells the user to run.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdirSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { tempDir } from '../../helpers/tmp.js';
import { publicKeyFromSeed } from '../../../shared/keys/ed25519.js';
import { keyHash } from '../../../shared/keys/key-id.js';
import { formatPublicKey } from '../../../shared/keys/key-file.js';

const WITNESS = new URL('../../../broker/cli/witness.js', import.meta.url).pathname;
const AGENT = new URL('../../../agent/cli/witness-agent.js', import.meta.url).pathname;

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

function run(bin: string, args: string[], cwd?: string): Run {
  const r = spawnSync(process.execPath, [bin, ...args], { encoding: 'utf8', timeout: 60_000, ...(cwd ? { cwd } : {}) });
  return { code: r.status ?? -1, stdout: r.stdout, stderr: r.stderr };
}
const witness = (args: string[], cwd?: string): Run => run(WITNESS, args, cwd);

const key = (n: number): string => formatPublicKey(publicKeyFromSeed(new Uint8Array(32).fill(n)));
const hashOf = (id: string, n: number): string => Buffer.from(keyHash(id, publicKeyFromSeed(new Uint8Array(32).fill(n)))).toString('hex');

/** A data directory made by `witness init`. */
function initData(t: Parameters<typeof tempDir>[0]): string {
  const data = join(tempDir(t), 'data');
  const r = witness(['init', '--data', data, '--node-id', 'device-cli', '--json']);
  assert.equal(r.code, 0, r.stderr);
  return data;
}

interface ListJson {
  ok: true;
  revision: number;
  devices: { id: string; keys: { keyHash: string; status: string; addedAt: string; revokedAt?: string }[] }[];
}

describe('witness device add', () => {
  test('registers a key, says what it did and that a running broker picks it up; a second add is a no-op', (t) => {
    const data = initData(t);
    const r = witness(['device', 'add', '--id', 'dev-1', '--public-key', key(1), '--data', data]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, new RegExp(`added device dev-1 with key ${hashOf('dev-1', 1)}`));
    assert.match(r.stdout, /devices\.json is now at revision 1/);
    assert.match(r.stdout, /running broker picks this up without a restart/);

    const again = witness(['device', 'add', '--id', 'dev-1', '--public-key', key(1), '--data', data]);
    assert.equal(again.code, 0, again.stderr);
    assert.match(again.stdout, /already has key .*nothing changed/);
    assert.doesNotMatch(again.stdout, /picks this up/);
    assert.deepEqual(readdirSync(data).filter((n) => n.startsWith('devices.json')), ['devices.json']);
  });

  test('--json: the changes, the revision, the file', (t) => {
    const data = initData(t);
    const r = witness(['device', 'add', '--id', 'dev-1', '--public-key', key(1), '--data', data, '--json']);
    assert.equal(r.code, 0, r.stderr);
    const out = JSON.parse(r.stdout) as { ok: boolean; changed: boolean; revision: number; file: string; changes: { kind: string; deviceId: string; keyHash: string }[] };
    assert.equal(out.ok, true);
    assert.equal(out.changed, true);
    assert.equal(out.revision, 1);
    assert.equal(out.file, join(data, 'devices.json'));
    assert.deepEqual(out.changes.map((c) => [c.kind, c.deviceId, c.keyHash]), [['device-added', 'dev-1', hashOf('dev-1', 1)]]);
  });

  test('errors exit 2 and say what, where and what to do', (t) => {
    const data = initData(t);
    const cases: [string[], RegExp][] = [
      [['device', 'add', '--id', 'bad id', '--public-key', key(1), '--data', data], /device id "bad id".*\n.*WITNESS_ERR_DEVICE_ID_INVALID/],
      [['device', 'add', '--id', 'dev-1', '--public-key', 'nonsense', '--data', data], /public key "nonsense".*\n.*WITNESS_ERR_KEY_INVALID/],
      [['device', 'add', '--id', 'dev-1', '--data', data], /--public-key is required.*\n.*WITNESS_ERR_USAGE/],
      [['device', 'add', '--public-key', key(1), '--data', data], /--id is required.*\n.*WITNESS_ERR_USAGE/],
      [['device', 'revoke', '--id', 'ghost', '--data', data], /device ghost is not registered in .*devices\.json\n.*WITNESS_ERR_DEVICE_UNKNOWN: .*witness device list/],
      [['device', 'list', '--data', join(data, 'nope')], /not a Witness data directory.*witness init --data.*\n.*WITNESS_ERR_LEDGER_NOT_FOUND/],
      [['device', 'add', '--id', 'd', '--public-key', key(1), '--data', join(data, 'nope')], /not a Witness data directory/],
      [['device', 'frob', '--data', data], /unknown subcommand "frob"; usage: witness device add/],
      [['device'], /missing subcommand/],
      [['device', 'list', '--id', 'x', '--data', data], /option --id does not apply here/],
      [['device', 'list', '--bogus'], /Unknown option '--bogus'/],
    ];
    for (const [args, stderr] of cases) {
      const r = witness(args);
      assert.equal(r.code, 2, `${args.join(' ')}: ${r.stdout}${r.stderr}`);
      assert.match(r.stderr, stderr, args.join(' '));
      assert.doesNotMatch(r.stderr, /internal error/);
    }
    // With --json the error is an object on stdout.
    const j = witness(['device', 'revoke', '--id', 'ghost', '--data', data, '--json']);
    assert.equal(j.code, 2);
    const out = JSON.parse(j.stdout) as { ok: boolean; error: { code: string; hint: string } };
    assert.equal(out.ok, false);
    assert.equal(out.error.code, 'WITNESS_ERR_DEVICE_UNKNOWN');
    // Nothing was written by the failed commands.
    assert.deepEqual(readdirSync(data).filter((n) => n.startsWith('devices.json')), []);
  });

  test('a revoked key cannot be added again (exit 2); a new key can (rotation)', (t) => {
    const data = initData(t);
    for (const args of [['add', '--id', 'dev-1', '--public-key', key(1)], ['revoke', '--id', 'dev-1']]) {
      const r = witness(['device', ...args, '--data', data]);
      assert.equal(r.code, 0, r.stderr);
    }
    const re = witness(['device', 'add', '--id', 'dev-1', '--public-key', key(1), '--data', data]);
    assert.equal(re.code, 2);
    assert.match(re.stderr, /WITNESS_ERR_DEVICE_KEY_REVOKED/);
    const rot = witness(['device', 'add', '--id', 'dev-1', '--public-key', key(2), '--data', data]);
    assert.equal(rot.code, 0, rot.stderr);
    assert.match(rot.stdout, /key rotation/);
  });
});

describe('witness device revoke and list', () => {
  test('revoke one key by hash, then the rest; list shows status and times; --json agrees', (t) => {
    const data = initData(t);
    for (const [id, n] of [['dev-1', 1], ['dev-1', 2], ['dev-2', 3]] as const) {
      const r = witness(['device', 'add', '--id', id, '--public-key', key(n), '--data', data]);
      assert.equal(r.code, 0, r.stderr);
    }
    const one = witness(['device', 'revoke', '--id', 'dev-1', '--key-hash', hashOf('dev-1', 1), '--data', data]);
    assert.equal(one.code, 0, one.stderr);
    assert.match(one.stdout, new RegExp(`revoked key ${hashOf('dev-1', 1)} of device dev-1`));
    const unknown = witness(['device', 'revoke', '--id', 'dev-1', '--key-hash', '00000000', '--data', data]);
    assert.equal(unknown.code, 2);
    assert.match(unknown.stderr, /WITNESS_ERR_DEVICE_KEY_UNKNOWN/);

    const table = witness(['device', 'list', '--data', data]);
    assert.equal(table.code, 0, table.stderr);
    const lines = table.stdout.trimEnd().split('\n');
    assert.match(lines[0]!, /^DEVICE\s+KEY HASH\s+STATUS\s+ADDED\s+REVOKED$/);
    assert.equal(lines.length, 4);
    assert.match(lines[1]!, new RegExp(`^dev-1\\s+${hashOf('dev-1', 1)}\\s+revoked\\s+\\d{4}-\\d\\d-\\d\\dT\\S+Z\\s+\\d{4}-\\S+Z$`));
    assert.match(lines[2]!, new RegExp(`^dev-1\\s+${hashOf('dev-1', 2)}\\s+active\\s+\\S+Z\\s+-$`));
    assert.match(lines[3]!, new RegExp(`^dev-2\\s+${hashOf('dev-2', 3)}\\s+active\\s+`));

    const all = witness(['device', 'revoke', '--id', 'dev-1', '--data', data]);
    assert.match(all.stdout, new RegExp(`revoked key ${hashOf('dev-1', 2)} of device dev-1`));
    const noop = witness(['device', 'revoke', '--id', 'dev-1', '--data', data]);
    assert.equal(noop.code, 0);
    assert.match(noop.stdout, /already revoked: nothing changed/);

    const j = witness(['device', 'list', '--data', data, '--json']);
    assert.equal(j.code, 0);
    const out = JSON.parse(j.stdout) as ListJson;
    assert.equal(out.revision, 5);
    assert.deepEqual(out.devices.map((d) => [d.id, d.keys.map((k) => k.status)]), [['dev-1', ['revoked', 'revoked']], ['dev-2', ['active']]]);
  });

  test('list of an empty registry says how to add one', (t) => {
    const data = initData(t);
    const r = witness(['device', 'list', '--data', data]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /no devices registered.*\n.*witness device add --id ID --public-key K/);
    assert.deepEqual((JSON.parse(witness(['device', 'list', '--data', data, '--json']).stdout) as ListJson).devices, []);
  });

  test('witness --help lists the device command; witness device --help prints its usage', () => {
    assert.match(witness(['--help']).stdout, /\bdevice\b.*register, revoke and list/);
    const h = witness(['device', '--help']);
    assert.equal(h.code, 0);
    assert.match(h.stdout, /witness device add --id ID --public-key K \[--data DIR\] \| revoke --id ID \[--key-hash H\]/);
  });
  test('values that start with "-" (1 base64url key in 64, device ids) are taken as values', (t) => {
    const data = initData(t);
    // Find a seed whose public key starts with '-'.
    const n = Array.from({ length: 255 }, (_, i) => i + 1).find((i) => key(i).startsWith('-'));
    assert.ok(n !== undefined);
    const r = witness(['device', 'add', '--id', '-dev', '--public-key', key(n), '--data', data]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /added device -dev with key/);
    const rv = witness(['device', 'revoke', '--id', '-dev', '--key-hash', hashOf('-dev', n), '--data', data]);
    assert.equal(rv.code, 0, rv.stderr);
    // An option name after a value option is still an option (the value is missing).
    const missing = witness(['device', 'add', '--id', '--public-key', key(1), '--data', data]);
    assert.equal(missing.code, 2);
  });
});

describe('the line witness-agent init prints', () => {
  test('works exactly as printed, next to a broker data directory made with defaults', (t) => {
    const work = tempDir(t);
    // `witness init` with no --data: ./witness-data, the default `witness device` uses too.
    const init = witness(['init'], work);
    assert.equal(init.code, 0, init.stderr);
    const agentDir = join(work, 'agent');
    mkdirSync(agentDir);
    const a = run(AGENT, ['init', '--id', 'D', '--dir', join(agentDir, 'X')], agentDir);
    assert.equal(a.code, 0, a.stderr);
    const line = a.stdout.split('\n').map((l) => l.trim()).find((l) => l.startsWith('witness device add '));
    assert.ok(line, a.stdout);
    assert.match(line, /^witness device add --id D --public-key=[A-Za-z0-9_-]{43}$/);
    const pub = readFileSync(join(agentDir, 'X', 'device.pub'), 'utf8').trim();
    assert.ok(line.endsWith(pub));

    const r = witness(line.split(/\s+/).slice(1), work);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /added device D with key [0-9a-f]{8}/);
    const list = JSON.parse(witness(['device', 'list', '--json'], work).stdout) as ListJson;
    assert.deepEqual(list.devices.map((d) => [d.id, d.keys.length, d.keys[0]!.status]), [['D', 1, 'active']]);
  });
});
