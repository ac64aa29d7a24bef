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
}

export interface StatusSnapshot {
  time: string;
  uptime_s: number;
  pool: PoolStats & { size: number };
  tenants: Array<{ tenant: string; clients: number; idle: number; waiting: number; active: number }>;
  clients: StatusClient[];
  audit: { enabled: boolean; failing: boolean; dropped: number; last_error: string | null };
}

export function buildStatus(
  pool: PoolStats & { size: number },
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
  return {
    time: new Date().toISOString(),
    uptime_s: Math.round((Date.now() - startedAt) / 1000),
    pool,
    tenants: [...tenants.values()].sort((a, b) => b.clients - a.clients || a.tenant.localeCompare(b.tenant)),
    clients,
    audit,
  };
}

/** Plain-text tables for `pg-tenant-proxy status`. */
export function renderStatus(status: StatusSnapshot): string {
  const p = status.pool;
  const lines = [
    `pg-tenant-proxy status at ${status.time} (up ${status.uptime_s} s)`,
    '',
    'POOL',
    renderTable(
      ['size', 'active', 'idle', 'parked', 'resetting', 'connecting', 'waiting clients'],
      [[p.size, p.active, p.idle, p.parked, p.resetting, p.connecting, p.waiting]],
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
      ['session', 'tenant', 'state', 'client', 'connected at', 'application_name'],
      status.clients.map((c) => [
        c.session,
        c.tenant ?? '-',
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
