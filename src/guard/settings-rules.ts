// Settings rules: what the guard keeps from being changed (the pin, how the lexer reads strings) and how.
import type { RuleContext } from './analysis.js';
import type { Json } from './tree-nodes.js';

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

export function variableSet(a: RuleContext, node: Json): void {
  const name = typeof node.name === 'string' ? node.name.toLowerCase() : '';
  // SET LOCAL ends with its transaction. (SET TRANSACTION does too, but only costs a needless settings snapshot.)
  if (node.is_local !== true) a.changesSettings = true;
  if (name.includes('.')) a.customSettings.add(name);
  if (node.kind === 'VAR_RESET_ALL') {
    a.deny('session_state', 'RESET ALL');
  } else if (GUARDED_SETTINGS.has(name)) {
    a.deny('session_state', `changing ${name}`);
  } else if (name === 'client_encoding') {
    a.literalDependent = true;
    for (const arg of (node.args as unknown[]) ?? []) {
      const value = a.literal(arg);
      if (value !== undefined && !isReadableClientEncoding(value)) {
        a.deny('session_state', `client_encoding ${value}`);
      }
    }
  }
}

/** CREATE/ALTER FUNCTION ... SET search_path = ...: allowed only when every schema listed is allowed. */
export function functionSetting(a: RuleContext, arg: Json | undefined): void {
  const set = arg?.VariableSetStmt as Json | undefined;
  if (set === undefined) return;
  const name = typeof set.name === 'string' ? set.name.toLowerCase() : '';
  // standard_conforming_strings and backslash_quote too: a SQL or PL/pgSQL body is lexed again when the function
  // runs, under its own SET, so 'a\'' ; SELECT … FROM tenant_b.t; --' would be one string to the guard and code there.
  if (name !== 'search_path' && GUARDED_SETTINGS.has(name)) {
    a.deny('session_state', `a function-level ${name}`);
    return;
  }
  if (name !== 'search_path' || set.kind !== 'VAR_SET_VALUE') return;
  a.literalDependent = true;
  for (const value of (set.args as unknown[]) ?? []) {
    const schema = a.literal(value);
    if (schema !== undefined && schema !== '') a.reference(schema, schema);
  }
}
