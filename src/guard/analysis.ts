// What the guard's analysis of a statement records, and what its rule modules may do to it while it is walked.
import type { CatalogRefs, Splice } from './catalog-refs.js';
import type { Json } from './tree-nodes.js';
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
  | 'protocol'
  | 'catalog';

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
  /**
   * With policy.catalogFilter, the splices that point the statement's catalog references at the filtered views
   * (byte offsets in its UTF-8 text, sorted), with those of channels (channel-rules.ts); `filtered`: it needs the
   * catalog filter's objects. Null when it names no catalog and no channel, so other statements pay nothing.
   */
  catalog: { splices: readonly Splice[]; filtered: boolean } | null;
  /**
   * The text's LISTEN and UNLISTEN statements, in order, which the proxy answers itself (channels/client-channels.ts);
   * `only`: the text holds nothing else. Null when it has none.
   */
  channels: { actions: readonly ChannelAction[]; only: boolean } | null;
}

/** A LISTEN (or UNLISTEN; channel null: UNLISTEN *) at top-level statement `index` of its text. */
export interface ChannelAction {
  listen: boolean;
  channel: string | null;
  index: number;
}

/** Prefix of the names the proxy gives prepared statements on servers; clients may not name them in SQL. */
export const SERVER_STATEMENT_PREFIX = 'pgtp_s';

/** The analyser as a rule module sees it: what it may record about the statement being walked. */
export interface RuleContext {
  literalDependent: boolean;
  changesSettings: boolean;
  readonly customSettings: Set<string>;
  readonly extraDeniedFunctions: ReadonlySet<string>;
  /** Matches any tenant's schema name (from tenancy.schemaTemplate), to spot tenant names inside strings. */
  readonly tenantSchemaShape: RegExp | null;
  deny(rule: GuardRule, what: string, sqlstate?: string): void;
  /** False (and a refusal) when `text` is longer than the guard parses. */
  parsable(text: string, what: string): boolean;
  /** A literal's value where a rule reads it, bounded like the text the guard parses. */
  literal(node: unknown): string | undefined;
  reference(schema: string, name: string): void;
  /** Records the schema of a qualified name given as parts; three parts name another database. */
  qualified(parts: string[]): void;
  /** Analyses nested SQL (a function body, a PL/pgSQL expression). */
  sql(text: string, depth: number): void;
  /** Catalog references being collected (policy.catalogFilter), else null. */
  readonly catalog: CatalogRefs | null;
  catalogRefusal(what: string | null): void;
  /** pg_notify(): to the wrapper that namespaces its channel (channel-rules.ts). */
  channelCall(parts: string[], node: Json): void;
}
