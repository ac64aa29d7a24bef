// What a ClientLink needs: of its client session (LinkHost), and the session's parts it works with (LinkParts).
import type { Logger } from 'pino';
import type { TenantIdentity } from '../auth/identity.js';
import type { ClientChannels } from '../channels/client-channels.js';
import type { Config } from '../config/schema.js';
import type { PreparedStatements } from '../frontend/prepared.js';
import type { SessionSettings } from '../frontend/session-settings.js';
import type { StatementRecorder } from '../frontend/statement-recorder.js';
import type { StatementSource, StatementTracker } from '../frontend/statement-tracker.js';
import type { TenantShare } from '../limits/share.js';
import type { TenantMeter } from '../metrics/metrics.js';
import type { Conn } from '../net/conn.js';
import type { ProxyError } from '../protocol/errors.js';
import type { Framer } from '../protocol/framer.js';
import type { TenantUsage } from '../usage/tenant-usage.js';
import type { Pool } from './pool.js';
import type { ServerConn } from './server-conn.js';

/** What the link needs of its client session. */
export interface LinkHost {
  /** The client's write side. */
  readonly conn: Conn;
  /** The client's frames, read while linked. */
  readonly framer: Framer;
  readonly identity: TenantIdentity;
  readonly meter: TenantMeter;
  readonly usage: TenantUsage;
  readonly log: Logger;
  /** Pauses or resumes reading the client's socket. */
  pauseClient(): void;
  resumeClient(): void;
  /** The link gave its server back between transactions, parked for the client's next one: the client is idle. */
  unlinked(parked: ServerConn | null): void;
  /** A hand-over's reset failed and the held segment never ran: it waits for another server. */
  handOverFailed(segment: Buffer[]): void;
  /** Runs a continuation of a server reply; a failure in it ends the session, nothing else. */
  guarded(step: () => void): void;
  /** Sends the error; a FATAL one ends the session. */
  fail(err: ProxyError): void;
  /** The client said goodbye or left; `terminated`: Terminate was received. */
  close(reason: string, terminated?: boolean): void;
  /** Set when the session is draining: the transaction's end ends the session. */
  readonly drainError: ProxyError | null;
  /** The session keeps its server across transactions (pool.mode session). */
  readonly sessionMode: boolean;
  /** Waiting for a server, or linked and inside a transaction or statement. */
  readonly busy: boolean;
}

export interface LinkParts {
  config: Config;
  /** The client's LISTENs and notifications; null when its statements are not rewritten (unguarded). */
  channels: ClientChannels | null;
  pool: Pool;
  prepared: PreparedStatements;
  settings: SessionSettings;
  tracker: StatementTracker | null;
  recorder: StatementRecorder | null;
  judge(code: number, buf: Buffer, start: number, end: number): ProxyError | StatementSource | null;
  /** The tenant's limits (its timeouts are enforced here). */
  share: TenantShare;
  /** The client is gone: it no longer counts against its tenant's maxClients. */
  leave(): void;
}
