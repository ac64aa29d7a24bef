// What a driver sees through the proxy is what PostgreSQL would say: each difference issue 14 found, compared with a
// direct connection where one can be made.
import pg from 'pg';
import { afterEach, describe, expect, inject, it } from 'vitest';
import { Writer } from '../../src/protocol/writer.js';
import { adminClient } from '../support/postgres.js';
import { sqlstateOf, startTestProxy, type TestProxy } from '../support/proxy.js';
import { RawClient } from '../support/raw-client.js';

let tp: TestProxy;
afterEach(async () => {
  await tp?.close();
});

/** A direct connection to PostgreSQL as the proxy's own role: what the proxy's answers are compared with. */
async function direct(extra: Partial<pg.ClientConfig> = {}): Promise<pg.Client> {
  const client = new pg.Client({ connectionString: inject('pg').upstreamUrl, ...extra });
  client.on('error', () => undefined);
  await client.connect();
  return client;
}

async function rawLogin(params: Record<string, string> = {}): Promise<RawClient> {
  const raw = await RawClient.connect(tp.port);
  raw.startup({ user: 'app', database: inject('pg').database, tenant_token: await tp.token('a'), ...params });
  await raw.waitFor('Z');
  return raw;
}

/** Sends `frames` and returns the codes of the replies up to the next ReadyForQuery, with its status after a '/'. */
async function exchange(raw: RawClient, ...frames: Buffer[]): Promise<string> {
  const from = raw.messages.length;
  raw.write(Buffer.concat(frames));
  const deadline = Date.now() + 5000;
  for (;;) {
    const replies = raw.messages.slice(from);
    const ready = replies.findIndex((m) => m.code === 'Z');
    if (ready >= 0) return `${replies.slice(0, ready + 1).map((m) => m.code).join('')}/${String.fromCharCode(replies[ready]!.body[0]!)}`;
    if (raw.closed || Date.now() > deadline) throw new Error(`no ReadyForQuery, got ${replies.map((m) => m.code).join('')}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

const frame = {
  query: (sql: string) => new Writer().begin(0x51).cstring(sql).end().flush(),
  parse: (name: string, sql: string) => new Writer().begin(0x50).cstring(name).cstring(sql).int16(0).end().flush(),
  bind: (statement: string) => new Writer().begin(0x42).cstring('').cstring(statement).int16(0).int16(0).int16(0).end().flush(),
  describePortal: () => new Writer().begin(0x44).int8(0x50).cstring('').end().flush(),
  execute: () => new Writer().begin(0x45).cstring('').int32(0).end().flush(),
  sync: () => new Writer().begin(0x53).end().flush(),
};

/** Outcome of each statement in turn: the command and rows, or the SQLSTATE of its error. */
async function outcomes(client: pg.Client, statements: Array<string | pg.QueryConfig>): Promise<unknown[]> {
  const out: unknown[] = [];
  for (const statement of statements) {
    try {
      const result = await client.query(statement);
      out.push({ command: result.command ?? null, rows: result.rows });
    } catch (err) {
      out.push((err as { code?: string }).code);
    }
  }
  return out;
}

describe('driver parity with PostgreSQL', () => {
  it('answers an empty query (blank, only a comment, only semicolons) with EmptyQueryResponse, not an error', async () => {
    tp = await startTestProxy();
    const raw = await rawLogin();
    for (const empty of ['', '   ', '-- x', '/* */', ';', ' ; ;']) expect(await exchange(raw, frame.query(empty)), JSON.stringify(empty)).toBe('IZ/I');
    // Inside a transaction, and a failed one, the status byte is the server's.
    expect(await exchange(raw, frame.query('BEGIN'))).toBe('CZ/T');
    expect(await exchange(raw, frame.query(''))).toBe('IZ/T');
    expect(await exchange(raw, frame.query('SELECT 1/0'))).toBe('EZ/E');
    expect(await exchange(raw, frame.query('-- x'))).toBe('IZ/E');
    expect(await exchange(raw, frame.query('ROLLBACK'))).toBe('CZ/I');
    // Extended protocol: Parse, Bind, Describe and Execute of an empty statement, unnamed and named.
    expect(await exchange(raw, frame.parse('', ''), frame.bind(''), frame.describePortal(), frame.execute(), frame.sync())).toBe('12nIZ/I');
    expect(await exchange(raw, frame.parse('empty_named', '/* */'), frame.bind('empty_named'), frame.execute(), frame.sync())).toBe('12IZ/I');
    raw.close();

    // Drivers see what a direct connection gives them.
    const script: Array<string | pg.QueryConfig> = ['', '-- only a comment', { text: '', values: [] }, 'BEGIN', '', 'SELECT 1/0', '', 'ROLLBACK'];
    const viaProxy = await tp.connect('a');
    const directly = await direct();
    try {
      expect(await outcomes(viaProxy, script)).toEqual(await outcomes(directly, script));
    } finally {
      await directly.end();
    }
  });
});
