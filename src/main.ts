// Wires the proxy together: config → logger, pool, verifier, registry, listener; signals for drain and reload.
import pino, { type Logger } from 'pino';
import { createTenantTokenVerifier, type TenantTokenVerifier } from './auth/tenant-token.js';
import { upstreamTarget } from './backend/connect.js';
import { Pool, poolOptions } from './backend/pool.js';
import { loadConfig } from './config/load.js';
import type { Config } from './config/schema.js';
import { CancelRegistry } from './frontend/cancel.js';
import { ClientSession, SessionState } from './frontend/session.js';
import { createSqlGuard, loadParser, type SqlGuard } from './guard/sql-guard.js';
import { listen, type Listener } from './net/listener.js';
import { loadSecureContext } from './net/tls.js';
import { ProxyError } from './protocol/errors.js';
import { createTenantRegistry, type TenantRegistry } from './tenants/registry.js';

export interface Proxy {
  readonly host: string;
  readonly port: number;
  readonly pool: Pool;
  /** Open client sessions (for status views and tests). */
  readonly sessions: ReadonlySet<ClientSession>;
  /** Applies a new config: keys, TLS, pool sizes; the listen address and upstream stay as started. */
  reload(config: Config): Promise<void>;
  /** Stops accepting, lets pinned clients finish up to drainTimeoutMs, then closes everything. */
  close(drainTimeoutMs?: number): Promise<void>;
}

const JANITOR_INTERVAL_MS = 1000;

export function createLogger(config: Config): Logger {
  // Operational logs go to stderr so stdout can carry nothing but what a user asked for.
  return pino({ level: config.log.level, base: { service: 'pg-tenant-proxy' } }, pino.destination({ fd: 2, sync: false }));
}

function guardFor(config: Config): SqlGuard {
  return createSqlGuard({
    ...config.policy,
    sharedSchemas: config.tenancy.sharedSchemas,
    schemaTemplate: config.tenancy.schemaTemplate,
    tenantPattern: config.tenancy.tenantPattern,
  });
}

export async function startProxy(initial: Config, log: Logger = createLogger(initial)): Promise<Proxy> {
  let config = initial;
  await loadParser();
  let guard = guardFor(config);
  let verifier: TenantTokenVerifier = await createTenantTokenVerifier(config);
  let secureContext = loadSecureContext(config.tls);
  const target = upstreamTarget(config);
  const pool = new Pool(target, poolOptions(config), log.child({ component: 'pool' }));
  const registry: TenantRegistry = createTenantRegistry(target, config.tenancy.schemaCacheTtlMs, log.child({ component: 'registry' }));
  const cancels = new CancelRegistry();
  const sessions = new Set<ClientSession>();

  const janitor = setInterval(() => pool.maintain(), JANITOR_INTERVAL_MS);
  janitor.unref();
  pool.maintain();

  const listener: Listener = await listen(
    config.listen.host,
    config.listen.port,
    () => config.listen.maxClients,
    () => sessions.size,
    (socket) => {
      const session = new ClientSession(socket, {
        get config() {
          return config;
        },
        pool,
        get verifier() {
          return verifier;
        },
        registry,
        get guard() {
          return guard;
        },
        cancels,
        log,
        secureContext: () => secureContext,
        onClosed: (s) => sessions.delete(s),
      });
      sessions.add(session);
    },
    log,
  );

  let closing: Promise<void> | null = null;

  return {
    host: listener.address.address,
    port: listener.address.port,
    pool,
    sessions,
    async reload(next) {
      // Build everything first: a bad key or certificate leaves the running config untouched.
      const nextVerifier = await createTenantTokenVerifier(next);
      const nextContext = loadSecureContext(next.tls);
      const previous = verifier;
      config = next;
      verifier = nextVerifier;
      guard = guardFor(next);
      secureContext = nextContext;
      pool.reconfigure(poolOptions(next));
      previous.close();
      log.info('configuration reloaded');
    },
    close(drainTimeoutMs = 0) {
      closing ??= (async () => {
        await listener.stop().catch(() => undefined);
        const deadline = Date.now() + drainTimeoutMs;
        while (Date.now() < deadline && [...sessions].some((s) => s.state === SessionState.Active || s.state === SessionState.Waiting)) {
          await new Promise((resolve) => setTimeout(resolve, 50));
        }
        for (const session of [...sessions]) session.fail(ProxyError.shuttingDown());
        clearInterval(janitor);
        pool.destroy();
        verifier.close();
        await registry.close().catch(() => undefined);
      })();
      return closing;
    },
  };
}

/** `pg-tenant-proxy start`: runs until SIGTERM/SIGINT (drain, exit 0); SIGHUP reloads the config file. */
export async function runProxy(configFile: string | undefined): Promise<void> {
  const config = loadConfig(configFile);
  const log = createLogger(config);
  process.on('uncaughtException', (err) => log.error({ err }, 'uncaught exception'));
  process.on('unhandledRejection', (err) => log.error({ err }, 'unhandled rejection'));
  const proxy = await startProxy(config, log);
  const drainMs = 30_000;
  const stop = (signal: string): void => {
    log.info({ signal }, 'draining');
    proxy.close(drainMs).then(
      () => {
        log.info('stopped');
        log.flush();
        process.exit(0);
      },
      (err: unknown) => {
        log.error({ err }, 'shutdown failed');
        process.exit(1);
      },
    );
  };
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGINT', () => stop('SIGINT'));
  process.on('SIGHUP', () => {
    try {
      proxy.reload(loadConfig(configFile)).catch((err: unknown) => log.error({ err: (err as Error).message }, 'reload rejected; keeping the old config'));
    } catch (err) {
      log.error({ err: (err as Error).message }, 'reload rejected; keeping the old config');
    }
  });
}
