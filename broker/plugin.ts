/**
 * The Witness plugin for aedes 1.2: `attach(aedes, options)` wraps the broker's hooks and listens
 * to its events so that every connect (and refusal), subscribe, unsubscribe, publish, delivery,
 * keepalive timeout, error and disconnect becomes an audit record in the ledger.
 *
 * aedes facts that shape it (DESIGN §2.5):
 * - The QoS 1 PUBACK is written before `published` runs, so a publish is recorded (and, for
 *   QoS > 0, made durable) inside `authorizePublish`, which runs before any ack: audit before ack.
 * - Verdicts are scattered: `connackSent` carries the final CONNACK code (refusals too);
 *   `authenticate` knows why; a refused login never emits `clientDisconnect`; a publish refusal
 *   surfaces as `clientError`. Per-socket state (a WeakMap keyed by the aedes Client) joins them,
 *   with a session id given at the first sight of the socket — client ids repeat (takeover) and
 *   are generated (`aedes_<uuid>`).
 * - The broker publishes on its own behalf ($SYS, `aedes.publish()`, wills of dead clients): such
 *   records say `actor: broker` / `will`.
 * - `authorizeForward` is synchronous and runs once per recipient: it only records at level `full`.
 *
 * Hooks are a named list (aedes-style): adding a step is adding an entry to HOOKS.
 */
import { createHash, hash } from 'node:crypto';
import type { Aedes, Client, PublishPacket, Subscription, AedesPublishPacket, ConnackPacket, ConnectPacket } from 'aedes';
import type { DurableWaiter, Ledger } from '../shared/ledger/writer.js';
import { EVENTS, RECORD_VERSION, type Actor, type AuditRecord, type EventType } from './records.js';
import type { EnvelopeChecker, EnvelopeResult } from './envelope-check.js';

/** What the plugin needs of an asynchronous checker (verify-pool.ts AsyncEnvelopeChecker). */
export interface AsyncEnvelopes {
  checkAsync(clientKey: string, topic: string, payload: Uint8Array, now: number, nowU: number): Promise<EnvelopeResult>;
}
import { jsonString, socketPartJson } from '../shared/ledger/publish-json.js';
import { publishEnv, publishMiddle, publishRule, type PublishLine } from '../shared/ledger/publish-line.js';

// ── what the plugin needs from identity, access control and policies (structural) ─────────────

export interface AuthInput {
  clientId: string;
  username?: string;
  password?: Uint8Array;
  certFingerprint?: string;
  clientIdEmpty: boolean;
  cleanSession: boolean;
}
export type AuthDecision =
  | { ok: true; identity: string; method: string }
  | { ok: false; returnCode: 2 | 4 | 5; reason: string; detail: string };
export interface AuthenticatorLike {
  authenticate(input: AuthInput): AuthDecision;
  /** Preferred when present: slow checks (scrypt) run off the event loop. */
  authenticateAsync?(input: AuthInput): Promise<AuthDecision>;
}
export interface Who {
  identity: string;
  clientId: string;
  username?: string;
}
export interface AclDecisionLike {
  allowed: boolean;
  rule: string;
  reason: string;
}
export interface AclLike {
  checkPublish(who: Who, topic: string): AclDecisionLike;
  checkSubscribe(who: Who, filter: string): AclDecisionLike;
}
export type AuditLevel = 'none' | 'metadata' | 'payload' | 'full';
export type EnvelopeMode = 'off' | 'observe' | 'enforce';
export interface PolicyLike {
  audit: AuditLevel;
  envelope: EnvelopeMode;
  unwrap: boolean;
  mask: readonly string[];
}
export interface PoliciesLike {
  forTopic(topic: string): PolicyLike;
}

export interface WitnessPluginOptions {
  ledger: Ledger;
  /** Node id written in every record (also set as aedes.id by the CLI). */
  nodeId: string;
  /** Connect decisions. Default: everyone is accepted as `anonymous`. */
  authenticator?: AuthenticatorLike;
  /** Publish/subscribe decisions. Default: everything allowed (rule "default"). */
  acl?: AclLike;
  /** Per-topic audit level and envelope policy. Default: metadata, observe, no unwrap. */
  policies?: PoliciesLike;
  /** Envelope verdict engine; required unless every policy is `envelope: off`. */
  /** Envelope verdicts: the synchronous checker, or one that verifies signatures on worker threads (verify-pool.ts). */
  envelopes?: EnvelopeChecker | AsyncEnvelopes;
  /** Broker time and its uncertainty, ms. Default: system clock ± 100 ms. */
  clock?: () => { t: number; u: number };
  /** Masks a JSON payload per policy (level payload/full with `mask` paths). */
  mask?: (payload: Uint8Array, paths: readonly string[]) => { body: unknown; masked: boolean };
  /** Called with every record after it was handed to the ledger (live stream, alerts). */
  onRecord?: (record: AuditRecord) => void;
  /** Called when a record could not be written (the broker keeps running; QoS>0 publishes are refused). */
  onLedgerError?: (e: unknown) => void;
}

/** Verdicts that `enforce` still delivers: the message is authentic, it only reveals a loss. */
const ENFORCE_DELIVERS = new Set(['valid', 'gap', 'out-of-order']);

const DEFAULT_POLICY: PolicyLike = { audit: 'metadata', envelope: 'observe', unwrap: false, mask: [] };

interface SocketInfo {
  s: string;
  a?: string;
  identity?: string;
  username?: string;
  method?: string;
  refusal?: { reason: string; detail: string };
  connect?: { clientId: string; clean: boolean; keepalive: number; proto: number; will: boolean };
  /** Why it is going away, when known before `clientDisconnect`. */
  why?: 'error' | 'takeover' | 'keepalive';
  err?: string;
  /**
   * The publish record's cache (publishLine): the JSON of this socket's common fields from "n"
   * to "actor", and the client id and identity it was made for.
   */
  pj?: string;
  pjC?: string | null | undefined;
  pjId?: string;
  /** The last topic this socket published to, and the part of the line its publishes share (publishMiddle). */
  pjTopic?: string | undefined;
  pjMiddle?: Buffer;
  /**
   * While envelope checks of this socket are in flight on the verify pool: the end of its queue.
   * Every record of the socket made meanwhile (subscribe, error, disconnect, …) waits behind
   * it, so the ledger keeps the client's own order. `qn` counts the steps queued; at 0 the
   * queue is gone and records are written at once again.
   */
  q?: Promise<void>;
  qn?: number;
  /** Publishes of this socket not yet handed on (waiting for their records' durability), oldest first; `dn` their count. */
  dq?: Held[];
  dn?: number;
  /** Called once `dq` is empty (holdCloseForChecks). */
  dw?: Array<() => void>;
  /** Publishes of this socket inside aedes on a slow route (QoS 1 or retained), that route, and who waits for them. */
  ho?: number;
  hr?: number | undefined;
  hw?: Array<{ route: number; go: () => void }>;
  /** Its connection's destroy() waits for its queue (holdCloseForChecks). */
  held?: boolean;
  /** Closed, and its last publishes had their time: nothing waits any more. */
  gone?: boolean;
}

/** Longest a socket's close waits for its envelope checks, and waiting publishes for a closed socket's last one, ms. */
const CLOSE_HOLD_MS = 2000;

/** aedes Client internals the plugin reads (not in its public types). */
interface ClientInternals {
  id: string | null;
  will?: unknown;
  clean?: boolean;
  _disconnected?: boolean;
  conn?: { remoteAddress?: string; remotePort?: number; socket?: { remoteAddress?: string; remotePort?: number }; getPeerCertificate?: (detailed?: boolean) => { raw?: Buffer } | null };
  req?: { socket?: { remoteAddress?: string; remotePort?: number } };
}

export interface WitnessPlugin {
  /** Writes a record of the broker's own (start, stop, reload, device changes, alerts). */
  record(e: EventType, fields: Record<string, unknown>): Promise<void>;
  /** Resolves when no client's records wait behind envelope checks in flight (verify pool). */
  drain(): Promise<void>;
  /** Number of records handed to the ledger by the plugin since attach. */
  readonly counts: Readonly<Record<string, number>>;
  /** Restores the original hooks and removes the listeners. */
  detach(): void;
}

export function attach(aedes: Aedes, options: WitnessPluginOptions): WitnessPlugin {
  const o = options;
  const clock = o.clock ?? (() => ({ t: Date.now(), u: 100 }));
  const policies = o.policies ?? { forTopic: () => DEFAULT_POLICY };
  const sockets = new WeakMap<object, SocketInfo>();
  const bootId = Date.now().toString(36);
  let sessionCounter = 0;
  const counts: Record<string, number> = {};

  const info = (client: object): SocketInfo => {
    let i = sockets.get(client);
    if (!i) {
      i = { s: `${bootId}-${(++sessionCounter).toString(36)}` };
      const a = addressOf(client as ClientInternals);
      if (a) i.a = a;
      sockets.set(client, i);
    }
    return i;
  };

  const base = (e: EventType, client: object | null, actor?: Actor): AuditRecord => {
    const { t, u } = clock();
    const r: AuditRecord = { v: RECORD_VERSION, e, t, u, n: o.nodeId };
    if (client) {
      const i = info(client);
      r.s = i.s;
      const id = (client as ClientInternals).id ?? i.connect?.clientId;
      if (id !== undefined && id !== null) r.c = id;
      r.id = i.identity ?? (i.connect ? 'unauthenticated' : 'unknown');
      if (i.a) r.a = i.a;
    } else {
      r.id = 'broker';
    }
    if (actor) r.actor = actor;
    return r;
  };

  const write = (r: AuditRecord): Promise<unknown> => {
    counts[r.e] = (counts[r.e] ?? 0) + 1;
    const p = o.ledger.append(r);
    o.onRecord?.(r);
    return p;
  };
  const writeLoose = (r: AuditRecord): void => {
    write(r).catch(ledgerError);
  };
  const ledgerError = (e: unknown): void => {
    o.onLedgerError?.(e);
  };

  // ── per-client order with asynchronous envelope checks ─────────────────────────────────
  // With the verify pool a publish's record is written when its signature comes back, so a
  // record written at once for the same client (a SUBSCRIBE read in the same TCP chunk, the
  // disconnect that follows a last QoS 0 publish) would overtake it. Each socket with checks
  // in flight has a queue (SocketInfo.q): publishes and every other record of that socket go
  // through it in arrival order; with nothing in flight records are written synchronously.
  const queues = new Set<Promise<void>>();
  /** Runs `step` after everything queued for socket `i` (at once when nothing is). */
  const enqueue = (i: SocketInfo, step: () => void | Promise<void>): void => {
    const prev = i.q ?? Promise.resolve();
    i.qn = (i.qn ?? 0) + 1;
    const next = prev.then(step).then(
      () => settle(),
      (e: unknown) => {
        settle();
        ledgerError(e);
      },
    );
    i.q = next;
    queues.add(next);
    function settle(): void {
      queues.delete(next);
      if (--i.qn! === 0) i.q = undefined;
    }
  };
  /**
   * Writes a socket's record now, or behind its queued publishes. A queued record gets the
   * time it enters the ledger (as a publish record does), so times never run backwards
   * within a client.
   */
  const writeFor = (client: object, r: AuditRecord): void => {
    const i = info(client);
    if (!i.qn) {
      writeLoose(r);
      return;
    }
    enqueue(i, () => {
      const { t, u } = clock();
      r.t = t;
      r.u = u;
      writeLoose(r);
    });
  };
  const ACL_OFF: AclDecisionLike = { allowed: true, rule: 'default', reason: 'access control off' };
  const UNCHECKED: EnvelopeResult = { verdict: 'unchecked' };
  const nodeJson = jsonString(o.nodeId);

  /**
   * A client's publish record for Ledger.appendPublish (shared/ledger/publish-line.ts): one
   * object, refilled per publish (the ledger writes the line during the call). The part of the
   * line a socket's publishes to one topic share is cached per socket (for its last topic), the
   * rule's and the verdict's parts per name.
   */
  const line: PublishLine = { t: 0, u: 0, middle: EMPTY_BYTES, q: 0, retain: false, dup: false, messageId: undefined, payload: EMPTY_BYTES, rule: undefined, env: EMPTY_BYTES };
  const ruleParts = new Map<string, Buffer>();
  const envParts = new Map<string, Buffer>();
  const publishLine = (c: ClientInternals & object, i: SocketInfo, packet: PublishPacket, payload: Uint8Array, rule: string | undefined, env: string, t: number, u: number): PublishLine => {
    const id = c.id ?? i.connect?.clientId;
    const identity = i.identity ?? (i.connect ? 'unauthenticated' : 'unknown');
    let pj = i.pj;
    if (pj === undefined || i.pjC !== id || i.pjId !== identity) {
      pj = socketPartJson(nodeJson, i.s, id, identity, i.a);
      i.pj = pj;
      i.pjC = id;
      i.pjId = identity;
      i.pjTopic = undefined;
    }
    let middle = i.pjMiddle;
    if (middle === undefined || i.pjTopic !== packet.topic) {
      middle = publishMiddle(pj, jsonString(packet.topic));
      i.pjTopic = packet.topic;
      i.pjMiddle = middle;
    }
    const f = line;
    f.t = t;
    f.u = u;
    f.middle = middle;
    f.q = packet.qos;
    f.retain = !!packet.retain;
    f.dup = !!packet.dup;
    f.messageId = packet.messageId;
    f.payload = payload;
    if (rule === undefined) f.rule = undefined;
    else {
      let r = ruleParts.get(rule);
      if (r === undefined) ruleParts.set(rule, (r = publishRule(jsonString(rule))));
      f.rule = r;
    }
    let e = envParts.get(env);
    if (e === undefined) envParts.set(env, (e = publishEnv(env)));
    f.env = e;
    return f;
  };

  const originals = {
    preConnect: aedes.preConnect,
    authenticate: aedes.authenticate,
    authorizePublish: aedes.authorizePublish,
    authorizeSubscribe: aedes.authorizeSubscribe,
    authorizeForward: aedes.authorizeForward,
    published: aedes.published,
  };

  // ── hooks ────────────────────────────────────────────────────────────────────────────────

  const preConnect = (client: Client, packet: ConnectPacket, cb: (error: Error | null, success: boolean) => void): void => {
    const i = info(client);
    i.connect = {
      clientId: packet.clientId,
      clean: packet.clean !== false,
      keepalive: packet.keepalive ?? 0,
      proto: packet.protocolVersion ?? 4,
      will: !!packet.will,
    };
    if (packet.username !== undefined) i.username = packet.username;
    holdCloseForChecks(client, i);
    // [MQTT-3.1.4-2] takeover: the client already connected under this id will be closed.
    const current = packet.clientId ? (aedes as unknown as { clients: Record<string, object> }).clients[packet.clientId] : undefined;
    if (current && current !== client) info(current).why = 'takeover';
    originals.preConnect.call(aedes, client, packet, cb);
  };

  const authenticate: Aedes['authenticate'] = (client, username, password, cb) => {
    const i = info(client);
    const clientId = i.connect?.clientId ?? '';
    const input: AuthInput = {
      clientId,
      clientIdEmpty: clientId.length === 0,
      cleanSession: i.connect?.clean ?? true,
      ...(username !== undefined ? { username } : {}),
      ...(password !== undefined ? { password: new Uint8Array(password) } : {}),
    };
    const fp = certFingerprintOf(client as unknown as ClientInternals);
    if (fp) input.certFingerprint = fp;
    const decide = (): AuthDecision | Promise<AuthDecision> => {
      if (input.clientIdEmpty && !input.cleanSession) {
        // [MQTT-3.1.3-8]: a zero-length client id requires clean session 1 (plain aedes accepts it).
        return { ok: false, returnCode: 2, reason: 'client-id:empty-persistent', detail: 'a zero-length client id needs clean session 1 [MQTT-3.1.3-8]' };
      }
      if (!o.authenticator) return { ok: true, identity: 'anonymous', method: 'anonymous' };
      return o.authenticator.authenticateAsync ? o.authenticator.authenticateAsync(input) : o.authenticator.authenticate(input);
    };
    Promise.resolve()
      .then(decide)
      .then(
        (d) => finish(d),
        (e: unknown) => finish({ ok: false, returnCode: 5, reason: 'authenticate:error', detail: (e as Error)?.message ?? String(e) }),
      );
    function finish(d: AuthDecision): void {
      if (!d.ok) {
        i.refusal = { reason: d.reason, detail: d.detail };
        const err = Object.assign(new Error(d.reason), { returnCode: d.returnCode });
        cb(err as Parameters<typeof cb>[0], false);
        return;
      }
      i.identity = d.identity;
      i.method = d.method;
      originals.authenticate.call(aedes, client, username, password, (err, ok) => {
        if (err || !ok) i.refusal = { reason: 'authenticate:hook', detail: err?.message ?? 'refused by the authenticate hook' };
        cb(err, ok);
      });
    }
  };

  const authorizePublish = (client: Client | null, packet: PublishPacket, cb: (error?: Error | null) => void): void => {
    const c = client as unknown as (ClientInternals & object) | null;
    const actor: Actor = c && c.will === packet ? 'will' : c ? 'client' : 'will';
    const policy = policies.forTopic(packet.topic);
    const i = c ? info(c) : undefined;
    let acl = ACL_OFF;
    if (o.acl) {
      const who: Who = { identity: i?.identity ?? 'anonymous', clientId: c?.id ?? '', ...(i?.username ? { username: i.username } : {}) };
      acl = o.acl.checkPublish(who, packet.topic);
    }
    const payload = toBytes(packet.payload);
    if (policy.envelope !== 'off' && o.envelopes) {
      const now = clock();
      if ('checkAsync' in o.envelopes) {
        // The signature is verified on the VerifyPool's threads; the verdicts of one client (and
        // of one device) come back in arrival order (verify-pool.ts). aedes may call this for
        // several packets of one client before the first callback (one TCP read): each waits its turn.
        const checked = o.envelopes.checkAsync(c?.id ?? '', packet.topic, payload, now.t, now.u).then(
          (env) => env,
          (e: unknown): EnvelopeResult => ({ verdict: 'unchecked', reason: `verification failed: ${(e as Error).message}` }),
        );
        if (i) enqueue(i, () => checked.then(decide));
        else void checked.then(decide);
        return;
      }
      // The synchronous checker (verifyThreads 0): nothing of a client is ever queued then.
      decide(o.envelopes.check(packet.topic, payload, now.t, now.u));
      return;
    }
    // Behind this client's publishes still in verification (another topic's policy), if any.
    if (i?.qn) enqueue(i, () => decide(UNCHECKED));
    else decide(UNCHECKED);

    // Everything after the envelope verdict. It appends the record synchronously, so a device's
    // state update and its record enter the ledger's queue together.
    function decide(env: EnvelopeResult): void {
    const envRefused = policy.envelope === 'enforce' && !ENFORCE_DELIVERS.has(env.verdict);
    const refused = !acl.allowed || envRefused;

    if (!refused && policy.audit === 'metadata' && actor === 'client' && env.kid === undefined && env.gap === undefined && !env.reason && !o.onRecord) {
      // The hot path (issue 7: level metadata, envelope off): the record's line is written
      // straight into the ledger's batch as bytes, its payload hash left to the ledger's I/O
      // thread (Ledger.appendPublish*, shared/ledger/publish-line.ts). Same bytes as the generic
      // path below (test/broker/publish-json.test.ts, test/shared/ledger/publish-line.test.ts).
      //
      // What it costs this thread, per record (bench/record-path.ts, 2-core bench VM, 64 B
      // payloads, 12 µs of simulated broker work per record, lingerMs 5; docs/BENCHMARKS.md
      // "Publish record path"): payload SHA-256 + JSON template (the path before) 3.9 µs;
      // the line as bytes with the hash here 3.4 µs; with the hash on the I/O thread (this) 2.5
      // µs. In the whole broker under a QoS 0 flood (suite run 7) this thread then spends
      // plain aedes' CPU per message + 1.0 µs, of which the hooks alone are 0.6.
      const now = clock();
      const f = publishLine(c!, i!, packet, payload, o.acl ? acl.rule : undefined, env.verdict, now.t, now.u);
      counts.publish = (counts.publish ?? 0) + 1;
      if (packet.qos > 0) {
        // Audit before ack: the PUBACK/PUBREC is written only after this record is durable. One
        // Held per publish, told by the ledger (Ledger.appendPublishTo), instead of a ledger
        // promise and inOrder's three .then()s. Suite, QoS 1 100×10 64 B, main-thread CPU per
        // message over plain aedes for the whole QoS 1 record path: +6.0 µs with the chain (one
        // round, 19:50), +5.5 µs with this (two rounds, 20:00), +2.8 µs in suite run 8 after the
        // cached line writer. Runs differ by ±20% here; the chain's own share was not isolated.
        if (i) o.ledger.appendPublishTo(f, hold(i, finishPublish, failPublish));
        else o.ledger.appendPublish(f).then(finishPublish, failPublish);
        return;
      }
      o.ledger.appendPublishLoose(f, ledgerError);
    } else if (policy.audit !== 'none' || refused) {
      const r = base(EVENTS.publish, c, actor);
      r.topic = packet.topic;
      r.q = packet.qos;
      r.r = !!packet.retain;
      if (packet.dup) r.d = true;
      if (packet.messageId !== undefined) r.m = packet.messageId;
      r.z = payload.length;
      r.h = sha256(payload);
      r.acl = acl.allowed ? 'allow' : 'deny';
      if (!acl.allowed || o.acl) r.rule = acl.rule;
      r.env = env.verdict;
      if (env.gap !== undefined) r.gap = env.gap;
      if (env.reason) r.why = env.reason;
      if (env.kid) {
        r.kid = env.kid;
        r.seq = env.seq;
        r.dt = env.dt;
        r.du = env.du;
        r.ts = env.ts;
        r.eh = env.eh;
        if (env.late !== undefined) r.late = env.late;
      }
      if (refused) r.ok = false;
      if (policy.audit === 'payload' || policy.audit === 'full') Object.assign(r, body(env.inner ?? payload, policy));
      if (refused) {
        // A refusal is recorded (durably) before the connection is closed.
        inOrder(
          i,
          write(r),
          () => cb(new Error(!acl.allowed ? `publish to ${packet.topic} denied by ${acl.rule}` : `envelope ${env.verdict}: refused by policy enforce`)),
          (e: unknown) => cb(e as Error),
        );
        return;
      }
      if (packet.qos > 0) {
        // Audit before ack: the PUBACK/PUBREC is written only after this record is durable.
        inOrder(i, write(r), finishPublish, failPublish);
        return;
      }
      writeLoose(r);
    }
    // A QoS 0 publish goes on at once unless an earlier one of this client still waits.
    if (i?.dn) inOrder(i, null, finishPublish, failPublish);
    else finishPublish();

    function failPublish(e: unknown): void {
      o.onLedgerError?.(e);
      cb(e as Error);
    }

    function finishPublish(): void {
      if (policy.unwrap && env.inner && ENFORCE_DELIVERS.has(env.verdict)) packet.payload = Buffer.from(env.inner);
      handOn(i, client, packet, cb);
    }
    }
  };

  // ── per-client order inside aedes ──────────────────────────────────────────────────────
  // aedes runs the packets of one socket read concurrently, and its publish steps differ by
  // route: a QoS 1 publish waits for its PUBACK write and the offline-session lookup, a retained
  // one for the retained store, a plain QoS 0 one for nothing. So a QoS 0 message sent right
  // after a QoS 1 message of the same client reaches subscribers first — in plain aedes when
  // both arrive in one read, and often with verdicts arriving together from the verify pool
  // (found by test/agent/bridge.test.ts: the receiving agent took the QoS 1 message for a
  // replay). [MQTT-4.6.0-6] wants one client's messages delivered in order. Hence: while a
  // publish of the client on a slow route (QoS 1, or retained) is in aedes — between its
  // authorizePublish callback and the `published` hook — a later publish on ANOTHER route waits;
  // publishes on the same route take the same steps and keep their order. QoS 2 is handed on
  // at once (aedes publishes it only after its own store step, and a duplicate never reaches
  // `published`, so gating on it could stall a client).
  const routeOf = (p: { qos: number; retain?: boolean }): number => (p.qos === 2 ? -1 : p.qos * 2 + (p.retain ? 1 : 0));
  const handOn = (si: SocketInfo | undefined, client: Client | null, p: PublishPacket, cb: (error?: Error | null) => void): void => {
    const route = routeOf(p);
    if (!si || route < 0 || si.gone || (!si.hw?.length && (!si.ho || si.hr === route))) {
      if (si && route > 0) {
        si.ho = (si.ho ?? 0) + 1;
        si.hr = route;
      }
      originals.authorizePublish.call(aedes, client, p, cb);
      return;
    }
    (si.hw ??= []).push({ route, go: () => originals.authorizePublish.call(aedes, client, p, cb) });
  };

  /**
   * Hands a publish on (`go`, or `fail`) once `durable` (its record) is, but never before an
   * earlier publish of the same socket: messages of one client reach subscribers in the order
   * it sent them [MQTT-4.6.0-6], although a QoS 1 record waits for an fdatasync and a QoS 0
   * one does not.
   */
  const inOrder = (si: SocketInfo | undefined, durable: Promise<unknown> | null, go: () => void, fail: (e: unknown) => void): void => {
    if (!si || (durable === null && !si.dn)) {
      if (durable) durable.then(go, fail);
      else go();
      return;
    }
    const h = hold(si, go, fail);
    if (durable === null) h.durable();
    else durable.then(() => h.durable(), (e: unknown) => h.failed(e));
  };
  /** Queues a publish of `si` behind its earlier ones; it goes on once told durable (or failed) and first in line. */
  const hold = (si: SocketInfo, go: () => void, fail: (e: unknown) => void): Held => {
    const h = new Held(si, go, fail, handHeld);
    (si.dq ??= []).push(h);
    si.dn = si.dq.length;
    return h;
  };
  /** Hands on the publishes at the head of `si`'s queue that are ready, in order. */
  const handHeld = (si: SocketInfo): void => {
    const q = si.dq;
    if (!q) return;
    while (q.length > 0 && q[0]!.ready) {
      const h = q.shift()!;
      si.dn = q.length;
      try {
        if (h.err !== undefined) h.fail(h.err);
        else h.go();
      } catch (e) {
        ledgerError(e);
      }
    }
    if (q.length === 0 && si.dq === q) {
      si.dq = undefined;
      si.dn = 0;
      const w = si.dw;
      si.dw = undefined;
      if (w) for (const f of w) f();
    }
  };

  /**
   * aedes closes a socket the moment it reads DISCONNECT (or a bad packet), while packets read
   * before it may still be in verification; a QoS 1 publish handed on after the close is dropped
   * (its PUBACK write fails) — seen with the verify pool (test/broker/client-order.test.ts). So
   * the socket's destroy() waits behind the socket's queue, at most CLOSE_HOLD_MS.
   */
  const holdCloseForChecks = (client: object, si: SocketInfo): void => {
    const conn = (client as ClientInternals).conn as { destroy?: (...a: unknown[]) => unknown } | undefined;
    if (!conn || typeof conn.destroy !== 'function' || si.held) return;
    si.held = true;
    const destroy = conn.destroy;
    conn.destroy = function (this: unknown, ...args: unknown[]): unknown {
      if (!si.qn && !si.dn) return destroy.apply(this, args);
      let done = false;
      const go = (force?: boolean): void => {
        if (done) return;
        if (force === true) {
          done = true;
          destroy.apply(this, args);
          return;
        }
        if (si.qn && si.q) {
          si.q.then(() => go(), () => go());
          return;
        }
        if (si.dn && si.dq) {
          (si.dw ??= []).push(() => go());
          return;
        }
        done = true;
        destroy.apply(this, args);
      };
      setTimeout(() => go(true), CLOSE_HOLD_MS).unref();
      go();
      return this;
    };
  };
  /** A client gone with publishes still waiting to be handed on: once its last publish had time to leave aedes, they go on. */
  const releaseAfterClose = (si: SocketInfo): void => {
    if (!si.ho && !si.hw?.length) return;
    setTimeout(() => {
      si.gone = true;
      si.ho = 0;
      si.hr = undefined;
      for (const w of si.hw?.splice(0) ?? []) w.go();
    }, CLOSE_HOLD_MS).unref();
  };
  /** `published` of a client publish: one slow-route publish left aedes; hand on who waited. */
  const leftAedes = (si: SocketInfo, p: { qos: number; retain?: boolean }): void => {
    const route = routeOf(p);
    if (route <= 0 || !si.ho) return;
    if (--si.ho > 0) return;
    si.hr = undefined;
    const w = si.hw;
    while (w && w.length > 0) {
      const next = w[0]!;
      if (si.ho && si.hr !== next.route) break;
      w.shift();
      if (next.route > 0) {
        si.ho = (si.ho ?? 0) + 1;
        si.hr = next.route;
      }
      next.go();
    }
  };

  const authorizeSubscribe = (client: Client, sub: Subscription, cb: (error: Error | null, subscription?: Subscription | null) => void): void => {
    const i = info(client);
    const who: Who = { identity: i.identity ?? 'anonymous', clientId: (client as unknown as ClientInternals).id ?? '', ...(i.username ? { username: i.username } : {}) };
    const d = o.acl ? o.acl.checkSubscribe(who, sub.topic) : { allowed: true, rule: 'default', reason: 'access control off' };
    const r = base(EVENTS.subscribe, client);
    r.f = sub.topic;
    r.q = sub.qos;
    r.acl = d.allowed ? 'allow' : 'deny';
    if (!d.allowed || o.acl) r.rule = d.rule;
    // A persistent session's subscriptions are re-authorized while it connects, before CONNACK.
    if (!(client as unknown as { connackSent?: boolean }).connackSent) r.restored = true;
    if (!d.allowed) {
      r.g = 0x80; // SUBACK failure return code [MQTT-3.9.3-2]
      writeFor(client, r);
      cb(null, null);
      return;
    }
    originals.authorizeSubscribe.call(aedes, client, sub, (err, granted) => {
      r.g = err || !granted ? 0x80 : granted.qos;
      writeFor(client, r);
      cb(err, granted);
    });
  };

  const authorizeForward = (client: Client, packet: AedesPublishPacket): AedesPublishPacket | null | void => {
    const out = originals.authorizeForward.call(aedes, client, packet);
    if (out && policies.forTopic(packet.topic).audit === 'full') {
      const r = base(EVENTS.deliver, client);
      r.topic = packet.topic;
      r.q = packet.qos;
      r.from = (packet as { clientId?: string }).clientId ?? null;
      r.h = sha256(toBytes(packet.payload));
      writeFor(client, r);
    }
    return out;
  };

  const published = (packet: AedesPublishPacket, client: Client | null, cb: (error?: Error | null) => void): void => {
    if (client) {
      const si = sockets.get(client);
      if (si?.ho) leftAedes(si, packet);
    } else {
      // The broker's own publishes ($SYS, aedes.publish(), restored retained): no authorizePublish ran.
      const policy = policies.forTopic(packet.topic);
      if (policy.audit !== 'none') {
        const payload = toBytes(packet.payload);
        const r = base(EVENTS.publish, null, 'broker');
        r.topic = packet.topic;
        r.q = packet.qos;
        r.r = !!packet.retain;
        r.z = payload.length;
        r.h = sha256(payload);
        r.acl = 'allow';
        r.env = 'unchecked';
        if (policy.audit === 'payload' || policy.audit === 'full') Object.assign(r, body(payload, policy));
        writeLoose(r);
      }
    }
    originals.published.call(aedes, packet, client as Client, cb);
  };

  const HOOKS = { preConnect, authenticate, authorizePublish, authorizeSubscribe, authorizeForward, published };
  Object.assign(aedes, HOOKS);

  // ── events ───────────────────────────────────────────────────────────────────────────────

  const onConnack = (connack: ConnackPacket, client: Client): void => {
    const i = info(client);
    const r = base(EVENTS.connect, client);
    const rc = connack.returnCode ?? 0;
    r.ok = rc === 0;
    r.rc = rc;
    if (i.method) r.auth = i.method;
    if (i.connect) {
      r.clean = i.connect.clean;
      r.k = i.connect.keepalive;
      r.p = i.connect.proto;
      r.will = i.connect.will;
      if (i.connect.clientId === '') r.gen = true; // the broker generated the client id
    }
    if (rc === 0) r.sp = !!connack.sessionPresent;
    else r.why = i.refusal?.reason ?? CONNACK_REASONS[rc] ?? `return code ${rc}`;
    if (rc !== 0 && i.refusal?.detail) r.detail = i.refusal.detail;
    if (rc !== 0) {
      r.id = 'unauthenticated';
      if (i.username !== undefined) r.user = i.username;
    }
    writeFor(client, r);
  };
  const onClientError = (client: Client, err: Error): void => {
    const i = info(client);
    if (!i.why) i.why = 'error';
    i.err = err.message;
    const r = base(EVENTS.error, client);
    r.scope = 'client';
    r.msg = err.message;
    writeFor(client, r);
  };
  const onConnectionError = (client: Client, err: Error): void => {
    const r = base(EVENTS.error, client);
    r.scope = 'connection';
    r.msg = err.message;
    writeFor(client, r);
  };
  const onKeepalive = (client: Client): void => {
    info(client).why = 'keepalive';
    const r = base(EVENTS.keepalive, client);
    r.k = info(client).connect?.keepalive;
    writeFor(client, r);
  };
  const onDisconnect = (client: Client): void => {
    const i = info(client);
    releaseAfterClose(i);
    const r = base(EVENTS.disconnect, client);
    r.why = (client as unknown as ClientInternals)._disconnected ? 'clean' : (i.why ?? 'closed');
    if (i.err && r.why === 'error') r.msg = i.err;
    writeFor(client, r);
  };
  const onUnsubscribe = (unsubs: string[], client: Client): void => {
    const r = base(EVENTS.unsubscribe, client);
    r.f = unsubs;
    writeFor(client, r);
  };

  const listeners: Array<[string, (...args: never[]) => void]> = [
    ['connackSent', onConnack],
    ['clientError', onClientError],
    ['connectionError', onConnectionError],
    ['keepaliveTimeout', onKeepalive],
    ['clientDisconnect', onDisconnect],
    ['unsubscribe', onUnsubscribe],
  ];
  for (const [ev, fn] of listeners) aedes.on(ev as 'client', fn as unknown as () => void);

  function body(payload: Uint8Array, policy: PolicyLike): Record<string, unknown> {
    if (policy.mask.length > 0 && o.mask) {
      const m = o.mask(payload, policy.mask);
      return m.masked ? { body: m.body } : { bodyOmitted: 'not JSON: masking impossible, hash only' };
    }
    return { b64: Buffer.from(payload.buffer, payload.byteOffset, payload.byteLength).toString('base64') };
  }

  return {
    async record(e, fields) {
      await write({ ...base(e, null), ...fields });
    },
    async drain() {
      // Bounded: each round waits for what is queued now; a queue only grows while clients send.
      for (let round = 0; round < 1000 && queues.size > 0; round++) await Promise.all([...queues]);
    },
    counts,
    detach() {
      Object.assign(aedes, originals);
      for (const [ev, fn] of listeners) aedes.removeListener(ev, fn as unknown as () => void);
    },
  };
}

const CONNACK_REASONS: Record<number, string> = {
  1: 'protocol:unacceptable-version',
  2: 'client-id:rejected',
  3: 'server:unavailable',
  4: 'credentials:bad',
  5: 'not-authorized',
  6: 'keepalive:limit-exceeded',
};

function toBytes(p: unknown): Uint8Array {
  if (p instanceof Uint8Array) return p;
  if (typeof p === 'string') return Buffer.from(p, 'utf8');
  return new Uint8Array(0);
}

/**
 * SHA-256, base64url. crypto.hash (one shot, node ≥ 20.12) rather than createHash().update()
 * .digest(): measured 0.77 µs vs 1.22 µs for a 256-byte payload (no Hash object per call).
 */
function sha256(b: Uint8Array): string {
  return hash('sha256', b, 'base64url');
}

const EMPTY_BYTES = new Uint8Array(0);

/**
 * A client publish waiting to be handed on (plugin inOrder/hold): until its record is durable
 * (the ledger calls durable/failed: it is the record's DurableWaiter) and every earlier publish
 * of its socket has gone on.
 */
class Held implements DurableWaiter {
  ready = false;
  err: unknown = undefined;
  constructor(
    readonly si: SocketInfo,
    readonly go: () => void,
    readonly fail: (e: unknown) => void,
    readonly drain: (si: SocketInfo) => void,
  ) {}
  durable(): void {
    this.ready = true;
    this.drain(this.si);
  }
  failed(e: unknown): void {
    this.ready = true;
    this.err = e ?? new Error('ledger append failed');
    this.drain(this.si);
  }
}

function addressOf(c: ClientInternals): string | undefined {
  const s = c.conn?.remoteAddress !== undefined ? c.conn : (c.conn?.socket ?? c.req?.socket);
  if (!s?.remoteAddress) return undefined;
  return s.remoteAddress.includes(':') ? `[${s.remoteAddress}]:${s.remotePort}` : `${s.remoteAddress}:${s.remotePort}`;
}

function certFingerprintOf(c: ClientInternals): string | undefined {
  const get = c.conn?.getPeerCertificate;
  if (typeof get !== 'function') return undefined;
  const cert = get.call(c.conn, false);
  if (!cert?.raw || cert.raw.length === 0) return undefined;
  return createHash('sha256').update(cert.raw).digest('hex');
}
