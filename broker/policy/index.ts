export { AUDIT_LEVELS, DEFAULT_POLICY, ENVELOPE_MODES, Policies, checkPolicy, type AuditLevel, type EnvelopeMode, type MatchedPolicy, type PoliciesConfig, type PolicyRule, type ResolvedPolicy } from './policies.js';
export { PSEUDONYM_PREFIX, canonicalJson, checkMaskPath, createMasker, maskBytes, maskPayload, parseMaskPath, pseudonym, type MaskResult, type MaskSegment } from './mask.js';
