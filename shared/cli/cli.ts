/**
 * What every Witness command line shares: argument parsing with clear errors, exit codes,
 * `--json` output, and progress on a terminal.
 *
 * Exit codes (docs/errors.md §Exit codes):
 *   0  success / intact
 *   1  verification failed (tampering found, proof does not verify, incident missed)
 *   2  usage error, bad input, or I/O error — nothing was verified
 */
import { parseArgs, type ParseArgsConfig } from 'node:util';
import { WitnessError, isWitnessError } from '../errors.js';

export const EXIT_OK = 0;
export const EXIT_FAILED = 1;
export const EXIT_USAGE = 2;

export interface CommandIo {
  stdout: NodeJS.WritableStream & { isTTY?: boolean };
  stderr: NodeJS.WritableStream & { isTTY?: boolean };
}

export const processIo: CommandIo = { stdout: process.stdout, stderr: process.stderr };

export type Options = NonNullable<ParseArgsConfig['options']>;

/** node:util parseArgs, strict, with its TypeErrors turned into WITNESS_ERR_USAGE naming the command. */
export function parseCommandArgs<O extends Options>(command: string, argv: string[], options: O, allowPositionals = true) {
  try {
    return parseArgs({ args: argv, options, strict: true, allowPositionals });
  } catch (e) {
    throw new WitnessError('WITNESS_ERR_USAGE', `${command}: ${(e as Error).message.replace(/\. To specify a positional argument.*$/s, '')}`, { cause: e });
  }
}

/** Parses a non-negative safe integer option, or throws WITNESS_ERR_USAGE naming the option. */
export function parseCount(command: string, name: string, value: string | undefined): number {
  if (value === undefined || !/^(0|[1-9]\d*)$/.test(value) || !Number.isSafeInteger(Number(value))) {
    throw new WitnessError('WITNESS_ERR_USAGE', `${command}: ${name} expects a non-negative integer, got ${JSON.stringify(value ?? '')}`);
  }
  return Number(value);
}

/** Writes a value as one line of JSON. */
export function printJson(io: CommandIo, value: unknown): void {
  io.stdout.write(JSON.stringify(value, null, 2) + '\n');
}

/**
 * Reports an error the way every command does: for people, what went wrong and what to do; with
 * --json, the error object. Returns the exit code (2: nothing was verified).
 */
export function reportError(io: CommandIo, e: unknown, json: boolean): number {
  if (isWitnessError(e)) {
    if (json) printJson(io, { ok: false, error: e.toJSON() });
    else io.stderr.write(`error: ${e.message}\n  ${e.code}: ${e.hint}\n`);
    return EXIT_USAGE;
  }
  const err = e as NodeJS.ErrnoException;
  if (err && typeof err.code === 'string' && typeof err.syscall === 'string') {
    const w = new WitnessError('WITNESS_ERR_IO', `${err.path ?? err.syscall}: ${err.message}`, { cause: e });
    return reportError(io, w, json);
  }
  // A bug, not bad input: say so plainly, with the stack for the report.
  io.stderr.write(`internal error (please report it): ${(e as Error)?.stack ?? String(e)}\n`);
  return EXIT_USAGE;
}

/**
 * A progress line on a terminal (stderr), redrawn at most every 100 ms; silent when stderr is not
 * a TTY or when --json/--quiet is set.
 */
export class Progress {
  readonly #io: CommandIo;
  readonly #label: string;
  readonly #enabled: boolean;
  readonly #started = Date.now();
  #last = 0;
  #drawn = false;

  constructor(io: CommandIo, label: string, enabled: boolean) {
    this.#io = io;
    this.#label = label;
    this.#enabled = enabled && io.stderr.isTTY === true;
  }

  update(done: number, total: number): void {
    if (!this.#enabled) return;
    const now = Date.now();
    if (now - this.#last < 100 && done < total) return;
    this.#last = now;
    const secs = (now - this.#started) / 1000;
    const rate = secs > 0 ? Math.round(done / secs) : 0;
    const pct = total > 0 ? Math.min(100, Math.floor((done / total) * 100)) : 100;
    const width = 30;
    const fill = Math.round((pct / 100) * width);
    this.#io.stderr.write(`\r${this.#label} [${'#'.repeat(fill)}${'.'.repeat(width - fill)}] ${pct}% ${done}/${total} (${rate}/s)`);
    this.#drawn = true;
  }

  done(): void {
    if (this.#drawn) this.#io.stderr.write('\n');
    this.#drawn = false;
  }
}
