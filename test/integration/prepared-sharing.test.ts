import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { adminClient, printPgLogOnFailure } from '../support/postgres.js';
import { startTestProxy, type TestProxy } from '../support/proxy.js';
import type { RawClient } from '../support/raw-client.js';
import {
  bind,
  describePortal,
  directRaw,
  exchange,
  execute,
  flush,
  parse,
  proxyRaw,
  query,
  sync,
  type Exchange,
} from '../support/frames.js';

let tp: TestProxy;
const opened: RawClient[] = [];
beforeEach(printPgLogOnFailure);
afterEach(async () => {
  for (const raw of opened) raw.close();
  opened.length = 0;
  await tp?.close();
});

const INT4 = 23;
const TEXT = 25;

/** A raw client of tenant a through the proxy. */
const viaProxy = async (): Promise<RawClient> => {
  const raw = await proxyRaw(tp.port, await tp.token('a'));
  opened.push(raw);
  return raw;
};
/** A raw client straight to PostgreSQL in tenant a's schema: what the proxy's answers are held to. */
const direct = async (): Promise<RawClient> => {
  const raw = await directRaw(tp.config, 'tenant_a');
  opened.push(raw);
  return raw;
};
/** Statement `name` of `text` prepared, bound and run in one batch, with its row description. */
const run = (name: string, text: string): Buffer[] => [parse(name, text), bind(name), describePortal, execute, sync];
const rerun = (name: string): Buffer[] => [bind(name), describePortal, execute, sync];

const dropTables = async (...names: string[]): Promise<void> => {
  const admin = await adminClient();
  try {
    for (const name of names) await admin.query(`DROP TABLE IF EXISTS tenant_a.${name}`);
  } finally {
    await admin.end();
  }
};

describe('a named Parse outside a transaction, answered without a server', () => {
  it('surfaces an error in the statement at its first use with PostgreSQL’s own message, SQLSTATE and status', async () => {
    await dropTables('deferred_later');
    tp = await startTestProxy({ upstream: { poolSize: 1 } });
    const a = await viaProxy();
    const d = await direct();
    const text = 'SELECT v FROM deferred_later';

    // The proxy answers as PostgreSQL answers a valid Parse; PostgreSQL itself finds the table missing at once.
    expect(await exchange(a, [parse('m', text), sync])).toMatchObject({ codes: '1Z', status: 'I' });
    const atParse = await exchange(d, [parse('m', text), sync]);
    expect(atParse).toMatchObject({ codes: 'EZ', status: 'I', error: { code: '42P01' } });
    // The first use prepares it on a server: the same error (message and position included) and status, and the rest
    // of the batch skipped up to the Sync.
    expect(await exchange(a, [bind('m'), execute, parse('', 'SELECT 1'), bind(''), execute, sync])).toEqual({
      codes: 'EZ',
      tags: [],
      status: 'I',
      error: atParse.error,
    });
    // In a transaction block the transaction fails as a direct connection's does when the Parse fails there.
    const inBlock = await exchange(
      a,
      [query('BEGIN'), bind('m'), execute, sync, query('SELECT 1'), query('ROLLBACK')],
      4,
    );
    const inBlockDirect = await exchange(
      d,
      [query('BEGIN'), parse('m', text), bind('m'), execute, sync, query('SELECT 1'), query('ROLLBACK')],
      4,
    );
    expect(inBlock).toEqual(inBlockDirect);
    expect(inBlock).toMatchObject({ codes: 'CZEZEZCZ', status: 'TEEI' });
    // The statement exists for the client (it heard ParseComplete): once the table does, it runs.
    await exchange(a, [query('CREATE TABLE deferred_later (v int); INSERT INTO deferred_later VALUES (7)')]);
    expect(await exchange(a, rerun('m'))).toMatchObject({
      codes: '2TDCZ',
      tags: ['SELECT 1'],
      status: 'I',
      types: [INT4],
    });
  });

  it('answers Parse + Flush too, and keeps ReadyForQuery in order through pipelined batches with errors', async () => {
    tp = await startTestProxy({ upstream: { poolSize: 1 } });
    const a = await viaProxy();
    a.write(Buffer.concat([parse('f', 'SELECT 1 AS one'), flush]));
    await a.waitFor('1');
    expect(a.messages.map((m) => m.code).join('')).toBe('1');
    expect(await exchange(a, rerun('f'))).toMatchObject({ codes: '2TDCZ', status: 'I' });

    // Two answered here, one failing on the server at its Bind, one running, then a simple Query: one write.
    const batch = [
      parse('p1', 'SELECT 1 AS one'),
      sync,
      parse('p2', 'SELECT v FROM no_such_table'),
      sync,
      ...rerun('p2'),
      ...rerun('p1'),
      query('SELECT 2'),
    ];
    expect(await exchange(a, batch, 5)).toMatchObject({
      codes: '1Z1ZEZ2TDCZTDCZ',
      status: 'IIIII',
      error: { code: '42P01' },
    });

    // Inside a transaction block a Parse goes to the server as before: its error comes at once, as on a direct connection.
    const d = await direct();
    const inBlock = [query('BEGIN'), parse('p3', 'SELECT v FROM no_such_table'), sync, query('ROLLBACK')];
    const expected = await exchange(d, inBlock, 3);
    expect(expected).toMatchObject({ codes: 'CZEZCZ', status: 'TEI' });
    expect(await exchange(a, inBlock, 3)).toEqual(expected);
    // A name taken is refused at the Parse, answered here or not.
    expect(await exchange(a, [parse('p1', 'SELECT 3'), sync])).toMatchObject({
      codes: 'EZ',
      status: 'I',
      error: { code: '42P05' },
    });
  });
});

describe('statements shared by text when the schema changes under them', () => {
  it('prepares a statement again after DDL through the proxy: a new Parse sees the new row type, as on a direct connection', async () => {
    await dropTables('shape_t');
    tp = await startTestProxy({ upstream: { poolSize: 1 } });
    const a = await viaProxy();
    const b = await viaProxy();
    const d = await direct();
    const text = 'SELECT v FROM shape_t';
    await exchange(a, [query('CREATE TABLE shape_t (v int); INSERT INTO shape_t VALUES (1)')]);

    // a and the direct connection prepare it while v is an int.
    expect(await exchange(a, run('s1', text))).toMatchObject({ codes: '12TDCZ', types: [INT4] });
    expect(await exchange(d, run('s1', text))).toMatchObject({ codes: '12TDCZ', types: [INT4] });
    expect((await exchange(b, [query('ALTER TABLE shape_t ALTER COLUMN v TYPE text')])).codes).toBe('CZ');

    // A new statement of the same text, in one batch or answered here and bound later: what a fresh Parse gives.
    const fresh = await exchange(d, run('s2', text));
    expect(fresh).toMatchObject({ codes: '12TDCZ', status: 'I', types: [TEXT] });
    expect(await exchange(b, run('s2', text))).toEqual(fresh);
    expect(await exchange(b, [parse('s3', text), sync])).toMatchObject({ codes: '1Z' });
    expect(await exchange(b, rerun('s3'))).toEqual({ ...fresh, codes: '2TDCZ' });
    // A statement parsed before the change is refused as PostgreSQL refuses it on a direct connection.
    const stale = await exchange(d, rerun('s1'));
    expect(stale).toMatchObject({ codes: 'EZ', status: 'I', error: { code: '0A000' } });
    expect(await exchange(a, rerun('s1'))).toEqual(stale);
  });

  it('prepares it again when a temp table is recreated with another column type in one transaction', async () => {
    tp = await startTestProxy({ upstream: { poolSize: 1 } });
    const a = await viaProxy();
    const d = await direct();
    const steps = [
      query('BEGIN'),
      query('CREATE TEMP TABLE tt AS SELECT 1 AS a'),
      ...run('t1', 'SELECT a FROM tt'),
      query('DROP TABLE tt'),
      query("CREATE TEMP TABLE tt AS SELECT 'one'::text AS a"),
      ...run('t2', 'SELECT a FROM tt'),
      query('COMMIT'),
    ];
    const expected = await exchange(d, steps, 7);
    expect(expected.codes).toBe('CZCZ12TDCZCZCZ12TDCZCZ');
    expect(expected.types).toEqual([TEXT]);
    expect(await exchange(a, steps, 7)).toEqual(expected);
  });

  it('after DDL it did not see, prepares the shared statement again and replays the segment when nothing of it ran', async () => {
    await dropTables('ext_t');
    tp = await startTestProxy({ upstream: { poolSize: 1 } });
    const a = await viaProxy();
    const d = await direct();
    const text = 'SELECT v FROM ext_t';
    const backendPid = async (): Promise<number> =>
      ((await pgClient.query('SELECT pg_backend_pid() AS pid')).rows[0] as { pid: number }).pid;
    const pgClient = await tp.connect('a');
    const pid = await backendPid();
    await exchange(a, [query('CREATE TABLE ext_t (v int); INSERT INTO ext_t VALUES (1)')]);
    expect(await exchange(a, run('e1', text))).toMatchObject({ codes: '12TDCZ', types: [INT4] });
    // An operator changes the table behind the proxy's back.
    const operator = async (sql: string): Promise<void> => {
      expect((await exchange(d, [query(sql)])).codes).toBe('CZ');
    };
    await operator('ALTER TABLE ext_t ALTER COLUMN v TYPE text');

    // A new client's statement of the same text is mapped onto the one a prepared: PostgreSQL refuses its Bind
    // (0A000), the proxy prepares it again and sends the segment again; the client sees a fresh Parse's answer.
    const b = await viaProxy();
    const fresh: Exchange = await exchange(d, run('f1', text));
    expect(fresh).toMatchObject({ codes: '12TDCZ', status: 'I', types: [TEXT] });
    expect(await exchange(b, run('e2', text))).toEqual(fresh);
    // The same for one answered without a server and bound later.
    expect((await exchange(b, [parse('e3', text), sync])).codes).toBe('1Z');
    await operator('ALTER TABLE ext_t ALTER COLUMN v TYPE int USING v::int');
    expect(await exchange(b, rerun('e3'))).toEqual({ ...fresh, codes: '2TDCZ', types: [INT4] });

    // Inside a transaction block the error has already failed the transaction: the client hears it once, and the
    // statement is prepared again for its next attempt.
    await operator('ALTER TABLE ext_t ALTER COLUMN v TYPE text');
    const c = await viaProxy();
    const inBlock = await exchange(c, [query('BEGIN'), ...run('e4', text), query('ROLLBACK')], 3);
    expect(inBlock).toMatchObject({ codes: 'CZ1EZCZ', status: 'TEI', error: { code: '0A000' } });
    expect(await exchange(c, [query('BEGIN'), ...rerun('e4'), query('COMMIT')], 3)).toMatchObject({
      codes: 'CZ2TDCZCZ',
      status: 'TTI',
      types: [TEXT],
    });

    // Every statement closed, replaced or prepared again is accounted for: the reset a parked server gets after a
    // second proves that only the proxy's statements remain, else it closes the server. The one server survives.
    await new Promise((r) => setTimeout(r, 1500));
    expect(await backendPid()).toBe(pid);
  });
});
