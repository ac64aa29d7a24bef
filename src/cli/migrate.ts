// `pg-tenant-proxy migrate`: argv → the migrations runner over every selected tenant → progress, summary, report, audit.
import { writeFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import pg from 'pg';
import { LifecycleAudit } from '../audit/lifecycle-audit.js';
import { ConfigError, loadConfig } from '../config/load.js';
import type { Config } from '../config/schema.js';
import { MigrationError } from '../migrations/migration-error.js';
import { createProgress, renderSummary, type ProgressStream } from '../migrations/report.js';
import {
  MigrateRunError,
  prepareFolder,
  proxyRoleOf,
  runMigrations,
  type MigrateReport,
} from '../migrations/runner.js';
import { adminClientConfig, defaultActor, TenantError, tenantNames } from '../tenants/lifecycle.js';
import { ensureRegistry, RegistryTooNewError } from '../tenants/registry-schema.js';
import { RegistryStore, type LifecycleEvent } from '../tenants/registry-store.js';

export const MIGRATE_USAGE = `usage: pg-tenant-proxy migrate --config FILE [options]

Applies every missing migration of the migrations folder to each tenant schema, one transaction per tenant and
migration, pinned as the proxy pins (search_path, SET ROLE); tracked in the registry.

options:
  --dir DIR                 migrations folder (plain SQL files or drizzle-kit output); default tenancy.migrationsDir
  --tenants a,b             only these tenants
  --canary N                the first N tenants (canary tenants first, then by id), then stop
  --concurrency K           tenants migrated in parallel (default 4)
  --dry-run                 print what would run where; change nothing
  --stop-on-error           start no new tenant after the first failure
  --lock-timeout 5s         lock_timeout per tenant migration (ms, s, min, h)
  --statement-timeout 10min statement_timeout per statement
  --report FILE             write the report as JSON
  --json                    print the report as JSON instead of progress and summary
  --actor NAME              who runs it, for the registry and the audit trail (default: the OS user)
Exit status: 0 all migrated, 1 a tenant failed or the run was refused (another run, a changed file), 2 usage.
`;

export interface MigrateCliOutput {
  stdout: ProgressStream;
  stderr: (text: string) => void;
}

const processOutput: MigrateCliOutput = {
  stdout: process.stdout,
  stderr: (text) => process.stderr.write(text),
};

class UsageError extends Error {}

/** A duration as PostgreSQL settings take it ('5000ms'): 250ms, 5s, 10min (or 10m), 1h; a bare number is seconds. */
export function parseTimeout(flag: string, text: string): string {
  const match = /^(\d+)(ms|s|min|m|h)?$/.exec(text.trim());
  const unit = { ms: 1, s: 1000, min: 60_000, m: 60_000, h: 3_600_000 } as const;
  const ms = match === null ? NaN : Number(match[1]) * unit[(match[2] ?? 's') as keyof typeof unit];
  if (!Number.isSafeInteger(ms) || ms <= 0 || ms > 2_147_483_647) {
    throw new UsageError(`${flag}: invalid duration "${text}" (e.g. 500ms, 5s, 10min, 1h)`);
  }
  return `${ms}ms`;
}

function positiveInt(flag: string, text: string | undefined, fallback: number): number {
  if (text === undefined) return fallback;
  if (!/^\d+$/.test(text) || Number(text) < 1 || Number(text) > 1000)
    throw new UsageError(`${flag} takes a whole number from 1 to 1000 (got "${text}")`);
  return Number(text);
}

/** Runs `migrate …` and returns the exit status. */
export async function runMigrate(
  argv: string[],
  out: MigrateCliOutput = processOutput,
  env: NodeJS.ProcessEnv = process.env,
): Promise<number> {
  if (argv.includes('--help') || argv.includes('-h')) {
    out.stdout.write(MIGRATE_USAGE);
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
          dir: { type: 'string' },
          tenants: { type: 'string' },
          canary: { type: 'string' },
          concurrency: { type: 'string' },
          'dry-run': { type: 'boolean', default: false },
          'stop-on-error': { type: 'boolean', default: false },
          'lock-timeout': { type: 'string', default: '5s' },
          'statement-timeout': { type: 'string', default: '10min' },
          report: { type: 'string' },
          json: { type: 'boolean', default: false },
          actor: { type: 'string' },
        },
        allowPositionals: false,
        strict: true,
      });
    } catch (err) {
      throw new UsageError((err as Error).message.split('. ')[0]);
    }
    const v = parsed.values;
    if (v.config === undefined) throw new UsageError('migrate needs --config FILE');
    const config = loadConfig(v.config, env);
    const dir = v.dir ?? config.tenancy.migrationsDir;
    if (dir === undefined) throw new UsageError('no migrations folder: pass --dir DIR or set tenancy.migrationsDir');
    const tenants = v.tenants
      ?.split(',')
      .map((t) => t.trim())
      .filter((t) => t !== '');
    for (const id of tenants ?? []) tenantNames(config, id);
    if (v.tenants !== undefined && tenants!.length === 0)
      throw new UsageError('--tenants needs at least one tenant id');
    const options = {
      actor: v.actor ?? defaultActor(),
      ...(tenants !== undefined && { tenants }),
      ...(v.canary !== undefined && { canary: positiveInt('--canary', v.canary, 1) }),
      concurrency: positiveInt('--concurrency', v.concurrency, 4),
      dryRun: v['dry-run'] === true,
      stopOnError: v['stop-on-error'] === true,
      lockTimeout: parseTimeout('--lock-timeout', v['lock-timeout']),
      statementTimeout: parseTimeout('--statement-timeout', v['statement-timeout']),
    };
    // The folder is read and every file rewritten before anything connects: a refused file stops the run untouched.
    const items = await prepareFolder(config, dir).catch((err: unknown) => {
      if (err instanceof MigrationError) throw new MigrateRunError('migrations', err.message, { cause: err });
      if ((err as NodeJS.ErrnoException).code === 'ENOENT')
        throw new MigrateRunError(
          'migrations',
          `cannot read the migrations folder "${dir}": ${(err as Error).message}`,
        );
      throw err;
    });
    audit = new LifecycleAudit(config);
    db = await connectAdmin(config);
    await ensureRegistry(db, config.tenancy.registry.schema, proxyRoleOf(config));
    const json = v.json === true;
    const progress = json ? undefined : createProgress(out.stdout);
    let report: MigrateReport;
    const store = new RegistryStore(config.tenancy.registry.schema);
    try {
      report = await runMigrations(config, items, db, options, progress);
    } catch (err) {
      if (err instanceof MigrateRunError) {
        const event: LifecycleEvent = {
          actor: options.actor,
          verb: 'migrate',
          tenant: null,
          outcome: 'error',
          details: { error: err.message, code: err.code, dir },
        };
        await store.recordEvent(db, event).catch(() => undefined);
        audit.write(event);
      }
      throw err;
    }
    const event: LifecycleEvent = {
      actor: options.actor,
      verb: report.dryRun ? 'migrate_dry_run' : 'migrate',
      tenant: null,
      outcome: report.failed.length > 0 ? 'error' : report.succeeded.length === 0 ? 'noop' : 'ok',
      details: {
        dir,
        migrations: report.migrations.length,
        selected: report.selected,
        succeeded: report.succeeded.length,
        failed: report.failed.map((f) => ({ tenant: f.tenant, migration: f.migration, sqlstate: f.sqlstate })),
        skipped: report.skipped.length,
        upToDate: report.upToDate.length,
        ...(options.canary !== undefined && { canary: options.canary }),
        ...(tenants !== undefined && { tenants }),
        durationMs: report.durationMs,
      },
    };
    await store.recordEvent(db, event);
    audit.write(event);
    if (v.report !== undefined) writeFileSync(v.report, `${JSON.stringify(report, null, 2)}\n`);
    out.stdout.write(json ? `${JSON.stringify(report, null, 2)}\n` : renderSummary(report));
    if (report.failed.length > 0) {
      out.stderr(
        `pg-tenant-proxy migrate: ${report.failed.length} of ${report.selected} tenants failed (see the report)\n`,
      );
      return 1;
    }
    return 0;
  } catch (err) {
    return reportError(err, out);
  } finally {
    audit?.close();
    await db?.end().catch(() => undefined);
  }
}

async function connectAdmin(config: Config): Promise<pg.Client> {
  const db = new pg.Client({ ...adminClientConfig(config), application_name: 'pg-tenant-proxy migrate' });
  db.on('error', () => undefined);
  try {
    await db.connect();
  } catch (err) {
    throw new TenantError(
      'unreachable',
      `cannot connect to the database (admin.url): ${(err as Error).message}`,
      undefined,
      { cause: err },
    );
  }
  return db;
}

function reportError(err: unknown, out: MigrateCliOutput): number {
  const message = ((err as Error).message ?? String(err)).split('\n')[0]!;
  if (err instanceof UsageError) {
    out.stderr(`pg-tenant-proxy migrate: ${message} (see pg-tenant-proxy migrate --help)\n`);
    return 2;
  }
  if (err instanceof ConfigError) {
    out.stderr(`pg-tenant-proxy migrate: invalid configuration: ${message}\n`);
    return 2;
  }
  if (err instanceof TenantError) {
    out.stderr(`pg-tenant-proxy migrate: ${message}\n`);
    return err.exitStatus;
  }
  if (err instanceof RegistryTooNewError || err instanceof MigrateRunError) {
    out.stderr(`pg-tenant-proxy migrate: ${message}\n`);
    return 1;
  }
  out.stderr(`pg-tenant-proxy migrate: ${message}\n`);
  return 1;
}
