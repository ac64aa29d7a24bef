// Session settings behave as on a dedicated connection although every transaction may land on another server.
import pg from 'pg';
import { afterEach, describe, expect, it } from 'vitest';
import { sqlstateOf, startTestProxy, type TestProxy } from '../support/proxy.js';

let tp: TestProxy | null = null;
afterEach(async () => {
  await tp?.close();
  tp = null;
});

const show = async (client: pg.Client, name: string): Promise<string> =>
  (await client.query(`SELECT pg_catalog.current_setting('${name}', true) AS v`)).rows[0].v as string;

/**
 * Two clients, one server: every statement of `b` needs the server `a` just used, so the server is reset between
 * them and `a`'s next statement runs after a fresh pin — the case where poolers lose or leak session state.
 */
async function twoClientsOneServer(): Promise<{ a: pg.Client; b: pg.Client; handOver: () => Promise<void> }> {
  tp = await startTestProxy({ upstream: { poolSize: 1 } });
  const a = await tp.connect('a');
  const b = await tp.connect('b');
  const defaults = {
    statement_timeout: await show(b, 'statement_timeout'),
    work_mem: await show(b, 'work_mem'),
  };
  expect(defaults).toEqual({ statement_timeout: '0', work_mem: '4MB' });
  return {
    a,
    b,
    // b takes the server: a's session state must not be visible to b, and must not be lost for a.
    handOver: async () => {
      expect(await show(b, 'statement_timeout')).toBe('0');
      expect(await show(b, 'work_mem')).toBe('4MB');
      expect(await show(b, 'app.user_id')).toBeOneOf([null, '']);
    },
  };
}

describe('session settings in transaction mode', () => {
  it('keeps a session-level SET for its client on every server, and never shows it to another client', async () => {
    const { a, b, handOver } = await twoClientsOneServer();
    await a.query("SET statement_timeout = '1234ms'");
    await a.query("SET work_mem TO '7MB'");
    await a.query("SET app.user_id = '42'");
    for (let i = 0; i < 3; i++) {
      await handOver();
      expect(await show(a, 'statement_timeout')).toBe('1234ms');
      expect((await a.query('SHOW work_mem')).rows[0].work_mem).toBe('7MB');
      expect(await show(a, 'app.user_id')).toBe('42');
    }
    // The setting is in force, not just reported: a statement over the timeout is cancelled.
    await expect(a.query('SELECT pg_sleep(2)')).rejects.toMatchObject({ code: '57014' });
    expect(await show(b, 'statement_timeout')).toBe('0');
  });

  it('drops a SET inside a transaction that rolls back, and never keeps SET LOCAL', async () => {
    const { a, handOver } = await twoClientsOneServer();
    await a.query('BEGIN');
    await a.query("SET work_mem = '9MB'");
    expect(await show(a, 'work_mem')).toBe('9MB');
    await a.query('ROLLBACK');
    await a.query('BEGIN');
    await a.query("SET LOCAL statement_timeout = '3s'");
    expect(await show(a, 'statement_timeout')).toBe('3s');
    await a.query('COMMIT');
    await handOver();
    expect(await show(a, 'work_mem')).toBe('4MB');
    expect(await show(a, 'statement_timeout')).toBe('0');

    // A SET committed inside a transaction block does persist; one in an aborted block does not.
    await a.query('BEGIN');
    await a.query("SET work_mem = '11MB'");
    await a.query('COMMIT');
    await a.query('BEGIN');
    await a.query("SET statement_timeout = '5s'");
    await expect(a.query('SELECT 1/0')).rejects.toMatchObject({ code: '22012' });
    await a.query('COMMIT');
    await handOver();
    expect(await show(a, 'work_mem')).toBe('11MB');
    expect(await show(a, 'statement_timeout')).toBe('0');
  });

  it('follows set_config(…, false), RESET and SET … TO DEFAULT', async () => {
    const { a, handOver } = await twoClientsOneServer();
    await a.query("SELECT pg_catalog.set_config('app.region', 'eu-west', false)");
    await a.query("SELECT pg_catalog.set_config('app.request', 'r-1', true)");
    await a.query("SET work_mem = '12MB'");
    await a.query("SET lock_timeout = '4s'");
    await handOver();
    expect(await show(a, 'app.region')).toBe('eu-west');
    expect(await show(a, 'app.request')).toBeOneOf([null, '']);
    await a.query('RESET work_mem');
    await a.query('SET lock_timeout TO DEFAULT');
    await handOver();
    expect(await show(a, 'work_mem')).toBe('4MB');
    expect(await show(a, 'lock_timeout')).toBe('0');
    expect(await show(a, 'app.region')).toBe('eu-west');
  });

  it('returns RESET settings to the values the client gave at startup, on every server', async () => {
    tp = await startTestProxy({ upstream: { poolSize: 1 } });
    const a = await tp.connect('a', { options: '-c statement_timeout=2500 -c TimeZone=Asia/Tokyo' });
    const b = await tp.connect('b');
    expect(await show(a, 'statement_timeout')).toBe('2500ms');
    await a.query("SET statement_timeout = '1s'");
    await a.query("SET TimeZone = 'UTC'");
    expect(await show(a, 'TimeZone')).toBe('UTC');
    await a.query('RESET statement_timeout');
    await a.query('SET TimeZone TO DEFAULT');
    for (let i = 0; i < 2; i++) {
      expect(await show(a, 'statement_timeout')).toBe('2500ms');
      expect(await show(a, 'TimeZone')).toBe('Asia/Tokyo');
      // b takes the server in between: a's values never reach it, and a gets them back on its next server.
      expect(await show(b, 'statement_timeout')).toBe('0');
      expect(await show(b, 'TimeZone')).not.toBe('Asia/Tokyo');
    }
  });

  it('tells the client a reported setting only when it changes, not each time a pin re-applies it', async () => {
    tp = await startTestProxy({ upstream: { poolSize: 1 } });
    const a = await tp.connect('a', { application_name: 'probe-app' });
    const b = await tp.connect('b');
    const told: string[] = [];
    (a as unknown as { connection: NodeJS.EventEmitter }).connection.on(
      'parameterStatus',
      (m: { parameterName: string; parameterValue: string }) => told.push(`${m.parameterName}=${m.parameterValue}`),
    );
    for (let i = 0; i < 3; i++) {
      // b's statement takes the server, so each of a's is pinned afresh, application_name SET again.
      await b.query('SELECT 1');
      expect((await a.query('SELECT pg_catalog.current_setting($1) AS v', ['application_name'])).rows[0].v).toBe(
        'probe-app',
      );
    }
    expect(told).toEqual([]);
    await a.query("SET application_name = 'renamed'");
    await b.query('SELECT 1');
    await a.query('SELECT 1');
    expect(told).toEqual(['application_name=renamed']);
  });

  it('carries settings changed through the extended protocol and by several clients of one tenant apart', async () => {
    tp = await startTestProxy({ upstream: { poolSize: 1 } });
    const a1 = await tp.connect('a');
    const a2 = await tp.connect('a');
    await a1.query({ text: "SELECT pg_catalog.set_config('app.who', $1, false)", values: ['first'] });
    await a2.query({ text: "SELECT pg_catalog.set_config('app.who', $1, false)", values: ['second'] });
    for (let i = 0; i < 3; i++) {
      expect(await show(a1, 'app.who')).toBe('first');
      expect(await show(a2, 'app.who')).toBe('second');
    }
  });

  it('refuses a statement that would take a session past 1,000 distinct custom settings (each is re-applied on every pin)', async () => {
    tp = await startTestProxy({ upstream: { poolSize: 1 } });
    const a = await tp.connect('a');
    const b = await tp.connect('a');
    await a.query(Array.from({ length: 1000 }, (_, i) => `SET app.s${i} = 'v${i}'`).join('; '));
    expect(await sqlstateOf(() => a.query("SET app.one_too_many = 'x'"))).toBe('54000');
    expect(await sqlstateOf(() => a.query("SELECT pg_catalog.set_config('app.another', 'x', false)"))).toBe('54000');
    // The settings it has keep working and following it; another client has its own budget.
    await a.query("SET app.s999 = 'changed'");
    expect(await show(b, 'app.s1')).toBeOneOf([null, '']);
    expect(await show(a, 'app.s999')).toBe('changed');
    expect(await show(a, 'app.s0')).toBe('v0');
    expect(await show(a, 'app.one_too_many')).toBeOneOf([null, '']);
    await b.query("SET app.one_too_many = 'fine'");
    expect(await show(b, 'app.one_too_many')).toBe('fine');
  });
});

describe('a pin that fails', () => {
  /**
   * A client plants a setting that held when it ran but fails when the proxy applies it on the next server: a text
   * search configuration of its own schema, dropped after the SET. Its next statement rides behind that pin.
   */
  async function plantFailingPin(): Promise<{ a: pg.Client; b: pg.Client }> {
    tp = await startTestProxy({ upstream: { poolSize: 1 } });
    const a = await tp.connect('a');
    a.on('error', () => undefined); // the FATAL ends a's connection
    const b = await tp.connect('b');
    await a.query('CREATE TEXT SEARCH CONFIGURATION pin_probe (COPY = pg_catalog.simple)');
    await a.query("SET default_text_search_config = 'tenant_a.pin_probe'");
    await a.query('DROP TEXT SEARCH CONFIGURATION pin_probe');
    expect(await show(a, 'default_text_search_config')).toBe('tenant_a.pin_probe');
    return { a, b };
  }

  const itemCount = async (): Promise<number> => {
    const check = await tp!.connect('a');
    const n = (await check.query('SELECT count(*)::int AS n FROM tenant_a.items')).rows[0].n as number;
    await check.end();
    return n;
  };

  it('on a server handed over from another client: the statement behind it never runs, the client hears why', async () => {
    const { a, b } = await plantFailingPin();
    await b.query('SELECT 1'); // b takes the server and keeps it parked; a's next statement gets it handed over
    const before = await itemCount();
    await b.query('SELECT 1');
    await expect(a.query("INSERT INTO tenant_a.items VALUES (1001, 'behind a failed pin')")).rejects.toMatchObject({
      code: '22023',
    });
    expect(await itemCount()).toBe(before);
    // b is served on, and its session has none of a's.
    expect(await show(b, 'default_text_search_config')).not.toBe('tenant_a.pin_probe');
  });

  it('on an idle server: the statement behind it never runs, the client hears why', async () => {
    const { a, b } = await plantFailingPin();
    await b.query('SELECT 1');
    await b.end(); // the server is reset and idle when a comes back
    const before = await itemCount();
    await expect(a.query("INSERT INTO tenant_a.items VALUES (1002, 'behind a failed pin')")).rejects.toMatchObject({
      code: '22023',
    });
    expect(await itemCount()).toBe(before);
    expect(tp!.proxy.pool.stats().active).toBe(0);
  });
});

describe('session pooling mode', () => {
  const pid = async (client: pg.Client): Promise<number> =>
    (await client.query('SELECT pg_backend_pid() AS p')).rows[0].p as number;

  it('keeps one server for the whole client session: temp tables, WITH HOLD cursors, one backend pid', async () => {
    tp = await startTestProxy({ upstream: { poolSize: 2 }, pool: { mode: 'session' } });
    const a = await tp.connect('a');
    const b = await tp.connect('b');
    const first = await pid(a);
    await a.query('CREATE TEMP TABLE scratch (n int)');
    await a.query('INSERT INTO scratch VALUES (1), (2)');
    await a.query('BEGIN');
    await a.query('DECLARE held CURSOR WITH HOLD FOR SELECT n FROM scratch ORDER BY n');
    await a.query('COMMIT');
    // b works in between on the other server; a's session is untouched.
    expect((await b.query('SELECT count(*)::int AS n FROM items')).rows[0].n).toBe(3);
    expect(await pid(b)).not.toBe(first);
    expect((await a.query('FETCH 1 FROM held')).rows).toEqual([{ n: 1 }]);
    expect((await a.query('SELECT count(*)::int AS n FROM scratch')).rows[0].n).toBe(2);
    expect(await pid(a)).toBe(first);
    expect((await a.query('SELECT current_schema() AS s')).rows[0].s).toBe('tenant_a');
  });

  it('makes later clients wait for a server, and resets it before the next one gets it', async () => {
    tp = await startTestProxy({ upstream: { poolSize: 1, queueTimeoutMs: 500 }, pool: { mode: 'session' } });
    const a = await tp.connect('a');
    await a.query('CREATE TEMP TABLE mine (n int)');
    await a.query("SET work_mem = '13MB'");
    const b = await tp.connect('b');
    // The only server belongs to a's session: b's statement times out in the queue (53300).
    await expect(b.query('SELECT 1')).rejects.toMatchObject({ code: '53300' });
    await a.end();
    expect((await b.query('SELECT current_schema() AS s')).rows[0].s).toBe('tenant_b');
    expect((await b.query("SELECT count(*)::int AS n FROM pg_catalog.pg_class WHERE relname = 'mine'")).rows[0].n).toBe(
      0,
    );
    expect(await show(b, 'work_mem')).toBe('4MB');
  });

  it('serves only the tenants in pool.sessionTenants in session mode', async () => {
    tp = await startTestProxy({ upstream: { poolSize: 2 }, pool: { sessionTenants: ['a'] } });
    const a = await tp.connect('a');
    const b1 = await tp.connect('b');
    const b2 = await tp.connect('b');
    const held = await pid(a);
    // a holds one server; the two b clients share the other in transaction mode.
    const pids = new Set([await pid(b1), await pid(b2), await pid(b1)]);
    expect(pids.size).toBe(1);
    expect(pids.has(held)).toBe(false);
    expect(await pid(a)).toBe(held);
  });

  it('lets a SIGTERM-style drain finish without waiting for idle session-mode clients', async () => {
    tp = await startTestProxy({ upstream: { poolSize: 1 }, pool: { mode: 'session' } });
    const a = await tp.connect('a');
    await a.query('SELECT 1');
    const started = Date.now();
    await tp.proxy.close(10_000);
    expect(Date.now() - started).toBeLessThan(2000);
    tp = null;
  });
});
