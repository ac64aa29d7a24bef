import { beforeAll, describe, expect, it } from 'vitest';
import { loadParser } from '../../src/guard/sql-guard.js';
import { MigrationError } from '../../src/migrations/migration-error.js';
import { prepareMigration, type RewriteOptions } from '../../src/migrations/rewrite.js';
import { loadMigrations, type Migration } from '../../src/migrations/source.js';

const DRIZZLE_FIXTURE = new URL('../fixtures/drizzle/', import.meta.url).pathname;
const PUBLIC: RewriteOptions = { sourceSchema: 'public', sharedSchemas: ['shared'], tenantSchemaShape: /^tenant_/ };

function migration(statements: string[], noTransaction = false): Migration {
  return { id: '0007_test', file: '0007_test.sql', statements, checksum: '0'.repeat(64), noTransaction };
}
const rewrite = (statement: string, schema = 'tenant_x', options = PUBLIC): string =>
  prepareMigration(migration([statement]), options).forSchema(schema)[0]!;
const refusal = (statement: string, options = PUBLIC, noTransaction = false): MigrationError => {
  try {
    prepareMigration(migration([statement], noTransaction), options);
  } catch (err) {
    if (err instanceof MigrationError) return err;
    throw err;
  }
  throw new Error(`not refused: ${statement}`);
};

beforeAll(loadParser);

describe('the drizzle-kit fixture', () => {
  it('rewrites every place drizzle-kit names public, and nothing else', async () => {
    const [init, added] = (await loadMigrations(DRIZZLE_FIXTURE)).map((m) => prepareMigration(m, PUBLIC));
    expect(init!.forSchema('tenant_a')).toEqual([
      `CREATE TYPE "tenant_a"."status" AS ENUM('active', 'archived')`,
      `CREATE TABLE "posts" (\n\t"id" serial PRIMARY KEY NOT NULL,\n\t"author_id" integer NOT NULL,\n\t"title" text DEFAULT 'untitled' NOT NULL\n)`,
      `CREATE TABLE "users" (\n\t"id" serial PRIMARY KEY NOT NULL,\n\t"email" text NOT NULL,\n\t"status" "status" DEFAULT 'active' NOT NULL,\n\t"created_at" timestamp DEFAULT now() NOT NULL\n)`,
      `ALTER TABLE "posts" ADD CONSTRAINT "posts_author_id_users_id_fk" FOREIGN KEY ("author_id") REFERENCES "tenant_a"."users"("id") ON DELETE cascade ON UPDATE no action`,
      `CREATE INDEX "posts_author_idx" ON "posts" USING btree ("author_id")`,
      `CREATE UNIQUE INDEX "users_email_idx" ON "users" USING btree ("email")`,
    ]);
    expect(added!.forSchema('tenant_b')).toEqual([
      `ALTER TYPE "tenant_b"."status" ADD VALUE 'banned'`,
      `CREATE SEQUENCE "tenant_b"."ticket_seq" INCREMENT BY 1 MINVALUE 1 MAXVALUE 9223372036854775807 START WITH 100 CACHE 1`,
      `ALTER TABLE "posts" ADD COLUMN "published" boolean DEFAULT false NOT NULL`,
      `ALTER TABLE "posts" ADD COLUMN "status" "status" DEFAULT 'active' NOT NULL`,
      `CREATE INDEX "posts_published_idx" ON "posts" USING btree ("author_id","published")`,
      // "posts"."published" is table.column: untouched.
      `CREATE VIEW "tenant_b"."published_posts" AS (select "id", "author_id", "title", "published", "status" from "posts" where "posts"."published" = true)`,
    ]);
  });
});

describe('the schema rewrite', () => {
  it('rewrites qualified names in every position, quoted or not, and quotes the tenant schema', () => {
    const cases: Array<[string, string]> = [
      [
        'CREATE TABLE public.t (a public.status, b int REFERENCES "public"."u" (id))',
        'CREATE TABLE "tenant_x".t (a "tenant_x".status, b int REFERENCES "tenant_x"."u" (id))',
      ],
      ['CREATE INDEX i ON PUBLIC.t (a)', 'CREATE INDEX i ON "tenant_x".t (a)'],
      ['ALTER TABLE "public"."t" RENAME TO t2', 'ALTER TABLE "tenant_x"."t" RENAME TO t2'],
      ['DROP TABLE public.a, public.b', 'DROP TABLE "tenant_x".a, "tenant_x".b'],
      ["COMMENT ON COLUMN public.t.a IS 'x'", 'COMMENT ON COLUMN "tenant_x".t.a IS \'x\''],
      ['DROP TRIGGER IF EXISTS g ON public.t', 'DROP TRIGGER IF EXISTS g ON "tenant_x".t'],
      ["COMMENT ON TABLE public.t IS 'see public.t'", 'COMMENT ON TABLE "tenant_x".t IS \'see public.t\''],
      ['CREATE SEQUENCE public.s OWNED BY public.t.a', 'CREATE SEQUENCE "tenant_x".s OWNED BY "tenant_x".t.a'],
      [
        'SELECT public.t.a, public.f(1), 1::public.dom FROM public.t',
        'SELECT "tenant_x".t.a, "tenant_x".f(1), 1::"tenant_x".dom FROM "tenant_x".t',
      ],
      ['SELECT public.t.* FROM public . t', 'SELECT "tenant_x".t.* FROM "tenant_x" . t'],
      [
        'SELECT 1 FROM shared.lookup, pg_catalog.pg_class, information_schema.tables',
        'SELECT 1 FROM shared.lookup, pg_catalog.pg_class, information_schema.tables',
      ],
      ['SELECT a.public FROM t a', 'SELECT a.public FROM t a'],
      ["CREATE TABLE t (id int DEFAULT nextval('s'))", "CREATE TABLE t (id int DEFAULT nextval('s'))"],
      ["INSERT INTO public.t VALUES ('ü✓', 'public.t')", "INSERT INTO \"tenant_x\".t VALUES ('ü✓', 'public.t')"],
    ];
    for (const [sql, expected] of cases) expect(rewrite(sql), sql).toBe(expected);
  });

  it('rewrites inside dollar-quoted DO and function bodies (old drizzle-kit wraps enums and FKs in DO blocks)', () => {
    expect(
      rewrite(
        `DO $$ BEGIN\n CREATE TYPE "public"."s" AS ENUM('a');\nEXCEPTION WHEN duplicate_object THEN null;\nEND $$`,
      ),
    ).toBe(
      `DO $$ BEGIN\n CREATE TYPE "tenant_x"."s" AS ENUM('a');\nEXCEPTION WHEN duplicate_object THEN null;\nEND $$`,
    );
    expect(
      rewrite('CREATE FUNCTION public.n() RETURNS bigint LANGUAGE sql AS $f$ SELECT count(*) FROM public.t $f$'),
    ).toBe('CREATE FUNCTION "tenant_x".n() RETURNS bigint LANGUAGE sql AS $f$ SELECT count(*) FROM "tenant_x".t $f$');
    // A dollar-quoted string that is data, not a body, is left as it is.
    expect(rewrite('COMMENT ON TABLE public.t IS $$moved from public.old$$')).toBe(
      'COMMENT ON TABLE "tenant_x".t IS $$moved from public.old$$',
    );
  });

  it('rewrites SQL-standard function bodies (BEGIN ATOMIC), which are part of the statement', () => {
    expect(
      rewrite('CREATE FUNCTION n() RETURNS bigint LANGUAGE sql BEGIN ATOMIC SELECT count(*) FROM public.t; END'),
    ).toBe('CREATE FUNCTION n() RETURNS bigint LANGUAGE sql BEGIN ATOMIC SELECT count(*) FROM "tenant_x".t; END');
  });

  it('will not put a schema name with $ into a dollar-quoted body', () => {
    const prepared = prepareMigration(migration(['DO $$ BEGIN PERFORM 1 FROM public.t; END $$']), PUBLIC);
    expect(() => prepared.forSchema('x$$y')).toThrow(/cannot go inside a dollar-quoted body/);
    expect(prepareMigration(migration(['SELECT 1 FROM public.t']), PUBLIC).forSchema('x$$y')).toEqual([
      'SELECT 1 FROM "x$$y".t',
    ]);
  });

  it('rewrites another source schema and leaves public alone then', () => {
    const app = { sourceSchema: 'app' };
    expect(rewrite('CREATE TABLE "app"."t" (a int)', 'tenant_y', app)).toBe('CREATE TABLE "tenant_y"."t" (a int)');
    expect(refusal('CREATE TABLE public.t (a int)', app).schema).toBe('public');
  });

  it('quotes odd tenant schema names exactly', () => {
    expect(rewrite('CREATE TABLE public.t (a int)', 'Tenant "Q"')).toBe('CREATE TABLE "Tenant ""Q""".t (a int)');
  });
});

describe('refusals', () => {
  it('refuses another schema, naming the file, the statement and the schema', () => {
    const err = refusal('CREATE TABLE "public"."t" (id int REFERENCES other.u (id))');
    expect(err.message).toBe(
      'migration 0007_test.sql, statement 1 (CREATE TABLE "public"."t" (id int REFERENCES other.u (id))): names schema "other" (other.u), ' +
        'which is neither the migrations\' schema "public" nor a shared schema (tenancy.sharedSchemas)',
    );
    expect([err.file, err.statement, err.schema]).toEqual(['0007_test.sql', 1, 'other']);
    for (const sql of [
      'CREATE INDEX i ON tenant_b.t (a)',
      'ALTER TYPE "pg_toast"."x" ADD VALUE \'y\'',
      'SELECT other.f()',
      'CREATE TABLE t (a other.status)',
      'GRANT USAGE ON SCHEMA other TO someone',
      'DO $$ BEGIN PERFORM 1 FROM other.t; END $$',
      'CREATE FUNCTION f() RETURNS int LANGUAGE sql AS $$ SELECT 1 FROM other.t $$',
    ]) {
      expect(refusal(sql).schema, sql).toBe(
        sql.includes('pg_toast') ? 'pg_toast' : sql.includes('tenant_b') ? 'tenant_b' : 'other',
      );
    }
  });

  it('refuses names of the source schema it cannot rewrite: in name-resolving strings and single-quoted bodies', () => {
    for (const sql of [
      "CREATE TABLE t (id int DEFAULT nextval('public.t_seq'::regclass))",
      "SELECT 'public.t'::regclass",
      "CREATE FUNCTION f() RETURNS int LANGUAGE sql AS 'SELECT count(*)::int FROM public.t'",
      'CREATE FUNCTION f() RETURNS int LANGUAGE sql SET search_path = public AS $$ SELECT 1 $$',
      'SELECT U&"p\\0075blic".t.a FROM t',
    ]) {
      const err = refusal(sql);
      expect(err.schema, sql).toBe('public');
      expect(err.message, sql).toMatch(/names schema "public" \(.*\) where it cannot be rewritten/);
    }
  });

  it('refuses a string naming another tenant', () => {
    expect(refusal("INSERT INTO t VALUES ('tenant_b.items')").schema).toBe('tenant_b');
  });

  it('refuses CREATE SCHEMA, SET/RESET search_path and role, and transaction control', () => {
    expect(refusal('CREATE SCHEMA IF NOT EXISTS "public"').message).toMatch(
      /statement 1 \(CREATE SCHEMA IF NOT EXISTS "public"\): CREATE SCHEMA: each tenant's schema is created/,
    );
    expect(refusal('SET search_path TO public').message).toMatch(/: SET search_path: the runner pins the search path/);
    expect(refusal('SET LOCAL search_path = tenant_x').message).toMatch(/: SET search_path/);
    expect(refusal('RESET search_path').message).toMatch(/: RESET search_path/);
    expect(refusal('SET ROLE someone').message).toMatch(/: SET role/);
    expect(refusal("SELECT set_config('search_path', 'public', true)").message).toMatch(
      /refused by the SQL guard: set_config\('search_path', \.\.\.\)/,
    );
    expect(refusal('COMMIT').message).toMatch(/: transaction control/);
    expect(refusal('BEGIN').message).toMatch(/: transaction control/);
  });

  it('refuses CONCURRENTLY unless the file is marked no-transaction', () => {
    expect(refusal('CREATE INDEX CONCURRENTLY i ON public.t (a)').message).toMatch(
      /CONCURRENTLY cannot run inside a transaction: add a line "-- pgtp:no-transaction"/,
    );
    expect(refusal('DROP INDEX CONCURRENTLY public.i').message).toMatch(/CONCURRENTLY/);
    expect(refusal('REINDEX INDEX CONCURRENTLY public.i').message).toMatch(/CONCURRENTLY/);
    const marked = prepareMigration(migration(['CREATE INDEX CONCURRENTLY i ON public.t (a)'], true), PUBLIC);
    expect(marked.forSchema('tenant_x')).toEqual(['CREATE INDEX CONCURRENTLY i ON "tenant_x".t (a)']);
  });

  it('refuses what the guard refuses for tenants (dynamic SQL, extensions, ownership)', () => {
    expect(refusal("DO $$ BEGIN EXECUTE 'DROP TABLE t'; END $$").message).toMatch(
      /refused by the SQL guard: EXECUTE of dynamic SQL/,
    );
    expect(refusal('CREATE EXTENSION pgcrypto').message).toMatch(/refused by the SQL guard: CREATE EXTENSION/);
    expect(refusal('ALTER TABLE public.t OWNER TO someone').message).toMatch(/refused by the SQL guard/);
  });

  it('counts statements from 1 in the message', () => {
    const err = (() => {
      try {
        prepareMigration(migration(['CREATE TABLE public.a (x int)', 'CREATE TABLE other.b (x int)']), PUBLIC);
      } catch (e) {
        return e as MigrationError;
      }
      throw new Error('not refused');
    })();
    expect(err.statement).toBe(2);
  });

  it('a shared or catalog schema cannot be the source', () => {
    expect(() =>
      prepareMigration(migration(['SELECT 1']), { sourceSchema: 'shared', sharedSchemas: ['shared'] }),
    ).toThrow(/cannot also be shared/);
  });
});
