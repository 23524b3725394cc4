import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { sha256 } from '@noble/hashes/sha2.js';
import {
  decodeCoseSign1,
  decodeEnvelope,
  decodeProtectedHeader,
  encodeCoseSign1,
  envelopeHash,
  GENESIS_PREV,
  looksLikeEnvelope,
  sigStructure,
  signEnvelope,
  UNDERSTOOD_LABELS,
  verifyCoseSign1,
  verifyEnvelope,
  type EnvelopeClaims,
} from '../../../shared/envelope/index.js';
import { encode, Tagged, type CborKey, type CborValue } from '../../../shared/cbor/index.js';
import { nodeBackend, publicKeyFromSeed, sign, type Ed25519Backend } from '../../../shared/keys/ed25519.js';
import { nobleBackend } from '../../../shared/keys/ed25519-noble.js';
import { deviceKid } from '../../../shared/keys/key-id.js';
import { WitnessError, type WitnessErrorCode } from '../../../shared/errors.js';

const BACKENDS: Ed25519Backend[] = [nodeBackend, nobleBackend];
const hex = (b: Uint8Array): string => Buffer.from(b).toString('hex');
const unhex = (h: string): Uint8Array => new Uint8Array(Buffer.from(h.replace(/\s/g, ''), 'hex'));
const utf8 = (s: string): Uint8Array => new TextEncoder().encode(s);
const cat = (...parts: Uint8Array[]): Uint8Array => new Uint8Array(Buffer.concat(parts));

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

// RFC 8032 §7.1 TEST 1 key, used as a device key.
const SEED = unhex('9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60');
const PUB = publicKeyFromSeed(SEED);
const KID = deviceKid('sensor-1', PUB);
const CLAIMS: EnvelopeClaims = { time: 1700000000000, uncertainty: 25, timeSource: 'ntp', seq: 1, prev: GENESIS_PREV, topic: 'plant/1/temp' };
const PAYLOAD = utf8('{"t":21.5}');

/** The Witness protected header as a generic map (labels per shared/envelope/claims.ts). */
function headerOf(kid: Uint8Array, c: EnvelopeClaims): Map<CborKey, CborValue> {
  return new Map<CborKey, CborValue>([
    [1, -8],
    [2, [-65540, -65541, -65542]],
    [4, kid],
    [-65537, c.time],
    [-65538, c.uncertainty],
    [-65539, c.timeSource],
    [-65540, c.seq],
    [-65541, c.prev],
    [-65542, c.topic],
  ]);
}

/**
 * A correctly signed envelope around arbitrary protected header bytes, built with the generic
 * COSE layer: lets a test put anything in the header and still get past the signature.
 */
function signedWith(protectedBytes: Uint8Array, payload: Uint8Array = PAYLOAD): Uint8Array {
  const signature = sign(SEED, sigStructure(protectedBytes, payload));
  return encodeCoseSign1({ protectedBytes, unprotected: new Map(), payload, signature });
}
/** signedWith the Witness header after `edit`. */
function signedHeader(edit: (h: Map<CborKey, CborValue>) => void): Uint8Array {
  const h = headerOf(KID, CLAIMS);
  edit(h);
  return signedWith(encode(h));
}

describe('signEnvelope: the wire format', () => {
  // A regression pin of the format (DESIGN §2.1: formats are stable), computed by this code when
  // the format was fixed. Independent of it, the next test rebuilds the same bytes from the
  // specification with the generic CBOR encoder.
  const GOLDEN = `
    d2 84
      5884 a9 01 27  02 83 3a00010003 3a00010004 3a00010005
         04 51 73656e736f722d312b3532393736376263
         3a00010000 1b0000018bcfe56800
         3a00010001 1819
         3a00010002 63 6e7470
         3a00010003 01
         3a00010004 5820 0000000000000000000000000000000000000000000000000000000000000000
         3a00010005 6c 706c616e742f312f74656d70
      a0
      4a 7b2274223a32312e357d
      5840 73a21830262f2e3c3d3614512991c642b33060a70a2ee6ed21b0238e717c64fb
           cc0c6b0f2a26341297e6567f8698a48bf8b39c63628a099261418bd68c2eed04`;
  test('a fixed input gives the pinned bytes, on both backends', () => {
    for (const b of BACKENDS) assert.equal(hex(signEnvelope({ seed: SEED, kid: KID, claims: CLAIMS, payload: PAYLOAD }, b)), hex(unhex(GOLDEN)));
  });
  test('equals 18([<<header>>, {}, payload, Ed25519(Sig_structure)]) built with the generic encoder', () => {
    const protectedBytes = encode(headerOf(KID, CLAIMS));
    const tbs = encode(['Signature1', protectedBytes, new Uint8Array(0), PAYLOAD]);
    const expected = encode(new Tagged(18, [protectedBytes, new Map(), PAYLOAD, sign(SEED, tbs)]));
    assert.equal(hex(signEnvelope({ seed: SEED, kid: KID, claims: CLAIMS, payload: PAYLOAD })), hex(expected));
  });
  test('the kid is deviceId+keyhash', () => assert.equal(new TextDecoder().decode(KID), 'sensor-1+529767bc'));
});

describe('decodeEnvelope / verifyEnvelope round trip', () => {
  const bytes = signEnvelope({ seed: SEED, kid: KID, claims: CLAIMS, payload: PAYLOAD });
  test('fields come back; byte fields are views into the input, kid and prev are copies', () => {
    const env = decodeEnvelope(bytes);
    assert.deepEqual(env.claims, CLAIMS);
    assert.deepEqual(env.kid, KID);
    assert.deepEqual(env.payload, PAYLOAD);
    assert.equal(env.bytes, bytes);
    assert.equal(env.payload.buffer, bytes.buffer, 'payload is a subarray, not a copy');
    assert.equal(env.protectedBytes.buffer, bytes.buffer);
    assert.notEqual(env.kid.buffer, bytes.buffer);
    assert.notEqual(env.claims.prev.buffer, bytes.buffer);
    assert.deepEqual(decodeProtectedHeader(env.protectedBytes), headerOf(KID, CLAIMS));
    for (const b of BACKENDS) verifyEnvelope(env, PUB, b);
  });
  test('property: random claims and payloads — node and noble sign the same bytes; decode; verify on both', () => {
    const claims: fc.Arbitrary<EnvelopeClaims> = fc.record({
      time: fc.maxSafeNat(),
      uncertainty: fc.maxSafeNat(),
      timeSource: fc.constantFrom('ntp' as const, 'system' as const),
      seq: fc.maxSafeNat(),
      prev: fc.uint8Array({ minLength: 32, maxLength: 32 }),
      topic: fc.string({ unit: 'binary', maxLength: 80 }),
    });
    fc.assert(
      fc.property(fc.uint8Array({ minLength: 32, maxLength: 32 }), fc.string({ unit: 'grapheme-ascii', minLength: 1, maxLength: 20 }).filter((s) => !/[\s+]/.test(s)), claims, fc.uint8Array({ maxLength: 600 }), (seed, id, c, payload) => {
        const pub = publicKeyFromSeed(seed);
        const kid = deviceKid(id, pub);
        const a = signEnvelope({ seed, kid, claims: c, payload }, nodeBackend);
        assert.deepEqual(signEnvelope({ seed, kid, claims: c, payload }, nobleBackend), a);
        assert.ok(looksLikeEnvelope(a));
        const env = decodeEnvelope(a);
        assert.deepEqual(env.claims, { ...c }); // fc.record builds null-prototype objects
        assert.deepEqual(env.kid, kid);
        assert.deepEqual(env.payload, payload);
        for (const b of BACKENDS) verifyEnvelope(env, pub, b);
      }),
      { numRuns: 40 },
    );
  });
  test('a hash chain: each prev is envelopeHash of the one before', () => {
    let prev = GENESIS_PREV;
    for (let seq = 0; seq < 5; seq++) {
      const b = signEnvelope({ seed: SEED, kid: KID, claims: { ...CLAIMS, seq, prev }, payload: Uint8Array.of(seq) });
      const env = decodeEnvelope(b);
      assert.deepEqual(env.claims.prev, prev);
      verifyEnvelope(env, PUB);
      prev = envelopeHash(b);
    }
  });
});

describe('envelopeHash', () => {
  test('is SHA-256 of the whole envelope (cross-checked with @noble/hashes)', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 300 }), (b) => assert.deepEqual(envelopeHash(b), sha256(b))),
      { numRuns: 200 },
    );
  });
  test('GENESIS_PREV is 32 zero bytes', () => assert.deepEqual(GENESIS_PREV, new Uint8Array(32)));
});

describe('one-bit mutation: no single flipped bit of a signed envelope is ever accepted', () => {
  test('every bit of a small envelope, decode then verify on both backends', () => {
    const bytes = signEnvelope({ seed: SEED, kid: KID, claims: { ...CLAIMS, topic: 't' }, payload: Uint8Array.of(1, 2, 3) });
    const codes = new Map<string, number>();
    for (let bit = 0; bit < bytes.length * 8; bit++) {
      const m = bytes.slice();
      m[bit >> 3]! ^= 1 << (bit & 7);
      for (const b of BACKENDS) {
        try {
          verifyEnvelope(decodeEnvelope(m), PUB, b);
        } catch (e) {
          assert.ok(e instanceof WitnessError, `bit ${bit} on ${b.name}: ${String(e)}`);
          codes.set(e.code, (codes.get(e.code) ?? 0) + 1);
          continue;
        }
        assert.fail(`bit ${bit} flipped was accepted on ${b.name}`);
      }
    }
    // The flips land on every layer: CBOR, shape, claims and signature.
    for (const c of ['WITNESS_ERR_CBOR_MALFORMED', 'WITNESS_ERR_ENVELOPE_MALFORMED', 'WITNESS_ERR_SIGNATURE_INVALID', 'WITNESS_ERR_ENVELOPE_TAG']) {
      assert.ok(codes.has(c), `some flip gives ${c}: ${JSON.stringify([...codes])}`);
    }
  });
});

describe('looksLikeEnvelope', () => {
  test('true for an envelope, false for plain payloads', () => {
    assert.equal(looksLikeEnvelope(signEnvelope({ seed: SEED, kid: KID, claims: CLAIMS, payload: PAYLOAD })), true);
    for (const p of [utf8('{"t":21.5}'), new Uint8Array(0), Uint8Array.of(0xd2), Uint8Array.of(0x84, 0xd2), utf8('21.5')]) assert.equal(looksLikeEnvelope(p), false);
    assert.equal(looksLikeEnvelope('d284' as unknown as Uint8Array), false);
  });
});

// ── one describe per error code, each from a hand-built input ────────────────────────────────

describe('WITNESS_ERR_CBOR_MALFORMED', () => {
  const good = signEnvelope({ seed: SEED, kid: KID, claims: CLAIMS, payload: PAYLOAD });
  test('truncated (last byte cut)', () => void throwsCode(() => decodeEnvelope(good.subarray(0, good.length - 1)), 'WITNESS_ERR_CBOR_MALFORMED'));
  test('truncated inside the payload', () => void throwsCode(() => decodeEnvelope(good.subarray(0, 150)), 'WITNESS_ERR_CBOR_MALFORMED'));
  test('a trailing byte', () => {
    const e = throwsCode(() => decodeEnvelope(cat(good, Uint8Array.of(0))), 'WITNESS_ERR_CBOR_MALFORMED');
    assert.equal(e.details.offset, good.length);
  });
  test('reserved additional information in the first byte', () => void throwsCode(() => decodeEnvelope(Uint8Array.of(0xdc)), 'WITNESS_ERR_CBOR_MALFORMED'));
  test('invalid UTF-8 in the topic', () => {
    const bytes = signedWith(unhex('a1 3a00010005 62 c328'));
    throwsCode(() => decodeEnvelope(bytes), 'WITNESS_ERR_CBOR_MALFORMED');
  });
  test('a duplicate header label', () => {
    const bytes = signedWith(cat(unhex('a2 0127 0127')));
    throwsCode(() => decodeEnvelope(bytes), 'WITNESS_ERR_CBOR_MALFORMED');
  });
  test('trailing bytes inside the protected header', () => void throwsCode(() => decodeEnvelope(signedWith(cat(encode(headerOf(KID, CLAIMS)), Uint8Array.of(0)))), 'WITNESS_ERR_CBOR_MALFORMED'));
  test('an empty input', () => void throwsCode(() => decodeEnvelope(new Uint8Array(0)), 'WITNESS_ERR_CBOR_MALFORMED'));
});

describe('WITNESS_ERR_ENVELOPE_TAG', () => {
  const inner = [encode(headerOf(KID, CLAIMS)), new Map(), PAYLOAD, new Uint8Array(64)] as CborValue[];
  test('untagged COSE_Sign1 array', () => void throwsCode(() => decodeEnvelope(encode(inner)), 'WITNESS_ERR_ENVELOPE_TAG'));
  test('tag 17 (COSE_Mac0)', () => void throwsCode(() => decodeEnvelope(encode(new Tagged(17, inner))), 'WITNESS_ERR_ENVELOPE_TAG'));
  test('tag 98 (COSE_Sign)', () => void throwsCode(() => decodeEnvelope(encode(new Tagged(98, inner))), 'WITNESS_ERR_ENVELOPE_TAG'));
  test('a plain integer payload', () => void throwsCode(() => decodeEnvelope(utf8('7')), 'WITNESS_ERR_ENVELOPE_TAG'));
});

describe('WITNESS_ERR_ENVELOPE_MALFORMED', () => {
  const prot = encode(headerOf(KID, CLAIMS));
  const sig = new Uint8Array(64);
  const tagged = (items: CborValue[]): Uint8Array => encode(new Tagged(18, items));
  test('array of 3', () => void throwsCode(() => decodeEnvelope(tagged([prot, new Map(), PAYLOAD])), 'WITNESS_ERR_ENVELOPE_MALFORMED'));
  test('array of 5', () => void throwsCode(() => decodeEnvelope(tagged([prot, new Map(), PAYLOAD, sig, sig])), 'WITNESS_ERR_ENVELOPE_MALFORMED'));
  test('tag 18 around a map', () => void throwsCode(() => decodeEnvelope(encode(new Tagged(18, new Map()))), 'WITNESS_ERR_ENVELOPE_MALFORMED'));
  test('protected header as a map instead of a byte string', () => void throwsCode(() => decodeEnvelope(tagged([headerOf(KID, CLAIMS), new Map(), PAYLOAD, sig])), 'WITNESS_ERR_ENVELOPE_MALFORMED'));
  test('protected header bytes holding an array', () => void throwsCode(() => decodeEnvelope(signedWith(encode([1, -8]))), 'WITNESS_ERR_ENVELOPE_MALFORMED'));
  test('unprotected header not a map', () => void throwsCode(() => decodeEnvelope(tagged([prot, [], PAYLOAD, sig])), 'WITNESS_ERR_ENVELOPE_MALFORMED'));
  test('unprotected header not empty (it is not signed)', () => void throwsCode(() => decodeEnvelope(tagged([prot, new Map([[4, KID]]), PAYLOAD, sig])), 'WITNESS_ERR_ENVELOPE_MALFORMED'));
  test('payload as a text string', () => void throwsCode(() => decodeEnvelope(tagged([prot, new Map(), 'payload', sig])), 'WITNESS_ERR_ENVELOPE_MALFORMED'));
  test('signature as a text string', () => void throwsCode(() => decodeEnvelope(tagged([prot, new Map(), PAYLOAD, 'x'.repeat(64)])), 'WITNESS_ERR_ENVELOPE_MALFORMED'));
  test('a header label that is a byte string', () => void throwsCode(() => decodeEnvelope(signedWith(unhex('a1 4101 00'))), 'WITNESS_ERR_ENVELOPE_MALFORMED'));
  test('crit not an array', () => void throwsCode(() => decodeEnvelope(signedHeader((h) => h.set(2, -65540))), 'WITNESS_ERR_ENVELOPE_MALFORMED'));
  test('crit empty (RFC 9052 §3.1: at least one value)', () => void throwsCode(() => decodeEnvelope(signedHeader((h) => h.set(2, []))), 'WITNESS_ERR_ENVELOPE_MALFORMED'));
  test('an outer length not in its shortest form (the signature still verifies, the bytes differ)', () => {
    const good = signEnvelope({ seed: SEED, kid: KID, claims: CLAIMS, payload: PAYLOAD });
    // Payload head 0x4a (10 bytes) re-encoded as 0x58 0x0a: same COSE message, other bytes.
    const at = good.length - 66 - PAYLOAD.length - 1;
    assert.equal(good[at], 0x4a);
    const longer = cat(good.subarray(0, at), Uint8Array.of(0x58, 0x0a), good.subarray(at + 1));
    verifyCoseSign1(decodeCoseSign1(longer), PUB, { understood: UNDERSTOOD_LABELS });
    const e = throwsCode(() => decodeEnvelope(longer), 'WITNESS_ERR_ENVELOPE_MALFORMED');
    assert.equal(e.details.offset, at);
  });
});

describe('WITNESS_ERR_ENVELOPE_ALG', () => {
  test('alg -7 (ES256)', () => void throwsCode(() => decodeEnvelope(signedHeader((h) => h.set(1, -7))), 'WITNESS_ERR_ENVELOPE_ALG'));
  test('alg as text "EdDSA"', () => void throwsCode(() => decodeEnvelope(signedHeader((h) => h.set(1, 'EdDSA'))), 'WITNESS_ERR_ENVELOPE_ALG'));
  test('alg missing', () => void throwsCode(() => decodeEnvelope(signedHeader((h) => h.delete(1))), 'WITNESS_ERR_ENVELOPE_ALG'));
  test('empty protected header', () => void throwsCode(() => decodeEnvelope(signedWith(new Uint8Array(0))), 'WITNESS_ERR_ENVELOPE_ALG'));
});

describe('WITNESS_ERR_ENVELOPE_SIGNATURE_LENGTH', () => {
  const prot = encode(headerOf(KID, CLAIMS));
  for (const n of [0, 63, 65, 114]) {
    test(`${n} bytes`, () => void throwsCode(() => decodeEnvelope(encodeCoseSign1({ protectedBytes: prot, unprotected: new Map(), payload: PAYLOAD, signature: new Uint8Array(n) })), 'WITNESS_ERR_ENVELOPE_SIGNATURE_LENGTH'));
  }
});

describe('WITNESS_ERR_ENVELOPE_CRIT', () => {
  test('a private label Witness does not know', () => void throwsCode(() => decodeEnvelope(signedHeader((h) => { h.set(2, [-65540, -65541, -65542, -65543]); h.set(-65543, 1); })), 'WITNESS_ERR_ENVELOPE_CRIT'));
  test('content type (3): a COSE header, but not one Witness acts on', () => void throwsCode(() => decodeEnvelope(signedHeader((h) => { h.set(2, [3, -65540, -65541, -65542]); h.set(3, 0); })), 'WITNESS_ERR_ENVELOPE_CRIT'));
  test('a text label', () => void throwsCode(() => decodeEnvelope(signedHeader((h) => { h.set(2, [-65540, -65541, -65542, 'x']); h.set('x', 1); })), 'WITNESS_ERR_ENVELOPE_CRIT'));
  test('a generic COSE verifier that does not know Witness rejects a Witness envelope', () => {
    const msg = decodeCoseSign1(signEnvelope({ seed: SEED, kid: KID, claims: CLAIMS, payload: PAYLOAD }));
    throwsCode(() => verifyCoseSign1(msg, PUB), 'WITNESS_ERR_ENVELOPE_CRIT');
    verifyCoseSign1(msg, PUB, { understood: UNDERSTOOD_LABELS });
  });
});

describe('WITNESS_ERR_ENVELOPE_CLAIMS', () => {
  const missing: [string, CborKey][] = [
    ['kid', 4],
    ['time', -65537],
    ['uncertainty', -65538],
    ['time source', -65539],
    ['sequence', -65540],
    ['prev', -65541],
    ['topic', -65542],
    ['crit', 2],
  ];
  for (const [name, label] of missing) {
    test(`${name} missing`, () => void throwsCode(() => decodeEnvelope(signedHeader((h) => h.delete(label))), 'WITNESS_ERR_ENVELOPE_CLAIMS'));
  }
  const mistyped: [string, CborKey, CborValue][] = [
    ['time negative', -65537, -1],
    ['time as text', -65537, '1700000000000'],
    ['uncertainty negative', -65538, -25],
    ['sequence negative', -65540, -1],
    ['sequence as a byte string', -65540, Uint8Array.of(1)],
    ['prev of 31 bytes', -65541, new Uint8Array(31)],
    ['prev of 33 bytes', -65541, new Uint8Array(33)],
    ['prev as text', -65541, '0'.repeat(64)],
    ['time source "gps"', -65539, 'gps'],
    ['time source as an integer', -65539, 1],
    ['topic as a byte string', -65542, utf8('plant/1/temp')],
    ['kid empty', 4, new Uint8Array(0)],
    ['kid as text', 4, 'sensor-1+529767bc'],
  ];
  for (const [name, label, v] of mistyped) {
    test(name, () => void throwsCode(() => decodeEnvelope(signedHeader((h) => h.set(label, v))), 'WITNESS_ERR_ENVELOPE_CLAIMS'));
  }
  test('time beyond 2^53-1 (a uint64 the CBOR layer would call unsupported)', () => {
    const prot = encode(headerOf(KID, CLAIMS));
    const time = unhex('3a00010000 1b0000018bcfe56800');
    const i = Buffer.from(prot).indexOf(Buffer.from(time));
    assert.ok(i > 0);
    const big = prot.slice();
    big.set(unhex('1b0020000000000000'), i + 5); // 2^53
    throwsCode(() => decodeEnvelope(signedWith(big)), 'WITNESS_ERR_ENVELOPE_CLAIMS');
  });
  test('uncertainty as a float', () => {
    const prot = encode(headerOf(KID, CLAIMS));
    const i = Buffer.from(prot).indexOf(Buffer.from(unhex('3a00010001 1819')));
    const f = cat(prot.subarray(0, i + 5), unhex('f93c00'), prot.subarray(i + 7));
    throwsCode(() => decodeEnvelope(signedWith(f)), 'WITNESS_ERR_ENVELOPE_CLAIMS');
  });
  test('crit without the topic label', () => void throwsCode(() => decodeEnvelope(signedHeader((h) => h.set(2, [-65540, -65541]))), 'WITNESS_ERR_ENVELOPE_CLAIMS'));

  describe('signEnvelope validates the claims it is given', () => {
    const bad: [string, Partial<Record<keyof EnvelopeClaims, unknown>>][] = [
      ['time -1', { time: -1 }],
      ['time 1.5', { time: 1.5 }],
      ['time NaN', { time: NaN }],
      ['time 2^53', { time: 2 ** 53 }],
      ['uncertainty as a string', { uncertainty: '25' }],
      ['seq negative', { seq: -1 }],
      ['prev of 31 bytes', { prev: new Uint8Array(31) }],
      ['prev as an array', { prev: new Array(32).fill(0) }],
      ['time source "gps"', { timeSource: 'gps' }],
      ['topic not a string', { topic: 42 }],
      ['topic with a lone surrogate', { topic: 'a/\ud800' }],
    ];
    for (const [name, patch] of bad) {
      test(name, () => void throwsCode(() => signEnvelope({ seed: SEED, kid: KID, claims: { ...CLAIMS, ...patch } as EnvelopeClaims, payload: PAYLOAD }), 'WITNESS_ERR_ENVELOPE_CLAIMS'));
    }
    test('seed of 31 bytes is INVALID_ARGUMENT', () => void throwsCode(() => signEnvelope({ seed: new Uint8Array(31), kid: KID, claims: CLAIMS, payload: PAYLOAD }), 'WITNESS_ERR_INVALID_ARGUMENT'));
    test('empty kid is INVALID_ARGUMENT', () => void throwsCode(() => signEnvelope({ seed: SEED, kid: new Uint8Array(0), claims: CLAIMS, payload: PAYLOAD }), 'WITNESS_ERR_INVALID_ARGUMENT'));
    test('payload as a string is INVALID_ARGUMENT', () => void throwsCode(() => signEnvelope({ seed: SEED, kid: KID, claims: CLAIMS, payload: 'x' as unknown as Uint8Array }), 'WITNESS_ERR_INVALID_ARGUMENT'));
  });
});

describe('WITNESS_ERR_ENVELOPE_DETACHED', () => {
  test('nil payload', () => {
    const bytes = encodeCoseSign1({ protectedBytes: encode(headerOf(KID, CLAIMS)), unprotected: new Map(), payload: null, signature: new Uint8Array(64) });
    throwsCode(() => decodeEnvelope(bytes), 'WITNESS_ERR_ENVELOPE_DETACHED');
  });
});

describe('verifyEnvelope failures', () => {
  const bytes = signEnvelope({ seed: SEED, kid: KID, claims: CLAIMS, payload: PAYLOAD });
  for (const b of BACKENDS) {
    test(`another key is SIGNATURE_INVALID on ${b.name}`, () => {
      throwsCode(() => verifyEnvelope(decodeEnvelope(bytes), publicKeyFromSeed(new Uint8Array(32).fill(1)), b), 'WITNESS_ERR_SIGNATURE_INVALID');
    });
    test(`a payload swapped after decoding is SIGNATURE_INVALID on ${b.name}`, () => {
      throwsCode(() => verifyEnvelope({ ...decodeEnvelope(bytes), payload: utf8('{"t":99.9}') }, PUB, b), 'WITNESS_ERR_SIGNATURE_INVALID');
    });
    test(`S + L in the signature is SIGNATURE_NON_CANONICAL on ${b.name}`, () => {
      const L = (1n << 252n) + 27742317777372353535851937790883648493n;
      const m = bytes.slice();
      const sAt = m.length - 32;
      let s = 0n;
      for (let i = 31; i >= 0; i--) s = (s << 8n) | BigInt(m[sAt + i]!);
      s += L;
      for (let i = 0; i < 32; i++, s >>= 8n) m[sAt + i] = Number(s & 0xffn);
      throwsCode(() => verifyEnvelope(decodeEnvelope(m), PUB, b), 'WITNESS_ERR_SIGNATURE_NON_CANONICAL');
    });
    test(`a small-order key is KEY_WEAK on ${b.name}`, () => void throwsCode(() => verifyEnvelope(decodeEnvelope(bytes), new Uint8Array(32), b), 'WITNESS_ERR_KEY_WEAK'));
    test(`a 31-byte key is KEY_INVALID on ${b.name}`, () => void throwsCode(() => verifyEnvelope(decodeEnvelope(bytes), new Uint8Array(31), b), 'WITNESS_ERR_KEY_INVALID'));
  }
});

describe('what decodeEnvelope accepts beyond what signEnvelope writes', () => {
  test('an unknown header that is not critical is ignored (RFC 9052 §3)', () => {
    const bytes = signedHeader((h) => {
      h.set(3, 'application/json');
      h.set(-70000, [1, new Map([['a', Uint8Array.of(1)]])]);
    });
    const env = decodeEnvelope(bytes);
    assert.deepEqual(env.claims, CLAIMS);
    verifyEnvelope(env, PUB);
  });
  test('a protected header in non-deterministic order verifies: the received bytes are signed, never re-encoded', () => {
    const h = headerOf(KID, CLAIMS);
    const reversed = [...h.entries()].reverse();
    // Hand-encode the map in reverse order (the encoder would sort it).
    const prot = cat(Uint8Array.of(0xa0 + reversed.length), ...reversed.flatMap(([k, v]) => [encode(k), encode(v)]));
    assert.notDeepEqual(prot, encode(h));
    const env = decodeEnvelope(signedWith(prot));
    assert.deepEqual(env.protectedBytes, prot);
    assert.deepEqual(env.claims, CLAIMS);
    for (const b of BACKENDS) verifyEnvelope(env, PUB, b);
  });
});
