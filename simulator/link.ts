/**
 * One simulated device's MQTT connection: MQTT.js with nothing automatic. No reconnect of its own
 * (every connect of a device is a planned, recorded event with a fresh proof-of-possession token —
 * a reused token is refused as a replayed nonce), no queueing while offline (the run file must say
 * exactly what was written to a socket), MQTT 3.1.1 (what aedes 1.2 speaks).
 */
import mqtt, { type MqttClient } from 'mqtt';
import { createConnectToken, TOKEN_USERNAME } from '../shared/token/connect-token.js';

export interface ConnectOutcome {
  ok: boolean;
  /** CONNACK return code, when a CONNACK came. */
  rc?: number;
  /** ms from the start of the attempt to the CONNACK (or the failure). */
  ms: number;
  err?: string;
}

export interface Credentials {
  clientId: string;
  /** A device: sign a fresh connect token for every attempt. */
  device?: { seed: Uint8Array; publicKey: Uint8Array; audience: string };
  /** Otherwise username/password, or anonymous when both are absent. */
  username?: string;
  password?: string;
}

export class SimLink {
  readonly #broker: string;
  readonly #timeoutMs: number;
  #client: MqttClient | null = null;
  #closed = true;
  #closeWaiters: Array<() => void> = [];
  onMessage: ((topic: string, payload: Buffer) => void) | null = null;

  constructor(broker: string, timeoutMs: number) {
    this.#broker = broker;
    this.#timeoutMs = timeoutMs;
  }

  get open(): boolean {
    return !this.#closed;
  }

  connect(c: Credentials): Promise<ConnectOutcome> {
    const started = performance.now();
    const password = c.device
      ? Buffer.from(createConnectToken({ seed: c.device.seed, deviceId: c.clientId, publicKey: c.device.publicKey, audience: c.device.audience }))
      : c.password;
    const username = c.device ? TOKEN_USERNAME : c.username;
    const client = mqtt.connect(this.#broker, {
      clientId: c.clientId,
      ...(username !== undefined ? { username } : {}),
      ...(password !== undefined ? { password } : {}),
      protocolVersion: 4,
      clean: true,
      reconnectPeriod: 0,
      connectTimeout: this.#timeoutMs,
      keepalive: 60,
      resubscribe: false,
      queueQoSZero: false,
    });
    this.#client = client;
    return new Promise<ConnectOutcome>((resolve) => {
      let settled = false;
      const done = (o: Omit<ConnectOutcome, 'ms'>): void => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        resolve({ ...o, ms: performance.now() - started });
      };
      const timer = setTimeout(() => {
        done({ ok: false, err: `no CONNACK within ${this.#timeoutMs} ms` });
        client.end(true);
      }, this.#timeoutMs + 1000);
      client.on('connect', (p) => {
        this.#closed = false;
        done({ ok: true, rc: p.returnCode ?? 0 });
      });
      client.on('error', (e: Error & { code?: unknown }) => {
        // A refused CONNACK surfaces as an error whose code is the return code.
        if (typeof e.code === 'number') done({ ok: false, rc: e.code, err: e.message });
        else done({ ok: false, err: e.message });
      });
      client.on('message', (topic, payload) => this.onMessage?.(topic, payload));
      client.on('close', () => {
        this.#closed = true;
        done({ ok: false, err: 'connection closed before CONNACK' });
        const w = this.#closeWaiters;
        this.#closeWaiters = [];
        for (const f of w) f();
      });
    });
  }

  /** Writes one PUBLISH; resolves with the ms to its PUBACK/PUBCOMP (QoS > 0) or to the write (QoS 0), or an error. */
  publish(topic: string, payload: Uint8Array, qos: 0 | 1 | 2, retain: boolean): Promise<{ ok: boolean; ms: number; err?: string }> {
    const client = this.#client;
    const started = performance.now();
    if (!client || this.#closed) return Promise.resolve({ ok: false, ms: 0, err: 'not connected' });
    return new Promise((resolve) => {
      let settled = false;
      const settle = (r: { ok: boolean; ms: number; err?: string }): void => {
        if (settled) return;
        settled = true;
        this.#closeWaiters = this.#closeWaiters.filter((f) => f !== onClose);
        resolve(r);
      };
      // MQTT.js does not call back a QoS > 0 publish whose connection closed (with no reconnect,
      // the callback would never come): the close settles it.
      const onClose = (): void => settle({ ok: false, ms: performance.now() - started, err: 'connection closed before the acknowledgement' });
      this.#closeWaiters.push(onClose);
      client.publish(topic, Buffer.from(payload.buffer, payload.byteOffset, payload.byteLength), { qos, retain }, (err) => {
        settle(err ? { ok: false, ms: performance.now() - started, err: err.message } : { ok: true, ms: performance.now() - started });
      });
    });
  }

  subscribe(filter: string, qos: 0 | 1 | 2): Promise<number | null> {
    const client = this.#client;
    if (!client) return Promise.resolve(null);
    return new Promise((resolve) => {
      client.subscribe(filter, { qos }, (err, granted) => resolve(err ? null : (granted?.[0]?.qos ?? null)));
    });
  }

  /** Resolves true when the connection closes within `ms`, false otherwise. */
  waitClosed(ms: number): Promise<boolean> {
    if (this.#closed) return Promise.resolve(true);
    return new Promise((resolve) => {
      const t = setTimeout(() => {
        this.#closeWaiters = this.#closeWaiters.filter((f) => f !== fire);
        resolve(false);
      }, ms);
      const fire = (): void => {
        clearTimeout(t);
        resolve(true);
      };
      this.#closeWaiters.push(fire);
    });
  }

  /** Sends DISCONNECT (after what is in flight, bounded) and closes. */
  async end(): Promise<void> {
    const client = this.#client;
    if (!client) return;
    this.#client = null;
    if (this.#closed) {
      client.end(true);
      return;
    }
    await new Promise<void>((resolve) => {
      const t = setTimeout(() => {
        client.end(true);
        resolve();
      }, 2000);
      client.end(false, {}, () => {
        clearTimeout(t);
        resolve();
      });
    });
    this.#closed = true;
  }
}
