// A schema's structure as DDL from the catalogs (types, sequences, tables, constraints, indexes, views, comments) and its grants.
import { quoteIdent, quoteLiteral } from '../auth/identity.js';
import type { Grant, JsonlManifest } from './export-manifest.js';
import type { SqlRunner } from './provision.js';

/** The schema's plain tables, in creation order. */
export async function tables(db: SqlRunner, schema: string): Promise<Array<{ oid: string; name: string }>> {
  const { rows } = await db.query(
    `SELECT c.oid::bigint::text AS oid, c.relname AS name FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
      WHERE n.nspname = $1 AND c.relkind = 'r' AND NOT c.relispartition ORDER BY c.oid`,
    [schema],
  );
  return rows as Array<{ oid: string; name: string }>;
}

/**
 * DDL recreating the schema's tables (columns, types, defaults, NOT NULL, identity, generated), enums, sequences
 * (with their current values), constraints, indexes, views, materialized views, comments; and its grants. Run
 * with search_path = the schema, the pg_get_* functions leave its names unqualified, so the DDL fits any schema.
 */
export async function schemaDdl(
  db: SqlRunner,
  schema: string,
  sequencePositions = true,
): Promise<Pick<JsonlManifest, 'ddl' | 'grants' | 'skipped'>> {
  const preData: string[] = [];
  const postData: string[] = [];
  const skipped: string[] = [];
  const fkeys: string[] = [];
  const q = quoteIdent;
  const nsp = `(SELECT oid FROM pg_catalog.pg_namespace WHERE nspname = ${quoteLiteral(schema)})`;

  const { rows: enums } = await db.query(
    `SELECT t.typname AS name, array_agg(e.enumlabel::text ORDER BY e.enumsortorder) AS labels
       FROM pg_catalog.pg_type t JOIN pg_catalog.pg_enum e ON e.enumtypid = t.oid WHERE t.typnamespace = ${nsp} GROUP BY t.oid, t.typname ORDER BY t.oid`,
  );
  for (const e of enums as Array<{ name: string; labels: string[] }>) {
    preData.push(`CREATE TYPE ${q(e.name)} AS ENUM (${e.labels.map(quoteLiteral).join(', ')})`);
  }

  // Sequences that are not an identity column's own.
  const { rows: sequences } = await db.query(
    `SELECT c.relname AS name, format_type(s.seqtypid, NULL) AS type, s.seqstart::text AS start, s.seqincrement::text AS inc,
            s.seqmin::text AS min, s.seqmax::text AS max, s.seqcache::text AS cache, s.seqcycle AS cycle,
            (SELECT t.relname || '.' || a.attname FROM pg_catalog.pg_depend d JOIN pg_catalog.pg_class t ON t.oid = d.refobjid
               JOIN pg_catalog.pg_attribute a ON a.attrelid = d.refobjid AND a.attnum = d.refobjsubid
              WHERE d.classid = 'pg_catalog.pg_class'::regclass AND d.objid = c.oid AND d.deptype IN ('a', 'i')) AS owned_by,
            (SELECT quote_ident(t.relname) || '.' || quote_ident(a.attname) FROM pg_catalog.pg_depend d JOIN pg_catalog.pg_class t ON t.oid = d.refobjid
               JOIN pg_catalog.pg_attribute a ON a.attrelid = d.refobjid AND a.attnum = d.refobjsubid
              WHERE d.classid = 'pg_catalog.pg_class'::regclass AND d.objid = c.oid AND d.deptype = 'a') AS owned_by_sql,
            EXISTS (SELECT 1 FROM pg_catalog.pg_depend d WHERE d.classid = 'pg_catalog.pg_class'::regclass AND d.objid = c.oid AND d.deptype = 'i') AS identity
       FROM pg_catalog.pg_sequence s JOIN pg_catalog.pg_class c ON c.oid = s.seqrelid WHERE c.relnamespace = ${nsp} ORDER BY c.oid`,
  );
  for (const s of sequences as Array<Record<string, string | boolean | null> & { name: string; identity: boolean }>) {
    const { rows } = await db.query(`SELECT last_value::text AS last, is_called FROM ${q(s.name)}`);
    const state = rows[0] as { last: string; is_called: boolean };
    if (s.identity) {
      const [table, column] = String(s['owned_by']).split('.') as [string, string];
      if (sequencePositions)
        postData.push(
          `SELECT pg_catalog.setval(pg_catalog.pg_get_serial_sequence(${quoteLiteral(q(table))}, ${quoteLiteral(column)}), ${state.last}, ${state.is_called})`,
        );
      continue;
    }
    preData.push(
      `CREATE SEQUENCE ${q(s.name)} AS ${String(s['type'])} INCREMENT BY ${String(s['inc'])} MINVALUE ${String(s['min'])} MAXVALUE ${String(s['max'])} START WITH ${String(s['start'])} CACHE ${String(s['cache'])}${s['cycle'] === true ? ' CYCLE' : ' NO CYCLE'}`,
    );
    if (s['owned_by_sql'] !== null) postData.push(`ALTER SEQUENCE ${q(s.name)} OWNED BY ${String(s['owned_by_sql'])}`);
    if (sequencePositions)
      postData.push(`SELECT pg_catalog.setval(${quoteLiteral(q(s.name))}, ${state.last}, ${state.is_called})`);
  }

  const tableList = await tables(db, schema);
  for (const table of tableList) {
    const { rows: columns } = await db.query(
      `SELECT a.attname AS name, format_type(a.atttypid, a.atttypmod) AS type, a.attnotnull AS notnull, a.attidentity AS identity,
              a.attgenerated AS generated, pg_catalog.pg_get_expr(d.adbin, d.adrelid) AS def
         FROM pg_catalog.pg_attribute a LEFT JOIN pg_catalog.pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
        WHERE a.attrelid = $1::oid AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum`,
      [table.oid],
    );
    const defs = (
      columns as Array<{
        name: string;
        type: string;
        notnull: boolean;
        identity: string;
        generated: string;
        def: string | null;
      }>
    ).map((c) => {
      let def = `${q(c.name)} ${c.type}`;
      if (c.generated === 's') def += ` GENERATED ALWAYS AS (${c.def ?? ''}) STORED`;
      else if (c.def !== null) def += ` DEFAULT ${c.def}`;
      if (c.identity === 'a') def += ' GENERATED ALWAYS AS IDENTITY';
      if (c.identity === 'd') def += ' GENERATED BY DEFAULT AS IDENTITY';
      if (c.notnull) def += ' NOT NULL';
      return def;
    });
    preData.push(`CREATE TABLE ${q(table.name)} (\n  ${defs.join(',\n  ')}\n)`);
    // Primary keys, unique and check constraints before foreign keys (which need the keys they reference).
    const { rows: constraints } = await db.query(
      `SELECT conname AS name, pg_catalog.pg_get_constraintdef(oid) AS def, contype FROM pg_catalog.pg_constraint
        WHERE conrelid = $1::oid AND contype IN ('p', 'u', 'c', 'x', 'f') ORDER BY contype = 'f', oid`,
      [table.oid],
    );
    for (const c of constraints as Array<{ name: string; def: string; contype: string }>) {
      (c.contype === 'f' ? fkeys : postData).push(`ALTER TABLE ${q(table.name)} ADD CONSTRAINT ${q(c.name)} ${c.def}`);
    }
    const { rows: indexes } = await db.query(
      `SELECT pg_catalog.pg_get_indexdef(i.indexrelid) AS def FROM pg_catalog.pg_index i
        WHERE i.indrelid = $1::oid AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_constraint c WHERE c.conindid = i.indexrelid AND c.conrelid = i.indrelid)
        ORDER BY i.indexrelid`,
      [table.oid],
    );
    for (const { def } of indexes as Array<{ def: string }>) postData.push(unqualifyIndex(def, schema));
  }
  postData.push(...fkeys.splice(0));

  const { rows: views } = await db.query(
    `SELECT c.relname AS name, c.relkind AS kind, pg_catalog.pg_get_viewdef(c.oid) AS def FROM pg_catalog.pg_class c
      WHERE c.relnamespace = ${nsp} AND c.relkind IN ('v', 'm') ORDER BY c.oid`,
  );
  for (const v of views as Array<{ name: string; kind: string; def: string }>) {
    postData.push(
      `CREATE ${v.kind === 'm' ? 'MATERIALIZED VIEW' : 'VIEW'} ${q(v.name)} AS ${v.def.trim().replace(/;$/, '')}`,
    );
  }

  // Comments on relations, their columns and constraints.
  const { rows: comments } = await db.query(
    `SELECT c.relname AS rel, c.relkind AS kind, NULL::text AS col, NULL::text AS con, d.description AS text
       FROM pg_catalog.pg_description d JOIN pg_catalog.pg_class c ON c.oid = d.objoid AND d.classoid = 'pg_catalog.pg_class'::regclass
      WHERE c.relnamespace = ${nsp} AND d.objsubid = 0
     UNION ALL
     SELECT c.relname, c.relkind, a.attname, NULL, d.description
       FROM pg_catalog.pg_description d JOIN pg_catalog.pg_class c ON c.oid = d.objoid AND d.classoid = 'pg_catalog.pg_class'::regclass
       JOIN pg_catalog.pg_attribute a ON a.attrelid = c.oid AND a.attnum = d.objsubid
      WHERE c.relnamespace = ${nsp} AND d.objsubid > 0
     UNION ALL
     SELECT c.relname, c.relkind, NULL, k.conname, d.description
       FROM pg_catalog.pg_description d JOIN pg_catalog.pg_constraint k ON k.oid = d.objoid AND d.classoid = 'pg_catalog.pg_constraint'::regclass
       JOIN pg_catalog.pg_class c ON c.oid = k.conrelid
      WHERE c.relnamespace = ${nsp}`,
  );
  const kindWord: Record<string, string> = { r: 'TABLE', v: 'VIEW', m: 'MATERIALIZED VIEW', S: 'SEQUENCE', i: 'INDEX' };
  for (const c of comments as Array<{
    rel: string;
    kind: string;
    col: string | null;
    con: string | null;
    text: string;
  }>) {
    if (c.con !== null) postData.push(`COMMENT ON CONSTRAINT ${q(c.con)} ON ${q(c.rel)} IS ${quoteLiteral(c.text)}`);
    else if (c.col !== null) postData.push(`COMMENT ON COLUMN ${q(c.rel)}.${q(c.col)} IS ${quoteLiteral(c.text)}`);
    else if (kindWord[c.kind] !== undefined)
      postData.push(`COMMENT ON ${kindWord[c.kind]} ${q(c.rel)} IS ${quoteLiteral(c.text)}`);
  }

  const { rows: acl } = await db.query(
    `SELECT c.relname AS name, c.relkind AS kind, CASE WHEN x.grantee = 0 THEN 'PUBLIC' ELSE pg_catalog.pg_get_userbyid(x.grantee) END AS grantee,
            x.privilege_type AS privilege, x.is_grantable AS grantable
       FROM pg_catalog.pg_class c, LATERAL pg_catalog.aclexplode(c.relacl) x
      WHERE c.relnamespace = ${nsp} AND c.relkind IN ('r', 'v', 'm', 'S') AND x.grantee <> c.relowner
      ORDER BY c.oid, 3, 4`,
  );
  const grants = (
    acl as Array<{ name: string; kind: string; grantee: string; privilege: string; grantable: boolean }>
  ).map((g): Grant => ({
    kind: g.kind === 'S' ? 'SEQUENCE' : 'TABLE',
    name: g.name,
    grantee: g.grantee,
    privilege: g.privilege,
    grantable: g.grantable,
  }));
  const { rows: columnAcl } = await db.query(
    `SELECT c.relname AS name, a.attname AS column, CASE WHEN x.grantee = 0 THEN 'PUBLIC' ELSE pg_catalog.pg_get_userbyid(x.grantee) END AS grantee,
            x.privilege_type AS privilege, x.is_grantable AS grantable
       FROM pg_catalog.pg_class c JOIN pg_catalog.pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped,
            LATERAL pg_catalog.aclexplode(a.attacl) x
      WHERE c.relnamespace = ${nsp} AND c.relkind IN ('r', 'v', 'm') AND x.grantee <> c.relowner
      ORDER BY c.oid, a.attnum, 3, 4`,
  );
  for (const g of columnAcl as Array<{
    name: string;
    column: string;
    grantee: string;
    privilege: string;
    grantable: boolean;
  }>) {
    grants.push({
      kind: 'TABLE',
      name: g.name,
      column: g.column,
      grantee: g.grantee,
      privilege: g.privilege,
      grantable: g.grantable,
    });
  }

  const { rows: other } = await db.query(
    `SELECT 'function ' || p.oid::regprocedure::text AS what FROM pg_catalog.pg_proc p WHERE p.pronamespace = ${nsp}
     UNION ALL SELECT 'trigger ' || t.tgname || ' on ' || c.relname FROM pg_catalog.pg_trigger t JOIN pg_catalog.pg_class c ON c.oid = t.tgrelid WHERE c.relnamespace = ${nsp} AND NOT t.tgisinternal
     UNION ALL SELECT 'policy ' || p.polname || ' on ' || c.relname FROM pg_catalog.pg_policy p JOIN pg_catalog.pg_class c ON c.oid = p.polrelid WHERE c.relnamespace = ${nsp}
     UNION ALL SELECT 'type ' || t.typname FROM pg_catalog.pg_type t WHERE t.typnamespace = ${nsp} AND t.typtype IN ('d', 'r', 'm')
        OR (t.typnamespace = ${nsp} AND t.typtype = 'c' AND (SELECT relkind FROM pg_catalog.pg_class WHERE oid = t.typrelid) = 'c')
     UNION ALL SELECT 'partitioned table ' || c.relname FROM pg_catalog.pg_class c WHERE c.relnamespace = ${nsp} AND (c.relkind IN ('p', 'f') OR c.relispartition)`,
  );
  skipped.push(...(other as Array<{ what: string }>).map((o) => o.what));
  return { ddl: { preData, postData }, grants, skipped };
}

/** pg_get_indexdef always qualifies the table (quoted only when it must be); the DDL must not name the old schema. */
function unqualifyIndex(def: string, schema: string): string {
  for (const qualified of [`${quoteIdent(schema)}.`, `${schema}.`]) {
    for (const on of [' ON ONLY ', ' ON ']) {
      const at = def.indexOf(`${on}${qualified}`);
      if (at >= 0) return def.slice(0, at) + on + def.slice(at + on.length + qualified.length);
    }
  }
  return def;
}
