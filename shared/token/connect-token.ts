/**
 * The proof-of-possession connect token (DESIGN §2.2). This comment is its specification.
 *
 * MQTT 3.1.1 has no AUTH packet, so a device proves that it holds its key inside CONNECT:
 *   client id = device id
 *   user name = `witness-token/v1`
 *   password  = a tagged COSE_Sign1 (RFC 9052 §4.2), EdDSA/Ed25519 (alg -8):
 *     protected header  {1 (alg): -8, 4 (kid): UTF-8 of `deviceId+hex(keyhash)`} — nothing else
 *     unprotected       {}
 *     payload           deterministic CBOR (RFC 8949 §4.2.1) map
 *                         {1: client id (tstr), 2: audience (tstr), 3: issued-at, ms since the
 *                          epoch (uint), 4: nonce (bstr, 16 random bytes)}
 *     signature         Ed25519 over the Sig_structure (RFC 9052 §4.4), external_aad empty
 *
 * The audience names the broker (default `mqtt-witness`), so a token made for one broker is
 * refused by another; issued-at bounds its life (the broker's freshness window); the nonce lets
 * the broker refuse a second use within that life.
 *
 * This module makes tokens and decodes their structure. It does not verify: the broker's
 * TokenVerifier (broker/identity/token-verifier.ts) looks the key up, checks the signature,
 * binding, audience, freshness and nonce.
 */
import { randomBytes } from 'node:crypto';
import { WitnessError, expectBytes } from '../errors.js';
import { encode, type CborValue } from '../cbor/encode.js';
import { decode } from '../cbor/decode.js';
import { ALG_EDDSA, HEADER_ALG, HEADER_KID, decodeCoseSign1, signCoseSign1, type CoseSign1 } from '../envelope/cose-sign1.js';
import { deviceKid, parseDeviceKid } from '../keys/key-id.js';
import { publicKeyFromSeed, PUBLIC_KEY_SIZE, SEED_SIZE, SIGNATURE_SIZE } from '../keys/ed25519.js';
import { checkDeviceId } from './device-id.js';

/** The MQTT user name that announces a connect token as the password. */
export const TOKEN_USERNAME = 'witness-token/v1';
/** The audience a broker expects unless configured otherwise. */
export const DEFAULT_AUDIENCE = 'mqtt-witness';
export const NONCE_SIZE = 16;
/**
 * Largest token accepted by `decodeConnectToken`. A real one is about 200 bytes (kid ≤ 73,
 * client id ≤ 64, audience, 9 + 18 bytes of time and nonce, 64 of signature); refusing anything
 * over 1 KiB before decoding keeps hostile passwords (up to 64 KiB in MQTT) cheap to reject.
 */
export const MAX_TOKEN_SIZE = 1024;
/** Longest audience, in UTF-16 code units; a broker name, not a document. */
export const MAX_AUDIENCE_LENGTH = 255;

// Payload labels.
const CLAIM_CLIENT_ID = 1;
const CLAIM_AUDIENCE = 2;
const CLAIM_ISSUED_AT = 3;
const CLAIM_NONCE = 4;

export interface ConnectTokenInput {
  /** The device's Ed25519 private key seed (32 bytes). */
  seed: Uint8Array;
  /** The device id, also the MQTT client id it connects with. */
  deviceId: string;
  /** The device's public key (32 bytes); must be the one of `seed`. */
  publicKey: Uint8Array;
  /** The broker's audience. Default `mqtt-witness`. */
  audience?: string;
  /** Issued-at, ms since the epoch. Default Date.now(). */
  now?: number;
  /** 16 bytes. Default: fresh random bytes. Pass one only in tests. */
  nonce?: Uint8Array;
}

export interface DecodedConnectToken {
  /** The kid as text: `deviceId+hex(keyhash)`. */
  kid: string;
  /** Device id named by the kid. */
  deviceId: string;
  /** Key hash named by the kid (4 bytes). */
  keyHash: Uint8Array;
  /** Client id claim (1). */
  clientId: string;
  /** Audience claim (2). */
  audience: string;
  /** Issued-at claim (3), ms since the epoch. */
  issuedAt: number;
  /** Nonce claim (4), 16 bytes. */
  nonce: Uint8Array;
  /** The COSE_Sign1 as decoded, for `verifyCoseSign1`. */
  message: CoseSign1;
}

function checkAudience(audience: unknown): asserts audience is string {
  if (typeof audience !== 'string' || audience.length === 0 || audience.length > MAX_AUDIENCE_LENGTH) {
    throw new WitnessError('WITNESS_ERR_INVALID_ARGUMENT', `token audience: expected a string of 1 to ${MAX_AUDIENCE_LENGTH} characters, got ${typeof audience === 'string' ? `${audience.length} characters` : typeof audience}`);
  }
}

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && Buffer.from(a.buffer, a.byteOffset, a.byteLength).equals(b);
}

/** Makes a connect token: the MQTT password of a device connecting as `deviceId`. */
export function createConnectToken(input: ConnectTokenInput): Uint8Array {
  const { seed, deviceId, publicKey } = input;
  expectBytes(seed, SEED_SIZE, 'connect token seed');
  expectBytes(publicKey, PUBLIC_KEY_SIZE, 'connect token public key');
  checkDeviceId(deviceId);
  const audience = input.audience ?? DEFAULT_AUDIENCE;
  checkAudience(audience);
  const now = input.now ?? Date.now();
  if (!Number.isSafeInteger(now) || now < 0) {
    throw new WitnessError('WITNESS_ERR_INVALID_ARGUMENT', `connect token now: expected ms since the epoch (a non-negative integer), got ${String(now)}`);
  }
  const nonce = input.nonce ?? new Uint8Array(randomBytes(NONCE_SIZE));
  expectBytes(nonce, NONCE_SIZE, 'connect token nonce');
  // A token signed by a seed that is not the named key's would be refused by every broker as
  // bad-signature; say so here, where the mistake is made.
  if (!sameBytes(publicKeyFromSeed(seed), publicKey)) {
    throw new WitnessError('WITNESS_ERR_INVALID_ARGUMENT', 'connect token: publicKey is not the public key of seed');
  }
  const payload = encode(
    new Map<number, CborValue>([
      [CLAIM_CLIENT_ID, deviceId],
      [CLAIM_AUDIENCE, audience],
      [CLAIM_ISSUED_AT, now],
      [CLAIM_NONCE, nonce],
    ]),
  );
  const protectedHeader = new Map<number, CborValue>([
    [HEADER_ALG, ALG_EDDSA],
    [HEADER_KID, deviceKid(deviceId, publicKey)],
  ]);
  return signCoseSign1({ protectedHeader, payload, seed });
}

function malformed(what: string, cause?: unknown): WitnessError {
  return new WitnessError('WITNESS_ERR_TOKEN_MALFORMED', `connect token: ${what}`, cause === undefined ? {} : { cause });
}

/**
 * Decodes a connect token's structure, strictly: tagged COSE_Sign1 of at most MAX_TOKEN_SIZE
 * bytes; protected header exactly {1: -8, 4: kid} with a device kid; empty unprotected header;
 * a 64-byte signature; a payload that is the deterministic encoding of exactly the four claims
 * with their types. One token has one encoding, so the bytes a broker sees are the bytes signed.
 * Throws WITNESS_ERR_TOKEN_MALFORMED (with the lower-level error as cause). Verifies nothing.
 */
export function decodeConnectToken(bytes: Uint8Array): DecodedConnectToken {
  if (!(bytes instanceof Uint8Array)) throw malformed(`expected bytes, got ${typeof bytes}`);
  if (bytes.length > MAX_TOKEN_SIZE) throw malformed(`${bytes.length} bytes, more than the ${MAX_TOKEN_SIZE} a token may have`);
  let message: CoseSign1;
  try {
    message = decodeCoseSign1(bytes);
  } catch (e) {
    throw malformed(`not a tagged COSE_Sign1 (${(e as Error).message})`, e);
  }
  const h = message.protectedHeader;
  if (h.size !== 2 || h.get(HEADER_ALG) !== ALG_EDDSA || !(h.get(HEADER_KID) instanceof Uint8Array)) {
    throw malformed('the protected header must be exactly {1 (alg): -8 (EdDSA), 4 (kid): bstr}');
  }
  if (message.unprotected.size !== 0) throw malformed('the unprotected header must be empty');
  if (message.signature.length !== SIGNATURE_SIZE) throw malformed(`signature is ${message.signature.length} bytes, expected ${SIGNATURE_SIZE}`);
  if (message.payload === null) throw malformed('detached (nil) payload');

  const kidBytes = h.get(HEADER_KID) as Uint8Array;
  let kidParts: { deviceId: string; keyHash: Uint8Array };
  try {
    kidParts = parseDeviceKid(kidBytes);
  } catch (e) {
    throw malformed(`kid: ${(e as Error).message}`, e);
  }

  let claims: CborValue;
  try {
    claims = decode(message.payload);
  } catch (e) {
    throw malformed(`payload is not CBOR (${(e as Error).message})`, e);
  }
  if (!(claims instanceof Map) || claims.size !== 4) throw malformed('payload must be a map of exactly the claims 1, 2, 3, 4');
  const clientId = claims.get(CLAIM_CLIENT_ID);
  const audience = claims.get(CLAIM_AUDIENCE);
  const issuedAt = claims.get(CLAIM_ISSUED_AT);
  const nonce = claims.get(CLAIM_NONCE);
  if (typeof clientId !== 'string') throw malformed('claim 1 (client id) must be a text string');
  if (typeof audience !== 'string') throw malformed('claim 2 (audience) must be a text string');
  if (typeof issuedAt !== 'number' || !Number.isSafeInteger(issuedAt) || issuedAt < 0) throw malformed('claim 3 (issued-at) must be an unsigned integer (ms since the epoch)');
  if (!(nonce instanceof Uint8Array) || nonce.length !== NONCE_SIZE) throw malformed(`claim 4 (nonce) must be a byte string of ${NONCE_SIZE} bytes`);
  // RFC 8949 §4.2.1: the generic decoder accepts non-shortest heads and any key order; a token
  // must be in the one deterministic form (re-encoding gives back the same bytes).
  if (!sameBytes(encode(claims), message.payload)) throw malformed('payload is not in deterministic CBOR encoding (RFC 8949 §4.2.1)');

  return {
    kid: new TextDecoder().decode(kidBytes),
    deviceId: kidParts.deviceId,
    keyHash: kidParts.keyHash,
    clientId,
    audience,
    issuedAt,
    nonce,
    message,
  };
}
