// A database of its own for registry tests: its own proxy login role, so tenant roles and grants made by
// `tenants create` touch nothing the shared fixture's tests rely on. drop() it in afterAll.
import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { inject } from 'vitest';
import { prepareProxyRole, revokePublicDefaults } from '../../src/tenants/provision.js';
import { withDatabase } from './postgres.js';

export interface RegistryDatabase {
  database: string;
  proxyRole: string;
  /** What the proxy dials (its login role). */
  upstreamUrl: string;
  /** A superuser on this database: what admin.url names. */
  adminUrl: string;
  /** A connected superuser client on this database; end() it. */
  connect(): Promise<pg.Client>;
  /** Drops the database and every role whose name starts with one of rolePrefixes (tenant roles made by the tests). */
  drop(rolePrefixes?: string[]): Promise<void>;
}

export async function createRegistryDatabase(name: string): Promise<RegistryDatabase> {
  const superuserUrl = inject('pg').superuserUrl;
  const proxyRole = `${name}_proxy`;
  const password = randomBytes(18).toString('base64url');
  const server = new pg.Client({ connectionString: superuserUrl });
  await server.connect();
  try {
    await server.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
    await server.query(`CREATE DATABASE ${name}`);
    await prepareProxyRole(server, { role: proxyRole, password });
  } finally {
    await server.end();
  }
  const adminUrl = withDatabase(superuserUrl, name);
  const db = new pg.Client({ connectionString: adminUrl });
  await db.connect();
  try {
    await revokePublicDefaults(db, name, proxyRole, { allowTemp: true });
  } finally {
    await db.end();
  }
  const u = new URL(superuserUrl);
  const connect = async (): Promise<pg.Client> => {
    const client = new pg.Client({ connectionString: adminUrl });
    client.on('error', () => undefined);
    await client.connect();
    return client;
  };
  return {
    database: name,
    proxyRole,
    upstreamUrl: `postgres://${proxyRole}:${encodeURIComponent(password)}@${u.hostname}:${u.port || 5432}/${name}`,
    adminUrl,
    connect,
    async drop(rolePrefixes = []) {
      const server = new pg.Client({ connectionString: superuserUrl });
      await server.connect();
      try {
        await server.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
        const { rows } = await server.query<{ rolname: string }>(
          'SELECT rolname FROM pg_roles WHERE rolname = $1 OR rolname LIKE ANY ($2)',
          [proxyRole, rolePrefixes.map((p) => `${p.replace(/_/g, '\\_')}%`)],
        );
        for (const { rolname } of rows) await server.query(`DROP ROLE IF EXISTS "${rolname}"`);
      } finally {
        await server.end();
      }
    },
  };
}
