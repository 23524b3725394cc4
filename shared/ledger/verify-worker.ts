/**
 * The per-record work of `witness verify` on one chunk of a segment, and the worker thread that
 * does it beside the main thread (shared/ledger/verifier.ts decides who scans which chunk).
 *
 * A chunk is a byte range [from, to) of a segment file; it owns the lines that *start* in it (the
 * last one may end after `to`: it is read to its newline). Scanning a chunk needs nothing from the
 * chunks before it, so chunks are scanned in any order, on any thread:
 *   - the leaf hash of every line, SHA-256(0x00 || line) (RFC 9162 §2.1.1), taken in place;
 *   - the index each line claims with its `{"i":N` prefix (-1 if none);
 *   - which lines look like checkpoint records (their bytes are returned: the main thread checks
 *     them against the checkpoint log);
 *   - where an unterminated last line starts (a torn tail).
 * What depends on the records before the chunk — the record's position, its idx entry, the
 * Merkle tree — is the main thread's, in order.
 *
 * Results go back in bulk: one ArrayBuffer of leaf hashes and one of claimed indexes per chunk,
 * transferred (moved, not copied) to the main thread.
 */
import { closeSync, openSync } from 'node:fs';
import { isMainThread, parentPort, workerData } from 'node:worker_threads';
import { WitnessError, type WitnessErrorCode } from '../errors.js';
import { HASH_SIZE, leafDigestAt } from '../merkle/hash.js';
import { isCheckpointLineAt, lineIndexAt } from './record.js';
import { readInto } from './segment.js';

export interface ChunkJob {
  /** The segment's data file. */
  path: string;
  /** The file's size when verification began: nothing after it is read. */
  fileSize: number;
  /** Byte range of the line starts this chunk owns. */
  from: number;
  to: number;
}

export interface ChunkResult {
  /** Records (complete lines) that start in the chunk. */
  count: number;
  /** count × 32 bytes: the leaf hash of each record, in order. */
  leaves: Buffer;
  /** The index each record claims (lineIndex), -1 where it claims none (its ArrayBuffer may be longer than count). */
  claimed: Float64Array;
  /** Whether claimed[j] === claimed[0] + j for every j, with claimed[0] >= 0 (or count is 0). */
  consecutive: boolean;
  /** Records that may be checkpoint records (isCheckpointLine): their position in the chunk and bytes. */
  checkpointLines: Array<{ at: number; line: Uint8Array }>;
  /** File offset where an unterminated last line starts (bytes that are not a record), else -1. */
  tail: number;
}

/** Read past `to` by this much at first, to finish the last line without a second read (records are ~300 B). */
const SLACK = 4096;

/** Scans one chunk (see the file comment). Reads the file through `fd` (opened on `job.path`). */
export function scanChunk(fd: number, job: ChunkJob): ChunkResult {
  const { path, fileSize, from, to } = job;
  // buf[0] is a spare byte (the 0x00 prefix of the first line's leaf hash goes there); the file
  // from `base` follows, up to buffer index `len`. Buffer index b holds file byte base + b - 1.
  // The byte before `from` tells whether a line starts at `from`.
  const base = from === 0 ? 0 : from - 1;
  let readEnd = Math.min(fileSize, to + SLACK);
  let len = readEnd - base + 1;
  // A view of what was read: the buffer is reused and longer, its tail is stale.
  let buf = readBuffer(len, 0).subarray(0, len);
  buf[0] = 0x0a;
  readInto(fd, buf, 1, len - 1, base, path);
  const toB = to - base + 1;
  let b = 1;
  if (from > 0) {
    const nl = buf.indexOf(0x0a, 1);
    b = nl < 0 ? len : nl + 1;
  }

  let capacity = Math.max(16, Math.ceil((to - from) / 256));
  let claimed = new Float64Array(capacity);
  const digests: string[] = [];
  const checkpointLines: ChunkResult['checkpointLines'] = [];
  let count = 0;
  let consecutive = true;
  let first = -1;
  let tail = -1;
  while (b < toB) {
    const nl = buf.indexOf(0x0a, b);
    if (nl < 0) {
      if (readEnd === fileSize) {
        tail = base + b - 1;
        break;
      }
      // The line runs past what was read: read on (doubling), keeping what is there.
      const more = Math.min(fileSize, readEnd + Math.max(SLACK, readEnd - base));
      buf = readBuffer(more - base + 1, len).subarray(0, more - base + 1);
      readInto(fd, buf, len, more - readEnd, readEnd, path);
      readEnd = more;
      len = more - base + 1;
      continue;
    }
    if (count === capacity) {
      capacity *= 2;
      const c = new Float64Array(capacity);
      c.set(claimed);
      claimed = c;
    }
    digests.push(leafDigestAt(buf, b, nl));
    const index = lineIndexAt(buf, b, nl) ?? -1;
    claimed[count] = index;
    if (count === 0) first = index;
    if (index < 0 || index !== first + count) consecutive = false;
    // A copy with an ArrayBuffer of its own: posting a view would clone the whole chunk buffer.
    if (isCheckpointLineAt(buf, b, nl)) checkpointLines.push({ at: count, line: new Uint8Array(buf.subarray(b, nl)) });
    count++;
    b = nl + 1;
  }
  if (scratch.length > KEEP_SCRATCH) scratch = Buffer.allocUnsafeSlow(0); // grown for a giant line: let it go
  // An ArrayBuffer of its own (transferable), filled with one write.
  const leaves = Buffer.from(new ArrayBuffer(count * HASH_SIZE));
  if (count > 0) leaves.write(digests.join(''), 0, 'latin1');
  return { count, leaves, claimed, consecutive, checkpointLines, tail };
}

// One read buffer per thread, reused chunk after chunk (a fresh 1 MiB buffer per chunk is an
// off-heap allocation the GC must account for and sweep). scanChunk is synchronous, and nothing
// it returns points into the buffer.
let scratch = Buffer.allocUnsafeSlow(0);
const KEEP_SCRATCH = 8 * 1024 * 1024;

/** The thread's read buffer with room for `size` bytes, keeping its first `keep` bytes. */
function readBuffer(size: number, keep: number): Buffer {
  if (scratch.length < size) {
    const grown = Buffer.allocUnsafeSlow(Math.max(size, 2 * scratch.length));
    scratch.copy(grown, 0, 0, keep);
    scratch = grown;
  }
  return scratch;
}

// ── the worker thread ────────────────────────────────────────────────────────────────────────

/** workerData that makes this module run as a verify worker. */
export const WORKER_ROLE = 'witness-verify-worker';

export type WorkerRequest = { id: number; job: ChunkJob };
export type WorkerResponse =
  | { ready: true }
  | { id: number; result: Omit<ChunkResult, 'leaves' | 'claimed'> & { leaves: ArrayBuffer; claimed: ArrayBuffer } }
  | { id: number; error: { message: string; code?: WitnessErrorCode; errno?: string } };

if (!isMainThread && parentPort !== null && (workerData as { role?: unknown } | null)?.role === WORKER_ROLE) {
  const port = parentPort;
  port.on('message', (req: WorkerRequest) => {
    try {
      // A descriptor per chunk, not one kept open: a terminated worker's descriptors would leak
      // (threads share the process's descriptor table). Measured: 4–7 µs per chunk of ≥ 2 ms.
      const fd = openSync(req.job.path, 'r');
      let r: ChunkResult;
      try {
        r = scanChunk(fd, req.job);
      } finally {
        closeSync(fd);
      }
      const leaves = r.leaves.buffer as ArrayBuffer;
      const claimed = r.claimed.buffer as ArrayBuffer;
      const res: WorkerResponse = { id: req.id, result: { ...r, leaves, claimed } };
      port.postMessage(res, [leaves, claimed]);
    } catch (e) {
      const err = e as Error & { code?: unknown };
      const res: WorkerResponse = {
        id: req.id,
        error: e instanceof WitnessError ? { message: e.message, code: e.code } : { message: err.message, ...(typeof err.code === 'string' ? { errno: err.code } : {}) },
      };
      port.postMessage(res);
    }
  });
  // Loaded: the main thread hands out chunks from now on (until then it scans them itself).
  const ready: WorkerResponse = { ready: true };
  port.postMessage(ready);
}
