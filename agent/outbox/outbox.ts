/**
 * The durable outbox of the device agent: every signed envelope is appended to a local log
 * before anyone may send it, and stays there until the broker acknowledged it.
 *
 *   enqueue() ─► sign(seq, prev) on the caller's turn ─► overflow / age policy ─► write queue
 *   run loop: batch (everything queued in one event-loop turn) ─► [head] + frames ─► one append
 *             ─► one fdatasync ─► resolve ─► compaction (delete segments with nothing unacknowledged,
 *             or copy the few unacknowledged entries of the oldest one forward)
 *
 * The log (record.ts, docs/FORMATS.md "Agent outbox") is a series of numbered segments; each
 * starts with a head record (the state when it was begun: next sequence number, prev, last ack,
 * recent drops), so any suffix of the segments rebuilds the state, and old segments can go.
 *
 * Invariants:
 * - Sequence numbers and `prev` come from the last DURABLE entry. An entry whose write failed (or
 *   that a crash cut from the tail) was never resolved, nor listed by pending(): nobody can have
 *   sent it, so its number is given out again. A number that was resolved is never reused.
 * - The log order is the order of decisions: one FIFO carries entries, acks and drops, so
 *   replaying the log at open reproduces the state (a drop removes every entry at or below its
 *   `toSeq` that is unacknowledged at that point of the log).
 * - Nothing is dropped silently: a full outbox rejects (WITNESS_ERR_OUTBOX_FULL) or, under
 *   'drop-oldest', drops and records the drop in the log and in events(); so does the age limit.
 *
 * Failure: a failed append is cut back to the last durable length; the entries of that batch and
 * every entry queued after it are rejected (WITNESS_ERR_OUTBOX_DISK_FULL for ENOSPC/EDQUOT) and
 * their numbers given out again; acks and drops of the batch stay queued and are tried again with
 * the next write (after 1 s, or at once on the next call). A failed fdatasync, or a cut that fails,
 * is fatal (the page cache can no longer be trusted, cf. "fsyncgate"): WITNESS_ERR_OUTBOX_FAILED
 * from then on; reopening recovers the last durable state. (An entry whose fdatasync failed was
 * rejected but may have reached the disk anyway; then it is pending after reopen and gets sent:
 * at least once, never lost, and its number is not reused.)
 */
import { decodeEnvelope, envelopeHash, GENESIS_PREV } from '../../shared/envelope/index.js';
import { WitnessError, isWitnessError } from '../../shared/errors.js';
import { FileStorage, type OutboxStorage, type SegmentHandle } from './storage.js';
import {
  MAX_TOPIC_BYTES,
  encodeAck,
  encodeDrop,
  encodeEntry,
  encodeHead,
  entryEnvelope,
  parseSegment,
  type DropRecord,
  type HeadRecord,
} from './record.js';

export interface OutboxEntry {
  seq: number;
  topic: string;
  qos: 0 | 1 | 2;
  retain: boolean;
  /** The signed envelope (do not mutate: it is the outbox's own copy). */
  envelope: Uint8Array;
  /** When it was queued, ms since the epoch (options.now). */
  queuedAt: number;
}

export type OverflowPolicy = 'reject-new' | 'drop-oldest';

export interface OutboxOptions {
  /** Most bytes of unacknowledged envelopes kept. Default 64 MiB. */
  maxBytes?: number;
  /** Unacknowledged entries older than this, ms, are dropped (and the drop recorded). Default 7 days. */
  maxAgeMs?: number;
  /** What happens when full. Default 'reject-new' (the caller gets WITNESS_ERR_OUTBOX_FULL and nothing is lost silently). */
  overflow?: OverflowPolicy;
  /** Clock, ms since the epoch (queuedAt, ack and drop times, the age limit). Default Date.now. */
  now?: () => number;
  /** Start a new segment once the active one holds this many bytes. Default 4 MiB. */
  segmentMaxBytes?: number;
}

type Resolved = Required<OutboxOptions>;

export const OUTBOX_DEFAULTS: Readonly<Resolved> = {
  maxBytes: 64 * 1024 * 1024,
  maxAgeMs: 7 * 24 * 60 * 60 * 1000,
  overflow: 'reject-new',
  now: Date.now,
  segmentMaxBytes: 4 * 1024 * 1024,
};

export interface OutboxEvent {
  kind: 'dropped';
  reason: 'overflow' | 'age';
  /** First and last sequence number dropped, and how many (acknowledged ones in between are not counted). */
  fromSeq: number;
  toSeq: number;
  count: number;
  /** When, ms since the epoch. */
  at: number;
}

export interface OutboxRecovery {
  /** Bytes cut from the tail of the last segment at open (a write torn by a crash), 0 if none. */
  cutBytes: number;
  /** The segment cut, and why its tail was unreadable. */
  segment?: number;
  problem?: string;
}

/** Recent drop events kept in memory and in each segment head. */
const MAX_EVENTS = 64;
/** Largest batch written at once, bytes (at least one record). */
const MAX_BATCH_BYTES = 4 * 1024 * 1024;
/** After a failed write, acks and drops are tried again this much later (or at the next call). */
const RETRY_MS = 1000;
/** The age limit is also enforced by a timer, at most this often. */
const AGE_SWEEP_MAX_MS = 60_000;

interface Slot {
  entry: OutboxEntry;
  /** The entry's frame in the log (entry.envelope is a view into it), for copying forward. */
  frame: Buffer;
  /** Segment holding its latest durable copy; -1 while its write is in progress. */
  segment: number;
  /** False once acknowledged or dropped. */
  live: boolean;
}

interface SegmentState {
  fileBytes: number;
  /** Unacknowledged entries whose latest copy is in this segment. */
  liveEntries: number;
  liveBytes: number;
}

type Op =
  | { kind: 'entry'; slot: Slot; hash: Uint8Array; resolve: (e: OutboxEntry) => void; reject: (e: unknown) => void }
  | { kind: 'ack'; seq: number; at: number; frame: Buffer; resolve: () => void; reject: (e: unknown) => void }
  | { kind: 'drop'; event: OutboxEvent; frame: Buffer }
  | { kind: 'barrier'; resolve: () => void; reject: (e: unknown) => void };

export class Outbox {
  readonly #storage: OutboxStorage;
  readonly #o: Resolved;
  /** Unacknowledged entries, in sequence order (Map keeps insertion order). */
  readonly #slots: Map<number, Slot>;
  readonly #segments: Map<number, SegmentState>;
  #bytes = 0;
  #nextSeq: number;
  #prev: Uint8Array;
  #lastAck: { seq: number; at: number } | undefined;
  #events: OutboxEvent[];
  #listeners: Array<(e: OutboxEvent) => void> = [];

  // What the log on disk says (what a head record written now may claim).
  #durableNextSeq: number;
  #durablePrev: Uint8Array;
  #durableLastAck: { seq: number; at: number } | undefined;
  #durableEvents: OutboxEvent[];
  #durableLiveBytes = 0;

  #activeId: number;
  #active: SegmentHandle | undefined;
  #queue: Op[] = [];
  #running = false;
  #scheduled = false;
  #stalled = false;
  #retryTimer: NodeJS.Timeout | undefined;
  #ageTimer: NodeJS.Timeout | undefined;
  #idle: Array<() => void> = [];
  #closing = false;
  #closed = false;
  #fatal: WitnessError | undefined;
  readonly recovery: OutboxRecovery;

  private constructor(storage: OutboxStorage, o: Resolved, r: Replayed) {
    this.#storage = storage;
    this.#o = o;
    this.#slots = r.slots;
    this.#segments = r.segments;
    for (const s of r.slots.values()) {
      this.#bytes += s.entry.envelope.length;
      this.#durableLiveBytes += s.entry.envelope.length;
    }
    this.#nextSeq = this.#durableNextSeq = r.head.nextSeq;
    this.#prev = this.#durablePrev = r.head.prev;
    this.#lastAck = this.#durableLastAck = r.head.lastAck;
    this.#events = r.head.events.map(toEvent);
    this.#durableEvents = [...this.#events];
    this.#activeId = r.activeId;
    this.#active = r.active;
    this.recovery = r.recovery;
  }

  /**
   * Opens (creating if needed) the outbox in `dir` — or on another storage — for writing: takes
   * the lock (one writer), cuts a torn tail, rebuilds the state from the log, applies the age limit.
   */
  static async open(dir: string | OutboxStorage, options: OutboxOptions = {}): Promise<Outbox> {
    const o = resolveOptions(options);
    const storage = typeof dir === 'string' ? new FileStorage(dir) : dir;
    await storage.lock();
    let r: Replayed | undefined;
    try {
      r = await replay(storage);
    } catch (e) {
      await storage.unlock();
      throw e;
    }
    const outbox = new Outbox(storage, o, r);
    outbox.#sweepAge();
    const every = Math.min(Math.max(Math.floor(o.maxAgeMs / 4), 1000), AGE_SWEEP_MAX_MS);
    outbox.#ageTimer = setInterval(() => outbox.#sweepAge(), every);
    outbox.#ageTimer.unref();
    return outbox;
  }

  /** The sequence number the next enqueue() gets. */
  get nextSeq(): number {
    return this.#nextSeq;
  }

  /** envelopeHash of the last envelope queued (GENESIS_PREV before any): the next one's prev. */
  get prev(): Uint8Array {
    return new Uint8Array(this.#prev);
  }

  /** Unacknowledged entries, including any whose write is in progress. */
  get depth(): number {
    return this.#slots.size;
  }

  /** Bytes of their envelopes. */
  get bytes(): number {
    return this.#bytes;
  }

  /** The last ack() made (durable or not), or the last one in the log. */
  get lastAck(): { seq: number; at: number } | undefined {
    return this.#lastAck === undefined ? undefined : { ...this.#lastAck };
  }

  /**
   * Queues one message: calls sign(seq, prev) synchronously to make the envelope, appends it
   * durably (fdatasync; group-committed across calls made in the same event-loop turn), and only
   * then resolves. Calls made before the previous one resolved get consecutive numbers.
   *
   * The envelope's claims must carry this seq, prev and topic (checked: a mismatch would break the
   * chain the broker follows). On rejection (full, too large, bad envelope, write failed) the
   * number was not used: the next call gets it again.
   */
  enqueue(topic: string, qos: 0 | 1 | 2, retain: boolean, sign: (seq: number, prev: Uint8Array) => Uint8Array): Promise<OutboxEntry> {
    try {
      this.#usable('enqueue');
      if (typeof topic !== 'string') throw invalid(`enqueue topic: expected a string, got ${typeof topic}`);
      const topicBytes = Buffer.from(topic, 'utf8');
      if (topicBytes.length > MAX_TOPIC_BYTES) throw invalid(`enqueue topic: ${topicBytes.length} bytes of UTF-8, at most ${MAX_TOPIC_BYTES}`);
      if (qos !== 0 && qos !== 1 && qos !== 2) throw invalid(`enqueue qos: expected 0, 1 or 2, got ${String(qos)}`);
      if (typeof retain !== 'boolean') throw invalid(`enqueue retain: expected a boolean, got ${typeof retain}`);
      if (typeof sign !== 'function') throw invalid('enqueue sign: expected a function (seq, prev) => envelope');
      this.#sweepAge();
      // Refuse before signing when nothing can fit anyway (saves the signature).
      if (this.#o.overflow === 'reject-new' && this.#bytes >= this.#o.maxBytes) throw this.#full(1);

      const seq = this.#nextSeq;
      const prev = this.#prev;
      const envelope = sign(seq, new Uint8Array(prev));
      checkEnvelope(envelope, seq, prev, topic);
      const size = envelope.length;
      if (size > this.#o.maxBytes) {
        throw new WitnessError('WITNESS_ERR_OUTBOX_ENTRY_TOO_LARGE', `outbox ${this.#storage.name}: envelope of ${size} bytes is larger than maxBytes (${this.#o.maxBytes})`, {
          details: { size, maxBytes: this.#o.maxBytes, seq },
        });
      }
      if (this.#bytes + size > this.#o.maxBytes) {
        if (this.#o.overflow === 'reject-new') throw this.#full(size);
        const victims: Slot[] = [];
        let freed = 0;
        for (const s of this.#slots.values()) {
          if (this.#bytes - freed + size <= this.#o.maxBytes) break;
          victims.push(s);
          freed += s.entry.envelope.length;
        }
        this.#drop(victims, 'overflow');
      }

      // From here on nothing throws: the number is taken.
      const hash = envelopeHash(envelope);
      const queuedAt = this.#o.now();
      const frame = encodeEntry({ seq, queuedAt, qos, retain, topic, envelope }, topicBytes);
      const entry: OutboxEntry = Object.freeze({ seq, topic, qos, retain, envelope: entryEnvelope(frame), queuedAt });
      const slot: Slot = { entry, frame, segment: -1, live: true };
      this.#nextSeq = seq + 1;
      this.#prev = hash;
      this.#slots.set(seq, slot);
      this.#bytes += size;
      return new Promise<OutboxEntry>((resolve, reject) => {
        this.#queue.push({ kind: 'entry', slot, hash, resolve, reject });
        this.#kick(true);
      });
    } catch (e) {
      return Promise.reject(e);
    }
  }

  /**
   * Unacknowledged entries in sequence order (at most `limit`), only those already durable: an
   * entry whose write is in progress is not listed (sending it before a crash could cut it would
   * let its number be reused for another message).
   */
  pending(limit = Infinity): OutboxEntry[] {
    if (!(limit >= 0)) throw invalid(`pending limit: expected a number >= 0, got ${String(limit)}`);
    if (!this.#closed) this.#sweepAge();
    const out: OutboxEntry[] = [];
    for (const s of this.#slots.values()) {
      // Writes complete in sequence order, so the durable entries come first.
      if (out.length >= limit || s.segment < 0) break;
      out.push(s.entry);
    }
    return out;
  }

  /**
   * Marks the entry `seq` as delivered — that one only: acks may come in any order (a QoS 1
   * window, QoS 0 entries acked once written to the socket). Resolves once the ack is durable.
   * Acknowledging an entry that is already acknowledged or dropped resolves once everything
   * queued before is durable.
   *
   * Acks are group-committed like entries: an ack joins the write of the current event-loop turn
   * and its fdatasync. The window that remains: a crash between ack() and that fdatasync (about
   * one write + fdatasync, a few ms) forgets the ack, and the entry is sent again after restart —
   * the broker has it already and records it as `replayed`. Nothing is lost either way.
   */
  ack(seq: number): Promise<void> {
    try {
      this.#usable('ack');
      if (!Number.isSafeInteger(seq) || seq < 0) throw invalid(`ack seq: expected an integer >= 0, got ${String(seq)}`);
      if (seq >= this.#nextSeq) throw invalid(`ack seq: ${seq} was never queued (next is ${this.#nextSeq})`, { seq, nextSeq: this.#nextSeq });
    } catch (e) {
      return Promise.reject(e);
    }
    const slot = this.#slots.get(seq);
    if (slot === undefined) return this.#barrier();
    this.#resolveSlot(slot);
    const at = this.#o.now();
    this.#lastAck = { seq, at };
    return new Promise<void>((resolve, reject) => {
      this.#queue.push({ kind: 'ack', seq, at, frame: encodeAck(seq, at), resolve, reject });
      this.#kick(true);
    });
  }

  /** Listens for drops (overflow, age). The same drops are in the log and in events(). */
  on(event: 'event', fn: (e: OutboxEvent) => void): this {
    if (event !== 'event') throw invalid(`on: unknown event ${JSON.stringify(event)} (only 'event')`);
    if (typeof fn !== 'function') throw invalid('on: expected a listener function');
    this.#listeners.push(fn);
    return this;
  }

  off(event: 'event', fn: (e: OutboxEvent) => void): this {
    this.#listeners = this.#listeners.filter((f) => f !== fn);
    return this;
  }

  /** The most recent drop events (at most 64), oldest first; they survive restarts. */
  events(): OutboxEvent[] {
    return this.#events.map((e) => ({ ...e }));
  }

  /**
   * Writes everything queued, closes the log and releases the lock. Acks and drops whose write
   * failed get one more try; if that fails too they are lost (the entries come back as pending
   * at the next open: they are sent again, never lost).
   */
  async close(): Promise<void> {
    if (this.#closed || this.#closing) return;
    this.#closing = true;
    clearInterval(this.#ageTimer);
    clearTimeout(this.#retryTimer);
    this.#kick(true);
    await this.#whenIdle();
    this.#closed = true;
    this.#failQueue(this.#closedError('close'));
    await this.#active?.close().catch(() => {});
    this.#active = undefined;
    await this.#storage.unlock();
  }

  // ── state changes ────────────────────────────────────────────────────────────────────────

  #usable(what: string): void {
    if (this.#closed || this.#closing) throw this.#closedError(what);
    if (this.#fatal) throw this.#fatal;
  }

  #closedError(what: string): WitnessError {
    return new WitnessError('WITNESS_ERR_OUTBOX_CLOSED', `outbox ${this.#storage.name}: ${what} after close()`);
  }

  #full(size: number): WitnessError {
    return new WitnessError(
      'WITNESS_ERR_OUTBOX_FULL',
      `outbox ${this.#storage.name}: full (${this.#slots.size} unacknowledged envelopes, ${this.#bytes} of ${this.#o.maxBytes} bytes); message not queued`,
      { details: { depth: this.#slots.size, bytes: this.#bytes, maxBytes: this.#o.maxBytes, size } },
    );
  }

  /** Takes an entry out of the unacknowledged set (ack or drop). */
  #resolveSlot(s: Slot): void {
    if (!s.live) return;
    s.live = false;
    this.#slots.delete(s.entry.seq);
    const size = s.entry.envelope.length;
    this.#bytes -= size;
    if (s.segment >= 0) {
      const seg = this.#segments.get(s.segment);
      if (seg) {
        seg.liveEntries--;
        seg.liveBytes -= size;
      }
      this.#durableLiveBytes -= size;
    }
  }

  /** Drops `victims` (the oldest unacknowledged entries, in order), records and reports it. */
  #drop(victims: Slot[], reason: OutboxEvent['reason']): void {
    const first = victims[0];
    const last = victims.at(-1);
    if (first === undefined || last === undefined) return;
    for (const s of victims) this.#resolveSlot(s);
    const event: OutboxEvent = { kind: 'dropped', reason, fromSeq: first.entry.seq, toSeq: last.entry.seq, count: victims.length, at: this.#o.now() };
    this.#queue.push({ kind: 'drop', event, frame: encodeDrop(event) });
    pushBounded(this.#events, event);
    this.#kick(true);
    for (const fn of this.#listeners) {
      try {
        fn({ ...event });
      } catch (e) {
        // A listener's failure is its own: the drop is recorded either way.
        process.emitWarning(`outbox event listener threw: ${(e as Error)?.message ?? String(e)}`, 'WitnessOutboxWarning');
      }
    }
  }

  /** Drops the unacknowledged entries older than maxAgeMs (a prefix in sequence order). */
  #sweepAge(): void {
    if (this.#closing || this.#closed || this.#fatal) return;
    const limit = this.#o.now() - this.#o.maxAgeMs;
    const victims: Slot[] = [];
    for (const s of this.#slots.values()) {
      if (s.entry.queuedAt >= limit) break;
      victims.push(s);
    }
    this.#drop(victims, 'age');
  }

  #barrier(): Promise<void> {
    if (this.#queue.length === 0 && !this.#running) return Promise.resolve();
    return new Promise<void>((resolve, reject) => {
      this.#queue.push({ kind: 'barrier', resolve, reject });
      this.#kick(true);
    });
  }

  // ── the write loop ───────────────────────────────────────────────────────────────────────

  /** `user`: a new call, which also ends the pause after a failed write. */
  #kick(user: boolean): void {
    if (user) {
      this.#stalled = false;
      clearTimeout(this.#retryTimer);
    }
    if (this.#running || this.#scheduled) return;
    this.#scheduled = true;
    // setImmediate, not queueMicrotask: calls made in the same turn of the event loop join the
    // same batch — one write and one fdatasync for all of them (the group commit).
    setImmediate(() => {
      this.#scheduled = false;
      void this.#run();
    });
  }

  #whenIdle(): Promise<void> {
    if (!this.#running && !this.#scheduled) return Promise.resolve();
    return new Promise((resolve) => this.#idle.push(resolve));
  }

  async #run(): Promise<void> {
    if (this.#running) return;
    this.#running = true;
    try {
      while (this.#queue.length > 0 && !this.#stalled) {
        if (this.#fatal) {
          this.#failQueue(this.#fatal);
          break;
        }
        let bytes = 0;
        let take = 0;
        while (take < this.#queue.length && (take === 0 || bytes < MAX_BATCH_BYTES)) {
          bytes += opBytes(this.#queue[take]!);
          take++;
        }
        const batch = this.#queue.splice(0, take);
        if (await this.#writeBatch(batch)) await this.#compact();
        // Let the event loop turn before the next batch, whatever the storage: calls arriving
        // meanwhile join it, and a caller awaiting each enqueue in a loop cannot starve timers
        // and sockets even when every storage call completes as a microtask.
        if (this.#queue.length > 0) await new Promise<void>((resolve) => setImmediate(resolve));
      }
    } catch (e) {
      // Not a write failure (those are handled above) but a bug or a storage breaking its
      // contract: stop rather than guess what reached the disk.
      this.#fatal = new WitnessError('WITNESS_ERR_OUTBOX_FAILED', `outbox ${this.#storage.name}: ${(e as Error)?.message ?? String(e)}; the outbox accepts nothing more`, { cause: e });
      this.#failQueue(this.#fatal);
    } finally {
      this.#running = false;
      const idle = this.#idle;
      this.#idle = [];
      for (const f of idle) f();
    }
  }

  /** Writes one batch durably and settles its operations. True if something was written. */
  async #writeBatch(batch: Op[]): Promise<boolean> {
    const frames: Buffer[] = [];
    for (const op of batch) {
      if (op.kind === 'entry') frames.push(op.slot.frame);
      else if (op.kind !== 'barrier') frames.push(op.frame);
    }
    if (frames.length === 0) {
      // Only barriers: every earlier batch is durable already (batches complete in order).
      for (const op of batch) if (op.kind === 'barrier') op.resolve();
      return false;
    }
    await this.#maybeRoll();
    const err = await this.#appendDurably(frames);
    if (err) {
      this.#writeFailed(batch, err);
      return false;
    }
    const seg = this.#segments.get(this.#activeId)!;
    for (const op of batch) {
      switch (op.kind) {
        case 'entry': {
          const s = op.slot;
          s.segment = this.#activeId;
          if (s.live) {
            seg.liveEntries++;
            seg.liveBytes += s.entry.envelope.length;
            this.#durableLiveBytes += s.entry.envelope.length;
          }
          this.#durableNextSeq = s.entry.seq + 1;
          this.#durablePrev = op.hash;
          op.resolve(s.entry);
          break;
        }
        case 'ack':
          this.#durableLastAck = { seq: op.seq, at: op.at };
          op.resolve();
          break;
        case 'drop':
          pushBounded(this.#durableEvents, op.event);
          break;
        case 'barrier':
          op.resolve();
          break;
      }
    }
    return true;
  }

  /**
   * Appends `frames` to the active segment (after a head record if it is empty) and syncs.
   * Returns the error of a failed write, after cutting the segment back to its durable length.
   */
  async #appendDurably(frames: Buffer[]): Promise<WitnessError | undefined> {
    if (this.#active === undefined) {
      try {
        this.#active = await this.#storage.open(this.#activeId);
      } catch (e) {
        return writeError(this.#storage.name, e);
      }
      if (!this.#segments.has(this.#activeId)) this.#segments.set(this.#activeId, { fileBytes: 0, liveEntries: 0, liveBytes: 0 });
    }
    const seg = this.#segments.get(this.#activeId)!;
    if (seg.fileBytes === 0) frames.unshift(encodeHead(this.#durableHead()));
    const data = frames.length === 1 ? frames[0]! : Buffer.concat(frames);
    try {
      await this.#active.append(data);
    } catch (e) {
      try {
        await this.#active.truncate(seg.fileBytes);
        await this.#active.sync();
      } catch (e2) {
        this.#fatal = new WitnessError('WITNESS_ERR_OUTBOX_FAILED', `outbox ${this.#storage.name}: a failed write could not be cut back (${(e2 as Error).message}); the outbox accepts nothing more`, { cause: e2 });
        return this.#fatal;
      }
      return writeError(this.#storage.name, e);
    }
    try {
      await this.#active.sync();
    } catch (e) {
      this.#fatal = new WitnessError('WITNESS_ERR_OUTBOX_FAILED', `outbox ${this.#storage.name}: fdatasync failed (${(e as Error).message}); the outbox accepts nothing more`, { cause: e });
      return this.#fatal;
    }
    seg.fileBytes += data.length;
    return undefined;
  }

  #durableHead(): HeadRecord {
    return { nextSeq: this.#durableNextSeq, prev: this.#durablePrev, lastAck: this.#durableLastAck, events: this.#durableEvents };
  }

  /**
   * A failed batch: its entries and every entry queued after it are refused and their numbers
   * given out again (they were numbered after the last durable entry, in order); its acks and
   * drops stay queued, in order, ahead of anything new.
   */
  #writeFailed(batch: Op[], err: WitnessError): void {
    const all = [...batch, ...this.#queue];
    const retained: Op[] = [];
    for (const op of all) {
      switch (op.kind) {
        case 'entry':
          if (this.#slots.get(op.slot.entry.seq) === op.slot) this.#resolveSlot(op.slot);
          op.reject(err);
          break;
        case 'ack':
          op.reject(err);
          if (!this.#fatal) retained.push({ ...op, resolve: noop, reject: noop });
          break;
        case 'drop':
          if (!this.#fatal) retained.push(op);
          break;
        case 'barrier':
          op.reject(err);
          break;
      }
    }
    this.#queue = retained;
    this.#nextSeq = this.#durableNextSeq;
    this.#prev = this.#durablePrev;
    if (retained.length > 0 && !this.#closing) {
      this.#stalled = true;
      clearTimeout(this.#retryTimer);
      this.#retryTimer = setTimeout(() => this.#kick(true), RETRY_MS);
      this.#retryTimer.unref();
    } else if (retained.length > 0) {
      // close() gives them this one try only.
      this.#stalled = true;
    }
  }

  #failQueue(err: unknown): void {
    const q = this.#queue;
    this.#queue = [];
    for (const op of q) {
      if (op.kind === 'entry') {
        if (this.#slots.get(op.slot.entry.seq) === op.slot) this.#resolveSlot(op.slot);
        op.reject(err);
      } else if (op.kind !== 'drop') op.reject(err);
    }
    if (!this.#fatal) {
      this.#nextSeq = this.#durableNextSeq;
      this.#prev = this.#durablePrev;
    }
  }

  /** Starts a new segment when the active one is full; on failure keeps writing the current one. */
  async #maybeRoll(): Promise<void> {
    const seg = this.#segments.get(this.#activeId);
    if (this.#active === undefined || seg === undefined || seg.fileBytes < this.#o.segmentMaxBytes) return;
    const id = this.#activeId + 1;
    let next: SegmentHandle;
    try {
      next = await this.#storage.open(id);
    } catch {
      return; // e.g. ENOSPC for the new file: the current segment grows instead; tried again next batch
    }
    // Every batch was synced, so the old segment is complete and durable.
    await this.#active.close().catch(() => {});
    this.#active = next;
    this.#activeId = id;
    this.#segments.set(id, { fileBytes: 0, liveEntries: 0, liveBytes: 0 });
  }

  /**
   * Reclaims the oldest segments: one holding no unacknowledged entry is deleted; when the log is
   * more than twice the unacknowledged bytes plus two segments, the unacknowledged entries of the
   * oldest segment are copied to the active one first (their frames unchanged; replay keeps one
   * per sequence number). So disk use stays below about 2 × bytes + 2 × segmentMaxBytes even
   * when one entry is never acknowledged. Segments go oldest first only: every segment's records
   * then concern entries in it or in later ones, so deleting it loses nothing else.
   */
  async #compact(): Promise<void> {
    for (;;) {
      const first = this.#segments.entries().next();
      if (first.done) return;
      const [id, seg] = first.value;
      if (id === this.#activeId) return;
      if (seg.liveEntries > 0) {
        let total = 0;
        for (const s of this.#segments.values()) total += s.fileBytes;
        if (total <= 2 * this.#durableLiveBytes + 2 * this.#o.segmentMaxBytes) return;
        const movers = [...this.#slots.values()].filter((s) => s.segment === id);
        if (await this.#appendDurably(movers.map((s) => s.frame))) return; // failed: tried again after the next batch
        const active = this.#segments.get(this.#activeId)!;
        for (const s of movers) {
          if (!s.live || s.segment !== id) continue; // acknowledged while being copied
          s.segment = this.#activeId;
          seg.liveEntries--;
          seg.liveBytes -= s.entry.envelope.length;
          active.liveEntries++;
          active.liveBytes += s.entry.envelope.length;
        }
        if (seg.liveEntries > 0) return;
      }
      try {
        await this.#storage.remove(id);
      } catch {
        return; // tried again after the next batch
      }
      this.#segments.delete(id);
    }
  }
}

// ── open: replay the log ─────────────────────────────────────────────────────────────────────

interface Replayed {
  slots: Map<number, Slot>;
  segments: Map<number, SegmentState>;
  head: HeadRecord;
  activeId: number;
  active: SegmentHandle | undefined;
  recovery: OutboxRecovery;
}

async function replay(storage: OutboxStorage): Promise<Replayed> {
  const ids = await storage.list();
  const segments = new Map<number, SegmentState>();
  const head: HeadRecord = { nextSeq: 0, prev: GENESIS_PREV, lastAck: undefined, events: [] };
  // Entries by seq with the position (in the whole log) of their latest copy; drops are applied
  // after the walk: an entry is dropped if a later drop's toSeq reaches it (see dropAt below).
  const slots = new Map<number, Slot & { pos: number }>();
  const drops: Array<{ pos: number; toSeq: number }> = [];
  const recovery: OutboxRecovery = { cutBytes: 0 };
  let active: SegmentHandle | undefined;
  let pos = 0;
  // The envelope whose hash is head.prev, hashed only when needed (once, not per entry).
  let prevOf: Uint8Array | undefined;
  const currentPrev = (): Uint8Array => {
    if (prevOf !== undefined) {
      head.prev = envelopeHash(prevOf);
      prevOf = undefined;
    }
    return head.prev;
  };

  for (let k = 0; k < ids.length; k++) {
    const id = ids[k]!;
    const last = k === ids.length - 1;
    const data = await storage.read(id);
    const parsed = parseSegment(data);
    if (parsed.validBytes < data.length) {
      if (!last) {
        throw new WitnessError('WITNESS_ERR_OUTBOX_CORRUPT', `outbox ${storage.name}: segment ${id} is damaged at byte ${parsed.validBytes} (${parsed.problem}), and it is not the last one`, {
          details: { segment: id, offset: parsed.validBytes, problem: parsed.problem },
        });
      }
      // A write torn by a crash (or blocks the crash left zero-filled): nothing in it was ever
      // resolved to a caller, so it goes.
      active = await storage.open(id);
      await active.truncate(parsed.validBytes);
      await active.sync();
      recovery.cutBytes = data.length - parsed.validBytes;
      recovery.segment = id;
      if (parsed.problem !== undefined) recovery.problem = parsed.problem;
    }
    segments.set(id, { fileBytes: parsed.validBytes, liveEntries: 0, liveBytes: 0 });
    const firstType = parsed.records[0]?.record.type;
    if (firstType !== undefined && firstType !== 'head') {
      throw corrupt(storage, id, 0, 'the segment does not start with a head record');
    }
    for (const { offset, record: r, frame } of parsed.records) {
      pos++;
      switch (r.type) {
        case 'head':
          if (offset !== 0) throw corrupt(storage, id, offset, 'a head record inside the segment');
          // A head is the durable state when its segment was begun: at least what came before.
          if (r.nextSeq < head.nextSeq || (r.nextSeq === head.nextSeq && !sameBytes(r.prev, currentPrev()))) {
            throw corrupt(storage, id, offset, `its head says next sequence ${r.nextSeq}, but earlier segments reach ${head.nextSeq}`);
          }
          head.nextSeq = r.nextSeq;
          head.prev = r.prev;
          prevOf = undefined;
          if (r.lastAck) head.lastAck = r.lastAck;
          head.events = [...r.events];
          break;
        case 'entry': {
          if (r.seq >= head.nextSeq) {
            head.nextSeq = r.seq + 1;
            prevOf = r.envelope;
          }
          const existing = slots.get(r.seq);
          if (existing) {
            existing.segment = id; // a copy made by compaction: the latest one counts
            existing.pos = pos;
          } else {
            const { type: _t, ...e } = r;
            slots.set(r.seq, { entry: Object.freeze(e), frame: frame!, segment: id, live: true, pos });
          }
          break;
        }
        case 'ack':
          slots.delete(r.seq);
          head.lastAck = { seq: r.seq, at: r.at };
          break;
        case 'drop': {
          const { type: _t, ...e } = r;
          drops.push({ pos, toSeq: r.toSeq });
          pushBounded(head.events, e);
          break;
        }
      }
    }
  }

  currentPrev();

  // dropAt[i] = the largest toSeq of drops[i..]: an entry whose latest copy is at `p` is dropped
  // if the first drop after p has dropAt >= its seq.
  const dropAt = drops.map((d) => d.toSeq);
  for (let i = dropAt.length - 2; i >= 0; i--) dropAt[i] = Math.max(dropAt[i]!, dropAt[i + 1]!);
  const alive = [...slots.values()].filter((s) => {
    let lo = 0;
    let hi = drops.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (drops[mid]!.pos > s.pos) hi = mid;
      else lo = mid + 1;
    }
    return lo === drops.length || dropAt[lo]! < s.entry.seq;
  });
  alive.sort((a, b) => a.entry.seq - b.entry.seq);
  const ordered = new Map<number, Slot>();
  for (const { pos: _p, ...s } of alive) {
    ordered.set(s.entry.seq, s);
    const seg = segments.get(s.segment)!;
    seg.liveEntries++;
    seg.liveBytes += s.entry.envelope.length;
  }

  const activeId = ids.at(-1) ?? 0;
  if (active === undefined && ids.length > 0) active = await storage.open(activeId);
  return { slots: ordered, segments, head, activeId, active, recovery };
}

// ── helpers ──────────────────────────────────────────────────────────────────────────────────

function resolveOptions(options: OutboxOptions): Resolved {
  if (typeof options !== 'object' || options === null) throw invalid('outbox options: expected an object');
  const o: Resolved = { ...OUTBOX_DEFAULTS };
  for (const [k, v] of Object.entries(options)) {
    if (v === undefined) continue;
    if (!(k in OUTBOX_DEFAULTS)) throw invalid(`outbox options.${k}: unknown option`);
    (o as Record<string, unknown>)[k] = v;
  }
  for (const k of ['maxBytes', 'maxAgeMs', 'segmentMaxBytes'] as const) {
    if (!Number.isSafeInteger(o[k]) || o[k] <= 0) throw invalid(`outbox options.${k}: expected a positive integer, got ${String(o[k])}`);
  }
  if (o.overflow !== 'reject-new' && o.overflow !== 'drop-oldest') {
    throw invalid(`outbox options.overflow: expected "reject-new" or "drop-oldest", got ${JSON.stringify(o.overflow)}`);
  }
  if (typeof o.now !== 'function') throw invalid('outbox options.now: expected a function returning ms since the epoch');
  return o;
}

function invalid(message: string, details?: Record<string, unknown>): WitnessError {
  return new WitnessError('WITNESS_ERR_INVALID_ARGUMENT', message, details === undefined ? {} : { details });
}

function corrupt(storage: OutboxStorage, id: number, offset: number, what: string): WitnessError {
  return new WitnessError('WITNESS_ERR_OUTBOX_CORRUPT', `outbox ${storage.name}: segment ${id} at byte ${offset}: ${what}`, { details: { segment: id, offset } });
}

/** The envelope must be a Witness envelope for exactly this seq, prev and topic. */
function checkEnvelope(envelope: unknown, seq: number, prev: Uint8Array, topic: string): asserts envelope is Uint8Array {
  if (!(envelope instanceof Uint8Array)) throw invalid(`enqueue sign: expected it to return a Uint8Array, got ${typeof envelope}`);
  let claims;
  try {
    claims = decodeEnvelope(envelope).claims;
  } catch (e) {
    throw new WitnessError('WITNESS_ERR_INVALID_ARGUMENT', `enqueue sign: returned bytes that are not a Witness envelope (${(e as Error).message})`, { cause: e });
  }
  if (claims.seq !== seq || !sameBytes(claims.prev, prev) || claims.topic !== topic) {
    throw invalid(`enqueue sign: the envelope is for seq ${claims.seq}, topic ${JSON.stringify(claims.topic)}${sameBytes(claims.prev, prev) ? '' : ', another prev'}; expected seq ${seq}, topic ${JSON.stringify(topic)} and the prev given`, {
      expected: { seq, topic, prev: Buffer.from(prev).toString('hex') },
      actual: { seq: claims.seq, topic: claims.topic, prev: Buffer.from(claims.prev).toString('hex') },
    });
  }
}

function writeError(name: string, e: unknown): WitnessError {
  if (isWitnessError(e)) return e;
  const code = (e as NodeJS.ErrnoException)?.code;
  const what = (e as Error)?.message ?? String(e);
  if (code === 'ENOSPC' || code === 'EDQUOT') {
    return new WitnessError('WITNESS_ERR_OUTBOX_DISK_FULL', `outbox ${name}: disk full (${what}); message not queued`, { cause: e, details: { errno: code } });
  }
  return new WitnessError('WITNESS_ERR_IO', `outbox ${name}: write failed (${what}); message not queued`, { cause: e, details: { errno: code ?? null } });
}

function opBytes(op: Op): number {
  switch (op.kind) {
    case 'entry':
      return op.slot.frame.length;
    case 'barrier':
      return 0;
    default:
      return op.frame.length;
  }
}

function pushBounded<T>(list: T[], item: T): void {
  list.push(item);
  if (list.length > MAX_EVENTS) list.splice(0, list.length - MAX_EVENTS);
}

function toEvent(d: DropRecord): OutboxEvent {
  return { kind: 'dropped', ...d };
}

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && Buffer.from(a.buffer, a.byteOffset, a.length).equals(Buffer.from(b.buffer, b.byteOffset, b.length));
}

function noop(): void {}
