// verify-isolation: two tenants (throwaway or given), b plants marked state, a attacks through the running proxy;
// every attempt classified, everything made removed again.
import { randomBytes } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import pg from 'pg';
import { signDevToken } from '../auth/sign-token.js';
import type { Config } from '../config/schema.js';
import { withTenantAdmin } from '../tenants/lifecycle.js';
import { tenantNames } from '../tenants/tenant-input.js';
import { channelCases, escapeCases, nameCases, oracleCases, sessionCases, sharedCases } from './attack-cases.js';
import { catalogRelationCases, wrappedFunctionCases } from './catalog-cases.js';
import { optionalPlants, plant, unplantStatements } from './plant.js';
import { runPoolCases } from './pool-cases.js';
import { runCase } from './probe.js';
import { countAttempts, type VerifyReport } from './report.js';
import type { AttackCase, Attempt, CaseContext, Connector, Facts, TenantSide } from './types.js';

export interface VerifyOptions {
  config: Config;
  /** The running proxy; default the config's listen address. */
  proxy?: { host: string; port: number };
  /** Default: the database of upstream.url. */
  database?: string;
  /** Two registered tenants to use instead of throwaway ones: [a, b]. */
  tenants?: readonly [string, string];
  /** Tokens for a and b; a missing one is minted with the config's signing key. */
  tokens?: { a?: string; b?: string };
  /** TLS to the proxy: default on when tls.mode is require. */
  tls?: boolean;
  /** Clients of tenant a reading catalog surfaces at once. */
  concurrency?: number;
  /** Progress lines (stderr in the CLI). */
  progress?: (line: string) => void;
}

/** Usage, configuration and connection problems: the CLI's exit status 2, with a message naming the problem. */
export class VerifyError extends Error {}

const ACTOR = 'pg-tenant-proxy verify-isolation';

function proxyAddress(config: Config, given?: { host: string; port: number }): { host: string; port: number } {
  if (given !== undefined) return given;
  const host = ['0.0.0.0', '::', '*'].includes(config.listen.host) ? '127.0.0.1' : config.listen.host;
  return { host, port: config.listen.port };
}

async function tokenFor(config: Config, tenant: string, given: string | undefined, flag: string): Promise<string> {
  if (given !== undefined) return given;
  try {
    return await signDevToken(config, { tenant, sub: 'verify-isolation', ttlSeconds: 3600 });
  } catch (err) {
    throw new VerifyError(
      `no ${flag} given and no token can be minted for tenant "${tenant}": ${(err as Error).message}`,
    );
  }
}

/** Runs the whole suite; the report holds every attempt. Throws VerifyError for usage and connection problems. */
export async function verifyIsolation(options: VerifyOptions): Promise<VerifyReport> {
  const { config } = options;
  const startedAt = new Date().toISOString();
  const say = options.progress ?? (() => undefined);
  const t0 = Date.now();
  const progress = (line: string): void => say(`${((Date.now() - t0) / 1000).toFixed(1)}s ${line}`);
  const rand = randomBytes(5).toString('hex');
  const throwaway = options.tenants === undefined;
  const [idA, idB] = options.tenants ?? [`vfy${rand}a`, `vfy${rand}b`];
  if (idA === idB) throw new VerifyError('--tenants needs two different tenants');
  const names = (id: string): { schema: string; role: string | null } => {
    try {
      return tenantNames(config, id);
    } catch (err) {
      throw new VerifyError(
        `${throwaway ? 'throwaway ' : ''}tenant id "${id}": ${(err as Error).message}${throwaway ? ' (pass --tenants a,b)' : ''}`,
      );
    }
  };
  const namesA = names(idA);
  const namesB = names(idB);
  if (throwaway && config.admin.url === undefined) {
    throw new VerifyError('creating throwaway tenants needs admin.url in the config (or pass --tenants a,b)');
  }
  const a: TenantSide = { id: idA, ...namesA, token: await tokenFor(config, idA, options.tokens?.a, '--token-a') };
  const b: TenantSide = { id: idB, ...namesB, token: await tokenFor(config, idB, options.tokens?.b, '--token-b') };
  const address = proxyAddress(config, options.proxy);
  const database = options.database ?? decodeURIComponent(new URL(config.upstream.url).pathname.slice(1));
  const proxy = `${address.host}:${address.port}`;
  const tls = options.tls ?? config.tls.mode === 'require';

  const open: pg.Client[] = [];
  const connector: Connector = {
    async connect(side) {
      const tenant = side === 'a' ? a : b;
      // A tenant created a moment ago reaches the proxy's admission through the registry's notification.
      const deadline = Date.now() + (throwaway ? 15_000 : 0);
      for (;;) {
        const client = new pg.Client({
          host: address.host,
          port: address.port,
          database,
          user: 'verify-isolation',
          password: tenant.token,
          application_name: 'pg-tenant-proxy verify-isolation',
          connectionTimeoutMillis: 10_000,
          ssl: tls ? { rejectUnauthorized: false } : false,
        });
        client.on('error', () => undefined);
        try {
          await client.connect();
          open.push(client);
          return client;
        } catch (err) {
          await client.end().catch(() => undefined);
          const code = (err as { code?: string }).code;
          if ((code === '28000' || code === '28P01') && Date.now() < deadline) {
            await new Promise((resolve) => setTimeout(resolve, 200));
            continue;
          }
          throw new VerifyError(
            `cannot connect to the proxy at ${proxy} (database "${database}") as tenant "${tenant.id}": ${(err as Error).message}${code === undefined ? '' : ` (${code})`}`,
          );
        }
      }
    },
  };

  const created: string[] = [];
  const cleanupProblems: string[] = [];
  const attempts: Attempt[] = [];
  let bMain: pg.Client | undefined;
  let aMain: pg.Client | undefined;
  const secret = `vfysecret${rand}`;
  try {
    if (throwaway) {
      progress(`creating throwaway tenants ${idA} and ${idB}`);
      await withTenantAdmin(config, { actor: ACTOR }, async (admin) => {
        for (const id of [idA, idB]) {
          try {
            await admin.create(id);
          } catch (err) {
            throw new VerifyError(`cannot create throwaway tenant "${id}": ${(err as Error).message}`);
          }
          created.push(id);
        }
      }).catch((err: Error) => {
        throw err instanceof VerifyError ? err : new VerifyError(`cannot create throwaway tenants: ${err.message}`);
      });
    }
    bMain = await connector.connect('b');
    progress(`tenant b plants objects marked ${secret}`);
    let planted;
    try {
      planted = await plant(bMain, secret);
    } catch (err) {
      throw new VerifyError((err as Error).message, { cause: err });
    }
    // b holds a transaction (so its server stays its own) whose query text is marked: other sessions are a surface.
    await bMain.query('BEGIN');
    const pinned = await bMain.query<{ pid: number }>(`SELECT pg_backend_pid() AS pid, '${secret}_activity' AS v`);
    planted.pids = [pinned.rows[0]!.pid];
    aMain = await connector.connect('a');

    const facts: Facts = {
      a,
      b: { ...b, role: b.role ?? planted.role },
      secret,
      probe: `vfyprobe${rand}`,
      markers: [secret],
      nameMarkers: [b.schema, ...((b.role ?? planted.role) ? [(b.role ?? planted.role)!] : [])],
      database,
      oids: planted.oids,
      bPids: planted.pids,
      missingOid: 4_294_967_000,
      missingSchema: names(`vfy${rand}x`).schema,
      lockKey: parseInt(rand.slice(0, 7), 16),
      registrySchema: config.tenancy.registry.schema,
      deniedFunctions: config.policy.deniedFunctions,
      maxStatementBytes: config.policy.maxStatementBytes,
    };
    const ctx: CaseContext = { facts, connector, a: aMain, b: bMain };
    const vary = [...Object.values(facts.oids).map(String), String(facts.missingOid)];
    const run = async (cases: AttackCase[], label: string): Promise<void> => {
      progress(`${label}: ${cases.length} attempts`);
      for (const c of cases) attempts.push(await runCase(c, ctx, vary));
    };

    // Before any statement of a's names b's secret: a's own servers' last queries must not carry it.
    await run(sharedCases(facts), 'shared');
    await bMain.query('COMMIT');
    await run(channelCases(facts), 'shared (channels)');
    const catalog = [...catalogRelationCases(), ...wrappedFunctionCases(facts)];
    progress(`catalog: ${catalog.length} attempts`);
    attempts.push(...(await runConcurrently(catalog, ctx, vary, options.concurrency ?? 3)));
    await run(nameCases(facts), 'names');
    await run(oracleCases(facts), 'oracles');
    await run(sessionCases(facts), 'session');
    await run(escapeCases(facts), 'escape');
    progress('pool: b plants session state, a looks on every server it can hold');
    attempts.push(...(await runPoolCases(facts, connector, config.upstream.poolSize)));
  } finally {
    // Throwaway tenants too: `tenants delete` cannot LOCK a materialized view, so b drops its planted ones first.
    if (bMain !== undefined) {
      await bMain.query('ROLLBACK').catch(() => undefined);
      for (const sql of unplantStatements(secret)) {
        await bMain.query(sql).catch((err: Error) => cleanupProblems.push(`tenant b: ${sql}: ${err.message}`));
      }
      if (optionalPlants(secret).length > 0) {
        await bMain
          .query(
            `SELECT lo_unlink(m.oid) FROM pg_largeobject_metadata m WHERE convert_from(lo_get(m.oid), 'UTF8') = '${secret}_largeobject'`,
          )
          .catch(() => undefined);
      }
    }
    await Promise.all(open.map((c) => c.end().catch(() => undefined)));
    if (created.length > 0) {
      progress(`deleting throwaway tenants ${created.join(', ')}`);
      await withTenantAdmin(config, { actor: ACTOR }, async (admin) => {
        for (const id of created.reverse()) {
          // The proxy ends the servers our clients left a moment ago (rollback, reset); a lock may outlive end(). A
          // deletion that failed stays scheduled, and purge completes it.
          let problem: string | null = await admin.delete(id).then(
            () => null,
            (err: Error) => err.message,
          );
          for (let attempt = 0; problem !== null && attempt < 10; attempt++) {
            await new Promise((resolve) => setTimeout(resolve, 500));
            const purged = await admin
              .purge()
              .catch((err: Error) => ({ deleted: [], failed: [{ tenant: id, error: err.message }] }));
            const failed = purged.failed.find((f) => f.tenant === id);
            problem = purged.deleted.some((d) => d.tenant === id) ? null : (failed?.error ?? problem);
          }
          if (problem !== null) cleanupProblems.push(`throwaway tenant ${id}: ${problem}`);
        }
      }).catch((err: Error) => cleanupProblems.push(`throwaway tenants ${created.join(', ')}: ${err.message}`));
    }
  }
  return {
    reportVersion: 1,
    startedAt,
    finishedAt: new Date().toISOString(),
    proxy,
    database,
    tenants: { a: idA, b: idB, throwaway },
    config: {
      guard: config.policy.guard,
      roles: config.tenancy.roles,
      catalogFilter: config.policy.catalogFilter,
      checkNames: config.policy.checkNames,
    },
    attempts,
    ...countAttempts(attempts),
    cleanupProblems,
  };
}

/** Read-only cases over `width` clients of a at once, the report keeping the cases' order. */
async function runConcurrently(
  cases: AttackCase[],
  ctx: CaseContext,
  vary: string[],
  width: number,
): Promise<Attempt[]> {
  const results: Attempt[] = new Array<Attempt>(cases.length);
  const clients = [ctx.a];
  for (let i = 1; i < width; i++) clients.push(await ctx.connector.connect('a'));
  let next = 0;
  await Promise.all(
    clients.map(async (client) => {
      for (let i = next++; i < cases.length; i = next++)
        results[i] = await runCase(cases[i]!, { ...ctx, a: client }, vary);
    }),
  );
  return results;
}

export function writeReport(file: string, report: VerifyReport): void {
  writeFileSync(file, `${JSON.stringify(report, null, 2)}\n`);
}
