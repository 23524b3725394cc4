/**
 * Segments in memory: for agents that do without durability (the fleet simulator, tests). It
 * keeps track of which bytes were synced, so `crashCopy()` can show what a crash would leave.
 */
import { WitnessError } from '../../shared/errors.js';
import type { OutboxStorage, SegmentHandle } from './storage.js';

interface MemSegment {
  data: Buffer;
  length: number;
  synced: number;
}

export class MemoryStorage implements OutboxStorage {
  readonly name = 'memory';
  readonly #segments = new Map<number, MemSegment>();
  #locked = false;

  async lock(): Promise<void> {
    if (this.#locked) throw new WitnessError('WITNESS_ERR_OUTBOX_LOCKED', 'outbox memory: already open', { details: {} });
    this.#locked = true;
  }

  async unlock(): Promise<void> {
    this.#locked = false;
  }

  async list(): Promise<number[]> {
    return [...this.#segments.keys()].sort((a, b) => a - b);
  }

  async read(id: number): Promise<Uint8Array> {
    const s = this.#segments.get(id);
    if (!s) throw new WitnessError('WITNESS_ERR_IO', `outbox memory: no segment ${id}`);
    return Buffer.from(s.data.subarray(0, s.length));
  }

  async open(id: number): Promise<SegmentHandle> {
    let s = this.#segments.get(id);
    if (!s) {
      s = { data: Buffer.alloc(4096), length: 0, synced: 0 };
      this.#segments.set(id, s);
    }
    return new MemSegmentHandle(s);
  }

  async remove(id: number): Promise<void> {
    this.#segments.delete(id);
  }

  /**
   * A new, unlocked storage with what a power loss now could leave: everything synced, and of the
   * bytes written since the last sync a prefix of `unsynced() × their length` (default none) — the
   * kernel may have written some of them back, cutting a record anywhere.
   */
  crashCopy(unsynced: () => number = () => 0): MemoryStorage {
    const c = new MemoryStorage();
    for (const [id, s] of this.#segments) {
      const keep = s.synced + Math.floor(unsynced() * (s.length - s.synced));
      const data = Buffer.alloc(Math.max(4096, keep));
      s.data.copy(data, 0, 0, keep);
      c.#segments.set(id, { data, length: keep, synced: keep });
    }
    return c;
  }
}

class MemSegmentHandle implements SegmentHandle {
  readonly #s: MemSegment;
  constructor(s: MemSegment) {
    this.#s = s;
  }
  async append(data: Uint8Array): Promise<void> {
    const s = this.#s;
    if (s.length + data.length > s.data.length) {
      const grown = Buffer.alloc(Math.max(s.data.length * 2, s.length + data.length));
      s.data.copy(grown, 0, 0, s.length);
      s.data = grown;
    }
    s.data.set(data, s.length);
    s.length += data.length;
  }
  async sync(): Promise<void> {
    // Yield to the event loop as real I/O does: otherwise a caller that awaits each enqueue in a
    // loop would run entirely in microtasks and starve timers and sockets.
    await new Promise<void>((resolve) => setImmediate(resolve));
    this.#s.synced = this.#s.length;
  }
  async truncate(length: number): Promise<void> {
    this.#s.length = Math.min(this.#s.length, length);
    this.#s.synced = Math.min(this.#s.synced, length);
  }
  async close(): Promise<void> {}
}
