// `pg-tenant-proxy tenants query "SQL"`: the audited cross-tenant read → merged rows on stdout, each tenant's error on stderr.
import { loadConfig } from '../config/load.js';
import { defaultActor } from '../tenants/actor.js';
import { formatRows, queryTenants, type QueryFormat } from '../tenants/query.js';
import type { LifecycleEvent } from '../tenants/registry-store.js';
import {
  COMMON_FLAGS,
  parseFlags,
  parseTimeout,
  positiveInt,
  processOutput,
  runAdminCommand,
  tenantList,
  UsageError,
  type CliOutput,
} from './admin-command.js';

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

const FORMATS: readonly QueryFormat[] = ['table', 'csv', 'json'];

export async function runTenantsQuery(
  argv: string[],
  out: CliOutput = processOutput,
  env: NodeJS.ProcessEnv = process.env,
): Promise<number> {
  return runAdminCommand(
    { command: 'tenants query', argv, printUsage: () => out.stdout(QUERY_USAGE), stderr: out.stderr },
    async (open) => {
      const parsed = parseFlags({
        args: argv,
        options: {
          ...COMMON_FLAGS,
          tenants: { type: 'string' },
          all: { type: 'boolean', default: false },
          format: { type: 'string', default: 'table' },
          concurrency: { type: 'string', default: '4' },
          timeout: { type: 'string', default: '30s' },
        },
        allowPositionals: true,
        strict: true,
      });
      const { values: v, positionals } = parsed;
      if (v.config === undefined) throw new UsageError('tenants query needs --config FILE');
      if (positionals.length !== 1 || positionals[0]!.trim() === '')
        throw new UsageError('tenants query takes one SQL statement (quote it)');
      const sql = positionals[0]!;
      if ((v.tenants === undefined) === (v.all !== true))
        throw new UsageError('tenants query needs either --tenants a,b or --all');
      const format = (v.json === true ? 'json' : v.format) as QueryFormat;
      if (!FORMATS.includes(format)) throw new UsageError(`--format takes ${FORMATS.join(', ')} (got "${v.format}")`);
      const concurrency = positiveInt('--concurrency', v.concurrency, 4);
      const timeout = parseTimeout('--timeout', v.timeout);
      const config = loadConfig(v.config, env);
      const tenants = tenantList(config, v.tenants);
      const actor = v.actor ?? defaultActor();
      const session = await open(config);
      const result = await queryTenants(config, session.db, sql, {
        ...(tenants !== undefined && { tenants }),
        concurrency,
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
      await session.record(event);
      out.stdout(formatRows(result, format));
      for (const f of result.failed) {
        out.stderr(
          `pg-tenant-proxy tenants query: tenant ${f.tenant}: ${f.refused ? 'refused: ' : ''}${f.message}${f.sqlstate === null ? '' : ` (SQLSTATE ${f.sqlstate})`}\n`,
        );
      }
      return result.failed.length > 0 ? 1 : 0;
    },
  );
}
