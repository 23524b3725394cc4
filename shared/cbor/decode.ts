/**
 * CBOR decoding (RFC 8949), strict: only well-formed input (§5.3.1 / Appendix C) in the data
 * model of encode.ts, and nothing after the top-level item.
 *
 * WITNESS_ERR_CBOR_MALFORMED: truncated input, reserved additional information 28-30 (§3),
 *   additional information 31 on major types 0, 1, 6 or a stray "break" (§3.2), a two-byte
 *   simple value below 32 (§3.3), invalid UTF-8 in a text string (§3.1 major type 3), duplicate
 *   map keys (§5.6), nesting deeper than MAX_NESTING (a fixed bound protects the stack from
 *   hostile input), trailing bytes after the top-level item.
 * WITNESS_ERR_CBOR_UNSUPPORTED: well-formed but outside the data model: indefinite lengths
 *   (§3.2.2), floats (§3.3), simple values other than false/true/null/undefined, integers or tag
 *   numbers beyond 2^53-1 in magnitude, map keys other than integers and text.
 * Every message gives the byte offset of the offending head.
 *
 * The decoder accepts arguments that are not in their shortest form (a generic decoder must,
 * RFC 8949 §5.2); callers that need unique bytes check `CborReader#shortest` (shared/envelope).
 * Byte strings returned by `decode` are copies: the result never aliases the input.
 */
import { WitnessError, expectBytes } from '../errors.js';
import { MAX_NESTING, MT_ARRAY, MT_BYTES, MT_MAP, MT_NINT, MT_SIMPLE, MT_TAG, MT_TEXT, MT_UINT, Tagged, type CborKey, type CborValue } from './encode.js';

const utf8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

export function malformed(offset: number, what: string): WitnessError {
  return new WitnessError('WITNESS_ERR_CBOR_MALFORMED', `CBOR: ${what} at byte offset ${offset}`, { details: { offset } });
}

export function unsupported(offset: number, what: string): WitnessError {
  return new WitnessError('WITNESS_ERR_CBOR_UNSUPPORTED', `CBOR: ${what} at byte offset ${offset}`, { details: { offset } });
}

/**
 * A cursor over CBOR bytes, `bytes[pos..end)`. Used by `decode` and by the hand-rolled envelope
 * walk (shared/envelope/envelope.ts), so both read heads and report errors identically.
 * Not re-exported from index.ts.
 */
export class CborReader {
  readonly bytes: Uint8Array;
  readonly end: number;
  pos: number;
  /** Offset of the last head read. */
  start = 0;
  /** Major type (0-7) of the last head read. */
  major = 0;
  /** Additional information (0-27, or 31 for simple "break") of the last head read. */
  info = 0;
  /** Argument of the last head; Infinity when it exceeds 2^53-1 (8-byte arguments only). */
  arg = 0;
  /** Whether that argument was in its shortest form (RFC 8949 §4.2.1 rule 1). */
  shortest = true;

  constructor(bytes: Uint8Array, pos = 0, end = bytes.length) {
    this.bytes = bytes;
    this.pos = pos;
    this.end = end;
  }

  /** Reads one head (RFC 8949 §3) and returns its major type. Rejects reserved and indefinite-length forms. */
  head(): number {
    const b = this.bytes;
    const start = this.pos;
    if (start >= this.end) throw malformed(start, 'unexpected end of input');
    const ib = b[start]!;
    const major = ib >> 5;
    const info = ib & 0x1f;
    let p = start + 1;
    let arg: number;
    let shortest = true;
    if (info < 24) {
      arg = info;
    } else if (info <= 27) {
      const n = 1 << (info - 24); // 1, 2, 4 or 8 bytes follow
      if (p + n > this.end) throw malformed(start, `truncated argument (${n} bytes expected)`);
      if (n === 1) {
        arg = b[p]!;
        shortest = arg >= 24;
      } else if (n === 2) {
        arg = (b[p]! << 8) | b[p + 1]!;
        shortest = arg >= 0x100;
      } else if (n === 4) {
        arg = b[p]! * 0x1000000 + ((b[p + 1]! << 16) | (b[p + 2]! << 8) | b[p + 3]!);
        shortest = arg >= 0x10000;
      } else {
        const hi = b[p]! * 0x1000000 + ((b[p + 1]! << 16) | (b[p + 2]! << 8) | b[p + 3]!);
        const lo = b[p + 4]! * 0x1000000 + ((b[p + 5]! << 16) | (b[p + 6]! << 8) | b[p + 7]!);
        arg = hi > 0x1fffff ? Infinity : hi * 0x100000000 + lo;
        shortest = hi !== 0;
      }
      p += n;
    } else if (info === 31) {
      // RFC 8949 §3.2: indefinite length (major types 2-5) or the "break" stop code (major 7).
      if (major >= MT_BYTES && major <= MT_MAP) throw unsupported(start, 'indefinite-length item');
      if (major === MT_SIMPLE) throw malformed(start, 'unexpected "break" stop code');
      throw malformed(start, `additional information 31 with major type ${major}`);
    } else {
      throw malformed(start, `reserved additional information ${info}`);
    }
    this.start = start;
    this.major = major;
    this.info = info;
    this.arg = arg;
    this.shortest = shortest;
    this.pos = p;
    return major;
  }

  /** Moves past the next `n` bytes and returns where they start. */
  #skip(n: number): number {
    const p = this.pos;
    if (n > this.end - p) throw malformed(this.start, `truncated: ${n} bytes announced, ${this.end - p} left`);
    this.pos = p + n;
    return p;
  }

  /** The next `n` bytes as a view (no copy). */
  take(n: number): Uint8Array {
    const p = this.#skip(n);
    return this.bytes.subarray(p, p + n);
  }

  /** The next `n` bytes as a copy. */
  copy(n: number): Uint8Array {
    const p = this.#skip(n);
    return this.bytes.slice(p, p + n);
  }

  /** The next `n` bytes as a UTF-8 string (RFC 8949 §3.1 major type 3: must be valid UTF-8). */
  text(n: number): string {
    const p = this.#skip(n);
    const b = this.bytes;
    if (n <= 32) {
      // Short ASCII strings (topics, "ntp", map keys) skip TextDecoder.
      let s = '';
      let i = p;
      for (; i < p + n; i++) {
        const c = b[i]!;
        if (c >= 0x80) break;
        s += String.fromCharCode(c);
      }
      if (i === p + n) return s;
    }
    try {
      return utf8.decode(b.subarray(p, p + n));
    } catch (cause) {
      throw new WitnessError('WITNESS_ERR_CBOR_MALFORMED', `CBOR: invalid UTF-8 in text string at byte offset ${this.start}`, {
        cause,
        details: { offset: this.start },
      });
    }
  }

  /**
   * Decodes one complete item. `depth` is the number of arrays, maps and tags around it.
   */
  item(depth: number): CborValue {
    const major = this.head();
    const start = this.start;
    const arg = this.arg;
    switch (major) {
      case MT_UINT:
        if (arg > Number.MAX_SAFE_INTEGER) throw unsupported(start, 'unsigned integer beyond 2^53-1');
        return arg;
      case MT_NINT: {
        const v = -1 - arg;
        if (!Number.isSafeInteger(v)) throw unsupported(start, 'negative integer beyond -(2^53-1)');
        return v;
      }
      case MT_BYTES:
        return this.copy(arg);
      case MT_TEXT:
        return this.text(arg);
      case MT_ARRAY: {
        this.#nest(depth);
        // Each element takes at least one byte: refuse a count the input cannot hold before
        // allocating anything for it.
        if (arg > this.end - this.pos) throw malformed(start, `truncated: array of ${arg} items, ${this.end - this.pos} bytes left`);
        const out: CborValue[] = new Array(arg);
        for (let i = 0; i < arg; i++) out[i] = this.item(depth + 1);
        return out;
      }
      case MT_MAP: {
        this.#nest(depth);
        if (arg > (this.end - this.pos) / 2) throw malformed(start, `truncated: map of ${arg} pairs, ${this.end - this.pos} bytes left`);
        const out = new Map<CborKey, CborValue>();
        for (let i = 0; i < arg; i++) {
          const keyAt = this.pos;
          const key = this.item(depth + 1);
          if (typeof key !== 'number' && typeof key !== 'string') throw unsupported(keyAt, 'map key that is neither an integer nor text');
          // RFC 8949 §5.6: a map with duplicate keys is not valid.
          if (out.has(key)) throw malformed(keyAt, `duplicate map key ${JSON.stringify(key)}`);
          out.set(key, this.item(depth + 1));
        }
        return out;
      }
      case MT_TAG:
        this.#nest(depth);
        if (arg > Number.MAX_SAFE_INTEGER) throw unsupported(start, 'tag number beyond 2^53-1');
        return new Tagged(arg, this.item(depth + 1));
      default:
        return this.#simple(start);
    }
  }

  #nest(depth: number): void {
    if (depth >= MAX_NESTING) throw malformed(this.start, `nesting deeper than ${MAX_NESTING}`);
  }

  // RFC 8949 §3.3.
  #simple(start: number): CborValue {
    switch (this.info) {
      case 20:
        return false;
      case 21:
        return true;
      case 22:
        return null;
      case 23:
        return undefined;
      case 24:
        if (this.arg < 32) throw malformed(start, `two-byte simple value ${this.arg} (must be >= 32)`);
        throw unsupported(start, `simple value ${this.arg}`);
      case 25:
      case 26:
      case 27:
        throw unsupported(start, 'floating-point number');
      default:
        throw unsupported(start, `simple value ${this.info}`);
    }
  }
}

/**
 * Decodes exactly one CBOR item filling all of `bytes`. Maps decode to `Map` (integer labels stay
 * numbers), tags to `Tagged`, byte strings to fresh `Uint8Array` copies.
 */
export function decode(bytes: Uint8Array): CborValue {
  expectBytes(bytes, undefined, 'CBOR input');
  const r = new CborReader(bytes);
  const value = r.item(0);
  if (r.pos !== bytes.length) throw malformed(r.pos, `${bytes.length - r.pos} trailing bytes after the top-level item`);
  return value;
}
