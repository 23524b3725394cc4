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
import { EMPTY_ROOT, HASH_SIZE, hashNodeInput, nodeInput } from './hash.js';

/**
 * Called for each node of the tree that an append completes: the leaf itself (level 0, index =
 * leaf index), then each perfect subtree it closes (level k, index = its position among the
 * level-k nodes, i.e. it covers leaves [index·2^k, (index+1)·2^k)). The hash is the range's own
 * copy: store it, do not mutate it. A visitor must not call back into the range it visits.
 */
export type NodeVisitor = (level: number, index: number, hash: Uint8Array) => void;

/** popcount(size) <= 53 for every size below 2^53. */
const MAX_SUBTREES = 53;
const H = HASH_SIZE;

export class CompactRange {
  #size: number;
  /** How many perfect-subtree roots there are: popcount(#size). */
  #count: number;
  /**
   * The roots, left to right (largest first), back to back: one buffer instead of an array of
   * 32-byte arrays, so an append allocates nothing but digest strings (it used to allocate a copy
   * of the leaf and, per node, a Buffer digest and a view: see appendLeaves for the measurement).
   */
  readonly #stack: Buffer;
  readonly #stackView: DataView;
  /**
   * 0x01 || left || right: the input of the next node hash. The hash being carried up the tree
   * lives in the right half, so each level costs one 32-byte copy (the left sibling) and one hash.
   */
  readonly #node: Buffer;
  readonly #nodeView: DataView;

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
    this.#count = want;
    this.#stack = Buffer.alloc(MAX_SUBTREES * H);
    this.#stackView = view(this.#stack);
    this.#node = nodeInput();
    this.#nodeView = view(this.#node);
    // Copied in: the caller's arrays are never kept.
    hashes.forEach((h, i) => this.#stack.set(expectBytes(h, H, `CompactRange: hashes[${i}]`), i * H));
  }

  /** Number of leaves appended so far. */
  get size(): number {
    return this.#size;
  }

  /** The perfect-subtree roots, left to right (largest first): a copy, to save and restore. */
  hashes(): Uint8Array[] {
    const out: Uint8Array[] = [];
    for (let i = 0; i < this.#count; i++) out.push(new Uint8Array(this.#stack.subarray(i * H, (i + 1) * H)));
    return out;
  }

  /**
   * Appends the leaf hash (RFC 9162 §2.1.1: SHA-256(0x00 || entry)) of leaf number `size`.
   * `visit` sees every node this completes, bottom-up. If it throws, the range is left unchanged
   * (nothing is committed until every visit returned), so the append can be retried.
   * The leaf's bytes are copied: mutating `leafHash` afterwards changes nothing.
   */
  append(leafHash: Uint8Array, visit?: NodeVisitor): void {
    expectBytes(leafHash, H, 'CompactRange.append: leafHash');
    this.#checkRoom(1, 'CompactRange.append');
    this.#node.set(leafHash, 1 + H);
    this.#push(visit);
  }

  /**
   * The ledger's fast path (internal: not re-exported by shared/merkle/index.ts): appends the
   * `count` leaf hashes stored back to back in `leaves` from byte `offset`, with no per-leaf
   * validation, copy into a fresh array, or callback. When `tiles` is given, each completed
   * interior node whose level is a positive multiple of `tiles.every` is passed to
   * `tiles.visit` as a view valid only during the call (copy it to keep it); the visitor must not
   * throw. Measured (200,000 leaves, one run, loaded bench machine): 0.88 µs per leaf, against
   * 0.94 µs through append() and 2.16 µs through the append() of an array of 32-byte arrays with a
   * Buffer digest per node that this class had before.
   */
  appendLeaves(leaves: Buffer, offset: number, count: number, tiles?: { every: number; visit: (level: number, index: number, hash: Buffer) => void }): void {
    if (!Number.isSafeInteger(offset) || !Number.isSafeInteger(count) || offset < 0 || count < 0 || offset + count * H > leaves.length) {
      throw new WitnessError('WITNESS_ERR_INVALID_ARGUMENT', `CompactRange.appendLeaves: ${count} leaves at byte ${offset} do not fit in ${leaves.length} bytes`);
    }
    this.#checkRoom(count, 'CompactRange.appendLeaves');
    const node = this.#node;
    const nodeView = this.#nodeView;
    const stackView = this.#stackView;
    const src = view(leaves);
    const every = tiles?.every ?? 0;
    let size = this.#size;
    let top = this.#count;
    for (let k = 0, at = offset; k < count; k++, at += H) {
      copyHash(src, at, nodeView, 1 + H);
      // An odd index is a right child: its left sibling is complete and is the last subtree root.
      let index = size;
      let level = 0;
      while (index % 2 === 1) {
        top--;
        copyHash(stackView, top * H, nodeView, 1);
        hashNodeInput(node);
        level++;
        index = (index - 1) / 2;
        if (every > 0 && level % every === 0) tiles!.visit(level, index, node.subarray(1 + H));
      }
      copyHash(nodeView, 1 + H, stackView, top * H);
      top++;
      size++;
    }
    this.#size = size;
    this.#count = top;
  }

  /**
   * MTH(D[0:size]) — RFC 9162 §2.1.1 — or EMPTY_ROOT for size 0.
   * The RFC splits at k, the largest power of two below n, which is always the largest remaining
   * subtree: so MTH is the subtree roots folded right to left, HASH(0x01 || left || acc).
   */
  root(): Uint8Array {
    const n = this.#count;
    if (n === 0) return new Uint8Array(EMPTY_ROOT);
    const node = this.#node;
    copyHash(this.#stackView, (n - 1) * H, this.#nodeView, 1 + H);
    for (let i = n - 2; i >= 0; i--) {
      copyHash(this.#stackView, i * H, this.#nodeView, 1);
      hashNodeInput(node);
    }
    return new Uint8Array(node.subarray(1 + H));
  }

  #checkRoom(count: number, what: string): void {
    if (this.#size + count > Number.MAX_SAFE_INTEGER) {
      throw new WitnessError('WITNESS_ERR_INVALID_ARGUMENT', `${what}: size ${this.#size} cannot grow exactly`);
    }
  }

  /** Carries the leaf hash in the right half of #node up the tree (see append). */
  #push(visit: NodeVisitor | undefined): void {
    const node = this.#node;
    let level = 0;
    let index = this.#size;
    let top = this.#count;
    visit?.(level, index, new Uint8Array(node.subarray(1 + H)));
    // An odd index is a right child: its left sibling is complete and is the last subtree root.
    while (index % 2 === 1) {
      top--;
      copyHash(this.#stackView, top * H, this.#nodeView, 1);
      hashNodeInput(node);
      level++;
      index = (index - 1) / 2;
      visit?.(level, index, new Uint8Array(node.subarray(1 + H)));
    }
    // Commit only now that every visit returned: a throwing visitor leaves the range as it was.
    copyHash(this.#nodeView, 1 + H, this.#stackView, top * H);
    this.#count = top + 1;
    this.#size++;
  }
}

function view(b: Uint8Array): DataView {
  return new DataView(b.buffer, b.byteOffset, b.byteLength);
}

/**
 * Copies one 32-byte hash, as eight 32-bit words. Measured (bench machine, node 20): 26 ns, against
 * 217 ns for Buffer.copy (argument checks in JS before the memcpy) and 170 ns for
 * set(subarray()) (a view allocated per copy) — three copies per leaf made Buffer.copy ~10% of
 * `witness verify`'s main thread.
 */
function copyHash(from: DataView, fromOffset: number, to: DataView, toOffset: number): void {
  to.setUint32(toOffset, from.getUint32(fromOffset, true), true);
  to.setUint32(toOffset + 4, from.getUint32(fromOffset + 4, true), true);
  to.setUint32(toOffset + 8, from.getUint32(fromOffset + 8, true), true);
  to.setUint32(toOffset + 12, from.getUint32(fromOffset + 12, true), true);
  to.setUint32(toOffset + 16, from.getUint32(fromOffset + 16, true), true);
  to.setUint32(toOffset + 20, from.getUint32(fromOffset + 20, true), true);
  to.setUint32(toOffset + 24, from.getUint32(fromOffset + 24, true), true);
  to.setUint32(toOffset + 28, from.getUint32(fromOffset + 28, true), true);
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
