// Which verified tenants the proxy lets in: the registry's records (cached, kept fresh by NOTIFY and polling) or, without the registry, schema existence.
import pg from 'pg';
import type { Logger } from 'pino';
import { quoteIdent, type TenantIdentity } from '../auth/identity.js';
import { AuthFailure, authFailureSqlState, issuerNotAllowed } from '../auth/tenant-token.js';
import { SqlState } from '../protocol/codes.js';
import { ProxyError } from '../protocol/errors.js';
import { parseOverrides, type LimitOverrides } from '../limits/limits.js';
import { DEFAULT_ROUTE, PLACEMENTS, sameRoute, type Placement, type TenantRoute } from '../routing/route.js';
import { changeChannel } from './registry-schema.js';
import { TenantStatus } from './registry-store.js';

/** What the proxy acts on of an admitted tenant's registry record. */
export interface TenantRecord {
  /** Where its transactions go (DEFAULT_ROUTE without the registry). */
  route: TenantRoute;
  /** The registry's free-form tier (`tenants create/update --tier`), or null. */
  tier: string | null;
  /** Its own limits (`tenants limits`), overriding its tier's and limits.default, or null. */
  limits: LimitOverrides | null;
}

/** A tenant without a registry record (tenancy.registry.enabled false): the default route, limits.default. */
export const UNREGISTERED: TenantRecord = Object.freeze({ route: DEFAULT_ROUTE, tier: null, limits: null });

export interface Admission {
  /**
   * Resolves with the tenant's record when it may log in; throws AuthFailure (28000) when not, ProxyError 08001 when
   * the upstream is down.
   */
  admit(identity: TenantIdentity): Promise<TenantRecord>;
  /**
   * The tenant's route as the registry says now: read at each transaction's checkout, so a route changed in the
   * registry (NOTIFY, or the poll) takes the tenant's next transaction to the new upstream. Null while the mirror
   * does not hold the tenant (the registry unreadable, say): that is no reason to move its sessions anywhere.
   */
  route(tenantId: string): TenantRoute | null;
  /**
   * For a tenant admit() let in a moment ago: the refusal if its record has changed since (a suspension arriving
   * while the login finished), else null. Synchronous, so nothing can change between this answer and the login.
   */
  recheck(identity: TenantIdentity): AuthFailure | null;
  /** Called with a tenant that was active and no longer is, and the FATAL its connected sessions get. */
  onWithdrawn(listener: (tenantId: string, error: ProxyError) => void): void;
  /** Called when a tenant's record changed (null: it is gone), after the change is applied. */
  onChanged(listener: (tenantId: string, record: TenantRecord | null) => void): void;
  close(): Promise<void>;
}

/** How long "no such tenant" is believed: a tenant created meanwhile gets in after at most this long (usually at once, by NOTIFY). */
const NEGATIVE_TTL_MS = 2000;
/** The fallback for missed notifications: the change counter is read this often. */
const POLL_MS = 1000;
const RECONNECT_MS = 1000;
const MAX_NEGATIVE = 10_000;
/** PostgreSQL's answers when the registry is not there, or not readable by the proxy's role. */
const UNDEFINED_TABLE = '42P01';
const INVALID_SCHEMA_NAME = '3F000';

interface Entry {
  status: TenantStatus;
  reason: string | null;
  /** The issuer (auth.issuers name) recorded for the tenant by `tenants create/update --issuer`, or null. */
  issuer: string | null;
  record: TenantRecord;
  /** The limits column as read, to tell a change. */
  limitsText: string;
}

/**
 * The registry columns read per tenant. `limits` (version 4) and the route (version 6) are read through to_jsonb, so a
 * registry not yet upgraded (the tenants commands upgrade it) still admits: no overrides, the default upstream. Each
 * -> is null when its column does not exist.
 */
const COLUMNS = `t.status, t.suspended_reason, t.issuer, t.tier, pg_catalog.to_jsonb(t) -> 'limits' AS limits,
  pg_catalog.to_jsonb(t) ->> 'upstream' AS upstream, pg_catalog.to_jsonb(t) ->> 'database' AS database,
  pg_catalog.to_jsonb(t) ->> 'placement' AS placement`;

interface RouteRow {
  upstream: string | null;
  database: string | null;
  placement: string | null;
}

interface TenantRow extends RouteRow {
  status: TenantStatus;
  suspended_reason: string | null;
  issuer: string | null;
  tier: string | null;
  limits: unknown;
}

function toEntry(row: TenantRow): Entry {
  return {
    status: row.status,
    reason: row.suspended_reason,
    issuer: row.issuer,
    record: { route: routeOf(row), tier: row.tier, limits: parseOverrides(row.limits) },
    limitsText: JSON.stringify(row.limits ?? null),
  };
}

function routeOf(row: RouteRow): TenantRoute {
  if (row.upstream === null && row.database === null) return DEFAULT_ROUTE;
  return {
    upstream: row.upstream ?? DEFAULT_ROUTE.upstream,
    database: row.database,
    placement: PLACEMENTS.includes(row.placement as Placement) ? (row.placement as Placement) : DEFAULT_ROUTE.placement,
  };
}

/**
 * With auth.issuers, whether the verifying issuer may speak for a registered tenant: a tenant whose record names an
 * issuer admits only that one (whatever another issuer's list or pattern says); one whose record names none admits
 * any issuer whose own rule allowed it, except an issuer whose rule is `registry`. With auth.jwt (no issuer names),
 * the record's issuer is not consulted.
 */
function issuerAllowed(identity: TenantIdentity, entry: Entry): boolean {
  if (identity.issuer === undefined) return true;
  if (entry.issuer === null) return identity.issuerByRegistry !== true;
  return entry.issuer === identity.issuer;
}

/** The refusal this identity gets from the tenant's record (null: none), issuer first, or null when it may log in. */
function admissionRefusal(identity: TenantIdentity, entry: Entry | null | undefined): AuthFailure | null {
  if (
    entry !== null &&
    entry !== undefined &&
    entry.status !== TenantStatus.Deleted &&
    !issuerAllowed(identity, entry)
  ) {
    return issuerNotAllowed();
  }
  const refused = refusal(identity.tenantId, entry);
  return refused === null ? null : authFailure(refused);
}

/** The refusal a tenant with this record (null: none) gets, or null when it is active. */
function refusal(
  tenantId: string,
  entry: Entry | null | undefined,
): { reason: 'not_registered' | 'suspended' | 'deleting'; message: string } | null {
  if (entry === null || entry === undefined || entry.status === TenantStatus.Deleted) {
    return { reason: 'not_registered', message: `tenant "${tenantId}" is not registered` };
  }
  switch (entry.status) {
    case TenantStatus.Active:
      return null;
    case TenantStatus.Suspended:
      return {
        reason: 'suspended',
        message: `tenant "${tenantId}" is suspended: ${entry.reason ?? 'no reason given'}`,
      };
    case TenantStatus.Deleting:
      return { reason: 'deleting', message: `tenant "${tenantId}" is being deleted` };
  }
}

function authFailure(r: NonNullable<ReturnType<typeof refusal>>): AuthFailure {
  return new AuthFailure(r.reason, r.message, authFailureSqlState[r.reason]);
}

/**
 * Admission by the registry. Every tenant record is mirrored (id, status, reason); each proxy process keeps its own
 * mirror current three ways: a NOTIFY on `<schema>_changes` names a changed tenant, whose row is read again at once;
 * every POLL_MS the registry's change counter is read and, when it moved, the whole table (so a lost LISTEN
 * connection costs at most a second); and a tenant not in the mirror is looked up on login (a client connecting
 * right after `tenants create` returned). All reads go through one connection, in order, so a later read never
 * applies an older snapshot over a newer one.
 */
export function registryAdmission(
  connection: pg.ClientConfig,
  schema: string,
  tenantPattern: RegExp,
  log: Logger,
): Admission {
  const s = quoteIdent(schema);
  const channel = changeChannel(schema);
  // max 1: reads run one at a time in the order they were asked, each seeing a snapshot no older than the last.
  const reader = new pg.Pool({
    ...connection,
    max: 1,
    idleTimeoutMillis: 0,
    application_name: 'pg-tenant-proxy registry',
  });
  reader.on('error', (err) => log.warn({ err: err.message }, 'registry read connection error'));
  const entries = new Map<string, Entry>();
  const negative = new Map<string, number>();
  const lookups = new Map<string, Promise<Entry | null>>();
  const listeners: Array<(tenantId: string, error: ProxyError) => void> = [];
  const changeListeners: Array<(tenantId: string, record: TenantRecord | null) => void> = [];
  let seenChanges: string | null = null;
  /** What was last logged about the registry's availability, so each change is logged once. */
  let health: 'unknown' | 'ok' | 'absent' | 'forbidden' | 'unreachable' = 'unknown';
  let closed = false;
  let listener: pg.Client | null = null;
  let reconnectTimer: NodeJS.Timeout | null = null;
  let loading: Promise<void> | null = null;

  const setHealth = (next: typeof health, err?: unknown): void => {
    if (next === health) return;
    health = next;
    const detail = err === undefined ? undefined : (err as Error).message;
    switch (next) {
      case 'ok':
        log.info({ schema, tenants: entries.size }, 'tenant registry loaded; admitting registered, active tenants');
        break;
      case 'absent':
        log.warn(
          { schema },
          `tenant registry "${schema}" does not exist yet: no tenant is admitted until \`pg-tenant-proxy tenants create\` creates it`,
        );
        break;
      case 'forbidden':
        log.error(
          { schema, err: detail },
          "the proxy's login role cannot read the tenant registry: no tenant is admitted (any `pg-tenant-proxy tenants` command grants it)",
        );
        break;
      case 'unreachable':
        log.warn({ schema, err: detail }, 'tenant registry unreachable; admitting from the cached registry');
        break;
      case 'unknown':
        break;
    }
  };

  /**
   * Whether an error means "no registry to read" (absent, or not readable by the proxy's role) rather than a failed
   * connection. Then nobody is admitted: the mirror is dropped (sessions already connected carry on; there is no
   * record saying they should not).
   */
  const registryMissing = (err: unknown): boolean => {
    const code = (err as { code?: string }).code;
    if (code === UNDEFINED_TABLE || code === INVALID_SCHEMA_NAME || code === SqlState.INSUFFICIENT_PRIVILEGE) {
      setHealth(code === SqlState.INSUFFICIENT_PRIVILEGE ? 'forbidden' : 'absent', err);
      entries.clear();
      seenChanges = null;
      return true;
    }
    setHealth('unreachable', err);
    return false;
  };

  const apply = (tenantId: string, next: Entry | null): void => {
    const previous = entries.get(tenantId);
    const changed =
      previous === undefined ||
      next === null ||
      previous.record.tier !== next.record.tier ||
      previous.limitsText !== next.limitsText ||
      !sameRoute(previous.record.route, next.record.route);
    // The same route keeps its object: sessions compare routes by identity at every checkout.
    if (!changed) next.record.route = previous.record.route;
    if (next === null) {
      entries.delete(tenantId);
      if (negative.size >= MAX_NEGATIVE) negative.clear();
      negative.set(tenantId, Date.now() + NEGATIVE_TTL_MS);
    } else {
      entries.set(tenantId, next);
      negative.delete(tenantId);
    }
    if (changed) for (const listen of changeListeners) listen(tenantId, next?.record ?? null);
    // Also when nothing was known before: the mirror is emptied while the registry cannot be read, and a suspension
    // made meanwhile must still end the sessions admitted earlier.
    if (previous !== undefined && previous.status !== TenantStatus.Active) return;
    const withdrawn = refusal(tenantId, next);
    if (withdrawn === null) return;
    log.info(
      { tenant: tenantId, reason: withdrawn.reason },
      'tenant no longer admitted; ending its sessions as their transactions end',
    );
    const error = new ProxyError(SqlState.INVALID_AUTHORIZATION_SPECIFICATION, withdrawn.message, 'FATAL');
    for (const listen of listeners) listen(tenantId, error);
  };

  const readOne = async (tenantId: string): Promise<Entry | null> => {
    let rows: TenantRow[];
    try {
      ({ rows } = await reader.query(`SELECT ${COLUMNS} FROM ${s}.tenants t WHERE t.id = $1`, [tenantId]));
    } catch (err) {
      if (!registryMissing(err)) throw err;
      negative.set(tenantId, Date.now() + NEGATIVE_TTL_MS);
      return null;
    }
    const row = rows[0];
    const entry = row === undefined ? null : toEntry(row);
    apply(tenantId, entry);
    return entry;
  };

  /** Reads the whole table when the change counter moved since the last full read (or always, with force). */
  const reload = (force: boolean): Promise<void> => {
    // One at a time: a reload asked for during another waits for it rather than queue a duplicate.
    loading ??= (async () => {
      try {
        if (!force && seenChanges !== null) {
          const { rows } = await reader.query(`SELECT change_count::text AS n FROM ${s}.registry_state`);
          if ((rows[0] as { n: string } | undefined)?.n === seenChanges) {
            setHealth('ok');
            return;
          }
        }
        // One statement: the counter and the rows come from one snapshot.
        const { rows } = await reader.query(
          `SELECT r.change_count::text AS n, t.id, ${COLUMNS}
             FROM ${s}.registry_state r LEFT JOIN ${s}.tenants t ON true`,
        );
        const fresh = new Map<string, Entry>();
        for (const row of rows as Array<TenantRow & { id: string | null }>) {
          if (row.id !== null) fresh.set(row.id, toEntry(row));
        }
        for (const id of [...entries.keys()]) if (!fresh.has(id)) apply(id, null);
        for (const [id, entry] of fresh) {
          const known = entries.get(id);
          if (
            known?.status !== entry.status ||
            known.reason !== entry.reason ||
            known.issuer !== entry.issuer ||
            !sameRoute(known.record.route, entry.record.route) ||
            known.record.tier !== entry.record.tier ||
            known.limitsText !== entry.limitsText
          )
            apply(id, entry);
        }
        seenChanges = (rows[0] as { n: string } | undefined)?.n ?? null;
        setHealth('ok');
      } catch (err) {
        // Unreachable: keep the mirror (with the database down there is nothing to serve anyway).
        registryMissing(err);
      } finally {
        loading = null;
      }
    })();
    return loading;
  };

  const poll = setInterval(() => void reload(false), POLL_MS);
  poll.unref();

  const listen = async (): Promise<void> => {
    if (closed) return;
    const client = new pg.Client({ ...connection, application_name: 'pg-tenant-proxy registry listener' });
    let gone = false;
    // Once per client, whichever of error, end or a failed connect comes first.
    const retry = (): void => {
      if (gone) return;
      gone = true;
      if (listener === client) listener = null;
      client.removeAllListeners('notification');
      void client.end().catch(() => undefined);
      if (closed) return;
      reconnectTimer = setTimeout(() => {
        reconnectTimer = null;
        void listen();
      }, RECONNECT_MS);
      reconnectTimer.unref();
    };
    client.on('error', retry);
    client.on('end', retry);
    client.on('notification', (message) => {
      if (message.channel !== channel) return;
      const tenantId = message.payload;
      // The payload only says where to look; the row itself is read again. Any role may NOTIFY, so a payload that is
      // no tenant id costs nothing, and only a tenant this process knows (admitted, or refused as unknown moments ago)
      // is worth a lookup now: a flood of forged ids must not queue ahead of logins on the one reader.
      const known = entries.has(tenantId ?? '') || negative.has(tenantId ?? '');
      if (tenantId === undefined || tenantId.length === 0) void reload(true);
      else if (tenantPattern.test(tenantId) && known) void readOne(tenantId).catch(() => undefined);
    });
    try {
      await client.connect();
      await client.query(`LISTEN ${quoteIdent(channel)}`);
      if (closed) {
        await client.end();
        return;
      }
      listener = client;
      // Whatever changed while nobody listened.
      void reload(true);
    } catch {
      retry();
    }
  };
  void listen();
  void reload(true);

  return {
    async admit(identity) {
      const id = identity.tenantId;
      let entry: Entry | null | undefined = entries.get(id);
      if (entry === undefined) {
        const until = negative.get(id);
        if (until !== undefined && until > Date.now()) {
          entry = null;
        } else {
          let pending = lookups.get(id);
          if (pending === undefined) {
            pending = readOne(id).finally(() => lookups.delete(id));
            lookups.set(id, pending);
          }
          try {
            entry = await pending;
          } catch (err) {
            throw ProxyError.upstreamUnavailable((err as Error).message);
          }
        }
      }
      const refused = admissionRefusal(identity, entry);
      if (refused !== null) throw refused;
      return entry!.record;
    },
    route(tenantId) {
      return entries.get(tenantId)?.record.route ?? null;
    },
    recheck(identity) {
      return admissionRefusal(identity, entries.get(identity.tenantId));
    },
    onWithdrawn(listen) {
      listeners.push(listen);
    },
    onChanged(listen) {
      changeListeners.push(listen);
    },
    async close() {
      closed = true;
      clearInterval(poll);
      if (reconnectTimer !== null) clearTimeout(reconnectTimer);
      await listener?.end().catch(() => undefined);
      await loading?.catch(() => undefined);
      await reader.end().catch(() => undefined);
    },
  };
}

/**
 * Admission without the registry: a tenant is let in when its schema (and role, with tenancy.roles) exist, which is
 * trusted for ttlMs (misses for at most NEGATIVE_TTL_MS). The registry's own schema is never a tenant's.
 */
export function schemaAdmission(control: pg.Pool, ttlMs: number, registrySchema: string): Admission {
  const schemas = new Map<string, { exists: boolean; until: number }>();
  return {
    async admit(identity) {
      const notProvisioned = (): AuthFailure =>
        new AuthFailure(
          'bad_tenant',
          `tenant "${identity.tenantId}" is not provisioned`,
          SqlState.INVALID_AUTHORIZATION_SPECIFICATION,
        );
      if (identity.schema === registrySchema) throw notProvisioned();
      const now = Date.now();
      const key = `${identity.schema}\0${identity.role ?? ''}`;
      const cached = schemas.get(key);
      let exists: boolean;
      if (cached !== undefined && cached.until > now) {
        exists = cached.exists;
      } else {
        try {
          const result = await control.query(
            `SELECT 1 FROM pg_catalog.pg_namespace WHERE nspname = $1
               AND ($2::text IS NULL OR EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = $2))`,
            [identity.schema, identity.role],
          );
          exists = result.rowCount === 1;
        } catch (err) {
          throw ProxyError.upstreamUnavailable((err as Error).message);
        }
        if (schemas.size >= MAX_NEGATIVE) schemas.clear();
        schemas.set(key, { exists, until: now + (exists ? ttlMs : Math.min(NEGATIVE_TTL_MS, ttlMs)) });
      }
      if (!exists) throw notProvisioned();
      return UNREGISTERED;
    },
    route: () => DEFAULT_ROUTE,
    recheck: () => null,
    onWithdrawn: () => undefined,
    onChanged: () => undefined,
    close: () => Promise.resolve(),
  };
}
