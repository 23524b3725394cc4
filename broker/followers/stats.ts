/**
 * The `stats` follower: counters over the whole ledger and a per-device view, for the HTTP API
 * (`/api/v1/stats`, `/api/v1/devices`, `/metrics`) and the dashboard. It reads the ledger like
 * every follower (broker/followers/follower.ts), so what it shows is what the ledger says — never
 * a second bookkeeping of the broker's that could disagree with it.
 *
 * What it keeps:
 *  - records handled, and counts per event `e`, per envelope verdict `env` (publish records),
 *    per ACL decision (`acl` of publish and subscribe records);
 *  - connected sessions: a `connect` with `ok:true` opens session `s`, its `disconnect` closes it,
 *    a `start` record (a broker restart drops every connection) closes them all;
 *  - per device (named by the `kid` of its envelopes, `ID+KEYHASH`, or by a `device:ID+KEYHASH`
 *    identity): last seen (broker time `t` of its last publish or connect), last sequence number,
 *    last verdict, clock skew of the last envelope (`dt − t`, ms), `late`, verdict counts,
 *    publishes, and whether a session of it is connected.
 *
 * Memory is bounded: at most `maxDevices` devices (default 50,000; about 0.5 KiB each, so ≈ 25 MiB
 * at the bound — the least recently seen device is forgotten first, and `evictedDevices` counts
 * them), at most `maxSessions` open sessions (default 100,000; ≈ 100 B each — beyond it new
 * sessions are not tracked and `untrackedSessions` counts them), and at most 256 distinct keys in
 * each counter map (further values are counted under `other`).
 *
 * Its state is saved next to its cursor, `DATA/state/followers/stats-state.json`
 * ({"format":"witness-stats-state/v1","next":INDEX,…}), atomically, at most every `saveEveryMs`
 * (default 5 s) while records arrive, and at stop; the cursor file `stats.json` is written with
 * the same `next` at the same moment, so that after a restart (or a crash) the follower resumes at
 * exactly the record after the saved counts — neither re-reading the whole ledger nor counting a
 * record twice. A missing or damaged state file (or one ahead of the ledger) is rebuilt from
 * record 0.
 */
import { mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { writeFileAtomic } from '../../shared/atomic-file.js';
import type { Ledger } from '../../shared/ledger/writer.js';
import { Follower, cursorPath, type FollowedRecord, type FollowerStatus } from './follower.js';

export const STATS_FOLLOWER = 'stats';
export const STATS_STATE_FORMAT = 'witness-stats-state/v1';
export const STATS_DEFAULTS = { maxDevices: 50_000, maxSessions: 100_000, maxKeys: 256, saveEveryMs: 5_000 } as const;

export interface StatsOptions {
  /** The broker's data directory. */
  dataDir: string;
  ledger: Ledger;
  maxDevices?: number;
  maxSessions?: number;
  /** Least time between two saves of the state while records arrive, ms. Default 5,000. */
  saveEveryMs?: number;
  /** Passed to the follower (for tests). */
  batchMax?: number;
}

export interface StatsSnapshot {
  /** Records counted: the follower's cursor (records [0, records) are in the counts). */
  records: number;
  /** Records per event type `e`. */
  events: Record<string, number>;
  /** Publish records per envelope verdict `env`. */
  verdicts: Record<string, number>;
  /** Publish and subscribe records per ACL decision. */
  acl: { allow: number; deny: number };
  /** Sessions connected according to the ledger. */
  connected: number;
  /** Devices seen in the ledger (and still within the memory bound). */
  devices: number;
  /** `alert` records. */
  alerts: number;
  /** Broker time `t` of the last record counted, or null. */
  lastRecordTime: number | null;
  evictedDevices: number;
  untrackedSessions: number;
}

export interface DeviceStats extends DeviceState {
  id: string;
  connected: boolean;
}

export interface Stats {
  readonly follower: Follower;
  snapshot(): StatsSnapshot;
  device(id: string): DeviceStats | undefined;
  /** Every device tracked, most recently seen first. */
  devices(): DeviceStats[];
  status(): FollowerStatus;
  /** Saves the state now (if it changed). */
  save(): void;
  stop(): Promise<void>;
}

/** What the follower keeps per device (saved as is); DeviceStats adds the id and `connected`. */
export interface DeviceState {
  /** kid (`ID+KEYHASH`) of its last envelope or device login, or null. */
  kid: string | null;
  /** Broker time (ms since the epoch) of its last publish or connect, or null. */
  lastSeen: number | null;
  /** Ledger index of that record. */
  lastIndex: number | null;
  lastSeq: number | null;
  lastVerdict: string | null;
  /** Device time minus broker time of its last envelope, ms (positive: the device clock is ahead). */
  skewMs: number | null;
  /** `late` of its last envelope (ms behind beyond the uncertainties: queued while offline), or null. */
  late: number | null;
  /** Publish records per envelope verdict. */
  verdicts: Record<string, number>;
  publishes: number;
  /** Sessions of this device connected according to the ledger. */
  sessions: number;
}

interface StateFile {
  format: typeof STATS_STATE_FORMAT;
  next: number;
  at: string;
  events: Record<string, number>;
  verdicts: Record<string, number>;
  acl: { allow: number; deny: number };
  lastRecordTime: number | null;
  evictedDevices: number;
  untrackedSessions: number;
  /** [session id, device id or null], open sessions. */
  sessions: Array<[string, string | null]>;
  /** [device id, state], least recently seen first. */
  devices: Array<[string, DeviceState]>;
}

export function statsStatePath(dataDir: string): string {
  return join(dataDir, 'state', 'followers', `${STATS_FOLLOWER}-state.json`);
}

/** The device a record speaks for: the device part of its `kid`, else of a `device:ID+HASH` identity. */
function deviceOf(r: Record<string, unknown>): { id: string; kid: string } | undefined {
  const kid = typeof r.kid === 'string' ? r.kid : typeof r.id === 'string' && r.id.startsWith('device:') ? r.id.slice('device:'.length) : undefined;
  if (kid === undefined) return undefined;
  const plus = kid.lastIndexOf('+');
  if (plus <= 0) return undefined;
  return { id: kid.slice(0, plus), kid };
}

export function startStats(o: StatsOptions): Stats {
  const maxDevices = o.maxDevices ?? STATS_DEFAULTS.maxDevices;
  const maxSessions = o.maxSessions ?? STATS_DEFAULTS.maxSessions;
  const saveEveryMs = o.saveEveryMs ?? STATS_DEFAULTS.saveEveryMs;
  const statePath = statsStatePath(o.dataDir);

  let next = 0;
  let events: Record<string, number> = {};
  let verdicts: Record<string, number> = {};
  let acl = { allow: 0, deny: 0 };
  let lastRecordTime: number | null = null;
  let evictedDevices = 0;
  let untrackedSessions = 0;
  /** Open sessions: session id → device id (or null). */
  let sessions = new Map<string, string | null>();
  /** Devices, least recently seen first (re-inserted when seen). */
  let devices = new Map<string, DeviceState>();
  let dirty = false;
  let lastSave = 0;

  // ── restore ────────────────────────────────────────────────────────────────────────────────
  const restored = load(statePath);
  if (restored && restored.next <= o.ledger.durableSize) {
    next = restored.next;
    events = restored.events;
    verdicts = restored.verdicts;
    acl = restored.acl;
    lastRecordTime = restored.lastRecordTime;
    evictedDevices = restored.evictedDevices;
    untrackedSessions = restored.untrackedSessions;
    sessions = new Map(restored.sessions);
    devices = new Map(restored.devices);
  }
  // The follower starts where the counts end: its cursor file says so.
  writeCursor(o.dataDir, next);

  const bump = (m: Record<string, number>, key: string): void => {
    if (m[key] === undefined && Object.keys(m).length >= STATS_DEFAULTS.maxKeys) key = 'other';
    m[key] = (m[key] ?? 0) + 1;
  };

  const touch = (id: string): DeviceState => {
    let d = devices.get(id);
    if (d) {
      devices.delete(id);
    } else {
      d = { kid: null, lastSeen: null, lastIndex: null, lastSeq: null, lastVerdict: null, skewMs: null, late: null, verdicts: {}, publishes: 0, sessions: 0 };
      while (devices.size >= maxDevices) {
        const oldest = devices.keys().next().value as string;
        devices.delete(oldest);
        evictedDevices++;
      }
    }
    devices.set(id, d);
    return d;
  };

  const apply = (index: number, r: Record<string, unknown>): void => {
    const e = typeof r.e === 'string' ? r.e : '?';
    bump(events, e);
    const t = typeof r.t === 'number' ? r.t : null;
    if (t !== null) lastRecordTime = t;
    if (r.acl === 'allow') acl.allow++;
    else if (r.acl === 'deny') acl.deny++;
    switch (e) {
      case 'publish': {
        const env = typeof r.env === 'string' ? r.env : undefined;
        if (env !== undefined) bump(verdicts, env);
        const who = deviceOf(r);
        if (!who) break;
        const d = touch(who.id);
        d.kid = who.kid;
        d.lastSeen = t;
        d.lastIndex = index;
        d.publishes++;
        if (env !== undefined) {
          bump(d.verdicts, env);
          d.lastVerdict = env;
        }
        if (typeof r.seq === 'number') d.lastSeq = r.seq;
        if (typeof r.dt === 'number' && t !== null) d.skewMs = r.dt - t;
        d.late = typeof r.late === 'number' ? r.late : null;
        break;
      }
      case 'connect': {
        if (r.ok !== true || typeof r.s !== 'string') break;
        const who = deviceOf(r);
        if (!sessions.has(r.s)) {
          if (sessions.size >= maxSessions) {
            untrackedSessions++;
            break;
          }
          sessions.set(r.s, who?.id ?? null);
          if (who) {
            const d = touch(who.id);
            d.kid = who.kid;
            d.lastSeen = t;
            d.lastIndex = index;
            d.sessions++;
          }
        }
        break;
      }
      case 'disconnect': {
        if (typeof r.s !== 'string' || !sessions.has(r.s)) break;
        const id = sessions.get(r.s);
        sessions.delete(r.s);
        const d = id ? devices.get(id) : undefined;
        if (d) d.sessions = Math.max(0, d.sessions - 1);
        break;
      }
      case 'start': {
        // A broker (re)start: no connection survives it.
        sessions.clear();
        for (const d of devices.values()) d.sessions = 0;
        break;
      }
    }
  };

  const save = (): void => {
    if (!dirty) return;
    const file: StateFile = {
      format: STATS_STATE_FORMAT,
      next,
      at: new Date().toISOString(),
      events,
      verdicts,
      acl,
      lastRecordTime,
      evictedDevices,
      untrackedSessions,
      sessions: [...sessions],
      devices: [...devices],
    };
    try {
      mkdirSync(join(statePath, '..'), { recursive: true });
      writeFileAtomic(statePath, JSON.stringify(file) + '\n');
      writeCursor(o.dataDir, next);
      dirty = false;
      lastSave = Date.now();
    } catch {
      // Derived data: at worst the counts are rebuilt from an older state (or from record 0).
    }
  };

  const follower = new Follower({
    name: STATS_FOLLOWER,
    dataDir: o.dataDir,
    ledger: o.ledger,
    // The state file, written with the cursor, is what resumes this follower.
    persistCursor: false,
    ...(o.batchMax !== undefined ? { batchMax: o.batchMax } : {}),
    handle: async (batch: FollowedRecord[]) => {
      for (const { index, record } of batch) {
        if (index < next) continue; // never count a record twice
        apply(index, record);
        next = index + 1;
      }
      dirty = true;
      if (Date.now() - lastSave >= saveEveryMs) save();
    },
  });
  follower.start();
  // Saves the last records of a burst too, not only at the next batch.
  const timer = setInterval(save, saveEveryMs);
  timer.unref();

  const view = (id: string, d: DeviceState): DeviceStats => ({
    id,
    kid: d.kid,
    lastSeen: d.lastSeen,
    lastIndex: d.lastIndex,
    lastSeq: d.lastSeq,
    lastVerdict: d.lastVerdict,
    skewMs: d.skewMs,
    late: d.late,
    verdicts: { ...d.verdicts },
    publishes: d.publishes,
    sessions: d.sessions,
    connected: d.sessions > 0,
  });

  let stopped = false;
  return {
    follower,
    snapshot: () => ({
      records: next,
      events: { ...events },
      verdicts: { ...verdicts },
      acl: { ...acl },
      connected: sessions.size,
      devices: devices.size,
      alerts: events.alert ?? 0,
      lastRecordTime,
      evictedDevices,
      untrackedSessions,
    }),
    device: (id) => {
      const d = devices.get(id);
      return d ? view(id, d) : undefined;
    },
    devices: () => [...devices].reverse().map(([id, d]) => view(id, d)),
    status: () => follower.status(),
    save,
    async stop() {
      if (stopped) return;
      stopped = true;
      clearInterval(timer);
      await follower.stop();
      save();
    },
  };
}

function writeCursor(dataDir: string, next: number): void {
  const p = cursorPath(dataDir, STATS_FOLLOWER);
  try {
    mkdirSync(join(p, '..'), { recursive: true });
    writeFileAtomic(p, JSON.stringify({ format: 'witness-cursor/v1', name: STATS_FOLLOWER, next, at: new Date().toISOString() }) + '\n');
  } catch {
    // Follower.start() then reads an older cursor or none; counts are only ever rebuilt, never doubled (handle skips index < next).
  }
}

function load(path: string): StateFile | undefined {
  let v: unknown;
  try {
    v = JSON.parse(readFileSync(path, 'utf8'));
  } catch {
    return undefined;
  }
  if (typeof v !== 'object' || v === null) return undefined;
  const f = v as Partial<StateFile>;
  const isCountMap = (m: unknown): m is Record<string, number> => typeof m === 'object' && m !== null && !Array.isArray(m) && Object.values(m).every((n) => typeof n === 'number');
  if (
    f.format !== STATS_STATE_FORMAT ||
    typeof f.next !== 'number' ||
    !Number.isSafeInteger(f.next) ||
    f.next < 0 ||
    !isCountMap(f.events) ||
    !isCountMap(f.verdicts) ||
    typeof f.acl?.allow !== 'number' ||
    typeof f.acl?.deny !== 'number' ||
    !Array.isArray(f.sessions) ||
    !Array.isArray(f.devices) ||
    !f.devices.every((d) => Array.isArray(d) && typeof d[0] === 'string' && typeof d[1] === 'object' && d[1] !== null && isCountMap((d[1] as DeviceState).verdicts))
  ) {
    return undefined;
  }
  return {
    format: STATS_STATE_FORMAT,
    next: f.next,
    at: String(f.at ?? ''),
    events: f.events,
    verdicts: f.verdicts,
    acl: { allow: f.acl.allow, deny: f.acl.deny },
    lastRecordTime: typeof f.lastRecordTime === 'number' ? f.lastRecordTime : null,
    evictedDevices: typeof f.evictedDevices === 'number' ? f.evictedDevices : 0,
    untrackedSessions: typeof f.untrackedSessions === 'number' ? f.untrackedSessions : 0,
    sessions: f.sessions.filter((s): s is [string, string | null] => Array.isArray(s) && typeof s[0] === 'string'),
    devices: f.devices,
  };
}
