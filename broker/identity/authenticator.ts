/**
 * Who is connecting: the decision behind aedes's `authenticate` hook, as a pure class the Witness
 * plugin calls (broker/plugin.ts, AuthenticatorLike). Every decision names the identity that was
 * proven and how, or the reason for a refusal, so that the connect record says which identity
 * proved what (DESIGN §2.2).
 *
 * Rules, in order (first that applies decides):
 *   1. A zero-length client id with clean session 0 → CONNACK 2 [MQTT-3.1.3-8] (plain aedes
 *      accepts it).
 *   2. User name `witness-token/v1` → the proof-of-possession token in the password
 *      (TokenVerifier): identity `device:ID+KEYHASH`. The client id must be the token's device.
 *   3. A password without a user name → CONNACK 4 ([MQTT-3.1.2-22] forbids it).
 *   4. A user name of a configured user → its scrypt hash must match the password (verifyPassword
 *      of broker/config/password.ts): identity `user:NAME`. Credentials that are presented must
 *      verify: a wrong password is refused even where anonymous clients are allowed. A user name
 *      that is not configured is refused too, unless no users are configured at all (then, like
 *      mosquitto with no password file, the name proves nothing and the rules below decide).
 *   5. A TLS client certificate whose SHA-256 fingerprint is configured → identity `cert:NAME`
 *      (with no MQTT credentials, or with an unverified user name as in 4).
 *   6. Otherwise `anonymous` if allowed, else CONNACK 5.
 *
 * CONNACK return codes (MQTT 3.1.1 §3.2.2.3): 4 "bad user name or password" when the credentials
 * themselves do not check out (malformed, wrong signature or password, stale, replayed, for
 * another client or broker); 5 "not authorized" when they are sound but the key or client is not
 * allowed (unknown or revoked key, anonymous refused). A full nonce cache is refused with 5 as
 * well: 3 "server unavailable" would be more exact, but the plugin's AuthDecision admits 2, 4
 * and 5 only.
 */
import { createHash } from 'node:crypto';
import { WitnessError } from '../../shared/errors.js';
import { TOKEN_USERNAME } from '../../shared/token/connect-token.js';
import { verifyPassword as scryptVerifyPassword, verifyPasswordAsync as scryptVerifyPasswordAsync } from '../config/password.js';
import type { TokenKeyLookup, TokenRefusal, TokenVerifier } from './token-verifier.js';

export interface AuthInput {
  clientId: string;
  username?: string;
  password?: Uint8Array;
  /** SHA-256 (hex) of the DER of the TLS peer certificate, if the client presented one. */
  certFingerprint?: string;
  clientIdEmpty: boolean;
  cleanSession: boolean;
}

export type AuthMethod = 'token' | 'password' | 'certificate' | 'anonymous';

export type AuthDecision =
  | { ok: true; identity: string; method: AuthMethod }
  | { ok: false; returnCode: 2 | 4 | 5; reason: string; detail: string };

export interface AuthenticatorOptions {
  /** Device keys for connect tokens: a DeviceRegistry (the watcher's, to see changes live). */
  registry: TokenKeyLookup;
  tokenVerifier: TokenVerifier;
  /** Password users; `passwordHash` as written by broker/config/password.ts. Default none. */
  users?: readonly { username: string; passwordHash: string }[];
  /** TLS client certificates: SHA-256 of the DER (hex, colons and case ignored) → name. Default none. */
  certificates?: readonly { fingerprint: string; identity: string }[];
  /** Whether clients that prove nothing are accepted (as `anonymous`). */
  anonymous: boolean;
  /** The password check. Default: verifyPassword of broker/config/password.ts (scrypt). */
  verifyPassword?: (hash: string, password: string) => boolean;
}

/** Token refusals whose credentials are sound in form but not allowed → 5; all others → 4. */
const TOKEN_NOT_AUTHORIZED: ReadonlySet<TokenRefusal> = new Set<TokenRefusal>(['unknown-key', 'revoked', 'nonce-cache-full']);

const utf8 = new TextDecoder('utf-8', { fatal: true });

/** SHA-256 of the DER of a TLS peer certificate (tls.TLSSocket#getPeerCertificate().raw), lowercase hex. */
export function certFingerprint(peerCertificate: { raw: Buffer | Uint8Array }): string {
  if (!(peerCertificate?.raw instanceof Uint8Array) || peerCertificate.raw.length === 0) {
    throw new WitnessError('WITNESS_ERR_INVALID_ARGUMENT', 'certFingerprint: expected a peer certificate with its DER in .raw');
  }
  return createHash('sha256').update(peerCertificate.raw).digest('hex');
}

/**
 * A SHA-256 fingerprint as 64 lowercase hex digits; accepts `AB:CD:…` as printed by
 * `openssl x509 -noout -fingerprint -sha256`. Throws WITNESS_ERR_INVALID_ARGUMENT otherwise.
 */
export function normalizeFingerprint(fp: string): string {
  const s = typeof fp === 'string' ? fp.trim().replaceAll(':', '').toLowerCase() : '';
  if (!/^[0-9a-f]{64}$/.test(s)) {
    throw new WitnessError('WITNESS_ERR_INVALID_ARGUMENT', `certificate fingerprint ${JSON.stringify(String(fp).slice(0, 100))}: expected the SHA-256 of the certificate's DER, 64 hex digits (colons allowed)`);
  }
  return s;
}

function refuse(returnCode: 2 | 4 | 5, reason: string, detail: string): AuthDecision {
  return { ok: false, returnCode, reason, detail };
}

export class Authenticator {
  readonly #registry: TokenKeyLookup;
  readonly #tokens: TokenVerifier;
  readonly #users = new Map<string, string>();
  readonly #certs = new Map<string, string>();
  readonly #anonymous: boolean;
  readonly #verifyPassword: (hash: string, password: string) => boolean;
  readonly #verifyPasswordAsync: ((hash: string, password: string) => Promise<boolean>) | undefined;
  /** The password verdict computed off the event loop by authenticateAsync, for the current call. */
  #precomputed: (() => boolean | 'error') | undefined;
  /** A configured hash checked for unknown user names, so that they cost what a known one costs. */
  readonly #decoyHash: string | undefined;

  constructor(o: AuthenticatorOptions) {
    this.#registry = o.registry;
    this.#tokens = o.tokenVerifier;
    this.#anonymous = o.anonymous === true;
    this.#verifyPassword = o.verifyPassword ?? scryptVerifyPassword;
    // A custom synchronous check (tests) is used as given; the default scrypt runs on the thread pool.
    this.#verifyPasswordAsync = o.verifyPassword ? undefined : scryptVerifyPasswordAsync;
    for (const u of o.users ?? []) {
      if (typeof u?.username !== 'string' || u.username.length === 0) throw new WitnessError('WITNESS_ERR_INVALID_ARGUMENT', 'Authenticator users: every user needs a non-empty username');
      if (u.username === TOKEN_USERNAME) throw new WitnessError('WITNESS_ERR_INVALID_ARGUMENT', `Authenticator users: ${TOKEN_USERNAME} is reserved for device connect tokens`);
      if (typeof u.passwordHash !== 'string' || u.passwordHash.length === 0) throw new WitnessError('WITNESS_ERR_INVALID_ARGUMENT', `Authenticator users: user ${u.username} has no passwordHash`);
      if (this.#users.has(u.username)) throw new WitnessError('WITNESS_ERR_INVALID_ARGUMENT', `Authenticator users: user ${u.username} is listed twice`);
      this.#users.set(u.username, u.passwordHash);
    }
    for (const c of o.certificates ?? []) {
      const fp = normalizeFingerprint(c?.fingerprint);
      if (typeof c.identity !== 'string' || c.identity.length === 0) throw new WitnessError('WITNESS_ERR_INVALID_ARGUMENT', `Authenticator certificates: certificate ${fp} has no identity`);
      if (this.#certs.has(fp)) throw new WitnessError('WITNESS_ERR_INVALID_ARGUMENT', `Authenticator certificates: certificate ${fp} is listed twice`);
      this.#certs.set(fp, c.identity);
    }
    this.#decoyHash = this.#users.values().next().value;
  }

  /**
   * The decision, with the scrypt check of a password login run off the event loop
   * (verifyPasswordAsync): what the broker calls. Same rules and answers as `authenticate`.
   */
  async authenticateAsync(input: AuthInput): Promise<AuthDecision> {
    const passwordPath = input.username !== undefined && input.username !== TOKEN_USERNAME && input.password !== undefined && this.#users.size > 0 && !(input.clientIdEmpty && !input.cleanSession);
    if (!passwordPath) return this.authenticate(input);
    const hash = this.#users.get(input.username!) ?? this.#decoyHash;
    let verdict: boolean | 'error' = false;
    if (hash !== undefined) {
      let text: string | undefined;
      try {
        text = utf8.decode(input.password!);
      } catch {
        text = undefined; // a configured password is text; these bytes cannot be it
      }
      if (text !== undefined) {
        try {
          verdict = this.#verifyPasswordAsync ? (await this.#verifyPasswordAsync(hash, text)) === true : this.#verifyPassword(hash, text) === true;
        } catch {
          verdict = 'error';
        }
      }
    }
    return this.#decide(input, () => verdict);
  }

  authenticate(input: AuthInput): AuthDecision {
    return this.#decide(input, undefined);
  }

  #decide(input: AuthInput, precomputed: (() => boolean | 'error') | undefined): AuthDecision {
    this.#precomputed = precomputed;
    try {
      return this.#rules(input);
    } finally {
      this.#precomputed = undefined;
    }
  }

  #rules(input: AuthInput): AuthDecision {
    // 1. [MQTT-3.1.3-8]: a zero-length client id requires clean session 1.
    if (input.clientIdEmpty && !input.cleanSession) {
      return refuse(2, 'client-id:empty-persistent', 'a zero-length client id needs clean session 1 [MQTT-3.1.3-8]');
    }

    // 2. proof-of-possession connect token
    if (input.username === TOKEN_USERNAME) {
      if (input.password === undefined || input.password.length === 0) {
        return refuse(4, 'token:missing', `user name ${TOKEN_USERNAME} announces a connect token, but the password is empty`);
      }
      const v = this.#tokens.verify(input.clientId, input.password, this.#registry);
      if (v.ok) return { ok: true, identity: v.identity, method: 'token' };
      return refuse(TOKEN_NOT_AUTHORIZED.has(v.reason) ? 5 : 4, `token:${v.reason}`, v.detail);
    }

    // 3. [MQTT-3.1.2-22]: no password without a user name.
    if (input.username === undefined && input.password !== undefined) {
      return refuse(4, 'password:no-username', 'a password was sent without a user name [MQTT-3.1.2-22]');
    }

    // 4. user name and password
    if (input.username !== undefined) {
      const hash = this.#users.get(input.username);
      if (hash !== undefined) return this.#checkPassword(input.username, hash, input.password);
      if (this.#users.size > 0) {
        // Same cost as a known user, so that timing does not tell which names exist.
        if (this.#decoyHash !== undefined && input.password !== undefined) this.#safeVerify(this.#decoyHash, input.password);
        return refuse(4, 'password:unknown-user', `no user ${JSON.stringify(input.username.slice(0, 100))} is configured`);
      }
      // No users configured: the name proves nothing; rules 5 and 6 decide.
    }

    // 5. TLS client certificate
    if (input.certFingerprint !== undefined) {
      const name = this.#certs.get(input.certFingerprint.replaceAll(':', '').toLowerCase());
      if (name !== undefined) return { ok: true, identity: `cert:${name}`, method: 'certificate' };
    }

    // 6. anonymous
    if (this.#anonymous) return { ok: true, identity: 'anonymous', method: 'anonymous' };
    const tried = input.certFingerprint !== undefined ? `a client certificate that is not configured (${input.certFingerprint})` : 'no credentials';
    return refuse(5, 'anonymous-refused', `anonymous clients are not allowed, and the client presented ${tried}`);
  }

  #checkPassword(username: string, hash: string, password: Uint8Array | undefined): AuthDecision {
    if (password === undefined) return refuse(4, 'password:missing', `user ${username} sent no password`);
    const ok = this.#safeVerify(hash, password);
    if (ok === 'error') return refuse(4, 'password:error', `the stored password hash of user ${username} could not be used; check the configuration`);
    if (!ok) return refuse(4, 'password:bad', `wrong password for user ${username}`);
    return { ok: true, identity: `user:${username}`, method: 'password' };
  }

  /** verifyPassword on the UTF-8 of `password`; false for bytes that are not UTF-8, 'error' if the check threw. */
  #safeVerify(hash: string, password: Uint8Array): boolean | 'error' {
    if (this.#precomputed) return this.#precomputed();
    let text: string;
    try {
      text = utf8.decode(password);
    } catch {
      return false; // a configured password is text; these bytes cannot be it
    }
    try {
      return this.#verifyPassword(hash, text) === true;
    } catch {
      return 'error';
    }
  }
}
