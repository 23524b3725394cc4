import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { filterCovers, filtersIntersect, isValidFilter, isValidTopic, topicMatches } from '../../../broker/acl/index.js';

describe('validity', () => {
  test('topic names: no wildcards, not empty, no U+0000 [MQTT-3.3.2-2] [MQTT-4.7.3-1] [MQTT-4.7.3-2]', () => {
    for (const t of ['a', '/', 'a/b', '/finance', 'a//b', '$SYS/x', 'sport/tennis/player1', ' ']) assert.equal(isValidTopic(t), true, t);
    for (const t of ['', 'a/+', 'a/#', '#', '+', 'a\u0000b', 'a+b']) assert.equal(isValidTopic(t), false, t);
  });
  test('topic filters: # last and alone, + alone in its level [MQTT-4.7.1-2] [MQTT-4.7.1-3]', () => {
    for (const f of ['#', '+', '+/#', 'sport/#', 'sport/+/player1', '/+', '+/+', '$SYS/#', 'a//b']) assert.equal(isValidFilter(f), true, f);
    for (const f of ['', 'sport/tennis#', 'sport/tennis/#/ranking', 'sport+', 'a/b+/c', '##', 'a/#/', 'x\u0000']) assert.equal(isValidFilter(f), false, f);
  });
  test('65,535 UTF-8 bytes at most [MQTT-4.7.3-3]', () => {
    assert.equal(isValidTopic('a'.repeat(65_535)), true);
    assert.equal(isValidTopic('a'.repeat(65_536)), false);
    assert.equal(isValidTopic('é'.repeat(32_768)), false, '65,536 bytes in 32,768 characters');
  });
});

describe('topicMatches: the examples of MQTT 3.1.1 §4.7', () => {
  const cases: Array<[string, string, boolean]> = [
    // §4.7.1.2 multi-level wildcard
    ['sport/tennis/player1/#', 'sport/tennis/player1', true],
    ['sport/tennis/player1/#', 'sport/tennis/player1/ranking', true],
    ['sport/tennis/player1/#', 'sport/tennis/player1/score/wimbledon', true],
    ['sport/#', 'sport', true],
    ['#', 'anything/at/all', true],
    // §4.7.1.3 single-level wildcard
    ['sport/tennis/+', 'sport/tennis/player1', true],
    ['sport/tennis/+', 'sport/tennis/player1/ranking', false],
    ['sport/+', 'sport', false],
    ['sport/+', 'sport/', true],
    ['+/+', '/finance', true],
    ['/+', '/finance', true],
    ['+', '/finance', false],
    // §4.7.2 topics beginning with $ [MQTT-4.7.2-1]
    ['#', '$SYS/broker/clients', false],
    ['+/monitor/Clients', '$SYS/monitor/Clients', false],
    ['$SYS/#', '$SYS/monitor/Clients', true],
    ['$SYS/monitor/+', '$SYS/monitor/Clients', true],
    // exact, case-sensitive
    ['ACCOUNTS', 'Accounts', false],
    ['a/b', 'a/b', true],
    // invalid inputs never match
    ['a/#/b', 'a/x/b', false],
    ['#', 'a/+', false],
  ];
  for (const [f, t, want] of cases) {
    test(`${f} ${want ? 'matches' : 'does not match'} ${t}`, () => assert.equal(topicMatches(f, t), want));
  }
});

describe('filterCovers and filtersIntersect: examples', () => {
  const covers: Array<[string, string, boolean]> = [
    ['devices/d1/#', 'devices/d1/+/temp', true],
    ['devices/d1/#', 'devices/d1', true],
    ['devices/d1/#', 'devices/d1/#', true],
    ['devices/d1/#', 'devices/+/temp', false],
    ['devices/d1/#', '+/#', false],
    ['devices/d1/#', '#', false],
    ['devices/+/temp', 'devices/d1/temp', true],
    ['devices/+/temp', 'devices/+/temp', true],
    ['devices/+/temp', 'devices/#', false],
    ['a/+', 'a', false],
    ['#', '+/#', true],
    ['+/#', '#', true], // # has no parent level at the root: both match every name of ≥ 1 level
    ['a/+/#', 'a/#', false], // a/# matches `a` itself
    ['#', '$SYS/#', false],
    ['+/#', '$SYS/x', false],
    ['$SYS/#', '$SYS/broker/+', true],
  ];
  for (const [o, i, want] of covers) test(`${o} ${want ? 'covers' : 'does not cover'} ${i}`, () => assert.equal(filterCovers(o, i), want));

  const intersect: Array<[string, string, boolean]> = [
    ['devices/+/telemetry/location', 'devices/+/telemetry/#', true],
    ['a/b', 'a/#', true],
    ['a', 'a/#', true],
    ['a/b', 'a/c', false],
    ['a/b/c', 'a/+', false],
    ['#', '$SYS/#', false],
    ['$SYS/+', '$SYS/#', true],
    ['+/+', '/+', true],
  ];
  for (const [a, b, want] of intersect) test(`${a} ${want ? 'intersects' : 'does not intersect'} ${b}`, () => {
    assert.equal(filtersIntersect(a, b), want);
    assert.equal(filtersIntersect(b, a), want, 'symmetric');
  });
});

// ── properties, over a small alphabet so that coincidences happen ─────────────────────────────

const LITERALS = ['a', 'b', '$s', ''];
const level = fc.constantFrom(...LITERALS);
const topicArb = fc.array(level, { minLength: 1, maxLength: 4 }).map((l) => l.join('/'));
const filterArb = fc
  .tuple(fc.array(fc.constantFrom(...LITERALS, '+', '+'), { minLength: 1, maxLength: 3 }), fc.boolean())
  .map(([ls, hash]) => (hash ? [...ls, '#'] : ls).join('/'))
  .filter(isValidFilter);
const anyFilter = fc.oneof(filterArb, fc.constant('#'), fc.constant('+/#'));

/** Every topic of 1–4 levels over LITERALS plus a fresh literal `z` (a counterexample to literals). */
const UNIVERSE: string[] = (() => {
  const alphabet = [...LITERALS, 'z'];
  let layer: string[][] = alphabet.map((l) => [l]);
  const out: string[] = [];
  for (let depth = 1; depth <= 4; depth++) {
    out.push(...layer.map((l) => l.join('/')));
    layer = layer.flatMap((l) => alphabet.map((x) => [...l, x]));
  }
  return out;
})();

describe('properties (fast-check)', () => {
  test('filterCovers(outer, inner) ⇒ every topic inner matches, outer matches', () => {
    fc.assert(
      fc.property(anyFilter, anyFilter, fc.array(topicArb, { minLength: 1, maxLength: 30 }), (outer, inner, topics) => {
        if (!filterCovers(outer, inner)) return;
        for (const t of topics) if (topicMatches(inner, t)) assert.ok(topicMatches(outer, t), `${outer} ⊇ ${inner} but not on ${t}`);
      }),
      { numRuns: 3000 },
    );
  });

  test('soundness and completeness against every topic of ≤ 4 levels', () => {
    // Filters have ≤ 4 levels, so a counterexample exists within 4 levels (with the fresh `z`).
    fc.assert(
      fc.property(anyFilter, anyFilter, (outer, inner) => {
        const inside = UNIVERSE.every((t) => !topicMatches(inner, t) || topicMatches(outer, t));
        assert.equal(filterCovers(outer, inner), inside, `${outer} ⊇ ${inner}`);
        const common = UNIVERSE.some((t) => topicMatches(outer, t) && topicMatches(inner, t));
        assert.equal(filtersIntersect(outer, inner), common, `${outer} ∩ ${inner}`);
      }),
      { numRuns: 1500 },
    );
  });

  test('a covered pair is found often enough for the property to bite', () => {
    let covered = 0;
    fc.assert(
      fc.property(anyFilter, anyFilter, (o, i) => {
        if (filterCovers(o, i) && o !== i) covered++;
      }),
      { numRuns: 2000, seed: 42 },
    );
    assert.ok(covered > 50, `only ${covered} non-trivial covered pairs`);
  });

  test('topicMatches agrees with a regular-expression reading of §4.7', () => {
    // `+` → one level of non-slashes; `/#` at the end → optionally a slash and anything; a
    // leading wildcard → not a `$` name [MQTT-4.7.2-1].
    const reference = (f: string, t: string): boolean => {
      if ((f.startsWith('+') || f.startsWith('#')) && t.startsWith('$')) return false;
      const body = f
        .split('/')
        .map((l) => (l === '+' ? '[^/]*' : l === '#' ? '\u0000' : l.replace(/[$]/g, '\\$&')))
        .join('/')
        .replace(/\/?\u0000$/, f === '#' ? '.*' : '(/.*)?');
      return new RegExp(`^${body}$`, 's').test(t);
    };
    fc.assert(
      fc.property(anyFilter, topicArb, (f, t) => {
        if (t === '') return;
        assert.equal(topicMatches(f, t), reference(f, t), `${f} vs ${t}`);
      }),
      { numRuns: 5000 },
    );
  });

  test('every filter covers itself, # covers every filter not starting with $', () => {
    fc.assert(
      fc.property(anyFilter, (f) => {
        assert.ok(filterCovers(f, f));
        assert.equal(filterCovers('#', f), !f.startsWith('$'));
      }),
    );
  });
});
