// What a client has once logged in: its settings, prepared statements, statement records, judge and server link.
import type { ConnectionAudit } from '../audit/audit-log.js';
import type { TenantIdentity } from '../auth/identity.js';
import { ClientLink, type LinkHost } from '../backend/link.js';
import type { TenantShare } from '../limits/share.js';
import { ClientChannels } from '../channels/client-channels.js';
import type { TenantMeter } from '../metrics/metrics.js';
import { SessionRoute } from '../routing/session-route.js';
import type { LoggedIn } from './login.js';
import { StatementJudge } from './judge.js';
import { PreparedStatements } from './prepared.js';
import type { SessionDeps } from './session-state.js';
import { SessionSettings } from './session-settings.js';
import { StatementRecorder } from './statement-recorder.js';
import { StatementTracker } from './statement-tracker.js';

export interface ClientParts {
  identity: TenantIdentity;
  settings: SessionSettings;
  judge: StatementJudge;
  prepared: PreparedStatements;
  link: ClientLink;
  /** The upstream its transactions go to, followed from the registry at each checkout. */
  route: SessionRoute;
  /** What each statement is and when it completes, when the audit or the metrics want it. */
  tracker: StatementTracker | null;
  recorder: StatementRecorder | null;
  /** The tenant's limits and counts in this process (its client counted until the link leaves). */
  share: TenantShare;
  /** LISTEN/UNLISTEN answered by the proxy and notifications (null for a client whose statements are not rewritten). */
  channels: ClientChannels | null;
}

export function clientParts(
  host: LinkHost,
  deps: SessionDeps,
  loggedIn: LoggedIn,
  share: TenantShare,
  audit: ConnectionAudit,
  meter: TenantMeter,
): ClientParts {
  const config = deps.config;
  const identity: TenantIdentity = loggedIn.identity;
  const settings = new SessionSettings(loggedIn.settings);
  const route = new SessionRoute(
    identity.tenantId,
    loggedIn.upstream,
    loggedIn.record.route,
    deps.upstreams,
    deps.registry,
    identity.schema,
  );
  const prepared = new PreparedStatements(
    identity.schema,
    config.listen.maxPreparedBytes,
    route.pool.generations.of(identity.schema),
  );
  const recording = audit.recordsStatements || config.metrics.enabled;
  const tracker = recording ? new StatementTracker() : null;
  const recorder =
    tracker === null ? null : new StatementRecorder(tracker, audit, meter, () => link.server?.pid ?? null);
  const judge = new StatementJudge(
    identity,
    settings,
    deps.guard,
    config.policy.guard,
    deps.audit,
    audit,
    meter,
    host.log,
    recording,
  );
  const hub = config.policy.guard && !identity.guardBypass ? (deps.channelHub?.(loggedIn.upstream) ?? null) : null;
  const channels =
    hub === null
      ? null
      : new ClientChannels(hub, identity.schema, {
          write(buf) {
            meter.bytesOut += buf.length;
            host.usage.bytesOut += buf.length;
            host.conn.write(buf);
          },
          get busy() {
            return host.busy;
          },
          log: host.log,
        });
  const link: ClientLink = new ClientLink(host, {
    config,
    channels,
    // Read at each park and reset: the route may have moved the session since the link was made.
    get pool() {
      return route.pool;
    },
    prepared,
    settings,
    tracker,
    recorder,
    judge: (code, buf, start, end) => judge.verdict(code, buf, start, end),
    share,
    leave: () => deps.limits.leave(share),
  });
  return { identity, settings, judge, prepared, link, route, tracker, recorder, share, channels };
}
