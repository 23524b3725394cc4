/**
 * The records of the outbox log and their framing (docs/FORMATS.md, "Agent outbox").
 *
 *   frame = u32be LEN | u32be CRC | BODY          LEN = BODY length (≥ 1), CRC = CRC-32 of BODY
 *   BODY  = type (1 byte) | fields, big-endian
 *
 *   'H' 0x48 head    version u8 (1) | nextSeq u64 | prev [32] | hasAck u8 | ackSeq u64 | ackAt u64
 *                    | nEvents u16 | nEvents × event
 *   'E' 0x45 entry   seq u64 | queuedAt u64 | qos u8 | flags u8 (bit 0: retain) | topicLen u16
 *                    | topic UTF-8 | envelope (the rest)
 *   'A' 0x41 ack     seq u64 | at u64
 *   'D' 0x44 drop    event
 *   event          = reason u8 (1 overflow, 2 age) | fromSeq u64 | toSeq u64 | count u64 | at u64
 *
 * u64 fields hold integers 0..2^53-1 (JavaScript safe integers); a larger value makes the frame
 * invalid. CRC-32 is the IEEE 802.3 polynomial as in zlib/gzip ("123456789" → 0xCBF43926). It
 * guards against torn and zero-filled tails after a crash, not against tampering: the envelopes
 * inside carry their own signatures.
 */
import * as zlib from 'node:zlib';

export const FRAME_HEADER = 8;
export const HEAD_VERSION = 1;
export const PREV_SIZE = 32;
export const MAX_TOPIC_BYTES = 0xffff;

export const TYPE_HEAD = 0x48;
export const TYPE_ENTRY = 0x45;
export const TYPE_ACK = 0x41;
export const TYPE_DROP = 0x44;

export type DropReason = 'overflow' | 'age';

export interface DropRecord {
  reason: DropReason;
  fromSeq: number;
  toSeq: number;
  count: number;
  at: number;
}

export interface HeadRecord {
  nextSeq: number;
  prev: Uint8Array;
  lastAck: { seq: number; at: number } | undefined;
  events: DropRecord[];
}

export interface EntryRecord {
  seq: number;
  queuedAt: number;
  qos: 0 | 1 | 2;
  retain: boolean;
  topic: string;
  envelope: Uint8Array;
}

export type LogRecord =
  | ({ type: 'head' } & HeadRecord)
  | ({ type: 'entry' } & EntryRecord)
  | { type: 'ack'; seq: number; at: number }
  | ({ type: 'drop' } & DropRecord);

// ── CRC-32 ───────────────────────────────────────────────────────────────────────────────────

let table: Uint32Array | undefined;

/** Table-driven CRC-32 (IEEE), for Node releases before 20.15 that lack zlib.crc32. */
export function crc32Js(data: Uint8Array): number {
  if (table === undefined) {
    table = new Uint32Array(256);
    for (let n = 0; n < 256; n++) {
      let c = n;
      for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
      table[n] = c >>> 0;
    }
  }
  let c = 0xffffffff;
  for (let i = 0; i < data.length; i++) c = table[(c ^ data[i]!) & 0xff]! ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

const native = (zlib as { crc32?: (data: Uint8Array) => number }).crc32;
/** CRC-32 (IEEE): zlib's native one where Node has it (20.15+), else the table-driven one. */
export const crc32: (data: Uint8Array) => number = typeof native === 'function' ? (d) => native(d) >>> 0 : crc32Js;

// ── encoding ─────────────────────────────────────────────────────────────────────────────────

const TWO32 = 2 ** 32;

function putU64(b: Buffer, off: number, v: number): number {
  b.writeUInt32BE(Math.floor(v / TWO32), off);
  b.writeUInt32BE(v >>> 0, off + 4);
  return off + 8;
}

/** Wraps a body (type byte first) into a frame: LEN, CRC, BODY. */
function frame(body: Buffer): Buffer {
  const f = Buffer.allocUnsafe(FRAME_HEADER + body.length);
  f.writeUInt32BE(body.length, 0);
  f.writeUInt32BE(crc32(body), 4);
  body.copy(f, FRAME_HEADER);
  return f;
}

const REASONS: readonly DropReason[] = ['overflow', 'age'];
const EVENT_SIZE = 1 + 4 * 8;

function putEvent(b: Buffer, off: number, e: DropRecord): number {
  b[off] = REASONS.indexOf(e.reason) + 1;
  off = putU64(b, off + 1, e.fromSeq);
  off = putU64(b, off, e.toSeq);
  off = putU64(b, off, e.count);
  return putU64(b, off, e.at);
}

export function encodeHead(h: HeadRecord): Buffer {
  const b = Buffer.alloc(1 + 1 + 8 + PREV_SIZE + 1 + 16 + 2 + h.events.length * EVENT_SIZE);
  b[0] = TYPE_HEAD;
  b[1] = HEAD_VERSION;
  let off = putU64(b, 2, h.nextSeq);
  b.set(h.prev, off);
  off += PREV_SIZE;
  b[off++] = h.lastAck === undefined ? 0 : 1;
  off = putU64(b, off, h.lastAck?.seq ?? 0);
  off = putU64(b, off, h.lastAck?.at ?? 0);
  b.writeUInt16BE(h.events.length, off);
  off += 2;
  for (const e of h.events) off = putEvent(b, off, e);
  return frame(b);
}

/** Encodes an entry frame. `topicBytes` is the UTF-8 of `e.topic` (at most 65,535 bytes). */
const ENTRY_FIXED = 1 + 8 + 8 + 1 + 1 + 2;

export function encodeEntry(e: EntryRecord, topicBytes: Buffer): Buffer {
  const bodyLen = ENTRY_FIXED + topicBytes.length + e.envelope.length;
  // Built in place (no intermediate body copy): this runs once per message. Not pooled: the
  // outbox keeps the frame (its envelope is a view into it) until the entry is acknowledged.
  const f = Buffer.allocUnsafeSlow(FRAME_HEADER + bodyLen);
  const b = f.subarray(FRAME_HEADER);
  b[0] = TYPE_ENTRY;
  let off = putU64(b, 1, e.seq);
  off = putU64(b, off, e.queuedAt);
  b[off++] = e.qos;
  b[off++] = e.retain ? 1 : 0;
  b.writeUInt16BE(topicBytes.length, off);
  off += 2;
  topicBytes.copy(b, off);
  off += topicBytes.length;
  b.set(e.envelope, off);
  f.writeUInt32BE(bodyLen, 0);
  f.writeUInt32BE(crc32(b), 4);
  return f;
}

/** The envelope inside an entry frame made by encodeEntry: a view, not a copy. */
export function entryEnvelope(frame: Buffer): Uint8Array {
  const start = FRAME_HEADER + ENTRY_FIXED + frame.readUInt16BE(FRAME_HEADER + ENTRY_FIXED - 2);
  return new Uint8Array(frame.buffer, frame.byteOffset + start, frame.length - start);
}

export function encodeAck(seq: number, at: number): Buffer {
  const b = Buffer.allocUnsafe(17);
  b[0] = TYPE_ACK;
  putU64(b, 1, seq);
  putU64(b, 9, at);
  return frame(b);
}

export function encodeDrop(d: DropRecord): Buffer {
  const b = Buffer.allocUnsafe(1 + EVENT_SIZE);
  b[0] = TYPE_DROP;
  putEvent(b, 1, d);
  return frame(b);
}

// ── decoding ─────────────────────────────────────────────────────────────────────────────────

/** A body that passed its CRC but does not parse (a bug or a deliberate edit, not a torn write). */
class BadBody extends Error {}

class BodyReader {
  pos = 1;
  constructor(readonly b: Buffer) {}
  need(n: number): void {
    if (this.pos + n > this.b.length) throw new BadBody(`record ends early (needs ${n} more bytes at ${this.pos})`);
  }
  u8(): number {
    this.need(1);
    return this.b[this.pos++]!;
  }
  u16(): number {
    this.need(2);
    const v = this.b.readUInt16BE(this.pos);
    this.pos += 2;
    return v;
  }
  u64(): number {
    this.need(8);
    const hi = this.b.readUInt32BE(this.pos);
    const lo = this.b.readUInt32BE(this.pos + 4);
    this.pos += 8;
    if (hi >= 2 ** 21) throw new BadBody('u64 field beyond 2^53-1');
    return hi * TWO32 + lo;
  }
  bytes(n: number): Buffer {
    this.need(n);
    const v = this.b.subarray(this.pos, this.pos + n);
    this.pos += n;
    return v;
  }
  end(): void {
    if (this.pos !== this.b.length) throw new BadBody(`${this.b.length - this.pos} unexpected trailing bytes`);
  }
}

function readEvent(r: BodyReader): DropRecord {
  const reason = REASONS[r.u8() - 1];
  if (reason === undefined) throw new BadBody('unknown drop reason');
  return { reason, fromSeq: r.u64(), toSeq: r.u64(), count: r.u64(), at: r.u64() };
}

function decodeBody(body: Buffer): LogRecord {
  const r = new BodyReader(body);
  switch (body[0]) {
    case TYPE_ENTRY: {
      const seq = r.u64();
      const queuedAt = r.u64();
      const qos = r.u8();
      const flags = r.u8();
      if (qos > 2 || (flags & ~1) !== 0) throw new BadBody('bad qos or flags');
      const topic = r.bytes(r.u16()).toString('utf8');
      // A view: parseSegment hands entry bodies in a copy of their own frame.
      const envelope = new Uint8Array(body.buffer, body.byteOffset + r.pos, body.length - r.pos);
      return { type: 'entry', seq, queuedAt, qos: qos as 0 | 1 | 2, retain: flags === 1, topic, envelope };
    }
    case TYPE_ACK: {
      const rec = { type: 'ack' as const, seq: r.u64(), at: r.u64() };
      r.end();
      return rec;
    }
    case TYPE_DROP: {
      const rec = { type: 'drop' as const, ...readEvent(r) };
      r.end();
      return rec;
    }
    case TYPE_HEAD: {
      if (r.u8() !== HEAD_VERSION) throw new BadBody('unknown head version');
      const nextSeq = r.u64();
      const prev = new Uint8Array(r.bytes(PREV_SIZE));
      const hasAck = r.u8();
      const ackSeq = r.u64();
      const ackAt = r.u64();
      if (hasAck > 1) throw new BadBody('bad ack flag');
      const n = r.u16();
      const events: DropRecord[] = [];
      for (let k = 0; k < n; k++) events.push(readEvent(r));
      r.end();
      return { type: 'head', nextSeq, prev, lastAck: hasAck === 1 ? { seq: ackSeq, at: ackAt } : undefined, events };
    }
    default:
      throw new BadBody(`unknown record type 0x${(body[0] ?? 0).toString(16)}`);
  }
}

export interface ParsedSegment {
  /** Entry records come with `frame`: a copy of their frame that their envelope is a view into. */
  records: Array<{ offset: number; record: LogRecord; frame?: Buffer }>;
  /** Bytes of intact records from the start; the rest (if any) is damaged or torn. */
  validBytes: number;
  /** Why parsing stopped before the end, if it did. */
  problem?: string;
}

/**
 * Reads frames from the start of a segment until the end or the first damaged one: short header,
 * LEN of 0 or past the end, CRC mismatch (torn or zero-filled tail), or a body that does not parse.
 */
export function parseSegment(data: Uint8Array): ParsedSegment {
  const buf = Buffer.from(data.buffer, data.byteOffset, data.byteLength);
  const records: ParsedSegment['records'] = [];
  let off = 0;
  while (off < buf.length) {
    if (buf.length - off < FRAME_HEADER) return { records, validBytes: off, problem: `incomplete frame header at byte ${off}` };
    const len = buf.readUInt32BE(off);
    const crc = buf.readUInt32BE(off + 4);
    if (len === 0 || len > buf.length - off - FRAME_HEADER) return { records, validBytes: off, problem: `frame at byte ${off} claims ${len} bytes, ${buf.length - off - FRAME_HEADER} remain` };
    let body = buf.subarray(off + FRAME_HEADER, off + FRAME_HEADER + len);
    if (crc32(body) !== crc) return { records, validBytes: off, problem: `CRC mismatch in the frame at byte ${off}` };
    let frame: Buffer | undefined;
    if (body[0] === TYPE_ENTRY) {
      // Entries stay in memory until acknowledged: give each its own buffer (not a slice of the
      // segment, which would keep every acknowledged byte alive; not pooled, for the same reason).
      frame = Buffer.allocUnsafeSlow(FRAME_HEADER + len);
      buf.copy(frame, 0, off, off + FRAME_HEADER + len);
      body = frame.subarray(FRAME_HEADER);
    }
    let record: LogRecord;
    try {
      record = decodeBody(body);
    } catch (e) {
      if (!(e instanceof BadBody)) throw e;
      return { records, validBytes: off, problem: `frame at byte ${off}: ${e.message}` };
    }
    records.push(frame === undefined ? { offset: off, record } : { offset: off, record, frame });
    off += FRAME_HEADER + len;
  }
  return { records, validBytes: off };
}
