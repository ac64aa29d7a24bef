// Scripted request sequences for record-frames.mjs: per scenario, segments of frames tagged with who owes their replies.
// Plain data and a tiny encoder (no imports from src/), so the recorder runs on node alone and the unit test can
// compare these bytes with what the proxy's own code builds (test/unit/frame-fixtures.test.ts).

/** Who a segment's replies belong to; the reply ledger (src/backend/replies.ts) decides what happens to each. */
export const OWNERS = ['client', 'pin', 'reset', 'snapshot', 'reprepare', 'deallocate', 'refusal'];

const int16 = (n) => {
  const b = Buffer.alloc(2);
  b.writeInt16BE(n);
  return b;
};
const int32 = (n) => {
  const b = Buffer.alloc(4);
  b.writeInt32BE(n);
  return b;
};
const cstring = (s) => Buffer.from(`${s}\0`, 'utf8');

/** One frontend frame: code letter, int32 length, body. */
export function frame(code, ...parts) {
  const body = Buffer.concat(parts);
  return Buffer.concat([Buffer.from(code, 'latin1'), int32(body.length + 4), body]);
}

export const query = (sql) => frame('Q', cstring(sql));
export const parse = (name, sql, types = []) =>
  frame('P', cstring(name), cstring(sql), int16(types.length), ...types.map(int32));
/** Bind with text parameters (null: SQL NULL), no format codes, text results. */
export const bind = (portal, statement, params = []) =>
  frame(
    'B',
    cstring(portal),
    cstring(statement),
    int16(0),
    int16(params.length),
    ...params.flatMap((p) => (p === null ? [int32(-1)] : [int32(Buffer.byteLength(p)), Buffer.from(p, 'utf8')])),
    int16(0),
  );
export const describe = (kind, name) => frame('D', Buffer.from(kind, 'latin1'), cstring(name));
export const execute = (portal = '', maxRows = 0) => frame('E', cstring(portal), int32(maxRows));
export const close = (kind, name) => frame('C', Buffer.from(kind, 'latin1'), cstring(name));
export const sync = frame('S');
export const flush = frame('H');
export const copyData = (text) => frame('d', Buffer.from(text, 'utf8'));
export const copyDone = frame('c');
export const copyFail = (message) => frame('f', cstring(message));

/** Parse/Bind/Describe portal/Execute of an unnamed statement, as drivers send one statement. */
const extended = (sql, params = []) => [parse('', sql), bind('', '', params), describe('P', ''), execute()];

// ---- What the proxy sends besides the client's frames, spelled as in src/ (the unit test checks them) ----

/** backend/pin.ts unsynced(): unnamed Parse/Bind/Execute with no Sync. */
const unsynced = (sql) => [parse('', sql), bind('', ''), execute()];
/** backend/connect.ts NAME_UNPINNED_SERVER. */
const NAME_UNPINNED_SERVER = "SET application_name = 'pg-tenant-proxy'";
/** guard/analyze.ts SERVER_STATEMENT_PREFIX. */
const PREFIX = 'pgtp_s';

/** backend/pin.ts tenantMarker('tenant_a'): the shared advisory lock marking the server as tenant_a's. */
const MARKER_TENANT_A =
  'SELECT WHERE pg_catalog.pg_try_advisory_lock_shared(1885828208, ' +
  "(SELECT n.oid::pg_catalog.int4 FROM pg_catalog.pg_namespace n WHERE n.nspname = 'tenant_a')) IS NULL";

/** backend/pin.ts planPin(): BEGIN, the SETs (the marker after search_path), COMMIT, Close of the unnamed statement and portal, all unsynced. */
function pin(statements) {
  return [...unsynced('BEGIN'), ...statements.flatMap(unsynced), ...unsynced('COMMIT'), close('S', ''), close('P', '')];
}

/** Frames the proxy builds, by name; test/unit/frame-fixtures.test.ts compares each with src/. */
export const proxyFrames = {
  /** planPin(server, 'tenant_a', null, {}) on a server fresh from reset. */
  pinTenantA: Buffer.concat(pin(['SET search_path TO "tenant_a"', MARKER_TENANT_A])),
  /** planPin(server, 'tenant_a', 'tenant_a', {application_name: 'client-app', work_mem: '8MB'}) after a reset. */
  pinTenantARoleSettings: Buffer.concat(
    pin([
      'SET search_path TO "tenant_a"',
      MARKER_TENANT_A,
      'SET ROLE "tenant_a"',
      `SET "application_name" TO 'client-app'`,
      `SET "work_mem" TO '8MB'`,
    ]),
  ),
  /** planPin(server, 'tenant_a', 'tenant_gone', {}): a tenant role dropped meanwhile. */
  pinMissingRole: Buffer.concat(pin(['SET search_path TO "tenant_a"', MARKER_TENANT_A, 'SET ROLE "tenant_gone"'])),
  /** backend/pin.ts PIPELINED_RESET. */
  pipelinedReset: Buffer.concat(unsynced('DISCARD ALL')),
  /** planReset(server, false) for a server holding none of the proxy's statements (DISCARD). */
  resetDiscard: Buffer.concat([
    query("RESET ALL; SET statement_timeout = '5s'"),
    ...unsynced('DISCARD ALL'),
    ...unsynced(NAME_UNPINNED_SERVER),
    sync,
  ]),
  /** planReset(server, false) for a server that holds some (RESET, with its proof query). */
  resetKeepStatements: query(
    "RESET ALL; SET LOCAL lock_timeout = '2s'; SET LOCAL statement_timeout = '10s'; CLOSE ALL; " +
      `SET SESSION AUTHORIZATION DEFAULT; UNLISTEN *; DISCARD TEMP; DISCARD SEQUENCES; ${NAME_UNPINNED_SERVER}; ` +
      'SELECT pg_catalog.pg_advisory_unlock_all(), ' +
      `count(*) FILTER (WHERE name !~ '^${PREFIX}[0-9]+$'), count(*) FILTER (WHERE name ~ '^${PREFIX}[0-9]+$') ` +
      'FROM pg_catalog.pg_prepared_statements',
  ),
  /** planReset's ROLLBACK in front of the reset when the client left a transaction open. */
  rollback: query('ROLLBACK'),
  /** planSnapshot([]) and planSnapshot(['app.note']). */
  snapshot: query(
    'SELECT name, pg_catalog.current_setting(name) FROM pg_catalog.pg_settings ' +
      "WHERE source = 'session' AND name NOT IN ('search_path', 'role', 'session_authorization', 'is_superuser')",
  ),
  snapshotCustom: query(
    'SELECT name, pg_catalog.current_setting(name) FROM pg_catalog.pg_settings ' +
      "WHERE source = 'session' AND name NOT IN ('search_path', 'role', 'session_authorization', 'is_superuser')" +
      ' UNION ALL SELECT name, value FROM (SELECT name, pg_catalog.current_setting(name, true) AS value ' +
      "FROM pg_catalog.unnest(ARRAY['app.note']::text[]) AS name) AS custom WHERE value <> ''",
  ),
  /** planRestore({application_name: 'client-app'}). */
  restoreApplicationName: query(`SET "application_name" TO 'client-app'`),
  /** frontend/session.ts REFUSAL_QUERY and REFUSAL_PARSE. */
  refusalQuery: query('pg_tenant_proxy_refused_statement'),
  refusalParse: parse('', 'pg_tenant_proxy_refused_statement'),
  /** frontend/prepared.ts NO_OP_QUERY and NO_OP_PARSE: stand-ins for a DEALLOCATE the proxy answers itself. */
  deallocateQuery: query('UNLISTEN pgtp_deallocate'),
  deallocateParse: parse('', 'UNLISTEN pgtp_deallocate'),
  /** frontend/prepared.ts CLOSE_NOTHING_STATEMENT (for a client's Close) and CLOSE_NOTHING (for a shared Parse). */
  closeNothingStatement: close('S', `${PREFIX}none`),
  closeNothingPortal: close('P', `${PREFIX}none`),
};

/** For a second session: locks the newest temp table ho_t (another session's) until its connection ends. */
const lockOthersTempTable = [
  query('BEGIN'),
  query(
    "DO $$BEGIN EXECUTE (SELECT format('LOCK TABLE %I.ho_t IN ACCESS SHARE MODE', n.nspname) FROM pg_catalog.pg_class c " +
      "JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace WHERE c.relname = 'ho_t' ORDER BY c.oid DESC LIMIT 1); END$$",
  ),
];

/**
 * A scenario: `setup` runs first on the recorded connection (its replies are not kept and must hold no error),
 * `helper` on a second connection held open meanwhile (say, holding a lock), then `segments` are recorded.
 * A segment's `readies` is the number of ReadyForQuery it is answered with when that is not its Sync + Query count,
 * with `why`; `cancelAfterMs` sends a CancelRequest for the recorded connection that long after the segment is written.
 *
 * @type {import('./frame-scenarios.d.mts').Scenario[]}
 */
export const scenarios = [
  {
    name: 'simple-query',
    description: 'One autocommit simple Query.',
    segments: [{ owner: 'client', frames: [query('SELECT 1 AS one')] }],
  },
  {
    name: 'simple-multi-statement',
    description: 'Several statements in one simple Query: one ReadyForQuery at the end.',
    segments: [
      { owner: 'client', frames: [query("SELECT 1 AS one; SELECT 'two' AS two; CREATE TEMP TABLE mt (a int)")] },
    ],
  },
  {
    name: 'simple-multi-statement-error',
    description: 'The second of three statements fails: the third never runs, one ReadyForQuery.',
    segments: [
      { owner: 'client', frames: [query('SELECT 1 AS one; SELECT 1/0; SELECT 3 AS three')] },
      { owner: 'client', frames: [query('SELECT 4 AS four')] },
    ],
  },
  {
    name: 'pin-simple-query',
    description: "The pin (unsynced BEGIN/SET/COMMIT/Closes) and the client's simple Query in one write.",
    segments: [
      { owner: 'pin', frames: [proxyFrames.pinTenantA] },
      { owner: 'client', frames: [query('SELECT id, name FROM items ORDER BY id')] },
    ],
  },
  {
    name: 'pin-extended',
    description: "The pin and the client's extended batch (Parse/Bind/Describe/Execute/Sync) in one write.",
    segments: [
      { owner: 'pin', frames: [proxyFrames.pinTenantA] },
      { owner: 'client', frames: [...extended('SELECT name FROM items WHERE id = $1', ['2']), sync] },
    ],
  },
  {
    name: 'pin-role-settings',
    description: 'A pin with SET ROLE and client settings (application_name is reported: ParameterStatus in the pin).',
    segments: [
      { owner: 'pin', frames: [proxyFrames.pinTenantARoleSettings] },
      { owner: 'client', frames: [query('SELECT current_user, current_setting($$work_mem$$)')] },
    ],
  },
  {
    name: 'pin-failed-then-query',
    description:
      "The pin's SET ROLE fails (role gone): PostgreSQL skips up to a Sync, the client's simple Query included.",
    segments: [
      { owner: 'pin', frames: [proxyFrames.pinMissingRole] },
      {
        owner: 'client',
        frames: [query('SELECT id, name FROM items ORDER BY id')],
        readies: 0,
        why: 'skipped: after an extended-protocol error PostgreSQL discards every message up to a Sync, a Query too',
      },
    ],
  },
  {
    name: 'pin-failed-then-extended',
    description:
      "The pin's SET ROLE fails: the client's batch is skipped up to its Sync; the pin's BEGIN left it aborted.",
    segments: [
      { owner: 'pin', frames: [proxyFrames.pinMissingRole] },
      { owner: 'client', frames: [...extended('SELECT id, name FROM items ORDER BY id'), sync] },
      { owner: 'client', frames: [query('ROLLBACK')] },
    ],
  },
  {
    name: 'extended-pipelined-error',
    description:
      'Three Sync-terminated batches, the middle one fails at Execute: its Close is skipped, the third runs.',
    segments: [
      { owner: 'client', frames: [...extended('SELECT 1 AS one'), sync] },
      { owner: 'client', frames: [...extended('SELECT 1/0 AS boom'), close('S', ''), sync] },
      { owner: 'client', frames: [...extended('SELECT 3 AS three'), sync] },
    ],
  },
  {
    name: 'extended-parse-error-pipelined',
    description: 'A batch whose Parse fails (unknown table): Bind/Describe/Execute skipped to the Sync.',
    segments: [
      { owner: 'client', frames: [...extended('SELECT * FROM no_such_table'), sync] },
      { owner: 'client', frames: [...extended('SELECT 2 AS two'), sync] },
    ],
  },
  {
    name: 'extended-flush-then-sync',
    description: 'A batch ended by Flush (replies come without ReadyForQuery), its Sync sent later.',
    segments: [
      { owner: 'client', frames: [...extended('SELECT 1 AS one'), flush] },
      { owner: 'client', frames: [sync] },
    ],
  },
  {
    name: 'extended-portal-suspended',
    description: 'Execute with a row limit: PortalSuspended, then the rest of the portal.',
    segments: [
      {
        owner: 'client',
        frames: [
          parse('', 'SELECT g FROM generate_series(1, 3) g'),
          bind('', ''),
          execute('', 2),
          execute('', 0),
          sync,
        ],
      },
    ],
  },
  {
    name: 'copy-from-stdin-simple',
    description: 'COPY FROM STDIN by simple Query: CopyInResponse, then data and CopyDone, one ReadyForQuery.',
    setup: [query('CREATE TEMP TABLE copy_in (id int, name text)')],
    segments: [
      {
        owner: 'client',
        frames: [query('COPY copy_in FROM STDIN')],
        readies: 0,
        why: 'the ReadyForQuery of a COPY FROM STDIN comes after its CopyDone',
      },
      {
        owner: 'client',
        frames: [copyData('1\tone\n'), copyData('2\ttwo\n'), copyDone],
        readies: 1,
        why: 'the COPY Query',
      },
      { owner: 'client', frames: [query('SELECT count(*) FROM copy_in')] },
    ],
  },
  {
    name: 'copy-from-stdin-simple-fail',
    description: 'COPY FROM STDIN by simple Query ended by CopyFail: ErrorResponse 57014, ReadyForQuery.',
    setup: [query('CREATE TEMP TABLE copy_in (id int, name text)')],
    segments: [
      {
        owner: 'client',
        frames: [query('COPY copy_in FROM STDIN')],
        readies: 0,
        why: 'the ReadyForQuery of a COPY FROM STDIN comes after its CopyFail',
      },
      {
        owner: 'client',
        frames: [copyData('1\tone\n'), copyFail('client gave up')],
        readies: 1,
        why: 'the COPY Query',
      },
    ],
  },
  {
    name: 'copy-from-stdin-extended',
    description:
      'COPY FROM STDIN by Parse/Bind/Execute/Sync: the Sync sent before the data is ignored in copy-in mode, ' +
      'so the client syncs again after CopyDone.',
    setup: [query('CREATE TEMP TABLE copy_in (id int, name text)')],
    segments: [
      {
        owner: 'client',
        frames: [...extended('COPY copy_in FROM STDIN'), sync],
        readies: 0,
        why: 'a Sync during copy-in mode is ignored',
      },
      { owner: 'client', frames: [copyData('1\tone\n'), copyDone, sync] },
      { owner: 'client', frames: [query('SELECT count(*) FROM copy_in')] },
    ],
  },
  {
    name: 'copy-from-stdin-extended-fail',
    description: 'COPY FROM STDIN by extended protocol ended by CopyFail: error, then skip to the next Sync.',
    setup: [query('CREATE TEMP TABLE copy_in (id int, name text)')],
    segments: [
      {
        owner: 'client',
        frames: [...extended('COPY copy_in FROM STDIN'), sync],
        readies: 0,
        why: 'a Sync during copy-in mode is ignored',
      },
      { owner: 'client', frames: [copyData('1\tone\n'), copyFail('client gave up'), sync] },
    ],
  },
  {
    name: 'copy-to-stdout',
    description: 'COPY TO STDOUT by simple Query and by extended protocol.',
    segments: [
      { owner: 'client', frames: [query('COPY (SELECT g, g * 2 FROM generate_series(1, 3) g) TO STDOUT')] },
      { owner: 'client', frames: [...extended('COPY (SELECT 1, 2) TO STDOUT'), sync] },
    ],
  },
  {
    name: 'refusal-in-transaction',
    description: 'The refusal sentinel as a Query inside a transaction: syntax error, the transaction fails too.',
    segments: [
      { owner: 'client', frames: [query('BEGIN')] },
      { owner: 'client', frames: [query('SELECT 1 AS one')] },
      { owner: 'refusal', frames: [proxyFrames.refusalQuery] },
      { owner: 'client', frames: [query('SELECT 2 AS two')] },
      { owner: 'client', frames: [query('ROLLBACK')] },
    ],
  },
  {
    name: 'refusal-extended',
    description: "The sentinel Parse in an extended batch, in place of a client's Parse: the rest skipped to Sync.",
    segments: [
      { owner: 'client', frames: [...extended('SELECT 1 AS one')] },
      { owner: 'refusal', frames: [proxyFrames.refusalParse] },
      { owner: 'client', frames: [bind('', ''), describe('P', ''), execute(), sync] },
      { owner: 'client', frames: [...extended('SELECT 2 AS two'), sync] },
    ],
  },
  {
    name: 'refusal-extended-in-transaction',
    description: 'The sentinel Parse inside an explicit transaction: the batch fails and the transaction with it.',
    segments: [
      { owner: 'client', frames: [query('BEGIN')] },
      { owner: 'refusal', frames: [proxyFrames.refusalParse] },
      { owner: 'client', frames: [bind('', ''), execute(), sync] },
      { owner: 'client', frames: [query('ROLLBACK')] },
    ],
  },
  {
    name: 'hand-over',
    description: 'A server handed straight to a waiting client: PIPELINED_RESET, the pin, the client batch, one write.',
    setup: [query("SET work_mem = '16MB'; CREATE TEMP TABLE left_behind (a int)")],
    segments: [
      { owner: 'reset', frames: [proxyFrames.pipelinedReset] },
      { owner: 'pin', frames: [proxyFrames.pinTenantA] },
      {
        owner: 'client',
        frames: [...extended('SELECT current_setting($$work_mem$$), name FROM items WHERE id = 1'), sync],
      },
    ],
  },
  {
    name: 'hand-over-query',
    description: 'A hand-over whose queued segment is a simple Query (frontend/pipelinable.ts allows one).',
    segments: [
      { owner: 'reset', frames: [proxyFrames.pipelinedReset] },
      { owner: 'pin', frames: [proxyFrames.pinTenantA] },
      { owner: 'client', frames: [query('SELECT name FROM items WHERE id = 1')] },
    ],
  },
  {
    name: 'hand-over-reset-fails',
    description:
      "The hand-over's DISCARD ALL waits on a lock (another session holds one on its temp table) and " +
      'is cancelled, as the pool does after HAND_OVER_DEADLINE_MS: 57014, then pin and client batch skipped to its Sync.',
    setup: [query('CREATE TEMP TABLE ho_t (a int)')],
    helper: lockOthersTempTable,
    segments: [
      { owner: 'reset', frames: [proxyFrames.pipelinedReset], cancelAfterMs: 400 },
      { owner: 'pin', frames: [proxyFrames.pinTenantA] },
      { owner: 'client', frames: [...extended('SELECT name FROM items WHERE id = 1'), sync] },
    ],
  },
  {
    name: 'hand-over-reset-fails-query',
    description: 'As hand-over-reset-fails, with a simple Query queued: skipped with the rest, no ReadyForQuery.',
    setup: [query('CREATE TEMP TABLE ho_t (a int)')],
    helper: lockOthersTempTable,
    segments: [
      { owner: 'reset', frames: [proxyFrames.pipelinedReset], cancelAfterMs: 400 },
      { owner: 'pin', frames: [proxyFrames.pinTenantA] },
      {
        owner: 'client',
        frames: [query('SELECT name FROM items WHERE id = 1')],
        readies: 0,
        why: 'skipped: PostgreSQL discards every message up to a Sync after the failed DISCARD ALL, a Query too',
      },
    ],
  },
  {
    name: 'reset-discard',
    description:
      'The reset of a server released to the pool (DISCARD form: Query, unsynced DISCARD ALL and SET, Sync).',
    setup: [query("SET work_mem = '16MB'; SET application_name = 'previous-client'")],
    segments: [{ owner: 'reset', frames: [proxyFrames.resetDiscard] }],
  },
  {
    name: 'reset-keep-statements',
    description: "The reset of a server that holds the proxy's prepared statements (RESET form with its proof query).",
    setup: [parse(`${PREFIX}1`, 'SELECT 1'), sync, query("SET work_mem = '16MB'; LISTEN somewhere")],
    segments: [{ owner: 'reset', frames: [proxyFrames.resetKeepStatements] }],
  },
  {
    name: 'reset-after-open-transaction',
    description: 'A client left in a failed transaction: ROLLBACK then the DISCARD reset.',
    segments: [
      { owner: 'client', frames: [query('BEGIN')] },
      { owner: 'client', frames: [query('SELECT 1/0')] },
      { owner: 'reset', frames: [proxyFrames.rollback] },
      { owner: 'reset', frames: [proxyFrames.resetDiscard] },
    ],
  },
  {
    name: 'settings-snapshot',
    description: "After a client's SET, the proxy's snapshot query; with a custom setting; then a RESET and restore.",
    segments: [
      { owner: 'client', frames: [query("SET application_name = 'client-app'; SET work_mem = '8MB'")] },
      { owner: 'snapshot', frames: [proxyFrames.snapshot] },
      { owner: 'client', frames: [query("SET app.note = 'hello'")] },
      { owner: 'snapshot', frames: [proxyFrames.snapshotCustom] },
      { owner: 'client', frames: [query('RESET application_name')] },
      { owner: 'snapshot', frames: [proxyFrames.snapshot] },
      { owner: 'snapshot', frames: [proxyFrames.restoreApplicationName] },
    ],
  },
  {
    name: 'deallocate-query',
    description: "A client's SQL DEALLOCATE of a protocol-prepared statement, replaced by the no-op Query.",
    segments: [
      { owner: 'deallocate', frames: [proxyFrames.deallocateQuery] },
      { owner: 'client', frames: [query('SELECT 1 AS one')] },
    ],
  },
  {
    name: 'deallocate-parse',
    description: 'DEALLOCATE sent as an unnamed Parse (psycopg, Rails): the no-op Parse, the client Bind/Execute/Sync.',
    segments: [
      { owner: 'deallocate', frames: [proxyFrames.deallocateParse] },
      { owner: 'client', frames: [bind('', ''), describe('P', ''), execute(), sync] },
    ],
  },
  {
    name: 'deallocate-in-failed-transaction',
    description: 'The no-op fails with 25P02 in an aborted transaction, as DEALLOCATE would.',
    segments: [
      { owner: 'client', frames: [query('BEGIN')] },
      { owner: 'client', frames: [query('SELECT 1/0')] },
      { owner: 'deallocate', frames: [proxyFrames.deallocateQuery] },
      { owner: 'client', frames: [query('ROLLBACK')] },
    ],
  },
  {
    name: 'close-substitution',
    description: "A client's Close of a statement the proxy keeps: a Close of a statement no server has, then Sync.",
    setup: [parse(`${PREFIX}1`, 'SELECT 1'), sync],
    segments: [
      { owner: 'deallocate', frames: [proxyFrames.closeNothingStatement] },
      { owner: 'client', frames: [sync] },
    ],
  },
  {
    name: 'shared-parse-stand-in',
    description:
      "A client's Parse of a text the server already holds: a Close of no portal stands in (its CloseComplete is " +
      "sent as ParseComplete), then the client's Bind rewritten to the server name.",
    setup: [parse(`${PREFIX}2`, 'SELECT $1::int + 1 AS next', [23]), sync],
    segments: [
      { owner: 'client', frames: [proxyFrames.closeNothingPortal] },
      { owner: 'client', frames: [bind('', `${PREFIX}2`, ['41']), describe('P', ''), execute(), sync] },
    ],
  },
  {
    name: 'reprepare',
    description: "A statement the client prepared on another server: the proxy's Parse in front of the client's Bind.",
    segments: [
      { owner: 'reprepare', frames: [parse(`${PREFIX}7`, 'SELECT $1::int + 1 AS next', [23])] },
      { owner: 'client', frames: [bind('', `${PREFIX}7`, ['41']), describe('P', ''), execute(), sync] },
    ],
  },
  {
    name: 'reprepare-fails',
    description: "The re-prepare fails (the table is gone): the client's Bind is skipped to its Sync.",
    segments: [
      { owner: 'reprepare', frames: [parse(`${PREFIX}8`, 'SELECT * FROM gone_table')] },
      { owner: 'client', frames: [bind('', `${PREFIX}8`), execute(), sync] },
    ],
  },
  {
    name: 'stale-plan-retry',
    description:
      'A shared statement whose table changed type under it: 0A000 cached plan must not change result type; the ' +
      "proxy's Close + Parse under the same name, then the client's segment replayed (stale-plan-retry.ts).",
    setup: [
      query('CREATE TEMP TABLE stale_t (a int); INSERT INTO stale_t VALUES (1)'),
      parse(`${PREFIX}3`, 'SELECT * FROM stale_t'),
      sync,
      query('ALTER TABLE stale_t ALTER a TYPE text'),
    ],
    segments: [
      { owner: 'client', frames: [bind('', `${PREFIX}3`), execute(), sync] },
      { owner: 'reprepare', frames: [close('S', `${PREFIX}3`), parse(`${PREFIX}3`, 'SELECT * FROM stale_t')] },
      { owner: 'client', frames: [bind('', `${PREFIX}3`), execute(), sync] },
    ],
  },
  {
    name: 'cancel-mid-batch',
    description: 'A pg_sleep batch cancelled from a second socket (57014); the batches pipelined behind it still run.',
    segments: [
      { owner: 'client', frames: [...extended('SELECT pg_sleep(30)'), sync], cancelAfterMs: 400 },
      { owner: 'client', frames: [...extended('SELECT 2 AS two'), sync] },
      { owner: 'client', frames: [query('SELECT 3 AS three')] },
    ],
  },
  {
    name: 'notice-and-parameter-status',
    description:
      'NOTICE from a DO block, ParameterStatus from SET application_name, and SET search_path (reported by PG18).',
    segments: [
      {
        owner: 'client',
        frames: [
          query(
            "DO $$BEGIN RAISE NOTICE 'first notice'; END$$; SET application_name = 'renamed'; " +
              'SET search_path = tenant_a, public; SELECT 1 AS one',
          ),
        ],
      },
      {
        owner: 'client',
        frames: [
          ...extended("DO $$BEGIN RAISE NOTICE 'extended notice'; END$$"),
          ...extended('SET search_path = public'),
          sync,
        ],
      },
      { owner: 'client', frames: [query('ROLLBACK')] },
    ],
  },
  {
    name: 'listen-notify',
    description: 'A NotificationResponse after the NOTIFY commits (its sender pid normalised in comparisons).',
    segments: [{ owner: 'client', frames: [query("LISTEN ch; NOTIFY ch, 'payload'")] }],
  },
];

// ---- Comparing replies (shared by the recorder and test/support/frame-fixtures.ts) ----

/** Reply values that differ between two connections to the same server; comparableReply zeroes them. */
export const VARIES = [
  'BackendKeyData (K): process id and secret key',
  'NotificationResponse (A): the notifying process id (first 4 bytes)',
  "RowDescription (T): each column's table OID (temp tables are created anew per connection)",
];

/** A reply payload as hex with the values of VARIES zeroed: equal for the same reply on any connection. */
export function comparableReply(code, payload) {
  const p = Buffer.from(payload);
  if (code === 'K') p.fill(0);
  else if (code === 'A') p.fill(0, 0, 4);
  else if (code === 'T') {
    for (let i = 0, at = 2; i < p.readInt16BE(0); i++) {
      at = p.indexOf(0, at) + 1;
      p.fill(0, at, at + 4);
      at += 18;
    }
  }
  return p.toString('hex');
}
