// What a client has once logged in: its settings, prepared statements, statement records, judge and server link.
import type { ConnectionAudit } from '../audit/audit-log.js';
import type { TenantIdentity } from '../auth/identity.js';
import { ClientLink, type LinkHost } from '../backend/link.js';
import { ClientChannels } from '../channels/client-channels.js';
import type { TenantMeter } from '../metrics/metrics.js';
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
  /** What each statement is and when it completes, when the audit or the metrics want it. */
  tracker: StatementTracker | null;
  recorder: StatementRecorder | null;
  /** LISTEN/UNLISTEN answered by the proxy and notifications (null for a client whose statements are not rewritten). */
  channels: ClientChannels | null;
}

export function clientParts(
  host: LinkHost,
  deps: SessionDeps,
  identity: TenantIdentity,
  startupSettings: Map<string, string>,
  audit: ConnectionAudit,
  meter: TenantMeter,
): ClientParts {
  const config = deps.config;
  const settings = new SessionSettings(startupSettings);
  const prepared = new PreparedStatements(
    identity.schema,
    config.listen.maxPreparedBytes,
    deps.pool.generations.of(identity.schema),
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
  const hub = config.policy.guard && !identity.guardBypass ? (deps.channelHub?.(identity) ?? null) : null;
  const channels =
    hub === null
      ? null
      : new ClientChannels(hub, identity.schema, {
          write(buf) {
            meter.bytesOut += buf.length;
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
    pool: deps.pool,
    prepared,
    settings,
    tracker,
    recorder,
    judge: (code, buf, start, end) => judge.verdict(code, buf, start, end),
  });
  return { identity, settings, judge, prepared, link, tracker, recorder, channels };
}
