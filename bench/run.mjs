#!/usr/bin/env node
// bench/run.mjs: pgbench side by side against PostgreSQL directly, a bare Node.js TCP pipe (bench/node-pipe.mjs),
// PgBouncer (plain, and doing the proxy's job: SET LOCAL search_path in every transaction, DISCARD ALL on every
// release) and pg-tenant-proxy (with and without its SQL guard), interleaved; a goals table from the ratios; then the
// micro-benchmarks of bench/micro.mjs.
//
// `npm run bench` builds dist/ and runs this. Knobs (environment):
//   BENCH_QUICK=1            3 s × 1 repetition (smoke test of the whole pipeline)
//   BENCH_DURATION=12        seconds per pgbench run          BENCH_REPS=3   repetitions (interleaved)
//   BENCH_LATENCY_DURATION=5 seconds of the one-client latency run
//   BENCH_SCALE=10           pgbench scale factor per tenant schema
//   BENCH_WORKLOADS=a,b      only these workload ids (see WORKLOADS)
//   BENCH_TARGETS=direct,proxy  only these targets (direct,node-pipe,pgbouncer,pgbouncer-samejob,proxy,proxy-noguard)
//   BENCH_PROXY_TENANTS=2    1 puts every proxy client on tenant t1 instead of splitting t1/t2
//   BENCH_PROXY_WORKERS=1    listen.workers of the proxies (their CPU then counts the primary and every worker)
//   BENCH_AUDIT=statements   the proxies' audit trail, to a file in the work dir: statements (the default config: one
//                            event per statement), connections (audit.statements: false) or off (audit.enabled: false)
//   BENCH_JOBS=1             pgbench -j per process (each run is two processes of N/2 clients: 2 threads in all)
//   BENCH_SHARED_BUFFERS=512MB  so both tenant schemas fit in shared_buffers for every target alike
//   BENCH_MICRO=0            skip the micro-benchmarks (bench/micro.mjs) after the matrix
//   BENCH_OUT=bench/results/latest.json
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import {
  chownSync,
  closeSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  openSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { createConnection, createServer } from 'node:net';
import { cpus, tmpdir, totalmem } from 'node:os';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import { startPgCluster } from '../dist/dev/pg-cluster.js';
import { createTenantSchema, prepareProxyRole, revokePublicDefaults } from '../dist/tenants/provision.js';
import { treeCpuTicks, readStat } from './proc-cpu.mjs';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const CLI = join(ROOT, 'dist', 'cli', 'main.js');
const env = process.env;
const QUICK = env.BENCH_QUICK === '1';
const DURATION = positiveInt('BENCH_DURATION', QUICK ? 3 : 12);
const REPS = positiveInt('BENCH_REPS', QUICK ? 1 : 3);
const LATENCY_DURATION = positiveInt('BENCH_LATENCY_DURATION', QUICK ? 3 : 5);
const WARMUP_DURATION = QUICK ? 2 : 5;
const SCALE = positiveInt('BENCH_SCALE', 10);
const JOBS = positiveInt('BENCH_JOBS', 1);
const PROXY_TENANTS = positiveInt('BENCH_PROXY_TENANTS', 2);
const PROXY_WORKERS = positiveInt('BENCH_PROXY_WORKERS', 1);
const AUDIT = env.BENCH_AUDIT ?? 'statements';
if (!['statements', 'connections', 'off'].includes(AUDIT))
  throw new Error(`BENCH_AUDIT must be statements, connections or off, got ${AUDIT}`);
const SHARED_BUFFERS = env.BENCH_SHARED_BUFFERS ?? '512MB';
const OUT = resolve(ROOT, env.BENCH_OUT ?? 'bench/results/latest.json');
const QUIET_WAIT = nonNegativeInt('BENCH_QUIET_WAIT', 60);
const RETRY_DISTURBED = env.BENCH_RETRY_DISTURBED !== '0';
const MICRO = env.BENCH_MICRO !== '0';
/** Share of the machine's CPU taken by other processes above which a run counts as disturbed. */
const DISTURBED = 0.1;
const POOL_SIZE = 20;
const DATABASE = 'bench';
const PROXY_ROLE = 'bench_proxy';
const DIRECT_ROLE = 'bench_direct';
const TENANTS = ['t1', 't2'];
const HOST = '127.0.0.1';
const CLK_TCK = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;

/** The matrix. `targets` limits a workload to some targets; every run is N/2 + N/2 clients in two processes. */
/**
 * The matrix. `targets` limits a workload to some targets; every run is N/2 + N/2 clients in two processes. `script`
 * names pgbench's built-in script (`args` runs it); pgbouncer-samejob runs the same script with its tenant's
 * `SET LOCAL search_path` added (sameJobScript), in the same `mode`.
 */
const WORKLOADS = [
  { id: 'S-16-simple', label: '-S, 16 clients, simple', script: 'select-only', mode: 'simple', clients: 16 },
  { id: 'S-64-simple', label: '-S, 64 clients, simple', script: 'select-only', mode: 'simple', clients: 64 },
  { id: 'S-16-extended', label: '-S, 16 clients, extended', script: 'select-only', mode: 'extended', clients: 16 },
  { id: 'S-64-extended', label: '-S, 64 clients, extended', script: 'select-only', mode: 'extended', clients: 64 },
  { id: 'tpcb-16-simple', label: 'TPC-B-like, 16 clients, simple', script: 'tpcb-like', mode: 'simple', clients: 16 },
  // PgBouncer 1.18 has no prepared-statement support in transaction mode; it is run anyway to record what happens.
  { id: 'S-16-prepared', label: '-S, 16 clients, prepared', script: 'select-only', mode: 'prepared', clients: 16 },
  {
    id: 'latency-1',
    label: '-S, 1 client, simple (latency)',
    script: 'select-only',
    mode: 'simple',
    clients: 1,
    duration: LATENCY_DURATION,
  },
].map((w) => ({ ...w, args: [...(w.script === 'select-only' ? ['-S'] : []), '-M', w.mode] }));
/**
 * node-pipe: bench/node-pipe.mjs, a bare Node.js TCP pipe in front of PostgreSQL (one server per client, no protocol
 * work): the floor of any Node proxy. pgbouncer-samejob: a second PgBouncer doing the proxy's job the way teams do
 * without the proxy (SET LOCAL search_path in every transaction, DISCARD ALL on every release). proxy-noguard: a
 * second proxy process, identical but for `policy.guard: false`, to measure what the guard costs.
 */
const TARGET_IDS = ['direct', 'node-pipe', 'pgbouncer', 'pgbouncer-samejob', 'proxy', 'proxy-noguard'];
const PROXY_IDS = ['proxy', 'proxy-noguard'];
const TARGET_LABELS = {
  direct: 'direct',
  'node-pipe': 'node pipe',
  pgbouncer: 'PgBouncer',
  'pgbouncer-samejob': 'PgBouncer same job',
  proxy: 'proxy',
  'proxy-noguard': 'proxy-noguard',
};

// ---------------------------------------------------------------------------------------------------------------
// Cleanup: everything started is registered here and torn down on exit, Ctrl-C, SIGTERM and errors.

const children = new Set(); // live ChildProcess objects
const cleanups = []; // async functions, run in reverse order
let cleaningUp = null;
let interrupted = null; // the signal that stopped us: nothing after it is measured or written

class Interrupted extends Error {}

function checkInterrupted() {
  if (interrupted) throw new Interrupted(`interrupted by ${interrupted}`);
}

function cleanup() {
  cleaningUp ??= (async () => {
    for (const child of children) killTree(child, 'SIGKILL'); // pgbench runs still going
    for (const fn of cleanups.reverse()) {
      try {
        await fn();
      } catch (err) {
        log(`cleanup: ${err.message}`);
      }
    }
  })();
  return cleaningUp;
}

process.on('exit', () => {
  for (const child of children) killTree(child, 'SIGKILL');
});
for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP']) {
  process.on(signal, () => {
    if (interrupted) return;
    interrupted = signal;
    log(`\n${signal}: stopping everything…`);
    cleanup().finally(() => process.exit(128 + (signal === 'SIGINT' ? 2 : signal === 'SIGTERM' ? 15 : 1)));
  });
}

function killTree(child, signal) {
  if (child.exitCode !== null || child.signalCode !== null) return;
  try {
    process.kill(-child.pid, signal); // detached: its own process group
  } catch {
    try {
      child.kill(signal);
    } catch {
      // gone
    }
  }
}

/** Spawns a child in its own process group so a terminal Ctrl-C reaches only us; we stop it in order. */
function spawnTracked(file, args, opts = {}) {
  const child = spawn(file, args, { ...opts, detached: true });
  children.add(child);
  child.once('exit', () => children.delete(child));
  child.once('error', () => children.delete(child));
  return child;
}

async function stopChild(child, name, signal = 'SIGTERM', graceMs = 5000) {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise((resolve) => child.once('exit', resolve));
  killTree(child, signal);
  const timer = new Promise((resolve) => setTimeout(() => resolve('timeout'), graceMs));
  if ((await Promise.race([exited, timer])) === 'timeout') {
    log(`${name} did not stop within ${graceMs} ms; killing it`);
    killTree(child, 'SIGKILL');
    await exited;
  }
}

// ---------------------------------------------------------------------------------------------------------------

async function main() {
  const started = Date.now();
  // What dist/ was built from, read now: src/ may change while the matrix runs.
  const build = buildInfo();
  const targetFilter = listEnv('BENCH_TARGETS', TARGET_IDS);
  const workloadFilter = listEnv(
    'BENCH_WORKLOADS',
    WORKLOADS.map((w) => w.id),
  );
  const workloads = WORKLOADS.filter((w) => workloadFilter.includes(w.id));
  const notes = [];

  const work = mkdtempSync(join(tmpdir(), 'pgtp-bench-'));
  const pgUser = postgresIds();
  chownSync(work, pgUser.uid, pgUser.gid);
  cleanups.push(async () => rmSync(work, { recursive: true, force: true }));

  let pgbouncerBin = null;
  if (targetFilter.includes('pgbouncer') || targetFilter.includes('pgbouncer-samejob')) {
    pgbouncerBin = ensurePgBouncer();
    if (!pgbouncerBin) notes.push('PgBouncer is not installed and could not be installed: its column is n/a.');
  }

  log('starting a throwaway PostgreSQL cluster…');
  const cluster = await startPgCluster({ log: (line) => log(`  ${line}`) });
  cleanups.push(() => cluster.stop());

  const proxyPassword = randomBytes(18).toString('base64url');
  const directPassword = randomBytes(18).toString('base64url');
  await provision(cluster, proxyPassword, directPassword);
  const pgVersion = await scalar(cluster.superuserUrl, 'SHOW server_version');
  const postmasterPid = Number(readFileSync(join(cluster.dataDir, 'postmaster.pid'), 'utf8').split('\n')[0]);

  const targets = {};
  if (targetFilter.includes('direct')) {
    targets.direct = {
      name: 'direct',
      port: cluster.port,
      pid: null,
      clients: [{ user: DIRECT_ROLE, password: directPassword }],
    };
  }

  if (targetFilter.includes('node-pipe')) {
    const pipe = await startNodePipe(work, cluster.port);
    targets['node-pipe'] = {
      name: 'node-pipe',
      port: pipe.port,
      pid: pipe.child.pid,
      child: pipe.child,
      clients: [{ user: DIRECT_ROLE, password: directPassword }],
      logFile: pipe.logFile,
    };
  }

  const tenants = TENANTS.slice(0, Math.min(PROXY_TENANTS, TENANTS.length));
  let pgbouncerVersion = null;
  if (pgbouncerBin && targetFilter.includes('pgbouncer')) {
    const bouncer = await startPgBouncer(pgbouncerBin, work, pgUser, cluster.port, {
      name: 'pgbouncer',
      user: DIRECT_ROLE,
      password: directPassword,
    });
    pgbouncerVersion = bouncer.version;
    targets.pgbouncer = {
      name: 'pgbouncer',
      port: bouncer.port,
      pid: bouncer.pid,
      child: bouncer.child,
      clients: [{ user: DIRECT_ROLE, password: directPassword }],
      logFile: bouncer.logFile,
    };
  }
  if (pgbouncerBin && targetFilter.includes('pgbouncer-samejob')) {
    // The proxy's own role (default search_path empty: a transaction that forgot its SET fails instead of reading
    // another tenant's tables), clients split over the tenants as the proxy's are, the reset the proxy does.
    const bouncer = await startPgBouncer(pgbouncerBin, work, pgUser, cluster.port, {
      name: 'pgbouncer-samejob',
      user: PROXY_ROLE,
      password: proxyPassword,
      extra: ['server_reset_query = DISCARD ALL', 'server_reset_query_always = 1'],
    });
    pgbouncerVersion ??= bouncer.version;
    targets['pgbouncer-samejob'] = {
      name: 'pgbouncer-samejob',
      port: bouncer.port,
      pid: bouncer.pid,
      child: bouncer.child,
      clients: tenants.map((t) => ({
        user: PROXY_ROLE,
        password: proxyPassword,
        tenant: t,
        scripts: sameJobScripts(work, t),
      })),
      logFile: bouncer.logFile,
    };
  }

  for (const id of PROXY_IDS) {
    if (!targetFilter.includes(id)) continue;
    const proxyInfo = await startTenantProxy(work, cluster.port, proxyPassword, {
      name: id,
      guard: id !== 'proxy-noguard',
    });
    targets[id] = {
      name: id,
      port: proxyInfo.port,
      pid: proxyInfo.child.pid,
      child: proxyInfo.child,
      clients: tenants.map((t) => ({ user: 'app', password: proxyInfo.tokens[t], tenant: t })),
      logFile: proxyInfo.logFile,
    };
  }
  const targetList = TARGET_IDS.filter((id) => targets[id]);
  const proxyTenants = (targets.proxy ?? targets['proxy-noguard'])?.clients.map((c) => c.tenant) ?? [];

  const ctx = { postmasterPid };
  log(`warm-up: ${WARMUP_DURATION} s of -S at 16 clients per target (not recorded)`);
  for (const id of targetList) {
    checkInterrupted();
    const run = await runPgbench(
      ctx,
      targets[id],
      { id: 'warmup', script: 'select-only', mode: 'simple', args: ['-S', '-M', 'simple'], clients: 16 },
      WARMUP_DURATION,
    );
    checkInterrupted();
    if (run.status === 'fails') log(`  warm-up against ${id} failed: ${run.firstError}`);
  }

  // results[workload][target] = [run, run, …]
  const results = Object.fromEntries(workloads.map((w) => [w.id, Object.fromEntries(targetList.map((t) => [t, []]))]));
  const total = REPS * workloads.length * targetList.length;
  let done = 0;
  for (let rep = 1; rep <= REPS; rep++) {
    // The two proxies swap places every other repetition so neither always runs right after the other.
    const order = rep % 2 === 1 ? targetList : swapProxies(targetList);
    for (const w of workloads) {
      for (const id of order) {
        const target = targets[id];
        checkInterrupted();
        assertAlive(target);
        await waitQuiet();
        let run = await runPgbench(ctx, target, w, w.duration ?? DURATION);
        checkInterrupted();
        assertAlive(target);
        if (RETRY_DISTURBED && run.status !== 'fails' && run.otherLoad !== null && run.otherLoad > DISTURBED) {
          log(
            `  (${w.id} ${id}: other processes took ${(run.otherLoad * 100).toFixed(0)}% of the CPU; running it again)`,
          );
          await waitQuiet();
          const again = await runPgbench(ctx, target, w, w.duration ?? DURATION);
          checkInterrupted();
          assertAlive(target);
          again.disturbedAttempt = run; // kept in the JSON
          run = again;
        }
        run.rep = rep;
        results[w.id][id].push(run);
        done++;
        log(`[${done}/${total}] rep ${rep} ${w.id.padEnd(15)} ${id.padEnd(13)} ${describeRun(run)}`);
      }
    }
  }

  checkInterrupted();
  const matrixSec = Math.round((Date.now() - started) / 1000);
  const summary = summarize(workloads, targetList, results);
  const proxyLog = targets.proxy ? summarizeLog(targets.proxy.logFile, 'pino') : null;
  const noguardLog = targets['proxy-noguard'] ? summarizeLog(targets['proxy-noguard'].logFile, 'pino') : null;
  const bouncerLog = targets.pgbouncer ? summarizeLog(targets.pgbouncer.logFile, 'pgbouncer') : null;
  const sameJobLog = targets['pgbouncer-samejob']
    ? summarizeLog(targets['pgbouncer-samejob'].logFile, 'pgbouncer')
    : null;
  const pipeLog = targets['node-pipe'] ? summarizeLog(targets['node-pipe'].logFile, 'text') : null;

  // Micro-benchmarks on a machine left to them: PostgreSQL, PgBouncer and the proxies are stopped first.
  let micro = null;
  if (MICRO) {
    log('stopping PostgreSQL and the poolers; micro-benchmarks (bench/micro.mjs)…');
    await cleanup();
    checkInterrupted();
    await waitQuiet();
    micro = await runMicro();
    checkInterrupted();
    if (micro.error) log(`  micro-benchmarks failed: ${micro.error}`);
  }
  const elapsedSec = Math.round((Date.now() - started) / 1000);

  const command = commandLine();
  const header = [
    `pg-tenant-proxy bench — ${new Date(started).toISOString()}`,
    '',
    `command: \`${command}\``,
    `machine: ${cpus().length} CPUs (${cpus()[0]?.model ?? '?'}), ${Math.round(totalmem() / 2 ** 30)} GiB; node ${process.version}; PostgreSQL ${pgVersion}; ${pgbouncerVersion ?? 'PgBouncer n/a'}; ${pgbenchVersion()}`,
    `runs: ${REPS} interleaved repetition(s) × ${DURATION} s (latency row ${LATENCY_DURATION} s); pgbench scale ${SCALE} per tenant schema; each run = 2 pgbench processes of N/2 clients (-j ${JOBS} each, -n); medians over repetitions`,
    `targets: direct = PostgreSQL as ${DIRECT_ROLE} (search_path tenant_t1); node pipe = bench/node-pipe.mjs, a bare Node.js TCP pipe (one server per client, no protocol work), same role; pgbouncer = transaction mode, default_pool_size ${POOL_SIZE}, no reset, same role; pgbouncer-samejob = a second PgBouncer, same settings plus server_reset_query = DISCARD ALL and server_reset_query_always = 1, as ${PROXY_ROLE} (default search_path empty), every transaction BEGIN; SET LOCAL search_path TO tenant_x; …; END, clients split over the proxy's tenants; proxy = pg-tenant-proxy, poolSize ${POOL_SIZE}${PROXY_WORKERS > 1 ? ` over listen.workers ${PROXY_WORKERS}` : ''}, clients split over tenant(s) ${proxyTenants.join(', ') || '-'}, audit trail ${AUDIT === 'statements' ? 'of every statement' : AUDIT === 'connections' ? 'of connections only' : 'off'} to a file; proxy-noguard = a second proxy process, same config plus policy.guard: false (no SQL checks); the two proxies swap places in every other repetition`,
    `noise control: waits up to ${QUIET_WAIT} s before each run for other work to fall below ${DISTURBED * 100}% of the CPU; ${RETRY_DISTURBED ? `a run disturbed by more than ${DISTURBED * 100}% is run once more and the second result kept` : 'disturbed runs are kept as they are'}`,
    `proxy build: ${build}`,
    `elapsed: ${formatDuration(elapsedSec)}${micro ? ` (pgbench matrix ${formatDuration(matrixSec)}, micro-benchmarks ${formatDuration(elapsedSec - matrixSec)})` : ''}`,
  ];
  const ratios = computeRatios(workloads, summary);
  const table = renderTable(workloads, targetList, summary, ratios);
  const goals = evaluateGoals(workloads, ratios);
  // Failed runs last a fraction of a second: too short to say anything about the machine.
  const loads = workloads
    .flatMap((w) =>
      targetList.flatMap((t) => results[w.id][t].filter((r) => r.status !== 'fails').map((r) => r.otherLoad)),
    )
    .filter((v) => v !== null)
    .sort((a, b) => a - b);
  const noise = loads.length
    ? `other processes on the machine (not PostgreSQL, the pooler, pgbench or this script) used a median ${(median(loads) * 100).toFixed(1)}% and at most ${(loads[loads.length - 1] * 100).toFixed(1)}% of the CPU during the runs${loads[loads.length - 1] >= 0.05 ? ' — some runs were disturbed: compare with care' : ''}`
    : null;
  const latency = renderLatency(workloads, targetList, summary);
  const errors = renderErrors(
    workloads,
    targetList,
    results,
    { proxyLog, noguardLog, bouncerLog, sameJobLog, pipeLog },
    micro,
  );
  const microText = micro ? (micro.markdown ?? `Micro-benchmarks failed: ${micro.error}`) : null;
  const text = [
    ...header,
    ...(noise ? [`noise: ${noise}`] : []),
    '',
    table,
    '',
    ...(latency ? [latency, ''] : []),
    renderGoals(goals),
    '',
    ...(microText ? [microText, ''] : []),
    ...notes.map((n) => `note: ${n}`),
    errors,
  ].join('\n');
  process.stdout.write(`\n${text}\n`);

  mkdirSync(dirname(OUT), { recursive: true });
  const json = {
    command,
    startedAt: new Date(started).toISOString(),
    elapsedSec,
    matrixSec,
    settings: {
      quietWaitSec: QUIET_WAIT,
      retryDisturbed: RETRY_DISTURBED,
      disturbedThreshold: DISTURBED,
      quick: QUICK,
      durationSec: DURATION,
      reps: REPS,
      latencyDurationSec: LATENCY_DURATION,
      warmupSec: WARMUP_DURATION,
      scale: SCALE,
      jobsPerProcess: JOBS,
      poolSize: POOL_SIZE,
      targets: targetList,
      proxyTenants,
      sharedBuffers: SHARED_BUFFERS,
      clkTck: CLK_TCK,
      micro: MICRO,
    },
    proxyBuild: build,
    versions: { node: process.version, postgres: pgVersion, pgbouncer: pgbouncerVersion, pgbench: pgbenchVersion() },
    machine: { cpus: cpus().length, model: cpus()[0]?.model ?? null, memGiB: Math.round(totalmem() / 2 ** 30) },
    notes,
    workloads: workloads.map((w) => ({
      id: w.id,
      label: w.label,
      clients: w.clients,
      args: w.args,
      sameJobScript: w.script,
      median: summary[w.id],
      ratios: Object.fromEntries(Object.entries(ratios[w.id]).map(([k, r]) => [k, r.value])),
      guardCost: summary[w.id].proxy?.guardCost ?? null,
      runs: results[w.id],
    })),
    goals,
    micro,
    proxyLog,
    proxyNoguardLog: noguardLog,
    pgbouncerLog: bouncerLog,
    pgbouncerSameJobLog: sameJobLog,
    nodePipeLog: pipeLog,
    markdown: text,
  };
  writeFileSync(OUT, JSON.stringify(json, null, 2) + '\n');
  log(`\nwrote ${relative(process.cwd(), OUT) || OUT}`);
}

// ---------------------------------------------------------------------------------------------------------------
// Setup

async function provision(cluster, proxyPassword, directPassword) {
  const admin = new pg.Client({ connectionString: cluster.superuserUrl });
  await admin.connect();
  try {
    await admin.query(`CREATE DATABASE ${DATABASE}`);
    await admin.query(`ALTER SYSTEM SET shared_buffers = '${SHARED_BUFFERS.replace(/'/g, '')}'`);
  } finally {
    await admin.end();
  }
  log(`restarting PostgreSQL with shared_buffers = ${SHARED_BUFFERS}…`);
  await cluster.restart();

  const dbUrl = new URL(cluster.superuserUrl);
  dbUrl.pathname = `/${DATABASE}`;
  const db = new pg.Client({ connectionString: dbUrl.toString() });
  await db.connect();
  try {
    await prepareProxyRole(db, { role: PROXY_ROLE, password: proxyPassword });
    await revokePublicDefaults(db, DATABASE, PROXY_ROLE);
    await db.query(`CREATE ROLE ${DIRECT_ROLE} LOGIN PASSWORD '${directPassword}'`); // password_encryption is scram here
    await db.query(`ALTER ROLE ${DIRECT_ROLE} SET search_path = tenant_t1`);
    await db.query(`GRANT CONNECT ON DATABASE ${DATABASE} TO ${DIRECT_ROLE}`);
    for (const t of TENANTS) {
      const schema = `tenant_${t}`;
      await createTenantSchema(db, { schema, grantTo: PROXY_ROLE });
      await db.query(`GRANT USAGE ON SCHEMA ${schema} TO ${DIRECT_ROLE}`);
    }
  } finally {
    await db.end();
  }

  const superPassword = decodeURIComponent(new URL(cluster.superuserUrl).password);
  for (const t of TENANTS) {
    log(`pgbench -i -s ${SCALE} in tenant_${t}…`);
    const { code, stderr } = await exec(
      'pgbench',
      [
        '-i',
        '-s',
        String(SCALE),
        '--no-vacuum',
        '-q',
        '-h',
        HOST,
        '-p',
        String(cluster.port),
        '-U',
        'postgres',
        DATABASE,
      ],
      {
        env: pgEnv({ PGPASSWORD: superPassword, PGOPTIONS: `-c search_path=tenant_${t}` }),
      },
    );
    if (code !== 0) throw new Error(`pgbench -i for tenant_${t} failed:\n${stderr}`);
  }

  const db2 = new pg.Client({ connectionString: dbUrl.toString() });
  await db2.connect();
  try {
    for (const t of TENANTS) {
      const n = await db2.query(
        `SELECT count(*)::int AS n FROM pg_tables WHERE schemaname = $1 AND tablename LIKE 'pgbench_%'`,
        [`tenant_${t}`],
      );
      if (n.rows[0].n !== 4)
        throw new Error(`tenant_${t} has ${n.rows[0].n} pgbench tables, expected 4 (did PGOPTIONS reach pgbench -i?)`);
      await db2.query(`GRANT ALL ON ALL TABLES IN SCHEMA tenant_${t} TO ${PROXY_ROLE}, ${DIRECT_ROLE}`);
    }
    log('VACUUM ANALYZE…');
    await db2.query('VACUUM ANALYZE');
    try {
      await db2.query('CREATE EXTENSION IF NOT EXISTS pg_prewarm');
      await db2.query(
        `SELECT pg_prewarm(c.oid) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
          WHERE n.nspname LIKE 'tenant_%' AND c.relkind IN ('r', 'i')`,
      );
    } catch (err) {
      log(`pg_prewarm unavailable (${err.message}); the warm-up run loads the tables instead`);
    }
  } finally {
    await db2.end();
  }
}

/** Finds pgbouncer, installing it with apt-get when missing; null (after a clear message) when that fails. */
function ensurePgBouncer() {
  const find = () =>
    ['/usr/sbin/pgbouncer', '/usr/bin/pgbouncer', '/usr/local/bin/pgbouncer'].find((p) => existsSync(p)) ?? null;
  let bin = find();
  if (bin) return bin;
  log('PgBouncer not found; installing it: apt-get update && apt-get install -y pgbouncer …');
  const aptEnv = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
  const update = spawnSync('apt-get', ['update'], {
    stdio: ['ignore', 'ignore', 'pipe'],
    env: aptEnv,
    encoding: 'utf8',
  });
  const install =
    update.status === 0
      ? spawnSync('apt-get', ['install', '-y', '--no-install-recommends', 'pgbouncer'], {
          stdio: ['ignore', 'ignore', 'pipe'],
          env: aptEnv,
          encoding: 'utf8',
        })
      : update;
  bin = find();
  if (bin) {
    // The Debian package may start its own service; stop it: we run our own instance.
    spawnSync('service', ['pgbouncer', 'stop'], { stdio: 'ignore' });
    return bin;
  }
  const why = (install.stderr || install.error?.message || `exit status ${install.status}`)
    .trim()
    .split('\n')
    .slice(-3)
    .join(' | ');
  log('');
  log('**************************************************************************************');
  log(`* Could not install PgBouncer: ${why}`);
  log('* Install it by hand (apt-get update && apt-get install -y pgbouncer) and re-run.');
  log('* Continuing without it: the PgBouncer column will read n/a.');
  log('**************************************************************************************');
  log('');
  return null;
}

/**
 * A PgBouncer of its own (`name`: its directory, log and pid file), transaction mode, pool POOL_SIZE, one user that
 * it logs in with too; `extra` ini lines go at the end of [pgbouncer] (the same-job arm's reset).
 */
async function startPgBouncer(bin, work, owner, pgPort, { name, user, password, extra = [] }) {
  const dir = join(work, name);
  mkdirSync(dir, { mode: 0o700 });
  const port = await freePort();
  const ini = join(dir, 'pgbouncer.ini');
  const userlist = join(dir, 'userlist.txt');
  const logFile = join(dir, 'pgbouncer.log');
  const pidFile = join(dir, 'pgbouncer.pid');
  writeFileSync(userlist, `"${user}" "${password}"\n`, { mode: 0o600 });
  writeFileSync(
    ini,
    [
      '[databases]',
      `${DATABASE} = host=${HOST} port=${pgPort} dbname=${DATABASE}`,
      '',
      '[pgbouncer]',
      `listen_addr = ${HOST}`,
      `listen_port = ${port}`,
      'unix_socket_dir =',
      'auth_type = plain',
      `auth_file = ${userlist}`,
      'pool_mode = transaction',
      `default_pool_size = ${POOL_SIZE}`,
      'min_pool_size = 0',
      'reserve_pool_size = 0',
      'max_client_conn = 2000',
      `logfile = ${logFile}`,
      `pidfile = ${pidFile}`,
      'log_connections = 0',
      'log_disconnections = 0',
      'log_pooler_errors = 1',
      'server_tls_sslmode = disable',
      'client_tls_sslmode = disable',
      ...extra,
      '',
    ].join('\n'),
  );
  for (const p of [dir, ini, userlist]) chownSync(p, owner.uid, owner.gid);
  writeFileSync(logFile, '');
  chownSync(logFile, owner.uid, owner.gid);

  const version =
    (spawnSync(bin, ['--version'], { encoding: 'utf8' }).stdout ?? '').split('\n')[0].trim() || 'PgBouncer ?';
  log(
    `starting ${version} as ${name} on ${HOST}:${port} (transaction mode, pool ${POOL_SIZE}${extra.length ? `, ${extra.join(', ')}` : ''})…`,
  );
  // Exec'd directly as the postgres user (PgBouncer refuses root), so child.pid is PgBouncer itself.
  const out = openSync(join(dir, 'stdout.log'), 'a');
  const child = spawnTracked(bin, [ini], { uid: owner.uid, gid: owner.gid, stdio: ['ignore', out, out], cwd: dir });
  closeSync(out);
  cleanups.push(() => stopChild(child, `PgBouncer (${name})`, 'SIGTERM', 3000));
  await waitForPort(port, 10_000, child, () => `${readTail(logFile)}\n${readTail(join(dir, 'stdout.log'))}`);
  return { port, pid: child.pid, child, logFile, version };
}

/** bench/node-pipe.mjs as a process of its own (child.pid is node itself), so /proc gives its CPU alone. */
async function startNodePipe(work, pgPort) {
  const port = await freePort();
  const logFile = join(work, 'node-pipe.log');
  log(`starting the bare Node.js pipe (bench/node-pipe.mjs) on ${HOST}:${port} → PostgreSQL…`);
  const out = openSync(logFile, 'a');
  const child = spawnTracked(
    process.execPath,
    [join(ROOT, 'bench', 'node-pipe.mjs'), String(port), HOST, String(pgPort), HOST],
    { stdio: ['ignore', out, out], cwd: ROOT },
  );
  closeSync(out);
  cleanups.push(() => stopChild(child, 'node pipe', 'SIGTERM', 3000));
  await waitForPort(port, 10_000, child, () => readTail(logFile));
  // Its CPU is read from /proc/<child.pid>: make sure that is the pipe itself, not a wrapper around it.
  const cmdline = readFileSync(`/proc/${child.pid}/cmdline`, 'utf8').split('\0');
  if (!cmdline.some((arg) => arg.endsWith('node-pipe.mjs')))
    throw new Error(`pid ${child.pid} is not the node pipe: ${cmdline.join(' ')}`);
  return { port, child, logFile };
}

/**
 * The same-job arm's scripts for one tenant, one per built-in script, written to the work dir: pgbench's own
 * script (--show-script, so it matches this pgbench) with `SET LOCAL search_path TO tenant_<t>;` as the first
 * statement of its transaction. TPC-B-like has its BEGIN … END already; -S's single SELECT is wrapped in one, since
 * under transaction pooling a SET and the statements it is for share a server only inside one transaction.
 */
function sameJobScripts(work, tenant) {
  const out = {};
  for (const name of ['select-only', 'tpcb-like']) {
    const shown = spawnSync('pgbench', [`--show-script=${name}`], { encoding: 'utf8' });
    const lines = `${shown.stdout ?? ''}${shown.stderr ?? ''}`
      .split('\n')
      .map((l) => l.trimEnd())
      .filter((l) => l !== '' && !l.startsWith('--'));
    const set = `SET LOCAL search_path TO tenant_${tenant};`;
    const begin = lines.findIndex((l) => /^BEGIN;$/i.test(l));
    let script;
    if (begin >= 0) {
      script = [...lines.slice(0, begin + 1), set, ...lines.slice(begin + 1)];
    } else {
      const firstSql = lines.findIndex((l) => !l.startsWith('\\'));
      if (firstSql < 0)
        throw new Error(`pgbench --show-script=${name} printed no SQL:\n${shown.stdout}${shown.stderr}`);
      script = [...lines.slice(0, firstSql), 'BEGIN;', set, ...lines.slice(firstSql), 'END;'];
    }
    if (!script.some((l) => /^SELECT abalance FROM pgbench_accounts/.test(l)))
      throw new Error(`pgbench --show-script=${name}: unexpected script:\n${lines.join('\n')}`);
    const file = join(work, `samejob-${name}-${tenant}.sql`);
    writeFileSync(file, `${script.join('\n')}\n`);
    out[name] = file;
  }
  return out;
}

async function startTenantProxy(work, pgPort, proxyPassword, { name, guard }) {
  const port = await freePort();
  const secret = randomBytes(32).toString('hex');
  const configFile = join(work, `${name}.yaml`);
  const logFile = join(work, `${name}.log`);
  writeFileSync(
    configFile,
    [
      '# generated by bench/run.mjs',
      'listen:',
      `  host: ${HOST}`,
      `  port: ${port}`,
      '  maxClients: 10000',
      `  workers: ${PROXY_WORKERS}`,
      'upstream:',
      `  url: postgres://${PROXY_ROLE}@${HOST}:${pgPort}/${DATABASE}`,
      `  poolSize: ${POOL_SIZE}`,
      'auth:',
      '  jwt:',
      `    secret: ${secret}`,
      'tenancy:',
      '  schemaTemplate: tenant_{tenant}',
      ...(guard
        ? []
        : ['policy:', '  guard: false # proxy-noguard: every SQL check off, to measure what the guard costs']),
      'tls:',
      '  mode: allow',
      'audit:',
      `  enabled: ${AUDIT !== 'off'}`,
      `  statements: ${AUDIT === 'statements'}`,
      `  file: ${join(work, `${name}-audit.log`)}`,
      'log:',
      '  level: warn',
      '',
    ].join('\n'),
    { mode: 0o600 },
  );
  const proxyEnv = { ...process.env, PGTP_UPSTREAM_PASSWORD: proxyPassword };
  for (const key of Object.keys(proxyEnv))
    if (key.startsWith('PGTP_') && key !== 'PGTP_UPSTREAM_PASSWORD') delete proxyEnv[key];

  const tokens = {};
  for (const t of TENANTS) {
    tokens[t] = execFileSync(
      process.execPath,
      [CLI, 'token', '--tenant', t, '--sub', `bench@${t}`, '--ttl', '24h', '--config', configFile],
      {
        env: proxyEnv,
        encoding: 'utf8',
      },
    ).trim();
  }

  log(
    `starting pg-tenant-proxy as ${name} on ${HOST}:${port} (poolSize ${POOL_SIZE}, log.level warn${guard ? '' : ', policy.guard false'})…`,
  );
  const out = openSync(logFile, 'a');
  const child = spawnTracked(process.execPath, [CLI, 'start', '--config', configFile], {
    env: proxyEnv,
    stdio: ['ignore', out, out],
    cwd: ROOT,
  });
  closeSync(out);
  cleanups.push(() => stopChild(child, `pg-tenant-proxy (${name})`, 'SIGTERM', 5000));
  await waitForPort(port, 15_000, child, () => readTail(logFile));
  return { port, child, tokens, logFile };
}

// ---------------------------------------------------------------------------------------------------------------
// One measurement: two pgbench processes of N/2 clients (one per tenant for the proxy), pooler and PostgreSQL CPU.

async function runPgbench(ctx, target, workload, duration) {
  const n = workload.clients;
  const split = n === 1 ? [1] : [Math.ceil(n / 2), Math.floor(n / 2)];
  const pgBefore = await treeCpuTicks(ctx.postmasterPid);
  const poolerBefore = target.pid ? await poolerCpuTicks(target.pid) : null;
  const machineBefore = machineTicks();
  const selfBefore = selfTicks();
  const t0 = process.hrtime.bigint();
  const procs = await Promise.all(
    split.map((clients, i) => {
      const creds = target.clients[i % target.clients.length];
      // The same-job arm runs its tenant's script; a custom script reads :scale from -s (a built-in one from the tables).
      const scriptArgs = creds.scripts
        ? ['-f', creds.scripts[workload.script], '-M', workload.mode, '-s', String(SCALE)]
        : workload.args;
      const args = [
        '-h',
        HOST,
        '-p',
        String(target.port),
        '-U',
        creds.user,
        '-n',
        '-c',
        String(clients),
        '-j',
        String(Math.min(JOBS, clients)),
        '-T',
        String(duration),
        ...scriptArgs,
        DATABASE,
      ];
      return exec('pgbench', args, {
        env: pgEnv({ PGPASSWORD: creds.password }),
        timeoutMs: (duration + 60) * 1000,
      }).then((r) => ({ ...r, clients, tenant: creds.tenant, parsed: parsePgbench(r.stdout, r.stderr) }));
    }),
  );
  const wallSec = Number(process.hrtime.bigint() - t0) / 1e9;
  const poolerAfter = target.pid ? await poolerCpuTicks(target.pid) : null;
  const machineAfter = machineTicks();
  const selfAfter = selfTicks(); // pgbench runs are reaped by now: their CPU is in our cutime/cstime
  await new Promise((r) => setTimeout(r, 100)); // let the run's direct backends exit and be reaped
  const pgAfter = await treeCpuTicks(ctx.postmasterPid);

  const tx = sum(procs.map((p) => p.parsed.transactions ?? 0));
  const tps = sum(procs.map((p) => p.parsed.tps ?? 0));
  const latencyMs =
    tx > 0 ? sum(procs.map((p) => (p.parsed.latencyMs ?? 0) * (p.parsed.transactions ?? 0))) / tx : null;
  const aborted = sum(procs.map((p) => p.parsed.abortedClients));
  const failedTx = sum(procs.map((p) => p.parsed.failedTransactions ?? 0));
  const errorLines = procs.flatMap((p) => p.parsed.errors);
  // A process that exits 0 without a tps line ran no transaction: with one server per client (direct, node pipe), a
  // short -T and a busy machine, its clients can spend the whole run connecting. Its TPS is missing from the sum.
  for (const p of procs) {
    if (p.code === 0 && p.parsed.tps === null)
      errorLines.push(
        `pgbench process of ${p.clients} client(s) printed no tps (${p.parsed.transactions ?? 0} transactions): connecting took the whole run?`,
      );
  }
  const timedOut = procs.some((p) => p.timedOut);
  const anyBadExit = procs.some((p) => p.code !== 0);
  let status = 'ok';
  if (timedOut || tx === 0 || aborted >= n || procs.some((p) => p.code === 1 || p.code === null)) status = 'fails';
  else if (anyBadExit || aborted > 0 || failedTx > 0 || errorLines.length > 0) status = 'partial';
  const firstError = timedOut
    ? `pgbench did not finish within ${duration + 60} s (killed)`
    : (errorLines[0] ?? (anyBadExit ? `pgbench exit status ${procs.map((p) => p.code ?? 'killed').join('/')}` : null));

  const usPerTick = 1e6 / CLK_TCK;
  const poolerCpuUs = poolerBefore !== null && poolerAfter !== null ? (poolerAfter - poolerBefore) * usPerTick : null;
  const pgCpuUs = (pgAfter - pgBefore) * usPerTick;
  const machineTotal = machineAfter.total - machineBefore.total;
  const machineBusy = machineTotal > 0 ? 1 - (machineAfter.idle - machineBefore.idle) / machineTotal : null;
  // CPU that neither PostgreSQL, the pooler, pgbench nor this script used: other work on the box (noise).
  const oursTicks =
    pgAfter -
    pgBefore +
    (poolerAfter !== null && poolerBefore !== null ? poolerAfter - poolerBefore : 0) +
    (selfAfter - selfBefore);
  const busyTicks = machineAfter.task - machineBefore.task;
  const otherLoad = machineTotal > 0 ? Math.max(0, (busyTicks - oursTicks) / machineTotal) : null;
  const pgbenchCpuUs = (selfAfter - selfBefore) * usPerTick;
  return {
    status,
    tps: round(tps, 1),
    transactions: tx,
    latencyMs: latencyMs === null ? null : round(latencyMs, 4),
    poolerCpuUsPerTx: poolerCpuUs !== null && tx > 0 ? round(poolerCpuUs / tx, 2) : null,
    pgCpuUsPerTx: tx > 0 ? round(pgCpuUs / tx, 2) : null,
    machineBusy: machineBusy === null ? null : round(machineBusy, 3),
    otherLoad: otherLoad === null ? null : round(otherLoad, 3),
    clientCpuUsPerTx: tx > 0 ? round(pgbenchCpuUs / tx, 2) : null,
    wallSec: round(wallSec, 2),
    abortedClients: aborted,
    noResultClients: sum(procs.filter((p) => p.code === 0 && p.parsed.tps === null).map((p) => p.clients)),
    failedTransactions: failedTx,
    firstError,
    errorCount: errorLines.length,
    errorSamples: [...new Set(errorLines)].slice(0, 5),
    processes: procs.map((p) => ({
      clients: p.clients,
      tenant: p.tenant ?? null,
      exitCode: p.code,
      tps: p.parsed.tps,
      transactions: p.parsed.transactions,
    })),
  };
}

function parsePgbench(stdout, stderr) {
  const num = (re) => {
    const m = stdout.match(re);
    return m ? Number(m[1]) : null;
  };
  const errors = stderr
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => /error|FATAL|PANIC/i.test(l) && !/Run was aborted; the above results are incomplete/.test(l));
  const abortedClients = errors.filter((l) => /client \d+ .*aborted|aborted in command/.test(l)).length;
  return {
    tps: num(/^tps = ([\d.]+) \(without initial connection time\)/m),
    transactions: num(/^number of transactions actually processed: (\d+)/m),
    failedTransactions: num(/^number of failed transactions: (\d+)/m),
    latencyMs: num(/^latency average = ([\d.]+) ms/m),
    abortedClients,
    errors,
  };
}

function describeRun(run) {
  const parts = [`${Math.round(run.tps)} tps`];
  if (run.latencyMs !== null) parts.push(`lat ${run.latencyMs.toFixed(3)} ms`);
  if (run.poolerCpuUsPerTx !== null) parts.push(`pooler ${run.poolerCpuUsPerTx.toFixed(1)} µs/tx`);
  if (run.pgCpuUsPerTx !== null) parts.push(`pg ${run.pgCpuUsPerTx.toFixed(1)} µs/tx`);
  if (run.machineBusy !== null) parts.push(`cpu ${(run.machineBusy * 100).toFixed(0)}%`);
  if (run.otherLoad !== null && run.otherLoad >= 0.03) parts.push(`OTHER LOAD ${(run.otherLoad * 100).toFixed(0)}%`);
  if (run.status !== 'ok')
    parts.push(
      `${run.status.toUpperCase()}: ${run.firstError ?? ''}${run.abortedClients ? ` (${run.abortedClients} client(s) aborted)` : ''}`,
    );
  return parts.join(', ');
}

function assertAlive(target) {
  if (!target.child) return;
  if (target.child.exitCode !== null || target.child.signalCode !== null) {
    throw new Error(
      `${target.name} exited (code ${target.child.exitCode}, signal ${target.child.signalCode}); log tail:\n${readTail(target.logFile)}`,
    );
  }
}

// ---------------------------------------------------------------------------------------------------------------
// CPU accounting from /proc

/** A pooler's CPU, with its children: a proxy with listen.workers > 1 does its work in them. Null once it is gone. */
function poolerCpuTicks(pid) {
  return treeCpuTicks(pid).catch(() => null);
}

/**
 * Between runs our own processes are idle, so the machine's busy time is other people's work (a test suite, a
 * build). Wait up to BENCH_QUIET_WAIT seconds for it to drop below 10% so it does not land in a measurement.
 */
async function waitQuiet() {
  if (QUIET_WAIT === 0) return;
  const deadline = Date.now() + QUIET_WAIT * 1000;
  let said = false;
  for (;;) {
    const a = machineTicks();
    await new Promise((r) => setTimeout(r, 500));
    const b = machineTicks();
    const busy = b.total > a.total ? (b.task - a.task) / (b.total - a.total) : 0;
    if (busy < DISTURBED) return;
    if (Date.now() > deadline) {
      log(`  (machine still ${(busy * 100).toFixed(0)}% busy with other work after ${QUIET_WAIT} s; measuring anyway)`);
      return;
    }
    if (!said)
      log(
        `  (machine ${(busy * 100).toFixed(0)}% busy with other work; waiting up to ${QUIET_WAIT} s for it to quiet down)`,
      );
    said = true;
    checkInterrupted();
  }
}

/** This process plus its reaped children (the finished pgbench runs). */
function selfTicks() {
  const s = readStat('self');
  return s.utime + s.stime + s.cutime + s.cstime;
}

function machineTicks() {
  const line = readFileSync('/proc/stat', 'utf8').split('\n')[0];
  const f = line.trim().split(/\s+/).slice(1).map(Number);
  const total = f.slice(0, 8).reduce((a, b) => a + b, 0); // guest time is already inside user
  // task = user + nice + system: what processes are charged for (irq/softirq time belongs to no process)
  return { total, idle: f[3] + f[4], task: f[0] + f[1] + f[2] };
}

// ---------------------------------------------------------------------------------------------------------------
// Summary and output

function summarize(workloads, targetList, results) {
  const out = {};
  for (const w of workloads) {
    out[w.id] = {};
    for (const t of targetList) {
      const runs = results[w.id][t];
      const ok = runs.filter((r) => r.status !== 'fails');
      const statuses = [...new Set(runs.map((r) => r.status))];
      out[w.id][t] = {
        status:
          ok.length === 0 ? 'fails' : statuses.includes('partial') || statuses.includes('fails') ? 'partial' : 'ok',
        okRuns: ok.length,
        runs: runs.length,
        tps: median(ok.map((r) => r.tps)),
        latencyMs: median(ok.map((r) => r.latencyMs).filter((v) => v !== null)),
        poolerCpuUsPerTx: median(ok.map((r) => r.poolerCpuUsPerTx).filter((v) => v !== null)),
        pgCpuUsPerTx: median(ok.map((r) => r.pgCpuUsPerTx).filter((v) => v !== null)),
        machineBusy: median(ok.map((r) => r.machineBusy).filter((v) => v !== null)),
        otherLoad: median(runs.map((r) => r.otherLoad).filter((v) => v !== null)),
        clientCpuUsPerTx: median(ok.map((r) => r.clientCpuUsPerTx).filter((v) => v !== null)),
        firstError: runs.find((r) => r.firstError)?.firstError ?? null,
        abortedClients: Math.max(0, ...ok.map((r) => r.abortedClients)),
        abortedClientsMin: Math.min(...ok.map((r) => r.abortedClients), Infinity),
        noResultClients: Math.max(0, ...ok.map((r) => r.noResultClients ?? 0)),
      };
    }
    const d = out[w.id].direct?.tps;
    for (const t of targetList) {
      const s = out[w.id][t];
      s.ratioToDirect = d && s.tps !== null && t !== 'direct' ? round(s.tps / d, 3) : null;
    }
    const b = out[w.id].pgbouncer;
    for (const id of PROXY_IDS) {
      const p = out[w.id][id];
      if (p) p.ratioToPgBouncer = b?.tps && p.tps !== null ? round(p.tps / b.tps, 3) : null;
    }
    // guard cost = 1 − proxy TPS / proxy-noguard TPS: the share of throughput the SQL checks take.
    const p = out[w.id].proxy;
    const ng = out[w.id]['proxy-noguard'];
    if (p)
      p.guardCost =
        ng?.tps && p.tps !== null && comparableSummary(p) && comparableSummary(ng)
          ? round(1 - p.tps / ng.tps, 4)
          : null;
  }
  return out;
}

/** A summary whose TPS can be compared: not failed, no client aborted, no pgbench process without a result. */
function comparableSummary(x) {
  return x.status !== 'fails' && !(x.abortedClients > 0) && !(x.noResultClients > 0);
}

/** The target order with proxy and proxy-noguard swapped (when both run). */
function swapProxies(list) {
  const a = list.indexOf('proxy');
  const b = list.indexOf('proxy-noguard');
  if (a < 0 || b < 0) return list;
  const out = [...list];
  [out[a], out[b]] = [out[b], out[a]];
  return out;
}

/** bench/micro.mjs in its own process; { error } instead of throwing, so a failure never loses the matrix. */
async function runMicro() {
  const { code, stdout, stderr, timedOut } = await exec(
    process.execPath,
    [join(ROOT, 'bench', 'micro.mjs'), '--json'],
    {
      env: { ...process.env, BENCH_QUICK: QUICK ? '1' : '0' },
      timeoutMs: 600_000,
    },
  );
  if (timedOut) return { error: 'bench/micro.mjs did not finish within 600 s (killed)' };
  if (code !== 0)
    return {
      error: `bench/micro.mjs exit status ${code}: ${clip(stderr.trim().split('\n').slice(-3).join(' | ') || '(no output)', 400)}`,
    };
  try {
    return JSON.parse(stdout.trim().split('\n').pop());
  } catch (err) {
    return { error: `bench/micro.mjs printed no JSON: ${err.message}` };
  }
}

/**
 * The ratios the goals read, per workload: `of` over `to` (TPS or pooler CPU per transaction), or `of`'s latency
 * minus `to`'s in µs. Null, with `why`, when either side did not run, failed or lost clients.
 */
const RATIOS = {
  proxyToPgBouncerSameJob: { of: 'proxy', to: 'pgbouncer-samejob', kind: 'tps' },
  proxyToPgBouncer: { of: 'proxy', to: 'pgbouncer', kind: 'tps' },
  proxyNoguardToPgBouncer: { of: 'proxy-noguard', to: 'pgbouncer', kind: 'tps' },
  proxyToDirect: { of: 'proxy', to: 'direct', kind: 'tps' },
  proxyCpuToNodePipe: { of: 'proxy', to: 'node-pipe', kind: 'cpu' },
  proxyLatencyOverPgBouncerUs: { of: 'proxy', to: 'pgbouncer', kind: 'latency' }, // the one-client row only
};

/** The issue's figures to reach (issue 14), each over the workload rows it names. */
const GOALS = [
  {
    text: 'TPS ≥ 1.0× PgBouncer doing the same job',
    ratio: 'proxyToPgBouncerSameJob',
    min: 1.0,
    rows: ['S-16-simple', 'S-64-simple', 'S-16-extended', 'S-64-extended', 'tpcb-16-simple'],
  },
  {
    text: 'proxy CPU/tx ≤ 1.5× the node pipe’s',
    ratio: 'proxyCpuToNodePipe',
    max: 1.5,
    rows: WORKLOADS.map((w) => w.id),
  },
  {
    text: 'TPS ≥ 0.70× plain PgBouncer, 16 clients',
    ratio: 'proxyToPgBouncer',
    min: 0.7,
    rows: ['S-16-simple', 'S-16-extended', 'tpcb-16-simple'],
  },
  {
    text: 'TPS ≥ 0.60× plain PgBouncer, 64 clients',
    ratio: 'proxyToPgBouncer',
    min: 0.6,
    rows: ['S-64-simple', 'S-64-extended'],
  },
  {
    text: 'one-client latency ≤ plain PgBouncer’s + 30 µs',
    ratio: 'proxyLatencyOverPgBouncerUs',
    max: 30,
    rows: ['latency-1'],
  },
  { text: '-M prepared TPS ≥ 0.8× direct, 16 clients', ratio: 'proxyToDirect', min: 0.8, rows: ['S-16-prepared'] },
];

function ratioOf(s, def) {
  for (const t of [def.of, def.to]) {
    const x = s[t];
    if (!x) return { value: null, why: `${TARGET_LABELS[t]} not run` };
    if (x.status === 'fails')
      return { value: null, why: `${TARGET_LABELS[t]} fails: ${clip(x.firstError ?? '?', 80)}` };
    if (x.abortedClients > 0) return { value: null, why: `${TARGET_LABELS[t]}: clients aborted` };
    if (x.noResultClients > 0) return { value: null, why: `${TARGET_LABELS[t]}: a pgbench process printed no result` };
  }
  const a = s[def.of];
  const b = s[def.to];
  if (def.kind === 'tps') return b.tps ? { value: round(a.tps / b.tps, 3) } : { value: null, why: 'no TPS' };
  if (def.kind === 'cpu')
    return a.poolerCpuUsPerTx !== null && b.poolerCpuUsPerTx
      ? { value: round(a.poolerCpuUsPerTx / b.poolerCpuUsPerTx, 3) }
      : { value: null, why: 'no CPU reading' };
  return a.latencyMs !== null && b.latencyMs !== null
    ? { value: round((a.latencyMs - b.latencyMs) * 1000, 1) }
    : { value: null, why: 'no latency' };
}

function computeRatios(workloads, summary) {
  return Object.fromEntries(
    workloads.map((w) => [
      w.id,
      Object.fromEntries(
        Object.entries(RATIOS)
          .filter(([, def]) => def.kind !== 'latency' || w.clients === 1) // under load, latency is queueing, not overhead
          .map(([name, def]) => [name, ratioOf(summary[w.id], def)]),
      ),
    ]),
  );
}

function evaluateGoals(workloads, ratios) {
  const out = [];
  for (const g of GOALS) {
    for (const id of g.rows) {
      const w = workloads.find((x) => x.id === id);
      if (!w) continue; // not in BENCH_WORKLOADS
      const r = ratios[id][g.ratio] ?? { value: null, why: 'not computed for this row' };
      const bound = g.min ?? g.max;
      const met = r.value === null ? null : g.min !== undefined ? r.value >= g.min : r.value <= g.max;
      out.push({
        goal: g.text,
        workload: id,
        label: w.label,
        ratio: g.ratio,
        measured: r.value,
        ...(g.min !== undefined ? { min: bound } : { max: bound }),
        met,
        why: r.why ?? null,
      });
    }
  }
  return out;
}

function renderGoals(goals) {
  const rows = [
    'Goals (issue 14; ratios within this run, medians):',
    '',
    '| goal | workload | measured | verdict |',
    '| --- | --- | ---: | --- |',
  ];
  for (const g of goals) {
    const measured =
      g.measured === null
        ? 'n/a'
        : g.ratio === 'proxyLatencyOverPgBouncerUs'
          ? `${g.measured >= 0 ? '+' : '−'}${Math.abs(g.measured).toFixed(0)} µs`
          : `${g.measured.toFixed(2)}×`;
    const verdict = g.met === null ? `n/a (${g.why})` : g.met ? 'met' : '**not met**';
    rows.push(`| ${g.goal} | ${g.label} | ${measured} | ${verdict} |`);
  }
  const met = goals.filter((g) => g.met === true).length;
  const missed = goals.filter((g) => g.met === false).length;
  rows.push('', `${met} met, ${missed} not met, ${goals.length - met - missed} n/a, of ${goals.length}.`);
  return rows.join('\n');
}

function renderTable(workloads, targetList, summary, ratios) {
  const has = (t) => targetList.includes(t);
  const label = (t) => TARGET_LABELS[t];
  const line = (cells) => `| ${cells.join(' | ')} |`;
  const poolers = targetList.filter((t) => t !== 'direct');

  const cell = (w, t) => {
    const x = summary[w.id][t];
    if (x.status === 'fails') return `fails: ${clip(x.firstError ?? '?')}`;
    if (x.abortedClients > 0) {
      // TPS of the clients that survived is not comparable: say what happened instead of a ratio.
      const range =
        x.abortedClientsMin < x.abortedClients
          ? `${x.abortedClientsMin}–${x.abortedClients}`
          : String(x.abortedClients);
      return `${fmtInt(x.tps)} ⚠ ${range}/${w.clients} clients aborted: ${clip(x.firstError ?? '?')}`;
    }
    let text = fmtInt(x.tps);
    if (t !== 'direct' && x.ratioToDirect !== null) text += ` (${x.ratioToDirect.toFixed(2)})`;
    if (x.status === 'partial') text += ` ⚠ errors: ${clip(x.firstError ?? '?')}`;
    return text;
  };
  const tps = [
    'TPS (median; in brackets × direct):',
    '',
    line(['workload', ...targetList.map(label)]),
    line(['---', ...targetList.map(() => '---:')]),
    ...workloads.map((w) => line([w.label, ...targetList.map((t) => cell(w, t))])),
  ];

  const fmtRatio = (r) => (r.value === null ? 'n/a' : r.value.toFixed(2));
  const ratioCols = [
    ['proxy / PgBouncer same job', 'proxyToPgBouncerSameJob'],
    ['proxy / PgBouncer', 'proxyToPgBouncer'],
    ['proxy-noguard / PgBouncer', 'proxyNoguardToPgBouncer'],
    ['proxy / direct', 'proxyToDirect'],
    ['proxy CPU / node pipe CPU', 'proxyCpuToNodePipe'],
  ];
  const guardCost = (w) =>
    has('proxy') && summary[w.id].proxy.guardCost !== null && summary[w.id].proxy.guardCost !== undefined
      ? fmtPct(summary[w.id].proxy.guardCost)
      : 'n/a';
  const ratioTable = [
    'Ratios (n/a: a side did not run, failed or lost clients):',
    '',
    line(['workload', ...ratioCols.map(([h]) => h), 'guard cost']),
    line(['---', ...ratioCols.map(() => '---:'), '---:']),
    ...workloads.map((w) => line([w.label, ...ratioCols.map(([, k]) => fmtRatio(ratios[w.id][k])), guardCost(w)])),
  ];

  const cpu = (w, t, key) => {
    const x = summary[w.id][t];
    return x.status !== 'fails' && x[key] !== null ? x[key].toFixed(1) : 'n/a';
  };
  const cpuTable = [
    'CPU per transaction (µs, median): the pooler’s own process (PgBouncer, node pipe, proxy), and PostgreSQL’s server processes:',
    '',
    line([
      'workload',
      ...poolers.map((t) => `${label(t)} CPU`),
      ...targetList.map((t) => `PostgreSQL via ${label(t)}`),
    ]),
    line(['---', ...poolers.map(() => '---:'), ...targetList.map(() => '---:')]),
    ...workloads.map((w) =>
      line([
        w.label,
        ...poolers.map((t) => cpu(w, t, 'poolerCpuUsPerTx')),
        ...targetList.map((t) => cpu(w, t, 'pgCpuUsPerTx')),
      ]),
    ),
  ];
  return [...tps, '', ...ratioTable, '', ...cpuTable].join('\n');
}

function renderLatency(workloads, targetList, summary) {
  const w = workloads.find((x) => x.id === 'latency-1');
  if (!w) return null;
  const s = summary[w.id];
  const base = s.direct?.latencyMs ?? null;
  const bouncer = s.pgbouncer && s.pgbouncer.status !== 'fails' ? s.pgbouncer.latencyMs : null;
  const rows = [
    `One client (pgbench -S -c 1 -M simple, ${LATENCY_DURATION} s), median of average latency:`,
    '',
    '| target | avg latency (µs) | overhead vs direct (µs) | vs PgBouncer (µs) | pooler CPU µs/tx |',
    '| --- | ---: | ---: | ---: | ---: |',
  ];
  const signed = (us) => `${us >= 0 ? '+' : '−'}${Math.abs(us).toFixed(0)}`;
  for (const t of targetList) {
    const x = s[t];
    if (x.status === 'fails' || x.latencyMs === null) {
      rows.push(`| ${TARGET_LABELS[t]} | fails: ${clip(x.firstError ?? '?')} | n/a | n/a | n/a |`);
      continue;
    }
    const us = x.latencyMs * 1000;
    const over = t === 'direct' || base === null ? '—' : signed(us - base * 1000);
    const overBouncer = t === 'direct' || t === 'pgbouncer' || bouncer === null ? '—' : signed(us - bouncer * 1000);
    rows.push(
      `| ${TARGET_LABELS[t]} | ${us.toFixed(0)} | ${over} | ${overBouncer} | ${x.poolerCpuUsPerTx === null ? '—' : x.poolerCpuUsPerTx.toFixed(1)} |`,
    );
  }
  return rows.join('\n');
}

function renderErrors(workloads, targetList, results, logs, micro) {
  const lines = [];
  for (const w of workloads) {
    for (const t of targetList) {
      for (const r of results[w.id][t]) {
        if (r.status === 'ok') continue;
        lines.push(
          `- ${w.id} / ${t} / rep ${r.rep}: ${r.status}; ${r.transactions} tx; ${r.abortedClients} client(s) aborted; ${r.errorCount} error line(s); first: ${r.firstError}`,
        );
        for (const sample of r.errorSamples.slice(1, 3)) lines.push(`    also: ${sample}`);
      }
    }
  }
  const out = ['', 'Errors and warnings:', ''];
  out.push(...(lines.length ? lines : ['- pgbench: none']));
  if (micro?.error) out.push(`- micro-benchmarks: ${micro.error}`);
  for (const [name, summary] of [
    ['pg-tenant-proxy log (warn and above)', logs.proxyLog],
    ['pg-tenant-proxy proxy-noguard log (warn and above)', logs.noguardLog],
    ['PgBouncer log (WARNING/ERROR)', logs.bouncerLog],
    ['PgBouncer same job log (WARNING/ERROR)', logs.sameJobLog],
    ['node pipe output', logs.pipeLog],
  ]) {
    if (!summary) continue;
    if (summary.count === 0) {
      out.push(`- ${name}: none`);
      continue;
    }
    out.push(`- ${name}: ${summary.count} line(s)`);
    for (const m of summary.messages.slice(0, 10)) out.push(`    ${m.count} × ${m.message}`);
  }
  return out.join('\n');
}

/** Warn-and-above lines of the proxy's pino log or PgBouncer's log, or every line of plain text output, grouped. */
function summarizeLog(file, kind) {
  let text;
  try {
    text = readFileSync(file, 'utf8');
  } catch {
    return { count: 0, messages: [], samples: [] };
  }
  const picked = [];
  for (const line of text.split('\n')) {
    if (!line.trim()) continue;
    if (kind === 'pino') {
      try {
        const rec = JSON.parse(line);
        if ((rec.level ?? 0) >= 40) {
          const detail = rec.err
            ? `: ${typeof rec.err === 'string' ? rec.err : (rec.err.message ?? JSON.stringify(rec.err))}`
            : '';
          picked.push({ key: `[${pinoLevel(rec.level)}] ${rec.msg ?? ''}${detail}`, line });
        }
      } catch {
        picked.push({ key: `[non-JSON] ${line.slice(0, 300)}`, line });
      }
    } else if (kind === 'text') {
      if (!/^listening \d+$/.test(line)) picked.push({ key: line.slice(0, 300), line });
    } else if (/\b(WARNING|ERROR|FATAL|LOG .*error)\b/.test(line)) {
      picked.push({
        key: line
          .replace(/^\S+ \S+ \S+ \[\d+\] /, '')
          .replace(/[CS]-0x[0-9a-f]+: /, '')
          .slice(0, 300),
        line,
      });
    }
  }
  const counts = new Map();
  for (const p of picked) counts.set(p.key, (counts.get(p.key) ?? 0) + 1);
  return {
    count: picked.length,
    messages: [...counts].sort((a, b) => b[1] - a[1]).map(([message, count]) => ({ message, count })),
    samples: picked.slice(0, 20).map((p) => p.line),
  };
}

function pinoLevel(n) {
  return { 40: 'warn', 50: 'error', 60: 'fatal' }[n] ?? String(n);
}

// ---------------------------------------------------------------------------------------------------------------
// Small helpers

function exec(file, args, { env: childEnv, timeoutMs } = {}) {
  return new Promise((resolve) => {
    const child = spawnTracked(file, args, { env: childEnv, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    let timedOut = false;
    child.stdout.setEncoding('utf8').on('data', (d) => (stdout += d));
    child.stderr.setEncoding('utf8').on('data', (d) => (stderr += d));
    const timer = timeoutMs
      ? setTimeout(() => {
          timedOut = true;
          killTree(child, 'SIGKILL');
        }, timeoutMs)
      : null;
    child.once('error', (err) => {
      if (timer) clearTimeout(timer);
      resolve({ code: null, stdout, stderr: `${stderr}\nerror: ${err.message}`, timedOut });
    });
    child.once('close', (code) => {
      if (timer) clearTimeout(timer);
      resolve({ code, stdout, stderr, timedOut });
    });
  });
}

/** libpq environment for a client run: nothing inherited that could change what is measured. */
function pgEnv(extra) {
  const out = {};
  for (const [k, v] of Object.entries(process.env)) if (!k.startsWith('PG')) out[k] = v;
  return { ...out, PGSSLMODE: 'disable', PGAPPNAME: 'pgtp-bench', ...extra };
}

async function scalar(url, sql) {
  const c = new pg.Client({ connectionString: url });
  await c.connect();
  try {
    const r = await c.query(sql);
    return Object.values(r.rows[0])[0];
  } finally {
    await c.end();
  }
}

function postgresIds() {
  try {
    return {
      uid: Number(execFileSync('id', ['-u', 'postgres'], { encoding: 'utf8' }).trim()),
      gid: Number(execFileSync('id', ['-g', 'postgres'], { encoding: 'utf8' }).trim()),
    };
  } catch {
    throw new Error("bench needs a 'postgres' OS user (PostgreSQL and PgBouncer refuse to run as root)");
  }
}

function freePort() {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.unref();
    server.once('error', reject);
    server.listen(0, HOST, () => {
      const { port } = server.address();
      server.close(() => resolve(port));
    });
  });
}

async function waitForPort(port, timeoutMs, child, tail) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (child.exitCode !== null || child.signalCode !== null) {
      throw new Error(
        `process exited before listening on ${port} (code ${child.exitCode}, signal ${child.signalCode}):\n${tail()}`,
      );
    }
    const ok = await new Promise((resolve) => {
      const s = createConnection({ host: HOST, port });
      s.once('connect', () => {
        s.destroy();
        resolve(true);
      });
      s.once('error', () => resolve(false));
    });
    if (ok) return;
    if (Date.now() > deadline)
      throw new Error(`nothing listening on ${HOST}:${port} after ${timeoutMs} ms:\n${tail()}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

function readTail(file, lines = 30) {
  try {
    return readFileSync(file, 'utf8').split('\n').slice(-lines).join('\n');
  } catch {
    return '(no log)';
  }
}

let pgbenchVersionCache;
function pgbenchVersion() {
  pgbenchVersionCache ??=
    (spawnSync('pgbench', ['--version'], { encoding: 'utf8' }).stdout ?? '').trim() || 'pgbench ?';
  return pgbenchVersionCache;
}

/** Which code was measured: commit, and whether src/ differed from it (read-only git; no index refresh). */
function buildInfo() {
  const git = (args) => spawnSync('git', ['--no-optional-locks', ...args], { cwd: ROOT, encoding: 'utf8' });
  const head = git(['rev-parse', '--short', 'HEAD']);
  if (head.status !== 0) return 'unknown (not a git checkout)';
  const dirty = (git(['status', '--porcelain', '--', 'src']).stdout ?? '').split('\n').filter((l) => l.trim() !== '');
  return `dist/ built from commit ${head.stdout.trim()}${
    dirty.length
      ? ` plus uncommitted changes in src/ (${dirty.length} path(s): ${dirty
          .slice(0, 4)
          .map((l) => l.slice(3))
          .join(', ')}${dirty.length > 4 ? ', …' : ''})`
      : ''
  }`;
}

function commandLine() {
  const knobs = Object.keys(env)
    .filter((k) => k.startsWith('BENCH_'))
    .sort()
    .map((k) => `${k}=${env[k]}`);
  return [...knobs, 'npm run bench'].join(' ');
}

function positiveInt(name, fallback) {
  const raw = env[name];
  if (raw === undefined || raw === '') return fallback;
  const n = Number(raw);
  if (!Number.isInteger(n) || n <= 0) throw new Error(`${name} must be a positive integer, got "${raw}"`);
  return n;
}

function nonNegativeInt(name, fallback) {
  const raw = env[name];
  if (raw === undefined || raw === '') return fallback;
  const n = Number(raw);
  if (!Number.isInteger(n) || n < 0) throw new Error(`${name} must be a non-negative integer, got "${raw}"`);
  return n;
}

function listEnv(name, all) {
  const raw = env[name];
  if (!raw) return all;
  const wanted = raw
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean);
  const unknown = wanted.filter((x) => !all.includes(x));
  if (unknown.length) throw new Error(`${name}: unknown ${unknown.join(', ')} (known: ${all.join(', ')})`);
  return wanted;
}

function median(values) {
  const v = values.filter((x) => typeof x === 'number' && Number.isFinite(x)).sort((a, b) => a - b);
  if (v.length === 0) return null;
  const mid = v.length >> 1;
  return v.length % 2 ? v[mid] : (v[mid - 1] + v[mid]) / 2;
}

const sum = (xs) => xs.reduce((a, b) => a + (b ?? 0), 0);
const round = (x, digits) => Math.round(x * 10 ** digits) / 10 ** digits;
const fmtInt = (x) => (x === null ? 'n/a' : Math.round(x).toLocaleString('en-US'));
const fmtPct = (x) => `${x < 0 ? '−' : ''}${Math.abs(x * 100).toFixed(1)}%`;
const clip = (s, n = 140) => (s.length > n ? `${s.slice(0, n - 1)}…` : s).replace(/\|/g, '\\|');
const log = (line) => process.stderr.write(`${line}\n`);
const formatDuration = (sec) => `${Math.floor(sec / 60)} min ${sec % 60} s`;

main().then(
  () => cleanup().then(() => process.exit(0)),
  (err) => {
    if (err instanceof Interrupted || interrupted) return; // the signal handler cleans up and exits
    log(`\nbench failed: ${err.stack ?? err}`);
    cleanup().finally(() => process.exit(1));
  },
);
