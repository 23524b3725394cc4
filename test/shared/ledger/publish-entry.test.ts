/**
 * The deferred publish record (shared/ledger/publish-entry.ts, Ledger.appendPublish): the line the
 * I/O thread makes from the raw fields is byte for byte the line appendJson(publishJson(…))
 * writes — for any strings and numbers, and in whole ledgers (segments, idx, tiles), with and
 * without the I/O thread, mixed with other records, across batches and segments.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { hash } from 'node:crypto';
import { readFileSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import fc from 'fast-check';
import { tempDir } from '../../helpers/tmp.js';
import { openTestLedger, sampleRecord } from '../../helpers/ledger.js';
import { Rng } from '../../../simulator/rng.js';
import { jsonString, publishJson, socketPartJson } from '../../../shared/ledger/publish-json.js';
import { entryBound, entryLineBound, expandEntry, readEntry, writeEntry, type PublishFields } from '../../../shared/ledger/publish-entry.js';
import { batchLines } from '../../../shared/ledger/io-worker.js';
import { writeLine } from '../../../shared/ledger/record.js';
import { verifyLedger } from '../../../shared/ledger/verifier.js';

/** The line appendJson(publishJson(…)) writes for these fields as record `index`. */
function expectedLine(f: PublishFields, index: number): Buffer {
  const json = publishJson(
    f.t,
    f.u,
    Buffer.from(f.socketPart).toString('utf8'),
    f.topicJson,
    f.q,
    f.retain,
    f.dup,
    f.messageId,
    f.payload.length,
    hash('sha256', f.payload, 'base64url'),
    f.ruleJson === undefined ? undefined : (JSON.parse(f.ruleJson) as string),
    f.env,
  );
  const buf = Buffer.alloc(json.length * 3 + 64);
  const nl = writeLine(buf, 0, index, json);
  return buf.subarray(0, nl + 1);
}

const str = fc.oneof(fc.string(), fc.string({ unit: 'binary' }), fc.constantFrom('a"b', 'a\\b', '\n', '\u2028', '\ud800', 'x\udfffy', 'é€😀'));

const fieldsArb = fc.record({
  t: fc.oneof(fc.integer({ min: 0, max: 2 ** 45 }), fc.double()),
  u: fc.oneof(fc.integer({ min: 0, max: 1000 }), fc.double()),
  s: str,
  c: fc.option(str, { nil: undefined }),
  id: str,
  addr: fc.option(str, { nil: undefined }),
  topic: str,
  q: fc.constantFrom(0, 1, 2),
  retain: fc.boolean(),
  dup: fc.boolean(),
  messageId: fc.oneof(fc.constant(undefined), fc.constant(null), fc.integer({ min: 0, max: 65535 })),
  payload: fc.uint8Array({ maxLength: 600 }),
  rule: fc.option(str, { nil: undefined }),
  env: fc.constantFrom('unchecked', 'valid', 'missing', 'out-of-order'),
  index: fc.integer({ min: 0, max: Number.MAX_SAFE_INTEGER }),
});

/** A publish as the plugin sees it, before publishFields caches its JSON pieces. */
interface RawPublish {
  t: number;
  u: number;
  s: string;
  c: string | undefined;
  id: string;
  addr: string | undefined;
  topic: string;
  q: number;
  retain: boolean;
  dup: boolean;
  messageId: number | null | undefined;
  payload: Uint8Array;
  rule: string | undefined;
  env: string;
}

function toFields(a: RawPublish): PublishFields {
  return {
    t: a.t,
    u: a.u,
    socketPart: Buffer.from(socketPartJson(jsonString('node-1'), a.s, a.c, a.id, a.addr), 'utf8'),
    topicJson: jsonString(a.topic),
    q: a.q,
    retain: a.retain,
    dup: a.dup,
    messageId: a.messageId,
    payload: a.payload,
    ruleJson: a.rule === undefined ? undefined : jsonString(a.rule),
    env: a.env,
  };
}

test('expandEntry writes the line writeLine(publishJson(…)) writes, and readEntry gives the fields back', () => {
  fc.assert(
    fc.property(fieldsArb, (a) => {
      const f = toFields(a);
      const buf = Buffer.alloc(entryBound(f) + 8, 0xee);
      const end = writeEntry(buf, 3, f);
      assert.ok(end - 3 <= entryBound(f));
      assert.equal(buf.readUInt32LE(4), end - 3, 'the entry says its own length');
      const back = readEntry(buf, 3);
      assert.deepEqual({ ...back, socketPart: Buffer.from(back.socketPart), payload: Buffer.from(back.payload) }, { ...f, socketPart: Buffer.from(f.socketPart), payload: Buffer.from(f.payload) });
      const out = Buffer.alloc(entryLineBound(f) + 20, 0xee);
      const o = expandEntry(buf, 3, a.index, out, 5);
      const want = expectedLine(f, a.index);
      assert.equal(out.subarray(5, o).toString('hex'), want.toString('hex'));
      assert.ok(o - 5 <= entryLineBound(f), 'entryLineBound bounds the line');
    }),
    { numRuns: 400 },
  );
});

test('batchLines: lines and entries mixed, in order, with the right indexes; a short count is refused', () => {
  const rng = Rng.fromSeed('publish-entry', 'batchLines');
  const data = Buffer.alloc(64 * 1024);
  let end = 1;
  const want: Buffer[] = [];
  const first = 1_000;
  for (let k = 0; k < 50; k++) {
    if (rng.next() < 0.5) {
      const json = JSON.stringify(sampleRecord(k));
      end = writeLine(data, end, first + k, json) + 1;
      const l = Buffer.alloc(json.length * 3 + 32);
      want.push(l.subarray(0, writeLine(l, 0, first + k, json) + 1));
    } else {
      const f = toFields({ t: 1_732_363_200_000 + k, u: 2.5, s: `s${k}`, c: `dev-${k}`, id: 'anonymous', addr: '127.0.0.1:1', topic: `t/${k}`, q: k % 2, retain: k % 5 === 0, dup: false, messageId: k % 2 ? k : undefined, payload: Buffer.alloc(k * 7, k), rule: k % 3 ? undefined : 'r1', env: 'unchecked' });
      end = writeEntry(data, end, f);
      want.push(expectedLine(f, first + k));
    }
  }
  const { lines, end: le } = batchLines(data, end, 50, first, true);
  assert.equal(lines.subarray(1, le).toString('utf8'), Buffer.concat(want).toString('utf8'));
  assert.throws(() => batchLines(data, end, 49, first, true), /more records than 49/);
  assert.throws(() => batchLines(data, end, 51, first, true), /holds 50 records, not 51/);
});

/** Every file of a closed ledger but the lock and the checkpoint log (signed with each data dir's own key). */
function ledgerFiles(ledgerDir: string): Record<string, Buffer> {
  const out: Record<string, Buffer> = {};
  for (const sub of ['segments', 'tree']) {
    const d = join(ledgerDir, sub);
    for (const name of readdirSync(d).sort()) if (statSync(join(d, name)).isFile()) out[`${sub}/${name}`] = readFileSync(join(d, name));
  }
  return out;
}

/**
 * The same sequence of records into a ledger: publish records through appendPublish (deferred)
 * or through appendJson(publishJson(…)), mixed with generic records, in bursts that make batches.
 */
async function fill(dir: string, deferred: boolean, ioThread: boolean, maxBatchBytes?: number): Promise<Record<string, Buffer>> {
  const { ledger, key } = await openTestLedger(
    dir,
    { ioThread, checkpointEveryRecords: 900, checkpointEveryMs: 3_600_000, segmentMaxBytes: 96 * 1024, ...(maxBatchBytes ? { maxBatchBytes } : {}), now: () => 1_732_363_200_000 },
    'entry-node',
  );
  const rng = Rng.fromSeed('publish-entry', 'fill');
  const errors: unknown[] = [];
  for (let round = 0; round < 30; round++) {
    const ps: Array<Promise<unknown>> = [];
    for (let k = 0; k < 100; k++) {
      const n = round * 100 + k;
      if (rng.next() < 0.2) {
        ps.push(ledger.append(sampleRecord(n)));
        continue;
      }
      const f = toFields({
        t: 1_732_363_200_000 + n + rng.next(),
        u: rng.int(0, 5),
        s: `sess-${n % 13}`,
        c: n % 17 === 0 ? undefined : `device-${n % 31}`,
        id: `device:device-${n % 31}+ab12`,
        addr: `127.0.0.1:${40_000 + (n % 31)}`,
        topic: n % 23 === 0 ? 'tür/"quoted"/😀' : `devices/device-${n % 31}/telemetry`,
        q: n % 3,
        retain: n % 11 === 0,
        dup: n % 19 === 0,
        messageId: n % 3 === 0 ? undefined : n % 65536,
        payload: Buffer.alloc(rng.int(0, 2048), n & 0xff),
        rule: n % 7 === 0 ? 'devices-own-topics' : undefined,
        env: 'unchecked',
      });
      const loose = f.q === 0;
      if (deferred) {
        if (loose) ledger.appendPublishLoose(f, (e) => errors.push(e));
        else ps.push(ledger.appendPublish(f));
      } else {
        const json = expectedLine(f, 0).toString('utf8');
        // The body publishJson made: the line without `{"i":0,` and its newline, with its "{" back.
        const body = '{' + json.slice('{"i":0,'.length, -1);
        if (loose) ledger.appendJsonLoose(body, (e) => errors.push(e));
        else ps.push(ledger.appendJson(body));
      }
    }
    await Promise.all(ps);
  }
  await ledger.close();
  assert.deepEqual(errors, []);
  const v = await verifyLedger(join(dir, 'ledger'), { key });
  assert.equal(v.ok, true, JSON.stringify(v.failures.slice(0, 3)));
  return ledgerFiles(join(dir, 'ledger'));
}

test('appendPublish writes the ledger appendJson(publishJson(…)) writes: segments, idx and tiles, with and without the I/O thread', async (t) => {
  const want = await fill(tempDir(t), false, true);
  assert.ok(Object.keys(want).filter((n) => n.endsWith('.jsonl')).length > 3, 'several segments');
  assert.ok(Object.keys(want).some((n) => n.startsWith('tree/')), 'tile files');
  for (const ioThread of [true, false]) {
    const got = await fill(tempDir(t), true, ioThread);
    assert.deepEqual(Object.keys(got), Object.keys(want));
    for (const name of Object.keys(want)) assert.ok(got[name]!.equals(want[name]!), `ioThread ${ioThread}: ${name} differs`);
  }
});

/** The files with this ending, concatenated in name order (segment data or idx as one stream). */
function joined(files: Record<string, Buffer>, prefix: string, ext: string): Buffer {
  return Buffer.concat(
    Object.keys(files)
      .filter((n) => n.startsWith(prefix) && n.endsWith(ext))
      .sort()
      .map((n) => files[n]!),
  );
}

test('appendPublish with batches cut by maxBatchBytes: the same records, leaf hashes and tiles', async (t) => {
  // The batch holds an entry's payload (hashed when written), so small batches end at other
  // records than with JSON lines, and segments (rolled between batches) at other indexes: the
  // stream of lines, of leaf hashes and the tiles are the same.
  const want = await fill(tempDir(t), false, true, 16 * 1024);
  const got = await fill(tempDir(t), true, true, 16 * 1024);
  assert.ok(joined(got, 'segments/', '.jsonl').equals(joined(want, 'segments/', '.jsonl')));
  assert.ok(joined(got, 'segments/', '.idx').equals(joined(want, 'segments/', '.idx')));
  const tiles = Object.keys(want).filter((n) => n.startsWith('tree/'));
  assert.ok(tiles.length > 0);
  for (const name of tiles) assert.ok(got[name]?.equals(want[name]!), name);
});

test('appendPublish: a record whose bound exceeds maxRecordBytes is measured exactly (kept if it fits, refused if not)', async (t) => {
  const { ledger } = await openTestLedger(tempDir(t), { maxRecordBytes: 700 });
  const f = toFields({ t: 1, u: 0, s: 's', c: 'c', id: 'anonymous', addr: undefined, topic: 'x'.repeat(150), q: 1, retain: false, dup: false, messageId: 1, payload: Buffer.alloc(10_000), rule: undefined, env: 'unchecked' });
  assert.ok(entryLineBound(f) > 700, 'the bound alone would refuse it');
  const r = await ledger.appendPublish(f);
  assert.equal(typeof r.index, 'number');
  const big = { ...f, topicJson: jsonString('y'.repeat(700)) };
  await assert.rejects(ledger.appendPublish(big), (e: { code?: string }) => e.code === 'WITNESS_ERR_LEDGER_RECORD_TOO_LARGE');
  const errors: unknown[] = [];
  ledger.appendPublishLoose(big, (e) => errors.push(e));
  assert.equal((errors[0] as { code?: string } | undefined)?.code, 'WITNESS_ERR_LEDGER_RECORD_TOO_LARGE');
  await ledger.close();
  ledger.appendPublishLoose(f, (e) => errors.push(e));
  assert.equal((errors[1] as { code?: string } | undefined)?.code, 'WITNESS_ERR_LEDGER_CLOSED');
  await assert.rejects(ledger.appendPublish(f), (e: { code?: string }) => e.code === 'WITNESS_ERR_LEDGER_CLOSED');
});
