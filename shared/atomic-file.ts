/**
 * Replacing a small file so that a crash leaves either the old content or the new, never a mix:
 * tmp file (O_EXCL) → write → fsync → rename over the target → fsync the directory (POSIX
 * rename(2) is atomic; the new name is durable only once the directory entry is). Used for the
 * device registry and the followers' cursors.
 */
import { closeSync, constants, fsyncSync, openSync, renameSync, unlinkSync, writeSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { dirname } from 'node:path';
import { WitnessError } from './errors.js';

/** fsync(2) of a file or directory by path. */
export function fsyncPath(path: string): void {
  const fd = openSync(path, 'r');
  try {
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}

export function writeFileAtomic(path: string, text: string, mode = 0o644): void {
  const tmp = `${path}.tmp-${process.pid}-${randomBytes(4).toString('hex')}`;
  try {
    const fd = openSync(tmp, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL, mode);
    try {
      const buf = Buffer.from(text, 'utf8');
      let off = 0;
      while (off < buf.length) off += writeSync(fd, buf, off, buf.length - off);
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    renameSync(tmp, path);
  } catch (e) {
    try {
      unlinkSync(tmp);
    } catch {
      // never created, or already renamed
    }
    throw new WitnessError('WITNESS_ERR_IO', `cannot write ${path}: ${(e as Error).message}`, { cause: e, details: { file: path } });
  }
  fsyncPath(dirname(path));
}
