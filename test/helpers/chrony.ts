/**
 * A real chronyd serving NTP on 127.0.0.1 and a free high UDP port, for the trusted-clock tests
 * (DESIGN §4). `-x` keeps it away from the system clock; it serves this host's own clock, so an
 * offset measured against it is ~0. Without `local stratum` it has no time source and answers
 * unsynchronised (leap indicator 3, stratum 0).
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { createSocket } from 'node:dgram';
import { once } from 'node:events';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/** Absolute path of chronyd, or undefined when the Debian package `chrony` is not installed. */
export const CHRONYD: string | undefined = findChronyd();

/** Why the chrony tests are skipped, or false when they can run. */
export const CHRONY_SKIP: string | false = CHRONYD === undefined ? 'chronyd not found (install the Debian package chrony; CI does)' : false;

export interface ChronyServer {
  port: number;
  /** 'host:port' for TrustedClockOptions.servers. */
  address: string;
  /** Starts chronyd again on the same port and waits for its first reply. */
  start(): Promise<void>;
  /** SIGTERM and wait for the exit; the port stays unanswered until start(). */
  stop(): Promise<void>;
  /** Stops chronyd and removes its temp dir. */
  close(): Promise<void>;
  /** chronyd's stderr so far (it runs with -d), for failure messages. */
  log(): string;
}

/** The first reply's header, as seen by `query()`. */
export interface NtpHeader {
  leapIndicator: number;
  version: number;
  mode: number;
  stratum: number;
}

export interface ChronyOptions {
  /** false: no `local stratum`, so chronyd answers unsynchronised (leap indicator 3). Default true. */
  synchronised?: boolean;
  /** Bound on the wait for the first reply, ms. Default 5_000. */
  readyTimeoutMs?: number;
}

/**
 * Starts chronyd and waits until it answers. Call close() when done (in `after`). Callers skip
 * with CHRONY_SKIP first.
 */
export async function startChrony(o: ChronyOptions = {}): Promise<ChronyServer> {
  if (CHRONYD === undefined) throw new Error(CHRONY_SKIP || 'chronyd not found');
  const chronyd = CHRONYD;
  const dir = mkdtempSync(join(tmpdir(), 'witness-chrony-'));
  const port = await freeUdpPort();
  const conf = join(dir, 'chrony.conf');
  writeFileSync(
    conf,
    [
      `port ${port}`,
      'bindaddress 127.0.0.1',
      'allow 127.0.0.1',
      ...(o.synchronised === false ? [] : ['local stratum 8']),
      'cmdport 0',
      // No Unix command socket either: it would live in the shared /run/chrony.
      'bindcmdaddress /',
      `pidfile ${join(dir, 'chronyd.pid')}`,
      `driftfile ${join(dir, 'chrony.drift')}`,
      '',
    ].join('\n'),
  );
  // -x: never touch the system clock. -d: stay in the foreground, log to stderr.
  // As root, -u root keeps chronyd from switching to the _chrony user (which could not write the
  // temp dir); as another user, -U lets it start without root (it needs none with -x and a high port).
  const args = ['-x', '-d', ...(process.getuid?.() === 0 ? ['-u', 'root'] : ['-U']), '-f', conf];
  const readyTimeoutMs = o.readyTimeoutMs ?? 5_000;
  let proc: ChildProcess | undefined;
  let stderr = '';

  async function start(): Promise<void> {
    if (proc !== undefined) throw new Error('chronyd is already running');
    const p = spawn(chronyd, args, { stdio: ['ignore', 'ignore', 'pipe'] });
    proc = p;
    p.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
    p.once('exit', () => {
      if (proc === p) proc = undefined;
    });
    const deadline = Date.now() + readyTimeoutMs;
    for (;;) {
      if (p.exitCode !== null || p.signalCode !== null) {
        throw new Error(`chronyd exited (${p.exitCode ?? p.signalCode}) before answering on 127.0.0.1:${port}:\n${stderr}`);
      }
      if ((await query(port, 50)) !== undefined) return;
      if (Date.now() > deadline) {
        await stop();
        throw new Error(`chronyd did not answer on 127.0.0.1:${port} within ${readyTimeoutMs} ms:\n${stderr}`);
      }
      await new Promise((r) => setTimeout(r, 10));
    }
  }

  async function stop(): Promise<void> {
    const p = proc;
    if (p === undefined) return;
    proc = undefined;
    if (p.exitCode !== null || p.signalCode !== null) return;
    const exited = once(p, 'exit');
    p.kill('SIGTERM');
    const timer = setTimeout(() => p.kill('SIGKILL'), 2_000);
    await exited;
    clearTimeout(timer);
  }

  async function close(): Promise<void> {
    await stop();
    rmSync(dir, { recursive: true, force: true });
  }

  try {
    await start();
  } catch (e) {
    rmSync(dir, { recursive: true, force: true });
    throw e;
  }
  return { port, address: `127.0.0.1:${port}`, start, stop, close, log: () => stderr };
}

/**
 * One raw NTP client request (RFC 5905 §7.3: LI 3, version 4, mode 3) to 127.0.0.1:port,
 * independent of ntp-time-sync; resolves with the reply's header, or undefined if none came
 * within timeoutMs.
 */
export async function query(port: number, timeoutMs: number): Promise<NtpHeader | undefined> {
  const sock = createSocket('udp4');
  try {
    const req = Buffer.alloc(48);
    req[0] = (3 << 6) | (4 << 3) | 3;
    // A non-zero transmit timestamp: servers echo it as the origin.
    req.writeUInt32BE(Math.floor(Date.now() / 1000) + 2_208_988_800, 40);
    const reply = new Promise<Buffer>((resolve) => sock.once('message', (m: Buffer) => resolve(m)));
    sock.on('error', () => {});
    sock.send(req, port, '127.0.0.1');
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<undefined>((resolve) => (timer = setTimeout(() => resolve(undefined), timeoutMs)));
    const msg = await Promise.race([reply, timeout]);
    clearTimeout(timer);
    if (msg === undefined || msg.length < 48) return undefined;
    const b0 = msg[0]!;
    return { leapIndicator: b0 >> 6, version: (b0 >> 3) & 7, mode: b0 & 7, stratum: msg[1]! };
  } finally {
    sock.close();
  }
}

/** A UDP port that was free a moment ago (bound to 127.0.0.1:0, then released). */
async function freeUdpPort(): Promise<number> {
  const sock = createSocket('udp4');
  sock.bind(0, '127.0.0.1');
  await once(sock, 'listening');
  const { port } = sock.address();
  await new Promise<void>((r) => sock.close(() => r()));
  return port;
}

function findChronyd(): string | undefined {
  for (const p of ['/usr/sbin/chronyd', '/usr/bin/chronyd', '/sbin/chronyd']) {
    if (spawnSync(p, ['-v'], { stdio: 'ignore' }).status === 0) return p;
  }
  const r = spawnSync('sh', ['-c', 'command -v chronyd'], { encoding: 'utf8' });
  const found = r.status === 0 ? r.stdout.trim() : '';
  return found === '' ? undefined : found;
}
