import { beforeAll, describe, expect, it } from 'vitest';
import { analyzeSql } from '../../src/guard/analyze.js';
import { buildSkeleton } from '../../src/guard/skeleton.js';
import { tenantSchemaShape } from '../../src/auth/identity.js';
import { createSqlGuard, isRefusal, loadParser, type SqlGuard } from '../../src/guard/sql-guard.js';

let guard: SqlGuard;
beforeAll(async () => {
  await loadParser();
  guard = createSqlGuard({
    sharedSchemas: ['shared'],
    deniedFunctions: ['risky_fn'],
    maxStatementBytes: 100_000,
    cacheSize: 1000,
    checkNames: true,
    schemaTemplate: 'tenant_{tenant}',
    tenantPattern: '^[a-z0-9_]{1,48}$',
  });
});

const verdict = (sql: string, schema = 'tenant_a'): string => {
  const verdict = guard.check(sql, schema);
  return isRefusal(verdict) ? `${verdict.rule}:${verdict.error.sqlstate}` : 'allow';
};

const ALLOWED = [
  'SELECT * FROM items WHERE id = 1',
  'SELECT * FROM tenant_a.items',
  'SELECT * FROM "tenant_a"."items"',
  'SELECT * FROM U&"tenant\\005fa".items',
  'SELECT tenant_a.items.name FROM tenant_a.items',
  'SELECT count(*) FROM pg_catalog.pg_class',
  'SELECT * FROM information_schema.tables',
  'SELECT * FROM shared.countries',
  "SELECT 1::pg_catalog.int4, now(), pg_catalog.lower('X')",
  "INSERT INTO items VALUES (1, 'x') RETURNING *",
  'WITH x AS (SELECT 1) SELECT * FROM x',
  "BEGIN; UPDATE items SET name = 'y' WHERE id = 2; COMMIT",
  "SET statement_timeout = '5s'",
  'SET LOCAL lock_timeout = 1000',
  'RESET statement_timeout',
  "SELECT set_config('app.user_id', '42', true)",
  "SELECT nextval('seq'), nextval('tenant_a.seq'), 'items'::regclass",
  'CREATE TABLE t2 (id int REFERENCES items(id))',
  'CREATE INDEX ON tenant_a.items (name)',
  'ALTER TABLE items ADD COLUMN note text',
  'DROP TABLE IF EXISTS tenant_a.t2',
  'COPY items FROM STDIN',
  'COPY (SELECT * FROM items) TO STDOUT',
  'DO $$ BEGIN PERFORM 1; UPDATE items SET name = name; END $$',
  "CREATE FUNCTION f(x int) RETURNS int LANGUAGE sql AS 'SELECT x + 1'",
  'CREATE FUNCTION g() RETURNS int LANGUAGE plpgsql AS $$ DECLARE n int; BEGIN n := (SELECT count(*) FROM items); RETURN n; END $$',
  "CREATE FUNCTION h() RETURNS int LANGUAGE sql SET search_path = tenant_a, pg_catalog AS 'SELECT 1'",
  'SELECT c.oid::regclass FROM pg_class c',
  'EXPLAIN SELECT * FROM items',
  'PREPARE p AS SELECT * FROM items; EXECUTE p',
  'SHOW search_path',
  'SELECT pg_advisory_xact_lock(1)',
  "SET client_encoding = 'UTF8'",
  "SET client_encoding = 'latin1'",
  "SET NAMES 'win1252'",
  "SET client_encoding = 'EUC_JP'",
  "INSERT INTO items VALUES (7, 'tenant_a.seq'), (8, 'john.doe')",
  'LOCK TABLE items IN SHARE MODE',
  'TRUNCATE items',
  "SELECT has_schema_privilege('tenant_a', 'USAGE')",
  // Regression: a table member's table was taken for its schema (DROP TRIGGER g ON items: "schema items").
  "COMMENT ON COLUMN items.name IS 'x'",
  "COMMENT ON COLUMN tenant_a.items.name IS 'x'",
  "COMMENT ON CONSTRAINT items_pkey ON tenant_a.items IS 'x'",
  'DROP TRIGGER IF EXISTS g ON items',
  'DROP POLICY IF EXISTS p ON tenant_a.items',
  'DROP RULE IF EXISTS r ON items',
  "SELECT pg_relation_is_updatable('items', true), pg_index_column_has_property('items_pkey', 1, 'asc')",
  // Reading pg_settings is fine (drivers and tools do); FOR UPDATE on it locks nothing and calls no rule.
  "SELECT setting FROM pg_settings WHERE name = 'search_path'",
  "SELECT name FROM pg_catalog.pg_settings WHERE name = 'work_mem' FOR UPDATE",
  'CREATE VIEW v AS SELECT * FROM items',
  'UPDATE tenant_a.pg_settings SET setting = 1',
  "COMMENT ON TABLE items IS 'x'",
  "COMMENT ON SCHEMA tenant_a IS 'x'",
  'GRANT SELECT ON items TO PUBLIC',
  'VACUUM items',
  'ANALYZE items (name)',
  'CLUSTER items USING items_pkey',
  "CREATE FUNCTION k() RETURNS int LANGUAGE sql SET work_mem = '64MB' AS 'SELECT 1'",
];

const DENIED: Array<[string, string]> = [
  ['SELECT * FROM tenant_b.items', 'schema:42501'],
  ['SELECT * FROM "tenant_b".items', 'schema:42501'],
  ['SELECT * FROM "Tenant_A".items', 'schema:42501'],
  ['SELECT * FROM U&"tenant\\005fb".items', 'schema:42501'],
  ['SELECT * FROM items JOIN tenant_b.items b ON true', 'schema:42501'],
  ['SELECT * FROM items WHERE id IN (SELECT id FROM tenant_b.items)', 'schema:42501'],
  ['SELECT (SELECT max(id) FROM tenant_b.items)', 'schema:42501'],
  ['SELECT * FROM items, LATERAL (SELECT * FROM tenant_b.items) x', 'schema:42501'],
  ['WITH x AS (SELECT * FROM tenant_b.items) SELECT * FROM x', 'schema:42501'],
  ["INSERT INTO tenant_b.items VALUES (9, 'x')", 'schema:42501'],
  ['INSERT INTO items SELECT * FROM tenant_b.items', 'schema:42501'],
  ["UPDATE tenant_b.items SET name = 'x'", 'schema:42501'],
  ['UPDATE items SET name = b.name FROM tenant_b.items b', 'schema:42501'],
  ['DELETE FROM items USING tenant_b.items b WHERE true', 'schema:42501'],
  ['DELETE FROM tenant_b.items', 'schema:42501'],
  ['INSERT INTO items VALUES (1) RETURNING (SELECT name FROM tenant_b.items LIMIT 1)', 'schema:42501'],
  ['MERGE INTO items USING tenant_b.items s ON true WHEN MATCHED THEN DO NOTHING', 'schema:42501'],
  ['SELECT tenant_b.items.name FROM items', 'schema:42501'],
  ['SELECT tenant_b.f()', 'schema:42501'],
  ['CALL tenant_b.p()', 'schema:42501'],
  ['SELECT 1::tenant_b.mytype', 'schema:42501'],
  ['SELECT CAST(1 AS tenant_b.mytype)', 'schema:42501'],
  ['SELECT 1 OPERATOR(tenant_b.+) 2', 'schema:42501'],
  ['SELECT name COLLATE tenant_b.c FROM items', 'schema:42501'],
  ["SELECT nextval('tenant_b.seq')", 'schema:42501'],
  ['SELECT nextval(\'"tenant_b".seq\')', 'schema:42501'],
  ["SELECT 'tenant_b.items'::regclass", 'schema:42501'],
  ["SELECT 'tenant_b.items'::pg_catalog.regclass", 'schema:42501'],
  ["SELECT to_regclass('tenant_b.items')", 'schema:42501'],
  ["SELECT pg_relation_size('tenant_b.items')", 'schema:42501'],
  ['SELECT $1::regclass', 'schema:42501'],
  ['SELECT nextval($1)', 'schema:42501'],
  // A parameter PostgreSQL infers as regclass from the function's signature is resolved at Bind.
  ['SELECT pg_relation_is_updatable($1, true)', 'schema:42501'],
  ['SELECT pg_column_is_updatable($1, 1::int2, true)', 'schema:42501'],
  ['SELECT pg_get_replica_identity_index($1)', 'schema:42501'],
  ["SELECT pg_index_has_property('tenant_b.items_pkey', 'clusterable')", 'schema:42501'],
  ["SELECT 'tenant_b'::regnamespace", 'schema:42501'],
  ["SELECT has_schema_privilege('tenant_b', 'USAGE')", 'schema:42501'],
  ['SELECT * FROM pg_temp.x', 'schema:42501'],
  ['SELECT * FROM pg_temp_3.x', 'schema:42501'],
  ['SELECT * FROM pg_toast.pg_toast_1234', 'schema:42501'],
  ['SELECT * FROM public.t', 'schema:42501'],
  ['SELECT * FROM otherdb.tenant_a.items', 'cross_database:42501'],
  ['CREATE TABLE tenant_b.t (id int)', 'schema:42501'],
  ['CREATE TABLE t (LIKE tenant_b.items)', 'schema:42501'],
  ['CREATE TABLE t (id int REFERENCES tenant_b.items(id))', 'schema:42501'],
  ['CREATE TABLE t PARTITION OF tenant_b.items DEFAULT', 'schema:42501'],
  ['CREATE VIEW v AS SELECT * FROM tenant_b.items', 'schema:42501'],
  ['CREATE INDEX ON tenant_b.items (name)', 'schema:42501'],
  ['ALTER TABLE tenant_b.items ADD COLUMN x int', 'schema:42501'],
  ['ALTER TABLE items SET SCHEMA tenant_b', 'schema:42501'],
  ['DROP TABLE tenant_b.items', 'schema:42501'],
  ['DROP FUNCTION tenant_b.f()', 'schema:42501'],
  ["COMMENT ON TABLE tenant_b.items IS 'x'", 'schema:42501'],
  ["COMMENT ON COLUMN tenant_b.items.name IS 'x'", 'schema:42501'],
  ['DROP TRIGGER g ON tenant_b.items', 'schema:42501'],
  ["COMMENT ON COLUMN otherdb.tenant_a.items.name IS 'x'", 'cross_database:42501'],
  ['GRANT SELECT ON tenant_b.items TO PUBLIC', 'schema:42501'],
  ['GRANT USAGE ON SCHEMA tenant_b TO PUBLIC', 'schema:42501'],
  ['GRANT SELECT ON ALL TABLES IN SCHEMA tenant_b TO PUBLIC', 'schema:42501'],
  ['CREATE SEQUENCE s OWNED BY tenant_b.items.id', 'schema:42501'],
  ['CREATE TRIGGER t BEFORE INSERT ON items FOR EACH ROW EXECUTE FUNCTION tenant_b.f()', 'schema:42501'],
  ['SELECT * INTO tenant_b.copy FROM items', 'schema:42501'],
  ['COPY tenant_b.items TO STDOUT', 'schema:42501'],
  ['COPY (SELECT * FROM tenant_b.items) TO STDOUT', 'schema:42501'],
  ['TRUNCATE tenant_b.items', 'schema:42501'],
  ['LOCK TABLE tenant_b.items', 'schema:42501'],
  ['VACUUM tenant_b.items', 'schema:42501'],
  ['REINDEX SCHEMA tenant_b', 'schema:42501'],
  ['EXPLAIN ANALYZE SELECT * FROM tenant_b.items', 'schema:42501'],
  ['PREPARE p AS SELECT * FROM tenant_b.items', 'schema:42501'],
  ['DECLARE c CURSOR FOR SELECT * FROM tenant_b.items', 'schema:42501'],
  ['SELECT 1; SELECT * FROM tenant_b.items', 'schema:42501'],
  ['SET search_path TO tenant_b', 'session_state:42501'],
  ['SET search_path = DEFAULT', 'session_state:42501'],
  ['SET LOCAL search_path TO tenant_b', 'session_state:42501'],
  ["SET SCHEMA 'tenant_b'", 'session_state:42501'],
  ['RESET search_path', 'session_state:42501'],
  ['RESET ALL', 'session_state:42501'],
  ['SET ROLE postgres', 'session_state:42501'],
  ['RESET ROLE', 'session_state:42501'],
  ['SET SESSION AUTHORIZATION postgres', 'session_state:42501'],
  ['DISCARD ALL', 'session_state:42501'],
  ["SELECT set_config('search_path', 'tenant_b', false)", 'session_state:42501'],
  ["SELECT pg_catalog.set_config('SEARCH_PATH', 'tenant_b', false)", 'session_state:42501'],
  ["SELECT set_config('role', 'postgres', false)", 'session_state:42501'],
  ['SELECT set_config($1, $2, false)', 'session_state:42501'],
  ['ALTER ROLE CURRENT_USER SET search_path = tenant_b', 'session_state:42501'],
  ['ALTER DATABASE x SET search_path = tenant_b', 'session_state:42501'],
  ["CREATE FUNCTION f() RETURNS int LANGUAGE sql SET search_path = tenant_b AS 'SELECT 1'", 'schema:42501'],
  ['ALTER FUNCTION f() SET search_path = tenant_b', 'schema:42501'],
  ['ALTER FUNCTION f() SET role = postgres', 'session_state:42501'],
  ["DO $$ BEGIN EXECUTE 'SELECT * FROM tenant_b.items'; END $$", 'dynamic_sql:42501'],
  ["DO $$ DECLARE r record; BEGIN FOR r IN EXECUTE 'SELECT 1' LOOP END LOOP; END $$", 'dynamic_sql:42501'],
  ['DO $$ BEGIN PERFORM * FROM tenant_b.items; END $$', 'schema:42501'],
  ['DO $$ DECLARE n int; BEGIN n := (SELECT count(*) FROM tenant_b.items); END $$', 'schema:42501'],
  ['DO $$ BEGIN SET search_path TO tenant_b; END $$', 'session_state:42501'],
  ["DO $$ BEGIN PERFORM set_config('search_path', 'tenant_b', true); END $$", 'session_state:42501'],
  ["DO LANGUAGE plperlu $$ system('id') $$", 'language:42501'],
  ["CREATE FUNCTION f() RETURNS int LANGUAGE plpgsql AS $$ BEGIN EXECUTE 'x'; RETURN 1; END $$", 'dynamic_sql:42501'],
  [
    "CREATE FUNCTION f() RETURNS SETOF record LANGUAGE plpgsql AS $$ BEGIN RETURN QUERY EXECUTE 'x'; END $$",
    'dynamic_sql:42501',
  ],
  ["CREATE FUNCTION f() RETURNS int LANGUAGE sql AS 'SELECT count(*)::int FROM tenant_b.items'", 'schema:42501'],
  [
    'CREATE FUNCTION f() RETURNS int LANGUAGE sql BEGIN ATOMIC SELECT count(*)::int FROM tenant_b.items; END',
    'schema:42501',
  ],
  ["CREATE FUNCTION f() RETURNS int LANGUAGE c AS 'libc', 'system'", 'language:42501'],
  ["CREATE FUNCTION f() RETURNS int LANGUAGE internal AS 'int4in'", 'language:42501'],
  [
    'CREATE FUNCTION f() RETURNS void LANGUAGE plpgsql AS $$ BEGIN PERFORM 1 FROM tenant_b.items; END $$',
    'schema:42501',
  ],
  ["COPY items TO '/tmp/x'", 'file_access:42501'],
  ["COPY items FROM PROGRAM 'id'", 'file_access:42501'],
  ["SELECT pg_read_file('/etc/passwd')", 'file_access:42501'],
  ["SELECT lo_import('/etc/passwd')", 'file_access:42501'],
  ['SELECT lo_get(1234)', 'file_access:42501'],
  ['SELECT pg_terminate_backend(1)', 'server_admin:42501'],
  ['SELECT pg_catalog.pg_cancel_backend(1)', 'server_admin:42501'],
  ['SELECT pg_reload_conf()', 'server_admin:42501'],
  ['SELECT pg_advisory_lock(1)', 'server_admin:42501'],
  ["SELECT dblink_connect('x')", 'server_admin:42501'],
  ["SELECT query_to_xml('SELECT * FROM tenant_b.items', true, true, '')", 'dynamic_sql:42501'],
  ["SELECT table_to_xml('items', true, true, '')", 'dynamic_sql:42501'],
  ['SELECT * FROM pg_stat_activity', 'server_admin:42501'],
  ['SELECT query FROM pg_catalog.pg_stat_activity', 'server_admin:42501'],
  ['SELECT * FROM pg_stat_get_activity(NULL)', 'server_admin:42501'],
  // Channels are namespaced by rewriting, which only the top-level text allows (see channel-rules.ts).
  ["DO $$ BEGIN PERFORM pg_notify('c', 'x'); END $$", 'unsupported:42501'],
  ["CREATE FUNCTION f() RETURNS void LANGUAGE sql AS 'SELECT pg_notify(''c'', ''x'')'", 'unsupported:42501'],
  ['CREATE FUNCTION f() RETURNS void LANGUAGE plpgsql AS $$ BEGIN NOTIFY c; END $$', 'unsupported:42501'],
  ['CREATE FUNCTION f() RETURNS void LANGUAGE plpgsql AS $$ BEGIN LISTEN c; END $$', 'unsupported:42501'],
  ['CREATE RULE r AS ON INSERT TO items DO ALSO NOTIFY c', 'unsupported:42501'],
  [`LISTEN ${'c'.repeat(42)}`, 'unsupported:22023'],
  [`NOTIFY ${'c'.repeat(42)}`, 'unsupported:22023'],
  ["LOAD 'plpgsql'", 'server_admin:42501'],
  ['ALTER SYSTEM SET work_mem = 1', 'server_admin:42501'],
  ['CREATE EXTENSION dblink', 'server_admin:42501'],
  ['CREATE SCHEMA tenant_c', 'schema:42501'],
  ['DROP SCHEMA tenant_a CASCADE', 'schema:42501'],
  ['ALTER SCHEMA tenant_a RENAME TO x', 'schema:42501'],
  ['CREATE ROLE x', 'server_admin:42501'],
  ['GRANT postgres TO CURRENT_USER', 'server_admin:42501'],
  ['ALTER TABLE items OWNER TO postgres', 'server_admin:42501'],
  ['ALTER DEFAULT PRIVILEGES GRANT ALL ON TABLES TO PUBLIC', 'server_admin:42501'],
  ['CHECKPOINT', 'server_admin:42501'],
  ['SELECT risky_fn()', 'denied_function:42501'],
  ['EXECUTE pgtp_s1', 'session_state:42501'],
  ['DEALLOCATE pgtp_s1', 'session_state:42501'],
  [
    "CREATE AGGREGATE agg(text, boolean) (SFUNC = pg_catalog.set_config, STYPE = text, INITCOND = 'role')",
    'server_admin:42501',
  ],
  ['CREATE OPERATOR ### (RIGHTARG = int, FUNCTION = pg_stat_get_backend_activity)', 'server_admin:42501'],
  [
    "DO $$ DECLARE arr int[]; BEGIN arr[(SELECT length(set_config('role','tenant_b',true)))] := 1; END $$",
    'session_state:42501',
  ],
  ['SET standard_conforming_strings = off', 'session_state:42501'],
  ["SELECT set_config('standard_conforming_strings', 'off', false)", 'session_state:42501'],
  ["SET client_encoding = 'SJIS'", 'session_state:42501'],
  ["SET NAMES 'big5'", 'session_state:42501'],
  ["SELECT set_config('client_encoding', 'GBK', false)", 'session_state:42501'],
  // Aliases PostgreSQL takes for the client-only encodings (a denylist once missed the windows* ones).
  ...[
    'windows932',
    'Windows-936',
    'windows949',
    'windows950',
    'cp936',
    'ms_kanji',
    'shift_jis_2004',
    'gb18030',
    'johab',
    'uhc',
    'x-unknown',
  ].flatMap((e): [string, string][] => [
    [`SET client_encoding = '${e}'`, 'session_state:42501'],
    [`SET NAMES '${e}'`, 'session_state:42501'],
    [`SELECT set_config('client_encoding', '${e}', false)`, 'session_state:42501'],
  ]),
  ["SELECT word FROM ts_stat('SELECT name::tsvector FROM tenant_b.items')", 'dynamic_sql:42501'],
  ["SELECT nextval(regclass('tenant_b.seq'))", 'schema:42501'],
  ["SELECT pg_sequence_last_value('tenant_b.seq')", 'schema:42501'],
  ["INSERT INTO refs VALUES ('tenant_b.seq')", 'schema:42501'],
  [
    "CREATE FUNCTION d(r regclass DEFAULT 'tenant_b.seq') RETURNS bigint LANGUAGE sql AS 'SELECT nextval(r)'",
    'schema:42501',
  ],
  ['SELECT * FROM pg_stats', 'server_admin:42501'],
  ['SELECT last_value FROM pg_sequences', 'server_admin:42501'],
  ['SELECT * FROM pg_prepared_statements', 'server_admin:42501'],
  // Writes to pg_settings: its update rule calls set_config (issue 17).
  ["UPDATE pg_settings SET setting = 'tenant_b' WHERE name = 'search_path'", 'session_state:42501'],
  [
    "UPDATE pg_catalog.pg_settings SET setting = 'off' WHERE name = 'standard_conforming_strings'",
    'session_state:42501',
  ],
  ["UPDATE ONLY \"pg_settings\" s SET setting = 'tenant_b' WHERE s.name = 'search_path'", 'session_state:42501'],
  [
    "WITH x AS (UPDATE pg_settings SET setting = 'tenant_b' WHERE name = 'search_path' RETURNING 1) SELECT * FROM x",
    'session_state:42501',
  ],
  ["INSERT INTO pg_settings (name, setting) VALUES ('search_path', 'tenant_b')", 'session_state:42501'],
  ["DELETE FROM pg_settings WHERE name = 'search_path'", 'session_state:42501'],
  [
    "MERGE INTO pg_settings s USING (SELECT 1) x ON s.name = 'search_path' WHEN MATCHED THEN UPDATE SET setting = 'tenant_b'",
    'session_state:42501',
  ],
  ['COPY pg_settings FROM STDIN', 'session_state:42501'],
  ['TRUNCATE pg_settings', 'session_state:42501'],
  ['CREATE VIEW s AS SELECT name, setting FROM pg_settings', 'session_state:42501'],
  ['CREATE OR REPLACE VIEW s AS SELECT * FROM (SELECT * FROM pg_catalog.pg_settings) x', 'session_state:42501'],
  ['CREATE RULE "_RETURN" AS ON SELECT TO t DO INSTEAD SELECT * FROM pg_settings', 'session_state:42501'],
  [
    "CREATE RULE r AS ON INSERT TO items DO ALSO UPDATE pg_settings SET setting = 'tenant_b' WHERE name = 'search_path'",
    'session_state:42501',
  ],
  [
    "CREATE FUNCTION f() RETURNS void LANGUAGE sql AS $$UPDATE pg_settings SET setting = 'tenant_b' WHERE name = 'search_path'$$",
    'session_state:42501',
  ],
  [
    "CREATE FUNCTION f() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN UPDATE pg_settings SET setting = 'tenant_b' WHERE name = 'search_path'; RETURN NEW; END $$",
    'session_state:42501',
  ],
  ["DO $$ BEGIN UPDATE pg_settings SET setting = 'tenant_b' WHERE name = 'search_path'; END $$", 'session_state:42501'],
  // A body lexed again under its own SET when the function runs: the guard read it with standard strings.
  [
    "CREATE FUNCTION f() RETURNS SETOF text LANGUAGE sql SET standard_conforming_strings = off AS $f$ SELECT 'a\\'' ; SELECT name FROM tenant_b.items; --' $f$",
    'session_state:42501',
  ],
  ['ALTER FUNCTION f() SET standard_conforming_strings TO off', 'session_state:42501'],
  ['ALTER PROCEDURE p() SET backslash_quote = on', 'session_state:42501'],
  ["CREATE FUNCTION f() RETURNS int LANGUAGE sql SET session_authorization = 'x' AS 'SELECT 1'", 'session_state:42501'],
  // Objects every tenant shares: the database, roles, extensions, languages, … and the built-in schemas.
  ["COMMENT ON DATABASE pgtp_test IS 'x'", 'server_admin:42501'],
  ["COMMENT ON ROLE app IS 'x'", 'server_admin:42501'],
  ["COMMENT ON TABLESPACE pg_default IS 'x'", 'server_admin:42501'],
  ["COMMENT ON EXTENSION plpgsql IS 'x'", 'server_admin:42501'],
  ["COMMENT ON LANGUAGE plpgsql IS 'x'", 'server_admin:42501'],
  ["COMMENT ON PUBLICATION p IS 'x'", 'server_admin:42501'],
  ["COMMENT ON SUBSCRIPTION s IS 'x'", 'server_admin:42501'],
  ["COMMENT ON EVENT TRIGGER e IS 'x'", 'server_admin:42501'],
  ["COMMENT ON FOREIGN DATA WRAPPER w IS 'x'", 'server_admin:42501'],
  ["COMMENT ON SERVER s IS 'x'", 'server_admin:42501'],
  ["COMMENT ON ACCESS METHOD heap IS 'x'", 'server_admin:42501'],
  ["COMMENT ON CAST (int AS text) IS 'x'", 'server_admin:42501'],
  ["COMMENT ON TRANSFORM FOR int LANGUAGE sql IS 'x'", 'server_admin:42501'],
  ["COMMENT ON LARGE OBJECT 1234 IS 'x'", 'server_admin:42501'],
  ["COMMENT ON SCHEMA pg_catalog IS 'x'", 'server_admin:42501'],
  ["COMMENT ON SCHEMA information_schema IS 'x'", 'server_admin:42501'],
  ["COMMENT ON SCHEMA tenant_b IS 'x'", 'schema:42501'],
  ['GRANT CONNECT ON DATABASE pgtp_test TO PUBLIC', 'server_admin:42501'],
  ['REVOKE ALL ON DATABASE pgtp_test FROM PUBLIC', 'server_admin:42501'],
  ['GRANT CREATE ON TABLESPACE pg_default TO PUBLIC', 'server_admin:42501'],
  ['GRANT USAGE ON LANGUAGE plpgsql TO PUBLIC', 'server_admin:42501'],
  ['GRANT USAGE ON FOREIGN SERVER s TO PUBLIC', 'server_admin:42501'],
  ['GRANT USAGE ON FOREIGN DATA WRAPPER w TO PUBLIC', 'server_admin:42501'],
  ['GRANT SELECT ON LARGE OBJECT 1234 TO PUBLIC', 'server_admin:42501'],
  ['GRANT SET ON PARAMETER work_mem TO PUBLIC', 'server_admin:42501'],
  ['GRANT USAGE ON SCHEMA pg_catalog TO PUBLIC', 'server_admin:42501'],
  ['REVOKE SELECT ON ALL TABLES IN SCHEMA pg_catalog FROM PUBLIC', 'server_admin:42501'],
  ['ALTER DATABASE pgtp_test RENAME TO x', 'server_admin:42501'],
  ['ALTER ROLE app RENAME TO x', 'server_admin:42501'],
  ['ALTER LANGUAGE plpgsql RENAME TO x', 'server_admin:42501'],
  ['ALTER PUBLICATION p RENAME TO x', 'server_admin:42501'],
  ['ALTER EVENT TRIGGER e RENAME TO x', 'server_admin:42501'],
  ['ALTER SERVER s RENAME TO x', 'server_admin:42501'],
  ['ALTER EXTENSION plpgsql SET SCHEMA tenant_a', 'server_admin:42501'],
  ['DROP EXTENSION plpgsql', 'server_admin:42501'],
  ['DROP LANGUAGE plpgsql', 'server_admin:42501'],
  ['DROP PUBLICATION p', 'server_admin:42501'],
  ['DROP EVENT TRIGGER e', 'server_admin:42501'],
  ['DROP ACCESS METHOD a', 'server_admin:42501'],
  ['DROP SERVER s', 'server_admin:42501'],
  ['DROP FOREIGN DATA WRAPPER w', 'server_admin:42501'],
  ['DROP CAST (int AS text)', 'server_admin:42501'],
  ['DROP TRANSFORM FOR int LANGUAGE sql', 'server_admin:42501'],
  ['DROP SUBSCRIPTION s', 'server_admin:42501'],
  ['DROP DATABASE pgtp_test', 'server_admin:42501'],
  ['CREATE DATABASE x', 'server_admin:42501'],
  ['DROP ROLE app', 'server_admin:42501'],
  ['ALTER ROLE app NOLOGIN', 'server_admin:42501'],
  ['CREATE USER x', 'server_admin:42501'],
  ['ALTER DATABASE pgtp_test CONNECTION LIMIT 1', 'server_admin:42501'],
  ['ALTER DATABASE pgtp_test OWNER TO x', 'server_admin:42501'],
  ['CREATE PUBLICATION p FOR ALL TABLES', 'server_admin:42501'],
  ['ALTER PUBLICATION p ADD TABLE items', 'server_admin:42501'],
  ["CREATE SUBSCRIPTION s CONNECTION 'host=x' PUBLICATION p", 'server_admin:42501'],
  ['CREATE EVENT TRIGGER e ON ddl_command_start EXECUTE FUNCTION f()', 'server_admin:42501'],
  ['ALTER EVENT TRIGGER e DISABLE', 'server_admin:42501'],
  ["SECURITY LABEL FOR selinux ON TABLE items IS 'x'", 'server_admin:42501'],
  ["CREATE TABLESPACE t LOCATION '/tmp'", 'server_admin:42501'],
  ['ALTER DEFAULT PRIVILEGES FOR ROLE app IN SCHEMA tenant_a GRANT SELECT ON TABLES TO PUBLIC', 'server_admin:42501'],
  ['VACUUM', 'server_admin:42501'],
  ['VACUUM (FULL, ANALYZE)', 'server_admin:42501'],
  ['ANALYZE', 'server_admin:42501'],
  ['CLUSTER', 'server_admin:42501'],
  ['SELEC 1', 'syntax:42601'],
  ["SELECT 'unterminated", 'syntax:42601'],
];

describe('sql guard', () => {
  it.each(ALLOWED)('allows %s', (sql) => {
    expect(verdict(sql)).toBe('allow');
  });

  it.each(DENIED)('refuses %s', (sql, expected) => {
    expect(verdict(sql)).toBe(expected);
  });

  it('judges the same text per tenant from one cached analysis', () => {
    expect(verdict('SELECT * FROM tenant_b.items', 'tenant_b')).toBe('allow');
    expect(verdict('SELECT * FROM tenant_b.items', 'tenant_a')).toBe('schema:42501');
  });

  it('shares verdicts across literals but never for literal-dependent rules', () => {
    guard = createSqlGuard({
      sharedSchemas: [],
      deniedFunctions: [],
      maxStatementBytes: 100_000,
      cacheSize: 100,
      checkNames: true,
    });
    expect(verdict('SELECT * FROM items WHERE id = 4242')).toBe('allow');
    expect(verdict('SELECT * FROM items WHERE id = 4343')).toBe('allow');
    expect(verdict('SELECT * FROM items WHERE id = 4343')).toBe('allow');
    expect(guard.stats).toEqual({ misses: 1, normalizedHits: 1, exactHits: 1 });
    expect(verdict("SELECT nextval('tenant_a.seq')")).toBe('allow');
    expect(verdict("SELECT nextval('tenant_b.seq')")).toBe('schema:42501');
    expect(verdict("SELECT set_config('app.x', '1', false)")).toBe('allow');
    expect(verdict("SELECT set_config('search_path', '1', false)")).toBe('session_state:42501');
    expect(verdict('DO $$ BEGIN PERFORM 1; END $$')).toBe('allow');
    expect(verdict("DO $$ BEGIN EXECUTE 'x'; END $$")).toBe('dynamic_sql:42501');
  });

  it('names the statement a lone DEALLOCATE drops, and nothing for DEALLOCATE among other statements', () => {
    const deallocate = (sql: string) => {
      const v = guard.check(sql, 'tenant_a');
      return isRefusal(v) ? v.rule : v.deallocate;
    };
    expect(deallocate('DEALLOCATE _pg3_0')).toEqual({ name: '_pg3_0' });
    expect(deallocate('deallocate prepare "A b"')).toEqual({ name: 'A b' });
    expect(deallocate('DEALLOCATE ALL')).toEqual({ name: null });
    expect(deallocate('DEALLOCATE a; SELECT 1')).toBeNull();
    expect(deallocate('SELECT 1')).toBeNull();
    expect(deallocate("DO $$ BEGIN EXECUTE 'DEALLOCATE a'; END $$")).toBe('dynamic_sql');
    expect(deallocate('DEALLOCATE pgtp_s1')).toBe('session_state');
  });

  it('allows text with no statement (empty, blank, comments, semicolons) and says it is empty', () => {
    const empty = (sql: string) => {
      const v = guard.check(sql, 'tenant_a');
      return isRefusal(v) ? v.rule : v.empty;
    };
    for (const sql of ['', '  \n', '-- x', '/* a */ /* b */', ';', ' ; ;'])
      expect(empty(sql), JSON.stringify(sql)).toBe(true);
    expect(empty('SELECT 1; ;')).toBe(false);
    expect(empty("CREATE FUNCTION f() RETURNS void LANGUAGE sql AS ''")).toBe(false);
  });

  it('reports the parser position of syntax errors', () => {
    const refusal = guard.check('SELECT * FROM WHERE', 'tenant_a');
    expect(isRefusal(refusal) && refusal.error.sqlstate).toBe('42601');
    expect(isRefusal(refusal) && refusal.error.position).toBe(15);
  });

  it('with name checks off still refuses identity changes and dynamic SQL', () => {
    const lax = createSqlGuard({
      sharedSchemas: [],
      deniedFunctions: [],
      maxStatementBytes: 100_000,
      cacheSize: 10,
      checkNames: false,
    });
    const rule = (sql: string): string | null => {
      const v = lax.check(sql, 'tenant_a');
      return isRefusal(v) ? v.rule : null;
    };
    expect(rule('SELECT * FROM tenant_b.items')).toBeNull();
    expect(rule('SET ROLE tenant_b')).toBe('session_state');
    expect(rule("DO $$ BEGIN EXECUTE 'x'; END $$")).toBe('dynamic_sql');
  });
});

describe('large statements are judged from their skeleton', () => {
  const policy = {
    sharedSchemas: ['shared'],
    deniedFunctions: ['risky_fn'],
    maxStatementBytes: 1 << 20,
    cacheSize: 100,
    checkNames: true,
    schemaTemplate: 'tenant_{tenant}',
    tenantPattern: '^[a-z0-9_]{1,48}$',
  };
  let big: SqlGuard;
  beforeAll(() => {
    big = createSqlGuard(policy);
  });
  const judged = (sql: string): string => {
    const v = big.check(sql, 'tenant_a');
    return isRefusal(v) ? `${v.rule}:${v.error.sqlstate}` : 'allow';
  };
  /** As the proxy decodes it from a message: a flat string. */
  const flat = (text: string): string => Buffer.from(text).toString();
  const hex = (bytes: number): string => flat('\\x' + 'c0ffee'.repeat(Math.ceil(bytes / 3)).slice(0, bytes * 2));

  it('allows a 40 MB text literal and a 10 MB bytea as hex, and parses only their skeleton', () => {
    const text = flat(`INSERT INTO items (id, name) VALUES (1, '${'x'.repeat(40 << 20)}')`);
    const bytea = flat(`INSERT INTO files (id, data) VALUES (1, '${hex(10 << 20)}'::bytea)`);
    for (const sql of [text, bytea]) {
      judged(sql); // warm
      const started = performance.now();
      expect(judged(sql)).toBe('allow');
      expect(performance.now() - started).toBeLessThan(250);
    }
  });

  it.each([
    [`SELECT '<pad>' FROM tenant_b.items`, 'schema:42501'],
    [`SELECT '<pad>' FROM items WHERE name = (SELECT name FROM tenant_b.items LIMIT 1)`, 'schema:42501'],
    [`SELECT nextval('tenant_b.seq'), '<pad>'`, 'schema:42501'],
    [`SELECT 'tenant_b.t'::regclass, '<pad>'`, 'schema:42501'],
    [`SELECT set_config('search_path', 'tenant_b', false), '<pad>'`, 'session_state:42501'],
    [`UPDATE pg_settings SET setting = 'tenant_b' WHERE name = 'search_path' AND '<pad>' <> ''`, 'session_state:42501'],
    // The long literal itself is what a rule reads: put back, it is judged as a name (PostgreSQL skips the spaces).
    [`SELECT nextval('<spaces>tenant_b.seq')`, 'schema:42501'],
    [`SELECT nextval('<spaces>tenant_a.seq')`, 'allow'],
    [`SELECT '<spaces>tenant_b.t'::regclass`, 'schema:42501'],
    [`SELECT set_config('<spaces>', 'x', false)`, 'allow'],
    // Bodies are code: a long one is parsed in full when within the limit, with every rule.
    [`DO $$ BEGIN PERFORM '<pad>'; EXECUTE 'SELECT 1'; END $$`, 'dynamic_sql:42501'],
    [`DO $body$ BEGIN PERFORM '<pad>'; PERFORM 1 FROM tenant_b.items; END $body$`, 'schema:42501'],
    [`DO $body$ BEGIN PERFORM '<pad>'; END $body$`, 'allow'],
    [
      `CREATE FUNCTION f() RETURNS int LANGUAGE sql AS $f$ SELECT length('<pad>') FROM tenant_b.items $f$`,
      'schema:42501',
    ],
    [`CREATE FUNCTION f() RETURNS int LANGUAGE plpgsql AS $f$ BEGIN RETURN length('<pad>'); END $f$`, 'allow'],
    [`CREATE FUNCTION f() RETURNS int LANGUAGE plpgsql AS $f$ BEGIN EXECUTE '<pad>'; END $f$`, 'dynamic_sql:42501'],
    [`SELECT "tenant_b".items.name, '<pad>' FROM tenant_b.items`, 'schema:42501'],
    [`SELECT E'<pad>\\n', $$<pad>$$, U&'<pad>', '<pad>' FROM items`, 'allow'],
    [`SELECT '<pad>' FROM WHERE`, 'syntax:42601'],
  ])('%s (padded to 200 KB)', (template, expected) => {
    const sql = flat(template.replaceAll('<pad>', 'p'.repeat(200_000)).replaceAll('<spaces>', ' '.repeat(200_000)));
    expect(judged(sql)).toBe(expected);
  });

  it('maps a syntax error to the position in the original text', () => {
    const sql = `SELECT '${'p'.repeat(100_000)}' FROM WHERE`;
    const v = big.check(sql, 'tenant_a');
    expect(isRefusal(v) && v.error.position).toBe(sql.indexOf('WHERE') + 1);
    expect(isRefusal(v) && v.error.message).toBe('syntax error at or near "WHERE"');
  });

  it('refuses (54000) what would still parse beyond policy.maxStatementBytes: the skeleton, a body, a name', () => {
    const small = createSqlGuard({ ...policy, maxStatementBytes: 4096 });
    const rule = (sql: string): string => {
      const v = small.check(sql, 'tenant_a');
      return isRefusal(v) ? `${v.rule}:${v.error.sqlstate}` : 'allow';
    };
    expect(rule(`INSERT INTO items VALUES (1, '${'x'.repeat(100_000)}')`)).toBe('allow');
    // Many short values: the skeleton is as long as the text.
    expect(
      rule(`INSERT INTO items VALUES ${Array.from({ length: 1000 }, (_, i) => `(${i}, 'v${i}')`).join(', ')}`),
    ).toBe('too_large:54000');
    expect(rule(`DO $$ BEGIN PERFORM '${'x'.repeat(10_000)}'; END $$`)).toBe('too_large:54000');
    expect(rule(`SELECT nextval('${' '.repeat(10_000)}tenant_a.seq')`)).toBe('too_large:54000');
    // E'' literals with \x escapes are kept as written (they can fail to lex), so they count in the skeleton.
    expect(rule(`SELECT E'${'\\x41'.repeat(2000)}'`)).toBe('too_large:54000');
    const refusal = small.check(`SELECT ${'1, '.repeat(3000)}1`, 'tenant_a');
    expect(isRefusal(refusal) && refusal.error.message).toMatch(
      /^statement of \d+ bytes exceeds the guard's limit of 4096 bytes/,
    );
  });

  it('never changes a verdict: the whole corpus judged from skeletons with every literal set aside', () => {
    const shape = tenantSchemaShape('tenant_{tenant}', '^[a-z0-9_]{1,48}$');
    const denied = new Set(['risky_fn']);
    let compared = 0;
    for (const sql of [...ALLOWED, ...DENIED.map(([text]) => text)]) {
      const skeleton = buildSkeleton(sql, 1);
      if (skeleton === null) continue; // no literal, or a text the scanner leaves whole
      const whole = analyzeSql(sql, denied, shape, 100_000);
      const fromSkeleton = analyzeSql(skeleton, denied, shape, 100_000);
      expect({ sql, ...fromSkeleton, schemas: [...fromSkeleton.schemas] }).toEqual({
        sql,
        ...whole,
        schemas: [...whole.schemas],
      });
      compared++;
    }
    expect(compared).toBeGreaterThanOrEqual(100);
  });
});
