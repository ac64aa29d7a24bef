// `pg-tenant-proxy tenants <verb>`: argv → lifecycle verb → one-line result (or JSON) on stdout, one-line error on stderr.
import { loadConfig } from '../config/load.js';
import { renderTable } from '../format/table.js';
import { defaultActor } from '../tenants/actor.js';
import { checkUpstream, proxyRoleOn } from '../routing/upstream-admin.js';
import { renderRoute } from '../routing/route-info.js';
import { TenantAdmin } from '../tenants/lifecycle.js';
import type {
  CreateTenantResult,
  StatusChangeResult,
  TenantAdminOptions,
  TenantDetails,
  UpdateTenantResult,
} from '../tenants/lifecycle-types.js';
import type { TenantRecord } from '../tenants/registry-store.js';
import { parseStatus, tenantNames } from '../tenants/tenant-input.js';
import {
  COMMON_FLAGS,
  parseFlags,
  processOutput,
  reportError,
  UsageError,
  type CliOutput,
  type Options,
} from './admin-command.js';
import { LIMITS_OPTIONS, LIMITS_USAGE, limitsChange, renderLimits } from './tenants-limits.js';
import {
  DELETE_USAGE,
  DELETE_VERBS,
  dispatchDeletion,
  preflightDeletion,
  terminalConfirm,
  type Confirm,
} from './tenants-delete.js';

export const TENANTS_USAGE = `usage: pg-tenant-proxy tenants <verb> --config FILE [--actor NAME] [--json]

verbs:
  create ID [--tier T] [--canary] [--issuer NAME] [--from-template SCHEMA] [--upstream U] [--dedicated]
                                                     role (tenancy.roles), schema, grants, then the migrations of
                                                     tenancy.migrationsDir or a structural copy of SCHEMA, registry
                                                     record; a second create of the same id changes nothing.
                                                     --upstream places it on that upstream (through its adminUrl;
                                                     the record stays in default's registry); --dedicated records
                                                     placement dedicated rather than shared
  route ID                                           upstream, database and placement its transactions go to
  update ID [--tier T] [--canary true|false] [--issuer NAME]
  list [--status active|suspended|deleting|deleted]
  show ID                                            status, tier, schema size and tables, connected clients
  suspend ID --reason TEXT                           refuse new logins, end sessions as their transactions end
  resume ID                                          admit the tenant again (cancels a scheduled deletion)
${LIMITS_USAGE}
${DELETE_USAGE}
  usage [--since DATE] [--until DATE] [--tenant ID] [--storage] [--format table|csv|json]
                                                     usage per tenant and hour (pg-tenant-proxy tenants usage --help)
--actor names who acts in the registry's events and the audit trail (default: the OS user).
Connects with admin.url (PGTP_ADMIN_URL, password PGTP_ADMIN_PASSWORD); creates or upgrades the registry first.
Exit status: 0 done, 2 usage or configuration error, 1 failure (unknown tenant, wrong status, database unreachable).
`;

/** Per verb: its own options, and whether it takes a tenant id. */
const VERBS: Record<string, { options: Options; id: boolean }> = {
  create: {
    options: {
      tier: { type: 'string' },
      canary: { type: 'boolean' },
      issuer: { type: 'string' },
      'from-template': { type: 'string' },
      upstream: { type: 'string' },
      dedicated: { type: 'boolean' },
    },
    id: true,
  },
  route: { options: {}, id: true },
  update: { options: { tier: { type: 'string' }, canary: { type: 'string' }, issuer: { type: 'string' } }, id: true },
  list: { options: { status: { type: 'string' } }, id: false },
  show: { options: {}, id: true },
  suspend: { options: { reason: { type: 'string' } }, id: true },
  resume: { options: {}, id: true },
  limits: { options: LIMITS_OPTIONS, id: true },
  ...DELETE_VERBS,
};

/** Runs `tenants …` and returns the exit status; nothing but the result reaches stdout. */
export async function runTenants(
  argv: string[],
  out: CliOutput = processOutput,
  env: NodeJS.ProcessEnv = process.env,
  confirm: Confirm = terminalConfirm(),
): Promise<number> {
  const [verb, ...rest] = argv;
  if (verb === undefined || verb === 'help' || verb === '--help' || verb === '-h') {
    (verb === undefined ? out.stderr : out.stdout)(TENANTS_USAGE);
    return verb === undefined ? 2 : 0;
  }
  try {
    const spec = VERBS[verb];
    if (spec === undefined) throw new UsageError(`unknown verb "${verb}" (one of ${Object.keys(VERBS).join(', ')})`);
    const { values, positionals } = parse(verb, spec.options, rest);
    const id = takeId(verb, spec.id, positionals);
    if (typeof values['config'] !== 'string') throw new UsageError(`tenants ${verb} needs --config FILE`);
    const config = loadConfig(values['config'], env);
    if (id !== null) tenantNames(config, id);
    const json = values['json'] === true;
    // Bad values are refused before anything connects.
    const change = verb === 'limits' ? limitsChange(values) : null;
    if (verb in DELETE_VERBS) await preflightDeletion(verb, id, values, confirm);
    const adminOptions: TenantAdminOptions = typeof values['actor'] === 'string' ? { actor: values['actor'] } : {};
    // A new tenant is a structural copy of a template schema, or else gets every migration of tenancy.migrationsDir.
    const template = values['from-template'];
    if (verb === 'create' && typeof values['upstream'] === 'string') checkUpstream(config, values['upstream']);
    if (verb === 'create' && typeof template === 'string') {
      const { copyTemplate } = await import('../tenants/template.js');
      const proxyRole = proxyRoleOn(config, typeof values['upstream'] === 'string' ? values['upstream'] : 'default');
      adminOptions.migrate = async (db, tenant) => {
        await copyTemplate(db, template, tenant, proxyRole);
        return null;
      };
    } else if (verb === 'create' && config.tenancy.migrationsDir !== undefined) {
      // Loaded only here: the parser it needs is not worth every verb's start-up.
      const { createMigrationHooks } = await import('../migrations/create-hooks.js');
      Object.assign(adminOptions, await createMigrationHooks(config, adminOptions.actor ?? defaultActor()));
    }
    const admin = await TenantAdmin.open(config, adminOptions);
    try {
      if (verb in DELETE_VERBS) {
        const { text, status } = await dispatchDeletion(admin, verb, id, values, json, confirm);
        out.stdout(text);
        return status;
      }
      if (change !== null) {
        const { tenantLimitsVerb } = await import('../limits/limits-verb.js');
        const result = await tenantLimitsVerb(admin, id!, change);
        // Without the registry proxies admit by schema and read no record: the tenant's own limits wait for it.
        const unread = config.tenancy.registry.enabled
          ? ''
          : 'note: tenancy.registry.enabled is false in this config: proxies apply limits.default to every tenant\n';
        out.stdout(json ? `${JSON.stringify(result, null, 2)}\n` : renderLimits(result) + unread);
        return 0;
      }
      out.stdout(await dispatch(admin, verb, id, values, json));
    } finally {
      await admin.close();
    }
    return 0;
  } catch (err) {
    return reportError(err, 'tenants', out.stderr, true);
  }
}

function parse(
  verb: string,
  options: Options,
  args: string[],
): { values: Record<string, unknown>; positionals: string[] } {
  return parseFlags(
    { args, options: { ...COMMON_FLAGS, ...options }, allowPositionals: true, strict: true },
    `tenants ${verb}`,
  );
}

function takeId(verb: string, wantsId: boolean, positionals: string[]): string | null {
  if (!wantsId) {
    if (positionals.length > 0) throw new UsageError(`tenants ${verb} takes no tenant id (got "${positionals[0]}")`);
    return null;
  }
  if (positionals.length === 0) throw new UsageError(`tenants ${verb} needs a tenant id`);
  if (positionals.length > 1) throw new UsageError(`tenants ${verb} takes one tenant id (got ${positionals.length})`);
  return positionals[0]!;
}

async function dispatch(
  admin: TenantAdmin,
  verb: string,
  id: string | null,
  values: Record<string, unknown>,
  json: boolean,
): Promise<string> {
  const str = (name: string): string | undefined => {
    const value = values[name];
    return typeof value === 'string' ? value : undefined;
  };
  const emit = (result: unknown, text: string): string => (json ? `${JSON.stringify(result, null, 2)}\n` : `${text}\n`);
  switch (verb) {
    case 'create': {
      const result = await admin.create(id!, {
        tier: str('tier'),
        canary: values['canary'] === true,
        issuer: str('issuer'),
        upstream: str('upstream'),
        dedicated: values['dedicated'] === true,
      });
      return emit(result, describeCreate(result));
    }
    case 'route': {
      const info = await admin.route(id!);
      return json ? `${JSON.stringify(info, null, 2)}\n` : renderRoute(info);
    }
    case 'update': {
      const canary = str('canary');
      if (canary !== undefined && canary !== 'true' && canary !== 'false')
        throw new UsageError('--canary takes true or false');
      const tier = str('tier');
      const issuer = str('issuer');
      // An empty value clears the field.
      const result = await admin.update(id!, {
        ...(tier !== undefined && { tier: tier === '' ? null : tier }),
        ...(canary !== undefined && { canary: canary === 'true' }),
        ...(issuer !== undefined && { issuer: issuer === '' ? null : issuer }),
      });
      return emit(result, describeUpdate(result));
    }
    case 'list': {
      const status = str('status');
      const tenants = await admin.list(status === undefined ? {} : { status: parseStatus(status) });
      return json ? `${JSON.stringify(tenants, null, 2)}\n` : renderList(tenants);
    }
    case 'show': {
      const details = await admin.show(id!);
      return json ? `${JSON.stringify(details, null, 2)}\n` : renderDetails(details);
    }
    case 'suspend': {
      const reason = str('reason');
      if (reason === undefined) throw new UsageError('tenants suspend needs --reason TEXT');
      const result = await admin.suspend(id!, reason);
      return emit(result, describeStatusChange(result));
    }
    case 'resume': {
      const result = await admin.resume(id!);
      return emit(result, describeStatusChange(result));
    }
    default:
      throw new UsageError(`unknown verb "${verb}"`);
  }
}

function describeCreate(result: CreateTenantResult): string {
  const t = result.tenant;
  if (result.outcome === 'exists') return `tenant ${t.id} already exists (status ${t.status}); nothing changed`;
  const parts = [`schema ${t.schema}`];
  if (t.role !== null) parts.push(`role ${t.role}`);
  if (t.tier !== null) parts.push(`tier ${t.tier}`);
  if (t.canary) parts.push('canary');
  if (t.issuer !== null) parts.push(`issuer ${t.issuer}`);
  if (t.upstream !== 'default' || t.placement !== 'shared') parts.push(`upstream ${t.upstream}, ${t.placement}`);
  const adopted = [result.adopted.schema && 'schema', result.adopted.role && 'role'].filter(Boolean);
  const note = adopted.length === 0 ? '' : `; existing ${adopted.join(' and ')} taken over`;
  return `created tenant ${t.id} (${parts.join(', ')})${note}`;
}

function describeUpdate(result: UpdateTenantResult): string {
  if (result.outcome === 'unchanged') return `tenant ${result.tenant.id} unchanged`;
  const changes = Object.entries(result.changes).map(([key, c]) => `${key} ${show(c.from)} → ${show(c.to)}`);
  return `updated tenant ${result.tenant.id}: ${changes.join(', ')}`;
}

function describeStatusChange(result: StatusChangeResult): string {
  const t = result.tenant;
  switch (result.outcome) {
    case 'suspended':
      return `suspended tenant ${t.id}: ${t.suspendedReason ?? ''}`;
    case 'resumed':
      return `resumed tenant ${t.id}`;
    case 'unchanged':
      return t.status === 'suspended'
        ? `tenant ${t.id} is already suspended: ${t.suspendedReason ?? ''}`
        : `tenant ${t.id} is already ${t.status}`;
  }
}

function show(value: string | number | boolean | null | undefined): string {
  return value === null || value === undefined ? '-' : String(value);
}

function renderList(tenants: TenantRecord[]): string {
  return `${renderTable(
    ['id', 'status', 'tier', 'canary', 'issuer', 'schema', 'created'],
    tenants.map((t) => [t.id, t.status, show(t.tier), t.canary ? 'yes' : 'no', show(t.issuer), t.schema, t.createdAt]),
  )}\n`;
}

function renderDetails(t: TenantDetails): string {
  const rows: Array<[string, string]> = [
    ['tenant', t.id],
    [
      'status',
      t.status === 'suspended' ? `suspended since ${t.suspendedAt ?? '?'}: ${t.suspendedReason ?? ''}` : t.status,
    ],
    ['tier', show(t.tier)],
    ['canary', t.canary ? 'yes' : 'no'],
    ['issuer', show(t.issuer)],
    ['schema', t.schema],
    ['role', show(t.role)],
    ['upstream', `${t.upstream}${t.database === null ? '' : `/${t.database}`} (${t.placement})`],
    ['size', `${t.sizeBytes} bytes`],
    ['tables', String(t.tables)],
    [
      'clients',
      t.connectedClients === null
        ? `unknown (${t.connectedClientsNote ?? 'proxy not reachable'})`
        : String(t.connectedClients),
    ],
    ['migration', show(t.migrationVersion)],
    ['created', t.createdAt],
    ['updated', t.updatedAt],
  ];
  const width = Math.max(...rows.map(([k]) => k.length));
  return rows.map(([k, v]) => `${k.padEnd(width)}  ${v}`).join('\n') + '\n';
}
