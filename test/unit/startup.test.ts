import { describe, expect, it } from 'vitest';
import { MAX_CUSTOM_SETTINGS } from '../../src/frontend/session-settings.js';
import { interpretStartup, parseOptions, plaintextAllowed, reportedParameters } from '../../src/frontend/startup.js';
import { ProxyError } from '../../src/protocol/errors.js';

const base = (extra: Record<string, string>): Map<string, string> =>
  new Map(Object.entries({ user: 'app', database: 'appdb', ...extra }));

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
    const s = interpretStartup(
      base({ datestyle: 'ISO', TimeZone: 'UTC', extra_float_digits: '2', application_name: 'x' }),
      [],
    );
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
    expect(sqlstate(() => interpretStartup(base({ tenant_token: 'a', options: '-ctenant_token=b' }), []))).toBe(
      '08P01',
    );
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
      { default_transaction_read_only: 'on' },
      // What the guard refuses as SET is refused at startup too.
      { backslash_quote: 'on' },
      { options: '-c Backslash_Quote=safe_encoding' },
    ]) {
      expect(
        sqlstate(() => interpretStartup(base(params), [])),
        JSON.stringify(params),
      ).toBe('42501');
    }
  });

  it('takes any other parameter as a setting for PostgreSQL to judge at login, named as PostgreSQL spells it', () => {
    const s = interpretStartup(
      base({ default_transaction_isolation: 'serializable', GEQO: 'off', options: '-c app.Region=eu -c TIMEZONE=UTC' }),
      [],
    );
    expect([...s.settings]).toEqual([
      ['app.region', 'eu'],
      ['TimeZone', 'UTC'],
      ['default_transaction_isolation', 'serializable'],
      ['geqo', 'off'],
      ['application_name', ''],
    ]);
  });

  it('reads options before the parameters, which win as in PostgreSQL', () => {
    const s = interpretStartup(base({ work_mem: '8MB', options: '-c work_mem=1MB -c lock_timeout=1s' }), []);
    expect(s.settings.get('work_mem')).toBe('8MB');
    expect(s.settings.get('lock_timeout')).toBe('1s');
  });

  it('drops parameters configured to be ignored and refuses what is no setting', () => {
    expect(interpretStartup(base({ geqo: 'off' }), ['geqo']).settings.has('geqo')).toBe(false);
    expect(sqlstate(() => interpretStartup(base({ options: '-d 5' }), []))).toBe('0A000');
    expect(sqlstate(() => interpretStartup(base({ '_pq_.x': '1' }), []))).toBe('0A000');
    for (const encoding of ['windows932', 'Windows-936', 'windows949', 'windows950', 'SJIS', 'big5']) {
      expect(sqlstate(() => interpretStartup(base({ client_encoding: encoding }), []))).toBe('0A000');
      expect(sqlstate(() => interpretStartup(base({ options: `-c client_encoding=${encoding}` }), []))).toBe('0A000');
    }
    expect(sqlstate(() => interpretStartup(base({ client_encoding: 'LATIN1' }), []))).toBeUndefined();
    // As PostgreSQL: "-c work_mem requires a value".
    expect(sqlstate(() => interpretStartup(base({ options: '-c work_mem' }), []))).toBe('42601');
    expect(sqlstate(() => interpretStartup(base({ options: '--work-mem' }), []))).toBe('42601');
  });

  it('gives a client that names itself nowhere an empty application_name', () => {
    expect(interpretStartup(base({}), []).settings.get('application_name')).toBe('');
    expect(interpretStartup(base({ options: '-c application_name=x' }), []).settings.get('application_name')).toBe('x');
  });

  it('holds the custom settings budget from login', () => {
    const many = (n: number): string => Array.from({ length: n }, (_, i) => `-c a.s${i}=1`).join(' ');
    expect(interpretStartup(base({ options: many(MAX_CUSTOM_SETTINGS) }), []).settings.size).toBe(
      MAX_CUSTOM_SETTINGS + 1,
    );
    expect(sqlstate(() => interpretStartup(base({ options: many(MAX_CUSTOM_SETTINGS + 1) }), []))).toBe('54000');
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
    for (const address of ['127.0.0.1', '127.4.5.6', '::1', '::ffff:127.0.0.1'])
      expect(plaintextAllowed('allow', address)).toBe(true);
    for (const address of ['10.0.0.1', '::ffff:10.0.0.1', '128.0.0.1', undefined])
      expect(plaintextAllowed('allow', address)).toBe(false);
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
    const out = reportedParameters(
      defaults,
      new Map([
        ['TimeZone', 'Europe/Paris'],
        ['statement_timeout', '5s'],
      ]),
      'app',
      'tenant_acme',
    );
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
