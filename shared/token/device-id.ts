/**
 * Device ids. A device id is the device's MQTT client id, the name of its key (C2SP signed-note
 * key name, so the key hash and the COSE kid `id+hash` are derived from it) and the key of its
 * entry in the broker's device registry: 1 to 64 characters from A-Z a-z 0-9 . _ : -.
 *
 * The same rule as `checkDeviceId` in agent/cli/main.ts (which reports it as a usage error of
 * `witness-agent init`); this one is the library form, shared by the token and the registry.
 */
import { WitnessError } from '../errors.js';

export const DEVICE_ID_PATTERN = /^[A-Za-z0-9._:-]{1,64}$/;

export function isDeviceId(id: unknown): id is string {
  return typeof id === 'string' && DEVICE_ID_PATTERN.test(id);
}

/** Throws WITNESS_ERR_DEVICE_ID_INVALID unless `id` is a device id. */
export function checkDeviceId(id: unknown): asserts id is string {
  if (!isDeviceId(id)) {
    const shown = typeof id === 'string' ? JSON.stringify(id.slice(0, 80)) : typeof id;
    throw new WitnessError('WITNESS_ERR_DEVICE_ID_INVALID', `device id ${shown}: use 1 to 64 characters from A-Z a-z 0-9 . _ : -`, {
      details: { id: typeof id === 'string' ? id.slice(0, 80) : null },
    });
  }
}
