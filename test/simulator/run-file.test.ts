/**
 * The simulator's run file: written by RunFileWriter (buffered, flushed by size and timer), read
 * back streaming, with clear errors for files that are not run files or have damaged lines, and
 * tolerance for the one damage a crash leaves (a cut last line).
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { appendFileSync, readFileSync, writeFileSync } from 'node:fs';
import { createHash } from 'node:crypto';
import { join } from 'node:path';
import { tempDir } from '../helpers/tmp.js';
import { RunFileReader, RunFileWriter, readRunFile, readRunHeader, readRunLines } from '../../simulator/run-file.js';
import { RUN_FORMAT, type RunHeader, type RunLine, type Scenario } from '../../simulator/types.js';
import { isWitnessError } from '../../shared/errors.js';

const h = (s: string): string => createHash('sha256').update(s).digest('base64url');

function scenario(): Scenario {
  return {
    name: 'unit',
    seed: 'seed',
    durationMs: 1000,
    rampMs: 0,
    audience: 'mqtt-witness',
    clockUncertaintyMs: 50,
    envelopeMode: 'observe',
    subscriber: { filter: '', qos: 0 },
    fleets: [],
    incidents: [],
  };
}

function header(): RunHeader {
  return { format: RUN_FORMAT, kind: 'run', scenario: scenario(), startedAt: 1_700_000_000_000, broker: 'mqtt://127.0.0.1:1883', devices: [{ id: 'd1', fleet: 'f', pub: 'A'.repeat(43) }], tool: 'test' };
}

function pub(n: number): RunLine {
  const payload = `payload-${n}`;
  return {
    k: 'pub',
    t: n,
    dev: 'd1',
    ref: `d1#${n}`,
    topic: 'f/d1',
    q: 1,
    r: false,
    sent: true,
    h: h(payload),
    ph: h(`app-${n}`),
    seq: n,
    eh: h(payload),
    b64: Buffer.from(payload).toString('base64'),
    expect: { present: true, env: 'valid', acl: 'allow', ok: true },
  };
}

const END: RunLine = { k: 'end', t: 99, sent: 3, acked: 3, received: 0, errors: 0 };

async function writeRun(path: string, lines: RunLine[]): Promise<void> {
  const w = await RunFileWriter.open(path, header());
  for (const l of lines) w.write(l);
  await w.close();
}

async function rejectsWith(p: Promise<unknown>, code: string, message: RegExp): Promise<void> {
  await assert.rejects(p, (e: unknown) => {
    assert.ok(isWitnessError(e), String(e));
    assert.equal(e.code, code);
    assert.match(e.message, message);
    return true;
  });
}

describe('RunFileWriter and readRunFile', () => {
  test('round trip: header, then one JSON line per RunLine; an end line makes it complete', async (t) => {
    const path = join(tempDir(t), 'run.ndjson');
    const lines: RunLine[] = [{ k: 'connect', t: 0, dev: 'd1', ok: true, rc: 0, ms: 1.5 }, pub(0), pub(1), { k: 'disconnect', t: 5, dev: 'd1', why: 'planned' }, END];
    await writeRun(path, lines);
    const text = readFileSync(path, 'utf8');
    assert.equal(text.split('\n').length, lines.length + 2); // header + lines + final ''
    assert.deepEqual(JSON.parse(text.split('\n')[0]!), header());
    const r = await readRunFile(path);
    assert.deepEqual(r.header, header());
    assert.deepEqual(r.lines, lines);
    assert.equal(r.status.complete, true);
    assert.equal(r.status.lines, lines.length);
    assert.equal(r.status.warningCount, 0);
    assert.equal(r.status.truncated, undefined);
    assert.deepEqual(await readRunHeader(path), header());
    const streamed: RunLine[] = [];
    for await (const l of readRunLines(path)) streamed.push(l);
    assert.deepEqual(streamed, lines);
  });

  test('streams across chunk boundaries (tiny chunks, many lines)', async (t) => {
    const path = join(tempDir(t), 'run.ndjson');
    const lines = Array.from({ length: 3000 }, (_, n) => pub(n));
    await writeRun(path, lines);
    const r = await RunFileReader.open(path, { chunkBytes: 97 });
    let n = 0;
    for await (const l of r.lines()) {
      assert.deepEqual(l, lines[n]);
      n++;
    }
    assert.equal(n, 3000);
    assert.equal(r.status.complete, false);
    assert.equal(r.status.bytesRead, r.status.size);
  });

  test('the buffer is written when it is full, and on the timer', async (t) => {
    const dir = tempDir(t);
    const bySize = join(dir, 'size.ndjson');
    const w = await RunFileWriter.open(bySize, header(), { bufferBytes: 1, flushIntervalMs: 60_000 });
    w.write(pub(0));
    assert.equal(readFileSync(bySize, 'utf8').split('\n').length, 3, 'written at once: the buffer was full');
    await w.close();

    const byTimer = join(dir, 'timer.ndjson');
    const w2 = await RunFileWriter.open(byTimer, header(), { bufferBytes: 1 << 20, flushIntervalMs: 20 });
    w2.write(pub(0));
    w2.write(pub(1));
    assert.equal(readFileSync(byTimer, 'utf8').split('\n').length, 2, 'buffered: only the header is in the file');
    await new Promise((r) => setTimeout(r, 120));
    assert.equal(readFileSync(byTimer, 'utf8').split('\n').length, 4, 'the timer wrote the buffer');
    assert.equal(w2.lines, 2);
    await w2.close();
    await w2.close(); // twice is fine
    assert.throws(() => w2.write(pub(2)), /after close/);
  });

  test('the writer refuses a header of another format and a line of unknown kind', async (t) => {
    const dir = tempDir(t);
    await assert.rejects(RunFileWriter.open(join(dir, 'x'), { ...header(), format: 'nope' } as unknown as RunHeader), /format must be/);
    const w = await RunFileWriter.open(join(dir, 'y'), header());
    assert.throws(() => w.write({ k: 'bogus' } as unknown as RunLine), /k must be one of/);
    await w.close();
  });
});

describe('run file errors', () => {
  test('not a run file: empty, not JSON, another format, a newer version', async (t) => {
    const dir = tempDir(t);
    const p = join(dir, 'f');
    writeFileSync(p, '');
    await rejectsWith(readRunHeader(p), 'WITNESS_ERR_RUN_FILE_FORMAT', /f:1: not a simulator run file: the file is empty.*witness sim run --record/);
    writeFileSync(p, 'hello world\n{"k":"end"}\n');
    await rejectsWith(readRunHeader(p), 'WITNESS_ERR_RUN_FILE_FORMAT', /f:1: not a simulator run file: the first line is not JSON/);
    writeFileSync(p, '{"format":"witness-proof/v1"}\n');
    await rejectsWith(readRunHeader(p), 'WITNESS_ERR_RUN_FILE_FORMAT', /format "witness-proof\/v1", expected "witness-sim-run\/v1"/);
    writeFileSync(p, JSON.stringify({ ...header(), format: 'witness-sim-run/v2' }) + '\n');
    await rejectsWith(readRunHeader(p), 'WITNESS_ERR_RUN_FILE_FORMAT', /version "witness-sim-run\/v2" is not supported/);
    writeFileSync(p, JSON.stringify(header()).slice(0, 40));
    await rejectsWith(readRunHeader(p), 'WITNESS_ERR_RUN_FILE_FORMAT', /header line is incomplete/);
    writeFileSync(p, JSON.stringify({ ...header(), devices: [{ id: 'd1', fleet: 'f' }] }) + '\n');
    await rejectsWith(readRunHeader(p), 'WITNESS_ERR_RUN_FILE_MALFORMED', /f:1: run file header: devices\[0\]\.pub/);
    await rejectsWith(readRunHeader(join(dir, 'missing')), 'WITNESS_ERR_IO', /missing: cannot open the run file/);
  });

  async function linesOf(path: string): Promise<RunLine[]> {
    return (await readRunFile(path)).lines;
  }

  test('a malformed line is an error naming FILE:LINE', async (t) => {
    const p = join(tempDir(t), 'run.ndjson');
    await writeRun(p, [pub(0), pub(1), END]);
    const good = readFileSync(p, 'utf8').split('\n');
    const put = (n: number, text: string): void => {
      const copy = [...good];
      copy[n - 1] = text;
      writeFileSync(p, copy.join('\n'));
    };
    put(3, '{"k":"pub",');
    await rejectsWith(linesOf(p), 'WITNESS_ERR_RUN_FILE_MALFORMED', /run\.ndjson:3: not JSON/);
    put(2, JSON.stringify({ k: 'warp', t: 1 }));
    await rejectsWith(linesOf(p), 'WITNESS_ERR_RUN_FILE_MALFORMED', /run\.ndjson:2: unknown line kind k="warp"/);
    const { h: _h, ...noHash } = pub(0) as Extract<RunLine, { k: 'pub' }>;
    put(2, JSON.stringify(noHash));
    await rejectsWith(linesOf(p), 'WITNESS_ERR_RUN_FILE_MALFORMED', /run\.ndjson:2: pub line: "h" must be a base64url SHA-256/);
    put(3, JSON.stringify({ ...pub(1), q: 3 }));
    await rejectsWith(linesOf(p), 'WITNESS_ERR_RUN_FILE_MALFORMED', /:3: pub line: "q" must be 0, 1 or 2, got 3/);
    put(3, JSON.stringify({ ...pub(1), expect: { present: true, env: 'fine' } }));
    await rejectsWith(linesOf(p), 'WITNESS_ERR_RUN_FILE_MALFORMED', /:3: pub line: "expect\.env" must be one of valid, missing/);
    put(3, JSON.stringify({ ...pub(1), incident: { type: 'meteor', id: 'x' } }));
    await rejectsWith(linesOf(p), 'WITNESS_ERR_RUN_FILE_MALFORMED', /:3: pub line: "incident" must be/);
    writeFileSync(p, good.slice(0, 3).join('\n') + '\n\n' + good[3] + '\n');
    await rejectsWith(linesOf(p), 'WITNESS_ERR_RUN_FILE_MALFORMED', /:4: empty line/);
  });

  test('a cut last line (a crash mid-write) is skipped and reported; no end line: incomplete', async (t) => {
    const p = join(tempDir(t), 'run.ndjson');
    await writeRun(p, [pub(0), pub(1)]);
    appendFileSync(p, JSON.stringify(pub(2)).slice(0, 50));
    const r = await readRunFile(p);
    assert.equal(r.lines.length, 2);
    assert.equal(r.status.complete, false);
    assert.deepEqual(r.status.truncated, { line: 4, bytes: 50 });
    assert.equal(r.status.warningCount, 1);
    assert.match(r.status.warnings[0]!, /run\.ndjson:4: the last line is incomplete/);
  });

  test('a complete last line without its newline is read, with a warning', async (t) => {
    const p = join(tempDir(t), 'run.ndjson');
    await writeRun(p, [pub(0)]);
    appendFileSync(p, JSON.stringify(END));
    const r = await readRunFile(p);
    assert.equal(r.lines.length, 2);
    assert.equal(r.status.complete, true);
    assert.equal(r.status.truncated, undefined);
    assert.match(r.status.warnings[0]!, /no newline/);
  });
});
