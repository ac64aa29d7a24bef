// Tenant export: jsonl (a file per table + manifest with DDL from the catalogs) or dump (pg_dump -Fc + sidecar manifest).
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { open } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { quoteIdent } from '../auth/identity.js';
import { proxyRoleOf } from './admin-connection.js';
import {
  sha256,
  type DumpManifest,
  type ExportFormat,
  type ExportResult,
  type JsonlManifest,
} from './export-manifest.js';
import type { TenantAdmin } from './lifecycle.js';
import { findPgDump, libpqEnv, run, serverVersion } from './pg-tools.js';
import type { SqlRunner } from './provision.js';
import { TenantStatus } from './registry-store.js';
import { schemaDdl, tables } from './schema-ddl.js';
import { eachLine } from './table-rows.js';
import { TenantError } from './tenant-error.js';
import { refuseOtherUpstream } from '../routing/upstream-admin.js';

/** Exports a tenant's schema; the tenant may be active or suspended (suspend it first for a frozen copy). */
export async function exportTenant(
  admin: TenantAdmin,
  id: string,
  options: { out: string; format?: ExportFormat },
): Promise<ExportResult> {
  const format = options.format ?? 'jsonl';
  const out = resolve(options.out);
  if (existsSync(out))
    throw new TenantError('invalid_argument', `--out ${out} exists already; an export never overwrites`);
  return admin.runVerb<ExportResult>(
    'export',
    id,
    async (db) => {
      const record = await tenantRecord(db, admin, id);
      // Made here, failing if it appeared meanwhile: what the cleanup below removes is only ever this export's.
      if (format === 'jsonl') mkdirSync(out, { recursive: false, mode: 0o750 });
      await db.query('BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY');
      try {
        await db.query(`SET LOCAL search_path = ${quoteIdent(record.schema)}`);
        const result =
          format === 'jsonl' ? await exportJsonl(db, admin, record, out) : await exportDump(db, admin, record, out);
        await db.query('COMMIT');
        return {
          result,
          outcome: 'ok',
          details: {
            format,
            path: out,
            sha256: result.sha256,
            tables: result.tables.length,
            tool: result.tool ?? null,
          },
        };
      } catch (err) {
        await db.query('ROLLBACK').catch(() => undefined);
        // A half-written export must not pass for one.
        rmSync(out, { recursive: true, force: true });
        rmSync(`${out}.manifest.json`, { force: true });
        throw err;
      }
    },
    false,
  );
}

async function tenantRecord(
  db: SqlRunner,
  admin: TenantAdmin,
  id: string,
): Promise<{ id: string; schema: string; role: string | null; status: string }> {
  const { rows } = await db.query(
    `SELECT id, schema_name AS schema, role_name AS role, status, to_jsonb(t) ->> 'upstream' AS upstream
       FROM ${quoteIdent(admin.config.tenancy.registry.schema)}.tenants t WHERE id = $1`,
    [id],
  );
  const row = rows[0] as
    { id: string; schema: string; role: string | null; status: string; upstream: string | null } | undefined;
  if (row === undefined) throw new TenantError('not_found', `tenant "${id}" is not registered`);
  if (row.status === TenantStatus.Deleted) throw new TenantError('wrong_status', `tenant "${id}" was deleted`);
  refuseOtherUpstream('export', row);
  return row;
}

async function exportJsonl(
  db: SqlRunner,
  admin: TenantAdmin,
  record: { id: string; schema: string; role: string | null },
  out: string,
): Promise<ExportResult> {
  const manifestTables: JsonlManifest['tables'] = [];
  for (const table of await tables(db, record.schema)) {
    const file = `${table.name}.jsonl`;
    const hash = createHash('sha256');
    const handle = await open(join(out, file), 'wx', 0o640);
    let buffered = '';
    try {
      const rows = await eachLine(db, table.name, async (text) => {
        buffered += `${text}\n`;
        if (buffered.length > 1 << 20) {
          hash.update(buffered);
          await handle.write(buffered);
          buffered = '';
        }
      });
      hash.update(buffered);
      await handle.write(buffered);
      manifestTables.push({ name: table.name, rows, file, sha256: hash.digest('hex') });
    } finally {
      await handle.close();
    }
  }
  const { ddl, grants, skipped } = await schemaDdl(db, record.schema);
  const manifest: JsonlManifest = {
    manifestVersion: 1,
    format: 'jsonl',
    tenant: record.id,
    schema: record.schema,
    role: record.role,
    proxyRole: proxyRoleOf(admin.config),
    exportedAt: new Date().toISOString(),
    server: (await serverVersion(db)).text,
    bytea: 'hex',
    tables: manifestTables,
    ddl,
    grants,
    skipped,
  };
  const text = `${JSON.stringify(manifest, null, 2)}\n`;
  writeFileSync(join(out, 'manifest.json'), text, { flag: 'wx', mode: 0o640 });
  return { tenant: record.id, format: 'jsonl', path: out, sha256: sha256(text), tables: manifestTables, skipped };
}

async function exportDump(
  db: SqlRunner,
  admin: TenantAdmin,
  record: { id: string; schema: string; role: string | null },
  out: string,
): Promise<ExportResult> {
  const server = await serverVersion(db);
  const [pgDump] = findPgDump(server.major);
  if (pgDump === undefined) {
    throw new TenantError(
      'conflict',
      `no pg_dump of major version ${server.major} or newer under /usr/lib/postgresql/*/bin; use --format jsonl, which needs none`,
    );
  }
  const version = (await run(pgDump, ['--version'], {})).stdout.trim();
  const counts: Array<{ name: string; rows: number }> = [];
  for (const table of await tables(db, record.schema)) {
    const { rows } = await db.query(`SELECT count(*)::bigint AS n FROM ${quoteIdent(table.name)}`);
    counts.push({ name: table.name, rows: Number((rows[0] as { n: string }).n) });
  }
  // pg_dump reads the snapshot these counts were taken in.
  const { rows } = await db.query('SELECT pg_catalog.pg_export_snapshot() AS s');
  const snapshot = (rows[0] as { s: string }).s;
  await run(
    pgDump,
    ['--schema', record.schema, '--format', 'custom', '--file', out, '--snapshot', snapshot, '--no-password'],
    libpqEnv(admin),
  );
  const digest = sha256(readFileSync(out));
  const manifest: DumpManifest = {
    manifestVersion: 1,
    format: 'dump',
    tenant: record.id,
    schema: record.schema,
    role: record.role,
    exportedAt: new Date().toISOString(),
    server: server.text,
    tool: `${pgDump} (${version})`,
    sha256: digest,
    tables: counts,
  };
  writeFileSync(`${out}.manifest.json`, `${JSON.stringify(manifest, null, 2)}\n`, { flag: 'wx', mode: 0o640 });
  return {
    tenant: record.id,
    format: 'dump',
    path: out,
    sha256: digest,
    tables: counts,
    tool: manifest.tool,
    skipped: [],
  };
}
