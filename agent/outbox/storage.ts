/**
 * Where the outbox keeps its log: numbered segments, each an append-only byte file, and a lock.
 * The outbox owns the format (record.ts) and every decision; a storage only moves bytes, so a new
 * backend is small and runs the same contract tests (test/agent/outbox/outbox.test.ts runs every
 * one of them against FileStorage and MemoryStorage).
 *
 * FileStorage layout (docs/FORMATS.md, "Agent outbox"):
 *
 *   DIR/LOCK                          pid of the one writer (O_EXCL; a dead writer's lock is taken over)
 *   DIR/NNNNNNNNNNNNNNNNNNNN.seg      segment number NNNN (20 digits), records in write order
 */
import { closeSync, mkdirSync, openSync, readdirSync, fdatasyncSync } from 'node:fs';
import { open as openHandle, readFile, unlink, type FileHandle } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { WitnessError } from '../../shared/errors.js';
import { acquirePidLock, releasePidLock } from '../../shared/pid-lock.js';

/** An open segment, appended to at its end. */
export interface SegmentHandle {
  /** Appends all of `data` at the end, or throws; a failure may leave part of it written. */
  append(data: Uint8Array): Promise<void>;
  /** Makes the appended bytes durable (fdatasync). */
  sync(): Promise<void>;
  /** Cuts the segment to `length` bytes (the caller syncs after). */
  truncate(length: number): Promise<void>;
  close(): Promise<void>;
}

export interface OutboxStorage {
  /** A name for messages: the directory, or "memory". */
  readonly name: string;
  /** Takes the one-writer lock; throws WITNESS_ERR_OUTBOX_LOCKED if another writer holds it. */
  lock(): Promise<void>;
  unlock(): Promise<void>;
  /** Numbers of the segments present, ascending. */
  list(): Promise<number[]>;
  /** The whole content of segment `id`. */
  read(id: number): Promise<Uint8Array>;
  /** Opens segment `id` for appending, creating it if absent; a new segment's name is durable when this resolves. */
  open(id: number): Promise<SegmentHandle>;
  /** Deletes segment `id`; durably, when this resolves. */
  remove(id: number): Promise<void>;
}

const SEGMENT_RE = /^(\d{20})\.seg$/;
export const LOCK_FILE = 'LOCK';

export function segmentName(id: number): string {
  return `${String(id).padStart(20, '0')}.seg`;
}

/** Segments as files in a directory (created if needed). */
export class FileStorage implements OutboxStorage {
  readonly name: string;
  readonly #dir: string;
  #lockPath: string | undefined;

  constructor(dir: string) {
    // Absolute: the in-process lock table is keyed by path, and ./x and /abs/x are one outbox.
    this.#dir = resolve(dir);
    this.name = dir;
  }

  async lock(): Promise<void> {
    try {
      mkdirSync(this.#dir, { recursive: true });
    } catch (e) {
      throw new WitnessError('WITNESS_ERR_IO', `outbox ${this.#dir}: cannot create the directory (${(e as Error).message})`, { cause: e });
    }
    this.#lockPath = acquireLock(this.#dir);
  }

  async unlock(): Promise<void> {
    if (this.#lockPath !== undefined) releasePidLock(this.#lockPath);
    this.#lockPath = undefined;
  }

  async list(): Promise<number[]> {
    const ids: number[] = [];
    for (const name of readdirSync(this.#dir)) {
      const m = SEGMENT_RE.exec(name);
      if (m) ids.push(Number(m[1]));
    }
    return ids.sort((a, b) => a - b);
  }

  async read(id: number): Promise<Uint8Array> {
    return readFile(join(this.#dir, segmentName(id)));
  }

  async open(id: number): Promise<SegmentHandle> {
    const path = join(this.#dir, segmentName(id));
    // 'a': O_APPEND, so every write lands at the current end, also after a truncate.
    const fh = await openHandle(path, 'a', 0o600);
    try {
      fsyncDir(this.#dir);
    } catch (e) {
      await fh.close().catch(() => {});
      throw e;
    }
    return new FileSegment(fh);
  }

  async remove(id: number): Promise<void> {
    await unlink(join(this.#dir, segmentName(id)));
    fsyncDir(this.#dir);
  }
}

class FileSegment implements SegmentHandle {
  readonly #fh: FileHandle;
  constructor(fh: FileHandle) {
    this.#fh = fh;
  }
  async append(data: Uint8Array): Promise<void> {
    let off = 0;
    while (off < data.length) {
      const { bytesWritten } = await this.#fh.write(data, off, data.length - off);
      off += bytesWritten;
    }
  }
  sync(): Promise<void> {
    return this.#fh.datasync();
  }
  truncate(length: number): Promise<void> {
    return this.#fh.truncate(length);
  }
  close(): Promise<void> {
    return this.#fh.close();
  }
}

function fsyncDir(path: string): void {
  const fd = openSync(path, 'r');
  try {
    fdatasyncSync(fd);
  } finally {
    closeSync(fd);
  }
}

// ── the writer lock (shared/pid-lock.ts, as the ledger's) ─────────────────────────────────

function acquireLock(dir: string): string {
  const path = join(dir, LOCK_FILE);
  return acquirePidLock(path, (pid) =>
    pid === undefined
      ? new WitnessError('WITNESS_ERR_OUTBOX_LOCKED', `outbox ${dir}: could not take the lock ${path}`, { details: { lock: path } })
      : new WitnessError('WITNESS_ERR_OUTBOX_LOCKED', `outbox ${dir}: in use by process ${pid} (lock ${path})`, { details: { pid, lock: path } }),
  );
}
