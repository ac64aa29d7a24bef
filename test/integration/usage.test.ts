// Usage metering: a known load through the proxy gives exactly those numbers in the registry's hourly buckets, across
// a restart, with two proxy processes, and through failed flushes; no tenant reaches the usage tables.
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { stringify } from 'yaml';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { createTenant } from '../../src/tenants/lifecycle-api.js';
import { TenantAdmin } from '../../src/tenants/lifecycle.js';
import { readUsage, type UsageRow } from '../../src/usage/usage-report.js';
import { buildDist, DIST_CLI } from '../support/build.js';
import { sqlstateOf, startTestProxy, TEST_SECRET, type TestProxy } from '../support/proxy.js';
import { createRegistryDatabase, type RegistryDatabase } from '../support/registry.js';

let rdb: RegistryDatabase;
const proxies: TestProxy[] = [];

beforeAll(async () => {
  rdb = await createRegistryDatabase('pgtp_usage');
}, 60_000);

afterAll(async () => {
  await rdb?.drop(['tenant_use_']);
});

afterEach(async () => {
  await Promise.all(proxies.splice(0).map((p) => p.close().catch(() => undefined)));
});

const ACTOR = { actor: 'usage-test' };
const HOUR_MS = 3_600_000;

async function usageProxy(extra: { roles?: boolean; checkNames?: boolean; flushIntervalMs?: number } = {}) {
  const tp = await startTestProxy(
    {
      tenancy: { registry: { enabled: true }, roles: extra.roles ?? false },
      policy: { checkNames: extra.checkNames ?? true },
      admin: { url: rdb.adminUrl },
      // Tests flush by hand unless they test the timer.
      usage: { flushIntervalMs: extra.flushIntervalMs ?? HOUR_MS },
    },
    rdb.upstreamUrl,
  );
  proxies.push(tp);
  return tp;
}

/** A tenant's usage over every hour bucket: counts summed, the peak the largest of any hour. */
interface Totals {
  transactions: number;
  statements: number;
  bytes_in: number;
  bytes_out: number;
  rows_returned: number;
  rows_affected: number;
  server_ms: number;
  peak_clients: number;
}

async function totals(tenant: string): Promise<Totals> {
  const db = await rdb.connect();
  try {
    return sum(await readUsage(db, 'pgtp', { tenant }));
  } finally {
    await db.end();
  }
}

function sum(rows: UsageRow[]): Totals {
  const t: Totals = {
    transactions: 0,
    statements: 0,
    bytes_in: 0,
    bytes_out: 0,
    rows_returned: 0,
    rows_affected: 0,
    server_ms: 0,
    peak_clients: 0,
  };
  for (const r of rows) {
    for (const key of Object.keys(t) as Array<keyof Totals>)
      t[key] = key === 'peak_clients' ? Math.max(t[key], r[key]) : t[key] + r[key];
  }
  return t;
}

/** The counted part of a load: what the registry must hold for it. */
type Expected = Pick<Totals, 'transactions' | 'statements' | 'rows_returned' | 'rows_affected'>;

function counts(t: Totals): Expected {
  return {
    transactions: t.transactions,
    statements: t.statements,
    rows_returned: t.rows_returned,
    rows_affected: t.rows_affected,
  };
}

/** One autocommit INSERT, one SELECT of one row: 2 transactions, 2 statements, 1 row each way. */
async function smallLoad(client: pg.Client, tag: number): Promise<void> {
  await client.query('INSERT INTO items VALUES ($1, $2)', [tag, 'small']);
  await client.query('SELECT id FROM items WHERE id = $1', [tag]);
}
const SMALL: Expected = { transactions: 2, statements: 2, rows_returned: 1, rows_affected: 1 };

function times(n: number, e: Expected): Expected {
  return {
    transactions: n * e.transactions,
    statements: n * e.statements,
    rows_returned: n * e.rows_returned,
    rows_affected: n * e.rows_affected,
  };
}

async function closeAll(tp: TestProxy, clients: pg.Client[]): Promise<void> {
  await Promise.all(clients.map((c) => c.end()));
  const deadline = Date.now() + 5000;
  while (tp.proxy.sessions.size > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
  expect(tp.proxy.sessions.size).toBe(0);
}

async function tenantWithTable(tp: TestProxy, id: string): Promise<void> {
  await createTenant(tp.config, id, ACTOR);
  const db = await rdb.connect();
  try {
    // Made by the admin, not through the proxy: the loads below are all the proxy sees of this tenant.
    await db.query(`CREATE TABLE tenant_${id}.items (id int, note text)`);
    await db.query(`GRANT ALL ON tenant_${id}.items TO ${rdb.proxyRole}`);
  } finally {
    await db.end();
  }
}

describe('usage buckets', () => {
  it('match a known load exactly: transactions, statements, rows, bytes, server time, peak clients', async () => {
    const tp = await usageProxy();
    await tenantWithTable(tp, 'use_a');
    const started = performance.now();
    const c = await tp.connect('use_a');
    for (let i = 0; i < 5; i++) await c.query(`INSERT INTO items VALUES (${i}, 'simple')`);
    await c.query('BEGIN');
    await c.query('INSERT INTO items SELECT g, $1 FROM generate_series(10, 19) g', ['block']);
    await c.query('UPDATE items SET note = $1 WHERE id < 3', ['updated']);
    await c.query('COMMIT');
    expect((await c.query('SELECT * FROM items WHERE id >= $1', [0])).rowCount).toBe(15);
    expect(await sqlstateOf(() => c.query('SELECT 1/0'))).toBe('22012');
    await c.query('SELECT 1; SELECT 2'); // one implicit transaction, two statements
    await c.query('DELETE FROM items WHERE id >= 10');
    const c2 = await tp.connect('use_a');
    const c3 = await tp.connect('use_a');
    await c2.query('SELECT 1');
    await closeAll(tp, [c, c2, c3]);

    const before = await totals('use_a');
    expect(before.transactions).toBe(0); // nothing reaches the registry before a flush
    const result = await tp.proxy.flushUsage();
    expect(result).toEqual({ applied: 1, duplicates: 0, error: null });
    const elapsed = performance.now() - started;

    const t = await totals('use_a');
    expect(counts(t)).toEqual({
      // 5 inserts, the block, the select, the failed select, the two-statement query, the delete, c2's select
      transactions: 5 + 1 + 1 + 1 + 1 + 1 + 1,
      // BEGIN, INSERT, UPDATE, COMMIT count as four
      statements: 5 + 4 + 1 + 1 + 2 + 1 + 1,
      rows_returned: 15 + 1 + 1 + 1,
      rows_affected: 5 + 10 + 3 + 10,
    });
    expect(t.peak_clients).toBe(3);
    // Bytes as the proxy's own per-tenant Prometheus counters saw them (both count from the login on).
    const meter = tp.proxy.metrics.tenant('use_a');
    expect({ in: t.bytes_in, out: t.bytes_out }).toEqual({ in: meter.bytesIn, out: meter.bytesOut });
    expect(t.bytes_in).toBeGreaterThan(0);
    expect(t.server_ms).toBeGreaterThan(0);
    expect(t.server_ms).toBeLessThanOrEqual(elapsed);

    // Nothing new: a flush adds nothing and sends nothing.
    expect(await tp.proxy.flushUsage()).toEqual({ applied: 0, duplicates: 0, error: null });
    expect(await totals('use_a')).toEqual(t);
  });

  it('the timer flushes every usage.flushIntervalMs', async () => {
    const tp = await usageProxy({ flushIntervalMs: 1000 });
    await tenantWithTable(tp, 'use_timer');
    const c = await tp.connect('use_timer');
    await smallLoad(c, 1);
    const deadline = Date.now() + 5000;
    while ((await totals('use_timer')).statements < 2 && Date.now() < deadline)
      await new Promise((r) => setTimeout(r, 200));
    expect(counts(await totals('use_timer'))).toEqual(SMALL);
  });

  it('add up across a proxy restart: a graceful close flushes, the new instance adds; the peak is not doubled', async () => {
    const first = await usageProxy();
    await tenantWithTable(first, 'use_b');
    const a1 = await first.connect('use_b');
    const a2 = await first.connect('use_b');
    await smallLoad(a1, 1);
    await smallLoad(a2, 2);
    // No flush by hand: the close must do it.
    await first.close();

    const second = await usageProxy();
    const b1 = await second.connect('use_b');
    const b2 = await second.connect('use_b');
    for (let i = 0; i < 3; i++) await smallLoad(b1, 10 + i);
    await closeAll(second, [b1, b2]);
    await second.close();

    const t = await totals('use_b');
    expect(counts(t)).toEqual(times(5, SMALL));
    // Two clients at a time on each instance, one after the other: 2, not 4.
    expect(t.peak_clients).toBe(2);
    const db = await rdb.connect();
    try {
      const { rows } = await db.query(
        "SELECT count(DISTINCT instance)::int AS n FROM pgtp.usage_peaks WHERE tenant_id = 'use_b'",
      );
      expect(rows[0].n).toBe(2);
    } finally {
      await db.end();
    }
  });

  it('add up exactly with two proxy processes flushing at once; their concurrent clients add to the peak', async () => {
    const one = await usageProxy();
    const two = await usageProxy();
    await tenantWithTable(one, 'use_c');
    const clients = [await one.connect('use_c'), await one.connect('use_c'), await two.connect('use_c')];
    await Promise.all(
      clients.map(async (client, i) => {
        for (let j = 0; j < 4; j++) await smallLoad(client, i * 100 + j);
      }),
    );
    const [r1, r2] = await Promise.all([one.proxy.flushUsage(), two.proxy.flushUsage()]);
    expect([r1!.error, r2!.error]).toEqual([null, null]);
    await smallLoad(clients[2]!, 999);
    await closeAll(one, clients.slice(0, 2));
    await closeAll(two, clients.slice(2));
    await Promise.all([one.proxy.flushUsage(), two.proxy.flushUsage()]);
    const t = await totals('use_c');
    expect(counts(t)).toEqual(times(13, SMALL));
    expect(t.peak_clients).toBe(3);
  });
});

describe('listen.workers', () => {
  it('each worker adds its own share and flushes it when SIGTERM drains it', async () => {
    await buildDist();
    const tp = await usageProxy();
    await tenantWithTable(tp, 'use_w');
    const dir = mkdtempSync(join(tmpdir(), 'pgtp-usage-'));
    const file = join(dir, 'proxy.yaml');
    writeFileSync(
      file,
      stringify({
        listen: { host: '127.0.0.1', port: 0, workers: 2 },
        upstream: { url: rdb.upstreamUrl, poolSize: 2 },
        auth: { jwt: { secret: TEST_SECRET } },
        tenancy: { registry: { enabled: true } },
        audit: { file: join(dir, 'audit.log') },
        log: { level: 'info' },
      }),
    );
    let child: ChildProcess | null = null;
    const port = await new Promise<number>((resolve, reject) => {
      child = spawn(process.execPath, [DIST_CLI, 'start', '--config', file], { stdio: ['ignore', 'ignore', 'pipe'] });
      let buffered = '';
      child.stderr!.on('data', (chunk: Buffer) => {
        buffered += chunk.toString();
        const match = /"port":(\d+),"msg":"listening"/.exec(buffered);
        // Both workers listening, or the first would take every client.
        if (match && buffered.includes('"msg":"workers started"')) resolve(Number(match[1]));
      });
      child.on('exit', (code) => reject(new Error(`exited with ${code}: ${buffered}`)));
    });
    const exited = new Promise<number | null>((resolve) => child!.on('exit', (code) => resolve(code)));
    try {
      const clients: pg.Client[] = [];
      // Round robin: two clients on each worker, all connected at once.
      for (let i = 0; i < 4; i++) {
        const client = new pg.Client(await tp.clientConfig('use_w', { port }));
        client.on('error', () => undefined);
        await client.connect();
        clients.push(client);
      }
      await Promise.all(clients.map(async (c, i) => smallLoad(c, i).then(() => smallLoad(c, 10 + i))));
      await Promise.all(clients.map((c) => c.end()));
      child!.kill('SIGTERM');
      expect(await exited).toBe(0);
    } finally {
      child!.kill('SIGKILL');
    }
    const t = await totals('use_w');
    expect(counts(t)).toEqual(times(8, SMALL));
    expect(t.peak_clients).toBe(4);
    const db = await rdb.connect();
    try {
      const { rows } = await db.query(
        "SELECT count(DISTINCT instance)::int AS n FROM pgtp.usage_peaks WHERE tenant_id = 'use_w'",
      );
      expect(rows[0].n).toBe(2);
    } finally {
      await db.end();
    }
  }, 120_000);
});

describe('a failed flush', () => {
  it('with the usage table locked: fails, loses nothing, keeps counting, and the retry adds it once', async () => {
    const tp = await usageProxy();
    await tenantWithTable(tp, 'use_d');
    const c = await tp.connect('use_d');
    await smallLoad(c, 1);
    const locker = await rdb.connect();
    try {
      await locker.query('BEGIN');
      await locker.query('LOCK TABLE pgtp.usage_hours IN ACCESS EXCLUSIVE MODE');
      const failed = await tp.proxy.flushUsage();
      expect(failed!.applied).toBe(0);
      expect(failed!.error?.message).toMatch(/statement timeout/);
    } finally {
      await locker.query('ROLLBACK');
      await locker.end();
    }
    // Nothing was added by the failed attempt; the metrics say a batch waits.
    expect((await totals('use_d')).statements).toBe(0);
    const metrics = await tp.proxy.metrics.text();
    expect(metrics).toMatch(/^pgtp_usage_flush_failures_total 1$/m);
    expect(metrics).toMatch(/^pgtp_usage_flush_pending 1$/m);
    // Counting went on meanwhile.
    await smallLoad(c, 2);
    await smallLoad(c, 3);
    const retried = await tp.proxy.flushUsage();
    // The batch that failed, as it was, then what was counted since.
    expect(retried).toEqual({ applied: 2, duplicates: 0, error: null });
    expect(counts(await totals('use_d'))).toEqual(times(3, SMALL));
    expect(await tp.proxy.metrics.text()).toMatch(/^pgtp_usage_flush_pending 0$/m);
  }, 30_000);

  it('with its connection killed (pg_terminate_backend): the retry on a new connection adds it once', async () => {
    const tp = await usageProxy();
    await tenantWithTable(tp, 'use_e');
    const c = await tp.connect('use_e');
    await smallLoad(c, 1);
    expect((await tp.proxy.flushUsage())!.applied).toBe(1);
    const admin = await rdb.connect();
    try {
      const { rows } = await admin.query(
        `SELECT pg_terminate_backend(pid) AS killed FROM pg_stat_activity
          WHERE application_name = 'pg-tenant-proxy usage' AND datname = current_database()`,
      );
      expect(rows).toEqual([{ killed: true }]);
    } finally {
      await admin.end();
    }
    await new Promise((r) => setTimeout(r, 100));
    await smallLoad(c, 2);
    const failed = await tp.proxy.flushUsage();
    expect(failed!.error).not.toBeNull();
    expect(failed!.applied).toBe(0);
    await smallLoad(c, 3);
    expect(await tp.proxy.flushUsage()).toEqual({ applied: 2, duplicates: 0, error: null });
    expect(counts(await totals('use_e'))).toEqual(times(3, SMALL));
  });

  it('the registry applies each (instance, seq) once: a retry of a flush that committed is recognised and skipped', async () => {
    const proxyRole = new pg.Client({ connectionString: rdb.upstreamUrl });
    await proxyRole.connect();
    try {
      const hour = new Date(Math.floor(Date.now() / HOUR_MS) * HOUR_MS);
      const flush = async (seq: number, statements: number): Promise<boolean> =>
        (
          await proxyRole.query(
            `SELECT pgtp.usage_flush($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14) AS applied`,
            [
              '00000000-0000-4000-8000-00000000abcd',
              seq,
              hour,
              hour,
              new Date(),
              ['use_dup'],
              [1],
              [statements],
              [5],
              [100],
              [200],
              [3],
              [0],
              [1],
            ],
          )
        ).rows[0].applied;
      expect(await flush(1, 7)).toBe(true);
      expect(await flush(1, 7)).toBe(false); // the same batch again: its answer was lost, it committed
      expect(await flush(2, 4)).toBe(true);
      expect(await flush(1, 7)).toBe(false); // an old batch never goes in after a newer one
      const t = await totals('use_dup');
      expect({ statements: t.statements, bytes_in: t.bytes_in, server_ms: t.server_ms }).toEqual({
        statements: 11,
        bytes_in: 200,
        server_ms: 10,
      });
      // A bucket must be a whole hour.
      expect(
        await sqlstateOf(() =>
          proxyRole.query(
            'SELECT pgtp.usage_flush($1, 3, $2, $2, $2, ARRAY[$3], ARRAY[1], ARRAY[1], ARRAY[1], ARRAY[1], ARRAY[1], ARRAY[1], ARRAY[1], ARRAY[1])',
            ['00000000-0000-4000-8000-00000000abcd', new Date(hour.getTime() + 1000), 'use_dup'],
          ),
        ),
      ).toBe('P0001');
      // Nor can a caller take usage away.
      expect(
        await sqlstateOf(() =>
          proxyRole.query(
            'SELECT pgtp.usage_flush($1, 3, $2, $2, $2, ARRAY[$3], ARRAY[-5], ARRAY[1], ARRAY[1], ARRAY[1], ARRAY[1], ARRAY[1], ARRAY[1], ARRAY[1])',
            ['00000000-0000-4000-8000-00000000abcd', hour, 'use_dup'],
          ),
        ),
      ).toBe('P0001');
      expect((await totals('use_dup')).statements).toBe(11);
    } finally {
      await proxyRole.end();
    }
  });
});

describe('metering off', () => {
  it('without the registry nothing is counted or flushed', async () => {
    const tp = await startTestProxy({ usage: { enabled: true } }, rdb.upstreamUrl);
    proxies.push(tp);
    expect(await tp.proxy.flushUsage()).toBeNull();
  });
});

describe("the usage tables are out of every tenant's reach", () => {
  const ATTEMPTS = [
    'SELECT * FROM pgtp.usage_hours',
    'SELECT * FROM pgtp.usage_peaks',
    'SELECT * FROM pgtp.usage_instances',
    "UPDATE pgtp.usage_hours SET statements = 0 WHERE tenant_id = 'use_f'",
    "INSERT INTO pgtp.usage_instances VALUES ('00000000-0000-4000-8000-000000000001', 999999)",
    "SELECT pgtp.usage_flush('00000000-0000-4000-8000-000000000002', 1, date_trunc('hour', now()), now(), now(), ARRAY['use_g'], ARRAY[1000000], ARRAY[1], ARRAY[1], ARRAY[1], ARRAY[1], ARRAY[1], ARRAY[1], ARRAY[1])",
  ];

  it('the guard refuses naming them (guard-only: tenants share the role that may call usage_flush)', async () => {
    const tp = await usageProxy();
    await createTenant(tp.config, 'use_f', ACTOR);
    const f = await tp.connect('use_f');
    for (const sql of [
      ...ATTEMPTS,
      "SELECT 'pgtp.usage_flush'::regproc",
      "SELECT * FROM pg_catalog.pg_proc WHERE proname = 'usage_flush' AND pronamespace = 'pgtp'::regnamespace",
    ]) {
      expect({ sql, code: await sqlstateOf(() => f.query(sql)) }).toEqual({ sql, code: '42501' });
    }
    await f.end();
    await tp.proxy.flushUsage();
    // No forged usage for anyone.
    expect((await totals('use_g')).transactions).toBe(0);
  });

  it('PostgreSQL refuses them to a tenant role when the name checks are off; the proxy role may only call the function', async () => {
    const tp = await usageProxy({ roles: true, checkNames: false });
    const admin = await TenantAdmin.open(tp.config, ACTOR);
    try {
      await admin.create('use_h');
    } finally {
      await admin.close();
    }
    const h = await tp.connect('use_h');
    expect((await h.query('SELECT current_user AS u')).rows[0].u).toBe('tenant_use_h');
    for (const sql of ATTEMPTS) {
      expect({ sql, code: await sqlstateOf(() => h.query(sql)) }).toEqual({ sql, code: '42501' });
    }
    const proxyRole = new pg.Client({ connectionString: rdb.upstreamUrl });
    await proxyRole.connect();
    try {
      for (const sql of ATTEMPTS.slice(0, 5)) {
        expect({ sql, code: await sqlstateOf(() => proxyRole.query(sql)) }).toEqual({ sql, code: '42501' });
      }
    } finally {
      await proxyRole.end();
    }
  });
});
