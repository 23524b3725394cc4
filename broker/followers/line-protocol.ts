/**
 * InfluxDB line protocol, exactly (https://docs.influxdata.com/influxdb/v1/write_protocols/line_protocol_reference/,
 * https://docs.influxdata.com/influxdb/v2/reference/syntax/line-protocol/ §Special characters):
 *
 *   measurement[,tag_key=tag_value...] field_key=field_value[,field_key=field_value...] [timestamp]
 *
 * Escaping, per element:
 *   measurement                     `,` and space are escaped with `\`
 *   tag keys, tag values, field keys `,`, `=` and space are escaped with `\`
 *   string field values              in double quotes; `"` and `\` are escaped with `\`
 *
 * What is not portable is refused or made safe, because a line the server rejects would block the
 * InfluxDB mirror for ever (it retries the same batch) and a line it silently drops would lose a
 * point:
 *  - "Line protocol does not support the newline character \n in tag or field values" (spec):
 *    InfluxDB 1.x/2.x happen to accept a raw newline inside a quoted string, but VictoriaMetrics
 *    splits on it and silently drops the point (seen here). So a string field value never
 *    contains a raw LF or CR: they are written as the two characters `\n` / `\r` (which every
 *    reader keeps literally — the one lossy spot: a string that held `\` `n` reads back the same).
 *  - A backslash in a measurement, tag key, tag value or field key is refused: InfluxDB 1.x keeps
 *    `\\` as two backslashes and cannot parse a value ending in one, 2.x reads `\\` as one —
 *    there is no spelling both read the same. A newline or CR there is refused too (spec).
 *  - Empty tag values are omitted (the spec forbids them); a tag or field key `time` is refused
 *    (InfluxDB drops such points); NaN and ±Infinity are not representable.
 *
 * Tags are written sorted by key (the spec's performance tip: the server's own order); fields in
 * the order given. Integers get the `i` suffix (signed 64-bit), floats are JavaScript's shortest
 * round-trip decimal (exponent form such as `1e+21` is valid line protocol), booleans `true`/`false`.
 */
import { WitnessError } from '../../shared/errors.js';

export type FieldValue =
  | { type: 'integer'; value: number | bigint }
  | { type: 'float'; value: number }
  | { type: 'string'; value: string }
  | { type: 'boolean'; value: boolean };

export const int = (value: number | bigint): FieldValue => ({ type: 'integer', value });
export const float = (value: number): FieldValue => ({ type: 'float', value });
export const str = (value: string): FieldValue => ({ type: 'string', value });
export const bool = (value: boolean): FieldValue => ({ type: 'boolean', value });

export interface LinePoint {
  measurement: string;
  /** Tag values that are undefined or empty are left out. */
  tags?: Record<string, string | undefined>;
  /** At least one. Undefined values are left out. */
  fields: Record<string, FieldValue | undefined>;
  /** In the precision of the write request (the InfluxDB mirror writes ns). A string must be decimal digits. Omitted: the server's clock. */
  timestamp?: bigint | number | string;
}

const INT64_MIN = -(2n ** 63n);
const INT64_MAX = 2n ** 63n - 1n;

function invalid(message: string, details: Record<string, unknown> = {}): WitnessError {
  return new WitnessError('WITNESS_ERR_INVALID_ARGUMENT', `line protocol: ${message}`, { details });
}

function checkName(what: string, s: string): void {
  if (typeof s !== 'string' || s.length === 0) throw invalid(`${what} must be a non-empty string`, { [what]: s });
  if (/[\\\n\r]/.test(s)) throw invalid(`${what} ${JSON.stringify(s)} contains a backslash, newline or CR, which InfluxDB versions do not read alike`, { [what]: s });
}

/** Measurement: `,` and space escaped. */
export function escapeMeasurement(s: string): string {
  checkName('measurement', s);
  return s.replace(/[, ]/g, (c) => `\\${c}`);
}

/** Tag key, tag value or field key: `,`, `=` and space escaped. */
export function escapeKey(s: string, what = 'key'): string {
  checkName(what, s);
  return s.replace(/[,= ]/g, (c) => `\\${c}`);
}

/** String field value, quoted: `"` and `\` escaped; LF and CR written as `\n` and `\r` (see above). */
export function quoteString(s: string): string {
  if (typeof s !== 'string') throw invalid('a string field value must be a string', { value: s });
  return `"${s.replace(/[\\"\n\r]/g, (c) => (c === '\n' ? '\\n' : c === '\r' ? '\\r' : `\\${c}`))}"`;
}

export function formatFieldValue(key: string, v: FieldValue): string {
  // Checked at run time too: values come from parsed JSON records.
  const raw = (v as { value?: unknown }).value;
  switch (v.type) {
    case 'integer': {
      const b = typeof v.value === 'bigint' ? v.value : Number.isSafeInteger(v.value) ? BigInt(v.value) : undefined;
      if (b === undefined || b < INT64_MIN || b > INT64_MAX) throw invalid(`field ${key}: ${String(v.value)} is not a 64-bit integer`, { key, value: String(v.value) });
      return `${b}i`;
    }
    case 'float':
      if (typeof raw !== 'number' || !Number.isFinite(raw)) throw invalid(`field ${key}: ${String(raw)} is not a finite float`, { key, value: String(raw) });
      return String(v.value);
    case 'boolean':
      if (typeof raw !== 'boolean') throw invalid(`field ${key}: ${String(raw)} is not a boolean`, { key });
      return v.value ? 'true' : 'false';
    case 'string':
      return quoteString(raw as string);
    default:
      throw invalid(`field ${key}: unknown value type ${JSON.stringify((v as { type?: unknown }).type)}`, { key });
  }
}

function formatTimestamp(t: bigint | number | string): string {
  if (typeof t === 'bigint') {
    if (t < INT64_MIN || t > INT64_MAX) throw invalid(`timestamp ${t} is outside signed 64 bits`);
    return t.toString();
  }
  if (typeof t === 'number') {
    if (!Number.isSafeInteger(t)) throw invalid(`timestamp ${t} is not a safe integer (pass a bigint or a string of digits)`);
    return String(t);
  }
  if (typeof t === 'string' && /^-?(0|[1-9][0-9]*)$/.test(t)) return formatTimestamp(BigInt(t));
  throw invalid(`timestamp ${JSON.stringify(t)} is not an integer`);
}

/** One point as one line (no trailing newline). */
export function encodeLine(p: LinePoint): string {
  let out = escapeMeasurement(p.measurement);
  const tagKeys = Object.keys(p.tags ?? {})
    .filter((k) => p.tags![k] !== undefined && p.tags![k] !== '')
    .sort();
  for (const k of tagKeys) {
    if (k === 'time') throw invalid('a tag cannot be called time');
    out += `,${escapeKey(k, 'tag key')}=${escapeKey(p.tags![k]!, 'tag value')}`;
  }
  let fields = '';
  for (const [k, v] of Object.entries(p.fields)) {
    if (v === undefined) continue;
    if (k === 'time') throw invalid('a field cannot be called time');
    fields += `${fields === '' ? '' : ','}${escapeKey(k, 'field key')}=${formatFieldValue(k, v)}`;
  }
  if (fields === '') throw invalid(`point of ${p.measurement} has no field`);
  out += ` ${fields}`;
  if (p.timestamp !== undefined) out += ` ${formatTimestamp(p.timestamp)}`;
  return out;
}
