import { beforeAll, describe, expect, it } from 'vitest';
import { MAX_CUSTOM_SETTINGS, SessionSettings } from '../../src/frontend/session-settings.js';
import { createSqlGuard, loadParser, type SqlGuard } from '../../src/guard/sql-guard.js';

let guard: SqlGuard;
beforeAll(async () => {
  await loadParser();
  guard = createSqlGuard({
    sharedSchemas: [],
    deniedFunctions: [],
    maxStatementBytes: 1 << 20,
    cacheSize: 100,
    checkNames: true,
  });
});

describe('SessionSettings', () => {
  it('adopts a snapshot, handing back the startup settings it lacks (RESET) to be set again', () => {
    const settings = new SessionSettings(
      new Map([
        ['TimeZone', 'UTC'],
        ['work_mem', '8MB'],
      ]),
    );
    const restore = settings.adopt(
      new Map([
        ['work_mem', '16MB'],
        ['app.user', 'u1'],
      ]),
    );
    expect([...restore]).toEqual([['TimeZone', 'UTC']]);
    expect(Object.fromEntries(settings.current)).toEqual({ work_mem: '16MB', 'app.user': 'u1', TimeZone: 'UTC' });
  });

  it('asks for custom startup settings by name, which pg_settings does not list, so a snapshot keeps them', () => {
    const settings = new SessionSettings(
      new Map([
        ['app.region', 'eu'],
        ['work_mem', '8MB'],
      ]),
    );
    expect(settings.beginSnapshot().toString('latin1')).toContain("'app.region'");
    expect([
      ...settings.adopt(
        new Map([
          ['app.region', 'eu'],
          ['work_mem', '8MB'],
        ]),
      ),
    ]).toEqual([]);
  });

  it('tells the client a value once, and again only when it changes', () => {
    const settings = new SessionSettings(new Map());
    expect([
      settings.tell('DateStyle', 'ISO'),
      settings.tell('DateStyle', 'ISO'),
      settings.tell('DateStyle', 'SQL'),
    ]).toEqual([true, false, true]);
  });

  it('marks a snapshot due after a SET, asks custom settings by name, and holds their number to the budget', () => {
    const settings = new SessionSettings(new Map());
    settings.noteStatement(guard.describe('SELECT 1'));
    expect(settings.changed).toBe(false);
    settings.noteStatement(guard.describe("SET app.tenant_user = 'x'"));
    expect(settings.changed).toBe(true);
    expect(settings.beginSnapshot().toString('latin1')).toContain("'app.tenant_user'");
    expect(settings.changed).toBe(false);
    const many = guard.describe(
      Array.from({ length: MAX_CUSTOM_SETTINGS - 1 }, (_, i) => `SET app.s${i} = '1'`).join('; '),
    );
    expect(settings.overBudget(many)).toBeNull();
    settings.noteStatement(many);
    expect(settings.overBudget(guard.describe("SET app.s0 = '2'"))).toBeNull();
    expect(settings.overBudget(guard.describe("SET app.one_more = '2'"))?.sqlstate).toBe('54000');
  });
});
