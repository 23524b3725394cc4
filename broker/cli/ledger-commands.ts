/**
 * `witness init`, `witness verify`, `witness proof`, `witness verify-proof`: the ledger's own
 * commands. Each returns its exit code; none calls process.exit, so tests can run them in-process.
 */
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { WitnessError } from '../../shared/errors.js';
import { EXIT_FAILED, EXIT_OK, Progress, parseCommandArgs, parseCount, printJson, type CommandIo } from '../../shared/cli/cli.js';
import { verifyLedger, type VerifyReport } from '../../shared/ledger/verifier.js';
import { LedgerReader } from '../../shared/ledger/reader.js';
import { keyHash, parseVerifierKey } from '../../shared/keys/key-id.js';
import { parsePublicKey } from '../../shared/keys/key-file.js';
import { parseSealKey } from '../../shared/checkpoint/seal.js';
import { parseNote, ed25519NoteVerifier } from '../../shared/checkpoint/note.js';
import { openCheckpoint } from '../../shared/checkpoint/checkpoint.js';
import { leafHash } from '../../shared/merkle/hash.js';
import { verifyInclusion, verifyConsistency } from '../../shared/merkle/verify.js';
import { DEFAULT_DATA_DIR, MANIFEST, initDataDir, readManifest } from '../data-dir.js';
import { SEGMENTS_DIR } from '../../shared/ledger/layout.js';

// ── witness init ─────────────────────────────────────────────────────────────────────────────

export async function initCommand(argv: string[], io: CommandIo): Promise<number> {
  const { values } = parseCommandArgs('witness init', argv, {
    data: { type: 'string' },
    'node-id': { type: 'string' },
    json: { type: 'boolean' },
  }, false);
  const r = await initDataDir(values.data ?? DEFAULT_DATA_DIR, values['node-id']);
  if (values.json) {
    printJson(io, { ok: true, dataDir: r.paths.root, nodeId: r.manifest.nodeId, origin: r.manifest.origin, verifierKey: r.manifest.verifierKey, sealKey: r.sealKeyHex });
    return EXIT_OK;
  }
  io.stdout.write(
    [
      `initialised ${r.paths.root}`,
      `  node id       ${r.manifest.nodeId}`,
      `  origin        ${r.manifest.origin}`,
      `  broker key    ${r.manifest.verifierKey}`,
      '',
      'SEALING KEY — shown this once and stored nowhere. Keep it offline (paper, a vault):',
      `  ${r.sealKeyHex}`,
      'With it, `witness verify DIR --seal-key KEY` proves that no one who later takes this host',
      'can rewrite the sealed history. Without it, seals cannot be checked.',
      '',
    ].join('\n'),
  );
  return EXIT_OK;
}

// ── witness verify ───────────────────────────────────────────────────────────────────────────

export interface LedgerLocation {
  ledgerDir: string;
  /** The data directory, if DIR is one (or the ledger sits in one). */
  dataDir?: string;
}

/** Accepts a data directory (DIR/witness.json + DIR/ledger) or a ledger directory (DIR/segments). */
export function locateLedger(dir: string): LedgerLocation {
  const root = resolve(dir);
  if (existsSync(join(root, MANIFEST)) && existsSync(join(root, 'ledger', SEGMENTS_DIR))) return { ledgerDir: join(root, 'ledger'), dataDir: root };
  if (existsSync(join(root, SEGMENTS_DIR))) {
    const parent = resolve(root, '..');
    return existsSync(join(parent, MANIFEST)) ? { ledgerDir: root, dataDir: parent } : { ledgerDir: root };
  }
  if (!existsSync(root)) throw new WitnessError('WITNESS_ERR_LEDGER_NOT_FOUND', `${root}: no such directory`);
  throw new WitnessError('WITNESS_ERR_LEDGER_NOT_FOUND', `${root}: no ledger here (expected ${MANIFEST} and ledger/, or a ${SEGMENTS_DIR}/ folder); pass the broker's data directory`);
}

export interface TrustedKey {
  name: string;
  publicKey: Uint8Array;
  /** Where the key came from, for the report. */
  source: string;
}

/**
 * Resolves --key: a C2SP verifier key string, a file holding one or a raw base64url key, or a
 * raw base64url key. A raw key has no name: it is taken from the data directory's manifest, or
 * from the checkpoint signature line whose key hash the key matches. Without --key, the data
 * directory's own key is used (and the report says so: that trusts the directory it verifies).
 * `otherwise` ends the no-key message with another way out (`witness sim check`: ", or --no-verify").
 */
export function resolveKey(arg: string | undefined, loc: LedgerLocation, reader: () => LedgerReader, otherwise = ''): TrustedKey {
  if (arg === undefined) {
    if (!loc.dataDir) {
      throw new WitnessError('WITNESS_ERR_USAGE', `${loc.ledgerDir} is not inside a data directory: pass the broker's key with --key (its verifier key, or the broker.pub file)${otherwise}`);
    }
    const m = readManifest(loc.dataDir);
    const k = parseVerifierKey(m.verifierKey);
    return { name: k.name, publicKey: k.publicKey, source: `${join(loc.dataDir, MANIFEST)} (the directory being verified: pass --key to trust a key kept elsewhere)` };
  }
  let text = arg.trim();
  let source = '--key';
  if (existsSync(text)) {
    source = text;
    text = readFileSync(text, 'utf8').trim();
  }
  if (text.includes('+')) {
    const k = parseVerifierKey(text);
    return { name: k.name, publicKey: k.publicKey, source };
  }
  const publicKey = parsePublicKey(text);
  if (loc.dataDir && existsSync(join(loc.dataDir, MANIFEST))) {
    const m = readManifest(loc.dataDir);
    return { name: m.origin, publicKey, source };
  }
  // Find the name from a signature line that this key made.
  for (const cp of reader().checkpoints()) {
    for (const sig of parseNote(cp.note).signatures) {
      try {
        if (Buffer.from(keyHash(sig.name, publicKey)).equals(Buffer.from(sig.keyHash))) return { name: sig.name, publicKey, source };
      } catch {
        // not a valid key name; try the next line
      }
    }
  }
  return { name: 'unknown', publicKey, source };
}

export async function verifyCommand(argv: string[], io: CommandIo): Promise<number> {
  const { values, positionals } = parseCommandArgs('witness verify', argv, {
    key: { type: 'string' },
    'seal-key': { type: 'string' },
    json: { type: 'boolean' },
    quiet: { type: 'boolean', short: 'q' },
  });
  if (positionals.length !== 1) throw new WitnessError('WITNESS_ERR_USAGE', `witness verify: expected one DIR, got ${positionals.length} (usage: witness verify DIR [--key PUB] [--seal-key K] [--json])`);
  const loc = locateLedger(positionals[0]!);
  const key = resolveKey(values.key, loc, () => LedgerReader.open(loc.ledgerDir));
  const sealKey = values['seal-key'] === undefined ? undefined : parseSealKey(values['seal-key']);
  const progress = new Progress(io, 'verifying', !values.json && !values.quiet);
  const started = process.hrtime.bigint();
  const report = await verifyLedger(loc.ledgerDir, {
    key: { name: key.name, publicKey: key.publicKey },
    ...(sealKey ? { sealKey } : {}),
    onProgress: (d, t) => progress.update(d, t),
  });
  progress.done();
  if (report.checkpoints.total > 0 && report.checkpoints.unsigned === report.checkpoints.total) {
    // Not one checkpoint carries this key's signature: almost surely the wrong key, and nothing
    // could be verified — a usage error, not a verdict on the ledger.
    throw new WitnessError(
      'WITNESS_ERR_CHECKPOINT_UNSIGNED',
      `none of the ${report.checkpoints.total} checkpoints in ${loc.ledgerDir} is signed by ${report.key} (from ${key.source}); is it this broker's key? (its verifier key is in witness.json and was printed by \`witness init\`)`,
    );
  }
  const seconds = Number(process.hrtime.bigint() - started) / 1e9;
  if (values.json) printJson(io, { ...report, ledger: loc.ledgerDir, keySource: key.source, seconds });
  else if (!values.quiet) io.stdout.write(formatReport(report, loc.ledgerDir, key.source, seconds));
  return report.ok ? EXIT_OK : EXIT_FAILED;
}

function formatReport(r: VerifyReport, dir: string, keySource: string, seconds: number): string {
  const lines = [
    `ledger      ${dir}`,
    `key         ${r.key}`,
    `            from ${keySource}`,
    `records     ${r.records.valid}/${r.records.total} valid in ${r.segments} segment(s)`,
    `checkpoints ${r.checkpoints.valid}/${r.checkpoints.total} valid, seals ${r.checkpoints.sealsChecked ? 'checked' : 'not checked (pass --seal-key)'}`,
  ];
  if (r.lastCheckpoint) {
    lines.push(`last        checkpoint ${r.lastCheckpoint.epoch} at ${new Date(r.lastCheckpoint.time).toISOString()} covers ${r.lastCheckpoint.size} records`);
  }
  if (r.uncovered > 0) lines.push(`note        ${r.uncovered} record(s) after the last checkpoint are not yet covered by a signature`);
  if (r.unindexedTail > 0) lines.push(`note        ${r.unindexedTail} last record(s) have no index entry yet (unclean stop; rebuilt at the next start)`);
  if (r.tornTailBytes > 0) lines.push(`note        ${r.tornTailBytes} byte(s) of an incomplete last record (unclean stop; the broker cuts them at its next start)`);
  lines.push(`time        ${seconds.toFixed(2)} s (${Math.round(r.records.total / Math.max(seconds, 1e-9))} records/s)`);
  if (r.ok) {
    lines.push('result      INTACT');
  } else {
    const first = r.failures[0]!;
    lines.push(`result      TAMPERED: ${r.failureCount} failure(s)`);
    lines.push(`first       ${first.index !== undefined ? `index ${first.index}: ` : ''}${first.message} [${first.code}]`);
    for (const f of r.failures.slice(1, 10)) lines.push(`            ${f.index !== undefined ? `index ${f.index}: ` : ''}${f.message} [${f.code}]`);
    if (r.failureCount > 10) lines.push(`            … and ${r.failureCount - 10} more (--json lists up to ${r.failures.length})`);
  }
  return lines.join('\n') + '\n';
}

// ── witness proof ────────────────────────────────────────────────────────────────────────────

export const PROOF_FORMAT = 'witness-proof/v1';

export interface InclusionProofFile {
  format: typeof PROOF_FORMAT;
  type: 'inclusion';
  index: number;
  treeSize: number;
  /** The record's line, exactly as in the ledger (its leaf hash is recomputed from it). */
  record: string;
  proof: string[];
  /** Signed checkpoint note for `treeSize`: the verifier checks the signature, never trusts a bare root. */
  checkpoint: string;
}

export interface ConsistencyProofFile {
  format: typeof PROOF_FORMAT;
  type: 'consistency';
  size1: number;
  size2: number;
  proof: string[];
  checkpoint1: string;
  checkpoint2: string;
}

export async function proofCommand(argv: string[], io: CommandIo): Promise<number> {
  const { values, positionals } = parseCommandArgs('witness proof', argv, {
    index: { type: 'string' },
    consistency: { type: 'boolean' },
    size: { type: 'string' },
    out: { type: 'string', short: 'o' },
    json: { type: 'boolean' },
  });
  const usage = 'usage: witness proof DIR --index N [--size S] [--out FILE] | witness proof DIR --consistency OLD NEW [--out FILE]';
  if (positionals.length < 1) throw new WitnessError('WITNESS_ERR_USAGE', `witness proof: missing DIR (${usage})`);
  const loc = locateLedger(positionals[0]!);
  const reader = LedgerReader.open(loc.ledgerDir);
  try {
    let file: InclusionProofFile | ConsistencyProofFile;
    if (values.consistency) {
      if (values.index !== undefined || positionals.length !== 3) throw new WitnessError('WITNESS_ERR_USAGE', `witness proof: --consistency takes OLD and NEW tree sizes (${usage})`);
      const size1 = parseCount('witness proof', 'OLD', positionals[1]);
      const size2 = parseCount('witness proof', 'NEW', positionals[2]);
      file = await makeConsistencyProof(reader, size1, size2);
    } else {
      if (values.index === undefined || positionals.length !== 1) throw new WitnessError('WITNESS_ERR_USAGE', `witness proof: give --index N or --consistency OLD NEW (${usage})`);
      const index = parseCount('witness proof', '--index', values.index);
      const size = values.size !== undefined ? parseCount('witness proof', '--size', values.size) : undefined;
      file = await makeInclusionProof(reader, index, size);
    }
    const text = JSON.stringify(file, null, 2) + '\n';
    if (values.out) {
      writeFileSync(values.out, text);
      if (values.json) printJson(io, { ok: true, out: resolve(values.out), type: file.type });
      else io.stdout.write(`wrote ${file.type} proof to ${resolve(values.out)}\n`);
    } else {
      io.stdout.write(text);
    }
    return EXIT_OK;
  } finally {
    reader.close();
  }
}

/** How the caller names the inputs in error messages (the CLI's by default; the HTTP API passes its parameter names). */
export interface ProofNames {
  who: string;
  index: string;
  size: string;
  old: string;
  new: string;
}

const CLI_PROOF_NAMES: ProofNames = { who: 'witness proof', index: '--index', size: '--size', old: 'OLD', new: 'NEW' };

/** The signed checkpoint note of tree size `size`, or WITNESS_ERR_USAGE naming nearby sizes. */
function checkpointNoteAt(reader: LedgerReader, size: number, what: string, names: ProofNames): string {
  const checkpoints = reader.checkpoints().filter((c) => c.checkpoint.size <= reader.size);
  const c = checkpoints.filter((x) => x.checkpoint.size === size).at(-1);
  if (!c) {
    const sizes = [...new Set(checkpoints.map((x) => x.checkpoint.size))];
    const near = sizes.filter((s) => Math.abs(s - size) <= Math.max(1000, size / 10)).slice(-5);
    throw new WitnessError('WITNESS_ERR_USAGE', `${names.who}: no checkpoint of tree size ${size} for ${what}; proofs are made against signed checkpoints${near.length ? ` (nearby sizes: ${near.join(', ')})` : ''}`, {
      details: { size, nearby: near },
    });
  }
  return c.note;
}

/**
 * The inclusion proof file of `witness proof DIR --index N [--size S]`: record `index` in the tree
 * of the signed checkpoint of size `size` (default: the latest checkpoint). Throws
 * WITNESS_ERR_USAGE (no such checkpoint, record not covered) naming the inputs as `names` does.
 */
export async function makeInclusionProof(reader: LedgerReader, index: number, size?: number, names: ProofNames = CLI_PROOF_NAMES): Promise<InclusionProofFile> {
  const latest = reader
    .checkpoints()
    .filter((c) => c.checkpoint.size <= reader.size)
    .at(-1);
  const treeSize = size ?? latest?.checkpoint.size;
  if (treeSize === undefined) throw new WitnessError('WITNESS_ERR_USAGE', `${names.who}: the ledger has no checkpoint yet; wait for one (or stop the broker cleanly) and retry`);
  if (index >= treeSize) {
    throw new WitnessError('WITNESS_ERR_USAGE', `${names.who}: record ${index} is not covered by the checkpoint of size ${treeSize}${treeSize === latest?.checkpoint.size ? ' (the latest); wait for the next checkpoint' : ''}`, {
      details: { index, treeSize },
    });
  }
  const note = checkpointNoteAt(reader, treeSize, `${names.size} ${treeSize}`, names);
  const proof = await reader.inclusionProof(index, treeSize);
  const record = (await reader.record(index)).line;
  return { format: PROOF_FORMAT, type: 'inclusion', index, treeSize, record, proof: proof.map(b64), checkpoint: note };
}

/** The consistency proof file of `witness proof DIR --consistency OLD NEW`; both sizes must be signed checkpoints. */
export async function makeConsistencyProof(reader: LedgerReader, size1: number, size2: number, names: ProofNames = CLI_PROOF_NAMES): Promise<ConsistencyProofFile> {
  if (size1 > size2) throw new WitnessError('WITNESS_ERR_USAGE', `${names.who}: ${names.old} (${size1}) must not exceed ${names.new} (${size2})`);
  const proof = await reader.consistencyProof(size1, size2);
  const checkpoint1 = checkpointNoteAt(reader, size1, names.old, names);
  const checkpoint2 = checkpointNoteAt(reader, size2, names.new, names);
  return { format: PROOF_FORMAT, type: 'consistency', size1, size2, proof: proof.map(b64), checkpoint1, checkpoint2 };
}

// ── witness verify-proof ─────────────────────────────────────────────────────────────────────

export async function verifyProofCommand(argv: string[], io: CommandIo): Promise<number> {
  const { values, positionals } = parseCommandArgs('witness verify-proof', argv, {
    key: { type: 'string' },
    json: { type: 'boolean' },
  });
  if (positionals.length !== 1 || values.key === undefined) {
    throw new WitnessError('WITNESS_ERR_USAGE', 'witness verify-proof: usage: witness verify-proof FILE --key PUB (PUB: the broker\'s verifier key, or a file holding it)');
  }
  const path = positionals[0]!;
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (e) {
    throw new WitnessError('WITNESS_ERR_IO', `${path}: ${(e as Error).message}`, { cause: e });
  }
  const file = parseProofFile(text, path);
  const key = resolveProofKey(values.key);
  const verifier = ed25519NoteVerifier(key.name, key.publicKey);
  try {
    if (file.type === 'inclusion') {
      const { checkpoint } = openCheckpoint(file.checkpoint, [verifier]);
      if (checkpoint.size !== file.treeSize) {
        throw new WitnessError('WITNESS_ERR_PROOF_INPUT', `${path}: proof is for tree size ${file.treeSize} but its checkpoint is for ${checkpoint.size}`);
      }
      const leaf = leafHash(Buffer.from(file.record, 'utf8'));
      verifyInclusion(file.index, file.treeSize, leaf, file.proof.map((h, i) => unb64(h, `${path}: proof[${i}]`)), checkpoint.rootHash);
      report(io, values.json ?? false, { ok: true, type: 'inclusion', index: file.index, treeSize: file.treeSize, origin: checkpoint.origin }, `OK: record ${file.index} is included in the tree of ${file.treeSize} records signed by ${key.name}\n`);
    } else {
      const c1 = openCheckpoint(file.checkpoint1, [verifier]).checkpoint;
      const c2 = openCheckpoint(file.checkpoint2, [verifier]).checkpoint;
      if (c1.size !== file.size1 || c2.size !== file.size2) {
        throw new WitnessError('WITNESS_ERR_PROOF_INPUT', `${path}: proof sizes ${file.size1}→${file.size2} do not match its checkpoints ${c1.size}→${c2.size}`);
      }
      verifyConsistency(file.size1, file.size2, file.proof.map((h, i) => unb64(h, `${path}: proof[${i}]`)), c1.rootHash, c2.rootHash);
      report(io, values.json ?? false, { ok: true, type: 'consistency', size1: file.size1, size2: file.size2, origin: c2.origin }, `OK: the tree of ${file.size2} records extends the tree of ${file.size1} records (both signed by ${key.name})\n`);
    }
    return EXIT_OK;
  } catch (e) {
    if (!(e instanceof WitnessError) || e.code === 'WITNESS_ERR_INVALID_ARGUMENT') throw e;
    if (values.json) printJson(io, { ok: false, error: e.toJSON() });
    else io.stdout.write(`FAILED: ${e.message}\n  ${e.code}: ${e.hint}\n`);
    return EXIT_FAILED;
  }
}

function report(io: CommandIo, json: boolean, value: unknown, text: string): void {
  if (json) printJson(io, value);
  else io.stdout.write(text);
}

function resolveProofKey(arg: string): { name: string; publicKey: Uint8Array } {
  let text = arg.trim();
  if (existsSync(text)) text = readFileSync(text, 'utf8').trim();
  if (!text.includes('+')) {
    throw new WitnessError('WITNESS_ERR_USAGE', 'witness verify-proof: --key needs the broker\'s verifier key (name+hash+key, printed by `witness init` and stored in witness.json), so the checkpoint\'s signer is named');
  }
  const k = parseVerifierKey(text);
  return { name: k.name, publicKey: k.publicKey };
}

function parseProofFile(text: string, path: string): InclusionProofFile | ConsistencyProofFile {
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch (e) {
    throw new WitnessError('WITNESS_ERR_PROOF_INPUT', `${path}: not JSON (${(e as Error).message}); proof files are written by \`witness proof\``, { cause: e });
  }
  function bad(what: string): never {
    throw new WitnessError('WITNESS_ERR_PROOF_INPUT', `${path}: ${what} (is the file truncated? proof files are written by \`witness proof\`)`);
  }
  if (v === null || typeof v !== 'object' || Array.isArray(v)) bad('not a JSON object');
  const f = v as Record<string, unknown>;
  if (f.format !== PROOF_FORMAT) bad(`format is ${JSON.stringify(f.format)}, expected ${JSON.stringify(PROOF_FORMAT)}`);
  if (!Array.isArray(f.proof) || !f.proof.every((h: unknown) => typeof h === 'string')) bad('"proof" must be an array of base64 strings');
  if (f.type === 'inclusion') {
    if (!isCount(f.index) || !isCount(f.treeSize)) bad('"index" and "treeSize" must be non-negative integers');
    if (typeof f.record !== 'string') bad('"record" must be the record line (a string)');
    if (typeof f.checkpoint !== 'string') bad('"checkpoint" must be a signed checkpoint note');
    return f as unknown as InclusionProofFile;
  }
  if (f.type === 'consistency') {
    if (!isCount(f.size1) || !isCount(f.size2)) bad('"size1" and "size2" must be non-negative integers');
    if (typeof f.checkpoint1 !== 'string' || typeof f.checkpoint2 !== 'string') bad('"checkpoint1" and "checkpoint2" must be signed checkpoint notes');
    return f as unknown as ConsistencyProofFile;
  }
  return bad(`"type" must be "inclusion" or "consistency", got ${JSON.stringify(f.type)}`);
}

function isCount(v: unknown): v is number {
  return typeof v === 'number' && Number.isSafeInteger(v) && v >= 0;
}

function b64(b: Uint8Array): string {
  return Buffer.from(b).toString('base64');
}

function unb64(s: string, what: string): Uint8Array {
  if (!/^[A-Za-z0-9+/]*={0,2}$/.test(s) || s.length % 4 !== 0) throw new WitnessError('WITNESS_ERR_PROOF_INPUT', `${what}: not base64`);
  return new Uint8Array(Buffer.from(s, 'base64'));
}
