import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import { describe, expect, it, onTestFinished } from 'vitest';
import { AuditLog, type StatementEvent } from '../../src/audit/audit-log.js';
import { validateConfig } from '../../src/config/load.js';

// Statement events bypass pino for speed; they must stay byte-for-byte what pino writes for the same event.
describe('statement audit lines', () => {
  it('are the lines pino writes, for awkward text, nulls and every text mode', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'pgtp-audit-line-'));
    onTestFinished(() => rmSync(dir, { recursive: true, force: true }));
    const file = join(dir, 'audit.log');
    const config = validateConfig({
      upstream: { url: 'postgres://px:pw@127.0.0.1:5432/db' },
      auth: { jwt: { secret: 'x'.repeat(40) } },
      audit: { file },
    });
    const log = new AuditLog(config, pino({ level: 'silent' }));
    const events: StatementEvent[] = [
      {
        command: 'SELECT',
        fingerprint: '0123456789abcdef',
        statement: 'SELECT $1 -- "quoted" \\ é→ \n\t\u0001',
        outcome: 'ok',
        sqlstate: null,
        duration_ms: 0.123,
        rows: 1,
        backend_pid: 4242,
      },
      {
        command: null,
        fingerprint: null,
        statement: null,
        outcome: 'error',
        sqlstate: '22012',
        duration_ms: 12.5,
        rows: null,
        backend_pid: null,
      },
      {
        command: 'INSERT',
        fingerprint: 'ffff',
        statement: undefined,
        outcome: 'ok',
        sqlstate: null,
        duration_ms: 0,
        rows: 3,
        backend_pid: 7,
      },
    ];
    const audit = log.connection({ session: 's"1', client_addr: '127.0.0.1', client_port: undefined });
    audit.authenticated({
      tenant: 'acme"\\',
      schema: 'tenant_acme',
      actor: null,
      application_name: 'app\n1',
      guard_bypass: false,
    });
    // The same logger pino would have used: the connection's child, with the tenant's fields bound.
    const viaPino = (audit as unknown as { logger: pino.Logger }).logger;
    for (const event of events) {
      audit.statement(event);
      viaPino.info({ event: 'statement', ...event });
    }
    await log.close();
    const lines = readFileSync(file, 'utf8').trimEnd().split('\n');
    const statements = lines.filter((line) => line.includes('"event":"statement"'));
    expect(statements).toHaveLength(2 * events.length);
    for (let i = 0; i < events.length; i++) {
      const [fast, slow] = [statements[2 * i]!, statements[2 * i + 1]!];
      // The time may tick between the two lines; everything else is identical.
      expect(fast.replace(/"time":"[^"]+"/, '')).toBe(slow.replace(/"time":"[^"]+"/, ''));
      expect(JSON.parse(fast)).toMatchObject({
        log: 'audit',
        tenant: 'acme"\\',
        event: 'statement',
        outcome: events[i]!.outcome,
      });
    }
  });
});
