// `pg-tenant-proxy tenants usage`: the registry's hourly usage buckets as a table, CSV or JSON on stdout.
import { loadConfig } from '../config/load.js';
import { formatRows, type QueryFormat } from '../tenants/query.js';
import { tenantNames } from '../tenants/tenant-input.js';
import { readUsage, USAGE_COLUMNS } from '../usage/usage-report.js';
import {
  COMMON_FLAGS,
  parseFlags,
  processOutput,
  runAdminCommand,
  UsageError,
  type CliOutput,
} from './admin-command.js';

export const USAGE_USAGE = `usage: pg-tenant-proxy tenants usage --config FILE [options]

Prints what each tenant used, one row per tenant and hour (UTC), as every proxy process added it to the registry
(every usage.flushIntervalMs and at shutdown): tenant, hour, transactions, statements, server_ms, bytes_in,
bytes_out, rows (returned + affected), peak_clients.

options:
  --since 2026-12-01        hours from this date or ISO 8601 time on (UTC unless the time names a zone)
  --until 2026-12-02        hours before this date or time (exclusive)
  --tenant ID               one tenant only
  --storage                 add storage_bytes: each tenant's schema size, sampled now
  --format table|csv|json   output (default table; csv is RFC 4180; json adds rows_returned and rows_affected)
Exit status: 0 done (no rows is not an error), 1 failure (database unreachable), 2 usage.
`;

const FORMATS: readonly QueryFormat[] = ['table', 'csv', 'json'];

export async function runTenantsUsage(
  argv: string[],
  out: CliOutput = processOutput,
  env: NodeJS.ProcessEnv = process.env,
): Promise<number> {
  return runAdminCommand(
    { command: 'tenants usage', argv, printUsage: () => out.stdout(USAGE_USAGE), stderr: out.stderr },
    async (open) => {
      const { values: v, positionals } = parseFlags(
        {
          args: argv,
          options: {
            ...COMMON_FLAGS,
            since: { type: 'string' },
            until: { type: 'string' },
            tenant: { type: 'string' },
            storage: { type: 'boolean', default: false },
            format: { type: 'string', default: 'table' },
          },
          allowPositionals: true,
          strict: true,
        },
        'tenants usage',
      );
      if (positionals.length > 0) throw new UsageError(`tenants usage takes no arguments (got "${positionals[0]}")`);
      if (v.config === undefined) throw new UsageError('tenants usage needs --config FILE');
      const format = (v.json === true ? 'json' : v.format) as QueryFormat;
      if (!FORMATS.includes(format)) throw new UsageError(`--format takes ${FORMATS.join(', ')} (got "${v.format}")`);
      const since = v.since === undefined ? undefined : parseInstant('--since', v.since);
      const until = v.until === undefined ? undefined : parseInstant('--until', v.until);
      if (since !== undefined && until !== undefined && since >= until)
        throw new UsageError(`--since (${v.since}) must be before --until (${v.until})`);
      const config = loadConfig(v.config, env);
      if (v.tenant !== undefined) tenantNames(config, v.tenant);
      const session = await open(config);
      const rows = await readUsage(session.db, config.tenancy.registry.schema, {
        ...(since !== undefined && { since }),
        ...(until !== undefined && { until }),
        ...(v.tenant !== undefined && { tenant: v.tenant }),
        storage: v.storage === true,
      });
      const columns: string[] = [...USAGE_COLUMNS];
      if (v.storage === true) columns.push('storage_bytes');
      if (format === 'json') columns.push('rows_returned', 'rows_affected');
      const records = rows.map((row) => row as unknown as Record<string, unknown>);
      out.stdout(formatRows({ columns, rows: records }, format));
      return 0;
    },
  );
}

/** A date (midnight UTC) or an ISO 8601 time; anything else, or an impossible date, is a usage error naming the flag. */
export function parseInstant(flag: string, text: string): Date {
  const bad = (): UsageError =>
    new UsageError(`${flag}: invalid date "${text}" (e.g. 2026-12-01, 2026-12-01T13:00Z or 2026-12-01T13:00+01:00)`);
  const m = /^(\d{4})-(\d{2})-(\d{2})(?:T(\d{2}):(\d{2})(?::(\d{2}))?(Z|[+-]\d{2}:\d{2})?)?$/.exec(text);
  if (m === null) throw bad();
  const [, y, mo, d, h = '00', mi = '00', sec = '00', zone = 'Z'] = m as unknown as string[];
  // Date.UTC rolls 2026-02-30 over to March 2: the day must survive the round trip.
  const day = new Date(Date.UTC(Number(y), Number(mo) - 1, Number(d)));
  if (day.getUTCMonth() !== Number(mo) - 1 || day.getUTCDate() !== Number(d)) throw bad();
  if (Number(h) > 23 || Number(mi) > 59 || Number(sec) > 59) throw bad();
  const ms = Date.parse(`${y}-${mo}-${d}T${h}:${mi}:${sec}${zone}`);
  if (Number.isNaN(ms)) throw bad();
  return new Date(ms);
}
