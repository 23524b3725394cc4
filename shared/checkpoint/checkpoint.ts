/**
 * C2SP tlog-checkpoint (https://c2sp.org/tlog-checkpoint, v1.0.0): the text of a signed note
 * that commits to a Merkle tree head.
 *
 *     <origin>\n                   non-empty; names the log
 *     <tree size>\n                ASCII decimal, no leading zeroes ("0" for the empty tree)
 *     <base64 root hash>\n         RFC 9162 §2.1.1 root, standard base64 (RFC 4648 §4), 32 bytes
 *     [<extension line>\n]*        opaque, non-empty
 *
 * Witness uses one extension line (shared/ledger/checkpoint-log.ts) for the epoch and time.
 * Sizes are JS numbers, so a size above 2^53 - 1 is refused rather than rounded.
 *
 * openCheckpoint verifies the note first and only then parses the text it verified: a text that
 * is not signed by a trusted key is never looked at (signed-note §Note: "The text MUST be
 * ignored unless the note is signed by a trusted key and the signature has been verified").
 */
import { WitnessError, expectBytes } from '../errors.js';
import { openNote, signNote, type NoteSigner, type NoteVerifier, type OpenedNote } from './note.js';

export interface Checkpoint {
  /** First line: the log's identity (C2SP tlog-checkpoint: non-empty). */
  origin: string;
  /** Number of leaves in the tree; a safe integer. */
  size: number;
  /** RFC 9162 root hash of the tree at `size`, 32 bytes. */
  rootHash: Uint8Array;
  /** Extension lines, each non-empty, without their newline. */
  extensions: string[];
}

export const ROOT_HASH_SIZE = 32;

const CONTROL = /[\u0000-\u0009\u000B-\u001F]/;
const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;
// tlog-checkpoint §Note text 2: no leading zeroes unless the tree is empty. 16 digits bound the
// number before Number() sees it; the safe-integer check below does the rest.
const TREE_SIZE = /^(?:0|[1-9][0-9]{0,15})$/;
const BASE64 = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;
const LINE_NAMES = ['origin', 'tree size', 'root hash'] as const;

function malformed(line: number, message: string, details: Record<string, unknown> = {}): WitnessError {
  const what = LINE_NAMES[line - 1] ?? 'extension';
  return new WitnessError('WITNESS_ERR_CHECKPOINT_MALFORMED', `checkpoint, line ${line} (${what}): ${message}`, { details: { line, ...details } });
}

function invalid(message: string): WitnessError {
  return new WitnessError('WITNESS_ERR_INVALID_ARGUMENT', `formatCheckpoint: ${message}`);
}

function checkLine(s: unknown, what: string): asserts s is string {
  if (typeof s !== 'string' || s.length === 0 || s.includes('\n') || CONTROL.test(s) || LONE_SURROGATE.test(s)) {
    throw invalid(`${what} must be a non-empty line of valid text with no control characters, got ${JSON.stringify(s)}`);
  }
}

/** The note text of a checkpoint. Throws WITNESS_ERR_INVALID_ARGUMENT for what parseCheckpoint would reject. */
export function formatCheckpoint(cp: Checkpoint): string {
  checkLine(cp?.origin, 'origin');
  if (!Number.isSafeInteger(cp.size) || cp.size < 0) throw invalid(`size must be a safe non-negative integer, got ${String(cp.size)}`);
  expectBytes(cp.rootHash, ROOT_HASH_SIZE, 'formatCheckpoint: root hash');
  if (!Array.isArray(cp.extensions)) throw invalid('extensions must be an array of lines');
  cp.extensions.forEach((e, i) => checkLine(e, `extension line ${i + 1}`));
  const root = Buffer.from(cp.rootHash.buffer, cp.rootHash.byteOffset, cp.rootHash.byteLength).toString('base64');
  return [cp.origin, String(cp.size), root, ...cp.extensions].map((l) => l + '\n').join('');
}

/**
 * Parses a checkpoint text (the text of a note, NOT the note). Throws
 * WITNESS_ERR_CHECKPOINT_MALFORMED naming the line. Parsing is not trusting: a text from
 * anywhere but openCheckpoint (or openNote) has not been verified.
 */
export function parseCheckpoint(text: string): Checkpoint {
  if (typeof text !== 'string') throw new WitnessError('WITNESS_ERR_INVALID_ARGUMENT', `checkpoint: expected string, got ${typeof text}`);
  if (!text.endsWith('\n')) throw malformed(Math.max(1, text.split('\n').length), 'the text does not end with a newline');
  const lines = text.slice(0, -1).split('\n');
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i]!;
    // tlog-checkpoint §Note text: "a sequence of at least three non-empty lines".
    if (line.length === 0) throw malformed(i + 1, 'empty line');
    if (CONTROL.test(line) || LONE_SURROGATE.test(line)) throw malformed(i + 1, 'control character or invalid UTF-8');
  }
  if (lines.length < 3) throw malformed(lines.length + 1, `expected at least 3 lines (origin, tree size, root hash), got ${lines.length}`);
  const [origin, sizeLine, rootLine] = lines as [string, string, string, ...string[]];

  if (!TREE_SIZE.test(sizeLine)) {
    throw malformed(2, `${JSON.stringify(sizeLine.slice(0, 40))} is not a decimal number without leading zeroes`);
  }
  const size = Number(sizeLine);
  if (!Number.isSafeInteger(size)) {
    throw malformed(2, `${sizeLine} exceeds 2^53 - 1`, { limit: Number.MAX_SAFE_INTEGER, actual: sizeLine });
  }

  if (!BASE64.test(rootLine)) throw malformed(3, 'not standard base64 (RFC 4648 §4, padded)');
  const root = Buffer.from(rootLine, 'base64');
  if (root.toString('base64') !== rootLine) throw malformed(3, 'non-canonical base64 (unused bits set)');
  if (root.length !== ROOT_HASH_SIZE) {
    throw malformed(3, `root hash is ${root.length} bytes, expected ${ROOT_HASH_SIZE}`, { expected: ROOT_HASH_SIZE, actual: root.length });
  }
  return { origin, size, rootHash: new Uint8Array(root), extensions: lines.slice(3) };
}

/** Formats `cp` and signs it: the signed-note text of a checkpoint. */
export function signCheckpoint(cp: Checkpoint, signers: readonly NoteSigner[]): string {
  return signNote(formatCheckpoint(cp), signers);
}

/**
 * Verifies a checkpoint note against trusted keys, then parses the verified text. Throws
 * WITNESS_ERR_NOTE_MALFORMED / _CHECKPOINT_SIGNATURE / _CHECKPOINT_UNSIGNED (openNote) before
 * the text is read, and WITNESS_ERR_CHECKPOINT_MALFORMED for a signed text that is no checkpoint.
 */
export function openCheckpoint(note: string, verifiers: readonly NoteVerifier[]): { checkpoint: Checkpoint; note: OpenedNote } {
  const opened = openNote(note, verifiers);
  return { checkpoint: parseCheckpoint(opened.text), note: opened };
}
