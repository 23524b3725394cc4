/**
 * Ed25519 key files.
 *
 *   NAME.key  the private key: PKCS#8 (RFC 5208 / RFC 8410 §7) in PEM, mode 0600. The format
 *             `openssl genpkey -algorithm ed25519` writes, so keys can be made or inspected with
 *             standard tools.
 *   NAME.pub  the public key: 32 raw bytes as base64url without padding (43 characters, RFC 4648
 *             §5) and a newline — short enough to paste into `witness device add --public-key`.
 *
 * A private key file is created with O_CREAT|O_EXCL (it never replaces an existing key) and
 * fsynced, file and directory, before the function returns. Reading refuses a private key file
 * that group or others may access, as ssh does.
 *
 * Synchronous on purpose: these run once, at `init` or at start-up, before any traffic.
 */
import { closeSync, constants, fchmodSync, fstatSync, fsyncSync, mkdirSync, openSync, readFileSync, readSync, unlinkSync, writeSync } from 'node:fs';
import { createPrivateKey } from 'node:crypto';
import { dirname, join } from 'node:path';
import { WitnessError, expectBytes } from '../errors.js';
import { checkPublicKey, generateSeed, publicKeyFromSeed, PUBLIC_KEY_SIZE, SEED_SIZE } from './ed25519.js';
import { parseVerifierKey } from './key-id.js';

/** PKCS#8 DER prefix of an Ed25519 private key (RFC 8410 §7): the 32-byte seed follows. */
const PKCS8_ED25519_PREFIX = Buffer.from('302e020100300506032b657004220420', 'hex');
/** Key files are a few hundred bytes; anything much larger is not one of ours. */
const MAX_KEY_FILE_SIZE = 16 * 1024;
const PRIVATE_MODE = 0o600;
const PUBLIC_MODE = 0o644;

function keyFileError(path: string, what: string, todo: string, extra: { cause?: unknown; details?: Record<string, unknown> } = {}): WitnessError {
  return new WitnessError('WITNESS_ERR_KEY_FILE', `key file ${path}: ${what}; ${todo}`, {
    cause: extra.cause,
    details: { path, ...extra.details },
  });
}

function errnoCode(e: unknown): string | undefined {
  return typeof e === 'object' && e !== null && 'code' in e ? String((e as { code: unknown }).code) : undefined;
}

/** PEM of the PKCS#8 encoding of `seed`. */
function seedToPem(seed: Uint8Array): string {
  const der = Buffer.concat([PKCS8_ED25519_PREFIX, seed]);
  return createPrivateKey({ key: der, format: 'der', type: 'pkcs8' }).export({ format: 'pem', type: 'pkcs8' }).toString();
}

/** Raw 32-byte public key as base64url without padding (43 characters). */
export function formatPublicKey(publicKey: Uint8Array): string {
  checkPublicKey(publicKey);
  return Buffer.from(publicKey.buffer, publicKey.byteOffset, publicKey.byteLength).toString('base64url');
}

/**
 * Parses a public key given as base64url of the 32 raw bytes (what `.pub` files and
 * `formatPublicKey` hold) or as a C2SP verifier key `name+hash+base64` (key-id.ts). Surrounding
 * whitespace is ignored. Throws WITNESS_ERR_KEY_INVALID / _KEY_WEAK.
 */
export function parsePublicKey(text: string): Uint8Array {
  if (typeof text !== 'string') throw new WitnessError('WITNESS_ERR_KEY_INVALID', `public key: expected a string, got ${typeof text}`);
  const s = text.trim();
  // '+' is not in the base64url alphabet, so it tells the two forms apart.
  if (s.includes('+')) return parseVerifierKey(s).publicKey;
  if (!/^[A-Za-z0-9_-]{43}$/.test(s)) {
    throw new WitnessError(
      'WITNESS_ERR_KEY_INVALID',
      `public key ${JSON.stringify(s.slice(0, 60))}: expected 43 base64url characters (32 bytes) or a verifier key "name+hash+base64"`,
    );
  }
  const raw = Buffer.from(s, 'base64url');
  // 43 characters carry 258 bits: the last 2 must be zero for the encoding to be the only one.
  if (raw.length !== PUBLIC_KEY_SIZE || raw.toString('base64url') !== s) {
    throw new WitnessError('WITNESS_ERR_KEY_INVALID', `public key ${JSON.stringify(s)}: not the canonical base64url encoding of 32 bytes`);
  }
  const publicKey = new Uint8Array(raw);
  checkPublicKey(publicKey);
  return publicKey;
}

export interface WrittenKeyPair {
  publicKey: Uint8Array;
  /** `<dir>/<baseName>.key` */
  keyPath: string;
  /** `<dir>/<baseName>.pub` */
  publicKeyPath: string;
}

/** Creates `path` exclusively with `mode`, writes `data`, fsyncs, closes. */
function writeNewFile(path: string, data: string, mode: number): void {
  let fd: number;
  try {
    fd = openSync(path, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL, mode);
  } catch (e) {
    if (errnoCode(e) === 'EEXIST') {
      throw keyFileError(path, 'already exists', 'refusing to overwrite a key: move it away or choose another name', { cause: e });
    }
    throw new WitnessError('WITNESS_ERR_IO', `cannot create ${path}: ${(e as Error).message}`, { cause: e, details: { path } });
  }
  try {
    // The umask may have taken bits away, never added any; set the exact mode regardless.
    fchmodSync(fd, mode);
    const buf = Buffer.from(data, 'utf8');
    let off = 0;
    while (off < buf.length) off += writeSync(fd, buf, off, buf.length - off);
    fsyncSync(fd);
  } catch (e) {
    closeSync(fd);
    unlinkSync(path);
    throw new WitnessError('WITNESS_ERR_IO', `cannot write ${path}: ${(e as Error).message}`, { cause: e, details: { path } });
  }
  closeSync(fd);
}

function fsyncDir(dir: string): void {
  const fd = openSync(dir, 'r');
  try {
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}

/**
 * Generates an Ed25519 key pair (or stores the given seed) as `<dir>/<baseName>.key` (PKCS#8
 * PEM, mode 0600) and `<dir>/<baseName>.pub` (base64url + "\n", mode 0644). Creates `dir`
 * (mode 0700) if needed. Never overwrites: if either file exists, throws WITNESS_ERR_KEY_FILE
 * and leaves what was there untouched.
 */
export function writeKeyPair(dir: string, baseName: string, seed: Uint8Array = generateSeed()): WrittenKeyPair {
  if (typeof dir !== 'string' || dir.length === 0) throw new WitnessError('WITNESS_ERR_INVALID_ARGUMENT', 'writeKeyPair dir: expected a non-empty path');
  if (typeof baseName !== 'string' || !/^[A-Za-z0-9._-]+$/.test(baseName) || baseName.startsWith('.')) {
    throw new WitnessError('WITNESS_ERR_INVALID_ARGUMENT', `writeKeyPair baseName ${JSON.stringify(baseName)}: use letters, digits, '.', '_' and '-' (not starting with '.')`);
  }
  expectBytes(seed, SEED_SIZE, 'Ed25519 seed');
  const publicKey = publicKeyFromSeed(seed);
  const keyPath = join(dir, `${baseName}.key`);
  const publicKeyPath = join(dir, `${baseName}.pub`);
  const created = mkdirSync(dir, { recursive: true, mode: 0o700 });
  if (created !== undefined) fsyncDir(dirname(created));

  writeNewFile(keyPath, seedToPem(seed), PRIVATE_MODE);
  try {
    writeNewFile(publicKeyPath, `${formatPublicKey(publicKey)}\n`, PUBLIC_MODE);
  } catch (e) {
    // The private key was created by this call a moment ago: remove it rather than leave half
    // a pair behind.
    unlinkSync(keyPath);
    throw e;
  }
  fsyncDir(dir);
  return { publicKey, keyPath, publicKeyPath };
}

/**
 * Reads the 32-byte seed from a private key file written by `writeKeyPair` (or any unencrypted
 * PKCS#8 Ed25519 PEM). Throws WITNESS_ERR_KEY_FILE if the file is accessible by group or others
 * (with the chmod to run), is not a regular file, or does not hold such a key.
 * The caller should zero the seed (`seed.fill(0)`) once it is no longer needed.
 */
export function readSeed(path: string): Uint8Array {
  let fd: number;
  try {
    fd = openSync(path, 'r');
  } catch (e) {
    throw keyFileError(path, `cannot open (${errnoCode(e) ?? (e as Error).message})`, 'check the path, or create the key with `witness init` / `witness-agent init`', { cause: e });
  }
  let text: string;
  try {
    // fstat on the open descriptor: the mode checked is the mode of the file read.
    const st = fstatSync(fd);
    if (!st.isFile()) throw keyFileError(path, 'is not a regular file', 'point at the .key file itself');
    const mode = st.mode & 0o777;
    if (process.platform !== 'win32' && (mode & 0o077) !== 0) {
      throw keyFileError(
        path,
        `is mode 0${mode.toString(8)}, accessible by group or others`,
        `a private key must be readable by its owner only: run \`chmod 600 ${path}\``,
        { details: { mode: `0${mode.toString(8)}` } },
      );
    }
    if (st.size > MAX_KEY_FILE_SIZE) throw keyFileError(path, `is ${st.size} bytes, too large for a key`, 'point at the .key file written by Witness');
    const buf = Buffer.alloc(st.size);
    let off = 0;
    while (off < buf.length) {
      const n = readSync(fd, buf, off, buf.length - off, off);
      if (n === 0) break;
      off += n;
    }
    text = buf.subarray(0, off).toString('utf8');
  } finally {
    closeSync(fd);
  }
  let der: Buffer;
  try {
    const key = createPrivateKey({ key: text, format: 'pem' });
    if (key.asymmetricKeyType !== 'ed25519') {
      throw new Error(`holds a ${key.asymmetricKeyType ?? 'unknown'} key, not Ed25519`);
    }
    der = key.export({ format: 'der', type: 'pkcs8' });
  } catch (e) {
    throw keyFileError(path, `is not an unencrypted PKCS#8 Ed25519 private key in PEM (${(e as Error).message})`, 'restore the file written by Witness or create a new key', { cause: e });
  }
  if (der.length !== PKCS8_ED25519_PREFIX.length + SEED_SIZE || !der.subarray(0, PKCS8_ED25519_PREFIX.length).equals(PKCS8_ED25519_PREFIX)) {
    throw keyFileError(path, 'holds an Ed25519 key in an unexpected PKCS#8 form', 'restore the file written by Witness or create a new key');
  }
  const seed = new Uint8Array(der.subarray(PKCS8_ED25519_PREFIX.length));
  der.fill(0);
  return seed;
}

/**
 * Reads a public key file: base64url raw key (a `.pub` written by `writeKeyPair`) or a C2SP
 * verifier key. Throws WITNESS_ERR_KEY_FILE if unreadable or malformed, WITNESS_ERR_KEY_WEAK for a
 * small-order or non-canonical key.
 */
export function readPublicKey(path: string): Uint8Array {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (e) {
    throw keyFileError(path, `cannot read (${errnoCode(e) ?? (e as Error).message})`, 'check the path of the .pub file', { cause: e });
  }
  if (text.length > MAX_KEY_FILE_SIZE) throw keyFileError(path, 'is too large for a public key', 'point at the .pub file written by Witness');
  try {
    return parsePublicKey(text);
  } catch (e) {
    if (e instanceof WitnessError && e.code === 'WITNESS_ERR_KEY_WEAK') {
      throw new WitnessError('WITNESS_ERR_KEY_WEAK', `key file ${path}: ${e.message}`, { cause: e, details: { path } });
    }
    throw keyFileError(path, (e as Error).message, 'it must hold 43 base64url characters (the .pub written by Witness) or a verifier key', { cause: e });
  }
}
