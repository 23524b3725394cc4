import { test, describe } from 'node:test';
import { strict as assert } from 'node:assert';
import fc from 'fast-check';
import { sha256 } from '@noble/hashes/sha2.js';
import { CompactRange, memoryNodeSource } from '../../../shared/merkle/index.js';
import {
  bitLength,
  largestPowerOfTwoBelow,
  perfectSubtrees,
  popcount,
  trailingZeros,
} from '../../../shared/merkle/compact-range.js';
import { WitnessError } from '../../../shared/errors.js';

const hex = (s: string): Uint8Array => new Uint8Array(Buffer.from(s, 'hex'));
const toHex = (b: Uint8Array): string => Buffer.from(b).toString('hex');
const code = (c: string) => (e: unknown) => e instanceof WitnessError && e.code === c;

// ── an independent reference: RFC 9162 §2.1.1 written out, hashed with @noble/hashes ─────────
const prefixed = (prefix: number, ...parts: Uint8Array[]): Uint8Array => {
  const out = new Uint8Array(1 + parts.reduce((n, p) => n + p.length, 0));
  out[0] = prefix;
  parts.reduce((at, p) => (out.set(p, at), at + p.length), 1);
  return out;
};
const refLeaf = (data: Uint8Array): Uint8Array => sha256(prefixed(0, data));
const refNode = (l: Uint8Array, r: Uint8Array): Uint8Array => sha256(prefixed(1, l, r));
function refMth(leafHashes: readonly Uint8Array[]): Uint8Array {
  const n = leafHashes.length;
  if (n === 0) return sha256(new Uint8Array(0));
  if (n === 1) return leafHashes[0]!;
  let k = 1;
  while (k * 2 < n) k *= 2;
  return refNode(refMth(leafHashes.slice(0, k)), refMth(leafHashes.slice(k)));
}
const leavesFor = (seed: number, n: number): Uint8Array[] =>
  Array.from({ length: n }, (_, i) => refLeaf(new TextEncoder().encode(`leaf ${seed}/${i}`)));

// ── the 8-leaf reference tree: transparency-dev/merkle testonly/constants.go (Apache-2.0) ──────
const LEAVES = ['', '00', '10', '2021', '3031', '40414243', '5051525354555657', '606162636465666768696a6b6c6d6e6f'].map(hex);
/** RootHashes(): the root after 0..8 leaves. */
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
/** NodeHashes(): every perfect subtree, [level][index]. */
const NODE_HASHES = [
  [
    '6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d',
    '96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7',
    '0298d122906dcfc10892cb53a73992fc5b9f493ea4c9badb27b791b4127a7fe7',
    '07506a85fd9dd2f120eb694f86011e5bb4662e5c415a62917033d4a9624487e7',
    'bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b',
    '4271a26be0d8a84f0bd54c8c302e7cb3a3b5d1fa6780a40bcce2873477dab658',
    'b08693ec2e721597130641e8211e7eedccb4c26413963eee6c1e2ed16ffb1a5f',
    '46f6ffadd3d06a09ff3c5860d2755c8b9819db7df44251788c7d8e3180de8eb1',
  ],
  [
    'fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125',
    '5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e',
    '0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a',
    'ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0',
  ],
  [
    'd37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7',
    '6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4',
  ],
  ['5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328'],
];
/** CompactTrees(): the subtree roots after 0..8 leaves, as [level, index], largest first. */
const COMPACT_TREES: Array<Array<[number, number]>> = [
  [],
  [[0, 0]],
  [[1, 0]],
  [[1, 0], [0, 2]],
  [[2, 0]],
  [[2, 0], [0, 4]],
  [[2, 0], [1, 2]],
  [[2, 0], [1, 2], [0, 6]],
  [[3, 0]],
];
const node = (level: number, index: number): string => NODE_HASHES[level]![index]!;

describe('the RFC 6962 / RFC 9162 reference tree of 8 leaves', () => {
  test('root after each append, from the empty tree', async () => {
    const range = new CompactRange();
    assert.equal(toHex(range.root()), ROOTS[0]);
    for (let i = 0; i < LEAVES.length; i++) {
      range.append(refLeaf(LEAVES[i]!));
      assert.equal(range.size, i + 1);
      assert.equal(toHex(range.root()), ROOTS[i + 1], `root after ${i + 1} leaves`);
    }
  });

  test('hashes() after each append are the compact trees of transparency-dev', () => {
    const range = new CompactRange();
    for (let size = 0; size <= LEAVES.length; size++) {
      assert.deepEqual(range.hashes().map(toHex), COMPACT_TREES[size]!.map(([l, i]) => node(l, i)), `size ${size}`);
      if (size < LEAVES.length) range.append(refLeaf(LEAVES[size]!));
    }
  });

  test('the visitor sees every perfect subtree once, bottom-up, with its hash', () => {
    const range = new CompactRange();
    const seen = new Map<string, string>();
    const perAppend: string[][] = [];
    for (const leaf of LEAVES) {
      const visits: string[] = [];
      range.append(refLeaf(leaf), (level, index, hash) => {
        const key = `${level}:${index}`;
        assert.ok(!seen.has(key), `visited ${key} twice`);
        seen.set(key, toHex(hash));
        visits.push(key);
      });
      perAppend.push(visits);
    }
    const want = new Map(NODE_HASHES.flatMap((row, level) => row.map((h, index) => [`${level}:${index}`, h] as const)));
    assert.deepEqual(seen, want);
    assert.deepEqual(perAppend[7], ['0:7', '1:3', '2:1', '3:0']);
    assert.deepEqual(perAppend[4], ['0:4']);
  });
});

describe('properties against a naive RFC 9162 MTH (sizes 0..300)', () => {
  const sizeAndSeed = fc.record({ size: fc.integer({ min: 0, max: 300 }), seed: fc.nat() });

  test('root() equals the recursive MTH, at the end and at one size on the way', () => {
    fc.assert(
      fc.property(sizeAndSeed, fc.nat(), ({ size, seed }, pick) => {
        const leaves = leavesFor(seed, size);
        const probe = size === 0 ? 0 : pick % (size + 1);
        const range = new CompactRange();
        assert.deepEqual(range.root(), refMth([]));
        leaves.forEach((leaf, i) => {
          range.append(leaf);
          if (i + 1 === probe) assert.deepEqual(range.root(), refMth(leaves.slice(0, probe)));
        });
        assert.equal(range.size, size);
        assert.equal(range.hashes().length, popcount(size));
        assert.deepEqual(range.root(), refMth(leaves));
      }),
      { numRuns: 200 },
    );
  });

  test('the visitor sees exactly the perfect subtrees, each once, with the hashes of memoryNodeSource and of the MTH of their leaves', async () => {
    await fc.assert(
      fc.asyncProperty(sizeAndSeed, async ({ size, seed }) => {
        const leaves = leavesFor(seed, size);
        const source = memoryNodeSource(leaves);
        const seen = new Map<string, Uint8Array>();
        const range = new CompactRange();
        for (const leaf of leaves) {
          range.append(leaf, (level, index, hash) => {
            const key = `${level}:${index}`;
            assert.ok(!seen.has(key), `visited ${key} twice`);
            seen.set(key, hash);
          });
        }
        let expected = 0;
        for (let level = 0; 2 ** level <= size; level++) {
          const width = 2 ** level;
          for (let index = 0; (index + 1) * width <= size; index++) {
            expected++;
            const hash = seen.get(`${level}:${index}`);
            assert.ok(hash, `node ${level}:${index} not visited`);
            assert.deepEqual(hash, refMth(leaves.slice(index * width, (index + 1) * width)));
            assert.deepEqual(hash, await source(level, index));
          }
        }
        assert.equal(seen.size, expected);
      }),
      { numRuns: 200 },
    );
  });

  test('a range restored from (size, hashes()) continues exactly like the original', () => {
    fc.assert(
      fc.property(sizeAndSeed, fc.nat(), ({ size, seed }, pick) => {
        const leaves = leavesFor(seed, size);
        const cut = pick % (size + 1);
        const whole = new CompactRange();
        for (const leaf of leaves) whole.append(leaf);
        const first = new CompactRange();
        for (const leaf of leaves.slice(0, cut)) first.append(leaf);
        const restored = new CompactRange(first.size, first.hashes());
        for (const leaf of leaves.slice(cut)) restored.append(leaf);
        assert.equal(restored.size, whole.size);
        assert.deepEqual(restored.hashes(), whole.hashes());
        assert.deepEqual(restored.root(), whole.root());
      }),
      { numRuns: 200 },
    );
  });
});

describe('state is private', () => {
  test('mutating what hashes() or root() returned, or the appended leaf, changes nothing', () => {
    const range = new CompactRange();
    const leaf = refLeaf(LEAVES[0]!);
    range.append(leaf);
    leaf.fill(0);
    range.hashes()[0]!.fill(0);
    range.root().fill(0);
    assert.equal(toHex(range.root()), ROOTS[1]);
    const empty = new CompactRange();
    empty.root().fill(0);
    assert.equal(toHex(empty.root()), ROOTS[0]);
  });

  test('a restored range copies the hashes it was given', () => {
    const a = new CompactRange();
    for (const l of LEAVES.slice(0, 3)) a.append(refLeaf(l));
    const saved = a.hashes();
    const b = new CompactRange(3, saved);
    saved[1]!.fill(0);
    assert.equal(toHex(b.root()), ROOTS[3]);
  });

  test('a visitor that throws leaves the range unchanged, and the append can be retried', () => {
    const range = new CompactRange();
    for (const l of LEAVES.slice(0, 7)) range.append(refLeaf(l));
    const before = range.hashes();
    assert.throws(
      () =>
        range.append(refLeaf(LEAVES[7]!), (level) => {
          if (level === 2) throw new Error('disk full');
        }),
      /disk full/,
    );
    assert.equal(range.size, 7);
    assert.deepEqual(range.hashes(), before);
    assert.equal(toHex(range.root()), ROOTS[7]);
    range.append(refLeaf(LEAVES[7]!));
    assert.equal(toHex(range.root()), ROOTS[8]);
  });
});

describe('input validation (WITNESS_ERR_INVALID_ARGUMENT)', () => {
  const h = new Uint8Array(32);
  test('size must be a safe non-negative integer', () => {
    for (const size of [-1, 1.5, Number.NaN, Infinity, 2 ** 53, '3' as unknown as number]) {
      assert.throws(() => new CompactRange(size, []), code('WITNESS_ERR_INVALID_ARGUMENT'), String(size));
    }
  });

  test('hashes must number popcount(size), 32 bytes each', () => {
    assert.throws(() => new CompactRange(3, [h]), code('WITNESS_ERR_INVALID_ARGUMENT'));
    assert.throws(() => new CompactRange(3, [h, h, h]), code('WITNESS_ERR_INVALID_ARGUMENT'));
    assert.throws(() => new CompactRange(4, []), code('WITNESS_ERR_INVALID_ARGUMENT'));
    assert.throws(() => new CompactRange(0, [h]), code('WITNESS_ERR_INVALID_ARGUMENT'));
    assert.throws(() => new CompactRange(3, [h, new Uint8Array(31)]), code('WITNESS_ERR_INVALID_ARGUMENT'));
    assert.throws(() => new CompactRange(1, 'x' as unknown as Uint8Array[]), code('WITNESS_ERR_INVALID_ARGUMENT'));
    assert.equal(new CompactRange(3, [h, h]).size, 3);
  });

  test('append takes a 32-byte leaf hash', () => {
    const range = new CompactRange();
    for (const bad of [new Uint8Array(31), new Uint8Array(33), null, 'x']) {
      assert.throws(() => range.append(bad as Uint8Array), code('WITNESS_ERR_INVALID_ARGUMENT'));
    }
    assert.equal(range.size, 0);
  });
});

describe('sizes beyond 2^32', () => {
  const a = refLeaf(new TextEncoder().encode('a'));
  const b = refLeaf(new TextEncoder().encode('b'));

  test('appending to a range of 2^32 leaves adds leaf 2^32 without merging', () => {
    const range = new CompactRange(2 ** 32, [a]);
    const visits: Array<[number, number]> = [];
    range.append(b, (level, index) => visits.push([level, index]));
    assert.deepEqual(visits, [[0, 2 ** 32]]);
    assert.equal(range.size, 2 ** 32 + 1);
    assert.deepEqual(range.hashes(), [a, b]);
    assert.deepEqual(range.root(), refNode(a, b));
  });

  test('appending to a range of 2^33 - 1 leaves carries through all 33 subtrees', () => {
    const hashes = Array.from({ length: 33 }, (_, i) => refLeaf(Uint8Array.of(i)));
    const range = new CompactRange(2 ** 33 - 1, hashes);
    const visits: Array<[number, number]> = [];
    range.append(b, (level, index) => visits.push([level, index]));
    assert.deepEqual(visits, Array.from({ length: 34 }, (_, k) => [k, 2 ** (33 - k) - 1]));
    let want = b;
    for (let i = 32; i >= 0; i--) want = refNode(hashes[i]!, want);
    assert.equal(range.size, 2 ** 33);
    assert.deepEqual(range.hashes(), [want]);
    assert.deepEqual(range.root(), want);
  });

  test('the root of 2^33 + 5 leaves folds three subtrees', () => {
    const [x, y, z] = [a, b, refLeaf(Uint8Array.of(9))];
    const range = new CompactRange(2 ** 33 + 5, [x, y, z]);
    assert.deepEqual(range.root(), refNode(x, refNode(y, z)));
  });

  test('the range stops at 2^53 - 1 leaves instead of losing count', () => {
    const range = new CompactRange(2 ** 53 - 2, Array.from({ length: 52 }, () => a));
    range.append(b);
    assert.equal(range.size, Number.MAX_SAFE_INTEGER);
    assert.throws(() => range.append(b), code('WITNESS_ERR_INVALID_ARGUMENT'));
    assert.equal(range.size, Number.MAX_SAFE_INTEGER);
  });
});

describe('size arithmetic (exact to 2^53, checked against BigInt)', () => {
  const big = (n: number): bigint => BigInt(n);
  const refBitLength = (n: number): number => (n === 0 ? 0 : big(n).toString(2).length);
  const refPopcount = (n: number): number => [...big(n).toString(2)].filter((c) => c === '1').length;
  const refTrailingZeros = (n: number): number => big(n).toString(2).length - 1 - big(n).toString(2).lastIndexOf('1');
  const anySize = fc.oneof(fc.nat(), fc.maxSafeNat(), fc.integer({ min: 2 ** 31, max: 2 ** 34 }));

  test('popcount, bitLength, trailingZeros, largestPowerOfTwoBelow', () => {
    fc.assert(
      fc.property(anySize, (n) => {
        assert.equal(popcount(n), refPopcount(n));
        assert.equal(bitLength(n), refBitLength(n));
        if (n > 0) assert.equal(trailingZeros(n), refTrailingZeros(n));
        if (n >= 2) {
          const k = largestPowerOfTwoBelow(n);
          assert.equal(refPopcount(k), 1);
          assert.ok(k < n && 2 * k >= n, `k = ${k} for n = ${n}`);
        }
      }),
      { numRuns: 1000 },
    );
  });

  test('edges around 2^32 and 2^53', () => {
    assert.equal(bitLength(0), 0);
    assert.equal(bitLength(1), 1);
    assert.equal(bitLength(2 ** 32 - 1), 32);
    assert.equal(bitLength(2 ** 32), 33);
    assert.equal(bitLength(2 ** 53 - 1), 53);
    assert.equal(popcount(2 ** 53 - 1), 53);
    assert.equal(popcount(2 ** 33 + 5), 3);
    assert.equal(trailingZeros(2 ** 40), 40);
    assert.equal(largestPowerOfTwoBelow(2), 1);
    assert.equal(largestPowerOfTwoBelow(3), 2);
    assert.equal(largestPowerOfTwoBelow(2 ** 33), 2 ** 32);
    assert.equal(largestPowerOfTwoBelow(2 ** 33 + 5), 2 ** 33);
    assert.equal(largestPowerOfTwoBelow(2 ** 53 - 1), 2 ** 52);
  });

  test('perfectSubtrees splits a range the way MTH does, and refuses misaligned ranges', () => {
    assert.deepEqual(perfectSubtrees(0, 13), [[3, 0], [2, 2], [0, 12]]);
    assert.deepEqual(perfectSubtrees(8, 13), [[2, 2], [0, 12]]);
    assert.deepEqual(perfectSubtrees(2, 4), [[1, 1]]);
    assert.deepEqual(perfectSubtrees(3, 4), [[0, 3]]);
    assert.deepEqual(perfectSubtrees(0, 2 ** 33 + 5), [[33, 0], [2, 2 ** 31], [0, 2 ** 33 + 4]]);
    assert.throws(() => perfectSubtrees(1, 3), code('WITNESS_ERR_INVALID_ARGUMENT'));
    assert.throws(() => perfectSubtrees(4, 12), code('WITNESS_ERR_INVALID_ARGUMENT'));
    assert.throws(() => perfectSubtrees(5, 5), code('WITNESS_ERR_INVALID_ARGUMENT'));
    assert.throws(() => perfectSubtrees(-1, 5), code('WITNESS_ERR_INVALID_ARGUMENT'));
  });
});
