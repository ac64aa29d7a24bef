// Tenant import: a new tenant created from a jsonl export (in create's transaction) or a dump (pg_restore), checked against its manifest.
import { createHash } from 'node:crypto';
import { existsSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { quoteIdent } from '../auth/identity.js';
import { proxyRoleOf } from './admin-connection.js';
import { readJson, sha256, type DumpManifest, type ImportResult, type JsonlManifest } from './export-manifest.js';
import { TenantAdmin } from './lifecycle.js';
import { findPgDump, libpqEnv, run, serverVersion } from './pg-tools.js';
import { eachLine, loadTable } from './table-rows.js';
import { TenantError } from './tenant-error.js';
import { tenantNames } from './tenant-input.js';

/**
 * Creates tenant `id` from an export. jsonl: inside create's own transaction (the schema filled as its migrations
 * step), so a failed load or a count or checksum that differs from the manifest leaves no tenant behind. dump: only
 * into a tenant whose schema name is the dumped one (pg_restore cannot rename a schema).
 */
export async function importTenant(admin: TenantAdmin, id: string, options: { from: string }): Promise<ImportResult> {
  const from = resolve(options.from);
  if (!existsSync(from)) throw new TenantError('invalid_argument', `--from ${from} does not exist`);
  if (existsSync(join(from, 'manifest.json'))) return importJsonl(admin, id, from);
  if (existsSync(`${from}.manifest.json`)) return importDump(admin, id, from);
  throw new TenantError(
    'invalid_argument',
    `${from} is neither a jsonl export (a directory with manifest.json) nor a dump with its .manifest.json`,
  );
}

async function importJsonl(admin: TenantAdmin, id: string, from: string): Promise<ImportResult> {
  const manifest = readJson<JsonlManifest>(join(from, 'manifest.json'));
  if (manifest.format !== 'jsonl' || manifest.manifestVersion !== 1)
    throw new TenantError('invalid_argument', `${from}/manifest.json is not a version 1 jsonl manifest`);
  for (const t of manifest.tables) {
    const digest = sha256(readFileSync(join(from, t.file)));
    if (digest !== t.sha256)
      throw new TenantError('invalid_argument', `${t.file}: SHA-256 ${digest} differs from the manifest's ${t.sha256}`);
  }
  const proxyRole = proxyRoleOf(admin.config);
  const skippedGrants: string[] = [];
  let loaded: ImportResult['tables'] = [];
  const filling = await TenantAdmin.open(admin.config, {
    ...admin.adminOptions,
    actor: admin.actor,
    migrate: async (db, tenant) => {
      await db.query(`SET LOCAL search_path = ${quoteIdent(tenant.schema)}`);
      if (tenant.role !== null) await db.query(`SET LOCAL ROLE ${quoteIdent(tenant.role)}`);
      for (const sql of manifest.ddl.preData) await db.query(sql);
      loaded = [];
      for (const t of manifest.tables)
        loaded.push({ name: t.name, rows: await loadTable(db, t.name, join(from, t.file)) });
      for (const sql of manifest.ddl.postData) await db.query(sql);
      for (const g of manifest.grants) {
        const grantee =
          g.grantee === manifest.role ? tenant.role : g.grantee === manifest.proxyRole ? proxyRole : g.grantee;
        if (grantee === null) continue;
        if (grantee !== 'PUBLIC') {
          const { rows } = await db.query('SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = $1', [grantee]);
          if (rows.length === 0) {
            skippedGrants.push(`${g.privilege} on ${g.name} to ${g.grantee}`);
            continue;
          }
        }
        const to = grantee === 'PUBLIC' ? 'PUBLIC' : quoteIdent(grantee);
        const columns = g.column === undefined ? '' : ` (${quoteIdent(g.column)})`;
        await db.query(
          `GRANT ${g.privilege}${columns} ON ${g.kind} ${quoteIdent(g.name)} TO ${to}${g.grantable ? ' WITH GRANT OPTION' : ''}`,
        );
      }
      // What was loaded must read back as the export wrote it.
      for (const t of manifest.tables) {
        const hash = createHash('sha256');
        const rows = await eachLine(db, t.name, (text) => void hash.update(`${text}\n`));
        const digest = hash.digest('hex');
        if (rows !== t.rows || digest !== t.sha256) {
          throw new Error(
            `table ${t.name} reads back ${rows} rows with SHA-256 ${digest}; the manifest says ${t.rows} rows, ${t.sha256}`,
          );
        }
      }
      if (tenant.role !== null) await db.query('RESET ROLE');
      await db.query('SET LOCAL search_path TO DEFAULT');
      return null;
    },
  });
  try {
    const created = await filling.create(id);
    if (created.outcome === 'exists')
      throw new TenantError('wrong_status', `tenant "${id}" exists already; import creates a new tenant`);
  } finally {
    await filling.close();
  }
  return admin.runVerb<ImportResult>('import', id, () => {
    const result: ImportResult = { tenant: id, format: 'jsonl', from, tables: loaded, skippedGrants };
    return Promise.resolve({
      result,
      outcome: 'ok' as const,
      details: { format: 'jsonl', from, source: manifest.tenant, tables: loaded.length, skippedGrants },
    });
  });
}

/**
 * Restores a dump into a new tenant with the dumped schema's name: create makes role, schema, grants and record,
 * then pg_restore (the newest one compatible with the server) fills the schema in one transaction, as the tenant's
 * role (--no-owner --role), leaving out the dump's CREATE SCHEMA. Row counts are checked against the sidecar
 * manifest. On any failure the tenant this import created is removed again.
 */
async function importDump(admin: TenantAdmin, id: string, from: string): Promise<ImportResult> {
  const manifest = readJson<DumpManifest>(`${from}.manifest.json`);
  const digest = sha256(readFileSync(from));
  if (digest !== manifest.sha256)
    throw new TenantError(
      'invalid_argument',
      `${from}: SHA-256 ${digest} differs from the manifest's ${manifest.sha256}`,
    );
  const { schema } = tenantNames(admin.config, id);
  if (schema !== manifest.schema) {
    throw new TenantError(
      'invalid_argument',
      `a dump restores only into its own schema name (${manifest.schema}); tenant "${id}" would be ${schema}: import the jsonl format to rename`,
    );
  }
  const created = await admin.create(id);
  if (created.outcome === 'exists')
    throw new TenantError('wrong_status', `tenant "${id}" exists already; import creates a new tenant`);
  const role = created.tenant.role;
  try {
    return await admin.runVerb<ImportResult>(
      'import',
      id,
      async (db) => {
        const server = await serverVersion(db);
        const [pgRestore] = findPgDump(server.major, 'pg_restore');
        if (pgRestore === undefined)
          throw new TenantError(
            'conflict',
            `no pg_restore of major version ${server.major} or newer under /usr/lib/postgresql/*/bin`,
          );
        const env = libpqEnv(admin);
        const { stdout: toc } = await run(pgRestore, ['--list', from], env);
        const mine = new RegExp(
          `(^|\\s)(SCHEMA - ${escapeRegExp(schema)}|ACL - SCHEMA ${escapeRegExp(schema)}|COMMENT - SCHEMA ${escapeRegExp(schema)})\\s`,
        );
        const listFile = `${from}.restore-list.${process.pid}`;
        writeFileSync(
          listFile,
          toc
            .split('\n')
            .filter((line) => !mine.test(line))
            .join('\n'),
          { mode: 0o600 },
        );
        try {
          await run(
            pgRestore,
            [
              '--use-list',
              listFile,
              '--dbname',
              env['PGDATABASE']!,
              '--single-transaction',
              '--exit-on-error',
              '--no-owner',
              ...(role === null ? [] : ['--role', role]),
              '--no-password',
              from,
            ],
            env,
          );
        } finally {
          rmSync(listFile, { force: true });
        }
        const tablesRestored: ImportResult['tables'] = [];
        for (const t of manifest.tables) {
          const { rows } = await db.query(
            `SELECT count(*)::bigint AS n FROM ${quoteIdent(schema)}.${quoteIdent(t.name)}`,
          );
          const n = Number((rows[0] as { n: string }).n);
          if (n !== t.rows)
            throw new Error(`table ${t.name} has ${n} rows after the restore; the manifest says ${t.rows}`);
          tablesRestored.push({ name: t.name, rows: n });
        }
        const result: ImportResult = { tenant: id, format: 'dump', from, tables: tablesRestored, skippedGrants: [] };
        return {
          result,
          outcome: 'ok',
          details: { format: 'dump', from, tool: pgRestore, source: manifest.tenant, tables: tablesRestored.length },
        };
      },
      false,
    );
  } catch (err) {
    await removeNewTenant(admin, id, schema, role).catch(() => undefined);
    throw err;
  }
}

/** Undoes the create of a failed dump import (the tenant never held data of its own). */
function removeNewTenant(admin: TenantAdmin, id: string, schema: string, role: string | null): Promise<void> {
  return admin.runVerb<undefined>('import_undo', id, async (db) => {
    await db.query(`DROP SCHEMA IF EXISTS ${quoteIdent(schema)} CASCADE`);
    if (role !== null) {
      await db.query(`DROP OWNED BY ${quoteIdent(role)}`);
      await db.query(`DROP ROLE ${quoteIdent(role)}`);
    }
    await db.query(`DELETE FROM ${quoteIdent(admin.config.tenancy.registry.schema)}.tenants WHERE id = $1`, [id]);
    return {
      result: undefined,
      outcome: 'ok',
      details: { reason: 'the import failed; the tenant it created was removed' },
    };
  });
}

function escapeRegExp(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}
