/**
 * Record filters shared by `witness query` / `witness export` (broker/cli/query-commands.ts) and
 * the HTTP API (`GET /api/v1/records`, `GET /api/v1/stream`): one definition of what
 * `--client`, `--topic`, `--type`, `--verdict`, `--since`, `--until` mean.
 */
import { WitnessError } from '../shared/errors.js';
import { topicMatches, isValidFilter } from './acl/topic.js';

export interface RecordFilter {
  client?: string;
  topic?: string;
  type?: string;
  verdict?: string;
  since?: number;
  until?: number;
}

/** The filter's names, in the order they are documented. */
export const FILTER_NAMES = ['client', 'topic', 'type', 'verdict', 'since', 'until'] as const;

export type FilterRecord = Record<string, unknown> & { e?: unknown; t?: unknown };

/** Parses a time: ISO 8601, ms since the epoch, or a duration ago (`90s`, `15m`, `2h`, `7d`). */
export function parseTime(option: string, value: string, now = Date.now()): number {
  const rel = /^(\d+)(ms|s|m|h|d)$/.exec(value);
  if (rel) {
    const unit = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 }[rel[2] as 'ms' | 's' | 'm' | 'h' | 'd'];
    return now - Number(rel[1]) * unit;
  }
  if (/^\d{10,16}$/.test(value)) return Number(value);
  const t = Date.parse(value);
  if (Number.isNaN(t)) {
    throw new WitnessError('WITNESS_ERR_USAGE', `${option} ${JSON.stringify(value)}: expected an ISO 8601 time (2026-11-23T12:00:00Z), ms since the epoch, or a duration ago (15m, 2h, 7d)`);
  }
  return t;
}

/** Whether record `r` passes filter `f` (every given criterion must hold). */
export function matches(r: FilterRecord, f: RecordFilter): boolean {
  if (f.type !== undefined && r.e !== f.type) return false;
  if (f.client !== undefined && r.c !== f.client) return false;
  if (f.since !== undefined && (typeof r.t !== 'number' || r.t < f.since)) return false;
  if (f.until !== undefined && (typeof r.t !== 'number' || r.t > f.until)) return false;
  if (f.topic !== undefined) {
    const topic = typeof r.topic === 'string' ? r.topic : typeof r.f === 'string' ? r.f : undefined;
    if (topic === undefined || !topicMatches(f.topic, topic)) return false;
  }
  if (f.verdict !== undefined) {
    const v = f.verdict;
    const refused = r.ok === false;
    if (!(r.env === v || r.acl === v || (v === 'refused' && refused) || (v === 'accepted' && r.ok === true))) return false;
  }
  return true;
}

/**
 * Builds a filter from option values (`values.client`, …). `optionName(name)` says how the
 * caller spells an option in errors: `--topic` on the command line, `topic` in a query string.
 * Throws WITNESS_ERR_USAGE naming the option for a bad topic filter or time.
 */
export function filterFrom(values: Record<string, unknown>, optionName: (name: string) => string = (n) => `--${n}`): RecordFilter {
  const f: RecordFilter = {};
  if (typeof values.client === 'string') f.client = values.client;
  if (typeof values.topic === 'string') {
    if (!isValidFilter(values.topic)) throw new WitnessError('WITNESS_ERR_USAGE', `${optionName('topic')} ${JSON.stringify(values.topic)}: not a valid MQTT topic filter`);
    f.topic = values.topic;
  }
  if (typeof values.type === 'string') f.type = values.type;
  if (typeof values.verdict === 'string') f.verdict = values.verdict;
  if (typeof values.since === 'string') f.since = parseTime(optionName('since'), values.since);
  if (typeof values.until === 'string') f.until = parseTime(optionName('until'), values.until);
  return f;
}
