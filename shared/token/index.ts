export { DEVICE_ID_PATTERN, isDeviceId, checkDeviceId } from './device-id.js';
export {
  TOKEN_USERNAME,
  DEFAULT_AUDIENCE,
  NONCE_SIZE,
  MAX_TOKEN_SIZE,
  MAX_AUDIENCE_LENGTH,
  createConnectToken,
  decodeConnectToken,
  type ConnectTokenInput,
  type DecodedConnectToken,
} from './connect-token.js';
