import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import { parse as parseYaml } from 'yaml';
import { tokenCommand, TOKEN_USAGE } from '../../../broker/cli/token-command.js';
import { authenticateToken, hashToken } from '../../../broker/http/auth.js';

function io(): { io: { stdout: Writable; stderr: Writable }; out: () => string } {
  let out = '';
  const w = new Writable({ write: (c, _e, cb) => ((out += String(c)), cb()) });
  return { io: { stdout: w, stderr: w }, out: () => out };
}

test('witness token create --json: a new 32-byte base64url token and its SHA-256', async () => {
  const a = io();
  assert.equal(await tokenCommand(['create', '--name', 'ci', '--role', 'auditor', '--json'], a.io), 0);
  const v = JSON.parse(a.out()) as { name: string; role: string; token: string; sha256: string };
  assert.equal(v.name, 'ci');
  assert.equal(v.role, 'auditor');
  assert.match(v.token, /^[A-Za-z0-9_-]{43}$/);
  assert.equal(Buffer.from(v.token, 'base64url').length, 32);
  assert.equal(v.sha256, hashToken(v.token));
  const b = io();
  await tokenCommand(['create', '--name', 'ci', '--role', 'auditor', '--json'], b.io);
  assert.notEqual((JSON.parse(b.out()) as { token: string }).token, v.token, 'random each time');
  // The configured hash authenticates the token, and nothing else.
  const tokens = [{ name: v.name, role: 'auditor' as const, sha256: v.sha256 }];
  assert.deepEqual(authenticateToken(`Bearer ${v.token}`, undefined, tokens), { ok: true, name: 'ci', role: 'auditor' });
  assert.deepEqual(authenticateToken(`Bearer ${v.token}x`, undefined, tokens), { ok: false, reason: 'unknown' });
  assert.deepEqual(authenticateToken(undefined, undefined, tokens), { ok: false, reason: 'missing' });
  assert.deepEqual(authenticateToken(undefined, v.token, tokens), { ok: true, name: 'ci', role: 'auditor' });
});

test('witness token create prints the token once and YAML lines for http.tokens', async () => {
  const a = io();
  assert.equal(await tokenCommand(['create', '--name', 'ops@site', '--role', 'operator'], a.io), 0);
  const text = a.out();
  const token = /^ {2}([A-Za-z0-9_-]{43})$/m.exec(text)![1]!;
  assert.equal(text.split(token).length, 2, 'the token appears once');
  const yamlLines = text.split('\n').filter((l) => /^ {2}(- name|  role|  sha256):/.test(l)).join('\n');
  const parsed = parseYaml(yamlLines) as Array<{ name: string; role: string; sha256: string }>;
  assert.deepEqual(parsed, [{ name: 'ops@site', role: 'operator', sha256: hashToken(token) }]);
});

test('bad usage is a usage error naming what to do', async () => {
  await assert.rejects(tokenCommand(['create', '--name', 'x', '--role', 'root'], io().io), /--role "root": one of auditor, operator, admin/);
  await assert.rejects(tokenCommand(['create', '--role', 'admin'], io().io), /--name is required/);
  await assert.rejects(tokenCommand(['create', '--name', 'bad name', '--role', 'admin'], io().io), /not 1–64/);
  await assert.rejects(tokenCommand(['delete'], io().io), /unknown subcommand "delete"/);
  await assert.rejects(tokenCommand([], io().io), (e: Error) => e.message.includes(TOKEN_USAGE));
});
