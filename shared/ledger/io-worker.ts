/**
 * The ledger writer's I/O thread (shared/ledger/writer.ts): for each batch, the payload hashes the
 * writer left blank in publish lines (fillHashes, publish-line.ts), the leaf hash of every line,
 * then write() of the segment data and of the idx, then (fsync `batch`) fdatasync of the segment,
 * then the batch's Merkle nodes (advanceTree, from the compact range the job carries) — all
 * synchronous, on this thread, so the broker's event loop does none of it. The writer commits
 * the returned range and writes the tile nodes only after the reply.
 *
 * Why (issue 7 §2–3, measured on the 2-core bench machine, ~280-byte publish records):
 *   - the leaf hash, SHA-256(0x00 || line) taken in place, cost the event loop ≈ 1.0–1.5 µs per
 *     record when append() took it (16% of the ledger's per-record cost, 3.4 µs in isolation);
 *   - each batch went through three thread-pool jobs (data write, idx write, fdatasync), each with
 *     its promise, its wake-up of the event loop and its await: the CPU profile of the broker under
 *     QoS 0 load charged 6.2% of the busy time to `writeBuffer` and 2.7% to `fdatasync` — time the
 *     event loop spent handing work to the pool and being descheduled for the woken pool thread on
 *     2 loaded cores. One message here and one back per batch replaces them.
 * The on-disk result is byte for byte what the pool path wrote: same data, same idx, same order of
 * write then fdatasync, and the batch's appends are resolved by the writer only after the reply
 * (so only after the fdatasync under policy `batch`).
 *
 * Protocol: the writer posts an IoJob with the batch's data buffer transferred (lines from byte 1:
 * byte 0 is the spare byte leaf hashing writes its 0x00 prefix into), its side buffer of payloads
 * (if any) and the tree's range; the reply gives the buffers back (transferred) with the idx, the
 * new range and the tile nodes, or the failure and the stage it happened at.
 * Each job is one hand-off and one reply: on the 2-core bench VM a round trip costs 112–124 µs of
 * CPU (bench/handoff.ts), which is why the writer lets batches nobody waits for linger (lingerMs).
 */
import { fdatasyncSync, writeSync } from 'node:fs';
import { hash } from 'node:crypto';
import { Worker, isMainThread, parentPort, workerData } from 'node:worker_threads';
import { leafDigestAt } from '../merkle/hash.js';
import { CompactRange } from '../merkle/compact-range.js';
import { HASH_CHARS } from './publish-line.js';

export interface IoJob {
  id: number;
  /** The batch buffer: lines in [1, end). */
  data: ArrayBuffer;
  end: number;
  /** Lines expected in [1, end). */
  count: number;
  dataFd: number;
  idxFd: number;
  /** fdatasync the data file after writing (fsync policy `batch`). */
  sync: boolean;
  /** Payloads to hash into their lines first (fillHashes), transferred; undefined: none. */
  side: ArrayBuffer | undefined;
  sideEnd: number;
  /** The tree before the batch: its size and its compact range's roots, back to back (rangeBytes). */
  rangeSize: number;
  range: ArrayBuffer;
  /** Tile height: every completed node of a level that is a positive multiple of it is returned. */
  tileEvery: number;
}

export type IoReply =
  | {
      id: number;
      ok: true;
      data: ArrayBuffer;
      side: ArrayBuffer | undefined;
      idx: ArrayBuffer;
      /** The tree after the batch: roots back to back, and the tile nodes it completed (tileRecords). */
      range: ArrayBuffer;
      tiles: ArrayBuffer;
    }
  | { id: number; ok: false; data: ArrayBuffer; side: ArrayBuffer | undefined; stage: 'write' | 'sync'; message: string; code?: string };

/** Leaf hashes of the lines in buf[1, end), back to back: count × 32 bytes. */
export function leafHashes(buf: Buffer, end: number, count: number): Buffer {
  const digests: string[] = new Array<string>(count);
  let start = 1;
  for (let k = 0; k < count; k++) {
    const nl = buf.indexOf(0x0a, start);
    if (nl < 0 || nl >= end) throw new Error(`ledger I/O thread: batch holds fewer lines than ${count}`);
    digests[k] = leafDigestAt(buf, start, nl);
    start = nl + 1;
  }
  return Buffer.from(digests.join(''), 'latin1');
}

/** A compact range's roots back to back. */
export function rangeBytes(range: CompactRange): ArrayBuffer {
  const hashes = range.hashes();
  const out = new Uint8Array(hashes.length * 32);
  hashes.forEach((h, i) => out.set(h, i * 32));
  return out.buffer;
}

/** The compact range of a tree of `size` leaves from its roots back to back. */
export function rangeFrom(size: number, roots: ArrayBuffer): CompactRange {
  const hashes: Uint8Array[] = [];
  for (let at = 0; at < roots.byteLength; at += 32) hashes.push(new Uint8Array(roots, at, 32));
  return new CompactRange(size, hashes);
}

/** A tile node as the reply carries it: f64 level, f64 index, 32-byte hash. */
const TILE_RECORD = 48;

/** The tile nodes of a reply: [level, index, hash] each. */
export function tileRecords(tiles: ArrayBuffer): Array<[number, number, Buffer]> {
  const out: Array<[number, number, Buffer]> = [];
  const v = new DataView(tiles);
  for (let at = 0; at + TILE_RECORD <= tiles.byteLength; at += TILE_RECORD) out.push([v.getFloat64(at, true), v.getFloat64(at + 8, true), Buffer.from(tiles, at + 16, 32)]);
  return out;
}

/**
 * Appends `count` leaf hashes (back to back in `idx`) to the tree of `size` leaves with roots
 * `roots`. Moved here from the writer's event loop with the deferred publish entries: ≈ 1 node
 * hash per record, 0.88 µs per leaf measured (compact-range.ts appendLeaves).
 */
export function advanceTree(size: number, roots: ArrayBuffer, idx: Buffer, count: number, every: number): { range: ArrayBuffer; tiles: ArrayBuffer } {
  const range = rangeFrom(size, roots);
  const tiles: Buffer[] = [];
  range.appendLeaves(idx, 0, count, {
    every,
    visit: (level, index, hash) => {
      const t = Buffer.allocUnsafe(TILE_RECORD);
      t.writeDoubleLE(level, 0);
      t.writeDoubleLE(index, 8);
      t.set(hash, 16);
      tiles.push(t);
    },
  });
  const all = Buffer.concat(tiles);
  return { range: rangeBytes(range), tiles: new Uint8Array(all).buffer };
}

/**
 * Writes each side payload's SHA-256 (base64url) into its line's 43 hash bytes: the hash that
 * Ledger.appendPublish leaves to this thread (publish-line.ts). Side layout per payload: u32
 * offset of the hash bytes in `data`, u32 length, the payload.
 */
export function fillHashes(data: Buffer, side: Buffer, sideEnd: number): void {
  let at = 0;
  while (at < sideEnd) {
    const hashAt = side.readUInt32LE(at);
    const len = side.readUInt32LE(at + 4);
    const end = at + 8 + len;
    if (end > sideEnd || hashAt + HASH_CHARS > data.length) throw new Error(`ledger I/O thread: side entry at ${at} overruns its buffers`);
    data.write(hash('sha256', side.subarray(at + 8, end), 'base64url'), hashAt, HASH_CHARS, 'latin1');
    at = end;
  }
}

function writeFully(fd: number, buf: Buffer): void {
  let off = 0;
  while (off < buf.length) off += writeSync(fd, buf, off, buf.length - off);
}

/** The job, on whichever thread calls it. Returns the reply without posting it. */
export function runIoJob(job: IoJob): { reply: IoReply; transfer: ArrayBuffer[] } {
  const buf = Buffer.from(job.data, 0, job.data.byteLength);
  let stage: 'write' | 'sync' = 'write';
  try {
    if (job.side !== undefined) fillHashes(buf, Buffer.from(job.side, 0, job.side.byteLength), job.sideEnd);
    const idx = leafHashes(buf, job.end, job.count);
    writeFully(job.dataFd, buf.subarray(1, job.end));
    writeFully(job.idxFd, idx);
    if (job.sync) {
      stage = 'sync';
      fdatasyncSync(job.dataFd);
    }
    // The tree after the durable write: the writer commits it (and writes the tiles) on the reply.
    const { range, tiles } = advanceTree(job.rangeSize, job.range, idx, job.count, job.tileEvery);
    const idxAb = idx.byteOffset === 0 && idx.buffer.byteLength === idx.length ? (idx.buffer as ArrayBuffer) : (new Uint8Array(idx).buffer as ArrayBuffer);
    const transfer = [job.data, idxAb, range, tiles];
    if (job.side !== undefined) transfer.push(job.side);
    return { reply: { id: job.id, ok: true, data: job.data, side: job.side, idx: idxAb, range, tiles }, transfer };
  } catch (e) {
    const err = e as NodeJS.ErrnoException;
    const reply: IoReply = { id: job.id, ok: false, data: job.data, side: job.side, stage, message: err?.message ?? String(e) };
    if (err?.code !== undefined) reply.code = err.code;
    return { reply, transfer: job.side !== undefined ? [job.data, job.side] : [job.data] };
  }
}

// Only in the thread the writer started for it (workerData marks it): another worker that imports
// this module (through writer.js) must not answer its parent's messages.
if (!isMainThread && parentPort && (workerData as { ledgerIo?: unknown } | null)?.ledgerIo === true) {
  const port = parentPort;
  port.on('message', (job: IoJob) => {
    const { reply, transfer } = runIoJob(job);
    port.postMessage(reply, transfer);
  });
}

/** The writer's handle on its I/O thread: one job at a time (the run loop awaits each). */
export class IoThread {
  readonly #worker: Worker;
  #next = 1;
  readonly #waiting = new Map<number, { resolve: (r: IoReply) => void; reject: (e: Error) => void }>();
  #dead: Error | undefined;

  constructor() {
    this.#worker = new Worker(new URL('./io-worker.js', import.meta.url), { workerData: { ledgerIo: true } });
    // Referenced only while a job is out: an idle ledger must not keep the process alive.
    this.#worker.unref();
    this.#worker.on('message', (r: IoReply) => {
      const w = this.#waiting.get(r.id);
      if (!w) return;
      this.#waiting.delete(r.id);
      if (this.#waiting.size === 0) this.#worker.unref();
      w.resolve(r);
    });
    this.#worker.on('error', (e: Error) => this.#fail(e));
    this.#worker.on('exit', (code) => this.#fail(new Error(`ledger I/O thread exited (code ${code})`)));
  }

  #fail(e: Error): void {
    this.#dead ??= e;
    const waiting = [...this.#waiting.values()];
    this.#waiting.clear();
    for (const w of waiting) w.reject(e);
  }

  /** Runs `job` there; `job.data` is transferred (detached here until the reply gives it back). */
  run(job: Omit<IoJob, 'id'>): Promise<IoReply> {
    if (this.#dead) return Promise.reject(this.#dead);
    const id = this.#next++;
    return new Promise<IoReply>((resolve, reject) => {
      this.#waiting.set(id, { resolve, reject });
      this.#worker.ref();
      const transfer = [job.data, job.range];
      if (job.side !== undefined) transfer.push(job.side);
      this.#worker.postMessage({ ...job, id } satisfies IoJob, transfer);
    });
  }

  async close(): Promise<void> {
    this.#dead ??= new Error('ledger I/O thread closed');
    await this.#worker.terminate();
  }
}
