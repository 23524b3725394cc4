/** RFC 9162 Merkle trees: hashing, the append-only compact range, proof generation and verification. */
export { HASH_SIZE, EMPTY_ROOT, leafHash, nodeHash } from './hash.js';
export { CompactRange, type NodeVisitor } from './compact-range.js';
export { type NodeSource, subtreeRoot, rootAt, inclusionProof, consistencyProof, memoryNodeSource } from './proof.js';
export { rootFromInclusionProof, verifyInclusion, rootFromConsistencyProof, verifyConsistency } from './verify.js';
