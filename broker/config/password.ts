/**
 * Password hashes for username/password clients: scrypt (RFC 7914) in the text form
 *
 *   scrypt$N$r$p$<salt, base64>$<key, base64>          e.g. scrypt$16384$8$1$…$…
 *
 * New hashes use N = 16384, r = 8, p = 1 (16 MiB, ≈ 50 ms here), a 16-byte random salt and a
 * 32-byte key. Verification reads the parameters from the hash, within bounds (N ≤ 2^20,
 * 128·N·r ≤ 256 MiB) so a config cannot make one login exhaust memory, and compares in constant
 * time (timingSafeEqual). node:crypto's scrypt is native; there is no hot path here, only logins.
 */
import { randomBytes, scryptSync, timingSafeEqual, scrypt } from 'node:crypto';
import { WitnessError } from '../../shared/errors.js';

export const SCRYPT_DEFAULTS = Object.freeze({ N: 16_384, r: 8, p: 1, saltBytes: 16, keyBytes: 32 });

const MAX_LOG2_N = 20;
const MAX_MEMORY = 256 * 1024 * 1024;
const MIN_SALT_BYTES = 8;
const MIN_KEY_BYTES = 16;
const MAX_KEY_BYTES = 64;

interface ParsedHash {
  N: number;
  r: number;
  p: number;
  salt: Buffer;
  key: Buffer;
}

/** Hashes a password for the config's `auth.users[].passwordHash`. */
export function hashPassword(password: string | Uint8Array): string {
  const pw = toBytes(password);
  const { N, r, p, saltBytes, keyBytes } = SCRYPT_DEFAULTS;
  const salt = randomBytes(saltBytes);
  const key = scryptSync(pw, salt, keyBytes, { N, r, p, maxmem: maxmem(N, r, p) });
  return `scrypt$${N}$${r}$${p}$${salt.toString('base64')}$${key.toString('base64')}`;
}

/**
 * True when `password` matches `hash`. Throws WITNESS_ERR_PASSWORD_HASH_MALFORMED when `hash`
 * is not a valid scrypt hash (the config loader refuses such hashes before the broker starts).
 */
export function verifyPassword(hash: string, password: string | Uint8Array): boolean {
  const h = parse(hash);
  if (typeof h === 'string') {
    throw new WitnessError('WITNESS_ERR_PASSWORD_HASH_MALFORMED', `password hash: ${h}`, { details: { reason: h } });
  }
  const actual = scryptSync(toBytes(password), h.salt, h.key.length, { N: h.N, r: h.r, p: h.p, maxmem: maxmem(h.N, h.r, h.p) });
  return timingSafeEqual(actual, h.key);
}

/**
 * verifyPassword on the libuv thread pool: scrypt with the default parameters costs ≈ 50 ms of CPU,
 * which would stall every client of the broker if it ran on the event loop (one login attempt per
 * 50 ms would be enough to freeze it). The broker's authenticator uses this one.
 */
export function verifyPasswordAsync(hash: string, password: string | Uint8Array): Promise<boolean> {
  const h = parse(hash);
  if (typeof h === 'string') {
    return Promise.reject(new WitnessError('WITNESS_ERR_PASSWORD_HASH_MALFORMED', `password hash: ${h}`, { details: { reason: h } }));
  }
  return new Promise((resolve, reject) => {
    scrypt(toBytes(password), h.salt, h.key.length, { N: h.N, r: h.r, p: h.p, maxmem: maxmem(h.N, h.r, h.p) }, (err, actual) => {
      if (err) reject(err);
      else resolve(timingSafeEqual(actual, h.key));
    });
  });
}

/** Why `hash` is not a valid password hash, or undefined when it is one. */
export function checkPasswordHash(hash: unknown): string | undefined {
  const h = parse(hash);
  return typeof h === 'string' ? h : undefined;
}

function parse(hash: unknown): ParsedHash | string {
  if (typeof hash !== 'string') return 'expected a string';
  const parts = hash.split('$');
  if (parts.length !== 6 || parts[0] !== 'scrypt') return 'expected scrypt$N$r$p$SALT$KEY (6 fields separated by $)';
  const [, nS, rS, pS, saltS, keyS] = parts as [string, string, string, string, string, string];
  const int = (s: string): number => (/^[1-9]\d{0,9}$/.test(s) ? Number(s) : NaN);
  const N = int(nS);
  const r = int(rS);
  const p = int(pS);
  if (!(N > 1) || (N & (N - 1)) !== 0 || N > 2 ** MAX_LOG2_N) return `N must be a power of two from 2 to 2^${MAX_LOG2_N}, got ${nS}`;
  if (!(r >= 1 && r <= 32)) return `r must be an integer from 1 to 32, got ${rS}`;
  if (!(p >= 1 && p <= 16)) return `p must be an integer from 1 to 16, got ${pS}`;
  if (128 * N * r > MAX_MEMORY) return `N·r needs ${(128 * N * r) / 2 ** 20} MiB, more than the ${MAX_MEMORY / 2 ** 20} MiB allowed`;
  const salt = base64(saltS);
  if (!salt || salt.length < MIN_SALT_BYTES) return `the salt must be base64 of at least ${MIN_SALT_BYTES} bytes`;
  const key = base64(keyS);
  if (!key || key.length < MIN_KEY_BYTES || key.length > MAX_KEY_BYTES) return `the key must be base64 of ${MIN_KEY_BYTES} to ${MAX_KEY_BYTES} bytes`;
  return { N, r, p, salt, key };
}

/** Strict base64 (RFC 4648 §4, padding optional): Buffer.from alone skips bad characters. */
function base64(s: string): Buffer | undefined {
  if (!/^[A-Za-z0-9+/]+={0,2}$/.test(s)) return undefined;
  const b = Buffer.from(s, 'base64');
  return b.toString('base64').replace(/=+$/, '') === s.replace(/=+$/, '') ? b : undefined;
}

function maxmem(N: number, r: number, p: number): number {
  return 128 * N * r + 128 * r * p + 1024 * 1024;
}

function toBytes(pw: string | Uint8Array): Uint8Array {
  if (typeof pw === 'string') return Buffer.from(pw, 'utf8');
  if (pw instanceof Uint8Array) return pw;
  throw new WitnessError('WITNESS_ERR_INVALID_ARGUMENT', 'password: expected a string or Uint8Array');
}
