import { describe, expect, it } from 'vitest';
import { interpretStartup, parseOptions, plaintextAllowed, reportedParameters } from '../../src/frontend/startup.js';
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
    expect(interpretStartup(base({ geqo: 'off' }), ['geqo']).settings.has('geqo')).toBe(false);
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

describe('plaintextAllowed', () => {
  it('lets tokens travel in cleartext only from loopback, unless TLS is off or required', () => {
    for (const address of ['127.0.0.1', '127.4.5.6', '::1', '::ffff:127.0.0.1']) expect(plaintextAllowed('allow', address)).toBe(true);
    for (const address of ['10.0.0.1', '::ffff:10.0.0.1', '128.0.0.1', undefined]) expect(plaintextAllowed('allow', address)).toBe(false);
    expect(plaintextAllowed('require', '127.0.0.1')).toBe(false);
    expect(plaintextAllowed('disable', '10.0.0.1')).toBe(true);
  });
});

describe('reportedParameters', () => {
  const defaults = new Map([
    ['TimeZone', 'UTC'],
    ['DateStyle', 'ISO, MDY'],
    ['search_path', '"$user", public'],
    ['session_authorization', 'px'],
    ['is_superuser', 'on'],
  ]);

  it('reports the client as PostgreSQL would: its own settings, its user, its schema, never the proxy role', () => {
    const out = reportedParameters(defaults, new Map([['TimeZone', 'Europe/Paris'], ['statement_timeout', '5s']]), 'app', 'tenant_acme');
    expect(out.get('TimeZone')).toBe('Europe/Paris');
    expect(out.get('DateStyle')).toBe('ISO, MDY');
    expect(out.has('statement_timeout')).toBe(false); // not a reported setting
    expect(out.get('application_name')).toBe('');
    expect(out.get('session_authorization')).toBe('app');
    expect(out.get('is_superuser')).toBe('off');
    expect(out.get('search_path')).toBe('tenant_acme');
  });

  it('quotes a schema name that is not a plain lower-case identifier', () => {
    expect(reportedParameters(defaults, new Map(), 'app', 'Tenant "X"').get('search_path')).toBe('"Tenant ""X"""');
  });
});
