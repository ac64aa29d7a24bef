// One tenant's share of this proxy process: its limits, what it holds and waits for, its queue and rate budget.
import type { ServerConn } from '../backend/server-conn.js';
import type { TenantMeter } from '../metrics/metrics.js';
import { ProxyError } from '../protocol/errors.js';
import { NO_LIMITS, type Limits } from './limits.js';
import { LimitErrors } from './errors.js';

/** What a share counts into (its tenant's TenantMeter). */
export type ShareMeter = Pick<TenantMeter, 'label' | 'queued' | 'throttled' | 'limitRefused' | 'waited'>;

/** For the pool's own checkouts (no tenant). */
export const NO_METER: ShareMeter = {
  label: '',
  queued: () => undefined,
  throttled: () => undefined,
  limitRefused: () => undefined,
  waited: () => undefined,
};

/** A transaction waiting in a pool for a server, in its tenant's FIFO queue there (FairQueue). */
export interface QueuedWaiter {
  readonly share: TenantShare;
  resolve(server: ServerConn): void;
  /** Asked when a server could go to this waiter unreset, its reset riding with the waiter's first statement. */
  acceptsUnreset: (() => boolean) | undefined;
  reject(err: ProxyError): void;
  timer: NodeJS.Timeout;
}

/**
 * A tenant's counts and queue, shared by its sessions (each holds the object: no lookup per transaction). Counts are
 * kept whether or not limits are set, so a limit set at run time applies at once to what the tenant already holds.
 */
export class TenantShare {
  limits: Limits = NO_LIMITS;
  /** Client sessions logged in. */
  clients = 0;
  /** Servers pinned to its clients or parked for them (ServerConn.holder is this share). */
  held = 0;
  /** Transactions waiting: for a server (in `queue`) or for the rate budget. */
  waiting = 0;
  /** The rate budget: tokens left (negative: reserved by transactions waiting for them) as of refilledAt. */
  private tokens = 0;
  private refilledAt = 0;
  /** The tier and registry overrides its limits were computed from (kept to recompute on reload). */
  tier: string | null = null;
  overrides: Partial<Limits> | null = null;

  constructor(
    readonly tenantId: string,
    readonly meter: ShareMeter,
  ) {}

  setLimits(limits: Limits): void {
    const rate = limits.transactionsPerSecond;
    if (rate !== this.limits.transactionsPerSecond) {
      // A new budget starts full: a tenant whose limit was just raised is not made to wait out the old one's debt.
      this.tokens = rate;
      this.refilledAt = performance.now();
    }
    this.limits = limits;
  }

  /** Whether its servers are at limits.maxServers: its next transaction waits even with servers idle. */
  get atServerLimit(): boolean {
    const max = this.limits.maxServers;
    return max > 0 && this.held >= max;
  }

  /** The refusal for one more waiting transaction (limits.maxWaiting), or null. */
  waitRefusal(): ProxyError | null {
    const max = this.limits.maxWaiting;
    if (max === 0 || this.waiting < max) return null;
    this.meter.limitRefused('max_waiting');
    return LimitErrors.tooManyWaiting(this.tenantId, max);
  }

  /** Takes a token if one is there now (the tenant has a rate budget). */
  tryToken(): boolean {
    this.refill();
    if (this.tokens < 1) return false;
    this.tokens -= 1;
    return true;
  }

  private refill(): void {
    const rate = this.limits.transactionsPerSecond;
    const now = performance.now();
    this.tokens = Math.min(rate, this.tokens + ((now - this.refilledAt) * rate) / 1000);
    this.refilledAt = now;
  }

  /**
   * A transaction that could not be made to wait (pipelined behind another on the same server): its token is taken
   * anyway, as debt, so the tenant's next checkout waits for it instead.
   */
  charge(): void {
    if (this.limits.transactionsPerSecond === 0) return;
    this.refill();
    this.tokens -= 1;
  }

  /**
   * Takes one transaction's token: 0 when it may start now, else the milliseconds until its reserved token exists,
   * or the refusal when that is past `maxWaitMs` (upstream.queueTimeoutMs) or too many already wait.
   */
  takeToken(maxWaitMs: number): number | ProxyError {
    const rate = this.limits.transactionsPerSecond;
    if (rate === 0) return 0;
    this.refill();
    if (this.tokens >= 1) {
      this.tokens -= 1;
      return 0;
    }
    const refused = this.waitRefusal();
    if (refused !== null) return refused;
    const waitMs = Math.ceil(((1 - this.tokens) * 1000) / rate);
    if (waitMs > maxWaitMs) {
      this.meter.limitRefused('rate');
      return LimitErrors.overRate(this.tenantId, rate);
    }
    this.tokens -= 1;
    return waitMs;
  }
}
