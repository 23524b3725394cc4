/**
 * The plot of bench/suite.ts as a hand-written SVG (no dependencies): top, throughput of each
 * server as a ratio to plain aedes per load (the issue-7 throughput targets drawn as lines);
 * bottom, end-to-end latency p50/p99 at the paced load (log scale, the 2 ms added-p99 budget
 * drawn over plain aedes' p99).
 */

interface PlotInput {
  startedAt: string;
  machine: { cpu: string; cores: number };
  loadAverage: { start: number[]; end: number[] };
  rounds: number;
  rows: Array<{ server: string; loads: Record<string, { rate: number; ratioToPlain: number; p50Ms: number; p99Ms: number; offered?: number }> }>;
}

const COLORS = ['#4e79a7', '#f28e2b', '#59a14f', '#e15759', '#76b7b2', '#edc948', '#b07aa1', '#ff9da7'];
const esc = (s: string): string => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');

export function writeSuitePlot(r: PlotInput): string {
  const W = 1000;
  const H = 760;
  const L = 70;
  const R = 20;
  const out: string[] = [];
  const text = (x: number, y: number, s: string, o = ''): void => void out.push(`<text x="${x.toFixed(1)}" y="${y.toFixed(1)}" ${o}>${esc(s)}</text>`);
  out.push(`<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="sans-serif" font-size="11">`);
  out.push(`<rect width="${W}" height="${H}" fill="white"/>`);
  text(L, 20, `Witness vs plain aedes vs mosquitto — bench/suite.ts, ${r.startedAt.slice(0, 16).replace('T', ' ')} UTC, median of ${r.rounds} rounds`, 'font-size="14" font-weight="bold"');
  text(L, 38, `${r.machine.cpu}, ${r.machine.cores} cores, load average ${r.loadAverage.start[0]} → ${r.loadAverage.end[0]} (shared machine)`);

  // ── panel 1: throughput ratio to plain aedes ──
  const servers = r.rows.map((x) => x.server);
  const loads = [...new Set(r.rows.flatMap((x) => Object.keys(x.loads)))].filter((l) => l !== 'lat');
  const top = 70;
  const ph = 270;
  const pw = W - L - R;
  const maxRatio = Math.max(1.2, ...r.rows.flatMap((x) => loads.map((l) => x.loads[l]?.ratioToPlain ?? 0)).filter(Number.isFinite));
  // Capped at 2× so that the ratios near 1 stay readable (the sink's bar is clipped and labelled).
  const yMax = Math.min(2, Math.ceil(maxRatio * 5) / 5);
  const y1 = (v: number): number => top + ph - (Math.min(v, yMax) / yMax) * ph;
  text(L, top - 12, 'Throughput ÷ plain aedes (same load, same run)', 'font-weight="bold"');
  for (let k = 0; k * 0.2 <= yMax + 1e-9; k++) {
    const v = k * 0.2;
    out.push(`<line x1="${L}" x2="${L + pw}" y1="${y1(v).toFixed(1)}" y2="${y1(v).toFixed(1)}" stroke="${k === 5 ? '#888' : '#ddd'}"/>`);
    text(L - 6, y1(v) + 4, v.toFixed(1), 'text-anchor="end"');
  }
  for (const [v, what] of [[0.9, '0.90 (QoS 0 target)'], [0.85, '0.85 (QoS 1 target)']] as const) {
    out.push(`<line x1="${L}" x2="${L + pw}" y1="${y1(v).toFixed(1)}" y2="${y1(v).toFixed(1)}" stroke="#c00" stroke-dasharray="4 3"/>`);
    void what;
  }
  const gw = pw / servers.length;
  const bw = (gw * 0.8) / Math.max(1, loads.length);
  servers.forEach((s, i) => {
    const row = r.rows[i]!;
    loads.forEach((l, j) => {
      const v = row.loads[l]?.ratioToPlain;
      if (v === undefined || !Number.isFinite(v)) return;
      const x = L + i * gw + gw * 0.1 + j * bw;
      out.push(`<rect x="${x.toFixed(1)}" y="${y1(v).toFixed(1)}" width="${(bw - 1).toFixed(1)}" height="${(top + ph - y1(v)).toFixed(1)}" fill="${COLORS[j % COLORS.length]}"><title>${esc(`${s} ${l}: ${v.toFixed(2)}× (${row.loads[l]!.rate} /s)`)}</title></rect>`);
      text(x + bw / 2, y1(v) - 3, `${v > yMax ? '▲' : ''}${v.toFixed(2)}`, 'text-anchor="middle" font-size="8"');
    });
    text(L + i * gw + gw / 2, top + ph + 14, s, 'text-anchor="middle"');
  });
  loads.forEach((l, j) => {
    const x = L + j * 130;
    out.push(`<rect x="${x}" y="${top + ph + 24}" width="10" height="10" fill="${COLORS[j % COLORS.length]}"/>`);
    text(x + 14, top + ph + 33, l);
  });
  text(L + loads.length * 130, top + ph + 33, 'dashed: targets 0.90× (QoS 0), 0.85× (QoS 1)', 'fill="#c00"');

  // ── panel 2: latency at the paced load (log scale) ──
  const withLat = r.rows.filter((x) => x.loads.lat && Number.isFinite(x.loads.lat.p99Ms));
  if (withLat.length > 0) {
    const top2 = top + ph + 90;
    const ph2 = 250;
    const offered = withLat[0]!.loads.lat!.offered;
    text(L, top2 - 12, `End-to-end latency at a fixed ${offered ?? '?'} msg/s (50% of plain aedes' QoS 0 peak), QoS 0, 64 B — p50 and p99, ms, log scale`, 'font-weight="bold"');
    const vals = withLat.flatMap((x) => [x.loads.lat!.p50Ms, x.loads.lat!.p99Ms]).filter((v) => v > 0);
    const lo = Math.pow(10, Math.floor(Math.log10(Math.max(0.01, Math.min(...vals)))));
    const hi = Math.pow(10, Math.ceil(Math.log10(Math.max(...vals, lo * 10))));
    const y2 = (v: number): number => top2 + ph2 - ((Math.log10(Math.max(v, lo)) - Math.log10(lo)) / (Math.log10(hi) - Math.log10(lo))) * ph2;
    for (let v = lo; v <= hi * 1.0001; v *= 10) {
      out.push(`<line x1="${L}" x2="${L + pw}" y1="${y2(v).toFixed(1)}" y2="${y2(v).toFixed(1)}" stroke="#ddd"/>`);
      text(L - 6, y2(v) + 4, String(+v.toPrecision(2)), 'text-anchor="end"');
    }
    const plain = r.rows.find((x) => x.server === 'plain')?.loads.lat;
    if (plain) {
      const b = plain.p99Ms + 2;
      out.push(`<line x1="${L}" x2="${L + pw}" y1="${y2(b).toFixed(1)}" y2="${y2(b).toFixed(1)}" stroke="#c00" stroke-dasharray="4 3"/>`);
      text(L + 130, top2 + ph2 + 33, `red dashed: plain aedes p99 + 2 ms = ${b.toFixed(2)} ms (issue-7 target for the Witness p99)`, 'fill="#c00"');
    }
    const gw2 = pw / withLat.length;
    const bw2 = gw2 * 0.35;
    withLat.forEach((x, i) => {
      const { p50Ms, p99Ms } = x.loads.lat!;
      [p50Ms, p99Ms].forEach((v, j) => {
        const bx = L + i * gw2 + gw2 * 0.15 + j * bw2;
        out.push(`<rect x="${bx.toFixed(1)}" y="${y2(v).toFixed(1)}" width="${(bw2 - 2).toFixed(1)}" height="${(top2 + ph2 - y2(v)).toFixed(1)}" fill="${j === 0 ? '#9ecae1' : '#3182bd'}"><title>${esc(`${x.server} ${j === 0 ? 'p50' : 'p99'} ${v.toFixed(3)} ms`)}</title></rect>`);
        text(bx + bw2 / 2 - 1, y2(v) - 3, v < 10 ? v.toFixed(2) : v.toFixed(0), 'text-anchor="middle" font-size="9"');
      });
      text(L + i * gw2 + gw2 / 2, top2 + ph2 + 14, x.server, 'text-anchor="middle"');
    });
    out.push(`<rect x="${L}" y="${top2 + ph2 + 24}" width="10" height="10" fill="#9ecae1"/>`);
    text(L + 14, top2 + ph2 + 33, 'p50');
    out.push(`<rect x="${L + 60}" y="${top2 + ph2 + 24}" width="10" height="10" fill="#3182bd"/>`);
    text(L + 74, top2 + ph2 + 33, 'p99');
  }
  out.push('</svg>');
  return out.join('\n') + '\n';
}
