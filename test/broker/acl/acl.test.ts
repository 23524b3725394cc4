import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { Acl, DEFAULT_ACL_RULES, type AclDecision, type AclRule, type AclSubject } from '../../../broker/acl/index.js';
import { WitnessError } from '../../../shared/errors.js';

const device = (id: string): AclSubject => ({ identity: `device:${id}`, clientId: id });
const user = (name: string, clientId = `c-${name}`): AclSubject => ({ identity: `user:${name}`, clientId, username: name });
const D1 = device('d1');

/** Access control on, with the default rule set (what `acl: { enabled: true }` gives). */
const enabled = new Acl({ enabled: true, rules: DEFAULT_ACL_RULES });

function refused(d: AclDecision, rule: string): void {
  assert.equal(d.allowed, false, `expected a refusal by ${rule}, got ${JSON.stringify(d)}`);
  assert.equal(d.rule, rule, d.reason);
  assert.ok(d.reason.length > 0);
}
function allowed(d: AclDecision, rule: string): void {
  assert.equal(d.allowed, true, `expected allowed by ${rule}, got ${JSON.stringify(d)}`);
  assert.equal(d.rule, rule);
}

describe('escapes are refused when access control is on (default rules)', () => {
  test('subscribe #: guard:root-wildcard', () => refused(enabled.checkSubscribe(D1, '#'), 'guard:root-wildcard'));
  test('subscribe +/#: guard:root-wildcard', () => refused(enabled.checkSubscribe(D1, '+/#'), 'guard:root-wildcard'));
  test('subscribe +/+/#: guard:root-wildcard', () => refused(enabled.checkSubscribe(D1, '+/+/#'), 'guard:root-wildcard'));
  test('subscribe $SYS/#: guard:$SYS', () => refused(enabled.checkSubscribe(D1, '$SYS/#'), 'guard:$SYS'));
  test('subscribe and publish $SYS/broker/x: guard:$SYS', () => {
    refused(enabled.checkSubscribe(D1, '$SYS/broker/x'), 'guard:$SYS');
    refused(enabled.checkPublish(D1, '$SYS/broker/x'), 'guard:$SYS');
  });
  test("another device's subtree devices/d2/#: default", () => {
    refused(enabled.checkSubscribe(D1, 'devices/d2/#'), 'default');
    refused(enabled.checkPublish(D1, 'devices/d2/x'), 'default');
  });
  test('devices/+/x (spans every device): default', () => {
    refused(enabled.checkSubscribe(D1, 'devices/+/x'), 'default');
    refused(enabled.checkSubscribe(D1, 'devices/#'), 'default');
  });
  for (const id of ['a/#', 'a+', '#', '+', 'd1/x', 'x/../d2']) {
    test(`a client id ${JSON.stringify(id)} cannot widen devices/{clientId}/#: guard:template`, () => {
      const who = device(id);
      refused(enabled.checkSubscribe(who, 'devices/a/#'), 'guard:template');
      refused(enabled.checkPublish(who, 'devices/a/b'), 'guard:template');
      refused(enabled.checkPublish(who, 'devices/d1/x'), 'guard:template');
    });
  }
  test('users, certificates and anonymous get nothing by default', () => {
    for (const who of [user('alice'), { identity: 'cert:gw', clientId: 'gw' }, { identity: 'anonymous', clientId: 'x' }]) {
      refused(enabled.checkPublish(who, 'devices/x/y'), 'default');
      refused(enabled.checkSubscribe(who, 'devices/x/y'), 'default');
    }
  });
  test('a device id that matches no device: prefix? device:* only matches device: identities', () => {
    refused(enabled.checkPublish({ identity: 'devicex:d1', clientId: 'd1' }, 'devices/d1/a'), 'default');
  });
});

describe('allowed under the default rules', () => {
  test('a device publishes and subscribes in its own subtree', () => {
    allowed(enabled.checkPublish(D1, 'devices/d1/telemetry/temp'), 'default-rules[0]');
    allowed(enabled.checkPublish(D1, 'devices/d1'), 'default-rules[0]');
    allowed(enabled.checkSubscribe(D1, 'devices/d1/#'), 'default-rules[0]');
    allowed(enabled.checkSubscribe(D1, 'devices/d1/+/temp'), 'default-rules[0]');
    allowed(enabled.checkSubscribe(D1, 'devices/d1/cmd'), 'default-rules[0]');
  });
});

describe('access control off', () => {
  const off = new Acl({ enabled: false, rules: DEFAULT_ACL_RULES });
  test('everything is allowed with rule "default"', () => {
    for (const f of ['#', '+/#', '$SYS/#', 'devices/d2/#']) allowed(off.checkSubscribe(device('a/#'), f), 'default');
    for (const t of ['$SYS/broker/x', 'devices/d2/x', 'x']) allowed(off.checkPublish({ identity: 'anonymous', clientId: 'x' }, t), 'default');
  });
  test('malformed names and filters are still refused (aedes refuses them first anyway)', () => {
    refused(off.checkPublish(D1, 'a/+'), 'guard:invalid-topic');
    refused(off.checkPublish(D1, ''), 'guard:invalid-topic');
    refused(off.checkSubscribe(D1, 'a/#/b'), 'guard:invalid-filter');
  });
});

describe('deny beats allow, whatever the order', () => {
  const rules: AclRule[] = [
    { identity: 'user:*', effect: 'allow', actions: ['publish', 'subscribe'], topics: ['plant/#'] },
    { identity: 'user:bob', effect: 'deny', actions: ['publish'], topics: ['plant/valves/#'] },
    { identity: 'user:*', effect: 'deny', actions: ['subscribe'], topics: ['plant/+/secret'] },
  ];
  for (const order of [rules, [...rules].reverse()]) {
    const acl = new Acl({ enabled: true, rules: order });
    const name = (i: number): string => `rules[${order.indexOf(rules[i]!)}]`;
    test(`publish: deny decides (${order === rules ? 'deny last' : 'deny first'})`, () => {
      refused(acl.checkPublish(user('bob'), 'plant/valves/v1'), name(1));
      allowed(acl.checkPublish(user('alice'), 'plant/valves/v1'), name(0));
      allowed(acl.checkPublish(user('bob'), 'plant/pumps/p1'), name(0));
    });
    test(`subscribe: a deny filter that intersects refuses the whole subscription (${order === rules ? 'deny last' : 'deny first'})`, () => {
      refused(acl.checkSubscribe(user('alice'), 'plant/#'), name(2));
      refused(acl.checkSubscribe(user('alice'), 'plant/x/+'), name(2));
      allowed(acl.checkSubscribe(user('alice'), 'plant/x/public'), name(0));
      allowed(acl.checkSubscribe(user('alice'), 'plant/+/public'), name(0));
    });
  }
});

describe('subscribe is filter-vs-filter', () => {
  test('a subscription only the union of two rules covers is refused', () => {
    const acl = new Acl({
      enabled: true,
      rules: [
        { identity: '*', effect: 'allow', actions: ['subscribe'], topics: ['a/x/#'] },
        { identity: '*', effect: 'allow', actions: ['subscribe'], topics: ['a/+/y'] },
      ],
    });
    const who = user('u');
    allowed(acl.checkSubscribe(who, 'a/x/y'), 'rules[0]');
    allowed(acl.checkSubscribe(who, 'a/q/y'), 'rules[1]');
    refused(acl.checkSubscribe(who, 'a/+/#'), 'default');
  });
  test('the first allow rule in order is named', () => {
    const acl = new Acl({
      enabled: true,
      rules: [
        { identity: 'user:u', effect: 'allow', actions: ['subscribe'], topics: ['a/b'] },
        { identity: '*', effect: 'allow', actions: ['subscribe'], topics: ['a/#'] },
      ],
    });
    allowed(acl.checkSubscribe(user('u'), 'a/b'), 'rules[0]');
    allowed(acl.checkSubscribe(user('u'), 'a/c'), 'rules[1]');
  });
});

describe('guards: granted only by rules written for them', () => {
  test('an explicit $SYS rule grants $SYS', () => {
    const acl = new Acl({ enabled: true, rules: [{ identity: 'user:ops', effect: 'allow', actions: ['subscribe'], topics: ['$SYS/#'] }] });
    allowed(acl.checkSubscribe(user('ops'), '$SYS/broker/clients/+'), 'rules[0]');
    refused(acl.checkSubscribe(user('ops'), '#'), 'guard:root-wildcard');
    refused(acl.checkSubscribe(user('other'), '$SYS/#'), 'guard:$SYS');
  });
  test('a template cannot reach $SYS: client id "$SYS" with rule {clientId}/#', () => {
    const acl = new Acl({ enabled: true, rules: [{ identity: 'device:*', effect: 'allow', actions: ['publish', 'subscribe'], topics: ['{clientId}/#'] }] });
    const sys = device('$SYS');
    refused(acl.checkPublish(sys, '$SYS/broker/uptime'), 'guard:$SYS');
    refused(acl.checkSubscribe(sys, '$SYS/#'), 'guard:$SYS');
    allowed(acl.checkPublish(device('d1'), 'd1/x'), 'rules[0]');
  });
  test('an explicit # rule grants # and +/#, but still not $SYS [MQTT-4.7.2-1]', () => {
    const acl = new Acl({ enabled: true, rules: [{ identity: 'user:admin', effect: 'allow', actions: ['subscribe'], topics: ['#'] }] });
    allowed(acl.checkSubscribe(user('admin'), '#'), 'rules[0]');
    allowed(acl.checkSubscribe(user('admin'), '+/#'), 'rules[0]');
    allowed(acl.checkSubscribe(user('admin'), 'a/b'), 'rules[0]');
    refused(acl.checkSubscribe(user('admin'), '$SYS/#'), 'guard:$SYS');
  });
  test('a narrower root-wildcard rule (+/+/#) does not grant #', () => {
    const acl = new Acl({ enabled: true, rules: [{ identity: '*', effect: 'allow', actions: ['subscribe'], topics: ['+/+/#'] }] });
    refused(acl.checkSubscribe(user('u'), '#'), 'guard:root-wildcard');
    allowed(acl.checkSubscribe(user('u'), '+/+/#'), 'rules[0]');
  });
});

describe('templates', () => {
  const acl = new Acl({
    enabled: true,
    rules: [
      { identity: 'user:*', effect: 'allow', actions: ['publish', 'subscribe'], topics: ['users/{username}/#'] },
      { identity: 'cert:*', effect: 'allow', actions: ['publish'], topics: ['gateways/{identity}/#'] },
      { identity: '*', effect: 'allow', actions: ['publish'], topics: ['inbox/{username}'] },
      { identity: 'anonymous', effect: 'allow', actions: ['publish'], topics: ['public/#'] },
    ],
  });
  test('{username} and {identity}', () => {
    allowed(acl.checkPublish(user('alice'), 'users/alice/x'), 'rules[0]');
    refused(acl.checkPublish(user('alice'), 'users/bob/x'), 'default');
    allowed(acl.checkPublish({ identity: 'cert:gw-7', clientId: 'any' }, 'gateways/gw-7/up'), 'rules[1]');
    refused(acl.checkPublish({ identity: 'cert:gw-7', clientId: 'any' }, 'gateways/gw-8/up'), 'default');
  });
  test('a missing value makes the rule not apply, without refusing the client', () => {
    const anon: AclSubject = { identity: 'anonymous', clientId: 'x' };
    allowed(acl.checkPublish(anon, 'public/a'), 'rules[3]');
    refused(acl.checkPublish(anon, 'inbox/x'), 'default');
  });
  test('a username with a wildcard or a slash is refused outright', () => {
    refused(acl.checkPublish(user('a/b'), 'users/a/b/x'), 'guard:template');
    refused(acl.checkPublish(user('#'), 'users/x'), 'guard:template');
  });
  test('templates are substituted inside a level as well', () => {
    const a = new Acl({ enabled: true, rules: [{ identity: 'device:*', effect: 'allow', actions: ['publish'], topics: ['t/dev-{clientId}-out'] }] });
    allowed(a.checkPublish(D1, 't/dev-d1-out'), 'rules[0]');
    refused(a.checkPublish(D1, 't/dev-d2-out'), 'default');
  });
});

describe('caching does not change answers', () => {
  test('the same decisions with a warm cache, after 12,000 other clients evicted it, and from a fresh Acl', () => {
    const rules = [...DEFAULT_ACL_RULES, { identity: 'user:*', effect: 'allow' as const, actions: ['subscribe' as const], topics: ['users/{username}/#'] }];
    const warm = new Acl({ enabled: true, rules });
    const subjects = fc.constantFrom(device('d1'), device('d2'), device('a/#'), user('alice'), user('bob', 'd1'), { identity: 'anonymous', clientId: 'd1' });
    const topics = fc.constantFrom('devices/d1/x', 'devices/d2/x', 'users/alice/x', 'users/bob/#', '#', 'devices/+/x', '$SYS/x');
    fc.assert(
      fc.property(subjects, topics, fc.boolean(), (who, t, evict) => {
        const first = [warm.checkPublish(who, t.replace(/[+#]/g, 'w')), warm.checkSubscribe(who, t)];
        if (evict) for (let i = 0; i < 12_000; i++) warm.checkPublish(device(`x${i}`), 'devices/x/y');
        const again = [warm.checkPublish(who, t.replace(/[+#]/g, 'w')), warm.checkSubscribe(who, t)];
        const cold = new Acl({ enabled: true, rules });
        const fresh = [cold.checkPublish(who, t.replace(/[+#]/g, 'w')), cold.checkSubscribe(who, t)];
        assert.deepEqual(again, first);
        assert.deepEqual(fresh, first);
      }),
      { numRuns: 60 },
    );
  });
});

describe('malformed rules are refused by the constructor', () => {
  const cases: Array<[string, unknown]> = [
    ['bad identity kind', { identity: 'dev:*', effect: 'allow', actions: ['publish'], topics: ['a'] }],
    ['* in the middle', { identity: 'device:*x', effect: 'allow', actions: ['publish'], topics: ['a'] }],
    ['bad effect', { identity: '*', effect: 'permit', actions: ['publish'], topics: ['a'] }],
    ['no actions', { identity: '*', effect: 'allow', actions: [], topics: ['a'] }],
    ['bad action', { identity: '*', effect: 'allow', actions: ['read'], topics: ['a'] }],
    ['bad filter', { identity: '*', effect: 'allow', actions: ['publish'], topics: ['a/#/b'] }],
    ['unknown template', { identity: '*', effect: 'allow', actions: ['publish'], topics: ['a/{client}'] }],
    ['no topics', { identity: '*', effect: 'allow', actions: ['publish'], topics: [] }],
  ];
  for (const [name, rule] of cases) {
    test(`${name}: WITNESS_ERR_INVALID_ARGUMENT naming rules[1]`, () => {
      assert.throws(
        () => new Acl({ enabled: true, rules: [DEFAULT_ACL_RULES[0]!, rule as AclRule] }),
        (e) => e instanceof WitnessError && e.code === 'WITNESS_ERR_INVALID_ARGUMENT' && /rules\[1\]/.test(e.message),
      );
    });
  }
});
