// The filter's stand-ins for casts to reg* types: names and oids resolved only within what the session may see.
import { CATALOG_SCHEMA } from './surfaces.js';

const S = CATALOG_SCHEMA;

/** Catalog of each reg* type's objects, and PostgreSQL's error for a name of that kind that does not exist. */
export const REG_TYPE_OBJECTS: Record<string, { catalog: string; errcode: string; message: string }> = {
  regclass: { catalog: 'pg_class', errcode: '42P01', message: 'relation "%" does not exist' },
  regtype: { catalog: 'pg_type', errcode: '42704', message: 'type "%" does not exist' },
  regproc: { catalog: 'pg_proc', errcode: '42883', message: 'function "%" does not exist' },
  regprocedure: { catalog: 'pg_proc', errcode: '42883', message: 'function "%" does not exist' },
  regoper: { catalog: 'pg_operator', errcode: '42883', message: 'operator does not exist: %' },
  regoperator: { catalog: 'pg_operator', errcode: '42883', message: 'operator does not exist: %' },
  regnamespace: { catalog: 'pg_namespace', errcode: '3F000', message: 'schema "%" does not exist' },
  regrole: { catalog: 'pg_authid', errcode: '42704', message: 'role "%" does not exist' },
  regcollation: { catalog: 'pg_collation', errcode: '42704', message: 'collation "%" does not exist' },
  regconfig: { catalog: 'pg_ts_config', errcode: '42704', message: 'text search configuration "%" does not exist' },
  regdictionary: { catalog: 'pg_ts_dict', errcode: '42704', message: 'text search dictionary "%" does not exist' },
};

/**
 * <type>_in(oid) and <type>_in(text): what the guard puts in place of a cast to a reg* type. An oid the session may
 * not see gives NULL (as does one that does not exist: no answer tells them apart); a name is resolved as the cast
 * would, behind a schema check, and one the session may not see fails as a missing one does.
 */
export function regTypeFunctions(type: string): string[] {
  const { catalog, errcode, message } = REG_TYPE_OBJECTS[type]!;
  const visible = (value: string): string =>
    `${S}.visible_object('pg_catalog.${catalog}'::pg_catalog.regclass, ${value})`;
  const byName = type === 'regnamespace' || type === 'regrole';
  return [
    `CREATE OR REPLACE FUNCTION ${S}.${type}_in(pg_catalog.oid) RETURNS pg_catalog.${type} LANGUAGE sql STABLE STRICT AS $$
  SELECT $1::pg_catalog.${type} WHERE ${visible('$1')} $$`,
    `CREATE OR REPLACE FUNCTION ${S}.${type}_in(pg_catalog.text) RETURNS pg_catalog.${type} LANGUAGE plpgsql STABLE STRICT AS $$
DECLARE
  v pg_catalog.${type};
BEGIN
  IF $1 ~ '^\\s*[0-9]+\\s*$' THEN RETURN ${S}.${type}_in($1::pg_catalog.oid); END IF;
  ${byName ? '' : `PERFORM ${S}.check_schema_of($1);`}
  v := $1::pg_catalog.${type};
  IF v::pg_catalog.oid <> 0 AND NOT ${visible('v::pg_catalog.oid')} THEN
    RAISE EXCEPTION '${message}', $1 USING ERRCODE = '${errcode}';
  END IF;
  RETURN v;
END $$`,
  ];
}
