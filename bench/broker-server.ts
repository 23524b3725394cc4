/**
 * One server under test for bench/broker.ts, in a process of its own so that the load generator
 * never shares its event loop. Every kind listens on 127.0.0.1:0 through the same listener code
 * path as broker/server.ts (`net.createServer((s) => aedes.handle(s))`, socket defaults):
 *
 *   plain    aedes 1.2 with no plugin;
 *   witness  startBroker (broker/server.ts) on a fresh data directory, with the config file read
 *            by loadConfig and the security built by buildSecurity, as `witness broker` does;
 *   sink     a trivial MQTT 3.1.1 relay that answers at once and forwards every PUBLISH as QoS 0
 *            to every subscriber: what the load generator reaches when the server costs ~nothing.
 *
 * Protocol (one JSON object per line on stdout):
 *   → {"port":N}                                  once listening
 *   stdin `usage`  → {"usage":Usage}              CPU time so far and peak RSS
 *   stdin `stop`, SIGTERM, or stdin closed → {"stopped":Usage}, then exit 0 (witness: after
 *   broker.stop(), i.e. with the ledger's final checkpoint)
 *
 * Usage: node dist/bench/broker-server.js --kind plain|witness|sink [--data DIR] [--config FILE]
 */
import { createServer as createNetServer, type Server as NetServer, type Socket, type AddressInfo } from 'node:net';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { Aedes } from 'aedes';
import { startBroker, type ListenerSpec, type RunningBroker } from '../broker/server.js';
import { loadConfig } from '../broker/config/index.js';
import { buildSecurity } from '../broker/cli/broker-config.js';
import { mainThreadCpuUs } from './machine.js';

export type ServerKind = 'plain' | 'witness' | 'sink';
const SERVER_KINDS: readonly ServerKind[] = ['plain', 'witness', 'sink'];

/** What the runner reports about itself (bench/broker.ts imports this type only: importing the
 * module would run it). */
export interface Usage {
  /** process.cpuUsage() since start, µs (all threads: libuv's fs pool and GC included). */
  userUs: number;
  systemUs: number;
  /** CPU of the main thread alone (the event loop aedes runs on), µs: /proc/self/task/PID/stat; undefined off Linux. */
  mainThreadUs?: number;
  /** process.resourceUsage().maxRSS: peak resident set, KiB. */
  maxRssKiB: number;
  /** Records the Witness ledger assigned so far (witness only). */
  records?: number;
  /** Batches the Witness ledger wrote so far (witness only): records per batch = Δrecords / Δbatches. */
  batches?: number;
}

/** The config of the Witness child: level metadata, envelope off (see the file). */
const DEFAULT_BENCH_CONFIG = fileURLToPath(new URL('../../bench/broker-config.yaml', import.meta.url));

/** The one listener every kind gets, so that only the broker differs. */
const LISTENER: ListenerSpec = { type: 'mqtt', host: '127.0.0.1', port: 0 };

interface Running {
  port: number;
  records?: () => number;
  batches?: () => number;
  stop(): Promise<void>;
}

async function listen(server: NetServer): Promise<number> {
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(LISTENER.port, LISTENER.host, () => {
      server.removeListener('error', reject);
      resolve();
    });
  });
  return (server.address() as AddressInfo).port;
}

async function startPlain(): Promise<Running> {
  const aedes = new Aedes();
  await aedes.listen();
  const handle = aedes.handle as unknown as (stream: Socket) => void;
  const server = createNetServer((s) => handle(s));
  const port = await listen(server);
  return {
    port,
    async stop() {
      // aedes first, then the server: the order broker/server.ts uses.
      await new Promise<void>((r) => aedes.close(() => r()));
      await new Promise<void>((r) => server.close(() => r()));
    },
  };
}

async function startWitness(dataDir: string, configPath: string): Promise<Running> {
  const cfg = loadConfig(configPath);
  const broker: RunningBroker = await startBroker({
    dataDir,
    listeners: [LISTENER],
    ledger: cfg.ledger,
    ...(cfg.verifyThreads !== undefined ? { verifyThreads: cfg.verifyThreads } : {}),
    security: (ctx) => buildSecurity(cfg, ctx.dataDir),
    startFields: { config: cfg.file ?? null, configSha256: cfg.sha256 ?? null },
  });
  const url = broker.urls[0];
  if (url === undefined) throw new Error('witness broker: no listener bound');
  return {
    port: Number(new URL(url).port),
    records: () => broker.ledger.nextIndex,
    batches: () => broker.ledger.stats.batches,
    stop: () => broker.stop('benchmark done'),
  };
}

// ── the sink: the least a server can do per message ───────────────────────────────────────────

const CONNACK_OK = Buffer.from([0x20, 0x02, 0x00, 0x00]); // [MQTT-3.2.2-3] session present 0, rc 0
const PINGRESP = Buffer.from([0xd0, 0x00]);

/** MQTT Remaining Length (variable byte integer, MQTT 3.1.1 §2.2.3). */
function remainingLength(n: number): Buffer {
  const out: number[] = [];
  do {
    let b = n % 128;
    n = Math.floor(n / 128);
    if (n > 0) b |= 0x80;
    out.push(b);
  } while (n > 0);
  return Buffer.from(out);
}

async function startSink(): Promise<Running> {
  const sockets = new Set<Socket>();
  const subscribers = new Set<Socket>();
  /** Publishers paused because a subscriber's socket buffer is full (bounded memory). */
  const paused = new Set<Socket>();
  const blocked = new Set<Socket>();
  const unblock = (sub: Socket): void => {
    blocked.delete(sub);
    if (blocked.size > 0) return;
    for (const p of paused) p.resume();
    paused.clear();
  };

  // What the subscribers get is written once per turn of the event loop, not once per incoming
  // chunk: with 100 publishers that is one write instead of up to 100 (the sink must stay cheap).
  let outbox: Buffer[] = [];
  let flushScheduled = false;
  const flush = (): void => {
    flushScheduled = false;
    const out = Buffer.concat(outbox);
    outbox = [];
    for (const sub of subscribers) {
      if (!sub.write(out) && !blocked.has(sub)) {
        blocked.add(sub);
        sub.once('drain', () => unblock(sub));
      }
    }
  };
  const server = createNetServer((sock) => {
    sockets.add(sock);
    let pending: Buffer = Buffer.alloc(0);
    sock.on('error', () => sock.destroy());
    sock.on('close', () => {
      sockets.delete(sock);
      subscribers.delete(sock);
      paused.delete(sock);
      if (blocked.has(sock)) unblock(sock);
    });
    sock.on('data', (chunk: Buffer) => {
      const buf = pending.length === 0 ? chunk : Buffer.concat([pending, chunk]);
      const replies: Buffer[] = [];
      const forward: Buffer[] = [];
      let off = 0;
      // One pass over the complete packets in the buffer; a partial one waits for more data.
      for (;;) {
        if (buf.length - off < 2) break;
        let len = 0;
        let mul = 1;
        let p = off + 1;
        let complete = false;
        for (let k = 0; k < 4 && p < buf.length; k++) {
          const b = buf[p++]!;
          len += (b & 0x7f) * mul;
          mul *= 128;
          if ((b & 0x80) === 0) {
            complete = true;
            break;
          }
        }
        if (!complete || p + len > buf.length) break;
        const first = buf[off]!;
        const body = buf.subarray(p, p + len);
        switch (first >> 4) {
          case 1: // CONNECT
            replies.push(CONNACK_OK);
            break;
          case 3: {
            // PUBLISH: topic, [packet id if QoS > 0], payload (§3.3.2)
            const qos = (first >> 1) & 3;
            const topicEnd = 2 + body.readUInt16BE(0);
            if (qos === 0) {
              forward.push(buf.subarray(off, p + len));
            } else if (qos === 1) {
              replies.push(Buffer.from([0x40, 0x02, body[topicEnd]!, body[topicEnd + 1]!])); // PUBACK
              forward.push(Buffer.from([0x30]), remainingLength(len - 2), body.subarray(0, topicEnd), body.subarray(topicEnd + 2));
            } else {
              sock.destroy(); // QoS 2 is not part of this benchmark
              return;
            }
            break;
          }
          case 8: {
            // SUBSCRIBE: packet id, then (filter, requested QoS)*; every filter granted QoS 0
            let n = 0;
            for (let q = 2; q + 2 <= body.length; q += 2 + body.readUInt16BE(q) + 1) n++;
            replies.push(Buffer.from([0x90, 2 + n, body[0]!, body[1]!, ...new Array<number>(n).fill(0)]));
            subscribers.add(sock);
            break;
          }
          case 10: // UNSUBSCRIBE
            replies.push(Buffer.from([0xb0, 0x02, body[0]!, body[1]!]));
            break;
          case 12: // PINGREQ
            replies.push(PINGRESP);
            break;
          case 14: // DISCONNECT
            sock.end();
            return;
          default: // PUBACK from a subscriber and the like: nothing to do
            break;
        }
        off = p + len;
      }
      pending = off === buf.length ? Buffer.alloc(0) : Buffer.from(buf.subarray(off));
      if (replies.length > 0) sock.write(replies.length === 1 ? replies[0]! : Buffer.concat(replies));
      if (forward.length > 0 && subscribers.size > 0) {
        for (const f of forward) outbox.push(f);
        if (!flushScheduled) {
          flushScheduled = true;
          setImmediate(flush);
        }
      }
      if (blocked.size > 0 && !paused.has(sock)) {
        paused.add(sock);
        sock.pause();
      }
    });
  });
  const port = await listen(server);
  return {
    port,
    async stop() {
      for (const s of sockets) s.destroy();
      await new Promise<void>((r) => server.close(() => r()));
    },
  };
}

// ── main ─────────────────────────────────────────────────────────────────────────────────────

function usage(r: Running): Usage {
  const cpu = process.cpuUsage();
  const u: Usage = { userUs: cpu.user, systemUs: cpu.system, maxRssKiB: process.resourceUsage().maxRSS };
  const main = mainThreadCpuUs();
  if (main !== undefined) u.mainThreadUs = main;
  if (r.records) u.records = r.records();
  if (r.batches) u.batches = r.batches();
  return u;
}

async function main(): Promise<void> {
  const { values } = parseArgs({ options: { kind: { type: 'string' }, data: { type: 'string' }, config: { type: 'string' } } });
  const kind = values.kind as ServerKind;
  if (!SERVER_KINDS.includes(kind)) throw new Error(`--kind: expected one of ${SERVER_KINDS.join(', ')}, got ${JSON.stringify(values.kind)}`);
  if (kind === 'witness' && !values.data) throw new Error('--kind witness needs --data DIR (a fresh directory)');

  const running = kind === 'plain' ? await startPlain() : kind === 'sink' ? await startSink() : await startWitness(values.data!, values.config ?? DEFAULT_BENCH_CONFIG);
  const say = (o: unknown): void => void process.stdout.write(JSON.stringify(o) + '\n');
  say({ port: running.port });

  let stopping = false;
  const stop = async (): Promise<void> => {
    if (stopping) return;
    stopping = true;
    await running.stop();
    say({ stopped: usage(running) });
    // process.exit (not a natural end): --cpu-prof still writes its profile on this path.
    process.exit(0);
  };
  process.on('SIGTERM', () => void stop());
  const lines = createInterface({ input: process.stdin });
  lines.on('line', (line) => {
    const cmd = line.trim();
    if (cmd === 'usage') say({ usage: usage(running) });
    else if (cmd === 'stop') void stop();
  });
  // The parent went away: do not linger as an orphan holding a port.
  lines.on('close', () => void stop());
}

main().catch((e: unknown) => {
  process.stderr.write(`broker-server: ${(e as Error).stack ?? String(e)}\n`);
  process.exit(1);
});
