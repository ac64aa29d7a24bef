// Per-tenant limits inside the shared pool (issue 20): maxServers under a burst, round-robin fairness between tenants,
// maxClients (53300) and maxWaiting (53400), the rate budget, the proxy's own statement and idle-in-transaction
// timeouts, limits changed at run time (the `tenants limits` verb, a reload), and the verb's refusals of bad input.
// Assertions are on order, counts and codes; the only times asserted are lower bounds a slow machine cannot break.
import { writeFileSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { stringify } from 'yaml';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { runTenants } from '../../src/cli/tenants.js';
import { createTenant } from '../../src/tenants/lifecycle-api.js';
import { bind, errorFields, execute, parse, sync } from '../support/frames.js';
import { RawClient } from '../support/raw-client.js';
import { sqlstateOf, startTestProxy, TEST_SECRET, testConfig, type TestProxy } from '../support/proxy.js';
import { createRegistryDatabase, type RegistryDatabase } from '../support/registry.js';

let tp: TestProxy | null = null;
afterEach(async () => {
  await tp?.close();
  tp = null;
});

// A database of its own: other test files count and signal the shared fixture's tenants' backends.
let rdb: RegistryDatabase;
let dir: string;
beforeAll(async () => {
  rdb = await createRegistryDatabase('pgtp_limits');
  dir = mkdtempSync(join(tmpdir(), 'pgtp-limits-'));
  const config = testConfig({ admin: { url: rdb.adminUrl } }, rdb.upstreamUrl);
  for (const id of ['lim_a', 'lim_b']) await createTenant(config, id, { actor: 'limits-test' });
  const db = await rdb.connect();
  try {
    await db.query(
      "CREATE TABLE tenant_lim_a.items (id int PRIMARY KEY, name text); INSERT INTO tenant_lim_a.items VALUES (1, 'one'), (2, 'two')",
    );
  } finally {
    await db.end();
  }
}, 60_000);
afterAll(async () => {
  await rdb?.drop(['tenant_lim_']);
});

type Limits = Record<string, number>;

function limitsProxy(defaults: Limits, extra: { poolSize?: number; queueTimeoutMs?: number } = {}): Promise<TestProxy> {
  return startTestProxy(
    {
      upstream: {
        url: rdb.upstreamUrl,
        poolSize: extra.poolSize ?? 4,
        ...(extra.queueTimeoutMs && { queueTimeoutMs: extra.queueTimeoutMs }),
      },
      limits: { default: defaults },
    },
    rdb.upstreamUrl,
  );
}

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

/** A promise's outcome without awaiting it: settled yet, and its error. */
function track<T>(p: Promise<T>): { settled: boolean; error: (Error & { code?: string }) | null; done: Promise<void> } {
  const state = { settled: false, error: null as (Error & { code?: string }) | null, done: Promise.resolve() };
  state.done = p.then(
    () => {
      state.settled = true;
    },
    (err: Error & { code?: string }) => {
      state.settled = true;
      state.error = err;
    },
  );
  return state;
}

function metricValue(text: string, name: string, labels: string): number {
  const line = text.split('\n').find((l) => l.startsWith(`${name}{${labels}}`));
  return line === undefined ? 0 : Number(line.split(' ').pop());
}

describe('maxServers and fair queueing', () => {
  it('a burst of one tenant never holds more than maxServers servers, while another tenant is served at once', async () => {
    tp = await limitsProxy({ maxServers: 2 }, { poolSize: 6 });
    const burst = await Promise.all(Array.from({ length: 8 }, () => tp!.connect('lim_a')));
    const b = await tp.connect('lim_b');
    const admin = await rdb.connect();
    try {
      const running = burst.map((c) => track(c.query('SELECT pg_sleep(0.3) AS burst_marker')));
      let most = 0;
      let servedB = false;
      while (!running.every((r) => r.settled)) {
        const { rows } = await admin.query(
          "SELECT count(*)::int AS n FROM pg_stat_activity WHERE state = 'active' AND query LIKE '%AS burst_marker%' AND pid <> pg_backend_pid()",
        );
        most = Math.max(most, rows[0].n as number);
        if (!servedB) {
          // Served while tenant a's burst still waits: a's queue does not hold it up.
          expect((await b.query('SELECT current_schema() AS s')).rows[0].s).toBe('tenant_lim_b');
          expect(running.some((r) => !r.settled)).toBe(true);
          servedB = true;
        }
        await sleep(20);
      }
      expect(running.filter((r) => r.error !== null)).toEqual([]);
      expect(most).toBeLessThanOrEqual(2);
      expect(most).toBeGreaterThan(0);
      const metrics = await tp.proxy.metrics.text();
      expect(metricValue(metrics, 'pgtp_tenant_queued_total', 'tenant="lim_a"')).toBeGreaterThanOrEqual(6);
    } finally {
      await admin.end();
    }
  });

  it('a freed server goes to the next tenant in turn: a trickle of one tenant is not stuck behind a burst of another', async () => {
    tp = await limitsProxy({}, { poolSize: 2 });
    const burst = await Promise.all(Array.from({ length: 16 }, () => tp!.connect('lim_a')));
    const trickle = await tp.connect('lim_b');
    const order: string[] = [];
    const running = burst.map((c, i) =>
      c.query('SELECT pg_sleep(0.05)').then(() => {
        order.push(`a${i}`);
      }),
    );
    await sleep(30);
    const behind: number[] = [];
    for (let i = 0; i < 4; i++) {
      const before = order.length;
      await trickle.query('SELECT 1');
      order.push(`b${i}`);
      // Tenant a's transactions finished while b's one waited: the two running when it came, and at most a turn.
      behind.push(order.length - 1 - before);
    }
    await Promise.all(running);
    expect(behind.every((n) => n <= 4)).toBe(true);
    // The trickle was really interleaved with the burst, not run after it.
    expect(order.indexOf('b3')).toBeLessThan(order.length - 1);
  });

  it('raising maxServers at run time serves the transactions its old limit held back at once', async () => {
    tp = await limitsProxy({ maxServers: 1 });
    const holder = await tp.connect('lim_a');
    const waiter = await tp.connect('lim_a');
    await holder.query('BEGIN');
    const waiting = track(waiter.query('SELECT 1'));
    await sleep(100);
    expect(waiting.settled).toBe(false);
    await tp.proxy.reload(
      testConfig(
        { upstream: { url: rdb.upstreamUrl, poolSize: 4 }, limits: { default: { maxServers: 2 } } },
        rdb.upstreamUrl,
      ),
    );
    await waiting.done;
    expect(waiting.error).toBeNull();
    await holder.query('COMMIT');
  });

  it('a tenant at maxServers through a server parked for its idle client gets that server, not a new one or a stall', async () => {
    tp = await limitsProxy({ maxServers: 1 });
    const first = await tp.connect('lim_a');
    const second = await tp.connect('lim_a');
    const pid = (await first.query('SELECT pg_backend_pid() AS pid')).rows[0].pid as number;
    // first's server is parked for it and counts as held: second's transaction is handed that server.
    expect((await second.query('SELECT pg_backend_pid() AS pid')).rows[0].pid).toBe(pid);
    expect((await first.query('SELECT pg_backend_pid() AS pid')).rows[0].pid).toBe(pid);
    const stats = tp.proxy.pool.stats();
    expect(stats.idle + stats.parked + stats.active + stats.resetting + stats.connecting).toBe(1);
  });

  it('parking does not let a busy tenant keep servers while another waits (the queue, not the park, decides)', async () => {
    tp = await limitsProxy({}, { poolSize: 1 });
    const a = await tp.connect('lim_a');
    const b = await tp.connect('lim_b');
    await a.query('BEGIN');
    const waiting = track(b.query('SELECT 1'));
    await sleep(50);
    // a's transaction ends and a's next one comes at once: b waited first, so b goes first.
    await a.query('COMMIT');
    await a.query('SELECT 1');
    await waiting.done;
    expect(waiting.error).toBeNull();
  });
});

describe('maxClients and maxWaiting', () => {
  it('refuses a connection past maxClients with FATAL 53300 naming the tenant and its limit; others are not counted', async () => {
    tp = await limitsProxy({ maxClients: 2 });
    const one = await tp.connect('lim_a');
    await tp.connect('lim_a');
    const err = await sqlstateOrError(() => tp!.connect('lim_a'));
    expect(err).toMatchObject({
      code: '53300',
      message: 'too many connections for tenant "lim_a": its limit is 2 (maxClients)',
    });
    // Another tenant has its own count.
    await tp.connect('lim_b');
    await one.end();
    await eventually(() => tp!.connect('lim_a'));
  });

  it('refuses a transaction past maxWaiting with ERROR 53400; the client stays connected and goes on', async () => {
    tp = await limitsProxy({ maxServers: 1, maxWaiting: 1 });
    const holder = await tp.connect('lim_a');
    const waiter = await tp.connect('lim_a');
    const third = await tp.connect('lim_a');
    await holder.query('BEGIN');
    const waiting = track(waiter.query('SELECT 1'));
    await sleep(50);
    const err = await sqlstateOrError(() => third.query('SELECT 1'));
    expect(err).toMatchObject({
      code: '53400',
      message: 'too many transactions of tenant "lim_a" waiting: its limit is 1 (maxWaiting)',
    });
    await holder.query('COMMIT');
    await waiting.done;
    expect(waiting.error).toBeNull();
    expect((await third.query('SELECT 2 AS n')).rows[0].n).toBe(2);
  });
});

describe('rate budget', () => {
  it('transactions beyond transactionsPerSecond wait for their token; past queueTimeoutMs they get 53400 naming the budget', async () => {
    tp = await limitsProxy({ transactionsPerSecond: 5 });
    const a = await tp.connect('lim_a');
    const since = Date.now();
    // A second's burst (5) at once, then 5 per second: 15 take at least 2 s.
    for (let i = 0; i < 15; i++) await a.query('SELECT 1');
    expect(Date.now() - since).toBeGreaterThanOrEqual(1500);
    const metrics = await tp.proxy.metrics.text();
    expect(metricValue(metrics, 'pgtp_tenant_throttled_total', 'tenant="lim_a"')).toBeGreaterThanOrEqual(5);
    await tp.close();

    tp = await limitsProxy({ transactionsPerSecond: 1 }, { queueTimeoutMs: 500 });
    const clients = await Promise.all(Array.from({ length: 4 }, () => tp!.connect('lim_a')));
    const results = await Promise.all(
      clients.map((c) =>
        c.query('SELECT 1').then(
          () => null,
          (e: Error) => e,
        ),
      ),
    );
    const refused = results.filter((r) => r !== null) as Array<Error & { code?: string }>;
    expect(refused.length).toBeGreaterThanOrEqual(2);
    expect(refused[0]).toMatchObject({
      code: '53400',
      message: 'tenant "lim_a" is over its budget of 1 transactions per second (transactionsPerSecond)',
    });
    // Another tenant has its own budget.
    expect((await (await tp.connect('lim_b')).query('SELECT 1 AS n')).rows[0].n).toBe(1);
  });
});

describe('timeouts the tenant cannot raise', () => {
  it('cancels a statement past statementTimeoutMs with 57014, despite SET statement_timeout = 0, a startup parameter or a function SET', async () => {
    tp = await limitsProxy({ statementTimeoutMs: 300 }, { poolSize: 1 });
    const a = await tp.connect('lim_a');
    await a.query('SET statement_timeout = 0');
    const err = await sqlstateOrError(() => a.query('SELECT pg_sleep(5)'));
    expect(err).toMatchObject({ code: '57014', message: 'canceling statement due to statement timeout' });
    // The session goes on, inside a transaction too.
    expect((await a.query('SELECT 1 AS n')).rows[0].n).toBe(1);
    await a.query('BEGIN');
    expect(await sqlstateOf(() => a.query('SELECT pg_sleep(5)'))).toBe('57014');
    await a.query('ROLLBACK');

    const viaStartup = await tp.connect('lim_a', { options: '-c statement_timeout=0' });
    expect((await viaStartup.query('SHOW statement_timeout')).rows[0].statement_timeout).toBe('0');
    expect(await sqlstateOf(() => viaStartup.query('SELECT pg_sleep(5)'))).toBe('57014');

    // Behind a server handed over unreset (its reset and the pin pipelined in front of the statement).
    const b = await tp.connect('lim_b');
    await b.query('BEGIN');
    const handedOver = track(viaStartup.query('SELECT pg_sleep(5)'));
    await sleep(50);
    await b.query('COMMIT');
    await handedOver.done;
    expect(handedOver.error?.code).toBe('57014');

    await a.query(
      'CREATE OR REPLACE FUNCTION slow_limits_test() RETURNS void LANGUAGE sql SET statement_timeout = 0 AS $$ SELECT pg_sleep(5) $$',
    );
    try {
      expect(await sqlstateOf(() => a.query('SELECT slow_limits_test()'))).toBe('57014');
    } finally {
      await a.query('DROP FUNCTION slow_limits_test()');
    }
  });

  it('a cancel for a statement that finished just in time never hits the statement after it', async () => {
    tp = await limitsProxy({ statementTimeoutMs: 100 }, { poolSize: 1 });
    const a = await tp.connect('lim_a');
    let cancelled = 0;
    for (let i = 0; i < 12; i++) {
      // Around the timeout: sometimes cancelled, sometimes not; the statement right behind it must always run.
      await a.query(`SELECT pg_sleep(${0.085 + (i % 4) * 0.01})`).catch((e: Error & { code?: string }) => {
        expect(e.code).toBe('57014');
        cancelled++;
      });
      expect((await a.query('SELECT 42 AS n')).rows[0].n).toBe(42);
    }
    expect(cancelled).toBeLessThan(12);
  });

  it('a timed-out statement with more pipelined behind it ends the connection (FATAL 57014) rather than risk cancelling one of them', async () => {
    tp = await limitsProxy({ statementTimeoutMs: 300 });
    const raw = await RawClient.connect(tp.port);
    raw.startup({ user: 'app', database: 'pgtp_limits', tenant_token: await tp.token('lim_a') });
    await raw.waitFor('Z');
    raw.messages.length = 0;
    raw.socket.write(
      Buffer.concat([
        parse('', 'SELECT pg_sleep(5)'),
        bind(''),
        execute,
        sync,
        parse('', 'SELECT 1'),
        bind(''),
        execute,
        sync,
      ]),
    );
    const error = await raw.waitFor('E');
    expect(errorFields(error!)).toMatchObject({
      S: 'FATAL',
      C: '57014',
      M: 'terminating connection due to statement timeout',
    });
    for (let i = 0; i < 50 && !raw.closed; i++) await sleep(20);
    expect(raw.closed).toBe(true);
    // Other clients of the tenant go on.
    expect((await (await tp.connect('lim_a')).query('SELECT 1 AS n')).rows[0].n).toBe(1);
  });

  it('ends a client idle in a transaction past idleInTransactionTimeoutMs with FATAL 25P03 and rolls its transaction back', async () => {
    tp = await limitsProxy({ idleInTransactionTimeoutMs: 300 }, { poolSize: 1 });
    const a = await tp.connect('lim_a');
    const ended = new Promise<Error & { code?: string }>((resolve) => a.on('error', resolve));
    await a.query('BEGIN');
    await a.query("INSERT INTO items VALUES (9001, 'idle-in-tx')");
    const err = await ended;
    expect(err).toMatchObject({
      code: '25P03',
      message: 'terminating connection due to idle-in-transaction timeout',
    });
    // The only server came back, rolled back and reset.
    const b = await tp.connect('lim_a');
    expect((await b.query('SELECT count(*)::int AS n FROM items WHERE id = 9001')).rows[0].n).toBe(0);
    // A client that keeps working inside its transaction is not touched.
    await b.query('BEGIN');
    for (let i = 0; i < 4; i++) {
      await sleep(120);
      await b.query('SELECT 1');
    }
    await b.query('COMMIT');
  });
});

describe('limits changed at run time', () => {
  function registryConfig(limits: Record<string, unknown>): Record<string, unknown> {
    return {
      upstream: { url: rdb.upstreamUrl, poolSize: 4 },
      auth: { jwt: { secret: TEST_SECRET } },
      tenancy: { registry: { enabled: true } },
      admin: { url: rdb.adminUrl },
      audit: { file: join(dir, 'audit.log') },
      limits,
      log: { level: 'silent' },
    };
  }

  async function cli(file: string, args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
    let stdout = '';
    let stderr = '';
    const code = await runTenants(
      [...args, '--config', file],
      { stdout: (t) => (stdout += t), stderr: (t) => (stderr += t) },
      {},
    );
    return { code, stdout, stderr };
  }

  it('`tenants limits` overrides the tier and default at once for connected sessions; --clear goes back; a reload changes the default', async () => {
    const limits = { default: { maxClients: 10 }, tiers: { small: { maxClients: 1 } } };
    const file = join(dir, 'proxy.yaml');
    writeFileSync(file, stringify(registryConfig(limits)));
    tp = await startTestProxy(
      {
        upstream: { url: rdb.upstreamUrl, poolSize: 4 },
        tenancy: { registry: { enabled: true } },
        admin: { url: rdb.adminUrl },
        limits,
      },
      rdb.upstreamUrl,
    );
    await createTenant(tp.config, 'lim_r', { actor: 'limits-test', tier: 'small' });
    const first = await eventually(() => tp!.connect('lim_r'));
    expect(await sqlstateOrError(() => tp!.connect('lim_r'))).toMatchObject({
      code: '53300',
      message: 'too many connections for tenant "lim_r": its limit is 1 (maxClients)',
    });

    const shown = await cli(file, ['limits', 'lim_r']);
    expect(shown.code).toBe(0);
    expect(shown.stdout).toMatch(/maxClients\s+1\s+tier small/);
    expect(shown.stdout).toMatch(/maxServers\s+no limit\s+default/);

    const set = await cli(file, ['limits', 'lim_r', '--max-clients', '3', '--statement-timeout', '300ms']);
    expect(set).toMatchObject({ code: 0, stderr: '' });
    expect(set.stdout).toMatch(/^updated limits of tenant lim_r \(tier small\)/);
    expect(set.stdout).toMatch(/maxClients\s+3\s+tenant override/);
    expect(set.stdout).toMatch(/statementTimeoutMs\s+300ms\s+tenant override/);
    const second = await eventually(() => tp!.connect('lim_r'));
    // The session connected before the change has the new statement timeout too.
    await eventually(async () => expect(await sqlstateOf(() => first.query('SELECT pg_sleep(3)'))).toBe('57014'));
    await second.end();

    const json = await cli(file, ['limits', 'lim_r', '--clear', '--json']);
    expect(JSON.parse(json.stdout)).toMatchObject({
      tenant: 'lim_r',
      tier: 'small',
      outcome: 'updated',
      overrides: {},
      effective: { maxClients: { value: 1, source: 'tier' }, statementTimeoutMs: { value: 0, source: 'default' } },
    });
    await eventually(async () =>
      expect(await sqlstateOrError(() => tp!.connect('lim_r'))).toMatchObject({ code: '53300' }),
    );

    // SIGHUP: a new limits.tiers applies to the tenant's share without a restart, connected sessions included.
    expect((await first.query('SELECT pg_sleep(0.5), 1 AS n')).rows[0].n).toBe(1);
    await tp.proxy.reload(
      testConfig(
        {
          upstream: { url: rdb.upstreamUrl, poolSize: 4 },
          tenancy: { registry: { enabled: true } },
          admin: { url: rdb.adminUrl },
          limits: { default: { maxClients: 10 }, tiers: { small: { maxClients: 2, statementTimeoutMs: 200 } } },
        },
        rdb.upstreamUrl,
      ),
    );
    expect(await sqlstateOf(() => first.query('SELECT pg_sleep(0.5)'))).toBe('57014');
    await (await tp.connect('lim_r')).end();
  });

  it('`tenants limits` refuses bad input with exit status 2 and a message naming the flag, and an unknown tenant with 1', async () => {
    const file = join(dir, 'cli.yaml');
    writeFileSync(file, stringify(registryConfig({})));
    const cases: Array<[string[], RegExp]> = [
      [['--max-servers', 'abc'], /--max-servers takes a whole number/],
      [['--max-clients', '1.5'], /--max-clients takes a whole number/],
      [['--tx-per-second', '-3'], /tx-per-second|-3/],
      [['--statement-timeout', '5 parsecs'], /--statement-timeout: invalid duration "5 parsecs"/],
      [['--idle-in-transaction-timeout', '99999999h'], /--idle-in-transaction-timeout: invalid duration/],
      [['--max-sockets', '3'], /unknown option --max-sockets/],
    ];
    for (const [args, message] of cases) {
      const run = await cli(file, ['limits', 'lim_r', ...args]);
      expect(run.code, args.join(' ')).toBe(2);
      expect(run.stderr).toMatch(message);
      expect(run.stdout).toBe('');
    }
    const unknown = await cli(file, ['limits', 'lim_nobody', '--max-servers', '2']);
    expect(unknown.code).toBe(1);
    expect(unknown.stderr).toMatch(/tenant "lim_nobody" is not registered/);
  });
});

async function sqlstateOrError(fn: () => Promise<unknown>): Promise<{ code?: string; message: string }> {
  try {
    await fn();
  } catch (err) {
    return { code: (err as { code?: string }).code, message: (err as Error).message };
  }
  throw new Error('expected an error, got success');
}

async function eventually<T>(fn: () => Promise<T>, ms = 3000): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    try {
      return await fn();
    } catch (err) {
      if (Date.now() > deadline) throw err;
      await sleep(50);
    }
  }
}
