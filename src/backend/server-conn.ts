// One upstream connection: its state machine, the pass-through of its frames to the pinned client, injected statements.
import type net from 'node:net';
import { BackendCode, TxStatus } from '../protocol/codes.js';
import { ProxyError } from '../protocol/errors.js';
import { Framer } from '../protocol/framer.js';
import { readErrorFields, readParameterStatus } from '../protocol/messages.js';
import { PARSE_COMPLETE } from '../protocol/static.js';
import type { ConnectedServer } from './connect.js';

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

/** What a pinned client session offers its server; implemented by ClientSession. */
export interface ServerClient {
  /** Writes bytes to the client; false means the client's socket buffer is full. */
  sendToClient(buf: Buffer): boolean;
  /**
   * A ReadyForQuery, ParameterStatus, ErrorResponse, CopyInResponse or statement completion (CommandComplete,
   * EmptyQueryResponse, PortalSuspended) from the server, for the session to account and forward.
   */
  onServerControl(code: number, buf: Buffer, start: number, end: number): void;
  /** The server failed underneath the client (died, or an injected statement failed). */
  onServerLost(err: ProxyError): void;
  /** The reset and pin sent ahead of the client's first statement (see pinAfterReset) succeeded. */
  onPinConfirmed(): void;
  /** That reset failed, so PostgreSQL skipped the client's statement: the server is gone, the statement never ran. */
  onHandOverFailed(): void;
  /** A ParseComplete/CloseComplete: 0 forward it, 1 swallow it, 2 send ParseComplete instead (see frontend/prepared). */
  onCompletion(isParse: boolean): number;
  /** The server's socket can take more data again. */
  resumeFromServer(): void;
  /** The client's socket is full: stop reading from the server until it drains. */
  readonly clientSocket: net.Socket;
}

/** Pool-side hooks a server reports to. */
export interface ServerOwner {
  onResetDone(server: ServerConn): void;
  onClosed(server: ServerConn, reason: string): void;
}

export interface InjectedReplies {
  /** ReadyForQuery frames still to swallow. */
  pending: number;
  /** First error seen among the injected statements. */
  error: string | null;
}

/** A prepared statement the proxy made on a server, shared by the tenant's clients that parse the same text. */
export interface ServerStatement {
  /** Its name on the server (SERVER_STATEMENT_PREFIX + a number). */
  name: string;
  /** When it was prepared, on the proxy's statement clock: compared with when a client parsed its statement. */
  preparedAt: number;
  /** PostgreSQL said its cached plan must not change result type: the schema changed under it unseen. */
  stale: boolean;
}

let nextServerId = 1;

export class ServerConn {
  readonly id = nextServerId++;
  readonly pid: number;
  readonly secret: number;
  readonly createdAt = Date.now();
  lastUsedAt = Date.now();
  /** Lifetime after which the janitor retires this server; staggered per server so the pool does not reconnect at once. */
  readonly retireAt: number;
  state: ServerState = ServerState.Idle;
  /** Reported (GUC_REPORT) settings as the server last announced them. */
  readonly reported: Map<string, string>;
  /** Unreported settings the proxy SET since the last reset. */
  readonly applied = new Map<string, string>();
  client: ServerClient | null = null;
  /** Schema pinned for the current client, checked against PostgreSQL 18's search_path reports. */
  pinnedSchema: string | null = null;
  /**
   * Prepared statements the proxy created here: (tenant schema, schema generation, text, types) → statement; least
   * recently used first.
   */
  readonly statements = new Map<string, ServerStatement>();
  /** A client ran SQL-level PREPARE/DEALLOCATE here: the reset must deallocate everything. */
  sqlPrepared = false;
  /** Handed from one client straight to the next: the next pin must carry the reset (see pinAfterReset). */
  needsReset = false;
  /** When the current reset started (the janitor closes servers whose reset never ends). */
  resetStartedAt = 0;
  /** Cancel requests for this server still on their way to PostgreSQL: it must not serve anyone new meanwhile. */
  cancelsInFlight = 0;
  /** The reset's proof that only the proxy's own prepared statements remain: [foreign, ours], from its last row. */
  private statementCounts: [string, string] | null = null;
  /** The running reset ends with that proof (a DISCARD ALL needs none). */
  private resetProof = false;
  /** The reset finished but a cancel is still in flight: become idle once it lands. */
  private resetDone = false;
  /** A query the proxy runs on the pinned server for its client (see runQuery). */
  private proxyQuery: { onRow: (values: string[]) => void; onDone: (error: string | null) => void } | null = null;

  private readonly socket: net.Socket;
  private readonly framer = new Framer(1 << 30, true);
  private readonly injected: InjectedReplies = { pending: 0, error: null };
  private corked = false;
  private waitingForClientDrain = false;
  /**
   * Completions still owed by the unsynced run in front of the client's first statement (DISCARD ALL of a hand-over,
   * then the pin), counted once `injected.pending` ReadyForQuerys are in.
   */
  private pinCompletions = 0;
  /** That run is a hand-over's: its first completion is DISCARD ALL's, and the client awaits onPinConfirmed. */
  private handOver: 'discarding' | 'pinning' | null = null;
  /** When that DISCARD ALL went out; 0 once the pool has cancelled it for taking too long. */
  private discardSentAt = 0;

  constructor(
    connected: ConnectedServer,
    private readonly owner: ServerOwner,
    maxLifetimeMs: number,
  ) {
    this.socket = connected.socket;
    this.pid = connected.pid;
    this.secret = connected.secret;
    this.reported = connected.params;
    this.retireAt = this.createdAt + maxLifetimeMs * (0.85 + Math.random() * 0.15);
    this.socket.on('data', (chunk: Buffer) => this.onData(chunk));
    this.socket.on('error', (err) => this.close(`socket error: ${err.message}`));
    this.socket.on('close', () => this.close('server closed the connection'));
    this.socket.on('drain', () => this.client?.resumeFromServer());
  }

  /** Pins a client: `pin` (see planPin) goes out first, in the same write as the client's frames. */
  pin(client: ServerClient, pin: Buffer | null, completions: number): void {
    this.transition(ServerState.Active);
    this.client = client;
    this.lastUsedAt = Date.now();
    if (pin !== null) {
      this.pinCompletions = completions;
      this.send(pin);
    }
  }

  /** The pool hands this server, unreset, to a waiting client: that client's pin will carry the reset. */
  markHandedOver(): void {
    this.needsReset = true;
    this.pinnedSchema = null;
    this.proxyQuery = null;
    this.applied.clear();
  }

  /**
   * Pins a client on a handed-over server: PIPELINED_RESET and the pin go out in front of the client's first
   * statement (a single segment the caller sends next). The client hears onPinConfirmed once the reset and pin
   * succeeded, or onHandOverFailed when the reset failed and PostgreSQL skipped the client's statement.
   */
  pinAfterReset(client: ServerClient, reset: Buffer, pin: Buffer, completions: number): void {
    this.transition(ServerState.Active);
    this.client = client;
    this.lastUsedAt = Date.now();
    this.needsReset = false;
    this.pinCompletions = 1 + completions;
    this.handOver = 'discarding';
    this.discardSentAt = Date.now();
    this.send(reset);
    this.send(pin);
  }

  /**
   * Runs a query of the proxy's own on the pinned server between two of its client's transactions: rows go to onRow,
   * nothing reaches the client, onDone follows its ReadyForQuery. An error (e.g. the client's own statement_timeout
   * cancelling it) is passed on, not fatal: a single SELECT outside a transaction leaves the server as it was.
   */
  runQuery(frame: Buffer, onRow: (values: string[]) => void, onDone: (error: string | null) => void): void {
    this.injected.pending++;
    this.injected.error = null;
    this.proxyQuery = { onRow, onDone };
    this.send(frame);
  }

  /** Forwards client bytes; returns false when the server's socket buffer is full (caller pauses the client). */
  send(buf: Buffer): boolean {
    if (!this.corked) {
      this.corked = true;
      this.socket.cork();
      process.nextTick(uncorkServer, this);
    }
    return this.socket.write(buf);
  }

  /** Unpins without resetting: the client's session stays here for that client's next transaction. */
  park(): void {
    this.transition(ServerState.Parked);
    this.client = null;
    this.lastUsedAt = Date.now();
    this.waitingForClientDrain = false;
    this.socket.resume();
  }

  /** When a hand-over's DISCARD ALL still running went out (0: none, or already cancelled). */
  get discardingSince(): number {
    return this.handOver === 'discarding' ? this.discardSentAt : 0;
  }

  /** The pool is cancelling that DISCARD ALL: do not ask again. */
  discardCancelled(): void {
    this.discardSentAt = 0;
  }

  /** Unpins and cleans the session state before the pool may hand this server to anyone else. */
  reset(resetSql: Buffer, replies: number, proof: boolean): void {
    if (this.pinCompletions > 0) {
      // A pin still unanswered would swallow the reset into its run (skipped, should the pin fail): not worth it.
      this.close('released before its pin was answered');
      return;
    }
    this.needsReset = false;
    this.client = null;
    this.proxyQuery = null;
    this.pinnedSchema = null;
    this.applied.clear();
    this.transition(ServerState.Resetting);
    this.waitingForClientDrain = false;
    this.socket.resume();
    // += : a pin still in flight (client gone before its replies came) owes its own ReadyForQuery first.
    this.injected.pending += replies;
    this.resetStartedAt = Date.now();
    this.statementCounts = null;
    this.resetProof = proof;
    this.send(resetSql);
  }

  pauseReading(): void {
    this.socket.pause();
  }

  resumeReading(): void {
    this.socket.resume();
  }

  /** `err` is what the pinned client hears (by default: its server was lost). */
  close(reason: string, err = ProxyError.serverLost(reason)): void {
    if (this.state === ServerState.Closed) return;
    const client = this.client;
    this.state = ServerState.Closed;
    this.client = null;
    this.socket.destroy();
    client?.onServerLost(err);
    this.owner.onClosed(this, reason);
  }

  /** Graceful close for idle servers: Terminate, then the socket ends. */
  terminate(terminateFrame: Buffer, reason: string): void {
    if (this.state === ServerState.Closed) return;
    this.socket.end(terminateFrame);
    this.close(reason);
  }

  private onData(chunk: Buffer): void {
    const framer = this.framer;
    framer.push(chunk);
    let runBuf: Buffer | null = null;
    let runStart = 0;
    let runEnd = 0;
    try {
      while (framer.next()) {
        const code = framer.code;
        const client = this.client;
        if (this.injected.pending > 0 || this.pinCompletions > 0 || client === null) {
          if (runBuf !== null) {
            this.forward(runBuf, runStart, runEnd);
            runBuf = null;
          }
          this.onInjectedReply(code, framer.buffer, framer.start, framer.end);
          continue;
        }
        if (code === BackendCode.ParseComplete || code === BackendCode.CloseComplete) {
          const action = client.onCompletion(code === BackendCode.ParseComplete);
          if (action !== 0) {
            if (runBuf !== null) {
              this.forward(runBuf, runStart, runEnd);
              runBuf = null;
            }
            if (action === 2) client.sendToClient(PARSE_COMPLETE);
            continue;
          }
        } else if (
          code === BackendCode.ReadyForQuery ||
          code === BackendCode.ParameterStatus ||
          code === BackendCode.ErrorResponse ||
          code === BackendCode.CopyInResponse ||
          code === BackendCode.CommandComplete ||
          code === BackendCode.EmptyQueryResponse ||
          code === BackendCode.PortalSuspended
        ) {
          if (runBuf !== null) {
            this.forward(runBuf, runStart, runEnd);
            runBuf = null;
          }
          if (code === BackendCode.ParameterStatus) this.recordParameter(framer.buffer, framer.start, framer.end);
          client.onServerControl(code, framer.buffer, framer.start, framer.end);
          continue;
        }
        // Coalesce contiguous pass-through frames of one chunk into a single write.
        if (runBuf === framer.buffer && runEnd === framer.start) {
          runEnd = framer.end;
        } else {
          if (runBuf !== null) this.forward(runBuf, runStart, runEnd);
          runBuf = framer.buffer;
          runStart = framer.start;
          runEnd = framer.end;
        }
      }
      if (runBuf !== null) this.forward(runBuf, runStart, runEnd);
    } catch (err) {
      this.close(`bad message from server: ${(err as Error).message}`);
    }
  }

  private forward(buf: Buffer, start: number, end: number): void {
    const client = this.client;
    if (client === null) return;
    if (!client.sendToClient(buf.subarray(start, end)) && !this.waitingForClientDrain) {
      // The client cannot keep up: stop reading from the server until the client drains.
      this.waitingForClientDrain = true;
      this.socket.pause();
      client.clientSocket.once('drain', () => {
        // Only for the client that filled up: by now the server may serve someone else, with its own backpressure.
        if (this.client !== client) return;
        this.waitingForClientDrain = false;
        this.socket.resume();
      });
    }
  }

  /** Replies to statements the proxy injected (pin, reset) never reach a client. */
  private onInjectedReply(code: number, buf: Buffer, start: number, end: number): void {
    switch (code) {
      case BackendCode.ParameterStatus:
        this.recordParameter(buf, start, end);
        return;
      case BackendCode.ErrorResponse: {
        const fields = readErrorFields(buf, start, end);
        if (this.injected.pending > 0) {
          this.injected.error ??= `${fields.code} ${fields.message}`;
        } else if (this.pinCompletions > 0) {
          this.onUnsyncedRunFailed(fields.code, fields.message);
        } else {
          // Outside any statement: the server is going away (e.g. terminated while idle).
          this.close(`server error while idle: ${fields.code} ${fields.message}`);
        }
        return;
      }
      case BackendCode.ReadyForQuery: {
        if (this.injected.pending === 0) {
          this.close('unexpected ReadyForQuery');
          return;
        }
        this.injected.pending--;
        if (this.injected.pending > 0) return;
        const status = buf[start + 5];
        if (this.proxyQuery !== null) {
          const done = this.proxyQuery.onDone;
          this.proxyQuery = null;
          done(this.injected.error);
        } else if (this.injected.error !== null) {
          this.close(`injected statement failed: ${this.injected.error}`);
        } else if (this.state === ServerState.Resetting) {
          const counts = this.statementCounts;
          if (status !== TxStatus.Idle) this.close('reset left a transaction open');
          else if (
            this.resetProof &&
            (counts === null || counts[0] !== '0' || Number(counts[1]) !== this.statements.size)
          ) {
            this.close('reset found prepared statements the proxy did not make');
          } else {
            this.resetDone = true;
            this.finishReset();
          }
        }
        return;
      }
      case BackendCode.DataRow:
        if (this.state === ServerState.Resetting) {
          const values = columns(buf, start, end);
          this.statementCounts =
            values !== null && values.length >= 2 ? [values[values.length - 2]!, values[values.length - 1]!] : null;
        } else if (this.proxyQuery !== null) {
          const values = columns(buf, start, end);
          if (values !== null) this.proxyQuery.onRow(values);
        }
        return;
      case BackendCode.CommandComplete:
      case BackendCode.CloseComplete:
        if (this.injected.pending === 0 && this.pinCompletions > 0) this.onUnsyncedCompletion();
        return;
      case BackendCode.NoticeResponse:
      case BackendCode.EmptyQueryResponse:
      case BackendCode.NotificationResponse:
      case BackendCode.RowDescription:
        return;
      default:
        if (this.injected.pending === 0 && this.pinCompletions === 0)
          this.close(`unexpected message ${code} while idle`);
    }
  }

  /** A completion of the run in front of the client's statement: DISCARD ALL's (hand-over), the pin's, its Closes'. */
  private onUnsyncedCompletion(): void {
    if (this.handOver === 'discarding') this.handOver = 'pinning';
    if (--this.pinCompletions > 0) return;
    const handOver = this.handOver;
    this.handOver = null;
    if (handOver !== null) this.client?.onPinConfirmed();
  }

  /**
   * A statement of that run failed, so PostgreSQL now skips everything up to a Sync, the client's statement included:
   * it never runs. A failed reset sends the client's statement to another server; a failed pin (its tenant role
   * dropped, a setting that no longer applies) would fail again anywhere, so the client hears PostgreSQL's error.
   */
  private onUnsyncedRunFailed(code: string, message: string): void {
    const client = this.client;
    const discarding = this.handOver === 'discarding';
    this.pinCompletions = 0;
    this.handOver = null;
    if (discarding) {
      // Detached first: the client learns its statement never ran, not that its server was lost.
      this.client = null;
      this.close(`pipelined reset failed: ${code} ${message}`);
      client?.onHandOverFailed();
      return;
    }
    this.close(
      `pin failed: ${code} ${message}`,
      new ProxyError(code, `could not set up the tenant's session: ${message}`, 'FATAL'),
    );
  }

  /** A cancel for this server was sent (or failed): it may serve others again once none are in flight. */
  cancelSettled(): void {
    this.cancelsInFlight--;
    this.finishReset();
  }

  /**
   * Idle only when the reset is done and no cancel is in flight: PostgreSQL signals the backend before it closes the
   * cancel connection, so the signal lands on the reset (failing it: the server is closed) or on an idle backend
   * (ignored) — never on the next client's statement.
   */
  private finishReset(): void {
    if (!this.resetDone || this.cancelsInFlight > 0 || this.state !== ServerState.Resetting) return;
    this.resetDone = false;
    this.transition(ServerState.Idle);
    this.owner.onResetDone(this);
  }

  private recordParameter(buf: Buffer, start: number, end: number): void {
    const [name, value] = readParameterStatus(buf, start, end);
    this.reported.set(name, value);
  }

  private transition(next: ServerState): void {
    if (!EDGES[this.state].includes(next)) {
      throw new Error(`server ${this.id}: illegal transition ${this.state} → ${next}`);
    }
    this.state = next;
  }

  /** @internal */
  uncork(): void {
    this.corked = false;
    this.socket.uncork();
  }
}

/** The text of a DataRow's columns (NULL as ''), or null when the row is malformed. */
function columns(buf: Buffer, start: number, end: number): string[] | null {
  const count = buf.readInt16BE(start + 5);
  const values: string[] = [];
  let at = start + 7;
  for (let i = 0; i < count; i++) {
    if (at + 4 > end) return null;
    const len = buf.readInt32BE(at);
    at += 4;
    if (len > 0 && at + len > end) return null;
    values.push(len < 0 ? '' : buf.toString('utf8', at, at + len));
    if (len > 0) at += len;
  }
  return values;
}

function uncorkServer(server: ServerConn): void {
  server.uncork();
}
