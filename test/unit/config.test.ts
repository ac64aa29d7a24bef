import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { ConfigError, configKeys, envNameFor, loadConfig, validateConfig } from '../../src/config/load.js';

const minimal = { upstream: { url: 'postgres://p@127.0.0.1:5432/app' }, auth: { jwt: { secret: 'x'.repeat(32) } } };

function keyOf(fn: () => unknown): string | undefined {
  try {
    fn();
  } catch (err) {
    return err instanceof ConfigError ? err.key : 'not a ConfigError';
  }
  return undefined;
}

describe('config', () => {
  it('loads the shipped example and demo configs', () => {
    expect(loadConfig('config/proxy.example.yaml', {}).upstream.poolSize).toBe(20);
    expect(loadConfig('config/demo.yaml', {}).listen.port).toBe(6432);
  });

  it('the example config lists every key', () => {
    // Top-level sections, then each leaf name (set or commented out) inside its section.
    const sections = new Map<string, string>();
    let current = '';
    for (const line of readFileSync('config/proxy.example.yaml', 'utf8').split('\n')) {
      const top = /^([a-z]+):/.exec(line);
      if (top) sections.set((current = top[1]!), '');
      else if (current !== '') sections.set(current, `${sections.get(current)}${line}\n`);
    }
    const missing = configKeys()
      .map((k) => k.key)
      .filter((key) => {
        const parts = key.split('.');
        // A top-level leaf (upstreams, a mapping of named entries) is its own section.
        if (parts.length === 1) return !sections.has(key);
        return !new RegExp(`^\\s*(#\\s*)?${parts[parts.length - 1]}:`, 'm').test(sections.get(parts[0]!) ?? '');
      });
    expect(missing).toEqual([]);
  });

  it('keeps the registry out of tenant reach and the admin role apart from the proxy role', () => {
    const config = validateConfig(minimal);
    expect(config.tenancy.registry).toEqual({ enabled: false, withdrawTimeoutMs: 30_000, schema: 'pgtp' });
    expect(config.admin.url).toBeUndefined();
    expect(keyOf(() => validateConfig({ ...minimal, tenancy: { registry: { schema: 'tenant_x' } } }))).toBe(
      'tenancy.registry.schema',
    );
    expect(keyOf(() => validateConfig({ ...minimal, tenancy: { schemaTemplate: '{tenant}' } }))).toBe(
      'tenancy.registry.schema',
    );
    expect(keyOf(() => validateConfig({ ...minimal, tenancy: { sharedSchemas: ['pgtp'] } }))).toBe(
      'tenancy.registry.schema',
    );
    expect(keyOf(() => validateConfig({ ...minimal, tenancy: { registry: { schema: 'pg_registry' } } }))).toBe(
      'tenancy.registry.schema',
    );
    expect(keyOf(() => validateConfig({ ...minimal, tenancy: { registry: { schema: 'Bad-Name' } } }))).toBe(
      'tenancy.registry.schema',
    );
    expect(keyOf(() => validateConfig({ ...minimal, admin: { url: 'postgres://p@127.0.0.1:5432/app' } }))).toBe(
      'admin.url',
    );
    expect(keyOf(() => validateConfig({ ...minimal, admin: { url: 'postgres://admin@127.0.0.1:5432/other' } }))).toBe(
      'admin.url',
    );
    expect(validateConfig({ ...minimal, admin: { url: 'postgres://admin@127.0.0.1:5432/app' } }).admin.url).toContain(
      'admin@',
    );
    const fromEnv = loadConfig(undefined, {
      PGTP_UPSTREAM_URL: 'postgres://p@db:5432/app',
      PGTP_AUTH_JWT_SECRET: 'y'.repeat(40),
      PGTP_TENANCY_REGISTRY_ENABLED: 'true',
      PGTP_TENANCY_REGISTRY_SCHEMA: 'control',
      PGTP_ADMIN_URL: 'postgres://admin@db:5432/app',
      PGTP_ADMIN_PASSWORD: 'secret',
    });
    expect(fromEnv.tenancy.registry).toEqual({ enabled: true, withdrawTimeoutMs: 30_000, schema: 'control' });
    expect(fromEnv.admin).toEqual({ url: 'postgres://admin@db:5432/app', password: 'secret' });
  });

  it('fills defaults and freezes the result', () => {
    const config = validateConfig(minimal);
    expect(config.tenancy.schemaTemplate).toBe('tenant_{tenant}');
    expect(config.tls.mode).toBe('allow');
    expect(Object.isFrozen(config.upstream)).toBe(true);
  });

  it('names the key of every problem', () => {
    expect(keyOf(() => validateConfig({ ...minimal, upstream: { url: 'http://x' } }))).toBe('upstream.url');
    expect(keyOf(() => validateConfig({ ...minimal, auth: { jwt: { secret: 'short' } } }))).toBe('auth.jwt.secret');
    expect(keyOf(() => validateConfig({ ...minimal, auth: { jwt: {} } }))).toBe('auth.jwt');
    expect(keyOf(() => validateConfig({ ...minimal, tenancy: { tenantPattern: '[a-z]+' } }))).toBe(
      'tenancy.tenantPattern',
    );
    expect(keyOf(() => validateConfig({ ...minimal, tenancy: { schemaTemplate: 'fixed' } }))).toBe(
      'tenancy.schemaTemplate',
    );
    expect(
      keyOf(() =>
        validateConfig({ ...minimal, upstream: { ...minimal.upstream, poolSize: 2 }, listen: { workers: 3 } }),
      ),
    ).toBe('listen.workers');
    expect(keyOf(() => validateConfig({ ...minimal, listen: { prot: 1 } }))).toBe('listen');
    expect(keyOf(() => validateConfig({ ...minimal, tls: { mode: 'require' } }))).toBe('tls.mode');
  });

  it('maps every key to an environment variable and applies it', () => {
    const names = configKeys().map((k) => envNameFor(k.key));
    for (const required of [
      'PGTP_LISTEN_HOST',
      'PGTP_LISTEN_PORT',
      'PGTP_UPSTREAM_URL',
      'PGTP_UPSTREAM_POOL_SIZE',
      'PGTP_AUTH_JWT_SECRET',
      'PGTP_AUTH_JWT_PUBLIC_KEY_FILE',
      'PGTP_AUTH_JWT_JWKS_FILE',
      'PGTP_AUTH_JWT_JWKS_URL',
      'PGTP_AUTH_JWT_ISSUER',
      'PGTP_AUTH_JWT_AUDIENCE',
      'PGTP_AUTH_JWT_TENANT_CLAIM',
      'PGTP_TENANCY_SCHEMA_TEMPLATE',
      'PGTP_TENANCY_TENANT_PATTERN',
      'PGTP_TLS_CERT',
      'PGTP_TLS_KEY',
      'PGTP_TLS_MODE',
      'PGTP_METRICS_PORT',
    ]) {
      expect(names).toContain(required);
    }
    const config = loadConfig(undefined, {
      PGTP_UPSTREAM_URL: 'postgres://p@db:5432/app',
      PGTP_AUTH_JWT_SECRET: 'y'.repeat(40),
      PGTP_UPSTREAM_POOL_SIZE: '7',
      PGTP_TENANCY_SHARED_SCHEMAS: 'ref, lookup',
      PGTP_TENANCY_ROLES: 'true',
    });
    expect(config.upstream.poolSize).toBe(7);
    expect(config.tenancy.sharedSchemas).toEqual(['ref', 'lookup']);
    expect(config.tenancy.roles).toBe(true);
  });

  it('turns metrics on when a port is set, unless enabled says false', () => {
    expect(validateConfig(minimal).metrics).toMatchObject({ enabled: false, port: 9930 });
    expect(validateConfig({ ...minimal, metrics: { port: 9999 } }).metrics).toMatchObject({
      enabled: true,
      port: 9999,
    });
    expect(validateConfig({ ...minimal, metrics: { port: 9999, enabled: false } }).metrics.enabled).toBe(false);
    expect(validateConfig({ ...minimal, metrics: { enabled: true } }).metrics).toMatchObject({
      enabled: true,
      port: 9930,
    });
    const fromEnv = loadConfig(undefined, {
      PGTP_UPSTREAM_URL: 'postgres://p@db:5432/app',
      PGTP_AUTH_JWT_SECRET: 'y'.repeat(40),
      PGTP_METRICS_PORT: '9100',
    });
    expect(fromEnv.metrics).toMatchObject({ enabled: true, port: 9100 });
  });
});
