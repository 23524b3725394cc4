/**
 * The configuration of `witness broker --config FILE`: its shape (BrokerConfig, as written in
 * YAML, every field optional), its defaults (DEFAULT_CONFIG, the one place they are written) and
 * the resolved form the broker works with (ResolvedConfig, complete).
 *
 * With no config file the broker runs on the defaults, like mosquitto 2: MQTT on 127.0.0.1:1883
 * only, anonymous clients accepted (and recorded as `anonymous`), access control off (everything
 * allowed and recorded), envelope policy `observe` and audit level `metadata` for every topic.
 * A config file turns on authentication (`auth`: anonymous clients are then refused unless
 * `auth.anonymous: true`) and enforcement (`acl.enabled: true`, `envelope: enforce`).
 *
 * Relative paths in a config file (dataDir, TLS files) are resolved against the directory of the
 * config file, so the broker reads the same files whatever its working directory.
 *
 * Loading and validation: broker/config/load.ts. An example with every key: example.yaml.
 */
import type { FsyncPolicy } from '../../shared/ledger/writer.js';
import { DEFAULT_ACL_RULES, type AclAction, type AclConfig } from '../acl/rules.js';
import { DEFAULT_POLICY, type AuditLevel, type EnvelopeMode, type PolicyRule, type ResolvedPolicy } from '../policy/policies.js';

export type ListenerType = 'mqtt' | 'mqtts' | 'ws' | 'wss';
export type ClientCertificates = 'none' | 'optional' | 'required';

// ── as written in the YAML file ───────────────────────────────────────────────────────────────

/** The YAML config file. Unknown keys are errors. */
export interface BrokerConfig {
  /** Node id given to a NEW data directory (1–64 of `A-Z a-z 0-9 . _ -`). Default: an existing data directory keeps its own; a new one gets `node-<random>`. */
  nodeId?: string;
  /** Data directory (keys, ledger, device registry); written here, relative to the config file. Default `./witness-data` in the working directory. */
  dataDir?: string;
  /** Worker threads that verify envelope signatures (0–256); 0 = on the event loop. Default: CPU cores − 1, at least 1, started at the first enveloped publish. */
  verifyThreads?: number;
  /** Where clients connect; at least one. Default: one plain MQTT listener on 127.0.0.1:1883. */
  listeners?: ListenerConfigInput[];
  /** HTTP API and dashboard (broker/http/). Default `{ host: 127.0.0.1, port: 0 }`; port 0 = off (`witness broker --http-port N` turns it on). */
  http?: {
    /** Interface to bind. Default `127.0.0.1`: loopback only. */
    host?: string;
    /** TCP port; 0 = off. Default 0. */
    port?: number;
    /** Serve `/metrics` without a token (for a Prometheus scraper on the same host). Default false. */
    metricsWithoutToken?: boolean;
    /**
     * Bearer tokens, each stored as the SHA-256 (hex) of the token, never the token itself; make
     * one with `witness token create --name N --role R`. Default none: then the broker makes one
     * admin token at first start, DATA/keys/http-admin.token (0600), and prints where it is.
     */
    tokens?: Array<{
      /** Who holds it: named in the records of its accesses. Unique. */
      name: string;
      /** `auditor` (read records, checkpoints, proofs, stream), `operator` (+ devices, alerts), `admin` (+ registry changes). */
      role: HttpRole;
      /** SHA-256 of the token, 64 hex digits. */
      sha256: string;
    }>;
  };
  /** Ledger followers (broker/followers/): copies of the ledger elsewhere, each from its own saved cursor. */
  followers?: {
    /** Mirror every record into InfluxDB (or anything that speaks its write API). Default none. */
    influx?: InfluxConfigInput;
  };
  /** Alert rules on the live record stream (broker/alerts/). On by default with the defaults below. */
  alerts?: {
    /** Default true. */
    enabled?: boolean;
    /** MQTT topic the broker publishes each alert on (JSON). Default `$SYS/witness/alerts`. */
    topic?: string;
    /** POST each alert (JSON) here too. Default none. */
    webhook?: { url: string; timeoutMs?: number };
    rules?: {
      /** Envelope failures (invalid, malformed, unknown-key, revoked, wrong-topic, chain-break) of one device. Default 3 in 60,000 ms. */
      signatureFailures?: { enabled?: boolean; count?: number; windowMs?: number };
      /** Messages missing (gap verdicts) of one device. Default 1 in 60,000 ms. */
      gaps?: { enabled?: boolean; missing?: number; windowMs?: number };
      /** Device time ahead of broker time by more than boundMs. Default 5,000. */
      clockSkew?: { enabled?: boolean; boundMs?: number };
      /** Refused connects, publishes and subscribes of one identity or one address. Default 5 in 60,000 ms. */
      denials?: { enabled?: boolean; count?: number; windowMs?: number };
      /** A device's rate over windowMs above factor × its own moving baseline. Defaults 5×, 20 messages of history, 10,000 ms, half-life 300,000 ms. */
      rateAnomaly?: { enabled?: boolean; factor?: number; minBaselineMessages?: number; windowMs?: number; baselineHalfLifeMs?: number };
      /** A device silent for more than factor × its usual interval (and at least minIntervalMs). Defaults 3×, 2,000 ms. */
      silence?: { enabled?: boolean; factor?: number; minIntervalMs?: number };
      /** The same rule on the same subject fires at most once per cooldown, ms. Default 60,000. */
      cooldownMs?: number;
    };
  };
  /** Ledger durability and checkpoints. */
  ledger?: {
    /** When a record counts as durable: `batch` (fsync every group commit; audit before ack), `interval`, `never`. Default `batch`. */
    fsync?: FsyncPolicy;
    /** fsync period under `interval`, ms (1–60,000). Default 100. */
    fsyncIntervalMs?: number;
    /**
     * How long records nobody waits for (QoS 0 publishes) gather in one batch before it is
     * written, ms (0–1,000). Default 5. A QoS 1 publish (audit before ack) ends the wait at once.
     */
    lingerMs?: number;
    /** Checkpoint after this many records (1–10,000,000). Default 10,000. */
    checkpointEveryRecords?: number;
    /** Checkpoint at least this often, ms (100–86,400,000). Default 10,000. */
    checkpointEveryMs?: number;
    /** Start a new segment file past this size, bytes (65,536–2^40). Default 67,108,864 (64 MiB). */
    segmentMaxBytes?: number;
  };
  /** Who may connect. Devices always authenticate with their key (proof-of-possession token). */
  auth?: {
    /** Accept clients that prove nothing, as identity `anonymous`. Default: true with no config file or no `auth` section; false once `auth` is written. */
    anonymous?: boolean;
    /** Device connect tokens (DESIGN §2.2). */
    token?: {
      /** Audience the token must name. Default `mqtt-witness`. */
      audience?: string;
      /** Accepted |token time − broker time|, ms (0–3,600,000). Default 30,000. */
      maxSkewMs?: number;
      /** How long a token nonce is remembered, ms; at least 2 × maxSkewMs so no fresh token can be replayed (1,000–86,400,000). Default 120,000. */
      nonceTtlMs?: number;
    };
    /** Username/password clients, identity `user:<username>`. Default none. */
    users?: Array<{
      /** MQTT username; unique. */
      username: string;
      /** `scrypt$N$r$p$<salt b64>$<key b64>`, from `hashPassword` (broker/config/password.ts). */
      passwordHash: string;
    }>;
    /** TLS client certificates, identity `cert:<identity>`. Default none. */
    certificates?: Array<{
      /** SHA-256 of the DER certificate, 64 hex digits, colons optional (`openssl x509 -fingerprint -sha256`). Unique. */
      fingerprint: string;
      /** Name after `cert:` (1–128 of `A-Z a-z 0-9 . _ @ -`). */
      identity: string;
    }>;
  };
  /** Access control (broker/acl/acl.ts has the full semantics). */
  acl?: {
    /** Enforce the rules. Default false: everything is allowed and recorded. */
    enabled?: boolean;
    /** Rules; deny beats allow. Default (when enabled): a device may publish and subscribe under `devices/{clientId}/#` only. `[]` denies everything. */
    rules?: Array<{
      /** `anonymous`, `*`, or `device:`/`user:`/`cert:` + name, optionally ending in `*`. */
      identity: string;
      /** Actions this rule allows (exactly one of allow / deny). */
      allow?: AclAction[];
      /** Actions this rule denies (exactly one of allow / deny). */
      deny?: AclAction[];
      /** Topic filters with templates `{clientId}`, `{identity}`, `{username}`. */
      topics: string[];
    }>;
  };
  /** Per-topic policies; the first whose `topic` filter matches decides. Default none. */
  policies?: Array<{ topic: string } & PolicyInput>;
  /** Policy of topics no policy matches, and of the fields a policy leaves out. Default audit metadata, envelope observe, unwrap false, mask none. */
  defaultPolicy?: PolicyInput;
}

export type HttpRole = 'auditor' | 'operator' | 'admin';
export const HTTP_ROLES: readonly HttpRole[] = ['auditor', 'operator', 'admin'];

export interface InfluxConfigInput {
  /** Base URL of the server, e.g. `http://127.0.0.1:8086`. Required. */
  url: string;
  /** `v2` (`/api/v2/write` through @influxdata/influxdb-client: InfluxDB 1.8+, 2.x, 3.x, Cloud, VictoriaMetrics) or `v1` (`/write`: InfluxDB before 1.8, e.g. Debian's 1.6.7). Default v2. */
  api?: 'v1' | 'v2';
  /** v1: database (created if missing). Required for v1. */
  database?: string;
  /** v1: retention policy. Default: the database's default. */
  retentionPolicy?: string;
  /** v1: credentials, if the server wants them. */
  username?: string;
  password?: string;
  /** v2: organisation and bucket (required for v2), and the API token (if the server wants one). */
  org?: string;
  bucket?: string;
  token?: string;
  /** Measurement name of the points. Default `witness`. */
  measurement?: string;
  /** Records per write. Default 1,000. */
  batchSize?: number;
  /** One write's time limit, ms. Default 10,000. */
  timeoutMs?: number;
  /** Longest wait between retries while the server is down, ms. Default 30,000. */
  backoffMaxMs?: number;
}

export interface InfluxConfig {
  url: string;
  api: 'v1' | 'v2';
  database?: string;
  retentionPolicy?: string;
  username?: string;
  password?: string;
  org?: string;
  bucket?: string;
  token?: string;
  measurement: string;
  batchSize: number;
  timeoutMs: number;
  backoffMaxMs: number;
}

export interface AlertsConfig {
  enabled: boolean;
  topic: string;
  webhook?: { url: string; timeoutMs: number };
  /** Only the fields written; the rest are the engine's defaults (broker/alerts/rules.ts DEFAULT_ALERT_RULES). */
  rules: Record<string, unknown>;
}

export interface ListenerConfigInput {
  /** `mqtt` (TCP), `mqtts` (TLS), `ws` (WebSocket), `wss` (WebSocket over TLS). Default `mqtt`. */
  type?: ListenerType;
  /** Interface to bind. Default `127.0.0.1` (loopback only). */
  host?: string;
  /** TCP port; 0 picks a free one. Default 1883 (mqtt), 8883 (mqtts), 8083 (ws), 8084 (wss). */
  port?: number;
  /** URL path, ws/wss only. Default `/mqtt`. */
  path?: string;
  /** Required for mqtts/wss, refused for mqtt/ws. Files relative to the config file. */
  tls?: {
    /** PEM certificate chain. Required. */
    cert: string;
    /** PEM private key. Required. */
    key: string;
    /** PEM CA bundle that client certificates must chain to. Default: none. */
    ca?: string;
    /** Ask clients for a certificate: `none`, `optional`, `required`. Default `none`. */
    clientCertificates?: ClientCertificates;
  };
}

export interface PolicyInput {
  /** `none`, `metadata`, `payload` (adds the body) or `full` (adds each delivery). */
  audit?: AuditLevel;
  /** `off`, `observe` (record the verdict, deliver anyway) or `enforce` (refuse what does not verify). */
  envelope?: EnvelopeMode;
  /** Deliver the payload inside a verified envelope. Needs envelope observe/enforce. */
  unwrap?: boolean;
  /** JSON paths (`$.a.b`, `$.arr[*].c`, `$.arr[0]`) whose values are pseudonymised in recorded bodies. */
  mask?: string[];
}

// ── resolved: complete, what the broker works with ──────────────────────────────────────────────

export interface ListenerConfig {
  type: ListenerType;
  host: string;
  port: number;
  /** ws/wss only. */
  path?: string;
  /** mqtts/wss only; absolute paths. */
  tls?: { cert: string; key: string; ca?: string; clientCertificates: ClientCertificates };
}

export interface AuthConfig {
  anonymous: boolean;
  token: { audience: string; maxSkewMs: number; nonceTtlMs: number };
  users: Array<{ username: string; passwordHash: string }>;
  /** Fingerprints normalised to 64 lowercase hex digits without colons. */
  certificates: Array<{ fingerprint: string; identity: string }>;
}

export interface ResolvedConfig {
  /** Absolute path of the config file; undefined when running on the defaults. */
  file?: string;
  /** SHA-256 (hex) of the config file's bytes, recorded in the broker's start record. */
  sha256?: string;
  /** Undefined: the data directory's own node id. */
  nodeId?: string;
  dataDir: string;
  /** Undefined: the default (cores − 1, at least 1). */
  verifyThreads?: number;
  listeners: ListenerConfig[];
  http: { host: string; port: number; metricsWithoutToken: boolean; tokens: Array<{ name: string; role: HttpRole; sha256: string }> };
  followers: { influx?: InfluxConfig };
  alerts: AlertsConfig;
  ledger: { fsync: FsyncPolicy; fsyncIntervalMs: number; lingerMs: number; checkpointEveryRecords: number; checkpointEveryMs: number; segmentMaxBytes: number };
  auth: AuthConfig;
  acl: AclConfig;
  /** In order; first match wins; each complete (defaultPolicy filled in). */
  policies: PolicyRule[];
  defaultPolicy: ResolvedPolicy;
}

/** Every default of the broker configuration. */
export const DEFAULT_CONFIG = deepFreeze({
  dataDir: './witness-data',
  listeners: [{ type: 'mqtt' as ListenerType, host: '127.0.0.1', port: 1883 }],
  /** Defaults of each listener's fields. */
  listener: {
    type: 'mqtt' as ListenerType,
    host: '127.0.0.1',
    ports: { mqtt: 1883, mqtts: 8883, ws: 8083, wss: 8084 } as Record<ListenerType, number>,
    path: '/mqtt',
    clientCertificates: 'none' as ClientCertificates,
  },
  http: { host: '127.0.0.1', port: 0, metricsWithoutToken: false },
  influx: { api: 'v2' as 'v1' | 'v2', measurement: 'witness', batchSize: 1000, timeoutMs: 10_000, backoffMaxMs: 30_000 },
  alerts: { enabled: true, topic: '$SYS/witness/alerts', webhookTimeoutMs: 5000 },
  ledger: { fsync: 'batch' as FsyncPolicy, fsyncIntervalMs: 100, lingerMs: 5, checkpointEveryRecords: 10_000, checkpointEveryMs: 10_000, segmentMaxBytes: 64 * 1024 * 1024 },
  auth: {
    /** With no config file, or a config file without `auth`. */
    anonymous: true,
    /** Once a config file has an `auth` section. */
    anonymousWithAuthSection: false,
    token: { audience: 'mqtt-witness', maxSkewMs: 30_000, nonceTtlMs: 120_000 },
  },
  acl: { enabled: false, rules: DEFAULT_ACL_RULES },
  defaultPolicy: DEFAULT_POLICY,
});

/** The configuration with no config file. A fresh copy: the caller may change it. */
export function defaultConfig(): ResolvedConfig {
  const d = DEFAULT_CONFIG;
  return {
    dataDir: d.dataDir,
    listeners: d.listeners.map((l) => ({ ...l })),
    http: { ...d.http, tokens: [] },
    followers: {},
    alerts: { enabled: d.alerts.enabled, topic: d.alerts.topic, rules: {} },
    ledger: { ...d.ledger },
    auth: { anonymous: d.auth.anonymous, token: { ...d.auth.token }, users: [], certificates: [] },
    acl: { enabled: d.acl.enabled, rules: d.acl.rules },
    policies: [],
    defaultPolicy: { ...d.defaultPolicy, mask: [...d.defaultPolicy.mask] },
  };
}

function deepFreeze<T>(v: T): T {
  if (typeof v === 'object' && v !== null && !Object.isFrozen(v)) {
    for (const x of Object.values(v)) deepFreeze(x);
    Object.freeze(v);
  }
  return v;
}
