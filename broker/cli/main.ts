/**
 * `witness`: the broker-side command line. A thin dispatcher: each command lives in its own
 * module and returns an exit code (0 ok · 1 verification failed · 2 usage or I/O error).
 */
import { EXIT_OK, EXIT_USAGE, processIo, reportError, type CommandIo } from '../../shared/cli/cli.js';
import { WitnessError } from '../../shared/errors.js';
import { initCommand, proofCommand, verifyCommand, verifyProofCommand } from './ledger-commands.js';
import { deviceCommand, DEVICE_USAGE } from './device-commands.js';
import { brokerCommand } from './broker-command.js';
import { queryCommand, exportCommand } from './query-commands.js';
import { SIM_USAGE } from '../../simulator/usage.js';
import { packageVersion } from '../version.js';
import { tokenCommand, TOKEN_USAGE } from './token-command.js';

type Command = (argv: string[], io: CommandIo) => Promise<number>;

interface CommandEntry {
  run: Command;
  usage: string;
  summary: string;
}

const COMMANDS: Record<string, CommandEntry> = {
  broker: {
    run: brokerCommand,
    usage: 'witness broker [--config FILE] [--host H] [--port P] [--data DIR] [--node-id ID] [--http-port N] [--verify-threads N] [--json]',
    summary: 'run the audited MQTT broker (no config needed: 127.0.0.1:1883, data in ./witness-data)',
  },
  init: { run: initCommand, usage: 'witness init [--data DIR] [--node-id ID] [--json]', summary: 'create broker keys and a ledger; print the offline sealing key once' },
  verify: {
    run: verifyCommand,
    usage: 'witness verify DIR [--key PUB] [--seal-key K] [--json] [--quiet]',
    summary: 'check every record, checkpoint and seal (exit 0 intact, 1 tampered, 2 error)',
  },
  proof: {
    run: proofCommand,
    usage: 'witness proof DIR --index N [--size S] [--out FILE]  |  witness proof DIR --consistency OLD NEW [--out FILE]',
    summary: 'write an inclusion or consistency proof against a signed checkpoint',
  },
  'verify-proof': { run: verifyProofCommand, usage: 'witness verify-proof FILE --key PUB [--json]', summary: 'check a proof file against the broker key' },
  query: {
    run: queryCommand,
    usage: 'witness query DIR [--client ID] [--topic FILTER] [--type EV] [--verdict V] [--since T] [--until T] [--limit N] [--json]',
    summary: 'list records matching filters (a table, or JSON lines)',
  },
  export: { run: exportCommand, usage: 'witness export DIR --format jsonl|csv [--out FILE] [query filters]', summary: 'export records (jsonl: the exact ledger lines)' },
  device: { run: deviceCommand, usage: DEVICE_USAGE, summary: 'register, revoke and list device keys (a running broker picks changes up)' },
  token: { run: tokenCommand, usage: TOKEN_USAGE, summary: 'make an HTTP API bearer token; prints it once and the YAML lines for http.tokens' },
  // Loaded on use: the simulator pulls in MQTT.js, which no other command needs.
  sim: { run: async (argv, io) => (await import('../../simulator/cli.js')).simCommand(argv, io), usage: SIM_USAGE, summary: 'simulate device fleets, inject incidents, replay runs, check the ledger caught them' },
};

function help(): string {
  const width = Math.max(...Object.keys(COMMANDS).map((k) => k.length));
  return [
    'witness — accountable MQTT: an audited broker with a verifiable Merkle-tree ledger',
    '',
    'usage: witness <command> [options]',
    '',
    'commands:',
    ...Object.entries(COMMANDS).map(([name, c]) => `  ${name.padEnd(width)}  ${c.summary}`),
    '',
    ...Object.values(COMMANDS).map((c) => `  ${c.usage}`),
    '',
    'Every command takes --json for machine-readable output.',
    'Exit codes: 0 success · 1 verification failed · 2 usage, input or I/O error.',
    'Run `witness <command> --help` for one command.',
    '',
  ].join('\n');
}

export async function main(argv: string[], io: CommandIo = processIo): Promise<number> {
  const [name, ...rest] = argv;
  if (name === undefined || name === '--help' || name === '-h' || name === 'help') {
    const target = name === 'help' ? rest[0] : undefined;
    const entry = target ? COMMANDS[target] : undefined;
    io.stdout.write(entry ? `${entry.usage}\n  ${entry.summary}\n` : help());
    return name === undefined ? EXIT_USAGE : EXIT_OK;
  }
  if (name === '--version' || name === '-V') {
    io.stdout.write(`${packageVersion()}\n`);
    return EXIT_OK;
  }
  const entry = COMMANDS[name];
  const json = rest.includes('--json');
  if (!entry) {
    return reportError(io, new WitnessError('WITNESS_ERR_USAGE', `unknown command ${JSON.stringify(name)}; commands: ${Object.keys(COMMANDS).join(', ')} (witness --help)`), json);
  }
  if (rest.includes('--help') || rest.includes('-h')) {
    io.stdout.write(`${entry.usage}\n  ${entry.summary}\n`);
    return EXIT_OK;
  }
  try {
    return await entry.run(rest, io);
  } catch (e) {
    return reportError(io, e, json);
  }
}

