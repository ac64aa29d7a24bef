// Provisioning SQL for the proxy's login role, tenant schemas and database defaults (demo, tests, tenant CLI).

import { quoteIdent, quoteLiteral } from '../auth/identity.js';

/** Anything that runs SQL like pg.Client / pg.PoolClient. */
export interface SqlRunner {
  query(text: string, values?: unknown[]): Promise<{ rows: unknown[] }>;
}

/**
 * Creates or updates the role the proxy logs in as. Its default search_path is empty so a backend the proxy
 * failed to pin resolves no unqualified name: the client's statement errors instead of reading some schema.
 */
export async function prepareProxyRole(client: SqlRunner, opts: { role: string; password: string }): Promise<void> {
  const role = quoteIdent(opts.role);
  // The server hashes the cleartext below with this setting; md5 would make the proxy's SCRAM login fail.
  await client.query(`SET password_encryption = 'scram-sha-256'`);
  const { rows } = await client.query('SELECT 1 FROM pg_roles WHERE rolname = $1', [opts.role]);
  const verb = rows.length > 0 ? 'ALTER' : 'CREATE';
  await client.query(
    `${verb} ROLE ${role} WITH LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS PASSWORD ${quoteLiteral(opts.password)}`,
  );
  await client.query(`ALTER ROLE ${role} SET search_path = ''`);
}

/**
 * Creates the tenant's schema (kept as is if it exists, owner included) and lets grantTo use everything in it,
 * including tables created later by the current role or by ownerRole (which must already exist).
 */
export async function createTenantSchema(
  client: SqlRunner,
  opts: { schema: string; ownerRole?: string; grantTo: string },
): Promise<void> {
  const owner = opts.ownerRole === undefined ? undefined : quoteIdent(opts.ownerRole);
  await client.query(`CREATE SCHEMA IF NOT EXISTS ${quoteIdent(opts.schema)}${owner ? ` AUTHORIZATION ${owner}` : ''}`);
  await grantSchemaUse(client, opts);
}

/** The grants half of createTenantSchema: grantTo may use everything in the schema, now and later. */
export async function grantSchemaUse(
  client: SqlRunner,
  opts: { schema: string; ownerRole?: string; grantTo: string },
): Promise<void> {
  const schema = quoteIdent(opts.schema);
  const grantee = quoteIdent(opts.grantTo);
  const owner = opts.ownerRole === undefined ? undefined : quoteIdent(opts.ownerRole);
  await client.query(`GRANT USAGE, CREATE ON SCHEMA ${schema} TO ${grantee}`);
  await client.query(`GRANT ALL ON ALL TABLES IN SCHEMA ${schema} TO ${grantee}`);
  await client.query(`GRANT ALL ON ALL SEQUENCES IN SCHEMA ${schema} TO ${grantee}`);
  // Default privileges are per creating role: cover whoever runs this and the schema's owner.
  for (const forRole of owner ? ['', ` FOR ROLE ${owner}`] : ['']) {
    await client.query(`ALTER DEFAULT PRIVILEGES${forRole} IN SCHEMA ${schema} GRANT ALL ON TABLES TO ${grantee}`);
    await client.query(`ALTER DEFAULT PRIVILEGES${forRole} IN SCHEMA ${schema} GRANT ALL ON SEQUENCES TO ${grantee}`);
  }
}

/**
 * Closes the defaults every role gets through PUBLIC: nobody but proxyRole (and superusers) may connect to the
 * database and nobody creates in public. TEMP is withheld too unless allowTemp: a temp table shadows tenant tables
 * (pg_temp is searched first) and outlives the transaction, so only grant it when the proxy's reset drops temp
 * objects (DISCARD ALL) before a backend changes hands. Must run connected to that database: schema privileges
 * are per database.
 */
export async function revokePublicDefaults(
  client: SqlRunner,
  database: string,
  proxyRole: string,
  opts: { allowTemp?: boolean } = {},
): Promise<void> {
  const { rows } = await client.query('SELECT current_database() AS db');
  const current = (rows[0] as { db?: string } | undefined)?.db;
  if (current !== database) throw new Error(`revokePublicDefaults: connected to ${current}, not ${database}`);
  const db = quoteIdent(database);
  await client.query('REVOKE CREATE ON SCHEMA public FROM PUBLIC');
  await client.query(`REVOKE ALL ON DATABASE ${db} FROM PUBLIC`);
  const privileges = opts.allowTemp ? 'CONNECT, TEMPORARY' : 'CONNECT';
  await client.query(`GRANT ${privileges} ON DATABASE ${db} TO ${quoteIdent(proxyRole)}`);
}

/**
 * Provisions one tenant. Without a role the schema is used through the proxy's login role. With a role (the
 * database's own line of isolation) the schema belongs to a NOLOGIN tenant role that the proxy may SET ROLE to:
 * the login role is NOINHERIT and owns no tenant data, so outside a pin it can read nothing of any tenant, and a
 * pinned session can read only what its tenant role owns.
 */
export async function provisionTenant(
  client: SqlRunner,
  opts: { schema: string; role: string | null; proxyRole: string },
): Promise<void> {
  if (opts.role === null) {
    await createTenantSchema(client, { schema: opts.schema, grantTo: opts.proxyRole });
    return;
  }
  await createTenantRole(client, opts.role);
  await grantTenantRole(client, { role: opts.role, proxyRole: opts.proxyRole });
  await createRoleOwnedSchema(client, { schema: opts.schema, role: opts.role });
}

/** Creates the tenant's NOLOGIN role unless it exists; returns whether it did. */
export async function createTenantRole(client: SqlRunner, role: string): Promise<boolean> {
  const { rows } = await client.query('SELECT 1 FROM pg_roles WHERE rolname = $1', [role]);
  if (rows.length > 0) return false;
  await client.query(`CREATE ROLE ${quoteIdent(role)} NOLOGIN NOINHERIT`);
  return true;
}

/** Makes the proxy's login role a NOINHERIT member of the tenant role: it may SET ROLE to it, nothing more. */
export async function grantTenantRole(client: SqlRunner, opts: { role: string; proxyRole: string }): Promise<void> {
  const proxy = quoteIdent(opts.proxyRole);
  // Only when needed: concurrent ALTER ROLEs of the one proxy role would collide ("tuple concurrently updated").
  const { rows } = await client.query('SELECT rolinherit FROM pg_roles WHERE rolname = $1', [opts.proxyRole]);
  if ((rows[0] as { rolinherit?: boolean } | undefined)?.rolinherit !== false)
    await client.query(`ALTER ROLE ${proxy} NOINHERIT`);
  await client.query(`GRANT ${quoteIdent(opts.role)} TO ${proxy}`);
}

/** The tenant's schema, owned by its role (an existing schema is handed to it) and closed to PUBLIC. */
export async function createRoleOwnedSchema(client: SqlRunner, opts: { schema: string; role: string }): Promise<void> {
  const role = quoteIdent(opts.role);
  const schema = quoteIdent(opts.schema);
  await client.query(`CREATE SCHEMA IF NOT EXISTS ${schema} AUTHORIZATION ${role}`);
  await client.query(`ALTER SCHEMA ${schema} OWNER TO ${role}`);
  await client.query(`REVOKE ALL ON SCHEMA ${schema} FROM PUBLIC`);
}
