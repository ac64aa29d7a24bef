// PreparedStatements and its StalePlanRetry fed the frames a session forwards and the replies a server sends (through
// a real ReplyLedger), without PostgreSQL.
import { beforeAll, describe, expect, it } from 'vitest';
import { ReplyLedger, Route } from '../../src/backend/replies.js';
import { SchemaGenerations } from '../../src/backend/schema-generations.js';
import type { ServerConn } from '../../src/backend/server-conn.js';
import { ServerStatements } from '../../src/backend/server-statements.js';
import { PreparedStatements } from '../../src/frontend/prepared.js';
import { analyzeSql } from '../../src/guard/analyze.js';
import { loadParser, type StatementAnalysis } from '../../src/guard/sql-guard.js';
import { BackendCode, TxStatus } from '../../src/protocol/codes.js';
import { ProxyError } from '../../src/protocol/errors.js';
import { encodeCommandComplete, type ErrorFields } from '../../src/protocol/messages.js';
import { Writer } from '../../src/protocol/writer.js';
import { bind, execute, flush, parse, sync } from '../support/frames.js';

beforeAll(loadParser);

/** The parts of a server PreparedStatements uses: its statement cache and reply ledger, and what it was sent. */
interface FakeServer {
  statements: ServerStatements;
  replies: ReplyLedger;
  sent: Buffer[];
}
type Bench = FakeServer & ServerConn;
const fakeServer = (): Bench => {
  const server: FakeServer = { statements: new ServerStatements(), replies: new ReplyLedger(), sent: [] };
  const replay = (frames: Buffer, failed: () => void) => {
    server.replies.replay(failed);
    server.sent.push(frames);
  };
  return Object.assign(server, { replay }) as unknown as FakeServer & ServerConn;
};

const bare = (code: number) => new Writer(8).begin(code).end().flush();
const ready = (status: number) => new Writer(8).begin(BackendCode.ReadyForQuery).int8(status).end().flush();
const errorFrame = (fields: ErrorFields) => new ProxyError(fields.code, fields.message).encode();
const statementsOf = (server: FakeServer) => [...server.statements.entries()];

const STALE: ErrorFields = {
  severity: 'ERROR',
  code: '0A000',
  message: 'cached plan must not change result type',
  routine: 'RevalidateCachedQuery',
};
const MISSING: ErrorFields = {
  severity: 'ERROR',
  code: '42P01',
  message: 'relation "t" does not exist',
  routine: 'parserOpenTable',
};
const TEXT = 'SELECT v FROM t';

/** The frame types and statement names in what the proxy sends instead of a client frame. */
function describeFrames(buf: Buffer | null | ProxyError): string {
  if (buf === null || buf instanceof ProxyError) return String(buf);
  const out: string[] = [];
  for (let at = 0; at < buf.length; at += 1 + buf.readUInt32BE(at + 1)) {
    const code = String.fromCharCode(buf[at]!);
    const nameAt = code === 'C' || code === 'D' ? at + 6 : code === 'B' ? buf.indexOf(0, at + 5) + 1 : at + 5;
    out.push(`${code}:${buf.toString('utf8', nameAt, buf.indexOf(0, nameAt))}`);
  }
  return out.join(' ');
}

/** A session's view of one client: its statements, and the session's segment bookkeeping around them. */
class Client {
  readonly prepared: PreparedStatements;
  constructor(generations: SchemaGenerations) {
    this.prepared = new PreparedStatements('tenant_a', 1 << 20, generations.of('tenant_a'));
  }
  /** Sends a frame as LinkRequests.account would; returns what goes to the server instead, if anything. */
  send(frame: Buffer, server: Bench): Buffer | null | ProxyError {
    let replacement: Buffer | null | ProxyError = null;
    switch (frame[0]) {
      case 0x50:
        replacement = this.prepared.parse(frame, 0, frame.length, server, false);
        break;
      case 0x42:
        replacement = this.prepared.bind(frame, 0, frame.length, server);
        break;
      case 0x45:
        this.prepared.execute(frame, 0, server);
        break;
      default:
        // Flush, Describe, Close and the rest pass through unaccounted, as in the session.
        break;
    }
    if (replacement instanceof ProxyError) return replacement;
    const ended = replacement === null ? server.replies.request(frame[0]!) : server.replies.requests(replacement);
    if (ended) this.prepared.segmentSent(server.replies.sent);
    if (this.prepared.recording) this.prepared.sent(replacement, frame, 0, frame.length);
    return replacement;
  }
  batch(frames: Buffer[], server: Bench): string[] {
    return frames.map((frame) => describeFrames(this.send(frame, server)));
  }
  /** A reply through the server's ledger, as ServerConn routes it. */
  reply(server: FakeServer, frame: Buffer): Route {
    return server.replies.route(frame[0]!, frame, 0, frame.length);
  }
  /** A ParseComplete or CloseComplete: what the client gets of it. */
  completion(server: FakeServer, isParse: boolean): Route {
    return this.reply(server, bare(isParse ? BackendCode.ParseComplete : BackendCode.CloseComplete));
  }
  /** A statement's CommandComplete; the link tells PreparedStatements when it reaches the client. */
  command(server: FakeServer): Route {
    const route = this.reply(server, encodeCommandComplete('SELECT 1'));
    if (route !== Route.Swallow) this.prepared.statementCompleted();
    return route;
  }
  /** An error from the server: true when the proxy swallowed it (a stale-plan replay). */
  error(server: FakeServer, fields: ErrorFields): boolean {
    const route = this.reply(server, errorFrame(fields));
    return route === Route.Swallow || this.prepared.onServerError(fields);
  }
  /** ReadyForQuery, as the link hands it on; false when the proxy swallowed it. */
  ready(server: FakeServer, status: number = TxStatus.Idle): boolean {
    if (this.reply(server, ready(status)) !== Route.Pass) return false;
    this.prepared.segmentDone(server.replies.done - 1, status);
    return true;
  }
}

describe('statements shared by text', () => {
  it('shares a server statement within a schema generation, and never across DDL', () => {
    const generations = new SchemaGenerations();
    const server = fakeServer();
    const a = new Client(generations);
    const b = new Client(generations);
    expect(a.batch([parse('s1', TEXT), sync], server)).toEqual(['P:pgtp_s' + nameOf(server), 'null']);
    a.completion(server, true);
    a.ready(server);
    // Same text, same generation: a Close of nothing stands in for the Parse, its CloseComplete made a ParseComplete.
    expect(b.batch([parse('s1', TEXT)], server)).toEqual(['C:pgtp_snone']);
    expect(b.completion(server, false)).toBe(Route.AsParseComplete);
    // DDL through the proxy: a Parse after it gets a statement of its own; the one before stays for a's.
    const before = statementsOf(server).map(([, statement]) => statement)[0]!.name;
    b.prepared.schemaChanged();
    expect(b.batch([parse('s2', TEXT)], server)[0]).toMatch(/^P:pgtp_s\d+$/);
    expect(server.statements.size).toBe(2);
    expect(describeFrames(a.send(bind('s1'), server))).toBe(`B:${before}`);
  });

  it('stops sharing a statement PostgreSQL found stale with Parses made after it, and keeps a skipped Close counted', () => {
    const generations = new SchemaGenerations();
    const server = fakeServer();
    const a = new Client(generations);
    a.batch([parse('s1', TEXT), sync], server);
    a.completion(server, true);
    a.ready(server);
    const first = statementsOf(server).map(([, statement]) => statement)[0]!;
    // Inside a transaction block: no replay, the client hears the 0A000 and the statement is marked.
    a.batch([parse('', 'BEGIN'), bind(''), execute, sync], server);
    a.ready(server, TxStatus.InTransaction);
    a.batch([bind('s1'), execute, sync], server);
    expect(a.error(server, STALE)).toBe(false);
    expect(a.ready(server, TxStatus.Failed)).toBe(true);
    expect(first.stale).toBe(true);
    // A later Parse gets a fresh statement, closing the stale one; here an error skips both, so the old one stays
    // on the server under a key of its own (the reset's count of the proxy's statements must still match).
    const b = new Client(generations);
    expect(b.batch([parse('s9', TEXT)], server)).toEqual([
      `C:${first.name} P:pgtp_s${Number(first.name.slice(6)) + 1}`,
    ]);
    b.batch([sync], server);
    b.ready(server);
    expect(statementsOf(server)).toEqual([[`\0${first.name}`, { name: first.name, preparedAt: 0, stale: true }]]);
  });
});

describe('StalePlanRetry', () => {
  /** a prepared TEXT on the server; b parses it afterwards, so the server's statement predates b's. */
  const setUp = () => {
    const generations = new SchemaGenerations();
    const server = fakeServer();
    const a = new Client(generations);
    a.batch([parse('s1', TEXT), sync], server);
    a.completion(server, true);
    a.ready(server);
    const b = new Client(generations);
    b.batch([parse('s2', TEXT), sync], server);
    expect(b.completion(server, false)).toBe(Route.AsParseComplete);
    b.ready(server);
    return { server, b, statement: statementsOf(server).map(([, statement]) => statement)[0]! };
  };

  it('re-prepares the statement under its name and replays the segment, swallowing what answers the failed attempt', () => {
    const { server, b, statement } = setUp();
    const preparedAt = statement.preparedAt;
    b.batch([bind('s2'), execute, sync], server);
    expect(b.error(server, STALE)).toBe(true);
    expect(server.sent.map(describeFrames)).toEqual([
      `C:${statement.name} P:${statement.name} B:${statement.name} E: S:`,
    ]);
    expect(statement.preparedAt).toBeGreaterThan(preparedAt);
    expect(statement.stale).toBe(false);
    expect(b.ready(server)).toBe(false); // the failed attempt's
    expect(b.completion(server, false)).toBe(Route.Swallow);
    expect(b.completion(server, true)).toBe(Route.Swallow);
    expect(b.command(server)).toBe(Route.Pass);
    expect(b.ready(server)).toBe(true); // the replay's, the client's
    // Once: the next stale plan reaches the client.
    expect(b.error(server, STALE)).toBe(false);
  });

  it('lets the client hear why when the re-prepare fails, and forgets the statement', () => {
    const { server, b, statement } = setUp();
    b.batch([bind('s2'), execute, sync], server);
    expect(b.error(server, STALE)).toBe(true);
    expect(b.ready(server)).toBe(false);
    expect(b.completion(server, false)).toBe(Route.Swallow);
    expect(b.error(server, MISSING)).toBe(false);
    expect(b.ready(server)).toBe(true);
    expect(statementsOf(server).map(([, statement]) => statement)).not.toContain(statement);
  });

  it.each([
    [
      'a statement of the segment completed first',
      (b: Client, server: Bench) => {
        b.batch([bind('s2'), execute, sync], server);
        b.command(server);
      },
    ],
    [
      'the client sent more after the Sync',
      (b: Client, server: Bench) => b.batch([bind('s2'), execute, sync, bind('s2')], server),
    ],
    ['the segment holds a Flush', (b: Client, server: Bench) => b.batch([bind('s2'), flush, execute, sync], server)],
    [
      'an Execute came before the Bind',
      (b: Client, server: Bench) =>
        b.batch([parse('', 'SELECT 1'), bind(''), execute, bind('s2'), execute, sync], server),
    ],
    [
      'another segment was in flight',
      (b: Client, server: Bench) => {
        b.batch([parse('', 'SELECT 1'), bind(''), execute, sync, bind('s2'), execute, sync], server);
        b.ready(server);
      },
    ],
    ['the Sync has not come yet', (b: Client, server: Bench) => b.batch([bind('s2'), execute], server)],
    // The first Bind's BindComplete has reached the client when the second one fails.
    [
      'a second Bind follows the first',
      (b: Client, server: Bench) => b.batch([bind('s2'), execute, bind('s2'), execute, sync], server),
    ],
  ])('does not replay when %s', (_, act) => {
    const { server, b, statement } = setUp();
    act(b, server);
    expect(b.error(server, STALE)).toBe(false);
    expect(server.sent).toEqual([]);
    expect(statement.stale).toBe(true);
  });
});

describe('a Parse answered without a server', () => {
  const analysis = (sql: string) => ({ ...analyzeSql(sql), normalized: null, fingerprint: null }) as StatementAnalysis;

  it('answers a named Parse of a plain statement followed by Sync or Flush, nothing else', () => {
    const p = new PreparedStatements('tenant_a', 1 << 20, new SchemaGenerations().of('tenant_a'));
    const frame = parse('q', TEXT);
    expect(p.answerParse(frame, 0, frame.length, analysis(TEXT), 0x53)).toBe('q');
    expect(p.answerParse(parse('r', TEXT), 0, frame.length, analysis(TEXT), 0x48)).toBe('r');
    const unnamed = parse('', TEXT);
    expect(p.answerParse(unnamed, 0, unnamed.length, analysis(TEXT), 0x53)).toBeNull();
    for (const next of [0x42, 0x44, -1])
      expect(p.answerParse(parse('x', TEXT), 0, frame.length, analysis(TEXT), next)).toBeNull();
    for (const sql of ['ALTER TABLE t ADD w int', "SET work_mem = '1MB'", 'PREPARE x AS SELECT 1', 'SELEC 1']) {
      const other = parse('x', sql);
      expect(p.answerParse(other, 0, other.length, analysis(sql), 0x53), sql).toBeNull();
    }
    expect(p.answerParse(frame, 0, frame.length, analysis(TEXT), 0x53)).toMatchObject({ sqlstate: '42P05' });
  });

  it('counts DDL as a schema change, plain statements not', () => {
    const changes = (sql: string) => analyzeSql(sql).changesSchema;
    for (const sql of [
      'CREATE TEMP TABLE tt (a int)',
      'ALTER TABLE t ALTER v TYPE text',
      'DROP TABLE t',
      'SELECT 1 INTO t2',
      'CREATE VIEW w AS SELECT 1',
      'EXPLAIN ANALYZE CREATE TABLE x AS SELECT 1',
    ]) {
      expect(changes(sql), sql).toBe(true);
    }
    for (const sql of [
      'SELECT 1',
      'INSERT INTO t VALUES (1)',
      'BEGIN',
      'EXPLAIN SELECT 1',
      'TRUNCATE t',
      'SET work_mem = 64',
    ]) {
      expect(changes(sql), sql).toBe(false);
    }
  });
});

function nameOf(server: FakeServer): string {
  return statementsOf(server).at(-1)![1].name.slice('pgtp_s'.length);
}
