/**
 * Proof generation (RFC 9162 §2.1.3.1 inclusion, §2.1.4.1 consistency) from a source of
 * perfect-subtree hashes.
 *
 * Every hash a proof holds is MTH of some range D[a:b] that the RFC recursion cuts out. Such a
 * range splits into at most log2(n) perfect subtrees, and along one proof only the first range
 * off the right border can be imperfect (every range below it is perfect), so a proof asks its
 * source for O(log n) nodes — at most 2·log2(n) + 2 — never for the leaves of a large range. The
 * ledger answers the source from its stored tiles (shared/ledger/tree-store.ts).
 */
import { WitnessError, expectBytes } from '../errors.js';
import { EMPTY_ROOT, HASH_SIZE, nodeHash } from './hash.js';
import { isCount, largestPowerOfTwoBelow, perfectSubtrees } from './compact-range.js';

/**
 * Returns the hash of the perfect subtree at (level, index): leaves [index·2^level,
 * (index+1)·2^level). Callers guarantee the subtree is complete (within the tree size).
 */
export type NodeSource = (level: number, index: number) => Promise<Uint8Array>;

/**
 * MTH(D[begin:end]) — RFC 9162 §2.1.1 — from the perfect subtrees the range splits into (one
 * source call each). `begin` must be a multiple of the largest of them, as for every range of the
 * RFC recursion; throws WITNESS_ERR_INVALID_ARGUMENT otherwise or for an empty range.
 */
export async function subtreeRoot(begin: number, end: number, source: NodeSource): Promise<Uint8Array> {
  const nodes = perfectSubtrees(begin, end);
  const hashes = await Promise.all(nodes.map(([level, index]) => fetchNode(source, level, index)));
  let acc = hashes[hashes.length - 1]!;
  for (let i = hashes.length - 2; i >= 0; i--) acc = nodeHash(hashes[i]!, acc);
  return acc;
}

/** MTH(D[0:size]) — RFC 9162 §2.1.1 — or a copy of EMPTY_ROOT for size 0. */
export async function rootAt(size: number, source: NodeSource): Promise<Uint8Array> {
  if (!isCount(size)) {
    throw new WitnessError('WITNESS_ERR_INVALID_ARGUMENT', `rootAt: size must be a safe non-negative integer, got ${String(size)}`);
  }
  return size === 0 ? new Uint8Array(EMPTY_ROOT) : subtreeRoot(0, size, source);
}

/**
 * PATH(index, D[0:size]) — RFC 9162 §2.1.3.1 — the audit path of leaf `index`, bottom-up.
 * Requires 0 <= index < size (WITNESS_ERR_PROOF_INPUT otherwise). Empty for a tree of one leaf.
 */
export async function inclusionProof(index: number, size: number, source: NodeSource): Promise<Uint8Array[]> {
  if (!isCount(index) || !isCount(size) || index >= size) {
    throw new WitnessError('WITNESS_ERR_PROOF_INPUT', `inclusionProof: need 0 <= index < size, got index ${index}, size ${size}`, {
      details: { index, size },
    });
  }
  // RFC 9162 §2.1.3.1, k the largest power of two below n:
  //   PATH(m, D_n) = PATH(m, D[0:k]) : MTH(D[k:n])    for m < k
  //   PATH(m, D_n) = PATH(m - k, D[k:n]) : MTH(D[0:k]) for m >= k
  // Walked from the root down, so the siblings come out top-down; the proof lists them bottom-up.
  const siblings: Array<Promise<Uint8Array>> = [];
  let begin = 0;
  let end = size;
  while (end - begin > 1) {
    const split = begin + largestPowerOfTwoBelow(end - begin);
    if (index < split) {
      siblings.push(subtreeRoot(split, end, source));
      end = split;
    } else {
      siblings.push(subtreeRoot(begin, split, source));
      begin = split;
    }
  }
  return (await Promise.all(siblings)).reverse();
}

/**
 * PROOF(size1, D[0:size2]) — RFC 9162 §2.1.4.1 — that the tree of size1 leaves is a prefix of the
 * tree of size2 leaves. Requires size1 <= size2 (WITNESS_ERR_PROOF_INPUT otherwise).
 * Like transparency-dev/merkle `proof.Consistency`, the proof is empty for size1 = size2 (the
 * roots must simply be equal) and for size1 = 0 (the RFC defines proofs for 0 < m only; an empty
 * tree is a prefix of every tree, and verifyConsistency refuses to "verify" it).
 */
export async function consistencyProof(size1: number, size2: number, source: NodeSource): Promise<Uint8Array[]> {
  if (!isCount(size1) || !isCount(size2) || size1 > size2) {
    throw new WitnessError('WITNESS_ERR_PROOF_INPUT', `consistencyProof: need 0 <= size1 <= size2, got ${size1}, ${size2}`, {
      details: { size1, size2 },
    });
  }
  if (size1 === 0 || size1 === size2) return [];
  // RFC 9162 §2.1.4.1, with b = `haveRoot1` (the verifier knows MTH(D[0:m]) of the current range):
  //   SUBPROOF(m, D_m, true)  = {}
  //   SUBPROOF(m, D_m, false) = {MTH(D_m)}
  //   SUBPROOF(m, D_n, b)     = SUBPROOF(m, D[0:k], b) : MTH(D[k:n])            for m <= k
  //   SUBPROOF(m, D_n, b)     = SUBPROOF(m - k, D[k:n], false) : MTH(D[0:k])    for m > k
  // Collected top-down like inclusionProof, then reversed.
  const parts: Array<Promise<Uint8Array>> = [];
  let begin = 0;
  let end = size2;
  let haveRoot1 = true;
  for (;;) {
    if (end === size1) {
      // m = n: the range is D[0:m] itself, a perfect subtree whenever haveRoot1 is false.
      if (!haveRoot1) parts.push(subtreeRoot(begin, end, source));
      break;
    }
    const split = begin + largestPowerOfTwoBelow(end - begin);
    if (size1 <= split) {
      parts.push(subtreeRoot(split, end, source));
      end = split;
    } else {
      parts.push(subtreeRoot(begin, split, source));
      begin = split;
      haveRoot1 = false;
    }
  }
  return (await Promise.all(parts)).reverse();
}

/**
 * A NodeSource over leaf hashes held in memory (tests, small trees): computes each perfect-subtree
 * hash from its leaves once and memoises it. Snapshots the array; answers copies. Asking for a
 * node beyond the leaves is WITNESS_ERR_INVALID_ARGUMENT.
 */
export function memoryNodeSource(leafHashes: readonly Uint8Array[]): NodeSource {
  const leaves = leafHashes.map((h, i) => new Uint8Array(expectBytes(h, HASH_SIZE, `memoryNodeSource: leafHashes[${i}]`)));
  const memo: Array<Map<number, Uint8Array>> = [];
  const node = (level: number, index: number): Uint8Array => {
    if (level === 0) return leaves[index]!;
    const row = (memo[level] ??= new Map());
    let hash = row.get(index);
    if (hash === undefined) {
      hash = nodeHash(node(level - 1, 2 * index), node(level - 1, 2 * index + 1));
      row.set(index, hash);
    }
    return hash;
  };
  return async (level, index) => {
    if (!isCount(level) || !isCount(index) || (index + 1) * 2 ** level > leaves.length) {
      throw new WitnessError(
        'WITNESS_ERR_INVALID_ARGUMENT',
        `memoryNodeSource: node (${level}, ${index}) is not a complete subtree of ${leaves.length} leaves`,
        { details: { level, index, leaves: leaves.length } },
      );
    }
    return new Uint8Array(node(level, index));
  };
}

async function fetchNode(source: NodeSource, level: number, index: number): Promise<Uint8Array> {
  return expectBytes(await source(level, index), HASH_SIZE, `NodeSource(${level}, ${index})`);
}
