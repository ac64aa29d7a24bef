// Rewrites the schema a migration was generated for (drizzle-kit: public) to each tenant's, and refuses any other.
import { parseSync, scanSync } from 'libpg-query';
import { quoteIdent } from '../auth/identity.js';
import { analyzeSql } from '../guard/analyze.js';
import { MigrationError } from './migration-error.js';
import { NO_TRANSACTION_MARKER } from './split.js';
import type { Migration } from './source.js';

export interface RewriteOptions {
  /** The schema the migrations name (drizzle-kit qualifies with `public`); rewritten to the tenant's schema. */
  sourceSchema: string;
  /** Schemas every tenant shares (tenancy.sharedSchemas): named as they are. pg_catalog and information_schema always. */
  sharedSchemas?: readonly string[];
  /** Matches any tenant's schema name: a string literal shaped like one ('tenant_b.t') is refused as the guard does. */
  tenantSchemaShape?: RegExp | null;
}

/** A migration checked once, rendered per tenant by splicing its schema into positions found once. */
export interface PreparedMigration {
  readonly migration: Migration;
  /** The statements for the tenant whose schema is `schema` (quoted as an identifier wherever it is put). */
  forSchema(schema: string): string[];
}

interface Template {
  /** The statement's UTF-8 bytes cut at each schema name: the schema goes between consecutive pieces. */
  pieces: Buffer[];
  /** Some cut is inside a dollar-quoted body, where a `$` in the schema name could end the quote. */
  inDollarBody: boolean;
}

interface ScanToken {
  start: number;
  end: number;
  text: string;
  tokenName: string;
  keywordKind: number;
}

type Json = Record<string, unknown>;

/** Stands in for a tenant's schema while the rewritten text is checked; never a real tenant. */
const PROBE_SCHEMA = 'pgtp_migration_probe';
const CATALOG_SCHEMAS = ['pg_catalog', 'information_schema'];
/** Settings that make up the pin the runner sets; a migration that changes them would run somewhere else. */
const PIN_SETTINGS = new Set(['search_path', 'role', 'session_authorization']);

/**
 * Checks every statement of a migration and finds where its schema is named, so that forSchema() is a splice. Throws
 * MigrationError naming the file, the statement and the schema when the migration names a schema other than its own,
 * shared and catalog ones, or does what a per-tenant migration must not (see refusal()). The libpg-query module must
 * be loaded (loadParser(); the loaders do).
 */
export function prepareMigration(migration: Migration, options: RewriteOptions): PreparedMigration {
  const allowed = new Set([PROBE_SCHEMA, ...CATALOG_SCHEMAS, ...(options.sharedSchemas ?? [])]);
  if (allowed.has(options.sourceSchema))
    throw new Error(`the migrations' schema ${options.sourceSchema} cannot also be shared or a catalog`);
  const templates = migration.statements.map((text, index) => {
    const refuse = (problem: string, schema?: string): never => {
      throw new MigrationError({ file: migration.file, statement: index + 1, statementText: text, schema }, problem);
    };
    const template = templateFor(text, options.sourceSchema, migration.noTransaction, refuse);
    const probe = render(template, PROBE_SCHEMA).toString('utf8');
    const analysis = analyzeSql(probe, new Set(), options.tenantSchemaShape ?? null);
    for (const [schema, name] of analysis.schemas) {
      if (schema === options.sourceSchema) {
        refuse(
          `names schema "${schema}" (${name}) where it cannot be rewritten (inside a string, a setting or a ` +
            'single-quoted function body): write the name unqualified, since migrations run with the search_path ' +
            "set to the tenant's schema",
          schema,
        );
      }
      if (!allowed.has(schema)) {
        refuse(
          `names schema "${schema}" (${name.split(PROBE_SCHEMA).join(options.sourceSchema)}), which is neither the ` +
            `migrations' schema "${options.sourceSchema}" nor a shared schema (tenancy.sharedSchemas)`,
          schema,
        );
      }
    }
    if (analysis.denial !== null) refuse(`refused by the SQL guard: ${analysis.denial.message}`);
    return template;
  });
  return {
    migration,
    forSchema(schema: string): string[] {
      return templates.map((template) => {
        if (template.inDollarBody && schema.includes('$'))
          throw new Error(`schema name ${schema} cannot go inside a dollar-quoted body`);
        return render(template, schema).toString('utf8');
      });
    },
  };
}

function render(template: Template, schema: string): Buffer {
  const name = Buffer.from(quoteIdent(schema));
  const parts: Buffer[] = [];
  template.pieces.forEach((piece, i) => {
    if (i > 0) parts.push(name);
    parts.push(piece);
  });
  return Buffer.concat(parts);
}

/** Refuses what no tenant's migration may do, then finds the source schema's names, also inside DO/function bodies. */
function templateFor(
  text: string,
  sourceSchema: string,
  noTransaction: boolean,
  refuse: (problem: string) => never,
): Template {
  const statements = (parseSync(text) as { stmts?: Array<{ stmt: Json }> }).stmts ?? [];
  if (statements.length !== 1) refuse(`holds ${statements.length} statements where one was expected`);
  const [type, node] = Object.entries(statements[0]!.stmt)[0] as [string, Json];
  const problem = refusal(type, node, noTransaction);
  if (problem !== null) refuse(problem);

  const bytes = Buffer.from(text);
  const tokens = (scanSync(text) as { tokens: ScanToken[] }).tokens;
  const cuts = schemaCuts(tokens, sourceSchema, 0);
  let inDollarBody = false;
  const body = functionBody(type, node);
  if (body !== null) {
    // PL/pgSQL and SQL bodies are read by the same scanner; a dollar-quoted body is the raw text, so offsets carry over.
    for (const token of tokens) {
      const tag = /^\$[^$]*\$/.exec(token.text)?.[0];
      if (token.tokenName !== 'SCONST' || tag === undefined || token.text !== `${tag}${body}${tag}`) continue;
      const inner = schemaCuts(
        (scanSync(body) as { tokens: ScanToken[] }).tokens,
        sourceSchema,
        token.start + Buffer.byteLength(tag),
      );
      inDollarBody ||= inner.length > 0;
      cuts.push(...inner);
    }
  }
  cuts.sort((a, b) => a[0] - b[0]);
  const pieces: Buffer[] = [];
  let at = 0;
  for (const [start, end] of cuts) {
    pieces.push(bytes.subarray(at, start));
    at = end;
  }
  pieces.push(bytes.subarray(at));
  return { pieces, inDollarBody };
}

/** Why a migration run per tenant, pinned to its schema, must not contain this statement; null when it may. */
function refusal(type: string, node: Json, noTransaction: boolean): string | null {
  switch (type) {
    case 'CreateSchemaStmt':
      return "CREATE SCHEMA: each tenant's schema is created when the tenant is, and a migration runs inside it (drizzle-kit writes this for pgSchema(): generate for public instead)";
    case 'TransactionStmt':
      return `transaction control: the runner gives each migration its own transaction (a file marked "${NO_TRANSACTION_MARKER}" runs statement by statement)`;
    case 'VariableSetStmt': {
      const name = typeof node.name === 'string' ? node.name.toLowerCase() : '';
      if (PIN_SETTINGS.has(name) || node.kind === 'VAR_RESET_ALL') {
        return `${String(node.kind).startsWith('VAR_RESET') ? 'RESET' : 'SET'} ${name || 'ALL'}: the runner pins the search path (and role) to the tenant's; write names unqualified`;
      }
      return null;
    }
    case 'IndexStmt':
    case 'DropStmt':
    case 'ReindexStmt': {
      const concurrent = node.concurrent === true || JSON.stringify(node.params ?? []).includes('"concurrently"');
      return concurrent && !noTransaction
        ? `CONCURRENTLY cannot run inside a transaction: add a line "${NO_TRANSACTION_MARKER}" to the file`
        : null;
    }
    default:
      return null;
  }
}

/** The body of a DO block or a SQL/PL/pgSQL function given as one string; the guard has analysed what it holds. */
function functionBody(type: string, node: Json): string | null {
  const options = (type === 'DoStmt' ? node.args : type === 'CreateFunctionStmt' ? node.options : undefined) as
    unknown[] | undefined;
  for (const option of options ?? []) {
    const def = (option as Json).DefElem as Json | undefined;
    if (def?.defname !== 'as') continue;
    const arg = def.arg as Json;
    const items = ((arg.List as Json | undefined)?.items as unknown[] | undefined) ?? [arg];
    const value = ((items.length === 1 ? (items[0] as Json).String : undefined) as Json | undefined)?.sval;
    return typeof value === 'string' ? value : null;
  }
  return null;
}

/**
 * Byte ranges of the tokens that name `schema` as the first part of a qualified name: an identifier (or an unreserved
 * keyword used as one) equal to the schema, followed by '.' and a name, and not itself after a '.'. Names the scan
 * cannot see (in strings, U&"..." identifiers) stay as they are and are refused by the check after the rewrite.
 */
function schemaCuts(tokens: ScanToken[], schema: string, offset: number): Array<[number, number]> {
  const cuts: Array<[number, number]> = [];
  for (let i = 0; i < tokens.length; i++) {
    const token = tokens[i]!;
    if (identifierValue(token) !== schema || tokens[i - 1]?.text === '.' || tokens[i + 1]?.text !== '.') continue;
    const next = tokens[i + 2];
    if (next === undefined || (identifierValue(next) === null && next.text !== '*')) continue;
    cuts.push([offset + token.start, offset + token.end]);
  }
  return cuts;
}

/** An identifier token's name as PostgreSQL resolves it: quoted as written, unquoted folded to lower case (ASCII). */
function identifierValue(token: ScanToken): string | null {
  if (token.tokenName === 'IDENT') {
    return token.text.startsWith('"')
      ? token.text.slice(1, -1).replace(/""/g, '"')
      : token.text.replace(/[A-Z]+/g, (s) => s.toLowerCase());
  }
  // Keywords arrive as their own token types; any of them can be a schema name when quoted, and most unquoted.
  if (token.keywordKind > 0 && /^[A-Za-z_][A-Za-z0-9_$]*$/.test(token.text)) return token.text.toLowerCase();
  return null;
}
