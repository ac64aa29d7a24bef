// The statements the proxy injects: SET search_path (+ client settings) on pin, the reset before a server is reused.
import { quoteIdent, quoteLiteral } from '../auth/identity.js';
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

const DISCARD_ALL = encodeQuery('DISCARD ALL');
const ROLLBACK_THEN_DISCARD = Buffer.concat([encodeQuery('ROLLBACK'), DISCARD_ALL]);

/**
 * DISCARD ALL resets search_path, role, every SET, prepared statements, portals, temp tables, LISTEN and advisory
 * locks, so nothing of one client's session can reach the next. A transaction left open is rolled back first.
 */
export function planReset(inTransaction: boolean): PinPlan {
  return inTransaction ? { frame: ROLLBACK_THEN_DISCARD, replies: 2 } : { frame: DISCARD_ALL, replies: 1 };
}
