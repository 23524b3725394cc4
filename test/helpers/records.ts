/** Reads a data directory's ledger records as objects, for assertions. */
import { join } from 'node:path';
import { LedgerReader } from '../../shared/ledger/reader.js';

export type Rec = Record<string, unknown> & { i: number; e: string };

export async function readRecords(dataDir: string): Promise<Rec[]> {
  const reader = LedgerReader.open(join(dataDir, 'ledger'));
  try {
    const out: Rec[] = [];
    for await (const r of reader.records()) out.push(JSON.parse(r.line) as Rec);
    return out;
  } finally {
    reader.close();
  }
}

/** Polls until `pred` holds for the records (the broker writes asynchronously), bounded in time. */
export async function waitForRecords(dataDir: string, pred: (rs: Rec[]) => boolean, timeoutMs = 10_000): Promise<Rec[]> {
  const end = Date.now() + timeoutMs;
  let last: Rec[] = [];
  while (Date.now() < end) {
    try {
      last = await readRecords(dataDir);
      if (pred(last)) return last;
    } catch {
      // the ledger may be mid-write; try again
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`records did not satisfy the condition within ${timeoutMs} ms; last ${last.length} records: ${JSON.stringify(last.slice(-5))}`);
}
