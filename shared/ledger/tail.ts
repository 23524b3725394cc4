/**
 * Sequential reading of a live ledger from a record index onwards, for followers: keeps one open
 * segment and a byte offset, so following costs one read per batch instead of re-opening the
 * ledger (LedgerReader.open reads the whole last segment to count its lines). The caller says how
 * far it may read (`limit`: the writer's durable size), so a follower never sees a record that
 * crash recovery could still cut.
 *
 * Every line's `"i"` is checked against its position: a follower never silently mirrors a ledger
 * whose lines are not where they should be (run `witness verify` for the full check).
 */
import { open, type FileHandle } from 'node:fs/promises';
import { WitnessError } from '../errors.js';
import { listSegments, type SegmentInfo } from './segment.js';

export interface TailRecord {
  index: number;
  /** The record line, without its newline. */
  line: string;
}

const CHUNK = 256 * 1024;

export class LedgerTail {
  readonly dir: string;
  #segment: SegmentInfo | undefined;
  #fh: FileHandle | undefined;
  /** Byte offset of the next unread line in the current segment. */
  #offset = 0;
  #next: number;
  /** Bytes read past the last complete line. */
  #carry: Buffer = Buffer.alloc(0);

  private constructor(dir: string, from: number) {
    this.dir = dir;
    this.#next = from;
  }

  /** Positions a tail at record `from` (scanning its segment once for the offset). */
  static async open(dir: string, from: number): Promise<LedgerTail> {
    const t = new LedgerTail(dir, from);
    await t.#seek(from);
    return t;
  }

  /** Index of the next record read() returns. */
  get next(): number {
    return this.#next;
  }

  /** Up to `max` records from `next`, none at or past `limit`. Empty when there is nothing new yet. */
  async read(max: number, limit: number): Promise<TailRecord[]> {
    const out: TailRecord[] = [];
    for (let guard = 0; out.length < max && this.#next < limit && guard < 1_000_000; guard++) {
      // Complete lines already in the carry buffer.
      let nl = this.#carry.indexOf(0x0a);
      while (nl >= 0 && out.length < max && this.#next < limit) {
        const line = this.#carry.subarray(0, nl).toString('utf8');
        this.#check(line);
        out.push({ index: this.#next, line });
        this.#next++;
        this.#offset += nl + 1;
        this.#carry = this.#carry.subarray(nl + 1);
        nl = this.#carry.indexOf(0x0a);
      }
      if (out.length >= max || this.#next >= limit) break;
      const got = await this.#readMore();
      if (got === 0) {
        // End of this segment: the next one must start exactly here.
        if (this.#carry.length > 0 || !(await this.#nextSegment())) break;
      }
    }
    return out;
  }

  async close(): Promise<void> {
    const fh = this.#fh;
    this.#fh = undefined;
    await fh?.close();
  }

  #check(line: string): void {
    const m = /^\{"i":(\d+)[,}]/.exec(line);
    if (!m || Number(m[1]) !== this.#next) {
      throw new WitnessError('WITNESS_ERR_LEDGER_RECORD_INDEX', `${this.#segment?.dataPath ?? this.dir}: the record at position ${this.#next} says ${m ? `"i":${m[1]}` : 'no "i"'}; run \`witness verify\` on this ledger`, {
        details: { index: this.#next },
      });
    }
  }

  async #readMore(): Promise<number> {
    if (!this.#fh) return 0;
    const buf = Buffer.allocUnsafe(CHUNK);
    const { bytesRead } = await this.#fh.read(buf, 0, CHUNK, this.#offset + this.#carry.length);
    if (bytesRead > 0) this.#carry = this.#carry.length === 0 ? buf.subarray(0, bytesRead) : Buffer.concat([this.#carry, buf.subarray(0, bytesRead)]);
    return bytesRead;
  }

  async #nextSegment(): Promise<boolean> {
    const seg = listSegments(this.dir).find((s) => s.first === this.#next);
    if (!seg) return false;
    await this.close();
    this.#segment = seg;
    this.#fh = await open(seg.dataPath, 'r');
    this.#offset = 0;
    this.#carry = Buffer.alloc(0);
    return true;
  }

  async #seek(from: number): Promise<void> {
    const segments = listSegments(this.dir);
    let seg: SegmentInfo | undefined;
    for (const s of segments) if (s.first <= from) seg = s;
    if (!seg) {
      throw new WitnessError('WITNESS_ERR_LEDGER_NOT_FOUND', `${this.dir}: no segment holds record ${from}`, { details: { dir: this.dir, index: from } });
    }
    this.#segment = seg;
    this.#fh = await open(seg.dataPath, 'r');
    this.#offset = 0;
    this.#next = seg.first;
    // Skip whole lines up to `from`.
    for (let guard = 0; this.#next < from && guard < 100_000_000; guard++) {
      let nl = this.#carry.indexOf(0x0a);
      while (nl >= 0 && this.#next < from) {
        this.#offset += nl + 1;
        this.#carry = this.#carry.subarray(nl + 1);
        this.#next++;
        nl = this.#carry.indexOf(0x0a);
      }
      if (this.#next >= from) break;
      if ((await this.#readMore()) === 0) {
        if (!(await this.#nextSegment())) {
          throw new WitnessError('WITNESS_ERR_LEDGER_NOT_FOUND', `${this.dir}: the ledger ends at record ${this.#next}, before ${from}`, { details: { dir: this.dir, index: from } });
        }
      }
    }
  }
}
