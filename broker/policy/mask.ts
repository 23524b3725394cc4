/**
 * Payload masking: the values at simple JSON paths are replaced by keyed pseudonyms,
 *
 *   "~p:" + base64url(HMAC-SHA256(key, canonical JSON of the value))[:22]
 *
 * so the same value always maps to the same pseudonym under one key (records stay joinable:
 * "the same owner sent both"), a different key gives unrelated pseudonyms, and nobody without
 * the key can test a guess. 22 base64url characters keep 132 bits of the MAC.
 *
 * Canonical JSON is RFC 8785 (JCS): object keys sorted by UTF-16 code units, no whitespace,
 * numbers and strings as ECMAScript's JSON.stringify writes them (RFC 8785 §3.2.2.3 defines
 * number output as exactly that), so `{"b":1,"a":2}` and `{"a":2,"b":1}` mask alike.
 *
 * Paths (JSONPath subset): `$` then any of `.name`, `[N]`, `[*]` — `$.owner`, `$.location.lat`,
 * `$.readings[*].v`, `$.readings[0]`. A path that finds nothing is ignored; `[*]` walks arrays
 * only. Masking never mutates its input (copy on write along the masked paths).
 *
 * HMAC uses node:crypto (OpenSSL): it runs per recorded publish at level payload/full, and
 * node's SHA-256 is ≈ 1.8× @noble/hashes on this machine kind (DESIGN §3).
 */
import { createHmac } from 'node:crypto';
import { WitnessError, expectBytes } from '../../shared/errors.js';

export type MaskSegment = { key: string } | { index: number } | { all: true };

export const PSEUDONYM_PREFIX = '~p:';
const PSEUDONYM_CHARS = 22;
/** A masking key shorter than this is refused (HMAC keys should carry ≥ 128 bits). */
const MIN_KEY_BYTES = 16;

/** Why `path` is not a mask path, or undefined when it is one. */
export function checkMaskPath(path: unknown): string | undefined {
  if (typeof path !== 'string') return 'a mask path must be a string';
  if (!path.startsWith('$')) return `mask path ${JSON.stringify(path)} must start with $`;
  if (path.includes('..')) return `mask path ${JSON.stringify(path)}: recursive descent (..) is not supported`;
  let i = 1;
  while (i < path.length) {
    const rest = path.slice(i);
    const m = /^\.([^.[\]\s]+)/.exec(rest) ?? /^\[(\*|0|[1-9]\d{0,8})\]/.exec(rest);
    if (!m) return `mask path ${JSON.stringify(path)}: cannot read ${JSON.stringify(rest)} (use .name, [N] or [*])`;
    i += m[0].length;
  }
  return undefined;
}

/** Parses a mask path into segments; throws WITNESS_ERR_INVALID_ARGUMENT when malformed. */
export function parseMaskPath(path: string): MaskSegment[] {
  const bad = checkMaskPath(path);
  if (bad) throw new WitnessError('WITNESS_ERR_INVALID_ARGUMENT', bad, { details: { path } });
  const out: MaskSegment[] = [];
  for (const m of path.slice(1).matchAll(/\.([^.[\]\s]+)|\[(\*|\d+)\]/g)) {
    if (m[1] !== undefined) out.push({ key: m[1] });
    else if (m[2] === '*') out.push({ all: true });
    else out.push({ index: Number(m[2]) });
  }
  return out;
}

/** RFC 8785 canonical JSON of a JSON value; throws WITNESS_ERR_INVALID_ARGUMENT for anything else. */
export function canonicalJson(v: unknown): string {
  if (v === null || typeof v === 'boolean' || typeof v === 'string') return JSON.stringify(v);
  if (typeof v === 'number') {
    if (!Number.isFinite(v)) throw new WitnessError('WITNESS_ERR_INVALID_ARGUMENT', `canonicalJson: ${v} is not a JSON number`);
    return JSON.stringify(v);
  }
  if (Array.isArray(v)) return `[${v.map(canonicalJson).join(',')}]`;
  if (isPlainObject(v)) {
    // RFC 8785 §3.2.3: sort by UTF-16 code units, which is what the default sort compares.
    const keys = Object.keys(v).sort();
    return `{${keys.map((k) => `${JSON.stringify(k)}:${canonicalJson(v[k])}`).join(',')}}`;
  }
  throw new WitnessError('WITNESS_ERR_INVALID_ARGUMENT', `canonicalJson: ${typeof v} is not a JSON value`);
}

/** The keyed pseudonym of a JSON value. `key`: at least 16 bytes. */
export function pseudonym(value: unknown, key: Uint8Array): string {
  checkKey(key);
  return keyedPseudonym(value, key);
}

function keyedPseudonym(value: unknown, key: Uint8Array): string {
  const mac = createHmac('sha256', key).update(canonicalJson(value), 'utf8').digest('base64url');
  return PSEUDONYM_PREFIX + mac.slice(0, PSEUDONYM_CHARS);
}

/**
 * Returns a copy of `json` with the value at each path replaced by its pseudonym, paths applied
 * in order. `key`: at least 16 bytes. Throws WITNESS_ERR_INVALID_ARGUMENT for a bad path or key.
 */
export function maskPayload(json: unknown, paths: readonly string[], key: Uint8Array): unknown {
  checkKey(key);
  let out = json;
  for (const p of paths) out = applyPath(out, parseMaskPath(p), 0, key);
  return out;
}

export interface MaskResult {
  /** False when the payload is not UTF-8 JSON: nothing can be masked, record the hash only. */
  masked: boolean;
  /** The masked JSON value (when `masked`). */
  body: unknown;
  /** Why masking was impossible. */
  reason?: string;
}

const utf8 = new TextDecoder('utf-8', { fatal: true });

/** Parses an MQTT payload as UTF-8 JSON and masks it; a non-JSON payload is reported, not guessed at. */
export function maskBytes(payload: Uint8Array, paths: readonly string[], key: Uint8Array): MaskResult {
  return createMasker(key)(payload, paths);
}

/**
 * A masker bound to one key, with parsed paths cached: the shape of the plugin's `mask` option.
 * The key is copied, so the caller may wipe its own copy.
 */
export function createMasker(key: Uint8Array): (payload: Uint8Array, paths: readonly string[]) => MaskResult {
  checkKey(key);
  const k = Uint8Array.from(key);
  const parsed = new Map<string, MaskSegment[]>();
  return (payload, paths) => {
    let json: unknown;
    try {
      json = JSON.parse(utf8.decode(payload));
    } catch (e) {
      return { masked: false, body: undefined, reason: e instanceof SyntaxError ? 'not JSON' : 'not UTF-8' };
    }
    for (const p of paths) {
      let segs = parsed.get(p);
      if (!segs) {
        segs = parseMaskPath(p);
        if (parsed.size < 1024) parsed.set(p, segs); // paths come from the config: a handful
      }
      json = applyPath(json, segs, 0, k);
    }
    return { masked: true, body: json };
  };
}

function checkKey(key: Uint8Array): void {
  expectBytes(key, undefined, 'masking key');
  if (key.length < MIN_KEY_BYTES) {
    throw new WitnessError('WITNESS_ERR_INVALID_ARGUMENT', `masking key: expected at least ${MIN_KEY_BYTES} bytes, got ${key.length}`, {
      details: { expected: MIN_KEY_BYTES, actual: key.length },
    });
  }
}

function applyPath(v: unknown, segs: readonly MaskSegment[], i: number, key: Uint8Array): unknown {
  if (i === segs.length) return keyedPseudonym(v, key);
  const s = segs[i]!;
  if ('key' in s) {
    if (!isPlainObject(v) || !Object.hasOwn(v, s.key)) return v;
    const inner = v[s.key];
    const next = applyPath(inner, segs, i + 1, key);
    if (next === inner) return v;
    const copy = { ...v };
    // defineProperty, not assignment: a JSON key "__proto__" must stay a plain data property.
    Object.defineProperty(copy, s.key, { value: next, enumerable: true, writable: true, configurable: true });
    return copy;
  }
  if (!Array.isArray(v)) return v;
  if ('index' in s) {
    if (s.index >= v.length) return v;
    const inner: unknown = v[s.index];
    const next = applyPath(inner, segs, i + 1, key);
    if (next === inner) return v;
    const copy = v.slice();
    copy[s.index] = next;
    return copy;
  }
  let changed = false;
  const copy = v.map((x: unknown) => {
    const next = applyPath(x, segs, i + 1, key);
    if (next !== x) changed = true;
    return next;
  });
  return changed ? copy : v;
}

function isPlainObject(v: unknown): v is Record<string, unknown> {
  if (typeof v !== 'object' || v === null || Array.isArray(v)) return false;
  const proto: unknown = Object.getPrototypeOf(v);
  return proto === Object.prototype || proto === null;
}
