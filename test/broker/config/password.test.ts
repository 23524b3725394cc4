import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { scryptSync } from 'node:crypto';
import { SCRYPT_DEFAULTS, checkPasswordHash, hashPassword, verifyPassword } from '../../../broker/config/index.js';
import { WitnessError } from '../../../shared/errors.js';

const FORMAT = /^scrypt\$16384\$8\$1\$([A-Za-z0-9+/]+={0,2})\$([A-Za-z0-9+/]+={0,2})$/;

describe('hashPassword', () => {
  test('writes scrypt$16384$8$1$<16-byte salt>$<32-byte key>', () => {
    const h = hashPassword('correct horse');
    const m = FORMAT.exec(h);
    assert.ok(m, h);
    assert.equal(Buffer.from(m[1]!, 'base64').length, SCRYPT_DEFAULTS.saltBytes);
    assert.equal(Buffer.from(m[2]!, 'base64').length, SCRYPT_DEFAULTS.keyBytes);
    assert.equal(checkPasswordHash(h), undefined);
  });

  test('is scrypt (RFC 7914) of the UTF-8 password under the salt', () => {
    const h = hashPassword('pässwörd');
    const [, salt, key] = FORMAT.exec(h)!;
    const expected = scryptSync(Buffer.from('pässwörd', 'utf8'), Buffer.from(salt!, 'base64'), 32, { N: 16384, r: 8, p: 1 });
    assert.equal(expected.toString('base64'), key);
  });

  test('salts: the same password hashes differently each time', () => {
    assert.notEqual(hashPassword('x'), hashPassword('x'));
  });
});

describe('verifyPassword', () => {
  const hash = hashPassword('s3cret');

  test('the right password verifies, as a string or as bytes', () => {
    assert.equal(verifyPassword(hash, 's3cret'), true);
    assert.equal(verifyPassword(hash, new TextEncoder().encode('s3cret')), true);
  });

  test('a wrong password does not', () => {
    assert.equal(verifyPassword(hash, 's3cres'), false);
    assert.equal(verifyPassword(hash, ''), false);
    assert.equal(verifyPassword(hash, 's3cret '), false);
  });

  test('one flipped bit in the stored key fails', () => {
    const parts = hash.split('$');
    const key = Buffer.from(parts[5]!, 'base64');
    key[7]! ^= 0x01;
    parts[5] = key.toString('base64');
    assert.equal(verifyPassword(parts.join('$'), 's3cret'), false);
  });

  test('parameters are read from the hash (a cheaper N still verifies)', () => {
    const salt = Buffer.alloc(16, 7);
    const key = scryptSync('pw', salt, 32, { N: 1024, r: 8, p: 1 });
    assert.equal(verifyPassword(`scrypt$1024$8$1$${salt.toString('base64')}$${key.toString('base64')}`, 'pw'), true);
  });
});

describe('malformed hashes', () => {
  const salt = Buffer.alloc(16, 1).toString('base64');
  const key = Buffer.alloc(32, 2).toString('base64');
  const cases: Array<[string, string, RegExp]> = [
    ['another scheme', `bcrypt$16384$8$1$${salt}$${key}`, /6 fields/],
    ['too few fields', `scrypt$16384$8$1$${salt}`, /6 fields/],
    ['N not a power of two', `scrypt$1000$8$1$${salt}$${key}`, /power of two/],
    ['N above 2^20', `scrypt$${2 ** 21}$8$1$${salt}$${key}`, /power of two/],
    ['N with a leading zero', `scrypt$016384$8$1$${salt}$${key}`, /power of two/],
    ['r zero', `scrypt$16384$0$1$${salt}$${key}`, /r must be/],
    ['p too large', `scrypt$16384$8$99$${salt}$${key}`, /p must be/],
    ['too much memory', `scrypt$${2 ** 20}$32$1$${salt}$${key}`, /MiB/],
    ['salt not base64', `scrypt$16384$8$1$no*base64$${key}`, /salt/],
    ['salt too short', `scrypt$16384$8$1$${Buffer.alloc(4).toString('base64')}$${key}`, /salt/],
    ['key too short', `scrypt$16384$8$1$${salt}$${Buffer.alloc(8).toString('base64')}`, /key must be/],
    ['empty', '', /6 fields/],
  ];
  for (const [name, h, why] of cases) {
    test(`${name}: refused with WITNESS_ERR_PASSWORD_HASH_MALFORMED`, () => {
      assert.match(checkPasswordHash(h) ?? '', why);
      assert.throws(
        () => verifyPassword(h, 'pw'),
        (e) => e instanceof WitnessError && e.code === 'WITNESS_ERR_PASSWORD_HASH_MALFORMED' && why.test(e.message),
      );
    });
  }
});
