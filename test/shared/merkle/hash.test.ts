import { test, describe } from 'node:test';
import { strict as assert } from 'node:assert';
import fc from 'fast-check';
import { sha256 } from '@noble/hashes/sha2.js';
import { EMPTY_ROOT, HASH_SIZE, leafHash, nodeHash } from '../../../shared/merkle/index.js';
import { WitnessError } from '../../../shared/errors.js';

const hex = (s: string): Uint8Array => new Uint8Array(Buffer.from(s, 'hex'));
const toHex = (b: Uint8Array): string => Buffer.from(b).toString('hex');
const code = (c: string) => (e: unknown) => e instanceof WitnessError && e.code === c;

// Known answers from transparency-dev/merkle rfc6962/rfc6962_test.go and testonly/constants.go
// (the certificate-transparency C++ merkle_tree_test.cc constants), Apache-2.0.
describe('RFC 9162 §2.1.1 known answers', () => {
  test('EMPTY_ROOT is SHA-256 of the empty string', () => {
    assert.equal(toHex(EMPTY_ROOT), 'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855');
    assert.equal(EMPTY_ROOT.length, HASH_SIZE);
  });

  test('leafHash of the empty leaf and of 0x00 (leaves 0 and 1 of the reference tree)', () => {
    assert.equal(toHex(leafHash(new Uint8Array(0))), '6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d');
    assert.equal(toHex(leafHash(hex('00'))), '96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7');
  });

  test('leafHash of "L123456" (transparency-dev rfc6962 TestRFC6962Hasher)', () => {
    assert.equal(toHex(leafHash(new TextEncoder().encode('L123456'))), '395aa064aa4c29f7010acfe3f25db9485bbd4b91897b6ad7ad547639252b4d56');
  });

  test('nodeHash of the two first leaves is the root of the 2-leaf reference tree', () => {
    const h = nodeHash(leafHash(new Uint8Array(0)), leafHash(hex('00')));
    assert.equal(toHex(h), 'fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125');
  });

  // The RFC's "N123"/"N456" node vector has 4-byte children, which nodeHash refuses by design.
  test('a node hash differs from the leaf hash of its children joined, and depends on their order', () => {
    const l = new Uint8Array(32).fill(0x11);
    const r = new Uint8Array(32).fill(0x22);
    const joined = new Uint8Array(64);
    joined.set(l, 0);
    joined.set(r, 32);
    assert.notEqual(toHex(nodeHash(l, r)), toHex(leafHash(joined)));
    assert.notEqual(toHex(nodeHash(l, r)), toHex(nodeHash(r, l)));
  });
});

describe('agrees with @noble/hashes (the portable path)', () => {
  test('leafHash = SHA-256(0x00 || data)', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 600 }), (data) => {
        const want = sha256(Uint8Array.of(0, ...data));
        assert.deepEqual(leafHash(data), want);
      }),
      { numRuns: 200 },
    );
  });

  test('nodeHash = SHA-256(0x01 || left || right)', () => {
    const h32 = fc.uint8Array({ minLength: 32, maxLength: 32 });
    fc.assert(
      fc.property(h32, h32, (l, r) => {
        assert.deepEqual(nodeHash(l, r), sha256(Uint8Array.of(1, ...l, ...r)));
      }),
      { numRuns: 200 },
    );
  });

  test('accepts a Buffer or a subarray view and hashes only the viewed bytes', () => {
    const big = new Uint8Array(100).map((_, i) => i);
    const view = big.subarray(10, 42);
    assert.deepEqual(nodeHash(view, Buffer.from(view)), sha256(Uint8Array.of(1, ...view, ...view)));
    assert.deepEqual(leafHash(big.subarray(5, 9)), sha256(Uint8Array.of(0, 5, 6, 7, 8)));
  });
});

describe('outputs', () => {
  test('are plain, fresh 32-byte Uint8Arrays', () => {
    const a = leafHash(hex('01'));
    const b = leafHash(hex('01'));
    assert.equal(Object.getPrototypeOf(a), Uint8Array.prototype);
    assert.equal(a.length, 32);
    a[0]! ^= 0xff;
    assert.notDeepEqual(a, b);
    assert.deepEqual(leafHash(hex('01')), b);
  });
});

describe('input validation (WITNESS_ERR_INVALID_ARGUMENT)', () => {
  test('leafHash rejects non-bytes', () => {
    for (const bad of [undefined, null, 'abc', [1, 2], 42, new ArrayBuffer(4)]) {
      assert.throws(() => leafHash(bad as unknown as Uint8Array), code('WITNESS_ERR_INVALID_ARGUMENT'));
    }
  });

  test('nodeHash rejects children that are not 32 bytes', () => {
    const ok = new Uint8Array(32);
    for (const bad of [new Uint8Array(31), new Uint8Array(33), new Uint8Array(0), 'x'.repeat(32), null]) {
      assert.throws(() => nodeHash(bad as Uint8Array, ok), code('WITNESS_ERR_INVALID_ARGUMENT'));
      assert.throws(() => nodeHash(ok, bad as Uint8Array), code('WITNESS_ERR_INVALID_ARGUMENT'));
    }
  });
});
