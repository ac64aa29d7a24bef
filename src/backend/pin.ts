// The statements the proxy injects: SET search_path (+ client settings) on pin, the reset before a server is reused.
import { quoteIdent, quoteLiteral } from '../auth/identity.js';
import { TENANT_MARKER_CLASS } from '../catalog/surfaces.js';
import { SERVER_STATEMENT_PREFIX } from '../guard/analyze.js';
import { FrontendCode } from '../protocol/codes.js';
import { encodeQuery, encodeUnnamedParse } from '../protocol/messages.js';
import { SYNC } from '../protocol/static.js';
import { Writer } from '../protocol/writer.js';
import { NAME_UNPINNED_SERVER } from './connect.js';
import type { ServerConn } from './server-conn.js';

/**
 * Settings a client may change that PostgreSQL reports with ParameterStatus; the server's report is their value (the
 * others are tracked by what the proxy applied).
 */
export const REPORTED: ReadonlySet<string> = new Set([
  'client_encoding',
  'DateStyle',
  'TimeZone',
  'IntervalStyle',
  'standard_conforming_strings',
  'application_name',
]);

export interface PinPlan {
  /** BEGIN, every SET and COMMIT as unsynced extended-protocol messages, then Closes (see planPin). */
  frame: Buffer;
  /** CommandCompletes and CloseCompletes to swallow: the pin is over at the last CloseComplete. */
  completions: number;
  /** The schema it pins. */
  schema: string;
  /** Unreported settings it applies (the server then knows their values without asking). */
  applied: [string, string][];
}

/** One statement as an unnamed Parse/Bind/Execute with no Sync: if it fails, PostgreSQL skips all up to the next Sync. */
function unsynced(sql: string): Buffer {
  return Buffer.concat([encodeUnnamedParse(sql), UNNAMED_BIND, UNNAMED_EXECUTE]);
}
const UNNAMED_BIND = new Writer(16)
  .begin(FrontendCode.Bind)
  .cstring('')
  .cstring('')
  .int16(0)
  .int16(0)
  .int16(0)
  .end()
  .flush();
const UNNAMED_EXECUTE = new Writer(16).begin(FrontendCode.Execute).cstring('').int32(0).end().flush();
const BEGIN = unsynced('BEGIN');
/**
 * COMMIT, then the unnamed statement and portal closed ('S', 'P'): a client's Bind or Execute without its own Parse or
 * Bind must fail as on a fresh connection, not find the pin's.
 */
const COMMIT_AND_CLOSE = Buffer.concat([
  unsynced('COMMIT'),
  new Writer(8).begin(FrontendCode.Close).int8(0x53).cstring('').end().flush(),
  new Writer(8).begin(FrontendCode.Close).int8(0x50).cstring('').end().flush(),
]);

/**
 * Builds the pin for a client on a server fresh from reset, sent in the same write as the client's first statement.
 * It goes as BEGIN, SET…, COMMIT in unsynced extended-protocol messages, which buys two things over a Query: a SET
 * that fails (a tenant role dropped meanwhile, a setting that no longer applies) makes PostgreSQL skip the client's
 * statement behind it (up to its Sync), which then never runs unpinned; and PostgreSQL flushes nothing until the
 * client's own reply, one send and one wakeup less per pin. The explicit COMMIT ends the pin's transaction before the
 * client's statement, which would otherwise share it and could roll the pin back. search_path is always set: the
 * reset restored the login role's empty default.
 */
export function planPin(
  server: ServerConn,
  schema: string,
  role: string | null,
  settings: ReadonlyMap<string, string>,
): PinPlan {
  const statements = [`SET search_path TO ${quoteIdent(schema)}`, tenantMarker(schema)];
  if (role !== null) statements.push(`SET ROLE ${quoteIdent(role)}`);
  const applied: [string, string][] = [];
  for (const [name, value] of settings) {
    if (serverValue(server, name) === value) continue;
    statements.push(setStatement(name, value));
    if (!REPORTED.has(name)) applied.push([name, value]);
  }
  return {
    frame: Buffer.concat([BEGIN, ...statements.map(unsynced), COMMIT_AND_CLOSE]),
    completions: statements.length + 4,
    schema,
    applied,
  };
}

/**
 * Takes the tenant's marker (see TENANT_MARKER_CLASS): a shared advisory lock the reset releases, by which the catalog
 * filter knows the tenant's own sessions. It returns no row, so its only reply is a CommandComplete. A try-lock: a
 * transaction holding the key exclusively (pg_advisory_xact_lock is a tenant's to call, and keys are one space for the
 * whole database) must never make a pin wait; at worst the pinned backend goes unmarked, missing from its own tenant's
 * pg_stat_activity for that transaction.
 */
function tenantMarker(schema: string): string {
  return (
    `SELECT WHERE pg_catalog.pg_try_advisory_lock_shared(${TENANT_MARKER_CLASS}, ` +
    `(SELECT n.oid::pg_catalog.int4 FROM pg_catalog.pg_namespace n WHERE n.nspname = ${quoteLiteral(schema)})) IS NULL`
  );
}

/** A setting's value on the server as far as the proxy knows (undefined: unknown). */
function serverValue(server: ServerConn, name: string): string | undefined {
  if (!REPORTED.has(name)) return server.applied(name);
  if (!server.needsReset) return server.reported.get(name);
  // Behind a reset sent in the same write, the reported values are the previous client's until its replies arrive;
  // only application_name is known: DISCARD ALL returns it to the server's empty login value (see connect.ts).
  return name === 'application_name' ? '' : undefined;
}

/**
 * The reset when the server holds none of the proxy's prepared statements (or the client's SQL PREPARE/DEALLOCATE
 * means they all go anyway): DISCARD ALL, one utility statement that clears every SET, cursor, role and session
 * authorization, LISTEN, prepared statement, advisory lock, temp table and sequence state — a few µs of backend work,
 * where the statement-by-statement reset below costs about 80 (mostly its proof query). It runs under a session
 * statement_timeout set just before (RESET ALL first, so a planted timeout cannot fail that SET): a lock held by another
 * session on something DISCARD TEMP must drop (a temp sequence in a column default) then fails the reset instead of
 * stalling it, and DISCARD ALL itself puts the timeout back to the default.
 */
const DISCARD_TIMEOUT = encodeQuery("RESET ALL; SET statement_timeout = '5s'");
/** DISCARD ALL then the proxy's name for an unpinned server (see connect.ts), one Sync for both. */
const DISCARD = Buffer.concat([DISCARD_TIMEOUT, unsynced('DISCARD ALL'), unsynced(NAME_UNPINNED_SERVER), SYNC]);

/**
 * The reset sent in the same write as the next client's pin and first statement, when a server goes straight from
 * one client to a waiting one (see ServerConn.pinAfterReset). DISCARD ALL goes as an extended-protocol Parse/Bind/
 * Execute with no Sync: if it fails, PostgreSQL skips every message up to the next Sync — the pin and the client's
 * statement with it — so nothing of the next client ever runs on a server that was not reset. It must open its run
 * of unsynced messages (PostgreSQL refuses it anywhere else in a pipeline), so no statement_timeout can be set for it
 * without a round trip of its own; instead the pool cancels one still running after HAND_OVER_DEADLINE_MS (a lock
 * DISCARD TEMP waits for), which fails it like any other error. A timeout the previous client planted can likewise
 * only fail it: its next client's statement then goes to another server.
 */
export const PIPELINED_RESET = unsynced('DISCARD ALL');

/** The reset can be DISCARD ALL: the server holds none of the proxy's statements, or a client's PREPARE dooms them. */
function discardable(server: ServerConn): boolean {
  return server.statements.size === 0 || server.statements.distrusted;
}

/** Whether the reset of this server may ride with the next client's first statement: no cancel can still land. */
export function canHandOver(server: ServerConn): boolean {
  return !server.cancelling && discardable(server);
}

/** A server that goes straight to a waiting client, reset (DISCARD ALL) in the same write as its first statement. */
export function planHandOver(server: ServerConn): void {
  server.statements.discarded();
}

/**
 * Everything DISCARD ALL resets except the proxy's own prepared statements (and cached plans, which hold nothing
 * of a session), for servers that hold some. The closing SELECT counts prepared statements so the server can prove
 * that nothing but the proxy's own remain: a PREPARE run inside a function is invisible to the guard, not to this.
 */
const RESET = encodeQuery(
  "RESET ALL; SET LOCAL lock_timeout = '2s'; SET LOCAL statement_timeout = '10s'; CLOSE ALL; " +
    `SET SESSION AUTHORIZATION DEFAULT; UNLISTEN *; DISCARD TEMP; DISCARD SEQUENCES; ${NAME_UNPINNED_SERVER}; ` +
    'SELECT pg_catalog.pg_advisory_unlock_all(), ' +
    `count(*) FILTER (WHERE name !~ '^${SERVER_STATEMENT_PREFIX}[0-9]+$'), count(*) FILTER (WHERE name ~ '^${SERVER_STATEMENT_PREFIX}[0-9]+$') ` +
    'FROM pg_catalog.pg_prepared_statements',
);
const ROLLBACK = encodeQuery('ROLLBACK');

/**
 * A client's setting as the proxy applies it on a server: one spelling for the pin, the restore, the login's
 * validation and the guard's judgement, so none of them can mean something else (set_config and SET read list
 * values differently).
 */
export function setStatement(name: string, value: string, local = false): string {
  return `SET ${local ? 'LOCAL ' : ''}${quoteIdent(name)} TO ${quoteLiteral(value)}`;
}

/** Settings put back on a pinned server (the client's startup values after its RESET), with the ones PostgreSQL reports. */
export function planRestore(settings: ReadonlyMap<string, string>): { frame: Buffer; reported: string[] } {
  const statements = [...settings].map(([name, value]) => setStatement(name, value));
  return {
    frame: encodeQuery(statements.join('; ')),
    reported: [...settings.keys()].filter((name) => REPORTED.has(name)),
  };
}

/**
 * What a client's session has changed, asked of its server after a transaction that ran SET, RESET or set_config:
 * the server has already applied transaction semantics (a rolled-back SET, SET LOCAL), so the answer is exact.
 * The pin's own settings are left out; they are the tenant's, not the client's. Custom settings (app.*) are not in
 * pg_settings and are asked by name; an empty one is as good as unset.
 */
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

export interface ResetPlan {
  frame: Buffer;
  /** ReadyForQuery replies to swallow. */
  replies: number;
  /** The reset ends with the prepared-statement count the server must match (see RESET). */
  proof: boolean;
}

/** The reset run before a server may serve anyone else, after a ROLLBACK when a transaction was left open. */
export function planReset(server: ServerConn, inTransaction: boolean): ResetPlan {
  const discard = discardable(server);
  if (discard) server.statements.discarded();
  const frame = discard ? DISCARD : RESET;
  const replies = discard ? 2 : 1;
  return inTransaction
    ? { frame: Buffer.concat([ROLLBACK, frame]), replies: replies + 1, proof: !discard }
    : { frame, replies, proof: !discard };
}
