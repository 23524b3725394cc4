/**
 * Merkle hot paths against a baseline measured in the same run: SHA-256 of a 256-byte record
 * through @noble/hashes (the portable path). Prints ops/s, the ratio to the baseline, and the
 * machine. Run: npx tsc -p tsconfig.json && node dist/bench/merkle.js
 */
import { sha256 } from '@noble/hashes/sha2.js';
import { CompactRange, inclusionProof, leafHash, memoryNodeSource, nodeHash, verifyInclusion } from '../shared/merkle/index.js';
import { formatMachine, machineInfo } from './machine.js';

function measure(name: string, fn: () => void, ms = 500): number {
  for (let i = 0; i < 1000; i++) fn(); // warm up
  let n = 0;
  const start = performance.now();
  while (performance.now() - start < ms) {
    for (let i = 0; i < 100; i++) fn();
    n += 100;
  }
  const rate = (n * 1000) / (performance.now() - start);
  rows.push([name, rate]);
  return rate;
}

async function measureAsync(name: string, fn: () => Promise<void>, ms = 500): Promise<number> {
  let n = 0;
  const start = performance.now();
  while (performance.now() - start < ms) {
    await fn();
    n++;
  }
  const rate = (n * 1000) / (performance.now() - start);
  rows.push([name, rate]);
  return rate;
}

const rows: Array<[string, number]> = [];
const record = new Uint8Array(256).map((_, i) => i);
const prefixed = new Uint8Array(257);
prefixed.set(record, 1);
const a = leafHash(record);
const b = leafHash(a);

const baseline = measure('baseline: @noble/hashes SHA-256(0x00 || 256 B)', () => void sha256(prefixed));
measure('leafHash(256 B) (node:crypto)', () => void leafHash(record));
measure('nodeHash', () => void nodeHash(a, b));
const range = new CompactRange();
measure('CompactRange.append', () => range.append(a));

const leaves = Array.from({ length: 2 ** 16 }, (_, i) => leafHash(Uint8Array.of(i % 256, Math.floor(i / 256))));
const source = memoryNodeSource(leaves);
const size = leaves.length - 3;
const proof = await inclusionProof(12_345, size, source);
const root = await (async () => {
  const r = new CompactRange();
  for (const l of leaves.slice(0, size)) r.append(l);
  return r.root();
})();
let i = 0;
await measureAsync(`inclusionProof (memory source, n = ${size})`, async () => {
  await inclusionProof(i++ % size, size, source);
});
measure(`verifyInclusion (n = ${size})`, () => verifyInclusion(12_345, size, leaves[12_345]!, proof, root));

console.log(formatMachine(machineInfo()));
for (const [name, rate] of rows) {
  console.log(`${name.padEnd(52)} ${Math.round(rate).toLocaleString('en').padStart(12)} /s   ×${(rate / baseline).toFixed(2)}`);
}
