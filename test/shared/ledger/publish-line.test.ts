/**
 * The publish record written as bytes (shared/ledger/publish-line.ts, Ledger.appendPublish): the
 * line is byte for byte the line appendJson(publishJson(…)) writes — for any strings and numbers,
 * with the payload hash given or left to the I/O thread — and so are whole ledgers (segments,
 * idx, tiles), with and without the I/O thread, mixed with other records, across batches and
 * segments.
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
import { HASH_CHARS, lastHashAt, publishEnv, publishLineBytes, publishMiddle, publishRule, writePublishLine, type PublishLine } from '../../../shared/ledger/publish-line.js';
import { fillHashes } from '../../../shared/ledger/io-worker.js';
import { writeLine } from '../../../shared/ledger/record.js';
import { verifyLedger } from '../../../shared/ledger/verifier.js';

/** The JSON body publishJson makes of a raw publish (what appendJson was given). */
function expectedJson(a: RawPublish): string {
  return publishJson(
    a.t,
    a.u,
    socketPartJson(jsonString('node-1'), a.s, a.c, a.id, a.addr),
    jsonString(a.topic),
    a.q,
    a.retain,
    a.dup,
    a.messageId,
    a.payload.length,
    hash('sha256', a.payload, 'base64url'),
    a.rule,
    a.env,
  );
}

/** The line appendJson(publishJson(…)) writes for this publish as record `index`. */
function expectedLine(a: RawPublish, index: number): Buffer {
  const json = expectedJson(a);
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
  // 3 is not a QoS: the line writer's cached parts cover 0–2 and write anything else by hand.
  q: fc.constantFrom(0, 1, 2, 3),
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

function toLine(a: RawPublish): PublishLine {
  return {
    t: a.t,
    u: a.u,
    middle: publishMiddle(socketPartJson(jsonString('node-1'), a.s, a.c, a.id, a.addr), jsonString(a.topic)),
    q: a.q,
    retain: a.retain,
    dup: a.dup,
    messageId: a.messageId,
    payload: a.payload,
    rule: a.rule === undefined ? undefined : publishRule(jsonString(a.rule)),
    env: publishEnv(a.env),
  };
}

test('writePublishLine writes the line writeLine(publishJson(…)) writes; publishLineBytes is its length', () => {
  fc.assert(
    fc.property(fieldsArb, fc.boolean(), (a, withHash) => {
      const f = toLine(a);
      const want = expectedLine(a, a.index);
      const bytes = publishLineBytes(a.index, f);
      assert.equal(bytes, want.length);
      const buf = Buffer.alloc(bytes + 10, 0xee);
      const h = hash('sha256', a.payload, 'base64url');
      const end = writePublishLine(buf, 5, a.index, f, withHash ? h : undefined);
      assert.equal(end, 5 + bytes);
      assert.equal(buf[end], 0xee, 'nothing written past the line');
      if (!withHash) {
        // The hole is where the hash goes; the I/O thread's fillHashes puts it there.
        const side = Buffer.alloc(8 + a.payload.length);
        side.writeUInt32LE(lastHashAt, 0);
        side.writeUInt32LE(a.payload.length, 4);
        side.set(a.payload, 8);
        fillHashes(buf, side, side.length);
      }
      assert.equal(buf.subarray(5, end).toString('hex'), want.toString('hex'));
    }),
    { numRuns: 400 },
  );
});

test('fillHashes: several payloads into their holes; an entry overrunning its buffers is refused', () => {
  const rng = Rng.fromSeed('publish-line', 'fillHashes');
  const payloads = Array.from({ length: 20 }, (_, k) => Buffer.alloc(rng.int(0, 3000), k));
  const data = Buffer.alloc(20 * HASH_CHARS + 1, 0x2e);
  const side = Buffer.concat(
    payloads.map((p, k) => {
      const head = Buffer.alloc(8);
      head.writeUInt32LE(1 + k * HASH_CHARS, 0);
      head.writeUInt32LE(p.length, 4);
      return Buffer.concat([head, p]);
    }),
  );
  fillHashes(data, side, side.length);
  assert.equal(data.subarray(1).toString('latin1'), payloads.map((p) => hash('sha256', p, 'base64url')).join(''));
  assert.throws(() => fillHashes(data, side, side.length - 1), /overruns/);
  const bad = Buffer.from(side.subarray(0, 8 + payloads[0]!.length));
  bad.writeUInt32LE(data.length - 10, 0);
  assert.throws(() => fillHashes(data, bad, bad.length), /overruns/);
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
  const rng = Rng.fromSeed('publish-line', 'fill');
  const errors: unknown[] = [];
  for (let round = 0; round < 30; round++) {
    const ps: Array<Promise<unknown>> = [];
    for (let k = 0; k < 100; k++) {
      const n = round * 100 + k;
      if (rng.next() < 0.2) {
        ps.push(ledger.append(sampleRecord(n)));
        continue;
      }
      const a: RawPublish = {
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
      };
      const loose = a.q === 0;
      if (deferred) {
        // Every third with the hash from the caller, the others hashed by the I/O thread.
        const h = n % 3 === 1 ? hash('sha256', a.payload, 'base64url') : undefined;
        if (loose) ledger.appendPublishLoose(toLine(a), (e) => errors.push(e), h);
        else ps.push(ledger.appendPublish(toLine(a), h));
      } else {
        if (loose) ledger.appendJsonLoose(expectedJson(a), (e) => errors.push(e));
        else ps.push(ledger.appendJson(expectedJson(a)));
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
  const want = await fill(tempDir(t), false, true, 16 * 1024);
  const got = await fill(tempDir(t), true, true, 16 * 1024);
  assert.ok(joined(got, 'segments/', '.jsonl').equals(joined(want, 'segments/', '.jsonl')));
  assert.ok(joined(got, 'segments/', '.idx').equals(joined(want, 'segments/', '.idx')));
  const tiles = Object.keys(want).filter((n) => n.startsWith('tree/'));
  assert.ok(tiles.length > 0);
  for (const name of tiles) assert.ok(got[name]?.equals(want[name]!), name);
});

test('appendPublish: a record over maxRecordBytes is refused with its exact size; closed: refused', async (t) => {
  const { ledger } = await openTestLedger(tempDir(t), { maxRecordBytes: 700 });
  const raw: RawPublish = { t: 1, u: 0, s: 's', c: 'c', id: 'anonymous', addr: undefined, topic: 'x'.repeat(150), q: 1, retain: false, dup: false, messageId: 1, payload: Buffer.alloc(10_000), rule: undefined, env: 'unchecked' };
  const r = await ledger.appendPublish(toLine(raw));
  assert.equal(typeof r.index, 'number', 'a 10 kB payload is only hashed: its line is small');
  const big = toLine({ ...raw, topic: 'y'.repeat(700) });
  const size = publishLineBytes(r.index + 1, big) - 1;
  await assert.rejects(ledger.appendPublish(big), (e: { code?: string; details?: { bytes?: number } }) => e.code === 'WITNESS_ERR_LEDGER_RECORD_TOO_LARGE' && e.details?.bytes === size);
  const errors: unknown[] = [];
  ledger.appendPublishLoose(big, (e) => errors.push(e));
  assert.equal((errors[0] as { code?: string } | undefined)?.code, 'WITNESS_ERR_LEDGER_RECORD_TOO_LARGE');
  // A refused record takes no index: the next one gets the one after the last stored.
  assert.equal((await ledger.appendPublish(toLine(raw))).index, r.index + 1);
  await ledger.close();
  ledger.appendPublishLoose(toLine(raw), (e) => errors.push(e));
  assert.equal((errors[1] as { code?: string } | undefined)?.code, 'WITNESS_ERR_LEDGER_CLOSED');
  await assert.rejects(ledger.appendPublish(toLine(raw)), (e: { code?: string }) => e.code === 'WITNESS_ERR_LEDGER_CLOSED');
});

test('appendPublishTo tells its DurableWaiter the index once durable, in append order; refused: failed()', async (t) => {
  const { ledger } = await openTestLedger(tempDir(t));
  const raw: RawPublish = { t: 5, u: 1, s: 's', c: 'c', id: 'anonymous', addr: undefined, topic: 'a/b', q: 1, retain: false, dup: false, messageId: 7, payload: Buffer.from('x'), rule: undefined, env: 'unchecked' };
  const told: Array<[string, number | string]> = [];
  const start = ledger.nextIndex;
  const all = Array.from(
    { length: 5 },
    (_, k) =>
      new Promise<void>((resolve) => {
        ledger.appendPublishTo(toLine(raw), {
          durable: (index) => {
            told.push([`w${k}`, index]);
            // Durable means on disk: the ledger's durable size covers the record already.
            assert.ok(ledger.durableSize > index);
            resolve();
          },
          failed: (e) => {
            told.push([`w${k}`, String(e)]);
            resolve();
          },
        });
      }),
  );
  await Promise.all(all);
  assert.deepEqual(told, [0, 1, 2, 3, 4].map((k) => [`w${k}`, start + k]));
  await ledger.close();
  const codes: string[] = [];
  ledger.appendPublishTo(toLine(raw), { durable: () => codes.push('durable'), failed: (e) => codes.push((e as { code: string }).code) });
  assert.deepEqual(codes, ['WITNESS_ERR_LEDGER_CLOSED']);
});

test('appendPublish: a payload over 64 KiB is hashed on the caller\'s thread, a small one on the I/O thread: both lines right', async (t) => {
  const dir = tempDir(t);
  const { ledger } = await openTestLedger(dir, { checkpointEveryMs: 3_600_000 });
  const big: RawPublish = { t: 9, u: 1, s: 's', c: 'c', id: 'anonymous', addr: undefined, topic: 'big', q: 1, retain: false, dup: false, messageId: 1, payload: Buffer.alloc(100 * 1024, 7), rule: undefined, env: 'unchecked' };
  const small: RawPublish = { ...big, topic: 'small', messageId: 2, payload: Buffer.alloc(1024, 9) };
  const [a, b] = await Promise.all([ledger.appendPublish(toLine(big)), ledger.appendPublish(toLine(small))]);
  await ledger.close();
  const lines = readdirSync(join(dir, 'ledger', 'segments'))
    .filter((n) => n.endsWith('.jsonl'))
    .sort()
    .flatMap((n) => readFileSync(join(dir, 'ledger', 'segments', n), 'utf8').split('\n'));
  assert.equal(lines.find((l) => l.startsWith(`{"i":${a.index},`)) + '\n', expectedLine(big, a.index).toString('utf8'));
  assert.equal(lines.find((l) => l.startsWith(`{"i":${b.index},`)) + '\n', expectedLine(small, b.index).toString('utf8'));
});
