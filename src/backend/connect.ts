// Dials the upstream PostgreSQL: optional TLS, startup, SCRAM/md5/cleartext auth, cached ParameterStatus values.
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import net from 'node:net';
import tls from 'node:tls';
import type { Config } from '../config/schema.js';
import { AuthRequest, BackendCode, RequestCode } from '../protocol/codes.js';
import { Framer } from '../protocol/framer.js';
import { encodeQuery, readCString, readErrorFields } from '../protocol/messages.js';
import { Writer } from '../protocol/writer.js';
import { certificateHash, ScramClient, type ChannelBinding } from './scram.js';

export interface UpstreamTarget {
  /** The upstream's name in the config (`default` for the `upstream` key): errors and metrics say which. */
  name: string;
  host: string;
  port: number;
  user: string;
  password: string | undefined;
  database: string;
  connectTimeoutMs: number;
  tls: Config['upstream']['tls'];
}

export function upstreamTarget(config: Config): UpstreamTarget {
  return targetOf('default', config.upstream);
}

/** Where the pool of the upstream called `name` dials; `database` replaces the url's (a dedicated database). */
export function targetOf(name: string, upstream: Config['upstream'], database?: string): UpstreamTarget {
  const url = new URL(upstream.url);
  const user = decodeURIComponent(url.username);
  return {
    name,
    host: url.hostname.replace(/^\[|\]$/g, '') || '127.0.0.1',
    port: url.port === '' ? 5432 : Number(url.port),
    user,
    password: upstream.password ?? (url.password === '' ? undefined : decodeURIComponent(url.password)),
    database: database ?? (decodeURIComponent(url.pathname.slice(1)) || user),
    connectTimeoutMs: upstream.connectTimeoutMs,
    tls: upstream.tls,
  };
}

export interface ConnectedServer {
  socket: net.Socket;
  /** ParameterStatus values reported during startup. */
  params: Map<string, string>;
  pid: number;
  secret: number;
}

/** An upstream failure; `fatal` errors come from PostgreSQL's own ErrorResponse. */
export class UpstreamError extends Error {
  constructor(
    message: string,
    readonly sqlstate?: string,
  ) {
    super(message);
    this.name = 'UpstreamError';
  }
}

const MAX_SERVER_MESSAGE = 1 << 30;

/**
 * A server logs in with an empty application_name, which is what a client that sets none has: a RESET (or DISCARD ALL)
 * then lands where it would on that client's own connection. While no client is pinned the proxy names the server
 * with a SET, so pg_stat_activity shows whose connection it is; a pinned client's own name (or none) replaces it.
 */
export const NAME_UNPINNED_SERVER = "SET application_name = 'pg-tenant-proxy'";
const NAME_QUERY = encodeQuery(NAME_UNPINNED_SERVER);

export async function connectServer(target: UpstreamTarget): Promise<ConnectedServer> {
  const socket = await dial(target);
  try {
    return await startup(socket, target);
  } catch (err) {
    socket.destroy();
    throw err;
  }
}

/** Binds SCRAM to the TLS session when the server offers it (and channelBinding allows), as libpq does. */
function channelBinding(socket: net.Socket, mechanisms: string[], target: UpstreamTarget): ChannelBinding {
  const setting = target.tls.channelBinding;
  if (!(socket instanceof tls.TLSSocket) || setting === 'disable') {
    if (setting === 'require')
      throw new UpstreamError('SCRAM channel binding needs TLS to the upstream (upstream.tls.channelBinding: require)');
    return { kind: 'none' };
  }
  if (!mechanisms.includes('SCRAM-SHA-256-PLUS')) {
    if (setting === 'require')
      throw new UpstreamError('upstream does not offer SCRAM-SHA-256-PLUS (upstream.tls.channelBinding: require)');
    return { kind: 'unused' };
  }
  const certificate = socket.getPeerCertificate(true);
  if (certificate.raw === undefined) throw new UpstreamError('upstream presented no certificate to bind SCRAM to');
  return { kind: 'bound', certificateHash: certificateHash(certificate.raw) };
}

/** Sends a CancelRequest for a backend's real key on a fresh connection, as PostgreSQL requires. */
export async function sendCancel(target: UpstreamTarget, pid: number, secret: number): Promise<void> {
  const socket = await dial(target);
  const request = new Writer(16).begin().int32(RequestCode.CancelRequest).int32(pid).int32(secret).end().flush();
  await new Promise<void>((resolve) => {
    socket.on('error', () => resolve());
    socket.on('close', () => resolve());
    socket.end(request);
  });
}

async function dial(target: UpstreamTarget): Promise<net.Socket> {
  const raw = await withTimeout<net.Socket>(target.connectTimeoutMs, 'connect timeout', (settle) => {
    const s = net.connect({ host: target.host, port: target.port });
    s.setNoDelay(true);
    s.once('connect', () => settle(null, s));
    s.once('error', (err) => settle(err));
    return () => s.destroy();
  });
  if (target.tls.mode === 'disable') return raw;
  return upgradeToTls(raw, target);
}

async function upgradeToTls(raw: net.Socket, target: UpstreamTarget): Promise<net.Socket> {
  const answer = await withTimeout<Buffer>(target.connectTimeoutMs, 'SSLRequest timeout', (settle) => {
    raw.once('data', (chunk) => {
      // Stop reading at once: TLS takes the socket over and must find it paused with nothing consumed.
      raw.pause();
      settle(null, chunk);
    });
    raw.once('error', (err) => settle(err));
    raw.write(new Writer(8).begin().int32(RequestCode.SSLRequest).end().flush());
    return () => raw.destroy();
  });
  raw.removeAllListeners('data');
  raw.removeAllListeners('error');
  if (answer.length !== 1) {
    raw.destroy();
    throw new UpstreamError('upstream sent unexpected data after SSLRequest');
  }
  if (answer[0] !== 0x53) {
    if (target.tls.mode === 'prefer') return raw;
    raw.destroy();
    throw new UpstreamError('upstream does not support TLS (upstream.tls.mode requires it)');
  }
  const verify = target.tls.mode === 'verify-ca' || target.tls.mode === 'verify-full';
  const options: tls.ConnectionOptions = {
    socket: raw,
    servername: net.isIP(target.host) ? undefined : target.host,
    rejectUnauthorized: verify,
    ca: target.tls.ca === undefined ? undefined : readFileSync(target.tls.ca),
    cert: target.tls.cert === undefined ? undefined : readFileSync(target.tls.cert),
    key: target.tls.key === undefined ? undefined : readFileSync(target.tls.key),
  };
  if (target.tls.mode === 'verify-ca') options.checkServerIdentity = () => undefined;
  return withTimeout<net.Socket>(target.connectTimeoutMs, 'TLS handshake timeout', (settle) => {
    const secure = tls.connect(options);
    secure.once('secureConnect', () => settle(null, secure));
    secure.once('error', (err: Error) => settle(err));
    return () => secure.destroy();
  });
}

function startup(socket: net.Socket, target: UpstreamTarget): Promise<ConnectedServer> {
  const params = new Map<string, string>();
  /** The login's ReadyForQuery, then NAME_QUERY's. */
  let readyOwed = 2;
  let pid = 0;
  let secret = 0;
  let scram: ScramClient | null = null;
  const framer = new Framer(MAX_SERVER_MESSAGE, true);

  const w = new Writer(128).begin().int32(RequestCode.ProtocolV3);
  w.cstring('user').cstring(target.user).cstring('database').cstring(target.database);
  w.cstring('application_name').cstring('').int8(0);
  socket.write(w.end().flush());

  const needPassword = (): string => {
    if (target.password === undefined) throw new UpstreamError('upstream asks for a password but none is configured');
    return target.password;
  };
  const sendPassword = (body: Buffer | string): void => {
    const pw = new Writer(64).begin(0x70); // PasswordMessage / SASLResponse 'p'
    if (typeof body === 'string') pw.cstring(body);
    else pw.bytes(body);
    socket.write(pw.end().flush());
  };

  return withTimeout(target.connectTimeoutMs, 'startup timeout', (settle) => {
    const onData = (chunk: Buffer): void => {
      try {
        framer.push(chunk);
        while (framer.next()) {
          const { buffer: b, start, end } = framer;
          switch (framer.code) {
            case BackendCode.Authentication: {
              const kind = b.readInt32BE(start + 5);
              if (kind === AuthRequest.Ok) {
                if (target.tls.channelBinding === 'require' && scram?.mechanism !== 'SCRAM-SHA-256-PLUS') {
                  throw new UpstreamError(
                    'upstream authenticated the proxy without SCRAM channel binding (upstream.tls.channelBinding: require)',
                  );
                }
                // Read after the login's ReadyForQuery: named in the same round trip.
                socket.write(NAME_QUERY);
                break;
              }
              if (
                target.tls.channelBinding === 'require' &&
                kind !== AuthRequest.SASL &&
                kind !== AuthRequest.SASLContinue &&
                kind !== AuthRequest.SASLFinal
              ) {
                throw new UpstreamError(
                  'upstream asks for a password method without channel binding (upstream.tls.channelBinding: require)',
                );
              }
              if (kind === AuthRequest.CleartextPassword) sendPassword(needPassword());
              else if (kind === AuthRequest.MD5Password) {
                const salt = b.subarray(start + 9, start + 13);
                const inner = md5(needPassword() + target.user);
                sendPassword('md5' + md5(Buffer.concat([Buffer.from(inner), salt])));
              } else if (kind === AuthRequest.SASL) {
                const mechanisms = b.toString('latin1', start + 9, end).split('\0');
                if (!mechanisms.includes('SCRAM-SHA-256'))
                  throw new UpstreamError('upstream offers no supported SASL mechanism');
                scram = new ScramClient(needPassword(), channelBinding(socket, mechanisms, target));
                const first = Buffer.from(scram.clientFirst());
                const body = new Writer(64).cstring(scram.mechanism).int32(first.length).bytes(first).flush();
                sendPassword(body);
              } else if (kind === AuthRequest.SASLContinue && scram !== null) {
                sendPassword(Buffer.from(scram.clientFinal(b.toString('utf8', start + 9, end))));
              } else if (kind === AuthRequest.SASLFinal && scram !== null) {
                scram.verifyServerFinal(b.toString('utf8', start + 9, end));
              } else {
                throw new UpstreamError(`upstream asks for unsupported authentication method ${kind}`);
              }
              break;
            }
            case BackendCode.ParameterStatus: {
              const [name, after] = readCString(b, start + 5, end);
              params.set(name, readCString(b, after, end)[0]);
              break;
            }
            case BackendCode.BackendKeyData:
              pid = b.readInt32BE(start + 5);
              secret = b.readInt32BE(start + 9);
              break;
            case BackendCode.ErrorResponse: {
              const fields = readErrorFields(b, start, end);
              throw new UpstreamError(fields.message, fields.code);
            }
            case BackendCode.NoticeResponse:
            case BackendCode.NegotiateProtocolVersion:
            case BackendCode.CommandComplete:
              break;
            case BackendCode.ReadyForQuery:
              if (--readyOwed > 0) break;
              if (framer.buffered !== 0)
                throw new UpstreamError('upstream sent data after ReadyForQuery during startup');
              socket.removeListener('data', onData);
              socket.removeListener('close', onClose);
              settle(null, { socket, params, pid, secret });
              return;
            default:
              throw new UpstreamError(`unexpected message ${framer.code} during upstream startup`);
          }
        }
      } catch (err) {
        settle(err as Error);
      }
    };
    const onError = (err: Error): void => settle(err);
    const onClose = (): void => settle(new UpstreamError('upstream closed the connection during startup'));
    socket.on('data', onData);
    socket.on('error', onError);
    socket.on('close', onClose);
    return () => socket.destroy();
  });
}

function md5(data: string | Buffer): string {
  return createHash('md5').update(data).digest('hex');
}

/** Runs a callback-style operation with a deadline; `cleanup` runs on timeout or failure. */
function withTimeout<T>(
  ms: number,
  what: string,
  run: (settle: (err: Error | null, value?: T) => void) => () => void,
): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    let done = false;
    let cleanup: () => void = () => {};
    const timer = setTimeout(() => settle(new UpstreamError(`${what} after ${ms} ms`)), ms);
    function settle(err: Error | null, value?: T): void {
      if (done) return;
      done = true;
      clearTimeout(timer);
      if (err !== null) {
        cleanup();
        reject(err);
      } else {
        resolve(value as T);
      }
    }
    cleanup = run(settle);
  });
}
