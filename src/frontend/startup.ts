// StartupMessage parameters: which are honoured per client, which are refused, and where the tenant token may hide.
import type net from 'node:net';
import type { Config } from '../config/schema.js';
import { SqlState } from '../protocol/codes.js';
import { setStatement } from '../backend/pin.js';
import { GUARDED_SETTINGS, isReadableClientEncoding } from '../guard/analyze.js';
import { isRefusal, type SqlGuard } from '../guard/sql-guard.js';
import { ProxyError } from '../protocol/errors.js';
import { MAX_CUSTOM_SETTINGS } from './session-settings.js';

/** The only setting names PostgreSQL spells in mixed case (as ParameterStatus reports them); all others are lower case. */
const MIXED_CASE_NAMES: ReadonlyMap<string, string> = new Map([
  ['datestyle', 'DateStyle'],
  ['intervalstyle', 'IntervalStyle'],
  ['timezone', 'TimeZone'],
]);

/**
 * Refused in the startup packet: whatever the guard refuses as SET (the pin's settings, the lexer's), so that startup
 * and SET agree, plus replication and default_transaction_read_only. Refusing the pin's settings is the fix for
 * PgBouncer's CVE-2025-12819 class. standard_conforming_strings is judged by its value (refuseUnreadableLexing).
 */
const FORBIDDEN: ReadonlySet<string> = new Set(
  [...GUARDED_SETTINGS, 'replication', 'default_transaction_read_only'].filter(
    (name) => name !== 'standard_conforming_strings',
  ),
);

export const TOKEN_PARAMETER = 'tenant_token';

export interface ClientStartup {
  user: string;
  database: string;
  /** Token given as a startup parameter (or inside options); undefined means ask for a password. */
  token: string | undefined;
  /**
   * Setting → value, named as PostgreSQL spells it: every setting the client gave (PostgreSQL validates them at
   * login), applied like a client's SET on each server it is pinned to. application_name is always there.
   */
  settings: Map<string, string>;
}

/**
 * Reads the startup parameters as PostgreSQL would: `options` first (-c name=value), then each parameter, which
 * wins over the same name in options. Whatever is not the user, database, token or refused is a setting.
 */
export function interpretStartup(raw: ReadonlyMap<string, string>, ignored: readonly string[]): ClientStartup {
  const ignoredSet = new Set(ignored.map((name) => name.toLowerCase()));
  const user = raw.get('user');
  if (user === undefined || user === '') {
    throw new ProxyError(
      SqlState.INVALID_AUTHORIZATION_SPECIFICATION,
      'no user name specified in startup packet',
      'FATAL',
    );
  }
  const startup: ClientStartup = { user, database: raw.get('database') || user, token: undefined, settings: new Map() };

  const accept = (name: string, value: string): void => {
    const lower = name.toLowerCase();
    if (lower === TOKEN_PARAMETER) {
      if (startup.token !== undefined) throw ProxyError.protocolViolation('tenant_token given more than once');
      startup.token = value;
      return;
    }
    if (FORBIDDEN.has(lower)) throw ProxyError.forbiddenStartupParameter(lower);
    refuseUnreadableLexing(lower, value);
    if (ignoredSet.has(lower)) return;
    startup.settings.set(MIXED_CASE_NAMES.get(lower) ?? lower, value);
  };

  const options = raw.get('options');
  if (options !== undefined) for (const [optName, optValue] of parseOptions(options)) accept(optName, optValue);
  for (const [name, value] of raw) {
    if (name === 'user' || name === 'database' || name === 'options') continue;
    // Protocol extensions (_pq_.*) are not negotiated by this proxy; PostgreSQL would answer NegotiateProtocolVersion.
    if (name.startsWith('_pq_.')) throw ProxyError.unsupportedStartupParameter(name);
    accept(name, value);
  }
  // A client that names itself nowhere has an empty name, as on its own connection: never the server's.
  if (!startup.settings.has('application_name')) startup.settings.set('application_name', '');
  refuseTooManyCustom(startup.settings);
  return startup;
}

/** The session's budget of custom settings (SessionSettings) holds from login, before any of them reaches a server. */
/**
 * Startup settings are judged by the guard as the SET the pin will send for them, against the tenant's schema: a
 * value naming another tenant's object (default_text_search_config=tenant_b.cfg) is refused here as it is in SET,
 * before PostgreSQL's validation could answer differently for names that exist and names that do not.
 */
export function judgeStartupSettings(guard: SqlGuard, settings: ReadonlyMap<string, string>, schema: string): void {
  for (const [name, value] of settings) {
    const verdict = guard.check(setStatement(name, value), schema);
    if (isRefusal(verdict)) throw verdict.error.asFatal();
  }
}

function refuseTooManyCustom(settings: ReadonlyMap<string, string>): void {
  let custom = 0;
  for (const name of settings.keys()) if (name.includes('.')) custom++;
  if (custom <= MAX_CUSTOM_SETTINGS) return;
  throw new ProxyError(
    SqlState.PROGRAM_LIMIT_EXCEEDED,
    `a session may set at most ${MAX_CUSTOM_SETTINGS} distinct custom settings through pg-tenant-proxy`,
    'FATAL',
  );
}

/**
 * Splits the startup `options` string the way PostgreSQL does (whitespace separated, backslash escapes) and accepts
 * only `-c name=value`, `-cname=value` and `--name=value`; any other backend switch is refused.
 */
export function parseOptions(options: string): Array<[string, string]> {
  const words: string[] = [];
  let current = '';
  let inWord = false;
  for (let i = 0; i < options.length; i++) {
    const ch = options[i]!;
    if (ch === '\\' && i + 1 < options.length) {
      current += options[++i];
      inWord = true;
    } else if (ch === ' ' || ch === '\t' || ch === '\n' || ch === '\r') {
      if (inWord) words.push(current);
      current = '';
      inWord = false;
    } else {
      current += ch;
      inWord = true;
    }
  }
  if (inWord) words.push(current);

  const settings: Array<[string, string]> = [];
  for (let i = 0; i < words.length; i++) {
    const word = words[i]!;
    let assignment: string | undefined;
    if (word === '-c') assignment = words[++i];
    else if (word.startsWith('-c')) assignment = word.slice(2);
    else if (word.startsWith('--')) assignment = word.slice(2);
    if (assignment === undefined) throw unsupportedOption(word);
    const eq = assignment.indexOf('=');
    if (eq < 0)
      throw new ProxyError(
        SqlState.SYNTAX_ERROR,
        `${word.startsWith('--') ? word : `-c ${assignment}`} requires a value`,
        'FATAL',
      );
    settings.push([assignment.slice(0, eq).replace(/-/g, '_'), assignment.slice(eq + 1)]);
  }
  return settings;
}

/**
 * The guard reads SQL as UTF-8 with standard_conforming_strings on; a client that made the server read it any other
 * way (SJIS trail bytes that look like a backslash, backslash escapes in plain strings) could hide statements.
 */
function refuseUnreadableLexing(name: string, value: string): void {
  if (name === 'client_encoding' && !isReadableClientEncoding(value)) {
    throw new ProxyError(
      SqlState.FEATURE_NOT_SUPPORTED,
      `client_encoding ${value} is not supported by pg-tenant-proxy`,
      'FATAL',
      undefined,
      'use UTF8',
    );
  }
  if (name === 'standard_conforming_strings' && !['on', 'true', 'yes', '1'].includes(value.toLowerCase())) {
    throw new ProxyError(
      SqlState.FEATURE_NOT_SUPPORTED,
      'standard_conforming_strings must be on through pg-tenant-proxy',
      'FATAL',
    );
  }
}

function unsupportedOption(word: string): ProxyError {
  return new ProxyError(
    SqlState.FEATURE_NOT_SUPPORTED,
    `unsupported option in startup packet: ${word.slice(0, 2)}`,
    'FATAL',
    undefined,
    'only -c name=value settings are accepted in options',
  );
}

/** How long a client whose startup bytes cannot be read on has to show it left (see refuseUnlessGone). */
const LEAVING_GRACE_MS = 50;

/**
 * Startup bytes no packet can start with are most often a client leaving partway through its startup packet (its
 * Terminate read as a length), which PostgreSQL closes without a word. Reading stops but the stream is drained, so
 * the client's close ends the session first (see ClientSession.onSocketClosed); only a client still there shortly
 * after hears `refuse`.
 */
export function refuseUnlessGone(socket: net.Socket, onData: (chunk: Buffer) => void, refuse: () => void): void {
  socket.removeListener('data', onData);
  socket.resume();
  setTimeout(refuse, LEAVING_GRACE_MS).unref();
}

/** Tokens travel as cleartext passwords: without TLS only loopback clients may send them, unless TLS is off. */
export function plaintextAllowed(tlsMode: Config['tls']['mode'], address: string | undefined): boolean {
  if (tlsMode === 'disable') return true;
  if (tlsMode === 'require') return false;
  const from = address ?? '';
  return from === '127.0.0.1' || from === '::1' || from === '::ffff:127.0.0.1' || from.startsWith('127.');
}

/**
 * What PostgreSQL would report at login: the upstream's ParameterStatus values, overridden by the client's own
 * settings, with the login user and the tenant's schema as search_path.
 */
export function reportedParameters(
  defaults: ReadonlyMap<string, string>,
  settings: ReadonlyMap<string, string>,
  user: string,
  schema: string,
): Map<string, string> {
  const out = new Map(defaults);
  for (const [name, value] of settings) if (out.has(name) || name === 'application_name') out.set(name, value);
  if (!settings.has('application_name')) out.set('application_name', '');
  out.set('session_authorization', user);
  out.set('is_superuser', 'off');
  if (out.has('search_path')) out.set('search_path', reportedIdent(schema));
  return out;
}

/** A schema name as PostgreSQL prints it in search_path: quoted only when it is not a plain lower-case identifier. */
function reportedIdent(schema: string): string {
  return /^[a-z_][a-z0-9_$]*$/.test(schema) ? schema : `"${schema.replace(/"/g, '""')}"`;
}

/** Whether a reported search_path names exactly the one pinned schema (PostgreSQL 18 reports it). */
export function isSchemaPath(value: string, schema: string): boolean {
  const trimmed = value.trim();
  return trimmed === schema || trimmed === `"${schema.replace(/"/g, '""')}"`;
}
