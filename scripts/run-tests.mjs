#!/usr/bin/env node
// Runs the compiled test suite with node's own test runner.
// Fast suite (default): every dist/test/**/*.test.js except *.slow.test.js.
// `--slow`: only the slow soak and drill tests (*.slow.test.js), kept out of CI's default run.
// Extra arguments that are not flags filter test files by substring.
import { readdirSync, statSync } from 'node:fs';
import { join, relative } from 'node:path';
import { spawnSync } from 'node:child_process';

const args = process.argv.slice(2);
const slow = args.includes('--slow');
const filters = args.filter((a) => !a.startsWith('--'));
const root = new URL('../dist/test/', import.meta.url).pathname;

function walk(dir, out) {
  for (const name of readdirSync(dir).sort()) {
    const p = join(dir, name);
    if (statSync(p).isDirectory()) walk(p, out);
    else if (name.endsWith('.test.js')) out.push(p);
  }
  return out;
}

const files = walk(root, []).filter((f) => {
  const isSlow = f.endsWith('.slow.test.js');
  if (slow !== isSlow) return false;
  return filters.length === 0 || filters.some((s) => relative(root, f).includes(s));
});
if (files.length === 0) {
  console.error(`run-tests: no test files matched under ${root} (build first with \`npm run build\`)`);
  process.exit(2);
}
const r = spawnSync(process.execPath, ['--test', '--test-concurrency=2', ...files], { stdio: 'inherit' });
process.exit(r.status ?? 1);
