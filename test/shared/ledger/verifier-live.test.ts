/**
 * Verifying a ledger while it is written (the HTTP API's POST /api/v1/verify): with `upTo` = the
 * writer's durable size, what the writer has half-written past it — a record whose index entry is
 * not there yet, an index entry whose record is not, a torn line — is not a failure; damage before
 * it still is.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { appendFileSync, chmodSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { tempDir } from '../../helpers/tmp.js';
import { openTestLedger, sampleRecord } from '../../helpers/ledger.js';
import { verifyLedger } from '../../../shared/ledger/verifier.js';
import { listSegments } from '../../../shared/ledger/segment.js';

test('upTo ignores what lies past the durable size, and still finds damage before it', async (t) => {
  const dir = tempDir(t);
  const { ledger, key } = await openTestLedger(dir, { checkpointEveryRecords: 100 });
  for (let k = 0; k < 5; k++) await Promise.all(Array.from({ length: 100 }, (_, n) => ledger.append(sampleRecord(k * 100 + n))));
  const durable = ledger.durableSize;
  await ledger.close();
  const ldir = join(dir, 'ledger');
  const seg = listSegments(ldir).at(-1)!;
  chmodSync(seg.dataPath, 0o644);
  chmodSync(seg.indexPath, 0o644);
  // A writer caught mid-batch: two index entries ahead of their records, then a torn line.
  appendFileSync(seg.indexPath, Buffer.alloc(64, 7));
  appendFileSync(seg.dataPath, `{"i":${durable},"v":1,"e":"publish","t":1`);

  const whole = await verifyLedger(ldir, { key });
  assert.equal(whole.ok, false, 'without upTo the extra index entries are a failure');
  const live = await verifyLedger(ldir, { key, upTo: durable });
  assert.equal(live.ok, true, JSON.stringify(live.failures));
  assert.equal(live.records.total, durable);

  // Damage before the durable size is found all the same.
  const text = readFileSync(seg.dataPath, 'utf8');
  const at = text.indexOf('"i":250,');
  assert.ok(at > 0);
  writeFileSync(seg.dataPath, text.slice(0, at) + text.slice(at).replace('"e":"publish"', '"e":"publisH"'));
  const bad = await verifyLedger(ldir, { key, upTo: durable });
  assert.equal(bad.ok, false);
  assert.equal(bad.failures[0]!.index, 250);
  // A smaller bound than the ledger's own checkpoints: those past it are not compared.
  const early = await verifyLedger(ldir, { key, upTo: 200 });
  assert.equal(early.ok, true, JSON.stringify(early.failures));
  assert.equal(early.records.total, 200);
});
