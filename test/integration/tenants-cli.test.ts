// `pg-tenant-proxy tenants …` as users run it (the compiled CLI, a process of its own) and the library it wraps:
// results, errors and exit statuses, the audit record, idempotent and atomic create, many tenants.
import { execFile, spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { stringify } from 'yaml';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { validateConfig } from '../../src/config/load.js';
import { TenantAdmin } from '../../src/tenants/lifecycle.js';
import { REGISTRY_VERSION } from '../../src/tenants/registry-schema.js';
import { buildDist, DIST_CLI } from '../support/build.js';
import { TEST_SECRET } from '../support/proxy.js';
import { createRegistryDatabase, type RegistryDatabase } from '../support/registry.js';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
let rdb: RegistryDatabase;
let dir: string;
let auditFile: string;

beforeAll(async () => {
  await buildDist();
  rdb = await createRegistryDatabase('pgtp_tenants_cli');
  dir = mkdtempSync(join(os.tmpdir(), 'pgtp-tenants-'));
  auditFile = join(dir, 'audit.log');
}, 120_000);

afterAll(async () => {
  await rdb?.drop(['tenant_cli_']);
});

function baseConfig(extra: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    upstream: { url: rdb.upstreamUrl },
    auth: { jwt: { secret: TEST_SECRET } },
    tenancy: { roles: true },
    admin: { url: rdb.adminUrl },
    audit: { file: auditFile },
    ...extra,
  };
}

function writeConfig(name: string, config: Record<string, unknown> = baseConfig()): string {
  const file = join(dir, name);
  writeFileSync(file, stringify(config));
  return file;
}

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

function cli(args: string[], env: NodeJS.ProcessEnv = {}): Promise<Run> {
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      [DIST_CLI, 'tenants', ...args],
      { env: { ...process.env, ...env } },
      (err, stdout, stderr) => {
        resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stdout, stderr });
      },
    );
  });
}

/** A successful run: its stdout, and nothing at all on stderr. */
async function ok(args: string[]): Promise<string> {
  const r = await cli(args);
  expect({ args, code: r.code, stderr: r.stderr }).toEqual({ args, code: 0, stderr: '' });
  return r.stdout;
}

/** A failed run: exit status and one line on stderr, nothing on stdout. */
async function fails(args: string[], code: 1 | 2, message: string | RegExp, env?: NodeJS.ProcessEnv): Promise<void> {
  const r = await cli(args, env);
  expect({ args, code: r.code, stdout: r.stdout }).toEqual({ args, code, stdout: '' });
  expect(r.stderr.endsWith('\n')).toBe(true);
  expect(r.stderr.trimEnd().split('\n')).toHaveLength(1);
  expect(r.stderr).toMatch(message);
}

async function query<T = Record<string, unknown>>(sql: string, values?: unknown[]): Promise<T[]> {
  const client = await rdb.connect();
  try {
    return (await client.query(sql, values)).rows as T[];
  } finally {
    await client.end();
  }
}

/** What of tenant `id` exists in the database: schema, role, registry row. */
async function leftovers(id: string): Promise<{ schema: boolean; role: boolean; record: boolean }> {
  const [row] = await query<{ schema: boolean; role: boolean; record: boolean }>(
    `SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1) AS schema,
            EXISTS (SELECT 1 FROM pg_roles WHERE rolname = $1) AS role,
            EXISTS (SELECT 1 FROM pgtp.tenants WHERE id = $2) AS record`,
    [`tenant_${id}`, id],
  );
  return row!;
}

function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const server = net.createServer().listen(0, '127.0.0.1', () => {
      const { port } = server.address() as net.AddressInfo;
      server.close(() => resolve(port));
    });
  });
}

describe('pg-tenant-proxy tenants', () => {
  it('create, update, list, show, suspend, resume: a one-line result (or JSON), nothing on stderr, each an event in the registry and in audit.file', async () => {
    const config = writeConfig('main.yaml');
    const as = ['--config', config, '--actor', 'alice'];
    expect(await ok(['create', 'cli_a', '--tier', 'pro', '--canary', ...as])).toBe(
      'created tenant cli_a (schema tenant_cli_a, role tenant_cli_a, tier pro, canary)\n',
    );
    expect(await ok(['create', 'cli_a', ...as])).toBe('tenant cli_a already exists (status active); nothing changed\n');
    expect(await ok(['update', 'cli_a', '--tier', 'enterprise', '--canary', 'false', '--issuer', 'okta', ...as])).toBe(
      'updated tenant cli_a: tier pro → enterprise, canary true → false, issuer - → okta\n',
    );
    expect(await ok(['update', 'cli_a', '--tier', 'enterprise', ...as])).toBe('tenant cli_a unchanged\n');

    await query('CREATE TABLE tenant_cli_a.orders (id int PRIMARY KEY, note text)');
    await query("INSERT INTO tenant_cli_a.orders SELECT g, repeat('x', 100) FROM generate_series(1, 500) g");
    const shown = await ok(['show', 'cli_a', ...as]);
    expect(shown).toMatch(/^tenant\s+cli_a$/m);
    expect(shown).toMatch(/^status\s+active$/m);
    expect(shown).toMatch(/^tier\s+enterprise$/m);
    expect(shown).toMatch(/^tables\s+1$/m);
    expect(shown).toMatch(
      /^clients\s+unknown \(no admin view to ask: metrics.enabled and metrics.adminToken are not both set\)$/m,
    );
    const details = JSON.parse(await ok(['show', 'cli_a', '--json', ...as])) as {
      sizeBytes: number;
      tables: number;
      role: string;
    };
    expect(details).toMatchObject({ tables: 1, role: 'tenant_cli_a' });
    expect(details.sizeBytes).toBeGreaterThan(60_000);

    expect(await ok(['suspend', 'cli_a', '--reason', 'unpaid invoice', ...as])).toBe(
      'suspended tenant cli_a: unpaid invoice\n',
    );
    expect(await ok(['suspend', 'cli_a', '--reason', 'unpaid invoice', ...as])).toBe(
      'tenant cli_a is already suspended: unpaid invoice\n',
    );
    const listed = await ok(['list', '--status', 'suspended', ...as]);
    expect(listed.split('\n')[0]).toMatch(/^id\s+status\s+tier\s+canary\s+issuer\s+schema\s+created$/);
    expect(listed).toMatch(/^cli_a\s+suspended\s+enterprise\s+no\s+okta\s+tenant_cli_a\s+\d{4}-/m);
    expect(await ok(['list', '--status', 'deleted', ...as])).toMatch(/\(none\)\n$/);
    expect(JSON.parse(await ok(['resume', 'cli_a', '--json', ...as]))).toMatchObject({
      outcome: 'resumed',
      tenant: { id: 'cli_a', status: 'active', suspendedReason: null },
    });
    expect(await ok(['resume', 'cli_a', ...as])).toBe('tenant cli_a is already active\n');
    const all = JSON.parse(await ok(['list', '--json', ...as])) as Array<{
      id: string;
      status: string;
      tier: string;
      issuer: string;
    }>;
    expect(all.find((t) => t.id === 'cli_a')).toMatchObject({ status: 'active', tier: 'enterprise', issuer: 'okta' });
    // Without --actor the OS user acts.
    await ok(['show', 'cli_a', '--config', config]);

    const verbs = [
      'create',
      'create',
      'update',
      'update',
      'show',
      'show',
      'suspend',
      'suspend',
      'list',
      'list',
      'resume',
      'resume',
      'list',
      'show',
    ];
    const outcomes = ['ok', 'noop', 'ok', 'noop', 'ok', 'ok', 'ok', 'noop', 'ok', 'ok', 'ok', 'noop', 'ok', 'ok'];
    const events = await query<{ verb: string; actor: string; outcome: string; tenant_id: string | null }>(
      "SELECT verb, actor, outcome, tenant_id FROM pgtp.events WHERE tenant_id = 'cli_a' OR verb = 'list' ORDER BY id",
    );
    expect(events.map((e) => e.verb)).toEqual(verbs);
    expect(events.map((e) => e.outcome)).toEqual(outcomes);
    expect(events.map((e) => e.actor)).toEqual([...verbs.slice(1).map(() => 'alice'), os.userInfo().username]);
    const lines = readFileSync(auditFile, 'utf8')
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as Record<string, unknown>);
    const audited = lines.filter((l) => l['tenant'] === 'cli_a' || l['verb'] === 'list');
    expect(audited.map((l) => l['verb'])).toEqual(verbs);
    expect(audited[0]).toMatchObject({
      log: 'audit',
      event: 'tenant_lifecycle',
      verb: 'create',
      tenant: 'cli_a',
      actor: 'alice',
      outcome: 'ok',
    });
    expect(audited[6]).toMatchObject({ verb: 'suspend', details: { reason: 'unpaid invoice' } });
    // The first verb created the registry, and said so.
    expect(lines[0]).toMatchObject({
      verb: 'registry_upgrade',
      details: { from: 0, to: REGISTRY_VERSION, schema: 'pgtp' },
    });
  });

  it('usage and configuration errors exit 2 with one line naming the problem', async () => {
    const config = writeConfig('usage.yaml');
    await fails(
      ['create', 'cli_u', '--frobnicate', '--config', config],
      2,
      /unknown option --frobnicate for tenants create/,
    );
    await fails(['rename', 'cli_u', '--config', config], 2, /unknown verb "rename"/);
    await fails(['create', '--config', config], 2, /tenants create needs a tenant id/);
    await fails(['list', 'cli_u', '--config', config], 2, /takes no tenant id/);
    await fails(['create', 'Bad-Id', '--config', config], 2, /tenant id "Bad-Id" does not match tenancy.tenantPattern/);
    await fails(['suspend', 'cli_u', '--config', config], 2, /needs --reason/);
    await fails(['suspend', 'cli_u', '--reason', ' ', '--config', config], 2, /needs a reason/);
    await fails(['update', 'cli_u', '--canary', 'yes', '--config', config], 2, /--canary takes true or false/);
    await fails(['list', '--status', 'sleeping', '--config', config], 2, /unknown status "sleeping"/);
    await fails(['show', 'cli_u'], 2, /needs --config FILE/);
    await fails(
      ['show', 'cli_u', '--config', join(dir, 'missing.yaml')],
      2,
      /invalid configuration: cannot read config file/,
    );
    const noAdmin = writeConfig('no-admin.yaml', { ...baseConfig(), admin: undefined });
    await fails(['list', '--config', noAdmin], 2, /admin.url is not set/);
    await fails(
      ['list', '--config', config],
      2,
      /invalid configuration: admin.url: must not log in as the proxy's login role/,
      { PGTP_ADMIN_URL: rdb.upstreamUrl },
    );
    const help = await cli(['--help']);
    expect(help).toMatchObject({ code: 0, stderr: '' });
    expect(help.stdout).toContain('suspend ID --reason TEXT');
    expect((await cli([])).code).toBe(2);
    // Nothing of a refused command reached the database.
    expect(await leftovers('cli_u')).toEqual({ schema: false, role: false, record: false });
  });

  it('runtime failures exit 1 with one line: unknown tenant, wrong status, database unreachable', async () => {
    const config = writeConfig('runtime.yaml');
    for (const args of [
      ['show', 'cli_nobody'],
      ['suspend', 'cli_nobody', '--reason', 'x'],
      ['resume', 'cli_nobody'],
      ['update', 'cli_nobody', '--tier', 't'],
    ]) {
      await fails([...args, '--config', config], 1, /tenant "cli_nobody" is not registered/);
    }
    await ok(['create', 'cli_gone', '--config', config]);
    await query("UPDATE pgtp.tenants SET status = 'deleting' WHERE id = 'cli_gone'");
    await fails(['suspend', 'cli_gone', '--reason', 'x', '--config', config], 1, /tenant "cli_gone" is being deleted/);
    // (resume cancels a scheduled deletion: tenants-delete.test.ts)
    await fails(['create', 'cli_gone', '--config', config], 1, /tenant "cli_gone" is being deleted/);
    const [failed] = await query(
      "SELECT outcome, details->>'code' AS code FROM pgtp.events WHERE tenant_id = 'cli_gone' AND verb = 'suspend'",
    );
    expect(failed).toEqual({ outcome: 'error', code: 'wrong_status' });

    const closed = new URL(rdb.adminUrl);
    closed.port = String(await freePort());
    await fails(
      ['list', '--config', config],
      1,
      /cannot connect to the database as postgres@127\.0\.0\.1:\d+\/pgtp_tenants_cli \(admin\.url\)/,
      { PGTP_ADMIN_URL: closed.toString() },
    );
    await fails(['list', '--config', config], 1, /password authentication failed/, {
      PGTP_ADMIN_PASSWORD: 'wrong-password',
    });
  });

  it('create is atomic: a failed step undoes everything create did, names the step, and a re-run succeeds', async () => {
    const config = writeConfig('atomic.yaml');
    // A pre-existing tenant role that is itself a member of another role (here the proxy's): every pin would lend
    // the tenant what that role may do, so it is never taken over.
    await query('CREATE ROLE tenant_cli_b NOLOGIN');
    await query(`GRANT ${rdb.proxyRole} TO tenant_cli_b`);
    await fails(
      ['create', 'cli_b', '--config', config],
      1,
      /create failed at step "role" \(nothing was left behind\): .*member of other roles/,
    );
    expect(await leftovers('cli_b')).toEqual({ schema: false, role: true, record: false });
    const [membership] = await query<{ n: number }>(
      'SELECT count(*)::int AS n FROM pg_auth_members WHERE roleid = $1::regrole AND member = $2::regrole',
      ['tenant_cli_b', rdb.proxyRole],
    );
    expect(membership!.n).toBe(0);
    const [event] = await query(
      "SELECT outcome, details->>'step' AS step FROM pgtp.events WHERE tenant_id = 'cli_b' AND verb = 'create'",
    );
    expect(event).toEqual({ outcome: 'error', step: 'role' });

    await query(`REVOKE ${rdb.proxyRole} FROM tenant_cli_b`);
    expect(await ok(['create', 'cli_b', '--config', config])).toBe(
      'created tenant cli_b (schema tenant_cli_b, role tenant_cli_b); existing role taken over\n',
    );
    expect(await leftovers('cli_b')).toEqual({ schema: true, role: true, record: true });

    // Nor one that reads everything through a predefined role.
    await query('CREATE ROLE tenant_cli_d NOLOGIN');
    await query('GRANT pg_read_all_data TO tenant_cli_d');
    await fails(['create', 'cli_d', '--config', config], 1, /create failed at step "role" .*member of other roles/);
    expect(await leftovers('cli_d')).toEqual({ schema: false, role: true, record: false });

    // A role that could log in is never taken over as a tenant role.
    await query('CREATE ROLE tenant_cli_c LOGIN');
    await fails(
      ['create', 'cli_c', '--config', config],
      1,
      /create failed at step "role" .*role "tenant_cli_c" exists and can log in/,
    );
    expect(await leftovers('cli_c')).toEqual({ schema: false, role: true, record: false });
  });

  it('create killed half-way leaves nothing behind, and running it again creates the tenant', async () => {
    const config = writeConfig('killed.yaml');
    const holder = await rdb.connect();
    let stuck: ReturnType<typeof spawn> | null = null;
    try {
      // The events row is create's last write: holding its table stops create after role, schema, grants and record.
      await holder.query('BEGIN');
      await holder.query('LOCK TABLE pgtp.events IN ACCESS EXCLUSIVE MODE');
      stuck = spawn(process.execPath, [DIST_CLI, 'tenants', 'create', 'cli_k', '--config', config], {
        stdio: 'ignore',
      });
      const waiting = async (): Promise<boolean> =>
        (
          await query<{ n: number }>(
            "SELECT count(*)::int AS n FROM pg_stat_activity WHERE application_name = 'pg-tenant-proxy tenants' AND wait_event_type = 'Lock'",
          )
        )[0]!.n === 1;
      for (let i = 0; i < 200 && !(await waiting()); i++) await new Promise((r) => setTimeout(r, 50));
      expect(await waiting()).toBe(true);
      stuck.kill('SIGKILL');
      await holder.query('ROLLBACK');
    } finally {
      stuck?.kill('SIGKILL');
      await holder.end();
    }
    // PostgreSQL notices the dead client once the lock is granted, and rolls its transaction back.
    for (let i = 0; i < 100; i++) {
      const [row] = await query<{ n: number }>(
        "SELECT count(*)::int AS n FROM pg_stat_activity WHERE application_name = 'pg-tenant-proxy tenants'",
      );
      if (row!.n === 0) break;
      await new Promise((r) => setTimeout(r, 50));
    }
    expect(await leftovers('cli_k')).toEqual({ schema: false, role: false, record: false });
    expect(await ok(['create', 'cli_k', '--config', config])).toBe(
      'created tenant cli_k (schema tenant_cli_k, role tenant_cli_k)\n',
    );
    expect(await leftovers('cli_k')).toEqual({ schema: true, role: true, record: true });
  });

  it('creates 200 tenants through one TenantAdmin, each with its role, schema and grants', async () => {
    const config = validateConfig({ ...baseConfig(), audit: { enabled: false } });
    const admin = await TenantAdmin.open(config, { actor: 'bulk' });
    const started = performance.now();
    try {
      for (let i = 0; i < 200; i++) {
        expect((await admin.create(`cli_n${String(i).padStart(3, '0')}`, { tier: 'free' })).outcome).toBe('created');
      }
    } finally {
      await admin.close();
    }
    const seconds = (performance.now() - started) / 1000;
    console.log(`[tenants] 200 creates in ${seconds.toFixed(1)} s`);
    const [counts] = await query<{ records: number; schemas: number; grants: number }>(
      `SELECT (SELECT count(*)::int FROM pgtp.tenants WHERE id LIKE 'cli\\_n%') AS records,
              (SELECT count(*)::int FROM pg_namespace WHERE nspname LIKE 'tenant\\_cli\\_n%' AND nspowner::regrole::text = nspname) AS schemas,
              (SELECT count(*)::int FROM pg_auth_members WHERE member = $1::regrole AND roleid::regrole::text LIKE 'tenant\\_cli\\_n%') AS grants`,
      [rdb.proxyRole],
    );
    expect(counts).toEqual({ records: 200, schemas: 200, grants: 200 });
  }, 300_000);

  it("is the library's API: import { createTenant } from 'pg-tenant-proxy'", async () => {
    const config = writeConfig('library.yaml');
    const script = `
      import { createTenant, loadConfig, showTenant, TenantError } from 'pg-tenant-proxy';
      const config = loadConfig(${JSON.stringify(config)});
      const created = await createTenant(config, 'cli_lib', { tier: 'pro', actor: 'onboarding-service' });
      const shown = await showTenant(config, 'cli_lib');
      let code = null;
      try { await createTenant(config, 'Not Valid'); } catch (err) { code = err instanceof TenantError ? err.code : String(err); }
      console.log(JSON.stringify({ outcome: created.outcome, status: shown.status, tier: shown.tier, code }));
    `;
    const out = await new Promise<string>((resolve, reject) => {
      execFile(process.execPath, ['--input-type=module', '-e', script], { cwd: ROOT }, (err, stdout, stderr) =>
        err ? reject(new Error(stderr)) : resolve(stdout),
      );
    });
    expect(JSON.parse(out)).toEqual({ outcome: 'created', status: 'active', tier: 'pro', code: 'invalid_id' });
    const [event] = await query("SELECT actor FROM pgtp.events WHERE tenant_id = 'cli_lib' AND verb = 'create'");
    expect(event).toEqual({ actor: 'onboarding-service' });
  });

  it("create --from-template copies a template schema's structure, without its rows, owned by the tenant role", async () => {
    const config = writeConfig('template.yaml');
    await query(`DROP SCHEMA IF EXISTS tenant_cli_template CASCADE`);
    await query(`CREATE SCHEMA tenant_cli_template`);
    await query(`SET search_path = tenant_cli_template;
      CREATE TYPE mood AS ENUM ('ok', 'meh');
      CREATE TABLE authors (id serial PRIMARY KEY, name text NOT NULL UNIQUE, mood mood DEFAULT 'ok');
      CREATE TABLE posts (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, author int REFERENCES authors (id),
                          title text CHECK (title <> ''));
      CREATE INDEX posts_by_author ON posts (author);
      CREATE VIEW titles AS SELECT title FROM posts;
      COMMENT ON TABLE posts IS 'blog posts';
      INSERT INTO authors (name) VALUES ('a'), ('b');
      INSERT INTO posts (author, title) VALUES (1, 'x')`);
    expect(await ok(['create', 'cli_tpl', '--from-template', 'tenant_cli_template', '--config', config])).toMatch(
      /^created tenant cli_tpl/,
    );
    const objects = await query<{ name: string; kind: string; owner: string }>(
      `SELECT c.relname AS name, c.relkind::text AS kind, pg_get_userbyid(c.relowner) AS owner FROM pg_class c
        WHERE c.relnamespace = 'tenant_cli_tpl'::regnamespace ORDER BY 1`,
    );
    expect(objects.map((o) => `${o.name}:${o.kind}`)).toEqual([
      'authors:r',
      'authors_id_seq:S',
      'authors_name_key:i',
      'authors_pkey:i',
      'posts:r',
      'posts_by_author:i',
      'posts_id_seq:S',
      'posts_pkey:i',
      'titles:v',
    ]);
    expect(new Set(objects.map((o) => o.owner))).toEqual(new Set(['tenant_cli_tpl']));
    // No rows; sequences from their start; the enum, defaults, constraints and comment are there.
    expect(await query(`SELECT count(*)::int AS n FROM tenant_cli_tpl.posts`)).toEqual([{ n: 0 }]);
    await query(`INSERT INTO tenant_cli_tpl.authors (name) VALUES ('first')`);
    expect(await query(`SELECT id, mood::text FROM tenant_cli_tpl.authors`)).toEqual([{ id: 1, mood: 'ok' }]);
    expect(await query(`SELECT obj_description('tenant_cli_tpl.posts'::regclass) AS c`)).toEqual([{ c: 'blog posts' }]);
    await expect(query(`INSERT INTO tenant_cli_tpl.posts (author, title) VALUES (99, 'y')`)).rejects.toMatchObject({
      code: '23503',
    });
    await fails(
      ['create', 'cli_tpl2', '--from-template', 'no_such_schema', '--config', config],
      1,
      /template schema "no_such_schema" does not exist/,
    );
    expect(await leftovers('cli_tpl2')).toEqual({ schema: false, role: false, record: false });
  });
});
