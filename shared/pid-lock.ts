/**
 * One-writer locks: an O_EXCL file holding the writer's pid. A lock whose process is gone is taken
 * over (a crash leaves it behind). Used by the ledger writer and the agent's outbox.
 *
 * Our own pid counts as alive only if this process really holds the lock: a broker or agent run as
 * pid 1 in a container gets the same pid at every start, so a killed predecessor's lock carries ours.
 */
import { closeSync, openSync, readFileSync, unlinkSync, writeSync } from 'node:fs';
import { WitnessError } from './errors.js';

/** Lock files held by this process. */
const held = new Set<string>();

/**
 * Takes the lock at `path`; `busy(pid?)` makes the error thrown when another live process holds it
 * (pid undefined: the lock could not be taken after a takeover attempt).
 */
export function acquirePidLock(path: string, busy: (pid: number | undefined) => WitnessError): string {
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      const fd = openSync(path, 'wx', 0o644);
      try {
        writeSync(fd, `${process.pid}\n`);
      } finally {
        closeSync(fd);
      }
      held.add(path);
      return path;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') {
        throw new WitnessError('WITNESS_ERR_IO', `${path}: cannot create the lock file (${(e as Error).message})`, { cause: e });
      }
    }
    let pid = NaN;
    try {
      pid = Number.parseInt(readFileSync(path, 'utf8'), 10);
    } catch {
      // unreadable (e.g. empty after a crash between create and write): stale
    }
    const ours = pid === process.pid;
    if (Number.isInteger(pid) && pid > 0 && ((ours && held.has(path)) || (!ours && processAlive(pid)))) throw busy(pid);
    try {
      unlinkSync(path);
    } catch {
      // raced with another opener; the next attempt decides
    }
  }
  throw busy(undefined);
}

export function releasePidLock(path: string): void {
  held.delete(path);
  try {
    unlinkSync(path);
  } catch {
    // already gone
  }
}

function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}
