/**
 * Audit records: what the broker writes to the ledger for each event (docs/FORMATS.md §Audit
 * record gives every field). One JSON object per line, short stable keys. Every record starts
 * `{"i":INDEX,"v":1,"e":EVENT,` — the ledger adds `i`; `v` and `e` come first so a reader can
 * dispatch on a prefix.
 *
 * Common fields (present when they apply):
 *   v  format version (1)            e  event type (below)
 *   t  broker time, ms since epoch   u  its uncertainty, ms
 *   n  node id                       s  session id (one per socket, unique per broker start)
 *   c  MQTT client id                id proven identity: device:ID+KEYHASH | user:NAME | cert:NAME | anonymous | broker
 *   a  remote address "ip:port"
 */
import { RECORD_VERSION } from '../shared/ledger/record.js';

/** Event types, control plane then data plane. Stable: add, never rename. */
export const EVENTS = {
  start: 'start',
  stop: 'stop',
  reload: 'reload',
  device: 'device',
  connect: 'connect',
  subscribe: 'subscribe',
  unsubscribe: 'unsubscribe',
  publish: 'publish',
  deliver: 'deliver',
  keepalive: 'keepalive',
  disconnect: 'disconnect',
  error: 'error',
  alert: 'alert',
  /** An access to the HTTP API (broker/http/server.ts). */
  api: 'api',
  // written by the ledger itself
  checkpoint: 'checkpoint',
  recovery: 'recovery',
  prune: 'prune',
} as const;

export type EventType = (typeof EVENTS)[keyof typeof EVENTS];

/** Envelope verdicts (DESIGN §2.4). `gap` carries the number of missing messages in `gap`. */
export const ENVELOPE_VERDICTS = [
  'valid',
  'missing',
  'malformed',
  'unknown-key',
  'revoked',
  'invalid',
  'wrong-topic',
  'replayed',
  'out-of-order',
  'gap',
  'chain-break',
  'clock-skew',
  'unchecked',
] as const;
export type EnvelopeVerdictName = (typeof ENVELOPE_VERDICTS)[number];

export type Actor = 'client' | 'broker' | 'will';

export interface CommonFields {
  v: typeof RECORD_VERSION;
  e: EventType;
  t: number;
  u: number;
  n: string;
  s?: string;
  c?: string;
  id?: string;
  a?: string;
}

export type AuditRecord = CommonFields & Record<string, unknown>;

export { RECORD_VERSION };
