// Splits a migration file into statements with PostgreSQL's own scanner and parser, and reads its pgtp markers.
import { parseSync, scanSync } from 'libpg-query';
import { MigrationError } from './migration-error.js';

/** A comment line that makes a file run outside a transaction, statement by statement (CREATE INDEX CONCURRENTLY). */
export const NO_TRANSACTION_MARKER = '-- pgtp:no-transaction';

export interface SplitSql {
  /** Each statement's text, without the comments before it or the semicolon after it. */
  statements: string[];
  /** The file has a `-- pgtp:no-transaction` comment line (a comment token: never text inside a string). */
  noTransaction: boolean;
}

interface ScanToken {
  start: number;
  end: number;
  text: string;
  tokenName: string;
}

const COMMENT_TOKENS = new Set(['SQL_COMMENT', 'C_COMMENT']);

/**
 * Splits SQL text (one file, or one drizzle breakpoint chunk) into statements. The parser's statement boundaries are
 * exact about quotes, dollar quoting and comments; they are byte offsets, hence the Buffer. The libpg-query module
 * must be loaded (loadParser()).
 */
export function splitSql(text: string, file: string): SplitSql {
  let tree: { stmts?: Array<{ stmt_location?: number; stmt_len?: number }> };
  try {
    tree = parseSync(text);
  } catch (err) {
    const details = (err as { sqlDetails?: { message: string; cursorPosition: number } }).sqlDetails;
    const where = details === undefined ? '' : ` at line ${lineOf(text, details.cursorPosition)}`;
    throw new MigrationError({ file }, `syntax error${where}: ${details?.message ?? (err as Error).message}`, {
      cause: err,
    });
  }
  const bytes = Buffer.from(text);
  const tokens = (scanSync(text) as { tokens: ScanToken[] }).tokens;
  const statements: string[] = [];
  let t = 0;
  for (const entry of tree.stmts ?? []) {
    const start = entry.stmt_location ?? 0;
    const end = entry.stmt_len === undefined || entry.stmt_len === 0 ? bytes.length : start + entry.stmt_len;
    // The parser's range starts right after the previous semicolon: skip the comments and blanks before the statement.
    while (t < tokens.length && (tokens[t]!.start < start || COMMENT_TOKENS.has(tokens[t]!.tokenName))) t++;
    const first = tokens[t];
    if (first === undefined || first.start >= end) continue;
    // ...and the comments after it (the last statement's range runs to the end of the text).
    let last = first.end;
    for (let u = t; u < tokens.length && tokens[u]!.start < end; u++) {
      if (!COMMENT_TOKENS.has(tokens[u]!.tokenName)) last = tokens[u]!.end;
    }
    statements.push(bytes.toString('utf8', first.start, last));
  }
  const noTransaction = tokens.some(
    (token) => token.tokenName === 'SQL_COMMENT' && token.text.trim() === NO_TRANSACTION_MARKER,
  );
  return { statements, noTransaction };
}

/** 1-based line of a 0-based character position the parser reported. */
function lineOf(text: string, position: number): number {
  let line = 1;
  for (let i = 0; i < position && i < text.length; i++) if (text.charCodeAt(i) === 10) line++;
  return line;
}
