import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import {
  createConnectToken,
  decodeConnectToken,
  checkDeviceId,
  DEFAULT_AUDIENCE,
  MAX_TOKEN_SIZE,
  TOKEN_USERNAME,
} from '../../../shared/token/index.js';
import { decodeCoseSign1, encodeCoseSign1, signCoseSign1, verifyCoseSign1 } from '../../../shared/envelope/cose-sign1.js';
import { encode, Tagged, type CborValue } from '../../../shared/cbor/encode.js';
import { decode } from '../../../shared/cbor/decode.js';
import { deviceKid, keyHash } from '../../../shared/keys/key-id.js';
import { generateSeed, publicKeyFromSeed } from '../../../shared/keys/ed25519.js';
import { WitnessError, type WitnessErrorCode } from '../../../shared/errors.js';

const seed = new Uint8Array(32).fill(7);
const publicKey = publicKeyFromSeed(seed);
const NONCE = new Uint8Array(16).fill(0xab);

function throwsCode(fn: () => unknown, code: WitnessErrorCode, message?: RegExp): WitnessError {
  try {
    fn();
  } catch (e) {
    assert.ok(e instanceof WitnessError, `expected a WitnessError, got ${String(e)}`);
    assert.equal(e.code, code, e.message);
    if (message) assert.match(e.message, message);
    return e;
  }
  assert.fail(`expected ${code}, nothing was thrown`);
}

/** A token signed by `seed` with any protected header and payload: for malformed-structure cases. */
function handMade(o: { header?: Map<number, CborValue>; payload?: Uint8Array; unprotected?: Map<number, CborValue> } = {}): Uint8Array {
  const header = o.header ?? new Map<number, CborValue>([[1, -8], [4, deviceKid('dev-1', publicKey)]]);
  const payload = o.payload ?? encode(new Map<number, CborValue>([[1, 'dev-1'], [2, DEFAULT_AUDIENCE], [3, 1_700_000_000_000], [4, NONCE]]));
  return signCoseSign1({ protectedHeader: header, payload, seed, ...(o.unprotected ? { unprotected: o.unprotected } : {}) });
}

describe('connect token: create and decode', () => {
  test('round trip: every claim comes back, and the signature verifies under the device key', () => {
    const bytes = createConnectToken({ seed, deviceId: 'dev-1', publicKey, audience: 'broker-a', now: 1_700_000_000_123, nonce: NONCE });
    const t = decodeConnectToken(bytes);
    assert.equal(t.deviceId, 'dev-1');
    assert.equal(t.kid, `dev-1+${Buffer.from(keyHash('dev-1', publicKey)).toString('hex')}`);
    assert.deepEqual(t.keyHash, keyHash('dev-1', publicKey));
    assert.equal(t.clientId, 'dev-1');
    assert.equal(t.audience, 'broker-a');
    assert.equal(t.issuedAt, 1_700_000_000_123);
    assert.deepEqual(t.nonce, NONCE);
    verifyCoseSign1(t.message, publicKey);
    assert.equal(TOKEN_USERNAME, 'witness-token/v1');
  });

  test('exact bytes: tag 18, protected {1: -8, 4: kid}, payload map {1..4} in deterministic order', () => {
    const bytes = createConnectToken({ seed, deviceId: 'dev-1', publicKey, now: 5, nonce: NONCE });
    assert.deepEqual([...bytes.subarray(0, 2)], [0xd2, 0x84]);
    const m = decodeCoseSign1(bytes);
    assert.deepEqual(m.protectedBytes, encode(new Map<number, CborValue>([[1, -8], [4, deviceKid('dev-1', publicKey)]])));
    assert.deepEqual(m.payload, encode(new Map<number, CborValue>([[1, 'dev-1'], [2, 'mqtt-witness'], [3, 5], [4, NONCE]])));
    assert.equal(m.unprotected.size, 0);
  });

  test('defaults: audience mqtt-witness, issued now, a fresh random nonce each time', () => {
    const before = Date.now();
    const a = decodeConnectToken(createConnectToken({ seed, deviceId: 'dev-1', publicKey }));
    const b = decodeConnectToken(createConnectToken({ seed, deviceId: 'dev-1', publicKey }));
    assert.equal(a.audience, DEFAULT_AUDIENCE);
    assert.ok(a.issuedAt >= before && a.issuedAt <= Date.now());
    assert.notDeepEqual(a.nonce, b.nonce);
  });

  test('property: any device id, audience, time and nonce round-trip and verify', () => {
    fc.assert(
      fc.property(
        fc.stringMatching(/^[A-Za-z0-9._:-]{1,64}$/),
        fc.string({ unit: 'grapheme', minLength: 1, maxLength: 30 }).filter((s) => s.length <= 255),
        fc.integer({ min: 0, max: Number.MAX_SAFE_INTEGER }),
        fc.uint8Array({ minLength: 16, maxLength: 16 }),
        (deviceId, audience, now, nonce) => {
          const t = decodeConnectToken(createConnectToken({ seed, deviceId, publicKey, audience, now, nonce }));
          assert.equal(t.clientId, deviceId);
          assert.equal(t.deviceId, deviceId);
          assert.equal(t.audience, audience);
          assert.equal(t.issuedAt, now);
          assert.deepEqual(t.nonce, nonce);
          verifyCoseSign1(t.message, publicKey);
        },
      ),
      { numRuns: 200 },
    );
  });

  test('create refuses bad inputs at the boundary', () => {
    throwsCode(() => createConnectToken({ seed, deviceId: 'bad id', publicKey }), 'WITNESS_ERR_DEVICE_ID_INVALID');
    throwsCode(() => createConnectToken({ seed, deviceId: 'x'.repeat(65), publicKey }), 'WITNESS_ERR_DEVICE_ID_INVALID');
    throwsCode(() => createConnectToken({ seed, deviceId: 'd', publicKey, nonce: new Uint8Array(15) }), 'WITNESS_ERR_INVALID_ARGUMENT', /length 16, got 15/);
    throwsCode(() => createConnectToken({ seed, deviceId: 'd', publicKey, audience: '' }), 'WITNESS_ERR_INVALID_ARGUMENT', /audience/);
    throwsCode(() => createConnectToken({ seed, deviceId: 'd', publicKey, now: -1 }), 'WITNESS_ERR_INVALID_ARGUMENT', /now/);
    throwsCode(() => createConnectToken({ seed, deviceId: 'd', publicKey: publicKeyFromSeed(generateSeed()) }), 'WITNESS_ERR_INVALID_ARGUMENT', /not the public key of seed/);
  });

  test('checkDeviceId: the rule of witness-agent init', () => {
    for (const ok of ['a', 'sensor-1', 'plant.A:line_2', 'x'.repeat(64)]) checkDeviceId(ok);
    for (const bad of ['', 'a b', 'a+b', 'a/b', 'é', 'x'.repeat(65)]) throwsCode(() => checkDeviceId(bad), 'WITNESS_ERR_DEVICE_ID_INVALID');
  });
});

const CLAIMS = encode(new Map<number, CborValue>([[1, 'dev-1'], [2, 'a'], [3, 1], [4, NONCE]]));
/** CLAIMS with keys 1 and 2 swapped: well-formed CBOR, not the deterministic form (RFC 8949 §4.2.1). */
function reorderedPayload(): Uint8Array {
  // CLAIMS = a4 | 01 65 "dev-1" | 02 61 "a" | 03 01 | 04 50 <16 bytes>
  return new Uint8Array([0xa4, ...encode(2), ...encode('a'), ...encode(1), ...encode('dev-1'), ...CLAIMS.subarray(11)]);
}

describe('connect token: decode refuses malformed structure (WITNESS_ERR_TOKEN_MALFORMED)', () => {
  const cases: [string, () => Uint8Array, RegExp][] = [
    ['garbage bytes', () => new Uint8Array([1, 2, 3, 4]), /not a tagged COSE_Sign1/],
    ['empty', () => new Uint8Array(0), /not a tagged COSE_Sign1/],
    ['untagged array', () => encode([new Uint8Array(0), new Map(), new Uint8Array(0), new Uint8Array(64)]), /not a tagged COSE_Sign1/],
    ['too large', () => new Uint8Array(MAX_TOKEN_SIZE + 1), /more than the 1024/],
    ['alg other than EdDSA', () => encodeCoseSign1({ protectedBytes: encode(new Map<number, CborValue>([[1, -7], [4, deviceKid('dev-1', publicKey)]])), unprotected: new Map(), payload: new Uint8Array(1), signature: new Uint8Array(64) }), /protected header/],
    ['no kid', () => handMade({ header: new Map<number, CborValue>([[1, -8]]) }), /protected header/],
    ['extra protected header', () => handMade({ header: new Map<number, CborValue>([[1, -8], [3, 'x'], [4, deviceKid('dev-1', publicKey)]]) }), /protected header/],
    ['kid not a device kid', () => handMade({ header: new Map<number, CborValue>([[1, -8], [4, new TextEncoder().encode('dev-1')]]) }), /kid/],
    ['unprotected header not empty', () => handMade({ unprotected: new Map<number, CborValue>([[4, new Uint8Array(1)]]) }), /unprotected/],
    ['payload not CBOR', () => handMade({ payload: new Uint8Array([0xff]) }), /payload is not CBOR/],
    ['payload an array', () => handMade({ payload: encode(['dev-1']) }), /exactly the claims/],
    ['a claim missing', () => handMade({ payload: encode(new Map<number, CborValue>([[1, 'dev-1'], [2, 'a'], [3, 1]])) }), /exactly the claims/],
    ['an extra claim', () => handMade({ payload: encode(new Map<number, CborValue>([[1, 'dev-1'], [2, 'a'], [3, 1], [4, NONCE], [5, 0]])) }), /exactly the claims/],
    ['client id not text', () => handMade({ payload: encode(new Map<number, CborValue>([[1, 7], [2, 'a'], [3, 1], [4, NONCE]])) }), /claim 1/],
    ['audience not text', () => handMade({ payload: encode(new Map<number, CborValue>([[1, 'dev-1'], [2, new Uint8Array(1)], [3, 1], [4, NONCE]])) }), /claim 2/],
    ['issued-at negative', () => handMade({ payload: encode(new Map<number, CborValue>([[1, 'dev-1'], [2, 'a'], [3, -1], [4, NONCE]])) }), /claim 3/],
    ['nonce of 15 bytes', () => handMade({ payload: encode(new Map<number, CborValue>([[1, 'dev-1'], [2, 'a'], [3, 1], [4, new Uint8Array(15)]])) }), /claim 4/],
    ['payload not deterministic (keys out of order)', () => handMade({ payload: reorderedPayload() }), /deterministic/],
    [
      'payload with a non-shortest integer',
      () => handMade({ payload: new Uint8Array([0xa4, 0x01, ...encode('dev-1'), 0x02, ...encode('a'), 0x03, 0x18, 0x05, 0x04, ...encode(NONCE)]) }),
      /deterministic/,
    ],
    ['signature of 63 bytes', () => encodeCoseSign1({ ...decodeCoseSign1(handMade()), signature: new Uint8Array(63) }), /signature is 63 bytes/],
    ['detached payload', () => encodeCoseSign1({ ...decodeCoseSign1(handMade()), payload: null }), /detached/],
    ['wrong tag', () => encode(new Tagged(98, [new Uint8Array(0), new Map(), new Uint8Array(0), new Uint8Array(64)])), /not a tagged COSE_Sign1/],
  ];
  for (const [name, make, message] of cases) {
    test(name, () => {
      throwsCode(() => decodeConnectToken(make()), 'WITNESS_ERR_TOKEN_MALFORMED', message);
    });
  }

  test('the reordered payload really is the same claims, only in another key order', () => {
    // Guards the hand-made bytes above: decoded generically they are the valid claims.
    assert.deepEqual(decode(reorderedPayload()), decode(CLAIMS));
    assert.notDeepEqual(reorderedPayload(), CLAIMS);
  });
});
