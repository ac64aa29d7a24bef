import { describe, expect, it } from 'vitest';
import { parameterTypeRefusal } from '../../src/guard/parameter-types.js';
import type { StatementAnalysis } from '../../src/guard/sql-guard.js';
import { Writer } from '../../src/protocol/writer.js';

const analysis = {} as StatementAnalysis;

/** A Parse frame inside a larger buffer, as the framer hands it over. */
function parse(types: number[], text = 'SELECT $1', name = ''): { buf: Buffer; start: number; end: number } {
  const w = new Writer().begin(0x50).cstring(name).cstring(text).int16(types.length);
  for (const oid of types) w.int32(oid);
  const frame = w.end().flush();
  const sync = new Writer().begin(0x53).end().flush();
  return { buf: Buffer.concat([Buffer.from([0x51, 0, 0, 0, 4]), frame, sync]), start: 5, end: 5 + frame.length };
}

const judged = (types: number[], text?: string): string | null => {
  const { buf, start, end } = parse(types, text);
  const refusal = parameterTypeRefusal(buf, start, end, analysis);
  return refusal === null ? null : `${refusal.rule}:${refusal.error.sqlstate}:${refusal.error.message}`;
};

describe('parameter types declared in a Parse', () => {
  it("allows none, unspecified and ordinary types (built-in and an application's own)", () => {
    expect(judged([])).toBeNull();
    expect(judged([0, 0])).toBeNull();
    expect(judged([23, 25, 17, 1043, 3802, 2950, 1184, 1009, 26, 16384, 99999])).toBeNull();
  });

  it.each([
    [24, 'regproc'],
    [1008, 'regproc[]'],
    [2202, 'regprocedure'],
    [2207, 'regprocedure[]'],
    [2203, 'regoper'],
    [2208, 'regoper[]'],
    [2204, 'regoperator'],
    [2209, 'regoperator[]'],
    [2205, 'regclass'],
    [2210, 'regclass[]'],
    [2206, 'regtype'],
    [2211, 'regtype[]'],
    [3734, 'regconfig'],
    [3735, 'regconfig[]'],
    [3769, 'regdictionary'],
    [3770, 'regdictionary[]'],
    [4089, 'regnamespace'],
    [4090, 'regnamespace[]'],
    [4096, 'regrole'],
    [4097, 'regrole[]'],
    [4191, 'regcollation'],
    [4192, 'regcollation[]'],
    [71, 'pg_type'],
    [81, 'pg_proc'],
    [210, 'pg_type[]'],
    [272, 'pg_proc[]'],
  ])('refuses type %i (%s), naming it and the parameter', (oid, name) => {
    expect(judged([25, oid], 'SELECT $1, $2')).toBe(
      `schema:42501:parameter $2 declared as ${name} (type ${oid}) in the Parse message is not allowed through pg-tenant-proxy`,
    );
  });

  it('refuses the OIDs initdb assigns (system row types and domains, which differ between versions)', () => {
    expect(judged([10000])).toMatch(
      /^schema:42501:parameter \$1 declared as a system row or domain type \(type 10000\)/,
    );
    expect(judged([12345])).not.toBeNull();
    expect(judged([16383])).not.toBeNull();
  });

  it('reads nothing past the frame', () => {
    const { buf, start, end } = parse([2205]);
    // A count larger than the OIDs present, and a frame cut short: no read beyond `end`.
    buf.writeInt16BE(5, end - 6);
    expect(parameterTypeRefusal(buf, start, end, analysis)).not.toBeNull();
    expect(parameterTypeRefusal(buf, start, end - 4, analysis)).toBeNull();
  });
});
