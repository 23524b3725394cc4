/**
 * `witness-agent`: the device-side command line. Today it has `init` (a device key pair and the
 * line that registers it with a broker); `run`, `bridge` and `status` arrive with the agent.
 * Exit codes: 0 success · 1 verification failed · 2 usage, input or I/O error.
 */
import { mkdirSync, existsSync } from 'node:fs';
import { resolve, join } from 'node:path';
import { EXIT_OK, EXIT_USAGE, parseCommandArgs, printJson, processIo, reportError, type CommandIo } from '../../shared/cli/cli.js';
import { WitnessError } from '../../shared/errors.js';
import { writeKeyPair, formatPublicKey } from '../../shared/keys/key-file.js';
import { checkKeyName, verifierKey } from '../../shared/keys/key-id.js';

/** Device ids are MQTT client ids and key names: 1–64 of [A-Za-z0-9._:-]. */
export function checkDeviceId(id: string): void {
  if (!/^[A-Za-z0-9._:-]{1,64}$/.test(id)) {
    throw new WitnessError('WITNESS_ERR_USAGE', `device id ${JSON.stringify(id)}: use 1 to 64 characters from A-Z a-z 0-9 . _ : -`);
  }
  checkKeyName(id);
}

async function initCommand(argv: string[], io: CommandIo): Promise<number> {
  const { values } = parseCommandArgs('witness-agent init', argv, {
    id: { type: 'string' },
    dir: { type: 'string' },
    json: { type: 'boolean' },
  }, false);
  if (values.id === undefined || values.dir === undefined) {
    throw new WitnessError('WITNESS_ERR_USAGE', 'witness-agent init: usage: witness-agent init --id ID --dir DIR');
  }
  checkDeviceId(values.id);
  const dir = resolve(values.dir);
  if (existsSync(join(dir, 'device.key'))) {
    throw new WitnessError('WITNESS_ERR_USAGE', `${dir} already holds a device key (device.key); use another --dir, or keep using this one`);
  }
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const { publicKey } = writeKeyPair(dir, 'device');
  const pub = formatPublicKey(publicKey);
  const register = `witness device add --id ${values.id} --public-key ${pub}`;
  if (values.json) {
    printJson(io, { ok: true, id: values.id, dir, publicKey: pub, verifierKey: verifierKey(values.id, publicKey), register });
  } else {
    io.stdout.write(`created the key of device ${values.id} in ${dir}\n  public key  ${pub}\n\nregister it with the broker:\n  ${register}\n`);
  }
  return EXIT_OK;
}

const COMMANDS: Record<string, { run: (argv: string[], io: CommandIo) => Promise<number>; usage: string; summary: string }> = {
  init: { run: initCommand, usage: 'witness-agent init --id ID --dir DIR [--json]', summary: 'create the device key pair; print the line that registers it with the broker' },
};

export async function main(argv: string[], io: CommandIo = processIo): Promise<number> {
  const [name, ...rest] = argv;
  if (name === undefined || name === '--help' || name === '-h' || name === 'help') {
    io.stdout.write(
      ['witness-agent — signs a device\'s MQTT messages for an audited Witness broker', '', 'commands:', ...Object.entries(COMMANDS).map(([n, c]) => `  ${n}  ${c.summary}\n    ${c.usage}`), ''].join('\n'),
    );
    return name === undefined ? EXIT_USAGE : EXIT_OK;
  }
  const entry = COMMANDS[name];
  const json = rest.includes('--json');
  if (!entry) return reportError(io, new WitnessError('WITNESS_ERR_USAGE', `unknown command ${JSON.stringify(name)}; commands: ${Object.keys(COMMANDS).join(', ')}`), json);
  if (rest.includes('--help')) {
    io.stdout.write(`${entry.usage}\n  ${entry.summary}\n`);
    return EXIT_OK;
  }
  try {
    return await entry.run(rest, io);
  } catch (e) {
    return reportError(io, e, json);
  }
}
