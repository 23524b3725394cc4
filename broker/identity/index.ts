export { TokenVerifier, TOKEN_VERIFIER_DEFAULTS, type TokenVerifierOptions, type TokenVerdict, type TokenRefusal, type TokenKeyLookup } from './token-verifier.js';
export {
  DeviceRegistry,
  REGISTRY_FILE,
  REGISTRY_FORMAT,
  diffRegistries,
  describeChange,
  type Change,
  type DeviceEntry,
  type EditResult,
  type KeyEntry,
  type KeyRecord,
  type LookupResult,
  type RegistryDocument,
} from './registry.js';
export { watchRegistry, REGISTRY_WATCH_DEFAULTS, type RegistryWatcher, type RegistryWatchOptions } from './registry-watcher.js';
export { Authenticator, certFingerprint, normalizeFingerprint, type AuthDecision, type AuthInput, type AuthMethod, type AuthenticatorOptions } from './authenticator.js';
