/**
 * A ledger follower (DESIGN §1: one direction — the ledger is the source; InfluxDB, the alerts,
 * the live stream and the device view read it from a cursor). A follower:
 *  - reads durable records only (Ledger.durableSize), in index order, in batches;
 *  - hands each batch to its `handle`; when that resolves, the cursor moves past the batch and is
 *    saved atomically (DATA/state/followers/NAME.json) — so after a crash or an outage the
 *    follower resumes exactly at the first record it had not finished;
 *  - when `handle` rejects (the target is down or slow), retries the SAME batch after an
 *    exponential backoff with jitter, for as long as it takes: the broker is never slowed or
 *    blocked — it only appends to the ledger — and nothing is lost or skipped. A target must
 *    therefore accept a batch twice (the InfluxDB mirror's points are keyed by ledger index);
 *  - sleeps while it has caught up, woken by the writer's onDurable.
 *
 * Cursor file: {"format":"witness-cursor/v1","name":NAME,"next":INDEX,"at":ISO-8601}. `next` is the
 * index of the first record not yet handled.
 */
import { mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { writeFileAtomic } from '../../shared/atomic-file.js';
import { WitnessError } from '../../shared/errors.js';
import { LedgerTail } from '../../shared/ledger/tail.js';
import type { Ledger } from '../../shared/ledger/writer.js';

export interface FollowedRecord {
  index: number;
  /** The ledger line exactly (without newline). */
  line: string;
  /** The line parsed. */
  record: Record<string, unknown>;
}

export interface FollowerOptions {
  /** Names the cursor file: `[a-z0-9-]+`. */
  name: string;
  /** The broker's data directory (the ledger is DATA/ledger, the cursor DATA/state/followers/NAME.json). */
  dataDir: string;
  /** The broker's ledger writer: its durable size and onDurable. */
  ledger: Ledger;
  handle: (batch: FollowedRecord[]) => Promise<void>;
  /** Records per batch, at most. Default 1,000. */
  batchMax?: number;
  /** Where to begin: the saved cursor (0 if none; default), or the current end (live only). */
  startAt?: 'cursor' | 'end';
  /** Save the cursor (false for live-only followers). Default true. */
  persistCursor?: boolean;
  /**
   * Least time between two saves of the cursor while batches flow, ms; it is also saved at stop.
   * Default 1,000. A save is a synchronous write + fsync + rename + directory fsync on the
   * broker's event loop: saving after every batch took 17.7 % of the broker's CPU under the
   * simulator's 10,000-device load (bench/sim.ts profile). A crash may then hand up to this much
   * of the ledger to the target again, which every target accepts (idempotent points; an alert
   * may fire twice, never be lost).
   */
  saveEveryMs?: number;
  /** First retry delay, ms. Default 500. */
  backoffMinMs?: number;
  /** Longest retry delay, ms. Default 30,000. */
  backoffMaxMs?: number;
  /** Told about each failed attempt (attempt counts from 1). */
  onError?: (e: unknown, attempt: number) => void;
}

export interface FollowerStatus {
  name: string;
  /** Next record to handle. */
  cursor: number;
  /** Durable records not handled yet. */
  lag: number;
  /** Failed attempts of the current batch (0 when healthy). */
  failures: number;
  lastError?: string;
  /** ms since the epoch of the last handled batch. */
  lastSuccessAt?: number;
  handled: number;
}

export const FOLLOWER_DEFAULTS = { batchMax: 1000, backoffMinMs: 500, backoffMaxMs: 30_000, saveEveryMs: 1000 } as const;

const CURSOR_FORMAT = 'witness-cursor/v1';

export function cursorPath(dataDir: string, name: string): string {
  return join(dataDir, 'state', 'followers', `${name}.json`);
}

/** The saved cursor of follower `name`, or 0. A damaged file is an error (what to do is in the message). */
export function readCursor(dataDir: string, name: string): number {
  const p = cursorPath(dataDir, name);
  let text: string;
  try {
    text = readFileSync(p, 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return 0;
    throw new WitnessError('WITNESS_ERR_IO', `${p}: ${(e as Error).message}`, { cause: e });
  }
  try {
    const v = JSON.parse(text) as { format?: unknown; next?: unknown };
    if (v.format === CURSOR_FORMAT && typeof v.next === 'number' && Number.isSafeInteger(v.next) && v.next >= 0) return v.next;
  } catch {
    // fall through
  }
  throw new WitnessError('WITNESS_ERR_FOLLOWER_CURSOR', `${p}: not a follower cursor (${CURSOR_FORMAT})`, { details: { file: p } });
}

export class Follower {
  readonly name: string;
  readonly #o: Required<Omit<FollowerOptions, 'onError'>> & Pick<FollowerOptions, 'onError'>;
  #cursor = 0;
  #tail: LedgerTail | undefined;
  #running = false;
  #loop: Promise<void> | undefined;
  #wake: (() => void) | undefined;
  #stopWake: (() => void) | undefined;
  #sleepTimer: NodeJS.Timeout | undefined;
  #unsubscribe: (() => void) | undefined;
  #failures = 0;
  #lastError: string | undefined;
  #lastSuccessAt: number | undefined;
  #handled = 0;
  #savedAt = 0;
  #unsaved = false;

  constructor(o: FollowerOptions) {
    if (!/^[a-z0-9-]{1,64}$/.test(o.name)) throw new WitnessError('WITNESS_ERR_INVALID_ARGUMENT', `follower name ${JSON.stringify(o.name)}: use 1–64 of a-z 0-9 -`);
    this.name = o.name;
    this.#o = {
      batchMax: FOLLOWER_DEFAULTS.batchMax,
      startAt: 'cursor',
      persistCursor: true,
      backoffMinMs: FOLLOWER_DEFAULTS.backoffMinMs,
      backoffMaxMs: FOLLOWER_DEFAULTS.backoffMaxMs,
      saveEveryMs: FOLLOWER_DEFAULTS.saveEveryMs,
      ...o,
    };
  }

  get cursor(): number {
    return this.#cursor;
  }

  status(): FollowerStatus {
    return {
      name: this.name,
      cursor: this.#cursor,
      lag: Math.max(0, this.#o.ledger.durableSize - this.#cursor),
      failures: this.#failures,
      ...(this.#lastError !== undefined ? { lastError: this.#lastError } : {}),
      ...(this.#lastSuccessAt !== undefined ? { lastSuccessAt: this.#lastSuccessAt } : {}),
      handled: this.#handled,
    };
  }

  /** Starts following (reads the cursor now; throws if it is damaged). */
  start(): void {
    if (this.#running) return;
    const durable = this.#o.ledger.durableSize;
    // A cursor past the durable end can only come from a ledger replaced under the broker: start at its end.
    this.#cursor = this.#o.startAt === 'end' ? durable : Math.min(readCursor(this.#o.dataDir, this.name), durable);
    this.#running = true;
    this.#unsubscribe = this.#o.ledger.onDurable(() => this.#wake?.());
    this.#loop = this.#run();
  }

  /** Stops after the batch in hand (its cursor saved if it completed). */
  async stop(): Promise<void> {
    if (!this.#running) return;
    this.#running = false;
    this.#unsubscribe?.();
    this.#stopWake?.();
    await this.#loop;
    await this.#tail?.close();
    this.#tail = undefined;
  }

  /** Resolves once every record durable now has been handled (or `timeoutMs` passed: false). */
  async drain(timeoutMs = 10_000): Promise<boolean> {
    const target = this.#o.ledger.durableSize;
    const end = Date.now() + timeoutMs;
    while (this.#cursor < target && Date.now() < end) await new Promise((r) => setTimeout(r, 10));
    return this.#cursor >= target;
  }

  async #run(): Promise<void> {
    const ledgerDir = join(this.#o.dataDir, 'ledger');
    while (this.#running) {
      const limit = this.#o.ledger.durableSize;
      if (this.#cursor >= limit) {
        // Caught up: a good moment to save a cursor held back by saveEveryMs.
        if (this.#unsaved) this.#save();
        await this.#sleep(1000);
        continue;
      }
      let batch: FollowedRecord[];
      try {
        if (!this.#tail || this.#tail.next !== this.#cursor) {
          await this.#tail?.close();
          this.#tail = await LedgerTail.open(ledgerDir, this.#cursor);
        }
        const lines = await this.#tail.read(this.#o.batchMax, limit);
        if (lines.length === 0) {
          await this.#sleep(50);
          continue;
        }
        batch = lines.map((l) => ({ index: l.index, line: l.line, record: JSON.parse(l.line) as Record<string, unknown> }));
      } catch (e) {
        // Reading the ledger failed: nothing the follower can fix by itself; retry slowly, loudly.
        await this.#tail?.close().catch(() => {});
        this.#tail = undefined;
        await this.#failed(e);
        continue;
      }
      try {
        await this.#o.handle(batch);
      } catch (e) {
        // Re-read the same records next time (the tail moved past them).
        await this.#tail?.close().catch(() => {});
        this.#tail = undefined;
        await this.#failed(e);
        continue;
      }
      this.#cursor = batch[batch.length - 1]!.index + 1;
      this.#failures = 0;
      this.#lastSuccessAt = Date.now();
      this.#handled += batch.length;
      if (this.#o.persistCursor && Date.now() - this.#savedAt >= this.#o.saveEveryMs) this.#save();
      else this.#unsaved = this.#o.persistCursor;
    }
    if (this.#unsaved) this.#save();
  }

  #save(): void {
    this.#savedAt = Date.now();
    this.#unsaved = false;
    const p = cursorPath(this.#o.dataDir, this.name);
    try {
      mkdirSync(join(p, '..'), { recursive: true });
      writeFileAtomic(p, JSON.stringify({ format: CURSOR_FORMAT, name: this.name, next: this.#cursor, at: new Date().toISOString() }) + '\n');
    } catch (e) {
      // The cursor is behind at worst: the batch is handled again after a restart (targets are idempotent).
      this.#lastError = `cursor not saved: ${(e as Error).message}`;
    }
  }

  async #failed(e: unknown): Promise<void> {
    this.#failures++;
    this.#lastError = e instanceof Error ? e.message : String(e);
    this.#o.onError?.(e, this.#failures);
    const base = Math.min(this.#o.backoffMaxMs, this.#o.backoffMinMs * 2 ** Math.min(this.#failures - 1, 20));
    // New records must not cut the backoff short (under load they arrive all the time): only stop() does.
    await this.#sleep(base * (0.8 + 0.4 * Math.random()), false);
  }

  #sleep(ms: number, wakeOnRecords = true): Promise<void> {
    if (!this.#running) return Promise.resolve();
    return new Promise((resolve) => {
      const done = (): void => {
        clearTimeout(this.#sleepTimer);
        this.#sleepTimer = undefined;
        this.#wake = undefined;
        this.#stopWake = undefined;
        resolve();
      };
      this.#stopWake = done;
      if (wakeOnRecords) this.#wake = done;
      this.#sleepTimer = setTimeout(done, ms);
      this.#sleepTimer.unref();
    });
  }
}
