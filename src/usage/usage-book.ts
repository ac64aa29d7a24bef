// This process's usage per tenant, and the numbered batches it is sealed into for the registry.
import { randomUUID } from 'node:crypto';
import { TenantUsage, UNMETERED, type UsageDelta } from './tenant-usage.js';

const HOUR_MS = 3_600_000;

/** One flush: the registry applies it at most once per (instance, seq). */
export interface UsageBatch {
  instance: string;
  seq: number;
  /** The bucket, chosen when sealed, so a retry in a later hour still lands where it belongs. */
  hour: Date;
  /** The window the deltas were counted in (peaks are kept with it). */
  since: Date;
  until: Date;
  /** Ordered by tenant id. */
  deltas: UsageDelta[];
}

export class UsageBook {
  /** Names this process in the registry's applied flushes; a restarted process is a new instance. */
  readonly instance = randomUUID();
  private readonly tenants = new Map<string, TenantUsage>();
  private seq = 0;
  private windowStart = Date.now();

  constructor(readonly enabled: boolean) {}

  /** A client of the tenant logged in: its session counts into what this returns until it closes. */
  login(id: string): TenantUsage {
    if (!this.enabled) return UNMETERED;
    let usage = this.tenants.get(id);
    if (usage === undefined) {
      usage = new TenantUsage(id);
      this.tenants.set(id, usage);
    }
    usage.connected();
    return usage;
  }

  /** Moves everything counted so far into the next numbered batch; null when nothing was counted. */
  seal(nowMs = Date.now(), monotonicNow = performance.now()): UsageBatch | null {
    const deltas: UsageDelta[] = [];
    for (const [id, usage] of this.tenants) {
      const delta = usage.seal(monotonicNow);
      if (delta !== null) deltas.push(delta);
      // Tenants with no client left are forgotten, so the map holds only the tenants this process serves.
      else if (usage.idle) this.tenants.delete(id);
    }
    const since = new Date(this.windowStart);
    this.windowStart = nowMs;
    if (deltas.length === 0) return null;
    deltas.sort((a, b) => (a.tenant < b.tenant ? -1 : a.tenant > b.tenant ? 1 : 0));
    return {
      instance: this.instance,
      seq: ++this.seq,
      hour: new Date(Math.floor(nowMs / HOUR_MS) * HOUR_MS),
      since,
      until: new Date(nowMs),
      deltas,
    };
  }
}
