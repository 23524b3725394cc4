import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import { LiveStatus } from '../../simulator/progress.js';
import {
  HISTOGRAM_BUCKETS,
  HISTOGRAM_RELATIVE_ERROR,
  LogLinearHistogram,
  MAX_ERROR_MESSAGES,
  MAX_ERROR_SAMPLES,
  MetricsCollector,
  OTHER_ERRORS,
  RESERVOIR_SIZE,
} from '../../simulator/metrics.js';

/** A clock the test moves by hand. */
function fakeClock(start = 1_700_000_000_000) {
  const c = { now: start, fn: () => c.now };
  return c;
}

function near(actual: number | null, expected: number, rel = HISTOGRAM_RELATIVE_ERROR) {
  assert.ok(actual !== null, 'expected a value');
  assert.ok(Math.abs(actual - expected) <= expected * rel, `${actual} is not within ${rel * 100}% of ${expected}`);
}

/** Deterministic shuffle so the histogram sees values out of order. */
function shuffled(n: number): number[] {
  const a = Array.from({ length: n }, (_, i) => i + 1);
  let x = 12345;
  for (let i = a.length - 1; i > 0; i--) {
    x = (x * 1103515245 + 12345) >>> 0;
    const j = x % (i + 1);
    [a[i], a[j]] = [a[j]!, a[i]!];
  }
  return a;
}

test('histogram: 1..10000 ms uniform gives p50≈5000, p95≈9500, p99≈9900 within the documented error; min, max, mean exact', () => {
  const h = new LogLinearHistogram();
  for (const v of shuffled(10_000)) h.record(v);
  const s = h.stats();
  assert.equal(s.count, 10_000);
  near(s.p50, 5000);
  near(s.p95, 9500);
  near(s.p99, 9900);
  assert.equal(s.max, 10_000);
  assert.equal(s.min, 1);
  assert.equal(s.mean, 5000.5);
  // The documented 1 % is loose: the actual bucketing error is well below it.
  near(s.p50, 5000, 0.006);
  near(s.p99, 9900, 0.006);
});

test('histogram: relative error stays within 1% across 0.01 ms – 10 min, and percentiles never leave [min, max]', () => {
  for (const v of [0.01, 0.0137, 0.1, 0.257, 1, 3.3, 17.77, 123.4, 999.9, 4321, 65_432, 599_999]) {
    const h = new LogLinearHistogram();
    h.record(v);
    h.record(v * 1.0005); // two close values: p50 is the smaller one
    near(h.percentile(0.5), v);
    assert.equal(h.percentile(1), v * 1.0005);
  }
  const h = new LogLinearHistogram();
  h.record(700_000); // beyond 10 min: top bucket, max still exact
  assert.equal(h.max, 700_000);
  assert.equal(h.percentile(0.5), 700_000); // clamped to the exact [min, max]
});

test('histogram: empty gives nulls; a two-valued distribution gives its two values', () => {
  const h = new LogLinearHistogram();
  assert.deepEqual(h.stats(), { count: 0, min: null, p50: null, p95: null, p99: null, max: null, mean: null });
  assert.deepEqual(h.distribution(), []);
  for (let i = 0; i < 90; i++) h.record(2);
  for (let i = 0; i < 10; i++) h.record(200);
  near(h.percentile(0.5), 2);
  near(h.percentile(0.9), 2);
  near(h.percentile(0.91), 200);
  const d = h.distribution();
  assert.equal(d.reduce((a, b) => a + b.count, 0), 100);
  assert.deepEqual(d[0], { fromMs: 2, toMs: 3, count: 90 });
  assert.deepEqual(d[d.length - 1], { fromMs: 200, toMs: 300, count: 10 });
});

test('collector: events land in the bin of their second (injected clock), with empty seconds filled', () => {
  const c = fakeClock();
  const m = new MetricsCollector(c.now, c.fn);
  m.onConnect(true, 5);
  m.onSent();
  m.onSent();
  c.now += 999; // still second 0
  m.onAcked(3);
  c.now += 1; // second 1
  m.onSent();
  m.onReceived(10);
  m.onReceived(30);
  c.now += 2000; // second 3 (second 2 had nothing)
  m.onError('boom', 'dev-1');
  m.onRefused();
  m.onDisconnect();
  c.now += 500;
  const s = m.finish();
  assert.equal(s.durationMs, 3500);
  assert.equal(s.startedAt, c.now - 3500);
  assert.deepEqual(
    s.bins.map((b) => b.t),
    [0, 1, 2, 3],
  );
  assert.deepEqual(
    s.bins.map((b) => [b.sent, b.acked, b.received, b.connects, b.errors, b.refused, b.connected]),
    [
      [2, 1, 0, 1, 0, 0, 1],
      [1, 0, 2, 0, 0, 0, 1],
      [0, 0, 0, 0, 0, 0, 1],
      [0, 0, 0, 0, 1, 1, 0],
    ],
  );
  assert.equal(s.bins[0]!.p50, undefined);
  assert.equal(s.bins[1]!.p50, 10);
  assert.equal(s.bins[1]!.p99, 30);
  assert.equal(s.bins[1]!.max, 30);
  assert.deepEqual(s.totals, { sent: 3, acked: 1, received: 2, connects: 1, connectFailed: 0, disconnects: 1, errors: 1, refused: 1 });
  assert.deepEqual(s.devices, { connectedMax: 1, connectedAtEnd: 0 });
  assert.equal(s.rates.sent, 3 / 3.5);
  assert.equal(s.peak.sent, 2);
  assert.equal(s.latency.count, 2);
  assert.equal(s.latency.max, 30);
  assert.equal(s.latency.mean, 20);
  assert.deepEqual(s.errors.samples, [{ t: 3000, message: 'boom', device: 'dev-1' }]);
  assert.deepEqual(s.errors.byMessage, { boom: 1 });
});

test('collector: per-second percentiles are exact up to the reservoir size, max always exact', () => {
  const c = fakeClock();
  const m = new MetricsCollector(c.now, c.fn);
  for (const v of shuffled(1000)) m.onReceived(v); // second 0: 1..1000 exactly
  c.now += 1000;
  for (let i = 0; i < 100_000; i++) m.onReceived(i === 54_321 ? 1e5 : (i % 1000) + 1); // second 1: sampled
  c.now += 1000;
  const s = m.finish();
  const b0 = s.bins[0]!;
  assert.deepEqual([b0.p50, b0.p95, b0.p99, b0.max], [500, 950, 990, 1000]);
  const b1 = s.bins[1]!;
  assert.equal(b1.max, 1e5);
  assert.ok(Math.abs(b1.p50! - 500) < 60, `sampled p50 ${b1.p50}`);
  assert.ok(Math.abs(b1.p95! - 950) < 25, `sampled p95 ${b1.p95}`);
  near(s.latency.p50, 500);
  assert.equal(s.latency.max, 1e5);
  assert.equal(s.latency.count, 101_000);
});

test('collector: memory stays bounded when fed 1e6 latencies', () => {
  const c = fakeClock();
  const m = new MetricsCollector(c.now, c.fn);
  for (let i = 0; i < 1_000_000; i++) {
    if (i % 100_000 === 0) c.now += 1000; // 10 seconds
    m.onReceived((i % 5000) / 10 + 0.5);
    m.onSent();
  }
  const z = m.sizes();
  assert.ok(z.reservoir <= RESERVOIR_SIZE);
  assert.equal(z.histogramBuckets, 3 * HISTOGRAM_BUCKETS);
  assert.ok(HISTOGRAM_BUCKETS < 5000, `histogram has ${HISTOGRAM_BUCKETS} buckets`);
  assert.equal(z.bins, 11);
  const s = m.finish();
  assert.equal(s.latency.count, 1_000_000);
  assert.equal(s.bins.length, 11);
  assert.equal(s.totals.sent, 1_000_000);
  near(s.latency.p50, 250.5);
  assert.equal(s.latency.max, 500.4);
});

test('collector: error texts are bucketed to 100 distinct plus other; samples keep the first 100', () => {
  const c = fakeClock();
  const m = new MetricsCollector(c.now, c.fn);
  for (let i = 0; i < 250; i++) m.onError(`error number ${i}`, `dev-${i}`);
  for (let i = 0; i < 5; i++) m.onError('error number 7');
  m.onError('x'.repeat(10_000));
  const z = m.sizes();
  assert.equal(z.errorMessages, MAX_ERROR_MESSAGES + 1);
  assert.equal(z.errorSamples, MAX_ERROR_SAMPLES);
  const s = m.finish();
  assert.equal(s.errors.total, 256);
  const keys = Object.keys(s.errors.byMessage);
  assert.equal(keys.length, MAX_ERROR_MESSAGES + 1);
  assert.equal(keys[0], 'error number 7'); // most frequent first
  assert.equal(s.errors.byMessage['error number 7'], 6);
  assert.equal(s.errors.byMessage[OTHER_ERRORS], 151);
  assert.equal(Object.values(s.errors.byMessage).reduce((a, b) => a + b, 0), 256);
  assert.equal(s.errors.samples.length, MAX_ERROR_SAMPLES);
  assert.deepEqual(s.errors.samples[99], { t: 0, message: 'error number 99', device: 'dev-99' });
});

test('collector: connect gauge, failures, connect-time stats and distribution', () => {
  const c = fakeClock();
  const m = new MetricsCollector(c.now, c.fn);
  for (let i = 1; i <= 100; i++) m.onConnect(true, i);
  m.onConnect(false);
  m.onConnect(false);
  for (let i = 0; i < 40; i++) m.onDisconnect();
  m.onConnect(true); // no time: counted, not timed
  const s = m.finish();
  assert.equal(s.connect.count, 103);
  assert.equal(s.connect.ok, 101);
  assert.equal(s.connect.failed, 2);
  assert.equal(s.connect.timed, 100);
  near(s.connect.p50, 50);
  near(s.connect.p99, 99);
  assert.equal(s.connect.max, 100);
  assert.equal(s.devices.connectedMax, 100);
  assert.equal(s.devices.connectedAtEnd, 61);
  assert.equal(s.connect.distribution.reduce((a, b) => a + b.count, 0), 100);
  assert.equal(s.connect.distribution[0]!.fromMs, 1);
  assert.equal(s.connect.distribution[s.connect.distribution.length - 1]!.toMs, 150);
});

test('snapshot: live totals and the rate of the last complete second', () => {
  const c = fakeClock();
  const m = new MetricsCollector(c.now, c.fn);
  m.onConnect(true, 1);
  c.now += 500;
  for (let i = 0; i < 50; i++) m.onSent();
  let snap = m.snapshot();
  assert.equal(snap.elapsedS, 0.5);
  assert.equal(snap.rates.sent, 100); // 50 in the first half second
  c.now += 600; // second 1
  for (let i = 0; i < 30; i++) m.onSent();
  snap = m.snapshot();
  assert.equal(snap.rates.sent, 50); // the complete second 0
  assert.equal(snap.sent, 80);
  assert.equal(snap.connected, 1);
  c.now += 5000; // nothing happened for 5 s
  snap = m.snapshot();
  assert.equal(snap.rates.sent, 0);
  assert.equal(snap.elapsedS, 6.1);
});

test('collector: finish() can be called again and keeps counting', () => {
  const c = fakeClock();
  const m = new MetricsCollector(c.now, c.fn);
  m.onSent();
  const a = m.finish();
  m.onSent();
  const b = m.finish();
  assert.equal(a.totals.sent, 1);
  assert.equal(b.totals.sent, 2);
  assert.equal(b.bins.length, 1);
  assert.equal(b.bins[0]!.sent, 2);
});

test('LiveStatus: rewrites one stderr line on a TTY, stays silent otherwise, clears on stop', async () => {
  const sink = (tty: boolean) => {
    const chunks: string[] = [];
    const w = new Writable({ write: (c, _e, cb) => (chunks.push(String(c)), cb()) }) as Writable & { isTTY?: boolean };
    w.isTTY = tty;
    return { w, chunks };
  };
  const c = fakeClock();
  const m = new MetricsCollector(c.now, c.fn);
  m.onConnect(true, 2);
  for (let i = 0; i < 1234; i++) m.onSent();
  m.onError('x');
  c.now += 2500;

  const tty = sink(true);
  const live = new LiveStatus({ stdout: tty.w, stderr: tty.w }, true, 10);
  live.start(() => ({ ...m.snapshot(), phase: 'running', planned: 10 }));
  await new Promise((r) => setTimeout(r, 35));
  live.stop();
  assert.ok(tty.chunks.length >= 2, 'drawn at start and by the timer');
  const line = tty.chunks[0]!;
  assert.ok(line.startsWith('\r'));
  assert.ok(!line.includes('\n'));
  assert.match(line, /running 2\.5s │ connected 1\/10 │ sent 0\/s \(1,234\)/);
  assert.match(line, /errors 1/);
  assert.equal(tty.chunks[tty.chunks.length - 1], '\r\x1b[K');

  const pipe = sink(false);
  const quiet = new LiveStatus({ stdout: pipe.w, stderr: pipe.w }, true, 10);
  quiet.start(() => m.snapshot());
  const disabled = new LiveStatus({ stdout: tty.w, stderr: tty.w }, false, 10);
  const before = tty.chunks.length;
  disabled.start(() => m.snapshot());
  await new Promise((r) => setTimeout(r, 25));
  quiet.stop();
  disabled.stop();
  assert.equal(pipe.chunks.length, 0);
  assert.equal(tty.chunks.length, before);
});
