import { describe, expect, it } from 'vitest';
import { interpretStartup, parseOptions } from '../../src/frontend/startup.js';
import { ProxyError } from '../../src/protocol/errors.js';

const base = (extra: Record<string, string>): Map<string, string> => new Map(Object.entries({ user: 'app', database: 'appdb', ...extra }));

function sqlstate(fn: () => unknown): string | undefined {
  try {
    fn();
  } catch (err) {
    return err instanceof ProxyError ? err.sqlstate : 'not a ProxyError';
  }
  return undefined;
}

describe('interpretStartup', () => {
  it('keeps the settings that shape results, by their canonical names', () => {
    const s = interpretStartup(base({ datestyle: 'ISO', TimeZone: 'UTC', extra_float_digits: '2', application_name: 'x' }), []);
    expect([...s.settings]).toEqual([
      ['DateStyle', 'ISO'],
      ['TimeZone', 'UTC'],
      ['extra_float_digits', '2'],
      ['application_name', 'x'],
    ]);
    expect(s.token).toBeUndefined();
  });

  it('takes the token from a startup parameter or from options', () => {
    expect(interpretStartup(base({ tenant_token: 'abc' }), []).token).toBe('abc');
    expect(interpretStartup(base({ options: '-c tenant_token=abc -c statement_timeout=5s' }), []).token).toBe('abc');
    expect(interpretStartup(base({ options: '--tenant-token=abc' }), []).token).toBe('abc');
    expect(sqlstate(() => interpretStartup(base({ tenant_token: 'a', options: '-ctenant_token=b' }), []))).toBe('08P01');
  });

  it('refuses search_path, role and session authorization, also inside options and in any case', () => {
    for (const params of [
      { search_path: 'tenant_b' } as Record<string, string>,
      { SEARCH_PATH: 'tenant_b' },
      { role: 'postgres' },
      { session_authorization: 'postgres' },
      { options: '-c search_path=tenant_b' },
      { options: '-csearch_path=tenant_b' },
      { options: '--search-path=tenant_b' },
      { options: '-c role=postgres' },
      { replication: 'database' },
    ]) {
      expect(sqlstate(() => interpretStartup(base(params), [])), JSON.stringify(params)).toBe('42501');
    }
  });

  it('refuses unknown parameters unless configured to ignore them', () => {
    expect(sqlstate(() => interpretStartup(base({ geqo: 'off' }), []))).toBe('0A000');
    expect(interpretStartup(base({ geqo: 'off' }), ['geqo']).settings.size).toBe(0);
    expect(sqlstate(() => interpretStartup(base({ options: '-d 5' }), []))).toBe('0A000');
    expect(sqlstate(() => interpretStartup(base({ '_pq_.x': '1' }), []))).toBe('0A000');
  });

  it('requires a user and defaults the database to it', () => {
    expect(sqlstate(() => interpretStartup(new Map([['database', 'x']]), []))).toBe('28000');
    expect(interpretStartup(new Map([['user', 'app']]), []).database).toBe('app');
  });
});

describe('parseOptions', () => {
  it('splits on whitespace and honours backslash escapes', () => {
    expect(parseOptions('-c a=1  -cb=2 --c-d=x\\ y')).toEqual([
      ['a', '1'],
      ['b', '2'],
      ['c_d', 'x y'],
    ]);
  });
});
