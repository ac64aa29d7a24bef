// A client session's states and the edges between them, and what a session is built from.
import type tls from 'node:tls';
import type { Logger } from 'pino';
import type { AuditLog } from '../audit/audit-log.js';
import type { TenantTokenVerifier } from '../auth/tenant-token.js';
import type { ChannelHub } from '../channels/hub.js';
import type { Config } from '../config/schema.js';
import type { SqlGuard } from '../guard/sql-guard.js';
import type { TenantLimits } from '../limits/tenant-limits.js';
import type { ProxyMetrics } from '../metrics/metrics.js';
import type { Upstream, Upstreams } from '../routing/upstreams.js';
import type { TenantRegistry } from '../tenants/registry.js';
import type { UsageBook } from '../usage/usage-book.js';
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
  /** Every upstream's pool; a session uses its tenant's (ClientParts.route). */
  upstreams: Upstreams;
  verifier: TenantTokenVerifier;
  registry: TenantRegistry;
  guard: SqlGuard;
  cancels: CancelRegistry;
  log: Logger;
  audit: AuditLog;
  metrics: ProxyMetrics;
  usage: UsageBook;
  /** Per-tenant limits: each tenant's share, which its sessions hold. */
  limits: TenantLimits;
  secureContext(): tls.SecureContext | null;
  /** The listening connection for channels on the upstream a tenant logged in to; absent: LISTEN never hears. */
  channelHub?: (upstream: Upstream) => ChannelHub;
  onClosed(session: ClientSession): void;
}
