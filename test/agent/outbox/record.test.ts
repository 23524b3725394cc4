import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import fc from 'fast-check';
import {
  crc32,
  crc32Js,
  encodeAck,
  encodeDrop,
  encodeEntry,
  encodeHead,
  entryEnvelope,
  parseSegment,
  type EntryRecord,
  type HeadRecord,
  type LogRecord,
} from '../../../agent/outbox/record.js';

const hex = (b: Uint8Array): string => Buffer.from(b).toString('hex');

function entryFrame(e: EntryRecord): Buffer {
  return encodeEntry(e, Buffer.from(e.topic, 'utf8'));
}

const ENTRY: EntryRecord = { seq: 7, queuedAt: 1_700_000_000_123, qos: 1, retain: true, topic: 'plant/1/temp', envelope: new Uint8Array([0xd2, 0x84, 1, 2, 3]) };
const HEAD: HeadRecord = {
  nextSeq: 2 ** 53 - 1,
  prev: new Uint8Array(32).fill(0xab),
  lastAck: { seq: 5, at: 1_700_000_000_000 },
  events: [{ reason: 'overflow', fromSeq: 1, toSeq: 3, count: 2, at: 9 }, { reason: 'age', fromSeq: 4, toSeq: 4, count: 1, at: 10 }],
};

describe('CRC-32', () => {
  // The check value of CRC-32/ISO-HDLC ("CRC-32" of zlib, gzip, PNG): reveng.sourceforge.io/crc-catalogue.
  test('check value: "123456789" → 0xCBF43926, by both implementations', () => {
    const data = new TextEncoder().encode('123456789');
    assert.equal(crc32Js(data), 0xcbf43926);
    assert.equal(crc32(data), 0xcbf43926);
  });
  test('the table-driven fallback agrees with the one in use', () => {
    fc.assert(fc.property(fc.uint8Array({ maxLength: 300 }), (d) => crc32Js(d) === crc32(d)));
  });
});

describe('records', () => {
  // Golden bytes: pin the format of docs/FORMATS.md ("Agent outbox").
  test('ack frame bytes', () => {
    assert.equal(hex(encodeAck(5, 1_700_000_000_000)), '00000011' + hex(u32(crc32(Buffer.from('41' + '0000000000000005' + '0000018bcfe56800', 'hex')))) + '41' + '0000000000000005' + '0000018bcfe56800');
  });
  test('entry frame bytes', () => {
    const body = '45' + '0000000000000007' + '0000018bcfe5687b' + '01' + '01' + '000c' + hex(Buffer.from('plant/1/temp')) + 'd284010203';
    assert.equal(hex(entryFrame(ENTRY)), (body.length / 2).toString(16).padStart(8, '0') + hex(u32(crc32(Buffer.from(body, 'hex')))) + body);
    assert.equal(hex(entryEnvelope(entryFrame(ENTRY))), 'd284010203');
  });

  test('each record type round-trips through a segment', () => {
    const drop = { reason: 'age' as const, fromSeq: 0, toSeq: 10, count: 11, at: 12345 };
    const seg = Buffer.concat([encodeHead(HEAD), entryFrame(ENTRY), encodeAck(7, 99), encodeDrop(drop)]);
    const p = parseSegment(seg);
    assert.equal(p.validBytes, seg.length);
    assert.equal(p.problem, undefined);
    const recs = p.records.map((r) => r.record);
    const want: LogRecord[] = [{ type: 'head', ...HEAD }, { type: 'entry', ...ENTRY }, { type: 'ack', seq: 7, at: 99 }, { type: 'drop', ...drop }];
    assert.deepEqual(recs, want);
    // The entry carries its own frame, and its envelope is a view into it (not the segment).
    const e = p.records[1]!;
    assert.ok(e.frame);
    assert.equal(hex(e.frame), hex(entryFrame(ENTRY)));
    assert.equal((e.record as { envelope: Uint8Array }).envelope.buffer, e.frame.buffer);
  });

  test('property: entries round-trip', () => {
    fc.assert(
      fc.property(
        fc.record({
          seq: fc.maxSafeNat(),
          queuedAt: fc.maxSafeNat(),
          qos: fc.constantFrom(0 as const, 1 as const, 2 as const),
          retain: fc.boolean(),
          topic: fc.string({ maxLength: 40 }),
          envelope: fc.uint8Array({ minLength: 1, maxLength: 200 }),
        }),
        (e) => {
          const p = parseSegment(entryFrame(e));
          assert.equal(p.records.length, 1);
          assert.deepEqual(p.records[0]!.record, { type: 'entry', ...e });
        },
      ),
    );
  });
});

describe('damage', () => {
  const seg = Buffer.concat([encodeHead(HEAD), entryFrame(ENTRY), encodeAck(7, 99)]);
  const lastStart = seg.length - encodeAck(7, 99).length;

  test('every one-bit flip in the last frame stops the parse before it', () => {
    for (let i = lastStart; i < seg.length; i++) {
      for (let bit = 0; bit < 8; bit++) {
        const bad = Buffer.from(seg);
        bad[i]! ^= 1 << bit;
        const p = parseSegment(bad);
        assert.equal(p.validBytes, lastStart, `byte ${i} bit ${bit}`);
        assert.equal(p.records.length, 2);
        assert.ok(p.problem);
      }
    }
  });

  test('a one-bit flip anywhere is never read as the original records', () => {
    for (let i = 0; i < seg.length; i++) {
      const bad = Buffer.from(seg);
      bad[i]! ^= 0x10;
      assert.ok(parseSegment(bad).validBytes < seg.length, `byte ${i}`);
    }
  });

  test('every truncation of a frame is a torn tail, cut at the last whole frame', () => {
    for (let n = lastStart; n < seg.length; n++) {
      const p = parseSegment(seg.subarray(0, n));
      assert.equal(p.validBytes, lastStart);
    }
  });

  test('zero-filled blocks after the records are cut', () => {
    const p = parseSegment(Buffer.concat([seg, Buffer.alloc(4096)]));
    assert.equal(p.validBytes, seg.length);
    assert.match(p.problem ?? '', /claims 0 bytes/);
  });

  test('random garbage after the records is cut', () => {
    for (let k = 0; k < 50; k++) {
      const p = parseSegment(Buffer.concat([seg, randomBytes(1 + k * 7)]));
      assert.equal(p.validBytes, seg.length);
    }
  });

  test('a frame with a valid CRC but an unknown type or bad fields is not accepted', () => {
    const body = Buffer.from('5a00', 'hex'); // type 'Z'
    const f = Buffer.concat([u32(body.length), u32(crc32(body)), body]);
    assert.equal(parseSegment(Buffer.concat([seg, f])).validBytes, seg.length);
    const ackBody = Buffer.from('41' + '0020000000000000' + '0000000000000000', 'hex'); // seq 2^53: beyond safe
    const g = Buffer.concat([u32(ackBody.length), u32(crc32(ackBody)), ackBody]);
    assert.equal(parseSegment(Buffer.concat([seg, g])).validBytes, seg.length);
  });
});

function u32(v: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(v >>> 0);
  return b;
}
