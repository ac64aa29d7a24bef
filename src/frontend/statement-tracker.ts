// Which client statement each server completion belongs to, so every completed statement can be audited and counted.
import { Lru } from '../guard/lru.js';
import type { StatementAnalysis } from '../guard/sql-guard.js';

/** What the audit records of a statement: the guard's analysis (fingerprint, normalised text) and, if asked, the text. */
export interface StatementSource {
  analysis: StatementAnalysis | null;
  /** The text as sent; kept only when audit.logStatementText is full. */
  text: string | null;
}

export interface RunningStatement {
  source: StatementSource;
  /** The Sync/Query segment it was sent in (see ClientSession.segmentsSent). */
  segment: number;
  /** performance.now() when it was sent, or when the previous statement of the same Query completed. */
  startedAt: number;
  /** A simple Query: every statement of its string completes against this one entry. */
  simple: boolean;
}

const UNKNOWN: StatementSource = { analysis: null, text: null };
const MAX_TRACKED_STATEMENTS = 1 << 17;

/**
 * Mirrors the client's extended-protocol names (statements → portals → executions) and keeps, in order, the statements
 * sent but not yet completed. The server completes them in the order they were sent, one CommandComplete,
 * EmptyQueryResponse, PortalSuspended or ErrorResponse each; what an error made the server skip is dropped at
 * ReadyForQuery.
 */
export class StatementTracker {
  /**
   * Bounded: a client whose Parses fail on the server (names PreparedStatements forgets again) must not grow it
   * without end. listen.maxPreparedBytes keeps live statements far below this; past it an old one audits as unknown.
   */
  private readonly statements = new Lru<string, StatementSource>(MAX_TRACKED_STATEMENTS);
  private readonly portals = new Map<string, StatementSource>();
  private running: RunningStatement[] = [];
  private head = 0;

  parsed(name: string, source: StatementSource): void {
    this.statements.set(name, source);
  }

  bound(portal: string, statement: string): void {
    this.portals.set(portal, this.statements.get(statement) ?? UNKNOWN);
  }

  closed(kind: 'S' | 'P', name: string): void {
    if (kind === 'S') this.statements.delete(name);
    else this.portals.delete(name);
  }

  query(source: StatementSource, segment: number): void {
    this.running.push({ source, segment, startedAt: performance.now(), simple: true });
  }

  executed(portal: string, segment: number): void {
    this.running.push({
      source: this.portals.get(portal) ?? UNKNOWN,
      segment,
      startedAt: performance.now(),
      simple: false,
    });
  }

  /**
   * The statement a completion in segment `segment` belongs to. An extended-protocol execution is removed; a Query's
   * entry stays for the rest of its string, the caller restarting its clock.
   */
  completed(segment: number): RunningStatement | undefined {
    const entry = this.running[this.head];
    if (entry === undefined || entry.segment !== segment) return undefined;
    if (!entry.simple) this.advance();
    return entry;
  }

  /** Segments before `segmentsDone` are over (ReadyForQuery): whatever of them did not complete never ran. */
  segmentsFinished(segmentsDone: number, transactionOpen: boolean): void {
    while (this.head < this.running.length && this.running[this.head]!.segment < segmentsDone) this.advance();
    // Portals do not outlive their transaction (WITH HOLD cursors are SQL-level, not protocol portals).
    if (!transactionOpen) this.portals.clear();
  }

  /** The segment's statements will not run (the proxy refused one of them in the server's stream). */
  dropSegment(segment: number): void {
    while (this.head < this.running.length && this.running[this.head]!.segment <= segment) this.advance();
  }

  /** Statements sent and not completed, e.g. when the client leaves or the server is lost. */
  unfinished(): RunningStatement[] {
    const left = this.running.slice(this.head);
    this.running = [];
    this.head = 0;
    return left;
  }

  private advance(): void {
    this.head++;
    if (this.head === this.running.length) {
      this.running.length = 0;
      this.head = 0;
    } else if (this.head > 64) {
      this.running = this.running.slice(this.head);
      this.head = 0;
    }
  }
}
