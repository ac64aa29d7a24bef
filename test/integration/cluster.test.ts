// The PostgreSQL fixture itself: proxy role over SCRAM, fail-closed search_path, tenant data, pause/resume.

import { cpSync, existsSync, mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import pg from 'pg';
import { afterAll, beforeEach, describe, expect, inject, it } from 'vitest';
import { embeddedBinDir, findBinDir, startPgCluster } from '../../src/dev/pg-cluster.js';
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

// The checkout of a root user often sits where the postgres OS user cannot enter (/root, a mode-700 mktemp dir).
const embedded = embeddedBinDir();
describe.skipIf(process.getuid?.() !== 0 || embedded === null)(
  'cluster binaries in a directory only root can enter',
  () => {
    it('starts, serves and cleans up', async () => {
      const privateDir = mkdtempSync(join(tmpdir(), 'pgtp-private-'));
      try {
        expect(statSync(privateDir).mode & 0o777).toBe(0o700);
        cpSync(dirname(embedded!), join(privateDir, 'native'), { recursive: true, verbatimSymlinks: true });
        const cluster = await startPgCluster({ binDir: join(privateDir, 'native', 'bin') });
        const baseDir = dirname(cluster.dataDir);
        try {
          const client = await connect(cluster.superuserUrl);
          try {
            const { rows } = await client.query<{ v: string }>("SELECT current_setting('server_version_num') AS v");
            expect(Number(rows[0]!.v)).toBeGreaterThanOrEqual(180000);
          } finally {
            await client.end();
          }
        } finally {
          await cluster.stop();
        }
        // The copy of the binaries lived in the cluster's directory and went with it.
        expect(existsSync(baseDir)).toBe(false);
      } finally {
        rmSync(privateDir, { recursive: true, force: true });
      }
    });
  },
);
