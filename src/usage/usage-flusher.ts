// Adds this process's usage to the registry every flushIntervalMs and at shutdown, exactly once per batch.
import pg from 'pg';
import type { Logger } from 'pino';
import { quoteIdent } from '../auth/identity.js';
import type { UsageBatch, UsageBook } from './usage-book.js';

/** What one flush did: batches the registry applied, retries it recognised as applied already, and any failure. */
export interface FlushResult {
  applied: number;
  duplicates: number;
  error: Error | null;
}

/** The registry connection a flush runs on; tests give their own. */
export interface FlushConnection {
  query(sql: string, values: unknown[]): Promise<{ rows: Array<Record<string, unknown>> }>;
  end(): Promise<void>;
}

export interface UsageFlusherOptions {
  schema: string;
  intervalMs: number;
  connect(): Promise<FlushConnection>;
  log: Logger;
}

/** A flush held up longer than this (a locked table, a stalled network) fails and is retried at the next tick. */
export const FLUSH_TIMEOUT_MS = 5_000;
/** How long a graceful close keeps retrying the last flush before it gives the counts up (logged). */
const CLOSE_DEADLINE_MS = 10_000;

/**
 * One batch in flight at a time. A batch is dropped from memory only when the registry confirms it (applied, or
 * recognised as applied by an attempt whose answer was lost); until then every tick sends the same batch again while
 * sessions go on counting into the next one.
 */
export class UsageFlusher {
  private pending: UsageBatch | null = null;
  private connection: FlushConnection | null = null;
  private running: Promise<FlushResult> | null = null;
  private timer: NodeJS.Timeout | null = null;
  /** Consecutive failed attempts (for the log), and all of them (for the metric). */
  private failures = 0;
  private totalFailures = 0;
  private closed = false;
  private readonly sql: string;

  constructor(
    private readonly book: UsageBook,
    private readonly options: UsageFlusherOptions,
    start = true,
  ) {
    this.sql = `SELECT ${quoteIdent(options.schema)}.usage_flush($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14) AS applied`;
    if (!start) return;
    const tick = (): void => {
      if (this.running === null) void this.flush();
    };
    // Started at a random point of the first interval: workers and proxies started together do not all flush (and
    // wait on each other's row locks) at the same instant ever after.
    this.timer = setTimeout(() => {
      tick();
      if (this.closed) return;
      this.timer = setInterval(tick, options.intervalMs);
      this.timer.unref();
    }, Math.random() * options.intervalMs);
    this.timer.unref();
  }

  /** For the metrics: failed attempts so far, and whether a batch awaits confirmation. */
  get state(): { failures: number; pending: boolean } {
    return { failures: this.totalFailures, pending: this.pending !== null };
  }

  /** The batch sent but not yet confirmed (for tests and the shutdown log). */
  get unconfirmed(): UsageBatch | null {
    return this.pending;
  }

  /** Runs one flush after any in flight: the pending batch first, then what was counted since. */
  flush(): Promise<FlushResult> {
    const previous = this.running ?? Promise.resolve(null);
    const run = previous.then(() => this.cycle());
    this.running = run;
    void run.finally(() => {
      if (this.running === run) this.running = null;
    });
    return run;
  }

  private async cycle(): Promise<FlushResult> {
    const result: FlushResult = { applied: 0, duplicates: 0, error: null };
    // At most the retried batch and one fresh one: a flush never chases sessions that keep counting.
    for (let round = 0; round < 2; round++) {
      const retry = this.pending !== null;
      this.pending ??= this.book.seal();
      const batch = this.pending;
      if (batch === null) break;
      try {
        if (await this.send(batch)) result.applied++;
        else result.duplicates++;
        this.pending = null;
        if (this.failures > 0) this.options.log.info({ failures: this.failures }, 'usage flush succeeded again');
        this.failures = 0;
      } catch (err) {
        result.error = err as Error;
        this.totalFailures++;
        // The first failure and then about every 5 minutes at the default interval, not every tick.
        if (this.failures++ % 30 === 0)
          this.options.log.warn(failureLog(err, batch, this.failures), 'usage flush failed; retrying');
        this.dropConnection();
        break;
      }
      if (!retry) break;
    }
    return result;
  }

  /** true: applied; false: the registry had applied this (instance, seq) already. */
  private async send(batch: UsageBatch): Promise<boolean> {
    this.connection ??= await this.options.connect();
    const d = batch.deltas;
    const { rows } = await this.connection.query(this.sql, [
      batch.instance,
      batch.seq,
      batch.hour,
      batch.since,
      batch.until,
      d.map((x) => x.tenant),
      d.map((x) => x.transactions),
      d.map((x) => x.statements),
      d.map((x) => x.serverMs),
      d.map((x) => x.bytesIn),
      d.map((x) => x.bytesOut),
      d.map((x) => x.rowsReturned),
      d.map((x) => x.rowsAffected),
      d.map((x) => x.peakClients),
    ]);
    return rows[0]?.['applied'] === true;
  }

  /** Not awaited: ending a connection whose network stalled can take as long as TCP does to give up. */
  private dropConnection(): void {
    const connection = this.connection;
    this.connection = null;
    void connection?.end().catch(() => undefined);
  }

  /** Stops the timer and flushes what is left, retrying until confirmed or the deadline; what remains is logged. */
  async close(deadlineMs = CLOSE_DEADLINE_MS): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    // clearTimeout clears an interval as well.
    if (this.timer !== null) clearTimeout(this.timer);
    const deadline = Date.now() + deadlineMs;
    for (;;) {
      const result = await this.flush();
      if (result.error === null && this.pending === null) break;
      if (Date.now() >= deadline) {
        const lost = [this.pending, this.book.seal()].filter((b) => b !== null);
        this.options.log.error(
          { err: result.error?.message, batches: lost },
          'usage could not be added to the registry before shutdown; these counts are lost',
        );
        break;
      }
      await new Promise((resolve) => setTimeout(resolve, 250));
    }
    this.dropConnection();
  }
}

function failureLog(err: unknown, batch: UsageBatch, failures: number): Record<string, unknown> {
  const { message, code } = err as { message: string; code?: string };
  const hint =
    code === '42883' || code === '3F000'
      ? 'the registry has no usage_flush (version 5): any `pg-tenant-proxy tenants` command creates or upgrades it'
      : undefined;
  return { err: message, code, hint, seq: batch.seq, failures };
}

/** A registry connection for flushes: the statement and lock waits bounded so a stuck flush fails and is retried. */
export function flushConnector(connection: pg.ClientConfig, log: Logger): () => Promise<FlushConnection> {
  return async () => {
    const client = new pg.Client({
      ...connection,
      application_name: 'pg-tenant-proxy usage',
      statement_timeout: FLUSH_TIMEOUT_MS,
      query_timeout: FLUSH_TIMEOUT_MS + 2_000,
    });
    // A connection terminated while idle must not crash the process; the next query fails and reconnects.
    client.on('error', (err) => log.debug({ err: err.message }, 'usage connection error'));
    try {
      await client.connect();
    } catch (err) {
      await client.end().catch(() => undefined);
      throw err;
    }
    return {
      query: (sql, values) => client.query(sql, values),
      end: () => client.end(),
    };
  };
}
