import { describe, expect, it } from 'vitest';
import { validateConfig } from '../../src/config/load.js';
import { CancelRegistry } from '../../src/frontend/cancel.js';
import { combineReadiness } from '../../src/workers/primary.js';
import { shareOf, workerConfig } from '../../src/workers/share.js';

describe('worker shares', () => {
  it('split every total exactly, at least one each', () => {
    for (const [total, count] of [
      [20, 2],
      [21, 4],
      [3, 3],
      [10000, 7],
    ] as const) {
      const parts = Array.from({ length: count }, (_, i) => shareOf(total, i, count));
      expect(parts.reduce((a, b) => a + b, 0)).toBe(total);
      expect(Math.min(...parts)).toBeGreaterThanOrEqual(1);
      expect(Math.max(...parts) - Math.min(...parts)).toBeLessThanOrEqual(1);
    }
  });

  it('give each worker its share of servers, idle servers and clients, and nothing else changes', () => {
    const config = validateConfig({
      upstream: { url: 'postgres://p@127.0.0.1:5432/app', poolSize: 21, minIdle: 3 },
      auth: { jwt: { secret: 'x'.repeat(32) } },
      listen: { workers: 2, maxClients: 101 },
    });
    const [a, b] = [workerConfig(config, 0, 2), workerConfig(config, 1, 2)];
    expect([a.upstream.poolSize, b.upstream.poolSize]).toEqual([11, 10]);
    expect([a.upstream.minIdle, b.upstream.minIdle]).toEqual([2, 1]);
    expect([a.listen.maxClients, b.listen.maxClients]).toEqual([51, 50]);
    expect(a.upstream.url).toBe(config.upstream.url);
    expect(a.auth).toBe(config.auth);
    // A reload that would leave a running worker without a server is refused, naming the key.
    const small = validateConfig({
      upstream: { url: 'postgres://p@127.0.0.1:5432/app', poolSize: 1 },
      auth: { jwt: { secret: 'x'.repeat(32) } },
    });
    expect(() => workerConfig(small, 1, 2)).toThrow(/upstream\.poolSize: 1 cannot be shared by the 2 running workers/);
  });

  it("give each worker its share of every upstream's pool", () => {
    const config = validateConfig({
      upstream: { url: 'postgres://p@127.0.0.1:5432/app', poolSize: 20 },
      upstreams: { b: { url: 'postgres://p@10.0.0.2:5432/app', poolSize: 5, minIdle: 3 } },
      auth: { jwt: { secret: 'x'.repeat(32) } },
    });
    const shares = [0, 1, 2].map((i) => workerConfig(config, i, 3).upstreams['b']!);
    expect(shares.map((u) => u.poolSize)).toEqual([2, 2, 1]);
    expect(shares.map((u) => u.minIdle)).toEqual([1, 1, 1]);
    expect(shares[0]!.url).toBe(config.upstreams['b']!.url);
    const small = validateConfig({
      upstream: { url: 'postgres://p@127.0.0.1:5432/app', poolSize: 20 },
      upstreams: { b: { url: 'postgres://p@10.0.0.2:5432/app', poolSize: 1 } },
      auth: { jwt: { secret: 'x'.repeat(32) } },
    });
    expect(() => workerConfig(small, 1, 2)).toThrow(
      /upstreams\.b\.poolSize: 1 cannot be shared by the 2 running workers/,
    );
    // At start the same is refused by the schema, naming listen.workers.
    expect(() =>
      validateConfig({
        listen: { workers: 2 },
        upstream: { url: 'postgres://p@127.0.0.1:5432/app', poolSize: 20 },
        upstreams: { b: { url: 'postgres://p@10.0.0.2:5432/app', poolSize: 1 } },
        auth: { jwt: { secret: 'x'.repeat(32) } },
      }),
    ).toThrow(/listen\.workers/);
  });
});

describe('cancel keys across workers', () => {
  it("issue pids from the worker's own residue class and hand foreign keys to their owner, never their own", () => {
    const forwarded: Array<[number, number]> = [];
    const registries = [0, 1, 2].map(
      (index) => new CancelRegistry({ index, count: 3, forward: (pid, secret) => forwarded.push([pid, secret]) }),
    );
    let cancelled = 0;
    const session = { cancelCurrent: () => void cancelled++ };
    const keys = registries.map((r, index) => {
      const key = r.issue(session);
      expect(key.pid % 3).toBe(index);
      expect(r.issue(session).pid).toBe(key.pid + 3);
      return key;
    });
    // Worker 0 receives a cancel for worker 2's key: forwarded, not acted on.
    expect(registries[0]!.cancel(keys[2]!.pid, keys[2]!.secret)).toBe(false);
    expect(forwarded).toEqual([[keys[2]!.pid, keys[2]!.secret]]);
    expect(cancelled).toBe(0);
    // The owner acts on it; a wrong secret for its own pid does nothing and goes nowhere.
    expect(registries[2]!.cancel(keys[2]!.pid, keys[2]!.secret)).toBe(true);
    expect(registries[2]!.cancel(keys[2]!.pid, keys[2]!.secret ^ 1)).toBe(false);
    expect(cancelled).toBe(1);
    expect(forwarded).toHaveLength(1);
  });

  it('a single process keeps pids 1, 2, 3, … and forwards nothing', () => {
    const r = new CancelRegistry();
    const session = { cancelCurrent: () => undefined };
    expect([r.issue(session).pid, r.issue(session).pid, r.issue(session).pid]).toEqual([1, 2, 3]);
    expect(r.cancel(99, 1)).toBe(false);
  });
});

describe('readiness over workers', () => {
  const ok = { ready: true, checks: { listener: { ok: true }, upstream: { ok: true } } };
  it('is ready only when every worker answers ready', () => {
    expect(combineReadiness([ok, ok], false).ready).toBe(true);
    const down = {
      ready: false,
      checks: { listener: { ok: true }, upstream: { ok: false, detail: 'connection refused' } },
    };
    const mixed = combineReadiness([ok, down], false);
    expect(mixed.ready).toBe(false);
    expect(mixed.checks.upstream).toEqual({ ok: false, detail: 'connection refused' });
    const silent = combineReadiness([ok, null], false);
    expect(silent.ready).toBe(false);
    expect(silent.checks.workers).toEqual({ ok: false, detail: '1 of 2 workers answered' });
    expect(combineReadiness([ok, ok], true).ready).toBe(false);
  });
});
