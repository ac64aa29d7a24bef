// The PostgreSQL test fixture: database, proxy role and tenant schemas; shared via inject('pg') or private per test.

import { randomBytes } from 'node:crypto';
import { readFileSync, statSync } from 'node:fs';
import pg from 'pg';
import { inject, type TestContext } from 'vitest';
import { installCatalogFilter } from '../../src/catalog/install.js';
import { startPgCluster } from '../../src/dev/pg-cluster.js';
import {
  createTenantSchema,
  prepareProxyRole,
  provisionTenant,
  revokePublicDefaults,
} from '../../src/tenants/provision.js';

export interface PgFixture {
  /** Superuser URL of the server, as given or generated (its database is usually `postgres`). */
  superuserUrl: string;
  database: string;
  proxyRole: string;
  proxyPassword: string;
  /** postgres://pgtp_proxy:<pw>@host:port/pgtp_test: what the proxy dials. */
  upstreamUrl: string;
  host: string;
  port: number;
  /** null when the server came from DATABASE_URL. */
  dataDir: string | null;
  logFile: string | null;
}

export interface PrivatePgFixture extends PgFixture {
  logFile: string;
  dataDir: string;
  pause(): Promise<void>;
  resume(): Promise<void>;
  stop(): Promise<void>;
}

/** The same tenants provisioned with tenancy.roles: NOLOGIN tenant roles own their schemas. */
export interface RolesFixture {
  database: string;
  proxyRole: string;
  upstreamUrl: string;
}

declare module 'vitest' {
  export interface ProvidedContext {
    pg: PgFixture;
    pgRoles: RolesFixture;
    /** Where test proxies write their audit files. */
    auditDir: string;
  }
}

export const TEST_DATABASE = 'pgtp_test';
export const PROXY_ROLE = 'pgtp_proxy';
export const TENANT_SCHEMAS = ['tenant_a', 'tenant_b'] as const;

/** Same tables in every tenant, different rows, and sequences starting apart so a leak shows in nextval(). */
const TENANT_ROWS: Record<(typeof TENANT_SCHEMAS)[number], { rows: [number, string][]; seqStart: number }> = {
  tenant_a: {
    rows: [
      [1, 'a-one'],
      [2, 'a-two'],
    ],
    seqStart: 1000,
  },
  tenant_b: {
    rows: [
      [1, 'b-one'],
      [2, 'b-two'],
      [3, 'b-three'],
    ],
    seqStart: 2000,
  },
};

/** The URL with its database replaced. */
export function withDatabase(url: string, database: string): string {
  const u = new URL(url);
  u.pathname = `/${encodeURIComponent(database)}`;
  return u.toString();
}

/**
 * Builds the fixture on a server reachable with superuserUrl: drops and recreates the test database, (re)creates
 * the proxy role with a new password, closes PUBLIC defaults and fills tenant_a / tenant_b.
 */
export async function createFixture(
  superuserUrl: string,
  files: { dataDir: string | null; logFile: string | null },
): Promise<PgFixture> {
  const proxyPassword = randomBytes(18).toString('base64url');
  const server = new pg.Client({ connectionString: superuserUrl });
  await server.connect();
  try {
    await server.query(`DROP DATABASE IF EXISTS ${TEST_DATABASE} WITH (FORCE)`);
    await server.query(`CREATE DATABASE ${TEST_DATABASE}`);
    await prepareProxyRole(server, { role: PROXY_ROLE, password: proxyPassword });
  } finally {
    await server.end();
  }

  const db = new pg.Client({ connectionString: withDatabase(superuserUrl, TEST_DATABASE) });
  await db.connect();
  try {
    // TEMP granted because the proxy resets with DISCARD ALL and the pooling tests check that temp tables don't survive it.
    await revokePublicDefaults(db, TEST_DATABASE, PROXY_ROLE, { allowTemp: true });
    for (const schema of TENANT_SCHEMAS) {
      const { rows, seqStart } = TENANT_ROWS[schema];
      // Schema first: the tables then reach the proxy role through default privileges, as later ones would.
      await createTenantSchema(db, { schema, grantTo: PROXY_ROLE });
      await db.query(`CREATE TABLE ${schema}.items (id int PRIMARY KEY, name text)`);
      await db.query(`CREATE SEQUENCE ${schema}.seq START ${seqStart}`);
      for (const [id, name] of rows) await db.query(`INSERT INTO ${schema}.items VALUES ($1, $2)`, [id, name]);
    }
    await installCatalogFilter(db, { sharedSchemas: [] });
  } finally {
    await db.end();
  }

  const u = new URL(superuserUrl);
  const host = u.hostname;
  const port = Number(u.port || 5432);
  return {
    superuserUrl,
    database: TEST_DATABASE,
    proxyRole: PROXY_ROLE,
    proxyPassword,
    upstreamUrl: `postgres://${PROXY_ROLE}:${encodeURIComponent(proxyPassword)}@${host}:${port}/${TEST_DATABASE}`,
    host,
    port,
    dataDir: files.dataDir,
    logFile: files.logFile,
  };
}

export const ROLES_DATABASE = 'pgtp_roles';
export const ROLES_PROXY_ROLE = 'pgtp_roles_proxy';

/**
 * A second database on the same server where tenant_a/tenant_b belong to NOLOGIN roles tenant_a/tenant_b and the
 * proxy's login role owns nothing: what `tenancy.roles: true` expects.
 */
export async function createRolesFixture(superuserUrl: string): Promise<RolesFixture> {
  const proxyPassword = randomBytes(18).toString('base64url');
  const server = new pg.Client({ connectionString: superuserUrl });
  await server.connect();
  try {
    await server.query(`DROP DATABASE IF EXISTS ${ROLES_DATABASE} WITH (FORCE)`);
    await server.query(`CREATE DATABASE ${ROLES_DATABASE}`);
    await prepareProxyRole(server, { role: ROLES_PROXY_ROLE, password: proxyPassword });
  } finally {
    await server.end();
  }
  const db = new pg.Client({ connectionString: withDatabase(superuserUrl, ROLES_DATABASE) });
  await db.connect();
  try {
    await revokePublicDefaults(db, ROLES_DATABASE, ROLES_PROXY_ROLE);
    for (const schema of TENANT_SCHEMAS) {
      const { rows, seqStart } = TENANT_ROWS[schema];
      await provisionTenant(db, { schema, role: schema, proxyRole: ROLES_PROXY_ROLE });
      await db.query(`CREATE TABLE ${schema}.items (id int PRIMARY KEY, name text)`);
      await db.query(`CREATE SEQUENCE ${schema}.seq START ${seqStart}`);
      for (const [id, name] of rows) await db.query(`INSERT INTO ${schema}.items VALUES ($1, $2)`, [id, name]);
      await db.query(`ALTER TABLE ${schema}.items OWNER TO ${schema}`);
      await db.query(`ALTER SEQUENCE ${schema}.seq OWNER TO ${schema}`);
    }
    await installCatalogFilter(db, { sharedSchemas: [] });
  } finally {
    await db.end();
  }
  const u = new URL(superuserUrl);
  return {
    database: ROLES_DATABASE,
    proxyRole: ROLES_PROXY_ROLE,
    upstreamUrl: `postgres://${ROLES_PROXY_ROLE}:${encodeURIComponent(proxyPassword)}@${u.hostname}:${u.port || 5432}/${ROLES_DATABASE}`,
  };
}

/** A connected superuser client on the shared test database; end() it when done. */
export async function adminClient(fixture: PgFixture = inject('pg')): Promise<pg.Client> {
  const client = new pg.Client({ connectionString: withDatabase(fixture.superuserUrl, fixture.database) });
  await client.connect();
  return client;
}

/** Byte size of the server log now (0 when the server came from DATABASE_URL). */
export function pgLogOffset(fixture: PgFixture = inject('pg')): number {
  if (!fixture.logFile) return 0;
  try {
    return statSync(fixture.logFile).size;
  } catch {
    return 0;
  }
}

/** Server log written since offset (from pgLogOffset); '' when the server is not ours. */
export function pgLogSince(offset: number, fixture: PgFixture = inject('pg')): string {
  if (!fixture.logFile) return '';
  try {
    return readFileSync(fixture.logFile).subarray(offset).toString('utf8');
  } catch {
    return '';
  }
}

/** Use as `beforeEach(printPgLogOnFailure)`: a failing test prints what PostgreSQL logged while it ran. */
export function printPgLogOnFailure(ctx: TestContext): void {
  const fixture = inject('pg');
  const from = pgLogOffset(fixture);
  ctx.onTestFailed(() => {
    const text = pgLogSince(from, fixture);
    if (text) console.error(`--- PostgreSQL log during "${ctx.task.name}" ---\n${text}`);
  });
}

/** A cluster of its own, with the same fixture, for tests that stop or restart PostgreSQL. stop() it in afterAll. */
export async function startPrivateCluster(opts: { binDir?: string } = {}): Promise<PrivatePgFixture> {
  const cluster = await startPgCluster(opts);
  try {
    const fixture = await createFixture(cluster.superuserUrl, { dataDir: cluster.dataDir, logFile: cluster.logFile });
    return {
      ...fixture,
      dataDir: cluster.dataDir,
      logFile: cluster.logFile,
      pause: () => cluster.pause(),
      resume: () => cluster.resume(),
      stop: () => cluster.stop(),
    };
  } catch (err) {
    await cluster.stop();
    throw err;
  }
}
