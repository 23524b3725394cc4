/**
 * What handing work to another thread costs on this machine (issue 7: why the ledger lingers,
 * shared/ledger/writer.ts lingerMs): CPU of the whole process per round trip to a worker that
 * does nothing, with the main thread busy for --gap µs between round trips (as the broker is
 * between batches), against the same busy loop with no hand-off in the same run.
 *
 *   none        — the busy loop alone (the baseline)
 *   message     — postMessage of a small object to the worker, reply by postMessage (awaited)
 *   transfer    — the same carrying a 64 KiB ArrayBuffer transferred both ways (the ledger's job)
 *   futex       — Atomics.notify to wake the worker, which stores a flag; the main thread reads
 *                 the flag after its busy loop (no message, no wake of the main thread)
 *
 * Also printed: the time the postMessage call itself takes on the main thread.
 * Usage: node dist/bench/handoff.js [--trips N] [--gap US] [--rounds R] [--json]
 */
import { parseArgs } from 'node:util';
import { Worker } from 'node:worker_threads';
import { machineInfo, formatMachine, median, spin } from './machine.js';

const { values } = parseArgs({ options: { trips: { type: 'string' }, gap: { type: 'string' }, rounds: { type: 'string' }, json: { type: 'boolean' } } });
const TRIPS = Number(values.trips ?? 2000);
const GAP_US = Number(values.gap ?? 800);
const ROUNDS = Number(values.rounds ?? 3);
for (const [name, v] of [['--trips', TRIPS], ['--gap', GAP_US], ['--rounds', ROUNDS]] as const) {
  if (!Number.isSafeInteger(v) || v < 1) {
    console.error(`handoff: ${name} must be a whole number ≥ 1, got ${String(v)}`);
    process.exit(2);
  }
}

const WORKER_SOURCE = `
const { parentPort, workerData } = require('node:worker_threads');
const st = new Int32Array(workerData);
parentPort.on('message', (m) => {
  if (m && m.futex) {
    // Futex mode: serve notifications until told to stop (st[0]: 0 idle, 1 job, 2 done, 3 stop).
    for (;;) {
      const v = Atomics.load(st, 0);
      if (v === 3) break;
      if (v === 1) { st[1]++; Atomics.store(st, 0, 2); continue; }
      Atomics.wait(st, 0, v);
    }
    parentPort.postMessage('stopped');
    return;
  }
  parentPort.postMessage(m, m && m.data ? [m.data] : []);
});
`;

type Mode = 'none' | 'message' | 'transfer' | 'futex';

async function run(mode: Mode): Promise<{ extraUs: number; postUs: number }> {
  const sab = new SharedArrayBuffer(8);
  const st = new Int32Array(sab);
  const w = new Worker(WORKER_SOURCE, { eval: true, workerData: sab });
  await new Promise<void>((r) => {
    w.once('message', () => r());
    w.postMessage({ warm: 1 });
  });
  const stopped = mode === 'futex' ? new Promise<void>((r) => w.once('message', () => r())) : undefined;
  if (mode === 'futex') w.postMessage({ futex: true });
  let buf = new ArrayBuffer(64 * 1024);
  let postNs = 0n;
  let spinNs = 0n;
  const c0 = process.cpuUsage();
  for (let i = 0; i < TRIPS; i++) {
    if (mode === 'message' || mode === 'transfer') {
      const reply = new Promise<{ data?: ArrayBuffer }>((r) => w.once('message', r));
      const t0 = process.hrtime.bigint();
      if (mode === 'transfer') w.postMessage({ id: i, data: buf, end: 100, count: 50 }, [buf]);
      else w.postMessage({ id: i });
      postNs += process.hrtime.bigint() - t0;
      const m = await reply;
      if (m.data) buf = m.data;
    } else if (mode === 'futex') {
      Atomics.store(st, 0, 1);
      Atomics.notify(st, 0);
    }
    const s0 = process.hrtime.bigint();
    spin(GAP_US);
    spinNs += process.hrtime.bigint() - s0;
    if (mode === 'futex') {
      // Bounded: the worker has had GAP_US µs; wait at most 1 s more for it.
      const deadline = Date.now() + 1000;
      while (Atomics.load(st, 0) !== 2 && Date.now() < deadline);
      if (Atomics.load(st, 0) !== 2) throw new Error('handoff: worker did not answer within 1 s');
      Atomics.store(st, 0, 0);
    }
  }
  const c = process.cpuUsage(c0);
  if (mode === 'futex') {
    Atomics.store(st, 0, 3);
    Atomics.notify(st, 0);
    await stopped;
  }
  await w.terminate();
  const cpuUs = c.user + c.system;
  return { extraUs: (cpuUs - Number(spinNs) / 1000) / TRIPS, postUs: Number(postNs) / 1000 / TRIPS };
}

const MODES: Mode[] = ['none', 'message', 'transfer', 'futex'];
const results: Record<string, Array<{ extraUs: number; postUs: number }>> = {};
for (let r = 0; r < ROUNDS; r++) for (const m of MODES) (results[m] ??= []).push(await run(m));
const rows = MODES.map((m) => ({ mode: m, extraUs: median(results[m]!.map((x) => x.extraUs)), postUs: median(results[m]!.map((x) => x.postUs)), rounds: results[m] }));
const base = rows[0]!.extraUs;
if (values.json) {
  console.log(JSON.stringify({ machine: machineInfo(), trips: TRIPS, gapUs: GAP_US, rows }, null, 2));
} else {
  console.log(formatMachine(machineInfo()));
  console.log(`${TRIPS} round trips per round, ${GAP_US} µs busy between them, ${ROUNDS} rounds (interleaved), medians`);
  console.log('mode        CPU µs per trip beyond the busy loop   − none   postMessage call µs');
  for (const r of rows) console.log(`${r.mode.padEnd(10)} ${r.extraUs.toFixed(1).padStart(38)} ${(r.extraUs - base).toFixed(1).padStart(8)} ${(r.mode === 'message' || r.mode === 'transfer' ? r.postUs.toFixed(1) : '—').padStart(20)}`);
}
