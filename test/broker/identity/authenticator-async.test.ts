import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Authenticator } from '../../../broker/identity/authenticator.js';
import { TokenVerifier } from '../../../broker/identity/token-verifier.js';
import { hashPassword } from '../../../broker/config/password.js';

const registry = { lookup: () => ({ status: 'unknown' as const }) };
const auth = new Authenticator({
  registry,
  tokenVerifier: new TokenVerifier({ audience: 'mqtt-witness' }),
  users: [{ username: 'alice', passwordHash: hashPassword('right') }],
  anonymous: false,
});
const pw = (s: string): Uint8Array => new TextEncoder().encode(s);

test('authenticateAsync decides exactly as authenticate', async () => {
  const inputs = [
    { clientId: 'a', username: 'alice', password: pw('right') },
    { clientId: 'a', username: 'alice', password: pw('wrong') },
    { clientId: 'a', username: 'bob', password: pw('right') },
    { clientId: 'a', username: 'alice' },
    { clientId: 'a', password: pw('x') },
    { clientId: 'a', username: 'alice', password: Uint8Array.of(0xff, 0xfe) },
    { clientId: 'a' },
    { clientId: '', username: 'alice', password: pw('right'), cleanSession: false, clientIdEmpty: true },
  ];
  for (const i of inputs) {
    const input = { clientIdEmpty: false, cleanSession: true, ...i };
    assert.deepEqual(await auth.authenticateAsync(input), auth.authenticate(input), JSON.stringify(i));
  }
});

test('a password login does not hold the event loop while scrypt runs', async () => {
  let ticks = 0;
  const timer = setInterval(() => ticks++, 1);
  const d = await auth.authenticateAsync({ clientId: 'a', username: 'alice', password: pw('right'), clientIdEmpty: false, cleanSession: true });
  const during = ticks;
  ticks = 0;
  auth.authenticate({ clientId: 'a', username: 'alice', password: pw('right'), clientIdEmpty: false, cleanSession: true });
  const duringSync = ticks;
  clearInterval(timer);
  assert.equal(d.ok, true);
  assert.equal(duringSync, 0, 'the synchronous check blocks timers (sanity of the measurement)');
  assert.ok(during >= 2, `timers ran ${during} time(s) during the asynchronous check`);
});
