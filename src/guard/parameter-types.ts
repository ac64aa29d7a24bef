// Parameter types a Parse message declares: a reg* type makes PostgreSQL resolve the bound value as a name at Bind.
import { SqlState } from '../protocol/codes.js';
import { ProxyError } from '../protocol/errors.js';
import type { Refusal, StatementAnalysis } from './sql-guard.js';

/**
 * The reg* types and their array types (pg_type.dat). Their input functions look a name up in the catalogs, so
 * `SELECT $1` declared regclass and bound to 'tenant_b.secrets' tells whether another tenant's table exists — the
 * oracle the guard refuses in the text as `$1::regclass`. Refused the same way rather than judged at Bind: the
 * bound value would have to be read as each type's input function reads it (regprocedure and regoperator take
 * signatures, arrays and records nest names), for types no application needs as parameters.
 */
const NAME_TYPES = new Map<number, string>([
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
  // Built-in row types with regproc columns: their input reads each field with the field's input function.
  [71, 'pg_type'],
  [210, 'pg_type[]'],
  [81, 'pg_proc'],
  [272, 'pg_proc[]'],
]);

/**
 * OIDs initdb assigns (FirstGenbkiObjectId 10000 up to FirstNormalObjectId 16384): the other system catalogs' and
 * views' row types (pg_aggregate, pg_operator, … have regproc columns) and information_schema's domains. They differ
 * between PostgreSQL versions, so the whole range is refused; drivers declare built-in scalar types (below 10000)
 * or an application's own types (16384 and up).
 */
const INITDB_OIDS = { from: 10000, to: 16384 };

/**
 * A refusal when the Parse frame at [start, end) declares a parameter of a type whose input resolves names, else
 * null. `analysis` is the statement's (for the audit).
 */
export function parameterTypeRefusal(
  frame: Buffer,
  start: number,
  end: number,
  analysis: StatementAnalysis,
): Refusal | null {
  // Parse: 'P', int32 length, statement name, query text (both NUL-terminated), int16 count, count × int32 OID.
  const nameEnd = frame.indexOf(0, start + 5);
  if (nameEnd < 0 || nameEnd >= end) return null;
  const textEnd = frame.indexOf(0, nameEnd + 1);
  if (textEnd < 0 || textEnd + 3 > end) return null;
  const count = frame.readInt16BE(textEnd + 1);
  for (let i = 0, at = textEnd + 3; i < count && at + 4 <= end; i++, at += 4) {
    const oid = frame.readUInt32BE(at);
    const name =
      NAME_TYPES.get(oid) ??
      (oid >= INITDB_OIDS.from && oid < INITDB_OIDS.to ? `a system row or domain type` : undefined);
    if (name === undefined) continue;
    return {
      rule: 'schema',
      analysis,
      error: new ProxyError(
        SqlState.INSUFFICIENT_PRIVILEGE,
        `parameter $${i + 1} declared as ${name} (type ${oid}) in the Parse message is not allowed through pg-tenant-proxy`,
        'ERROR',
        'PostgreSQL would look the bound value up as a name in the catalogs',
        'declare the parameter as text, or leave its type unspecified',
      ),
    };
  }
  return null;
}
