// verify-isolation's statement cases as tenant a: b's names in every position, oracles, session identity, escape
// hatches and shared objects.
import { channelPrefix } from '../channels/names.js';
import { markerIn } from './probe.js';
import type { AttackCase, Facts } from './types.js';

const NOT_THERE = ['42P01', '42883', '3F000', '42704'] as const;

/** b's names in the positions of a statement where the guard judges names (README, Security model: Names). */
export function nameCases(f: Facts): AttackCase[] {
  const S = f.b.schema;
  const X = f.secret;
  const T = `${S}.${X}_t`;
  const P = f.probe;
  const c = (name: string, sql: string, extra: Partial<AttackCase> = {}): AttackCase => ({
    category: 'names',
    name,
    rule: 'schema',
    sql,
    ...extra,
  });
  return [
    c('FROM', `SELECT * FROM ${T}`),
    c('TABLE', `TABLE ${T}`),
    c('JOIN', `SELECT t.* FROM (SELECT 1) x JOIN ${T} t ON true`),
    c('scalar subquery', `SELECT (SELECT ${X}_col FROM ${T} LIMIT 1) AS v`),
    c('CTE', `WITH w AS (SELECT * FROM ${T}) SELECT * FROM w`),
    c('LATERAL', `SELECT l.* FROM (SELECT 1) x, LATERAL (SELECT * FROM ${T}) l`),
    c('UNION', `SELECT 'x' AS v UNION ALL SELECT ${X}_col FROM ${T}`),
    c('EXISTS (existence oracle)', `SELECT 1 AS hit WHERE EXISTS (SELECT 1 FROM ${T})`, {
      control: `SELECT 1 AS hit WHERE EXISTS (SELECT 1 FROM ${S}.${X}_missing)`,
    }),
    c('extended protocol (Parse/Bind)', `SELECT * FROM ${T} WHERE id > $1`, { values: [0] }),
    c('view', `SELECT * FROM ${S}.${X}_view`),
    c('function call', `SELECT ${S}.${X}_fn() AS v`),
    c('type', `SELECT enum_range(NULL::${S}.${X}_mood)::text AS v`),
    c('column reference with a schema', `SELECT ${S}.${X}_t.${X}_col FROM ${S}.${X}_t`),
    c('three-part name', `SELECT * FROM ${f.database}.${S}.${X}_t`, { rule: 'cross_database' }),
    c('the tenant registry', `SELECT * FROM ${f.registrySchema}.tenants`),
    c('INSERT target', `INSERT INTO ${T} (${X}_col) VALUES ('from tenant a')`, { leakOnSuccess: true }),
    c('UPDATE ... RETURNING', `UPDATE ${T} SET ${X}_col = ${X}_col RETURNING ${X}_col`, { leakOnSuccess: true }),
    c('DELETE target', `DELETE FROM ${T} WHERE false`, { leakOnSuccess: true }),
    c('MERGE target', `MERGE INTO ${T} t USING (SELECT 1 AS id) s ON false WHEN NOT MATCHED THEN DO NOTHING`, {
      leakOnSuccess: true,
    }),
    c('LOCK', `BEGIN; LOCK TABLE ${T} IN ACCESS SHARE MODE; COMMIT`, { leakOnSuccess: true }),
    c('CREATE TABLE AS', `CREATE TEMP TABLE ${P}_ctas AS SELECT * FROM ${T}; SELECT * FROM ${P}_ctas`, {
      fresh: true,
    }),
    c('SELECT INTO', `SELECT * INTO TEMP ${P}_into FROM ${T}; SELECT * FROM ${P}_into`, { fresh: true }),
    c('LIKE', `CREATE TEMP TABLE ${P}_like (LIKE ${T}); SELECT * FROM ${P}_like`, { fresh: true }),
    c('REFERENCES', `CREATE TABLE ${P}_ref (id int REFERENCES ${T} (id))`, {
      leakOnSuccess: true,
      cleanup: [`DROP TABLE IF EXISTS ${P}_ref`],
    }),
    c('INHERITS', `CREATE TABLE ${P}_inh () INHERITS (${T})`, {
      leakOnSuccess: true,
      cleanup: [`DROP TABLE IF EXISTS ${P}_inh`],
    }),
    c('view over it', `CREATE TEMP VIEW ${P}_v AS SELECT * FROM ${T}; SELECT * FROM ${P}_v`, { fresh: true }),
    c(
      'SQL function body',
      `CREATE FUNCTION ${P}_sqlf() RETURNS SETOF text LANGUAGE sql AS $$ SELECT ${X}_col FROM ${T} $$; SELECT ${P}_sqlf() AS v`,
      { cleanup: [`DROP FUNCTION IF EXISTS ${P}_sqlf()`] },
    ),
    c(
      'PL/pgSQL function body',
      `CREATE FUNCTION ${P}_plf() RETURNS text LANGUAGE plpgsql AS $$ DECLARE r text; BEGIN SELECT ${X}_col INTO r FROM ${T} LIMIT 1; RETURN r; END $$; SELECT ${P}_plf() AS v`,
      { cleanup: [`DROP FUNCTION IF EXISTS ${P}_plf()`] },
    ),
    c('DO block body', `DO $$ BEGIN PERFORM 1 FROM ${T}; END $$`, { leakOnSuccess: true }),
  ];
}

/** Telling b's objects from missing ones: reg* casts, computed names, literal names and the errors they give. */
export function oracleCases(f: Facts): AttackCase[] {
  const S = f.b.schema;
  const X = f.secret;
  const c = (name: string, sql: string, control: string, rule = 'schema'): AttackCase => ({
    category: 'oracles',
    name,
    rule,
    sql,
    control,
  });
  const cases: AttackCase[] = [
    c(
      'literal name cast to regclass',
      `SELECT '${S}.${X}_t'::regclass::oid AS v`,
      `SELECT '${S}.${X}_missing'::regclass::oid AS v`,
    ),
    c(
      'computed name cast to regclass',
      `SELECT (concat('${S}', '.${X}_t'))::regclass::oid IS NOT NULL AS v`,
      `SELECT (concat('${f.missingSchema}', '.${X}_t'))::regclass::oid IS NOT NULL AS v`,
      'catalog',
    ),
    c(
      'regclass(text) call',
      `SELECT regclass('${S}.${X}_t')::oid AS v`,
      `SELECT regclass('${S}.${X}_missing')::oid AS v`,
    ),
    c('schema existence by error', `SELECT * FROM ${S}.${X}_missing`, `SELECT * FROM ${f.missingSchema}.${X}_missing`),
    c(
      'object existence by error',
      `SELECT * FROM ${S}.${X}_t WHERE false`,
      `SELECT * FROM ${S}.${X}_missing WHERE false`,
    ),
    c(
      'nextval of a computed name',
      `SELECT nextval(concat('${S}', '.${X}_seq')) IS NOT NULL AS v`,
      `SELECT nextval(concat('${f.missingSchema}', '.${X}_seq')) IS NOT NULL AS v`,
      'roles',
    ),
    c(
      'size of a computed relation name',
      `SELECT pg_relation_size(concat('${S}', '.${X}_t')) AS v`,
      `SELECT pg_relation_size(concat('${f.missingSchema}', '.${X}_t')) AS v`,
      'roles',
    ),
    c(
      'tenant-shaped string literal',
      `SELECT v FROM (VALUES ('${S}.${X}_t'::regclass)) s(v)`,
      `SELECT v FROM (VALUES ('${S}.${X}_missing'::regclass)) s(v)`,
    ),
  ];
  const oidCast = (kind: 'table' | 'function' | 'type' | 'namespace' | 'role', type: string): void => {
    const oid = f.oids[kind];
    if (oid === undefined) return;
    cases.push(
      c(
        `oid of b's ${kind} cast to ${type}`,
        `SELECT ${oid}::oid::${type}::text AS v`,
        `SELECT ${f.missingOid}::oid::${type}::text AS v`,
        'catalog',
      ),
    );
  };
  oidCast('table', 'regclass');
  oidCast('function', 'regprocedure');
  oidCast('type', 'regtype');
  oidCast('namespace', 'regnamespace');
  oidCast('role', 'regrole');
  return cases;
}

/** Moving the session to b: the pin's search_path and role, through every path to them. Fresh connections each. */
export function sessionCases(f: Facts): AttackCase[] {
  const S = f.b.schema;
  const X = f.secret;
  const read = `SELECT ${X}_col AS v FROM ${X}_t`;
  const c = (name: string, sql: string, extra: Partial<AttackCase> = {}): AttackCase => ({
    category: 'session',
    name,
    rule: 'session_state',
    sql,
    fresh: true,
    absent: NOT_THERE,
    ...extra,
  });
  const cases: AttackCase[] = [
    c(
      'UPDATE pg_settings (search_path)',
      `UPDATE pg_settings SET setting = '${S}' WHERE name = 'search_path'; ${read}`,
    ),
    c('set_config(search_path)', `SELECT set_config('search_path', '${S}', false) IS NULL AS x; ${read}`),
    c(
      'set_config with a computed name',
      `SELECT set_config(concat('search', '_path'), '${S}', false) IS NULL AS x; ${read}`,
    ),
    c('SET search_path', `SET search_path TO ${S}; ${read}`),
    c('SET LOCAL search_path', `BEGIN; SET LOCAL search_path TO ${S}; ${read}; COMMIT`),
    c('DO block calling set_config', `DO $$ BEGIN PERFORM set_config('search_path', '${S}', false); END $$; ${read}`),
    c(
      'function-level SET search_path',
      `CREATE FUNCTION ${f.probe}_sp() RETURNS SETOF text LANGUAGE plpgsql SET search_path = ${S} AS $$ BEGIN RETURN QUERY SELECT ${X}_col FROM ${X}_t; END $$; SELECT ${f.probe}_sp() AS v`,
      { cleanup: [`DROP FUNCTION IF EXISTS ${f.probe}_sp()`] },
    ),
    c('RESET ALL', `RESET ALL; ${read}`),
    c('DISCARD ALL', `DISCARD ALL; ${read}`),
    c('SET SESSION AUTHORIZATION', `SET SESSION AUTHORIZATION ${f.b.role ?? S}; SELECT * FROM ${S}.${X}_t`),
  ];
  // The SET alone, then the read as a statement of its own (a new transaction, perhaps another server).
  cases.push({
    category: 'session',
    name: 'search_path in a later statement',
    rule: 'session_state',
    run: async (ctx) => {
      const client = await ctx.connector.connect('a');
      try {
        const set = await client.query(`SET search_path TO ${S}`).then(
          () => null,
          (err: { code?: string; message?: string }) => err,
        );
        try {
          const r = await client.query(read);
          const seen = markerIn(f, JSON.stringify(r.rows));
          if (seen !== null) return { outcome: 'leaked', detail: `saw "${seen}" after SET search_path` };
          return { outcome: 'harmless', detail: 'the next statement read nothing of b' };
        } catch (err) {
          if (set !== null)
            return { outcome: 'refused', sqlstate: set.code ?? 'unknown', detail: set.message ?? 'refused' };
          return { outcome: 'harmless', detail: `the next statement: ${(err as Error).message}` };
        }
      } finally {
        await client.end().catch(() => undefined);
      }
    },
  });
  if (f.b.role !== null) {
    cases.push(
      c("SET ROLE to b's role", `SET ROLE ${f.b.role}; SELECT ${X}_col AS v FROM ${S}.${X}_t`),
      c(
        'set_config(role)',
        `SELECT set_config('role', '${f.b.role}', false) IS NULL AS x; SELECT ${X}_col AS v FROM ${S}.${X}_t`,
      ),
    );
  }
  return cases;
}

/** SQL the guard cannot see into, files, languages and limits. */
export function escapeCases(f: Facts): AttackCase[] {
  const S = f.b.schema;
  const X = f.secret;
  const P = f.probe;
  const cases: AttackCase[] = [
    {
      category: 'escape',
      name: 'query_to_xml with a computed query',
      rule: 'dynamic_sql',
      sql: `SELECT query_to_xml('SELECT * FROM ' || '${S}' || '.${X}_t', true, false, '')::text AS v`,
    },
    {
      category: 'escape',
      name: 'ts_stat running SQL text',
      rule: 'dynamic_sql',
      sql: `SELECT word FROM ts_stat('SELECT to_tsvector(''simple'', ${X}_col) FROM ' || '${S}' || '.${X}_t')`,
    },
    {
      category: 'escape',
      name: 'DO block with EXECUTE',
      rule: 'dynamic_sql',
      sql: `DO $$ BEGIN EXECUTE 'CREATE TEMP TABLE ${P}_do AS SELECT * FROM ' || '${S}' || '.${X}_t'; END $$; SELECT * FROM ${P}_do`,
      fresh: true,
    },
    {
      category: 'escape',
      name: 'PL/pgSQL RETURN QUERY EXECUTE',
      rule: 'dynamic_sql',
      sql: `CREATE FUNCTION ${P}_exec() RETURNS SETOF text LANGUAGE plpgsql AS $$ BEGIN RETURN QUERY EXECUTE 'SELECT ${X}_col FROM ' || '${S}' || '.${X}_t'; END $$; SELECT ${P}_exec() AS v`,
      cleanup: [`DROP FUNCTION IF EXISTS ${P}_exec()`],
    },
    {
      category: 'escape',
      name: 'function in language internal',
      rule: 'language',
      sql: `CREATE FUNCTION ${P}_int(oid) RETURNS text LANGUAGE internal AS 'pg_get_functiondef'`,
      leakOnSuccess: true,
      cleanup: [`DROP FUNCTION IF EXISTS ${P}_int(oid)`],
    },
    {
      category: 'escape',
      name: "large objects (b's large object)",
      rule: 'file_access',
      sql: `SELECT string_agg(convert_from(lo_get(m.oid), 'UTF8'), ',') AS v FROM pg_largeobject_metadata m`,
    },
    {
      category: 'escape',
      name: 'server file read',
      rule: 'file_access',
      sql: `SELECT pg_read_file('PG_VERSION') AS v`,
      leakOnSuccess: true,
    },
    {
      category: 'escape',
      name: 'unparsable statement',
      rule: 'syntax',
      sql: `SELECT ${X}_col FROM ${S}.${X}_t WHERE`,
    },
    {
      category: 'escape',
      name: 'statement over policy.maxStatementBytes',
      rule: 'too_large',
      sql: `SELECT ${X}_col AS v FROM ${S}.${X}_t WHERE id NOT IN (${'0,'.repeat(Math.ceil(f.maxStatementBytes / 2) + 512)}0)`,
    },
  ];
  const denied = f.deniedFunctions[0];
  if (denied !== undefined) {
    cases.push({
      category: 'escape',
      name: `policy.deniedFunctions (${denied})`,
      rule: 'denied_function',
      sql: `SELECT ${denied}()`,
      leakOnSuccess: true,
      absent: ['42883'],
    });
  }
  return cases;
}

/** Other sessions and objects every tenant shares. */
export function sharedCases(f: Facts): AttackCase[] {
  const pid = f.bPids[0] ?? 0;
  return [
    {
      category: 'shared',
      name: 'pg_stat_activity',
      rule: 'server_admin',
      sql: 'SELECT pid, usename, state, query FROM pg_stat_activity',
    },
    {
      category: 'shared',
      name: 'pg_stat_get_backend_activity',
      rule: 'server_admin',
      sql: 'SELECT pg_stat_get_backend_activity(i) AS q FROM pg_stat_get_backend_idset() i',
    },
    {
      category: 'shared',
      name: "pg_cancel_backend(b's pid)",
      rule: 'server_admin',
      sql: `SELECT pg_cancel_backend(${pid}) AS v`,
      leakIf: (rows) => ((rows[0] as { v?: unknown } | undefined)?.v === true ? "signalled b's backend" : null),
    },
    {
      category: 'shared',
      name: 'COMMENT ON DATABASE',
      rule: 'server_admin',
      run: async (ctx) => {
        const db = `"${f.database.replace(/"/g, '""')}"`;
        const before = await ctx.a
          .query<{ c: string | null }>(
            "SELECT shobj_description(d.oid, 'pg_database') AS c FROM pg_database d WHERE d.datname = current_database()",
          )
          .then((r) => r.rows[0]?.c ?? null)
          .catch(() => null);
        try {
          await ctx.a.query(`COMMENT ON DATABASE ${db} IS 'verify-isolation ${f.probe}'`);
        } catch (err) {
          const e = err as { code?: string; message?: string };
          return { outcome: 'refused', sqlstate: e.code ?? 'unknown', detail: e.message ?? 'refused' };
        }
        const restore = before === null ? 'NULL' : `'${before.replace(/'/g, "''")}'`;
        await ctx.a.query(`COMMENT ON DATABASE ${db} IS ${restore}`).catch(() => undefined);
        return { outcome: 'leaked', detail: 'wrote the comment of the database every tenant shares (restored)' };
      },
    },
  ];
}

/**
 * Channels: b listens (when the proxy lets it); a notifies on the same name with NOTIFY and pg_notify, and on the
 * name b's channel has on the server (channels/names.ts); b must hear none of it.
 */
export function channelCases(f: Facts): AttackCase[] {
  return [
    {
      category: 'shared',
      name: 'NOTIFY on a channel b listens to',
      rule: 'unsupported',
      run: async (ctx) => {
        const channel = `${f.secret}_chan`;
        const spelled = `${channelPrefix(f.b.schema)}${channel}`;
        const heard: string[] = [];
        const listener = (msg: { channel: string }): void => void heard.push(msg.channel);
        ctx.b.on('notification', listener);
        try {
          const listening = await ctx.b.query(`LISTEN ${channel}`).then(
            () => true,
            () => false,
          );
          // Refused only when every attempt was; one that ran is judged by what b heard.
          let sent: { code?: string; message?: string } | null = null;
          let ran = false;
          for (const sql of [
            `NOTIFY ${channel}, 'from tenant a'`,
            `SELECT pg_notify('${channel}', 'from tenant a')`,
            `NOTIFY "${spelled}", 'from tenant a'`,
          ]) {
            const error = await ctx.a.query(sql).then(
              () => null,
              (err: { code?: string; message?: string }) => err,
            );
            if (error === null) ran = true;
            else sent = error;
          }
          await new Promise((resolve) => setTimeout(resolve, 300));
          await ctx.b.query(`UNLISTEN ${channel}`).catch(() => undefined);
          if (heard.length > 0) return { outcome: 'leaked', detail: "tenant b heard tenant a's notification" };
          if (!ran && sent !== null)
            return { outcome: 'refused', sqlstate: sent.code ?? 'unknown', detail: sent.message ?? '' };
          return {
            outcome: 'harmless',
            detail: listening ? 'b listened and heard nothing' : 'b could not listen; nothing heard',
          };
        } finally {
          ctx.b.off('notification', listener);
        }
      },
    },
  ];
}
