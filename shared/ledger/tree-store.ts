/**
 * Stored Merkle nodes, so that proofs cost O(log n) reads instead of rehashing the ledger.
 *
 * Level 0 (leaf hashes) lives in the segments' `.idx` files. Interior nodes are kept only at
 * every TILE_HEIGHT-th level (8, 16, 24, …: `tree/L08.bin` holds the root of every complete
 * 256-leaf subtree, `L16.bin` of every 65,536-leaf subtree, …), each file an array of 32-byte
 * hashes in index order. Any perfect-subtree node is then at most 2^7 stored nodes away: a node at
 * level 13 is hashed up from 32 nodes of L08. Cost per proof: ≤ log2(n) nodes × ≤ 128 reads+hashes.
 *
 * The tile files are derived data: the writer appends to them with each batch without fsync, and
 * `reconcile()` at open rebuilds whatever a crash left short (they never decide a verdict:
 * `witness verify` recomputes everything from the records).
 */
import { openSync, closeSync, fstatSync, ftruncateSync, writeSync, mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import { nodeHash } from '../merkle/hash.js';
import type { NodeSource } from '../merkle/proof.js';
import { WitnessError } from '../errors.js';
import { TILE_HEIGHT, treeLevelPath } from './layout.js';
import { LEAF_HASH_SIZE, preadExact, type SegmentTable } from './segment.js';

const H = LEAF_HASH_SIZE;

export class TreeStore {
  readonly #dir: string;
  readonly #table: SegmentTable;
  readonly #writable: boolean;
  /** Open file descriptors: level → fd (tile levels), and segment idx path → fd. */
  readonly #levelFds = new Map<number, number>();
  readonly #idxFds = new Map<string, number>();

  constructor(dir: string, table: SegmentTable, writable: boolean) {
    this.#dir = dir;
    this.#table = table;
    this.#writable = writable;
  }

  #levelFd(level: number): number | undefined {
    let fd = this.#levelFds.get(level);
    if (fd !== undefined) return fd;
    const path = treeLevelPath(this.#dir, level);
    try {
      if (this.#writable) {
        mkdirSync(dirname(path), { recursive: true });
        fd = openSync(path, 'a+');
      } else {
        fd = openSync(path, 'r');
      }
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw new WitnessError('WITNESS_ERR_IO', `${path}: ${(e as Error).message}`, { cause: e });
    }
    this.#levelFds.set(level, fd);
    return fd;
  }

  #idxFd(path: string): number {
    let fd = this.#idxFds.get(path);
    if (fd === undefined) {
      fd = openSync(path, 'r');
      this.#idxFds.set(path, fd);
    }
    return fd;
  }

  /** Number of nodes stored at a tile level. */
  storedCount(level: number): number {
    const fd = this.#levelFd(level);
    return fd === undefined ? 0 : Math.floor(fstatSync(fd).size / H);
  }

  /** Writes a node of a tile level at its position (idempotent: positioned writes). */
  writeNode(level: number, index: number, hash: Uint8Array): void {
    const fd = this.#levelFd(level);
    if (fd === undefined) throw new WitnessError('WITNESS_ERR_IO', `tree level ${level}: cannot open for writing`);
    writeSync(fd, hash, 0, H, index * H);
  }

  /** `count` consecutive leaf hashes starting at `first`, possibly across segments. */
  readLeaves(first: number, count: number): Buffer {
    const out = Buffer.allocUnsafe(count * H);
    let done = 0;
    while (done < count) {
      const { segment, count: segCount, position } = this.#table.locate(first + done);
      const n = Math.min(count - done, segCount - position);
      const chunk = preadExact(this.#idxFd(segment.indexPath), n * H, position * H, segment.indexPath);
      chunk.copy(out, done * H);
      done += n;
    }
    return out;
  }

  /** `count` consecutive nodes of a stored level (0 = leaves). */
  readStored(level: number, first: number, count: number): Buffer {
    if (level === 0) return this.readLeaves(first, count);
    const fd = this.#levelFd(level);
    if (fd === undefined) throw new WitnessError('WITNESS_ERR_IO', `tree level ${level}: file missing (${treeLevelPath(this.#dir, level)})`);
    return preadExact(fd, count * H, first * H, treeLevelPath(this.#dir, level));
  }

  /** Hash of the perfect subtree (level, index): read from the nearest stored level below and hash up. */
  node(level: number, index: number): Uint8Array {
    const base = Math.floor(level / TILE_HEIGHT) * TILE_HEIGHT;
    const width = 2 ** (level - base);
    return hashUp(this.readStored(base, index * width, width), width);
  }

  /** A NodeSource for shared/merkle proof generation. */
  source(): NodeSource {
    return async (level, index) => this.node(level, index);
  }

  /**
   * Makes every tile level hold exactly the complete subtrees of a tree of `size` leaves:
   * truncates what a crash or a torn tail left beyond it, computes what is missing from the level
   * below. Returns the number of nodes it had to compute.
   */
  reconcile(size: number): number {
    let computed = 0;
    for (let level = TILE_HEIGHT; 2 ** level <= Math.max(size, 1); level += TILE_HEIGHT) {
      const want = Math.floor(size / 2 ** level);
      const fd = this.#levelFd(level);
      if (fd === undefined) continue;
      const have = Math.floor(fstatSync(fd).size / H);
      if (have > want || fstatSync(fd).size % H !== 0) ftruncateSync(fd, Math.min(have, want) * H);
      for (let i = Math.min(have, want); i < want; i++) {
        // Compute from the level below (TILE_HEIGHT levels down), which is complete by now.
        const below = level - TILE_HEIGHT;
        const width = 2 ** TILE_HEIGHT;
        this.writeNode(level, i, hashUp(this.readStored(below, i * width, width), width));
        computed++;
      }
    }
    // Levels above the tree's height must be empty.
    for (const [level, fd] of this.#levelFds) {
      if (2 ** level > size && fstatSync(fd).size > 0) ftruncateSync(fd, 0);
    }
    return computed;
  }

  close(): void {
    for (const fd of this.#levelFds.values()) closeSync(fd);
    for (const fd of this.#idxFds.values()) closeSync(fd);
    this.#levelFds.clear();
    this.#idxFds.clear();
  }

  /** Drops a cached idx descriptor (the writer rewrote or extended that file). */
  forget(indexPath: string): void {
    const fd = this.#idxFds.get(indexPath);
    if (fd !== undefined) {
      closeSync(fd);
      this.#idxFds.delete(indexPath);
    }
  }
}

/** Root of the perfect subtree over `width` consecutive 32-byte nodes in `buf` (width a power of two). */
function hashUp(buf: Buffer, width: number): Uint8Array {
  let nodes: Uint8Array[] = [];
  for (let i = 0; i < width; i++) nodes.push(buf.subarray(i * H, (i + 1) * H));
  while (nodes.length > 1) {
    const up: Uint8Array[] = [];
    for (let i = 0; i < nodes.length; i += 2) up.push(nodeHash(nodes[i]!, nodes[i + 1]!));
    nodes = up;
  }
  return nodes[0]!;
}
