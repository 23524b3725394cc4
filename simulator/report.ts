/**
 * `--report DIR`: DIR/summary.json (the RunSummary, with the caller's extra fields merged at the
 * top level) and DIR/report.html, one self-contained page: inline CSS, inline SVG charts drawn
 * here, no script and no external resource. Hover tooltips are SVG <title> elements (shown by
 * every browser without script). Every string from the run (scenario name, device ids, error
 * texts, extra fields) is HTML-escaped.
 *
 * Also formatSummary(): the few lines printed on the terminal at the end of a run.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { MetricsBin } from './types.js';
import { HISTOGRAM_RELATIVE_ERROR, OTHER_ERRORS, RESERVOIR_SIZE, type DistributionBar, type RunSummary } from './metrics.js';

// ── formatting ───────────────────────────────────────────────────────────────────────────────

/** Escapes text for HTML content and attribute values. */
export function escapeHtml(s: unknown): string {
  return String(s).replace(/[&<>"']/g, (c) => (c === '&' ? '&amp;' : c === '<' ? '&lt;' : c === '>' ? '&gt;' : c === '"' ? '&quot;' : '&#39;'));
}

function int(n: number): string {
  return String(Math.round(n)).replace(/\B(?=(\d{3})+(?!\d))/g, ',');
}

/** A rate per second: "1,234/s", "12.5/s", "0.25/s". */
function rate(n: number): string {
  if (n >= 1000) return `${int(n)}/s`;
  if (n >= 10) return `${n.toFixed(1)}/s`;
  return `${Number(n.toFixed(2))}/s`;
}

/** A duration in ms for latency figures: "0.042 ms", "4.21 ms", "42.1 ms", "421 ms", "4.21 s", "2 min 3 s"; null → "—". */
export function formatMs(ms: number | null | undefined): string {
  if (ms === null || ms === undefined || !Number.isFinite(ms)) return '—';
  if (ms < 1) return `${Number(ms.toPrecision(2))} ms`;
  if (ms < 100) return `${Number(ms.toPrecision(3))} ms`;
  if (ms < 1000) return `${Math.round(ms)} ms`;
  if (ms < 60_000) return `${Number((ms / 1000).toPrecision(3))} s`;
  const m = Math.floor(ms / 60_000);
  return `${m} min ${Math.round((ms - m * 60_000) / 1000)} s`;
}

/** A run duration: "12.3 s", "2 min 03 s", "1 h 02 min 03 s". */
export function formatDuration(ms: number): string {
  const s = Math.max(0, ms) / 1000;
  if (s < 60) return `${s.toFixed(1)} s`;
  const total = Math.round(s);
  const h = Math.floor(total / 3600);
  const m = Math.floor((total % 3600) / 60);
  const sec = String(total % 60).padStart(2, '0');
  return h > 0 ? `${h} h ${String(m).padStart(2, '0')} min ${sec} s` : `${m} min ${sec} s`;
}

function isoTime(ms: number): string {
  const d = new Date(ms);
  return Number.isFinite(d.getTime()) ? d.toISOString().replace('T', ' ').replace(/\.\d+Z$/, ' UTC') : String(ms);
}

/** The scenario name from the caller's extra fields: extra.scenario (a string or an object with a name), extra.scenarioName, extra.name, or "replay of" extra.replayOf. */
function scenarioName(extra: Record<string, unknown>): string | undefined {
  const sc = extra['scenario'];
  if (typeof sc === 'string') return sc;
  if (sc && typeof sc === 'object' && typeof (sc as { name?: unknown }).name === 'string') return (sc as { name: string }).name;
  if (typeof extra['scenarioName'] === 'string') return extra['scenarioName'];
  if (typeof extra['name'] === 'string') return extra['name'];
  if (typeof extra['replayOf'] === 'string') return `replay of ${extra['replayOf']}`;
  return undefined;
}

// ── terminal summary ─────────────────────────────────────────────────────────────────────────

/** The end-of-run summary for the terminal: a few aligned lines (no final newline). */
export function formatSummary(summary: RunSummary, extra: Record<string, unknown> = {}): string {
  const s = summary;
  const name = scenarioName(extra);
  const rows: [string, string][] = [];
  rows.push(['run', `${name !== undefined ? `${name} · ` : ''}started ${isoTime(s.startedAt)} · ${formatDuration(s.durationMs)} · max ${int(s.devices.connectedMax)} devices connected`]);
  rows.push([
    'messages',
    `sent ${int(s.totals.sent)} (${rate(s.rates.sent)}) · acked ${int(s.totals.acked)} (${rate(s.rates.acked)}) · received ${int(s.totals.received)} (${rate(s.rates.received)}) · refused ${int(s.totals.refused)}`,
  ]);
  rows.push([
    'latency',
    s.latency.count > 0
      ? `p50 ${formatMs(s.latency.p50)} · p95 ${formatMs(s.latency.p95)} · p99 ${formatMs(s.latency.p99)} · max ${formatMs(s.latency.max)} (${int(s.latency.count)} received)`
      : 'no data (no subscriber, or nothing received)',
  ]);
  if (s.ack.count > 0) rows.push(['ack', `p50 ${formatMs(s.ack.p50)} · p95 ${formatMs(s.ack.p95)} · p99 ${formatMs(s.ack.p99)} · max ${formatMs(s.ack.max)}`]);
  rows.push([
    'connects',
    `${int(s.connect.ok)} ok · ${int(s.connect.failed)} failed` +
      (s.connect.timed > 0 ? ` · p50 ${formatMs(s.connect.p50)} · p95 ${formatMs(s.connect.p95)} · p99 ${formatMs(s.connect.p99)} · max ${formatMs(s.connect.max)}` : ''),
  ]);
  const top = Object.entries(s.errors.byMessage).slice(0, 3);
  rows.push(['errors', s.errors.total === 0 ? '0' : `${int(s.errors.total)} — ${top.map(([m, c]) => `${c}× ${m.length > 60 ? m.slice(0, 59) + '…' : m}`).join('; ')}`]);
  const w = Math.max(...rows.map(([k]) => k.length));
  return rows.map(([k, v]) => `${k.padEnd(w)}  ${v}`).join('\n');
}

// ── charts ───────────────────────────────────────────────────────────────────────────────────

/** Okabe–Ito colours: distinguishable with the common colour-vision deficiencies. Lines also differ by dash. */
const C = { blue: '#0072B2', orange: '#E69F00', green: '#009E73', red: '#D55E00', purple: '#CC79A7', sky: '#56B4E9', grey: '#555555' };

const W = 960;
const H = 280;
const M = { left: 78, right: 18, top: 14, bottom: 46 };
const PW = W - M.left - M.right;
const PH = H - M.top - M.bottom;
/** Most points (or bars) per chart; longer runs are grouped into intervals of several seconds. */
const MAX_POINTS = 600;

interface LineSeries {
  name: string;
  color: string;
  dash?: string;
  values: (number | undefined)[];
}

function niceStep(range: number, target: number): number {
  const raw = range / Math.max(1, target);
  const p = 10 ** Math.floor(Math.log10(raw));
  for (const m of [1, 2, 2.5, 5, 10]) if (raw <= m * p) return m * p;
  return 10 * p;
}

function linearTicks(max: number): { top: number; ticks: number[] } {
  if (!(max > 0)) return { top: 1, ticks: [0, 0.5, 1] };
  const step = niceStep(max, 5);
  const top = Math.ceil(max / step - 1e-9) * step;
  const ticks: number[] = [];
  for (let v = 0; v <= top + step / 2; v += step) ticks.push(Number(v.toPrecision(12)));
  return { top, ticks };
}

/** Time ticks in seconds: 1, 2, 5, 10, 15, 30 s, 1, 2, 5, 10, 15, 30 min, 1, 2, 6, 12 h. */
function timeTicks(maxS: number): number[] {
  const steps = [1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 21600, 43200, 86400];
  const step = steps.find((s) => maxS / s <= 10) ?? Math.ceil(maxS / 10 / 86400) * 86400;
  const out: number[] = [];
  for (let t = 0; t <= maxS + 1e-9; t += step) out.push(t);
  return out;
}

function timeLabel(t: number, maxS: number): string {
  if (maxS < 120) return `${t}`;
  const total = Math.round(t);
  const h = Math.floor(total / 3600);
  const m = Math.floor((total % 3600) / 60);
  const s = String(total % 60).padStart(2, '0');
  return h > 0 ? `${h}:${String(m).padStart(2, '0')}:${s}` : `${m}:${s}`;
}

function timeAxisTitle(maxS: number): string {
  return maxS < 120 ? 'time since start (s)' : maxS < 7200 ? 'time since start (min:s)' : 'time since start (h:min:s)';
}

function fmtTick(v: number): string {
  if (v === 0) return '0';
  const a = Math.abs(v);
  if (a >= 1e6) return `${Number((v / 1e6).toPrecision(3))}M`;
  if (a >= 1e4) return `${Number((v / 1e3).toPrecision(3))}k`;
  if (a >= 1) return int(v) === String(v) || a >= 1000 ? int(v) : String(Number(v.toPrecision(3)));
  return String(Number(v.toPrecision(2)));
}

function fmtMsTick(v: number): string {
  if (v >= 60_000) return `${Number((v / 60_000).toPrecision(3))} min`;
  if (v >= 1000) return `${Number((v / 1000).toPrecision(3))} s`;
  return `${Number(v.toPrecision(3))} ms`;
}

function legend(series: { name: string; color: string; dash?: string; bar?: boolean }[]): string {
  return (
    '<ul class="legend">' +
    series
      .map((s) => {
        const style = s.bar ? `background:${s.color}` : `border-top:3px ${s.dash ? (s.dash.startsWith('2') ? 'dotted' : 'dashed') : 'solid'} ${s.color}`;
        return `<li><span class="${s.bar ? 'swb' : 'sw'}" style="${style}"></span>${escapeHtml(s.name)}</li>`;
      })
      .join('') +
    '</ul>'
  );
}

function noData(message: string): string {
  return `<p class="nodata">No data: ${escapeHtml(message)}</p>`;
}

function axes(yTicks: { y: number; label: string }[], xTicks: { x: number; label: string }[], yTitle: string, xTitle: string): string {
  let out = '';
  for (const t of yTicks) {
    out += `<line class="grid" x1="${M.left}" x2="${M.left + PW}" y1="${t.y.toFixed(1)}" y2="${t.y.toFixed(1)}"/>`;
    out += `<text class="tick" x="${M.left - 6}" y="${(t.y + 4).toFixed(1)}" text-anchor="end">${escapeHtml(t.label)}</text>`;
  }
  for (const t of xTicks) {
    out += `<line class="axis" x1="${t.x.toFixed(1)}" x2="${t.x.toFixed(1)}" y1="${M.top + PH}" y2="${M.top + PH + 4}"/>`;
    out += `<text class="tick" x="${t.x.toFixed(1)}" y="${M.top + PH + 17}" text-anchor="middle">${escapeHtml(t.label)}</text>`;
  }
  out += `<line class="axis" x1="${M.left}" x2="${M.left + PW}" y1="${M.top + PH}" y2="${M.top + PH}"/>`;
  out += `<line class="axis" x1="${M.left}" x2="${M.left}" y1="${M.top}" y2="${M.top + PH}"/>`;
  out += `<text class="atitle" x="${M.left + PW / 2}" y="${H - 6}" text-anchor="middle">${escapeHtml(xTitle)}</text>`;
  out += `<text class="atitle" transform="translate(16 ${M.top + PH / 2}) rotate(-90)" text-anchor="middle">${escapeHtml(yTitle)}</text>`;
  return out;
}

function svgOpen(label: string): string {
  return `<svg viewBox="0 0 ${W} ${H}" role="img" aria-label="${escapeHtml(label)}" preserveAspectRatio="xMidYMid meet">`;
}

interface LineChartOptions {
  label: string;
  xs: number[];
  /** Width of one point's interval in seconds (for the tooltip). */
  span: number;
  series: LineSeries[];
  yTitle: string;
  xTitle: string;
  maxX: number;
  /** 'auto': logarithmic when the values span more than ~1.5 decades. */
  scale: 'linear' | 'log' | 'auto';
  fmtValue: (v: number) => string;
  fmtYTick: (v: number) => string;
}

function lineChart(o: LineChartOptions): string {
  let max = 0;
  let minPos = Infinity;
  for (const s of o.series)
    for (const v of s.values)
      if (v !== undefined && Number.isFinite(v)) {
        if (v > max) max = v;
        if (v > 0 && v < minPos) minPos = v;
      }
  const log = o.scale === 'log' || (o.scale === 'auto' && minPos < Infinity && max / minPos > 30);
  let yOf: (v: number) => number;
  let yTicks: { y: number; label: string }[];
  if (log) {
    const lo = 10 ** Math.floor(Math.log10(minPos));
    let hi = 10 ** Math.ceil(Math.log10(max));
    if (hi <= lo) hi = lo * 10;
    const span = Math.log10(hi) - Math.log10(lo);
    yOf = (v) => M.top + PH - ((Math.log10(Math.max(v, lo)) - Math.log10(lo)) / span) * PH;
    yTicks = [];
    for (let e = Math.log10(lo); e <= Math.log10(hi) + 1e-9; e++) {
      const d = 10 ** e;
      for (const m of span <= 2 ? [1, 2, 5] : [1]) {
        const v = Number((m * d).toPrecision(6));
        if (v <= hi * 1.0001) yTicks.push({ y: yOf(v), label: o.fmtYTick(v) });
      }
    }
  } else {
    const { top, ticks } = linearTicks(max);
    yOf = (v) => M.top + PH - (v / top) * PH;
    yTicks = ticks.map((v) => ({ y: yOf(v), label: o.fmtYTick(v) }));
  }
  const maxX = Math.max(o.maxX, 1);
  const xOf = (t: number) => M.left + (t / maxX) * PW;
  const xTicks = timeTicks(maxX).map((t) => ({ x: xOf(t), label: timeLabel(t, maxX) }));

  let body = axes(yTicks, xTicks, o.yTitle + (log ? ', log scale' : ''), o.xTitle);
  const few = o.xs.length <= 60;
  for (const s of o.series) {
    let d = '';
    let dots = '';
    let open = false;
    for (let i = 0; i < o.xs.length; i++) {
      const v = s.values[i];
      if (v === undefined || !Number.isFinite(v)) {
        open = false;
        continue;
      }
      const x = xOf(o.xs[i]!).toFixed(1);
      const y = yOf(v).toFixed(1);
      d += `${open ? 'L' : 'M'}${x} ${y}`;
      const prev = s.values[i - 1];
      const next = s.values[i + 1];
      if (few || ((prev === undefined || !Number.isFinite(prev)) && (next === undefined || !Number.isFinite(next)))) dots += `<circle cx="${x}" cy="${y}" r="2.5" fill="${s.color}"/>`;
      open = true;
    }
    body += `<path d="${d}" fill="none" stroke="${s.color}" stroke-width="2"${s.dash ? ` stroke-dasharray="${s.dash}"` : ''} stroke-linejoin="round"/>${dots}`;
  }
  // Hover: one transparent column per point, with every series' value in its <title>.
  const colW = PW / Math.max(1, o.xs.length);
  for (let i = 0; i < o.xs.length; i++) {
    const t = o.xs[i]!;
    const when = o.span > 1 ? `${timeLabel(t, maxX)}–${timeLabel(t + o.span, maxX)}` : timeLabel(t, maxX);
    const lines = o.series.map((s) => `${s.name}: ${s.values[i] === undefined ? '—' : o.fmtValue(s.values[i]!)}`);
    const x = Math.max(M.left, xOf(t) - colW / 2);
    body += `<rect class="hover" x="${x.toFixed(1)}" y="${M.top}" width="${colW.toFixed(2)}" height="${PH}"><title>${escapeHtml(`${o.xTitle.replace(/ \(.*/, '')} ${when}\n${lines.join('\n')}`)}</title></rect>`;
  }
  return legend(o.series) + svgOpen(o.label) + body + '</svg>';
}

interface BarSeries {
  name: string;
  color: string;
  values: number[];
}

interface BarChartOptions {
  label: string;
  /** Tooltip heading per bar. */
  labels: string[];
  series: BarSeries[];
  xTicks: { at: number; label: string }[];
  yTitle: string;
  xTitle: string;
  fmtValue: (v: number) => string;
  /** x ticks are at bar boundaries (index i = left edge of bar i) rather than bar centres. */
  edges?: boolean;
}

/** Stacked bars, one column per label. */
function barChart(o: BarChartOptions): string {
  const n = o.labels.length;
  let max = 0;
  for (let i = 0; i < n; i++) {
    let sum = 0;
    for (const s of o.series) sum += s.values[i] ?? 0;
    if (sum > max) max = sum;
  }
  const { top, ticks } = linearTicks(max);
  const yOf = (v: number) => M.top + PH - (v / top) * PH;
  const colW = PW / Math.max(1, n);
  const xOf = (i: number) => M.left + i * colW;
  const xTicks = o.xTicks.map((t) => ({ x: xOf(t.at) + (o.edges ? 0 : colW / 2), label: t.label }));
  let body = axes(
    ticks.map((v) => ({ y: yOf(v), label: fmtTick(v) })),
    xTicks,
    o.yTitle,
    o.xTitle,
  );
  const gap = colW > 4 ? Math.min(2, colW * 0.15) : 0;
  for (let i = 0; i < n; i++) {
    let base = 0;
    let rects = '';
    for (const s of o.series) {
      const v = s.values[i] ?? 0;
      if (v <= 0) continue;
      const y0 = yOf(base);
      const y1 = yOf(base + v);
      rects += `<rect x="${(xOf(i) + gap / 2).toFixed(2)}" y="${y1.toFixed(1)}" width="${Math.max(0.5, colW - gap).toFixed(2)}" height="${Math.max(0.5, y0 - y1).toFixed(1)}" fill="${s.color}"/>`;
      base += v;
    }
    const tip = `${o.labels[i]}\n${o.series.map((s) => `${s.name}: ${o.fmtValue(s.values[i] ?? 0)}`).join('\n')}`;
    body += `<g>${rects}<rect class="hover" x="${xOf(i).toFixed(2)}" y="${M.top}" width="${colW.toFixed(2)}" height="${PH}"><title>${escapeHtml(tip)}</title></rect></g>`;
  }
  return legend(o.series.map((s) => ({ ...s, bar: true }))) + svgOpen(o.label) + body + '</svg>';
}

// ── bins → points ────────────────────────────────────────────────────────────────────────────

interface Point {
  t: number;
  /** Seconds covered. */
  span: number;
  sent: number;
  acked: number;
  received: number;
  connects: number;
  connectFailed: number;
  errors: number;
  refused: number;
  connected?: number;
  p50?: number;
  p95?: number;
  p99?: number;
  max?: number;
}

/**
 * Groups the per-second bins into at most MAX_POINTS points of `span` seconds each: counts become
 * per-second rates over the seconds the interval actually covers (the run's last second is usually
 * partial: it counts for the part of it the run lasted, and when that is under half a second it is
 * merged into the second before), latency percentiles the worst second of the interval, and the
 * connected gauge its value at the interval's end.
 */
function toPoints(bins: MetricsBin[], durationMs: number): { points: Point[]; span: number; maxX: number } {
  if (bins.length === 0) return { points: [], span: 1, maxX: 1 };
  const sorted = [...bins].sort((a, b) => a.t - b.t);
  let lastT = sorted[sorted.length - 1]!.t;
  const durationS = Number.isFinite(durationMs) && durationMs > 0 ? durationMs / 1000 : lastT + 1;
  const coveredOf = (t: number) => (t < lastT ? 1 : Math.min(1, Math.max(0, durationS - t)));
  // A short final partial second joins the second before it.
  let tail: { t: number; into: number } | undefined;
  if (sorted.length > 1 && coveredOf(lastT) < 0.5 && sorted[sorted.length - 2]!.t === lastT - 1) tail = { t: lastT, into: lastT - 1 };
  const spanOf = (t: number) => (tail && t === tail.into ? 1 + coveredOf(tail.t) : coveredOf(t));
  if (tail) lastT = tail.into;
  const span = Math.max(1, Math.ceil((lastT + 1) / MAX_POINTS));
  const groups = new Map<number, Point & { secs: number }>();
  const worst = (a: number | undefined, b: number | undefined) => (b === undefined ? a : a === undefined ? b : Math.max(a, b));
  for (const b of sorted) {
    const t = tail && b.t === tail.t ? tail.into : b.t;
    const g = Math.floor(t / span) * span;
    let p = groups.get(g);
    if (!p) groups.set(g, (p = { t: g, span: Math.min(span, lastT + 1 - g), secs: 0, sent: 0, acked: 0, received: 0, connects: 0, connectFailed: 0, errors: 0, refused: 0 }));
    if (b.t === t) p.secs += spanOf(t);
    p.sent += b.sent;
    p.acked += b.acked;
    p.received += b.received;
    p.connects += b.connects;
    p.connectFailed += b.connectFailed ?? 0;
    p.errors += b.errors;
    p.refused += b.refused ?? 0;
    if (b.connected !== undefined) p.connected = b.connected;
    p.p50 = worst(p.p50, b.p50);
    p.p95 = worst(p.p95, b.p95);
    p.p99 = worst(p.p99, b.p99);
    p.max = worst(p.max, b.max);
  }
  const points = [...groups.values()].sort((a, b) => a.t - b.t);
  for (const p of points) {
    const k = p.secs > 0 ? p.secs : 1;
    p.sent /= k;
    p.acked /= k;
    p.received /= k;
    p.connects /= k;
    p.connectFailed /= k;
    p.errors /= k;
    p.refused /= k;
  }
  return { points, span, maxX: Math.max(1, lastT + 1) };
}

function timeBarTicks(points: Point[], maxX: number): { at: number; label: string }[] {
  // Bars sit at point index i covering [t, t + span); map time ticks onto fractional indices.
  if (points.length === 0) return [];
  const span = points.length > 1 ? points[1]!.t - points[0]!.t : 1;
  return timeTicks(maxX)
    .filter((t) => t / span <= points.length + 1e-9)
    .map((t) => ({ at: t / span, label: timeLabel(t, maxX) }));
}

// ── the page ─────────────────────────────────────────────────────────────────────────────────

const CSS = `
:root{--fg:#1b1f24;--muted:#57606a;--line:#d0d7de;--bg:#fff;--card:#f6f8fa}
*{box-sizing:border-box}
body{margin:0;font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,Helvetica,Arial,sans-serif;color:var(--fg);background:var(--bg)}
main{max-width:1100px;margin:0 auto;padding:20px 24px 48px}
h1{font-size:22px;margin:0 0 4px}
h2{font-size:17px;margin:28px 0 6px;padding-top:10px;border-top:1px solid var(--line)}
.sub{color:var(--muted);margin:0 0 14px}
.cap{color:var(--muted);margin:0 0 6px;font-size:13px}
table{border-collapse:collapse;font-variant-numeric:tabular-nums}
th,td{text-align:left;padding:4px 12px 4px 0;vertical-align:top}
td.n,th.n{text-align:right}
.grid2{display:grid;grid-template-columns:repeat(auto-fit,minmax(320px,1fr));gap:12px 32px}
.card{background:var(--card);border:1px solid var(--line);border-radius:6px;padding:10px 14px}
.card h3{font-size:13px;text-transform:uppercase;letter-spacing:.04em;color:var(--muted);margin:0 0 6px}
.card table td:first-child{color:var(--muted)}
.kpis{display:flex;flex-wrap:wrap;gap:10px;margin:10px 0 4px}
.kpi{background:var(--card);border:1px solid var(--line);border-radius:6px;padding:8px 14px;min-width:120px}
.kpi b{display:block;font-size:20px;font-variant-numeric:tabular-nums}
.kpi span{color:var(--muted);font-size:12px}
.kpi.bad b{color:#B3401A}
figure{margin:6px 0 0}
svg{width:100%;height:auto;display:block;font-family:inherit}
svg .grid{stroke:#e3e7eb;stroke-width:1}
svg .axis{stroke:#6e7781;stroke-width:1}
svg .tick{font-size:12px;fill:#424a53}
svg .atitle{font-size:12.5px;fill:#24292f}
svg .hover{fill:transparent}
svg .hover:hover{fill:rgba(0,0,0,.07)}
.legend{list-style:none;padding:0;margin:4px 0 0;display:flex;flex-wrap:wrap;gap:4px 18px;font-size:13px}
.legend li{display:flex;align-items:center;gap:6px}
.sw{display:inline-block;width:26px;height:0}
.swb{display:inline-block;width:12px;height:12px;border-radius:2px}
.nodata{margin:8px 0;padding:18px;border:1px dashed var(--line);border-radius:6px;color:var(--muted);text-align:center;background:var(--card)}
.errs td.msg{word-break:break-word;max-width:720px}
details{margin-top:8px}
pre{background:var(--card);border:1px solid var(--line);border-radius:6px;padding:10px;overflow:auto;max-height:420px;font-size:12px}
footer{margin-top:36px;color:var(--muted);font-size:12.5px}
`;

function table(rows: [string, string][]): string {
  return `<table>${rows.map(([k, v]) => `<tr><td>${escapeHtml(k)}</td><td class="n">${escapeHtml(v)}</td></tr>`).join('')}</table>`;
}

function kpi(label: string, value: string, bad = false): string {
  return `<div class="kpi${bad ? ' bad' : ''}"><b>${escapeHtml(value)}</b><span>${escapeHtml(label)}</span></div>`;
}

function distributionLabel(b: DistributionBar): string {
  return `${fmtMsTick(b.fromMs).replace(/ (ms|s|min)$/, '')}–${fmtMsTick(b.toMs)}`;
}

/** The report page for a summary (also exported for tests and for callers that serve it themselves). */
export function renderReportHtml(summary: RunSummary, extra: Record<string, unknown> = {}): string {
  const s = summary;
  const name = scenarioName(extra) ?? 'simulator run';
  const { points, span, maxX } = toPoints(s.bins, s.durationMs);
  const xs = points.map((p) => p.t);
  const xTitle = timeAxisTitle(maxX);
  const perSec = span > 1 ? `per second (mean over ${span} s intervals)` : 'per second';
  const parts: string[] = [];

  parts.push(`<h1>Witness simulator report — ${escapeHtml(name)}</h1>`);
  parts.push(`<p class="sub">Started ${escapeHtml(isoTime(s.startedAt))} · duration ${escapeHtml(formatDuration(s.durationMs))} · up to ${escapeHtml(int(s.devices.connectedMax))} devices connected</p>`);

  parts.push(
    '<div class="kpis">' +
      kpi('messages sent', int(s.totals.sent)) +
      kpi('mean send rate', rate(s.rates.sent)) +
      kpi('acked', int(s.totals.acked)) +
      kpi('received by subscriber', int(s.totals.received)) +
      kpi('latency p99', formatMs(s.latency.p99)) +
      kpi('refused by broker', int(s.totals.refused), s.totals.refused > 0) +
      kpi('errors', int(s.errors.total), s.errors.total > 0) +
      '</div>',
  );

  const runRows: [string, string][] = [
    ['scenario', name],
    ['started', isoTime(s.startedAt)],
    ['duration', formatDuration(s.durationMs)],
    ['devices connected (max)', int(s.devices.connectedMax)],
    ['devices connected at end', int(s.devices.connectedAtEnd)],
  ];
  for (const [k, v] of Object.entries(extra)) {
    if (k === 'scenario') continue; // shown as the first row (or, as an object, under Run details)
    if (v === null || ['string', 'number', 'boolean'].includes(typeof v)) runRows.push([k, typeof v === 'number' ? int(v) === String(v) ? int(v) : String(v) : String(v)]);
  }
  parts.push(
    '<div class="grid2">' +
      `<div class="card"><h3>Run</h3>${table(runRows)}</div>` +
      `<div class="card"><h3>Totals</h3>${table([
        ['sent', `${int(s.totals.sent)} (${rate(s.rates.sent)}, peak ${int(s.peak.sent)}/s)`],
        ['acked', `${int(s.totals.acked)} (${rate(s.rates.acked)})`],
        ['received', `${int(s.totals.received)} (${rate(s.rates.received)})`],
        ['refused by broker', int(s.totals.refused)],
        ['errors', int(s.errors.total)],
        ['connects ok / failed', `${int(s.connect.ok)} / ${int(s.connect.failed)}`],
        ['disconnects', int(s.totals.disconnects)],
      ])}</div>` +
      `<div class="card"><h3>Latency (end to end)</h3>${
        s.latency.count > 0
          ? table([
              ['messages measured', int(s.latency.count)],
              ['p50', formatMs(s.latency.p50)],
              ['p95', formatMs(s.latency.p95)],
              ['p99', formatMs(s.latency.p99)],
              ['max', formatMs(s.latency.max)],
              ['mean', formatMs(s.latency.mean)],
            ])
          : '<p class="cap">No data: no subscriber, or it received nothing.</p>'
      }${s.ack.count > 0 ? `<h3 style="margin-top:10px">Publish acknowledgement</h3>${table([['acks', int(s.ack.count)], ['p50', formatMs(s.ack.p50)], ['p99', formatMs(s.ack.p99)], ['max', formatMs(s.ack.max)]])}` : ''}</div>` +
      `<div class="card"><h3>Connect time (to CONNACK)</h3>${
        s.connect.timed > 0
          ? table([
              ['connects timed', int(s.connect.timed)],
              ['p50', formatMs(s.connect.p50)],
              ['p95', formatMs(s.connect.p95)],
              ['p99', formatMs(s.connect.p99)],
              ['max', formatMs(s.connect.max)],
              ['mean', formatMs(s.connect.mean)],
            ])
          : '<p class="cap">No data: no timed connect.</p>'
      }</div>` +
      '</div>',
  );

  // Throughput.
  parts.push('<h2>Throughput</h2>');
  parts.push(`<p class="cap">Messages ${perSec}: sent by the devices, acknowledged by the broker (QoS 1/2), received by the latency subscriber.</p>`);
  if (points.length === 0 || s.totals.sent + s.totals.acked + s.totals.received === 0) parts.push(noData('no message was sent or received.'));
  else
    parts.push(
      '<figure>' +
        lineChart({
          label: 'Throughput over time',
          xs,
          span,
          maxX,
          xTitle,
          yTitle: 'messages per second',
          scale: 'linear',
          fmtValue: (v) => rate(v),
          fmtYTick: fmtTick,
          series: [
            { name: 'sent', color: C.blue, values: points.map((p) => p.sent) },
            { name: 'acked', color: C.orange, dash: '7 4', values: points.map((p) => p.acked) },
            { name: 'received', color: C.green, dash: '2 3', values: points.map((p) => p.received) },
          ],
        }) +
        '</figure>',
    );

  // Latency.
  parts.push('<h2>End-to-end latency</h2>');
  parts.push(
    `<p class="cap">From send to receipt by the subscriber, percentiles of the messages received in each second${span > 1 ? ` (each point: the worst second of a ${span} s interval)` : ''}.</p>`,
  );
  if (s.latency.count === 0 || !points.some((p) => p.max !== undefined)) parts.push(noData('no latency was measured — the scenario has no subscriber, or it received no message.'));
  else
    parts.push(
      '<figure>' +
        lineChart({
          label: 'End-to-end latency percentiles over time',
          xs,
          span,
          maxX,
          xTitle,
          yTitle: 'latency (ms)',
          scale: 'auto',
          fmtValue: (v) => formatMs(v),
          fmtYTick: fmtMsTick,
          series: [
            { name: 'p50', color: C.blue, values: points.map((p) => p.p50) },
            { name: 'p95', color: C.orange, dash: '7 4', values: points.map((p) => p.p95) },
            { name: 'p99', color: C.red, dash: '10 3 2 3', values: points.map((p) => p.p99) },
            { name: 'max', color: C.grey, dash: '2 3', values: points.map((p) => p.max) },
          ],
        }) +
        '</figure>',
    );

  // Connects.
  parts.push('<h2>Connects</h2>');
  parts.push('<p class="cap">Distribution of the time from connect to CONNACK (successful connects), number of connects per bar; bars are ms ranges.</p>');
  const dist = s.connect.distribution;
  if (dist.length === 0) parts.push(noData('no connect time was measured.'));
  else {
    const every = Math.max(1, Math.ceil(dist.length / 12));
    parts.push(
      '<figure>' +
        barChart({
          label: 'Connect time distribution',
          labels: dist.map((b) => `${distributionLabel(b)}`),
          series: [{ name: 'connects', color: C.blue, values: dist.map((b) => b.count) }],
          xTicks: dist.map((b, i) => ({ at: i, label: distributionLabel(b) })).filter((_, i) => i % every === 0),
          yTitle: 'connects',
          xTitle: 'time to CONNACK',
          fmtValue: (v) => int(v),
        }) +
        '</figure>',
    );
  }
  parts.push(`<p class="cap">Connect attempts ${perSec}.</p>`);
  if (points.length === 0 || s.connect.count === 0) parts.push(noData('no connect attempt.'));
  else
    parts.push(
      '<figure>' +
        barChart({
          label: 'Connects per second',
          labels: points.map((p) => (span > 1 ? `${timeLabel(p.t, maxX)}–${timeLabel(p.t + p.span, maxX)}` : `${timeLabel(p.t, maxX)}`)),
          series: [
            { name: 'connected', color: C.blue, values: points.map((p) => p.connects) },
            { name: 'connect failed', color: C.red, values: points.map((p) => p.connectFailed) },
          ],
          xTicks: timeBarTicks(points, maxX),
          edges: true,
          yTitle: 'connects per second',
          xTitle,
          fmtValue: (v) => rate(v),
        }) +
        '</figure>',
    );
  if (points.some((p) => p.connected !== undefined) && s.devices.connectedMax > 0) {
    parts.push('<p class="cap">Devices connected at the end of each interval.</p>');
    parts.push(
      '<figure>' +
        lineChart({
          label: 'Connected devices over time',
          xs: points.map((p) => p.t + p.span),
          span,
          maxX,
          xTitle,
          yTitle: 'devices connected',
          scale: 'linear',
          fmtValue: (v) => int(v),
          fmtYTick: fmtTick,
          series: [{ name: 'connected devices', color: C.purple, values: points.map((p) => p.connected) }],
        }) +
        '</figure>',
    );
  }

  // Errors.
  parts.push('<h2>Errors</h2>');
  parts.push(`<p class="cap">Errors of the simulator's clients and publishes refused by the broker, ${perSec}. Refusals are expected for injected incidents the broker enforces.</p>`);
  if (points.length === 0 || s.errors.total + s.totals.refused === 0) parts.push(noData('no error and no refused publish during the run.'));
  else
    parts.push(
      '<figure>' +
        barChart({
          label: 'Errors per second',
          labels: points.map((p) => (span > 1 ? `${timeLabel(p.t, maxX)}–${timeLabel(p.t + p.span, maxX)}` : `${timeLabel(p.t, maxX)}`)),
          series: [
            { name: 'errors', color: C.red, values: points.map((p) => p.errors) },
            { name: 'refused by broker', color: C.orange, values: points.map((p) => p.refused) },
          ],
          xTicks: timeBarTicks(points, maxX),
          edges: true,
          yTitle: 'errors and refusals per second',
          xTitle,
          fmtValue: (v) => rate(v),
        }) +
        '</figure>',
    );
  const byMessage = Object.entries(s.errors.byMessage);
  if (byMessage.length > 0) {
    parts.push(
      `<table class="errs"><thead><tr><th class="n">count</th><th class="n">share</th><th>error</th></tr></thead><tbody>${byMessage
        .map(
          ([m, c]) =>
            `<tr><td class="n">${int(c)}</td><td class="n">${s.errors.total > 0 ? ((c / s.errors.total) * 100).toFixed(1) : '0'}%</td><td class="msg">${m === OTHER_ERRORS ? '<i>other messages (beyond the first 100 distinct)</i>' : escapeHtml(m)}</td></tr>`,
        )
        .join('')}</tbody></table>`,
    );
  }
  if (s.errors.samples.length > 0) {
    parts.push(
      `<details><summary>First ${s.errors.samples.length} errors (time, device, message)</summary><table class="errs"><thead><tr><th class="n">time (s)</th><th>device</th><th>error</th></tr></thead><tbody>${s.errors.samples
        .map((e) => `<tr><td class="n">${(e.t / 1000).toFixed(3)}</td><td>${escapeHtml(e.device ?? '—')}</td><td class="msg">${escapeHtml(e.message)}</td></tr>`)
        .join('')}</tbody></table></details>`,
    );
  }

  // Everything else the caller passed (scenario, planned incidents, files).
  const structured = Object.entries(extra).filter(([, v]) => v !== null && typeof v === 'object');
  if (structured.length > 0) {
    parts.push('<h2>Run details</h2>');
    for (const [k, v] of structured) parts.push(`<details><summary>${escapeHtml(k)}</summary><pre>${escapeHtml(JSON.stringify(v, null, 2))}</pre></details>`);
  }

  parts.push(
    `<footer>Precision: overall percentiles come from a log-linear histogram, within ${HISTOGRAM_RELATIVE_ERROR * 100}% of the true value from 0.01 ms to 10 min; max, count and mean are exact. ` +
      `Per-second percentiles are exact up to ${int(RESERVOIR_SIZE)} messages per second, above that from a uniform sample of ${int(RESERVOIR_SIZE)}. Percentiles use the nearest-rank definition. ` +
      `Hover over a chart for the values. The data is in summary.json next to this file.</footer>`,
  );

  return `<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Witness simulator report — ${escapeHtml(name)}</title>
<style>${CSS}</style>
</head>
<body>
<main>
${parts.join('\n')}
</main>
</body>
</html>
`;
}

/**
 * Writes DIR/summary.json (the caller's extra fields first, then the summary; the summary's own
 * fields win on a clash) and DIR/report.html. Creates DIR if needed.
 */
export function writeReport(dir: string, summary: RunSummary, extra: Record<string, unknown> = {}): { summaryFile: string; htmlFile: string } {
  mkdirSync(dir, { recursive: true });
  const summaryFile = join(dir, 'summary.json');
  const htmlFile = join(dir, 'report.html');
  writeFileSync(summaryFile, JSON.stringify({ ...extra, ...summary }, null, 2) + '\n');
  writeFileSync(htmlFile, renderReportHtml(summary, extra));
  return { summaryFile, htmlFile };
}
