/**
 * WitnessAgent: the device side of Witness. It connects to the broker with a proof-of-possession
 * token (FORMATS §4), signs every message into an envelope (FORMATS §1: topic-bound, per-device
 * sequence, hash of the previous envelope, trusted time ± uncertainty and its source), makes each
 * envelope durable in the outbox before it is sent, sends in sequence order, and verifies what
 * arrives on its subscriptions with the broker's verdict names.
 *
 * The publish pipeline, as a checklist:
 *   publish()  → validate topic → outbox.enqueue (assigns seq and prev; the sign callback reads
 *                the trusted clock and signs; durable before it resolves) → pump
 *   pump       → while connected and fewer than maxInflight in flight: the oldest pending
 *                envelopes not yet sent on this connection, in seq order
 *   acked      → QoS 1/2: the PUBACK/PUBCOMP; QoS 0: written to the socket → outbox.ack in seq
 *                order → 'ack'
 *
 * So on every (re)connect the envelopes queued while offline go first, oldest first, and new ones
 * follow them. An envelope whose ack was lost (connection dropped, or this process killed after
 * the broker got it) is sent again: the broker records such an exact duplicate as `replayed`.
 *
 * Connections: one MQTT.js client per connection attempt, reconnectPeriod 0, and our own backoff.
 * Two reasons, both from MQTT.js 5 (build/lib/client.js): a reconnect re-sends the CONNECT with
 * `options.password` as it was — a connect token already used, which the broker's nonce cache
 * refuses as `token:replayed` — and `_onConnect` re-sends its own in-memory outgoing store, which
 * would duplicate what the outbox re-sends. A fresh client gets a fresh token (issued at trusted
 * time) and an empty store; the outbox is the only source of what to send.
 */
import { EventEmitter } from 'node:events';
import { mkdirSync, renameSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';
import mqtt, { type MqttClient, type IPublishPacket } from 'mqtt';
import type { TimeSource } from '../shared/envelope/index.js';
import { signDeviceEnvelope } from './signer.js';
import { WitnessError } from '../shared/errors.js';
import { deviceKid } from '../shared/keys/key-id.js';
import { createConnectToken, TOKEN_USERNAME } from '../shared/token/connect-token.js';
import { isValidFilter, isValidTopic } from '../broker/acl/topic.js';
import type { EnvelopeVerdictName } from '../broker/records.js';
import { TrustedClock } from './clock/trusted-clock.js';
import { Outbox, type OutboxEntry } from './outbox/outbox.js';
import { resolveAgentOptions, type AgentClock, type ResolvedAgentOptions, type WitnessAgentOptions } from './options.js';
import { IncomingVerifier, KnownKeyTable } from './verifier.js';

export type QoS = 0 | 1 | 2;

export interface PublishOptions {
  /** MQTT QoS. Default 1 (acknowledged: the envelope leaves the outbox only once the broker has it). */
  qos?: QoS;
  /** MQTT retain flag. Default false. */
  retain?: boolean;
}

/** What publish() resolves with: the envelope is durable in the outbox and will be sent. */
export interface QueuedMessage {
  seq: number;
  topic: string;
  qos: QoS;
  retain: boolean;
  /** Envelope size, bytes. */
  bytes: number;
  /** When it was queued, ms since the epoch (system clock). */
  queuedAt: number;
}

/** A message received on a subscription, with the verdict on its envelope. */
export interface IncomingMessage {
  topic: string;
  /** The application payload: inside the envelope when it decoded, else the bytes as received. */
  payload: Uint8Array;
  /** The bytes as received. */
  raw: Uint8Array;
  verdict: EnvelopeVerdictName;
  /** Why, for people (malformed, invalid, wrong-topic, sequence verdicts). */
  reason?: string;
  /** For `gap`: how many messages are missing. */
  gap?: number;
  /** The signer, its key id, sequence number, time (ms), uncertainty (ms) and time source, when the envelope decoded. */
  deviceId?: string;
  kid?: string;
  seq?: number;
  time?: number;
  uncertainty?: number;
  timeSource?: string;
  qos: QoS;
  retain: boolean;
}

export interface ConnectInfo {
  broker: string;
  /** Connection attempts since start(), this one included. */
  attempt: number;
  /** Envelopes waiting in the outbox at connect time (sent first). */
  pending: number;
}

export interface OfflineInfo {
  /** Why: the socket error, the CONNACK refusal, `closed`. */
  reason: string;
  /** Delay before the next attempt, ms (undefined when stopping). */
  retryInMs?: number;
}

export interface AckInfo {
  seq: number;
  topic: string;
  qos: QoS;
  /** From send to acknowledgement, ms. */
  latencyMs: number;
}

/** The outbox dropped queued envelopes (its overflow or age policy); the outbox records it too. */
export interface DroppedInfo {
  reason: 'overflow' | 'age';
  fromSeq: number;
  toSeq: number;
  count: number;
  at: number;
}

/** The agent's events (a typed EventEmitter, MQTT.js v5 style). */
export interface WitnessAgentEvents {
  connect: [ConnectInfo];
  offline: [OfflineInfo];
  message: [IncomingMessage];
  ack: [AckInfo];
  /** Emitted only when someone listens (an unhandled 'error' would crash the process); always kept in status().lastError. */
  error: [Error];
  dropped: [DroppedInfo];
}

export interface AgentStatus {
  deviceId: string;
  broker: string;
  connected: boolean;
  /** ms since the epoch. */
  since: number;
  connects: number;
  lastConnectAt?: number;
  lastError?: string;
  clock: { source: TimeSource; offset: number; uncertainty: number; lastSync?: number; server?: string; lastError?: string; syncs: number; failures: number };
  outbox: { dir: string; depth: number; bytes: number; nextSeq: number; lastAck?: { seq: number; at: number } };
  inflight: number;
  sent: number;
  acked: number;
  received: Partial<Record<EnvelopeVerdictName, number>>;
  dropped: number;
}

interface Connection {
  client: MqttClient;
  attempt: number;
  ready: boolean;
  closed: boolean;
  /** Next sequence number to send on this connection: everything below was sent on it. */
  cursor: number;
  /** Sent and not yet handed to outbox.ack, ascending. */
  sentOrder: number[];
  sent: Map<number, { topic: string; qos: QoS; at: number; done: boolean }>;
  lastError?: Error;
}

const toBuffer = (b: Uint8Array): Buffer => Buffer.from(b.buffer, b.byteOffset, b.byteLength);

export class WitnessAgent extends EventEmitter<WitnessAgentEvents> {
  readonly #o: ResolvedAgentOptions;
  readonly #kid: Uint8Array;
  readonly #keys: KnownKeyTable;
  #clock: AgentClock | undefined;
  #ownClock = false;
  #outbox: Outbox | undefined;
  #verifier: IncomingVerifier | undefined;
  #conn: Connection | undefined;
  #attempts = 0;
  #failures = 0;
  #reconnectTimer: NodeJS.Timeout | undefined;
  #statusTimer: NodeJS.Timeout | undefined;
  #started = false;
  #stopping = false;
  #stopped: Promise<void> | undefined;
  #offlineReported = false;
  /** Sequence numbers handed to outbox.ack and not yet done. */
  readonly #acking = new Set<number>();
  #ackChain: Promise<void> = Promise.resolve();
  readonly #subscriptions = new Map<string, QoS>();
  #since = Date.now();
  #lastConnectAt: number | undefined;
  #lastError: Error | undefined;
  #sent = 0;
  #acked = 0;
  #dropped = 0;
  readonly #received: Partial<Record<EnvelopeVerdictName, number>> = {};

  constructor(options: WitnessAgentOptions) {
    super();
    this.#o = resolveAgentOptions(options);
    this.#kid = deviceKid(this.#o.deviceId, this.#o.publicKey);
    this.#keys = KnownKeyTable.from(this.#o.knownKeys);
    this.#keys.add(this.#o.deviceId, this.#o.publicKey);
  }

  /** Creates and starts an agent. */
  static async start(options: WitnessAgentOptions): Promise<WitnessAgent> {
    const a = new WitnessAgent(options);
    await a.start();
    return a;
  }

  get deviceId(): string {
    return this.#o.deviceId;
  }

  get publicKey(): Uint8Array {
    return this.#o.publicKey;
  }

  get connected(): boolean {
    return this.#conn?.ready === true;
  }

  /** The resolved options (defaults filled in; the seed left out). */
  get options(): Omit<ResolvedAgentOptions, 'seed'> {
    const { seed: _seed, ...rest } = this.#o;
    return rest;
  }

  /**
   * Opens the clock and the outbox and starts connecting. Resolves once messages can be
   * published (they queue until the broker is reachable), not when the broker answers: listen
   * for 'connect'.
   */
  async start(): Promise<void> {
    if (this.#started) throw new WitnessError('WITNESS_ERR_INVALID_ARGUMENT', 'WitnessAgent.start: already started');
    this.#started = true;
    this.#since = Date.now();
    const o = this.#o;
    if (o.clock) this.#clock = o.clock;
    else {
      this.#clock = await TrustedClock.start({ servers: [...o.ntpServers] });
      this.#ownClock = true;
    }
    try {
      this.#outbox = await Outbox.open(o.outboxDir, { maxBytes: o.outboxMaxBytes, maxAgeMs: o.outboxMaxAgeMs, overflow: o.outboxOverflow });
    } catch (e) {
      if (this.#ownClock) this.#clock.close();
      throw e;
    }
    this.#outbox.on('event', (e) => {
      if (e.kind !== 'dropped') return;
      this.#dropped += e.count;
      this.emit('dropped', { reason: e.reason, fromSeq: e.fromSeq, toSeq: e.toSeq, count: e.count, at: e.at });
    });
    const clock = this.#clock;
    this.#verifier = new IncomingVerifier({ keys: this.#keys, skewToleranceMs: o.skewToleranceMs, now: () => clock.now() });
    if (o.statusFile !== null) {
      this.#writeStatus();
      this.#statusTimer = setInterval(() => this.#writeStatus(), o.statusIntervalMs);
      this.#statusTimer.unref();
    }
    this.#connect();
  }

  /**
   * Signs `payload` for `topic` and queues it. Resolves once the envelope is durable in the outbox
   * (it is then sent as soon as the broker is reachable, after everything queued before it);
   * rejects if the topic is invalid, the agent is stopped, or the outbox refuses (full, policy
   * reject-new). The 'ack' event says when the broker has it; flush() waits for all.
   */
  async publish(topic: string, payload: Uint8Array | string, opts: PublishOptions = {}): Promise<QueuedMessage> {
    const outbox = this.#requireRunning('publish');
    // Checked here, not by MQTT.js at send time: an unsendable envelope in the outbox would block
    // every envelope behind it.
    if (!isValidTopic(topic)) {
      throw new WitnessError('WITNESS_ERR_INVALID_ARGUMENT', `publish: ${JSON.stringify(String(topic).slice(0, 80))} is not a valid MQTT topic name (not empty, no + or #, no U+0000, at most 65,535 bytes) [MQTT-4.7.3]`);
    }
    const qos = opts.qos ?? 1;
    if (qos !== 0 && qos !== 1 && qos !== 2) throw new WitnessError('WITNESS_ERR_INVALID_ARGUMENT', `publish: qos must be 0, 1 or 2, got ${String(qos)}`);
    const retain = opts.retain ?? false;
    const body = typeof payload === 'string' ? new TextEncoder().encode(payload) : payload;
    if (!(body instanceof Uint8Array)) throw new WitnessError('WITNESS_ERR_INVALID_ARGUMENT', 'publish: payload must be a string or a Uint8Array');
    const clock = this.#clock!;
    const entry = await outbox.enqueue(topic, qos, retain, (seq, prev) => {
      // Time is read here, when the outbox has fixed the sequence number, right before signing.
      return signDeviceEnvelope({ seed: this.#o.seed, kid: this.#kid, topic, payload: body, seq, prev, at: clock.now() });
    });
    this.#pump();
    return { seq: entry.seq, topic, qos, retain, bytes: entry.envelope.length, queuedAt: entry.queuedAt };
  }

  /**
   * Subscribes to `filter` (kept across reconnects: each connection is a clean session and the
   * agent subscribes again). While connected, resolves with the granted QoS once the broker
   * answers, or rejects if it refuses (SUBACK 0x80; the filter is forgotten); while offline,
   * resolves at once with qos null and the subscription is made at the next connect.
   */
  async subscribe(filter: string, opts: { qos?: QoS } = {}): Promise<{ filter: string; qos: QoS | null }> {
    this.#requireRunning('subscribe');
    if (!isValidFilter(filter)) {
      throw new WitnessError('WITNESS_ERR_INVALID_ARGUMENT', `subscribe: ${JSON.stringify(String(filter).slice(0, 80))} is not a valid MQTT topic filter (+ and # occupy a whole level, # only last) [MQTT-4.7.1]`);
    }
    const qos = opts.qos ?? 1;
    this.#subscriptions.set(filter, qos);
    const conn = this.#conn;
    if (!conn?.ready) return { filter, qos: null };
    try {
      const granted = await conn.client.subscribeAsync(filter, { qos });
      return { filter, qos: (granted[0]?.qos ?? null) as QoS | null };
    } catch (e) {
      // The connection went away before the SUBACK: the subscription is made at the next connect.
      if (conn.closed && this.#subscriptions.has(filter)) return { filter, qos: null };
      this.#subscriptions.delete(filter); // refused by the broker (SUBACK 0x80)
      throw e;
    }
  }

  async unsubscribe(filter: string): Promise<void> {
    this.#requireRunning('unsubscribe');
    this.#subscriptions.delete(filter);
    const conn = this.#conn;
    if (conn?.ready) await conn.client.unsubscribeAsync(filter);
  }

  /** Waits until every envelope queued so far is acknowledged. Resolves true, or false after `timeoutMs`. */
  async flush(timeoutMs = 30_000): Promise<boolean> {
    const outbox = this.#outbox;
    if (!outbox) return true;
    const end = Date.now() + timeoutMs;
    while (outbox.depth > 0 || this.#acking.size > 0) {
      const left = end - Date.now();
      if (left <= 0) return false;
      // Re-check on every ack or drop, and at least every 200 ms (a stop, a lost connection).
      await new Promise<void>((resolve) => {
        const done = (): void => {
          clearTimeout(timer);
          this.off('ack', done);
          this.off('dropped', done);
          resolve();
        };
        const timer = setTimeout(done, Math.min(left, 200));
        this.on('ack', done);
        this.on('dropped', done);
      });
    }
    return true;
  }

  status(): AgentStatus {
    const c = this.#clock?.status();
    const ob = this.#outbox;
    const lastAck = ob?.lastAck;
    return {
      deviceId: this.#o.deviceId,
      broker: this.#o.broker,
      connected: this.connected,
      since: this.#since,
      connects: this.#attempts,
      ...(this.#lastConnectAt !== undefined ? { lastConnectAt: this.#lastConnectAt } : {}),
      ...(this.#lastError ? { lastError: this.#lastError.message } : {}),
      clock: c
        ? {
            source: c.source,
            offset: c.offset,
            uncertainty: c.uncertainty,
            ...(c.lastSync !== undefined ? { lastSync: c.lastSync } : {}),
            ...(c.server !== undefined ? { server: c.server } : {}),
            ...(c.lastError !== undefined ? { lastError: String(c.lastError) } : {}),
            syncs: c.syncs,
            failures: c.failures,
          }
        : { source: 'system', offset: 0, uncertainty: 0, syncs: 0, failures: 0 },
      outbox: {
        dir: this.#o.outboxDir,
        depth: ob?.depth ?? 0,
        bytes: ob?.bytes ?? 0,
        nextSeq: ob?.nextSeq ?? 0,
        ...(lastAck ? { lastAck: { seq: lastAck.seq, at: lastAck.at } } : {}),
      },
      inflight: this.#conn?.sentOrder.length ?? 0,
      sent: this.#sent,
      acked: this.#acked,
      received: { ...this.#received },
      dropped: this.#dropped,
    };
  }

  /**
   * Stops: waits up to `drainMs` (default drainOnStopMs) for queued envelopes to be acknowledged
   * if connected, disconnects cleanly, closes the outbox (what is still queued stays on disk and
   * is sent by the next start) and the clock if the agent started it.
   */
  stop(opts: { drainMs?: number } = {}): Promise<void> {
    this.#stopped ??= (async () => {
      if (!this.#started) return;
      const drainMs = opts.drainMs ?? this.#o.drainOnStopMs;
      if (this.connected && drainMs > 0) await this.flush(drainMs);
      this.#stopping = true;
      clearTimeout(this.#reconnectTimer);
      clearInterval(this.#statusTimer);
      const conn = this.#conn;
      if (conn) await closeClient(conn.client, 1000);
      this.#conn = undefined;
      await this.#ackChain;
      if (this.#o.statusFile !== null) this.#writeStatus();
      await this.#outbox?.close();
      if (this.#ownClock) this.#clock?.close();
    })();
    return this.#stopped;
  }

  // ── sending ────────────────────────────────────────────────────────────────────────────────

  #requireRunning(what: string): Outbox {
    if (!this.#outbox || this.#stopping || this.#stopped) {
      throw new WitnessError('WITNESS_ERR_INVALID_ARGUMENT', `${what}: the agent is ${this.#stopped ? 'stopped' : 'not started'}`);
    }
    return this.#outbox;
  }

  #pump(): void {
    const conn = this.#conn;
    const outbox = this.#outbox;
    if (!conn?.ready || !outbox || this.#stopping) return;
    const max = this.#o.maxInflight;
    while (conn.sentOrder.length < max) {
      const want = max - conn.sentOrder.length;
      // Everything pending below the cursor was sent on this connection or is being acked, so
      // this many pending entries include `want` unsent ones if there are that many.
      const batch = outbox.pending(conn.sentOrder.length + this.#acking.size + want).filter((e) => e.seq >= conn.cursor && !this.#acking.has(e.seq));
      if (batch.length === 0) return;
      for (const e of batch) {
        if (conn.sentOrder.length >= max) return;
        this.#send(conn, e);
      }
    }
  }

  #send(conn: Connection, e: OutboxEntry): void {
    const qos = e.qos as QoS;
    conn.cursor = e.seq + 1;
    conn.sentOrder.push(e.seq);
    const rec = { topic: e.topic, qos, at: Date.now(), done: false };
    conn.sent.set(e.seq, rec);
    this.#sent++;
    // QoS 0: the callback runs once the packet is written to the socket; 1/2: at PUBACK/PUBCOMP.
    conn.client.publish(e.topic, toBuffer(e.envelope), { qos, retain: e.retain }, (err) => {
      if (this.#conn !== conn) return; // a closed connection: the outbox re-sends it on the next one
      if (err) {
        // Not sent on a connection that is still up: start over on a new one rather than leave a
        // hole in the sequence this connection sends (the outbox re-sends from the oldest).
        this.#noteError(new Error(`sending seq ${e.seq}: ${err.message}`, { cause: err }));
        conn.lastError ??= err;
        conn.client.end(true);
        return;
      }
      rec.done = true;
      this.#ackInOrder(conn);
    });
  }

  /**
   * Hands completed envelopes to outbox.ack in sequence order (a QoS 2 envelope completes after a
   * later QoS 1 one), so the outbox's acknowledged prefix never has a hole whatever its ack means.
   */
  #ackInOrder(conn: Connection): void {
    const outbox = this.#outbox!;
    while (conn.sentOrder.length > 0) {
      const seq = conn.sentOrder[0]!;
      const rec = conn.sent.get(seq)!;
      if (!rec.done) break;
      conn.sentOrder.shift();
      conn.sent.delete(seq);
      this.#acking.add(seq);
      const latencyMs = Date.now() - rec.at;
      // Handed to the outbox at once (in sequence order: ack() queues synchronously), so acks of
      // one event-loop turn share one fdatasync; only the 'ack' events wait for each other. Chaining
      // outbox.ack itself made one fdatasync per message (bench/agent.ts: 1.00 syncs/message and
      // 0.31–0.39× a plain MQTT.js client; acking at once: 0.03 syncs/message, 0.58–1.00×).
      const durable = outbox.ack(seq);
      durable.catch(() => {}); // handled below, in order; never an unhandled rejection meanwhile
      this.#ackChain = this.#ackChain
        .then(() => durable)
        .then(
          () => {
            this.#acking.delete(seq);
            this.#acked++;
            this.emit('ack', { seq, topic: rec.topic, qos: rec.qos, latencyMs });
          },
          (e: unknown) => {
            this.#acking.delete(seq);
            this.#noteError(e instanceof Error ? e : new Error(String(e)));
          },
        );
    }
    this.#pump();
  }

  // ── connection ─────────────────────────────────────────────────────────────────────────────

  #connect(): void {
    if (this.#stopping) return;
    const o = this.#o;
    const attempt = ++this.#attempts;
    let client: MqttClient;
    try {
      // A fresh token for every attempt, issued at trusted time (the broker allows ± maxSkewMs).
      const password = toBuffer(
        createConnectToken({ seed: o.seed, deviceId: o.deviceId, publicKey: o.publicKey, audience: o.audience, now: Math.round(this.#clock!.now().time) }),
      );
      client = mqtt.connect(o.broker, {
        clientId: o.deviceId,
        username: TOKEN_USERNAME,
        password,
        protocolVersion: 4, // aedes 1.2 speaks MQTT 3.1.1
        clean: true,
        reconnectPeriod: 0,
        connectTimeout: o.connectTimeoutMs,
        keepalive: o.keepaliveS,
        resubscribe: false,
        queueQoSZero: false,
      });
    } catch (e) {
      this.#noteError(e instanceof Error ? e : new Error(String(e)));
      this.#scheduleReconnect('connect failed');
      return;
    }
    const conn: Connection = { client, attempt, ready: false, closed: false, cursor: 0, sentOrder: [], sent: new Map() };
    this.#conn = conn;

    client.on('connect', () => {
      if (this.#conn !== conn) return;
      conn.ready = true;
      this.#failures = 0;
      this.#offlineReported = false;
      this.#lastConnectAt = Date.now();
      for (const [filter, qos] of this.#subscriptions) {
        client.subscribe(filter, { qos }, (err) => {
          if (err) this.#noteError(new Error(`subscribe ${filter}: ${err.message}`, { cause: err }));
        });
      }
      this.emit('connect', { broker: o.broker, attempt, pending: this.#outbox?.depth ?? 0 });
      this.#pump();
    });
    client.on('message', (topic, payload, packet) => this.#onMessage(topic, payload, packet));
    client.on('error', (e) => {
      conn.lastError = e;
      this.#noteError(e);
    });
    client.on('close', () => {
      if (conn.closed) return;
      conn.closed = true;
      const wasReady = conn.ready;
      conn.ready = false;
      if (this.#conn === conn) this.#conn = undefined;
      // Release the client: no reconnect of its own, callbacks of unacked publishes fail (ignored).
      client.end(true);
      if (this.#stopping) return;
      const reason = conn.lastError?.message ?? (wasReady ? 'connection closed' : 'connection closed before CONNACK');
      this.#scheduleReconnect(reason);
    });
  }

  #scheduleReconnect(reason: string): void {
    if (this.#stopping) return;
    const o = this.#o;
    const base = Math.min(o.reconnectMaxMs, o.reconnectMinMs * 2 ** Math.min(this.#failures, 30));
    this.#failures++;
    const spread = base * o.reconnectJitter;
    const delay = Math.max(0, Math.round(base - spread + Math.random() * 2 * spread));
    if (!this.#offlineReported) {
      this.#offlineReported = true;
      this.emit('offline', { reason, retryInMs: delay });
    }
    clearTimeout(this.#reconnectTimer);
    this.#reconnectTimer = setTimeout(() => this.#connect(), delay);
  }

  #noteError(e: Error): void {
    this.#lastError = e;
    if (this.listenerCount('error') > 0) this.emit('error', e);
  }

  // ── receiving ──────────────────────────────────────────────────────────────────────────────

  #onMessage(topic: string, payload: Buffer, packet: IPublishPacket): void {
    let msg: IncomingMessage;
    try {
      const raw = new Uint8Array(payload.buffer, payload.byteOffset, payload.byteLength);
      const r = this.#verifier!.check(topic, raw, packet.retain);
      msg = {
        topic,
        payload: r.inner ?? raw,
        raw,
        verdict: r.verdict,
        ...(r.reason !== undefined ? { reason: r.reason } : {}),
        ...(r.gap !== undefined ? { gap: r.gap } : {}),
        ...(r.deviceId !== undefined ? { deviceId: r.deviceId } : {}),
        ...(r.kid !== undefined ? { kid: r.kid } : {}),
        ...(r.seq !== undefined ? { seq: r.seq } : {}),
        ...(r.dt !== undefined ? { time: r.dt } : {}),
        ...(r.du !== undefined ? { uncertainty: r.du } : {}),
        ...(r.ts !== undefined ? { timeSource: r.ts } : {}),
        qos: packet.qos as QoS,
        retain: packet.retain,
      };
    } catch (e) {
      this.#noteError(e instanceof Error ? e : new Error(String(e)));
      return;
    }
    this.#received[msg.verdict] = (this.#received[msg.verdict] ?? 0) + 1;
    try {
      this.emit('message', msg);
    } catch (e) {
      // A listener's exception must not unwind into MQTT.js's packet handling.
      this.#noteError(e instanceof Error ? e : new Error(String(e)));
    }
  }

  // ── status file ────────────────────────────────────────────────────────────────────────────

  #writeStatus(): void {
    const path = this.#o.statusFile;
    if (path === null) return;
    try {
      mkdirSync(dirname(path), { recursive: true });
      const tmp = `${path}.tmp`;
      writeFileSync(tmp, JSON.stringify({ format: 'witness-agent-status/v1', pid: process.pid, writtenAt: Date.now(), stopped: this.#stopping, ...this.status() }) + '\n');
      renameSync(tmp, path);
    } catch (e) {
      this.#noteError(new WitnessError('WITNESS_ERR_IO', `cannot write the status file ${path}: ${(e as Error).message}`, { cause: e, details: { path } }));
    }
  }
}

/** Ends an MQTT.js client cleanly (DISCONNECT), forcibly after `timeoutMs`. */
function closeClient(client: MqttClient, timeoutMs: number): Promise<void> {
  return new Promise<void>((resolve) => {
    const t = setTimeout(() => client.end(true, {}, () => resolve()), timeoutMs);
    client.end(false, {}, () => {
      clearTimeout(t);
      resolve();
    });
  });
}
