// Walks libpg-query's parse tree of a statement and records, independent of any tenant, what it reaches for.
import { parsePlPgSQLSync, parseSync } from 'libpg-query';
import { SqlState } from '../protocol/codes.js';
import { parseQualifiedName } from './qualified-name.js';
import { sharedObjectWrite, settingsViewWrite } from './shared-objects.js';
import { skeletonFor, type Skeleton } from './skeleton.js';

/** Bounded rule names: they become metric labels and audit fields. */
export type GuardRule =
  | 'schema'
  | 'cross_database'
  | 'session_state'
  | 'dynamic_sql'
  | 'file_access'
  | 'server_admin'
  | 'denied_function'
  | 'language'
  | 'unsupported'
  | 'syntax'
  | 'too_large'
  | 'protocol';

export interface Denial {
  rule: GuardRule;
  sqlstate: string;
  message: string;
  /** 1-based character position for syntax errors. */
  position?: number;
}

/** What a statement reaches for. Tenant-independent, so one analysis serves every tenant. */
export interface Analysis {
  /** A refusal that holds whoever sends the statement. */
  denial: Denial | null;
  /** Schemas the statement names, each with the first name that named it (for the message). */
  schemas: ReadonlyMap<string, string>;
  /** True when a rule looked at a literal: such analyses must not be shared between texts that differ in literals. */
  literalDependent: boolean;
  /** SQL-level PREPARE or DEALLOCATE: the server's prepared statements change under the proxy's statement cache. */
  touchesPrepared: boolean;
  /**
   * The text is one DEALLOCATE: of `name`, or of every statement (null). The proxy answers one naming a statement the
   * client prepared with a protocol Parse itself (no server knows the client's name for it).
   */
  deallocate: { name: string | null } | null;
  /** A session-level SET/RESET or set_config(): the client's settings must follow it to its next server. */
  changesSettings: boolean;
  /** Custom (dotted, e.g. app.user_id) settings it names: pg_settings does not list them, so they are asked by name. */
  customSettings: readonly string[];
  /** No statement at all (blank, comments, semicolons): PostgreSQL answers it with EmptyQueryResponse. */
  empty: boolean;
  /**
   * DDL: it may change what a name resolves to or a relation's row type, so statements prepared on servers before it
   * must be prepared again before another client shares them (see frontend/prepared).
   */
  changesSchema: boolean;
}

/** Prefix of the names the proxy gives prepared statements on servers; clients may not name them in SQL. */
export const SERVER_STATEMENT_PREFIX = 'pgtp_s';

/**
 * Settings that hold the tenant pin, or that change how the server's lexer reads strings (the guard parses with
 * standard_conforming_strings on and must read every statement exactly as the server does): never changed, by SET,
 * set_config() or in the startup packet (frontend/startup.ts).
 */
export const GUARDED_SETTINGS: ReadonlySet<string> = new Set([
  'search_path',
  'role',
  'session_authorization',
  'standard_conforming_strings',
  'backslash_quote',
]);
/**
 * Client encodings whose multibyte characters never hold a byte below 0x80, so a quote or backslash is always
 * itself: PostgreSQL's server encodings and every alias it accepts for them (src/common/encnames.c). An allowlist,
 * because the client-only encodings (SJIS, BIG5, GBK, UHC, GB18030, JOHAB) have aliases (windows932, cp936, …) a
 * denylist missed: in them a trail byte can look like a quote or backslash, and the guard, reading UTF-8, would see
 * different SQL from PostgreSQL's.
 */
const SAFE_CLIENT_ENCODINGS = new Set([
  'UTF8',
  'UNICODE',
  'SQLASCII',
  'MULEINTERNAL',
  'EUCCN',
  'EUCJP',
  'EUCJIS2004',
  'EUCKR',
  'EUCTW',
  'LATIN1',
  'LATIN2',
  'LATIN3',
  'LATIN4',
  'LATIN5',
  'LATIN6',
  'LATIN7',
  'LATIN8',
  'LATIN9',
  'LATIN10',
  'ISO88591',
  'ISO88592',
  'ISO88593',
  'ISO88594',
  'ISO88595',
  'ISO88596',
  'ISO88597',
  'ISO88598',
  'ISO88599',
  'ISO885910',
  'ISO885913',
  'ISO885914',
  'ISO885915',
  'ISO885916',
  'KOI8',
  'KOI8R',
  'KOI8U',
  'ALT',
  'ABC',
  'TCVN',
  'TCVN5712',
  'VSCII',
  'WIN',
  'WIN866',
  'WIN874',
  'WIN1250',
  'WIN1251',
  'WIN1252',
  'WIN1253',
  'WIN1254',
  'WIN1255',
  'WIN1256',
  'WIN1257',
  'WIN1258',
  'WINDOWS866',
  'WINDOWS874',
  'WINDOWS1250',
  'WINDOWS1251',
  'WINDOWS1252',
  'WINDOWS1253',
  'WINDOWS1254',
  'WINDOWS1255',
  'WINDOWS1256',
  'WINDOWS1257',
  'WINDOWS1258',
]);

/** Whether the guard reads SQL sent in this client encoding as PostgreSQL will (names compared as PostgreSQL does). */
export function isReadableClientEncoding(name: string): boolean {
  return SAFE_CLIENT_ENCODINGS.has(name.toUpperCase().replace(/[^A-Z0-9]/g, ''));
}

/** Statements no tenant may run: server, database and role administration, and other tenants' channels. */
const DENIED_STATEMENTS: Record<string, [GuardRule, string]> = {
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
  NotifyStmt: ['unsupported', 'NOTIFY (channels are shared by every tenant in the database)'],
};

/** Functions that reach files, other sessions, the server, database-wide objects or run SQL the guard cannot see. */
const DENIED_FUNCTIONS = new Map<string, GuardRule>([
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
    'pg_notify',
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

const DENIED_FUNCTION_PREFIXES: Array<[string, GuardRule]> = [
  ['dblink', 'server_admin'],
  ['postgres_fdw', 'server_admin'],
  ['pg_stat_reset', 'server_admin'],
  ['pg_stat_get_backend_', 'server_admin'],
  ['pg_replication_', 'server_admin'],
  ['pg_logical_', 'server_admin'],
];

/** Relations that show other sessions, hence other tenants, when every backend logs in as the same role. */
const DENIED_RELATIONS = new Set([
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
const REG_NAME_TYPES = [
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
const NAME_ARGUMENT_FUNCTIONS = new Set([
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
const SCHEMA_ARGUMENT_FUNCTIONS = new Set(['to_regnamespace', 'has_schema_privilege', 'regnamespace']);
/** reg* types: casting a string to them resolves a name. */
const NAME_TYPES: ReadonlySet<string> = new Set(REG_NAME_TYPES);

/** Fields holding a qualified name as a list of String nodes. */
const QUALIFIED_NAME_FIELDS = new Set([
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
const OBJECT_FIELDS: Record<string, string> = {
  DropStmt: 'objects',
  CommentStmt: 'object',
  AlterObjectSchemaStmt: 'object',
  RenameStmt: 'object',
  AlterObjectDependsStmt: 'object',
  GrantStmt: 'objects',
};

/** Object types named as table.member (COMMENT ON COLUMN t.c, DROP TRIGGER g ON t): the last part is no relation. */
const TABLE_MEMBER_OBJECTS = new Set([
  'OBJECT_COLUMN',
  'OBJECT_TRIGGER',
  'OBJECT_POLICY',
  'OBJECT_RULE',
  'OBJECT_TABCONSTRAINT',
]);

const TRUSTED_LANGUAGES = new Set(['sql', 'plpgsql']);
const MAX_DEPTH = 4;

type Json = Record<string, unknown>;

/**
 * Top-level statements that change no catalog a prepared statement's plan or row type depends on. Everything else
 * counts as DDL: a statement type missing here costs a re-prepare, never a stale plan.
 */
const PLAIN_STATEMENTS = new Set([
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
function isSchemaChange(stmt: Json): boolean {
  for (const type in stmt) {
    const node = stmt[type] as Json;
    if (type === 'ExplainStmt')
      return node.query !== null && typeof node.query === 'object' && isSchemaChange(node.query as Json);
    if (type === 'SelectStmt') return node.intoClause !== undefined;
    return !PLAIN_STATEMENTS.has(type);
  }
  return false;
}

/**
 * Analyses one SQL text (all its statements), or the skeleton the caller already built of it. Never throws: parse
 * failures become a syntax denial. `maxParseBytes` (policy.maxStatementBytes) bounds what goes through the parser:
 * a statement's skeleton, a function or DO body, a literal read as a name or setting.
 */
export function analyzeSql(
  text: string | Skeleton,
  extraDeniedFunctions: ReadonlySet<string> = new Set(),
  tenantSchemaShape: RegExp | null = null,
  maxParseBytes = Number.POSITIVE_INFINITY,
): Analysis {
  const analyzer = new Analyzer(extraDeniedFunctions, tenantSchemaShape, maxParseBytes);
  analyzer.sql(text, 0);
  return analyzer.result();
}

class Analyzer {
  private denial: Denial | null = null;
  private readonly schemas = new Map<string, string>();
  private literalDependent = false;
  private touchesPrepared = false;
  private deallocate: { name: string | null } | null = null;
  private changesSettings = false;
  private changesSchema = false;
  private readonly customSettings = new Set<string>();
  private empty = false;

  constructor(
    private readonly extraDeniedFunctions: ReadonlySet<string>,
    /** Matches any tenant's schema name (from tenancy.schemaTemplate), to spot tenant names inside strings. */
    private readonly tenantSchemaShape: RegExp | null,
    private readonly maxParseBytes: number,
  ) {}

  result(): Analysis {
    return {
      denial: this.denial,
      schemas: this.schemas,
      literalDependent: this.literalDependent,
      touchesPrepared: this.touchesPrepared,
      deallocate: this.deallocate,
      changesSettings: this.changesSettings,
      customSettings: [...this.customSettings],
      empty: this.empty,
      changesSchema: this.changesSchema,
    };
  }

  sql(input: string | Skeleton, depth: number): void {
    if (depth > MAX_DEPTH) {
      this.deny('dynamic_sql', 'statements nested deeper than the guard inspects');
      return;
    }
    // Long statements are parsed as their skeleton, whose literals go back into the tree before any rule looks.
    const skeleton = typeof input === 'string' ? skeletonFor(input, this.maxParseBytes) : input;
    const text = skeleton?.text ?? (input as string);
    if (text.length * 3 > this.maxParseBytes && Buffer.byteLength(text) > this.maxParseBytes) {
      const size = Buffer.byteLength(text);
      this.tooLarge(
        depth > 0
          ? `a function body of ${size} bytes exceeds the guard's limit of ${this.maxParseBytes} bytes`
          : skeleton === null
            ? `statement of ${size} bytes exceeds the guard's limit of ${this.maxParseBytes} bytes`
            : `statement of ${Buffer.byteLength(skeleton.original)} bytes (${size} once its long string literals are set aside) exceeds the guard's limit of ${this.maxParseBytes} bytes`,
      );
      return;
    }
    const bytes = Buffer.from(text);
    let tree: { stmts?: Array<{ stmt: Json; stmt_location?: number; stmt_len?: number }> };
    try {
      // libpg-query refuses '' itself; PostgreSQL parses it, like a lone comment, to no statement.
      tree = text === '' ? {} : (parseSync(text) as typeof tree);
    } catch (err) {
      const details = (err as { sqlDetails?: { message: string; cursorPosition: number } }).sqlDetails;
      const message =
        skeleton === null
          ? (details?.message ?? (err as Error).message)
          : skeleton.elide(details?.message ?? (err as Error).message);
      if (depth === 0) {
        this.denial = {
          rule: 'syntax',
          sqlstate: SqlState.SYNTAX_ERROR,
          message,
          position:
            details === undefined
              ? undefined
              : (skeleton === null ? details.cursorPosition : skeleton.originalOffset(details.cursorPosition)) + 1,
        };
      } else {
        this.deny('dynamic_sql', `a nested statement the guard cannot parse: ${message}`);
      }
      return;
    }
    if (skeleton !== null && !skeleton.restoreTree(tree)) {
      // Cannot happen with PostgreSQL's grammar (it never splices a string constant into another string); should it,
      // the tree is not the original's, so nothing is judged from it.
      this.tooLarge(`statement of ${bytes.length} bytes that the guard could not judge from its skeleton`);
      return;
    }
    const statements = tree.stmts ?? [];
    if (depth === 0) this.empty = statements.length === 0;
    const only =
      statements.length === 1 && depth === 0 ? (statements[0]!.stmt.DeallocateStmt as Json | undefined) : undefined;
    if (only !== undefined)
      this.deallocate = { name: only.isall === true || typeof only.name !== 'string' ? null : only.name };
    for (const entry of statements) {
      if (depth === 0 && isSchemaChange(entry.stmt)) this.changesSchema = true;
      const start = entry.stmt_location ?? 0;
      const end = entry.stmt_len === undefined || entry.stmt_len === 0 ? bytes.length : start + entry.stmt_len;
      const statementText = (): string =>
        skeleton === null ? bytes.toString('utf8', start, end) : skeleton.source(bytes.toString('utf8', start, end));
      this.walk(entry.stmt, depth, statementText);
    }
  }

  private deny(rule: GuardRule, what: string, sqlstate: string = SqlState.INSUFFICIENT_PRIVILEGE): void {
    this.denial ??= { rule, sqlstate, message: `${what} is not allowed through pg-tenant-proxy` };
  }

  /** Text the guard would have to parse beyond policy.maxStatementBytes: refused unread, as PostgreSQL's own limits do. */
  private tooLarge(message: string): void {
    this.denial ??= { rule: 'too_large', sqlstate: SqlState.PROGRAM_LIMIT_EXCEEDED, message };
  }

  /** False (and a refusal) when `text` is longer than the guard parses. */
  private parsable(text: string, what: string): boolean {
    if (text.length * 3 <= this.maxParseBytes) return true;
    const bytes = Buffer.byteLength(text);
    if (bytes <= this.maxParseBytes) return true;
    this.tooLarge(`${what} of ${bytes} bytes exceeds the guard's limit of ${this.maxParseBytes} bytes`);
    return false;
  }

  /**
   * A literal's value where a rule reads it (as a name, a setting or its value). Literals outside such places may be
   * as long as a message; these are bounded like the text the guard parses, so no rule walks megabytes.
   */
  private literal(node: unknown): string | undefined {
    const value = constantString(node);
    if (value !== undefined && value.length > this.maxParseBytes) {
      this.tooLarge(
        `a literal of ${value.length} characters read as a name or setting exceeds the guard's limit of ${this.maxParseBytes} bytes`,
      );
      return undefined;
    }
    return value;
  }

  private reference(schema: string, name: string): void {
    if (!this.schemas.has(schema)) this.schemas.set(schema, name);
  }

  /** Records the schema of a qualified name given as parts; three parts name another database. */
  private qualified(parts: string[]): void {
    if (parts.length === 2) this.reference(parts[0]!, parts.join('.'));
    else if (parts.length > 2) this.deny('cross_database', `the cross-database name ${parts.join('.')}`);
  }

  private walk(value: unknown, depth: number, statementText: () => string): void {
    if (Array.isArray(value)) {
      for (const item of value) this.walk(item, depth, statementText);
      return;
    }
    if (value === null || typeof value !== 'object') return;
    const node = value as Json;
    for (const key in node) {
      const child = node[key];
      if (key === 'DefElem' && (child as Json | null)?.defname === 'set') {
        // CREATE/ALTER FUNCTION ... SET x: a function-level setting, judged by its values, not as a session SET.
        this.functionSetting((child as Json).arg as Json | undefined);
        continue;
      }
      if (
        key.charCodeAt(0) >= 65 &&
        key.charCodeAt(0) <= 90 &&
        child !== null &&
        typeof child === 'object' &&
        !Array.isArray(child)
      ) {
        this.visit(key, child as Json, depth, statementText);
      } else if (QUALIFIED_NAME_FIELDS.has(key) && Array.isArray(child)) {
        const parts = stringList(child);
        if (parts !== null) this.qualified(parts);
      } else if (key === 'relname' && typeof child === 'string') {
        this.rangeVar(node);
      }
      this.walk(child, depth, statementText);
    }
  }

  private visit(type: string, node: Json, depth: number, statementText: () => string): void {
    const denied = DENIED_STATEMENTS[type];
    if (denied !== undefined) {
      this.deny(denied[0], denied[1]);
      return;
    }
    const shared = sharedObjectWrite(type, node);
    if (shared !== null) {
      this.deny('server_admin', `${shared} (shared by every tenant)`);
      return;
    }
    const settings = settingsViewWrite(type, node);
    if (settings !== null) {
      this.deny('session_state', settings);
      return;
    }
    switch (type) {
      case 'ColumnRef': {
        const fields = node.fields as unknown[] | undefined;
        if (fields !== undefined && fields.length >= 3) {
          const parts = fields.map((f) => stringValue(f) ?? '*');
          this.qualified(parts.slice(0, parts.length - 1));
        }
        return;
      }
      case 'FuncCall':
        this.funcCall(node);
        return;
      case 'TypeCast':
        this.typeCast(node);
        return;
      case 'VariableSetStmt':
        this.variableSet(node);
        return;
      case 'CopyStmt':
        if (node.filename !== undefined || node.is_program === true)
          this.deny('file_access', 'COPY to or from a server file or program');
        return;
      case 'ListenStmt':
        this.deny(
          'unsupported',
          'LISTEN in transaction pooling mode (notifications would reach a pooled connection, not you)',
          SqlState.FEATURE_NOT_SUPPORTED,
        );
        return;
      case 'DoStmt':
        this.doStmt(node, depth);
        return;
      case 'CreateFunctionStmt':
        this.createFunction(node, depth, statementText);
        return;
      case 'PrepareStmt':
      case 'ExecuteStmt':
      case 'DeallocateStmt': {
        if (type !== 'ExecuteStmt') this.touchesPrepared = true;
        // Server-side statements the proxy prepared belong to whichever tenant and client the proxy gave them to.
        const name = typeof node.name === 'string' ? node.name : '';
        if (name.startsWith(SERVER_STATEMENT_PREFIX)) this.deny('session_state', `the prepared statement name ${name}`);
        return;
      }
      case 'DefineStmt':
        if (
          node.kind === 'OBJECT_AGGREGATE' ||
          node.kind === 'OBJECT_OPERATOR' ||
          node.kind === 'OBJECT_TSPARSER' ||
          node.kind === 'OBJECT_TSTEMPLATE'
        ) {
          this.deny('server_admin', `CREATE ${String(node.kind).slice(7).replace('TS', 'TEXT SEARCH ')}`);
        }
        return;
      case 'AlterOperatorStmt':
        this.deny('server_admin', 'ALTER OPERATOR');
        return;
      case 'A_Const':
        this.stringConstant(node);
        return;
      case 'AlterTableCmd':
        if (node.subtype === 'AT_ChangeOwner') this.deny('server_admin', 'ALTER TABLE ... OWNER TO');
        return;
      case 'ReindexStmt':
        this.reindex(node);
        return;
      case 'VacuumStmt':
      case 'ClusterStmt':
        // With no table named these process every table the login role may maintain: every tenant's, without roles.
        if (((node.rels as unknown[] | undefined) ?? []).length === 0 && node.relation === undefined) {
          this.deny(
            'server_admin',
            `${type === 'ClusterStmt' ? 'CLUSTER' : node.is_vacuumcmd === true ? 'VACUUM' : 'ANALYZE'} of the whole database`,
          );
        }
        return;
      case 'DefElem':
        // CREATE SEQUENCE ... OWNED BY schema.table.column
        if (node.defname === 'owned_by') {
          const parts = stringList(listItems(node.arg) ?? []);
          if (parts !== null && parts.length >= 3) this.qualified(parts.slice(0, parts.length - 1));
        }
        return;
      case 'AlterObjectSchemaStmt':
        if (typeof node.newschema === 'string') this.reference(node.newschema, node.newschema);
        this.objects(node, type);
        return;
      case 'RenameStmt':
        if (node.renameType === 'OBJECT_SCHEMA') this.deny('schema', 'ALTER SCHEMA ... RENAME');
        this.objects(node, type);
        return;
      case 'DropStmt':
        if (node.removeType === 'OBJECT_SCHEMA') this.deny('schema', 'DROP SCHEMA');
        this.objects(node, type);
        return;
      case 'CommentStmt':
      case 'GrantStmt':
      case 'AlterObjectDependsStmt':
        this.objects(node, type);
        return;
      default:
        return;
    }
  }

  private rangeVar(node: Json): void {
    const relname = node.relname as string;
    if (typeof node.catalogname === 'string') {
      this.deny('cross_database', `the cross-database name ${node.catalogname}.${String(node.schemaname)}.${relname}`);
      return;
    }
    const schema = node.schemaname as string | undefined;
    if (schema !== undefined) this.reference(schema, `${schema}.${relname}`);
    if ((schema === undefined || schema === 'pg_catalog' || schema === 'public') && DENIED_RELATIONS.has(relname)) {
      this.deny('server_admin', `reading ${relname} (it shows other tenants' sessions)`);
    }
  }

  /** Objects named by lists of strings (DROP TABLE a.b, GRANT ... ON SCHEMA s, COMMENT ON ...). */
  private objects(node: Json, type: string): void {
    const field = OBJECT_FIELDS[type];
    if (field === undefined) return;
    const value = node[field];
    const objects = Array.isArray(value) ? value : value === undefined ? [] : [value];
    const objtype = (node.removeType ?? node.objtype ?? node.objectType ?? node.renameType) as string | undefined;
    for (const object of objects) {
      const single = stringValue(object);
      if (single !== undefined) {
        // A bare string object is a schema (GRANT ON SCHEMA s, COMMENT ON SCHEMA s) or another unqualified object.
        if (objtype === 'OBJECT_SCHEMA' || node.targtype === 'ACL_TARGET_ALL_IN_SCHEMA') this.reference(single, single);
        continue;
      }
      const parts = stringList(listItems(object) ?? []);
      // A column, trigger, policy, rule or constraint is named after its table: its own name is not a qualifier.
      if (parts !== null)
        this.qualified(objtype !== undefined && TABLE_MEMBER_OBJECTS.has(objtype) ? parts.slice(0, -1) : parts);
    }
  }

  private reindex(node: Json): void {
    const kind = node.kind as string | undefined;
    if (kind === 'REINDEX_OBJECT_SCHEMA' && typeof node.name === 'string') this.reference(node.name, node.name);
    else if (kind === 'REINDEX_OBJECT_DATABASE' || kind === 'REINDEX_OBJECT_SYSTEM')
      this.deny('server_admin', 'REINDEX DATABASE/SYSTEM');
  }

  private funcCall(node: Json): void {
    const parts = stringList((node.funcname as unknown[]) ?? []) ?? [];
    const name = parts[parts.length - 1] ?? '';
    if (parts.length > 1 && parts[parts.length - 2] !== 'pg_catalog') return;
    const rule =
      DENIED_FUNCTIONS.get(name) ??
      DENIED_FUNCTION_PREFIXES.find(([prefix]) => name.startsWith(prefix))?.[1] ??
      (this.extraDeniedFunctions.has(name) ? 'denied_function' : undefined);
    if (rule !== undefined) {
      this.deny(rule, `the function ${name}()`);
      return;
    }
    const args = (node.args as unknown[] | undefined) ?? [];
    if (name === 'set_config') {
      this.literalDependent = true;
      this.changesSettings = true;
      const setting = this.literal(args[0]);
      if (setting?.includes('.') === true) this.customSettings.add(setting.toLowerCase());
      if (setting === undefined || GUARDED_SETTINGS.has(setting.toLowerCase())) {
        this.deny(
          'session_state',
          setting === undefined ? 'set_config() with a computed setting name' : `set_config('${setting}', ...)`,
        );
      } else if (setting.toLowerCase() === 'client_encoding') {
        const value = this.literal(args[1]);
        if (value === undefined || !isReadableClientEncoding(value)) {
          this.deny('session_state', "set_config('client_encoding', ...) to an encoding the guard cannot read");
        }
      }
      return;
    }
    if (NAME_ARGUMENT_FUNCTIONS.has(name) || SCHEMA_ARGUMENT_FUNCTIONS.has(name)) {
      this.literalDependent = true;
      const schemaArgs =
        name === 'has_schema_privilege'
          ? [args[args.length - 2]]
          : SCHEMA_ARGUMENT_FUNCTIONS.has(name)
            ? [args[0]]
            : [];
      for (const arg of args) {
        if (isParam(arg)) {
          this.deny('schema', `${name}() with a name passed as a parameter`);
          return;
        }
        const text = this.literal(arg);
        if (text === undefined) continue;
        if (schemaArgs.includes(arg)) {
          const parts = parseQualifiedName(text);
          if (parts !== null && parts.length === 1) this.reference(parts[0]!, parts[0]!);
          continue;
        }
        if (SCHEMA_ARGUMENT_FUNCTIONS.has(name)) continue;
        const parts = parseQualifiedName(text);
        if (parts !== null) this.qualified(parts);
      }
    }
  }

  private typeCast(node: Json): void {
    const typeName = node.typeName as Json | undefined;
    const parts = stringList((typeName?.names as unknown[]) ?? []) ?? [];
    const type = parts[parts.length - 1];
    if (type === undefined || (parts.length > 1 && parts[0] !== 'pg_catalog')) return;
    const isNameType = NAME_TYPES.has(type);
    if (!isNameType && type !== 'regnamespace') return;
    this.literalDependent = true;
    if (isParam(node.arg)) {
      this.deny('schema', `a parameter cast to ${type}`);
      return;
    }
    const text = this.literal(node.arg);
    if (text === undefined) return;
    const name = parseQualifiedName(text);
    if (name === null) return;
    if (type === 'regnamespace') this.reference(name[0]!, name[0]!);
    else this.qualified(name);
  }

  private variableSet(node: Json): void {
    const name = typeof node.name === 'string' ? node.name.toLowerCase() : '';
    // SET LOCAL ends with its transaction. (SET TRANSACTION does too, but only costs a needless settings snapshot.)
    if (node.is_local !== true) this.changesSettings = true;
    if (name.includes('.')) this.customSettings.add(name);
    if (node.kind === 'VAR_RESET_ALL') {
      this.deny('session_state', 'RESET ALL');
    } else if (GUARDED_SETTINGS.has(name)) {
      this.deny('session_state', `changing ${name}`);
    } else if (name === 'client_encoding') {
      this.literalDependent = true;
      for (const arg of (node.args as unknown[]) ?? []) {
        const value = this.literal(arg);
        if (value !== undefined && !isReadableClientEncoding(value)) {
          this.deny('session_state', `client_encoding ${value}`);
        }
      }
    }
  }

  /**
   * A string literal shaped like another tenant's qualified name ('tenant_b.seq') is judged as a name wherever it
   * appears, because a reg* column, parameter or default can turn it into one at run time unseen by the parser.
   */
  private stringConstant(node: Json): void {
    const text = (node.sval as Json | undefined)?.sval;
    if (typeof text !== 'string' || this.tenantSchemaShape === null || text.length > 200 || !text.includes('.')) return;
    const parts = parseQualifiedName(text);
    if (parts === null || parts.length < 2 || !this.tenantSchemaShape.test(parts[parts.length - 2]!)) return;
    this.literalDependent = true;
    this.qualified(parts.length > 3 ? parts : parts.slice(parts.length - 2));
  }

  private doStmt(node: Json, depth: number): void {
    this.literalDependent = true;
    let language = 'plpgsql';
    let body: string | undefined;
    for (const arg of (node.args as unknown[]) ?? []) {
      const def = (arg as Json).DefElem as Json | undefined;
      if (def?.defname === 'language') language = languageName(def.arg);
      if (def?.defname === 'as') body = stringValue(def.arg);
    }
    if (language !== 'plpgsql') {
      this.deny('language', `a DO block in language ${language}`);
      return;
    }
    if (!this.parsable(body ?? '', 'a DO block')) return;
    const tag = dollarTag(body ?? '');
    this.plpgsql(
      `CREATE FUNCTION pg_tenant_proxy_do() RETURNS void LANGUAGE plpgsql AS ${tag}${body ?? ''}${tag}`,
      depth,
    );
  }

  private createFunction(node: Json, depth: number, statementText: () => string): void {
    this.literalDependent = true;
    let language: string | undefined;
    let body: string[] | undefined;
    for (const option of (node.options as unknown[]) ?? []) {
      const def = (option as Json).DefElem as Json | undefined;
      if (def?.defname === 'language') language = languageName(def.arg);
      if (def?.defname === 'as') body = stringList(listItems(def.arg) ?? []) ?? undefined;
    }
    language ??= 'sql';
    if (!TRUSTED_LANGUAGES.has(language)) {
      this.deny('language', `a function in language ${language}`);
      return;
    }
    if (body === undefined) return; // BEGIN ATOMIC bodies are part of the tree and walked with it
    if (body.length !== 1) {
      this.deny('language', 'a function body given as object file and symbol');
      return;
    }
    if (language === 'sql') this.sql(body[0]!, depth + 1);
    else this.plpgsql(statementText(), depth);
  }

  /** CREATE/ALTER FUNCTION ... SET search_path = ...: allowed only when every schema listed is allowed. */
  private functionSetting(arg: Json | undefined): void {
    const set = arg?.VariableSetStmt as Json | undefined;
    if (set === undefined) return;
    const name = typeof set.name === 'string' ? set.name.toLowerCase() : '';
    // standard_conforming_strings and backslash_quote too: a SQL or PL/pgSQL body is lexed again when the function
    // runs, under its own SET, so 'a\'' ; SELECT … FROM tenant_b.t; --' would be one string to the guard and code there.
    if (name !== 'search_path' && GUARDED_SETTINGS.has(name)) {
      this.deny('session_state', `a function-level ${name}`);
      return;
    }
    if (name !== 'search_path' || set.kind !== 'VAR_SET_VALUE') return;
    this.literalDependent = true;
    for (const value of (set.args as unknown[]) ?? []) {
      const schema = this.literal(value);
      if (schema !== undefined && schema !== '') this.reference(schema, schema);
    }
  }

  /** PL/pgSQL: dynamic EXECUTE is refused; every embedded SQL expression is analysed like a statement. */
  private plpgsql(createFunctionText: string, depth: number): void {
    if (depth + 1 > MAX_DEPTH) {
      this.deny('dynamic_sql', 'functions nested deeper than the guard inspects');
      return;
    }
    // Its body is code, parsed in full: a long one is refused as a long statement is.
    if (!this.parsable(createFunctionText, 'a PL/pgSQL function')) return;
    let tree: unknown;
    try {
      tree = parsePlPgSQLSync(createFunctionText);
    } catch (err) {
      this.deny('dynamic_sql', `a PL/pgSQL body the guard cannot parse (${(err as Error).message})`);
      return;
    }
    this.plpgsqlWalk(tree, depth + 1);
  }

  private plpgsqlWalk(value: unknown, depth: number): void {
    if (Array.isArray(value)) {
      for (const item of value) this.plpgsqlWalk(item, depth);
      return;
    }
    if (value === null || typeof value !== 'object') return;
    const node = value as Json;
    for (const key in node) {
      const child = node[key];
      if (key === 'PLpgSQL_stmt_dynexecute' || key === 'PLpgSQL_stmt_dynfors' || key === 'dynquery') {
        this.deny('dynamic_sql', 'EXECUTE of dynamic SQL in PL/pgSQL');
        return;
      }
      if (key === 'PLpgSQL_expr') {
        const expr = child as { query?: string; parseMode?: number };
        const sql = expressionAsStatement(expr.query ?? '', expr.parseMode ?? 0);
        if (sql === null) this.deny('dynamic_sql', 'a PL/pgSQL expression the guard cannot read');
        else this.sql(sql, depth);
        continue;
      }
      if (key === 'PLpgSQL_type' && typeof (child as Json).typname === 'string') {
        const parts = parseQualifiedName(((child as Json).typname as string).replace(/%.*$/, ''));
        if (parts !== null) this.qualified(parts.length === 3 ? parts.slice(0, 2) : parts);
      }
      this.plpgsqlWalk(child, depth);
    }
  }
}

/** Turns a PL/pgSQL expression into a statement PostgreSQL's grammar accepts, per its raw parse mode. */
function expressionAsStatement(query: string, parseMode: number): string | null {
  switch (parseMode) {
    case 0: // RAW_PARSE_DEFAULT: a whole statement
      return query;
    case 1: // RAW_PARSE_TYPE_NAME
      return `SELECT NULL::${query}`;
    case 2: // RAW_PARSE_PLPGSQL_EXPR
      return `SELECT ${query}`;
    case 3:
    case 4:
    case 5: {
      // RAW_PARSE_PLPGSQL_ASSIGNn: "target := expr". The target can hold expressions too (arr[(SELECT …)] := 1), so
      // both sides are read; a split in the wrong place fails to parse, which refuses the body.
      const at = query.search(/:=|=/);
      if (at < 0) return null;
      return `SELECT ${query.slice(0, at)}, ${query.slice(at + (query[at] === ':' ? 2 : 1))}`;
    }
    default:
      return null;
  }
}

function dollarTag(body: string): string {
  let tag = '$pgtp$';
  for (let n = 0; body.includes(tag); n++) tag = `$pgtp${n}$`;
  return tag;
}

/** A LANGUAGE clause's name, lower case; no language name is long, so a long one is cut for the message. */
function languageName(node: unknown): string {
  const name = (stringValue(node) ?? '').slice(0, 64);
  return name.toLowerCase();
}

function stringValue(node: unknown): string | undefined {
  const s = (node as Json | undefined)?.String as Json | undefined;
  return typeof s?.sval === 'string' ? s.sval : undefined;
}

/** A list of String nodes as strings, or null if any element is something else. */
function stringList(list: unknown[]): string[] | null {
  const out: string[] = [];
  for (const item of list) {
    const value = stringValue(item);
    if (value === undefined) return null;
    out.push(value);
  }
  return out.length === 0 ? null : out;
}

function listItems(node: unknown): unknown[] | undefined {
  const list = (node as Json | undefined)?.List as Json | undefined;
  return Array.isArray(list?.items) ? (list.items as unknown[]) : undefined;
}

function constantString(node: unknown): string | undefined {
  const constant = (node as Json | undefined)?.A_Const as Json | undefined;
  const sval = constant?.sval as Json | undefined;
  if (typeof sval?.sval === 'string') return sval.sval;
  // A typed literal such as text 'x' arrives as a cast of a constant.
  const cast = (node as Json | undefined)?.TypeCast as Json | undefined;
  return cast === undefined ? undefined : constantString(cast.arg);
}

function isParam(node: unknown): boolean {
  if ((node as Json | undefined)?.ParamRef !== undefined) return true;
  const cast = (node as Json | undefined)?.TypeCast as Json | undefined;
  return cast !== undefined && isParam(cast.arg);
}
