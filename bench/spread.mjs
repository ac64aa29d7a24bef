#!/usr/bin/env node
// Does spreading clients over more proxy processes pay on this machine? One proxy process (pool 20) against two
// (pool 10 each), on one PostgreSQL: four pgbench -S processes of CLIENTS/2 clients, two per tenant. Layouts: one
// process; two processes each serving one pgbench of each tenant (tenants mixed alike); two processes each serving
// one tenant (tenants routed by port). REPS runs of each, interleaved in rotating order. Same total servers, same
// build, same config otherwise.
//
//   npm run build && node bench/spread.mjs          CLIENTS=8 (per tenant) MODE=simple|extended|prepared SECONDS=10 REPS=6
import { execFile } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { signDevToken } from '../dist/auth/sign-token.js';
import { validateConfig } from '../dist/config/load.js';
import { startPgCluster } from '../dist/dev/pg-cluster.js';
import { readStat } from './proc-cpu.mjs';
import { scratchDatabase, startProxyProcess } from './scratch.mjs';

const CLIENTS = process.env.CLIENTS ?? '8';
const MODE = process.env.MODE ?? 'simple';
const SECONDS = process.env.SECONDS ?? '10';
const REPS = Number(process.env.REPS ?? 6);
const TENANTS = ['t1', 't2'];
const work = mkdtempSync(join(tmpdir(), 'pgtp-spread-'));

const cluster = await startPgCluster();
const children = [];
try {
  const url = await scratchDatabase(cluster, 'spread', TENANTS);
  const raw = (name, poolSize) => ({
    listen: { host: '127.0.0.1', port: 0 },
    upstream: { url, poolSize },
    auth: { jwt: { secret: 'spread-bench-secret-0123456789abcdef-0123456789' } },
    audit: { file: join(work, `${name}-audit.log`) },
    log: { level: 'info' },
  });
  const start = async (name, poolSize) => {
    const dir = join(work, name);
    mkdirSync(dir);
    const proxy = await startProxyProcess(raw(name, poolSize), dir);
    children.push(proxy.child);
    return proxy;
  };
  const single = await start('one', 20);
  const pair = [await start('two-a', 10), await start('two-b', 10)];
  // Per layout, the proxy process each pgbench talks to, and its tenant.
  const layouts = {
    one: TENANTS.flatMap((tenant) => [{ proxy: single, tenant }, { proxy: single, tenant }]),
    two: TENANTS.flatMap((tenant) => pair.map((proxy) => ({ proxy, tenant }))),
    'two-by-tenant': TENANTS.flatMap((tenant, i) => [{ proxy: pair[i], tenant }, { proxy: pair[i], tenant }]),
  };
  const half = String(Math.max(1, Number(CLIENTS) / 2));
  const runLayout = (layout, seconds) =>
    Promise.all(
      layouts[layout].map(async ({ proxy, tenant }) =>
        pgbench(['-n', '-S', '-M', MODE, '-c', half, '-j', '1', '-T', seconds], await env(proxy.port, tenant)),
      ),
    );

  const config = validateConfig(raw('any', 20));
  const env = async (port, tenant) => ({
    ...process.env,
    PGHOST: '127.0.0.1',
    PGPORT: String(port),
    PGUSER: 'app',
    PGDATABASE: 'spread',
    PGPASSWORD: await signDevToken(config, { tenant, ttlSeconds: 3600 }),
    PGSSLMODE: 'disable',
  });
  const pgbench = (args, environment) =>
    new Promise((done) => execFile('pgbench', args, { env: environment }, (err, out, errOut) => done(`${out}${errOut}`)));
  for (const tenant of TENANTS) await pgbench(['-i', '-s', '2', '-q', '--no-vacuum'], await env(single.port, tenant));

  // One short unmeasured run per layout first, so neither pays for the other's JIT warm-up.
  for (const layout of Object.keys(layouts)) await runLayout(layout, '3');
  const cpuTicks = (procs) => procs.reduce((sum, p) => sum + (({ utime, stime }) => utime + stime)(readStat(p.child.pid)), 0);
  const names = Object.keys(layouts);
  const results = Object.fromEntries(names.map((name) => [name, []]));
  for (let rep = 0; rep < REPS; rep++) {
    for (const layout of [...names.slice(rep % names.length), ...names.slice(0, rep % names.length)]) {
      const procs = [...new Set(layouts[layout].map((run) => run.proxy))];
      const before = cpuTicks(procs);
      const outs = await runLayout(layout, SECONDS);
      const tx = outs.reduce((sum, out) => sum + Number(/actually processed: (\d+)/.exec(out)?.[1] ?? 0), 0);
      const tps = outs.reduce((sum, out) => sum + Number(/tps = ([\d.]+)/.exec(out)?.[1] ?? 0), 0);
      // /proc ticks are 10 ms; over 10 s of load that is well under 1% of the figure.
      const cpuUs = ((cpuTicks(procs) - before) * 10_000) / tx;
      results[layout].push({ tps: Math.round(tps), cpuUs });
      console.log(`rep ${rep + 1} ${layout}: ${Math.round(tps)} tps, proxy CPU ${cpuUs.toFixed(1)} µs/tx`);
    }
  }
  const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
  const summary = (layout) => ({ tps: median(results[layout].map((r) => r.tps)), cpu: median(results[layout].map((r) => r.cpuUs)) });
  const one = summary('one');
  for (const name of names) {
    const { tps, cpu } = summary(name);
    console.log(`median ${name}: ${tps} tps (${(tps / one.tps).toFixed(3)} of one process), proxy CPU ${cpu.toFixed(1)} µs/tx`);
  }
  console.log(`(${MODE}, 4 pgbench × ${half} clients, ${REPS} × ${SECONDS} s each)`);
} finally {
  for (const child of children) child.kill('SIGTERM');
  await new Promise((r) => setTimeout(r, 1000));
  await cluster.stop();
  rmSync(work, { recursive: true, force: true });
}
