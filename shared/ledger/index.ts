export { Ledger, LEDGER_DEFAULTS, type LedgerOptions, type FsyncPolicy, type AppendResult, type CheckpointInfo, type RecoveryReport } from './writer.js';
export { LedgerReader, type StoredCheckpoint, type LedgerRecordLine } from './reader.js';
export { verifyLedger, type VerifyOptions, type VerifyReport, type VerifyFailure } from './verifier.js';
export { RECORD_VERSION, type RecordBody, type CheckpointRecord, type RecoveryRecord } from './record.js';
export { formatWitnessExtension, parseWitnessExtension } from './checkpoint-log.js';
