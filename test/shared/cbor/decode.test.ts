import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { encode, decode, Tagged, MAX_NESTING, type CborKey, type CborValue } from '../../../shared/cbor/index.js';
import { WitnessError, type WitnessErrorCode } from '../../../shared/errors.js';

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

const CBOR_CODES = new Set<string>(['WITNESS_ERR_CBOR_MALFORMED', 'WITNESS_ERR_CBOR_UNSUPPORTED']);

/** Arbitrary values of the data model, nested at most 6 deep. */
const key: fc.Arbitrary<CborKey> = fc.oneof(fc.maxSafeInteger(), fc.string({ unit: 'binary', maxLength: 8 }));
const { value } = fc.letrec<{ value: CborValue }>((tie) => ({
  value: fc.oneof(
    { depthSize: 'small', maxDepth: 6 },
    fc.maxSafeInteger(),
    fc.integer({ min: -70000, max: 70000 }),
    fc.string({ unit: 'binary', maxLength: 30 }),
    fc.uint8Array({ maxLength: 40 }),
    fc.constantFrom<CborValue>(true, false, null, undefined),
    fc.array(tie('value'), { maxLength: 5 }),
    fc.uniqueArray(fc.tuple(key, tie('value')), { selector: ([k]) => k, maxLength: 5 }).map((es) => new Map(es)),
    fc.tuple(fc.maxSafeNat(), tie('value')).map(([t, v]) => new Tagged(t, v)),
  ),
}));

describe('decode: RFC 8949 Appendix A examples', () => {
  // https://www.rfc-editor.org/rfc/rfc8949#appendix-A (see encode.test.ts); decode direction.
  const cases: [string, CborValue][] = [
    ['1b000000e8d4a51000', 1000000000000],
    ['3903e7', -1000],
    ['c11a514b67b0', new Tagged(1, 1363896240)],
    ['64f0908591', '\ud800\udd51'],
    ['8301820203820405', [1, [2, 3], [4, 5]]],
    ['a26161016162820203', new Map<CborKey, CborValue>([['a', 1], ['b', [2, 3]]])],
    ['a201020304', new Map([[1, 2], [3, 4]])],
    ['f7', undefined],
  ];
  for (const [h, want] of cases) test(h, () => assert.deepEqual(decode(unhex(h)), want));

  test('integer map labels stay numbers', () => {
    const m = decode(unhex('a2012703f6')) as Map<CborKey, CborValue>;
    assert.deepEqual([...m.keys()], [1, 3]);
    assert.equal(m.get(1), -8);
  });
  test('byte strings are copies, not views into the input', () => {
    const input = unhex('43010203');
    const out = decode(input) as Uint8Array;
    input[1] = 0xff;
    assert.deepEqual(out, Uint8Array.of(1, 2, 3));
  });
  test('arguments need not be in shortest form (RFC 8949 §5.2: a generic decoder accepts them)', () => {
    assert.equal(decode(unhex('1b0000000000000001')), 1);
    assert.equal(decode(unhex('1800')), 0);
  });
  test('2^53-1 and -(2^53-1) are the extremes', () => {
    assert.equal(decode(unhex('1b001fffffffffffff')), Number.MAX_SAFE_INTEGER);
    assert.equal(decode(unhex('3b001ffffffffffffe')), -Number.MAX_SAFE_INTEGER);
  });
});

describe('decode(encode(x)) round trip (property)', () => {
  test('any value of the data model', () => {
    fc.assert(
      fc.property(value, (v) => {
        const bytes = encode(v);
        const back = decode(bytes);
        assert.deepEqual(back, v);
        // And the encoding is canonical: re-encoding what was decoded gives the same bytes.
        assert.deepEqual(encode(back), bytes);
      }),
      { numRuns: 1000 },
    );
  });
});

describe('decode: random and mutated bytes only ever throw a CBOR WitnessError (property)', () => {
  const check = (bytes: Uint8Array): void => {
    let v: CborValue;
    try {
      v = decode(bytes);
    } catch (e) {
      assert.ok(e instanceof WitnessError && CBOR_CODES.has(e.code), `unexpected ${String(e)} for ${Buffer.from(bytes).toString('hex')}`);
      return;
    }
    // Anything accepted is in the data model: it re-encodes and decodes to itself.
    assert.deepEqual(decode(encode(v)), v);
  };
  test('random bytes', () => {
    fc.assert(fc.property(fc.uint8Array({ maxLength: 48 }), check), { numRuns: 5000 });
  });
  test('valid encodings with one byte replaced, or cut short', () => {
    fc.assert(
      fc.property(value, fc.nat(), fc.nat(255), fc.boolean(), (v, at, b, cut) => {
        const bytes = encode(v).slice();
        const i = at % bytes.length;
        if (cut) check(bytes.subarray(0, i));
        else {
          bytes[i] = b;
          check(bytes);
        }
      }),
      { numRuns: 3000 },
    );
  });
});

describe('decode: not well-formed input (cbor/test-vectors fail.json classes, RFC 8949 Appendix F)', () => {
  // The classes of https://github.com/cbor/test-vectors/blob/master/fail.json, generated here.
  test('reserved additional information 28-30 on every major type', () => {
    for (let major = 0; major < 8; major++) {
      for (const info of [28, 29, 30]) {
        const e = throwsCode(() => decode(Uint8Array.of((major << 5) | info)), 'WITNESS_ERR_CBOR_MALFORMED');
        assert.match(e.message, /reserved additional information/);
      }
    }
  });
  test('additional information 31 on major types 0, 1 and 6', () => {
    for (const b of [0x1f, 0x3f, 0xdf]) throwsCode(() => decode(Uint8Array.of(b)), 'WITNESS_ERR_CBOR_MALFORMED');
  });
  test('a stray break (0xff)', () => void throwsCode(() => decode(unhex('ff')), 'WITNESS_ERR_CBOR_MALFORMED'));
  test('two-byte simple values below 32 (0xf800-0xf81f)', () => {
    for (let v = 0; v < 32; v++) throwsCode(() => decode(Uint8Array.of(0xf8, v)), 'WITNESS_ERR_CBOR_MALFORMED');
  });
});

describe('decode: truncated input is MALFORMED with the offset', () => {
  const cases: [string, string][] = [
    ['', 'empty input'],
    ['18', 'uint: missing 1-byte argument'],
    ['19 01', 'uint: 2-byte argument cut'],
    ['1a 000102', 'uint: 4-byte argument cut'],
    ['1b 00000000000000', 'uint: 8-byte argument cut'],
    ['43 0102', 'byte string shorter than announced'],
    ['63 6161', 'text string shorter than announced'],
    ['83 0102', 'array with a missing item'],
    ['a2 0102 03', 'map with a missing value'],
    ['c1', 'tag without content'],
    ['9b 00000000ffffffff 00', 'array announcing 2^32-1 items'],
    ['5b 001fffffffffffff', 'byte string announcing 2^53-1 bytes'],
    ['5b ffffffffffffffff', 'byte string announcing 2^64-1 bytes'],
  ];
  for (const [h, name] of cases) {
    test(name, () => {
      const e = throwsCode(() => decode(unhex(h.replace(/ /g, ''))), 'WITNESS_ERR_CBOR_MALFORMED');
      assert.equal(typeof e.details.offset, 'number');
      assert.match(e.message, /byte offset \d+/);
    });
  }
});

describe('decode: trailing bytes are MALFORMED', () => {
  test('one item then another', () => {
    const e = throwsCode(() => decode(unhex('0101')), 'WITNESS_ERR_CBOR_MALFORMED');
    assert.equal(e.details.offset, 1);
  });
  test('a complete envelope-like array then garbage', () => void throwsCode(() => decode(unhex('8201020000')), 'WITNESS_ERR_CBOR_MALFORMED'));
});

describe('decode: invalid UTF-8 is MALFORMED', () => {
  const cases: [string, string][] = [
    ['61 80', 'lone continuation byte'],
    ['62 c328', 'bad continuation'],
    ['62 c0af', 'overlong encoding of "/"'],
    ['63 eda080', 'UTF-16 surrogate D800 encoded in UTF-8'],
    ['64 f4908080', 'code point above U+10FFFF'],
    ['61 ff', '0xFF'],
    ['62 e282', 'sequence cut by the string end'],
  ];
  for (const [h, name] of cases) test(name, () => void throwsCode(() => decode(unhex(h.replace(/ /g, ''))), 'WITNESS_ERR_CBOR_MALFORMED'));
  test('the same bytes as a byte string are fine', () => assert.deepEqual(decode(unhex('4180')), Uint8Array.of(0x80)));
});

describe('decode: duplicate map keys are MALFORMED (RFC 8949 §5.6)', () => {
  test('integer key twice', () => void throwsCode(() => decode(unhex('a2 0102 0103'.replace(/ /g, ''))), 'WITNESS_ERR_CBOR_MALFORMED'));
  test('text key twice', () => void throwsCode(() => decode(unhex('a2 616101 616102'.replace(/ /g, ''))), 'WITNESS_ERR_CBOR_MALFORMED'));
  test('the same value in two encodings (1 and 0x1801) is a duplicate', () => void throwsCode(() => decode(unhex('a2 0102 180103'.replace(/ /g, ''))), 'WITNESS_ERR_CBOR_MALFORMED'));
  test('1 and "1" are different keys', () => assert.equal((decode(unhex('a2 0102 613103'.replace(/ /g, ''))) as Map<CborKey, CborValue>).size, 2));
});

describe(`decode: nesting deeper than ${MAX_NESTING} is MALFORMED`, () => {
  const arrays = (n: number): Uint8Array => new Uint8Array([...new Array<number>(n - 1).fill(0x81), 0x80]);
  test(`${MAX_NESTING} nested arrays are accepted`, () => assert.ok(Array.isArray(decode(arrays(MAX_NESTING)))));
  test(`${MAX_NESTING + 1} nested arrays`, () => void throwsCode(() => decode(arrays(MAX_NESTING + 1)), 'WITNESS_ERR_CBOR_MALFORMED'));
  test('100000 nested arrays do not overflow the stack', () => void throwsCode(() => decode(arrays(100000)), 'WITNESS_ERR_CBOR_MALFORMED'));
  test('tags count as nesting', () => void throwsCode(() => decode(new Uint8Array([...new Array<number>(MAX_NESTING + 1).fill(0xc1), 0x00])), 'WITNESS_ERR_CBOR_MALFORMED'));
  test('maps count as nesting', () => {
    const maps = (n: number): Uint8Array => new Uint8Array([...new Array<number>(n).fill(0).flatMap(() => [0xa1, 0x00]), 0x00]);
    assert.ok(decode(maps(MAX_NESTING)) instanceof Map);
    throwsCode(() => decode(maps(MAX_NESTING + 1)), 'WITNESS_ERR_CBOR_MALFORMED');
  });
});

describe('decode: indefinite lengths are UNSUPPORTED', () => {
  // RFC 8949 Appendix A's indefinite-length examples.
  for (const h of ['5f42010243030405ff', '7f657374726561646d696e67ff', '9fff', '9f018202039f0405ffff', 'bf61610161629f0203ffff', '826161bf61626163ff']) {
    test(h, () => void throwsCode(() => decode(unhex(h)), 'WITNESS_ERR_CBOR_UNSUPPORTED'));
  }
});

describe('decode: floats are UNSUPPORTED', () => {
  // RFC 8949 Appendix A: 0.0, -0.0, 1.1, 100000.0, Infinity (half), NaN (double), 1(1363896240.5).
  for (const h of ['f90000', 'f98000', 'fb3ff199999999999a', 'fa47c35000', 'f97c00', 'fb7ff8000000000000', 'c1fb41d452d9ec200000']) {
    test(h, () => void throwsCode(() => decode(unhex(h)), 'WITNESS_ERR_CBOR_UNSUPPORTED'));
  }
});

describe('decode: big integers are UNSUPPORTED', () => {
  // RFC 8949 Appendix A: 2^64-1, -2^64, and the bignum tags 2 and 3 (whose content is a byte
  // string: the tag itself decodes, as Tagged, but the caller gets no number).
  test('18446744073709551615', () => void throwsCode(() => decode(unhex('1bffffffffffffffff')), 'WITNESS_ERR_CBOR_UNSUPPORTED'));
  test('-18446744073709551616', () => void throwsCode(() => decode(unhex('3bffffffffffffffff')), 'WITNESS_ERR_CBOR_UNSUPPORTED'));
  test('2^53', () => void throwsCode(() => decode(unhex('1b0020000000000000')), 'WITNESS_ERR_CBOR_UNSUPPORTED'));
  test('-(2^53)', () => void throwsCode(() => decode(unhex('3b001fffffffffffff')), 'WITNESS_ERR_CBOR_UNSUPPORTED'));
  test('a tag number beyond 2^53-1', () => void throwsCode(() => decode(unhex('dbffffffffffffffff00')), 'WITNESS_ERR_CBOR_UNSUPPORTED'));
  test('bignum tag 2 is a Tagged byte string', () => assert.deepEqual(decode(unhex('c249010000000000000000')), new Tagged(2, unhex('010000000000000000'))));
});

describe('decode: simple values other than false/true/null/undefined are UNSUPPORTED', () => {
  for (const h of ['f0', 'e0', 'f3', 'f820', 'f8ff']) test(h, () => void throwsCode(() => decode(unhex(h)), 'WITNESS_ERR_CBOR_UNSUPPORTED'));
});

describe('decode: map keys other than integers and text are UNSUPPORTED', () => {
  for (const h of ['a14100f6', 'a180f6', 'a1f5f6', 'a1c100f6']) test(h, () => void throwsCode(() => decode(unhex(h)), 'WITNESS_ERR_CBOR_UNSUPPORTED'));
});

describe('decode: input that is not a Uint8Array', () => {
  test('string', () => void throwsCode(() => decode('a0' as unknown as Uint8Array), 'WITNESS_ERR_INVALID_ARGUMENT'));
});
