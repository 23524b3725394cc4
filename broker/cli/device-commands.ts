/**
 * `witness device add | revoke | list`: the device registry (broker/identity/registry.ts) from the
 * command line. Changes are written atomically under the registry lock; a running broker picks
 * them up without a restart and records each one in its ledger.
 *
 *   witness device add --id ID --public-key K [--data DIR] [--json]
 *   witness device revoke --id ID [--key-hash H] [--data DIR] [--json]
 *   witness device list [--data DIR] [--json]
 *
 * `--data` defaults to `witness-data` (relative to the working directory), like `witness init`
 * and `witness broker`, so the line `witness-agent init` prints works as printed next to a broker
 * started with defaults. Exit codes: 0 done (also for a no-op), 2 usage, input or I/O error.
 */
import { EXIT_OK, parseCommandArgs, printJson, type CommandIo } from '../../shared/cli/cli.js';
import { WitnessError } from '../../shared/errors.js';
import { DEFAULT_DATA_DIR, readManifest } from '../data-dir.js';
import { DeviceRegistry, type EditResult } from '../identity/registry.js';

export const DEVICE_USAGE =
  'witness device add --id ID --public-key K [--data DIR] | revoke --id ID [--key-hash H] [--data DIR] | list [--data DIR] [--json]';

const SUBCOMMANDS = ['add', 'revoke', 'list'] as const;
type Sub = (typeof SUBCOMMANDS)[number];

const PICKED_UP = 'a running broker picks this up without a restart and records it in its ledger';

export async function deviceCommand(argv: string[], io: CommandIo): Promise<number> {
  const [sub, ...rest] = argv;
  if (sub === undefined || !(SUBCOMMANDS as readonly string[]).includes(sub)) {
    throw new WitnessError(
      'WITNESS_ERR_USAGE',
      `witness device: ${sub === undefined ? 'missing subcommand' : `unknown subcommand ${JSON.stringify(sub)}`}; usage: ${DEVICE_USAGE}`,
    );
  }
  const command = `witness device ${sub}`;
  const { values } = parseCommandArgs(
    command,
    attachDashValues(rest),
    {
      id: { type: 'string' },
      'public-key': { type: 'string' },
      'key-hash': { type: 'string' },
      data: { type: 'string' },
      json: { type: 'boolean' },
    },
    false,
  );
  const allowed: Record<Sub, readonly string[]> = { add: ['id', 'public-key', 'data', 'json'], revoke: ['id', 'key-hash', 'data', 'json'], list: ['data', 'json'] };
  for (const k of Object.keys(values)) {
    if (!allowed[sub as Sub].includes(k)) throw new WitnessError('WITNESS_ERR_USAGE', `${command}: option --${k} does not apply here; usage: ${DEVICE_USAGE}`);
  }
  const dataDir = values.data ?? DEFAULT_DATA_DIR;
  // "Not a data directory" in the words of every other command (and before any lock is taken).
  readManifest(dataDir);
  const json = values.json === true;

  if (sub === 'list') {
    const registry = DeviceRegistry.load(dataDir);
    const devices = registry.list();
    if (json) {
      printJson(io, { ok: true, file: registry.path, revision: registry.revision, devices });
      return EXIT_OK;
    }
    if (devices.length === 0) {
      io.stdout.write(`no devices registered in ${registry.path}\n  register one with: witness device add --id ID --public-key K --data ${dataDir}\n`);
      return EXIT_OK;
    }
    const rows = devices.flatMap((d) => (d.keys.length === 0 ? [[d.id, '-', 'no keys', '-', '-']] : d.keys.map((k) => [d.id, k.keyHash, k.status, k.addedAt, k.revokedAt ?? '-'])));
    io.stdout.write(table(['DEVICE', 'KEY HASH', 'STATUS', 'ADDED', 'REVOKED'], rows));
    return EXIT_OK;
  }

  if (values.id === undefined) throw new WitnessError('WITNESS_ERR_USAGE', `${command}: --id is required; usage: ${DEVICE_USAGE}`);
  const id = values.id;
  let result: EditResult;
  let file = '';
  if (sub === 'add') {
    const key = values['public-key'];
    if (key === undefined) throw new WitnessError('WITNESS_ERR_USAGE', `${command}: --public-key is required (the key printed by \`witness-agent init\`, or the content of the device's device.pub)`);
    result = DeviceRegistry.edit(dataDir, (r) => {
      file = r.path;
      return r.add(id, key);
    });
  } else {
    const keyHash = values['key-hash'];
    result = DeviceRegistry.edit(dataDir, (r) => {
      file = r.path;
      return r.revoke(id, keyHash);
    });
  }
  const changed = result.changes.length > 0;
  if (json) {
    printJson(io, { ok: true, changed, file, revision: result.revision, message: result.message, changes: result.changes });
  } else {
    io.stdout.write(`${result.message}\n`);
    if (changed) io.stdout.write(`  ${file} is now at revision ${result.revision}\n  ${PICKED_UP}\n`);
  }
  return EXIT_OK;
}

const VALUE_OPTIONS = ['--id', '--public-key', '--key-hash', '--data'];
const FLAGS = new Set([...VALUE_OPTIONS, '--json', '--help', '-h']);

/**
 * `--public-key -Xy…` → `--public-key=-Xy…`. A base64url key starts with '-' once in 64 keys and
 * a device id may too; node's parseArgs takes such a value for an option and refuses it as
 * "ambiguous", which would break the line `witness-agent init` prints for one device in 64.
 * The value of a value option is the next argument unless that argument is itself one of our
 * option names.
 */
function attachDashValues(argv: string[]): string[] {
  const out: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    const next = argv[i + 1];
    if (VALUE_OPTIONS.includes(a) && next !== undefined && next.startsWith('-') && !FLAGS.has(next)) {
      out.push(`${a}=${next}`);
      i++;
    } else {
      out.push(a);
    }
  }
  return out;
}

function table(head: string[], rows: string[][]): string {
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: string[]): string => cells.map((c, i) => c.padEnd(widths[i]!)).join('  ').trimEnd() + '\n';
  return line(head) + rows.map(line).join('');
}
