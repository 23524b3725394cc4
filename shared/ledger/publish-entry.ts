/**
 * The deferred publish record (issue 7): the broker's hottest record — a client's accepted
 * publish at audit level `metadata` — handed to the ledger as raw fields instead of a JSON line.
 * The caller's thread (the broker's event loop) only copies the fields and the payload into the
 * batch; the ledger's I/O thread (io-worker.ts) takes the payload's SHA-256 and writes the line.
 * The line is byte for byte what publishJson (publish-json.ts) gives for the same fields:
 * test/shared/ledger/publish-entry.test.ts checks it over random fields, and the io-thread test
 * checks whole ledgers.
 *
 * Why: with the whole record pipeline on the event loop, Witness at level metadata spent ≈ 6 µs
 * more CPU per QoS 0 message than plain aedes (docs/BENCHMARKS.md, "The floor": the hooks alone
 * cost nothing measurable). Of that, the payload SHA-256 (≈ 0.8 µs), the JSON template and its
 * UTF-8 write (≈ 0.5–1.5 µs with the strings it leaves to the GC) and the Merkle node hash
 * (≈ 0.9 µs, moved with this change, io-worker.ts) are work this entry moves to the I/O thread.
 *
 * Entry layout in the batch buffer (little-endian; a line starts with "{", an entry with 0x01):
 *
 *   off  size  field
 *    0    1    0x01 (ENTRY_TAG)
 *    1    4    u32 entry length, bytes, from offset 0 to the end of the payload
 *    5    8    f64 t   broker time, ms since the epoch
 *   13    8    f64 u   its uncertainty, ms
 *   21    1    u8  q   QoS
 *   22    1    u8  flags: 1 retain, 2 dup, 4 has "m", 8 "m" is null, 16 has "rule"
 *   23    2    u16 m   packet id (when flag 4 and not 8)
 *   25    1    u8  E   length of the verdict name
 *   26    4    u32 P   length of the socket part (UTF-8 JSON, `"n":…,"actor":"client"`)
 *   30    4    u32 T   length of the topic's JSON string literal (UTF-8)
 *   34    4    u32 R   length of the rule's JSON string literal (UTF-8), 0 without a rule
 *   38    P    socket part; then T topic; R rule; E verdict name (ASCII); z payload bytes
 *
 * The payload's length z is what is left of the entry. The entry never leaves the batch: only
 * the line is written to the segment.
 */
import { hash } from 'node:crypto';

export const ENTRY_TAG = 0x01;
export const ENTRY_HEADER = 38;
/**
 * A bound on the bytes of the line outside the socket part, topic, rule and verdict: the keys,
 * `{"i":` and up to 16 digits, two numbers of ≤ 24 characters, the packet id, z, the 43-character
 * hash and the newline add up to 242; rounded up.
 */
export const LINE_OVERHEAD_BOUND = 320;

const F_RETAIN = 1;
const F_DUP = 2;
const F_HAS_M = 4;
const F_M_NULL = 8;
const F_RULE = 16;

/** The fields of a publish record, as publishJson takes them, with the payload instead of z and h. */
export interface PublishFields {
  t: number;
  u: number;
  /** The socket part's JSON (socketPartJson), UTF-8. */
  socketPart: Uint8Array;
  /** The topic's JSON string literal (jsonString). */
  topicJson: string;
  q: number;
  retain: boolean;
  dup: boolean;
  messageId: number | null | undefined;
  payload: Uint8Array;
  /** The rule's JSON string literal (jsonString), or undefined for none. */
  ruleJson: string | undefined;
  /** A verdict name: [a-z-], never needs escaping. */
  env: string;
}

/** Bytes an entry needs at most (the strings counted at 3 bytes per UTF-16 unit). */
export function entryBound(f: PublishFields): number {
  return ENTRY_HEADER + f.socketPart.length + 3 * f.topicJson.length + (f.ruleJson === undefined ? 0 : 3 * f.ruleJson.length) + f.env.length + f.payload.length;
}

/** Bytes its line can take at most (without the payload, which is only hashed). */
export function entryLineBound(f: PublishFields): number {
  return LINE_OVERHEAD_BOUND + f.socketPart.length + 3 * f.topicJson.length + (f.ruleJson === undefined ? 0 : 3 * f.ruleJson.length) + f.env.length;
}

/**
 * Writes the entry into `buf` at `at` (room: entryBound(f) bytes). Returns its end.
 * The packet id must be undefined, null or an integer in [0, 65535] (MQTT's range).
 */
export function writeEntry(buf: Buffer, at: number, f: PublishFields): number {
  let p = at + ENTRY_HEADER;
  const P = f.socketPart.length;
  buf.set(f.socketPart, p);
  p += P;
  const T = buf.write(f.topicJson, p, 'utf8');
  p += T;
  let R = 0;
  let flags = 0;
  if (f.ruleJson !== undefined) {
    R = buf.write(f.ruleJson, p, 'utf8');
    p += R;
    flags |= F_RULE;
  }
  const E = buf.write(f.env, p, 'latin1');
  p += E;
  buf.set(f.payload, p);
  p += f.payload.length;
  if (f.retain) flags |= F_RETAIN;
  if (f.dup) flags |= F_DUP;
  const m = f.messageId;
  if (m !== undefined) flags |= m === null ? F_HAS_M | F_M_NULL : F_HAS_M;
  buf[at] = ENTRY_TAG;
  buf.writeUInt32LE(p - at, at + 1);
  buf.writeDoubleLE(f.t, at + 5);
  buf.writeDoubleLE(f.u, at + 13);
  buf[at + 21] = f.q;
  buf[at + 22] = flags;
  buf.writeUInt16LE(typeof m === 'number' ? m : 0, at + 23);
  buf[at + 25] = E;
  buf.writeUInt32LE(P, at + 26);
  buf.writeUInt32LE(T, at + 30);
  buf.writeUInt32LE(R, at + 34);
  return p;
}

/** The fields back (for the rare caller that needs the JSON on the event loop: a too-large record). */
export function readEntry(buf: Buffer, at: number): PublishFields {
  const len = buf.readUInt32LE(at + 1);
  const flags = buf[at + 22]!;
  const E = buf[at + 25]!;
  const P = buf.readUInt32LE(at + 26);
  const T = buf.readUInt32LE(at + 30);
  const R = buf.readUInt32LE(at + 34);
  let p = at + ENTRY_HEADER;
  const socketPart = buf.subarray(p, p + P);
  p += P;
  const topicJson = buf.toString('utf8', p, p + T);
  p += T;
  const ruleJson = flags & F_RULE ? buf.toString('utf8', p, p + R) : undefined;
  p += R;
  const env = buf.toString('latin1', p, p + E);
  p += E;
  return {
    t: buf.readDoubleLE(at + 5),
    u: buf.readDoubleLE(at + 13),
    socketPart,
    topicJson,
    q: buf[at + 21]!,
    retain: (flags & F_RETAIN) !== 0,
    dup: (flags & F_DUP) !== 0,
    messageId: flags & F_HAS_M ? (flags & F_M_NULL ? null : buf.readUInt16LE(at + 23)) : undefined,
    payload: buf.subarray(p, at + len),
    ruleJson,
    env,
  };
}

/** The JSON of a number, as JSON.stringify writes it (non-finite → null). */
function num(n: number): string {
  return Number.isFinite(n) ? String(n) : 'null';
}

/**
 * Writes the line of the entry at `src[at]` as record `index` into `out` at `o` — the bytes
 * writeLine(out, o, index, publishJson(…)) writes — and returns the offset after its newline.
 * Room needed: entryLineBound of the entry (≤ its length + LINE_OVERHEAD_BOUND).
 */
export function expandEntry(src: Buffer, at: number, index: number, out: Buffer, o: number): number {
  const len = src.readUInt32LE(at + 1);
  const flags = src[at + 22]!;
  const E = src[at + 25]!;
  const P = src.readUInt32LE(at + 26);
  const T = src.readUInt32LE(at + 30);
  const R = src.readUInt32LE(at + 34);
  const sp = at + ENTRY_HEADER;
  const tp = sp + P;
  const rp = tp + T;
  const ep = rp + R;
  const pp = ep + E;
  const end = at + len;
  const t = src.readDoubleLE(at + 5);
  const u = src.readDoubleLE(at + 13);
  o += out.write(`{"i":${index},"v":1,"e":"publish","t":${num(t)},"u":${num(u)},`, o, 'latin1');
  o += src.copy(out, o, sp, tp);
  o += out.write(',"topic":', o, 'latin1');
  o += src.copy(out, o, tp, rp);
  let tail = `,"q":${src[at + 21]!},"r":${flags & F_RETAIN ? 'true' : 'false'}`;
  if (flags & F_DUP) tail += ',"d":true';
  if (flags & F_HAS_M) tail += flags & F_M_NULL ? ',"m":null' : `,"m":${src.readUInt16LE(at + 23)}`;
  tail += `,"z":${end - pp},"h":"${hash('sha256', src.subarray(pp, end), 'base64url')}","acl":"allow"`;
  if (flags & F_RULE) tail += ',"rule":';
  o += out.write(tail, o, 'latin1');
  if (flags & F_RULE) o += src.copy(out, o, rp, ep);
  o += out.write(',"env":"', o, 'latin1');
  o += src.copy(out, o, ep, pp);
  out[o++] = 0x22; // "
  out[o++] = 0x7d; // }
  out[o++] = 0x0a; // \n
  return o;
}
