// The guard's rule tables: statements, functions and relations refused, and where the tree holds names.
import type { GuardRule } from './analysis.js';
import type { Json } from './tree-nodes.js';

/** Statements no tenant may run: server, database and role administration, and other tenants' channels. */
export const DENIED_STATEMENTS: Record<string, [GuardRule, string]> = {
  AlterSystemStmt: ['server_admin', 'ALTER SYSTEM'],
  LoadStmt: ['server_admin', 'LOAD'],
  CheckPointStmt: ['server_admin', 'CHECKPOINT'],
  CreateExtensionStmt: ['server_admin', 'CREATE EXTENSION'],
  AlterExtensionStmt: ['server_admin', 'ALTER EXTENSION'],
  AlterExtensionContentsStmt: ['server_admin', 'ALTER EXTENSION'],
  CreatedbStmt: ['server_admin', 'CREATE DATABASE'],
  DropdbStmt: ['server_admin', 'DROP DATABASE'],
  AlterDatabaseStmt: ['server_admin', 'ALTER DATABASE'],
  AlterDatabaseSetStmt: ['session_state', 'ALTER DATABASE ... SET'],
  AlterDatabaseRefreshCollStmt: ['server_admin', 'ALTER DATABASE'],
  CreateRoleStmt: ['server_admin', 'CREATE ROLE'],
  AlterRoleStmt: ['server_admin', 'ALTER ROLE'],
  AlterRoleSetStmt: ['session_state', 'ALTER ROLE ... SET'],
  DropRoleStmt: ['server_admin', 'DROP ROLE'],
  GrantRoleStmt: ['server_admin', 'GRANT role'],
  ReassignOwnedStmt: ['server_admin', 'REASSIGN OWNED'],
  DropOwnedStmt: ['server_admin', 'DROP OWNED'],
  AlterOwnerStmt: ['server_admin', 'ALTER ... OWNER TO'],
  AlterDefaultPrivilegesStmt: ['server_admin', 'ALTER DEFAULT PRIVILEGES'],
  CreateTableSpaceStmt: ['server_admin', 'CREATE TABLESPACE'],
  DropTableSpaceStmt: ['server_admin', 'DROP TABLESPACE'],
  AlterTableSpaceOptionsStmt: ['server_admin', 'ALTER TABLESPACE'],
  AlterTableMoveAllStmt: ['server_admin', 'ALTER TABLE ALL IN TABLESPACE'],
  CreateFdwStmt: ['server_admin', 'CREATE FOREIGN DATA WRAPPER'],
  AlterFdwStmt: ['server_admin', 'ALTER FOREIGN DATA WRAPPER'],
  CreateForeignServerStmt: ['server_admin', 'CREATE SERVER'],
  AlterForeignServerStmt: ['server_admin', 'ALTER SERVER'],
  CreateUserMappingStmt: ['server_admin', 'CREATE USER MAPPING'],
  AlterUserMappingStmt: ['server_admin', 'ALTER USER MAPPING'],
  DropUserMappingStmt: ['server_admin', 'DROP USER MAPPING'],
  CreateForeignTableStmt: ['server_admin', 'CREATE FOREIGN TABLE'],
  ImportForeignSchemaStmt: ['server_admin', 'IMPORT FOREIGN SCHEMA'],
  CreatePublicationStmt: ['server_admin', 'CREATE PUBLICATION'],
  AlterPublicationStmt: ['server_admin', 'ALTER PUBLICATION'],
  CreateSubscriptionStmt: ['server_admin', 'CREATE SUBSCRIPTION'],
  AlterSubscriptionStmt: ['server_admin', 'ALTER SUBSCRIPTION'],
  DropSubscriptionStmt: ['server_admin', 'DROP SUBSCRIPTION'],
  CreateEventTrigStmt: ['server_admin', 'CREATE EVENT TRIGGER'],
  AlterEventTrigStmt: ['server_admin', 'ALTER EVENT TRIGGER'],
  CreatePLangStmt: ['server_admin', 'CREATE LANGUAGE'],
  CreateAmStmt: ['server_admin', 'CREATE ACCESS METHOD'],
  SecLabelStmt: ['server_admin', 'SECURITY LABEL'],
  CreateSchemaStmt: ['schema', 'CREATE SCHEMA'],
  // These name functions outside any call the guard could judge (an aggregate whose step is set_config, an
  // operator over a function that reads other sessions): refused rather than analysed.
  CreateCastStmt: ['server_admin', 'CREATE CAST'],
  CreateOpClassStmt: ['server_admin', 'CREATE OPERATOR CLASS'],
  CreateOpFamilyStmt: ['server_admin', 'CREATE OPERATOR FAMILY'],
  AlterOpFamilyStmt: ['server_admin', 'ALTER OPERATOR FAMILY'],
  CreateTransformStmt: ['server_admin', 'CREATE TRANSFORM'],
  CreateConversionStmt: ['server_admin', 'CREATE CONVERSION'],
  DiscardStmt: ['session_state', 'DISCARD'],
};

/** Functions that reach files, other sessions, the server, database-wide objects or run SQL the guard cannot see. */
export const DENIED_FUNCTIONS = new Map<string, GuardRule>([
  ...[
    'pg_read_file',
    'pg_read_binary_file',
    'pg_ls_dir',
    'pg_stat_file',
    'pg_ls_logdir',
    'pg_ls_waldir',
    'pg_ls_tmpdir',
    'pg_ls_archive_statusdir',
    'pg_ls_logicalsnapdir',
    'pg_ls_logicalmapdir',
    'pg_ls_replslotdir',
    'pg_file_write',
    'pg_file_rename',
    'pg_file_unlink',
    'pg_file_sync',
    'pg_logdir_ls',
    'pg_current_logfile',
    'lo_import',
    'lo_export',
    'lo_create',
    'lo_creat',
    'lo_open',
    'lo_unlink',
    'lo_get',
    'lo_put',
    'lo_from_bytea',
    'loread',
    'lowrite',
    'lo_truncate',
    'lo_truncate64',
    'lo_lseek',
    'lo_lseek64',
    'lo_tell',
    'lo_tell64',
    'lo_close',
  ].map((name) => [name, 'file_access'] as const),
  ...[
    'pg_terminate_backend',
    'pg_cancel_backend',
    'pg_signal_backend',
    'pg_reload_conf',
    'pg_rotate_logfile',
    'pg_promote',
    'pg_switch_wal',
    'pg_create_restore_point',
    'pg_backup_start',
    'pg_backup_stop',
    'pg_start_backup',
    'pg_stop_backup',
    'pg_log_backend_memory_contexts',
    'pg_stat_get_activity',
    'pg_stat_get_backend_activity',
    'pg_stat_get_backend_pid',
    'pg_stat_get_backend_userid',
    'pg_stat_get_backend_client_addr',
    'pg_advisory_lock',
    'pg_advisory_lock_shared',
    'pg_try_advisory_lock',
    'pg_try_advisory_lock_shared',
    'pg_advisory_unlock',
    'pg_advisory_unlock_shared',
    'pg_advisory_unlock_all',
    'pg_create_physical_replication_slot',
    'pg_create_logical_replication_slot',
    'pg_drop_replication_slot',
    'pg_import_system_collations',
    'pg_stat_get_backend_idset',
  ].map((name) => [name, 'server_admin'] as const),
  ...[
    'query_to_xml',
    'query_to_xmlschema',
    'query_to_xml_and_xmlschema',
    'cursor_to_xml',
    'cursor_to_xmlschema',
    'table_to_xml',
    'table_to_xmlschema',
    'table_to_xml_and_xmlschema',
    'schema_to_xml',
    'schema_to_xmlschema',
    'schema_to_xml_and_xmlschema',
    'database_to_xml',
    'database_to_xmlschema',
    'database_to_xml_and_xmlschema',
    // These run the SQL text they are given.
    'ts_stat',
    'ts_rewrite',
  ].map((name) => [name, 'dynamic_sql'] as const),
]);

export const DENIED_FUNCTION_PREFIXES: Array<[string, GuardRule]> = [
  ['dblink', 'server_admin'],
  ['postgres_fdw', 'server_admin'],
  ['pg_stat_reset', 'server_admin'],
  ['pg_stat_get_backend_', 'server_admin'],
  ['pg_replication_', 'server_admin'],
  ['pg_logical_', 'server_admin'],
];

/** Relations that show other sessions, hence other tenants, when every backend logs in as the same role. */
export const DENIED_RELATIONS = new Set([
  'pg_stat_activity',
  'pg_stat_statements',
  'pg_stat_statements_info',
  'pg_locks',
  // Data, not just names, of every table and sequence; and the statements the proxy prepared for other tenants.
  'pg_stats',
  'pg_stats_ext',
  'pg_stats_ext_exprs',
  'pg_sequences',
  'pg_prepared_statements',
]);

/** The reg* types whose input resolves a name (regnamespace, which takes a schema, is judged on its own). */
export const REG_NAME_TYPES = [
  'regclass',
  'regproc',
  'regprocedure',
  'regoper',
  'regoperator',
  'regtype',
  'regcollation',
  'regconfig',
  'regdictionary',
] as const;

/** Functions resolving a relation/sequence name from a string at run time; their literal arguments are judged. */
export const NAME_ARGUMENT_FUNCTIONS = new Set([
  'nextval',
  'currval',
  'setval',
  'pg_get_serial_sequence',
  'to_regclass',
  'to_regproc',
  'to_regprocedure',
  'to_regoper',
  'to_regoperator',
  'to_regtype',
  'to_regtypemod',
  'to_regcollation',
  'has_table_privilege',
  'has_sequence_privilege',
  'has_column_privilege',
  'has_function_privilege',
  'has_type_privilege',
  'pg_relation_size',
  'pg_total_relation_size',
  'pg_table_size',
  'pg_indexes_size',
  'pg_relation_filenode',
  'pg_relation_filepath',
  'pg_get_viewdef',
  'pg_get_indexdef',
  'pg_get_triggerdef',
  'pg_get_constraintdef',
  'pg_get_functiondef',
  'pg_get_function_arguments',
  'obj_description',
  'col_description',
  'pg_describe_object',
  'pg_column_size',
  'pg_partition_tree',
  'pg_partition_root',
  'pg_partition_ancestors',
  'pg_sequence_last_value',
  'pg_sequence_parameters',
  // The other built-ins taking a regclass: given a parameter, PostgreSQL infers it as regclass and resolves the
  // bound value at Bind, as for a parameter declared regclass in the Parse message.
  'pg_relation_is_updatable',
  'pg_column_is_updatable',
  'pg_relation_is_publishable',
  'pg_get_replica_identity_index',
  'pg_index_has_property',
  'pg_index_column_has_property',
  'brin_summarize_range',
  'brin_summarize_new_values',
  'brin_desummarize_range',
  'gin_clean_pending_list',
  // The reg* types' own conversion functions: regclass('s.t') is a cast written as a call.
  ...REG_NAME_TYPES,
]);
/** Functions whose argument is a schema name. */
export const SCHEMA_ARGUMENT_FUNCTIONS = new Set(['to_regnamespace', 'has_schema_privilege', 'regnamespace']);
/** reg* types: casting a string to them resolves a name. */
export const NAME_TYPES: ReadonlySet<string> = new Set(REG_NAME_TYPES);

/** Fields holding a qualified name as a list of String nodes. */
export const QUALIFIED_NAME_FIELDS = new Set([
  'funcname',
  'names',
  'name',
  'collname',
  'objname',
  'defnames',
  'typeName',
  'opclass',
  'opfamilyname',
  'opclassname',
  'conversion_name',
  'domainname',
  'opname',
]);
/** Statement fields holding objects as (lists of) qualified names rather than RangeVars. */
export const OBJECT_FIELDS: Record<string, string> = {
  DropStmt: 'objects',
  CommentStmt: 'object',
  AlterObjectSchemaStmt: 'object',
  RenameStmt: 'object',
  AlterObjectDependsStmt: 'object',
  GrantStmt: 'objects',
};

/** Object types named as table.member (COMMENT ON COLUMN t.c, DROP TRIGGER g ON t): the last part is no relation. */
export const TABLE_MEMBER_OBJECTS = new Set([
  'OBJECT_COLUMN',
  'OBJECT_TRIGGER',
  'OBJECT_POLICY',
  'OBJECT_RULE',
  'OBJECT_TABCONSTRAINT',
]);

export const TRUSTED_LANGUAGES = new Set(['sql', 'plpgsql']);
export const MAX_DEPTH = 4;

/**
 * Top-level statements that change no catalog a prepared statement's plan or row type depends on. Everything else
 * counts as DDL: a statement type missing here costs a re-prepare, never a stale plan.
 */
export const PLAIN_STATEMENTS = new Set([
  'SelectStmt',
  'InsertStmt',
  'UpdateStmt',
  'DeleteStmt',
  'MergeStmt',
  'TransactionStmt',
  'VariableSetStmt',
  'VariableShowStmt',
  'CopyStmt',
  'PrepareStmt',
  'ExecuteStmt',
  'DeallocateStmt',
  'LockStmt',
  'TruncateStmt',
  'VacuumStmt',
  'NotifyStmt',
  'ListenStmt',
  'UnlistenStmt',
  'DeclareCursorStmt',
  'FetchStmt',
  'ClosePortalStmt',
  'CallStmt',
  'CheckPointStmt',
  'DiscardStmt',
  'ConstraintsSetStmt',
  'CommentStmt',
  'GrantStmt',
  'ReindexStmt',
  'ClusterStmt',
  'RefreshMatViewStmt',
  'DoStmt',
  'LoadStmt',
  'SecLabelStmt',
]);

/** Whether a top-level statement is DDL (SELECT INTO and EXPLAIN of a CREATE TABLE AS create a table too). */
export function isSchemaChange(stmt: Json): boolean {
  for (const type in stmt) {
    const node = stmt[type] as Json;
    if (type === 'ExplainStmt')
      return node.query !== null && typeof node.query === 'object' && isSchemaChange(node.query as Json);
    if (type === 'SelectStmt') return node.intoClause !== undefined;
    return !PLAIN_STATEMENTS.has(type);
  }
  return false;
}
