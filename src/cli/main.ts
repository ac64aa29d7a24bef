#!/usr/bin/env node
// Command line: argv → start | demo | token | check-config | status | tenants | catalog | migrate | version.
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { ConfigError, loadConfig } from '../config/load.js';

const USAGE = `usage: pg-tenant-proxy <command> [options]

commands:
  start --config FILE                     run the proxy (SIGTERM drains, SIGHUP reloads)
  demo                                    throwaway PostgreSQL + two tenants + proxy on 127.0.0.1:6432
  token --tenant ID [--sub S] [--ttl 1h] [--issuer NAME] --config FILE
                                          sign a development token with the configured key
                                          (auth.issuers: as NAME, or the first issuer with a secret)
  check-config --config FILE              validate a config and exit
  status --config FILE [--json]           pools, clients per tenant, waiting clients of a running proxy
                                          (reads /admin/status on metrics.host:metrics.port with metrics.adminToken)
  tenants <verb> ID --config FILE         create, update, list, show, suspend, resume, delete, purge,
                                          certificate, export, import tenants
                                          (pg-tenant-proxy tenants --help for each verb's options)
  tenants query --config FILE "SQL" (--tenants a,b | --all) [--format table|csv|json]
                                          one read-only statement in each tenant, guarded and audited
  tenants usage --config FILE [--since DATE] [--until DATE] [--tenant ID] [--storage] [--format table|csv|json]
                                          usage per tenant and hour, as the proxies added it to the registry
  catalog install --config FILE           install or upgrade the catalog filter (policy.catalogFilter) in admin.url's database
  migrate --config FILE [--dir DIR]       apply missing migrations to every tenant schema
                                          (--canary N, --tenants a,b, --dry-run; pg-tenant-proxy migrate --help)
  verify-isolation --config FILE          attack one tenant from another through the running proxy; report
                                          leaked/refused/harmless per attempt, exit 1 on a leak
                                          (--tenants a,b, --proxy HOST:PORT, --report FILE; --help)
  version                                 print the version

Every config key can also come from the environment: auth.jwt.secret → PGTP_AUTH_JWT_SECRET.
`;

/** Exit status for configuration and usage errors, distinct from runtime failures (1). */
const EXIT_CONFIG = 2;

async function main(argv: string[]): Promise<void> {
  const [command, ...rest] = argv;
  switch (command) {
    case 'start': {
      const { values } = parseArgs({ args: rest, options: { config: { type: 'string', short: 'c' } } });
      const { runProxy } = await import('../main.js');
      await runProxy(values.config);
      return;
    }
    case 'demo': {
      parseArgs({ args: rest, options: {} });
      const { runDemo } = await import('./demo.js');
      await runDemo();
      return;
    }
    case 'token': {
      const { values } = parseArgs({
        args: rest,
        options: {
          config: { type: 'string', short: 'c' },
          tenant: { type: 'string', short: 't' },
          sub: { type: 'string' },
          ttl: { type: 'string', default: '1h' },
          issuer: { type: 'string' },
        },
      });
      if (values.tenant === undefined) throw new UsageError('token needs --tenant ID');
      const { parseDuration, signDevToken } = await import('../auth/sign-token.js');
      let ttlSeconds: number;
      try {
        ttlSeconds = parseDuration(values.ttl);
      } catch (err) {
        throw new UsageError(`--ttl: ${(err as Error).message}`);
      }
      const config = loadConfig(values.config);
      const token = await signDevToken(config, {
        tenant: values.tenant,
        sub: values.sub,
        ttlSeconds,
        issuer: values.issuer,
      });
      process.stdout.write(token + '\n');
      return;
    }
    case 'check-config': {
      const { values } = parseArgs({ args: rest, options: { config: { type: 'string', short: 'c' } } });
      const config = loadConfig(values.config);
      const { createTenantTokenVerifier } = await import('../auth/tenant-token.js');
      const { loadSecureContext } = await import('../net/tls.js');
      (await createTenantTokenVerifier(config)).close();
      loadSecureContext(config.tls);
      process.stdout.write('config ok\n');
      return;
    }
    case 'status': {
      const { values } = parseArgs({
        args: rest,
        options: { config: { type: 'string', short: 'c' }, json: { type: 'boolean', default: false } },
      });
      const config = loadConfig(values.config);
      const { fetchStatus } = await import('../admin/status-client.js');
      const { renderStatus } = await import('../admin/status.js');
      const status = await fetchStatus(config);
      process.stdout.write(values.json ? `${JSON.stringify(status, null, 2)}\n` : renderStatus(status));
      return;
    }
    case 'catalog': {
      const { runCatalog } = await import('./catalog.js');
      process.exitCode = await runCatalog(rest);
      return;
    }
    case 'verify-isolation': {
      process.exitCode = await (await import('./verify-isolation.js')).runVerifyIsolation(rest);
      return;
    }
    case 'migrate': {
      const { runMigrate } = await import('./migrate.js');
      process.exitCode = await runMigrate(rest);
      return;
    }
    case 'tenants': {
      // The cross-tenant query and the usage report live in modules of their own.
      if (rest[0] === 'query') {
        const { runTenantsQuery } = await import('./tenants-query.js');
        process.exitCode = await runTenantsQuery(rest.slice(1));
        return;
      }
      if (rest[0] === 'usage') {
        const { runTenantsUsage } = await import('./tenants-usage.js');
        process.exitCode = await runTenantsUsage(rest.slice(1));
        return;
      }
      const { runTenants } = await import('./tenants.js');
      // Its own errors are one line each, with its own exit status: 2 usage/config, 1 runtime.
      process.exitCode = await runTenants(rest);
      return;
    }
    case 'version':
    case '--version': {
      const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as {
        version: string;
      };
      process.stdout.write(`pg-tenant-proxy ${pkg.version}\n`);
      return;
    }
    case undefined:
    case 'help':
    case '--help':
      process.stdout.write(USAGE);
      return;
    default:
      throw new UsageError(`unknown command "${command}"`);
  }
}

class UsageError extends Error {}

main(process.argv.slice(2)).catch((err: unknown) => {
  if (err instanceof ConfigError) {
    process.stderr.write(`pg-tenant-proxy: invalid configuration: ${err.message}\n`);
    process.exit(EXIT_CONFIG);
  }
  if (err instanceof UsageError || (err as { code?: string }).code?.startsWith('ERR_PARSE_ARGS')) {
    process.stderr.write(`pg-tenant-proxy: ${(err as Error).message}\n\n${USAGE}`);
    process.exit(EXIT_CONFIG);
  }
  process.stderr.write(`pg-tenant-proxy: ${(err as Error).message ?? String(err)}\n`);
  process.exit(1);
});
