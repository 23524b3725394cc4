export { Acl, type AclDecision, type AclSubject } from './acl.js';
export { DEFAULT_ACL_RULES, TEMPLATES, checkIdentityPattern, checkRuleFilter, type AclAction, type AclConfig, type AclEffect, type AclRule, type RuleProblem } from './rules.js';
export { filterCovers, filtersIntersect, isValidFilter, isValidTopic, topicMatches } from './topic.js';
