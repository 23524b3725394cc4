/**
 * Generic COSE_Sign1 (RFC 9052 §4.2) with EdDSA / Ed25519 (RFC 9053 §2.2, alg -8).
 *
 *   COSE_Sign1_Tagged = #6.18([protected: bstr .cbor header_map / bstr .size 0,
 *                              unprotected: header_map, payload: bstr / nil, signature: bstr])
 *   Sig_structure     = ["Signature1", body_protected, external_aad, payload]   (RFC 9052 §4.4)
 *
 * This layer reproduces the cose-wg/Examples byte for byte (test/shared/envelope/
 * cose-sign1.test.ts). The Witness device envelope (envelope.ts) builds on `sigStructure` and
 * `encodeCoseSign1` but has its own lean decoder. The signature is always made over the
 * protected bytes exactly as received: they are never re-encoded before verification.
 */
import { WitnessError, expectBytes } from '../errors.js';
import { encode, encodeHead, MT_ARRAY, MT_BYTES, Tagged, type CborKey, type CborValue } from '../cbor/encode.js';
import { decode } from '../cbor/decode.js';
import { nodeBackend, sign, verifyOrThrow, type Ed25519Backend } from '../keys/ed25519.js';
import { concatBytes } from '../bytes.js';

/** CBOR tag of COSE_Sign1 (RFC 9052 §2). */
export const COSE_SIGN1_TAG = 18;
/** Common header parameter labels (RFC 9052 §3.1). */
export const HEADER_ALG = 1;
export const HEADER_CRIT = 2;
export const HEADER_CONTENT_TYPE = 3;
export const HEADER_KID = 4;
/** EdDSA (RFC 9053 §2.2); Witness uses it with Ed25519 only. */
export const ALG_EDDSA = -8;

export type HeaderMap = ReadonlyMap<CborKey, CborValue>;

export interface CoseSign1 {
  /** The protected header exactly as carried in the message (empty for an empty header). */
  protectedBytes: Uint8Array;
  /** `protectedBytes` decoded. */
  protectedHeader: HeaderMap;
  unprotected: HeaderMap;
  /** null for a detached payload (RFC 9052 §2). */
  payload: Uint8Array | null;
  signature: Uint8Array;
}

const EMPTY = new Uint8Array(0);
// "Signature1" as a CBOR text string: 0x6A then the ten ASCII bytes.
const SIGNATURE1 = encode('Signature1');
const SIG_STRUCTURE_HEAD = encodeHead(MT_ARRAY, 4);
// Tag 18 then array(4): the first two bytes of every preferred-serialized COSE_Sign1_Tagged.
const SIGN1_PREFIX = Uint8Array.of(0xd2, 0x84);

function envelopeError(code: 'WITNESS_ERR_ENVELOPE_MALFORMED' | 'WITNESS_ERR_ENVELOPE_TAG', what: string): WitnessError {
  return new WitnessError(code, `COSE_Sign1: ${what}`);
}

/** `b` as a CBOR byte string item, without re-encoding it through the generic encoder. */
function bstrParts(b: Uint8Array): [Uint8Array, Uint8Array] {
  return [encodeHead(MT_BYTES, b.length), b];
}

/**
 * The protected header bytes for `header`: its deterministic encoding, or a zero-length string
 * for an empty map (RFC 9052 §3: "encoded as a zero-length byte string" when empty).
 */
export function encodeProtectedHeader(header: HeaderMap): Uint8Array {
  if (!(header instanceof Map)) throw new WitnessError('WITNESS_ERR_INVALID_ARGUMENT', 'protected header: expected a Map');
  return header.size === 0 ? EMPTY : encode(header);
}

/** Decodes protected header bytes: empty, or one CBOR map (RFC 9052 §3). */
export function decodeProtectedHeader(bytes: Uint8Array): HeaderMap {
  if (bytes.length === 0) return new Map();
  const h = decode(bytes);
  if (!(h instanceof Map)) throw envelopeError('WITNESS_ERR_ENVELOPE_MALFORMED', 'protected header is not a CBOR map');
  return h;
}

/**
 * ToBeSigned for COSE_Sign1 (RFC 9052 §4.4): the CBOR encoding of
 * ["Signature1", protectedBytes, externalAad, payload]. One copy of the payload, no re-encoding
 * of `protectedBytes`.
 */
export function sigStructure(protectedBytes: Uint8Array, payload: Uint8Array, externalAad: Uint8Array = EMPTY): Uint8Array {
  expectBytes(protectedBytes, undefined, 'protected header bytes');
  expectBytes(payload, undefined, 'payload');
  expectBytes(externalAad, undefined, 'external_aad');
  return concatBytes([SIG_STRUCTURE_HEAD, SIGNATURE1, ...bstrParts(protectedBytes), ...bstrParts(externalAad), ...bstrParts(payload)]);
}

/** Encodes a tagged COSE_Sign1 (preferred serialization: `D2 84 ...`). */
export function encodeCoseSign1(msg: {
  protectedBytes: Uint8Array;
  unprotected: HeaderMap;
  payload: Uint8Array | null;
  signature: Uint8Array;
}): Uint8Array {
  expectBytes(msg.protectedBytes, undefined, 'protected header bytes');
  expectBytes(msg.signature, undefined, 'signature');
  if (msg.payload !== null) expectBytes(msg.payload, undefined, 'payload');
  if (!(msg.unprotected instanceof Map)) throw new WitnessError('WITNESS_ERR_INVALID_ARGUMENT', 'unprotected header: expected a Map');
  return concatBytes([
    SIGN1_PREFIX,
    ...bstrParts(msg.protectedBytes),
    encode(msg.unprotected),
    ...(msg.payload === null ? [encode(null)] : bstrParts(msg.payload)),
    ...bstrParts(msg.signature),
  ]);
}

/**
 * Decodes a tagged COSE_Sign1 with the generic CBOR decoder. Throws WITNESS_ERR_CBOR_* for bad
 * CBOR, WITNESS_ERR_ENVELOPE_TAG without tag 18, WITNESS_ERR_ENVELOPE_MALFORMED for any other
 * shape. Makes no claim about the algorithm or the signature length: see `verifyCoseSign1`.
 */
export function decodeCoseSign1(bytes: Uint8Array): CoseSign1 {
  const item = decode(bytes);
  if (!(item instanceof Tagged) || item.tag !== COSE_SIGN1_TAG) throw envelopeError('WITNESS_ERR_ENVELOPE_TAG', 'expected CBOR tag 18');
  const a = item.value;
  if (!Array.isArray(a) || a.length !== 4) throw envelopeError('WITNESS_ERR_ENVELOPE_MALFORMED', 'expected an array of 4 items');
  const [protectedBytes, unprotected, payload, signature] = a as CborValue[];
  if (!(protectedBytes instanceof Uint8Array)) throw envelopeError('WITNESS_ERR_ENVELOPE_MALFORMED', 'protected header is not a byte string');
  if (!(unprotected instanceof Map)) throw envelopeError('WITNESS_ERR_ENVELOPE_MALFORMED', 'unprotected header is not a map');
  if (payload !== null && !(payload instanceof Uint8Array)) throw envelopeError('WITNESS_ERR_ENVELOPE_MALFORMED', 'payload is neither a byte string nor nil');
  if (!(signature instanceof Uint8Array)) throw envelopeError('WITNESS_ERR_ENVELOPE_MALFORMED', 'signature is not a byte string');
  return { protectedBytes, protectedHeader: decodeProtectedHeader(protectedBytes), unprotected, payload, signature };
}

/**
 * Signs `payload` with an Ed25519 seed and returns the tagged COSE_Sign1. The protected header
 * must name EdDSA (1: -8).
 */
export function signCoseSign1(
  input: { protectedHeader: HeaderMap; unprotected?: HeaderMap; payload: Uint8Array; seed: Uint8Array; externalAad?: Uint8Array },
  backend: Ed25519Backend = nodeBackend,
): Uint8Array {
  if (!(input.protectedHeader instanceof Map) || input.protectedHeader.get(HEADER_ALG) !== ALG_EDDSA) {
    throw new WitnessError('WITNESS_ERR_ENVELOPE_ALG', 'COSE_Sign1: the protected header must hold alg (1) = EdDSA (-8)');
  }
  const protectedBytes = encodeProtectedHeader(input.protectedHeader);
  const signature = sign(input.seed, sigStructure(protectedBytes, input.payload, input.externalAad), backend);
  return encodeCoseSign1({ protectedBytes, unprotected: input.unprotected ?? new Map(), payload: input.payload, signature });
}

/**
 * Verifies a decoded COSE_Sign1 under an Ed25519 public key, strictly (keys/ed25519.ts).
 * RFC 9052 §3.1: every label listed in crit must be understood by the caller (`understood`)
 * and present in the protected header, else WITNESS_ERR_ENVELOPE_CRIT. Throws
 * WITNESS_ERR_ENVELOPE_ALG unless alg is -8 in the protected header, _DETACHED for a nil payload,
 * _SIGNATURE_LENGTH unless the signature is 64 bytes, then the codes of `verifyOrThrow`.
 */
export function verifyCoseSign1(
  msg: CoseSign1,
  publicKey: Uint8Array,
  options: { externalAad?: Uint8Array; understood?: Iterable<CborKey> } = {},
  backend: Ed25519Backend = nodeBackend,
): void {
  const h = msg.protectedHeader;
  const crit = h.get(HEADER_CRIT);
  if (crit !== undefined) {
    if (!Array.isArray(crit) || crit.length === 0) throw envelopeError('WITNESS_ERR_ENVELOPE_MALFORMED', 'crit (2) must be a non-empty array');
    const known = new Set(options.understood ?? []);
    for (const label of crit as CborValue[]) {
      if ((typeof label !== 'number' && typeof label !== 'string') || !known.has(label) || !h.has(label)) {
        throw new WitnessError('WITNESS_ERR_ENVELOPE_CRIT', `COSE_Sign1: critical header ${JSON.stringify(label)} is not understood or not present (RFC 9052 §3.1)`, {
          details: { label: typeof label === 'number' || typeof label === 'string' ? label : null },
        });
      }
    }
  }
  if (h.get(HEADER_ALG) !== ALG_EDDSA) {
    throw new WitnessError('WITNESS_ERR_ENVELOPE_ALG', `COSE_Sign1: alg must be EdDSA (-8), got ${JSON.stringify(h.get(HEADER_ALG) ?? null)}`);
  }
  if (msg.payload === null) throw new WitnessError('WITNESS_ERR_ENVELOPE_DETACHED', 'COSE_Sign1: detached payload (nil) is not supported');
  if (msg.signature.length !== 64) {
    throw new WitnessError('WITNESS_ERR_ENVELOPE_SIGNATURE_LENGTH', `COSE_Sign1: signature is ${msg.signature.length} bytes, expected 64`, {
      details: { expected: 64, actual: msg.signature.length },
    });
  }
  verifyOrThrow(publicKey, sigStructure(msg.protectedBytes, msg.payload, options.externalAad), msg.signature, backend);
}
