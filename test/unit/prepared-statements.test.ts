// PreparedStatements and its StalePlanRetry fed the frames a session forwards and the replies a server sends, without PostgreSQL.
import { beforeAll, describe, expect, it } from 'vitest';
import { SchemaGenerations } from '../../src/backend/schema-generations.js';
import type { ServerConn, ServerStatement } from '../../src/backend/server-conn.js';
import { Completion, PreparedStatements } from '../../src/frontend/prepared.js';
import { analyzeSql } from '../../src/guard/analyze.js';
import { loadParser, type StatementAnalysis } from '../../src/guard/sql-guard.js';
import { TxStatus } from '../../src/protocol/codes.js';
import { ProxyError } from '../../src/protocol/errors.js';
import type { ErrorFields } from '../../src/protocol/messages.js';
import { bind, execute, flush, parse, sync } from '../support/frames.js';

beforeAll(loadParser);

interface FakeServer {
  statements: Map<string, ServerStatement>;
  sent: Buffer[];
}
const fakeServer = (): FakeServer & ServerConn => {
  const server: FakeServer = { statements: new Map(), sent: [] };
  return Object.assign(server, { send: (buf: Buffer) => server.sent.push(buf) > 0 }) as unknown as FakeServer &
    ServerConn;
};

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
  private segment = 0;
  constructor(generations: SchemaGenerations) {
    this.prepared = new PreparedStatements('tenant_a', 1 << 20, generations.of('tenant_a'));
  }
  /** Sends a frame as ClientSession.accountActive would; returns what goes to the server instead, if anything. */
  send(frame: Buffer, server: ServerConn): Buffer | null | ProxyError {
    let replacement: Buffer | null | ProxyError = null;
    switch (frame[0]) {
      case 0x50:
        replacement = this.prepared.parse(frame, 0, frame.length, server, false);
        break;
      case 0x42:
        replacement = this.prepared.bind(frame, 0, frame.length, server);
        break;
      case 0x45:
        this.prepared.execute(frame, 0);
        break;
      case 0x53:
        this.prepared.segmentSent(++this.segment);
        break;
      default:
        // Flush, Describe, Close and the rest pass through unaccounted, as in the session.
        break;
    }
    if (this.prepared.recording && !(replacement instanceof ProxyError))
      this.prepared.sent(replacement, frame, 0, frame.length);
    return replacement;
  }
  batch(frames: Buffer[], server: ServerConn): string[] {
    return frames.map((frame) => describeFrames(this.send(frame, server)));
  }
  /** ReadyForQuery, as ClientSession.onServerReady hands it on; false when the proxy swallowed it. */
  ready(status: number = TxStatus.Idle): boolean {
    if (this.prepared.swallowReady()) return false;
    this.prepared.segmentDone(this.answered++, status);
    return true;
  }
  answered = 0;
}

describe('statements shared by text', () => {
  it('shares a server statement within a schema generation, and never across DDL', () => {
    const generations = new SchemaGenerations();
    const server = fakeServer();
    const a = new Client(generations);
    const b = new Client(generations);
    expect(a.batch([parse('s1', TEXT), sync], server)).toEqual(['P:pgtp_s' + nameOf(server), 'null']);
    a.prepared.onCompletion(true, 0);
    a.ready();
    // Same text, same generation: a Close of nothing stands in for the Parse, its CloseComplete made a ParseComplete.
    expect(b.batch([parse('s1', TEXT)], server)).toEqual(['C:pgtp_snone']);
    expect(b.prepared.onCompletion(false, 0)).toBe(Completion.AsParseComplete);
    // DDL through the proxy: a Parse after it gets a statement of its own; the one before stays for a's.
    const before = [...server.statements.values()][0]!.name;
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
    a.prepared.onCompletion(true, 0);
    a.ready();
    const first = [...server.statements.values()][0]!;
    // Inside a transaction block: no replay, the client hears the 0A000 and the statement is marked.
    a.batch([parse('', 'BEGIN'), bind(''), execute, sync], server);
    a.ready(TxStatus.InTransaction);
    a.batch([bind('s1'), execute, sync], server);
    expect(a.prepared.onServerError(STALE)).toBe(false);
    expect(a.ready(TxStatus.Failed)).toBe(true);
    expect(first.stale).toBe(true);
    // A later Parse gets a fresh statement, closing the stale one; here an error skips both, so the old one stays
    // on the server under a key of its own (the reset's count of the proxy's statements must still match).
    const b = new Client(generations);
    expect(b.batch([parse('s9', TEXT)], server)).toEqual([
      `C:${first.name} P:pgtp_s${Number(first.name.slice(6)) + 1}`,
    ]);
    b.batch([sync], server);
    b.ready();
    expect([...server.statements.entries()]).toEqual([
      [`\0${first.name}`, { name: first.name, preparedAt: 0, stale: true }],
    ]);
  });
});

describe('StalePlanRetry', () => {
  /** a prepared TEXT on the server; b parses it afterwards, so the server's statement predates b's. */
  const setUp = () => {
    const generations = new SchemaGenerations();
    const server = fakeServer();
    const a = new Client(generations);
    a.batch([parse('s1', TEXT), sync], server);
    a.prepared.onCompletion(true, 0);
    a.ready();
    const b = new Client(generations);
    b.batch([parse('s2', TEXT), sync], server);
    expect(b.prepared.onCompletion(false, 0)).toBe(Completion.AsParseComplete);
    b.ready();
    return { server, b, statement: [...server.statements.values()][0]! };
  };

  it('re-prepares the statement under its name and replays the segment, swallowing what answers the failed attempt', () => {
    const { server, b, statement } = setUp();
    const preparedAt = statement.preparedAt;
    b.batch([bind('s2'), execute, sync], server);
    expect(b.prepared.onServerError(STALE)).toBe(true);
    expect(server.sent.map(describeFrames)).toEqual([
      `C:${statement.name} P:${statement.name} B:${statement.name} E: S:`,
    ]);
    expect(statement.preparedAt).toBeGreaterThan(preparedAt);
    expect(statement.stale).toBe(false);
    expect(b.ready()).toBe(false); // the failed attempt's
    expect(b.prepared.onCompletion(false, 1)).toBe(Completion.Swallow);
    expect(b.prepared.onCompletion(true, 1)).toBe(Completion.Swallow);
    expect(b.prepared.onCommandCompletion(1)).toBe(false);
    expect(b.ready()).toBe(true); // the replay's, the client's
    // Once: the next stale plan reaches the client.
    expect(b.prepared.onServerError(STALE)).toBe(false);
  });

  it('lets the client hear why when the re-prepare fails, and forgets the statement', () => {
    const { server, b, statement } = setUp();
    b.batch([bind('s2'), execute, sync], server);
    expect(b.prepared.onServerError(STALE)).toBe(true);
    expect(b.ready()).toBe(false);
    expect(b.prepared.onCompletion(false, 1)).toBe(Completion.Swallow);
    expect(b.prepared.onServerError(MISSING)).toBe(false);
    expect(b.ready()).toBe(true);
    expect([...server.statements.values()]).not.toContain(statement);
  });

  it.each([
    [
      'a statement of the segment completed first',
      (b: Client, server: ServerConn) => {
        b.batch([bind('s2'), execute, sync], server);
        b.prepared.onCommandCompletion(1);
      },
    ],
    [
      'the client sent more after the Sync',
      (b: Client, server: ServerConn) => b.batch([bind('s2'), execute, sync, bind('s2')], server),
    ],
    [
      'the segment holds a Flush',
      (b: Client, server: ServerConn) => b.batch([bind('s2'), flush, execute, sync], server),
    ],
    [
      'an Execute came before the Bind',
      (b: Client, server: ServerConn) =>
        b.batch([parse('', 'SELECT 1'), bind(''), execute, bind('s2'), execute, sync], server),
    ],
    [
      'another segment was in flight',
      (b: Client, server: ServerConn) => {
        b.batch([parse('', 'SELECT 1'), bind(''), execute, sync, bind('s2'), execute, sync], server);
        b.ready();
      },
    ],
    ['the Sync has not come yet', (b: Client, server: ServerConn) => b.batch([bind('s2'), execute], server)],
    // The first Bind's BindComplete has reached the client when the second one fails.
    [
      'a second Bind follows the first',
      (b: Client, server: ServerConn) => b.batch([bind('s2'), execute, bind('s2'), execute, sync], server),
    ],
  ])('does not replay when %s', (_, act) => {
    const { server, b, statement } = setUp();
    act(b, server);
    expect(b.prepared.onServerError(STALE)).toBe(false);
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
  return [...server.statements.values()].at(-1)!.name.slice('pgtp_s'.length);
}
