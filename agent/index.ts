// The device library: re-exports only (STYLE: an index.ts only re-exports).
export {
  WitnessAgent,
  type QoS,
  type PublishOptions,
  type QueuedMessage,
  type IncomingMessage,
  type ConnectInfo,
  type OfflineInfo,
  type AckInfo,
  type DroppedInfo,
  type WitnessAgentEvents,
  type AgentStatus,
} from './agent.js';
export {
  AGENT_DEFAULTS,
  BRIDGE_DEFAULTS,
  resolveAgentOptions,
  type WitnessAgentOptions,
  type ResolvedAgentOptions,
  type KnownKeys,
  type AgentClock,
  type OverflowPolicy,
} from './options.js';
export { IncomingVerifier, KnownKeyTable, type EnvelopeResult } from './verifier.js';
export { CONFIG_FILE_NAME, loadAgentConfig, parseAgentConfig, optionsFromConfig, defaultConfigText, type AgentConfig, type KnownKeyEntry } from './config.js';
export { startBridge, SINK_TOPIC, type BridgeOptions, type RunningBridge, type BridgeLogEvent } from './bridge.js';
export { DeviceSigner, signDeviceEnvelope, type SignTime, type SignedMessage } from './signer.js';
