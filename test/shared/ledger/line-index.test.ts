/**
 * shared/ledger/line-index.ts: line offsets of a segment file, kept per process and extended by
 * scanning only appended bytes; readLines from the nearest offset in chunks. Compared with a
 * plain split of the file at every position, across chunk boundaries and long lines.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { appendFileSync, readFileSync, renameSync, truncateSync, unlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { tempDir } from '../../helpers/tmp.js';
import { LINE_STEP, clearLineIndexCache, lineIndex, readLines } from '../../../shared/ledger/line-index.js';

function lines(n: number, from = 0, width = (i: number) => 20 + (i % 37)): string[] {
  return Array.from({ length: n }, (_, k) => {
    const i = from + k;
    return `{"i":${i},"pad":"${'x'.repeat(width(i))}"}`;
  });
}

/** The complete lines of the file, by a plain split. */
function naive(path: string): string[] {
  const s = readFileSync(path, 'utf8');
  const parts = s.split('\n');
  parts.pop(); // the incomplete tail (or '' after a final newline)
  return parts;
}

test('every line at every start position equals a plain split; counts ignore an incomplete tail', (t) => {
  const dir = tempDir(t);
  const p = join(dir, 'a.jsonl');
  const ls = lines(3 * LINE_STEP + 17);
  writeFileSync(p, ls.join('\n') + '\n' + '{"i":"partial');
  clearLineIndexCache();
  const idx = lineIndex(p);
  assert.equal(idx.lines, ls.length);
  assert.equal(idx.end, Buffer.byteLength(ls.join('\n') + '\n'));
  const want = naive(p);
  for (const first of [0, 1, LINE_STEP - 1, LINE_STEP, LINE_STEP + 1, 2 * LINE_STEP + 5, ls.length - 1]) {
    const n = Math.min(40, ls.length - first);
    assert.deepEqual([...readLines(p, first, n)], want.slice(first, first + n), `from ${first}`);
  }
  assert.deepEqual([...readLines(p, 0, ls.length)], want);
  assert.throws(() => [...readLines(p, ls.length - 1, 2)], { code: 'WITNESS_ERR_LEDGER_TRUNCATED' });
});

test('appends are picked up by scanning only the new bytes; a torn line counts once complete', (t) => {
  const dir = tempDir(t);
  const p = join(dir, 'b.jsonl');
  clearLineIndexCache();
  const all: string[] = [];
  writeFileSync(p, '');
  for (let round = 0; round < 6; round++) {
    const add = lines(97 + round * 61, all.length);
    all.push(...add);
    appendFileSync(p, add.join('\n') + '\n');
    assert.equal(lineIndex(p).lines, all.length);
    const first = Math.max(0, all.length - 300);
    assert.deepEqual([...readLines(p, first, all.length - first)], all.slice(first));
  }
  appendFileSync(p, '{"i":"half');
  assert.equal(lineIndex(p).lines, all.length, 'the half-written line is not a line yet');
  appendFileSync(p, ' done"}\n');
  assert.equal(lineIndex(p).lines, all.length + 1);
  assert.equal([...readLines(p, all.length, 1)][0], '{"i":"half done"}');
});

test('a shrunk or replaced file is indexed afresh, not from the stale entry', (t) => {
  const dir = tempDir(t);
  const p = join(dir, 'c.jsonl');
  clearLineIndexCache();
  const ls = lines(2 * LINE_STEP + 3);
  writeFileSync(p, ls.join('\n') + '\n');
  assert.equal(lineIndex(p).lines, ls.length);
  // Rolled back to LINE_STEP + 1 lines, then different lines appended.
  truncateSync(p, Buffer.byteLength(ls.slice(0, LINE_STEP + 1).join('\n') + '\n'));
  const other = lines(5, 9000, () => 3);
  appendFileSync(p, other.join('\n') + '\n');
  assert.equal(lineIndex(p).lines, LINE_STEP + 1 + 5);
  assert.deepEqual([...readLines(p, LINE_STEP, 6)], [ls[LINE_STEP]!, ...other]);
  // Replaced by another file of the same name, longer than the old one.
  const q = join(dir, 'c.new');
  const fresh = lines(3 * LINE_STEP, 5000, () => 50);
  writeFileSync(q, fresh.join('\n') + '\n');
  renameSync(q, p);
  assert.equal(lineIndex(p).lines, fresh.length);
  assert.deepEqual([...readLines(p, 2 * LINE_STEP + 1, 3)], fresh.slice(2 * LINE_STEP + 1, 2 * LINE_STEP + 4));
});

test('lines longer than the read chunk (1 MiB) are read whole', (t) => {
  const dir = tempDir(t);
  const p = join(dir, 'd.jsonl');
  clearLineIndexCache();
  const ls = lines(5, 0, (i) => (i === 2 ? 3 * (1 << 20) : 10));
  writeFileSync(p, ls.join('\n') + '\n');
  assert.deepEqual([...readLines(p, 1, 4)], ls.slice(1));
});

test('a file deleted and written again under the same name (its inode number may be reused) is indexed afresh', (t) => {
  const dir = tempDir(t);
  const p = join(dir, 'e.jsonl');
  clearLineIndexCache();
  const first = lines(LINE_STEP + 10, 0, () => 5);
  writeFileSync(p, first.join('\n') + '\n');
  assert.equal(lineIndex(p).lines, first.length);
  unlinkSync(p);
  const second = lines(2 * LINE_STEP + 1, 7000, () => 60);
  writeFileSync(p, second.join('\n') + '\n');
  assert.equal(lineIndex(p).lines, second.length);
  assert.deepEqual([...readLines(p, LINE_STEP, 2)], second.slice(LINE_STEP, LINE_STEP + 2));
});
