import { generateKeyPairSync } from 'node:crypto';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { SignJWT } from 'jose';
import pg from 'pg';
import { afterEach, describe, expect, it } from 'vitest';
import { startTestProxy, sqlstateOf, TEST_SECRET, type TestProxy } from '../support/proxy.js';

let tp: TestProxy;
afterEach(async () => {
  await tp?.close();
});

const secret = new TextEncoder().encode(TEST_SECRET);
const now = () => Math.floor(Date.now() / 1000);

function hs(claims: Record<string, unknown>, key: Uint8Array = secret, alg = 'HS256'): Promise<string> {
  return new SignJWT(claims).setProtectedHeader({ alg }).sign(key);
}

function b64url(value: object): string {
  return Buffer.from(JSON.stringify(value)).toString('base64url');
}

async function loginCode(password: string): Promise<string> {
  const client = new pg.Client({ ...(await tp.clientConfig('a')), password });
  client.on('error', () => undefined);
  return sqlstateOf(async () => {
    await client.connect();
    await client.end();
  });
}

function expectNoBackendTouched(): void {
  expect(tp.proxy.pool.stats()).toEqual({ idle: 0, parked: 0, active: 0, resetting: 0, connecting: 0, waiting: 0 });
}

describe('tenant token authentication', () => {
  it('accepts a valid token as the password, including a 700-character one', async () => {
    tp = await startTestProxy();
    const long = await tp.token('a', { extraClaims: { pad: 'x'.repeat(600) } });
    expect(long.length).toBeGreaterThanOrEqual(700);
    const client = await tp.connect('a', { password: long });
    expect((await client.query('SELECT current_schema() AS s')).rows[0].s).toBe('tenant_a');
  });

  it('accepts the token as a startup parameter instead of a password', async () => {
    tp = await startTestProxy();
    const token = await tp.token('b');
    const client = await tp.connect('b', { password: undefined, options: `-c tenant_token=${token}` });
    expect((await client.query('SELECT count(*)::int AS n FROM items')).rows[0].n).toBe(3);
  });

  it('refuses every bad token with the right SQLSTATE and touches no backend', async () => {
    tp = await startTestProxy();
    const { publicKey, privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
    const cases: Array<[string, Promise<string>, string]> = [
      ['expired', hs({ tenant_id: 'a', exp: now() - 3600 }), '28P01'],
      ['not yet valid', hs({ tenant_id: 'a', exp: now() + 3600, nbf: now() + 1800 }), '28P01'],
      ['wrong secret', hs({ tenant_id: 'a', exp: now() + 60 }, new TextEncoder().encode('x'.repeat(40))), '28P01'],
      [
        'RS256 where HMAC is configured',
        new SignJWT({ tenant_id: 'a', exp: now() + 60 }).setProtectedHeader({ alg: 'RS256' }).sign(privateKey),
        '28P01',
      ],
      [
        'alg none',
        Promise.resolve(`${b64url({ alg: 'none', typ: 'JWT' })}.${b64url({ tenant_id: 'a', exp: now() + 60 })}.`),
        '28P01',
      ],
      ['missing exp', hs({ tenant_id: 'a' }), '28P01'],
      ['missing tenant claim', hs({ exp: now() + 60 }), '28000'],
      ['numeric tenant claim', hs({ tenant_id: 7, exp: now() + 60 }), '28000'],
      ['malformed tenant claim', hs({ tenant_id: 'a;drop', exp: now() + 60 }), '28000'],
      ['path-like tenant claim', hs({ tenant_id: '../b', exp: now() + 60 }), '28000'],
      ['quote in tenant claim', hs({ tenant_id: 'a"b', exp: now() + 60 }), '28000'],
      ['garbage', Promise.resolve('not-a-token'), '28P01'],
      ['empty password', Promise.resolve(''), '28P01'],
    ];
    void publicKey;
    for (const [name, token, code] of cases) {
      expect(await loginCode(await token), name).toBe(code);
    }
    expectNoBackendTouched();
  });

  it('refuses a tenant whose schema does not exist', async () => {
    tp = await startTestProxy();
    expect(await loginCode(await tp.token('nosuchtenant'))).toBe('28000');
    expectNoBackendTouched();
  });

  it('checks issuer and audience when configured', async () => {
    tp = await startTestProxy({
      auth: { jwt: { secret: TEST_SECRET, issuer: 'https://issuer.test', audience: 'pgtp' } },
    });
    const base = { tenant_id: 'a', exp: now() + 60 };
    expect(await loginCode(await hs({ ...base, iss: 'https://evil.test', aud: 'pgtp' }))).toBe('28P01');
    expect(await loginCode(await hs({ ...base, iss: 'https://issuer.test', aud: 'other' }))).toBe('28P01');
    expect(await loginCode(await hs({ ...base }))).toBe('28P01');
    const ok = await tp.connect('a');
    expect((await ok.query('SELECT 1 AS one')).rows[0].one).toBe(1);
  });

  it('refuses an HS256 token signed with the configured RSA public key (algorithm confusion)', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'pgtp-auth-'));
    const { publicKey, privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
    const pem = publicKey.export({ type: 'spki', format: 'pem' }).toString();
    writeFileSync(join(dir, 'pub.pem'), pem);
    writeFileSync(join(dir, 'priv.pem'), privateKey.export({ type: 'pkcs8', format: 'pem' }));
    tp = await startTestProxy({
      auth: { jwt: { secret: undefined, publicKeyFile: join(dir, 'pub.pem'), privateKeyFile: join(dir, 'priv.pem') } },
    });
    const forged = await hs({ tenant_id: 'a', exp: now() + 60 }, new TextEncoder().encode(pem));
    expect(await loginCode(forged)).toBe('28P01');
    expectNoBackendTouched();
    // A genuine RS256 token works.
    const client = await tp.connect('a');
    expect((await client.query('SELECT current_schema() AS s')).rows[0].s).toBe('tenant_a');
  });

  it('never echoes the token in the error message', async () => {
    tp = await startTestProxy();
    const token = await hs({ tenant_id: 'a', exp: now() - 10_000 });
    const client = new pg.Client({ ...(await tp.clientConfig('a')), password: token });
    client.on('error', () => undefined);
    const err = await client.connect().then(
      () => null,
      (e: Error) => e,
    );
    expect(err).not.toBeNull();
    expect(err!.message).not.toContain(token.split('.')[1]!);
    expect(err!.message).not.toContain(token.split('.')[2]!);
  });
});
