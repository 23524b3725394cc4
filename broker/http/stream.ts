/**
 * The live record stream of the HTTP API (`GET /api/v1/stream`), as Server-Sent Events
 * (https://html.spec.whatwg.org/multipage/server-sent-events.html). Each record is one event:
 *
 *   id: INDEX
 *   event: record
 *   data: LINE            (the ledger line exactly, so it still hashes to its leaf)
 *
 * Every connection shares ONE live follower (fan-out): the hub follows the ledger from its
 * durable end (no persisted cursor) while at least one client is connected, and stops a while
 * after the last one leaves. A client that resumes (`Last-Event-ID: N` → from N+1, or `from=N`)
 * first reads the ledger itself from there up to the hub's position, then switches to the hub's
 * records — in one synchronous step, so no record is skipped or sent twice.
 *
 * A slow client is never buffered without bound: once more than `maxBufferedBytes` wait in its
 * socket, it gets a final `event: dropped` (data: {"reason", "resume": NEXT_INDEX}) and is closed;
 * it may reconnect with `Last-Event-ID`. While catching up from the ledger a client is read for at
 * its own pace instead (the reads wait for its socket to drain). A comment line (`: keepalive`)
 * goes to every client every `heartbeatMs` so that proxies keep the connection open.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { join } from 'node:path';
import { LedgerTail } from '../../shared/ledger/tail.js';
import type { Ledger } from '../../shared/ledger/writer.js';
import { Follower, type FollowedRecord, type FollowerStatus } from '../followers/follower.js';
import { matches, type RecordFilter } from '../query.js';

export const STREAM_DEFAULTS = { heartbeatMs: 15_000, maxBufferedBytes: 1024 * 1024, maxClients: 64, idleStopMs: 10_000, catchUpBatch: 500 } as const;

export interface StreamHubOptions {
  dataDir: string;
  ledger: Ledger;
  heartbeatMs?: number;
  maxBufferedBytes?: number;
  maxClients?: number;
  /** Stop the shared follower this long after the last client left, ms. */
  idleStopMs?: number;
}

interface Client {
  res: ServerResponse;
  filter: RecordFilter;
  /** Index of the next record this client may be sent. */
  next: number;
  live: boolean;
  closed: boolean;
}

export class StreamHub {
  readonly #o: Required<StreamHubOptions>;
  readonly #clients = new Set<Client>();
  #follower: Follower | undefined;
  /** The hub's position: every record before it has been handed to the live clients. */
  #hubNext = 0;
  #heartbeat: NodeJS.Timeout | undefined;
  #idleTimer: NodeJS.Timeout | undefined;
  #closed = false;
  #dropped = 0;

  constructor(o: StreamHubOptions) {
    this.#o = {
      heartbeatMs: STREAM_DEFAULTS.heartbeatMs,
      maxBufferedBytes: STREAM_DEFAULTS.maxBufferedBytes,
      maxClients: STREAM_DEFAULTS.maxClients,
      idleStopMs: STREAM_DEFAULTS.idleStopMs,
      ...o,
    };
  }

  get clients(): number {
    return this.#clients.size;
  }

  /** Clients dropped for being too slow, since start. */
  get dropped(): number {
    return this.#dropped;
  }

  get full(): boolean {
    return this.#clients.size >= this.#o.maxClients;
  }

  /** The shared follower's status while it runs. */
  status(): FollowerStatus | undefined {
    return this.#follower?.status();
  }

  /**
   * Serves one stream on `res` (the caller has checked the token and the parameters). `from`:
   * first index to send (undefined: live only, from now on).
   */
  open(req: IncomingMessage, res: ServerResponse, filter: RecordFilter, from: number | undefined): void {
    this.#ensureFollower();
    const live = this.#hubNext;
    const start = from === undefined || from > live ? live : from;
    const c: Client = { res, filter, next: start, live: false, closed: false };
    this.#clients.add(c);
    res.writeHead(200, {
      'Content-Type': 'text/event-stream; charset=utf-8',
      'Cache-Control': 'no-store',
      Connection: 'keep-alive',
      'X-Accel-Buffering': 'no',
      'X-Content-Type-Options': 'nosniff',
    });
    res.write(`retry: 3000\n: witness record stream from index ${start}\n\n`);
    const done = (): void => this.#remove(c);
    req.on('close', done);
    res.on('close', done);
    res.on('error', done);
    void this.#catchUp(c);
  }

  async close(): Promise<void> {
    this.#closed = true;
    clearInterval(this.#heartbeat);
    clearTimeout(this.#idleTimer);
    for (const c of [...this.#clients]) {
      c.closed = true;
      c.res.end();
      this.#clients.delete(c);
    }
    const f = this.#follower;
    this.#follower = undefined;
    await f?.stop();
  }

  #ensureFollower(): void {
    clearTimeout(this.#idleTimer);
    this.#idleTimer = undefined;
    if (!this.#heartbeat) {
      this.#heartbeat = setInterval(() => {
        for (const c of this.#clients) if (!c.closed) this.#write(c, ': keepalive\n\n');
      }, this.#o.heartbeatMs);
      this.#heartbeat.unref();
    }
    if (this.#follower) return;
    const f: Follower = new Follower({
      name: 'http-stream',
      dataDir: this.#o.dataDir,
      ledger: this.#o.ledger,
      startAt: 'end',
      persistCursor: false,
      handle: async (batch) => {
        if (this.#follower === f) this.#deliver(batch);
      },
    });
    f.start();
    this.#follower = f;
    this.#hubNext = f.cursor;
  }

  #deliver(batch: FollowedRecord[]): void {
    for (const c of this.#clients) {
      if (!c.live || c.closed) continue;
      let out = '';
      for (const r of batch) {
        if (r.index < c.next) continue;
        c.next = r.index + 1;
        if (matches(r.record, c.filter)) out += event(r.index, r.line);
      }
      if (out) this.#write(c, out);
      if (!c.closed && c.res.writableLength > this.#o.maxBufferedBytes) this.#drop(c, 'slow consumer: more than the buffer limit waiting to be sent');
    }
    this.#hubNext = batch[batch.length - 1]!.index + 1;
  }

  /** Reads the ledger from the client's position up to the hub's, then hands the client to the hub. */
  async #catchUp(c: Client): Promise<void> {
    let tail: LedgerTail | undefined;
    try {
      for (let idle = 0; !c.closed; ) {
        // Checked and switched synchronously: every record before #hubNext was read here, every
        // record from #hubNext on will come from the hub.
        if (c.next >= this.#hubNext) {
          c.live = true;
          return;
        }
        tail ??= await LedgerTail.open(join(this.#o.dataDir, 'ledger'), c.next);
        const lines = await tail.read(STREAM_DEFAULTS.catchUpBatch, this.#hubNext);
        if (lines.length === 0) {
          // Durable but not readable yet (should not happen): wait a little, not forever.
          if (++idle > 200) throw new Error(`the ledger did not yield record ${c.next}`);
          await new Promise((r) => setTimeout(r, 10));
          continue;
        }
        idle = 0;
        let out = '';
        for (const l of lines) {
          if (l.index < c.next) continue;
          c.next = l.index + 1;
          let rec: Record<string, unknown>;
          try {
            rec = JSON.parse(l.line) as Record<string, unknown>;
          } catch {
            continue;
          }
          if (matches(rec, c.filter)) out += event(l.index, l.line);
        }
        if (out && !this.#write(c, out)) await drained(c);
      }
    } catch (e) {
      if (!c.closed) {
        this.#write(c, `event: error\ndata: ${JSON.stringify({ error: (e as Error).message, resume: c.next })}\n\n`);
        c.closed = true;
        c.res.end();
      }
    } finally {
      await tail?.close().catch(() => {});
    }
  }

  #write(c: Client, text: string): boolean {
    if (c.closed || c.res.writableEnded || c.res.destroyed) return true;
    try {
      return c.res.write(text);
    } catch {
      this.#remove(c);
      return true;
    }
  }

  #drop(c: Client, reason: string): void {
    this.#dropped++;
    this.#write(c, `event: dropped\ndata: ${JSON.stringify({ reason, resume: c.next })}\n\n`);
    c.closed = true;
    // Once the last bytes are handed to the kernel, close the connection (an ended event
    // stream is not reused); a client that reads nothing never drains: do not keep its socket
    // (and buffer) for long either.
    const socket = c.res.socket;
    c.res.once('finish', () => socket?.end());
    c.res.end();
    const t = setTimeout(() => socket?.destroy(), 5_000);
    t.unref();
    this.#remove(c);
  }

  #remove(c: Client): void {
    c.closed = true;
    if (!this.#clients.delete(c)) return;
    if (this.#clients.size === 0 && !this.#closed) {
      clearTimeout(this.#idleTimer);
      this.#idleTimer = setTimeout(() => {
        if (this.#clients.size > 0) return;
        clearInterval(this.#heartbeat);
        this.#heartbeat = undefined;
        const f = this.#follower;
        this.#follower = undefined;
        void f?.stop();
      }, this.#o.idleStopMs);
      this.#idleTimer.unref();
    }
  }
}

function event(index: number, line: string): string {
  return `id: ${index}\nevent: record\ndata: ${line}\n\n`;
}

function drained(c: Client): Promise<void> {
  return new Promise((resolve) => {
    const done = (): void => {
      c.res.off('drain', done);
      c.res.off('close', done);
      resolve();
    };
    c.res.on('drain', done);
    c.res.on('close', done);
  });
}
