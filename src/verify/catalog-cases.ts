// verify-isolation's catalog cases: every surface src/catalog/surfaces.ts lists, read or called as tenant a.
import {
  FILTERED_RELATIONS,
  INFORMATION_SCHEMA_RELATIONS,
  WRAPPED_FUNCTIONS,
  type WrappedKind,
} from '../catalog/surfaces.js';
import type { AttackCase, Facts, PlantedKind } from './types.js';

/** A relation this PostgreSQL lacks answers 42P01: nothing to read, not a refusal. */
const MISSING_RELATION = ['42P01'] as const;

/** SELECT * of every filtered pg_catalog relation and every information_schema view: b's names must not show. */
export function catalogRelationCases(): AttackCase[] {
  const relations = [
    ...Object.keys(FILTERED_RELATIONS).map((r) => `pg_catalog.${r}`),
    ...[...INFORMATION_SCHEMA_RELATIONS].map((r) => `information_schema.${r}`),
  ];
  return relations.map((relation) => ({
    category: 'catalog',
    name: `SELECT * FROM ${relation}`,
    rule: 'catalog',
    sql: `SELECT * FROM ${relation}`,
    absent: MISSING_RELATION,
  }));
}

/** How each wrapped function is called on one of b's objects: `{oid}` is the oid slot. */
const CALLS: Readonly<Record<string, { kind: PlantedKind; call: string }>> = {
  pg_get_function_arg_default: { kind: 'function', call: 'pg_get_function_arg_default({oid}, 1)' },
  pg_get_viewdef: { kind: 'view', call: 'pg_get_viewdef({oid})' },
  pg_get_indexdef: { kind: 'index', call: 'pg_get_indexdef({oid})' },
  pg_get_serial_sequence: { kind: 'table', call: "pg_get_serial_sequence({oid}::regclass::text, 'id')" },
  pg_sequence_last_value: { kind: 'sequence', call: 'pg_sequence_last_value({oid})' },
  pg_sequence_parameters: { kind: 'sequence', call: 'pg_sequence_parameters({oid})::text' },
  pg_relation_is_updatable: { kind: 'view', call: 'pg_relation_is_updatable({oid}, false)' },
  pg_column_is_updatable: { kind: 'view', call: 'pg_column_is_updatable({oid}, 1::int2, false)' },
  pg_index_has_property: { kind: 'index', call: "pg_index_has_property({oid}, 'clusterable')" },
  pg_index_column_has_property: { kind: 'index', call: "pg_index_column_has_property({oid}, 1, 'asc')" },
  col_description: { kind: 'table', call: 'col_description({oid}, 2)' },
  pg_get_expr: {
    kind: 'table',
    call: '(SELECT pg_get_expr(d.adbin, d.adrelid) FROM pg_attrdef d WHERE d.adrelid = {oid} LIMIT 1)',
  },
  pg_partition_tree: { kind: 'table', call: '(SELECT count(*) FROM pg_partition_tree({oid}))' },
  pg_partition_ancestors: { kind: 'table', call: '(SELECT count(*) FROM pg_partition_ancestors({oid}))' },
  pg_get_statisticsobjdef_expressions: { kind: 'statistics', call: 'pg_get_statisticsobjdef_expressions({oid})' },
  format_type: { kind: 'type', call: 'format_type({oid}, NULL)' },
  obj_description: { kind: 'table', call: "obj_description({oid}, 'pg_class')" },
  shobj_description: { kind: 'role', call: "shobj_description({oid}, 'pg_authid')" },
  pg_describe_object: { kind: 'table', call: "pg_describe_object('pg_class'::regclass, {oid}, 0)" },
  pg_identify_object: { kind: 'table', call: "pg_identify_object('pg_class'::regclass, {oid}, 0)::text" },
  pg_identify_object_as_address: {
    kind: 'table',
    call: "pg_identify_object_as_address('pg_class'::regclass, {oid}, 0)::text",
  },
  pg_has_role: { kind: 'role', call: "pg_has_role({oid}, 'USAGE')" },
};

/** By kind, the default call shape and the object it takes. */
const BY_KIND: Partial<Record<WrappedKind, PlantedKind>> = {
  function: 'function',
  relation: 'table',
  constraint: 'constraint',
  trigger: 'trigger',
  rule: 'rule',
  statistics: 'statistics',
  role: 'role',
};

/** to_reg* with a name computed at run time (a literal name is the guard's, see the oracle cases). */
const TO_REG: Readonly<Record<string, { object: (f: Facts) => string; missing: (f: Facts) => string }>> = {
  to_regclass: { object: (f) => `${f.b.schema}.${f.secret}_t`, missing: (f) => `${f.missingSchema}.${f.secret}_t` },
  to_regtype: {
    object: (f) => `${f.b.schema}.${f.secret}_mood`,
    missing: (f) => `${f.missingSchema}.${f.secret}_mood`,
  },
  to_regproc: { object: (f) => `${f.b.schema}.${f.secret}_fn`, missing: (f) => `${f.missingSchema}.${f.secret}_fn` },
  to_regprocedure: {
    object: (f) => `${f.b.schema}.${f.secret}_fn()`,
    missing: (f) => `${f.missingSchema}.${f.secret}_fn()`,
  },
  to_regoper: { object: (f) => `${f.b.schema}.+`, missing: (f) => `${f.missingSchema}.+` },
  to_regoperator: { object: (f) => `${f.b.schema}.+(int4,int4)`, missing: (f) => `${f.missingSchema}.+(int4,int4)` },
  to_regnamespace: { object: (f) => f.b.schema, missing: (f) => f.missingSchema },
  to_regrole: { object: (f) => f.b.role ?? f.b.schema, missing: (f) => f.missingSchema },
  to_regcollation: { object: (f) => `${f.b.schema}.C`, missing: (f) => `${f.missingSchema}.C` },
};

/** A literal split so that no rule reads it as one name: the value exists only at run time. */
function computed(name: string): string {
  const cut = Math.max(1, Math.floor(name.length / 2));
  return `concat('${name.slice(0, cut)}', '${name.slice(cut)}')`;
}

/**
 * Every wrapped function (surfaces.ts WRAPPED_FUNCTIONS) on one of b's objects, against the same call on an oid or
 * schema that does not exist: a different answer, or b's marker in it, is a leak.
 */
export function wrappedFunctionCases(facts: Facts): AttackCase[] {
  const cases: AttackCase[] = [];
  for (const [fn, kind] of Object.entries(WRAPPED_FUNCTIONS)) {
    const base = { category: 'catalog' as const, name: `${fn}(tenant b's object)`, rule: 'catalog' };
    const to = TO_REG[fn];
    if (kind === 'to_reg' && to !== undefined) {
      cases.push({
        ...base,
        sql: `SELECT ${fn}(${computed(to.object(facts))})::text AS v`,
        control: `SELECT ${fn}(${computed(to.missing(facts))})::text AS v`,
      });
      continue;
    }
    if (kind === 'privilege') {
      const target =
        fn === 'has_schema_privilege'
          ? { object: facts.b.schema, missing: facts.missingSchema, privilege: 'USAGE' }
          : fn === 'has_function_privilege'
            ? {
                object: `${facts.b.schema}.${facts.secret}_fn()`,
                missing: `${facts.missingSchema}.${facts.secret}_fn()`,
                privilege: 'EXECUTE',
              }
            : fn === 'has_type_privilege'
              ? {
                  object: `${facts.b.schema}.${facts.secret}_mood`,
                  missing: `${facts.missingSchema}.${facts.secret}_mood`,
                  privilege: 'USAGE',
                }
              : {
                  object: `${facts.b.schema}.${facts.secret}_t`,
                  missing: `${facts.missingSchema}.${facts.secret}_t`,
                  privilege: fn === 'has_sequence_privilege' ? 'USAGE' : 'SELECT',
                };
      const column = fn === 'has_column_privilege' ? ", 'id'" : '';
      const relation = fn === 'has_sequence_privilege' ? `${facts.b.schema}.${facts.secret}_seq` : target.object;
      cases.push({
        ...base,
        name: `${fn}(tenant b's object by computed name)`,
        sql: `SELECT ${fn}(${computed(relation)}${column}, '${target.privilege}') AS v`,
        control: `SELECT ${fn}(${computed(fn === 'has_sequence_privilege' ? `${facts.missingSchema}.${facts.secret}_seq` : target.missing)}${column}, '${target.privilege}') AS v`,
      });
      continue;
    }
    const spec = CALLS[fn] ?? (BY_KIND[kind] !== undefined ? { kind: BY_KIND[kind], call: `${fn}({oid})` } : undefined);
    const oid = spec === undefined ? undefined : facts.oids[spec.kind];
    if (spec === undefined || oid === undefined) continue; // no such object of b (roles off: no role of its own)
    const call = (o: number): string => `SELECT (${spec.call.split('{oid}').join(`${o}::oid`)})::text AS v`;
    cases.push({ ...base, sql: call(oid), control: call(facts.missingOid) });
  }
  return cases;
}
