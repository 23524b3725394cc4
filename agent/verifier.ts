/**
 * End-to-end verification of the envelopes an agent receives on its subscriptions: the broker's
 * own verdict logic (broker/envelope-check.ts, EnvelopeChecker), so a device and the ledger name
 * every message the same way — valid, missing, malformed, unknown-key, invalid, wrong-topic,
 * replayed, out-of-order, gap, chain-break, clock-skew.
 *
 * A device has no registry: it knows the keys it was given (KnownKeys) plus its own. A key it was
 * not given is `unknown-key`; `revoked` never appears here (revocation lives in the broker's
 * registry, and the broker's ledger records it).
 *
 * Nothing that arrives can throw out of `check`: whatever a hostile or broken publisher sends
 * becomes a verdict.
 */
import { EnvelopeChecker, type EnvelopeResult, type KeyLookup } from '../broker/envelope-check.js';
import { WitnessError } from '../shared/errors.js';
import { keyHash, parseVerifierKey } from '../shared/keys/key-id.js';
import { checkDeviceId } from '../shared/token/device-id.js';
import { toPublicKey, type KnownKeys } from './options.js';

export type { EnvelopeResult } from '../broker/envelope-check.js';

const hex = (b: Uint8Array): string => Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString('hex');

/** The keys a device knows: device id → key hash (hex) → public key. */
export class KnownKeyTable implements KeyLookup {
  readonly #keys = new Map<string, Map<string, Uint8Array>>();

  /** Parses KnownKeys; throws WITNESS_ERR_INVALID_ARGUMENT / _KEY_INVALID / _DEVICE_ID_INVALID naming the bad entry. */
  static from(known: KnownKeys): KnownKeyTable {
    const t = new KnownKeyTable();
    if (Array.isArray(known)) {
      for (const vkey of known as readonly string[]) {
        const { name, publicKey } = parseVerifierKey(vkey);
        t.add(name, publicKey);
      }
    } else if (typeof known === 'object' && known !== null) {
      for (const [id, keys] of Object.entries(known as Record<string, readonly (string | Uint8Array)[]>)) {
        if (!Array.isArray(keys)) throw new WitnessError('WITNESS_ERR_INVALID_ARGUMENT', `knownKeys.${id}: expected a list of public keys`);
        for (const k of keys) t.add(id, toPublicKey(k));
      }
    } else {
      throw new WitnessError('WITNESS_ERR_INVALID_ARGUMENT', 'knownKeys: expected a map of device id → public keys, or a list of verifier keys');
    }
    return t;
  }

  add(deviceId: string, publicKey: Uint8Array): void {
    checkDeviceId(deviceId);
    let m = this.#keys.get(deviceId);
    if (!m) this.#keys.set(deviceId, (m = new Map()));
    m.set(hex(keyHash(deviceId, publicKey)), publicKey);
  }

  lookup(deviceId: string, hash: Uint8Array): { status: 'active' | 'unknown'; publicKey?: Uint8Array } {
    const k = this.#keys.get(deviceId)?.get(hex(hash));
    return k ? { status: 'active', publicKey: k } : { status: 'unknown' };
  }

  /** Number of keys known. */
  get size(): number {
    let n = 0;
    for (const m of this.#keys.values()) n += m.size;
    return n;
  }
}

export interface IncomingVerifierOptions {
  keys: KnownKeyTable;
  /** The receiver's trusted time now: ms since the epoch and its uncertainty, ms. */
  now: () => { time: number; uncertainty: number };
  /** Allowed disagreement beyond both uncertainties, ms. */
  skewToleranceMs: number;
}

export class IncomingVerifier {
  readonly #checker: EnvelopeChecker;
  readonly #now: () => { time: number; uncertainty: number };

  constructor(o: IncomingVerifierOptions) {
    this.#checker = new EnvelopeChecker({ keys: o.keys, skewToleranceMs: o.skewToleranceMs });
    this.#now = o.now;
  }

  /**
   * The verdict of one message received on `topic`. A retained message was signed whenever it was
   * published, possibly long ago, so its age is not a clock disagreement: it is checked against its
   * own time (everything else — signature, topic, sequence — is checked as usual).
   */
  check(topic: string, payload: Uint8Array, retained = false): EnvelopeResult {
    try {
      // An unbounded receiver uncertainty turns the time comparison off and nothing else.
      if (retained) return this.#checker.check(topic, payload, 0, Number.POSITIVE_INFINITY);
      const { time, uncertainty } = this.#now();
      return this.#checker.check(topic, payload, time, uncertainty);
    } catch (e) {
      // EnvelopeChecker turns decoding and signature failures into verdicts itself; anything else
      // is still the sender's bytes, never a reason to stop receiving.
      return { verdict: 'malformed', reason: e instanceof Error ? e.message : String(e) };
    }
  }
}
