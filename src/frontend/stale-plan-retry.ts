// Replays a client's segment once when PostgreSQL finds the shared statement it binds stale (0A000), re-preparing it first.
import type { ServerConn, ServerStatement } from '../backend/server-conn.js';
import { FrontendCode, SqlState } from '../protocol/codes.js';
import type { ErrorFields } from '../protocol/messages.js';
import { Writer } from '../protocol/writer.js';

/** 'S': a Describe of a prepared statement, not of a portal. */
const DESCRIBE_STATEMENT = 0x53;

/** What one segment may hold to be replayed; a longer one is not retried (the client hears the 0A000). */
const MAX_REPLAY_BYTES = 64 * 1024;

const Phase = {
  Off: 0,
  /** Recording what goes to the server, from the shared statement's Bind or Describe up to the segment's Sync. */
  Recording: 1,
  /** The Sync went out; the segment's replies are awaited. */
  Recorded: 2,
} as const;
type Phase = (typeof Phase)[keyof typeof Phase];

/** "cached plan must not change result type": the routine names it whatever lc_messages says. */
export function isStalePlan(fields: ErrorFields): boolean {
  return (
    fields.code === SqlState.FEATURE_NOT_SUPPORTED &&
    (fields.routine === 'RevalidateCachedQuery' || fields.message === 'cached plan must not change result type')
  );
}

/**
 * A statement the proxy shares between clients by text can predate the client's own Parse; DDL the proxy did not see
 * (another proxy, an operator's psql, a function) may lie in between, and PostgreSQL then refuses the Bind with 0A000
 * where a direct connection, which parsed afresh, would have run it. This re-prepares the statement under the same
 * server name and sends the client's frames again, from that Bind to the Sync, exactly as they went the first time:
 * the replies the client and the session's bookkeeping see are then those of a first attempt that succeeded.
 *
 * It is only done when nothing of the client's can have run or been lost, which PreparedStatements checks when it
 * arms this and the methods below check as replies come:
 * - the segment began outside a transaction block with nothing else in flight (the error aborts only the segment's
 *   implicit transaction, which PostgreSQL rolls back whole), and no Bind, Describe or Execute came before the
 *   shared statement's in it (Parses and Closes before it are not transactional and stay done);
 * - no statement of the segment completed before the error (CommandComplete, EmptyQueryResponse, PortalSuspended);
 * - it was armed by the segment's one Bind or Describe, a Bind (a Describe's ParameterDescription precedes its
 *   0A000; a reply to the first of two would reach the client before the second one's 0A000);
 * - the segment ended with its Sync, with no Flush (a client waiting on a Flush reads replies before it syncs), and
 *   the client sent nothing after that Sync (the replay would land behind it), within MAX_REPLAY_BYTES.
 * Once per segment: if the replay fails again, the client hears that error.
 */
export class StalePlanRetry {
  private phase: Phase = Phase.Off;
  private server: ServerConn | null = null;
  private key = '';
  private statement: ServerStatement | null = null;
  private body: Buffer | null = null;
  private segment = 0;
  private bytes = 0;
  /** The frames as sent, as views (the framer never reuses a chunk): kept only until the segment's answer. */
  private readonly buffers: Buffer[] = [];
  private readonly starts: number[] = [];
  private readonly ends: number[] = [];

  /** Frames sent now must be reported (sent). */
  get recording(): boolean {
    return this.phase === Phase.Recording || this.phase === Phase.Recorded;
  }

  /** The Bind or Describe of a shared statement opens segment `segment`, which qualifies (see the class comment). */
  arm(server: ServerConn, key: string, statement: ServerStatement, body: Buffer, segment: number): void {
    if (this.phase !== Phase.Off) return;
    this.phase = Phase.Recording;
    this.server = server;
    this.key = key;
    this.statement = statement;
    this.body = body;
    this.segment = segment;
    this.bytes = 0;
  }

  /** A frame went to the server (the rewritten one, where rewritten). */
  sent(frame: Buffer, start: number, end: number): void {
    const code = frame[start];
    this.bytes += end - start;
    // A second Bind, or a Describe of a statement, may fail with the 0A000 after the armed Bind's BindComplete reached
    // the client, and the replay would send it again (a portal's Describe cannot: its plan was fixed at its Bind).
    const another =
      this.buffers.length > 0 &&
      (code === FrontendCode.Bind || (code === FrontendCode.Describe && frame[start + 5] === DESCRIBE_STATEMENT));
    if (this.phase !== Phase.Recording || code === FrontendCode.Flush || another || this.bytes > MAX_REPLAY_BYTES) {
      this.off();
      return;
    }
    this.buffers.push(frame);
    this.starts.push(start);
    this.ends.push(end);
    if (code === FrontendCode.Sync) this.phase = Phase.Recorded;
  }

  /** A statement of the segment completed: what it did would be done twice. */
  ran(): void {
    if (this.recording) this.off();
  }

  /** The segment was answered or abandoned: nothing is replayed past it. */
  segmentOver(done: number): void {
    if (this.recording && this.segment <= done) this.off();
  }

  /**
   * An ErrorResponse of segment `segment` from the server. True when it is swallowed: the statement is being prepared
   * again, `preparedAt` on the statement clock, and the segment replayed.
   */
  retried(fields: ErrorFields, segment: number, preparedAt: number): boolean {
    if (this.phase !== Phase.Recorded || segment !== this.segment || !isStalePlan(fields)) {
      if (this.recording) this.off();
      return false;
    }
    const statement = this.statement!;
    const server = this.server!;
    const key = this.key;
    const frames: Buffer[] = [closeStatement(statement.name), parseStatement(statement.name, this.body!)];
    for (let i = 0; i < this.buffers.length; i++) frames.push(this.buffers[i]!.subarray(this.starts[i], this.ends[i]));
    // The re-prepare itself failing (say the table is gone): the client hears why, and the statement is no more.
    server.replay(Buffer.concat(frames), () => {
      if (server.statements.get(key) === statement) server.statements.delete(key);
    });
    statement.preparedAt = preparedAt;
    statement.stale = false;
    this.off();
    return true;
  }

  private off(): void {
    this.phase = Phase.Off;
    this.server = null;
    this.statement = null;
    this.body = null;
    this.clearFrames();
  }

  private clearFrames(): void {
    this.buffers.length = 0;
    this.starts.length = 0;
    this.ends.length = 0;
  }
}

function closeStatement(name: string): Buffer {
  return new Writer(32).begin(FrontendCode.Close).int8(0x53).cstring(name).end().flush(); // 'S'
}

function parseStatement(name: string, body: Buffer): Buffer {
  return new Writer(body.length + 32).begin(FrontendCode.Parse).cstring(name).bytes(body).end().flush();
}
