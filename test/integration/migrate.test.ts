// `pg-tenant-proxy migrate` as users run it (the compiled CLI): 200 tenants, canary then rest, a data-dependent failure
// in one tenant, a changed applied file refused, two runs at once, a no-transaction file, the drizzle-kit folder, and
// the progress output with and without a terminal.
import { execFile, spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import { join } from 'node:path';
import { stringify } from 'yaml';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { validateConfig } from '../../src/config/load.js';
import type { MigrateReport } from '../../src/migrations/runner.js';
import { TenantAdmin } from '../../src/tenants/lifecycle.js';
import { buildDist, DIST_CLI } from '../support/build.js';
import { TEST_SECRET } from '../support/proxy.js';
import { createRegistryDatabase, type RegistryDatabase } from '../support/registry.js';

const DRIZZLE_FIXTURE = new URL('../fixtures/drizzle/', import.meta.url).pathname;
const TENANTS = Array.from({ length: 200 }, (_, i) => `mg${String(i).padStart(3, '0')}`);
let rdb: RegistryDatabase;
let dir: string;
let migrations: string;
let configFile: string;
let auditFile: string;

interface Run {
  code: number;
  stdout: string;
  stderr: string;
  ms: number;
}

function cli(args: string[]): Promise<Run> {
  const t0 = Date.now();
  return new Promise((resolve) => {
    execFile(process.execPath, [DIST_CLI, ...args], { maxBuffer: 16 << 20 }, (err, stdout, stderr) => {
      resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stdout, stderr, ms: Date.now() - t0 });
    });
  });
}

function migrate(...args: string[]): Promise<Run> {
  return cli(['migrate', '--config', configFile, '--dir', migrations, '--actor', 'ci', ...args]);
}

async function query<T = Record<string, unknown>>(sql: string, values?: unknown[]): Promise<T[]> {
  const client = await rdb.connect();
  try {
    return (await client.query(sql, values)).rows as T[];
  } finally {
    await client.end();
  }
}

function writeMigration(name: string, sql: string): void {
  writeFileSync(join(migrations, name), sql);
}

async function appliedCount(migration: string): Promise<number> {
  const [row] = await query<{ n: number }>(
    'SELECT count(*)::int AS n FROM pgtp.tenant_migrations WHERE migration_id = $1',
    [migration],
  );
  return row!.n;
}

beforeAll(async () => {
  await buildDist();
  rdb = await createRegistryDatabase('pgtp_migrate');
  dir = mkdtempSync(join(os.tmpdir(), 'pgtp-migrate-'));
  migrations = join(dir, 'migrations');
  mkdirSync(migrations);
  auditFile = join(dir, 'audit.log');
  const raw = {
    upstream: { url: rdb.upstreamUrl },
    auth: { jwt: { secret: TEST_SECRET } },
    tenancy: { roles: true },
    admin: { url: rdb.adminUrl },
    audit: { file: auditFile },
  };
  configFile = join(dir, 'proxy.yaml');
  writeFileSync(configFile, stringify(raw));
  const admin = await TenantAdmin.open(validateConfig({ ...raw, audit: { enabled: false } }), { actor: 'setup' });
  try {
    for (const id of TENANTS) await admin.create(id, { canary: id === 'mg150' });
    await admin.suspend('mg199', 'unpaid');
  } finally {
    await admin.close();
  }
}, 300_000);

afterAll(async () => {
  await rdb?.drop(['tenant_mg']);
  if (dir !== undefined) rmSync(dir, { recursive: true, force: true });
});

describe('migrate', () => {
  it('--dry-run prints the plan and changes nothing; --canary takes the canary group first, then by id; then the rest', async () => {
    writeMigration(
      '0001_items.sql',
      'CREATE TABLE items (id int PRIMARY KEY, qty int NOT NULL);\nINSERT INTO items VALUES (1, 5);\n',
    );
    const dry = await migrate('--canary', '2', '--dry-run');
    expect(dry.code).toBe(0);
    expect(dry.stdout).toContain('would apply to tenant mg150: 0001_items');
    expect(dry.stdout).toContain('would apply to tenant mg000: 0001_items');
    expect(await appliedCount('0001_items')).toBe(0);

    const canary = await migrate('--canary', '2');
    expect({ code: canary.code, stderr: canary.stderr }).toEqual({ code: 0, stderr: '' });
    const rows = await query<{ tenant_id: string; applied_by: string }>(
      'SELECT tenant_id, applied_by FROM pgtp.tenant_migrations ORDER BY 1',
    );
    expect(rows).toEqual([
      { tenant_id: 'mg000', applied_by: 'ci' },
      { tenant_id: 'mg150', applied_by: 'ci' },
    ]);

    const rest = await migrate('--concurrency', '4');
    expect({ code: rest.code, stderr: rest.stderr }).toEqual({ code: 0, stderr: '' });
    expect(rest.stdout).toMatch(/migrated 198 tenants .* 2 already up to date/);
    expect(await appliedCount('0001_items')).toBe(200);
    // Suspended tenants are migrated too; objects belong to the tenant role; the version column follows.
    const [owner] = await query<{ owner: string }>(
      `SELECT tableowner AS owner FROM pg_tables WHERE schemaname = 'tenant_mg199' AND tablename = 'items'`,
    );
    expect(owner).toEqual({ owner: 'tenant_mg199' });
    const versions = await query<{ v: string; n: number }>(
      'SELECT migration_version AS v, count(*)::int AS n FROM pgtp.tenants GROUP BY 1',
    );
    expect(versions).toEqual([{ v: '0001_items', n: 200 }]);
  }, 120_000);

  it('a data-dependent failure in one tenant fails only it; the rerun after fixing the data applies only the missing step', async () => {
    await query('INSERT INTO tenant_mg042.items VALUES (2, -1)');
    writeMigration(
      '0002_positive.sql',
      'ALTER TABLE items ADD CONSTRAINT qty_positive CHECK (qty > 0);\nALTER TABLE items ADD COLUMN note text;\n',
    );
    const reportFile = join(dir, 'report.json');
    const run = await migrate('--concurrency', '4', '--report', reportFile);
    console.log(
      `[migrate] 200 tenants × 1 migration, concurrency 4: ${(run.ms / 1000).toFixed(1)} s wall (CLI process)`,
    );
    expect(run.code).toBe(1);
    expect(run.stderr).toBe('pg-tenant-proxy migrate: 1 of 200 tenants failed (see the report)\n');
    expect(run.stdout).toMatch(
      /failed: tenant mg042: 0002_positive.sql statement 1: .*qty_positive.* \(SQLSTATE 23514\)/,
    );
    const report = JSON.parse(readFileSync(reportFile, 'utf8')) as MigrateReport;
    expect(report.failed).toEqual([
      expect.objectContaining({
        tenant: 'mg042',
        migration: '0002_positive',
        sqlstate: '23514',
        statement: 1,
        applied: [],
      }),
    ]);
    expect(report.succeeded).toHaveLength(199);
    expect(await appliedCount('0002_positive')).toBe(199);
    // Rolled back there: not even the constraint.
    const [c] = await query<{ n: number }>(
      `SELECT count(*)::int AS n FROM pg_constraint WHERE conname = 'qty_positive' AND connamespace = 'tenant_mg042'::regnamespace`,
    );
    expect(c!.n).toBe(0);

    await query('DELETE FROM tenant_mg042.items WHERE qty < 0');
    const rerun = await migrate('--json');
    expect(rerun.code).toBe(0);
    const again = JSON.parse(rerun.stdout) as MigrateReport;
    expect(again.succeeded).toEqual([expect.objectContaining({ tenant: 'mg042', applied: ['0002_positive'] })]);
    expect(again.upToDate).toHaveLength(199);

    const events = readFileSync(auditFile, 'utf8')
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as { verb: string; actor: string; outcome: string; details: { succeeded: number } });
    expect(events.filter((e) => e.verb === 'migrate').map((e) => [e.outcome, e.details.succeeded])).toEqual([
      ['ok', 2],
      ['ok', 198],
      ['error', 199],
      ['ok', 1],
    ]);
    const [db] = await query<{ n: number }>(
      `SELECT count(*)::int AS n FROM pgtp.events WHERE verb = 'migrate' AND actor = 'ci'`,
    );
    expect(db!.n).toBe(4);
  }, 120_000);

  it('refuses the whole run when an applied file changed, naming the file and the tenants', async () => {
    const original = readFileSync(join(migrations, '0001_items.sql'), 'utf8');
    writeMigration('0001_items.sql', `${original}-- edited\n`);
    writeMigration('0003_more.sql', 'ALTER TABLE items ADD COLUMN more int;\n');
    try {
      const run = await migrate();
      expect(run.code).toBe(1);
      expect(run.stdout).toBe('');
      expect(run.stderr).toMatch(
        /^pg-tenant-proxy migrate: refusing to run: .*0001_items\.sql \(applied with other text by 200 tenants: mg000, mg001/,
      );
      expect(await appliedCount('0003_more')).toBe(0);
    } finally {
      writeMigration('0001_items.sql', original);
      rmSync(join(migrations, '0003_more.sql'));
    }
  }, 60_000);

  it('a second run while one is running is refused at once and nothing interleaves', async () => {
    writeMigration('0003_slow.sql', 'SELECT pg_sleep(0.05);\nALTER TABLE items ADD COLUMN slow int;\n');
    let firstDone = false;
    const first = migrate('--concurrency', '1').finally(() => (firstDone = true));
    try {
      for (let i = 0; i < 200 && (await appliedCount('0003_slow')) === 0; i++)
        await new Promise((r) => setTimeout(r, 50));
      const second = await migrate('--concurrency', '4');
      expect(second.code).toBe(1);
      expect(second.stdout).toBe('');
      expect(second.stderr).toMatch(/^pg-tenant-proxy migrate: another migrate is running on this registry/);
      // Refused without waiting for the first (its time is the CLI's start-up on a busy machine).
      expect(firstDone).toBe(false);
      console.log(`[migrate] second run refused after ${second.ms} ms (process start included)`);
    } finally {
      await first;
    }
    const done = await first;
    expect(done.code).toBe(0);
    expect(await appliedCount('0003_slow')).toBe(200);
  }, 120_000);

  it('runs a no-transaction file statement by statement and records it as such', async () => {
    writeMigration('0004_index.sql', '-- pgtp:no-transaction\nCREATE INDEX CONCURRENTLY items_qty ON items (qty);\n');
    const run = await migrate('--tenants', 'mg001,mg002');
    expect({ code: run.code, stderr: run.stderr }).toEqual({ code: 0, stderr: '' });
    const rows = await query(
      'SELECT tenant_id, no_transaction FROM pgtp.tenant_migrations WHERE migration_id = $1 ORDER BY 1',
      ['0004_index'],
    );
    expect(rows).toEqual([
      { tenant_id: 'mg001', no_transaction: true },
      { tenant_id: 'mg002', no_transaction: true },
    ]);
    const idx = await query(`SELECT schemaname FROM pg_indexes WHERE indexname = 'items_qty' ORDER BY 1`);
    expect(idx).toEqual([{ schemaname: 'tenant_mg001' }, { schemaname: 'tenant_mg002' }]);
  }, 60_000);

  it('prints one line per tenant without a terminal and a redrawn progress line on one', async () => {
    writeMigration('0005_col.sql', 'ALTER TABLE items ADD COLUMN c5 int;\n');
    const plain = await migrate('--tenants', 'mg010,mg011');
    expect(plain.code).toBe(0);
    expect(plain.stdout).toMatch(
      /^ok {5}tenant mg01[01]: applied 0004_index, 0005_col \(\d+ ms\) \[1\/2\]\nok {5}tenant mg01[01]: applied 0004_index, 0005_col \(\d+ ms\) \[2\/2\]\nmigrated 2 tenants/,
    );
    expect(plain.stdout).not.toContain('\x1b');

    const command = [
      process.execPath,
      DIST_CLI,
      'migrate',
      '--config',
      configFile,
      '--dir',
      migrations,
      '--tenants',
      'mg012,mg013,mg014',
    ]
      .map((a) => `'${a}'`)
      .join(' ');
    const tty = await new Promise<Run>((resolve) => {
      const child = spawn('script', ['-qfec', command, '/dev/null'], { stdio: ['ignore', 'pipe', 'pipe'] });
      let stdout = '';
      child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
      child.on('close', (code) => resolve({ code: code ?? 1, stdout, stderr: '', ms: 0 }));
    });
    expect(tty.code).toBe(0);
    expect(tty.stdout).toContain('\r\x1b[2Kmigrate [');
    expect(tty.stdout).toMatch(/3\/3 tenants, 0 failed, [\d.]+\/s, ETA 0s/);
    expect(tty.stdout).not.toMatch(/^ok /m);
  }, 60_000);

  it('applies the drizzle-kit folder as generated, into each tenant schema', async () => {
    const run = await cli([
      'migrate',
      '--config',
      configFile,
      '--dir',
      DRIZZLE_FIXTURE,
      '--tenants',
      'mg020,mg021',
      '--json',
    ]);
    expect({ code: run.code, stderr: run.stderr }).toEqual({ code: 0, stderr: '' });
    const report = JSON.parse(run.stdout) as MigrateReport;
    expect(report.succeeded.map((s) => [s.tenant, s.applied])).toEqual([
      ['mg020', ['0000_init', '0001_add_published']],
      ['mg021', ['0000_init', '0001_add_published']],
    ]);
    const tables = await query(
      `SELECT schemaname, tablename, tableowner FROM pg_tables WHERE tablename IN ('users', 'posts') ORDER BY 1, 2`,
    );
    expect(tables).toEqual([
      { schemaname: 'tenant_mg020', tablename: 'posts', tableowner: 'tenant_mg020' },
      { schemaname: 'tenant_mg020', tablename: 'users', tableowner: 'tenant_mg020' },
      { schemaname: 'tenant_mg021', tablename: 'posts', tableowner: 'tenant_mg021' },
      { schemaname: 'tenant_mg021', tablename: 'users', tableowner: 'tenant_mg021' },
    ]);
  }, 60_000);

  it('--stop-on-error starts no tenant after the first failure', async () => {
    await query('INSERT INTO tenant_mg030.items VALUES (500, 1)');
    writeMigration('0006_small.sql', 'ALTER TABLE items ADD CONSTRAINT small_ids CHECK (id < 100);\n');
    try {
      const run = await migrate('--tenants', 'mg030,mg031,mg032', '--concurrency', '1', '--stop-on-error', '--json');
      expect(run.code).toBe(1);
      const report = JSON.parse(run.stdout) as MigrateReport;
      expect(report.failed.map((f) => [f.tenant, f.sqlstate])).toEqual([['mg030', '23514']]);
      expect(report.skipped.map((x) => x.tenant)).toEqual(['mg031', 'mg032']);
      expect(report.succeeded).toEqual([]);
      expect(await appliedCount('0006_small')).toBe(0);
    } finally {
      rmSync(join(migrations, '0006_small.sql'));
    }
  }, 60_000);

  it('usage errors exit 2 with one line; a refused file exits 1 before anything runs', async () => {
    const noDir = await cli(['migrate', '--config', configFile]);
    expect(noDir.code).toBe(2);
    expect(noDir.stderr).toBe(
      'pg-tenant-proxy migrate: no migrations folder: pass --dir DIR or set tenancy.migrationsDir (see pg-tenant-proxy migrate --help)\n',
    );
    const badCanary = await migrate('--canary', 'x');
    expect(badCanary.code).toBe(2);
    expect(badCanary.stderr).toMatch(/--canary takes a whole number/);
    const badId = await migrate('--tenants', 'Not-An-Id');
    expect(badId.code).toBe(2);
    const unknown = await migrate('--tenants', 'nosuch');
    expect({ code: unknown.code, stderr: unknown.stderr }).toEqual({
      code: 1,
      stderr: 'pg-tenant-proxy migrate: not registered (or being deleted): nosuch\n',
    });
    const other = join(dir, 'other-schema');
    mkdirSync(other);
    writeFileSync(join(other, '0001_x.sql'), 'CREATE TABLE tenant_mg001.stolen (a int);\n');
    const refused = await cli(['migrate', '--config', configFile, '--dir', other]);
    expect(refused.code).toBe(1);
    expect(refused.stderr).toMatch(/^pg-tenant-proxy migrate: migration 0001_x\.sql, statement 1 .*tenant_mg001/);
  }, 60_000);

  it('tenants create applies every migration: transactional files in its transaction, the no-transaction file after', async () => {
    const withDir = join(dir, 'with-dir.yaml');
    writeFileSync(
      withDir,
      readFileSync(configFile, 'utf8').replace('roles: true', `roles: true\n  migrationsDir: ${migrations}`),
    );
    const created = await cli(['tenants', 'create', 'mgnew', '--config', withDir]);
    expect({ code: created.code, stderr: created.stderr }).toEqual({ code: 0, stderr: '' });
    const rows = await query(
      `SELECT migration_id, no_transaction FROM pgtp.tenant_migrations WHERE tenant_id = 'mgnew' ORDER BY 1`,
    );
    expect(rows).toEqual([
      { migration_id: '0001_items', no_transaction: false },
      { migration_id: '0002_positive', no_transaction: false },
      { migration_id: '0003_slow', no_transaction: false },
      { migration_id: '0004_index', no_transaction: true },
      { migration_id: '0005_col', no_transaction: false },
    ]);
    expect(await query(`SELECT migration_version FROM pgtp.tenants WHERE id = 'mgnew'`)).toEqual([
      { migration_version: '0005_col' },
    ]);
    expect(await query(`SELECT tableowner FROM pg_tables WHERE schemaname = 'tenant_mgnew'`)).toEqual([
      { tableowner: 'tenant_mgnew' },
    ]);
    // A later migrate has nothing to do there.
    const run = await migrate('--tenants', 'mgnew', '--json');
    expect((JSON.parse(run.stdout) as MigrateReport).upToDate).toEqual(['mgnew']);

    // A no-transaction file failing after create committed: the tenant is dropped again.
    const bad = join(dir, 'bad');
    mkdirSync(bad);
    writeFileSync(join(bad, '0001_t.sql'), 'CREATE TABLE t (a int);\n');
    writeFileSync(join(bad, '0002_idx.sql'), '-- pgtp:no-transaction\nCREATE INDEX CONCURRENTLY t_b ON t (b);\n');
    const badConfig = join(dir, 'bad.yaml');
    writeFileSync(
      badConfig,
      readFileSync(configFile, 'utf8').replace('roles: true', `roles: true\n  migrationsDir: ${bad}`),
    );
    const failed = await cli(['tenants', 'create', 'mgbad', '--config', badConfig]);
    expect(failed.code).toBe(1);
    expect(failed.stderr).toMatch(
      /^pg-tenant-proxy tenants: create failed at step "migrations".*column "b" does not exist\n$/,
    );
    expect(await query(`SELECT 1 FROM pg_namespace WHERE nspname = 'tenant_mgbad'`)).toEqual([]);
    expect(await query(`SELECT 1 FROM pg_roles WHERE rolname = 'tenant_mgbad'`)).toEqual([]);
    expect(await query(`SELECT 1 FROM pgtp.tenants WHERE id = 'mgbad'`)).toEqual([]);
    expect(await query(`SELECT 1 FROM pgtp.tenant_migrations WHERE tenant_id = 'mgbad'`)).toEqual([]);
  }, 60_000);
});
