// What verify-isolation's attack cases, their outcomes and its report are made of.
import type pg from 'pg';

/** Attack categories, each named after what is meant to stop it (README, Security model). */
export const CATEGORIES = ['catalog', 'names', 'oracles', 'session', 'escape', 'shared', 'pool'] as const;
export type Category = (typeof CATEGORIES)[number];

/** What stops a category: the report says which line a leak went through. */
export const CATEGORY_GUARDS: Readonly<Record<Category, string>> = {
  catalog: 'catalog filter (policy.catalogFilter)',
  names: 'guard name rules, tenant roles',
  oracles: 'guard name rules, catalog filter wrappers',
  session: 'guard session-identity rules',
  escape: 'guard escape-hatch rules (dynamic SQL, files, languages, limits)',
  shared: 'guard server/shared-object rules, catalog filter',
  pool: 'server reset between tenants',
};

export const OUTCOMES = ['leaked', 'refused', 'harmless'] as const;
/**
 * leaked: tenant a observed tenant b's data or names, told b's objects from missing ones, or changed b's (or shared)
 * state; refused: an error; harmless: it ran and showed nothing of b.
 */
export type Outcome = (typeof OUTCOMES)[number];

export interface Attempt {
  category: Category;
  name: string;
  /** The guard rule label (src/guard/analysis.ts GuardRule) or other line meant to stop it. */
  rule: string;
  outcome: Outcome;
  /** SQLSTATE when refused (or when the leak was an answer that differs by error). */
  sqlstate?: string;
  /** Why it was classified so: the marker seen, the error, or what differed. */
  detail: string;
}

/** What a statement did, as tenant a saw it. */
export type Observation =
  { ok: true; rows: unknown[]; fields: string[]; text: string } | { ok: false; code: string; message: string };

/** The tenants under test and what tenant b planted, as the cases need them. */
export interface Facts {
  a: TenantSide;
  b: TenantSide;
  /** Unique to this run; every object b planted carries it in its name or value. */
  secret: string;
  /** Prefix for objects tenant a makes while probing (dropped at the end). */
  probe: string;
  /** Strings whose appearance anywhere in what tenant a reads is a leak: the secret. */
  markers: string[];
  /** Names whose appearance as a whole identifier in what tenant a reads is a leak: b's schema and role. */
  nameMarkers: string[];
  /** The database clients connect to. */
  database: string;
  /** Oids of b's planted objects, by kind (absent when not planted). */
  oids: Partial<Record<PlantedKind, number>>;
  /** Backend pids that served tenant b. */
  bPids: number[];
  /** An oid no object has: the control for oid-differential cases. */
  missingOid: number;
  /** A schema name of no tenant: the control for name-differential cases. */
  missingSchema: string;
  /** Advisory lock key b takes for the pool case. */
  lockKey: number;
  registrySchema: string;
  deniedFunctions: readonly string[];
  maxStatementBytes: number;
}

export type PlantedKind =
  | 'table'
  | 'view'
  | 'index'
  | 'sequence'
  | 'function'
  | 'type'
  | 'constraint'
  | 'trigger'
  | 'rule'
  | 'statistics'
  | 'namespace'
  | 'role'
  | 'largeObject';

export interface TenantSide {
  id: string;
  schema: string;
  /** The tenant's role with tenancy.roles, else null. */
  role: string | null;
  token: string;
}

/** How the runner reaches the proxy as a tenant. */
export interface Connector {
  connect(side: 'a' | 'b'): Promise<pg.Client>;
}

/** One attack: SQL run as tenant a (or a custom probe), classified by the runner. */
export interface AttackCase {
  category: Category;
  name: string;
  rule: string;
  /** SQL as tenant a (one or more statements). */
  sql?: string;
  /** Bind values: sends the statement with the extended protocol. */
  values?: unknown[];
  /** The same attack on an object that does not exist: a different answer is an existence oracle (a leak). */
  control?: string;
  /** SQLSTATEs that mean "not there" (harmless) rather than a refusal. */
  absent?: readonly string[];
  /** Success itself is the leak (a write to b's or shared state). */
  leakOnSuccess?: boolean;
  /** A leak the rows show that the marker search cannot (a lock held, a cancel delivered). */
  leakIf?: (rows: unknown[]) => string | null;
  /** Run on a connection of its own, closed afterwards (the case may change its session). */
  fresh?: boolean;
  /** Tenant a's statements after the case (drop what it made); errors ignored. */
  cleanup?: string[];
  /** A case that is more than one statement as a: returns its classification itself. */
  run?: (ctx: CaseContext) => Promise<Omit<Attempt, 'category' | 'name' | 'rule'>>;
}

export interface CaseContext {
  facts: Facts;
  connector: Connector;
  /** Tenant a's shared client. */
  a: pg.Client;
  /** Tenant b's client that planted, still connected. */
  b: pg.Client;
}
