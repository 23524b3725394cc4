import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import fc from 'fast-check';
import { Rng } from '../../simulator/rng.js';
import { payloadSource, PlanSigner, alterEnvelope } from '../../simulator/payload.js';
import { loadScenario, parseScenario } from '../../simulator/scenario.js';
import { chooseDevices, deriveKeySeed, expectedOk, forbiddenTopic, planDevice, planDevices, planDigest, planSummary } from '../../simulator/plan.js';
import { INCIDENT_TYPES, type IncidentSpec, type IncidentType, type PlannedDevice, type PlannedItem, type PlannedPublish, type Scenario } from '../../simulator/types.js';
import { EnvelopeChecker, type KeyLookup } from '../../broker/envelope-check.js';
import { loadConfig } from '../../broker/config/index.js';
import { Acl } from '../../broker/acl/index.js';
import { Policies } from '../../broker/policy/index.js';
import { decodeEnvelope, verifyEnvelope, GENESIS_PREV, envelopeHash } from '../../shared/envelope/index.js';
import { keyHash, publicKeyFromSeed } from '../../shared/keys/index.js';

const SCENARIOS = new URL('../../../simulator/scenarios/', import.meta.url).pathname;
const incidents = (): Scenario => loadScenario(join(SCENARIOS, 'incidents.yaml'));
const hex = (b: Uint8Array): string => Buffer.from(b).toString('hex');
const pubs = (items: PlannedItem[]): PlannedPublish[] => items.filter((i): i is PlannedPublish => i.kind === 'publish');

describe('Rng (xoshiro128**)', () => {
  test('the reference outputs for state (1, 2, 3, 4)', () => {
    const r = Rng.fromState(1, 2, 3, 4);
    const out = Array.from({ length: 10 }, () => r.u32());
    // Computed from the reference C code (prng.di.unimi.it/xoshiro128starstar.c).
    assert.deepEqual(out, [11520, 0, 5927040, 70819200, 2031721883, 1637235492, 1287239034, 3734860849, 3729100597, 4258142804]);
  });

  test('fromSeed: the same parts give the same stream, other parts another; parts are length-prefixed', () => {
    const draw = (r: Rng): number[] => Array.from({ length: 8 }, () => r.u32());
    assert.deepEqual(draw(Rng.fromSeed('a', 'b')), draw(Rng.fromSeed('a', 'b')));
    assert.notDeepEqual(draw(Rng.fromSeed('a', 'b')), draw(Rng.fromSeed('a', 'c')));
    assert.notDeepEqual(draw(Rng.fromSeed('ab', 'c')), draw(Rng.fromSeed('a', 'bc')));
  });

  test('next, int, pick, chance, bytes stay in their ranges', () => {
    const r = Rng.fromSeed('ranges');
    const seen = new Set<number>();
    const picks = [0, 0, 0];
    for (let i = 0; i < 20_000; i++) {
      const x = r.next();
      assert.ok(x >= 0 && x < 1);
      const k = r.int(3, 7);
      assert.ok(Number.isInteger(k) && k >= 3 && k <= 7);
      seen.add(k);
      picks[r.pick([1, 0, 3])]!++;
      assert.equal(r.chance(0), false);
    }
    assert.deepEqual([...seen].sort(), [3, 4, 5, 6, 7]);
    assert.equal(picks[1], 0);
    assert.ok(Math.abs(picks[2]! / picks[0]! - 3) < 0.3, String(picks));
    assert.throws(() => r.pick([0, 0]));
    assert.throws(() => r.int(5, 4));
    const a = Rng.fromSeed('b').bytes(7);
    assert.equal(a.length, 7);
    assert.deepEqual(a, Rng.fromSeed('b').bytes(7));
  });
});

describe('payloads', () => {
  test('json: id, n, random-walk sensors clamped and rounded, padded to padTo', () => {
    const src = payloadSource(
      { model: 'json', sensors: [{ name: 'temp', start: 20, step: 5, min: 0, max: 30, decimals: 1 }, { name: 'h', start: 50, step: 0, min: 0, max: 100, decimals: 0 }], padTo: 120 },
      'dev-1',
      Rng.fromSeed('p'),
    );
    let prev = 20;
    for (let n = 0; n < 200; n++) {
      const bytes = src.next(n);
      assert.ok(bytes.length >= 120 && bytes.length <= 121, String(bytes.length));
      const text = Buffer.from(bytes).toString('utf8');
      const o = JSON.parse(text) as Record<string, unknown>;
      assert.deepEqual(Object.keys(o), ['id', 'n', 'temp', 'h', 'pad']);
      assert.equal(o.id, 'dev-1');
      assert.equal(o.n, n);
      const t = o.temp as number;
      assert.ok(t >= 0 && t <= 30, text);
      assert.equal(Math.round(t * 10) / 10, t);
      assert.ok(Math.abs(t - prev) <= 5.05, `${prev} → ${t}`);
      prev = t;
      assert.equal(o.h, 50);
    }
    const exact = payloadSource({ model: 'json', sensors: [], padTo: 64 }, 'x', Rng.fromSeed('p'));
    assert.equal(exact.next(0).length, 64);
    const none = payloadSource({ model: 'json', sensors: [], padTo: 0 }, 'x', Rng.fromSeed('p'));
    assert.equal(Buffer.from(none.next(7)).toString(), '{"id":"x","n":7}');
  });

  test('constant and random', () => {
    const c = payloadSource({ model: 'constant', size: 5, byte: 0x41 }, 'x', Rng.fromSeed('p')).next(0);
    assert.equal(Buffer.from(c).toString(), 'AAAAA');
    const r = payloadSource({ model: 'random', minSize: 3, maxSize: 9 }, 'x', Rng.fromSeed('p'));
    const sizes = new Set<number>();
    for (let i = 0; i < 300; i++) {
      const b = r.next(i);
      assert.ok(b.length >= 3 && b.length <= 9);
      sizes.add(b.length);
    }
    assert.equal(sizes.size, 7);
  });

  test('alterEnvelope flips a payload byte: the envelope still decodes, the signature fails', () => {
    const s = incidents();
    const d = planDevices(s)[0]!;
    const items = planDevice(s, d);
    const bytes = new PlanSigner(d, items, { uncertaintyMs: 5 }).wire(1, 1_700_000_000_000).bytes;
    verifyEnvelope(decodeEnvelope(bytes), d.publicKey);
    const bad = alterEnvelope(bytes);
    assert.equal(bad.length, bytes.length);
    assert.equal([...bad].filter((b, i) => b !== bytes[i]).length, 1);
    assert.throws(() => verifyEnvelope(decodeEnvelope(bad), d.publicKey), { code: 'WITNESS_ERR_SIGNATURE_INVALID' });
  });
});

describe('plan: determinism', () => {
  const text = [
    'seed: "golden"',
    'duration: 3s',
    'ramp: 1s',
    'fleets:',
    '  - { name: a, count: 3, interval: 400ms, jitter: 0.2, qos: { 0: 1, 1: 1, 2: 1 }, retain: 0.2 }',
    '  - { name: b, count: 2, interval: 1s, payload: { model: random, size: [4, 40] } }',
    'incidents:',
    '  - { type: reordered, devices: 0.5, at: 1s }',
    '  - { type: unknown-key, fleets: [b], devices: 1, at: 1s }',
  ].join('\n');

  test('the same scenario gives the same digest (parsed twice); a pinned digest guards against silent changes', () => {
    const a = planDigest(parseScenario(text, '/x/golden.yaml'));
    const b = planDigest(parseScenario(text, '/x/golden.yaml'));
    assert.equal(a, b);
    assert.match(a, /^[0-9a-f]{64}$/);
    // Pinned: a change to key derivation, the Rng, timing, payloads or expectations changes it.
    // Update it only for an intended change of the plan (it changes every recorded run's meaning).
    assert.equal(a, GOLDEN_DIGEST);
  });

  test('a different seed gives a different digest, different keys and different payloads', () => {
    const s1 = parseScenario(text, '/x/golden.yaml');
    const s2 = { ...s1, seed: 'golden-2' };
    assert.notEqual(planDigest(s1), planDigest(s2));
    const [d1, d2] = [planDevices(s1)[0]!, planDevices(s2)[0]!];
    assert.equal(d1.id, d2.id);
    assert.notDeepEqual(d1.publicKey, d2.publicKey);
    assert.notDeepEqual(pubs(planDevice(s1, d1))[0]!.payload, pubs(planDevice(s2, d2))[0]!.payload);
  });

  test("changing one fleet's keySeed changes only that fleet's keys", () => {
    const s1 = parseScenario(text, '/x/golden.yaml');
    const s2: Scenario = { ...s1, fleets: s1.fleets.map((f) => (f.name === 'b' ? { ...f, keySeed: 'b-rotated' } : f)) };
    const [p1, p2] = [planDevices(s1), planDevices(s2)];
    for (let i = 0; i < p1.length; i++) {
      const [x, y] = [p1[i]!, p2[i]!];
      if (x.fleet === 'a') {
        assert.deepEqual(y, x);
      } else {
        assert.notDeepEqual(y.publicKey, x.publicKey);
        assert.notDeepEqual(y.unknown!.publicKey, x.unknown!.publicKey);
        assert.equal(y.connectAtMs, x.connectAtMs);
      }
      assert.deepEqual(planDevice(s2, y), planDevice(s1, x), 'messages do not depend on keys');
    }
    assert.notEqual(planDigest(s1), planDigest(s2));
  });

  test('keys: SHA-256 seeds per role; publicKey matches shared/keys; incident keys only where chosen', () => {
    const s = parseScenario(text, '/x/golden.yaml');
    const devices = planDevices(s);
    for (const d of devices) {
      const f = s.fleets.find((x) => x.name === d.fleet)!;
      assert.deepEqual(d.seed, deriveKeySeed(s, f, d.id, 'device'));
      assert.deepEqual(d.publicKey, publicKeyFromSeed(d.seed));
      assert.equal(d.revoked, undefined);
      assert.equal(d.unknown !== undefined, d.fleet === 'b');
      if (d.unknown) assert.deepEqual(d.unknown.publicKey, publicKeyFromSeed(deriveKeySeed(s, f, d.id, 'unknown')));
    }
    assert.deepEqual(
      devices.map((d) => d.connectAtMs),
      [0, 200, 400, 600, 800],
    );
  });
});
const GOLDEN_DIGEST = '30f13f18204f8d36c4b3b014fd5a7a21d6d9759a58286ffe3bb1b412ef9815a8';

describe('plan: items and incidents (incidents.yaml)', () => {
  const s = incidents();
  const devices = planDevices(s);
  const plans = new Map(devices.map((d) => [d.id, planDevice(s, d)]));
  const byType = (t: IncidentType): Array<{ device: PlannedDevice; items: PlannedItem[]; idx: number[] }> => {
    const out: Array<{ device: PlannedDevice; items: PlannedItem[]; idx: number[] }> = [];
    for (const d of devices) {
      const items = plans.get(d.id)!;
      const ids = new Set(items.filter((i) => i.incident?.type === t).map((i) => i.incident!.id));
      for (const id of ids) out.push({ device: d, items, idx: items.flatMap((it, k) => (it.incident?.id === id ? [k] : [])) });
    }
    return out;
  };
  /** The chained message with sequence number `seq` (there is exactly one). */
  const chainSeq = (items: PlannedItem[], seq: number): { p: PlannedPublish; k: number } => {
    const k = items.findIndex((it) => it.kind === 'publish' && it.envelope?.chain && !it.replayOf && it.envelope.seq === seq);
    assert.ok(k >= 0, `no chained message with seq ${seq}`);
    return { p: items[k] as PlannedPublish, k };
  };
  const chainSeqs = (items: PlannedItem[]): number[] => pubs(items).filter((p) => p.envelope?.chain && !p.replayOf).map((p) => p.envelope!.seq);

  test('every device: a connect first, then a clean first message; refs DEVICE#k; times never decrease; seqs start at 0', () => {
    for (const d of devices) {
      const items = plans.get(d.id)!;
      assert.deepEqual(items[0], { kind: 'connect', ref: `${d.id}#0`, device: d.id, atMs: d.connectAtMs });
      const first = items[1] as PlannedPublish;
      assert.equal(first.kind, 'publish');
      assert.equal(first.incident, undefined);
      assert.deepEqual(first.envelope, { seq: 0, chain: true, key: 'device', signedTopic: first.topic, skewMs: 0, alter: false });
      assert.deepEqual(first.expect, { present: true, env: 'valid', acl: 'allow', ok: true });
      items.forEach((it, k) => {
        assert.equal(it.ref, `${d.id}#${k}`);
        assert.equal(it.device, d.id);
        if (k > 0) assert.ok(it.atMs >= items[k - 1]!.atMs, `${it.ref} goes back in time`);
      });
      // Chained sequence numbers: each one once, 0..n-1.
      const seqs = pubs(items).filter((p) => p.envelope?.chain).map((p) => p.envelope!.seq).sort((a, b) => a - b);
      assert.deepEqual(seqs, seqs.map((_, i) => i));
      // Clean messages: valid, allowed, accepted.
      for (const p of pubs(items)) if (!p.incident) assert.deepEqual(p.expect, { present: true, env: 'valid', acl: 'allow', ok: true }, p.ref);
    }
  });

  test('every incident type occurs; each occurrence id is TYPE:DEVICE:k', () => {
    for (const t of INCIDENT_TYPES) {
      const occ = byType(t);
      assert.ok(occ.length > 0, `no ${t}`);
      for (const o of occ) assert.match(o.items[o.idx[0]!]!.incident!.id, new RegExp(`^${t}:${o.device.id}:\\d+$`));
    }
  });

  test('unsigned: a plain payload that consumes no sequence number → missing', () => {
    for (const { items, idx } of byType('unsigned')) {
      assert.equal(idx.length, 1);
      const p = items[idx[0]!] as PlannedPublish;
      assert.equal(p.envelope, null);
      assert.deepEqual(p.expect, { present: true, env: 'missing', acl: 'allow', ok: true });
      const before = chainSeqs(items.slice(0, idx[0]!));
      const after = chainSeqs(items.slice(idx[0]! + 1));
      assert.equal(Math.min(...after), Math.max(...before) + 1);
    }
  });

  test('bad-signature: altered, not chained → invalid; a later chained message reuses its seq (valid when clean)', () => {
    let reusedByClean = 0;
    for (const { items, idx } of byType('bad-signature')) {
      const p = items[idx[0]!] as PlannedPublish;
      assert.equal(p.envelope!.alter, true);
      assert.equal(p.envelope!.chain, false);
      assert.equal(p.expect.env, 'invalid');
      const { p: next, k } = chainSeq(items, p.envelope!.seq);
      assert.ok(k > idx[0]!);
      if (!next.incident) {
        assert.equal(next.expect.env, 'valid');
        reusedByClean++;
      }
    }
    assert.ok(reusedByClean > 0);
  });

  test('wrong-topic, unknown-key, revoked-key', () => {
    for (const { items, idx } of byType('wrong-topic')) {
      const p = items[idx[0]!] as PlannedPublish;
      assert.equal(p.envelope!.signedTopic, `${p.topic}/elsewhere`);
      assert.equal(p.envelope!.chain, false);
      assert.equal(p.expect.env, 'wrong-topic');
    }
    for (const [t, key, env] of [
      ['unknown-key', 'unknown', 'unknown-key'],
      ['revoked-key', 'revoked', 'revoked'],
    ] as const) {
      for (const { device, items, idx } of byType(t)) {
        const p = items[idx[0]!] as PlannedPublish;
        assert.equal(p.envelope!.key, key);
        assert.equal(p.envelope!.chain, false);
        assert.equal(p.expect.env, env);
        assert.ok(device[key], `${device.id} has a ${key} key`);
      }
    }
  });

  test('replayed: an extra item repeating the previous sent chain message → replayed', () => {
    for (const { items, idx } of byType('replayed')) {
      assert.equal(idx.length, 1);
      const p = items[idx[0]!] as PlannedPublish;
      const src = items[idx[0]! - 1] as PlannedPublish;
      assert.equal(p.replayOf, src.ref);
      assert.equal(src.incident, undefined);
      assert.equal(src.send, true);
      assert.deepEqual([p.topic, p.payload, p.qos, p.retain, p.envelope!.seq], [src.topic, src.payload, src.qos, src.retain, src.envelope!.seq]);
      assert.equal(p.envelope!.chain, false);
      assert.equal(p.expect.env, 'replayed');
    }
  });

  test('dropped: signed but not sent, then gap 1', () => {
    for (const { items, idx } of byType('dropped')) {
      assert.equal(idx.length, 2);
      assert.equal(idx[1], idx[0]! + 1);
      const [a, b] = [items[idx[0]!] as PlannedPublish, items[idx[1]!] as PlannedPublish];
      assert.equal(a.send, false);
      assert.equal(a.envelope!.chain, true);
      assert.deepEqual(a.expect, { present: false });
      assert.equal(b.envelope!.seq, a.envelope!.seq + 1);
      assert.deepEqual(b.expect, { present: true, env: 'gap', gap: 1, acl: 'allow', ok: true });
    }
  });

  test('reordered: seq n+1 first (gap 1), then n (out-of-order); the next message is valid', () => {
    for (const { items, idx } of byType('reordered')) {
      assert.equal(idx.length, 2);
      assert.equal(idx[1], idx[0]! + 1);
      const [a, b] = [items[idx[0]!] as PlannedPublish, items[idx[1]!] as PlannedPublish];
      assert.equal(a.envelope!.seq, b.envelope!.seq + 1);
      assert.deepEqual([a.expect.env, a.expect.gap, b.expect.env], ['gap', 1, 'out-of-order']);
      assert.ok(a.atMs <= b.atMs);
      const { p: next, k } = chainSeq(items, a.envelope!.seq + 1);
      assert.ok(k > idx[1]!);
      if (!next.incident) assert.equal(next.expect.env, 'valid');
    }
  });

  test('clock-skew: chained, skewed → clock-skew; acl-violation: forbidden topic → valid, deny, refused', () => {
    for (const { items, idx } of byType('clock-skew')) {
      const p = items[idx[0]!] as PlannedPublish;
      assert.deepEqual([p.envelope!.chain, p.envelope!.skewMs, p.expect.env], [true, 60_000, 'clock-skew']);
      // The broker's state advanced: the next sequence number is no gap.
      const { p: next } = chainSeq(items, p.envelope!.seq + 1);
      if (!next.incident) assert.equal(next.expect.env, 'valid');
    }
    for (const { device, items, idx } of byType('acl-violation')) {
      const p = items[idx[0]!] as PlannedPublish;
      assert.equal(p.topic, forbiddenTopic(device.id));
      assert.equal(p.envelope!.signedTopic, p.topic);
      assert.deepEqual(p.expect, { present: true, env: 'valid', acl: 'deny', ok: false });
    }
  });

  test('connect-storm: `connects` connects at one time; burst: `messages` chained valid messages', () => {
    for (const { items, idx } of byType('connect-storm')) {
      assert.equal(idx.length, 3);
      const cs = idx.map((k) => items[k]!);
      assert.ok(cs.every((c) => c.kind === 'connect' && c.atMs === cs[0]!.atMs));
    }
    for (const { items, idx } of byType('burst')) {
      assert.equal(idx.length, 20);
      const ps = idx.map((k) => items[k] as PlannedPublish);
      assert.ok(ps.every((p) => p.kind === 'publish' && p.atMs === ps[0]!.atMs && p.envelope!.chain && p.expect.env === 'valid'));
      assert.deepEqual(
        ps.map((p) => p.envelope!.seq - ps[0]!.envelope!.seq),
        ps.map((_, i) => i),
      );
    }
  });

  test('enforce: refused are exactly ACL denials and the verdicts enforce does not deliver', () => {
    const e = planSummary({ ...s, envelopeMode: 'enforce' });
    const o = planSummary(s);
    assert.equal(o.refused, o.occurrences['acl-violation']);
    const notDelivered = ['missing', 'invalid', 'wrong-topic', 'replayed', 'clock-skew', 'unknown-key', 'revoked'] as const;
    assert.equal(e.refused, o.refused + notDelivered.reduce((n, v) => n + (e.verdicts[v] ?? 0), 0));
    assert.equal(expectedOk('gap', 'allow', 'enforce'), true);
    assert.equal(expectedOk('out-of-order', 'allow', 'enforce'), true);
    assert.equal(expectedOk('clock-skew', 'allow', 'enforce'), false);
    assert.equal(expectedOk('clock-skew', 'allow', 'observe'), true);
    assert.equal(expectedOk('valid', 'deny', 'observe'), false);
  });

  test('incident devices: ⌈fraction × n⌉, at least one, deterministic, within the named fleets', () => {
    s.incidents.forEach((x, i) => {
      const eligible = s.fleets.filter((f) => x.fleets.length === 0 || x.fleets.includes(f.name)).reduce((n, f) => n + f.count, 0);
      const chosen = chooseDevices(s, i);
      assert.equal(chosen.length, Math.max(1, Math.ceil(x.devices * eligible - 1e-9)));
      assert.deepEqual(chooseDevices(s, i), chosen);
      if (x.fleets.length) for (const id of chosen) assert.ok(x.fleets.includes(devices.find((d) => d.id === id)!.fleet));
    });
  });
});

// ── the strongest test: the plan's ground truth against the broker's own logic ────────────────

interface Mismatch {
  ref: string;
  what: string;
}

/**
 * Signs every planned message (PlanSigner: seq, prev chain, skew, alteration, replays), runs the
 * REAL EnvelopeChecker over the sent ones with a key registry built from the planned devices, and
 * compares its verdicts with the plan's expectations. With `broker`, also the ACL and policy
 * decisions of that broker configuration and the plugin's ok rule.
 */
function simulate(s: Scenario, broker?: string, tamper?: (items: PlannedItem[]) => void): { mismatches: Mismatch[]; checked: number; verdicts: Map<string, number> } {
  const devices = planDevices(s);
  const registry = new Map<string, { status: 'active' | 'revoked'; publicKey: Uint8Array }>();
  for (const d of devices) {
    registry.set(`${d.id}/${hex(keyHash(d.id, d.publicKey))}`, { status: 'active', publicKey: d.publicKey });
    if (d.revoked) registry.set(`${d.id}/${hex(keyHash(d.id, d.revoked.publicKey))}`, { status: 'revoked', publicKey: d.revoked.publicKey });
  }
  const keys: KeyLookup = { lookup: (id, h) => registry.get(`${id}/${hex(h)}`) ?? { status: 'unknown' } };
  const checker = new EnvelopeChecker({ keys });
  const cfg = broker ? loadConfig(join(SCENARIOS, broker)) : undefined;
  const acl = cfg ? new Acl(cfg.acl) : undefined;
  const policies = cfg ? new Policies({ policies: cfg.policies, defaultPolicy: cfg.defaultPolicy }) : undefined;
  const DELIVERS = new Set(['valid', 'gap', 'out-of-order']); // broker/plugin.ts ENFORCE_DELIVERS
  const NOW = 1_700_000_000_000;
  const mismatches: Mismatch[] = [];
  const verdicts = new Map<string, number>();
  let checked = 0;
  for (const d of devices) {
    const items = planDevice(s, d);
    tamper?.(items);
    const signer = new PlanSigner(d, items, { uncertaintyMs: s.clockUncertaintyMs });
    const who = { identity: `device:${d.id}+${hex(keyHash(d.id, d.publicKey))}`, clientId: d.id };
    const chain = new Map<number, { prev: string; hash: string; ref: string }>();
    items.forEach((it, i) => {
      if (it.kind !== 'publish') return;
      const w = signer.wire(i, NOW);
      if (it.envelope?.chain && !it.replayOf) {
        const env = decodeEnvelope(w.bytes);
        chain.set(env.claims.seq, { prev: hex(env.claims.prev), hash: hex(envelopeHash(w.bytes)), ref: it.ref });
      }
      if (!it.send) {
        if (it.expect.present !== false) mismatches.push({ ref: it.ref, what: 'unsent but expected present' });
        return;
      }
      checked++;
      const r = checker.check(it.topic, w.bytes, NOW, 100);
      verdicts.set(r.verdict, (verdicts.get(r.verdict) ?? 0) + 1);
      if (r.verdict !== it.expect.env || r.gap !== it.expect.gap) mismatches.push({ ref: it.ref, what: `checker says ${r.verdict}${r.gap ? ` ${r.gap}` : ''}, plan ${it.expect.env}${it.expect.gap ? ` ${it.expect.gap}` : ''}` });
      if (acl && policies) {
        const allowed = acl.checkPublish(who, it.topic).allowed;
        if ((allowed ? 'allow' : 'deny') !== it.expect.acl) mismatches.push({ ref: it.ref, what: `acl ${allowed}, plan ${it.expect.acl}` });
        const refused = !allowed || (policies.forTopic(it.topic).envelope === 'enforce' && !DELIVERS.has(r.verdict));
        if (!refused !== it.expect.ok) mismatches.push({ ref: it.ref, what: `broker ok ${!refused}, plan ${it.expect.ok}` });
      }
    });
    // The signer's chain: seq 0 from genesis, seq n linked to the envelope of seq n − 1.
    for (const [seq, c] of chain) {
      const want = seq === 0 ? hex(GENESIS_PREV) : chain.get(seq - 1)?.hash;
      if (c.prev !== want) mismatches.push({ ref: c.ref, what: `prev of seq ${seq} does not link to seq ${seq - 1}` });
    }
  }
  return { mismatches, checked, verdicts };
}

describe('plan vs the real broker EnvelopeChecker, ACL and policies', () => {
  for (const [file, broker] of [
    ['incidents.yaml', 'incidents.broker.yaml'],
    ['incidents-enforce.yaml', 'incidents-enforce.broker.yaml'],
  ] as const) {
    test(`${file} under ${broker}: every sent message gets exactly the planned verdict, ACL decision and ok`, () => {
      const s = loadScenario(join(SCENARIOS, file));
      const r = simulate(s, broker);
      assert.deepEqual(r.mismatches, []);
      assert.ok(r.checked > 400, String(r.checked));
      for (const v of ['valid', 'missing', 'invalid', 'wrong-topic', 'replayed', 'gap', 'out-of-order', 'clock-skew', 'unknown-key', 'revoked']) {
        assert.ok((r.verdicts.get(v) ?? 0) > 0, `the checker never said ${v}`);
      }
    });
  }

  test('the comparison can fail: a changed expectation, the wrong broker mode, a swapped send order', () => {
    const s = incidents();
    const flip = simulate(s, undefined, (items) => {
      const p = pubs(items).find((x) => x.incident?.type === 'reordered' && x.expect.env === 'out-of-order');
      if (p) p.expect = { ...p.expect, env: 'replayed' };
    });
    assert.ok(flip.mismatches.some((m) => /checker says out-of-order, plan replayed/.test(m.what)), JSON.stringify(flip.mismatches));
    const wrongMode = simulate({ ...s, envelopeMode: 'enforce' }, 'incidents.broker.yaml');
    assert.ok(wrongMode.mismatches.some((m) => /broker ok true, plan false/.test(m.what)));
    const unswapped = simulate(s, undefined, (items) => {
      const k = items.findIndex((x) => x.incident?.type === 'reordered');
      if (k >= 0) [items[k], items[k + 1]] = [items[k + 1]!, items[k]!];
    });
    assert.ok(unswapped.mismatches.length > 0);
  });

  test('every incident type at time 0 (the first message) and piled on one device is still detected', () => {
    for (const mode of ['observe', 'enforce'] as const) {
      const text = [
        'seed: "pile"',
        'duration: 3s',
        `envelopeMode: ${mode}`,
        'fleets:',
        '  - { name: a, count: 2, interval: 1s }',
        'incidents:',
        ...INCIDENT_TYPES.map((t) => `  - { type: ${t}, devices: 1, at: 0, count: 2, every: 1ms }`),
      ].join('\n');
      const s = parseScenario(text, '/x/pile.yaml');
      assert.deepEqual(simulate(s).mismatches, []);
      for (const d of planDevices(s)) {
        const items = planDevice(s, d);
        assert.equal(items[1]!.incident, undefined, 'the first message stays clean');
        const ids = new Set(items.flatMap((i) => (i.incident ? [i.incident.id] : [])));
        assert.equal(ids.size, INCIDENT_TYPES.length * 2);
        // 3 regular messages cannot carry 20 slot-taking occurrences: messages were appended.
        assert.ok(pubs(items).filter((p) => p.incident).length > 20);
      }
    }
  });

  test('property: random scenarios with piled-up incidents on few devices always agree with the checker', () => {
    const types = INCIDENT_TYPES;
    const incidentArb = fc.record({
      type: fc.constantFrom(...types),
      at: fc.oneof(fc.constant(0), fc.integer({ min: 0, max: 5999 })),
      count: fc.integer({ min: 1, max: 3 }),
      every: fc.integer({ min: 1, max: 2500 }),
      devices: fc.constantFrom(0.5, 1),
    });
    fc.assert(
      fc.property(
        fc.string({ minLength: 1, maxLength: 8 }),
        fc.integer({ min: 300, max: 6000 }),
        fc.integer({ min: 50, max: 3000 }),
        fc.constantFrom(0, 0.3, 0.9),
        fc.integer({ min: 1, max: 3 }),
        fc.array(incidentArb, { minLength: 1, maxLength: 10 }),
        fc.constantFrom('observe' as const, 'enforce' as const),
        (seed, durationMs, intervalMs, jitter, count, xs, mode) => {
          const specs: IncidentSpec[] = xs.map((x) => {
            let n = x.count;
            while (n > 1 && x.at % durationMs + (n - 1) * x.every >= durationMs) n--;
            return { type: x.type, fleets: [], devices: x.devices, atMs: x.at % durationMs, count: n, everyMs: x.every, skewMs: 60_000, connects: 2, messages: 3 };
          });
          const s: Scenario = {
            name: 'prop',
            seed,
            durationMs,
            rampMs: 100,
            audience: 'mqtt-witness',
            clockUncertaintyMs: 5,
            envelopeMode: mode,
            subscriber: { filter: '', qos: 0 },
            fleets: [
              { name: 'p', count, idPattern: 'p-{n}', keySeed: 'p', topic: 'devices/{id}/t', intervalMs, jitter, qos: [1, 1, 1], retain: 0.1, payload: { model: 'json', sensors: [], padTo: 0 } },
            ],
            incidents: specs,
          };
          const r = simulate(s);
          assert.deepEqual(r.mismatches, []);
          // Every occurrence is planned: its id appears on some item.
          const seen = new Set<string>();
          for (const d of planDevices(s)) for (const it of planDevice(s, d)) if (it.incident) seen.add(it.incident.id);
          const want = specs.reduce((n, x, i) => n + chooseDevices(s, i).length * x.count, 0);
          assert.equal(seen.size, want);
        },
      ),
      { numRuns: 40, seed: 20240605 },
    );
  });
});

describe('plan: scale', () => {
  test('10,000 devices plan lazily in reasonable time', () => {
    const s = loadScenario(join(SCENARIOS, 'fleet-10k.yaml'));
    const t0 = performance.now();
    const devices = planDevices(s);
    const t1 = performance.now();
    let items = 0;
    for (const d of devices) items += planDevice(s, d).length;
    const t2 = performance.now();
    assert.equal(devices.length, 10_000);
    assert.ok(items > 100_000);
    // Generous bounds (a loaded 2-core machine): the point is "seconds, not minutes".
    assert.ok(t1 - t0 < 20_000, `planDevices ${t1 - t0} ms`);
    assert.ok(t2 - t1 < 20_000, `planDevice × 10,000: ${t2 - t1} ms`);
  });
});
