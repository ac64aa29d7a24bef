// Who is owed each reply of one server, in the order the requests went out: its client, or the proxy itself.
import { BackendCode, FrontendCode } from '../protocol/codes.js';
import type { ProxyError } from '../protocol/errors.js';
import { readErrorFields, type ErrorFields } from '../protocol/messages.js';

/** What becomes of one reply. */
export const Route = {
  /** The client's, forwarded as it is. */
  Pass: 0,
  /** An answer to the proxy's own request (or one the client must not see): dropped. */
  Swallow: 1,
  /** The client gets ParseComplete instead (a Parse the server already held, sent as a Close of nothing). */
  AsParseComplete: 2,
  /** The client gets DEALLOCATE's CommandComplete instead (the no-op standing in for a DEALLOCATE). */
  AsDeallocate: 3,
  /** The client gets the refusal's error instead of the sentinel's syntax error (see `refusal`). */
  AsRefusal: 4,
  /** Nothing was asked of the server: the reply is unsolicited. */
  Unowned: 5,
} as const;
export type Route = (typeof Route)[keyof typeof Route];

/** What a marked completion of the client's segment becomes. */
export type Fate = typeof Route.Pass | typeof Route.Swallow | typeof Route.AsParseComplete | typeof Route.AsDeallocate;

/** Completions are matched to requests by kind and order within their segment. */
export type CompletionKind = 'parse' | 'close' | 'command';

/** A query of the proxy's own (reset, settings snapshot or restore): ends after `readies` ReadyForQuery replies. */
export interface ProxyQuery {
  readies: number;
  /** Each DataRow's column values (NULL as ''). */
  onRow: ((values: string[]) => void) | null;
  /** The first error among its replies (SQLSTATE and message), or null; and the last ReadyForQuery status. */
  onDone(error: string | null, status: number): void;
}

/**
 * Unsynced statements sent in front of a client's segment (the pin, after a hand-over's DISCARD ALL too): they end at
 * their last completion. If one fails, PostgreSQL skips every message up to the client's Sync.
 */
export interface PinRun {
  completions: number;
  /** Its first statement is a hand-over's DISCARD ALL (see ServerConn.pinAfterReset). */
  handOver: boolean;
  onConfirmed(): void;
  /** `seen`: how many of its statements had completed (0: the first one failed). */
  onFailed(code: string, message: string, seen: number): void;
}

interface Mark {
  kind: CompletionKind;
  /** Position among its kind's requests in the segment; -1 until that request goes out. */
  ordinal: number;
  fate: Fate;
  /** Called when the segment ended without this completion (an error made the server skip its request). */
  skipped: (() => void) | null;
}

/** A client segment: the requests up to a Sync, Query or FunctionCall, answered by one ReadyForQuery. */
class Segment {
  readonly kind = 'client';
  synced = false;
  refusal: ProxyError | null = null;
  marks: Mark[] | null = null;
  readonly sent = { parse: 0, close: 0, command: 0 };
  readonly seen = { parse: 0, close: 0, command: 0 };
  /** A stale-plan replay is under way: the failed attempt's ReadyForQuery, then the re-prepare's Close and Parse. */
  retryReady = 0;
  retryCompletions = 0;
  /** Called if the re-prepare fails: the replayed requests are then skipped, and the client hears why. */
  retryFailed: (() => void) | null = null;
}

interface QueryEntry {
  kind: 'query';
  query: ProxyQuery;
  error: string | null;
}
interface RunEntry {
  kind: 'run';
  run: PinRun;
  seen: number;
}
type Entry = QueryEntry | RunEntry | Segment;

const COMPLETION_OF: Partial<Record<number, CompletionKind>> = {
  [FrontendCode.Parse]: 'parse',
  [FrontendCode.Close]: 'close',
  [FrontendCode.Execute]: 'command',
  [FrontendCode.Query]: 'command',
};

/**
 * The one place that knows whose each server reply is. Requests are entered in the order they go out on the socket;
 * PostgreSQL answers in that order, so the reply at hand belongs to the oldest entry still owed one:
 * - a proxy query (reset, snapshot, restore) swallows everything up to its last ReadyForQuery;
 * - a pin run swallows its completions, and reports its success or failure;
 * - a client segment passes its replies, except the completions the proxy marked (a Parse or Close it added, a
 *   Close of nothing standing in for a Parse, the no-op standing in for a DEALLOCATE), the sentinel's error of a
 *   refused statement, and the replies of a stale-plan attempt being replayed.
 * Segment numbers are the client's, counted across its servers (see attach).
 */
export class ReplyLedger {
  private entries: Entry[] = [];
  private head = 0;
  /** The client segment being sent (no Sync yet), also in `entries`. */
  private open: Segment | null = null;
  /** Client segments synced so far, and answered so far (the client's numbering). */
  sent = 0;
  done = 0;
  /** COPY FROM STDIN is running: PostgreSQL ignores Syncs until the client's CopyDone or CopyFail. */
  copyIn = false;
  /** Syncs entered since the last Execute or Query: all of them are ignored if that Execute starts COPY FROM STDIN. */
  private syncsSinceExecute = 0;
  /** The last ErrorResponse routed, decoded. */
  lastError: ErrorFields | null = null;

  /** ReadyForQuery replies the client is still owed. */
  get owed(): number {
    return this.sent - this.done;
  }

  /** Extended-protocol messages went out since the last Sync: the server must stay with the client until it. */
  get unsynced(): boolean {
    return this.open !== null;
  }

  /** Nothing at all is owed. */
  get idle(): boolean {
    return this.head === this.entries.length;
  }

  /** The oldest entry owed a reply is the client's: its replies pass unless they are ledger business. */
  get clientAtHead(): boolean {
    return this.entries[this.head]?.kind === 'client';
  }

  /** The hand-over's DISCARD ALL is the reply awaited. */
  get discarding(): boolean {
    const entry = this.entries[this.head];
    return entry?.kind === 'run' && entry.run.handOver && entry.seen === 0;
  }

  /** Whether a pin run or a client segment is still owed anything. */
  get clientWork(): boolean {
    for (let i = this.head; i < this.entries.length; i++) if (this.entries[i]!.kind !== 'query') return true;
    return false;
  }

  /** A client is pinned whose segments so far number `segments`. */
  attach(segments: number): void {
    this.sent = segments;
    this.done = segments;
    this.copyIn = false;
    this.syncsSinceExecute = 0;
  }

  /**
   * The client is gone: its proxy queries still owed replies finish without their callbacks (the reset is queued
   * behind them), and nothing of it is owed any more.
   */
  detach(): void {
    for (let i = this.head; i < this.entries.length; i++) {
      const entry = this.entries[i]!;
      if (entry.kind === 'query') entry.query = { readies: entry.query.readies, onRow: null, onDone: ignoreDone };
    }
    this.open = null;
  }

  query(query: ProxyQuery): void {
    this.entries.push({ kind: 'query', query, error: null });
  }

  pinRun(run: PinRun): void {
    this.entries.push({ kind: 'run', run, seen: 0 });
  }

  /**
   * The completion of the next request of `kind` the client's segment sends becomes `fate`; `skipped` runs if the
   * segment ends without it.
   */
  expect(kind: CompletionKind, fate: Fate, skipped: (() => void) | null = null): void {
    const segment = this.segment();
    (segment.marks ??= []).push({ kind, ordinal: -1, fate, skipped });
  }

  /** The refused statement's sentinel goes out in the current segment: its error becomes `error`. */
  refuse(error: ProxyError): void {
    this.segment().refusal ??= error;
  }

  /** A client-side frame went out (the client's, or one the proxy put in its place). True when it ended a segment. */
  request(code: number): boolean {
    switch (code) {
      case FrontendCode.CopyData:
        return false;
      case FrontendCode.CopyDone:
      case FrontendCode.CopyFail:
        this.copyIn = false;
        return false;
      case FrontendCode.Sync:
        // PostgreSQL ignores Sync during COPY FROM STDIN: no ReadyForQuery will answer it.
        if (this.copyIn) return false;
    }
    const segment = this.segment();
    const kind = COMPLETION_OF[code];
    if (kind !== undefined) {
      const ordinal = segment.sent[kind]++;
      const mark = segment.marks?.find((m) => m.kind === kind && m.ordinal === -1);
      if (mark !== undefined) mark.ordinal = ordinal;
    }
    switch (code) {
      case FrontendCode.Query:
        this.syncsSinceExecute = 0;
        return this.endSegment();
      case FrontendCode.FunctionCall:
        return this.endSegment();
      case FrontendCode.Execute:
        this.syncsSinceExecute = 0;
        return false;
      case FrontendCode.Sync:
        this.syncsSinceExecute++;
        return this.endSegment();
      default:
        return false;
    }
  }

  /** Every frame of a buffer the proxy sent in place of the client's frame. */
  requests(buf: Buffer): boolean {
    let ended = false;
    for (let at = 0; at < buf.length; at += 1 + buf.readUInt32BE(at + 1)) ended = this.request(buf[at]!) || ended;
    return ended;
  }

  /**
   * The replies of the head segment's failed attempt are being replayed (StalePlanRetry): its ReadyForQuery, then the
   * re-prepare's CloseComplete and ParseComplete, are the proxy's.
   */
  replay(failed: () => void): void {
    const entry = this.entries[this.head];
    if (entry?.kind !== 'client') throw new Error('replay without a client segment');
    entry.retryReady = 1;
    entry.retryCompletions = 2;
    entry.retryFailed = failed;
  }

  /** Routes one reply and updates what is owed. */
  route(code: number, buf: Buffer, start: number, end: number): Route {
    const entry = this.entries[this.head];
    if (code === BackendCode.ErrorResponse) this.lastError = readErrorFields(buf, start, end);
    if (entry === undefined) return Route.Unowned;
    switch (entry.kind) {
      case 'query':
        return this.routeQuery(entry, code, buf, start, end);
      case 'run':
        return this.routeRun(entry, code);
      case 'client':
        return this.routeClient(entry, code);
    }
  }

  private routeQuery(entry: QueryEntry, code: number, buf: Buffer, start: number, end: number): Route {
    switch (code) {
      case BackendCode.ErrorResponse:
        entry.error ??= `${this.lastError!.code} ${this.lastError!.message}`;
        break;
      case BackendCode.DataRow:
        if (entry.query.onRow !== null) {
          const values = columns(buf, start, end);
          if (values !== null) entry.query.onRow(values);
        }
        break;
      case BackendCode.ReadyForQuery:
        if (--entry.query.readies > 0) break;
        this.shift();
        entry.query.onDone(entry.error, buf[start + 5]!);
        break;
    }
    return Route.Swallow;
  }

  private routeRun(entry: RunEntry, code: number): Route {
    switch (code) {
      case BackendCode.CommandComplete:
      case BackendCode.CloseComplete:
        if (++entry.seen < entry.run.completions) break;
        this.shift();
        entry.run.onConfirmed();
        break;
      case BackendCode.ErrorResponse:
        this.shift();
        entry.run.onFailed(this.lastError!.code, this.lastError!.message, entry.seen);
        break;
      case BackendCode.ReadyForQuery:
        // A run holds no Sync: a ReadyForQuery cannot answer it.
        return Route.Unowned;
    }
    return Route.Swallow;
  }

  private routeClient(segment: Segment, code: number): Route {
    switch (code) {
      case BackendCode.ParseComplete:
      case BackendCode.CloseComplete:
        if (segment.retryCompletions > 0) {
          if (--segment.retryCompletions === 0) segment.retryFailed = null;
          return Route.Swallow;
        }
        return this.fate(segment, code === BackendCode.ParseComplete ? 'parse' : 'close');
      case BackendCode.CommandComplete:
      case BackendCode.EmptyQueryResponse:
      case BackendCode.PortalSuspended:
        return this.fate(segment, 'command');
      case BackendCode.ErrorResponse:
        if (segment.retryCompletions > 0) {
          segment.retryCompletions = 0;
          segment.retryFailed?.();
        }
        if (segment.refusal !== null && this.lastError!.message.includes(REFUSAL_SENTINEL)) return Route.AsRefusal;
        return Route.Pass;
      case BackendCode.ReadyForQuery:
        if (segment.retryReady > 0) {
          segment.retryReady--;
          return Route.Swallow;
        }
        if (!segment.synced) return Route.Unowned;
        this.shift();
        this.done++;
        if (segment.marks !== null) for (const mark of segment.marks) mark.skipped?.();
        return Route.Pass;
      case BackendCode.CopyInResponse:
        this.onCopyIn(segment);
        return Route.Pass;
      default:
        return Route.Pass;
    }
  }

  /**
   * The head segment's error went to the client: the server skips the rest of the segment, so what the marks still
   * wait for will not come. Run their `skipped` now, not at ReadyForQuery: a client that acts on the error at once (a
   * pipelining driver re-Parsing the failed statement's name) must find the proxy's state as PostgreSQL left it.
   */
  errorPassed(): void {
    const entry = this.entries[this.head];
    if (entry?.kind !== 'client' || entry.marks === null) return;
    const marks = entry.marks;
    entry.marks = null;
    for (const mark of marks) mark.skipped?.();
  }

  /** The refusal the last AsRefusal stands for. */
  refusalOfHead(): ProxyError | null {
    const entry = this.entries[this.head];
    return entry?.kind === 'client' ? entry.refusal : null;
  }

  private fate(segment: Segment, kind: CompletionKind): Route {
    const ordinal = segment.seen[kind]++;
    const marks = segment.marks;
    if (marks === null) return Route.Pass;
    const at = marks.findIndex((m) => m.kind === kind && m.ordinal === ordinal);
    if (at < 0) return Route.Pass;
    return marks.splice(at, 1)[0]!.fate;
  }

  /**
   * COPY FROM STDIN began: the Syncs pipelined behind the Execute that started it are ignored, so its segment is open
   * again and the empty segments those Syncs made are owed nothing.
   */
  private onCopyIn(segment: Segment): void {
    this.copyIn = true;
    const ignored = this.syncsSinceExecute;
    if (ignored === 0) return;
    this.syncsSinceExecute = 0;
    this.sent -= ignored;
    this.entries.splice(this.head + 1, ignored - 1);
    segment.synced = false;
    this.open = segment;
  }

  private segment(): Segment {
    if (this.open !== null) return this.open;
    const segment = new Segment();
    this.open = segment;
    this.entries.push(segment);
    return segment;
  }

  private endSegment(): boolean {
    this.open!.synced = true;
    this.open = null;
    this.sent++;
    return true;
  }

  private shift(): void {
    this.head++;
    if (this.head === this.entries.length) {
      this.entries.length = 0;
      this.head = 0;
    } else if (this.head > 64) {
      this.entries = this.entries.slice(this.head);
      this.head = 0;
    }
  }
}

/** Text that PostgreSQL's grammar rejects at Parse time; stands in for a refused statement on a pinned server. */
export const REFUSAL_SENTINEL = 'pg_tenant_proxy_refused_statement';

function ignoreDone(): void {}

/** The text of a DataRow's columns (NULL as ''), or null when the row is malformed. */
function columns(buf: Buffer, start: number, end: number): string[] | null {
  const count = buf.readInt16BE(start + 5);
  const values: string[] = [];
  let at = start + 7;
  for (let i = 0; i < count; i++) {
    if (at + 4 > end) return null;
    const len = buf.readInt32BE(at);
    at += 4;
    if (len > 0 && at + len > end) return null;
    values.push(len < 0 ? '' : buf.toString('utf8', at, at + len));
    if (len > 0) at += len;
  }
  return values;
}
