/** The machine a benchmark ran on, printed with every result (these machines are noisy and varied). */
import { readFileSync } from 'node:fs';
import { cpus, totalmem, platform, release } from 'node:os';

export interface MachineInfo {
  cpu: string;
  cores: number;
  memoryGiB: number;
  os: string;
  node: string;
}

export function machineInfo(): MachineInfo {
  const c = cpus();
  return {
    cpu: c[0]?.model.trim() ?? 'unknown',
    cores: c.length,
    memoryGiB: Math.round(totalmem() / 2 ** 30),
    os: `${platform()} ${release()}`,
    node: process.version,
  };
}

export function formatMachine(m: MachineInfo): string {
  return `${m.cpu} · ${m.cores} cores · ${m.memoryGiB} GiB · ${m.os} · node ${m.node}`;
}

/** Median of a list of numbers. */
export function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = Math.floor(s.length / 2);
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

/**
 * The numeric fields of /proc/PID/status (`VmRSS`, `VmHWM`, `RssAnon`, `RssFile`, `Threads`, …;
 * sizes in KiB), or undefined when the process is gone or this is not Linux.
 */
export function procStatus(pid: number | 'self'): Record<string, number> | undefined {
  let text: string;
  try {
    text = readFileSync(`/proc/${pid}/status`, 'utf8');
  } catch {
    return undefined;
  }
  const out: Record<string, number> = {};
  for (const m of text.matchAll(/^(\w+):\s+(\d+)(?: kB)?$/gm)) out[m[1]!] = Number(m[2]);
  return out;
}

/**
 * CPU µs (utime + stime) of this process's main thread — the event loop — from
 * /proc/self/task/PID/stat (fields 14 and 15, USER_HZ 100: 10 ms resolution); undefined where
 * /proc is missing.
 */
export function mainThreadCpuUs(): number | undefined {
  try {
    const stat = readFileSync(`/proc/self/task/${process.pid}/stat`, 'utf8');
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return (Number(f[11]) + Number(f[12])) * 10_000;
  } catch {
    return undefined;
  }
}

/** Busy for `us` µs on this thread (hrtime is wall time, but the thread runs throughout). */
export function spin(us: number): void {
  const end = process.hrtime.bigint() + BigInt(Math.round(us * 1000));
  while (process.hrtime.bigint() < end);
}
