import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { promisify } from 'node:util';
import pg from 'pg';
import { afterEach, describe, expect, inject, it } from 'vitest';
import { Writer } from '../../src/protocol/writer.js';
import { selfSignedCert } from '../support/certs.js';
import { RawClient } from '../support/raw-client.js';
import { sqlstateOf, startTestProxy, type TestProxy } from '../support/proxy.js';

const run = promisify(execFile);
let tp: TestProxy;
afterEach(async () => {
  await tp?.close();
});

describe('client-facing TLS', () => {
  it('terminates TLS for node-postgres and psql, verifying the certificate', async () => {
    const { cert, key } = selfSignedCert();
    tp = await startTestProxy({ tls: { mode: 'require', cert, key } });
    const client = await tp.connect('a', { ssl: { ca: readFileSync(cert, 'utf8'), servername: 'localhost' } });
    expect((await client.query('SELECT current_schema() AS s')).rows[0].s).toBe('tenant_a');
    const { stdout } = await run('psql', ['-X', '-At', '-c', 'SELECT count(*) FROM items'], {
      env: {
        ...process.env,
        PGHOST: 'localhost',
        PGHOSTADDR: '127.0.0.1',
        PGPORT: String(tp.port),
        PGUSER: 'app',
        PGDATABASE: inject('pg').database,
        PGPASSWORD: await tp.token('b'),
        PGSSLMODE: 'verify-full',
        PGSSLROOTCERT: cert,
      },
    });
    expect(stdout.trim()).toBe('3');
  });

  it('refuses plaintext clients when TLS is required, before asking for a token', async () => {
    const { cert, key } = selfSignedCert();
    tp = await startTestProxy({ tls: { mode: 'require', cert, key } });
    expect(await sqlstateOf(() => tp.connect('a', { ssl: false }))).toBe('28000');
    expect(tp.proxy.pool.stats().idle).toBe(0);
  });

  it('refuses bytes pipelined behind an SSLRequest (CVE-2021-23214 class)', async () => {
    const { cert, key } = selfSignedCert();
    tp = await startTestProxy({ tls: { mode: 'allow', cert, key } });
    const raw = await RawClient.connect(tp.port);
    const sslRequest = new Writer().begin().int32(80877103).end().flush();
    const startup = new Writer().begin().int32(196608).cstring('user').cstring('app').int8(0).end().flush();
    raw.write(Buffer.concat([sslRequest, startup]));
    expect(await raw.errorCode()).toBe('08P01');
    await raw.waitClosed();
  });

  it('serves plaintext loopback clients in allow mode alongside TLS ones', async () => {
    const { cert, key } = selfSignedCert();
    tp = await startTestProxy({ tls: { mode: 'allow', cert, key } });
    const plain = await tp.connect('a', { ssl: false });
    const secure = await tp.connect('b', { ssl: { rejectUnauthorized: false } });
    expect((await plain.query('SELECT count(*)::int AS n FROM items')).rows[0].n).toBe(2);
    expect((await secure.query('SELECT count(*)::int AS n FROM items')).rows[0].n).toBe(3);
  });

  it('answers N to SSLRequest when no certificate is configured, so sslmode=prefer falls back', async () => {
    tp = await startTestProxy();
    const client = new pg.Client({ ...(await tp.clientConfig('a')), ssl: { rejectUnauthorized: false } });
    client.on('error', () => undefined);
    // node-postgres treats 'N' as "server does not support SSL" and fails when ssl was demanded.
    await expect(client.connect()).rejects.toThrow(/does not support SSL/);
  });
});
