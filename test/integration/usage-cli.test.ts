// `pg-tenant-proxy tenants usage` as users run it (the compiled CLI): formats, filters, peaks across instances,
// --storage, and bad input refused with exit status 2 and a message naming the problem.
import { execFile } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { stringify } from 'yaml';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { validateConfig } from '../../src/config/load.js';
import { TenantAdmin } from '../../src/tenants/lifecycle.js';
import { buildDist, DIST_CLI } from '../support/build.js';
import { TEST_SECRET } from '../support/proxy.js';
import { createRegistryDatabase, type RegistryDatabase } from '../support/registry.js';

let rdb: RegistryDatabase;
let config: string;

const I1 = '00000000-0000-4000-8000-000000000001';
const I2 = '00000000-0000-4000-8000-000000000002';
const I3 = '00000000-0000-4000-8000-000000000003';

beforeAll(async () => {
  await buildDist();
  rdb = await createRegistryDatabase('pgtp_usage_cli');
  const dir = mkdtempSync(join(os.tmpdir(), 'pgtp-usage-'));
  const raw = {
    upstream: { url: rdb.upstreamUrl },
    auth: { jwt: { secret: TEST_SECRET } },
    tenancy: { registry: { enabled: true } },
    admin: { url: rdb.adminUrl },
    audit: { file: join(dir, 'audit.log') },
  };
  config = join(dir, 'proxy.yaml');
  writeFileSync(config, stringify(raw));
  const admin = await TenantAdmin.open(validateConfig(raw), { actor: 'usage-cli-test' });
  try {
    await admin.create('cli_x');
    await admin.create('cli_y');
  } finally {
    await admin.close();
  }
  const db = await rdb.connect();
  try {
    await db.query(
      'CREATE TABLE tenant_cli_x.filler AS SELECT g AS id, repeat($1, 100) AS pad FROM generate_series(1, 500) g',
      ['x'],
    );
  } finally {
    await db.end();
  }
  // Flushes as proxies send them: three instances, two hours of cli_x, one of cli_y.
  const proxyRole = new pg.Client({ connectionString: rdb.upstreamUrl });
  await proxyRole.connect();
  try {
    const flush = (
      instance: string,
      seq: number,
      hour: string,
      since: string,
      until: string,
      tenant: string,
      n: number[],
      peak: number,
    ): Promise<unknown> =>
      proxyRole.query(
        'SELECT pgtp.usage_flush($1, $2, $3, $4, $5, ARRAY[$6], ARRAY[$7::bigint], ARRAY[$8::bigint], ARRAY[$9::bigint], ARRAY[$10::bigint], ARRAY[$11::bigint], ARRAY[$12::bigint], ARRAY[$13::bigint], ARRAY[$14::int])',
        [instance, seq, hour, since, until, tenant, ...n, peak],
      );
    await flush(
      I1,
      1,
      '2026-11-30T23:00Z',
      '2026-11-30T23:00Z',
      '2026-11-30T23:10Z',
      'cli_x',
      [1, 2, 3, 4, 5, 6, 7],
      2,
    );
    await flush(
      I1,
      2,
      '2026-12-01T10:00Z',
      '2026-12-01T09:55Z',
      '2026-12-01T10:30Z',
      'cli_x',
      [10, 20, 30, 40, 50, 60, 70],
      3,
    );
    await flush(
      I2,
      1,
      '2026-12-01T10:00Z',
      '2026-12-01T10:20Z',
      '2026-12-01T10:50Z',
      'cli_x',
      [1, 1, 1, 1, 1, 1, 1],
      4,
    );
    await flush(
      I3,
      1,
      '2026-12-01T10:00Z',
      '2026-12-01T10:55Z',
      '2026-12-01T10:59Z',
      'cli_x',
      [0, 0, 0, 1, 1, 0, 0],
      5,
    );
    await flush(
      I1,
      3,
      '2026-12-02T00:00Z',
      '2026-12-02T00:00Z',
      '2026-12-02T00:05Z',
      'cli_y',
      [5, 6, 7, 8, 9, 10, 0],
      1,
    );
  } finally {
    await proxyRole.end();
  }
}, 120_000);

afterAll(async () => {
  await rdb?.drop();
});

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

function cli(args: string[]): Promise<Run> {
  return new Promise((resolve) => {
    execFile(process.execPath, [DIST_CLI, 'tenants', 'usage', ...args], (err, stdout, stderr) => {
      resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stdout, stderr });
    });
  });
}

async function ok(args: string[]): Promise<string> {
  const r = await cli(['--config', config, ...args]);
  expect({ args, code: r.code, stderr: r.stderr }).toEqual({ args, code: 0, stderr: '' });
  return r.stdout;
}

const X_2300 = {
  tenant: 'cli_x',
  hour: '2026-11-30T23:00:00.000Z',
  transactions: 1,
  statements: 2,
  server_ms: 3,
  bytes_in: 4,
  bytes_out: 5,
  rows: 13,
  peak_clients: 2,
  rows_returned: 6,
  rows_affected: 7,
};
// I1 and I2 served at the same time (3 + 4); I3 came after both had gone (5).
const X_1000 = {
  tenant: 'cli_x',
  hour: '2026-12-01T10:00:00.000Z',
  transactions: 11,
  statements: 21,
  server_ms: 31,
  bytes_in: 42,
  bytes_out: 52,
  rows: 132,
  peak_clients: 7,
  rows_returned: 61,
  rows_affected: 71,
};
const Y_0000 = {
  tenant: 'cli_y',
  hour: '2026-12-02T00:00:00.000Z',
  transactions: 5,
  statements: 6,
  server_ms: 7,
  bytes_in: 8,
  bytes_out: 9,
  rows: 10,
  peak_clients: 1,
  rows_returned: 10,
  rows_affected: 0,
};

// Each test starts the CLI a few times; a loaded machine (the full suite) takes seconds per start.
describe('pg-tenant-proxy tenants usage', { timeout: 120_000 }, () => {
  it('json: one object per tenant and hour, peaks combined across instances that overlapped', async () => {
    expect(JSON.parse(await ok(['--format', 'json']))).toEqual([X_2300, X_1000, Y_0000]);
    expect(JSON.parse(await ok(['--json', '--tenant', 'cli_y']))).toEqual([Y_0000]);
  });

  it('--since and --until select hours (until exclusive), as dates or times with a zone', async () => {
    expect(JSON.parse(await ok(['--json', '--since', '2026-12-01']))).toEqual([X_1000, Y_0000]);
    expect(JSON.parse(await ok(['--json', '--until', '2026-12-01T10:00Z']))).toEqual([X_2300]);
    expect(JSON.parse(await ok(['--json', '--since', '2026-12-01T11:00+01:00', '--until', '2026-12-02']))).toEqual([
      X_1000,
    ]);
    expect(JSON.parse(await ok(['--json', '--since', '2027-01-01']))).toEqual([]);
  });

  it('table and csv carry exactly the documented columns', async () => {
    const table = await ok(['--tenant', 'cli_x']);
    const lines = table.trimEnd().split('\n');
    expect(lines[0]!.split('|').map((c) => c.trim())).toEqual([
      'tenant',
      'hour',
      'transactions',
      'statements',
      'server_ms',
      'bytes_in',
      'bytes_out',
      'rows',
      'peak_clients',
    ]);
    expect(lines[3]!.split('|').map((c) => c.trim())).toEqual([
      'cli_x',
      '2026-12-01T10:00:00.000Z',
      '11',
      '21',
      '31',
      '42',
      '52',
      '132',
      '7',
    ]);
    expect(lines.at(-1)).toBe('(2 rows)');

    const csv = await ok(['--format', 'csv', '--until', '2026-12-01']);
    expect(csv).toBe(
      'tenant,hour,transactions,statements,server_ms,bytes_in,bytes_out,rows,peak_clients\r\n' +
        'cli_x,2026-11-30T23:00:00.000Z,1,2,3,4,5,13,2\r\n',
    );
  });

  it('--storage adds each tenant schema size, sampled now', async () => {
    const rows = JSON.parse(await ok(['--json', '--storage'])) as Array<{ tenant: string; storage_bytes: number }>;
    const db = await rdb.connect();
    try {
      const { rows: sizes } = await db.query<{ size: string }>(
        "SELECT sum(pg_total_relation_size(c.oid))::bigint AS size FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = 'tenant_cli_x' AND c.relkind IN ('r', 'm', 'S')",
      );
      const x = rows.filter((r) => r.tenant === 'cli_x').map((r) => r.storage_bytes);
      expect(x).toEqual([Number(sizes[0]!.size), Number(sizes[0]!.size)]);
      expect(x[0]).toBeGreaterThan(50_000);
      expect(rows.find((r) => r.tenant === 'cli_y')!.storage_bytes).toBe(0);
    } finally {
      await db.end();
    }
    const csvHeader = (await ok(['--format', 'csv', '--storage'])).split('\r\n')[0];
    expect(csvHeader).toBe(
      'tenant,hour,transactions,statements,server_ms,bytes_in,bytes_out,rows,peak_clients,storage_bytes',
    );
  });

  it('bad input: exit status 2, nothing on stdout, one line naming the problem', async () => {
    const cases: Array<[string[], RegExp]> = [
      [['--since', '2026-13-01'], /--since: invalid date "2026-13-01"/],
      [['--since', '2026-02-30'], /--since: invalid date "2026-02-30"/],
      [['--until', 'yesterday'], /--until: invalid date "yesterday"/],
      [['--since', '2026-12-01T25:00Z'], /--since: invalid date/],
      [['--since', '2026-12-02', '--until', '2026-12-01'], /--since \(2026-12-02\) must be before --until/],
      [['--format', 'xml'], /--format takes table, csv, json \(got "xml"\)/],
      [['--tenant', 'Not A Tenant'], /tenant id "Not A Tenant" does not match tenancy.tenantPattern/],
      [['--bogus'], /unknown option --bogus for tenants usage/],
      [['cli_x'], /takes no arguments/],
    ];
    // Each run is a process of its own: in parallel, or a loaded machine spends the timeout starting them.
    const runs = await Promise.all(cases.map(([args]) => cli(['--config', config, ...args])));
    cases.forEach(([args, message], i) => {
      const r = runs[i]!;
      expect({ args, code: r.code, stdout: r.stdout }).toEqual({ args, code: 2, stdout: '' });
      expect(r.stderr.trimEnd().split('\n')).toHaveLength(1);
      expect(r.stderr).toMatch(message);
    });
    const noConfig = await cli(['--json']);
    expect(noConfig.code).toBe(2);
    expect(noConfig.stderr).toMatch(/needs --config FILE/);
  });
});
