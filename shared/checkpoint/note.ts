/**
 * C2SP signed notes (https://c2sp.org/signed-note, v1.0.0): a text signed by one or more keys.
 *
 *     <text: one or more lines, each ending in U+000A>
 *     <a blank line>
 *     — <key name> base64(4-byte key ID || signature)
 *     — ...
 *
 * Parsing follows the spec and the reference implementation (golang.org/x/mod/sumdb/note, Open):
 *   - the note is valid UTF-8 (here: a well-formed JS string, no lone surrogates) and holds no
 *     ASCII control character other than newline;
 *   - the text is everything up to and including the newline before the LAST blank line, so the
 *     text itself may contain blank lines ("the text is separated from the signatures by the last
 *     empty line in the note");
 *   - every line after it is "— NAME BASE64" (em dash U+2014, space, name, space, base64), the
 *     block ends in a newline, and there is at least one such line;
 *   - key names are non-empty with no Unicode White_Space and no '+';
 *   - the base64 is the standard alphabet with padding (RFC 4648 §4) and decodes to ≥ 5 bytes:
 *     a 4-byte key ID and at least one byte of signature.
 * Stricter than the Go reference, on purpose: the base64 must be canonical (unused trailing bits
 * zero), so each signature has exactly one spelling and no bit of a note can change without
 * changing what it says; and a note is at most 1 MiB (the spec asks verifiers for a limit).
 *
 * Opening (verifying) follows the spec's rules for keys (signed-note §Signatures): a signature
 * counts for a verifier only if both its key name and key ID match; every matching signature is
 * verified and one that fails rejects the whole note; signatures of unknown keys are kept apart,
 * unverified (cosignatures per https://c2sp.org/tlog-cosignature and the Witness seal line live
 * there), and a note with no verified signature is rejected.
 */
import { WitnessError, expectBytes } from '../errors.js';
import { publicKeyFromSeed, sign, verify, checkPublicKey, SIGNATURE_SIZE } from '../keys/ed25519.js';
import { checkKeyName, keyHash as computeKeyHash, KEY_HASH_SIZE } from '../keys/key-id.js';

/** One signature line: `— name base64(keyHash || signature)`. */
export interface NoteSignature {
  name: string;
  /** The 4-byte key ID (big-endian uint32 in the spec). */
  keyHash: Uint8Array;
  /** The bytes after the key ID (for Ed25519: the 64-byte signature of the note text). */
  signature: Uint8Array;
}

export interface Note {
  /** The signed text, including its final newline but not the separating blank line. */
  text: string;
  /** The signature lines in the order they appear. */
  signatures: NoteSignature[];
}

export interface NoteSigner {
  readonly name: string;
  readonly keyHash: Uint8Array;
  /** Signs the UTF-8 bytes of the note text. */
  sign(message: Uint8Array): Uint8Array;
}

export interface NoteVerifier {
  readonly name: string;
  readonly keyHash: Uint8Array;
  /** True iff `signature` (the bytes after the key ID) is valid for `message` (the note text). */
  verify(message: Uint8Array, signature: Uint8Array): boolean;
}

export interface OpenedNote {
  /** The note text; trust it only because `verified` is non-empty. */
  text: string;
  /** Signatures of the given verifiers that verified (one per key, in note order). */
  verified: NoteSignature[];
  /** Signatures of keys not among the verifiers, kept as they are (identical lines once). */
  unverified: NoteSignature[];
}

/** Upper bound on a note, bytes of UTF-8: checkpoints are a few hundred bytes. */
export const MAX_NOTE_BYTES = 1 << 20;
/** Upper bound on signature lines; the spec requires accepting at least 16, Go's note allows 100. */
export const MAX_NOTE_SIGNATURES = 100;

const EM_DASH_SPACE = '\u2014 ';
// signed-note §Format: no ASCII control characters other than newline.
const CONTROL = /[\u0000-\u0009\u000B-\u001F]/;
// A lone surrogate cannot be encoded as UTF-8: such a string is not a valid note.
const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;
// signed-note §Format: "Key names MUST be non-empty and MUST NOT contain any Unicode spaces or plus".
const BAD_NAME_CHAR = /[\p{White_Space}+]/u;
// RFC 4648 §4, padded. Canonical trailing bits are checked separately by re-encoding.
const BASE64 = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;

const utf8 = new TextEncoder();

function malformed(line: number, message: string, details: Record<string, unknown> = {}): WitnessError {
  return new WitnessError('WITNESS_ERR_NOTE_MALFORMED', `signed note, line ${line}: ${message}`, { details: { line, ...details } });
}

function isValidName(name: unknown): name is string {
  return typeof name === 'string' && name.length > 0 && !BAD_NAME_CHAR.test(name) && !CONTROL.test(name) && !LONE_SURROGATE.test(name);
}

function toHex(bytes: Uint8Array): string {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('hex');
}

function toBase64(bytes: Uint8Array): string {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('base64');
}

/** Strict, canonical standard base64; undefined if `s` is anything else. */
function fromBase64(s: string): Uint8Array | undefined {
  if (!BASE64.test(s)) return undefined;
  const bytes = Buffer.from(s, 'base64');
  if (bytes.toString('base64') !== s) return undefined; // non-zero unused bits: a second spelling
  return new Uint8Array(bytes);
}

/** 1-based line number of the character at `offset`. */
function lineAt(s: string, offset: number): number {
  let n = 1;
  for (let i = s.indexOf('\n'); i !== -1 && i < offset; i = s.indexOf('\n', i + 1)) n++;
  return n;
}

function countLines(text: string): number {
  let n = 0;
  for (let i = text.indexOf('\n'); i !== -1; i = text.indexOf('\n', i + 1)) n++;
  return n;
}

function nameHashKey(name: string, keyHash: Uint8Array): string {
  return `${name}+${toHex(keyHash)}`;
}

/**
 * Parses a signed note without verifying anything. Throws WITNESS_ERR_NOTE_MALFORMED naming the
 * line. The text of a merely parsed note MUST NOT be trusted (signed-note §Note): use openNote.
 */
export function parseNote(note: string): Note {
  if (typeof note !== 'string') {
    throw new WitnessError('WITNESS_ERR_INVALID_ARGUMENT', `signed note: expected string, got ${typeof note}`);
  }
  // UTF-8 is never shorter than UTF-16 code units, so the cheap test first.
  if (note.length > MAX_NOTE_BYTES || Buffer.byteLength(note, 'utf8') > MAX_NOTE_BYTES) {
    throw malformed(1, `note is larger than ${MAX_NOTE_BYTES} bytes`, { limit: MAX_NOTE_BYTES });
  }
  const control = CONTROL.exec(note);
  if (control) {
    throw malformed(lineAt(note, control.index), `ASCII control character U+${control[0].charCodeAt(0).toString(16).padStart(4, '0').toUpperCase()} (only newline is allowed)`);
  }
  const surrogate = LONE_SURROGATE.exec(note);
  if (surrogate) throw malformed(lineAt(note, surrogate.index), 'not valid UTF-8 (lone surrogate)');

  const split = note.lastIndexOf('\n\n');
  if (split < 0) throw malformed(lineAt(note, note.length), 'no blank line separating the text from the signatures');
  const text = note.slice(0, split + 1);
  const block = note.slice(split + 2);
  const firstSigLine = countLines(text) + 2;
  if (block.length === 0) throw malformed(firstSigLine, 'no signature lines after the blank line');
  if (!block.endsWith('\n')) throw malformed(firstSigLine + countLines(block), 'the last signature line does not end with a newline');

  const lines = block.slice(0, -1).split('\n');
  if (lines.length > MAX_NOTE_SIGNATURES) {
    throw malformed(firstSigLine + MAX_NOTE_SIGNATURES, `more than ${MAX_NOTE_SIGNATURES} signature lines`, { limit: MAX_NOTE_SIGNATURES });
  }
  const signatures: NoteSignature[] = [];
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i]!;
    const n = firstSigLine + i;
    if (!line.startsWith(EM_DASH_SPACE)) throw malformed(n, 'a signature line must start with an em dash (U+2014) and a space');
    const rest = line.slice(EM_DASH_SPACE.length);
    const space = rest.indexOf(' ');
    const name = space < 0 ? rest : rest.slice(0, space);
    const b64 = space < 0 ? '' : rest.slice(space + 1);
    if (!isValidName(name)) throw malformed(n, `key name ${JSON.stringify(name)} is empty or contains a space or '+'`);
    const raw = fromBase64(b64);
    if (raw === undefined) throw malformed(n, `signature of ${name} is not canonical standard base64`);
    if (raw.length < KEY_HASH_SIZE + 1) {
      throw malformed(n, `signature of ${name} decodes to ${raw.length} bytes; expected a 4-byte key ID and a signature`, { actual: raw.length });
    }
    signatures.push({ name, keyHash: raw.slice(0, KEY_HASH_SIZE), signature: raw.slice(KEY_HASH_SIZE) });
  }
  return { text, signatures };
}

function checkText(text: unknown, where: string): asserts text is string {
  if (typeof text !== 'string' || text.length === 0 || !text.endsWith('\n')) {
    throw new WitnessError('WITNESS_ERR_INVALID_ARGUMENT', `${where}: note text must be a non-empty string ending in a newline (C2SP signed-note)`);
  }
  if (CONTROL.test(text) || LONE_SURROGATE.test(text)) {
    throw new WitnessError('WITNESS_ERR_INVALID_ARGUMENT', `${where}: note text must be valid UTF-8 with no control characters other than newline (C2SP signed-note)`);
  }
}

/**
 * Writes a note: text, blank line, one line per signature. Throws WITNESS_ERR_INVALID_ARGUMENT
 * for anything parseNote would reject, so that parseNote(formatNote(n)) always gives back `n`.
 */
export function formatNote(note: Note): string {
  checkText(note?.text, 'formatNote');
  const sigs = note.signatures;
  if (!Array.isArray(sigs) || sigs.length === 0 || sigs.length > MAX_NOTE_SIGNATURES) {
    throw new WitnessError('WITNESS_ERR_INVALID_ARGUMENT', `formatNote: a note needs 1 to ${MAX_NOTE_SIGNATURES} signatures, got ${Array.isArray(sigs) ? sigs.length : typeof sigs}`);
  }
  let out = note.text + '\n';
  for (const s of sigs) {
    if (!isValidName(s.name)) {
      throw new WitnessError('WITNESS_ERR_INVALID_ARGUMENT', `formatNote: key name ${JSON.stringify(s.name)} is empty or contains a space or '+'`);
    }
    expectBytes(s.keyHash, KEY_HASH_SIZE, `formatNote: key hash of ${s.name}`);
    expectBytes(s.signature, undefined, `formatNote: signature of ${s.name}`);
    if (s.signature.length === 0) throw new WitnessError('WITNESS_ERR_INVALID_ARGUMENT', `formatNote: signature of ${s.name} is empty`);
    const raw = new Uint8Array(KEY_HASH_SIZE + s.signature.length);
    raw.set(s.keyHash, 0);
    raw.set(s.signature, KEY_HASH_SIZE);
    out += `${EM_DASH_SPACE}${s.name} ${toBase64(raw)}\n`;
  }
  if (Buffer.byteLength(out, 'utf8') > MAX_NOTE_BYTES) {
    throw new WitnessError('WITNESS_ERR_INVALID_ARGUMENT', `formatNote: note would be larger than ${MAX_NOTE_BYTES} bytes`);
  }
  return out;
}

class Ed25519NoteSigner implements NoteSigner {
  readonly name: string;
  readonly #seed: Uint8Array;
  readonly #keyHash: Uint8Array;

  constructor(name: string, seed: Uint8Array) {
    checkKeyName(name);
    const publicKey = publicKeyFromSeed(seed); // checks the seed is 32 bytes
    this.name = name;
    this.#seed = seed.slice();
    this.#keyHash = computeKeyHash(name, publicKey);
  }

  get keyHash(): Uint8Array {
    return this.#keyHash.slice();
  }

  sign(message: Uint8Array): Uint8Array {
    return sign(this.#seed, message);
  }
}

class Ed25519NoteVerifier implements NoteVerifier {
  readonly name: string;
  readonly #publicKey: Uint8Array;
  readonly #keyHash: Uint8Array;

  constructor(name: string, publicKey: Uint8Array) {
    checkKeyName(name);
    checkPublicKey(publicKey); // WITNESS_ERR_KEY_INVALID / _KEY_WEAK
    this.name = name;
    this.#publicKey = publicKey.slice();
    this.#keyHash = computeKeyHash(name, publicKey);
  }

  get keyHash(): Uint8Array {
    return this.#keyHash.slice();
  }

  verify(message: Uint8Array, signature: Uint8Array): boolean {
    if (!(signature instanceof Uint8Array) || signature.length !== SIGNATURE_SIZE) return false;
    return verify(this.#publicKey, message, signature); // strict: canonical S and R, cofactorless
  }
}

/** An Ed25519 signer (signature type 0x01, signed-note §Ed25519 signatures) from a 32-byte seed. */
export function ed25519NoteSigner(name: string, seed: Uint8Array): NoteSigner {
  return new Ed25519NoteSigner(name, seed);
}

/** An Ed25519 verifier with strict RFC 8032 verification (shared/keys/ed25519.ts). */
export function ed25519NoteVerifier(name: string, publicKey: Uint8Array): NoteVerifier {
  return new Ed25519NoteVerifier(name, publicKey);
}

/**
 * Signs `text` with every signer and returns the note. `existing` signatures (e.g. the log's own
 * signature when cosigning, or the seal line) are kept and written first; one made by a key that
 * is also among `signers` (same name and key ID) is replaced by the new signature, as in
 * golang.org/x/mod/sumdb/note.Sign.
 */
export function signNote(text: string, signers: readonly NoteSigner[], existing: readonly NoteSignature[] = []): string {
  checkText(text, 'signNote');
  const message = utf8.encode(text);
  const replaced = new Set<string>();
  const fresh: NoteSignature[] = [];
  for (const s of signers) {
    if (!isValidName(s.name)) {
      throw new WitnessError('WITNESS_ERR_INVALID_ARGUMENT', `signNote: signer name ${JSON.stringify(s.name)} is empty or contains a space or '+'`);
    }
    const keyHash = expectBytes(s.keyHash, KEY_HASH_SIZE, `signNote: key hash of signer ${s.name}`).slice();
    const signature = expectBytes(s.sign(message), undefined, `signNote: signature of ${s.name}`).slice();
    replaced.add(nameHashKey(s.name, keyHash));
    fresh.push({ name: s.name, keyHash, signature });
  }
  const kept = existing.filter((s) => !(s.keyHash instanceof Uint8Array && replaced.has(nameHashKey(s.name, s.keyHash))));
  return formatNote({ text, signatures: [...kept, ...fresh] });
}

/**
 * Parses `note` and verifies the signatures of the given keys. Returns the text only if at least
 * one of them signed it. Throws:
 *   - WITNESS_ERR_NOTE_MALFORMED: not a signed note;
 *   - WITNESS_ERR_CHECKPOINT_SIGNATURE: a line matching a verifier's name AND key ID fails;
 *   - WITNESS_ERR_CHECKPOINT_UNSIGNED: no line matches any verifier;
 *   - WITNESS_ERR_INVALID_ARGUMENT: two verifiers share a name and key ID (ambiguous).
 */
export function openNote(note: string, verifiers: readonly NoteVerifier[]): OpenedNote {
  const known = new Map<string, NoteVerifier>();
  for (const v of verifiers) {
    if (!isValidName(v.name)) {
      throw new WitnessError('WITNESS_ERR_INVALID_ARGUMENT', `openNote: verifier name ${JSON.stringify(v.name)} is empty or contains a space or '+'`);
    }
    const id = nameHashKey(v.name, expectBytes(v.keyHash, KEY_HASH_SIZE, `openNote: key hash of verifier ${v.name}`));
    if (known.has(id)) throw new WitnessError('WITNESS_ERR_INVALID_ARGUMENT', `openNote: ambiguous verifiers: two keys are named ${id}`);
    known.set(id, v);
  }

  const parsed = parseNote(note);
  const message = utf8.encode(parsed.text);
  const firstSigLine = countLines(parsed.text) + 2;
  const verified: NoteSignature[] = [];
  const unverified: NoteSignature[] = [];
  const seenVerified = new Set<string>();
  const seenUnverified = new Set<string>();
  parsed.signatures.forEach((sig, i) => {
    const id = nameHashKey(sig.name, sig.keyHash);
    const v = known.get(id);
    if (v === undefined) {
      const line = `${id} ${toBase64(sig.signature)}`;
      if (!seenUnverified.has(line)) {
        seenUnverified.add(line);
        unverified.push(sig);
      }
      return;
    }
    // signed-note §Signatures: a known key's signature MUST be verified; a failure rejects the note.
    // Every line of a known key is verified, duplicates included (Go's note skips repeats).
    if (!v.verify(message, sig.signature)) {
      throw new WitnessError('WITNESS_ERR_CHECKPOINT_SIGNATURE', `signed note, line ${firstSigLine + i}: signature of ${id} does not verify`, {
        details: { line: firstSigLine + i, key: id },
      });
    }
    if (!seenVerified.has(id)) {
      seenVerified.add(id);
      verified.push(sig);
    }
  });
  if (verified.length === 0) {
    throw new WitnessError(
      'WITNESS_ERR_CHECKPOINT_UNSIGNED',
      `signed note: no signature by a trusted key (trusted: ${[...known.keys()].join(', ') || 'none'}; present: ${parsed.signatures.map((s) => nameHashKey(s.name, s.keyHash)).join(', ')})`,
      { details: { trusted: [...known.keys()], present: parsed.signatures.map((s) => nameHashKey(s.name, s.keyHash)) } },
    );
  }
  return { text: parsed.text, verified, unverified };
}
