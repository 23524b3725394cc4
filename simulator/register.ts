/**
 * Puts a simulated fleet's keys into a broker's device registry (DATA/devices.json), the same file
 * `witness device add` edits: every device key active, each `revoked` key added and then revoked
 * (so the broker answers `revoked`, not `unknown-key`), `unknown` keys never. One locked edit for
 * the whole fleet; a running broker picks it up without a restart and records each change.
 *
 * Or, with no data directory at hand, `registryDocument` gives the same registry as a
 * `witness-devices/v1` document to copy into DATA/devices.json before the broker starts.
 */
import { DeviceRegistry, type RegistryDocument } from '../broker/identity/registry.js';
import { keyHash } from '../shared/keys/key-id.js';
import { SimLink } from './link.js';
import type { RunConnect, RunDisconnect } from './types.js';

export interface FleetKeys {
  id: string;
  publicKey: Uint8Array;
  revoked?: { publicKey: Uint8Array } | undefined;
}

export interface RegisterResult {
  /** Registry changes made (0 when everything was already there). */
  changes: number;
  devices: number;
}

function apply(r: DeviceRegistry, devices: readonly FleetKeys[]): number {
  let changes = 0;
  for (const d of devices) {
    changes += r.add(d.id, d.publicKey).changes.length;
    if (d.revoked) {
      const hash = Buffer.from(keyHash(d.id, d.revoked.publicKey)).toString('hex');
      const status = r.lookup(d.id, hash).status;
      if (status === 'unknown') changes += r.add(d.id, d.revoked.publicKey).changes.length;
      if (status !== 'revoked') changes += r.revoke(d.id, hash).changes.length;
    }
  }
  return changes;
}

/** Registers the fleet in DATA_DIR's registry (idempotent). */
export function registerFleet(dataDir: string, devices: readonly FleetKeys[]): RegisterResult {
  const changes = DeviceRegistry.edit(dataDir, (r) => apply(r, devices));
  return { changes, devices: devices.length };
}

/** The fleet as a registry document (devices.json), for a broker that is set up elsewhere. */
export function registryDocument(devices: readonly FleetKeys[]): RegistryDocument {
  const r = DeviceRegistry.empty('.');
  apply(r, devices);
  return r.toJSON();
}

/**
 * A running broker picks registry changes up by itself, a moment later. Before a fleet starts,
 * one device connects until it is accepted (bounded: 100 attempts, 20 s). Every attempt is a
 * connect the broker records, so the attempts are returned as run-file lines (t = `rel()` at each
 * attempt, ms after the run's start) to be written before the run's own lines.
 */
export async function waitUntilRegistered(broker: string, d: { id: string; seed: Uint8Array; publicKey: Uint8Array }, audience: string, rel: () => number, timeoutMs = 20_000): Promise<{ accepted: boolean; lines: Array<RunConnect | RunDisconnect> }> {
  const link = new SimLink(broker, 10_000);
  const lines: Array<RunConnect | RunDisconnect> = [];
  const deadline = Date.now() + timeoutMs;
  for (let i = 0; i < 100 && Date.now() < deadline; i++) {
    const t = rel();
    const out = await link.connect({ clientId: d.id, device: { seed: d.seed, publicKey: d.publicKey, audience } });
    lines.push({ k: 'connect', t, dev: d.id, ok: out.ok, ...(out.rc !== undefined ? { rc: out.rc } : {}), ms: Math.round(out.ms * 100) / 100, ...(out.err ? { err: out.err } : {}) });
    if (out.ok) {
      await link.end();
      lines.push({ k: 'disconnect', t: rel(), dev: d.id, why: 'planned' });
      return { accepted: true, lines };
    }
    await new Promise((r) => setTimeout(r, 200));
  }
  return { accepted: false, lines };
}
