export { Outbox, OUTBOX_DEFAULTS, type OutboxEntry, type OutboxEvent, type OutboxOptions, type OutboxRecovery, type OverflowPolicy } from './outbox.js';
export { FileStorage, type OutboxStorage, type SegmentHandle } from './storage.js';
export { MemoryStorage } from './memory-storage.js';
