/**
 * Proof verification: compute, then compare (transparency-dev/merkle `proof/verify.go`).
 *
 * `rootFrom…` recompute the root a proof leads to; `verify…` compare it with a root the caller
 * trusts — one from a *signed* checkpoint, never one that arrived with the proof.
 *
 * Errors: WITNESS_ERR_PROOF_INPUT for out-of-range sizes or indexes and for anything that is not a
 * HASH_SIZE-byte Uint8Array where a hash belongs; WITNESS_ERR_PROOF_LENGTH when the proof has more
 * or fewer hashes than (index, size) or (size1, size2) call for; WITNESS_ERR_PROOF_ROOT_MISMATCH
 * with `details.expected` and `details.actual` (base64) when the computed root differs.
 */
import { WitnessError } from '../errors.js';
import { HASH_SIZE, nodeHash } from './hash.js';
import { isCount, popcount, trailingZeros } from './compact-range.js';

/**
 * The root of a tree of `size` leaves in which leaf `index` has hash `leafHash` and audit path
 * `proof` — RFC 9162 §2.1.3.2. Requires 0 <= index < size.
 */
export function rootFromInclusionProof(index: number, size: number, leafHash: Uint8Array, proof: readonly Uint8Array[]): Uint8Array {
  expectCount(index, 'index');
  expectCount(size, 'size');
  if (index >= size) throw proofInput(`index ${index} is not below tree size ${size}`, { index, size });
  expectHash(leafHash, 'leafHash');
  const { inner, border } = decomposeInclusionProof(index, size);
  const path = expectProof(proof, inner + border, { index, size });
  let hash = chainInner(leafHash, path, 0, inner, index);
  hash = chainBorderRight(hash, path, inner);
  return hash;
}

/** Throws unless `proof` shows leaf `index` with hash `leafHash` in the tree of `size` leaves with root `root`. */
export function verifyInclusion(index: number, size: number, leafHash: Uint8Array, proof: readonly Uint8Array[], root: Uint8Array): void {
  expectHash(root, 'root');
  const computed = rootFromInclusionProof(index, size, leafHash, proof);
  if (!equalBytes(computed, root)) throw rootMismatch('inclusion proof', root, computed, { index, size });
}

/**
 * The root of the tree of `size2` leaves that `proof` shows to extend the tree of `size1` leaves
 * with root `root1` — RFC 9162 §2.1.4.2 — after checking that the proof also leads back to
 * `root1` (WITNESS_ERR_PROOF_ROOT_MISMATCH, `details.tree: 1`, if not).
 * Requires 0 < size1 <= size2: a proof from the empty tree proves nothing (RFC 9162 §2.1.4.1
 * defines proofs for 0 < m), so size1 = 0 is WITNESS_ERR_PROOF_INPUT, as in transparency-dev.
 * For size1 = size2 the proof must be empty and the root is root1.
 */
export function rootFromConsistencyProof(size1: number, size2: number, proof: readonly Uint8Array[], root1: Uint8Array): Uint8Array {
  expectCount(size1, 'size1');
  expectCount(size2, 'size2');
  if (size1 > size2) throw proofInput(`size1 ${size1} is greater than size2 ${size2}`, { size1, size2 });
  if (size1 === 0) throw proofInput('a consistency proof from the empty tree (size1 = 0) proves nothing', { size1, size2 });
  expectHash(root1, 'root1');
  if (size1 === size2) {
    expectProof(proof, 0, { size1, size2 });
    return new Uint8Array(root1);
  }

  // The proof is the tail of the inclusion proof of leaf size1 - 1 in the size2 tree, from the
  // level of the perfect subtree of 2^shift leaves that ends at size1 (its last node in the size1
  // tree). Its root comes first in the proof, unless it is the whole size1 tree (size1 = 2^shift),
  // whose root the verifier already holds: RFC 9162 §2.1.4.2 step 2, "if first is an exact power
  // of 2, then prepend first_hash to the consistency_path".
  const decomposed = decomposeInclusionProof(size1 - 1, size2);
  const shift = trailingZeros(size1);
  const inner = decomposed.inner - shift; // > 0 here: the size1 and size2 trees differ below the root
  const seedInProof = size1 !== 2 ** shift;
  const start = seedInProof ? 1 : 0;
  const path = expectProof(proof, start + inner + decomposed.border, { size1, size2 });
  const seed = seedInProof ? path[0]! : root1;
  const index = Math.floor((size1 - 1) / 2 ** shift); // position of the seed on level `shift`

  // RFC 9162 §2.1.4.2 step 6: fr, the size1 root, takes only the left siblings; sr, the size2
  // root, takes all of them.
  let hash1 = chainInnerRight(seed, path, start, inner, index);
  hash1 = chainBorderRight(hash1, path, start + inner);
  if (!equalBytes(hash1, root1)) throw rootMismatch('consistency proof (size1 tree)', root1, hash1, { size1, size2, tree: 1 });

  let hash2 = chainInner(seed, path, start, inner, index);
  hash2 = chainBorderRight(hash2, path, start + inner);
  return hash2;
}

/**
 * Throws unless `proof` shows the tree of size2 leaves with root `root2` to extend the tree of
 * size1 leaves with root `root1` — RFC 9162 §2.1.4.2. Requires 0 < size1 <= size2.
 */
export function verifyConsistency(size1: number, size2: number, proof: readonly Uint8Array[], root1: Uint8Array, root2: Uint8Array): void {
  expectHash(root2, 'root2');
  const computed = rootFromConsistencyProof(size1, size2, proof, root1);
  if (!equalBytes(computed, root2)) throw rootMismatch('consistency proof (size2 tree)', root2, computed, { size1, size2, tree: 2 });
}

// ── proof shape ──────────────────────────────────────────────────────────────────────────────

/**
 * Splits the audit path of leaf `index` in a tree of `size` leaves (transparency-dev
 * `decompInclProof`). `inner`: the levels below the point where the paths to `index` and to the
 * last leaf (size - 1) meet; each has a sibling on either side. `border`: the levels above it,
 * where the path runs along the right border and has a (left) sibling only where `index` has a
 * set bit. This is the RFC 9162 §2.1.3.2 loop without hashing: its `fn == sn` skips are the
 * border levels with no sibling.
 */
function decomposeInclusionProof(index: number, size: number): { inner: number; border: number } {
  let inner = 0;
  let a = index;
  let b = size - 1;
  while (a !== b) {
    a = Math.floor(a / 2);
    b = Math.floor(b / 2);
    inner++;
  }
  return { inner, border: popcount(a) };
}

/** Hashes up `count` inner levels from `seed` at position `index`: sibling right of an even index, left of an odd one. */
function chainInner(seed: Uint8Array, path: readonly Uint8Array[], from: number, count: number, index: number): Uint8Array {
  let hash = seed;
  let i = index;
  for (let p = from; p < from + count; p++) {
    hash = i % 2 === 0 ? nodeHash(hash, path[p]!) : nodeHash(path[p]!, hash);
    i = Math.floor(i / 2);
  }
  return hash;
}

/** Like chainInner, but only through left siblings: the same subtree as it was in the smaller tree. */
function chainInnerRight(seed: Uint8Array, path: readonly Uint8Array[], from: number, count: number, index: number): Uint8Array {
  let hash = seed;
  let i = index;
  for (let p = from; p < from + count; p++) {
    if (i % 2 === 1) hash = nodeHash(path[p]!, hash);
    i = Math.floor(i / 2);
  }
  return hash;
}

/** Hashes up the right border: every remaining sibling is on the left. */
function chainBorderRight(seed: Uint8Array, path: readonly Uint8Array[], from: number): Uint8Array {
  let hash = seed;
  for (let p = from; p < path.length; p++) hash = nodeHash(path[p]!, hash);
  return hash;
}

// ── input checks and errors ─────────────────────────────────────────────────────────────────

function expectCount(value: unknown, name: string): void {
  if (!isCount(value)) throw proofInput(`${name} must be a safe non-negative integer, got ${String(value)}`, { [name]: String(value) });
}

function expectHash(value: unknown, name: string): asserts value is Uint8Array {
  if (!(value instanceof Uint8Array)) throw proofInput(`${name}: expected Uint8Array of length ${HASH_SIZE}, got ${typeName(value)}`);
  if (value.length !== HASH_SIZE) {
    throw proofInput(`${name}: expected Uint8Array of length ${HASH_SIZE}, got ${value.length}`, { expected: HASH_SIZE, actual: value.length });
  }
}

/** Checks the proof is an array of exactly `want` hashes; returns it. */
function expectProof(proof: unknown, want: number, context: Record<string, unknown>): readonly Uint8Array[] {
  if (!Array.isArray(proof)) throw proofInput(`proof: expected an array of hashes, got ${typeName(proof)}`);
  if (proof.length !== want) {
    throw new WitnessError('WITNESS_ERR_PROOF_LENGTH', `proof has ${proof.length} hashes, ${want} expected`, {
      details: { ...context, expected: want, actual: proof.length },
    });
  }
  for (let i = 0; i < proof.length; i++) expectHash(proof[i], `proof[${i}]`);
  return proof as readonly Uint8Array[];
}

function proofInput(message: string, details?: Record<string, unknown>): WitnessError {
  return new WitnessError('WITNESS_ERR_PROOF_INPUT', message, details === undefined ? {} : { details });
}

function rootMismatch(what: string, expected: Uint8Array, actual: Uint8Array, context: Record<string, unknown>): WitnessError {
  const details = { ...context, expected: base64(expected), actual: base64(actual) };
  return new WitnessError('WITNESS_ERR_PROOF_ROOT_MISMATCH', `${what}: computed root ${details.actual} does not match expected ${details.expected}`, {
    details,
  });
}

/** Roots are public values: no need for a constant-time comparison. */
function equalBytes(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

function base64(bytes: Uint8Array): string {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('base64');
}

function typeName(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'array';
  return typeof v === 'object' ? (v.constructor?.name ?? 'object') : typeof v;
}
