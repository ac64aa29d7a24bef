// One client connection: startup → auth → idle ↔ waiting ↔ active (pinned to a server) → closed.
import { randomUUID } from 'node:crypto';
import net from 'node:net';
import tls from 'node:tls';
import type { Logger } from 'pino';
import { AuthFailure, type TenantTokenVerifier } from '../auth/tenant-token.js';
import type { TenantIdentity } from '../auth/identity.js';
import type { Pool } from '../backend/pool.js';
import { PIPELINED_RESET, planPin, planRestore } from '../backend/pin.js';
import { ServerState, type ServerClient, type ServerConn } from '../backend/server-conn.js';
import { sendCancel } from '../backend/connect.js';
import type { Config } from '../config/schema.js';
import { BackendCode, FrontendCode, RequestCode, SqlState, TxStatus } from '../protocol/codes.js';
import { ProxyError } from '../protocol/errors.js';
import { FrameLengthError, Framer } from '../protocol/framer.js';
import {
  encodeBackendKeyData,
  encodeCommandComplete,
  encodeParameterStatus,
  encodeQuery,
  encodeUnnamedParse,
  queryText,
  readCString,
  readErrorFields,
  readParameterStatus,
  readStartupParams,
} from '../protocol/messages.js';
import {
  AUTHENTICATION_CLEARTEXT,
  AUTHENTICATION_OK,
  EMPTY_QUERY_IDLE,
  GSSENC_REFUSE,
  PARSE_COMPLETE,
  READY_FOR_QUERY_IDLE,
  SSL_ACCEPT,
  SSL_REFUSE,
} from '../protocol/static.js';
import type { AuditLog, ConnectionAudit } from '../audit/audit-log.js';
import { parameterTypeRefusal } from '../guard/parameter-types.js';
import { catalogFrame } from '../guard/rewrite-frame.js';
import { isRefusal, type Refusal, type SqlGuard } from '../guard/sql-guard.js';
import { UNAUTHENTICATED, type ProxyMetrics, type TenantMeter } from '../metrics/metrics.js';
import type { TenantRegistry } from '../tenants/registry.js';
import type { CancelRegistry } from './cancel.js';
import { isPipelinableSegment } from './pipelinable.js';
import { PreparedStatements } from './prepared.js';
import { SessionSettings } from './session-settings.js';
import { StatementRecorder } from './statement-recorder.js';
import { StatementTracker, type StatementSource } from './statement-tracker.js';
import {
  interpretStartup,
  judgeStartupSettings,
  isSchemaPath,
  plaintextAllowed,
  refuseUnlessGone,
  reportedParameters,
  type ClientStartup,
} from './startup.js';

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

const MAX_STARTUP_BYTES = 10_000;
/** The password message carries the token; JWTs with many claims outgrow the startup cap. */
const MAX_PASSWORD_BYTES = 64 * 1024;
/** Text that PostgreSQL's grammar rejects at Parse time; stands in for a refused statement on a pinned server. */
const REFUSAL_SENTINEL = 'pg_tenant_proxy_refused_statement';
const REFUSAL_PARSE = encodeUnnamedParse(REFUSAL_SENTINEL);
const REFUSAL_QUERY = encodeQuery(REFUSAL_SENTINEL);
const DEALLOCATE_COMPLETE = encodeCommandComplete('DEALLOCATE');
/** How long statements a departed client left running may finish before their server is cancelled and closed. */
const ABANDON_DRAIN_MS = 10_000;

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
  onClosed(session: ClientSession): void;
}

/** A refusal standing in the server's stream: its syntax error is replaced by `error` when it comes back. */
interface PendingRefusal {
  error: ProxyError;
  /** Index of the Sync/Query segment it was sent in; once that segment's ReadyForQuery passed, it was skipped. */
  segment: number;
}

export class ClientSession implements ServerClient {
  state: SessionState = SessionState.Startup;
  clientSocket: net.Socket;
  identity: TenantIdentity | null = null;
  /** Names this connection in the audit trail and the admin view. */
  readonly id = randomUUID();
  readonly connectedAt = Date.now();
  /** Bytes and statements are counted under this tenant label (UNAUTHENTICATED until login). */
  meter: TenantMeter;

  private readonly framer = new Framer(MAX_STARTUP_BYTES, false);
  private readonly log: Logger;
  private startup: ClientStartup | null = null;
  /** The client's session settings (from login on). */
  private settings: SessionSettings | null = null;
  private server: ServerConn | null = null;
  /** The server this client's last transaction ran on, parked with its session for the next one. */
  private parkedServer: ServerConn | null = null;
  /** The client's named prepared statements, mapped onto whichever server it is pinned to. */
  private prepared: PreparedStatements | null = null;
  /** Frames held while authentication or checkout is in progress (the socket is paused meanwhile). */
  private queued: Buffer[] = [];
  /** The queued frame the guard approved while idle, with what it is (see judge). */
  private approvedFrame: { frame: Buffer; source: StatementSource | null } | null = null;
  private readonly audit: ConnectionAudit;
  /** Statements sent and not yet completed, for their audit events and metrics; null when neither wants them. */
  private tracker: StatementTracker | null = null;
  /** With the tracker: each completed statement's audit event and metrics. */
  private recorder: StatementRecorder | null = null;
  /** pool.mode session (or a tenant in pool.sessionTenants): the first server stays pinned until the client leaves. */
  private sessionMode = false;
  /** Set by drain(): the FATAL the session ends with once its transaction is over (shutdown, tenant suspended). */
  private drainError: ProxyError | null = null;
  private snapshotting = false;
  /**
   * The first statement sent behind a pipelined reset (see onHandedOver): accounted only once the reset is confirmed,
   * re-queued if it failed. Frames the client sends meanwhile wait in the framer.
   */
  private heldSegment: Buffer[] | null = null;
  private key: { pid: number; secret: number } | null = null;
  private handshakeTimer: NodeJS.Timeout | null;
  private isTls = false;
  private corked = false;
  private pausedForServer = false;

  /** ReadyForQuery replies the pinned server still owes (one per forwarded Query, Sync and FunctionCall). */
  private pendingReady = 0;
  /** Extended-protocol messages forwarded since the last Sync: the server must stay pinned until the Sync. */
  private unsynced = false;
  /** After a local refusal: drop messages until Sync, as PostgreSQL does after an error. */
  private skipping = false;
  private txStatus: number = TxStatus.Idle;
  private refusals: PendingRefusal[] = [];
  private segmentsSent = 0;
  private segmentsDone = 0;
  /** The server forwarded a FATAL error: its disconnect needs no second error for the client. */
  private serverSentFatal = false;
  /** The server is in COPY FROM STDIN (CopyInResponse seen, client's CopyDone/CopyFail not yet). */
  private copyIn = false;
  /** Syncs forwarded since the last Execute/Query: PostgreSQL ignores them if that Execute starts COPY FROM STDIN. */
  private syncsSinceExecute = 0;
  private abandonTimer: NodeJS.Timeout | null = null;
  private terminated = false;

  constructor(
    socket: net.Socket,
    private readonly deps: SessionDeps,
  ) {
    this.clientSocket = socket;
    this.log = deps.log.child({ client: `${socket.remoteAddress}:${socket.remotePort}` });
    this.meter = deps.metrics.tenant(UNAUTHENTICATED);
    this.audit = deps.audit.connection({
      session: this.id,
      client_addr: socket.remoteAddress,
      client_port: socket.remotePort,
    });
    socket.setNoDelay(true);
    this.attach(socket);
    this.handshakeTimer = setTimeout(
      () => this.fail(ProxyError.handshakeTimeout(deps.config.listen.handshakeTimeoutMs)),
      deps.config.listen.handshakeTimeoutMs,
    );
    this.handshakeTimer.unref();
  }

  /**
   * Graceful end (shutdown, or its tenant suspended): the session ends with `error` now if it is between
   * transactions, else as soon as its transaction ends.
   */
  drain(error: ProxyError = ProxyError.shuttingDown()): void {
    this.drainError ??= error;
    if (!this.busy) this.fail(this.drainError);
  }

  /** Startup settings the snapshot found RESET are set back on the server, and the client told what it reports. */
  private restoreStartupSettings(server: ServerConn, restore: Map<string, string>): void {
    if (restore.size === 0 || this.server !== server) {
      this.snapshotDone(server);
      return;
    }
    const plan = planRestore(restore);
    server.runQuery(
      plan.frame,
      () => undefined,
      (error) =>
        this.guarded(() => {
          if (error === null) for (const name of plan.reported) this.tellParameter(name, restore.get(name)!);
          else this.log.warn({ err: error }, 'could not restore startup settings after a RESET');
          this.snapshotDone(server);
        }),
    );
  }

  private snapshotDone(server: ServerConn): void {
    this.snapshotting = false;
    if (this.state === SessionState.Active && this.server === server) this.releaseIfDone();
    // Statements held meanwhile go on, on this server or through checkout.
    if (!this.pausedForServer) this.resumeReading();
  }

  /** Waiting for a server or inside a transaction/statement: what a graceful shutdown lets finish. */
  get busy(): boolean {
    if (this.state === SessionState.Waiting) return true;
    return (
      this.state === SessionState.Active &&
      (this.heldSegment !== null || this.pendingReady > 0 || this.unsynced || this.txStatus !== TxStatus.Idle)
    );
  }

  get applicationName(): string | null {
    return this.settings?.current.get('application_name') || null;
  }

  // ── ServerClient ────────────────────────────────────────────────────────────

  sendToClient(buf: Buffer): boolean {
    if (this.state === SessionState.Closed) return true;
    this.meter.bytesOut += buf.length;
    if (!this.corked) {
      this.corked = true;
      this.clientSocket.cork();
      process.nextTick(uncorkClient, this);
    }
    return this.clientSocket.write(buf);
  }

  onServerControl(code: number, buf: Buffer, start: number, end: number): void {
    switch (code) {
      case BackendCode.ReadyForQuery:
        this.onServerReady(buf, start, end);
        return;
      case BackendCode.ParameterStatus:
        this.onServerParameter(buf, start, end);
        return;
      case BackendCode.ErrorResponse:
        this.onServerError(buf, start, end);
        return;
      case BackendCode.CopyInResponse:
        this.onCopyIn(buf, start, end);
        return;
      case BackendCode.CommandComplete:
      case BackendCode.EmptyQueryResponse:
      case BackendCode.PortalSuspended: {
        // The no-op standing in for a DEALLOCATE the proxy answered itself (PreparedStatements.deallocate).
        const frame = this.prepared!.onCommandCompletion(this.segmentsDone)
          ? DEALLOCATE_COMPLETE
          : buf.subarray(start, end);
        // The tag is decoded only when something records the statement.
        if (this.recorder !== null)
          this.recorder.done(
            this.segmentsDone,
            code === BackendCode.CommandComplete ? readCString(frame, 5, frame.length)[0] : null,
            null,
          );
        this.sendToClient(frame);
        return;
      }
    }
  }

  /** COPY FROM STDIN began: Syncs pipelined behind the Execute that started it will never be answered. */
  private onCopyIn(buf: Buffer, start: number, end: number): void {
    this.copyIn = true;
    if (this.syncsSinceExecute > 0) {
      this.pendingReady -= this.syncsSinceExecute;
      this.segmentsSent -= this.syncsSinceExecute;
      this.prepared!.segmentSent(this.segmentsSent);
      this.syncsSinceExecute = 0;
    }
    this.sendToClient(buf.subarray(start, end));
  }

  onServerLost(err: ProxyError): void {
    this.recorder?.unfinished(SqlState.CONNECTION_FAILURE);
    this.server = null;
    this.heldSegment = null;
    if (this.state === SessionState.Closed) return;
    if (this.serverSentFatal) this.close('server sent FATAL');
    else this.fail(err);
  }

  onCompletion(isParse: boolean): number {
    return this.prepared!.onCompletion(isParse, this.segmentsDone);
  }

  resumeFromServer(): void {
    if (this.pausedForServer) {
      this.pausedForServer = false;
      if (this.state === SessionState.Active) this.clientSocket.resume();
    }
  }

  cancelCurrent(): void {
    const server = this.server;
    // Nothing running means nothing to cancel; PostgreSQL ignores a cancel for an idle backend too.
    if (server === null || this.state !== SessionState.Active || this.pendingReady === 0) return;
    this.cancelServer(server);
  }

  /** Sends a cancel; the server is held back from other clients until PostgreSQL has received it. */
  private cancelServer(server: ServerConn): void {
    server.cancelsInFlight++;
    sendCancel(this.deps.pool.upstream, server.pid, server.secret)
      .catch((err: Error) => this.log.warn({ err: err.message }, 'cancel request to upstream failed'))
      .finally(() => server.cancelSettled());
  }

  /** @internal */
  uncork(): void {
    this.corked = false;
    this.clientSocket.uncork();
  }

  // ── Incoming client bytes ───────────────────────────────────────────────────

  private attach(socket: net.Socket): void {
    socket.on('data', this.onData);
    socket.on('error', (err) => this.close(`client socket error: ${err.message}`));
    socket.on('close', this.onSocketClosed);
  }

  /** A client that closed partway through its startup packet is counted, as PostgreSQL logs it, and left unanswered. */
  private readonly onSocketClosed = (): void => {
    const abandoned = this.state === SessionState.Startup && this.framer.buffered > 0;
    if (abandoned) this.deps.metrics.startupAbandoned();
    this.close(abandoned ? 'client left during startup' : 'client disconnected');
  };

  private readonly onData = (chunk: Buffer): void => {
    if (this.state === SessionState.Closed) return;
    this.meter.bytesIn += chunk.length;
    const framer = this.framer;
    framer.push(chunk);
    try {
      if (this.state === SessionState.Active) {
        // While the proxy reads back the client's settings, its next statement waits in the framer (see releaseIfDone).
        if (!this.snapshotting && this.heldSegment === null) this.forwardActive();
        return;
      }
      while ((this.state as SessionState) !== SessionState.Closed && framer.next()) {
        this.dispatch(framer.buffer, framer.start, framer.end);
        // A checkout served from the idle list pins at once; from then on frames stream straight through.
        if ((this.state as SessionState) === SessionState.Active) {
          this.forwardActive();
          return;
        }
      }
    } catch (err) {
      if (err instanceof FrameLengthError && this.state === SessionState.Startup)
        refuseUnlessGone(this.clientSocket, this.onData, () => this.fail(err));
      else this.failUnexpected(err);
    }
  };

  /** Pass-through while pinned: counts what the server owes and forwards runs of frames in one write. */
  private forwardActive(): void {
    const framer = this.framer;
    let runBuf: Buffer | null = null;
    let runStart = 0;
    let runEnd = 0;
    while (framer.next()) {
      const { buffer, start, end, code } = framer;
      if (code === FrontendCode.Terminate && runBuf !== null) {
        // What the client sent before Terminate still reaches the server (a pipelined COMMIT must commit).
        this.sendToServer(runBuf.subarray(runStart, runEnd));
        runBuf = null;
      }
      const replacement = this.accountActive(code, buffer, start, end);
      if (this.state !== SessionState.Active) {
        if (runBuf !== null) this.sendToServer(runBuf.subarray(runStart, runEnd));
        // The session closed or the frame ended the pin (Terminate): nothing further goes to this server.
        if (this.state !== SessionState.Closed) this.drainAfterActive();
        return;
      }
      if (replacement !== null) {
        if (runBuf !== null) this.sendToServer(runBuf.subarray(runStart, runEnd));
        runBuf = null;
        this.sendToServer(replacement);
      } else if (runBuf === buffer && runEnd === start) {
        runEnd = end;
      } else {
        if (runBuf !== null) this.sendToServer(runBuf.subarray(runStart, runEnd));
        runBuf = buffer;
        runStart = start;
        runEnd = end;
      }
    }
    if (runBuf !== null) this.sendToServer(runBuf.subarray(runStart, runEnd));
  }

  /** Frames left in the framer after the pin ended within one chunk go through the idle dispatcher. */
  private drainAfterActive(): void {
    while (this.state !== SessionState.Closed && this.state !== SessionState.Active && this.framer.next()) {
      this.dispatch(this.framer.buffer, this.framer.start, this.framer.end);
    }
    if (this.state === SessionState.Active) this.forwardActive();
  }

  /**
   * Updates pin bookkeeping for one client frame headed to the server. Returns a replacement frame to send instead,
   * or null to forward the frame as is.
   */
  private accountActive(code: number, buf: Buffer, start: number, end: number): Buffer | null {
    const replacement = this.accountFrame(code, buf, start, end);
    // A segment the proxy may have to replay keeps what went out (PreparedStatements.recording).
    if (this.prepared!.recording && this.state === SessionState.Active)
      this.prepared!.sent(replacement, buf, start, end);
    return replacement;
  }

  private accountFrame(code: number, buf: Buffer, start: number, end: number): Buffer | null {
    switch (code) {
      case FrontendCode.Query: {
        this.refuseInsideBatch(code);
        const verdict = this.judge(code, buf, start, end);
        let replacement: Buffer | null;
        if (verdict instanceof ProxyError) replacement = this.refuseOnServer(verdict, REFUSAL_QUERY);
        else {
          this.tracker?.query(verdict ?? NO_SOURCE, this.segmentsSent);
          replacement = this.substitute(verdict, 'query');
          if (replacement === null) this.trackSessionChanges(verdict);
          replacement ??= catalogFrame(buf, start, end, verdict); // catalog references → filtered views (issue 17)
        }
        this.syncsSinceExecute = 0;
        this.endSegment();
        return replacement;
      }
      case FrontendCode.FunctionCall: {
        this.refuseInsideBatch(code);
        // A call by function OID skips the parser entirely: refused, answered like a failed Query.
        const replacement = this.refuseOnServer(ProxyError.functionCallRefused(), REFUSAL_QUERY);
        this.endSegment();
        return replacement;
      }
      case FrontendCode.Sync:
        this.unsynced = false;
        // PostgreSQL ignores Sync during COPY FROM STDIN: no ReadyForQuery will answer it.
        if (this.copyIn) return null;
        this.syncsSinceExecute++;
        this.endSegment();
        return null;
      case FrontendCode.Parse: {
        this.unsynced = true;
        const verdict = this.judge(code, buf, start, end);
        if (verdict instanceof ProxyError) return this.refuseOnServer(verdict, REFUSAL_PARSE);
        const substitute = buf[start + 5] === 0 ? this.substitute(verdict, 'parse') : null;
        const ddl = verdict?.analysis?.changesSchema === true;
        const rewritten = catalogFrame(buf, start, end, verdict); // catalog references → filtered views (issue 17)
        const frame =
          substitute ??
          (rewritten === null
            ? this.prepared!.parse(buf, start, end, this.server!, ddl)
            : (this.prepared!.parse(rewritten, 0, rewritten.length, this.server!, ddl) ?? rewritten));
        if (frame instanceof ProxyError) return this.refuseOnServer(frame, REFUSAL_PARSE);
        // Only a Parse the proxy lets through changes the session or names a statement the tracker must keep.
        if (substitute === null) this.trackSessionChanges(verdict);
        this.tracker?.parsed(readCString(buf, start + 5, end)[0], verdict ?? NO_SOURCE);
        return frame;
      }
      case FrontendCode.Bind:
        this.unsynced = true;
        if (this.tracker !== null) {
          const [portal, afterPortal] = readCString(buf, start + 5, end);
          this.tracker.bound(portal, readCString(buf, afterPortal, end)[0]);
        }
        return this.viaPrepared(this.prepared!.bind(buf, start, end, this.server!));
      case FrontendCode.Describe:
        this.unsynced = true;
        return this.viaPrepared(this.prepared!.describe(buf, start, end, this.server!));
      case FrontendCode.Close:
        this.unsynced = true;
        this.tracker?.closed(buf[start + 5] === 0x53 ? 'S' : 'P', readCString(buf, start + 6, end)[0]);
        return this.prepared!.close(buf, start, end);
      case FrontendCode.Execute:
        this.syncsSinceExecute = 0;
        this.unsynced = true;
        this.tracker?.executed(readCString(buf, start + 5, end)[0], this.segmentsSent);
        this.prepared!.execute(buf, start);
        return null;
      case FrontendCode.Flush:
        this.unsynced = true;
        return null;
      case FrontendCode.CopyData:
        return null;
      case FrontendCode.CopyDone:
      case FrontendCode.CopyFail:
        this.copyIn = false;
        return null;
      case FrontendCode.Terminate:
        this.close('client terminated', true);
        return null;
      default:
        throw ProxyError.protocolViolation(`unexpected message type ${code} from client`);
    }
  }

  /**
   * PostgreSQL skips a Query or FunctionCall that follows an error inside an extended-protocol batch, so whether it
   * will be answered cannot be known when it is sent; no driver does this, so it is refused rather than guessed.
   */
  private refuseInsideBatch(code: number): void {
    if (!this.unsynced) return;
    const what = code === FrontendCode.Query ? 'Query' : 'FunctionCall';
    throw ProxyError.protocolViolation(`${what} message inside an unfinished extended-query batch: send Sync first`);
  }

  /** A Sync, Query or FunctionCall was forwarded: the server owes one more ReadyForQuery. */
  private endSegment(): void {
    this.pendingReady++;
    this.segmentsSent++;
    this.prepared!.segmentSent(this.segmentsSent);
  }

  private viaPrepared(result: Buffer | null | ProxyError): Buffer | null {
    return result instanceof ProxyError ? this.refuseOnServer(result, REFUSAL_PARSE) : result;
  }

  /**
   * Refuses a statement on a pinned server by sending one that fails to parse, so the server discards the rest of
   * the batch and aborts an open transaction exactly as for a real error; its error is swapped for ours on return.
   */
  private refuseOnServer(error: ProxyError, sentinel: Buffer): Buffer {
    this.refusals.push({ error, segment: this.segmentsSent });
    return sentinel;
  }

  /**
   * The guard's verdict on a Query or Parse: a refusal, or what the statement is (null when neither the guard nor the
   * audit needs to know). The frame that triggered a checkout was judged while idle, so its replay onto the pinned
   * server reuses that verdict instead of judging twice.
   */
  private judge(code: number, buf: Buffer, start: number, end: number): ProxyError | StatementSource | null {
    const approved = this.approvedFrame;
    if (approved !== null) {
      this.approvedFrame = null;
      if (approved.frame === buf && start === 0) return approved.source;
    }
    return this.verdict(code, buf, start, end);
  }

  private verdict(code: number, buf: Buffer, start: number, end: number): ProxyError | StatementSource | null {
    const blocked = this.deps.audit.blockingError();
    if (blocked !== null) {
      this.meter.refusal('audit_unavailable');
      return blocked;
    }
    const identity = this.identity!;
    const guarded = !identity.guardBypass && this.deps.config.policy.guard;
    if (!guarded && this.tracker === null) return null;
    const text = queryText(buf, start, end);
    const keepText = this.audit.textMode === 'full' ? text : null;
    if (!guarded) return { analysis: this.deps.guard.describe(text), text: keepText };
    const verdict = this.deps.guard.check(text, identity.schema);
    if (isRefusal(verdict)) return this.refused(verdict, keepText);
    // A Parse can declare its parameters' types in the message: a reg* type is judged as a cast to it in the text.
    const typed = code === FrontendCode.Parse ? parameterTypeRefusal(buf, start, end, verdict) : null;
    if (typed !== null) return this.refused(typed, keepText);
    const overBudget = this.settings!.overBudget(verdict);
    if (overBudget === null) return { analysis: verdict, text: keepText };
    return this.refused({ rule: 'session_state', error: overBudget, analysis: verdict }, keepText);
  }

  /** A refusal is counted and audited; its error goes to the client. */
  private refused(refusal: Refusal, keepText: string | null): ProxyError {
    this.meter.refusal(refusal.rule);
    this.audit.refusal({
      rule: refusal.rule,
      sqlstate: refusal.error.sqlstate,
      message: refusal.error.message,
      fingerprint: refusal.analysis?.fingerprint ?? null,
      statement: this.audit.statementText(refusal.analysis ?? null, keepText),
    });
    this.log.debug(
      { tenant: this.identity!.tenantId, rule: refusal.rule, sqlstate: refusal.error.sqlstate },
      'statement refused',
    );
    return refusal.error;
  }

  /**
   * A Query or unnamed Parse on its way to the server: the no-op to send instead when it is a DEALLOCATE the proxy
   * answers itself (PreparedStatements.deallocate), else null.
   */
  private substitute(source: StatementSource | null, via: 'query' | 'parse'): Buffer | null {
    const deallocate = source?.analysis?.deallocate;
    return deallocate == null ? null : this.prepared!.deallocate(deallocate.name, via);
  }

  /** What a statement bound for the server changes of the session: settings to follow it, the server's statements. */
  private trackSessionChanges(source: StatementSource | null): void {
    if (source?.analysis != null) {
      this.settings!.noteStatement(source.analysis);
      if (source.analysis.changesSchema) this.prepared!.schemaChanged();
    }
    if (source === null || source.analysis?.touchesPrepared !== true || this.server === null) return;
    // SQL-level PREPARE/DEALLOCATE changes what the server holds: stop trusting the proxy's cache of it.
    this.server.sqlPrepared = true;
    this.server.statements.clear();
  }

  private dispatch(buf: Buffer, start: number, end: number): void {
    switch (this.state) {
      case SessionState.Startup:
        this.onStartupFrame(buf, start, end);
        return;
      case SessionState.Password:
        this.onPasswordFrame(buf, start, end);
        return;
      case SessionState.Authenticating:
      case SessionState.Waiting:
        this.queued.push(buf.subarray(start, end));
        return;
      case SessionState.Idle:
        this.onIdleFrame(buf, start, end);
        return;
      case SessionState.Active:
      case SessionState.Closed:
        throw new Error(`dispatch in state ${this.state}`);
      default: {
        const never: never = this.state;
        throw new Error(`unknown state ${String(never)}`);
      }
    }
  }

  // ── Startup and authentication ──────────────────────────────────────────────

  private onStartupFrame(buf: Buffer, start: number, end: number): void {
    const length = end - start;
    const request = buf.readUInt32BE(start + 4);
    switch (request) {
      case RequestCode.SSLRequest:
        if (length !== 8 || this.isTls) throw ProxyError.protocolViolation('invalid SSLRequest');
        this.onSslRequest();
        return;
      case RequestCode.GSSENCRequest:
        if (length !== 8) throw ProxyError.protocolViolation('invalid GSSENCRequest');
        this.clientSocket.write(GSSENC_REFUSE);
        return;
      case RequestCode.CancelRequest:
        if (length !== 16) throw ProxyError.protocolViolation('invalid CancelRequest');
        this.deps.cancels.cancel(buf.readInt32BE(start + 8), buf.readInt32BE(start + 12));
        this.close('cancel request');
        return;
      case RequestCode.ProtocolV3:
        this.onStartupMessage(buf, start, end);
        return;
      default:
        throw ProxyError.unsupportedProtocol(request);
    }
  }

  private onSslRequest(): void {
    const context = this.deps.secureContext();
    if (context === null || this.deps.config.tls.mode === 'disable') {
      this.clientSocket.write(SSL_REFUSE);
      return;
    }
    // Bytes pipelined behind SSLRequest would be read as if they came over TLS (CVE-2021-23214): refuse them.
    if (this.framer.buffered !== 0)
      throw ProxyError.protocolViolation('data received after SSLRequest before TLS handshake');
    const raw = this.clientSocket;
    raw.removeAllListeners('data');
    raw.write(SSL_ACCEPT);
    const secure = new tls.TLSSocket(raw, { isServer: true, secureContext: context });
    this.isTls = true;
    this.clientSocket = secure;
    raw.on('error', () => undefined);
    this.attach(secure);
  }

  private onStartupMessage(buf: Buffer, start: number, end: number): void {
    const config = this.deps.config;
    if (!this.isTls && !plaintextAllowed(config.tls.mode, this.clientSocket.remoteAddress))
      throw ProxyError.tlsRequired();
    const startup = interpretStartup(readStartupParams(buf, start, end), config.listen.ignoreStartupParameters);
    if (startup.database !== this.deps.pool.upstream.database) throw ProxyError.unknownDatabase(startup.database);
    this.startup = startup;
    this.framer.setTyped(true, MAX_PASSWORD_BYTES);
    if (startup.token !== undefined) {
      this.authenticate(startup.token);
    } else {
      this.state = SessionState.Password;
      this.clientSocket.write(AUTHENTICATION_CLEARTEXT);
    }
  }

  private onPasswordFrame(buf: Buffer, start: number, end: number): void {
    if (buf[start] !== FrontendCode.PasswordMessage) {
      throw ProxyError.protocolViolation(`expected password message, got message type ${buf[start]}`);
    }
    const [token, after] = readCString(buf, start + 5, end);
    if (after !== end) throw ProxyError.protocolViolation('malformed password message');
    this.authenticate(token);
  }

  private authenticate(token: string): void {
    this.state = SessionState.Authenticating;
    this.clientSocket.pause();
    this.completeLogin(token).catch((err: unknown): void => {
      if (err instanceof AuthFailure) {
        this.log.info({ reason: err.reason }, 'authentication failed');
        this.deps.metrics.authOutcome('failed', err.reason);
        this.fail(ProxyError.authFailed(err.sqlstate, err.message), err.reason);
      } else if (err instanceof ProxyError) {
        this.fail(err.asFatal());
      } else {
        this.failUnexpected(err);
      }
    });
  }

  private async completeLogin(token: string): Promise<void> {
    if (token === '')
      throw new AuthFailure('malformed', 'empty password: the tenant token is the password', SqlState.INVALID_PASSWORD);
    const identity = await this.deps.verifier.verify(token);
    if (this.state !== SessionState.Authenticating) return;
    await this.deps.registry.admit(identity);
    if (!identity.guardBypass && this.deps.config.policy.guard)
      judgeStartupSettings(this.deps.guard, this.startup!.settings, identity.schema);
    const settings = await this.deps.registry.canonicalSettings(this.startup!.settings, identity.schema, identity.role);
    const defaults = await this.deps.pool.parameterDefaults();
    if (this.state !== SessionState.Authenticating) return;
    // A suspension that arrived during the awaits above found no session of this tenant to end: refuse here.
    const withdrawn = this.deps.registry.recheck(identity);
    if (withdrawn !== null) throw withdrawn;

    this.identity = identity;
    this.prepared = new PreparedStatements(
      identity.schema,
      this.deps.config.listen.maxPreparedBytes,
      this.deps.pool.generations.of(identity.schema),
    );
    this.settings = new SessionSettings(settings);
    this.framer.setTyped(true, this.deps.config.listen.maxMessageBytes);
    this.key = this.deps.cancels.issue(this);
    if (this.handshakeTimer !== null) clearTimeout(this.handshakeTimer);
    this.handshakeTimer = null;

    const told = this.settings.tellAll(reportedParameters(defaults, settings, this.startup!.user, identity.schema));
    this.sendToClient(
      Buffer.concat([
        AUTHENTICATION_OK,
        ...told,
        encodeBackendKeyData(this.key.pid, this.key.secret),
        READY_FOR_QUERY_IDLE,
      ]),
    );
    this.state = SessionState.Idle;
    const pool = this.deps.config.pool;
    this.sessionMode = pool.mode === 'session' || pool.sessionTenants.includes(identity.tenantId);
    this.meter = this.deps.metrics.tenant(identity.tenantId);
    this.deps.metrics.authOutcome('ok', identity.guardBypass ? 'guard_bypass' : 'token');
    if (this.audit.recordsStatements || this.deps.config.metrics.enabled) {
      this.tracker = new StatementTracker();
      this.recorder = new StatementRecorder(this.tracker, this.audit, this.meter, () => this.server?.pid ?? null);
    }
    this.audit.authenticated(
      {
        tenant: identity.tenantId,
        schema: identity.schema,
        actor: identity.actor ?? null,
        application_name: this.applicationName,
        guard_bypass: identity.guardBypass,
      },
      identity.issuer,
    );
    this.log.info(
      { tenant: identity.tenantId, actor: identity.actor, issuer: identity.issuer },
      'client authenticated',
    );
    this.guarded(() => this.replayQueued());
  }

  // ── Idle: no server pinned ──────────────────────────────────────────────────

  private onIdleFrame(buf: Buffer, start: number, end: number): void {
    const code = buf[start]!;
    if (this.skipping) {
      if (code === FrontendCode.Sync) {
        this.skipping = false;
        this.sendToClient(READY_FOR_QUERY_IDLE);
      } else if (code === FrontendCode.Terminate) {
        this.close('client terminated');
      }
      return;
    }
    switch (code) {
      case FrontendCode.Terminate:
        this.close('client terminated');
        return;
      case FrontendCode.Sync:
        this.sendToClient(READY_FOR_QUERY_IDLE);
        return;
      case FrontendCode.Flush:
      case FrontendCode.CopyData:
      case FrontendCode.CopyDone:
      case FrontendCode.CopyFail:
        // Nothing is pending and no COPY is running: PostgreSQL ignores these too.
        return;
      case FrontendCode.Query:
      case FrontendCode.Parse: {
        // Refused before any server is involved: nothing of a refused statement ever reaches PostgreSQL.
        const verdict = this.verdict(code, buf, start, end);
        if (verdict instanceof ProxyError) {
          this.refuseLocally(verdict, code);
          return;
        }
        if (code === FrontendCode.Query && verdict?.analysis?.empty === true) {
          // No statement between transactions: answered without a server, as PostgreSQL would.
          this.sendToClient(EMPTY_QUERY_IDLE);
          return;
        }
        if (code === FrontendCode.Parse && this.answerParse(buf, start, end, verdict)) return;
        const frame = buf.subarray(start, end);
        this.approvedFrame = { frame, source: verdict };
        this.checkout(frame);
        return;
      }
      case FrontendCode.FunctionCall:
        this.refuseLocally(ProxyError.functionCallRefused(), FrontendCode.Query);
        return;
      case FrontendCode.Bind:
      case FrontendCode.Describe:
      case FrontendCode.Execute:
      case FrontendCode.Close:
        this.checkout(buf.subarray(start, end));
        return;
      default:
        throw ProxyError.protocolViolation(`unexpected message type ${code} from client`);
    }
  }

  /**
   * A named Parse outside a transaction with its Sync or Flush right behind it is answered without a server
   * (PreparedStatements.answerParse): libpq's PQprepare blocks its thread on the answer, and a thread of pgbench
   * clients waiting for a server its own clients held mid-transaction never got one.
   */
  private answerParse(buf: Buffer, start: number, end: number, verdict: StatementSource | null): boolean {
    const next = buf === this.framer.buffer && end === this.framer.end ? this.framer.peekCode() : -1;
    const answer = this.prepared!.answerParse(buf, start, end, verdict?.analysis, next);
    if (answer === null) return false;
    if (answer instanceof ProxyError) this.refuseLocally(answer, FrontendCode.Parse);
    else {
      this.tracker?.parsed(answer, verdict!);
      this.sendToClient(PARSE_COMPLETE);
    }
    return true;
  }

  /** An ERROR with no server involved: simple protocol gets ReadyForQuery, extended skips to the next Sync. */
  private refuseLocally(error: ProxyError, code: number): void {
    this.sendToClient(error.encode());
    if (code === FrontendCode.Query) this.sendToClient(READY_FOR_QUERY_IDLE);
    else this.skipping = true;
  }

  private checkout(first: Buffer): void {
    this.state = SessionState.Waiting;
    this.queued.push(first);
    const parked = this.parkedServer;
    this.parkedServer = null;
    if (parked !== null && this.deps.pool.reclaim(parked, this)) {
      // Still holding this client's session from its last transaction: no pin needed.
      this.onCheckedOut(parked, false);
      return;
    }
    const idle = this.deps.pool.tryAcquire();
    if (idle !== null) {
      this.onCheckedOut(idle);
      return;
    }
    this.clientSocket.pause();
    this.waitForServer();
  }

  private waitForServer(): void {
    this.deps.pool.acquire(this.takesUnresetServer).then(
      (server) => this.guarded(() => this.onCheckedOut(server)),
      (err: unknown) => this.guarded(() => this.onCheckoutFailed(ProxyError.internal(err))),
    );
  }

  private onCheckedOut(server: ServerConn, needsPin = true): void {
    if (this.state !== SessionState.Waiting) {
      this.deps.pool.giveBack(server);
      return;
    }
    if (this.drainError !== null) {
      // Drained (suspended, shutting down) while it waited: its next transaction has not begun, so it never does.
      this.deps.pool.giveBack(server);
      this.fail(this.drainError);
      return;
    }
    if (server.state === ServerState.Closed) {
      // It died between being handed over and now: wait for another.
      this.waitForServer();
      return;
    }
    if (server.needsReset) {
      if (this.takesUnresetServer()) this.onHandedOver(server);
      else {
        this.deps.pool.giveBack(server);
        this.waitForServer();
      }
      return;
    }
    this.server = server;
    this.state = SessionState.Active;
    this.serverSentFatal = false;
    if (needsPin) {
      const pin = planPin(server, this.identity!.schema, this.identity!.role, this.settings!.current);
      server.pin(this, pin.frame, pin.completions);
    } else {
      server.pin(this, null, 0);
    }
    const queued = this.queued;
    this.queued = [];
    for (const frame of queued) {
      const replacement = this.accountActive(frame[0]!, frame, 0, frame.length);
      if (this.state !== SessionState.Active) break;
      this.sendToServer(replacement ?? frame);
    }
    if (this.state === SessionState.Active && !this.pausedForServer) {
      this.clientSocket.resume();
      // Frames still in the framer from the chunk that triggered checkout.
      if (this.framer.buffered > 0) this.forwardActive();
    }
  }

  /**
   * Whether a server may come to this client unreset, its reset sent in the same write as what the client queued
   * (which goes out unrewritten: not a DEALLOCATE the proxy answers itself).
   */
  private readonly takesUnresetServer = (): boolean =>
    this.state === SessionState.Waiting &&
    this.framer.buffered === 0 &&
    this.approvedFrame?.source?.analysis?.deallocate == null &&
    this.approvedFrame?.source?.analysis?.catalog == null && // a catalog statement goes out rewritten (issue 17)
    isPipelinableSegment(this.queued, this.approvedFrame?.frame);

  /** A server handed over unreset: reset, pin and the queued segment go out together (ServerConn.pinAfterReset). */
  private onHandedOver(server: ServerConn): void {
    this.server = server;
    this.state = SessionState.Active;
    this.serverSentFatal = false;
    const pin = planPin(server, this.identity!.schema, this.identity!.role, this.settings!.current);
    const segment = this.queued;
    this.queued = [];
    server.pinAfterReset(this, PIPELINED_RESET, pin.frame, pin.completions);
    this.heldSegment = segment;
    for (const frame of segment) this.sendToServer(frame);
    // The client stays paused until the pin is confirmed: what it sends meanwhile would pile up unprocessed in the
    // framer, for as long as a DISCARD ALL can be made to wait on a lock (HAND_OVER_DEADLINE_MS).
  }

  onPinConfirmed(): void {
    const segment = this.heldSegment;
    if (segment === null) return;
    this.heldSegment = null;
    this.guarded(() => {
      for (const frame of segment) {
        if (this.state !== SessionState.Active) return;
        // takesUnresetServer admitted only frames that go out as they are.
        if (this.accountActive(frame[0]!, frame, 0, frame.length) !== null)
          throw new Error('a pipelined frame needed rewriting');
      }
      if (this.state === SessionState.Active && !this.snapshotting && this.framer.buffered > 0) this.forwardActive();
      if (this.state === SessionState.Active && !this.pausedForServer) this.clientSocket.resume();
    });
  }

  onHandOverFailed(): void {
    const segment = this.heldSegment;
    this.heldSegment = null;
    this.server = null;
    if (segment === null || this.state !== SessionState.Active) return;
    // PostgreSQL skipped the segment: it never ran, so it waits for another server as if just sent.
    this.log.warn('a server could not be reset in front of this client; its statement goes to another server');
    this.state = SessionState.Waiting;
    this.queued = segment;
    this.clientSocket.pause();
    this.waitForServer();
  }

  /** No server: the queued statements fail with the reason, the session survives and can retry. */
  private onCheckoutFailed(err: ProxyError): void {
    if (this.state !== SessionState.Waiting) return;
    if (err.fatal) {
      this.fail(err);
      return;
    }
    this.state = SessionState.Idle;
    this.approvedFrame = null;
    const queued = this.queued;
    this.queued = [];
    const first = queued[0]!;
    this.refuseLocally(err, first[0]!);
    // Everything after the failed statement is judged as if the client had just sent it.
    for (const frame of queued.slice(1)) {
      if (this.state !== SessionState.Idle) {
        this.queued.push(frame);
        continue;
      }
      this.onIdleFrame(frame, 0, frame.length);
    }
    this.resumeReading();
  }

  /** Async continuations replay queued frames, which may be malformed: failures end this session, nothing else. */
  private guarded(step: () => void): void {
    try {
      step();
    } catch (err) {
      this.failUnexpected(err);
    }
  }

  private replayQueued(): void {
    const queued = this.queued;
    this.queued = [];
    for (const frame of queued) {
      if (this.state === SessionState.Idle) this.onIdleFrame(frame, 0, frame.length);
      else this.queued.push(frame);
    }
    this.resumeReading();
  }

  private resumeReading(): void {
    if (this.state === SessionState.Closed) return;
    this.clientSocket.resume();
    // Frames that arrived in the same chunk as the one that paused us are still in the framer.
    if (this.framer.buffered > 0) this.onData(Buffer.alloc(0));
  }

  // ── Active: pinned to a server ──────────────────────────────────────────────

  private sendToServer(buf: Buffer): void {
    if (this.server !== null && !this.server.send(buf) && !this.pausedForServer) {
      this.pausedForServer = true;
      this.clientSocket.pause();
    }
  }

  private onServerReady(buf: Buffer, start: number, end: number): void {
    // The end of an attempt the proxy replays (StalePlanRetry): the replay's ReadyForQuery answers the client.
    if (this.prepared!.swallowReady()) return;
    if (this.pendingReady === 0) {
      this.server?.close('unsolicited ReadyForQuery');
      return;
    }
    this.pendingReady--;
    this.segmentsDone++;
    this.prepared!.segmentDone(this.segmentsDone - 1, buf[start + 5]!);
    while (this.refusals.length > 0 && this.refusals[0]!.segment < this.segmentsDone) this.refusals.shift();
    this.txStatus = buf[start + 5]!;
    this.tracker?.segmentsFinished(this.segmentsDone, this.txStatus !== TxStatus.Idle);
    if (this.state === SessionState.Closed) {
      // The client left; its last statements have now run.
      if (this.pendingReady === 0 && this.server !== null) {
        if (this.abandonTimer !== null) clearTimeout(this.abandonTimer);
        this.abandonServer(this.server);
      }
      return;
    }
    this.sendToClient(buf.subarray(start, end));
    this.releaseIfDone();
  }

  /**
   * Between transactions the server goes back to the pool; first, when the transaction changed settings, the server
   * is asked for the session's settings, which then follow the client to whatever server it gets next.
   */
  private releaseIfDone(): void {
    if (this.pendingReady !== 0 || this.unsynced || this.txStatus !== TxStatus.Idle || this.snapshotting) return;
    if (this.drainError !== null) {
      // Draining: the transaction is over, the client goes now rather than start another.
      this.fail(this.drainError);
      return;
    }
    const server = this.server;
    if (this.settings!.changed && server !== null) {
      // The client's next statement must see the settings as a direct connection would (a RESET back at the startup
      // value): it is held until the snapshot, and any restore, are done.
      this.snapshotting = true;
      this.clientSocket.pause();
      const snapshot = new Map<string, string>();
      server.runQuery(
        this.settings!.beginSnapshot(),
        ([name, value]) => snapshot.set(name!, value!),
        (error) =>
          this.guarded(() => {
            if (error !== null) {
              // Unanswered (the client's own 1 ms statement_timeout can do that): its settings stay as last known.
              this.log.warn(
                { err: error },
                'could not read the session settings after a SET; keeping the last known ones',
              );
              this.snapshotDone(server);
              return;
            }
            this.restoreStartupSettings(server, this.settings!.adopt(snapshot));
          }),
      );
      return;
    }
    if (this.sessionMode) return;
    this.releaseServer();
  }

  private onServerParameter(buf: Buffer, start: number, end: number): void {
    const [name, value] = readParameterStatus(buf, start, end);
    const server = this.server;
    // PostgreSQL 18 reports search_path: any value but the pinned schema means the pin no longer holds.
    if (
      name === 'search_path' &&
      server !== null &&
      server.pinnedSchema !== null &&
      !isSchemaPath(value, server.pinnedSchema)
    ) {
      this.log.warn({ tenant: this.identity?.tenantId }, 'search_path changed away from the pinned schema');
      this.server = null;
      this.fail(
        new ProxyError(SqlState.INSUFFICIENT_PRIVILEGE, 'search_path was changed away from the tenant schema', 'FATAL'),
      );
      server.close('search_path changed away from the pinned schema');
      return;
    }
    // A client's own SET of a reported setting follows it to its next server, as it would on a dedicated connection
    // (unreported ones follow through the snapshot in releaseIfDone).
    this.settings?.reported(name, value);
    this.tellParameter(name, value, buf.subarray(start, end));
  }

  private tellParameter(name: string, value: string, frame?: Buffer): void {
    if (this.settings?.tell(name, value) !== false) this.sendToClient(frame ?? encodeParameterStatus(name, value));
  }

  private onServerError(buf: Buffer, start: number, end: number): void {
    const fields = readErrorFields(buf, start, end);
    // A stale plan of a shared statement, prepared again with the client's segment replayed: never the client's.
    if (this.prepared!.onServerError(fields)) return;
    const refusal = this.refusals[0];
    if (refusal !== undefined && refusal.segment === this.segmentsDone && fields.message.includes(REFUSAL_SENTINEL)) {
      this.refusals.shift();
      // The rest of the segment is skipped by the server: none of it ran.
      this.tracker?.dropSegment(this.segmentsDone);
      this.sendToClient(refusal.error.encode());
      return;
    }
    this.recorder?.done(this.segmentsDone, null, fields.code);
    if (fields.severity === 'FATAL' || fields.severity === 'PANIC') this.serverSentFatal = true;
    this.sendToClient(buf.subarray(start, end));
  }

  private releaseServer(): void {
    const server = this.server;
    this.server = null;
    this.state = SessionState.Idle;
    this.refusals = [];
    if (this.pausedForServer) {
      this.pausedForServer = false;
      this.clientSocket.resume();
    }
    if (server === null) return;
    this.parkedServer = server;
    this.deps.pool.park(server, this);
  }

  // ── Failure and close ───────────────────────────────────────────────────────

  private failUnexpected(err: unknown): void {
    if (!(err instanceof ProxyError)) this.log.error({ err }, 'unexpected error in client session');
    this.fail(ProxyError.internal(err));
  }

  /** Sends the error; FATAL ones end the session (before login: a refused connection, with `reason` for the audit). */
  fail(err: ProxyError, reason = 'startup_refused'): void {
    if (this.state === SessionState.Closed) return;
    if (err.fatal && this.identity === null) this.audit.refused(`${reason}: ${err.message}`, err.sqlstate);
    this.sendToClient(err.encode());
    if (err.fatal) this.close(err.message);
  }

  /** `terminated`: the client said goodbye (Terminate), so what it sent before still runs to completion. */
  close(reason: string, terminated = false): void {
    if (this.state === SessionState.Closed) return;
    this.state = SessionState.Closed;
    this.terminated = terminated;
    if (this.handshakeTimer !== null) clearTimeout(this.handshakeTimer);
    if (this.key !== null) this.deps.cancels.revoke(this.key.pid, this.key.secret);
    if (this.parkedServer !== null) this.deps.pool.release(this.parkedServer, this);
    this.parkedServer = null;
    if (this.server !== null) this.abandonServer(this.server);
    this.clientSocket.end();
    // end() waits for the peer; a client that never reads must not hold the socket open.
    setTimeout(() => this.clientSocket.destroy(), 5000).unref();
    this.log.debug({ reason }, 'client session closed');
    this.audit.closed(
      reason,
      Date.now() - this.connectedAt,
      this.recorder?.completed ?? 0,
      this.txStatus !== TxStatus.Idle || this.pendingReady > 0,
    );
    this.deps.onClosed(this);
  }

  /**
   * The client left while pinned. After a Terminate, statements it already sent still run, as on a direct
   * connection (a COMMIT pipelined with Terminate commits); their results are dropped and the server is then rolled
   * back and reset. A client that vanished mid-statement, a server in COPY FROM STDIN or holding an unsynced
   * extended-protocol batch, or statements outlasting ABANDON_DRAIN_MS: cancelled and closed.
   */
  private abandonServer(server: ServerConn): void {
    if (this.heldSegment !== null) {
      // Its reset and first statement are still in flight, unaccounted: nothing to wait for reliably.
      this.heldSegment = null;
      this.discardServer(server, 'client left while its server was being reset');
      return;
    }
    if (this.pendingReady === 0 && !this.unsynced) {
      this.server = null;
      this.deps.pool.resetServer(server, this.txStatus !== TxStatus.Idle);
      return;
    }
    if (this.unsynced || this.copyIn || !this.terminated) {
      this.discardServer(server, 'client left mid-statement');
      return;
    }
    // Keep this.server: onServerReady finishes the abandon when the last ReadyForQuery arrives.
    this.abandonTimer = setTimeout(() => {
      if (this.server === server) this.discardServer(server, 'abandoned statements ran too long');
    }, ABANDON_DRAIN_MS);
    this.abandonTimer.unref();
  }

  private discardServer(server: ServerConn, reason: string): void {
    this.recorder?.unfinished(SqlState.QUERY_CANCELED);
    this.server = null;
    // PostgreSQL notices a vanished client only when it next writes: cancel first so the statement stops now.
    this.cancelServer(server);
    server.close(reason);
  }
}

const NO_SOURCE: StatementSource = { analysis: null, text: null };

function uncorkClient(session: ClientSession): void {
  session.uncork();
}
