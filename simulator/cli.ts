/**
 * `witness sim …`: the simulator's commands (dispatched from broker/cli/main.ts).
 *
 *   witness sim run SCENARIO --broker URL [--record FILE] [--report DIR] [--register DATA_DIR]
 *                            [--mode observe|enforce] [--seed S] [--max-connecting N] [--json] [--quiet]
 *   witness sim replay FILE --broker URL [--speed X] [--record FILE] [--report DIR] [--register DATA_DIR]
 *                            [--username U] [--password P] [--json] [--quiet]
 *   witness sim check DATA_DIR --run FILE [--no-verify] [--key PUB] [--json]
 *   witness sim plan SCENARIO [--mode M] [--seed S] [--json]      what the scenario will send, and its digest
 *   witness sim register SCENARIO (--data DATA_DIR | --out FILE) [--json]
 *
 * Exit codes: run/replay 0 completed as planned · 1 completed with unplanned errors (connects
 * failed, publishes not acknowledged) · 2 usage or I/O error; check 0 every incident caught and
 * nothing clean flagged · 1 otherwise · 2 usage or I/O error.
 */
import { writeFileSync } from 'node:fs';
import { setMaxListeners } from 'node:events';
import { EXIT_FAILED, EXIT_OK, parseCommandArgs, printJson, type CommandIo } from '../shared/cli/cli.js';
import { WitnessError } from '../shared/errors.js';
import { loadScenario } from './scenario.js';
import { planDevices, planDigest, planSummary } from './plan.js';
import { runScenario } from './runner.js';
import { replay } from './replay.js';
import { writeReport, formatSummary } from './report.js';
import { registerFleet, registryDocument } from './register.js';
import { simCheckCommand } from './check.js';
import type { Scenario } from './types.js';
import { SIM_USAGE } from './usage.js';

export { SIM_USAGE };

const SUBCOMMANDS = ['run', 'replay', 'check', 'plan', 'register'] as const;

function usage(what: string): WitnessError {
  return new WitnessError('WITNESS_ERR_USAGE', `${what}; usage:\n  ${SIM_USAGE}`);
}

function one(positionals: string[], command: string, name: string): string {
  if (positionals.length !== 1) throw usage(`${command}: expected one ${name}, got ${positionals.length === 0 ? 'none' : positionals.map((p) => JSON.stringify(p)).join(' ')}`);
  return positionals[0]!;
}

function brokerUrl(command: string, v: string | undefined): string {
  if (!v) throw usage(`${command}: --broker URL is required (e.g. --broker mqtt://127.0.0.1:1883)`);
  let u: URL;
  try {
    u = new URL(v);
  } catch {
    throw usage(`${command}: --broker ${JSON.stringify(v)} is not a URL (e.g. mqtt://127.0.0.1:1883)`);
  }
  if (!['mqtt:', 'mqtts:', 'ws:', 'wss:'].includes(u.protocol)) throw usage(`${command}: --broker must be mqtt://, mqtts://, ws:// or wss://, got ${u.protocol}//`);
  return v;
}

function withOverrides(s: Scenario, mode: string | undefined, seed: string | undefined, command: string): Scenario {
  let out = s;
  if (mode !== undefined) {
    if (mode !== 'observe' && mode !== 'enforce') throw usage(`${command}: --mode must be observe or enforce, got ${JSON.stringify(mode)}`);
    out = { ...out, envelopeMode: mode };
  }
  if (seed !== undefined) {
    if (seed === '') throw usage(`${command}: --seed must not be empty`);
    out = { ...out, seed };
  }
  return out;
}

function positiveInt(command: string, name: string, v: string | undefined, dflt: number): number {
  if (v === undefined) return dflt;
  const n = Number(v);
  if (!Number.isInteger(n) || n < 1 || n > 100_000) throw usage(`${command}: --${name} must be a whole number from 1 to 100000, got ${JSON.stringify(v)}`);
  return n;
}

/** Stops a long command cleanly on Ctrl-C: the run file and report are still written. */
function interruptible(): { signal: AbortSignal; dispose: () => void } {
  const ac = new AbortController();
  // One abort listener per sleeping device: thousands, by design.
  setMaxListeners(0, ac.signal);
  const stop = (): void => ac.abort();
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);
  return {
    signal: ac.signal,
    dispose: () => {
      process.off('SIGINT', stop);
      process.off('SIGTERM', stop);
    },
  };
}

export async function simCommand(argv: string[], io: CommandIo): Promise<number> {
  const [sub, ...rest] = argv;
  if (sub === undefined || !(SUBCOMMANDS as readonly string[]).includes(sub)) {
    throw usage(`witness sim: ${sub === undefined ? 'missing subcommand' : `unknown subcommand ${JSON.stringify(sub)}`}`);
  }
  if (sub === 'check') return simCheckCommand(rest, io);
  const command = `witness sim ${sub}`;

  if (sub === 'plan') {
    const { values, positionals } = parseCommandArgs(command, rest, { mode: { type: 'string' }, seed: { type: 'string' }, json: { type: 'boolean' } });
    const s = withOverrides(loadScenario(one(positionals, command, 'SCENARIO file')), values.mode, values.seed, command);
    const summary = { scenario: s.name, seed: s.seed, envelopeMode: s.envelopeMode, digest: planDigest(s), ...planSummary(s) };
    if (values.json) printJson(io, summary);
    else io.stdout.write(`${JSON.stringify(summary, null, 2)}\n`);
    return EXIT_OK;
  }

  if (sub === 'register') {
    const { values, positionals } = parseCommandArgs(command, rest, { data: { type: 'string' }, out: { type: 'string' }, seed: { type: 'string' }, json: { type: 'boolean' } });
    const s = withOverrides(loadScenario(one(positionals, command, 'SCENARIO file')), undefined, values.seed, command);
    if ((values.data === undefined) === (values.out === undefined)) throw usage(`${command}: give exactly one of --data DATA_DIR (edit that broker's registry) or --out FILE (write a devices.json)`);
    const devices = planDevices(s);
    if (values.data !== undefined) {
      const r = registerFleet(values.data, devices);
      if (values.json) printJson(io, { data: values.data, devices: r.devices, changes: r.changes });
      else io.stdout.write(`registered ${r.devices} devices of ${s.name} in ${values.data} (${r.changes} changes; a running broker picks them up)\n`);
    } else {
      writeFileSync(values.out!, JSON.stringify(registryDocument(devices), null, 2) + '\n');
      if (values.json) printJson(io, { out: values.out, devices: devices.length });
      else io.stdout.write(`wrote ${values.out} with ${devices.length} devices: copy it to DATA_DIR/devices.json\n`);
    }
    return EXIT_OK;
  }

  if (sub === 'run') {
    const { values, positionals } = parseCommandArgs(command, rest, {
      broker: { type: 'string' },
      record: { type: 'string' },
      report: { type: 'string' },
      register: { type: 'string' },
      mode: { type: 'string' },
      seed: { type: 'string' },
      'max-connecting': { type: 'string' },
      json: { type: 'boolean' },
      quiet: { type: 'boolean' },
    });
    const file = one(positionals, command, 'SCENARIO file');
    const broker = brokerUrl(command, values.broker);
    const s = withOverrides(loadScenario(file), values.mode, values.seed, command);
    const maxConnecting = positiveInt(command, 'max-connecting', values['max-connecting'], 256);
    const stop = interruptible();
    let result;
    try {
      result = await runScenario({ scenario: s, broker, record: values.record, register: values.register, io, live: !values.json && !values.quiet, maxConnecting, signal: stop.signal });
    } finally {
      stop.dispose();
    }
    const extra = { scenario: s.name, seed: s.seed, broker, envelopeMode: s.envelopeMode, counts: result.counts, ...(values.record ? { record: values.record } : {}) };
    const report = values.report ? writeReport(values.report, result.summary, extra) : undefined;
    if (values.json) printJson(io, { ...extra, summary: result.summary, ...(report ? { report } : {}) });
    else {
      io.stdout.write(`${formatSummary(result.summary)}\n`);
      io.stdout.write(`devices ${result.counts.devices} · connects ${result.counts.connects} (${result.counts.connectFailures} failed) · published ${result.counts.published} · refused as planned ${result.counts.refusedAsPlanned} · incidents ${Object.values(result.counts.incidents).reduce((a, b) => a + (b ?? 0), 0)}\n`);
      if (values.record) io.stdout.write(`run file: ${values.record} (check it with: witness sim check DATA_DIR --run ${values.record})\n`);
      if (report) io.stdout.write(`report: ${report.htmlFile}\n`);
      if (result.counts.unexpectedErrors > 0) io.stderr.write(`${result.counts.unexpectedErrors} unplanned errors (see the summary's errors)\n`);
    }
    return result.counts.unexpectedErrors > 0 ? EXIT_FAILED : EXIT_OK;
  }

  // replay
  const { values, positionals } = parseCommandArgs(command, rest, {
    broker: { type: 'string' },
    speed: { type: 'string' },
    record: { type: 'string' },
    report: { type: 'string' },
    register: { type: 'string' },
    username: { type: 'string' },
    password: { type: 'string' },
    json: { type: 'boolean' },
    quiet: { type: 'boolean' },
  });
  const file = one(positionals, command, 'FILE (a run file or a ledger export)');
  const broker = brokerUrl(command, values.broker);
  let speed = 1;
  if (values.speed !== undefined) {
    speed = values.speed === 'max' ? Infinity : Number(values.speed);
    if (!(speed > 0)) throw usage(`${command}: --speed must be a number > 0 (2 = twice as fast) or "max", got ${JSON.stringify(values.speed)}`);
  }
  const stop = interruptible();
  let r;
  try {
    r = await replay({ file, broker, speed, record: values.record, register: values.register, username: values.username, password: values.password, io, live: !values.json && !values.quiet, signal: stop.signal });
  } finally {
    stop.dispose();
  }
  const extra = { replayOf: file, source: r.source, broker, speed: Number.isFinite(speed) ? speed : 'max', clients: r.clients, published: r.published, skipped: r.skipped };
  const report = values.report ? writeReport(values.report, r.summary, extra) : undefined;
  if (values.json) printJson(io, { ...extra, summary: r.summary, ...(report ? { report } : {}) });
  else {
    io.stdout.write(`${formatSummary(r.summary)}\n`);
    io.stdout.write(`replayed ${r.published} publishes from ${r.clients} clients (${r.source === 'run' ? 'run file' : 'ledger export'})\n`);
    for (const [why, n] of Object.entries(r.skipped)) io.stdout.write(`skipped ${n}: ${why}\n`);
    if (report) io.stdout.write(`report: ${report.htmlFile}\n`);
  }
  return r.unexpectedErrors > 0 ? EXIT_FAILED : EXIT_OK;
}
