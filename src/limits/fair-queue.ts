// Transactions waiting for a server, by tenant: each tenant's own FIFO queue, the tenants served round-robin.
import type { QueuedWaiter, TenantShare } from './share.js';

/**
 * A freed server goes to the next tenant in turn that is under its maxServers (first come first served within a
 * tenant), not to the oldest waiter overall: one tenant's burst cannot starve the others, and a tenant at its limit
 * is skipped rather than blocking everyone behind it.
 */
export class FairQueue {
  /** Tenants with transactions waiting, in the order they are served. */
  private readonly ring: TenantShare[] = [];
  /**
   * Each tenant's waiters in this pool. Kept here, not on the share: a tenant whose route moved has sessions waiting
   * in two pools at once, and each pool must serve only its own.
   */
  private readonly queues = new Map<TenantShare, QueuedWaiter[]>();
  /** The ring position served next. */
  private cursor = 0;
  /** Waiters of every tenant. */
  size = 0;

  /** The head of the next tenant's queue in round-robin order, skipping tenants at their maxServers. */
  next(): QueuedWaiter | undefined {
    const ring = this.ring;
    for (let i = 0; i < ring.length; i++) {
      const share = ring[(this.cursor + i) % ring.length]!;
      if (!share.atServerLimit) return this.queues.get(share)![0];
    }
    return undefined;
  }

  /** Whether some waiter could be served now. */
  hasEligible(): boolean {
    if (this.size === 0) return false;
    for (const share of this.ring) if (!share.atServerLimit) return true;
    return false;
  }

  /** How many transactions of the tenant wait in this pool. */
  waitingOf(share: TenantShare | null): number {
    return share === null ? 0 : (this.queues.get(share)?.length ?? 0);
  }

  /** Waiters that a server would let start now: each tenant's, up to what its maxServers leaves room for. */
  eligibleDemand(): number {
    if (this.size === 0) return 0;
    let demand = 0;
    for (const share of this.ring) {
      const max = share.limits.maxServers;
      const waiting = this.queues.get(share)!.length;
      demand += max === 0 ? waiting : Math.max(0, Math.min(waiting, max - share.held));
    }
    return demand;
  }

  push(waiter: QueuedWaiter): void {
    const share = waiter.share;
    const queue = this.queues.get(share);
    if (queue === undefined) {
      this.queues.set(share, [waiter]);
      this.ring.push(share);
    } else queue.push(waiter);
    share.waiting++;
    this.size++;
  }

  /** Takes a waiter out of its queue (timed out, failed); false when it was no longer there. */
  remove(waiter: QueuedWaiter): boolean {
    const share = waiter.share;
    const queue = this.queues.get(share);
    const at = queue?.indexOf(waiter) ?? -1;
    if (at < 0) return false;
    queue!.splice(at, 1);
    share.waiting--;
    this.size--;
    clearTimeout(waiter.timer);
    if (queue!.length === 0) this.unring(share);
    return true;
  }

  /** Takes a waiter being served (the head of its tenant's queue): the next turn is the following tenant's. */
  take(waiter: QueuedWaiter): void {
    this.cursor = this.ring.indexOf(waiter.share) + 1;
    this.remove(waiter);
    if (this.cursor >= this.ring.length) this.cursor = 0;
  }

  /** Empties every queue (the pool closes), returning the waiters. */
  drain(): QueuedWaiter[] {
    const all: QueuedWaiter[] = [];
    for (const share of this.ring.splice(0)) {
      const queue = this.queues.get(share)!;
      share.waiting -= queue.length;
      all.push(...queue);
    }
    this.queues.clear();
    this.size = 0;
    this.cursor = 0;
    for (const waiter of all) clearTimeout(waiter.timer);
    return all;
  }

  private unring(share: TenantShare): void {
    const at = this.ring.indexOf(share);
    if (at < 0) return;
    this.ring.splice(at, 1);
    this.queues.delete(share);
    if (at < this.cursor) this.cursor--;
    if (this.cursor >= this.ring.length) this.cursor = 0;
  }
}
