/**
 * The agent's configuration file, `DIR/witness-agent.yaml` (written by `witness-agent init`, read
 * by `run`, `bridge` and `status`). Validated with the broker's schema helpers
 * (broker/config/yaml-schema.ts), so a mistake is reported the same way: every problem at once,
 * each as `FILE:LINE:COL: path: what (hint)`, unknown keys with a "did you mean"; the thrown
 * WitnessError (WITNESS_ERR_CONFIG_INVALID) carries them in `details.problems`.
 *
 *   deviceId: sensor-1              required: the device id (MQTT client id, key name)
 *   broker: mqtt://127.0.0.1:1883   mqtt, mqtts, ws or wss
 *   audience: mqtt-witness
 *   ntp: { servers: [host:port, …] }
 *   outbox: { maxBytes, maxAgeMs, overflow: reject-new | drop-oldest }
 *   reconnect: { minMs, maxMs }
 *   connectTimeoutMs, keepaliveS, maxInflight, skewToleranceMs
 *   knownKeys: [ VERIFIER_KEY | { id: ID, publicKey: BASE64URL } ]
 *   bridge: { listen: 127.0.0.1:PORT }
 *   status: { intervalMs }
 *
 * The defaults are AGENT_DEFAULTS (agent/options.ts); this file only says what was written.
 */
import { readFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { isMap, LineCounter, parseDocument } from 'yaml';
import { WitnessError } from '../shared/errors.js';
import { parsePublicKey } from '../shared/keys/key-file.js';
import { parseVerifierKey } from '../shared/keys/key-id.js';
import { isDeviceId } from '../shared/token/device-id.js';
import { formatProblem } from '../broker/config/load.js';
import { BAD, int, list, obj, oneOf, report, root, str, whereOf, type ConfigProblem, type Ctx, type V } from '../broker/config/yaml-schema.js';
import { AGENT_DEFAULTS, BRIDGE_DEFAULTS, checkBrokerUrl, isHostPort, isLoopbackHost, splitHostPort, type OverflowPolicy, type WitnessAgentOptions } from './options.js';

export const CONFIG_FILE_NAME = 'witness-agent.yaml';

export type KnownKeyEntry = string | { id: string; publicKey: string };

/** The configuration as written (every field but deviceId optional). */
export interface AgentConfig {
  /** Absolute path of the file. */
  file: string;
  deviceId: string;
  broker?: string;
  audience?: string;
  ntp?: { servers?: string[] };
  outbox?: { maxBytes?: number; maxAgeMs?: number; overflow?: OverflowPolicy };
  reconnect?: { minMs?: number; maxMs?: number };
  connectTimeoutMs?: number;
  keepaliveS?: number;
  maxInflight?: number;
  skewToleranceMs?: number;
  knownKeys?: KnownKeyEntry[];
  bridge?: { listen?: string };
  status?: { intervalMs?: number };
}

const problem = (message: string, hint: string): { message: string; hint: string } => ({ message, hint });

const hostPort = str({
  check: (s) => (isHostPort(s) ? undefined : problem(`${JSON.stringify(s)} is not host:port`, 'e.g. pool.ntp.org:123 or 192.168.1.1:123')),
});

/** The bridge takes unauthenticated local clients and signs what they send: loopback only. */
const loopbackHostPort = str({
  check: (s) => {
    if (!isHostPort(s)) return problem(`${JSON.stringify(s)} is not host:port`, 'e.g. 127.0.0.1:1884');
    return isLoopbackHost(splitHostPort(s).host) ? undefined : problem(`${JSON.stringify(s)} is not a loopback address`, 'the bridge signs whatever its clients send with this device\'s key: listen on 127.0.0.1 or [::1] only');
  },
});

const knownKey: V<KnownKeyEntry> = (node, at, c) => {
  if (isMap(node)) {
    const v = obj(
      {
        id: str({ check: (id) => (isDeviceId(id) ? undefined : problem(`device id ${JSON.stringify(id)} is not 1–64 of A-Z a-z 0-9 . _ : -`, 'the id the device was registered with')) }),
        publicKey: str({ check: (k) => keyProblem(() => parsePublicKey(k), 'the 43 base64url characters of its device.pub') }),
      },
      { required: ['id', 'publicKey'] },
    )(node, at, c);
    return v === BAD || v.id === undefined || v.publicKey === undefined ? BAD : { id: v.id, publicKey: v.publicKey };
  }
  return str({
    check: (k) => keyProblem(() => parseVerifierKey(k), 'a verifier key ID+KEYHASH+BASE64 (`witness-agent init --json` prints it), or { id: ID, publicKey: KEY }'),
    hint: 'a verifier key ID+KEYHASH+BASE64, or { id: ID, publicKey: KEY }',
  })(node, at, c);
};

function keyProblem(parse: () => unknown, hint: string): { message: string; hint: string } | undefined {
  try {
    parse();
    return undefined;
  } catch (e) {
    return problem((e as Error).message, hint);
  }
}

const SCHEMA = obj(
  {
    deviceId: str({ check: (id) => (isDeviceId(id) ? undefined : problem(`device id ${JSON.stringify(id)} is not 1–64 of A-Z a-z 0-9 . _ : -`, 'use the id given to `witness-agent init --id`')) }),
    broker: str({ check: (u) => keyProblem(() => checkBrokerUrl(u), 'e.g. mqtt://broker.example:1883 or mqtts://broker.example:8883') }),
    audience: str(),
    ntp: obj({ servers: list(hostPort, { unique: true }) }),
    outbox: obj({
      maxBytes: int(1024, 2 ** 40, 'bytes'),
      maxAgeMs: int(1000, 10 * 365 * 86_400_000, 'ms'),
      overflow: oneOf(['reject-new', 'drop-oldest']),
    }),
    reconnect: obj({ minMs: int(1, 3_600_000, 'ms'), maxMs: int(1, 3_600_000, 'ms') }),
    connectTimeoutMs: int(100, 600_000, 'ms'),
    keepaliveS: int(0, 65535, 's'),
    maxInflight: int(1, 65535, 'messages'),
    skewToleranceMs: int(0, 86_400_000, 'ms'),
    knownKeys: list(knownKey),
    bridge: obj({ listen: loopbackHostPort }),
    status: obj({ intervalMs: int(100, 3_600_000, 'ms') }),
  },
  { required: ['deviceId'] },
);

/** Reads and validates a config file. Throws WITNESS_ERR_IO or WITNESS_ERR_CONFIG_INVALID. */
export function loadAgentConfig(path: string): AgentConfig {
  const file = resolve(path);
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    throw new WitnessError('WITNESS_ERR_IO', `cannot read the agent configuration ${file}: ${code ?? (e as Error).message}${code === 'ENOENT' ? ' (create it with `witness-agent init --id ID --dir DIR`)' : ''}`, {
      cause: e,
      details: { file },
    });
  }
  return parseAgentConfig(text, file);
}

/** Parses config text; `file` names it in problems. Throws WITNESS_ERR_CONFIG_INVALID listing every problem. */
export function parseAgentConfig(text: string, file: string): AgentConfig {
  const lines = new LineCounter();
  const c: Ctx = { file, dir: dirname(resolve(file)), lines, problems: [] };
  const doc = parseDocument(text, { lineCounter: lines, prettyErrors: false, uniqueKeys: true, strict: true });
  for (const e of [...doc.errors, ...doc.warnings]) {
    const hint = e.code === 'DUPLICATE_KEY' ? 'each key may appear once in a mapping; remove or merge the repetition' : 'fix the YAML syntax here: indentation, quotes, brackets';
    report(c, { pos: e.pos[0], path: '' }, `YAML: ${e.message.split('\n')[0]!.replace(/ at line \d+, column \d+.*$/, '')}`, hint);
  }
  const raw = root(SCHEMA, doc.contents, c);
  if (raw !== BAD && raw.reconnect?.minMs !== undefined && raw.reconnect.maxMs !== undefined && raw.reconnect.maxMs < raw.reconnect.minMs) {
    report(c, whereOf(raw.reconnect, 'maxMs'), `maxMs (${raw.reconnect.maxMs}) is below minMs (${raw.reconnect.minMs})`, 'the delay grows from minMs up to maxMs');
  }
  if (c.problems.length > 0 || raw === BAD || raw.deviceId === undefined) throw configError(file, c.problems);
  return { ...(raw as Omit<AgentConfig, 'file' | 'deviceId'>), deviceId: raw.deviceId, file: resolve(file) };
}

function configError(file: string, problems: ConfigProblem[]): WitnessError {
  const sorted = [...problems].sort((a, b) => a.line - b.line || a.col - b.col);
  const n = sorted.length;
  return new WitnessError('WITNESS_ERR_CONFIG_INVALID', [`agent configuration ${file}: ${n} problem${n === 1 ? '' : 's'}`, ...sorted.map(formatProblem)].join('\n'), {
    details: { file, problems: sorted },
  });
}

/** Agent options from a config file (the caller adds `dir` and anything given on the command line). */
export function optionsFromConfig(cfg: AgentConfig): WitnessAgentOptions {
  const o: WitnessAgentOptions = { deviceId: cfg.deviceId };
  if (cfg.broker !== undefined) o.broker = cfg.broker;
  if (cfg.audience !== undefined) o.audience = cfg.audience;
  if (cfg.ntp?.servers !== undefined) o.ntpServers = cfg.ntp.servers;
  if (cfg.outbox?.maxBytes !== undefined) o.outboxMaxBytes = cfg.outbox.maxBytes;
  if (cfg.outbox?.maxAgeMs !== undefined) o.outboxMaxAgeMs = cfg.outbox.maxAgeMs;
  if (cfg.outbox?.overflow !== undefined) o.outboxOverflow = cfg.outbox.overflow;
  if (cfg.reconnect?.minMs !== undefined) o.reconnectMinMs = cfg.reconnect.minMs;
  if (cfg.reconnect?.maxMs !== undefined) o.reconnectMaxMs = cfg.reconnect.maxMs;
  if (cfg.connectTimeoutMs !== undefined) o.connectTimeoutMs = cfg.connectTimeoutMs;
  if (cfg.keepaliveS !== undefined) o.keepaliveS = cfg.keepaliveS;
  if (cfg.maxInflight !== undefined) o.maxInflight = cfg.maxInflight;
  if (cfg.skewToleranceMs !== undefined) o.skewToleranceMs = cfg.skewToleranceMs;
  if (cfg.status?.intervalMs !== undefined) o.statusIntervalMs = cfg.status.intervalMs;
  if (cfg.knownKeys !== undefined) {
    const known: Record<string, string[]> = {};
    for (const k of cfg.knownKeys) {
      const { id, key } = typeof k === 'string' ? { id: parseVerifierKey(k).name, key: k } : { id: k.id, key: k.publicKey };
      (known[id] ??= []).push(key);
    }
    o.knownKeys = known;
  }
  return o;
}

/** The config file `witness-agent init` writes: every key with its default, commented. */
export function defaultConfigText(deviceId: string): string {
  const d = AGENT_DEFAULTS;
  // [setting, comment]: comments start in one column.
  const rows: Array<[string, string]> = [
    [`deviceId: ${deviceId}`, 'this device: its MQTT client id and the name of its key'],
    [`broker: ${d.broker}`, 'the Witness broker: mqtt, mqtts, ws or wss (--broker overrides)'],
    [`audience: ${d.audience}`, "must match the broker's auth.token.audience"],
    ['ntp:', ''],
    [`  servers: [${d.ntpServers.join(', ')}]`, 'host:port; [] = system clock only (time source "system")'],
    ['outbox:', 'durable store-and-forward in DIR/outbox'],
    [`  maxBytes: ${d.outboxMaxBytes}`, 'bytes of queued envelopes (64 MiB)'],
    [`  maxAgeMs: ${d.outboxMaxAgeMs}`, 'ms (7 days): older queued envelopes are dropped, and the drop is recorded'],
    [`  overflow: ${d.outboxOverflow}`, 'reject-new (publish fails; nothing queued is lost) | drop-oldest'],
    ['reconnect:', ''],
    [`  minMs: ${d.reconnectMinMs}`, 'first retry delay, ms; doubles per failure ...'],
    [`  maxMs: ${d.reconnectMaxMs}`, '... up to this'],
  ];
  const width = Math.max(...rows.map(([s]) => s.length)) + 2;
  const body = rows.map(([setting, comment]) => (comment ? `${setting.padEnd(width)}# ${comment}` : setting));
  return [
    '# witness-agent configuration: `witness-agent run | bridge | status --dir DIR` read DIR/witness-agent.yaml.',
    '# Unknown keys are errors (with a "did you mean"); every key but deviceId has the default shown.',
    ...body,
    '# Devices whose envelopes this agent verifies when they arrive on its subscriptions (its own key',
    '# is always known): a verifier key (`witness-agent init --json` prints it), or an id and a key.',
    'knownKeys: []',
    '#  - sensor-2+1a2b3c4d+AQ...',
    '#  - { id: sensor-3, publicKey: BASE64URL_43_CHARACTERS }',
    'bridge:',
    `${`  listen: ${BRIDGE_DEFAULTS.listen}`.padEnd(width)}# \`witness-agent bridge\`: where unchanged device apps connect (loopback only)`,
    '',
  ].join('\n');
}
