import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import postgres from 'postgres';
import { afterEach, describe, expect, inject, it } from 'vitest';
import { NAME_UNPINNED_SERVER } from '../../src/backend/connect.js';
import { Writer } from '../../src/protocol/writer.js';
import { provisionTenant } from '../../src/tenants/provision.js';
import { adminClient } from '../support/postgres.js';
import { RawClient } from '../support/raw-client.js';
import { sqlstateOf, startTestProxy, type TestProxy } from '../support/proxy.js';

const run = promisify(execFile);
let tp: TestProxy;
afterEach(async () => {
  await tp?.close();
});

const login = async (tenant: string): Promise<RawClient> => {
  const raw = await RawClient.connect(tp.port);
  raw.startup({ user: 'app', database: inject('pg').database, tenant_token: await tp.token(tenant) });
  await raw.waitFor('Z');
  raw.messages.length = 0;
  return raw;
};
const parse = (name: string, sql: string) => new Writer().begin(0x50).cstring(name).cstring(sql).int16(0).end().flush();
const bind = (stmt: string) =>
  new Writer().begin(0x42).cstring('').cstring(stmt).int16(0).int16(0).int16(0).end().flush();
const describeStatement = (stmt: string) => new Writer().begin(0x44).int8(0x53).cstring(stmt).end().flush();
const close = (stmt: string) => new Writer().begin(0x43).int8(0x53).cstring(stmt).end().flush();
const query = (sql: string) => new Writer().begin(0x51).cstring(sql).end().flush();
const execute = new Writer().begin(0x45).cstring('').int32(0).end().flush();
const sync = new Writer().begin(0x53).end().flush();
const codes = (raw: RawClient) => raw.messages.map((m) => m.code).join('');
/** The CommandComplete tags received. */
const tags = (raw: RawClient) =>
  raw.messages.filter((m) => m.code === 'C').map((m) => m.body.toString('utf8', 0, m.body.length - 1));
const settle = async (raw: RawClient, readyCount: number) => {
  for (let i = 0; i < 100 && raw.messages.filter((m) => m.code === 'Z').length < readyCount; i++)
    await new Promise((r) => setTimeout(r, 20));
};
/** Sends `frames` and waits for `readyCount` ReadyForQuery; returns the message codes and starts afresh. */
const exchange = async (
  raw: RawClient,
  frames: Buffer[],
  readyCount = 1,
): Promise<{ codes: string; tags: string[]; error?: string }> => {
  raw.messages.length = 0;
  raw.write(Buffer.concat(frames));
  await settle(raw, readyCount);
  const result = {
    codes: codes(raw),
    tags: tags(raw),
    error: raw.messages.some((m) => m.code === 'E') ? await raw.errorCode() : undefined,
  };
  raw.messages.length = 0;
  return result;
};

describe('named prepared statements in transaction mode', () => {
  it('runs the same statement name for two tenants on one shared server, each in its own schema', async () => {
    tp = await startTestProxy({ upstream: { poolSize: 1 } });
    const a = await tp.connect('a');
    const b = await tp.connect('b');
    const q = {
      name: 'count_items',
      text: 'SELECT current_schema() AS s, count(*)::int AS n FROM items WHERE id > $1',
    };
    for (let i = 0; i < 4; i++) {
      expect((await a.query({ ...q, values: [0] })).rows[0]).toEqual({ s: 'tenant_a', n: 2 });
      expect((await b.query({ ...q, values: [0] })).rows[0]).toEqual({ s: 'tenant_b', n: 3 });
    }
    // Inside a transaction too, interleaved with unnamed statements.
    await a.query('BEGIN');
    expect((await a.query({ ...q, values: [1] })).rows[0].n).toBe(1);
    expect((await a.query('SELECT $1::int AS v', [5])).rows[0].v).toBe(5);
    expect((await a.query({ ...q, values: [1] })).rows[0].n).toBe(1);
    await a.query('COMMIT');
  });

  it("keeps the proxy's statements through the reset, and prepares them again after a client's SQL PREPARE", async () => {
    tp = await startTestProxy({ upstream: { poolSize: 1 } });
    const q = { name: 'by_id', text: 'SELECT name, pg_backend_pid() AS pid FROM items WHERE id = $1' };
    const a = await tp.connect('a');
    const pid = (await a.query({ ...q, values: [1] })).rows[0].pid as number;
    const admin = await adminClient();
    // The reset a parked server gets about a second after its client's last statement, as PostgreSQL saw it: one
    // query text from RESET ALL to the proof, or DISCARD ALL followed by the SET naming the server the proxy's.
    const lastReset = async (): Promise<string> => {
      let query = '';
      for (let i = 0; i < 100 && !/^RESET ALL/.test(query) && query !== NAME_UNPINNED_SERVER; i++) {
        await new Promise((r) => setTimeout(r, 50));
        query = (await admin.query('SELECT query FROM pg_stat_activity WHERE pid = $1', [pid])).rows[0]?.query ?? '';
      }
      return query;
    };
    try {
      // The server holds a proxy statement: the reset keeps it and proves nothing else is left.
      expect(await lastReset()).toMatch(/^RESET ALL;.*pg_prepared_statements$/s);
      const b = await tp.connect('b');
      expect((await b.query({ ...q, values: [1] })).rows[0]).toEqual({ name: 'b-one', pid });
      // A client's own PREPARE makes the next reset a DISCARD ALL, which takes the proxy's statements too…
      await b.query('PREPARE mine AS SELECT 1');
      expect(await lastReset()).toBe(NAME_UNPINNED_SERVER);
      // …so they are prepared again where needed, and the client's is gone.
      expect((await a.query({ ...q, values: [2] })).rows[0]).toEqual({ name: 'a-two', pid });
      expect((await b.query({ ...q, values: [2] })).rows[0]).toEqual({ name: 'b-two', pid });
      expect(await sqlstateOf(() => a.query('EXECUTE mine'))).toBe('26000');
    } finally {
      await admin.end();
    }
  });

  it('survives a server that lost the statement (terminated) by preparing it again', async () => {
    tp = await startTestProxy({ upstream: { poolSize: 1 } });
    const a = await tp.connect('a');
    const q = { name: 'by_id', text: 'SELECT name, pg_backend_pid() AS pid FROM items WHERE id = $1' };
    const first = (await a.query({ ...q, values: [1] })).rows[0];
    expect(first.name).toBe('a-one');
    const admin = await adminClient();
    try {
      await admin.query('SELECT pg_terminate_backend($1)', [first.pid]);
    } finally {
      await admin.end();
    }
    await new Promise((r) => setTimeout(r, 100));
    const second = (await a.query({ ...q, values: [2] })).rows[0];
    expect(second.name).toBe('a-two');
    expect(second.pid).not.toBe(first.pid);
  });

  it('forgets a statement whose Parse failed, so its name can be prepared again', async () => {
    tp = await startTestProxy({ upstream: { poolSize: 1 } });
    const a = await tp.connect('a');
    expect(await sqlstateOf(() => a.query({ name: 'broken', text: 'SELECT * FROM no_such_table' }))).toBe('42P01');
    // The failed Parse created nothing: the same name can be prepared with another text.
    const fixed = await a.query({ name: 'broken', text: 'SELECT 1 AS one' }).catch((e: { code?: string }) => e);
    expect((fixed as { code?: string }).code).toBeUndefined();
  });

  it('keeps statement names per client: another client, even of another tenant, cannot reach them', async () => {
    tp = await startTestProxy({ upstream: { poolSize: 1 } });
    const a = await login('a');
    a.write(Buffer.concat([parse('s1', 'SELECT current_schema()'), sync]));
    await settle(a, 1);
    expect(codes(a)).toBe('1Z');
    a.messages.length = 0;
    // Duplicate name: 42P05, and the rest of the batch is skipped until Sync.
    a.write(Buffer.concat([parse('s1', 'SELECT 2'), bind('s1'), execute, sync]));
    await settle(a, 1);
    expect(codes(a)).toBe('EZ');
    expect(await a.errorCode()).toBe('42P05');
    a.messages.length = 0;
    a.write(Buffer.concat([describeStatement('s1'), bind('s1'), execute, sync]));
    await settle(a, 1);
    expect(codes(a)).toBe('tT2DCZ');
    a.messages.length = 0;

    // Tenant b shares the only server: neither a's name nor the proxy's server-side name resolves for it.
    const b = await login('b');
    for (const name of ['s1', 'pgtp_s1', 'pgtp_s2', 'pgtp_snone']) {
      b.messages.length = 0;
      b.write(Buffer.concat([bind(name), execute, sync]));
      await settle(b, 1);
      expect(codes(b), name).toBe('EZ');
      expect(await b.errorCode()).toBe('26000');
    }
    // Closing the name ends it for a; preparing it again works.
    a.write(Buffer.concat([close('s1'), bind('s1'), sync]));
    await settle(a, 1);
    expect(codes(a)).toBe('3EZ');
    a.messages.length = 0;
    a.write(Buffer.concat([parse('s1', 'SELECT 41 + 1'), bind('s1'), execute, sync]));
    await settle(a, 1);
    expect(codes(a)).toBe('12DCZ');
    a.close();
    b.close();
  });

  it('answers SQL DEALLOCATE of a statement the client prepared with Parse (psycopg and Rails evict so) itself', async () => {
    tp = await startTestProxy({ upstream: { poolSize: 1 } });
    const a = await login('a');
    // Another client of the tenant, on the same single server, uses a statement of the same text.
    const other = await login('a');
    expect((await exchange(a, [parse('q', 'SELECT current_schema()'), sync])).codes).toBe('1Z');
    expect((await exchange(other, [parse('o', 'SELECT current_schema()'), bind('o'), execute, sync])).codes).toBe(
      '12DCZ',
    );

    expect(await exchange(a, [query('DEALLOCATE q')])).toEqual({ codes: 'CZ', tags: ['DEALLOCATE'], error: undefined });
    // The name is gone, as on PostgreSQL: Bind and a second DEALLOCATE fail with 26000…
    expect(await exchange(a, [bind('q'), execute, sync])).toMatchObject({ codes: 'EZ', error: '26000' });
    expect(await exchange(a, [query('DEALLOCATE q')])).toMatchObject({ codes: 'EZ', error: '26000' });
    // …and it can be prepared again with another text; the other client's statement still runs.
    expect((await exchange(a, [parse('q', 'SELECT 2'), bind('q'), execute, sync])).codes).toBe('12DCZ');
    expect((await exchange(other, [bind('o'), execute, sync])).codes).toBe('2DCZ');

    // As an unnamed Parse inside a transaction, pipelined with BEGIN and COMMIT in one write.
    expect(
      await exchange(
        a,
        [query('BEGIN'), parse('', 'DEALLOCATE PREPARE q'), bind(''), execute, sync, query('COMMIT')],
        3,
      ),
    ).toEqual({
      codes: 'CZ12CZCZ',
      tags: ['BEGIN', 'DEALLOCATE', 'COMMIT'],
      error: undefined,
    });
    expect(await exchange(a, [bind('q'), execute, sync])).toMatchObject({ error: '26000' });

    // In a failed transaction it fails as PostgreSQL's would.
    expect((await exchange(a, [parse('r', 'SELECT 3'), sync])).codes).toBe('1Z');
    const failed = await exchange(
      a,
      [query('BEGIN'), query('SELECT 1/0'), query('DEALLOCATE r'), query('ROLLBACK')],
      4,
    );
    expect(failed.codes).toBe('CZEZEZCZ');
    expect(failed.tags).toEqual(['BEGIN', 'ROLLBACK']);

    // DEALLOCATE ALL forgets every name, so each can be prepared again.
    expect((await exchange(a, [parse('s', 'SELECT 4'), sync])).codes).toBe('1Z');
    expect((await exchange(a, [query('DEALLOCATE ALL')])).tags).toEqual(['DEALLOCATE ALL']);
    expect((await exchange(a, [parse('s', 'SELECT 5'), bind('s'), execute, sync])).codes).toBe('12DCZ');
    expect((await exchange(other, [bind('o'), execute, sync])).codes).toBe('2DCZ');

    // A statement made with SQL PREPARE is the server's own: its DEALLOCATE goes through.
    expect(
      (
        await exchange(
          a,
          [query('BEGIN'), query('PREPARE mine AS SELECT 6'), query('DEALLOCATE mine'), query('COMMIT')],
          4,
        )
      ).tags,
    ).toEqual(['BEGIN', 'PREPARE', 'DEALLOCATE', 'COMMIT']);
    a.close();
    other.close();
  });

  it("holds a client's prepared statements to listen.maxPreparedBytes: past it a new name gets 54000, others go on", async () => {
    tp = await startTestProxy({ listen: { maxPreparedBytes: 64 * 1024 }, upstream: { poolSize: 1 } });
    const a = await login('a');
    // About 2.3 KB charged each (the 1 KB text twice, plus 256): 28 fit in 64 KiB, the 29th does not.
    const text = (i: number) => `SELECT ${i} AS n -- ${'x'.repeat(1000)}`;
    const parses = Array.from({ length: 40 }, (_, i) => parse(`s${i}`, text(i)));
    const flood = await exchange(a, [...parses, sync]);
    expect(flood.codes).toBe(`${'1'.repeat(28)}EZ`);
    expect(flood.error).toBe('54000');
    // The ones prepared still run; closing one makes room for a new name.
    expect((await exchange(a, [bind('s27'), execute, sync])).codes).toBe('2DCZ');
    expect((await exchange(a, [parse('s28', text(28)), sync])).error).toBe('54000');
    expect((await exchange(a, [close('s0'), parse('s28', text(28)), bind('s28'), execute, sync])).codes).toBe('312DCZ');
    // The limit is the client's own: another connection prepares as usual.
    const b = await login('b');
    expect((await exchange(b, [parse('s0', text(0)), bind('s0'), execute, sync])).codes).toBe('12DCZ');
    a.close();
    b.close();
  });

  it('runs pgbench -M prepared with two tenants sharing the pool', async () => {
    // Tenants of their own: other test files run pgbench in tenant_a/tenant_b at the same time.
    const tenants = ['pgb1', 'pgb2'];
    const admin = await adminClient();
    try {
      for (const tenant of tenants) {
        await admin.query(`DROP SCHEMA IF EXISTS tenant_${tenant} CASCADE`);
        await provisionTenant(admin, { schema: `tenant_${tenant}`, role: null, proxyRole: inject('pg').proxyRole });
      }
    } finally {
      await admin.end();
    }
    // Enough servers for every client keeps this test about prepared statements shared by two tenants; the one
    // below runs many more clients than servers.
    tp = await startTestProxy({ upstream: { poolSize: 6 } });
    const env = async (tenant: string): Promise<NodeJS.ProcessEnv> => ({
      ...process.env,
      PGHOST: '127.0.0.1',
      PGPORT: String(tp.port),
      PGUSER: 'app',
      PGDATABASE: inject('pg').database,
      PGPASSWORD: await tp.token(tenant),
    });
    for (const tenant of tenants)
      await run('pgbench', ['-i', '-s', '1', '-q', '--no-vacuum'], { env: await env(tenant) });
    const [ra, rb] = await Promise.all(
      tenants.map(async (tenant) =>
        run('pgbench', ['-n', '-c', '3', '-j', '1', '-t', '100', '-M', 'prepared'], { env: await env(tenant) }),
      ),
    );
    for (const r of [ra!, rb!]) {
      expect(r.stdout).toMatch(/number of transactions actually processed: 300\/300/);
      expect(r.stdout).toMatch(/number of failed transactions: 0/);
    }
    const check = await adminClient();
    try {
      for (const tenant of tenants) {
        expect((await check.query(`SELECT count(*)::int AS n FROM tenant_${tenant}.pgbench_history`)).rows[0].n).toBe(
          300,
        );
      }
    } finally {
      await check.end();
    }
  }, 120_000);

  it('runs pgbench -M prepared with 200 clients on a pool of 20: a Parse outside a transaction needs no server', async () => {
    // pgbench prepares with PQprepare, which blocks its thread until the Parse is answered: a client waiting for a
    // server blocked every client of its thread, including those holding servers mid-transaction, until the pool's
    // queue timeout. The proxy now answers such a Parse itself and prepares the statement on first use.
    const tenant = 'pgb3';
    const admin = await adminClient();
    try {
      await admin.query(`DROP SCHEMA IF EXISTS tenant_${tenant} CASCADE`);
      await provisionTenant(admin, { schema: `tenant_${tenant}`, role: null, proxyRole: inject('pg').proxyRole });
    } finally {
      await admin.end();
    }
    tp = await startTestProxy({ upstream: { poolSize: 20, queueTimeoutMs: 30_000 } });
    const env: NodeJS.ProcessEnv = {
      ...process.env,
      PGHOST: '127.0.0.1',
      PGPORT: String(tp.port),
      PGUSER: 'app',
      PGDATABASE: inject('pg').database,
      PGPASSWORD: await tp.token(tenant),
    };
    await run('pgbench', ['-i', '-s', '1', '-q', '--no-vacuum'], { env });
    // Killed rather than left to hang the file should it block again.
    const r = await run('pgbench', ['-n', '-c', '200', '-j', '2', '-t', '3', '-M', 'prepared'], {
      env,
      timeout: 120_000,
    });
    expect(r.stdout).toMatch(/number of transactions actually processed: 600\/600/);
    expect(r.stdout).toMatch(/number of failed transactions: 0/);
    const check = await adminClient();
    try {
      expect((await check.query(`SELECT count(*)::int AS n FROM tenant_${tenant}.pgbench_history`)).rows[0].n).toBe(
        600,
      );
    } finally {
      await check.end();
    }
  }, 150_000);

  it('runs postgres.js with its default prepared statements', async () => {
    tp = await startTestProxy({ upstream: { poolSize: 2 } });
    const connect = async (tenant: string) =>
      postgres({
        host: '127.0.0.1',
        port: tp.port,
        user: 'app',
        database: inject('pg').database,
        password: await tp.token(tenant),
        max: 4,
        onnotice: () => undefined,
      });
    const a = await connect('a');
    const b = await connect('b');
    try {
      for (let i = 0; i < 5; i++) {
        const [ra, rb] = await Promise.all([
          a`SELECT current_schema() AS s, count(*)::int AS n FROM items WHERE id >= ${1}`,
          b`SELECT current_schema() AS s, count(*)::int AS n FROM items WHERE id >= ${1}`,
        ]);
        expect(ra[0]).toEqual({ s: 'tenant_a', n: 2 });
        expect(rb[0]).toEqual({ s: 'tenant_b', n: 3 });
      }
      const inTx = await a.begin(async (tx) => {
        await tx`SELECT name FROM items WHERE id = ${1}`;
        return tx`SELECT name FROM items WHERE id = ${2}`;
      });
      expect(inTx[0]?.name).toBe('a-two');
    } finally {
      await a.end();
      await b.end();
    }
  });
});
