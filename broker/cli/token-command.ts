/**
 * `witness token create --name N --role R [--json]`: makes a bearer token for the HTTP API.
 * The token is printed ONCE (it is stored nowhere); the config keeps only its SHA-256, so the
 * command also prints the YAML lines to put under `http.tokens`.
 */
import { WitnessError } from '../../shared/errors.js';
import { EXIT_OK, parseCommandArgs, printJson, type CommandIo } from '../../shared/cli/cli.js';
import { HTTP_ROLES, TOKEN_NAME, generateToken, hashToken, type HttpRole } from '../http/auth.js';

export const TOKEN_USAGE = 'witness token create --name NAME --role auditor|operator|admin [--json]';

export async function tokenCommand(argv: string[], io: CommandIo): Promise<number> {
  const { values, positionals } = parseCommandArgs('witness token', argv, {
    name: { type: 'string' },
    role: { type: 'string' },
    json: { type: 'boolean' },
  });
  if (positionals.length !== 1 || positionals[0] !== 'create') {
    throw new WitnessError('WITNESS_ERR_USAGE', `witness token: ${positionals.length === 0 ? 'missing subcommand' : `unknown subcommand ${JSON.stringify(positionals[0])}`} (usage: ${TOKEN_USAGE})`);
  }
  const name = values.name;
  if (name === undefined || !TOKEN_NAME.test(name)) {
    throw new WitnessError('WITNESS_ERR_USAGE', `witness token create: --name ${name === undefined ? 'is required' : `${JSON.stringify(name)} is not 1–64 of A-Z a-z 0-9 . _ @ -`} (it names the holder in the records of its accesses)`);
  }
  const role = values.role as HttpRole | undefined;
  if (role === undefined || !HTTP_ROLES.includes(role)) {
    throw new WitnessError('WITNESS_ERR_USAGE', `witness token create: --role ${role === undefined ? 'is required' : JSON.stringify(role)}: one of ${HTTP_ROLES.join(', ')} (auditor reads records, checkpoints, proofs, stream; operator + devices, alerts; admin + registry changes)`);
  }
  const token = generateToken();
  const sha256 = hashToken(token);
  if (values.json) {
    printJson(io, { name, role, token, sha256 });
    return EXIT_OK;
  }
  io.stdout.write(
    [
      `token for ${name} (role ${role}) — shown this once and stored nowhere; give it to its holder now:`,
      '',
      `  ${token}`,
      '',
      'Add these lines under http.tokens in the broker config (only the hash is kept), then restart the broker:',
      '',
      `  - name: ${name}`,
      `    role: ${role}`,
      `    sha256: ${sha256}`,
      '',
      `Use it as: curl -H "Authorization: Bearer $TOKEN" http://127.0.0.1:PORT/api/v1/stats`,
      '',
    ].join('\n'),
  );
  return EXIT_OK;
}
