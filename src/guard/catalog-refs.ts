// Catalog references in a statement, as splices that point each at the filtered equivalent (src/catalog/surfaces.ts).
//
// The rewrite is made of the client's own text, not a deparse: each splice replaces one name (or inserts a wrapper
// call around a reg* cast) at the byte offsets the parse tree gives, so everything else stays byte-identical. Where
// the text at an offset is not what the tree says (a comment inside a qualified name, say), nothing is guessed: the
// statement is refused.
import {
  CATALOG_SCHEMA,
  FILTERED_RELATIONS,
  INFORMATION_SCHEMA_RELATIONS,
  OPEN_RELATIONS,
  REG_TYPES,
  SEQUENCE_FUNCTIONS,
  WRAPPED_FUNCTIONS,
} from '../catalog/surfaces.js';
import type { Json } from './tree-nodes.js';

/** Replace bytes [start, end) of the statement text with `text` (start === end: an insertion). */
export interface Splice {
  start: number;
  end: number;
  text: string;
  /** The text depends on the tenant: built from its channel prefix when the frame goes out (see channel-rules.ts). */
  tenant?: (channelPrefix: string) => string;
}

/** What a rule reports back: a refusal's message, or null. */
export type CatalogRefusal = string | null;

const FILTERED = new Set(Object.keys(FILTERED_RELATIONS));

/** Whether an unqualified or pg_catalog relation name is one the filter shows through a view. */
export function isFilteredRelation(name: string): boolean {
  return FILTERED.has(name);
}

export class CatalogRefs {
  readonly splices: Splice[] = [];

  /** `source`: the statement text's bytes, or null where splicing is impossible (a skeleton, a function body). */
  constructor(private readonly source: Buffer | null) {}

  /** A RangeVar: a relation in FROM, a target, COPY, LOCK… */
  relation(node: Json): CatalogRefusal {
    const schema = node.schemaname as string | undefined;
    const name = node.relname as string;
    let filtered: boolean;
    if (schema === undefined || schema === 'pg_catalog') {
      filtered = FILTERED.has(name);
      if (!filtered && schema === 'pg_catalog' && !OPEN_RELATIONS.has(name))
        return `reading pg_catalog.${name}, which the catalog filter does not cover,`;
    } else if (schema === 'information_schema') {
      filtered = true;
      if (!INFORMATION_SCHEMA_RELATIONS.has(name))
        return `reading information_schema.${name}, which the catalog filter does not cover,`;
    } else return null;
    if (!filtered) return null;
    return this.replaceName(node.location, schema === undefined ? [name] : [schema, name], name, 'the catalog');
  }

  /** A function call: a wrapped pg_catalog function, or a reg* type written as a function (regclass(x)). */
  call(parts: string[], node: Json): CatalogRefusal {
    const name = parts[parts.length - 1]!;
    if (parts.length > 2 || (parts.length === 2 && parts[0] !== 'pg_catalog')) return null;
    if (SEQUENCE_FUNCTIONS.has(name) && isStringLiteral((node.args as unknown[] | undefined)?.[0])) return null;
    if (WRAPPED_FUNCTIONS[name] !== undefined) return this.replaceName(node.location, parts, name, 'the function');
    if (REG_TYPES.has(name)) return this.replaceName(node.location, parts, `${name}_in`, 'the cast');
    return null;
  }

  /** A cast to a reg* type: of anything but a name literal, it goes through <type>_in, which hides other tenants. */
  cast(node: Json, type: string, typeName: Json): CatalogRefusal {
    const arg = node.arg as Json | undefined;
    const literal = (arg?.A_Const as Json | undefined)?.sval as Json | undefined;
    // A name literal is judged by the guard's name rules and resolved by PostgreSQL in the tenant's own path; a role
    // name is not (roles have no schema), so a regrole literal goes through regrole_in like an expression.
    if (typeof literal?.sval === 'string' && type !== 'regrole' && !/^\s*[0-9]+\s*$/.test(literal.sval)) return null;
    const what = `a cast to ${type} of an expression`;
    if (this.source === null) return `${what} inside a function body or a long statement`;
    if (Array.isArray(typeName.arrayBounds) && typeName.arrayBounds.length > 0) return `a cast to ${type}[]`;
    const parts = ((typeName.names as unknown[] | undefined) ?? []).map(
      (n) => ((n as Json).String as Json | undefined)?.sval as string,
    );
    const typeEnd = this.nameEnd(typeName.location, parts);
    const argStart = arg === undefined ? -1 : firstLocation(arg);
    const at = node.location;
    if (typeEnd < 0 || argStart < 0 || typeof at !== 'number') return `${what} the proxy cannot rewrite`;
    // A parameter ($1::regclass) becomes the wrapper's argument too: PostgreSQL resolves an untyped one to the text
    // overload (the string category wins for an unknown argument), never to the reg* type whose input would look the
    // bound value up at Bind; one the client typed as a number goes to the oid overload.
    const wrapper = `${CATALOG_SCHEMA}.${type}_in(`;
    const src = this.source;
    if (src[at] === 0x3a /* : */ && src[at + 1] === 0x3a && argStart < at) {
      // x::regclass → pgtp_catalog.regclass_in(x)
      this.splices.push({ start: argStart, end: argStart, text: wrapper }, { start: at, end: typeEnd, text: ')' });
      return null;
    }
    if (src.toString('latin1', at, at + 4).toLowerCase() === 'cast') {
      // CAST(x AS regclass) → pgtp_catalog.regclass_in(x)
      let open = at + 4;
      while (isSpace(src[open])) open++;
      let as = (typeName.location as number) - 1;
      while (as > 0 && isSpace(src[as])) as--;
      if (
        src[open] !== 0x28 /* ( */ ||
        src.toString('latin1', as - 1, as + 1).toLowerCase() !== 'as' ||
        open >= argStart
      )
        return `${what} the proxy cannot rewrite`;
      this.splices.push({ start: at, end: open + 1, text: wrapper }, { start: as - 1, end: typeEnd, text: '' });
      return null;
    }
    return `${what} the proxy cannot rewrite (write it as x::${type})`;
  }

  /** A call of the function `parts` pointed at `target` (a schema-qualified name). */
  rename(parts: string[], node: Json, target: string): CatalogRefusal {
    return this.replaceName(node.location, parts, parts.join('.'), 'the function', target);
  }

  private replaceName(
    location: unknown,
    parts: string[],
    target: string,
    what: string,
    qualified = `${CATALOG_SCHEMA}.${target}`,
  ): CatalogRefusal {
    const shown = parts.join('.');
    if (this.source === null) return `${what} ${shown} inside a function body or a long statement`;
    const end = this.nameEnd(location, parts);
    if (end < 0) return `${what} ${shown} written in a form the proxy cannot rewrite`;
    this.splices.push({ start: location as number, end, text: qualified });
    return null;
  }

  /** The byte offset just past the qualified name `parts` written at `location`, or -1 if the text differs. */
  private nameEnd(location: unknown, parts: string[]): number {
    const src = this.source!;
    if (typeof location !== 'number' || location < 0) return -1;
    let at = location;
    for (let k = 0; k < parts.length; k++) {
      if (k > 0) {
        while (isSpace(src[at])) at++;
        if (src[at] !== 0x2e /* . */) return -1;
        at++;
        while (isSpace(src[at])) at++;
      }
      const token = identifierAt(src, at);
      if (token === null || token.value !== parts[k]) return -1;
      at = token.end;
    }
    return at;
  }
}

/** Applies splices (sorted, non-overlapping) to a statement's bytes; `channelPrefix`: the tenant's (channels/names). */
export function applySplices(text: Buffer, splices: readonly Splice[], channelPrefix: string): Buffer {
  const pieces: Buffer[] = [];
  let copied = 0;
  for (const s of splices) {
    const spliced =
      s.tenant === undefined ? Buffer.from(s.text, 'latin1') : Buffer.from(s.tenant(channelPrefix), 'utf8');
    pieces.push(text.subarray(copied, s.start), spliced);
    copied = s.end;
  }
  pieces.push(text.subarray(copied));
  return Buffer.concat(pieces);
}

/** Sorts splices by offset (insertions first, in the order made) and checks that none overlaps another. */
export function orderSplices(splices: Splice[]): Splice[] | null {
  const sorted = splices
    .map((s, i) => ({ s, i }))
    .sort((a, b) => a.s.start - b.s.start || a.s.end - b.s.end || a.i - b.i);
  let end = 0;
  for (const { s } of sorted) {
    if (s.start < end) return null;
    end = s.end;
  }
  return sorted.map(({ s }) => s);
}

function isStringLiteral(node: unknown): boolean {
  return (
    typeof (((node as Json | undefined)?.A_Const as Json | undefined)?.sval as Json | undefined)?.sval === 'string'
  );
}

/** The smallest `location` in a subtree: where the expression's text starts. */
function firstLocation(node: unknown): number {
  let min = -1;
  const visit = (value: unknown): void => {
    if (Array.isArray(value)) {
      for (const item of value) visit(item);
      return;
    }
    if (value === null || typeof value !== 'object') return;
    for (const [key, child] of Object.entries(value as Json)) {
      if (key === 'location' && typeof child === 'number' && child >= 0 && (min < 0 || child < min)) min = child;
      else visit(child);
    }
  };
  visit(node);
  return min;
}

/** An identifier token at `at`: a quoted one as written, an unquoted one folded to lower case as PostgreSQL does. */
function identifierAt(src: Buffer, at: number): { value: string; end: number } | null {
  if (src[at] === 0x22 /* " */) {
    let j = at + 1;
    for (;;) {
      const k = src.indexOf(0x22, j);
      if (k < 0) return null;
      if (src[k + 1] === 0x22) {
        j = k + 2;
        continue;
      }
      return { value: src.toString('utf8', at + 1, k).replaceAll('""', '"'), end: k + 1 };
    }
  }
  let j = at;
  while (j < src.length && isIdentChar(src[j]!, j === at)) j++;
  if (j === at) return null;
  return { value: src.toString('utf8', at, j).replace(/[A-Z]+/g, (m) => m.toLowerCase()), end: j };
}

function isIdentChar(c: number, first: boolean): boolean {
  if ((c >= 0x61 && c <= 0x7a) || (c >= 0x41 && c <= 0x5a) || c === 0x5f || c >= 0x80) return true;
  return !first && ((c >= 0x30 && c <= 0x39) || c === 0x24);
}

function isSpace(c: number | undefined): boolean {
  return c === 0x20 || c === 0x09 || c === 0x0a || c === 0x0d || c === 0x0c || c === 0x0b;
}
