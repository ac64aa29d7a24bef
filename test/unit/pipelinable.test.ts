import { describe, expect, it } from 'vitest';
import { isPipelinableSegment, mentionsCopy } from '../../src/frontend/pipelinable.js';
import { encodeQuery, encodeUnnamedParse } from '../../src/protocol/messages.js';
import { SYNC } from '../../src/protocol/static.js';

/** A frame of type `code` whose body is `body` (lengths as on the wire). */
function frame(code: string, body: Buffer): Buffer {
  const out = Buffer.alloc(5 + body.length);
  out.write(code, 0, 'latin1');
  out.writeUInt32BE(4 + body.length, 1);
  body.copy(out, 5);
  return out;
}
const cstr = (s: string): Buffer => Buffer.from(`${s}\0`);
/** Bind of `statement` into `portal`, no parameters, text results. */
const bind = (portal: string, statement: string): Buffer =>
  frame('B', Buffer.concat([cstr(portal), cstr(statement), Buffer.from([0, 0, 0, 0, 0, 0])]));
const execute = (portal: string): Buffer => frame('E', Buffer.concat([cstr(portal), Buffer.from([0, 0, 0, 0])]));
const describeFrame = (kind: 'S' | 'P', name: string): Buffer =>
  frame('D', Buffer.concat([Buffer.from(kind), cstr(name)]));
const namedParse = (name: string, sql: string): Buffer =>
  frame('P', Buffer.concat([cstr(name), cstr(sql), Buffer.from([0, 0])]));

describe('isPipelinableSegment', () => {
  it('takes one approved simple Query', () => {
    const q = encodeQuery('SELECT 1');
    expect(isPipelinableSegment([q], q)).toBe(true);
  });

  it('takes an approved unnamed Parse, unnamed Bind/Describe/Execute and a Sync', () => {
    const p = encodeUnnamedParse('SELECT $1');
    expect(isPipelinableSegment([p, bind('', ''), describeFrame('P', ''), execute(''), SYNC], p)).toBe(true);
  });

  it('refuses anything not approved while idle, or nothing at all', () => {
    const q = encodeQuery('SELECT 1');
    expect(isPipelinableSegment([q], undefined)).toBe(false);
    expect(isPipelinableSegment([q], encodeQuery('SELECT 1'))).toBe(false); // equal bytes, another frame
    expect(isPipelinableSegment([], undefined)).toBe(false);
  });

  it('refuses a Query that may start COPY, in any case, and a second Query', () => {
    for (const sql of ['COPY t FROM STDIN', 'copy t to stdout', 'select 1; CoPy t from stdin']) {
      const q = encodeQuery(sql);
      expect(isPipelinableSegment([q], q)).toBe(false);
    }
    const q = encodeQuery('SELECT 1');
    expect(isPipelinableSegment([q, encodeQuery('SELECT 2')], q)).toBe(false);
  });

  it('refuses named statements and portals, which the proxy rewrites or which outlive the segment', () => {
    const p = encodeUnnamedParse('SELECT 1');
    expect(isPipelinableSegment([p, bind('', 's1'), execute(''), SYNC], p)).toBe(false);
    expect(isPipelinableSegment([p, bind('c1', ''), execute('c1'), SYNC], p)).toBe(false);
    expect(isPipelinableSegment([p, bind('', ''), describeFrame('S', 's1'), execute(''), SYNC], p)).toBe(false);
    const named = namedParse('s1', 'SELECT 1');
    expect(isPipelinableSegment([named, bind('', 's1'), execute(''), SYNC], named)).toBe(false);
  });

  it('refuses a segment without its closing Sync, or with frames it does not know', () => {
    const p = encodeUnnamedParse('SELECT 1');
    expect(isPipelinableSegment([p, bind('', ''), execute('')], p)).toBe(false);
    expect(isPipelinableSegment([p, bind('', ''), frame('H', Buffer.alloc(0)), execute(''), SYNC], p)).toBe(false);
    expect(isPipelinableSegment([p, bind('', ''), SYNC, execute(''), SYNC], p)).toBe(false);
  });
});

describe('mentionsCopy', () => {
  it('finds copy anywhere in the text and nothing in other statements', () => {
    expect(mentionsCopy(encodeQuery('SELECT 1 AS copyright'))).toBe(true); // a false alarm costs only the pipelining
    expect(mentionsCopy(encodeQuery('SELECT aid FROM pgbench_accounts WHERE aid = 7'))).toBe(false);
  });
});
