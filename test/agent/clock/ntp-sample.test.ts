import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { judgeReply, MAX_ROOT_DISTANCE_MS, TIMESTAMP_SLACK_MS, type NtpReply } from '../../../agent/clock/ntp-sample.js';

const NTP_EPOCH = Date.UTC(1900, 0, 1);
const T1 = 1_700_000_000_000;

/**
 * A hand-made exchange: the server is 40 ms ahead of our system clock; the request takes 12 ms
 * out, the server holds it 2 ms, the reply takes 8 ms back (asymmetric on purpose).
 *   T2 = T1 + 12 + 40 = T1 + 52    T3 = T2 + 2 = T1 + 54    T4 = T1 + 12 + 2 + 8 = T1 + 22
 *   θ = ((T2 − T1) + (T3 − T4)) / 2 = (52 + 32) / 2 = 42    (true 40: off by the asymmetry, (12 − 8)/2)
 *   δ = (T4 − T1) − (T3 − T2) = 22 − 2 = 20
 * Root delay 30 ms, root dispersion 7 ms, precision byte 236 = −20 (2^−20 s).
 */
function reply(over: Partial<NtpReply> = {}): NtpReply {
  return {
    leapIndicator: 0,
    version: 4,
    mode: 4,
    stratum: 2,
    poll: 6,
    precision: 236,
    rootDelay: new Date(NTP_EPOCH + 30),
    rootDispersion: new Date(NTP_EPOCH + 7),
    referenceId: '167772161',
    referenceTimestamp: new Date(T1 - 10_000),
    originTimestamp: new Date(T1),
    receiveTimestamp: new Date(T1 + 52),
    transmitTimestamp: new Date(T1 + 54),
    destinationTimestamp: new Date(T1 + 22),
    ...over,
  };
}
const SENT = { earliest: T1, latest: T1 + 22 };

describe('judgeReply: RFC 5905 offset, delay and root distance', () => {
  test('matches the hand computation', () => {
    const v = judgeReply(reply(), SENT);
    assert.ok(v.ok, JSON.stringify(v));
    assert.equal(v.sample.offset, 42);
    assert.equal(v.sample.delay, 20);
    assert.equal(v.sample.rootDelay, 30);
    assert.equal(v.sample.rootDispersion, 7);
    assert.equal(v.sample.precision, 2 ** -20 * 1000);
    assert.equal(TIMESTAMP_SLACK_MS, 5);
    // δ/2 + root delay/2 + root dispersion + precision + slack = 10 + 15 + 7 + 0.00095367431640625 + 5
    assert.equal(v.sample.rootDistance, 37.00095367431640625);
    // The bound holds for the true offset (40): |42 − 40| ≤ 37.
    assert.ok(Math.abs(v.sample.offset - 40) <= v.sample.rootDistance);
  });

  test('the precision byte is sign-extended (chrony sends 230 = 2^-26 s)', () => {
    const v = judgeReply(reply({ precision: 230 }), SENT);
    assert.ok(v.ok);
    assert.equal(v.sample.precision, 2 ** -26 * 1000);
  });

  test('a small negative delay from ms truncation is clamped to 0, not rejected', () => {
    // Same-host exchange within one ms: T1 = T2 = T4, T3 = T1 + 1 after truncation.
    const v = judgeReply(reply({ receiveTimestamp: new Date(T1), transmitTimestamp: new Date(T1 + 1), destinationTimestamp: new Date(T1) }), { earliest: T1, latest: T1 });
    assert.ok(v.ok);
    assert.equal(v.sample.delay, -1);
    assert.equal(v.sample.offset, 0.5);
    assert.equal(v.sample.rootDistance, 15 + 7 + 2 ** -20 * 1000 + 5);
  });
});

describe('judgeReply: replies that must not set the clock', () => {
  const cases: Array<[string, Partial<NtpReply>, RegExp]> = [
    ['leap indicator 3 (unsynchronised; what chrony without a source sends)', { leapIndicator: 3, stratum: 0, referenceId: '0' }, /unsynchronised \(leap indicator 3\)/],
    ['stratum 16', { stratum: 16 }, /unsynchronised \(stratum 16\)/],
    ['kiss-o\'-death RATE', { stratum: 0, referenceId: String(0x52415445) }, /kiss-o'-death.*RATE/],
    ['a client packet (mode 3)', { mode: 3 }, /not a server reply \(mode 3\)/],
    ['version 5', { version: 5 }, /unsupported NTP version 5/],
    ['an origin we did not send', { originTimestamp: new Date(T1 - 5_000) }, /does not answer our request/],
    ['no transmit timestamp', { transmitTimestamp: new Date(NTP_EPOCH) }, /no transmit timestamp/],
    ['root dispersion of 2 s', { rootDispersion: new Date(NTP_EPOCH + 2_000) }, /exceeds 1000 ms/],
    ['a negative delay beyond truncation', { destinationTimestamp: new Date(T1 - 10) }, /negative round-trip delay/],
    ['a missing field', { receiveTimestamp: undefined }, /malformed/],
    ['an invalid date', { transmitTimestamp: new Date(NaN) }, /malformed/],
  ];
  for (const [name, over, want] of cases) {
    test(name, () => {
      const v = judgeReply(reply(over), { earliest: T1 - 30, latest: T1 + 22 });
      assert.equal(v.ok, false);
      assert.match((v as { reason: string }).reason, want);
    });
  }

  test('the root distance limit is RFC 5905 MAXDIST', () => {
    assert.equal(MAX_ROOT_DISTANCE_MS, 1_000);
    // 10 + 15 + rootDispersion + 0.00095 + 5 just under and just over 1000.
    assert.ok(judgeReply(reply({ rootDispersion: new Date(NTP_EPOCH + 969) }), SENT).ok);
    assert.equal(judgeReply(reply({ rootDispersion: new Date(NTP_EPOCH + 970) }), SENT).ok, false);
  });
});
