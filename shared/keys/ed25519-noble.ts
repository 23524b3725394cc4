/**
 * The portable Ed25519 path (@noble/ed25519, pure JS: any JS runtime, no OpenSSL) and the
 * cross-check of node:crypto — with the same strict verdicts (shared/keys/ed25519.ts says which).
 * Its own module so that what runs only node:crypto (the agent, the broker) does not load it:
 * importing @noble/ed25519 + @noble/hashes/sha2 costs ~1.8 MB RSS at start (measured with
 * `node --lite-mode`, /proc/self/status VmRSS, 41.7 vs 39.9 MB), which the agent's memory budget
 * (bench/agent.ts) feels.
 */
import * as ed from '@noble/ed25519';
import { sha512 } from '@noble/hashes/sha2.js';
import { L, leToBigInt, type Ed25519Backend } from './ed25519.js';
import { concatBytes } from '../bytes.js';

ed.hashes.sha512 = sha512;

export const nobleBackend: Ed25519Backend = {
  name: 'noble',
  publicKey(seed) {
    return ed.getPublicKey(seed);
  },
  sign(seed, message) {
    return ed.sign(message, seed);
  },
  verify(publicKey, message, signature) {
    // RFC 8032 §5.1.7, cofactorless, compared on the encoding of R — the check OpenSSL makes.
    let A: ed.Point;
    try {
      A = ed.Point.fromBytes(publicKey, false);
    } catch {
      return false;
    }
    const r = signature.subarray(0, 32);
    const s = leToBigInt(signature.subarray(32, 64), false);
    const k = leToBigInt(sha512(concatBytes([r, publicKey, message])), false) % L;
    const sB = s === 0n ? ed.Point.ZERO : ed.Point.BASE.multiply(s, false);
    const kA = k === 0n ? ed.Point.ZERO : A.multiply(k, false);
    const rPrime = sB.subtract(kA);
    return equalBytes(rPrime.toBytes(), r);
  },
};

function equalBytes(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  let d = 0;
  for (let i = 0; i < a.length; i++) d |= a[i]! ^ b[i]!;
  return d === 0;
}
