// A second PostgreSQL cluster of its own for routing tests: started as the main one is (initdb + pg_ctl, as the
// postgres OS user in a directory it owns), with a database and proxy login role; stop() it in afterAll.
import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { startPgCluster, type PgCluster } from '../../src/dev/pg-cluster.js';
import { prepareProxyRole, revokePublicDefaults } from '../../src/tenants/provision.js';
import { withDatabase } from './postgres.js';

export interface UpstreamCluster {
  cluster: PgCluster;
  port: number;
  database: string;
  proxyRole: string;
  /** What the proxy dials (its login role on this cluster). */
  upstreamUrl: string;
  /** A superuser on the database: what upstreams.<name>.adminUrl names. */
  adminUrl: string;
  /** A connected superuser client on the database; end() it. */
  connect(): Promise<pg.Client>;
  stop(): Promise<void>;
}

export async function startUpstreamCluster(database: string, proxyRole: string): Promise<UpstreamCluster> {
  const cluster = await startPgCluster();
  try {
    const password = randomBytes(18).toString('base64url');
    const server = new pg.Client({ connectionString: cluster.superuserUrl });
    await server.connect();
    try {
      await server.query(`CREATE DATABASE ${database}`);
      await prepareProxyRole(server, { role: proxyRole, password });
    } finally {
      await server.end();
    }
    const adminUrl = withDatabase(cluster.superuserUrl, database);
    const connect = async (): Promise<pg.Client> => {
      const client = new pg.Client({ connectionString: adminUrl });
      client.on('error', () => undefined);
      await client.connect();
      return client;
    };
    const db = await connect();
    try {
      await revokePublicDefaults(db, database, proxyRole, { allowTemp: true });
    } finally {
      await db.end();
    }
    return {
      cluster,
      port: cluster.port,
      database,
      proxyRole,
      upstreamUrl: `postgres://${proxyRole}:${encodeURIComponent(password)}@${cluster.host}:${cluster.port}/${database}`,
      adminUrl,
      connect,
      stop: () => cluster.stop(),
    };
  } catch (err) {
    await cluster.stop();
    throw err;
  }
}
