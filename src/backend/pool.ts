// The backend pool: idle list, active set, per-tenant waiter queues served round-robin, size limit; checkout and release.
import type { Logger } from 'pino';
import type { Config } from '../config/schema.js';
import { LimitErrors } from '../limits/errors.js';
import { FairQueue } from '../limits/fair-queue.js';
import { NO_METER, TenantShare, type QueuedWaiter } from '../limits/share.js';
import { ProxyError } from '../protocol/errors.js';
import { TERMINATE } from '../protocol/static.js';
import { connectServer, type UpstreamTarget } from './connect.js';
import { canHandOver, planHandOver, planReset } from './pin.js';
import { SchemaGenerations } from './schema-generations.js';
import { ServerConn, ServerState, type ServerOwner } from './server-conn.js';

/** The reset carries its own lock and statement timeouts; this backstop closes a server whose reset still hangs. */
const RESET_DEADLINE_MS = 15_000;
/** A hand-over's DISCARD ALL running longer than this (waiting for a lock) is cancelled, see PIPELINED_RESET. */
const HAND_OVER_DEADLINE_MS = 5_000;
/** A parked server waits this long for its client's next transaction before it is reset for everyone. */
const PARK_MS = 1000;

export interface PoolStats {
  idle: number;
  parked: number;
  active: number;
  resetting: number;
  connecting: number;
  waiting: number;
}

/** What the pool reports for metrics. */
export interface PoolEvents {
  backendConnected(ok: boolean): void;
  backendReset(): void;
  waitedForBackend(seconds: number): void;
}

const NO_EVENTS: PoolEvents = { backendConnected() {}, backendReset() {}, waitedForBackend() {} };

export interface PoolOptions {
  size: number;
  minIdle: number;
  queueTimeoutMs: number;
  idleTimeoutMs: number;
  maxLifetimeMs: number;
}

export function poolOptions(config: Config, upstream: Config['upstream'] = config.upstream): PoolOptions {
  const u = upstream;
  return {
    size: u.poolSize,
    minIdle: Math.min(u.minIdle, u.poolSize),
    queueTimeoutMs: u.queueTimeoutMs,
    idleTimeoutMs: u.idleTimeoutMs,
    maxLifetimeMs: u.maxLifetimeMs,
  };
}

export class Pool implements ServerOwner {
  /** Most recently used last, so checkout takes the warmest server. */
  private readonly idle: ServerConn[] = [];
  /** Servers pinned to a client or being reset: everything open that is neither idle nor parked. */
  private readonly busy = new Set<ServerConn>();
  /** Unpinned servers still holding one client's session, oldest first, with the client they belong to. */
  private readonly parked = new Map<ServerConn, object>();
  /** Waiters in their tenants' queues, served round-robin by tenant. */
  private readonly queue = new FairQueue();
  /** fillWaiters is running (resets it starts call back into it). */
  private filling = false;
  /** The share of the pool's own checkouts (parameterDefaults). */
  private readonly system = new TenantShare('', NO_METER);
  private connecting = 0;
  private closed = false;
  /** ParameterStatus values of the first server, reported to clients at login. */
  private defaults: Map<string, string> | null = null;
  /** Per-tenant DDL counters for the prepared statements cached on this pool's servers. */
  readonly generations = new SchemaGenerations();

  constructor(
    private readonly target: UpstreamTarget,
    private options: PoolOptions,
    private readonly log: Logger,
    private readonly events: PoolEvents = NO_EVENTS,
  ) {}

  stats(): PoolStats {
    let resetting = 0;
    for (const s of this.busy) if (s.state === ServerState.Resetting) resetting++;
    return {
      idle: this.idle.length,
      parked: this.parked.size,
      active: this.busy.size - resetting,
      resetting,
      connecting: this.connecting,
      waiting: this.queue.size,
    };
  }

  get upstream(): UpstreamTarget {
    return this.target;
  }

  /** Applies new sizes and timeouts (SIGHUP); excess idle servers are closed by the janitor. */
  reconfigure(options: PoolOptions): void {
    this.options = options;
    this.fillWaiters();
  }

  /** A tenant's limits changed: waiters its old maxServers held back may be served now. */
  limitsChanged(): void {
    this.fillWaiters();
  }

  /** The upstream's ParameterStatus set, connecting one server if none has been seen yet. */
  async parameterDefaults(): Promise<ReadonlyMap<string, string>> {
    if (this.defaults !== null) return this.defaults;
    const server = await this.acquire(undefined, this.system);
    this.giveBack(server);
    return this.defaults ?? new Map();
  }

  /**
   * A client's transaction ended: its server keeps the client's session (search_path, settings, statements) for the
   * client's next transaction, which then needs no pin and the server no reset. Anyone else gets it only after a
   * reset: at once when clients are waiting, else after PARK_MS or when its client leaves.
   */
  park(server: ServerConn, owner: object): void {
    this.busy.delete(server);
    server.park();
    // Waiters only a tenant at its maxServers has gain nothing from this server unless that tenant is its holder.
    const wanted = this.queue.hasEligible() || this.queue.waitingOf(server.holder) > 0;
    if (this.closed || wanted) {
      if (!this.handOver(server)) this.resetParked(server);
      return;
    }
    this.parked.set(server, owner);
  }

  /**
   * Gives a server straight to the first waiter, unreset, when the waiter can send the reset in the same write as
   * its first statement (see ServerConn.pinAfterReset): one round trip, and one wakeup of the backend, less per
   * hand-over than resetting first.
   */
  private handOver(server: ServerConn): boolean {
    // Its last tenant's count drops first: that tenant's own waiter may be the one whose turn it is.
    this.unassign(server);
    const waiter = this.queue.next();
    if (this.closed || waiter === undefined || !canHandOver(server) || waiter.acceptsUnreset?.() !== true) return false;
    planHandOver(server);
    server.markHandedOver();
    this.events.backendReset();
    this.serve(waiter, server);
    return true;
  }

  /**
   * The parked server back for the client that left it, or false when it was reset or lost meanwhile, when a cancel
   * for it is still in flight (it could hit the next statement), or when other transactions wait: then this one
   * queues like theirs and the parked server goes to whoever's turn it is, so parking cannot jump the queue.
   */
  reclaim(server: ServerConn, owner: object): boolean {
    if (this.parked.get(server) !== owner || server.cancelling || this.queue.hasEligible()) return false;
    // A throttled tenant's next transaction waits for its token like any other (and loses its parked server).
    const share = server.holder;
    if (share !== null && share.limits.transactionsPerSecond > 0 && !share.tryToken()) return false;
    this.parked.delete(server);
    this.busy.add(server);
    return true;
  }

  /** The client a server is parked for has gone: reset it for everyone. */
  release(server: ServerConn, owner: object): void {
    if (this.parked.get(server) !== owner) return;
    this.parked.delete(server);
    this.resetParked(server);
  }

  private resetParked(server: ServerConn): void {
    this.resetServer(server, false);
  }

  /** Clears a server of its last client's session; onResetDone makes it idle again. */
  resetServer(server: ServerConn, rollback: boolean): void {
    // Counted as busy before its tenant's waiters are looked after, or they could open a server past the size.
    this.busy.add(server);
    const wake = this.unassign(server);
    this.events.backendReset();
    server.reset(planReset(server, rollback));
    if (wake) this.fillWaiters();
  }

  /**
   * The hot path: a clean idle server for the share's tenant right now, or null. Never jumps ahead of a waiter that
   * could be served, past the tenant's maxServers, or past its rate budget.
   */
  tryAcquire(share: TenantShare): ServerConn | null {
    if (this.closed || share.atServerLimit || this.queue.hasEligible() || this.idle.length === 0) return null;
    if (share.limits.transactionsPerSecond > 0 && !share.tryToken()) return null;
    return this.checkOut(share);
  }

  /**
   * Checks out a clean idle server, connecting a new one while under the size limit; else waits for the tenant's rate
   * budget and then in its tenant's queue (ERROR 53400 past the tenant's maxWaiting or its budget).
   */
  acquire(acceptsUnreset: (() => boolean) | undefined, share: TenantShare): Promise<ServerConn> {
    if (this.closed) return Promise.reject(ProxyError.shuttingDown());
    const server = this.tryAcquire(share);
    if (server !== null) return Promise.resolve(server);
    const since = performance.now();
    const wait = share.takeToken(this.options.queueTimeoutMs);
    if (wait instanceof ProxyError) return Promise.reject(wait);
    if (wait === 0) return this.queueFor(acceptsUnreset, share, since);
    share.meter.throttled();
    share.waiting++;
    return new Promise<void>((resolve) => setTimeout(resolve, wait).unref()).then(() => {
      share.waiting--;
      return this.closed ? Promise.reject(ProxyError.shuttingDown()) : this.queueFor(acceptsUnreset, share, since);
    });
  }

  private checkOut(share: TenantShare): ServerConn | null {
    const server = this.idle.pop();
    if (server === undefined) return null;
    this.busy.add(server);
    this.assign(server, share);
    return server;
  }

  /** A transaction with its rate token: an idle server, else its tenant's queue for what is left of queueTimeoutMs. */
  private queueFor(
    acceptsUnreset: (() => boolean) | undefined,
    share: TenantShare,
    since: number,
  ): Promise<ServerConn> {
    if (!share.atServerLimit && !this.queue.hasEligible()) {
      const server = this.checkOut(share);
      if (server !== null) {
        if (since !== 0) share.meter.waited((performance.now() - since) / 1000);
        return Promise.resolve(server);
      }
    }
    const refused = share.waitRefusal();
    if (refused !== null) return Promise.reject(refused);
    share.meter.queued();
    const ms = Math.max(1, this.options.queueTimeoutMs - Math.round(performance.now() - since));
    return new Promise<ServerConn>((resolve, reject) => {
      const waiter: QueuedWaiter = {
        share,
        acceptsUnreset,
        resolve: (server) => {
          const seconds = (performance.now() - since) / 1000;
          this.events.waitedForBackend(seconds);
          share.meter.waited(seconds);
          resolve(server);
        },
        reject,
        timer: setTimeout(() => {
          if (!this.queue.remove(waiter)) return;
          const total = this.options.queueTimeoutMs;
          if (share.atServerLimit) {
            share.meter.limitRefused('queue_timeout');
            reject(LimitErrors.serverLimitTimeout(share.tenantId, share.limits.maxServers, total));
          } else reject(ProxyError.poolTimeout(total));
        }, ms),
      };
      waiter.timer.unref();
      this.queue.push(waiter);
      this.fillWaiters();
    });
  }

  /** Returns a server that was checked out but never pinned (its client went away while waiting). */
  giveBack(server: ServerConn): void {
    if (server.needsReset && server.state === ServerState.Parked) {
      this.resetServer(server, false);
      return;
    }
    this.busy.delete(server);
    const wake = this.unassign(server);
    if (server.state === ServerState.Idle) this.makeIdle(server);
    if (wake) this.fillWaiters();
  }

  onResetDone(server: ServerConn): void {
    this.busy.delete(server);
    if (this.closed || Date.now() >= server.retireAt) {
      server.terminate(TERMINATE, this.closed ? 'pool closed' : 'max lifetime reached');
      return;
    }
    this.makeIdle(server);
  }

  onCancelFailed(_server: ServerConn, err: Error): void {
    this.log.warn({ err: err.message }, 'cancel request to upstream failed');
  }

  onClosed(server: ServerConn, reason: string): void {
    this.busy.delete(server);
    this.parked.delete(server);
    this.unassign(server);
    const at = this.idle.indexOf(server);
    if (at >= 0) this.idle.splice(at, 1);
    this.log.debug({ server: server.id, pid: server.pid, reason }, 'server closed');
    this.fillWaiters();
  }

  /** Janitor pass: idle timeout, max lifetime, min idle, and resets that never finish. */
  maintain(now = Date.now()): void {
    for (const server of this.busy) {
      if (server.state === ServerState.Resetting && now - server.resetStartedAt > RESET_DEADLINE_MS) {
        server.close('reset did not finish in time');
      }
      const discarding = server.discardingSince;
      if (discarding !== 0 && now - discarding > HAND_OVER_DEADLINE_MS) {
        this.log.warn(
          { server: server.id, pid: server.pid },
          'a reset in front of a waiting client is stuck; cancelling it',
        );
        server.cancelDiscard();
      }
    }
    for (const [server] of this.parked) {
      if (now - server.lastUsedAt > PARK_MS) {
        this.parked.delete(server);
        this.resetParked(server);
      }
    }
    for (let i = this.idle.length - 1; i >= 0; i--) {
      const server = this.idle[i]!;
      const overSize = this.total() > this.options.size;
      const stale = now - server.lastUsedAt > this.options.idleTimeoutMs && this.idle.length > this.options.minIdle;
      if (overSize || stale || now >= server.retireAt) {
        this.idle.splice(i, 1);
        server.terminate(TERMINATE, overSize ? 'pool shrunk' : stale ? 'idle timeout' : 'max lifetime reached');
      }
    }
    while (
      !this.closed &&
      this.idle.length + this.connecting < this.options.minIdle &&
      this.total() < this.options.size
    ) {
      this.connectOne();
    }
  }

  close(): void {
    this.closed = true;
    for (const waiter of this.queue.drain()) waiter.reject(ProxyError.shuttingDown());
    for (const server of this.idle.splice(0)) server.terminate(TERMINATE, 'pool closed');
    for (const [server] of this.parked) server.terminate(TERMINATE, 'pool closed');
    this.parked.clear();
  }

  /** Closes everything, busy servers included (used after the drain timeout). */
  destroy(): void {
    this.close();
    for (const server of [...this.busy]) server.close('pool destroyed');
  }

  private total(): number {
    return this.idle.length + this.parked.size + this.busy.size + this.connecting;
  }

  private makeIdle(server: ServerConn): void {
    const waiter = this.queue.next();
    if (waiter !== undefined) {
      this.serve(waiter, server);
      return;
    }
    server.markUsed();
    this.idle.push(server);
  }

  /**
   * Finds servers for waiters that could be served: parked ones are handed over or reset for them first (and for a
   * tenant waiting at its maxServers, its own parked ones whatever else waits, or it would wait for them to expire),
   * then new connections while there is room.
   */
  private fillWaiters(): void {
    if (this.filling) return;
    this.filling = true;
    try {
      // Idle servers and waiters that could take them meet when a tenant's count or limit changes.
      while (this.idle.length > 0) {
        const waiter = this.queue.next();
        if (waiter === undefined) break;
        this.serve(waiter, this.idle.pop()!);
      }
      let resetting = 0;
      for (const server of this.busy) if (server.state === ServerState.Resetting) resetting++;
      for (const [server] of this.parked) {
        const holder = server.holder;
        const ownTenantWaits = holder !== null && this.queue.waitingOf(holder) > 0 && holder.atServerLimit;
        if (!ownTenantWaits && this.queue.eligibleDemand() <= this.connecting + resetting) continue;
        this.parked.delete(server);
        if (this.handOver(server)) continue;
        this.resetParked(server);
        resetting++;
      }
      while (
        !this.closed &&
        this.queue.eligibleDemand() > this.connecting + resetting &&
        this.total() < this.options.size
      ) {
        this.connectOne();
      }
    } finally {
      this.filling = false;
    }
  }

  // ── Tenants: what each holds, and whose turn it is ──────────────────────────

  private assign(server: ServerConn, share: TenantShare): void {
    server.holder = share;
    share.held++;
  }

  /**
   * The server no longer counts against its tenant. True when that tenant has waiters its maxServers may have held
   * back: the caller runs fillWaiters once the server is on the list it belongs to.
   */
  private unassign(server: ServerConn): boolean {
    const share = server.holder;
    if (share === null) return false;
    server.holder = null;
    share.held--;
    return this.queue.waitingOf(share) > 0;
  }

  /** Gives `server` to `waiter`, the head of its tenant's queue. */
  private serve(waiter: QueuedWaiter, server: ServerConn): void {
    this.queue.take(waiter);
    this.busy.add(server);
    this.assign(server, waiter.share);
    waiter.resolve(server);
  }

  private connectOne(): void {
    this.connecting++;
    connectServer(this.target).then(
      (connected) => {
        this.connecting--;
        this.events.backendConnected(true);
        const server = new ServerConn(connected, this, this.target, this.options.maxLifetimeMs);
        this.defaults ??= new Map(connected.params);
        if (this.closed) {
          server.terminate(TERMINATE, 'pool closed');
          return;
        }
        this.log.debug({ server: server.id, pid: server.pid }, 'server connected');
        this.makeIdle(server);
      },
      (err: Error) => {
        this.connecting--;
        this.events.backendConnected(false);
        this.log.warn({ err: err.message }, 'upstream connection failed');
        // Fail one waiter per failed attempt so clients learn fast when the upstream is down.
        const waiter = this.queue.next();
        if (waiter !== undefined) {
          this.queue.remove(waiter);
          waiter.reject(ProxyError.upstreamUnavailable(err.message, this.target.name));
        }
      },
    );
  }
}
