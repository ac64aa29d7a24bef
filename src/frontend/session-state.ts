// A client session's states and the edges between them, and what a session is built from.
import type tls from 'node:tls';
import type { Logger } from 'pino';
import type { AuditLog } from '../audit/audit-log.js';
import type { TenantTokenVerifier } from '../auth/tenant-token.js';
import type { TenantIdentity } from '../auth/identity.js';
import type { Pool } from '../backend/pool.js';
import type { ChannelHub } from '../channels/hub.js';
import type { Config } from '../config/schema.js';
import type { SqlGuard } from '../guard/sql-guard.js';
import type { ProxyMetrics } from '../metrics/metrics.js';
import type { TenantRegistry } from '../tenants/registry.js';
import type { CancelRegistry } from './cancel.js';
import type { ClientSession } from './session.js';

export const SessionState = {
  Startup: 'startup',
  Password: 'password',
  Authenticating: 'authenticating',
  Idle: 'idle',
  Waiting: 'waiting',
  Active: 'active',
  Closed: 'closed',
} as const;
export type SessionState = (typeof SessionState)[keyof typeof SessionState];

/** Who may move the session where; every change goes through transition(). */
export const SESSION_EDGES: Record<SessionState, readonly SessionState[]> = {
  startup: ['password', 'authenticating', 'closed'],
  password: ['authenticating', 'closed'],
  authenticating: ['idle', 'closed'],
  idle: ['waiting', 'closed'],
  waiting: ['active', 'idle', 'closed'],
  active: ['idle', 'waiting', 'closed'],
  closed: [],
};

export interface SessionDeps {
  config: Config;
  pool: Pool;
  verifier: TenantTokenVerifier;
  registry: TenantRegistry;
  guard: SqlGuard;
  cancels: CancelRegistry;
  log: Logger;
  audit: AuditLog;
  metrics: ProxyMetrics;
  secureContext(): tls.SecureContext | null;
  /** The listening connection for a tenant's channels (its upstream's); absent: LISTEN is answered but never hears. */
  channelHub?: (identity: TenantIdentity) => ChannelHub;
  onClosed(session: ClientSession): void;
}
