// The export formats: what an export writes (jsonl manifest, dump sidecar) and what export and import return.
import { createHash } from 'node:crypto';
import { readFileSync, type PathLike } from 'node:fs';
import { TenantError } from './tenant-error.js';

export type ExportFormat = 'jsonl' | 'dump';

export interface ExportedTable {
  name: string;
  rows: number;
  /** jsonl only: the file and its SHA-256. */
  file?: string;
  sha256?: string;
}

export interface ExportResult {
  tenant: string;
  format: ExportFormat;
  /** The directory (jsonl) or file (dump) written. */
  path: string;
  /** SHA-256 of manifest.json (jsonl: it holds every file's SHA-256) or of the dump file. */
  sha256: string;
  tables: ExportedTable[];
  /** dump: the pg_dump used, with its version. */
  tool?: string;
  /** Objects the jsonl DDL does not recreate (functions, triggers, policies, domains…). */
  skipped: string[];
}

export interface JsonlManifest {
  manifestVersion: 1;
  format: 'jsonl';
  tenant: string;
  schema: string;
  role: string | null;
  proxyRole: string;
  exportedAt: string;
  server: string;
  /** How bytea values appear in the jsonl files: PostgreSQL's hex text form, "\\x0a0b…". */
  bytea: 'hex';
  tables: Array<Required<Pick<ExportedTable, 'name' | 'rows' | 'file' | 'sha256'>>>;
  /** Run with search_path set to the target schema: names inside are unqualified. */
  ddl: { preData: string[]; postData: string[] };
  grants: Grant[];
  skipped: string[];
}

export interface Grant {
  /** TABLE (tables, views, materialized views) or SEQUENCE. */
  kind: 'TABLE' | 'SEQUENCE';
  name: string;
  /** A column grant's column. */
  column?: string;
  /** A role name, or PUBLIC. */
  grantee: string;
  privilege: string;
  grantable: boolean;
}

/** A dump's sidecar (`<file>.manifest.json`): row counts taken in the dump's own snapshot, and the dump's SHA-256. */
export interface DumpManifest {
  manifestVersion: 1;
  format: 'dump';
  tenant: string;
  schema: string;
  role: string | null;
  exportedAt: string;
  server: string;
  tool: string;
  sha256: string;
  tables: Array<{ name: string; rows: number }>;
}

export interface ImportResult {
  tenant: string;
  format: ExportFormat;
  from: string;
  tables: Array<{ name: string; rows: number }>;
  /** Grants of the export to roles this database does not have. */
  skippedGrants: string[];
}

export function sha256(data: string | Buffer): string {
  return createHash('sha256').update(data).digest('hex');
}

/** A manifest read from disk; unreadable or not JSON is the caller's invalid_argument. */
export function readJson<T>(path: PathLike): T {
  try {
    return JSON.parse(readFileSync(path, 'utf8')) as T;
  } catch (err) {
    throw new TenantError('invalid_argument', `cannot read ${String(path)}: ${(err as Error).message}`);
  }
}
