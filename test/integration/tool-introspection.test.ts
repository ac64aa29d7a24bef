// Catalog privacy (issue 17), the tools' side: what introspecting tools send runs through the catalog filter inside the
// tenant and sees the tenant's own schema as PostgreSQL shows it to the tenant's owner, and nothing of another tenant.
// psycopg 3's type adapters (TypeInfo/EnumInfo/CompositeInfo.fetch), drizzle-kit pull, and the introspection queries
// of Prisma's schema engine and Hibernate ORM, taken from their sources (test/fixtures/introspection/,
// test/drivers/HibernateMetadata.java). psql, node-postgres, postgres.js and pgjdbc's DatabaseMetaData are in
// catalog-privacy.test.ts.
//
// Two tenants of their own (inta, intb) with the same kinds of objects; whatever tenant inta reads must contain no
// "intb" nor any other tenant's schema name.

import { execFile, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { createTenantSchema, provisionTenant } from '../../src/tenants/provision.js';
import { withDatabase } from '../support/postgres.js';
import { startTestProxy, type TestProxy } from '../support/proxy.js';
import { ISOLATION_MODES, jdbcJar } from '../support/modes.js';

const run = promisify(execFile);

/** Any other tenant's names: intb's objects, and every tenant schema but inta's own. */
const LEAK = /intb|tenant_(?!inta(?![a-z0-9_]))/;

/** psycopg 3 from Debian's python3-psycopg (.ci/run installs it), seen by the system Python. */
function psycopgPython(): string | null {
  const python = '/usr/bin/python3';
  const probe = spawnSync(python, ['-c', 'import psycopg'], { stdio: 'ignore' });
  return probe.status === 0 ? python : null;
}

const PYTHON = psycopgPython();
const JAR = jdbcJar();
if (PYTHON === null)
  console.warn('tool-introspection: psycopg 3 tests skipped: /usr/bin/python3 cannot import psycopg');
if (JAR === null) console.warn('tool-introspection: Hibernate tests skipped: no pgjdbc jar in ~/.m2');
const DRIZZLE_KIT = fileURLToPath(new URL('../../node_modules/drizzle-kit/bin.cjs', import.meta.url));

/** A small application schema, named after the tenant: what the tools introspect. */
function objects(t: string): string[] {
  const s = `tenant_${t}`;
  return [
    `CREATE TYPE ${s}.${t}_mood AS ENUM ('${t}_happy', '${t}_sad')`,
    `CREATE TYPE ${s}.${t}_point AS (x int, y int, label text)`,
    `CREATE TABLE ${s}.${t}_table (id serial PRIMARY KEY, name text NOT NULL DEFAULT '${t}_default', mood ${s}.${t}_mood, spot ${s}.${t}_point, created_at timestamptz NOT NULL DEFAULT now())`,
    `CREATE UNIQUE INDEX ${t}_name_idx ON ${s}.${t}_table (name)`,
    `CREATE TABLE ${s}.${t}_child (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, parent_id int NOT NULL REFERENCES ${s}.${t}_table (id) ON DELETE CASCADE, note varchar(40), amount numeric(10, 2), CONSTRAINT ${t}_note_check CHECK (note <> '${t}_forbidden'))`,
    `CREATE INDEX ${t}_child_parent_idx ON ${s}.${t}_child (parent_id DESC)`,
    `CREATE SEQUENCE ${s}.${t}_seq START 100`,
    `CREATE VIEW ${s}.${t}_view AS SELECT id, name FROM ${s}.${t}_table WHERE name <> '${t}_hidden'`,
    `CREATE FUNCTION ${s}.${t}_fn() RETURNS text LANGUAGE sql AS $$ SELECT '${t}_body' $$`,
    `COMMENT ON TABLE ${s}.${t}_table IS '${t}_comment'`,
    `COMMENT ON COLUMN ${s}.${t}_table.name IS '${t}_colcomment'`,
    `COMMENT ON TYPE ${s}.${t}_mood IS '${t}_typecomment'`,
    `INSERT INTO ${s}.${t}_table (name, mood) VALUES ('${t}_one', '${t}_happy'), ('${t}_two', '${t}_sad')`,
  ];
}

/** One query of test/fixtures/introspection/prisma-postgres.sql (see its header for the format). */
interface FixtureQuery {
  name: string;
  source: string;
  text: string;
}

function prismaQueries(): FixtureQuery[] {
  const file = readFileSync(new URL('../fixtures/introspection/prisma-postgres.sql', import.meta.url), 'utf8');
  const out: FixtureQuery[] = [];
  const pattern = /^-- @query (\S+)\n-- @source (.*)\n([\s\S]*?)\n-- @end$/gm;
  for (const m of file.matchAll(pattern)) out.push({ name: m[1]!, source: m[2]!, text: m[3]! });
  return out;
}

/**
 * node-postgres query options declaring each parameter's type in the Parse message, as tokio-postgres (Prisma's
 * driver, through quaint) does: node-postgres sends `types` as the Parse's parameter types and reads its
 * getTypeParser for the results.
 */
function declared(oids: number[]): { types: pg.CustomTypesConfig } {
  return { types: Object.assign([...oids], { getTypeParser: pg.types.getTypeParser }) };
}
const TEXT_ARRAY = 1009;

for (const mode of ISOLATION_MODES) {
  describe(`tool introspection, ${mode.title}`, () => {
    let tp: TestProxy;
    let admin: pg.Client;

    beforeAll(async () => {
      admin = new pg.Client({ connectionString: withDatabase(inject('pg').superuserUrl, mode.database()) });
      await admin.connect();
      for (const t of ['inta', 'intb']) {
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
      tp = await startTestProxy({ upstream: { poolSize: 2 }, tenancy: { roles: mode.roles } }, mode.upstreamUrl());
    });

    afterAll(async () => {
      await tp?.close();
      await admin?.end();
    });

    /** The rows inta's owner reads on a direct connection, pinned as the proxy pins. */
    async function asOwner(sql: string, values?: unknown[]): Promise<unknown[]> {
      await admin.query('BEGIN');
      try {
        await admin.query('SET LOCAL search_path TO tenant_inta');
        await admin.query(`SET LOCAL ROLE ${mode.roles ? 'tenant_inta' : mode.proxyRole()}`);
        return (await admin.query(sql, values)).rows;
      } finally {
        await admin.query('ROLLBACK');
      }
    }

    it.skipIf(PYTHON === null)(
      "psycopg 3 TypeInfo/EnumInfo/CompositeInfo.fetch find the tenant's own types, and another tenant's as missing",
      async () => {
        const script = fileURLToPath(new URL('../drivers/psycopg_typeinfo.py', import.meta.url));
        const { stdout } = await run(
          PYTHON!,
          [script, String(tp.port), mode.database(), await tp.token('inta'), 'inta', 'intb'],
          { timeout: 60_000 },
        );
        const lines = Object.fromEntries(
          stdout
            .trim()
            .split('\n')
            .map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)]),
        );
        expect(lines).toEqual({
          typeinfo: 'inta_mood oid>0=True array_oid>0=True',
          typeinfo_qualified: 'inta_mood same=True',
          enuminfo: "inta_mood ['inta_happy', 'inta_sad']",
          enum_roundtrip: "<Mood.sad: 'inta_sad'> [<Mood.happy: 'inta_happy'>, <Mood.sad: 'inta_sad'>] inta_happy",
          enum_column: "[<Mood.happy: 'inta_happy'>, <Mood.sad: 'inta_sad'>]",
          compositeinfo: "inta_point ['x', 'y', 'label'] types_ok=True",
          composite_roundtrip: 'inta_point x=1 y=2 label=inta_label',
          composite_from_server: 'x=3 y=4 label=x',
          // Qualified by another tenant's schema: what PostgreSQL answers for a schema that does not exist (and
          // without the filter, roles on, "permission denied for schema": 42501, which confirms it).
          other_enum_qualified: "'error 3F000' 'error 3F000'",
          missing_enum_qualified: "'error 3F000' 'error 3F000'",
          other_enum_unqualified: 'None None',
          other_composite_qualified: "'error 3F000'",
          other_composite_quoted: "'error 3F000'",
          after: 'tenant_inta IDLE',
          in_transaction: "None 'error 3F000' inta_mood rows=2 INTRANS",
        });
      },
      90_000,
    );

    it("a parameter cast to a reg* type resolves the tenant's own names, and another tenant's as missing ones", async () => {
      const client = await tp.connect('inta');
      const outcome = async (sql: string, value: unknown): Promise<unknown> => {
        try {
          return { rows: (await client.query(sql, [value])).rows };
        } catch (err) {
          const e = err as { code?: string; message: string };
          return { code: e.code, message: e.message.replaceAll('zzzz', 'intb') };
        }
      };
      const own = await outcome('SELECT $1::regclass::text AS r, $1::regclass::oid > 0 AS found', 'inta_table');
      expect(own).toEqual({ rows: [{ r: 'inta_table', found: true }] });
      expect(await outcome('SELECT CAST($1 AS regtype)::text AS r', 'tenant_inta.inta_mood')).toEqual({
        rows: [{ r: 'inta_mood' }],
      });
      // Still of the reg* type: compared with an oid column, cast on, and as a parenthesized parameter.
      expect(
        await outcome('SELECT pg_typeof(($1)::regclass)::text AS t, ($1)::regclass::text AS r', 'inta_child'),
      ).toEqual({ rows: [{ t: 'regclass', r: 'inta_child' }] });
      const intb = (await admin.query("SELECT 'tenant_intb.intb_table'::regclass::oid::int AS oid")).rows[0] as {
        oid: number;
      };
      const pairs: Array<[string, unknown, unknown]> = [
        ['SELECT $1::regclass AS r', 'tenant_intb.intb_table', 'tenant_zzzz.intb_table'],
        ['SELECT $1::regtype AS r', 'tenant_intb.intb_mood', 'tenant_zzzz.intb_mood'],
        ['SELECT $1::regproc AS r', 'tenant_intb.intb_fn', 'tenant_zzzz.intb_fn'],
        ['SELECT $1::regnamespace AS r', 'tenant_intb', 'tenant_zzzz'],
        ['SELECT $1::regtype AS r', 'intb_mood', 'zzzz_mood'],
        // An oid bound as a number: another tenant's reads as no object at all.
        ['SELECT $1::int::regclass AS r', intb.oid, 2_000_000_000],
      ];
      // The answers (an error naming what the client gave, or NULL) are the same as for names nobody has.
      for (const [sql, other, missing] of pairs)
        expect(await outcome(sql, other), `${sql} ${String(other)}`).toEqual(await outcome(sql, missing));
    });

    it("drizzle-kit pull writes the tenant's own tables, enums, columns and foreign keys, and nothing of another tenant", async () => {
      const out = mkdtempSync(join(tmpdir(), 'pgtp-drizzle-pull-'));
      try {
        const url = `postgres://app:${await tp.token('inta')}@127.0.0.1:${tp.port}/${mode.database()}?sslmode=disable`;
        // Asked for both schemas, as a user guessing another tenant's name might: intb's must come back empty.
        const config = {
          dialect: 'postgresql',
          dbCredentials: { url },
          schemaFilter: ['tenant_inta', 'tenant_intb'],
          out,
        };
        writeFileSync(join(out, 'drizzle.config.cjs'), `module.exports = ${JSON.stringify(config)};\n`);
        await run(process.execPath, [DRIZZLE_KIT, 'pull', '--config=drizzle.config.cjs'], {
          cwd: out,
          timeout: 120_000,
          env: { ...process.env, NO_COLOR: '1' },
        });
        const schema = readFileSync(join(out, 'schema.ts'), 'utf8');
        const relations = readFileSync(join(out, 'relations.ts'), 'utf8');
        expect(schema + relations).not.toMatch(LEAK);
        expect(schema).toContain('export const tenantInta = pgSchema("tenant_inta");');
        expect(schema).toMatch(
          /export const intaMoodInTenantInta = tenantInta\.enum\("inta_mood", \[\s*'inta_happy',\s*'inta_sad'\s*\]\)/,
        );
        expect(schema).toContain('export const intaTableInTenantInta = tenantInta.table("inta_table", {');
        expect(schema).toContain("name: text().default('inta_default').notNull(),");
        expect(schema).toContain('mood: intaMoodInTenantInta(),');
        expect(schema).toContain('export const intaChildInTenantInta = tenantInta.table("inta_child", {');
        expect(schema).toContain('note: varchar({ length: 40 }),');
        expect(schema).toMatch(/amount: numeric\(\{ precision: 10, scale: +2 \}\),/);
        expect(schema).toMatch(
          /foreignKey\(\{\s*columns: \[table\.parentId\],\s*foreignColumns: \[intaTableInTenantInta\.id\],\s*name: "inta_child_parent_id_fkey"\s*\}\)\.onDelete\("cascade"\)/,
        );
        expect(schema).toContain('uniqueIndex("inta_name_idx")');
        expect(schema).toContain('index("inta_child_parent_idx")');
        expect(schema).toContain('check("inta_note_check"');
        expect(schema).toContain('export const intaSeqInTenantInta = tenantInta.sequence("inta_seq"');
        expect(schema).toContain('tenantInta.view("inta_view"');
        expect(relations).toContain('intaChildInTenantInta');
      } finally {
        rmSync(out, { recursive: true, force: true });
      }
    }, 150_000);

    it("Prisma's introspection queries, bound as Prisma binds them, show the tenant's schema as its owner sees it", async () => {
      const queries = prismaQueries();
      expect(queries.map((q) => q.name)).toEqual([
        'namespaces',
        'tables',
        'constraints',
        'views',
        'enums',
        'udts',
        'columns',
        'foreign_keys',
        'indexes',
        'procedures',
        'extensions',
        'sequences',
      ]);
      const client = await tp.connect('inta');
      const results: Record<string, unknown[]> = {};
      for (const q of queries) {
        const values = q.text.includes('$1') ? [['tenant_inta']] : [];
        const { rows } = await client.query({ text: q.text, values, ...declared(values.map(() => TEXT_ARRAY)) });
        expect(JSON.stringify(rows), q.name).not.toMatch(LEAK);
        expect(rows, q.name).toEqual(await asOwner(q.text, values));
        results[q.name] = rows;
        // Another tenant's schema, named or among the tenant's own, adds nothing and is no error.
        if (values.length === 0) continue;
        const other = await client.query({ text: q.text, values: [['tenant_intb']], ...declared([TEXT_ARRAY]) });
        expect(other.rows, `${q.name} of tenant_intb`).toEqual([]);
        const both = await client.query({
          text: q.text,
          values: [['tenant_inta', 'tenant_intb']],
          ...declared([TEXT_ARRAY]),
        });
        expect(both.rows, `${q.name} of both`).toEqual(rows);
      }
      const names = (name: string, column: string): unknown[] =>
        [...new Set(results[name]!.map((r) => (r as Record<string, unknown>)[column]))].sort();
      expect(names('namespaces', 'namespace_name')).toEqual(['tenant_inta']);
      expect(names('tables', 'table_name')).toEqual(['inta_child', 'inta_table']);
      expect(results.tables).toContainEqual(
        expect.objectContaining({ table_name: 'inta_table', description: 'inta_comment' }),
      );
      expect(names('constraints', 'constraint_name')).toEqual(['inta_note_check']);
      expect(results.views).toEqual([
        expect.objectContaining({
          view_name: 'inta_view',
          namespace: 'tenant_inta',
          view_sql: expect.stringContaining('inta_hidden'),
        }),
      ]);
      expect(results.enums).toEqual([
        { name: 'inta_mood', value: 'inta_happy', namespace: 'tenant_inta', description: 'inta_typecomment' },
        { name: 'inta_mood', value: 'inta_sad', namespace: 'tenant_inta', description: 'inta_typecomment' },
      ]);
      expect(results.columns).toContainEqual(
        expect.objectContaining({
          table_name: 'inta_table',
          column_name: 'name',
          column_default: "'inta_default'::text",
          description: 'inta_colcomment',
        }),
      );
      expect(results.columns).toContainEqual(
        expect.objectContaining({
          table_name: 'inta_table',
          column_name: 'mood',
          full_data_type: 'inta_mood',
          type_schema_name: 'tenant_inta',
        }),
      );
      expect(results.columns).toContainEqual(
        expect.objectContaining({ table_name: 'inta_child', column_name: 'id', is_identity: 'YES' }),
      );
      expect(results.foreign_keys).toEqual([
        expect.objectContaining({
          child_column: 'parent_id',
          parent_table: 'inta_table',
          parent_column: 'id',
          confdeltype: 'c',
          referenced_schema_name: 'tenant_inta',
          constraint_name: 'inta_child_parent_id_fkey',
          table_name: 'inta_child',
        }),
      ]);
      expect(names('indexes', 'index_name')).toEqual([
        'inta_child_parent_idx',
        'inta_child_pkey',
        'inta_name_idx',
        'inta_table_pkey',
      ]);
      expect(results.indexes).toContainEqual(
        expect.objectContaining({
          index_name: 'inta_child_parent_idx',
          column_name: 'parent_id',
          column_order: 'DESC',
        }),
      );
      expect(names('procedures', 'name')).toEqual(['inta_fn']);
      expect(results.procedures).toEqual([
        expect.objectContaining({ definition: expect.stringContaining('inta_body') }),
      ]);
      // information_schema.sequences leaves out identity columns' sequences (inta_child_id_seq).
      expect(names('sequences', 'sequence_name')).toEqual(['inta_seq', 'inta_table_id_seq']);
      expect(results.sequences).toContainEqual(
        expect.objectContaining({ sequence_name: 'inta_seq', start_value: '100' }),
      );
      expect(names('extensions', 'extension_name')).toContain('plpgsql');
    });

    it.skipIf(JAR === null)(
      "Hibernate's schema extraction sees the tenant's tables, columns, keys, indexes and sequences as its owner does",
      async () => {
        const source = fileURLToPath(new URL('../drivers/HibernateMetadata.java', import.meta.url));
        const parse = (stdout: string): Record<string, string> =>
          Object.fromEntries(
            stdout
              .trim()
              .split('\n')
              .map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)]),
          );
        const java = async (args: string[]): Promise<Record<string, string>> =>
          parse((await run('java', ['-cp', JAR!, source, ...args], { timeout: 120_000, maxBuffer: 1 << 24 })).stdout);
        const proxied = await java([
          `jdbc:postgresql://127.0.0.1:${tp.port}/${mode.database()}`,
          'app',
          await tp.token('inta'),
          '',
          'tenant_inta',
          'tenant_intb',
        ]);
        const upstream = new URL(mode.upstreamUrl());
        const direct = await java([
          `jdbc:postgresql://${upstream.hostname}:${upstream.port}${upstream.pathname}`,
          decodeURIComponent(upstream.username),
          decodeURIComponent(upstream.password),
          `SET search_path TO tenant_inta${mode.roles ? '; SET ROLE tenant_inta' : ''}`,
          'tenant_inta',
        ]);
        expect(Object.values(proxied).join('\n')).not.toMatch(LEAK);
        // Hibernate's index query has no ORDER BY: its rows come in the plan's order, which the filter's views change.
        const unordered = (rows: string | undefined): string[] => (rows ?? '').slice(1, -1).split(', ').sort();
        for (const step of ['schemas', 'tables', 'columns', 'primaryKeys', 'foreignKeys'])
          expect(proxied[`tenant_inta.${step}`], step).toBe(direct[`tenant_inta.${step}`]);
        expect(unordered(proxied['tenant_inta.indexes']), 'indexes').toEqual(unordered(direct['tenant_inta.indexes']));
        // Another tenant's schema: as one that does not exist, every step empty.
        for (const step of ['schemas', 'tables', 'columns', 'primaryKeys', 'foreignKeys', 'indexes'])
          expect(proxied[`tenant_intb.${step}`], `tenant_intb ${step}`).toBe('[]');
        const own = (rows: string): string[] =>
          rows
            .slice(1, -1)
            .split(', ')
            .filter((r) => r.includes('sequence_schema:tenant_inta|'));
        expect(own(proxied.sequences!)).toEqual(own(direct.sequences!));
        expect(
          own(proxied.sequences!)
            .map((r) => /sequence_name:([^|]+)/.exec(r)![1])
            .sort(),
        ).toEqual(['inta_seq', 'inta_table_id_seq']);
        expect(proxied['tenant_inta.tables']).toContain('TABLE_NAME:inta_view|TABLE_TYPE:VIEW');
        expect(proxied['tenant_inta.primaryKeys']).toContain('PK_NAME:inta_table_pkey');
        expect(proxied['tenant_inta.foreignKeys']).toContain('FK_NAME:inta_child_parent_id_fkey');
        expect(proxied['tenant_inta.indexes']).toContain('INDEX_NAME:inta_child_parent_idx');
        expect(proxied['tenant_inta.indexes']).toContain('ASC_OR_DESC:D');
        expect(proxied['tenant_inta.columns']).toContain("COLUMN_DEF:'inta_default'::text");
      },
      150_000,
    );
  });
}
