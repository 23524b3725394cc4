/**
 * Child process of the outbox crash drill (test/agent/outbox/crash.test.ts): opens the outbox in
 * DIR and enqueues signed envelopes as fast as it can, acknowledging nine in ten. It prints
 *
 *   ready NEXTSEQ PREV_HEX                       once open
 *   E SEQ ENVELOPE_HASH_HEX PREV_HEX             for every enqueue() that resolved (durable)
 *   A SEQ                                        for every ack() that resolved (durable)
 *
 * The parent kills it with SIGKILL at a random moment. stdout is a pipe, and pipe writes are
 * synchronous on Linux, so a printed line was resolved before the kill.
 */
import { Outbox } from '../../agent/outbox/outbox.js';
import { decodeEnvelope, envelopeHash, signEnvelope } from '../../shared/envelope/index.js';
import { publicKeyFromSeed } from '../../shared/keys/ed25519.js';
import { deviceKid } from '../../shared/keys/key-id.js';

const [dir, round] = process.argv.slice(2) as [string, string];
// RFC 8032 §7.1 TEST 1 key.
const SEED = new Uint8Array(Buffer.from('9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60', 'hex'));
const KID = deviceKid('outbox-test', publicKeyFromSeed(SEED));
const TOPIC = `drill/${round}`;
const payload = new TextEncoder().encode(`{"round":${round},"pad":"${'x'.repeat(100)}"}`);
const hex = (b: Uint8Array): string => Buffer.from(b).toString('hex');

const outbox = await Outbox.open(dir, { segmentMaxBytes: 64 * 1024 });
process.stdout.write(`ready ${outbox.nextSeq} ${hex(outbox.prev)}\n`);

async function worker(): Promise<void> {
  for (;;) {
    const e = await outbox.enqueue(TOPIC, 1, false, (seq, prev) =>
      signEnvelope({ seed: SEED, kid: KID, claims: { time: Date.now(), uncertainty: 5, timeSource: 'system', seq, prev, topic: TOPIC }, payload }),
    );
    process.stdout.write(`E ${e.seq} ${hex(envelopeHash(e.envelope))} ${hex(decodeEnvelope(e.envelope).claims.prev)}\n`);
    if (e.seq % 10 !== 0) {
      await outbox.ack(e.seq);
      process.stdout.write(`A ${e.seq}\n`);
    }
  }
}
await Promise.all(Array.from({ length: 32 }, worker));
