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
 */
import { openSync, closeSync, fstatSync, existsSync, readSync } from 'node:fs';
import { hash } from 'node:crypto';
import { join, basename } from 'node:path';
import { WitnessError, type WitnessErrorCode } from '../errors.js';
import { CompactRange } from '../merkle/compact-range.js';
import { EMPTY_ROOT } from '../merkle/hash.js';
import { openCheckpoint } from '../checkpoint/checkpoint.js';
import { ed25519NoteVerifier, parseNote } from '../checkpoint/note.js';
import { SealVerifier } from '../checkpoint/seal.js';
import { verifierKey } from '../keys/key-id.js';
import { SEGMENTS_DIR } from './layout.js';
import { LEAF_HASH_SIZE, listSegments, preadExact } from './segment.js';
import { lineIndex, isCheckpointLine } from './record.js';
import { parseWitnessExtension, readCheckpointLog } from './checkpoint-log.js';

export interface VerifyOptions {
  /** The trusted broker key: its note name (the ledger origin) and Ed25519 public key. */
  key: { name: string; publicKey: Uint8Array };
  /** The initial sealing key printed by `witness init`; when given, every seal is checked. */
  sealKey?: Uint8Array;
  /** How many failures to describe (counting goes on). Default 20. */
  maxFailures?: number;
  /** Called now and then with records checked so far and the total. */
  onProgress?: (done: number, total: number) => void;
}

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
  const { trusted, total: cpTotal, unsigned, sealsChecked } = verifyCheckpoints(dir, options, failures);
  const rec = verifyRecords(dir, trusted, failures, options.onProgress);

  // 4. Truncation: a signed checkpoint covering records that are not there.
  const maxSize = trusted.reduce((m, c) => Math.max(m, c.size), 0);
  if (maxSize > rec.total) {
    failures.add({
      code: 'WITNESS_ERR_LEDGER_TRUNCATED',
      index: rec.total,
      message: `a signed checkpoint covers ${maxSize} records but the ledger holds ${rec.total}: records ${rec.total}..${maxSize - 1} were cut`,
      details: { checkpointSize: maxSize, records: rec.total },
    });
  }
  const last = trusted.filter((c) => c.size <= rec.total).at(-1);
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
function verifyRecords(
  dir: string,
  trusted: TrustedCheckpoint[],
  failures: Failures,
  onProgress?: (done: number, total: number) => void,
): { total: number; bad: number; segments: number; tornTailBytes: number; unindexedTail: number } {
  const segments = listSegments(dir);
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
  const estimate = segments.reduce((n, s) => n + sizeOf(s.indexPath) / LEAF_HASH_SIZE, 0);

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
  for (let s = 0; s < segments.length; s++) {
    const seg = segments[s]!;
    if (seg.first !== position) {
      failures.add({
        code: 'WITNESS_ERR_LEDGER_SEGMENT',
        index: position,
        message: `segment ${basename(seg.dataPath)} should start at index ${position} (records were ${seg.first > position ? 'removed' : 'added'} between segments)`,
        details: { segment: basename(seg.dataPath), expected: position, actual: seg.first },
      });
    }
    const { data, size: dataSize } = readWithSpareByte(seg.dataPath);
    const idx = readAll(seg.indexPath);
    let start = 1;
    let k = 0;
    for (;;) {
      const nl = data.indexOf(0x0a, start);
      if (nl < 0) break;
      const line = data.subarray(start, nl);
      // Leaf hash = SHA-256(0x00 || line): write the 0x00 over the byte before the line (the
      // previous newline, or the spare byte) and hash in place — no copy per record.
      const saved = data[start - 1]!;
      data[start - 1] = 0;
      const leaf = hash('sha256', data.subarray(start - 1, nl), 'buffer');
      data[start - 1] = saved;

      let recordBad = false;
      const indexed = (k + 1) * LEAF_HASH_SIZE <= idx.length;
      if (!indexed && s === segments.length - 1) {
        // The writer was stopped between writing records and their index entries; the idx is
        // derived data, rebuilt at the next open. The records themselves are still checked.
        unindexedTail++;
      } else if (!indexed || idx.compare(leaf, 0, LEAF_HASH_SIZE, k * LEAF_HASH_SIZE, (k + 1) * LEAF_HASH_SIZE) !== 0) {
        recordBad = true;
        failures.add({
          code: 'WITNESS_ERR_LEDGER_LEAF_HASH',
          index: position,
          message: `record ${position}: its leaf hash does not match entry ${k} of ${basename(seg.indexPath)} (record or index altered)`,
          details: { segment: basename(seg.dataPath), line: k + 1 },
        });
      }
      const claimed = lineIndex(line);
      if (claimed !== position) {
        recordBad = true;
        failures.add({
          code: claimed === undefined ? 'WITNESS_ERR_LEDGER_RECORD_MALFORMED' : 'WITNESS_ERR_LEDGER_RECORD_INDEX',
          index: position,
          message:
            claimed === undefined
              ? `record ${position}: line ${k + 1} of ${basename(seg.dataPath)} does not start with {"i":${position}`
              : `record at position ${position} claims index ${claimed} (records ${claimed > position ? 'removed' : 'inserted or reordered'} here)`,
          details: { segment: basename(seg.dataPath), line: k + 1, claimed: claimed ?? null },
        });
      } else if (isCheckpointLine(line)) {
        checkCheckpointRecord(line, position, byEpoch, failures);
      }
      if (recordBad) {
        bad++;
        badSinceCheckpoint++;
      }
      range.append(leaf);
      position++;
      k++;
      compareRoots();
      if (onProgress && (position & 0xffff) === 0) onProgress(position, estimate);
      start = nl + 1;
    }
    if (k * LEAF_HASH_SIZE !== idx.length && idx.length > k * LEAF_HASH_SIZE) {
      failures.add({
        code: 'WITNESS_ERR_LEDGER_LEAF_HASH',
        index: position,
        message: `${basename(seg.indexPath)} holds ${idx.length / LEAF_HASH_SIZE} leaf hashes for ${k} records (records removed from the segment)`,
        details: { segment: basename(seg.dataPath), records: k, hashes: idx.length / LEAF_HASH_SIZE },
      });
    }
    if (start <= dataSize) {
      if (s === segments.length - 1) tornTailBytes = dataSize - start + 1;
      else {
        failures.add({ code: 'WITNESS_ERR_LEDGER_RECORD_MALFORMED', index: position, message: `${basename(seg.dataPath)} ends with ${dataSize - start + 1} bytes that are not a complete record` });
      }
    }
  }
  onProgress?.(position, position);
  return { total: position, bad, segments: segments.length, tornTailBytes, unindexedTail };
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

function sizeOf(path: string): number {
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

/** The file at offset 1 of a buffer one byte longer (see the in-place leaf hashing above). */
function readWithSpareByte(path: string): { data: Buffer; size: number } {
  const fd = openSync(path, 'r');
  try {
    const size = fstatSync(fd).size;
    const data = Buffer.allocUnsafe(size + 1);
    data[0] = 0x0a;
    let off = 0;
    while (off < size) {
      const n = readSync(fd, data, 1 + off, size - off, off);
      if (n === 0) throw new WitnessError('WITNESS_ERR_IO', `${path}: file shrank while being read (at byte ${off} of ${size})`);
      off += n;
    }
    return { data, size };
  } finally {
    closeSync(fd);
  }
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
