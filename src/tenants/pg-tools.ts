// The server's version, and the pg_dump/pg_restore that can read it, run with the admin connection's credentials.
import { execFile } from 'node:child_process';
import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { adminClientConfig } from './admin-connection.js';
import type { TenantAdmin } from './lifecycle.js';
import type { SqlRunner } from './provision.js';

export async function serverVersion(db: SqlRunner): Promise<{ text: string; major: number }> {
  const { rows } = await db.query(
    "SELECT current_setting('server_version') AS v, current_setting('server_version_num')::int AS n",
  );
  const row = rows[0] as { v: string; n: number };
  return { text: `PostgreSQL ${row.v}`, major: Math.floor(row.n / 10000) };
}

/** pg_dump binaries on this machine whose major version is at least the server's; the newest first. */
export function findPgDump(serverMajor: number, tool: 'pg_dump' | 'pg_restore' = 'pg_dump'): string[] {
  const found: Array<{ path: string; major: number }> = [];
  const base = '/usr/lib/postgresql';
  if (existsSync(base)) {
    for (const v of readdirSync(base)) {
      const path = join(base, v, 'bin', tool);
      if (/^\d+$/.test(v) && existsSync(path)) found.push({ path, major: Number(v) });
    }
  }
  return found
    .filter((f) => f.major >= serverMajor)
    .sort((a, b) => b.major - a.major)
    .map((f) => f.path);
}

export function run(file: string, args: string[], env: NodeJS.ProcessEnv): Promise<{ stdout: string; stderr: string }> {
  return new Promise((done, reject) => {
    execFile(file, args, { env: { ...process.env, ...env }, maxBuffer: 64 << 20 }, (err, stdout, stderr) => {
      if (err) reject(new Error(`${file} failed: ${stderr.trim().split('\n')[0] ?? err.message}`));
      else done({ stdout, stderr });
    });
  });
}

/** The admin connection as libpq environment variables (the password never on a command line). */
export function libpqEnv(admin: TenantAdmin): NodeJS.ProcessEnv {
  const config = adminClientConfig(admin.config);
  const url = new URL(String(config.connectionString));
  return {
    PGHOST: url.hostname || 'localhost',
    PGPORT: url.port || '5432',
    PGUSER: decodeURIComponent(url.username),
    PGPASSWORD: decodeURIComponent(url.password),
    PGDATABASE: decodeURIComponent(url.pathname.slice(1)),
    ...(url.searchParams.get('sslmode') !== null && { PGSSLMODE: url.searchParams.get('sslmode')! }),
  };
}
