/**
 * Where the lines of a segment data file start: the byte offset of every LINE_STEP-th line, found
 * by one scan and kept per process, extended by scanning only the bytes appended since.
 *
 * Why (issue 7 §4, bench/scale.ts, 2-core bench machine): LedgerReader.open counted the lines of
 * the last segment by reading it whole, and fetching one record read its whole segment and
 * scanned it from the start — 25–88 ms per record at 64 MiB segments, on the broker's event loop
 * for every HTTP proof request (the API opens a reader per request). With this index a record
 * costs one pread of at most LINE_STEP lines after the first scan of its segment, and a reader
 * open scans only what was appended since the last one.
 *
 * Derived, in-memory data only (nothing on disk changes). An entry is rebuilt when its file was
 * replaced (another inode or creation time) or shrank (the writer rolled back a failed write).
 */
import { closeSync, fstatSync, openSync, readSync } from 'node:fs';
import { WitnessError } from '../errors.js';

/** One offset kept per this many lines. */
export const LINE_STEP = 256;
const CHUNK = 1 << 20;
/** Segments whose index is kept (least recently used dropped first): 64 × ≈ 1 KiB at 64 MiB segments. */
const MAX_ENTRIES = 64;

interface Entry {
  /** The file's identity: inode and creation time (an inode number alone can be reused after a delete). */
  ino: number;
  born: number;
  /** Bytes scanned: the file up to here is counted. */
  scanned: number;
  /** Complete (newline-terminated) lines in [0, scanned). */
  lines: number;
  /** offsets[k] = byte offset of line k × LINE_STEP (offsets[0] = 0). */
  offsets: number[];
  /** Where the first incomplete line starts (= scanned when the last scanned byte is a newline). */
  tail: number;
}

const cache = new Map<string, Entry>();

export interface LineIndex {
  /** Complete lines in the file. */
  lines: number;
  /** Byte offset where line `n` (n < lines) starts; also valid for n = lines (end of the last complete line). */
  startOf(n: number): { offset: number; skip: number };
  /** End of the complete lines: the offset just past the last newline. */
  end: number;
}

/** The line index of `path` as the file is now (scanning only bytes not seen before). */
export function lineIndex(path: string): LineIndex {
  const fd = openForRead(path);
  try {
    return indexWith(fd, path);
  } finally {
    closeSync(fd);
  }
}

function openForRead(path: string): number {
  try {
    return openSync(path, 'r');
  } catch (e) {
    throw new WitnessError('WITNESS_ERR_IO', `${path}: ${(e as Error).message}`, { cause: e });
  }
}

function indexWith(fd: number, path: string): LineIndex {
  const st = fstatSync(fd);
  let e = cache.get(path);
  if (e && (e.ino !== st.ino || e.born !== st.birthtimeMs || st.size < e.scanned)) e = undefined;
  if (!e) e = { ino: st.ino, born: st.birthtimeMs, scanned: 0, lines: 0, offsets: [0], tail: 0 };
  cache.delete(path); // re-insert: most recently used last
  cache.set(path, e);
  if (cache.size > MAX_ENTRIES) cache.delete(cache.keys().next().value!);
  if (st.size > e.scanned) scan(fd, e, st.size, path);
  const entry = e;
  return {
    lines: entry.lines,
    end: entry.tail,
    startOf(n: number) {
      return { offset: entry.offsets[Math.floor(n / LINE_STEP)]!, skip: n % LINE_STEP };
    },
  };
}

function scan(fd: number, e: Entry, size: number, path: string): void {
  const buf = Buffer.allocUnsafe(CHUNK);
  let pos = e.scanned;
  while (pos < size) {
    const want = Math.min(CHUNK, size - pos);
    const n = readSync(fd, buf, 0, want, pos);
    if (n <= 0) throw new WitnessError('WITNESS_ERR_IO', `${path}: short read at ${pos} (file changed while reading)`);
    for (let p = buf.indexOf(0x0a, 0); p >= 0 && p < n; p = buf.indexOf(0x0a, p + 1)) {
      e.lines++;
      e.tail = pos + p + 1;
      if (e.lines % LINE_STEP === 0) e.offsets.push(e.tail);
    }
    pos += n;
  }
  e.scanned = pos;
}

/**
 * The lines [first, first + count) of a segment data file, read from the nearest indexed offset
 * in chunks (never the whole file). Yields each line without its newline.
 */
export function* readLines(path: string, first: number, count: number): Generator<string> {
  if (count <= 0) return;
  const fd = openForRead(path);
  try {
    const idx = indexWith(fd, path);
    if (first + count > idx.lines) {
      throw new WitnessError('WITNESS_ERR_LEDGER_TRUNCATED', `${path}: lines ${first}–${first + count - 1} asked for, the file has ${idx.lines} complete lines`);
    }
    const { offset, skip } = idx.startOf(first);
    let buf = Buffer.allocUnsafe(Math.min(CHUNK, Math.max(4096, idx.end - offset)));
    let pos = offset;
    let have = 0; // bytes in buf
    let start = 0; // start of the current line in buf
    let toSkip = skip;
    let left = count;
    while (left > 0) {
      const nl = buf.indexOf(0x0a, start);
      if (nl >= 0 && nl < have) {
        if (toSkip > 0) toSkip--;
        else {
          yield buf.toString('utf8', start, nl);
          left--;
        }
        start = nl + 1;
        continue;
      }
      // Need more bytes: keep the partial line, read the next chunk.
      const keep = have - start;
      if (keep > 0 && start > 0) buf.copy(buf, 0, start, have);
      if (keep === buf.length) {
        const bigger = Buffer.allocUnsafe(buf.length * 2);
        buf.copy(bigger, 0, 0, keep);
        buf = bigger;
      }
      have = keep;
      start = 0;
      const n = readSync(fd, buf, have, Math.min(buf.length - have, idx.end - pos), pos);
      if (n <= 0) throw new WitnessError('WITNESS_ERR_IO', `${path}: short read at ${pos}`);
      pos += n;
      have += n;
    }
  } finally {
    closeSync(fd);
  }
}

/** Forgets every cached index (tests). */
export function clearLineIndexCache(): void {
  cache.clear();
}
