export {
  MAX_NOTE_BYTES,
  MAX_NOTE_SIGNATURES,
  parseNote,
  formatNote,
  ed25519NoteSigner,
  ed25519NoteVerifier,
  signNote,
  openNote,
  type Note,
  type NoteSignature,
  type NoteSigner,
  type NoteVerifier,
  type OpenedNote,
} from './note.js';
export { ROOT_HASH_SIZE, formatCheckpoint, parseCheckpoint, signCheckpoint, openCheckpoint, type Checkpoint } from './checkpoint.js';
export { SEAL_KEY_SIZE, SEAL_NAME, generateSealKey, parseSealKey, evolveSealKey, sealSignature, SealVerifier, SealState } from './seal.js';
