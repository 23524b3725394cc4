/**
 * The options of a WitnessAgent (MQTT.js v5's shape: one interface, each field with its default
 * and unit; the defaults in one constant, AGENT_DEFAULTS; the agent works with the resolved,
 * complete form, ResolvedAgentOptions).
 *
 * The same settings can come from `DIR/witness-agent.yaml` (agent/config.ts turns the file into
 * these options); options given in code win over the file.
 */
import { existsSync } from 'node:fs';
import { isIP } from 'node:net';
import { join } from 'node:path';
import { WitnessError } from '../shared/errors.js';
import { readPublicKey, readSeed, parsePublicKey } from '../shared/keys/key-file.js';
import { publicKeyFromSeed, PUBLIC_KEY_SIZE, SEED_SIZE } from '../shared/keys/ed25519.js';
import { checkDeviceId } from '../shared/token/device-id.js';
import { DEFAULT_AUDIENCE } from '../shared/token/connect-token.js';
import type { TrustedClock } from './clock/trusted-clock.js';
import { OUTBOX_DEFAULTS, type OverflowPolicy } from './outbox/outbox.js';

/** What the agent needs of a trusted clock (agent/clock/trusted-clock.ts); injectable for sharing and tests. */
export type AgentClock = Pick<TrustedClock, 'now' | 'status' | 'close'>;

/**
 * Keys of the devices whose envelopes the agent verifies when they arrive on a subscription:
 * either a map device id → its public keys (base64url, 43 characters, or 32 raw bytes), or a list
 * of C2SP verifier keys `DEVICE_ID+KEYHASH+BASE64` (the `verifierKey` that `witness-agent init
 * --json` prints). The agent's own key is always known.
 */
export type KnownKeys = Readonly<Record<string, readonly (string | Uint8Array)[]>> | readonly string[];

export type { OverflowPolicy };

export interface WitnessAgentOptions {
  /** Device id: the MQTT client id, the name of the device key, the prefix of every kid. 1–64 of `A-Z a-z 0-9 . _ : -`. Required. */
  deviceId: string;
  /**
   * The agent directory written by `witness-agent init`: `device.key` (and `device.pub`) are read
   * from it unless `seed` is given; it is the default home of the outbox (`DIR/outbox`) and of the
   * status file (`DIR/status.json`). Default: none (then `seed` and `outboxDir` are required).
   */
  dir?: string;
  /** The device's Ed25519 private key seed, 32 bytes. Default: read from `DIR/device.key`. */
  seed?: Uint8Array;
  /** The device's public key, 32 bytes; checked against `seed`. Default: derived from the seed. */
  publicKey?: Uint8Array;
  /** Upstream broker URL: `mqtt://`, `mqtts://`, `ws://` or `wss://`. Default `mqtt://127.0.0.1:1883`. */
  broker?: string;
  /** Audience named in the connect token; must match the broker's `auth.token.audience`. Default `mqtt-witness`. */
  audience?: string;
  /** NTP servers as `host:port`. Default `pool.ntp.org:123`. An empty list: system clock only (source `system`). */
  ntpServers?: readonly string[];
  /** A started clock to use instead of starting one from `ntpServers`; the agent does not close it. Default: none. */
  clock?: AgentClock;
  /** Outbox directory (durable store-and-forward). Default `DIR/outbox`. */
  outboxDir?: string;
  /** Outbox bound, bytes of queued envelopes. Default 67,108,864 (64 MiB). */
  outboxMaxBytes?: number;
  /** Oldest queued envelope kept, ms; older ones are dropped (a `dropped` event, recorded in the outbox). Default 604,800,000 (7 days). */
  outboxMaxAgeMs?: number;
  /** When the outbox is full: `reject-new` (publish() rejects; nothing queued is lost) or `drop-oldest` (a `dropped` event). Default `reject-new`. */
  outboxOverflow?: OverflowPolicy;
  /** Keys to verify incoming envelopes with (see KnownKeys). Default: only the agent's own key. */
  knownKeys?: KnownKeys;
  /** Allowed disagreement between an incoming envelope's time and the agent's, beyond both uncertainties, ms. Default 1,000 (the broker's default). */
  skewToleranceMs?: number;
  /** First reconnect delay after a connection is lost or refused, ms; doubles per failure. Default 1,000. */
  reconnectMinMs?: number;
  /** Longest reconnect delay, ms. Default 60,000. */
  reconnectMaxMs?: number;
  /** Random spread of each reconnect delay, as a fraction (0–1) either side, so a fleet does not reconnect in step. Default 0.2. */
  reconnectJitter?: number;
  /** Time allowed for the TCP/TLS/WebSocket connection and the CONNACK, ms. Default 10,000. */
  connectTimeoutMs?: number;
  /** MQTT keepalive, seconds. Default 30. */
  keepaliveS?: number;
  /** Envelopes sent and not yet acknowledged, at most (messages). Default 64. */
  maxInflight?: number;
  /** Status file, rewritten every `statusIntervalMs` (read by `witness-agent status`); `null`: none. Default `DIR/status.json`, none without `dir`. */
  statusFile?: string | null;
  /** Period of the status file, ms. Default 5,000. */
  statusIntervalMs?: number;
  /** On stop(): how long to wait for queued envelopes to be acknowledged while connected, ms. Default 2,000. */
  drainOnStopMs?: number;
}

/** Every default of the agent, in one place. */
export const AGENT_DEFAULTS = Object.freeze({
  broker: 'mqtt://127.0.0.1:1883',
  audience: DEFAULT_AUDIENCE,
  ntpServers: Object.freeze(['pool.ntp.org:123']) as readonly string[],
  outboxSubdir: 'outbox',
  // The outbox's own defaults (agent/outbox/outbox.ts), named here so every default is in one list.
  outboxMaxBytes: OUTBOX_DEFAULTS.maxBytes,
  outboxMaxAgeMs: OUTBOX_DEFAULTS.maxAgeMs,
  outboxOverflow: OUTBOX_DEFAULTS.overflow as OverflowPolicy,
  skewToleranceMs: 1000,
  reconnectMinMs: 1000,
  reconnectMaxMs: 60_000,
  reconnectJitter: 0.2,
  connectTimeoutMs: 10_000,
  keepaliveS: 30,
  maxInflight: 64,
  statusFileName: 'status.json',
  statusIntervalMs: 5000,
  drainOnStopMs: 2000,
});

/** Defaults of the bridge (agent/bridge.ts), also in one place. */
export const BRIDGE_DEFAULTS = Object.freeze({
  /** Where unchanged device apps connect: loopback only. */
  listen: '127.0.0.1:1884',
  /** Which received messages are delivered to local subscribers. */
  deliver: 'all' as 'all' | 'valid',
});

export interface ResolvedAgentOptions {
  deviceId: string;
  dir: string | undefined;
  seed: Uint8Array;
  publicKey: Uint8Array;
  broker: string;
  audience: string;
  ntpServers: readonly string[];
  clock: AgentClock | undefined;
  outboxDir: string;
  outboxMaxBytes: number;
  outboxMaxAgeMs: number;
  outboxOverflow: OverflowPolicy;
  knownKeys: KnownKeys;
  skewToleranceMs: number;
  reconnectMinMs: number;
  reconnectMaxMs: number;
  reconnectJitter: number;
  connectTimeoutMs: number;
  keepaliveS: number;
  maxInflight: number;
  statusFile: string | null;
  statusIntervalMs: number;
  drainOnStopMs: number;
}

function bad(what: string): WitnessError {
  return new WitnessError('WITNESS_ERR_INVALID_ARGUMENT', `WitnessAgent options: ${what}`);
}

function count(name: string, v: number | undefined, dflt: number, min: number, max = Number.MAX_SAFE_INTEGER): number {
  if (v === undefined) return dflt;
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < min || v > max) throw bad(`${name} must be an integer ${min}–${max}, got ${String(v)}`);
  return v;
}

const BROKER_PROTOCOLS = ['mqtt:', 'mqtts:', 'ws:', 'wss:'];

/** Checks a broker URL; returns it unchanged. */
export function checkBrokerUrl(url: string): string {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    throw bad(`broker ${JSON.stringify(url)} is not a URL (expected e.g. mqtt://127.0.0.1:1883)`);
  }
  if (!BROKER_PROTOCOLS.includes(u.protocol)) throw bad(`broker ${JSON.stringify(url)}: the scheme must be one of mqtt, mqtts, ws, wss`);
  return url;
}

/** `host:port` or `[v6]:port` with a port 1–65535 (0 too with `allowPortZero`: any free port). */
export function isHostPort(s: string, allowPortZero = false): boolean {
  const m = /^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9._-]+):(\d{1,5})$/.exec(s);
  return m !== null && Number(m[2]) >= (allowPortZero ? 0 : 1) && Number(m[2]) <= 65535;
}

export function splitHostPort(s: string): { host: string; port: number } {
  const i = s.lastIndexOf(':');
  const host = s.slice(0, i).replace(/^\[(.*)\]$/, '$1');
  return { host, port: Number(s.slice(i + 1)) };
}

/**
 * Checks the bridge's listen address: `host:port` (port 0: any free one) on loopback. The bridge
 * signs whatever its clients send with the device key, so nothing off this box may reach it.
 * Throws WITNESS_ERR_INVALID_ARGUMENT; returns host and port.
 */
export function checkBridgeListen(listen: string): { host: string; port: number } {
  if (typeof listen !== 'string' || !isHostPort(listen, true)) {
    throw new WitnessError('WITNESS_ERR_INVALID_ARGUMENT', `bridge listen ${JSON.stringify(listen)}: expected host:port, e.g. 127.0.0.1:1884`);
  }
  const hp = splitHostPort(listen);
  if (!isLoopbackHost(hp.host)) {
    throw new WitnessError(
      'WITNESS_ERR_INVALID_ARGUMENT',
      `bridge listen ${JSON.stringify(listen)}: not a loopback address; the bridge signs whatever its clients send with this device's key, so it listens on 127.0.0.1 or [::1] only`,
    );
  }
  return hp;
}

export function isLoopbackHost(host: string): boolean {
  if (host === 'localhost') return true;
  if (isIP(host) === 4) return host.startsWith('127.');
  if (isIP(host) === 6) return host === '::1';
  return false;
}


/** Fills in every default and loads the key; throws WITNESS_ERR_INVALID_ARGUMENT / _KEY_FILE. */
export function resolveAgentOptions(o: WitnessAgentOptions): ResolvedAgentOptions {
  if (typeof o !== 'object' || o === null) throw bad('expected an options object');
  const d = AGENT_DEFAULTS;
  checkDeviceId(o.deviceId);
  const dir = o.dir;
  let seed = o.seed;
  if (seed === undefined) {
    if (dir === undefined) throw bad('give `seed` or `dir` (the directory written by `witness-agent init`)');
    seed = readSeed(join(dir, 'device.key'));
  }
  if (!(seed instanceof Uint8Array) || seed.length !== SEED_SIZE) throw bad(`seed must be ${SEED_SIZE} bytes`);
  const publicKey = publicKeyFromSeed(seed);
  const given = o.publicKey ?? (o.seed === undefined && dir !== undefined ? readPublicKeyIfAny(join(dir, 'device.pub')) : undefined);
  if (given !== undefined) {
    if (!(given instanceof Uint8Array) || given.length !== PUBLIC_KEY_SIZE || !Buffer.from(given).equals(publicKey)) {
      throw bad(o.publicKey !== undefined ? 'publicKey is not the public key of seed' : `${join(dir!, 'device.pub')} does not hold the public key of device.key`);
    }
  }
  const outboxDir = o.outboxDir ?? (dir !== undefined ? join(dir, d.outboxSubdir) : undefined);
  if (outboxDir === undefined) throw bad('give `outboxDir` or `dir`');
  const ntpServers = o.ntpServers ?? d.ntpServers;
  for (const s of ntpServers) if (typeof s !== 'string' || !isHostPort(s)) throw bad(`ntpServers: ${JSON.stringify(s)} is not host:port`);
  const overflow = o.outboxOverflow ?? d.outboxOverflow;
  if (overflow !== 'reject-new' && overflow !== 'drop-oldest') throw bad(`outboxOverflow must be reject-new or drop-oldest, got ${String(overflow)}`);
  const jitter = o.reconnectJitter ?? d.reconnectJitter;
  if (typeof jitter !== 'number' || !(jitter >= 0 && jitter <= 1)) throw bad(`reconnectJitter must be 0–1, got ${String(jitter)}`);
  const reconnectMinMs = count('reconnectMinMs', o.reconnectMinMs, d.reconnectMinMs, 1);
  const reconnectMaxMs = count('reconnectMaxMs', o.reconnectMaxMs, Math.max(d.reconnectMaxMs, reconnectMinMs), reconnectMinMs);
  const audience = o.audience ?? d.audience;
  if (typeof audience !== 'string' || audience.length === 0) throw bad('audience must be a non-empty string');
  return {
    deviceId: o.deviceId,
    dir,
    seed,
    publicKey,
    broker: checkBrokerUrl(o.broker ?? d.broker),
    audience,
    ntpServers: [...ntpServers],
    clock: o.clock,
    outboxDir,
    outboxMaxBytes: count('outboxMaxBytes', o.outboxMaxBytes, d.outboxMaxBytes, 1024),
    outboxMaxAgeMs: count('outboxMaxAgeMs', o.outboxMaxAgeMs, d.outboxMaxAgeMs, 1000),
    outboxOverflow: overflow,
    knownKeys: o.knownKeys ?? {},
    skewToleranceMs: count('skewToleranceMs', o.skewToleranceMs, d.skewToleranceMs, 0),
    reconnectMinMs,
    reconnectMaxMs,
    reconnectJitter: jitter,
    connectTimeoutMs: count('connectTimeoutMs', o.connectTimeoutMs, d.connectTimeoutMs, 100),
    keepaliveS: count('keepaliveS', o.keepaliveS, d.keepaliveS, 0, 65535),
    maxInflight: count('maxInflight', o.maxInflight, d.maxInflight, 1, 65535),
    statusFile: o.statusFile === undefined ? (dir !== undefined ? join(dir, d.statusFileName) : null) : o.statusFile,
    statusIntervalMs: count('statusIntervalMs', o.statusIntervalMs, d.statusIntervalMs, 100),
    drainOnStopMs: count('drainOnStopMs', o.drainOnStopMs, d.drainOnStopMs, 0),
  };
}

function readPublicKeyIfAny(path: string): Uint8Array | undefined {
  // A missing .pub is fine (the seed is the key); a present but broken one is not.
  return existsSync(path) ? readPublicKey(path) : undefined;
}

/** Parses one public key given as text (base64url or verifier key) or bytes. */
export function toPublicKey(k: string | Uint8Array): Uint8Array {
  if (typeof k === 'string') return parsePublicKey(k);
  if (!(k instanceof Uint8Array) || k.length !== PUBLIC_KEY_SIZE) throw bad(`knownKeys: a key must be ${PUBLIC_KEY_SIZE} bytes or its base64url text`);
  return k;
}
