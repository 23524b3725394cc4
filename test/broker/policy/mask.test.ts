import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { createHmac } from 'node:crypto';
import fc from 'fast-check';
import { canonicalJson, checkMaskPath, createMasker, maskBytes, maskPayload, parseMaskPath, pseudonym } from '../../../broker/policy/index.js';
import { WitnessError } from '../../../shared/errors.js';

const KEY = new Uint8Array(32).fill(7);
const KEY2 = new Uint8Array(32).fill(8);
const PSEUDONYM = /^~p:[A-Za-z0-9_-]{22}$/;
const utf8 = (s: string): Uint8Array => new TextEncoder().encode(s);

describe('pseudonyms', () => {
  test('"~p:" + base64url(HMAC-SHA256(key, canonical JSON))[:22]', () => {
    const want = '~p:' + createHmac('sha256', KEY).update('{"a":1,"b":[true,null]}').digest('base64url').slice(0, 22);
    assert.equal(pseudonym({ b: [true, null], a: 1 }, KEY), want);
    assert.match(want, PSEUDONYM);
  });
  test('deterministic: the same value masks alike, in any key order', () => {
    const a = maskPayload({ owner: { name: 'Ann', id: 7 } }, ['$.owner'], KEY) as { owner: string };
    const b = maskPayload({ owner: { id: 7, name: 'Ann' } }, ['$.owner'], KEY) as { owner: string };
    assert.equal(a.owner, b.owner);
    assert.match(a.owner, PSEUDONYM);
  });
  test('key-dependent, and different values differ', () => {
    assert.notEqual(pseudonym('Ann', KEY), pseudonym('Ann', KEY2));
    assert.notEqual(pseudonym('Ann', KEY), pseudonym('Anne', KEY));
    assert.notEqual(pseudonym(1, KEY), pseudonym('1', KEY), 'types are part of the value');
  });
  test('the value does not appear in the pseudonym', () => {
    fc.assert(
      fc.property(fc.string({ minLength: 4, maxLength: 20 }).filter((s) => /^[A-Za-z0-9]+$/.test(s)), (s) => {
        assert.ok(!pseudonym(s, KEY).includes(s));
      }),
    );
  });
  test('a key shorter than 16 bytes, or not bytes, is refused', () => {
    assert.throws(() => maskPayload({}, [], new Uint8Array(15)), (e) => e instanceof WitnessError && e.code === 'WITNESS_ERR_INVALID_ARGUMENT');
    assert.throws(() => maskPayload({}, [], 'key' as never), (e) => e instanceof WitnessError && e.code === 'WITNESS_ERR_INVALID_ARGUMENT');
    assert.throws(() => pseudonym('x', new Uint8Array(0)), (e) => e instanceof WitnessError && e.code === 'WITNESS_ERR_INVALID_ARGUMENT');
  });
});

describe('canonical JSON (RFC 8785)', () => {
  test('sorted keys, no whitespace, ECMAScript numbers', () => {
    assert.equal(canonicalJson({ b: 1, a: [1e21, 0.5, -0, 'é'], c: { z: null, y: false } }), '{"a":[1e+21,0.5,0,"é"],"b":1,"c":{"y":false,"z":null}}');
  });
  test('keys sort by UTF-16 code units (RFC 8785 §3.2.3)', () => {
    assert.equal(canonicalJson({ '\u20ac': 1, '\ud83d\ude00': 2, a: 3 }), '{"a":3,"€":1,"😀":2}');
  });
  test('non-JSON values are refused', () => {
    for (const v of [undefined, NaN, Infinity, () => 1, new Date(0), new Uint8Array(1), 1n]) {
      assert.throws(() => canonicalJson(v), (e) => e instanceof WitnessError && e.code === 'WITNESS_ERR_INVALID_ARGUMENT');
    }
  });
});

describe('paths', () => {
  const doc = {
    owner: 'Ann',
    location: { lat: 52.1, lon: 4.3 },
    readings: [
      { v: 1, serial: 'A1' },
      { v: 2, serial: 'B2' },
      { v: 3 },
    ],
    tags: ['x', 'y'],
  };

  test('$.a.b masks a nested value and leaves its siblings', () => {
    const m = maskPayload(doc, ['$.location.lat'], KEY) as typeof doc;
    assert.match(String(m.location.lat), PSEUDONYM);
    assert.equal(m.location.lon, 4.3);
    assert.equal(m.owner, 'Ann');
  });
  test('$.arr[*].c masks in every element that has it', () => {
    const m = maskPayload(doc, ['$.readings[*].serial'], KEY) as { readings: Array<{ v: number; serial?: string }> };
    assert.equal(m.readings[0]!.serial, pseudonym('A1', KEY));
    assert.equal(m.readings[1]!.serial, pseudonym('B2', KEY));
    assert.equal('serial' in m.readings[2]!, false, 'missing in one element: ignored there');
    assert.deepEqual(m.readings.map((r) => r.v), [1, 2, 3]);
  });
  test('$.arr[0] and $.arr[*]', () => {
    assert.deepEqual((maskPayload(doc, ['$.tags[0]'], KEY) as typeof doc).tags, [pseudonym('x', KEY), 'y']);
    assert.deepEqual((maskPayload(doc, ['$.tags[*]'], KEY) as typeof doc).tags, [pseudonym('x', KEY), pseudonym('y', KEY)]);
  });
  test('a whole subtree and the whole document', () => {
    assert.equal((maskPayload(doc, ['$.location'], KEY) as { location: unknown }).location, pseudonym({ lon: 4.3, lat: 52.1 }, KEY));
    assert.equal(maskPayload(doc, ['$'], KEY), pseudonym(doc, KEY));
  });
  test('missing paths are ignored and return the same object', () => {
    for (const p of ['$.nope', '$.owner.deeper', '$.tags[5]', '$.location[*]', '$.readings[*].nope', '$.tags.length']) {
      assert.equal(maskPayload(doc, [p], KEY), doc, p);
    }
  });
  test('the input is never mutated', () => {
    const before = JSON.stringify(doc);
    maskPayload(doc, ['$.owner', '$.location.lat', '$.readings[*].serial', '$.tags[1]'], KEY);
    assert.equal(JSON.stringify(doc), before);
  });
  test('a JSON key "__proto__" is masked as a plain key, nothing is polluted', () => {
    const parsed = JSON.parse('{"__proto__": {"polluted": 1}, "a": 1}') as Record<string, unknown>;
    const m = maskPayload(parsed, ['$.__proto__'], KEY) as Record<string, unknown>;
    assert.equal(Object.getPrototypeOf(m), Object.prototype);
    assert.match(String(Object.getOwnPropertyDescriptor(m, '__proto__')?.value), PSEUDONYM);
    assert.equal(({} as Record<string, unknown>).polluted, undefined);
  });
  test('path syntax', () => {
    for (const p of ['$', '$.a', '$.a.b', '$.arr[*].c', '$.arr[0]', '$[0]', '$.a-b.c_d', '$.x[12][*]']) assert.equal(checkMaskPath(p), undefined, p);
    for (const p of ['', 'a.b', '$.', '$..a', '$.a[', '$.a[-1]', '$.a[01]', '$.a b', '$[x]', '$.a.']) assert.notEqual(checkMaskPath(p), undefined, p);
    assert.deepEqual(parseMaskPath('$.arr[*].c[2]'), [{ key: 'arr' }, { all: true }, { key: 'c' }, { index: 2 }]);
    assert.throws(() => parseMaskPath('$..x'), (e) => e instanceof WitnessError && e.code === 'WITNESS_ERR_INVALID_ARGUMENT');
  });
});

describe('payload bytes', () => {
  test('a JSON payload is parsed and masked', () => {
    const r = maskBytes(utf8('{"owner":"Ann","t":21.5}'), ['$.owner'], KEY);
    assert.equal(r.masked, true);
    assert.deepEqual(r.body, { owner: pseudonym('Ann', KEY), t: 21.5 });
  });
  test('not JSON: unchanged, flagged as impossible to mask', () => {
    const r = maskBytes(utf8('temp=21.5'), ['$.owner'], KEY);
    assert.deepEqual(r, { masked: false, body: undefined, reason: 'not JSON' });
  });
  test('not UTF-8: flagged too', () => {
    const r = maskBytes(new Uint8Array([0x7b, 0xff, 0x7d]), ['$.a'], KEY);
    assert.equal(r.masked, false);
    assert.equal(r.reason, 'not UTF-8');
  });
  test('a masker copies its key: wiping the caller\'s copy changes nothing', () => {
    const k = Uint8Array.from(KEY);
    const mask = createMasker(k);
    k.fill(0);
    assert.deepEqual(mask(utf8('{"a":"x"}'), ['$.a']).body, { a: pseudonym('x', KEY) });
  });
});
