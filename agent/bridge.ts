/**
 * Bridge mode: device software that knows nothing of Witness keeps talking plain MQTT 3.1.1 to a
 * broker on this box; the bridge — an in-process aedes on a loopback port — turns each of its
 * publishes into a signed envelope from this device and forwards it upstream through the agent
 * (same topic, same QoS and retain; outbox, ordering and reconnects included), and proxies its
 * subscriptions upstream, delivering what arrives back with the original payload (the envelope
 * taken off), the verdict on each envelope going to the log.
 *
 *   local app ──MQTT──► aedes (127.0.0.1) ──authorizePublish──► agent.publish ──► upstream broker
 *   local app ◄──────── aedes.publish(payload) ◄── agent 'message' (verdict) ◄── upstream broker
 *
 * Why each step is where it is:
 * - A local publish is signed in `authorizePublish`, which aedes runs before it answers: the local
 *   app's PUBACK (QoS 1) or PUBREC (QoS 2) means the envelope is durable in the outbox.
 * - aedes has no "accept but do not route" answer (an error closes the client), so once signed the
 *   packet is re-addressed to SINK_TOPIC, which no local client may subscribe to, and not retained
 *   here (upstream keeps the retained message). Local subscribers get every message — their own
 *   included — the way MQTT delivers it: from upstream, once, verified.
 * - Anyone who can reach the port can publish as this device, so the bridge listens on loopback
 *   only and refuses other addresses.
 */
import { createServer, type AddressInfo, type Server } from 'node:net';
import { Aedes, type Client, type PublishPacket, type Subscription } from 'aedes';
import { WitnessError } from '../shared/errors.js';
import { BRIDGE_DEFAULTS, checkBridgeListen } from './options.js';
import type { IncomingMessage, QoS, WitnessAgent } from './agent.js';

/** Where signed local publishes go inside the bridge: a `$` topic no local client may subscribe to. */
export const SINK_TOPIC = '$witness-bridge/signed';
const SINK_PREFIX = '$witness-bridge';

export type BridgeLogEvent =
  | { kind: 'client'; clientId: string; connected: boolean }
  | { kind: 'publish'; clientId: string; topic: string; qos: QoS; seq: number }
  | { kind: 'publish-refused'; clientId: string; topic: string; error: string }
  | { kind: 'subscribe'; clientId: string; filter: string; granted: QoS | null }
  | { kind: 'unsubscribe'; filter: string }
  | { kind: 'message'; message: IncomingMessage; delivered: boolean };

export interface BridgeOptions {
  /** The started agent that signs and forwards. The bridge does not stop it. Required. */
  agent: WitnessAgent;
  /** Where local apps connect, `host:port` on a loopback address; port 0 picks a free one. Default `127.0.0.1:1884`. */
  listen?: string;
  /** Received messages delivered to local subscribers: `all` (the verdict goes to the log) or only `valid` ones. Default `all`. */
  deliver?: 'all' | 'valid';
  /** Receives one event per thing worth a log line. Default: none. */
  log?: (e: BridgeLogEvent) => void;
}

export interface RunningBridge {
  /** `mqtt://HOST:PORT` local apps connect to. */
  url: string;
  host: string;
  port: number;
  aedes: Aedes;
  /** Closes the local broker (not the agent). */
  close(): Promise<void>;
}

export async function startBridge(o: BridgeOptions): Promise<RunningBridge> {
  const agent = o.agent;
  const listen = o.listen ?? BRIDGE_DEFAULTS.listen;
  const deliver = o.deliver ?? BRIDGE_DEFAULTS.deliver;
  const log = o.log ?? ((): void => {});
  const { host, port } = checkBridgeListen(listen);

  // Upstream subscriptions held for local clients: filter → client ids holding it.
  const holders = new Map<string, Set<string>>();
  const byClient = new Map<string, Set<string>>();

  const release = (clientId: string, filter: string): void => {
    byClient.get(clientId)?.delete(filter);
    const h = holders.get(filter);
    if (!h || !h.delete(clientId) || h.size > 0) return;
    holders.delete(filter);
    log({ kind: 'unsubscribe', filter });
    agent.unsubscribe(filter).catch(() => {});
  };

  // QoS 2 messages signed recently, by client and message id (bounded: ids are reused anyway).
  const signedQos2 = new Set<string>();
  const remember = (key: string): void => {
    signedQos2.delete(key);
    signedQos2.add(key);
    if (signedQos2.size > 4096) signedQos2.delete(signedQos2.values().next().value!);
  };

  const aedes = new Aedes({
    id: `witness-bridge-${agent.deviceId}`,
    // Local apps prove nothing: the loopback address is the boundary (see above).
    authenticate: (_client, _user, _password, done) => done(null, true),
    authorizePublish: (client: Client | null, packet: PublishPacket, done: (e?: Error | null) => void) => {
      if (!client) return done(null); // the bridge's own delivery of upstream messages
      const topic = packet.topic;
      const qos = packet.qos as QoS;
      // aedes authorizes before it looks for a QoS 2 duplicate: a retransmission (DUP set,
      // [MQTT-3.3.1-1]) of a message already signed must not be signed and sent a second time.
      const q2 = qos === 2 && packet.messageId !== undefined ? `${client.id}\u0000${packet.messageId}` : undefined;
      if (q2 !== undefined && packet.dup && signedQos2.has(q2)) {
        packet.topic = SINK_TOPIC;
        packet.retain = false;
        return done(null);
      }
      agent.publish(topic, packet.payload as Buffer, { qos, retain: packet.retain }).then(
        (q) => {
          if (q2 !== undefined) remember(q2);
          log({ kind: 'publish', clientId: client.id, topic, qos, seq: q.seq });
          packet.topic = SINK_TOPIC;
          packet.retain = false;
          done(null);
        },
        (e: unknown) => {
          log({ kind: 'publish-refused', clientId: client.id, topic, error: (e as Error).message });
          done(e instanceof Error ? e : new Error(String(e)));
        },
      );
    },
    authorizeSubscribe: (client: Client, sub: Subscription, done: (e: Error | null, s?: Subscription | null) => void) => {
      if (sub.topic.startsWith(SINK_PREFIX)) return done(null, null); // SUBACK 0x80
      const filter = sub.topic;
      const qos = Math.min(sub.qos, 2) as QoS;
      const already = holders.get(filter);
      const hold = (): void => {
        let h = holders.get(filter);
        if (!h) holders.set(filter, (h = new Set()));
        h.add(client.id);
        let f = byClient.get(client.id);
        if (!f) byClient.set(client.id, (f = new Set()));
        f.add(filter);
      };
      if (already && already.size > 0) {
        hold();
        log({ kind: 'subscribe', clientId: client.id, filter, granted: qos });
        return done(null, sub);
      }
      agent.subscribe(filter, { qos }).then(
        (r) => {
          hold();
          // Offline: granted at the next connect; the requested QoS stands meanwhile.
          const granted = (r.qos === null ? qos : Math.min(qos, r.qos)) as QoS;
          log({ kind: 'subscribe', clientId: client.id, filter, granted });
          done(null, { ...sub, qos: granted });
        },
        () => {
          log({ kind: 'subscribe', clientId: client.id, filter, granted: null });
          done(null, null);
        },
      );
    },
  });

  aedes.on('unsubscribe', (filters: string[], client: Client) => {
    for (const f of filters) release(client.id, f);
  });
  aedes.on('client', (client: Client) => log({ kind: 'client', clientId: client.id, connected: true }));
  aedes.on('clientDisconnect', (client: Client) => {
    log({ kind: 'client', clientId: client.id, connected: false });
    // A clean session's subscriptions end with it [MQTT-3.1.2-6]; a persistent one keeps them.
    if (client.clean) for (const f of [...(byClient.get(client.id) ?? [])]) release(client.id, f);
    if (client.clean) byClient.delete(client.id);
  });
  // A local client's broken packet is that client's problem, never the bridge's.
  (aedes as unknown as NodeJS.EventEmitter).on('error', () => {});

  const onMessage = (m: IncomingMessage): void => {
    const ok = deliver === 'all' || m.verdict === 'valid';
    log({ kind: 'message', message: m, delivered: ok });
    if (!ok) return;
    const packet = { cmd: 'publish', topic: m.topic, payload: Buffer.from(m.payload), qos: m.qos, retain: false, dup: false } as PublishPacket;
    aedes.publish(packet, () => {});
  };
  agent.on('message', onMessage);

  await aedes.listen();
  const server: Server = createServer((socket) => aedes.handle(socket));
  try {
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(port, host, () => {
        server.off('error', reject);
        resolve();
      });
    });
  } catch (e) {
    agent.off('message', onMessage);
    await new Promise<void>((r) => aedes.close(() => r()));
    const err = e as NodeJS.ErrnoException;
    throw new WitnessError('WITNESS_ERR_IO', `bridge cannot listen on ${listen}: ${err.message}${err.code === 'EADDRINUSE' ? ' (another process uses that port: pick another with --listen)' : ''}`, { cause: e });
  }
  const a = server.address() as AddressInfo;
  const shownHost = a.family === 'IPv6' ? `[${a.address}]` : a.address;
  let closing: Promise<void> | undefined;
  return {
    url: `mqtt://${shownHost}:${a.port}`,
    host: a.address,
    port: a.port,
    aedes,
    close() {
      closing ??= (async () => {
        agent.off('message', onMessage);
        // aedes first, then the server (DESIGN §4: the other order took ~1.8 s).
        await new Promise<void>((r) => aedes.close(() => r()));
        await new Promise<void>((r) => server.close(() => r()));
      })();
      return closing;
    },
  };
}
