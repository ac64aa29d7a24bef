// Tenant token verification and dev-token signing against keys generated at test time.
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { generateKeyPairSync, type KeyObject } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { SignJWT, decodeProtectedHeader, type JWTPayload } from 'jose';
import { ConfigError, configKeys, loadConfig, validateConfig } from '../../src/config/load.js';
import type { Config } from '../../src/config/schema.js';
import { AuthFailure, createTenantTokenVerifier, type AuthFailureReason } from '../../src/auth/tenant-token.js';
import { parseDuration, signDevToken } from '../../src/auth/sign-token.js';

const SECRET = 'test-secret-that-is-at-least-32-characters-long';
const OTHER_SECRET = 'another-secret-that-is-at-least-32-characters';
const secretBytes = (s: string) => new TextEncoder().encode(s);
const now = () => Math.floor(Date.now() / 1000);

interface Pair {
  publicKey: KeyObject;
  privateKey: KeyObject;
  publicFile: string;
  privateFile: string;
}

let dir: string;
let rsa: Pair;
let otherRsa: Pair;
let ec: Pair;
let ed: Pair;
let jwksFile: string;

function writePair(name: string, pair: { publicKey: KeyObject; privateKey: KeyObject }): Pair {
  const publicFile = join(dir, `${name}.pub.pem`);
  const privateFile = join(dir, `${name}.key.pem`);
  writeFileSync(publicFile, pair.publicKey.export({ type: 'spki', format: 'pem' }));
  writeFileSync(privateFile, pair.privateKey.export({ type: 'pkcs8', format: 'pem' }));
  return { ...pair, publicFile, privateFile };
}

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'pgtp-token-'));
  rsa = writePair('rsa', generateKeyPairSync('rsa', { modulusLength: 2048 }));
  otherRsa = writePair('rsa2', generateKeyPairSync('rsa', { modulusLength: 2048 }));
  ec = writePair('ec', generateKeyPairSync('ec', { namedCurve: 'P-256' }));
  ed = writePair('ed', generateKeyPairSync('ed25519'));
  jwksFile = join(dir, 'jwks.json');
  writeFileSync(
    jwksFile,
    JSON.stringify({
      keys: [
        { ...rsa.publicKey.export({ format: 'jwk' }), kid: 'rsa-1', use: 'sig' },
        { ...ec.publicKey.export({ format: 'jwk' }), kid: 'ec-1' },
      ],
    }),
  );
});

afterAll(() => {
  rmSync(dir, { recursive: true, force: true });
});

function config(jwt: Record<string, unknown>, tenancy?: Record<string, unknown>): Config {
  return validateConfig({
    upstream: { url: 'postgres://u@127.0.0.1:5432/db' },
    auth: { jwt },
    ...(tenancy && { tenancy }),
  });
}

const secretConfig = (extra: Record<string, unknown> = {}) => config({ secret: SECRET, ...extra });
const pemConfig = (pair: Pair, extra: Record<string, unknown> = {}) =>
  config({ publicKeyFile: pair.publicFile, ...extra });

function claims(overrides: JWTPayload = {}): JWTPayload {
  return { tenant_id: 'acme', sub: 'user-1', iat: now(), exp: now() + 300, ...overrides };
}

async function sign(key: KeyObject | Uint8Array, alg: string, payload: JWTPayload, kid?: string): Promise<string> {
  return new SignJWT(payload).setProtectedHeader({ alg, ...(kid !== undefined && { kid }) }).sign(key);
}

async function verifyWith(cfg: Config, token: string) {
  const verifier = await createTenantTokenVerifier(cfg);
  try {
    return await verifier.verify(token);
  } finally {
    verifier.close();
  }
}

/** Asserts reason and SQLSTATE, and that no part of the token (or a leaked value) shows up in the message. */
async function expectRefused(
  cfg: Config,
  token: string,
  reason: AuthFailureReason,
  sqlstate: '28P01' | '28000',
  mustNotLeak: string[] = [],
): Promise<void> {
  const err = await verifyWith(cfg, token).then(
    () => expect.unreachable('token was accepted'),
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(AuthFailure);
  const failure = err as AuthFailure;
  expect({ reason: failure.reason, sqlstate: failure.sqlstate }).toEqual({ reason, sqlstate });
  for (const part of [token, ...token.split('.'), ...mustNotLeak]) {
    if (part.length >= 3) expect(failure.message).not.toContain(part);
  }
}

function b64(value: unknown): string {
  return Buffer.from(JSON.stringify(value)).toString('base64url');
}

describe('valid tokens', () => {
  it('HS256 with the shared secret', async () => {
    const payload = claims();
    const identity = await verifyWith(secretConfig(), await sign(secretBytes(SECRET), 'HS256', payload));
    expect(identity).toEqual({
      tenantId: 'acme',
      schema: 'tenant_acme',
      role: null,
      actor: 'user-1',
      expiresAt: payload.exp,
      guardBypass: false,
    });
  });

  it('RS256 and PS256 with an RSA public key file', async () => {
    for (const alg of ['RS256', 'PS256']) {
      const identity = await verifyWith(pemConfig(rsa), await sign(rsa.privateKey, alg, claims()));
      expect(identity.schema).toBe('tenant_acme');
    }
  });

  it('ES256 with a P-256 public key file', async () => {
    const identity = await verifyWith(pemConfig(ec), await sign(ec.privateKey, 'ES256', claims({ sub: 'svc' })));
    expect(identity).toMatchObject({ tenantId: 'acme', schema: 'tenant_acme', actor: 'svc' });
  });

  it('EdDSA and Ed25519 with an Ed25519 public key file', async () => {
    for (const alg of ['EdDSA', 'Ed25519']) {
      const identity = await verifyWith(pemConfig(ed), await sign(ed.privateKey, alg, claims()));
      expect(identity.tenantId).toBe('acme');
    }
  });

  it('RS256 by kid and ES256 without kid from a JWKS file', async () => {
    const cfg = config({ jwksFile });
    expect((await verifyWith(cfg, await sign(rsa.privateKey, 'RS256', claims(), 'rsa-1'))).schema).toBe('tenant_acme');
    expect((await verifyWith(cfg, await sign(ec.privateKey, 'ES256', claims()))).schema).toBe('tenant_acme');
  });

  it('tries every JWKS key that matches when the token has no kid', async () => {
    const rotating = join(dir, 'rotating-jwks.json');
    const keys = [otherRsa, rsa].map((p) => p.publicKey.export({ format: 'jwk' }));
    writeFileSync(rotating, JSON.stringify({ keys }));
    const cfg = config({ jwksFile: rotating });
    expect((await verifyWith(cfg, await sign(rsa.privateKey, 'RS256', claims()))).tenantId).toBe('acme');
    const stranger = generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey;
    await expectRefused(cfg, await sign(stranger, 'RS256', claims()), 'bad_signature', '28P01');
  });

  it('fetches a remote JWKS, and an unreachable one gives no_key', async () => {
    const server = createServer((_req, res) => {
      res.writeHead(200, { 'content-type': 'application/json' }).end(readFileSync(jwksFile));
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/jwks.json`;
    const token = await sign(rsa.privateKey, 'RS256', claims(), 'rsa-1');
    try {
      expect((await verifyWith(config({ jwksUrl: url }), token)).tenantId).toBe('acme');
    } finally {
      await new Promise((resolve) => server.close(resolve));
    }
    await expectRefused(config({ jwksUrl: url }), token, 'no_key', '28P01');
  });

  it('a token without sub has no actor', async () => {
    const identity = await verifyWith(
      secretConfig(),
      await sign(secretBytes(SECRET), 'HS256', claims({ sub: undefined })),
    );
    expect(identity.actor).toBeUndefined();
  });

  it('a 700-character token verifies', async () => {
    const token = await sign(rsa.privateKey, 'RS256', claims({ pad: 'x'.repeat(180) }));
    expect(token.length).toBeGreaterThanOrEqual(700);
    expect((await verifyWith(pemConfig(rsa), token)).tenantId).toBe('acme');
  });

  it('custom tenantClaim and schemaTemplate', async () => {
    const cfg = config({ secret: SECRET, tenantClaim: 'org' }, { schemaTemplate: 'org_{tenant}_data' });
    const identity = await verifyWith(
      cfg,
      await sign(secretBytes(SECRET), 'HS256', claims({ tenant_id: undefined, org: 'beta' })),
    );
    expect(identity).toMatchObject({ tenantId: 'beta', schema: 'org_beta_data' });
  });

  it('clock tolerance accepts a token that expired 10s ago when tolerance is 30', async () => {
    const token = await sign(secretBytes(SECRET), 'HS256', claims({ iat: now() - 100, exp: now() - 10 }));
    expect((await verifyWith(secretConfig({ clockToleranceSec: 30 }), token)).tenantId).toBe('acme');
    await expectRefused(secretConfig({ clockToleranceSec: 0 }), token, 'expired', '28P01');
  });
});

describe('refused tokens (28P01)', () => {
  it('expired', async () => {
    const token = await sign(secretBytes(SECRET), 'HS256', claims({ iat: now() - 600, exp: now() - 120 }));
    await expectRefused(secretConfig(), token, 'expired', '28P01');
  });

  it('nbf in the future', async () => {
    const token = await sign(secretBytes(SECRET), 'HS256', claims({ nbf: now() + 600 }));
    await expectRefused(secretConfig(), token, 'not_yet_valid', '28P01');
  });

  it('wrong secret', async () => {
    await expectRefused(
      secretConfig(),
      await sign(secretBytes(OTHER_SECRET), 'HS256', claims()),
      'bad_signature',
      '28P01',
    );
  });

  it('wrong public key', async () => {
    await expectRefused(pemConfig(rsa), await sign(otherRsa.privateKey, 'RS256', claims()), 'bad_signature', '28P01');
  });

  it('alg none', async () => {
    const token = `${b64({ alg: 'none', typ: 'JWT' })}.${b64(claims())}.`;
    await expectRefused(secretConfig(), token, 'alg_not_allowed', '28P01');
    await expectRefused(pemConfig(rsa), token, 'alg_not_allowed', '28P01');
  });

  it('HS256 signed with the RSA public key PEM as HMAC secret (key confusion)', async () => {
    const pem = rsa.publicKey.export({ type: 'spki', format: 'pem' }) as string;
    const token = await sign(secretBytes(pem), 'HS256', claims());
    await expectRefused(pemConfig(rsa), token, 'alg_not_allowed', '28P01');
    await expectRefused(config({ jwksFile }), token, 'alg_not_allowed', '28P01');
  });

  it('RS256 token against an EC key', async () => {
    await expectRefused(pemConfig(ec), await sign(rsa.privateKey, 'RS256', claims()), 'alg_not_allowed', '28P01');
  });

  it('wrong or missing issuer', async () => {
    const cfg = secretConfig({ issuer: 'https://idp.example' });
    await expectRefused(
      cfg,
      await sign(secretBytes(SECRET), 'HS256', claims({ iss: 'https://evil.example' })),
      'issuer',
      '28P01',
    );
    await expectRefused(cfg, await sign(secretBytes(SECRET), 'HS256', claims()), 'issuer', '28P01');
  });

  it('wrong audience', async () => {
    const cfg = secretConfig({ audience: 'pg-tenant-proxy' });
    await expectRefused(cfg, await sign(secretBytes(SECRET), 'HS256', claims({ aud: 'other' })), 'audience', '28P01');
    const ok = await sign(secretBytes(SECRET), 'HS256', claims({ aud: ['other', 'pg-tenant-proxy'] }));
    expect((await verifyWith(cfg, ok)).tenantId).toBe('acme');
  });

  it('missing exp', async () => {
    await expectRefused(
      secretConfig(),
      await sign(secretBytes(SECRET), 'HS256', claims({ exp: undefined })),
      'missing_exp',
      '28P01',
    );
  });

  it('unknown kid in a JWKS', async () => {
    const token = await sign(otherRsa.privateKey, 'RS256', claims(), 'rsa-unknown');
    await expectRefused(config({ jwksFile }), token, 'no_key', '28P01');
  });

  it('maxTokenAgeSec refuses long-lived tokens and tokens without iat', async () => {
    const cfg = secretConfig({ maxTokenAgeSec: 600 });
    const short = await sign(secretBytes(SECRET), 'HS256', claims({ exp: now() + 300 }));
    expect((await verifyWith(cfg, short)).tenantId).toBe('acme');
    await expectRefused(
      cfg,
      await sign(secretBytes(SECRET), 'HS256', claims({ exp: now() + 3600 })),
      'token_too_old',
      '28P01',
    );
    await expectRefused(
      cfg,
      await sign(secretBytes(SECRET), 'HS256', claims({ iat: now() - 3600 })),
      'token_too_old',
      '28P01',
    );
    await expectRefused(
      cfg,
      await sign(secretBytes(SECRET), 'HS256', claims({ iat: undefined })),
      'token_too_old',
      '28P01',
    );
  });

  it.each([
    ['empty', ''],
    ['one word', 'abc'],
    ['three tiny parts', 'a.b.c'],
    ['two parts', `${b64({ alg: 'HS256' })}.${b64(claims())}`],
    ['header not JSON', `${Buffer.from('nope').toString('base64url')}.${b64(claims())}.c2ln`],
    ['header without alg', `${b64({ typ: 'JWT' })}.${b64(claims())}.c2ln`],
    ['20 KiB', 'a'.repeat(20 * 1024)],
  ])('garbage: %s', async (_name, token) => {
    await expectRefused(secretConfig(), token, 'malformed', '28P01');
  });

  it('an unknown alg name is refused without echoing it', async () => {
    const token = `${b64({ alg: 'XX<script>' })}.${b64(claims())}.c2ln`;
    await expectRefused(secretConfig(), token, 'alg_not_allowed', '28P01', ['XX<script>']);
  });
});

describe('tenant claim (28000)', () => {
  it('missing', async () => {
    const token = await sign(secretBytes(SECRET), 'HS256', claims({ tenant_id: undefined }));
    await expectRefused(secretConfig(), token, 'missing_claim', '28000');
  });

  it('a number', async () => {
    await expectRefused(
      secretConfig(),
      await sign(secretBytes(SECRET), 'HS256', claims({ tenant_id: 42 })),
      'bad_tenant',
      '28000',
    );
  });

  it.each(['../x', 'A', 'a;drop', 'a'.repeat(49), ''])('does not match the pattern: %j', async (tenant) => {
    const token = await sign(secretBytes(SECRET), 'HS256', claims({ tenant_id: tenant }));
    await expectRefused(secretConfig(), token, 'bad_tenant', '28000', [tenant]);
  });
});

describe('algorithms and key loading', () => {
  it('auth.jwt.algorithms narrows the derived list', async () => {
    const cfg = pemConfig(rsa, { algorithms: ['RS512'] });
    expect((await verifyWith(cfg, await sign(rsa.privateKey, 'RS512', claims()))).tenantId).toBe('acme');
    await expectRefused(cfg, await sign(rsa.privateKey, 'RS256', claims()), 'alg_not_allowed', '28P01');
  });

  it('auth.jwt.algorithms cannot widen the derived list', async () => {
    await expect(createTenantTokenVerifier(pemConfig(rsa, { algorithms: ['HS256'] }))).rejects.toMatchObject({
      name: 'ConfigError',
      key: 'auth.jwt.algorithms',
    });
    await expect(createTenantTokenVerifier(secretConfig({ algorithms: ['ES256'] }))).rejects.toBeInstanceOf(
      ConfigError,
    );
  });

  it('unreadable, private or garbage key files are ConfigErrors naming the key', async () => {
    const garbage = join(dir, 'garbage.pem');
    writeFileSync(garbage, '-----BEGIN PUBLIC KEY-----\nnope\n-----END PUBLIC KEY-----\n');
    const small = join(dir, 'small.pub.pem');
    writeFileSync(
      small,
      generateKeyPairSync('rsa', { modulusLength: 1024 }).publicKey.export({ type: 'spki', format: 'pem' }),
    );
    for (const file of [join(dir, 'missing.pem'), rsa.privateFile, garbage, small]) {
      await expect(createTenantTokenVerifier(config({ publicKeyFile: file }))).rejects.toMatchObject({
        name: 'ConfigError',
        key: 'auth.jwt.publicKeyFile',
      });
    }
  });

  it('a jwksFile that is not a key set is a ConfigError', async () => {
    const bad = join(dir, 'bad-jwks.json');
    writeFileSync(bad, '{"keys": 5}');
    await expect(createTenantTokenVerifier(config({ jwksFile: bad }))).rejects.toMatchObject({
      name: 'ConfigError',
      key: 'auth.jwt.jwksFile',
    });
  });
});

describe('signDevToken', () => {
  it('round-trips with the shared secret, issuer and audience', async () => {
    const cfg = secretConfig({ issuer: 'pgtp-dev', audience: 'pgtp' });
    const token = await signDevToken(cfg, { tenant: 'acme', sub: 'dev', ttlSeconds: 60 });
    expect(decodeProtectedHeader(token).alg).toBe('HS256');
    const identity = await verifyWith(cfg, token);
    expect(identity).toMatchObject({ tenantId: 'acme', schema: 'tenant_acme', actor: 'dev' });
    expect(identity.expiresAt - now()).toBeGreaterThan(50);
  });

  it('round-trips with an EC private key', async () => {
    const cfg = pemConfig(ec, { privateKeyFile: ec.privateFile });
    const token = await signDevToken(cfg, {
      tenant: 'acme',
      ttlSeconds: 60,
      extraClaims: { tenant_id: 'evil', role: 'x' },
    });
    expect(decodeProtectedHeader(token).alg).toBe('ES256');
    expect(await verifyWith(cfg, token)).toMatchObject({ tenantId: 'acme', actor: undefined });
  });

  it('round-trips with an Ed25519 key and honours auth.jwt.algorithms', async () => {
    const cfg = pemConfig(ed, { privateKeyFile: ed.privateFile, algorithms: ['Ed25519'] });
    const token = await signDevToken(cfg, { tenant: 'acme', ttlSeconds: 60 });
    expect(decodeProtectedHeader(token).alg).toBe('Ed25519');
    expect((await verifyWith(cfg, token)).tenantId).toBe('acme');
  });

  it('refuses a tenant outside the pattern and a config without a signing key', async () => {
    await expect(signDevToken(secretConfig(), { tenant: 'Bad;', ttlSeconds: 60 })).rejects.toThrow(/tenantPattern/);
    await expect(signDevToken(pemConfig(rsa), { tenant: 'acme', ttlSeconds: 60 })).rejects.toBeInstanceOf(ConfigError);
  });
});

describe('parseDuration', () => {
  it.each([
    ['90', 90],
    ['90s', 90],
    ['15m', 900],
    ['1h', 3600],
    ['7d', 604800],
  ])('%s → %i seconds', (text, seconds) => {
    expect(parseDuration(text)).toBe(seconds);
  });

  it.each(['', 'abc', '1.5h', '-5', '0', '10w', '1h30m', 'h', '15 m'])('rejects %j', (text) => {
    expect(() => parseDuration(text)).toThrow();
  });
});

describe('several issuers (auth.issuers)', () => {
  const X_ISS = 'https://x.example.com/';
  const Y_ISS = 'https://y.example.com/';
  const Z_ISS = 'https://z.example.com/';

  function issuersConfig(issuers: Array<Record<string, unknown>>, tenancy?: Record<string, unknown>): Config {
    return validateConfig({
      upstream: { url: 'postgres://u@127.0.0.1:5432/db' },
      auth: { issuers },
      ...(tenancy && { tenancy }),
    });
  }
  const x = (tenants: unknown = ['acme']) => ({ name: 'x', issuer: X_ISS, secret: SECRET, tenants });
  const y = (tenants: unknown = { pattern: '^y_[a-z]+$' }) => ({
    name: 'y',
    issuer: Y_ISS,
    publicKeyFile: rsa.publicFile,
    tenants,
  });
  const z = (tenants: unknown = ['acme', 'zed']) => ({ name: 'z', issuer: Z_ISS, secret: OTHER_SECRET, tenants });
  const xToken = (over: JWTPayload = {}) => sign(secretBytes(SECRET), 'HS256', claims({ iss: X_ISS, ...over }));
  const yToken = (over: JWTPayload = {}) =>
    sign(rsa.privateKey, 'RS256', claims({ iss: Y_ISS, tenant_id: 'y_one', ...over }));

  it('verifies each token with the issuer its iss names, and the identity carries that issuer', async () => {
    const cfg = issuersConfig([x(), y()]);
    expect(await verifyWith(cfg, await xToken())).toMatchObject({
      tenantId: 'acme',
      issuer: 'x',
      issuerByRegistry: false,
    });
    expect(await verifyWith(cfg, await yToken())).toMatchObject({
      tenantId: 'y_one',
      issuer: 'y',
      issuerByRegistry: false,
    });
  });

  it("refuses a tenant outside the issuer's list or pattern: issuer_not_allowed, 28P01", async () => {
    const cfg = issuersConfig([x(), y()]);
    await expectRefused(cfg, await xToken({ tenant_id: 'y_one' }), 'issuer_not_allowed', '28P01', ['y_one']);
    await expectRefused(cfg, await yToken({ tenant_id: 'acme' }), 'issuer_not_allowed', '28P01', ['acme']);
    await expectRefused(cfg, await yToken({ tenant_id: 'yy_one' }), 'issuer_not_allowed', '28P01');
  });

  it("refuses a token claiming another issuer's iss: that issuer's key does not verify it", async () => {
    const cfg = issuersConfig([x(), y(), z()]);
    // Signed with X's secret, claiming Y (RSA): HS256 is not even an algorithm Y's key allows.
    await expectRefused(
      cfg,
      await sign(secretBytes(SECRET), 'HS256', claims({ iss: Y_ISS, tenant_id: 'y_one' })),
      'alg_not_allowed',
      '28P01',
    );
    // Signed with X's secret, claiming Z (another secret): the signature fails.
    await expectRefused(
      cfg,
      await sign(secretBytes(SECRET), 'HS256', claims({ iss: Z_ISS, tenant_id: 'zed' })),
      'bad_signature',
      '28P01',
    );
    // Signed with Y's private key, claiming X: RS256 is not X's.
    await expectRefused(cfg, await sign(rsa.privateKey, 'RS256', claims({ iss: X_ISS })), 'alg_not_allowed', '28P01');
  });

  it('refuses an unknown or missing iss like a bad signature: unknown_issuer, 28P01, without echoing it', async () => {
    const cfg = issuersConfig([x(), y()]);
    await expectRefused(cfg, await xToken({ iss: 'https://evil.example.com/' }), 'unknown_issuer', '28P01', ['evil']);
    await expectRefused(cfg, await sign(secretBytes(SECRET), 'HS256', claims()), 'unknown_issuer', '28P01');
    await expectRefused(cfg, `${b64({ alg: 'HS256' })}.${b64('not an object')}.sig`, 'malformed', '28P01');
    // An issuer's own options still apply: audience, tenant claim.
    const strict = issuersConfig([{ ...x(), audience: 'proxy', tenantClaim: 'org' }]);
    await expectRefused(strict, await xToken({ org: 'acme' }), 'audience', '28P01');
    expect((await verifyWith(strict, await xToken({ org: 'acme', aud: 'proxy' }))).tenantId).toBe('acme');
  });

  it('leaves registry-mapped tenants to admission, and verifies a JWKS issuer', async () => {
    const cfg = issuersConfig([x('registry'), { name: 'j', issuer: Y_ISS, jwksFile, tenants: 'registry' }], {
      registry: { enabled: true },
    });
    expect(await verifyWith(cfg, await xToken({ tenant_id: 'anyone' }))).toMatchObject({
      tenantId: 'anyone',
      issuer: 'x',
      issuerByRegistry: true,
    });
    expect(await verifyWith(cfg, await sign(ec.privateKey, 'ES256', claims({ iss: Y_ISS }), 'ec-1'))).toMatchObject({
      issuer: 'j',
    });
  });

  it('validates the list: exactly one of jwt and issuers, unique names and iss, registry only with the registry, anchored patterns', () => {
    const keyOf = (fn: () => unknown): string | undefined => {
      try {
        fn();
      } catch (err) {
        return (err as ConfigError).key ?? 'no key';
      }
      return undefined;
    };
    const base = { upstream: { url: 'postgres://u@127.0.0.1:5432/db' } };
    expect(keyOf(() => validateConfig({ ...base, auth: { jwt: { secret: SECRET }, issuers: [x()] } }))).toBe('auth');
    expect(keyOf(() => validateConfig({ ...base, auth: {} }))).toBe('auth');
    expect(keyOf(() => validateConfig({ ...base, auth: { issuers: [] } }))).toBe('auth.issuers');
    expect(keyOf(() => validateConfig({ ...base, auth: { issuers: [x(), { ...z(), name: 'x' }] } }))).toBe(
      'auth.issuers',
    );
    expect(keyOf(() => validateConfig({ ...base, auth: { issuers: [x(), { ...z(), issuer: X_ISS }] } }))).toBe(
      'auth.issuers',
    );
    expect(keyOf(() => validateConfig({ ...base, auth: { issuers: [x('registry')] } }))).toBe('auth.issuers');
    expect(keyOf(() => validateConfig({ ...base, auth: { issuers: [x({ pattern: 'acme' })] } }))).toMatch(
      /^auth\.issuers\.0\.tenants/,
    );
    expect(keyOf(() => validateConfig({ ...base, auth: { issuers: [{ ...x(), jwksFile }] } }))).toBe('auth.issuers.0');
    expect(keyOf(() => validateConfig({ ...base, auth: { issuers: [{ ...x(), tenants: undefined }] } }))).toMatch(
      /^auth\.issuers\.0/,
    );
    expect(keyOf(() => validateConfig({ ...base, auth: { issuers: [x(), y()] } }))).toBeUndefined();
  });

  it('takes the whole list from PGTP_AUTH_ISSUERS as JSON', () => {
    const leaf = configKeys().find((k) => k.key === 'auth.issuers');
    expect(leaf).toEqual({ key: 'auth.issuers', kind: 'json' });
    const loaded = loadConfig(undefined, {
      PGTP_UPSTREAM_URL: 'postgres://p@db:5432/app',
      PGTP_AUTH_ISSUERS: JSON.stringify([x(), y()]),
    });
    expect(loaded.auth.issuers?.map((i) => i.name)).toEqual(['x', 'y']);
    expect(loaded.auth.jwt).toBeUndefined();
    expect(() =>
      loadConfig(undefined, { PGTP_UPSTREAM_URL: 'postgres://p@db:5432/app', PGTP_AUTH_ISSUERS: 'x,y' }),
    ).toThrow(/JSON list/);
  });

  it('names the issuer in a key error', async () => {
    const cfg = issuersConfig([x(), { ...y(), algorithms: ['ES256'] }]);
    await expect(createTenantTokenVerifier(cfg)).rejects.toThrow(/^auth\.issuers\.y\.algorithms: ES256 cannot be used/);
  });

  it('mints a development token as a secret issuer, which that issuer verifies', async () => {
    const cfg = issuersConfig([x(['acme']), z()]);
    expect(await verifyWith(cfg, await signDevToken(cfg, { tenant: 'acme', ttlSeconds: 60 }))).toMatchObject({
      issuer: 'x',
    });
    expect(
      await verifyWith(cfg, await signDevToken(cfg, { tenant: 'zed', ttlSeconds: 60, issuer: 'z' })),
    ).toMatchObject({ issuer: 'z' });
    await expect(signDevToken(issuersConfig([y()]), { tenant: 'y_a', ttlSeconds: 60 })).rejects.toThrow(
      /issuer with a secret/,
    );
  });
});
