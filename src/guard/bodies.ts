// Code inside statements: DO blocks and function bodies, whose SQL and PL/pgSQL is analysed like a statement.
import { parsePlPgSQLSync } from 'libpg-query';
import type { RuleContext } from './analysis.js';
import { parseQualifiedName } from './qualified-name.js';
import { MAX_DEPTH, TRUSTED_LANGUAGES } from './rule-tables.js';
import { languageName, listItems, stringList, stringValue, type Json } from './tree-nodes.js';

export function doStmt(a: RuleContext, node: Json, depth: number): void {
  a.literalDependent = true;
  let language = 'plpgsql';
  let body: string | undefined;
  for (const arg of (node.args as unknown[]) ?? []) {
    const def = (arg as Json).DefElem as Json | undefined;
    if (def?.defname === 'language') language = languageName(def.arg);
    if (def?.defname === 'as') body = stringValue(def.arg);
  }
  if (language !== 'plpgsql') {
    a.deny('language', `a DO block in language ${language}`);
    return;
  }
  if (!a.parsable(body ?? '', 'a DO block')) return;
  const tag = dollarTag(body ?? '');
  plpgsql(a, `CREATE FUNCTION pg_tenant_proxy_do() RETURNS void LANGUAGE plpgsql AS ${tag}${body ?? ''}${tag}`, depth);
}

export function createFunction(a: RuleContext, node: Json, depth: number, statementText: () => string): void {
  a.literalDependent = true;
  let language: string | undefined;
  let body: string[] | undefined;
  for (const option of (node.options as unknown[]) ?? []) {
    const def = (option as Json).DefElem as Json | undefined;
    if (def?.defname === 'language') language = languageName(def.arg);
    if (def?.defname === 'as') body = stringList(listItems(def.arg) ?? []) ?? undefined;
  }
  language ??= 'sql';
  if (!TRUSTED_LANGUAGES.has(language)) {
    a.deny('language', `a function in language ${language}`);
    return;
  }
  if (body === undefined) return; // BEGIN ATOMIC bodies are part of the tree and walked with it
  if (body.length !== 1) {
    a.deny('language', 'a function body given as object file and symbol');
    return;
  }
  if (language === 'sql') a.sql(body[0]!, depth + 1);
  else plpgsql(a, statementText(), depth);
}

/** PL/pgSQL: dynamic EXECUTE is refused; every embedded SQL expression is analysed like a statement. */
function plpgsql(a: RuleContext, createFunctionText: string, depth: number): void {
  if (depth + 1 > MAX_DEPTH) {
    a.deny('dynamic_sql', 'functions nested deeper than the guard inspects');
    return;
  }
  // Its body is code, parsed in full: a long one is refused as a long statement is.
  if (!a.parsable(createFunctionText, 'a PL/pgSQL function')) return;
  let tree: unknown;
  try {
    tree = parsePlPgSQLSync(createFunctionText);
  } catch (err) {
    a.deny('dynamic_sql', `a PL/pgSQL body the guard cannot parse (${(err as Error).message})`);
    return;
  }
  plpgsqlWalk(a, tree, depth + 1);
}

function plpgsqlWalk(a: RuleContext, value: unknown, depth: number): void {
  if (Array.isArray(value)) {
    for (const item of value) plpgsqlWalk(a, item, depth);
    return;
  }
  if (value === null || typeof value !== 'object') return;
  const node = value as Json;
  for (const key in node) {
    const child = node[key];
    if (key === 'PLpgSQL_stmt_dynexecute' || key === 'PLpgSQL_stmt_dynfors' || key === 'dynquery') {
      a.deny('dynamic_sql', 'EXECUTE of dynamic SQL in PL/pgSQL');
      return;
    }
    if (key === 'PLpgSQL_expr') {
      const expr = child as { query?: string; parseMode?: number };
      const sql = expressionAsStatement(expr.query ?? '', expr.parseMode ?? 0);
      if (sql === null) a.deny('dynamic_sql', 'a PL/pgSQL expression the guard cannot read');
      else a.sql(sql, depth);
      continue;
    }
    if (key === 'PLpgSQL_type' && typeof (child as Json).typname === 'string') {
      const parts = parseQualifiedName(((child as Json).typname as string).replace(/%.*$/, ''));
      if (parts !== null) a.qualified(parts.length === 3 ? parts.slice(0, 2) : parts);
    }
    plpgsqlWalk(a, child, depth);
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
