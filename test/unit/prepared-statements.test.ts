// PreparedStatements fed the frames a session forwards and the replies a server sends, without PostgreSQL.
import { beforeAll, describe, expect, it } from 'vitest';
import { PreparedStatements } from '../../src/frontend/prepared.js';
import { analyzeSql } from '../../src/guard/analyze.js';
import { loadParser, type StatementAnalysis } from '../../src/guard/sql-guard.js';
import { parse } from '../support/frames.js';

beforeAll(loadParser);

const TEXT = 'SELECT v FROM t';

describe('a Parse answered without a server', () => {
  const analysis = (sql: string) => ({ ...analyzeSql(sql), normalized: null, fingerprint: null }) as StatementAnalysis;

  it('answers a named Parse of a plain statement followed by Sync or Flush, nothing else', () => {
    const p = new PreparedStatements('tenant_a', 1 << 20);
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
