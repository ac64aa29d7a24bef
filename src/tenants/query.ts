// The audited cross-tenant query: one statement in each selected tenant, judged by the proxy's guard for that tenant,
// pinned to its schema (and role) in a READ ONLY transaction, rows merged with a leading tenant column.
import pg from 'pg';
import { quoteIdent, quoteLiteral } from '../auth/identity.js';
import type { Config } from '../config/schema.js';
import { renderTable } from '../format/table.js';
import { createSqlGuard, isRefusal, loadParser } from '../guard/sql-guard.js';
import { AdminPools } from '../routing/migrate-connections.js';
import { proxyRoleOn } from '../routing/upstream-admin.js';
import type { SqlRunner } from './provision.js';
import { RegistryStore, TenantStatus, type TenantRecord } from './registry-store.js';

export interface TenantQueryOptions {
  /** Tenant ids; undefined: every tenant not being deleted. */
  tenants?: readonly string[];
  concurrency: number;
  /** statement_timeout per tenant, as PostgreSQL takes it ('30000ms'). */
  timeout: string;
}

export interface TenantQueryFailure {
  tenant: string;
  message: string;
  sqlstate: string | null;
  /** Refused by the guard (nothing reached the database) rather than failed in PostgreSQL. */
  refused: boolean;
}

export interface TenantQueryResult {
  /** `tenant` first, then the statement's columns in order of first appearance. */
  columns: string[];
  rows: Array<Record<string, unknown>>;
  /** Rows per tenant that answered. */
  rowCounts: Record<string, number>;
  failed: TenantQueryFailure[];
  tenants: string[];
}

export class TenantQueryError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'TenantQueryError';
  }
}

// Values as PostgreSQL prints them, except the types JSON has a faithful form for.
const NUMBER_TYPES = new Set([21, 23, 700, 701]);
const JSON_TYPES = new Set([114, 3802]);
const types = {
  getTypeParser(oid: number): (value: string) => unknown {
    if (oid === 16) return (v) => v === 't';
    if (NUMBER_TYPES.has(oid)) return Number;
    if (JSON_TYPES.has(oid)) return (v) => JSON.parse(v) as unknown;
    return (v) => v;
  },
};

/** Runs `sql` in each selected tenant; a tenant's failure is reported with it and does not stop the others. */
export async function queryTenants(
  config: Config,
  db: SqlRunner,
  sql: string,
  options: TenantQueryOptions,
): Promise<TenantQueryResult> {
  await loadParser();
  const guard = createSqlGuard({
    ...config.policy,
    sharedSchemas: config.tenancy.sharedSchemas,
    schemaTemplate: config.tenancy.schemaTemplate,
    tenantPattern: config.tenancy.tenantPattern,
  });
  const store = new RegistryStore(config.tenancy.registry.schema);
  const live = (await store.list(db)).filter(
    (t) => t.status !== TenantStatus.Deleting && t.status !== TenantStatus.Deleted,
  );
  let selected: TenantRecord[] = live;
  if (options.tenants !== undefined) {
    const byId = new Map(live.map((t) => [t.id, t]));
    const unknown = options.tenants.filter((id) => !byId.has(id));
    if (unknown.length > 0) throw new TenantQueryError(`not registered (or being deleted): ${unknown.join(', ')}`);
    selected = [...new Set(options.tenants)].map((id) => byId.get(id)!);
  }
  // Each tenant is asked on its own upstream, as its proxy role would be pinned there.
  const pools = new AdminPools(config, Math.max(1, options.concurrency), 'pg-tenant-proxy tenants query');
  const perTenant = new Map<string, { fields: string[]; rows: unknown[][] } | TenantQueryFailure>();
  let next = 0;
  const one = async (t: TenantRecord): Promise<void> => {
    const verdict = guard.check(sql, t.schema);
    if (isRefusal(verdict)) {
      perTenant.set(t.id, {
        tenant: t.id,
        message: verdict.error.message,
        sqlstate: verdict.error.sqlstate,
        refused: true,
      });
      return;
    }
    let role: string;
    let client: pg.PoolClient;
    try {
      role = config.tenancy.roles && t.role !== null ? t.role : proxyRoleOn(config, t.upstream);
      client = await pools.pool(t.upstream).connect();
    } catch (err) {
      // Its upstream is down, or not in this config: this tenant fails, the others are asked.
      perTenant.set(t.id, { tenant: t.id, message: (err as Error).message, sqlstate: null, refused: false });
      return;
    }
    let broken: Error | undefined;
    try {
      await client.query('BEGIN READ ONLY');
      await client.query(`SET LOCAL statement_timeout = ${quoteLiteral(options.timeout)}`);
      await client.query(`SET LOCAL search_path TO ${quoteIdent(t.schema)}`);
      await client.query(`SET LOCAL ROLE ${quoteIdent(role)}`);
      // The extended protocol takes exactly one statement: "a; b" is refused by PostgreSQL itself.
      const statement: pg.QueryArrayConfig & { queryMode: 'extended' } = {
        text: sql,
        rowMode: 'array',
        queryMode: 'extended',
        types,
      };
      const result = await client.query(statement);
      perTenant.set(t.id, { fields: result.fields.map((f) => f.name), rows: result.rows as unknown[][] });
    } catch (err) {
      const code = (err as { code?: unknown }).code;
      perTenant.set(t.id, {
        tenant: t.id,
        message: ((err as Error).message ?? String(err)).split('\n')[0]!,
        sqlstate: typeof code === 'string' && /^[0-9A-Z]{5}$/.test(code) ? code : null,
        refused: false,
      });
    } finally {
      await client.query('ROLLBACK').catch((e: Error) => (broken = e));
      client.release(broken);
    }
  };
  try {
    await Promise.all(
      Array.from({ length: Math.min(Math.max(1, options.concurrency), Math.max(1, selected.length)) }, async () => {
        while (next < selected.length) await one(selected[next++]!);
      }),
    );
  } finally {
    await pools.end();
  }
  const columns = ['tenant'];
  const rows: Array<Record<string, unknown>> = [];
  const rowCounts: Record<string, number> = {};
  const failed: TenantQueryFailure[] = [];
  for (const t of selected) {
    const answer = perTenant.get(t.id)!;
    if ('message' in answer) {
      failed.push(answer);
      continue;
    }
    for (const f of answer.fields) if (!columns.includes(f)) columns.push(f);
    rowCounts[t.id] = answer.rows.length;
    for (const values of answer.rows) {
      const row: Record<string, unknown> = { tenant: t.id };
      answer.fields.forEach((f, i) => (row[f] = values[i]));
      rows.push(row);
    }
  }
  return { columns, rows, rowCounts, failed, tenants: selected.map((t) => t.id) };
}

export type QueryFormat = 'table' | 'csv' | 'json';

function text(value: unknown): string {
  if (value === null || value === undefined) return '';
  if (typeof value === 'string') return value;
  if (typeof value === 'number' || typeof value === 'boolean') return String(value);
  return JSON.stringify(value);
}

/** RFC 4180: CRLF line ends, a field quoted only when it holds a comma, a quote, CR or LF; quotes doubled. */
export function csvField(value: unknown): string {
  const s = text(value);
  return /[",\r\n]/.test(s) ? `"${s.replace(/"/g, '""')}"` : s;
}

export function formatRows(result: Pick<TenantQueryResult, 'columns' | 'rows'>, format: QueryFormat): string {
  switch (format) {
    case 'json':
      return `${JSON.stringify(
        result.rows.map((r) => Object.fromEntries(result.columns.map((c) => [c, r[c] ?? null]))),
        null,
        2,
      )}\n`;
    case 'csv':
      return [result.columns, ...result.rows.map((r) => result.columns.map((c) => r[c]))]
        .map((line) => `${line.map(csvField).join(',')}\r\n`)
        .join('');
    case 'table': {
      const table = renderTable(
        result.columns,
        result.rows.map((r) => result.columns.map((c) => text(r[c]).replace(/\r?\n/g, '\\n'))),
        { gap: ' | ', ruleGap: '-+-', empty: null },
      );
      return `${table}\n(${result.rows.length} row${result.rows.length === 1 ? '' : 's'})\n`;
    }
    default: {
      const never: never = format;
      throw new Error(`unknown format ${String(never)}`);
    }
  }
}
