// ProxyError: every condition a client can see, with its SQLSTATE; the only place ErrorResponse bytes are made.
import { BackendCode, SqlState } from './codes.js';
import { Writer } from './writer.js';

export type Severity = 'ERROR' | 'FATAL';

export class ProxyError extends Error {
  /** 1-based character position in the statement (syntax errors), sent as the P field. */
  position: number | undefined;

  constructor(
    readonly sqlstate: string,
    message: string,
    readonly severity: Severity = 'ERROR',
    readonly detail?: string,
    readonly hint?: string,
  ) {
    super(message);
    this.name = 'ProxyError';
  }

  get fatal(): boolean {
    return this.severity === 'FATAL';
  }

  /** The same error, ending the session (used where no session exists yet to keep, as during login). */
  asFatal(): ProxyError {
    return this.fatal ? this : new ProxyError(this.sqlstate, this.message, 'FATAL', this.detail, this.hint);
  }

  static protocolViolation(message: string): ProxyError {
    return new ProxyError(SqlState.PROTOCOL_VIOLATION, message, 'FATAL');
  }

  static tlsRequired(): ProxyError {
    return new ProxyError(
      SqlState.INVALID_AUTHORIZATION_SPECIFICATION,
      'SSL/TLS is required: connect with sslmode=require',
      'FATAL',
    );
  }

  static authFailed(sqlstate: string, message: string): ProxyError {
    return new ProxyError(sqlstate, message, 'FATAL');
  }

  /** A StartupMessage of a protocol version other than 3.0 (`request`: major << 16 | minor). */
  static unsupportedProtocol(request: number): ProxyError {
    return new ProxyError(
      SqlState.PROTOCOL_VIOLATION,
      `unsupported frontend protocol ${request >>> 16}.${request & 0xffff}: server supports 3.0`,
      'FATAL',
    );
  }

  static unknownDatabase(name: string): ProxyError {
    return new ProxyError(SqlState.INVALID_CATALOG_NAME, `database "${name}" does not exist`, 'FATAL');
  }

  static handshakeTimeout(ms: number): ProxyError {
    return new ProxyError(
      SqlState.PROTOCOL_VIOLATION,
      `startup and authentication did not finish within ${ms} ms`,
      'FATAL',
    );
  }

  static tooManyClients(limit: number): ProxyError {
    return new ProxyError(SqlState.TOO_MANY_CONNECTIONS, `too many client connections (limit ${limit})`, 'FATAL');
  }

  static poolTimeout(ms: number): ProxyError {
    return new ProxyError(
      SqlState.TOO_MANY_CONNECTIONS,
      `no server connection became available within ${ms} ms`,
      'ERROR',
      undefined,
      'the pool is exhausted; raise upstream.poolSize or upstream.queueTimeoutMs, or shorten transactions',
    );
  }

  /** `upstream`: the upstream's name (`default`, or one of `upstreams`), so a tenant on a down cluster knows which. */
  static upstreamUnavailable(reason: string, upstream?: string): ProxyError {
    return new ProxyError(
      SqlState.SQLCLIENT_UNABLE_TO_ESTABLISH_SQLCONNECTION,
      upstream === undefined
        ? `cannot connect to the upstream server: ${reason}`
        : `cannot connect to upstream "${upstream}": ${reason}`,
      'ERROR',
    );
  }

  /** The registry routes the tenant to an upstream this proxy's config does not name. */
  static unknownUpstream(tenant: string, upstream: string): ProxyError {
    return new ProxyError(
      SqlState.SQLCLIENT_UNABLE_TO_ESTABLISH_SQLCONNECTION,
      `tenant "${tenant}" is routed to upstream "${upstream}", which this proxy's configuration does not have`,
      'FATAL',
      undefined,
      `add upstreams.${upstream} to the config of every proxy sharing the registry, or change the tenant's route`,
    );
  }

  static serverLost(reason: string): ProxyError {
    return new ProxyError(SqlState.CONNECTION_FAILURE, `server connection lost: ${reason}`, 'FATAL');
  }

  static shuttingDown(): ProxyError {
    return new ProxyError(SqlState.ADMIN_SHUTDOWN, 'the proxy is shutting down', 'FATAL');
  }

  static forbiddenStartupParameter(name: string): ProxyError {
    const identity = name === 'search_path' || name === 'role' || name === 'session_authorization';
    return new ProxyError(
      SqlState.INSUFFICIENT_PRIVILEGE,
      `startup parameter "${name}" cannot be set through pg-tenant-proxy`,
      'FATAL',
      identity ? 'the tenant schema and role come only from the verified tenant token' : undefined,
    );
  }

  static unsupportedStartupParameter(name: string): ProxyError {
    return new ProxyError(
      SqlState.FEATURE_NOT_SUPPORTED,
      `unsupported startup parameter: ${name}`,
      'FATAL',
      undefined,
      'add it to listen.ignoreStartupParameters to have it accepted and dropped',
    );
  }

  static functionCallRefused(): ProxyError {
    return new ProxyError(
      SqlState.INSUFFICIENT_PRIVILEGE,
      'the FunctionCall protocol message is not allowed through pg-tenant-proxy',
      'ERROR',
      undefined,
      'call the function in a SELECT statement instead',
    );
  }

  static internal(err: unknown): ProxyError {
    if (err instanceof ProxyError) return err;
    return new ProxyError(SqlState.INTERNAL_ERROR, 'internal error in pg-tenant-proxy', 'FATAL');
  }

  /** Encodes as an ErrorResponse: S, V, C, M (+ D, H) fields. */
  encode(): Buffer {
    const w = new Writer(128).begin(BackendCode.ErrorResponse);
    w.int8(0x53).cstring(this.severity); // 'S'
    w.int8(0x56).cstring(this.severity); // 'V'
    w.int8(0x43).cstring(this.sqlstate); // 'C'
    w.int8(0x4d).cstring(this.message); // 'M'
    if (this.detail !== undefined) w.int8(0x44).cstring(this.detail); // 'D'
    if (this.hint !== undefined) w.int8(0x48).cstring(this.hint); // 'H'
    if (this.position !== undefined) w.int8(0x50).cstring(String(this.position)); // 'P'
    w.int8(0);
    return w.end().flush();
  }
}
