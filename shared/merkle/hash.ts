/**
 * The two hash functions of an RFC 9162 Merkle tree (SHA-256 with domain separation).
 *
 * node:crypto, not @noble/hashes: measured on this machine kind, SHA-256 of 256 B runs at
 * ≈ 680k/s through node:crypto (OpenSSL) against ≈ 380k/s through @noble/hashes, and the ledger
 * hashes every record and every interior node on its hot path. The tests cross-check both against
 * @noble/hashes, so the portable path agrees bit for bit.
 *
 * Digests are taken as 'latin1' strings and copied into place, never as 'buffer': each Buffer
 * digest is a fresh ArrayBuffer (a malloc'd backing store the GC must track and sweep), which
 * costs more than the hash itself. Measured here (bench/ledger.ts machine, node 20, one run):
 * crypto.hash of a 331 B line 0.98 µs as 'buffer' vs 0.41 µs as 'latin1'; of a 65 B node input
 * 1.18 µs ('buffer' + Uint8Array view) vs 0.51 µs ('latin1' + 32 B carved from a slab).
 * latin1 (alias 'binary', the name the typings accept for a digest) maps each byte to one code
 * unit and back, so the round trip is exact.
 */
import { createHash, hash } from 'node:crypto';
import { expectBytes } from '../errors.js';

/** Bytes in every leaf hash, node hash and root (SHA-256). */
export const HASH_SIZE = 32;

// RFC 9162 §2.1.1: leaves and interior nodes are hashed with distinct one-byte prefixes (0x00,
// 0x01), so a leaf can never be passed off as an interior node (second-preimage resistance).
const LEAF_PREFIX = Uint8Array.of(0x00);
const NODE_PREFIX = 0x01;

/**
 * MTH({}) = SHA-256() — RFC 9162 §2.1.1: the root of the empty tree.
 * Shared constant: do not mutate it (functions that return the empty root return a copy).
 */
export const EMPTY_ROOT: Uint8Array = digest(createHash('sha256'));

/** MTH({d}) = SHA-256(0x00 || d) — RFC 9162 §2.1.1: the hash of one leaf (entry) of any length. */
export function leafHash(data: Uint8Array): Uint8Array {
  expectBytes(data, undefined, 'leafHash: data');
  return digest(createHash('sha256').update(LEAF_PREFIX).update(data));
}

// One reusable 65-byte buffer for node hashes: 0x01 || left || right, hashed with the one-shot
// crypto.hash (Node ≥ 20.12; 1.33 M/s vs 0.75 M/s for createHash() with three update() calls).
// Safe to share: hash() is synchronous and nodeHash never yields between filling and hashing it.
const NODE_INPUT = Buffer.alloc(1 + 2 * HASH_SIZE);
NODE_INPUT[0] = NODE_PREFIX; // RFC 9162 §2.1.1 interior-node prefix

/**
 * SHA-256(0x01 || left || right) — RFC 9162 §2.1.1: the hash of an interior node from the hashes
 * of its two children, each exactly HASH_SIZE bytes.
 */
export function nodeHash(left: Uint8Array, right: Uint8Array): Uint8Array {
  expectBytes(left, HASH_SIZE, 'nodeHash: left');
  expectBytes(right, HASH_SIZE, 'nodeHash: right');
  NODE_INPUT.set(left, 1);
  NODE_INPUT.set(right, 1 + HASH_SIZE);
  return carve(hash('sha256', NODE_INPUT, 'binary'));
}

// Results are 32-byte Uint8Array views carved from 8 KiB slabs, so a hash costs no ArrayBuffer
// of its own (see the measurement above). A kept hash keeps its slab alive: ≤ 8 KiB per hash
// kept, and hashes are kept a few at a time (roots, proofs).
const SLAB_SIZE = 8192;
let slab = Buffer.allocUnsafeSlow(SLAB_SIZE);
let slabUsed = 0;

/** The 32 bytes of a 'latin1' digest as a Uint8Array of their own (not shared with any other). */
function carve(latin1Digest: string): Uint8Array {
  if (slabUsed === SLAB_SIZE) {
    slab = Buffer.allocUnsafeSlow(SLAB_SIZE);
    slabUsed = 0;
  }
  slab.write(latin1Digest, slabUsed, HASH_SIZE, 'latin1');
  const out = new Uint8Array(slab.buffer, slabUsed, HASH_SIZE);
  slabUsed += HASH_SIZE;
  return out;
}

// ── ledger hot paths (shared/ledger and compact-range.ts; not re-exported by index.ts) ─────────

/**
 * Leaf hash of `buf[start, end)` — SHA-256(0x00 || bytes), RFC 9162 §2.1.1 — as a 32-character
 * latin1 string, with no copy of the bytes: the 0x00 prefix is written over `buf[start - 1]` (a
 * ledger line's previous newline, or a spare byte) for the duration of the call and then
 * restored. Callers collect the strings and write them into a buffer in one go: measured here,
 * joining 3,000 digests and writing once costs ≈ 20 ns per digest against ≈ 90 ns for one
 * buf.write() per digest. Preconditions (unchecked, hot path): 1 <= start <= end <= buf.length,
 * and `buf` is not shared with another thread.
 */
export function leafDigestAt(buf: Buffer, start: number, end: number): string {
  const saved = buf[start - 1]!;
  buf[start - 1] = 0x00;
  const d = hash('sha256', buf.subarray(start - 1, end), 'binary');
  buf[start - 1] = saved;
  return d;
}

/** A 65-byte node-hash input to reuse: 0x01, then room for left and right (see hashNodeInput). */
export function nodeInput(): Buffer {
  const b = Buffer.alloc(1 + 2 * HASH_SIZE);
  b[0] = NODE_PREFIX;
  return b;
}

/**
 * `input` = 0x01 || left || right (from nodeInput()): replaces `right` with SHA-256(input), the
 * node hash (RFC 9162 §2.1.1), so that a hash carried up the tree stays in place for the next
 * level. No allocation but the digest string.
 */
export function hashNodeInput(input: Buffer): void {
  input.write(hash('sha256', input, 'binary'), 1 + HASH_SIZE, HASH_SIZE, 'latin1');
}

/**
 * A plain Uint8Array view of the digest (its Buffer owns a fresh 32-byte ArrayBuffer), so callers
 * get the type the API promises and `assert.deepStrictEqual` against Uint8Array holds.
 */
function digest(h: ReturnType<typeof createHash>): Uint8Array {
  const d = h.digest();
  return new Uint8Array(d.buffer, d.byteOffset, d.byteLength);
}
