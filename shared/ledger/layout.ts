/**
 * Where the ledger keeps its files (docs/FORMATS.md §Ledger gives the same map):
 *
 *   LEDGER/
 *     LOCK                       pid of the one writer (O_EXCL)
 *     segments/NNNN….jsonl       records, one JSON object per line; NNNN… = index of its first record, 20 digits
 *     segments/NNNN….idx         32-byte leaf hash per record of the segment, in order
 *     tree/L08.bin, L16.bin, …   hashes of the complete perfect subtrees at levels 8, 16, … ("tiles"),
 *                                so a proof reads O(log n) nodes instead of rehashing leaves
 *     checkpoints.jsonl          one JSON string per line: a signed, sealed checkpoint note
 */
import { join } from 'node:path';

export const SEGMENTS_DIR = 'segments';
export const TREE_DIR = 'tree';
export const CHECKPOINT_LOG = 'checkpoints.jsonl';
export const LOCK_FILE = 'LOCK';
export const SEGMENT_NAME_DIGITS = 20;
/** Tile height: interior nodes are stored at every 8th level (as in transparency-dev tlog tiles). */
export const TILE_HEIGHT = 8;

export function segmentBase(firstIndex: number): string {
  return String(firstIndex).padStart(SEGMENT_NAME_DIGITS, '0');
}

export function segmentPaths(dir: string, firstIndex: number): { data: string; index: string } {
  const base = join(dir, SEGMENTS_DIR, segmentBase(firstIndex));
  return { data: `${base}.jsonl`, index: `${base}.idx` };
}

export function treeLevelPath(dir: string, level: number): string {
  return join(dir, TREE_DIR, `L${String(level).padStart(2, '0')}.bin`);
}

/** Parses a segment file name; returns its first index or undefined if the name is not a segment's. */
export function parseSegmentName(name: string): number | undefined {
  const m = /^(\d{20})\.jsonl$/.exec(name);
  if (!m) return undefined;
  const n = Number(m[1]);
  return Number.isSafeInteger(n) ? n : undefined;
}
