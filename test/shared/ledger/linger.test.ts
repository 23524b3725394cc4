/**
 * lingerMs (shared/ledger/writer.ts): a batch of records nobody waits for gathers more records
 * instead of being written at once; a record someone waits for, a checkpoint or close() ends the
 * wait. Fewer batches is the point (each costs a hand-off to the I/O thread and an fdatasync).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import { tempDir } from '../../helpers/tmp.js';
import { openTestLedger, reopenTestLedger } from '../../helpers/ledger.js';

const body = (n: number): string => JSON.stringify({ v: 1, e: 'publish', t: 1_732_363_200_000 + n, topic: `t/${n}` });

/** Appends `n` loose records, one per turn of the event loop (as sockets read one by one). */
async function looseOnePerTurn(ledger: { appendJsonLoose(json: string, onError: (e: unknown) => void): void }, n: number, errors: unknown[]): Promise<void> {
  for (let k = 0; k < n; k++) {
    ledger.appendJsonLoose(body(k), (e) => errors.push(e));
    await new Promise((r) => setImmediate(r));
  }
}

test('lingerMs: loose records linger in one batch until a record someone waits for arrives', async (t) => {
  const { ledger } = await openTestLedger(tempDir(t), { lingerMs: 1000, checkpointEveryMs: 3_600_000 });
  const start = ledger.durableSize;
  const before = ledger.stats.batches;
  const errors: unknown[] = [];
  await looseOnePerTurn(ledger, 50, errors);
  await sleep(30);
  assert.equal(ledger.durableSize, start, 'nothing written while the batch lingers');
  assert.equal(ledger.stats.batches, before);
  const r = await ledger.appendJson(body(50));
  assert.equal(r.index, start + 50);
  assert.equal(ledger.durableSize, start + 51, 'the waiting record took the lingering ones with it');
  assert.equal(ledger.stats.batches, before + 1, 'one batch');
  await ledger.close();
  assert.deepEqual(errors, []);
});

test('lingerMs 0: every turn that finds the I/O thread idle writes a batch', async (t) => {
  const { ledger } = await openTestLedger(tempDir(t), { lingerMs: 0, checkpointEveryMs: 3_600_000 });
  const before = ledger.stats.batches;
  const errors: unknown[] = [];
  await looseOnePerTurn(ledger, 50, errors);
  await ledger.appendJson(body(50));
  assert.ok(ledger.stats.batches - before > 1, `${ledger.stats.batches - before} batches`);
  await ledger.close();
  assert.deepEqual(errors, []);
});

test('lingerMs: the batch is written when its time is up, by a checkpoint, and by close()', async (t) => {
  const { ledger } = await openTestLedger(tempDir(t), { lingerMs: 20, checkpointEveryMs: 3_600_000 });
  const start = ledger.durableSize;
  const errors: unknown[] = [];
  await looseOnePerTurn(ledger, 10, errors);
  // Bounded wait (a loaded machine may run the timer late): at most 5 s.
  for (let k = 0; k < 500 && ledger.durableSize < start + 10; k++) await sleep(10);
  assert.equal(ledger.durableSize, start + 10, 'written after lingering');
  await ledger.close();

  const dir = tempDir(t);
  const long = await openTestLedger(dir, { lingerMs: 1000, checkpointEveryMs: 3_600_000 });
  const s0 = long.ledger.durableSize;
  await looseOnePerTurn(long.ledger, 5, errors);
  const cp = await long.ledger.checkpoint();
  assert.ok(cp.size >= s0 + 5, 'the checkpoint covers the lingering records');
  await looseOnePerTurn(long.ledger, 5, errors);
  const size = long.ledger.size;
  await long.ledger.close();
  const again = await reopenTestLedger(dir);
  assert.ok(again.durableSize >= size, 'close() wrote the lingering batch');
  await again.close();
  assert.deepEqual(errors, []);
});

test('lingerMs out of range is refused', async (t) => {
  for (const lingerMs of [-1, 1.5, 1001]) {
    await assert.rejects(openTestLedger(tempDir(t), { lingerMs }), (e: { code?: string; message?: string }) => e.code === 'WITNESS_ERR_INVALID_ARGUMENT' && /lingerMs/.test(e.message ?? ''));
  }
});
