import { beforeAll, describe, expect, it } from 'vitest';
import { applySplices } from '../../src/guard/catalog-refs.js';
import { catalogFrame } from '../../src/guard/rewrite-frame.js';
import { createSqlGuard, isRefusal, loadParser, type SqlGuard } from '../../src/guard/sql-guard.js';

let guard: SqlGuard;
beforeAll(async () => {
  await loadParser();
  guard = createSqlGuard({
    sharedSchemas: [],
    deniedFunctions: [],
    maxStatementBytes: 1024 * 1024,
    cacheSize: 100,
    checkNames: true,
    catalogFilter: true,
    schemaTemplate: 'tenant_{tenant}',
    tenantPattern: '^[a-z0-9_]{1,40}$',
  });
});

/** The text the server receives for `sql` sent by tenant_a, or the refusal's message. */
function rewrite(sql: string): string {
  const verdict = guard.check(sql, 'tenant_a');
  if (isRefusal(verdict)) return `REFUSED ${verdict.error.sqlstate}: ${verdict.error.message}`;
  if (verdict.catalog === null) return sql;
  return applySplices(Buffer.from(sql), verdict.catalog.splices, 'pgtp:0123456789abcdef:').toString();
}

describe('channel rewrite', () => {
  it.each([
    ["NOTIFY jobs, 'it''s \\ done'", `NOTIFY "pgtp:0123456789abcdef:jobs", E'it''s \\\\ done'`],
    ['  NOTIFY "Jobs" ; SELECT 1', '  NOTIFY "pgtp:0123456789abcdef:Jobs"; SELECT 1'],
    ["SELECT pg_notify('jobs', 'x')", "SELECT pgtp_catalog.pg_notify('jobs', 'x')"],
    ['SELECT pg_catalog . pg_notify($1, $2)', 'SELECT pgtp_catalog.pg_notify($1, $2)'],
    ['LISTEN jobs', 'LISTEN pgtp_listen_stand_in'],
    ['BEGIN; UNLISTEN *; COMMIT', 'BEGIN; UNLISTEN pgtp_listen_stand_in; COMMIT'],
  ])('%s', (sql, expected) => {
    expect(rewrite(sql)).toBe(expected);
  });

  it('records LISTEN and UNLISTEN for the proxy to answer, and whether the text holds nothing else', () => {
    const only = guard.check('LISTEN a; UNLISTEN *', 'tenant_a');
    expect(isRefusal(only) ? null : only.channels).toEqual({
      actions: [
        { listen: true, channel: 'a', index: 0 },
        { listen: false, channel: null, index: 1 },
      ],
      only: true,
    });
    const mixed = guard.check('BEGIN; LISTEN "B"', 'tenant_a');
    expect(isRefusal(mixed) ? null : mixed.channels).toEqual({
      actions: [{ listen: true, channel: 'B', index: 1 }],
      only: false,
    });
    // Only pg_notify needs the catalog filter's objects.
    const notify = guard.check('NOTIFY x', 'tenant_a');
    expect(isRefusal(notify) ? null : notify.catalog?.filtered).toBe(false);
    const call = guard.check("SELECT pg_notify('x', '')", 'tenant_a');
    expect(isRefusal(call) ? null : call.catalog?.filtered).toBe(true);
  });
});

describe('catalog rewrite', () => {
  it.each([
    ['SELECT relname FROM pg_class', 'SELECT relname FROM pgtp_catalog.pg_class'],
    ['select * from PG_CATALOG . "pg_namespace" n', 'select * from pgtp_catalog.pg_namespace n'],
    ['SELECT * FROM information_schema.tables', 'SELECT * FROM pgtp_catalog.tables'],
    [
      'SELECT pg_catalog.pg_get_viewdef(c.oid) FROM pg_catalog.pg_class c',
      'SELECT pgtp_catalog.pg_get_viewdef(c.oid) FROM pgtp_catalog.pg_class c',
    ],
    ['SELECT c.oid::regclass FROM pg_class c', 'SELECT pgtp_catalog.regclass_in(c.oid) FROM pgtp_catalog.pg_class c'],
    ['SELECT (c.oid)::pg_catalog.regclass FROM t c', 'SELECT (pgtp_catalog.regclass_in(c.oid)) FROM t c'],
    ['SELECT 16400::regclass', 'SELECT pgtp_catalog.regclass_in(16400)'],
    ["SELECT '16400'::regclass", "SELECT pgtp_catalog.regclass_in('16400')"],
    ["SELECT 'items'::regclass", "SELECT 'items'::regclass"],
    ["SELECT 'x'::regrole", "SELECT pgtp_catalog.regrole_in('x')"],
    ['SELECT CAST(c.oid AS regtype) FROM t c', 'SELECT pgtp_catalog.regtype_in(c.oid ) FROM t c'],
    // A parameter (psycopg's TypeInfo.fetch: WHERE t.oid = %(name)s::regtype) is resolved by the wrapper as text, never
    // by the reg* type's input at Bind.
    [
      'SELECT oid FROM pg_type t WHERE t.oid = $1::regtype',
      'SELECT oid FROM pgtp_catalog.pg_type t WHERE t.oid = pgtp_catalog.regtype_in($1)',
    ],
    ['SELECT $1::pg_catalog.regclass', 'SELECT pgtp_catalog.regclass_in($1)'],
    ['SELECT ($1)::regclass', 'SELECT (pgtp_catalog.regclass_in($1))'],
    ['SELECT $1::text::regnamespace', 'SELECT pgtp_catalog.regnamespace_in($1::text)'],
    ['SELECT CAST($1 AS regclass)', 'SELECT pgtp_catalog.regclass_in($1 )'],
    ['SELECT $1::regclass[]', 'REFUSED 42501: a cast to regclass[] is not allowed through pg-tenant-proxy'],
    [
      'SELECT format_type(a.atttypid, a.atttypmod) FROM pg_attribute a',
      'SELECT pgtp_catalog.format_type(a.atttypid, a.atttypmod) FROM pgtp_catalog.pg_attribute a',
    ],
    ['SELECT 1 FROM items', 'SELECT 1 FROM items'],
    ['CREATE TABLE pg_tables (id int)', 'CREATE TABLE pg_tables (id int)'],
    ['SELECT * FROM pg_stats', 'SELECT * FROM pgtp_catalog.pg_stats'],
    ['SELECT * FROM pg_locks', 'SELECT * FROM pgtp_catalog.pg_locks'],
    ['SELECT é, * FROM pg_class', 'SELECT é, * FROM pgtp_catalog.pg_class'],
    ['SELECT * FROM pg_stat_activity', 'SELECT * FROM pgtp_catalog.pg_stat_activity'],
    [
      'SELECT pg_terminate_backend(pid) FROM pg_catalog.pg_stat_activity WHERE pid = $1',
      'SELECT pgtp_catalog.pg_terminate_backend(pid) FROM pgtp_catalog.pg_stat_activity WHERE pid = $1',
    ],
    ['SELECT pg_catalog.pg_cancel_backend(42)', 'SELECT pgtp_catalog.pg_cancel_backend(42)'],
    [
      'CREATE FUNCTION kill(int) RETURNS bool LANGUAGE sql AS $$ SELECT pg_terminate_backend($1) $$',
      'REFUSED 42501: the function pg_terminate_backend inside a function body or a long statement is not allowed through pg-tenant-proxy',
    ],
    [
      'SELECT pg_stat_get_activity(NULL)',
      'REFUSED 42501: the function pg_stat_get_activity() is not allowed through pg-tenant-proxy',
    ],
    [
      'SELECT * FROM pg_catalog.pg_nothing',
      'REFUSED 42501: reading pg_catalog.pg_nothing, which the catalog filter does not cover, is not allowed through pg-tenant-proxy',
    ],
    [
      'WITH pg_class AS (SELECT 1) SELECT * FROM pg_class',
      'REFUSED 42501: a WITH query named pg_class (the name of a filtered catalog) is not allowed through pg-tenant-proxy',
    ],
    [
      'SELECT * FROM pg_catalog/**/.pg_class',
      'REFUSED 42501: the catalog pg_catalog.pg_class written in a form the proxy cannot rewrite is not allowed through pg-tenant-proxy',
    ],
    [
      "CREATE FUNCTION f() RETURNS bigint LANGUAGE sql AS 'SELECT count(*) FROM pg_class'",
      'REFUSED 42501: the catalog pg_class inside a function body or a long statement is not allowed through pg-tenant-proxy',
    ],
  ])('%s', (sql, expected) => {
    expect(rewrite(sql)).toBe(expected);
  });

  it('statements sharing a normalised form each get their own splices', () => {
    expect(rewrite("SELECT 'a' AS x, relname FROM pg_class")).toBe(
      "SELECT 'a' AS x, relname FROM pgtp_catalog.pg_class",
    );
    expect(rewrite("SELECT 'abcdef' AS x, relname FROM pg_class")).toBe(
      "SELECT 'abcdef' AS x, relname FROM pgtp_catalog.pg_class",
    );
  });

  it('a statement naming no catalog has no rewrite and its frame goes out as it is', () => {
    const verdict = guard.check('SELECT * FROM items WHERE id = 1', 'tenant_a');
    expect(isRefusal(verdict)).toBe(false);
    const frame = Buffer.from('Q\0\0\0\0SELECT 1\0');
    expect(catalogFrame(frame, 0, frame.length, { analysis: verdict as never }, '')).toBeNull();
  });

  it('rewrites the text of Query and Parse frames and fixes their length', () => {
    const sql = 'SELECT relname FROM pg_class';
    const analysis = guard.check(sql, 'tenant_a');
    const query = Buffer.concat([Buffer.from('Q\0\0\0\0'), Buffer.from(sql), Buffer.from([0])]);
    query.writeUInt32BE(query.length - 1, 1);
    const out = catalogFrame(query, 0, query.length, { analysis: analysis as never }, '')!;
    expect(out.readUInt32BE(1)).toBe(out.length - 1);
    expect(out.subarray(5, out.length - 1).toString()).toBe('SELECT relname FROM pgtp_catalog.pg_class');
    const parse = Buffer.concat([Buffer.from('P\0\0\0\0s1\0'), Buffer.from(sql), Buffer.from([0, 0, 1, 0, 0, 0, 23])]);
    parse.writeUInt32BE(parse.length - 1, 1);
    const rewritten = catalogFrame(parse, 0, parse.length, { analysis: analysis as never }, '')!;
    expect(rewritten.readUInt32BE(1)).toBe(rewritten.length - 1);
    expect(rewritten.subarray(5).toString('latin1')).toBe(
      's1\0SELECT relname FROM pgtp_catalog.pg_class\0\0\u0001\0\0\0\u0017',
    );
  });
});

describe('catalog filter not installed', () => {
  it('refuses catalog statements with a hint naming the install command, and nothing else', () => {
    const g = createSqlGuard({
      sharedSchemas: [],
      deniedFunctions: [],
      maxStatementBytes: 1024 * 1024,
      cacheSize: 100,
      checkNames: true,
      catalogFilter: true,
    });
    g.catalogFilterMissing('the catalog filter (schema pgtp_catalog) is not installed in database "x"');
    const refused = g.check('SELECT relname FROM pg_class', 'tenant_a');
    expect(isRefusal(refused)).toBe(true);
    if (!isRefusal(refused)) return;
    expect(refused.error.sqlstate).toBe('42501');
    expect(refused.error.message).toContain('not installed');
    expect(refused.error.hint).toContain('pg-tenant-proxy catalog install');
    expect(isRefusal(g.check('SELECT 1 FROM items', 'tenant_a'))).toBe(false);
    g.catalogFilterMissing(null);
    expect(isRefusal(g.check('SELECT relname FROM pg_class', 'tenant_a'))).toBe(false);
  });
});
