/**
 * shared/ledger/publish-json.ts writes the same bytes as JSON.stringify of the record plugin.ts would
 * build for the same publish (same keys, same order), for any strings (escapes, lone surrogates).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { jsonString, publishJson, socketPartJson } from '../../shared/ledger/publish-json.js';
import { ENVELOPE_VERDICTS } from '../../broker/records.js';

/** The record as plugin.ts base() + authorizePublish build it (generic path). */
function generic(a: {
  t: number; u: number; n: string; s: string; c: string | null | undefined; id: string; addr: string | undefined;
  topic: string; q: number; r: boolean; d: boolean; m: number | null | undefined; z: number; h: string; rule: string | undefined; env: string;
}): string {
  const r: Record<string, unknown> = { v: 1, e: 'publish', t: a.t, u: a.u, n: a.n };
  r.s = a.s;
  if (a.c !== undefined && a.c !== null) r.c = a.c;
  r.id = a.id;
  if (a.addr) r.a = a.addr;
  r.actor = 'client';
  r.topic = a.topic;
  r.q = a.q;
  r.r = a.r;
  if (a.d) r.d = true;
  if (a.m !== undefined) r.m = a.m;
  r.z = a.z;
  r.h = a.h;
  r.acl = 'allow';
  if (a.rule !== undefined) r.rule = a.rule;
  r.env = a.env;
  return JSON.stringify(r);
}

const str = fc.oneof(fc.string(), fc.string({ unit: 'binary' }), fc.string({ unit: 'grapheme-composite' }), fc.constantFrom('a"b', 'a\\b', '\n', '\u2028', '\ud800', 'x\udfffy', '\u007f'));

test('publishJson = JSON.stringify of the generic record', () => {
  fc.assert(
    fc.property(
      fc.record({
        t: fc.oneof(fc.integer({ min: 0, max: 2 ** 45 }), fc.double()),
        u: fc.oneof(fc.integer({ min: 0, max: 1000 }), fc.double()),
        n: str,
        s: str,
        c: fc.option(str, { nil: undefined }),
        id: str,
        addr: fc.option(str, { nil: undefined }),
        topic: str,
        q: fc.constantFrom(0, 1, 2),
        r: fc.boolean(),
        d: fc.boolean(),
        m: fc.oneof(fc.constant(undefined), fc.constant(null), fc.integer({ min: 0, max: 65535 })),
        z: fc.nat(),
        // A base64url SHA-256 (any base64url string) and a verdict name: publishJson writes both unescaped.
        h: fc.stringMatching(/^[A-Za-z0-9_-]{0,43}$/),
        rule: fc.option(str, { nil: undefined }),
        env: fc.constantFrom(...ENVELOPE_VERDICTS),
      }),
      (a) => {
        const lean = publishJson(a.t, a.u, socketPartJson(jsonString(a.n), a.s, a.c, a.id, a.addr), jsonString(a.topic), a.q, a.r, a.d, a.m, a.z, a.h, a.rule, a.env);
        assert.equal(lean, generic(a));
      },
    ),
    { numRuns: 3000 },
  );
});

test('jsonString = JSON.stringify for every single code unit', () => {
  for (let k = 0; k < 0x10000; k++) {
    const s = 'a' + String.fromCharCode(k) + 'b';
    assert.equal(jsonString(s), JSON.stringify(s));
  }
});
