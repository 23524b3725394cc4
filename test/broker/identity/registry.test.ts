import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, readdirSync, writeFileSync, existsSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { spawnSync } from 'node:child_process';
import { DeviceRegistry, diffRegistries, describeChange, REGISTRY_FILE, REGISTRY_FORMAT, type RegistryDocument } from '../../../broker/identity/registry.js';
import { initDataDir } from '../../../broker/data-dir.js';
import { publicKeyFromSeed } from '../../../shared/keys/ed25519.js';
import { keyHash, verifierKey } from '../../../shared/keys/key-id.js';
import { formatPublicKey } from '../../../shared/keys/key-file.js';
import { WitnessError, type WitnessErrorCode } from '../../../shared/errors.js';
import { tempDir } from '../../helpers/tmp.js';
import type { KeyLookup } from '../../../broker/envelope-check.js';
import type { TokenKeyLookup } from '../../../broker/identity/token-verifier.js';

const key = (n: number): Uint8Array => publicKeyFromSeed(new Uint8Array(32).fill(n));
const hashOf = (id: string, n: number): string => Buffer.from(keyHash(id, key(n))).toString('hex');

async function dataDir(t: Parameters<typeof tempDir>[0]): Promise<string> {
  const dir = join(tempDir(t), 'data');
  await initDataDir(dir, 'registry-test');
  return dir;
}

function throwsCode(fn: () => unknown, code: WitnessErrorCode, message?: RegExp): WitnessError {
  try {
    fn();
  } catch (e) {
    assert.ok(e instanceof WitnessError, `expected a WitnessError, got ${String(e)}`);
    assert.equal(e.code, code, e.message);
    if (message) assert.match(e.message, message);
    return e;
  }
  assert.fail(`expected ${code}, nothing was thrown`);
}

function readDoc(dir: string): RegistryDocument {
  return JSON.parse(readFileSync(join(dir, REGISTRY_FILE), 'utf8')) as RegistryDocument;
}

test('DeviceRegistry is the key lookup of the envelope checker and of the token verifier', () => {
  const r = DeviceRegistry.empty('/d');
  const forEnvelopes: KeyLookup = r;
  const forTokens: TokenKeyLookup = r;
  r.add('dev-1', key(1));
  assert.equal(forEnvelopes.lookup('dev-1', keyHash('dev-1', key(1))).status, 'active');
  assert.equal(forTokens.lookup('dev-1', keyHash('dev-1', key(2))).status, 'unknown');
});

describe('DeviceRegistry: add, revoke, list, persisted', () => {
  test('a missing file is an empty registry at revision 0', async (t) => {
    const dir = await dataDir(t);
    const r = DeviceRegistry.load(dir);
    assert.equal(r.revision, 0);
    assert.deepEqual(r.list(), []);
    assert.equal(r.lookup('dev-1', hashOf('dev-1', 1)).status, 'unknown');
  });

  test('add, revoke and list survive a reload; revision +1 per change', async (t) => {
    const dir = await dataDir(t);
    const r = DeviceRegistry.load(dir);
    const a = r.add('dev-1', key(1));
    assert.deepEqual(a.changes, [{ kind: 'device-added', deviceId: 'dev-1', keyHash: hashOf('dev-1', 1), publicKey: formatPublicKey(key(1)), at: a.changes[0]!.kind === 'device-added' ? a.changes[0]!.at : '' }]);
    assert.match(a.message, /added device dev-1 with key [0-9a-f]{8}/);
    r.add('dev-2', formatPublicKey(key(2))); // the text form, as the CLI passes it
    r.revoke('dev-2');
    assert.equal(r.revision, 3);
    r.save();

    const again = DeviceRegistry.load(dir);
    assert.equal(again.revision, 3);
    const list = again.list();
    assert.deepEqual(list.map((d) => [d.id, d.keys.map((k) => [k.keyHash, k.status])]), [
      ['dev-1', [[hashOf('dev-1', 1), 'active']]],
      ['dev-2', [[hashOf('dev-2', 2), 'revoked']]],
    ]);
    assert.match(list[1]!.keys[0]!.revokedAt ?? '', /^\d{4}-\d\d-\d\dT/);
    assert.equal(again.lookup('dev-1', keyHash('dev-1', key(1))).status, 'active');
    assert.deepEqual(again.lookup('dev-1', hashOf('dev-1', 1)).publicKey, key(1));
    assert.equal(again.lookup('dev-2', hashOf('dev-2', 2)).status, 'revoked');
    assert.equal(again.lookup('dev-1', hashOf('dev-1', 2)).status, 'unknown');

    const doc = readDoc(dir);
    assert.equal(doc.format, REGISTRY_FORMAT);
    assert.deepEqual(Object.keys(doc.devices), ['dev-1', 'dev-2']);
    assert.deepEqual(Object.keys(doc.devices['dev-2']!.keys[0]!).sort(), ['addedAt', 'keyHash', 'publicKey', 'revokedAt']);
    assert.deepEqual(Object.keys(doc.devices['dev-1']!.keys[0]!).sort(), ['addedAt', 'keyHash', 'publicKey']);
  });

  test('adding the same key twice is a no-op with a clear message', async (t) => {
    const dir = await dataDir(t);
    const r = DeviceRegistry.load(dir);
    r.add('dev-1', key(1));
    const again = r.add('dev-1', key(1));
    assert.deepEqual(again.changes, []);
    assert.equal(again.revision, 1);
    assert.match(again.message, /already has key [0-9a-f]{8}.*nothing changed/);
  });

  test('key rotation: after revoking, adding a new key makes it the active one', async (t) => {
    const dir = await dataDir(t);
    const r = DeviceRegistry.load(dir);
    r.add('dev-1', key(1));
    r.revoke('dev-1');
    const rot = r.add('dev-1', key(2));
    assert.equal(rot.changes[0]?.kind, 'key-added');
    assert.match(rot.message, /key rotation/);
    assert.equal(r.lookup('dev-1', hashOf('dev-1', 1)).status, 'revoked');
    assert.equal(r.lookup('dev-1', hashOf('dev-1', 2)).status, 'active');
  });

  test('a second active key while the first is still active (overlapping rotation)', async (t) => {
    const dir = await dataDir(t);
    const r = DeviceRegistry.load(dir);
    r.add('dev-1', key(1));
    assert.match(r.add('dev-1', key(2)).message, /now has 2 active keys/);
    const rv = r.revoke('dev-1', hashOf('dev-1', 1).toUpperCase());
    assert.deepEqual(rv.changes.map((c) => c.kind), ['key-revoked']);
    assert.equal(r.lookup('dev-1', hashOf('dev-1', 1)).status, 'revoked');
    assert.equal(r.lookup('dev-1', hashOf('dev-1', 2)).status, 'active');
    // revoke without a hash: every key still active, i.e. the second one only
    assert.deepEqual(r.revoke('dev-1').changes.map((c) => (c.kind === 'key-revoked' ? c.keyHash : '')), [hashOf('dev-1', 2)]);
    const noop = r.revoke('dev-1');
    assert.deepEqual(noop.changes, []);
    assert.match(noop.message, /already revoked: nothing changed/);
  });

  test('refusals: revoked key re-added, key of another device, unknown device or key, bad id, bad key', async (t) => {
    const dir = await dataDir(t);
    const r = DeviceRegistry.load(dir);
    r.add('dev-1', key(1));
    r.revoke('dev-1');
    throwsCode(() => r.add('dev-1', key(1)), 'WITNESS_ERR_DEVICE_KEY_REVOKED', /revoked at .*cannot be added again/);
    r.add('dev-2', key(2));
    throwsCode(() => r.add('dev-3', key(2)), 'WITNESS_ERR_DEVICE_KEY_IN_USE', /already registered for device dev-2/);
    throwsCode(() => r.revoke('nope'), 'WITNESS_ERR_DEVICE_UNKNOWN', /device nope is not registered/);
    throwsCode(() => r.revoke('dev-2', '00000000'), 'WITNESS_ERR_DEVICE_KEY_UNKNOWN', /has no key 00000000/);
    throwsCode(() => r.revoke('dev-2', 'xyz'), 'WITNESS_ERR_INVALID_ARGUMENT', /8 hex digits/);
    throwsCode(() => r.add('bad id', key(3)), 'WITNESS_ERR_DEVICE_ID_INVALID');
    throwsCode(() => r.add('dev-4', 'not-a-key'), 'WITNESS_ERR_KEY_INVALID');
    throwsCode(() => r.add('dev-4', new Uint8Array(32)), 'WITNESS_ERR_KEY_WEAK'); // y = 0: small order
    throwsCode(() => r.add('dev-4', verifierKey('dev-5', key(4))), 'WITNESS_ERR_KEY_INVALID', /is the key of "dev-5", not of device dev-4/);
    assert.equal(r.add('dev-4', verifierKey('dev-4', key(4))).changes[0]?.kind, 'device-added');
    assert.equal(r.revision, 4);
  });
});

describe('DeviceRegistry: writing', () => {
  test('atomic write leaves no temporary or lock file, and edit() saves only when something changed', async (t) => {
    const dir = await dataDir(t);
    DeviceRegistry.edit(dir, (r) => r.add('dev-1', key(1)));
    DeviceRegistry.edit(dir, (r) => r.add('dev-2', key(2)));
    const names = readdirSync(dir);
    assert.ok(names.includes(REGISTRY_FILE));
    assert.deepEqual(names.filter((n) => n.startsWith(REGISTRY_FILE) && n !== REGISTRY_FILE), []);
    assert.equal(readDoc(dir).revision, 2);
    const before = readFileSync(join(dir, REGISTRY_FILE), 'utf8');
    const noop = DeviceRegistry.edit(dir, (r) => r.add('dev-1', key(1)));
    assert.deepEqual(noop.changes, []);
    assert.equal(readFileSync(join(dir, REGISTRY_FILE), 'utf8'), before);
  });

  test('save() refuses to overwrite a newer file (WITNESS_ERR_REGISTRY_CONFLICT) instead of losing its change', async (t) => {
    const dir = await dataDir(t);
    const a = DeviceRegistry.load(dir);
    const b = DeviceRegistry.load(dir);
    a.add('dev-a', key(1));
    a.save();
    b.add('dev-b', key(2));
    throwsCode(() => b.save(), 'WITNESS_ERR_REGISTRY_CONFLICT', /changed on disk since it was loaded \(revision 0 then, 1 now\)/);
    assert.deepEqual(DeviceRegistry.load(dir).list().map((d) => d.id), ['dev-a']);
  });

  test('a stale lock (its process is gone) is removed; a failed edit releases the lock', async (t) => {
    const dir = await dataDir(t);
    const dead = spawnSync(process.execPath, ['-e', 'process.stdout.write(String(process.pid))'], { encoding: 'utf8' });
    writeFileSync(join(dir, `${REGISTRY_FILE}.lock`), `${dead.stdout}\n`);
    DeviceRegistry.edit(dir, (r) => r.add('dev-1', key(1)));
    assert.equal(existsSync(join(dir, `${REGISTRY_FILE}.lock`)), false);
    throwsCode(() => DeviceRegistry.edit(dir, (r) => r.revoke('nope')), 'WITNESS_ERR_DEVICE_UNKNOWN');
    assert.equal(existsSync(join(dir, `${REGISTRY_FILE}.lock`)), false);
  });

  test('not a data directory: WITNESS_ERR_LEDGER_NOT_FOUND naming it and `witness init`', (t) => {
    const dir = join(tempDir(t), 'empty');
    mkdirSync(dir);
    throwsCode(() => DeviceRegistry.load(dir), 'WITNESS_ERR_LEDGER_NOT_FOUND', /not a Witness data directory.*witness init/);
    throwsCode(() => DeviceRegistry.edit(dir, () => 0), 'WITNESS_ERR_LEDGER_NOT_FOUND');
  });
});

describe('DeviceRegistry: a malformed file is refused with the file, the field and what is wrong', () => {
  const good = (): RegistryDocument => ({
    format: REGISTRY_FORMAT,
    revision: 1,
    devices: { 'dev-1': { keys: [{ publicKey: formatPublicKey(key(1)), keyHash: hashOf('dev-1', 1), addedAt: '2025-01-31T12:00:00.000Z' }] } },
  });
  const cases: [string, (d: RegistryDocument) => unknown, RegExp][] = [
    ['wrong format', (d) => ({ ...d, format: 'witness-devices/v9' }), /format: expected "witness-devices\/v1", got "witness-devices\/v9"/],
    ['revision negative', (d) => ({ ...d, revision: -1 }), /revision: expected a non-negative integer/],
    ['revision missing', (d) => ({ format: d.format, devices: d.devices }), /revision/],
    ['unknown top-level field', (d) => ({ ...d, extra: 1 }), /unknown field "extra"/],
    ['devices an array', (d) => ({ ...d, devices: [] }), /devices: expected an object/],
    ['bad device id', (d) => ({ ...d, devices: { 'bad id': d.devices['dev-1'] } }), /devices\["bad id"\]: not a device id/],
    ['keys not an array', (d) => ({ ...d, devices: { 'dev-1': { keys: {} } } }), /devices\["dev-1"\]\.keys: expected an array/],
    ['unknown key field', (d) => ({ ...d, devices: { 'dev-1': { keys: [{ ...d.devices['dev-1']!.keys[0], note: 'x' }] } } }), /keys\[0\]: unknown field "note"/],
    ['public key not base64url', (d) => ({ ...d, devices: { 'dev-1': { keys: [{ ...d.devices['dev-1']!.keys[0], publicKey: 'abc' }] } } }), /keys\[0\]\.publicKey: expected 43 base64url/],
    ['weak public key', (d) => ({ ...d, devices: { 'dev-1': { keys: [{ ...d.devices['dev-1']!.keys[0], publicKey: 'A'.repeat(43) }] } } }), /keys\[0\]\.publicKey: .*small order/],
    ['key hash not the key', (d) => ({ ...d, devices: { 'dev-1': { keys: [{ ...d.devices['dev-1']!.keys[0], keyHash: '00000000' }] } } }), /keys\[0\]\.keyHash: "00000000" is not the key hash/],
    ['addedAt not ISO', (d) => ({ ...d, devices: { 'dev-1': { keys: [{ ...d.devices['dev-1']!.keys[0], addedAt: 'yesterday' }] } } }), /keys\[0\]\.addedAt: expected an ISO 8601/],
    ['revokedAt not ISO', (d) => ({ ...d, devices: { 'dev-1': { keys: [{ ...d.devices['dev-1']!.keys[0], revokedAt: 5 }] } } }), /keys\[0\]\.revokedAt/],
    ['same key twice', (d) => ({ ...d, devices: { 'dev-1': { keys: [d.devices['dev-1']!.keys[0], d.devices['dev-1']!.keys[0]] } } }), /listed twice/],
    [
      'same key for two devices',
      (d) => ({ ...d, devices: { ...d.devices, 'dev-2': { keys: [{ ...d.devices['dev-1']!.keys[0]!, keyHash: hashOf('dev-2', 1) }] } } }),
      /also registered for device dev-1/,
    ],
  ];
  for (const [name, mutate, message] of cases) {
    test(name, async (t) => {
      const dir = await dataDir(t);
      writeFileSync(join(dir, REGISTRY_FILE), JSON.stringify(good(), null, 2));
      DeviceRegistry.load(dir); // the unmutated document is fine
      writeFileSync(join(dir, REGISTRY_FILE), JSON.stringify(mutate(good()), null, 2));
      const e = throwsCode(() => DeviceRegistry.load(dir), 'WITNESS_ERR_REGISTRY_MALFORMED', message);
      assert.ok(e.message.startsWith(join(dir, REGISTRY_FILE) + ': '), e.message);
      assert.equal(e.details.file, join(dir, REGISTRY_FILE));
    });
  }

  test('not JSON: the line and column of the syntax error', async (t) => {
    const dir = await dataDir(t);
    writeFileSync(join(dir, REGISTRY_FILE), '{\n  "format": "witness-devices/v1",\n  "revision": 1,,\n}');
    throwsCode(() => DeviceRegistry.load(dir), 'WITNESS_ERR_REGISTRY_MALFORMED', /devices\.json: not valid JSON at line 3, column 17/);
  });
});

describe('diffRegistries: what the running broker records', () => {
  const doc = (devices: RegistryDocument['devices'], revision = 1): string => JSON.stringify({ format: REGISTRY_FORMAT, revision, devices });
  const k = (id: string, n: number, revokedAt?: string) => ({
    publicKey: formatPublicKey(key(n)),
    keyHash: hashOf(id, n),
    addedAt: '2025-01-01T00:00:00.000Z',
    ...(revokedAt ? { revokedAt } : {}),
  });
  const R = '2025-02-01T00:00:00.000Z';

  test('device added with two keys (one already revoked), key revoked, key unrevoked, key removed, device removed', () => {
    const before = DeviceRegistry.parse('/d', doc({ a: { keys: [k('a', 1), k('a', 2, R)] }, b: { keys: [k('b', 3), k('b', 4)] }, c: { keys: [k('c', 5)] } }));
    const after = DeviceRegistry.parse('/d', doc({ a: { keys: [k('a', 1, R), k('a', 2)] }, b: { keys: [k('b', 3)] }, d: { keys: [k('d', 6), k('d', 7, R)] } }, 2));
    const changes = diffRegistries(before, after);
    assert.deepEqual(
      changes.map((c) => [c.kind, c.deviceId, 'keyHash' in c ? c.keyHash : c.keyHashes.join(',')]),
      [
        ['key-revoked', 'a', hashOf('a', 1)],
        ['key-unrevoked', 'a', hashOf('a', 2)],
        ['key-removed', 'b', hashOf('b', 4)],
        ['device-removed', 'c', hashOf('c', 5)],
        ['device-added', 'd', hashOf('d', 6)],
        ['key-added', 'd', hashOf('d', 7)],
        ['key-revoked', 'd', hashOf('d', 7)],
      ],
    );
    assert.deepEqual(diffRegistries(after, after), []);
    for (const c of changes) assert.match(describeChange(c), new RegExp(c.deviceId));
  });
});
