/**
 * From a resolved config to the broker's security pieces: the device registry (watched, so
 * `witness device add/revoke` take effect without a restart and are recorded), the connect-token
 * verifier and authenticator, access control, per-topic policies, the payload masker.
 */
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { loadConfig, type ResolvedConfig } from '../config/index.js';
import { Acl } from '../acl/index.js';
import { Policies, createMasker } from '../policy/index.js';
import { Authenticator } from '../identity/authenticator.js';
import { TokenVerifier } from '../identity/token-verifier.js';
import { DeviceRegistry } from '../identity/registry.js';
import { watchRegistry } from '../identity/registry-watcher.js';
import { EVENTS } from '../records.js';
import type { Security } from '../server.js';

export function loadBrokerConfig(path: string | undefined): ResolvedConfig {
  return loadConfig(path);
}

/** The keyed-pseudonym key of payload masking: 32 random bytes in keys/mask.key (0600), made once. */
function maskKey(dataDir: string): Uint8Array {
  const path = join(dataDir, 'keys', 'mask.key');
  if (!existsSync(path)) writeFileSync(path, randomBytes(32), { mode: 0o600, flag: 'wx' });
  return new Uint8Array(readFileSync(path));
}

export function buildSecurity(cfg: ResolvedConfig, dataDir: string): Security {
  const registry = DeviceRegistry.load(dataDir);
  let plugin: Parameters<NonNullable<Security['start']>>[0] | undefined;
  const watcher = watchRegistry(
    dataDir,
    (changes) => {
      // Each registry change made while the broker runs is a control-plane record.
      for (const c of changes) void plugin?.record(EVENTS.device, { change: c }).catch(() => {});
    },
    {
      registry,
      onError: (e) => void plugin?.record(EVENTS.error, { scope: 'registry', msg: e.message, code: e.code }).catch(() => {}),
    },
  );
  const tokenVerifier = new TokenVerifier({ audience: cfg.auth.token.audience, maxSkewMs: cfg.auth.token.maxSkewMs, nonceTtlMs: cfg.auth.token.nonceTtlMs });
  const authenticator = new Authenticator({
    registry,
    tokenVerifier,
    users: cfg.auth.users,
    certificates: cfg.auth.certificates,
    anonymous: cfg.auth.anonymous,
  });
  const masker = createMasker(maskKey(dataDir));
  return {
    keys: registry,
    authenticator,
    acl: new Acl(cfg.acl),
    policies: new Policies({ policies: cfg.policies, defaultPolicy: cfg.defaultPolicy }),
    mask: (payload, paths) => masker(payload, paths),
    start: (p) => {
      plugin = p;
      watcher.check();
    },
    close: () => watcher.close(),
  };
}
