import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { encode, decode, Tagged, MAX_NESTING, type CborValue } from '../../../shared/cbor/index.js';
import { WitnessError, type WitnessErrorCode } from '../../../shared/errors.js';

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

// RFC 8949 Appendix A, "Examples of Encoded CBOR Data Items" (https://www.rfc-editor.org/rfc/rfc8949#appendix-A),
// the rows inside Witness's data model; hex cross-checked against cbor/test-vectors appendix_a.json
// (https://github.com/cbor/test-vectors). Every one of them is in preferred serialization, so the
// encoder must reproduce it exactly.
const APPENDIX_A: [CborValue, string][] = [
  [0, '00'],
  [1, '01'],
  [10, '0a'],
  [23, '17'],
  [24, '1818'],
  [25, '1819'],
  [100, '1864'],
  [1000, '1903e8'],
  [1000000, '1a000f4240'],
  [1000000000000, '1b000000e8d4a51000'],
  [-1, '20'],
  [-10, '29'],
  [-100, '3863'],
  [-1000, '3903e7'],
  [false, 'f4'],
  [true, 'f5'],
  [null, 'f6'],
  [undefined, 'f7'],
  [new Tagged(0, '2013-03-21T20:04:00Z'), 'c074323031332d30332d32315432303a30343a30305a'],
  [new Tagged(1, 1363896240), 'c11a514b67b0'],
  [new Tagged(23, unhex('01020304')), 'd74401020304'],
  [new Tagged(24, unhex('6449455446')), 'd818456449455446'],
  [new Tagged(32, 'http://www.example.com'), 'd82076687474703a2f2f7777772e6578616d706c652e636f6d'],
  [new Uint8Array(0), '40'],
  [unhex('01020304'), '4401020304'],
  ['', '60'],
  ['a', '6161'],
  ['IETF', '6449455446'],
  ['"\\', '62225c'],
  ['\u00fc', '62c3bc'],
  ['\u6c34', '63e6b0b4'],
  ['\ud800\udd51', '64f0908591'],
  [[], '80'],
  [[1, 2, 3], '83010203'],
  [[1, [2, 3], [4, 5]], '8301820203820405'],
  [Array.from({ length: 25 }, (_, i) => i + 1), '98190102030405060708090a0b0c0d0e0f101112131415161718181819'],
  [new Map(), 'a0'],
  [new Map([[1, 2], [3, 4]]), 'a201020304'],
  [new Map<string, CborValue>([['a', 1], ['b', [2, 3]]]), 'a26161016162820203'],
  [['a', new Map([['b', 'c']])], '826161a161626163'],
  [new Map([['a', 'A'], ['b', 'B'], ['c', 'C'], ['d', 'D'], ['e', 'E']]), 'a56161614161626142616361436164614461656145'],
];

describe('encode: RFC 8949 Appendix A known answers', () => {
  for (const [value, want] of APPENDIX_A) {
    test(want, () => assert.equal(hex(encode(value)), want));
  }
});

describe('encode: shortest argument at every boundary (RFC 8949 §4.2.1 rule 1)', () => {
  const cases: [number, string][] = [
    [23, '17'],
    [24, '1818'],
    [255, '18ff'],
    [256, '190100'],
    [65535, '19ffff'],
    [65536, '1a00010000'],
    [4294967295, '1affffffff'],
    [4294967296, '1b0000000100000000'],
    [Number.MAX_SAFE_INTEGER, '1b001fffffffffffff'],
    [-24, '37'],
    [-25, '3818'],
    [-256, '38ff'],
    [-257, '390100'],
    [-65537, '3a00010000'],
    [-Number.MAX_SAFE_INTEGER, '3b001ffffffffffffe'],
  ];
  for (const [n, want] of cases) test(`${n}`, () => assert.equal(hex(encode(n)), want));
  test('-0 is the integer 0', () => assert.equal(hex(encode(-0)), '00'));
  test('a 24-byte string takes a one-byte length', () => assert.equal(hex(encode(new Uint8Array(24))).slice(0, 4), '5818'));
});

describe('encode: map keys sorted by their encodings (RFC 8949 §4.2.1 rule 3)', () => {
  test('integers before text, short before long, negative after positive', () => {
    const m = new Map<string | number, CborValue>([
      ['b', 1],
      [-1, 2],
      [100, 3],
      ['a', 4],
      [1, 5],
      ['aa', 6],
      [-65537, 7],
    ]);
    // 0x01 < 0x1864 < 0x20 < 0x3a00010000 < 0x6161 < 0x6162 < 0x626161
    assert.equal(hex(encode(m)), 'a7' + '0105' + '186403' + '2002' + '3a0001000007' + '616104' + '616201' + '62616106');
  });
  test('the order of insertion does not change the bytes (property)', () => {
    fc.assert(
      fc.property(fc.uniqueArray(fc.oneof(fc.maxSafeInteger(), fc.string({ maxLength: 6 })), { maxLength: 12 }), fc.nat(), (keys, seed) => {
        const a = new Map(keys.map((k, i) => [k, i]));
        const shuffled = [...keys].sort((x, y) => ((String(x).length * 31 + seed) % 7) - ((String(y).length * 17 + seed) % 5));
        const b = new Map(shuffled.map((k) => [k, keys.indexOf(k)]));
        assert.deepEqual(encode(a), encode(b));
      }),
      { numRuns: 300 },
    );
  });
});

describe('encode: integers beyond 2^53-1, floats and bigints are unsupported', () => {
  for (const v of [2 ** 53, -(2 ** 53), 1e300, 0.5, -1.25, NaN, Infinity, -Infinity]) {
    test(String(v), () => void throwsCode(() => encode(v), 'WITNESS_ERR_CBOR_UNSUPPORTED'));
  }
  test('bigint', () => void throwsCode(() => encode(1n as unknown as CborValue), 'WITNESS_ERR_CBOR_UNSUPPORTED'));
  test('a tag number beyond 2^53-1', () => void throwsCode(() => new Tagged(2 ** 60, 0), 'WITNESS_ERR_CBOR_UNSUPPORTED'));
});

describe('encode: values outside the data model are invalid arguments', () => {
  const bad: [string, unknown][] = [
    ['plain object', { a: 1 }],
    ['function', () => 1],
    ['symbol', Symbol('x')],
    ['Date', new Date(0)],
    ['lone high surrogate', 'a\ud800b'],
    ['lone low surrogate', '\udc00'],
    ['map key of type boolean', new Map([[true, 1]])],
    ['map key Uint8Array', new Map([[new Uint8Array(1), 1]])],
  ];
  for (const [name, v] of bad) test(name, () => void throwsCode(() => encode(v as CborValue), 'WITNESS_ERR_INVALID_ARGUMENT'));
  test('negative tag number', () => void throwsCode(() => new Tagged(-1, 0), 'WITNESS_ERR_INVALID_ARGUMENT'));
  test('the message names the path of the bad item', () => {
    const e = throwsCode(() => encode([1, new Map<string, CborValue>([['k', [0, 0.5]]])]), 'WITNESS_ERR_CBOR_UNSUPPORTED');
    assert.match(e.message, /\$\[1\]\{"k"\}\[1\]/);
  });
});

describe('encode: nesting deeper than MAX_NESTING is unsupported', () => {
  const nest = (n: number): CborValue => (n === 0 ? 0 : [nest(n - 1)]);
  test(`${MAX_NESTING} nested arrays encode and decode`, () => assert.deepEqual(decode(encode(nest(MAX_NESTING))), nest(MAX_NESTING)));
  test(`${MAX_NESTING + 1} nested arrays`, () => void throwsCode(() => encode(nest(MAX_NESTING + 1)), 'WITNESS_ERR_CBOR_UNSUPPORTED'));
  test('a cycle is caught by the bound, not by a stack overflow', () => {
    const a: CborValue[] = [];
    a.push(a);
    throwsCode(() => encode(a), 'WITNESS_ERR_CBOR_UNSUPPORTED');
  });
});

describe('encode: text is UTF-8', () => {
  test('agrees with TextEncoder on random well-formed strings (property)', () => {
    fc.assert(
      fc.property(fc.string({ unit: 'binary', maxLength: 40 }), (s) => {
        const out = encode(s);
        const body = new TextEncoder().encode(s);
        assert.deepEqual(out.subarray(out.length - body.length), body);
        assert.equal(decode(out), s);
      }),
      { numRuns: 500 },
    );
  });
  test('a leading BOM is kept', () => assert.equal(decode(encode('\ufeffx')), '\ufeffx'));
});
