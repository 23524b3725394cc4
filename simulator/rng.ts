/**
 * The simulator's only source of randomness: a small deterministic PRNG, so that the same
 * scenario seed gives the same run, byte for byte, on every machine and Node version. Never
 * Math.random (its algorithm and seed are the engine's business).
 *
 * Generator: xoshiro128** 1.1 (Blackman & Vigna, https://prng.di.unimi.it/xoshiro128starstar.c):
 * 128 bits of state, period 2^128 − 1, 32-bit outputs, passes BigCrush; with Math.imul it is a
 * handful of integer operations per number. It is not cryptographic — nothing here needs that:
 * key seeds are derived with SHA-256 directly (simulator/plan.ts), never from this generator.
 *
 * Seeding: `Rng.fromSeed(...parts)` takes the first 16 bytes of SHA-256 over the parts, each
 * written as its UTF-8 length (4 bytes, big-endian) followed by its UTF-8 bytes — an unambiguous
 * encoding, so ('ab','c') and ('a','bc') give unrelated streams — read as four little-endian
 * uint32 words. An all-zero state (the one state xoshiro cannot leave; probability 2^-128) is
 * replaced by a fixed non-zero one.
 *
 * Independent streams are made by seeding with different parts (e.g. seed, device id, purpose),
 * not by jumping, so a device's stream does not depend on how many other devices exist.
 */
import { createHash } from 'node:crypto';

const TWO_POW_32 = 4294967296;

export class Rng {
  #a: number;
  #b: number;
  #c: number;
  #d: number;

  private constructor(a: number, b: number, c: number, d: number) {
    if ((a | b | c | d) === 0) a = 0x9e3779b9;
    this.#a = a >>> 0;
    this.#b = b >>> 0;
    this.#c = c >>> 0;
    this.#d = d >>> 0;
  }

  /** A generator whose state is SHA-256 of the (length-prefixed) parts. */
  static fromSeed(...parts: string[]): Rng {
    const h = createHash('sha256');
    const len = Buffer.alloc(4);
    for (const p of parts) {
      const b = Buffer.from(p, 'utf8');
      len.writeUInt32BE(b.length, 0);
      h.update(len);
      h.update(b);
    }
    const d = h.digest();
    return new Rng(d.readUInt32LE(0), d.readUInt32LE(4), d.readUInt32LE(8), d.readUInt32LE(12));
  }

  /** A generator with the given state words (tests against the reference vectors). */
  static fromState(a: number, b: number, c: number, d: number): Rng {
    return new Rng(a, b, c, d);
  }

  /** The next 32-bit output, an integer in [0, 2^32). */
  u32(): number {
    const b = this.#b;
    const result = Math.imul(rotl(Math.imul(b, 5), 7), 9) >>> 0;
    const t = b << 9;
    this.#c ^= this.#a;
    this.#d ^= b;
    this.#b ^= this.#c;
    this.#a ^= this.#d;
    this.#c ^= t;
    this.#d = rotl(this.#d, 11);
    return result;
  }

  /** Uniform in [0, 1), with 32 bits of resolution. */
  next(): number {
    return this.u32() / TWO_POW_32;
  }

  /** Uniform in [lo, hi) (floats). */
  uniform(lo: number, hi: number): number {
    return lo + (hi - lo) * this.next();
  }

  /** A uniform integer in [lo, hi], both inclusive. The range must be at most 2^32 wide (bias ≤ range / 2^32). */
  int(lo: number, hi: number): number {
    if (!Number.isSafeInteger(lo) || !Number.isSafeInteger(hi) || hi < lo || hi - lo >= TWO_POW_32) {
      throw new RangeError(`Rng.int: bad range [${lo}, ${hi}]`);
    }
    return lo + Math.floor(this.next() * (hi - lo + 1));
  }

  /** True with probability p. */
  chance(p: number): boolean {
    return p > 0 && this.next() < p;
  }

  /** An index drawn with probability weights[i] / sum(weights). Weights are ≥ 0 with a positive sum. */
  pick(weights: readonly number[]): number {
    let total = 0;
    for (const w of weights) total += w;
    if (!(total > 0)) throw new RangeError('Rng.pick: weights must have a positive sum');
    let r = this.next() * total;
    for (let i = 0; i < weights.length; i++) {
      r -= weights[i]!;
      if (r < 0 && weights[i]! > 0) return i;
    }
    // Rounding left r a hair above zero: the last positive weight.
    for (let i = weights.length - 1; i >= 0; i--) if (weights[i]! > 0) return i;
    return 0;
  }

  /** n pseudo-random bytes. */
  bytes(n: number): Uint8Array {
    const out = new Uint8Array(n);
    let i = 0;
    for (; i + 4 <= n; i += 4) {
      const v = this.u32();
      out[i] = v & 0xff;
      out[i + 1] = (v >>> 8) & 0xff;
      out[i + 2] = (v >>> 16) & 0xff;
      out[i + 3] = v >>> 24;
    }
    if (i < n) {
      let v = this.u32();
      for (; i < n; i++, v >>>= 8) out[i] = v & 0xff;
    }
    return out;
  }
}

function rotl(x: number, k: number): number {
  return (x << k) | (x >>> (32 - k));
}
