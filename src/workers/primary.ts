// The primary of a multi-process proxy (listen.workers > 1): forks the workers, which share the listen port, restarts
// one that dies, relays cancel requests to the worker that issued the key, forwards SIGHUP and SIGTERM, and serves
// the operations endpoint with every worker's figures combined.
import cluster, { type Worker } from 'node:cluster';
import type { Logger } from 'pino';
import { AggregatorRegistry, Registry } from 'prom-client';
import { buildStatus, sumPools, type StatusSnapshot } from '../admin/status.js';
import { loadConfig } from '../config/load.js';
import type { Config } from '../config/schema.js';
import { startOpsServer, type OpsServer, type Readiness } from '../metrics/http.js';
import { workerConfig } from './share.js';
import {
  isMessage,
  WORKER_COUNT_ENV,
  WORKER_INDEX_ENV,
  type Answers,
  type Question,
  type ToPrimary,
  type ToWorker,
} from './messages.js';

/** A worker that has not answered by then counts as not ready and is left out of metrics and status. */
const ASK_TIMEOUT_MS = 2000;
/** A worker that keeps dying (upstream gone, say) is restarted at most this often. */
const RESTART_DELAY_MS = 1000;

export async function runPrimary(configFile: string | undefined, initial: Config, log: Logger): Promise<void> {
  let config = initial;
  const count = config.listen.workers;
  const workers: Array<Worker | null> = new Array<Worker | null>(count).fill(null);
  const pending = new Map<number, (value: Answers[Question]) => void>();
  const startedAt = Date.now();
  let nextQuestion = 1;
  let started = false;
  let stopping = false;
  let ops: OpsServer | null = null;

  const send = (worker: Worker | null, message: ToWorker): void => {
    if (worker !== null && worker.isConnected()) worker.send(message);
  };
  const killAll = (signal: NodeJS.Signals): void => {
    for (const worker of workers) if (worker?.process.pid !== undefined) process.kill(worker.process.pid, signal);
  };
  const finish = async (code: number): Promise<never> => {
    await ops?.close();
    log.info('stopped');
    log.flush();
    process.exit(code);
  };

  let onStartFailure: (err: Error) => void = () => undefined;
  const fork = (index: number): Worker => {
    const worker = cluster.fork({ [WORKER_INDEX_ENV]: String(index), [WORKER_COUNT_ENV]: String(count) });
    workers[index] = worker;
    worker.on('message', (message: unknown) => {
      if (!isMessage<ToPrimary>(message)) return;
      if (message.pgtp === 'cancel') {
        send(workers[message.pid % count] ?? null, { pgtp: 'cancel', pid: message.pid, secret: message.secret });
        return;
      }
      pending.get(message.id)?.(message.value);
    });
    worker.on('exit', (code, signal) => {
      if (workers[index] === worker) workers[index] = null;
      if (stopping) {
        // A failed start exits through its error instead (the CLI's status 1).
        if (started && workers.every((w) => w === null)) void finish(0);
        return;
      }
      if (!started) {
        onStartFailure(new Error(`worker ${index} exited with ${code ?? signal} before listening`));
        return;
      }
      log.error({ worker: index, code, signal }, 'worker exited; starting a replacement');
      setTimeout(() => {
        if (!stopping) fork(index);
      }, RESTART_DELAY_MS);
    });
    return worker;
  };

  await new Promise<void>((resolve, reject) => {
    let listening = 0;
    onStartFailure = reject;
    for (let index = 0; index < count; index++) {
      fork(index).once('listening', () => {
        if (++listening === count) resolve();
      });
    }
  }).catch((err: Error) => {
    stopping = true;
    killAll('SIGKILL');
    throw err;
  });
  started = true;
  log.info({ workers: count }, 'workers started');

  /** Asks every worker; a dead or silent one answers null. */
  const ask = <Q extends Question>(what: Q): Promise<Array<Answers[Q] | null>> =>
    Promise.all(
      workers.map(
        (worker) =>
          new Promise<Answers[Q] | null>((resolve) => {
            if (worker === null || !worker.isConnected()) {
              resolve(null);
              return;
            }
            const id = nextQuestion++;
            const timer = setTimeout(() => {
              pending.delete(id);
              resolve(null);
            }, ASK_TIMEOUT_MS);
            pending.set(id, (value) => {
              clearTimeout(timer);
              pending.delete(id);
              resolve(value as Answers[Q]);
            });
            worker.send({ pgtp: 'ask', id, what } satisfies ToWorker);
          }),
      ),
    );

  if (config.metrics.enabled) {
    try {
      ops = await startOpsServer(
        config.metrics.host,
        config.metrics.port,
        {
          metrics: {
            contentType: Registry.PROMETHEUS_CONTENT_TYPE,
            text: async () => AggregatorRegistry.aggregate((await ask('metrics')).filter(isPresent)).metrics(),
          },
          readiness: async () => combineReadiness(await ask('readiness'), stopping),
          status: async () => combineStatus((await ask('status')).filter(isPresent), config, startedAt),
          adminToken: () => config.metrics.adminToken,
        },
        log.child({ component: 'metrics' }),
      );
    } catch (err) {
      stopping = true;
      killAll('SIGKILL');
      throw new Error(
        `cannot serve metrics on ${config.metrics.host}:${config.metrics.port}: ${(err as Error).message}`,
        { cause: err },
      );
    }
  }

  const stop = (signal: string): void => {
    if (stopping) return;
    stopping = true;
    log.info({ signal }, 'draining');
    // Each worker drains its own clients (SIGTERM, as a single proxy would); the primary ends when the last one has.
    killAll('SIGTERM');
    if (workers.every((w) => w === null)) void finish(0);
  };
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGINT', () => stop('SIGINT'));
  process.on('SIGHUP', () => {
    try {
      const next = loadConfig(configFile);
      workerConfig(next, 0, count);
      config = next;
    } catch (err) {
      log.error({ err: (err as Error).message }, 'reload rejected; keeping the old config');
      return;
    }
    // listen.workers itself is fixed at start; every other key the workers reload from the file themselves.
    killAll('SIGHUP');
  });
}

function isPresent<T>(value: T | null): value is T {
  return value !== null;
}

/** Ready when every worker is; each check fails with the first failing worker's detail. */
export function combineReadiness(answers: ReadonlyArray<Readiness | null>, stopping: boolean): Readiness {
  const checks: Readiness['checks'] = {};
  for (const answer of answers) {
    for (const [name, check] of Object.entries(answer?.checks ?? {})) {
      if (checks[name] === undefined || (checks[name].ok && !check.ok)) checks[name] = check;
    }
  }
  const answered = answers.filter(isPresent).length;
  checks.workers =
    answered === answers.length
      ? { ok: true }
      : { ok: false, detail: `${answered} of ${answers.length} workers answered` };
  if (stopping) checks.listener = { ok: false, detail: 'shutting down' };
  return { ready: !stopping && answers.every((answer) => answer?.ready === true), checks };
}

/** One snapshot for every worker: pool counts added up, every client listed, the audit failing if any worker's is. */
export function combineStatus(parts: readonly StatusSnapshot[], config: Config, startedAt: number): StatusSnapshot {
  return buildStatus(
    sumPools(parts.flatMap((part) => part.upstreams)),
    parts.flatMap((part) => part.clients),
    {
      enabled: config.audit.enabled,
      failing: parts.some((part) => part.audit.failing),
      dropped: parts.reduce((sum, part) => sum + part.audit.dropped, 0),
      last_error: parts.find((part) => part.audit.last_error !== null)?.audit.last_error ?? null,
    },
    startedAt,
  );
}
