/**
 * The broker's token check: one `describe` per refusal reason, each produced by a hand-made bad
 * token, and the nonce cache's bound under an injected clock.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { TokenVerifier, type TokenVerdict } from '../../../broker/identity/token-verifier.js';
import { DeviceRegistry } from '../../../broker/identity/registry.js';
import { createConnectToken } from '../../../shared/token/connect-token.js';
import { publicKeyFromSeed, generateSeed } from '../../../shared/keys/ed25519.js';
import { keyHash } from '../../../shared/keys/key-id.js';
import { WitnessError } from '../../../shared/errors.js';

const T0 = 1_750_000_000_000;
const seed = new Uint8Array(32).fill(1);
const publicKey = publicKeyFromSeed(seed);
const HASH = Buffer.from(keyHash('dev-1', publicKey)).toString('hex');

function clock(start = T0): { now: () => number; set: (t: number) => void; advance: (ms: number) => void } {
  let t = start;
  return { now: () => t, set: (v) => (t = v), advance: (ms) => (t += ms) };
}

function setup(o: { maxNonces?: number } = {}) {
  const c = clock();
  const registry = DeviceRegistry.empty('/nonexistent-data-dir');
  registry.add('dev-1', publicKey);
  const verifier = new TokenVerifier({ audience: 'mqtt-witness', now: c.now, ...o });
  const token = (x: { deviceId?: string; audience?: string; now?: number; nonce?: Uint8Array; seed?: Uint8Array } = {}) => {
    const s = x.seed ?? seed;
    return createConnectToken({ seed: s, publicKey: publicKeyFromSeed(s), deviceId: x.deviceId ?? 'dev-1', audience: x.audience ?? 'mqtt-witness', now: x.now ?? c.now(), ...(x.nonce ? { nonce: x.nonce } : {}) });
  };
  return { c, registry, verifier, token };
}

function refused(v: TokenVerdict, reason: string, detail?: RegExp): void {
  assert.equal(v.ok, false, `expected a refusal (${reason}), got ${JSON.stringify(v)}`);
  if (v.ok) return;
  assert.equal(v.reason, reason, v.detail);
  if (detail) assert.match(v.detail, detail);
}

function nonce(n: number): Uint8Array {
  const b = new Uint8Array(16);
  new DataView(b.buffer).setUint32(0, n);
  return b;
}

describe('TokenVerifier accepts a good token', () => {
  test('identity device:ID+KEYHASH', () => {
    const { verifier, registry, token } = setup();
    const v = verifier.verify('dev-1', token(), registry);
    assert.deepEqual(v, { ok: true, deviceId: 'dev-1', keyHash: HASH, identity: `device:dev-1+${HASH}` });
  });
  test('at the edges of the freshness window (exactly ±30 s)', () => {
    const { verifier, registry, token, c } = setup();
    assert.equal(verifier.verify('dev-1', token({ now: c.now() - 30_000 }), registry).ok, true);
    assert.equal(verifier.verify('dev-1', token({ now: c.now() + 30_000 }), registry).ok, true);
  });
});

describe('malformed', () => {
  test('garbage bytes', () => {
    const { verifier, registry } = setup();
    refused(verifier.verify('dev-1', new Uint8Array([0xde, 0xad, 0xbe, 0xef]), registry), 'malformed', /COSE_Sign1/);
  });
  test('a truncated token', () => {
    const { verifier, registry, token } = setup();
    const t = token();
    refused(verifier.verify('dev-1', t.subarray(0, t.length - 1), registry), 'malformed');
  });
});

describe('unknown-key', () => {
  test('a key the registry does not hold', () => {
    const { verifier, registry, token } = setup();
    refused(verifier.verify('dev-1', token({ seed: generateSeed() }), registry), 'unknown-key', /dev-1\+[0-9a-f]{8}/);
  });
  test('a device the registry does not hold', () => {
    const { verifier, registry, token } = setup();
    refused(verifier.verify('dev-2', token({ deviceId: 'dev-2' }), registry), 'unknown-key');
  });
});

describe('revoked', () => {
  test('a revoked key is refused before its signature is even checked', () => {
    const { verifier, registry, token } = setup();
    registry.revoke('dev-1');
    refused(verifier.verify('dev-1', token(), registry), 'revoked', new RegExp(HASH));
  });
});

describe('bad-signature', () => {
  test('one bit flipped in the signature', () => {
    const { verifier, registry, token } = setup();
    const t = token();
    t[t.length - 10]! ^= 0x01;
    refused(verifier.verify('dev-1', t, registry), 'bad-signature');
  });
  test('one bit flipped in the signed payload (the nonce)', () => {
    const { verifier, registry, token } = setup();
    const t = token({ nonce: nonce(5) });
    const at = Buffer.from(t).indexOf(Buffer.from(nonce(5)));
    assert.ok(at > 0);
    t[at + 15]! ^= 0x80;
    refused(verifier.verify('dev-1', t, registry), 'bad-signature');
  });
  test('a non-canonical S (S + L) is refused by the strict check', () => {
    const { verifier, registry, token } = setup();
    const t = token();
    const sig = t.subarray(t.length - 64);
    const L = (1n << 252n) + 27742317777372353535851937790883648493n;
    let s = 0n;
    for (let i = 31; i >= 0; i--) s = (s << 8n) | BigInt(sig[32 + i]!);
    s += L;
    for (let i = 0; i < 32; i++) sig[32 + i] = Number((s >> BigInt(8 * i)) & 0xffn);
    refused(verifier.verify('dev-1', t, registry), 'bad-signature', /S >= L/);
  });
});

describe('wrong-client', () => {
  test('a token of dev-1 presented on client id dev-2', () => {
    const { verifier, registry, token } = setup();
    refused(verifier.verify('dev-2', token(), registry), 'wrong-client', /"dev-1".*"dev-2"/);
  });
  test('an empty client id', () => {
    const { verifier, registry, token } = setup();
    refused(verifier.verify('', token(), registry), 'wrong-client');
  });
});

describe('wrong-audience', () => {
  test('a token made for another broker', () => {
    const { verifier, registry, token } = setup();
    refused(verifier.verify('dev-1', token({ audience: 'other-broker' }), registry), 'wrong-audience', /other-broker/);
  });
});

describe('expired and future', () => {
  test('31 s old → expired', () => {
    const { verifier, registry, token, c } = setup();
    refused(verifier.verify('dev-1', token({ now: c.now() - 31_000 }), registry), 'expired', /31000 ms ago/);
  });
  test('31 s in the future → future', () => {
    const { verifier, registry, token, c } = setup();
    refused(verifier.verify('dev-1', token({ now: c.now() + 31_000 }), registry), 'future', /31000 ms in the future/);
  });
  test('maxSkewMs is configurable', () => {
    const c = clock();
    const registry = DeviceRegistry.empty('/x');
    registry.add('dev-1', publicKey);
    const v = new TokenVerifier({ audience: 'mqtt-witness', maxSkewMs: 1000, now: c.now });
    const t = createConnectToken({ seed, publicKey, deviceId: 'dev-1', now: T0 - 1001 });
    refused(v.verify('dev-1', t, registry), 'expired');
  });
});

describe('replayed', () => {
  test('the same token twice: accepted once, then refused', () => {
    const { verifier, registry, token } = setup();
    const t = token();
    assert.equal(verifier.verify('dev-1', t, registry).ok, true);
    refused(verifier.verify('dev-1', t, registry), 'replayed', /already used/);
  });
  test('a different token with the same nonce (issued-at changed, re-signed) is refused too', () => {
    const { verifier, registry, token, c } = setup();
    assert.equal(verifier.verify('dev-1', token({ nonce: nonce(9) }), registry).ok, true);
    refused(verifier.verify('dev-1', token({ nonce: nonce(9), now: c.now() + 1 }), registry), 'replayed');
  });
  test('the same nonce under another key is not a replay', () => {
    const { verifier, registry, token } = setup();
    const seed2 = new Uint8Array(32).fill(2);
    registry.add('dev-2', publicKeyFromSeed(seed2));
    assert.equal(verifier.verify('dev-1', token({ nonce: nonce(1) }), registry).ok, true);
    assert.equal(verifier.verify('dev-2', token({ deviceId: 'dev-2', seed: seed2, nonce: nonce(1) }), registry).ok, true);
  });
  test('a refused token does not burn its nonce (recorded only after every other check)', () => {
    const { verifier, registry, token } = setup();
    refused(verifier.verify('dev-2', token({ nonce: nonce(3) }), registry), 'wrong-client');
    assert.equal(verifier.nonceCacheSize, 0);
    assert.equal(verifier.verify('dev-1', token({ nonce: nonce(3) }), registry).ok, true);
  });
  test('a replay stays refused for as long as the token is fresh', () => {
    const { verifier, registry, token, c } = setup();
    // Issued 30 s ahead: acceptable until T0 + 60 s.
    const t = token({ now: T0 + 30_000 });
    assert.equal(verifier.verify('dev-1', t, registry).ok, true);
    c.advance(60_000);
    refused(verifier.verify('dev-1', t, registry), 'replayed');
    c.advance(1);
    refused(verifier.verify('dev-1', t, registry), 'expired');
  });
});

describe('nonce cache', () => {
  test('bounded: full of unexpired nonces, new tokens are refused (nonce-cache-full), the size never exceeds maxNonces', () => {
    const { verifier, registry, token } = setup({ maxNonces: 50 });
    for (let i = 0; i < 50; i++) assert.equal(verifier.verify('dev-1', token({ nonce: nonce(i) }), registry).ok, true);
    assert.equal(verifier.nonceCacheSize, 50);
    for (let i = 50; i < 60; i++) refused(verifier.verify('dev-1', token({ nonce: nonce(i) }), registry), 'nonce-cache-full', /nonce cache full/);
    assert.equal(verifier.nonceCacheSize, 50);
    // A replay of a remembered nonce is still a replay, not "full".
    refused(verifier.verify('dev-1', token({ nonce: nonce(0) }), registry), 'replayed');
  });

  test('expired entries are evicted first: after the TTL the cache makes room again', () => {
    const { verifier, registry, token, c } = setup({ maxNonces: 50 });
    for (let i = 0; i < 30; i++) assert.equal(verifier.verify('dev-1', token({ nonce: nonce(i) }), registry).ok, true);
    c.advance(60_000);
    for (let i = 30; i < 50; i++) assert.equal(verifier.verify('dev-1', token({ nonce: nonce(i) }), registry).ok, true);
    refused(verifier.verify('dev-1', token({ nonce: nonce(99) }), registry), 'nonce-cache-full');
    // 120 s after the first 30: those expire, the later 20 do not.
    c.advance(60_000);
    assert.equal(verifier.verify('dev-1', token({ nonce: nonce(100) }), registry).ok, true);
    assert.equal(verifier.nonceCacheSize, 21);
  });

  test('steady load over many TTLs: memory stays at the bound set by the rate, not by the total', () => {
    const { verifier, registry, token, c } = setup({ maxNonces: 1000 });
    let peak = 0;
    // 5 tokens per simulated second for 20 minutes: 6,000 tokens in all, but only one TTL's worth
    // (5 × 120 = 600, plus the second in progress) is ever held.
    for (let s = 0; s < 1200; s++) {
      for (let k = 0; k < 5; k++) assert.equal(verifier.verify('dev-1', token({ nonce: nonce(s * 5 + k) }), registry).ok, true);
      peak = Math.max(peak, verifier.nonceCacheSize);
      c.advance(1000);
    }
    assert.ok(peak <= 605, `peak ${peak}`);
  });

  test('options are checked: nonceTtlMs must cover 2 × maxSkewMs', () => {
    assert.throws(() => new TokenVerifier({ audience: 'a', maxSkewMs: 30_000, nonceTtlMs: 59_999 }), (e: unknown) => e instanceof WitnessError && e.code === 'WITNESS_ERR_INVALID_ARGUMENT');
    assert.throws(() => new TokenVerifier({ audience: '' }), (e: unknown) => e instanceof WitnessError && e.code === 'WITNESS_ERR_INVALID_ARGUMENT');
    assert.throws(() => new TokenVerifier({ audience: 'a', maxNonces: 0 }), (e: unknown) => e instanceof WitnessError && e.code === 'WITNESS_ERR_INVALID_ARGUMENT');
  });
});
