// Prometheus metrics (prom-client, own registry, prefix pgtp_). Hot-path counts are plain numbers, read at scrape time.
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics, type LabelValues } from 'prom-client';
import type { PoolStats } from '../backend/pool.js';

const PREFIX = 'pgtp_';
/** The label of sessions that have not authenticated yet. */
export const UNAUTHENTICATED = '-';
/** The label shared by tenants past metrics.maxTenantLabels. */
export const OTHER_TENANTS = 'other';

const DURATION_BUCKETS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30];

/** Per tenant label: running totals bumped by sessions, turned into counter increments when scraped. */
export class TenantMeter {
  bytesIn = 0;
  bytesOut = 0;
  private reportedIn = 0;
  private reportedOut = 0;
  private readonly statementCounters = new Map<string, Counter.Internal>();
  readonly duration: Histogram.Internal<'tenant'>;

  constructor(
    readonly label: string,
    private readonly metrics: ProxyMetrics,
  ) {
    this.duration = metrics.statementDuration.labels(label);
  }

  statement(command: string, outcome: string, seconds: number): void {
    const key = `${command}\0${outcome}`;
    let counter = this.statementCounters.get(key);
    if (counter === undefined) {
      counter = this.metrics.statements.labels(this.label, command, outcome);
      this.statementCounters.set(key, counter);
    }
    counter.inc();
    this.duration.observe(seconds);
  }

  refusal(rule: string): void {
    this.metrics.refusals.inc({ tenant: this.label, rule });
  }

  /** A transaction that had to wait for a server (its tenant at maxServers, or the pool busy). */
  queued(): void {
    this.metrics.limitQueued.inc({ tenant: this.label });
  }

  /** A transaction that had to wait for its tenant's rate budget (transactionsPerSecond). */
  throttled(): void {
    this.metrics.limitThrottled.inc({ tenant: this.label });
  }

  /** Refused by a tenant limit: max_clients, max_waiting, rate, queue_timeout. */
  limitRefused(limit: string): void {
    this.metrics.limitRefused.inc({ tenant: this.label, limit });
  }

  /** How long a transaction waited before it got a server (rate budget and pool together). */
  waited(seconds: number): void {
    this.metrics.limitWait.observe({ tenant: this.label }, seconds);
  }

  /** @internal scrape time */
  flushBytes(): void {
    if (this.bytesIn > this.reportedIn)
      this.metrics.bytesIn.inc({ tenant: this.label }, this.bytesIn - this.reportedIn);
    if (this.bytesOut > this.reportedOut)
      this.metrics.bytesOut.inc({ tenant: this.label }, this.bytesOut - this.reportedOut);
    this.reportedIn = this.bytesIn;
    this.reportedOut = this.bytesOut;
  }
}

/** What the metrics need to read from the running proxy at scrape time. */
export interface MetricsSource {
  /** One row per upstream pool (`upstream`: its name, or name/database for a dedicated database). */
  poolStats(): Iterable<PoolStats & { size: number; upstream: string }>;
  /** Client sessions by tenant label and state. */
  clientCounts(): Iterable<{ tenant: string; state: string; count: number }>;
  auditState(): { failing: boolean; dropped: number } | null;
  /** Usage flushes to the registry (null when metering is off): failed attempts so far, a batch unconfirmed now. */
  usageState?(): { failures: number; pending: boolean } | null;
  /** Servers held and transactions waiting, by tenant label (per-tenant limits). */
  tenantShares?(): Iterable<{ tenant: string; held: number; waiting: number }>;
}

export class ProxyMetrics {
  readonly registry = new Registry();
  private readonly tenants = new Map<string, TenantMeter>();
  private source: MetricsSource | null = null;
  private auditDroppedReported = 0;
  private usageFailuresReported = 0;
  private ownLabels = 0;

  readonly statements: Counter<'tenant' | 'command' | 'outcome'>;
  readonly statementDuration: Histogram<'tenant'>;
  readonly refusals: Counter<'tenant' | 'rule'>;
  readonly bytesIn: Counter<'tenant'>;
  readonly bytesOut: Counter<'tenant'>;
  readonly limitQueued: Counter<'tenant'>;
  readonly limitThrottled: Counter<'tenant'>;
  readonly limitRefused: Counter<'tenant' | 'limit'>;
  readonly limitWait: Histogram<'tenant'>;
  private readonly auth: Counter<'outcome' | 'reason'>;
  private readonly backendConnects: Counter<'upstream' | 'outcome'>;
  private readonly backendResets: Counter;
  private readonly startupsAbandoned: Counter;
  private readonly poolWait: Histogram;

  constructor(private readonly maxTenantLabels: number) {
    const registers = [this.registry];
    collectDefaultMetrics({ register: this.registry, prefix: PREFIX });
    this.statements = new Counter({
      name: `${PREFIX}statements_total`,
      help: 'Statements completed, by tenant, command tag and outcome (ok, error)',
      labelNames: ['tenant', 'command', 'outcome'],
      registers,
    });
    this.statementDuration = new Histogram({
      name: `${PREFIX}statement_duration_seconds`,
      help: 'Time from sending a statement to the server until its completion, by tenant',
      labelNames: ['tenant'],
      buckets: DURATION_BUCKETS,
      registers,
    });
    this.refusals = new Counter({
      name: `${PREFIX}guard_refusals_total`,
      help: 'Statements refused by the SQL guard (or while the audit log was failing), by tenant and rule',
      labelNames: ['tenant', 'rule'],
      registers,
    });
    const flushAll = (): void => {
      for (const meter of new Set(this.tenants.values())) meter.flushBytes();
    };
    this.bytesIn = new Counter({
      name: `${PREFIX}client_received_bytes_total`,
      help: 'Bytes received from clients, by tenant',
      labelNames: ['tenant'],
      registers,
      collect: flushAll,
    });
    this.bytesOut = new Counter({
      name: `${PREFIX}client_sent_bytes_total`,
      help: 'Bytes sent to clients, by tenant',
      labelNames: ['tenant'],
      registers,
      collect: flushAll,
    });
    this.limitQueued = new Counter({
      name: `${PREFIX}tenant_queued_total`,
      help: 'Transactions that waited for a server (the tenant at limits maxServers, or the pool busy), by tenant',
      labelNames: ['tenant'],
      registers,
    });
    this.limitThrottled = new Counter({
      name: `${PREFIX}tenant_throttled_total`,
      help: 'Transactions that waited for the tenant rate budget (limits transactionsPerSecond), by tenant',
      labelNames: ['tenant'],
      registers,
    });
    this.limitRefused = new Counter({
      name: `${PREFIX}tenant_refused_total`,
      help: 'Connections and transactions refused by a tenant limit (max_clients, max_waiting, rate, queue_timeout)',
      labelNames: ['tenant', 'limit'],
      registers,
    });
    this.limitWait = new Histogram({
      name: `${PREFIX}tenant_wait_seconds`,
      help: 'Time transactions waited for their tenant rate budget and a server, by tenant (waits only)',
      labelNames: ['tenant'],
      buckets: DURATION_BUCKETS,
      registers,
    });
    this.auth = new Counter({
      name: `${PREFIX}auth_total`,
      help: 'Client authentication attempts by outcome (ok, failed) and reason',
      labelNames: ['outcome', 'reason'],
      registers,
    });
    this.backendConnects = new Counter({
      name: `${PREFIX}backend_connects_total`,
      help: 'Connections opened to an upstream, by upstream and outcome (ok, failed)',
      labelNames: ['upstream', 'outcome'],
      registers,
    });
    this.backendResets = new Counter({
      name: `${PREFIX}backend_resets_total`,
      help: 'Backends reset before serving another client',
      registers,
    });
    this.startupsAbandoned = new Counter({
      name: `${PREFIX}client_startups_abandoned_total`,
      help: 'Client connections closed partway through their startup packet (PostgreSQL logs an incomplete startup packet)',
      registers,
    });
    this.poolWait = new Histogram({
      name: `${PREFIX}pool_wait_seconds`,
      help: 'Time clients waited for a backend when none was idle',
      buckets: DURATION_BUCKETS,
      registers,
    });
    // prom-client calls collect() with the metric as `this`, so the proxy's own fields need another name.
    // eslint-disable-next-line @typescript-eslint/no-this-alias
    const metrics = this;
    new Gauge({
      name: `${PREFIX}client_connections`,
      help: 'Client connections by tenant and state (startup, password, authenticating, idle, waiting, active)',
      labelNames: ['tenant', 'state'],
      registers,
      collect() {
        this.reset();
        for (const { tenant, state, count } of metrics.source?.clientCounts() ?? []) this.inc({ tenant, state }, count);
      },
    });
    const shareGauge = (name: string, help: string, field: 'held' | 'waiting'): void => {
      new Gauge({
        name: `${PREFIX}${name}`,
        help,
        labelNames: ['tenant'],
        registers,
        collect() {
          this.reset();
          for (const share of metrics.source?.tenantShares?.() ?? []) this.inc({ tenant: share.tenant }, share[field]);
        },
      });
    };
    shareGauge('tenant_servers_held', 'Servers held by each tenant (pinned, or parked for its clients)', 'held');
    shareGauge('tenant_waiting', 'Transactions of each tenant waiting for a server or its rate budget', 'waiting');
    new Gauge({
      name: `${PREFIX}pool_servers`,
      help: 'Backend connections by upstream and state (idle, parked, active, resetting, connecting)',
      labelNames: ['upstream', 'state'],
      registers,
      collect() {
        for (const stats of metrics.source?.poolStats() ?? []) {
          for (const state of ['idle', 'parked', 'active', 'resetting', 'connecting'] as const)
            this.set({ upstream: stats.upstream, state }, stats[state]);
        }
      },
    });
    const poolGauge = (name: string, help: string, value: (stats: PoolStats & { size: number }) => number): void => {
      new Gauge({
        name: `${PREFIX}${name}`,
        help,
        labelNames: ['upstream'],
        registers,
        collect() {
          for (const stats of metrics.source?.poolStats() ?? []) this.set({ upstream: stats.upstream }, value(stats));
        },
      });
    };
    poolGauge(
      'pool_size',
      'Configured maximum of backend connections, by upstream (upstream.poolSize, upstreams.<name>.poolSize)',
      (stats) => stats.size,
    );
    poolGauge('pool_waiting_clients', 'Clients waiting for a backend, by upstream', (stats) => stats.waiting);
    new Gauge({
      name: `${PREFIX}audit_failing`,
      help: '1 while the audit destination fails to accept writes',
      registers,
      collect() {
        this.set(metrics.source?.auditState()?.failing ? 1 : 0);
      },
    });
    new Counter({
      name: `${PREFIX}audit_dropped_events_total`,
      help: 'Audit events dropped because the destination stayed down past the in-memory bound',
      registers,
      collect() {
        const dropped = metrics.source?.auditState()?.dropped ?? 0;
        if (dropped > metrics.auditDroppedReported) this.inc(dropped - metrics.auditDroppedReported);
        metrics.auditDroppedReported = dropped;
      },
    });
    new Counter({
      name: `${PREFIX}usage_flush_failures_total`,
      help: 'Attempts to add usage to the registry that failed (each is retried with the same batch)',
      registers,
      collect() {
        const failures = metrics.source?.usageState?.()?.failures ?? 0;
        if (failures > metrics.usageFailuresReported) this.inc(failures - metrics.usageFailuresReported);
        metrics.usageFailuresReported = failures;
      },
    });
    new Gauge({
      name: `${PREFIX}usage_flush_pending`,
      help: '1 while a usage batch waits for the registry to confirm it (a flush failed and is being retried)',
      registers,
      collect() {
        this.set(metrics.source?.usageState?.()?.pending ? 1 : 0);
      },
    });
  }

  attach(source: MetricsSource): void {
    this.source = source;
  }

  /** The meter for a tenant, or the shared "other" meter once maxTenantLabels tenants have their own. */
  tenant(tenantId: string): TenantMeter {
    let meter = this.tenants.get(tenantId);
    if (meter !== undefined) return meter;
    if (this.ownLabels < this.maxTenantLabels || tenantId === UNAUTHENTICATED) {
      meter = new TenantMeter(tenantId, this);
      if (tenantId !== UNAUTHENTICATED) this.ownLabels++;
    } else {
      meter = this.tenants.get(OTHER_TENANTS) ?? new TenantMeter(OTHER_TENANTS, this);
      this.tenants.set(OTHER_TENANTS, meter);
    }
    this.tenants.set(tenantId, meter);
    return meter;
  }

  authOutcome(outcome: 'ok' | 'failed', reason: string): void {
    this.auth.inc({ outcome, reason } satisfies LabelValues<'outcome' | 'reason'>);
  }

  backendConnected(ok: boolean, upstream = 'default'): void {
    this.backendConnects.inc({ upstream, outcome: ok ? 'ok' : 'failed' });
  }

  backendReset(): void {
    this.backendResets.inc();
  }

  startupAbandoned(): void {
    this.startupsAbandoned.inc();
  }

  waitedForBackend(seconds: number): void {
    this.poolWait.observe(seconds);
  }

  get contentType(): string {
    return this.registry.contentType;
  }

  text(): Promise<string> {
    return this.registry.metrics();
  }
}
