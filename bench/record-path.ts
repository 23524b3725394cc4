/**
 * What the broker's publish record costs, step by step and per thread (issue 7 §2–3): the CPU
 * of the event loop (the thread aedes runs on) and of the whole process (the ledger's I/O thread
 * included) per record, for the ways a metadata-level publish record can reach the ledger,
 * measured in the same run against a baseline that does no ledger work at all.
 *
 *   baseline  — build the fields only (what every way does first): the floor of this process
 *   json      — payload SHA-256 + the JSON line by template on the event loop (publishJson),
 *               Ledger.appendJsonLoose: the broker's path until the deferred entry
 *   line      — Ledger.appendPublishLoose with the hash: the line written into the batch as bytes
 *               (shared/ledger/publish-line.ts), payload SHA-256 on the event loop
 *   line-io   — the same without the hash: the payload goes to the batch's side buffer and the
 *               I/O thread hashes it into the line (what the broker does)
 *
 * Each feeds N records in turns of K (one turn = the records aedes hands over from one poll of
 * the sockets), fsync `batch`, ~280-byte lines, and reports µs of CPU per record — event loop
 * (its /proc/self/task/PID/stat) and all threads (process.cpuUsage) — and the batch count.
 * These machines are noisy: compare the rows of one run, and the medians of the rounds.
 *
 * Usage: node dist/bench/record-path.js [--records N] [--turn K] [--work US] [--payload B] [--rounds R] [--ways a,b] [--json]
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { hash } from 'node:crypto';
import { parseArgs } from 'node:util';
import { initDataDir, openSigning } from '../broker/data-dir.js';
import { Ledger } from '../shared/ledger/writer.js';
import { jsonString, publishJson, socketPartJson } from '../shared/ledger/publish-json.js';
import { publishEnv, publishMiddle, type PublishLine } from '../shared/ledger/publish-line.js';
import { machineInfo, formatMachine, mainThreadCpuUs, median, spin } from './machine.js';

const { values } = parseArgs({
  options: { records: { type: 'string' }, turn: { type: 'string' }, payload: { type: 'string' }, rounds: { type: 'string' }, json: { type: 'boolean' }, ways: { type: 'string' }, work: { type: 'string' }, fsync: { type: 'string' }, io: { type: 'string' }, linger: { type: 'string' } },
});
const RECORDS = Number(values.records ?? 200_000);
const TURN = Number(values.turn ?? 50);
const PAYLOAD = Number(values.payload ?? 64);
const ROUNDS = Number(values.rounds ?? 3);
const WAYS = (values.ways ?? 'baseline,json,line,line-io').split(',');
/**
 * µs of other work per record on the event loop (a spin): the broker's own per-message work
 * (plain aedes spends 10–16 µs of CPU per QoS 0 message here), which sets how many records one
 * batch gathers while the I/O thread writes the previous one — and so the per-batch costs.
 */
const WORK_US = Number(values.work ?? 0);
const FSYNC = (values.fsync ?? 'batch') as 'batch' | 'interval' | 'never';
if (!['batch', 'interval', 'never'].includes(FSYNC)) {
  console.error(`record-path: --fsync must be batch, interval or never, got ${FSYNC}`);
  process.exit(2);
}
/** --io thread|pool: the ledger's I/O thread (default) or the caller's event loop and the libuv pool. */
const IO_THREAD = (values.io ?? 'thread') === 'thread';
/** --linger MS: the ledger's lingerMs (default: the ledger's default). */
const LINGER = values.linger === undefined ? undefined : Number(values.linger);
for (const [name, v] of [['--records', RECORDS], ['--turn', TURN], ['--payload', PAYLOAD], ['--rounds', ROUNDS], ['--work', WORK_US]] as const) {
  const zeroOk = name === '--payload' || name === '--work';
  if (!Number.isSafeInteger(v) || v < (zeroOk ? 0 : 1)) {
    console.error(`record-path: ${name} must be a whole number${zeroOk ? '' : ' ≥ 1'}, got ${String(v)}`);
    process.exit(2);
  }
}

/** CPU seconds of this process's main thread (the event loop); Linux only. */
function mainThreadCpu(): number {
  const us = mainThreadCpuUs();
  if (us === undefined) throw new Error('record-path: needs /proc/self/task (Linux) for the event loop CPU');
  return us / 1e6;
}

function allThreadsCpu(): number {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1e6;
}

type Way = 'baseline' | 'json' | 'line' | 'line-io';

async function run(way: Way): Promise<{ mainUs: number; allUs: number; batches: number }> {
  const dir = mkdtempSync(join(tmpdir(), 'witness-record-path-'));
  try {
    await initDataDir(dir, 'bench-node');
    const s = openSigning(dir);
    const ledger = await Ledger.open(join(dir, 'ledger'), { origin: s.manifest.origin, signer: s.signer, seal: s.seal, checkpointEveryMs: 3_600_000, fsync: FSYNC, ioThread: IO_THREAD, ...(LINGER !== undefined ? { lingerMs: LINGER } : {}) });
    const payloads = Array.from({ length: 64 }, (_, k) => Buffer.alloc(PAYLOAD, k));
    const sockets = Array.from({ length: 10 }, (_, k) => ({
      pj: socketPartJson('"bench-node"', `sess-${k}`, `device-${k}`, `device:device-${k}+1a2b3c4d`, `127.0.0.1:${50_000 + k}`),
      topicJson: jsonString(`devices/device-${k}/telemetry/temperature`),
    }));
    const middles = sockets.map((x) => publishMiddle(x.pj, x.topicJson));
    const f: PublishLine = { t: 0, u: 0, middle: middles[0]!, q: 0, retain: false, dup: false, messageId: undefined, payload: payloads[0]!, rule: undefined, env: publishEnv('unchecked') };
    let failed = 0;
    const onError = (): void => {
      failed++;
    };
    let sink = 0;
    const batchesBefore = ledger.stats.batches;
    const m0 = mainThreadCpu();
    const a0 = allThreadsCpu();
    let n = 0;
    await new Promise<void>((resolve) => {
      const turn = (): void => {
        for (let k = 0; k < TURN && n < RECORDS; k++, n++) {
          if (WORK_US > 0) spin(WORK_US);
          const sk = n % 10;
          const t = 1_732_363_200_000 + n;
          const payload = payloads[n & 63]!;
          if (way === 'json') {
            const json = publishJson(t, 3, sockets[sk]!.pj, sockets[sk]!.topicJson, 0, false, false, undefined, payload.length, hash('sha256', payload, 'base64url'), undefined, 'unchecked');
            ledger.appendJsonLoose(json, onError);
          } else {
            f.t = t;
            f.u = 3;
            f.middle = middles[sk]!;
            f.payload = payload;
            if (way === 'line') ledger.appendPublishLoose(f, onError, hash('sha256', payload, 'base64url'));
            else if (way === 'line-io') ledger.appendPublishLoose(f, onError);
            else sink += f.middle.length + f.payload.length;
          }
        }
        if (n < RECORDS) setImmediate(turn);
        else resolve();
      };
      setImmediate(turn);
    });
    await ledger.checkpoint();
    const mainUs = ((mainThreadCpu() - m0) / RECORDS) * 1e6;
    const allUs = ((allThreadsCpu() - a0) / RECORDS) * 1e6;
    const batches = ledger.stats.batches - batchesBefore;
    await ledger.close();
    if (failed > 0) throw new Error(`${failed} appends failed`);
    if (sink < 0) console.log(sink);
    return { mainUs, allUs, batches };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

const machine = machineInfo();
if (!values.json) {
  console.log(formatMachine(machine));
  console.log(`${RECORDS.toLocaleString('en')} records per round in turns of ${TURN}, ${WORK_US} µs of other work per record, ${PAYLOAD} B payload, fsync ${FSYNC}, ${IO_THREAD ? 'I/O thread' : 'no I/O thread'}, linger ${LINGER ?? 'default'} ms, ${ROUNDS} rounds (interleaved), medians`);
}
const results: Record<string, Array<{ mainUs: number; allUs: number; batches: number }>> = {};
for (let r = 0; r < ROUNDS; r++) {
  for (const way of WAYS as Way[]) (results[way] ??= []).push(await run(way));
}
const rows = WAYS.map((way) => {
  const rs = results[way]!;
  return { way, mainUs: median(rs.map((x) => x.mainUs)), allUs: median(rs.map((x) => x.allUs)), batches: median(rs.map((x) => x.batches)), rounds: rs };
});
const base = rows.find((r) => r.way === 'baseline');
if (values.json) {
  console.log(JSON.stringify({ machine, records: RECORDS, turn: TURN, workUs: WORK_US, payload: PAYLOAD, rows }, null, 2));
} else {
  console.log('way        event loop µs/rec   all threads µs/rec   − baseline (loop / all)   batches');
  for (const r of rows) {
    const dl = base ? (r.mainUs - base.mainUs).toFixed(2) : '–';
    const da = base ? (r.allUs - base.allUs).toFixed(2) : '–';
    console.log(`${r.way.padEnd(10)} ${r.mainUs.toFixed(2).padStart(18)} ${r.allUs.toFixed(2).padStart(20)}   ${`${dl} / ${da}`.padStart(22)}   ${String(r.batches).padStart(7)}`);
  }
}
