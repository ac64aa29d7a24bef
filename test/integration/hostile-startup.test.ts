import { afterEach, describe, expect, it } from 'vitest';
import { Writer } from '../../src/protocol/writer.js';
import { RawClient } from '../support/raw-client.js';
import { startTestProxy, type TestProxy } from '../support/proxy.js';

let tp: TestProxy;
afterEach(async () => {
  await tp?.close();
});

async function stillServes(): Promise<void> {
  const client = await tp.connect('a');
  expect((await client.query('SELECT count(*)::int AS n FROM items')).rows[0].n).toBe(2);
  await client.end();
}

describe('hostile startup input', () => {
  it('closes on an oversized startup length without reading it', async () => {
    tp = await startTestProxy();
    const raw = await RawClient.connect(tp.port);
    raw.write(Buffer.from([0x7f, 0xff, 0xff, 0xff, 0, 3, 0, 0]));
    expect(await raw.errorCode()).toBe('08P01');
    await raw.waitClosed();
    await stillServes();
  });

  it('answers garbage bytes with a protocol violation', async () => {
    tp = await startTestProxy();
    const raw = await RawClient.connect(tp.port);
    raw.write(Buffer.from('GET / HTTP/1.1\r\nHost: x\r\n\r\n'));
    expect(await raw.errorCode()).toBe('08P01');
    await raw.waitClosed();
    await stillServes();
  });

  it('refuses unknown protocol versions and unterminated parameters', async () => {
    tp = await startTestProxy();
    const v2 = await RawClient.connect(tp.port);
    v2.startup({ user: 'app' }, 0x00020000);
    expect(await v2.errorCode()).toBe('08P01');
    const unterminated = await RawClient.connect(tp.port);
    unterminated.write(new Writer().begin().int32(196608).cstring('user').bytes(Buffer.from('app')).end().flush());
    expect(await unterminated.errorCode()).toBe('08P01');
    const tooShort = await RawClient.connect(tp.port);
    tooShort.write(Buffer.from([0, 0, 0, 4]));
    expect(await tooShort.errorCode()).toBe('08P01');
    await stillServes();
  });

  it('refuses search_path, role and session_authorization in the startup packet before authentication', async () => {
    tp = await startTestProxy();
    const token = await tp.token('a');
    for (const params of [
      { user: 'app', database: 'pgtp_test', search_path: 'tenant_b', tenant_token: token } as Record<string, string>,
      { user: 'app', database: 'pgtp_test', options: '-c search_path=tenant_b', tenant_token: token },
      { user: 'app', database: 'pgtp_test', options: '-c role=postgres', tenant_token: token },
      { user: 'app', database: 'pgtp_test', options: '-c session_authorization=postgres', tenant_token: token },
    ]) {
      const raw = await RawClient.connect(tp.port);
      raw.startup(params);
      expect(await raw.errorCode(), JSON.stringify(params.options ?? params)).toBe('42501');
      await raw.waitClosed();
    }
    expect(tp.proxy.pool.stats().idle + tp.proxy.pool.stats().active).toBe(0);
  });

  it('declines GSSENCRequest and SSLRequest without a certificate, then continues in plaintext', async () => {
    tp = await startTestProxy();
    const raw = await RawClient.connect(tp.port);
    raw.expectSingleByte();
    raw.write(new Writer().begin().int32(80877104).end().flush());
    expect((await raw.waitFor('N'))?.code).toBe('N');
    raw.expectSingleByte();
    raw.write(new Writer().begin().int32(80877103).end().flush());
    await new Promise((r) => setTimeout(r, 50));
    expect(raw.messages.map((m) => m.code)).toEqual(['N', 'N']);
    raw.startup({ user: 'app', database: 'pgtp_test' });
    expect((await raw.waitFor('R'))?.body.readInt32BE(0)).toBe(3);
    raw.password(await tp.token('a'));
    expect(await raw.waitFor('Z')).toBeDefined();
    raw.close();
  });

  it('times out a client that stalls mid-handshake while others are served', async () => {
    tp = await startTestProxy({ listen: { handshakeTimeoutMs: 300 } });
    const stalled = await RawClient.connect(tp.port);
    stalled.write(Buffer.from([0, 0, 0, 40, 0, 3])); // half a startup packet, then silence
    const stalledAfterPassword = await RawClient.connect(tp.port);
    stalledAfterPassword.startup({ user: 'app', database: 'pgtp_test' });
    await stillServes();
    expect(await stalled.errorCode(2000)).toBe('08P01');
    await stalled.waitClosed();
    expect(await stalledAfterPassword.errorCode(2000)).toBe('08P01');
    await stalledAfterPassword.waitClosed();
  });

  it('refuses a wrong database name and a missing user', async () => {
    tp = await startTestProxy();
    const wrongDb = await RawClient.connect(tp.port);
    wrongDb.startup({ user: 'app', database: 'postgres' });
    expect(await wrongDb.errorCode()).toBe('3D000');
    const noUser = await RawClient.connect(tp.port);
    noUser.startup({ database: 'pgtp_test' });
    expect(await noUser.errorCode()).toBe('28000');
  });

  it('survives malformed messages after login', async () => {
    tp = await startTestProxy();
    const raw = await RawClient.connect(tp.port);
    raw.startup({ user: 'app', database: 'pgtp_test', tenant_token: await tp.token('a') });
    await raw.waitFor('Z');
    raw.write(Buffer.from([0x51, 0xff, 0xff, 0xff, 0xff])); // Query claiming 4 GB
    expect(await raw.errorCode()).toBe('08P01');
    await raw.waitClosed();
    const unknownType = await RawClient.connect(tp.port);
    unknownType.startup({ user: 'app', database: 'pgtp_test', tenant_token: await tp.token('a') });
    await unknownType.waitFor('Z');
    unknownType.write(Buffer.from([0x01, 0, 0, 0, 4]));
    expect(await unknownType.errorCode()).toBe('08P01');
    await stillServes();
  });
});
