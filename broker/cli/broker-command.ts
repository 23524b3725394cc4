/**
 * `witness broker`: runs the audited broker. With no flags and no config file it listens on
 * 127.0.0.1:1883, accepts anonymous clients (recorded as anonymous), allows every topic (and
 * records it) and observes envelopes: a stock mosquitto_pub works out of the box. A config file
 * turns on authentication and enforcement.
 */
import { WitnessError } from '../../shared/errors.js';
import { EXIT_OK, parseCommandArgs, parseCount, type CommandIo } from '../../shared/cli/cli.js';
import { startBroker, type BrokerOptions, type ListenerSpec } from '../server.js';
import { DEFAULT_DATA_DIR } from '../data-dir.js';
import { buildSecurity, loadBrokerConfig } from './broker-config.js';
import { startServices, type Services } from '../services.js';
import { packageVersion } from '../version.js';

export async function brokerCommand(argv: string[], io: CommandIo): Promise<number> {
  const { values } = parseCommandArgs('witness broker', argv, {
    config: { type: 'string', short: 'c' },
    host: { type: 'string' },
    port: { type: 'string', short: 'p' },
    data: { type: 'string' },
    'node-id': { type: 'string' },
    'http-port': { type: 'string' },
    'verify-threads': { type: 'string' },
    json: { type: 'boolean' },
  }, false);
  const cfg = loadBrokerConfig(values.config);
  const listeners: ListenerSpec[] = cfg.listeners.map((l) => ({ ...l }));
  if (values.host !== undefined || values.port !== undefined) {
    const first = listeners[0] ?? { type: 'mqtt', host: '127.0.0.1', port: 1883 };
    if (values.host !== undefined) first.host = values.host;
    if (values.port !== undefined) {
      first.port = parseCount('witness broker', '--port', values.port);
      if (first.port > 65535) throw new WitnessError('WITNESS_ERR_USAGE', `witness broker: --port ${first.port} is not a TCP port (0–65535)`);
    }
    listeners[0] = first;
  }
  let httpPort = 0;
  if (values['http-port'] !== undefined) {
    httpPort = parseCount('witness broker', '--http-port', values['http-port']);
    if (httpPort > 65535) throw new WitnessError('WITNESS_ERR_USAGE', `witness broker: --http-port ${httpPort} is not a TCP port (1–65535; 0 = pick a free one)`);
    // `--http-port 0` asks for a free port, like --port 0: the API is on.
    if (httpPort === 0) httpPort = -1;
  }
  let verifyThreads = cfg.verifyThreads;
  if (values['verify-threads'] !== undefined) {
    verifyThreads = parseCount('witness broker', '--verify-threads', values['verify-threads']);
    if (verifyThreads > 256) throw new WitnessError('WITNESS_ERR_USAGE', `witness broker: --verify-threads ${verifyThreads} is too many (0–256; 0 = verify on the event loop)`);
  }
  const dataDir = values.data ?? cfg.dataDir ?? DEFAULT_DATA_DIR;
  const opts: BrokerOptions = {
    dataDir,
    listeners,
    ledger: cfg.ledger,
    ...(verifyThreads !== undefined ? { verifyThreads } : {}),
    ...((values['node-id'] ?? cfg.nodeId) ? { nodeId: values['node-id'] ?? cfg.nodeId } : {}),
    security: (ctx) => buildSecurity(cfg, ctx.dataDir),
    onInit: (r) => {
      const msg = [
        `initialised ${r.paths.root} (node ${r.manifest.nodeId})`,
        `broker key ${r.manifest.verifierKey}`,
        'SEALING KEY — shown this once and stored nowhere. Keep it offline:',
        `  ${r.sealKeyHex}`,
        'witness verify DIR --seal-key KEY proves no one who later takes this host rewrote the sealed history.',
        '',
      ].join('\n');
      io.stderr.write(msg);
    },
    startFields: cfg.file ? { config: cfg.file, configSha256: cfg.sha256 } : { config: null },
  };
  const broker = await startBroker(opts);
  let services: Services;
  try {
    services = await startServices({ broker, dataDir, cfg, httpPort: httpPort === -1 ? 0 : httpPort, forceHttp: httpPort !== 0, version: packageVersion(), io });
  } catch (e) {
    await broker.stop('a service failed to start').catch(() => {});
    throw e;
  }
  // Signal handlers go in before "listening" is printed: whoever waits for that line may stop us
  // at once, and the default action of SIGTERM would skip the final checkpoint.
  const stopped = new Promise<void>((resolve) => {
    const onSignal = (sig: NodeJS.Signals): void => {
      process.removeListener('SIGINT', onSignal);
      process.removeListener('SIGTERM', onSignal);
      broker.stop(sig).then(resolve, (e: unknown) => {
        io.stderr.write(`error while stopping: ${(e as Error).message}\n`);
        resolve();
      });
    };
    process.on('SIGINT', onSignal);
    process.on('SIGTERM', onSignal);
  });
  for (const url of broker.urls) {
    if (values.json) io.stdout.write(JSON.stringify({ listening: url, nodeId: broker.nodeId, dataDir }) + '\n');
    else io.stdout.write(`listening ${url}\n`);
  }
  for (const line of services.lines) {
    if (values.json) io.stdout.write(JSON.stringify({ service: line }) + '\n');
    else io.stdout.write(`${line}\n`);
  }
  // A live counter on a terminal: clients, records per second, ledger size, last checkpoint.
  let status: NodeJS.Timeout | undefined;
  if (io.stderr.isTTY && !values.json) {
    let lastIndex = broker.ledger.nextIndex;
    let lastAt = Date.now();
    status = setInterval(() => {
      const now = Date.now();
      const idx = broker.ledger.nextIndex;
      const rate = Math.round(((idx - lastIndex) * 1000) / Math.max(1, now - lastAt));
      lastIndex = idx;
      lastAt = now;
      const clients = (broker.aedes as unknown as { connectedClients: number }).connectedClients;
      const cp = broker.ledger.lastCheckpoint;
      io.stderr.write(`\r${clients} client(s) · ${rate} records/s · ledger ${idx} records · checkpoint ${cp ? `${cp.epoch} @ ${cp.size}` : '-'}   `);
    }, 2000);
    status.unref();
  }
  await stopped;
  clearInterval(status);
  if (status) io.stderr.write('\n');
  if (!values.json) io.stdout.write(`stopped; ledger closed with a final checkpoint at ${broker.ledger.lastCheckpoint?.size ?? 0} records\n`);
  return EXIT_OK;
}
