// Readers for libpg-query's JSON parse tree: string lists, constants, parameters.

export type Json = Record<string, unknown>;

/** A LANGUAGE clause's name, lower case; no language name is long, so a long one is cut for the message. */
export function languageName(node: unknown): string {
  const name = (stringValue(node) ?? '').slice(0, 64);
  return name.toLowerCase();
}

export function stringValue(node: unknown): string | undefined {
  const s = (node as Json | undefined)?.String as Json | undefined;
  return typeof s?.sval === 'string' ? s.sval : undefined;
}

/** A list of String nodes as strings, or null if any element is something else. */
export function stringList(list: unknown[]): string[] | null {
  const out: string[] = [];
  for (const item of list) {
    const value = stringValue(item);
    if (value === undefined) return null;
    out.push(value);
  }
  return out.length === 0 ? null : out;
}

export function listItems(node: unknown): unknown[] | undefined {
  const list = (node as Json | undefined)?.List as Json | undefined;
  return Array.isArray(list?.items) ? (list.items as unknown[]) : undefined;
}

export function constantString(node: unknown): string | undefined {
  const constant = (node as Json | undefined)?.A_Const as Json | undefined;
  const sval = constant?.sval as Json | undefined;
  if (typeof sval?.sval === 'string') return sval.sval;
  // A typed literal such as text 'x' arrives as a cast of a constant.
  const cast = (node as Json | undefined)?.TypeCast as Json | undefined;
  return cast === undefined ? undefined : constantString(cast.arg);
}

export function isParam(node: unknown): boolean {
  if ((node as Json | undefined)?.ParamRef !== undefined) return true;
  const cast = (node as Json | undefined)?.TypeCast as Json | undefined;
  return cast !== undefined && isParam(cast.arg);
}
