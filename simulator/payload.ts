/**
 * Payloads of simulated messages.
 *
 * 1. Application payloads per payload model (types.ts PayloadModel), deterministic: they depend
 *    only on the model, the device id, the message number and the device's content Rng — never
 *    on wall-clock time — so the same seed gives the same bytes (the determinism test hashes them).
 *      constant  `size` bytes of `byte`
 *      random    a size uniform in [minSize, maxSize], bytes from the Rng
 *      json      {"id":DEVICE,"n":MESSAGE_NUMBER,"<sensor>":value,…}: each sensor a random walk
 *                (uniform step in ±step), clamped to [min, max], rounded to `decimals`; padded
 *                with a "pad" field of "x" to at least padTo bytes when padTo > 0
 *    Every json payload of a device is unique (it carries n). constant payloads are all alike and
 *    random ones may repeat; nothing is prepended to make them unique: the run file's `ref`
 *    names each message and `witness sim check` joins the run with the ledger per device in
 *    order, so identical bytes are fine (and the envelopes differ anyway: seq, prev, time).
 *
 * 2. The MQTT payload of a planned publish (PlanSigner): the application payload wrapped in a
 *    COSE_Sign1 envelope (shared/envelope) as the plan says — sequence number, chain (prev = hash
 *    of the previous chained envelope, genesis for seq 0), key, signed topic, clock skew, a
 *    byte flipped after signing — or sent plain (unsigned), or an earlier message's bytes again
 *    (replayed). The runner supplies only the device time.
 */
import { signEnvelope, envelopeHash, decodeEnvelope, GENESIS_PREV, type TimeSource } from '../shared/envelope/index.js';
import { deviceKid } from '../shared/keys/index.js';
import type { Rng } from './rng.js';
import type { PayloadModel, PlannedDevice, PlannedItem, PlannedPublish } from './types.js';

export interface PayloadSource {
  /** The application payload of the device's message number `n` (0-based, counting new messages). */
  next(n: number): Uint8Array;
}

const utf8 = new TextEncoder();

/** A payload source for one device. Its draws come from `rng`, so call it in a fixed order. */
export function payloadSource(model: PayloadModel, deviceId: string, rng: Rng): PayloadSource {
  switch (model.model) {
    case 'constant':
      return { next: () => new Uint8Array(model.size).fill(model.byte) };
    case 'random':
      return { next: () => rng.bytes(rng.int(model.minSize, model.maxSize)) };
    case 'json': {
      const values = model.sensors.map((s) => s.start);
      const scales = model.sensors.map((s) => 10 ** s.decimals);
      const head = `{"id":${JSON.stringify(deviceId)},"n":`;
      const keys = model.sensors.map((s) => `,${JSON.stringify(s.name)}:`);
      return {
        next(n: number): Uint8Array {
          let text = head + String(n);
          for (let i = 0; i < values.length; i++) {
            const s = model.sensors[i]!;
            const scale = scales[i]!;
            let v = values[i]! + (s.step > 0 ? rng.uniform(-s.step, s.step) : 0);
            v = Math.min(Math.max(v, s.min), s.max);
            v = Math.round(v * scale) / scale;
            if (Object.is(v, -0)) v = 0;
            values[i] = v;
            text += keys[i]! + JSON.stringify(v);
          }
          if (model.padTo > 0 && text.length + 1 < model.padTo) {
            // `,"pad":""` is 9 bytes; the rest is filler (every character here is one byte: ids and sensor names are ASCII).
            text += `,"pad":"${'x'.repeat(Math.max(0, model.padTo - text.length - 10))}"`;
          }
          return utf8.encode(text + '}');
        },
      };
    }
  }
}

// ── MQTT payloads of planned publishes ───────────────────────────────────────────────────────

export interface SignerOptions {
  /** The clockUncertainty claim, ms (scenario.clockUncertaintyMs). */
  uncertaintyMs: number;
  /** The time source claim. Default 'system'. */
  timeSource?: TimeSource;
}

export interface WirePayload {
  /** The MQTT payload to publish. */
  bytes: Uint8Array;
  /** The envelope's sequence number, when signed. */
  seq?: number;
  /** SHA-256 of `bytes` when signed (what the broker records as `eh`). */
  envelopeHash?: Uint8Array;
}

/**
 * Builds the MQTT payloads of one device's planned publishes, tracking its chain. Call `wire(i,
 * nowMs)` for the device's publish items in item order — unsent (dropped) ones too: their
 * envelopes are part of the chain. For a reordered pair the later sequence number comes first in
 * item order; the signer then signs the earlier one ahead (with the same time) and hands it out
 * when its turn comes, so `prev` always links sequence n to n − 1.
 */
export class PlanSigner {
  readonly #device: PlannedDevice;
  readonly #items: readonly PlannedItem[];
  readonly #o: SignerOptions;
  readonly #kids = new Map<string, Uint8Array>();
  readonly #ahead = new Map<number, WirePayload>();
  readonly #sources: Set<string>;
  readonly #kept = new Map<string, WirePayload>();
  #nextSeq = 0;
  #prev: Uint8Array = GENESIS_PREV;

  constructor(device: PlannedDevice, items: readonly PlannedItem[], o: SignerOptions) {
    this.#device = device;
    this.#items = items;
    this.#o = o;
    this.#sources = new Set();
    for (const it of items) if (it.kind === 'publish' && it.replayOf !== undefined) this.#sources.add(it.replayOf);
  }

  /** The MQTT payload of items[i] (a publish), with device time `nowMs` (its skew is added here). */
  wire(i: number, nowMs: number): WirePayload {
    const item = this.#publish(i);
    let out: WirePayload;
    if (item.replayOf !== undefined) {
      const src = this.#kept.get(item.replayOf);
      if (!src) throw new Error(`PlanSigner: ${item.ref} replays ${item.replayOf}, which was not built yet`);
      out = src;
    } else if (item.envelope === null) {
      out = { bytes: item.payload };
    } else {
      const ahead = this.#ahead.get(i);
      if (ahead) {
        this.#ahead.delete(i);
        out = ahead;
      } else if (item.envelope.chain) {
        // Sign the chain up to this sequence number first (a reordered pair).
        for (let j = i + 1; item.envelope.seq > this.#nextSeq && j < this.#items.length; j++) {
          const later = this.#items[j]!;
          if (later.kind === 'publish' && later.replayOf === undefined && later.envelope?.chain && later.envelope.seq === this.#nextSeq) {
            this.#ahead.set(j, this.#chained(later, nowMs));
            j = i;
          }
        }
        if (item.envelope.seq !== this.#nextSeq) throw new Error(`PlanSigner: ${item.ref} has seq ${item.envelope.seq}, the chain is at ${this.#nextSeq}`);
        out = this.#chained(item, nowMs);
      } else {
        out = this.#sign(item, nowMs);
      }
    }
    if (this.#sources.has(item.ref)) this.#kept.set(item.ref, out);
    return out;
  }

  #publish(i: number): PlannedPublish {
    const item = this.#items[i];
    if (!item || item.kind !== 'publish') throw new Error(`PlanSigner: item ${i} of ${this.#device.id} is not a publish`);
    return item;
  }

  #chained(item: PlannedPublish, nowMs: number): WirePayload {
    const w = this.#sign(item, nowMs);
    this.#prev = w.envelopeHash!;
    this.#nextSeq++;
    return w;
  }

  #sign(item: PlannedPublish, nowMs: number): WirePayload {
    const e = item.envelope!;
    const key = e.key === 'device' ? this.#device : e.key === 'revoked' ? this.#device.revoked : this.#device.unknown;
    if (!key) throw new Error(`PlanSigner: ${item.ref} is signed with the ${e.key} key, which device ${this.#device.id} does not have`);
    let kid = this.#kids.get(e.key);
    if (!kid) {
      kid = deviceKid(this.#device.id, key.publicKey);
      this.#kids.set(e.key, kid);
    }
    let bytes = signEnvelope({
      seed: key.seed,
      kid,
      claims: {
        time: Math.max(0, Math.round(nowMs + e.skewMs)),
        uncertainty: this.#o.uncertaintyMs,
        timeSource: this.#o.timeSource ?? 'system',
        seq: e.seq,
        prev: this.#prev,
        topic: e.signedTopic,
      },
      payload: item.payload,
    });
    if (e.alter) bytes = alterEnvelope(bytes);
    return { bytes, seq: e.seq, envelopeHash: envelopeHash(bytes) };
  }
}

/** A copy of an envelope with one payload byte flipped (the signature no longer verifies); an empty payload gets a signature byte flipped instead. */
export function alterEnvelope(envelope: Uint8Array): Uint8Array {
  const copy = new Uint8Array(envelope);
  const env = decodeEnvelope(copy);
  // payload and signature are views into `copy`.
  if (env.payload.length > 0) env.payload[env.payload.length - 1]! ^= 0x01;
  else env.signature[0]! ^= 0x01;
  return copy;
}
