import { describe, test } from 'node:test';
import { strict as assert } from 'node:assert';
import fc from 'fast-check';
import { isWitnessError, type WitnessErrorCode } from '../../../shared/errors.js';
import { generateSeed, publicKeyFromSeed } from '../../../shared/keys/ed25519.js';
import { parseVerifierKey } from '../../../shared/keys/key-id.js';
import {
  MAX_NOTE_BYTES,
  ed25519NoteSigner,
  ed25519NoteVerifier,
  formatNote,
  openNote,
  parseNote,
  signNote,
  type Note,
  type NoteVerifier,
} from '../../../shared/checkpoint/note.js';

function throwsCode(fn: () => unknown, code: WitnessErrorCode, message?: RegExp): void {
  assert.throws(fn, (e: unknown) => {
    assert.ok(isWitnessError(e), `expected a WitnessError, got ${String(e)}`);
    assert.equal(e.code, code, e.message);
    if (message) assert.match(e.message, message);
    return true;
  });
}

const hex = (b: Uint8Array): string => Buffer.from(b).toString('hex');

// ── Vectors of golang.org/x/mod sumdb/note (note_test.go: TestSign, TestOpen), the reference
// implementation of C2SP signed-note: https://github.com/golang/mod/blob/master/sumdb/note/note_test.go
const GO_SIGNER_KEY = 'PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz';
const PETER_VKEY = 'PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW';
const ENOCH_VKEY = 'EnochRoot+af0cfe78+ATtqJ7zOtqQtYqOo0CpvDXNlMhV3HeJDpjrASKGLWdop';
const GO_TEXT = "If you think cryptography is the answer to your problem,\nthen you don't know what your problem is.\n";
const PETER_SIG = '— PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n';
const ENOCH_SIG = '— EnochRoot rwz+eBzmZa0SO3NbfRGzPCpDckykFXSdeX+MNtCOXm2/5n2tiOHp+vAF1aGrQ5ovTG01oOTGwnWLox33WWd1RvMc+QQ=\n';

function verifierFromVkey(vkey: string): NoteVerifier {
  const k = parseVerifierKey(vkey);
  return ed25519NoteVerifier(k.name, k.publicKey);
}
const peter = verifierFromVkey(PETER_VKEY);
const enoch = verifierFromVkey(ENOCH_VKEY);

/** The seed in a Go `PRIVATE+KEY+name+hash+base64(0x01 || seed)` signer key. */
function goSeed(skey: string): Uint8Array {
  const raw = Buffer.from(skey.split('+').slice(4).join('+'), 'base64');
  assert.equal(raw[0], 0x01);
  return new Uint8Array(raw.subarray(1));
}

describe('note: reference vectors (golang.org/x/mod sumdb/note)', () => {
  test('signing the Go example text reproduces the Go note byte for byte', () => {
    const signer = ed25519NoteSigner('PeterNeumann', goSeed(GO_SIGNER_KEY));
    assert.equal(hex(signer.keyHash), 'c74f20a3');
    assert.equal(signNote(GO_TEXT, [signer]), GO_TEXT + '\n' + PETER_SIG);
  });

  test('a new signature by the same key replaces an existing one (Go: TestSign)', () => {
    const signer = ed25519NoteSigner('PeterNeumann', goSeed(GO_SIGNER_KEY));
    const stale = { name: 'PeterNeumann', keyHash: Uint8Array.of(0xc7, 0x4f, 0x20, 0xa3), signature: Uint8Array.of(1, 2, 3) };
    assert.equal(signNote(GO_TEXT, [signer], [stale]), GO_TEXT + '\n' + PETER_SIG);
  });

  test('one key known: its signature verifies, the other is kept unverified (Go: TestOpen)', () => {
    const opened = openNote(GO_TEXT + '\n' + PETER_SIG + ENOCH_SIG, [peter]);
    assert.equal(opened.text, GO_TEXT);
    assert.deepEqual(opened.verified.map((s) => `${s.name}+${hex(s.keyHash)}`), ['PeterNeumann+c74f20a3']);
    assert.deepEqual(opened.unverified.map((s) => `${s.name}+${hex(s.keyHash)}`), ['EnochRoot+af0cfe78']);
  });

  test('both keys known: both verify', () => {
    const opened = openNote(GO_TEXT + '\n' + PETER_SIG + ENOCH_SIG, [peter, enoch]);
    assert.deepEqual(opened.verified.map((s) => s.name), ['PeterNeumann', 'EnochRoot']);
    assert.deepEqual(opened.unverified, []);
  });

  test('repeated lines are reported once', () => {
    const opened = openNote(GO_TEXT + '\n' + PETER_SIG + PETER_SIG + ENOCH_SIG + ENOCH_SIG, [peter]);
    assert.equal(opened.verified.length, 1);
    assert.equal(opened.unverified.length, 1);
  });

  test('no known key: WITNESS_ERR_CHECKPOINT_UNSIGNED', () => {
    throwsCode(() => openNote(GO_TEXT + '\n' + PETER_SIG + ENOCH_SIG, []), 'WITNESS_ERR_CHECKPOINT_UNSIGNED');
  });

  test('a corrupted signature of a known key: WITNESS_ERR_CHECKPOINT_SIGNATURE (Go: "invalid signature")', () => {
    const bad = PETER_SIG.slice(0, 60) + 'ABCD' + PETER_SIG.slice(60);
    throwsCode(() => openNote(GO_TEXT + '\n' + bad, [peter]), 'WITNESS_ERR_CHECKPOINT_SIGNATURE', /line 4/);
  });

  test('an altered text: WITNESS_ERR_CHECKPOINT_SIGNATURE', () => {
    throwsCode(() => openNote(GO_TEXT.replace('cryptography', 'cryptographY') + '\n' + PETER_SIG, [peter]), 'WITNESS_ERR_CHECKPOINT_SIGNATURE');
  });

  test('Go bad messages are WITNESS_ERR_NOTE_MALFORMED', () => {
    const bad = [
      GO_TEXT,
      GO_TEXT + '\n',
      GO_TEXT + '\n' + PETER_SIG.slice(0, -1),
      '\x01' + GO_TEXT + '\n' + PETER_SIG,
      GO_TEXT + '\n' + '— Bad Name x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=',
      GO_TEXT + '\n' + PETER_SIG + 'Unexpected line.\n',
      GO_TEXT + '\n' + PETER_SIG.repeat(101),
    ];
    for (const msg of bad) throwsCode(() => openNote(msg, [peter]), 'WITNESS_ERR_NOTE_MALFORMED');
  });
});

// ── Examples of the C2SP specs themselves. Their public keys are not published, so these are
// checked for structure only.
describe('note: C2SP spec examples', () => {
  test('signed-note example (https://c2sp.org/signed-note): a text with a blank line inside', () => {
    const note =
      'Ognuno sta solo sul cuor della terra\ntrafitto da un raggio di sole:\n\ned è subito sera.\n\n' +
      '— quasimodo.example/salvatore NnugSzTjtVAewIS+Z/iJhUPeFDkO/5QQ2i5ddnGITLlC+EhfLW9oJKONrMouFSQU0xMcXxj99ihAQwaqP3ZekRwNtIc=\n';
    const n = parseNote(note);
    assert.equal(n.text, 'Ognuno sta solo sul cuor della terra\ntrafitto da un raggio di sole:\n\ned è subito sera.\n');
    assert.equal(n.signatures.length, 1);
    assert.equal(n.signatures[0]!.name, 'quasimodo.example/salvatore');
    assert.equal(hex(n.signatures[0]!.keyHash), '367ba04b');
    assert.equal(n.signatures[0]!.signature.length, 64);
    assert.equal(formatNote(n), note);
  });

  test('tlog-cosignature example (https://c2sp.org/tlog-cosignature): the cosignature is kept, its timestamp intact', () => {
    const note =
      'example.com/behind-the-sofa\n20852163\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n\n' +
      '— example.com/behind-the-sofa Az3grlgtzPICa5OS8npVmf1Myq/5IZniMp+ZJurmRDeOoRDe4URYN7u5/Zhcyv2q1gGzGku9nTo+zyWE+xeMcTOAYQ8=\n' +
      '— witness.example.com/w1 jWbPPwAAAABkGFDLEZMHwSRaJNiIDoe9DYn/zXcrtPHeolMI5OWXEhZCB9dlrDJsX3b2oyin1nPZqhf5nNo0xUe+mbIUBkBIfZ+qnA==\n';
    const n = parseNote(note);
    assert.deepEqual(n.signatures.map((s) => s.name), ['example.com/behind-the-sofa', 'witness.example.com/w1']);
    const cosig = n.signatures[1]!.signature;
    assert.equal(cosig.length, 8 + 64); // timestamped_signature: u64 timestamp || Ed25519 signature
    // The spec's signed-message example gives "time 1679315147".
    assert.equal(new DataView(cosig.buffer, cosig.byteOffset).getBigUint64(0), 1679315147n);
    assert.equal(formatNote(n), note);
  });
});

describe('note: round trip (property)', () => {
  const CONTROL = /[\u0000-\u0009\u000B-\u001F]/g;
  const line = fc.string({ unit: 'binary', maxLength: 40 }).map((s) => s.replace(CONTROL, '').replace(/\n/g, ''));
  const name = fc
    .string({ unit: 'binary', minLength: 1, maxLength: 20 })
    .map((s) => s.replace(/[\p{White_Space}+\u0000-\u001F]/gu, ''))
    .filter((s) => s.length > 0);
  // fc.record builds null-prototype objects; spread them into plain ones for deepStrictEqual.
  const sig = fc
    .record({
      name,
      keyHash: fc.uint8Array({ minLength: 4, maxLength: 4 }),
      signature: fc.uint8Array({ minLength: 1, maxLength: 80 }),
    })
    .map((r) => ({ ...r }));
  const note: fc.Arbitrary<Note> = fc
    .record({
      text: fc.array(line, { minLength: 1, maxLength: 8 }).map((ls) => ls.join('\n') + '\n'),
      signatures: fc.array(sig, { minLength: 1, maxLength: 6 }),
    })
    .map((r) => ({ ...r }));

  test('parseNote(formatNote(n)) deep-equals n', () => {
    fc.assert(
      fc.property(note, (n) => {
        assert.deepEqual(parseNote(formatNote(n)), n);
      }),
      { numRuns: 500 },
    );
  });

  test('any string either fails with NOTE_MALFORMED or formats back to itself', () => {
    const piece = fc.constantFrom('a', 'é', '\n', '\n\n', '— ', '—', ' ', '+', 'AAAA', 'AAAAAAA=', 'AAAAAA==', 'AAAAAB==', '\t', '\u2013 ', 'k');
    fc.assert(
      fc.property(fc.array(piece, { maxLength: 30 }).map((p) => p.join('')), (s) => {
        let n: Note;
        try {
          n = parseNote(s);
        } catch (e) {
          assert.ok(isWitnessError(e, 'WITNESS_ERR_NOTE_MALFORMED'), String(e));
          return;
        }
        assert.equal(formatNote(n), s);
      }),
      { numRuns: 2000 },
    );
  });
});

describe('note: malformed notes are WITNESS_ERR_NOTE_MALFORMED', () => {
  const good = signNote('hello\n', [ed25519NoteSigner('example.com/k', generateSeed())]);
  const sigLine = good.slice(good.indexOf('— '));

  const cases: Array<[string, string, RegExp?]> = [
    ['missing blank line', 'hello\n' + sigLine, /blank line/],
    ['no signatures', 'hello\n\n', /no signature lines/],
    ['bad base64', 'hello\n\n— example.com/k !!!!\n', /base64/],
    ['base64 without padding', 'hello\n\n— example.com/k AAAAAAA\n', /base64/],
    ['non-canonical base64 (unused bits set)', 'hello\n\n— example.com/k AAAAAB==\n', /base64/],
    ['short signature: key ID only', 'hello\n\n— example.com/k AAAAAA==\n', /4-byte key ID/],
    ['note not ending in a newline', good.slice(0, -1), /newline/],
    ['hyphen instead of em dash', 'hello\n\n' + sigLine.replace('—', '-')],
    ['en dash instead of em dash', 'hello\n\n' + sigLine.replace('—', '\u2013')],
    ['em dash without space', 'hello\n\n' + sigLine.replace('— ', '—')],
    ['key name with +', 'hello\n\n' + sigLine.replace('example.com/k', 'a+b'), /key name/],
    ['empty key name', 'hello\n\n' + sigLine.replace('example.com/k', ''), /key name/],
    ['carriage return in the text', 'hel\rlo\n\n' + sigLine, /control/],
    ['tab in the text', 'hel\tlo\n\n' + sigLine, /control/],
    ['lone surrogate', 'hel\uD800lo\n\n' + sigLine, /UTF-8/],
    ['a non-signature line after the signatures', good + 'trailer\n'],
    ['more than 100 signatures', 'hello\n\n' + sigLine.repeat(101), /100/],
  ];
  for (const [what, note, message] of cases) {
    test(what, () => throwsCode(() => parseNote(note), 'WITNESS_ERR_NOTE_MALFORMED', message));
  }

  test('a note over 1 MiB', () => {
    throwsCode(() => parseNote('a'.repeat(MAX_NOTE_BYTES) + '\n\n' + sigLine), 'WITNESS_ERR_NOTE_MALFORMED', /larger/);
  });

  test('the error names the line', () => {
    const note = 'a\nb\n\n' + sigLine + '— x !!!!\n';
    assert.throws(
      () => parseNote(note),
      (e: unknown) => isWitnessError(e, 'WITNESS_ERR_NOTE_MALFORMED') && e.details['line'] === 5 && /line 5/.test(e.message),
    );
  });

  test('the good note itself parses (the cases above differ from it only in the fault)', () => {
    assert.equal(parseNote(good).text, 'hello\n');
  });
});

describe('note: unknown signatures', () => {
  const seed = generateSeed();
  const signer = ed25519NoteSigner('example.com/log', seed);
  const verifier = ed25519NoteVerifier('example.com/log', publicKeyFromSeed(seed));

  test('a signature sharing only the name (not the key ID) with a verifier is ignored, not rejected', () => {
    const other = ed25519NoteSigner('example.com/log', generateSeed()); // same name, other key
    const note = signNote('text\n', [signer, other]);
    const opened = openNote(note, [verifier]);
    assert.equal(opened.verified.length, 1);
    assert.equal(opened.unverified.length, 1);
    assert.deepEqual(opened.unverified[0]!.keyHash, other.keyHash);
  });

  test('a line with the verifier key ID but another name is ignored', () => {
    const renamed = { name: 'example.com/other', keyHash: signer.keyHash, signature: new Uint8Array(64) };
    const note = signNote('text\n', [signer], [renamed]);
    assert.equal(openNote(note, [verifier]).unverified.length, 1);
  });

  test('a note signed only by unknown keys is WITNESS_ERR_CHECKPOINT_UNSIGNED', () => {
    const note = signNote('text\n', [ed25519NoteSigner('example.com/log', generateSeed())]);
    throwsCode(() => openNote(note, [verifier]), 'WITNESS_ERR_CHECKPOINT_UNSIGNED');
  });

  test('a second, bad line of a known key rejects the note even after a good one', () => {
    const good = signNote('text\n', [signer]);
    const sig = parseNote(good).signatures[0]!;
    const flipped = { ...sig, signature: sig.signature.slice() };
    flipped.signature[10]! ^= 1;
    const note = formatNote({ text: 'text\n', signatures: [sig, flipped] });
    throwsCode(() => openNote(note, [verifier]), 'WITNESS_ERR_CHECKPOINT_SIGNATURE', /line 4/);
  });

  test('two verifiers with the same name and key ID: WITNESS_ERR_INVALID_ARGUMENT', () => {
    throwsCode(() => openNote(signNote('text\n', [signer]), [verifier, verifier]), 'WITNESS_ERR_INVALID_ARGUMENT', /ambiguous/);
  });
});

describe('note: cosignatures', () => {
  const logSeed = generateSeed();
  const witnessSeed = generateSeed();
  const log = ed25519NoteSigner('example.com/log', logSeed);
  const witness = ed25519NoteSigner('witness.example/w1', witnessSeed);
  const logV = ed25519NoteVerifier('example.com/log', publicKeyFromSeed(logSeed));
  const witnessV = ed25519NoteVerifier('witness.example/w1', publicKeyFromSeed(witnessSeed));
  const text = 'example.com/log\n3\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n';

  const signed = signNote(text, [log]);
  const parsed = parseNote(signed);
  const cosigned = signNote(parsed.text, [witness], parsed.signatures);

  test('cosigning keeps the log signature first and adds the cosignature', () => {
    assert.ok(cosigned.startsWith(signed));
    assert.deepEqual(parseNote(cosigned).signatures.map((s) => s.name), ['example.com/log', 'witness.example/w1']);
  });

  test('a verifier of the log alone keeps the cosignature as unverified', () => {
    const opened = openNote(cosigned, [logV]);
    assert.deepEqual(opened.verified.map((s) => s.name), ['example.com/log']);
    assert.deepEqual(opened.unverified.map((s) => s.name), ['witness.example/w1']);
  });

  test('a verifier of both verifies both', () => {
    assert.deepEqual(openNote(cosigned, [logV, witnessV]).verified.map((s) => s.name), ['example.com/log', 'witness.example/w1']);
  });

  test('the witness alone can open the note', () => {
    assert.deepEqual(openNote(cosigned, [witnessV]).verified.map((s) => s.name), ['witness.example/w1']);
  });

  test('a broken cosignature: ignored by a log-only verifier, rejected by one that knows the witness', () => {
    const n = parseNote(cosigned);
    n.signatures[1]!.signature[0]! ^= 0x80;
    const broken = formatNote(n);
    assert.equal(openNote(broken, [logV]).verified.length, 1);
    throwsCode(() => openNote(broken, [logV, witnessV]), 'WITNESS_ERR_CHECKPOINT_SIGNATURE', /witness\.example\/w1/);
  });
});

describe('note: signing inputs', () => {
  const signer = ed25519NoteSigner('example.com/k', generateSeed());

  test('a text without a final newline is refused (WITNESS_ERR_INVALID_ARGUMENT)', () => {
    throwsCode(() => signNote('abc', [signer]), 'WITNESS_ERR_INVALID_ARGUMENT', /newline/);
  });

  test('an empty text is refused', () => {
    throwsCode(() => signNote('', [signer]), 'WITNESS_ERR_INVALID_ARGUMENT');
  });

  test('a text with a control character is refused', () => {
    throwsCode(() => signNote('a\rb\n', [signer]), 'WITNESS_ERR_INVALID_ARGUMENT', /control/);
  });

  test('no signers and no existing signatures: nothing to write', () => {
    throwsCode(() => signNote('abc\n', []), 'WITNESS_ERR_INVALID_ARGUMENT', /signatures/);
  });

  test('a key name with a space is refused when the signer is made', () => {
    throwsCode(() => ed25519NoteSigner('a b', generateSeed()), 'WITNESS_ERR_INVALID_ARGUMENT');
  });

  test('a weak public key is refused when the verifier is made', () => {
    const identity = new Uint8Array(32);
    identity[0] = 1; // y = 1: the identity point, small order
    throwsCode(() => ed25519NoteVerifier('example.com/k', identity), 'WITNESS_ERR_KEY_WEAK');
  });

  test('the signer and verifier agree on the key hash (C2SP: SHA-256(name || 0x0A || 0x01 || key)[:4])', () => {
    const seed = generateSeed();
    const s = ed25519NoteSigner('example.com/k', seed);
    const v = ed25519NoteVerifier('example.com/k', publicKeyFromSeed(seed));
    assert.deepEqual(s.keyHash, v.keyHash);
  });

  test('a verifier rejects a signature of the wrong length instead of throwing', () => {
    const seed = generateSeed();
    const v = ed25519NoteVerifier('example.com/k', publicKeyFromSeed(seed));
    assert.equal(v.verify(new Uint8Array(1), new Uint8Array(63)), false);
  });
});
