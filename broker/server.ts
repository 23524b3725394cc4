/**
 * Runs an audited broker: data directory (created on first start), ledger, device registry,
 * aedes with the Witness plugin, listeners (MQTT over TCP, TLS, WebSocket), and a clean stop
 * (final checkpoint). `witness broker` is a thin user of `startBroker`.
 */
import { createServer as createNetServer, type Server as NetServer, type AddressInfo } from 'node:net';
import { createServer as createTlsServer } from 'node:tls';
import { createServer as createHttpServer, type Server as HttpServer } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import { readFileSync, writeFileSync, renameSync, existsSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { availableParallelism } from 'node:os';
import { Aedes } from 'aedes';
import { WebSocketServer, createWebSocketStream } from 'ws';
import { Ledger, type FsyncPolicy } from '../shared/ledger/writer.js';
import { LedgerReader } from '../shared/ledger/reader.js';
import { WitnessError } from '../shared/errors.js';
import { dataDirPaths, initDataDir, openSigning, type InitResult } from './data-dir.js';
import { attach, type AclLike, type AuthenticatorLike, type PoliciesLike, type WitnessPlugin } from './plugin.js';
import { VerifyPool, AsyncEnvelopeChecker } from './verify-pool.js';
import { EnvelopeChecker, type DeviceChainState, type KeyLookup } from './envelope-check.js';
import { EVENTS, type AuditRecord } from './records.js';

export interface ListenerSpec {
  type: 'mqtt' | 'mqtts' | 'ws' | 'wss';
  host: string;
  /** 0 picks a free port. */
  port: number;
  /** WebSocket path. Default /mqtt. */
  path?: string;
  tls?: { cert: string; key: string; ca?: string; clientCertificates?: 'none' | 'optional' | 'required' };
}

export interface BrokerOptions {
  dataDir: string;
  /** Node id for a new data directory; an existing one keeps its own. */
  nodeId?: string;
  listeners: ListenerSpec[];
  ledger?: { fsync?: FsyncPolicy; fsyncIntervalMs?: number; lingerMs?: number; checkpointEveryRecords?: number; checkpointEveryMs?: number; segmentMaxBytes?: number };
  /** Builds identity, access control and policies once the data directory exists. */
  security?: (ctx: { dataDir: string }) => Security;
  /** Allowed device/broker clock disagreement beyond both uncertainties, ms. */
  skewToleranceMs?: number;
  /** Broker clock uncertainty, ms (system clock without NTP discipline). Default 100. */
  clockUncertaintyMs?: number;
  /**
   * Worker threads that verify envelope signatures (verify-pool.ts); 0: verify on the event
   * loop. Default: CPU cores − 1, at least 1 (started at the first enveloped publish).
   */
  verifyThreads?: number;
  /** Printed once when a new data directory is created (the sealing key). */
  onInit?: (r: InitResult) => void;
  onRecord?: (r: AuditRecord) => void;
  /** Extra fields of the start record (config file, its hash). */
  startFields?: Record<string, unknown>;
}

/** Identity, access control, policies: built from the config by broker/cli/broker-config.ts. */
export interface Security {
  /** Device key lookup (the registry). Default: no devices. */
  keys?: KeyLookup;
  authenticator?: AuthenticatorLike;
  acl?: AclLike;
  policies?: PoliciesLike;
  mask?: (payload: Uint8Array, paths: readonly string[]) => { body: unknown; masked: boolean };
  /** Called once the plugin runs (e.g. to record registry changes as they happen). */
  start?: (plugin: WitnessPlugin) => void;
  close?: () => void;
}

export interface RunningBroker {
  aedes: Aedes;
  ledger: Ledger;
  plugin: WitnessPlugin;
  nodeId: string;
  /** Bound addresses, in listener order: `mqtt://127.0.0.1:1883`, … */
  urls: string[];
  stop(reason?: string): Promise<void>;
  /** Runs `hook` at the start of stop(), before the broker and the ledger close (last added, first run). */
  onStop(hook: () => Promise<void>): void;
}

const STATE_FILE = 'device-state.json';

export async function startBroker(opts: BrokerOptions): Promise<RunningBroker> {
  const paths = dataDirPaths(opts.dataDir);
  if (!existsSync(paths.manifest)) {
    const r = await initDataDir(opts.dataDir, opts.nodeId);
    opts.onInit?.(r);
  }
  const signing = openSigning(opts.dataDir);
  const nodeId = signing.manifest.nodeId;
  const clockU = opts.clockUncertaintyMs ?? 100;
  const clock = (): { t: number; u: number } => ({ t: Date.now(), u: clockU });

  const sec: Security = opts.security?.({ dataDir: paths.root }) ?? {};
  const keys: KeyLookup = sec.keys ?? { lookup: () => ({ status: 'unknown' }) };
  const checkOptions = { keys, ...(opts.skewToleranceMs !== undefined ? { skewToleranceMs: opts.skewToleranceMs } : {}) };
  // Signatures on worker threads (verify-pool.ts) take the envelope checker's event-loop cost
  // per publish from ≈ 200 µs to ≈ 20 µs (bench/verify-pool.ts) and spread verification over the
  // cores. In the whole broker on 2 cores (bench/suite.ts w-enforce vs w-enforce-el) the rate
  // was the same either way and the pool halved the p50 latency (docs/BENCHMARKS.md). The plugin keeps each client's records in its arrival order behind its
  // checks in flight (plugin.ts `enqueue`). The workers start at the first enveloped publish:
  // a broker whose publishes carry no envelopes never starts them.
  const verifyThreads = opts.verifyThreads ?? Math.max(1, availableParallelism() - 1);
  const pool = verifyThreads > 0 ? new VerifyPool({ threads: verifyThreads, lazy: true }) : undefined;
  const envelopes = pool ? new AsyncEnvelopeChecker({ ...checkOptions, pool }) : new EnvelopeChecker(checkOptions);
  const statePath = join(paths.root, 'state', STATE_FILE);
  const restoredFrom = await restoreDeviceState(statePath, paths.ledger, envelopes);

  let ledgerRef: Ledger | undefined;
  const ledger = await Ledger.open(paths.ledger, {
    origin: signing.manifest.origin,
    signer: signing.signer,
    seal: signing.seal,
    ...opts.ledger,
    onCheckpoint: (cp) => {
      // The device chain state as of this checkpoint, so a restart replays only what follows.
      saveDeviceState(statePath, ledgerRef?.nextIndex ?? cp.size, envelopes.snapshot());
    },
  });
  ledgerRef = ledger;

  const aedes = new Aedes({ id: nodeId });
  const plugin = attach(aedes, {
    ledger,
    nodeId,
    envelopes,
    clock,
    ...(sec.authenticator ? { authenticator: sec.authenticator } : {}),
    ...(sec.acl ? { acl: sec.acl } : {}),
    ...(sec.policies ? { policies: sec.policies } : {}),
    ...(sec.mask ? { mask: sec.mask } : {}),
    ...(opts.onRecord ? { onRecord: opts.onRecord } : {}),
    onLedgerError: (e) => process.emitWarning(`witness: ledger write failed: ${(e as Error).message}`),
  });
  // aedes errors that are not a client's (persistence) must not crash the broker.
  (aedes as unknown as NodeJS.EventEmitter).on('error', (e: Error) => void plugin.record(EVENTS.error, { scope: 'broker', msg: e.message }).catch(() => {}));
  await aedes.listen();

  const servers: Array<NetServer | HttpServer> = [];
  const wsServers: WebSocketServer[] = [];
  const urls: string[] = [];
  try {
    for (const l of opts.listeners) {
      const { server, ws } = makeListener(l, aedes);
      if (ws) wsServers.push(ws);
      await new Promise<void>((resolve, reject) => {
        server.once('error', reject);
        server.listen(l.port, l.host, () => {
          server.removeListener('error', reject);
          resolve();
        });
      });
      servers.push(server);
      const a = server.address() as AddressInfo;
      const host = a.family === 'IPv6' ? `[${a.address}]` : a.address;
      urls.push(`${l.type}://${host}:${a.port}${l.type === 'ws' || l.type === 'wss' ? (l.path ?? '/mqtt') : ''}`);
    }
  } catch (e) {
    for (const s of servers) s.close();
    await new Promise<void>((r) => aedes.close(() => r()));
    await ledger.close();
    const err = e as NodeJS.ErrnoException;
    throw new WitnessError('WITNESS_ERR_IO', `cannot listen: ${err.message}${err.code === 'EADDRINUSE' ? ' (another process uses that port: pick another with --port)' : ''}`, { cause: e });
  }

  sec.start?.(plugin);
  await plugin.record(EVENTS.start, { listeners: urls, ledger: ledger.nextIndex, restoredDeviceState: restoredFrom, ...opts.startFields });

  let stopping: Promise<void> | undefined;
  const stopHooks: Array<() => Promise<void>> = [];
  const stop = (reason = 'requested'): Promise<void> => {
    stopping ??= (async () => {
      // Services that read or append to the ledger (HTTP API, followers, alerts) stop first, in
      // the reverse order of their start, while the ledger is still open.
      for (const h of stopHooks.reverse()) await h().catch(() => {});
      // aedes first, then the servers (the other order took ~1.8 s, DESIGN §4).
      sec.close?.();
      await new Promise<void>((r) => aedes.close(() => r()));
      for (const w of wsServers) w.close();
      await Promise.all(servers.map((s) => new Promise<void>((r) => s.close(() => r()))));
      // Checks still in verification finish (and are recorded) before the ledger closes.
      if (envelopes instanceof AsyncEnvelopeChecker) await envelopes.drain();
      await plugin.drain();
      await plugin.record(EVENTS.stop, { reason }).catch(() => {});
      await ledger.close();
      await pool?.close();
      saveDeviceState(statePath, ledger.nextIndex, envelopes.snapshot());
      signing.seal.close();
    })();
    return stopping;
  };
  return { aedes, ledger, plugin, nodeId, urls, stop, onStop: (h) => void stopHooks.push(h) };
}

function makeListener(l: ListenerSpec, aedes: Aedes): { server: NetServer | HttpServer; ws?: WebSocketServer } {
  const handle = aedes.handle as unknown as (stream: unknown, req?: unknown) => void;
  const tlsOptions = (): Parameters<typeof createTlsServer>[0] => {
    if (!l.tls) throw new WitnessError('WITNESS_ERR_USAGE', `listener ${l.type}://${l.host}:${l.port} needs tls.cert and tls.key`);
    const mode = l.tls.clientCertificates ?? 'none';
    return {
      cert: readFileSync(l.tls.cert),
      key: readFileSync(l.tls.key),
      ...(l.tls.ca ? { ca: readFileSync(l.tls.ca) } : {}),
      requestCert: mode !== 'none',
      rejectUnauthorized: mode === 'required',
    };
  };
  switch (l.type) {
    case 'mqtt':
      return { server: createNetServer((s) => handle(s)) };
    case 'mqtts':
      return { server: createTlsServer(tlsOptions(), (s) => handle(s)) as unknown as NetServer };
    case 'ws':
    case 'wss': {
      const http = l.type === 'ws' ? createHttpServer() : (createHttpsServer(tlsOptions()) as HttpServer);
      const ws = new WebSocketServer({ server: http, path: l.path ?? '/mqtt' });
      ws.on('connection', (socket, req) => handle(createWebSocketStream(socket), req));
      return { server: http, ws };
    }
  }
}

/** Restores the envelope chain state: the snapshot, then the publish records written after it. */
async function restoreDeviceState(statePath: string, ledgerDir: string, envelopes: Pick<EnvelopeChecker, 'restore' | 'observe'>): Promise<{ snapshot: number; replayed: number } | null> {
  let from = 0;
  try {
    const snap = JSON.parse(readFileSync(statePath, 'utf8')) as { ledgerIndex: number; devices: Record<string, DeviceChainState> };
    envelopes.restore(snap.devices);
    from = snap.ledgerIndex;
  } catch {
    from = 0; // no snapshot (first start, or lost): rebuild from the whole ledger
  }
  let reader: LedgerReader;
  try {
    reader = LedgerReader.open(ledgerDir);
  } catch {
    return null;
  }
  let replayed = 0;
  try {
    // Bounded by one checkpoint interval (plus the time since): the snapshot is refreshed at
    // every checkpoint.
    for await (const { line } of reader.records(Math.min(from, reader.size))) {
      if (!line.includes('"kid":')) continue;
      const r = JSON.parse(line) as { e?: string; kid?: string; seq?: number; eh?: string; env?: string };
      if (r.e !== 'publish' || !r.kid || r.seq === undefined || !r.eh || !r.env) continue;
      const plus = r.kid.lastIndexOf('+');
      envelopes.observe(r.kid.slice(0, plus), r.seq, r.eh, r.env as Parameters<EnvelopeChecker['observe']>[3]);
      replayed++;
    }
  } finally {
    reader.close();
  }
  return { snapshot: from, replayed };
}

function saveDeviceState(path: string, ledgerIndex: number, devices: Record<string, DeviceChainState>): void {
  try {
    mkdirSync(join(path, '..'), { recursive: true });
    const tmp = `${path}.tmp`;
    writeFileSync(tmp, JSON.stringify({ format: 'witness-device-state/v1', ledgerIndex, devices }));
    renameSync(tmp, path);
  } catch {
    // Derived data: rebuilt from the ledger if missing.
  }
}
