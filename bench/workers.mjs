#!/usr/bin/env node
// Does spreading clients over more proxy processes pay on this machine? The same proxy with listen.workers 1 and
// with listen.workers 2 (pool 20 either way, split 10 + 10 between the workers), on one PostgreSQL: pgbench -S with
// two processes of CLIENTS clients, one per tenant, REPS runs of each interleaved (1 2, 2 1, …) after one short
// unmeasured run each. Prints TPS and the proxy's CPU per transaction (primary and workers together).
//
//   npm run build && node bench/workers.mjs          CLIENTS=8 MODE=simple|extended|prepared SECONDS=10 REPS=6 WORKERS=2
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { validateConfig } from '../dist/config/load.js';
import { startPgCluster } from '../dist/dev/pg-cluster.js';
import { treeCpuTicks } from './proc-cpu.mjs';
import { pgbench, scratchDatabase, startProxyProcess, tenantEnv } from './scratch.mjs';

const CLIENTS = process.env.CLIENTS ?? '8';
const MODE = process.env.MODE ?? 'simple';
const SECONDS = process.env.SECONDS ?? '10';
const REPS = Number(process.env.REPS ?? 6);
const WORKERS = Number(process.env.WORKERS ?? 2);
const TENANTS = ['t1', 't2'];
const work = mkdtempSync(join(tmpdir(), 'pgtp-workers-'));

const cluster = await startPgCluster();
const children = [];
try {
  const url = await scratchDatabase(cluster, 'workers', TENANTS);
  const raw = (workers) => ({
    listen: { host: '127.0.0.1', port: 0, workers },
    upstream: { url, poolSize: 20 },
    auth: { jwt: { secret: 'workers-bench-secret-0123456789abcdef-0123456789' } },
    audit: { file: join(work, `workers-${workers}-audit.log`) },
    log: { level: 'info' },
  });
  const proxies = {};
  for (const workers of [1, WORKERS]) {
    const dir = join(work, `workers-${workers}`);
    mkdirSync(dir);
    const proxy = await startProxyProcess(raw(workers), dir);
    children.push(proxy.child);
    proxies[`workers ${workers}`] = proxy;
  }
  const names = Object.keys(proxies);

  const config = validateConfig(raw(1));
  const env = (port, tenant) => tenantEnv(config, port, 'workers', tenant);
  const port = proxies[names[0]].port;
  for (const tenant of TENANTS) await pgbench(['-i', '-s', '2', '-q', '--no-vacuum'], await env(port, tenant));
  const run = (name, seconds) =>
    Promise.all(
      TENANTS.map(async (tenant) =>
        pgbench(
          ['-n', '-S', '-M', MODE, '-c', CLIENTS, '-j', '1', '-T', seconds],
          await env(proxies[name].port, tenant),
        ),
      ),
    );

  // One short unmeasured run each, so neither pays for the other's JIT warm-up.
  for (const name of names) await run(name, '3');
  const results = Object.fromEntries(names.map((name) => [name, []]));
  for (let rep = 0; rep < REPS; rep++) {
    for (const name of rep % 2 === 0 ? names : [...names].reverse()) {
      const before = await treeCpuTicks(proxies[name].child.pid);
      const outs = await run(name, SECONDS);
      const cpuTicks = (await treeCpuTicks(proxies[name].child.pid)) - before;
      const tx = outs.reduce((sum, out) => sum + Number(/actually processed: (\d+)/.exec(out)?.[1] ?? 0), 0);
      const tps = outs.reduce((sum, out) => sum + Number(/tps = ([\d.]+)/.exec(out)?.[1] ?? 0), 0);
      const failed = outs.reduce((sum, out) => sum + Number(/failed transactions: (\d+)/.exec(out)?.[1] ?? 0), 0);
      // /proc ticks are 10 ms: over 10 s of load, well under 1% of the figure.
      const cpuUs = (cpuTicks * 10_000) / tx;
      results[name].push({ tps: Math.round(tps), cpuUs });
      console.log(
        `rep ${rep + 1} ${name}: ${Math.round(tps)} tps, proxy CPU ${cpuUs.toFixed(1)} µs/tx, ${failed} failed`,
      );
    }
  }
  const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
  const base = median(results[names[0]].map((r) => r.tps));
  for (const name of names) {
    const tps = median(results[name].map((r) => r.tps));
    const cpu = median(results[name].map((r) => r.cpuUs));
    console.log(
      `median ${name}: ${tps} tps (${(tps / base).toFixed(3)} of ${names[0]}), proxy CPU ${cpu.toFixed(1)} µs/tx`,
    );
  }
  console.log(`(${MODE}, 2 pgbench × ${CLIENTS} clients, ${REPS} × ${SECONDS} s each)`);
} finally {
  for (const child of children) child.kill('SIGTERM');
  await new Promise((r) => setTimeout(r, 1000));
  await cluster.stop();
  rmSync(work, { recursive: true, force: true });
}
