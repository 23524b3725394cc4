/**
 * The connect decision, rule by rule (broker/identity/authenticator.ts). verifyPassword is
 * injected: its scrypt lives in broker/config/password.ts and has its own tests; here it is a
 * stand-in that records its calls.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { Authenticator, certFingerprint, normalizeFingerprint, type AuthDecision, type AuthInput, type AuthenticatorOptions } from '../../../broker/identity/authenticator.js';
import { TokenVerifier } from '../../../broker/identity/token-verifier.js';
import { DeviceRegistry } from '../../../broker/identity/registry.js';
import type { AuthenticatorLike } from '../../../broker/plugin.js';
import { hashPassword } from '../../../broker/config/password.js';
import { createConnectToken, TOKEN_USERNAME } from '../../../shared/token/connect-token.js';
import { publicKeyFromSeed, generateSeed } from '../../../shared/keys/ed25519.js';
import { keyHash } from '../../../shared/keys/key-id.js';
import { WitnessError } from '../../../shared/errors.js';

const T0 = 1_750_000_000_000;
const seed = new Uint8Array(32).fill(3);
const publicKey = publicKeyFromSeed(seed);
const HASH = Buffer.from(keyHash('dev-1', publicKey)).toString('hex');
const FP = 'ab'.repeat(32);
const utf8 = (s: string): Uint8Array => new TextEncoder().encode(s);

function setup(o: Partial<AuthenticatorOptions> = {}) {
  const registry = DeviceRegistry.empty('/nowhere');
  registry.add('dev-1', publicKey);
  const calls: [string, string][] = [];
  const auth = new Authenticator({
    registry,
    tokenVerifier: new TokenVerifier({ audience: 'mqtt-witness', now: () => T0 }),
    users: [{ username: 'alice', passwordHash: 'HASH(alice-secret)' }],
    certificates: [{ fingerprint: FP.toUpperCase().match(/../g)!.join(':'), identity: 'gateway-7' }],
    anonymous: false,
    verifyPassword: (hash, password) => {
      calls.push([hash, password]);
      if (hash === 'HASH(broken)') throw new Error('unparsable hash');
      return hash === `HASH(${password})`;
    },
    ...o,
  });
  const token = (x: { deviceId?: string; seed?: Uint8Array; now?: number } = {}) => {
    const s = x.seed ?? seed;
    return createConnectToken({ seed: s, publicKey: publicKeyFromSeed(s), deviceId: x.deviceId ?? 'dev-1', now: x.now ?? T0 });
  };
  return { auth, registry, calls, token };
}

function input(o: Partial<AuthInput> = {}): AuthInput {
  const clientId = o.clientId ?? 'dev-1';
  return { clientId, clientIdEmpty: clientId.length === 0, cleanSession: true, ...o };
}

function refused(d: AuthDecision, returnCode: number, reason: string, detail?: RegExp): void {
  assert.equal(d.ok, false, `expected a refusal (${reason}), got ${JSON.stringify(d)}`);
  if (d.ok) return;
  assert.equal(d.reason, reason, d.detail);
  assert.equal(d.returnCode, returnCode, d.reason);
  if (detail) assert.match(d.detail, detail);
}

test('Authenticator is what the plugin expects (AuthenticatorLike)', () => {
  const a: AuthenticatorLike = setup().auth;
  assert.equal(typeof a.authenticate, 'function');
});

describe('rule 1: zero-length client id with clean session 0 → CONNACK 2 [MQTT-3.1.3-8]', () => {
  test('refused even with otherwise good credentials', () => {
    const { auth } = setup({ anonymous: true });
    refused(auth.authenticate(input({ clientId: '', cleanSession: false })), 2, 'client-id:empty-persistent', /MQTT-3\.1\.3-8/);
    refused(auth.authenticate(input({ clientId: '', cleanSession: false, username: 'alice', password: utf8('alice-secret') })), 2, 'client-id:empty-persistent');
  });
  test('with clean session 1 it is accepted (the broker assigns an id)', () => {
    const { auth } = setup({ anonymous: true });
    assert.deepEqual(auth.authenticate(input({ clientId: '', cleanSession: true })), { ok: true, identity: 'anonymous', method: 'anonymous' });
  });
});

describe('rule 2: user name witness-token/v1 → connect token', () => {
  test('a good token proves device:ID+KEYHASH', () => {
    const { auth, token } = setup();
    assert.deepEqual(auth.authenticate(input({ username: TOKEN_USERNAME, password: token() })), { ok: true, identity: `device:dev-1+${HASH}`, method: 'token' });
  });
  test('the client id must be the token\'s device', () => {
    const { auth, token } = setup();
    refused(auth.authenticate(input({ clientId: 'dev-2', username: TOKEN_USERNAME, password: token() })), 4, 'token:wrong-client');
  });
  test('replayed → 4 token:replayed', () => {
    const { auth, token } = setup();
    const t = token();
    assert.equal(auth.authenticate(input({ username: TOKEN_USERNAME, password: t })).ok, true);
    refused(auth.authenticate(input({ username: TOKEN_USERNAME, password: t })), 4, 'token:replayed');
  });
  test('expired → 4 token:expired', () => {
    const { auth, token } = setup();
    refused(auth.authenticate(input({ username: TOKEN_USERNAME, password: token({ now: T0 - 31_000 }) })), 4, 'token:expired');
  });
  test('bad signature → 4 token:bad-signature', () => {
    const { auth, token } = setup();
    const t = token();
    t[t.length - 1]! ^= 1;
    refused(auth.authenticate(input({ username: TOKEN_USERNAME, password: t })), 4, 'token:bad-signature');
  });
  test('malformed or empty password → 4 token:malformed / token:missing', () => {
    const { auth } = setup();
    refused(auth.authenticate(input({ username: TOKEN_USERNAME, password: utf8('hunter2') })), 4, 'token:malformed');
    refused(auth.authenticate(input({ username: TOKEN_USERNAME })), 4, 'token:missing');
    refused(auth.authenticate(input({ username: TOKEN_USERNAME, password: new Uint8Array(0) })), 4, 'token:missing');
  });
  test('unknown and revoked keys → 5 (not authorized)', () => {
    const { auth, registry, token } = setup();
    refused(auth.authenticate(input({ username: TOKEN_USERNAME, password: token({ seed: generateSeed() }) })), 5, 'token:unknown-key');
    registry.revoke('dev-1');
    refused(auth.authenticate(input({ username: TOKEN_USERNAME, password: token() })), 5, 'token:revoked');
  });
  test('the registry is read at each connect: a key added later is accepted (live changes)', () => {
    const { auth, registry } = setup();
    const s2 = new Uint8Array(32).fill(4);
    const t = createConnectToken({ seed: s2, publicKey: publicKeyFromSeed(s2), deviceId: 'dev-9', now: T0 });
    refused(auth.authenticate(input({ clientId: 'dev-9', username: TOKEN_USERNAME, password: t })), 5, 'token:unknown-key');
    registry.add('dev-9', publicKeyFromSeed(s2));
    assert.equal(auth.authenticate(input({ clientId: 'dev-9', username: TOKEN_USERNAME, password: t })).ok, true);
  });
  test('a token wins over a configured client certificate', () => {
    const { auth, token } = setup();
    const d = auth.authenticate(input({ username: TOKEN_USERNAME, password: token(), certFingerprint: FP }));
    assert.equal(d.ok && d.method, 'token');
  });
});

describe('rules 3 and 4: user name and password (scrypt via verifyPassword)', () => {
  test('right password → user:NAME', () => {
    const { auth, calls } = setup();
    assert.deepEqual(auth.authenticate(input({ clientId: 'app', username: 'alice', password: utf8('alice-secret') })), { ok: true, identity: 'user:alice', method: 'password' });
    assert.deepEqual(calls, [['HASH(alice-secret)', 'alice-secret']]);
  });
  test('wrong password → 4 password:bad, even where anonymous clients are allowed', () => {
    const { auth } = setup({ anonymous: true });
    refused(auth.authenticate(input({ username: 'alice', password: utf8('guess') })), 4, 'password:bad', /alice/);
  });
  test('bytes that are not UTF-8 → 4 password:bad', () => {
    const { auth } = setup();
    refused(auth.authenticate(input({ username: 'alice', password: new Uint8Array([0xff, 0xfe]) })), 4, 'password:bad');
  });
  test('no password → 4 password:missing', () => {
    const { auth } = setup({ anonymous: true });
    refused(auth.authenticate(input({ username: 'alice' })), 4, 'password:missing');
  });
  test('unknown user → 4 password:unknown-user, after a decoy check that costs what a real one costs', () => {
    const { auth, calls } = setup({ anonymous: true });
    refused(auth.authenticate(input({ username: 'mallory', password: utf8('x') })), 4, 'password:unknown-user');
    assert.deepEqual(calls, [['HASH(alice-secret)', 'x']]);
  });
  test('password without user name → 4 password:no-username [MQTT-3.1.2-22]', () => {
    const { auth } = setup({ anonymous: true });
    refused(auth.authenticate(input({ password: utf8('x') })), 4, 'password:no-username');
  });
  test('a hash that verifyPassword cannot use → 4 password:error (no crash)', () => {
    const { auth } = setup({ users: [{ username: 'bob', passwordHash: 'HASH(broken)' }] });
    refused(auth.authenticate(input({ username: 'bob', password: utf8('x') })), 4, 'password:error');
  });
  test('by default the scrypt verifyPassword of broker/config/password.ts is used', () => {
    const real = new Authenticator({
      registry: DeviceRegistry.empty('/nowhere'),
      tokenVerifier: new TokenVerifier({ audience: 'mqtt-witness' }),
      users: [{ username: 'carol', passwordHash: hashPassword('correct horse') }],
      anonymous: false,
    });
    assert.deepEqual(real.authenticate(input({ username: 'carol', password: utf8('correct horse') })), { ok: true, identity: 'user:carol', method: 'password' });
    refused(real.authenticate(input({ username: 'carol', password: utf8('battery staple') })), 4, 'password:bad');
  });
  test('no users configured: a user name proves nothing; the certificate and anonymous rules decide', () => {
    const { auth } = setup({ users: [], anonymous: true });
    assert.deepEqual(auth.authenticate(input({ username: 'whoever', password: utf8('x') })), { ok: true, identity: 'anonymous', method: 'anonymous' });
    assert.deepEqual(auth.authenticate(input({ username: 'whoever', certFingerprint: FP })), { ok: true, identity: 'cert:gateway-7', method: 'certificate' });
    const closed = setup({ users: [], anonymous: false }).auth;
    refused(closed.authenticate(input({ username: 'whoever', password: utf8('x') })), 5, 'anonymous-refused');
  });
});

describe('rule 5: TLS client certificate', () => {
  test('a configured fingerprint → cert:NAME (config as AB:CD:…, input as hex)', () => {
    const { auth } = setup();
    assert.deepEqual(auth.authenticate(input({ clientId: 'gw', certFingerprint: FP })), { ok: true, identity: 'cert:gateway-7', method: 'certificate' });
  });
  test('combines with an empty client id (clean session) and no MQTT credentials', () => {
    const { auth } = setup();
    assert.equal(auth.authenticate(input({ clientId: '', certFingerprint: FP })).ok, true);
  });
  test('an unknown certificate falls through to the anonymous rule', () => {
    const { auth } = setup();
    refused(auth.authenticate(input({ certFingerprint: 'cd'.repeat(32) })), 5, 'anonymous-refused', /client certificate that is not configured/);
    assert.deepEqual(setup({ anonymous: true }).auth.authenticate(input({ certFingerprint: 'cd'.repeat(32) })), { ok: true, identity: 'anonymous', method: 'anonymous' });
  });
  test('certFingerprint: SHA-256 of the DER, lowercase hex', () => {
    // SHA-256("abc"), FIPS 180-2 Appendix B.1.
    assert.equal(certFingerprint({ raw: Buffer.from('abc') }), 'ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad');
    assert.throws(() => certFingerprint({ raw: Buffer.alloc(0) }), (e: unknown) => e instanceof WitnessError && e.code === 'WITNESS_ERR_INVALID_ARGUMENT');
    assert.equal(normalizeFingerprint(' AB:' + 'ab:'.repeat(30) + 'AB '), 'ab'.repeat(32));
  });
});

describe('rule 6: anonymous', () => {
  test('allowed → anonymous', () => {
    const { auth } = setup({ anonymous: true });
    assert.deepEqual(auth.authenticate(input()), { ok: true, identity: 'anonymous', method: 'anonymous' });
  });
  test('not allowed → 5 anonymous-refused', () => {
    const { auth } = setup();
    refused(auth.authenticate(input()), 5, 'anonymous-refused', /no credentials/);
  });
});

describe('configuration is checked when the Authenticator is built', () => {
  const bad = (o: Partial<AuthenticatorOptions>, message: RegExp) =>
    assert.throws(() => setup(o), (e: unknown) => e instanceof WitnessError && e.code === 'WITNESS_ERR_INVALID_ARGUMENT' && message.test(e.message));
  test('fingerprints, duplicate users, reserved user name', () => {
    bad({ certificates: [{ fingerprint: 'abc', identity: 'x' }] }, /64 hex digits/);
    bad({ certificates: [{ fingerprint: FP, identity: 'x' }, { fingerprint: FP.toUpperCase(), identity: 'y' }] }, /listed twice/);
    bad({ users: [{ username: 'a', passwordHash: 'h' }, { username: 'a', passwordHash: 'h' }] }, /listed twice/);
    bad({ users: [{ username: TOKEN_USERNAME, passwordHash: 'h' }] }, /reserved/);
  });
});
