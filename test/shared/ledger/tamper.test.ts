/**
 * Tamper drills on a real ledger of > 10,000 records across several segments: every drill must be
 * detected by verifyLedger, with the index of the first record concerned.
 */
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { cpSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync, chmodSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { openTestLedger, sampleRecord } from '../../helpers/ledger.js';
import { makeWritable } from '../../helpers/tmp.js';
import { forgeLedger } from '../../helpers/forge.js';
import { verifyLedger, type VerifyReport } from '../../../shared/ledger/verifier.js';
import { LedgerReader } from '../../../shared/ledger/reader.js';
import { ed25519NoteSigner } from '../../../shared/checkpoint/note.js';
import { sealSignature, evolveSealKey } from '../../../shared/checkpoint/seal.js';
import { readSeed } from '../../../shared/keys/key-file.js';
import { generateSeed } from '../../../shared/keys/ed25519.js';
import { SealState } from '../../../shared/checkpoint/seal.js';

const RECORDS = 10_500;
let root: string;
let pristine: string;
let key: { name: string; publicKey: Uint8Array };
let sealKey: Uint8Array;
let size: number;

before(async () => {
  root = mkdtempSync(join(tmpdir(), 'witness-tamper-'));
  pristine = join(root, 'pristine');
  const t = await openTestLedger(pristine, { segmentMaxBytes: 600_000, maxBatchBytes: 64 * 1024, checkpointEveryRecords: 400, checkpointEveryMs: 600_000 });
  for (let n = 0; n < RECORDS; n++) void t.ledger.append(sampleRecord(n));
  await t.ledger.close();
  key = t.key;
  sealKey = t.sealKey;
  const r = LedgerReader.open(join(pristine, 'ledger'));
  size = r.size;
  r.close();
  makeWritable(join(pristine, 'ledger'));
});

after(() => rmSync(root, { recursive: true, force: true }));

let copies = 0;
function copy(): string {
  const dir = join(root, `drill-${copies++}`);
  cpSync(pristine, dir, { recursive: true });
  return dir;
}

function segments(dataDir: string): string[] {
  const d = join(dataDir, 'ledger', 'segments');
  return readdirSync(d).filter((f) => f.endsWith('.jsonl')).sort().map((f) => join(d, f));
}

/** Rewrites the lines of the whole ledger (keeping segment boundaries) through `edit`. */
function editLines(dataDir: string, edit: (lines: string[], first: number) => string[]): void {
  for (const seg of segments(dataDir)) {
    const first = Number(seg.slice(-26, -6));
    const lines = readFileSync(seg, 'utf8').split('\n');
    lines.pop();
    chmodSync(seg, 0o644);
    writeFileSync(seg, edit(lines, first).map((l) => l + '\n').join(''));
  }
}

async function verify(dataDir: string, withSeal = true): Promise<VerifyReport> {
  return verifyLedger(join(dataDir, 'ledger'), { key, ...(withSeal ? { sealKey } : {}) });
}

function firstFailure(r: VerifyReport): { code: string; index?: number } {
  assert.equal(r.ok, false, 'tampering went undetected');
  return r.failures[0]!;
}

describe('tamper drills', () => {
  test('the pristine ledger verifies: > 10,000 records, several segments, every checkpoint and seal', async () => {
    const r = await verify(pristine);
    assert.equal(r.ok, true, JSON.stringify(r.failures.slice(0, 3)));
    assert.ok(r.records.total > 10_000);
    assert.ok(r.segments >= 4, `segments: ${r.segments}`);
    assert.equal(r.checkpoints.valid, r.checkpoints.total);
    assert.ok(r.checkpoints.total >= 20);
    assert.equal(r.uncovered, 0);
  });

  test('flip one byte of a record', async () => {
    const dir = copy();
    editLines(dir, (lines, first) => lines.map((l, k) => (first + k === 4321 ? l.replace('telemetry', 'telemetrz') : l)));
    const f = firstFailure(await verify(dir));
    assert.equal(f.code, 'WITNESS_ERR_LEDGER_LEAF_HASH');
    assert.equal(f.index, 4321);
  });

  test('delete a record', async () => {
    const dir = copy();
    editLines(dir, (lines, first) => lines.filter((_, k) => first + k !== 5000));
    const r = await verify(dir);
    assert.equal(firstFailure(r).index, 5000);
    assert.ok(r.failures.some((x) => x.code === 'WITNESS_ERR_LEDGER_RECORD_INDEX' && x.index === 5000), JSON.stringify(r.failures.slice(0, 3)));
  });

  test('insert a record', async () => {
    const dir = copy();
    editLines(dir, (lines, first) => lines.flatMap((l, k) => (first + k === 6000 ? [`{"i":6000,"v":1,"e":"publish","c":"forged"}`, l] : [l])));
    const r = await verify(dir);
    assert.equal(firstFailure(r).index, 6000);
  });

  test('swap two records', async () => {
    const dir = copy();
    editLines(dir, (lines, first) => {
      const a = 7000 - first;
      if (a >= 0 && a + 1 < lines.length) [lines[a], lines[a + 1]] = [lines[a + 1]!, lines[a]!];
      return lines;
    });
    const r = await verify(dir);
    assert.equal(firstFailure(r).index, 7000);
    assert.ok(r.failures.some((x) => x.code === 'WITNESS_ERR_LEDGER_RECORD_INDEX' && x.index === 7000));
  });

  test('truncate the tail', async () => {
    const dir = copy();
    const segs = segments(dir);
    rmSync(segs.at(-1)!);
    rmSync(segs.at(-1)!.replace('.jsonl', '.idx'));
    const prev = segs.at(-2)!;
    const lines = readFileSync(prev, 'utf8').split('\n');
    lines.pop();
    writeFileSync(prev, lines.slice(0, -10).map((l) => l + '\n').join(''));
    const remaining = Number(prev.slice(-26, -6)) + lines.length - 10;
    const r = await verify(dir);
    const f = r.failures.find((x) => x.code === 'WITNESS_ERR_LEDGER_TRUNCATED');
    assert.ok(f, JSON.stringify(r.failures.slice(0, 3)));
    assert.equal(f?.index, remaining);
    assert.ok(remaining < size);
  });

  test('delete two consecutive checkpoints', async () => {
    const dir = copy();
    const log = join(dir, 'ledger', 'checkpoints.jsonl');
    const notes = readFileSync(log, 'utf8').trim().split('\n');
    writeFileSync(log, [...notes.slice(0, 5), ...notes.slice(7)].map((l) => l + '\n').join(''));
    // Where the ledger recorded checkpoint 5.
    const reader = LedgerReader.open(join(dir, 'ledger'));
    let recordOf5 = -1;
    for await (const rec of reader.records()) {
      const o = JSON.parse(rec.line);
      if (o.e === 'checkpoint' && o.cp.n === 5) recordOf5 = rec.index;
    }
    reader.close();
    const r = await verify(dir, false); // detected without the sealing key
    assert.equal(firstFailure(r).code, 'WITNESS_ERR_LEDGER_CHECKPOINT_LOG');
    assert.ok(recordOf5 > 0);
    assert.ok(r.failures.some((x) => x.code === 'WITNESS_ERR_LEDGER_CHECKPOINT_LOG' && x.index === recordOf5), JSON.stringify(r.failures.slice(0, 4)));
  });

  test('rewrite history with the stolen broker key and re-seal it with the current (later) seal key', async () => {
    const dir = copy();
    // The attacker holds the host: the broker's signing key and the seal state (current epoch key).
    const brokerSeed = readSeed(join(dir, 'keys', 'broker.key'));
    const state = SealState.open(join(dir, 'keys', 'seal.state'));
    const stolenEpoch = state.epoch;
    state.close();
    // The stolen state holds k_m; rebuild it from the offline key to stand for what the file holds.
    let km = sealKey;
    for (let e = 0; e < stolenEpoch; e++) km = evolveSealKey(km);
    forgeLedger(join(dir, 'ledger'), {
      mutate: (i, line) => (i === 100 ? line.replace('"acl":"allow"', '"acl":"deny"') : line),
      sign: (text, epoch) => ({ signers: [ed25519NoteSigner(key.name, brokerSeed)], extra: [sealSignature(km, epoch, text)] }),
    });
    // Signatures hold (the key was stolen): without the sealing key nothing is visibly wrong…
    const unsealed = await verify(dir, false);
    assert.equal(unsealed.ok, true, 'the forgery should be self-consistent');
    // …with it, the very first checkpoint's seal fails: it could only be made with k_0.
    const r = await verify(dir, true);
    const f = firstFailure(r);
    assert.ok(['WITNESS_ERR_SEAL_INVALID', 'WITNESS_ERR_SEAL_EPOCH'].includes(f.code), f.code);
    assert.equal((f as { checkpoint?: number }).checkpoint, 0);
    assert.equal(f.index, 0);
  });

  test('replace a whole segment with a self-consistent forgery signed by another key', async () => {
    const dir = copy();
    const segs = segments(dir);
    const forgedFirst = Number(segs[2]!.slice(-26, -6));
    const forgedEnd = Number(segs[3]!.slice(-26, -6));
    const other = generateSeed();
    // Checkpoints covering only earlier records stay as they were; later ones are re-signed.
    const reader = LedgerReader.open(join(dir, 'ledger'));
    const fromEpoch = reader.checkpoints().findIndex((c) => c.checkpoint.size > forgedFirst);
    reader.close();
    forgeLedger(join(dir, 'ledger'), {
      mutate: (i, line) => (i >= forgedFirst && i < forgedEnd ? line.replace(/"c":"device-\d+"/, '"c":"device-forged"') : line),
      sign: (text) => ({ signers: [ed25519NoteSigner(key.name, other)], extra: [] }),
      fromEpoch,
    });
    const r = await verify(dir, false);
    const f = firstFailure(r);
    assert.ok(['WITNESS_ERR_CHECKPOINT_UNSIGNED', 'WITNESS_ERR_CHECKPOINT_SIGNATURE'].includes(f.code), f.code);
    assert.ok(f.index! <= forgedFirst, `index ${f.index} should be at or before the forged segment's first record ${forgedFirst}`);
    assert.ok(r.uncovered >= size - forgedFirst);
  });
});
