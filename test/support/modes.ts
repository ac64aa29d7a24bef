// What several integration files share: the two isolation modes they run in, and the pgjdbc jar drivers need.
import { existsSync, readdirSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { inject } from 'vitest';

export interface IsolationMode {
  title: string;
  roles: boolean;
  database: () => string;
  upstreamUrl: () => string;
  proxyRole: () => string;
}

/** Guard only (one login role for every tenant), and per-tenant roles: each fixture database set up for its mode. */
export const ISOLATION_MODES: IsolationMode[] = [
  {
    title: 'guard only (every tenant shares the login role)',
    roles: false,
    database: () => inject('pg').database,
    upstreamUrl: () => inject('pg').upstreamUrl,
    proxyRole: () => inject('pg').proxyRole,
  },
  {
    title: 'tenancy.roles: true',
    roles: true,
    database: () => inject('pgRoles').database,
    upstreamUrl: () => inject('pgRoles').upstreamUrl,
    proxyRole: () => inject('pgRoles').proxyRole,
  },
];

/** The newest pgjdbc jar of the local Maven repository, or null. */
export function jdbcJar(): string | null {
  const dir = join(homedir(), '.m2/repository/org/postgresql/postgresql');
  if (!existsSync(dir)) return null;
  for (const version of readdirSync(dir).sort().reverse()) {
    const jar = join(dir, version, `postgresql-${version}.jar`);
    if (existsSync(jar)) return jar;
  }
  return null;
}
