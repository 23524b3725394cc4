/**
 * verifyLedger with worker threads must give the report the single-threaded path gives — the same
 * failures, codes, indexes, counts and progress calls — on clean and tampered ledgers. Both paths
 * are forced with `workers`; small `chunkBytes` put chunk boundaries inside records.
 */
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { appendFileSync, cpSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync, truncateSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { spawnSync } from 'node:child_process';
import { openTestLedger, sampleRecord } from '../../helpers/ledger.js';
import { makeWritable } from '../../helpers/tmp.js';
import { verifyLedger, type VerifyOptions, type VerifyReport } from '../../../shared/ledger/verifier.js';
import { isWitnessError } from '../../../shared/errors.js';

let root: string;
let pristine: string;
let key: { name: string; publicKey: Uint8Array };
let sealKey: Uint8Array;

before(async () => {
  root = mkdtempSync(join(tmpdir(), 'witness-verify-parallel-'));
  pristine = join(root, 'pristine');
  const t = await openTestLedger(pristine, { segmentMaxBytes: 150_000, maxBatchBytes: 32 * 1024, checkpointEveryRecords: 300, checkpointEveryMs: 600_000 });
  // Some records with multi-byte UTF-8, so chunk boundaries also fall inside characters.
  for (let n = 0; n < 2500; n++) void t.ledger.append(n % 97 === 3 ? { e: 'note', text: 'é€😀'.repeat(1 + (n % 7)) } : sampleRecord(n));
  await t.ledger.close();
  key = t.key;
  sealKey = t.sealKey;
  makeWritable(join(pristine, 'ledger'));
});

after(() => rmSync(root, { recursive: true, force: true }));

let copies = 0;
function copy(): string {
  const dir = join(root, `drill-${copies++}`);
  cpSync(pristine, dir, { recursive: true });
  return join(dir, 'ledger');
}

function segments(ledger: string): string[] {
  const d = join(ledger, 'segments');
  return readdirSync(d).filter((f) => f.endsWith('.jsonl')).sort().map((f) => join(d, f));
}

function editLines(path: string, edit: (lines: string[]) => void): void {
  const lines = readFileSync(path, 'utf8').split('\n');
  edit(lines);
  writeFileSync(path, lines.join('\n'));
}

/** Verifies with `extra` options, recording the progress calls too. */
async function run(ledger: string, extra: Partial<VerifyOptions>): Promise<{ report: VerifyReport; progress: Array<[number, number]> }> {
  const progress: Array<[number, number]> = [];
  const report = await verifyLedger(ledger, { key, sealKey, maxFailures: 50, onProgress: (d, t) => progress.push([d, t]), ...extra });
  return { report, progress };
}

/** Every way of cutting and sharing the work gives what the single-threaded default gives. */
async function assertSameEverywhere(ledger: string): Promise<VerifyReport> {
  const single = await run(ledger, { workers: 0 });
  for (const extra of [{ workers: 0, chunkBytes: 1000 }, { workers: 1 }, { workers: 1, chunkBytes: 4096 }, { workers: 1, chunkBytes: 777 }, { workers: 8, chunkBytes: 2000 }]) {
    const other = await run(ledger, extra);
    assert.deepEqual(other.report, single.report, JSON.stringify(extra));
    assert.deepEqual(other.progress, single.progress, `progress, ${JSON.stringify(extra)}`);
  }
  return single.report;
}

const drills: Record<string, (ledger: string) => void> = {
  'flip one byte of a record': (l) => editLines(segments(l)[1]!, (lines) => (lines[20] = lines[20]!.replace('telemetry', 'telemetrz'))),
  'delete a record': (l) => editLines(segments(l)[2]!, (lines) => lines.splice(10, 1)),
  'swap two records': (l) => editLines(segments(l)[1]!, (lines) => ([lines[5], lines[6]] = [lines[6]!, lines[5]!])),
  'a line without the {"i": prefix, and an empty line': (l) => editLines(segments(l)[0]!, (lines) => lines.splice(30, 1, 'garbage', '')),
  'a record made far longer than a chunk': (l) => editLines(segments(l)[1]!, (lines) => (lines[3] = lines[3]!.replace('"v":1', `"pad":"${'x'.repeat(9000)}","v":1`))),
  'a checkpoint record altered': (l) => {
    for (const s of segments(l)) {
      const text = readFileSync(s, 'utf8');
      if (text.includes('"e":"checkpoint"')) return writeFileSync(s, text.replace(/"size":(\d+)/, (_, n: string) => `"size":${Number(n) + 1}`));
    }
    assert.fail('no checkpoint record');
  },
  'bytes after the last record of a middle segment': (l) => appendFileSync(segments(l)[1]!, '{"i":1,"v":1,"to'),
  'a torn tail and unindexed records in the last segment': (l) => {
    const s = segments(l).at(-1)!;
    appendFileSync(s, '{"i":99999,"v":1,"torn');
    const idx = s.replace('.jsonl', '.idx');
    truncateSync(idx, statSync(idx).size - 3 * 32);
  },
  'index entries added and removed': (l) => {
    appendFileSync(segments(l)[0]!.replace('.jsonl', '.idx'), Buffer.alloc(64, 1));
    const idx = segments(l)[2]!.replace('.jsonl', '.idx');
    truncateSync(idx, statSync(idx).size - 2 * 32);
  },
  'a segment emptied': (l) => writeFileSync(segments(l)[2]!, ''),
  'the last segment removed': (l) => {
    const s = segments(l).at(-1)!;
    rmSync(s);
    rmSync(s.replace('.jsonl', '.idx'));
  },
  'two checkpoints removed from the log': (l) => {
    const log = join(l, 'checkpoints.jsonl');
    const notes = readFileSync(log, 'utf8').trim().split('\n');
    writeFileSync(log, [...notes.slice(0, 3), ...notes.slice(5)].map((x) => x + '\n').join(''));
  },
};

describe('parallel verification gives the single-threaded report', () => {
  test('on the pristine ledger (several segments, checkpoints, multi-byte records)', async () => {
    assert.ok(segments(join(pristine, 'ledger')).length >= 4);
    const r = await assertSameEverywhere(join(pristine, 'ledger'));
    assert.equal(r.ok, true, JSON.stringify(r.failures.slice(0, 3)));
    assert.ok(r.records.total >= 2500);
  });

  for (const [name, drill] of Object.entries(drills)) {
    test(name, async () => {
      const ledger = copy();
      drill(ledger);
      const r = await assertSameEverywhere(ledger);
      if (name.startsWith('a torn tail')) {
        assert.equal(r.ok, true, 'an unclean stop is not tampering');
        assert.ok(r.tornTailBytes > 0 && r.unindexedTail === 3);
      } else {
        assert.equal(r.ok, false, 'tampering went undetected');
      }
    });
  }
});

describe('options', () => {
  test('workers and chunkBytes are checked', async () => {
    const ledger = join(pristine, 'ledger');
    await assert.rejects(verifyLedger(ledger, { key, workers: -1 }), (e: unknown) => isWitnessError(e, 'WITNESS_ERR_INVALID_ARGUMENT'));
    await assert.rejects(verifyLedger(ledger, { key, workers: 1.5 }), (e: unknown) => isWitnessError(e, 'WITNESS_ERR_INVALID_ARGUMENT'));
    await assert.rejects(verifyLedger(ledger, { key, chunkBytes: 0 }), (e: unknown) => isWitnessError(e, 'WITNESS_ERR_INVALID_ARGUMENT'));
  });

  test('workers are gone when verification ends, also when it fails (else the process would not exit)', () => {
    const ledger = copy();
    // A segment that cannot be read (a directory in its place): an I/O error, exit 2 in the CLI.
    const broken = copy();
    const s = segments(broken)[1]!;
    rmSync(s);
    mkdirSync(s);
    const verifier = new URL('../../../shared/ledger/verifier.js', import.meta.url).href;
    const script = `
      import { verifyLedger } from ${JSON.stringify(verifier)};
      const key = { name: ${JSON.stringify(key.name)}, publicKey: Buffer.from(${JSON.stringify(Buffer.from(key.publicKey).toString('base64'))}, 'base64') };
      const ok = await verifyLedger(${JSON.stringify(ledger)}, { key, workers: 1, chunkBytes: 4096 });
      let failed = false;
      try { await verifyLedger(${JSON.stringify(broken)}, { key, workers: 1, chunkBytes: 4096 }); } catch { failed = true; }
      console.log(JSON.stringify({ ok: ok.ok, failed }));
    `;
    const r = spawnSync(process.execPath, ['--input-type=module', '-e', script], { encoding: 'utf8', timeout: 60_000 });
    assert.equal(r.signal, null, 'the process did not exit by itself: a worker was left running');
    assert.equal(r.status, 0, r.stderr);
    assert.deepEqual(JSON.parse(r.stdout), { ok: true, failed: true });
  });
});
