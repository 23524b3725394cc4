/**
 * The running broker's view of the registry: changes made by another process (the `witness
 * device` bin in a child process) arrive within a bounded time, exactly once; a malformed rewrite
 * is reported and the registry in force stays.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { writeFileSync, renameSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { watchRegistry } from '../../../broker/identity/registry-watcher.js';
import { DeviceRegistry, REGISTRY_FILE, type Change } from '../../../broker/identity/registry.js';
import { initDataDir } from '../../../broker/data-dir.js';
import { publicKeyFromSeed } from '../../../shared/keys/ed25519.js';
import { keyHash } from '../../../shared/keys/key-id.js';
import { formatPublicKey } from '../../../shared/keys/key-file.js';
import type { WitnessError } from '../../../shared/errors.js';
import { tempDir } from '../../helpers/tmp.js';

const BIN = new URL('../../../broker/cli/witness.js', import.meta.url).pathname;
/** Upper bound for a change to reach the watcher: the 1 s poll plus the debounce, with slack for a loaded machine. */
const BOUND_MS = 5_000;

const key = (n: number): Uint8Array => publicKeyFromSeed(new Uint8Array(32).fill(n));
const hashOf = (id: string, n: number): string => Buffer.from(keyHash(id, key(n))).toString('hex');

async function dataDir(t: Parameters<typeof tempDir>[0]): Promise<string> {
  const dir = join(tempDir(t), 'data');
  await initDataDir(dir, 'watch-test');
  return dir;
}

function witness(...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const p = spawn(process.execPath, [BIN, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    p.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    p.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    p.on('error', reject);
    p.on('close', (code) => resolve({ code: code ?? -1, stdout, stderr }));
  });
}

async function waitFor<T>(what: string, get: () => T | undefined, ms = BOUND_MS): Promise<T> {
  const start = Date.now();
  for (;;) {
    const v = get();
    if (v !== undefined) return v;
    if (Date.now() - start > ms) assert.fail(`${what}: nothing within ${ms} ms`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Writes devices.json the way an editor with atomic save would (tmp + rename). */
function rewrite(dir: string, text: string): void {
  const tmp = join(dir, 'devices.json.edit');
  writeFileSync(tmp, text);
  renameSync(tmp, join(dir, REGISTRY_FILE));
}

describe('watchRegistry', () => {
  test('sees `witness device add` from another process within the bound, and reports exactly that change', async (t) => {
    const dir = await dataDir(t);
    const seen: Change[][] = [];
    const errors: WitnessError[] = [];
    const w = watchRegistry(dir, (c) => seen.push(c), { onError: (e) => errors.push(e) });
    t.after(() => w.close());
    assert.equal(w.registry.lookup('dev-1', hashOf('dev-1', 1)).status, 'unknown');

    const started = Date.now();
    const r = await witness('device', 'add', '--id', 'dev-1', '--public-key', formatPublicKey(key(1)), '--data', dir);
    assert.equal(r.code, 0, r.stderr);
    const changes = await waitFor('the add', () => seen[0]);
    assert.ok(Date.now() - started < BOUND_MS);
    assert.equal(changes.length, 1);
    const c = changes[0]!;
    assert.equal(c.kind, 'device-added');
    assert.equal(c.deviceId, 'dev-1');
    assert.ok(c.kind === 'device-added' && c.keyHash === hashOf('dev-1', 1) && c.publicKey === formatPublicKey(key(1)));
    // The registry object the broker holds is the one updated.
    assert.equal(w.registry.lookup('dev-1', hashOf('dev-1', 1)).status, 'active');
    assert.equal(w.registry.revision, 1);

    // Then a revoke, also from another process.
    assert.equal((await witness('device', 'revoke', '--id', 'dev-1', '--data', dir)).code, 0);
    const second = await waitFor('the revoke', () => seen[1]);
    assert.deepEqual(second.map((x) => [x.kind, x.deviceId]), [['key-revoked', 'dev-1']]);
    assert.equal(w.registry.lookup('dev-1', hashOf('dev-1', 1)).status, 'revoked');

    // Nothing more: each change was reported once, and nothing went wrong.
    await sleep(1_300);
    assert.equal(seen.length, 2);
    assert.deepEqual(errors, []);
  });

  test('a malformed rewrite is reported once and the registry in force stays; a later good file applies', async (t) => {
    const dir = await dataDir(t);
    DeviceRegistry.edit(dir, (r) => r.add('dev-1', key(1)));
    const seen: Change[][] = [];
    const errors: WitnessError[] = [];
    const w = watchRegistry(dir, (c) => seen.push(c), { onError: (e) => errors.push(e) });
    t.after(() => w.close());
    assert.equal(w.registry.lookup('dev-1', hashOf('dev-1', 1)).status, 'active');

    rewrite(dir, '{"format": "witness-devices/v1", "revision": 2, "devices": {"dev-1": {"keys": [{"publicKey": "short"}]}}}');
    const e = await waitFor('the error', () => errors[0]);
    assert.equal(e.code, 'WITNESS_ERR_REGISTRY_MALFORMED');
    assert.match(e.message, new RegExp(`${join(dir, REGISTRY_FILE).replaceAll('/', '\\/')}: devices\\["dev-1"\\]\\.keys\\[0\\]\\.publicKey`));
    assert.match(e.message, /registry in force \(revision 1\) is kept/);
    assert.equal(w.registry.lookup('dev-1', hashOf('dev-1', 1)).status, 'active');
    assert.equal(w.registry.revision, 1);
    await sleep(1_300); // a poll or two later: still one report, no change
    assert.equal(errors.length, 1);
    assert.equal(seen.length, 0);

    // Fixed by the CLI (which would refuse to edit a malformed file, so write a good one by hand).
    const fixed = DeviceRegistry.empty(dir);
    fixed.add('dev-1', key(1));
    fixed.add('dev-2', key(2));
    rewrite(dir, JSON.stringify({ ...fixed.toJSON(), revision: 3 }));
    const changes = await waitFor('the fix', () => seen[0]);
    // dev-1's key was re-added with a new addedAt, which is no change; dev-2 is new.
    assert.deepEqual(changes.map((c) => [c.kind, c.deviceId]), [['device-added', 'dev-2']]);
    assert.equal(w.registry.revision, 3);
  });

  test('a deleted file is an empty registry, as at start-up: every device is reported removed', async (t) => {
    const dir = await dataDir(t);
    DeviceRegistry.edit(dir, (r) => r.add('dev-1', key(1)));
    const seen: Change[][] = [];
    const w = watchRegistry(dir, (c) => seen.push(c));
    t.after(() => w.close());
    rmSync(join(dir, REGISTRY_FILE));
    const changes = await waitFor('the removal', () => seen[0]);
    assert.deepEqual(changes, [{ kind: 'device-removed', deviceId: 'dev-1', keyHashes: [hashOf('dev-1', 1)] }]);
    assert.equal(w.registry.lookup('dev-1', hashOf('dev-1', 1)).status, 'unknown');
  });

  test('the poll alone finds a change (fs.watch off), and a registry loaded earlier is brought up to date at start', async (t) => {
    const dir = await dataDir(t);
    const seen: Change[][] = [];
    // A registry loaded before the watcher started, and changed on disk in between: picked up at start.
    const registry = DeviceRegistry.load(dir);
    DeviceRegistry.edit(dir, (r) => r.add('dev-0', key(9)));
    const w = watchRegistry(dir, (c) => seen.push(c), { registry, pollMs: 100, fsWatch: false });
    t.after(() => w.close());
    assert.deepEqual(seen.map((c) => c.map((x) => x.deviceId)), [['dev-0']]);
    assert.equal(w.registry, registry);

    DeviceRegistry.edit(dir, (r) => r.add('dev-1', key(1)));
    const changes = await waitFor('the poll', () => seen[1], 2_000);
    assert.deepEqual(changes.map((x) => x.deviceId), ['dev-1']);
  });

  test('check() applies a change at once; close() stops reporting', async (t) => {
    const dir = await dataDir(t);
    const seen: Change[][] = [];
    const w = watchRegistry(dir, (c) => seen.push(c), { pollMs: 100 });
    t.after(() => w.close());
    DeviceRegistry.edit(dir, (r) => r.add('dev-1', key(1)));
    assert.deepEqual(w.check().map((x) => x.deviceId), ['dev-1']);
    assert.deepEqual(w.check(), []);
    await sleep(300);
    assert.equal(seen.length, 1, 'the triggers that follow find nothing new');

    w.close();
    DeviceRegistry.edit(dir, (r) => r.add('dev-2', key(2)));
    await sleep(400);
    assert.equal(seen.length, 1);
    assert.equal(w.registry.lookup('dev-2', hashOf('dev-2', 2)).status, 'unknown');
  });
});
