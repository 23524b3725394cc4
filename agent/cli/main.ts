/**
 * `witness-agent`: the device-side command line.
 *
 *   witness-agent init --id ID --dir DIR [--broker URL] [--json]
 *   witness-agent run --dir DIR [--broker URL] [--config FILE] [--qos 0|1|2] [--retain] [--subscribe FILTER]… [--once] [--json]
 *   witness-agent bridge --dir DIR [--broker URL] [--listen HOST:PORT] [--config FILE] [--deliver all|valid] [--json]
 *   witness-agent status --dir DIR [--json]
 *
 * Exit codes: 0 success · 1 verification failed (`run --once` that could not deliver everything) ·
 * 2 usage, input, configuration or I/O error.
 */
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { createInterface } from 'node:readline';
import { EXIT_FAILED, EXIT_OK, EXIT_USAGE, parseCommandArgs, printJson, processIo, reportError, type CommandIo } from '../../shared/cli/cli.js';
import { WitnessError } from '../../shared/errors.js';
import { writeKeyPair, formatPublicKey } from '../../shared/keys/key-file.js';
import { checkKeyName, verifierKey } from '../../shared/keys/key-id.js';
import type { AgentStatus, IncomingMessage, QoS, WitnessAgent } from '../agent.js';
import type { BridgeLogEvent } from '../bridge.js';
import { CONFIG_FILE_NAME, defaultConfigText, loadAgentConfig, optionsFromConfig } from '../config.js';
import { AGENT_DEFAULTS, BRIDGE_DEFAULTS, checkBridgeListen, checkBrokerUrl } from '../options.js';

// The agent (MQTT.js), the bridge (aedes) and the outbox load only for the commands that use them:
// `init`, `status` and `--help` start in a fraction of the time on a small device.
const loadAgentModule = (): Promise<typeof import('../agent.js')> => import('../agent.js');

/** Standard streams, plus stdin for `run` (tests pass their own). */
export interface AgentIo extends CommandIo {
  stdin?: NodeJS.ReadableStream;
}

/** Device ids are MQTT client ids and key names: 1–64 of [A-Za-z0-9._:-]. */
export function checkDeviceId(id: string): void {
  if (!/^[A-Za-z0-9._:-]{1,64}$/.test(id)) {
    throw new WitnessError('WITNESS_ERR_USAGE', `device id ${JSON.stringify(id)}: use 1 to 64 characters from A-Z a-z 0-9 . _ : -`);
  }
  checkKeyName(id);
}

function usage(command: string, line: string): WitnessError {
  return new WitnessError('WITNESS_ERR_USAGE', `${command}: usage: ${line}`);
}

// ── init ───────────────────────────────────────────────────────────────────────────────────────

async function initCommand(argv: string[], io: AgentIo): Promise<number> {
  const { values } = parseCommandArgs('witness-agent init', argv, {
    id: { type: 'string' },
    dir: { type: 'string' },
    broker: { type: 'string' },
    json: { type: 'boolean' },
  }, false);
  if (values.id === undefined || values.dir === undefined) throw usage('witness-agent init', COMMANDS.init!.usage);
  checkDeviceId(values.id);
  if (values.broker !== undefined) checkUrlOption('witness-agent init', values.broker);
  const dir = resolve(values.dir);
  if (existsSync(join(dir, 'device.key'))) {
    throw new WitnessError('WITNESS_ERR_USAGE', `${dir} already holds a device key (device.key); use another --dir, or keep using this one`);
  }
  const configPath = join(dir, CONFIG_FILE_NAME);
  if (existsSync(configPath)) {
    throw new WitnessError('WITNESS_ERR_USAGE', `${configPath} already exists; use another --dir, or move it away`);
  }
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const { publicKey } = writeKeyPair(dir, 'device');
  let config = defaultConfigText(values.id);
  if (values.broker !== undefined) config = config.replace(/^broker: \S+/m, `broker: ${values.broker}`);
  // wx: never replace a config someone wrote between the check above and now.
  writeFileSync(configPath, config, { mode: 0o644, flag: 'wx' });
  const pub = formatPublicKey(publicKey);
  // The `=` form: a base64url key may start with '-', which a parser would read as an option.
  const register = `witness device add --id ${values.id} --public-key=${pub}`;
  if (values.json) {
    printJson(io, { ok: true, id: values.id, dir, config: configPath, publicKey: pub, verifierKey: verifierKey(values.id, publicKey), register });
  } else {
    io.stdout.write(
      `created the key of device ${values.id} in ${dir}\n  public key  ${pub}\n  config      ${configPath}\n\nregister it with the broker:\n  ${register}\n`,
    );
  }
  return EXIT_OK;
}

function checkUrlOption(command: string, url: string): void {
  try {
    checkBrokerUrl(url);
  } catch (e) {
    throw new WitnessError('WITNESS_ERR_USAGE', `${command}: --broker ${(e as Error).message.replace(/^WitnessAgent options: broker /, '')}`, { cause: e });
  }
}

// ── run and bridge: a running agent ───────────────────────────────────────────────────────────

async function loadAgent(command: string, v: { dir?: string; config?: string; broker?: string }): Promise<{ agent: WitnessAgent; dir: string; configFile: string; listen: string | undefined }> {
  if (v.dir === undefined) throw usage(command, COMMANDS[command.split(' ')[1]!]!.usage);
  const dir = resolve(v.dir);
  const configFile = resolve(v.config ?? join(dir, CONFIG_FILE_NAME));
  const cfg = loadAgentConfig(configFile);
  if (v.broker !== undefined) checkUrlOption(command, v.broker);
  const options = { ...optionsFromConfig(cfg), dir, ...(v.broker !== undefined ? { broker: v.broker } : {}) };
  const { WitnessAgent } = await loadAgentModule();
  return { agent: new WitnessAgent(options), dir, configFile, listen: cfg.bridge?.listen };
}

/** Resolves on SIGINT or SIGTERM (the handlers are removed again). */
function untilSignal(): { promise: Promise<NodeJS.Signals>; cancel: () => void } {
  let cancel = (): void => {};
  const promise = new Promise<NodeJS.Signals>((resolveSignal) => {
    const on = (sig: NodeJS.Signals): void => {
      cancel();
      resolveSignal(sig);
    };
    cancel = () => {
      process.off('SIGINT', on);
      process.off('SIGTERM', on);
    };
    process.on('SIGINT', on);
    process.on('SIGTERM', on);
  });
  return { promise, cancel };
}

function line(io: CommandIo, json: boolean, event: string, human: string, data: Record<string, unknown>): void {
  io.stdout.write(json ? JSON.stringify({ event, ...data }) + '\n' : human + '\n');
}

function attachAgentLog(agent: WitnessAgent, io: CommandIo, json: boolean): void {
  agent.on('connect', (c) => line(io, json, 'connected', `connected ${c.broker} (attempt ${c.attempt}, ${c.pending} queued)`, { ...c }));
  agent.on('offline', (o) => line(io, json, 'offline', `offline: ${o.reason}${o.retryInMs !== undefined ? ` (retrying in ${o.retryInMs} ms)` : ''}`, { ...o }));
  agent.on('dropped', (d) => line(io, json, 'dropped', `dropped ${d.count} queued envelope(s), seq ${d.fromSeq}..${d.toSeq} (${d.reason})`, { ...d }));
  agent.on('error', (e) => io.stderr.write(`warning: ${e.message}\n`));
}

function describeMessage(m: IncomingMessage): { human: string; data: Record<string, unknown> } {
  const from = m.deviceId !== undefined ? ` from ${m.deviceId} seq ${m.seq}` : '';
  const text = Buffer.from(m.payload).toString('utf8');
  const shown = /^[\P{Cc}\t]*$/u.test(text) && text.length <= 200 ? text : `<${m.payload.length} bytes>`;
  const why = m.verdict !== 'valid' && m.reason ? ` (${m.reason})` : '';
  return {
    human: `message ${m.verdict} ${m.topic}${from}${why}: ${shown}`,
    data: {
      topic: m.topic,
      verdict: m.verdict,
      ...(m.reason !== undefined ? { reason: m.reason } : {}),
      ...(m.gap !== undefined ? { gap: m.gap } : {}),
      ...(m.deviceId !== undefined ? { deviceId: m.deviceId, kid: m.kid, seq: m.seq, time: m.time, uncertainty: m.uncertainty, timeSource: m.timeSource } : {}),
      payload: Buffer.from(m.payload).toString('base64'),
      qos: m.qos,
      retain: m.retain,
    },
  };
}

async function runCommand(argv: string[], io: AgentIo): Promise<number> {
  const { values } = parseCommandArgs('witness-agent run', argv, {
    dir: { type: 'string' },
    config: { type: 'string' },
    broker: { type: 'string' },
    qos: { type: 'string' },
    retain: { type: 'boolean' },
    subscribe: { type: 'string', multiple: true },
    once: { type: 'boolean' },
    json: { type: 'boolean' },
  }, false);
  const json = values.json === true;
  const qos = values.qos === undefined ? 1 : Number(values.qos);
  if (qos !== 0 && qos !== 1 && qos !== 2) throw new WitnessError('WITNESS_ERR_USAGE', `witness-agent run: --qos must be 0, 1 or 2, got ${JSON.stringify(values.qos)}`);
  const { agent } = await loadAgent('witness-agent run', values);
  const signal = untilSignal();
  attachAgentLog(agent, io, json);
  agent.on('message', (m) => {
    const d = describeMessage(m);
    line(io, json, 'message', d.human, d.data);
  });
  try {
    await agent.start();
  } catch (e) {
    signal.cancel();
    throw e;
  }
  const st = agent.status();
  line(io, json, 'started', `started ${st.deviceId} → ${st.broker} (clock ${st.clock.source} ±${st.clock.uncertainty} ms; outbox ${st.outbox.depth} queued, next seq ${st.outbox.nextSeq})`, {
    deviceId: st.deviceId,
    broker: st.broker,
    clock: st.clock,
    outbox: st.outbox,
    pid: process.pid,
  });
  for (const f of values.subscribe ?? []) await agent.subscribe(f);

  // stdin: one `TOPIC PAYLOAD` per line. Publishes are started in line order (the outbox gives
  // sequence numbers in call order) and reported in that order.
  const input = io.stdin ?? process.stdin;
  const rl = createInterface({ input, crlfDelay: Infinity, terminal: false });
  let reported: Promise<void> = Promise.resolve();
  let failed = 0;
  rl.on('line', (text) => {
    const l = text.replace(/\r$/, '');
    if (l.trim() === '' || l.startsWith('#')) return;
    const sp = l.indexOf(' ');
    const topic = sp < 0 ? l : l.slice(0, sp);
    const payload = sp < 0 ? '' : l.slice(sp + 1);
    const p = agent.publish(topic, payload, { qos: qos as QoS, retain: values.retain === true });
    reported = reported.then(() =>
      p.then(
        (q) => line(io, json, 'queued', `queued ${q.seq} ${q.topic}`, { seq: q.seq, topic: q.topic, qos: q.qos, bytes: q.bytes }),
        (e: unknown) => {
          failed++;
          io.stderr.write(`error: not queued: ${topic}: ${(e as Error).message}\n`);
        },
      ),
    );
  });
  const inputEnded = new Promise<void>((r) => rl.once('close', () => r()));

  let code = EXIT_OK;
  if (values.once) {
    // Scriptable: publish what stdin holds, wait until the broker acknowledged all of it, exit.
    let interrupted = false;
    const done = (async (): Promise<'done'> => {
      await inputEnded;
      await reported;
      // The outbox holds everything durably meanwhile; a signal ends the wait.
      while (!interrupted && !(await agent.flush(1000)));
      return 'done';
    })();
    const how = await Promise.race([done, signal.promise]);
    interrupted = true;
    if (how !== 'done' || failed > 0 || agent.status().outbox.depth > 0) code = EXIT_FAILED;
  } else {
    await signal.promise;
  }
  signal.cancel();
  rl.close();
  if (input === process.stdin) process.stdin.destroy();
  await reported;
  await agent.stop();
  const end = agent.status();
  line(io, json, 'stopped', `stopped (${end.outbox.depth} still queued, last ack ${end.outbox.lastAck ? `seq ${end.outbox.lastAck.seq}` : 'none'})`, {
    outbox: end.outbox,
  });
  return code;
}

async function bridgeCommand(argv: string[], io: AgentIo): Promise<number> {
  const { values } = parseCommandArgs('witness-agent bridge', argv, {
    dir: { type: 'string' },
    config: { type: 'string' },
    broker: { type: 'string' },
    listen: { type: 'string' },
    deliver: { type: 'string' },
    json: { type: 'boolean' },
  }, false);
  const json = values.json === true;
  if (values.deliver !== undefined && values.deliver !== 'all' && values.deliver !== 'valid') {
    throw new WitnessError('WITNESS_ERR_USAGE', `witness-agent bridge: --deliver must be all or valid, got ${JSON.stringify(values.deliver)}`);
  }
  const { agent, listen: configured } = await loadAgent('witness-agent bridge', values);
  const listen = values.listen ?? configured ?? BRIDGE_DEFAULTS.listen;
  try {
    checkBridgeListen(listen); // before the agent takes the outbox
  } catch (e) {
    throw new WitnessError('WITNESS_ERR_USAGE', `witness-agent bridge: --listen ${(e as Error).message.replace(/^bridge listen /, '')}`, { cause: e });
  }
  const signal = untilSignal();
  attachAgentLog(agent, io, json);
  try {
    await agent.start();
  } catch (e) {
    signal.cancel();
    throw e;
  }
  const { startBridge } = await import('../bridge.js');
  let bridge;
  try {
    bridge = await startBridge({
      agent,
      listen,
      deliver: (values.deliver as 'all' | 'valid' | undefined) ?? BRIDGE_DEFAULTS.deliver,
      log: (e) => logBridge(io, json, e),
    });
  } catch (e) {
    signal.cancel();
    await agent.stop({ drainMs: 0 });
    throw e;
  }
  line(io, json, 'listening', `bridge listening ${bridge.url} (signing as ${agent.deviceId} → ${agent.options.broker})`, {
    listening: bridge.url,
    deviceId: agent.deviceId,
    broker: agent.options.broker,
    pid: process.pid,
  });
  await signal.promise;
  signal.cancel();
  await bridge.close();
  await agent.stop();
  line(io, json, 'stopped', `stopped (${agent.status().outbox.depth} still queued)`, { outbox: agent.status().outbox });
  return EXIT_OK;
}

function logBridge(io: CommandIo, json: boolean, e: BridgeLogEvent): void {
  switch (e.kind) {
    case 'client':
      return line(io, json, 'client', `local client ${e.clientId} ${e.connected ? 'connected' : 'disconnected'}`, { clientId: e.clientId, connected: e.connected });
    case 'publish':
      return line(io, json, 'signed', `signed ${e.topic} from ${e.clientId} as seq ${e.seq}`, { clientId: e.clientId, topic: e.topic, qos: e.qos, seq: e.seq });
    case 'publish-refused':
      return line(io, json, 'refused', `refused ${e.topic} from ${e.clientId}: ${e.error}`, { clientId: e.clientId, topic: e.topic, error: e.error });
    case 'subscribe':
      return line(io, json, 'subscribe', `local client ${e.clientId} subscribed ${e.filter} (${e.granted === null ? 'refused upstream' : `QoS ${e.granted}`})`, { ...e });
    case 'unsubscribe':
      return line(io, json, 'unsubscribe', `released upstream subscription ${e.filter}`, { filter: e.filter });
    case 'message': {
      const d = describeMessage(e.message);
      return line(io, json, 'message', `${d.human}${e.delivered ? '' : ' [not delivered]'}`, { ...d.data, delivered: e.delivered });
    }
  }
}

// ── status ─────────────────────────────────────────────────────────────────────────────────────

interface StatusFile extends AgentStatus {
  format: string;
  pid: number;
  writtenAt: number;
  stopped: boolean;
}

function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

async function statusCommand(argv: string[], io: AgentIo): Promise<number> {
  const { values } = parseCommandArgs('witness-agent status', argv, { dir: { type: 'string' }, json: { type: 'boolean' } }, false);
  if (values.dir === undefined) throw usage('witness-agent status', COMMANDS.status!.usage);
  const dir = resolve(values.dir);
  const statusPath = join(dir, AGENT_DEFAULTS.statusFileName);
  let file: StatusFile | undefined;
  if (existsSync(statusPath)) {
    try {
      file = JSON.parse(readFileSync(statusPath, 'utf8')) as StatusFile;
    } catch (e) {
      throw new WitnessError('WITNESS_ERR_IO', `cannot read the status file ${statusPath}: ${(e as Error).message}`, { cause: e, details: { path: statusPath } });
    }
  }
  const running = file !== undefined && !file.stopped && processAlive(file.pid);
  // The running agent holds the outbox lock and reports it in the status file; otherwise the
  // outbox on disk is the truth (what is still queued for the next start).
  let outbox: AgentStatus['outbox'] | undefined = file?.outbox;
  const outboxDir = file?.outbox.dir ?? join(dir, AGENT_DEFAULTS.outboxSubdir);
  if (!running && existsSync(outboxDir)) {
    const { Outbox } = await import('../outbox/outbox.js');
    const ob = await Outbox.open(outboxDir);
    try {
      const lastAck = ob.lastAck;
      outbox = { dir: outboxDir, depth: ob.depth, bytes: ob.bytes, nextSeq: ob.nextSeq, ...(lastAck ? { lastAck: { seq: lastAck.seq, at: lastAck.at } } : {}) };
    } finally {
      await ob.close();
    }
  }
  if (file === undefined && outbox === undefined) {
    throw new WitnessError('WITNESS_ERR_IO', `no agent status in ${dir}: neither ${AGENT_DEFAULTS.statusFileName} nor an outbox; start the agent with \`witness-agent run --dir ${values.dir}\``, {
      details: { dir },
    });
  }
  const now = Date.now();
  const report = {
    dir,
    running,
    ...(file ? { pid: file.pid, statusWrittenAt: file.writtenAt, deviceId: file.deviceId, broker: file.broker, connected: running && file.connected, clock: file.clock, lastError: file.lastError } : {}),
    outbox,
  };
  if (values.json) {
    printJson(io, { ok: true, ...report });
    return EXIT_OK;
  }
  const ago = (t: number | undefined): string => (t === undefined ? 'never' : `${Math.max(0, Math.round((now - t) / 1000))} s ago`);
  const out: string[] = [];
  if (file) {
    out.push(`device   ${file.deviceId} (${running ? `agent running, pid ${file.pid}` : 'agent not running'}; status written ${ago(file.writtenAt)})`);
    out.push(`broker   ${file.broker} ${running ? (file.connected ? 'connected' : 'not connected') : ''}`.trimEnd());
    const c = file.clock;
    out.push(`clock    ${c.source}  offset ${c.offset >= 0 ? '+' : ''}${c.offset} ms  uncertainty ±${c.uncertainty} ms  (last sync ${ago(c.lastSync)}${c.server ? `, ${c.server}` : ''})${running ? '' : ' [as last reported]'}`);
    if (file.lastError) out.push(`error    ${file.lastError}`);
  } else {
    out.push(`device   (no status file: the agent has not run in ${dir})`);
  }
  if (outbox) {
    out.push(
      `outbox   ${outbox.depth} queued (${outbox.bytes} bytes), next seq ${outbox.nextSeq}, last ack ${outbox.lastAck ? `seq ${outbox.lastAck.seq} (${ago(outbox.lastAck.at)})` : 'none'}`,
    );
  }
  io.stdout.write(out.join('\n') + '\n');
  return EXIT_OK;
}

// ── dispatch ───────────────────────────────────────────────────────────────────────────────────

const COMMANDS: Record<string, { run: (argv: string[], io: AgentIo) => Promise<number>; usage: string; summary: string }> = {
  init: {
    run: initCommand,
    usage: 'witness-agent init --id ID --dir DIR [--broker URL] [--json]',
    summary: `create the device key pair and ${CONFIG_FILE_NAME}; print the line that registers the device with the broker`,
  },
  run: {
    run: runCommand,
    usage: 'witness-agent run --dir DIR [--broker URL] [--config FILE] [--qos 0|1|2] [--retain] [--subscribe FILTER]... [--once] [--json]',
    summary: 'connect and stay up; publish each stdin line `TOPIC PAYLOAD` signed; print what subscriptions receive with its verdict (--once: exit when stdin ends and all is acknowledged)',
  },
  bridge: {
    run: bridgeCommand,
    usage: 'witness-agent bridge --dir DIR --broker URL --listen HOST:PORT [--config FILE] [--deliver all|valid] [--json]',
    summary: 'a local MQTT 3.1.1 broker on loopback for unchanged device apps: their publishes are signed and forwarded, their subscriptions proxied',
  },
  status: {
    run: statusCommand,
    usage: 'witness-agent status --dir DIR [--json]',
    summary: 'clock source, offset and uncertainty, queue depth, last ack (from the running agent\'s status file and the outbox on disk)',
  },
};

export async function main(argv: string[], io: AgentIo = processIo): Promise<number> {
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
