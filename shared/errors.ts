/**
 * The one error type of Witness and the registry of its codes.
 *
 * Codes are stable and never reused (fastify's FST_ERR_* discipline): a code, once shipped, keeps
 * its meaning; a retired code stays in this table marked as such. Every code here is documented in
 * docs/errors.md, and test/shared/errors.test.ts checks the two agree.
 *
 * Each entry gives a one-line summary (what went wrong) and a hint (what to do about it). The
 * message of a thrown WitnessError says what and where; `details` holds the values that explain it
 * (expected vs actual, index, file, offset) for machines.
 */

export const ERROR_CODES = {
  // ── generic ────────────────────────────────────────────────────────────────────────────────
  WITNESS_ERR_INVALID_ARGUMENT: {
    summary: 'a function received an argument of the wrong type, length or range',
    hint: 'check the value named in the message against the documented parameter',
  },
  WITNESS_ERR_IO: {
    summary: 'a file could not be read or written',
    hint: 'check the path, its permissions and the free disk space',
  },
  WITNESS_ERR_USAGE: {
    summary: 'a command line could not be understood',
    hint: 'run the command with --help to see its arguments',
  },

  // ── CBOR (RFC 8949) ────────────────────────────────────────────────────────────────────────
  WITNESS_ERR_CBOR_MALFORMED: {
    summary: 'bytes are not well-formed CBOR (truncated, bad additional info, trailing bytes)',
    hint: 'the sender produced broken CBOR; re-encode the item',
  },
  WITNESS_ERR_CBOR_UNSUPPORTED: {
    summary: 'well-formed CBOR uses a feature Witness does not accept (indefinite length, floats, big integers)',
    hint: 'encode with definite lengths and integers only',
  },

  // ── keys and signatures (RFC 8032) ─────────────────────────────────────────────────────────
  WITNESS_ERR_KEY_INVALID: {
    summary: 'an Ed25519 key has the wrong length or encoding',
    hint: 'public keys are 32 bytes (base64url, 43 characters); private key files are written by `witness init` / `witness-agent init`',
  },
  WITNESS_ERR_KEY_WEAK: {
    summary: 'an Ed25519 public key is a small-order or non-canonical point',
    hint: 'such keys let one signature verify for many messages; generate a new key pair',
  },
  WITNESS_ERR_KEY_FILE: {
    summary: 'a key file is malformed or has unsafe permissions',
    hint: 'private key files must be mode 0600 and hold the PEM written by Witness',
  },
  WITNESS_ERR_SIGNATURE_INVALID: {
    summary: 'an Ed25519 signature does not verify under the given key',
    hint: 'the data was altered after signing, or it was signed by a different key',
  },
  WITNESS_ERR_SIGNATURE_NON_CANONICAL: {
    summary: 'an Ed25519 signature is not in canonical form (S >= L, or R not canonically encoded)',
    hint: 'strict RFC 8032 verification rejects malleable signatures; re-sign the data',
  },

  // ── envelope: COSE_Sign1 (RFC 9052) ────────────────────────────────────────────────────────
  WITNESS_ERR_ENVELOPE_MALFORMED: {
    summary: 'an envelope is not a COSE_Sign1 structure (wrong array shape or field types)',
    hint: 'envelopes are tagged COSE_Sign1: 18([protected bstr, unprotected map, payload bstr, signature bstr])',
  },
  WITNESS_ERR_ENVELOPE_TAG: {
    summary: 'an envelope does not carry CBOR tag 18 (COSE_Sign1)',
    hint: 'wrap the COSE_Sign1 array in tag 18',
  },
  WITNESS_ERR_ENVELOPE_ALG: {
    summary: 'an envelope names an algorithm other than EdDSA (-8), or none',
    hint: 'Witness envelopes are signed with Ed25519: protected header 1: -8',
  },
  WITNESS_ERR_ENVELOPE_SIGNATURE_LENGTH: {
    summary: 'an envelope signature is not 64 bytes',
    hint: 'an Ed25519 signature is exactly 64 bytes; the envelope was truncated or forged',
  },
  WITNESS_ERR_ENVELOPE_CRIT: {
    summary: 'an envelope marks a header critical (label 2) that Witness does not understand',
    hint: 'RFC 9052 §3.1: a recipient must reject unknown critical headers; remove it or upgrade Witness',
  },
  WITNESS_ERR_ENVELOPE_CLAIMS: {
    summary: 'an envelope lacks a Witness claim or carries one of the wrong type',
    hint: 'sign with the Witness agent library, which sets time, uncertainty, source, sequence, previous hash and topic',
  },
  WITNESS_ERR_ENVELOPE_DETACHED: {
    summary: 'an envelope has a detached (nil) payload',
    hint: 'Witness envelopes carry their payload inline',
  },

  // ── Merkle proofs (RFC 9162) ───────────────────────────────────────────────────────────────
  WITNESS_ERR_PROOF_INPUT: {
    summary: 'proof parameters are out of range (index >= size, size1 > size2, wrong hash length)',
    hint: 'check the index and tree sizes against the checkpoint the proof is for',
  },
  WITNESS_ERR_PROOF_LENGTH: {
    summary: 'a proof has the wrong number of hashes for its index and tree size',
    hint: 'the proof was truncated, padded or made for a different tree size',
  },
  WITNESS_ERR_PROOF_ROOT_MISMATCH: {
    summary: 'a proof does not lead to the expected root hash',
    hint: 'the leaf, the proof or the root was altered; details carry expected and computed roots',
  },

  // ── checkpoints (C2SP tlog-checkpoint, signed-note) and seals ─────────────────────────────
  WITNESS_ERR_NOTE_MALFORMED: {
    summary: 'a signed note does not follow the C2SP signed-note text format',
    hint: 'a note is body text, one blank line, then lines "— NAME BASE64"',
  },
  WITNESS_ERR_CHECKPOINT_MALFORMED: {
    summary: 'a checkpoint body does not follow the C2SP tlog-checkpoint format',
    hint: 'lines: origin, decimal tree size, base64 root hash, optional extension lines',
  },
  WITNESS_ERR_CHECKPOINT_UNSIGNED: {
    summary: 'a checkpoint carries no signature by the trusted key',
    hint: 'pass the broker public key with --key; a checkpoint signed only by other keys is not trusted',
  },
  WITNESS_ERR_CHECKPOINT_SIGNATURE: {
    summary: 'a checkpoint signature by the trusted key does not verify',
    hint: 'the checkpoint text was altered after signing',
  },
  WITNESS_ERR_SEAL_MISSING: {
    summary: 'a checkpoint carries no forward-secure seal',
    hint: 'every checkpoint written by Witness is sealed; a missing seal means it was rewritten',
  },
  WITNESS_ERR_SEAL_INVALID: {
    summary: 'a forward-secure seal does not verify under the epoch key derived from the sealing key',
    hint: 'the checkpoint was altered, or re-sealed with a later epoch key by someone who held the host',
  },
  WITNESS_ERR_SEAL_EPOCH: {
    summary: 'a seal names an epoch other than the checkpoint\'s place in the checkpoint log',
    hint: 'checkpoints were removed, inserted or re-sealed with a later key',
  },
  WITNESS_ERR_SEAL_KEY: {
    summary: 'a sealing key is malformed or the seal state file is unreadable',
    hint: 'the sealing key printed by `witness init` is 64 hex characters',
  },

  // ── ledger ─────────────────────────────────────────────────────────────────────────────────
  WITNESS_ERR_LEDGER_NOT_FOUND: {
    summary: 'no ledger in the given directory',
    hint: 'create one with `witness init --data DIR`, or point at the data directory of a broker',
  },
  WITNESS_ERR_LEDGER_LOCKED: {
    summary: 'another process is writing the ledger',
    hint: 'stop the other writer; if none runs, remove the stale lock file named in the message',
  },
  WITNESS_ERR_LEDGER_CLOSED: {
    summary: 'the ledger was used after close()',
    hint: 'open the ledger again',
  },
  WITNESS_ERR_LEDGER_RECORD_MALFORMED: {
    summary: 'a ledger line is not a JSON object with the required fields',
    hint: 'the segment was edited or corrupted at the index given',
  },
  WITNESS_ERR_FOLLOWER_CURSOR: {
    summary: 'a ledger follower\'s cursor file is damaged',
    hint: 'delete the file named to make the follower start again from record 0 (its target must accept records twice, as the InfluxDB mirror does), or restore it from a backup',
  },
  WITNESS_ERR_LEDGER_RECORD_INDEX: {
    summary: 'a record carries an index other than its position (deleted, inserted or reordered records)',
    hint: 'records were removed, inserted or swapped at the index given',
  },
  WITNESS_ERR_LEDGER_LEAF_HASH: {
    summary: 'a leaf hash in a segment index disagrees with the record it indexes',
    hint: 'the record or its index entry was altered',
  },
  WITNESS_ERR_LEDGER_ROOT_MISMATCH: {
    summary: 'the Merkle root recomputed from the records differs from a signed checkpoint',
    hint: 'records covered by the checkpoint were altered, removed, inserted or reordered',
  },
  WITNESS_ERR_LEDGER_TRUNCATED: {
    summary: 'a signed checkpoint covers more records than the ledger holds',
    hint: 'records were cut from the tail of the ledger',
  },
  WITNESS_ERR_LEDGER_SEGMENT: {
    summary: 'segment files are missing, overlapping or out of sequence',
    hint: 'a segment was deleted, renamed or added without a prune record',
  },
  WITNESS_ERR_LEDGER_CHECKPOINT_LOG: {
    summary: 'the checkpoint log has gaps, reordering, or disagrees with the checkpoint records in the ledger',
    hint: 'checkpoints were deleted or inserted',
  },
  WITNESS_ERR_LEDGER_TORN_TAIL: {
    summary: 'the last record of the ledger is incomplete (a crash during a write)',
    hint: 'opening the ledger for writing cuts it off and appends a recovery record',
  },
  WITNESS_ERR_LEDGER_FULL: {
    summary: 'the disk is full or the write failed; the record was not stored',
    hint: 'free disk space; appends resume once writes succeed',
  },
  WITNESS_ERR_LEDGER_RECORD_TOO_LARGE: {
    summary: 'a record exceeds the maximum line size of the ledger',
    hint: 'store large payloads by hash only (audit level metadata)',
  },

  // ── identity: connect token, device registry (broker/identity, shared/token) ──────────────
  WITNESS_ERR_TOKEN_MALFORMED: {
    summary: 'a connect token is not a Witness proof-of-possession token (COSE_Sign1 over {1: client id, 2: audience, 3: issued-at, 4: nonce})',
    hint: 'connect with username witness-token/v1 and a password made by createConnectToken (the Witness agent does this)',
  },
  WITNESS_ERR_DEVICE_ID_INVALID: {
    summary: 'a device id is not 1 to 64 characters from A-Z a-z 0-9 . _ : -',
    hint: 'device ids are MQTT client ids and key names; choose one that fits the rule',
  },
  WITNESS_ERR_DEVICE_UNKNOWN: {
    summary: 'the device is not in the device registry',
    hint: 'list the registered devices with `witness device list --data DIR`',
  },
  WITNESS_ERR_DEVICE_KEY_UNKNOWN: {
    summary: 'the device has no key with the given key hash',
    hint: 'list the device\'s keys and their hashes with `witness device list --data DIR`',
  },
  WITNESS_ERR_DEVICE_KEY_REVOKED: {
    summary: 'a revoked key cannot be added again',
    hint: 'a revocation is final; create a new key pair with `witness-agent init` and add that key',
  },
  WITNESS_ERR_DEVICE_KEY_IN_USE: {
    summary: 'the public key is already registered for another device',
    hint: 'one key proves one device; create a separate key pair for each device',
  },
  WITNESS_ERR_REGISTRY_MALFORMED: {
    summary: 'the device registry file (devices.json) is not a valid witness-devices/v1 document',
    hint: 'fix the field named in the message or restore the file; `witness device` commands write it correctly',
  },
  WITNESS_ERR_REGISTRY_LOCKED: {
    summary: 'another process is changing the device registry',
    hint: 'run the command again; if no `witness device` command is running, remove the stale lock file named in the message',
  },
  WITNESS_ERR_REGISTRY_CONFLICT: {
    summary: 'the device registry file changed on disk after it was loaded; the save was refused so that no change is lost',
    hint: 'load the registry again and repeat the change (the `witness device` commands do this under a lock)',
  },

  // ── broker configuration / access control (broker/config, broker/acl, broker/policy) ──────
  WITNESS_ERR_CONFIG_INVALID: {
    summary: 'the broker configuration file has problems (YAML syntax, unknown keys, wrong types or ranges, bad topic filters, missing TLS files)',
    hint: 'each problem is listed as FILE:LINE:COLUMN with a hint; fix them all, then start the broker again',
  },
  WITNESS_ERR_PASSWORD_HASH_MALFORMED: {
    summary: 'a password hash is not of the form scrypt$N$r$p$SALT$KEY within the accepted parameters',
    hint: 'create the hash with hashPassword() from broker/config/password.ts and paste it as auth.users[].passwordHash',
  },

  // ── agent clock (agent/clock) ───────────────────────────────────────────────────────────────
  WITNESS_ERR_CLOCK_CLOSED: {
    summary: 'a trusted clock was asked to resync after close()',
    hint: 'start a new clock with TrustedClock.start(); now() still answers after close(), from the last sync',
  },

  // ── agent outbox (agent/outbox) ───────────────────────────────────────────────────────────
  WITNESS_ERR_OUTBOX_FULL: {
    summary: 'the outbox holds maxBytes of unacknowledged envelopes (overflow policy reject-new); the message was not queued and its sequence number not used',
    hint: 'let the agent deliver (is the broker reachable?), raise outbox maxBytes, or choose overflow drop-oldest (drops are recorded)',
  },
  WITNESS_ERR_OUTBOX_ENTRY_TOO_LARGE: {
    summary: 'an envelope is larger than the whole outbox (maxBytes); it was not queued',
    hint: 'raise outbox maxBytes above the largest message, or send smaller payloads',
  },
  WITNESS_ERR_OUTBOX_DISK_FULL: {
    summary: 'the disk holding the outbox is full (ENOSPC or EDQUOT); the message was not queued, nothing half-written was left behind',
    hint: 'free disk space; queueing resumes with the next call, and the refused sequence numbers are given out again',
  },
  WITNESS_ERR_OUTBOX_LOCKED: {
    summary: 'another process has the outbox open',
    hint: 'stop the other agent using this directory; if none runs, remove the stale lock file named in the message',
  },
  WITNESS_ERR_OUTBOX_CLOSED: {
    summary: 'the outbox was used after close()',
    hint: 'open the outbox again',
  },
  WITNESS_ERR_OUTBOX_CORRUPT: {
    summary: 'the outbox log is damaged other than at its tail (a segment before the last, or sequence numbers going backwards)',
    hint: 'move the outbox directory aside and start again (sequence numbers then restart at 0 and the broker reports replays); keep the damaged copy for inspection',
  },
  WITNESS_ERR_OUTBOX_FAILED: {
    summary: 'an fdatasync of the outbox failed, or a failed write could not be cut back; the outbox accepts nothing more',
    hint: 'check the disk, then restart the agent: reopening the outbox recovers its last durable state',
  },

  // ── simulator scenarios (simulator/scenario.ts) ─────────────────────────────────────────────
  WITNESS_ERR_SCENARIO_INVALID: {
    summary: 'a simulator scenario file has problems (YAML syntax, unknown keys, wrong types or ranges, bad durations, id patterns or topics, duplicate device ids, unknown incident types or fleets)',
    hint: 'each problem is listed as FILE:LINE:COLUMN with a hint; simulator/scenarios/*.yaml are worked examples',
  },

  // ── simulator run file (simulator/run-file.ts, docs/FORMATS.md §9) ──────────────────────────
  WITNESS_ERR_RUN_FILE_FORMAT: {
    summary: 'a file is not a simulator run file: its first line is not a witness-sim-run/v1 header (not JSON, another format, or a newer version)',
    hint: 'pass the file written by `witness sim run --record FILE` or `witness sim replay --record FILE`; a run file of a newer version needs a newer Witness',
  },
  WITNESS_ERR_RUN_FILE_MALFORMED: {
    summary: 'a line of a simulator run file is not a JSON object, has an unknown kind `k`, or lacks a required field (a truncated last line is tolerated)',
    hint: 'the file was edited or damaged at the FILE:LINE given; record the run again, or cut the file before that line',
  },
} as const satisfies Record<string, { summary: string; hint: string }>;

export type WitnessErrorCode = keyof typeof ERROR_CODES;

export interface WitnessErrorOptions {
  /** The lower-level error that caused this one. */
  cause?: unknown;
  /** Values that explain the error (expected/actual, index, path). Must be JSON-serialisable. */
  details?: Record<string, unknown>;
}

export class WitnessError extends Error {
  readonly code: WitnessErrorCode;
  readonly details: Record<string, unknown>;

  constructor(code: WitnessErrorCode, message: string, options: WitnessErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'WitnessError';
    this.code = code;
    this.details = options.details ?? {};
  }

  /** The registry's hint: what the reader can do about it. */
  get hint(): string {
    return ERROR_CODES[this.code].hint;
  }

  toJSON(): Record<string, unknown> {
    return { code: this.code, message: this.message, hint: this.hint, details: this.details };
  }
}

export function isWitnessError(e: unknown, code?: WitnessErrorCode): e is WitnessError {
  return e instanceof WitnessError && (code === undefined || e.code === code);
}

/** Throws WITNESS_ERR_INVALID_ARGUMENT unless `value` is a Uint8Array of `length` bytes. */
export function expectBytes(value: unknown, length: number | undefined, name: string): Uint8Array {
  if (!(value instanceof Uint8Array)) {
    throw new WitnessError('WITNESS_ERR_INVALID_ARGUMENT', `${name}: expected Uint8Array, got ${describe(value)}`);
  }
  if (length !== undefined && value.length !== length) {
    throw new WitnessError(
      'WITNESS_ERR_INVALID_ARGUMENT',
      `${name}: expected Uint8Array of length ${length}, got ${value.length}`,
      { details: { expected: length, actual: value.length } },
    );
  }
  return value;
}

function describe(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'array';
  return typeof v === 'object' ? (v.constructor?.name ?? 'object') : typeof v;
}
