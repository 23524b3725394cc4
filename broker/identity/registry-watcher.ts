/**
 * Keeps a running broker's device registry current: `witness device add/revoke` (another
 * process) rewrites devices.json, and the broker picks the change up without a restart and
 * records each change as a `device` control-plane event (the caller does the recording in
 * `onChange`).
 *
 * Two triggers, one check:
 * - fs.watch on the data directory (the file is replaced by rename, so the directory is what to
 *   watch; events for other names are ignored). Prompt, but not guaranteed everywhere (network
 *   file systems, some containers), hence
 * - a poll every `pollMs` (default 1 s) comparing the file's inode, size and mtime.
 * Either schedules one check after `debounceMs` (default 50 ms), so a burst of events costs one
 * read. The check compares the file's text with the last text applied, so an event that changed
 * nothing costs a read and a string comparison.
 *
 * A malformed file (hand edit, a half-written copy from another tool) never crashes the broker
 * and never wipes the registry: the registry in force stays as it was, and `onError` is told —
 * once per distinct bad content. A missing file is an empty registry, as at start-up (`load`), so
 * the running broker and a restarted one always agree; its devices are reported as removed.
 */
import { readFileSync, statSync, watch, type FSWatcher } from 'node:fs';
import { WitnessError } from '../../shared/errors.js';
import { ADOPT, DeviceRegistry, REGISTRY_FILE, diffRegistries, type Change } from './registry.js';

export interface RegistryWatchOptions {
  /** The registry to keep current (updated in place). Default: `DeviceRegistry.load(dataDir)` now. */
  registry?: DeviceRegistry;
  /** Told about a file that could not be read or parsed (the registry in force is kept), and about errors thrown by `onChange`. */
  onError?: (e: WitnessError) => void;
  /** Poll period, ms. Default 1000. */
  pollMs?: number;
  /** Delay between a trigger and the check, ms. Default 50. */
  debounceMs?: number;
  /** Use fs.watch besides the poll. Default true; turn off where it misbehaves (some network file systems). */
  fsWatch?: boolean;
}

export interface RegistryWatcher {
  /** The registry in force: always the same object, its contents replaced on each change. */
  readonly registry: DeviceRegistry;
  /** Checks the file now (synchronously); returns the changes applied. */
  check(): Change[];
  close(): void;
}

export const REGISTRY_WATCH_DEFAULTS = { pollMs: 1000, debounceMs: 50 } as const;

/**
 * Watches `DATA/devices.json`. `onChange(changes, registry)` runs after each reload that changed
 * something, with the registry already updated.
 */
export function watchRegistry(
  dataDir: string,
  onChange: (changes: Change[], registry: DeviceRegistry) => void,
  options: RegistryWatchOptions = {},
): RegistryWatcher {
  const registry = options.registry ?? DeviceRegistry.load(dataDir);
  const path = registry.path;
  const pollMs = options.pollMs ?? REGISTRY_WATCH_DEFAULTS.pollMs;
  const debounceMs = options.debounceMs ?? REGISTRY_WATCH_DEFAULTS.debounceMs;
  const onError = options.onError ?? (() => {});
  /** Text last applied (undefined: file absent; null: nothing applied yet). */
  let applied: string | undefined | null = null;
  let lastErrorKey: string | undefined;
  let statKey = '';
  let timer: NodeJS.Timeout | undefined;
  let closed = false;

  const report = (key: string, e: WitnessError): void => {
    if (key === lastErrorKey) return;
    lastErrorKey = key;
    try {
      onError(e);
    } catch {
      // an error handler that throws must not stop the watcher
    }
  };

  const check = (): Change[] => {
    if (closed) return [];
    let text: string | undefined;
    try {
      text = readFileSync(path, 'utf8');
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'ENOENT') {
        report(`io:${(e as Error).message}`, new WitnessError('WITNESS_ERR_IO', `cannot read ${path}: ${(e as Error).message}; the device registry in force is kept`, { cause: e, details: { file: path } }));
        return [];
      }
      text = undefined;
    }
    if (text === applied) return [];
    let next: DeviceRegistry;
    try {
      next = text === undefined ? DeviceRegistry.empty(registry.dataDir) : DeviceRegistry.parse(registry.dataDir, text);
    } catch (e) {
      const we = e instanceof WitnessError ? e : new WitnessError('WITNESS_ERR_REGISTRY_MALFORMED', `${path}: ${(e as Error).message}`, { cause: e });
      report(`bad:${text}`, new WitnessError(we.code, `${we.message}; the device registry in force (revision ${registry.revision}) is kept`, { cause: we, details: we.details }));
      return [];
    }
    lastErrorKey = undefined;
    applied = text;
    const changes = diffRegistries(registry, next);
    registry[ADOPT](next);
    if (changes.length > 0) {
      try {
        onChange(changes, registry);
      } catch (e) {
        report(`cb:${String(e)}`, new WitnessError('WITNESS_ERR_INVALID_ARGUMENT', `registry watcher: onChange threw: ${(e as Error)?.message ?? String(e)}`, { cause: e }));
      }
    }
    return changes;
  };

  const schedule = (): void => {
    if (closed || timer !== undefined) return;
    timer = setTimeout(() => {
      timer = undefined;
      check();
    }, debounceMs);
    timer.unref();
  };

  const statNow = (): string => {
    try {
      const s = statSync(path);
      return `${s.ino}:${s.size}:${s.mtimeMs}`;
    } catch {
      return 'absent';
    }
  };

  let watcher: FSWatcher | undefined;
  if (options.fsWatch !== false) {
    try {
      watcher = watch(registry.dataDir, { persistent: false }, (_event, filename) => {
        if (filename === null || filename === REGISTRY_FILE) schedule();
      });
      watcher.on('error', (e) => {
        report(`watch:${e.message}`, new WitnessError('WITNESS_ERR_IO', `watching ${registry.dataDir}: ${e.message}; falling back to polling every ${pollMs} ms`, { cause: e }));
        watcher?.close();
        watcher = undefined;
      });
    } catch {
      watcher = undefined; // fs.watch unavailable here: the poll alone keeps the registry current
    }
  }

  statKey = statNow();
  const poll = setInterval(() => {
    const k = statNow();
    if (k !== statKey) {
      statKey = k;
      schedule();
    }
  }, pollMs);
  poll.unref();

  // Anything written between the caller's load and this point is picked up now.
  check();

  return {
    registry,
    check,
    close(): void {
      closed = true;
      watcher?.close();
      clearInterval(poll);
      if (timer !== undefined) clearTimeout(timer);
    },
  };
}
