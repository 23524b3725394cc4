/**
 * Starts the real `witness broker` as a child process on 127.0.0.1 with a free port (--port 0;
 * the broker prints the port it bound), and stops it with SIGTERM (or SIGKILL for crash tests).
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import assert from 'node:assert/strict';
import { once } from 'node:events';

export const WITNESS_BIN = new URL('../../broker/cli/witness.js', import.meta.url).pathname;

export interface BrokerProcess {
  proc: ChildProcess;
  url: string;
  port: number;
  stdout: () => string;
  stderr: () => string;
  /** SIGTERM and wait; resolves with the exit code. */
  stop(): Promise<number | null>;
  /** SIGKILL and wait. */
  kill(): Promise<void>;
}

export async function startBrokerProcess(dataDir: string, extraArgs: string[] = [], timeoutMs = 20_000): Promise<BrokerProcess> {
  const proc = spawn(process.execPath, [WITNESS_BIN, 'broker', '--data', dataDir, '--port', '0', ...extraArgs], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  proc.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  proc.stderr!.on('data', (d: Buffer) => (err += d.toString()));
  const url = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => {
      proc.kill('SIGKILL');
      reject(new Error(`broker did not print "listening" within ${timeoutMs} ms:\n${out}\n${err}`));
    }, timeoutMs);
    const onData = (): void => {
      const m = /^listening (mqtt:\/\/[^\s]+)$/m.exec(out);
      if (m) {
        clearTimeout(timer);
        proc.stdout!.off('data', onData);
        resolve(m[1]!);
      }
    };
    proc.stdout!.on('data', onData);
    proc.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`broker exited with ${code} before listening:\n${out}\n${err}`));
    });
  });
  const port = Number(new URL(url).port);
  return {
    proc,
    url,
    port,
    stdout: () => out,
    stderr: () => err,
    async stop() {
      if (proc.exitCode !== null) return proc.exitCode;
      proc.kill('SIGTERM');
      const [code] = (await once(proc, 'exit')) as [number | null];
      return code;
    },
    async kill() {
      if (proc.exitCode !== null || proc.signalCode !== null) return;
      proc.kill('SIGKILL');
      await once(proc, 'exit');
    },
  };
}

export interface WitnessRun {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs `witness ARGS` to its end without blocking the event loop (SIGKILL and a rejection after `timeoutMs`). */
export function runWitness(args: readonly string[], timeoutMs = 120_000): Promise<WitnessRun> {
  return new Promise((resolve, reject) => {
    const p = spawn(process.execPath, [WITNESS_BIN, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    p.stdout!.on('data', (d: Buffer) => (stdout += d.toString()));
    p.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
    const t = setTimeout(() => {
      p.kill('SIGKILL');
      reject(new Error(`witness ${args.join(' ')} did not finish within ${timeoutMs} ms\n${stdout}\n${stderr}`));
    }, timeoutMs);
    p.on('error', (e) => {
      clearTimeout(t);
      reject(e);
    });
    // 'close', not 'exit': the output pipes are read to their end.
    p.on('close', (code) => {
      clearTimeout(t);
      resolve({ code, stdout, stderr });
    });
  });
}

/** Runs `witness ARGS` synchronously and requires exit 0 (a setup step of a test). */
export function witnessOk(...args: string[]): void {
  const r = spawnSync(process.execPath, [WITNESS_BIN, ...args], { encoding: 'utf8', timeout: 30_000 });
  assert.equal(r.status, 0, `witness ${args.join(' ')}: ${r.stderr}`);
}
