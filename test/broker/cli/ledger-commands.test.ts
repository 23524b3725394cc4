/**
 * The `witness` ledger commands run as a user runs them: the built bin in a child process.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync, readdirSync, chmodSync } from 'node:fs';
import { join } from 'node:path';
import { tempDir } from '../../helpers/tmp.js';
import { reopenTestLedger, sampleRecord } from '../../helpers/ledger.js';

const BIN = new URL('../../../broker/cli/witness.js', import.meta.url).pathname;

function witness(...args: string[]): { code: number; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [BIN, ...args], { encoding: 'utf8', timeout: 60_000 });
  return { code: r.status ?? -1, stdout: r.stdout, stderr: r.stderr };
}

/** `witness init` then records written by the ledger itself. */
async function makeLedger(dir: string, records = 200): Promise<{ data: string; sealKey: string; vkey: string }> {
  const data = join(dir, 'data');
  const init = witness('init', '--data', data, '--node-id', 'cli-test', '--json');
  assert.equal(init.code, 0, init.stderr);
  const out = JSON.parse(init.stdout) as { sealKey: string; verifierKey: string };
  const ledger = await reopenTestLedger(data, { checkpointEveryRecords: 50 });
  // Appended in bursts, so that several checkpoints (one per 50 records) are made along the way.
  for (let n = 0; n < records; n++) {
    const p = ledger.append(sampleRecord(n));
    if (n % 25 === 24) await p;
  }
  await ledger.close();
  return { data, sealKey: out.sealKey, vkey: out.verifierKey };
}

describe('witness --help', () => {
  test('lists the commands and exits 0; no command exits 2', () => {
    const r = witness('--help');
    assert.equal(r.code, 0);
    for (const c of ['init', 'verify', 'proof', 'verify-proof']) assert.match(r.stdout, new RegExp(`\\b${c}\\b`));
    assert.equal(witness().code, 2);
    const u = witness('frobnicate');
    assert.equal(u.code, 2);
    assert.match(u.stderr, /unknown command "frobnicate"/);
  });
});

describe('witness init', () => {
  test('prints the sealing key once; refuses to initialise twice', (t) => {
    const dir = tempDir(t);
    const r = witness('init', '--data', join(dir, 'd'));
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /SEALING KEY/);
    const key = /^\s+([0-9a-f]{64})$/m.exec(r.stdout)?.[1] ?? '';
    assert.match(key, /^[0-9a-f]{64}$/, r.stdout);
    // Stored nowhere in the data directory.
    const files = (d: string): string[] => readdirSync(d, { withFileTypes: true }).flatMap((e) => (e.isDirectory() ? files(join(d, e.name)) : [join(d, e.name)]));
    for (const f of files(join(dir, 'd'))) {
      const content = readFileSync(f);
      assert.equal(content.includes(key), false, f);
      assert.equal(content.includes(Buffer.from(key, 'hex')), false, f);
    }
    const again = witness('init', '--data', join(dir, 'd'));
    assert.equal(again.code, 2);
    assert.match(again.stderr, /already initialised/);
    assert.equal(witness('init', '--data', join(dir, 'e'), '--node-id', 'bad id!').code, 2);
  });
});

describe('witness verify', () => {
  test('an intact ledger: exit 0 with a summary, and --json', async (t) => {
    const { data, sealKey, vkey } = await makeLedger(tempDir(t));
    const r = witness('verify', data, '--seal-key', sealKey, '--key', vkey);
    assert.equal(r.code, 0, r.stdout + r.stderr);
    assert.match(r.stdout, /records\s+\d+\/\d+ valid/);
    assert.match(r.stdout, /result\s+INTACT/);
    const j = witness('verify', data, '--json');
    assert.equal(j.code, 0);
    const report = JSON.parse(j.stdout) as { ok: boolean; records: { total: number }; keySource: string };
    assert.equal(report.ok, true);
    assert.ok(report.records.total >= 200);
    assert.match(report.keySource, /pass --key/);
    // The ledger directory itself works too, with the key given.
    assert.equal(witness('verify', join(data, 'ledger'), '--key', vkey, '--quiet').code, 0);
  });

  test('a tampered ledger: exit 1 naming the first bad index', async (t) => {
    const { data, vkey } = await makeLedger(tempDir(t));
    const seg = join(data, 'ledger', 'segments', '00000000000000000000.jsonl');
    chmodSync(seg, 0o644);
    const buf = readFileSync(seg);
    const at = buf.indexOf('{"i":77,');
    buf[at + 30] = buf[at + 30]! ^ 0x01;
    writeFileSync(seg, buf);
    const r = witness('verify', data, '--key', vkey);
    assert.equal(r.code, 1, r.stdout + r.stderr);
    assert.match(r.stdout, /TAMPERED/);
    assert.match(r.stdout, /first\s+index 77:/);
    const j = JSON.parse(witness('verify', data, '--key', vkey, '--json').stdout) as { ok: boolean; failures: Array<{ index: number; code: string }> };
    assert.equal(j.ok, false);
    assert.equal(j.failures[0]!.index, 77);
    assert.equal(j.failures[0]!.code, 'WITNESS_ERR_LEDGER_LEAF_HASH');
  });

  describe('bad input exits 2 with a clear error', () => {
    test('missing directory', (t) => {
      const r = witness('verify', join(tempDir(t), 'nope'));
      assert.equal(r.code, 2);
      assert.match(r.stderr, /no such directory/);
    });
    test('empty directory', (t) => {
      const r = witness('verify', tempDir(t));
      assert.equal(r.code, 2);
      assert.match(r.stderr, /no ledger here/);
    });
    test('a directory of garbage files', (t) => {
      const dir = tempDir(t);
      writeFileSync(join(dir, 'witness.json'), '\u0000\u0001garbage');
      mkdirSync(join(dir, 'ledger', 'segments'), { recursive: true });
      const r = witness('verify', dir);
      assert.equal(r.code, 2);
      assert.match(r.stderr, /witness\.json/);
    });
    test('a malformed key', async (t) => {
      const { data } = await makeLedger(tempDir(t), 10);
      const r = witness('verify', data, '--key', 'not-a-key');
      assert.equal(r.code, 2);
      assert.match(r.stderr, /WITNESS_ERR_KEY_INVALID/);
    });
    test('the wrong key', async (t) => {
      const dir = tempDir(t);
      const { data } = await makeLedger(dir, 10);
      const other = JSON.parse(witness('init', '--data', join(dir, 'other'), '--json').stdout) as { verifierKey: string };
      const r = witness('verify', data, '--key', other.verifierKey);
      assert.equal(r.code, 2);
      assert.match(r.stderr, /none of the \d+ checkpoints/);
    });
    test('a malformed seal key', async (t) => {
      const { data } = await makeLedger(tempDir(t), 10);
      const r = witness('verify', data, '--seal-key', 'abc');
      assert.equal(r.code, 2);
      assert.match(r.stderr, /WITNESS_ERR_SEAL_KEY/);
    });
    test('unknown option', (t) => {
      const r = witness('verify', tempDir(t), '--frob');
      assert.equal(r.code, 2);
      assert.match(r.stderr, /--frob/);
    });
  });
});

describe('witness proof / verify-proof', () => {
  test('an inclusion proof verifies with the broker key; an altered one fails (exit 1)', async (t) => {
    const dir = tempDir(t);
    const { data, vkey } = await makeLedger(dir);
    const file = join(dir, 'p.json');
    const p = witness('proof', data, '--index', '42', '--out', file);
    assert.equal(p.code, 0, p.stderr);
    const ok = witness('verify-proof', file, '--key', vkey);
    assert.equal(ok.code, 0, ok.stdout + ok.stderr);
    assert.match(ok.stdout, /^OK: record 42 is included/);
    const proof = JSON.parse(readFileSync(file, 'utf8')) as { record: string; proof: string[] };
    writeFileSync(join(dir, 'bad-record.json'), JSON.stringify({ ...proof, record: proof.record.replace('"acl":"allow"', '"acl":"deny"') }));
    assert.equal(witness('verify-proof', join(dir, 'bad-record.json'), '--key', vkey).code, 1);
    const flipped = [...proof.proof];
    const h = Buffer.from(flipped[0]!, 'base64');
    h[0] = h[0]! ^ 1;
    flipped[0] = h.toString('base64');
    writeFileSync(join(dir, 'bad-proof.json'), JSON.stringify({ ...proof, proof: flipped }));
    const bad = witness('verify-proof', join(dir, 'bad-proof.json'), '--key', vkey, '--json');
    assert.equal(bad.code, 1);
    assert.equal((JSON.parse(bad.stdout) as { error: { code: string } }).error.code, 'WITNESS_ERR_PROOF_ROOT_MISMATCH');
  });

  test('a consistency proof between two checkpoints verifies', async (t) => {
    const dir = tempDir(t);
    const { data, vkey } = await makeLedger(dir);
    const log = readFileSync(join(data, 'ledger', 'checkpoints.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l) as string);
    const sizes = log.map((n) => Number(n.split('\n')[1]));
    const file = join(dir, 'c.json');
    const p = witness('proof', data, '--consistency', String(sizes[1]), String(sizes.at(-1)), '--out', file);
    assert.equal(p.code, 0, p.stderr);
    const r = witness('verify-proof', file, '--key', vkey, '--json');
    assert.equal(r.code, 0, r.stdout);
    assert.equal((JSON.parse(r.stdout) as { ok: boolean }).ok, true);
    assert.equal(witness('proof', data, '--consistency', String(sizes[1]! + 1), String(sizes.at(-1))).code, 2);
  });

  test('truncated or garbage proof files exit 2', async (t) => {
    const dir = tempDir(t);
    const { data, vkey } = await makeLedger(dir);
    const file = join(dir, 'p.json');
    assert.equal(witness('proof', data, '--index', '3', '--out', file).code, 0);
    const text = readFileSync(file, 'utf8');
    writeFileSync(join(dir, 'trunc.json'), text.slice(0, Math.floor(text.length / 2)));
    const r = witness('verify-proof', join(dir, 'trunc.json'), '--key', vkey);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /not JSON/);
    writeFileSync(join(dir, 'garbage.json'), '{"format":"witness-proof/v1","type":"inclusion","proof":"x"}');
    assert.equal(witness('verify-proof', join(dir, 'garbage.json'), '--key', vkey).code, 2);
    assert.equal(witness('verify-proof', join(dir, 'missing.json'), '--key', vkey).code, 2);
    assert.equal(witness('proof', data, '--index', '999999').code, 2);
    assert.equal(witness('proof', data, '--index', '-1').code, 2);
  });
});
