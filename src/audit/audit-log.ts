// The audit trail: one JSON line per connection event, completed statement and guard refusal (field names in README).
import pino, { type Logger } from 'pino';
import type { Config } from '../config/schema.js';
import { ProxyError } from '../protocol/errors.js';
import { AuditSink, type SinkState } from './sink.js';

export type StatementTextMode = Config['audit']['logStatementText'];

/** What every event of one client connection carries, bound once per connection. */
export interface ConnectionFields {
  session: string;
  client_addr: string | undefined;
  client_port: number | undefined;
}

export interface TenantFields {
  tenant: string;
  schema: string;
  actor: string | null;
  application_name: string | null;
  guard_bypass: boolean;
}

export interface StatementEvent {
  command: string | null;
  fingerprint: string | null;
  statement?: string | null;
  outcome: 'ok' | 'error';
  sqlstate: string | null;
  duration_ms: number;
  rows: number | null;
  backend_pid: number | null;
}

export interface RefusalEvent {
  rule: string;
  sqlstate: string;
  message: string;
  fingerprint: string | null;
  statement?: string | null;
}

let lastMs = 0;
let lastTime = '';
/** pino's isoTime, formatted once per millisecond: statements complete many times per millisecond under load. */
function isoTimeCached(): string {
  const now = Date.now();
  if (now !== lastMs) {
    lastMs = now;
    lastTime = `,"time":"${new Date(now).toISOString()}"`;
  }
  return lastTime;
}

/** A JSON value as pino writes it: strings escaped, null for null. */
function json(value: string | null): string {
  return value === null ? 'null' : JSON.stringify(value);
}

/**
 * The audit log of one connection: a pino child carrying the connection's (and, once known, the tenant's) fields.
 * Statement events, one per completed statement, skip pino and are written as the same line pino would write
 * (test/unit/audit-line.test.ts holds them to that): through pino they cost about 10 µs more of the proxy's CPU per
 * pgbench -S transaction (bench/quick-ab.mjs), a sixth of everything the proxy spends on it.
 */
export class ConnectionAudit {
  /** The child logger's bound fields, serialised once by pino (`,"session":…`). */
  private bindings = '';

  constructor(
    private logger: Logger | null,
    private readonly sink: AuditSink | null,
    readonly textMode: StatementTextMode,
    /** audit.statements: one event per completed statement. */
    readonly recordsStatements: boolean,
  ) {
    this.bind();
  }

  /** `issuer`: the auth.issuers entry that verified the token (this event only; statement events stay as they are). */
  authenticated(fields: TenantFields, issuer?: string): void {
    if (this.logger === null) return;
    this.logger = this.logger.child(fields);
    this.bind();
    this.logger.info(
      issuer === undefined ? { event: 'connection_authenticated' } : { event: 'connection_authenticated', issuer },
    );
  }

  private bind(): void {
    if (this.logger !== null)
      this.bindings = (this.logger as unknown as Record<symbol, string>)[pino.symbols.chindingsSym] ?? '';
  }

  refused(reason: string, sqlstate: string): void {
    this.logger?.info({ event: 'connection_refused', outcome: 'refused', reason, sqlstate });
  }

  closed(reason: string, durationMs: number, statements: number, inTransaction: boolean): void {
    this.logger?.info({
      event: 'connection_closed',
      reason,
      duration_ms: durationMs,
      statements,
      in_transaction: inTransaction,
    });
  }

  statement(event: StatementEvent): void {
    if (!this.recordsStatements || this.sink === null) return;
    const text = event.statement === undefined ? '' : `,"statement":${json(event.statement)}`;
    this.sink.write(
      `{"log":"audit"${isoTimeCached()}${this.bindings},"event":"statement","command":${json(event.command)},` +
        `"fingerprint":${json(event.fingerprint)}${text},"outcome":"${event.outcome}","sqlstate":${json(event.sqlstate)},` +
        `"duration_ms":${event.duration_ms},"rows":${event.rows},"backend_pid":${event.backend_pid}}\n`,
    );
  }

  /** A statement's text as audit.logStatementText asks (from its analysis, or as sent); undefined leaves the field out. */
  statementText(analysis: { normalized: string | null } | null, text: string | null): string | null | undefined {
    switch (this.textMode) {
      case 'none':
        return undefined;
      case 'full':
        return text;
      case 'normalized':
        return analysis?.normalized ?? null;
    }
  }

  refusal(event: RefusalEvent): void {
    this.logger?.info({ event: 'guard_refusal', outcome: 'refused', ...event });
  }
}

/**
 * Owns the destination. Operational logs never go here (they are on stderr, without `"log":"audit"`), so a SIEM can
 * take this stream whole.
 */
export class AuditLog {
  private readonly sink: AuditSink | null;
  private readonly root: Logger | null;
  private blockOnFailure: boolean;
  private textMode: StatementTextMode;
  statementsEnabled: boolean;

  constructor(config: Config, opsLog: Logger) {
    const audit = config.audit;
    this.blockOnFailure = audit.onFailure === 'block';
    this.textMode = audit.logStatementText;
    this.statementsEnabled = audit.enabled && audit.statements;
    if (!audit.enabled) {
      this.sink = null;
      this.root = null;
      return;
    }
    this.sink = new AuditSink(audit.file);
    this.sink.onFailing((failing) => {
      if (failing)
        opsLog.error(
          { err: this.sink?.state.lastError, onFailure: this.blockOnFailure ? 'block' : 'continue' },
          'audit destination failing',
        );
      else opsLog.warn('audit destination recovered');
    });
    this.root = pino(
      {
        // The level formatter's fields open every line: the stream marker instead of a level nobody filters on.
        base: null,
        timestamp: isoTimeCached,
        formatters: { level: () => ({ log: 'audit' }) },
      },
      this.sink,
    );
  }

  /** A SIGHUP may change the text mode and the failure policy; the destination stays as started. */
  reconfigure(config: Config): void {
    this.blockOnFailure = config.audit.onFailure === 'block';
    this.textMode = config.audit.logStatementText;
    this.statementsEnabled = this.root !== null && config.audit.statements;
  }

  get state(): SinkState | null {
    return this.sink?.state ?? null;
  }

  /** Non-null while statements must be refused because the trail cannot be written (audit.onFailure: block). */
  blockingError(): ProxyError | null {
    if (this.sink === null || !this.blockOnFailure || !(this.sink.state.failing || this.sink.backlogged)) return null;
    return new ProxyError(
      '58030',
      'the audit log cannot be written, so statements are refused (audit.onFailure = block)',
      'ERROR',
      'retry later; the proxy resumes as soon as the audit destination accepts writes again',
    );
  }

  connection(fields: ConnectionFields): ConnectionAudit {
    const logger = this.root?.child(fields) ?? null;
    logger?.info({ event: 'connection_accepted' });
    return new ConnectionAudit(logger, this.sink, this.textMode, this.statementsEnabled);
  }

  /** Writes out everything queued (SIGTERM): nothing written before shutdown is lost. */
  async close(): Promise<void> {
    if (this.sink === null) return;
    await this.sink.flush();
    this.sink.close();
  }
}
