import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { sha256 } from '@noble/hashes/sha2.js';
import { deviceKid, keyHash, parseDeviceKid, parseVerifierKey, verifierKey } from '../../../shared/keys/key-id.js';
import { nodeBackend, publicKeyFromSeed, sign } from '../../../shared/keys/ed25519.js';
import { nobleBackend } from '../../../shared/keys/ed25519-noble.js';
import { WitnessError, type WitnessErrorCode } from '../../../shared/errors.js';

const hex = (b: Uint8Array): string => Buffer.from(b).toString('hex');

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

/** C2SP signed-note key hash, computed independently of key-id.ts (and with @noble/hashes). */
function referenceKeyHash(name: string, publicKey: Uint8Array): Uint8Array {
  const n = new TextEncoder().encode(name);
  const buf = new Uint8Array(n.length + 2 + publicKey.length);
  buf.set(n, 0);
  buf[n.length] = 0x0a; // "\n"
  buf[n.length + 1] = 0x01; // Ed25519
  buf.set(publicKey, n.length + 2);
  return sha256(buf).subarray(0, 4);
}

// Known answers: the example of golang.org/x/mod/sumdb/note (note.go package documentation and
// note_test.go), https://pkg.go.dev/golang.org/x/mod/sumdb/note — the reference implementation
// of C2SP signed-note (https://c2sp.org/signed-note).
const PETER_VKEY = 'PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW';
const PETER_SKEY = 'PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz';
const PETER_TEXT = "If you think cryptography is the answer to your problem,\nthen you don't know what your problem is.\n";
const PETER_SIG = 'x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=';
const ENOCH_VKEY = 'EnochRoot+af0cfe78+ATtqJ7zOtqQtYqOo0CpvDXNlMhV3HeJDpjrASKGLWdop';
// transparency-dev/formats note tests (note_cosigv1_test.go): an Ed25519 verifier key whose
// base64 holds a '+', so the string must be split at its first two '+' only.
const PLUS_VKEY = 'TEST+7997405c+AQcC+FTVKf0jlTdHDY3rbevmnKxxPjigCXlVtGe6RIr6';

describe('C2SP signed-note known answers', () => {
  test('PeterNeumann: parse, key hash, re-encode', () => {
    const k = parseVerifierKey(PETER_VKEY);
    assert.equal(k.name, 'PeterNeumann');
    assert.equal(hex(k.keyHash), 'c74f20a3');
    assert.equal(hex(keyHash('PeterNeumann', k.publicKey)), hex(referenceKeyHash('PeterNeumann', k.publicKey)));
    assert.equal(verifierKey('PeterNeumann', k.publicKey), PETER_VKEY);
  });
  test('PeterNeumann: the private key gives the public key and the published signature, on both backends', () => {
    // PRIVATE+KEY+name+hash+base64(0x01 || seed); the base64 itself may hold '+'.
    const seed = new Uint8Array(Buffer.from(PETER_SKEY.split('+').slice(4).join('+'), 'base64').subarray(1));
    assert.equal(seed.length, 32);
    const { publicKey } = parseVerifierKey(PETER_VKEY);
    const blob = Buffer.from(PETER_SIG, 'base64');
    assert.equal(blob.subarray(0, 4).toString('hex'), 'c74f20a3', 'a note signature starts with the key hash');
    for (const b of [nodeBackend, nobleBackend]) {
      assert.deepEqual(publicKeyFromSeed(seed, b), publicKey);
      assert.equal(hex(sign(seed, new TextEncoder().encode(PETER_TEXT), b)), hex(blob.subarray(4)));
    }
  });
  test('EnochRoot', () => {
    const k = parseVerifierKey(ENOCH_VKEY);
    assert.equal(hex(k.keyHash), 'af0cfe78');
    assert.equal(hex(referenceKeyHash('EnochRoot', k.publicKey)), 'af0cfe78');
    assert.equal(verifierKey('EnochRoot', k.publicKey), ENOCH_VKEY);
  });
  test("a key whose base64 holds '+'", () => {
    const k = parseVerifierKey(PLUS_VKEY);
    assert.equal(k.name, 'TEST');
    assert.equal(hex(k.keyHash), '7997405c');
    assert.equal(verifierKey('TEST', k.publicKey), PLUS_VKEY);
  });
});

describe('verifierKey / parseVerifierKey round trip (property)', () => {
  const name = fc.stringMatching(/^[A-Za-z0-9._\/:-]{1,24}$/);
  test('random names and keys', () => {
    fc.assert(
      fc.property(name, fc.uint8Array({ minLength: 32, maxLength: 32 }), (n, seed) => {
        const pub = publicKeyFromSeed(seed);
        const vkey = verifierKey(n, pub);
        const k = parseVerifierKey(vkey);
        assert.equal(k.name, n);
        assert.deepEqual(k.publicKey, pub);
        assert.deepEqual(k.keyHash, referenceKeyHash(n, pub));
      }),
      { numRuns: 200 },
    );
  });
});

describe('parseVerifierKey: a wrong hash is KEY_INVALID', () => {
  test('hash of another name', () => void throwsCode(() => parseVerifierKey(PETER_VKEY.replace('PeterNeumann', 'PeterNeumanm')), 'WITNESS_ERR_KEY_INVALID'));
  test('one hex digit changed', () => void throwsCode(() => parseVerifierKey(PETER_VKEY.replace('c74f20a3', 'c74f20a4')), 'WITNESS_ERR_KEY_INVALID'));
  test('upper-case hex', () => void throwsCode(() => parseVerifierKey(PETER_VKEY.replace('c74f20a3', 'C74F20A3')), 'WITNESS_ERR_KEY_INVALID'));
  test('one key bit changed', () => void throwsCode(() => parseVerifierKey(PETER_VKEY.replace('ARpc', 'ARpd')), 'WITNESS_ERR_KEY_INVALID'));
});

describe('parseVerifierKey: malformed strings are KEY_INVALID', () => {
  const cases: [string, string][] = [
    ['no parts', 'PeterNeumann'],
    ['two parts', 'PeterNeumann+c74f20a3'],
    ['empty name', '+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW'],
    ['wrong key type 0x02', 'PeterNeumann+c74f20a3+Ahpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW'],
    ['key cut short', 'PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10'],
    ['junk character in the base64', 'PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy1!0TW'],
    ['base64url instead of base64', 'PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq_LDE4izWy10TW'],
    ['not a string', 42 as unknown as string],
  ];
  for (const [name, v] of cases) test(name, () => void throwsCode(() => parseVerifierKey(v), 'WITNESS_ERR_KEY_INVALID'));
  test('a small-order key is KEY_WEAK', () => {
    const identity = new Uint8Array(32);
    identity[0] = 1;
    const data = Buffer.concat([Uint8Array.of(1), identity]).toString('base64');
    const h = hex(referenceKeyHash('x', identity));
    throwsCode(() => parseVerifierKey(`x+${h}+${data}`), 'WITNESS_ERR_KEY_WEAK');
  });
  test('a name with a space is INVALID_ARGUMENT', () => void throwsCode(() => keyHash('a b', new Uint8Array(32)), 'WITNESS_ERR_INVALID_ARGUMENT'));
});

describe('deviceKid', () => {
  test('is the UTF-8 of deviceId+hex(keyhash) and parses back', () => {
    const { publicKey } = parseVerifierKey(PETER_VKEY);
    const kid = deviceKid('PeterNeumann', publicKey);
    assert.equal(new TextDecoder().decode(kid), 'PeterNeumann+c74f20a3');
    const p = parseDeviceKid(kid);
    assert.equal(p.deviceId, 'PeterNeumann');
    assert.equal(hex(p.keyHash), 'c74f20a3');
  });
  test('a kid without a hash is KEY_INVALID', () => void throwsCode(() => parseDeviceKid(new TextEncoder().encode('device-7')), 'WITNESS_ERR_KEY_INVALID'));
});
