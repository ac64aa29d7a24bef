// One client's channels: what it listens to, the LISTEN/UNLISTEN it sent whose transaction has not ended, and the
// notifications waiting for the next point the protocol allows them (between transactions).
import type { Logger } from 'pino';
import type { ChannelAction } from '../guard/analysis.js';
import type { StatementAnalysis } from '../guard/sql-guard.js';
import { TxStatus } from '../protocol/codes.js';
import { ProxyError } from '../protocol/errors.js';
import { encodeCommandComplete } from '../protocol/messages.js';
import { READY_FOR_QUERY_IDLE } from '../protocol/static.js';
import type { ChannelHub, ChannelSubscriber } from './hub.js';
import { channelPrefix, encodeNotification } from './names.js';

/** What the channels need of their client session. */
export interface ChannelClient {
  /** Writes to the client's socket. */
  write(buf: Buffer): void;
  /** Inside a transaction or a statement: a notification must wait for its end. */
  readonly busy: boolean;
  readonly log: Logger;
}

interface Pending {
  action: ChannelAction;
  /** The client's segment it went out in (see ReplyLedger.sent), and its statement's place there (-1: an Execute). */
  segment: number;
  index: number;
  /** Its transaction failed or rolled back: it never takes effect. */
  doomed: boolean;
}

/** Notifications held for a busy client past this are dropped (with a warning): PostgreSQL's own queue is bounded. */
const MAX_HELD = 100_000;
const LISTEN_COMPLETE = encodeCommandComplete('LISTEN');
const UNLISTEN_COMPLETE = encodeCommandComplete('UNLISTEN');

/**
 * LISTEN and UNLISTEN take effect as in PostgreSQL: at once outside a transaction, at commit inside one, never after
 * a rollback or an error that aborts it. Those sent to a server (inside a transaction or a pipeline) are pending from
 * the moment they go out until the ReadyForQuery that ends their transaction; the hub starts listening at once, so
 * nothing committed after the client's COMMIT is missed. The proxy's own notion of which client statement is which
 * (a named statement, its portals) is mirrored here only for statements that are a LISTEN or UNLISTEN.
 */
export class ClientChannels implements ChannelSubscriber {
  private readonly prefix: string;
  /** The tenant's channel names this client hears. */
  private readonly listening = new Set<string>();
  private pending: Pending[] = [];
  /** Named (and the unnamed) statements and portals that are LISTEN/UNLISTEN. */
  private readonly statements = new Map<string, readonly ChannelAction[]>();
  private readonly portals = new Map<string, readonly ChannelAction[]>();
  /** Completions seen in segment `countedSegment`, for a ROLLBACK among them. */
  private countedSegment = -1;
  private completions = 0;
  private held: Buffer[] = [];
  private closed = false;

  constructor(
    private hub: ChannelHub,
    schema: string,
    private readonly client: ChannelClient,
  ) {
    this.prefix = channelPrefix(schema);
  }

  /** Some LISTEN/UNLISTEN awaits the end of its transaction: replies must be shown to completed/failed/ready. */
  get awaiting(): boolean {
    return this.pending.length > 0;
  }

  /** Some client statement or portal is a LISTEN/UNLISTEN: Parse, Bind and Execute must be shown to this. */
  get mirroring(): boolean {
    return this.statements.size > 0 || this.portals.size > 0;
  }

  // ── Requests ──────────────────────────────────────────────────────────────

  query(analysis: StatementAnalysis | null | undefined, segment: number): void {
    const actions = analysis?.channels?.actions;
    if (actions !== undefined) for (const action of actions) this.sent(action, segment, action.index);
  }

  parsed(name: string, analysis: StatementAnalysis | null | undefined): void {
    const actions = analysis?.channels?.actions;
    if (actions !== undefined) this.statements.set(name, actions);
    else this.statements.delete(name);
  }

  bound(portal: string, statement: string): void {
    const actions = this.statements.get(statement);
    if (actions !== undefined) this.portals.set(portal, actions);
    else this.portals.delete(portal);
  }

  closedStatement(kind: 'S' | 'P', name: string): void {
    (kind === 'S' ? this.statements : this.portals).delete(name);
  }

  executed(portal: string, segment: number): void {
    const actions = this.portals.get(portal);
    if (actions !== undefined) for (const action of actions) this.sent(action, segment, -1);
  }

  private sent(action: ChannelAction, segment: number, index: number): void {
    this.pending.push({ action, segment, index, doomed: false });
    // Listening starts now, delivery at commit: what is committed after the client's COMMIT is never missed.
    if (action.listen && !this.listening.has(action.channel!)) this.subscribe(action.channel!);
  }

  // ── Replies (while something is pending) ──────────────────────────────────

  /** A CommandComplete (tag) or other completion (null) of head segment `segment`. */
  completed(tag: string | null, segment: number): void {
    if (segment !== this.countedSegment) {
      this.countedSegment = segment;
      this.completions = 0;
    }
    // COMMIT of a failed transaction, ROLLBACK, ABORT: all answer ROLLBACK.
    if (tag === 'ROLLBACK')
      this.doom((p) => p.segment < segment || (p.segment === segment && p.index < this.completions));
    this.completions++;
  }

  /** An error in head segment `segment`: its transaction (implicit or not) will not commit what came before. */
  failed(segment: number): void {
    this.doom((p) => p.segment <= segment);
  }

  /** The server is gone, and with it every open transaction. */
  serverLost(): void {
    this.doom(() => true);
    this.settle(Number.POSITIVE_INFINITY);
  }

  /** ReadyForQuery: segments before `done` are answered; at `I` their transaction is over. */
  ready(done: number, status: number): void {
    if (status === TxStatus.Failed) this.doom((p) => p.segment < done);
    if (status === TxStatus.Idle) this.settle(done);
  }

  private doom(which: (p: Pending) => boolean): void {
    for (const p of this.pending) if (which(p)) p.doomed = true;
  }

  private settle(done: number): void {
    const over = this.pending.filter((p) => p.segment < done);
    if (over.length === 0) return;
    this.pending = this.pending.filter((p) => p.segment >= done);
    const touched = new Set(this.listening);
    for (const p of over) if (!p.doomed) this.apply(p.action);
    for (const p of over) if (p.action.channel !== null) touched.add(p.action.channel);
    for (const channel of touched) this.reconcile(channel).catch(() => undefined);
  }

  // ── Outside a transaction: answered by the proxy ──────────────────────────

  /**
   * A Query of nothing but LISTEN/UNLISTEN between transactions: applied now and answered once the hub listens (so a
   * NOTIFY the client sends next is heard), as CommandCompletes and ReadyForQuery.
   */
  async answer(actions: readonly ChannelAction[]): Promise<Buffer> {
    const before = new Set(this.listening);
    const replies: Buffer[] = [];
    for (const action of actions) {
      this.apply(action);
      replies.push(action.listen ? LISTEN_COMPLETE : UNLISTEN_COMPLETE);
    }
    const touched = new Set([...before, ...this.listening]);
    try {
      await Promise.all([...touched].map((channel) => this.reconcile(channel)));
    } catch (err) {
      this.client.log.warn({ err: (err as Error).message }, 'LISTEN failed on the channel listening connection');
      for (const channel of this.listening) if (!before.has(channel)) this.listening.delete(channel);
      for (const channel of touched) void this.reconcile(channel).catch(() => undefined);
      const error = ProxyError.upstreamUnavailable(
        `LISTEN needs the proxy's channel listening connection (${(err as Error).message})`,
      );
      return Buffer.concat([error.encode(), READY_FOR_QUERY_IDLE, ...this.takeHeld()]);
    }
    replies.push(READY_FOR_QUERY_IDLE, ...this.takeHeld());
    return Buffer.concat(replies);
  }

  private apply(action: ChannelAction): void {
    if (action.channel === null) this.listening.clear();
    else if (action.listen) this.listening.add(action.channel);
    else this.listening.delete(action.channel);
  }

  /** The hub hears `channel` for this client exactly when it listens or a LISTEN of it is pending. */
  private reconcile(channel: string): Promise<void> {
    const wanted =
      !this.closed &&
      (this.listening.has(channel) || this.pending.some((p) => p.action.listen && p.action.channel === channel));
    if (wanted) return this.hub.subscribe(this.prefix + channel, this);
    this.hub.unsubscribe(this.prefix + channel, this);
    return Promise.resolve();
  }

  private subscribe(channel: string): void {
    this.hub.subscribe(this.prefix + channel, this).catch((err: unknown) => {
      this.client.log.warn({ err: (err as Error).message }, 'LISTEN failed on the channel listening connection');
    });
  }

  // ── Notifications ─────────────────────────────────────────────────────────

  notify(serverChannel: string, pid: number, payload: string): void {
    if (this.closed || !serverChannel.startsWith(this.prefix)) return;
    const channel = serverChannel.slice(this.prefix.length);
    if (!this.listening.has(channel)) return;
    const message = encodeNotification(pid, channel, payload);
    if (this.held.length === 0 && !this.client.busy) {
      this.client.write(message);
      return;
    }
    if (this.held.length >= MAX_HELD) {
      this.held.shift();
      this.client.log.warn('notifications held for a client in a long transaction overflowed; the oldest is dropped');
    }
    this.held.push(message);
  }

  private takeHeld(): Buffer[] {
    const held = this.held;
    this.held = [];
    return held;
  }

  /** Between transactions: what arrived meanwhile goes out, in order. */
  flush(): void {
    if (this.held.length === 0 || this.client.busy || this.closed) return;
    const held = this.held;
    this.held = [];
    this.client.write(held.length === 1 ? held[0]! : Buffer.concat(held));
  }

  /**
   * Its tenant's route moved to another upstream: the tenant's NOTIFYs run there from its next transaction, so its
   * channels are heard on that upstream's listening connection from now on.
   */
  moveTo(hub: ChannelHub): void {
    if (hub === this.hub || this.closed) return;
    const channels = this.heard();
    for (const channel of channels) this.hub.unsubscribe(this.prefix + channel, this);
    this.hub = hub;
    for (const channel of channels) this.subscribe(channel);
  }

  /** The client left: it hears nothing more, and the hub stops listening on what nobody else needs. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    const channels = this.heard();
    this.listening.clear();
    this.pending = [];
    this.held = [];
    for (const channel of channels) this.hub.unsubscribe(this.prefix + channel, this);
  }

  /** The channels the hub hears for this client: those it listens on, and those of LISTENs pending. */
  private heard(): string[] {
    const channels = new Set(this.listening);
    for (const p of this.pending) if (p.action.listen && p.action.channel !== null) channels.add(p.action.channel);
    return [...channels];
  }
}
