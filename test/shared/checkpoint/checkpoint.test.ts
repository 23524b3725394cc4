import { describe, test } from 'node:test';
import { strict as assert } from 'node:assert';
import fc from 'fast-check';
import { isWitnessError, type WitnessErrorCode } from '../../../shared/errors.js';
import { generateSeed, publicKeyFromSeed } from '../../../shared/keys/ed25519.js';
import { ed25519NoteSigner, ed25519NoteVerifier, parseNote, signNote, type NoteVerifier } from '../../../shared/checkpoint/note.js';
import { formatCheckpoint, openCheckpoint, parseCheckpoint, signCheckpoint, type Checkpoint } from '../../../shared/checkpoint/checkpoint.js';
import { SealVerifier, generateSealKey, sealSignature } from '../../../shared/checkpoint/seal.js';

function throwsCode(fn: () => unknown, code: WitnessErrorCode, message?: RegExp): void {
  assert.throws(fn, (e: unknown) => {
    assert.ok(isWitnessError(e), `expected a WitnessError, got ${String(e)}`);
    assert.equal(e.code, code, e.message);
    if (message) assert.match(e.message, message);
    return true;
  });
}

const b64 = (s: string): Uint8Array => new Uint8Array(Buffer.from(s, 'base64'));
const ROOT = 'CsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=';

describe('checkpoint: format', () => {
  // The example of https://c2sp.org/tlog-checkpoint.
  test('the C2SP tlog-checkpoint example, byte for byte', () => {
    const cp: Checkpoint = { origin: 'example.com/behind-the-sofa', size: 20852163, rootHash: b64(ROOT), extensions: [] };
    const text = 'example.com/behind-the-sofa\n20852163\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n';
    assert.equal(formatCheckpoint(cp), text);
    assert.deepEqual(parseCheckpoint(text), cp);
  });

  test('the spec example note parses to the same checkpoint (structure only: its key is not published)', () => {
    const note =
      'example.com/behind-the-sofa\n20852163\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n\n' +
      '— example.com/behind-the-sofa Az3grlgtzPICa5OS8npVmf1Myq/5IZniMp+ZJurmRDeOoRDe4URYN7u5/Zhcyv2q1gGzGku9nTo+zyWE+xeMcTOAYQ8=\n';
    const cp = parseCheckpoint(parseNote(note).text);
    assert.equal(cp.size, 20852163);
    assert.equal(Buffer.from(cp.rootHash).toString('base64'), ROOT);
  });

  test('extension lines follow the root, one per line', () => {
    const cp: Checkpoint = { origin: 'o', size: 0, rootHash: new Uint8Array(32), extensions: ['witness/v1 epoch 0', 'x'] };
    assert.equal(formatCheckpoint(cp), 'o\n0\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\nwitness/v1 epoch 0\nx\n');
  });

  test('round trip (property)', () => {
    const CONTROL = /[\u0000-\u001F]/g;
    const line = fc
      .string({ unit: 'binary', minLength: 1, maxLength: 30 })
      .map((s) => s.replace(CONTROL, ''))
      .filter((s) => s.length > 0);
    const cp = fc
      .record({
        origin: line,
        size: fc.maxSafeNat(),
        rootHash: fc.uint8Array({ minLength: 32, maxLength: 32 }),
        extensions: fc.array(line, { maxLength: 4 }),
      })
      .map((r) => ({ ...r })); // plain objects: fc.record's have a null prototype
    fc.assert(
      fc.property(cp, (c) => {
        const text = formatCheckpoint(c);
        assert.deepEqual(parseCheckpoint(text), c);
        assert.equal(formatCheckpoint(parseCheckpoint(text)), text);
      }),
      { numRuns: 500 },
    );
  });

  test('formatting refuses what parsing would refuse (WITNESS_ERR_INVALID_ARGUMENT)', () => {
    const ok: Checkpoint = { origin: 'o', size: 1, rootHash: new Uint8Array(32), extensions: [] };
    throwsCode(() => formatCheckpoint({ ...ok, origin: '' }), 'WITNESS_ERR_INVALID_ARGUMENT');
    throwsCode(() => formatCheckpoint({ ...ok, origin: 'a\nb' }), 'WITNESS_ERR_INVALID_ARGUMENT');
    throwsCode(() => formatCheckpoint({ ...ok, size: -1 }), 'WITNESS_ERR_INVALID_ARGUMENT');
    throwsCode(() => formatCheckpoint({ ...ok, size: 1.5 }), 'WITNESS_ERR_INVALID_ARGUMENT');
    throwsCode(() => formatCheckpoint({ ...ok, size: 2 ** 53 }), 'WITNESS_ERR_INVALID_ARGUMENT');
    throwsCode(() => formatCheckpoint({ ...ok, rootHash: new Uint8Array(31) }), 'WITNESS_ERR_INVALID_ARGUMENT');
    throwsCode(() => formatCheckpoint({ ...ok, extensions: [''] }), 'WITNESS_ERR_INVALID_ARGUMENT');
  });
});

describe('checkpoint: malformed texts are WITNESS_ERR_CHECKPOINT_MALFORMED', () => {
  const text = (size: string, root = ROOT, rest = ''): string => `example.com/log\n${size}\n${root}\n${rest}`;

  const cases: Array<[string, string, RegExp]> = [
    ['size with a leading zero', text('012'), /line 2 \(tree size\)/],
    ['size "00"', text('00'), /line 2/],
    ['negative size', text('-1'), /line 2/],
    ['size with a plus sign', text('+1'), /line 2/],
    ['size with a space', text(' 1'), /line 2/],
    ['size in hex', text('0x10'), /line 2/],
    ['size 2^53 (above 2^53 - 1)', text('9007199254740992'), /2\^53/],
    ['size of 17 digits', text('10000000000000000'), /line 2/],
    ['root hash of 31 bytes', text('1', Buffer.alloc(31, 7).toString('base64')), /31 bytes/],
    ['root hash of 33 bytes', text('1', Buffer.alloc(33, 7).toString('base64')), /33 bytes/],
    ['root hash in base64url', text('1', Buffer.alloc(32, 0xfb).toString('base64url') + '='), /line 3 \(root hash\)/],
    ['root hash without padding', text('1', ROOT.slice(0, -1)), /line 3/],
    ['root hash with unused bits set', text('1', ROOT.slice(0, -2) + 'J='), /non-canonical/],
    ['only two lines', 'example.com/log\n1\n', /at least 3 lines/],
    ['empty origin', `\n1\n${ROOT}\n`, /line 1 \(origin\)/],
    ['empty extension line', text('1', ROOT, '\n'), /line 4 \(extension\)/],
    ['no final newline', text('1').slice(0, -1), /newline/],
    ['a control character', text('1', ROOT, 'a\rb\n'), /control/],
  ];
  for (const [what, t, message] of cases) {
    test(what, () => throwsCode(() => parseCheckpoint(t), 'WITNESS_ERR_CHECKPOINT_MALFORMED', message));
  }

  test('the largest safe size parses', () => {
    assert.equal(parseCheckpoint(text('9007199254740991')).size, Number.MAX_SAFE_INTEGER);
    assert.equal(parseCheckpoint(text('0')).size, 0);
  });

  test('an origin with spaces or a trailing space is accepted (tlog-checkpoint: clients MUST NOT assume its format)', () => {
    assert.equal(parseCheckpoint(`my log \n1\n${ROOT}\n`).origin, 'my log ');
  });
});

describe('checkpoint: sign and open', () => {
  const seed = generateSeed();
  const signer = ed25519NoteSigner('example.com/log', seed);
  const verifier = ed25519NoteVerifier('example.com/log', publicKeyFromSeed(seed));
  const cp: Checkpoint = { origin: 'example.com/log', size: 42, rootHash: new Uint8Array(32).fill(9), extensions: ['witness/v1 0 1700000000000'] };

  test('open returns the checkpoint that was signed', () => {
    const { checkpoint, note } = openCheckpoint(signCheckpoint(cp, [signer]), [verifier]);
    assert.deepEqual(checkpoint, cp);
    assert.equal(note.verified.length, 1);
  });

  test('verification comes first: a signed text that is not a checkpoint is CHECKPOINT_MALFORMED, an unsigned one is never parsed', () => {
    throwsCode(() => openCheckpoint(signNote('not a checkpoint\n', [signer]), [verifier]), 'WITNESS_ERR_CHECKPOINT_MALFORMED');
    const stranger = ed25519NoteSigner('example.com/log', generateSeed());
    throwsCode(() => openCheckpoint(signNote('not a checkpoint\n', [stranger]), [verifier]), 'WITNESS_ERR_CHECKPOINT_UNSIGNED');
  });

  test('a checkpoint signed by another key with the same name: WITNESS_ERR_CHECKPOINT_UNSIGNED', () => {
    const stranger = ed25519NoteSigner('example.com/log', generateSeed());
    throwsCode(() => openCheckpoint(signCheckpoint(cp, [stranger]), [verifier]), 'WITNESS_ERR_CHECKPOINT_UNSIGNED');
  });
});

// ── One-bit mutations. Every bit of the note's UTF-8 is flipped in turn; mutations that are not
// UTF-8 any more are skipped (a note is a string). Each mutant must be refused with a WitnessError.
describe('checkpoint: one-bit mutations', () => {
  const logSeed = generateSeed();
  const witnessSeed = generateSeed();
  const log = ed25519NoteSigner('example.com/log', logSeed);
  const witness = ed25519NoteSigner('witness.example/w1', witnessSeed);
  const logV = ed25519NoteVerifier('example.com/log', publicKeyFromSeed(logSeed));
  const witnessV = ed25519NoteVerifier('witness.example/w1', publicKeyFromSeed(witnessSeed));
  const cp: Checkpoint = { origin: 'example.com/log', size: 1234567, rootHash: new Uint8Array(32).map((_, i) => i * 7), extensions: ['witness/v1 3 1700000000000'] };

  function* mutants(note: string): Generator<string> {
    const bytes = Buffer.from(note, 'utf8');
    const decoder = new TextDecoder('utf-8', { fatal: true });
    for (let i = 0; i < bytes.length * 8; i++) {
      const m = Buffer.from(bytes);
      m[i >> 3]! ^= 0x80 >> (i & 7);
      let s: string;
      try {
        s = decoder.decode(m);
      } catch {
        continue;
      }
      yield s;
    }
  }

  test('a note signed by the log: every mutant fails to open', () => {
    const note = signCheckpoint(cp, [log]);
    assert.deepEqual(openCheckpoint(note, [logV]).checkpoint, cp); // the original opens
    let tried = 0;
    const seen = new Map<string, number>();
    for (const m of mutants(note)) {
      tried++;
      let opened: Checkpoint | undefined;
      try {
        opened = openCheckpoint(m, [logV]).checkpoint;
      } catch (e) {
        assert.ok(isWitnessError(e), `mutant threw a non-WitnessError: ${String(e)}`);
        seen.set(e.code, (seen.get(e.code) ?? 0) + 1);
        continue;
      }
      assert.fail(`mutant opened: ${JSON.stringify(m)} → ${JSON.stringify(opened)}`);
    }
    assert.ok(tried > 1000, `only ${tried} mutants`);
    // Every failure mode is exercised: the body (signature), the signature line (unsigned / malformed).
    for (const code of ['WITNESS_ERR_CHECKPOINT_SIGNATURE', 'WITNESS_ERR_CHECKPOINT_UNSIGNED', 'WITNESS_ERR_NOTE_MALFORMED'] as const) {
      assert.ok((seen.get(code) ?? 0) > 0, `no mutant gave ${code}: ${JSON.stringify([...seen])}`);
    }
  });

  test('a cosigned and sealed note: no mutant passes the full check (log + witness + seal)', () => {
    const sealKey = generateSealKey();
    const text = formatCheckpoint(cp);
    const note = signNote(text, [log, witness], [sealSignature(sealKey, 0, text)]);
    const accepted = (n: string): boolean => {
      try {
        const { checkpoint, note: opened } = openCheckpoint(n, [logV, witnessV]);
        if (opened.verified.length !== 2) return false;
        new SealVerifier(sealKey).check(0, parseNote(n));
        assert.deepEqual(checkpoint, cp, 'accepted a different checkpoint');
        return true;
      } catch (e) {
        if (e instanceof assert.AssertionError) throw e;
        assert.ok(isWitnessError(e), `non-WitnessError: ${String(e)}`);
        return false;
      }
    };
    assert.ok(accepted(note));
    let tried = 0;
    for (const m of mutants(note)) {
      tried++;
      assert.equal(accepted(m), false, `mutant accepted: ${JSON.stringify(m)}`);
    }
    assert.ok(tried > 2000, `only ${tried} mutants`);
  });
});
