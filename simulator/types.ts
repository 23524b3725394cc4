/**
 * The simulator's shared vocabulary: the parsed scenario, the deterministic plan a scenario turns
 * into, and the lines of a run file. Every part of the simulator (scenario.ts, plan.ts, runner.ts,
 * replay.ts, check.ts, report.ts) agrees on these types; docs/FORMATS.md §9 gives the run file's
 * exact layout.
 *
 * The split that makes `witness sim check` possible: the PLAN is a pure function of the scenario
 * (same seed → same devices, keys, topics, payloads, sequence numbers, incidents and expected
 * verdicts); the RUNNER only adds wall-clock time (the envelope's time claim and the send times).
 * So the ground truth — what each message should be recorded as — is known before anything is
 * sent, and the run file carries it next to what was actually sent.
 */

/** Every incident the simulator can inject (issue 5 §2). Stable names: used in scenarios and run files. */
export const INCIDENT_TYPES = [
  'unsigned', // a plain payload where an envelope is expected            → env missing
  'bad-signature', // payload altered after signing                           → env invalid
  'wrong-topic', // envelope signed for another topic, published here       → env wrong-topic
  'replayed', // an earlier envelope sent again, byte for byte            → env replayed
  'dropped', // a signed message never sent                              → next message env gap
  'reordered', // two consecutive messages sent in swapped order           → gap, then out-of-order
  'clock-skew', // device clock ahead by skewMs                             → env clock-skew
  'unknown-key', // signed with a key the broker never registered           → env unknown-key
  'revoked-key', // signed with a key the broker has revoked                  → env revoked
  'acl-violation', // published on a topic the device may not publish to      → acl deny, refused
  'connect-storm', // the device reconnects `connects` times in quick succession → every connect recorded
  'burst', // the device sends `messages` messages back to back        → every one recorded valid
] as const;
export type IncidentType = (typeof INCIDENT_TYPES)[number];

/** Envelope verdicts the broker records (broker/records.ts ENVELOPE_VERDICTS), as far as the simulator expects them. */
export type ExpectedVerdict = 'valid' | 'missing' | 'invalid' | 'wrong-topic' | 'replayed' | 'gap' | 'out-of-order' | 'clock-skew' | 'unknown-key' | 'revoked';

export type QoS = 0 | 1 | 2;

// ── scenario (simulator/scenario.ts parses YAML into this; every field resolved, durations in ms) ──

export interface PayloadConstant {
  model: 'constant';
  /** Bytes per message. */
  size: number;
  /** The fill byte, 0–255. */
  byte: number;
}
export interface PayloadRandom {
  model: 'random';
  /** Inclusive size range, bytes. */
  minSize: number;
  maxSize: number;
}
export interface SensorModel {
  name: string;
  /** First value. */
  start: number;
  /** Largest change per message (uniform in ±step). */
  step: number;
  min: number;
  max: number;
  /** Decimal places kept. */
  decimals: number;
}
export interface PayloadJson {
  model: 'json';
  sensors: SensorModel[];
  /** Pad the JSON text with a `pad` field to at least this many bytes; 0 = no padding. */
  padTo: number;
}
export type PayloadModel = PayloadConstant | PayloadRandom | PayloadJson;

export interface Fleet {
  name: string;
  count: number;
  /** Device id pattern: `{fleet}`, `{n}` (0-based index), `{n:4}` (zero-padded to 4). Result must be a valid device id. */
  idPattern: string;
  /** Mixed into key derivation: change it to give the fleet new keys without changing the scenario seed. */
  keySeed: string;
  /** Topic template: `{id}`, `{fleet}`, `{n}`. */
  topic: string;
  /** Mean time between two messages of one device, ms. */
  intervalMs: number;
  /** Each interval is intervalMs × (1 + jitter × u), u uniform in [-1, 1); 0 ≤ jitter < 1. */
  jitter: number;
  /** Weights of QoS 0, 1, 2 (normalised). */
  qos: [number, number, number];
  /** Fraction of messages sent with retain. */
  retain: number;
  payload: PayloadModel;
}

export interface IncidentSpec {
  type: IncidentType;
  /** Fleets it applies to (names); empty = every fleet. */
  fleets: string[];
  /** Fraction of those fleets' devices chosen (at least one device if > 0). */
  devices: number;
  /** First occurrence, ms after the device's first message time. */
  atMs: number;
  /** Occurrences per chosen device. */
  count: number;
  /** Time between occurrences, ms. */
  everyMs: number;
  /** clock-skew: how far ahead the device clock is, ms. */
  skewMs: number;
  /** connect-storm: reconnects per occurrence. */
  connects: number;
  /** burst: messages per occurrence. */
  messages: number;
}

export interface Scenario {
  /** Scenario name (for reports). */
  name: string;
  /** Root of every random choice: the same seed gives the same run. */
  seed: string;
  /** How long devices keep publishing after they connect, ms. */
  durationMs: number;
  /** Connects are spread evenly over this window, ms (0 = all at once). */
  rampMs: number;
  /** Audience of the connect tokens (the broker's auth.token.audience). */
  audience: string;
  /** Declared uncertainty of the simulated devices' clocks (system time), ms. */
  clockUncertaintyMs: number;
  /** The broker envelope policy the scenario expects on its fleet topics: decides which incidents are refused. */
  envelopeMode: 'observe' | 'enforce';
  /** A subscriber that measures end-to-end latency; filter '' = none. */
  subscriber: { filter: string; qos: QoS };
  fleets: Fleet[];
  incidents: IncidentSpec[];
}

// ── plan (simulator/plan.ts: pure, deterministic) ──────────────────────────────────────────────

export interface PlannedDevice {
  id: string;
  fleet: string;
  /** Index within its fleet. */
  n: number;
  /** Ed25519 seed of the registered key (32 bytes), derived from scenario seed, fleet keySeed and id. */
  seed: Uint8Array;
  publicKey: Uint8Array;
  /** A second key, registered and then revoked (present only when a revoked-key incident chose this device). */
  revoked?: { seed: Uint8Array; publicKey: Uint8Array };
  /** A key never registered (present only when an unknown-key incident chose this device). */
  unknown?: { seed: Uint8Array; publicKey: Uint8Array };
  /** When this device connects, ms after the run start (the ramp). */
  connectAtMs: number;
}

/** What the ledger should say about one message: the ground truth `witness sim check` compares with. */
export interface Expectation {
  /** Should the broker have a publish record of it at all? (false only for a dropped message: never sent). */
  present: boolean;
  /** Expected envelope verdict (absent when present is false). */
  env?: ExpectedVerdict;
  /** For env 'gap': messages missing. */
  gap?: number;
  /** Expected ACL verdict. */
  acl?: 'allow' | 'deny';
  /** Accepted (true) or refused with ok:false (false): ACL deny always, envelope failures under enforce. */
  ok?: boolean;
}

/** How the runner builds a message's MQTT payload. */
export interface EnvelopePlan {
  /** Sequence number in the envelope. */
  seq: number;
  /** Advances the device's chain (seq/prev): false for incidents the broker will not accept as authentic. */
  chain: boolean;
  /** Which key signs it. */
  key: 'device' | 'revoked' | 'unknown';
  /** Topic claim (differs from the publish topic for wrong-topic). */
  signedTopic: string;
  /** Added to the device clock for the time claim, ms (clock-skew). */
  skewMs: number;
  /** Flip one payload byte after signing (bad-signature). */
  alter: boolean;
}

export interface PlannedPublish {
  kind: 'publish';
  /** Unique within the run: `DEVICE_ID#k`, k counting this device's planned items from 0. */
  ref: string;
  device: string;
  /** When to send, ms after the run start. Within one device, items are in send order and atMs never decreases. */
  atMs: number;
  /** Topic it is published on. */
  topic: string;
  /** The application payload (before signing / alteration). */
  payload: Uint8Array;
  qos: QoS;
  retain: boolean;
  /** null: sent unsigned (plain payload). */
  envelope: EnvelopePlan | null;
  /** Send again, byte for byte, the MQTT payload of this earlier ref (replayed); the other fields describe that message. */
  replayOf?: string;
  /** false: signed (the chain advances) but never sent (dropped). */
  send: boolean;
  /** Set on every item an incident produced or changed: the incident occurrence id `TYPE:DEVICE:k`. */
  incident?: { type: IncidentType; id: string };
  expect: Expectation;
}

export interface PlannedConnect {
  kind: 'connect';
  ref: string;
  device: string;
  atMs: number;
  /** Present for a connect-storm reconnect: the occurrence it belongs to. */
  incident?: { type: IncidentType; id: string };
}

export type PlannedItem = PlannedPublish | PlannedConnect;

// ── run file (simulator/run-file.ts writes and reads it; docs/FORMATS.md §9) ─────────────────────

export const RUN_FORMAT = 'witness-sim-run/v1';

export interface RunDeviceInfo {
  id: string;
  fleet: string;
  /** base64url public keys. */
  pub: string;
  revokedPub?: string;
  unknownPub?: string;
}

export interface RunHeader {
  format: typeof RUN_FORMAT;
  /** 'run' (witness sim run) or 'replay' (witness sim replay of a run file or a ledger export). */
  kind: 'run' | 'replay';
  scenario: Scenario;
  /** Wall-clock time of t = 0, ms since the epoch. */
  startedAt: number;
  broker: string;
  devices: RunDeviceInfo[];
  /** The tool that wrote it. */
  tool: string;
}

/** A connect attempt as it happened. `t` is ms after startedAt. */
export interface RunConnect {
  k: 'connect';
  t: number;
  dev: string;
  ref?: string;
  ok: boolean;
  /** CONNACK return code; absent when no CONNACK came (timeout, socket error). */
  rc?: number;
  /** Time to CONNACK, ms. */
  ms?: number;
  /** Why it failed, for people. */
  err?: string;
  incident?: { type: IncidentType; id: string };
}

/** A message as it was sent (or, with sent:false, deliberately not sent). */
export interface RunPublish {
  k: 'pub';
  t: number;
  dev: string;
  ref: string;
  topic: string;
  q: QoS;
  r: boolean;
  /** Was it written to the socket? */
  sent: boolean;
  /** base64url SHA-256 of the MQTT payload bytes: the broker's `h`. */
  h: string;
  /** base64url SHA-256 of the application payload. */
  ph: string;
  /** Envelope sequence number, when signed. */
  seq?: number;
  /** base64url SHA-256 of the envelope (the broker's `eh`), when signed. */
  eh?: string;
  /** The MQTT payload, base64: what replay sends again. */
  b64: string;
  /** ms from send to PUBACK/PUBCOMP (QoS > 0), when it came. */
  ack?: number;
  incident?: { type: IncidentType; id: string };
  expect: Expectation;
}

export interface RunDisconnect {
  k: 'disconnect';
  t: number;
  dev: string;
  /** 'planned' (storm, end of run), 'refused' (the broker closed after a refusal), 'error'. */
  why: string;
}

export interface RunEnd {
  k: 'end';
  t: number;
  sent: number;
  acked: number;
  received: number;
  errors: number;
}

export type RunLine = RunConnect | RunPublish | RunDisconnect | RunEnd;

// ── metrics (runner → report) ────────────────────────────────────────────────────────────────

/** One second of the run. */
export interface MetricsBin {
  /** Seconds since the run start. */
  t: number;
  sent: number;
  acked: number;
  received: number;
  /** Successful connects. */
  connects: number;
  errors: number;
  /** Failed connect attempts (MetricsCollector always fills it). */
  connectFailed?: number;
  /** Publishes refused by the broker (MetricsCollector always fills it). */
  refused?: number;
  /** Devices connected at the end of this second (MetricsCollector always fills it). */
  connected?: number;
  /** End-to-end latency percentiles of the messages received in this second, ms (absent if none). */
  p50?: number;
  p95?: number;
  p99?: number;
  max?: number;
}
