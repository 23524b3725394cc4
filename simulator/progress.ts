/**
 * The live progress line of `witness sim run` / `witness sim replay`: one stderr line rewritten
 * with `\r` every intervalMs, only when stderr is a TTY and progress is enabled (not --json /
 * --quiet). The timer is unref'd: it never keeps the process alive.
 *
 *   running 1:23 │ connected 950/1,000 │ sent 1.2k/s (56.8k) │ acked 1.2k/s (56.7k) │ recv 1.1k/s (50.1k) │ errors 3 │ refused 2
 */
import type { CommandIo } from '../shared/cli/cli.js';
import type { Snapshot } from './metrics.js';

export type LiveSnapshot = Snapshot & { phase?: string; planned?: number };

/** 1234 → "1,234"; 12345 → "12.3k"; 1234567 → "1.23M". */
export function compactNumber(n: number): string {
  const a = Math.abs(n);
  if (a < 10_000) return a < 100 && !Number.isInteger(n) ? n.toFixed(1) : groupThousands(Math.round(n));
  if (a < 1_000_000) return `${(n / 1000).toFixed(a < 100_000 ? 1 : 0)}k`;
  if (a < 1_000_000_000) return `${(n / 1_000_000).toFixed(a < 10_000_000 ? 2 : 1)}M`;
  return `${(n / 1_000_000_000).toFixed(2)}G`;
}

function groupThousands(n: number): string {
  return String(n).replace(/\B(?=(\d{3})+(?!\d))/g, ',');
}

/** Seconds → "12.3s", "1:23", "1:02:03". */
export function clock(seconds: number): string {
  const s = Math.max(0, seconds);
  if (s < 60) return `${s.toFixed(1)}s`;
  const total = Math.floor(s);
  const h = Math.floor(total / 3600);
  const m = Math.floor((total % 3600) / 60);
  const sec = String(total % 60).padStart(2, '0');
  return h > 0 ? `${h}:${String(m).padStart(2, '0')}:${sec}` : `${m}:${sec}`;
}

/** The progress line for one snapshot (without `\r`). */
export function formatLiveLine(s: LiveSnapshot): string {
  const parts = [
    `${s.phase ?? 'running'} ${clock(s.elapsedS)}`,
    `connected ${groupThousands(s.connected)}${s.planned !== undefined ? `/${groupThousands(s.planned)}` : ''}`,
    `sent ${compactNumber(s.rates.sent)}/s (${compactNumber(s.sent)})`,
    `acked ${compactNumber(s.rates.acked)}/s (${compactNumber(s.acked)})`,
    `recv ${compactNumber(s.rates.received)}/s (${compactNumber(s.received)})`,
    `errors ${compactNumber(s.errors)}`,
  ];
  if (s.refused > 0) parts.push(`refused ${compactNumber(s.refused)}`);
  if (s.connectFailed > 0) parts.push(`connect failed ${compactNumber(s.connectFailed)}`);
  return parts.join(' │ ');
}

export class LiveStatus {
  readonly #io: CommandIo;
  readonly #enabled: boolean;
  readonly #intervalMs: number;
  #timer: NodeJS.Timeout | undefined;
  #source: (() => LiveSnapshot) | undefined;
  #drawn = false;

  constructor(io: CommandIo, enabled: boolean, intervalMs = 500) {
    this.#io = io;
    this.#enabled = enabled && io.stderr.isTTY === true;
    this.#intervalMs = intervalMs;
  }

  /** Whether anything will be drawn (stderr is a TTY and progress is enabled). */
  get active(): boolean {
    return this.#enabled;
  }

  /** Starts redrawing from `source` every intervalMs (and once now). Calling it again replaces the source. */
  start(source: () => LiveSnapshot): void {
    this.#source = source;
    if (!this.#enabled) return;
    this.#draw();
    if (this.#timer === undefined) {
      this.#timer = setInterval(() => this.#draw(), this.#intervalMs);
      this.#timer.unref();
    }
  }

  /** Stops the timer and clears the line (the end-of-run summary follows on a clean line). */
  stop(): void {
    if (this.#timer !== undefined) clearInterval(this.#timer);
    this.#timer = undefined;
    this.#source = undefined;
    if (this.#drawn) this.#io.stderr.write('\r\x1b[K');
    this.#drawn = false;
  }

  #draw(): void {
    const source = this.#source;
    if (!source) return;
    let line: string;
    try {
      line = formatLiveLine(source());
    } catch {
      return; // a progress line must never break the run
    }
    const columns = (this.#io.stderr as { columns?: number }).columns;
    if (typeof columns === 'number' && columns > 10 && line.length > columns - 1) line = line.slice(0, columns - 2) + '…';
    this.#io.stderr.write(`\r${line}\x1b[K`);
    this.#drawn = true;
  }
}
