/**
 * The envelope verdict of a publish: is the payload a COSE_Sign1 envelope signed by a registered,
 * unrevoked device key, bound to this topic, next in its device's sequence and hash chain, and
 * timed within the clocks' uncertainty? One verdict per message, by priority:
 *
 *   missing      no envelope (a plain payload)
 *   malformed    looks like an envelope but does not decode (bad CBOR, alg, claims, …)
 *   unknown-key  kid names no registered key
 *   revoked      the key was revoked
 *   invalid      the signature does not verify (strict RFC 8032)
 *   wrong-topic  signed for another topic (replayed onto this one)
 *   replayed     a sequence number at or below the last one seen that was never missing
 *   out-of-order a sequence number that a gap left missing, arriving late
 *   chain-break  the next sequence number, but `prev` is not the hash of the previous envelope
 *   gap          a sequence number beyond the next: `gap` messages are missing
 *   clock-skew   device time is AHEAD of broker time by more than both uncertainties plus the
 *                tolerance (a time in the past is lateness — queued while offline —: `late`, ms)
 *   valid        all of the above hold
 *
 * Per-device state (last sequence, last envelope hash, the sequence numbers a gap left missing)
 * advances only on authentic messages (valid signature, right topic), so a forger cannot move it.
 * It survives restarts through `snapshot()` / `restore()` plus `observe()` of the records written
 * after the snapshot (broker/device-state.ts).
 */
import { decodeEnvelope, envelopeHash, looksLikeEnvelope, verifyEnvelope, GENESIS_PREV, type Envelope } from '../shared/envelope/index.js';
import { parseDeviceKid } from '../shared/keys/key-id.js';
import { WitnessError } from '../shared/errors.js';
import type { EnvelopeVerdictName } from './records.js';

export interface KeyLookup {
  lookup(deviceId: string, keyHash: Uint8Array): { status: 'active' | 'revoked' | 'unknown'; publicKey?: Uint8Array };
}

export interface EnvelopeResult {
  verdict: EnvelopeVerdictName;
  /** For `gap`: how many messages are missing. */
  gap?: number;
  /** Why, for people (the error message for malformed/invalid). */
  reason?: string;
  deviceId?: string;
  kid?: string;
  seq?: number;
  /** Device time, uncertainty, source. */
  dt?: number;
  du?: number;
  ts?: string;
  /** How much older than broker time the device time is, ms, when beyond the uncertainties. */
  late?: number;
  /** base64url SHA-256 of the envelope bytes (the device's next `prev`). */
  eh?: string;
  /** The application payload inside the envelope (for unwrap), when it decoded. */
  inner?: Uint8Array;
}

export interface DeviceChainState {
  seq: number;
  /** Hash of the last authentic envelope, base64url. */
  hash: string;
  /** Sequence numbers skipped by gaps and not seen since (bounded). */
  missing: number[];
}

export interface EnvelopeCheckOptions {
  keys: KeyLookup;
  /** Allowed disagreement between device and broker time beyond both uncertainties, ms. Default 1000. */
  skewToleranceMs?: number;
  /** Most missing sequence numbers remembered per device. Default 1024. */
  maxMissing?: number;
}

const B64URL = (b: Uint8Array): string => Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString('base64url');

/** An envelope that decoded and names an active key: what is left is its signature. */
export interface Verifiable {
  done?: undefined;
  env: Envelope;
  deviceId: string;
  publicKey: Uint8Array;
  /** The result so far (verdict valid, device, kid, claims, envelope hash, inner payload). */
  base: EnvelopeResult;
}

/** What is known before the signature: a final verdict, or what to verify. */
export type PreVerify = { done: EnvelopeResult } | Verifiable;

/** The checks before the signature, which need no state: looks like an envelope, decodes, kid, key status. */
export function preVerify(keys: KeyLookup, payload: Uint8Array): PreVerify {
  if (!looksLikeEnvelope(payload)) return { done: { verdict: 'missing' } };
  let env: Envelope;
  try {
    env = decodeEnvelope(payload);
  } catch (e) {
    return { done: { verdict: 'malformed', reason: e instanceof WitnessError ? `${e.code}: ${e.message}` : String(e) } };
  }
  let deviceId: string;
  let keyHash: Uint8Array;
  try {
    ({ deviceId, keyHash } = parseDeviceKid(env.kid));
  } catch (e) {
    return { done: { verdict: 'malformed', reason: (e as Error).message } };
  }
  const base: EnvelopeResult = {
    verdict: 'valid',
    deviceId,
    kid: Buffer.from(env.kid).toString('utf8'),
    seq: env.claims.seq,
    dt: env.claims.time,
    du: env.claims.uncertainty,
    ts: env.claims.timeSource,
    eh: B64URL(envelopeHash(payload)),
    inner: env.payload,
  };
  const key = keys.lookup(deviceId, keyHash);
  if (key.status === 'unknown' || !key.publicKey) return { done: { ...base, verdict: 'unknown-key' } };
  if (key.status === 'revoked') return { done: { ...base, verdict: 'revoked' } };
  return { env, deviceId, publicKey: key.publicKey, base };
}

export class EnvelopeChecker {
  readonly #keys: KeyLookup;
  readonly #tolerance: number;
  readonly #maxMissing: number;
  readonly #state = new Map<string, { seq: number; hash: string; missing: Set<number> }>();

  constructor(o: EnvelopeCheckOptions) {
    this.#keys = o.keys;
    this.#tolerance = o.skewToleranceMs ?? 1000;
    this.#maxMissing = o.maxMissing ?? 1024;
  }

  /** Checks one payload published on `topic` at broker time `now` ± `nowU`. */
  check(topic: string, payload: Uint8Array, now: number, nowU: number): EnvelopeResult {
    const pre = preVerify(this.#keys, payload);
    if (pre.done) return pre.done;
    let sigError: string | null = null;
    try {
      verifyEnvelope(pre.env, pre.publicKey);
    } catch (e) {
      sigError = e instanceof WitnessError ? e.code : String(e);
    }
    return this.postVerify(pre, sigError, topic, now, nowU);
  }

  /**
   * The verdict once the signature's outcome is known (`sigError` null: it verifies; else the
   * error code): topic, sequence and chain (the device's state advances here), time. check() is
   * preVerify → verify → postVerify; the broker's VerifyPool (verify-pool.ts) verifies elsewhere
   * and calls this in each device's arrival order.
   */
  postVerify(pre: Verifiable, sigError: string | null, topic: string, now: number, nowU: number): EnvelopeResult {
    const { env, base } = pre;
    if (sigError !== null) return { ...base, verdict: 'invalid', reason: sigError };
    if (env.claims.topic !== topic) return { ...base, verdict: 'wrong-topic', reason: `signed for ${JSON.stringify(env.claims.topic)}` };

    const sequence = this.#advance(pre.deviceId, env, base.eh!);
    if (sequence.verdict !== 'valid') return { ...base, ...sequence };
    // Time: a message can arrive long after it was signed (queued in the agent's outbox while
    // the broker was unreachable), so a device time in the past is lateness, recorded as `late`
    // (ms), not a verdict. A device time in the future beyond both uncertainties and the
    // tolerance cannot be explained by delay: that is clock skew.
    const allowed = env.claims.uncertainty + nowU + this.#tolerance;
    const ahead = env.claims.time - now;
    if (ahead > allowed) {
      return { ...base, verdict: 'clock-skew', reason: `device time is ${ahead} ms ahead of broker time (allowed ${allowed})` };
    }
    if (-ahead > allowed) return { ...base, late: -ahead };
    return base;
  }

  /** Sequence and chain verdict of an authentic envelope; advances the device's state. */
  #advance(deviceId: string, env: Envelope, hash: string): { verdict: EnvelopeVerdictName; gap?: number; reason?: string } {
    const seq = env.claims.seq;
    const prev = B64URL(env.claims.prev);
    const st = this.#state.get(deviceId);
    if (!st) {
      // First message seen from this device: its history starts here (seq 0 must chain to genesis).
      this.#state.set(deviceId, { seq, hash, missing: new Set() });
      if (seq === 0 && prev !== B64URL(GENESIS_PREV)) return { verdict: 'chain-break', reason: 'sequence 0 does not start from the genesis hash' };
      return { verdict: 'valid' };
    }
    if (seq === st.seq + 1) {
      const ok = prev === st.hash;
      st.seq = seq;
      st.hash = hash;
      return ok ? { verdict: 'valid' } : { verdict: 'chain-break', reason: 'prev is not the hash of the previous envelope' };
    }
    if (seq > st.seq + 1) {
      const gap = seq - st.seq - 1;
      for (let s = st.seq + 1; s < seq && st.missing.size < this.#maxMissing; s++) st.missing.add(s);
      st.seq = seq;
      st.hash = hash;
      return { verdict: 'gap', gap, reason: `${gap} message(s) missing before sequence ${seq}` };
    }
    if (st.missing.delete(seq)) return { verdict: 'out-of-order', reason: `sequence ${seq} arrived after ${st.seq}` };
    return { verdict: 'replayed', reason: `sequence ${seq} was already seen (last ${st.seq})` };
  }

  /** Re-applies an authentic publish seen in the ledger (state rebuild after a restart). */
  observe(deviceId: string, seq: number, hash: string, verdict: EnvelopeVerdictName): void {
    if (!['valid', 'gap', 'chain-break', 'clock-skew', 'out-of-order'].includes(verdict)) return;
    const st = this.#state.get(deviceId);
    if (!st) {
      this.#state.set(deviceId, { seq, hash, missing: new Set() });
      return;
    }
    if (verdict === 'out-of-order') {
      st.missing.delete(seq);
      return;
    }
    for (let s = st.seq + 1; s < seq && st.missing.size < this.#maxMissing; s++) st.missing.add(s);
    if (seq > st.seq) {
      st.seq = seq;
      st.hash = hash;
    }
  }

  snapshot(): Record<string, DeviceChainState> {
    const out: Record<string, DeviceChainState> = {};
    for (const [id, st] of this.#state) out[id] = { seq: st.seq, hash: st.hash, missing: [...st.missing] };
    return out;
  }

  restore(snapshot: Record<string, DeviceChainState>): void {
    this.#state.clear();
    for (const [id, st] of Object.entries(snapshot)) this.#state.set(id, { seq: st.seq, hash: st.hash, missing: new Set(st.missing) });
  }

  /** Last sequence number seen per device (for status views). */
  lastSeq(deviceId: string): number | undefined {
    return this.#state.get(deviceId)?.seq;
  }
}
