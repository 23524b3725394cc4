import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { generateKeyPairSync } from 'node:crypto';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { formatPublicKey, parsePublicKey, readPublicKey, readSeed, writeKeyPair } from '../../../shared/keys/key-file.js';
import { publicKeyFromSeed } from '../../../shared/keys/ed25519.js';
import { verifierKey } from '../../../shared/keys/key-id.js';
import { WitnessError, type WitnessErrorCode } from '../../../shared/errors.js';

const hex = (b: Uint8Array): string => Buffer.from(b).toString('hex');
const B64URL = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';

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

// RFC 8410 §10.3 (example Ed25519 private key, PKCS#8 PEM) and §10.1 (its public key, SPKI):
// https://www.rfc-editor.org/rfc/rfc8410#section-10
const RFC8410_PEM = '-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEINTuctv5E1hK1bbY8fdp+K06/nwoy/HU++CXqI9EdVhC\n-----END PRIVATE KEY-----\n';
const RFC8410_SEED = 'd4ee72dbf913584ad5b6d8f1f769f8ad3afe7c28cbf1d4fbe097a88f44755842';
const RFC8410_PUBLIC = '19bf44096984cdfe8541bac167dc3b96c85086aa30b6b6cb0c5c38ad703166e1';

let root = '';
let n = 0;
/** A fresh empty directory per test. */
const freshDir = (): string => join(root, `d${n++}`);
const modeOf = (p: string): number => statSync(p).mode & 0o777;

before(() => {
  root = mkdtempSync(join(tmpdir(), 'witness-key-file-'));
});
after(() => rmSync(root, { recursive: true, force: true }));

describe('writeKeyPair', () => {
  test('writes NAME.key (PKCS#8 PEM, 0600) and NAME.pub (base64url + newline, 0644)', () => {
    const dir = freshDir();
    const w = writeKeyPair(dir, 'device');
    assert.equal(w.keyPath, join(dir, 'device.key'));
    assert.equal(w.publicKeyPath, join(dir, 'device.pub'));
    assert.equal(modeOf(w.keyPath), 0o600);
    assert.equal(modeOf(w.publicKeyPath), 0o644);
    assert.match(readFileSync(w.keyPath, 'utf8'), /^-----BEGIN PRIVATE KEY-----\n[A-Za-z0-9+/=]{64}\n-----END PRIVATE KEY-----\n$/);
    const pub = readFileSync(w.publicKeyPath, 'utf8');
    assert.match(pub, /^[A-Za-z0-9_-]{43}\n$/);
    assert.deepEqual(readPublicKey(w.publicKeyPath), w.publicKey);
    assert.deepEqual(publicKeyFromSeed(readSeed(w.keyPath)), w.publicKey);
  });
  test('creates the directory with mode 0700', () => {
    const dir = join(freshDir(), 'keys');
    writeKeyPair(dir, 'k');
    assert.equal(modeOf(dir), 0o700);
  });
  test('the mode is 0600 whatever the umask', () => {
    const old = process.umask(0);
    try {
      const w = writeKeyPair(freshDir(), 'k');
      assert.equal(modeOf(w.keyPath), 0o600);
    } finally {
      process.umask(old);
    }
  });
  test('RFC 8410 §10.3: the given seed is written as the RFC example PEM, and read back', () => {
    const w = writeKeyPair(freshDir(), 'rfc', new Uint8Array(Buffer.from(RFC8410_SEED, 'hex')));
    assert.equal(readFileSync(w.keyPath, 'utf8'), RFC8410_PEM);
    assert.equal(hex(w.publicKey), RFC8410_PUBLIC);
    assert.equal(hex(readSeed(w.keyPath)), RFC8410_SEED);
  });
  test('a base name with a path separator is INVALID_ARGUMENT', () => void throwsCode(() => writeKeyPair(freshDir(), '../x'), 'WITNESS_ERR_INVALID_ARGUMENT'));
});

describe('writeKeyPair never overwrites (O_EXCL)', () => {
  test('a second call with the same name is KEY_FILE and leaves the first key as it was', () => {
    const dir = freshDir();
    const first = writeKeyPair(dir, 'broker');
    const before = readFileSync(first.keyPath, 'utf8');
    const e = throwsCode(() => writeKeyPair(dir, 'broker'), 'WITNESS_ERR_KEY_FILE');
    assert.match(e.message, /already exists/);
    assert.equal(e.details.path, first.keyPath);
    assert.equal(readFileSync(first.keyPath, 'utf8'), before);
    assert.deepEqual(readPublicKey(first.publicKeyPath), first.publicKey);
  });
  test('an existing .pub alone is refused too, and no .key is left behind', () => {
    const dir = freshDir();
    mkdirSync(dir, { recursive: true });
    writeFileSync(join(dir, 'a.pub'), 'old\n');
    throwsCode(() => writeKeyPair(dir, 'a'), 'WITNESS_ERR_KEY_FILE');
    assert.equal(existsSync(join(dir, 'a.key')), false);
    assert.equal(readFileSync(join(dir, 'a.pub'), 'utf8'), 'old\n');
  });
});

describe('readSeed refuses a key file that group or others can access', () => {
  for (const mode of [0o644, 0o640, 0o604, 0o660, 0o601]) {
    test(`mode 0${mode.toString(8)}`, () => {
      const w = writeKeyPair(freshDir(), 'k');
      chmodSync(w.keyPath, mode);
      const e = throwsCode(() => readSeed(w.keyPath), 'WITNESS_ERR_KEY_FILE');
      assert.ok(e.message.includes(`0${mode.toString(8)}`), 'the message gives the mode');
      assert.ok(e.message.includes(`chmod 600 ${w.keyPath}`), 'the message gives the command to run');
      assert.ok(e.message.includes(w.keyPath), 'the message names the file');
    });
  }
  test('mode 0400 is fine', () => {
    const w = writeKeyPair(freshDir(), 'k');
    chmodSync(w.keyPath, 0o400);
    assert.deepEqual(publicKeyFromSeed(readSeed(w.keyPath)), w.publicKey);
  });
});

describe('readSeed: a file that is not an Ed25519 PKCS#8 PEM is KEY_FILE', () => {
  const write = (content: string | Buffer): string => {
    const dir = freshDir();
    mkdirSync(dir, { recursive: true });
    const p = join(dir, 'k.key');
    writeFileSync(p, content, { mode: 0o600 });
    return p;
  };
  const cases: [string, () => string | Buffer][] = [
    ['garbage text', () => 'hello, I am not a key\n'],
    ['empty file', () => ''],
    ['random bytes', () => Buffer.from([0, 1, 2, 255, 254, 0x30, 0x2e])],
    ['PEM with a broken body', () => RFC8410_PEM.replace('MC4C', 'MC4D')],
    ['PEM cut short', () => RFC8410_PEM.slice(0, 50)],
    ['an X25519 key (same size, other OID)', () => generateKeyPairSync('x25519').privateKey.export({ format: 'pem', type: 'pkcs8' }).toString()],
    ['an EC P-256 key', () => generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey.export({ format: 'pem', type: 'pkcs8' }).toString()],
    [
      'an encrypted PKCS#8 key',
      () =>
        generateKeyPairSync('ed25519')
          .privateKey.export({ format: 'pem', type: 'pkcs8', cipher: 'aes-256-cbc', passphrase: 'pw' })
          .toString(),
    ],
    ['a public key', () => generateKeyPairSync('ed25519').publicKey.export({ format: 'pem', type: 'spki' }).toString()],
    ['a huge file', () => 'x'.repeat(100_000)],
  ];
  for (const [name, make] of cases) {
    test(name, () => {
      const p = write(make());
      const e = throwsCode(() => readSeed(p), 'WITNESS_ERR_KEY_FILE');
      assert.ok(e.message.includes(p), 'the message names the file');
    });
  }
  test('a missing file', () => void throwsCode(() => readSeed(join(freshDir(), 'nope.key')), 'WITNESS_ERR_KEY_FILE'));
  test('a directory', () => {
    const dir = freshDir();
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    throwsCode(() => readSeed(dir), 'WITNESS_ERR_KEY_FILE');
  });
  test('an Ed25519 key made by OpenSSL (not by Witness) is accepted', () => {
    const k = generateKeyPairSync('ed25519');
    const p = write(k.privateKey.export({ format: 'pem', type: 'pkcs8' }).toString());
    const raw = k.publicKey.export({ format: 'der', type: 'spki' }).subarray(12);
    assert.equal(hex(publicKeyFromSeed(readSeed(p))), raw.toString('hex'));
  });
});

describe('parsePublicKey', () => {
  const seed = new Uint8Array(Buffer.from(RFC8410_SEED, 'hex'));
  const pub = publicKeyFromSeed(seed);
  const b64u = Buffer.from(pub).toString('base64url');
  test('base64url of the raw key, with or without surrounding whitespace', () => {
    assert.deepEqual(parsePublicKey(b64u), pub);
    assert.deepEqual(parsePublicKey(`  ${b64u}\n`), pub);
  });
  test('a C2SP verifier key', () => assert.deepEqual(parsePublicKey(verifierKey('device-1', pub)), pub));
  test('formatPublicKey / parsePublicKey round trip (property)', () => {
    fc.assert(
      fc.property(fc.uint8Array({ minLength: 32, maxLength: 32 }), (s) => {
        const p = publicKeyFromSeed(s);
        const text = formatPublicKey(p);
        assert.equal(text.length, 43);
        assert.deepEqual(parsePublicKey(text), p);
      }),
      { numRuns: 100 },
    );
  });
  const bad: [string, string][] = [
    ['empty', ''],
    ['42 characters', b64u.slice(0, 42)],
    ['44 characters', `${b64u}A`],
    ['padded', `${b64u}=`],
    ['standard base64 alphabet', 'a/bcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQ'],
    // 43 characters hold 258 bits: the last character's two low bits must be zero.
    ['non-canonical last character (low bits set)', b64u.slice(0, 42) + B64URL[B64URL.indexOf(b64u[42]!) | 1]!],
    ['hex', RFC8410_PUBLIC],
  ];
  for (const [name, text] of bad) {
    test(`${name} is KEY_INVALID`, () => void throwsCode(() => parsePublicKey(text), 'WITNESS_ERR_KEY_INVALID'));
  }
  test('a small-order key is KEY_WEAK', () => void throwsCode(() => parsePublicKey(Buffer.from(new Uint8Array(32)).toString('base64url')), 'WITNESS_ERR_KEY_WEAK'));
  test('formatPublicKey of 31 bytes is KEY_INVALID', () => void throwsCode(() => formatPublicKey(new Uint8Array(31)), 'WITNESS_ERR_KEY_INVALID'));
});

describe('readPublicKey', () => {
  const put = (content: string): string => {
    const dir = freshDir();
    mkdirSync(dir, { recursive: true });
    const p = join(dir, 'k.pub');
    writeFileSync(p, content);
    return p;
  };
  test('garbage is KEY_FILE naming the file', () => {
    const p = put('not a key\n');
    const e = throwsCode(() => readPublicKey(p), 'WITNESS_ERR_KEY_FILE');
    assert.ok(e.message.includes(p));
  });
  test('a missing file is KEY_FILE', () => void throwsCode(() => readPublicKey(join(freshDir(), 'none.pub')), 'WITNESS_ERR_KEY_FILE'));
  test('a small-order key is KEY_WEAK naming the file', () => {
    const p = put(`${Buffer.from(new Uint8Array(32)).toString('base64url')}\n`);
    const e = throwsCode(() => readPublicKey(p), 'WITNESS_ERR_KEY_WEAK');
    assert.ok(e.message.includes(p));
  });
  test('a verifier key file is read', () => {
    const pub = new Uint8Array(Buffer.from(RFC8410_PUBLIC, 'hex'));
    assert.deepEqual(readPublicKey(put(`${verifierKey('broker', pub)}\n`)), pub);
  });
});
