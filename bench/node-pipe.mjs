#!/usr/bin/env node
// bench/node-pipe.mjs: the floor of any Node.js proxy — a bare TCP pipe, one PostgreSQL connection per client, no
// protocol work. bench/run.mjs starts it as a process of its own so its CPU per transaction can be read from /proc.
//
//   node bench/node-pipe.mjs <listen port> <upstream host> <upstream port> [listen host, default 127.0.0.1]
//
// Prints "listening <port>" on stdout once it accepts connections. SIGTERM/SIGINT close everything and exit.
import { connect, createServer } from 'node:net';

const [listenPort, upstreamHost, upstreamPort, listenHost = '127.0.0.1'] = process.argv.slice(2);
if (!listenPort || !upstreamHost || !upstreamPort) {
  process.stderr.write('usage: node bench/node-pipe.mjs <listen port> <upstream host> <upstream port> [listen host]\n');
  process.exit(2);
}

const sockets = new Set();
const track = (s) => {
  sockets.add(s);
  s.once('close', () => sockets.delete(s));
};

// noDelay on both sides, as libpq, PgBouncer and the proxy do: Nagle would hold back the small replies.
const server = createServer({ noDelay: true }, (client) => {
  const upstream = connect({ host: upstreamHost, port: Number(upstreamPort), noDelay: true });
  track(client);
  track(upstream);
  // pipe() handles backpressure both ways; an error or end on either side closes the other.
  client.pipe(upstream);
  upstream.pipe(client);
  client.on('error', () => upstream.destroy());
  upstream.on('error', () => client.destroy());
  client.once('close', () => upstream.destroy());
  upstream.once('close', () => client.destroy());
});
server.on('error', (err) => {
  process.stderr.write(`node-pipe: ${err.message}\n`);
  process.exit(1);
});
server.listen(Number(listenPort), listenHost, () => process.stdout.write(`listening ${server.address().port}\n`));

for (const signal of ['SIGTERM', 'SIGINT']) {
  process.on(signal, () => {
    server.close();
    for (const s of sockets) s.destroy();
    process.exit(0);
  });
}
