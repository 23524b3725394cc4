import { test } from 'node:test';
import assert from 'node:assert/strict';
import { DeviceSigner } from '../../agent/signer.js';
import { decodeEnvelope, verifyEnvelope, envelopeHash, GENESIS_PREV } from '../../shared/envelope/index.js';
import { publicKeyFromSeed } from '../../shared/keys/ed25519.js';

const seed = new Uint8Array(32).fill(7);
const other = new Uint8Array(32).fill(9);
const clock = () => ({ time: 1_700_000_000_000.4, uncertainty: 2.1, source: 'system' as const });

test('sign advances seq and chains prev to the previous envelope hash', () => {
  const s = new DeviceSigner({ deviceId: 'dev-1', seed, clock });
  const a = s.sign('devices/dev-1/t', new Uint8Array([1]));
  const b = s.sign('devices/dev-1/t', new Uint8Array([2]));
  const ea = decodeEnvelope(a.envelope);
  const eb = decodeEnvelope(b.envelope);
  assert.equal(ea.claims.seq, 0);
  assert.deepEqual(ea.claims.prev, GENESIS_PREV);
  assert.equal(eb.claims.seq, 1);
  assert.deepEqual(eb.claims.prev, envelopeHash(a.envelope));
  assert.deepEqual(b.hash, envelopeHash(b.envelope));
  assert.equal(ea.claims.time, 1_700_000_000_000);
  assert.equal(ea.claims.uncertainty, 3);
  verifyEnvelope(eb, publicKeyFromSeed(seed));
  assert.equal(s.nextSeq, 2);
});

test('signDetached neither advances the chain nor uses the device key when given another seed', () => {
  const s = new DeviceSigner({ deviceId: 'dev-1', seed, clock });
  s.sign('t', new Uint8Array([1]));
  const prev = s.prev;
  const d = s.signDetached('t', new Uint8Array([2]), { seed: other, skewMs: 60_000 });
  assert.equal(d.seq, 1);
  assert.equal(s.nextSeq, 1);
  assert.deepEqual(s.prev, prev);
  const e = decodeEnvelope(d.envelope);
  assert.equal(e.claims.time, 1_700_000_060_000);
  verifyEnvelope(e, publicKeyFromSeed(other));
  assert.throws(() => verifyEnvelope(e, publicKeyFromSeed(seed)));
  assert.notDeepEqual(e.kid, s.kid);
});
