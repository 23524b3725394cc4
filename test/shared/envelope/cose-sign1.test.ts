import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import {
  decodeCoseSign1,
  encodeCoseSign1,
  encodeProtectedHeader,
  sigStructure,
  signCoseSign1,
  verifyCoseSign1,
  type HeaderMap,
} from '../../../shared/envelope/index.js';
import { decode, encode, Tagged, type CborKey, type CborValue } from '../../../shared/cbor/index.js';
import { nodeBackend, sign, verifyOrThrow, type Ed25519Backend } from '../../../shared/keys/ed25519.js';
import { nobleBackend } from '../../../shared/keys/ed25519-noble.js';
import { WitnessError, type WitnessErrorCode } from '../../../shared/errors.js';

const BACKENDS: Ed25519Backend[] = [nodeBackend, nobleBackend];
const hex = (b: Uint8Array): string => Buffer.from(b).toString('hex');
const unhex = (h: string): Uint8Array => new Uint8Array(Buffer.from(h, 'hex'));
const utf8 = (s: string): Uint8Array => new TextEncoder().encode(s);

function throwsCode(fn: () => unknown, code: WitnessErrorCode): WitnessError {
  try {
    fn();
  } catch (e) {
    assert.ok(e instanceof WitnessError, `expected a WitnessError, got ${String(e)}`);
    assert.equal(e.code, code, e.message);
    return e;
  }
  assert.fail(`expected ${code}, nothing was thrown`);
}

// cose-wg/Examples, eddsa-examples/ (https://github.com/cose-wg/Examples), public domain;
// copied unmodified into test/fixtures/vectors/cose/eddsa-examples (see its README).
const VECTORS = new URL('../../../../test/fixtures/vectors/cose/eddsa-examples/', import.meta.url);

interface JsonKey {
  kid: string;
  crv: string;
  x_hex: string;
  d_hex: string;
}
type JsonHeader = Record<string, string | number>;
interface Vector {
  title: string;
  input: {
    plaintext: string;
    sign0?: { key: JsonKey; protected?: JsonHeader; unprotected?: JsonHeader };
    sign?: { protected?: JsonHeader; signers: { key: JsonKey; protected?: JsonHeader; unprotected?: JsonHeader }[] };
  };
  intermediates: { ToBeSign_hex?: string; signers?: { ToBeSign_hex: string }[] };
  output: { cbor: string };
}

function load(name: string): Vector {
  return JSON.parse(readFileSync(new URL(`${name}.json`, VECTORS), 'utf8')) as Vector;
}

/** The examples' JSON header names → COSE labels and values (RFC 9052 §3.1, RFC 9053 §2.2). */
function headerMap(h: JsonHeader | undefined): Map<CborKey, CborValue> {
  const m = new Map<CborKey, CborValue>();
  for (const [k, v] of Object.entries(h ?? {})) {
    if (k === 'alg') {
      assert.equal(v, 'EdDSA');
      m.set(1, -8);
    } else if (k === 'ctyp') m.set(3, v);
    else if (k === 'kid') m.set(4, utf8(String(v)));
    else assert.fail(`header ${k} not mapped`);
  }
  return m;
}

describe('cose-wg/Examples eddsa-sig-01: COSE_Sign1, Ed25519 — reproduced byte for byte', () => {
  const v = load('eddsa-sig-01');
  const s0 = v.input.sign0!;
  assert.equal(s0.key.crv, 'Ed25519');
  const payload = utf8(v.input.plaintext);
  const protectedHeader = headerMap(s0.protected);
  const unprotected = headerMap(s0.unprotected);
  const cbor = v.output.cbor.toLowerCase();

  test('ToBeSigned (Sig_structure, RFC 9052 §4.4)', () => {
    const protectedBytes = encodeProtectedHeader(protectedHeader);
    assert.equal(hex(protectedBytes), 'a201270300');
    assert.equal(hex(sigStructure(protectedBytes, payload)), v.intermediates.ToBeSign_hex!.toLowerCase());
  });
  for (const b of BACKENDS) {
    test(`signing with d reproduces output.cbor on ${b.name}`, () => {
      assert.equal(hex(signCoseSign1({ protectedHeader, unprotected, payload, seed: unhex(s0.key.d_hex) }, b)), cbor);
    });
    test(`output.cbor verifies under x on ${b.name}`, () => {
      verifyCoseSign1(decodeCoseSign1(unhex(cbor)), unhex(s0.key.x_hex), {}, b);
    });
  }
  test('decode then encode gives output.cbor back', () => {
    const msg = decodeCoseSign1(unhex(cbor));
    assert.deepEqual(msg.protectedHeader, protectedHeader);
    assert.deepEqual(msg.unprotected, unprotected);
    assert.deepEqual(msg.payload, payload);
    assert.equal(hex(encodeCoseSign1(msg)), cbor);
  });
  // Bytes 8..12 of output.cbor are the unprotected header {4: h'3131'}: not signed (RFC 9052 §4.2).
  const UNPROTECTED = [8, 13];
  test('flipping any single bit outside the unprotected header makes decode or verify fail (both backends)', () => {
    const bytes = unhex(cbor);
    assert.equal(hex(bytes.subarray(UNPROTECTED[0], UNPROTECTED[1])), 'a104423131');
    const pub = unhex(s0.key.x_hex);
    for (let bit = 0; bit < bytes.length * 8; bit++) {
      const at = bit >> 3;
      if (at >= UNPROTECTED[0]! && at < UNPROTECTED[1]!) continue;
      const m = bytes.slice();
      m[at]! ^= 1 << (bit & 7);
      for (const b of BACKENDS) {
        assert.throws(
          () => verifyCoseSign1(decodeCoseSign1(m), pub, {}, b),
          (e: unknown) => e instanceof WitnessError,
          `bit ${bit} on ${b.name}`,
        );
      }
    }
  });
  test('a flip inside the unprotected header can go unnoticed — why Witness requires it empty', () => {
    const m = unhex(cbor);
    m[12]! ^= 1; // kid h'3131' -> h'3130'
    const msg = decodeCoseSign1(m);
    assert.deepEqual(msg.unprotected.get(4), utf8('10'));
    verifyCoseSign1(msg, unhex(s0.key.x_hex));
  });
});

describe('cose-wg/Examples eddsa-01: COSE_Sign (tag 98), Ed25519 — rebuilt with the CBOR codec', () => {
  // Witness produces COSE_Sign1 only, so there is no COSE_Sign API; this vector still checks the
  // codec and Ed25519 against an independent implementation: the multi-signer Sig_structure is
  // ["Signature", body_protected, sign_protected, external_aad, payload] (RFC 9052 §4.4).
  const v = load('eddsa-01');
  const signer = v.input.sign!.signers[0]!;
  assert.equal(signer.key.crv, 'Ed25519');
  const payload = utf8(v.input.plaintext);
  const bodyProtected = encodeProtectedHeader(headerMap(v.input.sign!.protected));
  const signProtected = encodeProtectedHeader(headerMap(signer.protected));
  const tbs = encode(['Signature', bodyProtected, signProtected, new Uint8Array(0), payload]);

  test('ToBeSigned', () => assert.equal(hex(tbs), v.intermediates.signers![0]!.ToBeSign_hex.toLowerCase()));
  for (const b of BACKENDS) {
    test(`signature and full CBOR on ${b.name}`, () => {
      const sig = sign(unhex(signer.key.d_hex), tbs, b);
      const out = encode(new Tagged(98, [bodyProtected, new Map(), payload, [[signProtected, headerMap(signer.unprotected), sig]]]));
      assert.equal(hex(out), v.output.cbor.toLowerCase());
      verifyOrThrow(unhex(signer.key.x_hex), tbs, sig, b);
    });
  }
});

describe('cose-wg/Examples eddsa-sig-02 and eddsa-02: Ed448 — structure only', () => {
  // Witness signs with Ed25519 only (DESIGN §2.1) and ships no Ed448, so these two are not signed
  // or verified. Their ToBeSigned and CBOR do not depend on the curve, and are checked.
  test('eddsa-sig-02 (COSE_Sign1): ToBeSigned from the decoded message; decode/encode round trip', () => {
    const v = load('eddsa-sig-02');
    assert.equal(v.input.sign0!.key.crv, 'Ed448');
    const msg = decodeCoseSign1(unhex(v.output.cbor));
    assert.deepEqual(msg.protectedHeader, headerMap(v.input.sign0!.protected));
    assert.equal(hex(sigStructure(msg.protectedBytes, msg.payload!)), v.intermediates.ToBeSign_hex!.toLowerCase());
    assert.equal(hex(encodeCoseSign1(msg)), v.output.cbor.toLowerCase());
    assert.equal(msg.signature.length, 114, 'an Ed448 signature');
    throwsCode(() => verifyCoseSign1(msg, unhex(v.input.sign0!.key.x_hex).subarray(0, 32)), 'WITNESS_ERR_ENVELOPE_SIGNATURE_LENGTH');
  });
  test('eddsa-02 (COSE_Sign): ToBeSigned with an empty body header; decode/encode round trip', () => {
    const v = load('eddsa-02');
    const signer = v.input.sign!.signers[0]!;
    assert.equal(signer.key.crv, 'Ed448');
    const tbs = encode(['Signature', encodeProtectedHeader(headerMap(v.input.sign!.protected)), encodeProtectedHeader(headerMap(signer.protected)), new Uint8Array(0), utf8(v.input.plaintext)]);
    assert.equal(hex(tbs), v.intermediates.signers![0]!.ToBeSign_hex.toLowerCase());
    assert.equal(hex(encode(decode(unhex(v.output.cbor)))), v.output.cbor.toLowerCase());
  });
});

describe('generic COSE_Sign1: failure modes', () => {
  const seed = unhex('9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60');
  const pub = unhex('d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a');
  const payload = utf8('payload');
  const signed = (h: HeaderMap): Uint8Array => {
    const protectedBytes = encodeProtectedHeader(h);
    return encodeCoseSign1({ protectedBytes, unprotected: new Map(), payload, signature: sign(seed, sigStructure(protectedBytes, payload)) });
  };

  test('not tag 18 is ENVELOPE_TAG', () => {
    throwsCode(() => decodeCoseSign1(encode(new Tagged(17, [new Uint8Array(0), new Map(), payload, new Uint8Array(64)]))), 'WITNESS_ERR_ENVELOPE_TAG');
    throwsCode(() => decodeCoseSign1(encode([new Uint8Array(0), new Map(), payload, new Uint8Array(64)])), 'WITNESS_ERR_ENVELOPE_TAG');
  });
  test('wrong shape is ENVELOPE_MALFORMED', () => {
    throwsCode(() => decodeCoseSign1(encode(new Tagged(18, [new Uint8Array(0), new Map(), payload]))), 'WITNESS_ERR_ENVELOPE_MALFORMED');
    throwsCode(() => decodeCoseSign1(encode(new Tagged(18, ['x', new Map(), payload, new Uint8Array(64)]))), 'WITNESS_ERR_ENVELOPE_MALFORMED');
    throwsCode(() => decodeCoseSign1(encode(new Tagged(18, [encode([1]), new Map(), payload, new Uint8Array(64)]))), 'WITNESS_ERR_ENVELOPE_MALFORMED');
  });
  test('an unknown critical header is ENVELOPE_CRIT unless the caller understands it', () => {
    const msg = decodeCoseSign1(signed(new Map<CborKey, CborValue>([[1, -8], [2, [-70000]], [-70000, 1]])));
    throwsCode(() => verifyCoseSign1(msg, pub), 'WITNESS_ERR_ENVELOPE_CRIT');
    verifyCoseSign1(msg, pub, { understood: [-70000] });
  });
  test('a critical header that is not present is ENVELOPE_CRIT (RFC 9052 §3.1)', () => {
    const msg = decodeCoseSign1(signed(new Map<CborKey, CborValue>([[1, -8], [2, [-70000]]])));
    throwsCode(() => verifyCoseSign1(msg, pub, { understood: [-70000] }), 'WITNESS_ERR_ENVELOPE_CRIT');
  });
  test('alg other than -8, or none, is ENVELOPE_ALG', () => {
    throwsCode(() => verifyCoseSign1(decodeCoseSign1(signed(new Map([[1, -7]]))), pub), 'WITNESS_ERR_ENVELOPE_ALG');
    throwsCode(() => verifyCoseSign1(decodeCoseSign1(signed(new Map())), pub), 'WITNESS_ERR_ENVELOPE_ALG');
    throwsCode(() => signCoseSign1({ protectedHeader: new Map([[1, -7]]), payload, seed }), 'WITNESS_ERR_ENVELOPE_ALG');
  });
  test('a detached payload is ENVELOPE_DETACHED', () => {
    const protectedBytes = encodeProtectedHeader(new Map([[1, -8]]));
    const msg = decodeCoseSign1(encodeCoseSign1({ protectedBytes, unprotected: new Map(), payload: null, signature: new Uint8Array(64) }));
    assert.equal(msg.payload, null);
    throwsCode(() => verifyCoseSign1(msg, pub), 'WITNESS_ERR_ENVELOPE_DETACHED');
  });
  test('external_aad is part of what is signed', () => {
    const aad = utf8('aad');
    const bytes = signCoseSign1({ protectedHeader: new Map([[1, -8]]), payload, seed, externalAad: aad });
    verifyCoseSign1(decodeCoseSign1(bytes), pub, { externalAad: aad });
    throwsCode(() => verifyCoseSign1(decodeCoseSign1(bytes), pub), 'WITNESS_ERR_SIGNATURE_INVALID');
  });
});
