import net from 'node:net';
import pg from 'pg';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { adminClient, startPrivateCluster, type PrivatePgFixture } from '../support/postgres.js';
import { RawClient } from '../support/raw-client.js';
import { sqlstateOf, startTestProxy, type TestProxy } from '../support/proxy.js';

let tp: TestProxy;
afterEach(async () => {
  await tp?.close();
});

async function waitFor(check: () => boolean | Promise<boolean>, what: string, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** Sends a CancelRequest to the proxy and waits until it hangs up. */
function cancelRequest(pid: number, secret: number): Promise<void> {
  return new Promise<void>((resolve) => {
    const socket = net.connect(tp.port, '127.0.0.1', () => {
      const b = Buffer.alloc(16);
      b.writeInt32BE(16, 0);
      b.writeInt32BE(80877102, 4);
      b.writeInt32BE(pid, 8);
      b.writeInt32BE(secret, 12);
      socket.end(b);
    });
    socket.on('close', () => resolve());
  });
}

describe('failures on the client side', () => {
  it('rolls back the transaction of a client killed mid-transaction and reuses the server clean', async () => {
    tp = await startTestProxy({ upstream: { poolSize: 1 } });
    const raw = await RawClient.connect(tp.port);
    raw.startup({ user: 'app', database: 'pgtp_test', tenant_token: await tp.token('a') });
    await raw.waitFor('Z');
    raw.query("BEGIN; INSERT INTO items VALUES (77, 'uncommitted'); SET LOCAL statement_timeout = '5s'");
    await waitFor(() => raw.messages.filter((m) => m.code === 'Z').length === 2, 'the transaction to open');
    raw.close();
    // The pool of one must come back clean for the next client: no row 77, no open transaction.
    const b = await tp.connect('a');
    const r = await b.query(
      "SELECT count(*)::int AS n, current_setting('statement_timeout') AS t FROM items WHERE id = 77",
    );
    expect(r.rows[0]).toEqual({ n: 0, t: '0' });
    // Rolled back and reused, not closed: still exactly one server.
    const stats = tp.proxy.pool.stats();
    expect(stats.idle + stats.parked + stats.active + stats.resetting).toBe(1);
  });

  it('closes a server whose client vanished mid-statement instead of reusing it', async () => {
    tp = await startTestProxy({ upstream: { poolSize: 1 } });
    const raw = await RawClient.connect(tp.port);
    raw.startup({ user: 'app', database: 'pgtp_test', tenant_token: await tp.token('a') });
    await raw.waitFor('Z');
    raw.query('SELECT pg_sleep(30)');
    await waitFor(() => tp.proxy.pool.stats().active === 1, 'the statement to start');
    raw.close();
    // The abandoned statement is cancelled, not left running for 30 s on a server nobody reads.
    const admin = await adminClient();
    try {
      await waitFor(async () => {
        const r = await admin.query(
          "SELECT count(*)::int AS n FROM pg_stat_activity WHERE query = 'SELECT pg_sleep(30)' AND state = 'active'",
        );
        return r.rows[0].n === 0;
      }, 'the abandoned statement to be cancelled');
    } finally {
      await admin.end();
    }
    const b = await tp.connect('b');
    expect((await b.query('SELECT 1 AS one')).rows[0].one).toBe(1);
  });
});

describe('failures on the server side', () => {
  it('gives the client 57P01 when its server is terminated and keeps serving others', async () => {
    tp = await startTestProxy({ upstream: { poolSize: 2 } });
    const victim = await tp.connect('a');
    const bystander = await tp.connect('b');
    await victim.query('BEGIN');
    const pid = (await victim.query('SELECT pg_backend_pid() AS pid')).rows[0].pid as number;
    const errors: Error[] = [];
    victim.on('error', (e) => errors.push(e));
    const admin = await adminClient();
    try {
      await admin.query('SELECT pg_terminate_backend($1)', [pid]);
    } finally {
      await admin.end();
    }
    await waitFor(() => errors.length > 0, 'the victim to see its error');
    expect((errors[0] as { code?: string }).code).toBe('57P01');
    expect((await bystander.query('SELECT count(*)::int AS n FROM items')).rows[0].n).toBe(3);
    // The pool replaces the lost server.
    const again = await tp.connect('a');
    expect((await again.query('SELECT count(*)::int AS n FROM items')).rows[0].n).toBe(2);
  });

  it('answers 53300 when no server frees up within the queue timeout', async () => {
    tp = await startTestProxy({ upstream: { poolSize: 1, queueTimeoutMs: 200 } });
    const holder = await tp.connect('a');
    await holder.query('BEGIN');
    const waiter = await tp.connect('b');
    expect(await sqlstateOf(() => waiter.query('SELECT 1'))).toBe('53300');
    await holder.query('COMMIT');
    expect((await waiter.query('SELECT 1 AS one')).rows[0].one).toBe(1);
  });

  it('routes a cancel request to the server running that client only', async () => {
    tp = await startTestProxy({ upstream: { poolSize: 2 } });
    const slow = await tp.connect('a');
    const other = await tp.connect('b');
    const sleeping = slow.query('SELECT pg_sleep(20)');
    const otherSleep = other.query('SELECT pg_sleep(0.5) AS done');
    await new Promise((r) => setTimeout(r, 150));
    // A CancelRequest with the proxy-issued key, on a new connection, as libpq sends it.
    const key = slow as unknown as { processID: number; secretKey: number };
    await cancelRequest(key.processID, key.secretKey);
    expect(await sqlstateOf(() => sleeping)).toBe('57014');
    expect((await otherSleep).rows[0]).toBeDefined();
  });

  it('ignores a cancel request with a wrong key', async () => {
    tp = await startTestProxy({ upstream: { poolSize: 1 } });
    const client = await tp.connect('a');
    const query = client.query('SELECT pg_sleep(0.3) AS slept');
    const key = client as unknown as { processID: number; secretKey: number };
    await cancelRequest(key.processID, key.secretKey ^ 1);
    expect((await query).rows.length).toBe(1);
  });
});

describe('upstream outage', () => {
  let cluster: PrivatePgFixture;
  beforeAll(async () => {
    cluster = await startPrivateCluster();
  }, 60_000);
  afterAll(async () => {
    await cluster?.stop();
  });

  it('reports 08xxx/57P0x while PostgreSQL is down and heals when it returns, without a proxy restart', async () => {
    tp = await startTestProxy({ upstream: { poolSize: 2, connectTimeoutMs: 1000 } }, cluster.upstreamUrl);
    const idle = await tp.connect('a');
    expect((await idle.query('SELECT count(*)::int AS n FROM items')).rows[0].n).toBe(2);
    await cluster.pause();
    const code = await sqlstateOf(() => idle.query('SELECT 1'));
    expect(code).toMatch(/^(08|57P0)/);
    await cluster.resume();
    // The client whose server died got a FATAL; a new connection works, and so does a fresh query on a new client.
    const fresh = await tp.connect('b');
    expect((await fresh.query('SELECT count(*)::int AS n FROM items')).rows[0].n).toBe(3);
  }, 60_000);

  it('keeps an idle client usable across an upstream restart', async () => {
    tp = await startTestProxy({ upstream: { poolSize: 2, connectTimeoutMs: 1000 } }, cluster.upstreamUrl);
    const client = await tp.connect('a');
    expect((await client.query('SELECT 1 AS one')).rows[0].one).toBe(1);
    await cluster.pause();
    await cluster.resume();
    // The client held no server while PostgreSQL restarted; its next transaction gets a new one.
    let result: pg.QueryResult | null = null;
    for (let i = 0; i < 20 && result === null; i++) {
      result = await client.query('SELECT count(*)::int AS n FROM items').catch(() => null);
    }
    expect(result?.rows[0].n).toBe(2);
  }, 60_000);
});
