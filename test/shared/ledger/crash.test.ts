/**
 * Crash drill: a child process appends as fast as it can and is killed with SIGKILL at random
 * moments, 20 times. After each kill the ledger verifies, and every append whose promise had
 * resolved is present with its content; the next child recovers the torn tail and goes on.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { tempDir } from '../../helpers/tmp.js';
import { openTestLedger, reopenTestLedger } from '../../helpers/ledger.js';
import { verifyLedger } from '../../../shared/ledger/verifier.js';
import { LedgerReader } from '../../../shared/ledger/reader.js';

const ROUNDS = 20;
const child = new URL('../../helpers/crash-writer.js', import.meta.url).pathname;

function runAndKill(dataDir: string, round: number, killAfterMs: number): Promise<Map<number, string>> {
  return new Promise((resolve, reject) => {
    const p = spawn(process.execPath, [child, dataDir, String(round)], { stdio: ['ignore', 'pipe', 'pipe'] });
    const acked = new Map<number, string>();
    let buf = '';
    let stderr = '';
    let timer: NodeJS.Timeout | undefined;
    const guard = setTimeout(() => p.kill('SIGKILL'), 15_000);
    p.stdout.on('data', (d: Buffer) => {
      buf += d.toString();
      let nl;
      while ((nl = buf.indexOf('\n')) >= 0) {
        const line = buf.slice(0, nl);
        buf = buf.slice(nl + 1);
        if (line.startsWith('ready')) {
          timer = setTimeout(() => p.kill('SIGKILL'), killAfterMs);
          continue;
        }
        const [index, r, n] = line.split(' ');
        acked.set(Number(index), `${r}:${n}`);
      }
    });
    p.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    p.on('exit', (code, signal) => {
      clearTimeout(timer);
      clearTimeout(guard);
      if (signal !== 'SIGKILL') reject(new Error(`child exited ${code} ${signal}: ${stderr}`));
      else resolve(acked);
    });
  });
}

test(`crash drill: SIGKILL ${ROUNDS} times while appending; nothing acknowledged is lost`, { timeout: 180_000 }, async (t) => {
  const dir = tempDir(t);
  const init = await openTestLedger(dir);
  await init.ledger.close();
  const all = new Map<number, string>();
  let seed = 12345;
  const rand = (): number => (seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31;
  for (let round = 0; round < ROUNDS; round++) {
    const acked = await runAndKill(dir, round, 30 + Math.floor(rand() * 250));
    for (const [i, v] of acked) all.set(i, v);
    const report = await verifyLedger(join(dir, 'ledger'), { key: init.key, sealKey: init.sealKey });
    assert.equal(report.ok, true, `round ${round}: ${JSON.stringify(report.failures.slice(0, 3))}`);
    const reader = LedgerReader.open(join(dir, 'ledger'));
    try {
      assert.ok(reader.size >= Math.max(-1, ...acked.keys()) + 1, `round ${round}: ledger holds ${reader.size} records but index ${Math.max(...acked.keys())} was acknowledged`);
      for await (const r of reader.records()) {
        const want = all.get(r.index);
        if (want === undefined) continue;
        const o = JSON.parse(r.line) as { round: number; n: number };
        assert.equal(`${o.round}:${o.n}`, want, `record ${r.index}`);
      }
    } finally {
      reader.close();
    }
  }
  assert.ok(all.size > ROUNDS * 10, `only ${all.size} appends were acknowledged in ${ROUNDS} rounds`);
  // A last clean open/close recovers the final torn tail and covers everything with a checkpoint.
  const last = await reopenTestLedger(dir);
  await last.close();
  const report = await verifyLedger(join(dir, 'ledger'), { key: init.key, sealKey: init.sealKey });
  assert.equal(report.ok, true);
  assert.equal(report.uncovered, 0);
  assert.equal(report.tornTailBytes, 0);
});
