// Several identity providers (auth.issuers): issuer X (HS256 secret) and issuer Y (ES256, its JWKS served over HTTP
// from 127.0.0.1) each log in only to the tenants they may speak for (list, pattern, or the registry's record), and
// a token from one can never log into a tenant mapped to the other.
import { generateKeyPairSync, type KeyObject } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { SignJWT, type JWTPayload } from 'jose';
import pg from 'pg';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { createTenant, updateTenant } from '../../src/tenants/lifecycle-api.js';
import { sqlstateOf, startTestProxy, type TestProxy } from '../support/proxy.js';
import { createRegistryDatabase, type RegistryDatabase } from '../support/registry.js';

const X_ISS = 'https://x.idp.test/';
const Y_ISS = 'https://y.idp.test/';
const X_SECRET = 'issuer-x-secret-that-is-at-least-32-characters';
const ACTOR = { actor: 'issuers-test' };

let yKey: { publicKey: KeyObject; privateKey: KeyObject };
let jwks: Server;
let jwksUrl: string;
let jwksFetches = 0;
let rdb: RegistryDatabase | null = null;
let tp: TestProxy | null = null;

beforeAll(async () => {
  yKey = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const body = JSON.stringify({
    keys: [{ ...yKey.publicKey.export({ format: 'jwk' }), kid: 'y-1', alg: 'ES256', use: 'sig' }],
  });
  jwks = createServer((_req, res) => {
    jwksFetches++;
    res.writeHead(200, { 'content-type': 'application/json' }).end(body);
  });
  await new Promise<void>((resolve) => jwks.listen(0, '127.0.0.1', resolve));
  jwksUrl = `http://127.0.0.1:${(jwks.address() as AddressInfo).port}/.well-known/jwks.json`;
});

afterAll(async () => {
  await new Promise((resolve) => jwks.close(resolve));
  await rdb?.drop(['tenant_iss_']);
});

afterEach(async () => {
  await tp?.close();
  tp = null;
});

const now = () => Math.floor(Date.now() / 1000);
const claims = (tenant: string, extra: JWTPayload = {}): JWTPayload => ({
  tenant_id: tenant,
  sub: 'u',
  iat: now(),
  exp: now() + 300,
  ...extra,
});

/** A token from X: HS256 with X's secret, iss X (unless overridden). */
function xToken(tenant: string, extra: JWTPayload = {}): Promise<string> {
  return new SignJWT(claims(tenant, { iss: X_ISS, ...extra }))
    .setProtectedHeader({ alg: 'HS256' })
    .sign(new TextEncoder().encode(X_SECRET));
}

/** A token from Y: ES256 with Y's private key, kid y-1, iss Y. */
function yToken(tenant: string, extra: JWTPayload = {}): Promise<string> {
  return new SignJWT(claims(tenant, { iss: Y_ISS, ...extra }))
    .setProtectedHeader({ alg: 'ES256', kid: 'y-1' })
    .sign(yKey.privateKey);
}

type Tenants = string[] | 'registry' | { pattern: string };
const X = (tenants: Tenants) => ({ name: 'x', issuer: X_ISS, secret: X_SECRET, tenants });
const Y = (tenants: Tenants) => ({ name: 'y', issuer: Y_ISS, jwksUrl, tenants });

/** Connects as `tenant` with `token`; resolves with the schema the session is pinned to. */
async function login(proxy: TestProxy, tenant: string, token: string): Promise<string> {
  const client = new pg.Client(await proxy.clientConfig(tenant, { password: token }));
  client.on('error', () => undefined);
  await client.connect();
  try {
    return (await client.query('SELECT current_schema() AS s')).rows[0].s as string;
  } finally {
    await client.end();
  }
}

async function refusedWith(proxy: TestProxy, tenant: string, token: string): Promise<string> {
  return sqlstateOf(() => login(proxy, tenant, token));
}

/** The rule that refused each connection so far, from the audit trail's connection_refused events ("rule: message"). */
function refusalReasons(proxy: TestProxy): string[] {
  return readFileSync(proxy.config.audit.file!, 'utf8')
    .split('\n')
    .filter((line) => line.includes('"connection_refused"'))
    .map((line) => (JSON.parse(line) as { reason: string }).reason.split(':')[0]!);
}

async function eventually<T>(fn: () => Promise<T>, ms = 2000): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    try {
      return await fn();
    } catch (err) {
      if (Date.now() > deadline) throw err;
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  }
}

describe('several issuers: list and pattern', () => {
  it('admits each issuer to its own tenants only; a foreign, forged or unknown issuer gets 28P01 and the audit says which rule', async () => {
    tp = await startTestProxy({ auth: { issuers: [X(['a']), Y({ pattern: '^b$' })] } });
    expect(await login(tp, 'a', await xToken('a'))).toBe('tenant_a');
    expect(await login(tp, 'b', await yToken('b'))).toBe('tenant_b');
    expect(jwksFetches).toBeGreaterThan(0);

    // X may not speak for b (Y's), nor Y for a (X's).
    expect(await refusedWith(tp, 'b', await xToken('b'))).toBe('28P01');
    expect(await refusedWith(tp, 'a', await yToken('a'))).toBe('28P01');
    // Signed by X, claiming to be Y: Y's key does not verify it (not even its algorithm).
    expect(await refusedWith(tp, 'b', await xToken('b', { iss: Y_ISS }))).toBe('28P01');
    // Signed by Y's key but under a kid Y does not publish, claiming Y: no key.
    const unknownKid = await new SignJWT(claims('b', { iss: Y_ISS }))
      .setProtectedHeader({ alg: 'ES256', kid: 'y-2' })
      .sign(yKey.privateKey);
    expect(await refusedWith(tp, 'b', unknownKid)).toBe('28P01');
    // An iss no issuer has.
    expect(await refusedWith(tp, 'a', await xToken('a', { iss: 'https://evil.test/' }))).toBe('28P01');
    expect(await refusedWith(tp, 'a', await xToken('a', { iss: undefined }))).toBe('28P01');

    const proxy = tp;
    await eventually(() => {
      expect(refusalReasons(proxy)).toEqual([
        'issuer_not_allowed',
        'issuer_not_allowed',
        'alg_not_allowed',
        'no_key',
        'unknown_issuer',
        'unknown_issuer',
      ]);
      return Promise.resolve();
    });
    const authenticated = readFileSync(proxy.config.audit.file!, 'utf8')
      .split('\n')
      .filter((line) => line.includes('"connection_authenticated"'))
      .map((line) => JSON.parse(line) as { tenant: string; issuer?: string });
    expect(authenticated.map((e) => [e.tenant, e.issuer])).toEqual([
      ['a', 'x'],
      ['b', 'y'],
    ]);
    const metrics = await tp.proxy.metrics.registry.metrics();
    expect(metrics).toMatch(/pgtp_auth_total\{[^}]*reason="issuer_not_allowed"[^}]*\} 2/);
    expect(metrics).toMatch(/pgtp_auth_total\{[^}]*reason="unknown_issuer"[^}]*\} 2/);
  });
});

describe('several issuers: as recorded in the registry', () => {
  beforeAll(async () => {
    rdb = await createRegistryDatabase('pgtp_issuers');
  }, 60_000);

  it('admits a tenant only through the issuer its record names; `tenants update --issuer` moves it within 2 s', async () => {
    const db = rdb!;
    tp = await startTestProxy(
      {
        auth: { issuers: [X('registry'), Y('registry')] },
        tenancy: { registry: { enabled: true } },
        admin: { url: db.adminUrl },
      },
      db.upstreamUrl,
    );
    const config = tp.config;
    expect((await createTenant(config, 'iss_x', { ...ACTOR, issuer: 'x' })).tenant.issuer).toBe('x');
    await createTenant(config, 'iss_y', { ...ACTOR, issuer: 'y' });
    await createTenant(config, 'iss_none', ACTOR);
    // A name no configured issuer has would lock the tenant out: refused, nothing recorded.
    await expect(createTenant(config, 'iss_typo', { ...ACTOR, issuer: 'acme-otka' })).rejects.toThrow(
      /issuer "acme-otka" is not configured \(auth.issuers: x, y\)/,
    );
    await expect(updateTenant(config, 'iss_y', { ...ACTOR, issuer: 'z' })).rejects.toThrow(/not configured/);

    expect(await login(tp, 'iss_x', await xToken('iss_x'))).toBe('tenant_iss_x');
    expect(await login(tp, 'iss_y', await yToken('iss_y'))).toBe('tenant_iss_y');
    expect(await refusedWith(tp, 'iss_y', await xToken('iss_y'))).toBe('28P01');
    expect(await refusedWith(tp, 'iss_x', await yToken('iss_x'))).toBe('28P01');
    // A forged iss fails against the named issuer's key, whatever the record says.
    expect(await refusedWith(tp, 'iss_y', await xToken('iss_y', { iss: Y_ISS }))).toBe('28P01');
    // A record naming no issuer admits no registry-mode issuer.
    expect(await refusedWith(tp, 'iss_none', await xToken('iss_none'))).toBe('28P01');

    // Move iss_x from X to Y: new logins follow within 2 s (a session already connected stays).
    const proxy = tp;
    const kept = await tp.connect('iss_x', { password: await xToken('iss_x') });
    const movedAt = Date.now();
    const update = await updateTenant(config, 'iss_x', { ...ACTOR, issuer: 'y' });
    expect(update.outcome).toBe('updated');
    const yIn = await eventually(async () => login(proxy, 'iss_x', await yToken('iss_x')));
    expect(yIn).toBe('tenant_iss_x');
    await eventually(async () => expect(await refusedWith(proxy, 'iss_x', await xToken('iss_x'))).toBe('28P01'));
    expect(Date.now() - movedAt).toBeLessThan(2500);
    expect((await kept.query('SELECT 1 AS one')).rows[0].one).toBe(1);
  });

  it('with a list issuer beside it, a record naming Y still keeps X out', async () => {
    const db = rdb!;
    tp = await startTestProxy(
      {
        auth: { issuers: [X({ pattern: '^iss_[a-z]+$' }), Y('registry')] },
        tenancy: { registry: { enabled: true } },
        admin: { url: db.adminUrl },
      },
      db.upstreamUrl,
    );
    // iss_y's record names y: X's pattern matches the id, and still X is refused.
    expect(await refusedWith(tp, 'iss_y', await xToken('iss_y'))).toBe('28P01');
    expect(await login(tp, 'iss_y', await yToken('iss_y'))).toBe('tenant_iss_y');
    // iss_none names no issuer: X's pattern admits it; Y (registry mode) does not.
    expect(await login(tp, 'iss_none', await xToken('iss_none'))).toBe('tenant_iss_none');
    expect(await refusedWith(tp, 'iss_none', await yToken('iss_none'))).toBe('28P01');
  });
});
