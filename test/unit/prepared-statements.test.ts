// PreparedStatements fed the frames a session forwards and the replies a server sends, without PostgreSQL.
import { beforeAll, describe, expect, it } from 'vitest';
import { SchemaGenerations } from '../../src/backend/schema-generations.js';
import type { ServerConn } from '../../src/backend/server-conn.js';
import { Completion, PreparedStatements } from '../../src/frontend/prepared.js';
import { analyzeSql } from '../../src/guard/analyze.js';
import { loadParser, type StatementAnalysis } from '../../src/guard/sql-guard.js';
import { TxStatus } from '../../src/protocol/codes.js';
import { ProxyError } from '../../src/protocol/errors.js';
import { bind, parse, sync } from '../support/frames.js';

beforeAll(loadParser);

interface FakeServer {
  statements: Map<string, string>;
  sent: Buffer[];
}
const fakeServer = (): FakeServer & ServerConn => {
  const server: FakeServer = { statements: new Map(), sent: [] };
  return Object.assign(server, { send: (buf: Buffer) => server.sent.push(buf) > 0 }) as unknown as FakeServer & ServerConn;
};

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
    }
    return replacement;
  }
  batch(frames: Buffer[], server: ServerConn): string[] {
    return frames.map((frame) => describeFrames(this.send(frame, server)));
  }
  /** ReadyForQuery, as ClientSession.onServerReady hands it on. */
  ready(status: number = TxStatus.Idle): void {
    this.prepared.segmentDone(this.answered++, status);
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
    const before = [...server.statements.values()][0]!;
    b.prepared.schemaChanged();
    expect(b.batch([parse('s2', TEXT)], server)[0]).toMatch(/^P:pgtp_s\d+$/);
    expect(server.statements.size).toBe(2);
    expect(describeFrames(a.send(bind('s1'), server))).toBe(`B:${before}`);
  });
});

const TEXT = 'SELECT v FROM t';

describe('a Parse answered without a server', () => {
  const analysis = (sql: string) => ({ ...analyzeSql(sql), normalized: null, fingerprint: null }) as StatementAnalysis;

  it('answers a named Parse of a plain statement followed by Sync or Flush, nothing else', () => {
    const p = new PreparedStatements('tenant_a', 1 << 20, new SchemaGenerations().of('tenant_a'));
    const frame = parse('q', TEXT);
    expect(p.answerParse(frame, 0, frame.length, analysis(TEXT), 0x53)).toBe('q');
    expect(p.answerParse(parse('r', TEXT), 0, frame.length, analysis(TEXT), 0x48)).toBe('r');
    const unnamed = parse('', TEXT);
    expect(p.answerParse(unnamed, 0, unnamed.length, analysis(TEXT), 0x53)).toBeNull();
    for (const next of [0x42, 0x44, -1]) expect(p.answerParse(parse('x', TEXT), 0, frame.length, analysis(TEXT), next)).toBeNull();
    for (const sql of ['ALTER TABLE t ADD w int', "SET work_mem = '1MB'", 'PREPARE x AS SELECT 1', 'SELEC 1']) {
      const other = parse('x', sql);
      expect(p.answerParse(other, 0, other.length, analysis(sql), 0x53), sql).toBeNull();
    }
    expect(p.answerParse(frame, 0, frame.length, analysis(TEXT), 0x53)).toMatchObject({ sqlstate: '42P05' });
  });

  it('counts DDL as a schema change, plain statements not', () => {
    const changes = (sql: string) => analyzeSql(sql).changesSchema;
    for (const sql of ['CREATE TEMP TABLE tt (a int)', 'ALTER TABLE t ALTER v TYPE text', 'DROP TABLE t', 'SELECT 1 INTO t2', 'CREATE VIEW w AS SELECT 1', 'EXPLAIN ANALYZE CREATE TABLE x AS SELECT 1']) {
      expect(changes(sql), sql).toBe(true);
    }
    for (const sql of ['SELECT 1', 'INSERT INTO t VALUES (1)', 'BEGIN', 'EXPLAIN SELECT 1', 'TRUNCATE t', 'SET work_mem = 64']) {
      expect(changes(sql), sql).toBe(false);
    }
  });
});

function nameOf(server: FakeServer): string {
  return [...server.statements.values()].at(-1)!.slice('pgtp_s'.length);
}
