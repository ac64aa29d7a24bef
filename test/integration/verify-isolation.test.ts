// `pg-tenant-proxy verify-isolation` against a correctly configured proxy (no leak, exit 0) and a deliberately
// misconfigured one (guard, roles and catalog filter off: leaks in every category they stop, exit 1), with throwaway
// tenants it creates and deletes itself.
import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { stringify } from 'yaml';
import { runVerifyIsolation } from '../../src/cli/verify-isolation.js';
import { validateConfig } from '../../src/config/load.js';
import { withTenantAdmin } from '../../src/tenants/lifecycle.js';
import type { VerifyReport } from '../../src/verify/report.js';
import { CATEGORIES, type Category } from '../../src/verify/types.js';
import { buildDist, DIST_CLI } from '../support/build.js';
import { startTestProxy, TEST_SECRET, type TestProxy } from '../support/proxy.js';
import { createRegistryDatabase, type RegistryDatabase } from '../support/registry.js';

let rdb: RegistryDatabase;
let dir: string;

/** The settings both proxies and the command's config file share; `mode` switches the three lines of defence. */
function raw(secure: boolean): Record<string, unknown> {
  return {
    upstream: { url: rdb.upstreamUrl, poolSize: 6 },
    auth: { jwt: { secret: TEST_SECRET } },
    tenancy: { roles: secure, registry: { enabled: true } },
    policy: { guard: secure, catalogFilter: secure },
    admin: { url: rdb.adminUrl },
  };
}

function configFile(name: string, secure: boolean, port: number): string {
  const file = join(dir, `${name}.yaml`);
  writeFileSync(
    file,
    stringify({ ...raw(secure), listen: { host: '127.0.0.1', port }, audit: { file: join(dir, `${name}-audit.log`) } }),
  );
  return file;
}

async function startProxy(secure: boolean): Promise<TestProxy> {
  const r = raw(secure) as Parameters<typeof startTestProxy>[0] & Record<string, never>;
  return startTestProxy(
    {
      upstream: { poolSize: 6 },
      tenancy: r.tenancy as never,
      policy: r.policy as never,
      admin: r.admin as never,
    },
    rdb.upstreamUrl,
  );
}

function capture(): {
  out: { stdout: (t: string) => void; stderr: (t: string) => void };
  stdout: string[];
  stderr: string[];
} {
  const stdout: string[] = [];
  const stderr: string[] = [];
  return { out: { stdout: (t) => void stdout.push(t), stderr: (t) => void stderr.push(t) }, stdout, stderr };
}

function leaksOf(report: VerifyReport): string[] {
  return report.attempts.filter((a) => a.outcome === 'leaked').map((a) => `${a.category}: ${a.name}: ${a.detail}`);
}

async function schemasLeft(prefix: string): Promise<string[]> {
  const db = await rdb.connect();
  try {
    const { rows } = await db.query<{ nspname: string }>(
      "SELECT nspname FROM pg_namespace WHERE nspname LIKE 'tenant\\_vfy%' ESCAPE '\\' OR nspname LIKE $1",
      [`${prefix}%`],
    );
    return rows.map((r) => r.nspname);
  } finally {
    await db.end();
  }
}

beforeAll(async () => {
  const built = buildDist();
  rdb = await createRegistryDatabase('pgtp_verify_isolation');
  dir = mkdtempSync(join(os.tmpdir(), 'pgtp-verify-'));
  // The registry and the catalog filter, as any `tenants` command leaves them, before a proxy starts.
  await withTenantAdmin(validateConfig({ ...raw(true), audit: { enabled: false } }), {}, () => Promise.resolve());
  await built;
}, 120_000);

afterAll(async () => {
  await rdb?.drop(['tenant_vfy']);
  if (dir !== undefined) rmSync(dir, { recursive: true, force: true });
});

describe('verify-isolation', () => {
  it('finds no leak through a correctly configured proxy, covers every category, and removes its tenants', async () => {
    const tp = await startProxy(true);
    try {
      const config = configFile('secure', true, tp.port);
      const reportFile = join(dir, 'secure.json');
      const c = capture();
      const code = await runVerifyIsolation(['--config', config, '--report', reportFile], c.out);
      if (code === 2) throw new Error(c.stderr.join(''));
      const report = JSON.parse(readFileSync(reportFile, 'utf8')) as VerifyReport;
      const leaks = leaksOf(report);
      expect(leaks).toEqual([]);
      expect({ code, stderr: c.stderr.filter((l) => !l.startsWith('verify-isolation: ')) }).toEqual({
        code: 0,
        stderr: [],
      });
      for (const category of CATEGORIES) {
        expect(report.attempts.filter((a) => a.category === category).length, category).toBeGreaterThan(0);
      }
      expect(Object.keys(report.categories).sort()).toEqual([...CATEGORIES].sort());
      expect(report.summary.attempts).toBe(report.attempts.length);
      expect(report.summary.refused).toBeGreaterThan(50);
      expect(report.cleanupProblems).toEqual([]);
      const text = c.stdout.join('');
      expect(text).toMatch(new RegExp(`summary: leaked ${leaks.length}, refused \\d+, harmless \\d+`));
      expect(await schemasLeft('vfyprobe')).toEqual([]);
    } finally {
      await tp.close();
    }
  }, 60_000);

  it('reports leaks in every category and exits 1 when guard, roles and catalog filter are off (built CLI)', async () => {
    const tp = await startProxy(false);
    try {
      const config = configFile('open', false, tp.port);
      const reportFile = join(dir, 'open.json');
      const run = await new Promise<{ code: number; stdout: string; stderr: string }>((resolve) => {
        execFile(
          process.execPath,
          [DIST_CLI, 'verify-isolation', '--config', config, '--report', reportFile, '--quiet'],
          { maxBuffer: 16 << 20 },
          (err, stdout, stderr) => resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stdout, stderr }),
        );
      });
      expect({ code: run.code, stderr: run.stderr }).toEqual({ code: 1, stderr: '' });
      const report = JSON.parse(readFileSync(reportFile, 'utf8')) as VerifyReport;
      // The pool's reset is on whatever the config says; every other category is what guard, roles or filter stop.
      const stopped: Category[] = ['catalog', 'names', 'oracles', 'session', 'escape', 'shared'];
      for (const category of stopped) expect(report.categories[category].leaked, category).toBeGreaterThan(0);
      expect(run.stdout).toMatch(/LEAKED of \d+ attempts/);
      expect(report.cleanupProblems).toEqual([]);
      expect(await schemasLeft('vfyprobe')).toEqual([]);
    } finally {
      await tp.close();
    }
  }, 60_000);

  it('exits 2 naming the problem when the proxy cannot be reached or the usage is wrong', async () => {
    const config = configFile('unreachable', true, 1);
    const c = capture();
    expect(await runVerifyIsolation(['--config', config, '--tenants', 'x1,x2'], c.out)).toBe(2);
    expect(c.stderr.join('')).toMatch(/cannot connect to the proxy at 127\.0\.0\.1:1/);
    const u = capture();
    expect(await runVerifyIsolation(['--tenants', 'a'], u.out)).toBe(2);
    expect(u.stderr.join('')).toMatch(/needs --config FILE/);
    const t = capture();
    expect(await runVerifyIsolation(['--config', config, '--tenants', 'a'], t.out)).toBe(2);
    expect(t.stderr.join('')).toMatch(/--tenants takes two tenant ids/);
  });
});
