// The catalog surfaces a tenant can read, and for each how it is filtered: the one list the guard and installer share.
//
// A relation listed in FILTERED_RELATIONS has a security-barrier view of the same name and columns in CATALOG_SCHEMA
// (src/catalog/install.ts) showing only rows about namespaces and roles the session may see; the guard rewrites every
// reference to it there. OPEN_RELATIONS describe the database or the server, not a tenant, and are read as they are.
// Any other relation named pg_catalog.X is refused, so a catalog added by a later PostgreSQL fails closed.

/** The proxy-owned schema holding the filtered views and functions. Tenants never name it (the guard refuses it). */
export const CATALOG_SCHEMA = 'pgtp_catalog';

/**
 * Version of what install.ts creates; the installer replaces everything when the installed one is older. Bump it
 * whenever a view's filter or a wrapper changes.
 */
export const CATALOG_FILTER_VERSION = 5;

/**
 * The tenant marker: every pin takes a session-level shared advisory lock (TENANT_MARKER_CLASS, the oid of the
 * tenant's schema) and the reset (DISCARD ALL, or pg_advisory_unlock_all) releases it, so pg_locks says at each moment
 * which backends serve which tenant — pinned or parked — across every proxy process sharing the database. The
 * tenant's own sessions (pg_stat_activity, pg_cancel_backend, pg_terminate_backend) are the backends holding its
 * marker, checked when the statement runs. Tenants cannot take or release advisory locks (the guard refuses the
 * functions). 0x70677470 is "pgtp".
 */
export const TENANT_MARKER_CLASS = 0x70677470;

/** SQL building blocks over the row alias `t`, evaluated once per query (InitPlans), not per row. */
const NS = `(SELECT ${CATALOG_SCHEMA}.visible_namespaces())::pg_catalog.oid[]`;
const ROLES = `(SELECT ${CATALOG_SCHEMA}.visible_roles())::pg_catalog.oid[]`;
const ns = (column: string): string => `t.${column} = ANY (${NS})`;
const role = (column: string): string => `t.${column} = ANY (${ROLES})`;
const rel = (column: string): string =>
  `t.${column} IN (SELECT c.oid FROM pg_catalog.pg_class c WHERE c.relnamespace = ANY (${NS}))`;
const proc = (column: string): string =>
  `t.${column} IN (SELECT p.oid FROM pg_catalog.pg_proc p WHERE p.pronamespace = ANY (${NS}))`;
const type = (column: string): string =>
  `t.${column} IN (SELECT y.oid FROM pg_catalog.pg_type y WHERE y.typnamespace = ANY (${NS}))`;
const schemaName = (column: string): string =>
  `t.${column} IN (SELECT n.nspname FROM pg_catalog.pg_namespace n WHERE n.oid = ANY (${NS}))`;
/**
 * Statistics name no object, they show values: those of the shared catalogs (pg_class.relname, pg_proc.prosrc, once
 * autovacuum has analyzed them) are every tenant's names and sources, so only the tenant's own schemas' count.
 */
const ownSchemaName = (column: string): string =>
  `${schemaName(column)} AND t.${column} NOT IN ('pg_catalog', 'information_schema', 'pg_toast')`;
const roleName = (column: string): string =>
  `t.${column} IN (SELECT r.rolname FROM pg_catalog.pg_roles r WHERE r.oid = ANY (${ROLES}))`;
const object = (classid: string, objid: string): string => `${CATALOG_SCHEMA}.visible_object(t.${classid}, t.${objid})`;
const ownBackend = 't.pid = pg_catalog.pg_backend_pid()';
/** The proxy's tenant marker is not the tenant's lock: hidden from its pg_locks like the proxy's statements are. */
const notMarker = `NOT (t.locktype = 'advisory' AND t.classid = ${TENANT_MARKER_CLASS} AND t.objsubid = 2)`;
const thisDatabase = (column: string): string =>
  `(t.${column} = 0 OR t.${column} = (SELECT d.oid FROM pg_catalog.pg_database d WHERE d.datname = pg_catalog.current_database()))`;
const and = (...parts: string[]): string => parts.map((p) => `(${p})`).join(' AND ');

/** pg_catalog relations shown through a filtered view: name → the view's WHERE over the catalog row `t`. */
export const FILTERED_RELATIONS: Readonly<Record<string, string>> = {
  pg_namespace: ns('oid'),
  pg_class: ns('relnamespace'),
  pg_attribute: rel('attrelid'),
  pg_attrdef: rel('adrelid'),
  pg_constraint: ns('connamespace'),
  pg_index: rel('indrelid'),
  pg_proc: ns('pronamespace'),
  pg_aggregate: proc('aggfnoid'),
  pg_type: ns('typnamespace'),
  pg_enum: type('enumtypid'),
  pg_range: type('rngtypid'),
  pg_trigger: rel('tgrelid'),
  pg_rewrite: rel('ev_class'),
  pg_policy: rel('polrelid'),
  pg_description: object('classoid', 'objoid'),
  pg_shdescription: object('classoid', 'objoid'),
  pg_seclabel: object('classoid', 'objoid'),
  pg_shseclabel: object('classoid', 'objoid'),
  pg_init_privs: object('classoid', 'objoid'),
  pg_depend: and(object('classid', 'objid'), object('refclassid', 'refobjid')),
  pg_shdepend: and(thisDatabase('dbid'), object('classid', 'objid'), object('refclassid', 'refobjid')),
  pg_sequence: rel('seqrelid'),
  pg_statistic_ext: ns('stxnamespace'),
  pg_inherits: and(rel('inhrelid'), rel('inhparent')),
  pg_partitioned_table: rel('partrelid'),
  pg_foreign_table: rel('ftrelid'),
  pg_operator: ns('oprnamespace'),
  pg_opclass: ns('opcnamespace'),
  pg_opfamily: ns('opfnamespace'),
  pg_collation: ns('collnamespace'),
  pg_conversion: ns('connamespace'),
  pg_ts_config: ns('cfgnamespace'),
  pg_ts_dict: ns('dictnamespace'),
  pg_ts_parser: ns('prsnamespace'),
  pg_ts_template: ns('tmplnamespace'),
  pg_default_acl: and(`t.defaclnamespace = 0 OR ${ns('defaclnamespace')}`, role('defaclrole')),
  pg_db_role_setting: and(thisDatabase('setdatabase'), `t.setrole = 0 OR ${role('setrole')}`),
  pg_largeobject_metadata: role('lomowner'),
  pg_publication_rel: rel('prrelid'),
  pg_publication_namespace: ns('pnnspid'),
  pg_subscription_rel: rel('srrelid'),
  pg_roles: role('oid'),
  pg_user: role('usesysid'),
  pg_group: role('grosysid'),
  pg_auth_members: and(role('roleid'), role('member'), role('grantor')),
  pg_user_mappings: `t.umuser = 0 OR ${role('umuser')}`,
  pg_prepared_xacts: roleName('owner'),
  pg_locks: and(ownBackend, notMarker),
  // Read through CATALOG_SCHEMA.tenant_activity(), which may see the query text of the login role's backends.
  // (a SECURITY DEFINER function: the filter's operators are qualified, the caller's search path being in force).
  pg_stat_activity: `t.pid OPERATOR(pg_catalog.=) ANY (${CATALOG_SCHEMA}.tenant_backends())`,
  pg_stat_progress_analyze: ownBackend,
  pg_stat_progress_basebackup: ownBackend,
  pg_stat_progress_cluster: ownBackend,
  pg_stat_progress_copy: ownBackend,
  pg_stat_progress_create_index: ownBackend,
  pg_stat_progress_vacuum: ownBackend,
  pg_tables: schemaName('schemaname'),
  pg_views: schemaName('schemaname'),
  pg_matviews: schemaName('schemaname'),
  pg_indexes: schemaName('schemaname'),
  pg_rules: schemaName('schemaname'),
  pg_policies: schemaName('schemaname'),
  pg_sequences: schemaName('schemaname'),
  pg_stats: ownSchemaName('schemaname'),
  pg_stats_ext: ownSchemaName('schemaname'),
  pg_stats_ext_exprs: ownSchemaName('schemaname'),
  pg_seclabels: object('classoid', 'objoid'),
  pg_publication_tables: schemaName('schemaname'),
  ...Object.fromEntries(
    [
      'pg_stat_all_tables',
      'pg_stat_user_tables',
      'pg_stat_sys_tables',
      'pg_stat_xact_all_tables',
      'pg_stat_xact_user_tables',
      'pg_stat_xact_sys_tables',
      'pg_statio_all_tables',
      'pg_statio_user_tables',
      'pg_statio_sys_tables',
      'pg_stat_all_indexes',
      'pg_stat_user_indexes',
      'pg_stat_sys_indexes',
      'pg_statio_all_indexes',
      'pg_statio_user_indexes',
      'pg_statio_sys_indexes',
      'pg_statio_all_sequences',
      'pg_statio_user_sequences',
      'pg_statio_sys_sequences',
    ].map((name) => [name, rel('relid')]),
  ),
  pg_stat_user_functions: proc('funcid'),
  pg_stat_xact_user_functions: proc('funcid'),
};

/**
 * pg_catalog relations read as they are: they describe the database or the server (or only superusers may read
 * them, so PostgreSQL refuses a tenant), never a tenant's objects, roles or sessions.
 */
export const OPEN_RELATIONS: ReadonlySet<string> = new Set([
  'pg_am',
  'pg_amop',
  'pg_amproc',
  'pg_authid',
  'pg_available_extension_versions',
  'pg_available_extensions',
  'pg_backend_memory_contexts',
  'pg_cast',
  'pg_config',
  'pg_cursors',
  'pg_database',
  'pg_event_trigger',
  'pg_extension',
  'pg_file_settings',
  'pg_foreign_data_wrapper',
  'pg_foreign_server',
  'pg_hba_file_rules',
  'pg_ident_file_mappings',
  'pg_language',
  'pg_largeobject',
  'pg_parameter_acl',
  'pg_publication',
  'pg_replication_origin',
  'pg_replication_origin_status',
  'pg_replication_slots',
  'pg_settings',
  'pg_shadow',
  'pg_shmem_allocations',
  'pg_stat_archiver',
  'pg_stat_bgwriter',
  'pg_stat_checkpointer',
  'pg_stat_database',
  'pg_stat_database_conflicts',
  'pg_stat_gssapi',
  'pg_stat_io',
  'pg_stat_recovery_prefetch',
  'pg_stat_replication',
  'pg_stat_replication_slots',
  'pg_stat_slru',
  'pg_stat_ssl',
  'pg_stat_subscription',
  'pg_stat_subscription_stats',
  'pg_stat_wal',
  'pg_stat_wal_receiver',
  'pg_statistic',
  'pg_statistic_ext_data',
  'pg_subscription',
  'pg_tablespace',
  'pg_timezone_abbrevs',
  'pg_timezone_names',
  'pg_transform',
  'pg_ts_config_map',
  'pg_user_mapping',
  'pg_wait_events',
]);

/**
 * information_schema relations (PostgreSQL 15-17). Each has a view in CATALOG_SCHEMA whose filter install.ts derives
 * from its columns: every *_schema column must name a visible schema and every role column a visible role.
 */
export const INFORMATION_SCHEMA_RELATIONS: ReadonlySet<string> = new Set([
  '_pg_foreign_data_wrappers',
  '_pg_foreign_servers',
  '_pg_foreign_table_columns',
  '_pg_foreign_tables',
  '_pg_user_mappings',
  'administrable_role_authorizations',
  'applicable_roles',
  'attributes',
  'character_sets',
  'check_constraint_routine_usage',
  'check_constraints',
  'collation_character_set_applicability',
  'collations',
  'column_column_usage',
  'column_domain_usage',
  'column_options',
  'column_privileges',
  'column_udt_usage',
  'columns',
  'constraint_column_usage',
  'constraint_table_usage',
  'data_type_privileges',
  'domain_constraints',
  'domain_udt_usage',
  'domains',
  'element_types',
  'enabled_roles',
  'foreign_data_wrapper_options',
  'foreign_data_wrappers',
  'foreign_server_options',
  'foreign_servers',
  'foreign_table_options',
  'foreign_tables',
  'information_schema_catalog_name',
  'key_column_usage',
  'parameters',
  'referential_constraints',
  'role_column_grants',
  'role_routine_grants',
  'role_table_grants',
  'role_udt_grants',
  'role_usage_grants',
  'routine_column_usage',
  'routine_privileges',
  'routine_routine_usage',
  'routine_sequence_usage',
  'routine_table_usage',
  'routines',
  'schemata',
  'sequences',
  'sql_features',
  'sql_implementation_info',
  'sql_parts',
  'sql_sizing',
  'table_constraints',
  'table_privileges',
  'tables',
  'transforms',
  'triggered_update_columns',
  'triggers',
  'udt_privileges',
  'usage_privileges',
  'user_defined_types',
  'user_mapping_options',
  'user_mappings',
  'view_column_usage',
  'view_routine_usage',
  'view_table_usage',
  'views',
]);

/** What a wrapped function's first object argument is, which decides whether the call shows anything. */
export type WrappedKind =
  | 'relation'
  | 'function'
  | 'type'
  | 'constraint'
  | 'trigger'
  | 'rule'
  | 'statistics'
  | 'role'
  | 'object'
  | 'expression'
  | 'to_reg'
  | 'privilege'
  | 'membership'
  | 'signal';

/**
 * The sequence functions resolve a text argument to a sequence at run time (an implicit cast to regclass), where no
 * name rule sees it: a computed name goes through the wrappers, whose text overload resolves it as a missing one when
 * it is not the tenant's. A string literal is judged by the guard's name rules and keeps PostgreSQL's own function.
 */
export const SEQUENCE_FUNCTIONS: ReadonlySet<string> = new Set(['nextval', 'currval', 'setval']);

/**
 * pg_catalog functions that print a name, definition, comment or size of an object given its oid (or resolve a name
 * given as text): each has wrappers in CATALOG_SCHEMA, one per overload, answering as PostgreSQL does for an object
 * that does not exist when the object is not visible.
 */
export const WRAPPED_FUNCTIONS: Readonly<Record<string, WrappedKind>> = {
  pg_get_functiondef: 'function',
  pg_get_function_arguments: 'function',
  pg_get_function_identity_arguments: 'function',
  pg_get_function_result: 'function',
  pg_get_function_arg_default: 'function',
  pg_get_function_sqlbody: 'function',
  pg_get_viewdef: 'relation',
  pg_get_indexdef: 'relation',
  pg_get_partkeydef: 'relation',
  pg_get_partition_constraintdef: 'relation',
  pg_get_replica_identity_index: 'relation',
  pg_get_serial_sequence: 'relation',
  pg_table_size: 'relation',
  pg_relation_size: 'relation',
  pg_total_relation_size: 'relation',
  pg_indexes_size: 'relation',
  pg_relation_filenode: 'relation',
  pg_relation_filepath: 'relation',
  pg_partition_tree: 'relation',
  pg_partition_root: 'relation',
  pg_partition_ancestors: 'relation',
  pg_sequence_last_value: 'relation',
  pg_sequence_parameters: 'relation',
  pg_relation_is_updatable: 'relation',
  pg_column_is_updatable: 'relation',
  pg_index_has_property: 'relation',
  pg_index_column_has_property: 'relation',
  col_description: 'relation',
  // Only when the sequence is not a string literal (see SEQUENCE_FUNCTIONS): a name computed at run time.
  nextval: 'relation',
  currval: 'relation',
  setval: 'relation',
  pg_get_expr: 'expression',
  pg_get_constraintdef: 'constraint',
  pg_get_triggerdef: 'trigger',
  pg_get_ruledef: 'rule',
  pg_get_statisticsobjdef: 'statistics',
  pg_get_statisticsobjdef_columns: 'statistics',
  pg_get_statisticsobjdef_expressions: 'statistics',
  pg_get_userbyid: 'role',
  format_type: 'type',
  obj_description: 'object',
  shobj_description: 'object',
  pg_describe_object: 'object',
  pg_identify_object: 'object',
  pg_identify_object_as_address: 'object',
  to_regclass: 'to_reg',
  to_regtype: 'to_reg',
  to_regproc: 'to_reg',
  to_regprocedure: 'to_reg',
  to_regoper: 'to_reg',
  to_regoperator: 'to_reg',
  to_regnamespace: 'to_reg',
  to_regrole: 'to_reg',
  to_regcollation: 'to_reg',
  // A name of another tenant's object or role fails as a missing one does; an oid of one gives NULL.
  has_table_privilege: 'privilege',
  has_sequence_privilege: 'privilege',
  has_column_privilege: 'privilege',
  has_any_column_privilege: 'privilege',
  has_function_privilege: 'privilege',
  has_type_privilege: 'privilege',
  has_schema_privilege: 'privilege',
  pg_has_role: 'membership',
  // Signals only to a backend holding the session's tenant marker; any other pid is answered as one that does not exist.
  pg_cancel_backend: 'signal',
  pg_terminate_backend: 'signal',
};

/** The catalog of each wrapped has_*_privilege function's object. */
export const PRIVILEGE_OBJECTS: Readonly<Record<string, string>> = {
  has_table_privilege: 'pg_class',
  has_sequence_privilege: 'pg_class',
  has_column_privilege: 'pg_class',
  has_any_column_privilege: 'pg_class',
  has_function_privilege: 'pg_proc',
  has_type_privilege: 'pg_type',
  has_schema_privilege: 'pg_namespace',
};

/**
 * Object-identifier types whose output prints a name: a cast of anything but a name literal to one of them goes
 * through CATALOG_SCHEMA.<type>_in, which answers for an object the session cannot see as for one that does not exist.
 */
export const REG_TYPES: ReadonlySet<string> = new Set([
  'regclass',
  'regtype',
  'regproc',
  'regprocedure',
  'regoper',
  'regoperator',
  'regnamespace',
  'regrole',
  'regcollation',
  'regconfig',
  'regdictionary',
]);
