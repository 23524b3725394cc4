/**
 * The agent's trusted clock: the time an envelope is signed with, and an honest bound on how
 * wrong it can be.
 *
 * How a reading is made
 *  - Sync: one NTP request to every configured server (in parallel, each bounded by timeoutMs)
 *    through ntp-time-sync's `getNetworkTime()`; each reply is judged and measured by
 *    `judgeReply()` (RFC 5905 §8 offset and delay, §11.2.1 root distance), and the fit reply with
 *    the smallest root distance wins. One request per server per sync: public servers rate-limit
 *    bursts (ntpd `discard`, chrony `ratelimit`) with a kiss-o'-death.
 *  - Anchor: the winning offset is pinned to the monotonic clock at the end of the exchange.
 *    Between syncs, time = anchor + monotonic elapsed, so a step of the system (wall) clock does
 *    not move signed time; the reading's `offset` (trusted − system) shows the step instead.
 *  - Uncertainty = root distance of the winning reply + driftPpm · (monotonic time since the
 *    request left), plus any disagreement between the wall and monotonic clocks since the anchor
 *    (see "Steps and suspend"), plus the rounding of `time` to a whole ms; rounded up.
 *
 * Source: the fallback rule
 *  - 'ntp' while the most recent sync attempt succeeded and the anchor is younger than
 *    resyncMs + 3·timeoutMs (a resync is due by then; if none has come, the timer is not running
 *    or the event loop was blocked, and the server no longer vouches for the time).
 *  - 'system' otherwise. At the FIRST failed resync the source becomes 'system', although the
 *    time and its uncertainty still come from the last anchor (holdover: last offset, monotonic
 *    clock, uncertainty growing with the drift term, unbounded). Why at the first failure, and not
 *    when the drift-grown uncertainty passes systemUncertaintyMs: 'ntp' tells a verifier that a
 *    server vouched for this time within one resync period. After a failure only the driftPpm
 *    model vouches for it, and with the defaults (100 ppm, 1 000 ms) the other rule would label
 *    messages 'ntp' for 1 000 ms / 100 ppm ≈ 2.8 h with no server at all. The uncertainty stays
 *    the honest number in both cases; the label says whether it was measured or extrapolated.
 *  - Holdover never falls back to the bare system clock, even once its uncertainty exceeds
 *    systemUncertaintyMs: that would let a wall-clock step move signed time again, and the bare
 *    clock's systemUncertaintyMs is an assumption, not a measurement.
 *  - Before any successful sync (or with no servers): the bare system clock, offset 0,
 *    uncertainty systemUncertaintyMs (constant: nothing is known that would make it grow).
 *  - Recovery: the periodic resync keeps trying; the first fit reply makes the source 'ntp' again.
 *    At a re-anchor the time may step by up to the previous uncertainty (old and new intervals
 *    overlap when both bounds hold); envelopes are ordered by their sequence number, not by time.
 *
 * Steps and suspend
 *  Linux slews CLOCK_REALTIME and CLOCK_MONOTONIC alike, so the two only disagree when the wall
 *  clock is stepped (date -s, a leap second, an OS time daemon's step) or when the machine was
 *  suspended (CLOCK_MONOTONIC, behind performance.now(), stops during suspend; the wall clock does
 *  not). The clock cannot tell which of the two happened, so the disagreement (beyond 1 ms of Date
 *  resolution) is added to the uncertainty, and one resync is started at once to settle it.
 *  Neither clock moves `time`.
 *
 * Limits, stated: driftPpm is an assumption about the oscillator (CLOCK_MONOTONIC is also slewed
 * by an OS time daemon, up to its slew limit); servers are trusted one by one (no RFC 5905
 * falseticker selection: configure servers you trust); IPv4 and host names only (ntp-time-sync
 * opens udp4 sockets); close() does not cancel a request in flight (the library's reply timer,
 * at most timeoutMs, is not unref'd).
 *
 * ntp-time-sync (GPL-3.0) gotchas avoided (DESIGN §4): `NtpTimeSync.getInstance()` returns a
 * process-wide singleton that keeps the options of its first caller, and `getTime()` answers from
 * a module-level cache shared by every instance and drops unsynchronised replies without a word.
 * So each server gets its own `new NtpTimeSync(...)`, and only `getNetworkTime()` (one UDP
 * exchange, the parsed reply) is used.
 */
import { performance } from 'node:perf_hooks';
import { NtpTimeSync } from 'ntp-time-sync';
import { WitnessError } from '../../shared/errors.js';
import { judgeReply, type NtpReply, type NtpSample } from './ntp-sample.js';

export type TimeSource = 'ntp' | 'system';

export interface TimeReading {
  /** Trusted time, ms since the Unix epoch, an integer. */
  time: number;
  /** Bound on |true time − time|, ms, an integer (rounded up). */
  uncertainty: number;
  source: TimeSource;
  /** Trusted time minus the system clock, ms (rounded to the ms). 0 when the source is the bare system clock. */
  offset: number;
  /** System clock (ms) at the last successful sync. */
  lastSync?: number;
  /** The server (host:port) of the last successful sync. */
  server?: string;
}

export interface TrustedClockOptions {
  /** NTP servers as host:port (or host, port 123). IPv4 addresses or host names. Default []: system time only. */
  servers?: string[];
  /** Resync period, ms. Default 64_000 (RFC 5905 MINPOLL, 2^6 s). */
  resyncMs?: number;
  /** Per-request timeout, ms; also bounds each whole sync and the wait in start(). Default 1_000. */
  timeoutMs?: number;
  /**
   * Assumed worst-case frequency error of the local oscillator, ppm (RFC 5905 PHI is 15 ppm; be
   * conservative). Default 100.
   */
  driftPpm?: number;
  /** Uncertainty claimed for the bare system clock when no server was ever reached, ms. Default 1_000. */
  systemUncertaintyMs?: number;
}

export interface TrustedClockStatus {
  source: TimeSource;
  offset: number;
  uncertainty: number;
  lastSync?: number;
  server?: string;
  /** Why the most recent failed sync failed, per server (kept after a recovery; see `failures`). */
  lastError?: string;
  /** Successful syncs. */
  syncs: number;
  /** Failed sync attempts (no server gave a fit reply). */
  failures: number;
}

/**
 * Test seam, not part of the agent's API: the clocks and the NTP exchange. The wall clock must be
 * the one the exchange stamps T1 and T4 with (in production both are Date).
 * @internal
 */
export interface ClockInternals {
  /** System (wall) clock, ms since the epoch. Default Date.now. */
  wallNow?: () => number;
  /** Monotonic clock, ms. Default performance.now. */
  monoNow?: () => number;
  /** One NTP request/reply. Default: ntp-time-sync's getNetworkTime(). */
  exchange?: (host: string, port: number, timeoutMs: number) => Promise<NtpReply>;
}

const DEFAULTS = {
  servers: [] as string[],
  resyncMs: 64_000,
  timeoutMs: 1_000,
  driftPpm: 100,
  systemUncertaintyMs: 1_000,
} as const;

/** NTP's port (RFC 5905 §7.2). */
const NTP_PORT = 123;

/** Date.now() is whole ms: wall and monotonic elapsed times may differ by this much with no step. */
const DATE_RESOLUTION_MS = 1;

interface ServerAddress {
  host: string;
  port: number;
  /** host:port, as reported in readings and errors. */
  label: string;
}

interface Resolved {
  servers: ServerAddress[];
  resyncMs: number;
  timeoutMs: number;
  driftPpm: number;
  systemUncertaintyMs: number;
}

/** The last successful sync, pinned to the monotonic clock. */
interface Anchor {
  /** Trusted time (ms) at `mono`. */
  trusted: number;
  /** Monotonic ms at the anchor. */
  mono: number;
  /** System ms at the anchor. */
  wall: number;
  /** Monotonic ms when the winning request left: drift counts from here (RFC 5905 adds PHI·(T4 − T1) too). */
  sentMono: number;
  rootDistance: number;
  server: string;
  /** A step/suspend resync was already started for this anchor (one per anchor). */
  stepResyncStarted: boolean;
}

type Attempt = { ok: true; anchor: Anchor; sample: NtpSample } | { ok: false; reason: string };

export class TrustedClock {
  readonly #o: Resolved;
  readonly #wallNow: () => number;
  readonly #monoNow: () => number;
  readonly #exchange: (host: string, port: number, timeoutMs: number) => Promise<NtpReply>;
  #anchor: Anchor | undefined;
  #lastAttemptOk = false;
  #lastError: string | undefined;
  #syncs = 0;
  #failures = 0;
  #inflight: Promise<void> | undefined;
  #timer: NodeJS.Timeout | undefined;
  #closed = false;

  private constructor(o: Resolved, internals: ClockInternals) {
    this.#o = o;
    this.#wallNow = internals.wallNow ?? Date.now;
    this.#monoNow = internals.monoNow ?? (() => performance.now());
    this.#exchange = internals.exchange ?? ntpTimeSyncExchange();
  }

  /**
   * Creates the clock and awaits the first sync attempt, bounded by timeoutMs; a sync still
   * running then finishes in the background. Then resyncs every resyncMs (unref'd timer: it does
   * not keep the process alive). Throws WITNESS_ERR_INVALID_ARGUMENT for bad options; never for an
   * unreachable server (the reading says 'system' and status().lastError says why).
   * `internals` is a test seam (see ClockInternals).
   */
  static async start(o: TrustedClockOptions = {}, internals: ClockInternals = {}): Promise<TrustedClock> {
    const clock = new TrustedClock(resolveOptions(o), internals);
    if (clock.#o.servers.length > 0) {
      let timer: NodeJS.Timeout | undefined;
      // Not unref'd: whoever awaits start() expects an answer, not an exit.
      const bound = new Promise<void>((resolve) => (timer = setTimeout(resolve, clock.#o.timeoutMs)));
      await Promise.race([clock.#sync(), bound]);
      clearTimeout(timer);
    }
    return clock;
  }

  /** The trusted time now. Synchronous and cheap (two clock reads and arithmetic): call it per message. */
  now(): TimeReading {
    const wall = this.#wallNow();
    const a = this.#anchor;
    if (a === undefined) {
      const time = Math.round(wall);
      return {
        time,
        uncertainty: Math.ceil(this.#o.systemUncertaintyMs + Math.abs(time - wall)),
        source: 'system',
        offset: 0,
      };
    }
    const mono = this.#monoNow();
    const exact = a.trusted + (mono - a.mono);
    // Wall vs monotonic since the anchor: a wall step, or a suspend (see the module comment).
    const disagreement = Math.max(0, Math.abs(wall - a.wall - (mono - a.mono)) - DATE_RESOLUTION_MS);
    if (disagreement > 0 && !a.stepResyncStarted && !this.#closed && this.#o.servers.length > 0) {
      a.stepResyncStarted = true;
      void this.#sync();
    }
    const drift = Math.max(0, mono - a.sentMono) * this.#o.driftPpm * 1e-6;
    const time = Math.round(exact);
    const fresh = this.#lastAttemptOk && mono - a.mono <= this.#staleAfterMs();
    return {
      time,
      uncertainty: Math.ceil(a.rootDistance + drift + disagreement + Math.abs(time - exact)),
      source: fresh ? 'ntp' : 'system',
      offset: Math.round(exact - wall),
      lastSync: a.wall,
      server: a.server,
    };
  }

  /**
   * Resyncs now (joining a sync already running) and returns the reading after it. Resolves even
   * when no server answers: the reading then says 'system'. Throws WITNESS_ERR_CLOCK_CLOSED after close().
   */
  async sync(): Promise<TimeReading> {
    if (this.#closed) {
      throw new WitnessError('WITNESS_ERR_CLOCK_CLOSED', 'TrustedClock.sync(): the clock was closed');
    }
    await this.#sync();
    return this.now();
  }

  status(): TrustedClockStatus {
    const r = this.now();
    return {
      source: r.source,
      offset: r.offset,
      uncertainty: r.uncertainty,
      ...(r.lastSync === undefined ? {} : { lastSync: r.lastSync }),
      ...(r.server === undefined ? {} : { server: r.server }),
      ...(this.#lastError === undefined ? {} : { lastError: this.#lastError }),
      syncs: this.#syncs,
      failures: this.#failures,
    };
  }

  /**
   * Stops the periodic resync. now() keeps answering (from the last anchor, turning 'system' once
   * it is stale); sync() throws. A request in flight finishes (or times out) on its own.
   */
  close(): void {
    this.#closed = true;
    clearTimeout(this.#timer);
    this.#timer = undefined;
  }

  /** How long an anchor may go without a successful resync and still be called 'ntp'. */
  #staleAfterMs(): number {
    return this.#o.resyncMs + 3 * this.#o.timeoutMs;
  }

  /** One sync at a time: callers during a sync join it. Never rejects. */
  #sync(): Promise<void> {
    if (this.#inflight === undefined) {
      this.#inflight = this.#syncOnce().finally(() => {
        this.#inflight = undefined;
        this.#schedule();
      });
    }
    return this.#inflight;
  }

  async #syncOnce(): Promise<void> {
    const attempts = await Promise.all(this.#o.servers.map((s) => this.#attempt(s)));
    let best: (Attempt & { ok: true }) | undefined;
    const reasons: string[] = [];
    for (const at of attempts) {
      if (!at.ok) reasons.push(at.reason);
      else if (best === undefined || at.anchor.rootDistance < best.anchor.rootDistance) best = at;
    }
    if (best === undefined) {
      this.#lastAttemptOk = false;
      this.#failures++;
      this.#lastError = `no NTP server gave a usable reply: ${reasons.join('; ')}`;
      return;
    }
    this.#anchor = best.anchor;
    this.#lastAttemptOk = true;
    this.#syncs++;
  }

  async #attempt(server: ServerAddress): Promise<Attempt> {
    const w0 = this.#wallNow();
    const m0 = this.#monoNow();
    let reply: NtpReply;
    try {
      reply = await this.#exchange(server.host, server.port, this.#o.timeoutMs);
    } catch (e) {
      const msg = e instanceof Error ? e.message : String(e);
      // ntp-time-sync rejects with "Timeout waiting for NTP response." when nothing came back.
      const reason = /timeout/i.test(msg) ? `no reply within ${this.#o.timeoutMs} ms` : msg;
      return { ok: false, reason: `${server.label}: ${reason}` };
    }
    const w1 = this.#wallNow();
    const m1 = this.#monoNow();
    // A wall step during the exchange would corrupt T1/T4 against the anchor: drop the sample.
    if (Math.abs(w1 - w0 - (m1 - m0)) > 2 * DATE_RESOLUTION_MS) {
      return { ok: false, reason: `${server.label}: the system clock stepped during the exchange` };
    }
    const v = judgeReply(reply, { earliest: w0, latest: w1 });
    if (!v.ok) return { ok: false, reason: `${server.label}: ${v.reason}` };
    return {
      ok: true,
      sample: v.sample,
      anchor: {
        trusted: w1 + v.sample.offset,
        mono: m1,
        wall: w1,
        sentMono: m0,
        rootDistance: v.sample.rootDistance,
        server: server.label,
        stepResyncStarted: false,
      },
    };
  }

  #schedule(): void {
    clearTimeout(this.#timer);
    this.#timer = undefined;
    if (this.#closed || this.#o.servers.length === 0) return;
    this.#timer = setTimeout(() => void this.#sync(), this.#o.resyncMs);
    this.#timer.unref();
  }
}

/**
 * The production exchange: one `NtpTimeSync` per server, made with `new` (never `getInstance()`,
 * a singleton that keeps its first caller's options), used only for `getNetworkTime()`.
 */
function ntpTimeSyncExchange(): (host: string, port: number, timeoutMs: number) => Promise<NtpReply> {
  const byServer = new Map<string, NtpTimeSync>();
  return (host, port, timeoutMs) => {
    const key = `${host}:${port}:${timeoutMs}`;
    let lib = byServer.get(key);
    if (lib === undefined) {
      lib = new NtpTimeSync({ servers: [`${host}:${port}`], replyTimeout: timeoutMs });
      byServer.set(key, lib);
    }
    return lib.getNetworkTime(host, port);
  };
}

function resolveOptions(o: TrustedClockOptions): Resolved {
  if (o === null || typeof o !== 'object') invalid('options', 'an object', o);
  const servers = o.servers ?? DEFAULTS.servers;
  if (!Array.isArray(servers)) invalid('servers', 'an array of "host:port" strings', servers);
  return {
    servers: servers.map((s, i) => parseServer(s, i)),
    resyncMs: number('resyncMs', o.resyncMs ?? DEFAULTS.resyncMs, 1, 2 ** 31 - 1, true),
    timeoutMs: number('timeoutMs', o.timeoutMs ?? DEFAULTS.timeoutMs, 1, 2 ** 31 - 1, true),
    driftPpm: number('driftPpm', o.driftPpm ?? DEFAULTS.driftPpm, 0, 1e6, false),
    systemUncertaintyMs: number('systemUncertaintyMs', o.systemUncertaintyMs ?? DEFAULTS.systemUncertaintyMs, 0, Number.MAX_SAFE_INTEGER, false),
  };
}

function parseServer(s: unknown, i: number): ServerAddress {
  const name = `servers[${i}]`;
  if (typeof s !== 'string' || s.trim() === '') invalid(name, 'a "host:port" string', s);
  const text = s.trim();
  if (text.startsWith('[') || text.split(':').length > 2) {
    invalid(name, 'an IPv4 address or host name with an optional :port (ntp-time-sync opens udp4 sockets only; IPv6 is not supported)', s);
  }
  const [host = '', portText] = text.split(':');
  if (host === '' || /\s/.test(host)) invalid(name, 'a "host:port" string with a host', s);
  let port = NTP_PORT;
  if (portText !== undefined) {
    port = Number(portText);
    if (!/^\d+$/.test(portText) || port < 1 || port > 65_535) invalid(name, 'a port from 1 to 65535', s);
  }
  return { host, port, label: `${host}:${port}` };
}

function number(name: string, v: unknown, min: number, max: number, integer: boolean): number {
  if (typeof v !== 'number' || !Number.isFinite(v) || v < min || v > max || (integer && !Number.isInteger(v))) {
    invalid(name, `${integer ? 'an integer' : 'a number'} from ${min} to ${max}`, v);
  }
  return v;
}

function invalid(name: string, expected: string, actual: unknown): never {
  throw new WitnessError('WITNESS_ERR_INVALID_ARGUMENT', `TrustedClockOptions.${name}: expected ${expected}, got ${show(actual)}`, {
    details: { option: name, expected, actual: show(actual) },
  });
}

function show(v: unknown): string {
  if (typeof v === 'string') return JSON.stringify(v);
  if (v === null || typeof v !== 'object') return String(v);
  return Array.isArray(v) ? 'an array' : 'an object';
}
