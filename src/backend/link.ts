// A client linked to a server: its frames in (judged, rewritten, entered in the server's ledger), replies out, and the
// release-or-abandon decision when the transaction or the client ends.
import { UsageTap } from '../usage/usage-tap.js';
import type { Pausable } from '../net/conn.js';
import { BackendCode, SqlState, TxStatus } from '../protocol/codes.js';
import { ProxyError } from '../protocol/errors.js';
import { encodeCommandComplete, readCString, readParameterStatus } from '../protocol/messages.js';
import type { StatementSource } from '../frontend/statement-tracker.js';
import { isSchemaPath } from '../frontend/startup.js';
import { LimitErrors } from '../limits/errors.js';
import { LinkTimers, type TimeoutHost } from '../limits/link-timers.js';
import { PIPELINED_RESET, planPin, type PinPlan } from './pin.js';
import { Route } from './replies.js';
import { LinkRequests } from './link-requests.js';
import { SettingsFollow } from './settings-follow.js';
import type { LinkHost, LinkParts } from './link-host.js';
import type { ServerClient, ServerConn } from './server-conn.js';

export type { LinkHost, LinkParts };

const DEALLOCATE_COMPLETE = encodeCommandComplete('DEALLOCATE');
/** How long statements a departed client left running may finish before their server is cancelled and closed. */
const ABANDON_DRAIN_MS = 10_000;

/**
 * The client's side of its time on a server. A newcomer reading a Query from socket to socket: the session's data
 * handler calls forward(); each frame is judged and rewritten where the proxy must (LinkRequests), entered in the
 * server's ReplyLedger and written in runs; ServerConn routes each reply through the ledger and hands the client's
 * control replies to onServerControl below; the ReadyForQuery that ends the transaction releases the server (park).
 */
export class ClientLink implements ServerClient, Pausable, TimeoutHost {
  #server: ServerConn | null = null;
  /** The server's last ReadyForQuery status. */
  txStatus: number = TxStatus.Idle;
  /** The client's segments so far, across its servers (the tracker's and the prepared cache's numbering). */
  private segments = 0;
  /** The first statement sent behind a pipelined reset (see attachHandedOver), accounted once the reset is confirmed. */
  heldSegment: Buffer[] | null = null;
  /** The server forwarded a FATAL error: its disconnect needs no second error for the client. */
  private serverSentFatal = false;
  /** The client's reading is paused because the server's socket is full. */
  pausedForServer = false;
  private abandonTimer: NodeJS.Timeout | null = null;
  /** The client has left (see leave). */
  private abandoned = false;
  private readonly requests: LinkRequests;
  private readonly follow: SettingsFollow;
  private readonly tap: UsageTap;
  private readonly timers: LinkTimers;

  constructor(
    private readonly host: LinkHost,
    private readonly parts: LinkParts,
  ) {
    this.tap = new UsageTap(host.usage);
    this.requests = new LinkRequests(
      host,
      parts,
      (buf) => this.sendToServer(buf),
      (server) => this.server === server && !this.abandoned,
    );
    this.follow = new SettingsFollow(
      host,
      parts.settings,
      (frame) => this.sendToClient(frame),
      (server) => this.server === server,
      () => this.settingsFollowed(),
    );
    this.timers = new LinkTimers(parts.share, this);
  }

  get server(): ServerConn | null {
    return this.#server;
  }

  /** Every link and unlink goes through here, so the tenant's server time cannot miss one. */
  set server(server: ServerConn | null) {
    if ((server === null) !== (this.#server === null)) this.tap.serverChanged(server !== null);
    this.#server = server;
  }

  /** Waiting on the server: a statement running, an unsynced batch, an open transaction, a pin or reset in flight. */
  get busy(): boolean {
    const server = this.server;
    if (server === null) return false;
    return (
      this.heldSegment !== null || server.replies.owed > 0 || server.replies.unsynced || this.txStatus !== TxStatus.Idle
    );
  }

  /** The frame the session judged while idle; its replay onto the server reuses that verdict. */
  approve(frame: Buffer, source: StatementSource | null): void {
    this.requests.approve(frame, source);
  }

  /** Links a server: `pin` when it is not the client's own parked one. Then the queued frames go out. */
  attach(server: ServerConn, pin: boolean, queued: Buffer[]): void {
    this.link(server);
    server.pin(this, pin ? this.pinPlan(server) : null);
    for (const frame of queued) {
      if (this.server !== server || this.abandoned) return;
      this.requests.frame(server, frame);
    }
    this.timers.working();
  }

  /**
   * Links a server handed over unreset: reset, pin and the queued segment go out together (ServerConn.pinAfterReset).
   * The client stays paused until the pin is confirmed: what it sends meanwhile would pile up unprocessed in the
   * framer, for as long as a DISCARD ALL can be made to wait on a lock (HAND_OVER_DEADLINE_MS).
   */
  attachHandedOver(server: ServerConn, segment: Buffer[]): void {
    this.link(server);
    server.pinAfterReset(this, PIPELINED_RESET, this.pinPlan(server));
    this.heldSegment = segment;
    for (const frame of segment) server.send(frame, this);
    this.timers.working();
  }

  private link(server: ServerConn): void {
    this.server = server;
    this.serverSentFatal = false;
    server.replies.attach(this.segments);
  }

  private pinPlan(server: ServerConn): PinPlan {
    const identity = this.host.identity;
    return planPin(server, identity.schema, identity.role, this.parts.settings.current);
  }

  /** Pass-through while linked: frames judged and accounted one by one, written in runs. */
  forward(): void {
    const server = this.server;
    if (this.follow.busy || this.heldSegment !== null || server === null) return;
    if (this.timers.holding) {
      // A cancel for a timed-out statement is in flight: what the client sends now must not be what it hits.
      this.host.pauseClient();
      return;
    }
    this.requests.forward(server);
    if (this.server === server && (server.replies.owed > 0 || server.replies.unsynced)) this.timers.working();
  }

  // ── ServerClient ────────────────────────────────────────────────────────────

  deliver(buf: Buffer, from: Pausable): void {
    // A departed client's statements may still be answered (see leave): their replies go nowhere.
    if (this.abandoned) return;
    this.host.meter.bytesOut += buf.length;
    this.tap.usage.bytesOut += buf.length;
    this.host.conn.forward(buf, from);
  }

  private sendToClient(buf: Buffer): void {
    if (this.abandoned) return;
    this.host.meter.bytesOut += buf.length;
    this.tap.usage.bytesOut += buf.length;
    this.host.conn.write(buf);
  }

  private sendToServer(buf: Buffer): void {
    this.server?.send(buf, this);
  }

  /** Pausable: the server's socket is full. */
  pause(): void {
    this.pausedForServer = true;
    this.host.pauseClient();
  }

  resume(): void {
    if (!this.pausedForServer) return;
    this.pausedForServer = false;
    if (this.server !== null && !this.follow.busy && this.heldSegment === null) this.host.resumeClient();
  }

  onServerControl(code: number, route: Route, buf: Buffer, start: number, end: number): void {
    const prepared = this.parts.prepared;
    switch (code) {
      case BackendCode.ReadyForQuery:
        this.onReady(buf, start, end);
        return;
      case BackendCode.ParameterStatus:
        this.onParameter(buf, start, end);
        return;
      case BackendCode.ErrorResponse:
        this.onError(route, buf, start, end);
        return;
      case BackendCode.CopyInResponse:
        // Syncs pipelined behind the Execute that started it will never be answered (see ReplyLedger.onCopyIn).
        prepared.segmentSent(this.server!.replies.sent);
        this.tap.copyIn();
        this.sendToClient(buf.subarray(start, end));
        return;
      default: {
        // CommandComplete, EmptyQueryResponse, PortalSuspended.
        prepared.statementCompleted();
        if (code === BackendCode.CommandComplete) this.tap.completed(buf, start, end);
        const frame = route === Route.AsDeallocate ? DEALLOCATE_COMPLETE : buf.subarray(start, end);
        const channels = this.parts.channels;
        if (channels?.awaiting === true)
          channels.completed(
            code === BackendCode.CommandComplete ? readCString(frame, 5, frame.length)[0] : null,
            this.server!.replies.done,
          );
        if (this.parts.recorder !== null)
          this.parts.recorder.done(
            this.server!.replies.done,
            code === BackendCode.CommandComplete ? readCString(frame, 5, frame.length)[0] : null,
            null,
          );
        this.sendToClient(frame);
      }
    }
  }

  private onError(route: Route, buf: Buffer, start: number, end: number): void {
    const replies = this.server!.replies;
    const fields = replies.lastError!;
    if (this.parts.channels?.awaiting === true) this.parts.channels.failed(replies.done);
    if (route === Route.AsRefusal) {
      // The rest of the segment is skipped by the server: none of it ran.
      this.parts.tracker?.dropSegment(replies.done);
      this.sendToClient(replies.refusalOfHead()!.encode());
      return;
    }
    // A stale plan of a shared statement, prepared again with the client's segment replayed: never the client's.
    if (this.parts.prepared.onServerError(fields)) return;
    replies.errorPassed();
    this.tap.failed();
    this.parts.recorder?.done(replies.done, null, fields.code);
    if (fields.severity === 'FATAL' || fields.severity === 'PANIC') this.serverSentFatal = true;
    // The proxy's cancel of a statement past the tenant's timeout: PostgreSQL's words for a statement_timeout.
    const timedOut = this.timers.cancelledByTimeout && fields.code === SqlState.QUERY_CANCELED;
    this.sendToClient(timedOut ? LimitErrors.statementTimeout().encode() : buf.subarray(start, end));
  }

  private onReady(buf: Buffer, start: number, end: number): void {
    const server = this.server!;
    const done = server.replies.done;
    this.segments = done;
    this.txStatus = buf[start + 5]!;
    this.tap.ready(this.txStatus);
    this.parts.prepared.segmentDone(done - 1, this.txStatus);
    this.parts.tracker?.segmentsFinished(done, this.txStatus !== TxStatus.Idle);
    this.timers.ready(server.replies.owed, this.txStatus !== TxStatus.Idle);
    if (this.parts.channels?.awaiting === true) this.parts.channels.ready(done, this.txStatus);
    if (this.abandoned) {
      // The client left; its last statements have now run.
      if (server.replies.owed === 0) {
        if (this.abandonTimer !== null) clearTimeout(this.abandonTimer);
        this.abandon(server);
      }
      return;
    }
    this.sendToClient(buf.subarray(start, end));
    // Notifications that came during the transaction go out after its end, as PostgreSQL sends them.
    this.parts.channels?.flush();
    this.releaseIfDone();
  }

  private onParameter(buf: Buffer, start: number, end: number): void {
    const [name, value] = readParameterStatus(buf, start, end);
    const server = this.server!;
    // PostgreSQL 18 reports search_path: any value but the pinned schema means the pin no longer holds.
    if (name === 'search_path' && server.pinnedSchema !== null && !isSchemaPath(value, server.pinnedSchema)) {
      this.host.log.warn({ tenant: this.host.identity.tenantId }, 'search_path changed away from the pinned schema');
      this.server = null;
      this.host.fail(
        new ProxyError(SqlState.INSUFFICIENT_PRIVILEGE, 'search_path was changed away from the tenant schema', 'FATAL'),
      );
      server.close('search_path changed away from the pinned schema');
      return;
    }
    this.follow.reported(name, value, buf.subarray(start, end));
  }

  onServerLost(err: ProxyError): void {
    this.parts.recorder?.unfinished(SqlState.CONNECTION_FAILURE);
    this.parts.channels?.serverLost();
    this.server = null;
    this.heldSegment = null;
    if (this.abandoned) return;
    if (this.serverSentFatal) this.host.close('server sent FATAL');
    else this.host.fail(err);
  }

  onPinConfirmed(): void {
    const segment = this.heldSegment;
    const server = this.server;
    if (segment === null || server === null) return;
    this.heldSegment = null;
    this.host.guarded(() => {
      for (const frame of segment) {
        if (this.server !== server || this.abandoned) return;
        // takesUnresetServer admitted only frames that go out as they are.
        if (this.requests.account(server, frame[0]!, frame, 0, frame.length) !== null)
          throw new Error('a pipelined frame needed rewriting');
      }
      if (this.server === server && !this.abandoned && !this.pausedForServer) this.host.resumeClient();
    });
  }

  onHandOverFailed(): void {
    const segment = this.heldSegment;
    this.heldSegment = null;
    this.server = null;
    if (segment === null || this.abandoned) return;
    // PostgreSQL skipped the segment: it never ran, so it waits for another server as if just sent.
    this.host.log.warn('a server could not be reset in front of this client; its statement goes to another server');
    this.host.handOverFailed(segment);
  }

  /** A cancel from the client's key: the server's statement, if one runs. */
  cancelCurrent(): void {
    const server = this.server;
    // Nothing running means nothing to cancel; PostgreSQL ignores a cancel for an idle backend too.
    if (server === null || server.replies.owed === 0 || this.abandoned) return;
    server.cancel();
  }

  // ── Limits: the tenant's timeouts ───────────────────────────────────────────

  /**
   * Cancels the statement past the tenant's statement timeout. A cancel request races with the statement finishing,
   * so until PostgreSQL has received it nothing more of the client's reaches this server: it lands on this
   * statement or on an idle backend (ignored), never on the next one. With more segments already pipelined behind
   * it, it could hit one of those instead: the server is closed and the client ends with the timeout (FATAL).
   */
  onStatementTimeout(): void {
    const server = this.server;
    // A held segment (behind a pipelined reset and pin) counts too: PostgreSQL sends the pin's replies only with the
    // statement's, so waiting for them would let the statement run unbounded. Should the cancel hit the reset
    // instead, the statement never ran and goes to another server (onHandOverFailed).
    if (server === null || this.abandoned) return;
    this.host.log.info({ tenant: this.host.identity.tenantId }, 'statement timeout: cancelling the statement');
    if (server.replies.owed > 1) {
      this.host.fail(LimitErrors.statementTimeoutPipelined());
      return;
    }
    this.timers.cancelledByTimeout = true;
    this.timers.holding = true;
    server.cancel();
    void server.cancelLanded().then(() =>
      this.host.guarded(() => {
        this.timers.holding = false;
        if (this.abandoned) return;
        if (this.server === null || (!this.pausedForServer && !this.follow.busy && this.heldSegment === null))
          this.host.resumeClient();
      }),
    );
  }

  onIdleInTransactionTimeout(): void {
    const server = this.server;
    if (server === null || this.abandoned || this.txStatus === TxStatus.Idle || server.replies.owed > 0) return;
    // Its server is rolled back and reset as for any client that leaves mid-transaction (leave → abandon).
    this.host.fail(LimitErrors.idleInTransactionTimeout());
  }

  // ── Release and abandon ─────────────────────────────────────────────────────

  /**
   * Between transactions the server goes back to the pool; first, when the transaction changed settings, they are
   * read back from the server to follow the client to whatever server it gets next (SettingsFollow).
   */
  private releaseIfDone(): void {
    const server = this.server;
    if (server === null || this.busy || this.follow.busy) return;
    if (this.host.drainError !== null) {
      // Draining: the transaction is over, the client goes now rather than start another.
      this.host.fail(this.host.drainError);
      return;
    }
    if (this.follow.begin(server)) return;
    if (this.host.sessionMode) return;
    this.release();
  }

  private settingsFollowed(): void {
    if (this.server !== null) this.releaseIfDone();
    // Statements held meanwhile go on, on this server or through checkout.
    if (!this.pausedForServer) this.host.resumeClient();
  }

  private release(): void {
    const server = this.server!;
    this.server = null;
    server.forget(this);
    this.pausedForServer = false;
    if (server.cancelling) {
      // A timeout's cancel may still land: reset (which waits for it) rather than park for the next statement.
      this.host.unlinked(null);
      this.parts.pool.resetServer(server, false);
      return;
    }
    this.host.unlinked(server);
    this.parts.pool.park(server, this.host);
  }

  /**
   * The client left while linked. After a Terminate, statements it already sent still run, as on a direct
   * connection (a COMMIT pipelined with Terminate commits); their results are dropped and the server is then rolled
   * back and reset. A client that vanished mid-statement, a server in COPY FROM STDIN or holding an unsynced
   * extended-protocol batch, or statements outlasting ABANDON_DRAIN_MS: cancelled and closed.
   */
  leave(terminated: boolean): void {
    this.abandoned = true;
    this.timers.stop();
    this.parts.leave();
    const server = this.server;
    if (server === null) return;
    if (this.heldSegment !== null) {
      // Its reset and first statement are still in flight, unaccounted: nothing to wait for reliably.
      this.heldSegment = null;
      this.discard(server, 'client left while its server was being reset');
      return;
    }
    const replies = server.replies;
    if (replies.owed === 0 && !replies.unsynced) {
      this.abandon(server);
      return;
    }
    if (replies.unsynced || replies.copyIn || !terminated) {
      this.discard(server, 'client left mid-statement');
      return;
    }
    // Kept linked: onReady finishes the abandon when the last ReadyForQuery arrives.
    this.abandonTimer = setTimeout(() => {
      if (this.server === server) this.discard(server, 'abandoned statements ran too long');
    }, ABANDON_DRAIN_MS);
    this.abandonTimer.unref();
  }

  /** Whether the client was in a transaction or had statements outstanding (the audit's `interrupted`). */
  get interrupted(): boolean {
    return this.txStatus !== TxStatus.Idle || (this.server?.replies.owed ?? 0) > 0;
  }

  private abandon(server: ServerConn): void {
    this.server = null;
    this.parts.pool.resetServer(server, this.txStatus !== TxStatus.Idle);
  }

  private discard(server: ServerConn, reason: string): void {
    this.parts.recorder?.unfinished(SqlState.QUERY_CANCELED);
    this.server = null;
    // PostgreSQL notices a vanished client only when it next writes: cancel first so the statement stops now.
    server.cancel();
    server.close(reason);
  }
}
