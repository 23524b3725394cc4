/**
 * Read-only access to a ledger: streaming records, checkpoints, proofs. Takes no lock and may run
 * beside the writer; it sees the records that were complete when it opened.
 */
import { WitnessError } from '../errors.js';
import { inclusionProof, consistencyProof } from '../merkle/proof.js';
import { parseCheckpoint, type Checkpoint } from '../checkpoint/checkpoint.js';
import { parseNote } from '../checkpoint/note.js';
import { LEAF_HASH_SIZE, SegmentTable, listSegments, sizeOrZero } from './segment.js';
import { TreeStore } from './tree-store.js';
import { lineIndex, readLines } from './line-index.js';
import { parseWitnessExtension, readCheckpointLog } from './checkpoint-log.js';

export interface StoredCheckpoint {
  /** Position in the checkpoint log = seal epoch. */
  epoch: number;
  /** Broker time of the checkpoint, ms. */
  time: number;
  checkpoint: Checkpoint;
  /** The full signed note. NOT verified by the reader: verify it with openCheckpoint. */
  note: string;
}

export interface LedgerRecordLine {
  index: number;
  /** The line as written, without its newline. */
  line: string;
}

export class LedgerReader {
  readonly dir: string;
  readonly #table: SegmentTable;
  readonly #tree: TreeStore;

  private constructor(dir: string, table: SegmentTable) {
    this.dir = dir;
    this.#table = table;
    this.#tree = new TreeStore(dir, table, false);
  }

  static open(dir: string): LedgerReader {
    const segments = listSegments(dir);
    if (segments.length === 0) {
      throw new WitnessError('WITNESS_ERR_LEDGER_NOT_FOUND', `${dir}: no ledger segments here`, { details: { dir } });
    }
    const last = segments.at(-1)!;
    // The last segment may be mid-write: count its complete lines and indexed leaves, take the
    // smaller. The count comes from the process's line index (line-index.ts): only the bytes
    // appended since the last open are scanned.
    const lines = lineIndex(last.dataPath).lines;
    const indexed = Math.floor(sizeOrZero(last.indexPath) / LEAF_HASH_SIZE);
    return new LedgerReader(dir, new SegmentTable(segments, last.first + Math.min(lines, indexed)));
  }

  get size(): number {
    return this.#table.size;
  }

  /** The checkpoint log, parsed but not verified. */
  checkpoints(): StoredCheckpoint[] {
    return readCheckpointLog(this.dir).notes.map((note, epoch) => {
      const checkpoint = parseCheckpoint(parseNote(note).text);
      const ext = parseWitnessExtension(checkpoint.extensions);
      return { epoch, time: ext?.time ?? 0, checkpoint, note };
    });
  }

  /** The newest checkpoint whose tree size is at most the records present. */
  latestCheckpoint(): StoredCheckpoint | undefined {
    return this.checkpoints()
      .filter((c) => c.checkpoint.size <= this.size)
      .at(-1);
  }

  leafHash(index: number): Uint8Array {
    return this.#tree.readLeaves(index, 1);
  }

  /** Streams records [from, to) in order. */
  async *records(from = 0, to = this.size): AsyncGenerator<LedgerRecordLine> {
    if (from >= to) return;
    let index = from;
    while (index < to) {
      const { segment, count, position } = this.#table.locate(index);
      // From the nearest indexed line, in chunks (line-index.ts): one record no longer reads its
      // whole segment (bench/scale.ts: 25–88 ms per record at 64 MiB segments before).
      const n = Math.min(count - position, to - index);
      for (const line of readLines(segment.dataPath, position, n)) {
        yield { index, line };
        index++;
      }
    }
  }

  /** One record's line. */
  async record(index: number): Promise<LedgerRecordLine> {
    for await (const r of this.records(index, index + 1)) return r;
    throw new WitnessError('WITNESS_ERR_INVALID_ARGUMENT', `record ${index}: not in the ledger (size ${this.size})`);
  }

  async inclusionProof(index: number, size: number): Promise<Uint8Array[]> {
    if (!Number.isSafeInteger(index) || !Number.isSafeInteger(size) || index < 0 || index >= size || size > this.size) {
      throw new WitnessError('WITNESS_ERR_PROOF_INPUT', `inclusion proof: need 0 <= index (${index}) < tree size (${size}) <= records (${this.size})`);
    }
    return inclusionProof(index, size, this.#tree.source());
  }

  async consistencyProof(size1: number, size2: number): Promise<Uint8Array[]> {
    if (!Number.isSafeInteger(size1) || !Number.isSafeInteger(size2) || size1 < 0 || size1 > size2 || size2 > this.size) {
      throw new WitnessError('WITNESS_ERR_PROOF_INPUT', `consistency proof: need 0 <= old size (${size1}) <= new size (${size2}) <= records (${this.size})`);
    }
    return consistencyProof(size1, size2, this.#tree.source());
  }

  close(): void {
    this.#tree.close();
  }
}

