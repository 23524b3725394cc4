/**
 * Access control: may this identity publish to this topic, subscribe with this filter?
 *
 * Identities are strings: `device:<id>` (proved by the device key), `user:<name>` (username and
 * password), `cert:<identity>` (TLS client certificate), `anonymous`.
 *
 * Semantics, in the order they are applied (each step can decide):
 *  1. `guard:invalid-topic` / `guard:invalid-filter`: a topic name with a wildcard, or a
 *     malformed filter, is refused even with access control off (aedes refuses them first anyway).
 *  2. Access control off (`enabled: false`): allowed, rule `default`.
 *  3. `guard:template`: a rule that applies to the client uses a template whose value would widen
 *     it (a client id, username or identity containing `+`, `#`, `/` or U+0000) — the client is
 *     refused for that action whatever the other rules say. A template whose value is missing
 *     (no username) or empty makes its rule not apply to that client.
 *  4. Deny beats allow, whatever the order: the first deny rule (in config order) that applies
 *     decides. For publish, a deny rule applies when one of its filters matches the topic; for
 *     subscribe, when one of its filters *intersects* the subscription filter (some topic could
 *     match both): MQTT 3.1.1 cannot grant part of a subscription, so it is refused whole.
 *  5. Guards `guard:$SYS` and `guard:root-wildcard`: a `$SYS…` topic or filter, and a root
 *     wildcard subscription (`#`, `+/#`, `+/+/#`: first level a wildcard, ending in `#`), are
 *     granted only by an allow rule whose filter was *written* as that kind of filter (starting
 *     with `$SYS`, resp. a root wildcard) — never through a template (a client id `$SYS`).
 *  6. The first allow rule (in config order) that applies decides. For publish a filter must
 *     match the topic [MQTT-4.7.1-2] (a leading wildcard never matches a `$` topic
 *     [MQTT-4.7.2-1]); for subscribe, one filter of the rule must *cover* the subscription
 *     filter — every topic the subscription could match is matched by the rule's filter
 *     (`devices/d1/#` covers `devices/d1/+/temp`, not `devices/+/temp`). Allow rules are not
 *     combined: a subscription that only the union of two rules covers is refused.
 *  7. No rule decided: refused, rule `default`.
 *
 * Hot path: checkPublish runs on every publish. Rules are compiled once (filters split into
 * levels, template slots marked, decisions made); per client the rules that apply are selected
 * and their templates filled once, then cached in a bounded map keyed by client id (and checked
 * against identity and username). A decision is then a Map lookup and a walk of the topic string
 * against the few expanded filters (no split, no allocation when allowed).
 * Measured (Node 20.20, AMD EPYC, one core; 20 rules, 1,000 devices cycling, topic
 * `devices/<id>/telemetry/temp`, allowed by the last rule after one deny rule):
 * ≈ 4.5–5.5 M decisions/s with a warm cache; ≈ 0.1 M/s when every call misses (30,000 clients
 * cycling through the 10,000-entry cache), so the cache is worth ~45×. Keying the cache by an
 * identity+id+username string and splitting the topic had cost ≈ 180 ns + ≈ 200 ns of the
 * ≈ 550 ns per decision measured before (1.5–1.8 M/s).
 */
import { WitnessError } from '../../shared/errors.js';
import { BoundedMap } from './bounded-map.js';
import { coversLevels, intersectsLevels, isValidFilter, isValidTopic, matchTopic } from './topic.js';
import {
  checkIdentityPattern,
  checkRuleFilter,
  compileRule,
  expandFilter,
  identityMatches,
  isRootWildcard,
  templateValueState,
  type AclConfig,
  type CompiledRule,
  type TemplateName,
  type TemplateValues,
} from './rules.js';

export interface AclSubject {
  /** `device:<id>`, `user:<name>`, `cert:<identity>` or `anonymous`. */
  identity: string;
  clientId: string;
  username?: string;
}

export interface AclDecision {
  allowed: boolean;
  /** The deciding rule: `rules[2]`, `default-rules[0]`, `default`, or a guard (`guard:$SYS`). */
  rule: string;
  /** Why, for people and records. */
  reason: string;
}

/** Client ids whose expanded rules are kept. */
const CLIENT_CACHE_SIZE = 10_000;

interface Expanded {
  levels: readonly string[];
  explicitSys: boolean;
  rootWildcard: boolean;
  /** Precomputed: deciding costs no allocation. */
  decision: AclDecision;
}

interface ActionRules {
  deny: Expanded[];
  allow: Expanded[];
  /** Set when a rule for this action would be widened by a template value. */
  refused?: AclDecision;
}

interface ClientRules {
  identity: string;
  username: string | undefined;
  publish: ActionRules;
  subscribe: ActionRules;
}

const PUBLISH = ['publish'] as const;
const SUBSCRIBE = ['subscribe'] as const;
const BOTH = ['publish', 'subscribe'] as const;

const OFF: AclDecision = Object.freeze({ allowed: true, rule: 'default', reason: 'access control off' });
const INVALID_TOPIC: AclDecision = Object.freeze({ allowed: false, rule: 'guard:invalid-topic', reason: 'not a valid MQTT topic name [MQTT-4.7.3]' });
const INVALID_FILTER: AclDecision = Object.freeze({ allowed: false, rule: 'guard:invalid-filter', reason: 'not a valid MQTT topic filter [MQTT-4.7.1]' });

export class Acl {
  readonly #enabled: boolean;
  readonly #rules: readonly CompiledRule[];
  readonly #cache = new BoundedMap<string, ClientRules>(CLIENT_CACHE_SIZE);

  /** Throws WITNESS_ERR_INVALID_ARGUMENT naming the first malformed rule (the config loader reports them all). */
  constructor(config: AclConfig) {
    if (typeof config !== 'object' || config === null || typeof config.enabled !== 'boolean' || !Array.isArray(config.rules)) {
      throw new WitnessError('WITNESS_ERR_INVALID_ARGUMENT', 'Acl: expected { enabled: boolean, rules: AclRule[] }');
    }
    config.rules.forEach((r, i) => {
      const bad = (what: string): never => {
        throw new WitnessError('WITNESS_ERR_INVALID_ARGUMENT', `Acl: rules[${i}]: ${what}`, { details: { rule: i } });
      };
      const p = checkIdentityPattern(r.identity);
      if (p) bad(`${p.what} (${p.hint})`);
      if (r.effect !== 'allow' && r.effect !== 'deny') bad(`effect must be allow or deny, got ${JSON.stringify(r.effect)}`);
      if (!Array.isArray(r.actions) || r.actions.length === 0 || !r.actions.every((a: unknown) => a === 'publish' || a === 'subscribe')) {
        bad('actions must be a non-empty list of publish, subscribe');
      }
      if (!Array.isArray(r.topics) || r.topics.length === 0) bad('topics must be a non-empty list of topic filters');
      for (const f of r.topics) {
        const q = checkRuleFilter(f);
        if (q) bad(`${q.what} (${q.hint})`);
      }
    });
    this.#enabled = config.enabled;
    this.#rules = config.rules.map(compileRule);
  }

  get enabled(): boolean {
    return this.#enabled;
  }

  checkPublish(who: AclSubject, topic: string): AclDecision {
    if (!isValidTopic(topic)) return INVALID_TOPIC;
    if (!this.#enabled) return OFF;
    const rules = this.#rulesFor(who).publish;
    if (rules.refused) return rules.refused;
    for (const d of rules.deny) if (matchTopic(d.levels, topic)) return d.decision;
    const sys = topic.startsWith('$SYS');
    for (const a of rules.allow) {
      if (sys && !a.explicitSys) continue;
      if (matchTopic(a.levels, topic)) return a.decision;
    }
    if (sys) return { allowed: false, rule: 'guard:$SYS', reason: `${who.identity} may publish to $SYS topics only by a rule written for $SYS` };
    return { allowed: false, rule: 'default', reason: `no rule allows ${who.identity} to publish to this topic` };
  }

  checkSubscribe(who: AclSubject, filter: string): AclDecision {
    if (!isValidFilter(filter)) return INVALID_FILTER;
    if (!this.#enabled) return OFF;
    const rules = this.#rulesFor(who).subscribe;
    if (rules.refused) return rules.refused;
    const levels = filter.split('/');
    for (const d of rules.deny) if (intersectsLevels(d.levels, levels)) return d.decision;
    const sys = filter.startsWith('$SYS');
    const root = isRootWildcard(levels);
    for (const a of rules.allow) {
      if ((sys && !a.explicitSys) || (root && !a.rootWildcard)) continue;
      if (coversLevels(a.levels, levels)) return a.decision;
    }
    if (sys) return { allowed: false, rule: 'guard:$SYS', reason: `${who.identity} may subscribe to $SYS only by a rule written for $SYS` };
    if (root) return { allowed: false, rule: 'guard:root-wildcard', reason: `${who.identity} may subscribe to a root wildcard only by a rule written as one` };
    return { allowed: false, rule: 'default', reason: `no rule's filter covers every topic this filter could match for ${who.identity}` };
  }

  #rulesFor(who: AclSubject): ClientRules {
    // Keyed by client id alone (a Map lookup by an existing string, ≈ 15 ns, where building an
    // identity+id+username key cost ≈ 180 ns); the entry is checked against the other two.
    const hit = this.#cache.get(who.clientId);
    if (hit !== undefined && hit.identity === who.identity && hit.username === who.username) return hit;
    const built = this.#build(who);
    this.#cache.set(who.clientId, built);
    return built;
  }

  #build(who: AclSubject): ClientRules {
    const colon = who.identity.indexOf(':');
    const values: TemplateValues = {
      clientId: who.clientId,
      ...(colon >= 0 ? { identity: who.identity.slice(colon + 1) } : {}),
      ...(who.username !== undefined ? { username: who.username } : {}),
    };
    const out: ClientRules = { identity: who.identity, username: who.username, publish: { deny: [], allow: [] }, subscribe: { deny: [], allow: [] } };
    for (const rule of this.#rules) {
      if (!identityMatches(rule, who.identity)) continue;
      const actions = rule.publish ? (rule.subscribe ? BOTH : PUBLISH) : SUBSCRIBE;
      for (const f of rule.filters) {
        const unsafe = f.templates.find((t) => templateValueState(values[t]) === 'unsafe');
        if (unsafe !== undefined) {
          for (const action of actions) out[action].refused ??= refusal(rule, unsafe, values[unsafe]!);
          continue;
        }
        if (f.templates.some((t) => templateValueState(values[t]) === 'missing')) continue; // the rule has no subject here
        const levels = expandFilter(f, values);
        for (const action of actions) {
          out[action][rule.effect].push({ levels, explicitSys: f.explicitSys, rootWildcard: f.rootWildcard, decision: f.decisions[action] });
        }
      }
    }
    return out;
  }
}

function refusal(rule: CompiledRule, t: TemplateName, v: string): AclDecision {
  return Object.freeze({
    allowed: false,
    rule: 'guard:template',
    reason: `{${t}} = ${JSON.stringify(v)} contains +, #, / or U+0000 and would widen ${rule.name}`,
  });
}
