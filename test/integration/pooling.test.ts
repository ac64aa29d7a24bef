import pg from 'pg';
import { afterEach, describe, expect, inject, it } from 'vitest';
import { NAME_UNPINNED_SERVER } from '../../src/backend/connect.js';
import { adminClient } from '../support/postgres.js';
import { startTestProxy, sqlstateOf, type TestProxy } from '../support/proxy.js';

let tp: TestProxy;
afterEach(async () => {
  await tp?.close();
});

/** Session state a reset must clear, left by `a` inside an open transaction (it holds its server until COMMIT). */
async function plantSessionState(a: pg.Client): Promise<void> {
  await a.query("SET statement_timeout = '1234ms'");
  await a.query("SELECT set_config('app.secret', 'from-a', false)");
  await a.query('CREATE TEMP TABLE leak (x int)');
  await a.query('PREPARE leaked_plan AS SELECT 1');
  await a.query('BEGIN');
  await a.query('DECLARE held CURSOR WITH HOLD FOR SELECT 1');
}

describe('transaction pooling with search_path pin and reset', () => {
  it.runIf(process.env.PGTP_TEST_PG !== undefined)(
    'runs against the PostgreSQL major version the run asked for',
    async () => {
      tp = await startTestProxy();
      const a = await tp.connect('a');
      expect((await a.query('SHOW server_version_num')).rows[0].server_version_num).toMatch(
        new RegExp(`^${process.env.PGTP_TEST_PG}`),
      );
    },
  );

  it('runs each tenant in its own schema on one shared server', async () => {
    tp = await startTestProxy({ upstream: { poolSize: 1 } });
    const a = await tp.connect('a');
    const b = await tp.connect('b');
    for (let round = 0; round < 5; round++) {
      const ra = await a.query('SELECT current_schema() AS s, count(*)::int AS n, pg_backend_pid() AS pid FROM items');
      const rb = await b.query('SELECT current_schema() AS s, count(*)::int AS n, pg_backend_pid() AS pid FROM items');
      expect(ra.rows[0]).toMatchObject({ s: 'tenant_a', n: 2 });
      expect(rb.rows[0]).toMatchObject({ s: 'tenant_b', n: 3 });
      // Pool of one: both tenants really share the server.
      expect(ra.rows[0].pid).toBe(rb.rows[0].pid);
    }
    expect((await a.query('SHOW search_path')).rows[0].search_path).toBe('tenant_a');
    expect((await b.query('SHOW search_path')).rows[0].search_path).toBe('tenant_b');
  });

  it('interleaved transactions wait for the pinned server and never see each other', async () => {
    tp = await startTestProxy({ upstream: { poolSize: 1 } });
    const a = await tp.connect('a');
    const b = await tp.connect('b');
    await a.query('BEGIN');
    await a.query("INSERT INTO items VALUES (100, 'a-tx')");
    // b must wait: the only server is pinned to a's open transaction.
    const bResult = b.query('SELECT array_agg(name ORDER BY id) AS names FROM items');
    await new Promise((resolve) => setTimeout(resolve, 100));
    expect((await a.query('SELECT count(*)::int AS n FROM items')).rows[0].n).toBe(3);
    await a.query('ROLLBACK');
    expect((await bResult).rows[0].names).toEqual(['b-one', 'b-two', 'b-three']);
    expect((await a.query('SELECT count(*)::int AS n FROM items')).rows[0].n).toBe(2);
  });

  it('resets the server before another client gets it', async () => {
    tp = await startTestProxy({ upstream: { poolSize: 1 } });
    const a = await tp.connect('a');
    await plantSessionState(a);
    await a.query('COMMIT');
    // Another tenant's client lands on the same server and sees none of it.
    const b = await tp.connect('b');
    const state = await b.query(
      `SELECT current_setting('statement_timeout') AS timeout,
              current_setting('app.secret', true) AS secret,
              (SELECT count(*)::int FROM pg_cursors) AS cursors,
              (SELECT count(*)::int FROM pg_class WHERE relname = 'leak' AND relnamespace = pg_my_temp_schema()) AS temps`,
    );
    // A custom setting, once defined, survives RESET as an empty placeholder: the value is what must not leak.
    expect(state.rows[0]).toMatchObject({ timeout: '0', cursors: 0, temps: 0 });
    // a's SQL-level PREPARE is gone too (the reset deallocates after SQL-level PREPARE).
    expect(await sqlstateOf(() => b.query('EXECUTE leaked_plan'))).toBe('26000');
    expect(['', null]).toContain(state.rows[0].secret);
  });

  it('hands a server straight to waiting clients, reset in the same write, and nothing of the previous client survives', async () => {
    tp = await startTestProxy({ upstream: { poolSize: 1 } });
    const a = await tp.connect('a', { application_name: 'same-app' });
    const b = await tp.connect('b', { application_name: 'same-app' });
    const c = await tp.connect('b', { application_name: 'same-app' });
    const pid = (await a.query('SELECT pg_backend_pid() AS pid')).rows[0].pid as number;
    await plantSessionState(a);
    const probe =
      "SELECT current_schema() AS s, current_setting('statement_timeout') AS timeout, current_setting('app.secret', true) AS secret, " +
      "current_setting('application_name') AS app, (SELECT count(*)::int FROM pg_cursors WHERE name = 'held') AS cursors, pg_backend_pid() AS pid, " +
      "(SELECT count(*)::int FROM pg_class WHERE relname = 'leak' AND relnamespace = pg_my_temp_schema()) AS temps";
    // Both wait for the only server: b with a simple Query, c with Parse/Bind/Execute/Sync (a parameter).
    const viaQuery = b.query(probe);
    const viaExtended = c.query(`${probe} WHERE $1::int = 1`, [1]);
    await new Promise((resolve) => setTimeout(resolve, 100));
    await a.query('COMMIT');
    for (const result of [await viaQuery, await viaExtended]) {
      // The same server (a pool of one), with the application_name each client gave, which the reset had cleared.
      expect(result.rows[0]).toMatchObject({ s: 'tenant_b', timeout: '0', app: 'same-app', cursors: 0, temps: 0, pid });
      expect(['', null]).toContain(result.rows[0].secret);
    }
    expect(await sqlstateOf(() => b.query('EXECUTE leaked_plan'))).toBe('26000');
    expect((await a.query('SELECT current_setting($1) AS t', ['statement_timeout'])).rows[0].t).toBe('1234ms');
  });

  it("runs a waiting client's statement exactly once when the reset sent ahead of it fails", async () => {
    tp = await startTestProxy({ upstream: { poolSize: 1 } });
    const a = await tp.connect('a');
    const b = await tp.connect('b');
    const admin = await adminClient();
    try {
      // DISCARD TEMP must drop the default that uses a's temp sequence, which needs a lock on the table that
      // another session keeps: the reset in front of b's statement fails (the pool cancels it after 5 s).
      // A table of b's own: other test files read tenant_b.items while this one runs.
      await b.query('CREATE TABLE pipe_once (id int, note text)');
      await a.query('CREATE TABLE pipe_stall (id int, note text)');
      await a.query('CREATE TEMP SEQUENCE pipe_seq');
      await a.query("ALTER TABLE pipe_stall ALTER COLUMN note SET DEFAULT nextval('pipe_seq')::text");
      const pid = (await a.query('SELECT pg_backend_pid() AS pid')).rows[0].pid as number;
      await admin.query('BEGIN');
      await admin.query('SELECT count(*) FROM tenant_a.pipe_stall');
      await a.query('BEGIN');
      const inserted = b.query("INSERT INTO pipe_once VALUES (4242, 'once') RETURNING id, pg_backend_pid() AS pid");
      await new Promise((resolve) => setTimeout(resolve, 100));
      await a.query('COMMIT');
      // PostgreSQL skipped b's INSERT behind the failed reset; the proxy sent it again on a fresh server.
      const row = (await inserted).rows[0];
      expect(row.id).toBe(4242);
      expect(row.pid).not.toBe(pid);
      await admin.query('ROLLBACK');
      expect((await admin.query('SELECT count(*)::int AS n FROM tenant_b.pipe_once WHERE id = 4242')).rows[0].n).toBe(
        1,
      );
    } finally {
      await admin.query('ROLLBACK').catch(() => undefined);
      await admin.query('DROP TABLE IF EXISTS tenant_b.pipe_once');
      await admin.query('DROP TABLE IF EXISTS tenant_a.pipe_stall');
      await admin.end();
    }
  }, 30_000);

  it('resets a parked server for everyone within about a second when its client does not come back', async () => {
    tp = await startTestProxy({ upstream: { poolSize: 1 } });
    const a = await tp.connect('a');
    const pid = (await a.query('SELECT pg_backend_pid() AS pid')).rows[0].pid as number;
    // The pooled server, seen from pg_stat_activity, ran the reset (search_path, role, settings…) after a's statement,
    // which ends by naming it the proxy's again.
    const su = new pg.Client({ connectionString: inject('pg').superuserUrl });
    await su.connect();
    try {
      let last = '';
      const isReset = (q: string): boolean => q === NAME_UNPINNED_SERVER;
      for (let i = 0; i < 200 && !isReset(last); i++) {
        last = (await su.query('SELECT query FROM pg_stat_activity WHERE pid = $1', [pid])).rows[0]?.query ?? '';
        if (!isReset(last)) await new Promise((r) => setTimeout(r, 20));
      }
      expect(isReset(last)).toBe(true);
    } finally {
      await su.end();
    }
  });

  it('refuses search_path changes outside and inside a transaction, keeping both sides in step', async () => {
    tp = await startTestProxy({ upstream: { poolSize: 1 } });
    const a = await tp.connect('a');
    expect(await sqlstateOf(() => a.query('SET search_path TO tenant_b'))).toBe('42501');
    expect((await a.query('SELECT current_schema() AS s')).rows[0].s).toBe('tenant_a');
    await a.query('BEGIN');
    expect(await sqlstateOf(() => a.query('SET search_path TO tenant_b'))).toBe('42501');
    // The refusal aborted the transaction on the server too, as any error would.
    expect(await sqlstateOf(() => a.query('SELECT 1'))).toBe('25P02');
    await a.query('ROLLBACK');
    expect((await a.query('SELECT count(*)::int AS n FROM items')).rows[0].n).toBe(2);
  });
});
