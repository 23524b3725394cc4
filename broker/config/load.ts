/**
 * Reads and validates the broker configuration (YAML 1.2) into a ResolvedConfig.
 *
 * Every problem is collected, not just the first: YAML syntax errors, duplicate keys, unknown
 * keys (with a "did you mean"), wrong types, numbers out of range, bad enum values, bad topic
 * filters and identity patterns, missing TLS files, malformed password hashes and mask paths,
 * and cross-field mistakes (TLS on a plain listener, a policy shadowed by an earlier one, …).
 * Each is reported as `FILE:LINE:COL: path: what (hint)`; the thrown WitnessError
 * (WITNESS_ERR_CONFIG_INVALID) lists them one per line and carries them in `details.problems`.
 */
import { createHash } from 'node:crypto';
import { existsSync, readFileSync, statSync } from 'node:fs';
import { isIP } from 'node:net';
import { resolve } from 'node:path';
import { WitnessError } from '../../shared/errors.js';
import { checkIdentityPattern, checkRuleFilter, type AclAction, type AclRule } from '../acl/rules.js';
import { coversLevels, isValidFilter } from '../acl/topic.js';
import { checkMaskPath } from '../policy/mask.js';
import { AUDIT_LEVELS, ENVELOPE_MODES, type PolicyRule } from '../policy/policies.js';
import { DEFAULT_CONFIG, HTTP_ROLES, defaultConfig, type BrokerConfig, type InfluxConfig, type ListenerConfig, type ResolvedConfig } from './config.js';
import { checkPasswordHash } from './password.js';
import { BAD, bool, int, isBad, list, num, obj, oneOf, parseYamlFile, report, root, str, whereOf, type ConfigProblem, type Ctx, type V } from './yaml-schema.js';

export type { ConfigProblem } from './yaml-schema.js';

/** Loads the config file at `path`; with no path, the defaults. Throws WITNESS_ERR_IO or WITNESS_ERR_CONFIG_INVALID. */
export function loadConfig(path?: string): ResolvedConfig {
  if (path === undefined) return defaultConfig();
  const file = resolve(path);
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (e) {
    throw new WitnessError('WITNESS_ERR_IO', `cannot read the broker configuration ${file}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`, {
      cause: e,
      details: { file },
    });
  }
  return parseConfig(text, file);
}

/**
 * Parses config text. `file` names it in problems and anchors relative paths (its directory).
 * Throws WITNESS_ERR_CONFIG_INVALID listing every problem.
 */
export function parseConfig(text: string, file: string): ResolvedConfig {
  const { doc, c } = parseYamlFile(text, file, 'the configuration uses plain YAML values');
  const contents = doc.contents;
  // An empty file (or only comments) is an empty mapping: all defaults.
  const raw = contents === null ? {} : root(SCHEMA, contents, c);
  const config = raw === BAD ? undefined : resolveConfig(raw, c);
  if (c.problems.length > 0 || config === undefined) throw configError(file, c.problems);
  config.file = resolve(file);
  config.sha256 = createHash('sha256').update(text, 'utf8').digest('hex');
  return config;
}

function configError(file: string, problems: ConfigProblem[]): WitnessError {
  const sorted = [...problems].sort((a, b) => a.line - b.line || a.col - b.col);
  const lines = sorted.map(formatProblem);
  const n = sorted.length;
  return new WitnessError('WITNESS_ERR_CONFIG_INVALID', [`broker configuration ${file}: ${n} problem${n === 1 ? '' : 's'}`, ...lines].join('\n'), {
    details: { file, problems: sorted },
  });
}

/** `file:line:col: path: what (hint)` — the form editors and terminals link to the source. */
export function formatProblem(p: ConfigProblem): string {
  return `${p.file}:${p.line}:${p.col}: ${p.path ? `${p.path}: ` : ''}${p.message} (${p.hint})`;
}

// ── the schema ─────────────────────────────────────────────────────────────────────────────────

const problem = (message: string, hint: string): { message: string; hint: string } => ({ message, hint });

const hostname = str({
  check: (h) =>
    isIP(h) !== 0 || /^(?=.{1,253}$)[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$/.test(h)
      ? undefined
      : problem(`${JSON.stringify(h)} is not an IP address or host name`, 'use an address such as 127.0.0.1 (loopback only), 0.0.0.0 or ::, or a name such as localhost'),
});

const port = int(0, 65535, 'TCP port');

/** A file that must exist; resolved against the config file's directory. */
const existingFile: V<string> = (node, at, c) => {
  const v = str()(node, at, c);
  if (v === BAD) return BAD;
  const abs = resolve(c.dir, v);
  if (!existsSync(abs) || !statSync(abs).isFile()) {
    report(c, at, `file not found: ${abs}`, 'paths are relative to the directory of the config file');
    return BAD;
  }
  return abs;
};

const tls = obj(
  {
    cert: existingFile,
    key: existingFile,
    ca: existingFile,
    clientCertificates: oneOf(['none', 'optional', 'required']),
  },
  { required: ['cert', 'key'] },
);

const listener = obj(
  {
    type: oneOf(['mqtt', 'mqtts', 'ws', 'wss']),
    host: hostname,
    port,
    path: str({ check: (p) => (p.startsWith('/') ? undefined : problem(`path ${JSON.stringify(p)} must start with /`, 'e.g. /mqtt')) }),
    tls,
  },
  {
    refine: (l, c) => {
      if (isBad(l, 'type')) return;
      const type = l.type ?? DEFAULT_CONFIG.listener.type;
      const secure = type === 'mqtts' || type === 'wss';
      if (secure && l.tls === undefined && !isBad(l, 'tls')) {
        report(c, whereOf(l), `listener type ${type} needs tls`, 'add tls: { cert: FILE, key: FILE }');
      }
      if (!secure && l.tls !== undefined) {
        report(c, whereOf(l, 'tls'), `tls applies only to mqtts and wss listeners, this one is ${type}`, `set type: ${type === 'ws' ? 'wss' : 'mqtts'}, or remove tls`);
      }
      if (l.path !== undefined && type !== 'ws' && type !== 'wss') {
        report(c, whereOf(l, 'path'), `path applies only to ws and wss listeners, this one is ${type}`, 'remove path');
      }
    },
  },
);

const ledger = obj({
  fsync: oneOf(['batch', 'interval', 'never']),
  fsyncIntervalMs: int(1, 60_000, 'ms'),
  lingerMs: int(0, 1000, 'ms'),
  checkpointEveryRecords: int(1, 10_000_000, 'records'),
  checkpointEveryMs: int(100, 86_400_000, 'ms'),
  segmentMaxBytes: int(65_536, 2 ** 40, 'bytes'),
});

const token = obj(
  {
    audience: str(),
    maxSkewMs: int(0, 3_600_000, 'ms'),
    nonceTtlMs: int(1_000, 86_400_000, 'ms'),
  },
  {
    refine: (t, c) => {
      if (isBad(t, 'maxSkewMs') || isBad(t, 'nonceTtlMs')) return;
      const skew = t.maxSkewMs ?? DEFAULT_CONFIG.auth.token.maxSkewMs;
      const ttl = t.nonceTtlMs ?? DEFAULT_CONFIG.auth.token.nonceTtlMs;
      // A token is fresh for 2 × maxSkewMs (± around broker time): forgetting its nonce sooner
      // would let the same token be replayed while still fresh.
      if (ttl < 2 * skew) {
        report(c, whereOf(t, t.nonceTtlMs !== undefined ? 'nonceTtlMs' : 'maxSkewMs'), `nonceTtlMs (${ttl}) is shorter than 2 × maxSkewMs (${2 * skew})`, 'a nonce must be remembered as long as its token is fresh: raise nonceTtlMs or lower maxSkewMs');
      }
    },
  },
);

const user = obj(
  {
    username: str({
      check: (u) =>
        /[\u0000-\u001f\u007f]/.test(u) ? problem(`username ${JSON.stringify(u)} contains a control character`, 'MQTT usernames are printable UTF-8 [MQTT-1.5.3-2]') : undefined,
    }),
    passwordHash: str({
      check: (h) => {
        const bad = checkPasswordHash(h);
        return bad ? problem(`invalid password hash: ${bad}`, 'create one with hashPassword from broker/config/password.ts: scrypt$16384$8$1$SALT$KEY') : undefined;
      },
    }),
  },
  { required: ['username', 'passwordHash'] },
);

const FINGERPRINT = /^[0-9a-fA-F]{2}(:?[0-9a-fA-F]{2}){31}$/;
const certificate = obj(
  {
    fingerprint: str({
      check: (f) => (FINGERPRINT.test(f) ? undefined : problem('expected a SHA-256 fingerprint: 64 hex digits, colons optional', 'openssl x509 -in CERT -noout -fingerprint -sha256')),
    }),
    identity: str({
      check: (i) => (/^[A-Za-z0-9._@-]{1,128}$/.test(i) ? undefined : problem(`identity ${JSON.stringify(i)} has characters outside A-Z a-z 0-9 . _ @ -`, 'the client becomes cert:IDENTITY; keep it a plain name')),
    }),
  },
  { required: ['fingerprint', 'identity'] },
);

const auth = obj(
  {
    anonymous: bool(),
    token,
    users: list(user, {
      refine: (users, c) => duplicates(users, 'username', (u) => u.username, c),
    }),
    certificates: list(certificate, {
      refine: (certs, c) => duplicates(certs, 'fingerprint', (x) => (x.fingerprint === undefined ? undefined : normaliseFingerprint(x.fingerprint)), c),
    }),
  },
);

const action = oneOf<AclAction>(['publish', 'subscribe']);
const actions = list(action, { min: 1, unique: true });

const rule = obj(
  {
    identity: str({
      check: (p) => {
        const bad = checkIdentityPattern(p);
        return bad ? problem(bad.what, bad.hint) : undefined;
      },
    }),
    allow: actions,
    deny: actions,
    topics: list(
      str({
        check: (f) => {
          const bad = checkRuleFilter(f);
          return bad ? problem(bad.what, bad.hint) : undefined;
        },
      }),
      { min: 1, unique: true },
    ),
  },
  {
    required: ['identity', 'topics'],
    refine: (r, c) => {
      const has = (k: 'allow' | 'deny'): boolean => r[k] !== undefined || isBad(r, k);
      if (has('allow') && has('deny')) report(c, whereOf(r, 'deny'), 'a rule has either allow or deny, not both', 'split it into two rules');
      if (!has('allow') && !has('deny')) report(c, whereOf(r), 'a rule needs allow or deny', 'add allow: [publish, subscribe] or deny: [...]');
    },
  },
);

const acl = obj({ enabled: bool(), rules: list(rule) });

const policyFields = {
  audit: oneOf(AUDIT_LEVELS),
  envelope: oneOf(ENVELOPE_MODES),
  unwrap: bool(),
  mask: list(
    str({
      check: (p) => {
        const bad = checkMaskPath(p);
        return bad ? problem(bad, 'paths look like $.a.b, $.list[*].c or $.list[0]') : undefined;
      },
    }),
    { unique: true },
  ),
};

const policy = obj(
  {
    topic: str({
      check: (f) => (isValidFilter(f) ? undefined : problem(`${JSON.stringify(f)} is not a valid MQTT topic filter`, '+ and # occupy a whole level, # only last [MQTT-4.7.1-2]')),
    }),
    ...policyFields,
  },
  { required: ['topic'] },
);

const sha256Hex = str({ check: (h) => (/^[0-9a-fA-F]{64}$/.test(h) ? undefined : problem('expected 64 hex digits (the SHA-256 of the token)', 'make a token and its hash with: witness token create --name N --role R')) });

const httpToken = obj({ name: str({ check: (n) => (/^[A-Za-z0-9._@-]{1,64}$/.test(n) ? undefined : problem(`token name ${JSON.stringify(n)} is not 1–64 of A-Z a-z 0-9 . _ @ -`, 'it names the holder in the records of its accesses')) }), role: oneOf(HTTP_ROLES), sha256: sha256Hex }, { required: ['name', 'role', 'sha256'] });

const httpSection = obj(
  { host: hostname, port, metricsWithoutToken: bool(), tokens: list(httpToken) },
  { refine: (h, c) => duplicates(h.tokens ?? [], 'name', (t) => t.name, c) },
);

const httpUrl = str({
  check: (u) => {
    try {
      const p = new URL(u).protocol;
      return p === 'http:' || p === 'https:' ? undefined : problem(`${JSON.stringify(u)} is not an http(s) URL`, 'e.g. http://127.0.0.1:8086');
    } catch {
      return problem(`${JSON.stringify(u)} is not a URL`, 'e.g. http://127.0.0.1:8086');
    }
  },
});

const influx = obj(
  {
    url: httpUrl,
    api: oneOf(['v1', 'v2'] as const),
    database: str(),
    retentionPolicy: str(),
    username: str(),
    password: str(),
    org: str(),
    bucket: str(),
    token: str(),
    measurement: str({ check: (m) => (/^[A-Za-z0-9_.-]{1,128}$/.test(m) ? undefined : problem(`measurement ${JSON.stringify(m)} is not 1–128 of A-Z a-z 0-9 _ . -`, 'keep it plain: it is not escaped in queries')) }),
    batchSize: int(1, 100_000, 'records'),
    timeoutMs: int(100, 600_000, 'ms'),
    backoffMaxMs: int(100, 3_600_000, 'ms'),
  },
  {
    required: ['url'],
    refine: (x, c) => {
      const api = x.api ?? DEFAULT_CONFIG.influx.api;
      if (api === 'v1' && x.database === undefined && !isBad(x, 'database')) report(c, whereOf(x), 'api v1 needs a database', 'add database: NAME (created if missing)');
      if (api === 'v2') {
        for (const k of ['org', 'bucket'] as const) if (x[k] === undefined && !isBad(x, k)) report(c, whereOf(x), `api v2 needs ${k}`, `add ${k}: NAME (for VictoriaMetrics any name works)`);
      }
    },
  },
);

const window = { enabled: bool(), count: int(1, 1_000_000, 'events'), windowMs: int(100, 86_400_000, 'ms') };
const alerts = obj({
  enabled: bool(),
  topic: str({ check: (t) => (isValidFilter(t) && !/[+#]/.test(t) ? undefined : problem(`${JSON.stringify(t)} is not a valid MQTT topic name`, 'no + or # in a topic one publishes on')) }),
  webhook: obj({ url: httpUrl, timeoutMs: int(100, 600_000, 'ms') }, { required: ['url'] }),
  rules: obj({
    signatureFailures: obj(window),
    gaps: obj({ enabled: bool(), missing: int(1, 1_000_000, 'messages'), windowMs: int(100, 86_400_000, 'ms') }),
    clockSkew: obj({ enabled: bool(), boundMs: int(0, 86_400_000, 'ms') }),
    denials: obj(window),
    rateAnomaly: obj({ enabled: bool(), factor: num(1, 1_000_000, 'times'), minBaselineMessages: int(1, 1_000_000, 'messages'), windowMs: int(100, 86_400_000, 'ms'), baselineHalfLifeMs: int(1000, 604_800_000, 'ms') }),
    silence: obj({ enabled: bool(), factor: num(1, 1_000_000, 'times'), minIntervalMs: int(100, 86_400_000, 'ms') }),
    cooldownMs: int(0, 86_400_000, 'ms'),
  }),
});

const SCHEMA = obj({
  nodeId: str({
    check: (id) => (/^[A-Za-z0-9._-]{1,64}$/.test(id) ? undefined : problem(`node id ${JSON.stringify(id)} is not 1–64 of A-Z a-z 0-9 . _ -`, 'it names the broker in records and in the ledger origin')),
  }),
  dataDir: str(),
  verifyThreads: int(0, 256, 'threads'),
  listeners: list(listener, { min: 1 }),
  http: httpSection,
  followers: obj({ influx }),
  alerts,
  ledger,
  auth,
  acl,
  policies: list(policy),
  defaultPolicy: obj(policyFields),
});

type Raw = Exclude<ReturnType<typeof SCHEMA>, typeof BAD>;

// Compile-time: the documented file shape (BrokerConfig) and the schema stay in step — every
// written config fits the schema's output type, and both know the same top-level keys.
type Same<A, B> = [A] extends [B] ? ([B] extends [A] ? true : false) : false;
const schemaMatchesBrokerConfig: [(b: BrokerConfig) => Raw, Same<keyof BrokerConfig, keyof Raw>] = [(b) => b, true];
void schemaMatchesBrokerConfig;

// ── defaults and cross-field checks ─────────────────────────────────────────────────────────────

function resolveConfig(raw: Raw, c: Ctx): ResolvedConfig {
  const d = DEFAULT_CONFIG;
  const out = defaultConfig();
  if (raw.nodeId !== undefined) out.nodeId = raw.nodeId;
  if (raw.dataDir !== undefined) out.dataDir = resolve(c.dir, raw.dataDir);
  if (raw.verifyThreads !== undefined) out.verifyThreads = raw.verifyThreads;

  if (raw.listeners !== undefined) {
    out.listeners = raw.listeners.map((l): ListenerConfig => {
      const type = l.type ?? d.listener.type;
      const r: ListenerConfig = { type, host: l.host ?? d.listener.host, port: l.port ?? d.listener.ports[type] };
      if (type === 'ws' || type === 'wss') r.path = l.path ?? d.listener.path;
      if (l.tls?.cert !== undefined && l.tls.key !== undefined) {
        r.tls = { cert: l.tls.cert, key: l.tls.key, clientCertificates: l.tls.clientCertificates ?? d.listener.clientCertificates };
        if (l.tls.ca !== undefined) r.tls.ca = l.tls.ca;
      }
      return r;
    });
    // Two listeners on one address cannot both bind (port 0 picks a free port each time).
    const seen = new Map<string, string>();
    raw.listeners.forEach((l, i) => {
      const r = out.listeners[i]!;
      if (r.port === 0 || isBad(l, 'port') || isBad(l, 'host') || isBad(l, 'type')) return;
      const addr = `${r.host}:${r.port}`;
      const first = seen.get(addr);
      if (first !== undefined) report(c, whereOf(l, l.port !== undefined ? 'port' : undefined), `${first} already uses ${addr}`, 'give each listener its own port');
      else seen.set(addr, whereOf(l).path);
    });
  }

  if (raw.http) {
    out.http = {
      host: raw.http.host ?? d.http.host,
      port: raw.http.port ?? d.http.port,
      metricsWithoutToken: raw.http.metricsWithoutToken ?? d.http.metricsWithoutToken,
      tokens: (raw.http.tokens ?? []).flatMap((t) => (t.name !== undefined && t.role !== undefined && t.sha256 !== undefined ? [{ name: t.name, role: t.role, sha256: t.sha256.toLowerCase() }] : [])),
    };
    const clash = out.listeners.findIndex((l) => out.http.port !== 0 && l.port === out.http.port && l.host === out.http.host);
    if (clash >= 0 && !isBad(raw.http, 'port')) report(c, whereOf(raw.http, 'port'), `listener ${clash} already uses ${out.http.host}:${out.http.port}`, 'give the HTTP API its own port');
  }
  if (raw.ledger) out.ledger = { ...out.ledger, ...definedOnly(raw.ledger) };

  const ix = raw.followers?.influx;
  if (ix?.url !== undefined) {
    out.followers.influx = { ...d.influx, ...definedOnly(ix), url: ix.url } as InfluxConfig;
  }
  if (raw.alerts) {
    const a = raw.alerts;
    out.alerts = {
      enabled: a.enabled ?? d.alerts.enabled,
      topic: a.topic ?? d.alerts.topic,
      ...(a.webhook?.url !== undefined ? { webhook: { url: a.webhook.url, timeoutMs: a.webhook.timeoutMs ?? d.alerts.webhookTimeoutMs } } : {}),
      rules: JSON.parse(JSON.stringify(a.rules ?? {})) as Record<string, unknown>,
    };
  }

  if (raw.auth) {
    const a = raw.auth;
    out.auth = {
      // Writing an `auth` section means "authenticate": anonymous clients must be let in explicitly.
      anonymous: a.anonymous ?? d.auth.anonymousWithAuthSection,
      token: { ...out.auth.token, ...definedOnly(a.token ?? {}) },
      users: (a.users ?? []).flatMap((u) => (u.username !== undefined && u.passwordHash !== undefined ? [{ username: u.username, passwordHash: u.passwordHash }] : [])),
      certificates: (a.certificates ?? []).flatMap((x) =>
        x.fingerprint !== undefined && x.identity !== undefined ? [{ fingerprint: normaliseFingerprint(x.fingerprint), identity: x.identity }] : [],
      ),
    };
  }

  if (raw.acl) {
    out.acl = {
      enabled: raw.acl.enabled ?? d.acl.enabled,
      rules:
        raw.acl.rules === undefined
          ? d.acl.rules
          : raw.acl.rules.flatMap((r): AclRule[] => {
              const effect = r.allow !== undefined ? 'allow' : 'deny';
              const acts = r.allow ?? r.deny;
              if (r.identity === undefined || r.topics === undefined || acts === undefined || (r.allow !== undefined && r.deny !== undefined)) return [];
              return [{ identity: r.identity, effect, actions: acts, topics: r.topics }];
            }),
    };
  }

  if (raw.defaultPolicy) out.defaultPolicy = { ...out.defaultPolicy, ...definedOnly(raw.defaultPolicy) };
  const def = out.defaultPolicy;
  if (def.unwrap && def.envelope === 'off') report(c, whereOf(raw.defaultPolicy!, 'unwrap'), 'unwrap needs envelope observe or enforce', 'with envelope off nothing is verified to unwrap');

  if (raw.policies) {
    const kept: Array<{ rule: PolicyRule; levels: string[]; path: string }> = [];
    for (const p of raw.policies) {
      if (p.topic === undefined) continue;
      const merged: PolicyRule = { ...def, ...definedOnly({ audit: p.audit, envelope: p.envelope, unwrap: p.unwrap, mask: p.mask }), topic: p.topic } as PolicyRule;
      if (merged.unwrap && merged.envelope === 'off' && !isBad(p, 'unwrap') && !isBad(p, 'envelope')) {
        report(c, whereOf(p, p.unwrap !== undefined ? 'unwrap' : 'envelope'), 'unwrap needs envelope observe or enforce', 'with envelope off nothing is verified to unwrap');
      }
      // First match wins: a policy whose every topic an earlier one matches can never apply.
      const levels = p.topic.split('/');
      const shadow = kept.find((k) => coversLevels(k.levels, levels));
      if (shadow) {
        report(c, whereOf(p, 'topic'), `this policy can never apply: ${shadow.path} (${shadow.rule.topic}) matches every topic it matches`, 'first match wins: put the more specific policy first');
      }
      kept.push({ rule: merged, levels, path: whereOf(p).path });
    }
    out.policies = kept.map((k) => k.rule);
  }
  return out;
}

function duplicates<T extends object>(items: T[], key: string, get: (x: T) => string | undefined, c: Ctx): void {
  const seen = new Map<string, T>();
  for (const x of items) {
    const v = get(x);
    if (v === undefined) continue;
    const first = seen.get(v);
    if (first !== undefined) report(c, whereOf(x, key), `${key} ${JSON.stringify(v)} is listed twice (first at ${whereOf(first).path})`, `each ${key} may appear once`);
    else seen.set(v, x);
  }
}

function normaliseFingerprint(f: string): string {
  return f.replaceAll(':', '').toLowerCase();
}

function definedOnly<T extends object>(o: T): Partial<T> {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as Partial<T>;
}
