// One client connection: startup → auth → idle ↔ waiting ↔ active (linked to a server) → closed.
import { randomUUID } from 'node:crypto';
import type net from 'node:net';
import type { ConnectionAudit } from '../audit/audit-log.js';
import type { Logger } from 'pino';
import type { TenantIdentity } from '../auth/identity.js';
import type { ClientLink, LinkHost } from '../backend/link.js';
import type { ClientChannels } from '../channels/client-channels.js';
import { ServerState, type ServerConn } from '../backend/server-conn.js';
import { UNAUTHENTICATED, type TenantMeter } from '../metrics/metrics.js';
import { Conn } from '../net/conn.js';
import { UNMETERED, type TenantUsage } from '../usage/tenant-usage.js';
import { FrontendCode } from '../protocol/codes.js';
import { ProxyError } from '../protocol/errors.js';
import { FrameLengthError, Framer } from '../protocol/framer.js';
import { EMPTY_QUERY_IDLE, READY_FOR_QUERY_IDLE } from '../protocol/static.js';
import { clientParts, type ClientParts } from './client-parts.js';
import { Handshake, type HandshakeHost } from './handshake.js';
import type { LoggedIn } from './login.js';
import { answerLocally } from './local-answers.js';
import { isPipelinableSegment } from './pipelinable.js';
import type { StatementSource } from './statement-tracker.js';
import { refuseUnlessGone } from './startup.js';
import { SESSION_EDGES, SessionState, type SessionDeps } from './session-state.js';

export { SessionState, type SessionDeps } from './session-state.js';

/** The startup packet's cap (PostgreSQL's is 10,000 bytes too). */
const MAX_STARTUP_BYTES = 10_000;

export class ClientSession implements LinkHost, HandshakeHost {
  state: SessionState = SessionState.Startup;
  readonly conn: Conn;
  /** Names this connection in the audit trail and the admin view. */
  readonly id = randomUUID();
  readonly connectedAt = Date.now();
  /** Prometheus counts go to `meter` (by label, UNAUTHENTICATED until login), the registry's usage to `usage`. */
  meter: TenantMeter;
  usage: TenantUsage = UNMETERED;
  readonly framer = new Framer(MAX_STARTUP_BYTES, false);
  readonly log: Logger;
  /** Set by drain(): the FATAL the session ends with once its transaction is over (shutdown, tenant suspended). */
  drainError: ProxyError | null = null;
  /** pool.mode session (or a tenant in pool.sessionTenants): the first server stays linked until the client leaves. */
  sessionMode = false;

  private parts: ClientParts | null = null;
  /** The server this client's last transaction ran on, parked with its session for the next one. */
  private parkedServer: ServerConn | null = null;
  /** Frames held while authentication or checkout is in progress (the socket is paused meanwhile). */
  private queued: Buffer[] = [];
  /** The queued frame that triggered checkout, with the verdict it got while idle. */
  private approved: { frame: Buffer; source: StatementSource | null } | null = null;
  private readonly audit: ConnectionAudit;
  /** After a local refusal: drop messages until Sync, as PostgreSQL does after an error. */
  private skipping = false;
  private key: { pid: number; secret: number } | null = null;
  private readonly handshake: Handshake;

  constructor(
    socket: net.Socket,
    private readonly deps: SessionDeps,
  ) {
    this.conn = new Conn(socket);
    this.log = deps.log.child({ client: `${socket.remoteAddress}:${socket.remotePort}` });
    this.meter = deps.metrics.tenant(UNAUTHENTICATED);
    this.audit = deps.audit.connection({
      session: this.id,
      client_addr: socket.remoteAddress,
      client_port: socket.remotePort,
    });
    socket.setNoDelay(true);
    this.handshake = new Handshake(this, deps);
    this.attach(socket);
  }

  get clientSocket(): net.Socket {
    return this.conn.socket;
  }

  get identity(): TenantIdentity {
    return this.parts!.identity;
  }

  /** The tenant, once logged in. */
  get tenant(): TenantIdentity | null {
    return this.parts?.identity ?? null;
  }

  /** Its LISTENs and notifications, once logged in (null for a client whose statements are not rewritten). */
  get channels(): ClientChannels | null {
    return this.parts?.channels ?? null;
  }

  get applicationName(): string | null {
    return this.parts?.settings.current.get('application_name') || null;
  }

  /** Waiting for a server or inside a transaction/statement: what a graceful shutdown lets finish. */
  get busy(): boolean {
    if (this.state === SessionState.Waiting) return true;
    return this.state === SessionState.Active && this.parts!.link.busy;
  }

  /** Graceful end (shutdown, tenant suspended): the session ends with `error` now, or when its transaction ends. */
  drain(error: ProxyError = ProxyError.shuttingDown()): void {
    this.drainError ??= error;
    if (!this.busy) this.fail(this.drainError);
  }

  /** A cancel request carrying this client's key. */
  cancelCurrent(): void {
    if (this.state === SessionState.Active) this.parts!.link.cancelCurrent();
  }

  private transition(next: SessionState): void {
    if (!SESSION_EDGES[this.state].includes(next))
      throw new Error(`session: illegal transition ${this.state} → ${next}`);
    this.state = next;
  }

  // ── LinkHost ────────────────────────────────────────────────────────────────

  pauseClient(): void {
    this.clientSocket.pause();
  }

  unlinked(parked: ServerConn | null): void {
    this.transition(SessionState.Idle);
    this.parkedServer = parked;
  }

  handOverFailed(segment: Buffer[]): void {
    if (this.state !== SessionState.Active) return;
    this.transition(SessionState.Waiting);
    this.queued = segment;
    this.clientSocket.pause();
    this.waitForServer();
  }

  /** Async continuations replay queued frames, which may be malformed: failures end this session, nothing else. */
  guarded(step: () => void): void {
    try {
      step();
    } catch (err) {
      this.failUnexpected(err);
    }
  }

  private sendToClient(buf: Buffer): void {
    if (this.state === SessionState.Closed) return;
    this.meter.bytesOut += buf.length;
    this.usage.bytesOut += buf.length;
    this.conn.write(buf);
  }

  // ── Incoming client bytes ───────────────────────────────────────────────────

  attach(socket: net.Socket): void {
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
    this.usage.bytesIn += chunk.length;
    this.framer.push(chunk);
    this.processFrames();
  };

  /** Handles the frames in the framer as far as the session's state lets it (a wait pauses, resumeReading goes on). */
  private processFrames(): void {
    const framer = this.framer;
    try {
      for (;;) {
        const state = this.state;
        if (state === SessionState.Closed) return;
        if (state === SessionState.Active) {
          // Linked: frames stream to the server (held while the link reads back settings or awaits a hand-over).
          this.parts!.link.forward();
          if (this.state === SessionState.Active) return;
          continue;
        }
        if (!framer.next()) return;
        this.dispatch(framer.buffer, framer.start, framer.end);
      }
    } catch (err) {
      if (err instanceof FrameLengthError && this.state === SessionState.Startup)
        refuseUnlessGone(this.clientSocket, this.onData, () => this.fail(err));
      else this.failUnexpected(err);
    }
  }

  private dispatch(buf: Buffer, start: number, end: number): void {
    switch (this.state) {
      case SessionState.Startup:
        this.handshake.onStartupFrame(buf, start, end);
        return;
      case SessionState.Password:
        this.handshake.onPasswordFrame(buf, start, end);
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

  // ── Startup and authentication (frontend/handshake) ─────────────────────────

  awaitPassword(): void {
    this.transition(SessionState.Password);
  }

  authenticating(): void {
    this.transition(SessionState.Authenticating);
    this.clientSocket.pause();
  }

  get authenticatingNow(): boolean {
    return this.state === SessionState.Authenticating;
  }

  loggedIn(loggedIn: LoggedIn): void {
    const { deps } = this;
    const config = deps.config;
    const identity = loggedIn.identity;
    this.meter = deps.metrics.tenant(identity.tenantId);
    // First: past the tenant's maxClients (FATAL 53300) the login is refused before it counts anywhere.
    const share = deps.limits.join(identity.tenantId, loggedIn.record);
    this.usage = deps.usage.login(identity.tenantId);
    this.parts = clientParts(this, deps, loggedIn, share, this.audit, this.meter);
    this.framer.setTyped(true, config.listen.maxMessageBytes);
    this.key = deps.cancels.issue(this);
    this.handshake.finished();

    this.transition(SessionState.Idle);
    this.sessionMode = config.pool.mode === 'session' || config.pool.sessionTenants.includes(identity.tenantId);
    this.sendToClient(this.handshake.greet(this.parts, loggedIn.defaults, this.key, this.audit));
    const queued = this.queued;
    this.queued = [];
    this.replay(queued);
  }

  // ── Idle: no server linked ──────────────────────────────────────────────────

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
        const verdict = this.parts!.judge.verdict(code, buf, start, end);
        if (verdict instanceof ProxyError) {
          this.refuseLocally(verdict, code);
          return;
        }
        if (code === FrontendCode.Query && verdict?.analysis?.empty === true) {
          // No statement between transactions: answered without a server, as PostgreSQL would.
          this.sendToClient(EMPTY_QUERY_IDLE);
          return;
        }
        const local = answerLocally(this.parts!, this.framer, code, buf, start, end, verdict);
        if (local instanceof Promise) return this.answerLater(local);
        if (local instanceof ProxyError) return this.refuseLocally(local, code);
        if (local !== null) return this.sendToClient(local);
        const frame = buf.subarray(start, end);
        this.approved = { frame, source: verdict };
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

  /** An answer the proxy gives itself once ready (LISTEN: when it listens); frames that arrive meanwhile wait. */
  private answerLater(answer: Promise<Buffer>): void {
    this.transition(SessionState.Waiting);
    this.clientSocket.pause();
    const answered = (reply: Buffer): void => {
      if (this.state !== SessionState.Waiting) return;
      this.transition(SessionState.Idle);
      this.sendToClient(reply);
      if (this.drainError !== null) this.fail(this.drainError);
      else this.replay(this.queued.splice(0));
    };
    void answer.then((reply) => this.guarded(() => answered(reply)));
  }

  /** An ERROR with no server involved: simple protocol gets ReadyForQuery, extended skips to the next Sync. */
  private refuseLocally(error: ProxyError, code: number): void {
    this.sendToClient(error.encode());
    if (code === FrontendCode.Query) this.sendToClient(READY_FOR_QUERY_IDLE);
    else this.skipping = true;
  }

  // ── Checkout: idle → waiting → active ───────────────────────────────────────

  private checkout(first: Buffer): void {
    this.transition(SessionState.Waiting);
    this.queued.push(first);
    const parked = this.parts!.route.follow(this.parkedServer, this, this.parts!.prepared);
    this.parkedServer = null;
    if (parked !== null && this.parts!.route.pool.reclaim(parked, this)) {
      // Still holding this client's session from its last transaction: no pin needed.
      this.onCheckedOut(parked, false);
      return;
    }
    const idle = this.parts!.route.pool.tryAcquire(this.parts!.share);
    if (idle !== null) {
      this.onCheckedOut(idle);
      return;
    }
    this.clientSocket.pause();
    this.waitForServer();
  }

  private waitForServer(): void {
    this.parts!.route.pool.acquire(this.takesUnresetServer, this.parts!.share).then(
      (server) => this.guarded(() => this.onCheckedOut(server)),
      (err: unknown) => this.guarded(() => this.onCheckoutFailed(ProxyError.internal(err))),
    );
  }

  private onCheckedOut(server: ServerConn, needsPin = true): void {
    if (this.state !== SessionState.Waiting) {
      this.parts!.route.pool.giveBack(server);
      return;
    }
    if (this.drainError !== null) {
      // Drained (suspended, shutting down) while it waited: its next transaction has not begun, so it never does.
      this.parts!.route.pool.giveBack(server);
      this.fail(this.drainError);
      return;
    }
    if (server.state === ServerState.Closed) {
      // It died between being handed over and now: wait for another.
      this.waitForServer();
      return;
    }
    const link = this.parts!.link;
    if (server.needsReset && !this.takesUnresetServer()) {
      this.parts!.route.pool.giveBack(server);
      this.waitForServer();
      return;
    }
    const queued = this.queued;
    this.queued = [];
    if (server.needsReset) {
      // Reset, pin and the queued segment go out together; the client stays paused until the pin is confirmed.
      this.transition(SessionState.Active);
      this.passApproval(link);
      link.attachHandedOver(server, queued);
      return;
    }
    this.transition(SessionState.Active);
    this.passApproval(link);
    link.attach(server, needsPin, queued);
    if ((this.state as SessionState) === SessionState.Active && !link.pausedForServer) this.resumeClient();
  }

  /** The frame judged while idle goes to the link with its verdict, so its replay onto the server is not judged twice. */
  private passApproval(link: ClientLink): void {
    if (this.approved !== null) link.approve(this.approved.frame, this.approved.source);
    this.approved = null;
  }

  /**
   * Whether a server may come to this client unreset, its reset sent in the same write as what the client queued
   * (which goes out unrewritten: not a DEALLOCATE the proxy answers itself).
   */
  private readonly takesUnresetServer = (): boolean =>
    this.state === SessionState.Waiting &&
    this.framer.buffered === 0 &&
    this.approved?.source?.analysis?.deallocate == null &&
    this.approved?.source?.analysis?.catalog == null && // a catalog statement goes out rewritten
    isPipelinableSegment(this.queued, this.approved?.frame);

  /** No server: the queued statements fail with the reason, the session survives and can retry. */
  private onCheckoutFailed(err: ProxyError): void {
    if (this.state !== SessionState.Waiting) return;
    if (err.fatal) {
      this.fail(err);
      return;
    }
    this.transition(SessionState.Idle);
    this.approved = null;
    const queued = this.queued;
    this.queued = [];
    this.refuseLocally(err, queued[0]![0]!);
    // Everything after the failed statement is judged as if the client had just sent it.
    this.replay(queued.slice(1));
  }

  private replay(frames: Buffer[]): void {
    for (const frame of frames) {
      if (this.state === SessionState.Idle) this.onIdleFrame(frame, 0, frame.length);
      else this.queued.push(frame);
    }
    this.resumeClient();
  }

  resumeClient(): void {
    if (this.state === SessionState.Closed) return;
    this.clientSocket.resume();
    // Frames that arrived in the same chunk as the one that paused us are still in the framer.
    if (this.framer.buffered > 0) this.processFrames();
  }

  // ── Failure and close ───────────────────────────────────────────────────────

  failUnexpected(err: unknown): void {
    if (!(err instanceof ProxyError)) this.log.error({ err }, 'unexpected error in client session');
    this.fail(ProxyError.internal(err));
  }

  /** Sends the error; FATAL ones end the session (before login: a refused connection, with `reason` for the audit). */
  fail(err: ProxyError, reason = 'startup_refused'): void {
    if (this.state === SessionState.Closed) return;
    if (err.fatal && this.parts === null) this.audit.refused(`${reason}: ${err.message}`, err.sqlstate);
    this.sendToClient(err.encode());
    if (err.fatal) this.close(err.message);
  }

  /** `terminated`: the client said goodbye (Terminate), so what it sent before still runs to completion. */
  close(reason: string, terminated = false): void {
    if (this.state === SessionState.Closed) return;
    this.transition(SessionState.Closed);
    this.handshake.finished();
    if (this.key !== null) this.deps.cancels.revoke(this.key.pid, this.key.secret);
    if (this.parkedServer !== null) this.parts!.route.pool.release(this.parkedServer, this);
    this.parkedServer = null;
    const link = this.parts?.link ?? null;
    link?.leave(terminated);
    if (link !== null) this.usage.disconnected();
    this.parts?.channels?.close();
    this.clientSocket.end();
    // end() waits for the peer; a client that never reads must not hold the socket open.
    setTimeout(() => this.clientSocket.destroy(), 5000).unref();
    this.log.debug({ reason }, 'client session closed');
    this.audit.closed(
      reason,
      Date.now() - this.connectedAt,
      this.parts?.recorder?.completed ?? 0,
      link?.interrupted ?? false,
    );
    this.deps.onClosed(this);
  }
}
