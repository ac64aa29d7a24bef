// Typed configuration: every key, its default and its validation live here, so a bad config fails at startup.
import { z } from 'zod';
import { tenantSchemaShape } from '../auth/identity.js';

const port = z.number().int().min(0).max(65535);
const positiveMs = z.number().int().positive();

const listenSchema = z.strictObject({
  host: z.string().min(1).default('127.0.0.1'),
  port: port.default(6432),
  /** Client connections beyond this get 53300 at startup. */
  maxClients: z.number().int().positive().default(10000),
  /** A client must finish TLS, startup and authentication within this time. */
  handshakeTimeoutMs: positiveMs.default(10000),
  /** Largest client message accepted after startup (PostgreSQL's own cap is 1 GB). */
  maxMessageBytes: z
    .number()
    .int()
    .min(1024)
    .max(1 << 30)
    .default(256 * 1024 * 1024),
  /**
   * Memory one client's named prepared statements may take in the proxy (their text and parameter types twice over,
   * plus 256 bytes each); past it a Parse of a new name gets 54000. PostgreSQL has no such limit, but there each
   * backend pays for its own client; here one client must not be able to exhaust the process every tenant shares.
   */
  maxPreparedBytes: z
    .number()
    .int()
    .min(64 * 1024)
    .default(16 * 1024 * 1024),
  /** Startup parameters that are accepted and dropped instead of applied (like PgBouncer's ignore_startup_parameters). */
  ignoreStartupParameters: z.array(z.string().min(1)).default([]),
  /**
   * Proxy processes sharing the listen port (each with its share of upstream.poolSize and maxClients); 1 runs the
   * proxy in the started process itself. More than 1 pays on a box with cores to spare (see README, Benchmarks).
   */
  workers: z.number().int().min(1).max(64).default(1),
});

const upstreamTlsSchema = z.strictObject({
  mode: z.enum(['disable', 'prefer', 'require', 'verify-ca', 'verify-full']).default('disable'),
  /** SCRAM channel binding (tls-server-end-point), as libpq's channel_binding: prefer, require or disable. */
  channelBinding: z.enum(['prefer', 'require', 'disable']).default('prefer'),
  ca: z.string().min(1).optional(),
  cert: z.string().min(1).optional(),
  key: z.string().min(1).optional(),
});

const upstreamSchema = z.strictObject({
  /** postgres://user:password@host:port/database of the proxy's login role. */
  url: z.string().refine(isPostgresUrl, 'must be a postgres:// or postgresql:// URL'),
  /** Overrides the password in url (keeps secrets out of the file: PGTP_UPSTREAM_PASSWORD). */
  password: z.string().optional(),
  poolSize: z.number().int().min(1).max(10000).default(20),
  /** Backends kept open even when idle. */
  minIdle: z.number().int().min(0).default(0),
  connectTimeoutMs: positiveMs.default(5000),
  idleTimeoutMs: positiveMs.default(600_000),
  maxLifetimeMs: positiveMs.default(3_600_000),
  /** How long a client waits for a backend before it gets 53300. */
  queueTimeoutMs: positiveMs.default(30_000),
  tls: upstreamTlsSchema.default(upstreamTlsSchema.parse({})),
});

/** An upstream's name, as routes in the registry and the `upstream` metric label spell it. */
export const UPSTREAM_NAME = /^[a-z][a-z0-9_-]{0,62}$/;
/** The upstream the `upstream` key configures; every tenant without a route of its own goes there. */
export const DEFAULT_UPSTREAM = 'default';

/** One of `upstreams`: the keys of `upstream`, plus the privileged URL the tenant commands use on that cluster. */
const namedUpstreamSchema = upstreamSchema
  .extend({
    /**
     * postgres://role[:password]@host:port/database of a privileged role on this upstream for `tenants create
     * --upstream`, `migrate` and the other tenant commands (admin.url plays this part for `default`).
     */
    adminUrl: z.string().refine(isPostgresUrl, 'must be a postgres:// or postgresql:// URL').optional(),
    /** Overrides the password in adminUrl. */
    adminPassword: z.string().optional(),
  })
  .refine((u) => u.adminUrl === undefined || urlUser(u.adminUrl) !== urlUser(u.url), {
    message: "must not log in as the proxy's login role (url): the tenant commands need a privileged role",
    path: ['adminUrl'],
  })
  .refine((u) => u.adminUrl === undefined || urlDatabase(u.adminUrl) === urlDatabase(u.url), {
    message: 'must name the database of url: tenant schemas are made where the proxy reads them',
    path: ['adminUrl'],
  });

const jwtSchema = z
  .strictObject({
    secret: z.string().min(1).optional(),
    publicKeyFile: z.string().min(1).optional(),
    jwksFile: z.string().min(1).optional(),
    jwksUrl: z.url().optional(),
    /** Private key used only by `pg-tenant-proxy token` to mint development tokens. */
    privateKeyFile: z.string().min(1).optional(),
    issuer: z.string().min(1).optional(),
    audience: z.string().min(1).optional(),
    tenantClaim: z.string().min(1).default('tenant_id'),
    /** Narrows the algorithms derived from the key; can never widen them. */
    algorithms: z.array(z.string().min(1)).optional(),
    clockToleranceSec: z.number().int().min(0).max(3600).default(30),
    /**
     * When > 0, tokens must carry iat and are refused when issued longer ago than this or minted to live
     * (exp - iat) longer than this; 0 disables the check.
     */
    maxTokenAgeSec: z.number().int().min(0).default(0),
  })
  .refine((j) => [j.secret, j.publicKeyFile, j.jwksFile, j.jwksUrl].filter((v) => v !== undefined).length === 1, {
    message: 'exactly one of secret, publicKeyFile, jwksFile, jwksUrl must be set',
  })
  .refine((j) => j.secret === undefined || j.secret.length >= 32, {
    message: 'secret must be at least 32 characters (HS256 needs 256 bits of key)',
    path: ['secret'],
  });

/** Which tenants an issuer may speak for: a list of ids, an anchored pattern, or the registry's `issuer` column. */
const issuerTenantsSchema = z.union([
  z.array(z.string().min(1)).min(1),
  z.strictObject({
    pattern: z.string().refine(isAnchoredRegex, 'must be a valid regular expression anchored with ^ and $'),
  }),
  z.literal('registry'),
]);

/** One identity provider (auth.issuers): picked by the token's `iss`, verified with its own key and options only. */
const issuerSchema = z
  .strictObject({
    /** How the registry (`tenants create/update --issuer NAME`), audit and logs name this issuer. */
    name: z.string().regex(/^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$/, 'must be 1-63 letters, digits, ".", "_" or "-"'),
    /** The `iss` its tokens carry (required: it is how a token finds its issuer). */
    issuer: z.string().min(1),
    secret: z.string().min(1).optional(),
    publicKeyFile: z.string().min(1).optional(),
    jwksFile: z.string().min(1).optional(),
    jwksUrl: z.url().optional(),
    audience: z.string().min(1).optional(),
    tenantClaim: z.string().min(1).default('tenant_id'),
    algorithms: z.array(z.string().min(1)).optional(),
    clockToleranceSec: z.number().int().min(0).max(3600).default(30),
    maxTokenAgeSec: z.number().int().min(0).default(0),
    tenants: issuerTenantsSchema,
  })
  .refine((j) => [j.secret, j.publicKeyFile, j.jwksFile, j.jwksUrl].filter((v) => v !== undefined).length === 1, {
    message: 'exactly one of secret, publicKeyFile, jwksFile, jwksUrl must be set',
  })
  .refine((j) => j.secret === undefined || j.secret.length >= 32, {
    message: 'secret must be at least 32 characters (HS256 needs 256 bits of key)',
    path: ['secret'],
  });

const authSchema = z
  .strictObject({
    /** One issuer, trusted for every tenant: the shorthand for a single identity provider. */
    jwt: jwtSchema.optional(),
    /** Several identity providers, each allowed for some tenants; a token is verified by the one its `iss` names. */
    issuers: z.array(issuerSchema).min(1).optional(),
  })
  .refine((a) => (a.jwt === undefined) !== (a.issuers === undefined), {
    message: 'exactly one of auth.jwt and auth.issuers must be set',
  })
  .refine((a) => a.issuers === undefined || new Set(a.issuers.map((i) => i.name)).size === a.issuers.length, {
    message: 'issuer names must be unique',
    path: ['issuers'],
  })
  .refine((a) => a.issuers === undefined || new Set(a.issuers.map((i) => i.issuer)).size === a.issuers.length, {
    message: 'two issuers must not share an issuer (iss) value: a token would not know which key verifies it',
    path: ['issuers'],
  });

const registrySchema = z.strictObject({
  /**
   * Admit only tenants recorded in the registry with status active (unknown: 28000 "not registered"; suspended:
   * 28000 with the reason). Off: a tenant is admitted when its schema (and role) exist. The `tenants` commands
   * maintain the registry either way. Fixed at start.
   */
  enabled: z.boolean().default(false),
  /**
   * A suspended or deleted tenant's session still inside a transaction this long after the change is ended (its
   * transaction rolls back), so holding a transaction open cannot keep a tenant in; 0 waits for the transaction.
   */
  withdrawTimeoutMs: z.number().int().min(0).default(30_000),
  /**
   * The control schema holding the registry, in the upstream database. Its change channel is `<schema>_changes`,
   * so the name is kept short enough for a channel name (63 bytes).
   */
  schema: z
    .string()
    .regex(/^[a-z_][a-z0-9_]{0,47}$/, 'must be a lower-case identifier of at most 48 characters')
    .refine((s) => !s.startsWith('pg_'), 'names starting with pg_ are reserved by PostgreSQL')
    .default('pgtp'),
});

const tenancySchema = z.strictObject({
  /** `{tenant}` is replaced by the verified tenant id; the result is always quoted as an identifier. */
  schemaTemplate: z
    .string()
    .refine((t) => t.includes('{tenant}'), 'must contain {tenant}')
    .default('tenant_{tenant}'),
  tenantPattern: z
    .string()
    .refine(isAnchoredRegex, 'must be a valid regular expression anchored with ^ and $')
    .default('^[a-z0-9_]{1,48}$'),
  /** How long a schema-exists lookup is trusted. */
  schemaCacheTtlMs: z.number().int().min(0).default(30_000),
  /** Schemas every tenant may name besides its own (pg_catalog and information_schema always may be). */
  sharedSchemas: z.array(z.string().min(1)).default([]),
  /** Pin with SET ROLE to a per-tenant NOLOGIN role owning the schema: the database's own line of isolation. */
  roles: z.boolean().default(false),
  roleTemplate: z
    .string()
    .refine((t) => t.includes('{tenant}'), 'must contain {tenant}')
    .default('tenant_{tenant}'),
  registry: registrySchema.default(registrySchema.parse({})),
  /**
   * The tenant migrations folder (plain SQL files or drizzle-kit's output) that `migrate` and `tenants create` apply;
   * relative to the working directory. Unset: `migrate` needs --dir, and create makes empty schemas.
   */
  migrationsDir: z.string().min(1).optional(),
});

const policySchema = z.strictObject({
  /** false disables every SQL check (for measuring the guard's cost only; never in production). */
  guard: z.boolean().default(true),
  /** Cross-schema name checks; false leaves names to the database roles (session-identity and escape-hatch rules stay on). */
  checkNames: z.boolean().default(true),
  /** Extra functions refused for every tenant. */
  deniedFunctions: z.array(z.string().min(1)).default([]),
  /**
   * The most the guard parses of one statement: the text, or for a long one its skeleton (long string literals set
   * aside), plus any function/DO body or literal a rule reads in full. Past it: 54000. Statements themselves may be
   * as long as listen.maxMessageBytes.
   */
  maxStatementBytes: z
    .number()
    .int()
    .min(1024)
    .default(1024 * 1024),
  /** Entries in each verdict cache (exact text and normalized text). */
  cacheSize: z.number().int().min(0).default(10_000),
  /**
   * Catalog privacy: a tenant's references to pg_catalog and information_schema are rewritten to filtered views
   * (schema pgtp_catalog, installed by `pg-tenant-proxy tenants` commands and bootstrap) that show only its own
   * schema, shared schemas, built-in objects and visible roles. false shows every tenant's names (not recommended).
   */
  catalogFilter: z.boolean().default(true),
  /** Token claim that, when true, skips the guard for support tooling; off unless set, and audited. */
  bypassClaim: z.string().min(1).optional(),
});

const tlsSchema = z
  .strictObject({
    mode: z.enum(['disable', 'allow', 'require']).default('allow'),
    cert: z.string().min(1).optional(),
    key: z.string().min(1).optional(),
  })
  .refine((t) => (t.cert === undefined) === (t.key === undefined), {
    message: 'cert and key must be set together',
  })
  .refine((t) => t.mode !== 'require' || t.cert !== undefined, {
    message: 'mode require needs cert and key',
    path: ['mode'],
  });

const poolSchema = z.strictObject({
  /**
   * transaction: a server per transaction (the default); session: a client keeps its server until it disconnects
   * (temp tables, WITH HOLD cursors, one backend pid), at the price of one server per connected client.
   */
  mode: z.enum(['transaction', 'session']).default('transaction'),
  /** Tenants served in session mode whatever `mode` says. */
  sessionTenants: z.array(z.string().min(1)).default([]),
});

const METRICS_DEFAULT_PORT = 9930;
const metricsSchema = z
  .strictObject({
    /** Serves /metrics, /healthz, /readyz and /admin/status over HTTP. Unset: on exactly when `port` is set. */
    enabled: z.boolean().optional(),
    host: z.string().min(1).default('127.0.0.1'),
    /** 9930 when unset; 0 picks a free port (tests). Setting it asks for metrics, so it turns them on. */
    port: port.optional(),
    /** Tenants beyond this many distinct ones share the label value "other", so series stay bounded. */
    maxTenantLabels: z.number().int().min(1).max(100_000).default(100),
    /** Bearer token for /admin/status (and `pg-tenant-proxy status`); unset turns the admin view off. */
    adminToken: z.string().min(16).optional(),
  })
  // A config that names a metrics port and gets no metrics (and no warning) is a trap, hence the derived default.
  .transform(({ enabled, port, ...rest }) => ({
    ...rest,
    enabled: enabled ?? port !== undefined,
    port: port ?? METRICS_DEFAULT_PORT,
  }));

const auditSchema = z.strictObject({
  enabled: z.boolean().default(true),
  /** Append audit events to this file; unset writes them to stdout (operational logs go to stderr). */
  file: z.string().min(1).optional(),
  /** One event per completed statement; false keeps connection and refusal events only. */
  statements: z.boolean().default(true),
  /** normalized: the parser's text with literals as $n; none: fingerprint only; full: the text as sent (holds literals). */
  logStatementText: z.enum(['normalized', 'none', 'full']).default('normalized'),
  /** What happens to new statements while the audit destination fails: block (refused, 58030) or continue. */
  onFailure: z.enum(['block', 'continue']).default('block'),
});

const adminSchema = z.strictObject({
  /**
   * postgres://role[:password]@host:port/database of a privileged role for `pg-tenant-proxy tenants` and the library
   * API (creates roles and schemas, owns the registry); never the proxy's login role. Unset: those commands refuse.
   */
  url: z.string().refine(isPostgresUrl, 'must be a postgres:// or postgresql:// URL').optional(),
  /** Overrides the password in url (PGTP_ADMIN_PASSWORD). */
  password: z.string().optional(),
});

const usageSchema = z.strictObject({
  /**
   * Count each tenant's usage (transactions, statements, server time, bytes, rows, peak clients) and add it to the
   * registry's hourly buckets. Needs tenancy.registry.enabled: without a registry there is nowhere to add it, and
   * nothing is counted.
   */
  enabled: z.boolean().default(true),
  /** How often each proxy process adds what it counted to the registry (and retries a flush that failed). */
  flushIntervalMs: z.number().int().min(1000).max(3_600_000).default(10_000),
});

/** One set of per-tenant limits; 0 means no limit for every key (and a key left out of a tier falls back to default). */
const limitValue = z.number().int().min(0);
const limitFields = {
  /** Servers of the shared pool the tenant holds at once (pinned or parked for its clients); more transactions wait. */
  maxServers: limitValue,
  /** Client connections of the tenant; more get FATAL 53300. */
  maxClients: limitValue,
  /** Transactions of the tenant waiting (for a server or for its rate budget); more get ERROR 53400. */
  maxWaiting: limitValue,
  /** Statements running longer are cancelled by the proxy (57014), whatever statement_timeout the tenant sets. */
  statementTimeoutMs: limitValue,
  /** A client idle inside a transaction longer is disconnected (FATAL 25P03) and its transaction rolled back. */
  idleInTransactionTimeoutMs: limitValue,
  /** Transactions the tenant may start per second (a token bucket holding one second's worth); more wait. */
  transactionsPerSecond: limitValue,
};
export const LIMIT_KEYS = Object.keys(limitFields) as Array<keyof typeof limitFields>;
const defaultLimitsSchema = z.strictObject({
  maxServers: limitFields.maxServers.default(0),
  maxClients: limitFields.maxClients.default(0),
  maxWaiting: limitFields.maxWaiting.default(0),
  statementTimeoutMs: limitFields.statementTimeoutMs.default(0),
  idleInTransactionTimeoutMs: limitFields.idleInTransactionTimeoutMs.default(0),
  transactionsPerSecond: limitFields.transactionsPerSecond.default(0),
});
/** A tier's limits: only the keys it sets replace limits.default's. */
export const limitOverridesSchema = z.strictObject({
  maxServers: limitValue.optional(),
  maxClients: limitValue.optional(),
  maxWaiting: limitValue.optional(),
  statementTimeoutMs: limitValue.optional(),
  idleInTransactionTimeoutMs: limitValue.optional(),
  transactionsPerSecond: limitValue.optional(),
});

const limitsSchema = z.strictObject({
  /** Every tenant's limits unless its tier or its own registry record says otherwise. */
  default: defaultLimitsSchema.default(defaultLimitsSchema.parse({})),
  /** By the registry's tier (`tenants create/update --tier`): keys set here replace default's for that tier. */
  tiers: z.record(z.string().min(1), limitOverridesSchema).default({}),
});

const logSchema = z.strictObject({
  level: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
});

export const configSchema = z
  .strictObject({
    listen: listenSchema.default(listenSchema.parse({})),
    upstream: upstreamSchema,
    /**
     * More upstreams by name, each a cluster (or database) tenants can be routed to (the registry's route). `upstream`
     * is the one named default and holds the registry. Fixed at start: adding or removing one needs a restart.
     */
    upstreams: z
      .record(z.string(), namedUpstreamSchema)
      .superRefine((upstreams, ctx) => {
        for (const name of Object.keys(upstreams)) {
          if (name === DEFAULT_UPSTREAM)
            ctx.addIssue({
              code: 'custom',
              path: [name],
              message: 'the upstream named default is configured by the `upstream` key; name this one otherwise',
            });
          else if (!UPSTREAM_NAME.test(name))
            ctx.addIssue({
              code: 'custom',
              path: [name],
              message: 'an upstream name is 1-63 lower-case letters, digits, "_" or "-", starting with a letter',
            });
        }
      })
      .default({}),
    auth: authSchema,
    tenancy: tenancySchema.default(tenancySchema.parse({})),
    policy: policySchema.default(policySchema.parse({})),
    tls: tlsSchema.default(tlsSchema.parse({})),
    pool: poolSchema.default(poolSchema.parse({})),
    metrics: metricsSchema.default(metricsSchema.parse({})),
    audit: auditSchema.default(auditSchema.parse({})),
    admin: adminSchema.default(adminSchema.parse({})),
    usage: usageSchema.default(usageSchema.parse({})),
    limits: limitsSchema.default(limitsSchema.parse({})),
    log: logSchema.default(logSchema.parse({})),
  })
  .refine(
    (c) =>
      c.listen.workers <= c.upstream.poolSize &&
      c.listen.workers <= c.listen.maxClients &&
      Object.values(c.upstreams).every((u) => c.listen.workers <= u.poolSize),
    {
      message:
        'each worker needs at least one server of every upstream and one client: workers must not exceed upstream.poolSize, any upstreams.<name>.poolSize or listen.maxClients',
      path: ['listen', 'workers'],
    },
  )
  // The registry lists every tenant: no tenant may be pinned to it or be allowed to name it.
  .refine((c) => !c.tenancy.sharedSchemas.includes(c.tenancy.registry.schema), {
    message: 'the registry schema must not be shared with tenants (tenancy.sharedSchemas)',
    path: ['tenancy', 'registry', 'schema'],
  })
  .refine(
    (c) => !tenantSchemaShape(c.tenancy.schemaTemplate, c.tenancy.tenantPattern).test(c.tenancy.registry.schema),
    {
      message: 'is a name tenancy.schemaTemplate can give a tenant schema; choose one no tenant id can produce',
      path: ['tenancy', 'registry', 'schema'],
    },
  )
  .refine((c) => c.tenancy.registry.enabled || !(c.auth.issuers ?? []).some((i) => i.tenants === 'registry'), {
    message: 'tenants: registry needs tenancy.registry.enabled',
    path: ['auth', 'issuers'],
  })
  .refine((c) => c.admin.url === undefined || urlUser(c.admin.url) !== urlUser(c.upstream.url), {
    message: "must not log in as the proxy's login role (upstream.url): the tenant commands need a privileged role",
    path: ['admin', 'url'],
  })
  .refine((c) => c.admin.url === undefined || urlDatabase(c.admin.url) === urlDatabase(c.upstream.url), {
    message: 'must name the database of upstream.url: the registry lives where the proxy reads it',
    path: ['admin', 'url'],
  });

export type Config = z.infer<typeof configSchema>;
export type ConfigInput = z.input<typeof configSchema>;
export type IssuerConfig = z.infer<typeof issuerSchema>;

function isPostgresUrl(value: string): boolean {
  try {
    const url = new URL(value);
    return url.protocol === 'postgres:' || url.protocol === 'postgresql:';
  } catch {
    return false;
  }
}

/** The role a postgres:// URL logs in as ('' for a URL its own check refuses). */
function urlUser(value: string): string {
  try {
    return decodeURIComponent(new URL(value).username);
  } catch {
    return '';
  }
}

/** The database a postgres:// URL names; as libpq, the user name when the path is empty. */
function urlDatabase(value: string): string {
  try {
    return decodeURIComponent(new URL(value).pathname.slice(1)) || urlUser(value);
  } catch {
    return '';
  }
}

function isAnchoredRegex(value: string): boolean {
  if (!value.startsWith('^') || !value.endsWith('$')) return false;
  try {
    new RegExp(value);
    return true;
  } catch {
    return false;
  }
}
