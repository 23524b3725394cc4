/**
 * TLS (with client certificates) and MQTT-over-WebSocket listeners, configured in YAML, with
 * certificates made by openssl for the test; plus the config errors that keep the broker from
 * starting.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync, readFileSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { X509Certificate, createHash } from 'node:crypto';
import mqtt from 'mqtt';
import { startBrokerProcess, WITNESS_BIN, type BrokerProcess } from '../helpers/broker-process.js';
import { waitForRecords } from '../helpers/records.js';

const HAVE_OPENSSL = spawnSync('openssl', ['version']).status === 0;
let dir: string;
let broker: BrokerProcess;
let urls: string[] = [];

function openssl(...args: string[]): void {
  const r = spawnSync('openssl', args, { cwd: dir, encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
}

before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'witness-listeners-'));
  if (!HAVE_OPENSSL) return;
  // A CA, a server certificate for 127.0.0.1, and a client certificate signed by the CA.
  openssl('req', '-x509', '-newkey', 'ed25519', '-nodes', '-keyout', 'ca.key', '-out', 'ca.crt', '-days', '2', '-subj', '/CN=witness-test-ca');
  openssl('req', '-newkey', 'ed25519', '-nodes', '-keyout', 'server.key', '-out', 'server.csr', '-subj', '/CN=127.0.0.1');
  writeFileSync(join(dir, 'server.ext'), 'subjectAltName=IP:127.0.0.1\n');
  openssl('x509', '-req', '-in', 'server.csr', '-CA', 'ca.crt', '-CAkey', 'ca.key', '-CAcreateserial', '-out', 'server.crt', '-days', '2', '-extfile', 'server.ext');
  openssl('req', '-newkey', 'ed25519', '-nodes', '-keyout', 'client.key', '-out', 'client.csr', '-subj', '/CN=gateway-7');
  openssl('x509', '-req', '-in', 'client.csr', '-CA', 'ca.crt', '-CAkey', 'ca.key', '-CAcreateserial', '-out', 'client.crt', '-days', '2');
  const fp = createHash('sha256').update(new X509Certificate(readFileSync(join(dir, 'client.crt'))).raw).digest('hex');
  writeFileSync(
    join(dir, 'witness.yaml'),
    [
      'listeners:',
      '  - { type: mqtt, host: 127.0.0.1, port: 0 }',
      '  - { type: mqtts, host: 127.0.0.1, port: 0, tls: { cert: server.crt, key: server.key, ca: ca.crt, clientCertificates: optional } }',
      '  - { type: ws, host: 127.0.0.1, port: 0, path: /mqtt }',
      'auth:',
      '  anonymous: true',
      '  certificates:',
      `    - { fingerprint: "${fp}", identity: gateway-7 }`,
      '',
    ].join('\n'),
  );
  broker = await startBrokerProcess(join(dir, 'data'), ['--config', join(dir, 'witness.yaml')]);
  await new Promise((r) => setTimeout(r, 200));
  urls = [...broker.stdout().matchAll(/^listening (\S+)$/gm)].map((m) => m[1]!);
});

after(async () => {
  await broker?.kill();
  rmSync(dir, { recursive: true, force: true });
});

test('three listeners are announced: mqtt, mqtts and ws', { skip: !HAVE_OPENSSL && 'openssl missing' }, () => {
  assert.equal(urls.length, 3, broker.stdout());
  assert.match(urls[1]!, /^mqtts:\/\/127\.0\.0\.1:\d+$/);
  assert.match(urls[2]!, /^ws:\/\/127\.0\.0\.1:\d+\/mqtt$/);
});

test('a TLS client certificate is the identity cert:NAME; without one the client is anonymous', { skip: !HAVE_OPENSSL && 'openssl missing' }, async () => {
  const port = Number(new URL(urls[1]!).port);
  const ca = readFileSync(join(dir, 'ca.crt'));
  const withCert = await mqtt.connectAsync({ protocol: 'mqtts', host: '127.0.0.1', port, ca, cert: readFileSync(join(dir, 'client.crt')), key: readFileSync(join(dir, 'client.key')), clientId: 'gw', reconnectPeriod: 0 });
  await withCert.publishAsync('gateways/gw/x', 'over tls', { qos: 1 });
  await withCert.endAsync();
  const noCert = await mqtt.connectAsync({ protocol: 'mqtts', host: '127.0.0.1', port, ca, clientId: 'tls-anon', reconnectPeriod: 0 });
  await noCert.endAsync();
  const rs = await waitForRecords(join(dir, 'data'), (rs) => rs.some((r) => r.e === 'connect' && r.c === 'gw') && rs.some((r) => r.e === 'connect' && r.c === 'tls-anon'));
  const gw = rs.find((r) => r.e === 'connect' && r.c === 'gw')!;
  assert.equal(gw.id, 'cert:gateway-7');
  assert.equal(gw.auth, 'certificate');
  assert.equal(rs.find((r) => r.e === 'publish' && r.c === 'gw')!.id, 'cert:gateway-7');
  assert.equal(rs.find((r) => r.e === 'connect' && r.c === 'tls-anon')!.id, 'anonymous');
});

test('MQTT over WebSocket works and is recorded like any other connection', { skip: !HAVE_OPENSSL && 'openssl missing' }, async () => {
  const c = await mqtt.connectAsync(urls[2]!, { clientId: 'ws-client', reconnectPeriod: 0 });
  await c.publishAsync('web/x', 'over ws', { qos: 1 });
  await c.endAsync();
  const rs = await waitForRecords(join(dir, 'data'), (rs) => rs.some((r) => r.e === 'publish' && r.c === 'ws-client'));
  const p = rs.find((r) => r.e === 'publish' && r.c === 'ws-client')!;
  assert.equal(p.topic, 'web/x');
  assert.match(String(p.a), /127\.0\.0\.1:\d+/);
});

test('a config with unknown keys and wrong types is refused with file:line and a hint; the broker does not start', () => {
  const bad = join(dir, 'bad.yaml');
  writeFileSync(bad, ['listners:', '  - { type: mqtt }', 'ledger:', '  fsync: sometimes', ''].join('\n'));
  const r = spawnSync(process.execPath, [WITNESS_BIN, 'broker', '--data', join(dir, 'bad-data'), '--config', bad, '--port', '0'], { encoding: 'utf8', timeout: 20_000 });
  assert.equal(r.status, 2, r.stdout + r.stderr);
  assert.match(r.stderr, /bad\.yaml:1:1/);
  assert.match(r.stderr, /listeners/); // did you mean
  assert.match(r.stderr, /bad\.yaml:4:\d+/);
  assert.doesNotMatch(r.stdout, /listening/);
});
