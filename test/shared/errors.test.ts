import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { ERROR_CODES, WitnessError } from '../../shared/errors.js';

const doc = readFileSync(new URL('../../../docs/errors.md', import.meta.url), 'utf8');

test('every registered code is documented in docs/errors.md with its summary and hint', () => {
  for (const [code, { summary, hint }] of Object.entries(ERROR_CODES)) {
    const row = doc.split('\n').find((l) => l.startsWith(`| \`${code}\` |`));
    assert.ok(row, `${code} is missing from docs/errors.md (run node scripts/gen-errors-doc.mjs)`);
    assert.ok(row.includes(summary) && row.includes(hint), `${code}: docs/errors.md is out of date`);
  }
});

test('docs/errors.md documents no code that does not exist', () => {
  const documented = [...doc.matchAll(/`(WITNESS_ERR_[A-Z0-9_]+)`/g)].map((m) => m[1]!);
  for (const code of documented) assert.ok(code in ERROR_CODES, `docs/errors.md mentions unknown code ${code}`);
});

test('codes are namespaced and unique in spelling', () => {
  const codes = Object.keys(ERROR_CODES);
  for (const c of codes) assert.match(c, /^WITNESS_ERR_[A-Z0-9_]+$/);
  assert.equal(new Set(codes.map((c) => c.toLowerCase())).size, codes.length);
});

test('WitnessError carries code, hint and details, and serialises them', () => {
  const e = new WitnessError('WITNESS_ERR_PROOF_LENGTH', 'x', { details: { expected: 3, actual: 2 } });
  assert.equal(e.code, 'WITNESS_ERR_PROOF_LENGTH');
  assert.equal(e.hint, ERROR_CODES.WITNESS_ERR_PROOF_LENGTH.hint);
  assert.deepEqual(JSON.parse(JSON.stringify(e)), { code: e.code, message: 'x', hint: e.hint, details: { expected: 3, actual: 2 } });
});
