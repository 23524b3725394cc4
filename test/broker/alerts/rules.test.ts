/**
 * The alert rule engine on synthetic ledger record streams: each rule fires on the incident that
 * should trigger it (subject, count, evidence indices), thresholds and cooldowns hold, and clean
 * traffic stays silent.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { AlertEngine, DEFAULT_ALERT_RULES, resolveAlertRules, ipOf, type Alert, type AlertRulesInput } from '../../../broker/alerts/rules.js';
import { Rng } from '../../../simulator/rng.js';

type Rec = Record<string, unknown> & { i: number; e: string; t: number };

const T0 = 1_800_000_000_000;

/** Builds records with consecutive ledger indices and feeds them to an engine, collecting alerts. */
class Stream {
  i = 0;
  readonly alerts: Alert[] = [];
  readonly records: Rec[] = [];
  constructor(readonly engine: AlertEngine = new AlertEngine()) {}
  add(e: string, t: number, fields: Record<string, unknown> = {}): Rec {
    const r = { i: this.i++, v: 1, e, t, u: 100, n: 'node', ...fields } as Rec;
    this.records.push(r);
    this.alerts.push(...this.engine.observe(r));
    return r;
  }
  publish(c: string, t: number, fields: Record<string, unknown> = {}): Rec {
    return this.add('publish', t, { s: `s-${c}`, c, id: `device:${c}+abcd1234`, a: '10.1.1.1:40000', topic: `devices/${c}/data`, q: 0, r: false, z: 100, acl: 'allow', env: 'valid', actor: 'client', dt: t - 5, ...fields });
  }
  connect(c: string, t: number, fields: Record<string, unknown> = {}): Rec {
    return this.add('connect', t, { s: `s-${c}`, c, id: `device:${c}+abcd1234`, a: '10.1.1.1:40000', ok: true, rc: 0, auth: 'token', ...fields });
  }
  disconnect(c: string, t: number, why: string, fields: Record<string, unknown> = {}): Rec {
    return this.add('disconnect', t, { s: `s-${c}`, c, id: `device:${c}+abcd1234`, why, ...fields });
  }
  tick(now: number): Alert[] {
    const a = this.engine.tick(now);
    this.alerts.push(...a);
    return a;
  }
  of(rule: string): Alert[] {
    return this.alerts.filter((a) => a.rule === rule);
  }
}

/** No alert (printed if there are some). */
function none(alerts: readonly Alert[], msg = ''): void {
  assert.equal(alerts.length, 0, `${msg} unexpected alerts: ${JSON.stringify(alerts.slice(0, 5), null, 1)}`);
}

/** Deterministic random numbers in [0, 1) (the simulator's generator). */
function rng(seed: number): () => number {
  const r = Rng.fromSeed('test', String(seed));
  return () => r.next();
}

/** Events (time, thunk) merged in time order. */
function runInOrder(events: Array<[number, () => void]>): void {
  events.sort((a, b) => a[0] - b[0]);
  for (const [, fn] of events) fn();
}

describe('clean traffic', () => {
  test('10,000 valid publishes of 50 devices at steady rates with jitter, reconnects, ticks: no alert', () => {
    const s = new Stream();
    const rand = rng(42);
    const events: Array<[number, () => void]> = [];
    const perDevice = 200; // 50 × 200 = 10,000 publishes
    let end = T0;
    for (let k = 0; k < 50; k++) {
      const c = `sensor-${k}`;
      const interval = 500 + (k % 10) * 450; // 0.5 s … 4.55 s
      let t = T0 + Math.floor(rand() * 1000);
      events.push([t - 1, () => s.connect(c, t - 1 - 0)]);
      for (let n = 0; n < perDevice; n++) {
        const at = t;
        events.push([at, () => s.publish(c, at, { dt: at - Math.floor(rand() * 50), seq: n })]);
        t += Math.round(interval * (0.85 + 0.3 * rand()));
        // Every 10th device leaves cleanly in the middle for a while, then comes back.
        if (k % 10 === 3 && n === perDevice / 2) {
          const left = t;
          events.push([left, () => s.disconnect(c, left, 'clean')]);
          t += 120_000;
          const back = t - 500;
          events.push([back, () => s.connect(c, back)]);
        }
        // Every 10th device drops its connection and is back within a fraction of its interval.
        if (k % 10 === 7 && n === perDevice / 3) {
          const drop = t - Math.round(interval / 2);
          events.push([drop, () => s.disconnect(c, drop, 'error')]);
          events.push([drop + 100, () => s.connect(c, drop + 100)]);
        }
      }
      end = Math.max(end, t);
      // At the end each device leaves cleanly.
      events.push([t, () => s.disconnect(c, t, 'clean')]);
    }
    // The broker's own $SYS publishes, checkpoints, subscriptions: none of them are a device's traffic.
    for (let t = T0; t < end; t += 10_000) {
      const at = t;
      events.push([at, () => s.add('publish', at, { id: 'broker', actor: 'broker', topic: '$SYS/x', acl: 'allow', env: 'unchecked' })]);
      events.push([at + 1, () => s.add('checkpoint', at + 1, { cp: { n: 1, size: 1, root: 'x' } })]);
    }
    events.push([T0 + 5, () => s.add('subscribe', T0 + 5, { c: 'dash', id: 'user:alice', a: '10.0.0.9:5555', f: 'devices/+/data', g: 0, acl: 'allow' })]);
    // Ticks every second of the run, and well after it.
    for (let t = T0; t < end + 60_000; t += 1000) {
      const at = t;
      events.push([at + 0.5, () => s.tick(at)]);
    }
    runInOrder(events);
    assert.equal(s.records.filter((r) => r.e === 'publish' && r.actor === 'client').length, 10_000);
    none(s.alerts);
  });
});

describe('signature failures', () => {
  test('count − 1 failures in the window: nothing; the count-th fires for the device with its evidence', () => {
    const s = new Stream();
    s.publish('d1', T0);
    const a = s.publish('d1', T0 + 1000, { env: 'invalid' });
    s.publish('d2', T0 + 1500, { env: 'invalid' }); // another device: its own count
    s.publish('d1', T0 + 2000, { env: 'unknown-key' });
    none(s.alerts);
    const c = s.publish('d1', T0 + 3000, { env: 'chain-break' });
    assert.equal(s.alerts.length, 1);
    const al = s.alerts[0]!;
    assert.equal(al.rule, 'signature-failures');
    assert.equal(al.subject, 'device:d1');
    assert.equal(al.severity, 'critical');
    assert.equal(al.count, 3);
    assert.equal(al.windowMs, 60_000);
    assert.equal(al.firstIndex, a.i);
    assert.equal(al.lastIndex, c.i);
    assert.equal(al.at, T0 + 3000);
    assert.deepEqual(al.details?.verdicts, { invalid: 1, 'unknown-key': 1, 'chain-break': 1 });
    assert.match(al.message, /3 envelope signature failures from device d1/);
  });

  test('failures spread wider than the window do not add up', () => {
    const s = new Stream();
    s.publish('d1', T0, { env: 'invalid' });
    s.publish('d1', T0 + 30_000, { env: 'invalid' });
    s.publish('d1', T0 + 60_000, { env: 'invalid' }); // the first is exactly 60 s old: out
    s.publish('d1', T0 + 90_001, { env: 'invalid' }); // the second is out
    none(s.alerts);
    s.publish('d1', T0 + 95_000, { env: 'invalid' });
    assert.equal(s.of('signature-failures').length, 1);
  });

  test('every verdict of the set counts; valid, gap, replayed, missing do not', () => {
    for (const env of ['invalid', 'malformed', 'unknown-key', 'revoked', 'wrong-topic', 'chain-break']) {
      const s = new Stream();
      for (let k = 0; k < 3; k++) s.publish('d', T0 + k, { env });
      assert.equal(s.of('signature-failures').length, 1, env);
    }
    const s = new Stream();
    for (const env of ['valid', 'replayed', 'missing', 'out-of-order', 'unchecked']) for (let k = 0; k < 5; k++) s.publish('d', T0 + k, { env });
    none(s.of('signature-failures'));
  });

  test('configured thresholds: count 5 → 4 is silent, 5 fires', () => {
    const s = new Stream(new AlertEngine({ signatureFailures: { count: 5, windowMs: 10_000 } }));
    for (let k = 0; k < 4; k++) s.publish('d', T0 + k * 1000, { env: 'invalid' });
    none(s.alerts);
    s.publish('d', T0 + 4000, { env: 'invalid' });
    assert.equal(s.alerts.length, 1);
    assert.equal(s.alerts[0]!.count, 5);
    assert.equal(s.alerts[0]!.firstIndex, 0);
  });

  test('cooldown: one alert per minute for the same device; held-back ones are counted in the next', () => {
    const s = new Stream();
    for (let k = 0; k < 20; k++) s.publish('d1', T0 + k * 1000, { env: 'invalid' }); // 20 failures in 20 s
    assert.equal(s.of('signature-failures').length, 1);
    s.publish('d2', T0 + 20_000, { env: 'invalid' }); // cooldown is per subject
    s.publish('d2', T0 + 20_001, { env: 'invalid' });
    s.publish('d2', T0 + 20_002, { env: 'invalid' });
    assert.equal(s.of('signature-failures').length, 2);
    // 60 s after the first alert (at T0 + 2 s): fires again.
    for (let k = 0; k < 3; k++) s.publish('d1', T0 + 62_000 + k, { env: 'invalid' });
    const d1 = s.of('signature-failures').filter((a) => a.subject === 'device:d1');
    assert.equal(d1.length, 2);
    assert.equal(d1[1]!.details?.suppressed, 17);
  });

  test('disabled: nothing', () => {
    const s = new Stream(new AlertEngine({ signatureFailures: { enabled: false } }));
    for (let k = 0; k < 10; k++) s.publish('d1', T0 + k, { env: 'invalid' });
    none(s.alerts);
  });
});

describe('gaps', () => {
  test('default: one missing message fires, with the count of missing messages', () => {
    const s = new Stream();
    s.publish('d1', T0, { seq: 0 });
    const g = s.publish('d1', T0 + 1000, { seq: 4, env: 'gap', gap: 3 });
    assert.equal(s.alerts.length, 1);
    const a = s.alerts[0]!;
    assert.equal(a.rule, 'gaps');
    assert.equal(a.subject, 'device:d1');
    assert.equal(a.count, 3);
    assert.equal(a.firstIndex, g.i);
    assert.equal(a.lastIndex, g.i);
  });

  test('missing 5: gaps add up within the window; 4 is silent, 5 fires; older gaps fall out', () => {
    const s = new Stream(new AlertEngine({ gaps: { missing: 5, windowMs: 60_000 } }));
    s.publish('d1', T0, { env: 'gap', gap: 3 }); // falls out of the window below
    const first = s.publish('d1', T0 + 61_000, { env: 'gap', gap: 2 });
    s.publish('d1', T0 + 70_000, { env: 'gap', gap: 2 });
    none(s.alerts);
    const last = s.publish('d1', T0 + 80_000, { env: 'gap', gap: 1 });
    assert.equal(s.alerts.length, 1);
    assert.equal(s.alerts[0]!.count, 5);
    assert.equal(s.alerts[0]!.firstIndex, first.i);
    assert.equal(s.alerts[0]!.lastIndex, last.i);
  });
});

describe('clock skew', () => {
  test('device time ahead beyond the bound fires; within, or behind (late), does not', () => {
    const s = new Stream();
    s.publish('d1', T0, { dt: T0 + 4_000 });
    s.publish('d2', T0, { dt: T0 - 600_000, late: 599_000 });
    none(s.alerts);
    const r = s.publish('d1', T0 + 1000, { dt: T0 + 1000 + 6_000 });
    assert.equal(s.alerts.length, 1);
    const a = s.alerts[0]!;
    assert.equal(a.rule, 'clock-skew');
    assert.equal(a.subject, 'device:d1');
    assert.equal(a.firstIndex, r.i);
    assert.equal(a.details?.aheadMs, 6_000);
  });

  test('the broker verdict clock-skew fires even under the bound', () => {
    const s = new Stream();
    s.publish('d3', T0, { dt: T0 + 1_500, env: 'clock-skew' });
    assert.equal(s.of('clock-skew').length, 1);
    assert.equal(s.of('clock-skew')[0]!.subject, 'device:d3');
  });
});

describe('denials', () => {
  const refused = (s: Stream, t: number, c: string, a: string, extra: Record<string, unknown> = {}): Rec =>
    s.add('connect', t, { s: `s${t}`, c, id: 'unauthenticated', a, ok: false, rc: 4, why: 'token:bad-signature', user: 'witness-token/v1', ...extra });

  test('per address: 4 refused connects from one IP (different ports, client ids) are silent, the 5th fires', () => {
    const s = new Stream();
    const first = refused(s, T0, 'x1', '10.0.0.1:5001');
    for (let k = 2; k <= 4; k++) refused(s, T0 + k * 1000, `x${k}`, `10.0.0.1:500${k}`);
    refused(s, T0 + 4500, 'x1', '10.0.0.2:5001'); // another address
    none(s.alerts);
    const last = refused(s, T0 + 5000, 'x5', '10.0.0.1:5005');
    assert.equal(s.alerts.length, 1);
    const a = s.alerts[0]!;
    assert.equal(a.rule, 'denials');
    assert.equal(a.subject, 'address:10.0.0.1');
    assert.equal(a.count, 5);
    assert.equal(a.firstIndex, first.i);
    assert.equal(a.lastIndex, last.i);
  });

  test('per identity: refused publishes, subscriptions and connects of user:bob from many addresses', () => {
    const s = new Stream();
    let t = T0;
    const first = s.add('publish', (t += 100), { c: 'bob-1', id: 'user:bob', a: '10.0.1.1:1', topic: 'x', acl: 'deny', ok: false, env: 'missing' });
    s.add('subscribe', (t += 100), { c: 'bob-1', id: 'user:bob', a: '10.0.1.2:1', f: '#', g: 128, acl: 'deny' });
    s.add('subscribe', (t += 100), { c: 'bob-1', id: 'user:bob', a: '10.0.1.3:1', f: 'ok/#', g: 0, acl: 'allow' }); // granted: not a denial
    refused(s, (t += 100), 'bob-2', '10.0.1.4:1', { user: 'bob', why: 'password:wrong', rc: 4 });
    s.add('publish', (t += 100), { c: 'bob-1', id: 'user:bob', a: '10.0.1.5:1', topic: 'y', acl: 'deny', ok: false });
    none(s.alerts);
    const last = s.add('publish', (t += 100), { c: 'bob-1', id: 'user:bob', a: '[::1]:7', topic: 'z', acl: 'deny', ok: false });
    assert.equal(s.alerts.length, 1);
    const a = s.alerts[0]!;
    assert.equal(a.subject, 'identity:user:bob');
    assert.equal(a.count, 5);
    assert.equal(a.firstIndex, first.i);
    assert.equal(a.lastIndex, last.i);
    assert.deepEqual(a.details?.kinds, { 'refused publish': 3, 'refused subscription': 1, 'refused connect': 1 });
  });

  test('refused token connects count against the client id; one client from one address fires both subjects', () => {
    const s = new Stream();
    for (let k = 0; k < 5; k++) refused(s, T0 + k * 1000, 'd9', `10.9.9.9:${6000 + k}`);
    assert.deepEqual(s.alerts.map((a) => a.subject).sort(), ['address:10.9.9.9', 'identity:client:d9']);
  });

  test('spread beyond the window: silent', () => {
    const s = new Stream();
    for (let k = 0; k < 10; k++) refused(s, T0 + k * 15_001, `x${k}`, '10.0.0.1:1');
    none(s.alerts);
  });

  test('ipOf', () => {
    assert.equal(ipOf('127.0.0.1:1883'), '127.0.0.1');
    assert.equal(ipOf('[::1]:1883'), '::1');
    assert.equal(ipOf('[fe80::1%eth0]:1'), 'fe80::1%eth0');
    assert.equal(ipOf('::1'), '::1');
  });
});

describe('rate anomaly', () => {
  /** A device at one message a second for `seconds`, from T0. Returns the next time. */
  function steady(s: Stream, c: string, seconds: number, from = T0, period = 1000): number {
    let t = from;
    for (let k = 0; k < seconds * (1000 / period); k++) {
      s.publish(c, t);
      t += period;
    }
    return t;
  }

  test('a steady device then a ×10 burst fires, with the burst as evidence', () => {
    const s = new Stream();
    let t = steady(s, 'd1', 120);
    none(s.alerts);
    let firstBurst = -1;
    for (let k = 0; k < 100; k++) {
      const r = s.publish('d1', t);
      if (k === 0) firstBurst = r.i;
      t += 100; // 10/s
    }
    const a = s.of('rate-anomaly');
    assert.equal(a.length, 1, JSON.stringify(s.alerts));
    assert.equal(a[0]!.subject, 'device:d1');
    assert.ok(a[0]!.count! >= 50 && a[0]!.count! < 60, String(a[0]!.count));
    assert.ok(a[0]!.firstIndex! <= firstBurst + 1 && a[0]!.firstIndex! >= firstBurst - 10, `${a[0]!.firstIndex} vs ${firstBurst}`);
    const baseline = a[0]!.details?.baselinePerSec as number;
    assert.ok(baseline > 0.8 && baseline < 1.2, String(baseline));
  });

  test('a ×2 rate does not fire', () => {
    const s = new Stream();
    let t = steady(s, 'd1', 120);
    for (let k = 0; k < 200; k++) {
      s.publish('d1', t);
      t += 500;
    }
    none(s.alerts);
  });

  test('not before minBaselineMessages of history', () => {
    const s = new Stream();
    let t = steady(s, 'd1', 15); // 15 messages, 5 of them folded into the baseline
    for (let k = 0; k < 100; k++) {
      s.publish('d1', t);
      t += 100;
    }
    none(s.of('rate-anomaly'));
  });

  test('back after an hour-long outage at the usual rate: not a burst; late backlog not counted', () => {
    const s = new Stream();
    let t = steady(s, 'd1', 300);
    s.disconnect('d1', t, 'closed');
    t += 3_600_000;
    s.connect('d1', t);
    // The outbox backlog arrives fast, marked late, then live traffic resumes.
    for (let k = 0; k < 100; k++) s.publish('d1', t + k * 5, { dt: t - 3_600_000 + k * 1000, late: 3_590_000 });
    steady(s, 'd1', 120, t + 1000);
    none(s.of('rate-anomaly'));
  });

  test('the broker\'s own publishes and wills are not a device\'s rate', () => {
    const s = new Stream();
    let t = steady(s, 'd1', 60);
    for (let k = 0; k < 200; k++) s.add('publish', (t += 10), { c: 'd1', actor: 'will', topic: 'w', acl: 'allow', env: 'missing' });
    none(s.of('rate-anomaly'));
  });
});

describe('silence', () => {
  function regular(s: Stream, c: string, n: number, period = 1000, from = T0): number {
    s.connect(c, from - 10);
    let t = from;
    for (let k = 0; k < n; k++) {
      s.publish(c, t);
      t += period;
    }
    return t - period; // last publish time
  }

  test('a regular device silent past factor × interval fires on tick, once', () => {
    const s = new Stream();
    const last = regular(s, 'd1', 30);
    none(s.tick(last + 2_900));
    const a = s.tick(last + 3_100);
    assert.equal(a.length, 1);
    assert.equal(a[0]!.rule, 'silence');
    assert.equal(a[0]!.subject, 'device:d1');
    assert.equal(a[0]!.at, last + 3_100);
    assert.equal(a[0]!.lastIndex, s.records.at(-1)!.i);
    assert.equal(a[0]!.details?.usualIntervalMs, 1000);
    none(s.tick(last + 200_000), 'one alert per silence');
    // It publishes again, then is silent again: a new alert (after the cooldown).
    s.publish('d1', last + 200_500);
    for (let k = 1; k < 10; k++) s.publish('d1', last + 200_500 + k * 1000);
    assert.equal(s.tick(last + 200_500 + 9_000 + 4_000).length, 1);
  });

  test('minIntervalMs: a device every 200 ms is not silent after 1 s', () => {
    const s = new Stream();
    const last = regular(s, 'fast', 50, 200);
    none(s.tick(last + 1_000));
    none(s.tick(last + 1_999));
    assert.equal(s.tick(last + 2_001).length, 1);
  });

  test('a device that disconnected cleanly left: not silent; one whose connection dropped is', () => {
    const s = new Stream();
    const a = regular(s, 'leaver', 30);
    s.disconnect('leaver', a + 100, 'clean');
    const b = regular(s, 'dropped', 30);
    s.disconnect('dropped', b + 100, 'keepalive');
    const c = regular(s, 'closed', 30);
    s.disconnect('closed', c + 100, 'closed');
    const alerts = s.tick(T0 + 60_000);
    assert.deepEqual(alerts.map((x) => x.subject).sort(), ['device:closed', 'device:dropped']);
    assert.equal(alerts[0]!.details?.connection, 'dropped');
  });

  test('a reconnect restarts the clock; a takeover disconnect of the old session does not make it leave', () => {
    const s = new Stream();
    const last = regular(s, 'd1', 30);
    s.connect('d1', last + 2_000, { s: 's-new' });
    s.disconnect('d1', last + 2_001, 'clean', { s: 's-d1' }); // the old session, ended after the new one began
    none(s.tick(last + 4_000));
    assert.equal(s.tick(last + 5_100).length, 1);
  });

  test('an irregular device (Poisson arrivals) is not watched', () => {
    const s = new Stream();
    const rand = rng(7);
    let t = T0;
    for (let k = 0; k < 200; k++) {
      s.publish('poisson', t);
      t += Math.round(-Math.log(1 - rand()) * 1000);
    }
    none(s.tick(t + 20_000));
  });

  test('a broker start gives every device a fresh interval', () => {
    const s = new Stream();
    const last = regular(s, 'd1', 30);
    s.add('stop', last + 100, { id: 'broker' });
    s.add('start', last + 60_000, { id: 'broker' });
    none(s.tick(last + 61_000));
    assert.equal(s.tick(last + 63_100).length, 1);
  });
});

describe('engine', () => {
  test('alert records are ignored (no feedback loop)', () => {
    const s = new Stream();
    for (let k = 0; k < 10; k++) s.add('alert', T0 + k, { id: 'broker', rule: 'denials', c: 'x', a: '1.2.3.4:5', ok: false, env: 'invalid' });
    none(s.alerts);
  });

  test('determinism: the same stream twice gives the same alerts', () => {
    const make = (): Stream => {
      const s = new Stream();
      const rand = rng(99);
      let t = T0;
      for (let k = 0; k < 5000; k++) {
        t += Math.floor(rand() * 200);
        const c = `d${Math.floor(rand() * 20)}`;
        const x = rand();
        if (x < 0.01) s.publish(c, t, { env: 'invalid' });
        else if (x < 0.015) s.publish(c, t, { env: 'gap', gap: 1 + Math.floor(rand() * 3) });
        else if (x < 0.02) s.publish(c, t, { dt: t + 10_000 });
        else if (x < 0.06) s.add('connect', t, { c, id: 'unauthenticated', a: `10.0.0.${Math.floor(rand() * 3)}:1`, ok: false, rc: 5 });
        else s.publish(c, t);
        if (k % 100 === 0) s.tick(t);
      }
      return s;
    };
    const a = make();
    const b = make();
    assert.ok(a.alerts.length > 10);
    assert.deepEqual(a.alerts, b.alerts);
    const rules = new Set(a.alerts.map((x) => x.rule));
    for (const r of ['signature-failures', 'gaps', 'clock-skew', 'denials']) assert.ok(rules.has(r as Alert['rule']), r);
  });

  test('bounded memory: 200,000 distinct devices and addresses → each table holds at most maxSubjects', () => {
    const e = new AlertEngine();
    for (let k = 0; k < 200_000; k++) {
      e.observe({ i: k, e: 'publish', t: T0 + k, c: `dev-${k}`, id: `device:dev-${k}+0`, env: 'invalid', acl: 'allow', actor: 'client' });
      e.observe({ i: k, e: 'connect', t: T0 + k, c: `c-${k}`, id: 'unauthenticated', a: `10.${(k >> 16) & 255}.${(k >> 8) & 255}.${k & 255}:1`, ok: false });
    }
    const st = e.stats();
    assert.equal(st.devices, 100_000);
    assert.ok(st.addresses <= 100_000);
    assert.ok(st.identities <= 100_000);
    assert.ok(st.subjects <= 300_000);
    // The most recent ones are kept: a device seen last still counts its failures.
    e.observe({ i: 1, e: 'publish', t: T0 + 200_001, c: 'dev-199999', env: 'invalid', actor: 'client' });
    const fired = e.observe({ i: 2, e: 'publish', t: T0 + 200_002, c: 'dev-199999', env: 'invalid', actor: 'client' });
    assert.equal(fired.length, 1);
    // Expired state goes away on tick.
    e.tick(T0 + 200_000 + 25 * 3_600_000);
    assert.equal(e.stats().subjects, 0);
  });

  test('small maxSubjects', () => {
    const e = new AlertEngine({}, { maxSubjects: 100 });
    for (let k = 0; k < 10_000; k++) e.observe({ i: k, e: 'publish', t: T0 + k * 100, c: `dev-${k}`, env: 'valid', actor: 'client' });
    assert.equal(e.stats().devices, 100);
  });

  test('config: partial rules merge over the defaults; bad values are refused with their name', () => {
    const c = resolveAlertRules({ denials: { count: 2 }, cooldownMs: 0 });
    assert.equal(c.denials.count, 2);
    assert.equal(c.denials.windowMs, DEFAULT_ALERT_RULES.denials.windowMs);
    assert.equal(c.cooldownMs, 0);
    const bad: AlertRulesInput[] = [{ signatureFailures: { count: 0 } }, { gaps: { windowMs: -1 } }, { rateAnomaly: { factor: 1 } }, { silence: { enabled: 'yes' as unknown as boolean } }, { cooldownMs: Number.NaN }];
    for (const b of bad) assert.throws(() => new AlertEngine(b), RangeError, JSON.stringify(b));
  });

  test('cooldown 0: every qualifying record fires', () => {
    const s = new Stream(new AlertEngine({ cooldownMs: 0 }));
    for (let k = 0; k < 5; k++) s.publish('d1', T0 + k, { env: 'invalid' });
    assert.equal(s.of('signature-failures').length, 3);
  });
});
