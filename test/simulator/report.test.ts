import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, existsSync } from 'node:fs';
import { join } from 'node:path';
import { MetricsCollector, type RunSummary } from '../../simulator/metrics.js';
import { escapeHtml, formatSummary, renderReportHtml, writeReport } from '../../simulator/report.js';
import { tempDir } from '../helpers/tmp.js';

const EVIL = '<script>alert("x")</script>&\'';

/** A 30-second run with connects, traffic, latency and errors, on an injected clock. */
function fullSummary(): RunSummary {
  const c = { now: Date.UTC(2025, 0, 2, 3, 4, 5) };
  const m = new MetricsCollector(c.now, () => c.now);
  for (let i = 0; i < 50; i++) m.onConnect(true, 2 + (i % 20));
  m.onConnect(false);
  m.onError('connect failed: ECONNREFUSED', 'dev-0050');
  for (let s = 0; s < 30; s++) {
    for (let i = 0; i < 100 + s; i++) {
      m.onSent();
      m.onAcked(1 + (i % 5));
      m.onReceived(3 + (i % 40) + s);
    }
    if (s % 7 === 3) {
      m.onError(`publish failed: ${EVIL}`, EVIL);
      m.onRefused();
    }
    c.now += 1000;
  }
  return m.finish();
}

/** Connects and sends, but nothing received: no latency at all. */
function noLatencySummary(): RunSummary {
  const c = { now: Date.UTC(2025, 0, 2) };
  const m = new MetricsCollector(c.now, () => c.now);
  m.onConnect(true, 4);
  for (let s = 0; s < 5; s++) {
    m.onSent();
    c.now += 1000;
  }
  return m.finish();
}

function svgCount(html: string): number {
  return (html.match(/<svg\b/g) ?? []).length;
}

test('writeReport writes summary.json equal to the summary and a self-contained report.html', (t) => {
  const dir = join(tempDir(t), 'nested', 'report');
  const summary = fullSummary();
  const { summaryFile, htmlFile } = writeReport(dir, summary);
  assert.equal(summaryFile, join(dir, 'summary.json'));
  assert.equal(htmlFile, join(dir, 'report.html'));
  assert.ok(existsSync(summaryFile) && existsSync(htmlFile));
  assert.deepEqual(JSON.parse(readFileSync(summaryFile, 'utf8')), summary);

  const html = readFileSync(htmlFile, 'utf8');
  assert.match(html, /^<!DOCTYPE html>/);
  // No external resources of any kind: no src/href to a URL, no scripts, no imports.
  assert.doesNotMatch(html, /(src|href)\s*=\s*["']?\s*(https?:)?\/\//i);
  assert.doesNotMatch(html, /https?:\/\//i);
  assert.doesNotMatch(html, /<script|<link|<img|<iframe|@import|url\(/i);
  // throughput, latency, connect distribution, connects/s, connected devices, errors/s
  assert.equal(svgCount(html), 6);
  assert.doesNotMatch(html, /No data/);
  assert.match(html, /2025-01-02 03:04:05 UTC/);
  assert.match(html, /messages per second/);
  assert.match(html, /latency \(ms\)/);
  assert.match(html, /time to CONNACK/);
  assert.match(html, /ECONNREFUSED/);
});

test('report: every run string is escaped — a device id or error text with <script> never appears raw', (t) => {
  const dir = tempDir(t);
  const summary = fullSummary();
  writeReport(dir, summary, { scenario: `fleet ${EVIL}`, planned: { note: EVIL }, broker: EVIL });
  const html = readFileSync(join(dir, 'report.html'), 'utf8');
  assert.ok(!html.includes('<script'), 'raw <script> in the report');
  assert.ok(!html.includes(EVIL));
  assert.ok(html.includes(escapeHtml(EVIL)));
  assert.ok(html.includes(`<h1>Witness simulator report — fleet ${escapeHtml(EVIL)}</h1>`));
  // the escaped device id is in the error samples table
  assert.ok(html.includes(`<td>${escapeHtml(EVIL)}</td>`));
  assert.equal(escapeHtml(`<a href="x">'&`), '&lt;a href=&quot;x&quot;&gt;&#39;&amp;');
});

test('summary.json merges the extra fields at the top level; the summary wins a clash', (t) => {
  const dir = tempDir(t);
  const summary = fullSummary();
  writeReport(dir, summary, { scenario: 'every-incident', seed: 'abc', counts: { devices: 50 }, durationMs: -1 });
  const json = JSON.parse(readFileSync(join(dir, 'summary.json'), 'utf8'));
  assert.equal(json.scenario, 'every-incident');
  assert.equal(json.seed, 'abc');
  assert.deepEqual(json.counts, { devices: 50 });
  assert.equal(json.durationMs, summary.durationMs);
  const { scenario, seed, counts, ...rest } = json;
  assert.deepEqual(rest, summary);
  const html = readFileSync(join(dir, 'report.html'), 'utf8');
  assert.match(html, /<title>Witness simulator report — every-incident<\/title>/);
  assert.match(html, /every-incident/);
});

test('report: an empty latency series renders a clear "no data" note instead of a chart', (t) => {
  const dir = tempDir(t);
  const summary = noLatencySummary();
  assert.equal(summary.latency.count, 0);
  writeReport(dir, summary, { scenario: 'no-subscriber' });
  const html = readFileSync(join(dir, 'report.html'), 'utf8');
  assert.match(html, /<p class="nodata">No data: no latency was measured/);
  // errors: none at all → a note too; throughput, connect distribution, connects/s, connected still drawn
  assert.match(html, /<p class="nodata">No data: no error/);
  assert.equal(svgCount(html), 4);
  assert.doesNotMatch(html, /NaN|Infinity|undefined/);
});

test('report: a run with no event at all renders notes only, never a broken chart', () => {
  const m = new MetricsCollector(0, () => 0);
  const html = renderReportHtml(m.finish(), {});
  assert.equal(svgCount(html), 0);
  assert.ok((html.match(/class="nodata"/g) ?? []).length >= 4);
  assert.doesNotMatch(html, /NaN|Infinity|undefined/);
});

test('report: a long run is grouped into at most 600 points per chart', () => {
  const c = { now: 0 };
  const m = new MetricsCollector(0, () => c.now);
  for (let s = 0; s < 3 * 3600; s++) {
    m.onSent();
    m.onReceived(5);
    c.now += 1000;
  }
  const summary = m.finish();
  assert.equal(summary.bins.length, 3 * 3600); // the run ended exactly at a second boundary: no empty open bin
  const html = renderReportHtml(summary, { scenario: 'long' });
  const hovers = (html.match(/class="hover"/g) ?? []).length;
  assert.ok(hovers <= 600 * 5, `${hovers} hover columns`);
  assert.match(html, /mean over 18 s intervals/);
  assert.match(html, /time since start \(h:min:s\)/);
  assert.doesNotMatch(html, /NaN|Infinity|undefined/);
});

test('formatSummary: aligned lines with the totals, rates and percentiles', () => {
  const s = fullSummary();
  const text = formatSummary(s, { scenario: 'demo' });
  const lines = text.split('\n');
  assert.ok(lines.length >= 4 && lines.length <= 8);
  // values start in the same column on every line
  const cols = new Set(lines.map((l) => /^\S+ {2,}/.exec(l)?.[0].length));
  assert.equal(cols.size, 1, text);
  assert.ok(text.includes(`sent ${s.totals.sent.toLocaleString('en-US')}`), text);
  assert.ok(text.includes(`acked ${s.totals.acked.toLocaleString('en-US')}`), text);
  assert.ok(text.includes(`received ${s.totals.received.toLocaleString('en-US')}`), text);
  assert.match(text, /refused 4/);
  assert.match(text, /demo/);
  assert.match(text, /p99 \d/);
  assert.match(text, /connects\s+50 ok · 1 failed · p50 \d/);
  assert.match(text, /errors\s+5 — 4× publish failed/);
  assert.ok(!text.endsWith('\n'));
  const empty = formatSummary(noLatencySummary());
  assert.match(empty, /latency\s+no data/);
});
