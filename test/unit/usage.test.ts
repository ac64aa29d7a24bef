// Usage counting without PostgreSQL: command tags to rows, ReadyForQuery to transactions, seals, and a flusher whose
// registry commits but loses its answer.
import pino from 'pino';
import { describe, expect, it } from 'vitest';
import { encodeCommandComplete } from '../../src/protocol/messages.js';
import { TxStatus } from '../../src/protocol/codes.js';
import { TenantUsage } from '../../src/usage/tenant-usage.js';
import { UsageBook, type UsageBatch } from '../../src/usage/usage-book.js';
import { UsageFlusher, type FlushConnection } from '../../src/usage/usage-flusher.js';
import { UsageTap } from '../../src/usage/usage-tap.js';

function completed(tap: UsageTap, tag: string): void {
  // Inside a larger buffer, as frames arrive: offsets must be honoured.
  const frame = encodeCommandComplete(tag);
  const buf = Buffer.concat([Buffer.from('xx'), frame, Buffer.from('yy')]);
  tap.completed(buf, 2, 2 + frame.length);
}

describe('UsageTap', () => {
  it('reads rows from command tags: returned, affected, or none', () => {
    const usage = new TenantUsage('t');
    const tap = new UsageTap(usage);
    for (const tag of ['SELECT 15', 'FETCH 3', 'COPY 7']) completed(tap, tag);
    expect(usage.rowsReturned).toBe(25);
    for (const tag of ['INSERT 0 4', 'UPDATE 10', 'DELETE 1', 'MERGE 2']) completed(tap, tag);
    expect(usage.rowsAffected).toBe(17);
    tap.copyIn();
    completed(tap, 'COPY 100');
    expect(usage.rowsAffected).toBe(117);
    for (const tag of ['MOVE 5', 'CREATE TABLE', 'BEGIN', 'SELECT 0', 'CREATE INDEX', 'SET', 'COMMIT'])
      completed(tap, tag);
    expect({ returned: usage.rowsReturned, affected: usage.rowsAffected }).toEqual({ returned: 25, affected: 117 });
    expect(usage.statements).toBe(15);
  });

  it('counts a transaction per ReadyForQuery I that ends a block or an implicit transaction that ran something', () => {
    const usage = new TenantUsage('t');
    const tap = new UsageTap(usage);
    completed(tap, 'SELECT 1');
    tap.ready(TxStatus.Idle); // autocommit
    tap.ready(TxStatus.Idle); // a Sync with nothing before it
    completed(tap, 'BEGIN');
    tap.ready(TxStatus.InTransaction);
    completed(tap, 'INSERT 0 1');
    tap.ready(TxStatus.InTransaction);
    tap.failed();
    tap.ready(TxStatus.Failed);
    completed(tap, 'ROLLBACK');
    tap.ready(TxStatus.Idle); // the block, rolled back
    tap.failed();
    tap.ready(TxStatus.Idle); // a failed autocommit statement
    completed(tap, 'BEGIN');
    tap.ready(TxStatus.InTransaction);
    tap.serverChanged(true);
    tap.serverChanged(false); // server lost mid-block: that transaction never ends
    tap.ready(TxStatus.Idle);
    expect(usage.transactions).toBe(3);
    expect(usage.statements).toBe(7);
  });
});

describe('TenantUsage and UsageBook', () => {
  it('server time integrates the servers held, including time not yet released at a seal', () => {
    const usage = new TenantUsage('t');
    usage.serverHeld(1000);
    usage.serverHeld(1500);
    usage.serverFreed(2000); // 1000 ms + 500 ms
    const first = usage.seal(2500.5); // + 500.5 ms of the one still held
    expect(first?.serverMs).toBe(2000);
    usage.serverFreed(3000); // the 0.5 ms kept back, + 499.5
    expect(usage.seal(3000)?.serverMs).toBe(500);
  });

  it('a seal takes the counts, numbers the batch, buckets it by hour and keeps the peak of the window', () => {
    const book = new UsageBook(true);
    const a = book.login('a');
    const b = book.login('b');
    book.login('a');
    a.statements += 3;
    b.bytesIn += 10;
    const hour = Date.UTC(2026, 11, 8, 13);
    const batch = book.seal(hour + 59 * 60_000, 0)!;
    expect(batch.seq).toBe(1);
    expect(batch.hour.toISOString()).toBe('2026-12-08T13:00:00.000Z');
    expect(batch.deltas.map((d) => [d.tenant, d.statements, d.bytesIn, d.peakClients])).toEqual([
      ['a', 3, 0, 2],
      ['b', 0, 10, 1],
    ]);
    a.disconnected();
    a.disconnected();
    b.disconnected();
    const next = book.seal(hour + 61 * 60_000, 0)!;
    // Still connected at the start of the window: the peaks carry over, then the tenants are forgotten.
    expect(next.seq).toBe(2);
    expect(next.hour.toISOString()).toBe('2026-12-08T14:00:00.000Z');
    expect(next.deltas.map((d) => d.peakClients)).toEqual([2, 1]);
    expect(book.seal(hour + 62 * 60_000, 0)).toBeNull();
    expect(new UsageBook(false).login('a')).toBe(new UsageBook(false).login('b'));
  });
});

/** A registry in memory that applies (instance, seq) once, as usage_flush does; `loseAnswers` commits then throws. */
class FakeRegistry {
  lastSeq = new Map<string, number>();
  statements = 0;
  seen: number[] = [];
  failNext = 0;
  loseAnswers = 0;

  connection(): FlushConnection {
    return {
      query: (_sql, values) => {
        const [instance, seq, , , , , , statements] = values as [string, number, ...unknown[]];
        this.seen.push(seq);
        if (this.failNext > 0) {
          this.failNext--;
          return Promise.reject(new Error('connection terminated'));
        }
        let applied = false;
        if ((this.lastSeq.get(instance) ?? 0) < seq) {
          this.lastSeq.set(instance, seq);
          this.statements += (statements as number[]).reduce((x, y) => x + y, 0);
          applied = true;
        }
        if (this.loseAnswers > 0) {
          this.loseAnswers--;
          return Promise.reject(new Error('connection lost after commit'));
        }
        return Promise.resolve({ rows: [{ applied }] });
      },
      end: () => Promise.resolve(),
    };
  }
}

describe('UsageFlusher', () => {
  const log = pino({ level: 'silent' });

  it('keeps a batch until the registry confirms it, sends it again unchanged, and never counts it twice', async () => {
    const registry = new FakeRegistry();
    const book = new UsageBook(true);
    const flusher = new UsageFlusher(
      book,
      { schema: 'pgtp', intervalMs: 1000, connect: () => Promise.resolve(registry.connection()), log },
      false,
    );
    const usage = book.login('t');
    usage.statements += 5;

    registry.loseAnswers = 1;
    const lost = await flusher.flush();
    expect(lost.error?.message).toBe('connection lost after commit');
    const kept: UsageBatch = flusher.unconfirmed!;
    expect(kept.seq).toBe(1);
    usage.statements += 2; // counting goes on into the next batch

    // The retry is recognised as applied; then what was counted since goes as the next batch.
    expect(await flusher.flush()).toEqual({ applied: 1, duplicates: 1, error: null });
    expect(registry.seen).toEqual([1, 1, 2]);
    expect(registry.statements).toBe(7);

    usage.statements += 1;
    registry.failNext = 2;
    expect((await flusher.flush()).error).not.toBeNull();
    expect((await flusher.flush()).error).not.toBeNull();
    expect(flusher.unconfirmed?.seq).toBe(3);
    await flusher.close(1000);
    expect(registry.statements).toBe(8);
    expect(flusher.unconfirmed).toBeNull();
  });
});
