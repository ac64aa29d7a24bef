import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import postgres from 'postgres';
import { afterEach, describe, expect, inject, it } from 'vitest';
import { adminClient } from '../support/postgres.js';
import { startTestProxy, type TestProxy } from '../support/proxy.js';

const run = promisify(execFile);

let tp: TestProxy;
afterEach(async () => {
  await tp?.close();
});

function libpqEnv(token: string): NodeJS.ProcessEnv {
  return {
    ...process.env,
    PGHOST: '127.0.0.1',
    PGPORT: String(tp.port),
    PGUSER: 'app',
    PGDATABASE: inject('pg').database,
    PGPASSWORD: token,
    PGSSLMODE: 'disable',
  };
}

describe('real clients through the proxy', () => {
  it('psql runs in its tenant schema with the token as password', async () => {
    tp = await startTestProxy();
    const { stdout } = await run(
      'psql',
      [
        '-X',
        '-At',
        '-v',
        'ON_ERROR_STOP=1',
        '-c',
        'SELECT current_schema()',
        '-c',
        'SELECT name FROM items ORDER BY id',
      ],
      {
        env: libpqEnv(await tp.token('b')),
      },
    );
    expect(stdout.trim().split('\n')).toEqual(['tenant_b', 'b-one', 'b-two', 'b-three']);
  });

  it('psql sends application_name and the proxy reports it back', async () => {
    tp = await startTestProxy();
    const { stdout } = await run('psql', ['-X', '-At', '-c', 'SHOW application_name'], {
      env: { ...libpqEnv(await tp.token('a')), PGAPPNAME: 'billing-worker' },
    });
    expect(stdout.trim()).toBe('billing-worker');
  });

  it('pgbench runs the TPC-B-like script in simple and extended protocol, each tenant in its own tables', async () => {
    const admin = await adminClient();
    try {
      for (const schema of ['tenant_a', 'tenant_b']) {
        await admin.query(
          `DROP TABLE IF EXISTS ${schema}.pgbench_accounts, ${schema}.pgbench_branches, ${schema}.pgbench_tellers, ${schema}.pgbench_history`,
        );
      }
    } finally {
      await admin.end();
    }
    tp = await startTestProxy({ upstream: { poolSize: 2 } });
    for (const tenant of ['a', 'b']) {
      // pgbench -i creates its tables unqualified: they land in the tenant's schema.
      await run('pgbench', ['-i', '-s', '1', '-q', '--no-vacuum'], { env: libpqEnv(await tp.token(tenant)) });
    }
    for (const mode of ['simple', 'extended']) {
      const { stdout } = await run('pgbench', ['-n', '-c', '4', '-j', '2', '-t', '50', '-M', mode], {
        env: libpqEnv(await tp.token('a')),
      });
      expect(stdout).toMatch(/number of transactions actually processed: 200\/200/);
      expect(stdout).toMatch(/number of failed transactions: 0/);
    }
    const check = await adminClient();
    try {
      const a = await check.query('SELECT count(*)::int AS n FROM tenant_a.pgbench_history');
      const b = await check.query('SELECT count(*)::int AS n FROM tenant_b.pgbench_history');
      expect(a.rows[0].n).toBe(400);
      expect(b.rows[0].n).toBe(0);
    } finally {
      await check.end();
    }
  }, 120_000);

  it('postgres.js (unprepared) runs queries, transactions and parameters', async () => {
    tp = await startTestProxy();
    const sql = postgres({
      host: '127.0.0.1',
      port: tp.port,
      user: 'app',
      database: inject('pg').database,
      password: await tp.token('a'),
      prepare: false,
      max: 3,
      onnotice: () => undefined,
    });
    try {
      const rows = await sql`SELECT name FROM items WHERE id = ${2}`;
      expect(rows[0]?.name).toBe('a-two');
      const inTx = await sql.begin(async (tx) => {
        await tx`INSERT INTO items VALUES (50, 'tx-row')`;
        return tx`SELECT count(*)::int AS n FROM items`;
      });
      expect(inTx[0]?.n).toBe(3);
      await sql`DELETE FROM items WHERE id = 50`;
      const parallel = await Promise.all([1, 2, 1, 2].map((id) => sql`SELECT name FROM items WHERE id = ${id}`));
      expect(parallel.map((r) => r[0]?.name)).toEqual(['a-one', 'a-two', 'a-one', 'a-two']);
    } finally {
      await sql.end();
    }
  });

  it('honours startup settings per client on a shared server and reports them', async () => {
    tp = await startTestProxy({ upstream: { poolSize: 1 } });
    const tokyo = await tp.connect('a', {
      options: '-c TimeZone=Asia/Tokyo -c DateStyle=German -c extra_float_digits=0',
    });
    const utc = await tp.connect('b', { options: '-c TimeZone=UTC' });
    for (let i = 0; i < 3; i++) {
      const t = await tokyo.query(
        "SELECT current_setting('TimeZone') AS tz, current_setting('DateStyle') AS ds, current_setting('extra_float_digits') AS efd",
      );
      const u = await utc.query(
        "SELECT current_setting('TimeZone') AS tz, current_setting('DateStyle') AS ds, current_setting('extra_float_digits') AS efd",
      );
      expect(t.rows[0]).toEqual({ tz: 'Asia/Tokyo', ds: 'German, DMY', efd: '0' });
      expect(u.rows[0]).toEqual({ tz: 'UTC', ds: 'ISO, MDY', efd: '1' });
    }
  });

  it('refuses an invalid setting value at login', async () => {
    tp = await startTestProxy();
    const { sqlstateOf } = await import('../support/proxy.js');
    expect(await sqlstateOf(() => tp.connect('a', { options: '-c TimeZone=Mars/Olympus' }))).toBe('22023');
  });

  it('psql \\copy moves rows in and out through COPY FROM STDIN / TO STDOUT', async () => {
    tp = await startTestProxy();
    // A table of its own: other test files read tenant_a.items concurrently and count its rows.
    const admin = await adminClient();
    await admin.query('CREATE TABLE tenant_a.copied (id int, name text)');
    await admin.query('GRANT ALL ON tenant_a.copied TO pgtp_proxy');
    try {
      const env = libpqEnv(await tp.token('a'));
      const rows = Array.from({ length: 5000 }, (_, i) => `${1000 + i}\tcopied-${i}`).join('\n') + '\n';
      const load = execFile('psql', ['-X', '-v', 'ON_ERROR_STOP=1', '-c', '\\copy copied FROM STDIN'], { env });
      load.stdin!.end(rows);
      await new Promise<void>((resolve, reject) =>
        load.on('exit', (code) => (code === 0 ? resolve() : reject(new Error(`psql exited ${code}`)))),
      );
      const { stdout } = await run(
        'psql',
        ['-X', '-At', '-c', '\\copy (SELECT name FROM copied ORDER BY id) TO STDOUT'],
        { env },
      );
      expect(stdout.trim().split('\n')).toEqual(Array.from({ length: 5000 }, (_, i) => `copied-${i}`));
      expect((await admin.query('SELECT count(*)::int AS n FROM tenant_a.copied')).rows[0].n).toBe(5000);
    } finally {
      await admin.query('DROP TABLE tenant_a.copied');
      await admin.end();
    }
  });

  it('streams a 200 MB COPY in and out with psql without holding it in memory', async () => {
    tp = await startTestProxy();
    const admin = await adminClient();
    await admin.query('CREATE TABLE tenant_a.big_copy (n bigint)');
    await admin.query('GRANT ALL ON tenant_a.big_copy TO pgtp_proxy');
    try {
      const env = libpqEnv(await tp.token('a'));
      global.gc?.();
      const baseline = process.memoryUsage().rss;
      let peak = baseline;
      const sampler = setInterval(() => {
        peak = Math.max(peak, process.memoryUsage().rss);
      }, 50);
      try {
        // 25 million lines of `seq` are 214 MB of COPY data each way; psql streams them from and to its own side.
        await run('psql', ['-X', '-v', 'ON_ERROR_STOP=1', '-c', "\\copy big_copy FROM PROGRAM 'seq 1 25000000'"], {
          env,
          maxBuffer: 1 << 20,
        });
        const { stdout } = await run(
          'psql',
          ['-X', '-At', '-v', 'ON_ERROR_STOP=1', '-c', "\\copy big_copy TO PROGRAM 'wc -c'"],
          { env, maxBuffer: 1 << 20 },
        );
        expect(stdout).toContain('COPY 25000000');
      } finally {
        clearInterval(sampler);
      }
      expect(
        (await admin.query('SELECT count(*)::int AS n, max(n)::bigint AS top FROM tenant_a.big_copy')).rows[0],
      ).toEqual({ n: 25_000_000, top: '25000000' });
      // Both directions went through this process (the proxy runs in the test worker): far less than one copy of the
      // data may have stayed resident at any time.
      expect(peak - baseline).toBeLessThan(150 * 1024 * 1024);
    } finally {
      await admin.query('DROP TABLE IF EXISTS tenant_a.big_copy');
      await admin.end();
    }
  }, 240_000);

  it("carries a client's own SET of a reported setting to its next server", async () => {
    tp = await startTestProxy({ upstream: { poolSize: 1 } });
    const a = await tp.connect('a');
    const b = await tp.connect('b');
    await a.query("SET TimeZone = 'Pacific/Auckland'");
    // b uses the shared server in between and must not see a's zone.
    expect((await b.query('SHOW TimeZone')).rows[0].TimeZone).not.toBe('Pacific/Auckland');
    expect((await a.query('SHOW TimeZone')).rows[0].TimeZone).toBe('Pacific/Auckland');
  });
});
