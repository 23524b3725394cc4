/**
 * Per-topic policies: how much of a publish the ledger keeps (`audit`), what is done with its
 * envelope (`envelope`, `unwrap`), and which JSON paths are masked in recorded bodies (`mask`).
 *
 * The policies form an ordered list of topic filters: the FIRST whose filter matches the topic
 * decides [MQTT-4.7.1-2] (a leading wildcard never matches a `$` topic [MQTT-4.7.2-1]); a topic
 * that none matches gets `defaultPolicy`. Fields a policy leaves out in the config come from
 * `defaultPolicy` (broker/config resolves that), so a policy here is always complete.
 *
 *   audit     none      nothing unless refused (a refusal is always recorded)
 *             metadata  topic, QoS, size, payload hash, verdicts (default)
 *             payload   + the payload body (masked per `mask`)
 *             full      + one record per delivery to each subscriber
 *   envelope  off       no check
 *             observe   verify and record the verdict, deliver anyway (default)
 *             enforce   refuse what does not verify
 *   unwrap    deliver the application payload instead of the envelope (needs observe/enforce)
 *   mask      JSON paths whose values are replaced by keyed pseudonyms (broker/policy/mask.ts)
 *
 * forTopic runs per publish and per delivery: answers are cached per topic in a bounded map.
 */
import { WitnessError } from '../../shared/errors.js';
import { BoundedMap } from '../acl/bounded-map.js';
import { isValidFilter, matchTopic } from '../acl/topic.js';
import { checkMaskPath } from './mask.js';

export const AUDIT_LEVELS = ['none', 'metadata', 'payload', 'full'] as const;
export const ENVELOPE_MODES = ['off', 'observe', 'enforce'] as const;
export type AuditLevel = (typeof AUDIT_LEVELS)[number];
export type EnvelopeMode = (typeof ENVELOPE_MODES)[number];

export interface ResolvedPolicy {
  /** What the ledger keeps of a publish. Default `metadata`. */
  audit: AuditLevel;
  /** Envelope check. Default `observe`. */
  envelope: EnvelopeMode;
  /** Deliver the payload inside a verified envelope instead of the envelope. Default false. */
  unwrap: boolean;
  /** JSON paths masked in recorded bodies. Default none. */
  mask: readonly string[];
}

export interface PolicyRule extends ResolvedPolicy {
  /** MQTT topic filter the policy applies to. */
  topic: string;
}

export interface PoliciesConfig {
  /** Ordered; first match wins. */
  policies: readonly PolicyRule[];
  /** For topics no policy matches. */
  defaultPolicy: ResolvedPolicy;
}

/** A policy with the name of the entry that gave it: `policies[2]` or `defaultPolicy`. */
export interface MatchedPolicy extends ResolvedPolicy {
  rule: string;
}

export const DEFAULT_POLICY: ResolvedPolicy = Object.freeze({ audit: 'metadata', envelope: 'observe', unwrap: false, mask: Object.freeze([]) as readonly string[] });

/** Distinct topics whose answer is kept. */
const TOPIC_CACHE_SIZE = 10_000;

/** Why a policy is malformed, or undefined (shared with the config loader). */
export function checkPolicy(p: ResolvedPolicy): string | undefined {
  if (!(AUDIT_LEVELS as readonly string[]).includes(p.audit)) return `audit must be one of ${AUDIT_LEVELS.join(', ')}`;
  if (!(ENVELOPE_MODES as readonly string[]).includes(p.envelope)) return `envelope must be one of ${ENVELOPE_MODES.join(', ')}`;
  if (typeof p.unwrap !== 'boolean') return 'unwrap must be a boolean';
  if (p.unwrap && p.envelope === 'off') return 'unwrap needs envelope observe or enforce: with envelope off nothing is verified to unwrap';
  if (!Array.isArray(p.mask)) return 'mask must be a list of JSON paths';
  for (const m of p.mask) {
    const bad = checkMaskPath(m);
    if (bad) return bad;
  }
  return undefined;
}

export class Policies {
  readonly #rules: ReadonlyArray<{ levels: string[]; policy: MatchedPolicy }>;
  readonly #default: MatchedPolicy;
  readonly #cache = new BoundedMap<string, MatchedPolicy>(TOPIC_CACHE_SIZE);

  /** Throws WITNESS_ERR_INVALID_ARGUMENT naming the first malformed policy. */
  constructor(config: PoliciesConfig) {
    const bad = (where: string, what: string): never => {
      throw new WitnessError('WITNESS_ERR_INVALID_ARGUMENT', `Policies: ${where}: ${what}`, { details: { policy: where } });
    };
    const d = checkPolicy(config.defaultPolicy);
    if (d) bad('defaultPolicy', d);
    this.#default = freeze(config.defaultPolicy, 'defaultPolicy');
    this.#rules = config.policies.map((p, i) => {
      const where = `policies[${i}]`;
      if (!isValidFilter(p.topic)) bad(where, `${JSON.stringify(p.topic)} is not a valid MQTT topic filter`);
      const e = checkPolicy(p);
      if (e) bad(where, e);
      return { levels: p.topic.split('/'), policy: freeze(p, where) };
    });
  }

  /** The policy of a topic name: the first matching policy, else the default. */
  forTopic(topic: string): MatchedPolicy {
    const hit = this.#cache.get(topic);
    if (hit) return hit;
    let found = this.#default;
    for (const r of this.#rules) {
      if (matchTopic(r.levels, topic)) {
        found = r.policy;
        break;
      }
    }
    this.#cache.set(topic, found);
    return found;
  }
}

function freeze(p: ResolvedPolicy, rule: string): MatchedPolicy {
  return Object.freeze({ audit: p.audit, envelope: p.envelope, unwrap: p.unwrap, mask: Object.freeze([...p.mask]), rule });
}
