/**
 * Incoming verification (agent/verifier.ts): the keys a device knows, the broker's verdict names,
 * retained messages not mistaken for clock disagreement, and no input that can throw.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { IncomingVerifier, KnownKeyTable } from '../../agent/verifier.js';
import { generateSeed, publicKeyFromSeed } from '../../shared/keys/ed25519.js';
import { deviceKid, verifierKey } from '../../shared/keys/key-id.js';
import { formatPublicKey } from '../../shared/keys/key-file.js';
import { envelopeHash, signEnvelope, GENESIS_PREV } from '../../shared/envelope/index.js';
import { ENVELOPE_VERDICTS } from '../../broker/records.js';

const seed = generateSeed();
const pub = publicKeyFromSeed(seed);
const NOW = 1_800_000_000_000;

function env(topic: string, seq: number, prev: Uint8Array, time = NOW, s = seed, id = 'd1'): Uint8Array {
  return signEnvelope({ seed: s, kid: deviceKid(id, publicKeyFromSeed(s)), payload: new TextEncoder().encode(`p${seq}`), claims: { time, uncertainty: 10, timeSource: 'ntp', seq, prev, topic } });
}

function verifier(keys = KnownKeyTable.from({ d1: [formatPublicKey(pub)] })): IncomingVerifier {
  return new IncomingVerifier({ keys, skewToleranceMs: 1000, now: () => ({ time: NOW, uncertainty: 5 }) });
}

describe('KnownKeyTable', () => {
  test('a map of device ids to keys, or a list of verifier keys, names the same key', () => {
    const kid = deviceKid('d1', pub);
    const hash = new Uint8Array(Buffer.from(new TextDecoder().decode(kid).split('+')[1]!, 'hex'));
    for (const t of [KnownKeyTable.from({ d1: [formatPublicKey(pub)] }), KnownKeyTable.from({ d1: [pub] }), KnownKeyTable.from([verifierKey('d1', pub)])]) {
      assert.equal(t.size, 1);
      assert.deepEqual(t.lookup('d1', hash), { status: 'active', publicKey: pub });
      assert.deepEqual(t.lookup('d2', hash), { status: 'unknown' });
    }
  });

  test('bad entries are refused with the reason', () => {
    assert.throws(() => KnownKeyTable.from({ d1: ['short'] }), (e: Error & { code?: string }) => e.code === 'WITNESS_ERR_KEY_INVALID');
    assert.throws(() => KnownKeyTable.from(['d1+00000000+AAAA']), (e: Error & { code?: string }) => e.code === 'WITNESS_ERR_KEY_INVALID');
    assert.throws(() => KnownKeyTable.from({ 'bad id': [formatPublicKey(pub)] }), (e: Error & { code?: string }) => e.code === 'WITNESS_ERR_DEVICE_ID_INVALID');
    assert.throws(() => KnownKeyTable.from({ d1: 'not a list' as unknown as string[] }), /expected a list/);
  });
});

describe('IncomingVerifier', () => {
  test('gives the broker verdicts, in its order of priority', () => {
    const v = verifier();
    const e0 = env('t', 0, GENESIS_PREV);
    const e1 = env('t', 1, envelopeHash(e0));
    const stranger = generateSeed();
    assert.equal(v.check('t', new TextEncoder().encode('plain')).verdict, 'missing');
    assert.equal(v.check('t', Uint8Array.of(0xd2, 0x84, 0x00)).verdict, 'malformed');
    assert.equal(v.check('t', env('t', 0, GENESIS_PREV, NOW, stranger, 'd9')).verdict, 'unknown-key');
    assert.equal(v.check('other', e0).verdict, 'wrong-topic');
    const r0 = v.check('t', e0);
    assert.equal(r0.verdict, 'valid');
    assert.equal(new TextDecoder().decode(r0.inner), 'p0');
    assert.equal(v.check('t', e0).verdict, 'replayed');
    assert.equal(v.check('t', e1).verdict, 'valid');
    const g = v.check('t', env('t', 4, envelopeHash(e1)));
    assert.deepEqual([g.verdict, g.gap], ['gap', 2]);
    assert.equal(v.check('t', env('t', 2, envelopeHash(e1))).verdict, 'out-of-order');
    assert.equal(v.check('t', env('t', 5, GENESIS_PREV)).verdict, 'chain-break');
    const tampered = env('t', 6, GENESIS_PREV);
    tampered[tampered.length - 1]! ^= 1;
    assert.equal(v.check('t', tampered).verdict, 'invalid');
  });

  test('clock-skew: device time ahead beyond both uncertainties and the tolerance; past times are lateness', () => {
    const v = verifier();
    const old = env('t', 0, GENESIS_PREV, NOW - 60_000);
    assert.equal(v.check('t', old, true).verdict, 'valid', 'a retained message is as old as it is');
    const v2 = verifier();
    assert.equal(v2.check('t', old).verdict, 'valid', 'a message signed a minute ago was delayed, not skewed');
    assert.equal(verifier().check('t', env('t', 0, GENESIS_PREV, NOW + 60_000)).verdict, 'clock-skew');
    const v3 = verifier();
    assert.equal(v3.check('t', env('t', 0, GENESIS_PREV, NOW + 1014)).verdict, 'valid', 'within 10 + 5 + 1000 ms');
    assert.equal(verifier().check('t', env('t', 0, GENESIS_PREV, NOW + 1016)).verdict, 'clock-skew');
  });

  test('never throws: any bytes get one of the verdict names', () => {
    const v = verifier();
    const base = env('t', 0, GENESIS_PREV);
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 400 }), fc.nat(), fc.boolean(), (junk, at, splice) => {
        const bytes = splice ? Uint8Array.from([...base.subarray(0, at % base.length), ...junk]) : Uint8Array.from([0xd2, 0x84, ...junk]);
        const r = v.check('t', bytes);
        assert.ok((ENVELOPE_VERDICTS as readonly string[]).includes(r.verdict));
      }),
      { numRuns: 500 },
    );
  });
});
