/**
 * What the agent's end-to-end tests share: a broker data directory with devices registered the
 * way users do it (`witness init`, `witness device add --public-key=K`), a free TCP port (so a
 * broker restarted on it is found again by the agent), the `witness-agent` processes, and checks
 * over the ledger's publish records.
 */
import assert from 'node:assert/strict';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { createServer, type AddressInfo } from 'node:net';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { WITNESS_BIN } from '../helpers/broker-process.js';
import type { Rec } from '../helpers/records.js';

export const AGENT_BIN = new URL('../../agent/cli/witness-agent.js', import.meta.url).pathname;

/** A TCP port on 127.0.0.1 that was free a moment ago. */
export async function freePort(): Promise<number> {
  const s = createServer();
  s.listen(0, '127.0.0.1');
  await once(s, 'listening');
  const { port } = s.address() as AddressInfo;
  await new Promise<void>((r) => s.close(() => r()));
  return port;
}

export function witness(...args: string[]): string {
  const r = spawnSync(process.execPath, [WITNESS_BIN, ...args], { encoding: 'utf8', timeout: 30_000 });
  assert.equal(r.status, 0, `witness ${args.join(' ')}: ${r.stderr}`);
  return r.stdout;
}

export function agentCli(args: string[], input?: string, timeoutMs = 30_000): { code: number | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [AGENT_BIN, ...args], { encoding: 'utf8', timeout: timeoutMs, ...(input !== undefined ? { input } : {}) });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

/**
 * A broker data directory (`witness init`) with these devices registered, and a config file that
 * requires authentication (so a device gets in only with a valid connect token) and observes
 * envelopes (the default policy, written out). Returns the config path.
 */
export function brokerData(dir: string, devices: Array<{ id: string; publicKey: string }>, extraYaml: string[] = []): { data: string; config: string } {
  const data = join(dir, 'data');
  witness('init', '--data', data, '--node-id', 'agent-e2e');
  for (const d of devices) witness('device', 'add', '--data', data, '--id', d.id, `--public-key=${d.publicKey}`);
  const config = join(dir, 'witness.yaml');
  writeFileSync(config, ['auth:', '  anonymous: false', 'defaultPolicy:', '  envelope: observe', '  audit: metadata', ...extraYaml, ''].join('\n'));
  return { data, config };
}

/** A running `witness-agent` command whose stdout is collected line by line. */
export interface AgentProcess {
  proc: ChildProcess;
  lines: () => string[];
  stderr: () => string;
  /** Resolves with the first stdout line matching `re` (bounded in time). */
  waitFor(re: RegExp, timeoutMs?: number): Promise<string>;
  write(text: string): void;
  /** Waits for the exit (bounded in time); resolves with the code or signal. */
  exited(timeoutMs?: number): Promise<number | string | null>;
}

export function startAgentProcess(args: string[]): AgentProcess {
  const proc = spawn(process.execPath, [AGENT_BIN, ...args], { stdio: ['pipe', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  const waiters: Array<{ re: RegExp; resolve: (l: string) => void }> = [];
  proc.stdout!.on('data', (d: Buffer) => {
    out += d.toString();
    for (const w of [...waiters]) {
      const l = out.split('\n').find((x) => w.re.test(x));
      if (l !== undefined) {
        waiters.splice(waiters.indexOf(w), 1);
        w.resolve(l);
      }
    }
  });
  proc.stderr!.on('data', (d: Buffer) => (err += d.toString()));
  proc.stdin!.on('error', () => {}); // EPIPE after a kill
  return {
    proc,
    lines: () => out.split('\n').filter((l) => l !== ''),
    stderr: () => err,
    waitFor(re, timeoutMs = 15_000) {
      const l = out.split('\n').find((x) => re.test(x));
      if (l !== undefined) return Promise.resolve(l);
      return new Promise<string>((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`no line matching ${re} within ${timeoutMs} ms; stdout:\n${out}\nstderr:\n${err}`)), timeoutMs);
        waiters.push({ re, resolve: (x) => (clearTimeout(timer), resolve(x)) });
      });
    },
    write(text) {
      if (proc.stdin!.writable) proc.stdin!.write(text);
    },
    async exited(timeoutMs = 15_000) {
      if (proc.exitCode !== null) return proc.exitCode;
      if (proc.signalCode !== null) return proc.signalCode;
      const timer = setTimeout(() => proc.kill('SIGKILL'), timeoutMs);
      const [code, signal] = (await once(proc, 'exit')) as [number | null, string | null];
      clearTimeout(timer);
      return code ?? signal;
    },
  };
}

/** The publish records of one device's client connections, in ledger order. */
export function publishesOf(rs: Rec[], clientId: string): Rec[] {
  return rs.filter((r) => r.e === 'publish' && r.c === clientId && r.actor === 'client');
}

/**
 * The ledger's account of one device's chain is sound: sequence numbers 0..n-1 each signed once
 * (one envelope hash per number: no number reused for another message), first seen in increasing
 * order, every verdict `valid` except exact re-sends of an envelope already recorded (`replayed`,
 * same hash), and no `gap`, `chain-break` or `out-of-order`. Returns the sequence numbers.
 *
 * With `late`, a first sighting may also be `clock-skew` when the envelope was signed before the
 * broker saw it by more than the clocks' uncertainties — store-and-forward delivery: the broker's
 * EnvelopeChecker compares device time with arrival time and checks the sequence and chain first,
 * so such a verdict still vouches for them. A device time in the broker's future never passes.
 */
export function assertSoundChain(pubs: Rec[], opts: { late?: boolean } = {}): number[] {
  const hashOf = new Map<number, string>();
  const firstSeen: number[] = [];
  for (const r of pubs) {
    const seq = r.seq as number;
    assert.equal(typeof seq, 'number', `publish without an envelope: ${JSON.stringify(r)}`);
    const known = hashOf.get(seq);
    if (known === undefined) {
      const late = opts.late === true && r.env === 'clock-skew' && (r.dt as number) + (r.du as number) < (r.t as number);
      if (!late) assert.equal(r.env, 'valid', `seq ${seq} first seen as ${String(r.env)} (${String(r.why ?? '')}): ${JSON.stringify(r)}`);
      hashOf.set(seq, r.eh as string);
      firstSeen.push(seq);
    } else {
      assert.equal(r.eh, known, `seq ${seq} was signed twice, for different envelopes (a reused sequence number)`);
      assert.equal(r.env, 'replayed', `a re-send of seq ${seq} recorded as ${String(r.env)}`);
    }
  }
  assert.deepEqual(firstSeen, firstSeen.map((_, i) => i), `sequence numbers not 0..n-1 in order: ${firstSeen.join(',')}`);
  return firstSeen;
}
