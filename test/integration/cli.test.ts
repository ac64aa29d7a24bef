import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import { stringify } from 'yaml';
import { afterEach, beforeAll, describe, expect, inject, it } from 'vitest';
import { buildDist } from '../support/build.js';
import { TEST_SECRET } from '../support/proxy.js';

// The CLI runs as users run it: the compiled build, in its own process.
const DIST_CLI = fileURLToPath(new URL('../../dist/cli/main.js', import.meta.url));

let dir: string;
let child: ChildProcess | null = null;

beforeAll(async () => {
  // `npm test` runs after `npm ci`, whose prepare step builds dist/; build again so the CLI matches the source.
  await buildDist();
  dir = mkdtempSync(join(tmpdir(), 'pgtp-cli-'));
}, 120_000);

afterEach(() => {
  child?.kill('SIGKILL');
  child = null;
});

function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const server = net.createServer().listen(0, '127.0.0.1', () => {
      const { port } = server.address() as net.AddressInfo;
      server.close(() => resolve(port));
    });
  });
}

function writeConfig(name: string, config: unknown): string {
  const file = join(dir, name);
  writeFileSync(file, stringify(config));
  return file;
}

function baseConfig(secret = TEST_SECRET): Record<string, unknown> {
  return {
    listen: { host: '127.0.0.1', port: 0 },
    upstream: { url: inject('pg').upstreamUrl, poolSize: 2 },
    auth: { jwt: { secret } },
    log: { level: 'info' },
  };
}

async function cli(
  args: string[],
  env: NodeJS.ProcessEnv = {},
): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, [DIST_CLI, ...args], { env: { ...process.env, ...env } }, (err, stdout, stderr) => {
      resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stdout, stderr });
    });
  });
}

/** A CancelRequest on a connection of its own, as libpq sends it. */
function sendCancel(port: number, pid: number, secret: number): Promise<void> {
  return new Promise((resolve, reject) => {
    const request = Buffer.alloc(16);
    request.writeInt32BE(16, 0);
    request.writeInt32BE(80877102, 4);
    request.writeInt32BE(pid, 8);
    request.writeInt32BE(secret, 12);
    const socket = net.createConnection({ host: '127.0.0.1', port }, () => socket.end(request));
    socket.on('close', () => resolve());
    socket.on('error', reject);
  });
}

/** Starts `pg-tenant-proxy start` and resolves with the port from its "listening" log line. */
function startCli(config: string): Promise<number> {
  return new Promise((resolve, reject) => {
    child = spawn(process.execPath, [DIST_CLI, 'start', '--config', config], { stdio: ['ignore', 'pipe', 'pipe'] });
    let buffered = '';
    child.stderr!.on('data', (chunk: Buffer) => {
      buffered += chunk.toString();
      const match = /"port":(\d+),"msg":"listening"/.exec(buffered);
      if (match) resolve(Number(match[1]));
    });
    child.on('exit', (code) => reject(new Error(`exited with ${code}: ${buffered}`)));
  });
}

describe('the pg-tenant-proxy command', () => {
  it('exits 2 naming the key when the config is bad', async () => {
    const bad = writeConfig('bad.yaml', { ...baseConfig(), upstream: { url: 'mysql://x', poolSize: 2 } });
    const r = await cli(['check-config', '--config', bad]);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('upstream.url');
    const short = writeConfig('short.yaml', baseConfig('too-short'));
    const r2 = await cli(['start', '--config', short]);
    expect(r2.code).toBe(2);
    expect(r2.stderr).toContain('auth.jwt.secret');
    const r3 = await cli(['check-config', '--config', join(dir, 'missing.yaml')]);
    expect(r3.code).toBe(2);
    expect((await cli(['frobnicate'])).code).toBe(2);
  });

  it('takes every key from the environment', async () => {
    const file = writeConfig('env.yaml', baseConfig());
    const r = await cli(['check-config', '--config', file], { PGTP_UPSTREAM_POOL_SIZE: 'many' });
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('upstream.poolSize');
    const ok = await cli(['check-config', '--config', file], {
      PGTP_UPSTREAM_POOL_SIZE: '7',
      PGTP_TLS_MODE: 'disable',
    });
    expect(ok.code).toBe(0);
  });

  it('mints a token that the proxy accepts, serves, reloads on SIGHUP and drains on SIGTERM', async () => {
    const file = writeConfig('live.yaml', baseConfig());
    const minted = await cli(['token', '--tenant', 'a', '--sub', 'alice', '--ttl', '10m', '--config', file]);
    expect(minted.code).toBe(0);
    const token = minted.stdout.trim();
    const port = await startCli(file);
    const connect = async (password: string): Promise<pg.Client> => {
      const c = new pg.Client({ host: '127.0.0.1', port, user: 'app', database: inject('pg').database, password });
      c.on('error', () => undefined);
      await c.connect();
      return c;
    };
    const client = await connect(token);
    expect((await client.query('SELECT current_schema() AS s')).rows[0].s).toBe('tenant_a');

    // Rotate the signing secret: the open session survives, old tokens stop working, new ones work.
    const rotated = `${TEST_SECRET}-rotated`;
    writeConfig('live.yaml', baseConfig(rotated));
    child!.kill('SIGHUP');
    await new Promise((r) => setTimeout(r, 500));
    expect((await client.query('SELECT 1 AS one')).rows[0].one).toBe(1);
    await expect(connect(token)).rejects.toMatchObject({ code: '28P01' });
    const fresh = (await cli(['token', '--tenant', 'a', '--config', file])).stdout.trim();
    const second = await connect(fresh);
    await second.end();

    // A bad config on SIGHUP is rejected and the old one kept.
    writeConfig('live.yaml', baseConfig('short'));
    child!.kill('SIGHUP');
    await new Promise((r) => setTimeout(r, 300));
    const third = await connect(fresh);
    await third.end();

    await client.end();
    const exit = new Promise<number | null>((resolve) => child!.once('exit', (code) => resolve(code)));
    child!.kill('SIGTERM');
    expect(await exit).toBe(0);
    child = null;
  });

  it('writes every audit event of the run to the file before exiting on SIGTERM, and shows status', async () => {
    const auditFile = join(dir, 'audit.log');
    const metricsPort = await freePort();
    const adminToken = 'cli-admin-token-0123456789';
    const file = writeConfig('audited.yaml', {
      ...baseConfig(),
      audit: { file: auditFile },
      metrics: { enabled: true, port: metricsPort, adminToken },
    });
    const port = await startCli(file);
    const token = (await cli(['token', '--tenant', 'b', '--sub', 'bob', '--config', file])).stdout.trim();
    const clients = await Promise.all(
      [0, 1].map(async () => {
        const c = new pg.Client({
          host: '127.0.0.1',
          port,
          user: 'app',
          database: inject('pg').database,
          password: token,
          application_name: 'audited',
        });
        c.on('error', () => undefined);
        await c.connect();
        return c;
      }),
    );
    const perClient = 150;
    await Promise.all(
      clients.map(async (c) => {
        for (let i = 0; i < perClient; i++) await c.query('SELECT id FROM items WHERE id = $1', [i % 3]);
      }),
    );

    const shown = await cli(['status', '--config', file]);
    expect(shown.code).toBe(0);
    expect(shown.stdout).toMatch(/TENANTS\n.*tenant\s+clients[\s\S]*\nb\s+2\s/);
    expect(shown.stdout).toContain('audited');
    const json = JSON.parse((await cli(['status', '--config', file, '--json'])).stdout) as {
      tenants: Array<{ tenant: string; clients: number }>;
    };
    expect(json.tenants).toEqual([expect.objectContaining({ tenant: 'b', clients: 2 })]);
    const wrongToken = writeConfig('wrong-token.yaml', {
      ...baseConfig(),
      metrics: { enabled: true, port: metricsPort, adminToken: 'not-the-admin-token-000' },
    });
    const denied = await cli(['status', '--config', wrongToken]);
    expect(denied.code).toBe(1);
    expect(denied.stderr).toContain('401');

    // The clients stay connected: their close events are written during the drain.
    const exit = new Promise<number | null>((resolve) => child!.once('exit', (code) => resolve(code)));
    child!.kill('SIGTERM');
    expect(await exit).toBe(0);
    child = null;
    const events = readFileSync(auditFile, 'utf8')
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as { event: string; tenant?: string; outcome?: string });
    expect(events.filter((e) => e.event === 'statement' && e.tenant === 'b' && e.outcome === 'ok')).toHaveLength(
      2 * perClient,
    );
    expect(events.filter((e) => e.event === 'connection_closed' && e.tenant === 'b')).toHaveLength(2);
    await Promise.all(clients.map((c) => c.end().catch(() => undefined)));
  });

  it('runs listen.workers processes on one port: each serves, a cancel reaches the worker that issued the key, metrics and status add up, SIGHUP reaches all, a dead worker is replaced, SIGTERM drains all', async () => {
    const metricsPort = await freePort();
    const adminToken = 'cli-admin-token-0123456789';
    const file = writeConfig('workers.yaml', {
      ...baseConfig(),
      listen: { host: '127.0.0.1', port: 0, workers: 2 },
      metrics: { enabled: true, port: metricsPort, adminToken },
    });
    const port = await startCli(file);
    const ops = `http://127.0.0.1:${metricsPort}`;
    // The primary serves /readyz once every worker listens.
    for (let i = 0; i < 100; i++) {
      const ready = await fetch(`${ops}/readyz`).then(
        (r) => r.status,
        () => 0,
      );
      if (ready === 200) break;
      await new Promise((r) => setTimeout(r, 100));
    }
    const tokens = { a: '', b: '' };
    for (const t of ['a', 'b'] as const)
      tokens[t] = (await cli(['token', '--tenant', t, '--config', file])).stdout.trim();
    const clients = await Promise.all(
      (['a', 'a', 'b', 'b'] as const).map(async (tenant, i) => {
        const c = new pg.Client({
          host: '127.0.0.1',
          port,
          user: 'app',
          database: inject('pg').database,
          password: tokens[tenant],
          application_name: `worker-test-${i}`,
        });
        c.on('error', () => undefined);
        await c.connect();
        return { c, tenant, name: `worker-test-${i}` };
      }),
    );
    // The proxy-issued pid names the worker (pid mod 2): connections are spread over both.
    const keys = clients.map(({ c }) => c as unknown as { processID: number; secretKey: number });
    expect(new Set(keys.map((k) => k.processID % 2))).toEqual(new Set([0, 1]));
    for (const { c, tenant } of clients)
      expect((await c.query('SELECT current_schema() AS s')).rows[0].s).toBe(`tenant_${tenant}`);

    // Cancel requests are connections of their own, spread like any other: two in a row for each client mean one
    // of them lands on the worker that did not issue the key, which must hand it over.
    const superuser = new pg.Client({
      connectionString: inject('pg').superuserUrl.replace(/\/[^/?]*(\?|$)/, `/${inject('pg').database}$1`),
    });
    await superuser.connect();
    try {
      for (const [i, { c, name }] of clients.entries()) {
        for (let round = 0; round < 2; round++) {
          const sleeping = c.query('SELECT pg_sleep(20)').then(
            () => null,
            (err: { code?: string }) => err.code,
          );
          for (let polls = 0; polls < 200; polls++) {
            const { rows } = await superuser.query(
              "SELECT count(*)::int AS n FROM pg_stat_activity WHERE application_name = $1 AND state = 'active' AND query LIKE '%pg_sleep%'",
              [name],
            );
            if (rows[0].n === 1) break;
            await new Promise((r) => setTimeout(r, 25));
          }
          await sendCancel(port, keys[i]!.processID, keys[i]!.secretKey);
          expect(await sleeping).toBe('57014');
        }
      }
    } finally {
      await superuser.end();
    }

    const metrics = await (await fetch(`${ops}/metrics`)).text();
    const connected = [...metrics.matchAll(/^pgtp_client_connections\{tenant="(a|b)",state="idle"\} (\d+)$/gm)].map(
      (m) => [m[1], Number(m[2])],
    );
    expect(Object.fromEntries(connected)).toEqual({ a: 2, b: 2 });
    expect(metrics).toMatch(/^pgtp_pool_size{upstream="default"} 2$/m);
    const status = (await (
      await fetch(`${ops}/admin/status`, { headers: { authorization: `Bearer ${adminToken}` } })
    ).json()) as {
      pool: { size: number };
      tenants: Array<{ tenant: string; clients: number }>;
    };
    expect(status.pool.size).toBe(2);
    expect(status.tenants.map((t) => [t.tenant, t.clients]).sort()).toEqual([
      ['a', 2],
      ['b', 2],
    ]);

    // SIGHUP reaches every worker, each taking its share of the new pool size again.
    writeConfig('workers.yaml', {
      ...baseConfig(),
      upstream: { url: inject('pg').upstreamUrl, poolSize: 4 },
      listen: { host: '127.0.0.1', port: 0, workers: 2 },
      metrics: { enabled: true, port: metricsPort, adminToken },
    });
    child!.kill('SIGHUP');
    let size = 0;
    for (let i = 0; i < 50 && size !== 4; i++) {
      await new Promise((r) => setTimeout(r, 100));
      size = Number(
        /^pgtp_pool_size{upstream="default"} (\d+)$/m.exec(await (await fetch(`${ops}/metrics`)).text())?.[1],
      );
    }
    expect(size).toBe(4);

    // A worker that dies takes only its own clients (pid mod 2 names theirs); a replacement takes its place.
    const workerPids = readFileSync(`/proc/${child!.pid}/task/${child!.pid}/children`, 'utf8')
      .trim()
      .split(/\s+/)
      .map(Number);
    expect(workerPids).toHaveLength(2);
    const workerIndex = (pid: number): number =>
      Number(/(?:^|\0)PGTP_WORKER_INDEX=(\d+)/.exec(readFileSync(`/proc/${pid}/environ`, 'latin1'))?.[1]);
    const killed = workerIndex(workerPids[1]!);
    process.kill(workerPids[1]!, 'SIGKILL');
    const outcomes = await Promise.all(
      clients.map(({ c }) =>
        c.query('SELECT 1 AS one').then(
          () => 'ok',
          () => 'lost',
        ),
      ),
    );
    expect(outcomes).toEqual(keys.map((k) => (k.processID % 2 === killed ? 'lost' : 'ok')));
    let ready = 0;
    for (let i = 0; i < 100 && ready !== 200; i++) {
      await new Promise((r) => setTimeout(r, 100));
      ready = await fetch(`${ops}/readyz`).then(
        (r) => r.status,
        () => 0,
      );
    }
    expect(ready).toBe(200);
    const after = readFileSync(`/proc/${child!.pid}/task/${child!.pid}/children`, 'utf8')
      .trim()
      .split(/\s+/)
      .map(Number);
    expect(after).toHaveLength(2);
    expect(after).not.toContain(workerPids[1]);
    // Both workers serve again: fresh connections land on each in turn.
    const fresh = await Promise.all(
      [0, 1, 2, 3].map(async () => {
        const c = new pg.Client({
          host: '127.0.0.1',
          port,
          user: 'app',
          database: inject('pg').database,
          password: tokens.b,
        });
        c.on('error', () => undefined);
        await c.connect();
        const schema = (await c.query('SELECT current_schema() AS s')).rows[0].s as string;
        const pid = (c as unknown as { processID: number }).processID;
        await c.end();
        return { schema, worker: pid % 2 };
      }),
    );
    expect(fresh.every((f) => f.schema === 'tenant_b')).toBe(true);
    expect(new Set(fresh.map((f) => f.worker))).toEqual(new Set([0, 1]));

    const exit = new Promise<number | null>((resolve) => child!.once('exit', (code) => resolve(code)));
    child!.kill('SIGTERM');
    expect(await exit).toBe(0);
    child = null;
    // Every worker went with the primary: the port is free.
    await expect(
      new pg.Client({
        host: '127.0.0.1',
        port,
        user: 'app',
        database: inject('pg').database,
        password: tokens.a,
      }).connect(),
    ).rejects.toMatchObject({ code: 'ECONNREFUSED' });
    await Promise.all(clients.map(({ c }) => c.end().catch(() => undefined)));
  });

  it('refuses to mint a token for an invalid tenant id', async () => {
    const file = writeConfig('mint.yaml', baseConfig());
    const r = await cli(['token', '--tenant', 'Bad-Tenant', '--config', file]);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toContain('tenantPattern');
  });
});
