// Each statement's completion, matched to the statement it finishes, becomes one audit event and its metrics.
import type { ConnectionAudit } from '../audit/audit-log.js';
import type { TenantMeter } from '../metrics/metrics.js';
import type { RunningStatement, StatementTracker } from './statement-tracker.js';

export class StatementRecorder {
  /** Statements recorded so far (the connection_closed event carries it). */
  completed = 0;

  constructor(
    /** Mirrors the client's statements; the session feeds it what it sends. */
    readonly tracker: StatementTracker,
    private readonly audit: ConnectionAudit,
    private readonly meter: TenantMeter,
    /** The server the statements ran on, if any. */
    private readonly backendPid: () => number | null,
  ) {}

  /**
   * A completion in segment `segment`: a CommandComplete's tag (null for an empty query or a suspended portal), or an
   * error's SQLSTATE.
   */
  done(segment: number, tag: string | null, sqlstate: string | null): void {
    const entry = this.tracker.completed(segment);
    if (entry === undefined) return;
    const now = performance.now();
    const seconds = (now - entry.startedAt) / 1000;
    entry.startedAt = now;
    const { command, rows } = splitCommandTag(tag);
    this.record(entry, command, rows, sqlstate, seconds);
  }

  /** Statements that will never complete on the server (it was lost or discarded) are recorded with `sqlstate`. */
  unfinished(sqlstate: string): void {
    const now = performance.now();
    for (const entry of this.tracker.unfinished())
      this.record(entry, null, null, sqlstate, (now - entry.startedAt) / 1000);
  }

  private record(
    entry: RunningStatement,
    command: string | null,
    rows: number | null,
    sqlstate: string | null,
    seconds: number,
  ): void {
    this.completed++;
    const outcome = sqlstate === null ? 'ok' : 'error';
    this.meter.statement(command ?? (sqlstate === null ? 'EMPTY' : 'ERROR'), outcome, seconds);
    if (!this.audit.recordsStatements) return;
    this.audit.statement({
      command,
      fingerprint: entry.source.analysis?.fingerprint ?? null,
      statement: this.audit.statementText(entry.source.analysis, entry.source.text),
      outcome,
      sqlstate,
      duration_ms: Math.round(seconds * 1e6) / 1000,
      rows,
      backend_pid: this.backendPid(),
    });
  }
}

/** "INSERT 0 3" → INSERT, 3; "CREATE TABLE" → CREATE TABLE, null: the command without its counts, and the row count. */
export function splitCommandTag(tag: string | null): { command: string | null; rows: number | null } {
  if (tag === null) return { command: null, rows: null };
  const match = /^(.*?)((?: \d+)+)$/.exec(tag);
  if (match === null) return { command: tag, rows: null };
  const counts = match[2]!.trim().split(' ');
  return { command: match[1]!, rows: Number(counts[counts.length - 1]) };
}
