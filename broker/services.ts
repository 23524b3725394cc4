/**
 * The broker's services around the ledger, started from the configuration after the broker is
 * up and stopped (in reverse order) before it closes: the `stats` follower and the HTTP API with
 * its dashboard (when an HTTP port is set), the InfluxDB mirror (`followers.influx`) and the alert
 * rules (`alerts`, on by default). Each one only reads the ledger from its own saved cursor
 * (DESIGN §1); the alerts also append their `alert` records. None of them can slow or block the
 * broker: a target that is down is retried by its follower with a backoff.
 */
import type { CommandIo } from '../shared/cli/cli.js';
import type { ResolvedConfig } from './config/config.js';
import type { RunningBroker } from './server.js';
import { startStats, type Stats } from './followers/stats.js';
import { startInfluxMirror, type InfluxMirror } from './followers/influx.js';
import { startAlerter, type Alerter } from './alerts/alerter.js';
import { startHttpApi, type HttpApi } from './http/server.js';
import { dashboardHtml } from './http/dashboard.js';
import { ensureAdminToken, type HttpToken } from './http/auth.js';
import type { FollowerStatus } from './followers/follower.js';

export interface Services {
  http?: HttpApi;
  influx?: InfluxMirror;
  alerter?: Alerter;
  stats?: Stats;
  /** What to tell people: one line per service started. */
  lines: string[];
}

/** Warns on stderr at most once a minute per service: a target that is down must not flood the log. */
function throttledWarn(io: CommandIo, what: string): (e: unknown, attempt: number) => void {
  let last = 0;
  return (e, attempt) => {
    const now = Date.now();
    if (now - last < 60_000 && attempt > 1) return;
    last = now;
    io.stderr.write(`witness: ${what}: attempt ${attempt} failed: ${(e as Error)?.message ?? String(e)} (retrying with backoff; nothing is lost)\n`);
  };
}

export async function startServices(o: {
  broker: RunningBroker;
  dataDir: string;
  cfg: ResolvedConfig;
  /** The HTTP port from `--http-port` (wins over the config's); with forceHttp, 0 = a free port. */
  httpPort: number;
  /** `--http-port` was given: the API is on even if the config says port 0. */
  forceHttp?: boolean;
  version: string;
  io: CommandIo;
}): Promise<Services> {
  const { broker, dataDir, cfg, io } = o;
  const out: Services = { lines: [] };
  const followerStatus = (): FollowerStatus[] => [
    ...(out.influx ? [out.influx.follower.status()] : []),
    ...(out.alerter ? [out.alerter.stats().follower] : []),
  ];
  try {
    if (cfg.followers.influx) {
      const ix = cfg.followers.influx;
      out.influx = startInfluxMirror({ dataDir, ledger: broker.ledger, cfg: ix, nodeId: broker.nodeId, onError: throttledWarn(io, `InfluxDB mirror ${ix.url}`) });
      broker.onStop(() => out.influx!.stop());
      out.lines.push(`influx ${ix.url} (${ix.api}${ix.api === 'v1' ? ` db ${ix.database}` : ` ${ix.org}/${ix.bucket}`}) from record ${out.influx.follower.cursor}`);
    }
    if (cfg.alerts.enabled) {
      out.alerter = startAlerter({
        dataDir,
        ledger: broker.ledger,
        plugin: broker.plugin,
        aedes: broker.aedes as unknown as Parameters<typeof startAlerter>[0]['aedes'],
        rules: cfg.alerts.rules as Parameters<typeof startAlerter>[0]['rules'],
        topic: cfg.alerts.topic,
        ...(cfg.alerts.webhook ? { webhook: cfg.alerts.webhook } : {}),
      });
      broker.onStop(() => out.alerter!.stop());
      out.lines.push(`alerts on ${cfg.alerts.topic}${cfg.alerts.webhook ? ` and ${cfg.alerts.webhook.url}` : ''}`);
    }
    if (o.forceHttp || cfg.http.port !== 0) {
      const port = o.forceHttp ? o.httpPort : cfg.http.port;
      let tokens: HttpToken[] = cfg.http.tokens;
      if (tokens.length === 0) {
        // No tokens configured: one admin token kept in DATA/keys/http-admin.token (0600).
        const t = ensureAdminToken(dataDir);
        tokens = [t.token];
        out.lines.push(`http admin token ${t.created ? 'created in' : 'in'} ${t.path} (no http.tokens in the config)`);
      }
      out.stats = startStats({ dataDir, ledger: broker.ledger });
      broker.onStop(() => out.stats!.stop());
      out.http = await startHttpApi({
        host: cfg.http.host,
        port,
        dataDir,
        broker,
        tokens,
        metricsWithoutToken: cfg.http.metricsWithoutToken,
        stats: out.stats,
        version: o.version,
        dashboardHtml,
        followers: followerStatus,
        ...(out.alerter ? { alerts: () => out.alerter!.alerts() } : {}),
      });
      broker.onStop(() => out.http!.close());
      out.lines.unshift(`http ${out.http.url}`);
    }
  } catch (e) {
    // Whatever started is stopped by broker.stop() through its hook; the caller stops the broker.
    throw e;
  }
  return out;
}
