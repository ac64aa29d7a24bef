// One tenant's usage in this process since the last flush: plain numbers the hot path adds to, taken out by a seal.

/** What one tenant used in one flush window, as the registry adds it. */
export interface UsageDelta {
  tenant: string;
  transactions: number;
  statements: number;
  serverMs: number;
  bytesIn: number;
  bytesOut: number;
  rowsReturned: number;
  rowsAffected: number;
  /** The most clients this process had connected for the tenant at once during the window. */
  peakClients: number;
}

/**
 * Sessions add to the fields directly (no call, no lookup); the object is looked up once per login. Server time is
 * the integral of the servers held over time, so a flush can count a transaction still running up to now without
 * any per-link bookkeeping.
 */
export class TenantUsage {
  transactions = 0;
  statements = 0;
  bytesIn = 0;
  bytesOut = 0;
  rowsReturned = 0;
  rowsAffected = 0;
  /** Clients connected now, and the most at once since the last seal. */
  clients = 0;
  peakClients = 0;
  /** Servers linked to the tenant's clients now. */
  private holding = 0;
  /** performance.now() when `holding` last changed or was settled. */
  private heldSince = 0;
  /** Server time not yet sealed, fractions of a millisecond included (a seal takes whole milliseconds only). */
  private serverMs = 0;

  constructor(readonly tenant: string) {}

  connected(): void {
    if (++this.clients > this.peakClients) this.peakClients = this.clients;
  }

  disconnected(): void {
    this.clients--;
  }

  serverHeld(now: number): void {
    this.settle(now);
    this.holding++;
  }

  serverFreed(now: number): void {
    this.settle(now);
    this.holding--;
  }

  private settle(now: number): void {
    if (this.holding > 0) this.serverMs += this.holding * (now - this.heldSince);
    this.heldSince = now;
  }

  /** Nothing counted, nobody connected, no server held: the process may forget the tenant. */
  get idle(): boolean {
    return this.clients === 0 && this.holding === 0 && this.peakClients === 0 && this.serverMs < 1;
  }

  /** Takes what was counted since the last seal (null if nothing); counting goes on from zero. */
  seal(now: number): UsageDelta | null {
    this.settle(now);
    const serverMs = Math.floor(this.serverMs);
    const delta: UsageDelta = {
      tenant: this.tenant,
      transactions: this.transactions,
      statements: this.statements,
      serverMs,
      bytesIn: this.bytesIn,
      bytesOut: this.bytesOut,
      rowsReturned: this.rowsReturned,
      rowsAffected: this.rowsAffected,
      peakClients: this.peakClients,
    };
    this.transactions = this.statements = this.bytesIn = this.bytesOut = 0;
    this.rowsReturned = this.rowsAffected = 0;
    this.serverMs -= serverMs;
    // The next window starts with whoever is still connected.
    this.peakClients = this.clients;
    const empty =
      delta.transactions === 0 &&
      delta.statements === 0 &&
      serverMs === 0 &&
      delta.bytesIn === 0 &&
      delta.bytesOut === 0 &&
      delta.rowsReturned === 0 &&
      delta.rowsAffected === 0 &&
      delta.peakClients === 0;
    return empty ? null : delta;
  }
}

/** What sessions count into before login, and every session when metering is off: never sealed, never read. */
export const UNMETERED = new TenantUsage('');
