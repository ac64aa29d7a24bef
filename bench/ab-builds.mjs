#!/usr/bin/env node
// A/B of two builds of the proxy on one PostgreSQL: two proxy processes (pool 20 each, default config, audit trail to
// a file), pgbench -S with two processes of CLIENTS clients (one per tenant), REPS runs each, interleaved A B, B A, …
// Machine noise hits both builds alike, which a run of `npm run bench` per build would not give.
//
//   npm run build && node bench/ab-builds.mjs /path/to/other/checkout      (that checkout built too: npm run build)
//   CLIENTS=32 MODE=simple|extended|prepared SECONDS=10 REPS=6
//
// A is the other checkout, B this one; prints every run (TPS, and the proxy's and PostgreSQL's CPU per transaction from
// /proc) and the medians.
import { mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { validateConfig } from '../dist/config/load.js';
import { startPgCluster } from '../dist/dev/pg-cluster.js';
import { treeCpuTicks } from './proc-cpu.mjs';
import * as here from './scratch.mjs';

const other = process.argv[2];
if (other === undefined) {
  console.error('usage: node bench/ab-builds.mjs <other checkout with dist/ built>');
  process.exit(2);
}
const there = await import(resolve(other, 'bench/scratch.mjs'));
const CLIENTS = process.env.CLIENTS ?? '32';
const MODE = process.env.MODE ?? 'simple';
const SECONDS = process.env.SECONDS ?? '10';
const REPS = Number(process.env.REPS ?? 6);
const work = mkdtempSync(join(tmpdir(), 'pgtp-ab-'));

const cluster = await startPgCluster();
const proxies = [];
try {
  const url = await here.scratchDatabase(cluster, 'ab', ['t1', 't2']);
  const raw = (name) => ({
    listen: { host: '127.0.0.1', port: 0 },
    upstream: { url, poolSize: 20 },
    auth: { jwt: { secret: 'ab-builds-secret-0123456789abcdef-0123456789' } },
    audit: { file: join(work, `${name}-audit.log`) },
    log: { level: 'info' },
  });
  const config = validateConfig(raw('B'));
  for (const [name, build] of [
    ['A', there],
    ['B', here],
  ]) {
    const dir = join(work, name);
    mkdirSync(dir);
    proxies.push({ name, ...(await build.startProxyProcess(raw(name), dir)) });
  }
  const env = (port, tenant) => here.tenantEnv(config, port, 'ab', tenant);
  for (const tenant of ['t1', 't2'])
    await here.pgbench(['-i', '-s', '2', '-q', '--no-vacuum'], await env(proxies[0].port, tenant));

  const postmaster = Number(readFileSync(join(cluster.dataDir, 'postmaster.pid'), 'utf8').split('\n')[0]);
  const runs = { A: { tps: [], proxyCpu: [], pgCpu: [] }, B: { tps: [], proxyCpu: [], pgCpu: [] } };
  for (let rep = 0; rep < REPS; rep++) {
    for (const proxy of rep % 2 === 0 ? proxies : [...proxies].reverse()) {
      const [proxyBefore, pgBefore] = [await treeCpuTicks(proxy.child.pid), await treeCpuTicks(postmaster)];
      const outs = await Promise.all(
        ['t1', 't2'].map(async (tenant) =>
          here.pgbench(
            ['-n', '-S', '-M', MODE, '-c', CLIENTS, '-j', '1', '-T', SECONDS],
            await env(proxy.port, tenant),
          ),
        ),
      );
      const [proxyTicks, pgTicks] = [
        (await treeCpuTicks(proxy.child.pid)) - proxyBefore,
        (await treeCpuTicks(postmaster)) - pgBefore,
      ];
      const total = outs.reduce((sum, out) => sum + Number(/tps = ([\d.]+)/.exec(out)?.[1] ?? 0), 0);
      const transactions = outs.reduce((sum, out) => sum + Number(/actually processed: (\d+)/.exec(out)?.[1] ?? 0), 0);
      const run = runs[proxy.name];
      run.tps.push(Math.round(total));
      // Clock ticks of 10 ms, in µs per transaction.
      run.proxyCpu.push((proxyTicks * 10_000) / transactions);
      run.pgCpu.push((pgTicks * 10_000) / transactions);
      console.log(
        `rep ${rep + 1} ${proxy.name} ${Math.round(total)} tps, CPU µs/tx proxy ${run.proxyCpu.at(-1).toFixed(1)}, PostgreSQL ${run.pgCpu.at(-1).toFixed(1)}`,
      );
    }
  }
  const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
  const { A, B } = runs;
  console.log(
    `median A ${median(A.tps)} tps, B ${median(B.tps)} tps: B/A ${(median(B.tps) / median(A.tps)).toFixed(3)} (${MODE}, 2 × ${CLIENTS} clients, ${REPS} × ${SECONDS} s each)`,
  );
  console.log(
    `median CPU µs/tx: proxy A ${median(A.proxyCpu).toFixed(1)}, B ${median(B.proxyCpu).toFixed(1)}; PostgreSQL A ${median(A.pgCpu).toFixed(1)}, B ${median(B.pgCpu).toFixed(1)}`,
  );
} finally {
  for (const proxy of proxies) proxy.child.kill('SIGTERM');
  await new Promise((r) => setTimeout(r, 1000));
  await cluster.stop();
  rmSync(work, { recursive: true, force: true });
}
