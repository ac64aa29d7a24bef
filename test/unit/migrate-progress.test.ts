// The migrate progress display: a redrawn line on a terminal (an injected isTTY stream), one line per tenant elsewhere.
import { describe, expect, it } from 'vitest';
import { createProgress } from '../../src/migrations/report.js';

function stream(isTTY: boolean): { write: (t: string) => void; isTTY: boolean; columns: number; out: string[] } {
  const out: string[] = [];
  return { write: (t: string) => void out.push(t), isTTY, columns: 120, out };
}

describe('migrate progress', () => {
  it('redraws one line in place on a terminal, throttled, with failures above it', () => {
    let now = 0;
    const s = stream(true);
    const p = createProgress(s, () => now);
    p.start(4);
    now = 1000;
    p.tenantDone({ tenant: 'a', ok: true, applied: ['0001'], durationMs: 5 });
    now = 1050; // within the redraw interval: no redraw
    p.tenantDone({ tenant: 'b', ok: true, applied: ['0001'], durationMs: 5 });
    now = 2000;
    p.tenantDone({
      ok: false,
      tenant: 'c',
      migration: '0001',
      file: '0001.sql',
      statement: 2,
      message: 'boom',
      sqlstate: '23514',
      applied: [],
    });
    now = 4000;
    p.tenantDone({ tenant: 'd', ok: true, applied: ['0001'], durationMs: 5 });
    p.finish();
    expect(s.out).toEqual([
      '\r\x1b[2Kmigrate [------------------------] 0/4 tenants, 0 failed, 0.0/s, ETA ?',
      '\r\x1b[2Kmigrate [######------------------] 1/4 tenants, 0 failed, 1.0/s, ETA 3s',
      '\r\x1b[2KFAILED tenant c: 0001.sql statement 2: boom (SQLSTATE 23514)\n',
      '\r\x1b[2Kmigrate [##################------] 3/4 tenants, 1 failed, 1.5/s, ETA 1s',
      '\r\x1b[2Kmigrate [########################] 4/4 tenants, 1 failed, 1.0/s, ETA 0s',
      '\r\x1b[2Kmigrate [########################] 4/4 tenants, 1 failed, 1.0/s, ETA 0s',
      '\n',
    ]);
  });

  it('prints one plain line per tenant elsewhere', () => {
    const s = stream(false);
    const p = createProgress(s, () => 0);
    p.start(2);
    p.tenantDone({ tenant: 'a', ok: true, applied: ['0001', '0002'], durationMs: 7 });
    p.tenantDone({
      ok: false,
      tenant: 'b',
      migration: '0002',
      file: '0002.sql',
      statement: null,
      message: 'gone',
      sqlstate: null,
      applied: ['0001'],
    });
    p.finish();
    expect(s.out).toEqual([
      'ok     tenant a: applied 0001, 0002 (7 ms) [1/2]\n',
      'FAILED tenant b: 0002.sql: gone [2/2]\n',
    ]);
  });
});
