/**
 * The Witness claims carried in the protected header of a device envelope (docs: DESIGN §2.1).
 *
 * Labels below -65536 are the Private Use range of the IANA "COSE Header Parameters" registry
 * (created by RFC 9052 §11.1; https://www.iana.org/assignments/cose: "Integers less than -65536:
 * Private Use"), so they can never collide with a registered header.
 *
 *   -65537 time         uint  device time, ms since the Unix epoch
 *   -65538 uncertainty  uint  ms, the device's bound on |time - true time|
 *   -65539 time source  tstr  "ntp" | "system"
 *   -65540 sequence     uint  per-device counter
 *   -65541 prev         bstr  SHA-256 of the device's previous envelope (32 zero bytes first)
 *   -65542 topic        tstr  the MQTT topic the envelope is published on
 *
 * Sequence, prev and topic are also listed in crit (2): a COSE verifier that does not know
 * Witness must reject the envelope rather than ignore the replay and reordering protection
 * (RFC 9052 §3.1).
 */
import { WitnessError } from '../errors.js';
import type { CborKey, CborValue } from '../cbor/encode.js';
import { ALG_EDDSA, HEADER_ALG, HEADER_CRIT, HEADER_KID } from './cose-sign1.js';

export const LABEL_TIME = -65537;
export const LABEL_UNCERTAINTY = -65538;
export const LABEL_TIME_SOURCE = -65539;
export const LABEL_SEQ = -65540;
export const LABEL_PREV = -65541;
export const LABEL_TOPIC = -65542;

/** The labels every Witness envelope lists in crit, in this order. */
export const CRITICAL_LABELS: readonly number[] = [LABEL_SEQ, LABEL_PREV, LABEL_TOPIC];
/** Labels a Witness verifier understands, and so may appear in crit. */
export const UNDERSTOOD_LABELS: ReadonlySet<CborKey> = new Set<CborKey>([
  HEADER_ALG,
  HEADER_KID,
  LABEL_TIME,
  LABEL_UNCERTAINTY,
  LABEL_TIME_SOURCE,
  LABEL_SEQ,
  LABEL_PREV,
  LABEL_TOPIC,
]);

export const PREV_SIZE = 32;

export type TimeSource = 'ntp' | 'system';
export const TIME_SOURCES: readonly TimeSource[] = ['ntp', 'system'];

export interface EnvelopeClaims {
  /** Device time, ms since the Unix epoch. */
  time: number;
  /** Bound on the device clock's error, ms. */
  uncertainty: number;
  timeSource: TimeSource;
  /** Per-device sequence number. */
  seq: number;
  /** SHA-256 of the previous envelope's bytes; GENESIS_PREV for the first. */
  prev: Uint8Array;
  /** MQTT topic the envelope is published on. */
  topic: string;
}

/** `prev` of a device's first envelope: 32 zero bytes. Shared: never write into it. */
export const GENESIS_PREV: Uint8Array = new Uint8Array(PREV_SIZE);

export function claimsError(what: string, details: Record<string, unknown> = {}): WitnessError {
  return new WitnessError('WITNESS_ERR_ENVELOPE_CLAIMS', `envelope claims: ${what}`, { details });
}

function checkUint(name: string, v: unknown): void {
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 0) {
    throw claimsError(`${name} must be an integer 0..2^53-1, got ${typeof v === 'number' ? v : typeof v}`, { claim: name });
  }
}

/** Throws WITNESS_ERR_ENVELOPE_CLAIMS unless every claim has its type and range. */
export function checkClaims(claims: EnvelopeClaims): void {
  if (typeof claims !== 'object' || claims === null) throw claimsError('expected an object');
  checkUint('time', claims.time);
  checkUint('uncertainty', claims.uncertainty);
  checkUint('seq', claims.seq);
  if (!TIME_SOURCES.includes(claims.timeSource)) {
    throw claimsError(`timeSource must be "ntp" or "system", got ${JSON.stringify(claims.timeSource)}`, { claim: 'timeSource' });
  }
  if (!(claims.prev instanceof Uint8Array) || claims.prev.length !== PREV_SIZE) {
    throw claimsError(`prev must be ${PREV_SIZE} bytes (SHA-256 of the previous envelope), got ${claims.prev instanceof Uint8Array ? claims.prev.length : typeof claims.prev}`, {
      claim: 'prev',
    });
  }
  if (typeof claims.topic !== 'string') throw claimsError(`topic must be a string, got ${typeof claims.topic}`, { claim: 'topic' });
  // A lone surrogate has no UTF-8 form: the signed topic would silently differ from the given one.
  if (/\p{Cs}/u.test(claims.topic)) throw claimsError('topic holds a lone UTF-16 surrogate (not valid Unicode)', { claim: 'topic' });
}

/** The protected header of a Witness envelope (deterministically encoded by the caller). */
export function protectedHeader(kid: Uint8Array, claims: EnvelopeClaims): Map<CborKey, CborValue> {
  return new Map<CborKey, CborValue>([
    [HEADER_ALG, ALG_EDDSA],
    [HEADER_CRIT, CRITICAL_LABELS],
    [HEADER_KID, kid],
    [LABEL_TIME, claims.time],
    [LABEL_UNCERTAINTY, claims.uncertainty],
    [LABEL_TIME_SOURCE, claims.timeSource],
    [LABEL_SEQ, claims.seq],
    [LABEL_PREV, claims.prev],
    [LABEL_TOPIC, claims.topic],
  ]);
}
