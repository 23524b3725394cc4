/**
 * CBOR encoding (RFC 8949), the small subset Witness needs, always in the core deterministic
 * form of RFC 8949 §4.2.1:
 *   - every argument in its shortest form (preferred serialization, §4.1; §4.2.1 rule 1);
 *   - definite lengths only (§4.2.1 rule 2);
 *   - map keys sorted by the bytewise lexicographic order of their encodings (§4.2.1 rule 3).
 *
 * The data model (what `encode` takes and `decode` returns):
 *   integer (safe JS number, |n| <= 2^53-1) · byte string (Uint8Array) · text string (string,
 *   well-formed Unicode) · array · Map with integer or text keys · Tagged · false, true, null,
 *   undefined.
 * Floats, bigints and big integers are not part of it (WITNESS_ERR_CBOR_UNSUPPORTED): nothing in
 * Witness needs them, and every extra type is another place for two encoders to disagree.
 * -0 is the integer 0.
 */
import { WitnessError } from '../errors.js';

/** Deepest nesting of arrays, maps and tags accepted by `encode` and `decode`. */
export const MAX_NESTING = 16;

export type CborKey = number | string;
export type CborValue =
  | number
  | string
  | Uint8Array
  | boolean
  | null
  | undefined
  | Tagged
  | readonly CborValue[]
  | ReadonlyMap<CborKey, CborValue>;

/** A tagged data item (RFC 8949 §3.4): major type 6, tag number, enclosed item. */
export class Tagged {
  readonly tag: number;
  readonly value: CborValue;

  constructor(tag: number, value: CborValue) {
    if (!Number.isSafeInteger(tag) || tag < 0) {
      throw new WitnessError(
        Number.isInteger(tag) && tag > 0 ? 'WITNESS_ERR_CBOR_UNSUPPORTED' : 'WITNESS_ERR_INVALID_ARGUMENT',
        `CBOR tag number: expected an integer 0..2^53-1, got ${String(tag)}`,
      );
    }
    this.tag = tag;
    this.value = value;
  }
}

// Major types (RFC 8949 §3.1).
export const MT_UINT = 0;
export const MT_NINT = 1;
export const MT_BYTES = 2;
export const MT_TEXT = 3;
export const MT_ARRAY = 4;
export const MT_MAP = 5;
export const MT_TAG = 6;
export const MT_SIMPLE = 7;

/** Number of bytes of a head whose argument is `arg` (RFC 8949 §3: 1, 2, 3, 5 or 9). */
export function headLength(arg: number): number {
  if (arg < 24) return 1;
  if (arg < 0x100) return 2;
  if (arg < 0x10000) return 3;
  if (arg < 0x100000000) return 5;
  return 9;
}

/**
 * Writes the head (initial byte and argument) of `major` with argument `arg`, in its shortest
 * form, at `offset`; returns the offset after it. `arg` must be a safe non-negative integer.
 */
export function writeHead(out: Uint8Array, offset: number, major: number, arg: number): number {
  const mt = major << 5;
  if (arg < 24) {
    out[offset] = mt | arg;
    return offset + 1;
  }
  if (arg < 0x100) {
    out[offset] = mt | 24;
    out[offset + 1] = arg;
    return offset + 2;
  }
  if (arg < 0x10000) {
    out[offset] = mt | 25;
    out[offset + 1] = arg >>> 8;
    out[offset + 2] = arg & 0xff;
    return offset + 3;
  }
  if (arg < 0x100000000) {
    out[offset] = mt | 26;
    out[offset + 1] = arg >>> 24;
    out[offset + 2] = (arg >>> 16) & 0xff;
    out[offset + 3] = (arg >>> 8) & 0xff;
    out[offset + 4] = arg & 0xff;
    return offset + 5;
  }
  const hi = Math.floor(arg / 0x100000000);
  const lo = arg >>> 0;
  out[offset] = mt | 27;
  out[offset + 1] = hi >>> 24;
  out[offset + 2] = (hi >>> 16) & 0xff;
  out[offset + 3] = (hi >>> 8) & 0xff;
  out[offset + 4] = hi & 0xff;
  out[offset + 5] = lo >>> 24;
  out[offset + 6] = (lo >>> 16) & 0xff;
  out[offset + 7] = (lo >>> 8) & 0xff;
  out[offset + 8] = lo & 0xff;
  return offset + 9;
}

/** The head of `major` with argument `arg` as its own byte array. */
export function encodeHead(major: number, arg: number): Uint8Array {
  const out = new Uint8Array(headLength(arg));
  writeHead(out, 0, major, arg);
  return out;
}

const utf8 = new TextEncoder();

/**
 * UTF-8 length of `s`, or -1 if `s` holds a lone surrogate: TextEncoder would silently turn it
 * into U+FFFD, so the decoded string would differ from the one that was encoded (and signed).
 */
function utf8Length(s: string): number {
  let n = 0;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c < 0x80) n += 1;
    else if (c < 0x800) n += 2;
    else if (c < 0xd800 || c > 0xdfff) n += 3;
    else if (c <= 0xdbff && i + 1 < s.length && (s.charCodeAt(i + 1) & 0xfc00) === 0xdc00) {
      n += 4;
      i++;
    } else return -1;
  }
  return n;
}

function compareBytes(a: Uint8Array, b: Uint8Array): number {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) {
    const d = a[i]! - b[i]!;
    if (d !== 0) return d;
  }
  return a.length - b.length;
}

class Writer {
  #buf = new Uint8Array(128);
  #len = 0;
  /** Path of the item being encoded, for error messages: array indexes and map keys. */
  readonly #path: (string | number)[] = [];

  #reserve(n: number): void {
    const need = this.#len + n;
    if (need <= this.#buf.length) return;
    const next = new Uint8Array(Math.max(need, this.#buf.length * 2));
    next.set(this.#buf.subarray(0, this.#len));
    this.#buf = next;
  }

  #head(major: number, arg: number): void {
    this.#reserve(9);
    this.#len = writeHead(this.#buf, this.#len, major, arg);
  }

  #bytes(b: Uint8Array): void {
    this.#reserve(b.length);
    this.#buf.set(b, this.#len);
    this.#len += b.length;
  }

  #fail(code: 'WITNESS_ERR_CBOR_UNSUPPORTED' | 'WITNESS_ERR_INVALID_ARGUMENT', what: string): never {
    const at = this.#path.map((p) => (typeof p === 'number' ? `[${p}]` : `{${JSON.stringify(p)}}`)).join('');
    throw new WitnessError(code, `CBOR encode: ${what} at $${at}`, { details: { path: `$${at}` } });
  }

  item(v: unknown, depth: number): void {
    switch (typeof v) {
      case 'number':
        return this.#integer(v);
      case 'string':
        return this.#text(v);
      case 'boolean':
        return this.#head(MT_SIMPLE, v ? 21 : 20);
      case 'undefined':
        return this.#head(MT_SIMPLE, 23);
      case 'bigint':
        return this.#fail('WITNESS_ERR_CBOR_UNSUPPORTED', `bigint ${v} (only safe integers, |n| <= 2^53-1, are supported)`);
      case 'object':
        break;
      default:
        return this.#fail('WITNESS_ERR_INVALID_ARGUMENT', `a ${typeof v} has no CBOR encoding`);
    }
    if (v === null) return this.#head(MT_SIMPLE, 22);
    if (v instanceof Uint8Array) {
      this.#head(MT_BYTES, v.length);
      return this.#bytes(v);
    }
    if (depth >= MAX_NESTING) this.#fail('WITNESS_ERR_CBOR_UNSUPPORTED', `nesting deeper than ${MAX_NESTING}`);
    if (Array.isArray(v)) {
      this.#head(MT_ARRAY, v.length);
      for (let i = 0; i < v.length; i++) {
        this.#path.push(i);
        this.item(v[i], depth + 1);
        this.#path.pop();
      }
      return;
    }
    if (v instanceof Map) return this.#map(v, depth);
    if (v instanceof Tagged) {
      this.#head(MT_TAG, v.tag);
      return this.item(v.value, depth + 1);
    }
    return this.#fail('WITNESS_ERR_INVALID_ARGUMENT', `${v.constructor?.name ?? 'object'} has no CBOR encoding (use a Map for a CBOR map)`);
  }

  #integer(n: number): void {
    if (!Number.isInteger(n)) this.#fail('WITNESS_ERR_CBOR_UNSUPPORTED', `${n} is not an integer (floats are not supported)`);
    if (!Number.isSafeInteger(n)) this.#fail('WITNESS_ERR_CBOR_UNSUPPORTED', `integer ${n} is beyond 2^53-1 in magnitude`);
    // RFC 8949 §3.1: major type 1 encodes -1 - n.
    if (n >= 0) this.#head(MT_UINT, n);
    else this.#head(MT_NINT, -1 - n);
  }

  #text(s: string): void {
    const n = utf8Length(s);
    if (n < 0) this.#fail('WITNESS_ERR_INVALID_ARGUMENT', 'text string holds a lone UTF-16 surrogate (not valid Unicode)');
    this.#head(MT_TEXT, n);
    this.#reserve(n);
    if (n === s.length) {
      // ASCII: one byte per UTF-16 unit.
      for (let i = 0; i < n; i++) this.#buf[this.#len + i] = s.charCodeAt(i);
    } else {
      utf8.encodeInto(s, this.#buf.subarray(this.#len, this.#len + n));
    }
    this.#len += n;
  }

  #map(m: ReadonlyMap<unknown, unknown>, depth: number): void {
    this.#head(MT_MAP, m.size);
    // RFC 8949 §4.2.1: keys sorted by the bytewise lexicographic order of their encodings.
    const entries: { key: Uint8Array; value: unknown; label: string | number }[] = [];
    for (const [k, value] of m) {
      if (typeof k !== 'number' && typeof k !== 'string') {
        this.#fail('WITNESS_ERR_INVALID_ARGUMENT', `map key of type ${k === null ? 'null' : typeof k} (keys must be integers or text)`);
      }
      this.#path.push(k);
      const w = new Writer();
      w.item(k, MAX_NESTING);
      this.#path.pop();
      entries.push({ key: w.result(), value, label: k });
    }
    if (entries.length > 1) entries.sort((a, b) => compareBytes(a.key, b.key));
    for (const e of entries) {
      this.#bytes(e.key);
      this.#path.push(e.label);
      this.item(e.value, depth + 1);
      this.#path.pop();
    }
  }

  result(): Uint8Array {
    return this.#len === this.#buf.length ? this.#buf : this.#buf.slice(0, this.#len);
  }
}

/**
 * Encodes `value` as deterministic CBOR (RFC 8949 §4.2.1).
 * Throws WITNESS_ERR_CBOR_UNSUPPORTED for floats, bigints, integers beyond 2^53-1 in magnitude
 * and nesting deeper than MAX_NESTING; WITNESS_ERR_INVALID_ARGUMENT for values outside the data
 * model (plain objects, functions, symbols, lone surrogates, map keys other than integer/text).
 * The message names the path of the offending item, e.g. `$[2]{"a"}`.
 */
export function encode(value: CborValue): Uint8Array {
  const w = new Writer();
  w.item(value, 0);
  return w.result();
}
