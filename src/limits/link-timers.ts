// The proxy's own statement and idle-in-transaction timeouts for one linked client: one timer, re-armed lazily.
import type { TenantShare } from './share.js';

const NONE = 0;
const STATEMENT = 1;
const IDLE_IN_TRANSACTION = 2;
type Mode = typeof NONE | typeof STATEMENT | typeof IDLE_IN_TRANSACTION;

export interface TimeoutHost {
  /** A statement of the client's has run past limits.statementTimeoutMs. */
  onStatementTimeout(): void;
  /** The client has sat inside a transaction past limits.idleInTransactionTimeoutMs. */
  onIdleInTransactionTimeout(): void;
}

/**
 * Enforced by the proxy, not by settings the tenant can change (SET statement_timeout, a startup parameter, a
 * function's SET clause). A clock per client, not a timer per message: starting a statement only notes the time;
 * the one armed timer, when it fires early, re-arms itself for what is left. With no timeouts configured each call
 * costs two property reads.
 */
export class LinkTimers {
  private mode: Mode = NONE;
  private since = 0;
  private timer: NodeJS.Timeout | null = null;
  /** When the armed timer fires. */
  private due = 0;
  /** A cancel the proxy sent for a timed-out statement, until the next ReadyForQuery: its 57014 is reworded. */
  cancelledByTimeout = false;
  /** That cancel is still on its way to PostgreSQL: nothing more of the client's goes to the server meanwhile. */
  holding = false;

  constructor(
    private readonly share: TenantShare,
    private readonly host: TimeoutHost,
  ) {}

  /** The client's requests went to the server: a statement runs (the clock starts unless one already does). */
  working(): void {
    if (this.mode === STATEMENT) return;
    const limit = this.share.limits.statementTimeoutMs;
    if (limit === 0) {
      this.mode = NONE;
      return;
    }
    this.start(STATEMENT, limit);
  }

  /**
   * A ReadyForQuery: with `owed` more pipelined segments the next one starts running now; otherwise the client is
   * idle, inside a transaction or not.
   */
  ready(owed: number, inTransaction: boolean): void {
    this.cancelledByTimeout = false;
    const limits = this.share.limits;
    // The next pipelined segment starts a transaction of its own: it counts against the rate budget too.
    if (owed > 0 && !inTransaction && limits.transactionsPerSecond > 0) this.share.charge();
    if (owed > 0 && limits.statementTimeoutMs > 0) this.start(STATEMENT, limits.statementTimeoutMs);
    else if (owed === 0 && inTransaction && limits.idleInTransactionTimeoutMs > 0)
      this.start(IDLE_IN_TRANSACTION, limits.idleInTransactionTimeoutMs);
    else this.mode = NONE;
  }

  /** The link ended: nothing to time. */
  stop(): void {
    this.mode = NONE;
    if (this.timer !== null) clearTimeout(this.timer);
    this.timer = null;
  }

  private start(mode: Mode, limit: number): void {
    this.mode = mode;
    const now = performance.now();
    this.since = now;
    const due = now + limit;
    // An earlier timer re-arms itself when it fires; only a later one must be moved forward.
    if (this.timer !== null) {
      if (this.due <= due) return;
      clearTimeout(this.timer);
    }
    this.arm(due, now);
  }

  private arm(due: number, now: number): void {
    this.due = due;
    this.timer = setTimeout(this.fire, Math.max(1, Math.ceil(due - now)));
    this.timer.unref();
  }

  private readonly fire = (): void => {
    this.timer = null;
    const mode = this.mode;
    if (mode === NONE) return;
    const limits = this.share.limits;
    // Read again: the limit may have changed at run time (registry, SIGHUP) since the clock started.
    const limit = mode === STATEMENT ? limits.statementTimeoutMs : limits.idleInTransactionTimeoutMs;
    if (limit === 0) {
      this.mode = NONE;
      return;
    }
    const now = performance.now();
    const due = this.since + limit;
    if (now < due) {
      this.arm(due, now);
      return;
    }
    this.mode = NONE;
    if (mode === STATEMENT) this.host.onStatementTimeout();
    else this.host.onIdleInTransactionTimeout();
  };
}
