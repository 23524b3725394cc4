/**
 * Alert rules: a pure engine (no I/O, no clock of its own) fed the ledger's records in order.
 *
 * Every time window is measured with the records' own broker time `t`, so replaying the same
 * ledger gives the same alerts (silence is the exception: it is about time passing without
 * records, and is evaluated by `tick(now)`).
 *
 * Rules (defaults in DEFAULT_ALERT_RULES):
 * - signature-failures (per device `c`): publish records whose envelope verdict `env` is one of
 *   invalid, malformed, unknown-key, revoked, wrong-topic, chain-break; `count` of them within
 *   `windowMs` fire. Severity critical.
 * - gaps (per device): the sum of `gap` (messages missing) of publish records within `windowMs`
 *   reaches `missing`.
 * - clock-skew (per device, per message): verdict `clock-skew`, or the device time `dt` ahead of
 *   the broker time `t` by more than `boundMs`. Device time *behind* is not skew: it is what a
 *   message queued while offline looks like (the broker reports it as `late`).
 * - denials (per identity AND per remote address): refused connects (`connect` with `ok:false`),
 *   refused publishes (`acl:"deny"` or `ok:false`), refused subscriptions (`g:128`). The identity
 *   is the record's proven `id` (`user:bob`, `device:d1+…`); for refused connects, which are
 *   `unauthenticated`, it is the user name offered (`user:NAME`, unless it is the connect-token
 *   user name) or else the client id (`client:ID`); anonymous clients are told apart by client
 *   id too. The address is the IP part of `a`. Subjects: `identity:user:bob`,
 *   `identity:client:d1`, `address:127.0.0.1`.
 * - rate-anomaly (per device): the number of the device's publishes in the last `windowMs`
 *   (10 buckets of windowMs/10, so the window is 90–100 % of windowMs) reaches `factor` × what its
 *   own baseline predicts for that window (at least `factor` messages: a device that sends one
 *   message a minute does not trip it with two). The baseline is an exponentially weighted rate
 *   (half-life `baselineHalfLifeMs`, bias-corrected for a short history) of the messages that
 *   have left the window, so a burst never raises its own bar; it needs `minBaselineMessages`
 *   messages of history. Idle stretches (no message for longer than max(windowMs, 3 × the usual
 *   interval)) do not count into the baseline: a device that comes back after an outage at its
 *   usual rate is not a burst. Messages flagged `late` (a backlog delivered after an outage) are
 *   not counted. Wills and the broker's own publishes are not the device's traffic.
 * - silence (per device, on tick): a device that published regularly (at least 5 intervals, and
 *   the mean absolute deviation of its intervals at most half their EWMA) has sent nothing for
 *   more than `factor` × its usual interval (EWMA, α = 1/8) and at least `minIntervalMs`. A
 *   device whose last session ended with a clean DISCONNECT left and is not silent; one whose
 *   connection dropped (error, keepalive, closed) or that is still connected is. The clock
 *   restarts at the device's (re)connect and at a broker `start`. One alert per silence: the
 *   next one needs a publish in between.
 *
 * Each rule + subject fires at most once per `cooldownMs` (alerts held back meanwhile are counted
 * in the next alert's `details.suppressed`).
 *
 * Memory is bounded: per-device, per-identity, per-address and cooldown state live in four LRU
 * tables of at most `maxSubjects` entries each (default 100,000; the least recently seen is
 * evicted first). Separate tables, so that a flood of addresses cannot evict the devices'
 * baselines. Per-subject windows hold at most `count` (or `missing`) entries, the rate window 10
 * buckets: about 0.7 KB per device and 0.45 KB per identity or address with the defaults, so at
 * most ~170 MB when every table is full. `tick` also drops state that can no longer matter:
 * identities and addresses without a refusal in the window, expired cooldowns, devices that left
 * cleanly an hour ago, devices not watched for silence idle for a day.
 */

export interface AlertRulesConfig {
  signatureFailures: { enabled: boolean; count: number; windowMs: number };
  gaps: { enabled: boolean; missing: number; windowMs: number };
  clockSkew: { enabled: boolean; boundMs: number };
  denials: { enabled: boolean; count: number; windowMs: number };
  rateAnomaly: { enabled: boolean; factor: number; minBaselineMessages: number; windowMs: number; baselineHalfLifeMs: number };
  silence: { enabled: boolean; factor: number; minIntervalMs: number };
  cooldownMs: number;
}

export const DEFAULT_ALERT_RULES: AlertRulesConfig = Object.freeze({
  signatureFailures: Object.freeze({ enabled: true, count: 3, windowMs: 60_000 }),
  gaps: Object.freeze({ enabled: true, missing: 1, windowMs: 60_000 }),
  clockSkew: Object.freeze({ enabled: true, boundMs: 5_000 }),
  denials: Object.freeze({ enabled: true, count: 5, windowMs: 60_000 }),
  rateAnomaly: Object.freeze({ enabled: true, factor: 5, minBaselineMessages: 20, windowMs: 10_000, baselineHalfLifeMs: 300_000 }),
  silence: Object.freeze({ enabled: true, factor: 3, minIntervalMs: 2_000 }),
  cooldownMs: 60_000,
}) as AlertRulesConfig;

/** What a configuration may give: any rule, and any field of a rule (the rest are defaults). */
export type AlertRulesInput = {
  [K in keyof AlertRulesConfig]?: AlertRulesConfig[K] extends object ? Partial<AlertRulesConfig[K]> : AlertRulesConfig[K];
};

export type AlertRule = 'signature-failures' | 'gaps' | 'clock-skew' | 'denials' | 'rate-anomaly' | 'silence';
export const ALERT_RULES: readonly AlertRule[] = ['signature-failures', 'gaps', 'clock-skew', 'denials', 'rate-anomaly', 'silence'];

export interface Alert {
  rule: AlertRule;
  /** `device:sensor-1`, `address:127.0.0.1`, `identity:user:bob`, `identity:client:d1`. */
  subject: string;
  severity: 'warning' | 'critical';
  /** For people. */
  message: string;
  count?: number;
  windowMs?: number;
  /** Ledger indices of the first and last record of the evidence. */
  firstIndex?: number;
  lastIndex?: number;
  /** ms since the epoch: the triggering record's broker time, or the tick's time (silence). */
  at: number;
  details?: Record<string, unknown>;
}

export interface AlertEngineOptions {
  /** Entries per state table (devices, identities, addresses, cooldowns). Default 100,000. */
  maxSubjects?: number;
}

const SIG_VERDICTS = ['invalid', 'malformed', 'unknown-key', 'revoked', 'wrong-topic', 'chain-break'] as const;
export const SIGNATURE_FAILURE_VERDICTS: ReadonlySet<string> = new Set(SIG_VERDICTS);
const DENIAL_KINDS = ['refused connect', 'refused publish', 'refused subscription'] as const;

const DEFAULT_MAX_SUBJECTS = 100_000;
const RATE_BUCKETS = 10;
const RATE_IDLE_FACTOR = 3;
const SILENCE_MIN_SAMPLES = 5;
const SILENCE_ALPHA = 1 / 8;
const SILENCE_DEV_ALPHA = 1 / 4;
const SILENCE_MAX_IRREGULARITY = 0.5;
/** A device that left cleanly and sent nothing since is forgotten after this long. */
const LEFT_DEVICE_TTL_MS = 3_600_000;
/** A device that is not watched for silence (alerted already, or irregular) is forgotten after this long. */
const FORGOTTEN_DEVICE_TTL_MS = 86_400_000;
const TOKEN_USERNAME = 'witness-token/v1';

/** Merges an input over the defaults and checks every value; throws a RangeError naming the field. */
export function resolveAlertRules(input: AlertRulesInput = {}): AlertRulesConfig {
  const d = DEFAULT_ALERT_RULES;
  const c: AlertRulesConfig = {
    signatureFailures: { ...d.signatureFailures, ...input.signatureFailures },
    gaps: { ...d.gaps, ...input.gaps },
    clockSkew: { ...d.clockSkew, ...input.clockSkew },
    denials: { ...d.denials, ...input.denials },
    rateAnomaly: { ...d.rateAnomaly, ...input.rateAnomaly },
    silence: { ...d.silence, ...input.silence },
    cooldownMs: input.cooldownMs ?? d.cooldownMs,
  };
  const int = (path: string, v: number, min: number): void => {
    if (!Number.isInteger(v) || v < min) throw new RangeError(`alerts.${path} must be an integer ≥ ${min} (got ${String(v)})`);
  };
  const num = (path: string, v: number, min: number, exclusive = false): void => {
    if (typeof v !== 'number' || !Number.isFinite(v) || (exclusive ? v <= min : v < min)) throw new RangeError(`alerts.${path} must be a number ${exclusive ? '>' : '≥'} ${min} (got ${String(v)})`);
  };
  const bool = (path: string, v: boolean): void => {
    if (typeof v !== 'boolean') throw new RangeError(`alerts.${path} must be true or false (got ${String(v)})`);
  };
  for (const k of ['signatureFailures', 'gaps', 'clockSkew', 'denials', 'rateAnomaly', 'silence'] as const) bool(`${k}.enabled`, c[k].enabled);
  int('signatureFailures.count', c.signatureFailures.count, 1);
  num('signatureFailures.windowMs', c.signatureFailures.windowMs, 0, true);
  int('gaps.missing', c.gaps.missing, 1);
  num('gaps.windowMs', c.gaps.windowMs, 0, true);
  num('clockSkew.boundMs', c.clockSkew.boundMs, 0);
  int('denials.count', c.denials.count, 1);
  num('denials.windowMs', c.denials.windowMs, 0, true);
  num('rateAnomaly.factor', c.rateAnomaly.factor, 1, true);
  int('rateAnomaly.minBaselineMessages', c.rateAnomaly.minBaselineMessages, 1);
  num('rateAnomaly.windowMs', c.rateAnomaly.windowMs, RATE_BUCKETS);
  num('rateAnomaly.baselineHalfLifeMs', c.rateAnomaly.baselineHalfLifeMs, 0, true);
  num('silence.factor', c.silence.factor, 1, true);
  num('silence.minIntervalMs', c.silence.minIntervalMs, 0);
  num('cooldownMs', c.cooldownMs, 0);
  return c;
}

// ── small bounded structures ───────────────────────────────────────────────────────────────

/** A FIFO of (time, index, value) with a fixed capacity: pushing into a full one drops the oldest. */
class Ring {
  readonly #cap: number;
  /** Interleaved (t, i, v) triples in one plain array: one allocation per ring, small for the GC. */
  readonly #a: number[];
  #head = 0;
  size = 0;
  sum = 0;
  constructor(cap: number) {
    this.#cap = cap;
    this.#a = new Array<number>(cap * 3).fill(0);
  }
  push(t: number, i: number, v = 1): void {
    if (this.size === this.#cap) this.shift();
    const at = ((this.#head + this.size) % this.#cap) * 3;
    this.#a[at] = t;
    this.#a[at + 1] = i;
    this.#a[at + 2] = v;
    this.size++;
    this.sum += v;
  }
  shift(): void {
    if (this.size === 0) return;
    this.sum -= this.#a[this.#head * 3 + 2]!;
    this.#head = (this.#head + 1) % this.#cap;
    this.size--;
    if (this.size === 0) this.sum = 0;
  }
  get oldestT(): number {
    return this.#a[this.#head * 3]!;
  }
  get oldestI(): number {
    return this.#a[this.#head * 3 + 1]!;
  }
  get oldestV(): number {
    return this.#a[this.#head * 3 + 2]!;
  }
  /** Values, oldest first. */
  values(): number[] {
    const out: number[] = [];
    for (let k = 0; k < this.size; k++) out.push(this.#a[((this.#head + k) % this.#cap) * 3 + 2]!);
    return out;
  }
  /** Drops entries at or before `cutoff` (older than the window). */
  expire(cutoff: number): void {
    while (this.size > 0 && this.oldestT <= cutoff) this.shift();
  }
}

/**
 * A least-recently-used table: a Map for lookup plus a doubly linked list for recency, so touching
 * and evicting are O(1) (deleting a Map's oldest entries over and over is not, in V8).
 */
interface LruNode<V> {
  key: string;
  value: V;
  prev: LruNode<V> | undefined;
  next: LruNode<V> | undefined;
}
class Lru<V> {
  readonly #map = new Map<string, LruNode<V>>();
  #head: LruNode<V> | undefined; // least recently used
  #tail: LruNode<V> | undefined; // most recently used
  constructor(readonly cap: number) {}
  get(k: string): V | undefined {
    const n = this.#map.get(k);
    if (!n) return undefined;
    if (n !== this.#tail) {
      this.#unlink(n);
      this.#append(n);
    }
    return n.value;
  }
  peek(k: string): V | undefined {
    return this.#map.get(k)?.value;
  }
  set(k: string, v: V): void {
    const n = this.#map.get(k);
    if (n) {
      n.value = v;
      this.get(k);
      return;
    }
    const node: LruNode<V> = { key: k, value: v, prev: undefined, next: undefined };
    this.#map.set(k, node);
    this.#append(node);
    while (this.#map.size > this.cap && this.#head) this.delete(this.#head.key);
  }
  getOrCreate(k: string, make: () => V): V {
    let v = this.get(k);
    if (v === undefined) {
      v = make();
      this.set(k, v);
    }
    return v;
  }
  delete(k: string): void {
    const n = this.#map.get(k);
    if (!n) return;
    this.#unlink(n);
    this.#map.delete(k);
  }
  get size(): number {
    return this.#map.size;
  }
  /** Least recently used first; deleting the current entry while iterating is safe. */
  *entries(): IterableIterator<[string, V]> {
    let n = this.#head;
    while (n) {
      const next = n.next;
      yield [n.key, n.value];
      n = next;
    }
  }
  #unlink(n: LruNode<V>): void {
    if (n.prev) n.prev.next = n.next;
    else this.#head = n.next;
    if (n.next) n.next.prev = n.prev;
    else this.#tail = n.prev;
    n.prev = n.next = undefined;
  }
  #append(n: LruNode<V>): void {
    n.prev = this.#tail;
    n.next = undefined;
    if (this.#tail) this.#tail.next = n;
    else this.#head = n;
    this.#tail = n;
  }
}

// ── per-subject state ──────────────────────────────────────────────────────────────────────

interface RateState {
  /**
   * Buckets lastK−9 … lastK: bucket k is at slot k mod 10, its count at [2·slot], the ledger index
   * of its first message at [2·slot + 1].
   */
  b: number[];
  lastK: number;
  lastT: number;
  /** Baseline: decayed message count, decayed exposure (ms), undecayed messages, exposure accounted up to. */
  s: number;
  w: number;
  hist: number;
  bEnd: number;
}

interface SilenceState {
  /** Last publish time (or -Infinity). */
  lastPub: number;
  /** The silence clock starts at max(lastPub, since): a (re)connect or broker start resets it. */
  since: number;
  mean: number;
  dev: number;
  samples: number;
  /** A sample across a reconnect is not an interval. */
  reconnected: boolean;
  /** connected | dropped (still counts) | left (clean disconnect). */
  conn: 'connected' | 'dropped' | 'left';
  session: string | undefined;
  alerted: boolean;
  lastIndex: number;
}

interface DeviceState {
  /** Ledger indices and times of failures; the value is the verdict's position in SIG_VERDICTS. */
  sig?: Ring;
  gaps?: Ring;
  rate?: RateState;
  silence?: SilenceState;
  lastSeen: number;
}

interface DenialState {
  /** The value is the kind's position in DENIAL_KINDS. */
  ring: Ring;
  lastSeen: number;
}

interface Cooldown {
  until: number;
  suppressed: number;
}

type Rec = Record<string, unknown>;

// ── the engine ─────────────────────────────────────────────────────────────────────────────

export class AlertEngine {
  readonly config: AlertRulesConfig;
  readonly #devices: Lru<DeviceState>;
  readonly #identities: Lru<DenialState>;
  readonly #addresses: Lru<DenialState>;
  readonly #cooldowns: Lru<Cooldown>;
  #lastT = 0;
  readonly #lambda: number;
  readonly #bucketMs: number;

  constructor(cfg: AlertRulesInput = {}, opts: AlertEngineOptions = {}) {
    this.config = resolveAlertRules(cfg);
    const max = opts.maxSubjects ?? DEFAULT_MAX_SUBJECTS;
    if (!Number.isInteger(max) || max < 1) throw new RangeError(`maxSubjects must be a positive integer (got ${String(max)})`);
    this.#devices = new Lru(max);
    this.#identities = new Lru(max);
    this.#addresses = new Lru(max);
    this.#cooldowns = new Lru(max);
    this.#lambda = Math.LN2 / this.config.rateAnomaly.baselineHalfLifeMs;
    this.#bucketMs = this.config.rateAnomaly.windowMs / RATE_BUCKETS;
  }

  /** One ledger record (parsed JSON, with `i`, `e`, `t`, …): the alerts it fires. */
  observe(record: Rec): Alert[] {
    const e = record.e;
    if (e === 'alert' || typeof e !== 'string') return [];
    const t = typeof record.t === 'number' && Number.isFinite(record.t) ? record.t : this.#lastT;
    if (t > this.#lastT) this.#lastT = t;
    const i = typeof record.i === 'number' ? record.i : -1;
    const out: Alert[] = [];
    switch (e) {
      case 'publish':
        this.#publish(record, t, i, out);
        break;
      case 'connect':
        if (record.ok === false) this.#denial(record, t, i, 'connect', out);
        else this.#connected(record, t);
        break;
      case 'subscribe':
        if (record.g === 128) this.#denial(record, t, i, 'subscribe', out);
        break;
      case 'disconnect':
        this.#disconnected(record, t);
        break;
      case 'start':
        this.#brokerStarted(t);
        break;
    }
    return out;
  }

  /** Time passes: the silence rule, and housekeeping. */
  tick(now: number): Alert[] {
    const out: Alert[] = [];
    const sc = this.config.silence;
    for (const [c, d] of this.#devices.entries()) {
      const s = d.silence;
      if (!s) {
        if (this.#idleDevice(d, now)) this.#devices.delete(c);
        continue;
      }
      const idleFor = now - Math.max(s.lastPub, s.since, d.lastSeen);
      if (s.conn === 'left' || s.alerted || s.samples < SILENCE_MIN_SAMPLES) {
        // Nothing left to watch for: forget it once idle long (a returning device starts afresh).
        if (idleFor > (s.conn === 'left' ? LEFT_DEVICE_TTL_MS : FORGOTTEN_DEVICE_TTL_MS)) {
          this.#devices.delete(c);
          continue;
        }
      }
      if (s.conn === 'left') continue;
      if (!sc.enabled || s.alerted || s.samples < SILENCE_MIN_SAMPLES) continue;
      if (s.dev > SILENCE_MAX_IRREGULARITY * s.mean) continue;
      const limit = Math.max(sc.factor * s.mean, sc.minIntervalMs);
      const from = Math.max(s.lastPub, s.since);
      const quiet = now - from;
      if (quiet <= limit) continue;
      s.alerted = true;
      const a = this.#fire(out, now, {
        rule: 'silence',
        subject: `device:${c}`,
        severity: 'warning',
        message: `device ${c} has been silent for ${secs(quiet)} (usually every ${secs(s.mean)}; limit ${secs(limit)}${s.conn === 'dropped' ? '; its connection dropped' : ''})`,
        windowMs: Math.round(limit),
        at: now,
        details: { silentMs: Math.round(quiet), usualIntervalMs: Math.round(s.mean), limitMs: Math.round(limit), connection: s.conn, lastPublishAt: Number.isFinite(s.lastPub) ? s.lastPub : null },
      });
      if (a && s.lastIndex >= 0) a.lastIndex = s.lastIndex;
    }
    // Housekeeping: windows that expired hold nothing.
    const dw = this.config.denials.windowMs;
    for (const table of [this.#identities, this.#addresses]) {
      for (const [k, v] of table.entries()) if (now - v.lastSeen > dw) table.delete(k);
    }
    for (const [k, v] of this.#cooldowns.entries()) if (v.until <= now && v.suppressed === 0) this.#cooldowns.delete(k);
    return out;
  }

  /** Sizes of the state tables (each bounded by maxSubjects). */
  stats(): { subjects: number; devices: number; identities: number; addresses: number; cooldowns: number } {
    const devices = this.#devices.size;
    const identities = this.#identities.size;
    const addresses = this.#addresses.size;
    return { subjects: devices + identities + addresses, devices, identities, addresses, cooldowns: this.#cooldowns.size };
  }

  // ── rules ────────────────────────────────────────────────────────────────────────────────

  #publish(r: Rec, t: number, i: number, out: Alert[]): void {
    const c = typeof r.c === 'string' && r.c !== '' ? r.c : undefined;
    const actor = r.actor;
    const own = actor === 'broker' || r.id === 'broker';
    const env = typeof r.env === 'string' ? r.env : undefined;
    const cfg = this.config;

    if (r.acl === 'deny' || r.ok === false) this.#denial(r, t, i, 'publish', out);
    if (!c || own) return;

    if (env && cfg.signatureFailures.enabled && SIGNATURE_FAILURE_VERDICTS.has(env)) {
      const d = this.#device(c, t);
      const sc = cfg.signatureFailures;
      d.sig ??= new Ring(sc.count);
      d.sig.expire(t - sc.windowMs);
      d.sig.push(t, i, SIG_VERDICTS.indexOf(env as (typeof SIG_VERDICTS)[number]));
      if (d.sig.size >= sc.count) {
        const verdicts = tally(d.sig.values(), SIG_VERDICTS);
        this.#fire(out, t, {
          rule: 'signature-failures',
          subject: `device:${c}`,
          severity: 'critical',
          message: `${d.sig.size} envelope signature failure${d.sig.size === 1 ? '' : 's'} from device ${c} within ${secs(sc.windowMs)} (${Object.entries(verdicts).map(([k, n]) => `${k} ×${n}`).join(', ')})`,
          count: d.sig.size,
          windowMs: sc.windowMs,
          firstIndex: d.sig.oldestI,
          lastIndex: i,
          at: t,
          details: { verdicts, lastVerdict: env, ...(typeof r.topic === 'string' ? { topic: r.topic } : {}), ...(typeof r.kid === 'string' ? { kid: r.kid } : {}) },
        });
      }
    }

    if (cfg.gaps.enabled && typeof r.gap === 'number' && r.gap > 0) {
      const d = this.#device(c, t);
      const gc = cfg.gaps;
      d.gaps ??= new Ring(gc.missing);
      d.gaps.expire(t - gc.windowMs);
      d.gaps.push(t, i, r.gap);
      // Keep only what is needed to reach the threshold.
      while (d.gaps.size > 1 && d.gaps.sum - d.gaps.oldestV >= gc.missing) d.gaps.shift();
      if (d.gaps.sum >= gc.missing) {
        const missing = d.gaps.sum;
        this.#fire(out, t, {
          rule: 'gaps',
          subject: `device:${c}`,
          severity: 'warning',
          message: `device ${c}: ${missing} message${missing === 1 ? '' : 's'} missing from its sequence within ${secs(gc.windowMs)}`,
          count: missing,
          windowMs: gc.windowMs,
          firstIndex: d.gaps.oldestI,
          lastIndex: i,
          at: t,
          details: { missing, records: d.gaps.size, ...(typeof r.seq === 'number' ? { seq: r.seq } : {}) },
        });
      }
    }

    if (cfg.clockSkew.enabled) {
      const ahead = typeof r.dt === 'number' ? r.dt - t : undefined;
      if (env === 'clock-skew' || (ahead !== undefined && ahead > cfg.clockSkew.boundMs)) {
        this.#device(c, t);
        this.#fire(out, t, {
          rule: 'clock-skew',
          subject: `device:${c}`,
          severity: 'warning',
          message: `device ${c}'s clock is ${ahead !== undefined ? `${secs(ahead)} ahead of the broker's` : "ahead of the broker's"}${env === 'clock-skew' ? ' (verdict clock-skew)' : ''} (bound ${secs(cfg.clockSkew.boundMs)})`,
          count: 1,
          firstIndex: i,
          lastIndex: i,
          at: t,
          details: { ...(ahead !== undefined ? { aheadMs: ahead, dt: r.dt } : {}), t, ...(env ? { env } : {}), ...(typeof r.du === 'number' ? { du: r.du } : {}), boundMs: cfg.clockSkew.boundMs },
        });
      }
    }

    if (actor === 'will') return; // the broker's message on behalf of a dead client
    const late = typeof r.late === 'number' && r.late > 0;
    if (cfg.rateAnomaly.enabled && !late) this.#rate(c, t, i, out);
    if (cfg.silence.enabled) this.#published(c, t, i, late);
  }

  #denial(r: Rec, t: number, i: number, kind: 'connect' | 'publish' | 'subscribe', out: Alert[]): void {
    const cfg = this.config.denials;
    if (!cfg.enabled || r.id === 'broker' || r.actor === 'broker') return;
    const identity = identityOf(r, kind);
    const address = typeof r.a === 'string' ? ipOf(r.a) : undefined;
    const code = kind === 'connect' ? 0 : kind === 'publish' ? 1 : 2;
    const detail = kind === 'connect' ? (typeof r.why === 'string' ? r.why : 'refused') : kind === 'publish' ? (r.acl === 'deny' ? 'acl deny' : `envelope ${String(r.env)}`) : 'acl deny';
    const targets: Array<[Lru<DenialState>, string, string]> = [];
    if (identity) targets.push([this.#identities, identity, `identity:${identity}`]);
    if (address) targets.push([this.#addresses, address, `address:${address}`]);
    for (const [table, key, subject] of targets) {
      const s = table.getOrCreate(key, () => ({ ring: new Ring(cfg.count), lastSeen: t }));
      s.ring.expire(t - cfg.windowMs);
      s.ring.push(t, i, code);
      s.lastSeen = Math.max(s.lastSeen, t);
      if (s.ring.size >= cfg.count) {
        const kinds = tally(s.ring.values(), DENIAL_KINDS);
        this.#fire(out, t, {
          rule: 'denials',
          subject,
          severity: 'warning',
          message: `${s.ring.size} refusals for ${subject.replace(':', ' ')} within ${secs(cfg.windowMs)} (${Object.entries(kinds).map(([k, n]) => `${k} ×${n}`).join(', ')}; last: ${detail})`,
          count: s.ring.size,
          windowMs: cfg.windowMs,
          firstIndex: s.ring.oldestI,
          lastIndex: i,
          at: t,
          details: { kinds, last: detail, ...(identity ? { identity } : {}), ...(address ? { address } : {}), ...(typeof r.c === 'string' ? { clientId: r.c } : {}) },
        });
      }
    }
  }

  #rate(c: string, t: number, i: number, out: Alert[]): void {
    const cfg = this.config.rateAnomaly;
    const d = this.#device(c, t);
    const B = this.#bucketMs;
    let k = Math.floor(t / B);
    let r = d.rate;
    if (!r) r = d.rate = { b: new Array<number>(RATE_BUCKETS * 2).fill(0), lastK: k, lastT: t, s: 0, w: 0, hist: 0, bEnd: k * B };
    if (k < r.lastK) k = r.lastK; // time went back: count it in the newest bucket
    const usual = r.s > 0 && r.w > 0 ? r.w / r.s : Infinity;
    const idle = t - r.lastT > Math.max(cfg.windowMs, RATE_IDLE_FACTOR * usual);
    if (idle) {
      // Fold the old window in, accounting exposure only up to the end of its last bucket; the
      // idle time itself is not exposure.
      this.#fold(r, r.lastK);
      this.#expose(r, (r.lastK + 1) * B);
      r.bEnd = Math.max(r.bEnd, k * B);
    } else {
      this.#fold(r, Math.min(r.lastK, k - RATE_BUCKETS));
      this.#expose(r, (k - RATE_BUCKETS + 1) * B);
    }
    const slot = (k % RATE_BUCKETS) * 2;
    if (r.b[slot] === 0) r.b[slot + 1] = i;
    r.b[slot]! += 1;
    r.lastK = k;
    r.lastT = Math.max(r.lastT, t);

    let inWindow = 0;
    let first = i;
    for (let j = 0; j < RATE_BUCKETS * 2; j += 2) {
      if (r.b[j]! > 0) {
        inWindow += r.b[j]!;
        if (r.b[j + 1]! < first) first = r.b[j + 1]!;
      }
    }
    if (r.hist < cfg.minBaselineMessages || r.w <= 0) return;
    const baselinePerMs = r.s / r.w;
    const expected = baselinePerMs * cfg.windowMs;
    const threshold = cfg.factor * Math.max(expected, 1);
    if (inWindow < threshold) return;
    this.#fire(out, t, {
      rule: 'rate-anomaly',
      subject: `device:${c}`,
      severity: 'warning',
      message: `device ${c} sent ${inWindow} messages in ${secs(cfg.windowMs)}, ${(inWindow / Math.max(expected, 1e-9)).toFixed(1)}× its usual rate (${perSec(baselinePerMs)}/s)`,
      count: inWindow,
      windowMs: cfg.windowMs,
      firstIndex: first,
      lastIndex: i,
      at: t,
      details: { ratePerSec: round3((inWindow / cfg.windowMs) * 1000), baselinePerSec: round3(baselinePerMs * 1000), expected: round3(expected), factor: cfg.factor, baselineMessages: r.hist },
    });
  }

  /** Moves the window's buckets numbered ≤ `upTo` into the baseline, oldest first (decayed in time order). */
  #fold(r: RateState, upTo: number): void {
    const B = this.#bucketMs;
    for (let no = r.lastK - RATE_BUCKETS + 1; no <= upTo; no++) {
      const slot = (((no % RATE_BUCKETS) + RATE_BUCKETS) % RATE_BUCKETS) * 2;
      const n = r.b[slot]!;
      if (n === 0) continue;
      this.#expose(r, (no + 1) * B);
      r.s += n;
      r.hist += n;
      r.b[slot] = 0;
    }
  }

  #expose(r: RateState, to: number): void {
    const dt = to - r.bEnd;
    if (dt <= 0) return;
    const decay = Math.exp(-this.#lambda * dt);
    r.s *= decay;
    r.w = r.w * decay + (1 - decay) / this.#lambda;
    r.bEnd = to;
  }

  #published(c: string, t: number, i: number, late: boolean): void {
    const d = this.#device(c, t);
    const s = (d.silence ??= newSilence());
    const sc = this.config.silence;
    if (Number.isFinite(s.lastPub) && !s.reconnected && !late && t > s.lastPub) {
      let x = t - s.lastPub;
      if (s.samples === 0) {
        s.mean = x;
        s.dev = x / 4;
      } else {
        x = Math.min(x, Math.max(sc.factor * s.mean, sc.minIntervalMs)); // a silence is not an interval
        s.dev += SILENCE_DEV_ALPHA * (Math.abs(x - s.mean) - s.dev);
        s.mean += SILENCE_ALPHA * (x - s.mean);
      }
      s.samples++;
    }
    if (t >= s.lastPub || !Number.isFinite(s.lastPub)) s.lastPub = t;
    s.reconnected = false;
    s.alerted = false;
    s.lastIndex = i;
    if (s.conn === 'left') s.conn = 'connected'; // publishing: it is back (a will, or a missed connect)
  }

  #connected(r: Rec, t: number): void {
    const c = typeof r.c === 'string' && r.c !== '' ? r.c : undefined;
    if (!c || r.id === 'broker') return;
    const d = this.#devices.peek(c);
    if (!d) return; // nothing known: its first publish creates its state
    this.#device(c, t);
    const s = (d.silence ??= newSilence());
    s.conn = 'connected';
    s.session = typeof r.s === 'string' ? r.s : undefined;
    s.since = Math.max(s.since, t);
    s.reconnected = true;
  }

  #disconnected(r: Rec, t: number): void {
    const c = typeof r.c === 'string' && r.c !== '' ? r.c : undefined;
    if (!c) return;
    const d = this.#devices.peek(c);
    const s = d?.silence;
    if (!d || !s) return;
    // Only the current session's end counts (a taken-over session ends after its successor began).
    if (s.session !== undefined && typeof r.s === 'string' && r.s !== s.session) return;
    d.lastSeen = Math.max(d.lastSeen, t);
    if (r.why === 'clean') s.conn = 'left';
    else if (r.why !== 'takeover') s.conn = 'dropped';
  }

  #brokerStarted(t: number): void {
    // The broker was down: every device gets a fresh interval to come back.
    for (const [, d] of this.#devices.entries()) {
      const s = d.silence;
      if (s && !s.alerted) {
        s.since = Math.max(s.since, t);
        s.reconnected = true;
      }
    }
  }

  // ── helpers ──────────────────────────────────────────────────────────────────────────────

  #device(c: string, t: number): DeviceState {
    const d = this.#devices.getOrCreate(c, () => ({ lastSeen: t }));
    if (t > d.lastSeen) d.lastSeen = t;
    return d;
  }

  /** State of a device that holds no silence tracking and whose windows have all expired. */
  #idleDevice(d: DeviceState, now: number): boolean {
    const cfg = this.config;
    const keep = Math.max(cfg.signatureFailures.windowMs, cfg.gaps.windowMs, d.rate ? LEFT_DEVICE_TTL_MS : 0);
    return now - d.lastSeen > keep;
  }

  /** Emits the alert unless the rule + subject is cooling down; returns it when emitted. */
  #fire(out: Alert[], t: number, a: Alert): Alert | undefined {
    const key = `${a.rule}|${a.subject}`;
    const cd = this.#cooldowns.get(key);
    if (cd && t < cd.until) {
      cd.suppressed++;
      return undefined;
    }
    if (cd && cd.suppressed > 0) a.details = { ...a.details, suppressed: cd.suppressed };
    this.#cooldowns.set(key, { until: t + this.config.cooldownMs, suppressed: 0 });
    out.push(a);
    return a;
  }
}

function tally(codes: number[], names: readonly string[]): Record<string, number> {
  const out: Record<string, number> = {};
  for (const k of codes) {
    const n = names[k] ?? 'other';
    out[n] = (out[n] ?? 0) + 1;
  }
  return out;
}

function newSilence(): SilenceState {
  return { lastPub: -Infinity, since: -Infinity, mean: 0, dev: 0, samples: 0, reconnected: false, conn: 'connected', session: undefined, alerted: false, lastIndex: -1 };
}

/** The identity a denial is held against (see the module comment). */
function identityOf(r: Rec, kind: 'connect' | 'publish' | 'subscribe'): string | undefined {
  const id = typeof r.id === 'string' ? r.id : undefined;
  const c = typeof r.c === 'string' && r.c !== '' ? r.c : undefined;
  if (kind === 'connect' && typeof r.user === 'string' && r.user !== '' && r.user !== TOKEN_USERNAME) return `user:${r.user}`;
  if (id && id !== 'unauthenticated' && id !== 'unknown' && id !== 'anonymous') return id;
  return c ? `client:${c}` : undefined;
}

/** The IP part of `ip:port` or `[v6]:port`. */
export function ipOf(a: string): string {
  if (a.startsWith('[')) {
    const end = a.indexOf(']');
    return end > 0 ? a.slice(1, end) : a;
  }
  const colon = a.lastIndexOf(':');
  if (colon > 0 && a.indexOf(':') === colon) return a.slice(0, colon);
  return a; // a bare address (IPv6 without brackets has several colons)
}

function secs(ms: number): string {
  if (!Number.isFinite(ms)) return '∞';
  const s = ms / 1000;
  return s >= 10 || Number.isInteger(s) ? `${Math.round(s)} s` : `${s.toFixed(1)} s`;
}

function perSec(perMs: number): string {
  return String(round3(perMs * 1000));
}

function round3(x: number): number {
  return Math.round(x * 1000) / 1000;
}
