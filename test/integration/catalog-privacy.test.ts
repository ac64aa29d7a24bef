// Catalog privacy (issue 17): as tenant cata, nothing of any other tenant shows in any catalog surface, in both modes,
// while cata's own objects show exactly as PostgreSQL shows them to cata's owner; introspecting tools keep working.
//
// Two tenants of their own (cata, catb) are provisioned in each fixture database, with one object of every kind and
// names that make a leak greppable: whatever tenant cata reads must not contain "catb" nor any other tenant's schema
// or role name (tenant_<anything but cata>).

import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import pg from 'pg';
import postgres from 'postgres';
import { afterAll, afterEach, beforeAll, describe, expect, inject, it } from 'vitest';
import { FILTERED_RELATIONS, INFORMATION_SCHEMA_RELATIONS, WRAPPED_FUNCTIONS } from '../../src/catalog/surfaces.js';
import { createTenantSchema, provisionTenant } from '../../src/tenants/provision.js';
import { withDatabase } from '../support/postgres.js';
import { sqlstateOf, startTestProxy, type TestProxy } from '../support/proxy.js';
import { ISOLATION_MODES, jdbcJar, type IsolationMode } from '../support/modes.js';

const run = promisify(execFile);

/** Any other tenant's names: catb's objects, and every tenant schema or role but cata's own. */
const LEAK = /catb|tenant_(?!cata(?![a-z0-9_]))/;

/** One object of every kind the catalogs describe, named after the tenant. */
function objects(t: string): string[] {
  const s = `tenant_${t}`;
  return [
    `CREATE TYPE ${s}.${t}_mood AS ENUM ('${t}_happy', '${t}_sad')`,
    `CREATE TABLE ${s}.${t}_table (id int PRIMARY KEY, ${t}_col text DEFAULT '${t}_default' CHECK (${t}_col <> '${t}_check'), mood ${s}.${t}_mood)`,
    `CREATE INDEX ${t}_idx ON ${s}.${t}_table (${t}_col)`,
    `CREATE SEQUENCE ${s}.${t}_seq`,
    `CREATE VIEW ${s}.${t}_view AS SELECT id, ${t}_col FROM ${s}.${t}_table WHERE ${t}_col <> '${t}_viewbody'`,
    `CREATE MATERIALIZED VIEW ${s}.${t}_matview AS SELECT id FROM ${s}.${t}_table`,
    `CREATE FUNCTION ${s}.${t}_fn() RETURNS text LANGUAGE sql AS $$ SELECT '${t}_body' $$`,
    `CREATE FUNCTION ${s}.${t}_trigfn() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RETURN NEW; END $$`,
    `CREATE TRIGGER ${t}_trigger BEFORE INSERT ON ${s}.${t}_table FOR EACH ROW EXECUTE FUNCTION ${s}.${t}_trigfn()`,
    `CREATE RULE ${t}_rule AS ON UPDATE TO ${s}.${t}_view DO INSTEAD NOTHING`,
    `ALTER TABLE ${s}.${t}_table ENABLE ROW LEVEL SECURITY`,
    `CREATE POLICY ${t}_policy ON ${s}.${t}_table USING (${t}_col <> '${t}_policybody')`,
    `CREATE STATISTICS ${s}.${t}_stats ON id, ${t}_col FROM ${s}.${t}_table`,
    `CREATE TABLE ${s}.${t}_child () INHERITS (${s}.${t}_table)`,
    `COMMENT ON TABLE ${s}.${t}_table IS '${t}_comment'`,
    `COMMENT ON COLUMN ${s}.${t}_table.${t}_col IS '${t}_colcomment'`,
    `COMMENT ON FUNCTION ${s}.${t}_fn() IS '${t}_fncomment'`,
    `INSERT INTO ${s}.${t}_table VALUES (1, '${t}_row')`,
    `ANALYZE ${s}.${t}_table`,
  ];
}

interface Ctx {
  tp: TestProxy;
  admin: pg.Client;
  mode: IsolationMode;
}

for (const mode of ISOLATION_MODES) {
  describe(`catalog privacy, ${mode.title}`, () => {
    const ctx = {} as Ctx;

    beforeAll(async () => {
      ctx.mode = mode;
      ctx.admin = new pg.Client({ connectionString: withDatabase(inject('pg').superuserUrl, mode.database()) });
      await ctx.admin.connect();
      const admin = ctx.admin;
      for (const t of ['cata', 'catb']) {
        const schema = `tenant_${t}`;
        await admin.query(`DROP SCHEMA IF EXISTS ${schema} CASCADE`);
        if (mode.roles) {
          await provisionTenant(admin, { schema, role: schema, proxyRole: mode.proxyRole() });
          await admin.query(`SET ROLE ${schema}`);
        } else {
          await createTenantSchema(admin, { schema, grantTo: mode.proxyRole() });
        }
        for (const sql of objects(t)) await admin.query(sql);
        await admin.query('RESET ROLE');
      }
      ctx.tp = await startTestProxy({ upstream: { poolSize: 2 }, tenancy: { roles: mode.roles } }, mode.upstreamUrl());
    });

    afterAll(async () => {
      await ctx.tp?.close();
      await ctx.admin?.end();
    });

    let client: pg.Client;
    afterEach(async () => {
      await client?.end().catch(() => undefined);
    });

    /** The rows tenant cata reads for `sql`, through the proxy. */
    async function asTenant(sql: string, values?: unknown[]): Promise<unknown[]> {
      client = await ctx.tp.connect('cata');
      return (await client.query(sql, values)).rows;
    }

    /** The rows cata's owner reads for `sql` on a direct connection, pinned as the proxy pins. */
    async function asOwner(sql: string): Promise<unknown[]> {
      await ctx.admin.query('BEGIN');
      try {
        await ctx.admin.query('SET LOCAL search_path TO tenant_cata');
        await ctx.admin.query(`SET LOCAL ROLE ${mode.roles ? 'tenant_cata' : mode.proxyRole()}`);
        return (await ctx.admin.query(sql)).rows;
      } finally {
        await ctx.admin.query('ROLLBACK');
      }
    }

    it.each([
      ...Object.keys(FILTERED_RELATIONS).map((r) => `pg_catalog.${r}`),
      ...[...INFORMATION_SCHEMA_RELATIONS].map((r) => `information_schema.${r}`),
    ])('SELECT * FROM %s shows no other tenant', async (relation) => {
      const exists = await ctx.admin.query('SELECT pg_catalog.to_regclass($1) IS NOT NULL AS e', [relation]);
      if (exists.rows[0].e !== true) return; // not in this PostgreSQL version
      const rows = await asTenant(`SELECT * FROM ${relation}`);
      expect(JSON.stringify(rows)).not.toMatch(LEAK);
    });

    it("pg_stats shows no statistics of the shared catalogs, whose values are every tenant's names", async () => {
      await ctx.admin.query('ANALYZE pg_catalog.pg_class');
      const [row] = (await asTenant(
        "SELECT (SELECT count(*) FROM pg_stats WHERE schemaname IN ('pg_catalog', 'information_schema'))::int AS shared, " +
          '(SELECT json_agg(s) FROM pg_stats s) AS all_rows',
      )) as { shared: number; all_rows: unknown }[];
      expect(row!.shared).toBe(0);
      expect(JSON.stringify(row!.all_rows)).not.toMatch(LEAK);
    });

    it('the same surfaces named without a schema are filtered too', async () => {
      const rows = await asTenant(
        'SELECT (SELECT json_agg(n) FROM pg_namespace n) AS ns, (SELECT json_agg(r) FROM pg_roles r) AS roles, (SELECT json_agg(c.relname) FROM pg_class c) AS rels',
      );
      expect(JSON.stringify(rows)).not.toMatch(LEAK);
      expect(JSON.stringify(rows)).toContain('tenant_cata');
    });

    it.each([
      ['pg_class', "SELECT * FROM pg_class WHERE relnamespace = 'tenant_cata'::regnamespace ORDER BY oid"],
      [
        'pg_attribute',
        "SELECT a.* FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid WHERE c.relnamespace = 'tenant_cata'::regnamespace ORDER BY a.attrelid, a.attnum",
      ],
      ['pg_type', "SELECT * FROM pg_type WHERE typnamespace = 'tenant_cata'::regnamespace ORDER BY oid"],
      ['pg_proc', "SELECT * FROM pg_proc WHERE pronamespace = 'tenant_cata'::regnamespace ORDER BY oid"],
      [
        'pg_enum',
        "SELECT e.* FROM pg_enum e JOIN pg_type t ON t.oid = e.enumtypid WHERE t.typname = 'cata_mood' ORDER BY e.oid",
      ],
      ['pg_constraint', "SELECT * FROM pg_constraint WHERE connamespace = 'tenant_cata'::regnamespace ORDER BY oid"],
      [
        'pg_index',
        "SELECT i.* FROM pg_index i JOIN pg_class c ON c.oid = i.indrelid WHERE c.relnamespace = 'tenant_cata'::regnamespace ORDER BY i.indexrelid",
      ],
      [
        'pg_attrdef',
        "SELECT d.* FROM pg_attrdef d JOIN pg_class c ON c.oid = d.adrelid WHERE c.relnamespace = 'tenant_cata'::regnamespace ORDER BY d.oid",
      ],
      [
        'pg_description',
        "SELECT d.* FROM pg_description d WHERE d.objoid IN (SELECT oid FROM pg_class WHERE relnamespace = 'tenant_cata'::regnamespace UNION ALL SELECT oid FROM pg_proc WHERE pronamespace = 'tenant_cata'::regnamespace) ORDER BY objoid, objsubid",
      ],
      [
        'pg_trigger',
        "SELECT * FROM pg_trigger WHERE NOT tgisinternal AND tgrelid IN (SELECT oid FROM pg_class WHERE relnamespace = 'tenant_cata'::regnamespace) ORDER BY oid",
      ],
      [
        'pg_policy',
        "SELECT * FROM pg_policy WHERE polrelid IN (SELECT oid FROM pg_class WHERE relnamespace = 'tenant_cata'::regnamespace) ORDER BY oid",
      ],
      ['pg_namespace', "SELECT * FROM pg_namespace WHERE nspname = 'tenant_cata'"],
      ['pg_tables', "SELECT * FROM pg_tables WHERE schemaname = 'tenant_cata' ORDER BY tablename"],
      ['pg_views', "SELECT * FROM pg_views WHERE schemaname = 'tenant_cata' ORDER BY viewname"],
      ['pg_indexes', "SELECT * FROM pg_indexes WHERE schemaname = 'tenant_cata' ORDER BY indexname"],
      ['pg_sequences', "SELECT * FROM pg_sequences WHERE schemaname = 'tenant_cata' ORDER BY sequencename"],
      [
        'information_schema.columns',
        "SELECT * FROM information_schema.columns WHERE table_schema = 'tenant_cata' ORDER BY table_name, ordinal_position",
      ],
      [
        'information_schema.tables',
        "SELECT * FROM information_schema.tables WHERE table_schema = 'tenant_cata' ORDER BY table_name",
      ],
      [
        'information_schema.routines',
        "SELECT * FROM information_schema.routines WHERE routine_schema = 'tenant_cata' ORDER BY routine_name",
      ],
      [
        'definitions',
        "SELECT pg_get_viewdef('tenant_cata.cata_view'::regclass) AS v, pg_get_functiondef('tenant_cata.cata_fn'::regproc) AS f, obj_description('tenant_cata.cata_table'::regclass, 'pg_class') AS c, col_description('tenant_cata.cata_table'::regclass, 2) AS cc, format_type('tenant_cata.cata_mood'::regtype, NULL) AS t, pg_get_userbyid((SELECT relowner FROM pg_class WHERE oid = 'tenant_cata.cata_table'::regclass)) AS o",
      ],
    ])('%s: cata sees its own rows as its owner does', async (_name, sql) => {
      const own = await asOwner(sql);
      expect(own.length).toBeGreaterThan(0);
      expect(await asTenant(sql)).toEqual(own);
    });

    it("functions given another tenant's oid answer as for an object that does not exist", async () => {
      const { rows } = await ctx.admin.query(`
        SELECT 'tenant_catb.catb_table'::regclass::oid AS rel, 'tenant_catb.catb_view'::regclass::oid AS view,
               'tenant_catb.catb_idx'::regclass::oid AS idx, 'tenant_catb.catb_fn'::regproc::oid AS fn,
               'tenant_catb.catb_mood'::regtype::oid AS type, 'tenant_catb'::regnamespace::oid AS ns,
               (SELECT oid FROM pg_constraint WHERE conname LIKE 'catb%' LIMIT 1) AS con,
               (SELECT oid FROM pg_trigger WHERE tgname = 'catb_trigger') AS trg,
               (SELECT oid FROM pg_rewrite WHERE rulename = 'catb_rule') AS rule,
               (SELECT oid FROM pg_statistic_ext WHERE stxname = 'catb_stats') AS stx,
               (SELECT relowner FROM pg_class WHERE oid = 'tenant_catb.catb_table'::regclass) AS owner`);
      const b = rows[0] as Record<string, number>;
      const probe = (o: Record<string, number>): string => `SELECT
          pg_get_viewdef(${o.view}) AS viewdef, pg_get_viewdef(${o.view}, true) AS viewdef2,
          pg_get_indexdef(${o.idx}) AS indexdef, pg_get_functiondef(${o.fn}) AS fndef,
          pg_get_function_arguments(${o.fn}) AS fnargs, pg_get_function_result(${o.fn}) AS fnresult,
          pg_get_constraintdef(${o.con}) AS condef, pg_get_triggerdef(${o.trg}) AS trgdef,
          pg_get_ruledef(${o.rule}) AS ruledef, pg_get_statisticsobjdef(${o.stx}) AS stxdef,
          obj_description(${o.rel}, 'pg_class') AS descr, obj_description(${o.fn}) AS descr1,
          col_description(${o.rel}, 2) AS coldescr, format_type(${o.type}, NULL) AS typ,
          pg_get_userbyid(${o.owner}) IS NULL AS owner,
          pg_describe_object('pg_class'::regclass, ${o.rel}, 0) AS described,
          (pg_identify_object('pg_class'::regclass, ${o.rel}, 0)).identity AS identity,
          pg_table_size(${o.rel}) AS size, pg_relation_size(${o.rel}) AS relsize,
          pg_total_relation_size(${o.rel}) AS total, ${o.rel}::regclass AS rc, ${o.type}::regtype AS rt,
          ${o.fn}::regproc AS rp, ${o.ns}::regnamespace AS rn, CAST(${o.rel} AS regclass) AS rc2,
          pg_get_expr((SELECT adbin FROM pg_attrdef LIMIT 1), ${o.rel}) AS expr,
          has_table_privilege(${o.rel}, 'SELECT') AS tablepriv, has_schema_privilege(${o.ns}, 'USAGE') AS schemapriv,
          has_function_privilege(${o.fn}, 'EXECUTE') AS fnpriv, has_type_privilege(${o.type}, 'USAGE') AS typepriv,
          has_column_privilege(${o.rel}, 1::smallint, 'SELECT') AS colpriv`;
      const missing = Object.fromEntries(Object.keys(b).map((k) => [k, 2_000_000_000 + k.length]));
      const leaked = await asTenant(probe(b));
      expect(JSON.stringify(leaked)).not.toMatch(LEAK);
      const none = await asTenant(probe(missing));
      expect(leaked).toEqual(none);
      if (mode.roles) {
        const [u] = (await asTenant(`SELECT pg_get_userbyid(${b.owner}) AS u`)) as Array<{ u: string }>;
        expect(u!.u).toBe(`unknown (OID=${b.owner})`);
      }
    });

    it("existence oracles answer alike for another tenant's names and names that do not exist", async () => {
      const pairs: Array<[string, string]> = [
        [
          "SELECT to_regclass('tenant_' || 'catb.catb_table') AS r",
          "SELECT to_regclass('tenant_' || 'catb.nothing') AS r",
        ],
        [
          "SELECT to_regclass('tenant_' || 'catb.catb_table') AS r",
          "SELECT to_regclass('tenant_' || 'zzzz.nothing') AS r",
        ],
        ["SELECT to_regnamespace('tenant_' || 'catb') AS r", "SELECT to_regnamespace('tenant_' || 'zzzz') AS r"],
        [
          "SELECT to_regtype('tenant_' || 'catb.catb_mood') AS r",
          "SELECT to_regtype('tenant_' || 'zzzz.catb_mood') AS r",
        ],
        ["SELECT to_regproc('tenant_' || 'catb.catb_fn') AS r", "SELECT to_regproc('tenant_' || 'zzzz.catb_fn') AS r"],
        [
          "SELECT ('tenant_' || 'catb.catb_table')::regclass AS r",
          "SELECT ('tenant_' || 'zzzz.catb_table')::regclass AS r",
        ],
        ["SELECT ('tenant_' || 'catb')::regnamespace AS r", "SELECT ('tenant_' || 'zzzz')::regnamespace AS r"],
        ["SELECT 'tenant_catb.catb_table'::regclass AS r", "SELECT 'tenant_zzzz.catb_table'::regclass AS r"],
        ["SELECT to_regclass('tenant_catb.catb_table') AS r", "SELECT to_regclass('tenant_zzzz.catb_table') AS r"],
        [
          "SELECT has_table_privilege('tenant_catb.catb_table', 'SELECT') AS r",
          "SELECT has_table_privilege('tenant_zzzz.catb_table', 'SELECT') AS r",
        ],
        [
          "SELECT pg_get_viewdef('tenant_' || 'catb.catb_view') AS r",
          "SELECT pg_get_viewdef('tenant_' || 'zzzz.catb_view') AS r",
        ],
      ];
      pairs.push(
        [
          "SELECT has_table_privilege('tenant_' || 'catb.catb_table', 'SELECT') AS r",
          "SELECT has_table_privilege('tenant_' || 'zzzz.catb_table', 'SELECT') AS r",
        ],
        [
          "SELECT has_schema_privilege('tenant_' || 'catb', 'USAGE') AS r",
          "SELECT has_schema_privilege('tenant_' || 'zzzz', 'USAGE') AS r",
        ],
        [
          "SELECT has_function_privilege('tenant_' || 'catb.catb_fn()', 'EXECUTE') AS r",
          "SELECT has_function_privilege('tenant_' || 'zzzz.catb_fn()', 'EXECUTE') AS r",
        ],
      );
      if (mode.roles)
        pairs.push(
          ["SELECT ('tenant_' || 'catb')::regrole AS r", "SELECT ('tenant_' || 'zzzz')::regrole AS r"],
          [
            "SELECT pg_has_role('tenant_' || 'catb', 'MEMBER') AS r",
            "SELECT pg_has_role('tenant_' || 'zzzz', 'MEMBER') AS r",
          ],
          [
            "SELECT has_table_privilege('tenant_' || 'catb', 'cata_table', 'SELECT') AS r",
            "SELECT has_table_privilege('tenant_' || 'zzzz', 'cata_table', 'SELECT') AS r",
          ],
        );
      for (const [other, none] of pairs) {
        const outcome = async (sql: string): Promise<unknown> => {
          try {
            return { rows: await asTenant(sql) };
          } catch (err) {
            const e = err as { code?: string; message: string };
            return { code: e.code, message: e.message.replaceAll('zzzz', 'catb') };
          } finally {
            await client.end().catch(() => undefined);
          }
        };
        expect(await outcome(other), other).toEqual(await outcome(none));
      }
    });

    it('a catalog statement through the extended protocol, named and unnamed, is filtered', async () => {
      client = await ctx.tp.connect('cata');
      const named = await client.query({
        name: 'rels',
        text: 'SELECT relname FROM pg_class WHERE relname LIKE $1 AND relnamespace >= 16384',
        values: ['%_table'],
      });
      expect(named.rows.map((r: { relname: string }) => r.relname)).toEqual(['cata_table']);
      const again = await client.query({
        name: 'rels',
        text: 'SELECT relname FROM pg_class WHERE relname LIKE $1 AND relnamespace >= 16384',
        values: ['cat%'],
      });
      expect(JSON.stringify(again.rows)).not.toMatch(LEAK);
      const unnamed = await client.query('SELECT nspname FROM pg_namespace WHERE nspname LIKE $1', ['tenant%']);
      expect(unnamed.rows).toEqual([{ nspname: 'tenant_cata' }]);
    });

    it('psql \\d, \\dt, \\d+ table, \\df, \\dn, \\dT, \\dv, \\di show the tenant and nobody else', async () => {
      const env = {
        ...process.env,
        PGHOST: '127.0.0.1',
        PGPORT: String(ctx.tp.port),
        PGUSER: 'app',
        PGDATABASE: mode.database(),
        PGPASSWORD: await ctx.tp.token('cata'),
        PGSSLMODE: 'disable',
      };
      const commands = [
        '\\d',
        '\\dt',
        '\\d+ cata_table',
        '\\df',
        '\\dn',
        '\\dT',
        '\\dv',
        '\\di',
        '\\dn+',
        '\\dt+',
        '\\du',
      ];
      const outputs: Record<string, string> = {};
      for (const command of commands) {
        const { stdout, stderr } = await run('psql', ['-X', '-v', 'ON_ERROR_STOP=1', '-c', command], { env });
        expect(stderr, command).toBe('');
        expect(stdout, command).not.toMatch(LEAK);
        outputs[command] = stdout;
      }
      expect(outputs['\\dt']).toContain('cata_table');
      expect(outputs['\\d+ cata_table']).toContain('cata_col');
      expect(outputs['\\d+ cata_table']).toContain('cata_idx');
      expect(outputs['\\d+ cata_table']).toContain('cata_trigger');
      expect(outputs['\\d+ cata_table']).toContain('cata_policy');
      expect(outputs['\\dt+']).toContain('cata_comment');
      expect(outputs['\\d+ cata_table']).toContain("'cata_default'::text");
      expect(outputs['\\df']).toContain('cata_fn');
      expect(outputs['\\dn']).toContain('tenant_cata');
      expect(outputs['\\dT']).toContain('cata_mood');
      expect(outputs['\\dv']).toContain('cata_view');
    });

    it("postgres.js loads types at connect and parses an array of the tenant's own enum", async () => {
      const sql = postgres({
        host: '127.0.0.1',
        port: ctx.tp.port,
        user: 'app',
        database: mode.database(),
        password: await ctx.tp.token('cata'),
        max: 1,
        onnotice: () => undefined,
      });
      try {
        const [row] = await sql`SELECT ARRAY['cata_happy', 'cata_sad']::cata_mood[] AS moods`;
        expect(row!.moods).toEqual(['cata_happy', 'cata_sad']);
        const types = await sql`SELECT typname FROM pg_type WHERE typtype = 'e'`;
        expect(types.map((t) => t.typname)).toEqual(['cata_mood']);
      } finally {
        await sql.end();
      }
    });

    it("node-postgres finds the tenant's own enum type by name and parses it", async () => {
      client = await ctx.tp.connect('cata');
      const { rows } = await client.query("SELECT oid, typarray FROM pg_type WHERE typname = 'cata_mood'");
      expect(rows).toHaveLength(1);
      const { typarray } = rows[0] as { typarray: number };
      const parsed = await client.query({
        text: "SELECT ARRAY['cata_happy']::cata_mood[] AS m",
        types: {
          getTypeParser: (oid: number) =>
            oid === typarray ? (v: string) => v.slice(1, -1).split(',') : pg.types.getTypeParser(oid),
        },
      });
      expect(parsed.rows[0].m).toEqual(['cata_happy']);
    });

    it.skipIf(jdbcJar() === null)(
      "pgjdbc DatabaseMetaData lists the tenant's tables, columns, keys and nobody else's",
      async () => {
        const source = fileURLToPath(new URL('../drivers/JdbcMetadata.java', import.meta.url));
        const { stdout } = await run(
          'java',
          [
            '-cp',
            jdbcJar()!,
            source,
            String(ctx.tp.port),
            mode.database(),
            await ctx.tp.token('cata'),
            'tenant_cata',
            'cata_table',
          ],
          { timeout: 120_000 },
        );
        expect(stdout).not.toMatch(LEAK);
        const lines = Object.fromEntries(
          stdout
            .trim()
            .split('\n')
            .map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)]),
        );
        expect(lines.tables).toContain('tenant_cata.cata_table');
        expect(lines.tables).toContain('tenant_cata.cata_view');
        expect(lines.columns).toBe("[id:int4:null, cata_col:text:'cata_default'::text, mood:cata_mood:null]");
        expect(lines.primaryKeys).toBe('[id@cata_table_pkey]');
        expect(lines.schemas).toBe('[information_schema, pg_catalog, tenant_cata]');
        expect(lines.functions).toContain('tenant_cata.cata_fn');
        expect(lines.indexes).toContain('cata_idx');
      },
      150_000,
    );

    it('the wrapped functions and filtered views all exist in the installed filter', async () => {
      const { rows } = await ctx.admin.query(
        `SELECT p.proname FROM pg_proc p WHERE p.pronamespace = 'pgtp_catalog'::regnamespace`,
      );
      const installed = new Set(rows.map((r: { proname: string }) => r.proname));
      for (const name of Object.keys(WRAPPED_FUNCTIONS)) {
        const native = await ctx.admin.query(
          `SELECT 1 FROM pg_proc WHERE proname = $1 AND pronamespace = 'pg_catalog'::regnamespace`,
          [name],
        );
        if (native.rows.length > 0) expect(installed.has(name), name).toBe(true);
      }
    });

    it('catalogs outside the filter are refused, never shown unfiltered', async () => {
      client = await ctx.tp.connect('cata');
      expect(await sqlstateOf(() => client.query('SELECT * FROM pg_catalog.pg_prepared_statements'))).toBe('42501');
      expect(await sqlstateOf(() => client.query('SELECT * FROM pgtp_catalog.pg_class'))).toBe('42501');
      expect(await sqlstateOf(() => client.query('WITH pg_class AS (SELECT 1) SELECT * FROM pg_class'))).toBe('42501');
    });

    it('a statement naming no catalog is sent byte for byte and pays no rewrite', async () => {
      client = await ctx.tp.connect('cata');
      const { rows } = await client.query("SELECT cata_col, 'pg_class' AS word FROM cata_table");
      expect(rows).toEqual([{ cata_col: 'cata_row', word: 'pg_class' }]);
    });
  });
}

describe('catalog filter missing from the database', () => {
  it('catalog statements are refused with the install command as hint, never sent unfiltered', async () => {
    const fixture = inject('pg');
    const server = new pg.Client({ connectionString: fixture.superuserUrl });
    await server.connect();
    await server.query('DROP DATABASE IF EXISTS pgtp_nofilter WITH (FORCE)');
    await server.query('CREATE DATABASE pgtp_nofilter');
    await server.end();
    const db = new pg.Client({ connectionString: withDatabase(fixture.superuserUrl, 'pgtp_nofilter') });
    await db.connect();
    await createTenantSchema(db, { schema: 'tenant_a', grantTo: fixture.proxyRole });
    await db.end();
    const tp = await startTestProxy({}, withDatabase(fixture.upstreamUrl, 'pgtp_nofilter'));
    try {
      const a = await tp.connect('a');
      let error: { code?: string; message: string; hint?: string } | undefined;
      for (let i = 0; i < 100; i++) {
        error = await a.query('SELECT relname FROM pg_class').then(
          () => undefined,
          (err: { code?: string; message: string; hint?: string }) => err,
        );
        if (error?.hint !== undefined) break;
        await new Promise((r) => setTimeout(r, 50));
      }
      // Before the proxy's check answers, PostgreSQL itself refuses the missing view (42P01): never unfiltered.
      expect(error?.code).toBe('42501');
      expect(error?.message).toContain('not installed');
      expect(error?.hint).toContain('pg-tenant-proxy catalog install');
      expect((await a.query('SELECT 1 AS one')).rows).toEqual([{ one: 1 }]);
    } finally {
      await tp.close();
    }
  });
});
