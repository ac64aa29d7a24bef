#!/usr/bin/env node
// Issue 6: "a pool serving 1,000 tenant schemas as fast as one serving 2".
//
//   npm run build && node bench/many-tenants.mjs        (TENANTS=1000 CONNECTIONS=1000 CONCURRENCY=64 SECONDS=15)
//
// One throwaway PostgreSQL, TENANTS tenant schemas each with the same small table. A proxy process (pool 20, default
// config, audit trail to a file) serves CONNECTIONS client connections; a driver keeps CONCURRENCY single-statement
// transactions in flight on them, each on a connection picked at random. Run A spreads the connections over all
// TENANTS tenants, run B over 2; A and B alternate, REPS times each, and the medians are compared.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { signDevToken } from '../dist/auth/sign-token.js';
import { validateConfig } from '../dist/config/load.js';
import { startPgCluster } from '../dist/dev/pg-cluster.js';
import { scratchDatabase, startProxyProcess } from './scratch.mjs';

const TENANTS = Number(process.env.TENANTS ?? 1000);
const CONNECTIONS = Number(process.env.CONNECTIONS ?? 1000);
const CONCURRENCY = Number(process.env.CONCURRENCY ?? 64);
const SECONDS = Number(process.env.SECONDS ?? 15);
const REPS = Number(process.env.REPS ?? 3);
const work = mkdtempSync(join(tmpdir(), 'pgtp-tenants-'));
const tenantId = (i) => `t${String(i).padStart(4, '0')}`;

const cluster = await startPgCluster();
let proxy = null;
try {
  const started = Date.now();
  const upstreamUrl = await scratchDatabase(
    cluster,
    'many',
    Array.from({ length: TENANTS }, (_, i) => tenantId(i)),
    async (db, schema) => {
      await db.query(`CREATE TABLE ${schema}.accounts (id int PRIMARY KEY, balance int NOT NULL)`);
      await db.query(`INSERT INTO ${schema}.accounts SELECT g, g FROM generate_series(1, 1000) AS g`);
      await db.query(`ANALYZE ${schema}.accounts`);
    },
  );
  console.log(`provisioned ${TENANTS} tenant schemas in ${((Date.now() - started) / 1000).toFixed(1)} s`);

  const raw = {
    listen: { host: '127.0.0.1', port: 0, maxClients: 2 * CONNECTIONS + 100 },
    upstream: { url: upstreamUrl, poolSize: 20 },
    auth: { jwt: { secret: 'many-tenants-bench-secret-0123456789abcdef' } },
    audit: { file: join(work, 'audit.log') },
    log: { level: 'info' },
  };
  const config = validateConfig(raw);
  let port;
  ({ child: proxy, port } = await startProxyProcess(raw, work));

  const connectAll = async (tenantCount) => {
    const tokens = new Map();
    const clients = [];
    for (let i = 0; i < CONNECTIONS; i += 100) {
      const batch = [];
      for (let j = i; j < Math.min(CONNECTIONS, i + 100); j++) {
        const tenant = tenantId(j % tenantCount);
        if (!tokens.has(tenant)) tokens.set(tenant, await signDevToken(config, { tenant, ttlSeconds: 3600 }));
        const client = new pg.Client({
          host: '127.0.0.1',
          port,
          user: 'app',
          database: 'many',
          password: tokens.get(tenant),
        });
        client.on('error', () => undefined);
        batch.push(client.connect().then(() => client));
      }
      clients.push(...(await Promise.all(batch)));
    }
    return clients;
  };

  const run = async (clients) => {
    const free = [...clients];
    let done = 0;
    let errors = 0;
    const deadline = Date.now() + SECONDS * 1000;
    const lane = async () => {
      while (Date.now() < deadline) {
        const client = free.splice(Math.floor(Math.random() * free.length), 1)[0];
        try {
          await client.query(`SELECT balance FROM accounts WHERE id = ${1 + Math.floor(Math.random() * 1000)}`);
          done++;
        } catch {
          errors++;
        } finally {
          free.push(client);
        }
      }
    };
    await Promise.all(Array.from({ length: CONCURRENCY }, lane));
    return { tps: done / SECONDS, errors };
  };

  const results = { many: [], two: [] };
  const sets = { many: await connectAll(TENANTS), two: await connectAll(2) };
  for (let rep = 0; rep < REPS; rep++) {
    for (const kind of rep % 2 === 0 ? ['many', 'two'] : ['two', 'many']) {
      const r = await run(sets[kind]);
      results[kind].push(r);
      console.log(
        `rep ${rep + 1} ${kind === 'many' ? `${TENANTS} tenants` : '2 tenants'}: ${r.tps.toFixed(0)} tps, ${r.errors} errors`,
      );
    }
  }
  const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
  const many = median(results.many.map((r) => r.tps));
  const two = median(results.two.map((r) => r.tps));
  console.log(
    `median: ${TENANTS} tenants ${many.toFixed(0)} tps, 2 tenants ${two.toFixed(0)} tps: ratio ${(many / two).toFixed(2)} ` +
      `(${CONNECTIONS} connections, ${CONCURRENCY} in flight, pool 20, ${REPS} × ${SECONDS} s each)`,
  );
  for (const client of [...sets.many, ...sets.two]) client.end().catch(() => undefined);
} catch (err) {
  console.error('bench failed:', err);
  process.exitCode = 1;
} finally {
  proxy?.kill('SIGTERM');
  await new Promise((r) => setTimeout(r, 1000));
  await cluster.stop();
  rmSync(work, { recursive: true, force: true });
}
