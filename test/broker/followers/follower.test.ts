import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync, chmodSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { tempDir } from '../../helpers/tmp.js';
import { openTestLedger, sampleRecord } from '../../helpers/ledger.js';
import { Follower, cursorPath, readCursor, type FollowedRecord } from '../../../broker/followers/follower.js';
import { LedgerTail } from '../../../shared/ledger/tail.js';
import { listSegments } from '../../../shared/ledger/segment.js';

async function waitFor(pred: () => boolean, ms = 10_000): Promise<void> {
  const end = Date.now() + ms;
  while (!pred() && Date.now() < end) await new Promise((r) => setTimeout(r, 10));
  assert.ok(pred(), 'condition not reached in time');
}

test('a follower sees every durable record once, in order, across segments and a restart', async (t) => {
  const dir = tempDir(t);
  const { ledger } = await openTestLedger(dir, { segmentMaxBytes: 65_536, checkpointEveryRecords: 500 });
  const seen: number[] = [];
  const handle = async (b: FollowedRecord[]): Promise<void> => {
    for (const r of b) {
      assert.equal(r.record.i, r.index);
      seen.push(r.index);
    }
  };
  const f = new Follower({ name: 'test', dataDir: dir, ledger, handle, batchMax: 100 });
  f.start();
  // Batches of 100 (one group commit each): the segment rolls between batches.
  for (let k = 0; k < 15; k++) await Promise.all(Array.from({ length: 100 }, (_, n) => ledger.append(sampleRecord(k * 100 + n))));
  await waitFor(() => f.cursor >= ledger.durableSize);
  await f.stop();
  assert.ok(listSegments(join(dir, 'ledger')).length >= 3, 'several segments');
  const firstRun = seen.length;
  assert.deepEqual(seen, Array.from({ length: firstRun }, (_, i) => i));
  assert.equal(readCursor(dir, 'test'), firstRun);

  // More records while the follower is down; a new follower resumes at the saved cursor.
  for (let k = 0; k < 7; k++) await Promise.all(Array.from({ length: 100 }, (_, n) => ledger.append(sampleRecord(n))));
  const g = new Follower({ name: 'test', dataDir: dir, ledger, handle, batchMax: 64 });
  g.start();
  await waitFor(() => g.cursor >= ledger.durableSize);
  await g.stop();
  await ledger.close();
  assert.deepEqual(seen, Array.from({ length: seen.length }, (_, i) => i), 'no gap, no repeat');
  assert.ok(seen.length >= firstRun + 700);
});

test('a failing target gets the same batch again after a backoff: nothing lost, nothing skipped', async (t) => {
  const dir = tempDir(t);
  const { ledger } = await openTestLedger(dir);
  let failuresLeft = 3;
  const attempts: number[][] = [];
  const got: number[] = [];
  const errors: number[] = [];
  const f = new Follower({
    name: 'flaky',
    dataDir: dir,
    ledger,
    batchMax: 50,
    backoffMinMs: 5,
    backoffMaxMs: 20,
    onError: (_e, n) => errors.push(n),
    handle: async (b) => {
      attempts.push(b.map((r) => r.index));
      if (failuresLeft-- > 0) throw new Error('target down');
      got.push(...b.map((r) => r.index));
    },
  });
  f.start();
  await Promise.all(Array.from({ length: 120 }, (_, n) => ledger.append(sampleRecord(n))));
  await waitFor(() => f.cursor >= ledger.durableSize);
  assert.equal(f.status().failures, 0);
  await f.stop();
  await ledger.close();
  assert.deepEqual(errors, [1, 2, 3]);
  assert.deepEqual(attempts[0], attempts[1]);
  assert.deepEqual(attempts[1], attempts[3]);
  assert.deepEqual(got, Array.from({ length: got.length }, (_, i) => i));
  assert.ok(got.length >= 120);
});

test("startAt 'end' follows only what comes next and saves no cursor when told not to", async (t) => {
  const dir = tempDir(t);
  const { ledger } = await openTestLedger(dir);
  await Promise.all(Array.from({ length: 30 }, (_, n) => ledger.append(sampleRecord(n))));
  const start = ledger.durableSize;
  const got: number[] = [];
  const f = new Follower({ name: 'live', dataDir: dir, ledger, startAt: 'end', persistCursor: false, handle: async (b) => void got.push(...b.map((r) => r.index)) });
  f.start();
  await ledger.append(sampleRecord(99));
  await waitFor(() => got.length >= 1);
  await f.stop();
  await ledger.close();
  assert.equal(got[0], start);
  assert.throws(() => readFileSync(cursorPath(dir, 'live')), /ENOENT/);
});

test('the tail refuses a line whose index is not its position, and a damaged cursor is an error', async (t) => {
  const dir = tempDir(t);
  const { ledger } = await openTestLedger(dir);
  await Promise.all(Array.from({ length: 10 }, (_, n) => ledger.append(sampleRecord(n))));
  await ledger.close();
  const seg = listSegments(join(dir, 'ledger'))[0]!;
  chmodSync(seg.dataPath, 0o644);
  const text = readFileSync(seg.dataPath, 'utf8').replace('{"i":5,', '{"i":6,');
  writeFileSync(seg.dataPath, text);
  const tail = await LedgerTail.open(join(dir, 'ledger'), 2);
  await assert.rejects(tail.read(100, 10), /position 5 says "i":6/);
  await tail.close();

  mkdirSync(join(dir, 'state', 'followers'), { recursive: true });
  writeFileSync(cursorPath(dir, 'x'), '{"next":"oops"}');
  assert.throws(() => readCursor(dir, 'x'), (e: Error & { code?: string }) => e.code === 'WITNESS_ERR_FOLLOWER_CURSOR');
});
