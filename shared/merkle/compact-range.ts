/**
 * The append-only state of an RFC 9162 Merkle tree in O(log n) memory: the compact range [0, size)
 * (transparency-dev/merkle `compact.Range`, the "frontier" of CT logs).
 *
 * A tree of `size` leaves is the fold of one perfect subtree per set bit of `size`, largest
 * (leftmost) first: 13 = 8 + 4 + 1 leaves are MTH(D[0:8]), MTH(D[8:12]), MTH(D[12:13]). Appending
 * a leaf merges equal-sized subtrees like a binary counter carries.
 *
 * Sizes and indexes are plain numbers, exact up to 2^53. They pass 2^32 in a long-lived ledger, so
 * this file (and proof.ts, verify.ts) never applies a 32-bit bitwise operator to them: the
 * helpers below use division, remainder and Math.clz32 on 32-bit halves instead.
 */
import { WitnessError, expectBytes } from '../errors.js';
import { EMPTY_ROOT, HASH_SIZE, nodeHash } from './hash.js';

/**
 * Called for each node of the tree that an append completes: the leaf itself (level 0, index =
 * leaf index), then each perfect subtree it closes (level k, index = its position among the
 * level-k nodes, i.e. it covers leaves [index·2^k, (index+1)·2^k)). The hash is the range's own
 * copy: store it, do not mutate it.
 */
export type NodeVisitor = (level: number, index: number, hash: Uint8Array) => void;

export class CompactRange {
  #size: number;
  /** Roots of the perfect subtrees, left to right (largest first); popcount(#size) of them. */
  readonly #hashes: Uint8Array[];

  /**
   * An empty range, or one restored from saved state: `hashes` are the perfect-subtree roots of
   * [0, size) as returned by hashes(), exactly popcount(size) of HASH_SIZE bytes each.
   * Throws WITNESS_ERR_INVALID_ARGUMENT otherwise.
   */
  constructor(size = 0, hashes: readonly Uint8Array[] = []) {
    if (!isCount(size)) {
      throw new WitnessError('WITNESS_ERR_INVALID_ARGUMENT', `CompactRange: size must be a safe non-negative integer, got ${String(size)}`);
    }
    if (!Array.isArray(hashes)) {
      throw new WitnessError('WITNESS_ERR_INVALID_ARGUMENT', 'CompactRange: hashes must be an array');
    }
    const want = popcount(size);
    if (hashes.length !== want) {
      throw new WitnessError(
        'WITNESS_ERR_INVALID_ARGUMENT',
        `CompactRange: a range of size ${size} holds ${want} subtree hashes, got ${hashes.length}`,
        { details: { size, expected: want, actual: hashes.length } },
      );
    }
    this.#size = size;
    this.#hashes = hashes.map((h, i) => new Uint8Array(expectBytes(h, HASH_SIZE, `CompactRange: hashes[${i}]`)));
  }

  /** Number of leaves appended so far. */
  get size(): number {
    return this.#size;
  }

  /** The perfect-subtree roots, left to right (largest first): a copy, to save and restore. */
  hashes(): Uint8Array[] {
    return this.#hashes.map((h) => new Uint8Array(h));
  }

  /**
   * Appends the leaf hash (RFC 9162 §2.1.1: SHA-256(0x00 || entry)) of leaf number `size`.
   * `visit` sees every node this completes, bottom-up. If it throws, the range is left unchanged
   * (nothing is committed until every visit returned), so the append can be retried.
   */
  append(leafHash: Uint8Array, visit?: NodeVisitor): void {
    expectBytes(leafHash, HASH_SIZE, 'CompactRange.append: leafHash');
    if (this.#size >= Number.MAX_SAFE_INTEGER) {
      throw new WitnessError('WITNESS_ERR_INVALID_ARGUMENT', `CompactRange.append: size ${this.#size} cannot grow exactly`);
    }
    let hash: Uint8Array = new Uint8Array(leafHash);
    let level = 0;
    let index = this.#size;
    let top = this.#hashes.length;
    visit?.(level, index, hash);
    // An odd index is a right child: its left sibling is complete and is the last subtree root.
    while (index % 2 === 1) {
      top--;
      hash = nodeHash(this.#hashes[top]!, hash);
      level++;
      index = (index - 1) / 2;
      visit?.(level, index, hash);
    }
    this.#hashes.length = top;
    this.#hashes.push(hash);
    this.#size++;
  }

  /**
   * MTH(D[0:size]) — RFC 9162 §2.1.1 — or EMPTY_ROOT for size 0.
   * The RFC splits at k, the largest power of two below n, which is always the largest remaining
   * subtree: so MTH is the subtree roots folded right to left, HASH(0x01 || left || acc).
   */
  root(): Uint8Array {
    const n = this.#hashes.length;
    if (n === 0) return new Uint8Array(EMPTY_ROOT);
    let acc: Uint8Array = new Uint8Array(this.#hashes[n - 1]!);
    for (let i = n - 2; i >= 0; i--) acc = nodeHash(this.#hashes[i]!, acc);
    return acc;
  }
}

// ── size arithmetic, exact up to 2^53 (used by proof.ts and verify.ts; not re-exported) ──────

const TWO_POW_32 = 2 ** 32;

/** True for the numbers usable as tree sizes and indexes: safe, non-negative integers. */
export function isCount(n: unknown): n is number {
  return Number.isSafeInteger(n) && (n as number) >= 0;
}

/** Number of set bits of n (n a safe non-negative integer). */
export function popcount(n: number): number {
  let count = 0;
  for (let x = n; x > 0; x = Math.floor(x / 2)) count += x % 2;
  return count;
}

/** Number of bits needed to write n: 0 for 0, 1 for 1, 33 for 2^32. */
export function bitLength(n: number): number {
  // Math.clz32 sees only 32 bits: apply it to the high half when there is one.
  const high = Math.floor(n / TWO_POW_32);
  return high > 0 ? 64 - Math.clz32(high) : 32 - Math.clz32(n);
}

/** Number of trailing zero bits of n > 0. */
export function trailingZeros(n: number): number {
  let count = 0;
  for (let x = n; x % 2 === 0; x /= 2) count++;
  return count;
}

/** k of RFC 9162 §2.1.1: the largest power of two strictly below n (n >= 2). */
export function largestPowerOfTwoBelow(n: number): number {
  return 2 ** (bitLength(n - 1) - 1);
}

/**
 * The perfect subtrees [level, index] whose roots, folded right to left, give MTH(D[begin:end]):
 * one per set bit of end - begin, largest first. Each must be a node of the tree, which holds
 * when begin is a multiple of the largest one (every range the RFC 9162 recursion produces).
 * Throws WITNESS_ERR_INVALID_ARGUMENT for an empty or misaligned range.
 */
export function perfectSubtrees(begin: number, end: number): Array<[level: number, index: number]> {
  if (!isCount(begin) || !isCount(end) || begin >= end) {
    throw new WitnessError('WITNESS_ERR_INVALID_ARGUMENT', `range [${begin}, ${end}) is not a non-empty range of leaves`, {
      details: { begin, end },
    });
  }
  const out: Array<[number, number]> = [];
  let position = begin;
  while (position < end) {
    const level = bitLength(end - position) - 1;
    const width = 2 ** level;
    if (position % width !== 0) {
      throw new WitnessError(
        'WITNESS_ERR_INVALID_ARGUMENT',
        `range [${begin}, ${end}) does not split into perfect subtrees: ${width} leaves at ${position} are not aligned`,
        { details: { begin, end } },
      );
    }
    out.push([level, position / width]);
    position += width;
  }
  return out;
}
