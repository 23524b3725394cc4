import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { appendFileSync, readFileSync, readdirSync, statSync, writeFileSync, rmSync, existsSync } from 'node:fs';
import { join } from 'node:path';
import { spawnSync } from 'node:child_process';
import { tempDir, makeWritable } from '../../helpers/tmp.js';
import { openTestLedger, reopenTestLedger, sampleRecord } from '../../helpers/ledger.js';
import { LedgerReader } from '../../../shared/ledger/reader.js';
import { verifyLedger } from '../../../shared/ledger/verifier.js';
import { openCheckpoint } from '../../../shared/checkpoint/checkpoint.js';
import { ed25519NoteVerifier } from '../../../shared/checkpoint/note.js';
import { verifyInclusion, verifyConsistency } from '../../../shared/merkle/verify.js';
import { leafHash } from '../../../shared/merkle/hash.js';
import { isWitnessError } from '../../../shared/errors.js';

async function waitFor(cond: () => boolean, ms: number): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`condition not met within ${ms} ms`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

describe('append', () => {
  test('assigns consecutive indexes, writes {"i":N,…} lines and matching leaf hashes', async (t) => {
    const dir = tempDir(t);
    const { ledger } = await openTestLedger(dir, { checkpointEveryRecords: 1_000_000 });
    const results = await Promise.all(Array.from({ length: 50 }, (_, n) => ledger.append(sampleRecord(n))));
    assert.deepEqual(results.map((r) => r.index), Array.from({ length: 50 }, (_, n) => n));
    await ledger.close();
    const reader = LedgerReader.open(join(dir, 'ledger'));
    t.after(() => reader.close());
    let n = 0;
    for await (const r of reader.records(0, 50)) {
      assert.equal(r.index, n);
      assert.ok(r.line.startsWith(`{"i":${n},"v":1,`), r.line);
      assert.deepEqual({ ...JSON.parse(r.line), i: undefined }, { ...sampleRecord(n), i: undefined });
      assert.deepEqual(Buffer.from(reader.leafHash(n)), Buffer.from(leafHash(Buffer.from(r.line))));
      assert.deepEqual(Buffer.from(results[n]!.leafHash), Buffer.from(leafHash(Buffer.from(r.line))));
      n++;
    }
    assert.equal(n, 50);
  });

  test('refuses the reserved key "i", non-objects and oversized records', async (t) => {
    const { ledger } = await openTestLedger(tempDir(t), { maxRecordBytes: 1000 });
    t.after(() => ledger.close());
    await assert.rejects(ledger.append({ i: 3 }), (e: unknown) => isWitnessError(e, 'WITNESS_ERR_INVALID_ARGUMENT'));
    await assert.rejects(ledger.append([] as unknown as Record<string, unknown>), (e: unknown) => isWitnessError(e, 'WITNESS_ERR_INVALID_ARGUMENT'));
    await assert.rejects(ledger.append({ big: 'x'.repeat(2000) }), (e: unknown) => isWitnessError(e, 'WITNESS_ERR_LEDGER_RECORD_TOO_LARGE'));
    // A refused record takes no index.
    assert.equal((await ledger.append({ ok: true })).index, 0);
  });

  test('append after close is refused', async (t) => {
    const { ledger } = await openTestLedger(tempDir(t));
    await ledger.close();
    await assert.rejects(ledger.append({ a: 1 }), (e: unknown) => isWitnessError(e, 'WITNESS_ERR_LEDGER_CLOSED'));
  });

  for (const fsync of ['batch', 'interval', 'never'] as const) {
    test(`fsync policy ${fsync}: appends resolve and the ledger verifies`, async (t) => {
      const dir = tempDir(t);
      const { ledger, key } = await openTestLedger(dir, { fsync, fsyncIntervalMs: 20 });
      const rs = await Promise.all(Array.from({ length: 300 }, (_, n) => ledger.append(sampleRecord(n))));
      assert.equal(rs.at(-1)!.index, 299);
      assert.equal(ledger.size, 300);
      await ledger.close();
      const report = await verifyLedger(join(dir, 'ledger'), { key });
      assert.equal(report.ok, true, JSON.stringify(report.failures));
      assert.equal(report.records.total, 300); // no checkpoint before close; the close checkpoint has no record
    });
  }
});

describe('checkpoints', () => {
  test('every N records, each signed by the broker key and followed by a checkpoint record', async (t) => {
    const dir = tempDir(t);
    const { ledger, key } = await openTestLedger(dir, { checkpointEveryRecords: 100, checkpointEveryMs: 60_000 });
    for (let n = 0; n < 1000; n++) await ledger.append(sampleRecord(n));
    await ledger.close();
    const reader = LedgerReader.open(join(dir, 'ledger'));
    t.after(() => reader.close());
    const cps = reader.checkpoints();
    assert.ok(cps.length >= 10, `expected >= 10 checkpoints, got ${cps.length}`);
    const verifier = ed25519NoteVerifier(key.name, key.publicKey);
    cps.forEach((c, j) => {
      assert.equal(c.epoch, j);
      assert.equal(openCheckpoint(c.note, [verifier]).checkpoint.size, c.checkpoint.size);
    });
    let checkpointRecords = 0;
    for await (const r of reader.records()) if (JSON.parse(r.line).e === 'checkpoint') checkpointRecords++;
    // Every checkpoint has its record but two: the empty-tree checkpoint of `init` and the one
    // written at close (a record after them would be left uncovered).
    assert.equal(checkpointRecords, cps.length - 2);
    assert.equal(cps.at(-1)!.checkpoint.size, reader.size, 'the close checkpoint covers every record');
  });

  test('every T ms, also when idle', async (t) => {
    const dir = tempDir(t);
    const { ledger } = await openTestLedger(dir, { checkpointEveryMs: 30 });
    t.after(() => ledger.close());
    await ledger.append({ e: 'test' });
    await waitFor(() => (ledger.lastCheckpoint?.epoch ?? -1) >= 3, 5000);
    assert.ok(ledger.lastCheckpoint!.size >= 2);
  });

  test('checkpoint() covers everything appended before it', async (t) => {
    const { ledger } = await openTestLedger(tempDir(t), { checkpointEveryMs: 60_000 });
    t.after(() => ledger.close());
    void ledger.append({ a: 1 });
    void ledger.append({ a: 2 });
    const cp = await ledger.checkpoint();
    assert.equal(cp.size, 2);
  });
});

describe('proofs from the ledger', () => {
  test('inclusion proofs for every 37th record and consistency proofs between checkpoints verify against signed roots', async (t) => {
    const dir = tempDir(t);
    const { ledger, key } = await openTestLedger(dir, { checkpointEveryRecords: 700, segmentMaxBytes: 200_000 });
    for (let n = 0; n < 3000; n++) void ledger.append(sampleRecord(n));
    await ledger.checkpoint();
    const verifier = ed25519NoteVerifier(key.name, key.publicKey);
    const reader = LedgerReader.open(join(dir, 'ledger'));
    t.after(() => reader.close());
    const cps = reader.checkpoints().map((c) => openCheckpoint(c.note, [verifier]).checkpoint);
    const last = cps.at(-1)!;
    for (let i = 0; i < last.size; i += 37) {
      const proof = await ledger.inclusionProof(i, last.size);
      const line = (await reader.record(i)).line;
      verifyInclusion(i, last.size, leafHash(Buffer.from(line)), proof, last.rootHash);
      assert.deepEqual(proof.map((p) => Buffer.from(p).toString('hex')), (await reader.inclusionProof(i, last.size)).map((p) => Buffer.from(p).toString('hex')));
    }
    // From the empty tree (init's checkpoint) a consistency proof proves nothing (RFC 9162 §2.1.4).
    for (let a = 1; a < cps.length; a++) {
      for (let b = a; b < cps.length; b++) {
        const p = await reader.consistencyProof(cps[a]!.size, cps[b]!.size);
        verifyConsistency(cps[a]!.size, cps[b]!.size, p, cps[a]!.rootHash, cps[b]!.rootHash);
      }
    }
    await ledger.close();
  });
});

describe('segments', () => {
  test('roll over at segmentMaxBytes; sealed segments are read-only', async (t) => {
    const dir = tempDir(t);
    const { ledger, key } = await openTestLedger(dir, { segmentMaxBytes: 50_000, maxBatchBytes: 20_000 });
    for (let n = 0; n < 2000; n++) void ledger.append(sampleRecord(n));
    await ledger.close();
    const segs = readdirSync(join(dir, 'ledger', 'segments')).filter((f) => f.endsWith('.jsonl')).sort();
    assert.ok(segs.length >= 5, `expected several segments, got ${segs.length}`);
    for (const s of segs.slice(0, -1)) {
      assert.equal(statSync(join(dir, 'ledger', 'segments', s)).mode & 0o777, 0o444, s);
      assert.equal(statSync(join(dir, 'ledger', 'segments', s.replace('.jsonl', '.idx'))).mode & 0o777, 0o444, s);
    }
    const report = await verifyLedger(join(dir, 'ledger'), { key });
    assert.equal(report.ok, true, JSON.stringify(report.failures));
    assert.equal(report.segments, segs.length);
  });
});

describe('reopen and recovery', () => {
  test('reopening continues indexes and the tree; the whole verifies', async (t) => {
    const dir = tempDir(t);
    const { ledger, key, sealKey } = await openTestLedger(dir, { segmentMaxBytes: 30_000 });
    for (let n = 0; n < 500; n++) void ledger.append(sampleRecord(n));
    await ledger.close();
    const again = await reopenTestLedger(dir, { segmentMaxBytes: 30_000 });
    const first = await again.append(sampleRecord(500));
    assert.equal(first.index, 500); // the close checkpoint has no record of its own
    for (let n = 501; n < 900; n++) void again.append(sampleRecord(n));
    await again.close();
    const report = await verifyLedger(join(dir, 'ledger'), { key, sealKey });
    assert.equal(report.ok, true, JSON.stringify(report.failures));
    assert.equal(report.uncovered, 0);
  });

  test('a torn tail is cut and a recovery record says what was cut', async (t) => {
    const dir = tempDir(t);
    const { ledger, key, sealKey } = await openTestLedger(dir);
    for (let n = 0; n < 100; n++) void ledger.append(sampleRecord(n));
    await ledger.close();
    const seg = join(dir, 'ledger', 'segments', '00000000000000000000.jsonl');
    const torn = '{"i":100,"v":1,"e":"publish","topic":"devi';
    appendFileSync(seg, torn);
    const again = await reopenTestLedger(dir);
    assert.equal(again.recovery.cutBytes, torn.length);
    assert.equal(again.recovery.cutLines, 1);
    await again.close();
    const reader = LedgerReader.open(join(dir, 'ledger'));
    t.after(() => reader.close());
    const rec = JSON.parse((await reader.record(100)).line);
    assert.equal(rec.e, 'recovery');
    assert.equal(rec.cut.bytes, torn.length);
    assert.equal(rec.cut.offset, readFileSync(seg).indexOf('{"i":100,'));
    const report = await verifyLedger(join(dir, 'ledger'), { key, sealKey });
    assert.equal(report.ok, true, JSON.stringify(report.failures));
  });

  test('zero-filled blocks after the last record (delayed allocation) are cut too', async (t) => {
    const dir = tempDir(t);
    const { ledger } = await openTestLedger(dir, { checkpointEveryMs: 60_000 });
    for (let n = 0; n < 10; n++) void ledger.append(sampleRecord(n));
    await ledger.close();
    const seg = join(dir, 'ledger', 'segments', '00000000000000000000.jsonl');
    appendFileSync(seg, Buffer.concat([Buffer.alloc(4096), Buffer.from('\n')]));
    const again = await reopenTestLedger(dir);
    assert.equal(again.recovery.cutBytes, 4097);
    await again.close();
  });

  test('damage inside the signed range is refused, not cut', async (t) => {
    const dir = tempDir(t);
    const { ledger } = await openTestLedger(dir);
    for (let n = 0; n < 100; n++) void ledger.append(sampleRecord(n));
    await ledger.close();
    const seg = join(dir, 'ledger', 'segments', '00000000000000000000.jsonl');
    const buf = readFileSync(seg);
    const at = buf.indexOf('{"i":50,');
    buf[at + 1] = 0x78; // {"i" → {xi": record 50 no longer claims its index
    writeFileSync(seg, buf);
    await assert.rejects(reopenTestLedger(dir), (e: unknown) => isWitnessError(e, 'WITNESS_ERR_LEDGER_TORN_TAIL'));
  });

  test('derived tile files are rebuilt when lost', async (t) => {
    const dir = tempDir(t);
    const { ledger } = await openTestLedger(dir);
    for (let n = 0; n < 70_000; n++) void ledger.append({ n });
    await ledger.close();
    const tree = join(dir, 'ledger', 'tree');
    const reader = LedgerReader.open(join(dir, 'ledger'));
    const size = reader.size;
    reader.close();
    assert.ok(size >= 70_000);
    assert.equal(statSync(join(tree, 'L08.bin')).size, Math.floor(size / 256) * 32);
    assert.equal(statSync(join(tree, 'L16.bin')).size, 32);
    const l08 = readFileSync(join(tree, 'L08.bin'));
    rmSync(join(tree, 'L08.bin'));
    writeFileSync(join(tree, 'L16.bin'), Buffer.alloc(0));
    const again = await reopenTestLedger(dir);
    assert.ok(again.recovery.rebuiltNodes >= l08.length / 32);
    await again.close();
    assert.deepEqual(readFileSync(join(tree, 'L08.bin')).subarray(0, l08.length), l08);
  });

  test('a second writer is refused; a lock left by a dead process is taken over', async (t) => {
    const dir = tempDir(t);
    const { ledger } = await openTestLedger(dir);
    await assert.rejects(reopenTestLedger(dir), (e: unknown) => isWitnessError(e, 'WITNESS_ERR_LEDGER_LOCKED'));
    await ledger.close();
    // A pid that is certainly dead: a child that has exited.
    const dead = spawnSync(process.execPath, ['-e', 'process.stdout.write(String(process.pid))']).stdout.toString();
    writeFileSync(join(dir, 'ledger', 'LOCK'), `${dead}\n`);
    const again = await reopenTestLedger(dir);
    assert.ok(existsSync(join(dir, 'ledger', 'LOCK')));
    await again.close();
    assert.ok(!existsSync(join(dir, 'ledger', 'LOCK')));
    makeWritable(dir);
  });
});
