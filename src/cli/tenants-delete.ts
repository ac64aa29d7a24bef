// `tenants delete|purge|certificate|export|import`: their options, the confirmation a destructive verb needs, their output.
import { createInterface } from 'node:readline/promises';
import {
  parseDuration,
  type DeleteTenantResult,
  type DeletionCertificate,
  type PurgeResult,
} from '../tenants/delete.js';
import { exportTenant } from '../tenants/export.js';
import type { ExportFormat, ExportResult, ImportResult } from '../tenants/export-manifest.js';
import { importTenant } from '../tenants/import.js';
import type { TenantAdmin } from '../tenants/lifecycle.js';
import { UsageError, type Options } from './admin-command.js';

export const DELETE_VERBS: Record<string, { options: Options; id: boolean }> = {
  delete: {
    options: {
      grace: { type: 'string' },
      export: { type: 'string' },
      'export-format': { type: 'string' },
      yes: { type: 'boolean' },
    },
    id: true,
  },
  purge: { options: {}, id: false },
  certificate: { options: {}, id: true },
  export: { options: { out: { type: 'string' }, format: { type: 'string' } }, id: true },
  import: { options: { from: { type: 'string' } }, id: true },
};

export const DELETE_USAGE = `  delete ID --yes [--grace DURATION] [--export PATH [--export-format jsonl|dump]]
                                                     suspend, export, drop schema and role, verify, certify;
                                                     with --grace (7d, 12h, 30m) schedule it for purge instead
  purge                                              complete every deletion whose grace period is over (cron)
  certificate ID                                     print a deleted tenant's deletion certificate (JSON)
  export ID --out PATH [--format jsonl|dump]         jsonl: a directory of <table>.jsonl + manifest.json;
                                                     dump: pg_dump -Fc of the schema (a compatible pg_dump needed)
  import ID --from PATH                              create tenant ID from an export and check it against the manifest
`;

/** How the CLI asks before destroying: null when there is no terminal to ask on. */
export type Confirm = ((question: string) => Promise<boolean>) | null;

export function terminalConfirm(): Confirm {
  if (process.stdin.isTTY !== true || process.stderr.isTTY !== true) return null;
  return async (question) => {
    const rl = createInterface({ input: process.stdin, output: process.stderr });
    try {
      return /^y(es)?$/i.test((await rl.question(`${question} [y/N] `)).trim());
    } finally {
      rl.close();
    }
  };
}

/** A usage error (exit 2) thrown by these verbs; tenants.ts reports it like its own. */
export class DeleteUsageError extends UsageError {}

/**
 * What these verbs check before anything connects: their option values, and for delete --yes or a "y" typed on the
 * terminal. Called by tenants.ts before it opens the admin session, and again (answering at once) by dispatch.
 */
export async function preflightDeletion(
  verb: string,
  id: string | null,
  values: Record<string, unknown>,
  confirm: Confirm,
): Promise<{ graceSeconds: number }> {
  const formatOption = values[verb === 'export' ? 'format' : 'export-format'];
  parseFormat(typeof formatOption === 'string' ? formatOption : undefined);
  if (verb !== 'delete') return { graceSeconds: 0 };
  const graceOption = values['grace'];
  const graceText = typeof graceOption === 'string' ? graceOption : undefined;
  const graceSeconds = graceText === undefined ? 0 : parseDuration(graceText);
  if (graceSeconds === null)
    throw new DeleteUsageError(`--grace takes a duration such as 7d, 12h, 30m or 45s (got "${graceText}")`);
  if (values['yes'] !== true) {
    if (confirm === null)
      throw new DeleteUsageError(
        `tenants delete destroys tenant ${id}'s data: pass --yes (there is no terminal to ask on)`,
      );
    const when = graceSeconds === 0 ? 'now' : `after ${graceText}`;
    if (!(await confirm(`Delete tenant ${id} and all its data ${when}?`)))
      throw new NotConfirmedError(`deletion of tenant ${id} not confirmed; nothing changed`);
    // Asked once: the dispatch that follows must not ask again.
    values['yes'] = true;
  }
  return { graceSeconds };
}

/** The user answered no (exit 1: nothing wrong with the command, it just did not run). */
export class NotConfirmedError extends Error {}

export async function dispatchDeletion(
  admin: TenantAdmin,
  verb: string,
  id: string | null,
  values: Record<string, unknown>,
  json: boolean,
  confirm: Confirm,
): Promise<{ text: string; status: number }> {
  const str = (name: string): string | undefined => (typeof values[name] === 'string' ? values[name] : undefined);
  const emit = (result: unknown, text: string): string => (json ? `${JSON.stringify(result, null, 2)}\n` : `${text}\n`);
  switch (verb) {
    case 'delete': {
      const { graceSeconds } = await preflightDeletion(verb, id, values, confirm);
      const exportPath = str('export');
      const exportFormat = parseFormat(str('export-format'));
      let exported: ExportResult | undefined;
      if (exportPath !== undefined) {
        // Frozen first: what is exported is what is deleted.
        const current = (await admin.list()).find((t) => t.id === id);
        if (current?.status === 'active') await admin.suspend(id!, 'deletion requested');
        exported = await exportTenant(admin, id!, { out: exportPath, format: exportFormat });
      }
      const result = await admin.delete(id!, {
        graceSeconds,
        ...(exported !== undefined && {
          export: { format: exported.format, path: exported.path, sha256: exported.sha256 },
        }),
      });
      return { text: emit(result, describeDelete(result)), status: 0 };
    }
    case 'purge': {
      const result = await admin.purge();
      return { text: emit(result, describePurge(result)), status: result.failed.length === 0 ? 0 : 1 };
    }
    case 'certificate': {
      const certificate = await admin.certificate(id!);
      return { text: `${JSON.stringify(certificate, null, 2)}\n`, status: 0 };
    }
    case 'export': {
      const out = str('out');
      if (out === undefined) throw new DeleteUsageError('tenants export needs --out PATH');
      const result = await exportTenant(admin, id!, { out, format: parseFormat(str('format')) });
      return { text: emit(result, describeExport(result)), status: 0 };
    }
    case 'import': {
      const from = str('from');
      if (from === undefined) throw new DeleteUsageError('tenants import needs --from PATH');
      const result = await importTenant(admin, id!, { from });
      return { text: emit(result, describeImport(result)), status: 0 };
    }
    default:
      throw new DeleteUsageError(`unknown verb "${verb}"`);
  }
}

function parseFormat(value: string | undefined): ExportFormat {
  if (value === undefined || value === 'jsonl' || value === 'dump') return value ?? 'jsonl';
  throw new DeleteUsageError(`unknown export format "${value}" (jsonl or dump)`);
}

function describeDelete(result: DeleteTenantResult): string {
  if (result.outcome === 'scheduled')
    return `tenant ${result.tenant.id} scheduled for deletion at ${result.dueAt} (tenants resume cancels, tenants purge completes)`;
  return `deleted tenant ${result.tenant.id}: ${summary(result.certificate!)}`;
}

function summary(c: DeletionCertificate): string {
  const passed = c.checks.filter((k) => k.passed).length;
  return `${c.dropped.tables.length} tables (${c.dropped.totalRows} rows) dropped with schema ${c.schema}${c.role === null ? '' : ` and role ${c.role}`}; ${passed}/${c.checks.length} checks passed; certificate ${c.id ?? '?'}`;
}

function describePurge(result: PurgeResult): string {
  if (result.deleted.length === 0 && result.failed.length === 0) return 'no deletion is due';
  return [
    ...result.deleted.map((d) => `deleted tenant ${d.tenant}: ${summary(d.certificate)}`),
    ...result.failed.map((f) => `failed to delete tenant ${f.tenant}: ${f.error}`),
  ].join('\n');
}

function describeExport(result: ExportResult): string {
  const rows = result.tables.reduce((sum, t) => sum + t.rows, 0);
  const tool = result.tool === undefined ? '' : ` with ${result.tool}`;
  return `exported tenant ${result.tenant} (${result.tables.length} tables, ${rows} rows) to ${result.path} as ${result.format}${tool}; sha256 ${result.sha256}`;
}

function describeImport(result: ImportResult): string {
  const rows = result.tables.reduce((sum, t) => sum + t.rows, 0);
  return `imported ${result.format} export into tenant ${result.tenant} (${result.tables.length} tables, ${rows} rows; row counts and checksums match the manifest)`;
}
