/**
 * Forward-secure seals on checkpoints: a simplified cousin of journald's Forward Secure Sealing,
 * with a hash chain of keys in place of FSPRG. Whoever takes the host at epoch n holds only k_n,
 * from which no earlier key can be computed, so they cannot re-seal checkpoints 0..n-1.
 *
 * Key chain (HKDF is RFC 5869 with SHA-256, salt empty — i.e. HashLen zero bytes, §2.2):
 *
 *     k_0      = 32 random bytes, printed once by `witness init` (64 hex characters) to be kept
 *                offline; the verifier starts from it
 *     k_{e+1}  = HKDF-SHA256(IKM = k_e, salt = "", info = "witness/seal/v1/evolve", L = 32)
 *     m_e      = HKDF-SHA256(IKM = k_e, salt = "", info = "witness/seal/v1/mac",    L = 32)
 *
 * Epoch e is the 0-based position of the checkpoint in the checkpoint log (the first checkpoint
 * ever written is epoch 0). The seal of a checkpoint whose note text is T (the signed text,
 * UTF-8, final newline included, signature lines excluded):
 *
 *     mac_e    = HMAC-SHA256(m_e, "witness/seal/v1\n" || uint64be(e) || T)
 *
 * It is carried as one more signature line of the checkpoint note (C2SP signed-note):
 *
 *     — witness-seal base64(key ID || uint64be(e) || mac_e)
 *
 *     key ID   = SHA-256("witness-seal" || 0x0A || 0xFF || "witness/seal/v1")[:4]
 *
 * so the signature part is 40 bytes (8 of epoch, 32 of MAC). 0xFF is signed-note's signature type
 * for types without an assigned byte, followed by a longer identifier as the spec recommends;
 * standard note verifiers do not know this key and ignore the line (signed-note §Signatures), and
 * the seal does not hide or alter anything they check.
 *
 * What a seal proves, checked by SealVerifier with k_0: the checkpoint text at position e was
 * sealed by someone holding k_e. A later key cannot seal an earlier epoch (SEAL_INVALID) and a
 * seal names its own epoch, so removing or inserting a checkpoint shifts positions (SEAL_EPOCH).
 *
 * HKDF and HMAC come from @noble/hashes rather than node:crypto: `hkdf(sha256, ikm, salt, info,
 * L)` reads like RFC 5869 and returns a Uint8Array, where hkdfSync returns an ArrayBuffer and
 * takes its arguments in another order; the tests recompute the chain with node:crypto.
 */
import { closeSync, constants, fchmodSync, fdatasyncSync, fsyncSync, openSync, readSync, unlinkSync, writeSync } from 'node:fs';
import { dirname } from 'node:path';
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import { hkdf } from '@noble/hashes/hkdf.js';
import { hmac } from '@noble/hashes/hmac.js';
import { sha256 } from '@noble/hashes/sha2.js';
import { WitnessError } from '../errors.js';
import { keyHash } from '../keys/key-id.js';
import type { Note, NoteSignature } from './note.js';
import { concatBytes } from '../bytes.js';

export const SEAL_KEY_SIZE = 32;
export const SEAL_NAME = 'witness-seal';

const utf8 = new TextEncoder();
const SEAL_ID = utf8.encode('witness/seal/v1');
const EVOLVE_INFO = utf8.encode('witness/seal/v1/evolve');
const MAC_INFO = utf8.encode('witness/seal/v1/mac');
const MAC_DOMAIN = utf8.encode('witness/seal/v1\n');
const EMPTY = new Uint8Array(0);
/** signed-note §Signature types: 0xFF, "signature types without an identifier byte assigned". */
const SIGNATURE_TYPE_OTHER = 0xff;
const SEAL_KEY_HASH = keyHash(SEAL_NAME, SEAL_ID, SIGNATURE_TYPE_OTHER);
const EPOCH_SIZE = 8;
const MAC_SIZE = 32;
const SEAL_SIGNATURE_SIZE = EPOCH_SIZE + MAC_SIZE;

function checkKey(key: unknown, what: string): asserts key is Uint8Array {
  if (!(key instanceof Uint8Array) || key.length !== SEAL_KEY_SIZE) {
    throw new WitnessError(
      'WITNESS_ERR_SEAL_KEY',
      `${what}: expected Uint8Array of length ${SEAL_KEY_SIZE}, got ${key instanceof Uint8Array ? `length ${key.length}` : typeof key}`,
    );
  }
}

function checkEpoch(epoch: unknown, what: string): asserts epoch is number {
  if (typeof epoch !== 'number' || !Number.isSafeInteger(epoch) || epoch < 0) {
    throw new WitnessError('WITNESS_ERR_INVALID_ARGUMENT', `${what}: epoch must be a safe non-negative integer, got ${String(epoch)}`);
  }
}

function uint64be(n: number): Uint8Array {
  const b = new Uint8Array(8);
  new DataView(b.buffer).setBigUint64(0, BigInt(n));
  return b;
}

function equalBytes(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && timingSafeEqual(a, b);
}

/** mac_e = HMAC-SHA256(m_e, "witness/seal/v1\n" || uint64be(e) || T); m_e is wiped after use. */
function sealMac(key: Uint8Array, epoch: number, text: string): Uint8Array {
  const macKey = hkdf(sha256, key, EMPTY, MAC_INFO, MAC_SIZE);
  try {
    return hmac(sha256, macKey, concatBytes([MAC_DOMAIN, uint64be(epoch), utf8.encode(text)]));
  } finally {
    macKey.fill(0);
  }
}

/** k_0: 32 bytes from the OS CSPRNG. */
export function generateSealKey(): Uint8Array {
  return new Uint8Array(randomBytes(SEAL_KEY_SIZE));
}

/** The sealing key as printed by `witness init`: exactly 64 hex digits. Else WITNESS_ERR_SEAL_KEY. */
export function parseSealKey(hex: string): Uint8Array {
  if (typeof hex !== 'string' || !/^[0-9a-fA-F]{64}$/.test(hex)) {
    throw new WitnessError(
      'WITNESS_ERR_SEAL_KEY',
      `sealing key: expected 64 hex characters, got ${typeof hex === 'string' ? `${hex.length} characters` : typeof hex}`,
    );
  }
  return new Uint8Array(Buffer.from(hex, 'hex'));
}

/** k_{e+1} = HKDF-SHA256(k_e, salt "", info "witness/seal/v1/evolve", 32). Does not touch `key`. */
export function evolveSealKey(key: Uint8Array): Uint8Array {
  checkKey(key, 'evolveSealKey');
  return hkdf(sha256, key, EMPTY, EVOLVE_INFO, SEAL_KEY_SIZE);
}

/** The seal line of the checkpoint with note text `text` at `epoch`, sealed with that epoch's key k_e. */
export function sealSignature(key: Uint8Array, epoch: number, text: string): NoteSignature {
  checkKey(key, 'sealSignature');
  checkEpoch(epoch, 'sealSignature');
  if (typeof text !== 'string') throw new WitnessError('WITNESS_ERR_INVALID_ARGUMENT', `sealSignature: text must be a string, got ${typeof text}`);
  return { name: SEAL_NAME, keyHash: SEAL_KEY_HASH.slice(), signature: concatBytes([uint64be(epoch), sealMac(key, epoch, text)]) };
}

/**
 * Checks seals from k_0 forward. Keeps only the key of the latest epoch checked, so checking a
 * log in order costs one HKDF step per checkpoint.
 */
export class SealVerifier {
  #key: Uint8Array;
  #epoch = 0;

  constructor(initialKey: Uint8Array) {
    checkKey(initialKey, 'SealVerifier');
    this.#key = initialKey.slice();
  }

  /**
   * Checks the seal line of the epoch-th checkpoint note; epochs must be given in increasing order
   * (skips evolve forward; the same epoch may be checked again). Throws:
   *   - WITNESS_ERR_SEAL_MISSING: no `witness-seal` line with the seal key ID;
   *   - WITNESS_ERR_SEAL_EPOCH: the seal names another epoch (checkpoints removed or inserted, or
   *     history re-sealed under later epochs);
   *   - WITNESS_ERR_SEAL_INVALID: wrong length, more than one seal line, or a MAC that does not
   *     match the text under m_epoch (text altered, or sealed with a key other than k_epoch);
   *   - WITNESS_ERR_INVALID_ARGUMENT: an epoch below one already checked.
   */
  check(epoch: number, note: Note): void {
    checkEpoch(epoch, 'SealVerifier.check');
    if (epoch < this.#epoch) {
      throw new WitnessError('WITNESS_ERR_INVALID_ARGUMENT', `SealVerifier.check: epochs go forward only; at ${this.#epoch}, asked for ${epoch}`);
    }
    while (this.#epoch < epoch) {
      const next = evolveSealKey(this.#key);
      this.#key.fill(0);
      this.#key = next;
      this.#epoch++;
    }
    const seals = note.signatures.filter((s) => s.name === SEAL_NAME && s.keyHash instanceof Uint8Array && equalBytes(s.keyHash, SEAL_KEY_HASH));
    if (seals.length === 0) {
      throw new WitnessError('WITNESS_ERR_SEAL_MISSING', `checkpoint ${epoch}: no ${SEAL_NAME} signature line`, { details: { epoch } });
    }
    if (seals.length > 1) {
      throw new WitnessError('WITNESS_ERR_SEAL_INVALID', `checkpoint ${epoch}: ${seals.length} seal lines; a checkpoint carries exactly one`, { details: { epoch, seals: seals.length } });
    }
    const sig = seals[0]!.signature;
    if (sig.length !== SEAL_SIGNATURE_SIZE) {
      throw new WitnessError('WITNESS_ERR_SEAL_INVALID', `checkpoint ${epoch}: seal is ${sig.length} bytes, expected ${SEAL_SIGNATURE_SIZE}`, {
        details: { epoch, expected: SEAL_SIGNATURE_SIZE, actual: sig.length },
      });
    }
    const sealedEpoch = new DataView(sig.buffer, sig.byteOffset, EPOCH_SIZE).getBigUint64(0);
    if (sealedEpoch !== BigInt(epoch)) {
      throw new WitnessError('WITNESS_ERR_SEAL_EPOCH', `checkpoint at log position ${epoch} carries the seal of epoch ${sealedEpoch}`, {
        details: { expected: epoch, actual: sealedEpoch.toString() },
      });
    }
    // Compute, then compare.
    const expected = sealMac(this.#key, epoch, note.text);
    if (!equalBytes(expected, sig.subarray(EPOCH_SIZE))) {
      throw new WitnessError('WITNESS_ERR_SEAL_INVALID', `checkpoint ${epoch}: seal does not match the text under the key of epoch ${epoch}`, {
        details: { epoch, expected: Buffer.from(expected).toString('hex'), actual: Buffer.from(sig.subarray(EPOCH_SIZE)).toString('hex') },
      });
    }
  }
}

// ── SealState: the broker's current (epoch, k_epoch), on disk ────────────────────────────────
//
// File layout (keys/seal.state, mode 0600): two slots, at offsets 0 and 4096. Each slot is 61 bytes:
//
//     magic "WSEA" (4) || version 0x01 (1) || epoch uint64be (8) || key k_epoch (32)
//     || SHA-256(the preceding 45 bytes)[:16]
//
// and the rest of each 4096-byte block is zero. The slots sit in different 4 KiB blocks so that
// writing one never rewrites the sector or page that holds the other. Exactly one slot is valid
// in the steady state; the other is all zeros. To advance:
//   1. write (epoch+1, k_{epoch+1}) into the other slot with a positioned write, fdatasync
//      — the commit point: a crash before it leaves the old slot, a torn write leaves a slot
//      whose checksum fails;
//   2. overwrite the old slot with zeros in place, fdatasync — the erasure of k_epoch.
// Opening picks the valid slot with the highest epoch and zeroes the other slot if it holds
// anything (finishing an interrupted step 2). No valid slot: WITNESS_ERR_SEAL_KEY.
//
// Caveat (as for journald's FSS): overwriting in place erases the old key's blocks on a
// filesystem that rewrites blocks in place (ext4, xfs). Copy-on-write filesystems (btrfs, zfs),
// snapshots, and SSD flash translation layers may keep the old blocks until they are reused.

const SLOT_MAGIC = utf8.encode('WSEA');
const SLOT_VERSION = 1;
const SLOT_BODY_SIZE = SLOT_MAGIC.length + 1 + EPOCH_SIZE + SEAL_KEY_SIZE; // 45
const SLOT_CHECKSUM_SIZE = 16;
const SLOT_SIZE = SLOT_BODY_SIZE + SLOT_CHECKSUM_SIZE; // 61
const SLOT_STRIDE = 4096;
const STATE_FILE_SIZE = 2 * SLOT_STRIDE;
const ZERO_SLOT = new Uint8Array(SLOT_SIZE);

function encodeSlot(epoch: number, key: Uint8Array): Uint8Array {
  const slot = new Uint8Array(SLOT_SIZE);
  slot.set(SLOT_MAGIC, 0);
  slot[4] = SLOT_VERSION;
  new DataView(slot.buffer).setBigUint64(5, BigInt(epoch));
  slot.set(key, 13);
  slot.set(createHash('sha256').update(slot.subarray(0, SLOT_BODY_SIZE)).digest().subarray(0, SLOT_CHECKSUM_SIZE), SLOT_BODY_SIZE);
  return slot;
}

type DecodedSlot = { ok: true; epoch: number; key: Uint8Array } | { ok: false; why: string };

function decodeSlot(slot: Uint8Array): DecodedSlot {
  if (slot.every((b) => b === 0)) return { ok: false, why: 'empty' };
  if (!equalBytes(slot.subarray(0, 4), SLOT_MAGIC)) return { ok: false, why: 'bad magic' };
  if (slot[4] !== SLOT_VERSION) return { ok: false, why: `unknown version ${slot[4]}` };
  const sum = createHash('sha256').update(slot.subarray(0, SLOT_BODY_SIZE)).digest().subarray(0, SLOT_CHECKSUM_SIZE);
  if (!equalBytes(sum, slot.subarray(SLOT_BODY_SIZE, SLOT_SIZE))) return { ok: false, why: 'checksum mismatch (torn or corrupted write)' };
  const epoch = new DataView(slot.buffer, slot.byteOffset).getBigUint64(5);
  if (epoch > BigInt(Number.MAX_SAFE_INTEGER)) return { ok: false, why: `epoch ${epoch} out of range` };
  return { ok: true, epoch: Number(epoch), key: slot.slice(13, 13 + SEAL_KEY_SIZE) };
}

function pwriteAll(fd: number, data: Uint8Array, position: number): void {
  let done = 0;
  while (done < data.length) done += writeSync(fd, data, done, data.length - done, position + done);
}

function preadSlot(fd: number, index: number): Uint8Array {
  const buf = new Uint8Array(SLOT_SIZE);
  let done = 0;
  while (done < SLOT_SIZE) {
    const n = readSync(fd, buf, done, SLOT_SIZE - done, index * SLOT_STRIDE + done);
    if (n === 0) break; // short file: the rest stays zero and the slot fails its checks
    done += n;
  }
  return buf;
}

function ioError(path: string, what: string, cause: unknown): WitnessError {
  return new WitnessError('WITNESS_ERR_IO', `${path}: ${what}: ${(cause as Error)?.message ?? String(cause)}`, { cause, details: { path } });
}

/**
 * File-backed sealing state in the broker's key directory: holds only the CURRENT epoch and key;
 * older keys are overwritten in place. The file descriptor stays open between seals.
 *
 * Two ways to use it:
 *   - seal(text): seal and advance in one call;
 *   - prepare(text), write the sealed checkpoint durably, then advance(): a crash between the two
 *     leaves the state one epoch behind the checkpoint log, which the ledger detects and finishes
 *     with advance() (shared/ledger/writer.ts). With seal(), a crash after it returns and before
 *     the checkpoint is written loses that epoch's key for good.
 */
export class SealState {
  readonly path: string;
  #fd: number;
  #epoch: number;
  #slot: number;
  #key: Uint8Array;

  private constructor(path: string, fd: number, epoch: number, slot: number, key: Uint8Array) {
    this.path = path;
    this.#fd = fd;
    this.#epoch = epoch;
    this.#slot = slot;
    this.#key = key;
  }

  /** Creates the state file (O_EXCL, mode 0600) at epoch 0 with k_0; fsyncs it and its directory. */
  static create(path: string, initialKey: Uint8Array): SealState {
    checkKey(initialKey, 'SealState.create');
    let fd: number;
    try {
      fd = openSync(path, constants.O_RDWR | constants.O_CREAT | constants.O_EXCL, 0o600);
    } catch (e) {
      throw ioError(path, 'cannot create the seal state (it must not exist yet)', e);
    }
    const image = new Uint8Array(STATE_FILE_SIZE);
    try {
      fchmodSync(fd, 0o600); // whatever the umask
      image.set(encodeSlot(0, initialKey), 0);
      pwriteAll(fd, image, 0);
      fsyncSync(fd); // a new file: size and data
      const dir = openSync(dirname(path), 'r');
      try {
        fsyncSync(dir); // the directory entry
      } finally {
        closeSync(dir);
      }
    } catch (e) {
      closeSync(fd);
      try {
        unlinkSync(path);
      } catch {
        // best effort: the error below says what failed
      }
      throw ioError(path, 'cannot write the seal state', e);
    } finally {
      image.fill(0);
    }
    return new SealState(path, fd, 0, 0, initialKey.slice());
  }

  /** Opens an existing state file. WITNESS_ERR_SEAL_KEY if it cannot be read or holds no valid slot. */
  static open(path: string): SealState {
    let fd: number;
    try {
      fd = openSync(path, 'r+');
    } catch (e) {
      throw new WitnessError('WITNESS_ERR_SEAL_KEY', `${path}: cannot open the seal state: ${(e as Error).message}`, { cause: e, details: { path } });
    }
    try {
      const raw = [preadSlot(fd, 0), preadSlot(fd, 1)];
      const slots = raw.map(decodeSlot);
      // The valid slot with the highest epoch (slot 0 on a tie, which advance() never produces).
      let best = -1;
      let chosen: { epoch: number; key: Uint8Array } | undefined;
      slots.forEach((s, i) => {
        if (s.ok && (chosen === undefined || s.epoch > chosen.epoch)) {
          best = i;
          chosen = s;
        }
      });
      for (const s of slots) if (s.ok && s !== chosen) s.key.fill(0);
      if (chosen === undefined) {
        for (const r of raw) r.fill(0);
        const why = slots.map((s, i) => `slot ${i}: ${s.ok ? 'ok' : s.why}`).join('; ');
        throw new WitnessError('WITNESS_ERR_SEAL_KEY', `${path}: no valid seal state (${why})`, { details: { path } });
      }
      // Finish an interrupted erasure: the other slot must hold nothing (an older key, or the
      // remains of a torn write).
      const other = 1 - best;
      const stale = !raw[other]!.every((b) => b === 0);
      for (const r of raw) r.fill(0);
      if (stale) {
        try {
          pwriteAll(fd, ZERO_SLOT, other * SLOT_STRIDE);
          fdatasyncSync(fd);
        } catch (e) {
          chosen.key.fill(0);
          throw ioError(path, 'cannot erase the stale slot of the seal state', e);
        }
      }
      return new SealState(path, fd, chosen.epoch, best, chosen.key);
    } catch (e) {
      closeSync(fd);
      throw e;
    }
  }

  /** The epoch of the current key: the log position of the next checkpoint to seal. */
  get epoch(): number {
    return this.#epoch;
  }

  #checkOpen(): void {
    if (this.#fd < 0) throw new WitnessError('WITNESS_ERR_LEDGER_CLOSED', `${this.path}: seal state used after close()`);
  }

  /** The seal of `text` at the current epoch, with the current key. Changes nothing. */
  prepare(text: string): NoteSignature {
    this.#checkOpen();
    return sealSignature(this.#key, this.#epoch, text);
  }

  /**
   * Evolves to epoch+1: the new (epoch+1, key) is made durable, then the old key is overwritten on
   * disk and zeroed in memory. WITNESS_ERR_IO if a write fails: before the commit point the state
   * is unchanged; after it the state has advanced and the old slot may still hold the old key
   * until the next advance() or open() erases it.
   */
  advance(): void {
    this.#checkOpen();
    if (this.#epoch >= Number.MAX_SAFE_INTEGER) throw new WitnessError('WITNESS_ERR_SEAL_KEY', `${this.path}: epoch limit reached`);
    const next = evolveSealKey(this.#key);
    const nextEpoch = this.#epoch + 1;
    const target = 1 - this.#slot;
    const slot = encodeSlot(nextEpoch, next);
    try {
      pwriteAll(this.#fd, slot, target * SLOT_STRIDE);
      fdatasyncSync(this.#fd);
    } catch (e) {
      next.fill(0);
      throw ioError(this.path, `cannot write epoch ${nextEpoch} of the seal state`, e);
    } finally {
      slot.fill(0);
    }
    // Committed: disk holds epoch+1. Now erase epoch's key, in memory and on disk.
    const old = this.#slot;
    this.#key.fill(0);
    this.#key = next;
    this.#epoch = nextEpoch;
    this.#slot = target;
    try {
      pwriteAll(this.#fd, ZERO_SLOT, old * SLOT_STRIDE);
      fdatasyncSync(this.#fd);
    } catch (e) {
      throw ioError(this.path, `advanced to epoch ${nextEpoch} but could not erase the key of epoch ${nextEpoch - 1}`, e);
    }
  }

  /**
   * Seals `text` with the current key, then evolves: the new (epoch+1, key) is made durable and the
   * old key is overwritten on disk and zeroed in memory BEFORE this returns the seal.
   */
  seal(text: string): NoteSignature {
    const sig = this.prepare(text);
    this.advance();
    return sig;
  }

  /** Closes the file and wipes the key from memory. Idempotent. */
  close(): void {
    if (this.#fd < 0) return;
    const fd = this.#fd;
    this.#fd = -1;
    this.#key.fill(0);
    closeSync(fd);
  }
}
