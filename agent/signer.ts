/**
 * The device side of the envelope, without transport or storage: a device key, its kid, and the
 * per-device sequence and hash chain. WitnessAgent keeps seq/prev in its durable outbox and signs
 * through `signDeviceEnvelope`; the simulator drives thousands of devices from one process with a
 * `DeviceSigner` each (no outbox: its run file is the record of what was sent).
 */
import { signEnvelope, envelopeHash, GENESIS_PREV } from '../shared/envelope/index.js';
import { publicKeyFromSeed } from '../shared/keys/ed25519.js';
import { deviceKid } from '../shared/keys/key-id.js';
import type { TimeSource } from '../shared/envelope/claims.js';

/** A reading of the device clock: ms since the epoch, its uncertainty in ms, and where it came from. */
export interface SignTime {
  time: number;
  uncertainty: number;
  source: TimeSource;
}

/** Signs one message of a device: the claims come from the arguments, nothing is remembered. */
export function signDeviceEnvelope(input: {
  seed: Uint8Array;
  kid: Uint8Array;
  topic: string;
  payload: Uint8Array;
  seq: number;
  prev: Uint8Array;
  at: SignTime;
}): Uint8Array {
  const { seed, kid, topic, payload, seq, prev, at } = input;
  return signEnvelope({
    seed,
    kid,
    payload,
    // Whole ms, and an uncertainty rounded up, never down: the claim must not promise more than the clock knows.
    claims: { time: Math.round(at.time), uncertainty: Math.ceil(at.uncertainty), timeSource: at.source, seq, prev, topic },
  });
}

export interface SignedMessage {
  envelope: Uint8Array;
  seq: number;
  /** SHA-256 of the envelope: the next message's `prev`. */
  hash: Uint8Array;
}

/**
 * One device's signing state in memory: the next sequence number and the hash of the last
 * envelope in its chain. `sign` advances the chain; `signDetached` signs at the chain's current
 * position without advancing it (what a broker will not accept as authentic must not move the
 * device's own chain either — the simulator's incidents use it).
 */
export class DeviceSigner {
  readonly deviceId: string;
  readonly publicKey: Uint8Array;
  readonly kid: Uint8Array;
  readonly #seed: Uint8Array;
  readonly #clock: () => SignTime;
  #nextSeq: number;
  #prev: Uint8Array;

  constructor(o: { deviceId: string; seed: Uint8Array; clock: () => SignTime; nextSeq?: number; prev?: Uint8Array }) {
    this.deviceId = o.deviceId;
    this.#seed = o.seed;
    this.publicKey = publicKeyFromSeed(o.seed);
    this.kid = deviceKid(o.deviceId, this.publicKey);
    this.#clock = o.clock;
    this.#nextSeq = o.nextSeq ?? 0;
    this.#prev = o.prev ?? GENESIS_PREV;
  }

  get nextSeq(): number {
    return this.#nextSeq;
  }

  get prev(): Uint8Array {
    return this.#prev;
  }

  /** Signs the next message of the chain and advances it. */
  sign(topic: string, payload: Uint8Array, o: { skewMs?: number } = {}): SignedMessage {
    const m = this.signDetached(topic, payload, o);
    this.#nextSeq = m.seq + 1;
    this.#prev = m.hash;
    return m;
  }

  /**
   * Signs at the chain's current position (seq = nextSeq, prev = last hash) without advancing it;
   * `seed` signs with another key of this device (kid named after that key).
   */
  signDetached(topic: string, payload: Uint8Array, o: { skewMs?: number; seed?: Uint8Array } = {}): SignedMessage {
    const t = this.#clock();
    const seed = o.seed ?? this.#seed;
    const kid = o.seed ? deviceKid(this.deviceId, publicKeyFromSeed(o.seed)) : this.kid;
    const seq = this.#nextSeq;
    const envelope = signDeviceEnvelope({ seed, kid, topic, payload, seq, prev: this.#prev, at: { ...t, time: t.time + (o.skewMs ?? 0) } });
    return { envelope, seq, hash: envelopeHash(envelope) };
  }
}
