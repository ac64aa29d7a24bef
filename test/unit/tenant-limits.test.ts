// The pieces of per-tenant limits that need no PostgreSQL: the round-robin queue, the rate budget, where each limit
// comes from, the registry column's parsing, and the split between workers.
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import type { ServerConn } from '../../src/backend/server-conn.js';
import { loadConfig, validateConfig } from '../../src/config/load.js';
import { FairQueue } from '../../src/limits/fair-queue.js';
import { effectiveLimits, NO_LIMITS, parseOverrides, workerShare } from '../../src/limits/limits.js';
import { NO_METER, TenantShare, type QueuedWaiter } from '../../src/limits/share.js';
import { ProxyError } from '../../src/protocol/errors.js';

function share(id: string, limits: Partial<typeof NO_LIMITS> = {}): TenantShare {
  const s = new TenantShare(id, NO_METER);
  s.setLimits({ ...NO_LIMITS, ...limits });
  return s;
}

function waiter(s: TenantShare, name: string): QueuedWaiter & { name: string } {
  return {
    name,
    share: s,
    acceptsUnreset: undefined,
    resolve: (_: ServerConn) => undefined,
    reject: () => undefined,
    timer: setTimeout(() => undefined, 0),
  };
}

/** Serves `n` waiters in turn, as the pool does for freed servers, returning their names. */
function serve(queue: FairQueue, n: number): string[] {
  const served: string[] = [];
  for (let i = 0; i < n; i++) {
    const next = queue.next() as (QueuedWaiter & { name: string }) | undefined;
    if (next === undefined) break;
    queue.take(next);
    served.push(next.name);
  }
  return served;
}

describe('FairQueue', () => {
  it('serves tenants round-robin and each tenant first come first served', () => {
    const queue = new FairQueue();
    const a = share('a');
    const b = share('b');
    const c = share('c');
    for (let i = 1; i <= 5; i++) queue.push(waiter(a, `a${i}`));
    queue.push(waiter(b, 'b1'));
    queue.push(waiter(b, 'b2'));
    queue.push(waiter(c, 'c1'));
    expect(serve(queue, 8)).toEqual(['a1', 'b1', 'c1', 'a2', 'b2', 'a3', 'a4', 'a5']);
    expect(queue.size).toBe(0);
    expect(a.waiting + b.waiting + c.waiting).toBe(0);
  });

  it('a tenant arriving later gets the next turn, not the end of the burst', () => {
    const queue = new FairQueue();
    const a = share('a');
    const b = share('b');
    for (let i = 1; i <= 10; i++) queue.push(waiter(a, `a${i}`));
    expect(serve(queue, 3)).toEqual(['a1', 'a2', 'a3']);
    queue.push(waiter(b, 'b1'));
    expect(serve(queue, 2)).toEqual(['a4', 'b1']);
  });

  it('skips a tenant at its maxServers without blocking the others, and counts only what could start', () => {
    const queue = new FairQueue();
    const a = share('a', { maxServers: 2 });
    const b = share('b');
    a.held = 2;
    queue.push(waiter(a, 'a1'));
    queue.push(waiter(a, 'a2'));
    queue.push(waiter(b, 'b1'));
    expect(queue.eligibleDemand()).toBe(1);
    expect(serve(queue, 3)).toEqual(['b1']);
    expect(queue.hasEligible()).toBe(false);
    a.held = 1;
    expect(queue.eligibleDemand()).toBe(1);
    expect(serve(queue, 3)).toEqual(['a1', 'a2']);
  });

  it('a waiter that times out leaves its queue and the ring', () => {
    const queue = new FairQueue();
    const a = share('a');
    const w = waiter(a, 'a1');
    queue.push(w);
    expect(queue.remove(w)).toBe(true);
    expect(queue.remove(w)).toBe(false);
    expect(queue.size).toBe(0);
    expect(queue.waitingOf(a)).toBe(0);
    expect(a.waiting).toBe(0);
    expect(queue.next()).toBeUndefined();
  });

  it('keeps a tenant waiting in two pools (its route moved) in each pool’s own queue', () => {
    const old = new FairQueue();
    const moved = new FairQueue();
    const a = share('a');
    old.push(waiter(a, 'a-old'));
    moved.push(waiter(a, 'a-new'));
    // Each pool serves only the waiter that asked it: a server of the old upstream never goes to the new one's.
    expect(serve(old, 5)).toEqual(['a-old']);
    expect(serve(moved, 5)).toEqual(['a-new']);
    expect([old.waitingOf(a), moved.waitingOf(a), a.waiting]).toEqual([0, 0, 0]);
  });
});

describe('the rate budget', () => {
  beforeEach(() => {
    vi.useFakeTimers();
  });
  afterEach(() => {
    vi.useRealTimers();
  });

  it("starts with a second's burst, then waits one token's time, and refuses a wait past the queue timeout", () => {
    const s = share('a', { transactionsPerSecond: 4 });
    for (let i = 0; i < 4; i++) expect(s.takeToken(1000)).toBe(0);
    expect(s.tryToken()).toBe(false);
    // Tokens reserved by waiting transactions push the next one further back.
    expect(s.takeToken(1000)).toBe(250);
    expect(s.takeToken(1000)).toBe(500);
    expect(s.takeToken(600)).toBeInstanceOf(ProxyError);
    vi.advanceTimersByTime(1000);
    // 4 tokens refilled, 2 of them owed to the waiters.
    expect(s.tryToken()).toBe(true);
    expect(s.tryToken()).toBe(true);
    expect(s.tryToken()).toBe(false);
  });

  it('pipelined transactions charged as debt make the next checkout wait', () => {
    const s = share('a', { transactionsPerSecond: 10 });
    for (let i = 0; i < 15; i++) s.charge();
    const wait = s.takeToken(5000);
    // 5 tokens of debt and this one: 6 at 10 per second.
    expect(wait).toBe(600);
  });

  it('past maxWaiting the refusal is 53400 naming the limit', () => {
    const s = share('a', { transactionsPerSecond: 1, maxWaiting: 1 });
    expect(s.takeToken(5000)).toBe(0);
    s.waiting = 1;
    const refused = s.takeToken(5000) as ProxyError;
    expect(refused.sqlstate).toBe('53400');
    expect(refused.message).toBe('too many transactions of tenant "a" waiting: its limit is 1 (maxWaiting)');
  });
});

describe('effective limits', () => {
  const config = validateConfig({
    upstream: { url: 'postgres://u@localhost/db' },
    auth: { jwt: { secret: 'x'.repeat(32) } },
    limits: { default: { maxServers: 5, statementTimeoutMs: 1000 }, tiers: { free: { maxServers: 2, maxClients: 0 } } },
  }).limits;

  it('takes each key from the tenant, else its tier, else the default', () => {
    const { limits, source } = effectiveLimits(config, 'free', { statementTimeoutMs: 0 });
    expect(limits).toEqual({ ...NO_LIMITS, maxServers: 2, statementTimeoutMs: 0 });
    expect(source).toMatchObject({ maxServers: 'tier', maxClients: 'tier', statementTimeoutMs: 'tenant' });
    expect(source.maxWaiting).toBe('default');
    expect(effectiveLimits(config, 'unknown-tier', null).limits.maxServers).toBe(5);
  });

  it('takes limits.tiers from the environment as JSON, and refuses a negative limit naming the key', () => {
    const env = {
      PGTP_UPSTREAM_URL: 'postgres://u@localhost/db',
      PGTP_AUTH_JWT_SECRET: 'x'.repeat(32),
      PGTP_LIMITS_TIERS: '{"free": {"maxServers": 2}}',
      PGTP_LIMITS_DEFAULT_STATEMENT_TIMEOUT_MS: '30000',
    };
    const loaded = loadConfig(undefined, env).limits;
    expect(loaded.tiers).toEqual({ free: { maxServers: 2 } });
    expect(loaded.default.statementTimeoutMs).toBe(30000);
    expect(() => loadConfig(undefined, { ...env, PGTP_LIMITS_DEFAULT_MAX_SERVERS: '-1' })).toThrow(
      /limits\.default\.maxServers/,
    );
    expect(() => loadConfig(undefined, { ...env, PGTP_LIMITS_TIERS: '{"free": {"maxSockets": 2}}' })).toThrow(
      /limits\.tiers\.free/,
    );
  });

  it('reads the registry column leniently: unknown keys and bad values are ignored', () => {
    expect(
      parseOverrides({ maxServers: 3, bogus: 1, maxClients: -1, maxWaiting: 1.5, statementTimeoutMs: '9' }),
    ).toEqual({ maxServers: 3 });
    expect(parseOverrides({})).toBeNull();
    expect(parseOverrides(null)).toBeNull();
    expect(parseOverrides([1])).toBeNull();
  });

  it('splits count limits between workers, none getting 0 from a positive limit', () => {
    const limits = { ...NO_LIMITS, maxServers: 5, maxClients: 1, statementTimeoutMs: 700 };
    const parts = [0, 1, 2].map((i) => workerShare(limits, i, 3));
    expect(parts.map((p) => p.maxServers)).toEqual([2, 2, 1]);
    expect(parts.map((p) => p.maxClients)).toEqual([1, 1, 1]);
    expect(parts.map((p) => p.statementTimeoutMs)).toEqual([700, 700, 700]);
    expect(parts.map((p) => p.maxWaiting)).toEqual([0, 0, 0]);
  });
});
