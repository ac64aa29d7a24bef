// `pg-tenant-proxy verify-isolation`: the cross-tenant attack suite against a running proxy → report, exit 1 on a leak.
import { ConfigError, loadConfig } from '../config/load.js';
import { renderReport } from '../verify/report.js';
import { verifyIsolation, VerifyError, writeReport, type VerifyOptions } from '../verify/run.js';
import { parseFlags, processOutput, UsageError, type CliOutput } from './admin-command.js';

export const VERIFY_USAGE = `usage: pg-tenant-proxy verify-isolation --config FILE [options]

Attacks one tenant from another through the running proxy and reports every attempt as leaked, refused or
harmless: every catalog surface, b's names in every statement position, existence oracles, session identity
(search_path, role, pg_settings, set_config, DO), escape hatches, shared objects and state left on pooled servers.
Tenant b plants objects carrying a unique marker; anything tenant a reads is searched for it.

options:
  --proxy HOST:PORT          the running proxy (default: the config's listen address)
  --database NAME            database to connect to (default: upstream.url's)
  --tenants A,B              use these two registered tenants (default: create two throwaway tenants through
                             admin.url and delete them afterwards)
  --token-a JWT, --token-b JWT
                             their tokens (default: minted with the config's signing key)
  --tls                      connect to the proxy with TLS (default: when tls.mode is require)
  --report FILE              also write the report as JSON
  --quiet                    no progress lines on stderr
Exit status: 0 no leak, 1 a leak, 2 usage, configuration or connection problem.
`;

export async function runVerifyIsolation(
  argv: string[],
  out: CliOutput = processOutput,
  env: NodeJS.ProcessEnv = process.env,
): Promise<number> {
  if (argv.includes('--help') || argv.includes('-h')) {
    out.stdout(VERIFY_USAGE);
    return 0;
  }
  try {
    const { values: v, positionals } = parseFlags(
      {
        args: argv,
        options: {
          config: { type: 'string', short: 'c' },
          proxy: { type: 'string' },
          database: { type: 'string' },
          tenants: { type: 'string' },
          'token-a': { type: 'string' },
          'token-b': { type: 'string' },
          tls: { type: 'boolean' },
          report: { type: 'string' },
          quiet: { type: 'boolean', default: false },
        },
        allowPositionals: true,
        strict: true,
      },
      'verify-isolation',
    );
    if (positionals.length > 0) throw new UsageError(`unexpected argument "${positionals[0]}"`);
    if (v.config === undefined) throw new UsageError('verify-isolation needs --config FILE');
    const options: VerifyOptions = { config: loadConfig(v.config, env) };
    if (v.proxy !== undefined) options.proxy = parseAddress(v.proxy);
    if (v.database !== undefined) options.database = v.database;
    if (v.tenants !== undefined) {
      const ids = v.tenants.split(',').map((t) => t.trim());
      if (ids.length !== 2 || ids.some((t) => t === ''))
        throw new UsageError(`--tenants takes two tenant ids, a,b (got "${v.tenants}")`);
      options.tenants = [ids[0]!, ids[1]!];
    } else if (v['token-a'] !== undefined || v['token-b'] !== undefined) {
      throw new UsageError('--token-a/--token-b go with --tenants a,b');
    }
    options.tokens = { a: v['token-a'], b: v['token-b'] };
    if (v.tls !== undefined) options.tls = v.tls;
    if (v.quiet !== true) options.progress = (line) => out.stderr(`verify-isolation: ${line}\n`);
    const report = await verifyIsolation(options);
    out.stdout(renderReport(report));
    if (v.report !== undefined) writeReport(v.report, report);
    return report.summary.leaked > 0 ? 1 : 0;
  } catch (err) {
    const message = (err as Error).message ?? String(err);
    if (err instanceof UsageError) {
      out.stderr(`pg-tenant-proxy verify-isolation: ${message} (see pg-tenant-proxy verify-isolation --help)\n`);
      return 2;
    }
    if (err instanceof ConfigError) {
      out.stderr(`pg-tenant-proxy verify-isolation: invalid configuration: ${message}\n`);
      return 2;
    }
    if (err instanceof VerifyError) {
      out.stderr(`pg-tenant-proxy verify-isolation: ${message}\n`);
      return 2;
    }
    out.stderr(`pg-tenant-proxy verify-isolation: ${message.split('\n')[0]}\n`);
    return 2;
  }
}

function parseAddress(text: string): { host: string; port: number } {
  const match = /^(.+):(\d{1,5})$/.exec(text);
  const port = match === null ? NaN : Number(match[2]);
  if (match === null || port < 1 || port > 65535) throw new UsageError(`--proxy takes HOST:PORT (got "${text}")`);
  return { host: match[1]!.replace(/^\[(.*)\]$/, '$1'), port };
}
