// Tenant lookups against the upstream over a small control pool: admission (registry or schema existence) and canonical setting values.
import { readFileSync } from 'node:fs';
import type tls from 'node:tls';
import pg from 'pg';
import type { Logger } from 'pino';
import { quoteIdent, type TenantIdentity } from '../auth/identity.js';
import type { AuthFailure } from '../auth/tenant-token.js';
import type { UpstreamTarget } from '../backend/connect.js';
import { setStatement } from '../backend/pin.js';
import type { Config } from '../config/schema.js';
import { Lru } from '../guard/lru.js';
import { ProxyError } from '../protocol/errors.js';
import type { TenantRoute } from '../routing/route.js';
import { registryAdmission, schemaAdmission, type Admission, type TenantRecord } from './admission.js';

export interface TenantRegistry {
  /**
   * Resolves when the verified tenant may log in: with tenancy.registry.enabled, registered and active; otherwise its
   * schema (and role, when roles are on) exist. Throws AuthFailure (28000) or ProxyError (08001, upstream down).
   */
  admit(identity: TenantIdentity): Promise<TenantRecord>;
  /** The tenant's current route (synchronous, from the mirror; the default route without the registry; null: unknown). */
  route(tenantId: string): TenantRoute | null;
  /** Synchronous re-check just before a login completes: a refusal that arrived since admit(), else null. */
  recheck(identity: TenantIdentity): AuthFailure | null;
  /** Called with each tenant that stopped being admitted (suspended, deleted) and the FATAL its sessions get. */
  onWithdrawn(listener: (tenantId: string, error: ProxyError) => void): void;
  /** Called with each tenant whose record changed (tier, limits…), null when it is gone. */
  onChanged(listener: (tenantId: string, record: TenantRecord | null) => void): void;
  /**
   * Validates a client's startup settings where its pin will apply them (the tenant's search_path and role) and
   * returns their values as PostgreSQL spells them (DateStyle ISO → "ISO, MDY"); PostgreSQL's refusal as FATAL.
   * `upstream`: the tenant's upstream (its control pool and name), where its schema and role are; default's otherwise.
   */
  canonicalSettings(
    settings: ReadonlyMap<string, string>,
    schema: string,
    role: string | null,
    upstream?: { label: string; control: pg.Pool },
  ): Promise<Map<string, string>>;
  /** Resolves when the upstream answers a query within timeoutMs (readiness). */
  ping(timeoutMs: number): Promise<void>;
  close(): Promise<void>;
}

const MAX_CACHE = 10_000;

/** node-postgres settings for a connection as the proxy's login role (control queries, the registry). */
export function controlConnection(target: UpstreamTarget): pg.ClientConfig {
  return {
    host: target.host,
    port: target.port,
    user: target.user,
    password: target.password,
    database: target.database,
    connectionTimeoutMillis: target.connectTimeoutMs,
    // node-postgres binds SCRAM to TLS when offered; it has no "require", which the pool's own connections enforce.
    enableChannelBinding: target.tls.channelBinding !== 'disable',
    ssl: controlSsl(target),
  };
}

/** A small pool of control connections to an upstream (settings checks, schema lookups, readiness). */
export function controlPool(target: UpstreamTarget, log: Logger): pg.Pool {
  const control = new pg.Pool({
    ...controlConnection(target),
    max: 2,
    idleTimeoutMillis: 30_000,
    application_name: 'pg-tenant-proxy control',
  });
  control.on('error', (err) => log.warn({ err: err.message }, 'control connection error'));
  return control;
}

export function createTenantRegistry(target: UpstreamTarget, tenancy: Config['tenancy'], log: Logger): TenantRegistry {
  const control = controlPool(target, log);
  const admission: Admission = tenancy.registry.enabled
    ? registryAdmission(controlConnection(target), tenancy.registry.schema, new RegExp(tenancy.tenantPattern), log)
    : schemaAdmission(control, tenancy.schemaCacheTtlMs, tenancy.registry.schema);

  // Least recently used goes first: clearing all at once would send every tenant's next logins back to the control
  // pool together, which one tenant cycling through random values could force.
  const canonical = new Lru<string, string>(MAX_CACHE);

  return {
    admit: (identity) => admission.admit(identity),
    route: (tenantId) => admission.route(tenantId),
    recheck: (identity) => admission.recheck(identity),
    onWithdrawn: (listener) => admission.onWithdrawn(listener),
    onChanged: (listener) => admission.onChanged(listener),

    async canonicalSettings(settings, schema, role, upstream) {
      const out = new Map<string, string>();
      const unknown: Array<[string, string]> = [];
      const context = `${upstream?.label ?? ''}\0${schema}\0${role ?? ''}\0`;
      for (const [name, value] of settings) {
        const hit = canonical.get(`${context}${name}=${value}`);
        if (hit === undefined) unknown.push([name, value]);
        else out.set(name, hit);
      }
      if (unknown.length === 0) return out;
      let client: pg.PoolClient;
      try {
        client = await (upstream?.control ?? control).connect();
      } catch (err) {
        throw ProxyError.upstreamUnavailable((err as Error).message, upstream?.label);
      }
      try {
        // SET LOCAL inside a rolled-back transaction: validates and canonicalises without changing the control session.
        await client.query('BEGIN');
        await client.query("SELECT pg_catalog.set_config('search_path', $1, true)", [quoteIdent(schema)]);
        if (role !== null) await client.query(`SET LOCAL ROLE ${quoteIdent(role)}`);
        // Applied as the pin will apply them, then read back as PostgreSQL spells them.
        await client.query(unknown.map(([name, value]) => setStatement(name, value, true)).join('; '));
        const { rows } = await client.query<{ i: string; v: string | null }>(
          'SELECT s.i, pg_catalog.current_setting(s.name, true) AS v FROM pg_catalog.unnest($1::text[]) WITH ORDINALITY AS s(name, i)',
          [unknown.map(([name]) => name)],
        );
        for (const row of rows) {
          const [name, value] = unknown[Number(row.i) - 1]!;
          canonical.set(`${context}${name}=${value}`, row.v ?? value);
          out.set(name, row.v ?? value);
        }
      } catch (err) {
        // PostgreSQL's own refusal (42704 unrecognized, 22023 invalid value, 42501 not permitted…), fatal as at its login.
        const e = err as { code?: string; message: string };
        throw e.code === undefined
          ? ProxyError.upstreamUnavailable(e.message, upstream?.label)
          : new ProxyError(e.code, e.message, 'FATAL');
      } finally {
        await client.query('ROLLBACK').catch(() => undefined);
        client.release();
      }
      return out;
    },

    async ping(timeoutMs) {
      let timer: NodeJS.Timeout | undefined;
      const timeout = new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`no answer within ${timeoutMs} ms`)), timeoutMs);
      });
      try {
        await Promise.race([control.query('SELECT 1'), timeout]);
      } finally {
        clearTimeout(timer);
      }
    },

    async close() {
      await admission.close();
      await control.end();
    },
  };
}

function controlSsl(target: UpstreamTarget): pg.PoolConfig['ssl'] {
  const mode = target.tls.mode;
  if (mode === 'disable') return false;
  const verify = mode === 'verify-ca' || mode === 'verify-full';
  // Keys left out rather than set to undefined: node:tls treats a present checkServerIdentity of undefined as a
  // function to call (an internal assertion failure), which broke every verify-full control connection.
  const ssl: tls.ConnectionOptions = { rejectUnauthorized: verify };
  if (target.tls.ca !== undefined) ssl.ca = readFileSync(target.tls.ca, 'utf8');
  if (target.tls.cert !== undefined) ssl.cert = readFileSync(target.tls.cert, 'utf8');
  if (target.tls.key !== undefined) ssl.key = readFileSync(target.tls.key, 'utf8');
  if (mode !== 'verify-full') ssl.checkServerIdentity = () => undefined;
  return ssl;
}
