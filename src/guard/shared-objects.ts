// What a statement writes that every tenant of the database shares: database-wide objects, built-in schemas and pg_settings.

type Json = Record<string, unknown>;

/**
 * Object types that belong to the database or the cluster rather than to a schema. A tenant commenting on, granting
 * on, renaming or dropping one changes it for every tenant (and PostgreSQL allows it whenever the proxy's login role
 * owns the object, as it often owns the database).
 */
const DATABASE_WIDE_OBJECTS: Record<string, string> = {
  OBJECT_DATABASE: 'DATABASE',
  OBJECT_ROLE: 'ROLE',
  OBJECT_TABLESPACE: 'TABLESPACE',
  OBJECT_EXTENSION: 'EXTENSION',
  OBJECT_LANGUAGE: 'LANGUAGE',
  OBJECT_PUBLICATION: 'PUBLICATION',
  OBJECT_PUBLICATION_NAMESPACE: 'PUBLICATION',
  OBJECT_PUBLICATION_REL: 'PUBLICATION',
  OBJECT_SUBSCRIPTION: 'SUBSCRIPTION',
  OBJECT_EVENT_TRIGGER: 'EVENT TRIGGER',
  OBJECT_FDW: 'FOREIGN DATA WRAPPER',
  OBJECT_FOREIGN_SERVER: 'SERVER',
  OBJECT_USER_MAPPING: 'USER MAPPING',
  OBJECT_ACCESS_METHOD: 'ACCESS METHOD',
  OBJECT_CAST: 'CAST',
  OBJECT_TRANSFORM: 'TRANSFORM',
  OBJECT_LARGEOBJECT: 'LARGE OBJECT',
  OBJECT_PARAMETER_ACL: 'PARAMETER',
};

/** Schemas PostgreSQL itself provides to every tenant (a tenant's own schema is judged by the name rules). */
const BUILT_IN_SCHEMAS = /^(pg_catalog|information_schema|pg_toast|pg_temp(_\d+)?|pg_toast_temp_\d+)$/;

/** The verb each statement type applies to the object it names. */
const VERBS: Record<string, [field: string, verb: string]> = {
  CommentStmt: ['objtype', 'COMMENT ON'],
  GrantStmt: ['objtype', 'GRANT/REVOKE ON'],
  DropStmt: ['removeType', 'DROP'],
  RenameStmt: ['renameType', 'ALTER ... RENAME of'],
  AlterObjectSchemaStmt: ['objectType', 'ALTER ... SET SCHEMA of'],
};

/**
 * What a statement of this type writes that all tenants share, as words for the refusal ("COMMENT ON DATABASE"),
 * or null. Covers COMMENT, GRANT/REVOKE, DROP, RENAME and SET SCHEMA of database-wide objects and of the built-in
 * schemas; the statements that only ever act on such objects (CREATE DATABASE, ALTER SYSTEM, …) are refused by type.
 */
export function sharedObjectWrite(type: string, node: Json): string | null {
  const verb = VERBS[type];
  if (verb === undefined) return null;
  const objectType = node[verb[0]] as string | undefined;
  if (objectType === undefined) return null;
  const what = DATABASE_WIDE_OBJECTS[objectType];
  if (what !== undefined) return `${verb[1]} ${what}`;
  if (objectType !== 'OBJECT_SCHEMA' && node.targtype !== 'ACL_TARGET_ALL_IN_SCHEMA') return null;
  for (const schema of namedSchemas(type, node)) {
    if (BUILT_IN_SCHEMAS.test(schema)) return `${verb[1]} SCHEMA ${schema}`;
  }
  return null;
}

/** Schema names a schema-level statement acts on (GRANT … ON SCHEMA s, … IN SCHEMA s, COMMENT ON SCHEMA s, …). */
function namedSchemas(type: string, node: Json): string[] {
  if (type === 'RenameStmt') return typeof node.subname === 'string' ? [node.subname] : [];
  const value = type === 'GrantStmt' || type === 'DropStmt' ? node.objects : node.object;
  const list = Array.isArray(value) ? value : [value];
  return list.flatMap((item) => {
    const sval = ((item as Json | undefined)?.String as Json | undefined)?.sval;
    return typeof sval === 'string' ? [sval] : [];
  });
}

/**
 * pg_settings has an update rule that calls set_config(name, setting, false): UPDATE pg_settings SET setting =
 * 'tenant_b' WHERE name = 'search_path' moves the session's pin without any SET the guard could see. Any statement
 * writing it is refused, as are views and rules over it: a view on pg_settings is automatically updatable through
 * that rule, and a rule can turn a tenant's own table into such a view.
 */
const SETTINGS_VIEW = 'pg_settings';

/** The statement types whose `relation` is written, and the verb for the refusal. */
const WRITES: Record<string, string> = {
  InsertStmt: 'INSERT INTO',
  UpdateStmt: 'UPDATE',
  DeleteStmt: 'DELETE FROM',
  MergeStmt: 'MERGE INTO',
  CopyStmt: 'COPY ... FROM',
  TruncateStmt: 'TRUNCATE',
};

/** A refusal's words when this statement writes pg_settings or defines a view or rule over it, else null. */
export function settingsViewWrite(type: string, node: Json): string | null {
  const verb = WRITES[type];
  if (verb !== undefined) {
    if (type === 'CopyStmt' && node.is_from !== true) return null;
    const targets =
      type === 'TruncateStmt'
        ? ((node.relations as unknown[] | undefined) ?? []).map((r) => (r as Json).RangeVar)
        : [node.relation];
    return targets.some(isSettingsView) ? `${verb} pg_settings (its update rule calls set_config)` : null;
  }
  if (type === 'ViewStmt' || type === 'RuleStmt') {
    return mentionsSettingsView(node)
      ? `a ${type === 'ViewStmt' ? 'view' : 'rule'} over pg_settings (writable through its update rule, which calls set_config)`
      : null;
  }
  return null;
}

/** pg_settings as PostgreSQL resolves the name with the pinned search_path: pg_catalog comes first. */
function isSettingsView(relation: unknown): boolean {
  const range = relation as Json | undefined;
  if (range?.relname !== SETTINGS_VIEW || typeof range.catalogname === 'string') return false;
  return range.schemaname === undefined || range.schemaname === 'pg_catalog';
}

function mentionsSettingsView(value: unknown): boolean {
  if (Array.isArray(value)) return value.some(mentionsSettingsView);
  if (value === null || typeof value !== 'object') return false;
  const node = value as Json;
  if (node.relname !== undefined && isSettingsView(node)) return true;
  for (const key in node) if (mentionsSettingsView(node[key])) return true;
  return false;
}
