// Walks libpg-query's parse tree of a statement and records, independent of any tenant, what it reaches for.
// The rules live beside it: rule-tables (what is refused), function-rules, settings-rules, bodies (DO and functions).
import { parseSync } from 'libpg-query';
import { SqlState } from '../protocol/codes.js';
import { SERVER_STATEMENT_PREFIX, type Analysis, type Denial, type GuardRule, type RuleContext } from './analysis.js';
import { createFunction, doStmt } from './bodies.js';
import { funcCall, stringConstant, typeCast } from './function-rules.js';
import {
  DENIED_RELATIONS,
  DENIED_STATEMENTS,
  isSchemaChange,
  MAX_DEPTH,
  OBJECT_FIELDS,
  QUALIFIED_NAME_FIELDS,
  TABLE_MEMBER_OBJECTS,
} from './rule-tables.js';
import { functionSetting, variableSet } from './settings-rules.js';
import { sharedObjectWrite, settingsViewWrite } from './shared-objects.js';
import { CatalogRefs, isFilteredRelation, orderSplices } from './catalog-refs.js';
import { ChannelRules } from './channel-rules.js';
import { skeletonFor, type Skeleton } from './skeleton.js';
import { constantString, listItems, stringList, stringValue, type Json } from './tree-nodes.js';

export { SERVER_STATEMENT_PREFIX, type Analysis, type Denial, type GuardRule } from './analysis.js';
export { GUARDED_SETTINGS, isReadableClientEncoding } from './settings-rules.js';

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
  catalogFilter = false,
): Analysis {
  const analyzer = new Analyzer(extraDeniedFunctions, tenantSchemaShape, maxParseBytes, catalogFilter);
  analyzer.sql(text, 0);
  return analyzer.result();
}

class Analyzer implements RuleContext {
  private denial: Denial | null = null;
  private readonly schemas = new Map<string, string>();
  literalDependent = false;
  private touchesPrepared = false;
  private deallocate: { name: string | null } | null = null;
  changesSettings = false;
  private changesSchema = false;
  readonly customSettings = new Set<string>();
  private empty = false;

  constructor(
    readonly extraDeniedFunctions: ReadonlySet<string>,
    /** Matches any tenant's schema name (from tenancy.schemaTemplate), to spot tenant names inside strings. */
    readonly tenantSchemaShape: RegExp | null,
    private readonly maxParseBytes: number,
    /** policy.catalogFilter: catalog references are rewritten to the filtered views (see catalog-refs.ts). */
    private readonly catalogFilter: boolean,
  ) {}

  /** Catalog references of the top-level text; null when the filter is off. */
  catalog: CatalogRefs | null = null;
  private topLevelCatalog: CatalogRefs | null = null;
  /** NOTIFY/LISTEN/pg_notify of the text being walked; those of the top-level text are its rewrite. */
  private channels = this.channelRules(null);
  private topLevelChannels: ChannelRules | null = null;
  /** Relations a statement creates (CREATE TABLE pg_x …): named in the tenant's schema, never rewritten. */
  private readonly created = new WeakSet<object>();

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
      catalog: this.catalogRewrite(),
      channels: this.channelActions(),
    };
  }

  private catalogRewrite(): Analysis['catalog'] {
    const catalogSplices = this.topLevelCatalog?.splices ?? [];
    const channelSplices = this.topLevelChannels?.splices ?? [];
    if ((catalogSplices.length === 0 && channelSplices.length === 0) || this.denial !== null) return null;
    const ordered = orderSplices([...catalogSplices, ...channelSplices]);
    if (ordered === null) {
      this.deny('catalog', 'a catalog reference the proxy cannot rewrite');
      return null;
    }
    return { splices: ordered, filtered: catalogSplices.length > 0 || this.topLevelChannels!.usesCatalog };
  }

  private channelActions(): Analysis['channels'] {
    const rules = this.topLevelChannels;
    if (rules === null || rules.actions.length === 0 || this.denial !== null) return null;
    return { actions: rules.actions, only: rules.actions.length === rules.statements };
  }

  channelCall(parts: string[], node: Json): void {
    this.channels.call(parts, node);
  }

  private channelRules(source: Buffer | null): ChannelRules {
    return new ChannelRules(source, (what, sqlstate) => this.deny('unsupported', what, sqlstate));
  }

  /** Reports a catalog rule's refusal. */
  catalogRefusal(what: string | null): void {
    if (what !== null) this.deny('catalog', what);
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
    const outerCatalog = this.catalog;
    const outerChannels = this.channels;
    this.channels = this.channelRules(depth === 0 && skeleton === null ? bytes : null);
    if (depth === 0) this.topLevelChannels = this.channels;
    if (this.catalogFilter) {
      // Only the top-level text's own bytes can be spliced; a skeleton's offsets are not the text's.
      this.catalog = new CatalogRefs(depth === 0 && skeleton === null ? bytes : null);
      if (depth === 0) this.topLevelCatalog = this.catalog;
    }
    const only =
      statements.length === 1 && depth === 0 ? (statements[0]!.stmt.DeallocateStmt as Json | undefined) : undefined;
    if (only !== undefined)
      this.deallocate = { name: only.isall === true || typeof only.name !== 'string' ? null : only.name };
    for (const entry of statements) {
      if (depth === 0 && isSchemaChange(entry.stmt)) this.changesSchema = true;
      const start = entry.stmt_location ?? 0;
      const end = entry.stmt_len === undefined || entry.stmt_len === 0 ? bytes.length : start + entry.stmt_len;
      this.channels.statement(entry.stmt, start, end);
      const statementText = (): string =>
        skeleton === null ? bytes.toString('utf8', start, end) : skeleton.source(bytes.toString('utf8', start, end));
      this.walk(entry.stmt, depth, statementText);
    }
    this.catalog = outerCatalog;
    this.channels = outerChannels;
  }

  deny(rule: GuardRule, what: string, sqlstate: string = SqlState.INSUFFICIENT_PRIVILEGE): void {
    this.denial ??= { rule, sqlstate, message: `${what} is not allowed through pg-tenant-proxy` };
  }

  /** Text the guard would have to parse beyond policy.maxStatementBytes: refused unread, as PostgreSQL's own limits do. */
  private tooLarge(message: string): void {
    this.denial ??= { rule: 'too_large', sqlstate: SqlState.PROGRAM_LIMIT_EXCEEDED, message };
  }

  /** False (and a refusal) when `text` is longer than the guard parses. */
  parsable(text: string, what: string): boolean {
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
  literal(node: unknown): string | undefined {
    const value = constantString(node);
    if (value !== undefined && value.length > this.maxParseBytes) {
      this.tooLarge(
        `a literal of ${value.length} characters read as a name or setting exceeds the guard's limit of ${this.maxParseBytes} bytes`,
      );
      return undefined;
    }
    return value;
  }

  reference(schema: string, name: string): void {
    if (!this.schemas.has(schema)) this.schemas.set(schema, name);
  }

  /** Records the schema of a qualified name given as parts; three parts name another database. */
  qualified(parts: string[]): void {
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
        functionSetting(this, (child as Json).arg as Json | undefined);
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
    if (this.catalog !== null) this.catalogNode(type, node);
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
        funcCall(this, node);
        return;
      case 'TypeCast':
        typeCast(this, node);
        return;
      case 'VariableSetStmt':
        variableSet(this, node);
        return;
      case 'CopyStmt':
        if (node.filename !== undefined || node.is_program === true)
          this.deny('file_access', 'COPY to or from a server file or program');
        return;
      case 'NotifyStmt':
      case 'ListenStmt':
      case 'UnlistenStmt': {
        this.channels.command(type, node);
        return;
      }
      case 'DoStmt':
        doStmt(this, node, depth);
        return;
      case 'CreateFunctionStmt':
        createFunction(this, node, depth, statementText);
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
        stringConstant(this, node);
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
    if (
      (schema === undefined || schema === 'pg_catalog' || schema === 'public') &&
      DENIED_RELATIONS.has(relname) &&
      !(this.catalog !== null && schema !== 'public' && isFilteredRelation(relname))
    ) {
      this.deny('server_admin', `reading ${relname} (it shows other tenants' sessions)`);
      return;
    }
    if (this.catalog !== null && !this.created.has(node)) this.catalogRefusal(this.catalog.relation(node));
  }

  /** Catalog-filter bookkeeping for one node: relations it creates, and WITH queries named like a catalog. */
  private catalogNode(type: string, node: Json): void {
    const created =
      type === 'CreateStmt'
        ? node.relation
        : type === 'IntoClause'
          ? node.rel
          : type === 'ViewStmt'
            ? node.view
            : type === 'CreateSeqStmt'
              ? node.sequence
              : type === 'CompositeTypeStmt'
                ? node.typevar
                : undefined;
    if (created !== null && typeof created === 'object') this.created.add(created);
    // A WITH query shadows the catalog of its name, so its references must not be rewritten; nobody names one so.
    if (type === 'CommonTableExpr' && typeof node.ctename === 'string' && isFilteredRelation(node.ctename))
      this.deny('catalog', `a WITH query named ${node.ctename} (the name of a filtered catalog)`);
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
}
