// Channels per tenant (issue 17): LISTEN/UNLISTEN answered by the proxy in transaction mode, NOTIFY and pg_notify
// namespaced per tenant, notifications delivered by the proxy's one listening connection between transactions; and a
// hostile tenant that can neither hear nor reach another tenant's channels.

import pg from 'pg';
import pino from 'pino';
import postgres from 'postgres';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { controlConnection } from '../../src/tenants/registry.js';
import { upstreamTarget } from '../../src/backend/connect.js';
import { ChannelHub } from '../../src/channels/hub.js';
import { channelPrefix, MAX_TENANT_CHANNEL_BYTES } from '../../src/channels/names.js';
import { adminClient } from '../support/postgres.js';
import { sqlstateOf, startTestProxy, type TestProxy } from '../support/proxy.js';

interface Heard {
  channel: string;
  payload: string | undefined;
  processId: number;
}

/** A node-postgres client of `tenant` recording the notifications it hears, in order. */
interface Listener {
  client: pg.Client;
  heard: Heard[];
  /** Resolves with the first notification on `channel` with `payload` (rejects after a generous timeout). */
  next(channel: string, payload: string): Promise<Heard>;
}

const WAIT_MS = 10_000;

async function until<T>(what: string, probe: () => T | undefined | Promise<T | undefined>): Promise<T> {
  const deadline = Date.now() + WAIT_MS;
  for (;;) {
    const value = await probe();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

describe('channels per tenant', () => {
  let tp: TestProxy;
  let admin: pg.Client;
  const clients: pg.Client[] = [];

  beforeAll(async () => {
    admin = await adminClient();
    tp = await startTestProxy({ upstream: { poolSize: 4 } });
  });

  afterAll(async () => {
    await tp?.close();
    await admin?.end();
  });

  afterEach(async () => {
    await Promise.all(clients.splice(0).map((c) => c.end().catch(() => undefined)));
  });

  async function connect(tenant: string): Promise<pg.Client> {
    const client = await tp.connect(tenant);
    clients.push(client);
    return client;
  }

  async function listener(tenant: string, ...channels: string[]): Promise<Listener> {
    const client = await connect(tenant);
    const heard: Heard[] = [];
    client.on('notification', (n) => heard.push({ channel: n.channel, payload: n.payload, processId: n.processId }));
    for (const channel of channels) await client.query(`LISTEN ${client.escapeIdentifier(channel)}`);
    return {
      client,
      heard,
      next: (channel, payload) =>
        until(`${channel}/${payload}`, () => heard.find((h) => h.channel === channel && h.payload === payload)),
    };
  }

  it("delivers a's notification to each of a's listeners with its channel, payload and the notifier's pid", async () => {
    const a1 = await listener('a', 'jobs');
    const a2 = await listener('a', 'jobs');
    const notifier = await connect('a');
    await notifier.query('BEGIN');
    const { rows } = await notifier.query('SELECT pg_backend_pid() AS pid');
    await notifier.query("NOTIFY jobs, 'job 1'");
    await notifier.query('COMMIT');
    for (const l of [a1, a2]) {
      const n = await l.next('jobs', 'job 1');
      expect(n).toEqual({ channel: 'jobs', payload: 'job 1', processId: rows[0].pid });
    }
  });

  it("never lets b hear a's channel of the same name, while b hears its own", async () => {
    const a = await listener('a', 'jobs');
    const b = await listener('b', 'jobs');
    const aNotifier = await connect('a');
    const bNotifier = await connect('b');
    await aNotifier.query("NOTIFY jobs, 'for a'");
    await aNotifier.query("SELECT pg_notify('jobs', 'for a via pg_notify')");
    await a.next('jobs', 'for a via pg_notify');
    await bNotifier.query("NOTIFY jobs, 'for b'");
    await b.next('jobs', 'for b');
    // The proxy hands notifications out in the order the listening connection got them: a's came first.
    expect(b.heard.map((h) => h.payload)).toEqual(['for b']);
    expect(a.heard.map((h) => h.payload)).toEqual(['for a', 'for a via pg_notify']);
  });

  it('namespaces pg_notify with a computed channel, and keeps quoted names as written', async () => {
    const a = await listener('a', 'computed', 'Jobs');
    const notifier = await connect('a');
    await notifier.query("SELECT pg_notify('comp' || 'uted', 'c1')");
    await notifier.query('SELECT pg_catalog.pg_notify($1, $2)', ['Jobs', 'upper']);
    await notifier.query('NOTIFY "Jobs"');
    await a.next('computed', 'c1');
    await a.next('Jobs', 'upper');
    await a.next('Jobs', '');
  });

  it('delivers a NOTIFY made in a transaction at its commit, never after its rollback', async () => {
    const a = await listener('a', 'tx');
    const notifier = await connect('a');
    await notifier.query('BEGIN');
    await notifier.query("NOTIFY tx, 'rolled back'");
    await notifier.query('ROLLBACK');
    await notifier.query('BEGIN');
    await notifier.query("NOTIFY tx, 'committed'");
    await notifier.query('COMMIT');
    await a.next('tx', 'committed');
    expect(a.heard.map((h) => h.payload)).toEqual(['committed']);
  });

  it('makes a LISTEN in a transaction take effect at commit, and drops it at rollback', async () => {
    const l = await listener('a', 'probe');
    const notifier = await connect('a');
    await l.client.query('BEGIN');
    await l.client.query('LISTEN rolled');
    await l.client.query('ROLLBACK');
    await l.client.query('BEGIN');
    await l.client.query('LISTEN committed');
    await l.client.query('SELECT 1');
    await l.client.query('COMMIT');
    // A failed transaction's LISTEN never counts either.
    await l.client.query('BEGIN');
    await l.client.query('LISTEN failed');
    await sqlstateOf(() => l.client.query('SELECT 1/0'));
    await l.client.query('COMMIT');
    await notifier.query("NOTIFY rolled, 'r'; NOTIFY failed, 'f'; NOTIFY committed, 'c'; NOTIFY probe, 'p'");
    await l.next('probe', 'p');
    expect(l.heard.map((h) => h.channel)).toEqual(['committed', 'probe']);
  });

  it('keeps commit and rollback semantics for LISTEN as a named prepared statement and inside a mixed Query', async () => {
    const l = await listener('a', 'probe');
    const notifier = await connect('a');
    const listenExt = { name: 'listen_ext', text: 'LISTEN ext' };
    await l.client.query('BEGIN');
    expect((await l.client.query(listenExt)).command).toBe('LISTEN');
    await l.client.query('ROLLBACK');
    await notifier.query("NOTIFY ext, 'not yet'; NOTIFY probe, 'p1'");
    await l.next('probe', 'p1');
    await l.client.query('BEGIN');
    await l.client.query(listenExt);
    await l.client.query('COMMIT');
    // One string with LISTEN and other statements goes through a server; it counts once the string commits.
    const mixed = await l.client.query('SELECT 1 AS one; LISTEN mixed; SELECT 2 AS two');
    expect((mixed as unknown as pg.QueryResult[]).map((r) => r.command)).toEqual(['SELECT', 'LISTEN', 'SELECT']);
    await sqlstateOf(() => l.client.query('LISTEN mixed_failed; SELECT 1/0'));
    await notifier.query("NOTIFY ext, 'e'; NOTIFY mixed_failed, 'f'; NOTIFY mixed, 'm'; NOTIFY probe, 'p2'");
    await l.next('probe', 'p2');
    expect(l.heard.map((h) => h.payload)).toEqual(['p1', 'e', 'm', 'p2']);
  });

  it('stops delivering after UNLISTEN and UNLISTEN *', async () => {
    const l = await listener('a', 'one', 'two', 'probe');
    const notifier = await connect('a');
    await notifier.query("NOTIFY one, '1'; NOTIFY two, '2'");
    await l.next('two', '2');
    const reply = await l.client.query('UNLISTEN one');
    expect(reply.command).toBe('UNLISTEN');
    await notifier.query("NOTIFY one, 'after unlisten'; NOTIFY two, 'still'");
    await l.next('two', 'still');
    await l.client.query('UNLISTEN *');
    await l.client.query('LISTEN probe');
    await notifier.query("NOTIFY one, 'x'; NOTIFY two, 'y'; NOTIFY probe, 'p'");
    await l.next('probe', 'p');
    expect(l.heard.map((h) => h.payload)).toEqual(['1', '2', 'still', 'p']);
  });

  it("holds a notification for a client in a transaction until that transaction's end", async () => {
    const busy = await listener('a', 'held');
    const idle = await listener('a', 'held');
    const notifier = await connect('a');
    await busy.client.query('BEGIN');
    await busy.client.query('SELECT 1');
    await notifier.query("NOTIFY held, 'n'");
    // The idle listener hears it: the proxy has it.
    await idle.next('held', 'n');
    await busy.client.query('SELECT 2');
    expect(busy.heard).toEqual([]);
    await busy.client.query('COMMIT');
    await busy.next('held', 'n');
  });

  it('answers LISTEN sent with the extended protocol (postgres.js) and hears pg_notify from postgres.js', async () => {
    const options = {
      host: '127.0.0.1',
      port: tp.port,
      user: 'app',
      database: new URL(tp.config.upstream.url).pathname.slice(1),
      password: await tp.token('a'),
      max: 2,
      onnotice: () => undefined,
    };
    const sql = postgres(options);
    try {
      const got: string[] = [];
      const listening = await sql.listen('pjs', (payload) => got.push(payload));
      await sql.notify('pjs', 'from postgres.js');
      await until('postgres.js notification', () => (got.length > 0 ? got : undefined));
      expect(got).toEqual(['from postgres.js']);
      await listening.unlisten();
      const b = await listener('a', 'pjs');
      await sql.notify('pjs', 'after unlisten');
      await b.next('pjs', 'after unlisten');
      expect(got).toEqual(['from postgres.js']);
    } finally {
      await sql.end({ timeout: 1 });
    }
  });

  it('listens again when its listening connection is terminated', async () => {
    const l = await listener('a', 'survive');
    const notifier = await connect('a');
    await notifier.query("NOTIFY survive, 'before'");
    await l.next('survive', 'before');
    const old = await until('the listening connection', async () => {
      const { rows } = await admin.query(
        "SELECT pid FROM pg_stat_activity WHERE application_name = 'pg-tenant-proxy channels'",
      );
      return rows.length === 1 ? (rows[0].pid as number) : undefined;
    });
    await admin.query('SELECT pg_terminate_backend($1)', [old]);
    // Notifications sent while it is down are lost (as for any dropped connection); once back, they arrive again.
    let n = 0;
    await until('a notification after the reconnect', async () => {
      await notifier.query(`NOTIFY survive, 'after ${++n}'`);
      await new Promise((r) => setTimeout(r, 50));
      return l.heard.find((h) => h.payload?.startsWith('after')) ?? undefined;
    });
    const { rows } = await admin.query(
      "SELECT pid FROM pg_stat_activity WHERE application_name = 'pg-tenant-proxy channels'",
    );
    expect(rows.map((r) => r.pid)).not.toContain(old);
  });

  it('works in session mode too', async () => {
    const session = await startTestProxy({ pool: { mode: 'session' } });
    try {
      const l = await session.connect('a');
      const heard: string[] = [];
      l.on('notification', (n) => heard.push(n.payload ?? ''));
      await l.query('LISTEN sess');
      const other = await session.connect('a');
      await other.query("NOTIFY sess, 's'");
      await until('session-mode notification', () => (heard.length > 0 ? heard : undefined));
      expect(heard).toEqual(['s']);
    } finally {
      await session.close();
    }
  });

  describe('a hostile tenant', () => {
    const bPrefix = channelPrefix('tenant_b');

    it("cannot hear or reach b's server-side channel by spelling it: the spelling lands in a's namespace", async () => {
      const spelled = `${bPrefix}jobs`;
      const a = await listener('a', spelled);
      const b = await listener('b', 'jobs', 'probe');
      await a.client.query(`NOTIFY "${spelled}", 'notify'`);
      await a.client.query(`SELECT pg_notify('${spelled}', 'literal')`);
      await a.client.query('SELECT pg_notify($1, $2)', [spelled, 'parameter']);
      await a.client.query(`SELECT pg_notify(concat('pgtp:', '${bPrefix.slice(5, -1)}', ':jobs'), 'computed')`);
      await a.next(spelled, 'computed');
      expect(a.heard.map((h) => h.payload)).toEqual(['notify', 'literal', 'parameter', 'computed']);
      const bNotifier = await connect('b');
      await bNotifier.query("NOTIFY jobs, 'b own'; NOTIFY probe, 'p'");
      await b.next('probe', 'p');
      expect(b.heard.map((h) => h.payload)).toEqual(['b own', 'p']);
      // a's listener on the spelled name never heard b's jobs.
      expect(a.heard).toHaveLength(4);
      // Spelling b's prefix in front of a longer name only runs out of room.
      expect(await sqlstateOf(() => a.client.query(`LISTEN "${bPrefix}${'j'.repeat(20)}"`))).toBe('22023');
    });

    it('gets a clear error for a name that would not fit once prefixed, never a truncated one', async () => {
      const a = await connect('a');
      const fits = 'f'.repeat(MAX_TENANT_CHANNEL_BYTES);
      const l = await listener('a', fits);
      await a.query(`NOTIFY ${fits}, 'fits'`);
      await l.next(fits, 'fits');
      const long = 'x'.repeat(MAX_TENANT_CHANNEL_BYTES + 1);
      // 63 bytes: PostgreSQL would truncate a longer identifier to this, which is still too long here.
      const truncating = 'y'.repeat(80);
      for (const sql of [`LISTEN ${long}`, `NOTIFY ${long}`, `LISTEN ${truncating}`, `UNLISTEN "${long}"`]) {
        expect(await sqlstateOf(() => a.query(sql))).toBe('22023');
      }
      expect(await sqlstateOf(() => a.query('SELECT pg_notify($1, $2)', [long, 'x']))).toBe('22023');
      expect(await sqlstateOf(() => a.query("SELECT pg_notify('', 'x')"))).toBe('22023');
      // Multi-byte characters count as bytes, as NAMEDATALEN does.
      expect(await sqlstateOf(() => a.query(`LISTEN "${'é'.repeat(21)}"`))).toBe('22023');
    });

    it('cannot notify from a function body, DO block, trigger or rule, where no rewrite is possible', async () => {
      const a = await connect('a');
      const refused = [
        `CREATE FUNCTION n1() RETURNS void LANGUAGE plpgsql AS $$ BEGIN PERFORM pg_notify('jobs', 'x'); END $$`,
        `CREATE FUNCTION n2() RETURNS void LANGUAGE plpgsql AS $$ BEGIN NOTIFY jobs; END $$`,
        `CREATE FUNCTION n3() RETURNS void LANGUAGE sql AS $$ SELECT pg_notify('jobs', 'x') $$`,
        `CREATE FUNCTION n4() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN PERFORM pg_catalog.pg_notify('jobs', NEW::text); RETURN NEW; END $$`,
        `DO $$ BEGIN PERFORM pg_notify('jobs', 'x'); END $$`,
        `CREATE FUNCTION n5(text, text) RETURNS void LANGUAGE internal AS 'pg_notify'`,
        `CREATE TABLE IF NOT EXISTS chan_rule_t (x int); CREATE RULE r AS ON INSERT TO chan_rule_t DO ALSO NOTIFY jobs`,
        `CREATE FUNCTION n6() RETURNS void LANGUAGE plpgsql AS $$ BEGIN EXECUTE 'NOTIFY jobs'; END $$`,
      ];
      for (const sql of refused) expect.soft(await sqlstateOf(() => a.query(sql)), sql).toBe('42501');
      const { rows } = await admin.query(
        "SELECT count(*)::int AS n FROM pg_proc WHERE proname LIKE 'n_' AND pronamespace = 'tenant_a'::regnamespace",
      );
      expect(rows[0].n).toBe(0);
    });

    it("a view or BEGIN ATOMIC body calling pg_notify stays in the caller's namespace", async () => {
      const a = await connect('a');
      const b = await listener('b', 'viewed', 'probe');
      const l = await listener('a', 'viewed');
      await a.query(
        `CREATE OR REPLACE VIEW chan_notify_view AS SELECT 1 AS n FROM (SELECT pg_notify('viewed', 'from view')) s`,
      );
      await a.query(
        `CREATE OR REPLACE FUNCTION chan_atomic() RETURNS void LANGUAGE sql BEGIN ATOMIC SELECT pg_notify('viewed', 'atomic'); END`,
      );
      try {
        await a.query('SELECT * FROM chan_notify_view');
        await a.query('SELECT chan_atomic()');
        await l.next('viewed', 'from view');
        await l.next('viewed', 'atomic');
        const bNotifier = await connect('b');
        await bNotifier.query("NOTIFY probe, 'p'");
        await b.next('probe', 'p');
        expect(b.heard.map((h) => h.channel)).toEqual(['probe']);
      } finally {
        await a.query('DROP VIEW IF EXISTS chan_notify_view; DROP FUNCTION IF EXISTS chan_atomic()');
      }
    });
  });

  describe('the listening connection', () => {
    it('listens on a server channel while a subscriber needs it, and stops when the last one leaves', async () => {
      const hub = new ChannelHub(controlConnection(upstreamTarget(tp.config)), pino({ level: 'silent' }));
      try {
        const one = { notify: () => undefined };
        const two = { notify: () => undefined };
        await hub.subscribe('pgtp:test:x', one);
        await hub.subscribe('pgtp:test:x', two);
        expect([...hub.channels]).toEqual(['pgtp:test:x']);
        hub.unsubscribe('pgtp:test:x', one);
        expect([...hub.channels]).toEqual(['pgtp:test:x']);
        hub.unsubscribe('pgtp:test:x', two);
        expect([...hub.channels]).toEqual([]);
        const pid = hub.pid!;
        const { rows } = await until('the UNLISTEN', async () => {
          const r = await admin.query(
            "SELECT query FROM pg_stat_activity WHERE pid = $1 AND query LIKE 'UNLISTEN%' AND state = 'idle'",
            [pid],
          );
          return r.rows.length > 0 ? r : undefined;
        });
        expect(rows[0].query).toBe('UNLISTEN "pgtp:test:x"');
      } finally {
        hub.close();
      }
    });

    it("unsubscribes a client's channels when it disconnects", async () => {
      const l = await listener('a', 'leaving');
      const notifier = await connect('a');
      await notifier.query("NOTIFY leaving, 'one'");
      await l.next('leaving', 'one');
      await l.client.end();
      const server = `${channelPrefix('tenant_a')}leaving`;
      await until('the UNLISTEN of a channel nobody needs', async () => {
        const { rows } = await admin.query(
          "SELECT query FROM pg_stat_activity WHERE application_name = 'pg-tenant-proxy channels'",
        );
        return rows.some((r) => r.query === `UNLISTEN "${server}"`) ? true : undefined;
      });
    });
  });
});
