import { createHash } from 'node:crypto';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { loadParser } from '../../src/guard/sql-guard.js';
import { MigrationError } from '../../src/migrations/migration-error.js';
import { loadDrizzleMigrations, loadMigrations, loadSqlMigrations } from '../../src/migrations/source.js';
import { splitSql } from '../../src/migrations/split.js';

const DRIZZLE_FIXTURE = new URL('../fixtures/drizzle/', import.meta.url).pathname;
const dirs: string[] = [];

async function folder(files: Record<string, string | Buffer>): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'pgtp-migrations-'));
  dirs.push(dir);
  for (const [name, content] of Object.entries(files)) {
    await mkdir(join(dir, name, '..'), { recursive: true });
    await writeFile(join(dir, name), content);
  }
  return dir;
}

const sha256 = (text: string): string => createHash('sha256').update(text).digest('hex');

beforeAll(loadParser);
afterEach(async () => {
  for (const dir of dirs.splice(0)) await rm(dir, { recursive: true, force: true });
});

describe('splitSql', () => {
  it('splits where the parser does: semicolons in strings, dollar-quoted bodies and comments do not end a statement', () => {
    const sql = [
      '-- leading comment; with a semicolon',
      "INSERT INTO t VALUES ('a;b', E'c\\';d', $q$e;f$q$);",
      '/* block; comment /* nested; */ still; */',
      'CREATE FUNCTION f() RETURNS int LANGUAGE plpgsql AS $body$',
      'BEGIN',
      '  PERFORM 1; -- inside the body;',
      "  RETURN (SELECT count(*) FROM t WHERE x = ';');",
      'END',
      '$body$;',
      'SELECT "quoted;ident" FROM t;;',
      'CREATE FUNCTION g() RETURNS int LANGUAGE sql BEGIN ATOMIC SELECT 1; SELECT 2; END;',
      'SELECT 2 -- no final semicolon; trailing comment',
    ].join('\n');
    expect(splitSql(sql, 'x.sql').statements).toEqual([
      "INSERT INTO t VALUES ('a;b', E'c\\';d', $q$e;f$q$)",
      "CREATE FUNCTION f() RETURNS int LANGUAGE plpgsql AS $body$\nBEGIN\n  PERFORM 1; -- inside the body;\n  RETURN (SELECT count(*) FROM t WHERE x = ';');\nEND\n$body$",
      'SELECT "quoted;ident" FROM t',
      'CREATE FUNCTION g() RETURNS int LANGUAGE sql BEGIN ATOMIC SELECT 1; SELECT 2; END',
      'SELECT 2',
    ]);
  });

  it('keeps multibyte text intact (the parser reports byte offsets)', () => {
    expect(splitSql("SELECT 'héllo ✓';SELECT 'ü'", 'x.sql').statements).toEqual(["SELECT 'héllo ✓'", "SELECT 'ü'"]);
  });

  it('reads the no-transaction marker only as a comment line', () => {
    expect(splitSql('-- pgtp:no-transaction\nCREATE INDEX CONCURRENTLY i ON t (a);', 'x.sql').noTransaction).toBe(true);
    expect(splitSql('CREATE INDEX i ON t (a);\n   -- pgtp:no-transaction   \n', 'x.sql').noTransaction).toBe(true);
    expect(splitSql("SELECT '\n-- pgtp:no-transaction\n';", 'x.sql').noTransaction).toBe(false);
    expect(splitSql('-- pgtp:no-transaction please\nSELECT 1;', 'x.sql').noTransaction).toBe(false);
  });

  it('names the file and line of a syntax error', () => {
    expect(() => splitSql('SELECT 1;\n\nSELEC 2;', '0003_bad.sql')).toThrow(
      /^migration 0003_bad\.sql: syntax error at line 3: syntax error at or near "SELEC"/,
    );
  });
});

describe('plain SQL folders', () => {
  it('orders by version number, ignores other files, and checksums the exact bytes', async () => {
    const files = {
      '0002_users.sql': 'CREATE TABLE users (id int);\r\n',
      '0001_init.sql': '-- init\nCREATE TABLE a (id int);\nCREATE TABLE b (id int);\n',
      '0010_later.sql': 'SELECT 1',
      'README.md': '# not a migration',
      'notes.sql.bak': 'DROP TABLE a;',
    };
    const migrations = await loadSqlMigrations(await folder(files));
    expect(migrations.map((m) => m.id)).toEqual(['0001_init', '0002_users', '0010_later']);
    expect(migrations.map((m) => m.file)).toEqual(['0001_init.sql', '0002_users.sql', '0010_later.sql']);
    expect(migrations[0]!.statements).toEqual(['CREATE TABLE a (id int)', 'CREATE TABLE b (id int)']);
    expect(migrations.map((m) => m.checksum)).toEqual([
      sha256(files['0001_init.sql']),
      sha256(files['0002_users.sql']),
      sha256(files['0010_later.sql']),
    ]);
    expect(migrations.every((m) => !m.noTransaction)).toBe(true);
  });

  it('orders by the number, not the text, when widths differ', async () => {
    const migrations = await loadSqlMigrations(await folder({ '10_b.sql': 'SELECT 10', '9_a.sql': 'SELECT 9' }));
    expect(migrations.map((m) => m.id)).toEqual(['9_a', '10_b']);
  });

  it('refuses two files with the same version, naming both', async () => {
    const dir = await folder({ '0001_init.sql': 'SELECT 1', '0002_a.sql': 'SELECT 2', '0002_b.sql': 'SELECT 3' });
    await expect(loadSqlMigrations(dir)).rejects.toThrow(
      'migration 0002_b.sql: has the same version number as 0002_a.sql',
    );
    const padded = await folder({ '001_x.sql': 'SELECT 1', '0001_y.sql': 'SELECT 2' });
    await expect(loadSqlMigrations(padded)).rejects.toBeInstanceOf(MigrationError);
  });

  it('refuses a .sql file without a version number', async () => {
    await expect(loadSqlMigrations(await folder({ 'init.sql': 'SELECT 1' }))).rejects.toThrow(
      'migration init.sql: the file name must start with a version number',
    );
  });

  it('sets noTransaction from the marker', async () => {
    const dir = await folder({
      '0001_a.sql': 'CREATE TABLE t (a int);',
      '0002_idx.sql': '-- pgtp:no-transaction\nCREATE INDEX CONCURRENTLY t_a ON t (a);\n',
    });
    const migrations = await loadMigrations(dir);
    expect(migrations.map((m) => m.noTransaction)).toEqual([false, true]);
    expect(migrations[1]!.statements).toEqual(['CREATE INDEX CONCURRENTLY t_a ON t (a)']);
  });

  it('refuses a file that is not UTF-8', async () => {
    await expect(
      loadSqlMigrations(await folder({ '0001_a.sql': Buffer.from([0x53, 0x45, 0xff, 0x3b]) })),
    ).rejects.toThrow('migration 0001_a.sql: is not valid UTF-8');
  });
});

describe('drizzle-kit folders', () => {
  it('reads the generated fixture in journal order, statements split at breakpoints', async () => {
    const migrations = await loadMigrations(DRIZZLE_FIXTURE);
    expect(migrations.map((m) => [m.id, m.file, m.statements.length, m.noTransaction])).toEqual([
      ['0000_init', '0000_init.sql', 6, false],
      ['0001_add_published', '0001_add_published.sql', 6, false],
    ]);
    // sha256sum of the committed files: a changed fixture (or a checksum over anything but the bytes) fails here.
    expect(migrations.map((m) => m.checksum)).toEqual([
      '6b9999bebf5ffcd589cc1e194ea158841e3dc673c7700a7077e8bb399d931896',
      'bab83c69ea4bca91f71bedbc3acb99351344c3b9db084b6569424aeda7ade43c',
    ]);
    expect(migrations[0]!.statements[0]).toBe('CREATE TYPE "public"."status" AS ENUM(\'active\', \'archived\')');
    expect(migrations[1]!.statements[5]).toMatch(/^CREATE VIEW "public"\."published_posts" AS \(select .* = true\)$/);
  });

  const journal = (entries: Array<{ idx: number; tag: string }>): string =>
    JSON.stringify({
      version: '7',
      dialect: 'postgresql',
      entries: entries.map((e) => ({ ...e, version: '7', when: 1, breakpoints: true })),
    });

  it('orders by the journal, not by file name, and ignores files it does not list', async () => {
    const dir = await folder({
      'meta/_journal.json': journal([
        { idx: 1, tag: '0000_second' },
        { idx: 0, tag: '0001_first' },
      ]),
      '0000_second.sql': 'SELECT 2',
      '0001_first.sql': 'SELECT 1;--> statement-breakpoint\nSELECT 11',
      '0002_unlisted.sql': 'SELECT 3',
    });
    const migrations = await loadDrizzleMigrations(dir);
    expect(migrations.map((m) => m.id)).toEqual(['0001_first', '0000_second']);
    expect(migrations[0]!.statements).toEqual(['SELECT 1', 'SELECT 11']);
  });

  it('splits at breakpoints as drizzle does, even where a chunk lacks its semicolon', async () => {
    const dir = await folder({
      'meta/_journal.json': journal([{ idx: 0, tag: '0000_custom' }]),
      '0000_custom.sql': '-- pgtp:no-transaction\nSELECT 1\n--> statement-breakpoint\nSELECT 2; SELECT 3;',
    });
    const [migration] = await loadMigrations(dir);
    expect(migration!.statements).toEqual(['SELECT 1', 'SELECT 2', 'SELECT 3']);
    expect(migration!.noTransaction).toBe(true);
  });

  it('refuses a journal that lists a missing file, a tag that leaves the folder, or another dialect', async () => {
    const missing = await folder({ 'meta/_journal.json': journal([{ idx: 0, tag: '0000_gone' }]) });
    await expect(loadMigrations(missing)).rejects.toThrow(
      'migration 0000_gone.sql: listed in meta/_journal.json but cannot be read (ENOENT)',
    );
    const escape = await folder({ 'meta/_journal.json': journal([{ idx: 0, tag: '../../etc/passwd' }]) });
    await expect(loadMigrations(escape)).rejects.toThrow('unsafe tag');
    const mysql = await folder({ 'meta/_journal.json': JSON.stringify({ dialect: 'mysql', entries: [] }) });
    await expect(loadMigrations(mysql)).rejects.toThrow('is for dialect "mysql", not postgresql');
  });
});
