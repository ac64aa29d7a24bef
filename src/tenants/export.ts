// Tenant export (jsonl: files per table + manifest with DDL from the catalogs; dump: pg_dump -Fc) and import into a new tenant.
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync, type PathLike } from 'node:fs';
import { open } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { quoteIdent, quoteLiteral } from '../auth/identity.js';
import { adminClientConfig, TenantAdmin, TenantError, tenantNames } from './lifecycle.js';
import type { SqlRunner } from './provision.js';
import { TenantStatus } from './registry-store.js';

export type ExportFormat = 'jsonl' | 'dump';

export interface ExportedTable {
  name: string;
  rows: number;
  /** jsonl only: the file and its SHA-256. */
  file?: string;
  sha256?: string;
}

export interface ExportResult {
  tenant: string;
  format: ExportFormat;
  /** The directory (jsonl) or file (dump) written. */
  path: string;
  /** SHA-256 of manifest.json (jsonl: it holds every file's SHA-256) or of the dump file. */
  sha256: string;
  tables: ExportedTable[];
  /** dump: the pg_dump used, with its version. */
  tool?: string;
  /** Objects the jsonl DDL does not recreate (functions, triggers, policies, domains…). */
  skipped: string[];
}

export interface JsonlManifest {
  manifestVersion: 1;
  format: 'jsonl';
  tenant: string;
  schema: string;
  role: string | null;
  proxyRole: string;
  exportedAt: string;
  server: string;
  /** How bytea values appear in the jsonl files: PostgreSQL's hex text form, "\\x0a0b…". */
  bytea: 'hex';
  tables: Array<Required<Pick<ExportedTable, 'name' | 'rows' | 'file' | 'sha256'>>>;
  /** Run with search_path set to the target schema: names inside are unqualified. */
  ddl: { preData: string[]; postData: string[] };
  grants: Grant[];
  skipped: string[];
}

interface Grant {
  /** TABLE (tables, views, materialized views) or SEQUENCE. */
  kind: 'TABLE' | 'SEQUENCE';
  name: string;
  /** A column grant's column. */
  column?: string;
  /** A role name, or PUBLIC. */
  grantee: string;
  privilege: string;
  grantable: boolean;
}

/** A dump's sidecar (`<file>.manifest.json`): row counts taken in the dump's own snapshot, and the dump's SHA-256. */
export interface DumpManifest {
  manifestVersion: 1;
  format: 'dump';
  tenant: string;
  schema: string;
  role: string | null;
  exportedAt: string;
  server: string;
  tool: string;
  sha256: string;
  tables: Array<{ name: string; rows: number }>;
}

const FETCH = 1000;

function sha256(data: string | Buffer): string {
  return createHash('sha256').update(data).digest('hex');
}

function fail(
  code: 'invalid_argument' | 'wrong_status' | 'conflict' | 'step_failed' | 'database',
  message: string,
): TenantError {
  return new TenantError(code, message);
}

/**
 * `tenants create --from-template SCHEMA`: the template's structure (types, sequences from their start, tables with
 * their defaults and constraints, indexes, views, comments; the export's DDL, without rows, grants or sequence
 * positions) made again in the new tenant's schema inside create's transaction, owned as the tenant's own traffic
 * needs (its role, else the proxy's). Returns what the DDL generator does not carry (functions, triggers, …).
 */
export async function copyTemplate(
  db: SqlRunner,
  template: string,
  tenant: { schema: string; role: string | null },
  proxyRole: string,
): Promise<string[]> {
  if (template === tenant.schema || template.startsWith('pg_') || template === 'information_schema') {
    throw fail('invalid_argument', `schema "${template}" cannot serve as a template`);
  }
  const { rows } = await db.query('SELECT 1 FROM pg_catalog.pg_namespace WHERE nspname = $1', [template]);
  if (rows.length === 0) throw fail('invalid_argument', `template schema "${template}" does not exist`);
  // Generated with the template on the search path, so the DDL names no schema and lands wherever it runs.
  await db.query(`SET LOCAL search_path = ${quoteIdent(template)}`);
  const { ddl, skipped } = await schemaDdl(db, template, false);
  await db.query(`SET LOCAL search_path = ${quoteIdent(tenant.schema)}`);
  await db.query(`SET LOCAL ROLE ${quoteIdent(tenant.role ?? proxyRole)}`);
  for (const sql of [...ddl.preData, ...ddl.postData]) await db.query(sql);
  await db.query('RESET ROLE');
  await db.query('SET LOCAL search_path TO DEFAULT');
  return skipped;
}

/** Exports a tenant's schema; the tenant may be active or suspended (suspend it first for a frozen copy). */
export async function exportTenant(
  admin: TenantAdmin,
  id: string,
  options: { out: string; format?: ExportFormat },
): Promise<ExportResult> {
  const format = options.format ?? 'jsonl';
  const out = resolve(options.out);
  if (existsSync(out)) throw fail('invalid_argument', `--out ${out} exists already; an export never overwrites`);
  return admin.runVerb<ExportResult>(
    'export',
    id,
    async (db) => {
      const record = await tenantRecord(db, admin, id);
      // Made here, failing if it appeared meanwhile: what the cleanup below removes is only ever this export's.
      if (format === 'jsonl') mkdirSync(out, { recursive: false, mode: 0o750 });
      await db.query('BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY');
      try {
        await db.query(`SET LOCAL search_path = ${quoteIdent(record.schema)}`);
        const result =
          format === 'jsonl' ? await exportJsonl(db, admin, record, out) : await exportDump(db, admin, record, out);
        await db.query('COMMIT');
        return {
          result,
          outcome: 'ok',
          details: {
            format,
            path: out,
            sha256: result.sha256,
            tables: result.tables.length,
            tool: result.tool ?? null,
          },
        };
      } catch (err) {
        await db.query('ROLLBACK').catch(() => undefined);
        // A half-written export must not pass for one.
        rmSync(out, { recursive: true, force: true });
        rmSync(`${out}.manifest.json`, { force: true });
        throw err;
      }
    },
    false,
  );
}

async function tenantRecord(
  db: SqlRunner,
  admin: TenantAdmin,
  id: string,
): Promise<{ id: string; schema: string; role: string | null; status: string }> {
  const { rows } = await db.query(
    `SELECT id, schema_name AS schema, role_name AS role, status FROM ${quoteIdent(admin.config.tenancy.registry.schema)}.tenants WHERE id = $1`,
    [id],
  );
  const row = rows[0] as { id: string; schema: string; role: string | null; status: string } | undefined;
  if (row === undefined) throw new TenantError('not_found', `tenant "${id}" is not registered`);
  if (row.status === TenantStatus.Deleted) throw fail('wrong_status', `tenant "${id}" was deleted`);
  return row;
}

async function serverVersion(db: SqlRunner): Promise<{ text: string; major: number }> {
  const { rows } = await db.query(
    "SELECT current_setting('server_version') AS v, current_setting('server_version_num')::int AS n",
  );
  const row = rows[0] as { v: string; n: number };
  return { text: `PostgreSQL ${row.v}`, major: Math.floor(row.n / 10000) };
}

/** The schema's plain tables, in creation order. */
async function tables(db: SqlRunner, schema: string): Promise<Array<{ oid: string; name: string }>> {
  const { rows } = await db.query(
    `SELECT c.oid::bigint::text AS oid, c.relname AS name FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
      WHERE n.nspname = $1 AND c.relkind = 'r' AND NOT c.relispartition ORDER BY c.oid`,
    [schema],
  );
  return rows as Array<{ oid: string; name: string }>;
}

/**
 * One table's rows as jsonl lines, in a stable order (by the line's text, byte-wise) so a copy of the same data
 * gives the same bytes: the checksum compares data, not physical order. Calls `line` for each.
 */
async function eachLine(db: SqlRunner, table: string, line: (text: string) => Promise<void> | void): Promise<number> {
  const cursor = quoteIdent(`pgtp_export_${table}`.slice(0, 63));
  await db.query(
    `DECLARE ${cursor} NO SCROLL CURSOR FOR SELECT row_to_json(t)::text AS line FROM ${quoteIdent(table)} t ORDER BY row_to_json(t)::text COLLATE "C"`,
  );
  let n = 0;
  for (;;) {
    const { rows } = await db.query(`FETCH ${FETCH} FROM ${cursor}`);
    for (const row of rows as Array<{ line: string }>) {
      await line(row.line);
      n++;
    }
    if (rows.length < FETCH) break;
  }
  await db.query(`CLOSE ${cursor}`);
  return n;
}

async function exportJsonl(
  db: SqlRunner,
  admin: TenantAdmin,
  record: { id: string; schema: string; role: string | null },
  out: string,
): Promise<ExportResult> {
  const manifestTables: JsonlManifest['tables'] = [];
  for (const table of await tables(db, record.schema)) {
    const file = `${table.name}.jsonl`;
    const hash = createHash('sha256');
    const handle = await open(join(out, file), 'wx', 0o640);
    let buffered = '';
    try {
      const rows = await eachLine(db, table.name, async (text) => {
        buffered += `${text}\n`;
        if (buffered.length > 1 << 20) {
          hash.update(buffered);
          await handle.write(buffered);
          buffered = '';
        }
      });
      hash.update(buffered);
      await handle.write(buffered);
      manifestTables.push({ name: table.name, rows, file, sha256: hash.digest('hex') });
    } finally {
      await handle.close();
    }
  }
  const { ddl, grants, skipped } = await schemaDdl(db, record.schema);
  const manifest: JsonlManifest = {
    manifestVersion: 1,
    format: 'jsonl',
    tenant: record.id,
    schema: record.schema,
    role: record.role,
    proxyRole: decodeURIComponent(new URL(admin.config.upstream.url).username),
    exportedAt: new Date().toISOString(),
    server: (await serverVersion(db)).text,
    bytea: 'hex',
    tables: manifestTables,
    ddl,
    grants,
    skipped,
  };
  const text = `${JSON.stringify(manifest, null, 2)}\n`;
  writeFileSync(join(out, 'manifest.json'), text, { flag: 'wx', mode: 0o640 });
  return { tenant: record.id, format: 'jsonl', path: out, sha256: sha256(text), tables: manifestTables, skipped };
}

/**
 * DDL recreating the schema's tables (columns, types, defaults, NOT NULL, identity, generated), enums, sequences
 * (with their current values), constraints, indexes, views, materialized views, comments; and its grants. Run
 * with search_path = the schema, the pg_get_* functions leave its names unqualified, so the DDL fits any schema.
 */
async function schemaDdl(
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

/** pg_dump binaries on this machine whose major version is at least the server's; the newest first. */
export function findPgDump(serverMajor: number, tool: 'pg_dump' | 'pg_restore' = 'pg_dump'): string[] {
  const found: Array<{ path: string; major: number }> = [];
  const base = '/usr/lib/postgresql';
  if (existsSync(base)) {
    for (const v of readdirSync(base)) {
      const path = join(base, v, 'bin', tool);
      if (/^\d+$/.test(v) && existsSync(path)) found.push({ path, major: Number(v) });
    }
  }
  return found
    .filter((f) => f.major >= serverMajor)
    .sort((a, b) => b.major - a.major)
    .map((f) => f.path);
}

function run(file: string, args: string[], env: NodeJS.ProcessEnv): Promise<{ stdout: string; stderr: string }> {
  return new Promise((done, reject) => {
    execFile(file, args, { env: { ...process.env, ...env }, maxBuffer: 64 << 20 }, (err, stdout, stderr) => {
      if (err) reject(new Error(`${file} failed: ${stderr.trim().split('\n')[0] ?? err.message}`));
      else done({ stdout, stderr });
    });
  });
}

/** The admin connection as libpq environment variables (the password never on a command line). */
function libpqEnv(admin: TenantAdmin): NodeJS.ProcessEnv {
  const config = adminClientConfig(admin.config);
  const url = new URL(String(config.connectionString));
  return {
    PGHOST: url.hostname || 'localhost',
    PGPORT: url.port || '5432',
    PGUSER: decodeURIComponent(url.username),
    PGPASSWORD: decodeURIComponent(url.password),
    PGDATABASE: decodeURIComponent(url.pathname.slice(1)),
    ...(url.searchParams.get('sslmode') !== null && { PGSSLMODE: url.searchParams.get('sslmode')! }),
  };
}

async function exportDump(
  db: SqlRunner,
  admin: TenantAdmin,
  record: { id: string; schema: string; role: string | null },
  out: string,
): Promise<ExportResult> {
  const server = await serverVersion(db);
  const [pgDump] = findPgDump(server.major);
  if (pgDump === undefined) {
    throw fail(
      'conflict',
      `no pg_dump of major version ${server.major} or newer under /usr/lib/postgresql/*/bin; use --format jsonl, which needs none`,
    );
  }
  const version = (await run(pgDump, ['--version'], {})).stdout.trim();
  const counts: Array<{ name: string; rows: number }> = [];
  for (const table of await tables(db, record.schema)) {
    const { rows } = await db.query(`SELECT count(*)::bigint AS n FROM ${quoteIdent(table.name)}`);
    counts.push({ name: table.name, rows: Number((rows[0] as { n: string }).n) });
  }
  // pg_dump reads the snapshot these counts were taken in.
  const { rows } = await db.query('SELECT pg_catalog.pg_export_snapshot() AS s');
  const snapshot = (rows[0] as { s: string }).s;
  await run(
    pgDump,
    ['--schema', record.schema, '--format', 'custom', '--file', out, '--snapshot', snapshot, '--no-password'],
    libpqEnv(admin),
  );
  const digest = sha256(readFileSync(out));
  const manifest: DumpManifest = {
    manifestVersion: 1,
    format: 'dump',
    tenant: record.id,
    schema: record.schema,
    role: record.role,
    exportedAt: new Date().toISOString(),
    server: server.text,
    tool: `${pgDump} (${version})`,
    sha256: digest,
    tables: counts,
  };
  writeFileSync(`${out}.manifest.json`, `${JSON.stringify(manifest, null, 2)}\n`, { flag: 'wx', mode: 0o640 });
  return {
    tenant: record.id,
    format: 'dump',
    path: out,
    sha256: digest,
    tables: counts,
    tool: manifest.tool,
    skipped: [],
  };
}

export interface ImportResult {
  tenant: string;
  format: ExportFormat;
  from: string;
  tables: Array<{ name: string; rows: number }>;
  /** Grants of the export to roles this database does not have. */
  skippedGrants: string[];
}

function readJson<T>(path: PathLike): T {
  try {
    return JSON.parse(readFileSync(path, 'utf8')) as T;
  } catch (err) {
    throw fail('invalid_argument', `cannot read ${String(path)}: ${(err as Error).message}`);
  }
}

/**
 * Creates tenant `id` from an export. jsonl: inside create's own transaction (the schema filled as its migrations
 * step), so a failed load or a count or checksum that differs from the manifest leaves no tenant behind. dump: only
 * into a tenant whose schema name is the dumped one (pg_restore cannot rename a schema).
 */
export async function importTenant(admin: TenantAdmin, id: string, options: { from: string }): Promise<ImportResult> {
  const from = resolve(options.from);
  if (!existsSync(from)) throw fail('invalid_argument', `--from ${from} does not exist`);
  if (existsSync(join(from, 'manifest.json'))) return importJsonl(admin, id, from);
  if (existsSync(`${from}.manifest.json`)) return importDump(admin, id, from);
  throw fail(
    'invalid_argument',
    `${from} is neither a jsonl export (a directory with manifest.json) nor a dump with its .manifest.json`,
  );
}

async function importJsonl(admin: TenantAdmin, id: string, from: string): Promise<ImportResult> {
  const manifest = readJson<JsonlManifest>(join(from, 'manifest.json'));
  if (manifest.format !== 'jsonl' || manifest.manifestVersion !== 1)
    throw fail('invalid_argument', `${from}/manifest.json is not a version 1 jsonl manifest`);
  for (const t of manifest.tables) {
    const digest = sha256(readFileSync(join(from, t.file)));
    if (digest !== t.sha256)
      throw fail('invalid_argument', `${t.file}: SHA-256 ${digest} differs from the manifest's ${t.sha256}`);
  }
  const proxyRole = decodeURIComponent(new URL(admin.config.upstream.url).username);
  const skippedGrants: string[] = [];
  let loaded: ImportResult['tables'] = [];
  const filling = await TenantAdmin.open(admin.config, {
    ...admin.adminOptions,
    actor: admin.actor,
    migrate: async (db, tenant) => {
      await db.query(`SET LOCAL search_path = ${quoteIdent(tenant.schema)}`);
      if (tenant.role !== null) await db.query(`SET LOCAL ROLE ${quoteIdent(tenant.role)}`);
      for (const sql of manifest.ddl.preData) await db.query(sql);
      loaded = [];
      for (const t of manifest.tables)
        loaded.push({ name: t.name, rows: await loadTable(db, t.name, join(from, t.file)) });
      for (const sql of manifest.ddl.postData) await db.query(sql);
      for (const g of manifest.grants) {
        const grantee =
          g.grantee === manifest.role ? tenant.role : g.grantee === manifest.proxyRole ? proxyRole : g.grantee;
        if (grantee === null) continue;
        if (grantee !== 'PUBLIC') {
          const { rows } = await db.query('SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = $1', [grantee]);
          if (rows.length === 0) {
            skippedGrants.push(`${g.privilege} on ${g.name} to ${g.grantee}`);
            continue;
          }
        }
        const to = grantee === 'PUBLIC' ? 'PUBLIC' : quoteIdent(grantee);
        const columns = g.column === undefined ? '' : ` (${quoteIdent(g.column)})`;
        await db.query(
          `GRANT ${g.privilege}${columns} ON ${g.kind} ${quoteIdent(g.name)} TO ${to}${g.grantable ? ' WITH GRANT OPTION' : ''}`,
        );
      }
      // What was loaded must read back as the export wrote it.
      for (const t of manifest.tables) {
        const hash = createHash('sha256');
        const rows = await eachLine(db, t.name, (text) => void hash.update(`${text}\n`));
        const digest = hash.digest('hex');
        if (rows !== t.rows || digest !== t.sha256) {
          throw new Error(
            `table ${t.name} reads back ${rows} rows with SHA-256 ${digest}; the manifest says ${t.rows} rows, ${t.sha256}`,
          );
        }
      }
      if (tenant.role !== null) await db.query('RESET ROLE');
      await db.query('SET LOCAL search_path TO DEFAULT');
      return null;
    },
  });
  try {
    const created = await filling.create(id);
    if (created.outcome === 'exists')
      throw fail('wrong_status', `tenant "${id}" exists already; import creates a new tenant`);
  } finally {
    await filling.close();
  }
  return admin.runVerb<ImportResult>('import', id, () => {
    const result: ImportResult = { tenant: id, format: 'jsonl', from, tables: loaded, skippedGrants };
    return Promise.resolve({
      result,
      outcome: 'ok' as const,
      details: { format: 'jsonl', from, source: manifest.tenant, tables: loaded.length, skippedGrants },
    });
  });
}

/** Inserts a jsonl file's rows, a thousand at a time, into the table (generated columns left to compute). */
async function loadTable(db: SqlRunner, table: string, file: string): Promise<number> {
  const { rows: cols } = await db.query(
    `SELECT quote_ident(attname) AS name, attidentity = 'a' AS always FROM pg_catalog.pg_attribute
      WHERE attrelid = $1::regclass AND attnum > 0 AND NOT attisdropped AND attgenerated = '' ORDER BY attnum`,
    [quoteIdent(table)],
  );
  const columns = (cols as Array<{ name: string; always: boolean }>).map((c) => c.name).join(', ');
  const overriding = (cols as Array<{ always: boolean }>).some((c) => c.always) ? ' OVERRIDING SYSTEM VALUE' : '';
  const sql = `INSERT INTO ${quoteIdent(table)} (${columns})${overriding} SELECT ${columns} FROM pg_catalog.json_populate_recordset(NULL::${quoteIdent(table)}, $1::json)`;
  const lines = readFileSync(file, 'utf8')
    .split('\n')
    .filter((l) => l !== '');
  for (let i = 0; i < lines.length; i += FETCH) await db.query(sql, [`[${lines.slice(i, i + FETCH).join(',')}]`]);
  return lines.length;
}

/**
 * Restores a dump into a new tenant with the dumped schema's name: create makes role, schema, grants and record,
 * then pg_restore (the newest one compatible with the server) fills the schema in one transaction, as the tenant's
 * role (--no-owner --role), leaving out the dump's CREATE SCHEMA. Row counts are checked against the sidecar
 * manifest. On any failure the tenant this import created is removed again.
 */
async function importDump(admin: TenantAdmin, id: string, from: string): Promise<ImportResult> {
  const manifest = readJson<DumpManifest>(`${from}.manifest.json`);
  const digest = sha256(readFileSync(from));
  if (digest !== manifest.sha256)
    throw fail('invalid_argument', `${from}: SHA-256 ${digest} differs from the manifest's ${manifest.sha256}`);
  const { schema } = tenantNames(admin.config, id);
  if (schema !== manifest.schema) {
    throw fail(
      'invalid_argument',
      `a dump restores only into its own schema name (${manifest.schema}); tenant "${id}" would be ${schema}: import the jsonl format to rename`,
    );
  }
  const created = await admin.create(id);
  if (created.outcome === 'exists')
    throw fail('wrong_status', `tenant "${id}" exists already; import creates a new tenant`);
  const role = created.tenant.role;
  try {
    return await admin.runVerb<ImportResult>(
      'import',
      id,
      async (db) => {
        const server = await serverVersion(db);
        const [pgRestore] = findPgDump(server.major, 'pg_restore');
        if (pgRestore === undefined)
          throw fail(
            'conflict',
            `no pg_restore of major version ${server.major} or newer under /usr/lib/postgresql/*/bin`,
          );
        const env = libpqEnv(admin);
        const { stdout: toc } = await run(pgRestore, ['--list', from], env);
        const mine = new RegExp(
          `(^|\\s)(SCHEMA - ${escapeRegExp(schema)}|ACL - SCHEMA ${escapeRegExp(schema)}|COMMENT - SCHEMA ${escapeRegExp(schema)})\\s`,
        );
        const listFile = `${from}.restore-list.${process.pid}`;
        writeFileSync(
          listFile,
          toc
            .split('\n')
            .filter((line) => !mine.test(line))
            .join('\n'),
          { mode: 0o600 },
        );
        try {
          await run(
            pgRestore,
            [
              '--use-list',
              listFile,
              '--dbname',
              env['PGDATABASE']!,
              '--single-transaction',
              '--exit-on-error',
              '--no-owner',
              ...(role === null ? [] : ['--role', role]),
              '--no-password',
              from,
            ],
            env,
          );
        } finally {
          rmSync(listFile, { force: true });
        }
        const tablesRestored: ImportResult['tables'] = [];
        for (const t of manifest.tables) {
          const { rows } = await db.query(
            `SELECT count(*)::bigint AS n FROM ${quoteIdent(schema)}.${quoteIdent(t.name)}`,
          );
          const n = Number((rows[0] as { n: string }).n);
          if (n !== t.rows)
            throw new Error(`table ${t.name} has ${n} rows after the restore; the manifest says ${t.rows}`);
          tablesRestored.push({ name: t.name, rows: n });
        }
        const result: ImportResult = { tenant: id, format: 'dump', from, tables: tablesRestored, skippedGrants: [] };
        return {
          result,
          outcome: 'ok',
          details: { format: 'dump', from, tool: pgRestore, source: manifest.tenant, tables: tablesRestored.length },
        };
      },
      false,
    );
  } catch (err) {
    await removeNewTenant(admin, id, schema, role).catch(() => undefined);
    throw err;
  }
}

/** Undoes the create of a failed dump import (the tenant never held data of its own). */
function removeNewTenant(admin: TenantAdmin, id: string, schema: string, role: string | null): Promise<void> {
  return admin.runVerb<undefined>('import_undo', id, async (db) => {
    await db.query(`DROP SCHEMA IF EXISTS ${quoteIdent(schema)} CASCADE`);
    if (role !== null) {
      await db.query(`DROP OWNED BY ${quoteIdent(role)}`);
      await db.query(`DROP ROLE ${quoteIdent(role)}`);
    }
    await db.query(`DELETE FROM ${quoteIdent(admin.config.tenancy.registry.schema)}.tenants WHERE id = $1`, [id]);
    return {
      result: undefined,
      outcome: 'ok',
      details: { reason: 'the import failed; the tenant it created was removed' },
    };
  });
}

function escapeRegExp(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}
