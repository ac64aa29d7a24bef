// `pg-tenant-proxy tenants query "SQL"`: the audited cross-tenant read → merged rows on stdout, each tenant's error on stderr.
import { parseArgs } from 'node:util';
import pg from 'pg';
import { LifecycleAudit } from '../audit/lifecycle-audit.js';
import { ConfigError, loadConfig } from '../config/load.js';
import { adminClientConfig, defaultActor, TenantError, tenantNames } from '../tenants/lifecycle.js';
import { formatRows, queryTenants, type QueryFormat } from '../tenants/query.js';
import { ensureRegistry } from '../tenants/registry-schema.js';
import { RegistryStore, type LifecycleEvent } from '../tenants/registry-store.js';
import { parseTimeout } from './migrate.js';

export const QUERY_USAGE = `usage: pg-tenant-proxy tenants query --config FILE "SQL" (--tenants a,b | --all) [options]

Runs one statement in each selected tenant, judged by the proxy's guard for that tenant and pinned to its schema
(and role) in a READ ONLY transaction; prints the rows merged, with a leading column "tenant". Audited.

options:
  --format table|csv|json   output (default table; csv is RFC 4180)
  --concurrency K           tenants queried in parallel (default 4)
  --timeout 30s             statement_timeout per tenant
  --actor NAME              who asks, for the registry and the audit trail (default: the OS user)
Exit status: 0 every tenant answered, 1 a tenant failed (its error is on stderr), 2 usage.
`;

export interface QueryCliOutput {
  stdout: (text: string) => void;
  stderr: (text: string) => void;
}

const processOutput: QueryCliOutput = {
  stdout: (text) => process.stdout.write(text),
  stderr: (text) => process.stderr.write(text),
};

class UsageError extends Error {}

const FORMATS: readonly QueryFormat[] = ['table', 'csv', 'json'];

export async function runTenantsQuery(
  argv: string[],
  out: QueryCliOutput = processOutput,
  env: NodeJS.ProcessEnv = process.env,
): Promise<number> {
  if (argv.includes('--help') || argv.includes('-h')) {
    out.stdout(QUERY_USAGE);
    return 0;
  }
  let audit: LifecycleAudit | undefined;
  let db: pg.Client | undefined;
  try {
    let parsed;
    try {
      parsed = parseArgs({
        args: argv,
        options: {
          config: { type: 'string', short: 'c' },
          tenants: { type: 'string' },
          all: { type: 'boolean', default: false },
          format: { type: 'string', default: 'table' },
          concurrency: { type: 'string', default: '4' },
          timeout: { type: 'string', default: '30s' },
          actor: { type: 'string' },
          json: { type: 'boolean', default: false },
        },
        allowPositionals: true,
        strict: true,
      });
    } catch (err) {
      throw new UsageError((err as Error).message.split('. ')[0]);
    }
    const { values: v, positionals } = parsed;
    if (v.config === undefined) throw new UsageError('tenants query needs --config FILE');
    if (positionals.length !== 1 || positionals[0]!.trim() === '')
      throw new UsageError('tenants query takes one SQL statement (quote it)');
    const sql = positionals[0]!;
    if ((v.tenants === undefined) === (v.all !== true))
      throw new UsageError('tenants query needs either --tenants a,b or --all');
    const format = (v.json === true ? 'json' : v.format) as QueryFormat;
    if (!FORMATS.includes(format)) throw new UsageError(`--format takes ${FORMATS.join(', ')} (got "${v.format}")`);
    if (!/^\d+$/.test(v.concurrency) || Number(v.concurrency) < 1 || Number(v.concurrency) > 1000) {
      throw new UsageError(`--concurrency takes a whole number from 1 to 1000 (got "${v.concurrency}")`);
    }
    let timeout: string;
    try {
      timeout = parseTimeout('--timeout', v.timeout);
    } catch (err) {
      throw new UsageError((err as Error).message);
    }
    const config = loadConfig(v.config, env);
    const tenants = v.tenants
      ?.split(',')
      .map((t) => t.trim())
      .filter((t) => t !== '');
    if (tenants !== undefined && tenants.length === 0) throw new UsageError('--tenants needs at least one tenant id');
    for (const id of tenants ?? []) tenantNames(config, id);
    const actor = v.actor ?? defaultActor();
    audit = new LifecycleAudit(config);
    db = new pg.Client({ ...adminClientConfig(config), application_name: 'pg-tenant-proxy tenants query' });
    db.on('error', () => undefined);
    await db.connect().catch((err: Error) => {
      throw new TenantError('unreachable', `cannot connect to the database (admin.url): ${err.message}`);
    });
    await ensureRegistry(db, config.tenancy.registry.schema, decodeURIComponent(new URL(config.upstream.url).username));
    const result = await queryTenants(config, db, sql, {
      ...(tenants !== undefined && { tenants }),
      concurrency: Number(v.concurrency),
      timeout,
    });
    const event: LifecycleEvent = {
      actor,
      verb: 'query',
      tenant: null,
      outcome: result.failed.length > 0 ? 'error' : 'ok',
      details: {
        statement: sql,
        tenants: result.tenants,
        rows: result.rowCounts,
        failed: result.failed.map((f) => ({ tenant: f.tenant, sqlstate: f.sqlstate, refused: f.refused })),
      },
    };
    await new RegistryStore(config.tenancy.registry.schema).recordEvent(db, event);
    audit.write(event);
    out.stdout(formatRows(result, format));
    for (const f of result.failed) {
      out.stderr(
        `pg-tenant-proxy tenants query: tenant ${f.tenant}: ${f.refused ? 'refused: ' : ''}${f.message}${f.sqlstate === null ? '' : ` (SQLSTATE ${f.sqlstate})`}\n`,
      );
    }
    return result.failed.length > 0 ? 1 : 0;
  } catch (err) {
    const message = ((err as Error).message ?? String(err)).split('\n')[0]!;
    if (err instanceof UsageError) {
      out.stderr(`pg-tenant-proxy tenants query: ${message} (see pg-tenant-proxy tenants query --help)\n`);
      return 2;
    }
    if (err instanceof ConfigError) {
      out.stderr(`pg-tenant-proxy tenants query: invalid configuration: ${message}\n`);
      return 2;
    }
    out.stderr(`pg-tenant-proxy tenants query: ${message}\n`);
    return err instanceof TenantError ? err.exitStatus : 1;
  } finally {
    audit?.close();
    await db?.end().catch(() => undefined);
  }
}
