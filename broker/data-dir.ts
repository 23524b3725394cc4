/**
 * The broker's data directory (docs/FORMATS.md §Data directory):
 *
 *   DATA/
 *     witness.json        manifest: format, node id, origin, the broker's verifier key
 *     keys/broker.key     Ed25519 private key (PKCS#8 PEM, mode 0600) — signs checkpoints
 *     keys/broker.pub     its public key (base64url)
 *     keys/seal.state     current forward-secure sealing key and epoch (mode 0600)
 *     ledger/             the ledger (shared/ledger/layout.ts)
 *
 * The initial sealing key is not stored: `witness init` prints it once, for offline keeping.
 */
import { existsSync, mkdirSync, readFileSync, writeFileSync, renameSync, openSync, fsyncSync, closeSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { randomBytes } from 'node:crypto';
import { WitnessError } from '../shared/errors.js';
import { writeKeyPair, readSeed, readPublicKey } from '../shared/keys/key-file.js';
import { checkKeyName, verifierKey } from '../shared/keys/key-id.js';
import { generateSealKey, SealState } from '../shared/checkpoint/seal.js';
import { ed25519NoteSigner, type NoteSigner } from '../shared/checkpoint/note.js';
import { Ledger } from '../shared/ledger/writer.js';

export const MANIFEST = 'witness.json';
export const MANIFEST_FORMAT = 'witness-data/v1';
export const DEFAULT_DATA_DIR = 'witness-data';

export interface Manifest {
  format: typeof MANIFEST_FORMAT;
  nodeId: string;
  /** Checkpoint origin and the broker key's note name. */
  origin: string;
  /** C2SP verifier key of the broker key. */
  verifierKey: string;
  createdAt: string;
}

export interface DataDirPaths {
  root: string;
  manifest: string;
  keys: string;
  brokerKey: string;
  brokerPub: string;
  sealState: string;
  ledger: string;
}

export function dataDirPaths(dir: string): DataDirPaths {
  const root = resolve(dir);
  return {
    root,
    manifest: join(root, MANIFEST),
    keys: join(root, 'keys'),
    brokerKey: join(root, 'keys', 'broker.key'),
    brokerPub: join(root, 'keys', 'broker.pub'),
    sealState: join(root, 'keys', 'seal.state'),
    ledger: join(root, 'ledger'),
  };
}

/** Node ids name the broker in records and in the ledger origin: 1–64 of [A-Za-z0-9._-]. */
export function checkNodeId(id: string): void {
  if (!/^[A-Za-z0-9._-]{1,64}$/.test(id)) {
    throw new WitnessError('WITNESS_ERR_USAGE', `node id ${JSON.stringify(id)}: use 1 to 64 characters from A-Z a-z 0-9 . _ -`);
  }
}

export function originFor(nodeId: string): string {
  const origin = `mqtt-witness.local/${nodeId}`;
  checkKeyName(origin);
  return origin;
}

export interface InitResult {
  paths: DataDirPaths;
  manifest: Manifest;
  /** The initial sealing key, hex. Shown once; not stored anywhere. */
  sealKeyHex: string;
}

/**
 * Creates a data directory: broker key pair, seal state, manifest, and the ledger with its first
 * checkpoint (the empty tree, epoch 0). Sealing that checkpoint evolves the seal key, so the
 * initial sealing key k_0 is erased from disk before this returns: it exists only in what
 * `witness init` prints. Refuses an initialised directory.
 */
export async function initDataDir(dir: string, nodeId?: string): Promise<InitResult> {
  const paths = dataDirPaths(dir);
  if (existsSync(paths.manifest)) {
    throw new WitnessError('WITNESS_ERR_USAGE', `${paths.root} is already initialised (${MANIFEST} exists); use another --data directory`, { details: { dir: paths.root } });
  }
  const id = nodeId ?? `node-${randomBytes(4).toString('hex')}`;
  checkNodeId(id);
  mkdirSync(paths.keys, { recursive: true, mode: 0o700 });
  mkdirSync(paths.ledger, { recursive: true });
  const { publicKey } = writeKeyPair(paths.keys, 'broker');
  const sealKey = generateSealKey();
  SealState.create(paths.sealState, sealKey).close();
  const origin = originFor(id);
  const manifest: Manifest = {
    format: MANIFEST_FORMAT,
    nodeId: id,
    origin,
    verifierKey: verifierKey(origin, publicKey),
    createdAt: new Date().toISOString(),
  };
  writeJsonAtomic(paths.manifest, manifest);
  const signing = openSigning(dir);
  const ledger = await Ledger.open(paths.ledger, { origin, signer: signing.signer, seal: signing.seal });
  await ledger.close();
  signing.seal.close();
  const sealKeyHex = Buffer.from(sealKey).toString('hex');
  sealKey.fill(0);
  return { paths, manifest, sealKeyHex };
}

export function readManifest(dir: string): Manifest {
  const paths = dataDirPaths(dir);
  let raw: unknown;
  try {
    raw = JSON.parse(readFileSync(paths.manifest, 'utf8'));
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') {
      throw new WitnessError('WITNESS_ERR_LEDGER_NOT_FOUND', `${paths.root}: not a Witness data directory (no ${MANIFEST}); create one with \`witness init --data ${dir}\``, { cause: e });
    }
    throw new WitnessError('WITNESS_ERR_IO', `${paths.manifest}: ${(e as Error).message}`, { cause: e });
  }
  const m = raw as Partial<Manifest>;
  if (m?.format !== MANIFEST_FORMAT || typeof m.origin !== 'string' || typeof m.nodeId !== 'string' || typeof m.verifierKey !== 'string') {
    throw new WitnessError('WITNESS_ERR_IO', `${paths.manifest}: not a ${MANIFEST_FORMAT} manifest (fields format, nodeId, origin, verifierKey)`);
  }
  return m as Manifest;
}

/** What a writer of the ledger needs: origin, checkpoint signer, seal state. */
export function openSigning(dir: string): { manifest: Manifest; signer: NoteSigner; seal: SealState; publicKey: Uint8Array } {
  const paths = dataDirPaths(dir);
  const manifest = readManifest(dir);
  const seed = readSeed(paths.brokerKey);
  const publicKey = readPublicKey(paths.brokerPub);
  const signer = ed25519NoteSigner(manifest.origin, seed);
  seed.fill(0);
  return { manifest, signer, seal: SealState.open(paths.sealState), publicKey };
}

function writeJsonAtomic(path: string, value: unknown): void {
  const tmp = `${path}.tmp-${process.pid}`;
  writeFileSync(tmp, JSON.stringify(value, null, 2) + '\n', { mode: 0o644 });
  const fd = openSync(tmp, 'r');
  try {
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  renameSync(tmp, path);
}
