/**
 * One NTP exchange, judged and measured: is the reply fit to set a clock by (RFC 5905 §8 packet
 * tests, §11.2.1 fit), and if so, what offset does it give and how far can that offset be wrong
 * (the root distance, RFC 5905 §11.2.1)?
 *
 * The input is what ntp-time-sync's `getNetworkTime()` resolves with: the reply as parsed by
 * ntp-packet-parser, plus the local receive time. Read against ntp-time-sync 0.5.0 /
 * ntp-packet-parser 0.5.0 (node_modules/ntp-time-sync/src/NtpTimeSync.ts), whose quirks shape
 * this module:
 *  - every timestamp, and also root delay and root dispersion (NTP short format, 16.16 seconds),
 *    arrives as a Date counted from 1900-01-01, truncated to a whole millisecond;
 *  - `precision` is the raw unsigned byte: the library does not sign-extend it (a server
 *    precision of 2^-26 s arrives as 230);
 *  - `referenceId` is a decimal string for every stratum but 1, so a kiss code (stratum 0,
 *    RFC 5905 §7.4) has to be decoded from that number;
 *  - the library's own offset, `(|T2−T1| + |T3−T4|)/2 · sign(T3−T4)`, is not RFC 5905's and is
 *    off by up to the round-trip delay, so the offset here is computed from the four timestamps.
 */

/**
 * A reply as ntp-time-sync's `getNetworkTime()` returns it (ntp-packet-parser's `NtpPacket`,
 * every field optional, plus the local receive time). Declared here, structurally, because the
 * library does not export the type.
 */
export interface NtpReply {
  leapIndicator?: number;
  version?: number;
  mode?: number;
  stratum?: number;
  poll?: number;
  /** The raw byte: log2 seconds as an unsigned 8-bit number (not sign-extended). */
  precision?: number;
  /** NTP short format decoded as a Date: 1900-01-01 plus the root delay, truncated to ms. */
  rootDelay?: Date;
  /** NTP short format decoded as a Date: 1900-01-01 plus the root dispersion, truncated to ms. */
  rootDispersion?: Date;
  referenceId?: string;
  referenceTimestamp?: Date;
  /** T1: our transmit time, echoed by the server. */
  originTimestamp?: Date;
  /** T2: server receive time. */
  receiveTimestamp?: Date;
  /** T3: server transmit time. */
  transmitTimestamp?: Date;
  /** T4: our receive time (`new Date()` when the reply arrived). */
  destinationTimestamp: Date;
}

/** A reply that passed every test, measured. All values in ms. */
export interface NtpSample {
  /** θ = ((T2 − T1) + (T3 − T4)) / 2: server time minus our system time (RFC 5905 §8). */
  offset: number;
  /** δ = (T4 − T1) − (T3 − T2): round-trip delay (RFC 5905 §8). */
  delay: number;
  rootDelay: number;
  rootDispersion: number;
  /** The server's precision, 2^precision s, in ms. */
  precision: number;
  stratum: number;
  /**
   * Bound on |true time − (system time + offset)| at the moment of the exchange, before any
   * drift: δ/2 + root delay/2 + root dispersion + server precision + TIMESTAMP_SLACK_MS.
   */
  rootDistance: number;
}

export type ReplyVerdict = { ok: true; sample: NtpSample } | { ok: false; reason: string };

/** The system time (ms) just before and just after the exchange: T1 must lie between them. */
export interface SendWindow {
  earliest: number;
  latest: number;
}

/**
 * What the library's whole-ms Dates cost, in ms, added to every root distance. Each timestamp
 * is truncated (never rounded up), so with t = T + e:
 *  - T1 is Date.now() at send (e < 1), then NTP-encoded through a double and parsed back, which
 *    may truncate it once more (not seen in 200 000 trials here, but not excluded): e1 ∈ [0, 2);
 *    T2, T3 (parsed) and T4 (Date.now()) have e ∈ [0, 1). Then θ is off by
 *    ((e2 − e1) + (e3 − e4))/2 ∈ (−1.5, 1), and δ is under-measured by e4 − e1 + e2 − e3 < 2,
 *    which adds < 1 to δ/2.                                                            2.5 ms
 *  - root delay and root dispersion are truncated too: root delay/2 + root dispersion
 *    is under-read by < 0.5 + 1.                                                       1.5 ms
 *  - the clock anchors the offset on a Date.now() reading (truncated) taken with the
 *    monotonic clock.                                                                  1 ms
 */
export const TIMESTAMP_SLACK_MS = 5;

/** RFC 5905 §7.3 MAXDIST: a server farther than 1 s (root distance) is not fit to sync to. */
export const MAX_ROOT_DISTANCE_MS = 1_000;

/** RFC 5905 §7.3 MAXSTRAT: stratum 16 means unsynchronised. */
const MAX_STRATUM = 16;

/** ntp-packet-parser's epoch: timestamps and short-format values are Dates relative to it. */
const NTP_EPOCH_MS = Date.UTC(1900, 0, 1);

/** How far a measured δ may fall below zero from timestamp truncation alone (see above: < 2). */
const NEGATIVE_DELAY_TOLERANCE_MS = 2;

/**
 * Judges one reply (RFC 5905 §8 packet tests, §11.2.1 fit) and, if it passes, computes its
 * offset, delay and root distance. Pure: no clock is read.
 *
 * `sent` brackets the moment the request left (system ms before and after the exchange); the
 * echoed origin timestamp must fall inside it, or the reply is not an answer to our request
 * (RFC 5905 §8, "bogus packet").
 */
export function judgeReply(reply: NtpReply, sent: SendWindow): ReplyVerdict {
  const t1 = ms(reply.originTimestamp);
  const t2 = ms(reply.receiveTimestamp);
  const t3 = ms(reply.transmitTimestamp);
  const t4 = ms(reply.destinationTimestamp);
  const rootDelayRaw = ms(reply.rootDelay);
  const rootDispersionRaw = ms(reply.rootDispersion);
  const { leapIndicator: li, version, mode, stratum, precision: precisionByte } = reply;
  if (
    t1 === undefined || t2 === undefined || t3 === undefined || t4 === undefined ||
    rootDelayRaw === undefined || rootDispersionRaw === undefined ||
    !isInt(li) || !isInt(version) || !isInt(mode) || !isInt(stratum) || !isInt(precisionByte)
  ) {
    return { ok: false, reason: 'malformed reply (missing or unreadable fields)' };
  }
  // RFC 5905 §7.3: mode 4 = server. Anything else is not an answer to a client request.
  if (mode !== 4) return { ok: false, reason: `not a server reply (mode ${mode})` };
  if (version < 1 || version > 4) return { ok: false, reason: `unsupported NTP version ${version}` };
  // RFC 5905 §7.3: leap indicator 3 = "unknown (clock unsynchronized)". ntp-time-sync's getTime()
  // drops these silently; here the reason is kept so status() can say why no time was trusted.
  if (li === 3) return { ok: false, reason: 'server is unsynchronised (leap indicator 3)' };
  // RFC 5905 §7.4: stratum 0 is a kiss-o'-death; the kiss code sits in the reference id.
  if (stratum === 0) return { ok: false, reason: `kiss-o'-death from server (${kissCode(reply.referenceId)})` };
  if (stratum >= MAX_STRATUM) return { ok: false, reason: `server is unsynchronised (stratum ${stratum})` };
  if (t3 === NTP_EPOCH_MS) return { ok: false, reason: 'server sent no transmit timestamp' };
  // The origin is our own transmit time echoed back; the parse may cost it 1 ms (see TIMESTAMP_SLACK_MS).
  if (t1 < sent.earliest - 1 || t1 > sent.latest + 1) {
    return { ok: false, reason: `reply does not answer our request (origin ${t1} outside [${sent.earliest}, ${sent.latest}])` };
  }

  // RFC 5905 §8: on-wire offset and delay.
  const offset = (t2 - t1 + (t3 - t4)) / 2;
  const delay = t4 - t1 - (t3 - t2);
  if (delay < -NEGATIVE_DELAY_TOLERANCE_MS) return { ok: false, reason: `negative round-trip delay (${delay} ms)` };

  const rootDelay = rootDelayRaw - NTP_EPOCH_MS;
  const rootDispersion = rootDispersionRaw - NTP_EPOCH_MS;
  const precision = 2 ** toInt8(precisionByte) * 1000;
  // RFC 5905 §11.2.1 root distance: (δ + root delay)/2 + root dispersion + ε, with ε holding the
  // precisions; ours is the whole-ms truncation above. The drift since the exchange (PHI·τ) is the
  // clock's to add, from its own monotonic clock.
  const rootDistance = Math.max(delay, 0) / 2 + rootDelay / 2 + rootDispersion + precision + TIMESTAMP_SLACK_MS;
  if (rootDistance >= MAX_ROOT_DISTANCE_MS) {
    return { ok: false, reason: `root distance ${rootDistance.toFixed(1)} ms exceeds ${MAX_ROOT_DISTANCE_MS} ms (RFC 5905 MAXDIST)` };
  }
  return { ok: true, sample: { offset, delay, rootDelay, rootDispersion, precision, stratum, rootDistance } };
}

function ms(d: Date | undefined): number | undefined {
  if (!(d instanceof Date)) return undefined;
  const v = d.getTime();
  return Number.isFinite(v) ? v : undefined;
}

function isInt(v: unknown): v is number {
  return Number.isInteger(v);
}

/** The packet's precision byte is a signed 8-bit log2 of seconds (RFC 5905 §7.3). */
function toInt8(byte: number): number {
  return byte > 127 ? byte - 256 : byte;
}

/** ntp-packet-parser renders a stratum-0 reference id as a decimal number; the kiss code is its 4 ASCII bytes. */
function kissCode(referenceId: string | undefined): string {
  const n = Number(referenceId);
  if (!Number.isInteger(n) || n < 0 || n > 0xffffffff) return 'no kiss code';
  const chars = [24, 16, 8, 0].map((shift) => (n >>> shift) & 0xff);
  if (chars.every((c) => c === 0)) return 'no kiss code';
  if (!chars.every((c) => c === 0 || (c >= 0x20 && c < 0x7f))) return `kiss code 0x${n.toString(16)}`;
  return `kiss code ${String.fromCharCode(...chars.filter((c) => c !== 0))}`;
}
