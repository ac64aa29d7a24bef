// The PostgreSQL fixture itself: proxy role over SCRAM, fail-closed search_path, tenant data, pause/resume.

import pg from 'pg';
import { afterAll, beforeEach, describe, expect, inject, it } from 'vitest';
import { findBinDir } from '../../src/dev/pg-cluster.js';
import { printPgLogOnFailure, startPrivateCluster, type PrivatePgFixture } from '../support/postgres.js';

beforeEach(printPgLogOnFailure);

async function connect(url: string): Promise<pg.Client> {
  const client = new pg.Client({ connectionString: url });
  client.on('error', () => {}); // a server going away mid-test must not crash the worker
  await client.connect();
  return client;
}

describe('shared fixture', () => {
  it('lets the proxy role in with SCRAM and pins nothing by default', async () => {
    const client = await connect(inject('pg').upstreamUrl);
    try {
      const { rows } = await client.query<{ search_path: string }>('SHOW search_path');
      expect(rows[0]?.search_path).toBe('""');
      const { rows: who } = await client.query<{ u: string; su: boolean }>(
        "SELECT current_user AS u, current_setting('is_superuser')::bool AS su",
      );
      expect(who[0]).toEqual({ u: inject('pg').proxyRole, su: false });
      // Unqualified names resolve nowhere: this is what makes an unpinned backend fail closed.
      await expect(client.query('SELECT * FROM items')).rejects.toMatchObject({ code: '42P01' });
    } finally {
      await client.end();
    }
  });

  it('gives each tenant schema its own rows', async () => {
    const client = await connect(inject('pg').upstreamUrl);
    try {
      const count = async (schema: string): Promise<number> =>
        Number((await client.query<{ n: string }>(`SELECT count(*) AS n FROM ${schema}.items`)).rows[0]?.n);
      expect(await count('tenant_a')).toBe(2);
      expect(await count('tenant_b')).toBe(3);
    } finally {
      await client.end();
    }
  });
});

const haveServerBinaries = (() => {
  try {
    findBinDir();
    return true;
  } catch {
    return false;
  }
})();

describe.skipIf(!haveServerBinaries)('private cluster', () => {
  let cluster: PrivatePgFixture | undefined;
  afterAll(async () => {
    await cluster?.stop();
  });

  it('can be paused and resumed', async () => {
    cluster = await startPrivateCluster();
    const items = 'SELECT count(*)::int AS n FROM tenant_a.items';

    const before = await connect(cluster.upstreamUrl);
    expect((await before.query(items)).rows[0]).toEqual({ n: 2 });

    await cluster.pause();
    // The open backend was shut down (57P01 or a dead socket), and new connections are refused.
    await expect(before.query('SELECT 1')).rejects.toThrow();
    await expect(connect(cluster.upstreamUrl)).rejects.toMatchObject({ code: 'ECONNREFUSED' });

    await cluster.resume();
    const after = await connect(cluster.upstreamUrl);
    try {
      expect((await after.query(items)).rows[0]).toEqual({ n: 2 });
    } finally {
      await after.end();
    }
  });
});
