/**
 * Simulator scenarios: YAML 1.2 → the resolved `Scenario` of simulator/types.ts (every default
 * filled in, durations in ms). Problems are all reported at once, each as
 * `FILE:LINE:COL: path: what (hint)`, with a "did you mean" for misspelt keys and values
 * (broker/config/yaml-schema.ts, the same toolkit as the broker configuration); the thrown
 * WitnessError (WITNESS_ERR_SCENARIO_INVALID) carries them in `details.problems`.
 *
 * The file (simulator/scenarios/*.yaml are worked examples):
 *
 *   name: incidents              # for reports; default: the file name without .yaml
 *   seed: "demo-1"               # REQUIRED string: the root of every random choice
 *   duration: 20s                # REQUIRED: how long each device publishes after it connects
 *   ramp: 2s                     # connects spread evenly over this window; default 0 (all at once)
 *   audience: mqtt-witness       # connect-token audience (broker auth.token.audience); default mqtt-witness
 *   clockUncertainty: 5ms        # declared device clock uncertainty; default 5ms
 *   envelopeMode: observe        # observe | enforce: the broker's envelope policy on the fleet topics,
 *                                # which decides the expected `ok` of envelope incidents; default observe
 *   subscriber: { filter: "devices/#", qos: 0 }   # latency subscriber; default none
 *   fleets:                      # REQUIRED, at least one
 *     - name: sensors            # REQUIRED: 1–32 of A-Z a-z 0-9 . _ -
 *       count: 20                # REQUIRED: 1–100,000 devices
 *       idPattern: "sensor-{n:3}"   # {fleet}, {n} (0-based), {n:W} (zero-padded to W); default "{fleet}-{n}"
 *       keySeed: sensors         # mixed into key derivation; default: the fleet name
 *       topic: "devices/{id}/telemetry"   # {id}, {fleet}, {n}, {n:W}; default "devices/{id}/telemetry"
 *       interval: 1s             # per device, OR
 *       rate: 50                 # messages/s for the whole fleet (interval = count × 1000 / rate ms)
 *                                # — at most one of the two; default interval 1s
 *       jitter: 0.1              # each interval × (1 + jitter × u), u uniform in [-1, 1); 0 ≤ jitter < 1; default 0
 *       qos: { 0: 1, 1: 3 }      # weights of QoS 0, 1, 2 (or one number: qos: 1); default QoS 1
 *       retain: 0                # fraction of messages published with retain; default 0
 *       payload:                 # default: json with one sensor temp (start 20, step 0.5, -40…85, 1 decimal)
 *         model: json            # {"id":DEVICE,"n":MESSAGE_NUMBER,"<sensor>":value,…}
 *         sensors: [{ name: temp, start: 20, step: 0.5, min: -40, max: 85, decimals: 1 }]
 *         padTo: 0               # pad with a "pad" field to at least this many bytes
 *       # payload: { model: constant, size: 64, byte: 0x41 }
 *       # payload: { model: random, size: [32, 256] }      (size may be one number)
 *   incidents:                   # default none
 *     - type: bad-signature      # REQUIRED: one of INCIDENT_TYPES (types.ts)
 *       fleets: [sensors]        # default: every fleet
 *       devices: 0.1             # fraction of those fleets' devices (at least one if > 0); default 0.1
 *       at: 5s                   # first occurrence, after the device's first message; default 25% of duration
 *       count: 1                 # occurrences per chosen device; default 1
 *       every: 2s                # between occurrences; default 1s
 *       skew: 60s                # clock-skew only: device clock ahead by this much; default 60s
 *       connects: 5              # connect-storm only: reconnects per occurrence; default 5
 *       messages: 50             # burst only: messages per occurrence; default 50
 *
 * Durations are a whole number of milliseconds (`250`) or a string with units ms, s, m, h
 * (`250ms`, `10s`, `1.5s`, `2m`, `1h30m`).
 */
import { readFileSync } from 'node:fs';
import { basename, resolve } from 'node:path';
import { isMap, isScalar, isSeq, type Node, type Pair } from 'yaml';
import { WitnessError } from '../shared/errors.js';
import { isDeviceId } from '../shared/token/device-id.js';
import { isValidFilter, isValidTopic } from '../broker/acl/topic.js';
import { formatProblem } from '../broker/config/load.js';
import { BAD, closest, int, isBad, list, obj, oneOf, parseYamlFile, report, root, str, whereOf, type ConfigProblem, type Ctx, type V, type Where } from '../broker/config/yaml-schema.js';
import { INCIDENT_TYPES, type Fleet, type IncidentSpec, type IncidentType, type PayloadModel, type QoS, type Scenario, type SensorModel } from './types.js';

export type { ConfigProblem as ScenarioProblem } from '../broker/config/yaml-schema.js';

// ── limits ───────────────────────────────────────────────────────────────────────────────────

export const LIMITS = {
  fleetDevices: 100_000,
  totalDevices: 1_000_000,
  fleets: 1_000,
  /** Planned regular messages of one device over the run. */
  messagesPerDevice: 1_000_000,
  payloadBytes: 1_048_576,
  occurrences: 10_000,
  burstMessages: 100_000,
  stormConnects: 1_000,
  /** 7 days. */
  durationMs: 7 * 86_400_000,
  /** One year. */
  skewMs: 365 * 86_400_000,
  /** Least time between two messages of one device. */
  minIntervalMs: 1,
} as const;

export const DEFAULTS = {
  rampMs: 0,
  audience: 'mqtt-witness',
  clockUncertaintyMs: 5,
  envelopeMode: 'observe' as const,
  idPattern: '{fleet}-{n}',
  topic: 'devices/{id}/telemetry',
  intervalMs: 1000,
  qos: [0, 1, 0] as [number, number, number],
  /** Fraction of the duration. */
  incidentAt: 0.25,
  incidentDevices: 0.1,
  incidentEveryMs: 1000,
  skewMs: 60_000,
  connects: 5,
  messages: 50,
  sensor: { name: 'temp', start: 20, step: 0.5, min: -40, max: 85, decimals: 1 },
} as const;

/** The device time must be ahead by more than its uncertainty plus this for `clock-skew` (broker uncertainty, tolerance, delay). */
export const MIN_SKEW_MARGIN_MS = 5_000;

// ── public API ───────────────────────────────────────────────────────────────────────────────

/** Reads and parses a scenario file. Throws WITNESS_ERR_IO or WITNESS_ERR_SCENARIO_INVALID. */
export function loadScenario(path: string): Scenario {
  const file = resolve(path);
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (e) {
    throw new WitnessError('WITNESS_ERR_IO', `cannot read the scenario ${file}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`, {
      cause: e,
      details: { file },
    });
  }
  return parseScenario(text, file);
}

/** Parses scenario text; `file` names it in problems and gives the default name. Throws WITNESS_ERR_SCENARIO_INVALID. */
export function parseScenario(text: string, file: string): Scenario {
  const { doc, c } = parseYamlFile(text, file, 'scenarios use plain YAML values');
  let scenario: Scenario | undefined;
  if (doc.errors.length === 0) {
    if (doc.contents === null) {
      report(c, { pos: 0, path: '' }, 'the scenario is empty', 'write at least seed, duration and fleets (see simulator/scenarios/smoke.yaml)');
    } else {
      const raw = root(SCHEMA, doc.contents, c);
      if (raw !== BAD) scenario = resolveScenario(raw, file, c);
    }
  }
  if (c.problems.length > 0 || scenario === undefined) throw scenarioError(file, c.problems);
  return scenario;
}

function scenarioError(file: string, problems: ConfigProblem[]): WitnessError {
  const sorted = [...problems].sort((a, b) => a.line - b.line || a.col - b.col);
  const n = sorted.length;
  return new WitnessError('WITNESS_ERR_SCENARIO_INVALID', [`scenario ${file}: ${n} problem${n === 1 ? '' : 's'}`, ...sorted.map(formatProblem)].join('\n'), {
    details: { file, problems: sorted },
  });
}

/**
 * Parses a duration: a whole number of ms, or a string of number+unit parts (ms, s, m, h).
 * Returns the ms, or a problem.
 */
export function parseDuration(v: unknown): number | { message: string; hint: string } {
  const forms = 'a number of milliseconds (250) or a string with units ms, s, m, h: 250ms, 10s, 1.5s, 2m, 1h30m';
  if (typeof v === 'number') {
    if (!Number.isSafeInteger(v) || v < 0) return { message: `${v} is not a whole, non-negative number of milliseconds`, hint: `write ${forms}` };
    return v;
  }
  if (typeof v !== 'string') return { message: 'expected a duration', hint: `write ${forms}` };
  const s = v.trim();
  if (/^\d+(\.\d+)?$/.test(s)) return { message: `duration ${JSON.stringify(v)} has no unit`, hint: `write ${s}ms, or the number ${s} without quotes (milliseconds)` };
  if (!/^(\d+(\.\d+)?(ms|s|m|h))+$/.test(s)) return { message: `${JSON.stringify(v)} is not a duration`, hint: `write ${forms}` };
  const MULT: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 };
  let total = 0;
  for (const m of s.matchAll(/(\d+(?:\.\d+)?)(ms|s|m|h)/g)) total += Number(m[1]) * MULT[m[2]!]!;
  const rounded = Math.round(total * 1e6) / 1e6;
  if (!Number.isSafeInteger(rounded)) return { message: `${JSON.stringify(v)} is not a whole number of milliseconds`, hint: 'durations are whole milliseconds: use ms for the fraction' };
  return rounded;
}

// ── templates (device id patterns and topic templates) ───────────────────────────────────────

type TemplatePart = string | { name: string; width: number };
export interface Template {
  source: string;
  parts: TemplatePart[];
  /** Placeholder names used. */
  uses: Set<string>;
}

/** Compiles `{name}` / `{n:W}` placeholders; returns a problem for an unknown placeholder or a stray brace. */
export function compileTemplate(source: string, names: readonly string[]): Template | { message: string; hint: string } {
  const parts: TemplatePart[] = [];
  const uses = new Set<string>();
  const known = names.map((n) => `{${n}}`).join(', ') + (names.includes('n') ? ', {n:W}' : '');
  let lit = '';
  for (let i = 0; i < source.length; i++) {
    const ch = source[i]!;
    if (ch === '}') return { message: `a stray "}" at character ${i + 1} of ${JSON.stringify(source)}`, hint: `placeholders are ${known}` };
    if (ch !== '{') {
      lit += ch;
      continue;
    }
    const end = source.indexOf('}', i);
    if (end < 0) return { message: `an unclosed "{" at character ${i + 1} of ${JSON.stringify(source)}`, hint: `placeholders are ${known}` };
    const inner = source.slice(i + 1, end);
    const m = /^([A-Za-z]+)(?::(\d+))?$/.exec(inner);
    const name = m?.[1];
    if (!m || name === undefined || !names.includes(name) || (m[2] !== undefined && name !== 'n')) {
      const near = closest(inner.replace(/:.*$/, ''), names);
      return {
        message: `unknown placeholder {${inner}} in ${JSON.stringify(source)}`,
        hint: near && near !== inner ? `did you mean {${near}}? placeholders are ${known}` : `placeholders are ${known}`,
      };
    }
    const width = m[2] === undefined ? 0 : Number(m[2]);
    if (width > 12) return { message: `{n:${m[2]}} pads to more than 12 digits`, hint: 'use a width of 1 to 12' };
    if (lit) parts.push(lit);
    lit = '';
    parts.push({ name, width });
    uses.add(name);
    i = end;
  }
  if (lit) parts.push(lit);
  return { source, parts, uses };
}

export function expandTemplate(t: Template, values: Readonly<Record<string, string | number>>): string {
  let out = '';
  for (const p of t.parts) {
    if (typeof p === 'string') out += p;
    else {
      const v = String(values[p.name]);
      out += p.width > 0 ? v.padStart(p.width, '0') : v;
    }
  }
  return out;
}

const ID_NAMES = ['fleet', 'n'] as const;
const TOPIC_NAMES = ['id', 'fleet', 'n'] as const;
const compiled = new Map<string, Template>();

function cachedTemplate(source: string, names: readonly string[]): Template {
  const key = `${names.join(',')}\u0000${source}`;
  let t = compiled.get(key);
  if (!t) {
    const r = compileTemplate(source, names);
    if (!('parts' in r)) throw new WitnessError('WITNESS_ERR_INVALID_ARGUMENT', `${r.message} (${r.hint})`);
    t = r;
    if (compiled.size > 1000) compiled.clear();
    compiled.set(key, t);
  }
  return t;
}

/** The id of device `n` (0-based) of a fleet. */
export function deviceIdOf(fleet: Fleet, n: number): string {
  return expandTemplate(cachedTemplate(fleet.idPattern, ID_NAMES), { fleet: fleet.name, n });
}

/** The topic device `id` (index `n` in `fleet`) publishes on. */
export function topicOf(fleet: Fleet, id: string, n: number): string {
  return expandTemplate(cachedTemplate(fleet.topic, TOPIC_NAMES), { id, fleet: fleet.name, n });
}

// ── the schema ───────────────────────────────────────────────────────────────────────────────

const problem = (message: string, hint: string): { message: string; hint: string } => ({ message, hint });

function scalarOf(node: Node | null): unknown {
  return isScalar(node) ? node.value : undefined;
}

function shown(v: unknown): string {
  return typeof v === 'string' ? JSON.stringify(v) : v === undefined ? 'a mapping or list' : String(v);
}

function duration(min: number, max: number, what = 'duration'): V<number> {
  return (node, at, c) => {
    const r = parseDuration(scalarOf(node));
    if (typeof r !== 'number') {
      report(c, at, isScalar(node) ? r.message : `expected a ${what}, got ${shown(scalarOf(node))}`, r.hint);
      return BAD;
    }
    if (r < min || r > max) {
      report(c, at, `${what} ${r} ms is out of range`, `use ${formatMs(min)} to ${formatMs(max)}`);
      return BAD;
    }
    return r;
  };
}

/** A number (integer or not) in a range; `open` excludes the bounds named. */
function num(min: number, max: number, what: string, open: { min?: boolean; max?: boolean } = {}): V<number> {
  const range = `${open.min ? '(' : '['}${min}, ${max}${open.max ? ')' : ']'}`;
  return (node, at, c) => {
    const v = scalarOf(node);
    if (typeof v !== 'number' || !Number.isFinite(v)) {
      const quoted = typeof v === 'string' && v.trim() !== '' && Number.isFinite(Number(v));
      report(c, at, `expected a number (${what}), got ${isScalar(node) ? shown(v) : 'a mapping or list'}`, quoted ? 'write the number without quotes' : `a number in ${range}`);
      return BAD;
    }
    if (v < min || v > max || (open.min && v === min) || (open.max && v === max)) {
      report(c, at, `${v} is out of range`, `use a number in ${range}`);
      return BAD;
    }
    return v;
  };
}

const qosWeights: V<[number, number, number]> = (node, at, c) => {
  const v = scalarOf(node);
  if (isScalar(node) && (v === 0 || v === 1 || v === 2)) {
    const w: [number, number, number] = [0, 0, 0];
    w[v] = 1;
    return w;
  }
  if (!isMap(node)) {
    report(c, at, `expected a QoS (0, 1, 2) or weights { 0: W, 1: W, 2: W }, got ${isSeq(node) ? 'a list' : shown(v)}`, 'e.g. qos: 1, or qos: { 0: 1, 1: 3 } for one QoS 0 message in four');
    return BAD;
  }
  const w: [number, number, number] = [0, 0, 0];
  let ok = true;
  for (const pair of node.items as Array<Pair<unknown, unknown>>) {
    const keyNode = pair.key as Node | null;
    const k = String(scalarOf(keyNode));
    const path = `${at.path}.${k}`;
    if (k !== '0' && k !== '1' && k !== '2') {
      report(c, { pos: keyNode?.range?.[0] ?? at.pos, path }, `unknown QoS ${JSON.stringify(k)}`, 'the keys are the QoS levels 0, 1 and 2');
      ok = false;
      continue;
    }
    const valueNode = pair.value as Node | null;
    const r = num(0, 1e9, 'weight')(valueNode, { pos: valueNode?.range?.[0] ?? keyNode?.range?.[0] ?? at.pos, path }, c);
    if (r === BAD) ok = false;
    else w[Number(k)] = r;
  }
  if (!ok) return BAD;
  if (w[0] + w[1] + w[2] <= 0) {
    report(c, at, 'the QoS weights add up to 0', 'give at least one QoS a positive weight');
    return BAD;
  }
  return w;
};

const size: V<[number, number]> = (node, at, c) => {
  const one = int(1, LIMITS.payloadBytes, 'bytes');
  if (isSeq(node)) {
    if (node.items.length !== 2) {
      report(c, at, `expected [min, max], got a list of ${node.items.length}`, 'write size: [32, 256] (bytes, inclusive), or one number');
      return BAD;
    }
    const a = one(node.items[0] as Node, { pos: (node.items[0] as Node)?.range?.[0] ?? at.pos, path: `${at.path}[0]` }, c);
    const b = one(node.items[1] as Node, { pos: (node.items[1] as Node)?.range?.[0] ?? at.pos, path: `${at.path}[1]` }, c);
    if (a === BAD || b === BAD) return BAD;
    if (a > b) {
      report(c, at, `size range [${a}, ${b}] is reversed`, `write [${b}, ${a}]`);
      return BAD;
    }
    return [a, b];
  }
  const r = one(node, at, c);
  return r === BAD ? BAD : [r, r];
};

const NAME_RE = /^[A-Za-z0-9._-]{1,32}$/;
const SENSOR_RE = /^[A-Za-z_][A-Za-z0-9_]{0,31}$/;

const sensor = obj(
  {
    name: str({
      check: (n) =>
        !SENSOR_RE.test(n)
          ? problem(`sensor name ${JSON.stringify(n)} is not 1–32 of A-Z a-z 0-9 _ (not starting with a digit)`, 'it becomes a JSON field name, e.g. temp, humidity')
          : n === 'id' || n === 'n' || n === 'pad'
            ? problem(`sensor name ${JSON.stringify(n)} is taken by the payload itself`, 'id, n and pad are the device id, message number and padding: choose another name')
            : undefined,
    }),
    start: num(-1e12, 1e12, 'first value'),
    step: num(0, 1e12, 'largest change per message'),
    min: num(-1e12, 1e12, 'lowest value'),
    max: num(-1e12, 1e12, 'highest value'),
    decimals: int(0, 10, 'decimal places'),
  },
  {
    required: ['name'],
    refine: (s, c) => {
      if (s.min !== undefined && s.max !== undefined && s.min > s.max) report(c, whereOf(s, 'max'), `max ${s.max} is below min ${s.min}`, 'swap them');
    },
  },
);

const PAYLOAD_KEYS: Record<PayloadModel['model'], readonly string[]> = {
  constant: ['size', 'byte'],
  random: ['size'],
  json: ['sensors', 'padTo'],
};

const payload = obj(
  {
    model: oneOf(['constant', 'random', 'json'] as const),
    size,
    byte: int(0, 255, 'byte value'),
    sensors: list(sensor, {
      refine: (ss, c) => {
        const seen = new Map<string, object>();
        for (const s of ss) {
          if (s.name === undefined) continue;
          const first = seen.get(s.name);
          if (first) report(c, whereOf(s, 'name'), `sensor ${JSON.stringify(s.name)} is listed twice (first at ${whereOf(first).path})`, 'give each sensor its own name');
          else seen.set(s.name, s);
        }
      },
    }),
    padTo: int(0, LIMITS.payloadBytes, 'bytes'),
  },
  {
    required: ['model'],
    refine: (p, c) => {
      if (p.model === undefined) return;
      const allowed = PAYLOAD_KEYS[p.model];
      for (const k of ['size', 'byte', 'sensors', 'padTo']) {
        if ((p as Record<string, unknown>)[k] === undefined && !isBad(p, k)) continue;
        if (!allowed.includes(k)) {
          const owner = (Object.keys(PAYLOAD_KEYS) as Array<keyof typeof PAYLOAD_KEYS>).filter((m) => PAYLOAD_KEYS[m].includes(k));
          report(c, whereOf(p, k), `${k} does not apply to payload model ${p.model}`, `${k} belongs to model ${owner.join(' / ')}; model ${p.model} takes ${allowed.join(', ')}`);
        }
      }
      if ((p.model === 'constant' || p.model === 'random') && p.size === undefined && !isBad(p, 'size')) {
        report(c, whereOf(p), `payload model ${p.model} needs size`, p.model === 'constant' ? 'add size: 64 (bytes)' : 'add size: [32, 256] (bytes, inclusive) or one number');
      }
    },
  },
);

const fleet = obj(
  {
    name: str({ check: (n) => (NAME_RE.test(n) ? undefined : problem(`fleet name ${JSON.stringify(n)} is not 1–32 of A-Z a-z 0-9 . _ -`, 'it can appear in device ids, e.g. sensors')) }),
    count: int(1, LIMITS.fleetDevices, 'devices'),
    idPattern: str(),
    keySeed: str(),
    topic: str(),
    interval: duration(LIMITS.minIntervalMs, LIMITS.durationMs, 'interval'),
    rate: num(0, 1e9, 'messages per second for the whole fleet', { min: true }),
    jitter: num(0, 1, 'fraction of the interval', { max: true }),
    qos: qosWeights,
    retain: num(0, 1, 'fraction of messages'),
    payload,
  },
  {
    required: ['name', 'count'],
    refine: (f, c) => {
      if ((f.interval !== undefined || isBad(f, 'interval')) && (f.rate !== undefined || isBad(f, 'rate'))) {
        report(c, whereOf(f, 'rate'), 'a fleet has interval or rate, not both', 'interval is per device; rate is messages per second for the whole fleet: keep one');
      }
    },
  },
);

const ONLY_FOR: Record<string, IncidentType> = { skew: 'clock-skew', connects: 'connect-storm', messages: 'burst' };

const incident = obj(
  {
    type: oneOf(INCIDENT_TYPES),
    fleets: list(str(), { unique: true }),
    devices: num(0, 1, 'fraction of the devices'),
    at: duration(0, LIMITS.durationMs, 'time'),
    count: int(1, LIMITS.occurrences, 'occurrences per device'),
    every: duration(1, LIMITS.durationMs, 'interval'),
    skew: duration(1, LIMITS.skewMs, 'clock skew'),
    connects: int(1, LIMITS.stormConnects, 'reconnects per occurrence'),
    messages: int(1, LIMITS.burstMessages, 'messages per occurrence'),
  },
  {
    required: ['type'],
    refine: (x, c) => {
      if (x.type === undefined) return;
      for (const [k, t] of Object.entries(ONLY_FOR)) {
        if (((x as Record<string, unknown>)[k] !== undefined || isBad(x, k)) && x.type !== t) {
          report(c, whereOf(x, k), `${k} applies only to ${t} incidents, this one is ${x.type}`, `remove ${k}`);
        }
      }
    },
  },
);

// list() keeps no origin per item: the positions of an incident's fleet names are recorded here,
// to point at a misspelt one.
const ITEM_POS = new WeakMap<object, number[]>();
const incidentWithPositions: typeof incident = (node, at, c) => {
  const r = incident(node, at, c);
  if (r !== BAD && isMap(node)) {
    const fl = node.get('fleets', true) as Node | undefined;
    if (fl && isSeq(fl)) ITEM_POS.set(r, fl.items.map((n) => (n as Node | null)?.range?.[0] ?? at.pos));
  }
  return r;
};

const SCHEMA = obj(
  {
    name: str({ check: (n) => (/^[\x20-\x7e]{1,100}$/.test(n) ? undefined : problem(`name ${JSON.stringify(n.slice(0, 40))} is not 1–100 printable ASCII characters`, 'it only labels reports')) }),
    seed: str({ hint: 'write the seed as a quoted string, e.g. seed: "demo-1"' }),
    duration: duration(1, LIMITS.durationMs),
    ramp: duration(0, LIMITS.durationMs, 'ramp'),
    audience: str(),
    clockUncertainty: duration(0, 3_600_000, 'clock uncertainty'),
    envelopeMode: oneOf(['observe', 'enforce'] as const),
    subscriber: obj(
      {
        filter: str({ check: (f) => (isValidFilter(f) ? undefined : problem(`${JSON.stringify(f)} is not a valid MQTT topic filter`, '+ and # occupy a whole level, # only last [MQTT-4.7.1-2]')) }),
        qos: int(0, 2, 'QoS'),
      },
      { required: ['filter'] },
    ),
    fleets: list(fleet, { min: 1 }),
    incidents: list(incidentWithPositions),
  },
  { required: ['seed', 'duration', 'fleets'] },
);

type Raw = Exclude<ReturnType<typeof SCHEMA>, typeof BAD>;
type RawFleet = NonNullable<Raw['fleets']>[number];

// ── defaults and cross-field checks ──────────────────────────────────────────────────────────

function resolveScenario(raw: Raw, file: string, c: Ctx): Scenario | undefined {
  if (raw.seed === undefined || raw.duration === undefined || raw.fleets === undefined) return undefined;
  const durationMs = raw.duration;
  const clockUncertaintyMs = raw.clockUncertainty ?? DEFAULTS.clockUncertaintyMs;
  const fleets: Fleet[] = [];
  const fleetOrigin: RawFleet[] = [];
  const names = new Map<string, RawFleet>();
  let complete = true;

  for (const f of raw.fleets) {
    if (f.name === undefined || f.count === undefined) {
      complete = false;
      continue;
    }
    const first = names.get(f.name);
    if (first) report(c, whereOf(f, 'name'), `fleet ${JSON.stringify(f.name)} is defined twice (first at ${whereOf(first).path})`, 'give each fleet its own name');
    else names.set(f.name, f);
    const r = resolveFleet(f, durationMs, c);
    if (r === undefined) complete = false;
    else {
      fleets.push(r);
      fleetOrigin.push(f);
    }
  }

  // Device ids: unique across fleets (only worth checking when every pattern is valid).
  let total = 0;
  for (const f of fleets) total += f.count;
  if (total > LIMITS.totalDevices) {
    report(c, whereOf(raw, 'fleets'), `${total} devices in all; the limit is ${LIMITS.totalDevices}`, 'lower the fleet counts');
    complete = false;
  } else if (complete) {
    const owner = new Map<string, number>();
    fleets.forEach((f, fi) => {
      const reported = new Set<number>();
      for (let n = 0; n < f.count; n++) {
        const id = deviceIdOf(f, n);
        const other = owner.get(id);
        if (other === undefined) {
          owner.set(id, fi);
          continue;
        }
        if (reported.has(other)) continue;
        reported.add(other);
        complete = false;
        report(
          c,
          whereOf(fleetOrigin[fi]!, fleetOrigin[fi]!.idPattern !== undefined ? 'idPattern' : 'name'),
          `device id ${JSON.stringify(id)} of fleet ${f.name} is also a device of fleet ${fleets[other]!.name} (${whereOf(fleetOrigin[other]!).path})`,
          'device ids must be unique across fleets: give the fleets different idPatterns, e.g. "{fleet}-{n}"',
        );
      }
    });
  }

  const incidents: IncidentSpec[] = [];
  for (const x of raw.incidents ?? []) {
    if (x.type === undefined) {
      complete = false;
      continue;
    }
    const spec: IncidentSpec = {
      type: x.type,
      fleets: x.fleets ?? [],
      devices: x.devices ?? DEFAULTS.incidentDevices,
      atMs: x.at ?? Math.floor(durationMs * DEFAULTS.incidentAt),
      count: x.count ?? 1,
      everyMs: x.every ?? DEFAULTS.incidentEveryMs,
      skewMs: x.skew ?? DEFAULTS.skewMs,
      connects: x.connects ?? DEFAULTS.connects,
      messages: x.messages ?? DEFAULTS.messages,
    };
    (x.fleets ?? []).forEach((name, i) => {
      if (names.has(name)) return;
      const near = closest(name, [...names.keys()]);
      const at: Where = { pos: whereOf(x, 'fleets').pos, path: `${whereOf(x, 'fleets').path}[${i}]` };
      report(c, itemWhere(x, i) ?? at, `no fleet is named ${JSON.stringify(name)}`, near ? `did you mean ${near}?` : `fleets: ${[...names.keys()].join(', ')}`);
      complete = false;
    });
    const last = spec.atMs + (spec.count - 1) * spec.everyMs;
    if (!isBad(x, 'at') && !isBad(x, 'every') && !isBad(x, 'count') && last >= durationMs) {
      const key = x.count !== undefined && x.count > 1 ? 'count' : x.at !== undefined ? 'at' : undefined;
      report(
        c,
        whereOf(x, key),
        spec.count > 1 ? `the last occurrence (at ${formatMs(spec.atMs)} + ${spec.count - 1} × ${formatMs(spec.everyMs)} = ${formatMs(last)}) is not within the duration (${formatMs(durationMs)})` : `at ${formatMs(spec.atMs)} is not within the duration (${formatMs(durationMs)})`,
        'incidents happen while the devices publish: lower at, count or every, or raise duration',
      );
      complete = false;
    }
    if (spec.type === 'clock-skew' && !isBad(x, 'skew') && spec.skewMs < clockUncertaintyMs + MIN_SKEW_MARGIN_MS) {
      report(
        c,
        whereOf(x, x.skew !== undefined ? 'skew' : undefined),
        `a skew of ${formatMs(spec.skewMs)} may pass as normal clock disagreement`,
        `the broker allows the device uncertainty (${formatMs(clockUncertaintyMs)}) + its own + a tolerance (1s by default) + network delay: use at least ${formatMs(clockUncertaintyMs + MIN_SKEW_MARGIN_MS)}, e.g. 60s`,
      );
      complete = false;
    }
    incidents.push(spec);
  }

  if (!complete || c.problems.length > 0) return undefined;
  const name = raw.name ?? (basename(file).replace(/\.ya?ml$/i, '') || 'scenario');
  return {
    name,
    seed: raw.seed,
    durationMs,
    rampMs: raw.ramp ?? DEFAULTS.rampMs,
    audience: raw.audience ?? DEFAULTS.audience,
    clockUncertaintyMs,
    envelopeMode: raw.envelopeMode ?? DEFAULTS.envelopeMode,
    subscriber: raw.subscriber?.filter !== undefined ? { filter: raw.subscriber.filter, qos: (raw.subscriber.qos ?? 0) as QoS } : { filter: '', qos: 0 },
    fleets,
    incidents,
  };
}

/** Where item i of an incident's `fleets` list was written. */
function itemWhere(x: object, i: number): Where | undefined {
  const p = ITEM_POS.get(x)?.[i];
  return p === undefined ? undefined : { pos: p, path: `${whereOf(x, 'fleets').path}[${i}]` };
}

function resolveFleet(f: RawFleet, durationMs: number, c: Ctx): Fleet | undefined {
  const name = f.name!;
  const count = f.count!;
  let ok = !isBad(f, 'idPattern') && !isBad(f, 'topic') && !isBad(f, 'interval') && !isBad(f, 'rate') && !isBad(f, 'payload') && !isBad(f, 'qos');
  for (const k of ['keySeed', 'jitter', 'retain']) if (isBad(f, k)) ok = false;

  // Device ids.
  const idPattern = f.idPattern ?? DEFAULTS.idPattern;
  const idT = isBad(f, 'idPattern') ? undefined : compileTemplate(idPattern, ID_NAMES);
  const idAt = whereOf(f, f.idPattern !== undefined ? 'idPattern' : undefined);
  if (idT && !('parts' in idT)) {
    report(c, idAt, idT.message, idT.hint);
    ok = false;
  } else if (idT) {
    if (count > 1 && !idT.uses.has('n')) {
      report(c, idAt, `idPattern ${JSON.stringify(idPattern)} has no {n}: all ${count} devices would be named ${JSON.stringify(expandTemplate(idT, { fleet: name, n: 0 }))}`, 'add {n} (0-based index) or {n:4} (zero-padded)');
      ok = false;
    } else {
      // Ids differ only in the digits of n, so the shortest (n = 0) and the longest (n = count − 1)
      // decide whether all are valid.
      for (const n of new Set([0, count - 1])) {
        const id = expandTemplate(idT, { fleet: name, n });
        if (!isDeviceId(id)) {
          report(c, idAt, `device id ${JSON.stringify(id)} (device ${n}) is not a valid device id`, 'device ids are 1 to 64 characters from A-Z a-z 0-9 . _ : - (they are MQTT client ids and key names)');
          ok = false;
          break;
        }
      }
    }
  }

  // Topics.
  const topic = f.topic ?? DEFAULTS.topic;
  const topicAt = whereOf(f, f.topic !== undefined ? 'topic' : undefined);
  if (!isBad(f, 'topic')) {
    const tt = compileTemplate(topic, TOPIC_NAMES);
    if (!('parts' in tt)) {
      report(c, topicAt, tt.message, tt.hint);
      ok = false;
    } else if (/[+#]/.test(topic)) {
      report(c, topicAt, `topic ${JSON.stringify(topic)} contains a wildcard`, 'devices publish on topic names: + and # belong only in subscriptions');
      ok = false;
    } else if (topic.startsWith('forbidden/')) {
      report(c, topicAt, `topic ${JSON.stringify(topic)} is under forbidden/`, 'forbidden/{id}/… is where acl-violation incidents publish (and the broker must deny): publish under devices/{id}/…');
      ok = false;
    } else if (topic.startsWith('$')) {
      report(c, topicAt, `topic ${JSON.stringify(topic)} starts with $`, 'topics starting with $ are the broker’s own ($SYS): publish under devices/{id}/…');
      ok = false;
    } else if (idT && 'parts' in idT) {
      const sample = expandTemplate(tt, { id: expandTemplate(idT, { fleet: name, n: count - 1 }), fleet: name, n: count - 1 });
      if (!isValidTopic(sample) || !isValidTopic(`${sample}/elsewhere`)) {
        report(c, topicAt, `topic ${JSON.stringify(sample)} is not a valid MQTT topic name`, 'write a non-empty topic of UTF-8 text, e.g. devices/{id}/telemetry');
        ok = false;
      }
    }
  }

  // Timing.
  let intervalMs = f.interval ?? DEFAULTS.intervalMs;
  if (f.rate !== undefined) {
    intervalMs = (count * 1000) / f.rate;
    if (intervalMs < LIMITS.minIntervalMs) {
      report(c, whereOf(f, 'rate'), `rate ${f.rate}/s for ${count} devices is one message every ${round3(intervalMs)} ms per device`, `the least is ${LIMITS.minIntervalMs} ms per device: at most ${count * (1000 / LIMITS.minIntervalMs)} messages/s for this fleet`);
      ok = false;
    }
  }
  const jitter = f.jitter ?? 0;
  const perDevice = Math.ceil(durationMs / (intervalMs * (1 - jitter)));
  if (ok && perDevice > LIMITS.messagesPerDevice) {
    report(c, whereOf(f, f.rate !== undefined ? 'rate' : f.interval !== undefined ? 'interval' : undefined), `up to ${perDevice} messages per device over the duration; the limit is ${LIMITS.messagesPerDevice}`, 'raise the interval (or lower the rate) or shorten the duration');
    ok = false;
  }

  const p = f.payload;
  let model: PayloadModel = { model: 'json', sensors: [{ ...DEFAULTS.sensor }], padTo: 0 };
  if (p?.model === 'constant') model = { model: 'constant', size: p.size?.[0] ?? 1, byte: p.byte ?? 0 };
  else if (p?.model === 'random') model = { model: 'random', minSize: p.size?.[0] ?? 1, maxSize: p.size?.[1] ?? 1 };
  else if (p?.model === 'json') {
    const sensors: SensorModel[] = (p.sensors ?? [{ ...DEFAULTS.sensor }]).flatMap((s) => {
      if (s.name === undefined) return [];
      const min = s.min ?? -1e9;
      const max = s.max ?? 1e9;
      const start = s.start ?? Math.min(Math.max(0, min), max);
      return [{ name: s.name, start: Math.min(Math.max(start, min), max), step: s.step ?? 1, min, max, decimals: s.decimals ?? 2 }];
    });
    model = { model: 'json', sensors, padTo: p.padTo ?? 0 };
  }

  if (!ok) return undefined;
  return {
    name,
    count,
    idPattern,
    keySeed: f.keySeed ?? name,
    topic,
    intervalMs,
    jitter,
    qos: f.qos ?? [...DEFAULTS.qos],
    retain: f.retain ?? 0,
    payload: model,
  };
}

function round3(x: number): number {
  return Math.round(x * 1000) / 1000;
}

/** 1500 → "1.5s", 60000 → "1m", 250 → "250ms". */
export function formatMs(ms: number): string {
  if (ms !== 0 && ms % 3_600_000 === 0) return `${ms / 3_600_000}h`;
  if (ms !== 0 && ms % 60_000 === 0) return `${ms / 60_000}m`;
  if (ms >= 1000) return `${round3(ms / 1000)}s`;
  return `${round3(ms)}ms`;
}
