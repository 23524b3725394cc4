/**
 * Bearer tokens of the HTTP API. A token is 32 random bytes, base64url (43 characters); the
 * configuration holds only its SHA-256 (hex), never the token. A request's token is hashed and
 * compared with every configured hash in constant time (no early exit, so the time taken does
 * not tell which prefix matched, nor which entry).
 *
 * Roles are ordered: auditor ⊂ operator ⊂ admin — a route that needs `operator` accepts an admin.
 */
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { WitnessError } from '../../shared/errors.js';
import { HTTP_ROLES, type HttpRole } from '../config/config.js';

export { HTTP_ROLES, type HttpRole };

export interface HttpToken {
  name: string;
  role: HttpRole;
  /** SHA-256 of the token, 64 hex digits. */
  sha256: string;
}

export const ROLE_RANK: Readonly<Record<HttpRole, number>> = { auditor: 1, operator: 2, admin: 3 };

/** Token names: who holds it, named in the records of its accesses (as the config accepts them). */
export const TOKEN_NAME = /^[A-Za-z0-9._@-]{1,64}$/;

/** Whether `role` may use a route that needs `needed`. */
export function roleAllows(role: HttpRole, needed: HttpRole): boolean {
  return ROLE_RANK[role] >= ROLE_RANK[needed];
}

/** A new token: 32 random bytes, base64url without padding. */
export function generateToken(): string {
  return randomBytes(32).toString('base64url');
}

/** SHA-256 of a token's text, hex: what the configuration stores. */
export function hashToken(token: string): string {
  return createHash('sha256').update(token, 'utf8').digest('hex');
}

export type AuthResult = { ok: true; name: string; role: HttpRole } | { ok: false; reason: 'missing' | 'malformed' | 'unknown' };

/**
 * Checks the token of a request: `Authorization: Bearer TOKEN`, or (for browsers' EventSource,
 * which cannot set headers) the `access_token` query parameter (RFC 6750 §2.3).
 */
export function authenticateToken(authorization: string | undefined, queryToken: string | undefined, tokens: readonly HttpToken[]): AuthResult {
  let token: string | undefined;
  if (authorization !== undefined) {
    const m = /^Bearer[ \t]+([^\s]+)[ \t]*$/i.exec(authorization);
    if (!m) return { ok: false, reason: 'malformed' };
    token = m[1]!;
  } else if (queryToken !== undefined) {
    token = queryToken;
  }
  if (token === undefined || token.length === 0) return { ok: false, reason: 'missing' };
  if (token.length > 512) return { ok: false, reason: 'unknown' };
  const presented = createHash('sha256').update(token, 'utf8').digest();
  let found: HttpToken | undefined;
  for (const t of tokens) {
    const expected = Buffer.from(t.sha256, 'hex');
    // Compare every entry (no early exit); a malformed hash in memory never matches.
    const same = expected.length === presented.length && timingSafeEqual(expected, presented);
    if (same && found === undefined) found = t;
  }
  return found ? { ok: true, name: found.name, role: found.role } : { ok: false, reason: 'unknown' };
}

export const ADMIN_TOKEN_FILE = 'http-admin.token';

/**
 * The admin token a broker makes for itself when its config lists no token: DATA/keys/http-admin.token
 * (mode 0600), made at the first start and read at every later one. Returns the token entry to
 * use, the file, and whether it was just made (then say where it is).
 */
export function ensureAdminToken(dataDir: string): { token: HttpToken; path: string; created: boolean } {
  const path = join(dataDir, 'keys', ADMIN_TOKEN_FILE);
  let created = false;
  if (!existsSync(path)) {
    try {
      writeFileSync(path, generateToken() + '\n', { mode: 0o600, flag: 'wx' });
      created = true;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw new WitnessError('WITNESS_ERR_IO', `cannot write ${path}: ${(e as Error).message}`, { cause: e, details: { file: path } });
    }
  }
  let text: string;
  try {
    text = readFileSync(path, 'utf8').trim();
  } catch (e) {
    throw new WitnessError('WITNESS_ERR_IO', `cannot read ${path}: ${(e as Error).message}`, { cause: e, details: { file: path } });
  }
  if (text.length < 16 || /\s/.test(text)) {
    throw new WitnessError('WITNESS_ERR_IO', `${path}: not a token (expected one line of base64url); delete it to have a new one made at the next start`, { details: { file: path } });
  }
  return { token: { name: 'admin', role: 'admin', sha256: hashToken(text) }, path, created };
}
