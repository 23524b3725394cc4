/**
 * Crash drill: a child process (test/helpers/outbox-writer.ts) enqueues and acknowledges as fast
 * as it can and is killed with SIGKILL at random moments, ROUNDS times. After each kill, opening
 * the outbox (as a restarted agent would) must show:
 * - every entry whose enqueue() resolved, with its envelope, unless its ack may have been made;
 *   none whose ack() resolved;
 * - a next sequence number above every one ever resolved (no number reused), and a `prev` equal to
 *   the hash of the last durable entry — which the next child's first entry then carries.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { Outbox } from '../../../agent/outbox/outbox.js';
import { decodeEnvelope, envelopeHash, GENESIS_PREV, verifyEnvelope } from '../../../shared/envelope/index.js';
import { publicKeyFromSeed } from '../../../shared/keys/ed25519.js';
import { tempDir } from '../../helpers/tmp.js';

const ROUNDS = 12;
const child = new URL('../../helpers/outbox-writer.js', import.meta.url).pathname;
const PUB = publicKeyFromSeed(new Uint8Array(Buffer.from('9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60', 'hex')));
const hex = (b: Uint8Array): string => Buffer.from(b).toString('hex');

interface RoundOutput {
  ready: { next: number; prev: string };
  entries: Array<{ seq: number; hash: string; prev: string }>;
  acks: number[];
}

function runAndKill(dir: string, round: number, killAfterMs: number): Promise<RoundOutput> {
  return new Promise((resolve, reject) => {
    const p = spawn(process.execPath, [child, dir, String(round)], { stdio: ['ignore', 'pipe', 'pipe'] });
    const out: RoundOutput = { ready: { next: -1, prev: '' }, entries: [], acks: [] };
    let buf = '';
    let stderr = '';
    let timer: NodeJS.Timeout | undefined;
    const guard = setTimeout(() => p.kill('SIGKILL'), 10_000);
    p.stdout.on('data', (d: Buffer) => {
      buf += d.toString();
      let nl;
      while ((nl = buf.indexOf('\n')) >= 0) {
        const [kind, a, b, c] = buf.slice(0, nl).split(' ') as [string, string, string, string];
        buf = buf.slice(nl + 1);
        if (kind === 'ready') {
          out.ready = { next: Number(a), prev: b };
          timer = setTimeout(() => p.kill('SIGKILL'), killAfterMs);
        } else if (kind === 'E') out.entries.push({ seq: Number(a), hash: b, prev: c });
        else if (kind === 'A') out.acks.push(Number(a));
      }
    });
    p.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    p.on('exit', (code, signal) => {
      clearTimeout(timer);
      clearTimeout(guard);
      if (signal !== 'SIGKILL' || out.ready.next < 0) reject(new Error(`child exited ${code} ${signal}: ${stderr}`));
      else resolve(out);
    });
  });
}

test(`crash drill: SIGKILL ${ROUNDS} times while enqueueing and acking; nothing resolved is lost, no number reused`, { timeout: 60_000 }, async (t) => {
  const dir = tempDir(t, 'witness-outbox-drill-');
  let seed = 20240611;
  const rand = (): number => (seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31;
  const resolved = new Map<number, { hash: string; prev: string }>(); // every E line, all rounds
  const acked = new Set<number>();
  let expectNext = 0;
  let expectPrev = hex(GENESIS_PREV);
  let cuts = 0;

  for (let round = 0; round < ROUNDS; round++) {
    const out = await runAndKill(dir, round, 20 + Math.floor(rand() * 180));
    // The child starts where the last check left off.
    assert.deepEqual(out.ready, { next: expectNext, prev: expectPrev }, `round ${round}: ready`);
    for (const e of out.entries) {
      assert.ok(!resolved.has(e.seq), `round ${round}: seq ${e.seq} resolved twice (reused)`);
      assert.ok(e.seq >= out.ready.next, `round ${round}: seq ${e.seq} below the start ${out.ready.next}`);
      resolved.set(e.seq, { hash: e.hash, prev: e.prev });
      if (e.seq === out.ready.next) assert.equal(e.prev, out.ready.prev, `round ${round}: the first new entry does not continue the chain`);
    }
    for (const s of out.acks) acked.add(s);

    // Restart, as the agent would, and check.
    const ob = await Outbox.open(dir);
    try {
      if (ob.recovery.cutBytes > 0) cuts++;
      for (const s of resolved.keys()) assert.ok(s < ob.nextSeq, `round ${round}: seq ${s} was resolved, but the next seq is ${ob.nextSeq}`);
      const pending = new Map(ob.pending().map((e) => [e.seq, e]));
      for (const [s, { hash }] of resolved) {
        const e = pending.get(s);
        if (acked.has(s)) assert.equal(e, undefined, `round ${round}: seq ${s} was acknowledged but is pending`);
        else if (s % 10 === 0) {
          assert.ok(e, `round ${round}: seq ${s} resolved, never acked, and is missing`);
          assert.equal(hex(envelopeHash(e.envelope)), hash, `round ${round}: seq ${s} has another envelope`);
        }
      }
      const list = ob.pending();
      for (let k = 0; k < list.length; k++) {
        const env = decodeEnvelope(list[k]!.envelope);
        verifyEnvelope(env, PUB);
        assert.equal(env.claims.seq, list[k]!.seq);
        const before = list[k - 1];
        if (before && before.seq === list[k]!.seq - 1) assert.equal(hex(env.claims.prev), hex(envelopeHash(before.envelope)));
      }
      // prev is the hash of the last durable entry, wherever we know it from.
      const last = ob.nextSeq - 1;
      const lastKnown = pending.get(last) ? hex(envelopeHash(pending.get(last)!.envelope)) : resolved.get(last)?.hash;
      if (lastKnown !== undefined) assert.equal(hex(ob.prev), lastKnown, `round ${round}: prev is not the hash of entry ${last}`);
      // Across all rounds, each resolved entry's prev is the hash of the one before it, if resolved too.
      for (const [s, { prev }] of resolved) {
        const before = resolved.get(s - 1);
        if (before) assert.equal(prev, before.hash, `chain broken at ${s}`);
      }
      expectNext = ob.nextSeq;
      expectPrev = hex(ob.prev);
    } finally {
      await ob.close();
    }
  }
  assert.ok(resolved.size > ROUNDS * 20, `only ${resolved.size} enqueues resolved in ${ROUNDS} rounds`);
  t.diagnostic(`${resolved.size} entries resolved, ${acked.size} acks, ${cuts} torn tails cut, next seq ${expectNext}`);
});
