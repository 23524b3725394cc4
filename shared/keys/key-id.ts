/**
 * Key ids as in C2SP signed-note (https://c2sp.org/signed-note): the key hash is the first four
 * bytes of SHA-256(key name || 0x0A || signature type || public key), signature type 0x01 for
 * Ed25519. A verifier key is written `name+hex(keyhash)+base64(0x01 || public key)`.
 *
 * Witness names keys like notes do: the broker's key is named by its ledger origin, a device's
 * key by its device id. The COSE `kid` of a device envelope is the UTF-8 of `deviceId+hexhash`
 * (the first two parts of the verifier key string), so a kid is readable, names the device, and
 * still tells two keys of one device apart.
 */
import { createHash } from 'node:crypto';
import { WitnessError } from '../errors.js';
import { checkPublicKey } from './ed25519.js';

export const ED25519_SIGNATURE_TYPE = 0x01;
export const KEY_HASH_SIZE = 4;

/** Signed-note key names: non-empty, no Unicode spaces, no plus signs (C2SP signed-note). */
export function checkKeyName(name: string): void {
  if (typeof name !== 'string' || name.length === 0 || /[\p{White_Space}+]/u.test(name)) {
    throw new WitnessError(
      'WITNESS_ERR_INVALID_ARGUMENT',
      `key name ${JSON.stringify(name)}: must be non-empty and contain no spaces or '+' (C2SP signed-note)`,
    );
  }
}

/** First four bytes of SHA-256(name || "\n" || type || key). */
export function keyHash(name: string, publicKey: Uint8Array, signatureType = ED25519_SIGNATURE_TYPE): Uint8Array {
  checkKeyName(name);
  const h = createHash('sha256');
  h.update(name, 'utf8');
  h.update(Uint8Array.of(0x0a, signatureType));
  h.update(publicKey);
  return new Uint8Array(h.digest().subarray(0, KEY_HASH_SIZE));
}

/** `name+hex(keyhash)+base64(0x01 || key)`: the C2SP verifier key string of an Ed25519 key. */
export function verifierKey(name: string, publicKey: Uint8Array): string {
  checkPublicKey(publicKey);
  const hash = Buffer.from(keyHash(name, publicKey)).toString('hex');
  const data = Buffer.concat([Uint8Array.of(ED25519_SIGNATURE_TYPE), publicKey]).toString('base64');
  return `${name}+${hash}+${data}`;
}

export interface ParsedVerifierKey {
  name: string;
  keyHash: Uint8Array;
  publicKey: Uint8Array;
}

/** Parses and checks a verifier key string (the hash must match the name and key). */
export function parseVerifierKey(vkey: string): ParsedVerifierKey {
  // name+hash+data: names hold no '+' and the hash is hex, but the base64 data may hold '+'.
  const s = typeof vkey === 'string' ? vkey : '';
  const a = s.indexOf('+');
  const b = a < 0 ? -1 : s.indexOf('+', a + 1);
  const parts = a > 0 && b > a ? [s.slice(0, a), s.slice(a + 1, b), s.slice(b + 1)] : [];
  if (parts.length !== 3) {
    throw new WitnessError('WITNESS_ERR_KEY_INVALID', `verifier key: expected "name+hash+base64key", got ${JSON.stringify(String(vkey).slice(0, 80))}`);
  }
  const [name, hashHex, data] = parts as [string, string, string];
  checkKeyName(name);
  const raw = Buffer.from(data, 'base64');
  // Buffer's base64 decoder skips characters outside the alphabet and accepts base64url: require
  // the one canonical encoding, so that one key has one verifier key string.
  if (raw.length !== 33 || raw.toString('base64') !== data || raw[0] !== ED25519_SIGNATURE_TYPE || !/^[0-9a-f]{8}$/.test(hashHex)) {
    throw new WitnessError('WITNESS_ERR_KEY_INVALID', `verifier key ${name}: not an Ed25519 key (expected hash of 8 hex digits and base64 of 0x01 followed by 32 bytes)`);
  }
  const publicKey = new Uint8Array(raw.subarray(1));
  checkPublicKey(publicKey);
  const expected = keyHash(name, publicKey);
  if (Buffer.from(expected).toString('hex') !== hashHex) {
    throw new WitnessError('WITNESS_ERR_KEY_INVALID', `verifier key ${name}: key hash ${hashHex} does not match the key (expected ${Buffer.from(expected).toString('hex')})`);
  }
  return { name, keyHash: expected, publicKey };
}

/** The COSE kid of a device key: UTF-8 of `deviceId+hex(keyhash)`. */
export function deviceKid(deviceId: string, publicKey: Uint8Array): Uint8Array {
  return new TextEncoder().encode(`${deviceId}+${Buffer.from(keyHash(deviceId, publicKey)).toString('hex')}`);
}

/** Splits a device kid into device id and key hash; throws WITNESS_ERR_KEY_INVALID if malformed. */
export function parseDeviceKid(kid: Uint8Array): { deviceId: string; keyHash: Uint8Array } {
  const s = new TextDecoder('utf-8', { fatal: false }).decode(kid);
  const plus = s.lastIndexOf('+');
  const hashHex = plus < 0 ? '' : s.slice(plus + 1);
  if (plus <= 0 || !/^[0-9a-f]{8}$/.test(hashHex)) {
    throw new WitnessError('WITNESS_ERR_KEY_INVALID', `device kid ${JSON.stringify(s.slice(0, 80))}: expected "deviceId+8 hex digits"`);
  }
  return { deviceId: s.slice(0, plus), keyHash: new Uint8Array(Buffer.from(hashHex, 'hex')) };
}
