/**
 * An attacker's toolkit for tamper drills: rewrites a ledger so that it is self-consistent —
 * every leaf hash, every idx file, every tile, every checkpoint root, every checkpoint record —
 * after changing some records, and signs (and seals) the checkpoints with whatever keys the
 * attacker holds. What such a forgery cannot fake is exactly what `witness verify` must catch.
 */
import { readFileSync, writeFileSync, readdirSync, rmSync, chmodSync } from 'node:fs';
import { join } from 'node:path';
import { CompactRange } from '../../shared/merkle/compact-range.js';
import { leafHash } from '../../shared/merkle/hash.js';
import { formatCheckpoint } from '../../shared/checkpoint/checkpoint.js';
import { signNote, parseNote, type NoteSigner, type NoteSignature } from '../../shared/checkpoint/note.js';
import { parseCheckpoint } from '../../shared/checkpoint/checkpoint.js';
import { formatWitnessExtension, parseWitnessExtension } from '../../shared/ledger/checkpoint-log.js';

export interface ForgeOptions {
  /** Returns the forged line for record `index` (or the line unchanged). Must keep {"i":index,. */
  mutate: (index: number, line: string) => string;
  /** Signs checkpoint `epoch` (its text): returns the signature lines to put on it. */
  sign: (text: string, epoch: number) => { signers: NoteSigner[]; extra: NoteSignature[] };
  /** Only checkpoints with epoch >= this are rewritten; earlier notes are kept as they were. */
  fromEpoch?: number;
}

export function forgeLedger(ledgerDir: string, o: ForgeOptions): void {
  const segDir = join(ledgerDir, 'segments');
  const segs = readdirSync(segDir).filter((f) => f.endsWith('.jsonl')).sort();
  const notes = readFileSync(join(ledgerDir, 'checkpoints.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l) as string);
  const old = notes.map((n) => {
    const cp = parseCheckpoint(parseNote(n).text);
    return { cp, ext: parseWitnessExtension(cp.extensions)! };
  });
  const forgedRoots = new Map<number, string>();
  const range = new CompactRange();
  const newNotes = [...notes];
  const fromEpoch = o.fromEpoch ?? 0;
  const sealCheckpoints = (): void => {
    old.forEach(({ cp, ext }, j) => {
      if (cp.size === range.size && !forgedRoots.has(j)) {
        const root = range.root();
        forgedRoots.set(j, Buffer.from(root).toString('base64'));
        if (j >= fromEpoch) {
          const text = formatCheckpoint({ origin: cp.origin, size: cp.size, rootHash: root, extensions: [formatWitnessExtension(ext.epoch, ext.time)] });
          const { signers, extra } = o.sign(text, j);
          newNotes[j] = signNote(text, signers, extra);
        }
      }
    });
  };
  sealCheckpoints();
  let index = 0;
  for (const seg of segs) {
    const path = join(segDir, seg);
    const lines = readFileSync(path, 'utf8').split('\n');
    lines.pop();
    const out: string[] = [];
    const idx: Buffer[] = [];
    for (const original of lines) {
      let line = o.mutate(index, original);
      const rec = JSON.parse(line) as { e?: string; cp?: { n: number; root: string } };
      if (rec.e === 'checkpoint' && rec.cp && forgedRoots.has(rec.cp.n)) {
        rec.cp.root = forgedRoots.get(rec.cp.n)!;
        line = JSON.stringify(rec);
      }
      const leaf = leafHash(Buffer.from(line));
      out.push(line);
      idx.push(Buffer.from(leaf));
      range.append(leaf);
      index++;
      sealCheckpoints();
    }
    chmodSync(path, 0o644);
    chmodSync(path.replace('.jsonl', '.idx'), 0o644);
    writeFileSync(path, out.map((l) => l + '\n').join(''));
    writeFileSync(path.replace('.jsonl', '.idx'), Buffer.concat(idx));
  }
  writeFileSync(join(ledgerDir, 'checkpoints.jsonl'), newNotes.map((n) => JSON.stringify(n) + '\n').join(''));
  // Tiles are derived data; drop them (a writer would rebuild them; the verifier never reads them).
  rmSync(join(ledgerDir, 'tree'), { recursive: true, force: true });
}
