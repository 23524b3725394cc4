/**
 * Verifies a whole ledger against its signed checkpoints — the engine of `witness verify`.
 *
 * Reads as a checklist (sigstore-js style), each step computing and then comparing:
 *   1. verifyCheckpoints  — every note in the checkpoint log is signed by the trusted key, holds
 *                           its own position as epoch (no checkpoint removed or inserted), sizes
 *                           never shrink, and (with the sealing key) every forward-secure seal holds.
 *   2. verifyRecords      — every record, in order: its line claims its own index (no record
 *                           removed, inserted or swapped), its leaf hash matches the segment index,
 *                           segment names are contiguous; checkpoint records agree with the log.
 *   3. compare roots      — the Merkle root recomputed from the records at each checkpoint's size
 *                           equals the signed root (catches consistent forgeries of records + idx).
 *   4. truncation         — no checkpoint covers more records than the ledger holds.
 *
 * Never throws for tampering: it returns a report whose `failures` say what, where (record
 * index / checkpoint epoch) and why. It throws WitnessError only when it cannot verify at all
 * (no ledger, unreadable files): the CLI maps that to exit code 2.
 *
 * Threads (step 2): the per-record work that needs nothing from earlier records — each line's leaf
 * hash, its `{"i":N` prefix, spotting checkpoint records — is done chunk by chunk
 * (verify-worker.ts scanChunk); on a big ledger worker threads scan chunks ahead while the main
 * thread does, in order, everything that depends on position: the idx comparison, the index
 * check, the Merkle tree and the root comparisons, and every failure. The main thread scans
 * chunks itself whenever the workers are behind. The report is built by the same code whoever
 * scanned a chunk, so it is the same with or without workers.
 */
import { openSync, closeSync, fstatSync, existsSync, statSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { join, basename } from 'node:path';
import { Worker } from 'node:worker_threads';
import { WitnessError, type WitnessErrorCode } from '../errors.js';
import { CompactRange } from '../merkle/compact-range.js';
import { EMPTY_ROOT } from '../merkle/hash.js';
import { openCheckpoint } from '../checkpoint/checkpoint.js';
import { ed25519NoteVerifier, parseNote } from '../checkpoint/note.js';
import { SealVerifier } from '../checkpoint/seal.js';
import { verifierKey } from '../keys/key-id.js';
import { SEGMENTS_DIR } from './layout.js';
import { LEAF_HASH_SIZE, listSegments, preadExact, sizeOrZero, type SegmentInfo } from './segment.js';
import { parseWitnessExtension, readCheckpointLog } from './checkpoint-log.js';
import { WORKER_ROLE, scanChunk, type ChunkJob, type ChunkResult, type WorkerRequest, type WorkerResponse } from './verify-worker.js';

export interface VerifyOptions {
  /** The trusted broker key: its note name (the ledger origin) and Ed25519 public key. */
  key: { name: string; publicKey: Uint8Array };
  /** The initial sealing key printed by `witness init`; when given, every seal is checked. */
  sealKey?: Uint8Array;
  /** How many failures to describe (counting goes on). Default 20. */
  maxFailures?: number;
  /** Called now and then with records checked so far and the total. */
  onProgress?: (done: number, total: number) => void;
  /**
   * Worker threads that scan records beside the main thread. Default: none for a ledger of less
   * than VERIFY_DEFAULTS.parallelMinBytes of records (48 MiB: starting a worker costs more than
   * it saves below that), else os.availableParallelism() - 1. Never more than that (at least 1).
   * 0: single-threaded. The report is the same either way.
   */
  workers?: number;
  /** Bytes of a segment scanned as one chunk (the unit of work handed to a thread). Default 1 MiB. */
  chunkBytes?: number;
  /**
   * Verify records 0..upTo−1 only, against the checkpoints of at most that size: for a ledger that
   * is being written (give the writer's durable size). What lies past it — records, index entries,
   * a half-written line, a checkpoint of a larger tree — is not looked at: the writer writes a
   * batch's records and index entries concurrently, so past the durable size either may be ahead.
   * Default: everything on disk.
   */
  upTo?: number;
}

export const VERIFY_DEFAULTS = {
  /**
   * Below this many bytes of records verification stays single-threaded. A worker is ready to
   * take chunks ≈ 45–80 ms after it is created (its own Node bootstrap and module loading; more on
   * a loaded machine), and on the bench machine two threads hash only ≈ 1.3–1.8× as fast as one.
   * Measured with `node dist/bench/ledger.js --threshold` (2 cores, three runs, worker/single):
   * 0.72, 0.94, 0.89 at 15.8 MiB; 1.09, 0.92, 0.92 at 31.6 MiB; 1.23, 1.29, 1.07 at 63.4 MiB.
   */
  parallelMinBytes: 48 * 1024 * 1024,
  /** ~3,000 records: ≈ 2–4 ms of scanning, against ≈ 0.05 ms to post a job and its result. */
  chunkBytes: 1024 * 1024,
} as const;

export interface VerifyFailure {
  code: WitnessErrorCode;
  message: string;
  /** The first record index concerned, when there is one. */
  index?: number;
  /** The checkpoint epoch concerned, when there is one. */
  checkpoint?: number;
  details?: Record<string, unknown>;
}

export interface VerifyReport {
  ok: boolean;
  /** The verifier key string of the key trusted. */
  key: string;
  records: { total: number; valid: number };
  /** unsigned: checkpoints that carry no signature at all by the trusted key (wrong key, or replaced). */
  checkpoints: { total: number; valid: number; unsigned: number; sealsChecked: boolean };
  segments: number;
  /** Records after the last valid checkpoint: not (yet) covered by any signature. */
  uncovered: number;
  lastCheckpoint?: { epoch: number; size: number; time: number };
  /** Bytes after the last complete record (an unclean stop not yet recovered by a writer). */
  tornTailBytes: number;
  /** Records at the end of the last segment whose index entries were not yet written (same cause). */
  unindexedTail: number;
  failures: VerifyFailure[];
  failureCount: number;
}

interface TrustedCheckpoint {
  epoch: number;
  size: number;
  root: Uint8Array;
  time: number;
}

class Failures {
  readonly list: VerifyFailure[] = [];
  count = 0;
  constructor(readonly max: number) {}
  add(f: VerifyFailure): void {
    this.count++;
    if (this.list.length < this.max) this.list.push(f);
  }
}

export async function verifyLedger(dir: string, options: VerifyOptions): Promise<VerifyReport> {
  if (!existsSync(join(dir, SEGMENTS_DIR))) {
    throw new WitnessError('WITNESS_ERR_LEDGER_NOT_FOUND', `${dir}: no ledger here (expected a ${SEGMENTS_DIR}/ folder)`, { details: { dir } });
  }
  const failures = new Failures(options.maxFailures ?? 20);
  // Step 2's work is planned first, so that on a big ledger the worker threads start up (≈ 50 ms)
  // while step 1 runs.
  const plan = planRecords(dir, options);
  try {
    return await verifyPlanned(dir, plan, options, failures);
  } finally {
    await plan.source.close();
  }
}

async function verifyPlanned(dir: string, plan: RecordPlan, options: VerifyOptions, failures: Failures): Promise<VerifyReport> {
  const { trusted, total: cpTotal, unsigned, sealsChecked } = verifyCheckpoints(dir, options, failures);
  const upTo = options.upTo;
  if (upTo !== undefined && (!Number.isSafeInteger(upTo) || upTo < 0)) {
    throw new WitnessError('WITNESS_ERR_INVALID_ARGUMENT', `verify options.upTo: expected an integer >= 0, got ${String(upTo)}`);
  }
  const inRange = upTo === undefined ? trusted : trusted.filter((c) => c.size <= upTo);
  const rec = await verifyRecords(plan, inRange, failures, options.onProgress, upTo);

  // 4. Truncation: a signed checkpoint covering records that are not there.
  const maxSize = inRange.reduce((m, c) => Math.max(m, c.size), 0);
  if (maxSize > rec.total) {
    failures.add({
      code: 'WITNESS_ERR_LEDGER_TRUNCATED',
      index: rec.total,
      message: `a signed checkpoint covers ${maxSize} records but the ledger holds ${rec.total}: records ${rec.total}..${maxSize - 1} were cut`,
      details: { checkpointSize: maxSize, records: rec.total },
    });
  }
  const last = inRange.filter((c) => c.size <= rec.total).at(-1);
  return {
    ok: failures.count === 0,
    key: verifierKey(options.key.name, options.key.publicKey),
    records: { total: rec.total, valid: rec.total - rec.bad },
    checkpoints: { total: cpTotal, valid: trusted.length, unsigned, sealsChecked },
    segments: rec.segments,
    uncovered: rec.total - (last?.size ?? 0),
    ...(last ? { lastCheckpoint: { epoch: last.epoch, size: last.size, time: last.time } } : {}),
    tornTailBytes: rec.tornTailBytes,
    unindexedTail: rec.unindexedTail,
    failures: failures.list,
    failureCount: failures.count,
  };
}

/** Step 1: signatures, epochs, monotonic sizes, seals. Returns the checkpoints that can be trusted. */
function verifyCheckpoints(
  dir: string,
  options: VerifyOptions,
  failures: Failures,
): { trusted: TrustedCheckpoint[]; total: number; unsigned: number; sealsChecked: boolean } {
  let notes: string[];
  try {
    notes = readCheckpointLog(dir).notes;
  } catch (e) {
    if (!(e instanceof WitnessError) || e.code === 'WITNESS_ERR_IO') throw e;
    failures.add({ code: e.code, message: e.message, ...(e.details ? { details: e.details } : {}) });
    return { trusted: [], total: 0, unsigned: 0, sealsChecked: false };
  }
  const verifier = ed25519NoteVerifier(options.key.name, options.key.publicKey);
  const seals = options.sealKey ? new SealVerifier(options.sealKey) : undefined;
  const trusted: TrustedCheckpoint[] = [];
  let prevSize = 0;
  let unsigned = 0;
  for (let j = 0; j < notes.length; j++) {
    const note = notes[j]!;
    let cp;
    try {
      cp = openCheckpoint(note, [verifier]).checkpoint;
    } catch (e) {
      if (e instanceof WitnessError && e.code === 'WITNESS_ERR_CHECKPOINT_UNSIGNED') unsigned++;
      // Records from the last trusted size on are vouched for by nothing but this checkpoint.
      failures.add(asFailure(e, { checkpoint: j, index: prevSize }, `checkpoint at log position ${j} (records from ${prevSize} on lose their signature)`));
      continue;
    }
    const ext = parseWitnessExtension(cp.extensions);
    if (!ext) {
      failures.add({ code: 'WITNESS_ERR_LEDGER_CHECKPOINT_LOG', checkpoint: j, index: cp.size, message: `checkpoint at log position ${j}: no witness/v1 epoch line` });
      continue;
    }
    if (ext.epoch !== j) {
      failures.add({
        code: 'WITNESS_ERR_LEDGER_CHECKPOINT_LOG',
        checkpoint: j,
        index: cp.size,
        message:
          ext.epoch > j
            ? `checkpoint log position ${j} holds epoch ${ext.epoch}: ${ext.epoch - j} checkpoint(s) before it were removed`
            : `checkpoint log position ${j} holds epoch ${ext.epoch}: checkpoints were duplicated or reordered`,
        details: { position: j, epoch: ext.epoch },
      });
    }
    if (cp.origin !== options.key.name) {
      failures.add({ code: 'WITNESS_ERR_LEDGER_CHECKPOINT_LOG', checkpoint: j, message: `checkpoint ${j}: origin ${JSON.stringify(cp.origin)} is not the key's log ${JSON.stringify(options.key.name)}` });
    }
    if (cp.size < prevSize) {
      failures.add({ code: 'WITNESS_ERR_LEDGER_CHECKPOINT_LOG', checkpoint: j, index: cp.size, message: `checkpoint ${j}: tree size ${cp.size} is smaller than the previous ${prevSize} (an append-only log never shrinks)` });
    }
    if (seals) {
      try {
        seals.check(j, parseNote(note));
      } catch (e) {
        failures.add(asFailure(e, { checkpoint: j, index: prevSize }, `seal of checkpoint ${j} (records from ${prevSize} on are not sealed)`));
      }
    }
    prevSize = Math.max(prevSize, cp.size);
    trusted.push({ epoch: ext.epoch, size: cp.size, root: cp.rootHash, time: ext.time });
  }
  return { trusted, total: notes.length, unsigned, sealsChecked: seals !== undefined };
}

/** Steps 2 and 3: every record, its index, its leaf hash, and the roots at checkpoint sizes. */
async function verifyRecords(
  plan: RecordPlan,
  trusted: TrustedCheckpoint[],
  failures: Failures,
  onProgress?: (done: number, total: number) => void,
  limit = Infinity,
): Promise<{ total: number; bad: number; segments: number; tornTailBytes: number; unindexedTail: number }> {
  const { segments, jobs, segmentJobs, source } = plan;
  const byEpoch = new Map(trusted.map((c) => [c.epoch, c]));
  // Checkpoints in size order; several may share a size (idle checkpoints).
  const bySize = [...trusted].sort((a, b) => a.size - b.size);
  let next = 0;
  const range = new CompactRange();
  let bad = 0;
  let badSinceCheckpoint = 0;
  let lastGoodSize = 0;
  let tornTailBytes = 0;
  let unindexedTail = 0;
  const estimate = segments.reduce((n, s) => n + sizeOrZero(s.indexPath) / LEAF_HASH_SIZE, 0);

  const compareRoots = (): void => {
    while (next < bySize.length && bySize[next]!.size === range.size) {
      const cp = bySize[next++]!;
      const root = range.size === 0 ? EMPTY_ROOT : range.root();
      if (Buffer.compare(root, cp.root) !== 0) {
        if (badSinceCheckpoint === 0) bad += cp.size - lastGoodSize;
        failures.add({
          code: 'WITNESS_ERR_LEDGER_ROOT_MISMATCH',
          index: lastGoodSize,
          checkpoint: cp.epoch,
          message: `records ${lastGoodSize}..${cp.size - 1} do not hash to the root signed in checkpoint ${cp.epoch} (size ${cp.size})`,
          details: { from: lastGoodSize, to: cp.size, expected: b64(cp.root), actual: b64(root) },
        });
      } else {
        lastGoodSize = cp.size;
      }
      badSinceCheckpoint = 0;
    }
  };
  compareRoots();

  let position = 0;
  let jobIndex = 0;
  let segmentsSeen = 0;
  for (let s = 0; s < segments.length; s++) {
    if (position >= limit) break;
    segmentsSeen++;
    const seg = segments[s]!;
    const last = s === segments.length - 1;
    if (seg.first !== position) {
      failures.add({
        code: 'WITNESS_ERR_LEDGER_SEGMENT',
        index: position,
        message: `segment ${basename(seg.dataPath)} should start at index ${position} (records were ${seg.first > position ? 'removed' : 'added'} between segments)`,
        details: { segment: basename(seg.dataPath), expected: position, actual: seg.first },
      });
    }
    const idx = readAll(seg.indexPath);
    let k = 0;
    let tail = -1;
    for (let c = 0; c < segmentJobs[s]!; c++) {
      if (position >= limit) break;
      const r = await source.get(jobIndex++);
      if (r.tail >= 0) tail = r.tail;
      const n = r.count;
      const { leaves, claimed } = r;
      const checkpointLines = r.checkpointLines;
      // Fast path: every record has its idx entry and equals it (one memcmp for the chunk),
      // and claims its own position; only checkpoint records and roots are left to check.
      const clean =
        n > 0 && r.consecutive && claimed[0] === position && (k + n) * LEAF_HASH_SIZE <= idx.length && idx.compare(leaves, 0, n * LEAF_HASH_SIZE, k * LEAF_HASH_SIZE, (k + n) * LEAF_HASH_SIZE) === 0;
      let cpi = 0;
      if (clean) {
        // Leaves are appended in runs that end where something must happen after a record: a
        // checkpoint record to check (before it is appended), a checkpoint size (roots
        // compared), a progress report.
        for (let j = 0; j < n; ) {
          if (cpi < checkpointLines.length && checkpointLines[cpi]!.at === j) checkCheckpointRecord(bytes(checkpointLines[cpi++]!.line), position, byEpoch, failures);
          let e = n;
          if (cpi < checkpointLines.length) e = Math.min(e, checkpointLines[cpi]!.at);
          if (next < bySize.length) e = Math.min(e, j + (bySize[next]!.size - range.size));
          if (onProgress) e = Math.min(e, j + (0x10000 - (position % 0x10000)));
          e = Math.min(e, j + (limit - position));
          if (e <= j) break;
          range.appendLeaves(leaves, j * LEAF_HASH_SIZE, e - j);
          position += e - j;
          k += e - j;
          j = e;
          compareRoots();
          if (onProgress && (position & 0xffff) === 0) onProgress(position, estimate);
        }
        continue;
      }
      for (let j = 0; j < n && position < limit; j++) {
        let recordBad = false;
        const indexed = (k + 1) * LEAF_HASH_SIZE <= idx.length;
        if (!indexed && last) {
          // The writer was stopped between writing records and their index entries; the idx is
          // derived data, rebuilt at the next open. The records themselves are still checked.
          unindexedTail++;
        } else if (!indexed || idx.compare(leaves, j * LEAF_HASH_SIZE, (j + 1) * LEAF_HASH_SIZE, k * LEAF_HASH_SIZE, (k + 1) * LEAF_HASH_SIZE) !== 0) {
          recordBad = true;
          failures.add({
            code: 'WITNESS_ERR_LEDGER_LEAF_HASH',
            index: position,
            message: `record ${position}: its leaf hash does not match entry ${k} of ${basename(seg.indexPath)} (record or index altered)`,
            details: { segment: basename(seg.dataPath), line: k + 1 },
          });
        }
        const checkpointLine = cpi < checkpointLines.length && checkpointLines[cpi]!.at === j ? checkpointLines[cpi++]!.line : undefined;
        const claimedIndex = claimed[j]! < 0 ? undefined : claimed[j]!;
        if (claimedIndex !== position) {
          recordBad = true;
          failures.add({
            code: claimedIndex === undefined ? 'WITNESS_ERR_LEDGER_RECORD_MALFORMED' : 'WITNESS_ERR_LEDGER_RECORD_INDEX',
            index: position,
            message:
              claimedIndex === undefined
                ? `record ${position}: line ${k + 1} of ${basename(seg.dataPath)} does not start with {"i":${position}`
                : `record at position ${position} claims index ${claimedIndex} (records ${claimedIndex > position ? 'removed' : 'inserted or reordered'} here)`,
            details: { segment: basename(seg.dataPath), line: k + 1, claimed: claimedIndex ?? null },
          });
        } else if (checkpointLine !== undefined) {
          checkCheckpointRecord(bytes(checkpointLine), position, byEpoch, failures);
        }
        if (recordBad) {
          bad++;
          badSinceCheckpoint++;
        }
        range.appendLeaves(leaves, j * LEAF_HASH_SIZE, 1);
        position++;
        k++;
        compareRoots();
        if (onProgress && (position & 0xffff) === 0) onProgress(position, estimate);
      }
    }
    // At the limit, what follows in this segment (records, index entries, a torn line) is not ours to judge.
    if (position >= limit) break;
    if (k * LEAF_HASH_SIZE !== idx.length && idx.length > k * LEAF_HASH_SIZE) {
      failures.add({
        code: 'WITNESS_ERR_LEDGER_LEAF_HASH',
        index: position,
        message: `${basename(seg.indexPath)} holds ${idx.length / LEAF_HASH_SIZE} leaf hashes for ${k} records (records removed from the segment)`,
        details: { segment: basename(seg.dataPath), records: k, hashes: idx.length / LEAF_HASH_SIZE },
      });
    }
    if (tail >= 0) {
      const tornBytes = jobs[jobIndex - 1]!.fileSize - tail;
      if (last) tornTailBytes = tornBytes;
      else {
        failures.add({ code: 'WITNESS_ERR_LEDGER_RECORD_MALFORMED', index: position, message: `${basename(seg.dataPath)} ends with ${tornBytes} bytes that are not a complete record` });
      }
    }
  }
  onProgress?.(position, position);
  return { total: position, bad, segments: Number.isFinite(limit) ? segmentsSeen : segments.length, tornTailBytes, unindexedTail };
}

/** The records' work: the segments as listed now, cut into chunks, and who scans them. */
interface RecordPlan {
  segments: SegmentInfo[];
  jobs: ChunkJob[];
  /** Chunks per segment, in order. */
  segmentJobs: number[];
  source: ChunkSource;
}

function planRecords(dir: string, options: VerifyOptions): RecordPlan {
  const chunkBytes = options.chunkBytes ?? VERIFY_DEFAULTS.chunkBytes;
  if (!Number.isSafeInteger(chunkBytes) || chunkBytes <= 0) {
    throw new WitnessError('WITNESS_ERR_INVALID_ARGUMENT', `verify options.chunkBytes: expected a positive integer, got ${String(chunkBytes)}`);
  }
  const segments = listSegments(dir);
  // Each segment's bytes as of now, in ranges of chunkBytes (at least one per segment).
  const jobs: ChunkJob[] = [];
  const segmentJobs: number[] = [];
  let totalBytes = 0;
  for (const seg of segments) {
    const fileSize = statSync(seg.dataPath).size;
    totalBytes += fileSize;
    const n = Math.max(1, Math.ceil(fileSize / chunkBytes));
    for (let c = 0; c < n; c++) jobs.push({ path: seg.dataPath, fileSize, from: c * chunkBytes, to: Math.min(fileSize, (c + 1) * chunkBytes) });
    segmentJobs.push(n);
  }
  const workers = workerCount(options, totalBytes);
  return { segments, jobs, segmentJobs, source: workers > 0 ? new ParallelSource(jobs, workers) : new InlineSource(jobs) };
}

/** The number of worker threads to use (see VerifyOptions.workers). */
function workerCount(options: VerifyOptions, totalBytes: number): number {
  const max = Math.max(1, availableParallelism() - 1);
  const w = options.workers;
  if (w === undefined) return totalBytes >= VERIFY_DEFAULTS.parallelMinBytes ? max : 0;
  if (!Number.isSafeInteger(w) || w < 0) {
    throw new WitnessError('WITNESS_ERR_INVALID_ARGUMENT', `verify options.workers: expected a non-negative integer, got ${String(w)}`);
  }
  return Math.min(w, max);
}

/** Chunk results in job order, whoever computes them. */
interface ChunkSource {
  get(id: number): Promise<ChunkResult>;
  close(): Promise<void>;
}

/** Every chunk scanned on the calling thread, when asked for. */
class InlineSource implements ChunkSource {
  constructor(readonly jobs: readonly ChunkJob[]) {}

  async get(id: number): Promise<ChunkResult> {
    return scanInline(this.jobs[id]!);
  }

  async close(): Promise<void> {}
}

function scanInline(job: ChunkJob): ChunkResult {
  const fd = openSync(job.path, 'r');
  try {
    return scanChunk(fd, job);
  } finally {
    closeSync(fd);
  }
}

/** Jobs queued per worker: enough that a worker never waits while the main thread is busy. */
const WORKER_QUEUE = 6;
/** How far past the chunk being consumed work may be handed out (bounds buffered results). */
const LOOKAHEAD = 32;

/**
 * Workers scan chunks ahead, in order; the main thread takes results in order. When the one it
 * needs is not back yet it scans a chunk itself: the one it needs if no worker has it, else the
 * last unassigned one within LOOKAHEAD — from the far end, so that the workers keep the chunks
 * needed next and the main thread, which also keeps the tree, takes no more than its share.
 * (Taking the next chunk instead left the worker idle ~25% of the time in `witness verify` on
 * the bench ledger: the main thread ended up scanning half the chunks and hashing every node.)
 * A worker that dies hands its chunks back to the main thread: the report never depends on the
 * workers.
 */
class ParallelSource implements ChunkSource {
  readonly #jobs: readonly ChunkJob[];
  readonly #workers: Array<{ worker: Worker; jobs: Set<number>; alive: boolean; ready: boolean }> = [];
  /** Results (or the error scanning the chunk threw) that came back before they were needed. */
  readonly #results = new Map<number, ChunkResult | Error>();
  /** Chunks a dead worker had: the main thread scans them. */
  readonly #orphans = new Set<number>();
  /** Which chunks have been handed to someone (a worker or the main thread). */
  readonly #assigned: Uint8Array;
  /** No chunk below this is unassigned. */
  #next = 0;
  /** The chunk being waited for. */
  #consumed = 0;
  #wake: (() => void) | undefined;
  #closing = false;

  constructor(jobs: readonly ChunkJob[], count: number) {
    this.#jobs = jobs;
    this.#assigned = new Uint8Array(jobs.length);
    for (let i = 0; i < count; i++) {
      let worker: Worker;
      try {
        worker = new Worker(new URL('./verify-worker.js', import.meta.url), { workerData: { role: WORKER_ROLE } });
      } catch {
        break; // no thread to be had: the main thread does the rest, as it would have anyway
      }
      // Not `ready` until its modules are loaded (≈ 35–200 ms on the bench machine, depending on
      // load): chunks handed out before would wait there while the main thread needs them.
      const slot = { worker, jobs: new Set<number>(), alive: true, ready: false };
      this.#workers.push(slot);
      slot.worker.on('message', (m: WorkerResponse) => {
        if ('ready' in m) {
          slot.ready = true;
          this.#feed();
          return;
        }
        slot.jobs.delete(m.id);
        this.#results.set(m.id, 'error' in m ? workerError(m.error) : { ...m.result, leaves: Buffer.from(m.result.leaves), claimed: new Float64Array(m.result.claimed) });
        this.#feed();
        this.#wakeUp();
      });
      const die = (): void => {
        if (!slot.alive) return;
        slot.alive = false;
        for (const id of slot.jobs) this.#orphans.add(id);
        slot.jobs.clear();
        this.#wakeUp();
      };
      slot.worker.on('error', die);
      slot.worker.on('messageerror', die);
      slot.worker.on('exit', die);
    }
    this.#feed();
  }

  async get(id: number): Promise<ChunkResult> {
    this.#consumed = id;
    this.#feed();
    for (;;) {
      const done = this.#results.get(id);
      if (done !== undefined) {
        this.#results.delete(id);
        if (done instanceof Error) throw done;
        return done;
      }
      if (this.#orphans.delete(id)) return scanInline(this.#jobs[id]!);
      if (this.#assigned[id] === 0) {
        this.#assign(id);
        const r = scanInline(this.#jobs[id]!);
        // Let the event loop deliver what the workers sent (results, `ready`): awaiting a
        // resolved promise alone would not.
        await new Promise<void>((resolve) => setImmediate(resolve));
        return r;
      }
      const mine = this.#lastUnassigned(id + LOOKAHEAD);
      if (mine >= 0) {
        // The chunk needed is being scanned by a worker: scan another one meanwhile, then let the
        // event loop deliver what the workers sent.
        this.#assign(mine);
        try {
          this.#results.set(mine, scanInline(this.#jobs[mine]!));
        } catch (e) {
          this.#results.set(mine, e as Error);
        }
        await new Promise<void>((resolve) => setImmediate(resolve));
        continue;
      }
      await new Promise<void>((resolve) => (this.#wake = resolve));
    }
  }

  async close(): Promise<void> {
    this.#closing = true;
    await Promise.all(this.#workers.map((w) => w.worker.terminate()));
  }

  /** Hands out chunks, in order, to workers with room in their queue. */
  #feed(): void {
    if (this.#closing) return;
    for (const slot of this.#workers) {
      // Near the end, shorter queues: a chunk queued at a worker is one the main thread can no
      // longer take, and the last ones decide when verification ends.
      const depth = Math.min(WORKER_QUEUE, Math.max(1, Math.floor((this.#jobs.length - this.#next) / (this.#workers.length + 1))));
      while (slot.alive && slot.ready && slot.jobs.size < depth && this.#next < this.#jobs.length && this.#next < this.#consumed + LOOKAHEAD) {
        const id = this.#next;
        this.#assign(id);
        slot.jobs.add(id);
        const req: WorkerRequest = { id, job: this.#jobs[id]! };
        slot.worker.postMessage(req);
      }
    }
  }

  #assign(id: number): void {
    this.#assigned[id] = 1;
    while (this.#next < this.#jobs.length && this.#assigned[this.#next] === 1) this.#next++;
  }

  /** The last unassigned chunk below `end`, or -1. */
  #lastUnassigned(end: number): number {
    for (let id = Math.min(end, this.#jobs.length) - 1; id >= this.#next; id--) if (this.#assigned[id] === 0) return id;
    return -1;
  }

  #wakeUp(): void {
    const wake = this.#wake;
    this.#wake = undefined;
    wake?.();
  }
}

function workerError(e: { message: string; code?: WitnessErrorCode; errno?: string }): Error {
  if (e.code !== undefined) return new WitnessError(e.code, e.message);
  return Object.assign(new Error(e.message), e.errno !== undefined ? { code: e.errno } : {});
}

function bytes(line: Uint8Array): Buffer {
  return Buffer.from(line.buffer, line.byteOffset, line.byteLength);
}

function checkCheckpointRecord(line: Buffer, index: number, byEpoch: Map<number, TrustedCheckpoint>, failures: Failures): void {
  let rec: unknown;
  try {
    rec = JSON.parse(line.toString('utf8'));
  } catch {
    failures.add({ code: 'WITNESS_ERR_LEDGER_RECORD_MALFORMED', index, message: `record ${index}: not valid JSON` });
    return;
  }
  const r = rec as { e?: unknown; cp?: { n?: unknown; size?: unknown; root?: unknown } };
  if (r.e !== 'checkpoint') return;
  const n = r.cp?.n;
  if (typeof n !== 'number') {
    failures.add({ code: 'WITNESS_ERR_LEDGER_RECORD_MALFORMED', index, message: `record ${index}: checkpoint record without a checkpoint number` });
    return;
  }
  const cp = byEpoch.get(n);
  if (!cp) {
    failures.add({
      code: 'WITNESS_ERR_LEDGER_CHECKPOINT_LOG',
      index,
      checkpoint: n,
      message: `record ${index} records checkpoint ${n}, which is missing from the checkpoint log (or not validly signed)`,
    });
    return;
  }
  if (cp.size !== r.cp?.size || b64(cp.root) !== r.cp?.root) {
    failures.add({
      code: 'WITNESS_ERR_LEDGER_CHECKPOINT_LOG',
      index,
      checkpoint: n,
      message: `record ${index} records checkpoint ${n} with size ${String(r.cp?.size)}, but the log's checkpoint ${n} has size ${cp.size} and another root`,
    });
  }
}

function asFailure(e: unknown, where: { checkpoint?: number; index?: number }, what: string): VerifyFailure {
  if (e instanceof WitnessError) return { code: e.code, message: `${what}: ${e.message}`, ...where, ...(Object.keys(e.details).length ? { details: e.details } : {}) };
  throw e;
}

function b64(b: Uint8Array): string {
  return Buffer.from(b).toString('base64');
}


function readAll(path: string): Buffer {
  try {
    const fd = openSync(path, 'r');
    try {
      const size = fstatSync(fd).size;
      return size === 0 ? Buffer.alloc(0) : preadExact(fd, size, 0, path);
    } finally {
      closeSync(fd);
    }
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return Buffer.alloc(0);
    throw new WitnessError('WITNESS_ERR_IO', `${path}: ${(e as Error).message}`, { cause: e });
  }
}
