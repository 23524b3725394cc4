/**
 * `witness sim check DATA_DIR --run FILE`: joins a run's ground truth (the run file, §9 of
 * docs/FORMATS.md) with what the broker recorded (its ledger, §2 and §6), and says whether every
 * injected incident was caught and nothing clean was flagged or lost.
 *
 * Steps:
 *   1. verify   — verifyLedger against the broker key, as `witness verify` does: a tampered ledger
 *                 fails the check whatever the join says (skipped with verify: false).
 *   2. ledger   — one pass over the records. Only publish / connect / disconnect records whose
 *                 client id `c` is a run device, broker time within the run's window (startedAt −
 *                 slack … end + slack: records of earlier or later runs with the same device ids
 *                 are ignored), are kept — as small tuples: per (c, h) the record indexes with
 *                 verdict bits packed into one number; per device the connect records' index and ok.
 *   3. run      — one pass over the run file, in order. A sent `pub` takes the next unmatched
 *                 record of its (c, h): the i-th sent copy of some bytes matches the i-th record of
 *                 them (a replayed envelope is the same bytes as its original, so order matters),
 *                 and is compared with its `expect` (env, gap when env is gap, acl, ok). A
 *                 `connect` takes the device's next connect record; the ok flags must agree. A
 *                 `pub` with sent:false (a dropped message) is settled at the end: any record of
 *                 its (c, h) left after every sent copy took its own means the broker saw it.
 *   4. verdict  — an incident occurrence (incident.id) is CAUGHT iff every line carrying it met
 *                 its expectation. A clean line (no incident) recorded otherwise than expected is a
 *                 FALSE POSITIVE (flagged); one without any record is LOST. Publish records of run
 *                 devices that no line took are UNEXPECTED: a false positive when their verdict is
 *                 not valid or they were refused, else 'extra' (reported, not failing; a dup
 *                 retransmission, `d:true`, likewise). Connect records no line took, and run
 *                 connects with no record, are connect mismatches.
 *
 * PASS = ledger intact (or not verified) ∧ no incident missed ∧ no false positive ∧ nothing lost ∧
 * no connect mismatch. Exit codes: 0 pass, 1 fail, 2 usage / input / I/O error.
 */
import { open } from 'node:fs/promises';
import { resolve } from 'node:path';
import { WitnessError } from '../shared/errors.js';
import { EXIT_FAILED, EXIT_OK, Progress, parseCommandArgs, parseCount, printJson, reportError, type CommandIo } from '../shared/cli/cli.js';
import { verifyLedger, type VerifyFailure } from '../shared/ledger/verifier.js';
import { LedgerReader } from '../shared/ledger/reader.js';
import { ENVELOPE_VERDICTS } from '../broker/records.js';
import { locateLedger, resolveKey, type TrustedKey } from '../broker/cli/ledger-commands.js';
import { RunFileReader, parseRunLine } from './run-file.js';
import { INCIDENT_TYPES, type Expectation, type IncidentType, type RunEnd, type RunPublish } from './types.js';

// ── report ───────────────────────────────────────────────────────────────────────────────────

export interface CheckOptions {
  /** Verify the ledger (signatures, Merkle roots) before joining. Default true. */
  verify?: boolean;
  /** The broker key to trust: a verifier key `name+hash+base64`, a base64url public key, or a file holding either. Default: the data directory's own (witness.json). */
  key?: string;
  /** Records this long before the run start or after its end still count as the run's, ms. Default 10,000. */
  slackMs?: number;
  /** Samples kept per list (misses, false positives, lost, unexpected, connect mismatches). Default 100. */
  maxSamples?: number;
  /** Progress: done and total (records, then run-file bytes) of the phase under way. */
  onProgress?: (done: number, total: number | undefined, phase: CheckPhase) => void;
}

export type CheckPhase = 'verify' | 'ledger' | 'run';

export const CHECK_DEFAULTS = { slackMs: 10_000, maxSamples: 100 } as const;

/** What the ledger recorded for one publish (absent fields were absent in the record). */
export interface FoundPublish {
  i: number;
  env?: string;
  gap?: number;
  acl?: string;
  /** false: refused (`ok:false` in the record). */
  ok: boolean;
  /** The record is a retransmission (`d:true`). */
  dup?: boolean;
}

export interface FoundConnect {
  i: number;
  ok: boolean;
}

/** One run line that did not meet its expectation. */
export interface LineProblem {
  kind: 'pub' | 'connect';
  ref: string;
  dev: string;
  topic?: string;
  /** The run line's expectation (for a connect: the ok flag the device saw). */
  expected: Expectation | { ok: boolean };
  /** The record it was matched with; null: no record. */
  found: FoundPublish | FoundConnect | null;
  /** What differs, for people. */
  problems: string[];
}

export interface IncidentMiss {
  id: string;
  type: IncidentType;
  dev: string;
  /** Lines carrying the occurrence, and how many of them failed. */
  lines: number;
  failed: number;
  /** The failing lines (up to 10). */
  reasons: LineProblem[];
}

export interface UnexpectedRecord {
  c: string;
  h: string;
  i: number;
  env?: string;
  gap?: number;
  acl?: string;
  ok: boolean;
  /** flagged: a non-valid verdict or refused (a false positive); extra: recorded valid; retransmitted: a `d:true` copy. */
  category: 'flagged' | 'extra' | 'retransmitted';
}

export interface CheckReport {
  ok: boolean;
  run: {
    file: string;
    kind: 'run' | 'replay';
    scenario: string;
    startedAt: number;
    /** An `end` line was read. */
    complete: boolean;
    /** The last line was cut by a crash mid-write (skipped). */
    truncated?: { line: number; bytes: number };
    warnings: string[];
    warningCount: number;
    lines: number;
    devices: number;
    /** pub lines with sent:true, and with sent:false (dropped on purpose). */
    published: number;
    dropped: number;
    connects: number;
    incidents: number;
    end?: RunEnd;
  };
  ledger: {
    dir: string;
    /** Records in the ledger. */
    records: number;
    /** Publish / connect / disconnect records of run devices within the run's window. */
    deviceRecords: number;
    /** Records of run devices left out because their broker time is outside the window. */
    outsideWindow: number;
    /** Lines that could not be parsed as JSON (tampering: see `verified`). */
    unreadable: number;
    window: { from: number; to: number | null };
    /** Present when the ledger was verified. */
    verified?: {
      ok: boolean;
      key: string;
      keySource: string;
      records: { total: number; valid: number };
      checkpoints: { total: number; valid: number };
      /** Records after the last checkpoint, not yet covered by a signature. */
      uncovered: number;
      firstBadIndex?: number;
      failureCount: number;
      problems: VerifyFailure[];
    };
  };
  incidents: {
    total: number;
    caught: number;
    missed: number;
    /** caught / total; 1 when the run injected no incident. */
    detectionRate: number;
    byType: Partial<Record<IncidentType, { total: number; caught: number }>>;
  };
  /** The first maxSamples missed occurrences, in run order. */
  misses: IncidentMiss[];
  /** Clean lines recorded otherwise than expected, and unexpected records with a non-valid verdict or refused. */
  falsePositives: { count: number; clean: number; unexpected: number; samples: Array<LineProblem | UnexpectedRecord> };
  /** Clean lines with no record at all. */
  lost: { count: number; samples: LineProblem[] };
  /** Publish records of run devices that no run line matched. */
  unexpected: { count: number; flagged: number; extra: number; retransmitted: number; samples: UnexpectedRecord[] };
  connects: {
    /** Connect lines of the run, and connect records of its devices. */
    expected: number;
    recorded: number;
    matched: number;
    /** Run connects that got no CONNACK and have no record (they never reached the broker): not mismatches. */
    unanswered: number;
    /** Run connects with no record or another ok flag, plus connect records no run line took. */
    mismatches: number;
    samples: Array<LineProblem | { kind: 'unexpected-connect'; dev: string; i: number; ok: boolean }>;
    disconnects: { run: number; recorded: number };
  };
}

// ── packed ledger tuples ─────────────────────────────────────────────────────────────────────
// A publish record is one number: index × 256 + flags (index < 2^45 stays exact).
//   bits 0–3 env (index into ENVELOPE_VERDICTS; 15 = none or unknown)   bits 4–5 acl (0 allow, 1 deny, 2 none)
//   bit 6 refused (ok:false)                                          bit 7 dup (d:true)

const ENV_NONE = 15;
const ENV_CODE = new Map<string, number>(ENVELOPE_VERDICTS.map((v, n) => [v, n]));
const ACL_NONE = 2;

function packPublish(i: number, r: Record<string, unknown>): number {
  const env = typeof r.env === 'string' ? (ENV_CODE.get(r.env) ?? ENV_NONE) : ENV_NONE;
  const acl = r.acl === 'allow' ? 0 : r.acl === 'deny' ? 1 : ACL_NONE;
  return i * 256 + env + (acl << 4) + (r.ok === false ? 64 : 0) + (r.d === true ? 128 : 0);
}

function unpackPublish(p: number, gaps: Map<number, number>): FoundPublish {
  const flags = p % 256;
  const i = (p - flags) / 256;
  const envCode = flags & 15;
  const acl = (flags >> 4) & 3;
  const f: FoundPublish = { i, ok: (flags & 64) === 0 };
  if (envCode !== ENV_NONE) f.env = ENVELOPE_VERDICTS[envCode]!;
  const g = gaps.get(i);
  if (g !== undefined) f.gap = g;
  if (acl !== ACL_NONE) f.acl = acl === 0 ? 'allow' : 'deny';
  if (flags & 128) f.dup = true;
  return f;
}

/** Per (c, h): the unmatched records, in ledger order. */
class PublishQueues {
  readonly #map = new Map<string, number | number[]>();
  size = 0;

  static key(c: string, h: string): string {
    return `${c}\n${h}`;
  }

  push(key: string, packed: number): void {
    const cur = this.#map.get(key);
    if (cur === undefined) this.#map.set(key, packed);
    else if (typeof cur === 'number') this.#map.set(key, [cur, packed]);
    else cur.push(packed);
    this.size++;
  }

  shift(key: string): number | undefined {
    const cur = this.#map.get(key);
    if (cur === undefined) return undefined;
    this.size--;
    if (typeof cur === 'number') {
      this.#map.delete(key);
      return cur;
    }
    const v = cur.shift()!;
    if (cur.length === 1) this.#map.set(key, cur[0]!);
    return v;
  }

  *remaining(): Generator<{ key: string; packed: number }> {
    for (const [key, v] of this.#map) {
      if (typeof v === 'number') yield { key, packed: v };
      else for (const p of v) yield { key, packed: p };
    }
  }
}

/** Compares a publish expectation with what was recorded; [] when they agree. */
export function comparePublish(expect: Expectation, found: FoundPublish | undefined): string[] {
  if (!expect.present) return found ? [`recorded at index ${found.i} (env ${found.env ?? 'none'}), expected no record: the message was never sent`] : [];
  if (!found) return ['no record'];
  const p: string[] = [];
  if (expect.env !== undefined && found.env !== expect.env) p.push(`env ${found.env ?? 'none'}${found.gap !== undefined ? ` (gap ${found.gap})` : ''}, expected ${expect.env}`);
  else if (expect.env === 'gap' && expect.gap !== undefined && found.gap !== expect.gap) p.push(`gap ${found.gap ?? 'none'}, expected gap ${expect.gap}`);
  if (expect.acl !== undefined && found.acl !== expect.acl) p.push(`acl ${found.acl ?? 'none'}, expected ${expect.acl}`);
  if (expect.ok !== undefined && found.ok !== expect.ok) p.push(found.ok ? 'accepted, expected refused (ok:false)' : 'refused (ok:false), expected accepted');
  return p;
}

// ── check ────────────────────────────────────────────────────────────────────────────────────

interface Occurrence {
  type: IncidentType;
  dev: string;
  lines: number;
  failed: number;
  reasons: LineProblem[];
}

class Samples<T> {
  count = 0;
  readonly samples: T[] = [];
  constructor(readonly max: number) {}
  add(x: T): void {
    this.count++;
    if (this.samples.length < this.max) this.samples.push(x);
  }
}

export async function checkRun(dataDir: string, runFile: string, opts: CheckOptions = {}): Promise<CheckReport> {
  const slack = opts.slackMs ?? CHECK_DEFAULTS.slackMs;
  const maxSamples = opts.maxSamples ?? CHECK_DEFAULTS.maxSamples;
  const loc = locateLedger(dataDir);
  const reader = await RunFileReader.open(runFile);
  try {
    const header = reader.header;
    const devices = new Set(header.devices.map((d) => d.id));
    const end = await peekRunEnd(runFile, reader.status.size);
    const from = header.startedAt - slack;
    const to = end ? header.startedAt + end.t + slack : null;

    // 1. verify
    let verified: CheckReport['ledger']['verified'];
    if (opts.verify !== false) {
      // The key as `witness verify` takes it (the same resolution); the reader is opened only if needed.
      let reader: LedgerReader | undefined;
      let key: TrustedKey;
      try {
        key = resolveKey(opts.key, loc, () => (reader ??= LedgerReader.open(loc.ledgerDir)), ', or --no-verify');
      } finally {
        reader?.close();
      }
      const v = await verifyLedger(loc.ledgerDir, { key: { name: key.name, publicKey: key.publicKey }, onProgress: (d, t) => opts.onProgress?.(d, t, 'verify') });
      if (v.checkpoints.total > 0 && v.checkpoints.unsigned === v.checkpoints.total) {
        throw new WitnessError(
          'WITNESS_ERR_CHECKPOINT_UNSIGNED',
          `none of the ${v.checkpoints.total} checkpoints in ${loc.ledgerDir} is signed by ${v.key} (from ${key.source}); is it this broker's key? (or pass --no-verify to join without verifying)`,
        );
      }
      // The first failure is the most precise (a record's leaf hash or index); later ones (root
      // mismatches) name the start of the range a checkpoint covers.
      const firstBadIndex = v.failures.find((f) => f.index !== undefined)?.index;
      verified = {
        ok: v.ok,
        key: v.key,
        keySource: key.source,
        records: v.records,
        checkpoints: { total: v.checkpoints.total, valid: v.checkpoints.valid },
        uncovered: v.uncovered,
        ...(firstBadIndex !== undefined ? { firstBadIndex } : {}),
        failureCount: v.failureCount,
        problems: v.failures.slice(0, 10),
      };
    }

    // 2. ledger pass
    const pubs = new PublishQueues();
    const gaps = new Map<number, number>();
    const connects = new Map<string, number[]>();
    let records = 0;
    let deviceRecords = 0;
    let outsideWindow = 0;
    let unreadable = 0;
    let ledgerConnects = 0;
    let ledgerDisconnects = 0;
    const lr = LedgerReader.open(loc.ledgerDir);
    try {
      const total = lr.size;
      for await (const { index, line } of lr.records()) {
        records++;
        if ((records & 4095) === 0) opts.onProgress?.(records, total, 'ledger');
        const e = eventOf(line);
        if (e !== 'publish' && e !== 'connect' && e !== 'disconnect') continue;
        let r: Record<string, unknown>;
        try {
          r = JSON.parse(line) as Record<string, unknown>;
        } catch {
          unreadable++;
          continue;
        }
        if (typeof r.c !== 'string' || !devices.has(r.c)) continue;
        if (typeof r.t !== 'number' || r.t < from || (to !== null && r.t > to)) {
          outsideWindow++;
          continue;
        }
        deviceRecords++;
        if (e === 'publish') {
          if (typeof r.h !== 'string') continue;
          pubs.push(PublishQueues.key(r.c, r.h), packPublish(index, r));
          if (typeof r.gap === 'number') gaps.set(index, r.gap);
        } else if (e === 'connect') {
          ledgerConnects++;
          let list = connects.get(r.c);
          if (!list) connects.set(r.c, (list = []));
          list.push(index * 2 + (r.ok === true ? 1 : 0));
        } else {
          ledgerDisconnects++;
        }
      }
      opts.onProgress?.(records, total, 'ledger');
    } finally {
      lr.close();
    }

    // 3. run pass
    const occurrences = new Map<string, Occurrence>();
    const falsePositives = new Samples<LineProblem | UnexpectedRecord>(maxSamples);
    let fpClean = 0;
    let fpUnexpected = 0;
    const lost = new Samples<LineProblem>(maxSamples);
    const connectProblems = new Samples<CheckReport['connects']['samples'][number]>(maxSamples);
    const connPos = new Map<string, number>();
    const connCount = new Map<string, number>();
    const dropped: RunPublish[] = [];
    let published = 0;
    let runConnects = 0;
    let runDisconnects = 0;
    let matchedConnects = 0;
    let unanswered = 0;
    let linesSeen = 0;

    const settle = (incident: { type: IncidentType; id: string } | undefined, dev: string, problem: LineProblem | undefined): void => {
      if (incident) {
        let o = occurrences.get(incident.id);
        if (!o) occurrences.set(incident.id, (o = { type: incident.type, dev, lines: 0, failed: 0, reasons: [] }));
        o.lines++;
        if (problem) {
          o.failed++;
          if (o.reasons.length < 10) o.reasons.push(problem);
        }
        return;
      }
      if (!problem || problem.kind !== 'pub') return;
      if (problem.found === null) lost.add(problem);
      else {
        fpClean++;
        falsePositives.add(problem);
      }
    };
    const settlePublish = (l: RunPublish): void => {
      const packed = pubs.shift(PublishQueues.key(l.dev, l.h));
      const found = packed === undefined ? undefined : unpackPublish(packed, gaps);
      const problems = comparePublish(l.expect, found);
      const problem: LineProblem | undefined = problems.length
        ? { kind: 'pub', ref: l.ref, dev: l.dev, topic: l.topic, expected: l.expect, found: found ?? null, problems }
        : undefined;
      settle(l.incident, l.dev, problem);
    };

    for await (const l of reader.lines()) {
      linesSeen++;
      if ((linesSeen & 4095) === 0) opts.onProgress?.(reader.status.bytesRead, reader.status.size, 'run');
      switch (l.k) {
        case 'pub':
          if (!l.sent) {
            // Settled after every sent copy has taken its own record.
            dropped.push(l);
            continue;
          }
          published++;
          settlePublish(l);
          break;
        case 'connect': {
          runConnects++;
          const n = connCount.get(l.dev) ?? 0;
          connCount.set(l.dev, n + 1);
          const list = connects.get(l.dev);
          const pos = connPos.get(l.dev) ?? 0;
          let packed = list?.[pos];
          // No CONNACK came: perhaps it never reached the broker. It takes a record only if the
          // next one is a refusal too; an accepted one belongs to a later attempt.
          const noConnack = !l.ok && l.rc === undefined;
          if (packed !== undefined && noConnack && packed % 2 === 1) packed = undefined;
          let problem: LineProblem | undefined;
          const ref = l.ref ?? `${l.dev}@connect#${n}`;
          if (packed !== undefined) {
            connPos.set(l.dev, pos + 1);
            matchedConnects++;
            const found: FoundConnect = { i: (packed - (packed % 2)) / 2, ok: packed % 2 === 1 };
            if (found.ok !== l.ok) {
              problem = { kind: 'connect', ref, dev: l.dev, expected: { ok: l.ok }, found, problems: [found.ok ? 'recorded accepted, the device saw a refusal' : 'recorded refused, the device saw it accepted'] };
            }
          } else if (noConnack) {
            unanswered++;
          } else {
            problem = { kind: 'connect', ref, dev: l.dev, expected: { ok: l.ok }, found: null, problems: ['no connect record'] };
          }
          if (problem) connectProblems.add(problem);
          settle(l.incident, l.dev, problem);
          break;
        }
        case 'disconnect':
          runDisconnects++;
          break;
        case 'end':
          break;
      }
    }
    opts.onProgress?.(reader.status.bytesRead, reader.status.size, 'run');

    // 4. settle dropped messages, then what no line took.
    for (const l of dropped) settlePublish(l);
    for (const [dev, list] of connects) {
      for (let k = connPos.get(dev) ?? 0; k < list.length; k++) {
        const packed = list[k]!;
        connectProblems.add({ kind: 'unexpected-connect', dev, i: (packed - (packed % 2)) / 2, ok: packed % 2 === 1 });
      }
    }
    const unexpected = new Samples<UnexpectedRecord>(maxSamples);
    let flagged = 0;
    let extra = 0;
    let retransmitted = 0;
    for (const { key, packed } of pubs.remaining()) {
      const nl = key.indexOf('\n');
      const f = unpackPublish(packed, gaps);
      const category: UnexpectedRecord['category'] = f.dup ? 'retransmitted' : f.env !== 'valid' || !f.ok ? 'flagged' : 'extra';
      const u: UnexpectedRecord = { c: key.slice(0, nl), h: key.slice(nl + 1), i: f.i, ok: f.ok, category };
      if (f.env !== undefined) u.env = f.env;
      if (f.gap !== undefined) u.gap = f.gap;
      if (f.acl !== undefined) u.acl = f.acl;
      unexpected.add(u);
      if (category === 'flagged') {
        flagged++;
        fpUnexpected++;
        falsePositives.add(u);
      } else if (category === 'extra') extra++;
      else retransmitted++;
    }

    // verdict
    const byType: CheckReport['incidents']['byType'] = {};
    const misses: IncidentMiss[] = [];
    let caught = 0;
    const counts = new Map<IncidentType, { total: number; caught: number }>();
    for (const [id, o] of occurrences) {
      let c = counts.get(o.type);
      if (!c) counts.set(o.type, (c = { total: 0, caught: 0 }));
      c.total++;
      if (o.failed === 0) {
        caught++;
        c.caught++;
      } else if (misses.length < maxSamples) {
        misses.push({ id, type: o.type, dev: o.dev, lines: o.lines, failed: o.failed, reasons: o.reasons });
      }
    }
    for (const t of INCIDENT_TYPES) {
      const c = counts.get(t);
      if (c) byType[t] = c;
    }
    const total = occurrences.size;
    const missed = total - caught;
    const st = reader.status;
    const ledgerOk = verified === undefined || verified.ok;
    const report: CheckReport = {
      ok: false,
      run: {
        file: resolve(runFile),
        kind: header.kind,
        scenario: typeof header.scenario?.name === 'string' ? header.scenario.name : '',
        startedAt: header.startedAt,
        complete: st.complete,
        ...(st.truncated ? { truncated: st.truncated } : {}),
        warnings: st.warnings,
        warningCount: st.warningCount,
        lines: st.lines,
        devices: header.devices.length,
        published,
        dropped: dropped.length,
        connects: runConnects,
        incidents: total,
        ...(st.end ? { end: st.end } : {}),
      },
      ledger: {
        dir: loc.ledgerDir,
        records,
        deviceRecords,
        outsideWindow,
        unreadable,
        window: { from, to },
        ...(verified ? { verified } : {}),
      },
      incidents: { total, caught, missed, detectionRate: total === 0 ? 1 : caught / total, byType },
      misses,
      falsePositives: { count: falsePositives.count, clean: fpClean, unexpected: fpUnexpected, samples: falsePositives.samples },
      lost: { count: lost.count, samples: lost.samples },
      unexpected: { count: unexpected.count, flagged, extra, retransmitted, samples: unexpected.samples },
      connects: {
        expected: runConnects,
        recorded: ledgerConnects,
        matched: matchedConnects,
        unanswered,
        mismatches: connectProblems.count,
        samples: connectProblems.samples,
        disconnects: { run: runDisconnects, recorded: ledgerDisconnects },
      },
    };
    report.ok = ledgerOk && missed === 0 && falsePositives.count === 0 && lost.count === 0 && connectProblems.count === 0;
    return report;
  } finally {
    await reader.close();
  }
}

/** `e` of a ledger line without parsing it: lines start `{"i":N,"v":1,"e":"…"`. */
function eventOf(line: string): string | undefined {
  const p = line.indexOf('"e":"');
  if (p < 0 || p > 48) return undefined;
  const q = line.indexOf('"', p + 5);
  return q < 0 ? undefined : line.slice(p + 5, q);
}

/** The `end` line, read from the file's tail (it is the last line of a complete run). */
async function peekRunEnd(path: string, size: number): Promise<RunEnd | undefined> {
  const n = Math.min(size, 64 * 1024);
  if (n === 0) return undefined;
  const fh = await open(path, 'r');
  try {
    const buf = Buffer.alloc(n);
    const { bytesRead } = await fh.read(buf, 0, n, size - n);
    const text = buf.toString('utf8', 0, bytesRead);
    const lines = text.split('\n');
    lines.pop(); // after the last newline: empty, or a truncated line
    const last = lines.at(-1);
    if (last === undefined || !last.includes('"k":"end"')) return undefined;
    try {
      const l = parseRunLine(last, path, 0);
      return l.k === 'end' ? l : undefined;
    } catch {
      return undefined;
    }
  } finally {
    await fh.close();
  }
}


// ── people ───────────────────────────────────────────────────────────────────────────────────

function pct(x: number): string {
  return `${(x * 100).toFixed(x === 1 || x === 0 ? 0 : 1)}%`;
}

function describeFound(f: FoundPublish | FoundConnect | null): string {
  if (f === null) return 'no record';
  if ('env' in f || 'acl' in f) {
    const p = f as FoundPublish;
    return `record ${p.i}: env ${p.env ?? 'none'}${p.gap !== undefined ? ` gap ${p.gap}` : ''}, acl ${p.acl ?? 'none'}${p.ok ? '' : ', refused'}`;
  }
  return `record ${f.i}: ${f.ok ? 'accepted' : 'refused'}`;
}

function describeExpect(e: Expectation | { ok: boolean }): string {
  if (!('present' in e)) return e.ok ? 'accepted' : 'refused';
  if (!e.present) return 'no record';
  const parts = [`env ${e.env ?? 'any'}${e.env === 'gap' && e.gap !== undefined ? ` gap ${e.gap}` : ''}`];
  if (e.acl) parts.push(`acl ${e.acl}`);
  if (e.ok !== undefined) parts.push(e.ok ? 'accepted' : 'refused');
  return parts.join(', ');
}

function problemLine(p: LineProblem): string {
  const where = p.found ? ` [${describeFound(p.found)}]` : '';
  return `${p.ref} (${p.kind}${p.topic ? ` ${p.topic}` : ''}): ${p.problems.join('; ')}${p.problems.includes('no record') ? ` (expected ${describeExpect(p.expected)})` : where}`;
}

/** The report for people: run and ledger, detection rate and per-type table, misses, false positives, verdict. */
export function formatCheckReport(r: CheckReport): string {
  const out: string[] = [];
  const run = r.run;
  out.push(`run         ${run.file}`);
  out.push(`            ${run.kind} of scenario ${JSON.stringify(run.scenario)} at ${new Date(run.startedAt).toISOString()}: ${run.devices} devices, ${run.published} published, ${run.dropped} dropped on purpose, ${run.connects} connects`);
  if (!run.complete) out.push('            INCOMPLETE: no end line (the run was interrupted); checked what it holds');
  if (run.truncated) out.push(`            last line ${run.truncated.line} cut mid-write (${run.truncated.bytes} bytes): skipped`);
  for (const w of run.warnings.slice(0, 5)) out.push(`            warning: ${w}`);
  if (run.warningCount > 5) out.push(`            … and ${run.warningCount - 5} more warnings`);
  const l = r.ledger;
  out.push(`ledger      ${l.dir}: ${l.records} records, ${l.deviceRecords} of the run's devices${l.outsideWindow ? ` (${l.outsideWindow} more outside the run's time window, ignored)` : ''}`);
  if (!l.verified) out.push('verified    no (--no-verify): the join below trusts the records as they are');
  else if (l.verified.ok) out.push(`verified    INTACT (${l.verified.records.total} records, ${l.verified.checkpoints.valid} checkpoints, key ${l.verified.key})`);
  else {
    out.push(`verified    TAMPERED: ${l.verified.failureCount} failure(s)${l.verified.firstBadIndex !== undefined ? `, first at record ${l.verified.firstBadIndex}` : ''}`);
    for (const f of l.verified.problems.slice(0, 5)) out.push(`            ${f.index !== undefined ? `index ${f.index}: ` : ''}${f.message} [${f.code}]`);
  }
  if (l.unreadable) out.push(`            ${l.unreadable} record line(s) are not JSON`);
  const inc = r.incidents;
  out.push(`incidents   ${inc.caught}/${inc.total} caught — detection rate ${inc.total === 0 ? '– (no incidents injected)' : pct(inc.detectionRate)}`);
  const types = Object.entries(inc.byType) as Array<[IncidentType, { total: number; caught: number }]>;
  if (types.length) {
    const w = Math.max(4, ...types.map(([t]) => t.length));
    out.push(`            ${'type'.padEnd(w)}  total  caught  rate`);
    for (const [t, c] of types) out.push(`            ${t.padEnd(w)}  ${String(c.total).padStart(5)}  ${String(c.caught).padStart(6)}  ${pct(c.total ? c.caught / c.total : 1).padStart(4)}${c.caught < c.total ? '  MISSED' : ''}`);
  }
  if (inc.missed) {
    out.push(`misses      ${inc.missed}${r.misses.length < inc.missed ? ` (first ${r.misses.length} shown; --json for details)` : ''}`);
    for (const m of r.misses.slice(0, 20)) {
      out.push(`  ${m.id}: ${m.failed}/${m.lines} line(s) not as expected`);
      for (const p of m.reasons.slice(0, 3)) out.push(`      ${problemLine(p)}`);
    }
    if (r.misses.length > 20) out.push(`  … and ${inc.missed - 20} more`);
  }
  out.push(`false pos.  ${r.falsePositives.count}${r.falsePositives.count ? ` (${r.falsePositives.clean} clean message(s) flagged, ${r.falsePositives.unexpected} unexpected flagged record(s))` : ''}`);
  for (const s of r.falsePositives.samples.slice(0, 10)) {
    out.push(`      ${'category' in s ? `record ${s.i} of ${s.c}: env ${s.env ?? 'none'}${s.gap !== undefined ? ` gap ${s.gap}` : ''}${s.ok ? '' : ', refused'} — no run line sent these bytes` : problemLine(s)}`);
  }
  out.push(`lost        ${r.lost.count}${r.lost.count ? ' clean message(s) sent but not in the ledger' : ''}`);
  for (const s of r.lost.samples.slice(0, 10)) out.push(`      ${s.ref} (${s.topic ?? ''})`);
  if (r.unexpected.count) {
    out.push(`unexpected  ${r.unexpected.count} record(s) of run devices matched no sent message: ${r.unexpected.flagged} flagged, ${r.unexpected.extra} extra (valid), ${r.unexpected.retransmitted} retransmitted (dup)`);
  }
  const c = r.connects;
  out.push(`connects    ${c.expected} in the run, ${c.recorded} recorded, ${c.matched} matched${c.unanswered ? `, ${c.unanswered} unanswered (no CONNACK, no record)` : ''}, ${c.mismatches} mismatch(es)`);
  for (const s of c.samples.slice(0, 10)) {
    out.push(`      ${s.kind === 'unexpected-connect' ? `record ${s.i}: a connect of ${s.dev} (${s.ok ? 'accepted' : 'refused'}) that no run line made` : problemLine(s)}`);
  }
  const why: string[] = [];
  if (l.verified && !l.verified.ok) why.push('ledger tampered');
  if (inc.missed) why.push(`${inc.missed} incident(s) missed`);
  if (r.falsePositives.count) why.push(`${r.falsePositives.count} false positive(s)`);
  if (r.lost.count) why.push(`${r.lost.count} lost`);
  if (c.mismatches) why.push(`${c.mismatches} connect mismatch(es)`);
  out.push(r.ok ? 'result      PASS' : `result      FAIL: ${why.join(', ')}`);
  return out.join('\n') + '\n';
}

// ── witness sim check ────────────────────────────────────────────────────────────────────────

export const SIM_CHECK_USAGE = 'witness sim check DATA_DIR --run FILE [--no-verify] [--key PUB] [--slack MS] [--json]';

export async function simCheckCommand(argv: string[], io: CommandIo): Promise<number> {
  const json = argv.includes('--json');
  let progress: Progress | undefined;
  try {
    const { values, positionals } = parseCommandArgs('witness sim check', argv, {
      run: { type: 'string' },
      'no-verify': { type: 'boolean' },
      key: { type: 'string' },
      slack: { type: 'string' },
      json: { type: 'boolean' },
      quiet: { type: 'boolean', short: 'q' },
      help: { type: 'boolean', short: 'h' },
    });
    if (values.help) {
      io.stdout.write(`${SIM_CHECK_USAGE}\n  join a run file with the broker's ledger: exit 0 when every incident is caught and nothing clean is flagged or lost, 1 when not, 2 on errors\n`);
      return EXIT_OK;
    }
    if (positionals.length !== 1) throw new WitnessError('WITNESS_ERR_USAGE', `witness sim check: expected one DATA_DIR, got ${positionals.length} (usage: ${SIM_CHECK_USAGE})`);
    if (values.run === undefined) throw new WitnessError('WITNESS_ERR_USAGE', `witness sim check: --run FILE is required: the run file written by \`witness sim run --record FILE\` (usage: ${SIM_CHECK_USAGE})`);
    if (values['no-verify'] && values.key !== undefined) throw new WitnessError('WITNESS_ERR_USAGE', 'witness sim check: --key is for verifying; it makes no sense with --no-verify');
    const slackMs = values.slack === undefined ? undefined : parseCount('witness sim check', '--slack', values.slack);
    const show = !values.json && !values.quiet;
    const bars: Partial<Record<CheckPhase, Progress>> = {};
    const labels: Record<CheckPhase, string> = { verify: 'verifying', ledger: 'reading ledger', run: 'joining run' };
    let current: CheckPhase | undefined;
    const report = await checkRun(positionals[0]!, values.run, {
      verify: !values['no-verify'],
      ...(values.key !== undefined ? { key: values.key } : {}),
      ...(slackMs !== undefined ? { slackMs } : {}),
      onProgress: (done, total, phase) => {
        if (phase !== current) {
          progress?.done();
          current = phase;
        }
        progress = bars[phase] ??= new Progress(io, labels[phase], show);
        progress.update(done, total ?? done);
      },
    });
    progress?.done();
    if (values.json) printJson(io, report);
    else if (!values.quiet) io.stdout.write(formatCheckReport(report));
    return report.ok ? EXIT_OK : EXIT_FAILED;
  } catch (e) {
    progress?.done();
    return reportError(io, e, json);
  }
}
