#!/usr/bin/env node
// Issue 6's soak test: 1,000 concurrent clients across 100 tenants for 10 minutes — zero errors, zero cross-tenant
// results, flat memory. Not part of CI (it runs for as long as it is told to).
//
//   npm run bench:load          (CLIENTS=1000 TENANTS=100 SECONDS=600 POOL=20 THINK_MS=400)
//
// One throwaway PostgreSQL; every tenant schema holds the same tables, each row stamped with its tenant's id. The
// proxy runs as its own process (default config, audit trail to a file). Each client is one node-postgres connection
// that loops over a mix of transactions, pausing 0..2×THINK_MS between them, and checks every answer:
//   - reads: every row it sees carries its own tenant's stamp; current_schema() is its own;
//   - writes: UPDATE … RETURNING and INSERT … RETURNING in an explicit transaction, through named prepared statements;
//   - session state: each client set its own work_mem at login, and SHOW must keep returning exactly that value
//     (a value leaking between clients that share a server would show up here);
//   - hostile statements: another tenant's schema by name must be refused with 42501, never answered.
// An unexpected error, a wrong stamp or a foreign work_mem fails the run (exit 1). The proxy's RSS is sampled every
// 10 s; the summary compares the first and last minutes. Results go to bench/results/load-test.json.
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { signDevToken } from '../dist/auth/sign-token.js';
import { validateConfig } from '../dist/config/load.js';
import { startPgCluster } from '../dist/dev/pg-cluster.js';
import { scratchDatabase, startProxyProcess } from './scratch.mjs';

const CLIENTS = Number(process.env.CLIENTS ?? 1000);
const TENANTS = Number(process.env.TENANTS ?? 100);
const SECONDS = Number(process.env.SECONDS ?? 600);
const POOL = Number(process.env.POOL ?? 20);
const THINK_MS = Number(process.env.THINK_MS ?? 400);
const ROWS = 50;
const OUT = process.env.LOAD_OUT ?? new URL('./results/load-test.json', import.meta.url).pathname;
const tenantId = (i) => `t${String(i).padStart(3, '0')}`;
const work = mkdtempSync(join(tmpdir(), 'pgtp-load-'));

const stats = { transactions: 0, statements: 0, refusals: 0, errors: 0, violations: 0, byKind: {} };
const problems = [];
function problem(kind, detail) {
  stats[kind]++;
  if (problems.length < 50) problems.push({ kind, at_s: Math.round((Date.now() - startedAt) / 1000), ...detail });
}
let startedAt = Date.now();

/** One client's loop: a transaction mix, each answer checked against the client's own tenant. */
async function clientLoop(client, tenant, workMem, others, deadline) {
  const schema = `tenant_${tenant}`;
  const expectOwn = (rows, what) => {
    for (const row of rows) if (row.owner !== tenant) problem('violations', { tenant, what, saw: row.owner });
  };
  const kinds = [
    async () => {
      const r = await client.query('SELECT owner, count(*)::int AS n, current_schema() AS s FROM items GROUP BY owner');
      expectOwn(r.rows, 'read');
      if (r.rows.length !== 1 || r.rows[0].n !== ROWS || r.rows[0].s !== schema)
        problem('violations', { tenant, what: 'read', rows: r.rows });
      return 1;
    },
    async () => {
      await client.query('BEGIN');
      const id = 1 + Math.floor(Math.random() * ROWS);
      const u = await client.query({
        name: 'bump',
        text: 'UPDATE items SET n = n + 1 WHERE id = $1 RETURNING owner',
        values: [id],
      });
      const i = await client.query({
        name: 'log',
        text: 'INSERT INTO events (owner) VALUES ($1) RETURNING owner',
        values: [tenant],
      });
      const s = await client.query('SELECT current_schema() AS s, current_user AS u');
      await client.query('COMMIT');
      expectOwn([...u.rows, ...i.rows], 'write');
      if (u.rows.length !== 1 || s.rows[0].s !== schema)
        problem('violations', { tenant, what: 'write', schema: s.rows[0].s });
      return 5;
    },
    async () => {
      const r = await client.query({
        name: 'one',
        text: 'SELECT owner FROM items WHERE id = $1',
        values: [1 + Math.floor(Math.random() * ROWS)],
      });
      expectOwn(r.rows, 'prepared read');
      if (r.rows.length !== 1) problem('violations', { tenant, what: 'prepared read', rows: r.rows.length });
      return 1;
    },
    async () => {
      const r = await client.query('SHOW work_mem');
      if (r.rows[0].work_mem !== workMem)
        problem('violations', { tenant, what: 'work_mem', expected: workMem, saw: r.rows[0].work_mem });
      return 1;
    },
    async () => {
      const other = others[Math.floor(Math.random() * others.length)];
      try {
        const r = await client.query(`SELECT owner FROM tenant_${other}.items LIMIT 1`);
        problem('violations', { tenant, what: 'foreign schema answered', rows: r.rows });
      } catch (err) {
        if (err.code !== '42501') throw err;
        stats.refusals++;
      }
      return 1;
    },
  ];
  const weights = [0, 0, 0, 0, 1, 1, 2, 3, 4, 4]; // reads and writes mostly, a hostile statement one time in ten
  while (Date.now() < deadline) {
    await new Promise((resolve) => setTimeout(resolve, Math.random() * 2 * THINK_MS));
    if (Date.now() >= deadline) break;
    const kind = weights[Math.floor(Math.random() * weights.length)];
    try {
      stats.statements += await kinds[kind]();
      stats.transactions++;
      stats.byKind[kind] = (stats.byKind[kind] ?? 0) + 1;
    } catch (err) {
      problem('errors', { tenant, kind, code: err.code, message: err.message });
      await client.query('ROLLBACK').catch(() => undefined);
    }
  }
}

function rssMb(pid) {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  return Number(/VmRSS:\s+(\d+) kB/.exec(status)[1]) / 1024;
}

const cluster = await startPgCluster();
let proxy = null;
const clients = [];
try {
  const tenants = Array.from({ length: TENANTS }, (_, i) => tenantId(i));
  const upstreamUrl = await scratchDatabase(cluster, 'load', tenants, async (db, schema) => {
    const tenant = schema.slice('tenant_'.length);
    await db.query(
      `CREATE TABLE ${schema}.items (id int PRIMARY KEY, owner text NOT NULL, n bigint NOT NULL DEFAULT 0)`,
    );
    await db.query(`INSERT INTO ${schema}.items (id, owner) SELECT g, $1 FROM generate_series(1, ${ROWS}) AS g`, [
      tenant,
    ]);
    await db.query(`CREATE TABLE ${schema}.events (id serial PRIMARY KEY, owner text NOT NULL)`);
  });
  const raw = {
    listen: { host: '127.0.0.1', port: 0, maxClients: CLIENTS + 100 },
    upstream: { url: upstreamUrl, poolSize: POOL },
    auth: { jwt: { secret: 'load-test-secret-0123456789abcdef-0123456789' } },
    audit: { file: join(work, 'audit.log') },
    log: { level: 'info' },
  };
  const config = validateConfig(raw);
  let port;
  ({ child: proxy, port } = await startProxyProcess(raw, work));
  const tokens = new Map();
  for (const tenant of tenants) tokens.set(tenant, await signDevToken(config, { tenant, ttlSeconds: SECONDS + 3600 }));

  for (let i = 0; i < CLIENTS; i += 100) {
    const batch = [];
    for (let j = i; j < Math.min(CLIENTS, i + 100); j++) {
      const tenant = tenantId(j % TENANTS);
      // work_mem values 1025kB.. are shown back exactly as set (no unit rounding below 2048kB).
      const workMem = `${1025 + (j % 1000)}kB`;
      const client = new pg.Client({
        host: '127.0.0.1',
        port,
        user: 'app',
        database: 'load',
        password: tokens.get(tenant),
      });
      client.on('error', (err) => problem('errors', { tenant, what: 'connection', message: err.message }));
      batch.push(
        client.connect().then(async () => {
          await client.query(`SET work_mem = '${workMem}'`);
          clients.push({ client, tenant, workMem });
        }),
      );
    }
    await Promise.all(batch);
  }
  const rssAtStart = rssMb(proxy.pid);
  console.log(
    `${CLIENTS} clients over ${TENANTS} tenants connected; proxy RSS ${rssAtStart.toFixed(1)} MB; running ${SECONDS} s`,
  );

  startedAt = Date.now();
  const deadline = startedAt + SECONDS * 1000;
  const samples = [];
  let lastTransactions = 0;
  const sampler = setInterval(() => {
    const at = Math.round((Date.now() - startedAt) / 1000);
    const sample = {
      at_s: at,
      rss_mb: Number(rssMb(proxy.pid).toFixed(1)),
      tps: (stats.transactions - lastTransactions) / 10,
      errors: stats.errors,
      violations: stats.violations,
    };
    lastTransactions = stats.transactions;
    samples.push(sample);
    if (at % 60 === 0) console.log(JSON.stringify(sample));
  }, 10_000);
  await Promise.all(
    clients.map(({ client, tenant, workMem }) =>
      clientLoop(
        client,
        tenant,
        workMem,
        tenants.filter((t) => t !== tenant),
        deadline,
      ),
    ),
  );
  clearInterval(sampler);

  const perMinute = Math.max(1, Math.floor(60 / 10));
  const mean = (xs) => xs.reduce((a, b) => a + b, 0) / xs.length;
  const firstMinute = mean(samples.slice(0, perMinute).map((s) => s.rss_mb));
  const lastMinute = mean(samples.slice(-perMinute).map((s) => s.rss_mb));
  const summary = {
    date: new Date().toISOString(),
    clients: CLIENTS,
    tenants: TENANTS,
    seconds: SECONDS,
    pool: POOL,
    think_ms: THINK_MS,
    transactions: stats.transactions,
    statements: stats.statements,
    transactions_per_second: Number((stats.transactions / SECONDS).toFixed(1)),
    refusals_expected: stats.refusals,
    errors: stats.errors,
    cross_tenant_violations: stats.violations,
    rss_mb: {
      after_connect: Number(rssAtStart.toFixed(1)),
      first_minute: Number(firstMinute.toFixed(1)),
      last_minute: Number(lastMinute.toFixed(1)),
      max: Math.max(...samples.map((s) => s.rss_mb)),
    },
    problems,
    samples,
  };
  writeFileSync(OUT, `${JSON.stringify(summary, null, 2)}\n`);
  console.log(
    `${stats.transactions} transactions (${summary.transactions_per_second}/s), ${stats.refusals} expected refusals, ` +
      `${stats.errors} errors, ${stats.violations} cross-tenant violations; proxy RSS first minute ${firstMinute.toFixed(1)} MB, ` +
      `last minute ${lastMinute.toFixed(1)} MB, max ${summary.rss_mb.max} MB → ${OUT}`,
  );
  if (stats.errors > 0 || stats.violations > 0) {
    console.error('FAILED:', JSON.stringify(problems.slice(0, 10), null, 2));
    process.exitCode = 1;
  }
} catch (err) {
  console.error('load test failed:', err);
  process.exitCode = 1;
} finally {
  await Promise.all(clients.map(({ client }) => client.end().catch(() => undefined)));
  proxy?.kill('SIGTERM');
  await new Promise((r) => setTimeout(r, 1000));
  await cluster.stop();
  rmSync(work, { recursive: true, force: true });
}
