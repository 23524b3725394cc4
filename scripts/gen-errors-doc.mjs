#!/usr/bin/env node
// Regenerates the code table of docs/errors.md from the registry in shared/errors.ts (compiled).
// The rest of the file is written by hand. test/shared/errors.test.ts fails when they disagree,
// so run `npm run build && node scripts/gen-errors-doc.mjs` after adding a code.
import { readFileSync, writeFileSync } from 'node:fs';

const { ERROR_CODES } = await import(new URL('../dist/shared/errors.js', import.meta.url));
const path = new URL('../docs/errors.md', import.meta.url);
const doc = readFileSync(path, 'utf8');
const begin = '<!-- codes:begin -->';
const end = '<!-- codes:end -->';
const rows = Object.entries(ERROR_CODES).map(([code, { summary, hint }]) => `| \`${code}\` | ${summary} | ${hint} |`);
const table = ['| code | what went wrong | what to do |', '|---|---|---|', ...rows].join('\n');
const a = doc.indexOf(begin);
const b = doc.indexOf(end);
if (a < 0 || b < a) throw new Error(`docs/errors.md: markers ${begin} … ${end} not found`);
writeFileSync(path, doc.slice(0, a + begin.length) + '\n' + table.replaceAll('`witness', '`witness') + '\n' + doc.slice(b));
console.log(`docs/errors.md: ${rows.length} codes`);
