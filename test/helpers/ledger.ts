/** A real data directory (keys, seal state, ledger) for tests, made the way `witness init` makes it. */
import { initDataDir, openSigning, type InitResult } from '../../broker/data-dir.js';
import { Ledger, type LedgerOptions } from '../../shared/ledger/writer.js';
import { parseVerifierKey } from '../../shared/keys/key-id.js';
import { parseSealKey } from '../../shared/checkpoint/seal.js';

export interface TestLedger {
  init: InitResult;
  ledger: Ledger;
  key: { name: string; publicKey: Uint8Array };
  sealKey: Uint8Array;
}

export async function openTestLedger(dataDir: string, options: Partial<LedgerOptions> = {}, nodeId = 'test-node'): Promise<TestLedger> {
  const init = await initDataDir(dataDir, nodeId);
  const ledger = await reopenTestLedger(dataDir, options);
  const k = parseVerifierKey(init.manifest.verifierKey);
  return { init, ledger, key: { name: k.name, publicKey: k.publicKey }, sealKey: parseSealKey(init.sealKeyHex) };
}

export async function reopenTestLedger(dataDir: string, options: Partial<LedgerOptions> = {}): Promise<Ledger> {
  const s = openSigning(dataDir);
  return Ledger.open(`${dataDir}/ledger`, { origin: s.manifest.origin, signer: s.signer, seal: s.seal, ...options });
}

/** A ~300-byte record body shaped like a publish record. */
export function sampleRecord(n: number): Record<string, unknown> {
  return {
    v: 1,
    t: 1_732_363_200_000 + n,
    u: 3,
    n: 'test-node',
    e: 'publish',
    c: `device-${n % 97}`,
    id: { k: `device-${n % 97}+1a2b3c4d` },
    topic: `devices/device-${n % 97}/telemetry/temperature`,
    q: n % 3,
    r: false,
    m: n % 65535,
    s: 128,
    h: 'q1w2e3r4t5y6u7i8o9p0a1s2d3f4g5h6j7k8l9z0x1c2v3b4n5m6',
    acl: 'allow',
    env: 'valid',
    seq: n,
  };
}
