// The admin view (what PgBouncer's SHOW POOLS / CLIENTS / STATS give): a snapshot, and its rendering for the CLI.
import type { PoolStats } from '../backend/pool.js';
import { renderTable } from '../format/table.js';

export interface StatusClient {
  session: string;
  tenant: string | null;
  state: string;
  client: string;
  connected_at: string;
  application_name: string | null;
  /** The upstream the registry routes its tenant to (null before login); a session follows at its next checkout. */
  upstream: string | null;
}

export type UpstreamPoolStats = PoolStats & { size: number; upstream: string };

export interface StatusSnapshot {
  time: string;
  uptime_s: number;
  /** Every upstream's pool added up. */
  pool: PoolStats & { size: number };
  /** One row per upstream pool. */
  upstreams: UpstreamPoolStats[];
  tenants: Array<{ tenant: string; clients: number; idle: number; waiting: number; active: number }>;
  clients: StatusClient[];
  audit: { enabled: boolean; failing: boolean; dropped: number; last_error: string | null };
}

/** Pool counts added up, per upstream label. */
export function sumPools(rows: readonly UpstreamPoolStats[]): UpstreamPoolStats[] {
  const byName = new Map<string, UpstreamPoolStats>();
  for (const row of rows) {
    const sum = byName.get(row.upstream);
    if (sum === undefined) {
      byName.set(row.upstream, { ...row });
      continue;
    }
    for (const key of ['idle', 'parked', 'active', 'resetting', 'connecting', 'waiting', 'size'] as const)
      sum[key] += row[key];
  }
  return [...byName.values()];
}

export function buildStatus(
  upstreams: UpstreamPoolStats[],
  clients: StatusClient[],
  audit: StatusSnapshot['audit'],
  startedAt: number,
): StatusSnapshot {
  const tenants = new Map<string, StatusSnapshot['tenants'][number]>();
  for (const client of clients) {
    if (client.tenant === null) continue;
    let row = tenants.get(client.tenant);
    if (row === undefined) {
      row = { tenant: client.tenant, clients: 0, idle: 0, waiting: 0, active: 0 };
      tenants.set(client.tenant, row);
    }
    row.clients++;
    if (client.state === 'idle' || client.state === 'waiting' || client.state === 'active') row[client.state]++;
  }
  const pool = { idle: 0, parked: 0, active: 0, resetting: 0, connecting: 0, waiting: 0, size: 0 };
  for (const row of upstreams) for (const key of Object.keys(pool) as Array<keyof typeof pool>) pool[key] += row[key];
  return {
    time: new Date().toISOString(),
    uptime_s: Math.round((Date.now() - startedAt) / 1000),
    pool,
    upstreams,
    tenants: [...tenants.values()].sort((a, b) => b.clients - a.clients || a.tenant.localeCompare(b.tenant)),
    clients,
    audit,
  };
}

/** Plain-text tables for `pg-tenant-proxy status`. */
export function renderStatus(status: StatusSnapshot): string {
  const lines = [
    `pg-tenant-proxy status at ${status.time} (up ${status.uptime_s} s)`,
    '',
    'POOLS',
    renderTable(
      ['upstream', 'size', 'active', 'idle', 'parked', 'resetting', 'connecting', 'waiting clients'],
      status.upstreams.map((p) => [
        p.upstream,
        p.size,
        p.active,
        p.idle,
        p.parked,
        p.resetting,
        p.connecting,
        p.waiting,
      ]),
    ),
    '',
    'TENANTS',
    renderTable(
      ['tenant', 'clients', 'active', 'waiting', 'idle'],
      status.tenants.map((t) => [t.tenant, t.clients, t.active, t.waiting, t.idle]),
    ),
    '',
    'CLIENTS',
    renderTable(
      ['session', 'tenant', 'upstream', 'state', 'client', 'connected at', 'application_name'],
      status.clients.map((c) => [
        c.session,
        c.tenant ?? '-',
        c.upstream ?? '-',
        c.state,
        c.client,
        c.connected_at,
        c.application_name ?? '',
      ]),
    ),
    '',
    `AUDIT ${status.audit.enabled ? (status.audit.failing ? `FAILING (${status.audit.last_error ?? 'unknown error'})` : 'ok') : 'off'}` +
      (status.audit.dropped > 0 ? `, ${status.audit.dropped} events dropped` : ''),
  ];
  return `${lines.join('\n')}\n`;
}
