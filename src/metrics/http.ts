// The operations endpoint: /metrics (Prometheus), /healthz, /readyz and the token-protected /admin/status.
import http from 'node:http';
import { timingSafeEqual } from 'node:crypto';
import type { AddressInfo } from 'node:net';
import type { Logger } from 'pino';

export interface Readiness {
  ready: boolean;
  checks: Record<string, { ok: boolean; detail?: string }>;
}

/** Prometheus text: one process's metrics, or every worker's summed by the primary. */
export interface MetricsText {
  readonly contentType: string;
  text(): Promise<string>;
}

export interface OpsHandlers {
  metrics: MetricsText;
  readiness(): Promise<Readiness>;
  status(): unknown;
  /** The configured admin token, or undefined when the admin view is off (read per request: SIGHUP may change it). */
  adminToken(): string | undefined;
}

export interface OpsServer {
  readonly port: number;
  close(): Promise<void>;
}

export async function startOpsServer(
  host: string,
  port: number,
  handlers: OpsHandlers,
  log: Logger,
): Promise<OpsServer> {
  const server = http.createServer((req, res) => {
    route(req, res, handlers).catch((err: unknown) => {
      log.error({ err }, 'metrics endpoint failed');
      if (!res.headersSent) res.writeHead(500, { 'content-type': 'text/plain' });
      res.end('internal error\n');
    });
  });
  server.keepAliveTimeout = 5000;
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  return {
    port: (server.address() as AddressInfo).port,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

async function route(req: http.IncomingMessage, res: http.ServerResponse, handlers: OpsHandlers): Promise<void> {
  if (req.method !== 'GET' && req.method !== 'HEAD') {
    send(res, 405, 'text/plain', 'only GET\n');
    return;
  }
  const path = (req.url ?? '/').split('?')[0];
  switch (path) {
    case '/metrics':
      send(res, 200, handlers.metrics.contentType, await handlers.metrics.text());
      return;
    case '/healthz':
      send(res, 200, 'text/plain', 'ok\n');
      return;
    case '/readyz': {
      const readiness = await handlers.readiness();
      send(res, readiness.ready ? 200 : 503, 'application/json', `${JSON.stringify(readiness)}\n`);
      return;
    }
    case '/admin/status': {
      const expected = handlers.adminToken();
      if (expected === undefined) {
        send(res, 404, 'text/plain', 'admin view is off: set metrics.adminToken\n');
        return;
      }
      if (!bearerMatches(req.headers.authorization, expected)) {
        res.setHeader('www-authenticate', 'Bearer');
        send(res, 401, 'text/plain', 'missing or wrong bearer token\n');
        return;
      }
      send(res, 200, 'application/json', `${JSON.stringify(await handlers.status())}\n`);
      return;
    }
    default:
      send(res, 404, 'text/plain', 'not found\n');
  }
}

function bearerMatches(header: string | undefined, expected: string): boolean {
  const given = Buffer.from(/^Bearer (.+)$/.exec(header ?? '')?.[1] ?? '');
  const wanted = Buffer.from(expected);
  return given.length === wanted.length && timingSafeEqual(given, wanted);
}

function send(res: http.ServerResponse, status: number, type: string, body: string): void {
  res.writeHead(status, { 'content-type': type, 'cache-control': 'no-store' });
  res.end(body);
}
