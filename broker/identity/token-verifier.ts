/**
 * The broker's check of a proof-of-possession connect token (DESIGN §2.2; the token format is in
 * shared/token/connect-token.ts). It reads as a checklist, cheapest refusals first where that
 * does not change the verdict:
 *
 *   decode → key (unknown / revoked) → signature (strict Ed25519) → client id binding →
 *   audience → freshness (±maxSkewMs) → nonce (not seen within its TTL)
 *
 * Only a token that passed every other check has its nonce recorded, so a stranger cannot fill
 * the nonce cache or burn a device's nonces: to be remembered, a token must be signed by an
 * active registered key.
 *
 * The nonce cache and its bound. Entries expire `nonceTtlMs` after they were recorded; a token
 * stays acceptable for at most 2 × maxSkewMs after it was first seen (issued up to maxSkewMs in
 * the future, accepted up to maxSkewMs after issue), so the constructor requires
 * nonceTtlMs ≥ 2 × maxSkewMs: a nonce is never forgotten while its token could still pass.
 * Because every entry lives the same TTL, insertion order is expiry order (for a clock that does
 * not run backwards) and eviction pops expired entries from the front of a Map: O(1) amortised.
 * When `maxNonces` unexpired nonces are held, a new token is REFUSED (reason
 * `nonce-cache-full`), not admitted by forgetting an older nonce: forgetting one would let that
 * token be replayed, so under this pressure the broker fails closed. Reaching the bound takes
 * maxNonces successful token connects by registered devices within one TTL (default 100,000 in
 * 2 minutes, ≈ 830 connects/s), which is itself worth an alert; the reason is distinct from
 * `replayed` so that the ledger does not accuse a device of a replay it did not make.
 * Memory: one Map entry per nonce, keyed by `kid NUL base64url(nonce)` (≈ 100 bytes of key),
 * so the default bound is some 20–30 MB at worst.
 */
import { decodeConnectToken, type DecodedConnectToken } from '../../shared/token/connect-token.js';
import { verifyCoseSign1 } from '../../shared/envelope/cose-sign1.js';
import { WitnessError } from '../../shared/errors.js';

/** What the verifier needs from the device registry (DeviceRegistry implements it). */
export interface TokenKeyLookup {
  lookup(deviceId: string, keyHash: Uint8Array): { status: 'active' | 'revoked' | 'unknown'; publicKey?: Uint8Array };
}

export type TokenRefusal =
  | 'malformed'
  | 'unknown-key'
  | 'revoked'
  | 'bad-signature'
  | 'wrong-client'
  | 'wrong-audience'
  | 'expired'
  | 'future'
  | 'replayed'
  | 'nonce-cache-full';

export type TokenVerdict =
  | { ok: true; deviceId: string; keyHash: string; identity: string }
  | { ok: false; reason: TokenRefusal; detail: string };

export interface TokenVerifierOptions {
  /** The audience this broker accepts (the `2` claim). Required; Witness's default is `mqtt-witness`. */
  audience: string;
  /** Largest accepted difference between issued-at and broker time, either way, in ms. Default 30,000. */
  maxSkewMs?: number;
  /** How long a seen nonce is remembered, ms. Default 120,000; must be ≥ 2 × maxSkewMs. */
  nonceTtlMs?: number;
  /** Most nonces held at once (bounded memory). Default 100,000. */
  maxNonces?: number;
  /** Broker time, ms since the epoch. Default Date.now. */
  now?: () => number;
}

export const TOKEN_VERIFIER_DEFAULTS = { maxSkewMs: 30_000, nonceTtlMs: 120_000, maxNonces: 100_000 } as const;

function positiveInt(name: string, v: number): number {
  if (!Number.isSafeInteger(v) || v <= 0) throw new WitnessError('WITNESS_ERR_INVALID_ARGUMENT', `TokenVerifier ${name}: expected a positive integer, got ${String(v)}`);
  return v;
}

export class TokenVerifier {
  readonly audience: string;
  readonly maxSkewMs: number;
  readonly nonceTtlMs: number;
  readonly maxNonces: number;
  readonly #now: () => number;
  /** kid NUL nonce → expiry (ms since the epoch); in insertion order = expiry order. */
  readonly #nonces = new Map<string, number>();

  constructor(o: TokenVerifierOptions) {
    if (typeof o?.audience !== 'string' || o.audience.length === 0) throw new WitnessError('WITNESS_ERR_INVALID_ARGUMENT', 'TokenVerifier audience: expected a non-empty string');
    this.audience = o.audience;
    this.maxSkewMs = positiveInt('maxSkewMs', o.maxSkewMs ?? TOKEN_VERIFIER_DEFAULTS.maxSkewMs);
    this.nonceTtlMs = positiveInt('nonceTtlMs', o.nonceTtlMs ?? TOKEN_VERIFIER_DEFAULTS.nonceTtlMs);
    this.maxNonces = positiveInt('maxNonces', o.maxNonces ?? TOKEN_VERIFIER_DEFAULTS.maxNonces);
    if (this.nonceTtlMs < 2 * this.maxSkewMs) {
      throw new WitnessError(
        'WITNESS_ERR_INVALID_ARGUMENT',
        `TokenVerifier nonceTtlMs (${this.nonceTtlMs}) must be at least 2 × maxSkewMs (${2 * this.maxSkewMs}): a token is acceptable for up to 2 × maxSkewMs, and its nonce must be remembered that long`,
      );
    }
    this.#now = o.now ?? Date.now;
  }

  /** Nonces held right now (expired ones included until the next eviction). */
  get nonceCacheSize(): number {
    return this.#nonces.size;
  }

  /** Checks `tokenBytes`, presented as the password of a CONNECT with client id `clientId`. */
  verify(clientId: string, tokenBytes: Uint8Array, registry: TokenKeyLookup): TokenVerdict {
    // 1. structure
    let t: DecodedConnectToken;
    try {
      t = decodeConnectToken(tokenBytes);
    } catch (e) {
      return refuse('malformed', (e as Error).message);
    }
    const keyHashHex = Buffer.from(t.keyHash).toString('hex');

    // 2. key: registered and not revoked
    const key = registry.lookup(t.deviceId, t.keyHash);
    if (key.status === 'unknown' || (key.status === 'active' && key.publicKey === undefined)) {
      return refuse('unknown-key', `no key ${t.kid} in the device registry`);
    }
    if (key.status === 'revoked') return refuse('revoked', `key ${t.kid} is revoked`);

    // 3. signature, strict (shared/keys/ed25519.ts)
    try {
      verifyCoseSign1(t.message, key.publicKey!);
    } catch (e) {
      return refuse('bad-signature', `key ${t.kid}: ${(e as Error).message}`);
    }

    // 4. binding: the MQTT client id, the signed client id and the key's device are one device
    if (t.clientId !== t.deviceId) {
      return refuse('wrong-client', `the token's client id ${JSON.stringify(t.clientId)} is not the device of its key (${JSON.stringify(t.deviceId)})`);
    }
    if (clientId !== t.clientId) {
      return refuse('wrong-client', `the token is for client id ${JSON.stringify(t.clientId)}, the connection uses ${JSON.stringify(clientId)}`);
    }

    // 5. audience
    if (t.audience !== this.audience) {
      return refuse('wrong-audience', `the token is for audience ${JSON.stringify(t.audience)}, this broker is ${JSON.stringify(this.audience)}`);
    }

    // 6. freshness: |now − issued-at| ≤ maxSkewMs
    const now = this.#now();
    const age = now - t.issuedAt;
    if (age > this.maxSkewMs) return refuse('expired', `issued ${age} ms ago, more than the ${this.maxSkewMs} ms allowed`);
    if (-age > this.maxSkewMs) return refuse('future', `issued ${-age} ms in the future, more than the ${this.maxSkewMs} ms allowed`);

    // 7. nonce: not seen within its TTL; recorded only now that everything else passed
    this.#evictExpired(now);
    const nonceKey = `${t.kid}\u0000${Buffer.from(t.nonce).toString('base64url')}`;
    const seen = this.#nonces.get(nonceKey);
    if (seen !== undefined && seen > now) {
      return refuse('replayed', `nonce ${Buffer.from(t.nonce).toString('hex')} of key ${t.kid} was already used ${now - (seen - this.nonceTtlMs)} ms ago`);
    }
    if (seen !== undefined) this.#nonces.delete(nonceKey);
    if (this.#nonces.size >= this.maxNonces) {
      return refuse('nonce-cache-full', `nonce cache full: ${this.#nonces.size} unexpired nonces (maxNonces); refusing rather than forgetting one, which would allow a replay`);
    }
    this.#nonces.set(nonceKey, now + this.nonceTtlMs);
    return { ok: true, deviceId: t.deviceId, keyHash: keyHashHex, identity: `device:${t.deviceId}+${keyHashHex}` };
  }

  /** Drops expired nonces from the front (oldest first); stops at the first unexpired one. */
  #evictExpired(now: number): void {
    for (const [k, expires] of this.#nonces) {
      if (expires > now) break;
      this.#nonces.delete(k);
    }
  }
}

function refuse(reason: TokenRefusal, detail: string): TokenVerdict {
  return { ok: false, reason, detail };
}
