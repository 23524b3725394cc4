/**
 * Mosquitto (the Debian package, /usr/sbin/mosquitto) as the outside reference of bench/suite.ts:
 * started with a generated config (one listener on 127.0.0.1, anonymous, no persistence, no log
 * file), its CPU (utime + stime) and peak RSS (VmHWM) read from /proc, killed on stop.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { createServer, connect, type AddressInfo } from 'node:net';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Usage } from './broker-server.js';
import { withTimeout } from './load.js';

export const MOSQUITTO_BIN = '/usr/sbin/mosquitto';
/** Clock ticks per second for /proc/PID/stat (getconf CLK_TCK: 100 on Linux x86-64). */
const CLK_TCK = 100;

async function freePort(): Promise<number> {
  const s = createServer();
  await new Promise<void>((r, j) => {
    s.once('error', j);
    s.listen(0, '127.0.0.1', () => r());
  });
  const port = (s.address() as AddressInfo).port;
  await new Promise<void>((r) => s.close(() => r()));
  return port;
}

async function canConnect(port: number): Promise<boolean> {
  return new Promise<boolean>((resolve) => {
    const c = connect({ host: '127.0.0.1', port }, () => {
      c.destroy();
      resolve(true);
    });
    c.once('error', () => resolve(false));
  });
}

export class MosquittoServer {
  readonly kind = 'mosquitto';
  readonly port: number;
  readonly #proc: ChildProcess;

  private constructor(proc: ChildProcess, port: number) {
    this.#proc = proc;
    this.port = port;
  }

  /** Writes DIR/mosquitto.conf, starts mosquitto on it and waits (≤ 10 s) until the port accepts. */
  static async start(dir: string): Promise<MosquittoServer> {
    const port = await freePort();
    const conf = join(dir, 'mosquitto.conf');
    writeFileSync(conf, [`listener ${port} 127.0.0.1`, 'allow_anonymous true', 'persistence false', 'log_dest none', ''].join('\n'));
    const proc = spawn(MOSQUITTO_BIN, ['-c', conf], { stdio: ['ignore', 'ignore', 'pipe'] });
    let err = '';
    proc.stderr!.on('data', (d: Buffer) => (err = (err + d.toString()).slice(-2000)));
    const s = new MosquittoServer(proc, port);
    const deadline = Date.now() + 10_000;
    while (!(await canConnect(port))) {
      if (proc.exitCode !== null || Date.now() > deadline) {
        s.kill();
        throw new Error(`mosquitto did not start on port ${port}: ${err}`);
      }
      await sleep(50);
    }
    return s;
  }

  usage(): Promise<Usage> {
    const pid = this.#proc.pid!;
    // /proc/PID/stat: fields after the ")" of comm; utime and stime are fields 14 and 15.
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    const utime = Number(f[11]);
    const stime = Number(f[12]);
    const hwm = /^VmHWM:\s+(\d+) kB/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return Promise.resolve({ userUs: (utime * 1e6) / CLK_TCK, systemUs: (stime * 1e6) / CLK_TCK, maxRssKiB: hwm ? Number(hwm[1]) : NaN });
  }

  async stop(): Promise<Usage> {
    const u = await this.usage();
    const exited = new Promise<void>((r) => (this.#proc.exitCode !== null || this.#proc.signalCode !== null ? r() : this.#proc.once('exit', () => r())));
    this.#proc.kill('SIGTERM');
    try {
      await withTimeout(exited, 5000, 'mosquitto did not exit');
    } catch {
      this.kill();
    }
    return u;
  }

  kill(): void {
    if (this.#proc.exitCode === null && this.#proc.signalCode === null) this.#proc.kill('SIGKILL');
  }
}
