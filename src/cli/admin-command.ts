// What the admin-connection commands share (migrate, tenants query, tenants <verb>): output, flags, the audited admin
// session, and one mapping of errors to messages and exit statuses.
import { parseArgs, type ParseArgsConfig } from 'node:util';
import type pg from 'pg';
import { LifecycleAudit } from '../audit/lifecycle-audit.js';
import { ConfigError } from '../config/load.js';
import type { Config } from '../config/schema.js';
import { connectAdmin, proxyRoleOf } from '../tenants/admin-connection.js';
import { ensureRegistry } from '../tenants/registry-schema.js';
import { RegistryStore, type LifecycleEvent } from '../tenants/registry-store.js';
import { TenantError } from '../tenants/tenant-error.js';
import { tenantNames } from '../tenants/tenant-input.js';

/** Where a command writes; tests pass their own. */
export interface CliOutput {
  stdout: (text: string) => void;
  stderr: (text: string) => void;
}

export const processOutput: CliOutput = {
  stdout: (text) => process.stdout.write(text),
  stderr: (text) => process.stderr.write(text),
};

/** Something wrong with what was asked: exit status 2, and a pointer to the command's --help. */
export class UsageError extends Error {}

/** A command's option declarations, as node:util parseArgs takes them. */
export type Options = NonNullable<ParseArgsConfig['options']>;

/** The flags every admin command takes: its config, who acts, and JSON output. */
export const COMMON_FLAGS = {
  config: { type: 'string', short: 'c' },
  actor: { type: 'string' },
  json: { type: 'boolean', default: false },
} as const satisfies Options;

/**
 * The frame of `pg-tenant-proxy <command>` over one admin session: --help prints the usage; otherwise `body` runs
 * with `open` to get the session, closed however the body ends, and any error becomes its message and exit status.
 */
export async function runAdminCommand(
  frame: { command: string; argv: string[]; printUsage: () => void; stderr: (text: string) => void },
  body: (open: (config: Config) => Promise<AdminSession>) => Promise<number>,
): Promise<number> {
  if (wantsHelp(frame.argv)) {
    frame.printUsage();
    return 0;
  }
  let session: AdminSession | undefined;
  try {
    return await body(async (config) => (session = await openAdminSession(config, `pg-tenant-proxy ${frame.command}`)));
  } catch (err) {
    return reportError(err, frame.command, frame.stderr);
  } finally {
    await session?.close();
  }
}

function wantsHelp(argv: string[]): boolean {
  return argv.includes('--help') || argv.includes('-h');
}

/**
 * node:util parseArgs with its complaints as UsageError (their first sentence). With `command`, an unknown option is
 * named as one of that command's.
 */
export function parseFlags<T extends ParseArgsConfig>(config: T, command?: string): ReturnType<typeof parseArgs<T>> {
  try {
    return parseArgs(config);
  } catch (err) {
    const message = (err as Error).message;
    const option = /'(-[^']*)'/.exec(message)?.[1];
    if (command !== undefined && (err as { code?: string }).code === 'ERR_PARSE_ARGS_UNKNOWN_OPTION' && option) {
      throw new UsageError(`unknown option ${option} for ${command}`);
    }
    throw new UsageError(message.split('. ')[0]);
  }
}

/** A duration as PostgreSQL settings take it ('5000ms'): 250ms, 5s, 10min (or 10m), 1h; a bare number is seconds. */
export function parseTimeout(flag: string, text: string): string {
  const match = /^(\d+)(ms|s|min|m|h)?$/.exec(text.trim());
  const unit = { ms: 1, s: 1000, min: 60_000, m: 60_000, h: 3_600_000 } as const;
  const ms = match === null ? NaN : Number(match[1]) * unit[(match[2] ?? 's') as keyof typeof unit];
  if (!Number.isSafeInteger(ms) || ms <= 0 || ms > 2_147_483_647) {
    throw new UsageError(`${flag}: invalid duration "${text}" (e.g. 500ms, 5s, 10min, 1h)`);
  }
  return `${ms}ms`;
}

/** A count flag (--concurrency, --canary): a whole number from 1 to 1000, or the fallback when not given. */
export function positiveInt(flag: string, text: string | undefined, fallback: number): number {
  if (text === undefined) return fallback;
  if (!/^\d+$/.test(text) || Number(text) < 1 || Number(text) > 1000)
    throw new UsageError(`${flag} takes a whole number from 1 to 1000 (got "${text}")`);
  return Number(text);
}

/** A --tenants a,b value: the ids, each valid for this config; undefined when the flag was not given. */
export function tenantList(config: Config, text: string | undefined): string[] | undefined {
  if (text === undefined) return undefined;
  const tenants = text
    .split(',')
    .map((t) => t.trim())
    .filter((t) => t !== '');
  if (tenants.length === 0) throw new UsageError('--tenants needs at least one tenant id');
  for (const id of tenants) tenantNames(config, id);
  return tenants;
}

/** An admin connection with the registry ready, and the events table and audit trail to record a run in. */
export interface AdminSession {
  db: pg.Client;
  /** Records the event in the registry, then the audit file; best effort: a registry that fails is passed over. */
  record(event: LifecycleEvent, bestEffort?: boolean): Promise<void>;
  close(): Promise<void>;
}

/** Opens the audit trail, connects as admin.url and creates or upgrades the registry. */
export async function openAdminSession(config: Config, applicationName: string): Promise<AdminSession> {
  const audit = new LifecycleAudit(config);
  let db: pg.Client | undefined;
  try {
    db = await connectAdmin(config, applicationName);
    await ensureRegistry(db, config.tenancy.registry.schema, proxyRoleOf(config));
  } catch (err) {
    audit.close();
    await db?.end().catch(() => undefined);
    throw err;
  }
  const client = db;
  const store = new RegistryStore(config.tenancy.registry.schema);
  return {
    db: client,
    async record(event, bestEffort = false) {
      const recorded = store.recordEvent(client, event);
      await (bestEffort ? recorded.catch(() => undefined) : recorded);
      audit.write(event);
    },
    async close() {
      audit.close();
      await client.end().catch(() => undefined);
    },
  };
}

/**
 * Writes the one-line error of `pg-tenant-proxy <command>` and returns the exit status: 2 for usage and configuration,
 * a TenantError's own, else 1. `wholeMessage` keeps every line of those three kinds (tenants prints them whole).
 */
export function reportError(
  err: unknown,
  command: string,
  stderr: (text: string) => void,
  wholeMessage = false,
): number {
  const text = (err as Error).message ?? String(err);
  const firstLine = text.split('\n')[0]!;
  const message = wholeMessage ? text : firstLine;
  if (err instanceof UsageError) {
    stderr(`pg-tenant-proxy ${command}: ${message} (see pg-tenant-proxy ${command} --help)\n`);
    return 2;
  }
  if (err instanceof ConfigError) {
    stderr(`pg-tenant-proxy ${command}: invalid configuration: ${message}\n`);
    return 2;
  }
  if (err instanceof TenantError) {
    stderr(`pg-tenant-proxy ${command}: ${message}\n`);
    return err.exitStatus;
  }
  stderr(`pg-tenant-proxy ${command}: ${firstLine}\n`);
  return 1;
}
