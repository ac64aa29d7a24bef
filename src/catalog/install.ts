// Installs the catalog filter: CATALOG_SCHEMA's security-barrier views and wrapper functions (see surfaces.ts).
//
// Every filter reads the session's own search path: the proxy pins it to the tenant's schema and the guard refuses
// anything that changes it, so current_schemas(true) (the tenant's schema, pg_catalog, its own pg_temp) is what the
// session may see, in both tenancy modes. Shared schemas and information_schema are added here, from the config.
// Views and functions are generated from the server's own catalogs (their columns, each wrapped function's
// overloads), so each keeps the name, columns and signature of what it stands for on this server version.
import { channelFunctions } from './channel-sql.js';
import { quoteIdent, quoteLiteral } from '../auth/identity.js';
import type { SqlRunner } from '../tenants/provision.js';
import {
  CATALOG_FILTER_VERSION,
  CATALOG_SCHEMA,
  FILTERED_RELATIONS,
  INFORMATION_SCHEMA_RELATIONS,
  PRIVILEGE_OBJECTS,
  REG_TYPES,
  TENANT_MARKER_CLASS,
  WRAPPED_FUNCTIONS,
  type WrappedKind,
} from './surfaces.js';
import { REG_TYPE_OBJECTS, regTypeFunctions } from './reg-types.js';

const S = CATALOG_SCHEMA;
/** Objects created by initdb: built-in, visible to everyone. */
const FIRST_NORMAL_OBJECT_ID = 16384;

export interface CatalogFilterOptions {
  /** tenancy.sharedSchemas: visible to every tenant besides its own schema. */
  sharedSchemas: readonly string[];
}

export interface CatalogFilterResult {
  /** Installed version found before (0: none). */
  from: number;
  to: number;
  /** Whether anything was (re)created. */
  changed: boolean;
}

/** installCatalogFilter with the config's shared schemas, when policy.catalogFilter is on (the lifecycle's bootstrap). */
export async function ensureCatalogFilter(
  client: SqlRunner,
  config: { policy: { catalogFilter: boolean }; tenancy: { sharedSchemas: readonly string[] } },
): Promise<void> {
  if (config.policy.catalogFilter) await installCatalogFilter(client, { sharedSchemas: config.tenancy.sharedSchemas });
}

/** The installed filter's version in the connected database, 0 when none is installed. */
export async function catalogFilterVersion(client: SqlRunner): Promise<number> {
  const { rows } = await client.query(`SELECT pg_catalog.to_regprocedure($1) IS NOT NULL AS present`, [
    `${S}.filter_version()`,
  ]);
  if ((rows[0] as { present: boolean }).present !== true) return 0;
  const result = await client.query(`SELECT ${S}.filter_version() AS v`);
  return Number((result.rows[0] as { v: number }).v);
}

/**
 * Creates or replaces the filter in the connected database (a no-op when this version with these shared schemas is
 * there). Needs a role that may create a schema and read the catalogs it wraps (the database owner or a superuser);
 * `client` must be one connection with no transaction open.
 */
export async function installCatalogFilter(
  client: SqlRunner,
  options: CatalogFilterOptions,
): Promise<CatalogFilterResult> {
  const shared = [...new Set(options.sharedSchemas)].sort();
  const from = await catalogFilterVersion(client);
  if (from === CATALOG_FILTER_VERSION && (await installedShared(client)) === shared.join(','))
    return { from, to: from, changed: false };
  await client.query('BEGIN');
  try {
    await client.query('SELECT pg_catalog.pg_advisory_xact_lock(pg_catalog.hashtext($1), 0)', [
      `pg-tenant-proxy catalog filter`,
    ]);
    for (const statement of await filterStatements(client, shared)) await client.query(statement);
    await client.query('COMMIT');
    return { from, to: CATALOG_FILTER_VERSION, changed: true };
  } catch (err) {
    await client.query('ROLLBACK').catch(() => undefined);
    throw err;
  }
}

async function installedShared(client: SqlRunner): Promise<string | null> {
  const { rows } = await client.query(`SELECT pg_catalog.to_regprocedure($1) IS NOT NULL AS present`, [
    `${S}.shared_schemas()`,
  ]);
  if ((rows[0] as { present: boolean }).present !== true) return null;
  const result = await client.query(`SELECT pg_catalog.array_to_string(${S}.shared_schemas(), ',') AS s`);
  return (result.rows[0] as { s: string }).s;
}

/** Every statement of the install, in order (helpers, views, wrappers, then the version marking it complete). */
async function filterStatements(client: SqlRunner, shared: readonly string[]): Promise<string[]> {
  const out: string[] = [
    `CREATE SCHEMA IF NOT EXISTS ${S}`,
    `REVOKE ALL ON SCHEMA ${S} FROM PUBLIC`,
    `GRANT USAGE ON SCHEMA ${S} TO PUBLIC`,
    ...helperFunctions(shared),
  ];
  const columns = await catalogColumns(client);
  for (const [name, filter] of Object.entries(FILTERED_RELATIONS)) {
    const cols = columns.get(`pg_catalog.${name}`);
    if (cols === undefined) continue; // not in this PostgreSQL version: nothing to filter, nothing to name
    if (name === 'pg_stat_activity') out.push(...activityView(cols, filter));
    else out.push(view(name, 'pg_catalog', cols, filter));
  }
  for (const name of INFORMATION_SCHEMA_RELATIONS) {
    const cols = columns.get(`information_schema.${name}`);
    if (cols === undefined) continue;
    out.push(view(name, 'information_schema', cols, informationSchemaFilter(cols)));
  }
  for (const type of REG_TYPES) out.push(...regTypeFunctions(type));
  out.push(...(await wrappers(client)), ...channelFunctions());
  out.push(
    `CREATE OR REPLACE FUNCTION ${S}.filter_version() RETURNS pg_catalog.int4 LANGUAGE sql IMMUTABLE AS 'SELECT ${CATALOG_FILTER_VERSION}'`,
  );
  return out;
}

interface Column {
  name: string;
  type: string;
}

async function catalogColumns(client: SqlRunner): Promise<Map<string, Column[]>> {
  const { rows } = await client.query(
    `SELECT n.nspname || '.' || c.relname AS rel, a.attname AS name, pg_catalog.format_type(a.atttypid, NULL) AS type
       FROM pg_catalog.pg_class c
       JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
       JOIN pg_catalog.pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
      WHERE n.nspname IN ('pg_catalog', 'information_schema') AND c.relkind IN ('r', 'v')
      ORDER BY c.oid, a.attnum`,
  );
  const out = new Map<string, Column[]>();
  for (const row of rows as Array<{ rel: string; name: string; type: string }>) {
    let list = out.get(row.rel);
    if (list === undefined) out.set(row.rel, (list = []));
    list.push({ name: row.name, type: row.type });
  }
  return out;
}

/**
 * A view of the same name and columns; ACL columns keep only entries for roles the session may see; anyarray columns
 * become text.
 */
function view(name: string, schema: string, columns: Column[], filter: string | null, from?: string): string {
  const list = columns.map((c) => {
    const col = quoteIdent(c.name);
    if (c.type === 'aclitem[]') return `${S}.visible_acl(t.${col}) AS ${col}`;
    if (name === 'pg_group' && c.name === 'grolist') return `${S}.visible_role_list(t.${col}) AS ${col}`;
    // A view cannot have a pseudo-type column (only initdb makes them): anyarray (pg_stats' value lists) reads as text.
    if (c.type === 'anyarray') return `t.${col}::pg_catalog.text AS ${col}`;
    return `t.${col}`;
  });
  return [
    `CREATE OR REPLACE VIEW ${S}.${quoteIdent(name)} WITH (security_barrier) AS`,
    `SELECT ${list.join(', ')} FROM ${from ?? `${schema}.${quoteIdent(name)}`} t${filter === null ? '' : ` WHERE ${filter}`};`,
    `GRANT SELECT ON ${S}.${quoteIdent(name)} TO PUBLIC`,
  ].join('\n');
}

const ROLE_COLUMNS = new Set(['grantor', 'grantee', 'role_name', 'authorization_identifier']);

/** information_schema: every *_schema (and schemata.schema_name) column names a visible schema, every role column a visible role (or PUBLIC). */
function informationSchemaFilter(columns: Column[]): string | null {
  const parts: string[] = [];
  for (const c of columns) {
    const col = `t.${quoteIdent(c.name)}`;
    if (c.name.endsWith('_schema') || c.name === 'schema_name')
      parts.push(
        `${col} IS NULL OR ${col}::pg_catalog.name IN (SELECT n.nspname FROM pg_catalog.pg_namespace n WHERE n.oid = ANY ((SELECT ${S}.visible_namespaces())::pg_catalog.oid[]))`,
      );
    else if (ROLE_COLUMNS.has(c.name))
      parts.push(
        `${col} IS NULL OR ${col}::pg_catalog.text = 'PUBLIC' OR ${col}::pg_catalog.name IN (SELECT r.rolname FROM pg_catalog.pg_roles r WHERE r.oid = ANY ((SELECT ${S}.visible_roles())::pg_catalog.oid[]))`,
      );
  }
  return parts.length === 0 ? null : parts.map((p) => `(${p})`).join(' AND ');
}

/** The visibility functions every view and wrapper uses. None has a SET clause: they must see the session's path. */
function helperFunctions(shared: readonly string[]): string[] {
  const sharedArray = `ARRAY[${['information_schema', ...shared].map(quoteLiteral).join(', ')}]::pg_catalog.name[]`;
  const nsVisible = (expr: string): string => `${expr} = ANY (${S}.visible_namespaces())`;
  const byNamespace = (catalog: string, column: string): string =>
    `EXISTS (SELECT 1 FROM pg_catalog.${catalog} x WHERE x.oid = $2 AND ${nsVisible(`x.${column}`)})`;
  const byRelation = (catalog: string, column: string): string =>
    `EXISTS (SELECT 1 FROM pg_catalog.${catalog} x JOIN pg_catalog.pg_class c ON c.oid = x.${column} WHERE x.oid = $2 AND ${nsVisible('c.relnamespace')})`;
  const cases: Array<[string, string]> = [
    ['pg_class', byNamespace('pg_class', 'relnamespace')],
    ['pg_proc', byNamespace('pg_proc', 'pronamespace')],
    ['pg_type', byNamespace('pg_type', 'typnamespace')],
    ['pg_namespace', nsVisible('$2')],
    ['pg_constraint', byNamespace('pg_constraint', 'connamespace')],
    ['pg_operator', byNamespace('pg_operator', 'oprnamespace')],
    ['pg_opclass', byNamespace('pg_opclass', 'opcnamespace')],
    ['pg_opfamily', byNamespace('pg_opfamily', 'opfnamespace')],
    ['pg_collation', byNamespace('pg_collation', 'collnamespace')],
    ['pg_conversion', byNamespace('pg_conversion', 'connamespace')],
    ['pg_statistic_ext', byNamespace('pg_statistic_ext', 'stxnamespace')],
    ['pg_ts_config', byNamespace('pg_ts_config', 'cfgnamespace')],
    ['pg_ts_dict', byNamespace('pg_ts_dict', 'dictnamespace')],
    ['pg_ts_parser', byNamespace('pg_ts_parser', 'prsnamespace')],
    ['pg_ts_template', byNamespace('pg_ts_template', 'tmplnamespace')],
    ['pg_trigger', byRelation('pg_trigger', 'tgrelid')],
    ['pg_rewrite', byRelation('pg_rewrite', 'ev_class')],
    ['pg_policy', byRelation('pg_policy', 'polrelid')],
    ['pg_attrdef', byRelation('pg_attrdef', 'adrelid')],
    [
      'pg_enum',
      `EXISTS (SELECT 1 FROM pg_catalog.pg_enum e JOIN pg_catalog.pg_type y ON y.oid = e.enumtypid WHERE e.oid = $2 AND ${nsVisible('y.typnamespace')})`,
    ],
    [
      'pg_default_acl',
      `EXISTS (SELECT 1 FROM pg_catalog.pg_default_acl d WHERE d.oid = $2 AND (d.defaclnamespace = 0 OR ${nsVisible('d.defaclnamespace')}) AND d.defaclrole = ANY (${S}.visible_roles()))`,
    ],
    ['pg_authid', `$2 = ANY (${S}.visible_roles())`],
    [
      'pg_largeobject_metadata',
      `EXISTS (SELECT 1 FROM pg_catalog.pg_largeobject_metadata l WHERE l.oid = $2 AND l.lomowner = ANY (${S}.visible_roles()))`,
    ],
    // Database-wide objects only administrators create: extensions, languages, access methods, casts, servers…
    ...[
      'pg_database',
      'pg_tablespace',
      'pg_extension',
      'pg_language',
      'pg_am',
      'pg_amop',
      'pg_amproc',
      'pg_cast',
      'pg_transform',
      'pg_event_trigger',
      'pg_foreign_data_wrapper',
      'pg_foreign_server',
      'pg_publication',
      'pg_subscription',
      'pg_parameter_acl',
    ].map((c): [string, string] => [c, 'true']),
  ];
  const objectCase = cases
    .map(([catalog, test]) => `    WHEN 'pg_catalog.${catalog}'::pg_catalog.regclass THEN ${test}`)
    .join('\n');
  return [
    `CREATE OR REPLACE FUNCTION ${S}.shared_schemas() RETURNS pg_catalog.name[] LANGUAGE sql IMMUTABLE AS $$ SELECT ${
      shared.length === 0
        ? `'{}'::pg_catalog.name[]`
        : `ARRAY[${shared.map(quoteLiteral).join(', ')}]::pg_catalog.name[]`
    } $$`,
    // The session's search path (pinned by the proxy), information_schema and the configured shared schemas.
    `CREATE OR REPLACE FUNCTION ${S}.visible_namespaces() RETURNS pg_catalog.oid[] LANGUAGE sql STABLE AS $$
  SELECT pg_catalog.array_agg(n.oid) FROM pg_catalog.pg_namespace n
   WHERE n.nspname = ANY (pg_catalog.current_schemas(true)) OR n.nspname = ANY (${sharedArray}) $$`,
    // Built-in roles, the session's own role, the proxy's login role, and the owners of visible schemas.
    `CREATE OR REPLACE FUNCTION ${S}.visible_roles() RETURNS pg_catalog.oid[] LANGUAGE sql STABLE AS $$
  SELECT pg_catalog.array_agg(r.oid) FROM pg_catalog.pg_roles r
   WHERE r.oid < ${FIRST_NORMAL_OBJECT_ID} OR r.rolname LIKE 'pg\\_%' OR r.rolname = CURRENT_USER OR r.rolname = SESSION_USER
      OR r.oid IN (SELECT n.nspowner FROM pg_catalog.pg_namespace n WHERE n.oid = ANY (${S}.visible_namespaces())) $$`,
    `CREATE OR REPLACE FUNCTION ${S}.visible_acl(pg_catalog.aclitem[]) RETURNS pg_catalog.aclitem[] LANGUAGE sql STABLE AS $$
  SELECT CASE WHEN $1 IS NULL THEN NULL ELSE ARRAY(
    SELECT a FROM pg_catalog.unnest($1) a
     WHERE EXISTS (SELECT 1 FROM pg_catalog.aclexplode(ARRAY[a]) e
                    WHERE (e.grantee = 0 OR e.grantee = ANY (${S}.visible_roles()))
                      AND e.grantor = ANY (${S}.visible_roles()))) END $$`,
    `CREATE OR REPLACE FUNCTION ${S}.visible_role_list(pg_catalog.oid[]) RETURNS pg_catalog.oid[] LANGUAGE sql STABLE AS $$
  SELECT CASE WHEN $1 IS NULL THEN NULL ELSE ARRAY(SELECT m FROM pg_catalog.unnest($1) m WHERE m = ANY (${S}.visible_roles())) END $$`,
    // Whether the object (catalog, oid) is one the session may see; an unknown catalog never is.
    `CREATE OR REPLACE FUNCTION ${S}.visible_object(pg_catalog.oid, pg_catalog.oid) RETURNS boolean LANGUAGE sql STABLE AS $$
  SELECT CASE WHEN $1 IS NULL OR $2 IS NULL THEN NULL
    WHEN $2 < ${FIRST_NORMAL_OBJECT_ID} THEN true
    ELSE CASE $1
${objectCase}
    ELSE false END END $$`,
    // Whether a name's schema qualifier (if any) names a schema the session may see.
    `CREATE OR REPLACE FUNCTION ${S}.schema_visible(pg_catalog.text) RETURNS boolean LANGUAGE plpgsql STABLE AS $$
DECLARE
  m pg_catalog.text[];
  schema pg_catalog.text;
BEGIN
  m := pg_catalog.regexp_match($1, '^\\s*("(?:[^"]|"")+"|[A-Za-z_\\u0080-\\uffff][A-Za-z0-9_$\\u0080-\\uffff]*)\\s*\\.');
  IF m IS NULL THEN RETURN true; END IF;
  schema := CASE WHEN pg_catalog.left(m[1], 1) = '"' THEN pg_catalog.replace(pg_catalog.substr(m[1], 2, pg_catalog.length(m[1]) - 2), '""', '"') ELSE pg_catalog.lower(m[1]) END;
  RETURN EXISTS (SELECT 1 FROM pg_catalog.pg_namespace n WHERE n.nspname = schema AND n.oid = ANY (${S}.visible_namespaces()));
END $$`,
    // Raising checks for the has_*_privilege wrappers: true, or the error PostgreSQL gives for a missing object.
    `CREATE OR REPLACE FUNCTION ${S}.schema_ok(pg_catalog.text) RETURNS boolean LANGUAGE plpgsql STABLE AS $$
BEGIN
  PERFORM ${S}.check_schema_of($1);
  RETURN true;
END $$`,
    `CREATE OR REPLACE FUNCTION ${S}.schema_name_ok(pg_catalog.text) RETURNS boolean LANGUAGE plpgsql STABLE AS $$
BEGIN
  IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_namespace n WHERE n.nspname = $1 AND n.oid = ANY (${S}.visible_namespaces())) THEN
    RAISE EXCEPTION 'schema "%" does not exist', $1 USING ERRCODE = '3F000';
  END IF;
  RETURN true;
END $$`,
    `CREATE OR REPLACE FUNCTION ${S}.role_ok(pg_catalog.name) RETURNS boolean LANGUAGE plpgsql STABLE AS $$
BEGIN
  IF pg_catalog.lower($1) <> 'public' AND NOT EXISTS (
       SELECT 1 FROM pg_catalog.pg_roles r WHERE r.rolname = $1 AND r.oid = ANY (${S}.visible_roles())) THEN
    RAISE EXCEPTION 'role "%" does not exist', $1 USING ERRCODE = '42704';
  END IF;
  RETURN true;
END $$`,
    // A name qualified by a schema the session may not see fails as if that schema did not exist.
    `CREATE OR REPLACE FUNCTION ${S}.check_schema_of(pg_catalog.text) RETURNS void LANGUAGE plpgsql STABLE AS $$
BEGIN
  IF NOT ${S}.schema_visible($1) THEN
    RAISE EXCEPTION 'schema "%" does not exist', pg_catalog.split_part(pg_catalog.btrim($1), '.', 1) USING ERRCODE = '3F000';
  END IF;
END $$`,
  ];
}

/**
 * The tenant's own sessions (see TENANT_MARKER_CLASS): the backends holding the marker of the schema the caller's
 * search path names. The proxy pins that path and the guard refuses changing it, so a tenant session can only ever
 * name its own tenant. It is read from the search_path setting itself, not current_schema(), which skips a schema the
 * current role may not use (a SECURITY DEFINER caller's owner, the proxy role before SET ROLE). Evaluated when the
 * statement runs, not when the proxy sent it: a backend reset and handed to another tenant meanwhile has lost the
 * marker. Every operator is qualified: the definer functions below run with the caller's search path.
 */
function tenantBackends(): string {
  const eq = 'OPERATOR(pg_catalog.=)';
  return `CREATE OR REPLACE FUNCTION ${S}.tenant_backends() RETURNS pg_catalog.int4[] LANGUAGE sql STABLE AS $$
  SELECT pg_catalog.array_agg(l.pid) FROM pg_catalog.pg_locks l
   WHERE l.locktype ${eq} 'advisory' AND l.classid ${eq} ${TENANT_MARKER_CLASS}::pg_catalog.oid AND l.objsubid ${eq} 2
     AND l.granted
     AND l.database ${eq} (SELECT d.oid FROM pg_catalog.pg_database d WHERE d.datname ${eq} pg_catalog.current_database())
     AND l.objid ${eq} (SELECT n.oid FROM pg_catalog.pg_namespace n
                        WHERE pg_catalog.quote_ident(n.nspname) ${eq} pg_catalog.current_setting('search_path')) $$`;
}

/**
 * pg_stat_activity: a SECURITY DEFINER function (PostgreSQL shows another backend's query only to a role with the
 * privileges of its login role, which a tenant role lacks) returning the rows of the tenant's own backends, and the
 * view of the same name and columns over it. The function's owner (the installing role) must be able to read the
 * proxy role's activity and signal its backends: a superuser, or a member of the proxy role, or of pg_read_all_stats
 * and pg_signal_backend.
 */
function activityView(columns: Column[], filter: string): string[] {
  return [
    tenantBackends(),
    `CREATE OR REPLACE FUNCTION ${S}.tenant_activity() RETURNS SETOF pg_catalog.pg_stat_activity LANGUAGE sql STABLE SECURITY DEFINER AS $$
  SELECT t.* FROM pg_catalog.pg_stat_activity t WHERE ${filter} $$`,
    view('pg_stat_activity', 'pg_catalog', columns, null, `${S}.tenant_activity()`),
  ];
}

/**
 * pg_cancel_backend and pg_terminate_backend with their own signature: the real function for a backend serving the
 * caller's tenant (checked as the signal is sent), else what PostgreSQL answers for a pid that is no backend: false
 * and a WARNING. SECURITY DEFINER as tenant_activity(): a tenant role may not signal the login role's backends.
 */
function signalWrapper(name: string, args: string, result: string, arity: number): string {
  const params = Array.from({ length: arity }, (_, i) => `$${i + 1}`).join(', ');
  return `CREATE OR REPLACE FUNCTION ${S}.${quoteIdent(name)}(${args}) RETURNS ${result} LANGUAGE plpgsql VOLATILE STRICT SECURITY DEFINER AS $$
BEGIN
  IF $1 OPERATOR(pg_catalog.=) ANY (${S}.tenant_backends()) THEN
    RETURN pg_catalog.${name}(${params});
  END IF;
  RAISE WARNING 'PID % is not a PostgreSQL backend process', $1;
  RETURN false;
END $$`;
}

/** The visibility test of a wrapped function's object argument(s), by kind and argument types. */
function wrapperCheck(name: string, kind: WrappedKind, args: string[]): string | null {
  const on = (catalog: string, arg: string): string =>
    `${S}.visible_object('pg_catalog.${catalog}'::pg_catalog.regclass, ${arg}::pg_catalog.oid)`;
  const textual = args[0] === 'text' || args[0] === 'cstring';
  switch (kind) {
    case 'relation':
      return textual ? `${S}.regclass_in($1) IS NOT NULL` : on('pg_class', '$1');
    case 'function':
      return on('pg_proc', '$1');
    case 'type':
      return on('pg_type', '$1');
    case 'constraint':
      return on('pg_constraint', '$1');
    case 'trigger':
      return on('pg_trigger', '$1');
    case 'rule':
      return on('pg_rewrite', '$1');
    case 'statistics':
      return on('pg_statistic_ext', '$1');
    case 'role':
      return on('pg_authid', '$1');
    case 'expression':
      return `($2 = 0 OR ${on('pg_class', '$2')})`;
    case 'object':
      if (args.length === 1)
        return `EXISTS (SELECT 1 FROM pg_catalog.pg_description d WHERE d.objoid = $1 AND ${S}.visible_object(d.classoid, d.objoid))`;
      if (args[1] === 'name')
        return `${S}.visible_object(pg_catalog.to_regclass('pg_catalog.' || pg_catalog.quote_ident($2::pg_catalog.text)), $1)`;
      return `${S}.visible_object($1, $2)`;
    case 'to_reg':
    case 'privilege':
    case 'membership':
    case 'signal':
      return null;
    default:
      throw new Error(`no check for ${name}`);
  }
}

/**
 * has_*_privilege([user,] object, …) and pg_has_role([user,] role, …): every role or object argument must be one the
 * session may see; a name that is not fails as a missing one does, an oid that is not makes the answer NULL.
 */
function privilegeChecks(name: string, kind: WrappedKind, types: string[]): string[] {
  const role = (i: number): string =>
    types[i] === 'name'
      ? `${S}.role_ok($${i + 1})`
      : `${S}.visible_object('pg_catalog.pg_authid'::pg_catalog.regclass, $${i + 1})`;
  if (kind === 'membership') return types.slice(0, -1).map((_, i) => role(i));
  const base = name === 'has_column_privilege' ? 3 : 2;
  const checks: string[] = [];
  const object = types.length === base + 1 ? 1 : 0;
  if (object === 1) checks.push(role(0));
  const catalog = PRIVILEGE_OBJECTS[name]!;
  if (types[object] === 'text')
    checks.push(catalog === 'pg_namespace' ? `${S}.schema_name_ok($${object + 1})` : `${S}.schema_ok($${object + 1})`);
  else checks.push(`${S}.visible_object('pg_catalog.${catalog}'::pg_catalog.regclass, $${object + 1})`);
  return checks;
}

/** One wrapper per pg_catalog overload of each WRAPPED_FUNCTIONS name, with the same arguments and result. */
async function wrappers(client: SqlRunner): Promise<string[]> {
  const { rows } = await client.query(
    `SELECT p.proname AS name, pg_catalog.pg_get_function_arguments(p.oid) AS args,
            pg_catalog.pg_get_function_result(p.oid) AS result, p.proretset AS set, p.proisstrict AS strict,
            p.provolatile AS volatility,
            ARRAY(SELECT pg_catalog.format_type(t, NULL) FROM pg_catalog.unnest(p.proargtypes) t) AS types
       FROM pg_catalog.pg_proc p
      WHERE p.pronamespace = 'pg_catalog'::pg_catalog.regnamespace AND p.proname = ANY ($1) AND p.prokind = 'f'
      ORDER BY p.proname, p.oid`,
    [Object.keys(WRAPPED_FUNCTIONS)],
  );
  const out: string[] = [];
  for (const row of rows as Array<{
    name: string;
    args: string;
    result: string;
    set: boolean;
    strict: boolean;
    volatility: string;
    types: string[];
  }>) {
    const kind = WRAPPED_FUNCTIONS[row.name]!;
    if (kind === 'signal') {
      out.push(signalWrapper(row.name, row.args, row.result, row.types.length));
      continue;
    }
    const params = row.types.map((_, i) => `$${i + 1}`).join(', ');
    const call = `pg_catalog.${row.name}(${params})`;
    let body: string;
    if (kind === 'to_reg') {
      const type = row.result; // regclass, regtype, …
      const { catalog } = REG_TYPE_OBJECTS[type]!;
      // The schema first: PostgreSQL's own to_regclass('tenant_b.t') fails with "permission denied for schema".
      const schemaCheck = type === 'regnamespace' || type === 'regrole' ? 'true' : `${S}.schema_visible($1)`;
      body = `SELECT CASE WHEN ${schemaCheck} THEN (SELECT r FROM ${call} r WHERE ${S}.visible_object('pg_catalog.${catalog}'::pg_catalog.regclass, r::pg_catalog.oid)) END`;
    } else if (kind === 'privilege' || kind === 'membership') {
      body = `SELECT CASE WHEN ${privilegeChecks(row.name, kind, row.types).join(' AND ')} THEN ${call} END`;
    } else if (row.name === 'pg_get_userbyid') {
      body = `SELECT CASE WHEN ${wrapperCheck(row.name, kind, row.types)} THEN ${call} ELSE 'unknown (OID=' || $1 || ')' END`;
    } else if (row.name === 'format_type') {
      body = `SELECT CASE WHEN $1 IS NULL THEN NULL WHEN ${wrapperCheck(row.name, kind, row.types)} THEN ${call} ELSE '???' END`;
    } else {
      const check = wrapperCheck(row.name, kind, row.types);
      body = row.set ? `SELECT * FROM ${call} WHERE ${check}` : `SELECT ${call} WHERE ${check}`;
    }
    const attributes = `LANGUAGE sql ${row.volatility === 'v' ? 'VOLATILE' : 'STABLE'}${row.strict ? ' STRICT' : ''}`;
    out.push(
      `CREATE OR REPLACE FUNCTION ${S}.${quoteIdent(row.name)}(${row.args}) RETURNS ${row.result} ${attributes} AS $$ ${body} $$`,
    );
    if (row.types[0] === 'regclass') {
      // A text argument (a name computed at run time) would be cast to regclass by PostgreSQL before the wrapper
      // above runs, and that cast tells "permission denied for schema" from "does not exist": resolved here instead.
      const rest = row.types.slice(1);
      const forwarded = [`${S}.regclass_in($1)`, ...rest.map((_, i) => `$${i + 2}`)].join(', ');
      const wrapped = `${S}.${quoteIdent(row.name)}(${forwarded})`;
      out.push(
        `CREATE OR REPLACE FUNCTION ${S}.${quoteIdent(row.name)}(${['pg_catalog.text', ...rest].join(', ')}) RETURNS ${row.result} ${attributes} AS $$ SELECT ${row.set ? `* FROM ${wrapped}` : wrapped} $$`,
      );
    }
  }
  return out;
}
