/**
 * The `stats` follower: counts that equal the ledger's, a per-device view, and a state saved next
 * to its cursor so that a restart resumes without re-reading the ledger and without counting a
 * record twice; bounded memory.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { tempDir } from '../../helpers/tmp.js';
import { openTestLedger } from '../../helpers/ledger.js';
import { startStats, statsStatePath } from '../../../broker/followers/stats.js';
import { readCursor } from '../../../broker/followers/follower.js';

async function waitFor(pred: () => boolean, ms = 10_000): Promise<void> {
  const end = Date.now() + ms;
  while (!pred() && Date.now() < end) await new Promise((r) => setTimeout(r, 10));
  assert.ok(pred(), 'condition not reached in time');
}

const T0 = 1_800_000_000_000;

function pub(n: number, device: string, env: string, extra: Record<string, unknown> = {}): Record<string, unknown> {
  return { v: 1, e: 'publish', t: T0 + n, u: 3, n: 'node', s: `s-${device}`, c: device, id: `device:${device}+0a0b0c0d`, topic: `d/${device}`, acl: 'allow', env, kid: `${device}+0a0b0c0d`, seq: n, dt: T0 + n + 40, ...extra };
}

test('counts match the ledger; devices show last seen, sequence, skew, verdicts, connection; a restart resumes from the saved state', async (t) => {
  const dir = tempDir(t);
  const { ledger } = await openTestLedger(dir);
  const recs: Array<Record<string, unknown>> = [
    { v: 1, e: 'start', t: T0, u: 3, n: 'node' },
    { v: 1, e: 'connect', t: T0 + 1, u: 3, n: 'node', s: 's-d1', c: 'd1', id: 'device:d1+0a0b0c0d', ok: true, rc: 0 },
    pub(2, 'd1', 'valid'),
    pub(3, 'd1', 'valid', { late: 1200 }),
    pub(4, 'd2', 'invalid'),
    { v: 1, e: 'publish', t: T0 + 5, u: 3, n: 'node', c: 'anon', id: 'anonymous', topic: 'x', acl: 'deny', ok: false, env: 'missing' },
    { v: 1, e: 'subscribe', t: T0 + 6, u: 3, n: 'node', c: 'anon', f: '#', acl: 'deny' },
    { v: 1, e: 'alert', t: T0 + 7, u: 3, n: 'node', rule: 'gaps' },
  ];
  for (const r of recs) await ledger.append(r);
  const s1 = startStats({ dataDir: dir, ledger, saveEveryMs: 60_000 });
  await waitFor(() => s1.snapshot().records === ledger.durableSize);
  const a = s1.snapshot();
  assert.equal(a.records, ledger.durableSize);
  assert.equal(a.events.publish, 4);
  assert.equal(a.events.start, 1);
  assert.deepEqual(a.verdicts, { valid: 2, invalid: 1, missing: 1 });
  assert.deepEqual(a.acl, { allow: 3, deny: 2 });
  assert.equal(a.connected, 1);
  assert.equal(a.alerts, 1);
  assert.equal(a.devices, 2);
  const d1 = s1.device('d1')!;
  assert.deepEqual(
    { lastSeen: d1.lastSeen, lastSeq: d1.lastSeq, lastVerdict: d1.lastVerdict, skewMs: d1.skewMs, late: d1.late, verdicts: d1.verdicts, connected: d1.connected, publishes: d1.publishes },
    { lastSeen: T0 + 3, lastSeq: 3, lastVerdict: 'valid', skewMs: 40, late: 1200, verdicts: { valid: 2 }, connected: true, publishes: 2 },
  );
  assert.equal(s1.device('d2')!.connected, false);
  assert.deepEqual(s1.devices().map((d) => d.id), ['d2', 'd1'], 'most recently seen first');
  await s1.stop();
  const saved = JSON.parse(readFileSync(statsStatePath(dir), 'utf8')) as { format: string; next: number };
  assert.equal(saved.format, 'witness-stats-state/v1');
  assert.equal(saved.next, a.records);
  assert.equal(readCursor(dir, 'stats'), a.records, 'the cursor is saved with the state');

  // More records while stopped: a disconnect and a restart of the broker.
  await ledger.append({ v: 1, e: 'disconnect', t: T0 + 10, u: 3, n: 'node', s: 's-d1', c: 'd1', why: 'clean' });
  await ledger.append(pub(11, 'd2', 'valid'));
  const s2 = startStats({ dataDir: dir, ledger, saveEveryMs: 60_000 });
  assert.equal(s2.status().cursor, a.records, 'resumes at the saved position, not at 0');
  await waitFor(() => s2.snapshot().records === ledger.durableSize);
  const b = s2.snapshot();
  assert.equal(b.events.publish, 5, 'nothing counted twice');
  assert.equal(b.connected, 0);
  assert.equal(s2.device('d1')!.connected, false);
  assert.deepEqual(s2.device('d2')!.verdicts, { invalid: 1, valid: 1 });
  assert.equal(s2.status().handled, 2, 'only the new records were read');
  await s2.stop();

  // A damaged state file is rebuilt from record 0, to the same counts.
  writeFileSync(statsStatePath(dir), '{"format":"witness-stats-state/v1","next":"x"}');
  const s3 = startStats({ dataDir: dir, ledger });
  await waitFor(() => s3.snapshot().records === ledger.durableSize);
  const c = s3.snapshot();
  assert.deepEqual({ ...c, lastRecordTime: 0 }, { ...b, lastRecordTime: 0 });
  await s3.stop();
  await ledger.close();
  assert.ok(existsSync(statsStatePath(dir)));
});

test('memory is bounded: the least recently seen devices are forgotten beyond maxDevices', async (t) => {
  const dir = tempDir(t);
  const { ledger } = await openTestLedger(dir);
  await Promise.all(Array.from({ length: 50 }, (_, n) => ledger.append(pub(n, `dev-${n}`, 'valid'))));
  const s = startStats({ dataDir: dir, ledger, maxDevices: 10, maxSessions: 5 });
  await waitFor(() => s.snapshot().records === ledger.durableSize);
  const snap = s.snapshot();
  assert.equal(snap.devices, 10);
  assert.equal(snap.evictedDevices, 40);
  assert.equal(snap.events.publish, 50, 'the counters still count everything');
  assert.equal(s.device('dev-0'), undefined);
  assert.ok(s.device('dev-49'));
  for (let k = 0; k < 8; k++) await ledger.append({ v: 1, e: 'connect', t: T0, u: 1, n: 'node', s: `sess-${k}`, c: `c${k}`, id: 'anonymous', ok: true });
  await waitFor(() => s.snapshot().records === ledger.durableSize);
  assert.equal(s.snapshot().connected, 5);
  assert.equal(s.snapshot().untrackedSessions, 3);
  await s.stop();
  await ledger.close();
});
