/**
 * Segment files: listing, locating a record, reading lines.
 *
 * A segment is `NNNN.jsonl` (records, newline-terminated, UTF-8) beside `NNNN.idx` (one 32-byte
 * leaf hash per record). NNNN is the index of its first record, so the names alone say which
 * segment holds record i; a gap or overlap between names is itself evidence of tampering.
 */
import { openSync, readSync, closeSync, readdirSync, fstatSync } from 'node:fs';
import { join } from 'node:path';
import { WitnessError } from '../errors.js';
import { SEGMENTS_DIR, parseSegmentName, segmentPaths } from './layout.js';

export const LEAF_HASH_SIZE = 32;

export interface SegmentInfo {
  /** Index of the segment's first record. */
  readonly first: number;
  readonly dataPath: string;
  readonly indexPath: string;
}

/** Segments of a ledger directory, sorted by first index. Unrelated files are ignored. */
export function listSegments(dir: string): SegmentInfo[] {
  let names: string[];
  try {
    names = readdirSync(join(dir, SEGMENTS_DIR));
  } catch (e) {
    throw new WitnessError('WITNESS_ERR_LEDGER_NOT_FOUND', `${join(dir, SEGMENTS_DIR)}: cannot list segments (${(e as Error).message})`, { cause: e });
  }
  const out: SegmentInfo[] = [];
  for (const name of names) {
    const first = parseSegmentName(name);
    if (first === undefined) continue;
    const p = segmentPaths(dir, first);
    out.push({ first, dataPath: p.data, indexPath: p.index });
  }
  out.sort((a, b) => a.first - b.first);
  return out;
}

/** Reads `length` bytes at `position` of an open file, throwing WITNESS_ERR_IO on a short read. */
export function preadExact(fd: number, length: number, position: number, what: string): Buffer {
  const buf = Buffer.allocUnsafe(length);
  let off = 0;
  while (off < length) {
    const n = readSync(fd, buf, off, length - off, position + off);
    if (n === 0) {
      throw new WitnessError('WITNESS_ERR_IO', `${what}: expected ${length} bytes at offset ${position}, file ends after ${off}`, {
        details: { offset: position, expected: length, actual: off },
      });
    }
    off += n;
  }
  return buf;
}

/** Whole-file read (segments are bounded by segmentMaxBytes, 64 MiB by default). */
export function readWholeFile(path: string): Buffer {
  const fd = openSync(path, 'r');
  try {
    const size = fstatSync(fd).size;
    return size === 0 ? Buffer.alloc(0) : preadExact(fd, size, 0, path);
  } finally {
    closeSync(fd);
  }
}

/**
 * A whole file at offset 1 of a buffer one byte longer: the spare byte in front lets every line's
 * leaf hash be taken in place (merkle/hash.ts leafDigestAt writes the 0x00 prefix over the byte
 * before a line). `size` is the file's size; the buffer is `size + 1` bytes.
 */
export function readWithSpareByte(path: string): { data: Buffer; size: number } {
  const fd = openSync(path, 'r');
  try {
    const size = fstatSync(fd).size;
    const data = Buffer.allocUnsafe(size + 1);
    data[0] = 0x0a;
    readInto(fd, data, 1, size, 0, path);
    return { data, size };
  } finally {
    closeSync(fd);
  }
}

/**
 * Reads exactly `length` bytes at file `position` into `buf` at `offset`; WITNESS_ERR_IO if the
 * file ends first (it shrank while being read).
 */
export function readInto(fd: number, buf: Uint8Array, offset: number, length: number, position: number, what: string): void {
  let off = 0;
  while (off < length) {
    const n = readSync(fd, buf, offset + off, length - off, position + off);
    if (n === 0) throw new WitnessError('WITNESS_ERR_IO', `${what}: file shrank while being read (at byte ${position + off} of ${position + length})`);
    off += n;
  }
}

/**
 * Which segment holds each record, from the segments' first indexes and the total size.
 * Lookups are a binary search: O(log segments).
 */
export class SegmentTable {
  readonly #segments: SegmentInfo[];
  #size: number;

  constructor(segments: SegmentInfo[], size: number) {
    this.#segments = segments;
    this.#size = size;
  }

  get size(): number {
    return this.#size;
  }

  get segments(): readonly SegmentInfo[] {
    return this.#segments;
  }

  setSize(size: number): void {
    this.#size = size;
  }

  add(segment: SegmentInfo): void {
    this.#segments.push(segment);
  }

  /** The segment holding record `index`, and the number of records it holds (so far). */
  locate(index: number): { segment: SegmentInfo; count: number; position: number } {
    if (!Number.isSafeInteger(index) || index < 0 || index >= this.#size) {
      throw new WitnessError('WITNESS_ERR_INVALID_ARGUMENT', `record index ${index}: out of range [0, ${this.#size})`);
    }
    let lo = 0;
    let hi = this.#segments.length - 1;
    while (lo < hi) {
      const mid = Math.ceil((lo + hi) / 2);
      if (this.#segments[mid]!.first <= index) lo = mid;
      else hi = mid - 1;
    }
    const segment = this.#segments[lo]!;
    const next = this.#segments[lo + 1];
    const end = next === undefined ? this.#size : next.first;
    return { segment, count: end - segment.first, position: index - segment.first };
  }
}

/** Size of a file in bytes; 0 if it cannot be opened (a missing idx counts as empty). */
export function sizeOrZero(path: string): number {
  try {
    const fd = openSync(path, 'r');
    try {
      return fstatSync(fd).size;
    } finally {
      closeSync(fd);
    }
  } catch {
    return 0;
  }
}
