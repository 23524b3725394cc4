import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { DEFAULT_POLICY, Policies, type PoliciesConfig, type PolicyRule } from '../../../broker/policy/index.js';
import { WitnessError } from '../../../shared/errors.js';

const rule = (topic: string, p: Partial<PolicyRule> = {}): PolicyRule => ({ ...DEFAULT_POLICY, mask: [], topic, ...p });

const CONFIG: PoliciesConfig = {
  policies: [
    rule('devices/+/telemetry/location', { audit: 'payload', mask: ['$.lat'] }),
    rule('devices/+/telemetry/#', { audit: 'payload', envelope: 'enforce', unwrap: true }),
    rule('devices/#', { audit: 'full' }),
    rule('$SYS/#', { audit: 'none', envelope: 'off' }),
  ],
  defaultPolicy: { audit: 'metadata', envelope: 'observe', unwrap: false, mask: [] },
};

describe('first match wins', () => {
  const p = new Policies(CONFIG);
  test('the first matching policy decides, not the most specific or the last', () => {
    assert.equal(p.forTopic('devices/d1/telemetry/location').rule, 'policies[0]');
    assert.deepEqual(p.forTopic('devices/d1/telemetry/location').mask, ['$.lat']);
    assert.equal(p.forTopic('devices/d1/telemetry/temp').rule, 'policies[1]');
    assert.equal(p.forTopic('devices/d1/telemetry').rule, 'policies[1]', '# matches the parent level');
    assert.equal(p.forTopic('devices/d1/cmd').audit, 'full');
  });
  test('order matters: the same policies reversed answer differently', () => {
    const r = new Policies({ ...CONFIG, policies: [...CONFIG.policies].reverse() });
    assert.equal(r.forTopic('devices/d1/telemetry/location').audit, 'full');
  });
  test('no match: defaultPolicy', () => {
    const d = p.forTopic('plant/line1');
    assert.deepEqual({ ...d, mask: [...d.mask] }, { audit: 'metadata', envelope: 'observe', unwrap: false, mask: [], rule: 'defaultPolicy' });
  });
  test('$ topics are matched only by $ filters [MQTT-4.7.2-1]', () => {
    const all = new Policies({ policies: [rule('#', { audit: 'full' })], defaultPolicy: DEFAULT_POLICY });
    assert.equal(all.forTopic('$SYS/broker/uptime').rule, 'defaultPolicy');
    assert.equal(p.forTopic('$SYS/broker/uptime').rule, 'policies[3]');
  });
  test('answers are frozen: a caller cannot change the next answer', () => {
    const a = p.forTopic('devices/d1/telemetry/location');
    assert.ok(Object.isFrozen(a) && Object.isFrozen(a.mask));
    assert.throws(() => (a as { audit: string }).audit = 'none');
  });
});

describe('caching does not change answers', () => {
  test('cached, evicted and fresh answers agree (fast-check)', () => {
    const cached = new Policies(CONFIG);
    const level = fc.constantFrom('devices', 'd1', 'telemetry', 'location', '$SYS', 'x', '');
    const topic = fc.array(level, { minLength: 1, maxLength: 5 }).map((l) => l.join('/')).filter((t) => t !== '');
    fc.assert(
      fc.property(fc.array(topic, { minLength: 1, maxLength: 20 }), fc.boolean(), (topics, evict) => {
        const before = topics.map((t) => cached.forTopic(t));
        if (evict) for (let i = 0; i < 10_500; i++) cached.forTopic(`flood/${i}`);
        const fresh = new Policies(CONFIG);
        topics.forEach((t, i) => {
          assert.deepEqual(cached.forTopic(t), before[i]);
          assert.deepEqual(fresh.forTopic(t), before[i]);
        });
      }),
      { numRuns: 50 },
    );
  });
});

describe('malformed policies are refused by the constructor', () => {
  const cases: Array<[string, Partial<PolicyRule>]> = [
    ['a bad filter', { topic: 'a/#/b' }],
    ['a bad audit level', { audit: 'all' as never }],
    ['a bad envelope mode', { envelope: 'strict' as never }],
    ['unwrap with envelope off', { unwrap: true, envelope: 'off' }],
    ['a bad mask path', { mask: ['$..x'] }],
  ];
  for (const [name, p] of cases) {
    test(`${name}: WITNESS_ERR_INVALID_ARGUMENT naming policies[1]`, () => {
      assert.throws(
        () => new Policies({ policies: [rule('a'), rule('b', p)], defaultPolicy: DEFAULT_POLICY }),
        (e) => e instanceof WitnessError && e.code === 'WITNESS_ERR_INVALID_ARGUMENT' && /policies\[1\]/.test(e.message),
      );
    });
  }
  test('a bad defaultPolicy', () => {
    assert.throws(() => new Policies({ policies: [], defaultPolicy: { ...DEFAULT_POLICY, audit: 'x' as never } }), /defaultPolicy/);
  });
});
