// Quick A/B of one proxy build: a throwaway cluster, two tenants, an in-process proxy (pool 20), two pgbench -S
// processes of 8 clients for 8 s. GUARD=off sets policy.guard: false; MODE=simple|extended|prepared;
// AUDIT=statements|connections|off (default statements, to a temporary file); SCRIPT=tpcb runs pgbench's TPC-B-like
// transaction (seven statements) instead of -S.
// Run after `npm run build`: node bench/quick-ab.mjs; add --cpu-prof to profile the proxy.
import pg from 'pg';
import { readFileSync } from 'node:fs';
import pino from 'pino';
import { startPgCluster } from '../dist/dev/pg-cluster.js';
import { prepareProxyRole, provisionTenant, revokePublicDefaults } from '../dist/tenants/provision.js';
import { validateConfig } from '../dist/config/load.js';
import { startProxy } from '../dist/main.js';

import { signDevToken } from '../dist/auth/sign-token.js';
import { treeCpuTicks } from './proc-cpu.mjs';
const cluster = await startPgCluster();
const admin = new pg.Client({ connectionString: cluster.superuserUrl });
await admin.connect();
await admin.query('CREATE DATABASE prof');
await admin.end();
const u = new URL(cluster.superuserUrl);
u.pathname = '/prof';
const db = new pg.Client({ connectionString: u.toString() });
await db.connect();
await prepareProxyRole(db, { role: 'px', password: 'pw' });
await revokePublicDefaults(db, 'prof', 'px');
for (const t of ['t1', 't2']) await provisionTenant(db, { schema: `tenant_${t}`, role: null, proxyRole: 'px' });
await db.end();
const config = validateConfig({
  listen: { port: 0 },
  upstream: { url: `postgres://px:pw@127.0.0.1:${cluster.port}/prof`, poolSize: 20 },
  auth: { jwt: { secret: 'x'.repeat(40) } },
  log: { level: 'warn' },
  policy: { guard: process.env.GUARD !== 'off' },
  audit: {
    enabled: process.env.AUDIT !== 'off',
    statements: (process.env.AUDIT ?? 'statements') === 'statements',
    file: `${cluster.dataDir}/../audit.log`,
  },
});
const proxy = await startProxy(config, pino({ level: 'warn' }));
const env = async (t) => ({
  ...process.env,
  PGHOST: '127.0.0.1',
  PGPORT: String(proxy.port),
  PGUSER: 'app',
  PGDATABASE: 'prof',
  PGPASSWORD: await signDevToken(config, { tenant: t, ttlSeconds: 600 }),
  PGSSLMODE: 'disable',
});
const { execFile } = await import('node:child_process');
const { promisify } = await import('node:util');
for (const t of ['t1', 't2'])
  await promisify(execFile)('pgbench', ['-i', '-s', '2', '-q', '--no-vacuum'], { env: await env(t) });
const mode = process.env.MODE ?? 'simple';
const run = async (t) => {
  const childEnv = await env(t);
  return new Promise((res) =>
    execFile(
      'pgbench',
      [
        '-n',
        ...(process.env.SCRIPT === 'tpcb' ? [] : ['-S']),
        '-c',
        process.env.CLIENTS ?? '8',
        '-j',
        '1',
        '-T',
        '8',
        '-M',
        mode,
      ],
      { env: childEnv },
      (e, out) => res(out),
    ),
  );
};
const postmasterPid = Number(readFileSync(`${cluster.dataDir}/postmaster.pid`, 'utf8').split('\n')[0]);
const pgBefore = await treeCpuTicks(postmasterPid);
const cpuBefore = process.cpuUsage();
const outs = await Promise.all([run('t1'), run('t2')]);
const cpu = process.cpuUsage(cpuBefore);
const pgCpu = ((await treeCpuTicks(postmasterPid)) - pgBefore) * 10_000; // clock ticks of 10 ms, in µs
let transactions = 0;
for (const o of outs) {
  console.log(/tps = ([\d.]+)/.exec(o)?.[1], /failed transactions: (\d+)/.exec(o)?.[1]);
  transactions += Number(/number of transactions actually processed: (\d+)/.exec(o)?.[1] ?? 0);
}
// The whole process (every thread: the audit's file writes run on libuv's pool) per transaction.
console.log(
  `proxy CPU ${((cpu.user + cpu.system) / transactions).toFixed(1)} µs/tx (user ${(cpu.user / transactions).toFixed(1)}, system ${(cpu.system / transactions).toFixed(1)}) over ${transactions} transactions`,
);
console.log(`postgres CPU ${(pgCpu / transactions).toFixed(1)} µs/tx`);
console.log(proxy.pool.stats());
await proxy.close(0);
await cluster.stop();
process.exit(0);
