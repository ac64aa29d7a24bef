// MigrationError: a migration folder or file the runner refuses, named so an operator can find and fix it.

/** Where in the folder the problem is; every field that is known is in the message too. */
export interface MigrationErrorPlace {
  /** File name inside the migrations folder (or the journal). */
  file: string;
  /** 1-based statement number inside the file. */
  statement?: number;
  /** The statement's text (shortened in the message). */
  statementText?: string;
  /** The schema the refusal is about. */
  schema?: string;
}

const EXCERPT_CHARS = 160;

export class MigrationError extends Error {
  override readonly name = 'MigrationError';
  readonly file: string;
  readonly statement: number | undefined;
  readonly statementText: string | undefined;
  readonly schema: string | undefined;

  constructor(place: MigrationErrorPlace, problem: string, options?: { cause?: unknown }) {
    super(`${describePlace(place)}: ${problem}`, options);
    this.file = place.file;
    this.statement = place.statement;
    this.statementText = place.statementText;
    this.schema = place.schema;
  }
}

function describePlace(place: MigrationErrorPlace): string {
  if (place.statement === undefined) return `migration ${place.file}`;
  const text = place.statementText === undefined ? '' : ` (${excerpt(place.statementText)})`;
  return `migration ${place.file}, statement ${place.statement}${text}`;
}

/** One line, bounded: statements can be pages long. */
function excerpt(text: string): string {
  const line = text.replace(/\s+/g, ' ').trim();
  return line.length <= EXCERPT_CHARS ? line : `${line.slice(0, EXCERPT_CHARS - 1)}…`;
}
