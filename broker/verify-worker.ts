/**
 * The worker side of the envelope verification pool (broker/verify-pool.ts): strict Ed25519
 * verification (shared/keys/ed25519.ts `verifyOrThrow`, node:crypto) of a packed batch of jobs.
 * Stateless: a batch can be re-run on another worker (or on the main thread) with the same result.
 *
 * Batch layout (one ArrayBuffer, transferred, so a batch costs one postMessage and no copy):
 *
 *   per job:  publicKey (32 B) | signature (64 B) | u32 LE message length | message (Sig_structure)
 *
 * Result: one u16 per job: 0 = the signature verifies, i + 1 = verifyOrThrow threw the WitnessError
 * whose code is VERIFY_CODES[i], 0xFFFF = it threw something else (never expected).
 *
 * This module runs its message loop only when started by VerifyPool (workerData.witnessVerifyWorker);
 * imported on the main thread it only provides `verifyPacked` and the code table.
 */
import { isMainThread, parentPort, workerData } from 'node:worker_threads';
import { verifyOrThrow } from '../shared/keys/ed25519.js';
import { ERROR_CODES, WitnessError } from '../shared/errors.js';

export const PUBLIC_KEY_BYTES = 32;
export const SIGNATURE_BYTES = 64;
/** Fixed bytes per packed job besides the message. */
export const JOB_OVERHEAD = PUBLIC_KEY_BYTES + SIGNATURE_BYTES + 4;

/** WitnessError codes, indexed as in the result array (the same table on both threads). */
export const VERIFY_CODES: readonly string[] = Object.keys(ERROR_CODES);
const CODE_INDEX = new Map(VERIFY_CODES.map((c, i) => [c, i + 1]));
export const VERIFY_OK = 0;
export const VERIFY_OTHER_ERROR = 0xffff;

/** Verifies one job; returns its result code. */
export function verifyCode(publicKey: Uint8Array, message: Uint8Array, signature: Uint8Array): number {
  try {
    verifyOrThrow(publicKey, message, signature);
    return VERIFY_OK;
  } catch (e) {
    return e instanceof WitnessError ? (CODE_INDEX.get(e.code) ?? VERIFY_OTHER_ERROR) : VERIFY_OTHER_ERROR;
  }
}

/** Verifies the `n` jobs packed in `buf` (layout above). */
export function verifyPacked(buf: ArrayBuffer, n: number): Uint16Array {
  const out = new Uint16Array(n);
  const bytes = new Uint8Array(buf);
  const view = new DataView(buf);
  let o = 0;
  for (let i = 0; i < n; i++) {
    const pk = bytes.subarray(o, o + PUBLIC_KEY_BYTES);
    const sig = bytes.subarray(o + PUBLIC_KEY_BYTES, o + PUBLIC_KEY_BYTES + SIGNATURE_BYTES);
    const len = view.getUint32(o + PUBLIC_KEY_BYTES + SIGNATURE_BYTES, true);
    const start = o + JOB_OVERHEAD;
    out[i] = verifyCode(pk, bytes.subarray(start, start + len), sig);
    o = start + len;
  }
  return out;
}

export interface BatchRequest {
  id: number;
  buf: ArrayBuffer;
  n: number;
  /** Transport measurement only (bench): reply with all-zero codes without verifying. */
  dry?: boolean;
}
export interface BatchReply {
  id: number;
  codes: Uint16Array;
}

if (!isMainThread && parentPort && (workerData as { witnessVerifyWorker?: boolean } | null)?.witnessVerifyWorker) {
  const port = parentPort;
  port.on('message', (m: BatchRequest | { crash: true }) => {
    if ('crash' in m) throw new Error('verify worker: crash requested (test hook)');
    const codes = m.dry ? new Uint16Array(m.n) : verifyPacked(m.buf, m.n);
    const reply: BatchReply = { id: m.id, codes };
    port.postMessage(reply, [codes.buffer as ArrayBuffer]);
  });
}
