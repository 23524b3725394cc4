export { DEFAULT_CONFIG, defaultConfig, type AuthConfig, type BrokerConfig, type ClientCertificates, type ListenerConfig, type ListenerConfigInput, type ListenerType, type PolicyInput, type ResolvedConfig } from './config.js';
export { formatProblem, loadConfig, parseConfig, type ConfigProblem } from './load.js';
export { SCRYPT_DEFAULTS, checkPasswordHash, hashPassword, verifyPassword } from './password.js';
