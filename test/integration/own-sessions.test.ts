// A tenant's own sessions (issue 17): pg_stat_activity shows the backends serving the tenant's clients and nothing
// of anyone else's; pg_cancel_backend/pg_terminate_backend reach those backends only, and any other pid is answered
// as one that does not exist. Both tenancy modes; other tenants' pids are found on a direct superuser connection.

import pg from 'pg';
import { afterAll, afterEach, beforeAll, describe, expect, inject, it } from 'vitest';
import { TENANT_MARKER_CLASS } from '../../src/catalog/surfaces.js';
import { withDatabase } from '../support/postgres.js';
import { sqlstateOf, startTestProxy, type TestProxy } from '../support/proxy.js';

interface Mode {
  title: string;
  roles: boolean;
  database: () => string;
  upstreamUrl: () => string | undefined;
}

const MODES: Mode[] = [
  {
    title: 'guard only (every tenant shares the login role)',
    roles: false,
    database: () => inject('pg').database,
    upstreamUrl: () => undefined,
  },
  {
    title: 'tenancy.roles: true',
    roles: true,
    database: () => inject('pgRoles').database,
    upstreamUrl: () => inject('pgRoles').upstreamUrl,
  },
];

/** What PostgreSQL warns for a pid that is no backend. */
const NOT_A_BACKEND = /^PID \d+ is not a PostgreSQL backend process$/;

for (const mode of MODES) {
  describe(`a tenant's own sessions, ${mode.title}`, () => {
    let tp: TestProxy;
    let admin: pg.Client;
    const extra: pg.Client[] = [];

    beforeAll(async () => {
      admin = new pg.Client({ connectionString: withDatabase(inject('pg').superuserUrl, mode.database()) });
      await admin.connect();
      tp = await startTestProxy({ upstream: { poolSize: 6 }, tenancy: { roles: mode.roles } }, mode.upstreamUrl());
    });

    afterAll(async () => {
      await tp?.close();
      await admin?.end();
    });

    afterEach(async () => {
      await Promise.all(extra.splice(0).map((c) => c.end().catch(() => undefined)));
    });

    /** A client of `tenant` through `proxy`, ended after the test. */
    async function connect(tenant: string, proxy = tp): Promise<pg.Client> {
      const client = await proxy.connect(tenant);
      extra.push(client);
      return client;
    }

    /** The pid of the backend running exactly `query` right now, seen by the superuser (waits for it to start). */
    async function runningPid(query: string): Promise<number> {
      const deadline = Date.now() + 5000;
      for (;;) {
        const { rows } = await admin.query("SELECT pid FROM pg_stat_activity WHERE state = 'active' AND query = $1", [
          query,
        ]);
        if (rows.length === 1) return rows[0].pid as number;
        if (Date.now() > deadline) throw new Error(`never started: ${query}`);
        await new Promise((r) => setTimeout(r, 20));
      }
    }

    /** Runs `sql` and returns its rows with the notices it raised. */
    async function withNotices(
      client: pg.Client,
      sql: string | pg.QueryConfig,
      values?: unknown[],
    ): Promise<{ rows: Record<string, unknown>[]; notices: string[] }> {
      const notices: string[] = [];
      const onNotice = (n: { message?: string }): void => void notices.push(n.message ?? '');
      client.on('notice', onNotice);
      try {
        const { rows } = await client.query(sql as string, values);
        return { rows, notices };
      } finally {
        client.off('notice', onNotice);
      }
    }

    it("cannot stall b's pins by holding b's marker key exclusively", async () => {
      const { rows } = await admin.query<{ oid: number }>(
        "SELECT oid::int4 AS oid FROM pg_namespace WHERE nspname = 'tenant_b'",
      );
      const a = await connect('a');
      await a.query('BEGIN');
      await a.query('SELECT pg_advisory_xact_lock($1::int4, $2::int4)', [TENANT_MARKER_CLASS, rows[0]!.oid]);
      const b = await connect('b');
      const answered = await Promise.race([
        b.query('SELECT 1 AS one').then((r) => r.rows[0]),
        new Promise((resolve) => setTimeout(() => resolve('stalled'), 5000)),
      ]);
      expect(answered).toEqual({ one: 1 });
      await a.query('ROLLBACK');
    });

    it("shows a's other client's running query, pid and state, and never b's", async () => {
      const a1 = await connect('a');
      const b1 = await connect('b');
      const aSleep = 'SELECT pg_sleep(30) /* a-sleeps */';
      const bSleep = 'SELECT pg_sleep(30) /* b-sleeps */';
      const aRunning = a1.query(aSleep).catch((e: unknown) => e);
      const bRunning = b1.query(bSleep).catch((e: unknown) => e);
      const aPid = await runningPid(aSleep);
      const bPid = await runningPid(bSleep);

      const a2 = await connect('a');
      const { rows } = await a2.query('SELECT pid, state, query, pg_backend_pid() AS me FROM pg_stat_activity');
      const mine = rows.find((r) => r.pid === aPid);
      expect(mine).toMatchObject({ state: 'active', query: aSleep });
      // Its own backend too, as on a direct connection.
      expect(rows.some((r) => r.pid === r.me)).toBe(true);
      expect(rows.some((r) => r.pid === bPid)).toBe(false);
      expect(JSON.stringify(rows)).not.toContain('b-sleeps');
      // Qualified, and by pid: b's backend does not exist for a.
      const byPid = await a2.query('SELECT count(*)::int AS n FROM pg_catalog.pg_stat_activity WHERE pid = $1', [bPid]);
      expect(byPid.rows[0].n).toBe(0);

      // a cancels its own other client's statement the way driver test helpers do.
      const cancelled = await a2.query(
        'SELECT pid, (SELECT pg_cancel_backend(pid)) AS killed FROM pg_stat_activity WHERE query LIKE $1',
        ['%a-sleeps%'],
      );
      expect(cancelled.rows.filter((r) => r.pid === aPid)).toEqual([{ pid: aPid, killed: true }]);
      expect(((await aRunning) as { code?: string }).code).toBe('57014');
      // a1 keeps its connection; b's statement is untouched.
      expect((await a1.query('SELECT 1 AS one')).rows).toEqual([{ one: 1 }]);
      expect((await admin.query('SELECT state FROM pg_stat_activity WHERE pid = $1', [bPid])).rows[0].state).toBe(
        'active',
      );
      await admin.query('SELECT pg_cancel_backend($1)', [bPid]);
      await bRunning;
    });

    it("refuses b's pid as one that does not exist: a literal, a parameter, a prepared statement", async () => {
      const b1 = await connect('b');
      const bSleep = 'SELECT pg_sleep(30) /* b-victim */';
      const bRunning = b1.query(bSleep).catch((e: unknown) => e);
      const bPid = await runningPid(bSleep);
      const a = await connect('a');

      for (const [sql, values] of [
        [`SELECT pg_cancel_backend(${bPid}) AS r`, undefined],
        [`SELECT pg_catalog.pg_terminate_backend(${bPid}) AS r`, undefined],
        ['SELECT pg_cancel_backend($1) AS r', [bPid]],
        ['SELECT pg_terminate_backend($1) AS r', [bPid]],
        ['SELECT pg_terminate_backend($1, 1000) AS r', [bPid]],
        [{ name: 'kill_by_pid', text: 'SELECT pg_terminate_backend($1) AS r', values: [bPid] }, undefined],
      ] as Array<[string | pg.QueryConfig, unknown[] | undefined]>) {
        const { rows, notices } = await withNotices(a, sql, values);
        expect(rows, JSON.stringify(sql)).toEqual([{ r: false }]);
        expect(notices, JSON.stringify(sql)).toEqual([`PID ${bPid} is not a PostgreSQL backend process`]);
      }
      // The same answer PostgreSQL gives for a pid that is no backend at all.
      const none = await withNotices(a, 'SELECT pg_cancel_backend(1) AS r');
      expect(none.rows).toEqual([{ r: false }]);
      expect(none.notices[0]).toMatch(NOT_A_BACKEND);

      expect((await admin.query('SELECT state, query FROM pg_stat_activity WHERE pid = $1', [bPid])).rows[0]).toEqual({
        state: 'active',
        query: bSleep,
      });
      await admin.query('SELECT pg_cancel_backend($1)', [bPid]);
      expect(((await bRunning) as { code?: string }).code).toBe('57014');
    });

    it('terminates another of its clients: that connection ends, other sessions keep working', async () => {
      const victim = await connect('a');
      const errors: Array<{ code?: string }> = [];
      victim.on('error', (e) => errors.push(e as { code?: string }));
      const ended = new Promise<void>((resolve) => victim.once('end', () => resolve()));
      const sleep = 'SELECT pg_sleep(30) /* a-victim */';
      const running = victim.query(sleep).catch((e: unknown) => e);
      await runningPid(sleep);
      const b = await connect('b');

      const killer = await connect('a');
      const { rows } = await killer.query(
        'SELECT pg_terminate_backend(pid) AS killed FROM pg_stat_activity WHERE query = $1',
        [sleep],
      );
      expect(rows).toEqual([{ killed: true }]);
      expect(((await running) as { code?: string }).code).toBe('57P01');
      await ended;
      expect(await sqlstateOf(() => victim.query('SELECT 1'))).not.toBe('');
      expect((await killer.query('SELECT count(*)::int AS n FROM items')).rows[0].n).toBe(2);
      expect((await b.query('SELECT count(*)::int AS n FROM items')).rows[0].n).toBe(3);
      // The tenant may end its own session too (node-postgres's own test helpers do).
      const self = await connect('a');
      self.on('error', () => undefined);
      expect(await sqlstateOf(() => self.query('SELECT pg_terminate_backend(pg_backend_pid())'))).toBe('57P01');
    });

    it("a pid a knew goes stale once its server is reset: b's next transaction there is never signalled", async () => {
      // One server: a's client leaves, the server is reset and serves b; a (through another proxy) still has its pid.
      const single = await startTestProxy(
        { upstream: { poolSize: 1 }, tenancy: { roles: mode.roles } },
        mode.upstreamUrl(),
      );
      try {
        const a1 = await single.connect('a');
        const pid = (await a1.query('SELECT pg_backend_pid() AS pid')).rows[0].pid as number;
        await a1.end();
        const b = await single.connect('b');
        await b.query('BEGIN');
        expect((await b.query('SELECT pg_backend_pid() AS pid')).rows[0].pid).toBe(pid);
        const a2 = await connect('a');
        for (const sql of ['SELECT pg_cancel_backend($1) AS r', 'SELECT pg_terminate_backend($1) AS r']) {
          const { rows, notices } = await withNotices(a2, sql, [pid]);
          expect(rows).toEqual([{ r: false }]);
          expect(notices[0]).toMatch(NOT_A_BACKEND);
        }
        expect(
          (await a2.query('SELECT count(*)::int AS n FROM pg_stat_activity WHERE pid = $1', [pid])).rows[0].n,
        ).toBe(0);
        expect((await b.query('SELECT count(*)::int AS n FROM items')).rows[0].n).toBe(3);
        await b.query('COMMIT');
      } finally {
        await single.close();
      }
    });

    it('the proxy-held marker does not show in the tenant’s own pg_locks', async () => {
      const a = await connect('a');
      const { rows } = await a.query(
        "SELECT count(*)::int AS n FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid()",
      );
      expect(rows[0].n).toBe(0);
    });
  });
}
