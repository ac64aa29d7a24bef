// One upstream connection: its state machine, its reply ledger, and the pass-through of its frames to the pinned client.
import type net from 'node:net';
import { Conn, type Pausable } from '../net/conn.js';
import { BackendCode, TxStatus } from '../protocol/codes.js';
import { ProxyError } from '../protocol/errors.js';
import { Framer } from '../protocol/framer.js';
import { readParameterStatus } from '../protocol/messages.js';
import { PARSE_COMPLETE } from '../protocol/static.js';
import { sendCancel, type ConnectedServer, type UpstreamTarget } from './connect.js';
import type { PinPlan, ResetPlan } from './pin.js';
import { ReplyLedger, Route } from './replies.js';
import { ServerStatements } from './server-statements.js';
import type { TenantShare } from '../limits/share.js';

export type { ServerStatement } from './server-statements.js';

export const ServerState = {
  Idle: 'idle',
  Active: 'active',
  /** Unpinned but not reset: it still holds its last client's session and may only go back to that client. */
  Parked: 'parked',
  Resetting: 'resetting',
  Closed: 'closed',
} as const;
export type ServerState = (typeof ServerState)[keyof typeof ServerState];

const EDGES: Record<ServerState, readonly ServerState[]> = {
  idle: ['active', 'closed'],
  active: ['parked', 'resetting', 'closed'],
  parked: ['active', 'resetting', 'closed'],
  resetting: ['idle', 'closed'],
  closed: [],
};

/** What a pinned client offers its server; implemented by the client's link (backend/link). */
export interface ServerClient {
  /** Writes a reply to the client; when its socket is full, `from` (this server's reading) is paused until it drains. */
  deliver(buf: Buffer, from: Pausable): void;
  /**
   * A ReadyForQuery, ParameterStatus, ErrorResponse, CopyInResponse or statement completion (CommandComplete,
   * EmptyQueryResponse, PortalSuspended) of the client's, with what the ledger made of it, to account and forward.
   */
  onServerControl(code: number, route: Route, buf: Buffer, start: number, end: number): void;
  /** The server failed underneath the client (died, or the pin failed). */
  onServerLost(err: ProxyError): void;
  /** The reset and pin sent ahead of the client's first statement (see pinAfterReset) succeeded. */
  onPinConfirmed(): void;
  /** That reset failed, so PostgreSQL skipped the client's statement: the server is gone, the statement never ran. */
  onHandOverFailed(): void;
}

/** Pool-side hooks a server reports to. */
export interface ServerOwner {
  onResetDone(server: ServerConn): void;
  onClosed(server: ServerConn, reason: string): void;
  onCancelFailed(server: ServerConn, err: Error): void;
}

/** Codes a client's segment hands to the ledger and the client's link; the rest pass through unread. */
const CONTROL = new Uint8Array(256);
for (const code of [
  BackendCode.ReadyForQuery,
  BackendCode.ParameterStatus,
  BackendCode.ErrorResponse,
  BackendCode.CopyInResponse,
  BackendCode.CommandComplete,
  BackendCode.EmptyQueryResponse,
  BackendCode.PortalSuspended,
  BackendCode.ParseComplete,
  BackendCode.CloseComplete,
])
  CONTROL[code] = 1;

/** Replies that may arrive with nothing asked: a pinned client hears them, as on a direct connection. */
const ASYNCHRONOUS = new Set<number>([
  BackendCode.NoticeResponse,
  BackendCode.NotificationResponse,
  BackendCode.ParameterStatus,
  BackendCode.ErrorResponse,
]);

let nextServerId = 1;

export class ServerConn implements Pausable {
  readonly id = nextServerId++;
  readonly pid: number;
  readonly secret: number;
  readonly createdAt = Date.now();
  /** Lifetime after which the janitor retires this server; staggered per server so the pool does not reconnect at once. */
  readonly retireAt: number;
  /** Who is owed each reply: the link enters its client's requests, this class the proxy's own. */
  readonly replies = new ReplyLedger();
  /** Prepared statements the proxy created here (see frontend/prepared). */
  readonly statements = new ServerStatements();
  /** The tenant this server counts against while pinned to or parked for its clients (kept by the Pool). */
  holder: TenantShare | null = null;

  #state: ServerState = ServerState.Idle;
  #lastUsedAt = Date.now();
  #client: ServerClient | null = null;
  /** Reported (GUC_REPORT) settings as the server last announced them. */
  readonly #reported: Map<string, string>;
  /** Unreported settings the proxy SET since the last reset. */
  readonly #applied = new Map<string, string>();
  /** Schema pinned for the current client, checked against PostgreSQL 18's search_path reports. */
  #pinnedSchema: string | null = null;
  /** Handed from one client straight to the next: the next pin must carry the reset (see pinAfterReset). */
  #needsReset = false;
  #resetStartedAt = 0;
  /** The reset finished but a cancel is still in flight: become idle once it lands. */
  #resetDone = false;
  /** Cancel requests for this server still on their way to PostgreSQL: it must not serve anyone new meanwhile. */
  #cancelsInFlight = 0;
  #cancelled: Promise<void> = Promise.resolve();
  /** When a hand-over's DISCARD ALL went out; 0 once the pool has cancelled it for taking too long. */
  #discardSentAt = 0;
  readonly #socket: net.Socket;
  readonly #conn: Conn;
  readonly #framer = new Framer(1 << 30, true);

  constructor(
    connected: ConnectedServer,
    private readonly owner: ServerOwner,
    private readonly target: UpstreamTarget,
    maxLifetimeMs: number,
  ) {
    this.#socket = connected.socket;
    this.#conn = new Conn(connected.socket);
    this.pid = connected.pid;
    this.secret = connected.secret;
    this.#reported = connected.params;
    this.retireAt = this.createdAt + maxLifetimeMs * (0.85 + Math.random() * 0.15);
    this.#socket.on('data', (chunk: Buffer) => this.#onData(chunk));
    this.#socket.on('error', (err) => this.close(`socket error: ${err.message}`));
    this.#socket.on('close', () => this.close('server closed the connection'));
  }

  get state(): ServerState {
    return this.#state;
  }

  /** Read after callbacks that may have closed it (TypeScript's narrowing cannot see through them). */
  private get closed(): boolean {
    return this.#state === ServerState.Closed;
  }

  get lastUsedAt(): number {
    return this.#lastUsedAt;
  }

  get pinnedSchema(): string | null {
    return this.#pinnedSchema;
  }

  get needsReset(): boolean {
    return this.#needsReset;
  }

  get resetStartedAt(): number {
    return this.#resetStartedAt;
  }

  get reported(): ReadonlyMap<string, string> {
    return this.#reported;
  }

  /** An unreported setting's value as the proxy applied it since the last reset. */
  applied(name: string): string | undefined {
    return this.#applied.get(name);
  }

  /** A cancel for this server is on its way: it must not go to anyone new before it lands. */
  get cancelling(): boolean {
    return this.#cancelsInFlight > 0;
  }

  /** When a hand-over's DISCARD ALL still running went out (0: none, or already cancelled). */
  get discardingSince(): number {
    return this.replies.discarding ? this.#discardSentAt : 0;
  }

  /** Idle in the pool again (its last use counts from now). */
  markUsed(): void {
    this.#lastUsedAt = Date.now();
  }

  /** Pins a client: the pin (see planPin) goes out first, in the same write as the client's frames. */
  pin(client: ServerClient, plan: PinPlan | null): void {
    this.#transition(ServerState.Active);
    this.#client = client;
    this.#lastUsedAt = Date.now();
    if (plan === null) return;
    this.#adopt(plan);
    this.replies.pinRun({
      completions: plan.completions,
      handOver: false,
      onConfirmed: noop,
      onFailed: (code, message) =>
        this.close(
          `pin failed: ${code} ${message}`,
          new ProxyError(code, `could not set up the tenant's session: ${message}`, 'FATAL'),
        ),
    });
    this.#conn.write(plan.frame);
  }

  /** The pool hands this server, unreset, to a waiting client: that client's pin will carry the reset. */
  markHandedOver(): void {
    this.#needsReset = true;
    this.#pinnedSchema = null;
    this.#applied.clear();
    this.replies.detach();
  }

  /**
   * Pins a client on a handed-over server: `reset` and the pin go out in front of the client's first statement (a
   * single segment the caller sends next). The client hears onPinConfirmed once both succeeded, or onHandOverFailed
   * when the reset failed and PostgreSQL skipped the client's statement. A failed pin (a tenant role dropped, a
   * setting that no longer applies) would fail again anywhere, so its client hears PostgreSQL's error.
   */
  pinAfterReset(client: ServerClient, reset: Buffer, plan: PinPlan): void {
    this.#transition(ServerState.Active);
    this.#client = client;
    this.#lastUsedAt = Date.now();
    this.#needsReset = false;
    this.#discardSentAt = Date.now();
    this.#adopt(plan);
    this.replies.pinRun({
      completions: 1 + plan.completions,
      handOver: true,
      onConfirmed: () => this.#client?.onPinConfirmed(),
      onFailed: (code: string, message: string, seen: number) => {
        if (seen === 0) {
          // Detached first: the client learns its statement never ran, not that its server was lost.
          this.#client = null;
          this.close(`pipelined reset failed: ${code} ${message}`);
          client.onHandOverFailed();
          return;
        }
        this.close(
          `pin failed: ${code} ${message}`,
          new ProxyError(code, `could not set up the tenant's session: ${message}`, 'FATAL'),
        );
      },
    });
    this.#conn.write(reset);
    this.#conn.write(plan.frame);
  }

  /**
   * Runs a query of the proxy's own on the pinned server between two of its client's transactions: rows go to onRow,
   * nothing reaches the client, onDone follows its ReadyForQuery. An error (e.g. the client's own statement_timeout
   * cancelling it) is passed on, not fatal: a single SELECT outside a transaction leaves the server as it was.
   */
  runQuery(frame: Buffer, onRow: (values: string[]) => void, onDone: (error: string | null) => void): void {
    this.replies.query({ readies: 1, onRow, onDone });
    this.#conn.write(frame);
  }

  /**
   * Forwards client frames the link has entered in the ledger; when the socket is full, `from` (the client's reading)
   * is paused until it drains.
   */
  send(buf: Buffer, from: Pausable): void {
    this.#conn.forward(buf, from);
  }

  /** A client's reading paused for this socket no longer waits for it (its link ended). */
  forget(from: Pausable): void {
    this.#conn.forget(from);
  }

  /** The stale-plan replay of the head segment (see frontend/stale-plan-retry): re-prepare and the client's frames. */
  replay(frames: Buffer, reprepareFailed: () => void): void {
    this.replies.replay(reprepareFailed);
    this.#conn.write(frames);
  }

  /** Unpins without resetting: the client's session stays here for that client's next transaction. */
  park(): void {
    this.#transition(ServerState.Parked);
    this.#client = null;
    this.#lastUsedAt = Date.now();
    this.resume();
  }

  /** Unpins and cleans the session state before the pool may hand this server to anyone else. */
  reset(plan: ResetPlan): void {
    if (this.replies.clientWork) {
      // A pin still unanswered would swallow the reset into its run (skipped, should the pin fail): not worth it.
      this.close('released before its pin was answered');
      return;
    }
    this.#needsReset = false;
    this.#client = null;
    this.#pinnedSchema = null;
    this.#applied.clear();
    this.replies.detach();
    this.#transition(ServerState.Resetting);
    this.resume();
    this.#resetStartedAt = Date.now();
    // The reset's proof that only the proxy's own prepared statements remain: [foreign, ours], from its last row.
    let counts: [string, string] | null = null;
    this.replies.query({
      readies: plan.replies,
      onRow: plan.proof
        ? (values) => {
            counts = values.length >= 2 ? [values[values.length - 2]!, values[values.length - 1]!] : null;
          }
        : null,
      onDone: (error, status) => {
        if (error !== null) this.close(`injected statement failed: ${error}`);
        else if (status !== TxStatus.Idle) this.close('reset left a transaction open');
        else if (plan.proof && (counts === null || counts[0] !== '0' || Number(counts[1]) !== this.statements.size))
          this.close('reset found prepared statements the proxy did not make');
        else {
          this.#resetDone = true;
          this.#finishReset();
        }
      },
    });
    this.#conn.write(plan.frame);
  }

  /**
   * Sends PostgreSQL a cancel for whatever runs here. The server serves no one new until PostgreSQL has received it:
   * it signals the backend before it closes the cancel connection, so the signal lands on the reset (failing it: the
   * server is closed) or on an idle backend (ignored), never on the next client's statement.
   */
  cancel(): void {
    this.#cancelsInFlight++;
    this.#cancelled = sendCancel(this.target, this.pid, this.secret)
      .catch((err: Error) => this.owner.onCancelFailed(this, err))
      .finally(() => {
        this.#cancelsInFlight--;
        this.#finishReset();
      });
  }

  /** Settles once the last cancel sent has reached PostgreSQL (or failed): what comes next cannot be hit by it. */
  cancelLanded(): Promise<void> {
    return this.#cancelled;
  }

  /** The hand-over's DISCARD ALL has run too long (a lock it waits for): cancelled, it fails like any other error. */
  cancelDiscard(): void {
    this.#discardSentAt = 0;
    this.cancel();
  }

  pause(): void {
    this.#socket.pause();
  }

  resume(): void {
    if (this.#state !== ServerState.Closed) this.#socket.resume();
  }

  /** `err` is what the pinned client hears (by default: its server was lost). */
  close(reason: string, err = ProxyError.serverLost(reason)): void {
    if (this.#state === ServerState.Closed) return;
    const client = this.#client;
    this.#transition(ServerState.Closed);
    this.#client = null;
    this.#socket.destroy();
    client?.onServerLost(err);
    this.owner.onClosed(this, reason);
  }

  /** Graceful close for idle servers: Terminate, then the socket ends. */
  terminate(terminateFrame: Buffer, reason: string): void {
    if (this.#state === ServerState.Closed) return;
    this.#socket.end(terminateFrame);
    this.close(reason);
  }

  #adopt(plan: PinPlan): void {
    this.#pinnedSchema = plan.schema;
    for (const [name, value] of plan.applied) this.#applied.set(name, value);
  }

  #onData(chunk: Buffer): void {
    const framer = this.#framer;
    framer.push(chunk);
    const replies = this.replies;
    let runBuf: Buffer | null = null;
    let runStart = 0;
    let runEnd = 0;
    try {
      while (framer.next()) {
        const { code, buffer, start, end } = framer;
        // The pass-through: a client's reply the ledger need not see goes out with its neighbours in one write.
        if (CONTROL[code] === 0 && replies.clientAtHead) {
          if (runBuf === buffer && runEnd === start) runEnd = end;
          else {
            if (runBuf !== null) this.#deliver(runBuf.subarray(runStart, runEnd));
            runBuf = buffer;
            runStart = start;
            runEnd = end;
          }
          continue;
        }
        if (runBuf !== null) {
          this.#deliver(runBuf.subarray(runStart, runEnd));
          runBuf = null;
        }
        if (code === BackendCode.ParameterStatus) this.#recordParameter(buffer, start, end);
        const route = replies.route(code, buffer, start, end);
        if (this.closed) return;
        const client = this.#client;
        if (route === Route.Unowned) {
          if (client !== null && ASYNCHRONOUS.has(code)) this.#onClientReply(client, code, Route.Pass, framer);
          else this.#onUnsolicited(code);
        } else if (route !== Route.Swallow && client !== null) this.#onClientReply(client, code, route, framer);
        if (this.closed) return;
      }
      if (runBuf !== null) this.#deliver(runBuf.subarray(runStart, runEnd));
    } catch (err) {
      this.close(`bad message from server: ${(err as Error).message}`);
    }
  }

  #onClientReply(client: ServerClient, code: number, route: Route, framer: Framer): void {
    if (code === BackendCode.ParseComplete || code === BackendCode.CloseComplete)
      this.#deliver(
        route === Route.AsParseComplete ? PARSE_COMPLETE : framer.buffer.subarray(framer.start, framer.end),
      );
    else if (CONTROL[code] === 1) client.onServerControl(code, route, framer.buffer, framer.start, framer.end);
    else this.#deliver(framer.buffer.subarray(framer.start, framer.end));
  }

  /** A reply nobody asked for, with no client to hear it: only notices and reports may come unasked. */
  #onUnsolicited(code: number): void {
    switch (code) {
      case BackendCode.ParameterStatus:
      case BackendCode.NoticeResponse:
      case BackendCode.NotificationResponse:
        return;
      case BackendCode.ErrorResponse: {
        // Outside any statement: the server is going away (e.g. terminated while idle).
        const error = this.replies.lastError!;
        this.close(`server error while idle: ${error.code} ${error.message}`);
        return;
      }
      case BackendCode.ReadyForQuery:
        this.close('unsolicited ReadyForQuery');
        return;
      default:
        this.close(`unexpected message ${code} while idle`);
    }
  }

  #deliver(buf: Buffer): void {
    this.#client?.deliver(buf, this);
  }

  /**
   * Idle only when the reset is done and no cancel is in flight: PostgreSQL signals the backend before it closes the
   * cancel connection, so the signal lands on the reset or an idle backend, never on the next client's statement.
   */
  #finishReset(): void {
    if (!this.#resetDone || this.#cancelsInFlight > 0 || this.#state !== ServerState.Resetting) return;
    this.#resetDone = false;
    this.#transition(ServerState.Idle);
    this.owner.onResetDone(this);
  }

  #recordParameter(buf: Buffer, start: number, end: number): void {
    const [name, value] = readParameterStatus(buf, start, end);
    this.#reported.set(name, value);
  }

  #transition(next: ServerState): void {
    if (!EDGES[this.#state].includes(next)) {
      throw new Error(`server ${this.id}: illegal transition ${this.#state} → ${next}`);
    }
    this.#state = next;
  }
}

function noop(): void {}
