/**
 * The simulator's run file (docs/FORMATS.md §9): versioned NDJSON. Line 1 is the RunHeader
 * (`"format":"witness-sim-run/v1"`), then one RunLine per line — `connect`, `pub`, `disconnect`, and
 * a final `end` when the run finished cleanly.
 *
 * Writing: RunFileWriter buffers lines in memory up to `bufferBytes` and writes them out when the
 * buffer is full and on a timer (`flushIntervalMs`), so a crash loses at most one interval of lines
 * and memory stays bounded whatever the send rate. Writes are synchronous (writeSync of a whole
 * buffer, ≈ 0.1–0.5 ms per MiB into the page cache): lines reach the file in order, the bound holds
 * without the caller having to honour back-pressure, and an I/O error surfaces at the write() or
 * close() that meets it.
 *
 * Reading: streamed in chunks (files may be hundreds of MB), each line parsed and checked against
 * the types of simulator/types.ts. Errors name FILE:LINE and say what is wrong. A last line without
 * its newline that does not parse is what a crash mid-write leaves: it is skipped and reported in
 * `status.truncated`; a missing `end` line gives `status.complete === false`.
 */
import { closeSync, fdatasync, openSync, writeSync } from 'node:fs';
import { open, type FileHandle } from 'node:fs/promises';
import { WitnessError } from '../shared/errors.js';
import {
  INCIDENT_TYPES,
  RUN_FORMAT,
  type ExpectedVerdict,
  type Expectation,
  type RunEnd,
  type RunHeader,
  type RunLine,
} from './types.js';

// ── writer ───────────────────────────────────────────────────────────────────────────────────

export interface RunFileWriterOptions {
  /** Buffered bytes (approximately: UTF-16 code units) that trigger a write. Default 1 MiB. */
  bufferBytes?: number;
  /** Buffered lines are written at least this often, ms. Default 1000. */
  flushIntervalMs?: number;
}

export const RUN_WRITER_DEFAULTS = {
  bufferBytes: 1024 * 1024,
  flushIntervalMs: 1000,
} as const;

const LINE_KINDS = new Set(['connect', 'pub', 'disconnect', 'end']);

export class RunFileWriter {
  readonly path: string;
  #fd: number;
  #chunks: string[] = [];
  #pending = 0;
  #bufferBytes: number;
  #timer: NodeJS.Timeout | undefined;
  #error: unknown;
  #closed = false;
  #closing: Promise<void> | undefined;
  #lines = 0;
  #bytes = 0;

  private constructor(path: string, fd: number, options: RunFileWriterOptions) {
    this.path = path;
    this.#fd = fd;
    this.#bufferBytes = options.bufferBytes ?? RUN_WRITER_DEFAULTS.bufferBytes;
    const every = options.flushIntervalMs ?? RUN_WRITER_DEFAULTS.flushIntervalMs;
    this.#timer = setInterval(() => {
      try {
        this.flush();
      } catch (e) {
        // Kept for the next write() or close(), which throw it.
        this.#error ??= e;
      }
    }, every);
    this.#timer.unref();
  }

  /** Creates (or truncates) `path` and writes the header line. */
  static async open(path: string, header: RunHeader, options: RunFileWriterOptions = {}): Promise<RunFileWriter> {
    if (header === null || typeof header !== 'object' || header.format !== RUN_FORMAT) {
      throw new WitnessError('WITNESS_ERR_INVALID_ARGUMENT', `run file header: format must be ${JSON.stringify(RUN_FORMAT)}`);
    }
    const { bufferBytes, flushIntervalMs } = options;
    if (bufferBytes !== undefined && (!Number.isSafeInteger(bufferBytes) || bufferBytes < 0)) {
      throw new WitnessError('WITNESS_ERR_INVALID_ARGUMENT', `RunFileWriter: bufferBytes must be a non-negative integer, got ${bufferBytes}`);
    }
    if (flushIntervalMs !== undefined && (!Number.isFinite(flushIntervalMs) || flushIntervalMs <= 0)) {
      throw new WitnessError('WITNESS_ERR_INVALID_ARGUMENT', `RunFileWriter: flushIntervalMs must be a positive number, got ${flushIntervalMs}`);
    }
    let fd: number;
    try {
      fd = openSync(path, 'w', 0o644);
    } catch (e) {
      throw new WitnessError('WITNESS_ERR_IO', `${path}: cannot create the run file: ${(e as Error).message}`, { cause: e, details: { path } });
    }
    const w = new RunFileWriter(path, fd, options);
    try {
      w.#writeOut(JSON.stringify(header) + '\n');
    } catch (e) {
      await w.close().catch(() => {});
      throw e;
    }
    return w;
  }

  /** Lines written so far (header excluded), buffered ones included. */
  get lines(): number {
    return this.#lines;
  }

  /** Bytes handed to the file so far (not counting the buffer). */
  get bytes(): number {
    return this.#bytes;
  }

  /** Buffers one line; writes the buffer out when it holds bufferBytes. */
  write(line: RunLine): void {
    if (this.#closed) throw new WitnessError('WITNESS_ERR_INVALID_ARGUMENT', `${this.path}: run file written after close()`);
    this.#throwPending();
    if (line === null || typeof line !== 'object' || !LINE_KINDS.has((line as { k?: unknown }).k as string)) {
      throw new WitnessError('WITNESS_ERR_INVALID_ARGUMENT', `${this.path}: run line: k must be one of ${[...LINE_KINDS].join(', ')}, got ${JSON.stringify((line as { k?: unknown } | null)?.k)}`);
    }
    const text = JSON.stringify(line) + '\n';
    this.#chunks.push(text);
    this.#pending += text.length;
    this.#lines++;
    if (this.#pending >= this.#bufferBytes) this.flush();
  }

  /** Writes the buffered lines out now. */
  flush(): void {
    if (this.#chunks.length === 0) return;
    const text = this.#chunks.length === 1 ? this.#chunks[0]! : this.#chunks.join('');
    this.#chunks = [];
    this.#pending = 0;
    this.#writeOut(text);
  }

  /** Writes the rest, makes the file durable (fdatasync) and closes it. Safe to call twice. */
  close(): Promise<void> {
    this.#closing ??= this.#close();
    return this.#closing;
  }

  async #close(): Promise<void> {
    this.#closed = true;
    clearInterval(this.#timer);
    this.#timer = undefined;
    try {
      this.#throwPending();
      this.flush();
      await new Promise<void>((res, rej) => fdatasync(this.#fd, (e) => (e ? rej(new WitnessError('WITNESS_ERR_IO', `${this.path}: fdatasync: ${e.message}`, { cause: e })) : res())));
    } finally {
      try {
        closeSync(this.#fd);
      } catch {
        // already reported, or nothing to do
      }
    }
  }

  #throwPending(): void {
    if (this.#error !== undefined) {
      const e = this.#error;
      this.#error = undefined;
      throw e;
    }
  }

  #writeOut(text: string): void {
    const buf = Buffer.from(text, 'utf8');
    let off = 0;
    try {
      while (off < buf.length) off += writeSync(this.#fd, buf, off, buf.length - off);
    } catch (e) {
      throw new WitnessError('WITNESS_ERR_IO', `${this.path}: writing the run file failed after ${this.#bytes + off} bytes: ${(e as Error).message}`, { cause: e, details: { path: this.path } });
    }
    this.#bytes += buf.length;
  }
}

// ── reader ───────────────────────────────────────────────────────────────────────────────────

export interface RunFileStatus {
  /** Lines read after the header (valid ones, including a tolerated unterminated last line). */
  lines: number;
  /** An `end` line was read: the run finished cleanly. */
  complete: boolean;
  end?: RunEnd;
  /** The last line had no newline and did not parse (a crash mid-write): skipped. */
  truncated?: { line: number; bytes: number };
  /** How many things were tolerated; the first 100 are described in `warnings`. */
  warningCount: number;
  warnings: string[];
  /** Bytes read so far, and the file's size when it was opened (for progress). */
  bytesRead: number;
  size: number;
}

export interface RunFileReaderOptions {
  /** Longest line accepted, bytes. Default 64 MiB (a header of 100,000 devices is ≈ 20 MB). */
  maxLineBytes?: number;
  /** Bytes read at once. Default 1 MiB. */
  chunkBytes?: number;
}

const MAX_WARNINGS = 100;

interface RawLine {
  text: string;
  bytes: number;
  terminated: boolean;
  no: number;
}

/** Splits a file into lines, chunk by chunk. */
class LineSource {
  readonly #fh: FileHandle;
  readonly #path: string;
  readonly #max: number;
  readonly #chunk: number;
  #buf: Buffer = Buffer.alloc(0);
  #scan = 0;
  #eof = false;
  bytesRead = 0;
  lineNo = 0;

  constructor(fh: FileHandle, path: string, max: number, chunk: number) {
    this.#fh = fh;
    this.#path = path;
    this.#max = max;
    this.#chunk = chunk;
  }

  async next(): Promise<RawLine | undefined> {
    for (;;) {
      const nl = this.#buf.indexOf(0x0a, this.#scan);
      if (nl >= 0) {
        const text = this.#buf.toString('utf8', 0, nl);
        this.#buf = this.#buf.subarray(nl + 1);
        this.#scan = 0;
        return { text, bytes: nl, terminated: true, no: ++this.lineNo };
      }
      this.#scan = this.#buf.length;
      if (this.#eof) {
        if (this.#buf.length === 0) return undefined;
        const rest = this.#buf;
        this.#buf = Buffer.alloc(0);
        this.#scan = 0;
        return { text: rest.toString('utf8'), bytes: rest.length, terminated: false, no: ++this.lineNo };
      }
      if (this.#buf.length > this.#max) {
        throw new WitnessError('WITNESS_ERR_RUN_FILE_MALFORMED', `${this.#path}:${this.lineNo + 1}: line longer than ${this.#max} bytes without a newline`, {
          details: { path: this.#path, line: this.lineNo + 1 },
        });
      }
      const chunk = Buffer.allocUnsafe(this.#chunk);
      let n: number;
      try {
        ({ bytesRead: n } = await this.#fh.read(chunk, 0, chunk.length, null));
      } catch (e) {
        throw new WitnessError('WITNESS_ERR_IO', `${this.#path}: ${(e as Error).message}`, { cause: e });
      }
      if (n === 0) {
        this.#eof = true;
        continue;
      }
      this.bytesRead += n;
      const got = chunk.subarray(0, n);
      this.#buf = this.#buf.length === 0 ? got : Buffer.concat([this.#buf, got]);
    }
  }
}

/**
 * A run file opened for reading: the header is read and checked by open(); lines() streams the
 * rest once, filling `status` as it goes.
 */
export class RunFileReader {
  readonly path: string;
  readonly header: RunHeader;
  readonly status: RunFileStatus;
  readonly #fh: FileHandle;
  readonly #src: LineSource;
  #started = false;

  private constructor(path: string, fh: FileHandle, src: LineSource, header: RunHeader, size: number) {
    this.path = path;
    this.#fh = fh;
    this.#src = src;
    this.header = header;
    this.status = { lines: 0, complete: false, warningCount: 0, warnings: [], bytesRead: src.bytesRead, size };
  }

  static async open(path: string, options: RunFileReaderOptions = {}): Promise<RunFileReader> {
    let fh: FileHandle;
    try {
      fh = await open(path, 'r');
    } catch (e) {
      throw new WitnessError('WITNESS_ERR_IO', `${path}: cannot open the run file: ${(e as Error).message}`, { cause: e, details: { path } });
    }
    try {
      const size = (await fh.stat()).size;
      const src = new LineSource(fh, path, options.maxLineBytes ?? 64 * 1024 * 1024, options.chunkBytes ?? 1024 * 1024);
      const first = await src.next();
      const header = parseRunHeader(first, path);
      return new RunFileReader(path, fh, src, header, size);
    } catch (e) {
      await fh.close().catch(() => {});
      throw e;
    }
  }

  /** Streams the lines after the header, checked. Can be iterated once; closes the file at the end. */
  async *lines(): AsyncGenerator<RunLine> {
    if (this.#started) throw new WitnessError('WITNESS_ERR_INVALID_ARGUMENT', `${this.path}: lines() can be iterated only once`);
    this.#started = true;
    const st = this.status;
    try {
      for (;;) {
        const raw = await this.#src.next();
        st.bytesRead = this.#src.bytesRead;
        if (!raw) break;
        let line: RunLine;
        if (raw.terminated) {
          line = parseRunLine(raw.text, this.path, raw.no);
        } else {
          try {
            line = parseRunLine(raw.text, this.path, raw.no);
            this.#warn(`${this.path}:${raw.no}: the last line has no newline (the writer stopped right after it); it was read`);
          } catch {
            st.truncated = { line: raw.no, bytes: raw.bytes };
            this.#warn(`${this.path}:${raw.no}: the last line is incomplete (${raw.bytes} bytes without a newline: the writer stopped mid-line); it was skipped`);
            break;
          }
        }
        if (st.complete) this.#warn(`${this.path}:${raw.no}: a ${line.k} line after the end line`);
        if (line.k === 'end') {
          if (st.complete) this.#warn(`${this.path}:${raw.no}: a second end line`);
          st.complete = true;
          st.end = line;
        }
        st.lines++;
        yield line;
      }
    } finally {
      await this.close();
    }
  }

  /** Closes the file (lines() does this when it ends). */
  async close(): Promise<void> {
    await this.#fh.close().catch(() => {});
  }

  #warn(message: string): void {
    this.status.warningCount++;
    if (this.status.warnings.length < MAX_WARNINGS) this.status.warnings.push(message);
  }
}

/** Reads and checks only the header of a run file. */
export async function readRunHeader(path: string): Promise<RunHeader> {
  const r = await RunFileReader.open(path);
  await r.close();
  return r.header;
}

/** Streams the lines of a run file after its header (checked). For status, use RunFileReader. */
export async function* readRunLines(path: string, options: RunFileReaderOptions = {}): AsyncGenerator<RunLine> {
  const r = await RunFileReader.open(path, options);
  yield* r.lines();
}

/** Reads a whole run file into memory: for small files and tests. */
export async function readRunFile(path: string, options: RunFileReaderOptions = {}): Promise<{ header: RunHeader; lines: RunLine[]; status: RunFileStatus }> {
  const r = await RunFileReader.open(path, options);
  const lines: RunLine[] = [];
  for await (const l of r.lines()) lines.push(l);
  return { header: r.header, lines, status: r.status };
}

// ── validation ───────────────────────────────────────────────────────────────────────────────

export const EXPECTED_VERDICTS = [
  'valid',
  'missing',
  'invalid',
  'wrong-topic',
  'replayed',
  'gap',
  'out-of-order',
  'clock-skew',
  'unknown-key',
  'revoked',
] as const satisfies readonly ExpectedVerdict[];

const VERDICT_SET = new Set<string>(EXPECTED_VERDICTS);
const INCIDENT_SET = new Set<string>(INCIDENT_TYPES);
const HASH_RE = /^[A-Za-z0-9_-]{43}$/;

type Obj = Record<string, unknown>;

function isObj(v: unknown): v is Obj {
  return v !== null && typeof v === 'object' && !Array.isArray(v);
}

function parseRunHeader(first: RawLine | undefined, path: string): RunHeader {
  const notRun = (why: string, details: Obj = {}): never => {
    throw new WitnessError(
      'WITNESS_ERR_RUN_FILE_FORMAT',
      `${path}:1: not a simulator run file: ${why}; pass the file written by \`witness sim run --record FILE\``,
      { details: { path, line: 1, ...details } },
    );
  };
  if (!first) return notRun('the file is empty');
  let v: unknown;
  try {
    v = JSON.parse(first.text);
  } catch (e) {
    return notRun(first.terminated ? `the first line is not JSON (${(e as Error).message})` : 'the header line is incomplete (the writer stopped before finishing it)');
  }
  if (!isObj(v)) return notRun('the first line is not a JSON object');
  if (v.format !== RUN_FORMAT) {
    if (typeof v.format === 'string' && v.format.startsWith('witness-sim-run/')) {
      throw new WitnessError(
        'WITNESS_ERR_RUN_FILE_FORMAT',
        `${path}:1: run file version ${JSON.stringify(v.format)} is not supported: this Witness reads ${JSON.stringify(RUN_FORMAT)}; use the Witness version that recorded it`,
        { details: { path, line: 1, format: v.format, supported: RUN_FORMAT } },
      );
    }
    return notRun(`its header has format ${JSON.stringify(v.format ?? null)}, expected ${JSON.stringify(RUN_FORMAT)}`, { format: v.format ?? null });
  }
  const bad = (what: string): never => {
    throw new WitnessError('WITNESS_ERR_RUN_FILE_MALFORMED', `${path}:1: run file header: ${what}`, { details: { path, line: 1 } });
  };
  if (v.kind !== 'run' && v.kind !== 'replay') bad(`"kind" must be "run" or "replay", got ${JSON.stringify(v.kind ?? null)}`);
  if (!isObj(v.scenario)) bad('"scenario" must be an object');
  if (!isNum(v.startedAt)) bad('"startedAt" must be a number (ms since the epoch)');
  if (typeof v.broker !== 'string') bad('"broker" must be a string');
  if (typeof v.tool !== 'string') bad('"tool" must be a string');
  if (!Array.isArray(v.devices)) bad('"devices" must be an array');
  const seen = new Set<string>();
  (v.devices as unknown[]).forEach((d, n) => {
    if (!isObj(d)) return bad(`devices[${n}] must be an object`);
    if (typeof d.id !== 'string' || d.id === '') bad(`devices[${n}].id must be a non-empty string`);
    if (seen.has(d.id as string)) bad(`devices[${n}].id ${JSON.stringify(d.id)} appears twice`);
    seen.add(d.id as string);
    if (typeof d.fleet !== 'string') bad(`devices[${n}].fleet must be a string`);
    if (typeof d.pub !== 'string') bad(`devices[${n}].pub must be a base64url public key`);
    for (const k of ['revokedPub', 'unknownPub'] as const) if (d[k] !== undefined && typeof d[k] !== 'string') bad(`devices[${n}].${k} must be a string`);
  });
  return v as unknown as RunHeader;
}

function isNum(v: unknown): v is number {
  return typeof v === 'number' && Number.isFinite(v);
}

function isInt(v: unknown): v is number {
  return typeof v === 'number' && Number.isSafeInteger(v) && v >= 0;
}

/** Parses and checks one line after the header; throws WITNESS_ERR_RUN_FILE_MALFORMED naming FILE:LINE. */
export function parseRunLine(text: string, path: string, lineNo: number): RunLine {
  const bad = (what: string): never => {
    throw new WitnessError('WITNESS_ERR_RUN_FILE_MALFORMED', `${path}:${lineNo}: ${what}`, { details: { path, line: lineNo } });
  };
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch (e) {
    return bad(text.length === 0 ? 'empty line' : `not JSON (${(e as Error).message})`);
  }
  if (!isObj(v)) return bad('not a JSON object');
  const k = v.k;
  const field = (name: string, ok: boolean, want: string): void => {
    if (!ok) bad(`${String(k)} line: "${name}" must be ${want}, got ${JSON.stringify(v[name] ?? null)?.slice(0, 80)}`);
  };
  const incident = (): void => {
    if (v.incident === undefined) return;
    const i = v.incident;
    if (!isObj(i) || typeof i.type !== 'string' || !INCIDENT_SET.has(i.type) || typeof i.id !== 'string') {
      bad(`${String(k)} line: "incident" must be {type: one of ${INCIDENT_TYPES.join(', ')}, id: string}, got ${JSON.stringify(i)?.slice(0, 120)}`);
    }
  };
  switch (k) {
    case 'connect':
      field('t', isNum(v.t), 'a number (ms after startedAt)');
      field('dev', typeof v.dev === 'string', 'a device id');
      field('ok', typeof v.ok === 'boolean', 'true or false');
      if (v.ref !== undefined) field('ref', typeof v.ref === 'string', 'a string');
      if (v.rc !== undefined) field('rc', isInt(v.rc), 'a CONNACK return code');
      if (v.ms !== undefined) field('ms', isNum(v.ms), 'a number of ms');
      if (v.err !== undefined) field('err', typeof v.err === 'string', 'a string');
      incident();
      break;
    case 'pub':
      field('t', isNum(v.t), 'a number (ms after startedAt)');
      field('dev', typeof v.dev === 'string', 'a device id');
      field('ref', typeof v.ref === 'string', 'a string');
      field('topic', typeof v.topic === 'string', 'a string');
      field('q', v.q === 0 || v.q === 1 || v.q === 2, '0, 1 or 2');
      field('r', typeof v.r === 'boolean', 'true or false');
      field('sent', typeof v.sent === 'boolean', 'true or false');
      field('h', typeof v.h === 'string' && HASH_RE.test(v.h), 'a base64url SHA-256 (43 characters)');
      field('ph', typeof v.ph === 'string' && HASH_RE.test(v.ph), 'a base64url SHA-256 (43 characters)');
      if (v.seq !== undefined) field('seq', isInt(v.seq), 'a non-negative integer');
      if (v.eh !== undefined) field('eh', typeof v.eh === 'string' && HASH_RE.test(v.eh), 'a base64url SHA-256 (43 characters)');
      field('b64', typeof v.b64 === 'string', 'the base64 MQTT payload');
      if (v.ack !== undefined) field('ack', isNum(v.ack), 'a number of ms');
      incident();
      checkExpect(v.expect, bad);
      break;
    case 'disconnect':
      field('t', isNum(v.t), 'a number (ms after startedAt)');
      field('dev', typeof v.dev === 'string', 'a device id');
      field('why', typeof v.why === 'string', 'a string');
      break;
    case 'end':
      field('t', isNum(v.t), 'a number (ms after startedAt)');
      for (const n of ['sent', 'acked', 'received', 'errors']) field(n, isInt(v[n]), 'a non-negative integer');
      break;
    default:
      return bad(`unknown line kind k=${JSON.stringify(k ?? null)} (a ${RUN_FORMAT} file has connect, pub, disconnect and end lines; a newer simulator wrote it, or the line was damaged)`);
  }
  return v as unknown as RunLine;
}

function checkExpect(e: unknown, bad: (what: string) => never): asserts e is Expectation {
  if (!isObj(e)) bad('pub line: "expect" must be an object {present, env?, gap?, acl?, ok?}');
  const x = e as Obj;
  if (typeof x.present !== 'boolean') bad('pub line: "expect.present" must be true or false');
  if (x.env !== undefined && (typeof x.env !== 'string' || !VERDICT_SET.has(x.env))) bad(`pub line: "expect.env" must be one of ${EXPECTED_VERDICTS.join(', ')}, got ${JSON.stringify(x.env)}`);
  if (x.gap !== undefined && !(isInt(x.gap) && x.gap > 0)) bad(`pub line: "expect.gap" must be a positive integer, got ${JSON.stringify(x.gap)}`);
  if (x.acl !== undefined && x.acl !== 'allow' && x.acl !== 'deny') bad(`pub line: "expect.acl" must be "allow" or "deny", got ${JSON.stringify(x.acl)}`);
  if (x.ok !== undefined && typeof x.ok !== 'boolean') bad(`pub line: "expect.ok" must be true or false, got ${JSON.stringify(x.ok)}`);
}
