/**
 * Access-control rules: their shape, the default set, validation (shared by the config loader
 * and the Acl constructor) and compilation into pre-split filters with template slots.
 *
 * Identity patterns: `anonymous`, `*` (everyone), or `device:…` / `user:…` / `cert:…`, either
 * exact (`user:alice`) or with one trailing `*` (`device:*`, `cert:gw-*`).
 *
 * Topic filters are MQTT filters [MQTT-4.7.1] whose literal parts may hold templates, filled in
 * per client: `{clientId}`, `{identity}` (the part of the identity after the colon) and
 * `{username}`. A value containing `+`, `#`, `/` or U+0000 is never substituted: a client id `+`
 * must not turn `devices/{clientId}/#` into `devices/+/#`, every device's subtree, nor `d1/x`
 * reach into another level (the Acl refuses such a client, rule `guard:template`).
 */
import { isValidFilter } from './topic.js';

export type AclAction = 'publish' | 'subscribe';
export type AclEffect = 'allow' | 'deny';

export interface AclRule {
  /** Who the rule is about: `anonymous`, `*`, or `device:`/`user:`/`cert:` + name, optionally ending in `*`. */
  identity: string;
  /** `allow` grants, `deny` refuses; a matching deny beats every allow. */
  effect: AclEffect;
  /** Which requests the rule is about. */
  actions: readonly AclAction[];
  /** MQTT topic filters, with templates `{clientId}`, `{identity}`, `{username}`. */
  topics: readonly string[];
  /** Name in decisions and records. Default: `rules[<index>]`. */
  name?: string;
}

export interface AclConfig {
  /** Enforce the rules. Off: every valid request is allowed (and recorded) with rule `default`. Default false. */
  enabled: boolean;
  /** The rules; with `enabled` and no rules configured, DEFAULT_ACL_RULES. An empty list denies everything. */
  rules: readonly AclRule[];
}

/**
 * Once access control is on and the config lists no rules: a device may publish and subscribe
 * only under its own subtree; users, certificates and anonymous clients get nothing.
 */
export const DEFAULT_ACL_RULES: readonly AclRule[] = Object.freeze([
  Object.freeze({
    name: 'default-rules[0]',
    identity: 'device:*',
    effect: 'allow' as const,
    actions: Object.freeze(['publish', 'subscribe'] as const),
    topics: Object.freeze(['devices/{clientId}/#']),
  }),
]);

export const TEMPLATES = ['clientId', 'identity', 'username'] as const;
export type TemplateName = (typeof TEMPLATES)[number];

const IDENTITY_KINDS = ['device', 'user', 'cert'] as const;

export interface RuleProblem {
  what: string;
  hint: string;
}

/** Validates an identity pattern; undefined when it is fine. */
export function checkIdentityPattern(p: unknown): RuleProblem | undefined {
  const hint = 'use anonymous, *, or device:NAME / user:NAME / cert:NAME, optionally ending in *, e.g. device:*';
  if (typeof p !== 'string' || p.length === 0) return { what: 'identity pattern must be a non-empty string', hint };
  if (p === '*' || p === 'anonymous') return undefined;
  const colon = p.indexOf(':');
  if (colon < 0) return { what: `identity pattern ${JSON.stringify(p)} names no identity kind`, hint };
  const kind = p.slice(0, colon);
  if (!(IDENTITY_KINDS as readonly string[]).includes(kind)) {
    const k = kind.toLowerCase();
    const near = IDENTITY_KINDS.find((x) => k.startsWith(x) || x.startsWith(k));
    return { what: `identity pattern ${JSON.stringify(p)}: unknown kind ${JSON.stringify(kind)}`, hint: near && k !== '' ? `did you mean ${near}:${p.slice(colon + 1)}?` : hint };
  }
  const star = p.indexOf('*');
  if (star >= 0 && star !== p.length - 1) return { what: `identity pattern ${JSON.stringify(p)}: * may only end the pattern`, hint };
  if (p.length === colon + 1) return { what: `identity pattern ${JSON.stringify(p)} has an empty name`, hint };
  if (/[\u0000-\u001f\u007f]/.test(p)) return { what: `identity pattern ${JSON.stringify(p)} contains a control character`, hint };
  return undefined;
}

/** Validates a rule's topic filter (with templates); undefined when it is fine. */
export function checkRuleFilter(f: unknown): RuleProblem | undefined {
  const hint = 'an MQTT topic filter: + and # occupy a whole level, # only last [MQTT-4.7.1-2]; templates {clientId}, {identity}, {username}';
  if (typeof f !== 'string' || f.length === 0) return { what: 'topic filter must be a non-empty string', hint };
  for (const m of f.matchAll(/\{([^{}/]*)\}/g)) {
    const name = m[1]!;
    if (!(TEMPLATES as readonly string[]).includes(name)) {
      const near = TEMPLATES.find((t) => t.toLowerCase() === name.toLowerCase());
      return {
        what: `topic filter ${JSON.stringify(f)}: unknown template {${name}}`,
        hint: near ? `did you mean {${near}}?` : `templates are ${TEMPLATES.map((t) => `{${t}}`).join(', ')}`,
      };
    }
  }
  // Templates stand for one non-empty, wildcard-free piece of a level; check the filter with
  // a placeholder in their place.
  const probe = f.replace(/\{(clientId|identity|username)\}/g, 'x');
  if (!isValidFilter(probe)) return { what: `topic filter ${JSON.stringify(f)} is not a valid MQTT topic filter`, hint };
  return undefined;
}

// ── compilation ──────────────────────────────────────────────────────────────────────────────

/** A level: a literal, or pieces of literal text and template slots. */
export type LevelPattern = string | ReadonlyArray<string | { t: TemplateName }>;

export interface CompiledFilter {
  source: string;
  levels: readonly LevelPattern[];
  templated: boolean;
  /** The templates it uses. */
  templates: readonly TemplateName[];
  /** The decision it gives per action: client-independent, so made once. */
  decisions: Readonly<Record<AclAction, Readonly<{ allowed: boolean; rule: string; reason: string }>>>;
  /** Written as a `$SYS` filter: the only kind that may grant `$SYS` topics. */
  explicitSys: boolean;
  /** Written as a root wildcard (`#`, `+/#`, …): the only kind that may grant one. */
  rootWildcard: boolean;
}

export interface CompiledRule {
  index: number;
  name: string;
  effect: AclEffect;
  publish: boolean;
  subscribe: boolean;
  /** Exact identity, or the prefix before a trailing `*` (`*` alone: prefix ''). */
  identity: string;
  wildcard: boolean;
  filters: readonly CompiledFilter[];
}

/** A root wildcard filter: its first level is a wildcard and it ends in `#` (`#`, `+/#`, `+/+/#`). */
export function isRootWildcard(levels: readonly string[]): boolean {
  const first = levels[0];
  return (first === '#' || first === '+') && levels[levels.length - 1] === '#';
}

export function compileRule(rule: AclRule, index: number): CompiledRule {
  const wildcard = rule.identity.endsWith('*');
  const name = rule.name ?? `rules[${index}]`;
  return {
    index,
    name,
    effect: rule.effect,
    publish: rule.actions.includes('publish'),
    subscribe: rule.actions.includes('subscribe'),
    identity: wildcard ? rule.identity.slice(0, -1) : rule.identity,
    wildcard,
    filters: rule.topics.map((f) => compileFilter(f, rule, name)),
  };
}

function compileFilter(source: string, rule: AclRule, name: string): CompiledFilter {
  const decide = (action: AclAction): Readonly<{ allowed: boolean; rule: string; reason: string }> =>
    Object.freeze(
      rule.effect === 'deny'
        ? { allowed: false, rule: name, reason: `denied by ${name} (${rule.identity} deny ${action} ${source})` }
        : { allowed: true, rule: name, reason: `allowed by ${name} (${rule.identity} ${action} ${source})` },
    );
  const raw = source.split('/');
  let templated = false;
  const templates = new Set<TemplateName>();
  const levels = raw.map((l): LevelPattern => {
    if (!l.includes('{')) return l;
    const parts: Array<string | { t: TemplateName }> = [];
    let last = 0;
    for (const m of l.matchAll(/\{(clientId|identity|username)\}/g)) {
      if (m.index > last) parts.push(l.slice(last, m.index));
      parts.push({ t: m[1] as TemplateName });
      templates.add(m[1] as TemplateName);
      last = m.index + m[0].length;
    }
    if (parts.length === 0) return l;
    if (last < l.length) parts.push(l.slice(last));
    templated = true;
    return parts;
  });
  return {
    source,
    levels,
    templated,
    templates: [...templates],
    decisions: { publish: decide('publish'), subscribe: decide('subscribe') },
    explicitSys: source.startsWith('$SYS'),
    rootWildcard: isRootWildcard(raw),
  };
}

export function identityMatches(rule: CompiledRule, identity: string): boolean {
  return rule.wildcard ? identity.startsWith(rule.identity) : identity === rule.identity;
}

export type TemplateValues = Partial<Record<TemplateName, string>>;

/**
 * Whether a template value can be substituted: `ok`; `missing` (undefined or empty: the rule has
 * no subject for this client and does not apply to it); `unsafe` (it holds a level separator, a
 * wildcard or U+0000, so substituting it would widen the rule's subtree: refuse the client).
 */
export function templateValueState(v: string | undefined): 'ok' | 'missing' | 'unsafe' {
  if (v === undefined || v.length === 0) return 'missing';
  return /[+#/\u0000]/.test(v) ? 'unsafe' : 'ok';
}

/** Fills a filter's templates. Precondition: every value the filter uses is `ok`. */
export function expandFilter(f: CompiledFilter, values: TemplateValues): string[] {
  if (!f.templated) return f.levels as string[];
  return f.levels.map((l) => (typeof l === 'string' ? l : l.map((p) => (typeof p === 'string' ? p : values[p.t]!)).join('')));
}
