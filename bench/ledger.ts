/**
 * Ledger benchmarks, each printed as a ratio to a baseline measured in the same run:
 *   append  — records/s appended with fsync per batch, ~300-byte records (target ≥ 150,000/s),
 *             vs the raw SHA-256 rate of the same lines;
 *   verify  — records/s checked by verifyLedger vs the raw SHA-256 rate of the same lines
 *             (one one-shot hash per line: the least any verifier must do). Target ≥ 0.8×.
 * Usage: node dist/bench/ledger.js [--records N] [--rounds R] [--json]
 */
import { mkdtempSync, rmSync, readFileSync, readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { hash } from 'node:crypto';
import { parseArgs } from 'node:util';
import { initDataDir, openSigning } from '../broker/data-dir.js';
import { Ledger } from '../shared/ledger/writer.js';
import { verifyLedger } from '../shared/ledger/verifier.js';
import { parseVerifierKey } from '../shared/keys/key-id.js';
import { machineInfo, formatMachine, median } from './machine.js';

const { values } = parseArgs({ options: { records: { type: 'string' }, rounds: { type: 'string' }, json: { type: 'boolean' } } });
const RECORDS = Number(values.records ?? 300_000);
const ROUNDS = Number(values.rounds ?? 3);

function record(n: number): Record<string, unknown> {
  return {
    v: 1, t: 1_732_363_200_000 + n, u: 3, n: 'bench-node', e: 'publish', s: `s-${n % 1000}`, c: `device-${n % 1000}`,
    id: { k: `device-${n % 1000}+1a2b3c4d` }, a: '127.0.0.1:50000', topic: `devices/device-${n % 1000}/telemetry/temperature`,
    q: 1, r: false, m: n % 65535, z: 128, h: 'hbGeI7xG1bHvB0d5nN0o2Q2p7sA4rHq1kT8gWc3eYxU', acl: 'allow', env: 'valid', seq: n,
  };
}

function rawSha256Rate(lines: Buffer[]): number {
  const t0 = process.hrtime.bigint();
  for (const l of lines) hash('sha256', l, 'buffer');
  return lines.length / (Number(process.hrtime.bigint() - t0) / 1e9);
}

async function appendRound(dir: string): Promise<{ rate: number; ledgerDir: string; key: { name: string; publicKey: Uint8Array } }> {
  const data = join(dir, `data-${Math.random().toString(36).slice(2)}`);
  const init = await initDataDir(data, 'bench');
  const s = openSigning(data);
  const ledger = await Ledger.open(join(data, 'ledger'), { origin: s.manifest.origin, signer: s.signer, seal: s.seal, fsync: 'batch' });
  const t0 = process.hrtime.bigint();
  const window = 20_000;
  let inflight: Promise<unknown>[] = [];
  for (let n = 0; n < RECORDS; n++) {
    inflight.push(ledger.append(record(n)));
    if (inflight.length >= window) {
      await Promise.all(inflight);
      inflight = [];
    }
  }
  await Promise.all(inflight);
  const rate = RECORDS / (Number(process.hrtime.bigint() - t0) / 1e9);
  await ledger.close();
  const k = parseVerifierKey(init.manifest.verifierKey);
  return { rate, ledgerDir: join(data, 'ledger'), key: { name: k.name, publicKey: k.publicKey } };
}

function ledgerLines(ledgerDir: string): Buffer[] {
  const out: Buffer[] = [];
  const segDir = join(ledgerDir, 'segments');
  for (const f of readdirSync(segDir).filter((x) => x.endsWith('.jsonl')).sort()) {
    const buf = readFileSync(join(segDir, f));
    let s = 0;
    for (let nl = buf.indexOf(0x0a); nl >= 0; nl = buf.indexOf(0x0a, s)) {
      out.push(buf.subarray(s, nl));
      s = nl + 1;
    }
  }
  return out;
}

const dir = mkdtempSync(join(tmpdir(), 'witness-bench-'));
try {
  const appendRates: number[] = [];
  const verifyRates: number[] = [];
  const shaRates: number[] = [];
  let avgBytes = 0;
  for (let r = 0; r < ROUNDS; r++) {
    const { rate, ledgerDir, key } = await appendRound(dir);
    appendRates.push(rate);
    const lines = ledgerLines(ledgerDir);
    avgBytes = lines.reduce((n, l) => n + l.length, 0) / lines.length;
    shaRates.push(rawSha256Rate(lines));
    const t0 = process.hrtime.bigint();
    const report = await verifyLedger(ledgerDir, { key });
    if (!report.ok) throw new Error(`benchmark ledger does not verify: ${JSON.stringify(report.failures[0])}`);
    verifyRates.push(report.records.total / (Number(process.hrtime.bigint() - t0) / 1e9));
    rmSync(ledgerDir, { recursive: true, force: true });
  }
  const result = {
    machine: machineInfo(),
    records: RECORDS,
    rounds: ROUNDS,
    avgRecordBytes: Math.round(avgBytes),
    appendPerSec: Math.round(median(appendRates)),
    verifyPerSec: Math.round(median(verifyRates)),
    rawSha256PerSec: Math.round(median(shaRates)),
    appendVsSha256: +(median(appendRates) / median(shaRates)).toFixed(3),
    verifyVsSha256: +(median(verifyRates) / median(shaRates)).toFixed(3),
  };
  if (values.json) console.log(JSON.stringify(result, null, 2));
  else {
    console.log(`machine: ${formatMachine(result.machine)}`);
    console.log(`${RECORDS} records of ~${result.avgRecordBytes} B, median of ${ROUNDS} rounds`);
    console.log(`raw SHA-256 (one hash per line)   ${result.rawSha256PerSec.toLocaleString()} /s   (baseline)`);
    console.log(`append, fsync per batch           ${result.appendPerSec.toLocaleString()} /s   ${result.appendVsSha256}× baseline   (target ≥ 150,000/s)`);
    console.log(`witness verify                    ${result.verifyPerSec.toLocaleString()} /s   ${result.verifyVsSha256}× baseline   (target ≥ 0.8×)`);
  }
} finally {
  rmSync(dir, { recursive: true, force: true });
}
