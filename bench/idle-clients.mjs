#!/usr/bin/env node
// Memory of idle clients (issue 6: 10,000 idle client connections in at most 300 MB RSS).
//
//   npm run build && node bench/idle-clients.mjs      (each process needs IDLE_CLIENTS + ~100 file descriptors)
//
// Starts a throwaway PostgreSQL, provisions two tenants, starts `pg-tenant-proxy start` as its own process (default
// config: guard, audit trail of every event to a file, metrics on), then opens IDLE_CLIENTS (default 10,000) raw
// connections that log in with a token and stay idle; each runs one statement first, so it has been through a pin
// and a reset. Prints the proxy's RSS (VmRSS from /proc) before and after, and per connection.
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { signDevToken } from '../dist/auth/sign-token.js';
import { validateConfig } from '../dist/config/load.js';
import { startPgCluster } from '../dist/dev/pg-cluster.js';
import { scratchDatabase, startProxyProcess } from './scratch.mjs';

const CLIENTS = Number(process.env.IDLE_CLIENTS ?? 10_000);
const work = mkdtempSync(join(tmpdir(), 'pgtp-idle-'));

const cluster = await startPgCluster();
let proxy = null;
try {
  const upstreamUrl = await scratchDatabase(cluster, 'idle', ['t1', 't2']);

  const raw = {
    listen: { host: '127.0.0.1', port: 0, maxClients: CLIENTS + 100 },
    upstream: { url: upstreamUrl, poolSize: 20 },
    auth: { jwt: { secret: 'idle-clients-bench-secret-0123456789abcdef' } },
    audit: { file: join(work, 'audit.log') },
    metrics: { enabled: true, port: 0 },
    log: { level: 'info' },
  };
  const config = validateConfig(raw);
  let port;
  ({ child: proxy, port } = await startProxyProcess(raw, work));
  const rss = () => Number(/VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${proxy.pid}/status`, 'utf8'))[1]) * 1024;
  const tokens = {
    t1: await signDevToken(config, { tenant: 't1', ttlSeconds: 3600 }),
    t2: await signDevToken(config, { tenant: 't2', ttlSeconds: 3600 }),
  };

  // Warm up the pool and the caches with a few clients, then measure from there.
  const sockets = [];
  const open = (tenant) =>
    new Promise((resolve, reject) => {
      const socket = net.connect(port, '127.0.0.1');
      let buffered = Buffer.alloc(0);
      let phase = 'login';
      socket.on('error', reject);
      socket.on('connect', () => {
        const params = Buffer.from(`user\0app\0database\0idle\0tenant_token\0${tokens[tenant]}\0\0`);
        const head = Buffer.alloc(8);
        head.writeInt32BE(8 + params.length, 0);
        head.writeInt32BE(196608, 4);
        socket.write(Buffer.concat([head, params]));
      });
      socket.on('data', (chunk) => {
        buffered = Buffer.concat([buffered, chunk]);
        // Wait for ReadyForQuery after login, then after one statement.
        while (buffered.length >= 5) {
          const len = buffered.readInt32BE(1);
          if (buffered.length < 1 + len) break;
          const type = String.fromCharCode(buffered[0]);
          buffered = buffered.subarray(1 + len);
          if (type === 'E') return reject(new Error('error from proxy'));
          if (type !== 'Z') continue;
          if (phase === 'login') {
            phase = 'query';
            const sql = Buffer.from('SELECT 1\0');
            const q = Buffer.alloc(5);
            q.write('Q');
            q.writeInt32BE(4 + sql.length, 1);
            socket.write(Buffer.concat([q, sql]));
          } else {
            socket.removeAllListeners('data');
            resolve(socket);
          }
        }
      });
    });
  for (let i = 0; i < 20; i++) sockets.push(await open(i % 2 ? 't1' : 't2'));
  await new Promise((r) => setTimeout(r, 2000));
  const before = rss();
  const started = Date.now();
  for (let i = 20; i < CLIENTS; i += 200) {
    const batch = [];
    for (let j = i; j < Math.min(CLIENTS, i + 200); j++) batch.push(open(j % 2 ? 't1' : 't2'));
    sockets.push(...(await Promise.all(batch)));
  }
  const openedIn = Date.now() - started;
  // Let parked servers reset, timers and GC settle.
  await new Promise((r) => setTimeout(r, 5000));
  const after = rss();
  console.log(
    `${sockets.length} idle clients (logged in, one statement each) opened in ${(openedIn / 1000).toFixed(1)} s`,
  );
  console.log(
    `proxy RSS: ${(before / 1048576).toFixed(1)} MB with 20 clients, ${(after / 1048576).toFixed(1)} MB with ${sockets.length}`,
  );
  console.log(
    `per idle client: ${((after - before) / (sockets.length - 20) / 1024).toFixed(1)} kB; goal: ${CLIENTS} in at most 300 MB: ${after <= 300 * 1048576 ? 'met' : 'NOT met'}`,
  );
  for (const s of sockets) s.destroy();
} finally {
  proxy?.kill('SIGTERM');
  await new Promise((r) => setTimeout(r, 500));
  await cluster.stop();
  rmSync(work, { recursive: true, force: true });
}
