// `pg-tenant-proxy migrate`: argv → the migrations runner over every selected tenant → progress, summary, report, audit.
import { writeFileSync } from 'node:fs';
import { loadConfig } from '../config/load.js';
import { MigrationError } from '../migrations/migration-error.js';
import { createProgress, renderSummary, type ProgressStream } from '../migrations/report.js';
import { MigrateRunError, prepareFolder, runMigrations, type MigrateReport } from '../migrations/runner.js';
import { defaultActor } from '../tenants/actor.js';
import type { LifecycleEvent } from '../tenants/registry-store.js';
import {
  COMMON_FLAGS,
  parseFlags,
  parseTimeout,
  positiveInt,
  runAdminCommand,
  tenantList,
  UsageError,
} from './admin-command.js';

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

/** Runs `migrate …` and returns the exit status. */
export async function runMigrate(
  argv: string[],
  out: MigrateCliOutput = processOutput,
  env: NodeJS.ProcessEnv = process.env,
): Promise<number> {
  return runAdminCommand(
    { command: 'migrate', argv, printUsage: () => out.stdout.write(MIGRATE_USAGE), stderr: out.stderr },
    async (open) => {
      const parsed = parseFlags({
        args: argv,
        options: {
          ...COMMON_FLAGS,
          dir: { type: 'string' },
          tenants: { type: 'string' },
          canary: { type: 'string' },
          concurrency: { type: 'string' },
          'dry-run': { type: 'boolean', default: false },
          'stop-on-error': { type: 'boolean', default: false },
          'lock-timeout': { type: 'string', default: '5s' },
          'statement-timeout': { type: 'string', default: '10min' },
          report: { type: 'string' },
        },
        allowPositionals: false,
        strict: true,
      });
      const v = parsed.values;
      if (v.config === undefined) throw new UsageError('migrate needs --config FILE');
      const config = loadConfig(v.config, env);
      const dir = v.dir ?? config.tenancy.migrationsDir;
      if (dir === undefined) throw new UsageError('no migrations folder: pass --dir DIR or set tenancy.migrationsDir');
      const tenants = tenantList(config, v.tenants);
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
      const session = await open(config);
      const json = v.json === true;
      const progress = json ? undefined : createProgress(out.stdout);
      let report: MigrateReport;
      try {
        report = await runMigrations(config, items, session.db, options, progress);
      } catch (err) {
        if (err instanceof MigrateRunError) {
          const event: LifecycleEvent = {
            actor: options.actor,
            verb: 'migrate',
            tenant: null,
            outcome: 'error',
            details: { error: err.message, code: err.code, dir },
          };
          await session.record(event, true);
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
      await session.record(event);
      if (v.report !== undefined) writeFileSync(v.report, `${JSON.stringify(report, null, 2)}\n`);
      out.stdout.write(json ? `${JSON.stringify(report, null, 2)}\n` : renderSummary(report));
      if (report.failed.length > 0) {
        out.stderr(
          `pg-tenant-proxy migrate: ${report.failed.length} of ${report.selected} tenants failed (see the report)\n`,
        );
        return 1;
      }
      return 0;
    },
  );
}
