import { test, describe } from 'node:test';
import { strict as assert } from 'node:assert';
import fc from 'fast-check';
import { sha256 } from '@noble/hashes/sha2.js';
import {
  CompactRange,
  consistencyProof,
  inclusionProof,
  memoryNodeSource,
  rootAt,
  rootFromConsistencyProof,
  rootFromInclusionProof,
  subtreeRoot,
  verifyConsistency,
  verifyInclusion,
  type NodeSource,
} from '../../../shared/merkle/index.js';
import { WitnessError } from '../../../shared/errors.js';

const hex = (s: string): Uint8Array => new Uint8Array(Buffer.from(s, 'hex'));
const toHex = (b: Uint8Array): string => Buffer.from(b).toString('hex');
const b64 = (b: Uint8Array): string => Buffer.from(b).toString('base64');
const code = (c: string) => (e: unknown) => e instanceof WitnessError && e.code === c;
const oneOf = (...codes: string[]) => (e: unknown) => e instanceof WitnessError && codes.includes(e.code);
const flipBit = (b: Uint8Array, bit: number): Uint8Array => {
  const out = new Uint8Array(b);
  out[Math.floor(bit / 8) % out.length]! ^= 1 << bit % 8;
  return out;
};

// ── an independent reference: the RFC 9162 recursions written out, hashed with @noble/hashes ──
const prefixed = (prefix: number, ...parts: Uint8Array[]): Uint8Array => {
  const out = new Uint8Array(1 + parts.reduce((n, p) => n + p.length, 0));
  out[0] = prefix;
  parts.reduce((at, p) => (out.set(p, at), at + p.length), 1);
  return out;
};
const refLeaf = (data: Uint8Array): Uint8Array => sha256(prefixed(0, data));
const refNode = (l: Uint8Array, r: Uint8Array): Uint8Array => sha256(prefixed(1, l, r));
/** k of RFC 9162 §2.1.1, by doubling (no bit tricks shared with the code under test). */
const splitOf = (n: number): number => {
  let k = 1;
  while (k * 2 < n) k *= 2;
  return k;
};
/** MTH(D[begin:end]) of some tree. */
type Mth = (begin: number, end: number) => Uint8Array;
const listMth =
  (leaves: readonly Uint8Array[]): Mth =>
  (begin, end) => {
    const rec = (b: number, e: number): Uint8Array => {
      if (e - b === 1) return leaves[b]!;
      const k = splitOf(e - b);
      return refNode(rec(b, b + k), rec(b + k, e));
    };
    return end === begin ? sha256(new Uint8Array(0)) : rec(begin, end);
  };
/** RFC 9162 §2.1.3.1 PATH(m, D[begin:end]), m absolute. */
function refPath(m: number, begin: number, end: number, mth: Mth): Uint8Array[] {
  if (end - begin <= 1) return [];
  const k = splitOf(end - begin);
  return m < begin + k
    ? [...refPath(m, begin, begin + k, mth), mth(begin + k, end)]
    : [...refPath(m, begin + k, end, mth), mth(begin, begin + k)];
}
/** RFC 9162 §2.1.4.1 SUBPROOF(m, D[begin:end], b), m absolute. */
function refSubproof(m: number, begin: number, end: number, mth: Mth, b: boolean): Uint8Array[] {
  if (m === end) return b ? [] : [mth(begin, end)];
  const k = splitOf(end - begin);
  return m <= begin + k
    ? [...refSubproof(m, begin, begin + k, mth, b), mth(begin + k, end)]
    : [...refSubproof(m, begin + k, end, mth, false), mth(begin, begin + k)];
}
const leavesFor = (seed: number, n: number): Uint8Array[] =>
  Array.from({ length: n }, (_, i) => refLeaf(new TextEncoder().encode(`leaf ${seed}/${i}`)));

// ── the 8-leaf reference tree: transparency-dev/merkle testonly (Apache-2.0) ──────────────────
const LEAVES = ['', '00', '10', '2021', '3031', '40414243', '5051525354555657', '606162636465666768696a6b6c6d6e6f'].map(hex);
const LEAF_HASHES = LEAVES.map(refLeaf);
const ROOTS = [
  'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855',
  '6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d',
  'fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125',
  'aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77',
  'd37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7',
  '4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4',
  '76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef',
  'ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c',
  '5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328',
];
// testonly/reference_test.go TestRefInclusionProof and TestRefConsistencyProof.
const REF_INCLUSION: Array<{ index: number; size: number; want: string[] }> = [
  { index: 0, size: 1, want: [] },
  { index: 0, size: 2, want: ['96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7'] },
  { index: 1, size: 2, want: ['6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d'] },
  { index: 2, size: 3, want: ['fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125'] },
  {
    index: 1,
    size: 5,
    want: [
      '6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d',
      '5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e',
      'bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b',
    ],
  },
  {
    index: 0,
    size: 8,
    want: [
      '96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7',
      '5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e',
      '6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4',
    ],
  },
  {
    index: 5,
    size: 8,
    want: [
      'bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b',
      'ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0',
      'd37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7',
    ],
  },
];
const REF_CONSISTENCY: Array<{ size1: number; size2: number; want: string[] }> = [
  { size1: 1, size2: 1, want: [] },
  {
    size1: 1,
    size2: 8,
    want: [
      '96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7',
      '5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e',
      '6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4',
    ],
  },
  {
    size1: 2,
    size2: 5,
    want: ['5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e', 'bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b'],
  },
  {
    size1: 6,
    size2: 8,
    want: [
      '0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a',
      'ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0',
      'd37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7',
    ],
  },
];

describe('known answers on the 8-leaf reference tree', () => {
  test('rootAt(0..8)', async () => {
    for (let size = 0; size <= 8; size++) {
      assert.equal(toHex(await rootAt(size, memoryNodeSource(LEAF_HASHES.slice(0, size)))), ROOTS[size], `size ${size}`);
    }
  });

  test('inclusion proofs of transparency-dev TestRefInclusionProof, and they verify', async () => {
    for (const { index, size, want } of REF_INCLUSION) {
      const proof = await inclusionProof(index, size, memoryNodeSource(LEAF_HASHES));
      assert.deepEqual(proof.map(toHex), want, `${index}:${size}`);
      verifyInclusion(index, size, LEAF_HASHES[index]!, proof, hex(ROOTS[size]!));
    }
  });

  test('consistency proofs of transparency-dev TestRefConsistencyProof, and they verify', async () => {
    for (const { size1, size2, want } of REF_CONSISTENCY) {
      const proof = await consistencyProof(size1, size2, memoryNodeSource(LEAF_HASHES));
      assert.deepEqual(proof.map(toHex), want, `${size1}:${size2}`);
      verifyConsistency(size1, size2, proof, hex(ROOTS[size1]!), hex(ROOTS[size2]!));
    }
  });

  test('subtreeRoot of aligned ranges is the MTH of the range', async () => {
    const source = memoryNodeSource(LEAF_HASHES);
    const mth = listMth(LEAF_HASHES);
    for (const [b, e] of [[0, 8], [0, 7], [4, 7], [4, 8], [4, 6], [6, 7], [2, 4], [0, 3]] as const) {
      assert.deepEqual(await subtreeRoot(b, e, source), mth(b, e), `[${b}, ${e})`);
    }
    await assert.rejects(subtreeRoot(1, 3, source), code('WITNESS_ERR_INVALID_ARGUMENT'));
    await assert.rejects(subtreeRoot(2, 7, source), code('WITNESS_ERR_INVALID_ARGUMENT'));
    await assert.rejects(subtreeRoot(3, 3, source), code('WITNESS_ERR_INVALID_ARGUMENT'));
  });
});

describe('properties against the RFC 9162 recursions (sizes 1..300)', () => {
  const tree = fc.record({ size: fc.integer({ min: 1, max: 300 }), seed: fc.nat(), pick: fc.nat() });

  test('inclusion proofs: every index verifies against the MTH; a sampled one equals PATH(m, D_n)', async () => {
    await fc.assert(
      fc.asyncProperty(tree, async ({ size, seed, pick }) => {
        const leaves = leavesFor(seed, size);
        const source = memoryNodeSource(leaves);
        const mth = listMth(leaves);
        const root = mth(0, size);
        assert.deepEqual(await rootAt(size, source), root);
        for (let index = 0; index < size; index++) {
          const proof = await inclusionProof(index, size, source);
          verifyInclusion(index, size, leaves[index]!, proof, root);
          if (index === pick % size) assert.deepEqual(proof, refPath(index, 0, size, mth));
        }
      }),
      { numRuns: 200 },
    );
  });

  test('consistency proofs: every size1 <= size2 verifies; a sampled one equals PROOF(m, D_n)', async () => {
    await fc.assert(
      fc.asyncProperty(tree, async ({ size, seed, pick }) => {
        const leaves = leavesFor(seed, size);
        const source = memoryNodeSource(leaves);
        const mth = listMth(leaves);
        const root2 = mth(0, size);
        // Prefix roots from the compact range (itself checked against the MTH in compact-range.test.ts).
        const range = new CompactRange();
        const sample = 1 + (pick % size);
        for (let size1 = 1; size1 <= size; size1++) {
          range.append(leaves[size1 - 1]!);
          const proof = await consistencyProof(size1, size, source);
          verifyConsistency(size1, size, proof, range.root(), root2);
          assert.deepEqual(rootFromConsistencyProof(size1, size, proof, range.root()), root2);
          if (size1 === sample) {
            assert.deepEqual(range.root(), mth(0, size1));
            assert.deepEqual(proof, refSubproof(size1, 0, size, mth, true));
          }
        }
      }),
      { numRuns: 200 },
    );
  });
});

describe('one-bit mutations and other damage are rejected (inclusion)', () => {
  const input = fc.record({ size: fc.integer({ min: 1, max: 300 }), seed: fc.nat(), pick: fc.nat(), bit: fc.nat({ max: 255 }) });
  const setup = async ({ size, seed, pick }: { size: number; seed: number; pick: number }) => {
    const leaves = leavesFor(seed, size);
    const index = pick % size;
    const proof = await inclusionProof(index, size, memoryNodeSource(leaves));
    return { leaves, index, proof, root: listMth(leaves)(0, size) };
  };

  test('flipping any bit of any proof hash, of the leaf hash or of the root: PROOF_ROOT_MISMATCH', async () => {
    await fc.assert(
      fc.asyncProperty(input, async (args) => {
        const { leaves, index, proof, root } = await setup(args);
        const { size, bit } = args;
        const leaf = leaves[index]!;
        for (let i = 0; i < proof.length; i++) {
          const bad = proof.map((h, j) => (j === i ? flipBit(h, bit) : h));
          assert.throws(() => verifyInclusion(index, size, leaf, bad, root), code('WITNESS_ERR_PROOF_ROOT_MISMATCH'));
        }
        assert.throws(() => verifyInclusion(index, size, flipBit(leaf, bit), proof, root), code('WITNESS_ERR_PROOF_ROOT_MISMATCH'));
        assert.throws(() => verifyInclusion(index, size, leaf, proof, flipBit(root, bit)), code('WITNESS_ERR_PROOF_ROOT_MISMATCH'));
        verifyInclusion(index, size, leaf, proof, root);
      }),
      { numRuns: 200 },
    );
  });

  test('dropping, appending or prepending a hash: PROOF_LENGTH', async () => {
    await fc.assert(
      fc.asyncProperty(input, async (args) => {
        const { leaves, index, proof, root } = await setup(args);
        const leaf = leaves[index]!;
        const extra = leaves[(index + 1) % args.size]!;
        for (let i = 0; i < proof.length; i++) {
          const dropped = proof.filter((_, j) => j !== i);
          assert.throws(() => verifyInclusion(index, args.size, leaf, dropped, root), code('WITNESS_ERR_PROOF_LENGTH'));
        }
        assert.throws(() => verifyInclusion(index, args.size, leaf, [...proof, extra], root), code('WITNESS_ERR_PROOF_LENGTH'));
        assert.throws(() => verifyInclusion(index, args.size, leaf, [extra, ...proof], root), code('WITNESS_ERR_PROOF_LENGTH'));
      }),
      { numRuns: 200 },
    );
  });

  test('any other index of the same tree: rejected (root mismatch or length)', async () => {
    await fc.assert(
      fc.asyncProperty(input, async (args) => {
        const { leaves, index, proof, root } = await setup(args);
        for (let other = 0; other < args.size; other++) {
          if (other === index) continue;
          assert.throws(
            () => verifyInclusion(other, args.size, leaves[index]!, proof, root),
            oneOf('WITNESS_ERR_PROOF_ROOT_MISMATCH', 'WITNESS_ERR_PROOF_LENGTH'),
          );
        }
      }),
      { numRuns: 100 },
    );
  });

  test('another tree size: PROOF_LENGTH where PATH has another length, PROOF_INPUT where index >= size', async () => {
    await fc.assert(
      fc.asyncProperty(input, fc.integer({ min: 0, max: 600 }), async (args, otherSize) => {
        const { leaves, index, proof, root } = await setup(args);
        if (otherSize === args.size) return;
        const leaf = leaves[index]!;
        if (otherSize <= index) {
          assert.throws(() => verifyInclusion(index, otherSize, leaf, proof, root), code('WITNESS_ERR_PROOF_INPUT'));
        } else if (refPath(index, 0, otherSize, () => leaf).length !== proof.length) {
          assert.throws(() => verifyInclusion(index, otherSize, leaf, proof, root), code('WITNESS_ERR_PROOF_LENGTH'));
        }
      }),
      { numRuns: 200 },
    );
  });

  test('a proof does not authenticate the tree size: PATH(4, D_7) also "verifies" as PATH(4, D_8) against the size-7 root', async () => {
    // Same length, same left/right pattern: only the signed checkpoint binds size to root.
    const proof = await inclusionProof(4, 7, memoryNodeSource(LEAF_HASHES));
    verifyInclusion(4, 8, LEAF_HASHES[4]!, proof, hex(ROOTS[7]!));
    assert.throws(() => verifyInclusion(4, 8, LEAF_HASHES[4]!, proof, hex(ROOTS[8]!)), code('WITNESS_ERR_PROOF_ROOT_MISMATCH'));
  });

  test('a mismatch carries expected and actual roots in base64', async () => {
    const proof = await inclusionProof(5, 8, memoryNodeSource(LEAF_HASHES));
    const wrong = flipBit(hex(ROOTS[8]!), 0);
    assert.throws(
      () => verifyInclusion(5, 8, LEAF_HASHES[5]!, proof, wrong),
      (e: unknown) =>
        e instanceof WitnessError &&
        e.code === 'WITNESS_ERR_PROOF_ROOT_MISMATCH' &&
        e.details['expected'] === b64(wrong) &&
        e.details['actual'] === b64(hex(ROOTS[8]!)),
    );
  });
});

describe('one-bit mutations and other damage are rejected (consistency)', () => {
  const input = fc
    .record({ size2: fc.integer({ min: 2, max: 300 }), seed: fc.nat(), pick: fc.nat(), bit: fc.nat({ max: 255 }) })
    .map((r) => ({ ...r, size1: 1 + (r.pick % (r.size2 - 1)) })); // 1 <= size1 < size2
  const setup = async ({ size1, size2, seed }: { size1: number; size2: number; seed: number }) => {
    const leaves = leavesFor(seed, size2);
    const mth = listMth(leaves);
    return { leaves, proof: await consistencyProof(size1, size2, memoryNodeSource(leaves)), root1: mth(0, size1), root2: mth(0, size2) };
  };

  test('flipping any bit of any proof hash, of root1 or of root2: PROOF_ROOT_MISMATCH', async () => {
    await fc.assert(
      fc.asyncProperty(input, async (args) => {
        const { proof, root1, root2 } = await setup(args);
        const { size1, size2, bit } = args;
        verifyConsistency(size1, size2, proof, root1, root2);
        for (let i = 0; i < proof.length; i++) {
          const bad = proof.map((h, j) => (j === i ? flipBit(h, bit) : h));
          assert.throws(() => verifyConsistency(size1, size2, bad, root1, root2), code('WITNESS_ERR_PROOF_ROOT_MISMATCH'));
        }
        assert.throws(() => verifyConsistency(size1, size2, proof, flipBit(root1, bit), root2), code('WITNESS_ERR_PROOF_ROOT_MISMATCH'));
        assert.throws(() => verifyConsistency(size1, size2, proof, root1, flipBit(root2, bit)), code('WITNESS_ERR_PROOF_ROOT_MISMATCH'));
        assert.throws(() => verifyConsistency(size1, size2, proof, root2, root1), code('WITNESS_ERR_PROOF_ROOT_MISMATCH'));
      }),
      { numRuns: 200 },
    );
  });

  test('dropping, appending or prepending a hash: PROOF_LENGTH', async () => {
    await fc.assert(
      fc.asyncProperty(input, async (args) => {
        const { proof, root1, root2 } = await setup(args);
        const { size1, size2 } = args;
        for (let i = 0; i < proof.length; i++) {
          const dropped = proof.filter((_, j) => j !== i);
          assert.throws(() => verifyConsistency(size1, size2, dropped, root1, root2), code('WITNESS_ERR_PROOF_LENGTH'));
        }
        assert.throws(() => verifyConsistency(size1, size2, [...proof, root1], root1, root2), code('WITNESS_ERR_PROOF_LENGTH'));
        assert.throws(() => verifyConsistency(size1, size2, [root1, ...proof], root1, root2), code('WITNESS_ERR_PROOF_LENGTH'));
      }),
      { numRuns: 200 },
    );
  });

  test('another size1 or size2 with the same roots and proof: rejected', async () => {
    await fc.assert(
      fc.asyncProperty(input, fc.integer({ min: 0, max: 600 }), async (args, other) => {
        const { proof, root1, root2 } = await setup(args);
        const { size1, size2 } = args;
        const lengthFor = (s1: number, s2: number) => refSubproof(s1, 0, s2, () => root1, true).length;
        if (other !== size1) {
          const claim = () => verifyConsistency(other, size2, proof, root1, root2);
          if (other === 0 || other > size2) assert.throws(claim, code('WITNESS_ERR_PROOF_INPUT'));
          else if (other === size2) assert.throws(claim, code('WITNESS_ERR_PROOF_LENGTH'));
          else assert.throws(claim, oneOf('WITNESS_ERR_PROOF_ROOT_MISMATCH', 'WITNESS_ERR_PROOF_LENGTH'));
        }
        if (other !== size2) {
          // As for inclusion, a proof of the same shape for another size2 is not detectable
          // without the signed size; a different shape is.
          const claim = () => verifyConsistency(size1, other, proof, root1, root2);
          if (other < size1) assert.throws(claim, code('WITNESS_ERR_PROOF_INPUT'));
          else if (other === size1 || lengthFor(size1, other) !== proof.length) assert.throws(claim, code('WITNESS_ERR_PROOF_LENGTH'));
        }
      }),
      { numRuns: 200 },
    );
  });

  test('equal sizes: empty proof and equal roots verify; anything else is rejected', () => {
    const r = hex(ROOTS[5]!);
    verifyConsistency(5, 5, [], r, new Uint8Array(r));
    assert.deepEqual(rootFromConsistencyProof(5, 5, [], r), r);
    assert.throws(() => verifyConsistency(5, 5, [r], r, r), code('WITNESS_ERR_PROOF_LENGTH'));
    assert.throws(() => verifyConsistency(5, 5, [], r, flipBit(r, 77)), code('WITNESS_ERR_PROOF_ROOT_MISMATCH'));
  });
});

describe('input checks', () => {
  const h = new Uint8Array(32);

  test('inclusion: index and size out of range are PROOF_INPUT', async () => {
    for (const [index, size] of [[0, 0], [1, 1], [5, 3], [-1, 3], [0.5, 3], [0, 2 ** 53], [Number.NaN, 3], [0, Infinity]] as const) {
      assert.throws(() => rootFromInclusionProof(index, size, h, []), code('WITNESS_ERR_PROOF_INPUT'), `${index}:${size}`);
      await assert.rejects(inclusionProof(index, size, memoryNodeSource(LEAF_HASHES)), code('WITNESS_ERR_PROOF_INPUT'));
    }
  });

  test('inclusion: hashes that are not 32-byte Uint8Arrays are PROOF_INPUT', () => {
    const proof = [h, h, h];
    for (const bad of [new Uint8Array(31), new Uint8Array(33), new Uint8Array(0), null, 'x'.repeat(32), Array(32).fill(0)]) {
      const b = bad as unknown as Uint8Array;
      assert.throws(() => verifyInclusion(0, 8, b, proof, h), code('WITNESS_ERR_PROOF_INPUT'));
      assert.throws(() => verifyInclusion(0, 8, h, proof, b), code('WITNESS_ERR_PROOF_INPUT'));
      assert.throws(() => verifyInclusion(0, 8, h, [h, b, h], h), code('WITNESS_ERR_PROOF_INPUT'));
    }
    assert.throws(() => verifyInclusion(0, 1, h, null as unknown as Uint8Array[], h), code('WITNESS_ERR_PROOF_INPUT'));
  });

  test('consistency: size1 > size2, size1 = 0 and bad hashes are PROOF_INPUT', async () => {
    for (const [s1, s2] of [[2, 1], [1, 0], [0, 0], [0, 5], [-1, 5], [1.5, 5], [1, 2 ** 53]] as const) {
      assert.throws(() => verifyConsistency(s1, s2, [], h, h), code('WITNESS_ERR_PROOF_INPUT'), `${s1}:${s2}`);
    }
    assert.throws(() => verifyConsistency(1, 2, [h], new Uint8Array(31), h), code('WITNESS_ERR_PROOF_INPUT'));
    assert.throws(() => verifyConsistency(1, 2, [h], h, new Uint8Array(33)), code('WITNESS_ERR_PROOF_INPUT'));
    assert.throws(() => verifyConsistency(1, 2, [new Uint8Array(1)], h, h), code('WITNESS_ERR_PROOF_INPUT'));
    assert.throws(() => verifyConsistency(1, 1, [], new Uint8Array(12), new Uint8Array(12)), code('WITNESS_ERR_PROOF_INPUT'));
    await assert.rejects(consistencyProof(3, 2, memoryNodeSource(LEAF_HASHES)), code('WITNESS_ERR_PROOF_INPUT'));
  });

  test('consistency generation follows transparency-dev for size1 = 0 and size1 = size2: empty proof', async () => {
    assert.deepEqual(await consistencyProof(0, 5, memoryNodeSource(LEAF_HASHES)), []);
    assert.deepEqual(await consistencyProof(0, 0, memoryNodeSource([])), []);
    assert.deepEqual(await consistencyProof(5, 5, memoryNodeSource(LEAF_HASHES)), []);
  });

  test('memoryNodeSource refuses nodes beyond its leaves and bad leaves, and answers copies', async () => {
    const source = memoryNodeSource(LEAF_HASHES.slice(0, 5));
    await assert.rejects(source(0, 5), code('WITNESS_ERR_INVALID_ARGUMENT'));
    await assert.rejects(source(1, 2), code('WITNESS_ERR_INVALID_ARGUMENT'));
    await assert.rejects(source(3, 0), code('WITNESS_ERR_INVALID_ARGUMENT'));
    await assert.rejects(source(-1, 0), code('WITNESS_ERR_INVALID_ARGUMENT'));
    (await source(2, 0)).fill(0);
    assert.equal(toHex(await source(2, 0)), ROOTS[4]);
    assert.throws(() => memoryNodeSource([new Uint8Array(31)]), code('WITNESS_ERR_INVALID_ARGUMENT'));
  });

  test('a source answering something other than 32 bytes is INVALID_ARGUMENT', async () => {
    const bad: NodeSource = async () => new Uint8Array(31);
    await assert.rejects(rootAt(3, bad), code('WITNESS_ERR_INVALID_ARGUMENT'));
    await assert.rejects(inclusionProof(0, 3, bad), code('WITNESS_ERR_INVALID_ARGUMENT'));
  });
});

// ── big trees: a sparse tree whose leaves are all equal except a few, so any perfect subtree
// hash is cheap (all-default subtrees share one hash per level) yet the tree is a real Merkle
// tree, consistent at every node. It counts the source calls and checks each is complete. ──────
class SparseTree {
  readonly #special: number[];
  readonly #defaults: Uint8Array[] = [refLeaf(new TextEncoder().encode('default'))];
  readonly #memo = new Map<string, Uint8Array>();
  calls = 0;

  constructor(
    readonly size: number,
    special: number[],
  ) {
    this.#special = [...new Set(special)].filter((i) => i >= 0 && i < size).sort((a, b) => a - b);
  }

  leaf(index: number): Uint8Array {
    return this.node(0, index);
  }

  node(level: number, index: number): Uint8Array {
    const width = 2 ** level;
    const begin = index * width;
    if (!this.#special.some((i) => i >= begin && i < begin + width)) {
      while (this.#defaults.length <= level) {
        const d = this.#defaults[this.#defaults.length - 1]!;
        this.#defaults.push(refNode(d, d));
      }
      return this.#defaults[level]!;
    }
    if (level === 0) return refLeaf(new TextEncoder().encode(`special ${index}`));
    const key = `${level}:${index}`;
    let h = this.#memo.get(key);
    if (h === undefined) {
      h = refNode(this.node(level - 1, 2 * index), this.node(level - 1, 2 * index + 1));
      this.#memo.set(key, h);
    }
    return h;
  }

  /** RFC 9162 MTH of D[begin:end], by the RFC recursion, with perfect aligned ranges from node(). */
  mth: Mth = (begin, end) => {
    const n = end - begin;
    if (n === 0) return sha256(new Uint8Array(0));
    let level = 0;
    while (2 ** level < n) level++;
    if (2 ** level === n && begin % n === 0) return this.node(level, begin / n);
    const k = splitOf(n);
    return refNode(this.mth(begin, begin + k), this.mth(begin + k, end));
  };

  source: NodeSource = async (level, index) => {
    this.calls++;
    assert.ok((index + 1) * 2 ** level <= this.size, `source asked for incomplete node (${level}, ${index}) of a tree of ${this.size}`);
    return new Uint8Array(this.node(level, index));
  };
}

describe('proofs ask the source for O(log n) nodes, also beyond 2^32 leaves', () => {
  const N = 1_000_000;
  const bound = 2 * Math.log2(N) + 2;

  test(`inclusion in a tree of ${N}: ≤ 2·log2(n) + 2 calls, equal to PATH, verifying`, async () => {
    const indexes = [0, 1, 2, 3, 262_143, 499_999, 524_287, 524_288, 786_431, 999_935, 999_998, 999_999];
    const tree = new SparseTree(N, [...indexes, 7, 524_289, 999_000]);
    const root = tree.mth(0, N);
    let worst = 0;
    for (const index of indexes) {
      tree.calls = 0;
      const proof = await inclusionProof(index, N, tree.source);
      worst = Math.max(worst, tree.calls);
      assert.ok(tree.calls <= bound, `index ${index}: ${tree.calls} calls`);
      assert.deepEqual(proof, refPath(index, 0, N, tree.mth), `index ${index}`);
      verifyInclusion(index, N, tree.leaf(index), proof, root);
    }
    assert.ok(worst > 0);
  });

  test(`inclusion at random indexes of random sizes up to ${N}: within the bound`, async () => {
    await fc.assert(
      fc.asyncProperty(fc.integer({ min: 2, max: N }), fc.nat(), async (size, pick) => {
        const index = pick % size;
        const tree = new SparseTree(size, [index, index + 1, size - 1]);
        const proof = await inclusionProof(index, size, tree.source);
        assert.ok(tree.calls <= 2 * Math.log2(size) + 2, `${index}/${size}: ${tree.calls} calls`);
        verifyInclusion(index, size, tree.leaf(index), proof, tree.mth(0, size));
      }),
      { numRuns: 200 },
    );
  });

  test(`consistency in a tree of ${N}: ≤ 2·log2(n) + 2 calls, equal to PROOF, verifying`, async () => {
    const sizes1 = [1, 2, 3, 1000, 123_457, 262_144, 524_287, 524_288, 524_289, 999_999];
    const tree = new SparseTree(N, [...sizes1.map((s) => s - 1), ...sizes1, N - 1]);
    const root2 = tree.mth(0, N);
    for (const size1 of sizes1) {
      tree.calls = 0;
      const proof = await consistencyProof(size1, N, tree.source);
      assert.ok(tree.calls <= bound, `size1 ${size1}: ${tree.calls} calls`);
      assert.deepEqual(proof, refSubproof(size1, 0, N, tree.mth, true), `size1 ${size1}`);
      verifyConsistency(size1, N, proof, tree.mth(0, size1), root2);
    }
  });

  test(`consistency between random sizes up to ${N}: within the bound`, async () => {
    await fc.assert(
      fc.asyncProperty(fc.integer({ min: 2, max: N }), fc.nat(), async (size2, pick) => {
        const size1 = 1 + (pick % (size2 - 1));
        const tree = new SparseTree(size2, [size1 - 1, size1, size2 - 1]);
        const proof = await consistencyProof(size1, size2, tree.source);
        assert.ok(tree.calls <= 2 * Math.log2(size2) + 2, `${size1}/${size2}: ${tree.calls} calls`);
        verifyConsistency(size1, size2, proof, tree.mth(0, size1), tree.mth(0, size2));
      }),
      { numRuns: 200 },
    );
  });

  test('size 2^33 + 5, index 2^32 + 1: the proof leads to rootAt, to the MTH and to the compact range root', async () => {
    const size = 2 ** 33 + 5;
    const index = 2 ** 32 + 1;
    const tree = new SparseTree(size, [index - 1, index, index + 1, 2 ** 32 - 1, 2 ** 33 - 1, 2 ** 33, size - 1]);
    const proof = await inclusionProof(index, size, tree.source);
    assert.ok(tree.calls <= 2 * Math.log2(size) + 2, `${tree.calls} calls`);
    assert.equal(proof.length, 34); // 33 levels inside the left 2^33 subtree + MTH(D[2^33 : 2^33 + 5])
    assert.deepEqual(proof, refPath(index, 0, size, tree.mth));
    const fromProof = rootFromInclusionProof(index, size, tree.leaf(index), proof);
    tree.calls = 0;
    const root = await rootAt(size, tree.source);
    assert.equal(tree.calls, 3); // 2^33 + 4 + 1
    assert.deepEqual(fromProof, root);
    assert.deepEqual(root, tree.mth(0, size));
    const range = new CompactRange(size, [tree.node(33, 0), tree.node(2, 2 ** 31), tree.node(0, 2 ** 33 + 4)]);
    assert.deepEqual(range.root(), root);
    verifyInclusion(index, size, tree.leaf(index), proof, root);
    assert.throws(() => verifyInclusion(index + 1, size, tree.leaf(index), proof, root), code('WITNESS_ERR_PROOF_ROOT_MISMATCH'));
  });

  test('beyond 2^32: inclusion of the last leaves and consistency from 2^32 + 3 to 2^33 + 5', async () => {
    const size = 2 ** 33 + 5;
    const size1 = 2 ** 32 + 3;
    const tree = new SparseTree(size, [size1 - 1, size1, 2 ** 33, size - 2, size - 1]);
    const root = tree.mth(0, size);
    for (const index of [size - 1, size - 2, 2 ** 33, size1 - 1]) {
      const proof = await inclusionProof(index, size, tree.source);
      verifyInclusion(index, size, tree.leaf(index), proof, root);
    }
    tree.calls = 0;
    const proof = await consistencyProof(size1, size, tree.source);
    assert.ok(tree.calls <= 2 * Math.log2(size) + 2, `${tree.calls} calls`);
    assert.deepEqual(proof, refSubproof(size1, 0, size, tree.mth, true));
    verifyConsistency(size1, size, proof, tree.mth(0, size1), root);
    assert.throws(() => verifyConsistency(size1 + 1, size, proof, tree.mth(0, size1), root), oneOf('WITNESS_ERR_PROOF_ROOT_MISMATCH', 'WITNESS_ERR_PROOF_LENGTH'));
  });
});
