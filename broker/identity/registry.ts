/**
 * The device registry: which public keys may speak for which device. The file format is specified here.
 *
 * One JSON file in the data directory, `DATA/devices.json`:
 *
 *   { "format": "witness-devices/v1",
 *     "revision": 3,                       // +1 on every change that changes something
 *     "devices": {
 *       "sensor-1": { "keys": [
 *         { "publicKey": "<base64url, 43 chars>", "keyHash": "<8 hex>",
 *           "addedAt": "<ISO 8601>", "revokedAt": "<ISO 8601>" }   // revokedAt only once revoked
 *       ] } } }
 *
 * `keyHash` is the C2SP key hash of the key under the device's name (shared/keys/key-id.ts), so
 * `deviceId+keyHash` is exactly the kid a device puts in its envelopes and connect tokens. A
 * missing file is an empty registry (revision 0).
 *
 * Rules:
 * - Adding a key a device already has (active) changes nothing and says so.
 * - Adding a key to a device whose keys are all revoked adds a new active key: key rotation.
 * - A revoked key can never be added again (WITNESS_ERR_DEVICE_KEY_REVOKED): a revocation is how
 *   an operator reacts to a stolen key, and re-activating it by a second `add` would undo that
 *   silently.
 * - One public key belongs to one device (WITNESS_ERR_DEVICE_KEY_IN_USE): otherwise the holder
 *   of that key could act as either device, and attribution would be lost.
 *
 * Writes are atomic (temporary file, fsync, rename, fsync of the directory), so a reader — the
 * running broker's watcher (registry-watcher.ts) — sees the old file or the new one, never half.
 * Concurrent writers (two `witness device` commands) are serialised by a lock file
 * `devices.json.lock` holding the writer's pid; `save()` refuses to overwrite a file that changed
 * since it was loaded (WITNESS_ERR_REGISTRY_CONFLICT) instead of losing the other change.
 *
 * Synchronous on purpose: the CLI runs once, and the broker reloads a small file rarely.
 */
import { closeSync, constants, existsSync, openSync, readFileSync, statSync, unlinkSync, writeSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { writeFileAtomic } from '../../shared/atomic-file.js';
import { WitnessError } from '../../shared/errors.js';
import { parsePublicKey, formatPublicKey } from '../../shared/keys/key-file.js';
import { keyHash as computeKeyHash, parseVerifierKey } from '../../shared/keys/key-id.js';
import { checkDeviceId, isDeviceId } from '../../shared/token/device-id.js';
import { MANIFEST } from '../data-dir.js';

export const REGISTRY_FILE = 'devices.json';
export const REGISTRY_FORMAT = 'witness-devices/v1';
/** Lock files older than this whose owner cannot be checked are treated as stale, ms. */
const STALE_LOCK_MS = 10_000;
/** How long a writer waits for another one to finish, ms. */
const LOCK_WAIT_MS = 5_000;

/** One key of a device as stored in the file. */
export interface KeyRecord {
  /** Raw 32-byte Ed25519 public key, base64url without padding (43 characters). */
  publicKey: string;
  /** C2SP key hash of the key under the device id, 8 lowercase hex digits. */
  keyHash: string;
  /** When it was added, ISO 8601 (UTC). */
  addedAt: string;
  /** When it was revoked, ISO 8601 (UTC); absent while the key is active. */
  revokedAt?: string;
}

export interface KeyEntry extends KeyRecord {
  status: 'active' | 'revoked';
}

export interface DeviceEntry {
  id: string;
  keys: KeyEntry[];
}

/** The file, as written. */
export interface RegistryDocument {
  format: typeof REGISTRY_FORMAT;
  revision: number;
  devices: Record<string, { keys: KeyRecord[] }>;
}

/**
 * One change of the registry, as the broker records it (a `device` control-plane event).
 * `key-unrevoked` and `key-removed` can only come from a hand edit of the file (no command makes
 * them); they are reported all the same, because they change who may connect.
 */
export type Change =
  | { kind: 'device-added' | 'key-added'; deviceId: string; keyHash: string; publicKey: string; at: string }
  | { kind: 'key-revoked'; deviceId: string; keyHash: string; at: string }
  | { kind: 'key-unrevoked' | 'key-removed'; deviceId: string; keyHash: string }
  | { kind: 'device-removed'; deviceId: string; keyHashes: string[] };

/** What `add` / `revoke` did: the changes (none for a no-op) and a sentence for people. */
export interface EditResult {
  changes: Change[];
  message: string;
  /** The registry's revision after the edit (unchanged for a no-op). */
  revision: number;
}

export type LookupResult = { status: 'active' | 'revoked' | 'unknown'; publicKey?: Uint8Array };

interface StoredKey extends KeyRecord {
  raw: Uint8Array;
}

/** Replaces a registry's contents with another's, in place (used by the watcher only). */
export const ADOPT: unique symbol = Symbol('DeviceRegistry.adopt');

export class DeviceRegistry {
  /** Absolute path of devices.json. */
  readonly path: string;
  /** Absolute path of the data directory. */
  readonly dataDir: string;
  #revision = 0;
  /** The revision of the file as last read or written: what `save` expects to find on disk. */
  #diskRevision = 0;
  #devices = new Map<string, StoredKey[]>();
  /** `deviceId+keyHash` → key. */
  #byKid = new Map<string, StoredKey>();
  /** base64url public key → device id. */
  #owner = new Map<string, string>();

  private constructor(dataDir: string) {
    this.dataDir = resolve(dataDir);
    this.path = join(this.dataDir, REGISTRY_FILE);
  }

  /**
   * Reads `DATA/devices.json` (an empty registry if the file does not exist). Throws
   * WITNESS_ERR_LEDGER_NOT_FOUND if DATA is not a Witness data directory,
   * WITNESS_ERR_REGISTRY_MALFORMED (naming the file and the field) for a bad file.
   */
  static load(dataDir: string): DeviceRegistry {
    const r = new DeviceRegistry(dataDir);
    checkDataDir(r.dataDir);
    const text = readRegistryText(r.path);
    if (text !== undefined) r.#fill(parseDocument(text, r.path));
    return r;
  }

  /** Parses the text of `dataDir`'s devices.json (named in errors); checks what `load` checks, reads nothing. */
  static parse(dataDir: string, text: string): DeviceRegistry {
    const r = new DeviceRegistry(dataDir);
    r.#fill(parseDocument(text, r.path));
    return r;
  }

  /** An empty registry for `dataDir` (revision 0), as if devices.json did not exist. */
  static empty(dataDir: string): DeviceRegistry {
    return new DeviceRegistry(dataDir);
  }

  /**
   * Load, change, save, under the registry lock: the read-modify-write of a `witness device`
   * command, safe against a second command running at the same time. Saves only if `fn` changed
   * something. Returns what `fn` returns.
   */
  static edit<T>(dataDir: string, fn: (registry: DeviceRegistry) => T): T {
    const dir = resolve(dataDir);
    checkDataDir(dir);
    const release = acquireLock(join(dir, REGISTRY_FILE));
    try {
      const r = DeviceRegistry.load(dir);
      const before = r.#revision;
      const result = fn(r);
      if (r.#revision !== before) r.#write();
      return result;
    } finally {
      release();
    }
  }

  get revision(): number {
    return this.#revision;
  }

  /**
   * Registers `publicKey` (32 bytes, or its base64url text, or a verifier key `id+hash+base64`
   * named for this device) for device `id`.
   * Creates the device if needed. See the rules at the top of this file.
   */
  add(id: string, publicKey: Uint8Array | string): EditResult {
    checkDeviceId(id);
    if (typeof publicKey === 'string' && publicKey.includes('+')) {
      // A verifier key names its key; one named for another device is almost surely the wrong key.
      const named = parseVerifierKey(publicKey.trim()).name;
      if (named !== id) {
        throw new WitnessError('WITNESS_ERR_KEY_INVALID', `verifier key ${JSON.stringify(publicKey.trim().slice(0, 80))} is the key of ${JSON.stringify(named)}, not of device ${id}`, {
          details: { deviceId: id, named },
        });
      }
    }
    const raw = typeof publicKey === 'string' ? parsePublicKey(publicKey) : publicKey;
    const text = formatPublicKey(raw); // also checks the key (length, canonical, not small-order)
    const hash = hex(computeKeyHash(id, raw));
    const owner = this.#owner.get(text);
    if (owner !== undefined && owner !== id) {
      throw new WitnessError('WITNESS_ERR_DEVICE_KEY_IN_USE', `public key ${text} is already registered for device ${owner}; it cannot also prove device ${id}`, {
        details: { deviceId: id, owner, publicKey: text },
      });
    }
    const keys = this.#devices.get(id);
    const existing = keys?.find((k) => k.keyHash === hash);
    if (existing?.revokedAt !== undefined) {
      throw new WitnessError('WITNESS_ERR_DEVICE_KEY_REVOKED', `key ${hash} of device ${id} was revoked at ${existing.revokedAt}; a revoked key cannot be added again`, {
        details: { deviceId: id, keyHash: hash, revokedAt: existing.revokedAt },
      });
    }
    if (existing) {
      return { changes: [], revision: this.#revision, message: `device ${id} already has key ${hash} (active, added ${existing.addedAt}): nothing changed` };
    }
    const key: StoredKey = { publicKey: text, keyHash: hash, addedAt: new Date().toISOString(), raw };
    const isNew = keys === undefined;
    const activeBefore = keys?.filter((k) => k.revokedAt === undefined).length ?? 0;
    this.#insert(id, key);
    this.#revision++;
    const change: Change = { kind: isNew ? 'device-added' : 'key-added', deviceId: id, keyHash: hash, publicKey: text, at: key.addedAt };
    const message = isNew
      ? `added device ${id} with key ${hash}`
      : activeBefore === 0
        ? `added key ${hash} to device ${id} (key rotation: its earlier keys stay revoked)`
        : `added key ${hash} to device ${id} (it now has ${activeBefore + 1} active keys)`;
    return { changes: [change], revision: this.#revision, message };
  }

  /**
   * Revokes key `keyHash` (8 hex digits) of device `id`, or every active key of the device when
   * `keyHash` is omitted. Revoking a revoked key changes nothing. Throws
   * WITNESS_ERR_DEVICE_UNKNOWN / WITNESS_ERR_DEVICE_KEY_UNKNOWN.
   */
  revoke(id: string, keyHash?: string): EditResult {
    checkDeviceId(id);
    const keys = this.#devices.get(id);
    if (!keys) {
      throw new WitnessError('WITNESS_ERR_DEVICE_UNKNOWN', `device ${id} is not registered in ${this.path}`, { details: { deviceId: id, file: this.path } });
    }
    let targets = keys;
    if (keyHash !== undefined) {
      const h = typeof keyHash === 'string' ? keyHash.toLowerCase() : '';
      if (!/^[0-9a-f]{8}$/.test(h)) {
        throw new WitnessError('WITNESS_ERR_INVALID_ARGUMENT', `key hash ${JSON.stringify(String(keyHash).slice(0, 40))}: expected 8 hex digits (see \`witness device list\`)`);
      }
      targets = keys.filter((k) => k.keyHash === h);
      if (targets.length === 0) {
        throw new WitnessError('WITNESS_ERR_DEVICE_KEY_UNKNOWN', `device ${id} has no key ${h}; its keys: ${keys.map((k) => k.keyHash).join(', ') || 'none'}`, {
          details: { deviceId: id, keyHash: h, keys: keys.map((k) => k.keyHash) },
        });
      }
    }
    const now = new Date().toISOString();
    const changes: Change[] = [];
    for (const k of targets) {
      if (k.revokedAt !== undefined) continue;
      k.revokedAt = now;
      changes.push({ kind: 'key-revoked', deviceId: id, keyHash: k.keyHash, at: now });
    }
    if (changes.length === 0) {
      const which = keyHash === undefined ? `every key of device ${id} was` : `key ${targets[0]!.keyHash} of device ${id} was`;
      return { changes, revision: this.#revision, message: `${which} already revoked: nothing changed` };
    }
    this.#revision++;
    const hashes = changes.map((c) => (c as { keyHash: string }).keyHash);
    return { changes, revision: this.#revision, message: `revoked key${hashes.length > 1 ? 's' : ''} ${hashes.join(', ')} of device ${id}` };
  }

  /** Every device and its keys, by device id. */
  list(): DeviceEntry[] {
    return [...this.#devices.keys()].sort(compareIds).map((id) => ({
      id,
      keys: this.#devices.get(id)!.map((k) => ({ ...record(k), status: k.revokedAt === undefined ? 'active' : 'revoked' })),
    }));
  }

  /** The verdict on the key named by a kid (`deviceId+keyHash`). `keyHash`: 4 bytes or 8 hex digits. */
  lookup(deviceId: string, keyHash: Uint8Array | string): LookupResult {
    const h = typeof keyHash === 'string' ? keyHash : hex(keyHash);
    const k = this.#byKid.get(`${deviceId}+${h}`);
    if (!k) return { status: 'unknown' };
    return k.revokedAt === undefined ? { status: 'active', publicKey: k.raw } : { status: 'revoked', publicKey: k.raw };
  }

  /** The document as written to disk. */
  toJSON(): RegistryDocument {
    const devices: Record<string, { keys: KeyRecord[] }> = {};
    for (const id of [...this.#devices.keys()].sort(compareIds)) devices[id] = { keys: this.#devices.get(id)!.map(record) };
    return { format: REGISTRY_FORMAT, revision: this.#revision, devices };
  }

  /**
   * Writes devices.json atomically, under the registry lock. Throws
   * WITNESS_ERR_REGISTRY_CONFLICT if the file on disk is no longer the revision this registry
   * was loaded from (another writer got there first), WITNESS_ERR_REGISTRY_LOCKED if another
   * writer holds the lock for too long.
   */
  save(): void {
    checkDataDir(this.dataDir);
    const release = acquireLock(this.path);
    try {
      const text = readRegistryText(this.path);
      let onDisk = 0;
      if (text !== undefined) {
        try {
          onDisk = parseDocument(text, this.path).revision;
        } catch {
          onDisk = -1;
        }
      }
      if (onDisk !== this.#diskRevision) {
        throw new WitnessError(
          'WITNESS_ERR_REGISTRY_CONFLICT',
          `${this.path}: changed on disk since it was loaded (revision ${this.#diskRevision} then, ${onDisk < 0 ? 'unreadable' : onDisk} now); not overwritten`,
          { details: { file: this.path, loaded: this.#diskRevision, onDisk } },
        );
      }
      this.#write();
    } finally {
      release();
    }
  }

  /** Takes over `other`'s contents (the watcher keeps one registry object current). */
  [ADOPT](other: DeviceRegistry): void {
    this.#revision = other.#revision;
    this.#diskRevision = other.#diskRevision;
    this.#devices = other.#devices;
    this.#byKid = other.#byKid;
    this.#owner = other.#owner;
  }

  #write(): void {
    writeFileAtomic(this.path, JSON.stringify(this.toJSON(), null, 2) + '\n');
    this.#diskRevision = this.#revision;
  }

  #insert(id: string, key: StoredKey): void {
    let keys = this.#devices.get(id);
    if (!keys) this.#devices.set(id, (keys = []));
    keys.push(key);
    this.#byKid.set(`${id}+${key.keyHash}`, key);
    this.#owner.set(key.publicKey, id);
  }

  #fill(doc: { revision: number; devices: Map<string, StoredKey[]> }): void {
    this.#revision = doc.revision;
    this.#diskRevision = doc.revision;
    for (const [id, keys] of doc.devices) {
      this.#devices.set(id, []);
      for (const k of keys) this.#insert(id, k);
    }
  }
}

/**
 * The changes that turn `before` into `after`, in a stable order (device ids sorted, keys in file
 * order). For a device that appears with several keys: `device-added` for the first, `key-added`
 * for the rest, then `key-revoked` for any that arrive already revoked.
 */
export function diffRegistries(before: DeviceRegistry, after: DeviceRegistry): Change[] {
  const a = new Map(before.list().map((d) => [d.id, d.keys]));
  const b = new Map(after.list().map((d) => [d.id, d.keys]));
  const ids = [...new Set([...a.keys(), ...b.keys()])].sort(compareIds);
  const out: Change[] = [];
  for (const id of ids) {
    const old = a.get(id);
    const now = b.get(id);
    if (now === undefined) {
      out.push({ kind: 'device-removed', deviceId: id, keyHashes: (old ?? []).map((k) => k.keyHash) });
      continue;
    }
    const oldByHash = new Map((old ?? []).map((k) => [k.keyHash, k]));
    let first = old === undefined;
    for (const k of now) {
      const prev = oldByHash.get(k.keyHash);
      if (!prev) {
        out.push({ kind: first ? 'device-added' : 'key-added', deviceId: id, keyHash: k.keyHash, publicKey: k.publicKey, at: k.addedAt });
        first = false;
        if (k.revokedAt !== undefined) out.push({ kind: 'key-revoked', deviceId: id, keyHash: k.keyHash, at: k.revokedAt });
        continue;
      }
      if (prev.revokedAt === undefined && k.revokedAt !== undefined) out.push({ kind: 'key-revoked', deviceId: id, keyHash: k.keyHash, at: k.revokedAt });
      if (prev.revokedAt !== undefined && k.revokedAt === undefined) out.push({ kind: 'key-unrevoked', deviceId: id, keyHash: k.keyHash });
    }
    const nowHashes = new Set(now.map((k) => k.keyHash));
    for (const k of old ?? []) if (!nowHashes.has(k.keyHash)) out.push({ kind: 'key-removed', deviceId: id, keyHash: k.keyHash });
  }
  return out;
}

/** One line for people (and for the `device` record's text). */
export function describeChange(c: Change): string {
  switch (c.kind) {
    case 'device-added':
      return `device ${c.deviceId} added with key ${c.keyHash}`;
    case 'key-added':
      return `key ${c.keyHash} added to device ${c.deviceId}`;
    case 'key-revoked':
      return `key ${c.keyHash} of device ${c.deviceId} revoked`;
    case 'key-unrevoked':
      return `key ${c.keyHash} of device ${c.deviceId} active again (its revocation was removed from the file)`;
    case 'key-removed':
      return `key ${c.keyHash} removed from device ${c.deviceId}`;
    case 'device-removed':
      return `device ${c.deviceId} removed (keys ${c.keyHashes.join(', ') || 'none'})`;
  }
}

// ── reading ──────────────────────────────────────────────────────────────────────────────────

function checkDataDir(dir: string): void {
  if (!existsSync(join(dir, MANIFEST))) {
    throw new WitnessError(
      'WITNESS_ERR_LEDGER_NOT_FOUND',
      `${dir}: not a Witness data directory (no ${MANIFEST}); create one with \`witness init --data ${dir}\` or start the broker once with --data ${dir}`,
      { details: { dir } },
    );
  }
}

/** The file's text, or undefined if it does not exist. */
function readRegistryText(path: string): string | undefined {
  try {
    return readFileSync(path, 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw new WitnessError('WITNESS_ERR_IO', `cannot read ${path}: ${(e as Error).message}`, { cause: e, details: { file: path } });
  }
}

function bad(file: string, where: string, what: string, cause?: unknown): WitnessError {
  return new WitnessError('WITNESS_ERR_REGISTRY_MALFORMED', `${file}: ${where ? `${where}: ` : ''}${what}`, {
    ...(cause === undefined ? {} : { cause }),
    details: { file, ...(where ? { field: where } : {}) },
  });
}

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function onlyFields(file: string, where: string, o: Record<string, unknown>, allowed: readonly string[]): void {
  for (const k of Object.keys(o)) {
    if (!allowed.includes(k)) throw bad(file, where, `unknown field ${JSON.stringify(k)} (allowed: ${allowed.join(', ')})`);
  }
}

function isoTime(file: string, where: string, v: unknown): string {
  if (typeof v !== 'string' || Number.isNaN(Date.parse(v)) || new Date(v).toISOString() !== v) {
    throw bad(file, where, `expected an ISO 8601 UTC time like "2025-01-31T12:00:00.000Z", got ${JSON.stringify(v)}`);
  }
  return v;
}

/** "line L, column C" of a character offset, for JSON syntax errors. */
function position(text: string, offset: number): string {
  const before = text.slice(0, offset);
  const line = before.split('\n').length;
  return `line ${line}, column ${offset - before.lastIndexOf('\n')}`;
}

function parseDocument(text: string, file: string): { revision: number; devices: Map<string, StoredKey[]> } {
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (e) {
    const m = /position (\d+)/.exec((e as Error).message);
    const at = m ? ` at ${position(text, Number(m[1]))}` : '';
    throw bad(file, '', `not valid JSON${at} (${(e as Error).message})`, e);
  }
  if (!isPlainObject(raw)) throw bad(file, '', `expected a JSON object {"format": "${REGISTRY_FORMAT}", "revision", "devices"}`);
  onlyFields(file, '', raw, ['format', 'revision', 'devices']);
  if (raw.format !== REGISTRY_FORMAT) throw bad(file, 'format', `expected "${REGISTRY_FORMAT}", got ${JSON.stringify(raw.format ?? null)}`);
  const revision = raw.revision;
  if (typeof revision !== 'number' || !Number.isSafeInteger(revision) || revision < 0) throw bad(file, 'revision', `expected a non-negative integer, got ${JSON.stringify(revision ?? null)}`);
  if (!isPlainObject(raw.devices)) throw bad(file, 'devices', 'expected an object {deviceId: {keys: [...]}}');
  const devices = new Map<string, StoredKey[]>();
  const owner = new Map<string, string>();
  for (const [id, dev] of Object.entries(raw.devices)) {
    const where = `devices[${JSON.stringify(id)}]`;
    if (!isDeviceId(id)) throw bad(file, where, 'not a device id (1 to 64 characters from A-Z a-z 0-9 . _ : -)');
    if (!isPlainObject(dev)) throw bad(file, where, 'expected an object {keys: [...]}');
    onlyFields(file, where, dev, ['keys']);
    if (!Array.isArray(dev.keys)) throw bad(file, `${where}.keys`, 'expected an array');
    const keys: StoredKey[] = [];
    dev.keys.forEach((k: unknown, i: number) => {
      const kw = `${where}.keys[${i}]`;
      if (!isPlainObject(k)) throw bad(file, kw, 'expected an object {publicKey, keyHash, addedAt, revokedAt?}');
      onlyFields(file, kw, k, ['publicKey', 'keyHash', 'addedAt', 'revokedAt']);
      if (typeof k.publicKey !== 'string' || !/^[A-Za-z0-9_-]{43}$/.test(k.publicKey)) throw bad(file, `${kw}.publicKey`, 'expected 43 base64url characters (a raw Ed25519 public key)');
      let pk: Uint8Array;
      try {
        pk = parsePublicKey(k.publicKey);
      } catch (e) {
        throw bad(file, `${kw}.publicKey`, (e as Error).message, e);
      }
      const expected = hex(computeKeyHash(id, pk));
      if (k.keyHash !== expected) throw bad(file, `${kw}.keyHash`, `${JSON.stringify(k.keyHash ?? null)} is not the key hash of this key under ${id} (expected "${expected}")`);
      if (keys.some((o) => o.keyHash === expected)) throw bad(file, kw, `key ${expected} is listed twice for device ${id}`);
      const other = owner.get(k.publicKey);
      if (other !== undefined) throw bad(file, `${kw}.publicKey`, `the same key is also registered for device ${other}; one key proves one device`);
      owner.set(k.publicKey, id);
      const addedAt = isoTime(file, `${kw}.addedAt`, k.addedAt);
      const stored: StoredKey = { publicKey: k.publicKey, keyHash: expected, addedAt, raw: pk };
      if (k.revokedAt !== undefined) stored.revokedAt = isoTime(file, `${kw}.revokedAt`, k.revokedAt);
      keys.push(stored);
    });
    devices.set(id, keys);
  }
  return { revision, devices };
}

// ── writing ──────────────────────────────────────────────────────────────────────────────────

function record(k: StoredKey): KeyRecord {
  return { publicKey: k.publicKey, keyHash: k.keyHash, addedAt: k.addedAt, ...(k.revokedAt !== undefined ? { revokedAt: k.revokedAt } : {}) };
}

function hex(b: Uint8Array): string {
  return Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString('hex');
}

function compareIds(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

function sleepSync(ms: number): void {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
}

function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/**
 * Takes `<file>.lock` (O_CREAT|O_EXCL, holding our pid); returns its release. Waits up to
 * LOCK_WAIT_MS for another writer; removes a lock whose process is gone (or, if its pid cannot
 * be read, that is older than STALE_LOCK_MS).
 */
function acquireLock(file: string): () => void {
  const lock = `${file}.lock`;
  const deadline = Date.now() + LOCK_WAIT_MS;
  for (;;) {
    try {
      const fd = openSync(lock, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL, 0o644);
      try {
        writeSync(fd, `${process.pid}\n`);
      } finally {
        closeSync(fd);
      }
      return () => {
        try {
          unlinkSync(lock);
        } catch {
          // removed as stale by someone else: nothing to release
        }
      };
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') {
        throw new WitnessError('WITNESS_ERR_IO', `cannot create ${lock}: ${(e as Error).message}`, { cause: e, details: { file: lock } });
      }
    }
    let stale = false;
    try {
      const pid = Number(readFileSync(lock, 'utf8').trim());
      stale = Number.isSafeInteger(pid) && pid > 0 ? !pidAlive(pid) : Date.now() - statSync(lock).mtimeMs > STALE_LOCK_MS;
    } catch {
      continue; // released between our open and our read: try again
    }
    if (stale) {
      try {
        unlinkSync(lock);
      } catch {
        // someone else removed it first
      }
      continue;
    }
    if (Date.now() >= deadline) {
      throw new WitnessError('WITNESS_ERR_REGISTRY_LOCKED', `${file}: another process is changing it (lock file ${lock})`, { details: { file, lock } });
    }
    sleepSync(20);
  }
}
