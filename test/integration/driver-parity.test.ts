// What a driver sees through the proxy is what PostgreSQL would say: each difference issue 14 found, compared with a
// direct connection where one can be made.
import pg from 'pg';
import postgres from 'postgres';
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
    if (ready >= 0)
      return `${replies
        .slice(0, ready + 1)
        .map((m) => m.code)
        .join('')}/${String.fromCharCode(replies[ready]!.body[0]!)}`;
    if (raw.closed || Date.now() > deadline)
      throw new Error(`no ReadyForQuery, got ${replies.map((m) => m.code).join('')}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

const frame = {
  query: (sql: string) => new Writer().begin(0x51).cstring(sql).end().flush(),
  parse: (name: string, sql: string) => new Writer().begin(0x50).cstring(name).cstring(sql).int16(0).end().flush(),
  bind: (statement: string) =>
    new Writer().begin(0x42).cstring('').cstring(statement).int16(0).int16(0).int16(0).end().flush(),
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
    for (const empty of ['', '   ', '-- x', '/* */', ';', ' ; ;'])
      expect(await exchange(raw, frame.query(empty)), JSON.stringify(empty)).toBe('IZ/I');
    // Inside a transaction, and a failed one, the status byte is the server's.
    expect(await exchange(raw, frame.query('BEGIN'))).toBe('CZ/T');
    expect(await exchange(raw, frame.query(''))).toBe('IZ/T');
    expect(await exchange(raw, frame.query('SELECT 1/0'))).toBe('EZ/E');
    expect(await exchange(raw, frame.query('-- x'))).toBe('IZ/E');
    expect(await exchange(raw, frame.query('ROLLBACK'))).toBe('CZ/I');
    // Extended protocol: Parse, Bind, Describe and Execute of an empty statement, unnamed and named.
    expect(
      await exchange(raw, frame.parse('', ''), frame.bind(''), frame.describePortal(), frame.execute(), frame.sync()),
    ).toBe('12nIZ/I');
    expect(
      await exchange(
        raw,
        frame.parse('empty_named', '/* */'),
        frame.bind('empty_named'),
        frame.execute(),
        frame.sync(),
      ),
    ).toBe('12IZ/I');
    raw.close();

    // Drivers see what a direct connection gives them.
    const script: Array<string | pg.QueryConfig> = [
      '',
      '-- only a comment',
      { text: '', values: [] },
      'BEGIN',
      '',
      'SELECT 1/0',
      '',
      'ROLLBACK',
    ];
    const viaProxy = await tp.connect('a');
    const directly = await direct();
    try {
      expect(await outcomes(viaProxy, script)).toEqual(await outcomes(directly, script));
    } finally {
      await directly.end();
    }
  });

  it("shows a client that set no application_name its own empty one, never the proxy's, which only its idle servers show", async () => {
    tp = await startTestProxy({ upstream: { poolSize: 1 } });
    const told: string[] = [];
    const unnamed = new pg.Client(await tp.clientConfig('a'));
    (unnamed as unknown as { connection: NodeJS.EventEmitter }).connection.on(
      'parameterStatus',
      (m: { parameterName: string; parameterValue: string }) => {
        if (m.parameterName === 'application_name') told.push(m.parameterValue);
      },
    );
    unnamed.on('error', () => undefined);
    await unnamed.connect();
    const named = await tp.connect('b', { application_name: 'other-app' });
    const admin = await adminClient();
    const serverName = async (pid: number): Promise<string> =>
      (await admin.query('SELECT application_name FROM pg_catalog.pg_stat_activity WHERE pid = $1', [pid])).rows[0]
        ?.application_name;
    try {
      // The one server goes back and forth between the two, reset in between, renamed and RESET by the other client.
      for (const [between, expected] of [
        ['SELECT 1', 'other-app'],
        ["SET application_name = 'renamed'", 'renamed'],
        ['RESET application_name', 'other-app'],
      ]) {
        await unnamed.query('BEGIN');
        const { rows } = await unnamed.query('SELECT current_setting($1) AS name, pg_backend_pid() AS pid', [
          'application_name',
        ]);
        expect(rows[0].name).toBe('');
        // pg_stat_activity shows the pinned server as PostgreSQL would show the client's own connection.
        expect(await serverName(rows[0].pid)).toBe('');
        await unnamed.query('COMMIT');
        await named.query(between!);
        expect((await named.query('SHOW application_name')).rows[0].application_name).toBe(expected);
      }
      // RESET lands on the empty name, inside the transaction too (a server's reset value is its login's, empty).
      await unnamed.query('BEGIN');
      await unnamed.query('RESET application_name');
      expect((await unnamed.query('SHOW application_name')).rows[0].application_name).toBe('');
      await unnamed.query('COMMIT');
      // Handed straight from one client to the other (DISCARD ALL pipelined with the pin), both ways.
      await unnamed.query('BEGIN');
      const namedWaits = named.query('SHOW application_name');
      await new Promise((r) => setTimeout(r, 50));
      await unnamed.query('COMMIT');
      const unnamedWaits = unnamed.query('SHOW application_name');
      expect((await namedWaits).rows[0].application_name).toBe('other-app');
      expect((await unnamedWaits).rows[0].application_name).toBe('');
      expect((await unnamed.query('SHOW application_name')).rows[0].application_name).toBe('');
      expect(told).toEqual(['']);
      const pid = (await unnamed.query('SELECT pg_backend_pid() AS pid')).rows[0].pid as number;
      await unnamed.end();
      await named.end();
      // Once reset, an idle server is the proxy's again.
      for (let i = 0; i < 100 && (await serverName(pid)) !== 'pg-tenant-proxy'; i++)
        await new Promise((r) => setTimeout(r, 20));
      expect(await serverName(pid)).toBe('pg-tenant-proxy');
    } finally {
      await admin.end();
    }
  });

  it('applies default_transaction_isolation and any other setting PostgreSQL takes at startup, like a SET that follows the client', async () => {
    tp = await startTestProxy({ upstream: { poolSize: 1 } });
    const options = '-c default_transaction_isolation=serializable -c work_mem=8MB -c app.region=eu';
    const viaProxy = await tp.connect('a', { options });
    const other = await tp.connect('b');
    const directly = await direct({ options });
    const script = [
      "SELECT current_setting('default_transaction_isolation') AS d, current_setting('work_mem') AS w, current_setting('app.region') AS r",
      'BEGIN',
      "SELECT current_setting('transaction_isolation') AS t",
      'COMMIT',
      "SET default_transaction_isolation = 'repeatable read'",
      'SHOW default_transaction_isolation',
      'RESET default_transaction_isolation',
      'SHOW default_transaction_isolation',
      "SET app.region = 'us'",
      "SELECT current_setting('app.region') AS r",
      'RESET app.region',
      "SELECT current_setting('app.region') AS r, current_setting('work_mem') AS w",
    ];
    try {
      const expected = await outcomes(directly, script);
      expect(expected[0]).toEqual({ command: 'SELECT', rows: [{ d: 'serializable', w: '8MB', r: 'eu' }] });
      // The other client takes the one server between each statement: each runs on a server that was reset.
      const seen: unknown[] = [];
      let inTransaction = false;
      for (const statement of script) {
        seen.push(...(await outcomes(viaProxy, [statement])));
        inTransaction = statement === 'BEGIN' || (inTransaction && statement !== 'COMMIT');
        if (!inTransaction) await other.query('SELECT 1');
      }
      expect(seen).toEqual(expected);
      expect(
        (
          await other.query(
            "SELECT current_setting('default_transaction_isolation') AS d, current_setting('app.region', true) AS r",
          )
        ).rows[0],
      ).toEqual({
        d: 'read committed',
        r: '',
      });
    } finally {
      await directly.end();
    }

    // As startup parameters of their own (postgres.js sends its `connection` entries so), a parameter winning over options.
    const sql = postgres({
      host: '127.0.0.1',
      port: tp.port,
      user: 'app',
      database: inject('pg').database,
      password: await tp.token('a'),
      max: 1,
      connection: {
        default_transaction_isolation: 'repeatable read',
        options: '-c default_transaction_isolation=serializable',
        DateStyle: 'German',
      },
    });
    try {
      expect(
        (await sql`SELECT current_setting('transaction_isolation') AS t, current_setting('DateStyle') AS s`)[0],
      ).toEqual({ t: 'repeatable read', s: 'German, DMY' });
    } finally {
      await sql.end();
    }
  });

  it("refuses an unknown setting or an invalid value at login with PostgreSQL's own error", async () => {
    tp = await startTestProxy();
    for (const options of [
      '-c no_such_setting=1',
      '-c default_transaction_isolation=bogus',
      '-c work_mem=-1',
      '-c work_mem',
      '--work-mem',
    ]) {
      const expected = await sqlstateOf(() => direct({ options }));
      expect(await sqlstateOf(() => tp.connect('a', { options })), options).toBe(expected);
    }
    expect(tp.proxy.pool.stats().idle + tp.proxy.pool.stats().active).toBe(0);
  });

  it('refuses at startup what the guard refuses as SET, and keeps the pin and lexer refusals', async () => {
    tp = await startTestProxy();
    const refused: Array<[string, string]> = [
      ['backslash_quote=on', '42501'],
      ['search_path=tenant_b', '42501'],
      ['role=postgres', '42501'],
      ['session_authorization=postgres', '42501'],
      ['default_transaction_read_only=on', '42501'],
      ['standard_conforming_strings=off', '0A000'],
      ['client_encoding=SJIS', '0A000'],
      // PostgreSQL's aliases of the client-only encodings (SJIS, GBK, UHC, BIG5): a denylist once let them through.
      ['client_encoding=windows932', '0A000'],
      ['client_encoding=windows936', '0A000'],
      ['client_encoding=windows949', '0A000'],
      ['client_encoding=windows950', '0A000'],
      // Judged as the SET it becomes: a value naming another tenant's object, whether or not the object exists.
      ['default_text_search_config=tenant_b.english', '42501'],
      ['default_text_search_config=tenant_b.no_such_config', '42501'],
      // Validated as the pin applies it (SET … TO 'literal'), not as set_config would read it: otherwise the login
      // passes and every pin of the client fails, each taking a pooled server down with it.
      ['temp_tablespaces=pg_default,pg_default', '42704'],
    ];
    for (const [setting, code] of refused) {
      expect(await sqlstateOf(() => tp.connect('a', { options: `-c ${setting}` })), setting).toBe(code);
      const [name, value] = setting.split('=') as [string, string];
      const raw = await RawClient.connect(tp.port);
      raw.startup({ user: 'app', database: inject('pg').database, tenant_token: await tp.token('a'), [name]: value });
      expect(await raw.errorCode(), `${setting} as a parameter`).toBe(code);
      await raw.waitClosed();
    }
    const client = await tp.connect('a');
    for (const statement of [
      'SET backslash_quote = on',
      'SET standard_conforming_strings = off',
      "SET client_encoding = 'SJIS'",
      "SET client_encoding = 'windows932'",
      "SELECT set_config('client_encoding', 'Windows-936', false)",
      'SET search_path = tenant_b',
    ]) {
      expect(await sqlstateOf(() => client.query(statement)), statement).toBe('42501');
    }
    expect((await client.query('SHOW standard_conforming_strings')).rows[0].standard_conforming_strings).toBe('on');
  });

  it('closes silently on a client that leaves before finishing its startup packet, its Terminate read as a length', async () => {
    tp = await startTestProxy();
    const abandoned = async (): Promise<number> =>
      Number(/^pgtp_client_startups_abandoned_total (\d+)/m.exec(await tp.proxy.metrics.text())?.[1] ?? NaN);
    const terminate = Buffer.from([0x58, 0, 0, 0, 4]);
    // Half-closed (it could still read an answer): part of a length then a Terminate, a Terminate alone, half a packet.
    for (const first of [Buffer.from([0, 0]), Buffer.alloc(0), Buffer.from([0, 0, 0, 40, 0, 3])]) {
      const raw = await RawClient.connect(tp.port);
      raw.write(first);
      raw.socket.end(terminate);
      await raw.waitClosed();
      expect(
        raw.messages.map((m) => m.code),
        first.toString('hex'),
      ).toEqual([]);
    }
    expect(await abandoned()).toBe(3);
    // A connection that stays open still hears why it is dropped.
    const open = await RawClient.connect(tp.port);
    open.write(terminate);
    expect(await open.errorCode()).toBe('08P01');
    await open.waitClosed();
    expect(await abandoned()).toBe(3);
  });
});
