import { describe, expect, it } from 'vitest';
import { literalKey } from '../../src/guard/literal-key.js';

describe('literalKey', () => {
  it('abstracts plain numbers and strings', () => {
    expect(literalKey('SELECT abalance FROM pgbench_accounts WHERE aid = 42;')).toBe(
      literalKey('SELECT abalance FROM pgbench_accounts WHERE aid = 7;'),
    );
    expect(literalKey("SELECT * FROM items WHERE name = 'x' AND id > 1.5")).toBe(
      "SELECT * FROM items WHERE name = '?' AND id > 0",
    );
  });

  it('keeps identifiers and everything that is not a literal', () => {
    expect(literalKey('SELECT * FROM t1 WHERE c2 = 3')).toBe('SELECT * FROM t1 WHERE c2 = 0');
    expect(literalKey('SELECT * FROM tenant_a.items')).not.toBe(literalKey('SELECT * FROM tenant_b.items'));
    expect(literalKey("SELECT 'a', 'b'")).not.toBe(literalKey("SELECT 'a' || 'b'"));
  });

  it('gives up on anything whose lexing needs the real lexer', () => {
    for (const text of [
      "SELECT E'\\\\'' ; SET ROLE x; --'",
      "SELECT 'it''s'",
      "SELECT U&'\\0041'",
      "SELECT x'1F'",
      'SELECT $1',
      'SELECT $$a$$',
      'SELECT "weird\'name" FROM t',
      "SELECT 1 -- ' comment",
      "SELECT /* ' */ 1",
      'SELECT 1e5',
      'SELECT 0x1F',
      'SELECT 1_000',
      "SELECT 'unterminated",
    ]) {
      expect(literalKey(text), text).toBeNull();
    }
  });
});
