// Cross-tenant attacks by a client holding tenant a's token, against the guard alone, the database roles alone, and both.
//
// Every attempt is a short script of statements sent by tenant a. Each statement has the exact outcome expected in
// each mode: refused by the guard (42501 and the guard's message), refused by PostgreSQL (its SQLSTATE and message),
// or executed with nothing of tenant b in the result. After every attempt an admin connection checks that tenant b's
// rows, sequence, grants and schema are what they were, and tenant a's connection checks its pin still holds.
//
// Where a mode is *expected* to let something through, the expectation says so in a comment. Where an attempt reaches
// tenant b in a mode where it must not (a bypass), the expectation stays the right one and the test fails.

import pg from 'pg';
import postgres from 'postgres';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, inject, it } from 'vitest';
import { readErrorFields } from '../../src/protocol/messages.js';
import { Writer } from '../../src/protocol/writer.js';
import { withDatabase } from '../support/postgres.js';
import { RawClient, type RawMessage } from '../support/raw-client.js';
import { startTestProxy, type TestProxy } from '../support/proxy.js';

// ── Modes ─────────────────────────────────────────────────────────────────────

type ModeKey = 'guard' | 'roles' | 'both';

interface Mode {
  key: ModeKey;
  title: string;
  roles: boolean;
  checkNames: boolean;
}

const MODES: Mode[] = [
  { key: 'guard', title: 'guard on, roles off (shared test database)', roles: false, checkNames: true },
  { key: 'roles', title: 'roles on, guard name checks off (roles database)', roles: true, checkNames: false },
  { key: 'both', title: 'guard and roles on (roles database)', roles: true, checkNames: true },
];

interface Ctx {
  mode: Mode;
  tp: TestProxy;
  admin: pg.Client;
  database: string;
  /** current_user of tenant a's statements: the proxy's login role without roles, tenant_a with them. */
  user: string;
  baseline: TenantBState;
}

// ── Expectations ──────────────────────────────────────────────────────────────

type Rows = Record<string, unknown>[];

type Expect =
  /** Refused by the proxy's guard: this SQLSTATE and the guard's own message. */
  | { kind: 'guard'; code: string }
  /** Refused by PostgreSQL itself: this SQLSTATE and a server message. */
  | { kind: 'db'; code: string }
  /** Refused with this SQLSTATE by either line. */
  | { kind: 'refused'; code: string }
  /** Executed; nothing of tenant b in the result, and `check` holds. */
  | { kind: 'ok'; check?: (results: Rows[], ctx: Ctx, context: string) => void }
  /** Executed or refused, as long as nothing of tenant b shows (used where either answer is a correct defence). */
  | { kind: 'any' };

type PerMode = Expect | Record<ModeKey, Expect>;

const GUARD: Expect = { kind: 'guard', code: '42501' };
const db = (code: string): Expect => ({ kind: 'db', code });
const DENIED = db('42501');
const REFUSED: Expect = { kind: 'refused', code: '42501' };
const OK: Expect = { kind: 'ok' };
const ANY: Expect = { kind: 'any' };
const ok = (check: (results: Rows[], ctx: Ctx, context: string) => void): Expect => ({ kind: 'ok', check });
const per = (guard: Expect, roles: Expect, both: Expect): PerMode => ({ guard, roles, both });
/** A name outside the tenant's schema: the guard refuses it where it checks names; elsewhere PostgreSQL does, because tenant_a's role has no USAGE on schema tenant_b. */
const NAMED = per(GUARD, DENIED, GUARD);
/** The step after a CREATE that was refused: the function or operator does not exist. */
const UNDEFINED_FUNCTION = db('42883');

/** Strings that only tenant b's data (rows, or its session's query text) contains. */
const B_MARKERS = ['b-one', 'b-two', 'b-three', 'secret-b'];

function forMode(expected: PerMode, mode: ModeKey): Expect {
  return 'kind' in expected ? expected : expected[mode];
}

type Outcome = { ok: true; results: Rows[] } | { ok: false; code: string; message: string };

const GUARD_MESSAGE = /pg-tenant-proxy|is outside the tenant's schema/;

function summary(outcome: Outcome): string {
  if (outcome.ok) return 'executed';
  return `refused ${outcome.code} by ${GUARD_MESSAGE.test(outcome.message) ? 'the guard' : 'PostgreSQL'}`;
}

function leaksOfB(results: unknown): string[] {
  const text = JSON.stringify(results);
  return B_MARKERS.filter((m) => text.includes(m));
}

/** Soft-asserts one statement's outcome against what this mode expects; never stops the script. */
function judge(ctx: Ctx, what: string, expected: PerMode, outcome: Outcome): void {
  const want = forMode(expected, ctx.mode.key);
  const detail = outcome.ok ? JSON.stringify(outcome.results).slice(0, 500) : outcome.message;
  const context = `[${ctx.mode.key}] ${what}\n      → ${detail}`;
  const got = summary(outcome);
  switch (want.kind) {
    case 'guard':
      expect.soft(got, context).toBe(`refused ${want.code} by the guard`);
      break;
    case 'db':
      expect.soft(got, context).toBe(`refused ${want.code} by PostgreSQL`);
      break;
    case 'refused':
      expect.soft(outcome.ok ? 'executed' : `refused ${outcome.code}`, context).toBe(`refused ${want.code}`);
      break;
    case 'ok':
      expect.soft(got, context).toBe('executed');
      if (outcome.ok && want.check) want.check(outcome.results, ctx, context);
      break;
    case 'any':
      break;
  }
  if (outcome.ok)
    expect.soft(leaksOfB(outcome.results), `${context}\n      (tenant b's data in the result)`).toEqual([]);
}

// ── Running statements ────────────────────────────────────────────────────────

async function runSql(client: pg.Client, sql: string | pg.QueryConfig, values?: unknown[]): Promise<Outcome> {
  try {
    const r = (await client.query(sql as string, values)) as unknown as pg.QueryResult | pg.QueryResult[];
    return { ok: true, results: (Array.isArray(r) ? r : [r]).map((x) => x.rows as Rows) };
  } catch (err) {
    const e = err as { code?: string; message: string };
    return { ok: false, code: e.code ?? 'none', message: e.message };
  }
}

/** A client for tenant a (or b) whose liveness is tracked: the proxy may end a session it no longer trusts. */
async function connect(
  ctx: Ctx,
  tenant: string,
  extra?: Partial<pg.ClientConfig>,
): Promise<{ client: pg.Client; alive: () => boolean }> {
  const client = await ctx.tp.connect(tenant, extra);
  let ended = false;
  client.on('end', () => (ended = true));
  return { client, alive: () => !ended };
}

/** Tenant a's pin: its own schema, its own role, its own rows. */
async function assertPinned(ctx: Ctx, client: pg.Client, what: string): Promise<void> {
  const outcome = await runSql(
    client,
    "SELECT current_user AS u, current_schema() AS s, string_agg(name, ',' ORDER BY id) AS names FROM items WHERE id IN (1, 2)",
  );
  expect.soft(outcome, `[${ctx.mode.key}] ${what}: tenant a's pin afterwards`).toEqual({
    ok: true,
    results: [[{ u: ctx.user, s: 'tenant_a', names: 'a-one,a-two' }]],
  });
}

// ── Tenant b's state, seen by an admin ────────────────────────────────────────

interface TenantBState {
  items: string;
  seq: string;
  schemaAcl: string | null;
  itemsAcl: string | null;
  columns: string;
  planted: string | null;
}

async function snapshotB(admin: pg.Client): Promise<TenantBState> {
  const { rows } = await admin.query(`
    SELECT (SELECT json_agg(json_build_object('id', id, 'name', name) ORDER BY id) FROM tenant_b.items)::text AS items,
           (SELECT last_value || '/' || is_called FROM tenant_b.seq) AS seq,
           (SELECT nspacl::text FROM pg_namespace WHERE nspname = 'tenant_b') AS "schemaAcl",
           (SELECT relacl::text FROM pg_class WHERE oid = 'tenant_b.items'::regclass) AS "itemsAcl",
           (SELECT string_agg(attname, ',' ORDER BY attnum) FROM pg_attribute
             WHERE attrelid = 'tenant_b.items'::regclass AND attnum > 0 AND NOT attisdropped) AS columns,
           (SELECT string_agg(relname, ',' ORDER BY relname) FROM pg_class
             WHERE relnamespace = 'tenant_b'::regnamespace AND relname LIKE 'iso%') AS planted`);
  return rows[0] as TenantBState;
}

/** Puts tenant b back as it was, whatever an attempt did to it, so one bypass does not spill into the next test. */
async function restoreB(admin: pg.Client, baseline: TenantBState): Promise<void> {
  const now = await snapshotB(admin);
  if (now.items !== baseline.items) {
    await admin.query('DELETE FROM tenant_b.items');
    await admin.query('INSERT INTO tenant_b.items SELECT * FROM json_populate_recordset(NULL::tenant_b.items, $1)', [
      baseline.items,
    ]);
  }
  if (now.seq !== baseline.seq) {
    const [value, called] = baseline.seq.split('/');
    await admin.query('SELECT setval($1::regclass, $2::bigint, $3::boolean)', ['tenant_b.seq', value, called]);
  }
  if (now.columns !== baseline.columns) {
    for (const column of now.columns.split(',').filter((c) => !baseline.columns.split(',').includes(c))) {
      await admin.query(`ALTER TABLE tenant_b.items DROP COLUMN ${pg.escapeIdentifier(column)}`);
    }
  }
}

/**
 * Drops what attempts create (everything named iso* in tenant_a, any operator there, anything iso* planted in
 * tenant_b), then recreates the scratch table isofix_sink owned by tenant a's role.
 */
async function cleanup(ctx: { admin: pg.Client; mode: Mode }): Promise<void> {
  await ctx.admin.query(`
    DO $$
    DECLARE cmd text;
    BEGIN
      FOREACH cmd IN ARRAY coalesce((
        SELECT array_agg(format('DROP %s IF EXISTS %s CASCADE',
                 CASE p.prokind WHEN 'a' THEN 'AGGREGATE' WHEN 'p' THEN 'PROCEDURE' ELSE 'FUNCTION' END,
                 p.oid::regprocedure::text))
          FROM pg_proc p WHERE p.pronamespace = 'tenant_a'::regnamespace AND p.proname LIKE 'iso%'), '{}') ||
        coalesce((
        SELECT array_agg(format('DROP OPERATOR IF EXISTS %s CASCADE', o.oid::regoperator::text))
          FROM pg_operator o WHERE o.oprnamespace = 'tenant_a'::regnamespace), '{}') ||
        coalesce((
        SELECT array_agg(format('DROP %s IF EXISTS %I.%I CASCADE',
                 CASE c.relkind WHEN 'v' THEN 'VIEW' WHEN 'm' THEN 'MATERIALIZED VIEW' WHEN 'S' THEN 'SEQUENCE' ELSE 'TABLE' END,
                 n.nspname, c.relname))
          FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
         WHERE n.nspname IN ('tenant_a', 'tenant_b') AND c.relname LIKE 'iso%' AND c.relkind IN ('r', 'v', 'm', 'S', 'p')), '{}')
      LOOP
        EXECUTE cmd;
      END LOOP;
    END $$`);
  const owner = ctx.mode.roles ? 'tenant_a' : inject('pg').proxyRole;
  await ctx.admin.query(
    `CREATE TABLE tenant_a.isofix_sink (id int, name text); ALTER TABLE tenant_a.isofix_sink OWNER TO ${pg.escapeIdentifier(owner)}`,
  );
}

// ── Raw protocol ──────────────────────────────────────────────────────────────

const frames = {
  query(sql: string | Buffer): Buffer {
    const w = new Writer().begin(0x51);
    if (typeof sql === 'string') w.cstring(sql);
    else w.bytes(sql).int8(0);
    return w.end().flush();
  },
  parse(sql: string, name = '', types: number[] = []): Buffer {
    const w = new Writer().begin(0x50).cstring(name).cstring(sql).int16(types.length);
    for (const oid of types) w.int32(oid);
    return w.end().flush();
  },
  bind(params: string[] = [], statement = ''): Buffer {
    const w = new Writer().begin(0x42).cstring('').cstring(statement).int16(0).int16(params.length);
    for (const p of params) {
      const bytes = Buffer.from(p);
      w.int32(bytes.length).bytes(bytes);
    }
    return w.int16(0).end().flush();
  },
  describePortal(): Buffer {
    return new Writer().begin(0x44).int8(0x50).cstring('').end().flush();
  },
  execute(): Buffer {
    return new Writer().begin(0x45).cstring('').int32(0).end().flush();
  },
  sync(): Buffer {
    return new Writer().begin(0x53).end().flush();
  },
  copyData(text: string): Buffer {
    return new Writer().begin(0x64).bytes(Buffer.from(text)).end().flush();
  },
  copyDone(): Buffer {
    return new Writer().begin(0x63).end().flush();
  },
  /** FunctionCall by OID, text arguments and result. */
  functionCall(oid: number, args: string[]): Buffer {
    const w = new Writer().begin(0x46).int32(oid).int16(1).int16(0).int16(args.length);
    for (const a of args) {
      const bytes = Buffer.from(a);
      w.int32(bytes.length).bytes(bytes);
    }
    return w.int16(0).end().flush();
  },
};

async function rawSession(
  ctx: Ctx,
  tenant: string,
  params: Record<string, string> = {},
): Promise<{ raw: RawClient; outcome: Outcome }> {
  const raw = await RawClient.connect(ctx.tp.port);
  raw.startup({ user: 'app', database: ctx.database, tenant_token: await ctx.tp.token(tenant), ...params });
  await waitForMessages(raw, 0, (ms) => ms.some((m) => m.code === 'Z' || m.code === 'E'));
  return { raw, outcome: rawOutcome(raw.messages) };
}

async function waitForMessages(
  raw: RawClient,
  from: number,
  done: (ms: RawMessage[]) => boolean,
  timeoutMs = 10_000,
): Promise<RawMessage[]> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const ms = raw.messages.slice(from);
    if (done(ms) || raw.closed) return ms;
    if (Date.now() > deadline) throw new Error(`timed out; got ${ms.map((m) => m.code).join('')}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

/** Writes the frames and collects what comes back up to the `readies`-th ReadyForQuery. */
async function exchange(raw: RawClient, payload: Buffer[], readies = 1): Promise<RawMessage[]> {
  const from = raw.messages.length;
  raw.write(Buffer.concat(payload));
  return waitForMessages(raw, from, (ms) => ms.filter((m) => m.code === 'Z').length >= readies);
}

function errorOf(m: RawMessage): { code: string; message: string } {
  const framed = Buffer.concat([Buffer.from([0x45, 0, 0, 0, 0]), m.body]);
  return readErrorFields(framed, 0, framed.length);
}

function dataRow(body: Buffer): Record<string, unknown> {
  const n = body.readInt16BE(0);
  const row: Record<string, unknown> = {};
  let at = 2;
  for (let i = 0; i < n; i++) {
    const len = body.readInt32BE(at);
    at += 4;
    row[`c${i}`] = len < 0 ? null : body.toString('utf8', at, at + len);
    if (len > 0) at += len;
  }
  return row;
}

/** The first ErrorResponse, else every DataRow and CopyData as rows. */
function rawOutcome(ms: RawMessage[]): Outcome {
  const error = ms.find((m) => m.code === 'E');
  const rows: Rows = ms.flatMap((m) =>
    m.code === 'D' ? [dataRow(m.body)] : m.code === 'd' ? [{ copy: m.body.toString('utf8') }] : [],
  );
  if (error !== undefined) {
    // Rows before the error still count: they reached the client.
    const { code, message } = errorOf(error);
    if (rows.length > 0) expect.soft(leaksOfB(rows), `rows sent before the error "${message}"`).toEqual([]);
    return { ok: false, code, message };
  }
  return { ok: true, results: [rows] };
}

function readyStatus(ms: RawMessage[]): string[] {
  return ms.filter((m) => m.code === 'Z').map((m) => String.fromCharCode(m.body[0]!));
}

// ── The attempts ──────────────────────────────────────────────────────────────

interface Step {
  sql: string | ((ctx: Ctx) => string);
  values?: unknown[];
  /** node-postgres named statement (Parse with a name). */
  name?: string;
  expect: PerMode;
}

interface Attempt {
  category: string;
  name: string;
  steps?: Step[];
  /** Attempts that need the raw protocol, a second session or startup parameters. */
  run?: (ctx: Ctx) => Promise<void>;
}

const s = (sql: Step['sql'], expected: PerMode, values?: unknown[]): Step => ({ sql, expect: expected, values });

/** Rows of a result, for checks. */
const only = (results: Rows[], i = 0): Rows => results[i] ?? [];

const ATTEMPTS: Attempt[] = [
  // ── Controls: what tenant a may do in every mode ──
  {
    category: 'controls',
    name: "tenant a's own schema, qualified, and the catalogs",
    // Naming tenant_a itself is fine in every mode: the guard allows the tenant's own schema, and tenant_a's role owns it.
    steps: [
      s(
        'SELECT name FROM tenant_a.items WHERE id IN (1, 2) ORDER BY id',
        ok((r, _ctx, c) => expect.soft(only(r), c).toEqual([{ name: 'a-one' }, { name: 'a-two' }])),
      ),
      s(
        "SELECT nextval('tenant_a.seq') >= 1000 AS mine, 'tenant_a.items'::regclass::text AS rel",
        ok((r, _ctx, c) => expect.soft(only(r), c).toEqual([{ mine: true, rel: 'items' }])),
      ),
      s(
        'CREATE TABLE tenant_a.iso_own (x int); INSERT INTO iso_own VALUES (1); SELECT count(*)::int AS n FROM tenant_a.iso_own',
        ok((r, _ctx, c) => expect.soft(only(r, 2), c).toEqual([{ n: 1 }])),
      ),
      s('SELECT count(*) > 0 AS yes FROM pg_catalog.pg_class, information_schema.schemata LIMIT 1', OK),
    ],
  },

  // ── Qualified names in every clause ──
  { category: 'names', name: 'FROM', steps: [s('SELECT * FROM tenant_b.items', NAMED)] },
  { category: 'names', name: 'quoted identifiers', steps: [s('SELECT * FROM "tenant_b"."items"', NAMED)] },
  {
    category: 'names',
    name: 'upper-case unquoted (folds to tenant_b)',
    steps: [s('SELECT * FROM TENANT_B.ITEMS', NAMED)],
  },
  { category: 'names', name: 'U& escaped identifier', steps: [s('SELECT * FROM U&"tenant\\005fb".items', NAMED)] },
  {
    category: 'names',
    name: 'quoted upper-case is another, missing schema',
    // "TENANT_B" is not tenant_b: without name checks PostgreSQL just finds no such relation (42P01).
    steps: [s('SELECT * FROM "TENANT_B".items', per(GUARD, db('42P01'), GUARD))],
  },
  {
    category: 'names',
    name: 'JOIN',
    steps: [s('SELECT a.name, b.name FROM items a JOIN tenant_b.items b ON b.id = a.id', NAMED)],
  },
  {
    category: 'names',
    name: 'subquery in WHERE',
    steps: [s('SELECT name FROM items WHERE id IN (SELECT id FROM tenant_b.items)', NAMED)],
  },
  {
    category: 'names',
    name: 'scalar subquery in the select list',
    steps: [s("SELECT (SELECT string_agg(name, ',') FROM tenant_b.items) AS stolen", NAMED)],
  },
  {
    category: 'names',
    name: 'subquery in HAVING',
    steps: [s('SELECT count(*) FROM items HAVING count(*) < (SELECT count(*) FROM tenant_b.items)', NAMED)],
  },
  {
    category: 'names',
    name: 'CTE',
    steps: [s('WITH stolen AS (SELECT * FROM tenant_b.items) SELECT * FROM stolen', NAMED)],
  },
  {
    category: 'names',
    name: 'data-modifying CTE',
    steps: [s('WITH gone AS (DELETE FROM tenant_b.items RETURNING *) SELECT * FROM gone', NAMED)],
  },
  {
    category: 'names',
    name: 'LATERAL',
    steps: [
      s('SELECT a.id, x.name FROM items a, LATERAL (SELECT name FROM tenant_b.items b WHERE b.id = a.id) x', NAMED),
    ],
  },
  {
    category: 'names',
    name: 'UNION',
    steps: [s('SELECT name FROM items UNION ALL SELECT name FROM tenant_b.items', NAMED)],
  },
  {
    category: 'names',
    name: 'schema-qualified column reference',
    steps: [s('SELECT tenant_b.items.name FROM tenant_b.items', NAMED)],
  },
  { category: 'names', name: "tenant b's row type", steps: [s('SELECT NULL::tenant_b.items', NAMED)] },
  {
    category: 'names',
    name: "function, operator and collation in tenant b's schema",
    steps: [
      s('SELECT tenant_b.iso_fn()', NAMED),
      s('SELECT 1 OPERATOR(tenant_b.+) 1', NAMED),
      s('SELECT name COLLATE tenant_b."C" FROM items', NAMED),
    ],
  },
  {
    category: 'names',
    name: 'three-part name',
    // The cross-database rule is not a name-check rule: the guard refuses it in every mode.
    steps: [s((ctx) => `SELECT * FROM ${ctx.database}.tenant_b.items`, GUARD)],
  },
  {
    category: 'names',
    name: 'INSERT target',
    steps: [s("INSERT INTO tenant_b.items VALUES (99, 'planted-by-a')", NAMED)],
  },
  {
    category: 'names',
    name: 'INSERT ... SELECT source',
    steps: [
      s('INSERT INTO isofix_sink SELECT id, name FROM tenant_b.items', NAMED),
      s(
        'SELECT * FROM isofix_sink',
        ok((r) => expect.soft(only(r)).toEqual([])),
      ),
    ],
  },
  { category: 'names', name: 'UPDATE target', steps: [s("UPDATE tenant_b.items SET name = 'pwned-by-a'", NAMED)] },
  {
    category: 'names',
    name: 'UPDATE ... FROM',
    steps: [s('UPDATE isofix_sink s SET name = b.name FROM tenant_b.items b WHERE b.id = s.id', NAMED)],
  },
  { category: 'names', name: 'DELETE target', steps: [s('DELETE FROM tenant_b.items', NAMED)] },
  {
    category: 'names',
    name: 'DELETE ... USING',
    steps: [s('DELETE FROM isofix_sink s USING tenant_b.items b WHERE b.id = s.id', NAMED)],
  },
  {
    category: 'names',
    name: 'RETURNING',
    steps: [
      s("INSERT INTO isofix_sink VALUES (1, 'x') RETURNING (SELECT string_agg(name, ',') FROM tenant_b.items)", NAMED),
    ],
  },
  {
    category: 'names',
    name: 'MERGE target and source',
    steps: [
      s(
        'MERGE INTO tenant_b.items t USING isofix_sink s ON t.id = s.id WHEN MATCHED THEN UPDATE SET name = s.name',
        NAMED,
      ),
      s(
        'MERGE INTO isofix_sink t USING tenant_b.items s ON t.id = s.id WHEN NOT MATCHED THEN INSERT VALUES (s.id, s.name)',
        NAMED,
      ),
    ],
  },
  {
    category: 'names',
    name: 'SELECT INTO and CREATE TABLE in tenant b',
    steps: [
      s('SELECT * INTO tenant_b.iso_planted FROM items', NAMED),
      s('CREATE TABLE tenant_b.iso_planted (x int)', NAMED),
      // Quoted upper case names a schema that does not exist: PostgreSQL says so (3F000) when names are not checked.
      s('CREATE TABLE "TENANT_B".iso_planted (x int)', per(GUARD, db('3F000'), GUARD)),
    ],
  },
  {
    category: 'names',
    name: 'LIKE, REFERENCES, PARTITION OF',
    steps: [
      s('CREATE TABLE iso_like (LIKE tenant_b.items)', NAMED),
      s('CREATE TABLE iso_fk (id int REFERENCES tenant_b.items)', NAMED),
      s('CREATE TABLE iso_part PARTITION OF tenant_b.items DEFAULT', NAMED),
    ],
  },
  {
    category: 'names',
    name: 'TRUNCATE, LOCK, DROP (inside a rolled-back transaction)',
    steps: [
      s('TRUNCATE tenant_b.items', NAMED),
      s('BEGIN; LOCK TABLE tenant_b.items IN ACCESS EXCLUSIVE MODE; COMMIT', NAMED),
      // Without name checks the error above left the explicit transaction aborted on the server.
      s('ROLLBACK', OK),
      s('BEGIN; DROP TABLE tenant_b.items; ROLLBACK', NAMED),
      s('ROLLBACK', OK),
    ],
  },
  {
    category: 'names',
    name: 'ALTER TABLE/SEQUENCE, COMMENT',
    steps: [
      s('ALTER TABLE tenant_b.items ADD COLUMN pwned int', NAMED),
      s('ALTER SEQUENCE tenant_b.seq RESTART WITH 1', NAMED),
      s("COMMENT ON TABLE tenant_b.items IS 'pwned'", NAMED),
    ],
  },
  {
    category: 'names',
    name: 'VACUUM, ANALYZE, REINDEX SCHEMA',
    steps: [
      s('VACUUM tenant_b.items', NAMED),
      s('ANALYZE tenant_b.items', NAMED),
      // REINDEX SCHEMA checks ownership of the schema before anything else.
      s('REINDEX SCHEMA tenant_b', NAMED),
    ],
  },
  {
    category: 'names',
    name: 'EXPLAIN ANALYZE, PREPARE, DECLARE',
    steps: [
      s('EXPLAIN ANALYZE SELECT * FROM tenant_b.items', NAMED),
      s('PREPARE iso_q AS SELECT * FROM tenant_b.items', NAMED),
      s('BEGIN; DECLARE iso_c CURSOR FOR SELECT * FROM tenant_b.items; FETCH ALL FROM iso_c; COMMIT', NAMED),
      s('ROLLBACK', OK),
    ],
  },
  {
    category: 'names',
    name: 'GRANT on tenant b',
    steps: [
      s('GRANT SELECT ON tenant_b.items TO PUBLIC', NAMED),
      s('GRANT USAGE ON SCHEMA tenant_b TO PUBLIC', NAMED),
      s('GRANT SELECT ON ALL TABLES IN SCHEMA tenant_b TO PUBLIC', NAMED),
    ],
  },
  {
    category: 'names',
    name: 'role and ownership administration (always refused)',
    steps: [
      s('GRANT tenant_b TO tenant_a', GUARD),
      s('ALTER TABLE tenant_b.items OWNER TO tenant_a', GUARD),
      s('ALTER SCHEMA tenant_b OWNER TO tenant_a', GUARD),
      s('ALTER SCHEMA tenant_b RENAME TO iso_stolen', GUARD),
      s('DROP SCHEMA tenant_b CASCADE', GUARD),
    ],
  },
  {
    category: 'names',
    name: 'pg_temp',
    // The roles database grants no TEMP: this backend has no temp schema, so PostgreSQL finds no such relation.
    steps: [s('SELECT * FROM pg_temp.items', per(GUARD, db('42P01'), GUARD))],
  },

  // ── search_path and role ──
  {
    category: 'path/role',
    name: 'SET search_path',
    steps: [
      s('SET search_path TO tenant_b; SELECT name FROM items', GUARD),
      s('SET search_path = tenant_a, tenant_b', GUARD),
      s('BEGIN; SET LOCAL search_path TO tenant_b; SELECT name FROM items; COMMIT', GUARD),
      s("SET SCHEMA 'tenant_b'", GUARD),
      s('SET "search_path" TO tenant_b', GUARD),
    ],
  },
  {
    category: 'path/role',
    name: 'RESET and DISCARD',
    steps: [s('RESET search_path', GUARD), s('RESET ALL', GUARD), s('DISCARD ALL', GUARD)],
  },
  {
    category: 'path/role',
    name: 'SET ROLE and SESSION AUTHORIZATION',
    steps: [
      s('SET ROLE tenant_b; SELECT * FROM tenant_b.items', GUARD),
      s('SET ROLE NONE', GUARD),
      s('RESET ROLE', GUARD),
      s('BEGIN; SET LOCAL ROLE tenant_b; SELECT current_user; COMMIT', GUARD),
      s('SET SESSION AUTHORIZATION tenant_b', GUARD),
      s('SET SESSION AUTHORIZATION DEFAULT', GUARD),
    ],
  },
  {
    category: 'path/role',
    name: 'set_config',
    steps: [
      s("SELECT set_config('search_path', 'tenant_b', false); SELECT name FROM items", GUARD),
      s("SELECT pg_catalog.set_config('ROLE', 'tenant_b', true)", GUARD),
      s("SELECT set_config(lower('ROLE'), 'tenant_b', true)", GUARD),
      s("SELECT set_config(v, 'tenant_b', true) FROM (VALUES ('role')) t(v)", GUARD),
    ],
  },
  {
    category: 'path/role',
    name: "UPDATE pg_settings (its update rule calls set_config: the session's search_path moves to tenant b)",
    // Before issue 17 the guard let it through: with the guard alone the next unqualified name read tenant b's rows.
    steps: [
      s(
        "UPDATE pg_settings SET setting = 'tenant_b' WHERE name = 'search_path'; SELECT string_agg(name, ',') AS names FROM items",
        GUARD,
      ),
      s("UPDATE pg_catalog.pg_settings SET setting = 'tenant_b' WHERE name = 'search_path'", GUARD),
      s(
        "SELECT current_setting('search_path') AS path, string_agg(name, ',') AS names FROM items",
        ok((r, _ctx, c) => {
          expect.soft(only(r)[0]?.names, c).toBe('a-one,a-two');
          expect.soft(only(r)[0]?.path, c).not.toContain('tenant_b');
        }),
      ),
      s("WITH x AS (UPDATE pg_settings SET setting = 'tenant_b' WHERE name = 'search_path') SELECT 1", GUARD),
      s("UPDATE pg_settings SET setting = 'off' WHERE name = 'standard_conforming_strings'", GUARD),
      // Reading it, even FOR UPDATE, calls no rule.
      s("SELECT setting FROM pg_settings WHERE name = 'work_mem' FOR UPDATE", OK),
    ],
  },
  {
    category: 'path/role',
    name: 'pg_settings written through a view, a rule or a function',
    // A view over pg_settings is automatically updatable through pg_settings' own rule.
    steps: [
      s('CREATE VIEW iso_settings AS SELECT name, setting FROM pg_settings', GUARD),
      s("UPDATE iso_settings SET setting = 'tenant_b' WHERE name = 'search_path'", db('42P01')),
      s(
        "CREATE RULE iso_rule AS ON INSERT TO isofix_sink DO ALSO UPDATE pg_settings SET setting = 'tenant_b' WHERE name = 'search_path'",
        GUARD,
      ),
      s(
        "CREATE FUNCTION iso_settings_fn() RETURNS void LANGUAGE sql AS $$UPDATE pg_settings SET setting = 'tenant_b' WHERE name = 'search_path'$$",
        GUARD,
      ),
      s('SELECT iso_settings_fn()', UNDEFINED_FUNCTION),
      s("DO $$ BEGIN UPDATE pg_settings SET setting = 'tenant_b' WHERE name = 'search_path'; END $$", GUARD),
    ],
  },
  {
    category: 'path/role',
    name: 'function-level SET standard_conforming_strings = off (the body is lexed again when it runs)',
    // The guard reads the body with standard strings: 'a\'' … --' is one literal to it, and code once the function
    // runs under its own SET. With roles PostgreSQL validates the body under that SET at CREATE and finds tenant_b.
    steps: [
      s(
        "CREATE FUNCTION iso_scs() RETURNS SETOF text LANGUAGE sql SET standard_conforming_strings = off AS $f$ SELECT 'a\\'' ; SELECT name FROM tenant_b.items; --' $f$",
        GUARD,
      ),
      s('SELECT * FROM iso_scs()', UNDEFINED_FUNCTION),
      s("CREATE FUNCTION iso_plain_scs() RETURNS int LANGUAGE sql AS 'SELECT 1'", OK),
      s('ALTER FUNCTION iso_plain_scs() SET standard_conforming_strings = off', GUARD),
      s('ALTER FUNCTION iso_plain_scs() SET backslash_quote = on', GUARD),
    ],
  },
  {
    category: 'shared objects',
    name: 'COMMENT, GRANT, RENAME, DROP on what every tenant shares (database, role, extension, language, pg_catalog)',
    // PostgreSQL allows these wherever the proxy's login role owns the object (it often owns the database); the
    // guard refuses them whoever owns what.
    steps: [
      s((ctx) => `COMMENT ON DATABASE ${ctx.database} IS 'pwned-by-a'`, GUARD),
      s((ctx) => `COMMENT ON ROLE ${ctx.user} IS 'pwned-by-a'`, GUARD),
      s("COMMENT ON EXTENSION plpgsql IS 'pwned-by-a'", GUARD),
      s("COMMENT ON LANGUAGE plpgsql IS 'pwned-by-a'", GUARD),
      s("COMMENT ON SCHEMA pg_catalog IS 'pwned-by-a'", GUARD),
      s((ctx) => `GRANT CONNECT ON DATABASE ${ctx.database} TO PUBLIC`, GUARD),
      s('GRANT USAGE ON LANGUAGE plpgsql TO PUBLIC', GUARD),
      s((ctx) => `ALTER DATABASE ${ctx.database} RENAME TO iso_renamed`, GUARD),
      s('DROP EXTENSION plpgsql', GUARD),
      s('ALTER DEFAULT PRIVILEGES FOR ROLE tenant_b GRANT SELECT ON TABLES TO PUBLIC', GUARD),
      // With no table named these would process every tenant's tables the login role may maintain.
      s('VACUUM', GUARD),
      s('ANALYZE', GUARD),
      s('CLUSTER', GUARD),
      // Naming its own tables is fine.
      s('VACUUM isofix_sink', OK),
      s("COMMENT ON TABLE isofix_sink IS 'mine'", OK),
    ],
    async run(ctx) {
      const { rows } = await ctx.admin.query(`
        SELECT (SELECT shobj_description(oid, 'pg_database') FROM pg_database WHERE datname = current_database()) AS db,
               (SELECT obj_description(oid, 'pg_extension') FROM pg_extension WHERE extname = 'plpgsql') AS ext,
               (SELECT obj_description(oid, 'pg_namespace') FROM pg_namespace WHERE nspname = 'pg_catalog') AS catalog`);
      expect.soft(JSON.stringify(rows[0]), `[${ctx.mode.key}] shared objects' comments`).not.toContain('pwned-by-a');
    },
  },
  {
    category: 'path/role',
    name: 'ALTER ROLE/DATABASE ... SET',
    steps: [
      s('ALTER ROLE CURRENT_USER SET search_path = tenant_b', GUARD),
      s("ALTER ROLE tenant_a SET role = 'tenant_b'", GUARD),
      s((ctx) => `ALTER DATABASE ${ctx.database} SET search_path = tenant_b`, GUARD),
    ],
  },
  {
    category: 'path/role',
    name: 'function-level SET role',
    steps: [
      s(
        "CREATE FUNCTION iso_as_b() RETURNS text LANGUAGE sql SET role = tenant_b AS 'SELECT current_user::text'",
        GUARD,
      ),
      s('SELECT iso_as_b()', UNDEFINED_FUNCTION),
      s("CREATE FUNCTION iso_plain() RETURNS text LANGUAGE sql AS 'SELECT current_user::text'", OK),
      s('ALTER FUNCTION iso_plain() SET role = tenant_b', GUARD),
      s(
        'SELECT iso_plain() AS u',
        ok((r, ctx, c) => expect.soft(only(r), c).toEqual([{ u: ctx.user }])),
      ),
    ],
  },
  {
    category: 'path/role',
    name: 'aggregate whose transition function is set_config (search_path)',
    // The call never names set_config: only CREATE AGGREGATE does, so that is where the guard must refuse it.
    steps: [
      s(
        "CREATE AGGREGATE iso_path_agg(text, boolean) (SFUNC = set_config, STYPE = text, INITCOND = 'search_path')",
        GUARD,
      ),
      s(
        "SELECT iso_path_agg('tenant_b', true); SELECT current_setting('search_path') AS path, name FROM items ORDER BY id; UPDATE items SET name = 'pwned-by-a' WHERE id = 3",
        UNDEFINED_FUNCTION,
      ),
    ],
  },
  {
    category: 'path/role',
    name: 'aggregates whose transition function is set_config (role and search_path)',
    // Were the aggregates created, guard mode's login role (not a member of tenant_b) could not SET ROLE anyway.
    steps: [
      s(
        "CREATE AGGREGATE iso_role_agg(text, boolean) (SFUNC = pg_catalog.set_config, STYPE = text, INITCOND = 'role')",
        GUARD,
      ),
      s(
        "CREATE AGGREGATE iso_path_agg(text, boolean) (SFUNC = set_config, STYPE = text, INITCOND = 'search_path')",
        GUARD,
      ),
      s(
        "SELECT iso_role_agg('tenant_b', true), iso_path_agg('tenant_b', true); SELECT current_user AS u, name FROM items ORDER BY id; UPDATE items SET name = 'pwned-by-a' WHERE id = 3",
        UNDEFINED_FUNCTION,
      ),
    ],
  },
  {
    category: 'path/role',
    name: 'set_config hidden in a PL/pgSQL assignment target (search_path)',
    // The subscript of an assignment target is SQL too; the guard must read it like the right-hand side.
    steps: [
      s(
        "DO $$ DECLARE arr int[]; BEGIN arr[(SELECT length(set_config('search_path', 'tenant_b', true)))] := 1; END $$; SELECT current_setting('search_path') AS path, name FROM items ORDER BY id",
        GUARD,
      ),
    ],
  },
  {
    category: 'path/role',
    name: 'set_config hidden in a PL/pgSQL assignment target (role and search_path)',
    steps: [
      s(
        "DO $$ DECLARE arr int[]; BEGIN arr[(SELECT length(set_config('role', 'tenant_b', true) || set_config('search_path', 'tenant_b', true)))] := 1; END $$; SELECT current_user AS u, name FROM items ORDER BY id",
        GUARD,
      ),
    ],
  },
  {
    category: 'path/role',
    name: 'search_path, role or session_authorization as startup parameters',
    async run(ctx) {
      for (const options of [
        '-c search_path=tenant_b',
        '-c role=tenant_b',
        '--search-path=tenant_b',
        '-c session_authorization=tenant_b',
      ]) {
        let outcome: Outcome;
        try {
          const { client } = await connect(ctx, 'a', { options });
          outcome = { ok: true, results: [] };
          await client.end();
        } catch (err) {
          const e = err as { code?: string; message: string };
          outcome = { ok: false, code: e.code ?? 'none', message: e.message };
        }
        judge(ctx, `startup options ${options}`, GUARD, outcome);
      }
      const { raw, outcome } = await rawSession(ctx, 'a', { search_path: 'tenant_b' });
      judge(ctx, 'startup parameter search_path=tenant_b', GUARD, outcome);
      raw.close();
    },
  },
  {
    category: 'path/role',
    name: 'parser differential: standard_conforming_strings = off',
    // libpg-query lexes with standard_conforming_strings on; a server told otherwise reads 'x\'' as a complete
    // literal and runs what the guard took for the rest of it. Refusing the SET, or lexing as the server does, are
    // both fine (hence ANY), as long as nothing of tenant b comes back and b is unchanged.
    steps: [
      s('SET standard_conforming_strings = off', ANY),
      s(
        (ctx) =>
          `SELECT 'x\\'' ; ${ctx.mode.roles ? 'SET ROLE tenant_b; ' : ''}SELECT current_user AS u, name FROM tenant_b.items; UPDATE tenant_b.items SET name = 'pwned-by-a' WHERE id = 3; --'`,
        ANY,
      ),
    ],
  },
  {
    category: 'path/role',
    name: 'parser differential: standard_conforming_strings = off as a startup option',
    async run(ctx) {
      let client: pg.Client;
      try {
        ({ client } = await connect(ctx, 'a', { options: '-c standard_conforming_strings=off' }));
      } catch {
        return; // refusing the setting at startup is a correct defence
      }
      const sql = `SELECT 'x\\'' ; ${ctx.mode.roles ? 'SET ROLE tenant_b; ' : ''}SELECT current_user AS u, name FROM tenant_b.items; --'`;
      judge(ctx, sql, ANY, await runSql(client, sql));
      await assertPinned(ctx, client, 'after the differential');
      await client.end();
    },
  },
  {
    category: 'path/role',
    name: 'parser differential: client_encoding SJIS (0x83 0x5c is one character, not a backslash)',
    async run(ctx) {
      const { raw, outcome } = await rawSession(ctx, 'a', { client_encoding: 'SJIS' });
      if (!outcome.ok) {
        raw.close();
        return; // refusing a client encoding whose bytes the guard cannot read is a correct defence
      }
      // The guard decodes E'<83 5c>' as U+FFFD and an escaped quote; PostgreSQL reads the character ソ and a closing quote.
      const sql = Buffer.concat([
        Buffer.from("SELECT E'"),
        Buffer.from([0x83, 0x5c]),
        Buffer.from(
          `' ; ${ctx.mode.roles ? 'SET ROLE tenant_b; ' : ''}SELECT current_user, name FROM tenant_b.items; --'`,
        ),
      ]);
      judge(
        ctx,
        "SJIS: SELECT E'\\x83\\x5c' ; SELECT ... FROM tenant_b.items",
        ANY,
        rawOutcome(await exchange(raw, [frames.query(sql)])),
      );
      raw.close();
    },
  },

  // ── DO and dynamic SQL ──
  {
    category: 'DO/EXECUTE',
    name: 'EXECUTE in DO',
    steps: [
      s("DO $$ BEGIN EXECUTE 'DELETE FROM tenant_b.items'; END $$", GUARD),
      s("DO $$ BEGIN EXECUTE format('SELECT count(*) FROM %I.items', 'tenant_b'); END $$", GUARD),
      s("DO $$ DECLARE r record; BEGIN FOR r IN EXECUTE 'SELECT 1' LOOP END LOOP; END $$", GUARD),
    ],
  },
  {
    category: 'DO/EXECUTE',
    name: 'static SQL in DO',
    steps: [
      s('DO $$ BEGIN DELETE FROM tenant_b.items; END $$', NAMED),
      s("DO $$ BEGIN PERFORM set_config('role', 'tenant_b', true); END $$", GUARD),
      s('DO $$ BEGIN SET LOCAL search_path TO tenant_b; END $$', GUARD),
    ],
  },
  {
    category: 'DO/EXECUTE',
    name: 'untrusted and internal languages',
    steps: [
      s("DO LANGUAGE plperlu $$ system('id') $$", GUARD),
      s("CREATE FUNCTION iso_int(text, text, boolean) RETURNS text LANGUAGE internal AS 'set_config_by_name'", GUARD),
      s("SELECT iso_int('role', 'tenant_b', true)", UNDEFINED_FUNCTION),
    ],
  },
  {
    category: 'DO/EXECUTE',
    name: 'dynamic SQL in a function',
    steps: [
      s(
        "CREATE FUNCTION iso_dyn() RETURNS SETOF text LANGUAGE plpgsql AS $$ BEGIN RETURN QUERY EXECUTE 'SELECT name FROM tenant_b.items'; END $$",
        GUARD,
      ),
      s('SELECT * FROM iso_dyn()', UNDEFINED_FUNCTION),
      s(
        "CREATE FUNCTION iso_cur() RETURNS refcursor LANGUAGE plpgsql AS $$ DECLARE c refcursor; BEGIN OPEN c FOR EXECUTE 'SELECT 1'; RETURN c; END $$",
        GUARD,
      ),
    ],
  },

  // ── Functions in tenant a's schema that reach out when they run ──
  {
    category: 'functions',
    name: 'SQL body (validated at CREATE)',
    steps: [
      // With name checks off, PostgreSQL validates the body at CREATE and refuses tenant_b there.
      s(
        "CREATE FUNCTION iso_sqlf() RETURNS text LANGUAGE sql AS 'SELECT string_agg(name, '','') FROM tenant_b.items'",
        NAMED,
      ),
      s('SELECT iso_sqlf()', UNDEFINED_FUNCTION),
    ],
  },
  {
    category: 'functions',
    name: 'SQL body created unvalidated (check_function_bodies off)',
    steps: [
      s(
        "SET LOCAL check_function_bodies = off; CREATE FUNCTION iso_sqlf() RETURNS text LANGUAGE sql AS 'SELECT string_agg(name, '','') FROM tenant_b.items'",
        per(GUARD, OK, GUARD),
      ),
      // Created without name checks; at run time PostgreSQL refuses tenant_b to tenant_a's role.
      s('SELECT iso_sqlf()', per(UNDEFINED_FUNCTION, DENIED, UNDEFINED_FUNCTION)),
    ],
  },
  {
    category: 'functions',
    name: 'BEGIN ATOMIC body',
    steps: [
      s(
        'CREATE FUNCTION iso_atomic() RETURNS bigint LANGUAGE sql BEGIN ATOMIC SELECT count(*) FROM tenant_b.items; END',
        NAMED,
      ),
      s('SELECT iso_atomic()', UNDEFINED_FUNCTION),
    ],
  },
  {
    category: 'functions',
    name: 'PL/pgSQL body',
    steps: [
      s(
        "CREATE FUNCTION iso_pl() RETURNS text LANGUAGE plpgsql AS $$ BEGIN RETURN (SELECT string_agg(name, ',') FROM tenant_b.items); END $$",
        per(GUARD, OK, GUARD),
      ),
      s('SELECT iso_pl()', per(UNDEFINED_FUNCTION, DENIED, UNDEFINED_FUNCTION)),
    ],
  },
  {
    category: 'functions',
    name: 'SECURITY DEFINER (owned by tenant a, so no more rights than tenant a)',
    steps: [
      s(
        'CREATE FUNCTION iso_sd() RETURNS int LANGUAGE plpgsql SECURITY DEFINER AS $$ BEGIN DELETE FROM tenant_b.items; RETURN 1; END $$',
        per(GUARD, OK, GUARD),
      ),
      s('SELECT iso_sd()', per(UNDEFINED_FUNCTION, DENIED, UNDEFINED_FUNCTION)),
    ],
  },
  {
    category: 'functions',
    name: 'SECURITY DEFINER with SET search_path = tenant_b',
    steps: [
      s(
        "CREATE FUNCTION iso_sp() RETURNS text LANGUAGE plpgsql SECURITY DEFINER SET search_path = tenant_b AS $$ BEGIN RETURN (SELECT string_agg(name, ',') FROM items); END $$",
        per(GUARD, OK, GUARD),
      ),
      // Without name checks the function exists, but tenant_a has no USAGE on tenant_b: PostgreSQL leaves that schema out
      // of the path, and the unqualified name is simply not found (42P01) rather than refused.
      s('SELECT iso_sp()', per(UNDEFINED_FUNCTION, db('42P01'), UNDEFINED_FUNCTION)),
    ],
  },
  {
    category: 'functions',
    name: 'name hidden in a PL/pgSQL assignment target',
    // Guard mode: the subscript is not analysed, so tenant_b's names travel out through a custom setting.
    // Both: the same gap in the guard, but PostgreSQL refuses tenant_b to tenant_a's role; either line stopping it is fine.
    steps: [
      s(
        "CREATE FUNCTION iso_peek() RETURNS text LANGUAGE plpgsql AS $$ DECLARE arr int[]; BEGIN arr[(SELECT length(set_config('iso.peek', (SELECT string_agg(name, ',' ORDER BY id) FROM tenant_b.items), true)))] := 1; RETURN current_setting('iso.peek'); END $$",
        per(GUARD, OK, ANY),
      ),
      s('SELECT iso_peek()', per(UNDEFINED_FUNCTION, DENIED, ANY)),
    ],
  },

  // ── Views, triggers and rules created in tenant a that reference tenant b ──
  {
    category: 'views/triggers/rules',
    name: 'view',
    steps: [s('CREATE VIEW iso_v AS SELECT * FROM tenant_b.items', NAMED), s('SELECT * FROM iso_v', db('42P01'))],
  },
  {
    category: 'views/triggers/rules',
    name: 'materialized view',
    steps: [
      s('CREATE MATERIALIZED VIEW iso_mv AS SELECT * FROM tenant_b.items', NAMED),
      s('SELECT * FROM iso_mv', db('42P01')),
    ],
  },
  {
    category: 'views/triggers/rules',
    name: 'trigger writing into tenant b',
    steps: [
      s(
        'CREATE FUNCTION iso_trg() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN INSERT INTO tenant_b.items VALUES (NEW.id + 600, NEW.name); RETURN NEW; END $$',
        per(GUARD, OK, GUARD),
      ),
      s(
        'CREATE TRIGGER iso_t BEFORE INSERT ON isofix_sink FOR EACH ROW EXECUTE FUNCTION iso_trg()',
        per(UNDEFINED_FUNCTION, OK, UNDEFINED_FUNCTION),
      ),
      // Without name checks the trigger exists and fires as tenant_a's role: PostgreSQL refuses its INSERT.
      s("INSERT INTO isofix_sink VALUES (5, 'via-trigger')", per(OK, DENIED, OK)),
    ],
  },
  {
    category: 'views/triggers/rules',
    name: 'rule writing into tenant b',
    steps: [
      s(
        'CREATE RULE iso_r AS ON INSERT TO isofix_sink DO ALSO INSERT INTO tenant_b.items VALUES (NEW.id + 500, NEW.name)',
        NAMED,
      ),
      s("INSERT INTO isofix_sink VALUES (7, 'via-rule')", OK),
    ],
  },
  {
    category: 'views/triggers/rules',
    name: "column default on tenant b's sequence",
    steps: [
      s("CREATE TABLE iso_d (id bigint DEFAULT nextval('tenant_b.seq'))", NAMED),
      s('INSERT INTO iso_d DEFAULT VALUES', db('42P01')),
    ],
  },

  // ── Names inside strings ──
  {
    category: 'names in strings',
    name: 'nextval/currval/setval',
    steps: [
      s("SELECT nextval('tenant_b.seq')", NAMED),
      s("SELECT currval('tenant_b.seq')", NAMED),
      s("SELECT setval('tenant_b.seq', 1)", NAMED),
    ],
  },
  {
    category: 'names in strings',
    name: 'reg* casts and to_regclass',
    steps: [
      s("SELECT 'tenant_b.items'::regclass", NAMED),
      s("SELECT CAST('tenant_b.seq' AS pg_catalog.regclass)", NAMED),
      // With the catalog filter, to_regclass answers for a schema the tenant may not see as for a missing one: NULL.
      s(
        "SELECT to_regclass('tenant_b.items')",
        per(
          GUARD,
          ok((r, _ctx, c) => expect.soft(only(r), c).toEqual([{ to_regclass: null }])),
          GUARD,
        ),
      ),
      // Resolved by the filter's text overload, which answers for a schema the tenant may not see as for a missing one.
      s("SELECT pg_relation_size('tenant_b.items')", per(GUARD, db('3F000'), GUARD)),
    ],
  },
  {
    category: 'names in strings',
    name: 'table_to_xml and query_to_xml (always refused)',
    steps: [
      s("SELECT table_to_xml('tenant_b.items', true, false, '')", GUARD),
      s("SELECT query_to_xml('SELECT * FROM tenant_b.items', true, false, '')", GUARD),
      s("SELECT table_to_xml(c.oid, true, false, '') FROM pg_class c WHERE c.relname = 'items'", GUARD),
    ],
  },
  {
    category: 'names in strings',
    name: 'ts_stat runs the SQL in its string',
    // Like query_to_xml, ts_stat executes a query the guard never parses. Without roles it reads tenant b's rows;
    // with roles PostgreSQL refuses tenant_b (and a guard refusal would be as good).
    steps: [s("SELECT word FROM ts_stat('SELECT name::tsvector FROM tenant_b.items')", per(GUARD, REFUSED, REFUSED))],
  },
  {
    category: 'names in strings',
    name: "regclass(text) function-style cast on tenant b's sequence",
    // The catalog filter resolves the name as if tenant b's schema did not exist (3F000), not "permission denied".
    steps: [s("SELECT nextval(regclass('tenant_b.seq'))", per(GUARD, db('3F000'), REFUSED))],
  },
  {
    category: 'names in strings',
    name: 'pg_sequence_last_value with a literal name',
    steps: [s("SELECT pg_sequence_last_value('tenant_b.seq')", per(GUARD, db('3F000'), REFUSED))],
  },
  {
    category: 'names in strings',
    name: 'literal stored into a regclass column, then nextval(column)',
    steps: [
      s('CREATE TABLE iso_refs (r regclass)', OK),
      s("INSERT INTO iso_refs VALUES ('tenant_b.seq')", per(GUARD, DENIED, REFUSED)),
      s(
        'SELECT nextval(r) FROM iso_refs',
        ok((r, _ctx, c) => expect.soft(only(r), c).toEqual([])),
      ),
    ],
  },
  {
    category: 'names in strings',
    name: 'literal as a regclass parameter default',
    steps: [
      s(
        "CREATE FUNCTION iso_def(r regclass DEFAULT 'tenant_b.seq') RETURNS bigint LANGUAGE sql AS 'SELECT nextval(r)'",
        GUARD,
      ),
      s('SELECT iso_def()', UNDEFINED_FUNCTION),
    ],
  },
  {
    category: 'names in strings',
    name: 'sequence name built at run time',
    // No name rule sees 'tenant_b' || '.seq': the catalog filter's text overload of nextval resolves it, and a schema
    // the tenant may not see fails as a missing one — in guard-only mode too, where nothing else would stop it.
    steps: [
      s("SELECT nextval('tenant_b' || '.seq') AS v", db('3F000')),
      s("SELECT setval(concat('tenant_', 'b.seq'), 1)", db('3F000')),
      // The guard folds lower() of a literal itself and judges the name.
      s("SELECT currval(lower('TENANT_B.SEQ'))", per(GUARD, db('3F000'), GUARD)),
      s("SELECT pg_relation_size('tenant_' || 'b.items')", db('3F000')),
      // A body cannot be rewritten, so a computed sequence name there is refused outright.
      s("CREATE FUNCTION iso_seq(t text) RETURNS bigint LANGUAGE sql AS 'SELECT nextval(t)'", per(GUARD, GUARD, GUARD)),
    ],
  },
  {
    category: 'names in strings',
    name: 'parameters in name positions',
    steps: [
      s('SELECT nextval($1)', GUARD, ['tenant_b.seq']),
      // Rewritten to the catalog filter's regclass_in($1::text), which resolves the bound name within what the
      // session may see: another tenant's schema fails as one that does not exist.
      s('SELECT $1::regclass', db('3F000'), ['tenant_b.items']),
      s('SELECT to_regclass($1)', GUARD, ['tenant_b.items']),
    ],
  },

  // ── What pg_catalog shows about tenant b ──
  {
    category: 'catalog',
    name: "pg_stats: tenant b's rows are filtered out",
    // pg_stats shows most_common_vals and histogram_bounds: tenant b's values, not just names. It filters by
    // has_column_privilege, which the shared login role holds on every tenant's tables when roles are off; the
    // catalog filter (pgtp_catalog.pg_stats) shows only schemas the session may see, in every mode.
    steps: [
      s(
        "SELECT attname, most_common_vals::text AS mcv, histogram_bounds::text AS histogram FROM pg_stats WHERE schemaname = 'tenant_b' AND tablename = 'items'",
        ok((r, _ctx, c) => expect.soft(only(r), c).toEqual([])),
      ),
    ],
  },
  {
    category: 'catalog',
    name: "pg_sequences.last_value of tenant b's sequence",
    steps: [
      // last_value is data; the catalog filter shows no row of tenant b's schema in any mode.
      s(
        "SELECT last_value FROM pg_sequences WHERE schemaname = 'tenant_b' AND sequencename = 'seq'",
        ok((r, _ctx, c) => expect.soft(only(r), c).toEqual([])),
      ),
    ],
  },
  {
    category: 'catalog',
    name: "tenant b's relation names (filtered out by the catalog filter)",
    // README, "What a tenant can observe": the catalogs show the tenant's own schema only.
    steps: [
      s(
        "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = 'tenant_b' AND c.relname IN ('items', 'seq') ORDER BY 1",
        ok((r, _ctx, c) => expect.soft(only(r), c).toEqual([])),
      ),
    ],
  },

  // ── COPY ──
  {
    category: 'COPY',
    name: 'COPY TO STDOUT and FROM STDIN',
    async run(ctx) {
      const { raw } = await rawSession(ctx, 'a');
      judge(
        ctx,
        'COPY tenant_b.items TO STDOUT',
        NAMED,
        rawOutcome(await exchange(raw, [frames.query('COPY tenant_b.items TO STDOUT')])),
      );
      judge(
        ctx,
        'COPY (SELECT ...) TO STDOUT',
        NAMED,
        rawOutcome(await exchange(raw, [frames.query('COPY (SELECT * FROM tenant_b.items) TO STDOUT')])),
      );
      // COPY FROM STDIN: if the server ever asks for data, send a row as an attacker would.
      const from = raw.messages.length;
      raw.write(frames.query('COPY tenant_b.items FROM STDIN'));
      const first = await waitForMessages(raw, from, (ms) => ms.some((m) => m.code === 'G' || m.code === 'Z'));
      if (first.some((m) => m.code === 'G'))
        raw.write(Buffer.concat([frames.copyData('900\tplanted-by-copy\n'), frames.copyDone()]));
      judge(
        ctx,
        'COPY tenant_b.items FROM STDIN',
        NAMED,
        rawOutcome(await waitForMessages(raw, from, (ms) => ms.some((m) => m.code === 'Z'))),
      );
      // The connection is still usable and still tenant a's.
      const own = rawOutcome(
        await exchange(raw, [frames.query('COPY (SELECT name FROM items WHERE id IN (1, 2) ORDER BY id) TO STDOUT')]),
      );
      expect.soft(own).toEqual({ ok: true, results: [[{ copy: 'a-one\n' }, { copy: 'a-two\n' }]] });
      raw.close();
    },
  },
  {
    category: 'COPY',
    name: 'COPY to a file or program (always refused)',
    steps: [s("COPY items TO '/tmp/pgtp-isolation-copy'", GUARD), s("COPY items FROM PROGRAM 'id'", GUARD)],
  },

  // ── Multi-statement strings ──
  {
    category: 'multi-statement',
    name: 'harmless first, cross-tenant second',
    steps: [s('SELECT 1; SELECT * FROM tenant_b.items', NAMED), s('SELECT 1; DELETE FROM tenant_b.items', NAMED)],
  },
  {
    category: 'multi-statement',
    name: 'nothing of a refused string runs',
    steps: [
      // The guard refuses the whole string; PostgreSQL runs it as one implicit transaction, so the INSERT rolls back.
      s("INSERT INTO isofix_sink VALUES (777, 'first'); SELECT * FROM tenant_b.items", NAMED),
      s(
        'SELECT count(*)::int AS n FROM isofix_sink WHERE id = 777',
        ok((r, _ctx, c) => expect.soft(only(r), c).toEqual([{ n: 0 }])),
      ),
    ],
  },
  {
    category: 'multi-statement',
    name: 'path change then unqualified read',
    steps: [s('SELECT 1; SET search_path TO tenant_b; SELECT name FROM items', GUARD)],
  },
  {
    category: 'multi-statement',
    name: 'inside an explicit transaction across messages',
    steps: [
      s('BEGIN', OK),
      s('SELECT name FROM items', OK),
      s('SELECT * FROM tenant_b.items', NAMED),
      // Refused by either line, the transaction is aborted on the server as for any error.
      s('SELECT 1', db('25P02')),
      s('ROLLBACK', OK),
    ],
  },

  // ── Extended protocol ──
  {
    category: 'extended protocol',
    name: 'parameterised statements (Parse/Bind/Execute)',
    steps: [
      s('SELECT name FROM tenant_b.items WHERE id = $1', NAMED, [1]),
      s('UPDATE tenant_b.items SET name = $1', NAMED, ['pwned-by-a']),
      s('INSERT INTO isofix_sink SELECT id, name FROM tenant_b.items WHERE id > $1', NAMED, [0]),
      s('SELECT set_config($1, $2, true)', GUARD, ['role', 'tenant_b']),
      s("SELECT set_config('search_path', $1, true)", GUARD, ['tenant_b']),
    ],
  },
  {
    category: 'extended protocol',
    name: 'named statement',
    async run(ctx) {
      const { client } = await connect(ctx, 'a');
      judge(
        ctx,
        'named Parse of SELECT ... FROM tenant_b.items',
        NAMED,
        await runSql(client, { name: 'iso_named_b', text: 'SELECT name FROM tenant_b.items' }),
      );
      await assertPinned(ctx, client, 'named statement');
      await client.end();
    },
  },
  {
    category: 'extended protocol',
    name: 'parameter types declared reg* in the Parse message (no cast in the text)',
    // PostgreSQL resolves the bound value as a name at Bind: whether tenant b's table, schema or type exists shows as
    // a row or an error. regnamespace and regrole read no privileges, so roles alone do not close it either.
    async run(ctx) {
      const { raw } = await rawSession(ctx, 'a');
      const attempts: Array<[number, string]> = [
        [2205, 'tenant_b.items'],
        [2210, '{tenant_b.items}'],
        [4089, 'tenant_b'],
        [4090, '{tenant_b}'],
        [4096, 'tenant_b'],
        [2206, 'tenant_b.items'],
        [24, 'tenant_b.iso_fn'],
        [2202, 'tenant_b.iso_fn()'],
        [2203, 'tenant_b.+'],
        [2204, 'tenant_b.+(int,int)'],
        [3734, 'tenant_b.cfg'],
        [3769, 'tenant_b.dict'],
        [4191, 'tenant_b."C"'],
        [71, '(x)'],
        [81, '(x)'],
      ];
      for (const [oid, value] of attempts) {
        const ms = await exchange(raw, [
          frames.parse('SELECT $1', '', [oid]),
          frames.bind([value]),
          frames.execute(),
          frames.sync(),
        ]);
        judge(ctx, `Parse("SELECT $1", type ${oid}) bound to ${value}`, GUARD, rawOutcome(ms));
        expect.soft(ms.filter((m) => m.code === 'D').length, `rows for type ${oid}`).toBe(0);
      }
      // Undeclared, but inferred as regclass from a built-in's signature: the same lookup at Bind.
      const inferred = await exchange(raw, [
        frames.parse('SELECT pg_relation_is_updatable($1, true)'),
        frames.bind(['tenant_b.items']),
        frames.execute(),
        frames.sync(),
      ]);
      judge(
        ctx,
        'Parse("SELECT pg_relation_is_updatable($1, true)") bound to tenant_b.items',
        GUARD,
        rawOutcome(inferred),
      );
      // Declared as text (or unspecified) the value is only a string.
      const text = await exchange(raw, [
        frames.parse('SELECT $1', 'iso_text', [25]),
        frames.bind(['tenant_b.items'], 'iso_text'),
        frames.execute(),
        frames.sync(),
      ]);
      judge(ctx, 'Parse("SELECT $1", type 25) bound to tenant_b.items', OK, rawOutcome(text));
      // Inside a transaction the refusal aborts it on the server, as a real error would.
      const tx = await exchange(
        raw,
        [
          frames.query('BEGIN'),
          frames.parse('SELECT $1', '', [2205]),
          frames.bind(['tenant_b.items']),
          frames.execute(),
          frames.sync(),
        ],
        2,
      );
      judge(ctx, 'BEGIN; Parse("SELECT $1", regclass)', GUARD, rawOutcome(tx));
      expect.soft(readyStatus(tx)).toEqual(['T', 'E']);
      expect.soft(readyStatus(await exchange(raw, [frames.query('ROLLBACK')]))).toEqual(['I']);
      raw.close();

      // A driver that declares parameter types: postgres.js's sql.typed(value, oid).
      const sql = postgres({
        host: '127.0.0.1',
        port: ctx.tp.port,
        user: 'app',
        database: ctx.database,
        password: await ctx.tp.token('a'),
        max: 1,
        onnotice: () => undefined,
      });
      try {
        for (const [oid, value] of [
          [2205, 'tenant_b.items'],
          [4089, 'tenant_b'],
        ] as const) {
          let outcome: Outcome;
          try {
            outcome = { ok: true, results: [await sql`SELECT ${sql.typed(value, oid)}::text AS v`] };
          } catch (err) {
            const e = err as { code?: string; message: string };
            outcome = { ok: false, code: e.code ?? 'none', message: e.message };
          }
          judge(ctx, `postgres.js sql.typed(${value}, ${oid})`, GUARD, outcome);
        }
      } finally {
        await sql.end();
      }
    },
  },
  {
    category: 'extended protocol',
    name: 'pipelined batch: the rest of the batch is discarded up to Sync',
    async run(ctx) {
      const { raw } = await rawSession(ctx, 'a');
      const ms = await exchange(raw, [
        frames.parse('SELECT name FROM tenant_b.items'),
        frames.bind(),
        frames.describePortal(),
        frames.execute(),
        frames.parse('SELECT name FROM items'),
        frames.bind(),
        frames.execute(),
        frames.sync(),
      ]);
      judge(ctx, 'Parse(tenant_b) Bind Execute Parse(items) Bind Execute Sync', NAMED, rawOutcome(ms));
      expect.soft(ms.filter((m) => m.code === 'E').length, 'one error for the whole batch').toBe(1);
      expect.soft(ms.filter((m) => m.code === 'D').length, 'no rows at all after the refused Parse').toBe(0);
      expect.soft(readyStatus(ms)).toEqual(['I']);
      // Inside a transaction: the refusal aborts it on the server as a real error would.
      const tx = await exchange(
        raw,
        [
          frames.query('BEGIN'),
          frames.parse('DELETE FROM tenant_b.items'),
          frames.bind(),
          frames.execute(),
          frames.sync(),
        ],
        2,
      );
      judge(ctx, 'BEGIN; Parse(DELETE FROM tenant_b.items) Bind Execute Sync', NAMED, rawOutcome(tx));
      expect.soft(readyStatus(tx)).toEqual(['T', 'E']);
      const after = await exchange(raw, [frames.query('SELECT 1')]);
      judge(ctx, 'SELECT 1 in the aborted transaction', db('25P02'), rawOutcome(after));
      expect.soft(readyStatus(await exchange(raw, [frames.query('ROLLBACK')]))).toEqual(['I']);
      raw.close();
    },
  },
  {
    category: 'extended protocol',
    name: 'Parse holding two statements',
    async run(ctx) {
      const { raw } = await rawSession(ctx, 'a');
      const ms = await exchange(raw, [
        frames.parse('SELECT 1; SELECT name FROM tenant_b.items'),
        frames.bind(),
        frames.execute(),
        frames.sync(),
      ]);
      // Without name checks PostgreSQL refuses a Parse of two statements outright (42601).
      judge(ctx, 'Parse("SELECT 1; SELECT name FROM tenant_b.items")', per(GUARD, db('42601'), GUARD), rawOutcome(ms));
      raw.close();
    },
  },
  {
    category: 'extended protocol',
    name: 'FunctionCall message (set_config by OID)',
    async run(ctx) {
      const { raw } = await rawSession(ctx, 'a');
      const oid = Number((await ctx.admin.query("SELECT 'pg_catalog.set_config'::regproc::oid AS oid")).rows[0].oid);
      const ms = await exchange(raw, [frames.functionCall(oid, ['role', 'tenant_b', 'false'])]);
      judge(ctx, `FunctionCall ${oid}(role, tenant_b, false)`, GUARD, rawOutcome(ms));
      const who = rawOutcome(await exchange(raw, [frames.query('SELECT current_user, current_schema()')]));
      expect.soft(who).toEqual({ ok: true, results: [[{ c0: ctx.user, c1: 'tenant_a' }]] });
      raw.close();
    },
  },
];

// ── The suite ─────────────────────────────────────────────────────────────────

describe.each(MODES)('isolation: $title', (mode) => {
  const ctx = { mode } as Ctx;

  beforeAll(async () => {
    ctx.database = mode.roles ? inject('pgRoles').database : inject('pg').database;
    ctx.user = mode.roles ? 'tenant_a' : inject('pg').proxyRole;
    ctx.tp = await startTestProxy(
      { upstream: { poolSize: 3 }, tenancy: { roles: mode.roles }, policy: { checkNames: mode.checkNames } },
      mode.roles ? inject('pgRoles').upstreamUrl : undefined,
    );
    ctx.admin = new pg.Client({ connectionString: withDatabase(inject('pg').superuserUrl, ctx.database) });
    await ctx.admin.connect();
    await cleanup(ctx);
    // As in any live deployment: tenant b has used its sequence, and autovacuum has analysed its table.
    const b = await ctx.tp.connect('b');
    await b.query("SELECT nextval('seq')");
    await b.end();
    await ctx.admin.query('ANALYZE tenant_a.items, tenant_b.items');
    ctx.baseline = await snapshotB(ctx.admin);
  });

  afterAll(async () => {
    if (ctx.admin !== undefined) {
      await restoreB(ctx.admin, ctx.baseline);
      await cleanup(ctx);
      await ctx.admin.query("DROP TABLE IF EXISTS tenant_a.isofix_sink; SELECT setval('tenant_b.seq', 2000, false)");
      await ctx.admin.end();
    }
    await ctx.tp?.close();
  });

  beforeEach(async () => {
    await cleanup(ctx);
  });

  afterEach(async () => {
    await restoreB(ctx.admin, ctx.baseline);
  });

  it('sanity: each tenant sees its own rows under its own role', async () => {
    const a = await ctx.tp.connect('a');
    const b = await ctx.tp.connect('b');
    await assertPinned(ctx, a, 'sanity');
    const rb = await b.query("SELECT current_schema() AS s, string_agg(name, ',' ORDER BY id) AS names FROM items");
    expect(rb.rows[0]).toEqual({ s: 'tenant_b', names: 'b-one,b-two,b-three' });
    await Promise.all([a.end(), b.end()]);
  });

  it.each(ATTEMPTS)('$category: $name', async (attempt) => {
    if (attempt.steps !== undefined) {
      const { client, alive } = await connect(ctx, 'a');
      for (const step of attempt.steps) {
        const sql = typeof step.sql === 'function' ? step.sql(ctx) : step.sql;
        const query = step.name === undefined ? sql : { name: step.name, text: sql, values: step.values };
        judge(ctx, sql, step.expect, await runSql(client, query, step.name === undefined ? step.values : undefined));
        if (!alive()) break;
      }
      if (alive()) await assertPinned(ctx, client, attempt.name);
      await client.end().catch(() => undefined);
    }
    if (attempt.run !== undefined) await attempt.run(ctx);

    expect
      .soft(await snapshotB(ctx.admin), `[${mode.key}] tenant b's data after: ${attempt.name}`)
      .toEqual(ctx.baseline);
  });

  it("other sessions: tenant b's running query text stays out of tenant a's reach", async () => {
    const b = await ctx.tp.connect('b');
    const running = b.query('SELECT pg_sleep(3) /* secret-b */');
    const isRunning = async (): Promise<boolean> =>
      (
        await ctx.admin.query(
          "SELECT count(*)::int AS n FROM pg_stat_activity WHERE state = 'active' AND pid <> pg_backend_pid() AND query = 'SELECT pg_sleep(3) /* secret-b */'",
        )
      ).rows[0].n === 1;
    const deadline = Date.now() + 5000;
    while (!(await isRunning())) {
      if (Date.now() > deadline) throw new Error("tenant b's statement never showed up");
      await new Promise((r) => setTimeout(r, 20));
    }

    const bPid = (
      await ctx.admin.query(
        "SELECT pid FROM pg_stat_activity WHERE state = 'active' AND query = 'SELECT pg_sleep(3) /* secret-b */'",
      )
    ).rows[0].pid as number;
    const { client: a, alive } = await connect(ctx, 'a');
    /** b's backend is not one of a's: no row of it, a signal to it answers false as for a pid that is no backend. */
    const notB = ok((r, _ctx, c) => {
      for (const row of only(r)) expect.soft((row as { pid?: number }).pid, c).not.toBe(bPid);
    });
    const falseAnswer = ok((r, _ctx, c) => expect.soft(only(r), c).toEqual([{ r: false }]));
    const steps: Step[] = [
      // Through the catalog filter: the backends serving tenant a's own clients only.
      s('SELECT pid, query FROM pg_stat_activity', notB),
      s("SELECT pid, query FROM pg_catalog.pg_stat_activity WHERE state = 'active'", notB),
      s(
        `SELECT pid, query FROM pg_stat_activity WHERE pid = ${bPid}`,
        ok((r, _c, c) => expect.soft(only(r), c).toEqual([])),
      ),
      s(`SELECT pg_cancel_backend(${bPid}) AS r`, falseAnswer),
      s(`SELECT pg_terminate_backend(${bPid}) AS r`, falseAnswer),
      s(`SELECT pg_catalog.pg_terminate_backend(${bPid}, 100) AS r`, falseAnswer),
      s('SELECT * FROM pg_stat_get_activity(NULL)', GUARD),
      s('SELECT pg_stat_get_backend_activity(i) FROM pg_stat_get_backend_idset() i', GUARD),
      // pg_locks through the catalog filter: the locks of the tenant's own server only.
      s(
        'SELECT * FROM pg_locks',
        ok((r, _ctx, c) =>
          expect.soft(new Set(only(r).map((row) => (row as { pid: number }).pid)).size, c).toBeLessThanOrEqual(1),
        ),
      ),
      s('BEGIN; CREATE VIEW iso_act AS SELECT pid, query FROM pg_stat_activity; SELECT * FROM iso_act; ROLLBACK', OK),
      // ts_stat runs SQL the guard never sees. With roles, PostgreSQL shows other roles' sessions as
      // "<insufficient privilege>" (executing and showing nothing is then as good as a refusal).
      s(
        "SELECT word FROM ts_stat($$SELECT to_tsvector('simple', coalesce(query, '')) FROM pg_stat_activity$$)",
        per(GUARD, ANY, ANY),
      ),
      // An operator names its function only at CREATE OPERATOR; calling it never names pg_stat_get_backend_activity.
      s('CREATE OPERATOR ### (RIGHTARG = int, FUNCTION = pg_stat_get_backend_activity)', per(GUARD, ANY, ANY)),
      // The operator was never created (CREATE OPERATOR is refused), and the id set itself is refused by the guard.
      s('SELECT ### i AS q FROM pg_stat_get_backend_idset() i', GUARD),
    ];
    for (const step of steps) {
      const sql = step.sql as string;
      judge(ctx, sql, step.expect, await runSql(a, sql));
      if (!alive()) break;
    }
    // b's statement was still running the whole time a was looking.
    expect(await isRunning()).toBe(true);
    await running;
    await Promise.all([a.end().catch(() => undefined), b.end()]);
  });

  it("LISTEN/NOTIFY stay in the tenant's own namespace; session advisory locks are always refused", async () => {
    const { client: a } = await connect(ctx, 'a');
    const { client: b } = await connect(ctx, 'b');
    const heard: string[] = [];
    b.on('notification', (n) => heard.push(n.payload ?? ''));
    await b.query('LISTEN iso_chan');
    for (const sql of ['LISTEN iso_chan', "NOTIFY iso_chan, 'from-a'", "SELECT pg_notify('iso_chan', 'from-a')"]) {
      judge(ctx, sql, { kind: 'ok' }, await runSql(a, sql));
    }
    judge(ctx, 'SELECT pg_advisory_lock(42)', GUARD, await runSql(a, 'SELECT pg_advisory_lock(42)'));
    const { client: b2 } = await connect(ctx, 'b');
    await b2.query("NOTIFY iso_chan, 'from-b'");
    for (const deadline = Date.now() + 10_000; !heard.includes('from-b') && Date.now() < deadline;)
      await new Promise((r) => setTimeout(r, 20));
    // b hears its own notification, and none of a's sent before it.
    expect(heard).toEqual(['from-b']);
    await Promise.all([a.end(), b.end(), b2.end()]);
  });

  describe('state left on a pooled backend (pool of one)', () => {
    let pooled: TestProxy;
    let pctx: Ctx;

    beforeAll(async () => {
      pooled = await startTestProxy(
        { upstream: { poolSize: 1 }, tenancy: { roles: mode.roles }, policy: { checkNames: mode.checkNames } },
        mode.roles ? inject('pgRoles').upstreamUrl : undefined,
      );
    });
    beforeEach(() => {
      pctx = { ...ctx, tp: pooled };
    });
    afterAll(async () => {
      await pooled?.close();
    });

    it('tenant a leaves temp tables, plans, settings, cursors, sequence state; tenant b finds none of it', async () => {
      const { client: a } = await connect(pctx, 'a');
      const pidA = (await a.query('SELECT pg_backend_pid() AS pid')).rows[0].pid as number;
      const left: Step[] = [
        // The roles database grants no TEMP (a temp table would shadow the next tenant's tables): refused there.
        s(
          "CREATE TEMP TABLE items (id int, name text); INSERT INTO items VALUES (1, 'planted-by-a')",
          per(OK, DENIED, DENIED),
        ),
        s('PREPARE iso_plan AS SELECT name FROM items', OK),
        // A PREPARE the guard only sees at CREATE FUNCTION time, not when it runs.
        s("CREATE FUNCTION iso_prep() RETURNS void LANGUAGE sql AS 'PREPARE iso_hidden AS SELECT name FROM items'", OK),
        s('SELECT iso_prep()', OK),
        s("SELECT set_config('iso.left_by_a', 'from-a', false)", OK),
        s('BEGIN; DECLARE iso_cur CURSOR WITH HOLD FOR SELECT name FROM items; COMMIT', OK),
        s("SELECT nextval('seq')", OK),
        s('SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY', OK),
        s("SET statement_timeout = '1234ms'", OK),
      ];
      for (const step of left) judge(pctx, step.sql as string, step.expect, await runSql(a, step.sql as string));
      // A named statement through the protocol, with text only tenant a sends.
      judge(
        pctx,
        'named statement iso_named_a',
        ANY,
        await runSql(a, { name: 'iso_named_a', text: "SELECT name FROM items WHERE name <> 'iso-marker-a'" }),
      );

      const { client: b } = await connect(pctx, 'b');
      // The PREPARE run inside iso_prep() is invisible to the guard. Either the reset deallocated everything (a's
      // top-level PREPARE asked for that) or it found a statement the proxy did not make and closed the server; in
      // both cases nothing of a's reaches b, which the checks below assert whichever server b got.
      void pidA;
      const sees = async (sql: string): Promise<Outcome> => runSql(b, sql);
      expect
        .soft(
          await sees("SELECT string_agg(name, ',' ORDER BY id) AS names FROM items"),
          "b's own rows, not a's temp table",
        )
        .toEqual({
          ok: true,
          results: [[{ names: 'b-one,b-two,b-three' }]],
        });
      expect
        .soft(
          await sees(
            "SELECT count(*)::int AS n FROM pg_class WHERE relname = 'items' AND relpersistence = 't' AND relnamespace = pg_my_temp_schema()",
          ),
        )
        .toEqual({ ok: true, results: [[{ n: 0 }]] });
      expect.soft(summary(await sees('EXECUTE iso_plan')), 'EXECUTE iso_plan').toBe('refused 26000 by PostgreSQL');
      // The reset must drop every prepared statement a left, however it was created: a statement b can EXECUTE by
      // name is a's SQL running in b's session.
      expect
        .soft(summary(await sees('EXECUTE iso_hidden')), 'EXECUTE iso_hidden (prepared inside a function)')
        .toBe('refused 26000 by PostgreSQL');
      expect
        .soft(summary(await sees('FETCH ALL FROM iso_cur')), 'FETCH from a held cursor')
        .toBe('refused 34000 by PostgreSQL');
      expect.soft(summary(await sees('SELECT lastval()')), 'lastval()').toBe('refused 55000 by PostgreSQL');
      const setting = await sees("SELECT current_setting('iso.left_by_a', true) AS v");
      expect
        .soft(
          setting.ok && ['', null].includes(only(setting.results)[0]?.v as string),
          `custom setting: ${JSON.stringify(setting)}`,
        )
        .toBe(true);
      expect
        .soft(
          await sees(
            "SELECT current_setting('default_transaction_read_only') AS ro, current_setting('statement_timeout') AS t",
          ),
        )
        .toEqual({
          ok: true,
          results: [[{ ro: 'off', t: '0' }]],
        });
      // Statement texts carry literals: another tenant's must not be readable, the proxy's own cached ones included;
      // the guard refuses the view.
      expect
        .soft(
          summary(await sees('SELECT name, statement FROM pg_prepared_statements')),
          "a's prepared statements, seen from b",
        )
        .toBe('refused 42501 by the guard');
      expect.soft(await sees('SELECT count(*)::int AS n FROM pg_cursors')).toEqual({ ok: true, results: [[{ n: 0 }]] });
      await Promise.all([a.end(), b.end()]);
    });

    it("tenant b's statements on the pooled backend are out of tenant a's reach", async () => {
      const { client: b } = await connect(pctx, 'b');
      const pidB = (await b.query('SELECT pg_backend_pid() AS pid')).rows[0].pid as number;
      await b.query("SELECT name FROM items WHERE name <> 'secret-b' AND id = $1", [1]); // unnamed statement
      await runSql(b, { name: 'b_stmt', text: "SELECT name FROM items WHERE name <> 'secret-b'" }); // named, if supported

      const { client: a, alive } = await connect(pctx, 'a');
      expect(
        (await a.query('SELECT pg_backend_pid() AS pid')).rows[0].pid,
        'both tenants on the one pooled server',
      ).toBe(pidB);
      // The guard refuses the proxy's own statement names in SQL; any other name simply does not exist for a.
      for (const name of ['b_stmt', 'pgtp_s1', 'pgtp_s2', 'pgtp_s3']) {
        const sql = `EXECUTE ${name}`;
        judge(pctx, sql, name.startsWith('pgtp_s') ? GUARD : db('26000'), await runSql(a, sql));
        if (!alive()) break;
      }
      judge(
        pctx,
        'pg_prepared_statements',
        GUARD,
        await runSql(a, 'SELECT name, statement FROM pg_prepared_statements'),
      );
      await a.end();

      // Raw Bind with no Parse of its own: the unnamed statement b left, and proxy-side names.
      const { raw } = await rawSession(pctx, 'a');
      for (const statement of ['', 'b_stmt', 'pgtp_s1', 'pgtp_s2']) {
        const ms = await exchange(raw, [frames.bind(['1'], statement), frames.execute(), frames.sync()]);
        judge(pctx, `Bind to statement "${statement}" without a Parse`, db('26000'), rawOutcome(ms));
        expect.soft(ms.filter((m) => m.code === 'D').length, `rows for Bind "${statement}"`).toBe(0);
      }
      raw.close();
      await b.end();
    });
  });
});
