/**
 * `witness query` and `witness export`: read the ledger's records, filtered, for people (a table)
 * and machines (`--json`: one JSON object per line; export: jsonl or csv).
 */
import { createWriteStream } from 'node:fs';
import { WitnessError } from '../../shared/errors.js';
import { EXIT_OK, Progress, parseCommandArgs, parseCount, type CommandIo } from '../../shared/cli/cli.js';
import { LedgerReader } from '../../shared/ledger/reader.js';
import { filterFrom, matches, type RecordFilter } from '../query.js';
import { locateLedger } from './ledger-commands.js';

// The filter itself lives in broker/query.ts (shared with the HTTP API); re-exported for existing users.
export { parseTime, matches, type RecordFilter } from '../query.js';

type Rec = Record<string, unknown> & { i: number; e: string; t?: number };

async function* filtered(dir: string, f: RecordFilter, progress: Progress): AsyncGenerator<{ line: string; rec: Rec }> {
  const reader = LedgerReader.open(dir);
  try {
    const total = reader.size;
    for await (const { index, line } of reader.records()) {
      if ((index & 0x3fff) === 0) progress.update(index, total);
      const rec = JSON.parse(line) as Rec;
      if (matches(rec, f)) yield { line, rec };
    }
    progress.update(total, total);
  } finally {
    reader.close();
    progress.done();
  }
}

const FILTER_OPTIONS = {
  client: { type: 'string' },
  topic: { type: 'string' },
  type: { type: 'string' },
  verdict: { type: 'string' },
  since: { type: 'string' },
  until: { type: 'string' },
} as const;

export async function queryCommand(argv: string[], io: CommandIo): Promise<number> {
  const { values, positionals } = parseCommandArgs('witness query', argv, {
    ...FILTER_OPTIONS,
    limit: { type: 'string' },
    json: { type: 'boolean' },
  });
  if (positionals.length !== 1) throw new WitnessError('WITNESS_ERR_USAGE', 'witness query: usage: witness query DIR [--client ID] [--topic FILTER] [--type EV] [--verdict V] [--since T] [--until T] [--limit N] [--json]');
  const loc = locateLedger(positionals[0]!);
  const f = filterFrom(values);
  const limit = values.limit === undefined ? Infinity : parseCount('witness query', '--limit', values.limit);
  const progress = new Progress(io, 'reading', !values.json);
  let n = 0;
  if (!values.json) io.stdout.write(`${'INDEX'.padStart(8)}  ${'TIME'.padEnd(24)}  ${'EVENT'.padEnd(11)}  ${'CLIENT'.padEnd(20)}  ${'IDENTITY'.padEnd(24)}  ${'TOPIC / FILTER'.padEnd(30)}  VERDICT\n`);
  for await (const { line, rec } of filtered(loc.ledgerDir, f, progress)) {
    if (n >= limit) break;
    n++;
    if (values.json) io.stdout.write(line + '\n');
    else io.stdout.write(tableRow(rec) + '\n');
  }
  if (!values.json) io.stdout.write(`${n} record(s)\n`);
  return EXIT_OK;
}

function tableRow(r: Rec): string {
  const time = typeof r.t === 'number' ? new Date(r.t).toISOString() : '';
  const topic = String(r.topic ?? r.f ?? '');
  const verdict = [r.ok === false ? 'REFUSED' : r.ok === true ? 'ok' : '', r.acl === 'deny' ? `acl:deny(${String(r.rule)})` : '', r.env !== undefined ? `env:${String(r.env)}${r.gap !== undefined ? `(${String(r.gap)})` : ''}` : '', r.why !== undefined ? String(r.why) : '', r.rc !== undefined && r.rc !== 0 ? `rc=${String(r.rc)}` : '', r.g === 128 ? 'suback:0x80' : '']
    .filter(Boolean)
    .join(' ');
  const cut = (s: string, w: number): string => (s.length > w ? s.slice(0, w - 1) + '…' : s.padEnd(w));
  return `${String(r.i).padStart(8)}  ${time.padEnd(24)}  ${cut(r.e, 11)}  ${cut(String(r.c ?? ''), 20)}  ${cut(String(r.id ?? ''), 24)}  ${cut(topic, 30)}  ${verdict}`;
}

const CSV_COLUMNS = ['i', 't', 'e', 'n', 's', 'c', 'id', 'a', 'topic', 'q', 'r', 'm', 'z', 'h', 'acl', 'rule', 'env', 'seq', 'ok', 'rc', 'why'] as const;

function csvCell(v: unknown): string {
  if (v === undefined || v === null) return '';
  const s = typeof v === 'string' ? v : JSON.stringify(v);
  return /[",\n\r]/.test(s) ? `"${s.replaceAll('"', '""')}"` : s;
}

export async function exportCommand(argv: string[], io: CommandIo): Promise<number> {
  const { values, positionals } = parseCommandArgs('witness export', argv, {
    ...FILTER_OPTIONS,
    format: { type: 'string' },
    out: { type: 'string', short: 'o' },
    json: { type: 'boolean' },
  });
  if (positionals.length !== 1 || (values.format !== 'jsonl' && values.format !== 'csv')) {
    throw new WitnessError('WITNESS_ERR_USAGE', 'witness export: usage: witness export DIR --format jsonl|csv [--out FILE] [filters as for witness query]');
  }
  const loc = locateLedger(positionals[0]!);
  const f = filterFrom(values);
  const out: NodeJS.WritableStream = values.out ? createWriteStream(values.out) : io.stdout;
  const write = (s: string): Promise<void> =>
    new Promise((resolve) => {
      if (out.write(s)) resolve();
      else out.once('drain', () => resolve());
    });
  if (values.format === 'csv') await write(CSV_COLUMNS.join(',') + ',record\n');
  let n = 0;
  for await (const { line, rec } of filtered(loc.ledgerDir, f, new Progress(io, 'exporting', !!values.out))) {
    n++;
    // jsonl: the ledger lines exactly as written, so each still hashes to its leaf.
    if (values.format === 'jsonl') await write(line + '\n');
    else await write(CSV_COLUMNS.map((k) => csvCell(rec[k])).join(',') + ',' + csvCell(line) + '\n');
  }
  if (values.out) {
    await new Promise<void>((resolve, reject) => (out as ReturnType<typeof createWriteStream>).end((e?: Error | null) => (e ? reject(e) : resolve())));
    io.stderr.write(`exported ${n} record(s) to ${values.out}\n`);
  }
  return EXIT_OK;
}
