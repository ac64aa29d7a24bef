// A client's way in: SSLRequest, GSSENCRequest and CancelRequest, the StartupMessage, the password, the login.
import type net from 'node:net';
import tls from 'node:tls';
import type { Logger } from 'pino';
import { AuthFailure } from '../auth/tenant-token.js';
import type { Conn } from '../net/conn.js';
import { FrontendCode, RequestCode } from '../protocol/codes.js';
import { ProxyError } from '../protocol/errors.js';
import type { Framer } from '../protocol/framer.js';
import { encodeBackendKeyData, readCString, readStartupParams } from '../protocol/messages.js';
import {
  AUTHENTICATION_CLEARTEXT,
  AUTHENTICATION_OK,
  GSSENC_REFUSE,
  READY_FOR_QUERY_IDLE,
  SSL_ACCEPT,
  SSL_REFUSE,
} from '../protocol/static.js';
import type { ConnectionAudit } from '../audit/audit-log.js';
import type { ClientParts } from './client-parts.js';
import { login, type LoggedIn } from './login.js';
import type { SessionDeps } from './session-state.js';
import { interpretStartup, plaintextAllowed, reportedParameters, type ClientStartup } from './startup.js';

/** The password message carries the token; JWTs with many claims outgrow the startup cap. */
const MAX_PASSWORD_BYTES = 64 * 1024;

/** What the handshake needs of its session. */
export interface HandshakeHost {
  readonly conn: Conn;
  readonly log: Logger;
  readonly framer: Framer;
  /** Listens to a (new, TLS) client socket. */
  attach(socket: net.Socket): void;
  /** The session now waits for a password message. */
  awaitPassword(): void;
  /** The session verifies a token: the client is paused meanwhile. */
  authenticating(): void;
  /** Still authenticating (the client may have left during a wait). */
  readonly authenticatingNow: boolean;
  loggedIn(loggedIn: LoggedIn): void;
  fail(err: ProxyError, reason?: string): void;
  failUnexpected(err: unknown): void;
  close(reason: string): void;
  guarded(step: () => void): void;
}

export class Handshake {
  private isTls = false;
  private startup: ClientStartup | null = null;
  /** TLS, startup and token check must be over by listen.handshakeTimeoutMs. */
  private timer: NodeJS.Timeout | null;

  constructor(
    private readonly host: HandshakeHost,
    private readonly deps: SessionDeps,
  ) {
    const ms = deps.config.listen.handshakeTimeoutMs;
    this.timer = setTimeout(() => host.fail(ProxyError.handshakeTimeout(ms)), ms);
    this.timer.unref();
  }

  /** Logged in, or closed: the deadline no longer applies. */
  finished(): void {
    if (this.timer !== null) clearTimeout(this.timer);
    this.timer = null;
  }

  /** A frame before login: untyped while starting up, a password message after. */
  onStartupFrame(buf: Buffer, start: number, end: number): void {
    const length = end - start;
    const request = buf.readUInt32BE(start + 4);
    switch (request) {
      case RequestCode.SSLRequest:
        if (length !== 8 || this.isTls) throw ProxyError.protocolViolation('invalid SSLRequest');
        this.onSslRequest();
        return;
      case RequestCode.GSSENCRequest:
        if (length !== 8) throw ProxyError.protocolViolation('invalid GSSENCRequest');
        this.host.conn.socket.write(GSSENC_REFUSE);
        return;
      case RequestCode.CancelRequest:
        if (length !== 16) throw ProxyError.protocolViolation('invalid CancelRequest');
        this.deps.cancels.cancel(buf.readInt32BE(start + 8), buf.readInt32BE(start + 12));
        this.host.close('cancel request');
        return;
      case RequestCode.ProtocolV3:
        this.onStartupMessage(buf, start, end);
        return;
      default:
        throw ProxyError.unsupportedProtocol(request);
    }
  }

  onPasswordFrame(buf: Buffer, start: number, end: number): void {
    if (buf[start] !== FrontendCode.PasswordMessage) {
      throw ProxyError.protocolViolation(`expected password message, got message type ${buf[start]}`);
    }
    const [token, after] = readCString(buf, start + 5, end);
    if (after !== end) throw ProxyError.protocolViolation('malformed password message');
    this.authenticate(token);
  }

  private onSslRequest(): void {
    const context = this.deps.secureContext();
    const raw = this.host.conn.socket;
    if (context === null || this.deps.config.tls.mode === 'disable') {
      raw.write(SSL_REFUSE);
      return;
    }
    // Bytes pipelined behind SSLRequest would be read as if they came over TLS (CVE-2021-23214): refuse them.
    if (this.host.framer.buffered !== 0)
      throw ProxyError.protocolViolation('data received after SSLRequest before TLS handshake');
    raw.removeAllListeners('data');
    raw.write(SSL_ACCEPT);
    const secure = new tls.TLSSocket(raw, { isServer: true, secureContext: context });
    this.isTls = true;
    this.host.conn.replace(secure);
    raw.on('error', () => undefined);
    this.host.attach(secure);
  }

  private onStartupMessage(buf: Buffer, start: number, end: number): void {
    const config = this.deps.config;
    if (!this.isTls && !plaintextAllowed(config.tls.mode, this.host.conn.socket.remoteAddress))
      throw ProxyError.tlsRequired();
    const startup = interpretStartup(readStartupParams(buf, start, end), config.listen.ignoreStartupParameters);
    // One public database name for every tenant, wherever it is routed: the default upstream's.
    if (startup.database !== this.deps.upstreams.default.target.database)
      throw ProxyError.unknownDatabase(startup.database);
    this.startup = startup;
    this.host.framer.setTyped(true, MAX_PASSWORD_BYTES);
    if (startup.token !== undefined) {
      this.authenticate(startup.token);
    } else {
      this.host.awaitPassword();
      this.host.conn.socket.write(AUTHENTICATION_CLEARTEXT);
    }
  }

  private authenticate(token: string): void {
    const { deps, host } = this;
    const startup = this.startup!;
    host.authenticating();
    login({ ...deps, guardOn: deps.config.policy.guard }, startup, token, () => host.authenticatingNow).then(
      (loggedIn) => {
        if (loggedIn !== null) host.guarded(() => host.loggedIn(loggedIn));
      },
      (err: unknown): void => {
        if (err instanceof AuthFailure) {
          host.log.info({ reason: err.reason }, 'authentication failed');
          deps.metrics.authOutcome('failed', err.reason);
          host.fail(ProxyError.authFailed(err.sqlstate, err.message), err.reason);
        } else if (err instanceof ProxyError) {
          host.fail(err.asFatal());
        } else {
          host.failUnexpected(err);
        }
      },
    );
  }

  /**
   * The login's answer (AuthenticationOk, the settings PostgreSQL reports, the proxy's cancel key, ReadyForQuery),
   * recorded in the metrics, the audit trail and the log.
   */
  greet(
    parts: ClientParts,
    defaults: ReadonlyMap<string, string>,
    key: { pid: number; secret: number },
    audit: ConnectionAudit,
  ): Buffer {
    const { identity, settings } = parts;
    const startup = this.startup!;
    this.deps.metrics.authOutcome('ok', identity.guardBypass ? 'guard_bypass' : 'token');
    audit.authenticated(
      {
        tenant: identity.tenantId,
        schema: identity.schema,
        actor: identity.actor ?? null,
        application_name: settings.current.get('application_name') || null,
        guard_bypass: identity.guardBypass,
      },
      identity.issuer,
    );
    this.host.log.info(
      { tenant: identity.tenantId, actor: identity.actor, issuer: identity.issuer },
      'client authenticated',
    );
    const told = settings.tellAll(reportedParameters(defaults, startup.settings, startup.user, identity.schema));
    return Buffer.concat([AUTHENTICATION_OK, ...told, encodeBackendKeyData(key.pid, key.secret), READY_FOR_QUERY_IDLE]);
  }
}
