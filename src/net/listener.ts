// The client-facing TCP listener: accept loop, connection limit, one ClientSession per socket.
import net from 'node:net';
import type { Logger } from 'pino';
import { ProxyError } from '../protocol/errors.js';

export interface Listener {
  readonly address: net.AddressInfo;
  /** Stops accepting; open sockets are left to their sessions. */
  stop(): Promise<void>;
}

export async function listen(
  host: string,
  port: number,
  maxClients: () => number,
  openClients: () => number,
  onSocket: (socket: net.Socket) => void,
  log: Logger,
): Promise<Listener> {
  const server = net.createServer({ noDelay: true, pauseOnConnect: false }, (socket) => {
    socket.on('error', () => undefined);
    if (openClients() >= maxClients()) {
      // Over the limit the client still learns why, rather than seeing a bare reset.
      socket.end(ProxyError.tooManyClients(maxClients()).encode());
      return;
    }
    onSocket(socket);
  });
  server.on('error', (err) => log.error({ err: err.message }, 'listener error'));
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.removeListener('error', reject);
      resolve();
    });
  });
  const address = server.address() as net.AddressInfo;
  log.info({ host: address.address, port: address.port }, 'listening');
  return {
    address,
    // close() stops accepting at once; its callback would wait for every open client, which the drain handles.
    stop: () => {
      server.close();
      return Promise.resolve();
    },
  };
}
