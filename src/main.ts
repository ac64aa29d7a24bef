// Wires the proxy together: config → logger, pool, verifier, registry, listener; signals for drain and reload.
import cluster from 'node:cluster';
import pino, { type Logger } from 'pino';
import { buildStatus, type StatusSnapshot } from './admin/status.js';
import { AuditLog } from './audit/audit-log.js';
import { createTenantTokenVerifier, type TenantTokenVerifier } from './auth/tenant-token.js';
import { upstreamTarget } from './backend/connect.js';
import type { Pool } from './backend/pool.js';
import { ChannelHub } from './channels/hub.js';
import { loadConfig } from './config/load.js';
import type { Config } from './config/schema.js';
import { CancelRegistry, type CancelPartition } from './frontend/cancel.js';
import { ClientSession } from './frontend/session.js';
import { catalogFilterProblem } from './catalog/readiness.js';
import { createSqlGuard, loadParser, type SqlGuard } from './guard/sql-guard.js';
import { TenantLimits } from './limits/tenant-limits.js';
import { startOpsServer, type OpsServer, type Readiness } from './metrics/http.js';
import { ProxyMetrics, UNAUTHENTICATED } from './metrics/metrics.js';
import { listen, type Listener } from './net/listener.js';
import { loadSecureContext } from './net/tls.js';
import { ProxyError } from './protocol/errors.js';
import { readinessChecks } from './routing/readiness.js';
import { DEFAULT_ROUTE, routeLabel } from './routing/route.js';
import { Upstreams, type Upstream } from './routing/upstreams.js';
import { controlConnection, createTenantRegistry, type TenantRegistry } from './tenants/registry.js';
import { UsageBook } from './usage/usage-book.js';
import { flushConnector, UsageFlusher, type FlushResult } from './usage/usage-flusher.js';
import { workerConfig } from './workers/share.js';

export interface Proxy {
  readonly host: string;
  readonly port: number;
  /** The default upstream's pool. */
  readonly pool: Pool;
  /** Every upstream's pool. */
  readonly upstreams: Upstreams;
  /** Open client sessions (for status views and tests). */
  readonly sessions: ReadonlySet<ClientSession>;
  readonly metrics: ProxyMetrics;
  /** The port of /metrics, /healthz, /readyz, /admin/status, or null when metrics.enabled is false. */
  readonly metricsPort: number | null;
  status(): StatusSnapshot;
  /** What /readyz answers: listening, upstream reachable, audit destination writable. */
  readiness(): Promise<Readiness>;
  /** A cancel request for a key this process issued (forwarded by the primary when another worker received it). */
  cancel(pid: number, secret: number): void;
  /**
   * Adds the usage counted so far to the registry now (as the flushIntervalMs timer does); null when usage metering
   * is off (usage.enabled false, or no registry).
   */
  flushUsage(): Promise<FlushResult | null>;
  /** Applies a new config: keys, TLS, pool sizes; the listen address and upstream stay as started. */
  reload(config: Config): Promise<void>;
  /** Stops accepting, lets pinned clients finish up to drainTimeoutMs, then closes everything. */
  close(drainTimeoutMs?: number): Promise<void>;
}

const JANITOR_INTERVAL_MS = 1000;
/** /readyz asks the upstream at most this often; probes within the interval share the last answer. */
const READINESS_CACHE_MS = 1000;
const READINESS_TIMEOUT_MS = 2000;

export function createLogger(config: Config): Logger {
  // Operational logs go to stderr so stdout can carry nothing but what a user asked for.
  return pino(
    { level: config.log.level, base: { service: 'pg-tenant-proxy' } },
    pino.destination({ fd: 2, sync: false }),
  );
}

function guardFor(config: Config): SqlGuard {
  return createSqlGuard({
    ...config.policy,
    sharedSchemas: config.tenancy.sharedSchemas,
    schemaTemplate: config.tenancy.schemaTemplate,
    tenantPattern: config.tenancy.tenantPattern,
  });
}

/**
 * Starts one proxy process. As one of several workers (`worker` given) it issues cancel keys from its own residue
 * class and leaves the operations endpoint to the primary.
 */
export async function startProxy(
  initial: Config,
  log: Logger = createLogger(initial),
  worker?: CancelPartition,
): Promise<Proxy> {
  let config = initial;
  await loadParser();
  let guard = guardFor(config);
  /** undefined: not known (not asked yet, or the database could not be asked). */
  let catalogProblem: string | null | undefined;
  if (config.policy.guard && config.policy.catalogFilter) {
    void catalogFilterProblem(config.upstream).then((problem) => {
      catalogProblem = problem;
      if (problem === undefined || problem === null) return;
      guard.catalogFilterMissing(problem);
      log.error({ problem }, 'catalog statements are refused until `pg-tenant-proxy catalog install` runs');
    });
    // The guard is one for every upstream; elsewhere a missing filter fails closed in PostgreSQL (no such view).
    for (const [name, upstream] of Object.entries(config.upstreams)) {
      void catalogFilterProblem(upstream).then((problem) => {
        if (typeof problem === 'string')
          log.error({ upstream: name, problem }, 'catalog statements of tenants on this upstream fail until installed');
      });
    }
  }
  let verifier: TenantTokenVerifier = await createTenantTokenVerifier(config);
  let secureContext = loadSecureContext(config.tls);
  const target = upstreamTarget(config);
  const startedAt = Date.now();
  const metrics = new ProxyMetrics(config.metrics.maxTenantLabels);
  // Opening the audit file first: an unwritable destination stops the start before anything listens.
  const audit = new AuditLog(config, log.child({ component: 'audit' }));
  const upstreams = new Upstreams(config, log, metrics);
  const pool = upstreams.default.pool;
  const registry: TenantRegistry = createTenantRegistry(target, config.tenancy, log.child({ component: 'registry' }));
  // Usage goes to the registry, so without one nothing is counted (usage.enabled and interval are fixed at start).
  const metering = config.usage.enabled && config.tenancy.registry.enabled;
  const usage = new UsageBook(metering);
  const usageFlusher = metering
    ? new UsageFlusher(usage, {
        schema: config.tenancy.registry.schema,
        intervalMs: config.usage.flushIntervalMs,
        connect: flushConnector(controlConnection(target), log),
        log: log.child({ component: 'usage' }),
      })
    : null;
  if (config.usage.enabled && !metering) log.info('usage metering is off: it needs tenancy.registry.enabled');
  const cancels = new CancelRegistry(worker);
  const limits = new TenantLimits(config.limits, metrics, log.child({ component: 'limits' }), worker);
  // A tenant's tier or limits changed in the registry (`tenants limits`, `tenants update --tier`): its sessions follow.
  // Connects on the first LISTEN of a tenant logged in to an upstream: one listening connection per upstream.
  const channelHubs = new Map<string, ChannelHub>();
  const channelHub = (upstream: Upstream): ChannelHub => {
    let hub = channelHubs.get(upstream.label);
    if (hub === undefined) {
      hub = new ChannelHub(
        controlConnection(upstream.target),
        log.child({ component: 'channels', upstream: upstream.label }),
      );
      channelHubs.set(upstream.label, hub);
    }
    return hub;
  };
  const sessions = new Set<ClientSession>();
  // A tenant's tier, limits or route changed in the registry (`tenants limits`, `tenants update --tier`, a move).
  registry.onChanged((tenantId, record) => {
    limits.changed(tenantId, record);
    for (const upstream of upstreams.all()) upstream.pool.limitsChanged();
    // Its listeners follow a new route at once: a LISTEN-only connection may never run another transaction.
    const upstream = record === null ? null : upstreams.resolve(record.route);
    if (upstream === null) return;
    for (const session of sessions) {
      if (session.tenant?.tenantId === tenantId) session.channels?.moveTo(channelHub(upstream));
    }
  });
  // A suspended (or deleted) tenant's sessions end as their transactions end; idle ones at once.
  registry.onWithdrawn((tenantId, error) => {
    const deadlineMs = config.tenancy.registry.withdrawTimeoutMs;
    for (const session of sessions) {
      if (session.tenant?.tenantId !== tenantId) continue;
      session.drain(error);
      // Past the deadline an open transaction is cut as a shutdown's is: the session fails, the server is reset.
      if (deadlineMs > 0 && session.busy) setTimeout(() => session.fail(error), deadlineMs).unref();
    }
  });

  const janitor = setInterval(() => upstreams.maintain(), JANITOR_INTERVAL_MS);
  janitor.unref();
  upstreams.maintain();

  const listener: Listener = await listen(
    config.listen.host,
    config.listen.port,
    () => config.listen.maxClients,
    () => sessions.size,
    (socket) => {
      const session = new ClientSession(socket, {
        get config() {
          return config;
        },
        upstreams,
        get verifier() {
          return verifier;
        },
        registry,
        get guard() {
          return guard;
        },
        cancels,
        log,
        audit,
        metrics,
        usage,
        limits,
        secureContext: () => secureContext,
        channelHub,
        onClosed: (s) => sessions.delete(s),
      });
      sessions.add(session);
    },
    log,
  );

  metrics.attach({
    poolStats: () => upstreams.stats(),
    clientCounts() {
      const counts = new Map<string, { tenant: string; state: string; count: number }>();
      for (const session of sessions) {
        const tenant = session.tenant === null ? UNAUTHENTICATED : session.meter.label;
        const key = `${tenant}\0${session.state}`;
        const row = counts.get(key);
        if (row === undefined) counts.set(key, { tenant, state: session.state, count: 1 });
        else row.count++;
      }
      return counts.values();
    },
    auditState: () => audit.state,
    usageState: () => usageFlusher?.state ?? null,
    tenantShares: () => limits.counts(),
  });
  const status = (): StatusSnapshot =>
    buildStatus(
      upstreams.stats(),
      [...sessions].map((s) => ({
        session: s.id,
        tenant: s.tenant?.tenantId ?? null,
        // Where the registry routes it now: a session follows a changed route at its next transaction.
        upstream: s.tenant === null ? null : routeLabel(registry.route(s.tenant.tenantId) ?? DEFAULT_ROUTE),
        state: s.state,
        client: `${s.clientSocket.remoteAddress}:${s.clientSocket.remotePort}`,
        connected_at: new Date(s.connectedAt).toISOString(),
        application_name: s.applicationName,
      })),
      {
        enabled: config.audit.enabled,
        failing: audit.state?.failing ?? false,
        dropped: audit.state?.dropped ?? 0,
        last_error: audit.state?.lastError ?? null,
      },
      startedAt,
    );
  let closing: Promise<void> | null = null;
  let lastReadiness: { at: number; result: Promise<Readiness> } | null = null;
  const readiness = (): Promise<Readiness> => {
    if (lastReadiness !== null && Date.now() - lastReadiness.at < READINESS_CACHE_MS) return lastReadiness.result;
    const result = readinessChecks(registry, upstreams, READINESS_TIMEOUT_MS).then(
      ({ upstream, others }): Readiness => {
        const listening = closing === null;
        const auditOk = audit.blockingError() === null;
        return {
          // Only the default upstream (which holds the registry) decides: the others' tenants fail with a clear
          // error, and taking every proxy out of the load balancer would fail everyone else's too.
          ready: listening && upstream.ok && auditOk,
          checks: {
            listener: listening ? { ok: true } : { ok: false, detail: 'shutting down' },
            upstream,
            ...others,
            config: { ok: true },
            audit: auditOk
              ? { ok: true }
              : { ok: false, detail: `audit destination failing: ${audit.state?.lastError ?? ''}` },
          },
        };
      },
    );
    lastReadiness = { at: Date.now(), result };
    return result;
  };
  let ops: OpsServer | null = null;
  if (config.metrics.enabled && worker === undefined) {
    try {
      ops = await startOpsServer(
        config.metrics.host,
        config.metrics.port,
        { metrics, readiness, status, adminToken: () => config.metrics.adminToken },
        log.child({ component: 'metrics' }),
      );
    } catch (err) {
      // A metrics port already taken must not leave a half-started proxy listening.
      await listener.stop();
      clearInterval(janitor);
      await upstreams.destroy();
      verifier.close();
      await usageFlusher?.close(0);
      await registry.close().catch(() => undefined);
      await audit.close();
      throw new Error(
        `cannot serve metrics on ${config.metrics.host}:${config.metrics.port}: ${(err as Error).message}`,
        { cause: err },
      );
    }
  }

  return {
    host: listener.address.address,
    port: listener.address.port,
    pool,
    upstreams,
    sessions,
    metrics,
    metricsPort: ops?.port ?? null,
    status,
    readiness,
    cancel: (pid, secret) => void cancels.cancel(pid, secret),
    flushUsage: () => usageFlusher?.flush() ?? Promise.resolve(null),
    async reload(next) {
      // Build everything first: a bad key or certificate leaves the running config untouched.
      const nextVerifier = await createTenantTokenVerifier(next);
      const nextContext = loadSecureContext(next.tls);
      const previous = verifier;
      config = next;
      verifier = nextVerifier;
      guard = guardFor(next);
      if (typeof catalogProblem === 'string') guard.catalogFilterMissing(catalogProblem);
      secureContext = nextContext;
      limits.reconfigure(next.limits);
      upstreams.reconfigure(next);
      audit.reconfigure(next);
      previous.close();
      log.info('configuration reloaded');
    },
    close(drainTimeoutMs = 0) {
      closing ??= (async () => {
        await listener.stop().catch(() => undefined);
        const deadline = Date.now() + drainTimeoutMs;
        for (const session of [...sessions]) session.drain();
        while (Date.now() < deadline && [...sessions].some((s) => s.busy)) {
          await new Promise((resolve) => setTimeout(resolve, 50));
        }
        for (const session of [...sessions]) session.fail(ProxyError.shuttingDown());
        for (const hub of channelHubs.values()) hub.close();
        clearInterval(janitor);
        await upstreams.destroy();
        verifier.close();
        // After every session and server is gone, so the last flush holds all they counted.
        await usageFlusher?.close();
        await registry.close().catch(() => undefined);
        await audit.close();
        await ops?.close();
      })();
      return closing;
    },
  };
}

/**
 * `pg-tenant-proxy start`: runs until SIGTERM/SIGINT (drain, exit 0); SIGHUP reloads the config file. With
 * listen.workers > 1 this process becomes the primary and each worker, the same command forked, runs its share.
 */
export async function runProxy(configFile: string | undefined): Promise<void> {
  const first = loadConfig(configFile);
  let log = createLogger(first);
  process.on('uncaughtException', (err) => log.error({ err }, 'uncaught exception'));
  process.on('unhandledRejection', (err) => log.error({ err }, 'unhandled rejection'));
  if (cluster.isPrimary && first.listen.workers > 1) {
    const { runPrimary } = await import('./workers/primary.js');
    await runPrimary(configFile, first, log);
    return;
  }
  const link = cluster.isWorker ? (await import('./workers/worker.js')).workerLink(log) : null;
  if (link !== null) log = log.child({ worker: link.index });
  const shaped = (config: Config): Config => (link === null ? config : workerConfig(config, link.index, link.count));
  const proxy = await startProxy(shaped(first), log, link?.partition);
  link?.serve(proxy);
  const drainMs = 30_000;
  const stop = (signal: string): void => {
    log.info({ signal }, 'draining');
    proxy.close(drainMs).then(
      () => {
        log.info('stopped');
        log.flush();
        process.exit(0);
      },
      (err: unknown) => {
        log.error({ err }, 'shutdown failed');
        process.exit(1);
      },
    );
  };
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGINT', () => stop('SIGINT'));
  process.on('SIGHUP', () => {
    try {
      proxy
        .reload(shaped(loadConfig(configFile)))
        .catch((err: unknown) => log.error({ err: (err as Error).message }, 'reload rejected; keeping the old config'));
    } catch (err) {
      log.error({ err: (err as Error).message }, 'reload rejected; keeping the old config');
    }
  });
}
