import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import * as ed from '@noble/ed25519';
import { checkPublicKey, nodeBackend, publicKeyFromSeed, sign, verify, verifyOrThrow, type Ed25519Backend } from '../../../shared/keys/ed25519.js';
import { nobleBackend } from '../../../shared/keys/ed25519-noble.js';
import { WitnessError, type WitnessErrorCode } from '../../../shared/errors.js';

const BACKENDS: Ed25519Backend[] = [nodeBackend, nobleBackend];
const hex = (b: Uint8Array): string => Buffer.from(b).toString('hex');
const unhex = (h: string): Uint8Array => new Uint8Array(Buffer.from(h, 'hex'));

function throwsCode(fn: () => unknown, code: WitnessErrorCode): WitnessError {
  try {
    fn();
  } catch (e) {
    assert.ok(e instanceof WitnessError, `expected a WitnessError, got ${String(e)}`);
    assert.equal(e.code, code, e.message);
    return e;
  }
  assert.fail(`expected ${code}, nothing was thrown`);
}

const P = (1n << 255n) - 19n;
const L = (1n << 252n) + 27742317777372353535851937790883648493n;

/** 32-byte little-endian encoding of y, with the sign bit of x in bit 255 (RFC 8032 §5.1.2). */
function encodePoint(y: bigint, xOdd: boolean): Uint8Array {
  const out = new Uint8Array(32);
  let v = y;
  for (let i = 0; i < 32; i++) {
    out[i] = Number(v & 0xffn);
    v >>= 8n;
  }
  if (xOdd) out[31]! |= 0x80;
  return out;
}

function leInt(b: Uint8Array): bigint {
  let n = 0n;
  for (let i = b.length - 1; i >= 0; i--) n = (n << 8n) | BigInt(b[i]!);
  return n;
}

// RFC 8032 §7.1, "Test Vectors for Ed25519", TEST 1-3 (https://www.rfc-editor.org/rfc/rfc8032#section-7.1).
const RFC8032 = [
  {
    name: 'TEST 1 (empty message)',
    secret: '9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60',
    public: 'd75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a',
    message: '',
    signature: 'e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b',
  },
  {
    name: 'TEST 2 (1 byte)',
    secret: '4ccd089b28ff96da9db6c346ec114e0f5b8a319f35aba624da8cf6ed4fb8a6fb',
    public: '3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c',
    message: '72',
    signature: '92a009a9f0d4cab8720e820b5f642540a2b27b5416503f8fb3762223ebdb69da085ac1e43e15996e458f3613d0f11d8c387b2eaeb4302aeeb00d291612bb0c00',
  },
  {
    name: 'TEST 3 (2 bytes)',
    secret: 'c5aa8df43f9f837bedb7442f31dcb7b166d38535076f094b85ce3a2e0b4458f7',
    public: 'fc51cd8e6218a1a38da47ed00230f0580816ed13ba3303ac5deb911548908025',
    message: 'af82',
    signature: '6291d657deec24024827e69c3abe01a30ce548a284743a445e3680d7db5ac3ac18ff9b538d16f290ae67f760984dc6594a7c15e9716ed28dc027beceea1ec40a',
  },
];

describe('RFC 8032 §7.1 test vectors, both backends', () => {
  for (const v of RFC8032) {
    for (const b of BACKENDS) {
      test(`${v.name} on ${b.name}`, () => {
        const seed = unhex(v.secret);
        assert.equal(hex(publicKeyFromSeed(seed, b)), v.public);
        assert.equal(hex(sign(seed, unhex(v.message), b)), v.signature);
        verifyOrThrow(unhex(v.public), unhex(v.message), unhex(v.signature), b);
      });
    }
  }
});

describe('node and noble agree (property)', () => {
  test('same public key, same signature bytes, each verifies the other', () => {
    fc.assert(
      fc.property(fc.uint8Array({ minLength: 32, maxLength: 32 }), fc.uint8Array({ maxLength: 300 }), (seed, msg) => {
        const pub = publicKeyFromSeed(seed, nodeBackend);
        assert.deepEqual(publicKeyFromSeed(seed, nobleBackend), pub);
        const sig = sign(seed, msg, nodeBackend);
        assert.deepEqual(sign(seed, msg, nobleBackend), sig);
        for (const b of BACKENDS) verifyOrThrow(pub, msg, sig, b);
      }),
      { numRuns: 60 },
    );
  });
  test('both reject a signature with one bit flipped, with the same code', () => {
    fc.assert(
      fc.property(fc.uint8Array({ minLength: 32, maxLength: 32 }), fc.uint8Array({ maxLength: 64 }), fc.nat(511), (seed, msg, bit) => {
        const pub = publicKeyFromSeed(seed);
        const sig = sign(seed, msg);
        sig[bit >> 3]! ^= 1 << (bit & 7);
        const codes = BACKENDS.map((b) => {
          try {
            verifyOrThrow(pub, msg, sig, b);
            return 'accepted';
          } catch (e) {
            return e instanceof WitnessError ? e.code : String(e);
          }
        });
        assert.notEqual(codes[0], 'accepted');
        assert.equal(codes[0], codes[1]);
      }),
      { numRuns: 60 },
    );
  });
});

describe('malleated signature S + L is NON_CANONICAL (RFC 8032 §5.1.7 step 1)', () => {
  const v = RFC8032[1]!;
  const sig = unhex(v.signature);
  const s = leInt(sig.subarray(32));
  assert.ok(s < L);
  const malleated = new Uint8Array(64);
  malleated.set(sig.subarray(0, 32));
  malleated.set(encodePoint(s + L, false), 32);
  for (const b of BACKENDS) {
    test(`S + L on ${b.name}`, () => void throwsCode(() => verifyOrThrow(unhex(v.public), unhex(v.message), malleated, b), 'WITNESS_ERR_SIGNATURE_NON_CANONICAL'));
    test(`S = L on ${b.name}`, () => {
      const bad = sig.slice();
      bad.set(encodePoint(L, false), 32);
      throwsCode(() => verifyOrThrow(unhex(v.public), unhex(v.message), bad, b), 'WITNESS_ERR_SIGNATURE_NON_CANONICAL');
    });
    test(`verify() is false on ${b.name}`, () => assert.equal(verify(unhex(v.public), unhex(v.message), malleated, b), false));
  }
});

describe('non-canonical R is NON_CANONICAL', () => {
  const v = RFC8032[0]!;
  for (const [name, r] of [
    ['R with y = p', encodePoint(P, false)],
    ['R with y = p + 1', encodePoint(P + 1n, false)],
    ['R = "negative zero" (y = 1, sign bit set)', encodePoint(1n, true)],
  ] as const) {
    for (const b of BACKENDS) {
      test(`${name} on ${b.name}`, () => {
        const sig = unhex(v.signature);
        sig.set(r, 0);
        throwsCode(() => verifyOrThrow(unhex(v.public), new Uint8Array(0), sig, b), 'WITNESS_ERR_SIGNATURE_NON_CANONICAL');
      });
    }
  }
});

// The 8 points of order dividing 8, from their y values and the sign of x: y = 1 (identity,
// x = 0), y = p - 1 (order 2, x = 0), y = 0 (order 4, x = ±sqrt(-1)), y = ±Y8 (order 8, four
// points). Y8 is the y of libsodium's order-8 blacklist entry c7176a70...ac037a.
const Y8 = leInt(unhex('c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a'));
const SMALL_ORDER: [string, Uint8Array][] = [
  ['identity (order 1)', encodePoint(1n, false)],
  ['order 2', encodePoint(P - 1n, false)],
  ['order 4, x even', encodePoint(0n, false)],
  ['order 4, x odd', encodePoint(0n, true)],
  ['order 8, y = Y8, x even', encodePoint(Y8, false)],
  ['order 8, y = Y8, x odd', encodePoint(Y8, true)],
  ['order 8, y = p - Y8, x even', encodePoint(P - Y8, false)],
  ['order 8, y = p - Y8, x odd', encodePoint(P - Y8, true)],
];

describe('small-order public keys are KEY_WEAK', () => {
  test('the 8 encodings are the 8 small-order points according to @noble/ed25519', () => {
    const seen = new Set<string>();
    for (const [name, b] of SMALL_ORDER) {
      const pt = ed.Point.fromBytes(b, true);
      assert.ok(pt.isSmallOrder(), name);
      assert.equal(hex(pt.toBytes()), hex(b), `${name} is canonical`);
      seen.add(hex(b));
    }
    assert.equal(seen.size, 8);
    // Independently: the 8-torsion subgroup is {[k]T : k = 0..7} for T = [L]Q of order 8, Q a
    // curve point; [L]Q = [L-1]Q + Q (noble's multiply wants a scalar below L).
    let t = ed.Point.ZERO;
    for (let y = 2n; t.equals(ed.Point.ZERO) || t.double().double().equals(ed.Point.ZERO); y++) {
      let q: ed.Point;
      try {
        q = ed.Point.fromBytes(encodePoint(y, false), false);
      } catch {
        continue; // no point with this y
      }
      t = q.multiply(L - 1n).add(q);
    }
    const torsion = new Set<string>();
    let acc = ed.Point.ZERO;
    for (let k = 0; k < 8; k++) {
      torsion.add(hex(acc.toBytes()));
      acc = acc.add(t);
    }
    assert.deepEqual([...torsion].sort(), [...seen].sort());
  });
  for (const [name, pub] of SMALL_ORDER) {
    test(`${name}: checkPublicKey`, () => void throwsCode(() => checkPublicKey(pub), 'WITNESS_ERR_KEY_WEAK'));
    for (const b of BACKENDS) {
      test(`${name}: verifyOrThrow on ${b.name}`, () => void throwsCode(() => verifyOrThrow(pub, Uint8Array.of(1), new Uint8Array(64), b), 'WITNESS_ERR_KEY_WEAK'));
    }
  }
  test('why: with A = identity, R = identity and S = 0 satisfy [S]B = R + [k]A for every message', () => {
    const identity = SMALL_ORDER[0]![1];
    const forged = new Uint8Array(64);
    forged.set(identity, 0);
    // The raw equation (no strict key check) accepts the forgery ...
    assert.equal(nobleBackend.verify(identity, Uint8Array.of(1, 2, 3), forged), true);
    // ... the strict check refuses the key first, on both backends.
    for (const b of BACKENDS) assert.equal(verify(identity, Uint8Array.of(1, 2, 3), forged, b), false);
  });
});

describe('non-canonical public keys (y >= p) are KEY_WEAK', () => {
  // y values below 19 encoded as y + p (still < 2^255), plus the largest 255-bit value.
  const onCurve = [...Array(19).keys()].map(BigInt).find((y) => {
    if (y <= 1n) return false;
    try {
      ed.Point.fromBytes(encodePoint(y, false), false);
      return true;
    } catch {
      return false;
    }
  });
  assert.ok(onCurve !== undefined, 'some y < 19 is on the curve');
  const cases: [string, Uint8Array][] = [
    ['y = p (0 + p)', encodePoint(P, false)],
    ['y = p + 1 (identity + p)', encodePoint(P + 1n, false)],
    [`y = p + ${onCurve} (a point of large order, + p)`, encodePoint(P + onCurve, false)],
    ['y = 2^255 - 1, sign bit set', encodePoint((1n << 255n) - 1n, true)],
  ];
  for (const [name, pub] of cases) {
    test(name, () => {
      const e = throwsCode(() => checkPublicKey(pub), 'WITNESS_ERR_KEY_WEAK');
      assert.match(e.message, /not reduced mod p/);
      for (const b of BACKENDS) throwsCode(() => verifyOrThrow(pub, new Uint8Array(0), new Uint8Array(64), b), 'WITNESS_ERR_KEY_WEAK');
    });
  }
});

describe('wrong signature is SIGNATURE_INVALID on both backends', () => {
  const v = RFC8032[2]!;
  for (const b of BACKENDS) {
    test(`other message on ${b.name}`, () => void throwsCode(() => verifyOrThrow(unhex(v.public), unhex('af83'), unhex(v.signature), b), 'WITNESS_ERR_SIGNATURE_INVALID'));
    test(`other key on ${b.name}`, () => void throwsCode(() => verifyOrThrow(unhex(RFC8032[0]!.public), unhex(v.message), unhex(v.signature), b), 'WITNESS_ERR_SIGNATURE_INVALID'));
    test(`key that is not on the curve on ${b.name}`, () => {
      // y = 2 has no x on edwards25519: not a key error (it is canonical and not small-order),
      // but no signature verifies under it — on both paths alike.
      throwsCode(() => verifyOrThrow(encodePoint(2n, false), unhex(v.message), unhex(v.signature), b), 'WITNESS_ERR_SIGNATURE_INVALID');
    });
  }
});

describe('input lengths', () => {
  test('public key of 31 bytes is KEY_INVALID', () => void throwsCode(() => verifyOrThrow(new Uint8Array(31), new Uint8Array(0), new Uint8Array(64)), 'WITNESS_ERR_KEY_INVALID'));
  test('public key that is not a Uint8Array is KEY_INVALID', () => void throwsCode(() => checkPublicKey('x' as unknown as Uint8Array), 'WITNESS_ERR_KEY_INVALID'));
  test('signature of 63 bytes is INVALID_ARGUMENT', () => void throwsCode(() => verifyOrThrow(unhex(RFC8032[0]!.public), new Uint8Array(0), new Uint8Array(63)), 'WITNESS_ERR_INVALID_ARGUMENT'));
  test('seed of 31 bytes is INVALID_ARGUMENT', () => void throwsCode(() => sign(new Uint8Array(31), new Uint8Array(0)), 'WITNESS_ERR_INVALID_ARGUMENT'));
  test('verify() rethrows INVALID_ARGUMENT instead of returning false', () => void throwsCode(() => verify(unhex(RFC8032[0]!.public), new Uint8Array(0), new Uint8Array(65)), 'WITNESS_ERR_INVALID_ARGUMENT'));
});
