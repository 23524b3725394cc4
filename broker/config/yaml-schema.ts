/**
 * A small schema language over the yaml library's document nodes, made for config files that
 * people write by hand: every problem is reported with its source offset (turned into
 * FILE:LINE:COLUMN by the caller), a dotted path (`listeners[1].tls.cert`) and a hint, and
 * validation goes on after a problem so that one run reports all of them.
 *
 * Validators take a node and return a value or BAD. Objects are strict: an unknown key is a
 * problem with a "did you mean" hint (edit distance). A field that is present but bad is left out
 * of the object and marked, so cross-field checks can skip it instead of reporting noise.
 */
import { dirname, resolve } from 'node:path';
import { LineCounter, isAlias, isMap, isScalar, isSeq, parseDocument, type Document, type Node, type Pair } from 'yaml';

export interface ConfigProblem {
  file: string;
  /** 1-based. */
  line: number;
  /** 1-based, in UTF-16 code units. */
  col: number;
  /** Dotted path of the value, `listeners[0].port`; empty for the document itself. */
  path: string;
  /** What is wrong. */
  message: string;
  /** What to do about it. */
  hint: string;
}

export interface Ctx {
  file: string;
  /** Directory that relative paths in the file are resolved against. */
  dir: string;
  lines: LineCounter;
  problems: ConfigProblem[];
}

export interface Where {
  /** Source offset. */
  pos: number;
  path: string;
}

export const BAD: unique symbol = Symbol('bad');
export type Bad = typeof BAD;
export type V<T> = (node: Node | null, at: Where, c: Ctx) => T | Bad;

/**
 * Parses a hand-written YAML file for validation: YAML 1.2 core types only (strict), duplicate
 * keys are errors, and every YAML error or warning becomes a problem in the returned context
 * (`tags`: what to say about an unknown tag, e.g. "the configuration uses plain YAML values").
 */
export function parseYamlFile(text: string, file: string, tags: string): { doc: Document.Parsed; c: Ctx } {
  const lines = new LineCounter();
  const c: Ctx = { file, dir: dirname(resolve(file)), lines, problems: [] };
  const doc = parseDocument(text, { lineCounter: lines, prettyErrors: false, uniqueKeys: true, strict: true });
  for (const e of [...doc.errors, ...doc.warnings]) {
    const hint =
      e.code === 'DUPLICATE_KEY'
        ? 'each key may appear once in a mapping; remove or merge the repetition'
        : e.code === 'TAG_RESOLVE_FAILED'
          ? `remove the tag: ${tags}`
          : 'fix the YAML syntax here: indentation, quotes, brackets';
    report(c, { pos: e.pos[0], path: '' }, `YAML: ${e.message.split('\n')[0]!.replace(/ at line \d+, column \d+.*$/, '')}`, hint);
  }
  return { doc, c };
}

export function report(c: Ctx, at: Where, message: string, hint: string): void {
  const { line, col } = c.lines.linePos(at.pos);
  c.problems.push({ file: c.file, line: Math.max(line, 1), col, path: at.path, message, hint });
}

// ── positions of parsed values: cross-field checks ask where a field came from ─────────────────

interface Origin {
  self: Where;
  fields: Map<string, Where>;
  bad: Set<string>;
}
const ORIGINS = new WeakMap<object, Origin>();

/** Where a parsed object (or one of its fields) was written. */
export function whereOf(value: object, key?: string): Where {
  const o = ORIGINS.get(value);
  if (!o) throw new Error('whereOf: value was not produced by obj()');
  return (key !== undefined ? o.fields.get(key) : undefined) ?? o.self;
}

/** Was this field present but invalid (already reported)? */
export function isBad(value: object, key: string): boolean {
  return ORIGINS.get(value)?.bad.has(key) ?? false;
}

// ── scalars ──────────────────────────────────────────────────────────────────────────────────────

function describe(node: Node | null): string {
  if (node === null || (isScalar(node) && node.value === null)) return 'nothing (null)';
  if (isMap(node)) return 'a mapping';
  if (isSeq(node)) return 'a list';
  if (isScalar(node)) {
    const v = node.value;
    if (typeof v === 'string') return `the string ${JSON.stringify(v.length > 40 ? v.slice(0, 40) + '…' : v)}`;
    return `${typeof v === 'number' ? 'the number' : typeof v === 'boolean' ? 'the boolean' : 'the value'} ${String(v)}`;
  }
  return 'an unsupported node';
}

function scalarValue(node: Node | null): unknown {
  return isScalar(node) ? node.value : undefined;
}

export interface Check<T> {
  (value: T): { message: string; hint: string } | undefined;
}

export function str(opts: { check?: Check<string>; hint?: string } = {}): V<string> {
  return (node, at, c) => {
    const v = scalarValue(node);
    if (typeof v !== 'string') {
      report(c, at, `expected a string, got ${describe(node)}`, opts.hint ?? 'write the text, quoted if it could be read as a number or boolean');
      return BAD;
    }
    if (v.length === 0) {
      report(c, at, 'expected a non-empty string', opts.hint ?? 'remove the key to use the default');
      return BAD;
    }
    const p = opts.check?.(v);
    if (p) {
      report(c, at, p.message, p.hint);
      return BAD;
    }
    return v;
  };
}

export function int(min: number, max: number, unit: string): V<number> {
  const range = `${min}–${max} ${unit}`;
  return (node, at, c) => {
    const v = scalarValue(node);
    if (typeof v !== 'number' || !Number.isSafeInteger(v)) {
      const quoted = typeof v === 'string' && /^-?\d+$/.test(v.trim());
      report(c, at, `expected an integer (${unit}), got ${describe(node)}`, quoted ? 'write the number without quotes' : `a whole number in ${range}`);
      return BAD;
    }
    if (v < min || v > max) {
      report(c, at, `${v} is out of range`, `use ${range}`);
      return BAD;
    }
    return v;
  };
}

/** A number (not only an integer) in [min, max]. */
export function num(min: number, max: number, unit: string): V<number> {
  const range = `${min}–${max} ${unit}`;
  return (node, at, c) => {
    const v = scalarValue(node);
    if (typeof v !== 'number' || !Number.isFinite(v)) {
      report(c, at, `expected a number (${unit}), got ${describe(node)}`, `a number in ${range}`);
      return BAD;
    }
    if (v < min || v > max) {
      report(c, at, `${v} is out of range`, `use ${range}`);
      return BAD;
    }
    return v;
  };
}

export function bool(): V<boolean> {
  return (node, at, c) => {
    const v = scalarValue(node);
    if (typeof v !== 'boolean') {
      report(c, at, `expected true or false, got ${describe(node)}`, 'YAML 1.2 booleans are exactly true and false; yes, no, on, off are strings');
      return BAD;
    }
    return v;
  };
}

export function oneOf<const T extends string>(values: readonly T[]): V<T> {
  return (node, at, c) => {
    const v = scalarValue(node);
    if (typeof v === 'string' && (values as readonly string[]).includes(v)) return v as T;
    const near = typeof v === 'string' ? closest(v, values) : undefined;
    report(c, at, `expected one of ${values.join(', ')}, got ${describe(node)}`, near ? `did you mean ${near}?` : `use one of ${values.join(', ')}`);
    return BAD;
  };
}

// ── collections ───────────────────────────────────────────────────────────────────────────────

export type Shape = Record<string, V<unknown>>;
export type Out<S extends Shape> = { [K in keyof S]?: S[K] extends V<infer T> ? T : never };

export function obj<S extends Shape>(shape: S, opts: { required?: ReadonlyArray<keyof S & string>; refine?: (v: Out<S>, c: Ctx) => void } = {}): V<Out<S>> {
  const known = Object.keys(shape);
  return (node, at, c) => {
    if (!isMap(node)) {
      report(c, at, `expected a mapping, got ${describe(node)}`, `write the keys ${known.join(', ')} indented below`);
      return BAD;
    }
    const out: Record<string, unknown> = {};
    const origin: Origin = { self: at, fields: new Map(), bad: new Set() };
    for (const pair of node.items as Array<Pair<unknown, unknown>>) {
      const keyNode = pair.key as Node | null;
      const keyAt: Where = { pos: keyNode?.range?.[0] ?? at.pos, path: at.path };
      const k = scalarValue(keyNode);
      if (typeof k !== 'string' || isAlias(keyNode)) {
        report(c, keyAt, `keys must be plain strings, got ${describe(keyNode)}`, `use one of ${known.join(', ')}`);
        continue;
      }
      const path = at.path ? `${at.path}.${k}` : k;
      if (!Object.hasOwn(shape, k)) {
        const near = closest(k, known);
        report(c, { pos: keyAt.pos, path }, `unknown key ${JSON.stringify(k)}`, near ? `did you mean ${near}?` : `known keys here: ${known.join(', ')}`);
        continue;
      }
      if (origin.fields.has(k)) continue; // a duplicate key: the yaml parser reported it
      const valueNode = pair.value as Node | null;
      const valueAt: Where = { pos: positionOf(valueNode, keyNode, at), path };
      origin.fields.set(k, valueAt);
      const v = isAlias(valueNode) ? aliasRefused(c, valueAt) : shape[k]!(valueNode, valueAt, c);
      if (v === BAD) origin.bad.add(k);
      else out[k] = v;
    }
    for (const r of opts.required ?? []) {
      if (!origin.fields.has(r)) report(c, at, `missing required key ${r}`, `add ${r}: …`);
    }
    ORIGINS.set(out, origin);
    opts.refine?.(out as Out<S>, c);
    return out as Out<S>;
  };
}

export function list<T>(item: V<T>, opts: { min?: number; unique?: boolean; refine?: (items: T[], c: Ctx) => void } = {}): V<T[]> {
  return (node, at, c) => {
    if (!isSeq(node)) {
      report(c, at, `expected a list, got ${describe(node)}`, 'write the items one per line starting with "- ", or as [a, b]');
      return BAD;
    }
    if (opts.min !== undefined && node.items.length < opts.min) {
      report(c, at, `expected at least ${opts.min} item${opts.min === 1 ? '' : 's'}`, 'remove the key to use the default');
      return BAD;
    }
    const out: T[] = [];
    const seen = new Set<unknown>();
    node.items.forEach((n, i) => {
      const itemNode = n as Node | null;
      const itemAt: Where = { pos: positionOf(itemNode, null, at), path: `${at.path}[${i}]` };
      const v = isAlias(itemNode) ? aliasRefused(c, itemAt) : item(itemNode, itemAt, c);
      if (v === BAD) return;
      if (opts.unique && seen.has(v)) {
        report(c, itemAt, `${JSON.stringify(v)} is listed twice`, 'remove the repetition');
        return;
      }
      seen.add(v);
      out.push(v);
    });
    opts.refine?.(out, c);
    return out;
  };
}

/** Validates a value node that is not part of a mapping (the document root). */
export function root<T>(v: V<T>, node: Node | null, c: Ctx): T | Bad {
  return v(node, { pos: node?.range?.[0] ?? 0, path: '' }, c);
}

function aliasRefused(c: Ctx, at: Where): Bad {
  report(c, at, 'YAML aliases (*name) are not supported in the broker configuration', 'write the value out in full');
  return BAD;
}

/** An empty value (`key:` and nothing) has a zero-length range at the next token: point at the key. */
function positionOf(value: Node | null, key: Node | null, parent: Where): number {
  const r = value?.range;
  if (r && !(isScalar(value) && value.value === null && r[0] === r[1])) return r[0];
  return key?.range?.[0] ?? r?.[0] ?? parent.pos;
}

// ── did you mean ─────────────────────────────────────────────────────────────────────────────

/** The known word nearest to `word` by edit distance, if near enough to be a likely typo. */
export function closest(word: string, known: readonly string[]): string | undefined {
  let best: string | undefined;
  let bestD = Infinity;
  for (const k of known) {
    const d = k.toLowerCase() === word.toLowerCase() ? 0.5 : editDistance(word, k);
    if (d < bestD) {
      bestD = d;
      best = k;
    }
  }
  return bestD <= Math.max(2, Math.floor(word.length / 3)) ? best : undefined;
}

/** Optimal string alignment distance (Levenshtein plus adjacent transposition). */
export function editDistance(a: string, b: string): number {
  const m = a.length;
  const n = b.length;
  let prev2: number[] = [];
  let prev = Array.from({ length: n + 1 }, (_, j) => j);
  for (let i = 1; i <= m; i++) {
    const cur = [i];
    for (let j = 1; j <= n; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      let d = Math.min(prev[j]! + 1, cur[j - 1]! + 1, prev[j - 1]! + cost);
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) d = Math.min(d, prev2[j - 2]! + 1);
      cur.push(d);
    }
    prev2 = prev;
    prev = cur;
  }
  return prev[n]!;
}
