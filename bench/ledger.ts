/**
 * Ledger benchmarks, each printed as a ratio to baselines measured in the same run, median of the
 * rounds (the machines are noisy: compare ratios, never a single absolute time):
 *   baselines — raw SHA-256 of the same lines, one one-shot crypto.hash per line: the least any
 *               verifier must do. Twice: with the digest returned as a Buffer (the baseline of
 *               issue 2's targets) and as a string (no ArrayBuffer per digest: the fastest raw
 *               SHA-256 node:crypto offers, and what the ledger uses);
 *   append    — records/s appended with fsync per batch, ~300-byte records (target ≥ 150,000/s);
 *   floor     — what an append costs at the least, no I/O and no tree: build the record, JSON.stringify
 *               it, hash the line, one promise — the ceiling of any append path in this process;
 *   2 threads — baseline B on this thread and a worker at once, half the lines each: what a second
 *               thread adds on this machine right now (the ceiling of the parallel verifier);
 *   verify    — records/s checked by verifyLedger, single-threaded (workers: 0) and as
 *               `witness verify` runs it (workers when the ledger is big enough); target ≥ 0.8× the
 *               raw SHA-256 rate. With the CPU time of all threads per record.
 * Usage: node dist/bench/ledger.js [--records N] [--rounds R] [--json]
 *        node dist/bench/ledger.js --threshold     (verify with and without a worker, by ledger size)
 */
import { mkdtempSync, rmSync, readFileSync, readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { hash } from 'node:crypto';
import { parseArgs } from 'node:util';
import { Worker } from 'node:worker_threads';
import { initDataDir, openSigning } from '../broker/data-dir.js';
import { Ledger } from '../shared/ledger/writer.js';
import { verifyLedger, type VerifyOptions } from '../shared/ledger/verifier.js';
import { parseVerifierKey } from '../shared/keys/key-id.js';
import { machineInfo, formatMachine, median } from './machine.js';

const { values } = parseArgs({ options: { records: { type: 'string' }, rounds: { type: 'string' }, json: { type: 'boolean' }, threshold: { type: 'boolean' } } });
const RECORDS = Number(values.records ?? 300_000);
const ROUNDS = Number(values.rounds ?? 3);

function record(n: number): Record<string, unknown> {
  return {
    v: 1, t: 1_732_363_200_000 + n, u: 3, n: 'bench-node', e: 'publish', s: `s-${n % 1000}`, c: `device-${n % 1000}`,
    id: { k: `device-${n % 1000}+1a2b3c4d` }, a: '127.0.0.1:50000', topic: `devices/device-${n % 1000}/telemetry/temperature`,
    q: 1, r: false, m: n % 65535, z: 128, h: 'hbGeI7xG1bHvB0d5nN0o2Q2p7sA4rHq1kT8gWc3eYxU', acl: 'allow', env: 'valid', seq: n,
  };
}

function rate(n: number, t0: bigint): number {
  return n / (Number(process.hrtime.bigint() - t0) / 1e9);
}

function rawSha256Rate(lines: Buffer[], digest: 'buffer' | 'binary'): number {
  const t0 = process.hrtime.bigint();
  if (digest === 'buffer') for (const l of lines) hash('sha256', l, 'buffer');
  else for (const l of lines) hash('sha256', l, 'binary');
  return rate(lines.length, t0);
}

/** Baseline B on two threads at once (this one and a worker, half the lines each), as one rate. */
async function twoThreadShaRate(lines: Buffer[]): Promise<number> {
  const half = lines.length >> 1;
  const theirs = lines.slice(half);
  const offsets = [0];
  for (const l of theirs) offsets.push(offsets.at(-1)! + l.length);
  const code = `
    const { parentPort, workerData } = require('node:worker_threads');
    const { hash } = require('node:crypto');
    const { buf, offsets } = workerData;
    parentPort.on('message', () => {
      for (let i = 0; i + 1 < offsets.length; i++) hash('sha256', buf.subarray(offsets[i], offsets[i + 1]), 'binary');
      parentPort.postMessage('done');
    });
    parentPort.postMessage('ready');`;
  const w = new Worker(code, { eval: true, workerData: { buf: Buffer.concat(theirs), offsets } });
  try {
    await new Promise((resolve) => w.once('message', resolve));
    const done = new Promise((resolve) => w.once('message', resolve));
    const t0 = process.hrtime.bigint();
    w.postMessage('go');
    for (let i = 0; i < half; i++) hash('sha256', lines[i]!, 'binary');
    await done;
    return rate(lines.length, t0);
  } finally {
    await w.terminate();
  }
}

/** The least an append does, in the same window of 20,000 as appendRound: record, JSON, one hash, one promise. */
async function floorRate(count: number): Promise<number> {
  const t0 = process.hrtime.bigint();
  let inflight: Array<Promise<number>> = [];
  for (let n = 0; n < count; n++) {
    const line = `{"i":${n},${JSON.stringify(record(n)).slice(1)}`;
    hash('sha256', line, 'binary');
    inflight.push(Promise.resolve(n));
    if (inflight.length >= 20_000) {
      await Promise.all(inflight);
      inflight = [];
    }
  }
  await Promise.all(inflight);
  return rate(count, t0);
}

interface Appended {
  rate: number;
  ledgerDir: string;
  key: { name: string; publicKey: Uint8Array };
}

async function appendRound(dir: string, count: number): Promise<Appended> {
  const data = join(dir, `data-${Math.random().toString(36).slice(2)}`);
  const init = await initDataDir(data, 'bench');
  const s = openSigning(data);
  const ledger = await Ledger.open(join(data, 'ledger'), { origin: s.manifest.origin, signer: s.signer, seal: s.seal, fsync: 'batch' });
  const t0 = process.hrtime.bigint();
  const window = 20_000;
  let inflight: Promise<unknown>[] = [];
  for (let n = 0; n < count; n++) {
    inflight.push(ledger.append(record(n)));
    if (inflight.length >= window) {
      await Promise.all(inflight);
      inflight = [];
    }
  }
  await Promise.all(inflight);
  const r = rate(count, t0);
  await ledger.close();
  const k = parseVerifierKey(init.manifest.verifierKey);
  return { rate: r, ledgerDir: join(data, 'ledger'), key: { name: k.name, publicKey: k.publicKey } };
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

/** records/s and CPU µs (all threads) per record of one verifyLedger. */
async function verifyRound(a: Appended, extra: Partial<VerifyOptions>): Promise<{ rate: number; cpuMicros: number }> {
  const c0 = process.cpuUsage();
  const t0 = process.hrtime.bigint();
  const report = await verifyLedger(a.ledgerDir, { key: a.key, ...extra });
  const r = rate(report.records.total, t0);
  const c = process.cpuUsage(c0);
  if (!report.ok) throw new Error(`benchmark ledger does not verify: ${JSON.stringify(report.failures[0])}`);
  return { rate: r, cpuMicros: (c.user + c.system) / report.records.total };
}

const dir = mkdtempSync(join(tmpdir(), 'witness-bench-'));
try {
  if (values.threshold) await threshold();
  else await main();
} finally {
  rmSync(dir, { recursive: true, force: true });
}

async function main(): Promise<void> {
  const m = {
    append: [] as number[],
    floor: [] as number[],
    shaBuffer: [] as number[],
    shaString: [] as number[],
    sha2Threads: [] as number[],
    verify1: [] as number[],
    verify1Cpu: [] as number[],
    verifyN: [] as number[],
    verifyNCpu: [] as number[],
  };
  let avgBytes = 0;
  for (let r = 0; r < ROUNDS; r++) {
    const a = await appendRound(dir, RECORDS);
    m.append.push(a.rate);
    m.floor.push(await floorRate(RECORDS));
    {
      // Scoped: the 200,000 line views are garbage before verifyLedger runs, not live objects
      // its GC must trace (they cost it ~0.5 µs CPU per record in this process).
      const lines = ledgerLines(a.ledgerDir);
      avgBytes = lines.reduce((n, l) => n + l.length, 0) / lines.length;
      m.shaBuffer.push(rawSha256Rate(lines, 'buffer'));
      m.shaString.push(rawSha256Rate(lines, 'binary'));
      m.sha2Threads.push(await twoThreadShaRate(lines));
    }
    const single = await verifyRound(a, { workers: 0 });
    m.verify1.push(single.rate);
    m.verify1Cpu.push(single.cpuMicros);
    const auto = await verifyRound(a, {});
    m.verifyN.push(auto.rate);
    m.verifyNCpu.push(auto.cpuMicros);
    rmSync(a.ledgerDir, { recursive: true, force: true });
  }
  const md = Object.fromEntries(Object.entries(m).map(([k, v]) => [k, median(v)])) as Record<keyof typeof m, number>;
  const ratio = (x: number, base: number): number => +(x / base).toFixed(3);
  const result = {
    machine: machineInfo(),
    records: RECORDS,
    rounds: ROUNDS,
    avgRecordBytes: Math.round(avgBytes),
    rawSha256PerSec: Math.round(md.shaBuffer),
    rawSha256StringDigestPerSec: Math.round(md.shaString),
    rawSha256StringDigestTwoThreadsPerSec: Math.round(md.sha2Threads),
    appendPerSec: Math.round(md.append),
    appendFloorPerSec: Math.round(md.floor),
    verifySingleThreadPerSec: Math.round(md.verify1),
    verifyPerSec: Math.round(md.verifyN),
    verifyCpuMicrosPerRecord: { singleThread: +md.verify1Cpu.toFixed(2), default: +md.verifyNCpu.toFixed(2) },
    appendVsSha256: ratio(md.append, md.shaBuffer),
    appendVsFloor: ratio(md.append, md.floor),
    verifySingleThreadVsSha256: ratio(md.verify1, md.shaBuffer),
    verifyVsSha256: ratio(md.verifyN, md.shaBuffer),
    verifyVsSha256StringDigest: ratio(md.verifyN, md.shaString),
  };
  if (values.json) {
    console.log(JSON.stringify(result, null, 2));
    return;
  }
  const row = (name: string, perSec: number, ratios: string): void => console.log(`${name.padEnd(40)}${Math.round(perSec).toLocaleString().padStart(11)} /s   ${ratios}`);
  const x = (v: number, base: number): string => `${(v / base).toFixed(3)}×`;
  console.log(`machine: ${formatMachine(result.machine)}`);
  console.log(`${RECORDS} records of ~${result.avgRecordBytes} B, median of ${ROUNDS} rounds; ratios to the baselines of the same run (A = Buffer digest, B = string digest)`);
  row('raw SHA-256, Buffer digest (A)', md.shaBuffer, '(baseline A)');
  row('raw SHA-256, string digest (B)', md.shaString, `(baseline B)  ${x(md.shaString, md.shaBuffer)} A`);
  row('raw SHA-256, string digest, 2 threads', md.sha2Threads, `${x(md.sha2Threads, md.shaString)} B   (what a second thread adds now)`);
  row('append, fsync per batch', md.append, `${x(md.append, md.shaBuffer)} A   ${x(md.append, md.floor)} floor   (target ≥ 150,000/s)`);
  row('append floor (record+JSON+hash+promise)', md.floor, `${x(md.floor, md.shaBuffer)} A`);
  row('witness verify, single-threaded', md.verify1, `${x(md.verify1, md.shaBuffer)} A   ${x(md.verify1, md.shaString)} B   ${md.verify1Cpu.toFixed(2)} µs CPU/record`);
  row('witness verify (default: + workers)', md.verifyN, `${x(md.verifyN, md.shaBuffer)} A   ${x(md.verifyN, md.shaString)} B   ${md.verifyNCpu.toFixed(2)} µs CPU/record   (target ≥ 0.8×)`);
}

/** Verify rates with and without a worker, by ledger size: where the worker starts to pay. */
async function threshold(): Promise<void> {
  console.log(`machine: ${formatMachine(machineInfo())}`);
  console.log('records    MiB   single-threaded /s   1 worker /s   worker / single   (median of 7)');
  for (const count of [5_000, 10_000, 25_000, 50_000, 100_000, 200_000]) {
    const a = await appendRound(dir, count);
    const bytes = readdirSync(join(a.ledgerDir, 'segments')).reduce((n, f) => n + (f.endsWith('.jsonl') ? readFileSync(join(a.ledgerDir, 'segments', f)).length : 0), 0);
    const single: number[] = [];
    const worker: number[] = [];
    for (let r = 0; r < 7; r++) {
      single.push((await verifyRound(a, { workers: 0 })).rate);
      worker.push((await verifyRound(a, { workers: 1 })).rate);
    }
    const s = median(single);
    const w = median(worker);
    console.log(`${String(count).padStart(7)} ${(bytes / 2 ** 20).toFixed(1).padStart(6)} ${Math.round(s).toLocaleString().padStart(20)} ${Math.round(w).toLocaleString().padStart(13)} ${(w / s).toFixed(2).padStart(17)}`);
    rmSync(a.ledgerDir, { recursive: true, force: true });
  }
}
