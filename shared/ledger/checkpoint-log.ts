/**
 * The checkpoint log: `checkpoints.jsonl`, one JSON string per line, each a signed and sealed
 * checkpoint note (C2SP tlog-checkpoint + signed-note). JSON strings keep the multi-line notes one
 * per line, so a torn last write is recognisable and the log can be read by line.
 *
 * Witness adds one extension line to the checkpoint body: `witness/v1 epoch=E time=T` — E is the
 * checkpoint's 0-based position in this log (and its seal epoch), T the broker's time in ms since
 * the epoch. Both are covered by the signature.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { WitnessError } from '../errors.js';
import { CHECKPOINT_LOG } from './layout.js';

const EXTENSION = /^witness\/v1 epoch=(0|[1-9]\d{0,15}) time=(0|[1-9]\d{0,15})$/;

export function formatWitnessExtension(epoch: number, time: number): string {
  return `witness/v1 epoch=${epoch} time=${Math.floor(time)}`;
}

/** Finds and parses the Witness extension line among a checkpoint's extension lines. */
export function parseWitnessExtension(extensions: readonly string[]): { epoch: number; time: number } | undefined {
  for (const line of extensions) {
    const m = EXTENSION.exec(line);
    if (m) return { epoch: Number(m[1]), time: Number(m[2]) };
  }
  return undefined;
}

export interface CheckpointLogContents {
  /** The notes, in log order. */
  notes: string[];
  /** Bytes of the log that hold complete, well-formed lines. */
  validBytes: number;
  /** Bytes after them (a torn last write), 0 if none. */
  tornBytes: number;
}

/**
 * Reads the checkpoint log. A last line without its newline, or that is not a JSON string, is a
 * torn write and reported in `tornBytes`; any other malformed line is an error (the log was edited).
 */
export function readCheckpointLog(dir: string): CheckpointLogContents {
  const path = join(dir, CHECKPOINT_LOG);
  let buf: Buffer;
  try {
    buf = readFileSync(path);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return { notes: [], validBytes: 0, tornBytes: 0 };
    throw new WitnessError('WITNESS_ERR_IO', `${path}: ${(e as Error).message}`, { cause: e });
  }
  const notes: string[] = [];
  let start = 0;
  let lineNo = 0;
  while (start < buf.length) {
    const nl = buf.indexOf(0x0a, start);
    lineNo++;
    const end = nl < 0 ? buf.length : nl;
    let note: unknown;
    try {
      note = JSON.parse(buf.toString('utf8', start, end));
    } catch {
      note = undefined;
    }
    if (typeof note !== 'string' || nl < 0) {
      if (nl < 0 || buf.indexOf(0x0a, nl + 1) < 0) {
        // The last line: a write cut short by a crash.
        return { notes, validBytes: start, tornBytes: buf.length - start };
      }
      throw new WitnessError('WITNESS_ERR_LEDGER_CHECKPOINT_LOG', `${path}:${lineNo}: not a JSON string holding a checkpoint note`, {
        details: { file: path, line: lineNo },
      });
    }
    notes.push(note);
    start = end + 1;
  }
  return { notes, validBytes: buf.length, tornBytes: 0 };
}
