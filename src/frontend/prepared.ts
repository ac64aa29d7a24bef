// Named prepared statements in transaction mode: the client's names, mapped onto statements cached per server.
import { Route } from '../backend/replies.js';
import type { SchemaGeneration } from '../backend/schema-generations.js';
import type { ServerConn, ServerStatement } from '../backend/server-conn.js';
import { SERVER_STATEMENT_PREFIX } from '../guard/analyze.js';
import type { StatementAnalysis } from '../guard/sql-guard.js';
import { FrontendCode, SqlState, TxStatus } from '../protocol/codes.js';
import { ProxyError } from '../protocol/errors.js';
import { encodeQuery, encodeUnnamedParse, readCString, type ErrorFields } from '../protocol/messages.js';
import { Writer } from '../protocol/writer.js';
import { isStalePlan, StalePlanRetry } from './stale-plan-retry.js';

interface ClientStatement {
  /**
   * The server-side cache key: tenant schema, its schema generation when the client parsed the statement, and the
   * Parse body after the name (query text and parameter types). A statement prepared under another generation may
   * have another row type or resolve names differently, so it never stands in; one of the same generation does,
   * and PostgreSQL then refuses it (0A000) exactly when it would refuse the client's own on a direct connection.
   */
  key: string;
  /** The Parse body after the name, to re-prepare on a server that lacks it. */
  body: Buffer;
  /** What it is charged against listen.maxPreparedBytes. */
  cost: number;
  /** When the client parsed it, on the statement clock (see ServerStatement.preparedAt). */
  parsedAt: number;
  /** DDL: each Bind of it changes the tenant's schema. */
  changesSchema: boolean;
}

/** Per-statement charge besides its body (held twice: as the key and the body): the map entries and objects. */
const STATEMENT_OVERHEAD_BYTES = 256;

/** A statement name no server ever holds: Close/Describe aimed at it answer without touching anything real. */
const NO_SUCH_STATEMENT = `${SERVER_STATEMENT_PREFIX}none`;
/** Closing a portal that does not exist is answered with CloseComplete: a stand-in for a Parse already done. */
const CLOSE_NOTHING = new Writer(32).begin(0x43).int8(0x50).cstring(NO_SUCH_STATEMENT).end().flush(); // Close 'P'
const CLOSE_NOTHING_STATEMENT = new Writer(32).begin(0x43).int8(0x53).cstring(NO_SUCH_STATEMENT).end().flush(); // Close 'S'

/**
 * Stands in for a DEALLOCATE the proxy answers itself: a no-op that, like DEALLOCATE, answers with a bare
 * CommandComplete and fails with 25P02 in an aborted transaction. Its place in the replies marks it, not its tag.
 */
export const DEALLOCATE_NO_OP = 'UNLISTEN pgtp_deallocate';
const NO_OP_QUERY = encodeQuery(DEALLOCATE_NO_OP);
const NO_OP_PARSE = encodeUnnamedParse(DEALLOCATE_NO_OP);

/** Statements kept per server before the least recently used is closed. */
const SERVER_STATEMENT_LIMIT = 500;
/** Server statements recorded per segment, to mark stale when PostgreSQL says a plan changed under one of them. */
const TOUCHED_LIMIT = 256;
let nextStatementId = 1;
/** Orders client Parses and server prepares: a server statement older than a client's Parse may predate DDL. */
let statementClock = 0;

/**
 * Whether a Parse may be answered without a server: the guard parsed the text, and running it changes neither
 * settings, the server's prepared statements nor the schema, which the session notes only for what goes to a server.
 */
function answerableLocally(analysis: StatementAnalysis | null | undefined): boolean {
  return (
    analysis != null &&
    analysis.denial === null &&
    !analysis.changesSettings &&
    !analysis.touchesPrepared &&
    !analysis.changesSchema &&
    analysis.catalog === null // a catalog statement is stored as rewritten, on its way to a server (link-requests.ts)
  );
}

/**
 * Each client's named statements live here, not on any server. On whatever server the client is pinned to, a
 * statement is prepared under a proxy-chosen name shared by every client of the same tenant with the same text and
 * parameter types, and Bind/Describe/Close are rewritten to it. Responses are kept exactly as PostgreSQL would send
 * them: a Parse the server already holds is replaced by a Close of nothing whose CloseComplete becomes a
 * ParseComplete, and the ParseComplete of a Parse the proxy injects is swallowed.
 *
 * A server statement stands in for a client's only if the schema cannot have changed between the two, as far as the
 * proxy knows: DDL through the proxy moves the tenant to a new generation, part of the key (see ClientStatement), and
 * a statement PostgreSQL found stale is marked so (see shareable). DDL it cannot see is caught by StalePlanRetry.
 */
export class PreparedStatements {
  private readonly statements = new Map<string, ClientStatement>();
  /** The statements' summed cost, held under maxBytes. */
  private bytes = 0;
  private sendSegment = 0;
  /** The unnamed statement is a substituted DEALLOCATE, and the unnamed portal was bound to it. */
  private unnamedDeallocates = false;
  private unnamedPortalDeallocates = false;
  /** Segments answered (ReadyForQuery) and the transaction status the last one reported. */
  private answered = 0;
  private status: number = TxStatus.Idle;
  /** A Bind, Describe or Execute went out in the segment being sent. */
  private segmentTouched = false;
  /** DDL went out in this segment: the generation moves again once its transaction is over (-1: none). */
  private schemaChangeSegment = -1;
  /** Server statements bound or described, by segment, oldest first (parallel arrays: no allocation per Bind). */
  private readonly touchedSegments: number[] = [];
  private readonly touchedStatements: ServerStatement[] = [];
  private readonly retry = new StalePlanRetry();

  constructor(
    private readonly schema: string,
    /** listen.maxPreparedBytes. */
    private readonly maxBytes: number,
    /** The tenant's schema generation, shared with its other sessions on the same pool. */
    private generation: SchemaGeneration,
  ) {}

  /** The tenant's route moved it to another pool: DDL is counted where its statements are now cached. */
  useGeneration(generation: SchemaGeneration): void {
    this.generation = generation;
  }

  /** The session forwarded a Sync, Query or FunctionCall: a new segment starts. */
  segmentSent(next: number): void {
    // Fewer than before: COPY FROM STDIN swallowed Syncs; nothing of that segment is replayed.
    if (next <= this.sendSegment) this.retry.segmentOver(this.sendSegment);
    this.sendSegment = next;
    this.segmentTouched = false;
  }

  /** ReadyForQuery (transaction status `status`) ended segment `done`. */
  segmentDone(done: number, status: number): void {
    this.answered = done + 1;
    this.status = status;
    this.retry.segmentOver(done);
    if (this.schemaChangeSegment >= 0 && this.schemaChangeSegment <= done && status === TxStatus.Idle) {
      // Committed or rolled back: statements prepared inside the DDL's transaction saw a schema that may not be.
      this.schemaChangeSegment = -1;
      this.generation.value++;
    }
    if (this.touchedSegments.length > 0) this.untouch(done);
  }

  /**
   * DDL is going to the server (a Query, a Parse, or the Bind of a statement that is DDL): statements prepared before
   * it no longer stand in for the tenant's Parses after it. Once its transaction ends the generation moves again (see
   * segmentDone): a statement prepared inside that transaction saw a schema that a rollback took back.
   */
  schemaChanged(): void {
    this.generation.value++;
    this.schemaChangeSegment = this.sendSegment;
  }

  /**
   * An ErrorResponse from the server, before the session handles it. True when it is the proxy's own to swallow: a
   * stale plan of a shared statement, being prepared again and the client's segment replayed (StalePlanRetry).
   */
  onServerError(fields: ErrorFields): boolean {
    // Whatever happens next, the statements of this segment are not shared again with Parses made after them.
    if (isStalePlan(fields)) this.markStale(this.answered);
    return this.retry.retried(fields, this.answered, ++statementClock);
  }

  /** Whether a frame sent to the server must be reported to `sent`. */
  get recording(): boolean {
    return this.retry.recording;
  }

  /** A client frame went to the server, as `replacement` if rewritten, while `recording`. */
  sent(replacement: Buffer | null, frame: Buffer, start: number, end: number): void {
    if (replacement === null) this.retry.sent(frame, start, end);
    else this.retry.sent(replacement, 0, replacement.length);
  }

  /** A statement of the segment being received completed (CommandComplete, EmptyQueryResponse, PortalSuspended). */
  statementCompleted(): void {
    this.retry.ran();
  }

  /**
   * Any Parse: unnamed ones are only counted. `changesSchema`: the statement is DDL. Returns the frame(s) to send, or
   * an error to refuse with.
   */
  parse(
    frame: Buffer,
    start: number,
    end: number,
    server: ServerConn,
    changesSchema: boolean,
  ): Buffer | null | ProxyError {
    if (frame[start + 5] === 0) {
      this.unnamedDeallocates = false;
      return null;
    }
    const [name, afterName] = readCString(frame, start + 5, end);
    const statement = this.add(name, frame, afterName, end, changesSchema);
    if (statement instanceof ProxyError) return statement;
    const existing = server.statements.get(statement.key);
    if (existing !== undefined && shareable(existing, statement)) {
      server.statements.touch(statement.key, existing);
      server.replies.expect('close', Route.AsParseComplete);
      return CLOSE_NOTHING;
    }
    return this.prepareOn(server, statement, Route.Pass, name, existing);
  }

  /**
   * A Parse arriving outside a transaction, `next` the type byte of the frame behind it (-1: not arrived yet). A named
   * one with its Sync or Flush right behind, of a text the guard parsed (answerableLocally), is answered by the
   * session itself: the statement exists for the client at once and is prepared on a server when first bound or
   * described, where an error in it (a missing table) then surfaces with PostgreSQL's own message and SQLSTATE, and the
   * transaction status PostgreSQL reports. Anything else behind it (a Bind, a Describe needing the server's answer),
   * and it goes to a server, so the errors of a batch keep their place. Returns the statement's name when answered,
   * the error to refuse it with (42P05, 54000), or null: send it to a server.
   */
  answerParse(
    frame: Buffer,
    start: number,
    end: number,
    analysis: StatementAnalysis | null | undefined,
    next: number,
  ): string | ProxyError | null {
    if (
      frame[start + 5] === 0 ||
      (next !== FrontendCode.Sync && next !== FrontendCode.Flush) ||
      !answerableLocally(analysis)
    )
      return null;
    const [name, afterName] = readCString(frame, start + 5, end);
    const statement = this.add(name, frame, afterName, end, false);
    return statement instanceof ProxyError ? statement : name;
  }

  private add(
    name: string,
    frame: Buffer,
    afterName: number,
    end: number,
    changesSchema: boolean,
  ): ClientStatement | ProxyError {
    if (this.statements.has(name)) {
      return new ProxyError(SqlState.DUPLICATE_PREPARED_STATEMENT, `prepared statement "${name}" already exists`);
    }
    const cost = 2 * (end - afterName) + STATEMENT_OVERHEAD_BYTES;
    if (this.bytes + cost > this.maxBytes) {
      return new ProxyError(
        SqlState.PROGRAM_LIMIT_EXCEEDED,
        `prepared statements of this connection would exceed the proxy's limit of ${this.maxBytes} bytes (listen.maxPreparedBytes)`,
        'ERROR',
        undefined,
        'close or deallocate prepared statements this connection no longer uses',
      );
    }
    const body = Buffer.from(frame.subarray(afterName, end));
    const statement: ClientStatement = {
      key: `${this.schema}\0${this.generation.value}\0${body.toString('latin1')}`,
      body,
      cost,
      parsedAt: ++statementClock,
      changesSchema,
    };
    this.statements.set(name, statement);
    this.bytes += cost;
    return statement;
  }

  /** Bind naming a statement: make sure the server holds it, then point the Bind at the server's name. */
  bind(frame: Buffer, start: number, end: number, server: ServerConn): Buffer | null | ProxyError {
    const [portal, afterPortal] = readCString(frame, start + 5, end);
    if (portal === '') this.unnamedPortalDeallocates = this.unnamedDeallocates && frame[afterPortal] === 0;
    if (frame[afterPortal] === 0) {
      this.segmentTouched = true;
      return null;
    }
    const [name, afterName] = readCString(frame, afterPortal, end);
    const ensured = this.ensure(name, server, true);
    if (ensured instanceof ProxyError) return ensured;
    const rewritten = new Writer(end - start + 16).begin(0x42).cstring(portal).cstring(ensured.serverName);
    rewritten.bytes(frame.subarray(afterName, end));
    return concat(ensured.prefix, rewritten.end().flush());
  }

  /** Describe of a statement: same as Bind; portals pass untouched. */
  describe(frame: Buffer, start: number, end: number, server: ServerConn): Buffer | null | ProxyError {
    if (frame[start + 5] !== 0x53 || frame[start + 6] === 0) {
      // Not 'S' with a name: a portal, or the unnamed statement.
      this.segmentTouched = true;
      return null;
    }
    const [name] = readCString(frame, start + 6, end);
    const ensured = this.ensure(name, server, false);
    if (ensured instanceof ProxyError) return ensured;
    const rewritten = new Writer(32).begin(0x44).int8(0x53).cstring(ensured.serverName).end().flush();
    return concat(ensured.prefix, rewritten);
  }

  /** Close of a statement forgets the client's name; the server keeps its copy for the next client of the tenant. */
  close(frame: Buffer, start: number, end: number): Buffer | null {
    if (frame[start + 5] !== 0x53 || frame[start + 6] === 0) return null;
    this.forget(readCString(frame, start + 6, end)[0]);
    return CLOSE_NOTHING_STATEMENT;
  }

  /**
   * An Execute: counted, so the completion that answers a substituted DEALLOCATE is known by its place. Drivers run
   * one through the unnamed portal; bound to a named portal it answers with the no-op's tag.
   */
  execute(frame: Buffer, start: number, server: ServerConn): void {
    this.segmentTouched = true;
    if (this.unnamedPortalDeallocates && frame[start + 5] === 0) server.replies.expect('command', Route.AsDeallocate);
  }

  /**
   * SQL DEALLOCATE, sent as a Query or an unnamed Parse (psycopg and Rails do so when they evict from their statement
   * caches). Of a name the client prepared with a protocol Parse, which no server knows: the name is forgotten and
   * the no-op to send instead is returned, its CommandComplete turned into DEALLOCATE's (Route.AsDeallocate); the
   * server keeps its copy for the tenant's other clients, as after a Close. DEALLOCATE ALL forgets every name and
   * goes to the server (it drops what SQL PREPARE made there too). Null: send the frame as it is.
   */
  deallocate(name: string | null, via: 'query' | 'parse', server: ServerConn): Buffer | null {
    if (name === null) {
      this.statements.clear();
      this.bytes = 0;
      return null;
    }
    if (!this.forget(name)) return null;
    if (via === 'query') {
      server.replies.expect('command', Route.AsDeallocate);
      return NO_OP_QUERY;
    }
    this.unnamedDeallocates = true;
    return NO_OP_PARSE;
  }

  private forget(name: string): boolean {
    const statement = this.statements.get(name);
    if (statement === undefined) return false;
    this.statements.delete(name);
    this.bytes -= statement.cost;
    return true;
  }

  /**
   * The server name to bind (`binding`) or describe a client statement under, with the frames that must precede it
   * there: its Parse when the server lacks it or holds a version found stale since (which it closes).
   */
  private ensure(
    name: string,
    server: ServerConn,
    binding: boolean,
  ): { serverName: string; prefix: Buffer | null } | ProxyError {
    const statement = this.statements.get(name);
    if (statement === undefined) {
      return new ProxyError(SqlState.INVALID_SQL_STATEMENT_NAME, `prepared statement "${name}" does not exist`);
    }
    if (binding && statement.changesSchema) this.schemaChanged();
    const opensSegment = !this.segmentTouched && this.answered === this.sendSegment && this.status === TxStatus.Idle;
    this.segmentTouched = true;
    const existing = server.statements.get(statement.key);
    if (existing !== undefined && shareable(existing, statement)) {
      server.statements.touch(statement.key, existing);
      this.touched(existing);
      // Prepared before the client's Parse: DDL the proxy never saw may lie between them (see StalePlanRetry).
      // On a Bind only: a Describe sends its ParameterDescription before PostgreSQL finds the plan stale, so a replay
      // would answer it twice.
      if (binding && existing.preparedAt < statement.parsedAt && opensSegment)
        this.retry.arm(server, statement.key, existing, statement.body, this.sendSegment);
      return { serverName: existing.name, prefix: null };
    }
    const prefix = this.prepareOn(server, statement, Route.Swallow, undefined, existing);
    const prepared = server.statements.get(statement.key)!;
    this.touched(prepared);
    return { serverName: prepared.name, prefix };
  }

  /**
   * A Parse of the statement under a new server name, preceded by the Close of the version it replaces (`replaced`:
   * one found stale) or, when the server is full, of its least recently used statement.
   */
  private prepareOn(
    server: ServerConn,
    statement: ClientStatement,
    fate: typeof Route.Pass | typeof Route.Swallow,
    clientName: string | undefined,
    replaced: ServerStatement | undefined,
  ): Buffer {
    let close: Buffer | null = null;
    if (replaced !== undefined) {
      server.statements.delete(statement.key);
      close = this.closeOn(server, replaced.name);
    } else if (server.statements.size >= SERVER_STATEMENT_LIMIT) {
      close = this.closeOn(server, server.statements.evictOldest()!.name);
    }
    const serverName = `${SERVER_STATEMENT_PREFIX}${nextStatementId++}`;
    const key = statement.key;
    server.statements.touch(key, { name: serverName, preparedAt: ++statementClock, stale: false });
    const parse = new Writer(statement.body.length + 32)
      .begin(0x50)
      .cstring(serverName)
      .bytes(statement.body)
      .end()
      .flush();
    // A Parse that never completes creates its statement neither on the server nor for the client.
    server.replies.expect('parse', fate, () => {
      server.statements.delete(key);
      if (clientName !== undefined && this.statements.get(clientName)?.key === key) this.forget(clientName);
    });
    return concat(close, parse);
  }

  /** A Close of a server statement the proxy drops, its CloseComplete swallowed. */
  private closeOn(server: ServerConn, name: string): Buffer {
    // A Close that never completes leaves its statement on the server: still counted (the reset's proof), and evicted
    // in its turn under a key no client has.
    server.replies.expect('close', Route.Swallow, () => server.statements.touch(`\0${name}`, orphan(name)));
    return new Writer(32).begin(0x43).int8(0x53).cstring(name).end().flush();
  }

  private touched(statement: ServerStatement): void {
    if (this.touchedSegments.length >= TOUCHED_LIMIT) return;
    this.touchedSegments.push(this.sendSegment);
    this.touchedStatements.push(statement);
  }

  /** Segments up to `done` are answered: their statements need no blame any more. */
  private untouch(done: number): void {
    const length = this.touchedSegments.length;
    let over = 0;
    while (over < length && this.touchedSegments[over]! <= done) over++;
    // In place (splice would allocate the removed part): usually all of them go.
    if (over < length) {
      this.touchedSegments.copyWithin(0, over);
      this.touchedStatements.copyWithin(0, over);
    }
    this.touchedSegments.length = length - over;
    this.touchedStatements.length = length - over;
  }

  /**
   * PostgreSQL refused a plan in segment `segment` as stale: which statement it was is not said, so each server
   * statement the segment bound or described stops standing in for Parses made after it (costing at worst a re-prepare).
   */
  private markStale(segment: number): void {
    for (let i = 0; i < this.touchedSegments.length; i++) {
      if (this.touchedSegments[i] === segment) this.touchedStatements[i]!.stale = true;
    }
  }
}

/**
 * Whether a server statement of the client statement's key may stand in for it: not when PostgreSQL found its plan
 * stale and it predates the client's Parse (so may the schema change). One prepared after the Parse stands in even
 * then: a direct connection would refuse the client's statement (0A000) as well.
 */
function shareable(server: ServerStatement, client: ClientStatement): boolean {
  return !(server.stale && server.preparedAt < client.parsedAt);
}

/** A statement whose Close was skipped: still on the server, under a key no client has, evicted in its turn. */
function orphan(name: string): ServerStatement {
  return { name, preparedAt: 0, stale: true };
}

function concat(prefix: Buffer | null, frame: Buffer): Buffer {
  return prefix === null ? frame : Buffer.concat([prefix, frame]);
}
