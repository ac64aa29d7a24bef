// Tenant b's side of verify-isolation: objects of every kind carrying the run's secret, planted through the proxy.
import type pg from 'pg';
import type { PlantedKind } from './types.js';

/** One object of every kind the catalogs describe, in b's own schema (its pinned search_path), named after `x`. */
export function plantStatements(x: string): string[] {
  return [
    `CREATE TYPE ${x}_mood AS ENUM ('${x}_happy', '${x}_sad')`,
    `CREATE TABLE ${x}_t (id serial PRIMARY KEY, ${x}_col text DEFAULT '${x}_default' CONSTRAINT ${x}_check CHECK (${x}_col <> '${x}_checkbody'), mood ${x}_mood)`,
    `CREATE INDEX ${x}_idx ON ${x}_t (${x}_col)`,
    `CREATE SEQUENCE ${x}_seq`,
    `CREATE VIEW ${x}_view AS SELECT id, ${x}_col FROM ${x}_t WHERE ${x}_col <> '${x}_viewbody'`,
    `CREATE MATERIALIZED VIEW ${x}_mv AS SELECT id FROM ${x}_t`,
    `CREATE FUNCTION ${x}_fn() RETURNS text LANGUAGE sql AS $$ SELECT '${x}_body' $$`,
    `CREATE FUNCTION ${x}_trigfn() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RETURN NEW; END $$`,
    `CREATE TRIGGER ${x}_trigger BEFORE INSERT ON ${x}_t FOR EACH ROW EXECUTE FUNCTION ${x}_trigfn()`,
    `CREATE RULE ${x}_rule AS ON UPDATE TO ${x}_view DO INSTEAD NOTHING`,
    `CREATE POLICY ${x}_policy ON ${x}_t USING (${x}_col <> '${x}_policybody')`,
    `CREATE STATISTICS ${x}_stats ON id, ${x}_col FROM ${x}_t`,
    `CREATE TABLE ${x}_child () INHERITS (${x}_t)`,
    `COMMENT ON TABLE ${x}_t IS '${x}_comment'`,
    `COMMENT ON COLUMN ${x}_t.${x}_col IS '${x}_colcomment'`,
    `COMMENT ON FUNCTION ${x}_fn() IS '${x}_fncomment'`,
    `INSERT INTO ${x}_t (${x}_col) VALUES ('${x}_row')`,
    `ANALYZE ${x}_t`,
  ];
}

/** What b dropped at the end when the tenants were given (throwaway ones are deleted whole). */
export function unplantStatements(x: string): string[] {
  return [
    `DROP VIEW IF EXISTS ${x}_view CASCADE`,
    `DROP MATERIALIZED VIEW IF EXISTS ${x}_mv CASCADE`,
    `DROP TABLE IF EXISTS ${x}_child, ${x}_t CASCADE`,
    `DROP FUNCTION IF EXISTS ${x}_fn(), ${x}_trigfn() CASCADE`,
    `DROP SEQUENCE IF EXISTS ${x}_seq`,
    `DROP TYPE IF EXISTS ${x}_mood CASCADE`,
  ];
}

/** Optional state: refused by a correctly configured proxy, planted by a misconfigured one. */
export function optionalPlants(x: string): Array<{ name: string; sql: string }> {
  return [{ name: 'largeObject', sql: `SELECT lo_from_bytea(0, convert_to('${x}_largeobject', 'UTF8'))::int8 AS oid` }];
}

export interface Planted {
  oids: Partial<Record<PlantedKind, number>>;
  pids: number[];
  /** Role b's statements run as, when that is a role of b's own (tenancy.roles). */
  role: string | null;
}

/** Plants as tenant b; a statement the proxy refuses fails the run (b must be able to use its own schema). */
export async function plant(b: pg.Client, x: string): Promise<Planted> {
  for (const sql of plantStatements(x)) {
    try {
      await b.query(sql);
    } catch (err) {
      throw new Error(`tenant b could not plant its objects (${sql.slice(0, 60)}…): ${(err as Error).message}`, {
        cause: err,
      });
    }
  }
  const oids: Partial<Record<PlantedKind, number>> = {};
  const { rows } = await b.query<Record<string, string | null>>(
    `SELECT '${x}_t'::regclass::oid::int8 AS table, '${x}_view'::regclass::oid::int8 AS view,
            '${x}_idx'::regclass::oid::int8 AS index, '${x}_seq'::regclass::oid::int8 AS sequence,
            '${x}_fn()'::regprocedure::oid::int8 AS function, '${x}_mood'::regtype::oid::int8 AS type,
            (SELECT oid::int8 FROM pg_constraint WHERE conname = '${x}_check' AND conrelid = '${x}_t'::regclass) AS constraint,
            (SELECT oid::int8 FROM pg_trigger WHERE tgname = '${x}_trigger' LIMIT 1) AS trigger,
            (SELECT oid::int8 FROM pg_rewrite WHERE rulename = '${x}_rule' LIMIT 1) AS rule,
            (SELECT oid::int8 FROM pg_statistic_ext WHERE stxname = '${x}_stats' LIMIT 1) AS statistics,
            (SELECT oid::int8 FROM pg_namespace WHERE nspname = current_schema() LIMIT 1) AS namespace,
            CASE WHEN current_user <> session_user THEN (SELECT oid::int8 FROM pg_roles WHERE rolname = current_user LIMIT 1) END AS role,
            CASE WHEN current_user <> session_user THEN current_user::text END AS rolname,
            pg_backend_pid() AS pid`,
  );
  const row = rows[0]!;
  for (const [key, value] of Object.entries(row)) {
    if (key === 'rolname' || key === 'pid' || value === null) continue;
    oids[key as PlantedKind] = Number(value);
  }
  for (const extra of optionalPlants(x)) {
    try {
      const r = await b.query<{ oid: string }>(extra.sql);
      if (r.rows[0]?.oid != null) oids[extra.name as PlantedKind] = Number(r.rows[0].oid);
    } catch {
      // refused: nothing planted, nothing to find
    }
  }
  return { oids, pids: [Number(row['pid'])], role: row['rolname'] ?? null };
}
