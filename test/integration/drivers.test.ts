// Driver scenario suites through a pool smaller than the number of clients: what applications actually do.
import { execFile, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import postgres from 'postgres';
import { afterEach, describe, expect, it } from 'vitest';
import { adminClient } from '../support/postgres.js';
import { startTestProxy, type TestProxy } from '../support/proxy.js';
import { jdbcJar } from '../support/modes.js';

let tp: TestProxy | null = null;
afterEach(async () => {
  await tp?.close();
  tp = null;
});

describe('node-postgres', () => {
  it('reuses named prepared statements across 1,000 transactions of 50 clients of two tenants on 4 servers', async () => {
    tp = await startTestProxy({ upstream: { poolSize: 4 } });
    const clients = await Promise.all(Array.from({ length: 50 }, (_, i) => tp!.connect(i % 2 === 0 ? 'a' : 'b')));
    const wrong: string[] = [];
    await Promise.all(
      clients.map(async (client, i) => {
        const tenant = i % 2 === 0 ? 'a' : 'b';
        for (let t = 0; t < 20; t++) {
          await client.query('BEGIN');
          const r = await client.query({
            name: 'count-items',
            text: 'SELECT current_schema() AS s, count(*)::int AS n FROM items WHERE id <= $1',
            values: [3],
          });
          const row = await client.query({
            name: 'one-item',
            text: 'SELECT name FROM items WHERE id = $1',
            values: [1],
          });
          await client.query('COMMIT');
          if (
            r.rows[0].s !== `tenant_${tenant}` ||
            r.rows[0].n !== (tenant === 'a' ? 2 : 3) ||
            row.rows[0].name !== `${tenant}-one`
          ) {
            wrong.push(`${i}/${t}: ${JSON.stringify(r.rows[0])} ${row.rows[0].name}`);
          }
        }
      }),
    );
    expect(wrong).toEqual([]);
    // 50 clients were served by no more than the pool's 4 servers.
    const stats = tp.proxy.pool.stats();
    expect(stats.idle + stats.parked + stats.active + stats.resetting + stats.connecting).toBeLessThanOrEqual(4);
  }, 120_000);

  it('round-trips a 10 MB bytea parameter and relays notices to the client that raised them', async () => {
    tp = await startTestProxy({ upstream: { poolSize: 1 } });
    const a = await tp.connect('a');
    const b = await tp.connect('b');
    const notices: string[] = [];
    a.on('notice', (n) => notices.push(n.message ?? ''));
    b.on('notice', (n) => notices.push(`b saw: ${n.message}`));
    const big = randomBytes(10 * 1024 * 1024);
    const { rows } = await a.query('SELECT $1::bytea AS data, length($1::bytea) AS n', [big]);
    expect(rows[0].n).toBe(big.length);
    expect(Buffer.compare(rows[0].data as Buffer, big)).toBe(0);
    await a.query("DO $$ BEGIN RAISE NOTICE 'hello from %', current_schema(); END $$");
    await b.query('SELECT 1');
    expect(notices).toEqual(['hello from tenant_a']);
  });

  it('carries a 100 MB bytea parameter and a million-row result while another client keeps being served', async () => {
    tp = await startTestProxy({ upstream: { poolSize: 2 } });
    const big = await tp.connect('a');
    const other = await tp.connect('b');
    const payload = Buffer.alloc(100 * 1024 * 1024, 7);
    let otherQueries = 0;
    let stop = false;
    const background = (async () => {
      while (!stop) {
        expect((await other.query('SELECT count(*)::int AS n FROM items')).rows[0].n).toBe(3);
        otherQueries++;
      }
    })();
    const sized = await big.query('SELECT length($1::bytea) AS n, get_byte($1::bytea, 104857599) AS last', [payload]);
    expect(sized.rows[0]).toEqual({ n: 100 * 1024 * 1024, last: 7 });
    const many = await big.query('SELECT g FROM generate_series(1, 1000000) AS g');
    expect(many.rowCount).toBe(1_000_000);
    expect(many.rows[999_999].g).toBe(1_000_000);
    stop = true;
    await background;
    // The other tenant's client was served all along, not after the big transfers.
    expect(otherQueries).toBeGreaterThan(10);
  }, 120_000);

  it('keeps serving through a reload under load, and a drain lets no transaction end half-done', async () => {
    tp = await startTestProxy({ upstream: { poolSize: 3 } });
    const admin = await adminClient();
    const table = `drain_${randomBytes(4).toString('hex')}`;
    await admin.query(`CREATE TABLE tenant_a.${table} (txn int, part int)`);
    await admin.query(`GRANT ALL ON tenant_a.${table} TO pgtp_proxy`);
    try {
      const clients = await Promise.all(Array.from({ length: 12 }, () => tp!.connect('a')));
      let stop = false;
      const errors: string[] = [];
      const loads = clients.map(async (client, i) => {
        for (let t = 0; !stop; t++) {
          const txn = i * 100_000 + t;
          try {
            await client.query('BEGIN');
            await client.query(`INSERT INTO ${table} VALUES ($1, 1)`, [txn]);
            await new Promise((r) => setTimeout(r, 2));
            await client.query(`INSERT INTO ${table} VALUES ($1, 2)`, [txn]);
            await client.query('COMMIT');
          } catch (err) {
            errors.push((err as { code?: string }).code ?? (err as Error).message);
            return;
          }
        }
      });
      await new Promise((r) => setTimeout(r, 300));
      await tp.proxy.reload(tp.config);
      await new Promise((r) => setTimeout(r, 300));
      expect(errors).toEqual([]);
      // Drain: the listener closes, each client is told 57P01 as soon as its transaction ends — well before the
      // drain timeout, although every client would start another transaction at once.
      const drainStarted = Date.now();
      await tp.proxy.close(20_000);
      expect(Date.now() - drainStarted).toBeLessThan(10_000);
      stop = true;
      await Promise.all(loads);
      tp = null;
      // Whatever each client saw, every transaction is whole or absent.
      const { rows } = await admin.query(
        `SELECT txn, count(*)::int AS parts FROM tenant_a.${table} GROUP BY txn HAVING count(*) <> 2`,
      );
      expect(rows).toEqual([]);
      const { rows: done } = await admin.query(`SELECT count(DISTINCT txn)::int AS n FROM tenant_a.${table}`);
      expect(done[0].n).toBeGreaterThan(12);
      expect(errors.every((code) => code === '57P01' || /terminated|ECONNRESET|Connection/i.test(code))).toBe(true);
    } finally {
      await admin.query(`DROP TABLE IF EXISTS tenant_a.${table}`);
      await admin.end();
    }
  }, 60_000);
});

/** Resolves when a server runs `query` (the proxy's role runs every tenant's statements). */
async function untilRunning(query: string): Promise<void> {
  const admin = await adminClient();
  try {
    for (let i = 0; i < 200; i++) {
      const { rowCount } = await admin.query("SELECT 1 FROM pg_stat_activity WHERE state = 'active' AND query = $1", [
        query,
      ]);
      if (rowCount !== 0) return;
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    throw new Error(`${query} never started`);
  } finally {
    await admin.end();
  }
}

describe('postgres.js', () => {
  it('cancels a running statement and keeps the connection, pipelines a batch with an error in the middle', async () => {
    tp = await startTestProxy({ upstream: { poolSize: 1 } });
    const sql = postgres({
      host: '127.0.0.1',
      port: tp.port,
      user: 'app',
      database: 'pgtp_test',
      password: await tp.token('b'),
      max: 1,
      onnotice: () => undefined,
    });
    try {
      const started = Date.now();
      const sleeping = sql`SELECT pg_sleep(10)`.execute();
      // Cancel once PostgreSQL runs it: postgres.js stalls its connection when it cancels a query still queued
      // behind its own type lookup, which would time the test out on a slow machine without saying anything.
      await untilRunning('SELECT pg_sleep(10)');
      void sleeping.cancel();
      await expect(sleeping).rejects.toMatchObject({ code: '57014' });
      expect(Date.now() - started).toBeLessThan(10_000);
      expect((await sql`SELECT current_schema() AS s`)[0]!.s).toBe('tenant_b');

      const results = await Promise.allSettled([
        sql`SELECT count(*)::int AS n FROM items`,
        sql`SELECT ${1}::int / ${0}::int AS boom`,
        sql`SELECT name FROM items WHERE id = ${3}`,
      ]);
      expect(results[0]).toMatchObject({ status: 'fulfilled', value: [{ n: 3 }] });
      expect(results[1]).toMatchObject({ status: 'rejected', reason: { code: '22012' } });
      // After the error the pipeline goes on with the next statement as PostgreSQL would.
      expect(results[2]).toMatchObject({ status: 'fulfilled', value: [{ name: 'b-three' }] });

      // COPY both ways.
      const table = `pjs_${randomBytes(4).toString('hex')}`;
      await sql.unsafe(`CREATE TABLE ${table} (id int, v text)`);
      try {
        const writable = await sql.unsafe(`COPY ${table} FROM STDIN`).writable();
        await new Promise<void>((resolve, reject) => {
          writable.on('error', reject);
          writable.on('finish', resolve);
          for (let i = 0; i < 5000; i++) writable.write(`${i}\tv${i}\n`);
          writable.end();
        });
        expect((await sql.unsafe(`SELECT count(*)::int AS n FROM ${table}`))[0]!.n).toBe(5000);
        // Under 16 kB out: postgres.js pauses its socket when a COPY stream's buffer fills and does not resume it
        // once the stream has ended, which stalls the connection whoever is on the other end.
        const readable = await sql
          .unsafe(`COPY (SELECT id FROM ${table} WHERE id < 1000 ORDER BY id) TO STDOUT`)
          .readable();
        let text = '';
        for await (const chunk of readable) text += (chunk as Buffer).toString();
        expect(text.trim().split('\n')).toHaveLength(1000);
      } finally {
        await sql.unsafe(`DROP TABLE IF EXISTS ${table}`);
      }
    } finally {
      await sql.end();
    }
  });
});

/** Runs a driver scenario program and returns its "name=result" lines as an object. */
async function runScenario(command: string, args: string[]): Promise<Record<string, string>> {
  const stdout = await new Promise<string>((resolve, reject) => {
    execFile(command, args, { timeout: 170_000, maxBuffer: 1 << 20 }, (err, out, errOut) =>
      err ? reject(new Error(`${err.message}\n${out}\n${errOut}`)) : resolve(out),
    );
  });
  return Object.fromEntries(
    stdout
      .trim()
      .split('\n')
      .map((line) => [line.slice(0, line.indexOf('=')), line.slice(line.indexOf('=') + 1)]),
  );
}

/** psycopg 3 from Debian's python3-psycopg (.ci/run installs it), seen by the system Python. */
function psycopgPython(): string | null {
  const python = '/usr/bin/python3';
  const probe = spawnSync(python, ['-c', 'import psycopg'], { stdio: 'ignore' });
  return probe.status === 0 ? python : null;
}

const python = psycopgPython();
describe.skipIf(python === null)('psycopg 3 (python3-psycopg)', () => {
  it('runs prepared statements, a pipeline with an error, cancel, COPY, 10 MB bytea and notices through a pool of 3', async () => {
    tp = await startTestProxy({ upstream: { poolSize: 3 } });
    const script = fileURLToPath(new URL('../drivers/psycopg_scenario.py', import.meta.url));
    const results = await runScenario(python!, [
      script,
      String(tp.port),
      await tp.token('a'),
      await tp.token('b'),
      randomBytes(4).toString('hex'),
    ]);
    expect(results).toEqual({
      prepared: "{'ok': 8}",
      pipeline: '23505 then 0',
      cancel: '57014 fast=True after=42',
      copy: 'same=True',
      bytea: 'True',
      notice: "['hello from tenant_a']",
      refused: '42501',
      rotate: 'same=True n=24',
    });
  }, 180_000);
});

const jar = jdbcJar();
describe.skipIf(jar === null)('pgjdbc (the jar from the local Maven repository)', () => {
  it('runs server-side prepared statements, batches, cancel, COPY, 10 MB bytea and notices through a pool of 3', async () => {
    tp = await startTestProxy({ upstream: { poolSize: 3 } });
    const source = fileURLToPath(new URL('../drivers/JdbcScenario.java', import.meta.url));
    const results = await runScenario('java', [
      '-cp',
      jar!,
      source,
      String(tp.port),
      await tp.token('a'),
      await tp.token('b'),
      randomBytes(4).toString('hex'),
    ]);
    expect(results).toEqual({
      prepared: '{ok=16}',
      batch: '23505 then 100',
      cancel: '57014 fast=true after=42',
      copy: '10000 10000 same=true',
      bytea: 'true',
      notice: 'hello from tenant_a',
      refused: '42501',
    });
  }, 180_000);
});
