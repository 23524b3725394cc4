export {
  PUBLIC_KEY_SIZE,
  SEED_SIZE,
  SIGNATURE_SIZE,
  checkPublicKey,
  nodeBackend,
  generateSeed,
  publicKeyFromSeed,
  sign,
  verify,
  verifyOrThrow,
  type Ed25519Backend,
} from './ed25519.js';
export { nobleBackend } from './ed25519-noble.js';
export {
  ED25519_SIGNATURE_TYPE,
  KEY_HASH_SIZE,
  checkKeyName,
  keyHash,
  verifierKey,
  parseVerifierKey,
  deviceKid,
  parseDeviceKid,
  type ParsedVerifierKey,
} from './key-id.js';
export { writeKeyPair, readSeed, readPublicKey, parsePublicKey, formatPublicKey, type WrittenKeyPair } from './key-file.js';
