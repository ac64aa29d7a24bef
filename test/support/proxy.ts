// Starts a proxy on port 0 against the test cluster and mints tokens for it.
import { randomUUID } from 'node:crypto';
import { join } from 'node:path';
import pg from 'pg';
import pino from 'pino';
import { inject } from 'vitest';
import { signDevToken } from '../../src/auth/sign-token.js';
import { validateConfig } from '../../src/config/load.js';
import type { Config, ConfigInput } from '../../src/config/schema.js';
import { startProxy, type Proxy } from '../../src/main.js';

export const TEST_SECRET = 'test-secret-that-is-long-enough-for-hs256-0123456789';

export interface TestProxy {
  proxy: Proxy;
  config: Config;
  port: number;
  token(
    tenant: string,
    opts?: { sub?: string; ttlSeconds?: number; extraClaims?: Record<string, unknown> },
  ): Promise<string>;
  /** node-postgres client config for a tenant, token as password. */
  clientConfig(tenant: string, extra?: Partial<pg.ClientConfig>): Promise<pg.ClientConfig>;
  connect(tenant: string, extra?: Partial<pg.ClientConfig>): Promise<pg.Client>;
  close(): Promise<void>;
}

type Overrides = { [K in keyof ConfigInput]?: Partial<NonNullable<ConfigInput[K]>> & Record<string, unknown> };

export function testConfig(overrides: Overrides = {}, upstreamUrl = inject('pg').upstreamUrl): Config {
  const raw = {
    listen: { host: '127.0.0.1', port: 0, ...overrides.listen },
    upstream: { url: upstreamUrl, poolSize: 2, ...overrides.upstream },
    ...(overrides.upstreams !== undefined && { upstreams: overrides.upstreams }),
    auth:
      overrides.auth?.issuers !== undefined
        ? { issuers: overrides.auth.issuers }
        : { jwt: { secret: TEST_SECRET, ...overrides.auth?.jwt } },
    tenancy: { ...overrides.tenancy },
    policy: { ...overrides.policy },
    tls: { mode: 'allow', ...overrides.tls },
    // Audit events go to a throwaway file unless a test asks otherwise: stdout is the test runner's.
    // The global setup's directory, removed when the run ends.
    audit: { file: join(inject('auditDir'), `${randomUUID()}.log`), ...overrides.audit },
    metrics: { ...overrides.metrics },
    pool: { ...overrides.pool },
    admin: { ...overrides.admin },
    usage: { ...overrides.usage },
    limits: { ...overrides.limits },
    log: { level: process.env.PGTP_TEST_LOG ?? 'silent' },
  };
  return validateConfig(raw);
}

export async function startTestProxy(overrides: Overrides = {}, upstreamUrl?: string): Promise<TestProxy> {
  const config = testConfig(overrides, upstreamUrl);
  const log = pino({ level: config.log.level });
  const proxy = await startProxy(config, log);
  const database = new URL(config.upstream.url).pathname.slice(1);
  const token: TestProxy['token'] = (tenant, opts = {}) =>
    signDevToken(config, {
      tenant,
      sub: opts.sub ?? `user-of-${tenant}`,
      ttlSeconds: opts.ttlSeconds ?? 300,
      extraClaims: opts.extraClaims,
    });
  const clientConfig: TestProxy['clientConfig'] = async (tenant, extra = {}) => ({
    host: '127.0.0.1',
    port: proxy.port,
    user: 'app',
    database,
    password: await token(tenant),
    ...extra,
  });
  const clients: pg.Client[] = [];
  return {
    proxy,
    config,
    port: proxy.port,
    token,
    clientConfig,
    async connect(tenant, extra) {
      const client = new pg.Client(await clientConfig(tenant, extra));
      client.on('error', () => undefined);
      await client.connect();
      clients.push(client);
      return client;
    },
    async close() {
      await Promise.all(clients.map((c) => c.end().catch(() => undefined)));
      await proxy.close(0);
    },
  };
}

/** Runs `fn` and returns the SQLSTATE of the error it throws (fails the test when it does not throw). */
export async function sqlstateOf(fn: () => Promise<unknown>): Promise<string> {
  try {
    await fn();
  } catch (err) {
    return (err as { code?: string }).code ?? `no code: ${(err as Error).message}`;
  }
  throw new Error('expected an error, got success');
}
