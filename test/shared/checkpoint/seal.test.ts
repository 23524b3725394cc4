import { after, describe, test } from 'node:test';
import { strict as assert } from 'node:assert';
import { createHash, createHmac, hkdfSync } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { isWitnessError, type WitnessErrorCode } from '../../../shared/errors.js';
import { generateSeed, publicKeyFromSeed } from '../../../shared/keys/ed25519.js';
import { ed25519NoteSigner, ed25519NoteVerifier, formatNote, parseNote, signNote, type Note, type NoteSignature } from '../../../shared/checkpoint/note.js';
import { formatCheckpoint, openCheckpoint } from '../../../shared/checkpoint/checkpoint.js';
import {
  SEAL_KEY_SIZE,
  SEAL_NAME,
  SealState,
  SealVerifier,
  evolveSealKey,
  generateSealKey,
  parseSealKey,
  sealSignature,
} from '../../../shared/checkpoint/seal.js';

function throwsCode(fn: () => unknown, code: WitnessErrorCode, message?: RegExp): void {
  assert.throws(fn, (e: unknown) => {
    assert.ok(isWitnessError(e), `expected a WitnessError, got ${String(e)}`);
    assert.equal(e.code, code, e.message);
    if (message) assert.match(e.message, message);
    return true;
  });
}

const hex = (b: Uint8Array): string => Buffer.from(b).toString('hex');

// ── The chain recomputed with node:crypto (OpenSSL), independently of the module's @noble/hashes.
const nodeEvolve = (k: Uint8Array): Uint8Array => new Uint8Array(hkdfSync('sha256', k, Buffer.alloc(0), 'witness/seal/v1/evolve', 32));
const nodeMacKey = (k: Uint8Array): Uint8Array => new Uint8Array(hkdfSync('sha256', k, Buffer.alloc(0), 'witness/seal/v1/mac', 32));
function nodeSealLine(k: Uint8Array, epoch: number, text: string): string {
  const e = Buffer.alloc(8);
  e.writeBigUInt64BE(BigInt(epoch));
  const mac = createHmac('sha256', nodeMacKey(k)).update(Buffer.concat([Buffer.from('witness/seal/v1\n'), e, Buffer.from(text, 'utf8')])).digest();
  const id = createHash('sha256').update(Buffer.concat([Buffer.from('witness-seal\n'), Buffer.of(0xff), Buffer.from('witness/seal/v1')])).digest().subarray(0, 4);
  return `— witness-seal ${Buffer.concat([id, e, mac]).toString('base64')}\n`;
}
function sealLine(sig: NoteSignature): string {
  return formatNote({ text: 'x\n', signatures: [sig] }).slice('x\n\n'.length);
}

describe('seal: known answers', () => {
  const k0 = new Uint8Array(32).map((_, i) => i);
  const text = 'example.com/log\n1\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n';

  // Pinned from node:crypto (hkdfSync / createHmac) so that docs/FORMATS.md can quote them.
  test('k_1..k_3 from k_0 = 00 01 .. 1f', () => {
    const k1 = evolveSealKey(k0);
    const k2 = evolveSealKey(k1);
    const k3 = evolveSealKey(k2);
    assert.equal(hex(k1), 'a6db628ea18604201ada371d31c4fe7a04a6031b43326e63e787629e02b699a7');
    assert.equal(hex(k2), '672f9a32342651ab24a9eff322a57592d38642f0cd9863e04ea018c557573581');
    assert.equal(hex(k3), '2c2067d920730bab6a77a02d1321f34f6a8752d2dd00894f514466c7002f9081');
  });

  test('the seal line of epoch 2', () => {
    const k2 = evolveSealKey(evolveSealKey(k0));
    const sig = sealSignature(k2, 2, text);
    assert.equal(sig.name, SEAL_NAME);
    assert.equal(hex(sig.keyHash), '2ecdb256');
    assert.equal(sig.signature.length, 40);
    assert.equal(sealLine(sig), '— witness-seal Ls2yVgAAAAAAAAACqSnN8JHsr+BWMf+4rWG09Qbvc/Sy9DxvbHSJRAcGpAs=\n');
  });

  test('noble and node:crypto agree along a chain of random keys', () => {
    let k: Uint8Array = generateSealKey();
    let kNode: Uint8Array = k.slice();
    for (let e = 0; e < 20; e++) {
      const t = `log\n${e}\n${Buffer.alloc(32, e).toString('base64')}\n`;
      assert.equal(sealLine(sealSignature(k, e, t)), nodeSealLine(kNode, e, t));
      k = evolveSealKey(k);
      kNode = nodeEvolve(kNode);
      assert.equal(hex(k), hex(kNode));
    }
  });

  test('the MAC itself covers the epoch number, not just the key', () => {
    const mac = (e: number): string => hex(sealSignature(k0, e, text).signature.subarray(8));
    assert.notEqual(mac(0), mac(1));
  });
});

describe('seal: keys', () => {
  test('parseSealKey accepts 64 hex digits, either case', () => {
    const k = generateSealKey();
    assert.deepEqual(parseSealKey(hex(k)), k);
    assert.deepEqual(parseSealKey(hex(k).toUpperCase()), k);
  });

  for (const [what, s] of [
    ['63 digits', 'a'.repeat(63)],
    ['65 digits', 'a'.repeat(65)],
    ['a non-hex digit', 'g' + 'a'.repeat(63)],
    ['a trailing newline', 'a'.repeat(64) + '\n'],
    ['empty', ''],
  ] as const) {
    test(`parseSealKey refuses ${what}: WITNESS_ERR_SEAL_KEY`, () => throwsCode(() => parseSealKey(s), 'WITNESS_ERR_SEAL_KEY'));
  }

  test('a key of 31 bytes: WITNESS_ERR_SEAL_KEY', () => {
    throwsCode(() => evolveSealKey(new Uint8Array(31)), 'WITNESS_ERR_SEAL_KEY');
    throwsCode(() => sealSignature(new Uint8Array(31), 0, 'x\n'), 'WITNESS_ERR_SEAL_KEY');
    throwsCode(() => new SealVerifier(new Uint8Array(33)), 'WITNESS_ERR_SEAL_KEY');
  });

  test('generated keys are 32 bytes and differ', () => {
    const a = generateSealKey();
    assert.equal(a.length, SEAL_KEY_SIZE);
    assert.notDeepEqual(a, generateSealKey());
  });
});

/** A checkpoint log as the ledger writes it: note i is signed by the broker and sealed at epoch i. */
function sealedLog(k0: Uint8Array, count: number, broker = ed25519NoteSigner('example.com/log', generateSeed())): { notes: string[]; texts: string[] } {
  let k: Uint8Array = k0.slice();
  const notes: string[] = [];
  const texts: string[] = [];
  for (let e = 0; e < count; e++) {
    const text = formatCheckpoint({ origin: 'example.com/log', size: e * 10, rootHash: new Uint8Array(32).fill(e), extensions: [`witness/v1 ${e} ${1700000000000 + e}`] });
    notes.push(signNote(text, [broker], [sealSignature(k, e, text)]));
    texts.push(text);
    k = evolveSealKey(k);
  }
  return { notes, texts };
}

describe('seal: SealVerifier accepts a sealed log', () => {
  test('ten checkpoints, checked in order', () => {
    const k0 = generateSealKey();
    const { notes } = sealedLog(k0, 10);
    const v = new SealVerifier(k0);
    notes.forEach((n, e) => v.check(e, parseNote(n)));
  });

  test('checking may skip epochs forward and repeat the current one', () => {
    const k0 = generateSealKey();
    const { notes } = sealedLog(k0, 10);
    const v = new SealVerifier(k0);
    v.check(3, parseNote(notes[3]!));
    v.check(3, parseNote(notes[3]!));
    v.check(9, parseNote(notes[9]!));
  });

  test('going backwards is a usage error (WITNESS_ERR_INVALID_ARGUMENT)', () => {
    const k0 = generateSealKey();
    const { notes } = sealedLog(k0, 3);
    const v = new SealVerifier(k0);
    v.check(2, parseNote(notes[2]!));
    throwsCode(() => v.check(1, parseNote(notes[1]!)), 'WITNESS_ERR_INVALID_ARGUMENT');
  });

  test('standard note verifiers ignore the seal line (kept as an unverified signature)', () => {
    const seed = generateSeed();
    const k0 = generateSealKey();
    const { notes } = sealedLog(k0, 1, ed25519NoteSigner('example.com/log', seed));
    const { note } = openCheckpoint(notes[0]!, [ed25519NoteVerifier('example.com/log', publicKeyFromSeed(seed))]);
    assert.deepEqual(note.unverified.map((s) => s.name), [SEAL_NAME]);
  });
});

describe('seal: a modified checkpoint (WITNESS_ERR_SEAL_INVALID)', () => {
  test('a text altered and re-signed by the broker key no longer matches its seal', () => {
    const k0 = generateSealKey();
    const broker = ed25519NoteSigner('example.com/log', generateSeed());
    const { notes } = sealedLog(k0, 3, broker);
    const n = parseNote(notes[1]!);
    const forged = n.text.replace('\n10\n', '\n11\n');
    assert.notEqual(forged, n.text);
    // Whoever took the host holds the broker key and can re-sign; the old seal stays as it was.
    const reSigned = parseNote(signNote(forged, [broker], n.signatures));
    const v = new SealVerifier(k0);
    v.check(0, parseNote(notes[0]!));
    throwsCode(() => v.check(1, reSigned), 'WITNESS_ERR_SEAL_INVALID', /epoch 1/);
    v.check(2, parseNote(notes[2]!)); // the verifier carries on after a failure
  });

  test('a flipped bit in the MAC', () => {
    const k0 = generateSealKey();
    const n = parseNote(sealedLog(k0, 1).notes[0]!);
    const seal = n.signatures.find((s) => s.name === SEAL_NAME)!;
    seal.signature[39]! ^= 1;
    throwsCode(() => new SealVerifier(k0).check(0, n), 'WITNESS_ERR_SEAL_INVALID');
  });

  test('a seal of the wrong length', () => {
    const k0 = generateSealKey();
    const n = parseNote(sealedLog(k0, 1).notes[0]!);
    const seal = n.signatures.find((s) => s.name === SEAL_NAME)!;
    seal.signature = seal.signature.subarray(0, 39);
    throwsCode(() => new SealVerifier(k0).check(0, n), 'WITNESS_ERR_SEAL_INVALID', /39 bytes/);
  });

  test('two seal lines', () => {
    const k0 = generateSealKey();
    const n = parseNote(sealedLog(k0, 1).notes[0]!);
    const seal = n.signatures.find((s) => s.name === SEAL_NAME)!;
    n.signatures.push(seal);
    throwsCode(() => new SealVerifier(k0).check(0, n), 'WITNESS_ERR_SEAL_INVALID', /2 seal lines/);
  });

  test('a different initial key', () => {
    const n = parseNote(sealedLog(generateSealKey(), 1).notes[0]!);
    throwsCode(() => new SealVerifier(generateSealKey()).check(0, n), 'WITNESS_ERR_SEAL_INVALID');
  });
});

describe('seal: a removed or inserted checkpoint (WITNESS_ERR_SEAL_EPOCH)', () => {
  test('removing checkpoint 2 of 5 shifts the later ones', () => {
    const k0 = generateSealKey();
    const { notes } = sealedLog(k0, 5);
    const cut = [notes[0]!, notes[1]!, notes[3]!, notes[4]!];
    const v = new SealVerifier(k0);
    v.check(0, parseNote(cut[0]!));
    v.check(1, parseNote(cut[1]!));
    assert.throws(
      () => v.check(2, parseNote(cut[2]!)),
      (e: unknown) => isWitnessError(e, 'WITNESS_ERR_SEAL_EPOCH') && e.details['expected'] === 2 && e.details['actual'] === '3',
    );
    throwsCode(() => v.check(3, parseNote(cut[3]!)), 'WITNESS_ERR_SEAL_EPOCH');
  });

  test('a duplicated checkpoint', () => {
    const k0 = generateSealKey();
    const { notes } = sealedLog(k0, 2);
    const v = new SealVerifier(k0);
    v.check(0, parseNote(notes[0]!));
    throwsCode(() => v.check(1, parseNote(notes[0]!)), 'WITNESS_ERR_SEAL_EPOCH');
  });
});

describe('seal: history re-sealed by someone holding k_5', () => {
  const k0 = generateSealKey();
  const chain = [k0];
  for (let e = 1; e <= 20; e++) chain.push(evolveSealKey(chain[e - 1]!));
  const k5 = chain[5]!;
  const { texts } = sealedLog(k0, 5);
  const withSeal = (text: string, seal: NoteSignature): Note => ({ text, signatures: [seal] });

  test('seals of epochs 0..4 made with k_5 labelled with their own epochs: WITNESS_ERR_SEAL_INVALID', () => {
    const v = new SealVerifier(k0);
    for (let e = 0; e < 5; e++) throwsCode(() => v.check(e, withSeal(texts[e]!, sealSignature(k5, e, texts[e]!))), 'WITNESS_ERR_SEAL_INVALID');
  });

  test('seals made with k_5.. labelled with the epochs they belong to (5..9): WITNESS_ERR_SEAL_EPOCH', () => {
    const v = new SealVerifier(k0);
    for (let e = 0; e < 5; e++) throwsCode(() => v.check(e, withSeal(texts[e]!, sealSignature(chain[5 + e]!, 5 + e, texts[e]!))), 'WITNESS_ERR_SEAL_EPOCH');
  });

  test('no key reachable from k_5 makes a valid epoch-2 seal; k_2 itself does', () => {
    const text = texts[2]!;
    let k: Uint8Array = k5;
    for (let step = 0; step < 16; step++) {
      assert.notEqual(hex(k), hex(chain[2]!));
      throwsCode(() => new SealVerifier(k0).check(2, withSeal(text, sealSignature(k, 2, text))), 'WITNESS_ERR_SEAL_INVALID');
      k = evolveSealKey(k);
    }
    new SealVerifier(k0).check(2, withSeal(text, sealSignature(chain[2]!, 2, text)));
  });
});

describe('seal: no seal (WITNESS_ERR_SEAL_MISSING)', () => {
  test('a checkpoint without a seal line', () => {
    const k0 = generateSealKey();
    const broker = ed25519NoteSigner('example.com/log', generateSeed());
    const note = parseNote(signNote('example.com/log\n0\n' + Buffer.alloc(32).toString('base64') + '\n', [broker]));
    throwsCode(() => new SealVerifier(k0).check(0, note), 'WITNESS_ERR_SEAL_MISSING');
  });

  test('a line named witness-seal with another key ID is not a seal', () => {
    const k0 = generateSealKey();
    const n = parseNote(sealedLog(k0, 1).notes[0]!);
    const seal = n.signatures.find((s) => s.name === SEAL_NAME)!;
    seal.keyHash = Uint8Array.of(0, 0, 0, 0);
    throwsCode(() => new SealVerifier(k0).check(0, n), 'WITNESS_ERR_SEAL_MISSING');
  });
});

describe('SealState', () => {
  const dir = mkdtempSync(join(tmpdir(), 'witness-seal-'));
  after(() => rmSync(dir, { recursive: true, force: true }));
  let n = 0;
  const fresh = (): string => join(dir, `seal-${n++}.state`);
  const text = (e: number): string => `example.com/log\n${e}\n${Buffer.alloc(32, e).toString('base64')}\n`;
  const slotAt = (i: number): number => i * 4096; // slot offsets (module comment of shared/checkpoint/seal.ts)
  const SLOT_SIZE = 61;

  test('create: epoch 0, mode 0600, refuses an existing file', () => {
    const p = fresh();
    const s = SealState.create(p, generateSealKey());
    assert.equal(s.epoch, 0);
    s.close();
    assert.equal(statSync(p).mode & 0o777, 0o600);
    throwsCode(() => SealState.create(p, generateSealKey()), 'WITNESS_ERR_IO');
  });

  test('seal() advances the epoch and its seals verify from k_0', () => {
    const k0 = generateSealKey();
    const s = SealState.create(fresh(), k0);
    const v = new SealVerifier(k0);
    for (let e = 0; e < 5; e++) {
      const seal = s.seal(text(e));
      assert.equal(s.epoch, e + 1);
      v.check(e, { text: text(e), signatures: [seal] });
    }
    s.close();
  });

  test('prepare() does not advance; advance() does', () => {
    const k0 = generateSealKey();
    const s = SealState.create(fresh(), k0);
    const a = s.prepare(text(0));
    assert.equal(s.epoch, 0);
    assert.deepEqual(s.prepare(text(0)), a);
    s.advance();
    assert.equal(s.epoch, 1);
    new SealVerifier(k0).check(0, { text: text(0), signatures: [a] });
    s.close();
  });

  test('reopening after close() continues the chain', () => {
    const k0 = generateSealKey();
    const p = fresh();
    const s = SealState.create(p, k0);
    for (let e = 0; e < 3; e++) s.seal(text(e));
    s.close();
    const r = SealState.open(p);
    assert.equal(r.epoch, 3);
    const seal = r.seal(text(3));
    r.close();
    const v = new SealVerifier(k0);
    v.check(3, { text: text(3), signatures: [seal] });
    assert.equal(SealState.open(p).epoch, 4);
  });

  test('after each seal() the previous key is nowhere in the file; the current one is', () => {
    const k0 = generateSealKey();
    const p = fresh();
    const s = SealState.create(p, k0);
    let prev = k0;
    assert.ok(readFileSync(p).indexOf(Buffer.from(k0)) >= 0, 'k_0 should be stored at creation');
    for (let e = 0; e < 6; e++) {
      s.seal(text(e));
      const cur = evolveSealKey(prev);
      const raw = readFileSync(p);
      assert.equal(raw.indexOf(Buffer.from(prev)), -1, `key of epoch ${e} still in the file`);
      assert.equal(raw.indexOf(Buffer.from(k0)), -1, 'k_0 still in the file');
      assert.ok(raw.indexOf(Buffer.from(cur)) >= 0, `key of epoch ${e + 1} not in the file`);
      prev = cur;
    }
    s.close();
  });

  test('using a closed state: WITNESS_ERR_LEDGER_CLOSED', () => {
    const s = SealState.create(fresh(), generateSealKey());
    s.close();
    s.close(); // idempotent
    throwsCode(() => s.seal('x\n'), 'WITNESS_ERR_LEDGER_CLOSED');
    throwsCode(() => s.advance(), 'WITNESS_ERR_LEDGER_CLOSED');
  });

  /** A file where both slots are valid: epoch e (the old one) and e+1, as after a crash between the two syncs. */
  function bothSlotsValid(k0: Uint8Array, e: number): { path: string; raw: Buffer; oldSlot: number; newSlot: number } {
    const path = fresh();
    const s = SealState.create(path, k0);
    for (let i = 0; i < e; i++) s.seal(text(i));
    const before = readFileSync(path);
    s.seal(text(e));
    s.close();
    const raw = readFileSync(path);
    const oldSlot = e % 2; // epoch e lives in slot e mod 2
    const newSlot = 1 - oldSlot;
    assert.ok(before.subarray(slotAt(newSlot), slotAt(newSlot) + SLOT_SIZE).every((b) => b === 0));
    before.copy(raw, slotAt(oldSlot), slotAt(oldSlot), slotAt(oldSlot) + SLOT_SIZE);
    writeFileSync(path, raw);
    return { path, raw, oldSlot, newSlot };
  }

  test('crash between writing the new slot and erasing the old: open picks the newer and erases the older', () => {
    const k0 = generateSealKey();
    let k3 = k0;
    for (let i = 0; i < 3; i++) k3 = evolveSealKey(k3);
    const { path } = bothSlotsValid(k0, 3);
    assert.ok(readFileSync(path).indexOf(Buffer.from(k3)) >= 0);
    const s = SealState.open(path);
    assert.equal(s.epoch, 4);
    s.close();
    assert.equal(readFileSync(path).indexOf(Buffer.from(k3)), -1, 'open() did not erase the stale key');
  });

  test('a torn write of the new slot (its checksum broken): open picks the other, valid slot', () => {
    const k0 = generateSealKey();
    const { path, raw, newSlot } = bothSlotsValid(k0, 3);
    raw[slotAt(newSlot) + SLOT_SIZE - 1]! ^= 0x01;
    writeFileSync(path, raw);
    const s = SealState.open(path);
    assert.equal(s.epoch, 3);
    // and it still seals epoch 3 correctly
    const seal = s.seal(text(3));
    s.close();
    const v = new SealVerifier(k0);
    v.check(3, { text: text(3), signatures: [seal] });
  });

  test('the older slot corrupted instead: open picks the newer', () => {
    const { path, raw, oldSlot } = bothSlotsValid(generateSealKey(), 2);
    raw[slotAt(oldSlot) + 20]! ^= 0x40; // inside the key
    writeFileSync(path, raw);
    const s = SealState.open(path);
    assert.equal(s.epoch, 3);
    s.close();
  });

  test('both slots corrupt: WITNESS_ERR_SEAL_KEY', () => {
    const { path, raw, oldSlot, newSlot } = bothSlotsValid(generateSealKey(), 2);
    raw[slotAt(oldSlot) + SLOT_SIZE - 1]! ^= 0x01;
    raw[slotAt(newSlot) + 5]! ^= 0x01; // the epoch
    writeFileSync(path, raw);
    throwsCode(() => SealState.open(path), 'WITNESS_ERR_SEAL_KEY', /checksum/);
  });

  test('the only slot corrupt: WITNESS_ERR_SEAL_KEY', () => {
    const p = fresh();
    SealState.create(p, generateSealKey()).close();
    const raw = readFileSync(p);
    raw[0]! ^= 0xff; // magic
    writeFileSync(p, raw);
    throwsCode(() => SealState.open(p), 'WITNESS_ERR_SEAL_KEY', /magic/);
  });

  test('a missing or empty file: WITNESS_ERR_SEAL_KEY', () => {
    throwsCode(() => SealState.open(join(dir, 'nope.state')), 'WITNESS_ERR_SEAL_KEY');
    const p = fresh();
    writeFileSync(p, '');
    throwsCode(() => SealState.open(p), 'WITNESS_ERR_SEAL_KEY');
  });
});
