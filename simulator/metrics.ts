/**
 * Run metrics: what the runner feeds while it runs, and the summary the report is drawn from.
 *
 * Cost: every `on…` call is O(1) (one clock read, a few counter updates, one histogram slot and at
 * most one reservoir slot); memory is bounded independently of the number of devices and events:
 *   - three fixed-size histograms (latency, ack time, connect time) of HISTOGRAM_BUCKETS counters;
 *   - one latency reservoir of ≤ RESERVOIR_SIZE values, for the current second only;
 *   - one small MetricsBin object per elapsed second (≈ 3,600 per hour of run time);
 *   - ≤ MAX_ERROR_MESSAGES distinct error texts (the rest is counted under OTHER_ERRORS) and the
 *     first MAX_ERROR_SAMPLES error samples.
 *
 * Precision (documented in the report too):
 *   - Overall percentiles (latency, ack, connect) come from a log-linear histogram (HDR-style):
 *     values are kept in units of 0.1 µs, exactly below 25.6 µs, and above in 128 linear
 *     sub-buckets per power of two. A reported percentile is within 1 % of the true value of the
 *     same rank for values from 0.01 ms to 10 min (in practice ≤ 0.6 %: ≤ 0.39 % from the bucket
 *     width, ≤ 0.5 % at 0.01 ms from the 0.1 µs rounding); it is also clamped to the exact
 *     [min, max]. Values above 10 min are counted in the top bucket; `max`, `min`, `mean` and
 *     `count` are exact. Percentiles use the nearest-rank definition (the value at rank ⌈q·n⌉).
 *   - Per-second percentiles are exact (nearest rank over every value of that second) up to
 *     RESERVOIR_SIZE values per second; above that they come from a uniform random sample of
 *     RESERVOIR_SIZE values of that second (reservoir sampling); the per-second `max` is exact.
 */
import type { MetricsBin } from './types.js';

// ── histogram ────────────────────────────────────────────────────────────────────────────────

/** Histogram resolution: units per ms (0.1 µs). */
const UNITS_PER_MS = 10_000;
/** Linear sub-buckets per power of two (above the exact range). */
const SUB_HALF = 128;
const SUB_FULL = SUB_HALF * 2;
/** Largest value kept apart, ms (10 min); larger values go to the top bucket. */
export const HISTOGRAM_MAX_MS = 600_000;
const MAX_UNITS = HISTOGRAM_MAX_MS * UNITS_PER_MS;
const TOP_K = Math.floor(Math.log2(MAX_UNITS)) - 7;
/** Number of counters of every histogram (fixed). */
export const HISTOGRAM_BUCKETS = SUB_FULL + TOP_K * SUB_HALF;
/** The documented bound on the relative error of histogram percentiles (0.01 ms – 10 min). */
export const HISTOGRAM_RELATIVE_ERROR = 0.01;

function bucketOf(units: number): number {
  if (units < SUB_FULL) return units;
  let k = Math.floor(Math.log2(units)) - 7;
  let s = Math.floor(units / 2 ** k);
  // Guard against log2 rounding just around powers of two.
  if (s >= SUB_FULL) s = Math.floor(units / 2 ** ++k);
  else if (s < SUB_HALF) s = Math.floor(units / 2 ** --k);
  return SUB_FULL + (k - 1) * SUB_HALF + (s - SUB_HALF);
}

/** The middle of a bucket, in ms. */
function bucketValueMs(index: number): number {
  if (index < SUB_FULL) return index / UNITS_PER_MS;
  const k = Math.floor((index - SUB_FULL) / SUB_HALF) + 1;
  const s = ((index - SUB_FULL) % SUB_HALF) + SUB_HALF;
  const lower = s * 2 ** k;
  const upper = (s + 1) * 2 ** k - 1;
  return (lower + upper) / 2 / UNITS_PER_MS;
}

/** Percentile figures of a histogram; all in ms, null when nothing was recorded. */
export interface HistogramStats {
  count: number;
  min: number | null;
  p50: number | null;
  p95: number | null;
  p99: number | null;
  max: number | null;
  mean: number | null;
}

/** One bar of a distribution: values in [fromMs, toMs). */
export interface DistributionBar {
  fromMs: number;
  toMs: number;
  count: number;
}

/** Bar edges for distributions: 1, 1.5, 2, 3, 5, 7 per decade from 0.01 ms to 10 min. */
const DISTRIBUTION_EDGES: number[] = (() => {
  const out: number[] = [];
  for (let e = -2; e <= 5; e++) for (const m of [1, 1.5, 2, 3, 5, 7]) out.push(Number((m * 10 ** e).toPrecision(3)));
  out.push(1_000_000);
  return out;
})();

/**
 * A fixed-size log-linear histogram of durations in ms (see the precision note at the top of the
 * file). record() is O(1); percentile() walks the HISTOGRAM_BUCKETS counters.
 */
export class LogLinearHistogram {
  readonly #counts = new Float64Array(HISTOGRAM_BUCKETS);
  #count = 0;
  #sum = 0;
  #min = Infinity;
  #max = -Infinity;

  record(ms: number): void {
    if (!Number.isFinite(ms)) return;
    if (ms < 0) ms = 0;
    const units = Math.min(Math.round(ms * UNITS_PER_MS), MAX_UNITS);
    this.#counts[bucketOf(units)]! += 1;
    this.#count++;
    this.#sum += ms;
    if (ms < this.#min) this.#min = ms;
    if (ms > this.#max) this.#max = ms;
  }

  get count(): number {
    return this.#count;
  }
  get min(): number | null {
    return this.#count ? this.#min : null;
  }
  get max(): number | null {
    return this.#count ? this.#max : null;
  }
  get mean(): number | null {
    return this.#count ? this.#sum / this.#count : null;
  }
  /** Number of counters held (fixed): for tests of bounded memory. */
  get size(): number {
    return this.#counts.length;
  }

  /** Nearest-rank percentile, q in [0, 1]; null when empty. */
  percentile(q: number): number | null {
    if (this.#count === 0) return null;
    if (q >= 1) return this.#max;
    const rank = Math.max(1, Math.ceil(q * this.#count));
    let seen = 0;
    for (let i = 0; i < this.#counts.length; i++) {
      seen += this.#counts[i]!;
      if (seen >= rank) return Math.min(this.#max, Math.max(this.#min, bucketValueMs(i)));
    }
    return this.#max;
  }

  stats(): HistogramStats {
    return { count: this.#count, min: this.min, p50: this.percentile(0.5), p95: this.percentile(0.95), p99: this.percentile(0.99), max: this.max, mean: this.mean };
  }

  /** Counts per bar (1, 1.5, 2, 3, 5, 7 × 10^k ms edges), without the empty bars at either end. */
  distribution(): DistributionBar[] {
    if (this.#count === 0) return [];
    const edges = DISTRIBUTION_EDGES;
    const bars: DistributionBar[] = [{ fromMs: 0, toMs: edges[0]!, count: 0 }];
    for (let j = 0; j + 1 < edges.length; j++) bars.push({ fromMs: edges[j]!, toMs: edges[j + 1]!, count: 0 });
    let j = 0;
    for (let i = 0; i < this.#counts.length; i++) {
      const c = this.#counts[i]!;
      if (c === 0) continue;
      const v = bucketValueMs(i);
      while (j + 1 < bars.length && v >= bars[j]!.toMs) j++;
      bars[j]!.count += c;
    }
    let first = 0;
    let last = bars.length - 1;
    while (first < last && bars[first]!.count === 0) first++;
    while (last > first && bars[last]!.count === 0) last--;
    return bars.slice(first, last + 1);
  }
}

// ── summary types ────────────────────────────────────────────────────────────────────────────

/** Overflow key of RunSummary.errors.byMessage once MAX_ERROR_MESSAGES distinct texts were seen. */
export const OTHER_ERRORS = '(other)';
export const MAX_ERROR_MESSAGES = 100;
export const MAX_ERROR_SAMPLES = 100;
/** Longest error text kept; longer texts are cut (with "…") before they are counted. */
export const MAX_ERROR_TEXT = 300;
/** Latency values kept per second for the per-second percentiles. */
export const RESERVOIR_SIZE = 2048;

export interface ErrorSample {
  /** ms after the run start. */
  t: number;
  message: string;
  device?: string;
}

/** Live figures for the progress line. */
export interface Snapshot {
  /** Seconds since the run start. */
  elapsedS: number;
  /** Devices connected now (successful connects minus disconnects). */
  connected: number;
  connectedMax: number;
  connects: number;
  connectFailed: number;
  sent: number;
  acked: number;
  received: number;
  errors: number;
  refused: number;
  /** Per second over the last complete second (over the elapsed time during the first second). */
  rates: { sent: number; acked: number; received: number; connects: number; errors: number };
}

/** The end-of-run summary: summary.json and the source of report.html. */
export interface RunSummary {
  /** Wall-clock time of the run start, ms since the epoch. */
  startedAt: number;
  /** From the run start to finish(), ms. */
  durationMs: number;
  devices: {
    /** Most devices connected at the same time. */
    connectedMax: number;
    /** Devices connected when finish() was called. */
    connectedAtEnd: number;
  };
  totals: {
    sent: number;
    acked: number;
    received: number;
    /** Successful connects. */
    connects: number;
    connectFailed: number;
    disconnects: number;
    errors: number;
    /** Publishes refused by the broker. */
    refused: number;
  };
  /** Mean per second over the whole run. */
  rates: { sent: number; acked: number; received: number };
  /** Highest one-second counts. */
  peak: { sent: number; acked: number; received: number; connects: number };
  /** End-to-end latency (subscriber receive time − send time), ms. */
  latency: HistogramStats;
  /** Send to PUBACK/PUBCOMP, ms (QoS > 0). */
  ack: HistogramStats;
  /** Connect attempts; percentiles over the times to CONNACK reported with successful connects, ms. */
  connect: {
    count: number;
    ok: number;
    failed: number;
    timed: number;
    p50: number | null;
    p95: number | null;
    p99: number | null;
    max: number | null;
    mean: number | null;
    distribution: DistributionBar[];
  };
  errors: {
    total: number;
    /** Count per error text, most frequent first; at most MAX_ERROR_MESSAGES texts plus OTHER_ERRORS. */
    byMessage: Record<string, number>;
    /** The first MAX_ERROR_SAMPLES errors. */
    samples: ErrorSample[];
  };
  /** One bin per second of the run, t = 0, 1, 2, … (the last one may cover a partial second). */
  bins: MetricsBin[];
}

// ── collector ────────────────────────────────────────────────────────────────────────────────

interface OpenBin {
  t: number;
  sent: number;
  acked: number;
  received: number;
  connects: number;
  connectFailed: number;
  errors: number;
  refused: number;
  latMax: number;
}

function emptyBin(t: number): OpenBin {
  return { t, sent: 0, acked: 0, received: 0, connects: 0, connectFailed: 0, errors: 0, refused: 0, latMax: -Infinity };
}

/** Nearest-rank percentile of an ascending array. */
function rankOf(sorted: Float64Array, q: number): number {
  const rank = Math.max(1, Math.ceil(q * sorted.length));
  return sorted[Math.min(sorted.length, rank) - 1]!;
}

/**
 * Collects a run's metrics. The runner calls the `on…` methods as things happen; the progress line
 * polls snapshot(); finish() gives the summary. Times come from `now` (injectable for tests).
 */
export class MetricsCollector {
  readonly #start: number;
  readonly #now: () => number;

  #connected = 0;
  #connectedMax = 0;
  #connects = 0;
  #connectFailed = 0;
  #disconnects = 0;
  #sent = 0;
  #acked = 0;
  #received = 0;
  #errors = 0;
  #refused = 0;
  readonly #peak = { sent: 0, acked: 0, received: 0, connects: 0 };

  readonly #latency = new LogLinearHistogram();
  readonly #ack = new LogLinearHistogram();
  readonly #connect = new LogLinearHistogram();

  readonly #byMessage = new Map<string, number>();
  #other = 0;
  readonly #samples: ErrorSample[] = [];

  readonly #bins: MetricsBin[] = [];
  #cur: OpenBin = emptyBin(0);
  readonly #reservoir = new Float64Array(RESERVOIR_SIZE);
  #resSeen = 0;
  #rng = 0x9e3779b9;

  constructor(startedAtMs: number, now: () => number = Date.now) {
    this.#start = startedAtMs;
    this.#now = now;
  }

  /** A connect attempt ended: ok with its time to CONNACK (ms), or failed (report the reason with onError too). */
  onConnect(ok: boolean, connectMs?: number): void {
    const b = this.#bin();
    if (ok) {
      this.#connects++;
      b.connects++;
      this.#connected++;
      if (this.#connected > this.#connectedMax) this.#connectedMax = this.#connected;
      if (connectMs !== undefined) this.#connect.record(connectMs);
    } else {
      this.#connectFailed++;
      b.connectFailed++;
    }
  }

  /** A connected device lost or closed its connection. */
  onDisconnect(): void {
    this.#bin();
    this.#disconnects++;
    if (this.#connected > 0) this.#connected--;
  }

  onSent(): void {
    this.#bin().sent++;
    this.#sent++;
  }

  /** PUBACK/PUBCOMP came, ackMs after the send. */
  onAcked(ackMs: number): void {
    this.#bin().acked++;
    this.#acked++;
    this.#ack.record(ackMs);
  }

  /** The subscriber received a message latencyMs after it was sent. */
  onReceived(latencyMs: number): void {
    const b = this.#bin();
    b.received++;
    this.#received++;
    if (!Number.isFinite(latencyMs)) return;
    if (latencyMs < 0) latencyMs = 0;
    this.#latency.record(latencyMs);
    if (latencyMs > b.latMax) b.latMax = latencyMs;
    // Reservoir sampling (algorithm R) over this second's latencies.
    const n = this.#resSeen++;
    if (n < RESERVOIR_SIZE) this.#reservoir[n] = latencyMs;
    else {
      const j = this.#random() % (n + 1);
      if (j < RESERVOIR_SIZE) this.#reservoir[j] = latencyMs;
    }
  }

  onError(message: string, device?: string): void {
    const b = this.#bin();
    b.errors++;
    this.#errors++;
    let text = String(message);
    if (text.length > MAX_ERROR_TEXT) text = text.slice(0, MAX_ERROR_TEXT - 1) + '…';
    const seen = this.#byMessage.get(text);
    if (seen !== undefined) this.#byMessage.set(text, seen + 1);
    else if (this.#byMessage.size < MAX_ERROR_MESSAGES) this.#byMessage.set(text, 1);
    else this.#other++;
    if (this.#samples.length < MAX_ERROR_SAMPLES) {
      const sample: ErrorSample = { t: Math.max(0, this.#now() - this.#start), message: text };
      if (device !== undefined) sample.device = device;
      this.#samples.push(sample);
    }
  }

  /** The broker refused a publish (PUBACK/PUBREC reason code ≥ 0x80, or the connection closed on it). */
  onRefused(): void {
    this.#bin().refused++;
    this.#refused++;
  }

  /** Devices connected now. */
  get connected(): number {
    return this.#connected;
  }

  /** Sizes of the internal structures (for tests and diagnostics): all bounded but `bins`, one per second. */
  sizes(): { histogramBuckets: number; reservoir: number; errorMessages: number; errorSamples: number; bins: number } {
    return {
      histogramBuckets: this.#latency.size + this.#ack.size + this.#connect.size,
      reservoir: Math.min(this.#resSeen, this.#reservoir.length),
      errorMessages: this.#byMessage.size + (this.#other > 0 ? 1 : 0),
      errorSamples: this.#samples.length,
      bins: this.#bins.length + 1,
    };
  }

  snapshot(): Snapshot {
    const nowMs = this.#now();
    const cur = this.#bin(nowMs);
    const elapsedS = Math.max(0, (nowMs - this.#start) / 1000);
    let rates: Snapshot['rates'];
    const last = this.#bins[this.#bins.length - 1];
    if (last && last.t === cur.t - 1) {
      rates = { sent: last.sent, acked: last.acked, received: last.received, connects: last.connects, errors: last.errors };
    } else {
      const s = Math.max(elapsedS - cur.t, 0.001);
      rates = { sent: cur.sent / s, acked: cur.acked / s, received: cur.received / s, connects: cur.connects / s, errors: cur.errors / s };
    }
    return {
      elapsedS,
      connected: this.#connected,
      connectedMax: this.#connectedMax,
      connects: this.#connects,
      connectFailed: this.#connectFailed,
      sent: this.#sent,
      acked: this.#acked,
      received: this.#received,
      errors: this.#errors,
      refused: this.#refused,
      rates,
    };
  }

  /**
   * The summary up to now. Does not stop the collector: the open second is included as the last
   * (partial) bin, and a later finish() gives a newer summary.
   */
  finish(): RunSummary {
    const nowMs = this.#now();
    const cur = this.#bin(nowMs);
    const durationMs = Math.max(0, nowMs - this.#start);
    // The open second ends the list, unless the run ended exactly at its start with nothing in it.
    const openBin = this.#closeBin(cur);
    const openEmpty = cur.sent + cur.acked + cur.received + cur.connects + cur.connectFailed + cur.errors + cur.refused === 0;
    const bins = openEmpty && this.#bins.length > 0 && durationMs <= cur.t * 1000 ? [...this.#bins] : [...this.#bins, openBin];
    const peak = { ...this.#peak };
    const lastBin = bins[bins.length - 1]!;
    peak.sent = Math.max(peak.sent, lastBin.sent);
    peak.acked = Math.max(peak.acked, lastBin.acked);
    peak.received = Math.max(peak.received, lastBin.received);
    peak.connects = Math.max(peak.connects, lastBin.connects);
    const secs = durationMs / 1000;
    const rate = (n: number) => (secs > 0 ? n / secs : 0);
    const byMessage: Record<string, number> = {};
    for (const [m, c] of [...this.#byMessage].sort((a, b) => b[1] - a[1] || (a[0] < b[0] ? -1 : 1))) byMessage[m] = c;
    if (this.#other > 0) byMessage[OTHER_ERRORS] = (byMessage[OTHER_ERRORS] ?? 0) + this.#other;
    const c = this.#connect.stats();
    return {
      startedAt: this.#start,
      durationMs,
      devices: { connectedMax: this.#connectedMax, connectedAtEnd: this.#connected },
      totals: {
        sent: this.#sent,
        acked: this.#acked,
        received: this.#received,
        connects: this.#connects,
        connectFailed: this.#connectFailed,
        disconnects: this.#disconnects,
        errors: this.#errors,
        refused: this.#refused,
      },
      rates: { sent: rate(this.#sent), acked: rate(this.#acked), received: rate(this.#received) },
      peak,
      latency: this.#latency.stats(),
      ack: this.#ack.stats(),
      connect: {
        count: this.#connects + this.#connectFailed,
        ok: this.#connects,
        failed: this.#connectFailed,
        timed: c.count,
        p50: c.p50,
        p95: c.p95,
        p99: c.p99,
        max: c.max,
        mean: c.mean,
        distribution: this.#connect.distribution(),
      },
      errors: { total: this.#errors, byMessage, samples: this.#samples.map((s) => ({ ...s })) },
      bins,
    };
  }

  // ── internals ──

  /** The open bin for time `nowMs`, closing the bins of the seconds that ended. */
  #bin(nowMs: number = this.#now()): OpenBin {
    const sec = Math.max(0, Math.floor((nowMs - this.#start) / 1000));
    let cur = this.#cur;
    if (sec <= cur.t) return cur; // same second, or the clock stepped back: count it in the open one
    this.#bins.push(this.#closeBin(cur));
    this.#trackPeak(cur);
    this.#resSeen = 0;
    // Seconds without any event get empty bins, so bins[i].t === i.
    for (let t = cur.t + 1; t < sec; t++) this.#bins.push(this.#closeBin(emptyBin(t)));
    cur = this.#cur = emptyBin(sec);
    return cur;
  }

  #trackPeak(b: OpenBin): void {
    if (b.sent > this.#peak.sent) this.#peak.sent = b.sent;
    if (b.acked > this.#peak.acked) this.#peak.acked = b.acked;
    if (b.received > this.#peak.received) this.#peak.received = b.received;
    if (b.connects > this.#peak.connects) this.#peak.connects = b.connects;
  }

  /** The MetricsBin of an open bin (latency percentiles from this second's reservoir when it is the current one). */
  #closeBin(b: OpenBin): MetricsBin {
    const out: MetricsBin = {
      t: b.t,
      sent: b.sent,
      acked: b.acked,
      received: b.received,
      connects: b.connects,
      errors: b.errors,
      connectFailed: b.connectFailed,
      refused: b.refused,
      connected: this.#connected,
    };
    if (b === this.#cur && this.#resSeen > 0) {
      const sorted = this.#reservoir.slice(0, Math.min(this.#resSeen, RESERVOIR_SIZE)).sort();
      out.p50 = rankOf(sorted, 0.5);
      out.p95 = rankOf(sorted, 0.95);
      out.p99 = rankOf(sorted, 0.99);
      out.max = b.latMax;
    }
    return out;
  }

  /** xorshift32: a cheap deterministic generator for the reservoir. */
  #random(): number {
    let x = this.#rng;
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    this.#rng = x >>> 0;
    return this.#rng;
  }
}
