// Loads a migrations folder (plain SQL files, or drizzle-kit's output as it is) into ordered, checksummed migrations.
import { createHash } from 'node:crypto';
import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { loadParser } from '../guard/sql-guard.js';
import { MigrationError } from './migration-error.js';
import { splitSql } from './split.js';

export interface Migration {
  /** What the registry records as applied: the file name without `.sql` (drizzle-kit: the journal's tag). */
  readonly id: string;
  /** The file name inside the folder, for messages. */
  readonly file: string;
  /** The statements in order, each without its semicolon. */
  readonly statements: readonly string[];
  /** SHA-256 (hex) of the file's exact bytes: an applied migration whose file changed is refused by it. */
  readonly checksum: string;
  /** Marked `-- pgtp:no-transaction`: run statement by statement outside a transaction. */
  readonly noTransaction: boolean;
}

/** drizzle-kit's statement separator (a SQL comment, so plain SQL tools ignore it). */
export const DRIZZLE_BREAKPOINT = '--> statement-breakpoint';
const DRIZZLE_JOURNAL = join('meta', '_journal.json');
/** Plain migration files: a version number, then anything; the version orders them. */
const VERSIONED_FILE = /^(\d+)[^/\\]*\.sql$/;
/** A journal tag becomes a file name: nothing that could leave the folder. */
const SAFE_TAG = /^[A-Za-z0-9_][A-Za-z0-9_.-]*$/;

/** A drizzle-kit folder (it has meta/_journal.json) or a folder of plain SQL files. */
export async function loadMigrations(dir: string): Promise<Migration[]> {
  const journal = await readFile(join(dir, DRIZZLE_JOURNAL)).catch((err: NodeJS.ErrnoException) => {
    if (err.code === 'ENOENT') return null;
    throw err;
  });
  return journal === null ? loadSqlMigrations(dir) : loadDrizzleMigrations(dir, journal);
}

/**
 * Plain SQL files ordered by their version number (`0001_init.sql` < `0002_users.sql`; with zero-padded numbers that
 * is file-name order). Other files are ignored; two files with the same version are refused, since which runs first
 * would be an accident.
 */
export async function loadSqlMigrations(dir: string): Promise<Migration[]> {
  await loadParser();
  const entries = await readdir(dir, { withFileTypes: true });
  const files: Array<{ name: string; version: bigint }> = [];
  for (const entry of entries) {
    if (!entry.isFile() || !entry.name.endsWith('.sql')) continue;
    const match = VERSIONED_FILE.exec(entry.name);
    if (match === null)
      throw new MigrationError({ file: entry.name }, 'the file name must start with a version number (0001_name.sql)');
    files.push({ name: entry.name, version: BigInt(match[1]!) });
  }
  files.sort((a, b) => (a.version < b.version ? -1 : a.version > b.version ? 1 : a.name < b.name ? -1 : 1));
  for (let i = 1; i < files.length; i++) {
    if (files[i]!.version === files[i - 1]!.version) {
      throw new MigrationError(
        { file: files[i]!.name },
        `has the same version number as ${files[i - 1]!.name}; renumber one of them`,
      );
    }
  }
  const migrations: Migration[] = [];
  for (const { name } of files) {
    const bytes = await readFile(join(dir, name));
    migrations.push(migrationFromBytes(name.slice(0, -'.sql'.length), name, bytes, false));
  }
  return migrations;
}

interface JournalEntry {
  idx: number;
  tag: string;
}

/** drizzle-kit's output folder: meta/_journal.json lists the migrations (order by idx, file `<tag>.sql`). */
export async function loadDrizzleMigrations(dir: string, journalBytes?: Buffer): Promise<Migration[]> {
  await loadParser();
  const journal = parseJournal(journalBytes ?? (await readFile(join(dir, DRIZZLE_JOURNAL))));
  const migrations: Migration[] = [];
  for (const entry of journal) {
    const file = `${entry.tag}.sql`;
    const bytes = await readFile(join(dir, file)).catch((err: NodeJS.ErrnoException) => {
      throw new MigrationError(
        { file },
        `listed in ${DRIZZLE_JOURNAL} but cannot be read (${err.code ?? err.message})`,
        { cause: err },
      );
    });
    migrations.push(migrationFromBytes(entry.tag, file, bytes, true));
  }
  return migrations;
}

function parseJournal(bytes: Buffer): JournalEntry[] {
  const refuse = (problem: string): never => {
    throw new MigrationError({ file: DRIZZLE_JOURNAL }, problem);
  };
  let journal: unknown;
  try {
    journal = JSON.parse(bytes.toString('utf8'));
  } catch (err) {
    return refuse(`is not JSON (${(err as Error).message})`);
  }
  const { dialect, entries } = (journal ?? {}) as { dialect?: unknown; entries?: unknown };
  if (dialect !== 'postgresql') refuse(`is for dialect ${JSON.stringify(dialect)}, not postgresql`);
  if (!Array.isArray(entries)) return refuse('has no entries list');
  const seen = new Set<string>();
  const out = entries.map((raw: unknown, position) => {
    const { idx, tag } = (raw ?? {}) as { idx?: unknown; tag?: unknown };
    if (typeof idx !== 'number' || !Number.isInteger(idx)) refuse(`entry ${position} has no integer idx`);
    if (typeof tag !== 'string' || !SAFE_TAG.test(tag))
      refuse(`entry ${position} has a missing or unsafe tag ${JSON.stringify(tag)}`);
    if (seen.has(String(idx)) || seen.has(`tag:${String(tag)}`))
      refuse(`lists idx ${String(idx)} or tag ${String(tag)} twice`);
    seen.add(String(idx)).add(`tag:${String(tag)}`);
    return { idx: idx as number, tag: tag as string };
  });
  return out.sort((a, b) => a.idx - b.idx);
}

/**
 * drizzle-kit files are split at breakpoints first, as drizzle's own migrator does (a chunk may lack its final
 * semicolon), then each chunk by the parser; a plain file by the parser alone.
 */
function migrationFromBytes(id: string, file: string, bytes: Buffer, drizzle: boolean): Migration {
  const text = bytes.toString('utf8');
  if (Buffer.compare(Buffer.from(text), bytes) !== 0) throw new MigrationError({ file }, 'is not valid UTF-8');
  const chunks = drizzle ? text.split(DRIZZLE_BREAKPOINT) : [text];
  const statements: string[] = [];
  let noTransaction = false;
  for (const chunk of chunks) {
    const split = splitSql(chunk, file);
    statements.push(...split.statements);
    noTransaction ||= split.noTransaction;
  }
  return Object.freeze({
    id,
    file,
    statements: Object.freeze(statements),
    checksum: createHash('sha256').update(bytes).digest('hex'),
    noTransaction,
  });
}
