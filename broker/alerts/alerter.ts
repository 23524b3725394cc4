/**
 * Alerts in the broker: a ledger follower named `alerts` (persisted cursor: after a restart it
 * resumes where it stopped and does not fire old alerts again) feeds each record to the rule
 * engine (rules.ts). Each alert, in order:
 *   1. becomes a ledger record of its own (`e: "alert"`, written with plugin.record and awaited
 *      before the follower's cursor moves on: a crash may fire an alert twice, never lose it);
 *   2. is published by the broker on `topic` (default `$SYS/witness/alerts`), QoS 0, not retained,
 *      payload the alert as JSON;
 *   3. is posted to the webhook, if one is configured: in the background, with bounded retries,
 *      at most WEBHOOK_MAX_IN_FLIGHT posts at once and WEBHOOK_MAX_QUEUED waiting (beyond that
 *      the oldest waiting post is dropped, and counted). Delivery is at least once (an attempt
 *      that timed out may have arrived; a crash may fire an alert again): each post carries an
 *      `Idempotency-Key` header, alertId(alert), the same for the same alert on the same
 *      evidence, for the receiver to drop copies.
 * Failures of any of these are counted (stats()) and never stop the follower or the broker.
 *
 * Silence is evaluated every `tickMs` (an unref'd timer). While the follower catches up (after a
 * restart, or under a burst) the engine's clock is the broker time of the last record read, not
 * the wall clock, so a backlog does not look like silence.
 *
 * Stop the alerter before the broker closes its ledger (its alert records go to that ledger).
 */
import { createHash } from 'node:crypto';
import type { Ledger } from '../../shared/ledger/writer.js';
import { Follower, type FollowedRecord, type FollowerStatus } from '../followers/follower.js';
import { EVENTS, type EventType } from '../records.js';
import { AlertEngine, type Alert, type AlertRulesInput } from './rules.js';
import { postWebhook, type WebhookResult } from './webhook.js';

export const DEFAULT_ALERT_TOPIC = '$SYS/witness/alerts';
export const ALERTER_FOLLOWER_NAME = 'alerts';
const KEEP_ALERTS = 1000;
const WEBHOOK_MAX_IN_FLIGHT = 8;
const WEBHOOK_MAX_QUEUED = 1000;
/** How long stop() lets posts in flight finish before aborting them. */
const WEBHOOK_STOP_GRACE_MS = 2000;

/** What the alerter needs of the broker: structural, so tests may pass stand-ins. */
export interface AlerterBroker {
  plugin: { record(e: EventType, fields: Record<string, unknown>): Promise<void> };
  aedes: {
    publish(packet: { cmd: 'publish'; topic: string; payload: Buffer; qos: 0; retain: boolean; dup: boolean }, cb: (error?: Error) => void): void;
  };
}

export interface AlertWebhookConfig {
  url: string;
  /** Per attempt, ms. Default 5,000. */
  timeoutMs?: number;
  /** Retries after the first attempt. Default 3. */
  retries?: number;
  /** First wait between attempts, ms (doubled each time). Default 500. */
  backoffMs?: number;
  headers?: Record<string, string>;
}

export interface AlerterOptions extends AlerterBroker {
  dataDir: string;
  ledger: Ledger;
  /** Thresholds; anything not given is DEFAULT_ALERT_RULES. */
  rules?: AlertRulesInput;
  /** MQTT topic the alerts are published on. Default `$SYS/witness/alerts`. */
  topic?: string;
  webhook?: AlertWebhookConfig;
  /** Silence evaluation period, ms. Default 1,000. */
  tickMs?: number;
  /** Called with each alert once it is recorded and published. */
  onAlert?: (a: Alert) => void;
  /** Engine state bound (per table). Default 100,000. */
  maxSubjects?: number;
  /** Records per follower batch. Default 1,000. */
  batchMax?: number;
}

export interface AlerterStats {
  /** Alerts fired since start. */
  fired: number;
  byRule: Record<string, number>;
  /** Alert records that could not be written to the ledger. */
  recordErrors: number;
  /** Alerts that could not be published on the MQTT topic. */
  publishErrors: number;
  webhook: { sent: number; failed: number; dropped: number; inFlight: number; queued: number; lastError?: string };
  engine: ReturnType<AlertEngine['stats']>;
  follower: FollowerStatus;
}

export interface Alerter {
  /** Stops the follower (after the batch in hand), the tick, and the webhook posts (after a grace period). */
  stop(): Promise<void>;
  /** The last 1,000 alerts fired since start, newest first. */
  alerts(): Alert[];
  stats(): AlerterStats;
  /** Resolves once every record durable now has been evaluated and its alerts emitted (tests, shutdown). */
  drain(timeoutMs?: number): Promise<boolean>;
}

/** A stable id of an alert: the same rule, subject, time and evidence give the same id. */
export function alertId(a: Alert): string {
  return createHash('sha256').update(`${a.rule}\n${a.subject}\n${a.at}\n${a.firstIndex ?? ''}\n${a.lastIndex ?? ''}`).digest('base64url').slice(0, 22);
}

export function startAlerter(o: AlerterOptions): Alerter {
  const topic = o.topic ?? DEFAULT_ALERT_TOPIC;
  const engine = new AlertEngine(o.rules ?? {}, o.maxSubjects !== undefined ? { maxSubjects: o.maxSubjects } : {});
  const recent: Alert[] = [];
  const byRule: Record<string, number> = {};
  let fired = 0;
  let recordErrors = 0;
  let publishErrors = 0;
  const hook = { sent: 0, failed: 0, dropped: 0, inFlight: 0, lastError: undefined as string | undefined };
  const hookQueue: Alert[] = [];
  const inFlight = new Set<Promise<unknown>>();
  const abort = new AbortController();
  /** The next ledger index to evaluate: a batch handed again (after a failed attempt) is not evaluated twice. */
  let next = -1;
  /** Broker time of the latest record evaluated. */
  let ledgerTime = 0;
  /** Emissions in order (records, then ticks), one at a time. */
  let chain: Promise<void> = Promise.resolve();
  let stopped = false;

  const emit = async (a: Alert): Promise<void> => {
    fired++;
    byRule[a.rule] = (byRule[a.rule] ?? 0) + 1;
    recent.unshift(a);
    if (recent.length > KEEP_ALERTS) recent.length = KEEP_ALERTS;
    try {
      await o.plugin.record(EVENTS.alert, {
        rule: a.rule,
        subject: a.subject,
        severity: a.severity,
        message: a.message,
        at: a.at,
        ...(a.count !== undefined ? { count: a.count } : {}),
        ...(a.windowMs !== undefined ? { windowMs: a.windowMs } : {}),
        ...(a.firstIndex !== undefined ? { firstIndex: a.firstIndex } : {}),
        ...(a.lastIndex !== undefined ? { lastIndex: a.lastIndex } : {}),
        ...(a.details !== undefined ? { details: a.details } : {}),
      });
    } catch {
      recordErrors++;
    }
    try {
      await new Promise<void>((resolve, reject) => {
        o.aedes.publish({ cmd: 'publish', topic, payload: Buffer.from(JSON.stringify(a)), qos: 0, retain: false, dup: false }, (err) => (err ? reject(err) : resolve()));
      });
    } catch {
      publishErrors++;
    }
    if (o.webhook) enqueueWebhook(a);
    try {
      o.onAlert?.(a);
    } catch {
      // a listener's problem is not the alerter's
    }
  };

  const enqueueWebhook = (a: Alert): void => {
    hookQueue.push(a);
    while (hookQueue.length > WEBHOOK_MAX_QUEUED) {
      hookQueue.shift();
      hook.dropped++;
    }
    pumpWebhook();
  };
  const pumpWebhook = (): void => {
    const w = o.webhook;
    if (!w) return;
    while (!abort.signal.aborted && hook.inFlight < WEBHOOK_MAX_IN_FLIGHT && hookQueue.length > 0) {
      const a = hookQueue.shift()!;
      hook.inFlight++;
      const p = postWebhook(w.url, a, {
        ...(w.timeoutMs !== undefined ? { timeoutMs: w.timeoutMs } : {}),
        ...(w.retries !== undefined ? { retries: w.retries } : {}),
        ...(w.backoffMs !== undefined ? { backoffMs: w.backoffMs } : {}),
        headers: { 'idempotency-key': alertId(a), ...w.headers },
        signal: abort.signal,
      }).then((r: WebhookResult) => {
        hook.inFlight--;
        inFlight.delete(p);
        if (r.ok) hook.sent++;
        else {
          hook.failed++;
          hook.lastError = r.error;
        }
        pumpWebhook();
      });
      inFlight.add(p);
    }
  };

  const queue = (alerts: Alert[]): Promise<void> => {
    for (const a of alerts) chain = chain.then(() => emit(a));
    return chain;
  };

  const handle = async (batch: FollowedRecord[]): Promise<void> => {
    const alerts: Alert[] = [];
    for (const f of batch) {
      if (f.index < next) continue;
      next = f.index + 1;
      const t = f.record.t;
      if (typeof t === 'number' && t > ledgerTime) ledgerTime = t;
      if (f.record.i === undefined) f.record.i = f.index;
      alerts.push(...engine.observe(f.record));
    }
    // Never rejects: a failed emission is counted, and the batch must not be evaluated again.
    await queue(alerts);
  };

  const follower = new Follower({ name: ALERTER_FOLLOWER_NAME, dataDir: o.dataDir, ledger: o.ledger, handle, startAt: 'cursor', persistCursor: true, ...(o.batchMax !== undefined ? { batchMax: o.batchMax } : {}) });
  follower.start();

  const timer = setInterval(() => {
    if (stopped) return;
    // Caught up: wall time. Behind: the time of the ledger as read so far.
    const now = follower.status().lag === 0 ? Math.max(Date.now(), ledgerTime) : ledgerTime;
    if (now <= 0) return;
    const alerts = engine.tick(now);
    if (alerts.length > 0) void queue(alerts);
  }, o.tickMs ?? 1000);
  timer.unref();

  let stopping: Promise<void> | undefined;
  return {
    stop() {
      stopping ??= (async () => {
        stopped = true;
        clearInterval(timer);
        await follower.stop();
        await chain;
        if (inFlight.size > 0) {
          let t: NodeJS.Timeout | undefined;
          await Promise.race([Promise.allSettled([...inFlight]), new Promise((r) => (t = setTimeout(r, WEBHOOK_STOP_GRACE_MS)))]);
          clearTimeout(t);
        }
        abort.abort();
        hook.dropped += hookQueue.length;
        hookQueue.length = 0;
        await Promise.allSettled([...inFlight]);
      })();
      return stopping;
    },
    alerts() {
      return recent.slice();
    },
    stats() {
      return {
        fired,
        byRule: { ...byRule },
        recordErrors,
        publishErrors,
        webhook: { sent: hook.sent, failed: hook.failed, dropped: hook.dropped, inFlight: hook.inFlight, queued: hookQueue.length, ...(hook.lastError !== undefined ? { lastError: hook.lastError } : {}) },
        engine: engine.stats(),
        follower: follower.status(),
      };
    },
    async drain(timeoutMs = 10_000) {
      const ok = await follower.drain(timeoutMs);
      await chain;
      return ok;
    },
  };
}
