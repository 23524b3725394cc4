/**
 * The broker's hottest record — a client's accepted publish at audit level `metadata` — written
 * straight into the ledger's batch as bytes: no JSON string, no template, no UTF-8 encoding per
 * record. The line is byte for byte `writeLine(index, publishJson(…))` (publish-json.ts):
 * test/shared/ledger/publish-line.test.ts checks it over random fields, and whole ledgers.
 *
 * What stays per record: digits by hand, a few constant byte runs, copies of three cached parts —
 * the time's (`tuPart`: one per millisecond of the broker's clock), the one shared by every
 * publish of one socket to one topic (`middle`, cached by the caller) and the flags' (`flagPart`,
 * one per QoS/retain/dup/packet-id combination) — and
 * the payload's SHA-256 (base64url, 43 bytes), which the I/O thread fills in when the caller
 * leaves it out (`h` undefined: the payload is queued in the batch's side buffer, io-worker.ts).
 *
 * Measured in isolation (2M lines of a QoS 1 publish, t changing every 64 records, best of 5,
 * 20:45 UTC): publishLineBytes + writePublishLine 630 ns per record with every number and constant
 * written piece by piece, 240 ns with the cached parts.
 * Measured (bench/record-path.ts, 2-core bench machine, node 20, 64 B payloads, ~280 B lines,
 * µs of CPU per record; the figures of the run are in docs/BENCHMARKS.md "Publish record path"):
 * the template way (publishJson + crypto.hash + utf8 write) costs the event loop ≈ 1.6 µs; an
 * earlier try that copied the raw fields for the I/O thread to encode cost the event loop 0.75
 * but the process 5.8 µs in all (the I/O thread's string building), against 4.2 for the template.
 */
/** A publish record's fields in the form the line writer takes them. */
import { digitCount, writeIndexHead } from './record.js';

export interface PublishLine {
  t: number;
  u: number;
  /** `,` + the socket part's JSON + `,"topic":` + the topic's JSON + `,"q":` (publishMiddle). */
  middle: Uint8Array;
  /** 0, 1 or 2. */
  q: number;
  retain: boolean;
  dup: boolean;
  messageId: number | null | undefined;
  payload: Uint8Array;
  /** `,"rule":` + the rule's JSON (publishRule), or undefined for none. */
  rule: Uint8Array | undefined;
  /** `,"env":"` + the verdict name + `"}` (publishEnv). */
  env: Uint8Array;
}

/** The part of the line one socket's publishes to one topic share. */
export function publishMiddle(socketPartJson: string, topicJson: string): Buffer {
  return Buffer.from(`,${socketPartJson},"topic":${topicJson},"q":`, 'utf8');
}

/** The rule's part of the line (ruleJson: the rule's JSON string literal). */
export function publishRule(ruleJson: string): Buffer {
  return Buffer.from(`,"rule":${ruleJson}`, 'utf8');
}

/** The verdict's part of the line, with the record's closing brace (env: a verdict name, [a-z-]). */
export function publishEnv(env: string): Buffer {
  return Buffer.from(`,"env":"${env}"}`, 'latin1');
}

const ascii = (s: string): Uint8Array => Uint8Array.from(s, (c) => c.charCodeAt(0));
/** `{"i":` (record.ts writeIndexHead writes it with the index). */
const HEAD_BYTES = 5;
const R_TRUE = ascii(',"r":true');
const R_FALSE = ascii(',"r":false');
const D_TRUE = ascii(',"d":true');
const M_KEY = ascii(',"m":');
const M_NULL = ascii(',"m":null');
const Z_KEY = ascii(',"z":');
const H_KEY = ascii(',"h":"');
const ACL = ascii('","acl":"allow"');
/** Length of the payload's SHA-256 in base64url. */
export const HASH_CHARS = 43;

/** Copies a short constant: a byte loop beats Buffer.copy / TypedArray.set's call for a few bytes. */
function put(buf: Uint8Array, p: number, bytes: Uint8Array): number {
  for (let k = 0; k < bytes.length; k++) buf[p + k] = bytes[k]!;
  return p + bytes.length;
}

/** Whether `n` is written by hand (non-negative safe integer) rather than through String(n). */
function plain(n: number): boolean {
  return Number.isSafeInteger(n) && n >= 0;
}

/** Bytes of a number as JSON.stringify writes it (non-finite → null). */
function numBytes(n: number): number {
  return plain(n) ? digitCount(n) : Number.isFinite(n) ? String(n).length : 4;
}

function putNum(buf: Buffer, p: number, n: number): number {
  if (plain(n)) {
    const d = digitCount(n);
    let q = n;
    for (let k = p + d - 1; k >= p; k--) {
      buf[k] = 0x30 + (q % 10);
      q = Math.floor(q / 10);
    }
    return p + d;
  }
  return p + buf.write(Number.isFinite(n) ? String(n) : 'null', p, 'latin1');
}

/**
 * `,"v":1,"e":"publish","t":T,"u":U` for the last (t, u) asked for: the broker's clock has
 * millisecond resolution, so under load dozens of records in a row share it.
 */
let tuT = Number.NaN;
let tuU = Number.NaN;
let tuBytes: Buffer = Buffer.alloc(0);
function tuPart(t: number, u: number): Buffer {
  if (t !== tuT || u !== tuU) {
    tuBytes = Buffer.from(`,"v":1,"e":"publish","t":${Number.isFinite(t) ? String(t) : 'null'},"u":${Number.isFinite(u) ? String(u) : 'null'}`, 'latin1');
    tuT = t;
    tuU = u;
  }
  return tuBytes;
}

/**
 * What follows the socket's middle part up to the packet id's digits or the size's: the QoS,
 * `,"r":…`, `,"d":true` when set, then `,"m":` (a packet id follows), `,"m":null,"z":` or
 * `,"z":`. One per combination, made at first use (QoS 0–2 only; others are written by hand).
 */
const flagParts: Array<Buffer | undefined> = new Array<Buffer | undefined>(36);
function flagPart(q: number, retain: boolean, dup: boolean, m: number | null | undefined): Buffer | undefined {
  if (q !== 0 && q !== 1 && q !== 2) return undefined;
  const mk = m === undefined ? 0 : m === null ? 1 : 2;
  const key = q * 12 + (retain ? 6 : 0) + (dup ? 3 : 0) + mk;
  let part = flagParts[key];
  if (part === undefined) {
    part = Buffer.from(`${q},"r":${retain ? 'true' : 'false'}${dup ? ',"d":true' : ''}${mk === 0 ? ',"z":' : mk === 1 ? ',"m":null,"z":' : ',"m":'}`, 'latin1');
    flagParts[key] = part;
  }
  return part;
}

/** Exact bytes of the line of record `index`, its newline included. */
export function publishLineBytes(index: number, f: PublishLine): number {
  let n = HEAD_BYTES + digitCount(index) + tuPart(f.t, f.u).length + f.middle.length;
  const m = f.messageId;
  const flags = flagPart(f.q, f.retain, f.dup, m);
  if (flags !== undefined) {
    n += flags.length;
    if (typeof m === 'number') n += numBytes(m) + Z_KEY.length;
  } else {
    n += numBytes(f.q) + (f.retain ? R_TRUE.length : R_FALSE.length);
    if (f.dup) n += D_TRUE.length;
    if (m !== undefined) n += m === null ? M_NULL.length : M_KEY.length + numBytes(m);
    n += Z_KEY.length;
  }
  n += numBytes(f.payload.length) + H_KEY.length + HASH_CHARS + ACL.length;
  if (f.rule !== undefined) n += f.rule.length;
  return n + f.env.length + 1;
}

/** Offset of the hash in the line the last writePublishLine wrote (read right after the call). */
export let lastHashAt = 0;

/**
 * Writes record `index`'s line into `buf` at `at` (room: publishLineBytes) and returns the offset
 * after its newline. `h` is the payload's SHA-256 in base64url; undefined leaves its 43 bytes for
 * the caller to fill (at lastHashAt).
 */
export function writePublishLine(buf: Buffer, at: number, index: number, f: PublishLine, h: string | undefined): number {
  let p = writeIndexHead(buf, at, index);
  const tu = tuPart(f.t, f.u);
  buf.set(tu, p);
  p += tu.length;
  buf.set(f.middle, p);
  p += f.middle.length;
  const m = f.messageId;
  const flags = flagPart(f.q, f.retain, f.dup, m);
  if (flags !== undefined) {
    buf.set(flags, p);
    p += flags.length;
    if (typeof m === 'number') p = put(buf, putNum(buf, p, m), Z_KEY);
  } else {
    p = putNum(buf, p, f.q);
    p = put(buf, p, f.retain ? R_TRUE : R_FALSE);
    if (f.dup) p = put(buf, p, D_TRUE);
    if (m !== undefined) {
      if (m === null) p = put(buf, p, M_NULL);
      else p = putNum(buf, put(buf, p, M_KEY), m);
    }
    p = put(buf, p, Z_KEY);
  }
  p = putNum(buf, p, f.payload.length);
  p = put(buf, p, H_KEY);
  lastHashAt = p;
  if (h !== undefined) buf.write(h, p, 'latin1');
  p = put(buf, p + HASH_CHARS, ACL);
  if (f.rule !== undefined) {
    buf.set(f.rule, p);
    p += f.rule.length;
  }
  p = put(buf, p, f.env);
  buf[p] = 0x0a;
  return p + 1;
}
