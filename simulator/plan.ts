/**
 * The plan: a pure, deterministic function of the scenario. The same scenario (same seed) gives
 * the same devices, keys, connect times, message times, topics, QoS, retain flags, payloads,
 * sequence numbers, incidents and — the point of it all — the verdict the broker must record
 * for every message (types.ts Expectation), before anything is sent.
 *
 * Devices (planDevices): ids from the fleets' patterns in fleet order; device k of all N connects
 * at ⌊rampMs × k / N⌋. Key seeds are SHA-256("witness-sim/v1 key" ‖ 0 ‖ seed ‖ 0 ‖ keySeed ‖ 0 ‖
 * deviceId ‖ 0 ‖ role), role `device`, `revoked` or `unknown`; the last two only for devices that a
 * revoked-key / unknown-key incident chose.
 *
 * Incident devices: the devices of an incident's fleets ranked by SHA-256("witness-sim/v1
 * incident" ‖ 0 ‖ seed ‖ 0 ‖ incident index ‖ 0 ‖ device id); the first ⌈fraction × n⌉ (at least
 * one when the fraction is above 0). A device may be chosen by several incidents.
 *
 * One device's items (planDevice), in send order:
 *   1. a connect at connectAtMs;
 *   2. regular messages ("slots") from connectAtMs + phase (phase uniform in [0, min(interval,
 *      duration))) every interval × (1 + jitter × u) while before connectAtMs + durationMs;
 *   3. incident occurrences at first-message time + at + k × every, processed in time order; each
 *      takes the first FREE slot(s) at or after its time, never slot 0 (the first message is
 *      always clean and authentic, so the broker knows the device's chain before any incident:
 *      otherwise a gap there would read as the start of its history). A slot once taken is no
 *      other occurrence's, so incidents never corrupt each other's verdicts. With no free slot
 *      left, regular messages are appended after the last one (at the later of the occurrence
 *      time and the last message's time), so every occurrence is planned.
 *        unsigned        1 slot, sent as a plain payload; consumes no sequence number → missing
 *        bad-signature   1 slot, seq = next, not chained, a byte flipped after signing → invalid
 *                        (the next chained message reuses the seq and is valid)
 *        wrong-topic     1 slot, signed for TOPIC/elsewhere, published on TOPIC → wrong-topic
 *        unknown-key     1 slot, signed with the never-registered key → unknown-key
 *        revoked-key     1 slot, signed with the revoked key → revoked
 *        clock-skew      1 slot, chained, time claim + skewMs → clock-skew (the broker's chain
 *                        state still advances: the next message is valid)
 *        acl-violation   1 slot, chained, published and signed on forbidden/ID/telemetry →
 *                        env valid, acl deny, refused
 *        replayed        1 slot, a clean message, then an extra item replaying it byte for byte
 *                        (replayOf) → replayed
 *        dropped         2 slots: the first signed and chained but never sent (present false),
 *                        the second → gap 1; both carry the incident
 *        reordered       2 slots, seq n and n+1, sent in swapped order (n+1 at the first slot's
 *                        time → gap 1, then n → out-of-order); both carry the incident
 *        burst           no slot: `messages` extra chained messages just before the first free
 *                        slot at or after the time → valid
 *        connect-storm   no slot: `connects` reconnects there (PlannedConnect with the incident)
 *   4. expectations: the sequence logic of broker/envelope-check.ts is replayed over the sent
 *      items (authentic = device key, intact, signed for the topic it is published on; only
 *      authentic messages move the broker's per-device state), then checked against what each
 *      incident intends — a mismatch is a bug here and throws. ok is false for an ACL deny, and
 *      under envelopeMode enforce for every verdict but valid, gap and out-of-order
 *      (broker/plugin.ts ENFORCE_DELIVERS).
 * Refs are DEVICE#k in item order; atMs never decreases within a device. Message numbers (the
 * json payload's n) count new messages in creation order (a replay repeats its source).
 *
 * The random draws of a device come from its own streams (Rng.fromSeed(tag, seed, deviceId)),
 * so planning one device never needs another's plan: the runner calls planDevice lazily.
 */
import { createHash, createPrivateKey } from 'node:crypto';
import { publicKeyFromSeed } from '../shared/keys/index.js';
import { Rng } from './rng.js';
import { payloadSource } from './payload.js';
import { deviceIdOf, topicOf } from './scenario.js';
import type {
  EnvelopePlan,
  ExpectedVerdict,
  Expectation,
  Fleet,
  IncidentType,
  PlannedConnect,
  PlannedDevice,
  PlannedItem,
  PlannedPublish,
  QoS,
  Scenario,
} from './types.js';
import { INCIDENT_TYPES } from './types.js';

export type KeyRole = 'device' | 'revoked' | 'unknown';

/** Verdicts that `enforce` still delivers (broker/plugin.ts ENFORCE_DELIVERS). */
export const ENFORCE_DELIVERS: ReadonlySet<ExpectedVerdict> = new Set<ExpectedVerdict>(['valid', 'gap', 'out-of-order']);

/** The topic an acl-violation publishes on: outside the device's `devices/{id}/…` subtree. */
export function forbiddenTopic(deviceId: string): string {
  return `forbidden/${deviceId}/telemetry`;
}

/** The topic a wrong-topic envelope is signed for. */
export function elsewhereTopic(topic: string): string {
  return `${topic}/elsewhere`;
}

// ── devices and keys ─────────────────────────────────────────────────────────────────────────

const ZERO = Uint8Array.of(0);

/** The Ed25519 seed of one of a device's keys (32 bytes). */
export function deriveKeySeed(s: Scenario, fleet: Fleet, deviceId: string, role: KeyRole): Uint8Array {
  const h = createHash('sha256');
  h.update('witness-sim/v1 key', 'utf8');
  for (const part of [s.seed, fleet.keySeed, deviceId, role]) {
    h.update(ZERO);
    h.update(part, 'utf8');
  }
  return new Uint8Array(h.digest());
}

function keyPair(s: Scenario, fleet: Fleet, id: string, role: KeyRole): { seed: Uint8Array; publicKey: Uint8Array } {
  const seed = deriveKeySeed(s, fleet, id, role);
  return { seed, publicKey: publicKeyOf(seed) };
}

/**
 * publicKeyFromSeed, faster: importing the seed as a JWK and reading back `x` costs ≈ 50 µs
 * here, importing it as PKCS#8 DER (the shared/keys node backend) ≈ 400 µs — OpenSSL 3's DER
 * decoder lookup — which made planning 10,000 devices take seconds. OpenSSL derives the public
 * key from `d` (the placeholder `x` is not used); the result is checked against
 * publicKeyFromSeed once, and any failure falls back to it.
 */
function publicKeyOf(seed: Uint8Array): Uint8Array {
  if (fastKeys === undefined) {
    const probe = new Uint8Array(32).fill(7);
    const fast = jwkPublicKey(probe);
    fastKeys = fast !== undefined && Buffer.from(fast).equals(Buffer.from(publicKeyFromSeed(probe)));
  }
  return (fastKeys ? jwkPublicKey(seed) : undefined) ?? publicKeyFromSeed(seed);
}
let fastKeys: boolean | undefined;

function jwkPublicKey(seed: Uint8Array): Uint8Array | undefined {
  try {
    const d = Buffer.from(seed.buffer, seed.byteOffset, seed.byteLength).toString('base64url');
    const x = createPrivateKey({ key: { kty: 'OKP', crv: 'Ed25519', d, x: '' }, format: 'jwk' }).export({ format: 'jwk' }).x;
    const pk = typeof x === 'string' ? Buffer.from(x, 'base64url') : undefined;
    return pk?.length === 32 ? new Uint8Array(pk) : undefined;
  } catch {
    return undefined;
  }
}

/** Every device of the scenario, fleets in order. Derives one Ed25519 key per device (plus the incident keys). */
export function planDevices(s: Scenario): PlannedDevice[] {
  const ctx = context(s);
  const out: PlannedDevice[] = [];
  let k = 0;
  for (const fleet of s.fleets) {
    for (let n = 0; n < fleet.count; n++, k++) {
      const id = deviceIdOf(fleet, n);
      const main = keyPair(s, fleet, id, 'device');
      const d: PlannedDevice = { id, fleet: fleet.name, n, seed: main.seed, publicKey: main.publicKey, connectAtMs: connectAt(s, k, ctx.total) };
      const roles = ctx.keyRoles.get(id);
      if (roles?.has('revoked')) d.revoked = keyPair(s, fleet, id, 'revoked');
      if (roles?.has('unknown')) d.unknown = keyPair(s, fleet, id, 'unknown');
      out.push(d);
    }
  }
  return out;
}

function connectAt(s: Scenario, k: number, total: number): number {
  return Math.floor((s.rampMs * k) / total);
}

// ── per-scenario context (cached per Scenario object) ─────────────────────────────────────────

interface Choice {
  /** Index into s.incidents. */
  incident: number;
}

interface Context {
  total: number;
  fleets: Map<string, Fleet>;
  /** Device id → the incidents that chose it, in incident order. */
  chosen: Map<string, Choice[]>;
  keyRoles: Map<string, Set<KeyRole>>;
}

const CONTEXTS = new WeakMap<Scenario, Context>();

function context(s: Scenario): Context {
  let c = CONTEXTS.get(s);
  if (c) return c;
  const fleets = new Map(s.fleets.map((f) => [f.name, f]));
  const total = s.fleets.reduce((a, f) => a + f.count, 0);
  const chosen = new Map<string, Choice[]>();
  const keyRoles = new Map<string, Set<KeyRole>>();
  s.incidents.forEach((x, index) => {
    for (const id of chooseDevices(s, index)) {
      let list = chosen.get(id);
      if (!list) chosen.set(id, (list = []));
      list.push({ incident: index });
      const role: KeyRole | undefined = x.type === 'revoked-key' ? 'revoked' : x.type === 'unknown-key' ? 'unknown' : undefined;
      if (role) {
        let r = keyRoles.get(id);
        if (!r) keyRoles.set(id, (r = new Set()));
        r.add(role);
      }
    }
  });
  c = { total, fleets, chosen, keyRoles };
  CONTEXTS.set(s, c);
  return c;
}

/** The device ids incident `index` of the scenario applies to, in rank order. */
export function chooseDevices(s: Scenario, index: number): string[] {
  const x = s.incidents[index];
  if (!x) throw new RangeError(`chooseDevices: no incident ${index}`);
  if (x.devices <= 0) return [];
  const ids: string[] = [];
  for (const f of s.fleets) {
    if (x.fleets.length > 0 && !x.fleets.includes(f.name)) continue;
    for (let n = 0; n < f.count; n++) ids.push(deviceIdOf(f, n));
  }
  // ⌈fraction × n⌉, robust to 0.7 × 10 = 7.000000000000001.
  const want = Math.min(ids.length, Math.max(1, Math.ceil(x.devices * ids.length - 1e-9)));
  const ranked = ids.map((id) => {
    const h = createHash('sha256');
    h.update('witness-sim/v1 incident', 'utf8');
    for (const part of [s.seed, String(index), id]) {
      h.update(ZERO);
      h.update(part, 'utf8');
    }
    return { id, rank: h.digest('hex') };
  });
  ranked.sort((a, b) => (a.rank < b.rank ? -1 : a.rank > b.rank ? 1 : 0));
  return ranked.slice(0, want).map((r) => r.id);
}

// ── one device ───────────────────────────────────────────────────────────────────────────────

/** What a draft item is, for building and for the intent check. */
type Role =
  | 'connect'
  | 'storm'
  | 'clean'
  | 'burst'
  | 'unsigned'
  | 'bad-signature'
  | 'wrong-topic'
  | 'unknown-key'
  | 'revoked-key'
  | 'clock-skew'
  | 'acl-violation'
  | 'replay'
  | 'dropped-unsent'
  | 'dropped-next'
  | 'reorder-early'
  | 'reorder-late';

interface Occurrence {
  type: IncidentType;
  /** Index into s.incidents. */
  incident: number;
  /** Occurrence k of that incident on this device. */
  k: number;
  t: number;
  /** `TYPE:DEVICE:k`, k counting this device's occurrences of the type. */
  id: string;
}

interface Draft {
  role: Role;
  t: number;
  occ?: Occurrence;
  /** For a replay: the draft it repeats. */
  source?: Draft;
  item?: PlannedItem;
}

const SLOTS_TAKEN: Record<IncidentType, number> = {
  unsigned: 1,
  'bad-signature': 1,
  'wrong-topic': 1,
  replayed: 1,
  dropped: 2,
  reordered: 2,
  'clock-skew': 1,
  'unknown-key': 1,
  'revoked-key': 1,
  'acl-violation': 1,
  'connect-storm': 0,
  burst: 0,
};

/**
 * The device's items in send order (see the header for the rules). Pure and deterministic.
 * `allDevices` is accepted for callers that have it and not needed: the incident choice is
 * computed once per Scenario object and cached.
 */
export function planDevice(s: Scenario, device: PlannedDevice, allDevices?: readonly PlannedDevice[]): PlannedItem[] {
  void allDevices;
  const ctx = context(s);
  const fleet = ctx.fleets.get(device.fleet);
  if (!fleet) throw new RangeError(`planDevice: device ${device.id} names fleet ${device.fleet}, which the scenario does not have`);
  const id = device.id;

  // 1. Regular message times.
  const times = Rng.fromSeed('witness-sim/v1 times', s.seed, id);
  const end = device.connectAtMs + s.durationMs;
  const slots: number[] = [];
  for (let t = device.connectAtMs + times.next() * Math.min(fleet.intervalMs, s.durationMs); t < end; ) {
    slots.push(t);
    t += fleet.intervalMs * (1 + fleet.jitter * (2 * times.next() - 1));
  }
  const first = slots[0]!;

  // 2. Occurrences, in time order, onto slots.
  const occs: Occurrence[] = [];
  const perType = new Map<IncidentType, number>();
  for (const ch of ctx.chosen.get(id) ?? []) {
    const x = s.incidents[ch.incident]!;
    for (let k = 0; k < x.count; k++) {
      const ordinal = perType.get(x.type) ?? 0;
      perType.set(x.type, ordinal + 1);
      occs.push({ type: x.type, incident: ch.incident, k, t: first + x.atMs + k * x.everyMs, id: `${x.type}:${id}:${ordinal}` });
    }
  }
  occs.sort((a, b) => a.t - b.t || a.incident - b.incident || a.k - b.k);

  const owner: Array<Occurrence | undefined> = new Array(slots.length);
  const before = new Map<number, Occurrence[]>();
  for (const o of occs) {
    const need = SLOTS_TAKEN[o.type];
    let from = Math.max(1, lowerBound(slots, o.t));
    let at = -1;
    for (;;) {
      at = findFree(owner, slots.length, from, Math.max(need, 1));
      if (at >= 0) break;
      slots.push(Math.max(o.t, slots[slots.length - 1]!));
      owner.push(undefined);
      from = Math.max(from, 1);
    }
    if (need === 0) {
      let list = before.get(at);
      if (!list) before.set(at, (list = []));
      list.push(o);
    } else for (let j = 0; j < need; j++) owner[at + j] = o;
  }

  // 3. Drafts in creation order.
  const drafts: Draft[] = [{ role: 'connect', t: device.connectAtMs }];
  let last = device.connectAtMs;
  for (let i = 0; i < slots.length; i++) {
    for (const o of before.get(i) ?? []) {
      const t = Math.max(o.t, last);
      const x = s.incidents[o.incident]!;
      const n = o.type === 'burst' ? x.messages : x.connects;
      for (let j = 0; j < n; j++) drafts.push({ role: o.type === 'burst' ? 'burst' : 'storm', t, occ: o });
      last = t;
    }
    const t = slots[i]!;
    last = t;
    const o = owner[i];
    if (!o) {
      drafts.push({ role: 'clean', t });
      continue;
    }
    const firstOfPair = i === 0 || owner[i - 1] !== o;
    switch (o.type) {
      case 'replayed': {
        const src: Draft = { role: 'clean', t };
        drafts.push(src, { role: 'replay', t, occ: o, source: src });
        break;
      }
      case 'dropped':
        drafts.push({ role: firstOfPair ? 'dropped-unsent' : 'dropped-next', t, occ: o });
        break;
      case 'reordered':
        drafts.push({ role: firstOfPair ? 'reorder-early' : 'reorder-late', t, occ: o });
        break;
      default:
        drafts.push({ role: o.type as Role, t, occ: o });
    }
  }

  // 4. Content, sequence numbers and envelopes, in creation order.
  const content = Rng.fromSeed('witness-sim/v1 content', s.seed, id);
  const payloads = payloadSource(fleet.payload, id, content);
  const topic = topicOf(fleet, id, device.n);
  const qosOnly = fleet.qos.filter((w) => w > 0).length === 1 ? (fleet.qos.findIndex((w) => w > 0) as QoS) : undefined;
  let nextSeq = 0;
  let messages = 0;
  for (const d of drafts) {
    if (d.role === 'connect' || d.role === 'storm') {
      const c: PlannedConnect = { kind: 'connect', ref: '', device: id, atMs: 0 };
      if (d.occ) c.incident = { type: d.occ.type, id: d.occ.id };
      d.item = c;
      continue;
    }
    if (d.role === 'replay') {
      const src = d.source!.item as PlannedPublish;
      d.item = { ...src, envelope: src.envelope ? { ...src.envelope, chain: false } : null, incident: { type: d.occ!.type, id: d.occ!.id } };
      continue;
    }
    const qos: QoS = qosOnly ?? (content.pick(fleet.qos) as QoS);
    const retain = fleet.retain > 0 && content.chance(fleet.retain);
    const payload = payloads.next(messages++);
    let env: EnvelopePlan | null = { seq: nextSeq, chain: true, key: 'device', signedTopic: topic, skewMs: 0, alter: false };
    let pubTopic = topic;
    switch (d.role) {
      case 'unsigned':
        env = null;
        break;
      case 'bad-signature':
        env.chain = false;
        env.alter = true;
        break;
      case 'wrong-topic':
        env.chain = false;
        env.signedTopic = elsewhereTopic(topic);
        break;
      case 'unknown-key':
        env.chain = false;
        env.key = 'unknown';
        break;
      case 'revoked-key':
        env.chain = false;
        env.key = 'revoked';
        break;
      case 'clock-skew':
        env.skewMs = s.incidents[d.occ!.incident]!.skewMs;
        break;
      case 'acl-violation':
        pubTopic = forbiddenTopic(id);
        env.signedTopic = pubTopic;
        break;
      default:
        break;
    }
    if (env?.chain) nextSeq++;
    const p: PlannedPublish = {
      kind: 'publish',
      ref: '',
      device: id,
      atMs: 0,
      topic: pubTopic,
      payload,
      qos,
      retain,
      envelope: env,
      send: d.role !== 'dropped-unsent',
      expect: { present: true },
    };
    if (d.occ) p.incident = { type: d.occ.type, id: d.occ.id };
    d.item = p;
  }

  // 5. Reordered pairs are sent in swapped order (each keeps its slot's time).
  for (let i = 0; i + 1 < drafts.length; i++) {
    const a = drafts[i]!;
    const b = drafts[i + 1]!;
    if (a.role === 'reorder-early' && b.role === 'reorder-late' && a.occ === b.occ) {
      [a.t, b.t] = [b.t, a.t];
      drafts[i] = b;
      drafts[i + 1] = a;
      i++;
    }
  }

  // 6. Refs, times, expectations.
  const items: PlannedItem[] = new Array(drafts.length);
  for (let k = 0; k < drafts.length; k++) {
    const d = drafts[k]!;
    const it = d.item!;
    it.ref = `${id}#${k}`;
    it.atMs = Math.round(d.t);
    items[k] = it;
  }
  for (const d of drafts) if (d.role === 'replay') (d.item as PlannedPublish).replayOf = d.source!.item!.ref;
  expect(drafts, s.envelopeMode);
  return items;
}

/** First index with slots[i] ≥ t (slots ascending). */
function lowerBound(slots: readonly number[], t: number): number {
  let lo = 0;
  let hi = slots.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (slots[mid]! < t) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

/** First index ≥ from where `need` consecutive slots are free; -1 if none. */
function findFree(owner: ReadonlyArray<Occurrence | undefined>, n: number, from: number, need: number): number {
  let run = 0;
  for (let i = from; i < n; i++) {
    run = owner[i] === undefined ? run + 1 : 0;
    if (run === need) return i - need + 1;
  }
  return -1;
}

// ── expectations: the broker's sequence logic, replayed ───────────────────────────────────────

const INTENDED: Partial<Record<Role, { env: ExpectedVerdict; gap?: number } | 'absent'>> = {
  clean: { env: 'valid' },
  burst: { env: 'valid' },
  unsigned: { env: 'missing' },
  'bad-signature': { env: 'invalid' },
  'wrong-topic': { env: 'wrong-topic' },
  'unknown-key': { env: 'unknown-key' },
  'revoked-key': { env: 'revoked' },
  'clock-skew': { env: 'clock-skew' },
  'acl-violation': { env: 'valid' },
  replay: { env: 'replayed' },
  'dropped-unsent': 'absent',
  'dropped-next': { env: 'gap', gap: 1 },
  'reorder-late': { env: 'gap', gap: 1 },
  'reorder-early': { env: 'out-of-order' },
};

/** The ok of a recorded publish: refused for an ACL deny, and under enforce for what enforce does not deliver. */
export function expectedOk(env: ExpectedVerdict, acl: 'allow' | 'deny', mode: Scenario['envelopeMode']): boolean {
  if (acl === 'deny') return false;
  return mode === 'observe' || ENFORCE_DELIVERS.has(env);
}

function expect(drafts: readonly Draft[], mode: Scenario['envelopeMode']): void {
  let st: { seq: number; missing: Set<number> } | undefined;
  for (const d of drafts) {
    const it = d.item!;
    if (it.kind !== 'publish') continue;
    let e: Expectation;
    if (!it.send) e = { present: false };
    else {
      const env = it.envelope;
      let verdict: ExpectedVerdict;
      let gap: number | undefined;
      if (env === null) verdict = 'missing';
      else if (env.key === 'unknown') verdict = 'unknown-key';
      else if (env.key === 'revoked') verdict = 'revoked';
      else if (env.alter) verdict = 'invalid';
      else if (env.signedTopic !== it.topic) verdict = 'wrong-topic';
      else {
        // Authentic: envelope-check.ts #advance.
        const seq = env.seq;
        if (!st) {
          st = { seq, missing: new Set() };
          verdict = 'valid';
        } else if (seq === st.seq + 1) {
          st.seq = seq;
          verdict = 'valid';
        } else if (seq > st.seq + 1) {
          gap = seq - st.seq - 1;
          for (let q = st.seq + 1; q < seq; q++) st.missing.add(q);
          st.seq = seq;
          verdict = 'gap';
        } else if (st.missing.delete(seq)) verdict = 'out-of-order';
        else verdict = 'replayed';
        if (verdict === 'valid' && env.skewMs > 0) verdict = 'clock-skew';
      }
      const acl = d.role === 'acl-violation' ? 'deny' : 'allow';
      e = { present: true, env: verdict, acl, ok: expectedOk(verdict, acl, mode) };
      if (gap !== undefined) e.gap = gap;
    }
    const want = INTENDED[d.role];
    const same = want === 'absent' ? !e.present : want !== undefined && e.present && want.env === e.env && want.gap === e.gap;
    if (!same) {
      const got = e.present ? { env: e.env, gap: e.gap } : 'absent';
      throw new Error(`simulator plan: ${it.ref} (${d.role}) would be recorded ${JSON.stringify(got)}, not ${JSON.stringify(want)} (a bug in simulator/plan.ts)`);
    }
    it.expect = e;
  }
}

// ── whole-scenario views ─────────────────────────────────────────────────────────────────────

/** Every device with its items. Plans lazily, one device at a time. */
export function* planAll(s: Scenario, devices: readonly PlannedDevice[] = planDevices(s)): Generator<{ device: PlannedDevice; items: PlannedItem[] }> {
  for (const device of devices) yield { device, items: planDevice(s, device) };
}

const b64 = (b: Uint8Array): string => Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString('base64url');

/**
 * SHA-256 (hex) over a canonical serialisation of the whole plan: every device (id, fleet,
 * index, public keys, connect time) and every item (ref, kind, time, topic, QoS, retain, send,
 * envelope plan, replayOf, incident, expectation, payload bytes). Equal digests = equal plans.
 */
export function planDigest(s: Scenario): string {
  const h = createHash('sha256');
  h.update('witness-sim/v1 plan\n');
  const len = Buffer.alloc(4);
  for (const { device: d, items } of planAll(s)) {
    h.update(JSON.stringify(['device', d.id, d.fleet, d.n, b64(d.publicKey), d.revoked ? b64(d.revoked.publicKey) : null, d.unknown ? b64(d.unknown.publicKey) : null, d.connectAtMs]) + '\n');
    for (const it of items) {
      const inc = it.incident ? [it.incident.type, it.incident.id] : null;
      if (it.kind === 'connect') {
        h.update(JSON.stringify(['connect', it.ref, it.device, it.atMs, inc]) + '\n');
        continue;
      }
      const e = it.envelope;
      const x = it.expect;
      h.update(
        JSON.stringify([
          'publish',
          it.ref,
          it.device,
          it.atMs,
          it.topic,
          it.qos,
          it.retain,
          it.send,
          e ? [e.seq, e.chain, e.key, e.signedTopic, e.skewMs, e.alter] : null,
          it.replayOf ?? null,
          inc,
          [x.present, x.env ?? null, x.gap ?? null, x.acl ?? null, x.ok ?? null],
        ]) + '\n',
      );
      len.writeUInt32BE(it.payload.length, 0);
      h.update(len);
      h.update(it.payload);
    }
  }
  return h.digest('hex');
}

export interface PlanSummary {
  devices: number;
  /** Connects planned: one per device plus the storm reconnects. */
  connects: number;
  stormConnects: number;
  publishes: number;
  /** Publishes actually sent (publishes − dropped). */
  sent: number;
  /** Sent publishes expected refused (ok false). */
  refused: number;
  /** Incident occurrences per type. */
  occurrences: Record<IncidentType, number>;
  /** Items carrying an incident, per type. */
  incidentItems: Record<IncidentType, number>;
  /** Expected envelope verdicts of the sent publishes. */
  verdicts: Partial<Record<ExpectedVerdict, number>>;
  /** Planned time of the last item, ms after the start. */
  lastAtMs: number;
}

/** Counts over the whole plan (plans every device). */
export function planSummary(s: Scenario): PlanSummary {
  const zero = (): Record<IncidentType, number> => Object.fromEntries(INCIDENT_TYPES.map((t) => [t, 0])) as Record<IncidentType, number>;
  const sum: PlanSummary = { devices: 0, connects: 0, stormConnects: 0, publishes: 0, sent: 0, refused: 0, occurrences: zero(), incidentItems: zero(), verdicts: {}, lastAtMs: 0 };
  for (const { items } of planAll(s)) {
    sum.devices++;
    const seen = new Set<string>();
    for (const it of items) {
      sum.lastAtMs = Math.max(sum.lastAtMs, it.atMs);
      if (it.incident) {
        sum.incidentItems[it.incident.type]++;
        if (!seen.has(it.incident.id)) {
          seen.add(it.incident.id);
          sum.occurrences[it.incident.type]++;
        }
      }
      if (it.kind === 'connect') {
        sum.connects++;
        if (it.incident) sum.stormConnects++;
        continue;
      }
      sum.publishes++;
      if (!it.send) continue;
      sum.sent++;
      if (it.expect.ok === false) sum.refused++;
      if (it.expect.env) sum.verdicts[it.expect.env] = (sum.verdicts[it.expect.env] ?? 0) + 1;
    }
  }
  return sum;
}
