// The statements the proxy injects: SET search_path (+ client settings) on pin, the reset before a server is reused.
import { quoteIdent, quoteLiteral } from '../auth/identity.js';
import { SERVER_STATEMENT_PREFIX } from '../guard/analyze.js';
import { encodeQuery } from '../protocol/messages.js';
import type { ServerConn } from './server-conn.js';

/** Settings PostgreSQL reports with ParameterStatus; the others are tracked by what the proxy applied. */
const REPORTED = new Set([
  'client_encoding',
  'DateStyle',
  'TimeZone',
  'IntervalStyle',
  'standard_conforming_strings',
  'application_name',
]);

export interface PinPlan {
  /** One Query message holding every SET, so the pin costs no round trip of its own. */
  frame: Buffer;
  /** ReadyForQuery replies to swallow. */
  replies: number;
}

/**
 * Builds the pin for a client on a server fresh from reset. search_path is always set: the reset restored the
 * login role's empty default, so a pin that failed would leave unqualified names unresolvable instead of leaking.
 */
export function planPin(
  server: ServerConn,
  schema: string,
  role: string | null,
  settings: ReadonlyMap<string, string>,
): PinPlan {
  let sql = `SET search_path TO ${quoteIdent(schema)}`;
  if (role !== null) sql += `; SET ROLE ${quoteIdent(role)}`;
  for (const [name, value] of settings) {
    const current = REPORTED.has(name) ? server.reported.get(name) : server.applied.get(name);
    if (current === value) continue;
    sql += `; SET ${quoteIdent(name)} TO ${quoteLiteral(value)}`;
    if (!REPORTED.has(name)) server.applied.set(name, value);
  }
  server.pinnedSchema = schema;
  return { frame: encodeQuery(sql), replies: 1 };
}

/**
 * Everything DISCARD ALL resets except the proxy's own prepared statements (and cached plans, which hold nothing
 * of a session): every SET, open cursors, role and session authorization, LISTEN, temp tables, sequence state
 * (currval/lastval) and advisory locks; the unnamed statement dies with any simple Query. RESET ALL goes first so a
 * planted statement_timeout cannot fail the reset, then local timeouts keep a lock (DISCARD TEMP waiting on another
 * session) from stalling it forever. The closing SELECT counts prepared statements so the server can prove that
 * nothing but the proxy's own remain: a PREPARE run inside a function is invisible to the guard, not to this.
 */
const RESET_SESSION =
  "RESET ALL; SET LOCAL lock_timeout = '2s'; SET LOCAL statement_timeout = '10s'; CLOSE ALL; " +
  'SET SESSION AUTHORIZATION DEFAULT; UNLISTEN *; DISCARD TEMP; DISCARD SEQUENCES';
const PROVE_CLEAN =
  'SELECT pg_catalog.pg_advisory_unlock_all(), ' +
  `count(*) FILTER (WHERE name !~ '^${SERVER_STATEMENT_PREFIX}[0-9]+$'), count(*) FILTER (WHERE name ~ '^${SERVER_STATEMENT_PREFIX}[0-9]+$') ` +
  'FROM pg_catalog.pg_prepared_statements';
const RESET = encodeQuery(`${RESET_SESSION}; ${PROVE_CLEAN}`);
const RESET_WITH_DEALLOCATE = encodeQuery(`${RESET_SESSION}; DEALLOCATE ALL; ${PROVE_CLEAN}`);
const ROLLBACK = encodeQuery('ROLLBACK');

/**
 * What a client's session has changed, asked of its server after a transaction that ran SET, RESET or set_config:
 * the server has already applied transaction semantics (a rolled-back SET, SET LOCAL), so the answer is exact.
 * The pin's own settings are left out; they are the tenant's, not the client's. Custom settings (app.*) are not in
 * pg_settings and are asked by name; an empty one is as good as unset.
 */
/** Settings put back on a pinned server (the client's startup values after its RESET), with the ones PostgreSQL reports. */
export function planRestore(settings: ReadonlyMap<string, string>): { frame: Buffer; reported: string[] } {
  const statements = [...settings].map(([name, value]) => `SET ${quoteIdent(name)} TO ${quoteLiteral(value)}`);
  return { frame: encodeQuery(statements.join('; ')), reported: [...settings.keys()].filter((name) => REPORTED.has(name)) };
}

export function planSnapshot(customSettings: Iterable<string>): Buffer {
  let sql =
    'SELECT name, pg_catalog.current_setting(name) FROM pg_catalog.pg_settings ' +
    "WHERE source = 'session' AND name NOT IN ('search_path', 'role', 'session_authorization', 'is_superuser')";
  const custom = [...customSettings].map(quoteLiteral);
  if (custom.length > 0) {
    sql +=
      ' UNION ALL SELECT name, value FROM (SELECT name, pg_catalog.current_setting(name, true) AS value ' +
      `FROM pg_catalog.unnest(ARRAY[${custom.join(', ')}]::text[]) AS name) AS custom WHERE value <> ''`;
  }
  return encodeQuery(sql);
}

/**
 * The reset run before a server may serve anyone else, after a ROLLBACK when a transaction was left open. SQL-level
 * PREPARE/DEALLOCATE by the client also drops every prepared statement, the proxy's included.
 */
export function planReset(server: ServerConn, inTransaction: boolean): PinPlan {
  let frame = RESET;
  if (server.sqlPrepared) {
    frame = RESET_WITH_DEALLOCATE;
    server.statements.clear();
    server.sqlPrepared = false;
  }
  return inTransaction ? { frame: Buffer.concat([ROLLBACK, frame]), replies: 2 } : { frame, replies: 1 };
}
