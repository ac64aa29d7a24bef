import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { AuditSink } from '../../src/audit/sink.js';

describe('AuditSink', () => {
  it('writes every line once, in order, across chunk boundaries and batches, multibyte text included', async () => {
    const file = join(mkdtempSync(join(tmpdir(), 'pgtp-sink-')), 'audit.log');
    const sink = new AuditSink(file);
    const lines: string[] = [];
    for (let i = 0; i < 3000; i++) {
      const line = `{"n":${i},"pad":"${'é→'.repeat(i % 200)}"}\n`;
      lines.push(line);
      sink.write(line);
      // Let some batches go out while more are queued.
      if (i % 500 === 0) await new Promise((r) => setTimeout(r, 60));
    }
    expect(await sink.flush()).toBe(true);
    sink.close();
    expect(readFileSync(file, 'utf8')).toBe(lines.join(''));
  });

  it('reports a failing destination, keeps what it could not write, and counts nothing as dropped', async () => {
    const sink = new AuditSink('/dev/full');
    const changes: boolean[] = [];
    sink.onFailing((failing) => changes.push(failing));
    sink.write('{"n":1}\n');
    const deadline = Date.now() + 2000;
    while (!sink.state.failing && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
    expect(sink.state).toMatchObject({ failing: true, dropped: 0 });
    expect(sink.state.lastError).toMatch(/ENOSPC|no space/i);
    expect(changes).toEqual([true]);
    sink.write('{"n":2}\n');
    expect(await sink.flush()).toBe(false);
    sink.close();
  });

  it('refuses a path it cannot open, naming the key', () => {
    expect(() => new AuditSink('/nonexistent-dir/audit.log')).toThrow(/cannot open "\/nonexistent-dir\/audit.log"/);
  });
});
