// Audit events and metric samples produced by real traffic through the proxy, and the health endpoints.
import { readFileSync } from 'node:fs';
import net from 'node:net';
import { Writable } from 'node:stream';
import pg from 'pg';
import pino from 'pino';
import postgres from 'postgres';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { signDevToken } from '../../src/auth/sign-token.js';
import { startProxy, type Proxy } from '../../src/main.js';
import { adminClient, startPrivateCluster, type PrivatePgFixture } from '../support/postgres.js';
import { RawClient } from '../support/raw-client.js';
import { sqlstateOf, startTestProxy, testConfig, type TestProxy } from '../support/proxy.js';

type AuditEvent = Record<string, unknown> & { event: string };

let tp: TestProxy | null = null;
afterEach(async () => {
  await tp?.close();
  tp = null;
});

const metricsOn = { enabled: true, port: 0, adminToken: 'admin-token-0123456789abcdef' };

function auditEvents(tp: TestProxy): AuditEvent[] {
  return readFileSync(tp.config.audit.file!, 'utf8')
    .split('\n')
    .filter((line) => line !== '')
    .map((line) => JSON.parse(line) as AuditEvent);
}

async function waitFor<T>(
  probe: () => T | undefined | false | Promise<T | undefined | false>,
  what: string,
  timeoutMs = 5000,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (value !== undefined && value !== false) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

async function scrape(port: number): Promise<string> {
  const response = await fetch(`http://127.0.0.1:${port}/metrics`);
  expect(response.status).toBe(200);
  return response.text();
}

/** The value of one sample, matched by name and exact label set (0 when absent). */
function sample(text: string, name: string, labels: Record<string, string> = {}): number {
  const wanted = Object.entries(labels)
    .map(([k, v]) => `${k}="${v}"`)
    .sort()
    .join(',');
  for (const line of text.split('\n')) {
    const match = /^([a-z_]+)(?:\{(.*)\})? (\S+)$/.exec(line);
    if (match === null || match[1] !== name) continue;
    const have = (match[2] ?? '')
      .split(',')
      .filter((p) => p !== '')
      .sort()
      .join(',');
    if (have === wanted) return Number(match[3]);
  }
  return 0;
}

describe('audit trail', () => {
  it('records connection, statement and refusal events with the documented fields and no literals', async () => {
    tp = await startTestProxy({ metrics: metricsOn });
    const client = await tp.connect('a', { application_name: 'billing-worker' });
    await client.query("SELECT name FROM items WHERE name = 'a-one-literal-4711' OR id = 2");
    await client.query('SELECT name FROM items WHERE id = $1', [1]);
    expect(
      await sqlstateOf(() => client.query("SELECT * FROM tenant_b.items WHERE name = 'secret-literal-4712'")),
    ).toBe('42501');
    expect(await sqlstateOf(() => client.query('SELECT 1/0'))).toBe('22012');
    await client.end();

    const events = await waitFor(() => {
      const all = auditEvents(tp!);
      return all.some((e) => e.event === 'connection_closed') && all;
    }, 'connection_closed event');
    const session = events.find((e) => e.event === 'connection_accepted')!.session as string;
    const mine = events.filter((e) => e.session === session);
    expect(mine.map((e) => e.event)).toEqual([
      'connection_accepted',
      'connection_authenticated',
      'statement',
      'statement',
      'guard_refusal',
      'statement',
      'connection_closed',
    ]);
    for (const e of mine) {
      expect(e.log).toBe('audit');
      expect(Date.parse(e.time as string)).toBeGreaterThan(Date.now() - 60_000);
      expect(e.client_addr).toBe('127.0.0.1');
      expect(typeof e.client_port).toBe('number');
    }
    const [, auth, literal, bound, refusal, failed, closed] = mine as [
      AuditEvent,
      AuditEvent,
      AuditEvent,
      AuditEvent,
      AuditEvent,
      AuditEvent,
      AuditEvent,
    ];
    expect(auth).toMatchObject({
      tenant: 'a',
      schema: 'tenant_a',
      actor: 'user-of-a',
      application_name: 'billing-worker',
      guard_bypass: false,
    });
    expect(literal).toMatchObject({
      tenant: 'a',
      command: 'SELECT',
      rows: 1,
      outcome: 'ok',
      sqlstate: null,
      statement: 'SELECT name FROM items WHERE name = $1 OR id = $2',
    });
    expect(literal.fingerprint).toMatch(/^[0-9a-f]{16}$/);
    expect(typeof literal.backend_pid).toBe('number');
    expect(literal.duration_ms).toBeGreaterThanOrEqual(0);
    expect(bound).toMatchObject({
      command: 'SELECT',
      rows: 1,
      outcome: 'ok',
      statement: 'SELECT name FROM items WHERE id = $1',
    });
    expect(refusal).toMatchObject({
      rule: 'schema',
      sqlstate: '42501',
      outcome: 'refused',
      statement: 'SELECT * FROM tenant_b.items WHERE name = $1',
    });
    expect(failed).toMatchObject({ command: null, outcome: 'error', sqlstate: '22012', rows: null });
    expect(closed).toMatchObject({ statements: 3, in_transaction: false });

    const raw = readFileSync(tp.config.audit.file!, 'utf8');
    expect(raw).not.toContain('4711');
    expect(raw).not.toContain('4712');
    expect(raw).not.toContain(await tp.token('a'));
  });

  it('gives statements that differ only in literals one fingerprint, and logs the text as configured', async () => {
    for (const mode of ['none', 'full'] as const) {
      tp = await startTestProxy({ audit: { logStatementText: mode } });
      const client = await tp.connect('a');
      await client.query('SELECT id FROM items WHERE id = 1');
      await client.query('SELECT id FROM items WHERE id = 2');
      await client.end();
      const statements = await waitFor(() => {
        const found = auditEvents(tp!).filter((e) => e.event === 'statement');
        return found.length === 2 && found;
      }, 'two statement events');
      expect(statements[0]!.fingerprint).toBe(statements[1]!.fingerprint);
      if (mode === 'none') expect(statements.every((e) => !('statement' in e))).toBe(true);
      else
        expect(statements.map((e) => e.statement)).toEqual([
          'SELECT id FROM items WHERE id = 1',
          'SELECT id FROM items WHERE id = 2',
        ]);
      await tp.close();
      tp = null;
    }
  });

  it('records each execution of a pipelined extended-protocol batch, and none of what an error skipped', async () => {
    tp = await startTestProxy();
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
      const results = await Promise.allSettled([
        sql`SELECT id FROM items WHERE id = ${1}`,
        sql`SELECT id FROM items WHERE id >= ${2}`,
        sql`SELECT 1/${0}::int AS boom`,
        sql`SELECT id FROM items WHERE id = ${3}`,
      ]);
      expect(results[2].status).toBe('rejected');
    } finally {
      await sql.end();
    }
    const statements = await waitFor(() => {
      const all = auditEvents(tp!);
      return all.some((e) => e.event === 'connection_closed') && all.filter((e) => e.event === 'statement');
    }, 'connection_closed');
    // postgres.js first reads pg_type for its type parsers: only the statements on items are the batch's.
    const ok = statements.filter((e) => e.outcome === 'ok' && String(e.statement).includes('items'));
    const failed = statements.filter((e) => e.outcome === 'error');
    expect(failed).toHaveLength(1);
    expect(failed[0]).toMatchObject({ sqlstate: '22012', tenant: 'b', statement: 'SELECT $2/$1::int AS boom' }); // the literal 1 becomes $2 after the driver's $1
    // postgres.js pipelines all four; the ones before the error ran, whatever came after it in the same sync may not.
    expect(ok.length).toBeGreaterThanOrEqual(2);
    expect(ok.slice(0, 2).map((e) => e.rows)).toEqual([1, 2]);
    expect(ok.slice(0, 2).map((e) => e.statement)).toEqual([
      'SELECT id FROM items WHERE id = $1',
      'SELECT id FROM items WHERE id >= $1',
    ]);
  });

  it('records a failed login and a client killed mid-transaction', async () => {
    tp = await startTestProxy({ metrics: metricsOn });
    const bad = new pg.Client({ ...(await tp.clientConfig('a')), password: 'not-a-jwt-secret-4713' });
    bad.on('error', () => undefined);
    await expect(bad.connect()).rejects.toMatchObject({ code: '28P01' });

    const raw = await RawClient.connect(tp.port);
    raw.startup({ user: 'app', database: 'pgtp_test', tenant_token: await tp.token('a') });
    await raw.waitFor('Z');
    raw.messages.length = 0;
    raw.query("BEGIN; UPDATE items SET name = 'half-done' WHERE id = 1");
    await raw.waitFor('Z');
    raw.close();

    const events = await waitFor(() => {
      const all = auditEvents(tp!);
      return all.filter((e) => e.event === 'connection_closed').length >= 2 && all;
    }, 'two closed connections');
    const refused = events.find((e) => e.event === 'connection_refused')!;
    expect(refused).toMatchObject({ outcome: 'refused', sqlstate: '28P01' });
    expect(refused.reason).toMatch(/^malformed: /);
    const killed = events.filter((e) => e.event === 'statement' && e.tenant === 'a').map((e) => e.command);
    expect(killed).toEqual(['BEGIN', 'UPDATE']);
    const closed = events.filter((e) => e.event === 'connection_closed' && e.tenant === 'a');
    expect(closed).toHaveLength(1);
    expect(closed[0]).toMatchObject({ in_transaction: true, statements: 2 });
    expect(JSON.stringify(events)).not.toContain('4713');

    const admin = await adminClient();
    try {
      // The kill rolled back: nothing of the half-done transaction reached tenant a.
      await waitFor(
        async () => (await admin.query('SELECT name FROM tenant_a.items WHERE id = 1')).rows[0].name === 'a-one',
        'rollback',
      );
    } finally {
      await admin.end();
    }
    const text = await scrape(tp.proxy.metricsPort!);
    expect(sample(text, 'pgtp_auth_total', { outcome: 'failed', reason: 'malformed' })).toBe(1);
    expect(sample(text, 'pgtp_auth_total', { outcome: 'ok', reason: 'token' })).toBe(1);
  });

  it('never writes a token, a password or a literal into any log, at any level', async () => {
    const captured: string[] = [];
    const sink = new Writable({
      write(chunk: Buffer, _enc, done) {
        captured.push(chunk.toString());
        done();
      },
    });
    const config = testConfig({ audit: {} });
    const proxy: Proxy = await startProxy(config, pino({ level: 'trace' }, sink));
    try {
      const token = await signDevToken(config, { tenant: 'a', sub: 'alice', ttlSeconds: 60 });
      const base = { host: '127.0.0.1', port: proxy.port, user: 'app', database: 'pgtp_test' };
      const good = new pg.Client({ ...base, password: token });
      await good.connect();
      await good.query("SELECT 'literal-9931' AS x");
      await good.query('SELECT $1::text AS y', ['param-9932']);
      await sqlstateOf(() => good.query("SELECT * FROM tenant_b.items WHERE name = 'literal-9933'"));
      await good.end();
      const unknownTenant = await signDevToken(config, { tenant: 'zzz', ttlSeconds: 60 });
      for (const password of [unknownTenant, `${token}x`, 'password-9934']) {
        const bad = new pg.Client({ ...base, password });
        bad.on('error', () => undefined);
        await expect(bad.connect()).rejects.toBeTruthy();
      }
      await waitFor(
        () => auditEventsFrom(config.audit.file!).filter((e) => e.event === 'connection_closed').length >= 4,
        'closes',
      );
      const everything = captured.join('') + readFileSync(config.audit.file!, 'utf8');
      expect(captured.length).toBeGreaterThan(0);
      for (const secret of [
        token,
        unknownTenant,
        token.split('.')[2]!,
        'literal-9931',
        'param-9932',
        'literal-9933',
        'password-9934',
        config.upstream.url.split('@')[0]!.split(':')[2]!,
      ]) {
        expect(everything).not.toContain(secret);
      }
    } finally {
      await proxy.close(0);
    }
  });
});

function auditEventsFrom(file: string): AuditEvent[] {
  return readFileSync(file, 'utf8')
    .split('\n')
    .filter((l) => l !== '')
    .map((l) => JSON.parse(l) as AuditEvent);
}

describe('audit destination failures', () => {
  it('blocks new statements with 58030 while the destination fails (onFailure: block), and reports it', async () => {
    tp = await startTestProxy({ audit: { file: '/dev/full' }, metrics: metricsOn });
    const client = await tp.connect('a');
    // The login events already failed to write to /dev/full (ENOSPC).
    await waitFor(() => tp!.proxy.status().audit.failing, 'audit failing');
    const err = await client.query('SELECT 1').catch((e: unknown) => e as pg.DatabaseError);
    expect(err).toMatchObject({ code: '58030' });
    expect((err as Error).message).toContain('audit log cannot be written');
    const ready = await fetch(`http://127.0.0.1:${tp.proxy.metricsPort}/readyz`);
    expect(ready.status).toBe(503);
    const text = await scrape(tp.proxy.metricsPort!);
    expect(sample(text, 'pgtp_audit_failing')).toBe(1);
    expect(sample(text, 'pgtp_guard_refusals_total', { tenant: 'a', rule: 'audit_unavailable' })).toBe(1);
  });

  it('keeps serving when onFailure is continue', async () => {
    tp = await startTestProxy({ audit: { file: '/dev/full', onFailure: 'continue' } });
    const client = await tp.connect('a');
    await waitFor(() => tp!.proxy.status().audit.failing, 'audit failing');
    expect((await client.query('SELECT count(*)::int AS n FROM items')).rows[0].n).toBe(2);
  });

  it('refuses to start when the audit file cannot be opened', async () => {
    await expect(startTestProxy({ audit: { file: '/nonexistent-dir/audit.log' } })).rejects.toThrow(
      /audit|nonexistent/,
    );
  });
});

describe('metrics', () => {
  it('counts statements, refusals, bytes and clients per tenant, with tenant labels bounded', async () => {
    tp = await startTestProxy({ metrics: { ...metricsOn, maxTenantLabels: 1 } });
    const a = await tp.connect('a');
    const b = await tp.connect('b');
    for (let i = 0; i < 5; i++) await a.query('SELECT id FROM items WHERE id = $1', [i]);
    await b.query('SELECT 1');
    await sqlstateOf(() => a.query('SELECT * FROM tenant_b.items'));
    await sqlstateOf(() => b.query('SET search_path = tenant_a'));
    const text = await scrape(tp.proxy.metricsPort!);
    expect(sample(text, 'pgtp_statements_total', { tenant: 'a', command: 'SELECT', outcome: 'ok' })).toBe(5);
    // maxTenantLabels 1: tenant b is folded into "other".
    expect(sample(text, 'pgtp_statements_total', { tenant: 'other', command: 'SELECT', outcome: 'ok' })).toBe(1);
    expect(text).not.toContain('tenant="b"');
    expect(sample(text, 'pgtp_guard_refusals_total', { tenant: 'a', rule: 'schema' })).toBe(1);
    expect(sample(text, 'pgtp_guard_refusals_total', { tenant: 'other', rule: 'session_state' })).toBe(1);
    expect(sample(text, 'pgtp_statement_duration_seconds_count', { tenant: 'a' })).toBe(5);
    expect(sample(text, 'pgtp_client_connections', { tenant: 'a', state: 'idle' })).toBe(1);
    expect(sample(text, 'pgtp_client_connections', { tenant: 'other', state: 'idle' })).toBe(1);
    expect(sample(text, 'pgtp_client_received_bytes_total', { tenant: 'a' })).toBeGreaterThan(5 * 40);
    expect(sample(text, 'pgtp_client_sent_bytes_total', { tenant: 'a' })).toBeGreaterThan(5 * 40);
    expect(sample(text, 'pgtp_pool_size', { upstream: 'default' })).toBe(2);
    expect(sample(text, 'pgtp_backend_connects_total', { upstream: 'default', outcome: 'ok' })).toBeGreaterThanOrEqual(
      1,
    );
    expect(sample(text, 'pgtp_process_resident_memory_bytes')).toBeGreaterThan(0);
    expect(text).toContain('# TYPE pgtp_pool_wait_seconds histogram');
  });

  it('counts statements with audit.statements off, while the trail keeps only connection events', async () => {
    tp = await startTestProxy({ metrics: metricsOn, audit: { statements: false } });
    const a = await tp.connect('a');
    await a.query('SELECT 1');
    await a.query('SELECT 2');
    await a.end();
    expect(
      sample(await scrape(tp.proxy.metricsPort!), 'pgtp_statements_total', {
        tenant: 'a',
        command: 'SELECT',
        outcome: 'ok',
      }),
    ).toBe(2);
    const events = await waitFor(() => {
      const all = auditEvents(tp!);
      return all.some((e) => e.event === 'connection_closed') && all;
    }, 'connection_closed');
    expect(events.map((e) => e.event)).toEqual([
      'connection_accepted',
      'connection_authenticated',
      'connection_closed',
    ]);
  });

  it('measures waiting for a backend and resets between tenants', async () => {
    tp = await startTestProxy({ upstream: { poolSize: 1 }, metrics: metricsOn });
    const a = await tp.connect('a');
    const b = await tp.connect('b');
    await a.query('BEGIN');
    const before = await scrape(tp.proxy.metricsPort!);
    const waiting = b.query('SELECT 1');
    await waitFor(
      async () =>
        sample(await scrape(tp!.proxy.metricsPort!), 'pgtp_pool_waiting_clients', { upstream: 'default' }) === 1,
      'one waiting client',
    );
    await a.query('COMMIT');
    await waiting;
    const text = await scrape(tp.proxy.metricsPort!);
    expect(sample(text, 'pgtp_pool_wait_seconds_count') - sample(before, 'pgtp_pool_wait_seconds_count')).toBe(1);
    expect(sample(text, 'pgtp_pool_waiting_clients', { upstream: 'default' })).toBe(0);
    expect(sample(text, 'pgtp_backend_resets_total')).toBeGreaterThanOrEqual(1);
  });

  it('serves /healthz, and /admin/status only with the admin token', async () => {
    tp = await startTestProxy({ metrics: metricsOn });
    const base = `http://127.0.0.1:${tp.proxy.metricsPort}`;
    expect((await fetch(`${base}/healthz`)).status).toBe(200);
    expect((await fetch(`${base}/admin/status`)).status).toBe(401);
    expect(
      (await fetch(`${base}/admin/status`, { headers: { authorization: 'Bearer wrong-token-0123456789abcd' } })).status,
    ).toBe(401);
    const a = await tp.connect('a', { application_name: 'reporting' });
    await a.query('SELECT 1');
    const response = await fetch(`${base}/admin/status`, {
      headers: { authorization: `Bearer ${metricsOn.adminToken}` },
    });
    expect(response.status).toBe(200);
    const status = (await response.json()) as {
      tenants: Array<{ tenant: string; clients: number }>;
      clients: Array<{ tenant: string; application_name: string }>;
      pool: { size: number };
    };
    expect(status.pool.size).toBe(2);
    expect(status.tenants).toEqual([{ tenant: 'a', clients: 1, idle: 1, waiting: 0, active: 0 }]);
    expect(status.clients[0]).toMatchObject({ tenant: 'a', application_name: 'reporting', state: 'idle' });
    expect((await fetch(`${base}/nope`)).status).toBe(404);
  });
});

describe('metrics endpoint start', () => {
  it('refuses to start when the metrics port is taken, naming it', async () => {
    const blocker = net.createServer();
    await new Promise<void>((resolve) => blocker.listen(0, '127.0.0.1', () => resolve()));
    const taken = (blocker.address() as net.AddressInfo).port;
    try {
      await expect(startTestProxy({ metrics: { enabled: true, port: taken } })).rejects.toThrow(
        `cannot serve metrics on 127.0.0.1:${taken}`,
      );
    } finally {
      blocker.close();
    }
  });
});

describe('readiness follows the upstream', () => {
  let cluster: PrivatePgFixture;
  beforeAll(async () => {
    cluster = await startPrivateCluster();
  }, 60_000);
  afterAll(async () => {
    await cluster?.stop();
  });

  it('turns /readyz unready while PostgreSQL is stopped and ready again when it returns', async () => {
    tp = await startTestProxy({ metrics: metricsOn, upstream: { connectTimeoutMs: 1000 } }, cluster.upstreamUrl);
    const readyz = async (): Promise<{
      status: number;
      body: { ready: boolean; checks: Record<string, { ok: boolean }> };
    }> => {
      const r = await fetch(`http://127.0.0.1:${tp!.proxy.metricsPort}/readyz`);
      return {
        status: r.status,
        body: (await r.json()) as { ready: boolean; checks: Record<string, { ok: boolean }> },
      };
    };
    expect((await readyz()).status).toBe(200);
    await cluster.pause();
    const down = await waitFor(
      async () => {
        const r = await readyz();
        return r.status === 503 && r;
      },
      'unready',
      10_000,
    );
    expect(down.body.checks.upstream!.ok).toBe(false);
    expect(down.body.checks.listener!.ok).toBe(true);
    expect((await fetch(`http://127.0.0.1:${tp.proxy.metricsPort}/healthz`)).status).toBe(200);
    await cluster.resume();
    await waitFor(async () => (await readyz()).status === 200, 'ready again', 15_000);
  }, 60_000);
});
