// `pg-tenant-proxy tenants query` as users run it: 50 tenants with one failing, the guard refusing another tenant's
// table, READ ONLY, one statement only, the three formats, and the audit event.
import { execFile } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import { join } from 'node:path';
import { stringify } from 'yaml';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { validateConfig } from '../../src/config/load.js';
import { csvField } from '../../src/tenants/query.js';
import { TenantAdmin } from '../../src/tenants/lifecycle.js';
import { buildDist, DIST_CLI } from '../support/build.js';
import { TEST_SECRET } from '../support/proxy.js';
import { createRegistryDatabase, type RegistryDatabase } from '../support/registry.js';

const TENANTS = Array.from({ length: 50 }, (_, i) => `qa${String(i).padStart(2, '0')}`);
let rdb: RegistryDatabase;
let dir: string;
let configFile: string;
let auditFile: string;

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

function cli(args: string[]): Promise<Run> {
  return new Promise((resolve) => {
    execFile(process.execPath, [DIST_CLI, ...args], { maxBuffer: 16 << 20 }, (err, stdout, stderr) => {
      resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stdout, stderr });
    });
  });
}

function tq(...args: string[]): Promise<Run> {
  return cli(['tenants', 'query', '--config', configFile, '--actor', 'auditor', ...args]);
}

beforeAll(async () => {
  await buildDist();
  rdb = await createRegistryDatabase('pgtp_tenants_query');
  dir = mkdtempSync(join(os.tmpdir(), 'pgtp-query-'));
  auditFile = join(dir, 'audit.log');
  const migrations = join(dir, 'migrations');
  mkdirSync(migrations);
  writeFileSync(
    join(migrations, '0001_items.sql'),
    "CREATE TABLE items (id int PRIMARY KEY, name text);\nINSERT INTO items VALUES (1, 'x');\n",
  );
  const raw = {
    upstream: { url: rdb.upstreamUrl },
    auth: { jwt: { secret: TEST_SECRET } },
    tenancy: { roles: true, migrationsDir: migrations },
    admin: { url: rdb.adminUrl },
    audit: { file: auditFile },
  };
  configFile = join(dir, 'proxy.yaml');
  writeFileSync(configFile, stringify(raw));
  const admin = await TenantAdmin.open(validateConfig({ ...raw, audit: { enabled: false } }), { actor: 'setup' });
  try {
    for (const id of TENANTS) await admin.create(id);
  } finally {
    await admin.close();
  }
  const m = await cli(['migrate', '--config', configFile, '--concurrency', '4']);
  expect(m.code).toBe(0);
  const db = await rdb.connect();
  try {
    await db.query(`INSERT INTO tenant_qa00.items VALUES (2, 'a,b'), (3, 'say "hi"'), (4, NULL)`);
    await db.query('DROP TABLE tenant_qa13.items');
  } finally {
    await db.end();
  }
}, 180_000);

afterAll(async () => {
  await rdb?.drop(['tenant_qa']);
  if (dir !== undefined) rmSync(dir, { recursive: true, force: true });
});

describe('tenants query', () => {
  it('runs in all 50 tenants; the failing one is reported on stderr with its tenant and the others answer', async () => {
    const r = await tq('SELECT id, name FROM items WHERE id = 1', '--all', '--format', 'json');
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(
      /^pg-tenant-proxy tenants query: tenant qa13: relation "items" does not exist \(SQLSTATE 42P01\)\n$/,
    );
    const rows = JSON.parse(r.stdout) as Array<{ tenant: string; id: number; name: string }>;
    expect(rows).toHaveLength(49);
    expect(rows[0]).toEqual({ tenant: 'qa00', id: 1, name: 'x' });
    expect(rows.map((row) => row.tenant)).not.toContain('qa13');

    const events = readFileSync(auditFile, 'utf8')
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as { verb: string; actor: string; details: Record<string, unknown> });
    const event = events.filter((e) => e.verb === 'query').at(-1)!;
    expect(event.actor).toBe('auditor');
    expect(event.details['statement']).toBe('SELECT id, name FROM items WHERE id = 1');
    expect(event.details['tenants']).toHaveLength(50);
    expect((event.details['rows'] as Record<string, number>)['qa00']).toBe(1);
    expect(event.details['failed']).toEqual([{ tenant: 'qa13', sqlstate: '42P01', refused: false }]);
  }, 60_000);

  it("refuses another tenant's table through the guard, as for tenant traffic; writes and second statements fail", async () => {
    const cross = await tq('SELECT * FROM tenant_qa01.items', '--tenants', 'qa00');
    expect(cross.code).toBe(1);
    expect(cross.stderr).toMatch(
      /^pg-tenant-proxy tenants query: tenant qa00: refused: .*tenant_qa01.* \(SQLSTATE 42501\)\n$/,
    );
    expect(cross.stdout).toBe('tenant\n------\n(0 rows)\n');

    const write = await tq('DELETE FROM items', '--tenants', 'qa01');
    expect(write.code).toBe(1);
    expect(write.stderr).toMatch(/tenant qa01: .*read-only transaction \(SQLSTATE 25006\)/);
    const two = await tq('SELECT 1; DELETE FROM items', '--tenants', 'qa01');
    expect(two.code).toBe(1);
    expect(two.stderr).toMatch(/tenant qa01: .*\(SQLSTATE 42601\)/);
    const db = await rdb.connect();
    try {
      expect((await db.query('SELECT count(*)::int AS n FROM tenant_qa01.items')).rows).toEqual([{ n: 1 }]);
    } finally {
      await db.end();
    }
  }, 60_000);

  it('prints csv (RFC 4180), json and an aligned table', async () => {
    const csv = await tq('SELECT id, name FROM items ORDER BY id', '--tenants', 'qa00,qa02', '--format', 'csv');
    expect({ code: csv.code, stderr: csv.stderr }).toEqual({ code: 0, stderr: '' });
    expect(csv.stdout).toBe(
      'tenant,id,name\r\nqa00,1,x\r\nqa00,2,"a,b"\r\nqa00,3,"say ""hi"""\r\nqa00,4,\r\nqa02,1,x\r\n',
    );
    expect(csvField('line\nbreak')).toBe('"line\nbreak"');

    const json = await tq(
      'SELECT id, name FROM items WHERE id > 2 ORDER BY id',
      '--tenants',
      'qa00',
      '--format',
      'json',
    );
    expect(JSON.parse(json.stdout)).toEqual([
      { tenant: 'qa00', id: 3, name: 'say "hi"' },
      { tenant: 'qa00', id: 4, name: null },
    ]);

    const table = await tq('SELECT id, name FROM items WHERE id < 3 ORDER BY id', '--tenants', 'qa00,qa02');
    expect(table.stdout).toBe(
      [
        'tenant | id | name',
        '-------+----+-----',
        'qa00   | 1  | x',
        'qa00   | 2  | a,b',
        'qa02   | 1  | x',
        '(3 rows)',
        '',
      ].join('\n'),
    );
  }, 60_000);

  it('usage errors exit 2', async () => {
    const r = await tq('SELECT 1');
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/needs either --tenants a,b or --all/);
  });
});
