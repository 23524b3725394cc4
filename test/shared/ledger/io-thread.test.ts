/**
 * The ledger's I/O thread (shared/ledger/io-worker.ts) changes where batches are hashed and
 * written, not what is written: with and without it the files are byte for byte the same, the
 * leaf hashes returned match, and appendJson/appendJsonLoose write what append() writes.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { tempDir } from '../../helpers/tmp.js';
import { openTestLedger, sampleRecord } from '../../helpers/ledger.js';
import { leafHash } from '../../../shared/merkle/hash.js';
import { verifyLedger } from '../../../shared/ledger/verifier.js';

/** The segment data and idx files of a closed ledger, by name. */
function segmentFiles(ledgerDir: string): Record<string, Buffer> {
  const out: Record<string, Buffer> = {};
  const segDir = join(ledgerDir, 'segments');
  for (const name of readdirSync(segDir).sort()) out[name] = readFileSync(join(segDir, name));
  return out;
}

async function fill(dir: string, ioThread: boolean): Promise<{ files: Record<string, Buffer>; leaves: Buffer[] }> {
  // A fixed clock, so that the ledger's own records (checkpoints) are the same in both runs.
  const { ledger, key } = await openTestLedger(dir, { ioThread, checkpointEveryRecords: 700, checkpointEveryMs: 3_600_000, segmentMaxBytes: 64 * 1024, now: () => 1_732_363_200_000 }, 'io-node');
  const leaves: Buffer[] = [];
  const errors: unknown[] = [];
  for (let round = 0; round < 20; round++) {
    const ps = [];
    for (let k = 0; k < 100; k++) {
      const n = round * 100 + k;
      if (k % 3 === 0) ledger.appendJsonLoose(JSON.stringify(sampleRecord(n)), (e) => errors.push(e));
      else if (k % 3 === 1) ps.push(ledger.appendJson(JSON.stringify(sampleRecord(n))));
      else ps.push(ledger.append(sampleRecord(n)));
    }
    for (const r of await Promise.all(ps)) leaves.push(Buffer.from(r.leafHash));
  }
  await ledger.close();
  assert.deepEqual(errors, []);
  const v = await verifyLedger(join(dir, 'ledger'), { key });
  assert.equal(v.ok, true, JSON.stringify(v.failures.slice(0, 3)));
  return { files: segmentFiles(join(dir, 'ledger')), leaves };
}

test('with and without the I/O thread: the same segment and idx bytes, the same leaf hashes', async (t) => {
  const a = await fill(tempDir(t), true);
  const b = await fill(tempDir(t), false);
  assert.ok(Object.keys(a.files).length > 2, 'several segments');
  assert.deepEqual(Object.keys(a.files), Object.keys(b.files));
  for (const name of Object.keys(a.files)) assert.ok(a.files[name]!.equals(b.files[name]!), name);
  assert.equal(a.leaves.length, b.leaves.length);
  for (let k = 0; k < a.leaves.length; k++) assert.ok(a.leaves[k]!.equals(b.leaves[k]!));
  // Each returned leaf hash is the hash of its line.
  const lines = Object.entries(a.files)
    .filter(([name]) => name.endsWith('.jsonl'))
    .flatMap(([, buf]) => buf.toString('utf8').split('\n').filter((l) => l.length > 0));
  const byLeaf = new Set(lines.map((l) => Buffer.from(leafHash(Buffer.from(l))).toString('hex')));
  for (const l of a.leaves) assert.ok(byLeaf.has(l.toString('hex')));
});

test('appendJsonLoose reports a failure to its callback (append after close)', async (t) => {
  const { ledger } = await openTestLedger(tempDir(t));
  await ledger.close();
  const errors: unknown[] = [];
  ledger.appendJsonLoose('{"v":1,"e":"x"}', (e) => errors.push(e));
  assert.equal(errors.length, 1);
  assert.equal((errors[0] as { code?: string }).code, 'WITNESS_ERR_LEDGER_CLOSED');
  await assert.rejects(ledger.appendJson('{"v":1,"e":"x"}'), (e: { code?: string }) => e.code === 'WITNESS_ERR_LEDGER_CLOSED');
});
