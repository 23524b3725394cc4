/**
 * Ed25519 and envelope throughput: node:crypto (OpenSSL) against @noble/ed25519 (pure JS),
 * measured in the same run, one core. DESIGN §3 picks node:crypto for the hot paths on the
 * strength of this ratio; re-run it when Node, OpenSSL or noble change.
 *
 *   node dist/bench/ed25519.js [--json] [--seconds S]     (S per measurement, default 2)
 *
 * Rows: raw sign and verify (strict verifyOrThrow, as the broker runs it); envelope sign+encode
 * (what the agent does per publish) and decode+verify (what the broker does per publish); and
 * decodeEnvelope alone, which needs no backend.
 */
import { formatMachine, machineInfo } from './machine.js';
import { nodeBackend, publicKeyFromSeed, sign, verifyOrThrow, type Ed25519Backend } from '../shared/keys/ed25519.js';
import { nobleBackend } from '../shared/keys/ed25519-noble.js';
import { deviceKid } from '../shared/keys/key-id.js';
import { decodeEnvelope, GENESIS_PREV, signEnvelope, verifyEnvelope, type EnvelopeClaims } from '../shared/envelope/index.js';

interface Row {
  op: string;
  node: number;
  noble: number | null;
}

const args = process.argv.slice(2);
const json = args.includes('--json');
const secondsArg = args.indexOf('--seconds');
const seconds = secondsArg >= 0 ? Number(args[secondsArg + 1]) : 2;
if (!Number.isFinite(seconds) || seconds <= 0) {
  console.error('usage: node dist/bench/ed25519.js [--json] [--seconds S]');
  process.exit(2);
}

/** Operations per second of `fn`, run for `seconds` after a short warm-up. */
function rate(fn: () => void): number {
  const warmUntil = performance.now() + Math.min(300, seconds * 200);
  while (performance.now() < warmUntil) fn();
  const start = performance.now();
  const end = start + seconds * 1000;
  let n = 0;
  let now = start;
  while (now < end) {
    // Check the clock every few calls only: noble's verify is ~1 ms, node's decode well under 1 µs.
    for (let i = 0; i < 16; i++) fn();
    n += 16;
    now = performance.now();
  }
  return (n * 1000) / (now - start);
}

const seed = new Uint8Array(32).map((_, i) => (i * 7 + 1) & 0xff);
const publicKey = publicKeyFromSeed(seed);
const message = new Uint8Array(256).map((_, i) => i & 0xff);
const signature = sign(seed, message);
const kid = deviceKid('bench-device', publicKey);
const claims: EnvelopeClaims = { time: 1_700_000_000_000, uncertainty: 20, timeSource: 'ntp', seq: 42, prev: GENESIS_PREV, topic: 'plant/7/line/3/temperature' };
const payload = new TextEncoder().encode(JSON.stringify({ t: 21.5, unit: 'C', sensor: 'pt100', ok: true, n: 123456 }).padEnd(64, ' '));
const envelope = signEnvelope({ seed, kid, claims, payload });

const perBackend: [string, (b: Ed25519Backend) => () => void][] = [
  ['sign (256 B)', (b) => () => void sign(seed, message, b)],
  ['verify (256 B, strict)', (b) => () => verifyOrThrow(publicKey, message, signature, b)],
  [`envelope sign+encode (${payload.length} B payload)`, (b) => () => void signEnvelope({ seed, kid, claims, payload }, b)],
  [`envelope decode+verify (${envelope.length} B)`, (b) => () => verifyEnvelope(decodeEnvelope(envelope), publicKey, b)],
];

const rows: Row[] = [];
for (const [op, make] of perBackend) {
  rows.push({ op, node: rate(make(nodeBackend)), noble: rate(make(nobleBackend)) });
}
rows.push({ op: `decodeEnvelope only (${envelope.length} B)`, node: rate(() => void decodeEnvelope(envelope)), noble: null });

const machine = { ...machineInfo(), openssl: process.versions.openssl };

if (json) {
  console.log(JSON.stringify({ bench: 'ed25519', machine, secondsPerRow: seconds, rows: rows.map((r) => ({ ...r, ratio: r.noble === null ? null : r.node / r.noble })) }, null, 2));
} else {
  const fmt = (n: number): string => Math.round(n).toLocaleString('en-US');
  const lines = rows.map((r) => [r.op, fmt(r.node), r.noble === null ? '—' : fmt(r.noble), r.noble === null ? '—' : `${(r.node / r.noble).toFixed(1)}x`]);
  const head = ['operation', 'node/s', 'noble/s', 'node/noble'];
  const w = head.map((h, i) => Math.max(h.length, ...lines.map((l) => l[i]!.length)));
  const row = (cells: string[]): string => cells.map((c, i) => (i === 0 ? c.padEnd(w[i]!) : c.padStart(w[i]!))).join('  ');
  console.log(`ed25519 bench — ${formatMachine(machine)} · OpenSSL ${machine.openssl}; ${seconds} s per measurement`);
  console.log(row(head));
  console.log(w.map((n) => '-'.repeat(n)).join('  '));
  for (const l of lines) console.log(row(l));
}
